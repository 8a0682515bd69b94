"""UDP through the tunnel (`udp`, SIP003u), ws, wss and tls: datagrams of sizes 1..65507 from one
source address (one association) to a UDP echo target behind kaminaris and back, paced (at most
16 unanswered, and at most 512 KiB), each reply checked whole and in order against what was
sent; loss is reported and must be 0 on loopback. 10 000 datagrams per transport (1000 with
KAMINARI_SANITIZED=1). Also: kaminaric takes UDP on the same port as TCP, and TCP still works
beside UDP on both programs."""

import os
import random
import time

from harness import (EchoServer, Test, ThreadedTarget, Tunnel, assert_same, banner_then_echo,
                     exchange as tcp_exchange, read_banner_then_echo)
from udp_kit import MAX_DATAGRAM, SANITIZED, TRANSPORTS, UdpEcho, UdpTunnel, exchange

COUNT = 1000 if SANITIZED else 10_000

test = Test(deadline=400)
echo = UdpEcho()
tcp_echo = EchoServer()
banner_target = ThreadedTarget(banner_then_echo(b"220 ready\r\n"))


def sizes_for(n):
    """Every size class: 1..16, the largest sizes, and the rest spread over 1..65507."""
    rng = random.Random(15)
    fixed = list(range(1, 17)) + [MAX_DATAGRAM, MAX_DATAGRAM - 1, 1400, 1500, 9000, 65535 - 28]
    rest = [rng.randint(1, MAX_DATAGRAM) for _ in range(n - len(fixed))]
    out = fixed + rest
    rng.shuffle(out)
    return [min(s, MAX_DATAGRAM) for s in out]


def run(transport):
    t = UdpTunnel(transport, echo.port)
    try:
        sizes = sizes_for(COUNT)
        start = time.monotonic()
        answered, lost, corrupt, reordered = exchange(t.local, sizes)
        took = time.monotonic() - start
        total = sum(sizes)
        print(f"     {transport}: {answered}/{len(sizes)} answered, lost {lost}, corrupt {corrupt}, "
              f"reordered {reordered}; {total / 1e6:.0f} MB each way in {took:.1f}s", flush=True)
        if corrupt or reordered:
            raise AssertionError(f"{corrupt} corrupt, {reordered} reordered\n{t.logs()}")
        if lost:
            raise AssertionError(f"{lost} lost on loopback\n{t.logs()}")
    finally:
        t.close()


def tcp_beside_udp(transport):
    """The same tunnel (udp on) still carries TCP: an app that speaks first, and one that waits
    for the server's banner (for tls, kaminaris decides after udp_marker_wait)."""
    copts, sopts = TRANSPORTS[transport]
    t = Tunnel(copts + ";udp", sopts + ";udp", target_port=tcp_echo.port)
    try:
        data = os.urandom(300_000)
        assert_same(tcp_exchange(t.client_port, data), data, f"{transport} tcp with udp on")
    finally:
        t.close()
    t = Tunnel(copts + ";udp", sopts + ";udp", target_port=banner_target.port)
    try:
        read_banner_then_echo(t.client_port, b"220 ready\r\n", b"EHLO x\r\n")
    finally:
        t.close()


def over_ipv6():
    """::1 on every hop: kaminaric's UDP socket, the tunnel, kaminaris's socket to the target."""
    echo6 = UdpEcho("::1")
    t = UdpTunnel("ws", echo6.port, host="::1")
    try:
        sizes = sizes_for(500)
        answered, lost, corrupt, reordered = exchange(t.local, sizes)
        if (answered, lost, corrupt, reordered) != (len(sizes), 0, 0, 0):
            raise AssertionError(f"{answered} answered, {lost} lost, {corrupt} corrupt, "
                                 f"{reordered} reordered\n{t.logs()}")
    finally:
        t.close()
        echo6.close()


test.check("ws over ::1: 500 datagrams, none lost", over_ipv6)
for transport in TRANSPORTS:
    test.check(f"{transport}: {COUNT} datagrams 1..65507 bytes, whole, in order, none lost",
               run, transport)
    test.check(f"{transport}: TCP still tunnelled with udp on", tcp_beside_udp, transport)

echo.close()
tcp_echo.close()
banner_target.close()
test.done()
