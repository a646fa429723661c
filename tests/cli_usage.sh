#!/usr/bin/env bash
# The CLI's contract as a user sees it: exit 0 on success, exit 2 with exactly
# one line on stderr for bad usage.
set -u
ferry="$1"
fail=0
check() { # expected-status description args...
    local want=$1 what=$2; shift 2
    local err rc
    err=$("$ferry" "$@" 2>&1 >/dev/null); rc=$?
    if [ "$rc" != "$want" ]; then echo "FAIL $what: exit $rc, want $want"; fail=1; return; fi
    if [ "$want" = 2 ] && [ "$(printf '%s\n' "$err" | wc -l)" != 1 ]; then
        echo "FAIL $what: stderr is not one line: $err"; fail=1; return
    fi
    echo "ok   $what"
}
check 0 "version" version
check 0 "help" help
check 2 "no command"
check 2 "unknown command" frobnicate
check 2 "version with extra argument" version extra
out=$("$ferry" version)
case "$out" in "ferry "[0-9]*.[0-9]*.[0-9]*) echo "ok   version text" ;; *) echo "FAIL version text: $out"; fail=1 ;; esac
exit $fail
