"""The sandbox of the systemd units lets both programs do their whole job. Without a running
systemd the units cannot be started here, so each program runs under strace through a tcp
(splice) and a wss tunnel with most options on (pool, 0rtt, ed, tfo, ping, idle_timeout,
max_conns, threads), takes a SIGHUP and a SIGTERM, and every system call it made must be in
the unit's SystemCallFilter= (as systemd-analyze expands it) and every socket family in its
RestrictAddressFamilies=."""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

from harness import (HOST, KAMINARIC, KAMINARIS, EchoServer, Proc, Test, addr, assert_same,
                     exchange, free_port, wait_port)

UNITS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "systemd")
# getaddrinfo() asks the kernel over netlink which address families are configured
# (AI_ADDRCONFIG). Under RestrictAddressFamilies= that socket() fails with EAFNOSUPPORT and glibc
# then assumes both IPv4 and IPv6: name resolution still works, so the attempt is allowed here.
TOLERATED_FAMILIES = {"AF_NETLINK"}

test = Test(deadline=240)
tmp = tempfile.mkdtemp(prefix="kaminari-sandbox-")


def unit_settings(prog):
    settings = {}
    with open(os.path.join(UNITS, f"{prog}@.service.in")) as f:
        for line in f:
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                settings.setdefault(key, []).append(value)
    return settings


_groups = {}


def expand(group):
    """The system calls of a systemd-analyze syscall-filter group, nested groups included."""
    if group not in _groups:
        r = subprocess.run(["systemd-analyze", "syscall-filter", group], capture_output=True,
                           text=True, timeout=30, check=True)
        names = set()
        for line in r.stdout.splitlines()[1:]:
            word = line.strip()
            if not word or word.startswith("#"):
                continue
            names |= expand(word) if word.startswith("@") else {word}
        assert names, f"systemd-analyze syscall-filter {group} listed nothing"
        _groups[group] = names
    return _groups[group]


def allowed_syscalls(prog):
    """SystemCallFilter= lines in order: an allow list, then ~deny lists taken out of it."""
    allowed = None
    for value in unit_settings(prog)["SystemCallFilter"]:
        deny = value.startswith("~")
        names = set()
        for item in value.lstrip("~").split():
            names |= expand(item) if item.startswith("@") else {item}
        if deny:
            allowed = (allowed if allowed is not None else set()) - names
        else:
            allowed = (allowed or set()) | names
    return allowed


def traced(argv, log):
    return Proc(["strace", "-f", "-qq", "-o", log, *argv])


def tracee_pid(strace_proc):
    """The traced program: strace's only child."""
    end = time.monotonic() + 5
    while time.monotonic() < end:
        for task in os.listdir(f"/proc/{strace_proc.pid}/task"):
            with open(f"/proc/{strace_proc.pid}/task/{task}/children") as f:
                kids = f.read().split()
            if kids:
                return int(kids[0])
        time.sleep(0.02)
    raise AssertionError("strace started no child")


def stop_traced(proc):
    """SIGHUP (must be survived), then SIGTERM to the program itself; strace exits with the
    program's status."""
    pid = tracee_pid(proc)
    os.kill(pid, signal.SIGHUP)
    time.sleep(0.3)
    assert proc.poll() is None, f"died of SIGHUP: {proc.stderr_text()}"
    os.kill(pid, signal.SIGTERM)
    try:
        code = proc.wait(15)
    except Exception:
        proc.kill()
        raise
    assert code == 0, f"exit {code}: {proc.stderr_text()}"


def calls_and_families(log):
    calls, families = set(), set()
    with open(log, errors="replace") as f:
        for line in f:
            m = re.match(r"\d+\s+([a-z0-9_]+)\(", line)
            if m:
                calls.add(m.group(1))
            m = re.match(r"\d+\s+socket\((AF_[A-Z0-9]+)", line)
            if m:
                families.add(m.group(1))
    return calls, families


def run_tunnel(mode, client_opts, server_opts):
    echo = EchoServer()
    sport, cport = free_port(), free_port()
    slog, clog = os.path.join(tmp, f"{mode}-s.strace"), os.path.join(tmp, f"{mode}-c.strace")
    server = traced([KAMINARIS, addr(HOST, sport), addr(HOST, echo.port), server_opts], slog)
    wait_port(sport, proc=server, timeout=20)
    # The client names the server "localhost": the name is resolved on every connection.
    client = traced([KAMINARIC, addr(HOST, cport), f"localhost:{sport}", client_opts], clog)
    wait_port(cport, proc=client, timeout=20)
    for size in (1 << 20, 1 << 10, 4 << 20):
        data = os.urandom(size)
        assert_same(exchange(cport, data, timeout=60), data, f"{mode}: {size} bytes")
    stop_traced(client)
    stop_traced(server)
    echo.close()
    return {"kaminaric": clog, "kaminaris": slog}


logs = {"kaminaric": [], "kaminaris": []}


def tunnel(mode, client_opts, server_opts):
    for prog, log in run_tunnel(mode, client_opts, server_opts).items():
        logs[prog].append(log)


def within_the_filter(prog):
    allowed = allowed_syscalls(prog)
    assert allowed, "empty allow list"
    families_allowed = set(unit_settings(prog)["RestrictAddressFamilies"][0].split())
    calls, families = set(), set()
    for log in logs[prog]:
        c, f = calls_and_families(log)
        calls |= c
        families |= f
    assert len(calls) > 20, f"only {len(calls)} system calls traced: {sorted(calls)}"
    outside = sorted(calls - allowed)
    assert not outside, f"{prog} makes system calls its unit's filter denies: {outside}"
    odd = sorted(families - families_allowed - TOLERATED_FAMILIES)
    assert not odd, f"{prog} opens sockets its unit does not allow: {odd}"
    print(f"     {prog}: {len(calls)} distinct system calls, all allowed; socket families "
          f"{sorted(families)}", flush=True)


def filter_check_can_fail():
    """The allow list arithmetic denies what the unit denies: @privileged's setuid."""
    for prog in ("kaminaric", "kaminaris"):
        allowed = allowed_syscalls(prog)
        assert "setuid" not in allowed and "read" in allowed and "splice" in allowed, prog


if os.environ.get("KAMINARI_SANITIZED"):
    # The ASan stage: LeakSanitizer refuses to run under ptrace, and the instrumented binaries
    # make system calls of their own; the plain build's run of this test is the one that counts.
    print("skipped: sanitized binaries cannot be traced (checked in the plain build)")
    raise SystemExit(0)
if not shutil.which("strace") or not shutil.which("systemd-analyze"):
    # scripts/setup.sh test installs both; without them nothing here can be checked.
    print("FAIL strace and systemd-analyze are needed (bash scripts/setup.sh test)")
    raise SystemExit(1)

test.check("the filter arithmetic denies @privileged", filter_check_can_fail)
test.check("tcp (splice) tunnel under strace, with threads, tfo, max_conns, idle_timeout",
           tunnel, "tcp", "tfo;threads=2;max_conns=100;idle_timeout=30",
           "tfo;threads=2;max_conns=100;idle_timeout=30")
test.check("wss tunnel under strace, with pool, 0rtt, ed, ping",
           tunnel, "wss",
           "ws;host=example.com;path=/ws;tls;sni=example.com;insecure;pool=2;0rtt;ed=512;ping=5",
           "ws;host=example.com;path=/ws;tls;servername=example.com;ping=5;threads=2")
test.check("kaminaric: every system call allowed by kaminaric@.service", within_the_filter,
           "kaminaric")
test.check("kaminaris: every system call allowed by kaminaris@.service", within_the_filter,
           "kaminaris")
shutil.rmtree(tmp, ignore_errors=True)
test.done()
