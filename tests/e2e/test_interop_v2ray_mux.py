"""kaminaris serving v2ray-plugin clients with their default mux (Mux.Cool over the websocket):
the real client (ss-v2ray-plugin) with default options and with mux=8, byte-exact through few
websockets (the server log shows the sessions), closes in both orders, a target that speaks
first, wss; ss-local + v2ray-plugin -> ss-server + kaminaris through SOCKS; and a hand-made
Mux.Cool client for what no real client does: the session limit, unknown sessions, a target
that is down for one session, half-close, malformed frames (which end that connection only)."""

import base64
import concurrent.futures
import hashlib
import os
import re
import socket
import struct
import threading
import time

from harness import (HOST, KAMINARIS, EchoServer, Proc, Test, ThreadedTarget, assert_same,
                     banner_then_echo, exchange, free_port, read_banner_then_echo,
                     ss_downloads, wait_port)
from fault_kit import wait_for
from mux_kit import reply_before_target_close
from pki import Pki

test = Test(deadline=500)
WS = "ws;host=example.com;path=/ws"


def kaminaris(target_port, opts=WS):
    port = free_port()
    proc = Proc([KAMINARIS, f"{HOST}:{port}", f"{HOST}:{target_port}", f"{opts};loglevel=debug"])
    wait_port(port, proc=proc)
    return proc, port


def v2ray_client(remote_port, opts="host=example.com;path=/ws"):
    port = free_port()
    proc = Proc(["ss-v2ray-plugin"], env={
        "SS_LOCAL_HOST": HOST, "SS_LOCAL_PORT": str(port),
        "SS_REMOTE_HOST": HOST, "SS_REMOTE_PORT": str(remote_port),
        "SS_PLUGIN_OPTIONS": opts})
    wait_port(port, proc=proc)
    return proc, port


def sessions_by_connection(log):
    """{connection id: sessions opened on it} from kaminaris's debug log."""
    out = {}
    for conn, _ in re.findall(r"#(\d+) Mux\.Cool session (\d+) opened", log):
        out[conn] = out.get(conn, 0) + 1
    return out


def echo_all(port, data, timeout=60):
    """An app that never half-closes (v2ray's client drops replies after its End): sends
    `data`, reads the whole echo, closes."""
    return exchange(port, data, timeout=timeout, half_close=False)


# --- the real v2ray-plugin client --------------------------------------------------------------

def real_client_suite(name, client_opts, server_opts=WS, env_note=""):
    echo = EchoServer()
    server, server_port = kaminaris(echo.port, server_opts)
    client, port = v2ray_client(server_port, client_opts)
    try:
        def sizes():
            for size in (1, 64 << 10, 8 << 20):
                data = os.urandom(size)
                assert_same(echo_all(port, data), data, f"{size} bytes")

        def concurrent_conns():
            payloads = [os.urandom(1000 + 7919 * i) for i in range(40)]
            with concurrent.futures.ThreadPoolExecutor(max_workers=40) as pool:
                results = list(pool.map(lambda d: echo_all(port, d), payloads))
            for i, (got, want) in enumerate(zip(results, payloads)):
                assert_same(got, want, f"connection {i}")
            by_conn = sessions_by_connection(server.stderr_text())
            total = sum(by_conn.values())
            if total < 40 + 3 or len(by_conn) >= total:
                raise AssertionError(f"sessions per websocket: {by_conn}")
            print(f"     {total} sessions over {len(by_conn)} websockets", flush=True)

        def sequential_reuse():
            before = sessions_by_connection(server.stderr_text())
            for _ in range(5):
                data = os.urandom(5000)
                assert_same(echo_all(port, data), data, "sequential")
            after = sessions_by_connection(server.stderr_text())
            grown = {c: after[c] - before.get(c, 0) for c in after if after[c] > before.get(c, 0)}
            if sum(grown.values()) != 5 or max(grown.values()) < 2:
                raise AssertionError(f"5 sessions spread as {grown}: no websocket reused")

        def app_closes_first():
            got = {}
            done = threading.Event()

            def sink(conn):
                h = hashlib.sha256()
                n = 0
                while chunk := conn.recv(1 << 16):
                    h.update(chunk)
                    n += len(chunk)
                got["n"], got["sha"] = n, h.hexdigest()
                done.set()
            target = ThreadedTarget(sink)
            srv, sport = kaminaris(target.port, server_opts)
            cli, cport = v2ray_client(sport, client_opts)
            try:
                data = os.urandom(3 << 20)
                with socket.create_connection((HOST, cport), timeout=30) as s:
                    s.sendall(data)
                # The target sees every byte and then end of stream (the client's End).
                if not done.wait(15):
                    raise AssertionError(f"no end of stream at the target: {got}")
                if got != {"n": len(data), "sha": hashlib.sha256(data).hexdigest()}:
                    raise AssertionError(f"target got {got['n']} of {len(data)} bytes")
            finally:
                cli.kill()
                srv.kill()
                target.close()

        def target_closes_first():
            def start_pair(target_port):
                srv, sport = kaminaris(target_port, server_opts)
                cli, cport = v2ray_client(sport, client_opts)
                return srv, cli, cport
            reply_before_target_close(start_pair, 2 << 20)

        def target_speaks_first():
            banner = b"220 hello from a server that speaks first\r\n"
            target = ThreadedTarget(banner_then_echo(banner))
            srv, sport = kaminaris(target.port, server_opts)
            cli, cport = v2ray_client(sport, client_opts)
            try:
                for i in range(3):
                    read_banner_then_echo(cport, banner, os.urandom(1000 + i))
                if "Mux.Cool session" not in srv.stderr_text():
                    raise AssertionError("not served as Mux.Cool")
            finally:
                cli.kill()
                srv.kill()
                target.close()

        def idle_after_app_closed_at_once():
            # An app that closes at once leaves v2ray's websocket with an End frame and no New;
            # the next app comes after the detection grace, to a target that speaks first.
            banner = b"220 hello after a quiet websocket\r\n"
            target = ThreadedTarget(banner_then_echo(banner))
            srv, sport = kaminaris(target.port, server_opts)
            cli, cport = v2ray_client(sport, client_opts)
            try:
                socket.create_connection((HOST, cport), timeout=10).close()
                # kaminaris logs it when its detection grace (1 s from the target's banner)
                # ends: the next app comes after that.
                wait_for(lambda: "End frames only so far" in srv.stderr_text(), 10,
                         "kaminaris's verdict on the quiet websocket")
                for i in range(2):
                    read_banner_then_echo(cport, banner, os.urandom(500 + i))
                if "invalid metalen" in cli.stderr_text():
                    raise AssertionError("v2ray-plugin got plain bytes on a Mux.Cool websocket")
                if "End frames only so far" not in srv.stderr_text():
                    raise AssertionError("the quiet websocket was not the one used")
            finally:
                cli.kill()
                srv.kill()
                target.close()

        test.check(f"{name}: byte-exact 1 B, 64 KiB, 8 MiB", sizes)
        test.check(f"{name}: 40 concurrent connections, several sessions per websocket",
                   concurrent_conns)
        test.check(f"{name}: sequential connections reuse a websocket", sequential_reuse)
        test.check(f"{name}: app closes first: the target reads everything, then EOF",
                   app_closes_first)
        test.check(f"{name}: target closes first: the app reads everything, then EOF",
                   target_closes_first)
        test.check(f"{name}: a target that speaks first", target_speaks_first)
        test.check(f"{name}: an app that closed at once, 1.5 s later a target that speaks first",
                   idle_after_app_closed_at_once)

        def exits():
            if client.poll() is not None:
                raise AssertionError(f"v2ray-plugin exited: {client.stderr_text()[-2000:]}")
            client.kill()
            code = server.stop()
            if code != 0:
                raise AssertionError(f"kaminaris exit code {code}")
        test.check(f"{name}: SIGTERM exits 0", exits)
    finally:
        client.kill()
        server.kill()
        echo.close()
    return server


real_client_suite("v2ray-plugin default (mux=1)", "host=example.com;path=/ws")
real_client_suite("v2ray-plugin mux=8", "mux=8;host=example.com;path=/ws")

pki = Pki()
WSS = f"{WS};tls;cert={pki.untrusted.cert};key={pki.untrusted.key}"
real_client_suite("v2ray-plugin tls (wss)",
                  f"tls;host=example.com;path=/ws;cert={pki.untrusted.cert}", WSS)


def plain_with_mux_off():
    # mux=off: a v2ray-plugin client with mux must not work (its frames reach the target as
    # they are), proving the option turns detection off; with mux=0 it works as before.
    echo = EchoServer()
    srv, sport = kaminaris(echo.port, f"{WS};mux=off")
    cli, cport = v2ray_client(sport, "mux=0;host=example.com;path=/ws")
    try:
        data = os.urandom(100000)
        assert_same(exchange(cport, data), data, "mux=0 client, mux=off server")
        if "Mux.Cool" in srv.stderr_text():
            raise AssertionError("Mux.Cool served with mux=off")
    finally:
        cli.kill()
        srv.kill()
        echo.close()


test.check("mux=off: plain streams only; v2ray-plugin mux=0 still byte-exact", plain_with_mux_off)


# --- ss-local + v2ray-plugin -> ss-server + kaminaris --------------------------------------------

def ss_mode(name, client_opts, server_opts):
    def served_mux(client, server):
        if "Mux.Cool session" not in server.stderr_text():
            raise AssertionError("kaminaris did not serve Mux.Cool")
    # v2ray logs "started" once it listens.
    ss_downloads(test, name, "ss-v2ray-plugin", client_opts, KAMINARIS,
                 server_opts + ";loglevel=debug",
                 lambda log: re.search(r"V2Ray [\d.]+ started", log), served_mux)


ss_mode("v2ray-plugin default", "host=example.com;path=/ws", WS)
ss_mode("v2ray-plugin mux=4", "mux=4;host=example.com;path=/ws", WS)
ss_mode("v2ray-plugin tls", f"tls;host=example.com;path=/ws;cert={pki.untrusted.cert}", WSS)


# --- a hand-made Mux.Cool client ----------------------------------------------------------------

class RawWs:
    """A minimal websocket client speaking Mux.Cool frames, for what real clients never send."""

    def __init__(self, port):
        self.s = socket.create_connection((HOST, port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall((f"GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                        f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            b = self.s.recv(1)
            if not b:
                raise AssertionError("closed during the handshake")
            head += b
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise AssertionError(head)
        self.buf = b""   # websocket bytes not yet decoded
        self.mux = b""   # websocket payload not yet parsed as Mux.Cool
        self.closed = False

    def send(self, data):
        mask = os.urandom(4)
        n = len(data)
        head = bytes([0x82])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.s.sendall(head + mask + masked)

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(1 << 16)
            if not chunk:
                raise EOFError
            self.buf += chunk

    def _frame(self):
        self._need(2)
        op, ln = self.buf[0] & 0x0f, self.buf[1] & 0x7f
        off = 2
        if ln == 126:
            self._need(4)
            ln, off = struct.unpack(">H", self.buf[2:4])[0], 4
        elif ln == 127:
            self._need(10)
            ln, off = struct.unpack(">Q", self.buf[2:10])[0], 10
        self._need(off + ln)
        payload, self.buf = self.buf[off:off + ln], self.buf[off + ln:]
        return op, payload

    def _mux_need(self, n):
        while len(self.mux) < n:
            op, payload = self._frame()
            if op == 0x8:
                self.closed = True
                raise EOFError
            if op in (0x0, 0x2):
                self.mux += payload

    def frame(self):
        """The next Mux.Cool frame from the server: (id, status, option, data)."""
        self._mux_need(2)
        meta_len = struct.unpack(">H", self.mux[:2])[0]
        self._mux_need(2 + meta_len)
        sid, status, option = struct.unpack(">HBB", self.mux[2:6])
        pos = 2 + meta_len
        data = b""
        if option & 1:
            self._mux_need(pos + 2)
            n = struct.unpack(">H", self.mux[pos:pos + 2])[0]
            self._mux_need(pos + 2 + n)
            data = self.mux[pos + 2:pos + 2 + n]
            pos += 2 + n
        self.mux = self.mux[pos:]
        return sid, status, option, data

    def closes_within(self, timeout):
        self.s.settimeout(timeout)
        try:
            while True:
                self.frame()
        except EOFError:
            return True
        except (socket.timeout, ConnectionResetError):
            return False

    def close(self):
        self.s.close()


def new(sid, data=b""):
    meta = struct.pack(">HBBBHB4s", sid, 1, 1 if data else 0, 1, 0, 1, b"\x7f\x00\x00\x01")
    out = struct.pack(">H", len(meta)) + meta
    return out + (struct.pack(">H", len(data)) + data if data else b"")


def keep(sid, data):
    return struct.pack(">HHBBH", 4, sid, 2, 1, len(data)) + data


def end(sid, error=False):
    return struct.pack(">HHBB", 4, sid, 3, 2 if error else 0)


def keepalive():
    return struct.pack(">HHBBH", 4, 0, 4, 1, 3) + b"xyz"


def collect(ws, want):
    """Reads frames until `want(frames)` is true; returns them."""
    frames = []
    while not want(frames):
        frames.append(ws.frame())
    return frames


def echoed(frames, sid):
    return b"".join(d for i, st, _, d in frames if i == sid and st == 2)


echo = EchoServer()
srv, srv_port = kaminaris(echo.port)


def raw_half_close():
    # End from the client half-closes toward the target; its reply keeps coming, then End.
    ws = RawWs(srv_port)
    data = os.urandom(200000)
    pieces = [data[i:i + 30000] for i in range(0, len(data), 30000)]
    wire = new(1, pieces[0]) + b"".join(keep(1, p) for p in pieces[1:]) + end(1)
    # Websocket messages cut through Mux.Cool frames: the server parses a byte stream.
    for i in range(0, len(wire), 7777):
        ws.send(wire[i:i + 7777])
    frames = collect(ws, lambda f: any(x[0] == 1 and x[1] == 3 for x in f))
    assert_same(echoed(frames, 1), data, "echo after the client's End")
    if [x for x in frames if x[1] == 3][0][2] & 2:
        raise AssertionError("End with the error bit")
    ws.close()


def raw_unknown_sessions():
    ws = RawWs(srv_port)
    ws.send(new(5, b"a") + keep(77, b"to nowhere") + end(78) + keepalive() + keep(5, b"b"))
    frames = collect(ws, lambda f: any(x[0] == 77 for x in f) and len(echoed(f, 5)) >= 2)
    ends = [x for x in frames if x[0] == 77]
    if ends != [(77, 3, 0, b"")]:
        raise AssertionError(f"for the unknown session: {ends}")
    if any(x[0] == 78 for x in frames):
        raise AssertionError("End for an unknown session was answered")
    assert_same(echoed(frames, 5), b"ab", "session 5 around the noise")
    ws.close()


def raw_session_limit():
    ws = RawWs(srv_port)
    ws.send(b"".join(new(i) for i in range(1, 201)))
    frames = collect(ws, lambda f: len([x for x in f if x[1] == 3]) >= 72)
    refused = sorted(x[0] for x in frames if x[1] == 3)
    if refused != list(range(129, 201)) or any(x[2] != 2 for x in frames if x[1] == 3):
        raise AssertionError(f"refused: {refused[:5]}... ({len(refused)})")
    # The open ones work.
    ws.send(keep(1, b"first") + keep(128, b"last"))
    frames = collect(ws, lambda f: len(echoed(f, 1)) >= 5 and len(echoed(f, 128)) >= 4)
    assert_same(echoed(frames, 1) + echoed(frames, 128), b"firstlast", "sessions 1 and 128")
    wait_for(lambda: "refusing session 129" in srv.stderr_text(), 10.0,
             "a log line for the refusal")
    ws.close()


def raw_unused_sessions():
    # Sessions opened and never used, then the websocket closed: every target connection ends.
    before = echo.accepted
    ws = RawWs(srv_port)
    ws.send(b"".join(new(i) for i in range(1, 11)))
    wait_for(lambda: echo.accepted >= before + 10, 10.0, "10 target connections")
    ws.close()
    wait_for(lambda: re.search(r"Mux\.Cool closed: 10 sessions", srv.stderr_text()), 10.0,
             "the connection's end with its 10 sessions")


def raw_target_down():
    # The target stops accepting: a new session fails with End + error, the open one goes on.
    flaky = socket.socket()
    flaky.bind((HOST, 0))
    flaky.listen(16)
    server, port = kaminaris(flaky.getsockname()[1])
    try:
        ws = RawWs(port)
        ws.send(new(1, b"hi"))
        conn, _ = flaky.accept()
        if conn.recv(2) != b"hi":
            raise AssertionError("session 1 data")
        flaky.close()  # nothing listens any more
        ws.send(new(2, b"lost"))
        frames = collect(ws, lambda f: any(x[0] == 2 for x in f))
        if (2, 3, 2, b"") not in frames:
            raise AssertionError(f"session 2: {frames}")
        conn.sendall(b"still here")
        frames = collect(ws, lambda f: len(echoed(f, 1)) >= 10)
        assert_same(echoed(frames, 1), b"still here", "session 1 after session 2 failed")
        ws.send(keep(1, b"up too"))
        got = b""
        while len(got) < 6:
            got += conn.recv(100)
        assert_same(got, b"up too", "session 1 upward")
        conn.close()
        ws.close()
        if "connect to" not in server.stderr_text():
            raise AssertionError("no log line for the failed connect")
    finally:
        server.kill()


def raw_malformed_ends_only_that_connection():
    # A real v2ray-plugin client runs a long transfer while a hand-made one sends garbage.
    client, port = v2ray_client(srv_port, "mux=4;host=example.com;path=/ws")
    try:
        data = os.urandom(16 << 20)
        result = {}
        t = threading.Thread(target=lambda: result.update(got=echo_all(port, data)))
        t.start()
        for wire in (new(1, b"x") + b"\xff\xff",                        # metaLen 65535
                     new(1, b"x") + struct.pack(">HHBB", 4, 1, 9, 0),     # status 9
                     new(1, b"x") + struct.pack(">HHBBBHB", 8, 2, 1, 0, 1, 0, 7)):  # address 7
            ws = RawWs(srv_port)
            ws.send(wire)
            if not ws.closes_within(5):
                raise AssertionError(f"connection not closed after {wire!r}")
            ws.close()
        t.join(60)
        assert_same(result.get("got", b""), data, "the other client's transfer")
        log = srv.stderr_text()
        for what in ("invalid metadata length", "unknown session status", "invalid address"):
            if what not in log:
                raise AssertionError(f"no log line saying {what!r}")
    finally:
        client.kill()


def raw_plain_ws_still_plain():
    # A plain stream whose first bytes are not a New frame is relayed as today.
    ws = RawWs(srv_port)
    data = b"\x00\x0c\x00\x01\x02" + os.urandom(5000)  # plausible metaLen, status Keep
    ws.send(data)
    got = b""
    ws.s.settimeout(10)
    while len(got) < len(data):
        op, payload = ws._frame()
        got += payload
    assert_same(got, data, "plain stream")
    ws.close()


def raw_ends_only_then_new_late():
    # A client that sent only End frames (v2ray's, after an app that closed at once), a target
    # that speaks first: after the grace it is still Mux.Cool, and the session that comes
    # later gets a target of its own (the first one spoke to nobody).
    banner = b"220 target ready\r\n"
    target = ThreadedTarget(banner_then_echo(banner))
    server, port = kaminaris(target.port)
    try:
        ws = RawWs(port)
        ws.send(end(1, error=True))
        wait_for(lambda: "End frames only so far" in server.stderr_text(), 5.0,
                 "the verdict on End frames only")
        if target.accepted != 1:
            raise AssertionError(f"{target.accepted} target connections before any session")
        ws.send(new(2))
        ws.s.settimeout(10)
        frames = collect(ws, lambda f: len(echoed(f, 2)) >= len(banner))
        assert_same(echoed(frames, 2), banner, "banner to session 2")
        ws.send(keep(2, b"echo me"))
        frames = collect(ws, lambda f: len(echoed(f, 2)) >= 7)
        assert_same(echoed(frames, 2), b"echo me", "echo")
        if target.accepted != 2:
            raise AssertionError(f"{target.accepted} target connections for one session")
        ws.close()
    finally:
        server.kill()
        target.close()


def raw_one_small_byte_then_wait():
    # A plain client whose first message is one byte that could start a frame head (at most
    # 2), then waits for the answer: plain after the grace, not held forever.
    ws = RawWs(srv_port)
    ws.s.settimeout(10)
    ws.send(b"\x01")
    op, payload = ws._frame()
    assert_same(payload, b"\x01", "the echo of one byte")
    ws.close()


def raw_silent_client_target_first():
    # A plain client that is not kaminaric and sends nothing, with a target that speaks first:
    # plain after the 1 s grace (a Mux.Cool client would have sent its New by then).
    banner = b"220 target ready\r\n"
    target = ThreadedTarget(banner_then_echo(banner))
    server, port = kaminaris(target.port)
    try:
        ws = RawWs(port)
        start = time.monotonic()
        ws.s.settimeout(10)
        op, payload = ws._frame()
        elapsed = time.monotonic() - start
        assert_same(payload, banner, "banner")
        if not 0.9 <= elapsed <= 3:
            raise AssertionError(f"banner after {elapsed:.2f}s, not after the 1 s grace")
        ws.send(b"echo me")
        op, payload = ws._frame()
        assert_same(payload, b"echo me", "echo")
        ws.close()
    finally:
        server.kill()
        target.close()


test.check("raw: End half-closes; the target's reply follows, then End", raw_half_close)
test.check("raw: Keep for an unknown session gets End; End and KeepAlive ignored",
           raw_unknown_sessions)
test.check("raw: 200 New frames: 128 served, 72 refused with End+error, logged",
           raw_session_limit)
test.check("raw: sessions opened and never used end with the websocket", raw_unused_sessions)
test.check("raw: a target down for one session, the other goes on", raw_target_down)
test.check("raw: malformed frames close that connection only", raw_malformed_ends_only_that_connection)
test.check("raw: a plain stream with a Mux.Cool-like start stays plain", raw_plain_ws_still_plain)
test.check("raw: End frames only, a target that speaks first: Mux.Cool after the grace",
           raw_ends_only_then_new_late)
test.check("raw: one byte of at most 2, then waiting: plain after the grace",
           raw_one_small_byte_then_wait)
test.check("raw: a silent plain client, a target that speaks first: plain after 1 s",
           raw_silent_client_target_first)
test.check("kaminaris: SIGTERM exits 0", lambda: srv.stop() == 0 or (_ for _ in ()).throw(
    AssertionError("exit code")))
echo.close()
test.done()
