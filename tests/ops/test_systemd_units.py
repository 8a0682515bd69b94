"""The systemd template units as `cmake --install` writes them: `systemd-analyze verify` accepts
them without a single message (it also finds the ExecStart binary and the man page named in
Documentation=), they carry the sandboxing the README promises, `systemd-analyze security
--offline=yes` rates them at most 2.0 (printed, for the record), and the example configurations
give arguments the programs accept. systemd-analyze works without a running systemd."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BUILD = os.environ["KAMINARI_BUILD_DIR"]
CMAKE = os.environ.get("CMAKE_COMMAND", "cmake")
# Overall exposure of `systemd-analyze security` (0 = locked down, 10 = unprotected) above which
# the test fails: both units score 1.7 today (systemd 252).
MAX_EXPOSURE = 2.0

passed = failed = 0


def check(name, fn, *args):
    global passed, failed
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - every failure is reported, then counted
        failed += 1
        print(f"FAIL {name}: {e}", flush=True)
        return
    passed += 1
    print(f"ok   {name}", flush=True)


def analyze(args, prefix):
    env = dict(os.environ, MANPATH=os.path.join(prefix, "share/man"), SYSTEMD_PAGER="",
               SYSTEMD_COLORS="0")
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def verify_silent(unit, prefix):
    r = analyze(["verify", unit], prefix)
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 0 and not out, f"systemd-analyze verify {unit}: {r.returncode}\n{out}"


def verify_catches_a_typo(unit, tmp, prefix):
    """The check above fails on a mistyped key (verify itself only warns and exits 0)."""
    bad_dir = os.path.join(tmp, "bad")
    os.makedirs(bad_dir, exist_ok=True)
    bad = os.path.join(bad_dir, os.path.basename(unit))
    with open(unit) as f, open(bad, "w") as out:
        out.write(f.read().replace("ProtectSystem=strict", "ProtectSytem=strict"))
    try:
        verify_silent(bad, prefix)
    except AssertionError:
        return
    raise AssertionError("a unit with 'ProtectSytem=' passed the verify check")


def directives(unit):
    values = {}
    with open(unit) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;[":
                continue
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def hardened(unit, server):
    d = directives(unit)
    want = {
        "DynamicUser": ["yes"], "NoNewPrivileges": ["yes"], "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"], "PrivateTmp": ["yes"],
        "RestrictAddressFamilies": ["AF_INET AF_INET6 AF_UNIX"],
        "LimitNOFILE": ["1048576"], "Restart": ["on-failure"],
        "ExecReload": ["/bin/kill -HUP $MAINPID"],
        "EnvironmentFile": ["/etc/kaminari/%i.conf"],
    }
    for key, value in want.items():
        assert d.get(key) == value, f"{key}={d.get(key)}, expected {value}"
    assert "@system-service" in d.get("SystemCallFilter", []), d.get("SystemCallFilter")
    if server:
        assert d.get("AmbientCapabilities") == ["CAP_NET_BIND_SERVICE"], d
        assert d.get("CapabilityBoundingSet") == ["CAP_NET_BIND_SERVICE"], d
    else:
        assert "AmbientCapabilities" not in d, d
        assert d.get("CapabilityBoundingSet") == [""], d
    assert "User" not in d and "Group" not in d, "DynamicUser only"


def security_score(unit, prefix, scores):
    r = analyze(["security", "--offline=yes", unit], prefix)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", r.stdout)
    assert m, f"no overall exposure in:\n{r.stdout}{r.stderr}"
    score = float(m.group(1))
    scores[os.path.basename(unit)] = f"{m.group(1)} {m.group(2)}"
    print(f"     systemd-analyze security --offline=yes {os.path.basename(unit)}: "
          f"{m.group(1)} {m.group(2)}", flush=True)
    for line in r.stdout.splitlines():
        if line.startswith("✗"):
            print(f"       {' '.join(line.split()[:2])}", flush=True)
    assert score <= MAX_EXPOSURE, f"exposure {score} > {MAX_EXPOSURE}"


def environment_file(path):
    """The subset of systemd's EnvironmentFile= syntax the examples use: KEY=value lines,
    comments, and single-quoted values taken literally (systemd.exec(5))."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            key, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z_]+", key), f"odd line: {line}"
            if value.startswith("'"):
                assert value.endswith("'") and len(value) >= 2, f"unclosed quote: {line}"
                value = value[1:-1]
            else:
                assert "\\" not in value and '"' not in value, f"quote this value: {line}"
            env[key] = value
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def example_starts(prefix, prog, example):
    """The example's OPTIONS, with LOCAL and REMOTE moved to loopback, start the program."""
    env = environment_file(os.path.join(prefix, "share/doc/kaminari/examples", example))
    assert set(env) == {"LOCAL", "REMOTE", "OPTIONS"}, env
    port = free_port()
    argv = [os.path.join(prefix, "bin", prog), f"127.0.0.1:{port}", "127.0.0.1:9",
            env["OPTIONS"]]
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        end = time.monotonic() + 10
        while time.monotonic() < end and p.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        assert p.poll() is None, f"{argv} exited with {p.returncode}: {p.stdout.read()}"
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=5)
        assert p.returncode == 0, f"exit {p.returncode}: {out}"
        assert "transport: " in out and "ignoring" not in out, out
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def main():
    if not shutil.which("systemd-analyze"):
        print("FAIL systemd-analyze is missing (scripts/setup.sh test installs systemd)")
        sys.exit(1)
    scores = {}
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "prefix")
        r = subprocess.run([CMAKE, "--install", BUILD, "--prefix", prefix], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        for prog in ("kaminaric", "kaminaris"):
            unit = os.path.join(prefix, f"lib/systemd/system/{prog}@.service")
            check(f"{prog}@.service: systemd-analyze verify says nothing", verify_silent, unit,
                  prefix)
            check(f"{prog}@.service: a mistyped key fails that check", verify_catches_a_typo,
                  unit, tmp, prefix)
            check(f"{prog}@.service: sandboxing and restart settings", hardened, unit,
                  prog == "kaminaris")
            check(f"{prog}@.service: security exposure at most {MAX_EXPOSURE}", security_score,
                  unit, prefix, scores)
        check("examples/server.conf starts kaminaris", example_starts, prefix, "kaminaris",
              "server.conf")
        check("examples/client.conf starts kaminaric", example_starts, prefix, "kaminaric",
              "client.conf")
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
