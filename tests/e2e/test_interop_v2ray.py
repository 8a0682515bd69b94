"""The v2ray-plugin client (ss-v2ray-plugin, websocket mode, mux=0) against kaminaris."""

from harness import HOST, Proc, Test
from tunnel_suite import run_suite

test = Test(deadline=300)


def v2ray_client(listen_port, remote_port):
    return Proc(["ss-v2ray-plugin"], env={
        "SS_LOCAL_HOST": HOST, "SS_LOCAL_PORT": str(listen_port),
        "SS_REMOTE_HOST": HOST, "SS_REMOTE_PORT": str(remote_port),
        "SS_PLUGIN_OPTIONS": "mux=0;host=example.com;path=/ws"})


run_suite(test, "v2ray-plugin client", "", "ws;host=example.com;path=/ws", big=16 << 20,
          connections=50, client=v2ray_client)
test.done()
