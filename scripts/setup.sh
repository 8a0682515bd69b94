#!/usr/bin/env bash
# Installs, with apt-get, exactly the Debian 12 packages that are missing for a purpose:
#   scripts/setup.sh build   compilers and libraries
#   scripts/setup.sh test    build + the real peers the end-to-end and interop tests run, and
#                            (dnsmasq-base: the binary only, no system service that would take
#                            port 53), the tools the operations tests use (groff, man, systemd-analyze,
#                            strace, dpkg-shlibdeps for cpack, lintian)
#   scripts/setup.sh bench   test + the benchmark tools
# Idempotent and silent when everything is already there. Run as root (or with sudo).
set -euo pipefail

build=(cmake make g++ clang clang-format libboost1.81-dev libssl-dev libfmt-dev libgtest-dev
       openssl python3 ca-certificates)
test=(python3-websockets python3-prometheus-client nginx-light haproxy stunnel4 shadowsocks-libev shadowsocks-v2ray-plugin
      libnginx-mod-stream curl socat iperf3 iproute2 dnsmasq-base dnsutils
      groff-base man-db systemd strace dpkg-dev lintian)
bench=(libbenchmark-dev gnuplot-nox valgrind)

want=("${build[@]}")
case "${1:-build}" in
build) ;;
test) want+=("${test[@]}") ;;
bench) want+=("${test[@]}" "${bench[@]}") ;;
*) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac

missing=()
for pkg in "${want[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
echo "setup: installing ${missing[*]}" >&2
# Packages such as nginx and haproxy would start system services on install; the tests start
# their own instances on loopback, so keep the daemons from starting (and from taking port 80).
policy=/usr/sbin/policy-rc.d
added_policy=0
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    added_policy=1
fi
trap '[[ $added_policy -eq 1 ]] && "${sudo[@]}" rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >/dev/null
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
