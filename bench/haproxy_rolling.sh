#!/usr/bin/env bash
# bench/haproxy_rolling.sh — a rolling restart of two backends behind HAProxy under
# load (run by `make bench-haproxy`; issue 11, "Behind a load balancer").
#
# Per side and round: two backends of one kind on 127.0.0.1 (pinned to CPU 1), Debian's
# haproxy 2.6 in front of them (started here, pinned to CPU 0 with wrk), and
# `wrk -t1 -c64 -d${DURATION}s` through HAProxy. At 25 % of the run backend a is
# stopped with STOP_SIGNAL (SIGTERM), started again on its port and waited for until
# HAProxy's health check has it UP; at 60 % backend b the same way. The errors wrk
# sees are the ones a client of the balancer sees.
#
# HAProxy, as the issue says: health checks `option httpchk GET /healthz` every
# INTER_MS (fall 2, rise 2), `http-reuse safe`, `retries 3`, `option redispatch`, and
# no `retry-on` (so HAProxy retries only connections that fail to open, its default).
# Every backend keeps idle keep-alive connections for 300 s, far longer than HAProxy
# keeps an idle one to it (pool-purge-delay, 5 s), so no error here comes from the
# classic keep-alive race (docs/deploy.md); they come from the restarts.
# Sides:
#   nginx        nginx, 1 worker (bench/lib.sh's config). SIGTERM is nginx's *fast*
#                shutdown (SIGQUIT is its graceful one): what a plain `kill` or a
#                container stop does.
#   node         bench/node_hello.js: SIGTERM → server.close() → exit.
#   ferry-plain  `ferry serve` as it is today: SIGTERM starts the graceful close at once.
#   ferry        `ferry serve --health-path /healthz --drain-delay DRAIN_MS`: after
#                SIGTERM /healthz answers 503 and everything else is served for
#                DRAIN_MS, longer than HAProxy takes to see the 503s (2 × INTER_MS),
#                then the graceful close. Skipped with a note while `ferry serve
#                --help` has no --drain-delay or --health-path.
# The issue's figures for today (30 s, two restarts, SIGTERM, no drain delay):
# ferry 14–26 client read errors per run, nginx 11–15, Node 57–79 plus two 502s.
#
# Environment (defaults in brackets):
#   SIDES [nginx node ferry-plain ferry]  ROUNDS [1]  DURATION seconds [30]  CONNS [64]
#   INTER_MS [200]  DRAIN_MS [1000]  STOP_SIGNAL [TERM]  WRK_TIMEOUT [2s]
#   FERRY [build/ferry]  NODE [node]  NGINX [nginx]  HAPROXY [haproxy]  WRK [wrk]  CURL [curl]
#   RESULTS [build/bench/haproxy-results.md]
# Bounded in time; every process started is killed on exit.
set -euo pipefail

cd "$(dirname "$0")/.."

SIDES=${SIDES:-nginx node ferry-plain ferry}
ROUNDS=${ROUNDS:-1}
DURATION=${DURATION:-30}
CONNS=${CONNS:-64}
INTER_MS=${INTER_MS:-200}
DRAIN_MS=${DRAIN_MS:-1000}
STOP_SIGNAL=${STOP_SIGNAL:-TERM}
WRK_TIMEOUT=${WRK_TIMEOUT:-2s}
FERRY=${FERRY:-build/ferry}
NODE=${NODE:-node}
NGINX=${NGINX:-nginx}
HAPROXY=${HAPROXY:-haproxy}
WRK=${WRK:-wrk}
CURL=${CURL:-curl}
RESULTS=${RESULTS:-build/bench/haproxy-results.md}
QUIET_WAIT=0
SERVER_CPU=1
CLIENT_CPU=0
KEEP_ALIVE_MS=300000 # every backend's idle keep-alive timeout
UP_LIMIT=15          # seconds a restarted backend has to be UP again

BENCH=haproxy
. bench/lib.sh         # die, note, $TMP, LIVE + cleanup, kill_tree, free_port, write_nginx_conf
. bench/restart_lib.sh # wait_for, alive, stop_wait, wrk_counts, help_mentions

# ---- preconditions -----------------------------------------------------------------
for t in "$WRK" "$HAPROXY" "$CURL" taskset; do
    command -v "$t" >/dev/null || die "$t not found (make deps-bench installs wrk and haproxy)"
done
taskset -c "$SERVER_CPU" true 2>/dev/null || die "CPU $SERVER_CPU not available: the benchmark needs 2 CPUs"
[ "$DURATION" -ge 8 ] || die "DURATION must be at least 8 seconds"
ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)

declare -A SKIP=()
for side in $SIDES; do
    case $side in
    nginx) command -v "$NGINX" >/dev/null || SKIP[nginx]="nginx not found (make deps-bench installs nginx-light)" ;;
    node)
        if ! command -v "$NODE" >/dev/null; then
            SKIP[node]="node not found (install Node 20 or set NODE)"
        else
            v=$("$NODE" -e 'process.stdout.write(process.versions.node)')
            [ "${v%%.*}" -ge 20 ] || SKIP[node]="node $v is older than 20"
        fi
        ;;
    ferry-plain) [ -x "$FERRY" ] || SKIP[ferry-plain]="$FERRY not found (run 'make build', or set FERRY)" ;;
    ferry)
        if [ ! -x "$FERRY" ]; then
            SKIP[ferry]="$FERRY not found (run 'make build', or set FERRY)"
        elif ! help_mentions "$FERRY" serve --drain-delay || ! help_mentions "$FERRY" serve --health-path; then
            SKIP[ferry]="'ferry serve --help' has no --drain-delay/--health-path yet (being written): skipped"
        fi
        ;;
    *) die "unknown side '$side' (nginx, node, ferry-plain, ferry)" ;;
    esac
    [ -n "${SKIP[$side]:-}" ] && note "$side: ${SKIP[$side]}"
done

# ---- backends ----------------------------------------------------------------------------
declare -A BPID=() BPORT=() # backend name (a, b) -> pid, port

# start_backend SIDE NAME PORT: start it and wait until it accepts.
start_backend() {
    local side=$1 name=$2 port=$3 log=$TMP/$1.$2.out ready pid
    : >"$log"
    case $side in
    nginx)
        write_nginx_conf "$TMP/nginx-$name" "$port"
        taskset -c "$SERVER_CPU" "$NGINX" -p "$TMP/nginx-$name/" -c "$TMP/nginx-$name/nginx.conf" \
            -e "$TMP/nginx-$name/error.log" >"$log" 2>&1 &
        pid=$!
        ready="port_open $port && [ -n \"\$(children_of $pid)\" ]"
        ;;
    node)
        taskset -c "$SERVER_CPU" "$NODE" bench/node_hello.js "$port" >"$log" 2>&1 &
        pid=$!
        ready="grep -qs '^listening on' '$log'"
        ;;
    ferry-plain | ferry)
        local extra=()
        [ "$side" = ferry ] && extra=(--health-path /healthz --drain-delay "$DRAIN_MS")
        taskset -c "$SERVER_CPU" "$FERRY" serve --quiet --port "$port" --keep-alive-timeout "$KEEP_ALIVE_MS" \
            "${extra[@]}" >"$log" 2>&1 &
        pid=$!
        ready="grep -qs '^listening on' '$log'"
        ;;
    esac
    LIVE[$pid]=1
    BPID[$name]=$pid
    BPORT[$name]=$port
    if ! { wait_for "$ready || ! alive $pid" 15 && alive "$pid"; }; then
        die "$side backend $name did not start on $port: $(tail -n 3 "$log" "$TMP/nginx-$name/error.log" 2>/dev/null)"
    fi
}

# ---- haproxy --------------------------------------------------------------------------------
write_haproxy_cfg() { # FRONT_PORT STATS_PORT
    cat >"$TMP/haproxy.cfg" <<EOF
# bench/haproxy_rolling.sh: the settings issue 11 names, nothing tuned beyond them
global
    nbthread 1
    maxconn 4096
    log stderr format raw local0 info

defaults
    mode http
    log global
    option httplog
    option dontlog-normal        # log only requests that failed somehow
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 10s
    timeout check 1s
    retries 3
    option redispatch
    http-reuse safe
    # no retry-on: HAProxy then retries only connections that could not be opened

frontend fe
    bind 127.0.0.1:$1
    default_backend be

backend be
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
    default-server check inter ${INTER_MS}ms fall 2 rise 2
    server a 127.0.0.1:${BPORT[a]}
    server b 127.0.0.1:${BPORT[b]}

frontend stats
    bind 127.0.0.1:$2
    stats enable
    stats uri /stats
EOF
}

# stats_field PROXY SERVER FIELD: one field of HAProxy's CSV statistics.
stats_field() {
    "$CURL" -s --max-time 2 "http://127.0.0.1:$STATS_PORT/stats;csv" | awk -F, -v px="$1" -v sv="$2" -v f="$3" '
        NR == 1 { sub(/^# /, ""); for (i = 1; i <= NF; i++) col[$i] = i; next }
        $1 == px && $2 == sv { print $(col[f]); exit }'
}

server_up() { [ "$(stats_field be "$1" status)" = UP ]; }

# ---- one run -------------------------------------------------------------------------------
ROWS=$TMP/rows.tsv
: >"$ROWS"

# restart_backend SIDE NAME: stop it, start it again on its port, wait until it is UP.
# Appends "stop_ms up_ms" to RESTART_TIMES.
restart_backend() {
    local side=$1 name=$2 t1
    kill -s "$STOP_SIGNAL" "${BPID[$name]}"
    stop_wait "${BPID[$name]}" 20
    [ "$STOP_KILLED" = 0 ] || note "$side backend $name had to be killed"
    start_backend "$side" "$name" "${BPORT[$name]}"
    t1=$EPOCHREALTIME
    wait_for "server_up $name" "$UP_LIMIT" || note "$side backend $name is not UP again after ${UP_LIMIT} s"
    RESTART_TIMES+=" $STOP_MS/$(awk -v a="$t1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", (b - a) * 1000 }')"
}

run_once() {
    local side=$1 round=$2 out=$TMP/wrk.$1.$2 wpid t0 fe_port ha_pid
    start_backend "$side" a "$(free_port)"
    start_backend "$side" b "$(free_port)"
    fe_port=$(free_port)
    STATS_PORT=$(free_port)
    write_haproxy_cfg "$fe_port" "$STATS_PORT"
    "$HAPROXY" -c -q -f "$TMP/haproxy.cfg" || die "haproxy refuses its config"
    : >"$TMP/haproxy.log"
    taskset -c "$CLIENT_CPU" "$HAPROXY" -db -f "$TMP/haproxy.cfg" 2>"$TMP/haproxy.log" &
    ha_pid=$!
    LIVE[$ha_pid]=1
    wait_for "server_up a && server_up b" 15 || die "haproxy does not see both backends UP: $(tail -n 3 "$TMP/haproxy.log")"

    RESTART_TIMES=""
    t0=$EPOCHREALTIME
    taskset -c "$CLIENT_CPU" "$WRK" -t1 -c"$CONNS" -d"${DURATION}s" --timeout "$WRK_TIMEOUT" \
        "http://127.0.0.1:$fe_port/" >"$out" 2>&1 &
    wpid=$!
    LIVE[$wpid]=1
    sleep "$(awk -v d="$DURATION" 'BEGIN { print d * 0.25 }')"
    restart_backend "$side" a
    sleep "$(awk -v d="$DURATION" -v t0="$t0" -v now="$EPOCHREALTIME" 'BEGIN { s = d * 0.6 - (now - t0); print (s > 0 ? s : 0) }')"
    restart_backend "$side" b
    local late
    late=$(awk -v d="$DURATION" -v t0="$t0" -v now="$EPOCHREALTIME" 'BEGIN { print (now - t0 > d - 1) ? 1 : 0 }')
    [ "$late" = 0 ] || note "$side: the second restart ended less than 1 s before wrk did (raise DURATION)"
    wait_for "! alive $wpid" $((DURATION + 10)) || kill -INT "$wpid" 2>/dev/null || true
    wait "$wpid" 2>/dev/null || true
    unset "LIVE[$wpid]"

    local retr redis h5 logged
    retr=$(stats_field be BACKEND wretr)
    redis=$(stats_field be BACKEND wredis)
    h5=$(stats_field fe FRONTEND hrsp_5xx)
    # the 4-letter termination states of the requests HAProxy logged as abnormal
    logged=$(grep -oE ' [-A-Za-z]{4} [0-9]+/[0-9]+/[0-9]+/[0-9]+/[0-9]+ ' "$TMP/haproxy.log" |
        awk '{ n[$1]++ } END { for (s in n) printf "%s%s×%d", (k++ ? " + " : ""), s, n[s] }')
    kill -TERM "$ha_pid" 2>/dev/null || true
    stop_wait "$ha_pid" 5
    local name
    for name in a b; do
        kill_tree "${BPID[$name]}" TERM
        stop_wait "${BPID[$name]}" 10
    done
    # side round requests connect read write timeout non2xx rps retries redispatches 5xx restarts logged
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$side" "$round" "$(wrk_counts "$out" | tr ' ' '\t')" \
        "${retr:-?}" "${redis:-?}" "${h5:-?}" "${RESTART_TIMES# }" "${logged:--}" >>"$ROWS"
    awk -F'\t' 'END { printf "  %-11s round %s: %s requests: connect %s, read %s, write %s, timeout %s, non-2xx/3xx %s; haproxy retries %s, redispatches %s, 5xx %s; restarts (stop ms/up ms) %s; logged %s\n", $1, $2, $3, $4, $5, $6, $7, $8, $10, $11, $12, $13, $14 }' "$ROWS" >&2
}

for ((round = 1; round <= ROUNDS; round++)); do
    for side in $SIDES; do
        [ -n "${SKIP[$side]:-}" ] && continue
        note "$side, round $round: two backends behind haproxy, wrk -c$CONNS for ${DURATION} s, each backend restarted once"
        run_once "$side" "$round"
    done
done

# ---- the table --------------------------------------------------------------------------------
declare -A BASELINE=(
    [nginx]="11–15 read errors"
    [node]="57–79 read errors + two 502s"
    [ferry-plain]="14–26 read errors"
    [ferry]="target: 0"
)
declare -A HOW=(
    [nginx]="nginx 1 worker, keepalive_timeout 300s; SIG$STOP_SIGNAL (fast shutdown)"
    [node]="bench/node_hello.js, keepAliveTimeout 300 s; SIG$STOP_SIGNAL → server.close()"
    [ferry-plain]="ferry serve --keep-alive-timeout $KEEP_ALIVE_MS; SIG$STOP_SIGNAL"
    [ferry]="ferry serve --keep-alive-timeout $KEEP_ALIVE_MS --health-path /healthz --drain-delay $DRAIN_MS; SIG$STOP_SIGNAL"
)

summary() {
    echo "## Rolling restart behind HAProxy — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) CPUs, kernel $(uname -r). $("$HAPROXY" -v | head -n 1 | cut -d' ' -f1-3), 1 thread, and" \
        "\`wrk -t1 -c$CONNS -d${DURATION}s --timeout $WRK_TIMEOUT\` on CPU $CLIENT_CPU; two backends on CPU $SERVER_CPU," \
        "restarted at 25 % and 60 % of the run; health checks every $INTER_MS ms (fall 2, rise 2); \`http-reuse safe\`," \
        "\`retries 3\`, \`option redispatch\`, no \`retry-on\`. $ROUNDS round(s); per side the figures of each round."
    echo
    echo "| side | requests | connect | read | write | timeout | non-2xx/3xx | failed in all | haproxy retries / redispatches / 5xx | restarts: stop ms / until UP ms | abnormal requests haproxy logged | issue 11 baseline | backends |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    local side
    for side in $SIDES; do
        if [ -n "${SKIP[$side]:-}" ]; then
            echo "| $side | skipped | | | | | | | | | | ${BASELINE[$side]} | ${SKIP[$side]} |"
            continue
        fi
        awk -F'\t' -v s="$side" -v base="${BASELINE[$side]}" -v how="${HOW[$side]}" '
            function add(k, v) { col[k] = col[k] (col[k] == "" ? "" : ", ") v }
            $1 == s {
                add(3, $3); add(4, $4); add(5, $5); add(6, $6); add(7, $7); add(8, $8)
                add(9, ($3 == "-" ? "-" : $4 + $5 + $6 + $7 + $8))
                add(10, $10 " / " $11 " / " $12); add(13, $13); add(14, $14)
            }
            END {
                printf "| %s | %s | %s | %s | %s | %s | %s | **%s** | %s | %s | %s | %s | %s |\n", s, col[3], col[4], col[5], col[6], col[7], col[8], col[9], col[10], col[13], col[14], base, how
            }' "$ROWS"
    done
    echo
    echo "Errors are wrk's (a client of the balancer): connect, read (closed or reset before a response)," \
        "write, timeout (no response within $WRK_TIMEOUT), non-2xx/3xx (status >= 400, e.g. HAProxy's 502/503)." \
        "Abnormal requests are HAProxy's termination states (SD: the server closed the connection mid-response," \
        "SH: in the headers, CD/CH: the client side...), from \`option httplog\` with \`dontlog-normal\`."
}

mkdir -p "$(dirname "$RESULTS")"
summary | tee "$RESULTS"
note "summary also written to $RESULTS"
