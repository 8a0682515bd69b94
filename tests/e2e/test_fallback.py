"""`fallback=<host:port>`: kaminaris passes every connection that is not a valid upgrade for its
host and path to a web server, with the bytes it sent, and relays both ways from then on. For
each kind of probe, what a client receives through kaminaris (ws, and wss after the TLS
handshake) must equal what it receives from the web server directly, byte for byte (the Date
header aside), and the connection must end the same way (closed by the server, or left open).
Two web servers: nginx serving files, and Python's http.server speaking HTTP/1.1. A valid
upgrade still tunnels; without `fallback` kaminaris still answers 404 itself."""

import os
import re
import shutil
import socket
import ssl
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from harness import (HOST, KAMINARIS, EchoServer, Proc, Test, Tunnel, addr, assert_same, exchange,
                     free_port, wait_port)
from proxies import start_nginx_with

test = Test(deadline=240)
WS = "ws;host=example.com;path=/ws"
SILENCE = 1.5  # seconds without a byte after which a connection left open counts as "open"

site = tempfile.mkdtemp(prefix="kaminari-fallback-site-")
with open(os.path.join(site, "index.html"), "wb") as f:
    f.write(b"<html><body>an ordinary web site</body></html>\n")
with open(os.path.join(site, "big.bin"), "wb") as f:
    f.write(os.urandom(3 << 20))


class Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and pipelining

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops parallel connects
    daemon_threads = True


python_site = Server((HOST, 0), partial(Handler, directory=site))
threading.Thread(target=python_site.serve_forever, daemon=True).start()


def start_nginx_site():
    return start_nginx_with(f"""
    server {{
        listen {HOST}:{{port}};
        server_name example.com;
        root {site};
        keepalive_timeout 60s;
    }}""", prefix="kaminari-fallback-nginx-")


nginx, nginx_port = start_nginx_site()
echo = EchoServer()

UPGRADE_WRONG_PATH = (b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      b"Sec-WebSocket-Version: 13\r\n\r\n")
PROBES = [
    ("wrong path", b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"),
    ("wrong host", b"GET /ws HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n"),
    ("plain GET /", b"GET / HTTP/1.0\r\n\r\n"),
    ("POST", b"POST /ws HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n"
             b"Connection: close\r\n\r\nhello"),
    ("not HTTP at all", b"\x16\x03\x01\x00\x05hello\r\n\r\n"),
    ("large body", b"GET /big.bin HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"),
    ("pipelined", b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n"
                  b"GET /big.bin HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"),
    ("keep-alive, left open", b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n"),
    ("upgrade on another path", UPGRADE_WRONG_PATH),
]


def talk(port, probe, tls=False):
    """Sends `probe`, reads until the peer closes or stays silent for SILENCE seconds.
    Returns (bytes with Date lines blanked, how it ended)."""
    raw = socket.create_connection((HOST, port), timeout=10)
    s = raw
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(raw, server_hostname="example.com")
    got = bytearray()
    ending = "open"
    with s:
        s.sendall(probe)
        s.settimeout(SILENCE)
        while True:
            try:
                chunk = s.recv(1 << 16)
            except socket.timeout:
                break
            except (ConnectionResetError, ssl.SSLError) as e:
                ending = f"error {type(e).__name__}"
                break
            if not chunk:
                ending = "closed"
                break
            got += chunk
    return re.sub(rb"\r\nDate: [^\r]*", b"\r\nDate: -", bytes(got)), ending


def server_with(fallback_port, tls):
    port = free_port()
    opts = f"{WS};fallback={addr(HOST, fallback_port)}"
    if tls:
        opts += ";tls;servername=example.com"
    proc = Proc([KAMINARIS, addr(HOST, port), addr(HOST, echo.port), opts])
    wait_port(port, proc=proc)
    return proc, port


def compare(web_port, front_port, tls, what):
    def check():
        for name, probe in PROBES:
            want = talk(web_port, probe)
            got = talk(front_port, probe, tls)
            if got[1] != want[1]:
                raise AssertionError(f"{name}: connection {got[1]} through kaminaris, "
                                     f"{want[1]} directly")
            assert_same(got[0], want[0], f"{what}: {name}")
            if not want[0]:
                raise AssertionError(f"{name}: the web server sent nothing at all")
    return check


servers = []
for web_name, web_port in (("nginx", nginx_port), ("http.server", python_site.server_port)):
    for tls in (False, True):
        proc, port = server_with(web_port, tls)
        servers.append(proc)
        mode = "wss" if tls else "ws"
        test.check(f"{mode} fallback to {web_name}: every probe sees the web server's own bytes "
                   f"and end", compare(web_port, port, tls, f"{mode}/{web_name}"))

# A valid upgrade still tunnels, through a server with a fallback.
tunnel = Tunnel(WS, f"{WS};fallback={addr(HOST, nginx_port)}", echo.port)


def still_tunnels():
    data = os.urandom(1 << 20)
    assert_same(exchange(tunnel.client_port, data), data, "through the tunnel")
    if "fallback" in tunnel.server.stderr_text().split("transport:")[-1].split("\n", 1)[1]:
        raise AssertionError(f"a valid upgrade went to the fallback\n{tunnel.logs()}")


test.check("ws with fallback: a valid upgrade still tunnels, byte-exact", still_tunnels)


# Without fallback: kaminaris answers a wrong path itself, as before.
def own_404():
    port = free_port()
    proc = Proc([KAMINARIS, addr(HOST, port), addr(HOST, echo.port), WS])
    servers.append(proc)
    wait_port(port, proc=proc)
    body, ending = talk(port, PROBES[0][1])
    if not body.startswith(b"HTTP/1.1 404 ") or ending != "closed":
        raise AssertionError(f"got {body[:80]!r}, {ending}")


test.check("ws without fallback: kaminaris answers 404 itself", own_404)


def stop_all():
    codes = [p.stop() for p in servers] + [nginx.stop()]
    tunnel.close()
    if any(codes[:-1]):
        raise AssertionError(f"exit codes {codes}")


test.check("every kaminaris exits 0 on SIGTERM", stop_all)
python_site.shutdown()
echo.close()
shutil.rmtree(site, ignore_errors=True)
test.done()
