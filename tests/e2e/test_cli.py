"""The programs as a user or a SIP003 host runs them: arguments, exit codes, signals."""

import os
import socket
import time

from harness import (KAMINARIC, KAMINARIS, EchoServer, Proc, Test, assert_same, exchange,
                     free_port, run, wait_port, HOST)

test = Test(deadline=120)


def exits_2_naming_path():
    r = run([KAMINARIC, "127.0.0.1:1", "127.0.0.1:2", "ws;host=a"])
    assert r.returncode == 2, r
    assert r.stderr.splitlines()[0] == "kaminaric: error: ws: missing 'path=<path>'", r.stderr
    assert "Traceback" not in r.stderr and "terminate" not in r.stderr


def bad_input_exits_2():
    cases = [
        ([KAMINARIC], "missing arguments"),
        ([KAMINARIC, "1.2.3.4", "127.0.0.1:2"], "local: '1.2.3.4' has no port"),
        ([KAMINARIS, "127.0.0.1:1", "127.0.0.1:2", "tls"], "tls: missing 'cert=<path>'"),
        ([KAMINARIC, "127.0.0.1:1", "127.0.0.1:2", "ws;host=a;path=/;mask=x"], "mask: unknown"),
        ([KAMINARIS, "127.0.0.1:1", "127.0.0.1:2", "path=/a\\"], "lone '\\'"),
        ([KAMINARIC, "--bogus"], "unknown flag '--bogus'"),
    ]
    for argv, needle in cases:
        r = run(argv)
        assert r.returncode == 2, (argv, r)
        lines = r.stderr.splitlines()
        assert lines and needle in lines[0], (argv, r.stderr)
        assert lines[0].startswith(os.path.basename(argv[0]) + ": error: "), r.stderr


def help_and_version():
    for prog in (KAMINARIC, KAMINARIS):
        r = run([prog, "--help"])
        assert r.returncode == 0 and "usage:" in r.stdout and "SIP003" in r.stdout, r
        r = run([prog, "--version"])
        assert r.returncode == 0 and r.stdout.startswith(os.path.basename(prog) + " "), r


def cannot_bind_exits_1():
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run([KAMINARIS, f"{HOST}:{port}", "127.0.0.1:2"])
        assert r.returncode == 1, r
        assert "cannot listen" in r.stderr, r.stderr


def unknown_option_warns():
    port = free_port()
    p = Proc([KAMINARIC, f"{HOST}:{port}", "127.0.0.1:2", "hostname=x"])
    wait_port(port, proc=p)
    code = p.stop()
    assert code == 0, f"exit {code}: {p.stderr_text()!r}"
    assert "ignoring unknown option 'hostname'" in p.stderr_text(), p.stderr_text()


def sip003_both_programs():
    # ss-local side: kaminaric listens on SS_LOCAL_*, connects to SS_REMOTE_*;
    # ss-server side: kaminaris listens on SS_REMOTE_*, forwards to SS_LOCAL_*.
    echo = EchoServer()
    public = free_port()
    local = free_port()
    server = Proc([KAMINARIS], env={"SS_REMOTE_HOST": HOST, "SS_REMOTE_PORT": str(public),
                                    "SS_LOCAL_HOST": HOST, "SS_LOCAL_PORT": str(echo.port),
                                    "SS_PLUGIN_OPTIONS": ""})
    wait_port(public, proc=server)
    client = Proc([KAMINARIC], env={"SS_REMOTE_HOST": "localhost", "SS_REMOTE_PORT": str(public),
                                    "SS_LOCAL_HOST": HOST, "SS_LOCAL_PORT": str(local)})
    wait_port(local, proc=client)
    data = os.urandom(1 << 20)
    assert_same(exchange(local, data), data, "through the SIP003 pair")
    assert client.stop() == 0 and server.stop() == 0
    echo.close()


def sigint_and_sigterm_exit_0_promptly():
    """Signalled as soon as its port accepts, 10 times each: the signal must already be
    handled then (it once arrived between bind and the handler, killing it 1 time in 30)."""
    import signal
    for sig in (signal.SIGINT, signal.SIGTERM):
        for _ in range(10):
            port = free_port()
            p = Proc([KAMINARIS, f"{HOST}:{port}", "127.0.0.1:2"])
            wait_port(port, proc=p)
            start = time.monotonic()
            code = p.stop(sig, timeout=2)
            assert code == 0, f"{sig.name}: exit {code}: {p.stderr_text()!r}"
            assert time.monotonic() - start < 1.5


test.check("bad options exit 2 naming 'path'", exits_2_naming_path)
test.check("bad input exits 2 with one error line", bad_input_exits_2)
test.check("--help and --version", help_and_version)
test.check("cannot bind exits 1", cannot_bind_exits_1)
test.check("unknown option is a warning", unknown_option_warns)
test.check("SIP003 environment, server swaps roles", sip003_both_programs)
test.check("SIGINT and SIGTERM exit 0 promptly", sigint_and_sigterm_exit_0_promptly)
test.done()
