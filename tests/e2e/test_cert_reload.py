"""kaminaris rereads cert=, key= and ocsp= on SIGHUP, and with reload=<s> when the files change:
new handshakes get the new certificate (its serial seen by openssl s_client), a transfer that
runs across the reload finishes byte-exact, and a broken new key keeps the old certificate in
service with an error naming the file. The process never stops."""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from harness import (HOST, KAMINARIC, KAMINARIS, EchoServer, Proc, Test, addr, assert_same,
                     exchange, free_port, wait_port)

test = Test(deadline=120)
d = tempfile.mkdtemp(prefix="kaminari-reload-")


def make_cert(name, serial):
    cert, key = os.path.join(d, f"{name}.pem"), os.path.join(d, f"{name}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=example.com", "-days", "2",
                    "-set_serial", str(serial), "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=30)
    return cert, key


first = make_cert("first", 0x1111)
second = make_cert("second", 0x2222)
third = make_cert("third", 0x3333)
live_cert, live_key = os.path.join(d, "live.pem"), os.path.join(d, "live.key")


def install(pair):
    # As certbot does: new files renamed into place.
    for src, dst in zip(pair, (live_cert, live_key)):
        shutil.copy(src, dst + ".new")
        os.replace(dst + ".new", dst)


install(first)
echo = EchoServer()
sport, cport = free_port(), free_port()
server = Proc([KAMINARIS, addr(HOST, sport), addr(HOST, echo.port),
               f"tls;cert={live_cert};key={live_key}"])
wait_port(sport, proc=server)
client = Proc([KAMINARIC, addr(HOST, cport), addr(HOST, sport), "tls;sni=example.com;insecure"])
wait_port(cport, proc=client)


def served_serial(port=None):
    r = subprocess.run(["openssl", "s_client", "-connect", f"{HOST}:{port or sport}",
                        "-servername", "example.com"], input=b"", capture_output=True,
                       timeout=20)
    pem = re.search(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", r.stdout,
                    re.S)
    if not pem:
        raise AssertionError(f"no certificate from s_client: {r.stdout[-300:]!r}")
    out = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem.group(0),
                         capture_output=True, timeout=10, check=True)
    return out.stdout.decode().strip().split("=")[1].upper()


def wait_log(proc, pattern, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if re.search(pattern, proc.stderr_text()):
            return
        time.sleep(0.05)
    raise AssertionError(f"no log line matching {pattern!r}\n{proc.stderr_text()}")


def transfer_across_sighup():
    if served_serial() != "1111":
        raise AssertionError("not serving the first certificate")
    data = os.urandom(24 << 20)
    result = {}

    def run():
        try:
            result["got"] = exchange(cport, data)
        except Exception as e:  # reported below
            result["error"] = e
    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.3)  # the transfer is under way
    install(second)
    server.send_signal(signal.SIGHUP)
    wait_log(server, r"SIGHUP: certificate reloaded \(serial 2222\)")
    t.join(60)
    if "error" in result:
        raise result["error"]
    assert_same(result["got"], data, "transfer across the reload")
    if served_serial() != "2222":
        raise AssertionError("new handshakes do not get the new certificate")
    assert_same(exchange(cport, b"after"), b"after", "a new connection")


def broken_key_keeps_old():
    # A key that does not match the certificate: the old one stays in service.
    shutil.copy(third[0], live_cert)
    shutil.copy(first[1], live_key)
    server.send_signal(signal.SIGHUP)
    wait_log(server, r"SIGHUP: keeping the certificate in service \(serial 2222\): .*live")
    if served_serial() != "2222":
        raise AssertionError("a broken reload changed what is served")
    # A missing file: the same.
    os.remove(live_key)
    server.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    if served_serial() != "2222" or server.poll() is not None:
        raise AssertionError("a missing key file broke the server")
    assert_same(exchange(cport, b"still"), b"still", "serving after failed reloads")
    install(second)


def reload_watches_files():
    port = free_port()
    watched = Proc([KAMINARIS, addr(HOST, port), addr(HOST, echo.port),
                    f"tls;cert={live_cert};key={live_key};reload=0.5"])
    try:
        wait_port(port, proc=watched)
        if served_serial(port) != "2222":
            raise AssertionError("not serving the installed certificate")
        install(third)
        wait_log(watched, r"certificate files changed: certificate reloaded \(serial 3333\)")
        if served_serial(port) != "3333":
            raise AssertionError("the changed files were not picked up")
    finally:
        if watched.stop() != 0:
            raise AssertionError("reload=: exit code after SIGTERM")


def servername_sighup_goes_on():
    port = free_port()
    p = Proc([KAMINARIS, addr(HOST, port), addr(HOST, echo.port), "tls;servername=example.com"])
    try:
        wait_port(port, proc=p)
        p.send_signal(signal.SIGHUP)
        wait_log(p, r"received SIGHUP; no certificate files to reload")
        if p.poll() is not None:
            raise AssertionError("SIGHUP stopped kaminaris")
    finally:
        p.stop()


test.check("SIGHUP: new certificate for new handshakes; a 24 MiB transfer across it byte-exact",
           transfer_across_sighup)
test.check("SIGHUP with a mismatched or missing key: old certificate kept, error logged",
           broken_key_keeps_old)
test.check("reload=0.5: changed files picked up without a signal", reload_watches_files)
test.check("servername= (no files): SIGHUP logged, serving goes on", servername_sighup_goes_on)
test.check("SIGTERM exits 0", lambda: (client.stop(), server.stop())[1] == 0 or 1 / 0)
echo.close()
shutil.rmtree(d, ignore_errors=True)
test.done()
