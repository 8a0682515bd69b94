"""TCP Fast Open (`tfo`): kaminaric's first bytes ride in the SYN to kaminaris.

Loopback TFO needs net.ipv4.tcp_fastopen=3, a per-network-namespace setting: the test runs
itself again in a network namespace of its own (`unshare -n`, loopback up) and sets it there,
never on the machine's. It reads the kernel's TCPFastOpenActive/Passive counters (the
namespace's /proc/net/netstat) to see that the SYNs really carried data, and checks every
mode byte for byte, a server that speaks first, and that without `tfo` nothing uses it."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (EchoServer, Test, ThreadedTarget, Tunnel, assert_same,  # noqa: E402
                     banner_then_echo, exchange, read_banner_then_echo)

INNER = "KAMINARI_TFO_NETNS"

MODES = {
    "tcp": ("", ""),
    "ws": ("ws;host=t.example;path=/t", "ws;host=t.example;path=/t"),
    "tls": ("tls;sni=t.example;insecure", "tls;servername=t.example"),
    "wss": ("ws;host=t.example;path=/t;tls;insecure", "ws;host=t.example;path=/t;tls;servername=t.example"),
}


def outer():
    """Runs this file again in a fresh network namespace; skips where none can be made."""
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        print("SKIP: cannot create a network namespace (unshare -n): "
              f"{probe.stderr.decode().strip()}", flush=True)
        print("0 passed, 0 failed", flush=True)
        return 0
    env = dict(os.environ, **{INNER: "1"})
    return subprocess.run(["unshare", "-n", sys.executable, os.path.abspath(__file__)], env=env,
                          timeout=400).returncode


def fast_open_counters():
    """TcpExt TCPFastOpenActive (SYNs sent with data, accepted) and TCPFastOpenPassive (SYNs
    with data accepted) of this network namespace."""
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], map(int, values.split()[1:])))
            return table["TCPFastOpenActive"], table["TCPFastOpenPassive"]
    raise AssertionError("no TcpExt line in /proc/net/netstat")


def exchanges(port, n):
    for i in range(n):
        data = os.urandom(1000 + 997 * i)
        assert_same(exchange(port, data, timeout=20), data, f"connection {i}")


def check_mode(mode, copts, sopts):
    echo = EchoServer()
    t = Tunnel(f"{copts};tfo" if copts else "tfo", f"{sopts};tfo" if sopts else "tfo",
               echo.port)
    try:
        # The first connection fetches the server's cookie; those after it send data in the SYN.
        exchanges(t.client_port, 1)
        active0, passive0 = fast_open_counters()
        exchanges(t.client_port, 5)
        active, passive = fast_open_counters()
        if active - active0 < 5 or passive - passive0 < 5:
            raise AssertionError(
                f"{mode}: 5 connections after the cookie, but TCPFastOpenActive +{active - active0}, "
                f"TCPFastOpenPassive +{passive - passive0}\n{t.logs()}")
    finally:
        t.close()
        echo.close()


def check_server_speaks_first():
    """tcp with tfo: an app that waits for the server's banner still gets it (the client falls
    back to an ordinary connect when the app sends nothing first)."""
    srv = ThreadedTarget(banner_then_echo(b"220 hello\r\n"))
    t = Tunnel("tfo", "tfo", srv.port)
    try:
        for _ in range(3):
            read_banner_then_echo(t.client_port, b"220 hello\r\n", b"ping")
    finally:
        t.close()
        srv.close()


def check_off_by_default():
    echo = EchoServer()
    t = Tunnel("ws;host=t.example;path=/t", "ws;host=t.example;path=/t", echo.port)
    try:
        before = fast_open_counters()
        exchanges(t.client_port, 3)
        after = fast_open_counters()
        if after != before:
            raise AssertionError(f"without tfo the counters moved: {before} -> {after}")
    finally:
        t.close()
        echo.close()


def inner():
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    with open("/proc/sys/net/ipv4/tcp_fastopen", "w") as f:
        f.write("3")
    test = Test(deadline=300)
    test.check("without tfo no SYN carries data", check_off_by_default)
    for mode, (copts, sopts) in MODES.items():
        test.check(f"{mode} with tfo: data in the SYN, byte-exact", check_mode, mode, copts, sopts)
    test.check("tcp with tfo: a server that speaks first", check_server_speaks_first)
    test.done()


if __name__ == "__main__":
    if os.environ.get(INNER):
        inner()
    else:
        sys.exit(outer())
