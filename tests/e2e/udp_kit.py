"""Helpers for the UDP (`udp`, SIP003u) end-to-end tests: the transports that carry UDP, a tunnel
with `udp` on both sides in front of a UDP target, a UDP echo target, and a paced datagram
exchange that checks content and order and counts loss."""

import os
import select
import socket
import threading
import time

from harness import HOST, KAMINARIC, KAMINARIS, Proc, addr, free_port, wait_port

SANITIZED = bool(os.environ.get("KAMINARI_SANITIZED"))

# transport -> (client options, server options)
TRANSPORTS = {
    "ws": ("ws;host=example.com;path=/ws", "ws;host=example.com;path=/ws"),
    "wss": ("ws;host=example.com;path=/ws;tls;sni=example.com;insecure",
            "ws;host=example.com;path=/ws;tls;servername=example.com"),
    "tls": ("tls;sni=example.com;insecure", "tls;servername=example.com"),
}

MAX_DATAGRAM = 65507


def free_udp_port(host=HOST):
    """A port free for both TCP and UDP (kaminaric takes both)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        port = free_port(host)
        with socket.socket(family, socket.SOCK_DGRAM) as u:
            try:
                u.bind((host, port))
            except OSError:
                continue
            return port
    raise AssertionError("no free TCP+UDP port")


def big_buffers(sock):
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)


class UdpTunnel:
    """kaminaris (`udp`) in front of a UDP target port, kaminaric (`udp`) in front of it."""

    def __init__(self, transport, target_port, extra="", host=HOST, server_port=None):
        self.host = host
        self.transport = transport
        copts, sopts = TRANSPORTS[transport]
        self.copts = f"{copts};udp{extra}"
        self.sopts = f"{sopts};udp{extra}"
        self.target_port = target_port
        self.server_port = server_port or free_port(host)
        self.client_port = free_udp_port(host)
        self.start_server()
        self.client = Proc([KAMINARIC, addr(host, self.client_port),
                            addr(host, self.server_port), self.copts])
        wait_port(self.client_port, host, proc=self.client)

    def start_server(self):
        self.server = Proc([KAMINARIS, addr(self.host, self.server_port),
                            addr(self.host, self.target_port), self.sopts])
        wait_port(self.server_port, self.host, proc=self.server)

    @property
    def local(self):
        return (self.host, self.client_port)

    def logs(self):
        return ("--- kaminaric ---\n" + self.client.stderr_text()[-3000:] + "--- kaminaris ---\n" +
                self.server.stderr_text()[-3000:])

    def close(self):
        codes = (self.client.stop(), self.server.stop())
        if codes != (0, 0):
            raise AssertionError(f"exit codes {codes} after SIGTERM\n{self.logs()}")


class UdpEcho:
    """A UDP echo target on loopback: every datagram goes back to its sender. `sources` holds
    every source address seen (one per kaminaris association); `source_of[data]` the source
    of the last datagram carrying `data` (a port freed by an earlier association may come
    back for a new one, so a set difference can miss a new association)."""

    def __init__(self, host=HOST):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        big_buffers(self.sock)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.sources = set()
        self.source_of = {}
        self.count = 0
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                data, src = self.sock.recvfrom(70000)
            except socket.timeout:
                continue
            except OSError:
                return
            self.sources.add(src)
            self.source_of[data] = src
            self.count += 1
            try:
                self.sock.sendto(data, src)
            except OSError:
                pass

    def close(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()


_BLOCK = os.urandom(1 << 17)


def payload(seq, size):
    """Datagram `seq` of `size` bytes: its number first (when it fits), then bytes that depend
    on it, so a swapped, shifted or corrupted datagram is told from the right one."""
    off = (seq * 7919) % (len(_BLOCK) - MAX_DATAGRAM)
    body = _BLOCK[off:off + size]
    head = seq.to_bytes(4, "big")
    return (head + body[4:]) if size >= 4 else body


def exchange(local, sizes, window=16, max_bytes=512 * 1024, reply_timeout=3.0, deadline=120.0):
    """Sends datagrams of `sizes` to `local` (kaminaric), at most `window` (and `max_bytes`)
    unanswered at a time, each reply checked against the oldest unanswered datagram: replies
    must come back whole and in order. Returns (answered, lost, corrupt, reordered)."""
    family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    big_buffers(s)
    s.connect(local)
    pending = []  # [(seq, bytes)]
    in_flight = 0
    nxt = 0
    answered = lost = corrupt = reordered = 0
    end = time.monotonic() + deadline
    last_progress = time.monotonic()
    try:
        while nxt < len(sizes) or pending:
            if time.monotonic() > end:
                raise AssertionError(f"exchange deadline: {answered} answered of {len(sizes)}")
            while (nxt < len(sizes) and len(pending) < window and
                   (in_flight + sizes[nxt] <= max_bytes or not pending)):
                d = payload(nxt, sizes[nxt])
                s.send(d)
                pending.append((nxt, d))
                in_flight += len(d)
                nxt += 1
            r, _, _ = select.select([s], [], [], 0.2)
            if not r:
                if time.monotonic() - last_progress > reply_timeout:
                    # The oldest is lost; go on with the rest.
                    seq, d = pending.pop(0)
                    in_flight -= len(d)
                    lost += 1
                    last_progress = time.monotonic()
                continue
            got = s.recv(70000)
            last_progress = time.monotonic()
            for i, (seq, d) in enumerate(pending):
                if got == d:
                    if i != 0:
                        # Earlier ones were skipped: lost, or reordered if they come later.
                        reordered += 0
                        for _, skipped in pending[:i]:
                            in_flight -= len(skipped)
                        lost += i
                    in_flight -= len(d)
                    del pending[:i + 1]
                    answered += 1
                    break
            else:
                # Not any unanswered datagram: corrupted, or one already counted lost (late,
                # i.e. out of order).
                if len(got) >= 4 and int.from_bytes(got[:4], "big") < (pending[0][0] if pending
                                                                       else nxt):
                    reordered += 1
                else:
                    corrupt += 1
    finally:
        s.close()
    return answered, lost, corrupt, reordered


def ask(local, data, timeout=3.0, sock=None):
    """One datagram to `local` and its reply (None on timeout)."""
    own = sock is None
    if own:
        sock = socket.socket(socket.AF_INET6 if ":" in local[0] else socket.AF_INET,
                             socket.SOCK_DGRAM)
    try:
        sock.settimeout(timeout)
        sock.sendto(data, local)
        try:
            return sock.recv(70000)
        except socket.timeout:
            return None
    finally:
        if own:
            sock.close()
