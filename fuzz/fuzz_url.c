/* fuzz_url.c — libFuzzer target for src/url.c.
 *
 * Every input is used three ways:
 *   1. as a URL: url_parse() on an exact-size copy (ASan catches overreads),
 *      and for every accepted URL the invariants below;
 *   2. as a path: url_percent_decode() agrees with an independent check of
 *      the escapes, decodes in place the same, and re-encoding every byte
 *      as %XX decodes back to the same bytes;
 *   3. as form material: data[0] picks how many pieces the rest is cut into;
 *      the pieces are keys and values, url_form_encode_n() encodes them, the
 *      output holds only the allowed bytes, and splitting it on '&' and '='
 *      and url_form_decode()-ing each piece gives the bytes back.
 *
 * Invariants of an accepted URL: slices inside the input (the path may be
 * the static "/"); the host is of exactly one kind and a name never reads as
 * a number to inet_aton() (the resolver); literals' bytes match inet_pton;
 * writers size themselves and fit the advertised maxima; the pieces
 * reassemble into a URL that parses to the same result, and a variant in
 * another case with the default port spelled out has the same origin key;
 * ferry's own request parser accepts "GET target HTTP/1.1" with the Host
 * header, with the same target.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"
#include "http1/parse.h"
#include "util/url.h"

#define CHECK(cond, what)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_url: %s (line %d)\n", what, __LINE__);                          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int inside(ferry_str s, const char *base, size_t len)
{
    return s.len == 0 ? s.p == NULL || (s.p >= base && s.p <= base + len)
                      : s.p >= base && s.p + s.len <= base + len;
}

static int str_eq(ferry_str a, ferry_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static void same(const url_parts *a, const url_parts *b)
{
    CHECK(str_eq(a->scheme, b->scheme) && str_eq(a->host, b->host) && str_eq(a->zone, b->zone) &&
              str_eq(a->path, b->path) && str_eq(a->query, b->query),
          "reassembled pieces differ");
    CHECK((a->query.p == NULL) == (b->query.p == NULL), "query presence differs");
    CHECK(a->port == b->port && a->https == b->https && a->port_given == b->port_given &&
              a->is_ipv4 == b->is_ipv4 && a->is_ipv6 == b->is_ipv6 &&
              memcmp(a->addr, b->addr, sizeof(a->addr)) == 0,
          "reassembled facts differ");
}

/* scheme://host[:port]path query, with the given case flips and port rule. */
static size_t build(const url_parts *u, char *out, size_t cap, int flip_case, int explicit_port)
{
    size_t n = 0;
    n += (size_t) snprintf(out + n, cap - n, "%.*s://%s", (int) u->scheme.len, u->scheme.p,
                           u->is_ipv6 ? "[" : "");
    for (size_t i = 0; i < u->host.len; i++) {
        char c = u->host.p[i];
        out[n++] = flip_case ? (char) (isupper((unsigned char) c) ? tolower((unsigned char) c)
                                                                  : toupper((unsigned char) c))
                             : c;
    }
    if (flip_case)
        for (size_t i = 0; i < u->scheme.len; i++)
            out[i] = (char) (isupper((unsigned char) out[i]) ? tolower((unsigned char) out[i])
                                                             : toupper((unsigned char) out[i]));
    if (u->zone.len)
        n += (size_t) snprintf(out + n, cap - n, "%%25%.*s", (int) u->zone.len, u->zone.p);
    if (u->is_ipv6)
        out[n++] = ']';
    if (u->port_given || explicit_port)
        n += (size_t) snprintf(out + n, cap - n, ":%u", u->port);
    n += (size_t) snprintf(out + n, cap - n, "%.*s%.*s", (int) u->path.len, u->path.p,
                           (int) u->query.len, u->query.p ? u->query.p : "");
    CHECK(n < cap, "rebuilt URL too long");
    return n;
}

static void check_url(const char *in, size_t len)
{
    url_parts u;
    int r = url_parse(in, len, &u);
    CHECK(r == 0 || r == FERRY_EINVAL || r == FERRY_ENOTSUP || r == FERRY_EBADHOST ||
              r == FERRY_EBADTARGET,
          "unexpected error code");
    int bad_byte = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) in[i];
        if (c <= 0x20 || c >= 0x7f || c == '\\')
            bad_byte = 1;
    }
    if (bad_byte || len == 0)
        CHECK(r == FERRY_EINVAL, "a byte that never belongs in a URL was not EINVAL");
    if (r != 0)
        return;

    /* slices and shapes */
    CHECK(inside(u.scheme, in, len) && inside(u.host, in, len) && inside(u.zone, in, len) &&
              inside(u.query, in, len),
          "slice outside the input");
    CHECK(inside(u.path, in, len) || (u.path.len == 1 && u.path.p[0] == '/'), "path slice");
    CHECK(u.path.len > 0 && u.path.p[0] == '/', "path does not start with /");
    CHECK(!u.query.p || (u.query.len > 0 && u.query.p[0] == '?'), "query does not start with ?");
    CHECK(u.scheme.len == (u.https ? 5u : 4u) &&
              strncasecmp(u.scheme.p, "https", u.scheme.len) == 0,
          "scheme");
    CHECK(u.port > 0 && (u.port_given || u.port == (u.https ? 443 : 80)), "port");
    CHECK(u.host.len > 0 && u.host.len <= URL_HOST_MAX, "host length");
    CHECK(!(u.is_ipv4 && u.is_ipv6) && (!u.zone.len || u.is_ipv6), "host kind");
    CHECK(u.zone.len <= URL_ZONE_MAX, "zone length");

    char host[URL_HOST_MAX + 1];
    memcpy(host, u.host.p, u.host.len);
    host[u.host.len] = 0;
    uint8_t bin[16] = {0};
    struct in_addr a4;
    if (u.is_ipv6) {
        CHECK(uv_inet_pton(AF_INET6, host, bin) == 0 && memcmp(bin, u.addr, 16) == 0, "v6 bytes");
    } else if (u.is_ipv4) {
        CHECK(inet_pton(AF_INET, host, bin) == 1 && memcmp(bin, u.addr, 16) == 0, "v4 bytes");
    } else {
        CHECK(memcmp(bin, u.addr, 16) == 0, "name with address bytes");
        CHECK(inet_aton(host, &a4) == 0, "a name the resolver reads as a number");
        for (size_t i = 0; i < u.host.len; i++)
            CHECK(isalnum((unsigned char) host[i]) || strchr("-._", host[i]), "name byte");
    }

    /* the request-target: allowed bytes, complete escapes */
    const ferry_str parts[2] = {u.path, u.query};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < parts[k].len; i++) {
            char c = parts[k].p[i];
            CHECK(c > 0x20 && c < 0x7f && !strchr("\"<>`{}\\#", c), "target byte");
            if (c == '%')
                CHECK(i + 2 < parts[k].len && is_hex(parts[k].p[i + 1]) &&
                          is_hex(parts[k].p[i + 2]),
                      "incomplete escape in target");
        }

    /* writers */
    char key[URL_ORIGIN_KEY_MAX], hh[URL_HOST_HEADER_MAX];
    size_t kn = 0, hn = 0, need = 0;
    CHECK(url_origin_key(&u, NULL, 0, &need) == FERRY_ENOBUFS, "key sizing");
    CHECK(url_origin_key(&u, key, sizeof(key), &kn) == 0 && kn == need && strlen(key) == kn,
          "origin key");
    CHECK(url_host_header(&u, NULL, 0, &need) == FERRY_ENOBUFS, "host sizing");
    CHECK(url_host_header(&u, hh, sizeof(hh), &hn) == 0 && hn == need && strlen(hh) == hn,
          "host header");
    if (kn > 0) {
        char small[URL_ORIGIN_KEY_MAX];
        CHECK(url_origin_key(&u, small, kn, &need) == FERRY_ENOBUFS && need == kn, "key cap");
    }
    for (size_t i = 0; i < kn; i++)
        CHECK(!isupper((unsigned char) key[i]) ||
                  (u.zone.len && memchr(u.zone.p, key[i], u.zone.len)),
              "uppercase in origin key");

    /* reassembly and the case/port variant */
    /* at most: the input, a "/" for a missing path, an explicit port */
    const size_t cap = len + 16;
    char *buf = malloc(cap), key2[URL_ORIGIN_KEY_MAX];
    CHECK(buf, "oom");
    url_parts again;
    size_t n = build(&u, buf, cap, 0, 0);
    CHECK(url_parse(buf, n, &again) == 0, "reassembled URL does not parse");
    same(&u, &again);
    n = build(&u, buf, cap, 1, 1);
    CHECK(url_parse(buf, n, &again) == 0, "case-flipped URL does not parse");
    CHECK(url_origin_key(&again, key2, sizeof(key2), &need) == 0 && strcmp(key, key2) == 0,
          "origin key depends on case or an explicit default port");

    /* ferry's server parser accepts what the client will send */
    const size_t hcap = len + URL_HOST_HEADER_MAX + 64;
    char *head = buf;
    CHECK((head = realloc(buf, hcap)) != NULL, "oom");
    int hl = snprintf(head, hcap, "GET %.*s%.*s HTTP/1.1\r\nHost: %s\r\n\r\n",
                      (int) u.path.len, u.path.p, (int) u.query.len, u.query.p ? u.query.p : "",
                      hh);
    CHECK(hl > 0 && (size_t) hl < hcap, "head too long");
    if (u.path.len + u.query.len <= 8192) { /* the parser's default target limit */
        parse_field fields[4];
        parse_head h;
        parse_limits lim = PARSE_LIMITS_DEFAULT;
        parse_head_init(&h, fields);
        CHECK(parse_request(&h, head, (size_t) hl, &lim) == hl, "ferry's parser refuses the head");
        CHECK(h.target_len == u.path.len + u.query.len &&
                  memcmp(h.target, u.path.p, u.path.len) == 0,
              "target differs");
    }
    free(head);
}

static void check_decode(const char *in, size_t len)
{
    int valid = 1;
    size_t want = 0;
    for (size_t i = 0; i < len; i++, want++) {
        if (in[i] == '%') {
            if (len - i < 3 || !is_hex(in[i + 1]) || !is_hex(in[i + 2])) {
                valid = 0;
                break;
            }
            i += 2;
        }
    }
    char *out = malloc(len ? len : 1), *place = malloc(len ? len : 1);
    CHECK(out && place, "oom");
    size_t n = 0, pn = 0;
    int r = url_percent_decode(in, len, out, len, &n);
    CHECK(valid ? r == 0 && n == want : r == FERRY_EINVAL, "decode validity");
    if (r == 0) {
        if (len)
            memcpy(place, in, len);
        CHECK(url_percent_decode(place, len, place, len, &pn) == 0 && pn == n &&
                  (n == 0 || memcmp(place, out, n) == 0),
              "in-place decode differs");
        /* every byte as %XX decodes back */
        char *enc = malloc(3 * n + 1), *back = malloc(n ? n : 1);
        CHECK(enc && back, "oom");
        for (size_t i = 0; i < n; i++)
            snprintf(enc + 3 * i, 4, "%%%02x", (unsigned char) out[i]);
        size_t bn = 0;
        CHECK(url_percent_decode(enc, 3 * n, back, n, &bn) == 0 && bn == n &&
                  (n == 0 || memcmp(back, out, n) == 0),
              "re-encoded bytes do not decode back");
        free(enc);
        free(back);
    }
    free(out);
    free(place);
}

static void check_form(const uint8_t *data, size_t size)
{
    if (size == 0)
        return;
    size_t pieces = 1 + data[0] % 8u;
    const char *rest = (const char *) data + 1;
    size_t rlen = size - 1;
    ferry_str kv[8];
    size_t npairs = (pieces + 1) / 2;
    for (size_t i = 0; i < 2 * npairs; i++) {
        size_t a = rlen * i / pieces, b = rlen * (i + 1) / pieces;
        kv[i] = i < pieces ? (ferry_str){rest + a, b - a} : (ferry_str){NULL, 0};
    }
    size_t need = 0, n = 0;
    CHECK(url_form_encode_n(kv, npairs, NULL, 0, &need) == FERRY_ENOBUFS, "form sizing");
    char *enc = malloc(need + 1);
    CHECK(enc, "oom");
    CHECK(url_form_encode_n(kv, npairs, enc, need, &n) == FERRY_ENOBUFS && n == need,
          "form cap without room for the NUL");
    CHECK(url_form_encode_n(kv, npairs, enc, need + 1, &n) == 0 && n == need && enc[n] == 0,
          "form encode");
    for (size_t i = 0; i < n; i++)
        CHECK(isalnum((unsigned char) enc[i]) || strchr("*-._+%&=", enc[i]), "form byte");

    /* split on '&' and '=', decode each piece */
    size_t pos = 0;
    for (size_t i = 0; i < npairs; i++) {
        for (int side = 0; side < 2; side++) {
            const char stop = side == 0 ? '=' : '&';
            size_t end = pos;
            while (end < n && enc[end] != stop)
                end++;
            CHECK(side == 0 ? end < n : (end == n) == (i + 1 == npairs), "form separators");
            ferry_str want = kv[2 * i + (size_t) side];
            char *dec = malloc(end - pos + 1);
            size_t dn = 0;
            CHECK(dec, "oom");
            CHECK(url_form_decode(enc + pos, end - pos, dec, end - pos, &dn) == 0 &&
                      dn == want.len && (dn == 0 || memcmp(dec, want.p, dn) == 0),
                  "form round trip");
            free(dec);
            pos = end + 1;
        }
    }
    free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size ? size : 1);
    if (!in)
        return 0;
    if (size)
        memcpy(in, data, size);
    check_url(in, size);
    check_decode(in, size);
    free(in);
    check_form(data, size);
    return 0;
}
