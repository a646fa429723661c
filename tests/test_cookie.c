/* test_cookie.c — the cookie jar (src/cookie.c) against data tables:
 *   dates[]      the §5.1.1 date algorithm, one string and its epoch each;
 *   sets[]       one Set-Cookie into an empty jar, and the jar dumped after;
 *   scenarios[]  scripts of sets, headers and clears against one jar, for
 *                matching, ordering, replacement, expiry, limits and a
 *                browser-like login chain.
 * A few checks that do not fit a table (long values, buffer sizes, argument
 * errors, the public-suffix backend) follow as plain functions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/cookie.h"
#include "ferry.h"

/* 2023-11-14 22:13:20 UTC: "now" unless a step says otherwise. */
#define T0     INT64_C(1700000000)
#define DAY    INT64_C(86400)
#define CAP400 (400 * DAY)

/* ---- dates ------------------------------------------------------------------ */

#define BAD_DATE INT64_MIN

static const struct {
    const char *s;
    int64_t want; /* BAD_DATE: must fail */
} dates[] = {
    /* the four classic formats */
    {"Sun, 06 Nov 1994 08:49:37 GMT", 784111777},  /* RFC 1123 */
    {"Sunday, 06-Nov-94 08:49:37 GMT", 784111777}, /* RFC 850 */
    {"Sun Nov  6 08:49:37 1994", 784111777},       /* asctime */
    {"Sun, 06-Nov-1994 08:49:37 GMT", 784111777},  /* Netscape cookie */
    {"Wed, 21 Oct 2015 07:28:00 GMT", 1445412480},
    /* two-digit years */
    {"06 Nov 69 08:49:37", 3150953377},
    {"06 Nov 70 08:49:37", 26729377},
    {"06 Nov 00 08:49:37", 973500577},
    {"06 Nov 99 08:49:37", 941878177},
    /* tolerance: case, order, missing and extra punctuation, trailing junk */
    {"Thu, 01-Jan-1970 00:00:00 GMT", 0},
    {"1 jan 1970 0:0:0", 0},
    {"Mon, 01 JANUARY 2024 12:00:00 GMT", 1704110400},
    {"  Tue,,, 29 Feb 2000 23:59:59 UTC+0100 (junk)", 951868799},
    {"12:00:00 2024 Jan 01", 1704110400},
    {"1 Jan 2020 1:2:3", 1577840523},
    {"Thu, 29-Feb-2024 00:00:00", 1709164800},
    {"Tue, 19 Jan 2038 03:14:08 GMT", 2147483648},
    {"Fri, 31 Dec 9999 23:59:59 GMT", 253402300799},
    {"1 Jan 1601 00:00:00", -11644473600},
    {"1 Jan 2020 01:02:03xyz", 1577840523},
    /* invalid */
    {"", BAD_DATE},
    {"garbage", BAD_DATE},
    {"Thu, 29 Feb 2001 00:00:00 GMT", BAD_DATE}, /* not a leap year */
    {"31 Apr 2020 00:00:00", BAD_DATE},
    {"32 Jan 2020 00:00:00", BAD_DATE},
    {"0 Jan 2020 00:00:00", BAD_DATE},
    {"1 Jan 1600 00:00:00", BAD_DATE}, /* before 1601 */
    {"1 Jan 2020 24:00:00", BAD_DATE},
    {"1 Jan 2020 23:60:00", BAD_DATE},
    {"1 Jan 2020 23:59:60", BAD_DATE},
    {"1 Jan 2020", BAD_DATE},          /* no time */
    {"1 2020 00:00:00", BAD_DATE},     /* no month */
    {"Jan 2020 00:00:00", BAD_DATE},   /* no day: "2020" is not 1*2DIGIT */
    {"1 Foo 2020 00:00:00", BAD_DATE}, /* no month */
    {"1 Jan 123 00:00:00", BAD_DATE},  /* three-digit year < 1601 */
    {"1 Jan 20201 00:00:00", BAD_DATE},
    {"1 Jan 2020 123:00:00", BAD_DATE},
    {"2020-01-01T00:00:00Z", BAD_DATE}, /* ISO 8601 is not a cookie date */
};

static void test_dates(void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof(dates) / sizeof(dates[0]); i++) {
        int64_t t = 42;
        int r = cookie_parse_date(dates[i].s, strlen(dates[i].s), &t);
        if (dates[i].want == BAD_DATE) {
            if (r != FERRY_EINVAL)
                fail_msg("date \"%s\" parsed as %lld", dates[i].s, (long long) t);
        } else {
            if (r != 0 || t != dates[i].want)
                fail_msg("date \"%s\": r=%d t=%lld want %lld", dates[i].s, r, (long long) t,
                         (long long) dates[i].want);
        }
    }
}

/* ---- dumping a jar -------------------------------------------------------------- */

static int cmp_dump(const void *a, const void *b)
{
    const cookie *x = *(const cookie *const *) a, *y = *(const cookie *const *) b;
    int r = strcmp(x->name, y->name);
    if (r == 0) r = strcmp(x->domain, y->domain);
    if (r == 0) r = strcmp(x->path, y->path);
    if (r == 0) r = (int) x->host_only - (int) y->host_only;
    return r;
}

/* Every cookie, sorted, as "name=value host:dom path:/p exp:+N secure
 * httponly ss:lax", joined by " | "; expiry is relative to now. */
static char *dump(const cookie_jar *jar, int64_t now)
{
    static char out[4096];
    const cookie *list[64];
    size_t n = cookie_jar_count(jar);
    assert_true(n <= 64);
    for (size_t i = 0; i < n; i++)
        list[i] = cookie_jar_at(jar, i);
    qsort(list, n, sizeof(list[0]), cmp_dump);
    size_t o = 0;
    out[0] = 0;
    static const char *const ss[] = {"", " ss:none", " ss:lax", " ss:strict"};
    for (size_t i = 0; i < n; i++) {
        const cookie *c = list[i];
        assert_int_equal(strlen(c->name), c->name_len);
        assert_int_equal(strlen(c->value), c->value_len);
        assert_int_equal(strlen(c->domain), c->domain_len);
        assert_int_equal(strlen(c->path), c->path_len);
        assert_true(c->persistent || c->expiry_s == COOKIE_SESSION);
        char exp[32];
        if (c->persistent)
            snprintf(exp, sizeof(exp), "%+lld", (long long) (c->expiry_s - now));
        else
            snprintf(exp, sizeof(exp), "session");
        o += (size_t) snprintf(out + o, sizeof(out) - o, "%s%s=%s %s:%s path:%s exp:%s%s%s%s",
                               i ? " | " : "", c->name, c->value, c->host_only ? "host" : "dom",
                               c->domain, c->path, exp, c->secure ? " secure" : "",
                               c->http_only ? " httponly" : "", ss[c->samesite]);
        assert_true(o < sizeof(out));
    }
    return out;
}

/* ---- one Set-Cookie into an empty jar ---------------------------------------------- */

#define WWW     "www.example.com"
#define DOC     "/a/b/c"
#define HTTP    0
#define HTTPS   1
#define STORED  COOKIE_STORED
#define EXPIRED COOKIE_EXPIRED
#define IGNORED COOKIE_IGNORED

static const struct set_case {
    int line;
    const char *set_cookie;
    const char *host;
    const char *path;
    int secure;
    int want;         /* cookie_set_result */
    const char *dump; /* the jar after, "" if empty */
} sets[] = {
#define SC(sc, host, path, sec, want, dump)                                                        \
    {                                                                                              \
        __LINE__, sc, host, path, sec, want, dump                                                  \
    }
    /* name and value (§5.2 steps 1-6, bis §5.6) */
    SC("sid=abc", WWW, DOC, HTTP, STORED, "sid=abc host:www.example.com path:/a/b exp:session"),
    SC("  sid = abc  ", WWW, DOC, HTTP, STORED,
       "sid=abc host:www.example.com path:/a/b exp:session"),
    SC("sid=", WWW, DOC, HTTP, STORED, "sid= host:www.example.com path:/a/b exp:session"),
    SC("a=b=c", WWW, DOC, HTTP, STORED, "a=b=c host:www.example.com path:/a/b exp:session"),
    SC("a=\"q v\"", WWW, DOC, HTTP, STORED, "a=\"q v\" host:www.example.com path:/a/b exp:session"),
    SC("a=b\tc", WWW, DOC, HTTP, STORED, "a=b\tc host:www.example.com path:/a/b exp:session"),
    SC("a=b,c d", WWW, DOC, HTTP, STORED, "a=b,c d host:www.example.com path:/a/b exp:session"),
    SC("abc", WWW, DOC, HTTP, STORED, "=abc host:www.example.com path:/a/b exp:session"),
    SC("=abc", WWW, DOC, HTTP, STORED, "=abc host:www.example.com path:/a/b exp:session"),
    SC(" abc ; Path=/", WWW, DOC, HTTP, STORED, "=abc host:www.example.com path:/ exp:session"),
    SC("=", WWW, DOC, HTTP, IGNORED, ""),
    SC("", WWW, DOC, HTTP, IGNORED, ""),
    SC("   ; Path=/", WWW, DOC, HTTP, IGNORED, ""),
    SC("a=b\x01", WWW, DOC, HTTP, IGNORED, ""),
    SC("a=b\r\nSet-Cookie: x=y", WWW, DOC, HTTP, IGNORED, ""),
    SC("a=b; Path=/\n", WWW, DOC, HTTP, IGNORED, ""),
    SC("a=b\x7f", WWW, DOC, HTTP, IGNORED, ""),
    SC("n\xc3\xa4me=v\xc3\xa4lue", WWW, DOC, HTTP, STORED,
       "n\xc3\xa4me=v\xc3\xa4lue host:www.example.com path:/a/b exp:session"),
    /* attributes: case, repeats, junk */
    SC("a=b; SECURE; HTTPONLY; PATH=/x", WWW, DOC, HTTPS, STORED,
       "a=b host:www.example.com path:/x exp:session secure httponly"),
    SC("a=b;Secure;HttpOnly=yes", WWW, DOC, HTTPS, STORED,
       "a=b host:www.example.com path:/a/b exp:session secure httponly"),
    SC("a=b; Unknown=1; ;; foo; =bar", WWW, DOC, HTTP, STORED,
       "a=b host:www.example.com path:/a/b exp:session"),
    SC("a=b; SameSite=Lax", WWW, DOC, HTTP, STORED,
       "a=b host:www.example.com path:/a/b exp:session ss:lax"),
    SC("a=b; samesite=STRICT", WWW, DOC, HTTP, STORED,
       "a=b host:www.example.com path:/a/b exp:session ss:strict"),
    SC("a=b; SameSite=None; Secure", WWW, DOC, HTTPS, STORED,
       "a=b host:www.example.com path:/a/b exp:session secure ss:none"),
    SC("a=b; SameSite=Lax; SameSite=bogus", WWW, DOC, HTTP, STORED,
       "a=b host:www.example.com path:/a/b exp:session"),
    SC("a=b; SameSite", WWW, DOC, HTTP, STORED, "a=b host:www.example.com path:/a/b exp:session"),
    /* Max-Age (§5.2.2) */
    SC("a=b; Max-Age=3600", WWW, DOC, HTTP, STORED, "a=b host:www.example.com path:/a/b exp:+3600"),
    SC("a=b; max-age = 60 ", WWW, DOC, HTTP, STORED, "a=b host:www.example.com path:/a/b exp:+60"),
    SC("a=b; Max-Age=0", WWW, DOC, HTTP, EXPIRED, ""),
    SC("a=b; Max-Age=-1", WWW, DOC, HTTP, EXPIRED, ""),
    SC("a=b; Max-Age=-99999999999999999999999", WWW, DOC, HTTP, EXPIRED, ""),
    SC("a=b; Max-Age=abc", WWW, DOC, HTTP, STORED,
       "a=b host:www.example.com path:/a/b exp:session"),
    SC("a=b; Max-Age=+5", WWW, DOC, HTTP, STORED, "a=b host:www.example.com path:/a/b exp:session"),
    SC("a=b; Max-Age=1e3", WWW, DOC, HTTP, STORED,
       "a=b host:www.example.com path:/a/b exp:session"),
    SC("a=b; Max-Age=-", WWW, DOC, HTTP, STORED, "a=b host:www.example.com path:/a/b exp:session"),
    SC("a=b; Max-Age=", WWW, DOC, HTTP, STORED, "a=b host:www.example.com path:/a/b exp:session"),
    SC("a=b; Max-Age=99999999999999999999999", WWW, DOC, HTTP, STORED,
       "a=b host:www.example.com path:/a/b exp:+34560000"), /* 400 days */
    SC("a=b; Max-Age=10; Max-Age=20", WWW, DOC, HTTP, STORED,
       "a=b host:www.example.com path:/a/b exp:+20"),
    SC("a=b; Max-Age=10; Max-Age=x", WWW, DOC, HTTP, STORED,
       "a=b host:www.example.com path:/a/b exp:+10"),
    /* Expires (§5.2.1) and its interplay with Max-Age */
    SC("a=b; Expires=Mon, 01 Jan 2024 12:00:00 GMT", WWW, DOC, HTTP, STORED,
       "a=b host:www.example.com path:/a/b exp:+4110400"),
    SC("a=b; expires=Wed, 21 Oct 2015 07:28:00 GMT", WWW, DOC, HTTP, EXPIRED, ""),
    SC("a=b; Expires=garbage", WWW, DOC, HTTP, STORED,
       "a=b host:www.example.com path:/a/b exp:session"),
    SC("a=b; Expires=", WWW, DOC, HTTP, STORED, "a=b host:www.example.com path:/a/b exp:session"),
    SC("a=b; Expires=Fri, 01 Jan 2100 00:00:00 GMT", WWW, DOC, HTTP, STORED,
       "a=b host:www.example.com path:/a/b exp:+34560000"), /* capped at 400 days */
    SC("a=b; Max-Age=100; Expires=Wed, 21 Oct 2015 07:28:00 GMT", WWW, DOC, HTTP, STORED,
       "a=b host:www.example.com path:/a/b exp:+100"),
    SC("a=b; Expires=Wed, 21 Oct 2015 07:28:00 GMT; Max-Age=100", WWW, DOC, HTTP, STORED,
       "a=b host:www.example.com path:/a/b exp:+100"),
    SC("a=b; Max-Age=0; Expires=Mon, 01 Jan 2024 12:00:00 GMT", WWW, DOC, HTTP, EXPIRED, ""),
    SC("a=b; Expires=Mon, 01 Jan 2024 12:00:00 GMT; Expires=bad", WWW, DOC, HTTP, STORED,
       "a=b host:www.example.com path:/a/b exp:+4110400"),
    /* Domain (§5.2.3, §5.3) */
    SC("a=b; Domain=example.com", WWW, DOC, HTTP, STORED,
       "a=b dom:example.com path:/a/b exp:session"),
    SC("a=b; Domain=.example.com", WWW, DOC, HTTP, STORED,
       "a=b dom:example.com path:/a/b exp:session"),
    SC("a=b; Domain=EXAMPLE.Com", WWW, DOC, HTTP, STORED,
       "a=b dom:example.com path:/a/b exp:session"),
    SC("a=b; Domain=example.com", "WWW.Example.COM", DOC, HTTP, STORED,
       "a=b dom:example.com path:/a/b exp:session"),
    SC("a=b", "WWW.Example.COM", DOC, HTTP, STORED,
       "a=b host:www.example.com path:/a/b exp:session"),
    SC("a=b; Domain=www.example.com", WWW, DOC, HTTP, STORED,
       "a=b dom:www.example.com path:/a/b exp:session"),
    SC("a=b; Domain=other.com", WWW, DOC, HTTP, IGNORED, ""),
    SC("a=b; Domain=ample.com", WWW, DOC, HTTP, IGNORED, ""),
    SC("a=b; Domain=sub.www.example.com", WWW, DOC, HTTP, IGNORED, ""),
    SC("a=b; Domain=example.com.", WWW, DOC, HTTP, IGNORED, ""),
    SC("a=b; Domain=", WWW, DOC, HTTP, STORED, "a=b host:www.example.com path:/a/b exp:session"),
    SC("a=b; Domain=.", WWW, DOC, HTTP, STORED, "a=b host:www.example.com path:/a/b exp:session"),
    SC("a=b; Domain=com", WWW, DOC, HTTP, IGNORED, ""),
    SC("a=b; Domain=.com", WWW, DOC, HTTP, IGNORED, ""),
    SC("a=b; Domain=example.com; Domain=other.com", WWW, DOC, HTTP, IGNORED, ""),
    SC("a=b; Domain=other.com; Domain=example.com", WWW, DOC, HTTP, STORED,
       "a=b dom:example.com path:/a/b exp:session"),
    SC("a=b; Domain=ex\xc3\xa4mple.com", WWW, DOC, HTTP, IGNORED, ""),
    SC("a=b; Domain=localhost", "localhost", "/", HTTP, STORED,
       "a=b host:localhost path:/ exp:session"),
    SC("a=b; Domain=LOCALHOST", "localhost", "/", HTTP, STORED,
       "a=b host:localhost path:/ exp:session"),
    /* IP hosts: host-only cookies only */
    SC("a=b", "192.168.0.1", "/", HTTP, STORED, "a=b host:192.168.0.1 path:/ exp:session"),
    SC("a=b; Domain=192.168.0.1", "192.168.0.1", "/", HTTP, STORED,
       "a=b host:192.168.0.1 path:/ exp:session"),
    SC("a=b; Domain=168.0.1", "192.168.0.1", "/", HTTP, IGNORED, ""),
    SC("a=b; Domain=0.1", "192.168.0.1", "/", HTTP, IGNORED, ""),
    SC("a=b", "[::1]", "/", HTTP, STORED, "a=b host:::1 path:/ exp:session"),
    SC("a=b; Domain=::1", "[::1]", "/", HTTP, STORED, "a=b host:::1 path:/ exp:session"),
    SC("a=b; Domain=1", "[::1]", "/", HTTP, IGNORED, ""),
    /* Path (§5.2.4) and the default-path (§5.1.4) */
    SC("a=b; Path=/x/y", WWW, DOC, HTTP, STORED, "a=b host:www.example.com path:/x/y exp:session"),
    SC("a=b; Path=/x/y/", WWW, DOC, HTTP, STORED,
       "a=b host:www.example.com path:/x/y/ exp:session"),
    SC("a=b; Path=x", WWW, DOC, HTTP, STORED, "a=b host:www.example.com path:/a/b exp:session"),
    SC("a=b; Path=", WWW, DOC, HTTP, STORED, "a=b host:www.example.com path:/a/b exp:session"),
    SC("a=b; Path=/x; Path=/y", WWW, DOC, HTTP, STORED,
       "a=b host:www.example.com path:/y exp:session"),
    SC("a=b", WWW, "/", HTTP, STORED, "a=b host:www.example.com path:/ exp:session"),
    SC("a=b", WWW, "/abc", HTTP, STORED, "a=b host:www.example.com path:/ exp:session"),
    SC("a=b", WWW, "", HTTP, STORED, "a=b host:www.example.com path:/ exp:session"),
    SC("a=b", WWW, "*", HTTP, STORED, "a=b host:www.example.com path:/ exp:session"),
    SC("a=b", WWW, "/a/b/", HTTP, STORED, "a=b host:www.example.com path:/a/b exp:session"),
    SC("a=b", WWW, "/a/b?q=/x/y/z", HTTP, STORED, "a=b host:www.example.com path:/a exp:session"),
    SC("a=b", WWW, "/a/b#x/y", HTTP, STORED, "a=b host:www.example.com path:/a exp:session"),
    /* Secure needs a secure request */
    SC("a=b; Secure", WWW, DOC, HTTP, IGNORED, ""),
    SC("a=b; Secure", WWW, DOC, HTTPS, STORED,
       "a=b host:www.example.com path:/a/b exp:session secure"),
    /* __Secure- and __Host- (bis §4.1.3), case-insensitive */
    SC("__Secure-a=b; Secure", WWW, DOC, HTTPS, STORED,
       "__Secure-a=b host:www.example.com path:/a/b exp:session secure"),
    SC("__Secure-a=b", WWW, DOC, HTTPS, IGNORED, ""),
    SC("__Secure-a=b; Secure", WWW, DOC, HTTP, IGNORED, ""),
    SC("__SECURE-a=b", WWW, DOC, HTTPS, IGNORED, ""),
    SC("__Secure-a=b; Secure; Domain=example.com", WWW, DOC, HTTPS, STORED,
       "__Secure-a=b dom:example.com path:/a/b exp:session secure"),
    SC("__Host-a=b; Secure; Path=/", WWW, DOC, HTTPS, STORED,
       "__Host-a=b host:www.example.com path:/ exp:session secure"),
    SC("__host-a=b; Secure; Path=/", WWW, DOC, HTTPS, STORED,
       "__host-a=b host:www.example.com path:/ exp:session secure"),
    SC("__HOST-a=b; Path=/", WWW, DOC, HTTPS, IGNORED, ""),
    SC("__Host-a=b; Secure", WWW, "/", HTTPS, IGNORED, ""), /* no Path attribute */
    SC("__Host-a=b; Secure; Path=/x", WWW, DOC, HTTPS, IGNORED, ""),
    SC("__Host-a=b; Secure; Path=/; Domain=example.com", WWW, DOC, HTTPS, IGNORED, ""),
    SC("__Host-a=b; Secure; Path=/; Domain=www.example.com", WWW, DOC, HTTPS, IGNORED, ""),
    SC("__Host-a=b; Secure; Path=x", WWW, "/", HTTPS, STORED, /* default-path is "/" */
       "__Host-a=b host:www.example.com path:/ exp:session secure"),
    SC("__Host-x; Secure; Path=/", WWW, DOC, HTTPS, IGNORED, ""), /* nameless, prefixed value */
    SC("=__secure-x; Secure", WWW, DOC, HTTPS, IGNORED, ""),
    SC("__Hostile=b", WWW, DOC, HTTP, STORED,
       "__Hostile=b host:www.example.com path:/a/b exp:session"),
#undef SC
};

static void test_set_cookie_table(void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
        const struct set_case *c = &sets[i];
        cookie_jar jar;
        assert_int_equal(cookie_jar_init(&jar, NULL), 0);
        int r = cookie_jar_set(&jar, c->set_cookie, strlen(c->set_cookie), c->host, strlen(c->host),
                               c->path, strlen(c->path), c->secure, T0);
        const char *got = dump(&jar, T0);
        if (r != c->want || strcmp(got, c->dump) != 0)
            fail_msg("line %d: \"%s\" on %s%s: result %d (want %d)\n  got:  \"%s\"\n  want: "
                     "\"%s\"",
                     c->line, c->set_cookie, c->host, c->path, r, c->want, got, c->dump);
        cookie_jar_free(&jar);
    }
}

/* ---- scenarios: scripts against one jar ---------------------------------------------- */

enum { END = 0, SET, GET, COUNT, CLEAR_SESSION, PURGE };

typedef struct {
    int op;
    const char *host;
    const char *path;
    int secure;
    int64_t at;       /* seconds after T0 */
    const char *text; /* SET: the Set-Cookie value; GET: the wanted header ("" = none) */
    int want;         /* SET: the result; COUNT, CLEAR_SESSION, PURGE: the number */
} step;

static const struct scenario {
    int line;
    const char *name;
    cookie_limits limits; /* all zero: the defaults */
    step steps[16];
} scenarios[] = {
/* one step per line: a scenario reads as a script */
// clang-format off
#define S(host, path, sec, at, sc, want) {SET, host, path, sec, at, sc, want}
#define G(host, path, sec, at, header) {GET, host, path, sec, at, header, 0}
#define N(n) {COUNT, NULL, NULL, 0, 0, NULL, n}
#define NOLIMITS {0, 0, 0, 0}
    {__LINE__, "host-only vs domain cookies", NOLIMITS, {
        S(WWW, "/", HTTP, 0, "h=1", STORED),
        S(WWW, "/", HTTP, 1, "d=2; Domain=example.com", STORED),
        G(WWW, "/", HTTP, 2, "h=1; d=2"),
        G("WWW.EXAMPLE.COM", "/", HTTP, 2, "h=1; d=2"),
        G("example.com", "/", HTTP, 2, "d=2"),
        G("sub.www.example.com", "/", HTTP, 2, "d=2"),
        G("a.b.example.com", "/x", HTTP, 2, "d=2"),
        G("other.com", "/", HTTP, 2, ""),
        G("badexample.com", "/", HTTP, 2, ""),
        G("example.com.evil", "/", HTTP, 2, ""),
    }},
    {__LINE__, "path matching", NOLIMITS, {
        S(WWW, "/", HTTP, 0, "p=1; Path=/docs", STORED),
        S(WWW, "/", HTTP, 1, "q=2; Path=/docs/", STORED),
        G(WWW, "/docs", HTTP, 2, "p=1"),
        G(WWW, "/docs/", HTTP, 2, "q=2; p=1"),
        G(WWW, "/docs/x/y?z=1", HTTP, 2, "q=2; p=1"),
        G(WWW, "/docsx", HTTP, 2, ""),
        G(WWW, "/", HTTP, 2, ""),
        G(WWW, "/Docs", HTTP, 2, ""),
        G(WWW, "", HTTP, 2, ""),
        G(WWW, "/docs?x", HTTP, 2, "p=1"),
    }},
    {__LINE__, "order: longer path first, then earlier creation", NOLIMITS, {
        S(WWW, "/", HTTP, 0, "a=1; Path=/", STORED),
        S(WWW, "/", HTTP, 1, "b=2; Path=/x", STORED),
        S(WWW, "/", HTTP, 2, "c=3; Path=/x/y", STORED),
        S(WWW, "/", HTTP, 3, "d=4; Path=/", STORED),
        S(WWW, "/", HTTP, 3, "e=5; Path=/", STORED),
        G(WWW, "/x/y/z", HTTP, 4, "c=3; b=2; a=1; d=4; e=5"),
        G(WWW, "/", HTTP, 4, "a=1; d=4; e=5"),
    }},
    {__LINE__, "replacement keeps the creation time", NOLIMITS, {
        S(WWW, "/", HTTP, 0, "a=1", STORED),
        S(WWW, "/", HTTP, 1, "b=2", STORED),
        S(WWW, "/", HTTP, 2, "a=3; Max-Age=100", COOKIE_REPLACED),
        N(2),
        G(WWW, "/", HTTP, 3, "a=3; b=2"),
        S(WWW, "/", HTTP, 4, "b=4; Path=/", COOKIE_REPLACED),
        G(WWW, "/", HTTP, 5, "a=3; b=4"),
    }},
    {__LINE__, "identity is name, domain, host-only and path", NOLIMITS, {
        S(WWW, "/", HTTP, 0, "a=1", STORED),
        S(WWW, "/", HTTP, 1, "a=2; Domain=www.example.com", STORED),
        S(WWW, "/", HTTP, 2, "a=3; Path=/x", STORED),
        S(WWW, "/", HTTP, 3, "A=4", STORED),
        N(4),
        G(WWW, "/x", HTTP, 4, "a=3; a=1; a=2; A=4"),
        G("m.www.example.com", "/", HTTP, 4, "a=2"),
        S(WWW, "/", HTTP, 5, "a=5; Domain=WWW.example.com", COOKIE_REPLACED),
        N(4),
    }},
    {__LINE__, "expiry by Max-Age, injected clock", NOLIMITS, {
        S(WWW, "/", HTTP, 0, "a=1; Max-Age=10", STORED),
        S(WWW, "/", HTTP, 0, "s=2", STORED),
        G(WWW, "/", HTTP, 9, "a=1; s=2"),
        G(WWW, "/", HTTP, 10, "s=2"),
        N(1),
    }},
    {__LINE__, "expiry by Expires", NOLIMITS, {
        S(WWW, "/", HTTP, 0, "a=1; Expires=Mon, 01 Jan 2024 12:00:00 GMT", STORED),
        G(WWW, "/", HTTP, 4110399, "a=1"),
        G(WWW, "/", HTTP, 4110400, ""),
        N(0),
    }},
    {__LINE__, "an expired Set-Cookie deletes only its exact match", NOLIMITS, {
        S(WWW, "/", HTTP, 0, "a=1", STORED),
        S(WWW, "/", HTTP, 0, "a=1; Path=/x", STORED),
        S(WWW, "/", HTTP, 1, "a=; Max-Age=0; Path=/other", EXPIRED),
        N(2),
        S(WWW, "/", HTTP, 1, "a=; Max-Age=0; Domain=example.com", EXPIRED),
        N(2),
        S(WWW, "/", HTTP, 2, "a=; Expires=Thu, 01 Jan 1970 00:00:00 GMT", EXPIRED),
        N(1),
        G(WWW, "/x", HTTP, 3, "a=1"),
    }},
    {__LINE__, "Secure cookies are not sent over http", NOLIMITS, {
        S(WWW, "/", HTTPS, 0, "s=1; Secure", STORED),
        S(WWW, "/", HTTPS, 0, "p=2", STORED),
        G(WWW, "/", HTTP, 1, "p=2"),
        G(WWW, "/", HTTPS, 1, "s=1; p=2"),
    }},
    {__LINE__, "http cannot shadow or delete a Secure cookie", NOLIMITS, {
        S(WWW, "/", HTTPS, 0, "s=1; Secure", STORED),
        S(WWW, "/", HTTP, 1, "s=2", IGNORED),
        S(WWW, "/", HTTP, 1, "s=2; Path=/x", IGNORED),
        S("sub.www.example.com", "/", HTTP, 1, "s=2", IGNORED),
        S(WWW, "/", HTTP, 1, "s=2; Domain=example.com", IGNORED),
        S(WWW, "/", HTTP, 1, "s=; Max-Age=0", IGNORED),
        S(WWW, "/", HTTP, 1, "t=1", STORED),
        S("other.example.com", "/", HTTP, 1, "s=3", STORED),
        S(WWW, "/", HTTPS, 2, "s=4", COOKIE_REPLACED),
        G(WWW, "/", HTTPS, 3, "s=4; t=1"),
    }},
    {__LINE__, "http may set a same-named cookie on a path the Secure one does not cover", NOLIMITS, {
        S(WWW, "/", HTTPS, 0, "s=1; Secure; Path=/x", STORED),
        S(WWW, "/", HTTP, 1, "s=2; Path=/", STORED),
        G(WWW, "/x", HTTPS, 2, "s=1; s=2"),
        G(WWW, "/x", HTTP, 2, "s=2"),
    }},
    {__LINE__, "IP hosts", NOLIMITS, {
        S("10.0.0.1", "/", HTTP, 0, "a=1", STORED),
        S("10.0.0.1", "/", HTTP, 0, "b=2; Domain=10.0.0.1", STORED),
        S("10.0.0.1", "/", HTTP, 0, "c=3; Domain=0.0.1", IGNORED),
        G("10.0.0.1", "/", HTTP, 1, "a=1; b=2"),
        G("x.10.0.0.1", "/", HTTP, 1, ""),
        G("110.0.0.1", "/", HTTP, 1, ""),
    }},
    {__LINE__, "IPv6 with and without brackets", NOLIMITS, {
        S("[::1]", "/", HTTP, 0, "a=1", STORED),
        G("::1", "/", HTTP, 1, "a=1"),
        G("[::1]", "/", HTTP, 1, "a=1"),
        G("[::2]", "/", HTTP, 1, ""),
    }},
    {__LINE__, "nameless and empty-valued cookies", NOLIMITS, {
        S(WWW, "/", HTTP, 0, "abc", STORED),
        S(WWW, "/", HTTP, 1, "x=", STORED),
        S(WWW, "/", HTTP, 2, "=abc", COOKIE_REPLACED),
        G(WWW, "/", HTTP, 3, "abc; x="),
    }},
    {__LINE__, "clear_session and purge", NOLIMITS, {
        S(WWW, "/", HTTP, 0, "s=1", STORED),
        S(WWW, "/", HTTP, 0, "p=1; Max-Age=100", STORED),
        S(WWW, "/", HTTP, 0, "q=1; Max-Age=5", STORED),
        {CLEAR_SESSION, NULL, NULL, 0, 0, NULL, 1}, /* drops s */
        G(WWW, "/", HTTP, 1, "p=1; q=1"),
        {PURGE, NULL, NULL, 0, 5, NULL, 1},         /* drops q at T0 + 5 */
        N(1),
        G(WWW, "/", HTTP, 6, "p=1"),
    }},
    {__LINE__, "a browser-like login chain", NOLIMITS, {
        /* POST /login answers with a session cookie and a site-wide preference */
        S("shop.example.com", "/login", HTTPS, 0, "sid=abc123; Path=/; Secure; HttpOnly; SameSite=Lax", STORED),
        S("shop.example.com", "/login", HTTPS, 0, "theme=dark; Max-Age=31536000; Domain=example.com", STORED),
        S("shop.example.com", "/login", HTTPS, 0, "flash=welcome", STORED), /* default-path "/" */
        /* the next requests carry the session */
        G("shop.example.com", "/account?tab=1", HTTPS, 1, "sid=abc123; theme=dark; flash=welcome"),
        G("static.example.com", "/logo.png", HTTPS, 1, "theme=dark"),
        G("shop.example.com", "/account", HTTP, 1, "theme=dark; flash=welcome"),
        /* POST /logout expires the session the way servers do it */
        S("shop.example.com", "/logout", HTTPS, 2, "sid=deleted; Path=/; Secure; HttpOnly; Expires=Thu, 01 Jan 1970 00:00:01 GMT", EXPIRED),
        S("shop.example.com", "/logout", HTTPS, 2, "flash=; Max-Age=0", EXPIRED),
        G("shop.example.com", "/account", HTTPS, 3, "theme=dark"),
        N(1),
    }},
    {__LINE__, "per-domain limit evicts the least recently used", {4096, 3, 10, CAP400}, {
        S("a.com", "/", HTTP, 0, "a=1; Path=/a", STORED),
        S("a.com", "/", HTTP, 1, "b=1; Path=/b", STORED),
        S("a.com", "/", HTTP, 2, "c=1; Path=/c", STORED),
        G("a.com", "/a", HTTP, 3, "a=1"),
        S("b.com", "/", HTTP, 4, "x=1", STORED),
        S("a.com", "/", HTTP, 5, "d=1; Path=/", STORED),
        N(4),
        G("a.com", "/b", HTTP, 6, "d=1"),
        G("a.com", "/a", HTTP, 6, "a=1; d=1"),
        G("a.com", "/c", HTTP, 6, "c=1; d=1"),
    }},
    {__LINE__, "expired cookies go before live ones", {4096, 3, 10, CAP400}, {
        S("a.com", "/", HTTP, 0, "y=1", STORED),
        S("a.com", "/", HTTP, 1, "z=1", STORED),
        S("a.com", "/", HTTP, 2, "x=1; Max-Age=1", STORED),
        S("a.com", "/", HTTP, 5, "w=1", STORED),
        N(3),
        G("a.com", "/", HTTP, 6, "y=1; z=1; w=1"),
    }},
    {__LINE__, "per-domain eviction spares Secure cookies", {4096, 3, 10, CAP400}, {
        S("a.com", "/", HTTPS, 0, "s=1; Secure", STORED),
        S("a.com", "/", HTTP, 1, "i=1", STORED),
        S("a.com", "/", HTTP, 2, "j=1", STORED),
        S("a.com", "/", HTTP, 3, "k=1", STORED),
        N(3),
        G("a.com", "/", HTTPS, 4, "s=1; j=1; k=1"),
    }},
    {__LINE__, "a new cookie can be its own victim", {4096, 2, 10, CAP400}, {
        S("a.com", "/", HTTPS, 0, "s=1; Secure", STORED),
        S("a.com", "/", HTTPS, 1, "t=1; Secure", STORED),
        S("a.com", "/", HTTP, 2, "n=1", IGNORED),
        N(2),
        G("a.com", "/", HTTPS, 3, "s=1; t=1"),
    }},
    {__LINE__, "domain cookies count under their own domain", {4096, 2, 10, CAP400}, {
        S("x.a.com", "/", HTTP, 0, "h1=1", STORED),
        S("x.a.com", "/", HTTP, 1, "h2=1", STORED),
        S("x.a.com", "/", HTTP, 2, "d1=1; Domain=a.com", STORED),
        S("x.a.com", "/", HTTP, 3, "d2=1; Domain=a.com", STORED),
        N(4),
        G("x.a.com", "/", HTTP, 4, "h1=1; h2=1; d1=1; d2=1"),
    }},
    {__LINE__, "total limit evicts the least recently used anywhere", {4096, 3, 5, CAP400}, {
        S("a.com", "/", HTTP, 0, "a1=1", STORED),
        S("a.com", "/", HTTP, 1, "a2=1", STORED),
        S("b.com", "/", HTTP, 2, "b1=1", STORED),
        S("b.com", "/", HTTP, 3, "b2=1", STORED),
        S("c.com", "/", HTTP, 4, "c1=1", STORED),
        G("a.com", "/", HTTP, 5, "a1=1; a2=1"),
        S("d.com", "/", HTTP, 6, "d1=1", STORED),
        N(5),
        G("b.com", "/", HTTP, 7, "b2=1"),
        S("d.com", "/", HTTP, 8, "d2=1", STORED),
        N(5),
        G("c.com", "/", HTTP, 9, ""),
    }},
    {__LINE__, "max bytes per cookie counts name and value", {8, 50, 3000, CAP400}, {
        S(WWW, "/", HTTP, 0, "abcd=1234; Path=/", STORED),
        S(WWW, "/", HTTP, 0, "abcd=12345", IGNORED),
        S(WWW, "/", HTTP, 0, "abcde=1234", IGNORED),
        S(WWW, "/", HTTP, 0, "12345678", STORED),
        S(WWW, "/", HTTP, 0, "123456789", IGNORED),
        N(2),
    }},
    {__LINE__, "no lifetime cap when max_age_s is 0", {4096, 50, 3000, 0}, {
        S(WWW, "/", HTTP, 0, "a=1; Max-Age=99999999999999999999", STORED),
        S(WWW, "/", HTTP, 0, "b=1; Expires=Fri, 31 Dec 9999 23:59:59 GMT", STORED),
        G(WWW, "/", HTTP, 100 * 365 * DAY, "a=1; b=1"),
    }},
#undef S
#undef G
#undef N
#undef NOLIMITS
    // clang-format on
};

static void run_scenario(const struct scenario *sc)
{
    cookie_jar jar;
    const cookie_limits *lim = sc->limits.max_total ? &sc->limits : NULL;
    assert_int_equal(cookie_jar_init(&jar, lim), 0);
    for (size_t i = 0; i < sizeof(sc->steps) / sizeof(sc->steps[0]) && sc->steps[i].op != END;
         i++) {
        const step *s = &sc->steps[i];
        int64_t now = T0 + s->at;
        char out[1024];
        size_t n = 99;
        int r;
        switch (s->op) {
        case SET:
            r = cookie_jar_set(&jar, s->text, strlen(s->text), s->host, strlen(s->host), s->path,
                               strlen(s->path), s->secure, now);
            if (r != s->want)
                fail_msg("line %d (%s), step %zu: set \"%s\" gave %d, want %d\n  jar: %s", sc->line,
                         sc->name, i, s->text, r, s->want, dump(&jar, now));
            break;
        case GET:
            r = cookie_jar_header(&jar, s->host, strlen(s->host), s->path, strlen(s->path),
                                  s->secure, now, out, sizeof(out), &n);
            if (r != 0 || n != strlen(out) || strcmp(out, s->text) != 0)
                fail_msg("line %d (%s), step %zu: %s%s gave %d \"%s\", want \"%s\"\n  jar: %s",
                         sc->line, sc->name, i, s->host, s->path, r, out, s->text, dump(&jar, now));
            break;
        case COUNT:
            if (cookie_jar_count(&jar) != (size_t) s->want)
                fail_msg("line %d (%s), step %zu: %zu cookies, want %d\n  jar: %s", sc->line,
                         sc->name, i, cookie_jar_count(&jar), s->want, dump(&jar, now));
            break;
        case CLEAR_SESSION:
            assert_int_equal(cookie_jar_clear_session(&jar), (size_t) s->want);
            break;
        case PURGE: assert_int_equal(cookie_jar_purge_expired(&jar, now), (size_t) s->want); break;
        default: fail();
        }
    }
    cookie_jar_free(&jar);
}

static void test_scenarios(void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
        run_scenario(&scenarios[i]);
}

/* ---- what a table cannot say ----------------------------------------------------------- */

static int set_str(cookie_jar *jar, const char *sc, const char *host, const char *path, int secure,
                   int64_t now)
{
    return cookie_jar_set(jar, sc, strlen(sc), host, strlen(host), path, strlen(path), secure, now);
}

/* 4096 bytes of name and value pass, 4097 do not (defaults). */
static void test_size_limit_default(void **state)
{
    (void) state;
    cookie_jar jar;
    assert_int_equal(cookie_jar_init(&jar, NULL), 0);
    char *buf = malloc(5000);
    assert_non_null(buf);
    memset(buf, 'v', 5000);
    memcpy(buf, "n=", 2); /* name 1 + value len-2 */
    assert_int_equal(cookie_jar_set(&jar, buf, 4097, "h.com", 5, "/", 1, 0, T0), COOKIE_STORED);
    assert_int_equal(cookie_jar_set(&jar, buf, 4098, "h.com", 5, "/", 1, 0, T0), COOKIE_IGNORED);
    assert_int_equal(cookie_jar_count(&jar), 1);
    free(buf);
    cookie_jar_free(&jar);
}

/* An attribute value over 1024 bytes is ignored (bis §5.6), not the cookie. */
static void test_long_attribute_ignored(void **state)
{
    (void) state;
    cookie_jar jar;
    assert_int_equal(cookie_jar_init(&jar, NULL), 0);
    char sc[2048];
    int n = snprintf(sc, sizeof(sc), "a=1; Path=/%01100d; Max-Age=60", 0);
    assert_true(n > 0 && (size_t) n < sizeof(sc));
    assert_int_equal(cookie_jar_set(&jar, sc, (size_t) n, "h.com", 5, "/x/y", 4, 0, T0),
                     COOKIE_STORED);
    assert_string_equal(dump(&jar, T0), "a=1 host:h.com path:/x exp:+60");
    cookie_jar_free(&jar);

    /* exactly 1024 bytes still count */
    assert_int_equal(cookie_jar_init(&jar, NULL), 0);
    n = snprintf(sc, sizeof(sc), "a=1; Path=/%01023d", 0);
    assert_int_equal(cookie_jar_set(&jar, sc, (size_t) n, "h.com", 5, "/", 1, 0, T0),
                     COOKIE_STORED);
    assert_int_equal(cookie_jar_at(&jar, 0)->path_len, 1024);
    cookie_jar_free(&jar);
}

/* The header is written whole or not at all; measuring marks nothing. */
static void test_header_buffer(void **state)
{
    (void) state;
    cookie_jar jar;
    size_t n = 99;
    assert_int_equal(cookie_jar_init(&jar, NULL), 0);
    assert_int_equal(cookie_jar_header(&jar, "h.com", 5, "/", 1, 0, T0, NULL, 0, &n), 0);
    assert_int_equal(n, 0); /* empty jar: no header */
    assert_int_equal(set_str(&jar, "a=1", "h.com", "/", 0, T0), COOKIE_STORED);
    assert_int_equal(set_str(&jar, "bb=22", "h.com", "/", 0, T0), COOKIE_STORED);
    const size_t want = strlen("a=1; bb=22");

    assert_int_equal(cookie_jar_header(&jar, "h.com", 5, "/", 1, 0, T0 + 5, NULL, 0, &n),
                     FERRY_ENOBUFS);
    assert_int_equal(n, want);
    char out[32];
    memset(out, '#', sizeof(out));
    assert_int_equal(cookie_jar_header(&jar, "h.com", 5, "/", 1, 0, T0 + 5, out, want, &n),
                     FERRY_ENOBUFS); /* no room for the NUL */
    assert_int_equal(n, want);
    assert_int_equal(out[0], '#');
    for (size_t i = 0; i < cookie_jar_count(&jar); i++)
        assert_int_equal(cookie_jar_at(&jar, i)->last_access_s, T0);

    assert_int_equal(cookie_jar_header(&jar, "h.com", 5, "/", 1, 0, T0 + 5, out, want + 1, &n), 0);
    assert_int_equal(n, want);
    assert_string_equal(out, "a=1; bb=22");
    for (size_t i = 0; i < cookie_jar_count(&jar); i++)
        assert_int_equal(cookie_jar_at(&jar, i)->last_access_s, T0 + 5);
    cookie_jar_free(&jar);
}

static void test_bad_arguments(void **state)
{
    (void) state;
    cookie_jar jar;
    size_t n;
    char out[8];
    cookie_limits lim = COOKIE_LIMITS_DEFAULT;
    assert_int_equal(cookie_jar_init(NULL, NULL), FERRY_EINVAL);
    lim.max_total = 0;
    assert_int_equal(cookie_jar_init(&jar, &lim), FERRY_EINVAL);
    lim = (cookie_limits) COOKIE_LIMITS_DEFAULT;
    lim.max_per_domain = lim.max_total + 1;
    assert_int_equal(cookie_jar_init(&jar, &lim), FERRY_EINVAL);
    lim = (cookie_limits) COOKIE_LIMITS_DEFAULT;
    lim.max_age_s = -1;
    assert_int_equal(cookie_jar_init(&jar, &lim), FERRY_EINVAL);
    lim = (cookie_limits) COOKIE_LIMITS_DEFAULT;
    lim.max_cookie_bytes = 0;
    assert_int_equal(cookie_jar_init(&jar, &lim), FERRY_EINVAL);

    assert_int_equal(cookie_jar_init(&jar, NULL), 0);
    assert_int_equal(cookie_jar_set(NULL, "a=1", 3, "h", 1, "/", 1, 0, T0), FERRY_EINVAL);
    assert_int_equal(cookie_jar_set(&jar, "a=1", 3, NULL, 0, "/", 1, 0, T0), FERRY_EINVAL);
    assert_int_equal(cookie_jar_set(&jar, "a=1", 3, "", 0, "/", 1, 0, T0), FERRY_EINVAL);
    assert_int_equal(cookie_jar_set(&jar, "a=1", 3, "[]", 2, "/", 1, 0, T0), FERRY_EINVAL);
    assert_int_equal(cookie_jar_set(&jar, NULL, 3, "h", 1, "/", 1, 0, T0), FERRY_EINVAL);
    assert_int_equal(cookie_jar_set(&jar, "a=1", 3, "h\0x", 3, "/", 1, 0, T0), FERRY_EINVAL);
    assert_int_equal(cookie_jar_set(&jar, "a=1", 3, "h x", 3, "/", 1, 0, T0), FERRY_EINVAL);
    assert_int_equal(cookie_jar_set(&jar, "a=1", 3, "h", 1, "/a\r\n", 4, 0, T0), FERRY_EINVAL);
    assert_int_equal(cookie_jar_header(&jar, "h\tx", 3, "/", 1, 0, T0, out, sizeof(out), &n),
                     FERRY_EINVAL);
    assert_int_equal(cookie_jar_header(&jar, "h", 1, "/ x", 3, 0, T0, out, sizeof(out), &n),
                     FERRY_EINVAL);
    assert_int_equal(cookie_jar_count(&jar), 0);
    assert_int_equal(cookie_jar_set(&jar, NULL, 0, "h", 1, "/", 1, 0, T0), COOKIE_IGNORED);
    assert_int_equal(cookie_jar_set(&jar, "a=1", 3, "h", 1, NULL, 0, 0, T0), COOKIE_STORED);
    assert_int_equal(cookie_jar_header(&jar, "h", 1, NULL, 0, 0, T0, out, sizeof(out), &n), 0);
    assert_string_equal(out, "a=1");
    assert_int_equal(cookie_jar_header(NULL, "h", 1, "/", 1, 0, T0, out, sizeof(out), &n),
                     FERRY_EINVAL);
    assert_int_equal(cookie_jar_header(&jar, "", 0, "/", 1, 0, T0, out, sizeof(out), &n),
                     FERRY_EINVAL);
    assert_int_equal(cookie_jar_header(&jar, "h", 1, "/", 1, 0, T0, NULL, 4, &n), FERRY_EINVAL);
    assert_int_equal(cookie_jar_header(&jar, "h", 1, "/", 1, 0, T0, out, sizeof(out), NULL),
                     FERRY_EINVAL);
    assert_null(cookie_jar_at(&jar, 1));
    assert_int_equal(cookie_parse_date(NULL, 0, &(int64_t){0}), FERRY_EINVAL);

    /* free empties the jar, which stays usable */
    cookie_jar_free(&jar);
    assert_int_equal(cookie_jar_count(&jar), 0);
    assert_int_equal(cookie_jar_set(&jar, "b=2", 3, "h", 1, "/", 1, 0, T0), COOKIE_STORED);
    cookie_jar_free(&jar);
    cookie_jar_free(NULL);
    assert_int_equal(cookie_jar_count(NULL), 0);
}

/* A full jar at the default limits: 4000 cookies over 70 hosts leave
 * 3000, at most 50 per domain, and a header for one host lists its 50. */
static void test_default_limits_hold(void **state)
{
    (void) state;
    cookie_jar jar;
    assert_int_equal(cookie_jar_init(&jar, NULL), 0);
    char sc[32], host[32];
    for (int i = 0; i < 4000; i++) {
        int hn = snprintf(host, sizeof(host), "h%d.example", i % 70);
        int sn = snprintf(sc, sizeof(sc), "c%d=%d", i, i);
        assert_int_equal(
            cookie_jar_set(&jar, sc, (size_t) sn, host, (size_t) hn, "/", 1, 0, T0 + i),
            COOKIE_STORED);
        assert_true(cookie_jar_count(&jar) <= 3000);
    }
    assert_int_equal(cookie_jar_count(&jar), 3000);
    char *out = malloc(1 << 16);
    assert_non_null(out);
    size_t n;
    assert_int_equal(
        cookie_jar_header(&jar, "h3.example", 10, "/", 1, 0, T0 + 5000, out, 1 << 16, &n), 0);
    size_t semis = 0;
    for (size_t i = 0; i < n; i++)
        semis += out[i] == ';';
    assert_true(semis + 1 <= 50);
    free(out);
    cookie_jar_free(&jar);
}

/* Public suffixes: the built-in rule always knows single labels; libpsl,
 * when linked, also knows multi-label suffixes. */
static void test_public_suffix(void **state)
{
    (void) state;
    assert_true(cookie_is_public_suffix("com", 3));
    assert_true(cookie_is_public_suffix("localhost", 9));
    assert_false(cookie_is_public_suffix("example.com", 11));
    cookie_jar jar;
    assert_int_equal(cookie_jar_init(&jar, NULL), 0);
    int r = set_str(&jar, "a=1; Domain=co.uk", "www.shop.co.uk", "/", 0, T0);
    if (strcmp(cookie_psl_backend(), "libpsl") == 0) {
        assert_true(cookie_is_public_suffix("co.uk", 5));
        assert_true(cookie_is_public_suffix("github.io", 9));
        assert_false(cookie_is_public_suffix("shop.co.uk", 10));
        assert_int_equal(r, COOKIE_IGNORED);
        assert_int_equal(set_str(&jar, "a=1; Domain=github.io", "x.github.io", "/", 0, T0),
                         COOKIE_IGNORED);
        /* a suffix that is the host itself makes a host-only cookie */
        assert_int_equal(set_str(&jar, "b=1; Domain=github.io", "github.io", "/", 0, T0),
                         COOKIE_STORED);
        assert_string_equal(dump(&jar, T0), "b=1 host:github.io path:/ exp:session");
    } else {
        assert_string_equal(cookie_psl_backend(), "builtin");
        assert_false(cookie_is_public_suffix("co.uk", 5)); /* the known gap */
        assert_int_equal(r, COOKIE_STORED);
    }
    assert_int_equal(set_str(&jar, "c=1; Domain=shop.co.uk", "www.shop.co.uk", "/", 0, T0),
                     COOKIE_STORED);
    cookie_jar_free(&jar);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_set_cookie_table),
        cmocka_unit_test(test_scenarios),
        cmocka_unit_test(test_size_limit_default),
        cmocka_unit_test(test_long_attribute_ignored),
        cmocka_unit_test(test_header_buffer),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_default_limits_hold),
        cmocka_unit_test(test_public_suffix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
