#!/usr/bin/env bash
# tests/reliability/faults.sh FERRY RELDIR — the client under faults
# (docs/reliability.md). RELDIR holds the programs built from
# tests/reliability (build/reliability).
#
# 1. A misbehaving server (RELDIR/misbehave, seeded): GETs are retried or fail
#    as a reset/timeout; no POST is sent twice. Needs nothing special.
# 2. Wire faults between two network namespaces this script creates (a veth
#    pair with IPv6 link-local addresses, so the URL carries a zone:
#    http://[fe80::1%25IFACE]:8080/): `ferry serve` in one, `ferry fetch`
#    with retries and a deadline in the other, through delay and jitter, loss,
#    reordering and a link that goes down for FAULTS_DOWN seconds. Every
#    request must succeed or fail with a timeout, connect or reset error,
#    within its deadline; nothing may hang. Impairments use `tc qdisc netem`
#    where the kernel has it, else RELDIR/nfq_netem behind an ip6tables
#    NFQUEUE rule (scripts/deps.sh --faults installs iptables and
#    libnetfilter-queue). Needs root and iproute2; without them this part
#    prints a SKIP line and does not fail (FAULTS_REQUIRE=1 makes it fail).
#
# FAULTS_N (requests per scenario, default 200), FAULTS_DOWN (3 s),
# FAULTS_SEED (1).
set -u
ferry="$1"
rel="$2"
. "$(dirname "$0")/../cli_lib.sh" # ok, bad, $tmp, traps

n=${FAULTS_N:-200}
down=${FAULTS_DOWN:-3}
seed=${FAULTS_SEED:-1}
skipped=0

# ---- 1. the misbehaving server ----------------------------------------------------
gets=$((n * 2 > 120 ? n * 2 : 120)) # enough for every fault to come up
timeout -k 5 120 "$rel/misbehave" gets "$gets" "$seed" >"$tmp/gets.out" 2>&1
rc=$?
cat "$tmp/gets.out"
[ "$rc" = 0 ] && ok "misbehave gets" || bad "misbehave gets: exit $rc"

# at least 90: with fewer, seed 1 may never play the race on a reused socket
posts=$((n * 3 / 2 > 90 ? n * 3 / 2 : 90))
timeout -k 5 120 "$rel/misbehave" posts "$posts" "$seed" >"$tmp/posts.out" 2>&1
rc=$?
cat "$tmp/posts.out"
# no POST may reach the server twice (issue 13 item 0: the keep-alive-race replay used to resend them)
[ "$rc" = 0 ] && ok "misbehave posts" || bad "misbehave posts: exit $rc"

# ---- 2. wire faults in network namespaces -------------------------------------------
skip() {
    echo "SKIP wire faults: $*"
    [ "${FAULTS_REQUIRE:-0}" = 1 ] && bad "FAULTS_REQUIRE=1 but the wire faults cannot run: $*"
    skipped=1
}

ns_s="ferry-fs-$$" ns_c="ferry-fc-$$" if_s="vs$$" if_c="vc$$"
srv_pid="" nfq_pid="" ns_made=0
teardown() {
    [ -n "$nfq_pid" ] && kill "$nfq_pid" 2>/dev/null
    [ -n "$srv_pid" ] && kill -KILL "$srv_pid" 2>/dev/null
    if [ "$ns_made" = 1 ]; then
        ip netns del "$ns_s" 2>/dev/null
        ip netns del "$ns_c" 2>/dev/null
    fi
}
trap 'teardown; cleanup' EXIT

setup_netns() {
    ip netns add "$ns_s" || return 1
    ns_made=1
    ip netns add "$ns_c" || return 1
    ip link add "$if_s" netns "$ns_s" type veth peer name "$if_c" netns "$ns_c" || return 1
    local ns ifc addr
    for ns in "$ns_s" "$ns_c"; do
        ip -n "$ns" link set lo up || return 1
    done
    ip -n "$ns_s" addr add fe80::1/64 dev "$if_s" nodad || return 1
    ip -n "$ns_c" addr add fe80::2/64 dev "$if_c" nodad || return 1
    ip -n "$ns_s" link set "$if_s" up && ip -n "$ns_c" link set "$if_c" up
}

# How to impair the link: netem on both ends, or nfq_netem on the client's side.
impair_mode=""
pick_impairment() {
    if ip netns exec "$ns_c" tc qdisc add dev "$if_c" root netem delay 1ms 2>/dev/null; then
        ip netns exec "$ns_c" tc qdisc del dev "$if_c" root
        impair_mode=netem
    elif [ -x "$rel/nfq_netem" ] && command -v ip6tables >/dev/null &&
        ip netns exec "$ns_c" ip6tables -A OUTPUT -o "$if_c" -j NFQUEUE --queue-num 0 --queue-bypass 2>/dev/null &&
        ip netns exec "$ns_c" ip6tables -A INPUT -i "$if_c" -j NFQUEUE --queue-num 0 --queue-bypass 2>/dev/null; then
        impair_mode=nfqueue
    fi
}

# impair DELAY_MS JITTER_MS LOSS_PCT REORDER_PCT: each direction gets DELAY.
impair() {
    if [ "$impair_mode" = netem ]; then
        local ns dev
        for ns in s c; do
            [ $ns = s ] && { n_=$ns_s; dev=$if_s; } || { n_=$ns_c; dev=$if_c; }
            # shellcheck disable=SC2046
            ip netns exec "$n_" tc qdisc replace dev "$dev" root netem delay "${1}ms" "${2}ms" \
                loss "${3}%" $( [ "$4" != 0 ] && echo reorder "${4}%" ) || return 1
        done
    else
        ip netns exec "$ns_c" "$rel/nfq_netem" --delay "$1" --jitter "$2" --loss "$3" \
            --reorder "$4" --seed "$seed" >"$tmp/nfq.out" 2>"$tmp/nfq.err" &
        nfq_pid=$!
        local i
        for i in $(seq 50); do grep -q ready "$tmp/nfq.out" 2>/dev/null && break; sleep 0.1; done
        grep -q ready "$tmp/nfq.out" || { cat "$tmp/nfq.err"; return 1; }
    fi
}
unimpair() {
    if [ "$impair_mode" = netem ]; then
        ip netns exec "$ns_s" tc qdisc del dev "$if_s" root 2>/dev/null
        ip netns exec "$ns_c" tc qdisc del dev "$if_c" root 2>/dev/null
    elif [ -n "$nfq_pid" ]; then
        kill "$nfq_pid" 2>/dev/null; wait "$nfq_pid" 2>/dev/null; nfq_pid=""
        sed 's/^/     /' "$tmp/nfq.err"
    fi
}

# fetch NAME TIMEOUT_MS ARGS...: ferry fetch --json in the client namespace,
# killed if it outlives every deadline it could have (it must not hang).
fetch() {
    local name=$1 tmo=$2; shift 2
    timeout -k 2 90 ip netns exec "$ns_c" "$ferry" fetch --json --timeout "$tmo" "$@" \
        >"$tmp/$name.out" 2>"$tmp/$name.err" </dev/null
    rc=$?
}
# verdict NAME DESCRIPTION TOTAL TIMEOUT_MS MIN_SUCCESS_PCT [EXTRA-CONDITION]
verdict() {
    local name=$1 what=$2 total=$3 tmo=$4 min=$5 extra=${6:-True}
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then bad "$what: ferry fetch hung (killed)"; return; fi
    if python3 - "$tmp/$name.out" "$total" "$tmo" "$min" "$extra" <<'EOF'; then
import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
total, tmo, minpct, extra = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
kinds = set(d["errors"]) - {"timeout", "connect", "reset"}
ok = (d["requests"] == total and not kinds and d["succeeded"] * 100 >= minpct * total
      and d["latency_us"]["max"] <= tmo * 1000 + 200000 and eval(extra, {"d": d}))
print("     %d/%d succeeded in %.2f s; errors %s %s; retries %d; latency p50 %d p99 %d max %d us"
      % (d["succeeded"], d["requests"], d["elapsed_s"], d["errors"] or "none",
         d["error_codes"] or "", d["retries"], d["latency_us"]["p50"], d["latency_us"]["p99"],
         d["latency_us"]["max"]))
sys.exit(0 if ok else 1)
EOF
        ok "$what"
    else
        bad "$what: exit $rc; $(tail -n 1 "$tmp/$name.out") $(head -c 300 "$tmp/$name.err")"
    fi
}

if [ "$(id -u)" != 0 ]; then
    skip "needs root (network namespaces)"
elif ! command -v ip >/dev/null; then
    skip "needs iproute2 (scripts/deps.sh --faults)"
elif ! setup_netns 2>"$tmp/netns.err"; then
    skip "cannot create network namespaces here: $(head -n 1 "$tmp/netns.err")"
else
    pick_impairment
    echo "== wire faults: $n requests per scenario, impairments by ${impair_mode:-nothing}"
    ip netns exec "$ns_s" "$ferry" serve --host :: --port 8080 --quiet \
        >"$tmp/srv.out" 2>"$tmp/srv.err" </dev/null &
    srv_pid=$!
    for i in $(seq 50); do [ -s "$tmp/srv.out" ] && break; sleep 0.1; done
    url="http://[fe80::1%25$if_c]:8080"
    if [ "$(head -n 1 "$tmp/srv.out")" != "listening on http://[::]:8080" ]; then
        bad "ferry serve in the namespace: $(cat "$tmp/srv.out" "$tmp/srv.err")"
    else
        fetch clean 3000 -n "$n" -c 4 "$url/"
        verdict clean "clean link (a zone by interface name): every GET succeeds" "$n" 3000 100

        if [ -z "$impair_mode" ]; then
            skip "no netem in this kernel and no NFQUEUE (nfq_netem, ip6tables): delay, loss, reordering not run"
        else
            half=$((n / 2))
            impair 40 20 0 0 && {
                fetch delay 5000 -n "$half" -c 8 "$url/"
                verdict delay "delay 40 ms ± 20 ms each way: every GET succeeds" "$half" 5000 100 \
                    'd["latency_us"]["p50"] >= 60000'
                unimpair
            } || bad "cannot impair the link (delay)"
            # a new connection per request, so SYNs and FINs are lost too
            impair 5 0 10 0 && {
                fetch loss 5000 -n "$half" -c 8 --retries 3 -H 'Connection: close' "$url/"
                verdict loss "10 % loss each way, a connection per GET: done or failed as timeout/connect/reset, in time" \
                    "$half" 5000 80
                unimpair
            } || bad "cannot impair the link (loss)"
            impair 20 5 0 25 && {
                fetch reorder 5000 -n "$half" -c 8 "$url/"
                verdict reorder "25 % of packets overtake 20 ms delayed ones: every GET succeeds" \
                    "$half" 5000 100
                unimpair
            } || bad "cannot impair the link (reordering)"
        fi

        # The server's end of the link goes down for $down s in the middle of a run
        # of about $down + 2 s (4 at a time, 20 ms each: 200 a second), whatever n is.
        n_down=$(( (down + 2) * 200 ))
        fetch_bg() {
            timeout -k 2 90 ip netns exec "$ns_c" "$ferry" fetch --json --timeout 2000 \
                --connect-timeout 1000 --retries 2 -n "$n_down" -c 4 "$url/slow?ms=20" \
                >"$tmp/down.out" 2>"$tmp/down.err" </dev/null
        }
        fetch_bg &
        fpid=$!
        sleep 0.5
        ip -n "$ns_s" link set "$if_s" down
        sleep "$down"
        # a link-local address goes with the link: put it back as it comes up
        ip -n "$ns_s" link set "$if_s" up && ip -n "$ns_s" addr replace fe80::1/64 dev "$if_s" nodad
        wait "$fpid"; rc=$?
        # the run: about n/4 x 20 ms of work, the outage, and one deadline after it
        verdict down "link down for $down s: every GET done or failed as timeout/connect/reset, none past 2 s" \
            "$n_down" 2000 50 "d['failed'] > 0 and d['elapsed_s'] < $n_down * 0.005 + $down + 5"
    fi
    kill -TERM "$srv_pid" 2>/dev/null
    for i in $(seq 50); do kill -0 "$srv_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$srv_pid" 2>/dev/null && bad "ferry serve in the namespace did not exit on SIGTERM"
    wait "$srv_pid" 2>/dev/null
    srv_pid=""
fi

if [ "$fail" = 0 ]; then
    [ "$skipped" = 1 ] && echo "faults: passed (wire faults skipped, see SKIP above)" || echo "faults: passed"
else
    echo "faults: FAILED"
fi
exit $fail
