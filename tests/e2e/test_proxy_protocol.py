"""kaminaris `proxy_protocol` behind real load balancers: HAProxy (TCP mode, `send-proxy-v2`,
health checks) in front of three kaminaris, one of them killed mid-run, and nginx `stream` with
`proxy_protocol on` (v1). Every connection goes through byte-exact, the logs name the original
client's address, a connection without a header is refused, and without the option a header is
never guessed (it is data like any other)."""

import os
import re
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from harness import (HOST, KAMINARIC, KAMINARIS, EchoServer, Proc, Test, addr, assert_same,
                     exchange, free_port, wait_port)
from proxies import start_nginx_with

SANITIZED = bool(os.environ.get("KAMINARI_SANITIZED"))
HALF = 150 if SANITIZED else 500  # connections before and after the kill
WS = "ws;host=example.com;path=/ws"
test = Test(deadline=240)
echo = EchoServer()


def start_kaminaris(extra=""):
    port = free_port()
    proc = Proc([KAMINARIS, addr(HOST, port), addr(HOST, echo.port),
                 f"{WS};proxy_protocol;handshake_timeout=2;loglevel=debug{extra}"])
    wait_port(port, proc=proc)
    return proc, port


def start_haproxy(backends):
    d = tempfile.mkdtemp(prefix="kaminari-haproxy-pp-")
    port = free_port()
    servers = "\n".join(
        f"    server k{i} {HOST}:{p} send-proxy-v2 check check-send-proxy inter 200ms fall 2 "
        f"rise 2" for i, p in enumerate(backends))
    conf = f"""
global
    maxconn 4096
defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 2
    option redispatch
frontend fe
    bind {HOST}:{port}
    default_backend be
backend be
    balance roundrobin
{servers}
"""
    cfg = os.path.join(d, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(conf)
    proc = Proc(["haproxy", "-db", "-f", cfg])
    wait_port(port, proc=proc)
    return proc, port


def start_nginx_stream(backend):
    return start_nginx_with(f"""stream {{
    server {{
        listen {HOST}:{{port}};
        proxy_pass {HOST}:{backend};
        proxy_protocol on;
        proxy_half_close on;
    }}
}}""", module="ngx_stream_module.so", prefix="kaminari-nginx-pp-")


def raw_client_port(port):
    """Connects, sends an upgrade request, reads the answer; returns this side's local port,
    which the balancer's PROXY header must carry to kaminaris."""
    with socket.create_connection((HOST, port), timeout=10) as s:
        local = s.getsockname()[1]
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"Sec-WebSocket-Version: 13\r\n\r\n")
        head = s.recv(4096)
        if not head.startswith(b"HTTP/1.1 101"):
            raise AssertionError(f"no 101 through the balancer: {head[:80]!r}")
    return local


def wait_for_log(procs, pattern, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for p in procs:
            if re.search(pattern, p.stderr_text()):
                return p
        time.sleep(0.05)
    raise AssertionError(f"no log line matching {pattern!r}")


# --- HAProxy, three backends ------------------------------------------------------------------
backends = [start_kaminaris() for _ in range(3)]
haproxy, hport = start_haproxy([p for _, p in backends])
client = Proc([KAMINARIC, addr(HOST, free_port()), addr(HOST, hport), WS])
cport = int(client.args[1].rsplit(":", 1)[1])
wait_port(cport, proc=client)
time.sleep(0.6)  # the first health checks pass (rise 2 at 200 ms)


def many(count):
    def one(i):
        data = os.urandom(64 + i % 4000)
        assert_same(exchange(cport, data), data, f"connection {i}")
    with ThreadPoolExecutor(8) as pool:
        for f in [pool.submit(one, i) for i in range(count)]:
            f.result()


def spread_over_three():
    many(HALF)
    counts = [len(re.findall(r"client 127\.0\.0\.1:\d+ \(PROXY v2 from", p.stderr_text()))
              for p, _ in backends]
    if min(counts) == 0:
        raise AssertionError(f"connections per backend: {counts}")
    print(f"     per backend: {counts}", flush=True)


def original_address_logged():
    local = raw_client_port(hport)
    wait_for_log([p for p, _ in backends], rf"client 127\.0\.0\.1:{local} \(PROXY v2 from ")


def one_backend_killed():
    victim, _ = backends[1]
    victim.kill()
    victim.wait(5)
    time.sleep(1.0)  # fall 2 at 200 ms: the checks have noticed
    many(HALF)


test.check(f"haproxy send-proxy-v2: {HALF} connections byte-exact, spread over 3 kaminaris",
           spread_over_three)
test.check("haproxy: kaminaris logs the original client's address and port",
           original_address_logged)
test.check(f"haproxy: one kaminaris killed; {HALF} new connections all succeed",
           one_backend_killed)


# --- nginx stream, proxy_protocol on (v1) -----------------------------------------------------
nserver, nsport = start_kaminaris()
nginx, nport = start_nginx_stream(nsport)
nclient = Proc([KAMINARIC, addr(HOST, free_port()), addr(HOST, nport), WS])
ncport = int(nclient.args[1].rsplit(":", 1)[1])
wait_port(ncport, proc=nclient)


def through_nginx():
    for i in range(20):
        data = os.urandom(1000 + 997 * i)
        assert_same(exchange(ncport, data), data, f"connection {i}")  # half-close included
    local = raw_client_port(nport)
    wait_for_log([nserver], rf"client 127\.0\.0\.1:{local} \(PROXY v1 from ")


test.check("nginx stream proxy_protocol: byte-exact with half-close, client address logged",
           through_nginx)


# --- refused and never guessed ----------------------------------------------------------------
def refused_without_header():
    with socket.create_connection((HOST, nsport), timeout=10) as s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: example.com\r\n\r\n")
        try:
            got = s.recv(4096)
        except ConnectionResetError:
            got = b""  # closed with the request unread: a reset, as refusals go
        if got != b"":
            raise AssertionError("kaminaris answered a connection without a PROXY header")
    wait_for_log([nserver], r"no valid PROXY header from 127\.0\.0\.1:\d+: no PROXY header")


def partial_header_times_out():
    with socket.create_connection((HOST, nsport), timeout=10) as s:
        s.sendall(b"PROXY TCP4 127.0.0.1")
        start = time.monotonic()
        if s.recv(4096) != b"":
            raise AssertionError("answered a partial header")
        took = time.monotonic() - start
    if not 1.0 < took < 6.0:
        raise AssertionError(f"closed after {took:.1f}s, handshake_timeout is 2")
    wait_for_log([nserver], r"no valid PROXY header from .*: Connection timed out")


def never_guessed():
    # Without the option a PROXY line is the app's data: tcp mode hands it to the echo target.
    port = free_port()
    plain = Proc([KAMINARIS, addr(HOST, port), addr(HOST, echo.port), ""])
    try:
        wait_port(port, proc=plain)
        data = b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\nhello"
        assert_same(exchange(port, data), data, "a PROXY line without proxy_protocol")
    finally:
        plain.stop()


test.check("without a PROXY header: refused, logged", refused_without_header)
test.check("a partial header: closed after handshake_timeout, logged", partial_header_times_out)
test.check("without proxy_protocol a PROXY line is data, passed through", never_guessed)


def stop_all():
    for p in [client, nclient, haproxy, nginx]:
        p.stop()
    codes = [p.stop() for p, _ in (backends[0], backends[2], (nserver, 0))]
    if any(codes):
        raise AssertionError(f"kaminaris exit codes {codes}")


test.check("every kaminaris still running exits 0 on SIGTERM", stop_all)
echo.close()
test.done()
