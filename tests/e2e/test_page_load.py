"""The page-load bench (bench/page_load.py) in small: its browser fetches a page through
ss-local, a plugin pair and the delay proxy, checks every body, counts the connections a
browser opens, leaves no process behind, and its times respect what the round trip allows;
and its browser refuses a body that is not what the origin sent."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile

from harness import HOST, Test, ThreadedTarget

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(REPO, "bench", "page_load.py")
sys.path.insert(0, os.path.dirname(BENCH))
import page_load  # noqa: E402

test = Test(deadline=240)
RTT_MS = 40
HOSTS, RESOURCES = 3, 10


def bench_processes(bench_pid):
    """Processes still running that the bench started, plugins included: their environment
    has the bench's marker."""
    marker = f"KAMINARI_PAGE_LOAD={bench_pid}".encode()
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in env:
            found.append(f"{pid} {cmd}")
    return found


def loads_a_page_through_every_kind_of_setup():
    out = tempfile.mkdtemp(prefix="kaminari-page-load-")
    setups = ["none", "ws", "ws-mux", "wss-0rtt"]
    bench = subprocess.Popen([sys.executable, BENCH, "--rtt-ms", str(RTT_MS), "--rounds", "1",
                        "--loads", "2", "--gap", "0.3", "--hosts", str(HOSTS), "--resources",
                        str(RESOURCES), "--setups", ",".join(setups), "--out", out],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = bench.communicate(timeout=120)
    finally:
        bench.kill()
        bench.wait()
        # Every process the bench started is gone once it has exited; any left is reported
        # below, and killed here either way.
        left = bench_processes(bench.pid)
        for line in left:
            try:
                os.kill(int(line.split()[0]), signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert bench.returncode == 0, stdout + stderr
    with open(os.path.join(out, "page_load.json")) as f:
        res = json.load(f)["results"]
    with open(os.path.join(out, "page_load.md")) as f:
        md = f.read()
    # The HTML's connection, then per host at most 6 connections for its subresources, one of
    # host 0's being the HTML's: 3 + 3 + 3 here.
    page = page_load.page_model(HOSTS, RESOURCES)
    per_host = [sum(1 for h, _, _ in page[1:] if h == k) for k in range(HOSTS)]
    want = 1 + sum(min(6, n) for n in per_host) - 1
    for s in setups:
        assert not res[s].get("error"), f"{s}: {res[s]['error']}"
        assert len(res[s]["page_s"]) == 2, res[s]
        assert res[s]["connections"] == [want, want], (s, res[s]["connections"], want)
        # The HTML and then a subresource each cross the network at least once, and nothing
        # comes back before its request's round trip: at least 2 RTT, whatever the machine.
        assert min(res[s]["page_s"]) >= 2 * RTT_MS / 1000, (s, res[s]["page_s"])
        assert min(res[s]["html_s"]) >= RTT_MS / 1000, (s, res[s]["html_s"])
        assert f"| {s} |" in md, md
    # Without a plugin every connection is new: its TCP handshake through the delay proxy,
    # then the request: 2 RTT for the HTML, 2 more for the subresources after it.
    assert min(res["none"]["page_s"]) >= 4 * RTT_MS / 1000, res["none"]
    assert not left, f"processes left running: {left}"


def refuses_a_body_that_is_not_the_origins():
    def wrong(conn):
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHELLO")

    target = ThreadedTarget(wrong)
    try:
        async def one():
            reader, writer = await asyncio.open_connection(HOST, target.port)
            try:
                await page_load.fetch((reader, writer), 0, "/x", 5)
            finally:
                writer.close()
        try:
            asyncio.run(one())
        except page_load.Failed as e:
            assert "/x" in str(e), e
        else:
            raise AssertionError("a wrong body passed")
    finally:
        target.close()


test.check("loads a page through every kind of setup", loads_a_page_through_every_kind_of_setup)
test.check("refuses a body that is not the origin's", refuses_a_body_that_is_not_the_origins)
test.done()
