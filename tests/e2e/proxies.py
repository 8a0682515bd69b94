"""Real reverse proxies started on loopback in a temporary directory, for the interop tests."""

import os
import tempfile

from harness import Proc, Test, free_port, wait_port, HOST
from tunnel_suite import run_suite


def start_nginx_with(server_block, module=None, prefix="kaminari-nginx-"):
    """nginx in the foreground with one worker, its pid, logs and temp files in a directory of
    its own, serving `server_block` (the text inside `http { }`, or a whole `stream { }` block
    when `module` names the dynamic module it needs). `server_block` may use `{port}` (a free
    loopback port, returned) and `{dir}`. Returns (proc, port)."""
    d = tempfile.mkdtemp(prefix=prefix)
    port = free_port()
    block = server_block.replace("{port}", str(port)).replace("{dir}", d)
    if module:
        body = block
        head = f"load_module /usr/lib/nginx/modules/{module};\n"
    else:
        head = ""
        body = f"""http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{block}
}}"""
    conf = f"""{head}daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 2048; }}
{body}
"""
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(conf)
    proc = Proc(["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf"), "-e",
                 os.path.join(d, "error.log")])
    wait_port(port, proc=proc)
    return proc, port


def start_nginx(upstream_port, path="/ws", tls=None):
    """nginx proxying websocket upgrades on `path` to upstream_port; other paths get 404.
    `tls=(cert, key)` makes it terminate TLS with that certificate."""
    listen = f"{HOST}:{{port}}"
    if tls:
        cert, key = tls
        listen += (f" ssl;\n        ssl_certificate {cert};\n        ssl_certificate_key {key};"
                   "\n        ssl_protocols TLSv1.2 TLSv1.3")
    return start_nginx_with(f"""
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen {listen};
        server_name example.com;
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
    }}""")


def start_haproxy(upstream_port):
    d = tempfile.mkdtemp(prefix="kaminari-haproxy-")
    port = free_port()
    conf = f"""
global
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
frontend fe
    bind {HOST}:{port}
    default_backend be
backend be
    server kaminaris {HOST}:{upstream_port}
"""
    cfg = os.path.join(d, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(conf)
    proc = Proc(["haproxy", "-db", "-f", cfg])
    wait_port(port, proc=proc)
    return proc, port


def run_proxy_suite(proxy_name, start_proxy):
    """kaminaric -> `start_proxy(kaminaris_port)` -> kaminaris -> echo in every mask mode: the
    full tunnel suite (16 MiB byte-exact, 50 connections, half-close, SIGTERM)."""
    ws = "ws;host=example.com;path=/ws"
    test = Test(deadline=400)
    started = []

    def front(port):
        proc, listen = start_proxy(port)
        started.append(proc)
        return listen

    for mode in ("skip", "fixed", "standard"):
        run_suite(test, f"{proxy_name} mask={mode}", f"{ws};mask={mode}", ws, big=16 << 20,
                  connections=50, front=front)
    for proc in started:
        proc.stop()
    test.done()
