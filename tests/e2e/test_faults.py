"""Faults kaminaric and kaminaris must survive, each on loopback with a bounded time: running
out of descriptors, garbage and broken websocket input next to a healthy tunnel, peers that
reset or close at the same moment, a target that stops listening, SIGTERM under load, SIGPIPE.
Every check also proves that the other connections carried on byte-exact."""

import os
import select
import signal
import socket
import subprocess
import threading
import time

from fault_kit import (WS, ScriptedTarget, SelectEcho, cpu_over, fd_count, ignores_signal,
                       nofile_limit, read_all, reset_close, settle_fds, wait_for, ws_connect,
                       ws_frame, ws_request)
from harness import (HOST, KAMINARIC, KAMINARIS, Proc, Test, Tunnel, addr,
                     assert_same, exchange, free_port, wait_port)

test = Test(deadline=85)


def start(prog, remote_port, opts, **kw):
    port = free_port()
    proc = Proc([prog, addr(HOST, port), addr(HOST, remote_port), opts], **kw)
    wait_port(port, proc=proc)
    return proc, port


def exchange_retry(port, data, within=8.0):
    """exchange() until it returns `data`: right after descriptors free up, a connection may
    still be closed at once (a connect that failed with EMFILE)."""
    end = time.monotonic() + within
    while True:
        try:
            got = exchange(port, data, timeout=10)
        except AssertionError:  # reset: the connection was accepted, then dropped
            if time.monotonic() > end:
                raise
            got = None
        if got == data or time.monotonic() > end:
            return got
        time.sleep(0.1)


def stream(port, seconds_max, stop, result, chunk=64 << 10, pace=0.0, progress=None):
    """Sends b'E' and random chunks to port until `stop` is set (sleeping `pace` between
    chunks), reading the echo as it comes; appends (sent, received) to `result` at the end.
    `progress`, when given, holds the bytes received so far as its only item."""
    s = socket.create_connection((HOST, port), timeout=seconds_max)
    sent = bytearray(b"E")
    s.sendall(sent)
    got = bytearray()

    def reader():
        try:
            while data := s.recv(1 << 16):
                got.extend(data)
                if progress is not None:
                    progress[:] = [len(got)]
        except OSError:
            pass

    t = threading.Thread(target=reader)
    t.start()
    try:
        while not stop.is_set():
            data = os.urandom(chunk)
            s.sendall(data)
            sent.extend(data)
            if pace:
                time.sleep(pace)
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    t.join(seconds_max)
    s.close()
    result.append((bytes(sent), bytes(got)))


def warm_up(port):
    """A few connections first: each worker's reactor opens its descriptors on first use, and
    those must not count as a leak."""
    for _ in range(8):
        assert_same(exchange(port, b"E warm"), b"E warm", "warm-up")


# --- out of file descriptors -------------------------------------------------------------

def starve(name, proc, port, nofile):
    """Opens more connections to `port` than `proc` has descriptors for, holding them open."""
    warm_up(port)
    baseline = fd_count(proc.pid)
    held = []
    for i in range(3 * nofile):
        s = socket.create_connection((HOST, port), timeout=5)
        s.sendall(b"E held %d\n" % i)
        held.append(s)
    wait_for(lambda: "Too many open files" in proc.stderr_text(), 5,
             f"{name}: the log says descriptors ran out")
    time.sleep(0.3)
    # Starved: the listener stays readable, so a retry without back-off would spin a core.
    used = cpu_over(proc.pid, 1.0)
    if proc.poll() is not None:
        raise AssertionError(f"{name} exited with {proc.returncode}:\n{proc.stderr_text()}")
    if used > 0.25:
        raise AssertionError(f"{name} used {used:.2f}s of CPU in 1s while out of descriptors")
    # The connections it did take still work.
    served = 0
    readable, _, _ = select.select(held, [], [], 1.0)
    for s in readable:
        try:
            if s.recv(64).startswith(b"E held"):
                served += 1
        except OSError:
            pass
    if served == 0:
        raise AssertionError(f"{name}: not one held connection was served")
    for s in held:
        s.close()
    # ScriptedTarget reads its behaviour from the first byte: b"E", echo (random data may
    # start with b"R" or b"C", which reset or close by design).
    data = b"E" + os.urandom(256 << 10)
    assert_same(exchange_retry(port, data), data, f"{name} after descriptors freed up")
    for _ in range(5):
        assert_same(exchange_retry(port, data[:1000]), data[:1000], f"{name} again")
    settle_fds(proc.pid, baseline)


def fd_exhaustion():
    target = ScriptedTarget()
    nofile = 32
    # kaminaris in tcp mode (splice: 2 sockets and up to 4 pipe ends per connection).
    server, sport = start(KAMINARIS, target.port, "threads=2", preexec_fn=nofile_limit(nofile))
    # kaminaric in ws mode in front of an unconstrained kaminaris.
    wserver, wsport = start(KAMINARIS, target.port, WS)
    client, cport = start(KAMINARIC, wsport, WS + ";threads=2",
                          preexec_fn=nofile_limit(nofile))
    try:
        starve("kaminaris tcp", server, sport, nofile)
        starve("kaminaric ws", client, cport, nofile)
        for p in (server, client, wserver):
            if p.stop() != 0:
                raise AssertionError(f"exit code {p.returncode} after SIGTERM")
    finally:
        target.close()


# --- garbage and bad websocket frames next to a healthy tunnel -----------------------------

CLOSE_1002 = b"\x88\x02\x03\xea"
CLOSE_1003 = b"\x88\x02\x03\xeb"

BAD_FRAMES = [
    ("64-bit length with the top bit set", b"\x82\xff\x80" + b"\0" * 7 + b"\0\0\0\0",
     CLOSE_1002),
    ("ping with 126 bytes", ws_frame(0x9, b"p" * 126), CLOSE_1002),
    ("close with 126 bytes", ws_frame(0x8, b"\x03\xe8" + b"c" * 124), CLOSE_1002),
    ("reserved data opcode 3", ws_frame(0x3, b"abc"), CLOSE_1002),
    ("reserved control opcode 0xb", ws_frame(0xB, b""), CLOSE_1002),
    ("RSV1 set", bytes([0xC2]) + ws_frame(0x2, b"abc")[1:], CLOSE_1002),
    ("unmasked client frame", b"\x82\x03abc", CLOSE_1002),
    ("fragmented ping", ws_frame(0x9, b"x", fin=False), CLOSE_1002),
    ("continuation with nothing to continue", ws_frame(0x0, b"abc"), CLOSE_1002),
    ("text frame", ws_frame(0x1, b"hello"), CLOSE_1003),
    ("bad frame after good data", ws_frame(0x3, b""), CLOSE_1002),
]


def bad_input():
    target = ScriptedTarget()
    tunnel = Tunnel(WS, WS + ";handshake_timeout=2", target.port)
    stop = threading.Event()
    result = []
    progress = []
    healthy = threading.Thread(target=stream,
                               args=(tunnel.client_port, 30, stop, result, 16 << 10, 0.001,
                                     progress))
    healthy.start()
    try:
        # The healthy tunnel is up and flowing before the bad input starts (its own handshake
        # is under the same 2 s handshake_timeout).
        wait_for(lambda: progress and progress[0] >= 64 << 10, 15.0,
                 "the healthy tunnel echoing 64 KiB")
        port = tunnel.server_port

        def raw(data, shut=False, timeout=5):
            s = socket.create_connection((HOST, port), timeout=timeout)
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
            got, how = read_all(s, timeout)
            s.close()
            return got, how

        for what, data in [("garbage", os.urandom(300) + b"\r\n\r\n"),
                           ("not HTTP", b"SSH-2.0-OpenSSH_9.2\r\n\r\n"),
                           ("bad request line", b"GET\r\n\r\n")]:
            got, how = raw(data)
            if not got.startswith(b"HTTP/1.1 400 ") or how != "eof":
                raise AssertionError(f"{what}: got {got[:40]!r} then {how}")
        for what, data in [("33 headers", ws_request()[:-2] + b"X-A: b\r\n" * 28 + b"\r\n"),
                           ("a 9 KiB head", ws_request()[:-2] + b"X-A: " + b"b" * 9000)]:
            got, how = raw(data)
            if not got.startswith(b"HTTP/1.1 431 ") or how == "timeout":
                raise AssertionError(f"{what}: got {got[:40]!r} then {how}")
        # A truncated handshake: the client ends its side, the server ends the connection.
        got, how = raw(ws_request()[:40], shut=True)
        if got or how != "eof":
            raise AssertionError(f"truncated then EOF: got {got[:40]!r} then {how}")
        # A truncated handshake that stalls is dropped at handshake_timeout (2 s).
        start = time.monotonic()
        got, how = raw(ws_request()[:40], timeout=6)
        took = time.monotonic() - start
        if got or how != "eof" or not 1.8 < took < 4:
            raise AssertionError(f"stalled handshake: {got[:40]!r}, {how} after {took:.2f}s")

        for what, frame, want in BAD_FRAMES:
            s = ws_connect(port)
            if what == "bad frame after good data":
                # A relayed connection first: its echo comes back in a server frame.
                s.sendall(ws_frame(0x2, b"E fine"))
                echo = b""
                while len(echo) < 8:
                    echo += s.recv(8 - len(echo))
                if echo != b"\x82\x06E fine":
                    raise AssertionError(f"{what}: expected the echo first, got {echo!r}")
            s.sendall(frame)
            got, how = read_all(s, 5)
            s.close()
            if got != want or how != "eof":
                raise AssertionError(f"{what}: expected {want!r} then EOF, got {got[:20]!r} "
                                     f"then {how}")
        if tunnel.server.poll() is not None:
            raise AssertionError("kaminaris exited")
    finally:
        stop.set()
        healthy.join(30)
    sent, got = result[0]
    if len(sent) < 1 << 20:
        raise AssertionError(f"the healthy stream moved only {len(sent)} bytes")
    assert_same(got, sent, "healthy ws stream during the bad input")
    data = os.urandom(1 << 20)
    assert_same(exchange(tunnel.client_port, b"E" + data), b"E" + data, "after the bad input")
    tunnel.close()
    target.close()


# --- resets, simultaneous closes, a target that goes away ----------------------------------

def resets(mode_opts):
    target = ScriptedTarget()
    tunnel = Tunnel(mode_opts, mode_opts, target.port)
    stop = threading.Event()
    result = []
    healthy = threading.Thread(target=stream,
                               args=(tunnel.client_port, 30, stop, result, 16 << 10, 0.001))
    healthy.start()
    try:
        # The app resets mid-transfer: the target's connection must end promptly.
        s = socket.create_connection((HOST, tunnel.client_port), timeout=5)
        payload = b"E" + os.urandom(512 << 10)
        threading.Thread(target=lambda: _quiet_sendall(s, payload), daemon=True).start()
        got = 0
        while got < 64 << 10:
            got += len(s.recv(1 << 16))
        before = len(target.ended)
        reset_at = time.monotonic()
        reset_close(s)
        wait_for(lambda: len(target.ended) > before, 3, "target connection ends after app RST")
        took = target.ended[-1][0] - reset_at
        if took > 2:
            raise AssertionError(f"target connection ended {took:.2f}s after the app's reset")

        # The target resets mid-transfer: the app's connection must end promptly.
        s = socket.create_connection((HOST, tunnel.client_port), timeout=5)
        threading.Thread(target=lambda: _quiet_sendall(s, b"R" + os.urandom(1 << 20)),
                         daemon=True).start()
        wait_for(lambda: any(e[1] == "reset-sent" for e in target.ended), 5, "target reset")
        reset_at = [e[0] for e in target.ended if e[1] == "reset-sent"][0]
        _, how = read_all(s, 5)
        took = time.monotonic() - reset_at
        s.close()
        if how == "timeout" or took > 2:
            raise AssertionError(f"app connection still open {took:.2f}s after target reset")
    finally:
        stop.set()
        healthy.join(30)
    sent, got = result[0]
    assert_same(got, sent, "healthy stream beside the resets")
    tunnel.close()
    target.close()


def _quiet_sendall(s, data):
    try:
        s.sendall(data)
    except OSError:
        pass


def simultaneous_close(mode_opts):
    """App and target both close at once, hundreds of times: no descriptor is left behind."""
    target = ScriptedTarget()
    tunnel = Tunnel(mode_opts, mode_opts, target.port)
    warm_up(tunnel.client_port)
    base = (fd_count(tunnel.client.pid), fd_count(tunnel.server.pid))

    def one(_):
        try:
            s = socket.create_connection((HOST, tunnel.client_port), timeout=5)
            s.sendall(b"C bye")
            s.close()
        except OSError:
            pass

    threads = [threading.Thread(target=lambda: [one(i) for i in range(30)]) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    wait_for(lambda: len(target.ended) >= 250, 10, "the target saw the connections")
    settle_fds(tunnel.client.pid, base[0])
    settle_fds(tunnel.server.pid, base[1])
    data = os.urandom(100 << 10)
    assert_same(exchange(tunnel.client_port, b"E" + data), b"E" + data, "afterwards")
    tunnel.close()
    target.close()


def target_goes_away():
    """The target stops listening (connects are refused), then comes back on the same port."""
    echo = SelectEcho()
    port = echo.port
    tunnel = Tunnel(WS, WS, port)
    data = os.urandom(64 << 10)
    assert_same(exchange(tunnel.client_port, data), data, "before")
    echo.close()
    start = time.monotonic()
    got = exchange(tunnel.client_port, b"anyone?", timeout=10)
    took = time.monotonic() - start
    if got or took > 3:
        raise AssertionError(f"refused target: got {got!r} after {took:.2f}s")
    echo = SelectEcho(port=port)
    assert_same(exchange(tunnel.client_port, data), data, "after the target came back")
    tunnel.close()
    echo.close()


# --- SIGTERM under load, SIGPIPE ---------------------------------------------------------

def sigterm_under_load(mode_opts):
    echo = SelectEcho()
    tunnel = Tunnel(mode_opts, mode_opts, echo.port)
    stop = threading.Event()
    result = []
    streams = [threading.Thread(target=stream, args=(tunnel.client_port, 10, stop, result))
               for _ in range(6)]
    for t in streams:
        t.start()
    time.sleep(0.8)
    for p in (tunnel.client, tunnel.server):
        if not ignores_signal(p.pid, signal.SIGPIPE):
            raise AssertionError(f"{p.args[0]} does not ignore SIGPIPE")
        p.send_signal(signal.SIGTERM)
    start = time.monotonic()
    codes = []
    for p in (tunnel.client, tunnel.server):
        try:
            codes.append(p.wait(max(0.05, start + 1.0 - time.monotonic())))
        except subprocess.TimeoutExpired:
            codes.append(None)
    took = time.monotonic() - start
    stop.set()
    for t in streams:
        t.join(15)
    echo.close()
    if codes != [0, 0]:
        raise AssertionError(f"exit codes {codes} within 1s of SIGTERM under load")
    moved = sum(len(got) for _, got in result)
    if moved < 4 << 20:
        raise AssertionError(f"only {moved} bytes moved before SIGTERM: not under load")
    print(f"     SIGTERM: both exited 0 in {took:.3f}s after {moved >> 20} MiB", flush=True)


def sigpipe():
    """Writes into connections whose peers are gone (EPIPE), on both programs, splice and
    relay paths: neither process may die."""
    target = ScriptedTarget()
    for opts in ("", WS):
        tunnel = Tunnel(opts, opts, target.port)
        for _ in range(20):
            s = socket.create_connection((HOST, tunnel.client_port), timeout=5)
            threading.Thread(target=lambda: _quiet_sendall(s, b"R" + os.urandom(1 << 20)),
                             daemon=True).start()
            try:
                s.recv(1 << 16)
            except OSError:
                pass
            reset_close(s)
        time.sleep(0.3)
        for p in (tunnel.client, tunnel.server):
            if p.poll() is not None:
                raise AssertionError(f"{p.args[0]} died: {p.returncode}")
        data = os.urandom(1 << 20)
        assert_same(exchange(tunnel.client_port, b"E" + data), b"E" + data, "after EPIPEs")
        tunnel.close()
    target.close()


test.check("out of descriptors: no exit, no spin, serves again", fd_exhaustion)
test.check("ws garbage, bad heads and bad frames: HTTP errors / close frames; healthy "
           "tunnel byte-exact", bad_input)
test.check("tcp: resets mid-transfer both ways end promptly", resets, "")
test.check("ws: resets mid-transfer both ways end promptly", resets, WS)
test.check("tcp: app and target close at once, no descriptor leak", simultaneous_close, "")
test.check("ws: app and target close at once, no descriptor leak", simultaneous_close, WS)
test.check("target stops listening and comes back", target_goes_away)
test.check("tcp: SIGTERM under load exits 0 within 1s", sigterm_under_load, "")
test.check("ws: SIGTERM under load exits 0 within 1s", sigterm_under_load, WS)
test.check("SIGPIPE is ignored and EPIPE kills nothing", sigpipe)
test.done()
