"""TLS 1.3 0-RTT between kaminaric and kaminaris: after the first connection, resumed
connections carry their first flight as early data, and nothing is lost or doubled. For tls
that flight is the app's first bytes; for wss it is the websocket upgrade request (the app's
bytes must wait for the 101), so the upgrade costs no extra round trip."""

import os
import re
import socket

from harness import (HOST, KAMINARIS, EchoServer, Proc, Test, ThreadedTarget, Tunnel, addr,
                     assert_same, exchange, wait_port)

test = Test(deadline=120)
echo = EchoServer()
SERVER_TLS = "tls;servername=example.com;loglevel=debug"
WS = "ws;host=example.com;path=/ws"

for name, client_opts, server_opts in (
        ("tls", "tls;sni=example.com;insecure;0rtt;loglevel=debug", SERVER_TLS),
        ("wss", f"{WS};tls;insecure;0rtt;loglevel=debug", f"{WS};{SERVER_TLS}")):
    tunnel = Tunnel(client_opts, server_opts, echo.port)

    def connections(tunnel=tunnel):
        # One at a time: each resumption takes the ticket the previous connection left.
        for i in range(6):
            data = os.urandom(100 + 4093 * i)
            assert_same(exchange(tunnel.client_port, data), data, f"connection {i}")

    def early_data_accepted(tunnel=tunnel):
        log = tunnel.server.stderr_text()
        accepted = len(re.findall(r"TLS session resumed; early data accepted", log))
        if accepted < 4:
            raise AssertionError(f"{accepted} of 6 connections used 0-RTT\n{tunnel.logs()}")

    test.check(f"{name} 0rtt: 6 connections byte-exact", connections)
    test.check(f"{name} 0rtt: resumed connections send early data, accepted", early_data_accepted)
    test.check(f"{name} 0rtt: SIGTERM exits 0", tunnel.close)


# kaminaris hands accepted early data to the target before the client's Finished and sends the
# answer as 0.5-RTT data. A target that answers and closes at once: the app still gets the
# whole answer and then the end of the stream (close_notify waits for the handshake to end).
def answer_then_close(conn):
    request = conn.recv(1 << 16)
    conn.sendall(b"answer to " + request)
    conn.shutdown(socket.SHUT_WR)


closer = ThreadedTarget(answer_then_close)
fast = Tunnel("tls;sni=example.com;insecure;0rtt;loglevel=debug", SERVER_TLS, closer.port)


def answered_then_closed():
    for i in range(5):
        request = f"request {i}".encode()
        with socket.create_connection((HOST, fast.client_port), timeout=10) as s:
            s.sendall(request)
            got = b""
            while chunk := s.recv(4096):
                got += chunk
        assert_same(got, b"answer to " + request, f"connection {i}")
    log = fast.server.stderr_text()
    if len(re.findall(r"TLS session resumed; early data accepted", log)) < 3:
        raise AssertionError(f"0-RTT not used\n{fast.logs()}")


def restarted_server_rejects_and_nothing_is_lost():
    # A restarted kaminaris cannot decrypt the client's ticket: a full handshake, the early data
    # is dropped by the server and kaminaric sends it again after the handshake, once.
    assert fast.server.stop() == 0
    fast.server = Proc([KAMINARIS, addr(HOST, fast.server_port), addr(HOST, echo.port),
                        SERVER_TLS])
    wait_port(fast.server_port, proc=fast.server)
    for i in range(4):
        data = os.urandom(3000 + 7 * i)
        assert_same(exchange(fast.client_port, data), data, f"after restart, connection {i}")
    log = fast.server.stderr_text()
    if "TLS session new" not in log or "early data accepted" not in log:
        raise AssertionError(f"expected a full handshake, then 0-RTT again\n{fast.logs()}")


test.check("tls 0rtt: a target that answers and closes at once: answer and end, byte-exact",
           answered_then_closed)
test.check("tls 0rtt: kaminaris restarted: early data rejected and resent, byte-exact",
           restarted_server_rejects_and_nothing_is_lost)
test.check("tls 0rtt (closing target): SIGTERM exits 0", fast.close)
closer.close()
echo.close()
test.done()
