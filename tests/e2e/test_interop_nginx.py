"""kaminaric -> nginx (websocket reverse proxy) -> kaminaris -> echo, every mask mode."""

from harness import Test
from proxies import start_nginx
from tunnel_suite import run_suite

WS = "ws;host=example.com;path=/ws"
test = Test(deadline=400)
started = []


def front(port):
    proc, listen = start_nginx(port)
    started.append(proc)
    return listen


for mode in ("skip", "fixed", "standard"):
    run_suite(test, f"nginx mask={mode}", f"{WS};mask={mode}", WS, big=16 << 20,
              connections=50, front=front)
for proc in started:
    proc.stop()
test.done()
