"""wss through nginx terminating TLS in front of kaminaris:
  kaminaric ws;tls (CA trusted via SSL_CERT_FILE, sni=example.com) -> nginx (listen ssl, test CA
  certificate, websocket proxy_pass over plain http) -> kaminaris ws (no tls) -> echo.
"""

import os
import socket
import ssl
import tempfile
import threading

from harness import Proc, Test, HOST, free_port, wait_port
from pki import Pki
from tunnel_suite import run_suite

test = Test(deadline=120)
pki = Pki()
started = []


def start_nginx_tls(upstream_port, cert, key, path="/ws"):
    d = tempfile.mkdtemp(prefix="kaminari-nginx-tls-")
    port = free_port()
    conf = f"""
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 2048; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen {HOST}:{port} ssl;
        server_name example.com;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location {path} {{
            proxy_pass http://{HOST}:{upstream_port};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 300s;
            proxy_buffering off;
        }}
        location / {{ return 404; }}
    }}
}}
"""
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(conf)
    proc = Proc(["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf"), "-e",
                 os.path.join(d, "error.log")])
    wait_port(port, proc=proc)
    started.append(proc)
    return proc, port


def nginx_front(kind):
    c = pki.server(kind)

    def front(kaminaris_port):
        _, port = start_nginx_tls(kaminaris_port, c.cert, c.key)

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


def exchange_exact(port, data, timeout=60.0):
    """Sends `data` while reading, until as many bytes came back as were sent; then closes
    (the app never half-closes). Returns what was received."""
    s = socket.create_connection((HOST, port), timeout=timeout)
    received = bytearray()
    error = []

    def reader():
        try:
            while len(received) < len(data):
                chunk = s.recv(1 << 16)
                if not chunk:
                    return
                received.extend(chunk)
        except OSError as e:
            error.append(e)

    t = threading.Thread(target=reader)
    t.start()
    try:
        s.sendall(data)
    except OSError as e:
        error.append(e)
    t.join(timeout)
    s.close()
    if t.is_alive():
        raise AssertionError(f"only {len(received)} of {len(data)} bytes back after {timeout}s")
    if error:
        raise AssertionError(f"socket error: {error[0]} ({len(received)} bytes received)")
    return bytes(received)


WS = "ws;host=example.com;path=/ws"
for kind in ("ecdsa", "rsa"):
    name = f"wss via nginx TLS ({kind})"
    copts, env = f"{WS};tls;sni=example.com", {"SSL_CERT_FILE": pki.ca}
    run_suite(test, name, copts, WS, big=16 << 20, connections=50, env=env,
              front=nginx_front(kind))
for proc in started:
    proc.stop()
test.done()
