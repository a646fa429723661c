#!/usr/bin/env bash
# deps.sh — install what ferry needs to build, test and fuzz (and, with
# --bench, to run the benchmarks against peers). Quiet and fast when nothing is
# missing, so every make target can call it.
#
#   scripts/deps.sh            build + test + asan + fuzz dependencies
#   scripts/deps.sh --bench    also the benchmark peers (picohttpparser via libh2o, nginx, wrk,
#                              hyperfine, haproxy for the rolling-restart harness)
#   scripts/deps.sh --faults   also what `make faults` needs: iproute2 (network namespaces,
#                              tc), iptables and libnetfilter-queue (nfq_netem, where the
#                              kernel has no netem)
#
# On Debian/Ubuntu it installs with apt-get when run as root, and otherwise
# prints the one command to run. Elsewhere it names the packages to install.
set -euo pipefail

# binutils: ld -r and objcopy build libferry.a; man-db (groff-base with it):
# the test that renders the man pages; openssl (the command): the shell tests'
# and bench/tls.sh's certificates (tests/support/make_certs.sh).
pkgs=(cmake make gcc binutils pkg-config libuv1-dev libssl-dev libcmocka-dev libpsl-dev clang curl
      python3 man-db groff-base openssl)
want_bench=0
want_faults=0
for arg in "$@"; do
    case "$arg" in
    --bench) want_bench=1 ;;
    --faults) want_faults=1 ;;
    *) echo "deps.sh: unknown option '$arg' (use --bench or --faults)" >&2; exit 2 ;;
    esac
done
[ "$want_bench" = 1 ] && pkgs+=(libh2o-dev nginx-light wrk hyperfine haproxy)
[ "$want_faults" = 1 ] && pkgs+=(iproute2 iptables libnetfilter-queue-dev)

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    # Not Debian-like: check what we can and name the packages.
    missing=()
    for m in libuv openssl cmocka libpsl; do
        pkg-config --exists "$m" 2>/dev/null || missing+=("$m")
    done
    for c in cmake cc clang objcopy man groff openssl; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "ferry: missing ${missing[*]}; install libuv (>= 1.44), OpenSSL 3, cmocka, libpsl, cmake (>= 3.20)," \
             "pkg-config, clang, binutils, man, groff and the openssl command with your package manager" >&2
        exit 1
    fi
    exit 0
fi

# libFuzzer's runtime ships in libclang-rt-N-dev on Debian 12, matching clang's major version.
clang_runtime() {
    local v
    v=$(clang --version 2>/dev/null | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -n1)
    [ -n "$v" ] && echo "libclang-rt-$v-dev"
}

missing_pkgs() {
    local p
    for p in "$@"; do
        if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
            echo "$p"
        fi
    done
}

install() {
    if [ "$(id -u)" != 0 ]; then
        echo "ferry: missing packages; run:  sudo apt-get update && sudo apt-get install -y $*" >&2
        exit 1
    fi
    echo "deps.sh: installing $*" >&2
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine has no package lists yet; refresh them once.
    if ! apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1; then
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "$@"
    fi
}

# bench/server.sh runs its own nginx in the foreground from a temporary prefix.
# Installing the package may start the system's nginx on port 80 (where the init
# system allows it): stop and disable that one, which nobody asked for.
stop_system_nginx() {
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now nginx >/dev/null 2>&1 || true
    elif command -v service >/dev/null 2>&1; then
        service nginx stop >/dev/null 2>&1 || true
    fi
    # No init system here: the package's own start left a master with the default config.
    if [ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
        nginx -s quit >/dev/null 2>&1 || true
    fi
}

# bench/haproxy_rolling.sh runs its own haproxy with its own config, likewise.
stop_system_haproxy() {
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now haproxy >/dev/null 2>&1 || true
    elif command -v service >/dev/null 2>&1; then
        service haproxy stop >/dev/null 2>&1 || true
    fi
}

mapfile -t need < <(missing_pkgs "${pkgs[@]}")
if [ "${#need[@]}" -gt 0 ]; then
    install "${need[@]}"
    if [[ " ${need[*]} " == *" nginx-light "* ]]; then stop_system_nginx; fi
    if [[ " ${need[*]} " == *" haproxy "* ]]; then stop_system_haproxy; fi
fi
rt=$(clang_runtime || true)
if [ -n "$rt" ]; then
    mapfile -t need < <(missing_pkgs "$rt")
    [ "${#need[@]}" -gt 0 ] && install "${need[@]}"
fi
exit 0
