#!/usr/bin/env bash
# bench/client.sh — ferry's client tools against wrk, autocannon, Node 20 and curl
# (run by `make bench-client`; docs/bench.md explains every figure).
#
# One server, started by this script: Debian's nginx, 1 worker, pinned to CPU 1,
# answering `GET /` with "hello, world". Every client runs pinned to CPU 0.
# ROUNDS rounds, the client order rotated each round; medians, and ratios.
#   1. load generation: `ferry bench -c64 -d5` vs `wrk -t1 -c64 -d5s` vs autocannon
#      (`-c 64 -d 5`): req/s, and client CPU per request (user+sys of the client
#      process, from bash's `times`, ÷ requests). Target: ferry ≥ 1.0× wrk's req/s.
#   2. N (2000) sequential keep-alive GETs, wall time of the whole process
#      (hyperfine, RUNS runs per round): `ferry fetch -n 2000 -c 1` vs Node's
#      http.Agent({keepAlive: true}) vs undici's Pool vs one curl invocation
#      with 2000 URLs (one kept-alive connection). Targets: ferry ≥ 3× faster
#      than Node's agent and ≥ 1.5× faster than curl.
#   3. The same with 50 in flight: `ferry fetch -c 50`, Node (maxSockets 50),
#      undici (connections 50), `curl --parallel --parallel-max 50`.
# undici and autocannon come from npm, installed by this script under NPM_PREFIX.
#
# Environment (defaults in brackets):
#   FERRY [build/ferry]  ROUNDS [3]  DURATION seconds [5]  N [2000]  RUNS [5]
#   NODE [node]  NPM [npm]  NGINX [nginx]  WRK [wrk]  HYPERFINE [hyperfine]  CURL [curl]
#   NPM_PREFIX [build-bench/npm]  RESULTS [build/bench/client-results.md]
#   QUIET_WAIT  seconds, in all, to wait for other processes to go quiet (< 15 % of a
#               core) before each load run and each hyperfine batch [0]
# Everything is bounded in time; the server and every client are killed on exit.
set -euo pipefail

cd "$(dirname "$0")/.."

FERRY=${FERRY:-build/ferry}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
N=${N:-2000}
RUNS=${RUNS:-5}
NODE=${NODE:-node}
NPM=${NPM:-npm}
NGINX=${NGINX:-nginx}
WRK=${WRK:-wrk}
HYPERFINE=${HYPERFINE:-hyperfine}
CURL=${CURL:-curl}
NPM_PREFIX=${NPM_PREFIX:-build-bench/npm}
RESULTS=${RESULTS:-build/bench/client-results.md}
QUIET_WAIT=${QUIET_WAIT:-0}
CONNS=64
PAR=50
SERVER_CPU=1
CLIENT_CPU=0

BENCH=client
. bench/lib.sh # die, note, $TMP, run_bg, free_port, /proc readings, quiet_moment...

# ---- preconditions ---------------------------------------------------------------
for t in "$WRK" "$HYPERFINE" "$NGINX" "$CURL" "$NODE" "$NPM" taskset; do
    command -v "$t" >/dev/null || die "$t not found (make deps-bench installs wrk, hyperfine, nginx-light; Node 20 and npm are needed too)"
done
[ -x "$FERRY" ] || die "$FERRY not found (run 'make build', or set FERRY)"
taskset -c "$SERVER_CPU" true 2>/dev/null || die "CPU $SERVER_CPU not available: the benchmark needs 2 CPUs"
node_version=$("$NODE" -e 'process.stdout.write(process.versions.node)')
[ "${node_version%%.*}" -ge 20 ] || die "node $node_version is older than 20"

# undici and autocannon, from npm, into a prefix of our own (pinned majors).
if [ ! -f "$NPM_PREFIX/node_modules/undici/package.json" ] ||
    [ ! -f "$NPM_PREFIX/node_modules/autocannon/autocannon.js" ]; then
    note "installing undici and autocannon from npm into $NPM_PREFIX"
    mkdir -p "$NPM_PREFIX"
    "$NPM" install --prefix "$NPM_PREFIX" --no-audit --no-fund --loglevel=error undici@7 autocannon@9 >&2 ||
        die "npm install failed"
fi
export NODE_PATH=$PWD/$NPM_PREFIX/node_modules
AUTOCANNON=$NPM_PREFIX/node_modules/autocannon/autocannon.js
npm_version() { "$NODE" -e "process.stdout.write(require('$NODE_PATH/$1/package.json').version)"; }

ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)

# ---- the server: nginx, 1 worker, on CPU 1 ------------------------------------------------
start_nginx() {
    local dir=$TMP/nginx try i
    for try in 1 2 3; do
        PORT=$(free_port)
        write_nginx_conf "$dir" "$PORT"
        taskset -c "$SERVER_CPU" "$NGINX" -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/out" 2>&1 &
        SPID=$!
        LIVE[$SPID]=1
        for i in $(seq 100); do
            port_open "$PORT" && [ -n "$(children_of "$SPID")" ] && return 0
            kill -0 "$SPID" 2>/dev/null || break
            sleep 0.05
        done
        kill_tree "$SPID" KILL
        wait "$SPID" 2>/dev/null || true
        unset "LIVE[$SPID]"
        note "nginx did not start on port $PORT (try $try): $(tail -n 3 "$dir/error.log" 2>/dev/null)"
    done
    die "nginx did not start"
}

start_nginx
URL=http://127.0.0.1:$PORT/
"$CURL" -sf "$URL" >/dev/null || die "nginx does not answer on $URL"
note "nginx (1 worker, CPU $SERVER_CPU) on $URL; clients on CPU $CLIENT_CPU"

# ---- 1. load generation ------------------------------------------------------------------------
LOAD_TSV=$TMP/load.tsv
: >"$LOAD_TSV"

# run_load TOOL ROUND: one timed run; appends "tool round req/s requests client_cpu_s server_ticks wall errors".
run_load() {
    local tool=$1 round=$2 out=$TMP/load.$1.$2 s0 s1 t0 t1 w0 w1 cmd=()
    case $tool in
    ferry) cmd=("$FERRY" bench "$URL" -c "$CONNS" -d "$DURATION" --json) ;;
    wrk) cmd=("$WRK" -t1 -c"$CONNS" -d"${DURATION}s" "$URL") ;;
    autocannon) cmd=("$NODE" "$AUTOCANNON" -c "$CONNS" -d "$DURATION" -j "$URL") ;;
    esac
    local m0 m1 u0 u1
    times >"$TMP/times0"
    read -r u0 s0 <<<"$(tree_ticks "$SPID")"; m0=$(machine_busy_ticks); t0=$EPOCHREALTIME
    run_bg timeout $((DURATION + 30)) taskset -c "$CLIENT_CPU" "${cmd[@]}" >"$out" 2>"$out.err" || true
    t1=$EPOCHREALTIME; read -r u1 s1 <<<"$(tree_ticks "$SPID")"; m1=$(machine_busy_ticks)
    times >"$TMP/times1"
    w0=$(children_cpu_s "$TMP/times0"); w1=$(children_cpu_s "$TMP/times1")
    local parsed
    case $tool in
    ferry) parsed=$(python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print(d["requests_per_second"], d["requests"], d["failed"])' "$out" 2>/dev/null || echo "0 0 1") ;;
    wrk) parsed=$(awk '/ requests in / { n = $1 } /^Requests\/sec:/ { r = $2 } /Socket errors:/ { gsub(/,/, ""); e += $4 + $6 + $8 + $10 } /Non-2xx/ { e += $5 } END { print r + 0, n + 0, e + 0 }' "$out") ;;
    autocannon) parsed=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); t=d["requests"]["total"]; print(t / d["duration"], t, d["errors"] + d["non2xx"] + d["timeouts"])' "$out" 2>/dev/null || echo "0 0 1") ;;
    esac
    read -r rps reqs errs <<<"$parsed"
    # Columns: tool round req/s requests client_cpu_s server_ticks wall_s errors others_%
    # (others: machine CPU minus the client and nginx, in % of one core).
    awk -v tool="$tool" -v round="$round" -v rps="$rps" -v reqs="$reqs" -v w0="$w0" -v w1="$w1" \
        -v ds=$((u1 - u0 + s1 - s0)) -v dm=$((m1 - m0)) -v t0="$t0" -v t1="$t1" -v errs="$errs" -v tck="$CLK_TCK" 'BEGIN {
        wall = t1 - t0; others = 100 * (dm / tck - (w1 - w0) - ds / tck) / wall
        printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\n", tool, round, rps, reqs, w1 - w0, ds, wall, errs, (others < 0 ? 0 : others) }' >>"$LOAD_TSV"
    tail -n 1 "$LOAD_TSV" | awk -F'\t' -v tck="$CLK_TCK" '{ printf "  %-10s round %s: %9.0f req/s  client %.2f µs/req (%.0f%% CPU)  nginx %.0f%% CPU  others %s%%  errors %s\n", $1, $2, $3, ($4 ? $5 * 1e6 / $4 : 0), 100 * $5 / $7, 100 * $6 / tck / $7, $9, $8 }' >&2
}

note "1. load generation: -c$CONNS, ${DURATION} s, $ROUNDS rounds (ferry bench, wrk -t1, autocannon)"
# One warm-up run, untimed: nginx's worker and the page cache settle.
run_bg timeout 30 taskset -c "$CLIENT_CPU" "$WRK" -t1 -c"$CONNS" -d1s "$URL" >/dev/null 2>&1 || true
for ((round = 1; round <= ROUNDS; round++)); do
    for tool in $(rotate $((round - 1)) ferry wrk autocannon); do
        bg=$(quiet_moment)
        [ "$bg" -gt 25 ] && note "other processes use ${bg}% of a core right now: expect distorted figures"
        run_load "$tool" "$round"
    done
done

# ---- 2 and 3. N GETs, wall time of the whole process ---------------------------------------------
for ((i = 0; i < N; i++)); do echo "url = \"$URL\""; done >"$TMP/urls.cfg"
WALL_TSV=$TMP/wall.tsv
: >"$WALL_TSV"

client_cmd() { # client_cmd NAME CONC: the command line (hyperfine -N splits it on spaces)
    case $1 in
    ferry) echo "$FERRY fetch -n $N -c $2 $URL" ;;
    node-http) echo "$NODE bench/node_client.js http $URL $N $2" ;;
    undici) echo "$NODE bench/node_client.js undici $URL $N $2" ;;
    curl) if [ "$2" = 1 ]; then echo "$CURL -sf -K $TMP/urls.cfg"; else echo "$CURL -sf --parallel --parallel-max $2 -K $TMP/urls.cfg"; fi ;;
    esac
}

# run_wall PART CLIENT CONC ROUND: RUNS timed runs (plus one warm-up) of the whole process.
run_wall() {
    hyperfine_run "$1" "$2" "$4" "$(client_cmd "$2" "$3")"
}

# Each client once, untimed, with its exit status checked: every request must succeed.
for client in ferry node-http undici curl; do
    for conc in 1 "$PAR"; do
        read -r -a words <<<"$(client_cmd "$client" "$conc")"
        run_bg timeout 60 "${words[@]}" >/dev/null 2>"$TMP/check.err" ||
            die "$client (-c $conc) failed its check run: $(head -n 3 "$TMP/check.err")"
    done
done
python3 -c 'import json,sys; d=json.loads(sys.stdin.read().splitlines()[-1]); sys.exit(0 if d["succeeded"] == int(sys.argv[1]) and d["connections_opened"] == 1 else 1)' "$N" \
    < <("$FERRY" fetch -n "$N" -c 1 --json "$URL") || die "ferry fetch -c 1 did not make $N requests on one connection"

note "2. $N sequential keep-alive GETs and 3. $N GETs with $PAR in flight: $ROUNDS rounds of $RUNS runs (hyperfine)"
for ((round = 1; round <= ROUNDS; round++)); do
    for part in seq par; do
        conc=1
        [ "$part" = par ] && conc=$PAR
        for client in $(rotate $((round - 1)) ferry node-http undici curl); do
            quiet_moment >/dev/null
            run_wall "$part" "$client" "$conc" "$round"
        done
    done
done

# ---- summary ----------------------------------------------------------------------------------------
summary() {
    echo "## ferry client benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), kernel $(uname -r)."
    echo "Server: nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///') (1 worker) on CPU $SERVER_CPU; every client on CPU $CLIENT_CPU."
    echo "Clients: ferry $("$FERRY" version | cut -d' ' -f2), $("$WRK" -v 2>&1 | head -n 1 | awk '{ print $1, $2 }'), autocannon $(npm_version autocannon), node $("$NODE" --version), undici $(npm_version undici), $("$CURL" --version | head -n 1 | awk '{ print $1, $2 }'), $("$HYPERFINE" --version)."
    echo "Figures: median (min–max); $ROUNDS rounds, client order rotated each round."
    if [ -s "$BG_LIST" ]; then
        echo
        { sort -n "$BG_LIST"; echo "--"; cut -f9 "$LOAD_TSV" | sort -n; } | awk '
            $1 == "--" { part = 2; next }
            part != 2 { b[++nb] = $1 } part == 2 { w[++nw] = $1 }
            END {
                printf "Other processes before each load run: median %d%%, max %d%% of one core. ", b[int((nb + 1) / 2)], b[nb]
                if (nw) printf "During the load runs: median %d%%, max %d%%.", w[int((nw + 1) / 2)], w[nw]
                if (b[int((nb + 1) / 2)] > 10 || (nw && w[int((nw + 1) / 2)] > 15))
                    printf " **The machine was busy: these figures are distorted; rerun on a quiet machine (QUIET_WAIT helps).**"
                print "" }'
    fi
    echo
    awk -F'\t' -v tck="$CLK_TCK" -v conns="$CONNS" -v dur="$DURATION" -v medfile="$TMP/medians" '
        function sortn(a, n,   i, j, t) { for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t } }
        function comma(x,   s, out) {
            s = sprintf("%.0f", x); out = ""
            while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
            return s out
        }
        function stat(key, fmt,   n, a, i, p, m) {
            n = split(v[key], p, " "); for (i = 1; i <= n; i++) a[i] = p[i] + 0; sortn(a, n)
            m = n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2; med[key] = m
            if (fmt == ",") return comma(m) " (" comma(a[1]) "–" comma(a[n]) ")"
            return sprintf(fmt " (" fmt "–" fmt ")", m, a[1], a[n])
        }
        {
            if (!($1 in seen)) { seen[$1] = 1; order[++nt] = $1 }
            v[$1, "rps"] = v[$1, "rps"] " " $3
            v[$1, "us"] = v[$1, "us"] " " ($4 > 0 ? $5 * 1e6 / $4 : 0)
            v[$1, "cpu"] = v[$1, "cpu"] " " 100 * $5 / $7
            v[$1, "srv"] = v[$1, "srv"] " " 100 * $6 / tck / $7
            v[$1, "err"] = v[$1, "err"] " " $8
            v[$1, "oth"] = v[$1, "oth"] " " $9
        }
        END {
            printf "### 1. Load generation: %d connections, %d s, against nginx\n\n", conns, dur
            print "| client | req/s | client CPU µs/req | client CPU % | nginx CPU % | other processes CPU % | errors |"
            print "|---|---|---|---|---|---|---|"
            for (i = 1; i <= nt; i++) {
                t = order[i]
                label = t == "ferry" ? "`ferry bench -c" conns " -d" dur "`" : t == "wrk" ? "`wrk -t1 -c" conns " -d" dur "s`" : "autocannon `-c " conns " -d " dur "`"
                printf "| %s | %s | %s | %s | %s | %s | %s |\n", label, stat(t SUBSEP "rps", ","), stat(t SUBSEP "us", "%.2f"),
                    stat(t SUBSEP "cpu", "%.0f"), stat(t SUBSEP "srv", "%.0f"), stat(t SUBSEP "oth", "%.0f"), stat(t SUBSEP "err", "%d")
                print "LOAD", t, med[t SUBSEP "rps"], med[t SUBSEP "us"] >> medfile
            }
            print ""
        }' "$LOAD_TSV"
    awk -F'\t' -v n="$N" -v par="$PAR" -v medfile="$TMP/medians" '
        function sortn(a, k,   i, j, t) { for (i = 2; i <= k; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t } }
        function comma(x,   s, out) {
            s = sprintf("%.0f", x); out = ""
            while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
            return s out
        }
        {
            key = $1 SUBSEP $2
            if (!(key in seen)) { seen[key] = 1; order[++nk] = key }
            v[key] = v[key] " " $4
        }
        END {
            for (p = 1; p <= 2; p++) {
                part = p == 1 ? "seq" : "par"
                if (p == 1) printf "### 2. %d sequential keep-alive GETs, wall time of the whole process\n\n", n
                else printf "### 3. %d GETs with %d in flight, wall time of the whole process\n\n", n, par
                print "| client | wall ms | req/s (" n " / median wall) | ferry is faster by |"
                print "|---|---|---|---|"
                for (i = 1; i <= nk; i++) {
                    split(order[i], kk, SUBSEP); if (kk[1] != part) continue
                    k = split(v[order[i]], s, " "); for (j = 1; j <= k; j++) a[j] = s[j] + 0; sortn(a, k)
                    m[kk[2]] = k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
                    lo[kk[2]] = a[1]; hi[kk[2]] = a[k]
                }
                split("ferry node-http undici curl", cl, " ")
                for (c = 1; c <= 4; c++) {
                    name = cl[c]; if (!(name in m)) continue
                    if (part == "seq") label = name == "ferry" ? "`ferry fetch -n " n " -c 1`" : name == "node-http" ? "Node `http.Agent({keepAlive: true})`" : name == "undici" ? "undici `Pool`" : "`curl -K` (" n " URLs, one invocation)"
                    else label = name == "ferry" ? "`ferry fetch -n " n " -c " par "`" : name == "node-http" ? "Node `http.Agent` (maxSockets " par ")" : name == "undici" ? "undici `Pool` (" par " connections)" : "`curl --parallel --parallel-max " par "`"
                    printf "| %s | %.1f (%.1f–%.1f) | %s | %s |\n", label, m[name] * 1e3, lo[name] * 1e3, hi[name] * 1e3, comma(n / m[name]),
                        name == "ferry" ? "–" : sprintf("%.2f×", m[name] / m["ferry"])
                    print "WALL", part, name, m[name] >> medfile
                }
                print ""
                delete m; delete lo; delete hi
            }
        }' "$WALL_TSV"
    echo "### Targets"
    echo
    awk '
        $1 == "LOAD" { rps[$2] = $3; us[$2] = $4 }
        $1 == "WALL" { w[$2, $3] = $4 }
        function verdict(ok) { return ok ? "met" : "**missed**" }
        END {
            print "| target | figure | |"
            print "|---|---|---|"
            if (rps["wrk"] > 0) printf "| `ferry bench` req/s ≥ 1.0× wrk | %.0f vs %.0f = %.2f× (client CPU per request: %.2f vs %.2f µs = %.2f×) | %s |\n",
                rps["ferry"], rps["wrk"], rps["ferry"] / rps["wrk"], us["ferry"], us["wrk"], (us["wrk"] > 0 ? us["ferry"] / us["wrk"] : 0), verdict(rps["ferry"] >= rps["wrk"])
            if (rps["autocannon"] > 0) printf "| (`ferry bench` vs autocannon, no target) | %.2f× the req/s | |\n", rps["ferry"] / rps["autocannon"]
            if (w["seq", "ferry"] > 0) {
                r = w["seq", "node-http"] / w["seq", "ferry"]
                printf "| `ferry fetch -c 1` ≥ 3× faster than Node http.Agent | %.1f vs %.1f ms = %.2f× | %s |\n", w["seq", "ferry"] * 1e3, w["seq", "node-http"] * 1e3, r, verdict(r >= 3)
                r = w["seq", "curl"] / w["seq", "ferry"]
                printf "| `ferry fetch -c 1` ≥ 1.5× faster than curl | %.1f vs %.1f ms = %.2f× | %s |\n", w["seq", "ferry"] * 1e3, w["seq", "curl"] * 1e3, r, verdict(r >= 1.5)
                printf "| (`ferry fetch -c 1` vs undici, no target) | %.2f× faster |  |\n", w["seq", "undici"] / w["seq", "ferry"]
            }
            if (w["par", "ferry"] > 0)
                printf "| (`ferry fetch -c 50`, no target) | %.2f× faster than Node, %.2f× than undici, %.2f× than curl --parallel | |\n",
                    w["par", "node-http"] / w["par", "ferry"], w["par", "undici"] / w["par", "ferry"], w["par", "curl"] / w["par", "ferry"]
        }' "$TMP/medians"
}

mkdir -p "$(dirname "$RESULTS")"
summary | tee "$RESULTS"
note "summary also written to $RESULTS"
