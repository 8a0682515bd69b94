"""What the kaminaric `mux=<n>` tests share, whichever link carries the sessions (websockets in
test_interop_v2ray_mux_client.py, TLS connections in test_tls_mux.py): starting a kaminaris /
kaminaric pair at debug level, counting kaminaris's sessions per connection from its log, and
the checks that run the same over either link."""

import concurrent.futures
import os
import re
import socket

from harness import (HOST, KAMINARIC, KAMINARIS, Proc, ThreadedTarget, assert_same,
                     banner_then_echo, exchange, free_port, read_banner_then_echo, wait_port)

# The first bytes of a plain stream that look like a Mux.Cool New frame (session 1, TCP to
# 127.0.0.1:80, 5 bytes of data): kaminaris must not take kaminaric's plain stream for one.
NEW_LIKE = bytes([0x00, 0x0c, 0x00, 0x01, 0x01, 0x01, 0x01, 0x00, 0x50, 0x01,
                  127, 0, 0, 1, 0x00, 0x05]) + b"hello"


def start_kaminaris(target_port, opts):
    port = free_port()
    proc = Proc([KAMINARIS, f"{HOST}:{port}", f"{HOST}:{target_port}", f"{opts};loglevel=debug"])
    wait_port(port, proc=proc)
    return proc, port


def start_kaminaric(remote_port, opts):
    port = free_port()
    proc = Proc([KAMINARIC, f"{HOST}:{port}", f"{HOST}:{remote_port}", f"{opts};loglevel=debug"])
    wait_port(port, proc=proc)
    return proc, port


def sessions_by_connection(server):
    """kaminaris's Mux.Cool connections (by connection id), and the sessions opened on each."""
    out = {}
    for conn, _ in re.findall(r"#(\d+) Mux\.Cool session (\d+) opened", server.stderr_text()):
        out[conn] = out.get(conn, 0) + 1
    return out


def many_short_and_bulk(client_port, server, links):
    """200 short connections and 4 bulk ones (8 MiB) at once through kaminaric on
    `client_port`, byte-exact; kaminaris (`server`) saw them as at least 204 sessions, at least
    4 per connection on average and at most 128 on one. `links` names the connections in
    messages ("websockets"). Returns kaminaris's sessions per connection."""
    short = [os.urandom(100 + 37 * i) for i in range(200)]
    bulk = [os.urandom(8 << 20) for _ in range(4)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
        futures = [pool.submit(exchange, client_port, d, timeout=60) for d in bulk + short]
        results = [f.result() for f in futures]
    for i, (got, want) in enumerate(zip(results, bulk + short)):
        assert_same(got, want, f"connection {i}")
    by_conn = sessions_by_connection(server)
    total = sum(by_conn.values())
    if total < 204 or len(by_conn) > total // 4:
        raise AssertionError(f"{total} sessions over {len(by_conn)} {links}")
    if max(by_conn.values()) > 128:
        raise AssertionError(f"one of the {links} carried more than 128 sessions: {by_conn}")
    print(f"     {total} sessions over {len(by_conn)} {links}", flush=True)
    return by_conn


def half_close_both_ways(client_port, start_pair):
    """exchange() half-closes after sending and reads the whole echo (through kaminaric on
    `client_port`): the session outlives the app's End. Then a target that answers and closes
    without reading, behind a pair that `start_pair(target_port)` starts and returns as
    (kaminaris, kaminaric, kaminaric's port)."""
    data = os.urandom(3 << 20)
    assert_same(exchange(client_port, data), data, "echo after the app's half-close")
    reply_before_target_close(start_pair, 1 << 20)


def reply_before_target_close(start_pair, size):
    """A target that sends `size` bytes and closes without reading, behind a pair that
    `start_pair(target_port)` starts and returns as (server, client, client's port): three apps
    each read the whole reply, then end of stream."""
    reply = os.urandom(size)

    def speak_and_close(conn):
        conn.sendall(reply)
    target = ThreadedTarget(speak_and_close)
    s2, c2, cp2 = start_pair(target.port)
    try:
        for _ in range(3):
            with socket.create_connection((HOST, cp2), timeout=30) as s:
                got = bytearray()
                while chunk := s.recv(1 << 16):
                    got.extend(chunk)
            assert_same(bytes(got), reply, "reply before the target's close")
    finally:
        c2.kill()
        s2.kill()
        target.close()


def target_speaks_first(start_pair):
    """A target that sends a banner before reading, behind a pair from `start_pair` (as in
    half_close_both_ways()): 3 apps read it and then get their echo, as Mux.Cool sessions."""
    banner = b"220 hello from a server that speaks first\r\n"
    target = ThreadedTarget(banner_then_echo(banner))
    s2, c2, cp2 = start_pair(target.port)
    try:
        for i in range(3):
            read_banner_then_echo(cp2, banner, os.urandom(1000 + i))
        if not sessions_by_connection(s2):
            raise AssertionError("not served as Mux.Cool")
    finally:
        c2.kill()
        s2.kill()
        target.close()
