"""TLS 1.3 0-RTT between kaminaric and kaminaris: after the first connection, resumed
connections carry their first flight as early data, and nothing is lost or doubled. For tls
that flight is the app's first bytes; for wss it is the websocket upgrade request (the app's
bytes must wait for the 101), so the upgrade costs no extra round trip."""

import os
import re

from harness import EchoServer, Test, Tunnel, assert_same, exchange

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
echo.close()
test.done()
