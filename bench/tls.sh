#!/usr/bin/env bash
# bench/tls.sh — HTTPS on this machine: `ferry serve` against nginx (1 worker, the
# same certificates), and ferry's client tools against curl and Node 20 (run by
# `make bench-tls`; docs/benchmarks.md explains every figure).
#
# Certificates are made at run time (tests/support/make_certs.sh: a test CA, ECDSA
# P-256 and RSA-2048 server certificates for 127.0.0.1). Servers run pinned to
# CPU 1, clients to CPU 0, started by this script on 127.0.0.1 only, as
# bench/server.sh does; medians (min–max) over ROUNDS interleaved rounds.
#   1. keep-alive requests over TLS: `wrk -t1 -c64 -d5s https://...`: server CPU
#      µs per request (the process tree's utime+stime from /proc ÷ requests),
#      ferry/nginx. Target ≤ 0.85.
#   2. a new TLS connection per request: the same with -c$CLOSE_CONNS and
#      `-H 'Connection: close'`, with the ECDSA P-256 and the RSA-2048 certificate.
#      Target ≤ 1.0 for both. wrk keeps each connection's SSL object (SSL_clear),
#      which resumes the session it had: these are resumed handshakes. Full ones are
#      measured too, with STIME_PROCS `openssl s_time -new -www /` running at once
#      (a new session every connection, an HTTP/1.0 GET each).
#   3. bytes per idle TLS keep-alive connection: IDLE_N connections (one request
#      each) held by bench/tls_idle; the server tree's VmRSS delta ÷ IDLE_N.
#      Target ≤ nginx's (aim for half).
#   4. the client, against nginx (ECDSA): N sequential keep-alive HTTPS GETs, wall
#      time of the whole process (hyperfine): `ferry fetch -n N -c 1` vs one `curl -K`
#      invocation vs Node's `https.Agent({keepAlive: true})` (bench/node_client.js).
#      Targets ≥ 1.5× curl and ≥ 3× Node. Run twice: pinned as above, and with nginx
#      on the client's CPU, where no request waits for the other CPU to wake up (on a
#      virtual machine that wake-up can cost more than the client's whole work). And
#      RESUME_N requests each on a new connection, `ferry bench -M 1 -c 1`, against
#      nginx and against ferry serve: resumed ≥ 90 %.
#
# Environment (defaults in brackets):
#   FERRY [build/ferry]  ROUNDS [3]  DURATION seconds [5]  CLOSE_CONNS [16]  STIME_PROCS [2]
#   MEM_ROUNDS [3]  IDLE_N [2000]  N [2000]  RUNS [5]  RESUME_N [200]
#   NODE [node]  NGINX [nginx]  WRK [wrk]  HYPERFINE [hyperfine]  CURL [curl]
#   PARTS       which parts to run [1 2 3 4]
#   QUIET_WAIT  seconds, in all, to wait for other processes to go quiet (< 15 % of a
#               core) before each server start and each hyperfine batch [0]
#   RESULTS [build/bench/tls-results.md]
# Everything is bounded in time; every process started is killed on exit.
set -euo pipefail

cd "$(dirname "$0")/.."

FERRY=${FERRY:-build/ferry}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CLOSE_CONNS=${CLOSE_CONNS:-16}
STIME_PROCS=${STIME_PROCS:-2}
MEM_ROUNDS=${MEM_ROUNDS:-3}
IDLE_N=${IDLE_N:-2000}
N=${N:-2000}
RUNS=${RUNS:-5}
RESUME_N=${RESUME_N:-200}
NODE=${NODE:-node}
NGINX=${NGINX:-nginx}
WRK=${WRK:-wrk}
HYPERFINE=${HYPERFINE:-hyperfine}
CURL=${CURL:-curl}
QUIET_WAIT=${QUIET_WAIT:-0}
PARTS=${PARTS:-1 2 3 4}
RESULTS=${RESULTS:-build/bench/tls-results.md}
CONNS=64
SERVER_CPU=1
CLIENT_CPU=0
SERVERS=(ferry nginx)

BENCH=tls
. bench/lib.sh # die, note, $TMP, run_bg, wait_for, wait_exit, wrk_run, hyperfine_run, ...
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- preconditions -------------------------------------------------------------------
for t in "$WRK" "$NGINX" "$HYPERFINE" "$CURL" "$NODE" taskset openssl python3 pkg-config; do
    command -v "$t" >/dev/null || die "$t not found (make deps-bench installs wrk, hyperfine, nginx-light; Node 20 is needed too)"
done
[ -x "$FERRY" ] || die "$FERRY not found (run 'make build', or set FERRY)"
taskset -c "$SERVER_CPU" true 2>/dev/null || die "CPU $SERVER_CPU not available: the benchmark needs 2 CPUs"
node_version=$("$NODE" -e 'process.stdout.write(process.versions.node)')
[ "${node_version%%.*}" -ge 20 ] || die "node $node_version is older than 20"
ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
[ "$NOFILE" -gt $((IDLE_N + 100)) ] || die "RLIMIT_NOFILE hard limit $NOFILE is too low for IDLE_N=$IDLE_N"

CERTS=$TMP/certs
tests/support/make_certs.sh "$CERTS" rsa || die "could not make the certificates"
CA=$CERTS/ca.crt
# Node verifies against its own store; the test CA comes in this way.
export NODE_EXTRA_CA_CERTS=$CA

# The idle TLS connection holder: plain C on OpenSSL, built here.
TLS_IDLE=build/bench/tls_idle
if [ ! -x "$TLS_IDLE" ] || [ bench/tls_idle.c -nt "$TLS_IDLE" ]; then
    mkdir -p build/bench
    # shellcheck disable=SC2046
    "${CC:-cc}" -std=c17 -O2 -Wall -Wextra -o "$TLS_IDLE" bench/tls_idle.c $(pkg-config --cflags --libs openssl)
fi

# ---- starting and stopping servers -------------------------------------------------------
# start_server NAME KEY: NAME (ferry or nginx) with the KEY (ec or rsa) certificate,
# pinned on SERVER_CPU; sets SPID and PORT. A server that dies before it is ready (its
# port was taken meanwhile) is tried again on another port, three times in all.
start_server() {
    local name=$1 key=$2 log=$TMP/$1.out try ready
    for try in 1 2 3; do
        PORT=$(free_port)
        : >"$log"
        case $name in
        ferry)
            # The keep-alive timeout of nginx's config: the idle part holds connections for seconds.
            taskset -c "$SERVER_CPU" "$FERRY" serve --quiet --port "$PORT" --keep-alive-timeout 300000 \
                --tls-cert "$CERTS/$key.crt" --tls-key "$CERTS/$key.key" >"$log" 2>"$TMP/ferry.err" &
            ready="grep -qs '^listening on' '$log'"
            ;;
        nginx)
            write_nginx_conf "$TMP/nginx" "$PORT" "$CERTS/$key.crt" "$CERTS/$key.key"
            taskset -c "$SERVER_CPU" "$NGINX" -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf" \
                -e "$TMP/nginx/error.log" >"$log" 2>&1 &
            ready="port_open $PORT && [ -n \"\$(children_of $!)\" ]"
            ;;
        esac
        SPID=$!
        LIVE[$SPID]=1
        if wait_for "$ready || ! alive $SPID" 10 && alive "$SPID"; then
            URL=https://127.0.0.1:$PORT/
            "$CURL" -sf --cacert "$CA" "$URL" >/dev/null || die "$name does not answer on $URL"
            return 0
        fi
        kill_tree "$SPID" KILL
        wait "$SPID" 2>/dev/null || true
        unset "LIVE[$SPID]"
        note "$name did not start on port $PORT (try $try):"
        cat "$log" "$TMP/ferry.err" "$TMP/nginx/error.log" 2>/dev/null | tail -n 5 >&2
    done
    die "$name did not start"
}

stop_server() {
    kill_tree "$SPID" TERM
    wait_exit "$SPID" 5
}

warm_up() { # 1 s of wrk per server start, as in bench/server.sh
    run_bg timeout 30 taskset -c "$CLIENT_CPU" "$WRK" -t1 -c"$CONNS" -d1s "$@" "$URL" >/dev/null 2>&1 || true
}


part() { [[ " $PARTS " == *" $1 "* ]]; }

# ---- 1 and 2. CPU per request: keep-alive, and a handshake per request -------------------------
WRK_TSV=$TMP/wrk.tsv
: >"$WRK_TSV"
part 1 && note "1. keep-alive over TLS: wrk -t1 -c$CONNS -d${DURATION}s, $ROUNDS rounds"
for ((round = 1; round <= ROUNDS; round++)); do
    part 1 || break
    for name in $(rotate $((round - 1)) "${SERVERS[@]}"); do
        bg=$(quiet_moment)
        [ "$bg" -gt 25 ] && note "other processes use ${bg}% of a core right now: expect distorted figures"
        start_server "$name" ec
        warm_up
        wrk_run "$name" keepalive "$round" -t1 -c"$CONNS" -d"${DURATION}s" --latency "$URL"
        stop_server
    done
done
part 2 && note "2. a new TLS connection per request: wrk -t1 -c$CLOSE_CONNS -d${DURATION}s -H 'Connection: close' (resumed), and $STIME_PROCS openssl s_time -new (full handshakes), ECDSA P-256 and RSA-2048, $ROUNDS rounds"
for key in ec rsa; do
    part 2 || break
    for ((round = 1; round <= ROUNDS; round++)); do
        for name in $(rotate $((round - 1)) "${SERVERS[@]}"); do
            bg=$(quiet_moment)
            [ "$bg" -gt 25 ] && note "other processes use ${bg}% of a core right now: expect distorted figures"
            start_server "$name" "$key"
            warm_up -H 'Connection: close'
            wrk_run "$name" "close-$key" "$round" -t1 -c"$CLOSE_CONNS" -d"${DURATION}s" --latency \
                -H 'Connection: close' "$URL"
            stime_run "$name" "full-$key" "$round"
            stop_server
        done
    done
done

# ---- 3. memory per idle TLS keep-alive connection ---------------------------------------------------
MEM_TSV=$TMP/mem.tsv
: >"$MEM_TSV"
part 3 && note "3. memory: $IDLE_N idle TLS keep-alive connections (one request each), $MEM_ROUNDS rounds"
for ((round = 1; round <= MEM_ROUNDS; round++)); do
    part 3 || break
    for name in $(rotate $((round - 1)) "${SERVERS[@]}"); do
        start_server "$name" ec
        idle_rss_round "$name" "$round" "$TLS_IDLE" 90 80
        stop_server
    done
done

# ---- 4. the client: N sequential keep-alive GETs, and resumption ----------------------------------------
WALL_TSV=$TMP/wall.tsv
RESUME_TSV=$TMP/resume.tsv
: >"$WALL_TSV"
: >"$RESUME_TSV"

# resume_run SERVER ROUND: RESUME_N requests, each on a new connection; appends
# "server round handshakes resumed req/s client_cpu_s succeeded".
resume_run() {
    local out=$TMP/resume.$1.$2
    run_bg timeout 60 taskset -c "$CLIENT_CPU" "$FERRY" bench --cacert "$CA" -M 1 -c 1 -n "$RESUME_N" --json "$URL" \
        >"$out" 2>"$out.err" || true
    python3 -c '
import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
print("%s\t%s\t%d\t%d\t%.1f\t%.3f\t%d" % (sys.argv[2], sys.argv[3], d["tls_handshakes"], d["tls_resumed"],
      d["requests_per_second"], d["cpu_s"], d["succeeded"]))' "$out" "$1" "$2" >>"$RESUME_TSV" 2>/dev/null ||
        die "ferry bench -M 1 against $1 failed: $(cat "$out" "$out.err" | tail -n 5)"
    tail -n 1 "$RESUME_TSV" | awk -F'\t' '{ printf "  %-6s round %s: %s handshakes, %s resumed (%.1f%%), %s/s\n", $1, $2, $3, $4, $3 ? 100 * $4 / $3 : 0, $5 }' >&2
}

client_cmd() { # client_cmd NAME: the command line (hyperfine -N splits it on spaces)
    case $1 in
    ferry) echo "$FERRY fetch --cacert $CA -n $N -c 1 $URL" ;;
    curl) echo "$CURL -sf --cacert $CA -K $TMP/urls.cfg" ;;
    node-https) echo "$NODE bench/node_client.js https $URL $N 1" ;;
    esac
}

if part 4; then
    start_server nginx ec
    for ((i = 0; i < N; i++)); do echo "url = \"$URL\""; done >"$TMP/urls.cfg"
    note "4. client: nginx (1 worker, ECDSA, CPU $SERVER_CPU) on $URL; clients on CPU $CLIENT_CPU"
    # Each client once, untimed, with its exit status checked: every request must succeed.
    for client in ferry curl node-https; do
        read -r -a words <<<"$(client_cmd "$client")"
        run_bg timeout 60 "${words[@]}" >/dev/null 2>"$TMP/check.err" ||
            die "$client failed its check run: $(head -n 3 "$TMP/check.err")"
    done
    python3 -c 'import json,sys; d=json.loads(sys.stdin.read().splitlines()[-1]); sys.exit(0 if d["succeeded"] == int(sys.argv[1]) and d["connections_opened"] == 1 and d["tls_handshakes"] == 1 else 1)' "$N" \
        < <("$FERRY" fetch --cacert "$CA" -n "$N" -c 1 --json "$URL") ||
        die "ferry fetch -c 1 did not make $N requests on one TLS connection"
    # seq: nginx on SERVER_CPU; same: nginx on the client's CPU as well
    for placement in seq same; do
        if [ "$placement" = same ]; then
            stop_server
            cpu=$SERVER_CPU
            SERVER_CPU=$CLIENT_CPU
            start_server nginx ec
            SERVER_CPU=$cpu
            for ((i = 0; i < N; i++)); do echo "url = \"$URL\""; done >"$TMP/urls.cfg"
        fi
        note "4a. $N sequential keep-alive HTTPS GETs ($placement): $ROUNDS rounds of $RUNS runs (hyperfine)"
        for ((round = 1; round <= ROUNDS; round++)); do
            for client in $(rotate $((round - 1)) ferry curl node-https); do
                quiet_moment >/dev/null
                hyperfine_run "$placement" "$client" "$round" "$(client_cmd "$client")"
            done
        done
    done
    stop_server
    start_server nginx ec
    note "4b. $RESUME_N requests, each on a new TLS connection (ferry bench -M 1 -c 1), $ROUNDS rounds"
    for ((round = 1; round <= ROUNDS; round++)); do resume_run nginx "$round"; done
    stop_server
    start_server ferry ec
    for ((round = 1; round <= ROUNDS; round++)); do resume_run ferry "$round"; done
    stop_server
fi

# ---- summary ------------------------------------------------------------------------------------------
summary() {
    echo "## ferry TLS benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), kernel $(uname -r); load average (1, 5, 15 min) $LOAD_BEFORE before the run, $(cut -d' ' -f1-3 /proc/loadavg) after."
    echo "ferry $("$FERRY" version | head -n 1 | cut -d' ' -f2) on $("$FERRY" version | tail -n 1); nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///') (1 worker), $("$WRK" -v 2>&1 | head -n 1 | awk '{ print $1, $2 }'), $("$CURL" --version | head -n 1 | awk '{ print $1, $2 }'), node $("$NODE" --version), $("$HYPERFINE" --version)."
    echo "Servers on CPU $SERVER_CPU, clients on CPU $CLIENT_CPU; TLS 1.3 both ways; figures: median (min–max) of $ROUNDS rounds."
    python3 bench/tls_summary.py "$WRK_TSV" "$MEM_TSV" "$WALL_TSV" "$RESUME_TSV" "$BG_LIST" \
        "$CONNS" "$CLOSE_CONNS" "$DURATION" "$IDLE_N" "$N" "$RESUME_N" "$STIME_PROCS"
}

mkdir -p "$(dirname "$RESULTS")"
summary | tee "$RESULTS"
note "summary also written to $RESULTS"
