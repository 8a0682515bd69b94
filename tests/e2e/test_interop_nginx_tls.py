"""wss through nginx terminating TLS in front of kaminaris:
  kaminaric ws;tls (CA trusted via SSL_CERT_FILE, sni=example.com) -> nginx (listen ssl, test CA
  certificate, websocket proxy_pass over plain http) -> kaminaris ws (no tls) -> echo.
"""

import socket
import ssl

from harness import Test, HOST
from pki import Pki
from proxies import start_nginx
from tunnel_suite import run_suite

test = Test(deadline=120)
pki = Pki()
started = []


def nginx_front(kind):
    c = pki.server(kind)

    def front(kaminaris_port):
        proc, port = start_nginx(kaminaris_port, tls=(c.cert, c.key))
        started.append(proc)

        def nginx_terminates_tls():
            # What kaminaric will see: nginx's TLS with the CA certificate, an HTTP server.
            ctx = ssl.create_default_context(cafile=pki.ca)
            with socket.create_connection((HOST, port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="example.com") as s:
                    s.sendall(b"GET /other HTTP/1.1\r\nHost: example.com\r\n"
                              b"Connection: close\r\n\r\n")
                    reply = s.recv(4096)
            if not reply.startswith(b"HTTP/1.1 404") or b"nginx" not in reply:
                raise AssertionError(f"not nginx over TLS: {reply[:200]!r}")
        test.check(f"nginx ({kind}) terminates TLS with the test CA certificate",
                   nginx_terminates_tls)
        return port
    return front


WS = "ws;host=example.com;path=/ws"
for kind in ("ecdsa", "rsa"):
    name = f"wss via nginx TLS ({kind})"
    copts, env = f"{WS};tls;sni=example.com", {"SSL_CERT_FILE": pki.ca}
    run_suite(test, name, copts, WS, big=16 << 20, connections=50, env=env,
              front=nginx_front(kind))
for proc in started:
    proc.stop()
test.done()
