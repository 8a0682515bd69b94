"""Shared helpers for the end-to-end tests: start the real binaries on loopback, run a target
server, push data through and compare it byte for byte. Every process started here is killed
when the test ends, and every test is bounded in time (see `Test.deadline`)."""

import atexit
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

KAMINARIC = os.environ.get("KAMINARIC", "kaminaric")
KAMINARIS = os.environ.get("KAMINARIS", "kaminaris")
HOST = "127.0.0.1"

_procs = []


def _kill_all():
    for p in _procs:
        if p.poll() is None:
            p.kill()
            p.wait()


atexit.register(_kill_all)


_handed_out = set()


def free_port(host=HOST):
    """A port nothing listens on now, over TCP or UDP (kaminaric with `udp` takes both), and
    that this process was not given before: the kernel may hand out the same free port twice in
    a row, and a test that picks a server's and a client's port before starting either would
    then start both on one (seen in CI). A UDP port in use by another test's socket failed a
    kaminaric's start in CI too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(100):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port in _handed_out:
            continue
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as u:
                u.bind((host, port))
        except OSError:
            continue
        break
    _handed_out.add(port)
    return port


def addr(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def wait_port(port, host=HOST, timeout=10.0, proc=None):
    """Waits until something accepts on host:port."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode}: {proc.stderr_text()}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"nothing listens on {host}:{port} after {timeout}s")


class Proc(subprocess.Popen):
    """A child process whose stderr goes to a temporary file, killed at exit."""

    def __init__(self, argv, env=None, **kw):
        self.log = tempfile.TemporaryFile()
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        super().__init__(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                         env=full_env, **kw)
        _procs.append(self)

    def stderr_text(self):
        # pread: the child writes through the same file description, so moving its offset
        # (seek) while the child runs would make it write over the start of its own log.
        fd = self.log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        if self.poll() is None:
            self.send_signal(sig)
            try:
                self.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                self.wait()
                raise AssertionError(f"{self.args[0]} did not stop within {timeout}s")
        return self.returncode


def run(argv, env=None, timeout=10):
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=timeout,
                          stdin=subprocess.DEVNULL)


class ThreadedTarget:
    """A TCP target on loopback that runs `handler(conn)` on a thread of its own for every
    connection (the handler need not close it). `accepted` counts the connections."""

    def __init__(self, handler, host=HOST):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(512)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.handler = handler
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        with conn:
            try:
                self.handler(conn)
            except OSError:
                pass

    def close(self):
        self.sock.close()


def banner_then_echo(banner=b""):
    """A ThreadedTarget handler for a server that may speak first: sends `banner` (if any),
    then echoes until the end of the stream, and half-closes."""
    def handler(conn):
        if banner:
            conn.sendall(banner)
        while data := conn.recv(1 << 16):
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
    return handler


def start_file_server(size=8 << 20):
    """A threaded HTTP server on loopback serving /blob.bin, `size` random bytes.
    Returns (server, the bytes); server.server_address[1] is its port, shutdown() stops it."""
    import functools
    import http.server
    import tempfile
    root = tempfile.mkdtemp(prefix="kaminari-web-")
    blob = os.urandom(size)
    with open(os.path.join(root, "blob.bin"), "wb") as f:
        f.write(blob)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    web = http.server.ThreadingHTTPServer((HOST, 0), handler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    return web, blob


def ss_downloads(test, name, client_plugin, client_opts, server_plugin, server_opts,
                 client_ready, after_parallel):
    """ss-local + `client_plugin` -> ss-server + `server_plugin` (SIP003 plugins, chacha20):
    curl fetches 8 MiB through SOCKS5, once and then 8 at once, byte-exact; two checks of
    `test` named after `name`. ss-local's own port is up before its plugin's, so the downloads
    start once `client_ready(ss-local's log)` is true. `after_parallel(client, server)` runs
    after the parallel downloads (log checks)."""
    import concurrent.futures
    method, password = "chacha20-ietf-poly1305", "kaminari-test"
    web, payload = start_file_server()
    public = free_port()
    socks = free_port()
    server = Proc(["ss-server", "-s", HOST, "-p", str(public), "-k", password, "-m", method,
                   "--plugin", server_plugin, "--plugin-opts", server_opts])
    client = Proc(["ss-local", "-s", HOST, "-p", str(public), "-l", str(socks), "-b", HOST,
                   "-k", password, "-m", method, "--plugin", client_plugin,
                   "--plugin-opts", client_opts])
    try:
        wait_port(public, proc=server)
        wait_port(socks, proc=client)
        end = time.monotonic() + 15.0
        while not client_ready(client.stderr_text()):
            if time.monotonic() > end:
                raise AssertionError(f"{client_plugin} not listening behind ss-local after 15 s")
            time.sleep(0.05)

        def fetch():
            r = subprocess.run(["curl", "-sS", "--max-time", "60", "--socks5-hostname",
                                f"{HOST}:{socks}", f"http://{HOST}:{web.server_address[1]}/blob.bin"],
                               capture_output=True, timeout=90)
            if r.returncode != 0:
                raise AssertionError(f"curl: {r.stderr.decode(errors='replace')}")
            assert_same(r.stdout, payload, "download")

        def parallel():
            with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
                for f in [pool.submit(fetch) for _ in range(8)]:
                    f.result()
            after_parallel(client, server)

        test.check(f"ss + {name}: 8 MiB through SOCKS5 byte-exact", fetch)
        test.check(f"ss + {name}: 8 parallel 8 MiB downloads", parallel)
    finally:
        client.stop()
        server.stop()
        web.shutdown()


class EchoServer(ThreadedTarget):
    """A TCP echo server on loopback: echoes until EOF, then half-closes its side."""

    def __init__(self, host=HOST):
        super().__init__(banner_then_echo(), host)


def exchange(port, data, host=HOST, timeout=60.0, half_close=True):
    """Sends `data` to host:port while reading; half-closes after sending and returns all bytes
    received until the peer's EOF. With half_close=False the app never half-closes: it reads
    until len(data) bytes are back (an echo), then closes."""
    s = socket.create_connection((host, port), timeout=timeout)
    received = bytearray()
    error = []
    # The first bytes go right after the connect, before a thread starts (which on a loaded
    # machine can take long): an app that speaks at once, as kaminaric's waits for first bytes
    # (early data, 0rtt, tfo: 50 ms from its accept) expect. They fit the socket buffers.
    first = 16 << 10
    try:
        s.sendall(data[:first])
    except OSError as e:
        error.append(e)

    def reader():
        try:
            while half_close or len(received) < len(data):
                chunk = s.recv(1 << 16)
                if not chunk:
                    return
                received.extend(chunk)
        except OSError as e:
            error.append(e)

    t = threading.Thread(target=reader)
    t.start()
    try:
        if not error:
            s.sendall(data[first:])
            if half_close:
                s.shutdown(socket.SHUT_WR)
    except OSError as e:
        error.append(e)
    t.join(timeout)
    s.close()
    if t.is_alive():
        raise AssertionError(f"no EOF after {timeout}s ({len(received)} bytes received)")
    if error:
        raise AssertionError(f"socket error: {error[0]} ({len(received)} bytes received)")
    return bytes(received)


def exchange_while_held(port, data, held, host=HOST, timeout=30):
    """An app whose bytes are surely there when `held` (the program listening on `port`) accepts
    it: `held` is stopped (SIGSTOP) while the app connects, sends `data` and half-closes, so the
    kernel holds all of it; then it reads to the end. `data` must fit the socket buffers."""
    held.send_signal(signal.SIGSTOP)
    try:
        s = socket.create_connection((host, port), timeout=timeout)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
    finally:
        held.send_signal(signal.SIGCONT)
    with s:
        got = bytearray()
        while chunk := s.recv(1 << 16):
            got.extend(chunk)
        return bytes(got)


def start_stunnel(section):
    """stunnel4 in the foreground with one service, `section` (its accept/connect/cert lines)."""
    d = tempfile.mkdtemp(prefix="kaminari-stunnel-")
    conf = os.path.join(d, "stunnel.conf")
    with open(conf, "w") as f:
        f.write(f"""foreground = yes
pid = {d}/stunnel.pid
debug = warning
[tunnel]
{section}""")
    return Proc(["stunnel", conf])


def start_stunnel_server(target_port, cert, key):
    """stunnel4 as a TLS server (certificate `cert`, key `key`) on a free port in front of
    `target_port`, ready; returns (proc, port)."""
    port = free_port()
    proc = start_stunnel(f"""accept = {HOST}:{port}
connect = {HOST}:{target_port}
cert = {cert}
key = {key}
""")
    wait_port(port, proc=proc)
    return proc, port


def read_banner_then_echo(port, banner, data, timeout=10):
    """An app of a server that speaks first: reads `banner` through kaminaric on `port`, then
    sends `data` and reads the echo."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        got = b""
        while len(got) < len(banner):
            d = s.recv(len(banner) - len(got))
            if not d:
                break
            got += d
        assert_same(got, banner, "banner")
        s.sendall(data)
        echo = b""
        while len(echo) < len(data):
            d = s.recv(len(data) - len(echo))
            if not d:
                break
            echo += d
        assert_same(echo, data, "echo after the banner")


def assert_same(got, want, what=""):
    if got != want:
        raise AssertionError(
            f"{what}: {len(got)} bytes received, {len(want)} sent; sha256 "
            f"{hashlib.sha256(got).hexdigest()[:16]} != {hashlib.sha256(want).hexdigest()[:16]}")


class Tunnel:
    """kaminaris in front of a target, kaminaric in front of kaminaris, both on loopback.

    `front(port)` may start something between the two (nginx, HAProxy) and return the port
    the client should connect to; `client(listen_port, remote_port)` may start another client
    (e.g. v2ray-plugin) instead of kaminaric. `target_host` names the target for kaminaris
    (default: `host`; a name such as "localhost" is how a target on another host is given)."""

    def __init__(self, client_opts="", server_opts="", target_port=None, host=HOST, env=None,
                 front=None, client=None, target_host=None):
        self.host = host
        self.server_port = free_port(host)
        self.client_port = free_port(host)
        self.server = Proc([KAMINARIS, addr(host, self.server_port),
                            addr(target_host or host, target_port), server_opts], env=env)
        wait_port(self.server_port, host, proc=self.server)
        remote_port = front(self.server_port) if front else self.server_port
        if client:
            self.client = client(self.client_port, remote_port)
        else:
            self.client = Proc([KAMINARIC, addr(host, self.client_port),
                                addr(host, remote_port), client_opts], env=env)
        wait_port(self.client_port, host, proc=self.client)

    def logs(self):
        return ("--- client ---\n" + self.client.stderr_text() + "--- kaminaris ---\n" +
                self.server.stderr_text())

    def close(self):
        codes = (self.client.stop(), self.server.stop())
        if codes != (0, 0):
            raise AssertionError(f"exit codes {codes} after SIGTERM\n{self.logs()}")


class Test:
    """Collects named checks, prints one line each and a summary, exits non-zero on failure."""

    def __init__(self, deadline=300):
        self.passed = 0
        self.failed = 0
        signal.signal(signal.SIGALRM, self._timeout)
        signal.alarm(deadline)

    @staticmethod
    def _timeout(*_):
        print("FAIL: test deadline exceeded", flush=True)
        _kill_all()
        os._exit(1)

    def check(self, name, fn, *args):
        start = time.monotonic()
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - every failure is reported, then counted
            self.failed += 1
            print(f"FAIL {name} ({time.monotonic() - start:.2f}s): {e}", flush=True)
            return
        self.passed += 1
        print(f"ok   {name} ({time.monotonic() - start:.2f}s)", flush=True)

    def done(self):
        print(f"{self.passed} passed, {self.failed} failed", flush=True)
        _kill_all()
        sys.exit(1 if self.failed else 0)


def stops_cleanly(proc):
    """SIGTERM, then the process must exit with status 0 within 5 s."""
    code = proc.stop()
    if code != 0:
        raise AssertionError(f"exit code {code} after SIGTERM:\n{proc.stderr_text()}")
