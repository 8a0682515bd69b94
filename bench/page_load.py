#!/usr/bin/env python3
"""Page-load benchmark: what a browser behind shadowsocks feels, at a real round-trip time.

    python3 bench/page_load.py [--rtt-ms 100] [--rounds 3] [--loads 5] [--setups a,b,...]
                               [--kaminaric PATH --kaminaris PATH] [--out DIR]

A page is one HTML document (from host 0) and then its subresources, fetched as a browser
fetches them: HTTP/1.1 with keep-alive, at most 6 connections per host, a fresh set of
connections per page load; by default 60 resources from 10 hosts (--hosts, --resources), of
1 to 64 KiB each (the same sizes every load). Each host is a port of an origin process on
loopback; the browser reaches them through SOCKS5 at ss-local (shadowsocks-libev), which
sends them to ss-server through the setup's SIP003 plugin pair, or straight for `none`.
Between the plugin client and the plugin server (the network) runs tests/e2e/delay_proxy.py:
half of --rtt-ms each way, and one round trip for each new TCP connection's handshake. The
page load time runs from the browser's first connect to the last byte of the last resource;
every body is checked byte for byte. Each round starts every setup in turn (the order reversed
every other round), loads the page once to warm it up (TLS sessions cached, pools filled),
then --loads times, --gap seconds apart (pools refill, mux links stay open). Prints a markdown
table of the medians over all rounds (page load time, in ms and in round trips, and the first
HTML byte), and writes page_load.json and page_load.md to --out when given.

Setups: `none` (shadowsocks alone), `v2ray` (ss-v2ray-plugin in websocket mode with its
default mux, which reuses a websocket for connections that come one after another), and
kaminari's: ws (as a plugin kaminaric sends websocket early data unless told otherwise),
ws-ed0 (ed=0), ws-pool (pool=8), ws-poolmax (pool=8;pool_max=64), ws-mux (mux=8), wss,
wss-ed0, wss-0rtt (0rtt), wss-pool, wss-poolmax, wss-mux, tls, tls-poolmax, tls-mux."""

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DELAY_PROXY = os.path.join(REPO, "tests", "e2e", "delay_proxy.py")
sys.path.insert(0, os.path.dirname(DELAY_PROXY))
from harness import free_port  # noqa: E402 (never the same port twice)
METHOD = "chacha20-ietf-poly1305"
PASSWORD = "kaminari-page-load"
PER_HOST = 6  # a browser's HTTP/1.1 connections per host

WS = "ws;host=bench.example;path=/ws"
TLS_C = "tls;sni=bench.example;insecure"
TLS_S = "tls;servername=bench.example"
# name -> (plugin, client options, server options); plugin None: shadowsocks alone.
SETUPS = {
    "none": (None, "", ""),
    "v2ray": ("ss-v2ray-plugin", "host=bench.example;path=/ws",
              "server;host=bench.example;path=/ws"),
    "ws": ("kaminari", WS, WS),  # as a plugin: ed=2048 unless told otherwise
    "ws-ed0": ("kaminari", WS + ";ed=0", WS),
    "ws-pool": ("kaminari", WS + ";pool=8", WS),
    "ws-poolmax": ("kaminari", WS + ";pool=8;pool_max=64", WS),
    "ws-mux": ("kaminari", WS + ";mux=8", WS),
    "wss": ("kaminari", f"{WS};{TLS_C}", f"{WS};{TLS_S}"),
    "wss-ed0": ("kaminari", f"{WS};{TLS_C};ed=0", f"{WS};{TLS_S}"),
    "wss-0rtt": ("kaminari", f"{WS};{TLS_C};0rtt", f"{WS};{TLS_S}"),
    "wss-pool": ("kaminari", f"{WS};{TLS_C};pool=8", f"{WS};{TLS_S}"),
    "wss-poolmax": ("kaminari", f"{WS};{TLS_C};pool=8;pool_max=64", f"{WS};{TLS_S}"),
    "wss-mux": ("kaminari", f"{WS};{TLS_C};mux=8", f"{WS};{TLS_S}"),
    "tls": ("kaminari", TLS_C, TLS_S),
    "tls-poolmax": ("kaminari", TLS_C + ";pool=8;pool_max=64", TLS_S),
    "tls-mux": ("kaminari", TLS_C + ";mux=8", TLS_S),
}


class Failed(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# The page and its origin

def page_model(hosts, resources, seed=1):
    """[(host index, path, size)]: the HTML first (host 0, 32 KiB), then resources - 1
    subresources spread over the hosts in turn, sizes log-uniform in 1..64 KiB."""
    rnd = random.Random(seed)
    page = [(0, "/index.html", 32 << 10)]
    for i in range(resources - 1):
        size = int(2 ** rnd.uniform(10, 16))
        page.append(((i + 1) % hosts, f"/r{i}.bin", size))
    return page


def body(host, path, size):
    unit = f"{host}{path}|".encode()
    return (unit * (size // len(unit) + 1))[:size]


async def serve_origin(reader, writer, host):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            size = int(path.split("?s=", 1)[1])
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size +
                         body(host, path.split("?", 1)[0], size))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, IndexError, ValueError):
        pass
    finally:
        writer.close()


async def origin_main(hosts):
    servers = []
    for h in range(hosts):
        servers.append(await asyncio.start_server(
            lambda r, w, h=h: serve_origin(r, w, h), HOST, 0))
    print(" ".join(str(s.sockets[0].getsockname()[1]) for s in servers), flush=True)
    await asyncio.Event().wait()


# ---------------------------------------------------------------------------------------------
# The browser

async def socks_open(socks_port, port):
    reader, writer = await asyncio.open_connection(HOST, socks_port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    writer.write(b"\x05\x01\x00")
    if await reader.readexactly(2) != b"\x05\x00":
        raise Failed("SOCKS5: no method accepted")
    writer.write(b"\x05\x01\x00\x01" + socket.inet_aton(HOST) + port.to_bytes(2, "big"))
    reply = await reader.readexactly(10)
    if reply[1] != 0:
        raise Failed(f"SOCKS5: connect refused ({reply[1]})")
    return reader, writer


async def fetch(conn, host, path, size, marks=None):
    reader, writer = conn
    writer.write(f"GET {path}?s={size} HTTP/1.1\r\nHost: host{host}.example\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if marks is not None:
        marks.append(time.monotonic())
    length = None
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length != size:
        raise Failed(f"host {host} {path}: Content-Length {length}, not the {size} it sent")
    got = await reader.readexactly(length)
    if got != body(host, path, size):
        raise Failed(f"host {host} {path}: the {size} bytes are not the ones it sent")
    return size


async def load_page(socks_port, ports, page):
    """Loads the page once; returns (seconds, seconds to the HTML's first byte, connections)."""
    t0 = time.monotonic()
    opened = [0]
    conns = []

    async def connect(host):
        conn = await socks_open(socks_port, ports[host])
        opened[0] += 1
        conns.append(conn)
        return conn

    try:
        first = []
        html = page[0]
        html_conn = await connect(html[0])
        await fetch(html_conn, *html, marks=first)
        queues = {}
        for item in page[1:]:
            queues.setdefault(item[0], []).append(item)

        async def worker(host, conn):
            queue = queues[host]
            while queue:
                item = queue.pop(0)
                if conn is None:
                    conn = await connect(host)
                await fetch(conn, *item)

        workers = []
        for host, queue in queues.items():
            for k in range(min(PER_HOST, len(queue))):
                reuse = html_conn if host == html[0] and k == 0 else None
                workers.append(worker(host, reuse))
        await asyncio.gather(*workers)
        return time.monotonic() - t0, first[0] - t0, opened[0]
    finally:
        for _, writer in conns:
            writer.close()


# ---------------------------------------------------------------------------------------------
# Processes

class Procs:
    """Every process started, each in a session of its own (ss-local and ss-server start their
    plugins as children): stop() ends the whole group. Each has KAMINARI_PAGE_LOAD=<this
    process's pid> in its environment, and so do the plugins they start."""

    def __init__(self):
        self.procs = []

    def start(self, argv, **kw):
        # The marker reaches the plugins too (ss-local and ss-server pass on their environment).
        env = dict(os.environ, KAMINARI_PAGE_LOAD=str(os.getpid()))
        p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, start_new_session=True,
                             **kw)
        self.procs.append(p)
        return p

    def stop(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        end = time.monotonic() + 5
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:  # the group: plugins outlive a host killed hard
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        for p in self.procs:  # until the groups' last members are gone
            while time.monotonic() < end + 2:
                try:
                    os.killpg(p.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.01)
        self.procs = []


def wait_port(port, proc, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise Failed(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise Failed(f"{proc.args[0]}: port {port} not open after {timeout} s")


def plugin_args(name, exes, role):
    plugin, client_opts, server_opts = SETUPS[name]
    if plugin is None:
        return []
    exe = exes[role] if plugin == "kaminari" else plugin
    return ["--plugin", exe, "--plugin-opts", client_opts if role == "client" else server_opts]


def start_setup(procs, name, exes, rtt_ms, log):
    """ss-server (with the plugin's server), the delay proxy in front of it, ss-local (with
    the plugin's client) pointed at the delay proxy; returns the SOCKS5 port."""
    public, socks = free_port(), free_port()
    ss = ["-k", PASSWORD, "-m", METHOD]
    server = procs.start(["ss-server", "-s", HOST, "-p", str(public)] + ss +
                         plugin_args(name, exes, "server"), stdout=log, stderr=log)
    wait_port(public, server)
    delay = procs.start([sys.executable, DELAY_PROXY, str(rtt_ms / 2), str(public)],
                        stdout=subprocess.PIPE, stderr=log, text=True)
    line = ""
    while not line.startswith("listening"):
        line = delay.stdout.readline()
        if not line:
            raise Failed("delay proxy exited before listening")
    network = int(line.split()[1])
    # What it prints from now on (a line per TCP Fast Open connection, or every chunk with
    # DELAY_PROXY_TRACE=1) goes to the log: a pipe nobody reads would stop it.
    threading.Thread(target=lambda: [log.write(x) for x in delay.stdout], daemon=True).start()
    client = procs.start(["ss-local", "-s", HOST, "-p", str(network), "-l", str(socks),
                          "-b", HOST] + ss + plugin_args(name, exes, "client"),
                         stdout=log, stderr=log)
    wait_port(socks, client)
    return socks


async def ready(socks_port, origin_port, timeout=10.0):
    """Waits until a fetch through the setup works: ss-local listens before its plugin does,
    and until the plugin listens ss-local drops what the browser sends it."""
    end = time.monotonic() + timeout
    while True:
        conn = None
        try:
            conn = await socks_open(socks_port, origin_port)
            await fetch(conn, 0, "/ready", 16)
            return
        except (Failed, OSError, ValueError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError):
            if time.monotonic() > end:
                raise Failed(f"no fetch through the setup within {timeout:g} s") from None
            await asyncio.sleep(0.05)
        finally:
            if conn is not None:
                conn[1].close()


# ---------------------------------------------------------------------------------------------

def median(xs):
    return statistics.median(xs) if xs else float("nan")


def table(results, rtt_ms):
    rows = ["| setup | page load ms | range | round trips | first HTML byte ms | "
            "connections per page |",
            "|---|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        if r.get("error"):
            rows.append(f"| {name} | failed: {r['error']} | | | | |")
            continue
        ms = [1000 * x for x in r["page_s"]]
        rows.append(f"| {name} | {median(ms):.0f} | {min(ms):.0f}–{max(ms):.0f} | "
                    f"{median(ms) / rtt_ms:.1f} | {1000 * median(r['html_s']):.0f} | "
                    f"{median(r['connections']):.0f} |")
    return "\n".join(rows)


def on_sigterm(*_):
    """Stops what it started (the `finally` blocks below); a second SIGTERM does not cut
    that short."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(143)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rtt-ms", type=float, default=100.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loads", type=int, default=5, help="page loads per setup and round")
    ap.add_argument("--gap", type=float, default=2.0, help="seconds between page loads")
    ap.add_argument("--hosts", type=int, default=10)
    ap.add_argument("--resources", type=int, default=60, help="the HTML included")
    ap.add_argument("--setups", default=",".join(SETUPS))
    ap.add_argument("--kaminaric", default=os.environ.get("KAMINARIC"),
                    help="default: $KAMINARIC, else build-bench/, build-rel/ or build/ of the "
                         "repository, the first that has both programs")
    ap.add_argument("--kaminaris", default=os.environ.get("KAMINARIS"))
    ap.add_argument("--out", help="directory for page_load.json and page_load.md")
    ap.add_argument("--origin", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    if args.origin:
        asyncio.run(origin_main(args.origin))
        return 0
    setups = [s for s in args.setups.split(",") if s]
    unknown = [s for s in setups if s not in SETUPS]
    if unknown or args.hosts < 1 or args.resources < 1 or args.rounds < 1 or args.loads < 1:
        ap.error(f"unknown setup {unknown[0]}" if unknown else "counts must be at least 1")
    if not (args.kaminaric and args.kaminaris):
        built = next((os.path.join(REPO, d) for d in ("build-bench", "build-rel", "build")
                      if all(os.access(os.path.join(REPO, d, e), os.X_OK)
                             for e in ("kaminaric", "kaminaris"))), None)
        if built:
            args.kaminaric = args.kaminaric or os.path.join(built, "kaminaric")
            args.kaminaris = args.kaminaris or os.path.join(built, "kaminaris")
    exes = {"client": args.kaminaric, "server": args.kaminaris}
    needs = {"ss-local", "ss-server"} | {SETUPS[s][0] for s in setups if SETUPS[s][0]}
    for exe in needs - {"kaminari"}:
        if not any(os.access(os.path.join(d, exe), os.X_OK)
                   for d in os.environ.get("PATH", "").split(":")):
            ap.error(f"{exe} not found (bash scripts/setup.sh bench installs it)")
    if "kaminari" in needs and not all(e and os.access(e, os.X_OK) for e in exes.values()):
        ap.error("no kaminaric and kaminaris: build first, or give --kaminaric and --kaminaris")

    page = page_model(args.hosts, args.resources)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "page_load.log") if args.out else os.devnull, "w")
    base = Procs()
    results = {s: {"page_s": [], "html_s": [], "connections": []} for s in setups}
    try:
        origin = base.start([sys.executable, os.path.abspath(__file__), "--origin",
                             str(args.hosts)], stdout=subprocess.PIPE, text=True)
        ports = [int(p) for p in origin.stdout.readline().split()]
        if len(ports) != args.hosts:
            raise Failed("origin did not start")
        for rnd in range(args.rounds):
            for name in (setups if rnd % 2 == 0 else setups[::-1]):
                r = results[name]
                if r.get("error"):
                    continue
                procs = Procs()
                try:
                    socks = start_setup(procs, name, exes, args.rtt_ms, log)
                    asyncio.run(ready(socks, ports[0]))
                    asyncio.run(asyncio.wait_for(load_page(socks, ports, page), 60))
                    for _ in range(args.loads):
                        time.sleep(args.gap)
                        secs, html, conns = asyncio.run(
                            asyncio.wait_for(load_page(socks, ports, page), 60))
                        r["page_s"].append(secs)
                        r["html_s"].append(html)
                        r["connections"].append(conns)
                except (Failed, OSError, ValueError, asyncio.TimeoutError,
                        asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
                    r["error"] = str(e) or type(e).__name__
                finally:
                    procs.stop()
                done = len(r["page_s"])
                print(f"round {rnd + 1} {name}: " + (
                    f"failed: {r['error']}" if r.get("error") else
                    f"median {1000 * median(r['page_s'][done - args.loads:]):.0f} ms"),
                    file=sys.stderr, flush=True)
    finally:
        base.stop()
    md = (f"Page load through shadowsocks at {args.rtt_ms:g} ms RTT: {args.resources} resources "
          f"from {args.hosts} hosts, {sum(p[2] for p in page) >> 10} KiB; medians of "
          f"{args.rounds} x {args.loads} loads.\n\n" + table(results, args.rtt_ms))
    print(md)
    if args.out:
        with open(os.path.join(args.out, "page_load.md"), "w") as f:
            f.write(md + "\n")
        with open(os.path.join(args.out, "page_load.json"), "w") as f:
            json.dump({"rtt_ms": args.rtt_ms, "hosts": args.hosts, "resources": args.resources,
                       "rounds": args.rounds, "loads": args.loads, "results": results}, f,
                      indent=1)
    return 1 if any(r.get("error") for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
