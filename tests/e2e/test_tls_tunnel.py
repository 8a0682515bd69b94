"""tls and wss kaminaric -> kaminaris -> echo, byte-exact: (a) a self-signed certificate made by
kaminaris (`servername=`) with an `insecure` client; (b) certificates from a test CA (ECDSA PEM,
RSA DER, Ed25519 PEM) with verification on, the CA trusted through SSL_CERT_FILE. Before each
suite a Python TLS client checks that kaminaris presents exactly the configured certificate.
(c) kaminaric makes each connection's ClientHello ahead (tls::hello_ahead), and those resume; in
tls the app's first bytes go in the same write as the client's Finished. (d) A server that speaks
first: the client's Finished goes alone, at once."""

import os
import re
import socket
import ssl
import subprocess

from harness import (EchoServer, Test, ThreadedTarget, Tunnel, HOST, assert_same,
                     banner_then_echo, exchange_while_held, read_banner_then_echo)
from fault_kit import wait_for
from pki import Pki
from tunnel_suite import run_suite

WS = "ws;host=example.com;path=/ws"
test = Test(deadline=240)
pki = Pki()


def presented_cert(port, cafile=None, host=HOST):
    """The DER certificate kaminaris sends (verified against `cafile` when given)."""
    if cafile:
        ctx = ssl.create_default_context(cafile=cafile)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="example.com") as s:
            return s.getpeercert(binary_form=True), s.version()


def probe(name, want_der=None, cafile=None, host=HOST):
    """A run_suite front hook: checks the certificate, then lets kaminaric connect directly."""
    def front(port):
        def check():
            der, version = presented_cert(port, cafile, host)
            if version != "TLSv1.3":
                raise AssertionError(f"negotiated {version}, expected TLSv1.3")
            if want_der is not None and der != want_der:
                raise AssertionError("kaminaris presents another certificate than configured")
            if want_der is None:
                # servername=: a self-signed certificate for that name (CN and SAN).
                text = ssl.DER_cert_to_PEM_cert(der)
                out = _x509_text(text)
                if "DNS:example.com" not in out or "Subject: CN=example.com" not in out:
                    raise AssertionError("self-signed certificate is not for example.com:\n" + out)
                if "prime256v1" not in out and "P-256" not in out:
                    raise AssertionError("self-signed certificate is not ECDSA P-256:\n" + out)
        test.check(f"{name}: kaminaris presents the expected certificate", check)
        return port
    return front


def _x509_text(pem):
    return subprocess.run(["openssl", "x509", "-noout", "-text", "-nameopt", "compat"],
                          input=pem, capture_output=True, text=True, timeout=10).stdout


def insecure_warning(tunnel, want):
    def check():
        log = tunnel.client.stderr_text()
        if ("insecure" in log) != want:
            raise AssertionError(f"insecure warning {'missing' if want else 'present'}:\n" + log)
    return check


# (a) self-signed, generated at start by kaminaris; the client does not verify.
for name, copts, sopts in (
        ("tls self-signed insecure", "tls;sni=example.com;insecure",
         "tls;servername=example.com"),
        ("wss self-signed insecure", f"{WS};tls;insecure", f"{WS};tls;servername=example.com")):
    t = run_suite(test, name, copts, sopts, big=16 << 20, connections=100, front=probe(name))
    test.check(f"{name}: kaminaric warns that verification is off", insecure_warning(t, True))

# (b) test CA, verification on (SSL_CERT_FILE), hostname checked against sni=example.com.
env = {"SSL_CERT_FILE": pki.ca}
for kind, form in (("ecdsa", "pem"), ("rsa", "der"), ("ed25519", "pem")):
    c = pki.server(kind)
    with open(c.cert_der, "rb") as f:
        der = f.read()
    files = (f"cert={c.cert};key={c.key}" if form == "pem"
             else f"cert={c.cert_der};key={c.key_der}")
    for name, copts, sopts in (
            (f"tls CA {kind} {form}", "tls;sni=example.com", f"tls;{files}"),
            (f"wss CA {kind} {form}", f"{WS};tls;sni=example.com", f"{WS};tls;{files}")):
        t = run_suite(test, name, copts, sopts, big=16 << 20, connections=100, env=env,
                      front=probe(name, der, pki.ca))
        test.check(f"{name}: verification on (no insecure warning)", insecure_warning(t, False))

# The same over IPv6 loopback.
c = pki.server("ecdsa")
with open(c.cert_der, "rb") as f:
    der = f.read()
for name, copts, sopts in (
        ("tls CA ecdsa [::1]", "tls;sni=example.com", f"tls;cert={c.cert};key={c.key}"),
        ("wss CA ecdsa [::1]", f"{WS};tls;sni=example.com",
         f"{WS};tls;cert={c.cert};key={c.key}")):
    run_suite(test, name, copts, sopts, big=16 << 20, connections=50, env=env, host="::1",
              front=probe(name, der, pki.ca, "::1"))

# (c) One worker, connections one at a time: each one's ClientHello was made while the one
# before it waited for the server, with a ticket cached by then. The first few may make a full
# handshake (no ticket yet when theirs was made, and wait_port's probe is one of them); from
# the fourth on, every one resumes on a ClientHello made ahead. In tls, the bytes an app has
# sent by the time the handshake completes go with the client's Finished (the wss request does,
# and is not logged): these apps' bytes are made to be there (exchange_while_held()).
echo = EchoServer()
for name, copts, sopts in (
        ("tls", "tls;sni=example.com;insecure", "tls;servername=example.com"),
        ("wss", f"{WS};tls;insecure", f"{WS};tls;servername=example.com")):
    tunnel = Tunnel(f"{copts};threads=1;loglevel=debug", sopts, echo.port)

    def made_ahead(tunnel=tunnel, name=name):
        sizes = [1000 + 997 * i for i in range(8)]
        for i, size in enumerate(sizes):
            data = os.urandom(size)
            assert_same(exchange_while_held(tunnel.client_port, data, tunnel.client), data,
                        f"connection {i}")
        sessions = sorted((int(n), what) for n, what in
                          re.findall(r"#(\d+) TLS session (.*)", tunnel.client.stderr_text()))
        if len(sessions) < 9:  # 8, and wait_port's probe
            raise AssertionError(f"{len(sessions)} TLS sessions logged, expected 9 or more\n"
                                 + tunnel.logs())
        late = [what.split("; ")[:2] for _, what in sessions[-5:]]
        if late != [["resumed", "ClientHello made ahead"]] * 5:
            raise AssertionError(f"the last 5 connections: {late}\n" + tunnel.logs())
        behind = [int(n) for _, what in sessions
                  for n in re.findall(r"; (\d+) bytes with its Finished", what)]
        if name == "tls" and behind != sizes:
            raise AssertionError(f"app bytes with the Finished: {behind}, expected {sizes}\n"
                                 + tunnel.logs())
        if name == "wss" and behind:
            raise AssertionError(f"wss logged app bytes with the Finished: {behind}")
        # Bytes sent with the Finished count like the rest. (The line comes once kaminaric's
        # relay has ended, which may be just after the app has read its end.)
        def up():
            return sorted(int(n) for n in re.findall(r"closed: (\d+) bytes up",
                                                     tunnel.client.stderr_text()))
        wait_for(lambda: set(sizes) <= set(up()), 5.0,
                 f"bytes up logged: {up()}, expected each of {sizes}")

    test.check(f"{name}: connections resume on ClientHellos made ahead", made_ahead)
    test.check(f"{name}: SIGTERM exits 0", tunnel.close)

# (d) A target that speaks first, its app waiting for the banner before it sends: nothing of the
# app's is there when the handshake completes, and the Finished must go alone (kaminaris
# connects to the target only after it).
banner = b"220 speaks first\r\n"
target = ThreadedTarget(banner_then_echo(banner))
for name, copts, sopts in (
        ("tls", "tls;sni=example.com;insecure", "tls;servername=example.com"),
        ("wss", f"{WS};tls;insecure", f"{WS};tls;servername=example.com")):
    tunnel = Tunnel(copts, sopts, target.port)

    def speaks_first(tunnel=tunnel):
        for i in range(4):
            read_banner_then_echo(tunnel.client_port, banner, os.urandom(100 + i), timeout=10)

    test.check(f"{name}: a target that speaks first", speaks_first)
    test.check(f"{name}: SIGTERM exits 0 (speaks first)", tunnel.close)
target.close()
test.done()
