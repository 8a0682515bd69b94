#!/usr/bin/env python3
"""CPU cost of one TLS connection through kaminaric + kaminaris, counted in instructions.

Each connection: connect to kaminaric, send 64 B, read the 64 B echo (from an echo target
behind kaminaris), close. Both relays run under valgrind's callgrind (user-space instructions,
"Ir", counted exactly: the figure does not depend on the load of the machine, unlike time;
hardware counters, perf stat -e instructions, are not available on this VM). After a warm-up,
both relays' counters are zeroed (callgrind_control -z), N connections go through one at a
time, and the counters are read (callgrind_control -d): Ir / N per relay. Kernel work
(syscalls) is not counted.

Each kind of handshake in a fresh pair of relays:

  resumed  the normal case: kaminaric offers a ticket from its session cache (every
           connection after the first), the server resumes the session (PSK with (EC)DHE).
  full     kaminaric runs with an LD_PRELOAD shim whose SSL_set_session() does nothing, so it
           never offers its cached session: every handshake is a full one on both sides, with
           the certificate, while everything else (tickets received and stored, the cache)
           is done as usual. The shim is built at run time with cc from the C text below.
  mixed    what a connection costs when C connections are in flight (--concurrency, 50): a
           native run (no valgrind: it slows the relays and so changes how connections
           overlap) of --mixed-conns connections after 2 x C warm-up ones counts the full and
           resumed handshakes in kaminaris's debug log, --share-rounds times per build (the
           builds take turns); the row is x * full + (1 - x) * resumed with x the mean share
           of full handshakes.

Options are the tunnel benchmark's tls setup: client `tls;sni=bench.local;insecure`, server
`tls;servername=bench.local` (self-signed P-256), `threads=1` on both (fewer threads to count;
the work per connection is the same), on 127.0.0.1.

With --syscalls, also the system calls per connection of each relay for full and resumed
handshakes: a native run, one connection at a time, `perf stat -e raw_syscalls:sys_enter -p`
on each relay (a tracepoint, exact; the kernel's work goes with it).

  python3 bench/handshake_cost.py BUILD_DIR [BASELINE_DIR] [--conns N] [--warmup W]
                                  [--concurrency C] [--mixed-conns M] [--syscalls] [--keep DIR]

With two build dirs the first is "after", the second "before" (the baseline), and the table
gives after/before. Needs valgrind (callgrind_control, vgdb) and a C compiler for the shim.
Under valgrind OpenSSL sees valgrind's CPU (its CPUID), so the absolute figures differ from a
native run's (X25519, for one, takes a generic code path); the comparison between builds is
what counts. Run to run, the full and resumed figures agree to about 0.1 %; the mixed row's
share moves by a few tenths of a point at c=50.
"""

import argparse
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
SNI = "bench.local"
CLIENT_OPTS = f"tls;sni={SNI};insecure;threads=1;loglevel=warn"
SERVER_OPTS = f"tls;servername={SNI};threads=1;loglevel=warn"
PAYLOAD = bytes(range(64))

SHIM_C = r"""
/* Never offer a cached session: every TLS handshake of the process is a full one. */
typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;
int SSL_set_session(SSL *s, SSL_SESSION *session) { (void)s; (void)session; return 1; }
"""


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Echo:
    """A threaded echo target on 127.0.0.1 (not measured)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.echo, args=(conn,), daemon=True).start()

    @staticmethod
    def echo(conn):
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def close(self):
        self.sock.close()


def one_connection(port, timeout=30.0):
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(PAYLOAD)
        got = b""
        while len(got) < len(PAYLOAD):
            chunk = s.recv(len(PAYLOAD) - len(got))
            if not chunk:
                raise RuntimeError(f"connection closed after {len(got)} of 64 echoed bytes")
            got += chunk
        if got != PAYLOAD:
            raise RuntimeError("echo differs from what was sent")


def wait_listening(port, proc, seconds=60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[-3]} exited with {proc.returncode}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port} after {seconds:.0f} s")


def callgrind(cmd, pid):
    r = subprocess.run(["callgrind_control", cmd, str(pid)], capture_output=True, text=True,
                       timeout=120, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"callgrind_control {cmd} {pid}: {r.stdout}{r.stderr}")


def dumped_ir(outdir, name):
    """Ir of the newest dump (callgrind_control -d) of the relay `name`."""
    files = sorted(glob.glob(os.path.join(outdir, f"{name}.out.*")), key=os.path.getmtime)
    dumps = [f for f in files if re.search(r"\.\d+\.\d+$", f)]
    if not dumps:
        raise RuntimeError(f"no callgrind dump of {name} in {outdir}")
    with open(dumps[-1]) as f:
        for line in f:
            m = re.match(r"(?:summary|totals):\s+(\d+)", line)
            if m:
                return int(m.group(1))
    raise RuntimeError(f"no totals in {dumps[-1]}")


def start(exe, listen, remote, opts, outdir, name, env=None, counted=True):
    argv = [exe, f"{HOST}:{listen}", f"{HOST}:{remote}", opts]
    if counted:
        argv = ["valgrind", "--tool=callgrind", "--quiet",
                f"--callgrind-out-file={os.path.join(outdir, name)}.out.%p"] + argv
    log = open(os.path.join(outdir, f"{name}.log"), "w")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=dict(os.environ, **(env or {})), start_new_session=True)


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_connections(port, conns, concurrency):
    """`conns` connections, `concurrency` at a time (a new one as soon as one ends)."""
    if concurrency <= 1:
        for _ in range(conns):
            one_connection(port)
        return
    left = [conns]
    lock = threading.Lock()
    errors = []

    def worker():
        while True:
            with lock:
                if left[0] == 0 or errors:
                    return
                left[0] -= 1
            try:
                one_connection(port, timeout=120.0)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} connections failed: {errors[0]}")


def handshake_kinds(log_path, offset):
    """(new, resumed) handshakes the server logged after `offset` (loglevel=debug)."""
    with open(log_path, errors="replace") as f:
        f.seek(offset)
        text = f.read()
    return (len(re.findall(r"TLS session new", text)),
            len(re.findall(r"TLS session resumed", text)))


def measure(build, mode, conns, warmup, shim, workdir):
    """(client Ir, server Ir) per connection for one build and mode (full or resumed)."""
    outdir = tempfile.mkdtemp(prefix=f"{os.path.basename(build.rstrip('/'))}-{mode}-",
                              dir=workdir)
    echo = Echo()
    sport, cport = free_port(), free_port()
    env = None
    if mode == "full":
        env = {"LD_PRELOAD": " ".join(filter(None, [shim, os.environ.get("LD_PRELOAD")]))}
    server = start(os.path.join(build, "kaminaris"), sport, echo.port, SERVER_OPTS, outdir,
                   "kaminaris")
    client = None
    try:
        wait_listening(sport, server)
        client = start(os.path.join(build, "kaminaric"), cport, sport, CLIENT_OPTS, outdir,
                       "kaminaric", env)
        wait_listening(cport, client)
        for _ in range(warmup):
            one_connection(cport)
        time.sleep(1.0)  # closes done on both relays
        for p in (client, server):
            callgrind("-z", p.pid)
        for _ in range(conns):
            one_connection(cport)
        time.sleep(1.0)
        for p in (client, server):
            callgrind("-d", p.pid)
        time.sleep(0.5)
        return (dumped_ir(outdir, "kaminaric") / conns, dumped_ir(outdir, "kaminaris") / conns)
    finally:
        for p in (client, server):
            if p is not None:
                stop(p)
        echo.close()


def full_share(build, conns, concurrency, workdir):
    """The share of full handshakes among `conns` connections with `concurrency` in flight,
    natively (not under valgrind, which slows the relays and so changes how many connections
    overlap) and with the relays' default threads, counted from kaminaris's debug log after a
    warm-up of 2 x concurrency connections."""
    outdir = tempfile.mkdtemp(prefix=f"{os.path.basename(build.rstrip('/'))}-share-",
                              dir=workdir)
    echo = Echo()
    sport, cport = free_port(), free_port()
    # The relays' default threads (one per core), as deployed.
    sopts = SERVER_OPTS.replace(";threads=1", "").replace("loglevel=warn", "loglevel=debug")
    server = start(os.path.join(build, "kaminaris"), sport, echo.port, sopts, outdir,
                   "kaminaris", counted=False)
    slog = os.path.join(outdir, "kaminaris.log")
    client = None
    try:
        wait_listening(sport, server)
        client = start(os.path.join(build, "kaminaric"), cport, sport,
                       CLIENT_OPTS.replace(";threads=1", ""), outdir, "kaminaric", counted=False)
        wait_listening(cport, client)
        run_connections(cport, 2 * concurrency, concurrency)
        time.sleep(0.5)
        offset = os.path.getsize(slog)
        run_connections(cport, conns, concurrency)
        time.sleep(0.5)
        new, resumed = handshake_kinds(slog, offset)
        return new / max(1, new + resumed)
    finally:
        for p in (client, server):
            if p is not None:
                stop(p)
        echo.close()


def syscalls(build, mode, conns, warmup, shim, workdir):
    """(client, server) system calls per connection, natively, one connection at a time:
    `perf stat -e raw_syscalls:sys_enter` on each relay (a tracepoint: exact, and available
    where hardware counters are not). The kernel's share of the work, which callgrind does
    not see, goes with the number of system calls."""
    outdir = tempfile.mkdtemp(prefix=f"{os.path.basename(build.rstrip('/'))}-sys-{mode}-",
                              dir=workdir)
    echo = Echo()
    sport, cport = free_port(), free_port()
    env = {"LD_PRELOAD": shim} if mode == "full" else None
    server = start(os.path.join(build, "kaminaris"), sport, echo.port, SERVER_OPTS, outdir,
                   "kaminaris", counted=False)
    client, perfs = None, []
    try:
        wait_listening(sport, server)
        client = start(os.path.join(build, "kaminaric"), cport, sport, CLIENT_OPTS, outdir,
                       "kaminaric", env, counted=False)
        wait_listening(cport, client)
        for _ in range(warmup):
            one_connection(cport)
        time.sleep(0.5)
        for p in (client, server):
            out = os.path.join(outdir, f"perf-{p.pid}.txt")
            perfs.append((out, subprocess.Popen(
                ["perf", "stat", "-x,", "-o", out, "-e", "raw_syscalls:sys_enter", "-p",
                 str(p.pid)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)))
        time.sleep(1.0)  # attached
        for _ in range(conns):
            one_connection(cport)
        time.sleep(0.5)
        counts = []
        for out, perf in perfs:
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=30)
            with open(out) as f:
                m = re.search(r"^(\d+),[^,]*,raw_syscalls:sys_enter", f.read(), re.M)
            if not m:
                raise RuntimeError(f"no syscall count in {out}")
            counts.append(int(m.group(1)) / conns)
        return tuple(counts)
    finally:
        for _, perf in perfs:
            if perf.poll() is None:
                perf.kill()
        for p in (client, server):
            if p is not None:
                stop(p)
        echo.close()


def build_shim(workdir):
    src = os.path.join(workdir, "no_resume.c")
    out = os.path.join(workdir, "no_resume.so")
    with open(src, "w") as f:
        f.write(SHIM_C)
    subprocess.run([os.environ.get("CC", "cc"), "-shared", "-fPIC", "-O2", "-o", out, src],
                   check=True)
    return out


def describe(build):
    src = None
    try:
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            for line in f:
                if line.startswith("CMAKE_HOME_DIRECTORY:") or line.startswith(
                        "kaminari_SOURCE_DIR:"):
                    src = line.split("=", 1)[1].strip()
                    break
    except OSError:
        pass
    rev = ""
    if src:
        r = subprocess.run(["git", "-C", src, "describe", "--always", "--dirty"],
                           capture_output=True, text=True)
        rev = r.stdout.strip()
    return f"{build} ({rev})" if rev else build


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build", help="dir with kaminaric and kaminaris (after)")
    ap.add_argument("baseline", nargs="?", help="another build dir (before)")
    ap.add_argument("--conns", type=int, default=200,
                    help="connections counted per build and handshake kind (200)")
    ap.add_argument("--warmup", type=int, default=10, help="connections before counting (10)")
    ap.add_argument("--concurrency", type=int, default=50,
                    help="connections in flight for the mixed row; 0: no mixed row (50)")
    ap.add_argument("--mixed-conns", type=int, default=2000,
                    help="connections whose handshakes are counted for the mixed row (2000)")
    ap.add_argument("--share-rounds", type=int, default=3,
                    help="native runs per build for the mixed row's share, averaged (3)")
    ap.add_argument("--syscalls", action="store_true",
                    help="also system calls per connection (perf stat tracepoint, native)")
    ap.add_argument("--keep", metavar="DIR",
                    help="keep the callgrind dumps and logs in DIR (for callgrind_annotate)")
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (apt-get install valgrind)")
    builds = [("after" if args.baseline else "build", os.path.abspath(args.build))]
    if args.baseline:
        builds.append(("before", os.path.abspath(args.baseline)))
    modes = ("full", "resumed")
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="kaminari-hs-", dir=args.keep)
    res, share, shares, sc = {}, {}, {}, {}
    try:
        shim = build_shim(workdir)
        for mode in modes:
            for label, build in builds:
                res[(label, mode)] = measure(build, mode, args.conns, args.warmup, shim, workdir)
                c, s = res[(label, mode)]
                print(f"# {label} {mode}: client {c:,.0f} server {s:,.0f} instructions/conn",
                      file=sys.stderr, flush=True)
        if args.syscalls:
            for mode in modes:
                for label, build in builds:
                    sc[(label, mode)] = syscalls(build, mode, args.conns, args.warmup, shim,
                                                 workdir)
        if args.concurrency > 0:
            # Rounds alternate the builds (A B B A ...), so the machine's drift hits both.
            shares = {label: [] for label, _ in builds}
            for r in range(args.share_rounds):
                for label, build in (builds if r % 2 == 0 else builds[::-1]):
                    x = full_share(build, args.mixed_conns, args.concurrency, workdir)
                    shares[label].append(x)
                    print(f"# {label}: {x:.1%} full handshakes at c={args.concurrency}",
                          file=sys.stderr, flush=True)
            share = {label: sum(v) / len(v) for label, v in shares.items()}
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    for label, _ in builds:
        if label in share:
            f, r, x = res[(label, "full")], res[(label, "resumed")], share[label]
            res[(label, "mixed")] = (x * f[0] + (1 - x) * r[0], x * f[1] + (1 - x) * r[1])

    print(f"instructions (callgrind Ir, user space) per tls connection: full and resumed "
          f"counted over {args.conns} connections after {args.warmup}")
    if share:
        print(f"mixed: {args.mixed_conns} connections with {args.concurrency} in flight (native "
              f"runs, {args.share_rounds} per build), x = mean share of full handshakes "
              f"(min-max); instructions = x*full + (1-x)*resumed")
    for label, build in builds:
        print(f"  {label}: {describe(build)}")
    head = "| handshake | relay | " + " | ".join(label for label, _ in builds)
    if args.baseline:
        head += " | after/before"
    print(head + " |")
    print("|" + "---|" * head.count("|"))
    for mode in modes + (("mixed",) if share else ()):
        for i, relay in enumerate(("client", "server", "both")):
            vals = [res[(label, mode)][i] if i < 2 else sum(res[(label, mode)])
                    for label, _ in builds]
            row = f"| {mode} | {relay} | " + " | ".join(f"{v:,.0f}" for v in vals)
            if args.baseline:
                row += f" | {vals[0] / vals[1]:.3f}"
            print(row + " |")
    for mode in modes if sc else ():
        for i, relay in enumerate(("client", "server")):
            vals = [sc[(label, mode)][i] for label, _ in builds]
            row = f"| {mode} | syscalls {relay} | " + " | ".join(f"{v:.1f}" for v in vals)
            if args.baseline:
                row += f" | {vals[0] / vals[1]:.3f}"
            print(row + " |")
    if share:
        row = "| mixed | full handshakes | " + " | ".join(
            f"{share[label]:.1%} ({min(shares[label]):.1%}-{max(shares[label]):.1%})"
            for label, _ in builds)
        print(row + (" | |" if args.baseline else " |"))


if __name__ == "__main__":
    main()
