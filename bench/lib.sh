# shellcheck shell=bash
# bench/lib.sh — what bench/client.sh, bench/server.sh and bench/tls.sh share:
# process bookkeeping and clean-up, waiting for processes, free ports, nginx's
# config (plain or HTTPS), /proc readings, one measured wrk run and the wait for
# a quiet machine. Sourced, never run; one copy so the benchmarks measure and
# clean up the same way.
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

# ---- waiting for processes -----------------------------------------------------------
# wait_for COND_CMD SECONDS: poll every 20 ms.
wait_for() {
    local cond=$1 limit=$2 i
    for ((i = 0; i < limit * 50; i++)); do
        eval "$cond" && return 0
        sleep 0.02
    done
    return 1
}

alive() { # running and not a zombie
    local st
    st=$(awk '{ sub(/.*\) /, ""); print $1 }' /proc/"$1"/stat 2>/dev/null || true)
    [ -n "$st" ] && [ "$st" != Z ]
}

# wait_exit PID LIMIT_S: reap the server; SIGKILL it (and its children) if it is
# still there after LIMIT_S. Sets EXIT_STATUS and KILLED (1 when the watchdog fired).
wait_exit() {
    local pid=$1 limit=$2 wd
    (
        sleep "$limit" &
        s=$!
        trap 'kill $s 2>/dev/null; exit 0' TERM
        wait $s
        for c in $(children_of "$pid"); do kill -KILL "$c" 2>/dev/null; done
        kill -KILL "$pid" 2>/dev/null
        : >"$TMP/watchdog.fired"
    ) &
    wd=$!
    rm -f "$TMP/watchdog.fired"
    EXIT_STATUS=0
    wait "$pid" || EXIT_STATUS=$?
    kill -TERM "$wd" 2>/dev/null || true
    wait "$wd" 2>/dev/null || true
    KILLED=0
    [ -e "$TMP/watchdog.fired" ] && KILLED=1
    unset "LIVE[$pid]"
}

tree_rss_kb() { # VmRSS (KiB) of the process and its children
    local p sum=0 r
    for p in $(tree_pids "$1"); do
        r=$(awk '/^VmRSS:/ { print $2 }' /proc/"$p"/status 2>/dev/null || echo 0)
        sum=$((sum + ${r:-0}))
    done
    echo "$sum"
}

# ---- memory per idle connection ------------------------------------------------------------
# idle_rss_round NAME ROUND HOLDER HOLD_S READY_S: the server SPID (already started) is
# given IDLE_N idle connections by HOLDER (a program run as `HOLDER PORT N HOLD_S` on
# CLIENT_CPU that prints "ready OK ..." once they are open and "closed N ..." for those the
# server closed), waiting up to READY_S for them; the server's RSS before and with them
# goes to MEM_TSV as: name round ready rss0_kib rss1_kib closed. Used by server.sh and tls.sh.
idle_rss_round() {
    local name=$1 round=$2 holder=$3 hold=$4 ready_s=$5 rss0 rss1 out cpid ok closed
    sleep 0.2
    rss0=$(tree_rss_kb "$SPID")
    out=$TMP/idle.$name.$round
    taskset -c "$CLIENT_CPU" "$holder" "$PORT" "$IDLE_N" "$hold" >"$out" 2>&1 &
    cpid=$!
    LIVE[$cpid]=1
    wait_for "grep -qs '^ready' '$out'" "$ready_s" || true
    # sampled well before ferry's default keep-alive timeout (5 s)
    sleep 0.5
    rss1=$(tree_rss_kb "$SPID")
    kill -TERM "$cpid" 2>/dev/null || true
    wait "$cpid" 2>/dev/null || true
    unset "LIVE[$cpid]"
    read -r _ ok _ <<<"$(grep '^ready' "$out" || echo "ready 0 0")"
    read -r _ closed _ <<<"$(grep '^closed' "$out" || echo "closed ? 0")"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$round" "$ok" "$rss0" "$rss1" "$closed" >>"$MEM_TSV"
    awk -F'\t' -v n="$IDLE_N" 'END { printf "  %-6s round %s: %s ready, RSS %.1f -> %.1f MiB, %.0f bytes/conn, %s closed by the server while held\n", $1, $2, $3, $4 / 1024, $5 / 1024, ($5 - $4) * 1024 / n, $6 }' "$MEM_TSV" >&2
}

# ---- one measured wrk run ---------------------------------------------------------------
# wrk_run NAME MODE ROUND WRK_ARGS...: `wrk WRK_ARGS` on CLIENT_CPU against the server
# SPID (DURATION seconds, 30 s of slack); appends one line to WRK_TSV, tab-separated:
#   name mode round req/s requests server_µs/req server_% wrk_% machine_% p99_ms errors
#   user_µs/req others_%
# (server CPU from /proc of SPID's tree; wrk's from bash's `times`; p99 "-" for
# MODE pipelined, where wrk times batches) and a progress line on stderr.
wrk_run() {
    local name=$1 mode=$2 round=$3 out=$TMP/wrk.$1.$2.$3
    shift 3
    local u0 s0 m0 w0 t0 u1 s1 m1 w1 t1
    times >"$TMP/times0"
    read -r u0 s0 <<<"$(tree_ticks "$SPID")"; m0=$(machine_busy_ticks); t0=$EPOCHREALTIME
    run_bg timeout $((DURATION + 30)) taskset -c "$CLIENT_CPU" "$WRK" "$@" >"$out" 2>&1 || true
    t1=$EPOCHREALTIME; read -r u1 s1 <<<"$(tree_ticks "$SPID")"; m1=$(machine_busy_ticks)
    times >"$TMP/times1"
    w0=$(children_cpu_s "$TMP/times0"); w1=$(children_cpu_s "$TMP/times1")
    awk -v name="$name" -v mode="$mode" -v round="$round" -v tck="$CLK_TCK" \
        -v du=$((u1 - u0)) -v dc=$((u1 - u0 + s1 - s0)) -v dm=$((m1 - m0)) -v w0="$w0" -v w1="$w1" -v t0="$t0" -v t1="$t1" '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        / requests in / { reqs = $1 }
        /^Requests\/sec:/ { rps = $2 }
        /Socket errors:/ { gsub(/,/, ""); errs += $4 + $6 + $8 + $10 }
        /Non-2xx or 3xx responses:/ { errs += $5 }
        $1 == "99%" { p99 = ms($2) }
        END {
            wall = t1 - t0
            if (reqs == 0) { printf "%s\t%s\t%s\t0\t0\t0\t0\t0\t0\t-\t1\t0\t0\n", name, mode, round; exit }
            cpu_s = dc / tck
            srv = 100 * cpu_s / wall; wrk = 100 * (w1 - w0) / wall; mach = 100 * dm / tck / wall
            others = mach - srv - wrk
            printf "%s\t%s\t%s\t%.0f\t%d\t%.2f\t%.0f\t%.0f\t%.0f\t%s\t%d\t%.2f\t%.0f\n", name, mode, round, rps, reqs,
                cpu_s * 1e6 / reqs, srv, wrk, mach,
                (mode != "pipelined" && p99 != "") ? sprintf("%.2f", p99) : "-", errs, du / tck * 1e6 / reqs, others < 0 ? 0 : others
        }' "$out" >>"$WRK_TSV"
    tail -n 1 "$WRK_TSV" | awk -F'\t' '{ printf "  %-6s %-10s round %s: %9s req/s  %6s µs/req (user %s)  server %s%%  wrk %s%%  others %s%%  errors %s\n", $1, $2, $3, $4, $6, $12, $7, $8, $13, $11 }' >&2
}


# stime_run NAME MODE ROUND (bench/tls.sh, bench/cores.sh): STIME_PROCS `openssl s_time -new` at once on CLIENT_CPU for
# DURATION seconds (full handshakes, one HTTP/1.0 GET each); appends a WRK_TSV line as
# wrk_run does (req/s = connections per second; the client's CPU in the wrk column).
stime_run() {
    local name=$1 mode=$2 round=$3 out=$TMP/stime.$1.$2.$3 i pids=() u0 s0 m0 t0 u1 s1 m1 t1 w0 w1
    times >"$TMP/times0"
    read -r u0 s0 <<<"$(tree_ticks "$SPID")"; m0=$(machine_busy_ticks); t0=$EPOCHREALTIME
    for ((i = 0; i < STIME_PROCS; i++)); do
        timeout $((DURATION + 30)) taskset -c "$CLIENT_CPU" openssl s_time -connect "127.0.0.1:$PORT" -new \
            -www / -time "$DURATION" >"$out.$i" 2>&1 &
        pids+=($!)
        LIVE[$!]=1
    done
    for i in "${pids[@]}"; do wait "$i" || true; unset "LIVE[$i]"; done
    t1=$EPOCHREALTIME; read -r u1 s1 <<<"$(tree_ticks "$SPID")"; m1=$(machine_busy_ticks)
    times >"$TMP/times1"
    w0=$(children_cpu_s "$TMP/times0"); w1=$(children_cpu_s "$TMP/times1")
    cat "$out".* | awk -v name="$name" -v mode="$mode" -v round="$round" -v tck="$CLK_TCK" -v du=$((u1 - u0)) \
        -v dc=$((u1 - u0 + s1 - s0)) -v dm=$((m1 - m0)) -v w0="$w0" -v w1="$w1" -v t0="$t0" -v t1="$t1" '
        / connections in [0-9.]+ real seconds/ { n += $1 }
        END {
            wall = t1 - t0
            if (n == 0) { printf "%s\t%s\t%s\t0\t0\t0\t0\t0\t0\t-\t1\t0\t0\n", name, mode, round; exit }
            srv = 100 * dc / tck / wall; cl = 100 * (w1 - w0) / wall; mach = 100 * dm / tck / wall
            others = mach - srv - cl
            printf "%s\t%s\t%s\t%.0f\t%d\t%.2f\t%.0f\t%.0f\t%.0f\t-\t0\t%.2f\t%.0f\n", name, mode, round, n / wall, n,
                dc / tck * 1e6 / n, srv, cl, mach, du / tck * 1e6 / n, others < 0 ? 0 : others
        }' >>"$WRK_TSV"
    tail -n 1 "$WRK_TSV" | awk -F'\t' '{ printf "  %-6s %-10s round %s: %9s conn/s  %6s µs/conn (user %s)  server %s%%  s_time %s%%  others %s%%\n", $1, $2, $3, $4, $6, $12, $7, $8, $13 }' >&2
}

# ---- wall time of a whole process ---------------------------------------------------------
# hyperfine_run PART CLIENT ROUND CMD: RUNS timed runs (plus one warm-up) of CMD on
# CLIENT_CPU (hyperfine -N: no shell, CMD split on spaces); appends one line per run
# to WALL_TSV, "PART CLIENT ROUND seconds", and a progress line with N / median req/s.
hyperfine_run() {
    local part=$1 client=$2 round=$3 cmd=$4 json=$TMP/hf.$1.$2.$3.json
    if ! run_bg timeout 300 taskset -c "$CLIENT_CPU" "$HYPERFINE" -N --runs "$RUNS" --warmup 1 --style none \
        --export-json "$json" "$cmd" >"$TMP/hf.out" 2>&1; then
        cat "$TMP/hf.out" >&2
        die "$client failed: $cmd"
    fi
    python3 -c '
import json, sys
for t in json.load(open(sys.argv[1]))["results"][0]["times"]:
    print("%s\t%s\t%s\t%.6f" % (sys.argv[2], sys.argv[3], sys.argv[4], t))' "$json" "$part" "$client" "$round" >>"$WALL_TSV"
    python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print("  %-9s %-6s round %s: median %.1f ms (%.1f–%.1f) = %.0f req/s" % (sys.argv[2], sys.argv[3], sys.argv[4], r["median"] * 1e3, r["min"] * 1e3, r["max"] * 1e3, int(sys.argv[5]) / r["median"]))' \
        "$json" "$client" "$part" "$round" "$N" >&2
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

write_nginx_conf() { # write_nginx_conf DIR PORT [CERT KEY]: with CERT and KEY, HTTPS only
    local listen="listen 127.0.0.1:$2;" tls=""
    if [ $# -ge 4 ]; then
        listen="listen 127.0.0.1:$2 ssl;"
        tls="ssl_certificate $3; ssl_certificate_key $4; ssl_protocols TLSv1.2 TLSv1.3;"
    fi
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
        $listen
        $tls
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
