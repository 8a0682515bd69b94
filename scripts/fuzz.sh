#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each from its seed corpus for
# a bounded time: scripts/fuzz.sh [seconds per target, default 30].
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
bash scripts/setup.sh build
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DKAMINARI_BUILD_FUZZ=ON -DKAMINARI_BUILD_TESTS=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target options_fuzz frame_decoder_fuzz handshake_fuzz base64_fuzz \
    proxy_protocol_fuzz udp_frame_fuzz mux_cool_fuzz
for target in options frame_decoder handshake base64 proxy_protocol udp_frame mux_cool; do
    work=$(mktemp -d)
    cp fuzz/corpus/$target/* "$work"/
    echo "fuzz: $target for ${secs}s"
    log="$work.log"
    if ! build-fuzz/fuzz/${target}_fuzz -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "$work" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "fuzz: $target FAILED" >&2
        exit 1
    fi
    grep -E "stat::number_of_executed_units|Done" "$log" || true
    rm -rf "$work" "$log"
done
