"""The byte-exact checks every transport must pass, run against one Tunnel configuration."""

import concurrent.futures
import os
import socket
import time

from harness import EchoServer, Tunnel, assert_same, exchange, free_port, HOST


def run_suite(test, name, client_opts, server_opts, big=64 << 20, host=HOST, env=None,
              connections=100, front=None, client=None, half_close=True):
    """The byte-exact checks. With half_close=False the app never half-closes (it reads the
    whole echo, then closes) and the half-close check is skipped: for peers whose own
    half-close handling loses data."""
    echo = EchoServer(host)
    tunnel = Tunnel(client_opts, server_opts, echo.port, host=host, env=env, front=front,
                    client=client)
    try:
        def sizes():
            for size in (0, 1, 64 << 10, big):
                data = os.urandom(size)
                got = exchange(tunnel.client_port, data, host, half_close=half_close)
                assert_same(got, data, f"{size} bytes")

        def concurrent():
            payloads = [os.urandom(1000 + 997 * i) for i in range(connections)]
            with concurrent_pool(connections) as pool:
                results = list(pool.map(
                    lambda d: exchange(tunnel.client_port, d, host, half_close=half_close),
                    payloads))
            for i, (got, want) in enumerate(zip(results, payloads)):
                assert_same(got, want, f"connection {i}")

        def half_close_check():
            # The client sends everything, shuts down its write side, then receives the whole
            # reply: EOF travels one way while data still flows the other.
            s = socket.create_connection((host, tunnel.client_port), timeout=30)
            data = os.urandom(256 << 10)
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            time.sleep(0.2)
            got = bytearray()
            while chunk := s.recv(1 << 16):
                got.extend(chunk)
            s.close()
            assert_same(bytes(got), data, "after half-close")

        test.check(f"{name}: byte-exact 0 B, 1 B, 64 KiB, {big >> 20} MiB", sizes)
        test.check(f"{name}: {connections} concurrent connections", concurrent)
        if half_close:
            test.check(f"{name}: half-close keeps the other direction", half_close_check)
        test.check(f"{name}: SIGTERM exits 0", tunnel.close)
    finally:
        echo.close()
        for p in (tunnel.client, tunnel.server):
            if p.poll() is None:
                p.kill()
    return tunnel


def concurrent_pool(n):
    return concurrent.futures.ThreadPoolExecutor(max_workers=n)


def remote_down(test, name, client_opts, server_opts):
    """kaminaric and kaminaris in front of a port where nothing listens: the app's connection
    is closed promptly, and the tunnel keeps serving."""
    dead = free_port()
    tunnel = Tunnel(client_opts, server_opts, dead)

    def closes_promptly():
        start = time.monotonic()
        got = exchange(tunnel.client_port, b"hello", timeout=10)
        elapsed = time.monotonic() - start
        if got:
            raise AssertionError(f"received {got!r} from a dead target")
        if elapsed > 5:
            raise AssertionError(f"took {elapsed:.1f}s to close")
        if "failed" not in tunnel.server.stderr_text() + tunnel.client.stderr_text():
            raise AssertionError("no log line says the connect failed:\n" + tunnel.logs())

    test.check(f"{name}: remote down closes the connection promptly", closes_promptly)
    test.check(f"{name}: remote down, still serving", closes_promptly)
    tunnel.close()
