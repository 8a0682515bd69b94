#!/usr/bin/env bash
# The whole benchmark suite in one command:
#   bash bench/run.sh --quick     # under 8 minutes on 2 cores (after the first build)
#   bash bench/run.sh             # full: more rounds, longer runs, 2000 idle connections held
# Installs what is missing (scripts/setup.sh bench), builds Release with the micro benchmarks
# into build-bench/, runs mask_bench, codec_bench and tls_bench (JSON kept), then the tunnel benchmark
# (bench/tunnel_bench/run.py) against socat, stunnel4 and v2ray-plugin, and the page load through
# shadowsocks at 100 ms RTT (bench/page_load.py, against no plugin and v2ray-plugin). Any other argument is
# passed to run.py (e.g. --only kaminari-tcp,socat --rounds 1). Another build's kaminaric and
# kaminaris run as extra peers base-tcp .. base-wss with KAMINARI_BASELINE=DIR or --baseline DIR
# (see bench/README.md). Results: bench/results/<date>-<host>/results.md, results.json, *.png.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${KAMINARI_BENCH_BUILD:-$repo/build-bench}
quick=0
for arg in "$@"; do
    [[ $arg == --quick ]] && quick=1
done

bash "$repo/scripts/setup.sh" bench

cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DKAMINARI_BUILD_BENCH=ON \
    -DKAMINARI_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)"

out=$repo/bench/results/$(date +%Y-%m-%d-%H%M)-$(hostname -s)
mkdir -p "$out"

min_time=0.5
[[ $quick -eq 1 ]] && min_time=0.05
for b in mask_bench codec_bench tls_bench; do
    echo "== $b" >&2
    "$build/bench/$b" --benchmark_min_time="$min_time" --benchmark_out="$out/$b.json" \
        --benchmark_out_format=json >"$out/$b.txt"
done

echo "== tunnel benchmark" >&2
KAMINARIC=${KAMINARIC:-$build/kaminaric} KAMINARIS=${KAMINARIS:-$build/kaminaris} \
    /usr/bin/python3 "$repo/bench/tunnel_bench/run.py" --out "$out" "$@"

echo "== page load" >&2
page_args=()
[[ $quick -eq 1 ]] && page_args=(--rounds 1 --loads 3 --gap 1)
KAMINARIC=${KAMINARIC:-$build/kaminaric} KAMINARIS=${KAMINARIS:-$build/kaminaris} \
    /usr/bin/python3 "$repo/bench/page_load.py" --out "$out" "${page_args[@]}"
echo "results directory: $out"
