"""UDP associations (`udp`): 500 source addresses at once through one kaminaric (ws), each its own
association (kaminaris sends each from a UDP socket of its own); associations that expire after
udp_timeout (the next datagram opens a new one); kaminaris killed and restarted in the middle of
a stream of datagrams (ws and tls): kaminaric opens a new association and replies resume."""

import select
import signal
import socket
import threading
import time

from harness import Test
from udp_kit import SANITIZED, UdpEcho, UdpTunnel, ask

ASSOCS = 200 if SANITIZED else 500

test = Test(deadline=240)
echo = UdpEcho()


def many_at_once():
    t = UdpTunnel("ws", echo.port, extra=";udp_timeout=30")
    socks = []
    try:
        before = len(echo.sources)
        for i in range(ASSOCS):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            socks.append(s)
        for i, s in enumerate(socks):
            s.sendto(f"association {i}".encode() * (1 + i % 7), t.local)
        got = {}
        end = time.monotonic() + 60
        index = {s.fileno(): i for i, s in enumerate(socks)}
        while len(got) < ASSOCS and time.monotonic() < end:
            ready, _, _ = select.select([s for s in socks if index[s.fileno()] not in got], [], [],
                                        0.5)
            for s in ready:
                i = index[s.fileno()]
                got[i] = s.recv(70000)
        wrong = [i for i in range(ASSOCS) if got.get(i) != f"association {i}".encode() * (1 + i % 7)]
        if wrong:
            raise AssertionError(f"{len(wrong)} of {ASSOCS} without the right reply, e.g. {wrong[:5]}"
                                 f"\n{t.logs()}")
        new_sources = len(echo.sources) - before
        if new_sources != ASSOCS:
            raise AssertionError(f"{new_sources} kaminaris sockets for {ASSOCS} associations")
        # A second round on the same associations: no new socket at the target.
        for i, s in enumerate(socks):
            s.sendto(b"again %d" % i, t.local)
        seen = 0
        end = time.monotonic() + 30
        while seen < ASSOCS and time.monotonic() < end:
            ready, _, _ = select.select(socks, [], [], 0.5)
            for s in ready:
                d = s.recv(70000)
                if d != b"again %d" % index[s.fileno()]:
                    raise AssertionError(f"wrong second reply {d[:20]!r}")
                seen += 1
        if seen != ASSOCS or len(echo.sources) - before != ASSOCS:
            raise AssertionError(f"second round: {seen} replies, {len(echo.sources) - before} sockets")
    finally:
        for s in socks:
            s.close()
        t.close()


def expiring():
    t = UdpTunnel("ws", echo.port, extra=";udp_timeout=1;loglevel=debug")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if ask(t.local, b"first", sock=s) != b"first":
            raise AssertionError(f"no reply\n{t.logs()}")
        first = echo.source_of[b"first"]
        time.sleep(2.5)
        if "idle" not in t.client.stderr_text() and "(idle)" not in t.server.stderr_text():
            raise AssertionError(f"no association ended as idle\n{t.logs()}")
        if ask(t.local, b"second", sock=s) != b"second":
            raise AssertionError(f"no reply after expiry\n{t.logs()}")
        second = echo.source_of[b"second"]
        if first == second:
            raise AssertionError(f"expected a new kaminaris socket after expiry: {first} {second}")
    finally:
        s.close()
        t.close()


def restarted(transport):
    t = UdpTunnel(transport, echo.port, extra=";udp_timeout=30")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(t.local)
    s.setblocking(False)
    replies = []
    stop = threading.Event()
    sent = [0]

    def sender():
        while not stop.is_set():
            s.send(b"seq %d" % sent[0])
            sent[0] += 1
            time.sleep(0.02)

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    try:
        def collect(until):
            while time.monotonic() < until:
                r, _, _ = select.select([s], [], [], 0.1)
                if r:
                    try:
                        replies.append((time.monotonic(), s.recv(70000)))
                    except (BlockingIOError, ConnectionRefusedError):
                        pass

        collect(time.monotonic() + 1.0)
        before = len(replies)
        if before < 10:
            raise AssertionError(f"only {before} replies before the restart\n{t.logs()}")
        t.server.send_signal(signal.SIGKILL)
        t.server.wait()
        collect(time.monotonic() + 0.5)
        restart_at = time.monotonic()
        t.start_server()
        collect(time.monotonic() + 4.0)
        after = [d for (at, d) in replies if at > restart_at]
        if len(after) < 20:
            raise AssertionError(f"{len(after)} replies in 4 s after the restart\n{t.logs()}")
        bad = [d for (_, d) in replies if not d.startswith(b"seq ")]
        if bad:
            raise AssertionError(f"corrupt replies: {bad[:3]}")
        seqs = [int(d[4:]) for (_, d) in replies]
        if seqs != sorted(seqs):
            raise AssertionError("replies out of order")
        print(f"     {transport}: {before} replies before, {len(after)} within 4 s of the restart "
              f"({sent[0]} sent)", flush=True)
    finally:
        stop.set()
        th.join(2)
        s.close()
        t.close()


test.check(f"{ASSOCS} associations at once, each its own kaminaris socket", many_at_once)
test.check("an idle association expires after udp_timeout; the next datagram opens a new one",
           expiring)
for transport in ("ws", "tls"):
    test.check(f"{transport}: kaminaris killed and restarted mid-stream; replies resume",
               restarted, transport)
echo.close()
test.done()
