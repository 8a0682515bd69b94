"""100 000 short ws tunnel connections in a row without RSS growth or descriptor leaks."""

from fault_kit import WS
from harness import Test
from scale_suite import SHORT, raise_limit_or_skip, short_connections

raise_limit_or_skip()
test = Test(deadline=240)
test.check(f"ws: {SHORT} short connections, no RSS growth, no descriptor leak",
           short_connections, WS)
test.done()
