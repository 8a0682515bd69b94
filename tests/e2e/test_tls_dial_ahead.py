"""kaminaris in tls mode dials its target as soon as its own handshake flight is out, while the
client's Finished is on its way, instead of after it (on a real network the target's connect
then overlaps that round trip), unless the target is an address on this host. A Python TLS client over memory BIOs holds its last flight
back: the target must get its connection before that flight is sent, in TLS 1.3 and TLS 1.2,
then the bytes go through. A client that goes away without finishing leaves no connection to
the target open, and kaminaris goes on serving. With client certificates asked for (client_ca),
only a client that finished is dialed for. Through kaminaric, every connection's debug line
says so, and with a target at 127.0.0.1 none does."""

import re
import socket
import ssl
import threading
import time

from fault_kit import wait_for
from harness import (KAMINARIC, KAMINARIS, HOST, Proc, Test, ThreadedTarget, addr, exchange,
                     free_port, stops_cleanly, wait_port)
from pki import Pki, openssl

test = Test(deadline=120)
pki = Pki()


class Target(ThreadedTarget):
    """Echoes; counts the connections that ended (the peer closed)."""

    def __init__(self):
        self.ended = 0
        self.lock = threading.Lock()
        super().__init__(self.echo)

    def echo(self, conn):
        while data := conn.recv(1 << 16):
            conn.sendall(data)
        with self.lock:
            self.ended += 1


def client_context(version, cert=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = version
    if cert:
        ctx.load_cert_chain(*cert)
    return ctx


class HeldClient:
    """A TLS client that sends its ClientHello and reads the server's flight, then holds what it
    would send next (its Finished; in TLS 1.2 its key exchange too) until finish()."""

    def __init__(self, port, version, cert=None):
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = client_context(version, cert).wrap_bio(self.inc, self.out,
                                                          server_hostname="example.com")
        self.done = self._step()
        self.sock.sendall(self.out.read())  # the ClientHello
        while not self.done and self.out.pending == 0:
            data = self.sock.recv(1 << 16)
            if not data:
                raise AssertionError("kaminaris closed during the handshake")
            self.inc.write(data)
            self.done = self._step()
        self.held = self.out.read()

    def _step(self):
        try:
            self.tls.do_handshake()
            return True
        except ssl.SSLWantReadError:
            return False

    def finish(self, data):
        """Sends the held flight, completes the handshake, sends `data`; returns the echo."""
        self.sock.sendall(self.held)
        while not self.done:
            self.inc.write(self.sock.recv(1 << 16))
            self.done = self._step()
            self.sock.sendall(self.out.read())
        self.tls.write(data)
        self.sock.sendall(self.out.read())
        got = b""
        while len(got) < len(data):
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise AssertionError(f"end of stream after {len(got)} of {len(data)} bytes")
            self.inc.write(chunk)
            try:
                while True:
                    got += self.tls.read(1 << 16)
            except ssl.SSLWantReadError:
                pass
        return got


def server(target, opts, target_host="localhost"):
    """kaminaris in front of `target`, named `target_host`: by default a name, as a target on
    another host usually is (one given as an address on this host is dialed after the
    handshake: it connects within connect() itself, with no round trip to hide)."""
    port = free_port()
    proc = Proc([KAMINARIS, addr(HOST, port), addr(target_host, target.port), opts])
    wait_port(port, proc=proc)
    return proc, port


target = Target()
proc, port = server(target, "tls;servername=example.com;loglevel=debug")


def dialed_before_the_finished(version):
    def check():
        wait_for(lambda: target.ended == target.accepted, 5, "the earlier connections' ends")
        before = target.accepted
        c = HeldClient(port, version)
        if not c.held:
            raise AssertionError("the client had nothing left to send after the server's flight")
        wait_for(lambda: target.accepted == before + 1, 5,
                 "the target's connection while the client holds its Finished")
        data = b"after the Finished " * 100
        if c.finish(data) != data:
            raise AssertionError("echo differs")
        c.sock.close()
    return check


def gone_before_the_finished():
    # The connections before this one end first (their ends are counted as they come).
    wait_for(lambda: target.ended == target.accepted, 5, "the earlier connections' ends")
    before, ended = target.accepted, target.ended
    c = HeldClient(port, ssl.TLSVersion.TLSv1_3)
    wait_for(lambda: target.accepted == before + 1, 5, "the target's connection")
    c.sock.close()
    wait_for(lambda: target.ended == ended + 1, 5, "the target's connection closed")
    wait_for(lambda: "TLS handshake from" in proc.stderr_text(), 5, "the failed handshake's line")


def still_serving():
    c = HeldClient(port, ssl.TLSVersion.TLSv1_3)
    if c.finish(b"x" * 1000) != b"x" * 1000:
        raise AssertionError("echo differs")
    c.sock.close()


test.check("tls 1.3: the target is dialed before the client's Finished",
           dialed_before_the_finished(ssl.TLSVersion.TLSv1_3))
test.check("tls 1.2: the target is dialed before the client's last flight",
           dialed_before_the_finished(ssl.TLSVersion.TLSv1_2))
test.check("a client gone before its Finished: the target's connection is closed",
           gone_before_the_finished)
test.check("kaminaris serves on", still_serving)


def self_signed(name):
    """A self-signed certificate and its key: the client's, trusted by kaminaris as its own CA."""
    cert, key = pki.path(f"{name}.pem"), pki.path(f"{name}.key")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", f"/CN={name}", "-days", "2", "-keyout", key, "-out", cert)
    return cert, key


def with_client_ca():
    """client_ca: nothing reaches the target before the client's certificate is checked."""
    cert = self_signed("client.example")
    t = Target()
    p, pt = server(t, f"tls;servername=example.com;client_ca={cert[0]};loglevel=debug")
    try:
        c = HeldClient(pt, ssl.TLSVersion.TLSv1_3, cert)
        # Its certificate is in the held flight: kaminaris must wait for it. (A build that
        # dialed here would have done so at once; this only gives it the time to show.)
        time.sleep(0.3)
        if t.accepted != 0:
            raise AssertionError("the target was dialed before the client's certificate came")
        data = b"certified"
        if c.finish(data) != data:
            raise AssertionError("echo differs")
        c.sock.close()
        wait_for(lambda: t.accepted == 1, 5, "the target's connection after the handshake")
    finally:
        p.stop()
        t.close()


test.check("client_ca: the target is dialed after the client's certificate", with_client_ca)


def through_kaminaric(target_host, ahead):
    """As a user runs it: kaminaric in front; kaminaris's debug line for each connection says
    whether its target was dialed during the handshake."""
    def check():
        srv, srv_port = server(target, "tls;servername=example.com;loglevel=debug", target_host)
        client_port = free_port()
        cli = Proc([KAMINARIC, addr(HOST, client_port), addr(HOST, srv_port),
                    "tls;sni=example.com;insecure"])
        wait_port(client_port, proc=cli)
        for i in range(3):
            data = bytes([i]) * 5000
            if exchange(client_port, data) != data:
                raise AssertionError("echo differs")
        wait_for(lambda: srv.stderr_text().count("closed: 5000 bytes up, 5000 bytes down") == 3,
                 5, "3 connections logged as closed")
        sessions = re.findall(r"TLS session .*", srv.stderr_text())
        dialed = [s for s in sessions if s.endswith("; target dialed during the handshake")]
        if len(sessions) < 3 or len(dialed) != (len(sessions) if ahead else 0):
            raise AssertionError(f"{len(dialed)} of {len(sessions)} TLS sessions dialed during "
                                 f"the handshake:\n{srv.stderr_text()}")
        stops_cleanly(cli)
        stops_cleanly(srv)
    return check


test.check("through kaminaric, a target named: every connection dials during the handshake",
           through_kaminaric("localhost", True))
test.check("through kaminaric, a target at 127.0.0.1: dialed after the handshake",
           through_kaminaric(HOST, False))
test.check("kaminaris: SIGTERM exits 0", stops_cleanly, proc)
target.close()
test.done()
