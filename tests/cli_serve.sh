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

# ---- usage -------------------------------------------------------------------
usage_error() { # description args...
    local what=$1 err rc; shift
    err=$(timeout 5 "$ferry" serve "$@" 2>&1 >/dev/null); rc=$?
    if [ "$rc" != 2 ]; then bad "$what: exit $rc, want 2"; return; fi
    if [ "$(printf '%s\n' "$err" | wc -l)" != 1 ] || [ "${err#ferry serve: }" = "$err" ]; then
        bad "$what: stderr is not one 'ferry serve: ...' line: $err"; return
    fi
    ok "$what"
}
usage_error "unknown flag" --bogus
usage_error "missing value" --port
usage_error "missing value after =" --port=
usage_error "negative number" --port -1
usage_error "port out of range" --port 65536
usage_error "junk after number" --keep-alive-timeout 10ms
usage_error "sign before number" --max-connections +5
usage_error "number overflows 64 bits" --max-body 99999999999999999999999
usage_error "uint32 flag out of range" --max-requests-per-connection 4294967296
usage_error "extra positional argument" extra
usage_error "value for a flag without one" --quiet=yes
usage_error "host that is not an address" --host localhost
usage_error "missing --dir" --dir "$tmp/does-not-exist"

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
# start_server ARGS...: starts `ferry serve --port 0 ARGS...` and sets pid and
# base once it printed its listening line (5 s at most). The exit status lands
# in $tmp/rc; stdout in $tmp/out, stderr in $tmp/err.
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
    if [[ ! "$line" =~ ^listening\ on\ http://127\.0\.0\.1:[0-9]+$ ]]; then
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
