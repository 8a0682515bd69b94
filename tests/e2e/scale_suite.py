"""The scale checks shared by test_scale.py and test_churn_ws.py: 2000 concurrent ws tunnels
held idle, then all carrying data byte-exact; many short connections in a row with no RSS
growth and no descriptor left behind in either program."""

import os
import selectors
import socket
import sys
import threading
import time

from fault_kit import (WS, SelectEcho, fd_count, raise_own_nofile, rss_kib, settle_fds,
                       tcp_sockets, wait_for)
from harness import HOST, Tunnel, assert_same, exchange

CONCURRENT = 2000
# 100 000 in a row take ~20 s per mode on 2 idle cores, but 50-80 s when test_scale.py and
# test_churn_ws.py run side by side on a loaded machine (ctest -j2 starts them together), so
# their scripts' deadlines leave room for that. KAMINARI_SHORT_CONNECTIONS lowers it.
SHORT = int(os.environ.get("KAMINARI_SHORT_CONNECTIONS", "100000"))
RSS_SLACK_KIB = 3 << 10
# Under AddressSanitizer freed memory sits in a quarantine by design, so RSS growth says
# nothing there; LeakSanitizer checks for leaks at exit instead.
CHECK_RSS = not os.environ.get("KAMINARI_SANITIZED")


def raise_limit_or_skip():
    """This process needs a descriptor per app socket and per target socket."""
    if raise_own_nofile(3 * CONCURRENT + 500) < 3 * CONCURRENT + 500:
        print("SKIP: cannot raise this process's descriptor limit", flush=True)
        sys.exit(0)


def warm_up(port, n=20):
    for _ in range(n):
        assert_same(exchange(port, b"warm"), b"warm", "warm-up")


def concurrent_idle_then_busy():
    echo = SelectEcho()
    tunnel = Tunnel(WS, WS, echo.port)
    warm_up(tunnel.client_port)
    base = (fd_count(tunnel.client.pid), fd_count(tunnel.server.pid))
    accepted0 = echo.accepted
    socks = []
    try:
        for _ in range(CONCURRENT):
            socks.append(socket.create_connection((HOST, tunnel.client_port), timeout=10))
        # Every tunnel is up (handshakes done) once the target has accepted them all.
        wait_for(lambda: echo.accepted - accepted0 >= CONCURRENT, 30,
                 f"{CONCURRENT} tunnels reach the target")
        time.sleep(1.0)  # held idle
        for p in (tunnel.client, tunnel.server):
            if p.poll() is not None:
                raise AssertionError(f"{p.args[0]} exited")
        held = (tcp_sockets(tunnel.client.pid, local_port=tunnel.client_port),
                tcp_sockets(tunnel.client.pid, remote_port=tunnel.server_port),
                tcp_sockets(tunnel.server.pid, local_port=tunnel.server_port),
                tcp_sockets(tunnel.server.pid, remote_port=echo.port))
        print(f"     sockets held: kaminaric {held[0]} app + {held[1]} remote, kaminaris "
              f"{held[2]} app + {held[3]} remote", flush=True)
        if min(held) < CONCURRENT:
            raise AssertionError(
                f"not every tunnel is held: kaminaric app/remote sockets {held[0]}/{held[1]}, "
                f"kaminaris app/remote sockets {held[2]}/{held[3]}, {CONCURRENT} expected")
        payloads = {}
        for i, s in enumerate(socks):
            payloads[s] = i.to_bytes(4, "big") + os.urandom(1020)
            s.sendall(payloads[s])
            s.shutdown(socket.SHUT_WR)
        received = {s: bytearray() for s in socks}
        sel = selectors.DefaultSelector()
        for s in socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        open_count = len(socks)
        deadline = time.monotonic() + 30
        while open_count and time.monotonic() < deadline:
            for key, _ in sel.select(1.0):
                try:
                    data = key.fileobj.recv(1 << 16)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    received[key.fileobj].extend(data)
                else:
                    sel.unregister(key.fileobj)
                    open_count -= 1
        sel.close()
        if open_count:
            raise AssertionError(f"{open_count} tunnels did not end within 30s")
        bad = [i for i, s in enumerate(socks) if bytes(received[s]) != payloads[s]]
        if bad:
            raise AssertionError(f"{len(bad)} tunnels not byte-exact, e.g. #{bad[0]}")
    finally:
        for s in socks:
            s.close()
    settle_fds(tunnel.client.pid, base[0], 10)
    settle_fds(tunnel.server.pid, base[1], 10)
    tunnel.close()
    echo.close()


def short_connections(opts):
    echo = SelectEcho()
    both = opts + (";" if opts else "") + "threads=2"
    tunnel = Tunnel(both, both, echo.port)
    procs = (tunnel.client, tunnel.server)
    counter = {"done": 0, "failed": 0}
    lock = threading.Lock()

    def batch(n, workers=4):
        def work(k):
            done = failed = 0
            for _ in range(k):
                try:
                    s = socket.create_connection((HOST, tunnel.client_port), timeout=10)
                    s.sendall(b"0123456789abcdef")
                    s.shutdown(socket.SHUT_WR)
                    got = b""
                    while chunk := s.recv(64):
                        got += chunk
                    s.close()
                    if got == b"0123456789abcdef":
                        done += 1
                    else:
                        failed += 1
                except OSError:
                    failed += 1
            with lock:
                counter["done"] += done
                counter["failed"] += failed

        threads = [threading.Thread(target=work, args=(n // workers,)) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()  # bounded by the script's Test deadline

    warm = max(2000, SHORT // 10)
    start = time.monotonic()
    batch(warm)
    time.sleep(0.5)
    fds0 = [fd_count(p.pid) for p in procs]
    rss0 = [rss_kib(p.pid) for p in procs]
    batch(SHORT - warm)
    took = time.monotonic() - start
    time.sleep(0.5)
    rss1 = [rss_kib(p.pid) for p in procs]
    for p, before in zip(procs, fds0):
        settle_fds(p.pid, before)
    print(f"     {counter['done']} connections in {took:.1f}s; RSS KiB client {rss0[0]} -> "
          f"{rss1[0]}, server {rss0[1]} -> {rss1[1]}", flush=True)
    if counter["failed"]:
        raise AssertionError(f"{counter['failed']} of the short connections failed")
    for name, a, b in zip(("kaminaric", "kaminaris"), rss0, rss1):
        if CHECK_RSS and b > a + RSS_SLACK_KIB:
            raise AssertionError(f"{name} RSS grew from {a} KiB to {b} KiB")
    tunnel.close()
    echo.close()
