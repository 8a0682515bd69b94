"""Helpers for the fault, limit and scale tests: process statistics from /proc, raw websocket
handshakes, resetting sockets, and servers that scale to thousands of connections in one
thread or misbehave on purpose."""

import base64
import os
import resource
import selectors
import socket
import struct
import threading
import time

from harness import HOST

WS = "ws;host=example.com;path=/ws"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_over(pid, seconds):
    """CPU seconds the process uses during the next `seconds` of wall time."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return cpu_seconds(pid) - before


def status_field(pid, name):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} in /proc/{pid}/status")


def rss_kib(pid):
    return int(status_field(pid, "VmRSS").split()[0])


# kaminari keeps up to 16 empty pipes per worker thread for splice (tcp mode) instead of making
# two per connection: descriptors that stay after the connections that used them.
SPARE_PIPES_PER_THREAD = 16


def fd_kinds(pid):
    """(descriptors other than pipes, pipe descriptors) the process holds."""
    others = pipes = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("pipe:["):
            pipes += 1
        else:
            others += 1
    return others, pipes


def fd_count(pid):
    """Descriptors other than pipes (see SPARE_PIPES_PER_THREAD; settle_fds() bounds those)."""
    return fd_kinds(pid)[0]


def pipe_limit(pid):
    """The most pipe descriptors an idle kaminari may hold: its spare pipes (2 descriptors
    each, per thread; the thread count bounds the workers) and Asio's signal pipe."""
    return 2 + 2 * SPARE_PIPES_PER_THREAD * int(status_field(pid, "Threads"))


def established(pid):
    """The process's established TCP sockets: the /proc/net/tcp{,6} rows, split into fields
    (1 local address, 2 remote address, 5 "timer kind:expiry in ticks", 9 inode)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.readlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            # By inode: the kernel lists a changing table in chunks, and a row can come twice
            # while another program churns through connections (seen with e2e.scale beside).
            if fields[3] == "01" and fields[9] in inodes:  # 01 = ESTABLISHED
                found[fields[9]] = fields
    return list(found.values())


def tcp_sockets(pid, local_port=None, remote_port=None):
    """How many of the process's descriptors are established TCP sockets with that local or
    remote port. Exact where a descriptor count is not: sockets of earlier connections that
    are still being torn down do not blur it."""
    count = 0
    for fields in established(pid):
        local, remote = fields[1], fields[2]
        if local_port is not None and int(local.rsplit(":", 1)[1], 16) != local_port:
            continue
        if remote_port is not None and int(remote.rsplit(":", 1)[1], 16) != remote_port:
            continue
        count += 1
    return count


def keepalive_timers(pid):
    """For each established socket of the process: (its local port, seconds until its
    keepalive timer fires, or None when no keepalive timer runs (timer kind 2 in
    /proc/net/tcp; ticks of 1/100 s))."""
    ticks = os.sysconf("SC_CLK_TCK")
    timers = []
    for fields in established(pid):
        kind, when = fields[5].split(":")
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        timers.append((local_port, int(when, 16) / ticks if kind == "02" else None))
    return timers


def ignores_signal(pid, sig):
    return bool(int(status_field(pid, "SigIgn"), 16) & (1 << (sig - 1)))


def nofile_limit(n):
    """A preexec_fn for Popen: the child starts with at most `n` descriptors (soft and hard, so
    the program cannot raise it)."""
    def apply():
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return apply


def raise_own_nofile(want):
    """Raises this process's descriptor limit to `want` (or the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def wait_for(cond, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what}: not true after {timeout}s")


def settle_fds(pid, baseline, timeout=5.0):
    """Waits until the process holds no more descriptors other than pipes than `baseline`
    (fd_count() at the start) and no more pipes than its spare pipes can explain."""
    end = time.monotonic() + timeout
    limit = pipe_limit(pid)
    while time.monotonic() < end:
        others, pipes = fd_kinds(pid)
        if others <= baseline and pipes <= limit:
            return others
        time.sleep(0.05)
    others, pipes = fd_kinds(pid)
    raise AssertionError(f"{others} descriptors and {pipes} pipe ends open; {baseline} and at "
                         f"most {limit} allowed")


def reset_close(sock):
    """Closes with SO_LINGER 0: the peer gets a RST, not a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_all(sock, timeout):
    """Reads until EOF, a reset or `timeout`; returns (bytes, how) with how in 'eof', 'reset',
    'timeout'."""
    sock.settimeout(timeout)
    out = bytearray()
    try:
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                return bytes(out), "eof"
            out.extend(chunk)
    except socket.timeout:
        return bytes(out), "timeout"
    except ConnectionResetError:
        return bytes(out), "reset"


def ws_request(host="example.com", path="/ws"):
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode()


def ws_connect(port, host=HOST, timeout=5.0):
    """Opens a websocket to kaminaris by hand; returns the socket after the 101 response."""
    s = socket.create_connection((host, port), timeout=timeout)
    s.sendall(ws_request())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise AssertionError(f"EOF during the handshake: {head!r}")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise AssertionError(f"handshake refused: {head[:80]!r}")
    if head.index(b"\r\n\r\n") + 4 != len(head):
        raise AssertionError("bytes after the 101 head")
    return s


def ws_frame(opcode, payload, fin=True):
    """A masked client frame (all-zero key, so the payload goes as is)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + b"\0\0\0\0" + payload


class SelectEcho:
    """An echo server for thousands of connections in one thread (selectors, non-blocking):
    echoes until EOF, then half-closes. Counts connections accepted and open. `port` may be
    fixed, to take over from a server that went away."""

    def __init__(self, host=HOST, port=0):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(4096)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.open = 0
        self._stop = False
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.sock, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop:
            for key, mask in self._sel.select(0.1):
                if key.data is None:
                    self._accept()
                else:
                    self._service(key.fileobj, key.data, mask)

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, OSError):
                return
            conn.setblocking(False)
            self.accepted += 1
            self.open += 1
            self._sel.register(conn, selectors.EVENT_READ, {"out": bytearray(), "eof": False})

    def _drop(self, conn):
        self._sel.unregister(conn)
        conn.close()
        self.open -= 1

    def _service(self, conn, st, mask):
        try:
            if mask & selectors.EVENT_READ and not st["eof"]:
                try:
                    data = conn.recv(1 << 16)
                except BlockingIOError:
                    data = None
                if data:
                    st["out"] += data
                elif data is not None:
                    st["eof"] = True
            if st["out"]:
                try:
                    del st["out"][:conn.send(st["out"])]
                except BlockingIOError:
                    pass
            if st["eof"] and not st["out"]:
                conn.shutdown(socket.SHUT_WR)
                self._drop(conn)
                return
            want = selectors.EVENT_WRITE if st["out"] else selectors.EVENT_READ
            self._sel.modify(conn, want, st)
        except OSError:
            self._drop(conn)

    def close(self):
        """Stops listening (new connections are refused); open ones are dropped too."""
        self._stop = True
        self._thread.join(2)
        for key in list(self._sel.get_map().values()):
            key.fileobj.close()
        self._sel.close()


class ScriptedTarget:
    """A threaded target whose behaviour each connection picks with its first byte:
    b'E' echo; b'R' echo, then reset after 128 KiB; b'C' close at once. Records, per
    connection, when it ended and how ('eof', 'reset', 'closed')."""

    def __init__(self, host=HOST):
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.ended = []  # (monotonic time, how, bytes received)
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _end(self, how, n):
        with self.lock:
            self.ended.append((time.monotonic(), how, n))

    def _serve(self, conn):
        got = 0
        mode = None
        try:
            while True:
                data = conn.recv(1 << 16)
                if not data:
                    conn.shutdown(socket.SHUT_WR)
                    conn.close()
                    self._end("eof", got)
                    return
                if mode is None:
                    mode = data[:1]
                    if mode == b"C":
                        conn.close()
                        self._end("closed", got)
                        return
                got += len(data)
                conn.sendall(data)
                if mode == b"R" and got >= 128 << 10:
                    reset_close(conn)
                    self._end("reset-sent", got)
                    return
        except OSError:
            conn.close()
            self._end("reset", got)

    def close(self):
        self.sock.close()
