"""Warm connections (`pool=<n>`): apps start on connections kaminaric opened ahead of them.

In every mode: 1000 short connections through pool=8, byte-exact, nearly all on warm
connections (kaminaric's debug log says which); the server restarted under a full pool (no
app sees an error it would not see without a pool: dead warm connections are never handed
out); warm connections expiring (pool_idle) and being replaced; a server that speaks first
(its banner reaches the app through a warm tcp or tls connection); and a pooled ws
connection that waits longer than the server's handshake deadline still works."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (KAMINARIS, EchoServer, Proc, Test, ThreadedTarget, Tunnel,  # noqa: E402
                     addr, assert_same, banner_then_echo, exchange, read_banner_then_echo,
                     wait_port)

SHORT = int(os.environ.get("KAMINARI_POOL_CONNECTIONS", "1000"))
if os.environ.get("KAMINARI_SANITIZED"):
    SHORT = min(SHORT, 300)

MODES = {
    "tcp": ("", ""),
    "ws": ("ws;host=p.example;path=/p", "ws;host=p.example;path=/p"),
    "tls": ("tls;sni=p.example;insecure", "tls;servername=p.example"),
    "wss": ("ws;host=p.example;path=/p;tls;insecure",
            "ws;host=p.example;path=/p;tls;servername=p.example"),
}


def join(*parts):
    return ";".join(p for p in parts if p)


def warm_count(tunnel):
    return tunnel.client.stderr_text().count("on a warm connection")


def wait_for(cond, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def ready_count(tunnel):
    """Warm connections ready, from kaminaric's last 'pool: N warm connections ready' line."""
    n = 0
    for line in tunnel.client.stderr_text().splitlines():
        if "warm connection" in line and "ready" in line:
            n = int(line.split("pool: ")[1].split()[0])
    return n


def check_many(mode):
    copts, sopts = MODES[mode]
    echo = EchoServer()
    t = Tunnel(join(copts, "pool=8", "loglevel=debug"), join(sopts, "loglevel=debug"), echo.port)
    try:
        for i in range(SHORT):
            data = os.urandom(1 + (i * 7919) % 20000)
            assert_same(exchange(t.client_port, data, timeout=20), data, f"connection {i}")
        warm = warm_count(t)
        # The pool refills in the background; a connection may come before its refill is done.
        if warm < SHORT // 2:
            raise AssertionError(f"only {warm} of {SHORT} connections were warm\n"
                                 f"{t.client.stderr_text()[-3000:]}")
    finally:
        t.close()
        echo.close()


def check_server_restart(mode):
    copts, sopts = MODES[mode]
    echo = EchoServer()
    t = Tunnel(join(copts, "pool=4", "loglevel=debug"), join(sopts, "loglevel=debug"), echo.port)
    try:
        wait_for(lambda: ready_count(t) >= 2, 10, "a full pool")
        data = os.urandom(5000)
        assert_same(exchange(t.client_port, data, timeout=20), data, "before the restart")
        for round_ in range(3):
            # Restart kaminaris on the same port: every warm connection dies with it.
            t.server.stop()
            t.server = Proc([KAMINARIS, addr("127.0.0.1", t.server_port),
                             addr("127.0.0.1", echo.port), join(sopts, "loglevel=debug")])
            wait_port(t.server_port, proc=t.server)
            # Straight away: the pool still holds connections to the old server.
            for i in range(6):
                data = os.urandom(3000 + i)
                assert_same(exchange(t.client_port, data, timeout=20), data,
                             f"restart {round_}, connection {i}")
    finally:
        t.close()
        echo.close()


def check_expiry(mode):
    copts, sopts = MODES[mode]
    echo = EchoServer()
    t = Tunnel(join(copts, "pool=2", "pool_idle=0.5", "loglevel=debug"),
               join(sopts, "loglevel=debug"), echo.port)
    try:
        wait_for(lambda: t.client.stderr_text().count("expired unused") >= 2, 10,
                 "warm connections to expire")
        data = os.urandom(4000)
        assert_same(exchange(t.client_port, data, timeout=20), data, "after expiries")
    finally:
        t.close()
        echo.close()


def check_server_speaks_first(mode):
    copts, sopts = MODES[mode]
    srv = ThreadedTarget(banner_then_echo(b"SSH-2.0-banner\r\n"))
    t = Tunnel(join(copts, "pool=2", "loglevel=debug"), join(sopts, "loglevel=debug"), srv.port)
    try:
        wait_for(lambda: ready_count(t) >= 1, 10, "a warm connection")
        time.sleep(0.3)  # the banner reaches the waiting connection
        for _ in range(4):
            read_banner_then_echo(t.client_port, b"SSH-2.0-banner\r\n", b"hello")
        if warm_count(t) == 0:
            raise AssertionError("no connection was warm")
    finally:
        t.close()
        srv.close()


def check_wait_longer_than_handshake_timeout():
    """kaminaris waits for a silent connection's request beyond handshake_timeout (1 s here)."""
    copts, sopts = MODES["ws"]
    echo = EchoServer()
    t = Tunnel(join(copts, "pool=1", "loglevel=debug"),
               join(sopts, "handshake_timeout=1", "loglevel=debug"), echo.port)
    try:
        wait_for(lambda: ready_count(t) >= 1, 10, "a warm connection")
        time.sleep(2.5)
        data = os.urandom(2000)
        assert_same(exchange(t.client_port, data, timeout=20), data, "after 2.5 s")
        if warm_count(t) == 0:
            raise AssertionError("no connection was warm\n" + t.logs())
        server_log = t.server.stderr_text()
        if "no websocket request" in server_log or "timed out" in server_log:
            raise AssertionError("kaminaris dropped the waiting connection\n" + t.logs())
    finally:
        t.close()
        echo.close()


def main():
    test = Test(deadline=500)
    only = os.environ.get("KAMINARI_POOL_MODES")
    for mode in (only.split(",") if only else MODES):
        test.check(f"{mode}: {SHORT} short connections through pool=8, byte-exact", check_many,
                   mode)
        test.check(f"{mode}: kaminaris restarted under a full pool, no app error",
                   check_server_restart, mode)
        test.check(f"{mode}: warm connections expire and are replaced", check_expiry, mode)
    for mode in ("tcp", "tls"):
        test.check(f"{mode}: a server that speaks first, through a warm connection",
                   check_server_speaks_first, mode)
    test.check("ws: a warm connection outlives the server's handshake_timeout",
               check_wait_longer_than_handshake_timeout)
    test.done()


if __name__ == "__main__":
    main()
