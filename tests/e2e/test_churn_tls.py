"""Short tls and wss tunnel connections in a row (issue 10; test_churn_ws.py and test_scale.py
cover tcp and ws with 100 000): each connection carries a small random payload that must come
back byte-exact, then both sides close. Afterwards neither program holds a connection socket
and neither holds more other descriptors than after the warm-up; RSS does not grow beyond a
slack (not checked under sanitizers, whose quarantine keeps freed memory). A third run names
kaminaris's target ("localhost", as one on another host would be named), so that each
connection's target is dialed during its TLS handshake (net::dial_ahead).

Counts: 3000 per mode, 400 with KAMINARI_SANITIZED=1 (the ASan stage of scripts/test.sh);
KAMINARI_TLS_CHURN sets it. Every connection does a TLS handshake (a resumed one when
kaminaric holds a session ticket), so a connection costs far more than in the tcp/ws churn:
about 200 a second here on 2 loaded cores, 3000 take 10-20 s per mode."""

import os
import signal
import socket
import sys
import threading
import time

from fault_kit import SelectEcho, raise_own_nofile, rss_kib, wait_for
from harness import HOST, Test, Tunnel

SANITIZED = bool(os.environ.get("KAMINARI_SANITIZED"))
COUNT = int(os.environ.get("KAMINARI_TLS_CHURN", "400" if SANITIZED else "3000"))
WARM = max(200, COUNT // 5)   # connections before the baseline: caches and pools fill up
WORKERS = 4
RSS_SLACK_KIB = 3 << 10
CHECK_RSS = not SANITIZED

WS = "ws;host=example.com;path=/ws"
# (name, client options, server options, how kaminaris names its target). With the target
# named, as one on another host would be, kaminaris dials it during each TLS handshake
# (net::dial_ahead); at 127.0.0.1, after it.
MODES = (
    ("tls", "tls;sni=example.com;insecure", "tls;servername=example.com", None),
    ("wss", f"{WS};tls;insecure", f"{WS};tls;servername=example.com", None),
    ("tls, target named", "tls;sni=example.com;insecure", "tls;servername=example.com",
     "localhost"),
)


def socket_inodes(pid):
    """(the inodes of the process's sockets, how many descriptors it has)."""
    sockets = set()
    total = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        total += 1
        if target.startswith("socket:["):
            sockets.add(target[8:-1])
    return sockets, total


def listening_sockets(pid):
    """The inodes of the process's listening sockets, read once: the kernel's TCP tables can
    hold tens of thousands of TIME_WAIT rows after a churn (seconds to read)."""
    sockets, _ = socket_inodes(pid)
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.readlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in sockets:  # 0A = LISTEN
                listening.add(fields[9])
    if not listening:
        raise AssertionError(f"no listening socket found for process {pid}")
    return listening


def connection_sockets(pid, listening):
    """(sockets of the process that are not listening, all its other descriptors). A socket
    still being torn down counts as a connection socket, also once it has left the kernel's
    TCP tables (state CLOSE, descriptor still open), so the second figure does not depend on
    how far earlier connections have got with closing. (Neither program holds sockets of
    another kind: Asio wakes its threads with an eventfd and delivers signals by a pipe.)"""
    sockets, total = socket_inodes(pid)
    conns = len(sockets - listening)
    return conns, total - conns


def quiet_descriptors(pid, listening, what, timeout=15.0):
    """Waits until the process holds no connection socket; returns its other descriptors."""
    state = {}

    def no_connections():
        state["now"] = connection_sockets(pid, listening)
        return state["now"][0] == 0

    try:
        wait_for(no_connections, timeout, f"{what} closes every connection socket")
    except AssertionError:
        raise AssertionError(f"{what} still holds {state['now'][0]} connection sockets "
                             f"{timeout}s after the last connection ended") from None
    return state["now"][1]


def counted_while_open(tunnel, procs, listening):
    """The instrument: while one tunnel connection is open, each program holds at least two
    connection sockets (its app side and its remote side) by connection_sockets' count."""
    s = socket.create_connection((HOST, tunnel.client_port), timeout=20)
    try:
        s.sendall(b"held")
        got = b""
        while len(got) < 4 and (chunk := s.recv(16)):
            got += chunk
        if got != b"held":
            raise AssertionError(f"held connection: {got!r} back instead of b'held'")
        for who, p in procs:
            conns = connection_sockets(p.pid, listening[p.pid])[0]
            if conns < 2:
                raise AssertionError(f"{who}: {conns} connection sockets counted while a "
                                     "tunnel connection is open; the count is broken")
    finally:
        s.close()


def churn(name, client_opts, server_opts, target_host):
    echo = SelectEcho()
    tunnel = Tunnel(f"{client_opts};threads=2", f"{server_opts};threads=2", echo.port,
                    target_host=target_host)
    procs = (("kaminaric", tunnel.client), ("kaminaris", tunnel.server))
    listening = {p.pid: listening_sockets(p.pid) for _, p in procs}
    counter = {"done": 0, "failed": 0, "first_error": None}
    lock = threading.Lock()

    def one():
        data = os.urandom(16 + os.urandom(1)[0] % 49)
        s = socket.create_connection((HOST, tunnel.client_port), timeout=20)
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)  # the echo target ends its side after the echo
            got = b""
            while chunk := s.recv(256):
                got += chunk
        finally:
            s.close()
        if got != data:
            raise AssertionError(f"{len(got)} bytes back of {len(data)}, or different")

    def batch(n):
        def work(k):
            done = failed = 0
            first = None
            for _ in range(k):
                try:
                    one()
                    done += 1
                except (OSError, AssertionError) as e:
                    failed += 1
                    first = first or repr(e)
            with lock:
                counter["done"] += done
                counter["failed"] += failed
                counter["first_error"] = counter["first_error"] or first

        threads = [threading.Thread(target=work, args=(n // WORKERS + (i < n % WORKERS),),
                                    daemon=True)
                   for i in range(WORKERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()  # bounded by the script's Test deadline

    try:
        start = time.monotonic()
        batch(WARM)
        counted_while_open(tunnel, procs, listening)
        base = [quiet_descriptors(p.pid, listening[p.pid], who) for who, p in procs]
        rss0 = [rss_kib(p.pid) for _, p in procs]
        batch(COUNT - WARM)
        took = time.monotonic() - start
        after = [quiet_descriptors(p.pid, listening[p.pid], who) for who, p in procs]
        rss1 = [rss_kib(p.pid) for _, p in procs]
        print(f"     {counter['done']} connections in {took:.1f}s "
              f"({counter['done'] / took:.0f}/s); other descriptors kaminaric {base[0]} -> "
              f"{after[0]}, kaminaris {base[1]} -> {after[1]}; RSS KiB kaminaric {rss0[0]} -> "
              f"{rss1[0]}, kaminaris {rss0[1]} -> {rss1[1]}", flush=True)
        if counter["failed"]:
            raise AssertionError(f"{counter['failed']} of {COUNT} connections failed, e.g. "
                                 f"{counter['first_error']}\n{tunnel.logs()[-3000:]}")
        for (who, p), a, b in zip(procs, base, after):
            if b > a:
                # Give a descriptor that is on its way out a moment, then insist.
                fds = listening[p.pid]
                wait_for(lambda p=p, a=a, fds=fds: connection_sockets(p.pid, fds)[1] <= a, 5,
                         f"{who}: other descriptors back to {a} (now {b})")
        for (who, _), a, b in zip(procs, rss0, rss1):
            if CHECK_RSS and b > a + RSS_SLACK_KIB:
                raise AssertionError(f"{who} RSS grew from {a} KiB to {b} KiB over "
                                     f"{COUNT - WARM} connections")
        tunnel.close()
    finally:
        for _, p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        echo.close()


if raise_own_nofile(1024) < 256:
    print("SKIP: cannot raise this process's descriptor limit", flush=True)
    sys.exit(0)
test = Test(deadline=240)
# SIGTERM (e.g. from a runner that gives up) exits through atexit, which kills every process
# this test started, instead of leaving them behind.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
for mode in MODES:
    test.check(f"{mode[0]}: {COUNT} short connections byte-exact, no descriptor left behind, "
               "no RSS growth", churn, *mode)
test.done()
