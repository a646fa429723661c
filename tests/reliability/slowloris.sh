#!/usr/bin/env bash
# tests/reliability/slowloris.sh FERRY LOADGEN — SLOWLORIS_CONNS (default 2000)
# connections trickle request-head bytes (one every 100 ms, never a whole
# head) while a normal client sends a GET every 5 ms on a kept-alive socket
# (docs/reliability.md). The probe is a process of its own.
#
# Checks: the probe's p99 latency with the trickles stays within
# max(10 x its p99 alone, p99 alone + 20 ms) — generous, since both runs share
# two cores with the load generator; every trickle is answered 408 and cut at
# the headers timeout (SLOWLORIS_TIMEOUT_MS, default 2000; cut between the
# timeout and the timeout + 1.5 s: 2000 cuts come in bursts on shared cores), and cut again each time it comes back; no
# unexpected reset or status for the probe; the server's fds are back to
# where they were afterwards; SIGTERM then exits 0.
set -u
ferry="$1"
loadgen="$2"
. "$(dirname "$0")/lib.sh"

conns=${SLOWLORIS_CONNS:-2000}
tmo=${SLOWLORIS_TIMEOUT_MS:-2000}
secs=${SLOWLORIS_SECONDS:-$(( (tmo * 3 + 1999) / 1000 + 1 ))} # three timeouts and the ramp
echo "== slowloris: $conns trickling connections, headers timeout $tmo ms, $secs s"

start_server --quiet --headers-timeout "$tmo" || exit 1
load warm 1 --probe 1 --probe-ms 5
quiesce || exit 1
fds_base=$(server_fds)

load alone 3 --probe 1 --probe-ms 5
jcheck alone "probe alone: no errors" 'd["unexpected"] == 0 and d["probe_us"]["n"] > 100'
p99_alone=$(jget alone 'd["probe_us"]["p99"]')

# The trickles and the probe come from two processes, so the probe's latency
# is the server's, not the time the trickling process's own loop was busy.
load loris "$secs" --slowloris "$conns" --trickle-ms 100 --ramp-ms 1000 &
lpid=$!
sleep 0.2
load probe "$((secs - 1))" --probe 1 --probe-ms 5
wait "$lpid"; lrc=$?
[ "$rc" = 0 ] && [ "$lrc" = 0 ] && ok "load generators: exit 0" ||
    bad "load generators: exit $lrc and $rc $(head -c 500 "$tmp/loris.err" "$tmp/probe.err")"
p99_loris=$(jget probe 'd["probe_us"]["p99"]')
bound=$(( p99_alone * 10 > p99_alone + 20000 ? p99_alone * 10 : p99_alone + 20000 ))
jcheck probe "probe with $conns trickles: no errors" 'd["unexpected"] == 0 and d["probe_us"]["n"] > 100'
jcheck loris "trickles: nothing unexpected" 'd["unexpected"] == 0'
[ -n "$p99_loris" ] && [ "$p99_loris" -le "$bound" ] &&
    ok "probe p99 $p99_loris us with the trickles, $p99_alone us alone (bound $bound us)" ||
    bad "probe p99 $p99_loris us with the trickles, $p99_alone us alone (bound $bound us)"
jcheck loris "every trickle cut with a 408 between $tmo and $((tmo + 1500)) ms" \
    "d['slowloris']['cut'] >= $conns and d['slowloris']['with_408'] == d['slowloris']['cut'] and $tmo - 5 <= d['slowloris']['cut_ms_min'] and d['slowloris']['cut_ms_max'] <= $tmo + 1500"
quiesce || exit 1
fds_end=$(server_fds)
[ "$fds_end" = "$fds_base" ] && ok "open fds back to $fds_end" || bad "open fds $fds_end, were $fds_base"
stop_server "SIGTERM after the slowloris run"
echo "figures: $conns trickles, timeout $tmo ms: cut $(jget loris 'd["slowloris"]["cut"]') (408: $(jget loris 'd["slowloris"]["with_408"]')) at $(jget loris 'd["slowloris"]["cut_ms_min"]')-$(jget loris 'd["slowloris"]["cut_ms_max"]') ms; probe p99 $p99_alone us alone, $p99_loris us with the trickles (p50 $(jget alone 'd["probe_us"]["p50"]') / $(jget probe 'd["probe_us"]["p50"]') us)"
[ "$fail" = 0 ] && echo "slowloris: passed" || echo "slowloris: FAILED"
exit $fail
