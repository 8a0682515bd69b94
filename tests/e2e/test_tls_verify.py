"""TLS failures: verification (untrusted certificate, wrong sni) closes the app's connection
with a log line saying why while kaminaric keeps serving; bad cert/key/ocsp files stop kaminaris
at start with exit 1 and one line naming the file; garbage and truncated ClientHellos end only
their own connection; a stalled handshake is dropped after handshake_timeout."""

import os
import socket
import ssl
import threading
import time

from harness import (KAMINARIC, KAMINARIS, HOST, EchoServer, Proc, Test, addr,
                     assert_same, exchange, free_port, run, wait_port)
from fault_kit import wait_for
from pki import Pki

# The untrusted case must use the default trust store, whatever the caller's environment says.
for var in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
    os.environ.pop(var, None)

test = Test(deadline=120)
pki = Pki()
good = pki.server("ecdsa")
wrong = pki.server("ecdsa", "wrong.example")
echo = EchoServer()
CA = {"SSL_CERT_FILE": pki.ca}


class Switch:
    """A TCP forwarder whose destination can be changed between connections, so that one
    kaminaric process can be pointed at a bad server, then at a good one."""

    def __init__(self, target):
        self.target = target
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                down, _ = self.sock.accept()
            except OSError:
                return
            try:
                up = socket.create_connection((HOST, self.target), timeout=5)
                up.settimeout(None)
            except OSError:
                down.close()
                continue
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def server(opts, env=None):
    port = free_port()
    proc = Proc([KAMINARIS, addr(HOST, port), addr(HOST, echo.port), opts], env=env)
    wait_port(port, proc=proc)
    return proc, port


def client(opts, remote_port, env=None):
    port = free_port()
    proc = Proc([KAMINARIC, addr(HOST, port), addr(HOST, remote_port), opts], env=env)
    wait_port(port, proc=proc)
    return proc, port


def closed_without_data(port, payload=b"hello", limit=5.0):
    """Connects, sends `payload`, and waits for the peer to close (EOF or reset): returns the
    bytes received and the time it took. Fails if the connection stays open past `limit`."""
    start = time.monotonic()
    s = socket.create_connection((HOST, port), timeout=limit)
    got = bytearray()
    try:
        if payload:
            s.sendall(payload)
        while chunk := s.recv(1 << 16):
            got.extend(chunk)
    except socket.timeout:
        raise AssertionError(f"connection still open after {limit}s") from None
    except OSError:
        pass  # reset: closed too
    finally:
        s.close()
    return bytes(got), time.monotonic() - start


def failed_lines(proc, words):
    return [ln for ln in proc.stderr_text().splitlines()
            if "fail" in ln.lower() and any(w in ln.lower() for w in words)]


def verify_failure(name, bad_port, good_port, sni, words, env=None):
    """kaminaric (through a Switch) to a server it must not trust: the app's connection is
    closed with a log line containing one of `words`; then the same kaminaric, switched to a
    server it does trust, carries data byte-exact."""
    switch = Switch(bad_port)
    proc, port = client(f"tls;sni={sni}", switch.port, env)
    # wait_port's own probe connection fails too: its line first.
    wait_for(lambda: failed_lines(proc, words), 10, "the probe's failure logged")
    before = len(failed_lines(proc, words))

    def refused():
        for _ in range(3):
            got, elapsed = closed_without_data(port)
            if got:
                raise AssertionError(f"received {got!r} through an unverified server")
            if elapsed > 3:
                raise AssertionError(f"took {elapsed:.1f}s to close the app's connection")
        wait_for(lambda: len(failed_lines(proc, words)) >= before + 3, 10, "3 lines logged")
        lines = failed_lines(proc, words)
        if len(lines) != before + 3:
            raise AssertionError(f"expected 3 more log lines with one of {words}:\n"
                                 + proc.stderr_text())
        if proc.poll() is not None:
            raise AssertionError(f"kaminaric exited with {proc.returncode}")

    def still_serving():
        switch.target = good_port
        data = os.urandom(1 << 20)
        assert_same(exchange(port, data, timeout=20), data, "after the failures")

    test.check(f"{name}: connection closed, log says why", refused)
    test.check(f"{name}: the same kaminaric then serves a trusted server", still_serving)
    test.check(f"{name}: kaminaric SIGTERM exits 0", lambda: _stops(proc))
    switch.sock.close()


def _stops(proc):
    code = proc.stop()
    if code != 0:
        raise AssertionError(f"exit code {code}:\n{proc.stderr_text()}")


# --- Verification failures -------------------------------------------------------------------
srv_untrusted, port_untrusted = server(f"tls;cert={pki.untrusted.cert};key={pki.untrusted.key}")
srv_selfgen, port_selfgen = server("tls;servername=example.com")
srv_good, port_good = server(f"tls;cert={good.cert};key={good.key}")
srv_wrong, port_wrong = server(f"tls;cert={wrong.cert};key={wrong.key}")

# With the test CA trusted through SSL_CERT_FILE, a self-signed certificate is still untrusted;
# the same kaminaric, switched to the CA-signed server, then works.
verify_failure("untrusted self-signed (file), CA in SSL_CERT_FILE", port_untrusted, port_good,
               "example.com", ("verify", "self-signed", "self signed", "issuer"), CA)
verify_failure("untrusted self-signed (servername=), CA in SSL_CERT_FILE", port_selfgen,
               port_good, "example.com", ("verify", "self-signed", "self signed", "issuer"), CA)


def default_store_refuses():
    """No SSL_CERT_FILE at all, no insecure: the system store (Debian's ca-certificates) trusts
    neither a self-signed certificate nor our CA. Each connection is closed with a log line and
    the same process goes on accepting (and refusing) the next ones."""
    switch = Switch(port_untrusted)
    proc, port = client("tls;sni=example.com", switch.port)
    words = ("verify", "issuer", "self-signed")
    # wait_port's own probe connection fails too: its line first.
    wait_for(lambda: failed_lines(proc, words), 10, "the probe's failure logged")
    try:
        for target in (port_untrusted, port_selfgen, port_good, port_untrusted):
            switch.target = target
            before = len(failed_lines(proc, words))
            got, elapsed = closed_without_data(port)
            if got or elapsed > 3:
                raise AssertionError(f"got {got!r} after {elapsed:.1f}s")
            wait_for(lambda: len(failed_lines(proc, words)) >= before + 1, 10, "a line logged")
            if len(failed_lines(proc, words)) != before + 1:
                raise AssertionError("no log line says why:\n" + proc.stderr_text())
        _stops(proc)
    finally:
        switch.sock.close()


test.check("default trust store, no insecure: untrusted servers refused, still accepting",
           default_store_refuses)

# Wrong sni with the CA trusted: hostname mismatch; then the same kaminaric (sni=wrong.example)
# to a server whose CA-signed certificate is for wrong.example works.
verify_failure("wrong sni (CA trusted)", port_good, port_wrong, "wrong.example",
               ("verify", "hostname", "mismatch"), CA)


def other_pair_works():
    proc, port = client("tls;sni=example.com", port_good, CA)
    data = os.urandom(1 << 20)
    assert_same(exchange(port, data, timeout=20), data, "good pair")
    _stops(proc)


test.check("kaminaris behind the failures still serves a good client", other_pair_works)
for what, p in (("untrusted", srv_untrusted), ("servername=", srv_selfgen), ("CA", srv_good),
                ("wrong.example", srv_wrong)):
    test.check(f"kaminaris ({what}): SIGTERM exits 0", lambda p=p: _stops(p))

# --- Bad server files -------------------------------------------------------------------------
garbage_bin = pki.garbage("garbage.bin")
garbage_txt = pki.path("garbage.pem")
with open(garbage_txt, "w") as f:
    f.write("-----BEGIN CERTIFICATE-----\nthis is not base64 at all!\n-----END CERTIFICATE-----\n")
empty = pki.path("empty.pem")
open(empty, "w").close()
missing = pki.path("does-not-exist.pem")
other = pki.server("rsa")
bad_files = [
    ("missing cert", f"cert={missing};key={good.key}", missing),
    ("missing key", f"cert={good.cert};key={missing}", missing),
    ("key does not match cert", f"cert={good.cert};key={other.key}", other.key),
    ("DER key does not match DER cert", f"cert={good.cert_der};key={other.key_der}",
     other.key_der),
    ("random bytes as cert", f"cert={garbage_bin};key={good.key}", garbage_bin),
    ("random bytes as key", f"cert={good.cert};key={garbage_bin}", garbage_bin),
    ("broken PEM as cert", f"cert={garbage_txt};key={good.key}", garbage_txt),
    ("empty cert", f"cert={empty};key={good.key}", empty),
    ("random bytes as ocsp", f"cert={good.cert};key={good.key};ocsp={garbage_bin}", garbage_bin),
    ("missing ocsp", f"cert={good.cert};key={good.key};ocsp={missing}", missing),
]


def refuses_to_start(opts, path):
    port = free_port()
    r = run([KAMINARIS, addr(HOST, port), addr(HOST, echo.port), "tls;" + opts], timeout=10)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    if r.returncode != 1:
        raise AssertionError(f"exit status {r.returncode}, expected 1:\n{r.stderr}")
    if len(lines) != 1:
        raise AssertionError(f"expected one line on stderr, got {len(lines)}:\n{r.stderr}")
    if path not in lines[0] or "error" not in lines[0]:
        raise AssertionError(f"the error line does not name {path}:\n{r.stderr}")
    try:  # and it did not leave anything listening
        socket.create_connection((HOST, port), timeout=0.5).close()
        raise AssertionError("something listens on the port after a failed start")
    except OSError:
        pass


for what, opts, path in bad_files:
    test.check(f"bad files: {what} -> exit 1, one line naming the file", refuses_to_start,
               opts, path)

# --- Garbage and stalled handshakes ----------------------------------------------------------
# Garbage goes to a server with the default 10 s handshake timeout, so that "closed within 3 s"
# means closed because of the garbage; stalls go to one with handshake_timeout=1.
srv, sport = server(f"tls;cert={good.cert};key={good.key}")
cli, cport = client("tls;sni=example.com", sport, CA)
slow, slow_port = server(f"tls;cert={good.cert};key={good.key};handshake_timeout=1")


def client_hello():
    """The bytes of a real TLS 1.3 ClientHello (Python's ssl over memory BIOs)."""
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="example.com")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def paced_exchange(port, data, chunk=64 << 10, pause=0.02):
    """exchange(), but sending slowly so that the connection is busy for a while."""
    s = socket.create_connection((HOST, port), timeout=20)
    got = bytearray()

    def reader():
        while c := s.recv(1 << 16):
            got.extend(c)

    t = threading.Thread(target=reader)
    t.start()
    for i in range(0, len(data), chunk):
        s.sendall(data[i:i + chunk])
        time.sleep(pause)
    s.shutdown(socket.SHUT_WR)
    t.join(20)
    s.close()
    return bytes(got)


def garbage_does_not_hurt(garbage, eof, limit):
    def check():
        data = os.urandom(4 << 20)  # 64 chunks, ~1.5 s on the wire
        result = {}
        healthy = threading.Thread(target=lambda: result.update(got=paced_exchange(cport, data)))
        healthy.start()
        time.sleep(0.2)
        s = socket.create_connection((HOST, sport), timeout=limit + 2)
        start = time.monotonic()
        try:
            s.sendall(garbage)
            if eof:
                s.shutdown(socket.SHUT_WR)
            while c := s.recv(4096):
                # A TLS alert record is fine, application data is not.
                if c[0] not in (0x15, 0x16):
                    raise AssertionError(f"unexpected reply {c[:16].hex()}")
        except socket.timeout:
            raise AssertionError(f"garbage connection still open after {limit + 2}s") from None
        except ConnectionResetError:
            pass
        finally:
            s.close()
        elapsed = time.monotonic() - start
        healthy.join(30)
        if elapsed > limit:
            raise AssertionError(f"garbage connection closed after {elapsed:.1f}s > {limit}s")
        if "got" not in result:
            raise AssertionError("the healthy connection did not finish")
        assert_same(result["got"], data, "healthy connection next to the garbage")
    return check


hello = client_hello()
if len(hello) < 100 or hello[0] != 0x16:
    raise SystemExit(f"could not build a ClientHello: {hello[:8].hex()}")
# 0x47 ('G'): not a TLS record type nor an SSLv2 header, so the server can decide at once.
junk = b"\x47" + os.urandom(4095)
test.check("random bytes: that connection ends at once, a concurrent one is byte-exact",
           garbage_does_not_hurt(junk, False, 3))
test.check("random bytes then EOF: ends, concurrent one byte-exact",
           garbage_does_not_hurt(os.urandom(4096), True, 3))
test.check("truncated ClientHello then EOF: ends, concurrent one byte-exact",
           garbage_does_not_hurt(hello[:len(hello) // 2], True, 3))
test.check("ClientHello with a corrupted body: ends, concurrent one byte-exact",
           garbage_does_not_hurt(hello[:9] + os.urandom(len(hello) - 9), False, 3))


def stalled(payload):
    def check():
        got, elapsed = closed_without_data(slow_port, payload, limit=5)
        if elapsed > 3:
            raise AssertionError(f"dropped after {elapsed:.1f}s, handshake_timeout=1")
        if elapsed < 0.8:
            raise AssertionError(f"dropped after {elapsed:.2f}s, before handshake_timeout=1")
        if any(c for c in got[:1] if c not in (0x15, 0x16)):
            raise AssertionError(f"unexpected reply {got[:16].hex()}")
    return check


test.check("stalled handshake (nothing sent) dropped after handshake_timeout=1", stalled(b""))
test.check("stalled handshake (half a ClientHello, no EOF) dropped after handshake_timeout=1",
           stalled(hello[:len(hello) // 2]))


def still_healthy():
    data = os.urandom(8 << 20)
    assert_same(exchange(cport, data, timeout=20), data, "after garbage")
    if srv.poll() is not None:
        raise AssertionError(f"kaminaris exited with {srv.returncode}")


test.check("kaminaris still serves after all that (8 MiB byte-exact)", still_healthy)


def logs_failures():
    if len(failed_lines(srv, ("tls", "handshake"))) < 4:
        raise AssertionError("fewer than 4 failed-handshake lines:\n" + srv.stderr_text())
    if len(failed_lines(slow, ("tls", "handshake"))) < 2:
        raise AssertionError("stalled handshakes not logged:\n" + slow.stderr_text())


test.check("kaminaris logs the failed handshakes", logs_failures)
test.check("SIGTERM exits 0 (kaminaric)", lambda: _stops(cli))
test.check("SIGTERM exits 0 (kaminaris)", lambda: _stops(srv))
test.check("SIGTERM exits 0 (kaminaris handshake_timeout=1)", lambda: _stops(slow))
echo.close()
test.done()
