"""`ping=<s>` on ws and wss: a quiet connection is pinged, which keeps a middlebox with an
idle limit (a CDN) from cutting it, and a peer that stops answering (vanished without a FIN)
is noticed and its tunnel closed within about two periods, on either side."""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import EchoServer, Test, ThreadedTarget, Tunnel, assert_same  # noqa: E402

WS = "ws;host=k.example;path=/k"
WSS_C = "ws;host=k.example;path=/k;tls;insecure"
WSS_S = "ws;host=k.example;path=/k;tls;servername=k.example"


class Middlebox:
    """A TCP proxy on loopback. `idle_limit`: closes a connection that moved no byte either
    way for that long (as a CDN does). freeze(): from then on forwards nothing, and closes
    nothing (a peer that vanished)."""

    def __init__(self, target_port, idle_limit=None):
        self.target_port = target_port
        self.idle_limit = idle_limit
        self.frozen = False
        self.cut = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self):
        self.frozen = True

    def _accept(self):
        while True:
            try:
                a, _ = self.sock.accept()
            except OSError:
                return
            b = socket.create_connection(("127.0.0.1", self.target_port))
            last = [time.monotonic()]
            for src, dst in ((a, b), (b, a)):
                threading.Thread(target=self._pump, args=(src, dst, last), daemon=True).start()
            if self.idle_limit:
                threading.Thread(target=self._watch, args=(a, b, last), daemon=True).start()

    def _pump(self, src, dst, last):
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    dst.shutdown(socket.SHUT_WR)
                    return
                if self.frozen:
                    continue  # swallowed
                last[0] = time.monotonic()
                dst.sendall(d)
        except OSError:
            return

    def _watch(self, a, b, last):
        while True:
            time.sleep(0.05)
            if time.monotonic() - last[0] > self.idle_limit:
                self.cut += 1
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    s.close()
                return

    def close(self):
        self.sock.close()


def roundtrip(s, data):
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        d = s.recv(65536)
        if not d:
            raise AssertionError(f"end of stream after {len(got)} of {len(data)} bytes")
        got += d
    assert_same(got, data, "echo")


def tunnel_via(middlebox_of, copts, sopts, target_port):
    """kaminaric -> middlebox -> kaminaris -> target."""
    boxes = []

    def front(server_port):
        boxes.append(middlebox_of(server_port))
        return boxes[0].port

    return Tunnel(copts, sopts, target_port, front=front), boxes[0]


def check_keeps_quiet_connection(copts, sopts):
    echo = EchoServer()
    t, box = tunnel_via(lambda p: Middlebox(p, idle_limit=1.5), copts + ";ping=0.4", sopts,
                        echo.port)
    try:
        with socket.create_connection(("127.0.0.1", t.client_port), timeout=10) as s:
            roundtrip(s, os.urandom(1000))
            time.sleep(4)  # quiet for more than twice the middlebox's limit
            roundtrip(s, os.urandom(1000))  # the same tunnel connection: it was not cut
    finally:
        t.close()
        box.close()
        echo.close()


def check_cut_without_ping(copts, sopts):
    """The control: without ping the same middlebox cuts the quiet connection."""
    echo = EchoServer()
    t, box = tunnel_via(lambda p: Middlebox(p, idle_limit=1.0), copts, sopts, echo.port)
    try:
        with socket.create_connection(("127.0.0.1", t.client_port), timeout=10) as s:
            roundtrip(s, os.urandom(1000))
            time.sleep(2.5)
            try:
                roundtrip(s, os.urandom(1000))
            except (AssertionError, OSError):
                return
            raise AssertionError(f"the quiet connection survived (middlebox cuts: {box.cut})")
    finally:
        t.close()
        box.close()
        echo.close()


def check_client_notices_vanished_server(copts, sopts):
    echo = EchoServer()
    t, box = tunnel_via(lambda p: Middlebox(p), copts + ";ping=0.5", sopts, echo.port)
    try:
        with socket.create_connection(("127.0.0.1", t.client_port), timeout=10) as s:
            roundtrip(s, os.urandom(1000))
            box.freeze()
            start = time.monotonic()
            s.settimeout(8)
            try:
                while s.recv(65536):
                    pass
            except ConnectionResetError:
                pass
            took = time.monotonic() - start
            if took > 4:
                raise AssertionError(f"the app's connection ended only after {took:.1f} s")
        if "within 0.5 s of a ping" not in t.client.stderr_text():
            raise AssertionError("kaminaric did not log the dead peer\n" + t.logs())
    finally:
        t.close()
        box.close()
        echo.close()


def check_server_notices_vanished_client(copts, sopts):
    """kaminaris with ping: its target connection ends when the client goes silent."""
    ended = threading.Event()

    def echo_then_note_end(c):
        moved = False
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                moved = True
                c.sendall(d)
        finally:
            if moved:  # not the harness's probe connection
                ended.set()

    srv = ThreadedTarget(echo_then_note_end)
    t, box = tunnel_via(lambda p: Middlebox(p), copts, sopts + ";ping=0.5", srv.port)
    try:
        with socket.create_connection(("127.0.0.1", t.client_port), timeout=10) as s:
            roundtrip(s, os.urandom(1000))
            box.freeze()
            if not ended.wait(4):
                raise AssertionError("the target's connection was still open 4 s after the "
                                     "client vanished\n" + t.logs())
    finally:
        t.close()
        box.close()
        srv.close()


def main():
    test = Test(deadline=200)
    for name, copts, sopts in (("ws", WS, WS), ("wss", WSS_C, WSS_S)):
        test.check(f"{name}: ping keeps a quiet connection through a middlebox's idle limit",
                   check_keeps_quiet_connection, copts, sopts)
        test.check(f"{name}: kaminaric closes the tunnel when the server stops answering",
                   check_client_notices_vanished_server, copts, sopts)
        test.check(f"{name}: kaminaris closes the tunnel when the client stops answering",
                   check_server_notices_vanished_client, copts, sopts)
    test.check("ws without ping: the middlebox cuts the quiet connection (control)",
               check_cut_without_ping, WS, WS)
    test.done()


if __name__ == "__main__":
    main()
