#!/usr/bin/env bash
# make_certs.sh — write test certificates into a directory with the `openssl`
# command, for the shell tests (tests/cli_tls.sh) and bench/tls.sh. Made at
# run time, valid for 2 days: no key that expires is committed.
#
#   tests/support/make_certs.sh DIR [rsa]
#
# Files (PEM, unencrypted PKCS#8 keys), every subject CN distinct:
#   ca.crt ca.key          the test CA (ECDSA P-256): trust this one
#   ec.crt ec.key          ECDSA P-256, signed by ca: localhost, 127.0.0.1, ::1
#   rsa.crt rsa.key        RSA-2048, the same names (only with `rsa`: ~0.5 s)
#   other.crt other.key    signed by ca, for other.test only
#   api.crt api.key        signed by ca, for api.example.test only (an SNI entry)
#   self.crt self.key      self-signed: localhost, 127.0.0.1
#   client.crt client.key  a client certificate (clientAuth) signed by ca,
#                          CN "ferry test client"
# Exit status 0, or 1 with openssl's complaint on stderr.
set -euo pipefail
dir=${1:?usage: make_certs.sh DIR [rsa]}
want_rsa=${2:-}
command -v openssl >/dev/null || { echo "make_certs.sh: openssl not found (scripts/deps.sh installs it)" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"

EC=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1)
serial() { echo "0x$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"; }

# leaf NAME CN SAN EKU [KEYOPTS...]: NAME.key and NAME.crt signed by the CA.
leaf() {
    local name=$1 cn=$2 san=$3 eku=$4
    shift 4
    openssl req -new "$@" -noenc -keyout "$name.key" -subj "/CN=$cn" -out "$name.csr" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n%s' \
        "$eku" "${san:+subjectAltName=$san$'\n'}" >"$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -set_serial "$(serial)" -days 2 \
        -extfile "$name.ext" -out "$name.crt" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
}

openssl req -x509 "${EC[@]}" -noenc -keyout ca.key -out ca.crt -days 2 -subj "/CN=ferry test CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
leaf ec "ferry test server (ec)" "DNS:localhost,IP:127.0.0.1,IP:::1" serverAuth "${EC[@]}"
leaf other "ferry test other" "DNS:other.test" serverAuth "${EC[@]}"
leaf api "ferry test api" "DNS:api.example.test" serverAuth "${EC[@]}"
leaf client "ferry test client" "" clientAuth "${EC[@]}"
openssl req -x509 "${EC[@]}" -noenc -keyout self.key -out self.crt -days 2 \
    -subj "/CN=ferry test self-signed" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
if [ "$want_rsa" = rsa ]; then
    leaf rsa "ferry test server (rsa)" "DNS:localhost,IP:127.0.0.1,IP:::1" serverAuth \
        -newkey rsa:2048
fi
chmod 600 ./*.key
