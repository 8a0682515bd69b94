"""TLS 1.3 0-RTT between kaminaric and kaminaris: after the first connection, resumed
connections carry their first flight as early data, and nothing is lost or doubled. For tls
that flight is the app's first bytes; for wss it is the websocket upgrade request (the app's
bytes must wait for the 101), so the upgrade costs no extra round trip. A recorded first flight
sent to kaminaris again does not resume, and its early data never reaches the target."""

import os
import re
import socket
import threading
import time

from fault_kit import wait_for
from harness import (HOST, KAMINARIS, EchoServer, Proc, Test, ThreadedTarget, Tunnel, addr,
                     assert_same, exchange, wait_port)

test = Test(deadline=120)
echo = EchoServer()
SERVER_TLS = "tls;servername=example.com;loglevel=debug"
WS = "ws;host=example.com;path=/ws"

for name, client_opts, server_opts in (
        ("tls", "tls;sni=example.com;insecure;0rtt;loglevel=debug", SERVER_TLS),
        ("wss", f"{WS};tls;insecure;0rtt;loglevel=debug", f"{WS};{SERVER_TLS}")):
    tunnel = Tunnel(client_opts, server_opts, echo.port)

    def connections(tunnel=tunnel):
        # One at a time: each resumption takes the ticket the previous connection left.
        for i in range(6):
            data = os.urandom(100 + 4093 * i)
            assert_same(exchange(tunnel.client_port, data), data, f"connection {i}")

    def early_data_accepted(tunnel=tunnel):
        log = tunnel.server.stderr_text()
        accepted = len(re.findall(r"TLS session resumed; early data accepted", log))
        if accepted < 4:
            raise AssertionError(f"{accepted} of 6 connections used 0-RTT\n{tunnel.logs()}")

    test.check(f"{name} 0rtt: 6 connections byte-exact", connections)
    test.check(f"{name} 0rtt: resumed connections send early data, accepted", early_data_accepted)

    def nothing_made_ahead(tunnel=tunnel):
        # 0rtt's ClientHello goes out with the app's first bytes: it cannot be made before them.
        if "ClientHello made ahead" in tunnel.client.stderr_text():
            raise AssertionError("a ClientHello was made ahead with 0rtt\n" + tunnel.logs())

    test.check(f"{name} 0rtt: no ClientHello made ahead", nothing_made_ahead)
    test.check(f"{name} 0rtt: SIGTERM exits 0", tunnel.close)


# kaminaris hands accepted early data to the target before the client's Finished and sends the
# answer as 0.5-RTT data. A target that answers and closes at once: the app still gets the
# whole answer and then the end of the stream (close_notify waits for the handshake to end).
def answer_then_close(conn):
    request = conn.recv(1 << 16)
    conn.sendall(b"answer to " + request)
    conn.shutdown(socket.SHUT_WR)


closer = ThreadedTarget(answer_then_close)
fast = Tunnel("tls;sni=example.com;insecure;0rtt;loglevel=debug", SERVER_TLS, closer.port)


def answered_then_closed():
    for i in range(5):
        request = f"request {i}".encode()
        with socket.create_connection((HOST, fast.client_port), timeout=10) as s:
            s.sendall(request)
            got = b""
            while chunk := s.recv(4096):
                got += chunk
        assert_same(got, b"answer to " + request, f"connection {i}")
    log = fast.server.stderr_text()
    if len(re.findall(r"TLS session resumed; early data accepted", log)) < 3:
        raise AssertionError(f"0-RTT not used\n{fast.logs()}")


def restarted_server_rejects_and_nothing_is_lost():
    # A restarted kaminaris cannot decrypt the client's ticket: a full handshake, the early data
    # is dropped by the server and kaminaric sends it again after the handshake, once.
    assert fast.server.stop() == 0
    fast.server = Proc([KAMINARIS, addr(HOST, fast.server_port), addr(HOST, echo.port),
                        SERVER_TLS])
    wait_port(fast.server_port, proc=fast.server)
    for i in range(4):
        data = os.urandom(3000 + 7 * i)
        assert_same(exchange(fast.client_port, data), data, f"after restart, connection {i}")
    log = fast.server.stderr_text()
    if "TLS session new" not in log or "early data accepted" not in log:
        raise AssertionError(f"expected a full handshake, then 0-RTT again\n{fast.logs()}")


class Recorder:
    """A TCP proxy in front of `upstream_port` that keeps all a client sent on each connection
    (`sent`, in the order the connections ended)."""

    def __init__(self):
        self.sent = []
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(64)

    def start(self, upstream_port):
        threading.Thread(target=self._accept, args=(upstream_port,), daemon=True).start()
        return self.sock.getsockname()[1]

    def _accept(self, upstream_port):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            up = socket.create_connection((HOST, upstream_port))
            threading.Thread(target=self._up, args=(client, up), daemon=True).start()
            threading.Thread(target=self._down, args=(client, up), daemon=True).start()

    def _up(self, client, up):
        kept = b""
        try:
            while chunk := client.recv(65536):
                kept += chunk
                up.sendall(chunk)
            up.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.sent.append(kept)

    @staticmethod
    def _down(client, up):
        try:
            while chunk := up.recv(65536):
                client.sendall(chunk)
            client.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self.sock.close()


def replayed_early_data_reaches_the_target_once():
    # An attacker on the path records a resumed connection's first flight (ClientHello and the
    # early data) and sends it to kaminaris again. Its ticket was used once already: OpenSSL's
    # anti-replay (single-use tickets in kaminaris's session cache) refuses the PSK, so the
    # early data goes nowhere and the replayed handshake fails without its keys.
    received = []

    def keep(conn):
        kept = b""
        conn.settimeout(10)
        try:
            while chunk := conn.recv(65536):
                kept += chunk
                conn.sendall(chunk)
        except OSError:
            pass
        received.append(kept)

    target = ThreadedTarget(keep)
    recorder = Recorder()
    t = Tunnel("tls;sni=example.com;insecure;0rtt;loglevel=debug", SERVER_TLS, target.port,
               front=recorder.start)
    try:
        for i in range(3):  # tickets
            data = f"warm-up {i}".encode()
            assert_same(exchange(t.client_port, data), data, f"warm-up {i}")
        secret = b"replay me " + os.urandom(8).hex().encode()
        assert_same(exchange(t.client_port, secret), secret, "the recorded connection")
        # wait_port()'s probe, the warm-ups and this one, one after another: it ends last.
        wait_for(lambda: len(recorder.sent) == 5, 10.0, "the recorded connection's end")
        accepted = len(re.findall(r"early data accepted", t.server.stderr_text()))
        if accepted < 3:
            raise AssertionError(f"the recorded connection did not use 0-RTT\n{t.logs()}")
        flight = recorder.sent[-1]
        for _ in range(2):
            with socket.create_connection((HOST, t.server_port), timeout=10) as r:
                r.sendall(flight)
                r.shutdown(socket.SHUT_WR)
                while r.recv(65536):  # until kaminaris gives up on it
                    pass
        time.sleep(1.0)  # a replay handed on would have reached the target by now
        log = t.server.stderr_text()
        if len(re.findall(r"early data accepted", log)) != accepted:
            raise AssertionError(f"a replay's early data was accepted\n{log[-3000:]}")
        got = sum(1 for kept in received if secret in kept)
        if got != 1:
            raise AssertionError(f"the target got the recorded first bytes {got} times")
    finally:
        t.client.kill()
        t.server.kill()
        recorder.close()
        target.close()


test.check("tls 0rtt: a replayed first flight's early data reaches the target once",
           replayed_early_data_reaches_the_target_once)
test.check("tls 0rtt: a target that answers and closes at once: answer and end, byte-exact",
           answered_then_closed)
test.check("tls 0rtt: kaminaris restarted: early data rejected and resent, byte-exact",
           restarted_server_rejects_and_nothing_is_lost)
test.check("tls 0rtt (closing target): SIGTERM exits 0", fast.close)
closer.close()
echo.close()
test.done()
