"""`metrics=<ip:port>`: both programs serve Prometheus metrics. Scraped with a real Prometheus
client parser (python3-prometheus-client) before and after known traffic: accepted and closed
connections, bytes each way (early data in a warm websocket's upgrade request included),
refusals at max_conns, failed websocket handshakes and connects, the active gauge, a pool's
takes (warm or dialed); anything but `GET /metrics` gets 404."""

import os
import socket
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from harness import (HOST, KAMINARIC, KAMINARIS, EchoServer, Proc, Test, addr, assert_same,
                     exchange, free_port, wait_port)

test = Test(deadline=120)
WS = "ws;host=example.com;path=/ws"
echo = EchoServer()

s_metrics, c_metrics = free_port(), free_port()
s_port, c_port = free_port(), free_port()
server = Proc([KAMINARIS, addr(HOST, s_port), addr(HOST, echo.port),
               f"{WS};metrics={addr(HOST, s_metrics)}"])
wait_port(s_port, proc=server)
client = Proc([KAMINARIC, addr(HOST, c_port), addr(HOST, s_port),
               f"{WS};metrics={addr(HOST, c_metrics)};max_conns=3"])
wait_port(c_port, proc=client)
wait_port(s_metrics, proc=server)
wait_port(c_metrics, proc=client)


def scrape(port):
    """{(name, frozenset(extra labels)): value} from one scrape."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as r:
        if r.status != 200 or not r.headers["Content-Type"].startswith("text/plain"):
            raise AssertionError(f"status {r.status}, {r.headers['Content-Type']}")
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            for must in ("program", "transport"):
                if must not in labels:
                    raise AssertionError(f"{sample.name} without a {must} label")
            if labels["transport"] != "ws":
                raise AssertionError(f"transport label {labels['transport']}")
            rest = frozenset((k, v) for k, v in labels.items() if k not in ("program", "transport"))
            out[(sample.name, rest)] = sample.value
    return out


ACTIVE = ("kaminari_connections_active", frozenset())


def settled(port, ok, what, timeout=10.0):
    """Scrapes `port` until ok(scrape) holds, and returns that scrape: a connection is counted
    when its relay ends, which can be a while after its app has seen the end (more so on a
    loaded machine), so a fixed pause before scraping would be a guess."""
    end = time.monotonic() + timeout
    while True:
        got = scrape(port)
        if ok(got):
            return got
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not so after {timeout}s")
        time.sleep(0.02)


def idle(port):
    """A scrape once no connection is active (the start-up probes' or a check's own)."""
    return settled(port, lambda m: m.get(ACTIVE) == 0, f"no connection active on :{port}")


def delta(before, after, name, **labels):
    key = (name, frozenset(labels.items()))
    if key not in after:
        raise AssertionError(f"no series {key}: {sorted(after)}")
    return after[key] - before.get(key, 0)


def counts_traffic():
    # The start-up probes' connections (wait_port) have ended: kaminaric's goes on to kaminaris,
    # which may not have accepted it yet when both count none active.
    time.sleep(0.5)
    before_s, before_c = idle(s_metrics), idle(c_metrics)
    sent = 0
    for i in range(20):
        data = os.urandom(1000 * (i + 1))
        assert_same(exchange(c_port, data), data, f"connection {i}")
        sent += len(data)
    closed = "kaminari_connections_closed_total"
    after_s, after_c = (
        settled(port, lambda m, b=b: m.get(ACTIVE) == 0 and delta(b, m, closed) >= 20,
                "the 20 connections' ends counted")
        for port, b in ((s_metrics, before_s), (c_metrics, before_c)))
    for name, b, a in (("kaminaric", before_c, after_c), ("kaminaris", before_s, after_s)):
        got = {
            "accepted": delta(b, a, "kaminari_connections_accepted_total"),
            "closed": delta(b, a, "kaminari_connections_closed_total"),
            "up": delta(b, a, "kaminari_bytes_total", direction="upstream"),
            "down": delta(b, a, "kaminari_bytes_total", direction="downstream"),
        }
        want = {"accepted": 20, "closed": 20, "up": sent, "down": sent}
        if got != want:
            raise AssertionError(f"{name}: {got}, expected {want}")
        if a[ACTIVE] != 0:
            raise AssertionError(f"{name}: active {a[ACTIVE]}")


def counts_refusals_and_failures():
    before_s, before_c = idle(s_metrics), idle(c_metrics)
    # max_conns=3 on kaminaric: 3 held open, the 4th and 5th refused.
    held = [socket.create_connection((HOST, c_port), timeout=10) for _ in range(3)]
    active = settled(c_metrics, lambda m: m.get(ACTIVE) == 3, "3 connections active")[ACTIVE]
    extra = [socket.create_connection((HOST, c_port), timeout=10) for _ in range(2)]
    for s in extra:
        if s.recv(1) != b"":
            raise AssertionError("a connection over max_conns was served")
        s.close()
    for s in held:
        s.close()
    # A websocket request for another path: a failed handshake at kaminaris.
    with socket.create_connection((HOST, s_port), timeout=10) as s:
        s.sendall(b"GET /nope HTTP/1.1\r\nHost: example.com\r\n\r\n")
        s.recv(4096)
    refused = "kaminari_connections_refused_total"
    failures = "kaminari_handshake_failures_total"
    after_c = settled(c_metrics, lambda m: delta(before_c, m, refused) >= 2, "2 refusals counted")
    after_s = settled(s_metrics,
                      lambda m: delta(before_s, m, failures, kind="websocket") >= 1,
                      "the failed websocket handshake counted")
    if active != 3:
        raise AssertionError(f"active gauge {active} with 3 connections held")
    if delta(before_c, after_c, "kaminari_connections_refused_total") != 2:
        raise AssertionError(f"refused: {delta(before_c, after_c, 'kaminari_connections_refused_total')}")
    if delta(before_s, after_s, "kaminari_handshake_failures_total", kind="websocket") != 1:
        raise AssertionError("websocket handshake failure not counted")


def poke(port):
    """One app connection that sends a byte to kaminaric and waits for it to close."""
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.sendall(b"x")
        try:
            s.recv(1)
        except ConnectionResetError:
            pass  # closed with the byte unread


def counts_connect_failures():
    # kaminaric towards a port where nothing listens: every connect fails.
    dead, port, mport = free_port(), free_port(), free_port()
    bad = Proc([KAMINARIC, addr(HOST, port), addr(HOST, dead),
                f"{WS};metrics={addr(HOST, mport)}"])
    try:
        wait_port(mport, proc=bad)
        wait_port(port, proc=bad)  # a connection of its own: its connect fails too
        key = ("kaminari_handshake_failures_total", frozenset({("kind", "connect")}))
        first = settled(mport, lambda m: m.get(key, 0) >= 1 and m.get(ACTIVE) == 0,
                        "the probe's failed connect counted")[key]
        for _ in range(2):
            poke(port)
        got = settled(mport, lambda m: m.get(key, 0) - first >= 2 and m.get(ACTIVE) == 0,
                      "2 more failed connects counted")[key]
        if got - first != 2:
            raise AssertionError(f"connect failures counted: {got - first}, expected 2")
    finally:
        bad.stop()


def counts_early_data_of_warm_connections():
    """A warm websocket (pool=) whose upgrade request carries the app's first bytes (ed): those
    bytes count as upstream like the rest, on both sides."""
    metrics_port, port = free_port(), free_port()
    warm = Proc([KAMINARIC, addr(HOST, port), addr(HOST, s_port),
                 f"{WS};pool=2;ed=2048;loglevel=debug;metrics={addr(HOST, metrics_port)}"])
    try:
        wait_port(port, proc=warm)
        wait_port(metrics_port, proc=warm)
        time.sleep(0.5)  # the probes have ended; the pool is full again
        # (Not idle(): kaminaris counts the ready websockets as active.)
        before_s, before_c = scrape(s_metrics), scrape(metrics_port)
        sent = 0
        for i in range(5):
            data = os.urandom(500 + i)
            assert_same(exchange(port, data), data, f"connection {i}")
            sent += len(data)
            time.sleep(0.05)  # the taken connection is replaced
        up = "kaminari_bytes_total"
        after_s, after_c = (
            settled(p, lambda m, b=b: delta(b, m, up, direction="upstream") >= sent,
                    "the bytes up counted")
            for p, b in ((s_metrics, before_s), (metrics_port, before_c)))
        log = warm.stderr_text()
        if log.count("on a warm connection") < 5 or "websocket early data" not in log:
            raise AssertionError("not on warm connections with early data\n" + log[-3000:])
        takes = {r: delta(before_c, after_c, "kaminari_pool_takes_total", result=r)
                 for r in ("warm", "dialed")}
        if takes != {"warm": 5, "dialed": 0}:
            raise AssertionError(f"pool takes counted: {takes}, expected 5 warm")
        if any(name.startswith("kaminari_pool_") for name, _ in after_s):
            raise AssertionError("kaminaris has pool series")
        for name, b, a in (("kaminaric", before_c, after_c), ("kaminaris", before_s, after_s)):
            up = delta(b, a, "kaminari_bytes_total", direction="upstream")
            if up != sent:
                raise AssertionError(f"{name}: {up} bytes upstream counted, {sent} sent")
    finally:
        if warm.stop() != 0:
            raise AssertionError("the pool client did not exit 0 on SIGTERM")


def counts_dialed_when_no_pool_connection_is_ready():
    """pool= towards a server that is down: the pool never fills, so every app connection
    counts as dialed (and its connect as failed)."""
    dead, port, mport = free_port(), free_port(), free_port()
    bad = Proc([KAMINARIC, addr(HOST, port), addr(HOST, dead),
                f"{WS};pool=4;metrics={addr(HOST, mport)}"])
    try:
        wait_port(mport, proc=bad)
        wait_port(port, proc=bad)
        time.sleep(0.3)  # the probe's connection is accepted (then idle() sees it end)
        before = idle(mport)
        for _ in range(3):
            poke(port)
        takes_total = lambda m: sum(delta(before, m, "kaminari_pool_takes_total", result=r)
                                    for r in ("warm", "dialed"))
        after = settled(mport, lambda m: takes_total(m) >= 3 and m.get(ACTIVE) == 0,
                        "3 takes counted")
        takes = {r: delta(before, after, "kaminari_pool_takes_total", result=r)
                 for r in ("warm", "dialed")}
        if takes != {"warm": 0, "dialed": 3}:
            raise AssertionError(f"pool takes counted: {takes}, expected 3 dialed")
    finally:
        bad.stop()


def other_paths_404():
    for path in ("/", "/metricsx", "/other"):
        try:
            urllib.request.urlopen(f"http://{HOST}:{s_metrics}{path}", timeout=10)
        except urllib.error.HTTPError as e:
            if e.code != 404:
                raise AssertionError(f"{path}: {e.code}")
        else:
            raise AssertionError(f"{path}: not 404")


test.check("20 connections: accepted, closed and bytes each way counted on both sides",
           counts_traffic)
test.check("max_conns refusals, the active gauge and a failed websocket handshake counted",
           counts_refusals_and_failures)
test.check("a failed connect to the remote counted", counts_connect_failures)
test.check("early data on warm websockets counted as upstream bytes",
           counts_early_data_of_warm_connections)
test.check("with pool=, app connections without a ready connection counted as dialed",
           counts_dialed_when_no_pool_connection_is_ready)
test.check("anything but GET /metrics gets 404", other_paths_404)
test.check("kaminaric SIGTERM exits 0", lambda: client.stop() == 0 or 1 / 0)
test.check("kaminaris SIGTERM exits 0", lambda: server.stop() == 0 or 1 / 0)
echo.close()
test.done()
