"""kaminaric `ed` through nginx and HAProxy in front of kaminaris: both pass
Sec-WebSocket-Protocol through in the request and back in the 101, so the early data is taken
(kaminaris logs it) and echoed (kaminaric does not resend); byte-exact, plus the tunnel suite
with `ed` on."""

import os
import re

from early_data_kit import exchange_now
from harness import EchoServer, Test, Tunnel, assert_same
from proxies import start_haproxy, start_nginx
from tunnel_suite import run_suite

WS = "ws;host=example.com;path=/ws"
ED = 2048
test = Test(deadline=400)
started = []


def front_with(start_proxy):
    def front(port):
        proc, listen = start_proxy(port)
        started.append(proc)
        return listen
    return front


for name, start_proxy in (("nginx", start_nginx), ("haproxy", start_haproxy)):
    def carried(name=name, start_proxy=start_proxy):
        echo = EchoServer()
        try:
            tunnel = Tunnel(f"{WS};ed={ED};loglevel=debug", f"{WS};loglevel=debug", echo.port,
                            front=front_with(start_proxy))
        except Exception:
            echo.close()
            raise
        try:
            sizes = (ED + 1, ED, ED - 1, 1, 1 << 20, 0)
            for size in sizes:
                data = os.urandom(size)
                assert_same(exchange_now(tunnel.client_port, data), data, f"{name}: {size} bytes")
            taken = sorted(int(n) for n in re.findall(r"websocket early data: (\d+) bytes\n",
                                                      tunnel.server.stderr_text()))
            want = sorted(min(s, ED) for s in sizes if s)
            if taken != want:
                raise AssertionError(f"kaminaris took {taken}, want {want}\n{tunnel.logs()}")
            if "not echoed" in tunnel.client.stderr_text():
                raise AssertionError(f"{name} dropped the echo\n{tunnel.logs()}")
            tunnel.close()
        finally:
            echo.close()
            for p in (tunnel.client, tunnel.server):
                if p.poll() is None:
                    p.kill()

    test.check(f"{name}: kaminaric ed={ED} -> kaminaris, early data passed through and "
               "echoed, byte-exact", carried)
    run_suite(test, f"{name} ed={ED}", f"{WS};ed={ED}", WS, big=8 << 20, connections=50,
              front=front_with(start_proxy))

for proc in started:
    proc.stop()
test.done()
