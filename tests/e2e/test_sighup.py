"""SIGHUP (what `systemctl reload` sends) never stops either program: a transfer under way
when both get it finishes byte-exact, both keep serving, and each logs the signal at info."""

import os
import signal
import socket
import threading
import time

from harness import (HOST, KAMINARIS, EchoServer, Proc, Test, Tunnel, assert_same, exchange,
                     free_port, wait_port)

test = Test(deadline=120)

CLIENT_LINE = "received SIGHUP; nothing to reload; going on"
SERVER_LINE = "received SIGHUP; no certificate files to reload (tcp, ws, or servername=); going on"


def wait_for_lines(proc, line, count, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.stderr_text().count(line) >= count:
            return
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode}:\n{proc.stderr_text()}")
        time.sleep(0.02)
    raise AssertionError(f"{line!r} not logged {count} times within {timeout}s:\n"
                         f"{proc.stderr_text()}")


def transfer_across_hangups(client_opts, server_opts, hangups=3):
    """Sends half of 32 MiB, waits until 1 MiB of it is back through the tunnel, sends SIGHUP
    to both programs `hangups` times (waiting for each log line), then sends the rest: the
    connection open across the signals must carry every byte."""
    echo = EchoServer()
    t = Tunnel(client_opts, server_opts, echo.port)
    data = os.urandom(32 << 20)
    half = len(data) // 2
    s = socket.create_connection((HOST, t.client_port), timeout=60)
    received = bytearray()
    got_some = threading.Event()
    error = []

    def reader():
        try:
            while chunk := s.recv(1 << 16):
                received.extend(chunk)
                if len(received) >= 1 << 20:
                    got_some.set()
        except OSError as e:
            error.append(e)
        got_some.set()

    r = threading.Thread(target=reader)
    r.start()
    try:
        s.sendall(data[:half])
        assert got_some.wait(30), "no echo within 30 s"
        assert not error, f"socket error before the signals: {error}"
        for n in range(1, hangups + 1):
            for proc in (t.client, t.server):
                proc.send_signal(signal.SIGHUP)
            wait_for_lines(t.client, CLIENT_LINE, n)
            wait_for_lines(t.server, SERVER_LINE, n)
        s.sendall(data[half:])
        s.shutdown(socket.SHUT_WR)
        r.join(60)
        assert not r.is_alive(), f"no EOF within 60 s ({len(received)} bytes back)"
    finally:
        s.close()
    assert not error, f"socket error: {error[0]} ({len(received)} bytes back)\n{t.logs()}"
    assert_same(bytes(received), data, "the transfer across SIGHUP")
    for proc in (t.client, t.server):
        assert proc.poll() is None, f"exited with {proc.returncode}:\n{t.logs()}"
    # Still serving: a new connection after the signals goes through.
    small = os.urandom(1 << 16)
    assert_same(exchange(t.client_port, small), small, "a connection after SIGHUP")
    assert t.client.stderr_text().count(CLIENT_LINE) == hangups, t.logs()
    assert t.server.stderr_text().count(SERVER_LINE) == hangups, t.logs()
    t.close()  # SIGTERM still stops both with status 0
    echo.close()


def hangup_as_soon_as_listening():
    """SIGHUP the moment the port accepts (10 times): it is handled from before the bind, so
    it never kills a process that a supervisor already sees running."""
    for _ in range(10):
        port = free_port()
        p = Proc([KAMINARIS, f"{HOST}:{port}", "127.0.0.1:2"])
        wait_port(port, proc=p)
        p.send_signal(signal.SIGHUP)
        wait_for_lines(p, SERVER_LINE, 1)
        assert p.poll() is None, p.stderr_text()
        assert p.stop() == 0, p.stderr_text()


test.check("ws: transfer across 3 SIGHUPs to both, byte-exact, both keep running",
           transfer_across_hangups, "ws;host=example.com;path=/ws", "ws;host=example.com;path=/ws")
test.check("wss: transfer across 3 SIGHUPs to both, byte-exact, both keep running",
           transfer_across_hangups, "ws;host=example.com;path=/ws;tls;sni=example.com;insecure",
           "ws;host=example.com;path=/ws;tls;servername=example.com")
test.check("SIGHUP right after the bind is logged, not fatal", hangup_as_soon_as_listening)
test.done()
