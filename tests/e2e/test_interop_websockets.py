"""python3-websockets (a real RFC 6455 implementation) on either side of the tunnel:
as a client of kaminaris, and as an echo server behind kaminaric in every mask mode."""

import asyncio
import concurrent.futures
import os
import socket
import threading

import websockets

from harness import (KAMINARIC, KAMINARIS, EchoServer, Proc, Test, addr, assert_same,
                     free_port, stops_cleanly, wait_port, HOST)

WS = "ws;host=example.com;path=/tunnel"
test = Test(deadline=300)
echo = EchoServer()
server_port = free_port()
server = Proc([KAMINARIS, addr(HOST, server_port), addr(HOST, echo.port), WS])
wait_port(server_port, proc=server)
URI = "ws://example.com/tunnel"  # connected to 127.0.0.1 through host=/port= below


async def client_round_trip(size, chunk):
    data = os.urandom(size)
    got = bytearray()
    async with websockets.connect(URI, host=HOST, port=server_port, max_size=None,
                                  compression=None, open_timeout=10) as ws:
        async def sender():
            for i in range(0, len(data), chunk):
                await ws.send(data[i:i + chunk])

        async def receiver():
            while len(got) < len(data):
                msg = await ws.recv()
                assert isinstance(msg, bytes), f"text frame from kaminaris: {msg!r}"
                got.extend(msg)

        await asyncio.gather(sender(), receiver())
        # kaminaris answers ping with pong.
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 5)
    assert_same(bytes(got), data, f"{size} bytes in {chunk}-byte messages")


def websockets_client_16mib():
    asyncio.run(client_round_trip(16 << 20, 60000))


def websockets_client_many():
    async def many():
        await asyncio.gather(*(client_round_trip(100_000 + i, 777 + i) for i in range(50)))
    asyncio.run(many())


def wrong_path_gets_404():
    with socket.create_connection((HOST, server_port), timeout=10) as s:
        s.sendall(b"GET /other HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"Sec-WebSocket-Version: 13\r\n\r\n")
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 404"), reply[:100]


def websockets_client_rejected_on_wrong_host():
    async def go():
        try:
            async with websockets.connect("ws://other.example/tunnel", host=HOST,
                                          port=server_port, open_timeout=10):
                pass
        except websockets.exceptions.InvalidStatusCode as e:
            assert e.status_code == 404, e
            return
        raise AssertionError("handshake with a wrong Host succeeded")
    asyncio.run(go())


test.check("websockets client -> kaminaris: 16 MiB byte-exact, ping answered",
           websockets_client_16mib)
test.check("websockets client -> kaminaris: 50 concurrent connections", websockets_client_many)
test.check("wrong path gets HTTP/1.1 404", wrong_path_gets_404)
test.check("websockets client with a wrong Host gets 404",
           websockets_client_rejected_on_wrong_host)

# kaminaric -> python websockets echo server, every mask mode.
ws_port = free_port()
server_ready = []


def run_echo_server():
    async def handler(ws, path):
        if path != "/tunnel":
            await ws.close(1008)
            return
        async for msg in ws:
            await ws.send(msg)

    async def main():
        async with websockets.serve(handler, HOST, ws_port, max_size=None, compression=None):
            server_ready.append(True)
            await asyncio.Future()
    asyncio.run(main())


threading.Thread(target=run_echo_server, daemon=True).start()
wait_port(ws_port)

for mode in ("skip", "fixed", "standard"):
    port = free_port()
    client = Proc([KAMINARIC, addr(HOST, port), addr(HOST, ws_port), f"{WS};mask={mode}"])
    wait_port(port, proc=client)

    def through_kaminaric(port=port):
        data = os.urandom(16 << 20)
        # The websockets echo server closes after our close; read until the echo is complete.
        s = socket.create_connection((HOST, port), timeout=60)
        got = bytearray()
        s.sendall(data)
        while len(got) < len(data):
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            got.extend(chunk)
        s.close()
        assert_same(bytes(got), data, f"mask={mode}")

    def many_through_kaminaric(port=port):
        def one(i):
            data = os.urandom(50_000 + i)
            s = socket.create_connection((HOST, port), timeout=60)
            s.sendall(data)
            got = bytearray()
            while len(got) < len(data):
                chunk = s.recv(1 << 16)
                if not chunk:
                    break
                got.extend(chunk)
            s.close()
            assert_same(bytes(got), data, f"connection {i}")
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            list(pool.map(one, range(64)))

    test.check(f"kaminaric mask={mode} -> websockets echo server: 16 MiB byte-exact",
               through_kaminaric)
    test.check(f"kaminaric mask={mode} -> websockets echo server: 64 connections",
               many_through_kaminaric)
    test.check(f"kaminaric mask={mode}: SIGTERM exits 0", stops_cleanly, client)

test.check("kaminaris: SIGTERM exits 0", stops_cleanly, server)
test.done()
