"""2000 concurrent ws tunnels held idle, then all byte-exact; 100 000 short tcp connections in
a row without RSS growth or descriptor leaks (the ws run is test_churn_ws.py)."""

from harness import Test
from scale_suite import CONCURRENT, SHORT, concurrent_idle_then_busy, raise_limit_or_skip, \
    short_connections

raise_limit_or_skip()
test = Test(deadline=240)
test.check(f"ws: {CONCURRENT} concurrent tunnels idle, then byte-exact",
           concurrent_idle_then_busy)
test.check(f"tcp: {SHORT} short connections, no RSS growth, no descriptor leak",
           short_connections, "")
test.done()
