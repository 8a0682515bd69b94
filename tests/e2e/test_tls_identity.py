"""A client trusting exactly its own server: `kaminaris --gen-cert` (a stable self-signed
identity and its pin), kaminaric `pin=` (the server's key must match; the chain need not
verify, the name still must) and `ca=` (exactly these CAs), each accepted and refused, with the
log line that says why; contradictions and bad files refused at start."""

import os
import re
import shutil
import stat
import subprocess
import tempfile
import time

from harness import (HOST, KAMINARIC, KAMINARIS, EchoServer, Proc, Test, addr, assert_same,
                     exchange, free_port, run, wait_port)

test = Test(deadline=120)
d = tempfile.mkdtemp(prefix="kaminari-identity-")
echo = EchoServer()


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def make_ca(name):
    key, cert = os.path.join(d, f"{name}.key"), os.path.join(d, f"{name}.pem")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", f"/CN={name}", "-days", "2", "-keyout", key, "-out", cert)
    return cert, key


def issue(ca, name):
    key, csr, cert = (os.path.join(d, f"{name}.{x}") for x in ("key", "csr", "pem"))
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write(f"subjectAltName=DNS:{name}\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj",
            f"/CN={name}", "-keyout", key, "-out", csr)
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
            "-days", "2", "-extfile", ext, "-out", cert)
    return cert, key


gen_dir = os.path.join(d, "gen")
gen = {}


def gen_cert():
    r = subprocess.run([KAMINARIS, "--gen-cert", "example.com", gen_dir], capture_output=True,
                       timeout=30)
    if r.returncode != 0:
        raise AssertionError(f"exit {r.returncode}: {r.stderr!r}")
    m = re.fullmatch(rb"pin=([A-Za-z0-9+/]{43}=)\n", r.stdout)
    if not m:
        raise AssertionError(f"stdout {r.stdout!r}")
    gen["pin"] = m.group(1).decode()
    gen["cert"] = os.path.join(gen_dir, "example.com.pem")
    gen["key"] = os.path.join(gen_dir, "example.com.key")
    for path in (gen["cert"], gen["key"]):
        if stat.S_IMODE(os.stat(path).st_mode) != 0o600:
            raise AssertionError(f"{path}: mode {oct(os.stat(path).st_mode)}")
    # The pin is what openssl computes for the key.
    pub = subprocess.run(["openssl", "x509", "-in", gen["cert"], "-pubkey", "-noout"],
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         capture_output=True, check=True).stdout
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-binary"], input=der,
                            capture_output=True, check=True).stdout
    import base64
    if base64.b64encode(digest).decode() != gen["pin"]:
        raise AssertionError("the printed pin is not the key's SHA-256 SPKI digest")
    # Never overwrites.
    before = open(gen["key"], "rb").read()
    again = subprocess.run([KAMINARIS, "--gen-cert", "example.com", gen_dir],
                           capture_output=True, timeout=30)
    if again.returncode == 0 or b"not overwriting" not in again.stderr:
        raise AssertionError(f"second --gen-cert: exit {again.returncode} {again.stderr!r}")
    if open(gen["key"], "rb").read() != before:
        raise AssertionError("the key was overwritten")


test.check("--gen-cert: 0600 files, the key's pin on stdout, never overwrites", gen_cert)

servers = []


def server(cert, key):
    port = free_port()
    p = Proc([KAMINARIS, addr(HOST, port), addr(HOST, echo.port), f"tls;cert={cert};key={key}"])
    wait_port(port, proc=p)
    servers.append(p)
    return port


def attempt(server_port, client_opts, ok, count=1):
    """Starts kaminaric with client_opts, makes one exchange; `ok`: it must pass, else fail.
    Returns the client's log."""
    port = free_port()
    c = Proc([KAMINARIC, addr(HOST, port), addr(HOST, server_port), client_opts])
    try:
        wait_port(port, proc=c)
        for _ in range(count):  # later ones resume the TLS session
            data = os.urandom(5000)
            try:
                got = exchange(port, data, timeout=10)
            except (AssertionError, OSError):
                got = b""
            if ok:
                assert_same(got, data, client_opts)
            elif got:
                raise AssertionError(f"{client_opts}: got {len(got)} bytes, expected a refusal")
            time.sleep(0.1)
        time.sleep(0.1)
        return c.stderr_text()
    finally:
        c.stop()


def pins():
    port = server(gen["cert"], gen["key"])
    attempt(port, f"tls;sni=example.com;pin={gen['pin']}", ok=True)
    other = "A" * 43 + "="
    attempt(port, f"tls;sni=example.com;pin={other},{gen['pin']}", ok=True)
    log = attempt(port, f"tls;sni=example.com;pin={other}", ok=False)
    if f"pin={gen['pin']}" not in log:
        raise AssertionError(f"the failure does not name the server's pin:\n{log}")
    # The name still counts.
    log = attempt(port, f"tls;sni=other.example;pin={gen['pin']}", ok=False)
    if "TLS handshake" not in log:
        raise AssertionError(f"no failure line:\n{log}")


test.check("pin=: a self-signed server with the right pin works; a wrong pin fails naming "
           "the server's; a wrong name fails even with the right pin", pins)

ca = make_ca("our-ca")
other_ca = make_ca("other-ca")
issued = issue(ca, "example.com")


def cas():
    port = server(*issued)
    attempt(port, f"tls;sni=example.com;ca={ca[0]}", ok=True)
    log = attempt(port, f"tls;sni=example.com;ca={other_ca[0]}", ok=False)
    if "unable to get local issuer certificate" not in log:
        raise AssertionError(f"no reason in the failure:\n{log}")
    # Without ca= the system store does not know our CA.
    attempt(port, "tls;sni=example.com", ok=False)


test.check("ca=: trusts exactly that CA; another CA's bundle or the system store fail", cas)


def ca_and_pin():
    port = server(*issued)
    pub = subprocess.run(["openssl", "x509", "-in", issued[0], "-pubkey", "-noout"],
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         capture_output=True, check=True).stdout
    import base64
    import hashlib
    pin = base64.b64encode(hashlib.sha256(der).digest()).decode()
    attempt(port, f"tls;sni=example.com;ca={ca[0]};pin={pin}", ok=True)
    attempt(port, f"tls;sni=example.com;ca={ca[0]};pin={gen['pin']}", ok=False)
    attempt(port, f"tls;sni=example.com;ca={other_ca[0]};pin={pin}", ok=False)


test.check("ca= and pin= together: both must hold", ca_and_pin)


def mutual_tls():
    # kaminaris client_ca=: only clients with a certificate from our CA get through.
    port = free_port()
    p = Proc([KAMINARIS, addr(HOST, port), addr(HOST, echo.port),
              f"tls;cert={issued[0]};key={issued[1]};client_ca={ca[0]}"])
    wait_port(port, proc=p)
    servers.append(p)
    good = issue(ca, "client.example")
    stranger = issue(other_ca, "stranger.example")
    base = f"tls;sni=example.com;ca={ca[0]}"
    log = attempt(port, f"{base};cert={good[0]};key={good[1]};loglevel=debug", ok=True, count=3)
    if "TLS session resumed" not in log:
        raise AssertionError(f"sessions with a client certificate did not resume:\n{log}")
    attempt(port, base, ok=False)
    attempt(port, f"{base};cert={stranger[0]};key={stranger[1]}", ok=False)
    time.sleep(0.3)
    log = p.stderr_text()
    if "peer did not return a certificate" not in log:
        raise AssertionError(f"no reason for the client without a certificate:\n{log}")
    if "certificate verify failed" not in log and "unable to get local issuer" not in log:
        raise AssertionError(f"no reason for the stranger's certificate:\n{log}")


test.check("client_ca= (mutual TLS): our client certificate works, also resumed; none, or "
           "another CA's, fails with the reason in kaminaris's log", mutual_tls)


def refused_at_start():
    for opts, code, needle in (
            (f"tls;sni=a;insecure;pin={'A' * 43}=", 2, "insecure: contradicts 'pin='"),
            (f"tls;sni=a;insecure;ca={ca[0]}", 2, "insecure: contradicts 'ca='"),
            ("tls;sni=a;pin=notapin", 2, "pin: 'notapin' is not a pin"),
            ("tls;sni=a;ca=/nonexistent/ca.pem", 1, "/nonexistent/ca.pem"),
            ("tls;sni=a;cert=/nonexistent/c.pem", 2, "tls: 'cert=' needs 'key=<path>'"),
            ("tls;sni=a;cert=/nonexistent/c.pem;key=/nonexistent/k.pem", 1,
             "/nonexistent/")):
        r = run([KAMINARIC, addr(HOST, free_port()), addr(HOST, free_port()), opts])
        if r.returncode != code or needle not in r.stderr:
            raise AssertionError(f"{opts}: exit {r.returncode}, {r.stderr!r}")


test.check("contradictions and bad values exit 2, an unreadable ca= file exits 1, named",
           refused_at_start)


def stop_all():
    codes = [p.stop() for p in servers]
    if any(codes):
        raise AssertionError(f"exit codes {codes}")


test.check("every kaminaris exits 0 on SIGTERM", stop_all)
echo.close()
shutil.rmtree(d, ignore_errors=True)
test.done()
