#!/usr/bin/env bash
# `ferry serve` as a user sees it: bad usage exits 2 with one line on stderr;
# the demo handler, its special paths and --dir answer over real sockets
# (curl on 127.0.0.1); SIGTERM ends the process with status 0.
# Every wait is bounded, and a server left running is killed on exit.
#
#   tests/cli_serve.sh path/to/ferry
set -u
ferry="$1"
command -v curl >/dev/null || { echo "FAIL curl is needed"; exit 1; }
. "$(dirname "$0")/cli_lib.sh" # ok, bad, usage_error, start_server, stop_server; $tmp

# ---- usage -------------------------------------------------------------------
usage_error serve "unknown flag" --bogus
usage_error serve "missing value" --port
usage_error serve "missing value after =" --port=
usage_error serve "negative number" --port -1
usage_error serve "port out of range" --port 65536
usage_error serve "junk after number" --keep-alive-timeout 10ms
usage_error serve "sign before number" --max-connections +5
usage_error serve "number overflows 64 bits" --max-body 99999999999999999999999
usage_error serve "uint32 flag out of range" --max-requests-per-connection 4294967296
usage_error serve "timeout above the library's 2^32-1 ms" --keep-alive-timeout 4294967296
usage_error serve "extra positional argument" extra
usage_error serve "value for a flag without one" --quiet=yes
usage_error serve "host that is neither an address nor a name" --host 'local host'
usage_error serve "empty host" --host=
usage_error serve "missing --dir" --dir "$tmp/does-not-exist"

out=$(timeout 5 "$ferry" serve --help); rc=$?
if [ "$rc" = 0 ] && [[ "$out" == "usage: ferry serve"* ]]; then
    ok "--help"
else
    bad "--help: exit $rc: $out"
fi
if timeout 5 "$ferry" help | grep -q '^  serve '; then
    ok "ferry help lists serve"
else
    bad "ferry help lists serve"
fi

# ---- running servers ------------------------------------------------------------
# fetch DESCRIPTION WANT_STATUS URL_PATH [curl args...]: body in $tmp/body,
# "status content-type time" in $got.
fetch() {
    local what=$1 want=$2 path=$3; shift 3
    got=$(curl -sS --max-time 5 -o "$tmp/body" -w '%{http_code} %{content_type} %{time_total}' \
        "$@" "$base$path" 2>&1)
    if [ "${got%% *}" != "$want" ]; then bad "$what: got '$got', want status $want"; return 1; fi
    return 0
}
body_is() { # description expected
    if [ "$(cat "$tmp/body")" = "$2" ]; then
        ok "$1"
    else
        bad "$1: body '$(head -c 200 "$tmp/body")'"
    fi
}
# at_least SECONDS: the last fetch took that long.
at_least() { awk -v t="${got##* }" -v m="$1" 'BEGIN { exit !(t >= m) }'; }

# ---- the demo handler -----------------------------------------------------------
if start_server; then
    err=$(timeout 5 "$ferry" serve --port "${base##*:}" 2>&1 >/dev/null); rc=$?
    if [ "$rc" = 1 ] && [ "$(printf '%s\n' "$err" | wc -l)" = 1 ]; then
        ok "port in use: exit 1, one line"
    else
        bad "port in use: exit $rc: $err"
    fi

    fetch "GET /" 200 / && body_is "GET / says hello, world" "hello, world"
    [[ "$got" == "200 text/plain "* ]] && ok "GET / is text/plain" || bad "GET / content type: $got"
    fetch "GET /any/path" 200 /any/path && body_is "any path says hello" "hello, world"

    head=$(curl -sS --max-time 5 -I "$base/" | tr -d '\r')
    if [[ "$head" == "HTTP/1.1 200"* ]] && grep -qi '^content-length: 12$' <<<"$head"; then
        ok "HEAD: 200 with Content-Length 12"
    else
        bad "HEAD: $head"
    fi

    fetch "POST echo" 200 /echo -H 'Content-Type: application/x-ferry-test' \
        --data-binary 'ping pong' && body_is "POST echoes the body" "ping pong"
    [[ "$got" == "200 application/x-ferry-test "* ]] && ok "echo keeps the content type" \
        || bad "echo content type: $got"
    fetch "PUT echo" 200 /x -X PUT --data-binary 'put body' && body_is "PUT echoes" "put body"

    fetch "unsupported method" 501 / -X BREW && ok "BREW → 501"

    fetch "/slow?ms=50" 200 '/slow?ms=50' && {
        at_least 0.05 && ok "/slow?ms=50 waits 50 ms" || bad "/slow?ms=50 too fast: $got"
    }
    fetch "/cpu?ms=50" 200 '/cpu?ms=50' && {
        at_least 0.05 && ok "/cpu?ms=50 takes 50 ms" || bad "/cpu?ms=50 too fast: $got"
    }
    fetch "/slow bad ms" 400 '/slow?ms=abc' && ok "/slow?ms=abc → 400"
    fetch "/cpu ms above the cap" 400 '/cpu?ms=60001' && ok "/cpu?ms=60001 → 400"
    fetch "/slow without ms" 400 '/slow' && ok "/slow without ms → 400"

    # Neither /slow nor /cpu may hold up the loop: GET / answers meanwhile.
    curl -sS --max-time 5 -o /dev/null "$base/slow?ms=700" &
    slow=$!
    curl -sS --max-time 5 -o /dev/null "$base/cpu?ms=700" &
    cpu=$!
    sleep 0.2
    if fetch "GET / beside /slow and /cpu" 200 / && ! at_least 0.3; then
        ok "GET / is not delayed by /slow and /cpu in flight"
    else
        bad "GET / beside /slow and /cpu: $got"
    fi
    wait "$slow" "$cpu"

    fetch "/status" 200 /status && {
        if python3 -m json.tool "$tmp/body" >/dev/null && grep -q '"requests"' "$tmp/body"; then
            ok "/status is a JSON object with the stats"
        else
            bad "/status body: $(cat "$tmp/body")"
        fi
        [[ "$got" == "200 application/json "* ]] && ok "/status is application/json" \
            || bad "/status content type: $got"
    }

    # Graceful shutdown: a request in flight at SIGTERM still gets its answer.
    curl -sS --max-time 5 -o "$tmp/late" -w '%{http_code}' "$base/slow?ms=500" >"$tmp/late_status" &
    late=$!
    sleep 0.2
    stop_server
    wait "$late"
    [ "$(cat "$tmp/late_status")" = 200 ] && ok "in-flight /slow answered during shutdown" \
        || bad "in-flight /slow during shutdown: $(cat "$tmp/late_status")"

    grep -q '"GET / HTTP/1.1" 200 12 ' "$tmp/err" && ok "access log on stderr" \
        || bad "no access log line: $(head -n 3 "$tmp/err")"
fi

# The largest timeouts the flags take are ones the library takes too (a year
# used to pass the flag check and fail in ferry_server_new, exit 1).
if start_server --quiet --keep-alive-timeout 4294967295 --headers-timeout 4294967295 \
    --request-timeout 4294967295 --idle-timeout 4294967295 --shutdown-grace 4294967295; then
    stop_server "the largest timeouts"
fi

# A host name is resolved, and the server listens on every address it stands
# for (issue 13 item 8: --host localhost used to be bad usage).
if start_server --quiet --host localhost; then
    [[ "$base" == http://localhost:* ]] && ok "--host localhost: the listening line names it" ||
        bad "--host localhost: $base"
    port=${base##*:}
    body=$(curl -sS --max-time 5 "http://127.0.0.1:$port/" 2>&1)
    [ "$body" = "hello, world" ] && ok "--host localhost answers on 127.0.0.1" || bad "127.0.0.1: $body"
    body=$(curl -sS --max-time 5 "$base/" 2>&1)
    [ "$body" = "hello, world" ] && ok "--host localhost answers on localhost" || bad "localhost: $body"
    stop_server "--host localhost"
fi
err=$(timeout 15 "$ferry" serve --port 0 --host nosuch.invalid 2>&1 >/dev/null); rc=$?
if [ "$rc" = 1 ] && [ "$(printf '%s\n' "$err" | wc -l)" = 1 ]; then
    ok "a name that does not resolve: exit 1, one line ($err)"
else
    bad "a name that does not resolve: exit $rc: $err"
fi

# ---- shutdown that cannot wait ------------------------------------------------------
# A second signal resets everything at once; so does the end of --shutdown-grace.
# Either way a /slow?ms=30000 in flight must not keep the process alive.
if start_server --quiet; then
    curl -sS --max-time 5 -o /dev/null "$base/slow?ms=30000" 2>/dev/null &
    hung=$!
    sleep 0.2
    kill -TERM "$pid"
    sleep 0.2
    stop_server "second SIGTERM with /slow?ms=30000 in flight"
    wait "$hung"
fi
if start_server --quiet --shutdown-grace 300; then
    curl -sS --max-time 5 -o /dev/null "$base/slow?ms=30000" 2>/dev/null &
    hung=$!
    sleep 0.2
    stop_server "SIGTERM, --shutdown-grace 300 and /slow?ms=30000 in flight"
    wait "$hung"
fi

# ---- --dir ----------------------------------------------------------------------
www="$tmp/www"
mkdir -p "$www/sub" "$www/empty"
printf 'static file\n' >"$www/hello.txt"
printf '<p>sub</p>\n' >"$www/sub/index.html"
printf 'secret\n' >"$tmp/secret.txt"
ln -s ../secret.txt "$www/link"
head -c 300000 /dev/urandom >"$www/big.bin" # several 64 KiB pieces

if start_server --dir "$www" --quiet; then
    fetch "file" 200 /hello.txt && body_is "GET /hello.txt" "static file"
    [[ "$got" == "200 text/plain"* ]] && ok "Content-Type by extension" || bad "content type: $got"
    fetch "large file" 200 /big.bin && {
        cmp -s "$tmp/body" "$www/big.bin" && ok "large file arrives whole" \
            || bad "large file differs"
        [[ "$got" == "200 application/octet-stream "* ]] && ok "unknown extension: octet-stream" \
            || bad "big.bin content type: $got"
    }
    fetch "percent-encoded name" 200 /hell%6F.txt && body_is "percent-decoding" "static file"
    fetch "directory index" 200 /sub/ && body_is "directory serves index.html" "<p>sub</p>"
    fetch "directory without index" 403 /empty/ && ok "directory without index.html → 403"
    fetch "missing file" 404 /nope.txt && ok "missing file → 404"
    fetch "dot-dot escape" 403 /../secret.txt --path-as-is && ok "/../secret.txt rejected"
    fetch "encoded dot-dot escape" 403 /%2e%2e/secret.txt --path-as-is && ok "/%2e%2e/ rejected"
    fetch "symlink escape" 403 /link && ok "symlink out of DIR rejected"
    fetch "encoded NUL" 400 /hello.txt%00 && ok "%00 rejected"

    lm=$(curl -sS --max-time 5 -I "$base/hello.txt" | tr -d '\r' |
        sed -n 's/^[Ll]ast-[Mm]odified: //p')
    if [[ "$lm" =~ ^[A-Z][a-z]{2},\ [0-9]{2}\ [A-Z][a-z]{2}\ [0-9]{4}\ [0-9:]{8}\ GMT$ ]]; then
        ok "Last-Modified is an IMF-fixdate: $lm"
        fetch "If-Modified-Since: Last-Modified" 304 /hello.txt -H "If-Modified-Since: $lm" \
            && ok "unchanged file → 304"
        fetch "If-Modified-Since: long ago" 200 /hello.txt \
            -H "If-Modified-Since: Thu, 01 Jan 1998 00:00:00 GMT" && ok "changed since → 200"
        fetch "If-Modified-Since: in the future" 200 /hello.txt \
            -H "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT" && ok "a future date is ignored → 200"
    else
        bad "Last-Modified: '$lm'"
    fi

    fetch "/status with --dir" 200 /status && ok "special paths still work with --dir"
    fetch "POST with --dir" 501 /hello.txt --data-binary x && ok "POST with --dir → 501"
    stop_server
    [ ! -s "$tmp/err" ] && ok "--quiet: nothing on stderr" \
        || bad "--quiet stderr: $(head -n 3 "$tmp/err")"
fi

exit $fail
