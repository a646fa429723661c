/* fuzz_cookie.c — libFuzzer target for src/cookie.c: a jar fed random
 * Set-Cookie values from random hosts and paths, asked for headers between.
 *
 * Invariants checked after every operation (any failure abort()s):
 *   - a header value holds no CR, LF or NUL, its length is what was
 *     reported, measuring first (out = NULL) gives the same length, and asking
 *     twice in a row at the same time gives the same bytes;
 *   - the jar never holds more than max_total cookies, nor more than
 *     max_per_domain sharing a domain;
 *   - every stored cookie: name + value within max_cookie_bytes and not both
 *     empty, no control character but HTAB in either, domain lower-case and
 *     non-empty, path starting with '/', a Secure cookie only from a secure
 *     request, __Secure-/__Host- prefixes honoured, the strings NUL-terminated
 *     at their lengths;
 *   - cookie_jar_set() returns a cookie_set_result, or FERRY_EINVAL exactly
 *     when the host is empty or host or path holds a control byte or space;
 *   - a parsed date lies between 1601-01-01 and 9999-12-31.
 * Memory: the jar is freed at the end, so ASan/LSan report any leak.
 *
 * Input format, a sequence of records separated by '\n':
 *   byte 0 of the input: bit 0 small limits (64 bytes, 4 per domain, 12 in
 *          all, 1 day max age), else the defaults
 *   each record: op byte, then the record's bytes
 *     op & 3 == 0 or 1  Set-Cookie: byte 1 picks host (low nibble) and path
 *                       (high nibble), byte 2 adds seconds to the clock, the
 *                       rest is the Set-Cookie value; op bit 2 = secure
 *     op & 3 == 2       header: byte 1 picks host and path as above, byte 2
 *                       adds seconds; op bit 2 = secure
 *     op & 3 == 3       op bits 2-3: 0 clear session, 1 purge, 2 parse the
 *                       rest as a date, 3 as a Set-Cookie from the rest-as-host
 *   host index 15 / path index 15 take the text after byte 2 up to the first
 *   ' ' as the host (or path), the remainder being the Set-Cookie value.
 * Seeds: fuzz/seeds/fuzz_cookie/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cookie.h"
#include "ferry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond, what)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_cookie: %s (line %d)\n", what, __LINE__);                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const char *const hosts[15] = {
    "example.com",
    "www.example.com",
    "a.b.example.com",
    "EXAMPLE.com",
    "localhost",
    "10.0.0.1",
    "[::1]",
    "::1",
    "co.uk",
    "shop.co.uk",
    "x.shop.co.uk",
    "com",
    "example.com.",
    "1.2.3.4.5",
    "xn--bcher-kva.example",
};
static const char *const paths[15] = {
    "/", "/a",       "/a/", "/a/b/c", "",      "/a?x=/b/c", "/A/b",         "/a/b#c",
    "*", "/docs/x/", "//",  "/a//b",  "/%2F/", "/x/y/z/w",  "/a/b/c/d/e/f",
};

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char) (c + 32) : c;
}

static int iprefix(const char *s, size_t n, const char *p)
{
    size_t pn = strlen(p);
    if (n < pn) return 0;
    for (size_t i = 0; i < pn; i++)
        if (lower((unsigned char) s[i]) != (unsigned char) p[i]) return 0;
    return 1;
}

static void check_jar(const cookie_jar *jar)
{
    size_t n = cookie_jar_count(jar);
    CHECK(n <= jar->limits.max_total, "over max_total");
    for (size_t i = 0; i < n; i++) {
        const cookie *c = cookie_jar_at(jar, i);
        CHECK(c != NULL, "cookie_jar_at");
        CHECK(strlen(c->name) == c->name_len && strlen(c->value) == c->value_len,
              "name/value lengths");
        CHECK(strlen(c->domain) == c->domain_len && strlen(c->path) == c->path_len,
              "domain/path lengths");
        CHECK(c->name_len + c->value_len > 0, "empty cookie");
        CHECK(c->name_len + c->value_len <= jar->limits.max_cookie_bytes, "over max_cookie_bytes");
        for (size_t k = 0; k < c->name_len + c->value_len; k++) {
            unsigned char ch =
                (unsigned char) (k < c->name_len ? c->name[k] : c->value[k - c->name_len]);
            CHECK(ch >= 0x20 || ch == '\t', "control byte in a cookie");
            CHECK(ch != 0x7f, "DEL in a cookie");
            CHECK(ch != ';', "';' in a cookie");
        }
        CHECK(memchr(c->name, '=', c->name_len) == NULL, "'=' in a name");
        CHECK(c->domain_len > 0, "empty domain");
        for (size_t k = 0; k < c->domain_len; k++)
            CHECK(!(c->domain[k] >= 'A' && c->domain[k] <= 'Z'), "upper-case domain");
        CHECK(c->path_len > 0 && c->path[0] == '/', "path without '/'");
        if (iprefix(c->name, c->name_len, "__secure-")) CHECK(c->secure, "__Secure- not secure");
        if (iprefix(c->name, c->name_len, "__host-"))
            CHECK(c->secure && c->host_only && c->path_len == 1, "__Host- rules");
        if (c->name_len == 0)
            CHECK(!iprefix(c->value, c->value_len, "__secure-") &&
                      !iprefix(c->value, c->value_len, "__host-"),
                  "nameless prefixed cookie");
        size_t same = 0;
        for (size_t j = 0; j < n; j++) {
            const cookie *d = cookie_jar_at(jar, j);
            if (d->domain_len == c->domain_len && memcmp(d->domain, c->domain, c->domain_len) == 0)
                same++;
        }
        CHECK(same <= jar->limits.max_per_domain, "over max_per_domain");
    }
}

/* What cookie_jar_set() and cookie_jar_header() refuse with FERRY_EINVAL. */
static int bad_args(const char *host, size_t hn, const char *path, size_t pn)
{
    if (hn >= 2 && host[0] == '[' && host[hn - 1] == ']') {
        host++;
        hn -= 2;
    }
    if (hn == 0) return 1;
    for (size_t i = 0; i < hn; i++)
        if ((unsigned char) host[i] <= 0x20 || host[i] == 0x7f) return 1;
    for (size_t i = 0; i < pn; i++)
        if ((unsigned char) path[i] <= 0x20 || path[i] == 0x7f) return 1;
    return 0;
}

static void check_header(cookie_jar *jar, const char *host, size_t hn, const char *path, size_t pn,
                         int secure, int64_t now)
{
    size_t need = 0, n = 0;
    int r = cookie_jar_header(jar, host, hn, path, pn, secure, now, NULL, 0, &need);
    if (bad_args(host, hn, path, pn)) {
        CHECK(r == FERRY_EINVAL, "bad host or path accepted");
        return;
    }
    CHECK(r == 0 || r == FERRY_ENOBUFS, "header measure result");
    CHECK((r == 0) == (need == 0), "measure: 0 only when empty");
    char *out = malloc(need + 1);
    CHECK(out != NULL, "malloc");
    r = cookie_jar_header(jar, host, hn, path, pn, secure, now, out, need + 1, &n);
    CHECK(r == 0 && n == need, "header length differs from the measure");
    CHECK(strlen(out) == n, "header NUL");
    CHECK(memchr(out, '\r', n) == NULL && memchr(out, '\n', n) == NULL, "CR/LF in header");
    char *again = malloc(need + 1);
    CHECK(again != NULL, "malloc");
    size_t n2 = 0;
    r = cookie_jar_header(jar, host, hn, path, pn, secure, now, again, need + 1, &n2);
    CHECK(r == 0 && n2 == n && memcmp(out, again, n) == 0, "header not repeatable");
    free(again);
    free(out);
}

/* Host and path for a record: from the tables, or taken from the text. */
static void pick(uint8_t sel, const char **rest, size_t *rest_len, const char **host, size_t *hn,
                 const char **path, size_t *pn)
{
    unsigned hi = sel & 15u, pi = sel >> 4;
    if (hi < 15) {
        *host = hosts[hi];
        *hn = strlen(*host);
    } else {
        const char *sp = memchr(*rest, ' ', *rest_len);
        *hn = sp ? (size_t) (sp - *rest) : *rest_len;
        *host = *rest;
        *rest += *hn + (sp ? 1 : 0);
        *rest_len -= *hn + (sp ? 1 : 0);
    }
    if (pi < 15) {
        *path = paths[pi];
        *pn = strlen(*path);
    } else {
        const char *sp = memchr(*rest, ' ', *rest_len);
        *pn = sp ? (size_t) (sp - *rest) : *rest_len;
        *path = *rest;
        *rest += *pn + (sp ? 1 : 0);
        *rest_len -= *pn + (sp ? 1 : 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 64 * 1024) return 0;
    cookie_limits small = {64, 4, 12, 86400};
    cookie_jar jar;
    CHECK(cookie_jar_init(&jar, (data[0] & 1) ? &small : NULL) == 0, "init");
    int64_t now = INT64_C(1700000000);
    const char *p = (const char *) data + 1, *end = (const char *) data + size;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t) (end - p));
        const char *rec = p;
        size_t len = nl ? (size_t) (nl - p) : (size_t) (end - p);
        p = nl ? nl + 1 : end;
        if (len == 0) continue;
        uint8_t op = (uint8_t) rec[0];
        int secure = (op >> 2) & 1;
        uint8_t sel = len > 1 ? (uint8_t) rec[1] : 0;
        now += len > 2 ? (uint8_t) rec[2] : 0;
        const char *rest = rec + (len > 3 ? 3 : len);
        size_t rest_len = len > 3 ? len - 3 : 0;
        const char *host, *path;
        size_t hn, pn;

        switch (op & 3) {
        case 0:
        case 1: {
            pick(sel, &rest, &rest_len, &host, &hn, &path, &pn);
            int r = cookie_jar_set(&jar, rest, rest_len, host, hn, path, pn, secure, now);
            CHECK(r == COOKIE_STORED || r == COOKIE_REPLACED || r == COOKIE_EXPIRED ||
                      r == COOKIE_IGNORED || r == FERRY_EINVAL,
                  "set result");
            CHECK((r == FERRY_EINVAL) == bad_args(host, hn, path, pn), "set EINVAL");
            break;
        }
        case 2:
            pick(sel, &rest, &rest_len, &host, &hn, &path, &pn);
            check_header(&jar, host, hn, path, pn, secure, now);
            break;
        default:
            switch ((op >> 2) & 3) {
            case 0: cookie_jar_clear_session(&jar); break;
            case 1: cookie_jar_purge_expired(&jar, now); break;
            case 2: {
                int64_t t;
                if (cookie_parse_date(rec + 1, len - 1, &t) == 0)
                    CHECK(t >= INT64_C(-11644473600) && t <= INT64_C(253402300799),
                          "date out of range");
                break;
            }
            default:
                /* the whole record after the op as host, a fixed cookie */
                if (len > 1)
                    cookie_jar_set(&jar, "h=1; Domain=example.com; Path=/", 31, rec + 1, len - 1,
                                   "/", 1, secure, now);
                break;
            }
        }
        check_jar(&jar);
    }
    /* every host once more, so the header path sees whatever was stored */
    for (unsigned i = 0; i < 15; i++)
        check_header(&jar, hosts[i], strlen(hosts[i]), "/a/b/c", 6, 1, now);
    cookie_jar_free(&jar);
    return 0;
}
