#!/usr/bin/env bash
# `ferry fetch` and `ferry bench` as a user sees them: bad usage exits 2 with
# one line on stderr; against a real `ferry serve` on 127.0.0.1 (port 0), the
# text summaries and the --json objects report what happened (counts,
# statuses, error kinds, connections, latency keys), -o writes bodies where
# asked, and the exit status says whether everything succeeded. Every run is
# short and bounded by `timeout`; the server is killed on exit.
#
#   tests/cli_client.sh path/to/ferry
set -u
ferry="$1"
. "$(dirname "$0")/cli_lib.sh" # ok, bad, usage_error, run, check, start_server, stop_server; $tmp

# ---- usage -----------------------------------------------------------------------
U=http://127.0.0.1:9/
usage_error fetch "no URL"
usage_error fetch "unknown flag" --bogus $U
usage_error fetch "unknown short flag" -Z $U
usage_error fetch "missing value" $U -n
usage_error fetch "-n 0" -n 0 $U
usage_error fetch "-n junk" -n 5x $U
usage_error fetch "-c negative" -c -1 $U
usage_error fetch "-c above the limit" -c 100001 $U
usage_error fetch "--timeout with a unit" --timeout 5s $U
usage_error fetch "--retries out of range" --retries 101 $U
usage_error fetch "--json=yes" --json=yes $U
usage_error fetch "not a URL" example.com
usage_error fetch "ftp URL" ftp://example.com/
# Every URL is checked before any request (ferry_url_check), one line, exit 2.
usage_error fetch "port out of range" http://127.0.0.1:99999/
usage_error fetch "trailing dot after an IPv4 address" http://127.0.0.1./
usage_error fetch "non-ASCII path" "http://127.0.0.1:9/caf$(printf '\xc3\xa9')"
usage_error fetch "bad URL after a good one" $U http://127.0.0.1:0/
usage_error bench "port out of range" http://127.0.0.1:99999/
err=$(timeout 5 "$ferry" fetch http://127.0.0.1:99999/ 2>&1 >/dev/null)
[ "$err" = "ferry fetch: invalid URL 'http://127.0.0.1:99999/': port out of range (1-65535) (try 'ferry fetch --help')" ] &&
    ok "a bad URL's line names the URL and the reason" || bad "bad URL line: $err"
err=$(timeout 5 "$ferry" fetch "http://h/$(printf '\x01')x" 2>&1 >/dev/null)
[ "$err" = "ferry fetch: invalid URL 'http://h/\x01x': control character in the path (try 'ferry fetch --help')" ] &&
    ok "control bytes in a bad URL are shown as \\xNN" || bad "control byte line: $err"
printf '%s\n' "$U" 'http://h:70000/' >"$tmp/badurls"
usage_error fetch "a bad URL in -i FILE" -i "$tmp/badurls"
usage_error fetch "header without colon" -H 'X-Test' $U
usage_error fetch "header with a bad name" -H 'X Test: 1' $U
usage_error fetch "Content-Length header is ferry's" -H 'Content-Length: 5' $U
usage_error fetch "Connection: upgrade" -H 'Connection: upgrade' $U
usage_error fetch "-d with --form" -d a --form b=c $U
usage_error fetch "--form without =" --form abc $U
usage_error fetch "missing --data-file" --data-file "$tmp/nope" $U
usage_error fetch "missing -i file" -i "$tmp/nope"
usage_error fetch "-o FILE with two URLs" -o "$tmp/out.txt" $U $U
usage_error fetch "-o in a missing directory" -o "$tmp/nope/out.txt" $U
usage_error fetch "bad method" -X 'GE T' $U
usage_error bench "no URL"
usage_error bench "two URLs" $U $U
usage_error bench "unknown flag" --bogus $U
usage_error bench "-d 0" -d 0 $U
usage_error bench "-d junk" -d 5m $U
usage_error bench "-d negative" -d -1 $U
usage_error bench "-d with -n" -d 1 -n 10 $U
usage_error bench "-R 0" -R 0 $U
usage_error bench "-R junk" -R fast $U
usage_error bench "-t above -c" -c 2 -t 4 $U
usage_error bench "-t above the limit" -c 100 -t 65 $U
usage_error bench "-p 0" -p 0 $U
usage_error bench "-M 0" -M 0 $U
usage_error bench "--warmup with -n" -n 10 --warmup 1 $U
usage_error bench "--body with --body-file" --body a --body-file b $U
usage_error bench "missing --body-file" --body-file "$tmp/nope" $U

for cmd in fetch bench; do
    out=$(timeout 5 "$ferry" $cmd --help); rc=$?
    [ "$rc" = 0 ] && [[ "$out" == "usage: ferry $cmd"* ]] && ok "$cmd --help" || bad "$cmd --help: $rc"
    timeout 5 "$ferry" help | grep -q "^  $cmd " && ok "ferry help lists $cmd" || bad "help lists $cmd"
done

# ---- a server ---------------------------------------------------------------------
start_server --quiet || exit 1

has_keys='all(k in d for k in ("requests","succeeded","failed","errors","connections_opened","sockets_reused","retries","elapsed_s","requests_per_second","latency_us")) and all(k in d["latency_us"] for k in ("p50","p90","p99","p999","max"))'

# ---- fetch ------------------------------------------------------------------------
run f1 fetch -n 20 -c 1 --json "$base/"
[ "$rc" = 0 ] && ok "fetch -n 20: exit 0" || bad "fetch -n 20: exit $rc"
check f1 "fetch --json has the documented keys" "$has_keys"
check f1 "fetch -n 20 -c 1: 20 requests, one socket, 19 reuses" \
    'd["requests"] == 20 and d["succeeded"] == 20 and d["failed"] == 0 and d["errors"] == {} and d["status"] == {"200": 20} and d["connections_opened"] == 1 and d["sockets_reused"] == 19'
check f1 "fetch over plain HTTP: no TLS handshakes, no first error" \
    'd["tls_handshakes"] == 0 and d["tls_resumed"] == 0 and d["first_error"] is None'
check f1 "fetch latency percentiles are ordered" \
    '0 < d["latency_us"]["p50"] <= d["latency_us"]["p90"] <= d["latency_us"]["p99"] <= d["latency_us"]["p999"] <= d["latency_us"]["max"]'
[ "$(wc -l <"$tmp/f1.out")" = 1 ] && ok "fetch --json: one line, nothing else on stdout" || bad "fetch --json stdout: $(cat "$tmp/f1.out")"

run f2 fetch -n 40 -c 8 --json "$base/"
check f2 "fetch -c 8: at most 8 sockets, all 40 succeed" \
    'd["requests"] == 40 and d["succeeded"] == 40 and 1 <= d["connections_opened"] <= 8 and d["sockets_reused"] >= 32'

run f3 fetch -n 5 -c 2 "$base/"
if [ "$rc" = 0 ] && grep -q '^ferry fetch: 5 requests to 1 URL in ' "$tmp/f3.out" &&
    grep -Eq '^  succeeded +5$' "$tmp/f3.out" && grep -Eq '^  failed +0$' "$tmp/f3.out" &&
    grep -Eq '^  statuses +200: 5$' "$tmp/f3.out" && grep -Eq '^  errors +none$' "$tmp/f3.out" &&
    grep -Eq '^  connections +[12] opened, [34] requests on reused sockets, 0 retries$' "$tmp/f3.out" &&
    grep -Eq '^  latency +p50 [0-9,]+  p90 [0-9,]+  p99 ' "$tmp/f3.out"; then
    ok "fetch text summary"
else
    bad "fetch text summary (exit $rc): $(cat "$tmp/f3.out")"
fi

run f4 fetch --json -X BREW "$base/" '/dev/null'
[ "$rc" = 2 ] && ok "a second argument that is not a URL is bad usage" || bad "exit $rc"
run f4 fetch --json -X BREW -n 2 "$base/"
[ "$rc" = 1 ] && ok "fetch: 501 responses exit 1" || bad "fetch 501: exit $rc"
check f4 "fetch: 501 counts as failed, kind http_5xx" \
    'd["requests"] == 2 and d["failed"] == 2 and d["succeeded"] == 0 and d["errors"] == {"http_5xx": 2} and d["status"] == {"501": 2}'
run f5 fetch --json "$base/slow?ms=abc"
check f5 "fetch: 400 counts as http_4xx" 'd["errors"] == {"http_4xx": 1} and d["failed"] == 1'

run f6 fetch --json --timeout 200 "$base/slow?ms=3000"
[ "$rc" = 1 ] && ok "fetch --timeout: exit 1" || bad "fetch --timeout: exit $rc"
check f6 "fetch --timeout 200: a timeout within a second" \
    'd["errors"] == {"timeout": 1} and "EDEADLINE" in d["error_codes"] and d["elapsed_s"] < 1.0'

# A port nobody listens on: bind one, note it, close it.
dead=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
run f7 fetch --json --retries 0 -n 3 "http://127.0.0.1:$dead/"
[ "$rc" = 1 ] && ok "fetch refused: exit 1" || bad "fetch refused: exit $rc"
check f7 "fetch refused: kind connect, ECONNREFUSED, no retries" \
    'd["errors"] == {"connect": 3} and d["error_codes"] == {"ECONNREFUSED": 3} and d["retries"] == 0 and d["latency_us"]["max"] == 0'
check f7 "fetch refused: the first error names the code and the URL" \
    'd["first_error"] == {"code": "ECONNREFUSED", "message": "connection refused", "url": "http://127.0.0.1:%d/" % '"$dead"'}'
run f8 fetch --json --retries 2 "http://127.0.0.1:$dead/"
check f8 "fetch --retries 2: two retries counted" 'd["retries"] == 2 and d["failed"] == 1'

# Bodies: -o -, -o FILE, -o DIR; request bodies: -d, --form, --data-file.
run o1 fetch -o - -d 'ping=1' "$base/echo"
[ "$(cat "$tmp/o1.out")" = "ping=1" ] && ok "-d body echoed to -o -" || bad "-o - / -d: '$(cat "$tmp/o1.out")'"
grep -q '^ferry fetch: 1 request' "$tmp/o1.err" && ok "-o -: the text summary goes to stderr" ||
    bad "-o - summary: $(cat "$tmp/o1.err")"
run o2 fetch -o - --form 'a=b c' --form 'd=e&f' "$base/echo"
[ "$(cat "$tmp/o2.out")" = "a=b+c&d=e%26f" ] && ok "--form URL-encoded" || bad "--form: '$(cat "$tmp/o2.out")'"
printf 'file\nbody' >"$tmp/body.bin"
run o3 fetch -o "$tmp/one.txt" --data-file "$tmp/body.bin" "$base/echo"
cmp -s "$tmp/one.txt" "$tmp/body.bin" && ok "--data-file echoed into -o FILE" || bad "-o FILE: $(cat "$tmp/one.txt")"
run o4 fetch -o - --json -n 2 "$base/"
if [ "$(head -n 1 "$tmp/o4.out")" = "hello, worldhello, world" ] && [ "$(wc -l <"$tmp/o4.out")" = 2 ]; then
    ok "-o - with --json: bodies, then the JSON on a line of its own"
else
    bad "-o - --json: $(cat "$tmp/o4.out")"
fi
check o4 "-o - with --json: the JSON is the last line" 'd["requests"] == 2'
mkdir "$tmp/dir"
run o5 fetch -o "$tmp/dir" -c 3 "$base/a/file.txt" "$base/b/file.txt" "$base/" "$base/slow?ms=1"
if [ "$rc" = 0 ] && [ "$(cat "$tmp/dir/file.txt")" = "hello, world" ] && [ -f "$tmp/dir/file.txt.2" ] &&
    [ -f "$tmp/dir/index.html" ] && [ "$(cat "$tmp/dir/slow")" = "waited 1 ms" ]; then
    ok "-o DIR: one file per URL, clashing names numbered"
else
    bad "-o DIR (exit $rc): $(ls "$tmp/dir")"
fi
printf '# comment\n\n%s/a\n  %s/b  \n' "$base" "$base" >"$tmp/urls"
run i1 fetch --json -n 3 -c 2 -i "$tmp/urls" "$base/c"
check i1 "-i FILE adds its URLs (3 URLs x 3)" 'd["requests"] == 9 and d["urls"] == 3 and d["succeeded"] == 9'
run k1 fetch --json --cookies -n 2 "$base/"
check k1 "--cookies runs" 'd["succeeded"] == 2'

# ---- bench ------------------------------------------------------------------------
run b1 bench "$base/" -c 4 -d 0.5 --json
[ "$rc" = 0 ] && ok "bench -d 0.5: exit 0" || bad "bench -d 0.5: exit $rc $(cat "$tmp/b1.err")"
check b1 "bench --json has the documented keys" \
    "$has_keys"' and all(k in d for k in ("non_2xx","bytes_per_second","bytes"))'
check b1 "bench -c 4 -d 0.5: requests, 4 connections, no errors, bytes counted" \
    'd["requests"] > 100 and d["failed"] == 0 and d["non_2xx"] == 0 and d["connections_opened"] == 4 and abs(d["elapsed_s"] - 0.5) < 0.05 and d["bytes_per_second"] > d["requests_per_second"] * 50 and d["model"] == "closed" and d["latency_us"]["p50"] > 0'
[ "$(wc -l <"$tmp/b1.out")" = 1 ] && ok "bench --json: one line on stdout" || bad "bench stdout: $(cat "$tmp/b1.out")"

run b2 bench "$base/" -c 4 -p 4 -n 2000 --json
check b2 "bench -n 2000 -p 4: exactly 2000 requests on 4 connections" \
    'd["requests"] == 2000 and d["succeeded"] == 2000 and d["connections_opened"] == 4 and d["pipeline"] == 4'

run b3 bench "$base/" -c 2 -t 2 -M 5 -n 100 --json
check b3 "bench -M 5: a new connection every 5 requests" \
    'd["requests"] == 100 and 20 <= d["connections_opened"] <= 22'

run b4 bench "$base/" -c 4 -R 1000 -d 0.5 --json
check b4 "bench -R 1000 -d 0.5: about 500 requests, latency from the intended start" \
    'd["model"] == "open" and 430 <= d["requests"] <= 560 and d["failed"] == 0 and d["rate"] == 1000 and d["latency_uncorrected_us"]["p50"] <= d["latency_us"]["p50"]'

run b5 bench "$base/" -c 2 -d 0.3 -X BREW --json
[ "$rc" = 1 ] && ok "bench: 501 responses exit 1" || bad "bench 501: exit $rc"
check b5 "bench: non_2xx counts 501s" 'd["non_2xx"] == d["requests"] > 0 and d["errors"] == {"http_5xx": d["requests"]}'

run b6 bench "http://127.0.0.1:$dead/" -c 2 -d 0.3 --json
[ "$rc" = 1 ] && ok "bench refused: exit 1" || bad "bench refused: exit $rc"
check b6 "bench refused: kind connect" 'd["errors"].get("connect", 0) > 0 and d["succeeded"] == 0'

run b7 bench "$base/" -c 2 -d 0.4 --warmup 0.2
if [ "$rc" = 0 ] && grep -q "^ferry bench $base/: closed model, 2 connections, 1 thread$" "$tmp/b7.out" &&
    grep -Eq '^  requests +[0-9,]+ in 0\.4[0-9]+ s: [0-9,]+ req/s$' "$tmp/b7.out" &&
    grep -Eq '^  latency +p50 ' "$tmp/b7.out" && grep -Eq '^  non-2xx +0$' "$tmp/b7.out" &&
    grep -Eq '^  errors +none$' "$tmp/b7.out"; then
    ok "bench text summary (with --warmup)"
else
    bad "bench text summary (exit $rc): $(cat "$tmp/b7.out" "$tmp/b7.err")"
fi

run b8 bench "$base/echo" -c 1 -n 10 --body 'xyz' --json
check b8 "bench --body: POSTs answered" 'd["requests"] == 10 and d["succeeded"] == 10'

# SIGTERM ends fetch and bench as SIGINT does: the summary of what completed,
# interrupted, exit 1 (it used to kill them without a summary).
# served: requests the server has handled, from /status (which counts itself).
served() { curl -sS --max-time 2 "$base/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])'; }
# signalled NAME SIGNAL CMD ARGS...: runs `ferry CMD ARGS` under timeout(1),
# sends SIGNAL to the timeout process once the server has answered ferry a few
# times (so its handlers are in place, however slow the start: ASan), waits;
# stdout in $tmp/NAME.out, exit status in $rc. timeout passes the signal to
# ferry and to its process group: ferry gets it twice at once, as from a
# service manager, and must still print its summary.
signalled() {
    local name=$1 sig=$2; shift 2
    local before i
    before=$(served)
    timeout 20 "$ferry" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" </dev/null &
    local p=$!
    for i in $(seq 100); do
        [ $(( $(served) - before - i )) -ge 3 ] && break
        sleep 0.1
    done
    kill -"$sig" "$p" 2>/dev/null
    wait "$p"; rc=$?
}
# twice NAME SIGNAL CMD ARGS...: ferry CMD ARGS, then SIGNAL twice back to back
# straight to it (what timeout(1) does); the summary must survive.
twice() {
    local name=$1 sig=$2; shift 2
    local before i
    before=$(served)
    "$ferry" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" </dev/null &
    local p=$!
    for i in $(seq 100); do
        [ $(( $(served) - before - i )) -ge 3 ] && break
        sleep 0.1
    done
    kill -"$sig" "$p" 2>/dev/null; kill -"$sig" "$p" 2>/dev/null
    for i in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null # hung: the exit status says so
    wait "$p"; rc=$?
}
for sig in TERM INT; do
    signalled s$sig $sig fetch --json -n 1000 "$base/slow?ms=20"
    [ "$rc" = 1 ] && ok "fetch SIG$sig: exit 1" || bad "fetch SIG$sig: exit $rc"
    check s$sig "fetch SIG$sig: the summary of what completed, interrupted" \
        'd["interrupted"] == 1 and 2 <= d["requests"] < 1000 and d["failed"] == 0'
    signalled b$sig $sig bench "$base/" -c 2 -d 8 --json
    [ "$rc" = 1 ] && ok "bench SIG$sig: exit 1" || bad "bench SIG$sig: exit $rc"
    check b$sig "bench SIG$sig: the summary, interrupted" 'd["interrupted"] == 1 and d["requests"] > 0'
    twice t$sig $sig fetch --json -n 1000 "$base/slow?ms=20"
    [ "$rc" = 1 ] && ok "fetch SIG$sig twice at once: exit 1" || bad "fetch SIG$sig twice at once: exit $rc"
    check t$sig "fetch SIG$sig twice at once: the summary" 'd["interrupted"] == 1'
    twice u$sig $sig bench "$base/" -c 2 -d 8 --json
    [ "$rc" = 1 ] && ok "bench SIG$sig twice at once: exit 1" || bad "bench SIG$sig twice at once: exit $rc"
    check u$sig "bench SIG$sig twice at once: the summary" 'd["interrupted"] == 1'
done

stop_server
exit $fail
