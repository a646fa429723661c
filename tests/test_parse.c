/* test_parse.c — the parser against its conformance table (parse_cases.h),
 * fed whole, split at every byte, byte by byte and from moving buffers, plus
 * the limits and the non-quadratic resumption promise. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ferry.h"
#include "http1/parse.h"

enum { K_REQ, K_SMALL, K_RESP, K_STRICT_RESP, K_HEAD_RESP, K_CONNECT_RESP };

struct pcase {
    int kind;
    const char *raw;
    size_t len;
    const char *expect;
    int line;
};

#include "parse_cases.h"

#define NCASES (sizeof(cases) / sizeof(cases[0]))

static parse_limits limits_for(int kind)
{
    parse_limits lim = PARSE_LIMITS_DEFAULT;
    if (kind == K_SMALL) {
        lim.max_head_bytes = 64;
        lim.max_fields = 3;
        lim.max_target_len = 16;
    }
    if (kind == K_RESP || kind == K_HEAD_RESP || kind == K_CONNECT_RESP)
        lim.lenient_lf = true;
    return lim;
}

static int is_response(int kind)
{
    return kind >= K_RESP;
}

static unsigned req_flags(int kind)
{
    return kind == K_HEAD_RESP ? PARSE_REQ_HEAD : kind == K_CONNECT_RESP ? PARSE_REQ_CONNECT : 0;
}

/* ---- a small string builder for the dumps ---- */
typedef struct {
    char s[8192];
    size_t n;
} strbuf;

static void put(strbuf *b, const char *p, size_t n)
{
    if (n > sizeof(b->s) - 1 - b->n)
        n = sizeof(b->s) - 1 - b->n;
    memcpy(b->s + b->n, p, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void putf(strbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    put(b, tmp, (size_t) n);
}

static void put_err(strbuf *b, int err)
{
    b->n = 0;
    putf(b, "ERR %s", ferry_err_name(err));
}

/* Decode a chunked body handed over in pieces: `first` bytes, then `step`
 * bytes at a time, each piece copied into its own scratch buffer the way a
 * connection hands over what one read returned. */
static int decode_chunked(const char *body, size_t n, size_t first, size_t step, int lenient,
                          strbuf *data, size_t *rest)
{
    parse_chunked_state st;
    parse_chunked_init(&st, 1024, lenient);
    char *tmp = malloc(n + 1);
    size_t off = 0, piece = first;
    int r = 0;
    assert_non_null(tmp);
    while (off < n) {
        if (piece > n - off)
            piece = n - off;
        memcpy(tmp, body + off, piece);
        size_t dl = 0, used = 0;
        r = parse_chunked(&st, tmp, piece, &dl, &used);
        put(data, tmp, dl);
        if (r < 0)
            break;
        assert_true(used <= piece);
        off += used;
        if (r == 1)
            break;
        assert_int_equal(used, piece); /* "need more" consumes everything */
        piece = step;
    }
    *rest = n - off;
    free(tmp);
    return r;
}

/* Parse case c and print the outcome in the table's format. The head parser
 * sees growing prefixes (hfirst bytes, then hstep more each call); with
 * `move`, each prefix is a fresh copy at a new address. The body decoder gets
 * pieces of bfirst, then bstep bytes. */
static void describe(const struct pcase *c, size_t hfirst, size_t hstep, size_t bfirst,
                     size_t bstep, int move, strbuf *out)
{
    parse_field fields[128];
    parse_head h;
    parse_limits lim = limits_for(c->kind);
    char *copy = NULL;
    const char *buf = c->raw;
    size_t upto = hfirst < c->len ? hfirst : c->len;
    int r;

    out->n = 0;
    out->s[0] = 0;
    parse_head_init(&h, fields);
    for (;;) {
        if (move) {
            char *fresh = malloc(upto + 1);
            assert_non_null(fresh);
            memcpy(fresh, c->raw, upto);
            free(copy); /* the parser must not touch the old bytes again */
            copy = fresh;
            buf = fresh;
        }
        r = is_response(c->kind) ? parse_response(&h, buf, upto, &lim, req_flags(c->kind))
                                  : parse_request(&h, buf, upto, &lim);
        if (r != 0 || upto == c->len)
            break;
        upto = (c->len - upto > hstep) ? upto + hstep : c->len;
    }
    if (r < 0) {
        put_err(out, r);
        goto done;
    }
    if (r == 0) {
        putf(out, "head~incomplete");
        goto done;
    }
    assert_true((size_t) r <= c->len);
    if (is_response(c->kind)) {
        putf(out, "1.%d %d ", h.version_minor, h.status);
        if (h.reason_len)
            put(out, h.reason, h.reason_len);
        else
            put(out, "-", 1);
    } else {
        put(out, h.method, h.method_len);
        put(out, " ", 1);
        put(out, h.target, h.target_len);
        putf(out, " 1.%d", h.version_minor);
    }
    for (uint32_t i = 0; i < h.nfields; i++) {
        /* every slice must lie inside the bytes the parser was given */
        assert_true(h.fields[i].name >= buf && h.fields[i].name + h.fields[i].name_len <= buf + r);
        assert_true(h.fields[i].value >= buf &&
                    h.fields[i].value + h.fields[i].value_len <= buf + r);
        put(out, " [", 2);
        put(out, h.fields[i].name, h.fields[i].name_len);
        put(out, ": ", 2);
        put(out, h.fields[i].value, h.fields[i].value_len);
        put(out, "]", 1);
    }
    unsigned f = h.flags;
    if (f & PARSE_F_CONTENT_LENGTH)
        putf(out, " cl=%llu", (unsigned long long) h.content_length);
    if (f & PARSE_F_CHUNKED)
        putf(out, " chunked");
    if (f & PARSE_F_UNTIL_CLOSE)
        putf(out, " until-close");
    if (f & PARSE_F_NO_BODY)
        putf(out, " no-body");
    if (f & PARSE_F_KEEP_ALIVE)
        putf(out, " ka");
    if (f & PARSE_F_UPGRADE)
        putf(out, " upgrade");
    if (f & PARSE_F_EXPECT_CONTINUE)
        putf(out, " 100c");
    if (f & PARSE_F_EXPECT_OTHER)
        putf(out, " expect");
    if (h.flags & PARSE_F_KEEP_ALIVE_HINT)
        putf(out, " kat=%u", h.keep_alive_timeout_s);

    const char *body = c->raw + r;
    size_t n = c->len - (size_t) r, rest = n;
    if (f & PARSE_F_NO_BODY) {
        /* nothing belongs to this message */
    } else if (f & PARSE_F_CHUNKED) {
        strbuf data = {.n = 0};
        int d = decode_chunked(body, n, bfirst, bstep, lim.lenient_lf, &data, &rest);
        if (d < 0) {
            put_err(out, d);
            goto done;
        }
        if (d == 0) {
            putf(out, " body~incomplete");
            goto done;
        }
        putf(out, " body=");
        put(out, data.s, data.n);
    } else if (f & PARSE_F_CONTENT_LENGTH) {
        if (h.content_length > n) {
            putf(out, " body~incomplete");
            goto done;
        }
        putf(out, " body=");
        put(out, body, (size_t) h.content_length);
        rest = n - (size_t) h.content_length;
    } else if (f & PARSE_F_UNTIL_CLOSE) {
        putf(out, " body=");
        put(out, body, n);
        rest = 0;
    }
    if (rest)
        putf(out, " rest=%zu", rest);
done:
    free(copy);
}

static int check(const struct pcase *c, const strbuf *got, const char *how)
{
    if (strcmp(got->s, c->expect) == 0)
        return 0;
    print_message("parse_cases.h:%d (%s)\n  want: %s\n  got:  %s\n", c->line, how, c->expect,
                  got->s);
    return 1;
}

static void test_table_whole(void **state)
{
    (void) state;
    int failed = 0;
    strbuf got;
    assert_true(NCASES >= 150);
    for (size_t i = 0; i < NCASES; i++) {
        describe(&cases[i], SIZE_MAX, 1, SIZE_MAX, 1, 0, &got);
        failed += check(&cases[i], &got, "whole");
    }
    assert_int_equal(failed, 0);
}

/* The central promise: input split anywhere parses exactly as input in one
 * piece — valid messages and errors alike. */
static void test_table_split_everywhere(void **state)
{
    (void) state;
    int failed = 0;
    strbuf got;
    for (size_t i = 0; i < NCASES && failed < 10; i++) {
        const struct pcase *c = &cases[i];
        for (size_t k = 1; k < c->len; k++) {
            describe(c, k, SIZE_MAX, SIZE_MAX, 1, 0, &got); /* head split at k */
            failed += check(c, &got, "head split");
            describe(c, SIZE_MAX, 1, k, SIZE_MAX, 0, &got); /* body split at k */
            failed += check(c, &got, "body split");
            describe(c, k, SIZE_MAX, SIZE_MAX, 1, 1, &got); /* head split, buffer moved */
            failed += check(c, &got, "head split, moved");
        }
        describe(c, 1, 1, 1, 1, 0, &got);
        failed += check(c, &got, "byte by byte");
        describe(c, 1, 1, 1, 1, 1, &got);
        failed += check(c, &got, "byte by byte, moved");
    }
    assert_int_equal(failed, 0);
}

/* Every error the table expects is one a server can answer with a status. */
static void test_errors_map_to_statuses(void **state)
{
    (void) state;
    strbuf got;
    for (size_t i = 0; i < NCASES; i++) {
        if (strncmp(cases[i].expect, "ERR ", 4) != 0 || is_response(cases[i].kind))
            continue;
        parse_field fields[128];
        parse_head h;
        parse_limits lim = limits_for(cases[i].kind);
        parse_head_init(&h, fields);
        int r = parse_request(&h, cases[i].raw, cases[i].len, &lim);
        if (r > 0) /* a body error: run the whole case for its code */
            continue;
        describe(&cases[i], SIZE_MAX, 1, SIZE_MAX, 1, 0, &got);
        int st = ferry_err_http_status(r);
        if (st < 400 || st > 505)
            print_message("parse_cases.h:%d: %s has status %d\n", cases[i].line,
                          ferry_err_name(r), st);
        assert_true(st >= 400 && st <= 505);
    }
}

static char *repeat(const char *head, char ch, size_t n, const char *tail)
{
    size_t hl = strlen(head), tl = strlen(tail);
    char *s = malloc(hl + n + tl + 1);
    assert_non_null(s);
    memcpy(s, head, hl);
    memset(s + hl, ch, n);
    memcpy(s + hl + n, tail, tl + 1);
    return s;
}

/* Re-feeding must not rescan: after an incomplete call the parser has
 * validated up to the end of what it was given. */
static void test_resume_does_not_rescan(void **state)
{
    (void) state;
    parse_field fields[100];
    parse_head h;
    parse_limits lim = PARSE_LIMITS_DEFAULT;
    static const char *prefixes[] = {"GET /", "GET / HTTP/1.1\r\nX-Long: ",
                                     "GET / HTTP/1.1\r\nX-Long-"};
    for (size_t i = 0; i < 3; i++) {
        char *s = repeat(prefixes[i], 'a', 8000, "");
        size_t len = strlen(s);
        parse_head_init(&h, fields);
        for (size_t upto = 100; upto <= len; upto += 100) {
            assert_int_equal(parse_request(&h, s, upto, &lim), 0);
            assert_int_equal(h._pos, upto);
        }
        free(s);
    }
}

static int parse_whole(const char *s, size_t len, const parse_limits *lim)
{
    static parse_field fields[256];
    parse_head h;
    parse_head_init(&h, fields);
    return parse_request(&h, s, len, lim);
}

static void test_default_limits(void **state)
{
    (void) state;
    parse_limits lim = PARSE_LIMITS_DEFAULT;
    char *s;

    /* 100 fields pass, 101 do not (431) */
    char many[4096] = "GET / HTTP/1.1\r\nHost: h\r\n";
    for (int i = 1; i < 100; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "F%d: v\r\n", i);
    strcat(many, "\r\n");
    assert_true(parse_whole(many, strlen(many), &lim) > 0);
    many[strlen(many) - 2] = 0;
    strcat(many, "F100: v\r\n\r\n");
    assert_int_equal(parse_whole(many, strlen(many), &lim), FERRY_ETOOMANYFIELDS);

    /* a head of exactly 16384 bytes passes; one more byte is 431 */
    const char *pre = "GET / HTTP/1.1\r\nHost: h\r\nX: ";
    size_t fill = 16384 - strlen(pre) - 4;
    s = repeat(pre, 'v', fill, "\r\n\r\n");
    assert_int_equal(parse_whole(s, strlen(s), &lim), 16384);
    free(s);
    s = repeat(pre, 'v', fill + 1, "\r\n\r\n");
    assert_int_equal(parse_whole(s, strlen(s), &lim), FERRY_EHEADTOOBIG);
    free(s);
    /* ...and a head that never ends is refused as soon as it passes the limit */
    s = repeat(pre, 'v', 20000, "");
    assert_int_equal(parse_whole(s, 16383, &lim), 0);
    assert_int_equal(parse_whole(s, 16384, &lim), FERRY_EHEADTOOBIG);
    free(s);

    /* a target of 8192 bytes passes; 8193 is 414, even before the line ends */
    s = repeat("GET /", 'a', 8191, " HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_true(parse_whole(s, strlen(s), &lim) > 0);
    free(s);
    s = repeat("GET /", 'a', 8192, "");
    assert_int_equal(parse_whole(s, strlen(s), &lim), FERRY_EURITOOLONG);
    free(s);
    /* a long target that also blows the head limit is still 414 */
    lim.max_target_len = 1 << 20;
    s = repeat("GET /", 'a', 20000, "");
    assert_int_equal(parse_whole(s, strlen(s), &lim), FERRY_EURITOOLONG);
    free(s);
}

static int chunked_whole(const char *s, size_t len, uint32_t max_trailer)
{
    parse_chunked_state st;
    char *copy = malloc(len);
    size_t dl, used;
    assert_non_null(copy);
    memcpy(copy, s, len);
    parse_chunked_init(&st, max_trailer, false);
    int r = parse_chunked(&st, copy, len, &dl, &used);
    free(copy);
    return r;
}

static void test_chunk_line_and_trailer_limits(void **state)
{
    (void) state;
    char *s = repeat("5;e=", 'x', 4000, "\r\nhello\r\n0\r\n\r\n");
    assert_int_equal(chunked_whole(s, strlen(s), 1024), 1);
    free(s);
    s = repeat("5;e=", 'x', PARSE_CHUNK_LINE_MAX, "\r\nhello\r\n0\r\n\r\n");
    assert_int_equal(chunked_whole(s, strlen(s), 1024), FERRY_ECHUNKEXT);
    free(s);
    s = repeat("0\r\nX-T: ", 't', 100, "\r\n\r\n");
    assert_int_equal(chunked_whole(s, strlen(s), 200), 1);
    assert_int_equal(chunked_whole(s, strlen(s), 50), FERRY_ETRAILERTOOBIG);
    free(s);
    /* the final blank line is not part of the trailer section */
    assert_int_equal(chunked_whole("0\r\n\r\n", 5, 0), 1);
    assert_int_equal(chunked_whole("0\r\nA: b\r\n\r\n", 11, 5), FERRY_ETRAILERTOOBIG);
    assert_int_equal(chunked_whole("0\r\nA: b\r\n\r\n", 11, 6), 1);
}

static void test_chunked_done_is_sticky(void **state)
{
    (void) state;
    char buf[] = "3\r\nabc\r\n0\r\n\r\nNEXT";
    parse_chunked_state st;
    size_t dl, used;
    parse_chunked_init(&st, 1024, false);
    assert_int_equal(parse_chunked(&st, buf, sizeof(buf) - 1, &dl, &used), 1);
    assert_int_equal(dl, 3);
    assert_memory_equal(buf, "abc", 3);
    assert_int_equal(used, sizeof(buf) - 1 - 4);
    assert_memory_equal(buf + used, "NEXT", 4); /* what follows is left in place */
    assert_int_equal(parse_chunked(&st, buf + used, 4, &dl, &used), 1);
    assert_int_equal(used, 0);
    assert_int_equal(dl, 0);
}

static void test_find_field_and_method_ids(void **state)
{
    (void) state;
    parse_field fields[8];
    parse_head h;
    parse_limits lim = PARSE_LIMITS_DEFAULT;
    const char *s = "PUT /x HTTP/1.1\r\nHost: h\r\nX-Request-ID: 42\r\n\r\n";
    parse_head_init(&h, fields);
    assert_true(parse_request(&h, s, strlen(s), &lim) > 0);
    assert_int_equal(h.method_id, PARSE_M_PUT);
    const parse_field *f = parse_find_field(&h, "x-request-id", 12);
    assert_non_null(f);
    assert_memory_equal(f->value, "42", 2);
    assert_null(parse_find_field(&h, "x-request", 9));
    assert_null(parse_find_field(&h, "x-request-iX", 12));

    static const struct {
        const char *m;
        parse_method id;
    } ids[] = {{"GET", PARSE_M_GET},         {"HEAD", PARSE_M_HEAD},       {"POST", PARSE_M_POST},
               {"PUT", PARSE_M_PUT},         {"DELETE", PARSE_M_DELETE},   {"OPTIONS", PARSE_M_OPTIONS},
               {"TRACE", PARSE_M_TRACE},     {"PATCH", PARSE_M_PATCH},     {"GETX", PARSE_M_OTHER},
               {"get", PARSE_M_OTHER}};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        char req[64];
        snprintf(req, sizeof(req), "%s / HTTP/1.1\r\nHost: h\r\n\r\n", ids[i].m);
        parse_head_init(&h, fields);
        assert_true(parse_request(&h, req, strlen(req), &lim) > 0);
        assert_int_equal(h.method_id, ids[i].id);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_whole),
        cmocka_unit_test(test_table_split_everywhere),
        cmocka_unit_test(test_errors_map_to_statuses),
        cmocka_unit_test(test_resume_does_not_rescan),
        cmocka_unit_test(test_default_limits),
        cmocka_unit_test(test_chunk_line_and_trailer_limits),
        cmocka_unit_test(test_chunked_done_is_sticky),
        cmocka_unit_test(test_find_field_and_method_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
