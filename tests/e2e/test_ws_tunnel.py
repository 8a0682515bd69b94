"""Websocket mode kaminaric -> kaminaris in every mask mode: 64 MiB byte-exact each."""

from harness import Test
from tunnel_suite import remote_down, run_suite

WS = "ws;host=example.com;path=/ws"
test = Test(deadline=400)
for mode in ("skip", "fixed", "standard"):
    run_suite(test, f"ws mask={mode}", f"{WS};mask={mode}", WS,
              connections=100 if mode == "skip" else 30)
remote_down(test, "ws", WS, WS)
test.done()
