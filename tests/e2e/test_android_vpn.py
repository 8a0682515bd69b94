"""shadowsocks-android VPN mode (`__android_vpn` in SS_PLUGIN_OPTIONS, or `-V` on the command
line): kaminaric, run as a SIP003 plugin in a temporary working directory, hands every socket it
opens to the server to a fake protect server listening on `protect_path` there (AF_UNIX, one
byte with the descriptor attached, one byte back) before its connect.

The fake server checks each descriptor it receives: a TCP socket, not yet connected
(getpeername fails with ENOTCONN). Before replying 0 it binds the socket to a port of its own
(the real app binds it to the underlying network) and records that port. Between kaminaric and
kaminaris a counting relay records the source port of every connection that arrives: the ports
must be exactly those of the protected sockets, so every connection kaminaric made was
protected, and with the socket it connected afterwards. Data goes through
byte-exact: tcp and ws with `__android_vpn`, ws with `-V --fast-open`, `pool=2` (the warm
connections too), and `udp` over ws (a connection per association).

Failures, each failing only that connection with a log line saying why, kaminaric serving the
next one: no protect_path, a protect_path nobody listens on, a reply of 1, the end of the stream
without a reply, no reply at all (the connection fails after the 3 s bound, while another
connection on the same single worker thread goes through meanwhile: the wait does not block
the worker). A refused socket never reaches the relay."""

import errno
import os
import shutil
import socket
import stat
import tempfile
import threading
import time

from fault_kit import wait_for
from harness import (HOST, KAMINARIC, KAMINARIS, EchoServer, Proc, Test, ThreadedTarget, addr,
                     assert_same, exchange, free_port, stops_cleanly, wait_port)
from udp_kit import UdpEcho, free_udp_port

WS = "ws;host=example.com;path=/ws"


class ProtectServer:
    """A fake shadowsocks-android protect socket at `<directory>/protect_path`. `script` is a
    list of behaviours for the next requests, then `mode` for the rest: 'ok' (reply 0),
    'refuse' (reply 1), 'eof' (close without a reply), 'silent' (never reply)."""

    def __init__(self, directory, mode="ok"):
        self.path = os.path.join(directory, "protect_path")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(64)
        self.mode = mode
        self.script = []
        self.lock = threading.Lock()
        self.received = []  # one dict per descriptor received
        self.problems = []  # what was wrong with a request
        self.silent = []  # connections held open without a reply
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                mode = self.script.pop(0) if self.script else self.mode
            threading.Thread(target=self._serve, args=(conn, mode), daemon=True).start()

    def _serve(self, conn, mode):
        try:
            conn.settimeout(5)
            msg, fds, _, _ = socket.recv_fds(conn, 16, 4)
        except OSError as e:
            self.problems.append(f"receiving: {e}")
            conn.close()
            return
        if len(msg) != 1 or len(fds) != 1:
            self.problems.append(f"{len(msg)} bytes and {len(fds)} descriptors in one request")
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        record = self._inspect(fds[0])
        record["mode"] = mode
        if mode == "ok":
            # As the app binds a protected socket to the underlying network, bind it to a port
            # of its own: the connection that arrives from that port is this socket.
            try:
                with socket.socket(fileno=os.dup(fds[0])) as s:
                    s.bind((HOST if s.family == socket.AF_INET else "::1", 0))
                    record["port"] = s.getsockname()[1]
            except OSError as e:
                self.problems.append(f"binding: {e}")
        os.close(fds[0])
        with self.lock:
            self.received.append(record)
        if mode == "silent":
            self.silent.append(conn)
            return
        if mode in ("ok", "refuse"):
            try:
                conn.sendall(b"\x00" if mode == "ok" else b"\x01")
            except OSError as e:
                self.problems.append(f"replying: {e}")
        conn.close()

    def _inspect(self, fd):
        """The received socket must be TCP and not yet connected."""
        record = {"port": None}
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            self.problems.append(f"descriptor {fd} is not a socket")
            return record
        s = socket.socket(fileno=os.dup(fd))
        try:
            if s.family not in (socket.AF_INET, socket.AF_INET6) or s.type != socket.SOCK_STREAM \
                    or s.proto != socket.IPPROTO_TCP:
                self.problems.append(f"not a TCP socket: {s.family!r} {s.type!r} {s.proto}")
            try:
                peer = s.getpeername()
                self.problems.append(f"received already connected to {peer}")
            except OSError as e:
                if e.errno != errno.ENOTCONN:
                    self.problems.append(f"getpeername: {e}")
        finally:
            s.close()
        return record

    def count(self, mode=None):
        with self.lock:
            return sum(1 for r in self.received if mode is None or r["mode"] == mode)

    def ports(self):
        with self.lock:
            return sorted(r["port"] or 0 for r in self.received if r["mode"] == "ok")

    def close(self):
        self.sock.close()
        for c in self.silent:
            c.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class CountingRelay(ThreadedTarget):
    """Between kaminaric and kaminaris: relays both ways and records the source port of every
    connection that arrives."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.peers = []
        super().__init__(self._relay)

    def _relay(self, conn):
        self.peers.append(conn.getpeername()[1])
        with socket.create_connection((HOST, self.upstream_port), timeout=30) as up:
            conn.settimeout(None)
            t = threading.Thread(target=self._pump, args=(up, conn), daemon=True)
            t.start()
            self._pump(conn, up)
            t.join()

    @staticmethod
    def _pump(src, dst):
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class VpnSetup:
    """kaminaris in front of `target_port`, the counting relay in front of it, and kaminaric as
    a SIP003 plugin in a temporary working directory (with a protect server unless
    `protect=None`)."""

    def __init__(self, copts, sopts="", target_port=None, argv=(), protect="ok",
                 client_port=None):
        self.dir = tempfile.mkdtemp(prefix="kaminari-vpn-")
        self.protect = ProtectServer(self.dir, protect) if protect else None
        self.server_port = free_port()
        self.server = Proc([KAMINARIS, addr(HOST, self.server_port), addr(HOST, target_port),
                            sopts])
        wait_port(self.server_port, proc=self.server)
        self.relay = CountingRelay(self.server_port)
        self.client_port = client_port or free_port()
        self.client = Proc([KAMINARIC, *argv], cwd=self.dir, env={
            "SS_LOCAL_HOST": HOST, "SS_LOCAL_PORT": str(self.client_port),
            "SS_REMOTE_HOST": HOST, "SS_REMOTE_PORT": str(self.relay.port),
            "SS_PLUGIN_OPTIONS": copts})
        # Not wait_port: a probe would be a connection of its own. Listening starts before
        # this line is logged, so connections from here on are queued.
        wait_for(lambda: "listen: " in self.client.stderr_text() or self.client.poll() is not None,
                 10, "kaminaric start")
        if self.client.poll() is not None:
            raise AssertionError(f"kaminaric exited: {self.client.stderr_text()}")

    def logs(self):
        return (f"--- kaminaric ---\n{self.client.stderr_text()[-4000:]}"
                f"--- kaminaris ---\n{self.server.stderr_text()[-2000:]}")

    def check_all_protected(self, timeout=10.0):
        """Every connection the relay saw is a protected socket, and there are as many of each,
        once both counts settle; no descriptor was wrong when it arrived."""
        def settled():
            return (self.protect.count("ok") == len(self.relay.peers) and
                    self.protect.ports() == sorted(self.relay.peers))
        try:
            wait_for(settled, timeout, "protected sockets match the relay's connections")
        except AssertionError:
            raise AssertionError(
                f"protected {self.protect.count('ok')} sockets (ports {self.protect.ports()}), the "
                f"relay saw {len(self.relay.peers)} (ports {sorted(self.relay.peers)}); "
                f"bad requests: {self.protect.problems[:3]}\n"
                f"{self.logs()}") from None
        if self.protect.problems:
            raise AssertionError(f"bad protect requests: {self.protect.problems}")
        if self.protect.count("ok") == 0:
            raise AssertionError("nothing was protected")
        print(f"     {self.protect.count('ok')} sockets protected, as many connections arrived",
              flush=True)

    def close(self):
        try:
            stops_cleanly(self.client)
            stops_cleanly(self.server)
        finally:
            self.relay.close()
            if self.protect:
                self.protect.close()
            shutil.rmtree(self.dir, ignore_errors=True)


def tunnel_case(copts, sopts, argv=(), connections=4, expect_in_log=()):
    s = VpnSetup(copts, sopts, echo.port, argv)
    try:
        log = s.client.stderr_text()
        for want in ("android vpn: every socket to the server is protected through",
                     *expect_in_log):
            if want not in log:
                raise AssertionError(f"no '{want}' in the log:\n{log}")
        for i in range(connections):
            data = os.urandom(100_000 + i)
            assert_same(exchange(s.client_port, data), data, f"connection {i}")
        # A few at once.
        results = [None] * 3
        datas = [os.urandom(50_000) for _ in results]

        def one(i):
            results[i] = exchange(s.client_port, datas[i])
        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(results))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for i, got in enumerate(results):
            assert_same(got or b"", datas[i], f"parallel connection {i}")
        s.check_all_protected()
        if s.protect.count() < connections + len(results):
            raise AssertionError(f"only {s.protect.count()} sockets protected")
    finally:
        s.close()


def mux_case():
    """`mux=8`: the shared websockets are protected too, fewer than the app connections."""
    s = VpnSetup(f"{WS};mux=8;__android_vpn", WS, echo.port)
    try:
        datas = [os.urandom(20_000 + i) for i in range(8)]
        results = [None] * len(datas)

        def one(i):
            results[i] = exchange(s.client_port, datas[i])
        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(datas))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for i, got in enumerate(results):
            assert_same(got or b"", datas[i], f"connection {i}")
        s.check_all_protected()
        if not 1 <= s.protect.count() < len(datas):
            raise AssertionError(f"{s.protect.count()} sockets protected for {len(datas)} "
                                 "connections on shared websockets")
    finally:
        s.close()


def udp_case():
    """`udp`: each association's connection to the server is protected too."""
    udp_echo = UdpEcho()
    port = free_udp_port()
    s = VpnSetup(f"{WS};udp;__android_vpn", f"{WS};udp", udp_echo.port, client_port=port)
    try:
        for i in range(2):  # two source addresses: two associations, two connections
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                for j in range(3):
                    data = os.urandom(200 + j)
                    assert_same(echoed(u, (HOST, port), data), data,
                                f"association {i} datagram {j}")
        s.check_all_protected()
        if s.protect.count() != 2:
            raise AssertionError(f"{s.protect.count()} sockets protected for 2 associations")
    finally:
        s.close()
        udp_echo.close()


def echoed(sock, to, data, timeout=15.0):
    """Sends `data` (again every 2 s) until it comes back; replies to earlier datagrams are
    skipped."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        sock.sendto(data, to)
        resend = min(end, time.monotonic() + 2.0)
        while time.monotonic() < resend:
            sock.settimeout(max(0.01, resend - time.monotonic()))
            try:
                got = sock.recv(70000)
            except socket.timeout:
                break
            if got == data:
                return got
    return b""


def failing_exchange(port, timeout=15.0):
    """An app connection whose tunnel cannot be set up: kaminaric closes it without a byte.
    Returns the seconds until then."""
    start = time.monotonic()
    with socket.create_connection((HOST, port), timeout=timeout) as c:
        try:
            c.sendall(b"hello")
            got = c.recv(100)
        except ConnectionResetError:
            got = b""
        if got:
            raise AssertionError(f"received {got!r} from a connection that should fail")
    return time.monotonic() - start


def expect_log(setup, text, count=1, timeout=10.0):
    wait_for(lambda: setup.client.stderr_text().count(text) >= count, timeout,
             f"log line '{text}' (log: {setup.client.stderr_text()[-2000:]})")


def failures():
    # One worker thread: a protect exchange that blocked it would hold up every connection.
    s = VpnSetup("__android_vpn;threads=1", "", echo.port, protect=None)
    try:
        # No protect_path at all.
        failing_exchange(s.client_port)
        expect_log(s, "VPN protect: there is no protect_path socket")
        # A socket file nobody listens on: connect is refused.
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(os.path.join(s.dir, "protect_path"))
        failing_exchange(s.client_port)
        expect_log(s, "VPN protect: protect_path refused the connection")
        stale.close()
        os.unlink(os.path.join(s.dir, "protect_path"))

        s.protect = ProtectServer(s.dir, "refuse")
        failing_exchange(s.client_port)
        expect_log(s, "VPN protect: the VPN app did not protect the socket (nonzero reply)")
        s.protect.mode = "eof"
        failing_exchange(s.client_port)
        expect_log(s, "VPN protect: protect_path closed without a reply")
        if s.relay.peers:
            raise AssertionError(f"a socket that was not protected connected: {s.relay.peers}")

        # No reply: that connection fails after the 3 s bound; one that comes meanwhile, on the
        # same worker thread, goes through at once.
        s.protect.mode = "ok"
        s.protect.script = ["silent"]
        took = []
        slow = threading.Thread(target=lambda: took.append(failing_exchange(s.client_port)))
        slow.start()
        wait_for(lambda: s.protect.count("silent") == 1, 10, "the silent request")
        data = os.urandom(300_000)
        assert_same(exchange(s.client_port, data), data, "a connection beside the silent one")
        if took:
            raise AssertionError("the silent one had already failed: not a fair comparison")
        slow.join(15)
        if not took or not 2.0 <= took[0] <= 10.0:
            raise AssertionError(f"the unanswered protect took {took} s, expected about 3")
        expect_log(s, "VPN protect: no reply from protect_path within 3 s")

        # Back to normal: served, and the only connections that arrived were protected.
        data = os.urandom(200_000)
        assert_same(exchange(s.client_port, data), data, "after the failures")
        if s.client.poll() is not None:
            raise AssertionError("kaminaric exited")
        s.check_all_protected()
        if s.protect.count("ok") != 2:
            raise AssertionError(f"{s.protect.count('ok')} protected, expected 2")
    finally:
        s.close()


def connect_timeout_bounds_protect():
    """connect_timeout=0.5 under the 3 s protect bound: an unanswered protect ends with the
    connect deadline, logged as a connect timeout."""
    s = VpnSetup("__android_vpn;connect_timeout=0.5", "", echo.port, protect="silent")
    try:
        took = failing_exchange(s.client_port)
        expect_log(s, "failed: Connection timed out")
        if took > 2.5:
            raise AssertionError(f"the connection failed after {took:.1f} s, expected 0.5")
        s.protect.mode = "ok"
        data = os.urandom(100_000)
        assert_same(exchange(s.client_port, data), data, "after the timeout")
        s.check_all_protected()
    finally:
        s.close()


def server_ignores_vpn_flag():
    """kaminaris as a SIP003 plugin with -V and __android_vpn: a warning each, then it serves."""
    port = free_port()
    server = Proc([KAMINARIS, "-V", "--fast-open"], env={
        "SS_REMOTE_HOST": HOST, "SS_REMOTE_PORT": str(port),
        "SS_LOCAL_HOST": HOST, "SS_LOCAL_PORT": str(echo.port),
        "SS_PLUGIN_OPTIONS": "__android_vpn"})
    try:
        wait_port(port, proc=server)
        log = server.stderr_text()
        for want in ("ignoring '-V': VPN mode is a client option",
                     "ignoring '__android_vpn': it is a client option"):
            if want not in log:
                raise AssertionError(f"no '{want}' in the log:\n{log}")
    finally:
        stops_cleanly(server)


test = Test(deadline=240)
echo = EchoServer()
test.check("tcp, __android_vpn", tunnel_case, "__android_vpn", "")
test.check("ws, __android_vpn", tunnel_case, f"{WS};__android_vpn", WS)
test.check("ws, -V --fast-open", tunnel_case, WS, WS, ("-V", "--fast-open"), 4,
           (", tfo, android vpn",))
test.check("tcp, -V, pool=2", tunnel_case, "pool=2", "", ("-V",))
test.check("ws, __android_vpn, pool=2", tunnel_case, f"{WS};pool=2;__android_vpn", WS)
test.check("ws, __android_vpn, mux=8", mux_case)
test.check("udp over ws, __android_vpn", udp_case)
test.check("protect failures fail one connection each", failures)
test.check("connect_timeout bounds the protect exchange", connect_timeout_bounds_protect)
test.check("kaminaris ignores -V and __android_vpn", server_ignores_vpn_flag)
test.done()
