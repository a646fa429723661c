#!/usr/bin/env bash
# bench/server.sh — the ferry server against nginx and Node 20 on this machine
# (run by `make bench-server`; docs/benchmarks.md explains every figure).
#
# Three measurements, each server started by this script on 127.0.0.1 only:
#   1. throughput: `wrk -t1 -c64 -d5s`, plain and with 16 requests pipelined per
#      write, server pinned to CPU 1 and wrk to CPU 0; ROUNDS rounds, the server
#      order rotated each round; medians of req/s and server CPU µs per request
#      (utime+stime of the server's process tree from /proc, ÷ requests).
#   2. memory: user-space bytes per idle keep-alive connection, the VmRSS delta of
#      the server's process tree with IDLE_N connections open (one request each).
#   3. graceful close: with CLOSE_N idle keep-alive connections open, the time from
#      the stop signal to the server process's exit (ferry: SIGTERM; nginx: SIGQUIT,
#      which is what `nginx -s quit` sends, and `nginx -s quit` itself; Node:
#      SIGTERM, whose handler calls server.close()); once with a client that closes
#      its end on the server's FIN, and once with a lazy one that does not (as a
#      connection pool that notices only when it reuses a connection).
# The method is the one the project's first peer measurements used, so the peers' figures can be
# compared with the ones measured there.
#
# Environment (defaults in brackets):
#   FERRY_SERVER_CMD  ferry server command; the port is appended
#                     [build/ferry serve --quiet --port], relative to the repo root
#   SERVERS           which servers to run [ferry nginx node]
#   ROUNDS [3]  DURATION seconds [5]  MEM_ROUNDS [3]  CLOSE_ROUNDS [5]  LAZY_ROUNDS [3]
#   IDLE_N [5000]  CLOSE_N [1000]  NODE [node]  NGINX [nginx]  WRK [wrk]
#   QUIET_WAIT        seconds, in all, to wait for other processes to go quiet
#                     before server starts in the throughput part [0]
#   RESULTS           where the summary is also written [build/bench/server-results.md]
# Everything is bounded in time; every server started is killed on exit.
set -euo pipefail

cd "$(dirname "$0")/.."

FERRY_SERVER_CMD=${FERRY_SERVER_CMD:-build/ferry serve --quiet --port}
SERVERS=${SERVERS:-ferry nginx node}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
MEM_ROUNDS=${MEM_ROUNDS:-3}
CLOSE_ROUNDS=${CLOSE_ROUNDS:-5}
LAZY_ROUNDS=${LAZY_ROUNDS:-3}
QUIET_WAIT=${QUIET_WAIT:-0}
IDLE_N=${IDLE_N:-5000}
CLOSE_N=${CLOSE_N:-1000}
NODE=${NODE:-node}
NGINX=${NGINX:-nginx}
WRK=${WRK:-wrk}
RESULTS=${RESULTS:-build/bench/server-results.md}
CONNS=64
DEPTH=16
SERVER_CPU=1
CLIENT_CPU=0

BENCH=server
. bench/lib.sh # die, note, $TMP, run_bg, free_port, write_nginx_conf, /proc readings...

# ---- preconditions -------------------------------------------------------------
command -v "$WRK" >/dev/null || die "wrk not found (make deps-bench installs it)"
command -v taskset >/dev/null || die "taskset not found (util-linux)"
taskset -c "$SERVER_CPU" true 2>/dev/null || die "CPU $SERVER_CPU not available: the benchmark needs 2 CPUs"
read -r -a FERRY_CMD <<<"$FERRY_SERVER_CMD"
command -v "${FERRY_CMD[0]}" >/dev/null || [ -x "${FERRY_CMD[0]}" ] ||
    die "ferry server command '${FERRY_CMD[0]}' not found (run 'make build', or set FERRY_SERVER_CMD)"

want() { [[ " $SERVERS " == *" $1 "* ]]; }
if want nginx && ! command -v "$NGINX" >/dev/null; then
    die "nginx not found (make deps-bench installs nginx-light)"
fi
NODE_NOTE=""
if want node; then
    if ! command -v "$NODE" >/dev/null; then
        NODE_NOTE="node not found: the Node rows are skipped (install Node 20 or set NODE=/path/to/node)"
    else
        node_version=$("$NODE" -e 'process.stdout.write(process.versions.node)')
        if [ "${node_version%%.*}" -lt 20 ]; then
            NODE_NOTE="node $node_version is older than 20: the Node rows are skipped"
        fi
    fi
    if [ -n "$NODE_NOTE" ]; then
        note "$NODE_NOTE"
        SERVERS=$(echo " $SERVERS " | sed 's/ node / /')
    fi
fi
read -r -a SERVER_LIST <<<"$SERVERS"
[ "${#SERVER_LIST[@]}" -gt 0 ] || die "no servers to run"

# Both the servers and the idle-connection client need thousands of descriptors.
ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
[ "$NOFILE" -gt $((IDLE_N + 100)) ] ||
    die "RLIMIT_NOFILE hard limit $NOFILE is too low for IDLE_N=$IDLE_N"

# The idle-connection client is plain C with no dependencies; build it here.
IDLE_CONNS=build/bench/idle_conns
if [ ! -x "$IDLE_CONNS" ] || [ bench/idle_conns.c -nt "$IDLE_CONNS" ]; then
    mkdir -p build/bench
    "${CC:-cc}" -std=c17 -O2 -Wall -Wextra -o "$IDLE_CONNS" bench/idle_conns.c
fi

# ---- starting and stopping servers ------------------------------------------------
# start_server NAME: starts it pinned on SERVER_CPU; sets SPID and PORT. A server
# that dies before it is ready (its port was taken meanwhile) is tried again on
# another port, three times in all.
start_server() {
    local name=$1 log=$TMP/$1.out try ready
    for try in 1 2 3; do
        PORT=$(free_port)
        : >"$log"
        case $name in
        ferry)
            taskset -c "$SERVER_CPU" "${FERRY_CMD[@]}" "$PORT" >"$log" 2>"$TMP/ferry.err" &
            ready="grep -qs '^listening on' '$log'"
            ;;
        nginx)
            write_nginx_conf "$TMP/nginx" "$PORT"
            taskset -c "$SERVER_CPU" "$NGINX" -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf" \
                -e "$TMP/nginx/error.log" >"$log" 2>&1 &
            ready="port_open $PORT && [ -n \"\$(children_of $!)\" ]"
            ;;
        node)
            taskset -c "$SERVER_CPU" "$NODE" bench/node_hello.js "$PORT" >"$log" 2>&1 &
            ready="grep -qs '^listening on' '$log'"
            ;;
        esac
        SPID=$!
        LIVE[$SPID]=1
        if wait_for "$ready || ! alive $SPID" 10 && alive "$SPID"; then
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

stop_server() { # stop_server NAME: a fast stop between measurements
    kill_tree "$SPID" TERM
    wait_exit "$SPID" 5
}

# ---- 1. throughput -------------------------------------------------------------------
WRK_TSV=$TMP/wrk.tsv
: >"$WRK_TSV"

# run_wrk NAME MODE ROUND: one timed wrk run against the running server.
run_wrk() {
    local script=() extra=()
    if [ "$2" = pipelined ]; then
        script=(-s bench/pipeline.lua)
        extra=(-- "$DEPTH")
    fi
    wrk_run "$1" "$2" "$3" -t1 -c"$CONNS" -d"${DURATION}s" --latency "${script[@]}" \
        "http://127.0.0.1:$PORT/" "${extra[@]}"
}

note "throughput: wrk -t1 -c$CONNS -d${DURATION}s, plain and $DEPTH pipelined, $ROUNDS rounds (servers: ${SERVER_LIST[*]})"
for ((round = 1; round <= ROUNDS; round++)); do
    for name in $(rotate $((round - 1)) "${SERVER_LIST[@]}"); do
        bg=$(quiet_moment)
        [ "$bg" -gt 25 ] && note "other processes use ${bg}% of a core right now: expect distorted figures"
        start_server "$name"
        # 1 s warm-up per server start, as in the baselines.
        run_bg timeout 30 taskset -c "$CLIENT_CPU" "$WRK" -t1 -c"$CONNS" -d1s "http://127.0.0.1:$PORT/" >/dev/null 2>&1 || true
        run_wrk "$name" plain "$round"
        run_wrk "$name" pipelined "$round"
        stop_server "$name"
    done
done

# ---- 2. memory per idle keep-alive connection -----------------------------------------
MEM_TSV=$TMP/mem.tsv
: >"$MEM_TSV"
note "memory: $IDLE_N idle keep-alive connections (one request each), $MEM_ROUNDS rounds"
for ((round = 1; round <= MEM_ROUNDS; round++)); do
    for name in $(rotate $((round - 1)) "${SERVER_LIST[@]}"); do
        start_server "$name"
        idle_rss_round "$name" "$round" "$IDLE_CONNS" 30 25
        stop_server "$name"
    done
done

# ---- 3. graceful close with idle connections --------------------------------------------
CLOSE_TSV=$TMP/close.tsv
: >"$CLOSE_TSV"

# run_close VARIANT CLIENT_MODE ROUND: CLOSE_N idle connections, the stop signal,
# the time until the server process is gone. CLIENT_MODE is idle_conns' mode:
# `req` closes its end as soon as the server's FIN arrives, `lazy` does not.
run_close() {
    local variant=$1 mode=$2 round=$3 name=${1%%-*} out cpid t0 t1 ok closed first last inproc
    quiet_moment >/dev/null
    start_server "$name"
    out=$TMP/close.$variant.$mode.$round
    taskset -c "$CLIENT_CPU" "$IDLE_CONNS" "$PORT" "$CLOSE_N" 20 "$mode" >"$out" 2>&1 &
    cpid=$!
    LIVE[$cpid]=1
    wait_for "grep -qs '^ready' '$out'" 25 || true
    sleep 0.3
    t0=$EPOCHREALTIME
    case $variant in
    ferry | node) kill -TERM "$SPID" ;;
    nginx) kill -QUIT "$SPID" ;;
    nginx-s-quit) "$NGINX" -p "$TMP/nginx/" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log" -s quit ;;
    esac
    wait_exit "$SPID" 15
    t1=$EPOCHREALTIME
    # A `req` client leaves once every connection is closed; a lazy one is told to.
    [ "$mode" = lazy ] && kill -TERM "$cpid" 2>/dev/null
    wait_for "! alive $cpid" 3 || kill -TERM "$cpid" 2>/dev/null || true
    wait "$cpid" 2>/dev/null || true
    unset "LIVE[$cpid]"
    read -r _ ok _ <<<"$(grep '^ready' "$out" || echo "ready 0 0")"
    read -r _ closed _ first last <<<"$(grep '^closed' "$out" || echo "closed 0 0 0 0")"
    inproc=$(awk '/^close_ms/ { print $2 }' "$TMP/$name.out")
    [ "$mode" = lazy ] && variant=$variant/lazy
    awk -v v="$variant" -v r="$round" -v ok="$ok" -v t0="$t0" -v t1="$t1" -v cl="$closed" -v f="$first" \
        -v l="$last" -v st="$EXIT_STATUS" -v k="$KILLED" -v ip="${inproc:--}" 'BEGIN {
        printf "%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s\n", v, r, ok, (t1 - t0) * 1000,
            (f > 0 ? sprintf("%.2f", (f / 1e6 - t0) * 1000) : "-"),
            (l > 0 ? sprintf("%.2f", (l / 1e6 - t0) * 1000) : "-"), cl, st, k, ip }' >>"$CLOSE_TSV"
    tail -n 1 "$CLOSE_TSV" | awk -F'\t' '{ printf "  %-18s round %s: %s idle, exit after %s ms (client saw all closed at %s ms, %s closed)%s%s\n", $1, $2, $3, $4, $6, $7, ($8 != 0 ? ", exit status " $8 : ""), ($9 == 1 ? ", KILLED by the watchdog" : "") }' >&2
}

close_variants=()
lazy_variants=()
for name in "${SERVER_LIST[@]}"; do
    case $name in
    nginx) close_variants+=(nginx nginx-s-quit) ;;
    *) close_variants+=("$name") ;;
    esac
    lazy_variants+=("$name")
done
note "graceful close: $CLOSE_N idle keep-alive connections, $CLOSE_ROUNDS rounds"
for ((round = 1; round <= CLOSE_ROUNDS; round++)); do
    n=${#close_variants[@]}
    for ((i = 0; i < n; i++)); do
        run_close "${close_variants[$(((i + round - 1) % n))]}" req "$round"
    done
done
note "graceful close, lazy client (leaves its end open after the server's FIN): $LAZY_ROUNDS rounds"
for ((round = 1; round <= LAZY_ROUNDS; round++)); do
    n=${#lazy_variants[@]}
    for ((i = 0; i < n; i++)); do
        run_close "${lazy_variants[$(((i + round - 1) % n))]}" lazy "$round"
    done
done

# ---- summary ---------------------------------------------------------------------------
summary() {
    echo "## ferry server benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), kernel $(uname -r)."
    local versions
    versions="nginx $("$NGINX" -v 2>&1 | sed 's/.*version: nginx\///') (1 worker)"
    want node && versions+=", node $("$NODE" --version)"
    echo "ferry: \`$FERRY_SERVER_CMD PORT\`; $versions."
    echo "Servers on CPU $SERVER_CPU, clients on CPU $CLIENT_CPU. Figures: median (min–max) of $ROUNDS rounds."
    [ -n "$NODE_NOTE" ] && echo && echo "Note: $NODE_NOTE."
    if [ -s "$BG_LIST" ] || [ -s "$WRK_TSV" ]; then
        echo
        { sort -n "$BG_LIST"; echo "--"; cut -f13 "$WRK_TSV" | sort -n; } | awk '
            $1 == "--" { part = 2; next }
            part != 2 { b[++nb] = $1 } part == 2 { w[++nw] = $1 }
            END {
                if (nb) printf "Other processes before each server start: median %d%%, max %d%% of one core. ", b[int((nb + 1) / 2)], b[nb]
                if (nw) printf "During the wrk runs: median %d%%, max %d%%.", w[int((nw + 1) / 2)], w[nw]
                if ((nb && b[int((nb + 1) / 2)] > 10) || (nw && w[int((nw + 1) / 2)] > 15))
                    printf " **The machine was busy: these figures are distorted; rerun on a quiet machine.**"
                print "" }'
    fi
    echo
    : >"$TMP/medians"
    awk -F'\t' -v medfile="$TMP/medians" -v conns="$CONNS" -v dur="$DURATION" -v depth="$DEPTH" '
        function sortn(a, n,   i, j, t) { for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t } }
        function med(key, col,   n, a, i, parts) {
            n = split(vals[key, col], parts, " "); for (i = 1; i <= n; i++) a[i] = parts[i] + 0; sortn(a, n)
            return n == 0 ? 0 : (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2)
        }
        function rng(key, col, fmt,   n, a, i, parts) {
            n = split(vals[key, col], parts, " "); for (i = 1; i <= n; i++) a[i] = parts[i] + 0; sortn(a, n)
            return sprintf(fmt " (" fmt "–" fmt ")", med(key, col), a[1], a[n])
        }
        function comma(x,   s, out) {
            s = sprintf("%.0f", x); out = ""
            while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
            return s out
        }
        function crng(key, col,   n, a, i, parts) {
            n = split(vals[key, col], parts, " "); for (i = 1; i <= n; i++) a[i] = parts[i] + 0; sortn(a, n)
            return comma(med(key, col)) " (" comma(a[1]) "–" comma(a[n]) ")"
        }
        {
            key = $1 SUBSEP $2
            if (!(key in seen)) { seen[key] = 1; order[++nk] = key }
            for (c = 4; c <= 13; c++) if ($c != "-") vals[key, c] = vals[key, c] " " $c
        }
        END {
            for (m = 1; m <= 2; m++) {
                mode = m == 1 ? "plain" : "pipelined"
                printf "### Throughput: wrk -t1 -c%d -d%ds%s\n\n", conns, dur, m == 1 ? "" : sprintf(", %d requests pipelined per write", depth)
                printf "| server | req/s | server CPU µs/req | of which user µs/req | server CPU %% | wrk CPU %% | other processes CPU %% |%s errors |\n", m == 1 ? " p99 ms |" : ""
                printf "|---|---|---|---|---|---|---|%s---|\n", m == 1 ? "---|" : ""
                for (i = 1; i <= nk; i++) {
                    split(order[i], kk, SUBSEP); if (kk[2] != mode) continue
                    printf "| %s | %s | %s | %s | %s | %s | %s |%s %d |\n", kk[1], crng(order[i], 4), rng(order[i], 6, "%.2f"), rng(order[i], 12, "%.2f"),
                        rng(order[i], 7, "%.0f"), rng(order[i], 8, "%.0f"), rng(order[i], 13, "%.0f"),
                        m == 1 ? " " rng(order[i], 10, "%.2f") " |" : "", med(order[i], 11)
                    rps[kk[1], mode] = med(order[i], 4); us[kk[1], mode] = med(order[i], 6)
                }
                print ""
            }
            # Ratios of the medians: ferry against each peer.
            print "### Ratios (medians)\n"
            print "| | ferry/nginx | ferry/node |"
            print "|---|---|---|"
            split("plain pipelined", modes, " ")
            for (m = 1; m <= 2; m++) {
                mode = modes[m]
                printf "| req/s, %s | %s | %s |\n", mode,
                    ((("ferry", mode) in rps) && rps["nginx", mode] > 0) ? sprintf("%.2f", rps["ferry", mode] / rps["nginx", mode]) : "–",
                    ((("ferry", mode) in rps) && rps["node", mode] > 0) ? sprintf("%.2f", rps["ferry", mode] / rps["node", mode]) : "–"
                printf "| server CPU µs/req, %s | %s | %s |\n", mode,
                    ((("ferry", mode) in us) && us["nginx", mode] > 0) ? sprintf("%.2f", us["ferry", mode] / us["nginx", mode]) : "–",
                    ((("ferry", mode) in us) && us["node", mode] > 0) ? sprintf("%.2f", us["ferry", mode] / us["node", mode]) : "–"
            }
            print ""
            for (k in rps) { split(k, kk, SUBSEP); print "RPS", kk[1], kk[2], rps[k], us[k] >> medfile }
        }' "$WRK_TSV"

    echo "### Memory: $IDLE_N idle keep-alive connections (one request each), $MEM_ROUNDS rounds"
    echo
    echo "| server | connections ready | RSS before (MiB) | RSS with the connections (MiB) | user-space bytes/conn | closed by the server while held |"
    echo "|---|---|---|---|---|---|"
    awk -F'\t' -v medfile="$TMP/medians" -v n="$IDLE_N" '
        function sortn(a, k,   i, j, t) { for (i = 2; i <= k; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t } }
        { if (!($1 in cnt)) order[++ns] = $1; c = ++cnt[$1]; ready[$1, c] = $3; r0[$1, c] = $4; r1[$1, c] = $5; b[$1, c] = ($5 - $4) * 1024 / n; cl[$1, c] = $6 }
        END {
            for (i = 1; i <= ns; i++) {
                s = order[i]; k = cnt[s]
                for (j = 1; j <= k; j++) { x[j] = b[s, j] } sortn(x, k); lo = x[1]; hi = x[k]; md = x[int((k + 1) / 2)]
                # report the round whose bytes/conn is the median
                m = 1; for (j = 1; j <= k; j++) if (b[s, j] == md) m = j
                printf "| %s | %s | %.1f | %.1f | %.0f (%.0f–%.0f) | %s |\n", s, ready[s, m], r0[s, m] / 1024, r1[s, m] / 1024, md, lo, hi, cl[s, m]
                print "MEM", s, md >> medfile
            }
        }' "$MEM_TSV"
    echo

    echo "### Graceful close with $CLOSE_N idle keep-alive connections, $CLOSE_ROUNDS rounds ($LAZY_ROUNDS with the lazy client)"
    echo
    echo "| server, stop signal | signal → process exit ms | → client saw first close ms | → client saw all closed ms | closed | in-process close() → callback ms | notes |"
    echo "|---|---|---|---|---|---|---|"
    awk -F'\t' -v medfile="$TMP/medians" -v n="$CLOSE_N" '
        function sortn(a, k,   i, j, t) { for (i = 2; i <= k; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t } }
        function stat(s, col,   k, j, x, parts) {
            k = split(v[s, col], parts, " "); if (k == 0) return "–"
            for (j = 1; j <= k; j++) x[j] = parts[j] + 0; sortn(x, k)
            return sprintf("%.1f (%.1f–%.1f)", k % 2 ? x[(k + 1) / 2] : (x[k / 2] + x[k / 2 + 1]) / 2, x[1], x[k])
        }
        {
            if (!($1 in cnt)) order[++ns] = $1; cnt[$1]++
            for (c = 4; c <= 6; c++) if ($c != "-") v[$1, c] = v[$1, c] " " $c
            if ($10 != "-") v[$1, 10] = v[$1, 10] " " $10
            cl[$1] = cl[$1] (cl[$1] == "" ? "" : ",") $7
            if ($3 != n) short[$1]++
            if ($8 != 0) bad[$1]++
            if ($9 == 1) killed[$1]++
        }
        END {
            label["ferry"] = "ferry, SIGTERM"; label["nginx"] = "nginx, SIGQUIT to the master"
            label["nginx-s-quit"] = "nginx, `nginx -s quit` (includes the command start)"; label["node"] = "node, SIGTERM → server.close()"
            label["ferry/lazy"] = "ferry, SIGTERM, lazy client"; label["nginx/lazy"] = "nginx, SIGQUIT, lazy client"
            label["node/lazy"] = "node, SIGTERM → server.close(), lazy client"
            for (i = 1; i <= ns; i++) {
                s = order[i]; notes = ""
                if (short[s]) notes = notes sprintf("%d rounds had fewer than %d connections ready; ", short[s], n)
                if (bad[s]) notes = notes sprintf("%d rounds exited non-zero; ", bad[s])
                if (killed[s]) notes = notes sprintf("%d rounds killed after 15 s; ", killed[s])
                split(stat(s, 4), m4, " ")
                printf "| %s | %s | %s | %s | %s | %s | %s |\n", (s in label) ? label[s] : s, stat(s, 4), stat(s, 5), stat(s, 6), cl[s], stat(s, 10), notes
                print "CLOSE", s, m4[1] >> medfile
            }
        }' "$CLOSE_TSV"
    echo

    echo "### Targets (ferry)"
    echo
    awk '
        $1 == "RPS" { rps[$2, $3] = $4; us[$2, $3] = $5 }
        $1 == "MEM" { mem[$2] = $3 }
        $1 == "CLOSE" { cl[$2] = $3 }
        function verdict(ok) { return ok ? "met" : "**missed**" }
        END {
            print "| target | figure | |"
            print "|---|---|---|"
            if ((("ferry", "plain") in us) && us["nginx", "plain"] > 0) {
                r = us["ferry", "plain"] / us["nginx", "plain"]
                printf "| server CPU per request ≤ 0.8× nginx (wrk c64) | %.2f µs vs %.2f µs = %.3f× | %s |\n", us["ferry", "plain"], us["nginx", "plain"], r, verdict(r <= 0.8)
            }
            if ((("ferry", "pipelined") in rps) && rps["nginx", "pipelined"] > 0) {
                r = rps["ferry", "pipelined"] / rps["nginx", "pipelined"]
                printf "| pipelined throughput ≥ 3× nginx | %.0f vs %.0f req/s = %.3f× | %s |\n", rps["ferry", "pipelined"], rps["nginx", "pipelined"], r, verdict(r >= 3)
            }
            if ("ferry" in mem) printf "| ≤ 450 user-space bytes per idle connection | %.0f bytes | %s |\n", mem["ferry"], verdict(mem["ferry"] <= 450)
            if ("ferry" in cl) printf "| graceful close with idle connections < 20 ms | %.1f ms | %s |\n", cl["ferry"], verdict(cl["ferry"] < 20)
            if ("ferry/lazy" in cl) printf "| the same, lazy client | %.1f ms | %s |\n", cl["ferry/lazy"], verdict(cl["ferry/lazy"] < 20)
        }' "$TMP/medians"
}

mkdir -p "$(dirname "$RESULTS")"
summary | tee "$RESULTS"
note "summary also written to $RESULTS"
