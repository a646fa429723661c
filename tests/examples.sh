#!/usr/bin/env bash
# Runs every program in examples/ the way its header comment says, against
# 127.0.0.1 only, each bounded in time: the examples must keep working.
set -u
dir="$1"
fail=0
pids=()
tmpd=$(mktemp -d)
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$tmpd"' EXIT
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

# start NAME ARGS... : run an example in the background, wait for its listening line
start() {
    local name=$1; shift
    out="$tmpd/$name.out"
    "$dir/$name" "$@" > "$out" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 100); do
        port=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$out")
        [ -n "$port" ] && return 0
        sleep 0.05
    done
    bad "$name: no listening line"; cat "$out"; return 1
}

# waitexit PID: its exit status, if it exits within 5 s
waitexit() {
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$1" 2>/dev/null; then bad "did not exit after SIGTERM"; return 1; fi
    wait "$1"
}

# stop PID: SIGTERM, then its exit status
stop() {
    kill -TERM "$1" 2>/dev/null
    waitexit "$1"
}

# hello
if start hello 0; then
    body=$(curl -s --max-time 5 "http://127.0.0.1:$port/")
    [ "$body" = "hello, world" ] && ok "hello answers" || bad "hello answered '$body'"
    stop "$pid" && ok "hello exits 0 on SIGTERM" || bad "hello exit status"
fi

# graceful: work in flight at SIGTERM is finished, answered with Connection: close
if start graceful 0 3000; then
    gpid=$pid
    curl -s -i --max-time 5 "http://127.0.0.1:$port/work?ms=300" > "$out.resp" &
    cpid=$!
    sleep 0.1
    kill -TERM "$gpid"
    wait "$cpid"
    if grep -q "^done" "$out.resp" && grep -qi "^connection: close" "$out.resp"; then
        ok "graceful finishes in-flight work with Connection: close"
    else
        bad "graceful in-flight response:"; cat "$out.resp"
    fi
    if curl -s --max-time 2 "http://127.0.0.1:$port/" > /dev/null; then
        bad "graceful still accepts after SIGTERM"
    else
        ok "graceful refuses new connections after SIGTERM"
    fi
    waitexit "$gpid"; rc=$?
    [ $rc = 0 ] && grep -q "^closed after" "$out" && ok "graceful exits 0 after its close callback" \
        || bad "graceful exit $rc: $(cat "$out")"
fi

# per_user_queue: one user's updates run one at a time (5 x 20 ms), in order
if start per_user_queue 0; then
    qpid=$pid
    t0=$(date +%s%N)
    for i in 1 2 3 4 5; do
        curl -s --max-time 5 -H "X-User: alice" "http://127.0.0.1:$port/u$i" > "$out.a$i" &
    done
    wait $(jobs -p | grep -v "^$qpid$")
    t1=$(date +%s%N)
    ms=$(( (t1 - t0) / 1000000 ))
    n=$(cat "$out".a* | grep -c applied)
    [ "$n" = 5 ] && ok "per_user_queue applied all 5 of one user's updates" || bad "applied $n of 5"
    [ "$ms" -ge 95 ] && ok "one user's 5 updates were serialised (${ms} ms >= 5 x 20 ms)" \
        || bad "one user's 5 updates took only ${ms} ms: not serialised"
    for u in bob carol dave erin frank; do
        curl -s --max-time 5 -H "X-User: $u" "http://127.0.0.1:$port/x" > "$out.b$u" &
    done
    wait $(jobs -p | grep -v "^$qpid$")
    n=$(cat "$out".b* | grep -c applied)
    [ "$n" = 5 ] && ok "per_user_queue serves different users" || bad "users served: $n of 5"
    stop "$qpid" && ok "per_user_queue exits 0 on SIGTERM" || bad "per_user_queue exit status"
fi
# fetch_many: 2000 requests through one agent, at most 50 sockets, against its own server
out=$(timeout 30 "$dir/fetch_many" 2>&1); rc=$?
echo "$out" | sed 's/^/     /'
if [ $rc = 0 ] && echo "$out" | grep -q "^completed 2000, failed 0, connections opened [0-9]*, reused"; then
    opened=$(echo "$out" | sed -n 's/.*connections opened \([0-9]*\),.*/\1/p')
    [ "$opened" -le 50 ] && ok "fetch_many: 2000 completed over $opened connections (at most 50)" \
        || bad "fetch_many opened $opened connections, bound was 50"
else
    bad "fetch_many (own server) exit $rc"
fi

# fetch_many against another process (hello), 2000 requests over at most 10 sockets
if start hello 0; then
    hpid=$pid
    out=$(timeout 30 "$dir/fetch_many" "http://127.0.0.1:$port/" 2000 10 2>&1); rc=$?
    opened=$(echo "$out" | sed -n 's/.*connections opened \([0-9]*\),.*/\1/p')
    if [ $rc = 0 ] && echo "$out" | grep -q "^completed 2000, failed 0," && [ "${opened:-99}" -le 10 ]; then
        ok "fetch_many against hello: 2000 completed over $opened connections (at most 10)"
    else
        bad "fetch_many against hello, exit $rc:"; echo "$out"
    fi
    out=$(timeout 30 "$dir/fetch_many" "https://127.0.0.1:$port/" 5 2>&1); rc=$?
    [ $rc != 0 ] && echo "$out" | grep -q "ETLSHANDSHAKE" && ok "fetch_many https:// to a plain server: a TLS handshake error" \
        || bad "fetch_many https:// exit $rc: $out"
    stop "$hpid" && ok "hello exits 0 after fetch_many" || bad "hello exit status after fetch_many"
fi

# chain: log in, keep the session cookie, use it
out=$(timeout 10 "$dir/chain" 2>&1); rc=$?
if [ $rc = 0 ] && echo "$out" | grep -q "^step 2: 200 alice" && echo "$out" | grep -q "^step 3: 200 saved" \
        && echo "$out" | grep -q "^chain done"; then
    ok "chain: login, cookie, authenticated GET and POST"
else
    bad "chain exit $rc:"; echo "$out"
fi
exit $fail
