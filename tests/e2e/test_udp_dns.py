"""DNS through the tunnel (`udp`): dnsmasq (authoritative for kaminari.test from a hosts file,
on a free loopback port) behind kaminaris, dig through kaminaric in ws, wss and tls: 200 A
queries per transport, every answer the address the hosts file gives. dig sends each query from
a new source port, so each is an association of its own."""

import os
import shutil
import subprocess
import tempfile

from harness import HOST, Proc, Test
from udp_kit import SANITIZED, TRANSPORTS, UdpTunnel, free_udp_port

QUERIES = 60 if SANITIZED else 200

test = Test(deadline=300)
tmp = tempfile.mkdtemp(prefix="kaminari-dns-")
hosts = os.path.join(tmp, "hosts")
want = {f"host{i}.kaminari.test": f"10.{i // 250}.{i % 250}.{(i * 7) % 250 + 1}" for i in range(QUERIES)}
with open(hosts, "w") as f:
    for name, ip in want.items():
        f.write(f"{ip} {name}\n")


def start_dnsmasq():
    port = free_udp_port()
    proc = Proc(["dnsmasq", "--no-daemon", f"--port={port}", f"--listen-address={HOST}",
                 "--bind-interfaces", "--no-resolv", "--no-hosts", f"--addn-hosts={hosts}",
                 "--local=/kaminari.test/", "--conf-file=/dev/null", "--pid-file=",
                 "--user=root", "--group=root", "--cache-size=0"])
    # Ready once it answers a query directly.
    for _ in range(100):
        if proc.poll() is not None:
            raise AssertionError(f"dnsmasq exited: {proc.stderr_text()}")
        r = subprocess.run(["dig", f"@{HOST}", "-p", str(port), "host0.kaminari.test", "A",
                            "+short", "+tries=1", "+time=1"], capture_output=True, text=True)
        if r.stdout.strip() == want["host0.kaminari.test"]:
            return proc, port
    raise AssertionError(f"dnsmasq does not answer: {proc.stderr_text()}")


def run(transport, dns_port):
    t = UdpTunnel(transport, dns_port, extra=";udp_timeout=5")
    try:
        batch = os.path.join(tmp, f"batch-{transport}")
        with open(batch, "w") as f:
            for name in want:
                f.write(f"{name} A\n")
        r = subprocess.run(["dig", f"@{HOST}", "-p", str(t.client_port), "-f", batch, "+noall",
                            "+answer", "+tries=2", "+time=3"], capture_output=True, text=True,
                           timeout=240)
        got = {}
        for line in r.stdout.splitlines():
            parts = line.split()
            if len(parts) == 5 and parts[3] == "A":
                got[parts[0].rstrip(".")] = parts[4]
        wrong = [n for n in want if got.get(n) != want[n]]
        print(f"     {transport}: {len(want) - len(wrong)}/{len(want)} answers right", flush=True)
        if wrong:
            raise AssertionError(f"{len(wrong)} wrong or missing, e.g. {wrong[:3]}: "
                                 f"{[got.get(n) for n in wrong[:3]]}\n{r.stderr[-500:]}\n{t.logs()}")
    finally:
        t.close()


if shutil.which("dnsmasq") is None or shutil.which("dig") is None:
    print("dnsmasq or dig missing: run scripts/setup.sh test", flush=True)
    test.failed += 1
    test.done()

dns, dns_port = start_dnsmasq()
for transport in TRANSPORTS:
    test.check(f"{transport}: {QUERIES} dig queries through kaminaric, every answer right", run,
               transport, dns_port)
dns.stop()
shutil.rmtree(tmp, ignore_errors=True)
test.done()
