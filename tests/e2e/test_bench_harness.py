"""The connection-setup bench's own programs (bench/conn_harness.c: echo target and load
generator; bench/floor_relay.c: the floor relay), built with cc as bench/tunnel_bench/run.py
builds them: they compile warning-free, count what they do, and the C load generator prints
what the Python one prints, so a bench run's figures come from programs that work."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from harness import HOST, Proc, Test, Tunnel, free_port, wait_port

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN_PY = os.path.join(REPO, "bench", "tunnel_bench", "run.py")
test = Test(deadline=180)
work = tempfile.mkdtemp(prefix="kaminari-bench-harness-")
exe = {}


def build():
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "no C compiler"
    for name in ("conn_harness", "floor_relay"):
        out = os.path.join(work, name)
        r = subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", out,
                            os.path.join(REPO, "bench", f"{name}.c"), "-lm"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        exe[name] = out


def echo_target():
    port = free_port()
    p = Proc([exe["conn_harness"], "echo", str(port)])
    wait_port(port, proc=p)
    return p, port


def loadgen(argv, port, conc, seconds, count, lat=True, gap_ms=None):
    r = subprocess.run(argv + [str(port), str(conc), str(seconds), str(count)]
                       + (["lat"] if lat else []) + ([str(gap_ms)] if gap_ms else []),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def c_loadgen(*args, **kw):
    return loadgen([exe["conn_harness"], "loadgen"], *args, **kw)


def echo_echoes_what_it_cannot_send_at_once():
    echo, port = echo_target()
    data = os.urandom(32 << 20)
    with socket.socket() as s:
        # A small receive window, read only after a pause: the echo's sends come up short and
        # it must keep the rest until there is room.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(20)
        s.connect((HOST, port))

        def send():
            s.sendall(data)  # the echo finds our receive window full long before this ends
            s.shutdown(socket.SHUT_WR)
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        time.sleep(0.3)
        got = bytearray()
        while chunk := s.recv(1 << 16):
            got += chunk
        sender.join(20)
    assert bytes(got) == data, f"{len(got)} of {len(data)} bytes came back, or other bytes"
    echo.stop()


def loadgen_counts_every_connection():
    echo, port = echo_target()
    r = c_loadgen(port, 10, 10, 300)
    assert r["done"] == 300 and r["completed"] == 300 and r["errors"] == 0, r
    assert len(r["lat_us"]) == 300 and all(x > 0 for x in r["lat_us"]), r["lat_us"][:10]
    lat = sorted(r["lat_us"])
    assert abs(r["p50_ms"] * 1e3 - lat[150]) <= 1, (r["p50_ms"], lat[150])
    assert r["rate"] > 0 and r["cpu_busy"] >= 0, r
    one = c_loadgen(port, 1, 10, 50)
    assert one["done"] == 50 and one["errors"] == 0, one
    echo.stop()


def loadgen_counts_refusals_by_name():
    port = free_port()  # nothing listens there
    r = c_loadgen(port, 5, 2, 20, lat=False)
    assert r["done"] == 0 and r["errors"] >= 20, r
    assert set(r["error_kinds"]) == {"ECONNREFUSED"}, r
    assert "lat_us" not in r


def c_and_python_load_generators_print_the_same_keys():
    echo, port = echo_target()
    c = c_loadgen(port, 5, 10, 100)
    py = loadgen([sys.executable, RUN_PY, "--loadgen"], port, 5, 10, 100)
    assert set(c) == set(py), (sorted(c), sorted(py))
    assert c["done"] == py["done"] == 100, (c["done"], py["done"])
    echo.stop()


def loadgen_pauses_between_connections():
    # The bench's latency after idle: with GAP_MS each connection starts that long after the
    # one before it ended, in both load generators.
    echo, port = echo_target()
    for argv in ([exe["conn_harness"], "loadgen"], [sys.executable, RUN_PY, "--loadgen"]):
        r = loadgen(argv, port, 1, 10, 6, gap_ms=100)
        assert r["done"] == 6 and r["errors"] == 0 and len(r["lat_us"]) == 6, r
        assert r["wall"] >= 0.5, f"{argv[0]}: 6 connections 100 ms apart in {r['wall']:.3f} s"
        assert max(r["lat_us"]) < 100000, r["lat_us"]  # the pause is not in the latency
    bad = subprocess.run([exe["conn_harness"], "loadgen", str(port), "2", "1", "4", "lat", "50"],
                         capture_output=True, text=True, timeout=10)
    assert bad.returncode == 2 and "usage" in bad.stderr, (bad.returncode, bad.stderr)
    echo.stop()


def through_the_floor_and_kaminari():
    echo, port = echo_target()
    fs, fc = free_port(), free_port()
    server = Proc([exe["floor_relay"], str(fs), str(port)])
    wait_port(fs, proc=server)
    client = Proc([exe["floor_relay"], str(fc), str(fs)])
    wait_port(fc, proc=client)
    r = c_loadgen(fc, 20, 10, 500)
    assert r["done"] == 500 and r["errors"] == 0, r
    client.stop()
    server.stop()
    t = Tunnel(target_port=port)
    r = c_loadgen(t.client_port, 20, 10, 500)
    assert r["done"] == 500 and r["errors"] == 0, r
    t.close()
    echo.stop()


try:
    test.check("the bench's C programs build with -Wall -Wextra -Werror", build)
    if len(exe) == 2:
        test.check("echo target echoes 32 MiB it cannot send at once",
                   echo_echoes_what_it_cannot_send_at_once)
        test.check("load generator counts every connection", loadgen_counts_every_connection)
        test.check("load generator counts refusals by errno name",
                   loadgen_counts_refusals_by_name)
        test.check("C and Python load generators print the same keys",
                   c_and_python_load_generators_print_the_same_keys)
        test.check("both load generators pause GAP_MS between connections",
                   loadgen_pauses_between_connections)
        test.check("500 connections through the floor pair and a kaminari tcp pair",
                   through_the_floor_and_kaminari)
finally:
    shutil.rmtree(work, ignore_errors=True)
test.done()
