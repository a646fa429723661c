#!/usr/bin/env bash
# `ferry serve` in deployment, as a user of the CLI sees it (issue 11, and
# issue 13 item 2): --workers, the health path and --drain-delay, SIGUSR2
# restarts under keep-alive load with zero failed requests (plain and TLS,
# sessions resuming across them), a restart whose new process fails (the old
# one keeps serving), systemd socket activation (LISTEN_FDS), the PROXY
# protocol, and a shutdown with offloaded work in flight that ends within a
# second of the second signal, with "aborted" in the access log.
# Every wait is bounded; every process started is killed on exit.
#
#   tests/cli_restart.sh path/to/ferry
set -u
ferry="$1"
for t in curl openssl; do command -v $t >/dev/null || { echo "FAIL $t is needed"; exit 1; }; done
. "$(dirname "$0")/cli_lib.sh" # ok, bad, usage_error, start_server, stop_server; $tmp
load="$(dirname "$0")/support/keepalive_load.py"
extra_pids=()
kill_extra() { for p in "${extra_pids[@]}"; do kill -KILL "$p" 2>/dev/null; done; cleanup; }
trap kill_extra EXIT

port_of() { local b=${1##*:}; echo "${b%%/*}"; }
alive() { kill -0 "$1" 2>/dev/null; }
# wait_gone PID SECONDS: 0 once PID has exited.
wait_gone() {
    local i
    for i in $(seq $(($2 * 20))); do alive "$1" || return 0; sleep 0.05; done
    return 1
}
# status_json PATH...: GET $base/status, print the JSON's value at key $1.
status_of() { curl -sS -k --max-time 2 "$base/status" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

# ---- flags ----
usage_error serve "--workers not a number" --workers x
usage_error serve "--workers too many" --workers 5000
usage_error serve "--health-path without /" --health-path healthz
usage_error serve "--proxy-trusted without --proxy-protocol" --proxy-trusted 10.0.0.0/8
usage_error serve "--drain-delay not a number" --drain-delay soon

# ---- --workers, the health path ----
if start_server --quiet --workers 2; then
    [ "$(status_of workers)" = 2 ] && ok "--workers 2: /status says 2 workers" || bad "--workers 2: $(status_of workers)"
    code=$(curl -sS -o /dev/null -w '%{http_code}' "$base/healthz")
    [ "$code" = 200 ] && ok "/healthz: 200 while serving" || bad "/healthz: $code"
    stop_server "--workers 2: SIGTERM"
fi

# ---- --drain-delay: 503 on the health path, still serving, then gone ----
if start_server --quiet --drain-delay 800; then
    t0=$(date +%s%N)
    kill -TERM "$pid"
    sleep 0.1
    code=$(curl -sS -o /dev/null -w '%{http_code}' "$base/healthz")
    [ "$code" = 503 ] && ok "draining: /healthz 503" || bad "draining: /healthz $code"
    hdr=$(curl -sS -D - -o /dev/null "$base/")
    if [[ "$hdr" == *"200 OK"* && "${hdr,,}" == *"connection: close"* ]]; then
        ok "draining: still served, with Connection: close"
    else
        bad "draining: $hdr"
    fi
    for i in $(seq 50); do [ -s "$tmp/rc" ] && break; sleep 0.1; done
    ms=$((($(date +%s%N) - t0) / 1000000))
    if [ -s "$tmp/rc" ] && [ "$(cat "$tmp/rc")" = 0 ] && [ "$ms" -ge 750 ]; then
        ok "drain: exit 0 after ${ms} ms (delay 800)"
    else
        bad "drain: rc $(cat "$tmp/rc" 2>/dev/null) after ${ms} ms"
    fi
    wait "$runner"; pid=""
fi

# ---- SIGUSR2 restarts under load: zero failed requests ----
# restarts N: N SIGUSR2s in a row, each waiting until the pid file names a
# new process and the old one has exited.
restarts() {
    local n=$1 what=$2 i old new
    for i in $(seq "$n"); do
        old=$(cat "$tmp/ferry.pid")
        kill -USR2 "$old"
        new=$old
        for _ in $(seq 200); do
            new=$(cat "$tmp/ferry.pid" 2>/dev/null)
            [ -n "$new" ] && [ "$new" != "$old" ] && ! alive "$old" && break
            sleep 0.05
        done
        if [ "$new" = "$old" ] || alive "$old"; then
            bad "$what: restart $i: pid file $new, old $old $(alive "$old" && echo still running)"
            return 1
        fi
        extra_pids+=("$new")
        sleep 0.2
    done
    ok "$what: $n restarts, each a new process in the pid file, the old one gone"
}
under_load() { # WHAT N_RESTARTS [CA]
    local what=$1 n=$2 ca=${3:-}
    rm -f "$tmp/stop"
    python3 "$load" 127.0.0.1 "$(port_of "$base")" 4 30 "$tmp/stop" / $ca >"$tmp/load.json" &
    local lp=$!
    sleep 0.5
    restarts "$n" "$what"
    sleep 0.5
    touch "$tmp/stop"
    wait "$lp"
    if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["failed"]==0 and d["ok"]>100 else 1)' "$tmp/load.json"; then
        ok "$what: zero failed requests under load ($(cat "$tmp/load.json"))"
    else
        bad "$what: $(cat "$tmp/load.json")"
    fi
}
if start_server --quiet --workers 2 --pid-file "$tmp/ferry.pid"; then
    first=$pid
    [ "$(cat "$tmp/ferry.pid")" = "$pid" ] && ok "pid file names the process that accepts" || bad "pid file: $(cat "$tmp/ferry.pid")"
    under_load "plain" 5
    for i in $(seq 50); do [ -s "$tmp/rc" ] && break; sleep 0.1; done
    [ "$(cat "$tmp/rc" 2>/dev/null)" = 0 ] && ok "the first process exited 0 after its restart" || bad "first process: rc $(cat "$tmp/rc" 2>/dev/null)"
    wait "$runner"; pid=""
    last=$(cat "$tmp/ferry.pid")
    kill -TERM "$last"
    if wait_gone "$last" 5 && [ ! -e "$tmp/ferry.pid" ]; then
        ok "SIGTERM to the last one: gone, pid file removed"
    else
        bad "the last process ($last) after SIGTERM: $(alive "$last" && echo running) pid file $(cat "$tmp/ferry.pid" 2>/dev/null)"
    fi
    [ "$first" != "$last" ] || bad "no new process"
fi

# ---- over TLS: zero failures, and a session resumes across a restart ----
C=$tmp/certs
"$(dirname "$0")/support/make_certs.sh" "$C" || { echo "FAIL making the test certificates"; exit 1; }
if start_server --quiet --pid-file "$tmp/ferry.pid" --tls-cert "$C/ec.crt" --tls-key "$C/ec.key"; then
    tport=$(port_of "$base")
    echo | timeout 5 openssl s_client -connect "127.0.0.1:$tport" -tls1_2 -sess_out "$tmp/sess" >/dev/null 2>&1
    under_load "TLS" 2 "$C/ca.crt"
    out=$(echo | timeout 5 openssl s_client -connect "127.0.0.1:$tport" -tls1_2 -sess_in "$tmp/sess" 2>/dev/null)
    [[ "$out" == *"Reused, TLS"* ]] && ok "TLS: a session from before the restarts resumes after them (ticket keys handed on)" \
        || bad "TLS: the session did not resume: $(grep -E '^(New|Reused)' <<<"$out")"
    for i in $(seq 50); do [ -s "$tmp/rc" ] && break; sleep 0.1; done
    wait "$runner"; pid=""
    last=$(cat "$tmp/ferry.pid"); kill -TERM "$last"; wait_gone "$last" 5 || bad "TLS: last process still running"
fi

# ---- a restart whose new process fails: the old one keeps serving ----
cp "$ferry" "$tmp/ferry-copy"
ferry_orig=$ferry; ferry=$tmp/ferry-copy
if start_server --quiet --pid-file "$tmp/ferry.pid"; then
    rm -f "$tmp/ferry-copy"; printf '#!/bin/sh\nexit 3\n' >"$tmp/ferry-copy"; chmod +x "$tmp/ferry-copy"
    kill -USR2 "$pid"
    for i in $(seq 50); do grep -q "restart failed" "$tmp/err" && break; sleep 0.1; done
    if grep -q "restart failed, still serving: it exited with status 3" "$tmp/err"; then
        ok "failed restart: says why ($(grep 'restart failed' "$tmp/err"))"
    else
        bad "failed restart: stderr $(cat "$tmp/err")"
    fi
    code=$(curl -sS -o /dev/null -w '%{http_code}' "$base/")
    [ "$code" = 200 ] && [ "$(cat "$tmp/ferry.pid")" = "$pid" ] && ok "failed restart: still serving, pid file unchanged" || bad "failed restart: $code, pid file $(cat "$tmp/ferry.pid")"
    stop_server "failed restart: SIGTERM"
fi
ferry=$ferry_orig

# ---- systemd socket activation ----
python3 - "$ferry" "$tmp/act.port" >"$tmp/act.out" 2>"$tmp/act.err" <<'EOF' &
import os, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(64)
open(sys.argv[2], "w").write(str(s.getsockname()[1]))
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())  # exec keeps the pid
os.execv(sys.argv[1], [sys.argv[1], "serve", "--quiet", "--port", "1"])
EOF
act=$!
extra_pids+=("$act")
for i in $(seq 50); do [ -s "$tmp/act.out" ] && break; sleep 0.1; done
aport=$(cat "$tmp/act.port" 2>/dev/null)
if [ "$(head -n 1 "$tmp/act.out")" = "listening on http://127.0.0.1:$aport" ] &&
    [ "$(curl -sS --max-time 2 "http://127.0.0.1:$aport/")" = "hello, world" ]; then
    ok "LISTEN_FDS: serves the socket systemd would hand over (--port ignored)"
else
    bad "LISTEN_FDS: $(cat "$tmp/act.out") $(cat "$tmp/act.err")"
fi
kill -TERM "$act"; wait_gone "$act" 5 || bad "LISTEN_FDS: still running after SIGTERM"

# ---- PROXY protocol ----
proxy_get() { # PORT: send a PROXY v1 header and a GET, print the response
    exec 3<>"/dev/tcp/127.0.0.1/$1"
    printf 'PROXY TCP4 203.0.113.7 10.0.0.5 51234 443\r\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n' >&3
    timeout 3 cat <&3
    exec 3<&-
}
if start_server --proxy-protocol; then
    resp=$(proxy_get "$(port_of "$base")")
    sleep 0.2
    if [[ "$resp" == *"hello, world"* ]] && grep -q '^203.0.113.7:51234 "GET / HTTP/1.1" 200' "$tmp/err"; then
        ok "--proxy-protocol: the header's client is the peer in the access log"
    else
        bad "--proxy-protocol: $resp / $(cat "$tmp/err")"
    fi
    plain=$(curl -sS --max-time 2 "$base/" 2>&1)
    [[ "$plain" != *"hello"* ]] && ok "--proxy-protocol: a request without the header gets no answer" || bad "--proxy-protocol without header: $plain"
    stop_server "--proxy-protocol: SIGTERM"
fi
if start_server --proxy-protocol --proxy-trusted 10.0.0.0/8; then
    resp=$(proxy_get "$(port_of "$base")" 2>/dev/null)
    [ -z "$resp" ] && ok "--proxy-trusted: a source outside the list is closed unanswered" || bad "--proxy-trusted: $resp"
    stop_server "--proxy-trusted: SIGTERM"
fi

# ---- offloaded work at shutdown: out within a second of the second signal ----
if start_server; then
    for i in $(seq 8); do curl -sS --max-time 10 "$base/cpu?ms=3000" >/dev/null 2>&1 & done
    sleep 0.5
    kill -TERM "$pid"; sleep 0.1
    t0=$(date +%s%N)
    kill -TERM "$pid"
    for i in $(seq 100); do [ -s "$tmp/rc" ] && break; sleep 0.02; done
    ms=$((($(date +%s%N) - t0) / 1000000))
    if [ -s "$tmp/rc" ] && [ "$ms" -lt 1500 ]; then
        ok "8 x /cpu?ms=3000, two signals: exit $(cat "$tmp/rc") ${ms} ms after the second"
    else
        bad "offloaded work held the shutdown: ${ms} ms, rc $(cat "$tmp/rc" 2>/dev/null)"
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$runner"; pid=""
    n=$(grep -c '"GET /cpu?ms=3000 HTTP/1.1" aborted' "$tmp/err")
    [ "$n" = 8 ] && ok "access log: the 8 responses never sent are 'aborted'" || bad "access log: $n aborted lines: $(grep cpu "$tmp/err")"
    wait
fi

exit $fail
