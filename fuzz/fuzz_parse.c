/* fuzz_parse.c — libFuzzer target for src/parse.c: the parser against itself.
 *
 * Every head is parsed twice: once with the whole input in one call, and once
 * incrementally, as a connection would, feeding growing prefixes cut at
 * pseudo-random points, each prefix copied into a freshly malloc'd buffer of
 * exactly its size (so the parser must rebase its pointers, and ASan sees any
 * read past the bytes handed in). Both runs must agree exactly: return value
 * and, on success, every public field of the head, field bytes compared as
 * bytes. A strict parse that succeeds must also succeed, identically, with
 * lenient_lf on (leniency only adds bare LF). Chunked bodies are decoded whole
 * and in random pieces; result code, decoded bytes and consumed count must
 * agree. Any disagreement or broken invariant abort()s.
 *
 * Input format:
 *   byte 0  mode
 *             bits 0-1  0 request head, 1 response head (then, for either,
 *                       the chunked body from the rest if the head says so),
 *                       2 a chunked body alone, 3 a pipelined run of requests
 *                       (each head, then its Content-Length or chunked body)
 *             bit 2     lenient_lf (heads and chunked bodies)
 *             bit 3     small limits from byte 1: max_head_bytes 24 + seed,
 *                       max_fields seed & 7, max_target_len seed % 48 (else
 *                       PARSE_LIMITS_DEFAULT); max trailer bytes = max_head_bytes
 *             bit 4     PARSE_REQ_HEAD for responses
 *             bit 5     PARSE_REQ_CONNECT for responses
 *             bits 6-7  split granularity: pieces of 1, 1..8, 1..64 or 1..1024
 *                       bytes (past 4 KiB at least 1/128 of what came before, to
 *                       bound the copying), and now and then a repeated call
 *                       with no new bytes
 *   byte 1  seed for the split points (and the small limits)
 *   rest    the message bytes, at most 64 KiB (longer inputs are ignored)
 *
 * Seeds: fuzz/seeds/fuzz_parse/ (each file starts with the two bytes above).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"
#include "http1/parse.h"

#define FUZZ_MAX_MSG (64 * 1024)

enum { K_REQUEST, K_RESPONSE, K_CHUNKED, K_PIPELINE };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, long a, long b)
{
    fprintf(stderr, "fuzz_parse: %s (%ld vs %ld)\n", what, a, b);
    if (a < 0) fprintf(stderr, "  first:  %s\n", ferry_strerror((int) a));
    if (b < 0) fprintf(stderr, "  second: %s\n", ferry_strerror((int) b));
    abort();
}

#define CHECK(cond, what, a, b)                                                                    \
    do {                                                                                           \
        if (!(cond)) fail(what, (long) (a), (long) (b));                                           \
    } while (0)

/* ---- split points ----------------------------------------------------------- */

typedef struct {
    uint32_t s;
    unsigned max_step;
} splitter;

static uint32_t rnd(splitter *g)
{
    uint32_t x = g->s; /* xorshift32 */
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return g->s = x;
}

static void split_init(splitter *g, uint8_t seed, uint8_t mode, size_t len)
{
    static const unsigned steps[4] = {1, 8, 64, 1024};
    g->s = 0x9e3779b9u ^ (uint32_t) seed * 0x01000193u ^ (uint32_t) len;
    if (!g->s) g->s = 1;
    g->max_step = steps[mode >> 6];
}

/* How many more bytes the next call sees. Zero now and then: a call with no
 * new bytes must change nothing. Long inputs grow at least geometrically so a
 * byte-at-a-time run stays near-linear in copying. */
static size_t next_step(splitter *g, size_t have)
{
    uint32_t r = rnd(g);
    if (have > 0 && (r & 15) == 0) return 0;
    size_t step = 1 + (r >> 4) % g->max_step;
    if (have > 4096 && step < have / 128) step = have / 128;
    return step;
}

/* ---- invariants on a successful head ---------------------------------------- */

/* tchar (RFC 9110 §5.6.2), written out independently of parse.c's table. */
static int is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* field-vchar / SP / HTAB / obs-text: no CTL but HTAB, no DEL. */
static int is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int inside(const char *p, size_t n, const char *buf, size_t len)
{
    return p >= buf && (size_t) (p - buf) <= len && n <= len - (size_t) (p - buf);
}

static int bytes_eq(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

static int ieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char) a[i], y = (unsigned char) b[i];
        if (x >= 'A' && x <= 'Z') x = (unsigned char) (x + 32);
        if (y >= 'A' && y <= 'Z') y = (unsigned char) (y + 32);
        if (x != y) return 0;
    }
    return 1;
}

static parse_method expected_method(const char *m, size_t n)
{
    static const struct {
        const char *name;
        parse_method id;
    } t[] = {{"GET", PARSE_M_GET},         {"HEAD", PARSE_M_HEAD},     {"POST", PARSE_M_POST},
             {"PUT", PARSE_M_PUT},         {"DELETE", PARSE_M_DELETE}, {"CONNECT", PARSE_M_CONNECT},
             {"OPTIONS", PARSE_M_OPTIONS}, {"TRACE", PARSE_M_TRACE},   {"PATCH", PARSE_M_PATCH}};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (strlen(t[i].name) == n && memcmp(t[i].name, m, n) == 0) return t[i].id;
    return PARSE_M_OTHER;
}

static void check_invariants(const parse_head *h, int r, const char *buf, size_t len,
                             const parse_limits *lim, int response)
{
    size_t n = (size_t) r;
    CHECK(n <= len, "head longer than the input", r, len);
    CHECK(n <= lim->max_head_bytes, "head longer than max_head_bytes", r, lim->max_head_bytes);
    CHECK(buf[n - 1] == '\n', "head does not end with LF", r, 0);
    CHECK(lim->lenient_lf || (n >= 2 && buf[n - 2] == '\r'), "strict head ends in bare LF", r, 0);
    CHECK(h->version_minor == 0 || h->version_minor == 1, "version_minor", h->version_minor, 0);
    CHECK(h->nfields <= lim->max_fields, "nfields above max_fields", h->nfields, lim->max_fields);

    if (response) {
        CHECK(h->method == NULL && h->target == NULL, "response has a request line", 0, 0);
        CHECK(h->status >= 100 && h->status <= 999, "status out of range", h->status, 0);
        CHECK(h->reason_len == 0 || inside(h->reason, h->reason_len, buf, n), "reason outside", 0,
              0);
        for (uint32_t i = 0; i < h->reason_len; i++)
            CHECK(is_value_char((unsigned char) h->reason[i]), "bad byte in reason", i,
                  (unsigned char) h->reason[i]);
    } else {
        CHECK(h->reason == NULL && h->status == 0, "request has a status line", h->status, 0);
        CHECK(h->method_len > 0 && inside(h->method, h->method_len, buf, n), "method outside", 0,
              0);
        for (uint32_t i = 0; i < h->method_len; i++)
            CHECK(is_tchar((unsigned char) h->method[i]), "bad byte in method", i,
                  (unsigned char) h->method[i]);
        CHECK(h->method_id == expected_method(h->method, h->method_len), "method_id", h->method_id,
              expected_method(h->method, h->method_len));
        CHECK(h->target_len > 0 && inside(h->target, h->target_len, buf, n), "target outside", 0,
              0);
        CHECK(h->target_len <= lim->max_target_len, "target above max_target_len", h->target_len,
              lim->max_target_len);
        for (uint32_t i = 0; i < h->target_len; i++) {
            unsigned char c = (unsigned char) h->target[i];
            CHECK(c > 0x20 && c < 0x7f, "bad byte in target", i, c);
        }
        /* Framing: exactly one of CL, chunked, no body; never until-close. */
        unsigned fr = h->flags & (PARSE_F_CONTENT_LENGTH | PARSE_F_CHUNKED | PARSE_F_NO_BODY);
        CHECK(fr && !(fr & (fr - 1)), "request framing flags", h->flags, 0);
        CHECK(!(h->flags & PARSE_F_UNTIL_CLOSE), "request until close", h->flags, 0);
    }
    unsigned ex = h->flags & (PARSE_F_CHUNKED | PARSE_F_UNTIL_CLOSE | PARSE_F_NO_BODY);
    CHECK(!(ex & (ex - 1)), "conflicting framing flags", h->flags, 0);
    CHECK(!((h->flags & PARSE_F_CHUNKED) && (h->flags & PARSE_F_CONTENT_LENGTH)),
          "chunked and content-length", h->flags, 0);

    unsigned hosts = 0;
    for (uint32_t i = 0; i < h->nfields; i++) {
        const parse_field *f = &h->fields[i];
        CHECK(f->name_len > 0 && inside(f->name, f->name_len, buf, n), "field name outside", i, 0);
        CHECK(f->value_len == 0 || inside(f->value, f->value_len, buf, n), "field value outside", i,
              0);
        for (uint32_t k = 0; k < f->name_len; k++)
            CHECK(is_tchar((unsigned char) f->name[k]), "bad byte in field name", i,
                  (unsigned char) f->name[k]);
        for (uint32_t k = 0; k < f->value_len; k++)
            CHECK(is_value_char((unsigned char) f->value[k]), "bad byte in field value", i,
                  (unsigned char) f->value[k]);
        if (f->value_len) {
            char a = f->value[0], z = f->value[f->value_len - 1];
            CHECK(a != ' ' && a != '\t' && z != ' ' && z != '\t', "value not trimmed", i, 0);
        }
        const parse_field *g = parse_find_field(h, f->name, f->name_len);
        CHECK(g && g <= f && g->name_len == f->name_len && ieq(g->name, f->name, f->name_len),
              "parse_find_field misses a field", i, g ? g - h->fields : -1);
        if (f->name_len == 4 && ieq(f->name, "host", 4)) hosts++;
    }
    if (!response)
        CHECK(hosts == 1 || (hosts == 0 && h->version_minor == 0), "Host fields", hosts,
              h->version_minor);
}

/* ---- heads -------------------------------------------------------------------- */

static void same_head(const parse_head *a, const parse_head *b)
{
    CHECK(bytes_eq(a->method, a->method_len, b->method, b->method_len), "method", a->method_len,
          b->method_len);
    CHECK(a->method_id == b->method_id, "method_id", a->method_id, b->method_id);
    CHECK(bytes_eq(a->target, a->target_len, b->target, b->target_len), "target", a->target_len,
          b->target_len);
    CHECK(bytes_eq(a->reason, a->reason_len, b->reason, b->reason_len), "reason", a->reason_len,
          b->reason_len);
    CHECK(a->status == b->status, "status", a->status, b->status);
    CHECK(a->version_minor == b->version_minor, "version_minor", a->version_minor,
          b->version_minor);
    CHECK(a->flags == b->flags, "flags", a->flags, b->flags);
    CHECK(a->content_length == b->content_length, "content_length", a->content_length,
          b->content_length);
    CHECK(a->keep_alive_timeout_s == b->keep_alive_timeout_s, "keep_alive_timeout_s",
          a->keep_alive_timeout_s, b->keep_alive_timeout_s);
    CHECK(a->nfields == b->nfields, "nfields", a->nfields, b->nfields);
    for (uint32_t i = 0; i < a->nfields; i++) {
        const parse_field *x = &a->fields[i], *y = &b->fields[i];
        CHECK(bytes_eq(x->name, x->name_len, y->name, y->name_len), "field name", i, 0);
        CHECK(bytes_eq(x->value, x->value_len, y->value, y->value_len), "field value", i, 0);
    }
}

static int parse_one(parse_head *h, const char *buf, size_t len, const parse_limits *lim,
                     int response, unsigned req)
{
    return response ? parse_response(h, buf, len, lim, req) : parse_request(h, buf, len, lim);
}

static parse_field *new_fields(const parse_limits *lim)
{
    /* Exactly max_fields entries: ASan catches a write past them. */
    parse_field *f = malloc((lim->max_fields ? lim->max_fields : 1) * sizeof(*f));
    if (!f) abort();
    return f;
}

/* Feed msg[0..len) in growing prefixes, each in a fresh exact-size buffer;
 * returns the last result and, in *keep, the buffer the head points into. */
static int parse_split(parse_head *h, const char *msg, size_t len, const parse_limits *lim,
                       int response, unsigned req, splitter *g, char **keep)
{
    size_t have = 0;
    char *prev = NULL;
    int r;
    for (;;) {
        size_t step = next_step(g, have);
        have = step > len - have ? len : have + step;
        char *b = malloc(have ? have : 1);
        if (!b) abort();
        if (have) memcpy(b, msg, have);
        r = parse_one(h, b, have, lim, response, req);
        free(prev); /* after the call: the new buffer cannot reuse the old address */
        prev = b;
        if (r != 0 || have == len) break;
    }
    *keep = prev;
    return r;
}

/* Parse one head both ways; returns the result, with the whole-input head in
 * *out (its fields in out_fields, pointing into msg). */
static int check_head(const char *msg, size_t len, const parse_limits *lim, int response,
                      unsigned req, splitter *g, parse_head *out, parse_field *out_fields)
{
    parse_head_init(out, out_fields);
    int r = parse_one(out, msg, len, lim, response, req);
    CHECK(r <= 0 || (size_t) r <= len, "result above len", r, len);
    if (r > 0) check_invariants(out, r, msg, len, lim, response);

    parse_field *fields = new_fields(lim);
    parse_head h;
    char *buf;
    parse_head_init(&h, fields);
    int r2 = parse_split(&h, msg, len, lim, response, req, g, &buf);
    CHECK(r == r2, "whole and split parses disagree", r, r2);
    if (r > 0) {
        check_invariants(&h, r2, buf, (size_t) r2, lim, response);
        same_head(out, &h);
    }
    free(buf);

    if (!lim->lenient_lf && r >= 0) {
        parse_limits lenient = *lim;
        lenient.lenient_lf = true;
        parse_head_init(&h, fields);
        int r3 = parse_one(&h, msg, len, &lenient, response, req);
        CHECK(r == r3, "strict and lenient parses disagree", r, r3);
        if (r > 0) same_head(out, &h);
    }
    free(fields);
    return r;
}

/* ---- chunked bodies ---------------------------------------------------------- */

/* Decode msg[0..len) whole and in pieces; returns the result, with the
 * consumed byte count in *consumed. */
static int check_chunked(const char *msg, size_t len, uint32_t max_trailer, bool lenient,
                         splitter *g, size_t *consumed)
{
    parse_chunked_state c;
    char *whole = malloc(len ? len : 1);
    char *acc = malloc(len ? len : 1);
    if (!whole || !acc) abort();
    if (len) memcpy(whole, msg, len);
    size_t data_len = 0, used = 0;
    parse_chunked_init(&c, max_trailer, lenient);
    int r = parse_chunked(&c, whole, len, &data_len, &used);
    CHECK(r >= -32767 && r <= 1, "chunked result", r, 0);
    CHECK(used <= len && data_len <= used, "chunked counts", used, data_len);
    CHECK(r != 0 || used == len, "need-more without consuming everything", used, len);

    if (r == 1) { /* done is sticky and consumes nothing more */
        size_t d2 = 1, u2 = 1;
        char spare = 'x';
        CHECK(parse_chunked(&c, &spare, 1, &d2, &u2) == 1 && d2 == 0 && u2 == 0,
              "call after the end", d2, u2);
    }

    /* A connection: pieces arrive one by one, each decoded where it landed. */
    size_t total = 0, out = 0;
    int r2 = 0;
    parse_chunked_init(&c, max_trailer, lenient);
    while (total < len) {
        size_t step = next_step(g, total);
        if (step > len - total) step = len - total;
        char *piece = malloc(step ? step : 1);
        if (!piece) abort();
        if (step) memcpy(piece, msg + total, step);
        size_t dl = 0, u = 0;
        r2 = parse_chunked(&c, piece, step, &dl, &u);
        CHECK(u <= step && dl <= u, "chunked piece counts", u, dl);
        CHECK(r2 != 0 || u == step, "piece: need-more without consuming everything", u, step);
        memcpy(acc + out, piece, dl);
        out += dl;
        total += u;
        free(piece);
        if (r2 != 0) break;
    }
    CHECK(r == r2, "whole and split chunked decodes disagree", r, r2);
    CHECK(used == total, "chunked consumed", used, total);
    CHECK(bytes_eq(whole, data_len, acc, out), "chunked data", data_len, out);

    if (!lenient && r >= 0) {
        size_t d3 = 0, u3 = 0;
        memcpy(acc, msg, len);
        parse_chunked_init(&c, max_trailer, true);
        int r3 = parse_chunked(&c, acc, len, &d3, &u3);
        CHECK(r == r3 && used == u3, "strict and lenient chunked decodes disagree", r, r3);
        CHECK(bytes_eq(whole, data_len, acc, d3), "lenient chunked data", data_len, d3);
    }
    free(whole);
    free(acc);
    *consumed = used;
    return r;
}

/* ---- entry --------------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size - 2 > FUZZ_MAX_MSG) return 0;
    const uint8_t mode = data[0], seed = data[1];
    const char *msg = (const char *) data + 2;
    const size_t len = size - 2;
    const int kind = mode & 3;
    const unsigned req =
        (mode & 0x10 ? PARSE_REQ_HEAD : 0u) | (mode & 0x20 ? PARSE_REQ_CONNECT : 0u);

    parse_limits lim = PARSE_LIMITS_DEFAULT;
    if (mode & 8) {
        lim.max_head_bytes = 24u + seed;
        lim.max_fields = seed & 7u;
        lim.max_target_len = seed % 48u;
    }
    lim.lenient_lf = (mode & 4) != 0;
    const uint32_t max_trailer = lim.max_head_bytes;

    splitter g;
    split_init(&g, seed, mode, len);
    size_t used;

    if (kind == K_CHUNKED) {
        check_chunked(msg, len, max_trailer, lim.lenient_lf, &g, &used);
        return 0;
    }

    parse_field *fields = new_fields(&lim);
    parse_head h;
    size_t off = 0;
    for (int n = 0; n < 64 && off < len; n++) {
        int response = kind == K_RESPONSE;
        int r = check_head(msg + off, len - off, &lim, response, req, &g, &h, fields);
        if (r <= 0) break;
        off += (size_t) r;
        if (h.flags & PARSE_F_CHUNKED) {
            if (check_chunked(msg + off, len - off, max_trailer, lim.lenient_lf, &g, &used) != 1)
                break;
            off += used;
        } else if (h.flags & PARSE_F_CONTENT_LENGTH && !(h.flags & PARSE_F_NO_BODY)) {
            if (h.content_length > len - off) break;
            off += (size_t) h.content_length;
        } else if (h.flags & (PARSE_F_UNTIL_CLOSE | PARSE_F_UPGRADE)) {
            break;
        }
        if (kind != K_PIPELINE) break;
    }
    free(fields);
    return 0;
}
