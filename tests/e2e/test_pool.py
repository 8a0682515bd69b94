"""Warm connections (`pool=<n>`): apps start on connections kaminaric opened ahead of them.

In every mode: 1000 short connections through pool=8, byte-exact, nearly all on warm
connections (kaminaric's debug log says which); the server restarted under a full pool (no
app sees an error it would not see without a pool: dead warm connections are never handed
out); warm connections expiring (pool_idle) and being replaced; a server that speaks first
(its banner reaches the app through a warm tcp or tls connection); and a pooled ws
connection that waits longer than the server's handshake deadline still works."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (HOST, KAMINARIS, EchoServer, Proc, Test, ThreadedTarget,  # noqa: E402
                     Tunnel, addr, assert_same, banner_then_echo, exchange, read_banner_then_echo,
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
        if "pool: " in line and "warm connection" in line and line.endswith(" ready"):
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


def burst(port, n, tag, keep=None):
    """n app connections open at once, each echoing its own bytes, then all closed (or, with
    `keep`, a list, left open and added to it)."""
    socks = [socket.create_connection((HOST, port), timeout=20) for _ in range(n)]
    try:
        for i, s in enumerate(socks):
            s.sendall(f"{tag} connection {i};".encode() * 40)
        for i, s in enumerate(socks):
            want = f"{tag} connection {i};".encode() * 40
            got = b""
            while len(got) < len(want):
                chunk = s.recv(len(want) - len(got))
                if not chunk:
                    break
                got += chunk
            assert_same(got, want, f"{tag}, connection {i}")
    finally:
        if keep is None:
            for s in socks:
                s.close()
        else:
            keep.extend(socks)


def check_burst(mode):
    """pool=1;pool_max=6: a burst of 6 leaves 6 ready, the next burst of 6 starts on them all,
    and with no burst for pool_idle the pool is back to 1."""
    copts, sopts = MODES[mode]
    echo = EchoServer()
    t = Tunnel(join(copts, "pool=1", "pool_max=6", "pool_idle=3", "threads=1", "loglevel=debug"),
               join(sopts, "loglevel=debug"), echo.port)
    try:
        wait_for(lambda: ready_count(t) >= 1, 10, "a warm connection")
        burst(t.client_port, 6, "first burst")
        wait_for(lambda: "6 connections taken within" in t.client.stderr_text(), 10,
                 "the pool to take in the burst")
        wait_for(lambda: ready_count(t) >= 6, 10, "6 warm connections")
        before = warm_count(t)
        burst(t.client_port, 6, "second burst")
        wait_for(lambda: warm_count(t) - before >= 6, 10, "6 connections on warm ones")
        if warm_count(t) - before != 6:
            raise AssertionError(f"{warm_count(t) - before} warm of 6\n{t.logs()}")
        wait_for(lambda: "back to 1 ready" in t.client.stderr_text(), 15,
                 "the pool to shrink back to 1")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{t.client.stderr_text()[-4000:]}") from None
    finally:
        t.close()
        echo.close()


def check_bursts_over_two_workers(mode):
    """threads=2;pool=2;pool_max=40: after a burst of 16, the workers keep what each took ready
    (16 or more between them), and the next burst of 16 starts on ready connections only, however
    the listener splits it: a worker whose own pool runs out hands the app's connection to the
    other's. (Without that, any split unlike the first burst's leaves some to dial.) The last
    burst is still open when kaminaric stops: it exits 0 (connections handed to the other
    worker end with it)."""
    copts, sopts = MODES[mode]
    echo = EchoServer()
    held = []
    t = Tunnel(join(copts, "pool=2", "pool_max=40", "threads=2", "loglevel=debug"),
               join(sopts, "loglevel=debug"), echo.port)
    try:
        wait_for(lambda: t.client.stderr_text().count("warm connection ready") >= 2, 10,
                 "a warm connection on each worker")
        handed = 0
        for round_ in range(3):
            burst(t.client_port, 16, f"burst {round_}")
            time.sleep(1.2)  # refilled, and past the burst window
            before = warm_count(t)
            handed_before = t.client.stderr_text().count("to another worker's")
            burst(t.client_port, 16, f"burst {round_}, again")
            warm = warm_count(t) - before
            handed += t.client.stderr_text().count("to another worker's") - handed_before
            if warm != 16:
                raise AssertionError(f"round {round_}: {warm} of 16 connections were warm")
            time.sleep(1.2)
        print(f"    {mode}: {handed} of 48 connections went to the other worker's pool")
        # More than the pools hold, so one worker runs out before the other: some go over.
        burst(t.client_port, 16, "held", keep=held)
        burst(t.client_port, 16, "held, more", keep=held)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{t.client.stderr_text()[-4000:]}") from None
    finally:
        try:
            t.close()  # with the held connections open
        finally:
            for s in held:
                s.close()
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
        # Each app's byte counts include the banner, whether it came while the connection
        # waited in the pool or after the app took it. (Lines with 0 bytes up are the
        # harness's probes of the port.)
        closed = lambda: [ln for ln in t.client.stderr_text().splitlines()
                          if " closed: 5 bytes up" in ln]
        wait_for(lambda: len(closed()) >= 4, 10, "4 connections to end")
        for ln in closed():
            if "closed: 5 bytes up, 21 bytes down" not in ln:
                raise AssertionError(f"expected 5 bytes up and 16 + 5 down: {ln}")
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
    for mode in ("ws", "wss"):
        test.check(f"{mode}: pool_max=6 keeps a burst of 6 ready for the next, then shrinks",
                   check_burst, mode)
    for mode in ("tcp", "tls"):
        test.check(f"{mode}: bursts over two workers start on ready connections only",
                   check_bursts_over_two_workers, mode)
    for mode in ("tcp", "tls"):
        test.check(f"{mode}: a server that speaks first, through a warm connection",
                   check_server_speaks_first, mode)
    test.check("ws: a warm connection outlives the server's handshake_timeout",
               check_wait_longer_than_handshake_timeout)
    test.done()


if __name__ == "__main__":
    main()
