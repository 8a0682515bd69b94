"""Websocket early data (`ed=<n>`, Xray compatible): the app's first bytes ride in the upgrade
request's Sec-WebSocket-Protocol.

- kaminaric ed=N -> kaminaris -> echo: first writes longer than, exactly, and shorter than N,
  empty, and a target that speaks first (no early data then); byte-exact, and both debug logs
  show the bytes went in the upgrade request.
- Xray-style clients -> kaminaris: python-websockets with subprotocols=[token] (the token is
  the chosen subprotocol; the target gets the early bytes first, then frames) and raw requests
  (standard base64 with padding; subprotocol lists are left alone).
- kaminaric ed=N -> a websockets server that ignores the header: the bytes are sent again as
  frames, nothing lost or doubled.
- wss + 0rtt + ed: resumed connections carry the upgrade request with the app's bytes as TLS
  early data, accepted, byte-exact; after a kaminaris restart it is rejected and resent,
  byte-exact. wss + ed without 0rtt too, and ed on warm connections (pool=) and with tfo."""

import asyncio
import base64
import os
import re
import socket
import threading
import time

import websockets

from early_data_kit import conn_ids, exchange_now
from harness import (HOST, KAMINARIC, KAMINARIS, EchoServer, Proc, Test, ThreadedTarget, Tunnel,
                     addr, assert_same, banner_then_echo, free_port, stops_cleanly, wait_port)

WS = "ws;host=example.com;path=/ws"
ED = 100
test = Test(deadline=240)


# --- kaminaric ed=N -> kaminaris -> echo --------------------------------------------------
echo = ThreadedTarget(banner_then_echo())
tunnel = Tunnel(f"{WS};ed={ED};loglevel=debug", f"{WS};loglevel=debug", echo.port)
SIZES = (ED + 1, ED, ED - 1, 1, 64 << 10, 0)


def kaminaric_sizes():
    for size in SIZES:
        data = os.urandom(size)
        assert_same(exchange_now(tunnel.client_port, data), data, f"{size} bytes")
    time.sleep(0.2)
    client = conn_ids(tunnel.client.stderr_text(),
                      r"websocket early data: (\d+) bytes in the upgrade request")
    server = conn_ids(tunnel.server.stderr_text(), r"websocket early data: (\d+) bytes")
    want = sorted(min(s, ED) for s in SIZES if s)
    if sorted(client.values()) != want or sorted(server.values()) != want:
        raise AssertionError(f"early data sizes: client {sorted(client.values())}, "
                             f"server {sorted(server.values())}, want {want}\n{tunnel.logs()}")
    if "not echoed" in tunnel.client.stderr_text():
        raise AssertionError("kaminaris did not echo the early data\n" + tunnel.logs())


def kaminaric_app_writes_in_pieces():
    # The app's first write holds 10 bytes, the rest follows 300 ms later (after the wait):
    # the first write goes early (all 10 bytes, unless kaminaric was so slow to read that both
    # writes were there: then the first 100), the rest as frames; all arrives once, in order.
    before = len(conn_ids(tunnel.client.stderr_text(), r"websocket early data: (\d+) bytes"))
    s = socket.create_connection((HOST, tunnel.client_port), timeout=10)
    head, tail = os.urandom(10), os.urandom(5000)
    s.sendall(head)
    time.sleep(0.3)
    s.sendall(tail)
    s.shutdown(socket.SHUT_WR)
    got = bytearray()
    while chunk := s.recv(1 << 16):
        got.extend(chunk)
    s.close()
    assert_same(bytes(got), head + tail, "two writes")
    sizes = list(conn_ids(tunnel.client.stderr_text(),
                          r"websocket early data: (\d+) bytes").values())
    if len(sizes) != before + 1 or sizes[-1] not in (10, ED):
        raise AssertionError(f"early data sizes {sizes}\n{tunnel.logs()}")


test.check(f"kaminaric ed={ED} -> kaminaris: {ED + 1}, {ED}, {ED - 1}, 1 B, 64 KiB, 0 B "
           "byte-exact; early data in the upgrade request on both sides", kaminaric_sizes)
test.check(f"kaminaric ed={ED}: first write then more later, byte-exact",
           kaminaric_app_writes_in_pieces)
test.check("kaminaric ed: SIGTERM exits 0", tunnel.close)
echo.close()

# A target that speaks first: the app sends nothing until the banner came.
banner = ThreadedTarget(banner_then_echo(b"220 target ready\r\n"))
first_tunnel = Tunnel(f"{WS};ed={ED};loglevel=debug", f"{WS};loglevel=debug", banner.port)


def server_speaks_first():
    for _ in range(3):
        s = socket.create_connection((HOST, first_tunnel.client_port), timeout=10)
        got = b""
        while not got.endswith(b"\r\n"):
            chunk = s.recv(100)
            if not chunk:
                raise AssertionError(f"EOF before the banner: {got!r}")
            got += chunk
        if got != b"220 target ready\r\n":
            raise AssertionError(f"banner {got!r}")
        data = os.urandom(3000)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        back = bytearray()
        while chunk := s.recv(1 << 16):
            back.extend(chunk)
        s.close()
        assert_same(bytes(back), data, "after the banner")
    if "early data" in first_tunnel.client.stderr_text() + first_tunnel.server.stderr_text():
        raise AssertionError("early data although the app sent nothing\n" + first_tunnel.logs())


test.check("kaminaric ed: target speaks first, no early data, byte-exact", server_speaks_first)
test.check("kaminaric ed (server first): SIGTERM exits 0", first_tunnel.close)
banner.close()

# --- Xray-style clients -> kaminaris -> echo ----------------------------------------------
echo = ThreadedTarget(banner_then_echo())
server_port = free_port()
server = Proc([KAMINARIS, addr(HOST, server_port), addr(HOST, echo.port),
               f"{WS};loglevel=debug"])
wait_port(server_port, proc=server)


def xray_websockets_client():
    async def one(size):
        early = os.urandom(size)
        token = base64.urlsafe_b64encode(early).rstrip(b"=").decode()
        after = os.urandom(777)
        async with websockets.connect("ws://example.com/ws", host=HOST, port=server_port,
                                      subprotocols=[token], max_size=None, compression=None,
                                      open_timeout=10) as ws:
            if ws.subprotocol != token:
                raise AssertionError(f"chosen subprotocol {ws.subprotocol!r}")
            # The echo of the early bytes comes before anything is sent as a frame.
            got = bytearray()
            while len(got) < len(early):
                got.extend(await asyncio.wait_for(ws.recv(), 10))
            await ws.send(after)
            while len(got) < len(early) + len(after):
                got.extend(await asyncio.wait_for(ws.recv(), 10))
        assert_same(bytes(got), early + after, f"{size} early bytes then a frame")

    async def main():
        # python-websockets reads header lines of at most 4110 bytes: up to 3 KiB of early data.
        for size in (1, 2, 3, 100, 2048, 3000):
            await one(size)
    asyncio.run(main())
    sizes = sorted(conn_ids(server.stderr_text(), r"websocket early data: (\d+) bytes").values())
    if sizes != [1, 2, 3, 100, 2048, 3000]:
        raise AssertionError(f"kaminaris logged early data sizes {sizes}")


def raw_request(protocol_line):
    return (b"GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n" + protocol_line + b"\r\n")


def read_head(s):
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            raise AssertionError(f"EOF in the response head: {head!r}")
        head += chunk
    return head


def read_frames(s, want):
    """Payload of unmasked server frames until `want` bytes arrived."""
    got = b""
    buf = b""
    while len(got) < want:
        chunk = s.recv(1 << 16)
        if not chunk:
            raise AssertionError(f"EOF after {len(got)} payload bytes")
        buf += chunk
        while len(buf) >= 2:
            n, off = buf[1] & 0x7f, 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, off = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, off = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < off + n:
                break
            if buf[0] != 0x82:
                raise AssertionError(f"unexpected frame {buf[:2]!r}")
            got += buf[off:off + n]
            buf = buf[off + n:]
    return got


def xray_raw_standard_base64():
    # 0xfb 0xff in the data forces '+' and '/', a length of 3k+1 forces '==' padding.
    early = bytes([0xfb, 0xff, 0xbf]) * 100 + b"!"
    token = base64.b64encode(early)
    assert b"+" in token and b"/" in token and token.endswith(b"==")
    with socket.create_connection((HOST, server_port), timeout=10) as s:
        s.sendall(raw_request(b"Sec-WebSocket-Protocol: " + token + b"\r\n"))
        head = read_head(s)
        if not head.startswith(b"HTTP/1.1 101 ") or \
                b"\r\nSec-WebSocket-Protocol: " + token + b"\r\n" not in head:
            raise AssertionError(f"no verbatim echo: {head!r}")
        # Nothing sent as a frame yet: the echo of the early bytes proves they came with the
        # upgrade request and went to the target first.
        assert_same(read_frames(s, len(early)), early, "padded standard base64")


def subprotocol_list_is_ignored():
    with socket.create_connection((HOST, server_port), timeout=10) as s:
        s.sendall(raw_request(b"Sec-WebSocket-Protocol: chat, superchat\r\n"))
        head = read_head(s)
        if not head.startswith(b"HTTP/1.1 101 ") or b"Sec-WebSocket-Protocol" in head:
            raise AssertionError(f"a subprotocol list was answered: {head!r}")
        s.sendall(b"\x82\x82\0\0\0\0hi")
        assert_same(read_frames(s, 2), b"hi", "after a subprotocol list")

    async def listed():
        async with websockets.connect("ws://example.com/ws", host=HOST, port=server_port,
                                      subprotocols=["chat", "superchat"],
                                      open_timeout=10) as ws:
            if ws.subprotocol is not None:
                raise AssertionError(f"chosen subprotocol {ws.subprotocol!r}")
            await ws.send(b"x")
            if await asyncio.wait_for(ws.recv(), 10) != b"x":
                raise AssertionError("no echo")
    asyncio.run(listed())


def undecodable_is_ignored():
    with socket.create_connection((HOST, server_port), timeout=10) as s:
        s.sendall(raw_request(b"Sec-WebSocket-Protocol: Q\r\n"))  # 6 bits: not a byte
        head = read_head(s)
        if not head.startswith(b"HTTP/1.1 101 ") or b"Sec-WebSocket-Protocol" in head:
            raise AssertionError(f"an undecodable value was echoed: {head!r}")
        s.sendall(b"\x82\x82\0\0\0\0ok")
        assert_same(read_frames(s, 2), b"ok", "after an undecodable value")


test.check("Xray-style websockets client (subprotocols=[token]) -> kaminaris: token chosen, "
           "early bytes first then frames, 1 B to 3000 B", xray_websockets_client)
test.check("raw request, standard base64 with '+/' and '==': echoed verbatim, delivered first",
           xray_raw_standard_base64)
test.check("subprotocol lists are not early data, not echoed", subprotocol_list_is_ignored)
test.check("an undecodable value is not early data, not echoed", undecodable_is_ignored)
test.check("kaminaris: SIGTERM exits 0", stops_cleanly, server)
echo.close()

# --- kaminaric ed=N -> a websockets server that ignores the header ------------------------
ws_port = free_port()


def run_ignoring_server():
    async def handler(ws, path):
        async for msg in ws:  # an echo; no subprotocols configured, so none is answered
            await ws.send(msg)

    async def main():
        async with websockets.serve(handler, HOST, ws_port, max_size=None, compression=None):
            await asyncio.Future()
    asyncio.run(main())


threading.Thread(target=run_ignoring_server, daemon=True).start()
wait_port(ws_port)
ignored_port = free_port()
ignored_client = Proc([KAMINARIC, addr(HOST, ignored_port), addr(HOST, ws_port),
                       f"{WS};ed={ED};loglevel=debug"])
wait_port(ignored_port, proc=ignored_client)


def resent_when_not_echoed():
    for size in (ED + 1, ED, ED - 1, 1, 300 << 10):
        data = os.urandom(size)
        # The websockets server answers our close with its own: read the whole echo first.
        s = socket.create_connection((HOST, ignored_port), timeout=30)
        s.sendall(data)
        got = bytearray()
        while len(got) < len(data):
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            got.extend(chunk)
        s.close()
        assert_same(bytes(got), data, f"{size} bytes")
    log = ignored_client.stderr_text()
    resent = sorted(conn_ids(log, r"websocket early data not echoed; resending (\d+) bytes "
                                  r"as frames").values())
    if resent != sorted([ED, ED, ED - 1, 1, ED]):
        raise AssertionError(f"resent {resent}\n{log}")


test.check(f"kaminaric ed={ED} -> server ignoring the header: resent as frames, byte-exact",
           resent_when_not_echoed)
test.check("kaminaric (ignored ed): SIGTERM exits 0", stops_cleanly, ignored_client)

# --- wss + 0rtt + ed -------------------------------------------------------------------------
echo = EchoServer()
wss = Tunnel(f"{WS};ed=2048;tls;insecure;0rtt;loglevel=debug",
             f"{WS};tls;servername=example.com;loglevel=debug", echo.port)


def wss_zero_rtt_ed():
    # One at a time: each resumption takes the ticket the previous connection left.
    for i in range(6):
        data = os.urandom((1000, 2048, 2049, 5000, 64 << 10, 7)[i])
        assert_same(exchange_now(wss.client_port, data), data, f"connection {i}")
    log = wss.server.stderr_text()
    accepted = {int(i) for i in re.findall(r"#(\d+) TLS session resumed; early data accepted",
                                           log)}
    early = conn_ids(log, r"websocket early data: (\d+) bytes")
    both = accepted & set(early)
    if len(both) < 4:
        raise AssertionError(f"{len(both)} of 6 connections had ed inside accepted 0-RTT\n"
                             f"{wss.logs()}")


def wss_zero_rtt_ed_rejected():
    # A restarted kaminaris cannot decrypt the client's ticket: a full handshake, so the 0-RTT
    # flight (the upgrade request with the app's bytes) is dropped by the server and sent
    # again after the handshake, exactly once.
    assert wss.server.stop() == 0
    wss.server = Proc([KAMINARIS, addr(HOST, wss.server_port), addr(HOST, echo.port),
                       f"{WS};tls;servername=example.com;loglevel=debug"])
    wait_port(wss.server_port, proc=wss.server)
    for i in range(3):
        data = os.urandom((1500, 2048, 9000)[i])
        assert_same(exchange_now(wss.client_port, data), data, f"after restart, connection {i}")
    sessions = re.findall(r"#\d+ TLS session (new|resumed)", wss.client.stderr_text())
    if sessions[-3] != "new":
        raise AssertionError(f"sessions {sessions}: resumed by a restarted server?\n{wss.logs()}")
    taken = sorted(conn_ids(wss.server.stderr_text(),
                            r"websocket early data: (\d+) bytes").values())
    if taken != [1500, 2048, 2048]:
        raise AssertionError(f"the restarted kaminaris took {taken}\n{wss.logs()}")


test.check("wss 0rtt ed=2048: 6 connections byte-exact; upgrade with the app's bytes accepted "
           "as TLS early data", wss_zero_rtt_ed)
test.check("wss 0rtt ed=2048: kaminaris restarted, 0-RTT flight dropped and resent, byte-exact",
           wss_zero_rtt_ed_rejected)
test.check("wss 0rtt ed: SIGTERM exits 0", wss.close)

# wss + ed without 0rtt: the request with the app's bytes goes right behind the TLS handshake.
wss_plain = Tunnel(f"{WS};ed={ED};tls;insecure;loglevel=debug",
                   f"{WS};tls;servername=example.com;loglevel=debug", echo.port)


def wss_ed():
    sizes = (ED + 1, ED, ED - 1, 1, 64 << 10, 0)
    for size in sizes:
        data = os.urandom(size)
        assert_same(exchange_now(wss_plain.client_port, data), data, f"{size} bytes")
    taken = sorted(conn_ids(wss_plain.server.stderr_text(),
                            r"websocket early data: (\d+) bytes").values())
    if taken != sorted(min(s, ED) for s in sizes if s):
        raise AssertionError(f"kaminaris took {taken}\n{wss_plain.logs()}")


test.check(f"wss ed={ED} (no 0rtt): byte-exact, early data in the upgrade request", wss_ed)
test.check("wss ed: SIGTERM exits 0", wss_plain.close)

# Warm connections (pool=) keep the upgrade for the moment an app arrives: its first bytes go
# into that request. tfo (a silent fallback where the kernel does not allow it) changes nothing.
for name, client_extra, server_extra in (
        ("ws pool=2", "pool=2", ""),
        ("wss pool=2", "pool=2;tls;insecure", "tls;servername=example.com"),
        ("ws tfo", "tfo", "tfo")):
    extra = Tunnel(f"{WS};ed={ED};{client_extra};loglevel=debug",
                   f"{WS};{server_extra};loglevel=debug".replace(";;", ";"), echo.port)

    def carried(extra=extra, name=name):
        sizes = (ED + 1, ED, ED - 1, 1, 64 << 10, 0)
        for size in sizes:
            time.sleep(0.1)  # lets the pool refill, so each app starts on a warm connection
            data = os.urandom(size)
            assert_same(exchange_now(extra.client_port, data), data, f"{name}: {size} bytes")
        taken = sorted(conn_ids(extra.server.stderr_text(),
                                r"websocket early data: (\d+) bytes").values())
        if taken != sorted(min(s, ED) for s in sizes if s):
            raise AssertionError(f"kaminaris took {taken}\n{extra.logs()}")
        if "pool" in name and "on a warm connection" not in extra.client.stderr_text():
            raise AssertionError("no app started on a warm connection\n" + extra.logs())

    test.check(f"{name} ed={ED}: byte-exact, early data in the upgrade request", carried)
    test.check(f"{name} ed: SIGTERM exits 0", extra.close)
echo.close()
test.done()
