# shellcheck shell=bash
# tests/reliability/lib.sh — what soak.sh and slowloris.sh share, on top of
# tests/cli_lib.sh (ok/bad, $tmp, start_server/stop_server and their traps):
# the server's open fds and RSS from /proc, waiting for it to go quiet, the
# load generator run with a bound, and reading its JSON. Sourced, never run.
# The script sets ferry (the binary) and loadgen first.

. "$(dirname "${BASH_SOURCE[0]}")/../cli_lib.sh"

# Thousands of sockets on each side: take the hard limit if the soft one is low.
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 16384 ]; then
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 8192 ] ||
    echo "note: ulimit -n is $(ulimit -n); runs with thousands of connections may hit EMFILE"

server_fds() { ls "/proc/$pid/fd" 2>/dev/null | wc -l; }
server_rss_kb() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$pid/status" 2>/dev/null; }
alive() { [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

# quiesce [SECONDS]: wait until the server reports no connection but the one
# asking (/status), at most SECONDS (default 15: past the linger and the
# keep-alive timeout); then give it 0.3 s more so closes are complete.
quiesce() {
    local limit=${1:-15} i active
    for i in $(seq $((limit * 5))); do
        active=$(curl -sS --max-time 2 "$base/status" 2>/dev/null |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["connections_active"])' 2>/dev/null)
        [ "$active" = 1 ] && { sleep 0.3; return 0; }
        sleep 0.2
    done
    bad "the server still has connections after ${limit} s (connections_active=$active)"
    return 1
}

# load NAME SECONDS ARGS...: run the load generator against the server for
# SECONDS (killed at SECONDS + 20 if it hangs); its JSON in $tmp/NAME.json,
# stderr in $tmp/NAME.err, exit status in $rc.
load() {
    local name=$1 secs=$2; shift 2
    timeout -k 5 $(( ${secs%.*} + 20 )) nice "$loadgen" --port "${base##*:}" --seconds "$secs" "$@" \
        >"$tmp/$name.json" 2>"$tmp/$name.err" </dev/null
    rc=$?
    return $rc
}

# jget NAME EXPR: a Python expression over d, the JSON of run NAME.
jget() {
    python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print(eval(sys.argv[2]))' \
        "$tmp/$1.json" "$2" 2>/dev/null
}

# jcheck NAME DESCRIPTION PYTHON-CONDITION
jcheck() {
    if [ "$(jget "$1" "bool($3)")" = True ]; then ok "$2"; else
        bad "$2: $(tail -n 1 "$tmp/$1.json" | head -c 2000) $(head -c 1500 "$tmp/$1.err")"
    fi
}
