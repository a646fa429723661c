#!/usr/bin/env bash
# bench/cores.sh — ferry on more than one loop (run by `make bench-cores`;
# docs/benchmarks.md explains every figure). Servers on 127.0.0.1 only, all
# started here; on a 2-CPU machine the clients share the CPUs with the
# servers, the same for every side.
#
#   1. throughput, 2 workers: `wrk -t2 -c128 -d${DURATION}s` against
#      `ferry serve --workers 2` (one SO_REUSEPORT socket per loop),
#      `ferry serve --workers 2 --shared-listener` (one socket, both loops
#      accept) and nginx `worker_processes 2` with `listen ... reuseport`;
#      ROUNDS rounds, the order rotated each round; medians of req/s.
#   2. a CPU-heavy handler: p99 latency of `wrk -t1 -c32` on / while one client
#      asks /cpu?ms=200 back to back (ferry: offloaded to the thread pool;
#      Node cluster, 2 workers: on the worker's event loop, as Node handlers
#      do), against the same run without it.
#   3. TLS handshakes, 2 workers: threads (`--workers 2`) against processes (two
#      `ferry serve --reuse-port` on one port): full handshakes per second with
#      STIME_PROCS `openssl s_time -new` at once, ECDSA P-256.
#   4. restarts under load: bench/restart.sh (nginx binary upgrade, Node cluster
#      rolling restart, ferry SIGUSR2), RESTARTS in a row.
#
# Environment: ROUNDS [3]  DURATION seconds [5]  PARTS [1 2 3 4]  RESTARTS [10]
#   STIME_PROCS [4]  QUIET_WAIT seconds to wait for a quiet machine [0]
#   FERRY [build/ferry]  NGINX [nginx]  NODE [node]  WRK [wrk]
#   RESULTS [build/bench/cores-results.md]
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
PARTS=${PARTS:-1 2 3 4}
RESTARTS=${RESTARTS:-10}
STIME_PROCS=${STIME_PROCS:-4}
QUIET_WAIT=${QUIET_WAIT:-0}
FERRY=${FERRY:-build/ferry}
NGINX=${NGINX:-nginx}
NODE=${NODE:-node}
WRK=${WRK:-wrk}
RESULTS=${RESULTS:-build/bench/cores-results.md}
NOFILE=65536
CLIENT_CPU=0,1 # no pinning: every CPU for everyone

BENCH=cores
. bench/lib.sh # die, note, $TMP, run_bg, free_port, wrk_run, stime_run, /proc readings...

for t in "$WRK" "$NGINX" "$NODE" openssl taskset python3; do
    command -v "$t" >/dev/null || die "$t not found (make deps-bench installs the peers)"
done
[ -x "$FERRY" ] || die "$FERRY not found (make build)"
ulimit -n "$NOFILE" 2>/dev/null || true
part() { [[ " $PARTS " == *" $1 "* ]]; }
WRK_TSV=$TMP/wrk.tsv
: >"$WRK_TSV"

# ---- servers ---------------------------------------------------------------------
SPID=""
start() { # start NAME: the server NAME on a free port; sets SPID, PORT, URL
    local name=$1
    PORT=$(free_port)
    case $name in
    ferry) "$FERRY" serve --quiet --workers 2 --keep-alive-timeout 300000 --port "$PORT" >"$TMP/s.out" 2>&1 & ;;
    ferry-shared) "$FERRY" serve --quiet --workers 2 --shared-listener --keep-alive-timeout 300000 \
        --port "$PORT" >"$TMP/s.out" 2>&1 & ;;
    nginx)
        write_nginx_conf "$TMP/nginx" "$PORT"
        sed -i "s/^worker_processes 1;/worker_processes 2;/; s/listen 127.0.0.1:$PORT;/listen 127.0.0.1:$PORT reuseport;/" \
            "$TMP/nginx/nginx.conf"
        "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" >"$TMP/s.out" 2>&1 &
        ;;
    node) KEEP_ALIVE_MS=300000 "$NODE" bench/node_cluster.js "$PORT" 2 >"$TMP/s.out" 2>&1 & ;;
    ferry-tls) "$FERRY" serve --quiet --workers 2 --port "$PORT" --tls-cert "$CERTS/ec.crt" \
        --tls-key "$CERTS/ec.key" >"$TMP/s.out" 2>&1 & ;;
    ferry-tls-procs) # two processes, one port: the kernel spreads the connections
        bash -c "'$FERRY' serve --quiet --reuse-port --port $PORT --tls-cert '$CERTS/ec.crt' --tls-key '$CERTS/ec.key' &
                 '$FERRY' serve --quiet --reuse-port --port $PORT --tls-cert '$CERTS/ec.crt' --tls-key '$CERTS/ec.key' &
                 trap 'kill \$(jobs -p)' TERM; wait" >"$TMP/s.out" 2>&1 &
        ;;
    *) die "unknown server $name" ;;
    esac
    SPID=$!
    LIVE[$SPID]=1
    wait_for "port_open $PORT" 10 || die "$name did not start: $(tail -n 3 "$TMP/s.out")"
    [ "$name" = node ] && wait_for "grep -q listening '$TMP/s.out'" 10
    [ "$name" = ferry-tls-procs ] && sleep 0.3 # the second process
    URL=http://127.0.0.1:$PORT/
    return 0
}
stop() {
    kill_tree "$SPID" TERM
    wait_exit "$SPID" 5
}

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR) print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
col() { # col NAME MODE FIELD: the field of WRK_TSV's lines for NAME/MODE, one per line
    awk -F'\t' -v n="$1" -v m="$2" -v f="$3" '$1 == n && $2 == m { print $f }' "$WRK_TSV"
}

{
    echo "# bench/cores.sh — $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) CPUs"
    echo
} >"$TMP/results.md"

# ---- 1. throughput --------------------------------------------------------------------
if part 1; then
    note "1. throughput with 2 workers: wrk -t2 -c128 -d${DURATION}s, $ROUNDS rounds"
    sides=(ferry ferry-shared nginx)
    for ((round = 1; round <= ROUNDS; round++)); do
        quiet_moment >/dev/null
        for s in $(rotate $((round - 1)) "${sides[@]}"); do
            start "$s"
            run_bg timeout 30 "$WRK" -t2 -c128 -d1s "$URL" >/dev/null 2>&1 || true # warm-up
            wrk_run "$s" plain "$round" -t2 -c128 -d"${DURATION}s" --latency "$URL"
            stop
        done
    done
    n=$(col nginx plain 4 | median)
    {
        echo "## 1. Throughput, 2 workers (wrk -t2 -c128, median of $ROUNDS)"
        echo
        echo "| server | req/s | vs nginx | server CPU µs/req | vs nginx | p99 ms | errors |"
        echo "|---|---|---|---|---|---|---|"
        nc=$(col nginx plain 6 | median)
        for s in "${sides[@]}"; do
            r=$(col "$s" plain 4 | median)
            c=$(col "$s" plain 6 | median)
            printf "| %s | %.0f | %.2fx | %s | %.2fx | %s | %s |\n" "$s" "$r" \
                "$(awk -v a="$r" -v b="$n" 'BEGIN { print a / b }')" "$c" \
                "$(awk -v a="$c" -v b="$nc" 'BEGIN { print a / b }')" \
                "$(col "$s" plain 10 | median)" "$(col "$s" plain 11 | paste -sd+ | bc)"
        done
        echo
    } >>"$TMP/results.md"
fi

# ---- 2. p99 next to a CPU-heavy handler ----------------------------------------------------
cpu_client() { # back-to-back /cpu?ms=200 until $TMP/stop-cpu exists
    while [ ! -e "$TMP/stop-cpu" ]; do curl -s -o /dev/null --max-time 5 "${URL}cpu?ms=200" || true; done
}
if part 2; then
    note "2. p99 of wrk -t1 -c32 on / with and without a client asking /cpu?ms=200 back to back"
    for ((round = 1; round <= ROUNDS; round++)); do
        for s in ferry node; do
            start "$s"
            run_bg timeout 30 "$WRK" -t1 -c32 -d1s "$URL" >/dev/null 2>&1 || true
            wrk_run "$s" alone "$round" -t1 -c32 -d"${DURATION}s" --latency "$URL"
            rm -f "$TMP/stop-cpu"
            cpu_client &
            cp=$!
            LIVE[$cp]=1
            sleep 0.3
            wrk_run "$s" cpu-200ms "$round" -t1 -c32 -d"${DURATION}s" --latency "$URL"
            touch "$TMP/stop-cpu"
            wait "$cp" || true
            unset "LIVE[$cp]"
            stop
        done
    done
    {
        echo "## 2. p99 latency of / next to a 200 ms CPU-heavy handler (wrk -t1 -c32, median of $ROUNDS)"
        echo
        echo "| server | p99 alone | p99 with /cpu?ms=200 | req/s alone | req/s with |"
        echo "|---|---|---|---|---|"
        for s in ferry node; do
            printf "| %s | %s ms | %s ms | %.0f | %.0f |\n" "$s" "$(col "$s" alone 10 | median)" \
                "$(col "$s" cpu-200ms 10 | median)" "$(col "$s" alone 4 | median)" "$(col "$s" cpu-200ms 4 | median)"
        done
        echo
        echo "ferry runs /cpu on the thread pool (ferry_res_offload); the Node cluster's handler"
        echo "spins on its worker's event loop, as a Node handler does without worker_threads."
        echo
    } >>"$TMP/results.md"
fi

# ---- 3. TLS handshakes: threads or processes ------------------------------------------------
if part 3; then
    CERTS=$TMP/certs
    tests/support/make_certs.sh "$CERTS" >/dev/null
    note "3. full TLS handshakes, 2 workers: threads vs processes, $STIME_PROCS openssl s_time -new"
    for ((round = 1; round <= ROUNDS; round++)); do
        quiet_moment >/dev/null
        for s in $(rotate $((round - 1)) ferry-tls ferry-tls-procs); do
            start "$s"
            stime_run "$s" full "$round"
            stop
        done
    done
    t=$(col ferry-tls full 4 | median)
    p=$(col ferry-tls-procs full 4 | median)
    {
        echo "## 3. Full TLS handshakes per second, 2 workers ($STIME_PROCS x openssl s_time -new, ECDSA P-256, median of $ROUNDS)"
        echo
        echo "| workers as | handshakes/s | server CPU µs each |"
        echo "|---|---|---|"
        printf "| threads (--workers 2) | %.0f | %s |\n" "$t" "$(col ferry-tls full 6 | median)"
        printf "| processes (2 x --reuse-port) | %.0f | %s |\n" "$p" "$(col ferry-tls-procs full 6 | median)"
        printf "\nprocesses / threads: %.2fx\n\n" "$(awk -v a="$p" -v b="$t" 'BEGIN { print a / b }')"
    } >>"$TMP/results.md"
fi

# ---- 4. restarts under load -------------------------------------------------------------------
if part 4; then
    note "4. restarts under load: bench/restart.sh, $RESTARTS restarts each"
    RESTARTS=$RESTARTS RESULTS=$TMP/restart.md bench/restart.sh >&2 || note "bench/restart.sh failed"
    {
        echo "## 4. Restarts under load"
        echo
        [ -s "$TMP/restart.md" ] && sed -n '/^|/p' "$TMP/restart.md"
        echo
    } >>"$TMP/results.md"
fi

mkdir -p "$(dirname "$RESULTS")"
cp "$TMP/results.md" "$RESULTS"
cat "$RESULTS"
