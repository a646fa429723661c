#!/usr/bin/env bash
# tests/reliability/soak.sh FERRY LOADGEN — `ferry serve` under mixed load for
# SOAK_SECONDS (default 60), then back to its baseline (docs/reliability.md).
#
# Load (tests/reliability/loadgen.c, one process): keep-alive GETs, a new
# connection per GET, pipelined bursts, 64 KiB uploads echoed back, malformed
# requests, slowloris trickles and SOAK_IDLE (2000) idle keep-alive
# connections, all at once. The server runs with a 2 s headers timeout and a
# 3 s keep-alive timeout, so trickles and idle sockets are cut and come back
# all through the run.
#
# Checks: no unexpected reset or close, no 5xx, no 4xx to a good request, no
# bad echo; every trickle cut with a 408 at the headers timeout; after the
# load, the server's open fds equal the baseline exactly and its RSS is within
# SOAK_RSS_SLACK_KB (default 1024) of it, where the baseline is taken after a
# warm-up run of the same mix (see docs/reliability.md for why); the server
# then exits 0 on SIGTERM (under ASan: with no leak report).
#
# SOAK_SECONDS, SOAK_WARMUP (default 5), SOAK_IDLE, SOAK_SLOWLORIS (200) and
# SOAK_ASAN=1 (skip the RSS bound: ASan's quarantine holds freed memory).
set -u
ferry="$1"
loadgen="$2"
. "$(dirname "$0")/lib.sh"
lg_pid=""
trap 'if [ -n "$lg_pid" ]; then kill "$lg_pid" 2>/dev/null; fi; cleanup' EXIT

secs=${SOAK_SECONDS:-60}
warm=${SOAK_WARMUP:-5}
idle=${SOAK_IDLE:-2000}
slow=${SOAK_SLOWLORIS:-200}
slack=${SOAK_RSS_SLACK_KB:-1024}
headers_ms=2000
mix=(--keepalive 8 --fresh 2 --pipeline 2 --depth 16 --upload 2 --upload-bytes 65536
     --malformed 2 --slowloris "$slow" --trickle-ms 100 --idle "$idle" --probe 1 --probe-ms 5)
echo "== soak: $secs s of mixed load ($idle idle, $slow slowloris) against $ferry"

start_server --quiet --headers-timeout $headers_ms --keep-alive-timeout 3000 || exit 1
fds0=$(server_fds); rss0=$(server_rss_kb)

load warmup "$warm" "${mix[@]}"
[ "$rc" = 0 ] && ok "warm-up run ($warm s)" || bad "warm-up run: exit $rc $(head -c 500 "$tmp/warmup.err")"
jcheck warmup "warm-up: nothing unexpected" 'd["unexpected"] == 0 and d["5xx"] == 0'
quiesce || exit 1
fds_base=$(server_fds); rss_base=$(server_rss_kb)

# The main run, sampled every second for the peaks.
timeout -k 5 $((secs + 20)) nice "$loadgen" --port "${base##*:}" --seconds "$secs" "${mix[@]}" \
    >"$tmp/main.json" 2>"$tmp/main.err" </dev/null &
lg_pid=$!
fds_peak=0; rss_peak=0
while kill -0 "$lg_pid" 2>/dev/null; do
    f=$(server_fds); r=$(server_rss_kb)
    [ -n "$f" ] && [ "$f" -gt "$fds_peak" ] && fds_peak=$f
    [ -n "$r" ] && [ "$r" -gt "$rss_peak" ] && rss_peak=$r
    sleep 1
done
wait "$lg_pid"; rc=$?; lg_pid=""
[ "$rc" = 0 ] && ok "main run ($secs s): exit 0" || bad "main run: exit $rc $(head -c 500 "$tmp/main.err")"
alive && ok "the server is still running" || bad "the server died during the load"
jcheck main "no unexpected reset, close, status or echo" 'd["unexpected"] == 0'
jcheck main "no 5xx, no 4xx to a good request" 'd["5xx"] == 0 and d["4xx_to_good"] == 0'
jcheck main "every kind of load ran" \
    'all(d["kinds"][k]["responses"] > 0 for k in ("keepalive","fresh","pipeline","upload","malformed","idle","probe"))'
if [ "$slow" -gt 0 ]; then
    jcheck main "slowloris: cut with 408 at the headers timeout ($headers_ms ms, +1 s)" \
        "d['slowloris']['cut'] >= $slow and d['slowloris']['with_408'] == d['slowloris']['cut'] and $headers_ms - 5 <= d['slowloris']['cut_ms_min'] and d['slowloris']['cut_ms_max'] <= $headers_ms + 1000"
fi
quiesce || exit 1
fds_end=$(server_fds); rss_end=$(server_rss_kb)
[ "$fds_end" = "$fds_base" ] && ok "open fds back to the baseline: $fds_end (peak $fds_peak)" ||
    bad "open fds: $fds_end after the load, $fds_base before (peak $fds_peak)"
if [ "${SOAK_ASAN:-0}" = 1 ]; then
    ok "RSS not bounded under ASan: $rss_base kB before, $rss_end kB after (peak $rss_peak)"
elif [ "$rss_end" -le $((rss_base + slack)) ]; then
    ok "RSS back to the baseline: $rss_end kB, baseline $rss_base kB (+$slack allowed; peak $rss_peak)"
else
    bad "RSS $rss_end kB after the load, baseline $rss_base kB (+$slack allowed; peak $rss_peak)"
fi
stop_server "SIGTERM after the soak"

# One line of figures for docs/reliability.md.
python3 - "$tmp/main.json" <<PYEOF
import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
k = d["kinds"]
reqs = sum(v["requests"] for v in k.values()); conns = sum(v["connections"] for v in k.values())
print("figures: %.0f s, %d requests (%.0f/s), %d connections, unexpected %d, 5xx %d; "
      "slowloris cut %d (408: %d) at %d-%d ms; probe p50 %d us p99 %d us; "
      "fds $fds0 at start, $fds_base baseline, $fds_peak peak, $fds_end after; "
      "RSS $rss0 kB at start, $rss_base kB baseline, $rss_peak kB peak, $rss_end kB after"
      % (d["seconds"], reqs, reqs / d["seconds"], conns, d["unexpected"], d["5xx"],
         d["slowloris"]["cut"], d["slowloris"]["with_408"], d["slowloris"]["cut_ms_min"],
         d["slowloris"]["cut_ms_max"], d["probe_us"]["p50"], d["probe_us"]["p99"]))
PYEOF
[ "$fail" = 0 ] && echo "soak: passed" || echo "soak: FAILED"
exit $fail
