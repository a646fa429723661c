#!/usr/bin/env bash
# HTTPS as a user of the CLI sees it: `ferry serve --tls-*` and `ferry fetch`
# / `ferry bench` with --cacert, -k, --cert and --key against it. Certificates
# are made at test time (tests/support/make_certs.sh, the openssl command).
# Bad combinations of flags exit 2 and a file that does not load exits 1, one
# line each; requests verify against the test CA; a certificate that does not
# verify is kind tls with its reason; SIGHUP reloads the files with a
# connection open (it keeps working, new ones see the new certificate) and a
# broken file keeps the old ones; client certificates; SNI; --host localhost;
# the handshake timeout; resumption with bench -M 1.
# Every wait is bounded, and a server left running is killed on exit.
#
#   tests/cli_tls.sh path/to/ferry
set -u
ferry="$1"
for t in curl openssl; do command -v $t >/dev/null || { echo "FAIL $t is needed"; exit 1; }; done
RUN_TIMEOUT=20 # each fetch/bench here may make many TLS handshakes: 20 s, not 10
. "$(dirname "$0")/cli_lib.sh" # ok, bad, usage_error, run, check, start_server, stop_server; $tmp

C=$tmp/certs
"$(dirname "$0")/support/make_certs.sh" "$C" || { echo "FAIL making the test certificates"; exit 1; }
EC=(--tls-cert "$C/ec.crt" --tls-key "$C/ec.key")

# load_error CMD DESCRIPTION WANT ARGS...: `ferry CMD ARGS` exits 1 with one
# line on stderr that contains WANT (the file and why).
load_error() {
    local cmd=$1 what="$1: $2" want=$3 err rc; shift 3
    err=$(timeout 10 "$ferry" "$cmd" "$@" 2>&1 >/dev/null </dev/null); rc=$?
    if [ "$rc" = 1 ] && [ "$(printf '%s\n' "$err" | wc -l)" = 1 ] && [[ "$err" == *"$want"* ]]; then
        ok "$what: exit 1, '$err'"
    else
        bad "$what: exit $rc, want 1 and one line with '$want': $err"
    fi
}
# served: requests the running server has handled (/status counts itself).
served() { curl -sk --max-time 2 "$base/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])' 2>/dev/null || echo 0; }
# wait_log PATTERN COUNT: until $tmp/err has COUNT lines matching PATTERN (5 s at most).
wait_log() {
    local i
    for i in $(seq 50); do
        [ "$(grep -c -- "$1" "$tmp/err")" -ge "$2" ] && return 0
        sleep 0.1
    done
    return 1
}
# subject: the CN of the certificate the server presents for localhost.
subject() {
    openssl s_client -connect "127.0.0.1:${base##*:}" -servername localhost </dev/null 2>/dev/null |
        openssl x509 -noout -subject 2>/dev/null | sed 's/.*CN *= *//'
}

# ---- usage: combinations that mean nothing, exit 2 ---------------------------------
U=https://127.0.0.1:9/
usage_error serve "--tls-key without --tls-cert" --tls-key "$C/ec.key"
usage_error serve "--tls-sni without --tls-cert" --tls-sni "api.example.test=$C/api.crt,$C/api.key"
usage_error serve "--tls-client-ca without --tls-cert" --tls-client-ca "$C/ca.crt"
usage_error serve "--tls-client-required without a CA" "${EC[@]}" --tls-client-required
usage_error serve "--tls-handshake-timeout without --tls-cert" --tls-handshake-timeout 100
usage_error serve "--tls-handshake-timeout junk" "${EC[@]}" --tls-handshake-timeout 1s
usage_error serve "--tls-sni without a key" "${EC[@]}" --tls-sni "api.example.test=$C/api.crt"
usage_error serve "--tls-sni without a name" "${EC[@]}" --tls-sni "=$C/api.crt,$C/api.key"
usage_error serve "--tls-cert with an empty value" --tls-cert=
usage_error fetch "--key without --cert" --key "$C/client.key" $U
usage_error bench "--key without --cert" --key "$C/client.key" $U
usage_error fetch "--cacert without a value" $U --cacert
usage_error bench "-k with a value" -k=1 $U

# ---- files that do not load: exit 1, the file and why ------------------------------
load_error serve "a missing certificate" "$C/nope.crt: No such file or directory" \
    --port 0 --tls-cert "$C/nope.crt" --tls-key "$C/ec.key"
load_error serve "another certificate's key" "$C/other.key: key values mismatch" \
    --port 0 --tls-cert "$C/ec.crt" --tls-key "$C/other.key"
load_error serve "a certificate as the key" "$C/ec.crt: no unencrypted PEM private key" \
    --port 0 --tls-cert "$C/ec.crt" --tls-key "$C/ec.crt"
load_error serve "a missing client CA" "$C/nope-ca.crt: No such file or directory" \
    --port 0 "${EC[@]}" --tls-client-ca "$C/nope-ca.crt"
load_error serve "an SNI name that is not a host name" 'SNI name "a b"' \
    --port 0 "${EC[@]}" --tls-sni "a b=$C/api.crt,$C/api.key"
load_error fetch "a missing --cacert" "$C/nope.crt: No such file or directory" \
    --cacert "$C/nope.crt" $U
load_error bench "a key as --cacert" "$C/ec.key: no PEM certificate" --cacert "$C/ec.key" -n 1 $U
load_error fetch "a --cert without its key" "$C/client.crt: no unencrypted PEM private key" \
    --cert "$C/client.crt" $U

# ---- HTTPS, verified against the test CA ---------------------------------------------------
if start_server "${EC[@]}"; then
    [[ "$base" == https://127.0.0.1:* ]] && ok "the listening line says https://" || bad "listening: $base"
    port=${base##*:}
    run f1 fetch --cacert "$C/ca.crt" -n 20 --json "$base/"
    [ "$rc" = 0 ] && ok "fetch --cacert: exit 0" || bad "fetch --cacert: exit $rc $(cat "$tmp/f1.err")"
    check f1 "fetch --cacert -n 20: one connection, one handshake, tls_* in the JSON" \
        'd["succeeded"] == 20 and d["connections_opened"] == 1 and d["tls_handshakes"] == 1 and d["tls_resumed"] == 0 and d["first_error"] is None'
    run f2 fetch --cacert "$C/ca.crt" -n 3 "https://localhost:$port/"
    if [ "$rc" = 0 ] && grep -Eq '^  tls +1 handshake, 0 resumed \(0\.0%\)$' "$tmp/f2.out"; then
        ok "fetch by name (SNI, DNS name checked): the text summary has a tls line"
    else
        bad "fetch https://localhost (exit $rc): $(cat "$tmp/f2.out" "$tmp/f2.err")"
    fi
    body=$(curl -sS --max-time 5 --cacert "$C/ca.crt" "$base/" 2>&1)
    [ "$body" = "hello, world" ] && ok "curl --cacert gets hello, world" || bad "curl: $body"

    # Verification fails without the CA: kind tls, the reason in the first-error line.
    run v1 fetch --json "$base/"
    [ "$rc" = 1 ] && ok "no --cacert: exit 1" || bad "no --cacert: exit $rc"
    check v1 "no --cacert: kind tls, ETLSVERIFY, reason unknown-issuer" \
        'd["errors"] == {"tls": 1} and d["error_codes"] == {"ETLSVERIFY": 1} and d["first_error"]["tls_verify_reason"] == "unknown-issuer" and d["first_error"]["url"].startswith("https://") and d["retries"] == 0'
    run v3 fetch "$base/"
    if grep -Eq '^  errors +tls 1 \(ETLSVERIFY 1\)$' "$tmp/v3.out" &&
        grep -Eq "^  first error +ETLSVERIFY on $base/: TLS certificate verification failed \(unknown-issuer\)$" "$tmp/v3.out"; then
        ok "text summary: errors tls, and the first error with its reason"
    else
        bad "text summary of a verification failure: $(cat "$tmp/v3.out")"
    fi
    run v4 bench --json -c 1 -n 3 "$base/"
    check v4 "bench without --cacert: kind tls with the reason" \
        'd["errors"] == {"tls": 3} and d["first_error"]["tls_verify_reason"] == "unknown-issuer"'

    # Resumption: every request on a new connection.
    run r1 bench --cacert "$C/ca.crt" -M 1 -c 1 -n 50 --json "$base/"
    check r1 "bench -M 1 -n 50: 50 handshakes, at least 45 resumed" \
        'd["succeeded"] == 50 and d["connections_opened"] == 50 and d["tls_handshakes"] == 50 and d["tls_resumed"] >= 45'
    run r2 bench --cacert "$C/ca.crt" -c 2 -d 0.3 "$base/"
    grep -Eq '^  tls +2 handshakes, 0 resumed' "$tmp/r2.out" && ok "bench text summary: the tls line" ||
        bad "bench text summary: $(cat "$tmp/r2.out" "$tmp/r2.err")"

    got=$(curl -sS --max-time 5 "http://127.0.0.1:$port/" -w ' %{http_code}' 2>&1)
    [[ "$got" == *"speaks HTTPS"*" 400" ]] && ok "plain HTTP on the TLS port: 400" || bad "plain HTTP: $got"
    curl -sS --max-time 5 --cacert "$C/ca.crt" -o "$tmp/status" "$base/status"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["tls_handshakes"] >= 50 and d["tls_resumed"] >= 45 and "tls_handshake_timeouts" in d else 1)' "$tmp/status" &&
        ok "/status has the TLS stats" || bad "/status: $(cat "$tmp/status")"
    stop_server
    grep -Eq '"GET / HTTP/1.1" 200 12 [0-9.]+ms TLSv1\.3$' "$tmp/err" && grep -Eq 'ms TLSv1\.3 resumed$' "$tmp/err" &&
        ok "access log: the TLS version, and resumed sessions marked" ||
        bad "access log: $(grep -m 3 GET "$tmp/err")"
fi

# ---- a self-signed certificate: -k ---------------------------------------------------
if start_server --quiet --tls-cert "$C/self.crt" --tls-key "$C/self.key"; then
    run k1 fetch --json "$base/"
    check k1 "self-signed, no -k: reason self-signed" 'd["first_error"]["tls_verify_reason"] == "self-signed"'
    run k2 fetch -k -n 3 --json "$base/"
    [ "$rc" = 0 ] && check k2 "-k: requests succeed" 'd["succeeded"] == 3' || bad "-k: exit $rc"
    if [ "$(wc -l <"$tmp/k2.err")" = 1 ] && grep -q '^ferry fetch: warning: --insecure: ' "$tmp/k2.err"; then
        ok "-k: one warning line on stderr"
    else
        bad "-k stderr: $(cat "$tmp/k2.err")"
    fi
    run k3 bench --insecure -t 2 -c 2 -n 10 --json "$base/"
    check k3 "bench --insecure, 2 threads: succeeds" 'd["succeeded"] == 10'
    [ "$(grep -c 'warning: --insecure' "$tmp/k3.err")" = 1 ] && ok "bench --insecure: the warning once" ||
        bad "bench --insecure stderr: $(cat "$tmp/k3.err")"
    stop_server
fi

# ---- SIGHUP: every file read again, with a connection open ---------------------------------
cp "$C/ec.crt" "$tmp/live.crt"
cp "$C/ec.key" "$tmp/live.key"
if start_server --quiet --tls-cert "$tmp/live.crt" --tls-key "$tmp/live.key"; then
    lbase=https://localhost:${base##*:}
    [ "$(subject)" = "ferry test server (ec)" ] && ok "before the reload: the ec certificate" ||
        bad "subject before: $(subject)"
    # One kept-alive connection, busy across every reload below (SIGINT ends it
    # with its summary once they are done).
    before=$(served)
    timeout 60 "$ferry" fetch --cacert "$C/ca.crt" -n 100000 -c 1 --json "$lbase/slow?ms=20" \
        >"$tmp/bg.out" 2>"$tmp/bg.err" </dev/null &
    bg=$!
    for i in $(seq 100); do [ $(( $(served) - before - i )) -ge 3 ] && break; sleep 0.1; done

    # To a certificate for another name: new connections fail to verify.
    cp "$C/other.crt" "$tmp/live.crt"
    cp "$C/other.key" "$tmp/live.key"
    kill -HUP "$pid"
    wait_log 'SIGHUP: TLS certificates reloaded' 1 && ok "SIGHUP: one line says it reloaded" ||
        bad "no reload line: $(cat "$tmp/err")"
    [ "$(subject)" = "ferry test other" ] && ok "after the reload: new connections get the new certificate" ||
        bad "subject after: $(subject)"
    run h1 fetch --cacert "$C/ca.crt" --json "$lbase/"
    check h1 "after the reload: a new fetch fails with hostname-mismatch" \
        'd["errors"] == {"tls": 1} and d["first_error"]["tls_verify_reason"] == "hostname-mismatch"'

    # Back to the first one.
    cp "$C/ec.crt" "$tmp/live.crt"
    cp "$C/ec.key" "$tmp/live.key"
    kill -HUP "$pid"
    wait_log 'SIGHUP: TLS certificates reloaded' 2 || bad "no second reload line"
    run h2 fetch --cacert "$C/ca.crt" --json "$lbase/"
    check h2 "reloaded back: a new fetch verifies" 'd["succeeded"] == 1'

    # A broken file: one line, the old certificates stay.
    lines=$(wc -l <"$tmp/err")
    printf 'not a key\n' >"$tmp/live.key"
    kill -HUP "$pid"
    wait_log 'SIGHUP: reload failed, keeping the old certificates' 1 &&
        grep -q "live.key: no unencrypted PEM private key" "$tmp/err" &&
        ok "a broken key: one line that names the file and why" || bad "broken reload: $(cat "$tmp/err")"
    [ "$(wc -l <"$tmp/err")" = $((lines + 1)) ] && ok "a broken reload logs exactly one line" ||
        bad "broken reload: $(tail -n +$((lines + 1)) "$tmp/err")"
    run h3 fetch --cacert "$C/ca.crt" --json "$lbase/"
    check h3 "after a broken reload: the old certificate still serves" 'd["succeeded"] == 1'

    # Still running at the SIGINT, on the one connection it opened before the
    # first reload, with nothing failed: that connection lived through all three.
    kill -INT "$bg"
    wait "$bg"
    cp "$tmp/bg.out" "$tmp/bgc.out"
    check bgc "the connection opened before the reloads served through all three: one connection, no failure" \
        'd["interrupted"] == 1 and d["failed"] == 0 and d["connections_opened"] == 1 and d["succeeded"] >= 3'
    stop_server "SIGTERM after the reloads"
fi

# ---- client certificates --------------------------------------------------------------
CL=(--cacert "$C/ca.crt" --cert "$C/client.crt" --key "$C/client.key")
if start_server "${EC[@]}" --tls-client-ca "$C/ca.crt" --tls-client-required; then
    run c1 fetch "${CL[@]}" --json "$base/"
    check c1 "required: with --cert and --key, served" 'd["succeeded"] == 1'
    # Refused. Under TLS 1.3 the server's alert (certificate_required, or
    # unknown_ca) comes after the client's Finished; the server then sends
    # its FIN and lingers, so no reset can overtake the alert: the client
    # sees ETLSALERT (kind tls), no response, and the request fails.
    refused='d["succeeded"] == 0 and d["failed"] == 1 and d["status"] == {} and set(d["errors"]) == {"tls"}'
    run c2 fetch --cacert "$C/ca.crt" --retries 0 --json "$base/"
    check c2 "required: without a certificate, refused" "$refused"
    run c3 fetch --cacert "$C/ca.crt" --cert "$C/self.crt" --key "$C/self.key" --retries 0 --json "$base/"
    check c3 "required: a certificate the CA did not sign, refused" "$refused"
    stop_server
    grep -q 'TLSv1.3 client="CN=ferry test client"$' "$tmp/err" &&
        ok "access log: the client certificate's subject" || bad "access log: $(grep GET "$tmp/err")"
fi
if start_server "${EC[@]}" --tls-client-ca "$C/ca.crt"; then
    run c4 fetch --cacert "$C/ca.crt" --json "$base/"
    check c4 "requested: without a certificate, served" 'd["succeeded"] == 1'
    run c5 fetch "${CL[@]}" --json "$base/"
    check c5 "requested: with one, served" 'd["succeeded"] == 1'
    stop_server
    [ "$(grep -c 'client="CN=ferry test client"' "$tmp/err")" = 1 ] &&
        ok "requested: only the request with a certificate logs a subject" || bad "log: $(cat "$tmp/err")"
fi

# ---- SNI, and --host localhost ----------------------------------------------------------
if start_server --quiet --host localhost "${EC[@]}" --tls-sni "api.example.test=$C/api.crt,$C/api.key"; then
    [[ "$base" == https://localhost:* ]] && ok "--host localhost with TLS: https://localhost" || bad "$base"
    port=${base##*:}
    body=$(curl -sS --max-time 5 --cacert "$C/ca.crt" --resolve "api.example.test:$port:127.0.0.1" \
        "https://api.example.test:$port/" 2>&1)
    [ "$body" = "hello, world" ] && ok "--tls-sni: api.example.test gets its own certificate" || bad "SNI: $body"
    run s1 fetch --cacert "$C/ca.crt" --json "$base/"
    check s1 "--tls-sni: other names get the default certificate" 'd["succeeded"] == 1'
    stop_server
fi

# ---- the handshake timeout ---------------------------------------------------------------
if start_server --quiet "${EC[@]}" --tls-handshake-timeout 200; then
    took=$(python3 - "${base##*:}" <<'EOF'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(5)
t0 = time.monotonic()
try:
    s.recv(1)  # silent: the server must give up on the handshake
except OSError:
    pass
print("%.3f" % (time.monotonic() - t0))
EOF
)
    awk -v t="$took" 'BEGIN { exit !(t >= 0.15 && t < 2) }' &&
        ok "--tls-handshake-timeout 200: a silent client is closed after ${took} s" ||
        bad "handshake timeout: closed after $took s"
    curl -sS --max-time 5 --cacert "$C/ca.crt" -o "$tmp/status" "$base/status"
    python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["tls_handshake_timeouts"] == 1 else 1)' "$tmp/status" &&
        ok "/status counts the handshake timeout" || bad "/status: $(cat "$tmp/status")"
    stop_server
fi

exit $fail
