"""kaminaric `mux=<n>` (Mux.Cool sessions on shared websockets): against kaminaris (200
concurrent short connections and 4 bulk ones byte-exact, half-close both ways, a target that
speaks first, 128 sessions per websocket then a new one, a websocket closed after 16 s without
sessions) and against the real v2ray-plugin server with its default settings (mux on), behind
ss-local/ss-server through SOCKS: 8 MiB downloads, one and 8 in parallel, ws and tls."""

import os
import re
import socket

from harness import (HOST, KAMINARIC, KAMINARIS, EchoServer, Proc, Test, assert_same, exchange,
                     free_port, ss_downloads, wait_port)
from fault_kit import wait_for
from mux_kit import (NEW_LIKE, half_close_both_ways, many_short_and_bulk,
                     sessions_by_connection as websockets_at, start_kaminaric as kaminaric,
                     start_kaminaris, target_speaks_first)
from pki import Pki

test = Test(deadline=400)
WS = "ws;host=example.com;path=/ws"


def kaminaris(target_port, opts=WS):
    return start_kaminaris(target_port, opts)


def ws_pair(target_port):
    s, p = kaminaris(target_port)
    c, cp = kaminaric(p, f"{WS};mux=8")
    return s, c, cp


# --- kaminaric mux=8 -> kaminaris ----------------------------------------------------------------

echo = EchoServer()
srv, srv_port = kaminaris(echo.port)
cli, cli_port = kaminaric(srv_port, f"{WS};mux=8")


def retired_after_128():
    # One worker, mux=1: 130 connections one after another take one websocket for 128
    # sessions, then a second.
    s2, p2 = kaminaris(echo.port)
    c2, cp2 = kaminaric(p2, f"{WS};mux=1;threads=1")
    try:
        # wait_port()'s probe was a session too.
        wait_for(lambda: sum(websockets_at(s2).values()) == 1, 10.0, "the probe's session")
        for i in range(130):
            data = os.urandom(64)
            assert_same(exchange(cp2, data, timeout=20), data, f"connection {i}")
        wait_for(lambda: sum(websockets_at(s2).values()) == 131, 10.0, "131 sessions")
        counts = sorted(websockets_at(s2).values())
        if counts != [3, 128]:
            raise AssertionError(f"sessions per websocket: {counts}")
    finally:
        c2.kill()
        s2.kill()


def burst_rides_open_websocket():
    # One worker, mux=2: two held connections fill the websocket; a third rides it at once
    # (over n while a burst lasts) instead of waiting for a new one, which opens meanwhile
    # and takes the fourth.
    s2, p2 = kaminaris(echo.port)
    c2, cp2 = kaminaric(p2, f"{WS};mux=2;threads=1")
    held = []
    try:
        wait_for(lambda: sum(websockets_at(s2).values()) == 1, 10.0, "the probe's session")
        # Closed at kaminaric too, or the second connection would already find the websocket
        # full, and the third would go to the websocket opened ahead.
        wait_for(lambda: "Mux.Cool session 1 closed" in c2.stderr_text(), 10.0,
                 "the probe's session closed")
        for i in range(3):
            held.append(socket.create_connection((HOST, cp2), timeout=10))
            held[-1].sendall(b"%d" % i)
            assert held[-1].recv(16) == b"%d" % i, f"connection {i}"
        wait_for(lambda: c2.stderr_text().count("Mux.Cool connection open") == 2, 10.0,
                 "a second websocket opened ahead")
        data = os.urandom(1000)
        assert_same(exchange(cp2, data), data, "the fourth connection")
        counts = sorted(websockets_at(s2).values())
        # The first: the probe's session and three; the second: the fourth connection.
        if counts != [1, 4]:
            raise AssertionError(f"sessions per websocket: {counts}")
        for sock in held:
            sock.sendall(b"again")
            got = b""
            while len(got) < 5 and (chunk := sock.recv(16)):
                got += chunk
            assert got == b"again", "a held connection after the burst"
    finally:
        for sock in held:
            sock.close()
        c2.kill()
        s2.kill()


def idle_websocket_closed():
    s2, p2 = kaminaris(echo.port)
    c2, cp2 = kaminaric(p2, f"{WS};mux=8;threads=1")  # one worker: one websocket
    try:
        data = os.urandom(1000)
        assert_same(exchange(cp2, data), data, "one connection")
        wait_for(lambda: "idle for 16 s; closing" in c2.stderr_text(), 25.0,
                 "kaminaric closing the idle websocket")
        wait_for(lambda: re.search(r"Mux\.Cool closed: 2 sessions", s2.stderr_text()), 5.0,
                 "kaminaris seeing it closed (the probe's session and ours)")
        # The next connection opens a new one.
        assert_same(exchange(cp2, data), data, "after the idle close")
    finally:
        c2.kill()
        s2.kill()


def logged_and_server_restart():
    # Each app connection's end is logged with its bytes, as without mux; when kaminaris
    # restarts, the websockets it had end and the next apps get new ones.
    port = free_port()

    def start_server():
        proc = Proc([KAMINARIS, f"{HOST}:{port}", f"{HOST}:{echo.port}", f"{WS};loglevel=debug"])
        wait_port(port, proc=proc)
        return proc
    s2 = start_server()
    c2, cp2 = kaminaric(port, f"{WS};mux=8")
    try:
        data = os.urandom(5000)
        assert_same(exchange(cp2, data), data, "before the restart")
        wait_for(lambda: "closed: 5000 bytes up, 5000 bytes down" in c2.stderr_text(), 5.0,
                 "the app connection's end in kaminaric's log")
        s2.kill()
        s2.wait()
        s2 = start_server()
        for i in range(4):
            data = os.urandom(3000 + i)
            assert_same(exchange(cp2, data), data, f"after the restart, connection {i}")
    finally:
        c2.kill()
        s2.kill()


def plain_kaminaric_never_checked():
    # kaminaric without mux: a stream that starts like a New frame stays a plain stream (only
    # third-party clients are checked for Mux.Cool).
    s2, p2 = kaminaris(echo.port)
    c2, cp2 = kaminaric(p2, WS)
    try:
        data = NEW_LIKE + os.urandom(10000)
        assert_same(exchange(cp2, data), data, "a New-like plain stream")
        if websockets_at(s2):
            raise AssertionError("kaminaric's plain stream was served as Mux.Cool")
    finally:
        c2.kill()
        s2.kill()


def bad_remote():
    # Nothing listens: the app's connection is closed, kaminaric stays up.
    dead = free_port()
    c2, cp2 = kaminaric(dead, f"{WS};mux=8")
    try:
        with socket.create_connection((HOST, cp2), timeout=10) as s:
            s.settimeout(10)
            if s.recv(10) != b"":
                raise AssertionError("data from nowhere")
        wait_for(lambda: "Mux.Cool: no connection to" in c2.stderr_text(), 5.0, "the log line")
        if c2.poll() is not None:
            raise AssertionError("kaminaric exited")
    finally:
        c2.kill()


test.check("kaminaric mux=8 -> kaminaris: 200 short and 4 bulk (8 MiB) connections at once",
           lambda: many_short_and_bulk(cli_port, srv, "websockets"))
test.check("kaminaric mux=8 -> kaminaris: half-close both ways",
           lambda: half_close_both_ways(cli_port, ws_pair))
test.check("kaminaric mux=8 -> kaminaris: a target that speaks first",
           lambda: target_speaks_first(ws_pair))
test.check("kaminaric mux=1: a websocket carries 128 sessions, then a new one", retired_after_128)
test.check("kaminaric mux=2: a burst rides the open websocket while another opens",
           burst_rides_open_websocket)
test.check("kaminaric mux=8: a websocket without sessions for 16 s is closed",
           idle_websocket_closed)
test.check("kaminaric mux=8: ends logged with their bytes; kaminaris restarted, apps go on",
           logged_and_server_restart)
test.check("kaminaric mux=8: the server is down: the app is closed, kaminaric stays", bad_remote)
test.check("kaminaric without mux: a stream like a New frame stays plain",
           plain_kaminaric_never_checked)
test.check("kaminaric: SIGTERM exits 0", lambda: cli.stop() == 0 or (_ for _ in ()).throw(
    AssertionError("exit code")))
srv.kill()
echo.close()


# --- ss-local + kaminaric -> ss-server + v2ray-plugin server (default: mux on) -----------------

pki = Pki()
cert = pki.server()


def ss_mode(name, client_opts, server_opts):
    def used_mux(client, server):
        if "as Mux.Cool session" not in client.stderr_text():
            raise AssertionError("kaminaric did not use Mux.Cool")
        if "invalid metalen" in server.stderr_text():
            raise AssertionError("v2ray-plugin could not read the frames")
    # kaminaric is slow to start under the sanitizers.
    ss_downloads(test, f"kaminaric {name}", KAMINARIC, client_opts + ";loglevel=debug",
                 "ss-v2ray-plugin", server_opts,
                 lambda log: "kaminaric INFO listen:" in log, used_mux)


V2RAY_SERVER = "server;host=example.com;path=/ws"
V2RAY_TLS = f"{V2RAY_SERVER};tls;cert={cert.cert};key={cert.key}"
ss_mode("mux=1 -> v2ray-plugin server", f"{WS};mux=1", V2RAY_SERVER)
ss_mode("mux=8 -> v2ray-plugin server", f"{WS};mux=8", V2RAY_SERVER)
ss_mode("mux=8 wss alpn=http/1.1 -> v2ray-plugin tls server",
        f"{WS};tls;ca={pki.ca};mux=8;alpn=http/1.1", V2RAY_TLS)
ss_mode("mux=8 wss (no alpn) -> v2ray-plugin tls server", f"{WS};tls;ca={pki.ca};mux=8",
        V2RAY_TLS)

test.done()
