"""Plain TCP mode: kaminaric -> kaminaris -> echo, on 127.0.0.1 and ::1."""

from harness import Test
from tunnel_suite import remote_down, run_suite

test = Test(deadline=300)
run_suite(test, "tcp", "", "")
run_suite(test, "tcp ::1", "", "", big=1 << 20, host="::1", connections=10)
remote_down(test, "tcp", "", "")
test.done()
