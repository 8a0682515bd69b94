"""idle_timeout= and max_conns=, on both programs, in tcp (splice) and ws (relay) mode; TCP
keepalive timing on accepted sockets, and none on those dialed to this host."""

import os
import socket
import threading
import time

from fault_kit import WS, SelectEcho, keepalive_timers, read_all, wait_for
from harness import HOST, Test, Tunnel, assert_same, exchange

test = Test(deadline=85)
IDLE = 1.0


def idle_timeout(client_extra, server_extra, mode_opts):
    """One idle connection is closed about IDLE s after its last byte; one that sends a byte
    every IDLE/3 s for 3 x IDLE is not."""
    echo = SelectEcho()
    tunnel = Tunnel(mode_opts + client_extra, mode_opts + server_extra, echo.port)
    errors = []

    def idle():
        s = socket.create_connection((HOST, tunnel.client_port), timeout=10)
        s.sendall(b"hello")
        got = b""
        while len(got) < 5:
            got += s.recv(5)
        last = time.monotonic()
        rest, how = read_all(s, 6)
        took = time.monotonic() - last
        s.close()
        if rest or how == "timeout" or not IDLE * 0.9 <= took <= IDLE * 2.5:
            errors.append(f"idle: {rest!r}, {how} after {took:.2f}s (limit {IDLE}s)")

    def active():
        s = socket.create_connection((HOST, tunnel.client_port), timeout=10)
        s.settimeout(IDLE * 2)
        end = time.monotonic() + 3 * IDLE
        sent = 0
        try:
            while time.monotonic() < end:
                s.sendall(b"x")
                if s.recv(1) != b"x":
                    errors.append(f"active: closed after {sent} bytes")
                    return
                sent += 1
                time.sleep(IDLE / 3)
            s.shutdown(socket.SHUT_WR)
            rest, how = read_all(s, 5)
            if rest or how != "eof":
                errors.append(f"active: end {rest!r} {how}")
        except OSError as e:
            errors.append(f"active: {e} after {sent} bytes")
        finally:
            s.close()

    threads = [threading.Thread(target=f) for f in (idle, active)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    if errors:
        raise AssertionError("; ".join(errors) + "\n" + tunnel.logs()[-2000:])
    which = tunnel.client if client_extra else tunnel.server
    if "idle timeout" not in which.stderr_text():
        raise AssertionError("no debug line says the idle timeout closed it")
    tunnel.close()
    echo.close()


def max_conns(opts, client_side):
    """With max_conns=3, a 4th connection is closed at once; once one of the 3 ends, a new
    one is served byte-exact."""
    echo = SelectEcho()
    capped = opts + ";max_conns=3"
    tunnel = Tunnel(capped if client_side else opts, opts if client_side else capped,
                    echo.port)
    # Connect straight to the capped program: kaminaric or kaminaris.
    port = tunnel.client_port if client_side else tunnel.server_port
    prog = tunnel.client if client_side else tunnel.server
    if not client_side and opts:
        raise AssertionError("the kaminaris cap is tested in tcp mode (raw connections)")
    # wait_port()'s probe connections count until their relays end.
    wait_for(lambda: echo.open == 0, 5, "probe connections ended")
    time.sleep(0.3)
    held = []
    for i in range(3):
        s = socket.create_connection((HOST, port), timeout=5)
        s.sendall(b"held %d" % i)
        got = b""
        while len(got) < 6:
            got += s.recv(16)
        held.append(s)
    first_refusal = time.monotonic()
    for _ in range(3):
        start = time.monotonic()
        s = socket.create_connection((HOST, port), timeout=5)
        try:
            s.sendall(b"over the cap")
        except OSError:
            pass
        rest, how = read_all(s, 5)
        took = time.monotonic() - start
        s.close()
        if rest or how == "timeout" or took > 1:
            raise AssertionError(f"4th connection: {rest!r}, {how} after {took:.2f}s")
    # One line per second at most: one for the burst, unless a loaded machine spread its three
    # refusals over more than a second.
    span = time.monotonic() - first_refusal
    log = prog.stderr_text()
    lines = log.count("max_conns=3 reached")
    if not 1 <= lines <= 1 + int(span):
        raise AssertionError(f"{lines} log lines for a burst of 3 over {span:.2f}s:\n{log}")
    held.pop().close()
    data = os.urandom(256 << 10)
    deadline = time.monotonic() + 3
    while True:
        try:
            got = exchange(port, data, timeout=5)
        except AssertionError:
            got = None
        if got == data or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert_same(got or b"", data, "after one of the 3 closed")
    for s in held:
        s.close()
    tunnel.close()
    echo.close()


for mode, opts in (("tcp", ""), ("ws", WS)):
    sep = ";" if opts else ""
    extra = f"{sep}idle_timeout={IDLE};loglevel=debug"
    test.check(f"{mode}: kaminaric idle_timeout closes idle, keeps active", idle_timeout, extra,
               "", opts)
    test.check(f"{mode}: kaminaris idle_timeout closes idle, keeps active", idle_timeout, "",
               extra, opts)
def keepalive(mode_opts):
    """Every socket a program accepted (the app's, the client's) has TCP keepalive on, with
    its first probe at most 60 s after the last traffic: the kernel's default is 2 hours, and
    a peer that vanished would hold its tunnel that long. A socket dialed to this host (here
    both programs' remotes are on 127.0.0.1) has none: such a peer cannot vanish behind a
    network, and our own kernel closes its connections when it dies. (Keepalive on sockets
    dialed elsewhere: the SocketOptions unit tests, which tune without connecting.)"""
    echo = SelectEcho()
    tunnel = Tunnel(mode_opts, mode_opts, echo.port)
    held = [socket.create_connection((HOST, tunnel.client_port), timeout=5) for _ in range(3)]
    for s in held:
        s.sendall(b"ping")
        got = b""
        while len(got) < 4:
            got += s.recv(4)
    time.sleep(0.3)
    for name, proc, listen_port in (("kaminaric", tunnel.client, tunnel.client_port),
                                    ("kaminaris", tunnel.server, tunnel.server_port)):
        timers = keepalive_timers(proc.pid)
        accepted = [t for port, t in timers if port == listen_port]
        dialed = [t for port, t in timers if port != listen_port]
        if len(accepted) != len(held) or len(dialed) != len(held):
            raise AssertionError(f"{name}: {len(accepted)} accepted and {len(dialed)} dialed "
                                 f"established sockets, want {len(held)} of each")
        if not all(t is not None and 0 < t <= 60 for t in accepted):
            raise AssertionError(f"{name}: keepalive timers (s) of accepted sockets: {accepted}")
        if any(t is not None for t in dialed):
            raise AssertionError(f"{name}: keepalive timers (s) of sockets dialed to this "
                                 f"host: {dialed}")
    for s in held:
        s.close()
    tunnel.close()
    echo.close()


test.check("tcp: keepalive on accepted sockets (first probe within 60 s), none to this host",
           keepalive, "")
test.check("ws: keepalive on accepted sockets (first probe within 60 s), none to this host",
           keepalive, WS)
test.check("kaminaric ws max_conns=3", max_conns, WS, True)
test.check("kaminaris tcp max_conns=3", max_conns, "", False)
test.done()
