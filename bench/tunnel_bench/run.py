#!/usr/bin/python3
"""Tunnel benchmark: the real kaminaric/kaminaris against real peers, on 127.0.0.1 only.

Setups (each on the transport it can do):
  direct              iperf3 / echo target with no relay (the ceiling)
  socat               socat relay pair                        (plain tcp)
  stunnel             stunnel4 pair, EC P-256 certificate       (tls)
  v2ray               ss-v2ray-plugin pair, websocket, default mux (ws)
  kaminari-tcp, kaminari-ws-{skip,fixed,standard}, kaminari-tls, kaminari-wss,
  kaminari-ws-mux, kaminari-wss-mux, kaminari-tls-mux (mux=8: connections as Mux.Cool
                      sessions on shared websockets / TLS connections)
  kaminari-ws-pool, kaminari-wss-pool, kaminari-tls-pool (pool=8: connections on ones the
                      client keeps ready, TCP and TLS done; ws and wss with ed=2048)
  base-tcp, base-ws-{skip,fixed,standard}, base-tls, base-wss, ...
                      another build's kaminaric/kaminaris with the same options
                      (--baseline DIR or KAMINARI_BASELINE=DIR; each runs together with its
                      kaminari-X twin: both up at once, taking turns window by window)

Per setup and round: bulk throughput (iperf3 -J, 1 and 4 streams, both directions), CPU of both
relays per GiB moved; connection setup: short connections (connect, 64 B echoed, close) per
second at concurrency 1, 50 and 500, time to first echoed byte one at a time (p50, p99) and
under load, CPU µs per connection of each relay; RSS growth per idle connection held. Rounds
loop over every setup in a rotating order, so drift on the machine hits all setups alike; the
report gives the median with min-max, and kaminari-X / base-X ratios when there is a baseline.

Output: <out>/results.md, results.json, *.png (gnuplot, when installed).

  /usr/bin/python3 bench/tunnel_bench/run.py --quick           # about 5 minutes on 2 cores
  /usr/bin/python3 bench/tunnel_bench/run.py                   # full
  /usr/bin/python3 bench/tunnel_bench/run.py --only kaminari-tcp,socat --rounds 1
  /usr/bin/python3 bench/tunnel_bench/run.py --skip bulk,tls,hold --baseline OTHER/build
                                                               # connection setup only

Stdlib only. Every process started is killed at the end, on Ctrl-C and on errors.
"""

import argparse
import datetime
import errno
import json
import os
import platform
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HOST = "127.0.0.1"
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = 1024
WS_HOST = "bench.local"
WS_PATH = "/ws"

# ---------------------------------------------------------------------------------------------
# Process bookkeeping: every child is started in its own session, so that killing its process
# group also kills whatever it forked (socat children).

_children = []


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Child:
    """A child process with stdout+stderr in a temporary file (or a pipe), killed at exit."""

    def __init__(self, name, argv, env=None, pipe=False):
        self.name = name
        self.argv = argv
        self.log = tempfile.TemporaryFile()
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen(
            argv, env=full_env, start_new_session=True,
            stdin=subprocess.PIPE if pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe else self.log, stderr=self.log)
        _children.append(self)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def output(self, limit=2000):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-limit:]

    def first_error_line(self):
        lines = [ln.strip() for ln in self.output(8000).splitlines() if ln.strip()]
        for ln in lines:
            if "error" in ln.lower() or "fatal" in ln.lower() or "not available" in ln.lower():
                return ln[:200]
        return lines[-1][:200] if lines else "(no output)"

    def stop(self, timeout=3.0):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left in the group (forked children), and the leader if it ignored TERM.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            if f:
                try:
                    f.close()
                except OSError:
                    pass
        if self in _children:
            _children.remove(self)


def kill_all():
    for c in list(_children):
        c.stop(timeout=1.0)


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


# ---------------------------------------------------------------------------------------------
# /proc helpers


def listening(port):
    """True when something listens on TCP port `port` (checked in /proc, without connecting)."""
    hexport = f":{port:04X}"
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[1].endswith(hexport) and parts[3] == "0A":
                        return True
        except OSError:
            pass
    return False


def _proc_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    rest = data[data.rindex(")") + 2:].split()
    # rest[0] is field 3 (state): ppid=4, utime=14, stime=15, cutime=16, cstime=17
    return {"ppid": int(rest[1]), "utime": int(rest[11]), "stime": int(rest[12]),
            "cutime": int(rest[13]), "cstime": int(rest[14])}


def _children_map():
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                children.setdefault(_proc_stat(int(name))["ppid"], []).append(int(name))
            except (OSError, ValueError, IndexError):
                pass
    return children


def tree(pid, children=None):
    """pid and all its live descendants."""
    if children is None:
        children = _children_map()
    out, todo = [], [pid]
    while todo and len(out) < 100000:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid, children=None):
    """user+sys of pid, its live descendants and its reaped children, in seconds."""
    total = 0
    for p in tree(pid, children):
        try:
            s = _proc_stat(p)
        except (OSError, ValueError, IndexError):
            continue
        total += s["utime"] + s["stime"] + s["cutime"] + s["cstime"]
    return total / CLK_TCK


def rss_kib(pid):
    """VmRSS and Pss summed over pid and its live descendants (KiB), and how many processes.
    Pss splits shared pages between the processes that map them, so for a relay that forks per
    connection (socat) it is the memory really added; for one process it is close to VmRSS."""
    rss, pss, n = 0, 0, 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                        n += 1
                        break
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                        break
        except (OSError, ValueError):
            pass
    return {"rss": rss, "pss": pss, "procs": n}


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# Helper modes (the script runs itself as the echo target and as the load generator, each in
# its own process so that it does not share a core with the orchestrator).


def echo_server(port):
    """An epoll echo server: echoes everything, closes on EOF."""
    raise_nofile()
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((HOST, port))
    lsock.listen(4096)
    lsock.setblocking(False)
    ep = select.epoll()
    ep.register(lsock.fileno(), select.EPOLLIN)
    conns = {}
    pending = {}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        for fd, ev in ep.poll(1.0):
            if fd == lsock.fileno():
                for _ in range(256):
                    try:
                        c, _ = lsock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    c.setblocking(False)
                    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conns[c.fileno()] = c
                    ep.register(c.fileno(), select.EPOLLIN)
                continue
            c = conns.get(fd)
            if c is None:
                continue
            try:
                if ev & select.EPOLLOUT and fd in pending:
                    n = c.send(pending[fd])
                    pending[fd] = pending[fd][n:]
                    if not pending[fd]:
                        del pending[fd]
                        ep.modify(fd, select.EPOLLIN)
                    continue
                data = c.recv(65536)
                if not data:
                    raise ConnectionError
                if fd in pending:
                    pending[fd] += data
                    continue
                n = c.send(data)
                if n < len(data):
                    pending[fd] = data[n:]
                    ep.modify(fd, select.EPOLLOUT)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                ep.unregister(fd)
                pending.pop(fd, None)
                conns.pop(fd).close()


def _percentile(values, q):
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))
    return s[k]


def loadgen(port, concurrency, seconds, count, want_lat=False, payload_size=64, gap=0.0):
    """Short connections: connect, send payload, read it back, close; `concurrency` at a time,
    for `seconds` or until `count` completed; with `gap` (seconds, concurrency 1), each one after
    the first starts that long after the one before it ended. Prints one JSON line (with every
    latency, in µs, when want_lat)."""
    raise_nofile()
    payload = b"k" * payload_size
    ep = select.epoll()
    conns = {}  # fd -> [sock, t0, state, got, t_first]
    lat = []
    done = errors = 0
    completed = 0  # every connection that got its echo, also those finishing after the window
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    err_kinds = {}
    start = time.perf_counter()
    end = start + seconds
    hard_end = end + 5.0

    def note_error(kind):
        nonlocal errors
        errors += 1
        err_kinds[kind] = err_kinds.get(kind, 0) + 1

    def open_one():
        s = socket.socket()
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.perf_counter()
        rc = s.connect_ex((HOST, port))
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            note_error(errno.errorcode.get(rc, str(rc)))
            return
        conns[s.fileno()] = [s, t0, 0, 0, None]
        ep.register(s.fileno(), select.EPOLLOUT)

    def close(fd):
        ep.unregister(fd)
        conns.pop(fd)[0].close()

    def may_open():
        now = time.perf_counter()
        return now < end and done + len(conns) < count

    while may_open() and len(conns) < concurrency:
        open_one()
        if errors > 1000:
            break
    while conns and time.perf_counter() < hard_end:
        for fd, ev in ep.poll(0.1):
            c = conns.get(fd)
            if c is None:
                continue
            s = c[0]
            try:
                if c[2] == 0:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, os.strerror(err))
                    s.send(payload)
                    c[2] = 1
                    ep.modify(fd, select.EPOLLIN)
                    continue
                data = s.recv(65536)
                if not data:
                    raise ConnectionError("eof before the echo")
                if c[4] is None:
                    c[4] = time.perf_counter()
                c[3] += len(data)
                if c[3] >= payload_size:
                    close(fd)
                    completed += 1
                    if c[4] <= end:
                        done += 1
                        lat.append(c[4] - c[1])
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                close(fd)
                note_error(type(e).__name__ if not e.errno else errno.errorcode.get(e.errno, "?"))
            if gap > 0 and fd not in conns and may_open():
                time.sleep(gap)
            while may_open() and len(conns) < concurrency and errors <= 1000:
                open_one()
        if errors > 1000:
            break
    wall = time.perf_counter() - start
    elapsed = min(time.perf_counter(), end) - start
    for fd in list(conns):
        close(fd)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    # cpu_busy: the load generator's own user+sys over its wall time (1.0 = one core saturated).
    extra = {"lat_us": [round(x * 1e6) for x in lat]} if want_lat else {}
    print(json.dumps({**extra, "done": done, "completed": completed, "errors": errors,
                      "error_kinds": err_kinds, "wall": wall,
                      "cpu_busy": cpu / wall if wall > 0 else 0,
                      "cpu_us_per_conn": cpu / completed * 1e6 if completed else 0,
                      "seconds": elapsed, "rate": done / elapsed if elapsed > 0 else 0,
                      "p50_ms": (_percentile(lat, 0.50) or 0) * 1e3,
                      "p99_ms": (_percentile(lat, 0.99) or 0) * 1e3}), flush=True)


def holder(port, count, seconds):
    """Opens `count` connections, each with one 64-byte echo, keeps them open; prints a JSON line
    when done, then waits for a line on stdin (or `seconds`) and closes them all."""
    raise_nofile()
    payload = b"h" * 64
    held, errors = [], 0
    deadline = time.monotonic() + seconds
    batch = 50
    while len(held) < count and time.monotonic() < deadline and errors < 100:
        group = []
        for _ in range(min(batch, count - len(held))):
            s = socket.socket()
            s.settimeout(max(0.5, deadline - time.monotonic()))
            try:
                s.connect((HOST, port))
                s.sendall(payload)
                group.append(s)
            except OSError:
                s.close()
                errors += 1
        for s in group:
            try:
                got = 0
                while got < len(payload):
                    d = s.recv(4096)
                    if not d:
                        raise ConnectionError("eof")
                    got += len(d)
                held.append(s)
            except OSError:
                s.close()
                errors += 1
    print(json.dumps({"held": len(held), "errors": errors}), flush=True)
    r, _, _ = select.select([sys.stdin], [], [], max(1.0, deadline - time.monotonic()))
    for s in held:
        s.close()


# ---------------------------------------------------------------------------------------------
# Setups


class Unavailable(Exception):
    """A setup cannot run (binary missing, refused its options, died, failed the echo check)."""


def wait_listening(port, procs, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for p in procs:
            if not p.alive():
                raise Unavailable(f"{p.name} exited with {p.proc.returncode}: "
                                  f"{p.first_error_line()}")
        if listening(port):
            return
        time.sleep(0.02)
    raise Unavailable(f"nothing listens on port {port} after {timeout:.0f}s")


class Setup:
    """One tunnel (or none): start(target_port) gives the port clients connect to."""

    kind = "peer"
    transport = "tcp"
    conn_only = False  # measured in the connection-setup runs only (no hold, tls or bulk)

    def __init__(self, name):
        self.name = name
        self.procs = []

    def relays(self):
        return self.procs

    def start(self, target_port):
        raise NotImplementedError

    def stop(self):
        for p in self.procs:
            p.stop()
        self.procs = []

    def versions(self):
        return ""


class Direct(Setup):
    def __init__(self):
        super().__init__("direct")

    def start(self, target_port):
        return target_port


class Pair(Setup):
    """A client relay listening on L1 and a server relay on L2 forwarding to the target."""

    def argv_env(self, role, listen, remote):
        raise NotImplementedError

    def start(self, target_port):
        l2, l1 = free_port(), free_port()
        sargv, senv = self.argv_env("server", l2, target_port)
        srv = Child(f"{self.name}-server", sargv, senv)
        self.procs = [srv]
        wait_listening(l2, self.procs)
        self.server_port = l2
        cargv, cenv = self.argv_env("client", l1, l2)
        cli = Child(f"{self.name}-client", cargv, cenv)
        self.procs = [cli, srv]
        wait_listening(l1, self.procs)
        return l1


class Socat(Pair):
    def __init__(self):
        super().__init__("socat")

    def argv_env(self, role, listen, remote):
        return (["socat", f"TCP-LISTEN:{listen},bind={HOST},reuseaddr,fork,backlog=4096",
                 f"TCP:{HOST}:{remote}"], None)


class Stunnel(Pair):
    transport = "tls"

    def __init__(self, workdir, cert, key):
        super().__init__("stunnel")
        self.workdir, self.cert, self.key = workdir, cert, key

    def argv_env(self, role, listen, remote):
        conf = os.path.join(self.workdir, f"stunnel-{role}-{listen}.conf")
        lines = ["foreground = yes", "pid =", "syslog = no", "debug = 3",
                 f"output = {os.path.join(self.workdir, f'stunnel-{role}.log')}"]
        if role == "client":
            lines += ["client = yes", "[bench]", f"accept = {HOST}:{listen}",
                      f"connect = {HOST}:{remote}", f"sni = {WS_HOST}", "verifyChain = no"]
        else:
            lines += ["[bench]", f"accept = {HOST}:{listen}", f"connect = {HOST}:{remote}",
                      f"cert = {self.cert}", f"key = {self.key}"]
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        return ([shutil.which("stunnel4") or "stunnel", conf], None)


class V2ray(Pair):
    transport = "ws"

    def __init__(self):
        super().__init__("v2ray")

    def argv_env(self, role, listen, remote):
        if role == "server":  # SIP003 server: listens on SS_REMOTE_*, forwards to SS_LOCAL_*
            env = {"SS_REMOTE_HOST": HOST, "SS_REMOTE_PORT": str(listen),
                   "SS_LOCAL_HOST": HOST, "SS_LOCAL_PORT": str(remote),
                   "SS_PLUGIN_OPTIONS": f"server;host={WS_HOST};path={WS_PATH}"}
        else:
            env = {"SS_LOCAL_HOST": HOST, "SS_LOCAL_PORT": str(listen),
                   "SS_REMOTE_HOST": HOST, "SS_REMOTE_PORT": str(remote),
                   "SS_PLUGIN_OPTIONS": f"host={WS_HOST};path={WS_PATH}"}
        return (["ss-v2ray-plugin"], env)


def build_c(name, exe):
    """Builds bench/<name>.c with cc into `exe` unless it is there; raises Unavailable when it
    cannot."""
    if os.access(exe, os.X_OK):
        return
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", f"{name}.c")
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise Unavailable(f"no C compiler (cc) to build bench/{name}.c")
    try:
        r = subprocess.run([cc, "-O2", "-o", exe, src, "-lm"], capture_output=True, text=True,
                           timeout=120, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise Unavailable(f"cc {name}.c took over 120 s") from None
    if r.returncode:
        raise Unavailable(f"cc {name}.c failed: {r.stderr.strip()[:200]}")


class Floor(Pair):
    """A pair of bench/floor_relay.c (one thread, epoll, read/write, nothing a product needs):
    the kernel's share of a relayed connection, run with kaminari-tcp and base-tcp, taking
    turns with them. Built with cc into the work directory on first start."""

    kind = "floor"
    mode = "tcp"
    conn_only = True

    def __init__(self, workdir):
        super().__init__("floor")
        self.exe = os.path.join(workdir, "floor_relay")

    def start(self, target_port):
        build_c("floor_relay", self.exe)
        return super().start(target_port)

    def argv_env(self, role, listen, remote):
        return ([self.exe, str(listen), str(remote)], None)


class Kaminari(Pair):
    """kaminaric + kaminaris; prefix "kaminari" for the build under test, "base" for the
    baseline pair (--baseline / KAMINARI_BASELINE), with the same options."""

    kind = "kaminari"

    def __init__(self, mode, client_opts, server_opts, transport, kaminaric, kaminaris,
                 prefix="kaminari"):
        super().__init__(f"{prefix}-{mode}")
        self.kind = "kaminari" if prefix == "kaminari" else "baseline"
        self.mode = mode
        self.copts, self.sopts = client_opts, server_opts
        self.transport = transport
        self.kaminaric, self.kaminaris = kaminaric, kaminaris

    def argv_env(self, role, listen, remote):
        exe, opts = ((self.kaminaric, self.copts) if role == "client"
                     else (self.kaminaris, self.sopts))
        argv = [exe, f"{HOST}:{listen}", f"{HOST}:{remote}"]
        if opts:
            argv.append(opts + ";loglevel=warn")
        else:
            argv.append("loglevel=warn")
        return (argv, None)


def make_setups(args, workdir, cert, key):
    ws = f"ws;host={WS_HOST};path={WS_PATH}"
    tls_c, tls_s = f"tls;sni={WS_HOST};insecure", f"tls;servername={WS_HOST}"
    modes = [("tcp", "", "", "tcp"),
             ("ws-skip", ws + ";mask=skip", ws, "ws"),
             ("ws-fixed", ws + ";mask=fixed", ws, "ws"),
             ("ws-standard", ws + ";mask=standard", ws, "ws"),
             ("tls", tls_c, tls_s, "tls"),
             ("wss", ws + ";" + tls_c, ws + ";" + tls_s, "wss"),
             # mux=8: app connections share websockets (Mux.Cool sessions).
             ("ws-mux", ws + ";mux=8", ws, "ws"),
             ("wss-mux", ws + ";" + tls_c + ";mux=8", ws + ";" + tls_s, "wss"),
             ("tls-mux", tls_c + ";mux=8", tls_s, "tls"),
             # pool=8: the client keeps 8 connections ready (TCP, and TLS, done); with ed the
             # app's first bytes ride in the upgrade request of a warm websocket.
             ("ws-pool", ws + ";ed=2048;pool=8", ws, "ws"),
             ("wss-pool", ws + ";" + tls_c + ";ed=2048;pool=8", ws + ";" + tls_s, "wss"),
             ("tls-pool", tls_c + ";pool=8", tls_s, "tls")]
    setups = [Direct(), Socat(), Stunnel(workdir, cert, key), V2ray()]
    for mode, copts, sopts, transport in modes:
        setups.append(Kaminari(mode, copts, sopts, transport, args.kaminaric, args.kaminaris))
        # The baseline right after the same mode of the build under test: round_order keeps
        # the two together (measure_rates runs them at the same time), so drift on the machine
        # hits both alike.
        # A mux or pool mode has no twin: the baseline build (53f1371) has neither; its ratios
        # are taken against the baseline's plain mode of the same transport (MUX_BASE).
        if args.baseline and mode not in MUX_BASE:
            setups.append(Kaminari(mode, copts, sopts, transport,
                                   os.path.join(args.baseline, "kaminaric"),
                                   os.path.join(args.baseline, "kaminaris"), prefix="base"))
        if mode == "tcp":
            setups.append(Floor(workdir))
    if args.only:
        keep = [n for n in args.only.split(",") if n]
        known = {s.name for s in setups}
        unknown = [n for n in keep if n not in known]
        if unknown:
            hint = ("; base-* setups need --baseline DIR or KAMINARI_BASELINE"
                    if any(n.startswith("base-") for n in unknown) and not args.baseline else "")
            sys.exit(f"run.py: --only: unknown setup(s) {', '.join(unknown)} (known: "
                     f"{', '.join(s.name for s in setups)}){hint}")
        setups = [s for s in setups if s.name in keep]
    return setups


PEERS = ["direct", "socat", "stunnel", "v2ray"]

# mux=8 and pool=8 setups: the baseline build's setup their ratios are taken against (same
# transport, one connection to the server per app connection, made when the app connects; not
# run at the same time as them).
MUX_BASE = {"ws-mux": "ws-skip", "wss-mux": "wss", "tls-mux": "tls",
            "ws-pool": "ws-skip", "wss-pool": "wss", "tls-pool": "tls"}

# ---------------------------------------------------------------------------------------------
# Measurements


def echo_check(port, timeout=5.0):
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.settimeout(timeout)
        msg = b"kaminari-bench-check"
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            d = s.recv(4096)
            if not d:
                raise Unavailable("the tunnel closed the echo check connection")
            got += d
        if got != msg:
            raise Unavailable("the echo check came back different")


# The connection-setup harness: bench/conn_harness.c's echo target and load generator when cc
# can build it (CONN_HARNESS["exe"], set in main()), else this script's own (--echo, --loadgen).
CONN_HARNESS = {"exe": None}


def harness_argv(mode, args):
    """The command line of the harness's `mode` ("echo" or "loadgen") with `args`."""
    if CONN_HARNESS["exe"]:
        return [CONN_HARNESS["exe"], mode] + [str(a) for a in args]
    return [sys.executable, os.path.abspath(__file__), f"--{mode}"] + [str(a) for a in args]


def run_loadgen(args, timeout):
    """Runs the load generator with `args` and returns its JSON line."""
    c = Child("loadgen", harness_argv("loadgen", args), pipe=True)
    try:
        out, _ = c.proc.communicate(timeout=timeout)
        line = out.decode().strip().splitlines()
        return json.loads(line[-1]) if line else {"error": c.output(300)}
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    finally:
        c.stop()


class Iperf:
    def __init__(self):
        self.port = None
        self.proc = None

    def start(self):
        self.port = free_port()
        self.proc = Child("iperf3-server", ["iperf3", "-s", "-B", HOST, "-p", str(self.port)])
        wait_listening(self.port, [self.proc])

    def restart(self):
        if self.proc:
            self.proc.stop()
        self.start()

    def stop(self):
        if self.proc:
            self.proc.stop()


def iperf_run(port, seconds, streams, reverse):
    argv = ["iperf3", "-c", HOST, "-p", str(port), "-t", str(seconds), "-J",
            "--connect-timeout", "3000", "-P", str(streams)]
    if reverse:
        argv.append("-R")
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 20,
                           stdin=subprocess.DEVNULL, start_new_session=True)
    except subprocess.TimeoutExpired:
        return {"error": "iperf3 timed out"}
    try:
        j = json.loads(r.stdout)
    except json.JSONDecodeError:
        return {"error": (r.stderr or r.stdout).strip()[:200] or f"iperf3 exit {r.returncode}"}
    if "error" in j:
        return {"error": j["error"][:200]}
    recv = j["end"]["sum_received"]
    return {"bps": recv["bits_per_second"], "bytes": recv["bytes"]}


BULK = [("tput_1_up", 1, False), ("tput_1_down", 1, True),
        ("tput_4_up", 4, False), ("tput_4_down", 4, True)]


def measure_bulk(setup, iperf, cfg, sample):
    try:
        port = setup.start(iperf.port)
        relays = setup.relays()
        cpu_total, bytes_total = 0.0, 0
        for key, streams, reverse in BULK:
            before = sum(cpu_seconds(p.pid) for p in relays)
            r = iperf_run(port, cfg.duration, streams, reverse)
            if "error" in r:
                sample.setdefault("errors", []).append(f"{key}: {r['error']}")
                for p in relays:
                    if not p.alive():
                        raise Unavailable(f"{p.name} died: {p.first_error_line()}")
                iperf.restart()
                setup.stop()
                port = setup.start(iperf.port)
                relays = setup.relays()
                continue
            # Let forked relays (socat) finish and be reaped into their parent's counters.
            time.sleep(0.2)
            after = sum(cpu_seconds(p.pid) for p in relays)
            sample[key] = r["bps"] / 1e9
            if relays:
                cpu_total += after - before
                bytes_total += r["bytes"]
        if relays and bytes_total > 0:
            sample["cpu_s_per_gib"] = cpu_total / (bytes_total / (1 << 30))
    finally:
        setup.stop()


def start_echo():
    """A fresh echo target on a fresh port for each measurement, so that TIME_WAIT sockets
    left towards it by one setup do not eat the ephemeral ports of the next."""
    port = free_port()
    echo = Child("echo", harness_argv("echo", [port]))
    try:
        wait_listening(port, [echo])
    except Unavailable as e:
        echo.stop()
        raise RuntimeError(f"the echo target did not start: {e}") from e
    return echo, port


def rate_run(port, concurrency, seconds, count, relays, echo, cfg):
    """One load generator run (connect, 64 B, read the echo, close; `concurrency` at a time),
    with the user+sys CPU seconds of each relay (`cpu_s`) and of the echo target over it."""
    def snapshot():  # one scan of /proc for all
        children = _children_map()
        return [cpu_seconds(p.pid, children) for p in relays + [echo]]

    before = snapshot()
    r = run_loadgen([port, concurrency, seconds, count, "lat"], seconds + 30)
    # Let the relays finish closing, and forked relays (socat) be reaped into their parent's
    # counters.
    time.sleep(cfg.settle)
    if "error" in r:
        return r
    used = [a - b for a, b in zip(snapshot(), before)]
    r["cpu_s"], r["echo_s"] = used[:-1], used[-1]
    return r


# The connection-setup runs: key suffix, concurrency (1 for the unloaded run: one at a time, and
# stopped after cfg.unloaded connections).
CONN_LEVELS = [("1", 1), ("50", 50), ("500", 500)]


def measure_rates(group, cfg, samples):
    """Connection setup for a group of setups (one, or kaminari-X with its base-X twin), all
    started at once against one echo target: per concurrency level, cfg.slices slices of
    conn_seconds / slices each, the setups taking turns (A B B A ...), so that a burst of load
    from elsewhere on the machine hits both alike. Per setup, the slices add up: conn/s is all
    connections over all windows, latency percentiles over all connections, CPU per connection
    all relay CPU over all connections that got their echo (also those still in flight when a
    window closed: the relays spent their CPU on them too). Raises Unavailable (setup, reason)
    for a setup that does not start or dies; the others' samples stand."""
    echo, echo_port = start_echo()
    up = []  # (setup, port)
    try:
        for s in group:
            try:
                port = s.start(echo_port)
                echo_check(port)
            except Unavailable as e:
                s.stop()
                raise Unavailable(s, str(e)) from e
            up.append((s, port))
        for s, port in up:
            # Warm up (first-connection allocations, thread pools, the first full TLS handshake).
            run_loadgen([port, 10, 2, cfg.warmup], 20)
        time.sleep(0.3)
        # Keys: conn_rate_<c> (conn_rate is c=50, as before), lat<c>_p50_ms / lat<c>_p99_ms (time
        # to first echoed byte), cpu_us_<c>_client / _server / _both (relay CPU per
        # connection), lg_busy_<c> / lg_us_<c> / echo_busy_<c> (the harness), conns_<c>.
        for suffix, conc in CONN_LEVELS:
            acc = {s.name: {"done": 0, "completed": 0, "seconds": 0.0, "wall": 0.0, "lat": [],
                            "lg_s": 0.0, "echo_s": 0.0, "cpu_s": None, "errors": {}}
                   for s, _ in up}
            n = cfg.slices
            count = cfg.unloaded if conc == 1 else 100000000
            for i in range(n):
                order = up[::-1] if i % 2 else up
                for s, port in order:
                    r = rate_run(port, conc, cfg.conn_seconds / n, max(1, count // n),
                                 s.relays(), echo, cfg)
                    a = acc[s.name]
                    if "error" in r:
                        a["errors"][r["error"]] = a["errors"].get(r["error"], 0) + 1
                        continue
                    for k in ("done", "completed", "seconds", "wall", "echo_s"):
                        a[k] += r[k]
                    a["lat"] += r["lat_us"]
                    a["lg_s"] += r["cpu_busy"] * r["wall"]
                    a["cpu_s"] = ([x + y for x, y in zip(a["cpu_s"], r["cpu_s"])]
                                  if a["cpu_s"] else r["cpu_s"])
                    for k, v in r["error_kinds"].items():
                        a["errors"][k] = a["errors"].get(k, 0) + v
            for s, _ in up:
                a, sample = acc[s.name], samples[s.name]
                if a["done"] and a["seconds"] > 0:
                    sample["conn_rate" if suffix == "50" else f"conn_rate_{suffix}"] = \
                        a["done"] / a["seconds"]
                    lat = [x / 1e3 for x in a["lat"]]
                    sample[f"lat{suffix}_p50_ms"] = _percentile(lat, 0.50)
                    sample[f"lat{suffix}_p99_ms"] = _percentile(lat, 0.99)
                    sample[f"lg_busy_{suffix}"] = a["lg_s"] / a["wall"]
                    sample[f"echo_busy_{suffix}"] = a["echo_s"] / a["wall"]
                    sample[f"conns_{suffix}"] = a["completed"]
                    if a["completed"]:
                        sample[f"lg_us_{suffix}"] = a["lg_s"] / a["completed"] * 1e6
                        sample[f"echo_us_{suffix}"] = a["echo_s"] / a["completed"] * 1e6
                        if a["cpu_s"]:
                            us = [x / a["completed"] * 1e6 for x in a["cpu_s"]]
                            for side, v in zip(("client", "server"), us):
                                sample[f"cpu_us_{suffix}_{side}"] = v
                            if len(us) == 2:
                                sample[f"cpu_us_{suffix}_both"] = sum(us)
                if a["errors"]:
                    sample.setdefault("errors", []).append(f"c={suffix}: {a['errors']}")
        # After idle: cfg.idle connections one at a time, each cfg.idle_gap_ms after the one
        # before it ended (the tunnel idle meanwhile: a pool refilled, no aftermath of the last
        # connection still running), in two halves, the setups taking turns.
        if cfg.idle:
            lats, errs = {s.name: [] for s, _ in up}, {s.name: {} for s, _ in up}
            for i in range(2):
                for s, port in (up[::-1] if i % 2 else up):
                    n = cfg.idle // 2
                    r = run_loadgen([port, 1, n * (cfg.idle_gap_ms / 1e3 + 0.1), n, "lat",
                                     cfg.idle_gap_ms], n * (cfg.idle_gap_ms / 1e3 + 0.1) + 30)
                    e = errs[s.name]
                    if "error" in r:
                        e[r["error"]] = e.get(r["error"], 0) + 1
                        continue
                    lats[s.name] += r["lat_us"]
                    for k, v in r["error_kinds"].items():
                        e[k] = e.get(k, 0) + v
            for s, _ in up:
                if lats[s.name]:
                    samples[s.name]["lat_idle_p50_ms"] = _percentile(lats[s.name], 0.50) / 1e3
                if errs[s.name]:
                    samples[s.name].setdefault("errors", []).append(f"idle: {errs[s.name]}")
            for s, _ in up:
                for p in s.relays():
                    if not p.alive():
                        raise Unavailable(s, f"{p.name} died: {p.first_error_line()}")
    finally:
        for s, _ in up:
            s.stop()
        echo.stop()


def measure_hold(setup, cfg, sample):
    """RSS/PSS growth of each relay per idle connection, `cfg.hold` connections held open (each
    after one echo) against a fresh pair warmed up with cfg.warmup connections."""
    hold = cfg.hold if setup.name != "socat" else min(cfg.hold, cfg.socat_hold)
    if not isinstance(setup, Pair) or hold <= 0:
        return
    echo, echo_port = start_echo()
    try:
        port = setup.start(echo_port)
        echo_check(port)
        relays = setup.relays()
        run_loadgen([port, 10, 2, cfg.warmup], 20)
        time.sleep(0.3)
        base = [rss_kib(p.pid) for p in relays]
        h = Child("holder", [sys.executable, os.path.abspath(__file__), "--holder", str(port),
                             str(hold), str(cfg.hold_seconds)], pipe=True)
        try:
            ready = select.select([h.proc.stdout], [], [], cfg.hold_seconds + 5)[0]
            info = json.loads(h.proc.stdout.readline() or "{}") if ready else {}
            held = info.get("held", 0)
            time.sleep(0.5)
            now = [rss_kib(p.pid) for p in relays]
            if held > 0:
                sample["held"] = held
                for i, side in enumerate(("client", "server")):
                    for m in ("rss", "pss"):
                        sample[f"{m}_kib_per_conn_{side}"] = (now[i][m] - base[i][m]) / held
                    sample[f"procs_{side}"] = now[i]["procs"]
            if info.get("errors") or held < hold:
                sample.setdefault("errors", []).append(
                    f"hold: {held}/{hold} held, {info.get('errors')} errors")
        finally:
            try:
                h.proc.stdin.write(b"done\n")
                h.proc.stdin.flush()
            except OSError:
                pass
            try:
                h.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            h.stop()
        for p in relays:
            if not p.alive():
                raise Unavailable(f"{p.name} died: {p.first_error_line()}")
    finally:
        setup.stop()
        echo.stop()


def s_time(port, seconds):
    """Full TLS handshakes per second that `openssl s_time -new` gets from a server."""
    t0 = time.monotonic()
    try:
        r = subprocess.run(["openssl", "s_time", "-connect", f"{HOST}:{port}", "-new", "-time",
                            str(seconds)], capture_output=True, text=True, timeout=seconds + 20,
                           stdin=subprocess.DEVNULL, start_new_session=True)
    except subprocess.TimeoutExpired:
        return None, "openssl s_time timed out"
    elapsed = time.monotonic() - t0
    m = re.search(r"(\d+) connections in [0-9.]+s;", r.stdout)
    if not m or int(m.group(1)) == 0:
        return None, (r.stdout + r.stderr).strip().splitlines()[-1:] or ["no output"]
    return int(m.group(1)) / elapsed, None


def measure_tls_handshakes(setup, cfg, sample):
    """Handshakes/s of the server relay (stunnel, kaminaris tls), or of openssl s_server with
    the benchmark certificate (the reference)."""
    echo, echo_port = start_echo()
    try:
        if isinstance(setup, SServer):
            port = setup.start(echo_port)
        else:
            setup.start(echo_port)
            port = setup.server_port
        rate, err = s_time(port, cfg.hs_seconds)
        if rate:
            sample["tls_hs_rate"] = rate
        else:
            sample.setdefault("errors", []).append(f"s_time: {err}")
    finally:
        setup.stop()
        echo.stop()


class SServer(Setup):
    """openssl s_server with the benchmark certificate: the TLS handshake reference."""

    transport = "tls"

    def __init__(self, cert, key):
        super().__init__("openssl-s_server")
        self.cert, self.key = cert, key

    def start(self, target_port):
        port = free_port()
        self.procs = [Child(self.name, ["openssl", "s_server", "-accept", f"{HOST}:{port}",
                                        "-cert", self.cert, "-key", self.key, "-quiet",
                                        "-naccept", "100000000"])]
        wait_listening(port, self.procs)
        return port


# ---------------------------------------------------------------------------------------------
# Report

METRICS = [
    # key, title, unit, higher is better, format
    ("tput_1_up", "Throughput, 1 stream, client to server", "Gbit/s", True, "{:.2f}"),
    ("tput_1_down", "Throughput, 1 stream, server to client (-R)", "Gbit/s", True, "{:.2f}"),
    ("tput_4_up", "Throughput, 4 streams, client to server", "Gbit/s", True, "{:.2f}"),
    ("tput_4_down", "Throughput, 4 streams, server to client (-R)", "Gbit/s", True, "{:.2f}"),
    ("cpu_s_per_gib", "CPU of both relays per GiB moved (user+sys, bulk runs)", "s/GiB", False,
     "{:.2f}"),
    ("conn_rate_1", "Connection rate at concurrency 1 (connect, 64 B echoed, close)", "conn/s",
     True, "{:.0f}"),
    ("conn_rate", "Connection rate at concurrency 50 (connect, 64 B echoed, close)", "conn/s",
     True, "{:.0f}"),
    ("conn_rate_500", "Connection rate at concurrency 500 (connect, 64 B echoed, close)",
     "conn/s", True, "{:.0f}"),
    ("lat1_p50_ms", "Time to first echoed byte unloaded (concurrency 1), p50", "ms", False,
     "{:.3f}"),
    ("lat1_p99_ms", "Time to first echoed byte unloaded (concurrency 1), p99", "ms", False,
     "{:.3f}"),
    ("lat_idle_p50_ms", "Time to first echoed byte after idle (one at a time, each 20 ms after "
     "the one before it ended), p50", "ms", False, "{:.3f}"),
    ("lat50_p50_ms", "Time to first echoed byte at concurrency 50, p50", "ms", False, "{:.2f}"),
    ("lat50_p99_ms", "Time to first echoed byte at concurrency 50, p99", "ms", False, "{:.2f}"),
    ("lat500_p50_ms", "Time to first echoed byte at concurrency 500, p50", "ms", False,
     "{:.2f}"),
    ("lat500_p99_ms", "Time to first echoed byte at concurrency 500, p99", "ms", False,
     "{:.2f}"),
    ("cpu_us_50_client", "CPU per connection, client relay, at concurrency 50 (user+sys)",
     "µs", False, "{:.0f}"),
    ("cpu_us_50_server", "CPU per connection, server relay, at concurrency 50 (user+sys)",
     "µs", False, "{:.0f}"),
    ("cpu_us_50_both", "CPU per connection, both relays, at concurrency 50 (user+sys)",
     "µs", False, "{:.0f}"),
    ("cpu_us_500_client", "CPU per connection, client relay, at concurrency 500 (user+sys)",
     "µs", False, "{:.0f}"),
    ("cpu_us_500_server", "CPU per connection, server relay, at concurrency 500 (user+sys)",
     "µs", False, "{:.0f}"),
    ("cpu_us_1_both", "CPU per connection, both relays, one at a time (user+sys; few "
     "connections: coarse)", "µs", False, "{:.0f}"),
    ("tls_hs_rate", "TLS handshakes/s of the server relay (openssl s_time -new; reference: "
     "openssl s_server with the same EC P-256 certificate as stunnel)", "handshakes/s", True,
     "{:.0f}"),
    ("rss_kib_per_conn_client", "RSS growth per idle connection held, client side", "KiB",
     False, "{:.1f}"),
    ("rss_kib_per_conn_server", "RSS growth per idle connection held, server side", "KiB",
     False, "{:.1f}"),
    ("pss_kib_per_conn_client", "PSS growth per idle connection held, client side "
     "(shared pages split between processes: fairer for socat's forks)", "KiB", False, "{:.1f}"),
    ("pss_kib_per_conn_server", "PSS growth per idle connection held, server side", "KiB",
     False, "{:.1f}"),
]
# Also summarized (median, min-max) but not given a table of their own: the harness.
HARNESS = ["lg_busy_1", "lg_busy_50", "lg_busy_500", "lg_us_1", "lg_us_50", "lg_us_500",
           "echo_us_1", "echo_us_50", "echo_us_500",
           "echo_busy_1", "echo_busy_50",
           "echo_busy_500", "cpu_us_1_client", "cpu_us_1_server", "cpu_us_500_both"]


def summarize(values):
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def cell(st, fmt):
    if st is None:
        return "–"
    if st["n"] == 1 or st["min"] == st["max"]:
        return f"{fmt.format(st['median'])}"
    return f"{fmt.format(st['median'])} ({fmt.format(st['min'])}–{fmt.format(st['max'])})"


def ratio(a, b):
    if a is None or b is None or b["median"] == 0:
        return "–"
    return f"{a['median'] / b['median']:.2f}×"


def machine_info(args):
    def cmd(argv, pattern=None):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10,
                               stdin=subprocess.DEVNULL)
            text = (r.stdout + r.stderr).strip()
        except (OSError, subprocess.TimeoutExpired):
            return "not found"
        if pattern:
            m = re.search(pattern, text)
            return m.group(0) if m else text.splitlines()[0] if text else "?"
        return text.splitlines()[0] if text else "?"

    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) // 1024} MiB"
    except (OSError, ValueError):
        pass
    return {
        "cpu": model, "cores": os.cpu_count(), "memory": mem,
        "kernel": platform.release(), "host": socket.gethostname(),
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
        "python": platform.python_version(),
        "openssl": cmd(["openssl", "version"]),
        "iperf3": cmd(["iperf3", "--version"]),
        "socat": cmd(["socat", "-V"], r"socat version [^ ]+"),
        "stunnel": cmd([shutil.which("stunnel4") or "stunnel", "-version"], r"stunnel [0-9.]+"),
        "v2ray-plugin": cmd(["ss-v2ray-plugin", "-version"], r"v2ray-plugin.*"),
        "kaminaric": cmd([args.kaminaric, "--version"]),
        "kaminaris": cmd([args.kaminaris, "--version"]),
        "kaminari_build": build_source(args.kaminaric),
        "baseline": (f"{args.baseline}: "
                     f"{cmd([os.path.join(args.baseline, 'kaminaric'), '--version'])}, "
                     f"{build_source(os.path.join(args.baseline, 'kaminaric'))}"
                     if args.baseline else None),
    }


def build_source(exe):
    """Where a binary was built from: the CMake source dir of its build dir and that tree's
    commit now (git describe --dirty), when it can be found."""
    cache = os.path.join(os.path.dirname(os.path.abspath(exe)), "CMakeCache.txt")
    try:
        with open(cache) as f:
            text = f.read()
    except OSError:
        return "source unknown (no CMakeCache.txt next to it)"
    m = re.search(r"^CMAKE_HOME_DIRECTORY:INTERNAL=(.*)$", text, re.M)
    if not m:
        return "source unknown"
    src = m.group(1).strip()
    bt = re.search(r"^CMAKE_BUILD_TYPE:[A-Z]+=(.*)$", text, re.M)
    try:
        r = subprocess.run(["git", "-C", src, "describe", "--always", "--dirty"],
                           capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
        rev = r.stdout.strip() or "not a git tree"
    except (OSError, subprocess.TimeoutExpired):
        rev = "?"
    return f"{bt.group(1) if bt else '?'} build of {src} (now at {rev})"


def micro_section(out):
    """Summary of the Google Benchmark JSON files that bench/run.sh leaves in the results dir."""
    lines = []
    path = os.path.join(out, "mask_bench.json")
    if os.path.exists(path):
        try:
            with open(path) as f:
                bm = json.load(f)["benchmarks"]
        except (OSError, ValueError, KeyError):
            bm = []
        rows = {}
        for b in bm:
            m = re.match(r"BM_(memcpy|apply_mask)/bytes:(\d+)/offset:(\d+)$", b.get("name", ""))
            if m and "bytes_per_second" in b:
                rows.setdefault((int(m.group(2)), int(m.group(3))), {})[m.group(1)] = \
                    b["bytes_per_second"] / 1e9
        if rows:
            lines += ["## Micro: masking vs memcpy (GB/s, Google Benchmark)", "",
                      "| payload | offset | apply_mask | memcpy | mask / memcpy |",
                      "|---:|---:|---:|---:|---:|"]
            for (size, off), r in sorted(rows.items()):
                a, c = r.get("apply_mask"), r.get("memcpy")
                rat = f"{a / c:.2f}" if a and c else "–"
                lines.append(f"| {size} | {off} | {a or 0:.1f} | {c or 0:.1f} | {rat} |")
            lines.append("")
    path = os.path.join(out, "codec_bench.json")
    if os.path.exists(path):
        try:
            with open(path) as f:
                bm = json.load(f)["benchmarks"]
        except (OSError, ValueError, KeyError):
            bm = []
        if bm:
            lines += ["## Micro: codec (Google Benchmark)", "",
                      "| benchmark | time/op | throughput |", "|---|---:|---:|"]
            for b in bm:
                if b.get("run_type") == "aggregate" or "real_time" not in b:
                    continue
                t = f"{b['real_time']:.1f} {b.get('time_unit', 'ns')}"
                if "bytes_per_second" in b:
                    thr = f"{b['bytes_per_second'] / 1e9:.2f} GB/s"
                elif "items_per_second" in b:
                    thr = f"{b['items_per_second'] / 1e6:.2f} M/s"
                else:
                    thr = ""
                lines.append(f"| {b['name']} | {t} | {thr} |")
            lines.append("")
    return lines


def targets_section(stats):
    """The targets of issue 6, as measured ratios (medians). ws means mask=skip (the default)."""

    def m(name, key):
        st = stats.get(name, {}).get(key)
        return st["median"] if st else None

    def r(a, b):
        return a / b if a is not None and b else None

    rows = [
        ("ws, 1 stream, vs socat pair", r(m("kaminari-ws-skip", "tput_1_up"),
                                          m("socat", "tput_1_up")), ">=", 2.0),
        ("ws, 1 stream, vs v2ray-plugin pair", r(m("kaminari-ws-skip", "tput_1_up"),
                                                 m("v2ray", "tput_1_up")), ">=", 4.0),
        ("tcp, 1 stream, vs direct", r(m("kaminari-tcp", "tput_1_up"),
                                       m("direct", "tput_1_up")), ">=", 0.5),
        ("ws, CPU/GiB both relays, vs socat", r(m("kaminari-ws-skip", "cpu_s_per_gib"),
                                                m("socat", "cpu_s_per_gib")), "<=", 0.3),
        ("tls, CPU/GiB both relays, vs stunnel", r(m("kaminari-tls", "cpu_s_per_gib"),
                                                   m("stunnel", "cpu_s_per_gib")), "<=", 0.7),
        ("wss, CPU/GiB both relays, vs stunnel", r(m("kaminari-wss", "cpu_s_per_gib"),
                                                   m("stunnel", "cpu_s_per_gib")), "<=", 0.7),
        ("ws, conn/s at concurrency 50, vs socat", r(m("kaminari-ws-skip", "conn_rate"),
                                                     m("socat", "conn_rate")), ">=", 8.0),
        ("tls, handshakes/s, vs openssl s_server", r(m("kaminari-tls", "tls_hs_rate"),
                                                     m("openssl-s_server", "tls_hs_rate")),
         ">=", 0.8),
    ]
    L = ["## Targets of issue 6 (ratios of medians; ws = mask=skip)", "",
         "| target | measured | goal | met |", "|---|---:|---:|:---:|"]
    for title, val, op, goal in rows:
        if val is None:
            L.append(f"| {title} | n/a | {op} {goal:g} | – |")
            continue
        ok = val >= goal if op == ">=" else val <= goal
        L.append(f"| {title} | {val:.2f}× | {op} {goal:g} | {'yes' if ok else 'no'} |")
    for name in [n for n in stats if n.startswith("kaminari-")]:
        c, sv = m(name, "rss_kib_per_conn_client"), m(name, "rss_kib_per_conn_server")
        if c is None or sv is None:
            continue
        ok = max(c, sv) <= 4.0
        L.append(f"| {name}, RSS per idle connection, client / server | {c:.1f} / {sv:.1f} KiB "
                 f"| <= 4 KiB | {'yes' if ok else 'no'} |")
    for name in ("kaminari-tcp", "kaminari-ws-skip", "kaminari-wss"):
        one, four = m(name, "tput_1_up"), m(name, "tput_4_up")
        if one and four:
            L.append(f"| {name}, 4 streams / 1 stream (scaling with threads) | {four / one:.2f}× "
                     f"| > 1 | {'yes' if four / one > 1.0 else 'no'} |")
    return L + [""]


# Issue 10's goals, as ratios to the baseline build (53f1371): conn/s at concurrency 50 at least,
# unloaded first-byte latency p50 at most. ws means mask=skip (the default).
BASELINE_GOALS = {"tcp": (2.1, 0.5), "ws-skip": (2.1, 0.4), "tls": (2.2, 0.35),
                  "ws-mux": (2.1, 0.4), "tls-mux": (2.2, 0.35),
                  "ws-pool": (2.1, 0.4), "tls-pool": (2.2, 0.35)}
# The ratio columns: key, title, higher is better.
BASELINE_RATIOS = [("conn_rate_1", "conn/s c=1", True), ("conn_rate", "conn/s c=50", True),
                   ("conn_rate_500", "conn/s c=500", True),
                   ("lat1_p50_ms", "p50 latency", False), ("lat1_p99_ms", "p99 latency", False),
                   ("lat_idle_p50_ms", "p50 after idle", False),
                   ("cpu_us_50_client", "CPU/conn client", False),
                   ("cpu_us_50_server", "CPU/conn server", False)]


def pair_ratios(stats, samples, a, b):
    """a / b for each BASELINE_RATIOS key: the ratio of medians, and the per-round ratios (the
    two ran at the same time, taking turns, in each round)."""
    row = {}
    for key, _, _ in BASELINE_RATIOS:
        x, y = stats[a].get(key), stats[b].get(key)
        if not x or not y or not y["median"]:
            continue
        per_round = []
        b_by_round = {r["round"]: r[key] for r in samples[b] if key in r}
        for r in samples[a]:
            if key in r and b_by_round.get(r["round"]):
                per_round.append(r[key] / b_by_round[r["round"]])
        row[key] = {"ratio": x["median"] / y["median"], "per_round": per_round}
    return row


def baseline_ratios(setups, stats, samples):
    """kaminari-X / base-X per mode; with the floor, also floor / base-tcp and kaminari-tcp /
    floor (rows named so that no goal applies to them)."""
    names = {s.name for s in setups}
    out = {}
    for s in setups:
        if s.kind != "kaminari":
            continue
        b = f"base-{MUX_BASE.get(s.mode, s.mode)}"
        if b not in names:
            continue
        out[s.mode if s.mode not in MUX_BASE else f"{s.mode} (÷ {b})"] = \
            pair_ratios(stats, samples, s.name, b)
    if "floor" in names:
        if "base-tcp" in names:
            out["floor (÷ base-tcp)"] = pair_ratios(stats, samples, "floor", "base-tcp")
        if "kaminari-tcp" in names:
            out["kaminari-tcp ÷ floor"] = pair_ratios(stats, samples, "kaminari-tcp", "floor")
    return out


def conn_section(setups, stats, na, cfg, ratios, out):
    """The connection-setup section: rates at concurrency 1/50/500, unloaded first-byte latency,
    relay CPU per connection, the load generator's own CPU; then the baseline ratios."""
    keys = ["conn_rate_1", "conn_rate", "conn_rate_500", "lat1_p50_ms", "lat1_p99_ms",
            "lat_idle_p50_ms", "cpu_us_50_client", "cpu_us_50_server", "cpu_us_50_both"]
    if not any(stats[s.name].get(k) for s in setups for k in keys):
        return []

    def med(name, key, fmt):
        st = stats[name].get(key)
        return fmt.format(st["median"]) if st else "–"

    def pct(name, key):
        st = stats[name].get(key)
        return f"{st['median'] * 100:.0f}%" if st else "–"

    L = ["## Connection setup (medians)", "",
         "Each connection: connect, send 64 B, read the 64 B echo, close. conn/s at concurrency "
         f"1, 50 and 500 ({cfg.conn_seconds:g} s each, in {cfg.slices} windows; c=1 stops after "
         f"{cfg.unloaded} connections); kaminari-X and base-X run at the same time, taking "
         "turns window by window (A B B A ...). First-echoed-byte latency p50/p99: one "
         "connection at a time (the c=1 run). p50 after idle: one connection at a time, "
         f"{cfg.idle} in all, each {cfg.idle_gap_ms} ms after the one before it ended (the "
         "tunnel idle in between, as when an app connects after a pause: a `pool` has refilled, "
         "and on a VM the idle processes' CPUs have gone to sleep). "
         "CPU µs per connection: user+sys of each relay "
         "process (`/proc/PID/stat`, forked children included) over the c=50 run divided by the "
         "connections that got their echo. The last column is the load generator's own "
         "CPU over the c=50 / c=500 runs (100% = one core: the run measures the load generator, "
         "not the tunnel). Per-round spread: the per-metric tables below.", "",
         "| setup | transport | conn/s c=1 | conn/s c=50 | conn/s c=500 | p50 ms c=1 "
         "| p99 ms c=1 | p50 ms after idle | CPU µs/conn client | CPU µs/conn server "
         "| CPU µs/conn both | load gen CPU c=50 / 500 |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in setups:
        if s.name in na and not any(stats[s.name].get(k) for k in keys):
            L.append(f"| {s.name} | {s.transport} |" + " n/a |" * 10)
            continue
        L.append(f"| {s.name} | {s.transport} | {med(s.name, 'conn_rate_1', '{:.0f}')} | "
                 f"{med(s.name, 'conn_rate', '{:.0f}')} | "
                 f"{med(s.name, 'conn_rate_500', '{:.0f}')} | "
                 f"{med(s.name, 'lat1_p50_ms', '{:.3f}')} | "
                 f"{med(s.name, 'lat1_p99_ms', '{:.3f}')} | "
                 f"{med(s.name, 'lat_idle_p50_ms', '{:.3f}')} | "
                 f"{med(s.name, 'cpu_us_50_client', '{:.0f}')} | "
                 f"{med(s.name, 'cpu_us_50_server', '{:.0f}')} | "
                 f"{med(s.name, 'cpu_us_50_both', '{:.0f}')} | "
                 f"{pct(s.name, 'lg_busy_50')} / {pct(s.name, 'lg_busy_500')} |")
    L.append("")
    # Where the harness caps: direct has no relay, so its rate is the harness's ceiling.
    capped = [s.name for s in setups for k in ("lg_busy_50", "lg_busy_500")
              if (stats[s.name].get(k) or {}).get("median", 0) >= 0.9]
    d = stats.get("direct", {})
    if d.get("conn_rate") and d.get("conn_rate_500"):
        L.append(f"Harness ceiling (`direct`, no relay): {d['conn_rate']['median']:.0f} conn/s at "
                 f"c=50, {d['conn_rate_500']['median']:.0f} at c=500, with the load generator "
                 f"at {pct('direct', 'lg_busy_50')} / {pct('direct', 'lg_busy_500')} of a core "
                 f"and the echo target at {pct('direct', 'echo_busy_50')} / "
                 f"{pct('direct', 'echo_busy_500')}.")
        lg, ec = d.get("lg_us_500"), d.get("echo_us_500")
        if lg and lg["median"]:
            L.append(f"The load generator spends {lg['median']:.0f} µs of CPU per connection at "
                     f"c=500 (direct), so one core of it tops out near "
                     f"{1e6 / lg['median']:.0f} conn/s; a setup close to that, or with its load "
                     "generator near 100%, is measured at the harness's limit."
                     + (f" With the echo target's {ec['median']:.0f} µs, the harness takes "
                        f"{lg['median'] + ec['median']:.0f} µs of CPU per connection that the "
                        "relays cannot have: on 2 cores, a tunnel's conn/s at c=50/500 is bounded "
                        "by 2 s / (harness + both relays' CPU per connection)."
                        if ec and ec["median"] else ""))
    if capped:
        L.append(f"Load generator at ≥ 90% of a core (rate capped by the harness) in: "
                 f"{', '.join(sorted(set(capped)))}.")
    if L[-1]:
        L.append("")
    if os.path.exists(os.path.join(out, "conn_setup.png")):
        L += ["![connection setup](conn_setup.png)", ""]
    if ratios:
        L += ["### kaminari vs the baseline build, and the floor (kaminari-X ÷ base-X)", "",
              "Ratio of medians, and in brackets the min–max of the per-round ratios (the two "
              "run at the same time, taking turns: with identical builds this is the "
              "instrument's noise). conn/s: higher is better; latency (unloaded, c=1) and CPU "
              "µs/conn (c=50): lower is better; p99 of a few hundred connections on a busy "
              "machine is mostly scheduling noise. Goal: issue 10 (conn/s c=50 at least, p50 at "
              "most). Rows `X-mux (÷ base-Y)` and `X-pool (÷ base-Y)`: kaminari with mux=8, "
              "or with pool=8 (and ed=2048 for ws and wss), against the baseline build's plain "
              "mode Y of the same transport (it has neither), measured in the same "
              "rounds but not at the same time. Rows with `floor`: a pair of "
              "`bench/floor_relay.c` (one thread, epoll, read/write, no socket options, timers "
              "or logs: the least a relay does per connection, most of it the kernel's TCP "
              "work), measured at the same time as kaminari-tcp and base-tcp; `floor (÷ "
              "base-tcp)` is as far as any relay could go in tcp mode on this machine and "
              "harness.", "",
              "| mode | " + " | ".join(t for _, t, _ in BASELINE_RATIOS) + " | goal c=50 / p50 "
              "| met |",
              "|---|" + "---:|" * len(BASELINE_RATIOS) + "---:|:---:|"]
        for mode, row in ratios.items():
            cells = []
            for key, _, _ in BASELINE_RATIOS:
                r = row.get(key)
                if not r:
                    cells.append("–")
                    continue
                pr = r["per_round"]
                spread = (f" ({min(pr):.2f}–{max(pr):.2f})" if len(pr) > 1 else "")
                cells.append(f"{r['ratio']:.2f}×{spread}")
            goal = BASELINE_GOALS.get(mode.split(" ")[0])
            met = "–"
            if goal:
                rc, rl = row.get("conn_rate"), row.get("lat1_p50_ms")
                if rc and rl:
                    met = ("conn/s " + ("yes" if rc["ratio"] >= goal[0] else "no") + ", p50 "
                           + ("yes" if rl["ratio"] <= goal[1] else "no"))
            gtxt = f"≥ {goal[0]:g}× / ≤ {goal[1]:g}×" if goal else "–"
            L.append(f"| {mode} | " + " | ".join(cells) + f" | {gtxt} | {met} |")
        L.append("")
    return L


def write_report(out, args, cfg, machine, setups, extra, samples, status, started, finished,
                 notes):
    stats = {}
    for s in setups + extra:
        stats[s.name] = {}
        for key in [m[0] for m in METRICS] + HARNESS:
            vals = [x[key] for x in samples[s.name] if key in x]
            stats[s.name][key] = summarize(vals)
    peers_present = [p for p in PEERS if p in stats]
    ratios = baseline_ratios(setups, stats, samples)
    result = {"started": started, "finished": finished, "machine": machine,
              "config": vars(cfg), "status": status, "samples": samples, "stats": stats,
              "baseline_ratios": ratios, "notes": notes}
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)

    L = [f"# kaminari tunnel benchmark — {started[:16].replace('T', ' ')} on {machine['host']}",
         ""]
    L += ["## Machine", "",
          f"- CPU: {machine['cpu']}, {machine['cores']} cores, {machine['memory']}",
          f"- kernel {machine['kernel']}, load average at start "
          f"{' '.join(machine['loadavg_at_start'])}",
          f"- {machine['openssl']}; {machine['iperf3']}; {machine['socat']}; "
          f"{machine['stunnel']}; {machine['v2ray-plugin']}; Python {machine['python']}",
          f"- {machine['kaminaric']} / {machine['kaminaris']}: "
          f"{machine.get('kaminari_build', '?')}"]
    if machine.get("baseline"):
        L.append(f"- baseline (base-*): {machine['baseline']}")
    L.append("")
    L += ["## Run", "",
          f"- mode: {'quick' if args.quick else 'full'}; rounds: {cfg.rounds} "
          f"(completed {status.get('rounds_done', 0)}); iperf3 -t {cfg.duration}; "
          f"connection rate {cfg.conn_seconds}s at concurrency 1, 50 and 500; unloaded "
          f"latency over up to {cfg.unloaded} connections; {cfg.hold} idle connections held "
          f"(socat: {min(cfg.hold, cfg.socat_hold)}, it forks a process per connection)"
          + (f"; skipped: {args.skip}" if args.skip else "")
          + (f"; setups: {args.only}" if args.only else ""),
          "- all on 127.0.0.1; every setup restarted for each measurement group; order rotated "
          "each round; cells are median (min–max) over rounds",
          "- targets: iperf3 -s; an epoll echo server and a load generator, each in its own "
          "process, "
          + ("in C (bench/conn_harness.c)" if CONN_HARNESS["exe"] else "in Python (run.py)")
          + ". The `direct` row is the ceiling of this harness.",
          "- peers: socat relay pair (tcp), stunnel4 pair with an EC P-256 certificate (tls), "
          "ss-v2ray-plugin pair in websocket mode with its default mux (ws); kaminari "
          f"server tls uses `servername={WS_HOST}`, client `sni={WS_HOST};insecure`",
          f"- wall time {status.get('seconds', 0):.0f} s", ""]
    na = {k: v for k, v in status.get("unavailable", {}).items()}
    if na:
        L += ["## Not available", "", "| setup | reason |", "|---|---|"]
        for k, v in na.items():
            L.append(f"| {k} | n/a: {v} |")
        L.append("")

    # Compact summary.
    L += ["## Summary (medians)", "",
          "| setup | transport | Gbit/s 1 stream | Gbit/s 4 streams | CPU s/GiB | conn/s @50 "
          "| p99 ms @50 | p50 ms @1 | RSS KiB/conn client / server |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|"]

    def med(name, key, fmt):
        st = stats[name].get(key)
        return fmt.format(st["median"]) if st else "–"

    for s in setups:
        if s.name in na and not samples[s.name]:
            L.append(f"| {s.name} | {s.transport} | n/a | n/a | n/a | n/a | n/a | n/a | n/a |")
            continue
        L.append(f"| {s.name} | {s.transport} | {med(s.name, 'tput_1_up', '{:.2f}')} | "
                 f"{med(s.name, 'tput_4_up', '{:.2f}')} | "
                 f"{med(s.name, 'cpu_s_per_gib', '{:.2f}')} | "
                 f"{med(s.name, 'conn_rate', '{:.0f}')} | "
                 f"{med(s.name, 'lat50_p99_ms', '{:.2f}')} | "
                 f"{med(s.name, 'lat1_p50_ms', '{:.3f}')} | "
                 f"{med(s.name, 'rss_kib_per_conn_client', '{:.1f}')} / "
                 f"{med(s.name, 'rss_kib_per_conn_server', '{:.1f}')} |")
    L.append("")

    na_all = {k for k in na if not samples.get(k)}
    L += conn_section(setups, stats, na_all, cfg, ratios, out)

    L += targets_section(stats)

    charts = [c for c in ("throughput.png", "cpu.png", "rss.png", "latency.png")
              if os.path.exists(os.path.join(out, c))]
    if charts:
        L += ["## Charts", ""] + [f"![{c[:-4]}]({c})" for c in charts] + [""]

    # One table per metric with ratios against each peer (value / peer value, medians).
    L += ["## Per metric, with ratios", "",
          "Ratio columns are this row's median divided by the peer's median (for s/GiB, ms "
          "and KiB lower is better).", ""]
    for key, title, unit, higher, fmt in METRICS:
        if not any(stats[s.name][key] for s in setups + extra):
            continue
        arrow = "higher is better" if higher else "lower is better"
        L += [f"### {title} [{unit}, {arrow}]", ""]
        head = "| setup | median (min–max) |" + "".join(f" ÷ {p} |" for p in peers_present)
        L += [head, "|---|---:|" + "---:|" * len(peers_present)]
        rows = setups + ([x for x in extra if stats[x.name][key]] if key == "tls_hs_rate" else [])
        for s in rows:
            if key == "tls_hs_rate" and s.transport != "tls":
                continue
            st = stats[s.name][key]
            if st is None and s.name in na:
                L.append(f"| {s.name} | n/a |" + " – |" * len(peers_present))
                continue
            row = f"| {s.name} | {cell(st, fmt)} |"
            row += "".join(f" {ratio(st, stats[p][key]) if p != s.name else '1.00×'} |"
                           for p in peers_present)
            L.append(row)
        L.append("")

    errs = [(s.name, e) for s in setups + extra for x in samples[s.name]
            for e in x.get("errors", [])]
    if errs or notes:
        L += ["## Errors and notes", ""]
        L += [f"- {n}" for n in notes]
        L += [f"- {name}: {e}" for name, e in errs[:60]]
        L.append("")
    L += micro_section(out)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(L) + "\n")
    return stats


def charts(out, setups, stats):
    gp = shutil.which("gnuplot")
    if not gp:
        return "gnuplot not installed: no charts (apt-get install gnuplot-nox)"
    names = [s.name for s in setups]

    def dat(fname, keys, floor=None):
        rows = 0
        with open(os.path.join(out, fname), "w") as f:
            f.write("# setup " + " ".join(f"{k} {k}_min {k}_max" for k in keys) + "\n")
            for n in names:
                cols = []
                for k in keys:
                    st = stats[n].get(k)
                    if st:
                        cols += [st["median"], st["min"], st["max"]]
                    else:
                        cols += [0, 0, 0]
                if not any(cols):
                    continue  # n/a, or a metric the setup has no value for (direct's CPU)
                rows += 1
                if floor is not None:
                    cols = [max(c, floor) for c in cols]
                f.write(f'"{n}" ' + " ".join(f"{c:.6g}" for c in cols) + "\n")
        return rows

    def chart(png, fname, keys, titles, ylabel, title, log=False, floor=0.1):
        """A histogram with min-max error bars; png None: no `set output` (a multiplot panel)."""
        if dat(fname, keys, floor=floor if log else None) == 0:
            return ""
        plots = []
        for i, t in enumerate(titles):
            c = 2 + 3 * i
            xt = ":xtic(1)" if i == 0 else ""
            plots.append(f"'{fname}' using {c}:{c + 1}:{c + 2}{xt} title '{t}'")
        return "\n".join(([f"set output '{png}'"] if png else []) + [
            f"set title '{title}'",
            f"set ylabel '{ylabel}'",
            f"set logscale y; set yrange [{floor}:*]" if log
            else "unset logscale y; set yrange [0:*]",
            "plot " + ", \\\n     ".join(plots),
        ]) + "\n"

    script = "\n".join([
        "set terminal pngcairo size 1100,520 font 'sans,10'",
        "set style data histogram",
        "set style histogram errorbars gap 1.5 lw 1",
        "set style fill solid 0.85 border -1",
        "set boxwidth 0.9",
        "set grid ytics",
        "set key top right",
        "set yrange [0:*]",
        "set xtics rotate by -30",
        "",
    ])
    script += chart("throughput.png", "throughput.dat",
                    ["tput_1_up", "tput_1_down", "tput_4_up", "tput_4_down"],
                    ["1 stream", "1 stream -R", "4 streams", "4 streams -R"],
                    "Gbit/s (median, min-max)", "Bulk throughput through the tunnel (iperf3)")
    script += chart("cpu.png", "cpu.dat", ["cpu_s_per_gib"], ["both relays"],
                    "CPU s per GiB (lower is better)", "CPU (user+sys) of both relays per GiB")
    script += chart("rss.png", "rss.dat", ["rss_kib_per_conn_client", "rss_kib_per_conn_server"],
                    ["client side", "server side"],
                    "KiB per idle connection, log scale (lower is better)",
                    "RSS growth per idle connection held (VmRSS; socat: summed over its forks)",
                    log=True)
    script += chart("latency.png", "latency.dat",
                    ["lat50_p50_ms", "lat50_p99_ms", "lat500_p50_ms", "lat500_p99_ms"],
                    ["p50 @50", "p99 @50", "p50 @500", "p99 @500"],
                    "ms, log scale (lower is better)",
                    "Time to first echoed byte under load (concurrency 50 and 500)",
                    log=True, floor=0.01)
    # Connection setup: conn/s by setup (c=1, 50, 500) next to the unloaded latency.
    left = chart(None, "conn_setup_rate.dat", ["conn_rate_1", "conn_rate", "conn_rate_500"],
                 ["c=1", "c=50", "c=500"], "connections/s (median, min-max)",
                 "Short connections/s (connect, 64 B echoed, close)")
    right = chart(None, "conn_setup_latency.dat", ["lat1_p50_ms", "lat1_p99_ms"],
                  ["p50", "p99"], "ms, log scale (median, min-max; lower is better)",
                  "Time to first echoed byte, one connection at a time", log=True, floor=0.01)
    if left and right:
        script += "\n".join(["set terminal pngcairo size 1500,560 font 'sans,10'",
                             "set output 'conn_setup.png'", "set multiplot layout 1,2",
                             left, right, "unset multiplot", ""])
    with open(os.path.join(out, "charts.gp"), "w") as f:
        f.write(script)
    try:
        r = subprocess.run([gp, "charts.gp"], cwd=out, capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "gnuplot timed out"
    return r.stderr.strip()[:300] if r.returncode else ""


# ---------------------------------------------------------------------------------------------
# Main


class Config:
    def __init__(self, args):
        quick = args.quick
        self.rounds = args.rounds or (2 if quick else 3)
        self.duration = args.duration or (1 if quick else 5)
        self.conn_seconds = args.conn_seconds or (1.5 if quick else 5.0)
        self.concurrency = 50
        self.warmup = 20  # connections before anything is measured
        self.settle = 0.2  # seconds after a rate run before the relays' CPU is read
        # Slices per connection-setup level: a setup and its twin take turns (A B B A ...).
        self.slices = args.slices or (2 if quick else 4)
        self.unloaded = args.unloaded or (200 if quick else 1000)
        # First-byte latency after idle: connections, and the pause before each.
        self.idle = args.idle if args.idle is not None else (20 if quick else 60)
        self.idle_gap_ms = 20
        self.hold = args.hold if args.hold is not None else 2000  # what issue 6 defines
        self.socat_hold = 200
        self.hold_seconds = 60
        self.hs_seconds = 2 if quick else 3
        self.budget = args.budget or (300 if quick else 3 * 3600)


def round_order(setups, rnd):
    """The setups of round `rnd`, in groups measured together (a setup alone, or kaminari-X
    with its base-X twin, and kaminari-tcp also with the floor): rotated by one each round, so drift on the machine hits all alike;
    in a pair the two take turns going first."""
    groups = []
    for s in setups:
        if (s.kind in ("baseline", "floor") and groups and groups[-1][0].kind == "kaminari"
                and groups[-1][0].mode == s.mode):
            groups[-1].append(s)
        else:
            groups.append([s])
    k = rnd % len(groups) if groups else 0
    return [g[::-1] if rnd % 2 else g for g in groups[k:] + groups[:k]]


def make_cert(workdir):
    cert, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                        f"/CN={WS_HOST}", "-addext", f"subjectAltName=DNS:{WS_HOST}",
                        "-keyout", key, "-out", cert], capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    if r.returncode:
        raise RuntimeError(f"openssl req failed: {r.stderr.strip()}")
    return cert, key


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="fewer rounds, shorter runs (about 5 min)")
    ap.add_argument("--out", help="results directory (default bench/results/<date>-<host>)")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--duration", type=int, help="iperf3 seconds per run")
    ap.add_argument("--conn-seconds", type=float, help="seconds per connection-rate run")
    ap.add_argument("--unloaded", type=int, help="connections for the unloaded latency")
    ap.add_argument("--idle", type=int, help="connections for the latency after idle, each "
                    "20 ms after the one before it (0: not measured)")
    ap.add_argument("--slices", type=int, help="connection setup: slices of --conn-seconds per "
                    "concurrency level, kaminari-X and base-X taking turns (quick 2, full 4)")
    ap.add_argument("--hold", type=int, help="idle connections held for the RSS measurement")
    ap.add_argument("--budget", type=float, help="wall-clock seconds; later rounds are skipped")
    ap.add_argument("--only", help="comma-separated setup names")
    ap.add_argument("--skip", default="", help="comma-separated groups to skip: bulk "
                    "(iperf3, CPU/GiB), conn (connection setup: rates, latency, CPU/conn), "
                    "hold (idle memory), tls (handshakes/s); --skip bulk,tls,hold leaves only "
                    "the connection-setup section")
    ap.add_argument("--kaminaric", default=os.environ.get(
        "KAMINARIC", os.path.join(REPO, "build-bench", "kaminaric")))
    ap.add_argument("--kaminaris", default=os.environ.get(
        "KAMINARIS", os.path.join(REPO, "build-bench", "kaminaris")))
    ap.add_argument("--baseline", default=os.environ.get("KAMINARI_BASELINE") or None,
                    metavar="DIR", help="a directory with another build's kaminaric and "
                    "kaminaris (default: $KAMINARI_BASELINE): run as the extra peers base-tcp, "
                    "base-ws-skip, ..., base-wss, with kaminari-X / base-X ratios")
    ap.add_argument("--harness", choices=("c", "python"), default="c",
                    help="connection setup's echo target and load generator: c "
                    "(bench/conn_harness.c, built with cc; the default, Python if cc cannot "
                    "build it) or python (this script's own, as before 2026-12-03)")
    # helper modes
    ap.add_argument("--echo", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--loadgen", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--holder", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.echo:
        return echo_server(args.echo)
    if args.loadgen:
        p, c, s, n = args.loadgen[:4]
        gap = float(args.loadgen[5]) / 1e3 if len(args.loadgen) > 5 else 0.0
        return loadgen(int(p), int(c), float(s), int(n), want_lat=args.loadgen[4:5] == ["lat"],
                       gap=gap)
    if args.holder:
        p, n, s = args.holder
        return holder(int(p), int(n), float(s))

    skip = set(args.skip.split(",")) - {""}
    bad = skip - {"bulk", "conn", "hold", "tls"}
    if bad:
        sys.exit(f"run.py: --skip: unknown group(s) {', '.join(sorted(bad))} "
                 "(groups: bulk, conn, hold, tls)")
    if args.baseline:
        args.baseline = os.path.abspath(args.baseline)
        for b in ("kaminaric", "kaminaris"):
            if not os.access(os.path.join(args.baseline, b), os.X_OK):
                sys.exit(f"run.py: --baseline {args.baseline}: no executable {b} there")
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    nofile = raise_nofile()
    cfg = Config(args)
    if nofile < 2 * cfg.hold + 256:
        cfg.hold = max(0, (nofile - 256) // 2)
    started = datetime.datetime.now().isoformat(timespec="seconds")
    out = args.out or os.path.join(
        REPO, "bench", "results",
        f"{datetime.datetime.now():%Y-%m-%d-%H%M}-{socket.gethostname()}")
    os.makedirs(out, exist_ok=True)
    t_start = time.monotonic()
    notes = []
    for tool in ("iperf3", "socat", "openssl"):
        if not shutil.which(tool):
            sys.exit(f"run.py: {tool} is required (bash scripts/setup.sh bench)")

    workdir = tempfile.mkdtemp(prefix="kaminari-bench-")
    status = {"unavailable": {}, "rounds_done": 0}
    samples = {}
    setups, extra = [], []
    machine = machine_info(args)
    try:
        if args.harness == "c":
            try:
                exe = os.path.join(workdir, "conn_harness")
                build_c("conn_harness", exe)
                CONN_HARNESS["exe"] = exe
            except Unavailable as e:
                notes.append(f"harness: the Python one ({e})")
                print(f"run.py: {e}; using the Python harness", file=sys.stderr)
        machine["harness"] = "c" if CONN_HARNESS["exe"] else "python"
        cert, key = make_cert(workdir)
        setups = make_setups(args, workdir, cert, key)
        if any(s.transport == "tls" for s in setups) and "tls" not in skip:
            extra = [SServer(cert, key)]
        samples = {s.name: [] for s in setups + extra}
        for s in setups:
            exe = {"stunnel": "stunnel4", "v2ray": "ss-v2ray-plugin"}.get(s.name)
            if exe and not shutil.which(exe):
                status["unavailable"][s.name] = f"{exe} not installed"
            if isinstance(s, Kaminari):
                for b in (s.kaminaric, s.kaminaris):
                    if not os.access(b, os.X_OK):
                        status["unavailable"][s.name] = f"{b} not found (build it first)"
        iperf = Iperf()
        if "bulk" not in skip:
            iperf.start()

        for rnd in range(cfg.rounds):
            elapsed = time.monotonic() - t_start
            if rnd > 0 and elapsed + elapsed / rnd > cfg.budget:
                notes.append(f"stopped after {rnd} rounds: the next would pass the "
                             f"{cfg.budget:.0f} s budget")
                break
            groups = round_order(setups, rnd)
            for s in extra:
                sample = {"round": rnd}
                try:
                    measure_tls_handshakes(s, cfg, sample)
                except Unavailable as e:
                    sample.setdefault("errors", []).append(str(e))
                samples[s.name].append(sample)
            for group in groups:
                group = [s for s in group if s.name not in status["unavailable"]]
                t0 = time.monotonic()
                gs = {s.name: {"round": rnd} for s in group}
                while group and "conn" not in skip:
                    try:
                        measure_rates(group, cfg, gs)
                        break
                    except Unavailable as e:
                        bad, why = e.args if len(e.args) == 2 else (group[0], str(e))
                        status["unavailable"][bad.name] = why
                        print(f"[round {rnd + 1}] {bad.name}: n/a: {why}", flush=True)
                        # Measure the rest again, alone.
                        group = [s for s in group if s is not bad]
                        gs = {s.name: {"round": rnd} for s in group}
                for s in group:
                    sample = gs[s.name]
                    try:
                        if "hold" not in skip and not s.conn_only:
                            measure_hold(s, cfg, sample)
                        if "tls" not in skip and s.transport == "tls":
                            measure_tls_handshakes(s, cfg, sample)
                        if "bulk" not in skip and not s.conn_only:
                            if not iperf.proc.alive():
                                iperf.restart()
                            measure_bulk(s, iperf, cfg, sample)
                    except Unavailable as e:
                        status["unavailable"][s.name] = str(e)
                        print(f"[round {rnd + 1}] {s.name}: n/a: {e}", flush=True)
                        continue
                    samples[s.name].append(sample)
                    shown = [m[0] for m in METRICS
                             if not m[0].startswith(("cpu_us_1", "lat500"))]
                    brief = ", ".join(f"{k}={sample[k]:.3g}" for k in shown if k in sample)
                    print(f"[round {rnd + 1}/{cfg.rounds}] {s.name} "
                          f"({time.monotonic() - t0:.0f}s{', with its twin' if len(gs) > 1 else ''}"
                          f"): {brief}" + (f" errors={sample['errors']}" if "errors" in sample
                                           else ""), flush=True)
            status["rounds_done"] = rnd + 1
    except KeyboardInterrupt as e:
        notes.append(f"interrupted ({e or 'Ctrl-C'}): partial results")
        print("run.py: interrupted, writing partial results", file=sys.stderr)
    finally:
        for s in setups + extra:
            s.stop()
        kill_all()
        shutil.rmtree(workdir, ignore_errors=True)
    status["seconds"] = time.monotonic() - t_start
    finished = datetime.datetime.now().isoformat(timespec="seconds")
    # Charts first (the report links the PNGs that exist), then the report.
    stats = write_report(out, args, cfg, machine, setups, extra, samples, status, started,
                         finished, notes)
    msg = charts(out, setups, stats)
    if msg:
        notes.append(f"charts: {msg}")
    write_report(out, args, cfg, machine, setups, extra, samples, status, started, finished,
                 notes)
    print(f"results: {os.path.join(out, 'results.md')}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        kill_all()
