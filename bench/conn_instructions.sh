#!/usr/bin/env bash
# Instructions per connection (user space), counted by valgrind's callgrind: a figure that does
# not move with machine load, for comparing builds on a shared or noisy machine where timings
# cannot (and on VMs without hardware counters, where `perf stat -e instructions` cannot).
#
#   bash bench/conn_instructions.sh [--n N] [--modes tcp,ws,tls,wss] DIR [DIR ...]
#
# Each DIR holds a kaminaric and a kaminaris (a build directory). For every DIR, mode and side,
# one relay runs under callgrind, the other natively; after 100 warm-up connections (TLS
# sessions cached) the counters are zeroed, N connections (default 300; each: connect, send 64
# bytes, read the echo, close; 4 at a time) go through, and the counts are dumped. Prints a
# markdown table of instructions per connection, and the ratio to the first DIR. Kernel work
# (syscalls) is not counted: `strace -c -f -p PID` gives that side.
set -euo pipefail
cd "$(dirname "$0")/.."
n=300
modes=tcp,ws,tls,wss
dirs=()
while [[ $# -gt 0 ]]; do
    case "$1" in
    --n) n=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) dirs+=("$1"); shift ;;
    esac
done
[[ ${#dirs[@]} -gt 0 ]] || { echo "usage: $0 [--n N] [--modes LIST] DIR [DIR ...]" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
py=/usr/bin/python3
gen=bench/tunnel_bench/run.py
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { $py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 600); do
        (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "port $1 never opened" >&2
    return 1
}

opts() { # mode -> "client options|server options"
    local ws="ws;host=bench.example;path=/ws"
    case "$1" in
    tcp) echo "|" ;;
    ws) echo "$ws|$ws" ;;
    tls) echo "tls;sni=bench.example;insecure|tls;servername=bench.example" ;;
    wss) echo "$ws;tls;insecure|$ws;tls;servername=bench.example" ;;
    *) echo "unknown mode $1" >&2; exit 2 ;;
    esac
}

# measure DIR MODE SIDE -> instructions per connection
measure() {
    local dir=$1 mode=$2 side=$3 o co so e s c sp cp tp out vc=() vs=()
    o=$(opts "$mode"); co=${o%%|*}; so=${o##*|}
    tp=$(free_port); sp=$(free_port); cp=$(free_port)
    out=$tmp/cg.out
    local vg=(valgrind --tool=callgrind -q --callgrind-out-file="$out")
    if [[ $side == server ]]; then vs=("${vg[@]}"); else vc=("${vg[@]}"); fi
    $py $gen --echo "$tp" & e=$!
    "${vs[@]}" "$dir/kaminaris" "127.0.0.1:$sp" "127.0.0.1:$tp" "${so:+$so;}loglevel=error" \
        2>/dev/null & s=$!
    "${vc[@]}" "$dir/kaminaric" "127.0.0.1:$cp" "127.0.0.1:$sp" "${co:+$co;}loglevel=error" \
        2>/dev/null & c=$!
    pids=("$e" "$s" "$c")
    wait_port "$tp"; wait_port "$sp"; wait_port "$cp"
    $py $gen --loadgen "$cp" 4 60 100 >/dev/null
    local pid=$c
    [[ $side == server ]] && pid=$s
    callgrind_control -z "$pid" >/dev/null 2>&1
    $py $gen --loadgen "$cp" 4 300 "$n" >"$tmp/lg.json"
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill "$c" "$s" "$e" 2>/dev/null || true
    wait "$c" "$s" "$e" 2>/dev/null || true
    pids=()
    local done_n total
    done_n=$($py -c "import json,sys; print(json.load(open(sys.argv[1]))['done'])" "$tmp/lg.json")
    total=$(callgrind_annotate "$out.1" 2>/dev/null |
        awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
    rm -f "$out"*
    echo $((total / done_n))
}

declare -A base
printf '| build | mode | client Ir/conn | server Ir/conn | vs first |\n|---|---|---:|---:|---:|\n'
for dir in "${dirs[@]}"; do
    for mode in ${modes//,/ }; do
        ci=$(measure "$dir" "$mode" client)
        si=$(measure "$dir" "$mode" server)
        ratio=""
        if [[ -z ${base[$mode]:-} ]]; then
            base[$mode]=$((ci + si))
        else
            ratio=$($py -c "print(f'{($ci + $si) / ${base[$mode]}:.2f}x')")
        fi
        printf '| %s | %s | %s | %s | %s |\n' "$dir" "$mode" "$ci" "$si" "$ratio"
    done
done
