"""scripts/demo.sh against the binaries named by KAMINARIC and KAMINARIS (the installed
/usr/bin ones, from test_package.py): an echo target, kaminaris in front of it, kaminaric in
front of kaminaris, all on 127.0.0.1, 32 MiB through ws and 1 MiB through wss, byte-exact."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))

from harness import (KAMINARIC, KAMINARIS, EchoServer, Test, Tunnel,  # noqa: E402
                     assert_same, exchange)

test = Test(deadline=150)
MODES = {
    "ws": ("ws;host=example.com;path=/ws", "ws;host=example.com;path=/ws"),
    "wss": ("ws;host=example.com;path=/ws;tls;sni=example.com;insecure",
            "ws;host=example.com;path=/ws;tls;servername=example.com"),
}


def demo(mode, size):
    assert os.path.isabs(KAMINARIC) and os.path.isabs(KAMINARIS), (KAMINARIC, KAMINARIS)
    echo = EchoServer()
    client_opts, server_opts = MODES[mode]
    t = Tunnel(client_opts, server_opts, echo.port)
    data = os.urandom(size)
    start = time.monotonic()
    got = exchange(t.client_port, data, timeout=120)
    secs = time.monotonic() - start
    assert_same(got, data, f"{mode} through {KAMINARIC} and {KAMINARIS}")
    print(f"     demo {mode}: {size} bytes through the tunnel and back in {secs:.2f}s, "
          f"byte-exact", flush=True)
    t.close()
    echo.close()


test.check(f"ws demo, 32 MiB, {KAMINARIC} + {KAMINARIS}", demo, "ws",
           int(os.environ.get("KAMINARI_DEMO_BYTES", str(32 << 20))))
test.check("wss, 1 MiB", demo, "wss", 1 << 20)
test.done()
