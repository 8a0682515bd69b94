"""kaminaric -> HAProxy (http mode, websocket tunnel) -> kaminaris -> echo, every mask mode."""

from harness import Test
from proxies import start_haproxy
from tunnel_suite import run_suite

WS = "ws;host=example.com;path=/ws"
test = Test(deadline=400)
started = []


def front(port):
    proc, listen = start_haproxy(port)
    started.append(proc)
    return listen


for mode in ("skip", "fixed", "standard"):
    run_suite(test, f"haproxy mask={mode}", f"{WS};mask={mode}", WS, big=16 << 20,
              connections=50, front=front)
for proc in started:
    proc.stop()
test.done()
