"""Bad input on UDP associations (`udp`): straight to kaminaris, a ws association (upgrade with
`Kaminari-Udp: 1`) or a tls one (the marker) whose stream then claims a datagram larger than
65 507 bytes (a 16-bit prefix tops out at 65 535: 0xffff and 65 508 are sent; a 70 000-byte
claim cannot be written), ends inside a length prefix or a datagram, or is garbage. Each time
that connection ends (kaminaris closes it), and nothing else does: kaminaris keeps running, and
an association through kaminaric opened before the bad input goes on working."""

import base64
import os
import socket
import ssl
import struct
import time

from harness import HOST, Test
from udp_kit import UdpEcho, UdpTunnel, ask

MARKER = bytes([0xff, 0xf7, 0xd4, 0x6e, 0x03, 0xa7, 0x5c, 0xe9,
                0x21, 0xb6, 0x7d, 0x90, 0x4f, 0xc2, 0x38, 0x15])

test = Test(deadline=180)
echo = UdpEcho()


def ws_frame(payload):
    """One masked binary frame, as a client sends it."""
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x82, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x82, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x82, 0x80 | 127, n)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def ws_open(port):
    s = socket.create_connection((HOST, port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\nKaminari-Udp: 1\r\nKaminari-Half-Close: 1\r\n\r\n")
              .encode())
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(4096)
        if not d:
            raise AssertionError("kaminaris closed during the upgrade")
        head += d
    if not head.startswith(b"HTTP/1.1 101"):
        raise AssertionError(f"not upgraded: {head[:60]!r}")
    return s


def tls_open(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection((HOST, port), timeout=5)
    s = ctx.wrap_socket(raw, server_hostname="example.com")
    s.sendall(MARKER)
    return s


def ends(s, what, t):
    """kaminaris ends the connection within 5 s (whatever it sends before its end)."""
    end = time.monotonic() + 5
    try:
        while time.monotonic() < end:
            d = s.recv(65536)
            if not d:
                return
    except (ConnectionResetError, ssl.SSLError, OSError):
        return
    finally:
        s.close()
    raise AssertionError(f"{what}: kaminaris kept the connection open\n{t.logs()}")


def good_association_still_works(t, s, tag):
    if ask(t.local, tag, sock=s) != tag:
        raise AssertionError(f"the good association stopped working after {tag!r}\n{t.logs()}")
    if t.server.poll() is not None:
        raise AssertionError(f"kaminaris exited\n{t.logs()}")


# name -> (chunks sent, whether the client then ends its stream): a claim too large is refused
# at once, with the client's side still open; a truncation shows only at the end of the stream.
CASES = {
    "a prefix claiming 65535 bytes": ([b"\xff\xff" + b"x" * 100], False),
    "a prefix claiming 65508 bytes": ([struct.pack("!H", 65508)], False),
    "a valid datagram then 0xffff": ([struct.pack("!H", 3) + b"abc" + b"\xff\xff"], False),
    "a truncated length prefix": ([b"\x00"], True),
    "a truncated datagram": ([struct.pack("!H", 1000) + b"y" * 10], True),
    "garbage": ([b"\xde\xad\xbe\xef" * 16, os.urandom(3000)], True),
}


def case(transport, chunks, then_end, name):
    t = transports[transport]
    s = (ws_open if transport == "ws" else tls_open)(t.server_port)
    for c in chunks:
        s.sendall(ws_frame(c) if transport == "ws" else c)
    if then_end:
        # The client's end of stream inside a frame: the connection must end, not wait forever.
        try:
            if transport == "ws":
                s.sendall(struct.pack("!BB", 0x88, 0x80) + b"\0\0\0\0")  # close frame, empty
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    ends(s, name, t)
    good_association_still_works(t, good[transport], f"{transport} after {name}".encode())


transports = {tr: UdpTunnel(tr, echo.port) for tr in ("ws", "tls")}
good = {}
for tr, t in transports.items():
    good[tr] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    test.check(f"{tr}: a good association through kaminaric", good_association_still_works, t,
               good[tr], b"hello")
for tr in transports:
    for name, (chunks, then_end) in CASES.items():
        test.check(f"{tr}: {name} ends that connection, nothing else", case, tr, chunks,
                   then_end, name)
for tr, t in transports.items():
    good[tr].close()
    test.check(f"{tr}: both programs stop cleanly", t.close)
echo.close()
test.done()
