#!/usr/bin/env bash
# The main job on loopback: an echo target, kaminaris in front of it, kaminaric in front of
# kaminaris, and data sent through the tunnel and checked byte for byte.
#   scripts/demo.sh [tcp|ws|tls|wss]     (default: ws)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-ws}
bash scripts/setup.sh build
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target kaminaric kaminaris >/dev/null

case "$mode" in
tcp) copts=""; sopts="" ;;
ws) copts="ws;host=example.com;path=/ws"; sopts="$copts" ;;
tls) copts="tls;sni=example.com;insecure"; sopts="tls;servername=example.com" ;;
wss) copts="ws;host=example.com;path=/ws;tls;sni=example.com;insecure"
     sopts="ws;host=example.com;path=/ws;tls;servername=example.com" ;;
*) echo "usage: $0 [tcp|ws|tls|wss]" >&2; exit 2 ;;
esac

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

python3 - <<'PY' &
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 17000)); s.listen(64)
def echo(c):
    with c:
        while (d := c.recv(65536)):
            c.sendall(d)
while True:
    threading.Thread(target=echo, args=(s.accept()[0],), daemon=True).start()
PY
pids+=($!)

set -x
build/kaminaris 127.0.0.1:17001 127.0.0.1:17000 "$sopts" &
{ set +x; } 2>/dev/null; pids+=($!); set -x
build/kaminaric 127.0.0.1:17002 127.0.0.1:17001 "$copts" &
{ set +x; } 2>/dev/null; pids+=($!)
sleep 0.5

python3 - <<'PY'
import hashlib, os, socket, threading, time
data = os.urandom(32 << 20)
s = socket.create_connection(("127.0.0.1", 17002))
got = bytearray()
def reader():
    while (chunk := s.recv(1 << 16)):
        got.extend(chunk)
t = threading.Thread(target=reader); t.start()
start = time.monotonic()
s.sendall(data); s.shutdown(socket.SHUT_WR); t.join()
secs = time.monotonic() - start
ok = bytes(got) == data
print(f"demo: sent {len(data)} bytes through the tunnel and back in {secs:.2f}s; "
      f"byte-exact: {ok} (sha256 {hashlib.sha256(got).hexdigest()[:16]})")
raise SystemExit(0 if ok else 1)
PY
