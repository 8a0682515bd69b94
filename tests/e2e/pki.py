"""A throwaway test PKI made with the openssl CLI in a temporary directory at test time:
a test CA (EC P-256), server certificates it signs (ECDSA P-256, RSA 2048, Ed25519) in PEM and
DER, a self-signed certificate nobody trusts, and a DER OCSP response for a server certificate
signed by the CA. Nothing here is checked in; the directory is removed at exit.

    pki = Pki()
    pki.ca                      # CA certificate (PEM): trust it with SSL_CERT_FILE=pki.ca
    c = pki.server("ecdsa")     # ServerCert: .cert .key (PEM), .cert_der .key_der, .ocsp (DER)
    pki.untrusted               # ServerCert, self-signed for example.com, trusted by nobody
"""

import atexit
import os
import shutil
import subprocess
import tempfile
from datetime import datetime, timezone

NAME = "example.com"

_KEYGEN = {
    "ecdsa": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "rsa": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    "ed25519": ["-algorithm", "ED25519"],
}


def openssl(*args, cwd=None):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=cwd, timeout=30,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return r.stdout


class ServerCert:
    def __init__(self, cert, key, cert_der, key_der, name):
        self.cert, self.key, self.cert_der, self.key_der, self.name = (cert, key, cert_der,
                                                                       key_der, name)
        self.ocsp = None


class Pki:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="kaminari-pki-")
        atexit.register(shutil.rmtree, self.dir, True)
        self._serial = 0x1000
        self._certs = {}
        self.ca_key = self._genkey("ca", "ecdsa")
        self.ca = self.path("ca.pem")
        ext = self._write("ca.ext", "basicConstraints=critical,CA:TRUE\n"
                          "keyUsage=critical,keyCertSign,cRLSign\n"
                          "subjectKeyIdentifier=hash\n")
        csr = self.path("ca.csr")
        openssl("req", "-new", "-key", self.ca_key, "-subj", "/CN=kaminari test CA", "-out", csr)
        openssl("x509", "-req", "-in", csr, "-signkey", self.ca_key, "-days", "30",
                "-sha256", "-extfile", ext, "-set_serial", "1", "-out", self.ca)
        # Self-signed, for example.com, not signed by the CA: nobody trusts it.
        key = self._genkey("untrusted", "ecdsa")
        cert = self.path("untrusted.pem")
        openssl("req", "-x509", "-new", "-key", key, "-subj", f"/CN={NAME}", "-days", "30",
                "-addext", f"subjectAltName=DNS:{NAME}", "-out", cert)
        self.untrusted = ServerCert(cert, key, None, None, NAME)
        self._index = []

    def path(self, name):
        return os.path.join(self.dir, name)

    def _write(self, name, text, mode="w"):
        p = self.path(name)
        with open(p, mode) as f:
            f.write(text)
        return p

    def _genkey(self, stem, kind):
        key = self.path(f"{stem}.key")
        openssl("genpkey", *_KEYGEN[kind], "-out", key)
        return key

    def server(self, kind="ecdsa", name=NAME):
        """A server certificate signed by the CA for DNS:`name` (cached per kind and name)."""
        if (kind, name) in self._certs:
            return self._certs[(kind, name)]
        stem = f"server-{kind}-{name}"
        key = self._genkey(stem, kind)
        csr = self.path(f"{stem}.csr")
        cert = self.path(f"{stem}.pem")
        usage = "digitalSignature,keyEncipherment" if kind == "rsa" else "digitalSignature"
        ext = self._write(f"{stem}.ext", "basicConstraints=critical,CA:FALSE\n"
                          f"keyUsage=critical,{usage}\n"
                          "extendedKeyUsage=serverAuth\n"
                          f"subjectAltName=DNS:{name}\n"
                          "authorityKeyIdentifier=keyid\n")
        self._serial += 1
        serial = self._serial
        openssl("req", "-new", "-key", key, "-subj", f"/CN={name}", "-out", csr)
        openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                "-set_serial", str(serial), "-days", "30", "-sha256", "-extfile", ext,
                "-out", cert)
        cert_der = self.path(f"{stem}.crt.der")
        key_der = self.path(f"{stem}.key.der")
        openssl("x509", "-in", cert, "-outform", "DER", "-out", cert_der)
        openssl("pkey", "-in", key, "-outform", "DER", "-out", key_der)
        c = ServerCert(cert, key, cert_der, key_der, name)
        c.ocsp = self._ocsp(stem, cert, serial)
        self._certs[(kind, name)] = c
        return c

    def _ocsp(self, stem, cert, serial):
        """A DER OCSP response saying `cert` is good, signed by the CA (openssl ocsp with an
        index.txt in the `openssl ca` format, -reqout then -reqin/-respout)."""
        end = openssl("x509", "-in", cert, "-noout", "-enddate").strip().split("=", 1)[1]
        expiry = datetime.strptime(end.replace("  ", " "), "%b %d %H:%M:%S %Y %Z")
        subject = openssl("x509", "-in", cert, "-noout", "-subject", "-nameopt",
                          "compat").strip().split("=", 1)[1].strip()
        self._index.append(f"V\t{expiry.replace(tzinfo=timezone.utc):%y%m%d%H%M%SZ}\t\t"
                           f"{serial:X}\tunknown\t{subject}\n")
        index = self._write("index.txt", "".join(self._index))
        # Several certificates share a subject (one per key type).
        self._write("index.txt.attr", "unique_subject = no\n")
        req = self.path(f"{stem}.ocsp-req.der")
        resp = self.path(f"{stem}.ocsp.der")
        openssl("ocsp", "-issuer", self.ca, "-cert", cert, "-no_nonce", "-reqout", req)
        openssl("ocsp", "-index", index, "-rsigner", self.ca, "-rkey", self.ca_key, "-CA",
                self.ca, "-reqin", req, "-respout", resp, "-ndays", "7")
        status = openssl("ocsp", "-respin", resp, "-issuer", self.ca, "-cert", cert,
                         "-CAfile", self.ca)
        if ": good" not in status:
            raise RuntimeError(f"OCSP response for {cert} does not say good:\n{status}")
        return resp

    def garbage(self, name="garbage.pem", size=1500):
        return self._write(name, os.urandom(size), "wb")
