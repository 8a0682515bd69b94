"""openssl s_client and s_server as the peers of kaminaris and kaminaric: the stapled OCSP
response (-status), ALPN, TLS 1.0/1.1 refused, and 0-RTT: kaminaric's second connection sends
the app's first bytes as TLS 1.3 early data, which s_server -early_data receives exactly once;
when the server cannot resume (new ticket keys) and rejects the early data, the bytes are resent
and still arrive exactly once."""

import os
import socket
import subprocess
import tempfile
import time

import harness
from harness import KAMINARIC, KAMINARIS, HOST, EchoServer, Proc, Test, addr, free_port, run, \
    wait_port
from pki import Pki

test = Test(deadline=90)
pki = Pki()
cert = pki.server("ecdsa")
rsa = pki.server("rsa")
echo = EchoServer()
# kaminaris must refuse old protocols by itself, not because of a system openssl.cnf.
empty_conf = pki.path("empty-openssl.cnf")
open(empty_conf, "w").close()
NOCONF = {"OPENSSL_CONF": empty_conf}


def kaminaris(opts):
    port = free_port()
    proc = Proc([KAMINARIS, addr(HOST, port), addr(HOST, echo.port), opts], env=NOCONF)
    wait_port(port, proc=proc)
    return proc, port


def s_client(port, *args):
    r = run(["openssl", "s_client", "-connect", f"{HOST}:{port}", "-servername", "example.com",
             *args], env=NOCONF, timeout=15)
    return r.returncode, r.stdout + r.stderr


class SServer:
    """openssl s_server with stdin held open (EOF on stdin would end its connections) and
    stdout unbuffered into a file, so that its messages and the client data it prints come out
    in order. Killed at exit like every Proc."""

    def __init__(self, port, *args):
        self.out = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            ["stdbuf", "-o0", "-e0", "openssl", "s_server", "-accept", f"{HOST}:{port}",
             *args], stdin=subprocess.PIPE, stdout=self.out, stderr=subprocess.STDOUT,
            env=dict(os.environ, **NOCONF))
        harness._procs.append(self.proc)
        self.wait_for("ACCEPT")

    def text(self):
        # pread, as Proc.stderr_text(): s_server writes through the same file description, so
        # a seek would move its offset and it would write over the start of its own output.
        fd = self.out.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    def wait_for(self, what, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if what in self.text():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"s_server output has no {what!r}:\n{self.text()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def expect(cond, msg, output):
    if not cond:
        raise AssertionError(f"{msg}:\n{output[-3000:]}")


# --- OCSP stapling ------------------------------------------------------------------------------
srv, port = kaminaris(f"tls;cert={cert.cert};key={cert.key};ocsp={cert.ocsp}")
plain, plain_port = kaminaris(f"tls;cert={cert.cert};key={cert.key}")


def ocsp_stapled():
    rc, out = s_client(port, "-status", "-CAfile", pki.ca, "-verify_return_error")
    expect(rc == 0, f"s_client exit {rc}", out)
    expect("OCSP Response Status: successful" in out, "no successful OCSP response", out)
    expect("Cert Status: good" in out, "OCSP response does not say good", out)
    expect("Verify return code: 0 (ok)" in out, "certificate does not verify", out)


def no_ocsp_without_option():
    rc, out = s_client(plain_port, "-status")
    expect("OCSP response: no response sent" in out, "a response is stapled without ocsp=", out)


def ocsp_response_is_ours():
    # The stapled response is byte for byte the configured file: s_client -status prints the
    # serial number of the certificate it is about.
    rc, out = s_client(port, "-status")
    serial = subprocess.run(["openssl", "x509", "-in", cert.cert, "-noout", "-serial"],
                            capture_output=True, text=True).stdout.strip().split("=")[1]
    expect(f"Serial Number: {serial}" in out, f"OCSP response not for serial {serial}", out)


test.check("s_client -status sees the stapled OCSP response (successful, good)", ocsp_stapled)
test.check("s_client -status: the response is for the server certificate", ocsp_response_is_ours)
test.check("control: no ocsp= -> no response stapled", no_ocsp_without_option)


# --- ALPN -----------------------------------------------------------------------------------
def alpn(offer, want):
    def check():
        rc, out = s_client(port, *(["-alpn", offer] if offer else []))
        expect(rc == 0, f"s_client exit {rc}", out)
        expect(want in out, f"expected {want!r}", out)
    return check


test.check("ALPN: s_client -alpn http/1.1 gets http/1.1",
           alpn("http/1.1", "ALPN protocol: http/1.1"))
test.check("ALPN: s_client -alpn h2,http/1.1 gets http/1.1",
           alpn("h2,http/1.1", "ALPN protocol: http/1.1"))
test.check("ALPN: no offer, none negotiated", alpn(None, "No ALPN negotiated"))


# --- Protocol versions ----------------------------------------------------------------------
OLD = ("-cipher", "DEFAULT@SECLEVEL=0")  # lets this s_client speak TLS 1.0/1.1 at all


def refused(flag):
    def check():
        rc, out = s_client(port, flag, *OLD)
        expect(rc != 0, f"s_client {flag} succeeded", out)
        expect("Cipher is (NONE)" in out, "a cipher was negotiated", out)
        expect("alert protocol version" in out or "unsupported protocol" in out,
               "not refused for its protocol version", out)
    return check


def old_client_works():
    # The same s_client options do complete a TLS 1.1 handshake with a server that allows it,
    # so the refusal above is kaminaris's.
    sport = free_port()
    s = SServer(sport, "-cert", rsa.cert, "-key", rsa.key, "-tls1_1", *OLD, "-naccept", "1")
    try:
        rc, out = s_client(sport, "-tls1_1", *OLD)
        expect("Protocol  : TLSv1.1" in out and "Cipher is (NONE)" not in out,
               "control TLS 1.1 handshake failed", out)
    finally:
        s.stop()


def tls12_accepted():
    rc, out = s_client(port, "-tls1_2")
    expect(rc == 0 and "Protocol  : TLSv1.2" in out, "TLS 1.2 not accepted", out)


def tls13_default():
    rc, out = s_client(port)
    expect(rc == 0 and "TLSv1.3" in out, "TLS 1.3 not negotiated", out)


test.check("TLS 1.1 (s_client -tls1_1) refused", refused("-tls1_1"))
test.check("TLS 1.0 (s_client -tls1) refused", refused("-tls1"))
test.check("control: the same s_client does TLS 1.1 with s_server -tls1_1", old_client_works)
test.check("TLS 1.2 accepted", tls12_accepted)
test.check("TLS 1.3 by default", tls13_default)
for p in (srv, plain):
    test.check("kaminaris SIGTERM exits 0", harness.stops_cleanly, p)


# --- 0-RTT -----------------------------------------------------------------------------------
SERVER_ARGS = ("-cert", cert.cert, "-key", cert.key, "-early_data")


def kaminaric(remote_port):
    port = free_port()
    proc = Proc([KAMINARIC, addr(HOST, port), addr(HOST, remote_port),
                 "tls;sni=example.com;0rtt"], env={"SSL_CERT_FILE": pki.ca})
    # Not wait_port(): its probe connection would be one of s_server's -naccept connections.
    end = time.monotonic() + 10
    while "listen:" not in proc.stderr_text():
        if proc.poll() is not None or time.monotonic() > end:
            raise AssertionError(f"kaminaric did not start:\n{proc.stderr_text()}")
        time.sleep(0.02)
    return proc, port


def app_connection(port, first, later, server):
    """The app connects and sends `first` at once (before any handshake could have finished),
    then `later`; it closes once s_server has printed both."""
    s = socket.create_connection((HOST, port), timeout=10)
    s.sendall(first)
    server.wait_for(first.decode())
    time.sleep(0.1)
    s.sendall(later)
    server.wait_for(later.decode())
    time.sleep(0.2)  # the session tickets arrive after the handshake
    s.close()


def early_data_section(out):
    head = "Early data received:\n"
    if head not in out:
        return None
    rest = out.split(head, 1)[1]
    return rest.split("End of early data", 1)[0]


def zero_rtt_accepted():
    sport = free_port()
    server = SServer(sport, *SERVER_ARGS, "-naccept", "2")
    client, cport = kaminaric(sport)
    try:
        one, two = b"FIRST-CONNECTION-7f3a\n", b"EARLY-DATA-PAYLOAD-c41e\n"
        app_connection(cport, one, b"LATER-ONE-19be\n", server)
        app_connection(cport, two, b"LATER-TWO-88d0\n", server)
        server.proc.wait(5)
        out = server.text()
        expect("No early data received" in out.split(one.decode())[0],
               "the first connection had no ticket yet, yet did not report no early data", out)
        section = early_data_section(out)
        expect(section is not None, "s_server printed no 'Early data received'", out)
        expect(two.decode() in section, "the second connection's first bytes were not early data",
               out)
        expect("Reused session-id" in out, "the second connection did not resume", out)
        for payload in (one, b"LATER-ONE-19be\n", two, b"LATER-TWO-88d0\n"):
            n = out.count(payload.decode())
            expect(n == 1, f"{payload!r} delivered {n} times", out)
        harness.stops_cleanly(client)
    finally:
        server.stop()


def zero_rtt_rejected():
    """The ticket comes from one s_server; a new s_server (new ticket keys) on the same port
    cannot resume, rejects the early data, and the bytes must then arrive normally, once."""
    sport = free_port()
    first = SServer(sport, *SERVER_ARGS, "-naccept", "1")
    client, cport = kaminaric(sport)
    try:
        app_connection(cport, b"TICKET-CONNECTION-55aa\n", b"LATER-A-0001\n", first)
        first.proc.wait(5)
        second = SServer(sport, *SERVER_ARGS, "-naccept", "1")
        try:
            payload = b"REJECTED-EARLY-DATA-9e21\n"
            app_connection(cport, payload, b"LATER-B-0002\n", second)
            second.proc.wait(5)
            out = second.text()
            expect("Early data was rejected" in out, "s_server did not reject early data", out)
            for p in (payload, b"LATER-B-0002\n"):
                n = out.count(p.decode())
                expect(n == 1, f"{p!r} delivered {n} times", out)
            expect(out.index(payload.decode()) < out.index("LATER-B-0002"),
                   "bytes out of order", out)
        finally:
            second.stop()
        harness.stops_cleanly(client)
    finally:
        first.stop()


test.check("0-RTT: s_server -early_data gets the 2nd connection's first bytes as early data, once",
           zero_rtt_accepted)
test.check("0-RTT rejected by the server: the bytes are resent, delivered once, in order",
           zero_rtt_rejected)
echo.close()
test.done()
