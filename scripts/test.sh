#!/usr/bin/env bash
# The whole test suite, as CI runs it. Installs what is missing, then:
#   1. builds with g++ (RelWithDebInfo) and runs every test with CTest, two at a time:
#      unit (GoogleTest + format check), e2e (the real binaries on loopback), interop (real
#      peers from Debian: python3-websockets, nginx, HAProxy, stunnel, openssl, shadowsocks,
#      v2ray-plugin), package (cpack -G DEB, lintian, dpkg -i, the demo against the installed
#      binaries, dpkg --purge; as root);
#   2. builds with clang 14 and runs the unit tests;
#   3. builds with g++ under AddressSanitizer + UndefinedBehaviorSanitizer and runs the whole
#      suite again against the instrumented binaries (but for the package);
#   4. runs each libFuzzer target for a short time from its seed corpus.
# `scripts/test.sh --quick [ctest args]` runs stage 1 only (e.g. --quick -L unit).
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
if [[ "${1:-}" == "--quick" ]]; then
    quick=1
    shift
fi
bash scripts/setup.sh test
jobs=$(nproc)

stage() { printf '\n=== %s\n' "$*"; }

stage "g++ build and full suite"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKAMINARI_BUILD_TESTS=ON >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest -j"$jobs" --output-on-failure --timeout 900 "$@")
[[ $quick -eq 1 ]] && exit 0

stage "clang 14 build and unit tests"
CC=clang CXX=clang++ cmake -S . -B build-clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DKAMINARI_BUILD_TESTS=ON >/dev/null
cmake --build build-clang -j"$jobs"
(cd build-clang && ctest -j"$jobs" --output-on-failure --timeout 900 -L unit)

stage "AddressSanitizer + UndefinedBehaviorSanitizer build and full suite"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DKAMINARI_SANITIZE=ON \
    -DKAMINARI_BUILD_TESTS=ON >/dev/null
cmake --build build-asan -j"$jobs"
# Instrumented binaries are several times slower: the churn tests make 10 000 connections per
# mode instead of 100 000, and RSS growth is not checked (ASan's quarantine holds freed memory;
# LeakSanitizer reports leaks at each exit instead).
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    KAMINARI_SANITIZED=1 KAMINARI_SHORT_CONNECTIONS=10000 \
    ctest -j"$jobs" --output-on-failure --timeout 900 -LE package)

stage "fuzzing, 30 s per target"
bash scripts/fuzz.sh 30
stage "all stages passed"
