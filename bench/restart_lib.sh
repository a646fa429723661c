# shellcheck shell=bash
# bench/restart_lib.sh — what bench/restart.sh and bench/haproxy_rolling.sh share
# on top of bench/lib.sh: waiting for conditions and processes, starting the
# servers they restart, and reading wrk's error counts. Sourced after lib.sh,
# never run.

# wait_for COND_CMD SECONDS: poll every 20 ms; 1 if it never held.
wait_for() {
    local cond=$1 limit=$2 i
    for ((i = 0; i < limit * 50; i++)); do
        eval "$cond" && return 0
        sleep 0.02
    done
    return 1
}

alive() { # running and not a zombie (a child of ours that exited is one until reaped)
    local st
    st=$(awk '{ sub(/.*\) /, ""); print $1 }' /proc/"$1"/stat 2>/dev/null || true)
    [ -n "$st" ] && [ "$st" != Z ]
}

# stop_wait PID LIMIT_S: wait for the process to go (reaping it if it is our
# child), SIGKILL it and its children after LIMIT_S. Sets STOP_MS (how long it
# took) and STOP_KILLED (1 when it had to be killed), which the callers read.
# shellcheck disable=SC2034
stop_wait() {
    local pid=$1 limit=$2 t0=$EPOCHREALTIME
    STOP_KILLED=0
    if ! wait_for "! alive $pid" "$limit"; then
        kill_tree "$pid" KILL
        STOP_KILLED=1
        wait_for "! alive $pid" 2 || true
    fi
    wait "$pid" 2>/dev/null || true
    unset "LIVE[$pid]"
    STOP_MS=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
}

# wrk_counts FILE: "requests connect read write timeout non2xx req/s" from wrk's
# summary ("Socket errors: connect C, read R, write W, timeout T" and "Non-2xx or
# 3xx responses: N" appear only when non-zero). A wrk that printed no summary
# gives requests "-".
wrk_counts() {
    awk '
        / requests in / { reqs = $1 }
        /Socket errors:/ { gsub(/,/, ""); c = $4; r = $6; w = $8; t = $10 }
        /Non-2xx or 3xx responses:/ { n = $5 }
        /^Requests\/sec:/ { rps = $2 }
        END { printf "%s %d %d %d %d %d %s\n", reqs == "" ? "-" : reqs, c, r, w, t, n, rps == "" ? "-" : rps }' "$1"
}

# help_mentions CMD... FLAG: whether `CMD --help` mentions FLAG (for sides that
# wait on flags still being written).
help_mentions() {
    local flag=${*: -1}
    "${@:1:$#-1}" --help 2>&1 | grep -q -- "$flag"
}
