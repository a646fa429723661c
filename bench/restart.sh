#!/usr/bin/env bash
# bench/restart.sh — failed requests while a server restarts RESTARTS times in a row
# under continuous load (run by `make bench-restart`; issue 11's restart table).
#
# For each side, one server on 127.0.0.1 pinned to CPU 1, and `wrk -t1 -c64` pinned
# to CPU 0 running from WARMUP seconds before the first restart until TAIL seconds
# after the last one (wrk is stopped with SIGINT, which prints its summary). A
# restart starts once the previous one has finished, PAUSE seconds later. Sides:
#   nginx  binary upgrade done the documented way: USR2 to the master (it executes
#          a new master, which inherits the listening sockets), once the new master
#          has its worker WINCH to the old master (its workers finish and exit),
#          once they are gone QUIT to the old master. 1 worker, daemon mode (nginx
#          ignores USR2 in a master whose parent is still the process that started it).
#   node   bench/node_cluster.js (NODE_WORKERS workers): SIGUSR2 to the primary
#          replaces the workers one at a time, pm2-style: fork a new one, wait until
#          it listens, disconnect the old one, SIGKILL it after 1600 ms.
#   ferry  `ferry serve --pid-file FILE`, SIGUSR2 to the pid in FILE: the process
#          re-executes itself and the new one rewrites FILE once it accepts; a
#          restart is done when FILE names a new process and the old one is gone.
#          Skipped with a note while `ferry serve --help` has no --pid-file.
#   ferry-tls  the same over HTTPS (an ECDSA certificate made at run time by
#          tests/support/make_certs.sh; wrk does not verify it): the listening
#          sockets and the session ticket keys go to the new process.
# Failed requests are wrk's own counts: socket errors (connect, read, write,
# timeout: no response within WRK_TIMEOUT) and responses with a status >= 400.
#
# Environment (defaults in brackets):
#   SIDES [nginx node ferry ferry-tls]  RESTARTS [10]  PAUSE seconds [1]  WARMUP [2]  TAIL [2]
#   CONNS [64]  WRK_TIMEOUT [2s]  NODE_WORKERS [2]  FERRY [build/ferry]
#   NODE [node]  NGINX [nginx]  WRK [wrk]  RESULTS [build/bench/restart-results.md]
# Bounded in time (each restart has 30 s to finish, wrk a cap of its own); every
# process started is killed on exit.
set -euo pipefail

cd "$(dirname "$0")/.."

SIDES=${SIDES:-nginx node ferry ferry-tls}
RESTARTS=${RESTARTS:-10}
PAUSE=${PAUSE:-1}
WARMUP=${WARMUP:-2}
TAIL=${TAIL:-2}
CONNS=${CONNS:-64}
WRK_TIMEOUT=${WRK_TIMEOUT:-2s}
NODE_WORKERS=${NODE_WORKERS:-2}
FERRY=${FERRY:-build/ferry}
NODE=${NODE:-node}
NGINX=${NGINX:-nginx}
WRK=${WRK:-wrk}
RESULTS=${RESULTS:-build/bench/restart-results.md}
QUIET_WAIT=0
SERVER_CPU=1
CLIENT_CPU=0
RESTART_LIMIT=30 # seconds one restart may take

BENCH=restart
. bench/lib.sh         # die, note, $TMP, LIVE + cleanup, kill_tree, free_port, write_nginx_conf
. bench/restart_lib.sh # wait_for, alive, stop_wait, wrk_counts, help_mentions

# ---- preconditions ---------------------------------------------------------------
command -v "$WRK" >/dev/null || die "wrk not found (make deps-bench installs it)"
command -v taskset >/dev/null || die "taskset not found (util-linux)"
taskset -c "$SERVER_CPU" true 2>/dev/null || die "CPU $SERVER_CPU not available: the benchmark needs 2 CPUs"
[[ "$RESTARTS" =~ ^[0-9]+$ ]] || die "RESTARTS must be a number"
ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)

declare -A SKIP=() # side -> why it is skipped
for side in $SIDES; do
    case $side in
    nginx)
        NGINX_BIN=$(command -v "$NGINX" || true)
        # the new master is executed from argv[0]: it must be a path
        [ -n "$NGINX_BIN" ] || SKIP[nginx]="nginx not found (make deps-bench installs nginx-light)"
        ;;
    node)
        if ! command -v "$NODE" >/dev/null; then
            SKIP[node]="node not found (install Node 20 or set NODE)"
        else
            v=$("$NODE" -e 'process.stdout.write(process.versions.node)')
            [ "${v%%.*}" -ge 20 ] || SKIP[node]="node $v is older than 20"
        fi
        ;;
    ferry | ferry-tls)
        if [ ! -x "$FERRY" ]; then
            SKIP[$side]="$FERRY not found (run 'make build', or set FERRY)"
        elif ! help_mentions "$FERRY" serve --pid-file; then
            SKIP[$side]="'ferry serve --help' has no --pid-file yet (SIGUSR2 re-exec is being written): skipped"
        elif [ "$side" = ferry-tls ] && ! tests/support/make_certs.sh "$TMP/certs" >/dev/null; then
            SKIP[$side]="could not make the test certificates (openssl)"
        fi
        ;;
    *) die "unknown side '$side' (nginx, node, ferry, ferry-tls)" ;;
    esac
    [ -n "${SKIP[$side]:-}" ] && note "$side: ${SKIP[$side]}"
done

# ---- the sides: start, restart once, stop ---------------------------------------------
# start_SIDE sets SPID (the process to signal) and PORT; restart_SIDE N returns 1 if
# the restart did not complete (RESTART_WHY says why); stop_SIDE ends it.

start_nginx() {
    PORT=$(free_port)
    write_nginx_conf "$TMP/nginx" "$PORT"
    sed -i 's/^daemon off;/daemon on;/' "$TMP/nginx/nginx.conf"
    rm -f "$TMP/nginx/nginx.pid" "$TMP/nginx/nginx.pid.oldbin"
    taskset -c "$SERVER_CPU" "$NGINX_BIN" -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf" \
        -e "$TMP/nginx/error.log" >"$TMP/nginx.out" 2>&1 || die "nginx did not start: $(tail -n 3 "$TMP/nginx/error.log" 2>/dev/null)"
    wait_for "[ -s '$TMP/nginx/nginx.pid' ]" 10 || die "nginx wrote no pid file"
    SPID=$(cat "$TMP/nginx/nginx.pid")
    LIVE[$SPID]=1
    wait_for "port_open $PORT && [ -n \"\$(children_of $SPID)\" ]" 10 || die "nginx does not accept on $PORT"
}

restart_nginx() {
    local old=$SPID new
    kill -USR2 "$old"
    if ! wait_for "[ -s '$TMP/nginx/nginx.pid.oldbin' ] && [ \"\$(cat '$TMP/nginx/nginx.pid' 2>/dev/null)\" != $old ] && [ -s '$TMP/nginx/nginx.pid' ]" "$RESTART_LIMIT"; then
        RESTART_WHY="no new master after USR2: $(tail -n 2 "$TMP/nginx/error.log")"
        return 1
    fi
    new=$(cat "$TMP/nginx/nginx.pid")
    LIVE[$new]=1
    if ! wait_for "[ -n \"\$(children_of $new)\" ]" "$RESTART_LIMIT"; then
        RESTART_WHY="the new master $new started no worker"
        return 1
    fi
    local workers
    workers=$(children_of "$old" | tr ' ' '\n' | grep -vx "$new" || true)
    kill -WINCH "$old"
    local w
    for w in $workers; do
        wait_for "! alive $w" "$RESTART_LIMIT" || { RESTART_WHY="an old worker did not exit after WINCH"; return 1; }
    done
    kill -QUIT "$old"
    stop_wait "$old" "$RESTART_LIMIT"
    SPID=$new
}

stop_nginx() {
    kill -QUIT "$SPID" 2>/dev/null || true
    stop_wait "$SPID" 10
}

start_node() {
    PORT=$(free_port)
    taskset -c "$SERVER_CPU" "$NODE" bench/node_cluster.js "$PORT" "$NODE_WORKERS" >"$TMP/node.out" 2>"$TMP/node.err" &
    SPID=$!
    LIVE[$SPID]=1
    wait_for "grep -qs '^listening on' '$TMP/node.out' || ! alive $SPID" 20
    if ! { alive "$SPID" && grep -qs '^listening on' "$TMP/node.out"; }; then
        die "node cluster did not start: $(tail -n 3 "$TMP/node.err")"
    fi
}

restart_node() {
    kill -USR2 "$SPID"
    if ! wait_for "grep -qsx 'restarted $1' '$TMP/node.out'" "$RESTART_LIMIT"; then
        RESTART_WHY="the primary did not report 'restarted $1'"
        return 1
    fi
}

stop_node() {
    kill -TERM "$SPID" 2>/dev/null || true
    stop_wait "$SPID" 10
}

start_ferry() {
    PORT=$(free_port)
    rm -f "$TMP/ferry.pid"
    taskset -c "$SERVER_CPU" "$FERRY" serve --quiet --port "$PORT" --pid-file "$TMP/ferry.pid" \
        "$@" >"$TMP/ferry.out" 2>"$TMP/ferry.err" &
    SPID=$!
    LIVE[$SPID]=1
    wait_for "[ -s '$TMP/ferry.pid' ] && port_open $PORT || ! alive $SPID" 20
    if ! { alive "$SPID" && [ -s "$TMP/ferry.pid" ]; }; then
        die "ferry serve did not start: $(tail -n 3 "$TMP/ferry.err")"
    fi
    SPID=$(cat "$TMP/ferry.pid")
    LIVE[$SPID]=1
}

restart_ferry() {
    local old=$SPID new
    kill -USR2 "$old"
    if ! wait_for "[ -s '$TMP/ferry.pid' ] && [ \"\$(cat '$TMP/ferry.pid')\" != $old ]" "$RESTART_LIMIT"; then
        RESTART_WHY="the pid file still names $old: $(tail -n 2 "$TMP/ferry.err")"
        return 1
    fi
    new=$(cat "$TMP/ferry.pid")
    LIVE[$new]=1
    stop_wait "$old" "$RESTART_LIMIT"
    [ "$STOP_KILLED" = 0 ] || { RESTART_WHY="the old process $old had to be killed"; return 1; }
    SPID=$new
}

stop_ferry() {
    kill -TERM "$SPID" 2>/dev/null || true
    stop_wait "$SPID" 15
}

start_ferry-tls() { start_ferry --tls-cert "$TMP/certs/ec.crt" --tls-key "$TMP/certs/ec.key"; }
restart_ferry-tls() { restart_ferry "$@"; }
stop_ferry-tls() { stop_ferry; }

declare -A HOW=(
    [nginx]="USR2 to the master; WINCH to the old master once the new one has its worker; QUIT once the old workers are gone"
    [node]="SIGUSR2 to the primary of bench/node_cluster.js ($NODE_WORKERS workers): fork, wait for listening, disconnect the old worker (SIGKILL after 1600 ms), one at a time"
    [ferry]="SIGUSR2 to the pid in --pid-file; done when the file names the new process and the old one has exited"
    [ferry-tls]="the same over HTTPS (ECDSA P-256): sockets and session ticket keys handed to the new process"
)

# ---- one side under load ----------------------------------------------------------------
ROWS=$TMP/rows.tsv
: >"$ROWS"

run_side() {
    local side=$1 out=$TMP/wrk.$1 ndone=0 i ms=() why="" cap wpid t0 scheme=http
    cap=$((WARMUP + RESTARTS * (PAUSE + RESTART_LIMIT) + TAIL + 10))
    "start_$side"
    [ "$side" = ferry-tls ] && scheme=https
    note "$side: listening on $PORT; wrk -t1 -c$CONNS through $RESTARTS restarts"
    taskset -c "$CLIENT_CPU" "$WRK" -t1 -c"$CONNS" -d"${cap}s" --timeout "$WRK_TIMEOUT" \
        "$scheme://127.0.0.1:$PORT/" >"$out" 2>&1 &
    wpid=$!
    LIVE[$wpid]=1
    sleep "$WARMUP"
    for ((i = 1; i <= RESTARTS; i++)); do
        RESTART_WHY=""
        t0=$EPOCHREALTIME
        if ! "restart_$side" "$i"; then
            why="restart $i failed: $RESTART_WHY"
            note "$side: $why"
            break
        fi
        ms+=("$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", (b - a) * 1000 }')")
        ndone=$i
        sleep "$PAUSE"
    done
    sleep "$TAIL"
    kill -INT "$wpid" 2>/dev/null || true
    wait "$wpid" 2>/dev/null || true
    unset "LIVE[$wpid]"
    "stop_$side"
    local med=-
    if [ "${#ms[@]}" -gt 0 ]; then
        med=$(printf '%s\n' "${ms[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    fi
    local counts
    counts=$(wrk_counts "$out")
    # side, restarts done, requests, connect, read, write, timeout, non2xx, req/s, median ms, note
    printf '%s\t%s\t%s\t%s\t%s\n' "$side" "$ndone" "$(tr ' ' '\t' <<<"$counts")" "$med" "$why" >>"$ROWS"
    awk -F'\t' 'END { printf "  %-6s %s/%s restarts, %s requests: connect %s, read %s, write %s, timeout %s, non-2xx/3xx %s\n", $1, $2, '"$RESTARTS"', $3, $4, $5, $6, $7, $8 }' "$ROWS" >&2
}

for side in $SIDES; do
    if [ -n "${SKIP[$side]:-}" ]; then
        printf '%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t%s\n' "$side" "${SKIP[$side]}" >>"$ROWS"
        continue
    fi
    run_side "$side"
done

# ---- the table ------------------------------------------------------------------------------
summary() {
    echo "## Restarts under load — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) CPUs, kernel $(uname -r). Load: \`wrk -t1 -c$CONNS --timeout $WRK_TIMEOUT\` on CPU $CLIENT_CPU" \
        "from ${WARMUP} s before the first restart to ${TAIL} s after the last; servers on CPU $SERVER_CPU;" \
        "$RESTARTS restarts in a row, ${PAUSE} s apart."
    local versions=()
    [[ " $SIDES " == *" nginx "* ]] && [ -n "${NGINX_BIN:-}" ] && versions+=("nginx $("$NGINX_BIN" -v 2>&1 | sed 's/.*nginx\///')")
    [[ " $SIDES " == *" node "* ]] && command -v "$NODE" >/dev/null && versions+=("node $("$NODE" --version)")
    if [ "${#versions[@]}" -gt 0 ]; then
        local joined
        joined=$(IFS=,; echo "${versions[*]}")
        echo "Peers: ${joined//,/, }."
    fi
    echo
    echo "| side | restarts | requests | req/s | connect errors | read errors | write errors | timeouts | non-2xx/3xx | failed in all | restart ms (median) | how it restarts |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    while IFS=$'\t' read -r side ndone reqs c r w t n rps med why; do
        local total=-
        [ "$reqs" != - ] && total=$((c + r + w + t + n))
        if [ "$ndone" = - ]; then
            echo "| $side | skipped | – | – | – | – | – | – | – | – | – | ${why} |"
        else
            echo "| $side | $ndone/$RESTARTS | $reqs | $rps | $c | $r | $w | $t | $n | **$total** | $med | ${HOW[$side]}${why:+ — **$why**} |"
        fi
    done <"$ROWS"
    echo
    echo "Errors are wrk's: connect (refused or failed), read (the connection closed or reset before a" \
        "response), write, timeout (no response within $WRK_TIMEOUT), non-2xx/3xx (status >= 400)."
}

mkdir -p "$(dirname "$RESULTS")"
summary | tee "$RESULTS"
note "summary also written to $RESULTS"
