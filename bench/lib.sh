# shellcheck shell=bash
# bench/lib.sh — what bench/client.sh and bench/server.sh share: process
# bookkeeping and clean-up, free ports, nginx's config, /proc readings and the
# wait for a quiet machine. Sourced, never run; one copy so the two benchmarks
# measure and clean up the same way.
#
# The script sets BENCH (client or server: names the temp dir and messages)
# and QUIET_WAIT before sourcing this, and NOFILE before write_nginx_conf.
# Sourcing creates $TMP and installs the traps that kill every process in LIVE
# and remove $TMP on exit.

die() { echo "bench/$BENCH.sh: $*" >&2; exit 1; }
note() { echo "# $*" >&2; }

CLK_TCK=$(getconf CLK_TCK)

# ---- process bookkeeping and clean-up -------------------------------------------
TMP=$(mktemp -d "/tmp/ferry-bench-$BENCH.XXXXXX")
declare -A LIVE=() # pids this script started and has not reaped yet

children_of() { cat /proc/"$1"/task/*/children 2>/dev/null || true; }

kill_tree() { # kill_tree PID SIGNAL: the process and its direct children (nginx's worker)
    local p=$1 sig=$2 c
    for c in $(children_of "$p"); do kill -"$sig" "$c" 2>/dev/null || true; done
    kill -"$sig" "$p" 2>/dev/null || true
}

# SIGTERM to everything still running, up to 1 s to go, then SIGKILL.
cleanup() {
    local p i alive
    trap - EXIT INT TERM
    for p in "${!LIVE[@]}"; do kill_tree "$p" TERM; done
    for i in 1 2 3 4 5 6 7 8 9 10; do
        alive=0
        for p in "${!LIVE[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for p in "${!LIVE[@]}"; do kill_tree "$p" KILL; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_bg CMD...: run a client to completion in the background and wait for it, so
# that a signal to this script is handled at once (bash runs traps only after a
# foreground command ends) and the client is killed with the servers. Returns
# the client's exit status.
run_bg() {
    "$@" &
    local pid=$! st=0
    LIVE[$pid]=1
    wait "$pid" || st=$?
    unset "LIVE[$pid]"
    return "$st"
}

# ---- ports and nginx -----------------------------------------------------------------
port_open() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

# A port nobody listens on, chosen at random below the kernel's ephemeral range
# (so no client socket of an earlier run holds it) and so that concurrent runs
# do not collide; the caller retries with another one if the bind fails.
EPHEMERAL_LOW=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
free_port() {
    local p i lo=10000 span=$((EPHEMERAL_LOW - 10000))
    [ "$span" -gt 1000 ] || { lo=20000; span=10000; }
    for i in $(seq 50); do
        p=$((lo + RANDOM % span))
        if ! port_open "$p"; then
            echo "$p"
            return
        fi
    done
    die "no free port found"
}

write_nginx_conf() { # write_nginx_conf DIR PORT
    mkdir -p "$1"
    cat >"$1/nginx.conf" <<EOF
# 1 worker, return 200 "hello, world", no access log, keep-alive never ends by count
worker_processes 1;
daemon off;
master_process on;
pid $1/nginx.pid;
error_log $1/error.log warn;
worker_rlimit_nofile $NOFILE;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $1/body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$2;
        location / {
            default_type text/plain;
            return 200 "hello, world";
        }
    }
}
EOF
}

# ---- /proc readings --------------------------------------------------------------
tree_pids() { echo "$1" "$(children_of "$1")"; }

tree_ticks() { # "utime stime" (clock ticks) of the process and its children
    local p u=0 s=0 pu ps
    for p in $(tree_pids "$1"); do
        # Fields after the ")" that ends the command name: utime is the 12th, stime the 13th.
        read -r pu ps <<<"$(awk '{ sub(/.*\) /, ""); print $12, $13 }' /proc/"$p"/stat 2>/dev/null || echo 0 0)"
        u=$((u + ${pu:-0})); s=$((s + ${ps:-0}))
    done
    echo "$u $s"
}

machine_busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }

# user+sys seconds of this shell's reaped children, from `times` (which must run
# in this shell, not in a $(...) subshell, whose children are its own).
children_cpu_s() { awk 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] } print s }' "$1"; }

# background_cpu: % of one core that other processes use, over 0.5 s, while
# the benchmark's own processes idle. Other work on the machine distorts every
# figure; each sample is also appended to BG_LIST for the summary.
BG_LIST=$TMP/background
background_cpu() {
    local b0 b1 t0 t1
    b0=$(machine_busy_ticks); t0=$EPOCHREALTIME
    sleep 0.5
    b1=$(machine_busy_ticks); t1=$EPOCHREALTIME
    awk -v d=$((b1 - b0)) -v tck="$CLK_TCK" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.0f\n", 100 * d / tck / (t1 - t0) }' |
        tee -a "$BG_LIST"
}

# quiet_moment: background_cpu, after waiting up to QUIET_WAIT seconds in all
# for it to drop below 15 % (on a shared machine, for a moment between others' jobs).
QUIET_LEFT=$QUIET_WAIT
quiet_moment() {
    local bg
    bg=$(background_cpu)
    while [ "$bg" -gt 15 ] && [ "$QUIET_LEFT" -gt 0 ]; do
        sleep 1
        QUIET_LEFT=$((QUIET_LEFT - 1))
        sed -i '$d' "$BG_LIST" # only the last sample counts
        bg=$(background_cpu)
    done
    echo "$bg"
}

rotate() { # rotate N WORD...: the words rotated by N places
    local r=$1; shift
    local a=("$@") n=$# i res=()
    for ((i = 0; i < n; i++)); do res+=("${a[$(((i + r) % n))]}"); done
    echo "${res[@]}"
}
