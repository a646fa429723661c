/* test_proxy_proto.c — the PROXY protocol parser against tables of headers,
 * and trust lists.
 *
 * Cases are data, one line each: the bytes, then what the parser must make of
 * them. Every case is also fed as each of its prefixes, each in a buffer of
 * exactly that size (ASan sees a read past len): a valid header is "need
 * more" (0) on every prefix shorter than itself and the same header on every
 * longer one; an invalid one is "need more" until one byte, and an error from
 * there on. That byte is part of the expectation ("ERR@1": refused on the
 * first byte), so "refused early, never after a timeout" is tested too.
 *
 * Expectations:
 *   vN local rest=R            keep the real peer; R bytes after the header
 *   vN SRC > DST rest=R        1.2.3.4:80, [::1]:80, unix:/path (unix:@name: abstract)
 *   MORE                       every byte so far can still begin a header
 *   ERR@K                      FERRY_EPROXY, first at the K-byte prefix
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cmocka.h>

#include "ferry.h"
#include "server/proxy_proto.h"

#define SIG  "\r\n\r\n\0\r\nQUIT\n"
#define HTTP "GET / HTTP/1.1\r\n\r\n" /* 18 bytes, never consumed */

/* ---- raw cases: v1, and v2 short enough to write out ------------------------------ */

struct rcase {
    const char *raw;
    size_t len;
    const char *expect;
    int line;
};
/* clang-format off */
#define R(raw, expect) {raw, sizeof(raw) - 1, expect, __LINE__}
/* clang-format on */

static const struct rcase raw_cases[] = {
    /* ---- v1: valid ---- */
    R("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n" HTTP,
      "v1 192.168.0.1:56324 > 192.168.0.11:443 rest=18"),
    R("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
      "v1 0.0.0.0:0 > 255.255.255.255:65535 rest=0"),
    R("PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\nX", "v1 10.0.0.1:1 > 10.0.0.2:2 rest=1"),
    R("PROXY TCP6 2001:db8::1 ::1 40000 8080\r\n" HTTP,
      "v1 [2001:db8::1]:40000 > [::1]:8080 rest=18"),
    R("PROXY TCP6 2001:DB8:0:0:0:0:0:A ::ffff:10.1.2.3 1 2\r\n",
      "v1 [2001:db8::a]:1 > [::ffff:10.1.2.3]:2 rest=0"),
    /* the longest TCP6 line: 104 bytes */
    R("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
      "65535 65535\r\n",
      "v1 [ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535 > "
      "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535 rest=0"),
    R("PROXY UNKNOWN\r\n" HTTP, "v1 local rest=18"),
    R("PROXY UNKNOWN 1.2.3.4 whatever follows is ignored\r\n", "v1 local rest=0"),
    /* the spec's worst case: 107 bytes exactly */
    R("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
      "65535 65535\r\n" HTTP,
      "v1 local rest=18"),

    /* ---- v1: refused on the first byte that cannot fit ---- */
    R("GET / HTTP/1.1\r\nHost: h\r\n\r\n", "ERR@1"),
    R("\x16\x03\x01\x02\x00", "ERR@1"), /* a TLS ClientHello */
    R("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "ERR@1"),
    R("PRO", "MORE"),
    R("PROXY", "MORE"),
    R("PROXY TCP4 1.2.3.4", "MORE"),
    R("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", "MORE"),
    R("PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n", "ERR@6"),
    R("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "ERR@7"),
    R("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "ERR@10"),
    R("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "ERR@7"),
    R("PROXY TCP41.2.3.4 5.6.7.8 1 2\r\n", "ERR@11"),
    R("PROXY UNKNOWNX\r\n", "ERR@14"),
    R("PROXY UNKNOWN\n", "ERR@14"),
    R("PROXY \r\n", "ERR@8"),
    /* line endings and bytes */
    R("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "ERR@31"),
    R("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "ERR@32"),
    R("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", "ERR@32"),
    R("PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", "ERR@19"),
    R("PROXY TCP4 1.2.3.4 5.6.7.8\0 1 2\r\n", "ERR@27"),
    R("PROXY UNKNOWN \xc3\xa9\r\n", "ERR@15"),
    /* fields */
    R("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "ERR@33"),
    R("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "ERR@33"),
    R("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "ERR@30"),
    R("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "ERR@34"),
    R("PROXY TCP4 1.2.3.4 5.6.7.8\r\n", "ERR@28"),
    R("PROXY TCP4\r\n", "ERR@12"),
    R("PROXY TCP4 \r\n", "ERR@13"),
    /* ports */
    R("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "ERR@36"),
    R("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "ERR@36"),
    R("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "ERR@34"),
    R("PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n", "ERR@33"),
    R("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "ERR@33"),
    R("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "ERR@33"),
    R("PROXY TCP4 1.2.3.4 5.6.7.8 0x10 2\r\n", "ERR@35"),
    R("PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n", "ERR@37"),
    /* addresses that do not parse, or are of the other family */
    R("PROXY TCP4 256.1.1.1 5.6.7.8 1 2\r\n", "ERR@34"),
    R("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "ERR@30"),
    R("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", "ERR@34"),
    R("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "ERR@33"),
    R("PROXY TCP4 1.2.3.4 5.6.7.08 1 2\r\n", "ERR@33"),
    R("PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n", "ERR@31"),
    R("PROXY TCP4 1.2.3.4. 5.6.7.8 1 2\r\n", "ERR@33"),
    R("PROXY TCP4 1234.2.3.4 5.6.7.8 1 2\r\n", "ERR@35"),
    R("PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "ERR@28"),
    R("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "ERR@28"),
    R("PROXY TCP6 ::1%eth0 ::1 1 2\r\n", "ERR@29"),
    R("PROXY TCP6 1::2::3 ::1 1 2\r\n", "ERR@28"),
    R("PROXY TCP6 :::1 ::1 1 2\r\n", "ERR@25"),
    R("PROXY TCP6 12345::1 ::1 1 2\r\n", "ERR@29"),
    R("PROXY TCP6 [::1] ::1 1 2\r\n", "ERR@26"),
    R("PROXY TCP6 g::1 ::1 1 2\r\n", "ERR@25"),
    /* length: no CRLF within 107 bytes; a CR at byte 107 is one too late */
    R("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
      "65535 655355\r\n",
      "ERR@107"),
    R("PROXY UNKNOWN "
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
      "ERR@107"),

    /* ---- v2 written out ---- */
    R(SIG "\x21\x11\x00\x0C"
          "\x7F\x00\x00\x01"
          "\x0A\x00\x00\x02"
          "\x30\x39\x01\xBB" HTTP,
      "v2 127.0.0.1:12345 > 10.0.0.2:443 rest=18"),
    R(SIG "\x20\x00\x00\x00" HTTP, "v2 local rest=18"),
    R(SIG "\x21\x00\x00\x00", "v2 local rest=0"),
    /* an HTTP request may start with an empty line: it shares 4 bytes with the signature */
    R("\r\n\r\nGET / HTTP/1.1\r\n\r\n", "ERR@5"),
    R("\r\n", "MORE"),
    R(SIG, "MORE"),
    R("\r\n\r\n\0\r\nQUIX\n\x21\x00\x00\x00", "ERR@11"),
    R("\r\n\r\n\x01\r\nQUIT\n\x21\x00\x00\x00", "ERR@5"),
    R("\r\n\r\n\0\r\nQUIT\r\x21\x00\x00\x00", "ERR@12"),
    /* version and command */
    R(SIG "\x11\x11\x00\x0C", "ERR@13"),
    R(SIG "\x31\x11\x00\x0C", "ERR@13"),
    R(SIG "\x22\x11\x00\x0C", "ERR@13"),
    R(SIG "\x2F\x11\x00\x0C", "ERR@13"),
};

/* ---- v2 cases built from fields (addresses and TLVs are long) -------------------------- */

struct v2case {
    uint8_t ver_cmd, fam;
    int len_field;       /* the length field; -1: the bytes that follow */
    const char *payload; /* after the fixed 16 bytes (and the unix paths) */
    size_t payload_len;
    const char *unix_src; /* non-NULL: two 108-byte paths come first */
    const char *unix_dst;
    const char *expect;
    int line;
};
/* clang-format off */
#define V2(vc, fam, pl, exp)         {vc, fam, -1, pl, sizeof(pl) - 1, NULL, NULL, exp, __LINE__}
#define V2LEN(vc, fam, lf, pl, exp)  {vc, fam, lf, pl, sizeof(pl) - 1, NULL, NULL, exp, __LINE__}
#define V2UNIX(fam, s, d, tlv, exp) {0x21, fam, -1, tlv, sizeof(tlv) - 1, s, d, exp, __LINE__}

/* 192.0.2.1:1234 > 198.51.100.7:80 */
#define A4  "\xC0\x00\x02\x01" "\xC6\x33\x64\x07" "\x04\xD2\x00\x50"
#define A4S "192.0.2.1:1234 > 198.51.100.7:80"
/* [2001:db8::1]:65535 > [::1]:443 */
#define A6  "\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01" \
            "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01" \
            "\xFF\xFF\x01\xBB"
#define A6S "[2001:db8::1]:65535 > [::1]:443"
/* clang-format on */

/* clang-format off */
static const struct v2case v2_cases[] = {
    /* every family and protocol the spec lists */
    V2(0x21, 0x11, A4, "v2 " A4S " rest=18"),
    V2(0x21, 0x21, A6, "v2 " A6S " rest=18"),
    V2UNIX(0x31, "/run/lb.sock", "/run/app.sock", "", "v2 unix:/run/lb.sock > unix:/run/app.sock rest=18"),
    V2UNIX(0x31, "\0abstract", "/x", "", "v2 unix:@abstract > unix:/x rest=18"),
    V2(0x21, 0x12, A4, "v2 local rest=18"), /* UDP: falls back to UNSPEC */
    V2(0x21, 0x22, A6, "v2 local rest=18"),
    V2UNIX(0x32, "/a", "/b", "", "v2 local rest=18"),
    V2(0x21, 0x00, "", "v2 local rest=18"),
    V2(0x21, 0x00, "\x01\x02\x03", "v2 local rest=18"), /* UNSPEC: what follows is skipped */
    /* LOCAL: the family and the address block are ignored, whatever they are */
    V2(0x20, 0x00, "", "v2 local rest=18"),
    V2(0x20, 0x11, A4, "v2 local rest=18"),
    V2(0x20, 0xFF, "junk", "v2 local rest=18"),
    /* TLVs: skipped, but each must fit */
    V2(0x21, 0x11, A4 "\x04\x00\x02zz", "v2 " A4S " rest=18"),
    V2(0x21, 0x11, A4 "\x04\x00\x00", "v2 " A4S " rest=18"),
    V2(0x21, 0x11, A4 "\x02\x00\x0b" "example.com" "\x05\x00\x03" "abc" "\x03\x00\x04\x01\x02\x03\x04",
       "v2 " A4S " rest=18"),
    V2(0x21, 0x21, A6 "\xEA\x00\x01x", "v2 " A6S " rest=18"),
    V2(0x21, 0x11, A4 "\x04\x00", "ERR@30"),         /* 2 bytes cannot be a TLV */
    V2(0x21, 0x11, A4 "\x04", "ERR@29"),
    V2(0x21, 0x11, A4 "\x04\x00\x03zz", "ERR@33"),   /* its value runs past the length */
    V2(0x21, 0x11, A4 "\x04\x00\x00\x04\x00\x05", "ERR@34"),
    V2(0x20, 0x11, A4 "\x04\x00", "v2 local rest=18"), /* LOCAL: not walked */
    /* family/protocol bytes the spec does not list (with PROXY) */
    V2(0x21, 0x10, A4, "ERR@14"),
    V2(0x21, 0x01, A4, "ERR@14"),
    V2(0x21, 0x13, A4, "ERR@14"),
    V2(0x21, 0x41, A4, "ERR@14"),
    V2(0x21, 0x02, A4, "ERR@14"),
    V2(0x21, 0x20, A6, "ERR@14"),
    /* lengths: shorter than the family's addresses, or beyond the bound */
    V2LEN(0x21, 0x11, 11, A4, "ERR@16"),
    V2LEN(0x21, 0x11, 0, "", "ERR@16"),
    V2LEN(0x21, 0x21, 35, A6, "ERR@16"),
    V2LEN(0x21, 0x21, 12, A4, "ERR@16"), /* IPv6 announced, IPv4-sized block */
    V2LEN(0x21, 0x31, 215, A6, "ERR@16"),
    V2LEN(0x21, 0x11, PROXY_V2_MAX - 16 + 1, A4, "ERR@16"),
    V2LEN(0x21, 0x00, 0xFFFF, "", "ERR@16"),
    V2LEN(0x20, 0x00, 0xFFFF, "", "ERR@16"),
    /* longer than what follows: waits for the rest (the HTTP bytes are taken as TLVs) */
    V2LEN(0x21, 0x11, 12 + 100, A4, "MORE"),
    V2LEN(0x21, 0x11, 12 + 18, A4, "ERR@46"), /* ...which do not walk as TLVs */
};
/* clang-format on */

/* ---- describing a result ------------------------------------------------------------ */

static void put_addr(char *out, size_t cap, const struct sockaddr_storage *ss)
{
    char ip[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        struct sockaddr_in sin;
        memcpy(&sin, ss, sizeof(sin));
        inet_ntop(AF_INET, &sin.sin_addr, ip, sizeof(ip));
        snprintf(out, cap, "%s:%u", ip, ntohs(sin.sin_port));
    } else if (ss->ss_family == AF_INET6) {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, ss, sizeof(sin6));
        inet_ntop(AF_INET6, &sin6.sin6_addr, ip, sizeof(ip));
        snprintf(out, cap, "[%s]:%u", ip, ntohs(sin6.sin6_port));
    } else if (ss->ss_family == AF_UNIX) {
        struct sockaddr_un sun;
        memcpy(&sun, ss, sizeof(sun));
        const char *p = sun.sun_path;
        bool abstract = p[0] == 0;
        snprintf(out, cap, "unix:%s%.*s", abstract ? "@" : "", (int) sizeof(sun.sun_path) - 1,
                 p + abstract);
    } else {
        snprintf(out, cap, "family%d", ss->ss_family);
    }
}

/* The outcome for buf[0..len), parsed from an exact-size copy. */
static int parse_exact(const char *buf, size_t len, proxy_header *h)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len) memcpy(copy, buf, len);
    int rc = proxy_parse(copy, len, h);
    free(copy);
    return rc;
}

static void describe(char *out, size_t cap, int rc, const proxy_header *h, size_t len,
                     size_t err_at)
{
    if (rc < 0) {
        snprintf(out, cap, "ERR@%zu", err_at);
    } else if (rc == 0) {
        snprintf(out, cap, "MORE");
    } else if (h->local) {
        snprintf(out, cap, "v%d local rest=%zu", h->version, len - (size_t) rc);
    } else {
        char s[160], d[160];
        put_addr(s, sizeof(s), &h->src);
        put_addr(d, sizeof(d), &h->dst);
        snprintf(out, cap, "v%d %s > %s rest=%zu", h->version, s, d, len - (size_t) rc);
    }
}

/* Feed every prefix; check the sequence is 0...0 then one lasting outcome;
 * describe it. Returns whether it matched (a mismatch is printed). */
static bool check_case(const char *buf, size_t len, const char *expect, int line)
{
    proxy_header whole, h;
    int rc = parse_exact(buf, len, &whole);
    if (rc < 0) assert_int_equal(rc, FERRY_EPROXY);
    if (rc > 0) {
        assert_true((size_t) rc <= len);
        assert_true(whole.version == 1 || whole.version == 2);
        assert_true(whole.local != whole.has_addr);
    }
    size_t err_at = 0;
    int settled = 0; /* the first non-zero outcome seen among the prefixes */
    for (size_t k = 0; k <= len; k++) {
        int r = parse_exact(buf, k, &h);
        if (settled == 0 && r != 0) {
            settled = r;
            if (r < 0)
                err_at = k;
            else if ((size_t) r != k)
                fail_msg("line %d: a header of %d bytes was first recognised at %zu", line, r, k);
        }
        if (settled != 0 && r != settled)
            fail_msg("line %d: prefix of %zu bytes gives %d after %d", line, k, r, settled);
        if (r > 0 && memcmp(&h, &whole, sizeof(h)) != 0)
            fail_msg("line %d: prefix of %zu bytes gives another header", line, k);
    }
    assert_int_equal(settled, rc);
    char got[512];
    describe(got, sizeof(got), rc, &whole, len, err_at);
    if (strcmp(got, expect) != 0) {
        print_error("line %d: got \"%s\", want \"%s\"\n", line, got, expect);
        return false;
    }
    return true;
}

static void test_raw_cases(void **state)
{
    (void) state;
    size_t bad = 0;
    for (size_t i = 0; i < sizeof(raw_cases) / sizeof(raw_cases[0]); i++)
        bad +=
            !check_case(raw_cases[i].raw, raw_cases[i].len, raw_cases[i].expect, raw_cases[i].line);
    assert_int_equal(bad, 0);
}

static size_t build_v2(const struct v2case *c, char *out, size_t cap)
{
    size_t n = 0, body = c->payload_len + (c->unix_src ? 216 : 0);
    assert_true(16 + body + strlen(HTTP) <= cap);
    memcpy(out, SIG, 12);
    out[12] = (char) c->ver_cmd;
    out[13] = (char) c->fam;
    size_t lf = c->len_field < 0 ? body : (size_t) c->len_field;
    out[14] = (char) (lf >> 8);
    out[15] = (char) (lf & 0xFF);
    n = 16;
    if (c->unix_src) {
        memset(out + n, 0, 216);
        /* a leading NUL (abstract name) is part of the path */
        size_t sl = c->unix_src[0] ? strlen(c->unix_src) : 1 + strlen(c->unix_src + 1);
        memcpy(out + n, c->unix_src, sl);
        memcpy(out + n + 108, c->unix_dst, strlen(c->unix_dst));
        n += 216;
    }
    memcpy(out + n, c->payload, c->payload_len);
    n += c->payload_len;
    memcpy(out + n, HTTP, strlen(HTTP));
    return n + strlen(HTTP);
}

static void test_v2_cases(void **state)
{
    (void) state;
    char buf[PROXY_V2_MAX + 64];
    size_t bad = 0;
    for (size_t i = 0; i < sizeof(v2_cases) / sizeof(v2_cases[0]); i++) {
        size_t n = build_v2(&v2_cases[i], buf, sizeof(buf));
        bad += !check_case(buf, n, v2_cases[i].expect, v2_cases[i].line);
    }
    assert_int_equal(bad, 0);
}

/* The longest v2 header accepted, all NOOP TLVs, and one byte more. */
static void test_v2_bound(void **state)
{
    (void) state;
    static char buf[PROXY_V2_MAX + 32];
    const size_t body = PROXY_V2_MAX - 16, tlv = body - 12;
    memcpy(buf, SIG "\x21\x11", 14);
    buf[14] = (char) (body >> 8);
    buf[15] = (char) (body & 0xFF);
    memcpy(buf + 16, A4, 12);
    buf[28] = 0x04;
    buf[29] = (char) ((tlv - 3) >> 8);
    buf[30] = (char) ((tlv - 3) & 0xFF);
    memset(buf + 31, 'n', tlv - 3);
    memcpy(buf + PROXY_V2_MAX, "GET", 3);
    assert_true(check_case(buf, PROXY_V2_MAX + 3, "v2 " A4S " rest=3", __LINE__));
}

/* *out is left alone unless a header is complete. */
static void test_out_untouched(void **state)
{
    (void) state;
    static const char *const inputs[] = {"GET /", "PROXY TCP4 1.2", "PROXY TCP4 1.2.3.4 x\r\n",
                                         "\r\n\r\n\0\r\nQ"};
    for (size_t i = 0; i < 4; i++) {
        proxy_header h;
        memset(&h, 0xA5, sizeof(h));
        proxy_header before = h;
        size_t len = i == 3 ? 8 : strlen(inputs[i]);
        assert_true(proxy_parse(inputs[i], len, &h) <= 0);
        assert_memory_equal(&h, &before, sizeof(h));
    }
    proxy_header h;
    assert_int_equal(proxy_parse("", 0, &h), 0);
    assert_int_equal(proxy_parse(NULL, 0, &h), 0);
}

/* ---- trust lists ---------------------------------------------------------------------- */

/* clang-format off */
#define T(list, rc, count) {list, rc, count, __LINE__}
/* clang-format on */
static const struct {
    const char *list;
    int rc;
    size_t count;
    int line;
} trust_parse_cases[] = {
    T("127.0.0.1,10.0.0.0/8,::1,fd00::/8", 0, 4),
    T("127.0.0.1", 0, 1),
    T(" 127.0.0.1 ,\t::1\t", 0, 2),
    T("0.0.0.0/0", 0, 1),
    T("::/0", 0, 1),
    T("unix", 0, 1),
    T("unix,10.0.0.0/8", 0, 2),
    T("::ffff:10.0.0.0/104", 0, 1),
    T("192.168.1.0/24,2001:db8::/32", 0, 2),
    T("", FERRY_EINVAL, 0),
    T(" ", FERRY_EINVAL, 0),
    T("127.0.0.1,", FERRY_EINVAL, 0),
    T(",127.0.0.1", FERRY_EINVAL, 0),
    T("127.0.0.1,,::1", FERRY_EINVAL, 0),
    T("10.0.0.1/8", FERRY_EINVAL, 0), /* host bits set */
    T("fd00::1/8", FERRY_EINVAL, 0),
    T("10.0.0.0/33", FERRY_EINVAL, 0),
    T("::/129", FERRY_EINVAL, 0),
    T("10.0.0.0/", FERRY_EINVAL, 0),
    T("10.0.0.0/08", FERRY_EINVAL, 0),
    T("10.0.0.0/-1", FERRY_EINVAL, 0),
    T("10.0.0.0/8/8", FERRY_EINVAL, 0),
    T("10.0.0", FERRY_EINVAL, 0),
    T("010.0.0.0/8", FERRY_EINVAL, 0),
    T("localhost", FERRY_EINVAL, 0),
    T("fe80::1%eth0", FERRY_EINVAL, 0),
    T("[::1]", FERRY_EINVAL, 0),
    T("UNIX", FERRY_EINVAL, 0),
    T("10.0.0.0 /8", FERRY_EINVAL, 0),
#undef T
};

static void test_trust_parse(void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof(trust_parse_cases) / sizeof(trust_parse_cases[0]); i++) {
        proxy_trust t;
        int rc = proxy_trust_parse(trust_parse_cases[i].list, &t);
        if (rc != trust_parse_cases[i].rc || t.count != trust_parse_cases[i].count)
            fail_msg("line %d: \"%s\": rc %d count %zu", trust_parse_cases[i].line,
                     trust_parse_cases[i].list, rc, t.count);
        if (rc != 0) assert_null(t.rules);
        proxy_trust_free(&t);
        assert_null(t.rules);
        assert_int_equal(t.count, 0);
    }
    proxy_trust t;
    assert_int_equal(proxy_trust_parse(NULL, &t), FERRY_EINVAL);
    proxy_trust_free(NULL);
}

/* A peer as the socket layer gives it: "1.2.3.4", "::1", "unix". */
static void make_peer(const char *s, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (strcmp(s, "unix") == 0) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        memcpy(ss, &sun, sizeof(sun));
    } else if (strchr(s, ':')) {
        struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(5555)};
        assert_int_equal(inet_pton(AF_INET6, s, &sin6.sin6_addr), 1);
        memcpy(ss, &sin6, sizeof(sin6));
    } else {
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(5555)};
        assert_int_equal(inet_pton(AF_INET, s, &sin.sin_addr), 1);
        memcpy(ss, &sin, sizeof(sin));
    }
}

/* clang-format off */
#define P(list, peer, trusted) {list, peer, trusted, __LINE__}
/* clang-format on */
static const struct {
    const char *list, *peer;
    bool trusted;
    int line;
} trust_cases[] = {
    P("127.0.0.1,10.0.0.0/8,::1,fd00::/8", "127.0.0.1", true),
    P("127.0.0.1,10.0.0.0/8,::1,fd00::/8", "127.0.0.2", false),
    P("127.0.0.1,10.0.0.0/8,::1,fd00::/8", "10.255.1.2", true),
    P("127.0.0.1,10.0.0.0/8,::1,fd00::/8", "11.0.0.1", false),
    P("127.0.0.1,10.0.0.0/8,::1,fd00::/8", "::1", true),
    P("127.0.0.1,10.0.0.0/8,::1,fd00::/8", "::2", false),
    P("127.0.0.1,10.0.0.0/8,::1,fd00::/8", "fd12:3456::1", true),
    P("127.0.0.1,10.0.0.0/8,::1,fd00::/8", "fe80::1", false),
    P("127.0.0.1,10.0.0.0/8,::1,fd00::/8", "unix", false),
    /* a dual-stack listener sees IPv4 clients as v4-mapped IPv6 */
    P("127.0.0.1,10.0.0.0/8", "::ffff:127.0.0.1", true),
    P("127.0.0.1,10.0.0.0/8", "::ffff:10.9.8.7", true),
    P("127.0.0.1,10.0.0.0/8", "::ffff:11.0.0.1", false),
    P("::ffff:10.0.0.0/104", "10.1.2.3", true),
    P("::ffff:10.0.0.0/104", "::ffff:10.1.2.3", true),
    P("::ffff:10.0.0.0/104", "11.1.2.3", false),
    P("::/0", "10.1.2.3", false), /* every IPv6 address, but an IPv4 peer is IPv4 */
    P("::/0", "2001:db8::5", true),
    P("0.0.0.0/0", "::ffff:1.2.3.4", true),
    P("0.0.0.0/0", "::1", false),
    /* prefixes that end inside a byte */
    P("192.168.4.0/22", "192.168.7.255", true),
    P("192.168.4.0/22", "192.168.8.0", false),
    P("192.168.4.0/22", "192.168.3.255", false),
    P("2001:db8:8000::/33", "2001:db8:ffff::1", true),
    P("2001:db8:8000::/33", "2001:db8:7fff::1", false),
    P("10.0.0.0/8,unix", "unix", true),
    P("unix", "127.0.0.1", false),
#undef P
};

static void test_trusted(void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof(trust_cases) / sizeof(trust_cases[0]); i++) {
        proxy_trust t;
        assert_int_equal(proxy_trust_parse(trust_cases[i].list, &t), 0);
        struct sockaddr_storage ss;
        make_peer(trust_cases[i].peer, &ss);
        if (proxy_trusted(&t, (const struct sockaddr *) &ss) != trust_cases[i].trusted)
            fail_msg("line %d: %s in \"%s\": want %s", trust_cases[i].line, trust_cases[i].peer,
                     trust_cases[i].list, trust_cases[i].trusted ? "trusted" : "not trusted");
        proxy_trust_free(&t);
    }
    /* no list: everyone; no peer or another family: nobody */
    struct sockaddr_storage ss;
    make_peer("203.0.113.9", &ss);
    assert_true(proxy_trusted(NULL, (const struct sockaddr *) &ss));
    proxy_trust t;
    assert_int_equal(proxy_trust_parse("0.0.0.0/0,::/0,unix", &t), 0);
    assert_false(proxy_trusted(&t, NULL));
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_PACKET;
    assert_false(proxy_trusted(&t, (const struct sockaddr *) &ss));
    proxy_trust_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw_cases),   cmocka_unit_test(test_v2_cases),
        cmocka_unit_test(test_v2_bound),    cmocka_unit_test(test_out_untouched),
        cmocka_unit_test(test_trust_parse), cmocka_unit_test(test_trusted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
