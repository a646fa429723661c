# shellcheck shell=bash
# tests/cli_lib.sh — what tests/cli_client.sh, cli_serve.sh and cli_tls.sh share:
# a temp dir removed on exit, ok/bad reporting, the usage check, run/check of a
# ferry command and its JSON summary, and a
# `ferry serve --port 0` started and stopped with every wait bounded.
# Sourced, never run. The script sets ferry (the binary) first; it ends with
# `exit $fail`. Sourcing creates $tmp and installs the traps that kill a
# server left running.

command -v python3 >/dev/null || { echo "FAIL python3 is needed"; exit 1; }

fail=0
tmp=$(mktemp -d)
pid=""
cleanup() {
    [ -z "$pid" ] && [ -s "$tmp/pid" ] && pid=$(cat "$tmp/pid")
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fail=1; }

# usage_error CMD DESCRIPTION ARGS...: `ferry CMD ARGS` exits 2 with one
# `ferry CMD: ...` line on stderr.
usage_error() {
    local cmd=$1 what="$1: $2" err rc; shift 2
    err=$(timeout 5 "$ferry" "$cmd" "$@" 2>&1 >/dev/null </dev/null); rc=$?
    if [ "$rc" != 2 ]; then bad "$what: exit $rc, want 2 ($err)"; return; fi
    if [ "$(printf '%s\n' "$err" | wc -l)" != 1 ] || [ "${err#"ferry $cmd: "}" = "$err" ]; then
        bad "$what: stderr is not one 'ferry $cmd: ...' line: $err"; return
    fi
    ok "$what"
}

# run NAME CMD ARGS...: `ferry CMD ARGS` (RUN_TIMEOUT seconds at most, 10 unless
# the script sets it); stdout in $tmp/NAME.out, stderr in $tmp/NAME.err, exit
# status in $rc.
run() {
    local name=$1; shift
    timeout "${RUN_TIMEOUT:-10}" "$ferry" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" </dev/null; rc=$?
}
# check NAME DESCRIPTION PYTHON-CONDITION: the last line of $tmp/NAME.out is a
# JSON object d for which the condition holds.
check() {
    local name=$1 what=$2 cond=$3
    if python3 - "$tmp/$name.out" "$cond" <<'EOF'; then ok "$what"; else bad "$what: $(tail -n 1 "$tmp/$name.out") $(head -c 300 "$tmp/$name.err")"; fi
import json, sys
lines = open(sys.argv[1]).read().splitlines()
d = json.loads(lines[-1])
sys.exit(0 if eval(sys.argv[2], {"d": d}) else 1)
EOF
}

# start_server ARGS...: starts `ferry serve --port 0 ARGS...` and sets pid and
# base (http:// or https://, 127.0.0.1 or localhost) once it printed its
# listening line (5 s at most). The exit status lands in $tmp/rc; stdout in
# $tmp/out, stderr in $tmp/err.
start_server() {
    rm -f "$tmp/rc" "$tmp/pid" "$tmp/out" "$tmp/err"
    pid=""
    # The subshell keeps none of our output open: ctest waits for that to close.
    (
        "$ferry" serve --port 0 "$@" >"$tmp/out" 2>"$tmp/err" &
        echo $! >"$tmp/pid"
        wait $!
        echo $? >"$tmp/rc"
    ) </dev/null >/dev/null 2>&1 &
    runner=$!
    local i line=""
    for i in $(seq 50); do
        [ -z "$pid" ] && [ -s "$tmp/pid" ] && pid=$(cat "$tmp/pid")
        line=$(head -n 1 "$tmp/out" 2>/dev/null)
        [ -n "$pid" ] && [ -n "$line" ] && break
        [ -s "$tmp/rc" ] && break
        sleep 0.1
    done
    if [[ ! "$line" =~ ^listening\ on\ https?://(127\.0\.0\.1|localhost):[0-9]+$ ]]; then
        bad "server start ($*): got '$line'; stderr: $(cat "$tmp/err" 2>/dev/null)"
        [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
        wait "$runner"
        pid=""
        return 1
    fi
    base=${line#listening on }
    ok "listening line: $line"
}

# stop_server [WHAT]: SIGTERM, then the process must be gone with status 0
# within 5 s.
stop_server() {
    local what=${1:-SIGTERM}
    kill -TERM "$pid" 2>/dev/null
    local i
    for i in $(seq 50); do [ -s "$tmp/rc" ] && break; sleep 0.1; done
    if [ ! -s "$tmp/rc" ]; then
        bad "$what: still running after 5 s"; kill -KILL "$pid" 2>/dev/null
    elif [ "$(cat "$tmp/rc")" != 0 ]; then
        bad "$what: exit status $(cat "$tmp/rc"); stderr: $(tail -n 3 "$tmp/err")"
    else
        ok "$what: exit status 0"
    fi
    wait "$runner" # the runner has written rc, or its server was just killed
    pid=""
}
