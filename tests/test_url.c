/* test_url.c — URL parsing against a table (input → pieces or error), the
 * invariants every accepted URL keeps (slices inside the input, writers'
 * sizes, reassembly, a request line ferry's own parser accepts), form
 * encoding vectors and percent-decoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ferry.h"
#include "http1/parse.h"
#include "util/url.h"

/* ---- the table -------------------------------------------------------------------
 * `expect` is "ERR <name>" or the dump of the parsed URL:
 *   SCHEME KIND host=HOST[ zone=ZONE] port=N[ given] target=PATHQUERY key=KEY Host=HOSTHDR
 * KIND is name, v4 or v6; SCHEME is as written; KEY is url_origin_key(), HOSTHDR
 * url_host_header(). Inputs may hold NUL bytes (the length is sizeof - 1). */
struct ucase {
    const char *in;
    size_t len;
    const char *expect;
    int line;
};
#define U(in, expect) {in, sizeof(in) - 1, expect, __LINE__}
/* A name at default port 80: most valid cases. */
#define NAME80(scheme, host, target)                                                               \
    scheme " name host=" host " port=80 target=" target " key=http://" host ":80 Host=" host

#define S10  "abcdefghij"
#define L61  S10 S10 S10 S10 S10 S10 "a"
#define L63  S10 S10 S10 S10 S10 S10 "abc"
#define H253 L63 "." L63 "." L63 "." L61

static const struct ucase cases[] = {
    /* ---- schemes, default ports, empty path ---- */
    U("http://example.com", NAME80("http", "example.com", "/")),
    U("http://example.com/", NAME80("http", "example.com", "/")),
    U("https://example.com/", "https name host=example.com port=443 target=/ key=https://example.com:443 Host=example.com"),
    U("HTTP://Example.COM/Path", "HTTP name host=Example.COM port=80 target=/Path key=http://example.com:80 Host=Example.COM"),
    U("HtTpS://EXAMPLE.com", "HtTpS name host=EXAMPLE.com port=443 target=/ key=https://example.com:443 Host=EXAMPLE.com"),
    U("HTTPS://A", "HTTPS name host=A port=443 target=/ key=https://a:443 Host=A"),
    /* ---- ports ---- */
    U("http://example.com:8080/a", "http name host=example.com port=8080 given target=/a key=http://example.com:8080 Host=example.com:8080"),
    U("http://example.com:80/", "http name host=example.com port=80 given target=/ key=http://example.com:80 Host=example.com"),
    U("https://example.com:443/", "https name host=example.com port=443 given target=/ key=https://example.com:443 Host=example.com"),
    U("https://example.com:80/", "https name host=example.com port=80 given target=/ key=https://example.com:80 Host=example.com:80"),
    U("http://example.com:443/", "http name host=example.com port=443 given target=/ key=http://example.com:443 Host=example.com:443"),
    U("http://example.com:/x", NAME80("http", "example.com", "/x")),
    U("http://example.com:", NAME80("http", "example.com", "/")),
    U("http://example.com:0080/", "http name host=example.com port=80 given target=/ key=http://example.com:80 Host=example.com"),
    U("http://example.com:00000000000008080", "http name host=example.com port=8080 given target=/ key=http://example.com:8080 Host=example.com:8080"),
    U("http://example.com:65535/", "http name host=example.com port=65535 given target=/ key=http://example.com:65535 Host=example.com:65535"),
    U("http://example.com:1", "http name host=example.com port=1 given target=/ key=http://example.com:1 Host=example.com:1"),
    U("http://localhost:3000/api", "http name host=localhost port=3000 given target=/api key=http://localhost:3000 Host=localhost:3000"),
    U("http://example.com:8080?q", "http name host=example.com port=8080 given target=/?q key=http://example.com:8080 Host=example.com:8080"),
    /* ---- query without path, empty query, fragments ---- */
    U("http://example.com?q=1", NAME80("http", "example.com", "/?q=1")),
    U("http://example.com/?q=1", NAME80("http", "example.com", "/?q=1")),
    U("http://example.com/p?", NAME80("http", "example.com", "/p?")),
    U("http://example.com?", NAME80("http", "example.com", "/?")),
    U("http://example.com??", NAME80("http", "example.com", "/??")),
    U("http://example.com#frag", NAME80("http", "example.com", "/")),
    U("http://example.com/p#frag", NAME80("http", "example.com", "/p")),
    U("http://example.com/p?q#f", NAME80("http", "example.com", "/p?q")),
    U("http://example.com/p?q#f?g/h", NAME80("http", "example.com", "/p?q")),
    U("http://example.com/#/route#anchor", NAME80("http", "example.com", "/")),
    U("http://example.com#", NAME80("http", "example.com", "/")),
    U("http://example.com?#", NAME80("http", "example.com", "/?")),
    U("http://example.com/#%20ok", NAME80("http", "example.com", "/")),
    /* ---- paths and queries are sent as written ---- */
    U("http://example.com/a%20b", NAME80("http", "example.com", "/a%20b")),
    U("http://example.com/%E2%82%AC?x=%c3%a9", NAME80("http", "example.com", "/%E2%82%AC?x=%c3%a9")),
    U("http://example.com/a/../b/./c", NAME80("http", "example.com", "/a/../b/./c")),
    U("http://example.com//double//slash/", NAME80("http", "example.com", "//double//slash/")),
    U("http://example.com/p;v,x=1!$&'()*+,;=:@", NAME80("http", "example.com", "/p;v,x=1!$&'()*+,;=:@")),
    U("http://example.com/a?b=c&d=e/f?g:h@i", NAME80("http", "example.com", "/a?b=c&d=e/f?g:h@i")),
    U("http://example.com/~user/_x-y.z", NAME80("http", "example.com", "/~user/_x-y.z")),
    U("http://example.com/a[0]|b^c", NAME80("http", "example.com", "/a[0]|b^c")),
    U("http://example.com/?ids[]=1&ids[]=2", NAME80("http", "example.com", "/?ids[]=1&ids[]=2")),
    U("http://example.com/%2F%2e%2E", NAME80("http", "example.com", "/%2F%2e%2E")),
    U("http://example.com/@x", NAME80("http", "example.com", "/@x")),
    U("http://example.com/a:b", NAME80("http", "example.com", "/a:b")),
    U("http://example.com/%00", NAME80("http", "example.com", "/%00")),
    /* ---- IPv4 literals ---- */
    U("http://127.0.0.1/", "http v4 host=127.0.0.1 port=80 target=/ key=http://127.0.0.1:80 Host=127.0.0.1"),
    U("http://127.0.0.1:8080/x", "http v4 host=127.0.0.1 port=8080 given target=/x key=http://127.0.0.1:8080 Host=127.0.0.1:8080"),
    U("http://0.0.0.0", "http v4 host=0.0.0.0 port=80 target=/ key=http://0.0.0.0:80 Host=0.0.0.0"),
    U("https://255.255.255.255/", "https v4 host=255.255.255.255 port=443 target=/ key=https://255.255.255.255:443 Host=255.255.255.255"),
    U("http://10.0.0.1?x", "http v4 host=10.0.0.1 port=80 target=/?x key=http://10.0.0.1:80 Host=10.0.0.1"),
    /* ---- IPv6 literals ---- */
    U("http://[::1]/", "http v6 host=::1 port=80 target=/ key=http://[::1]:80 Host=[::1]"),
    U("http://[::1]:8080/x", "http v6 host=::1 port=8080 given target=/x key=http://[::1]:8080 Host=[::1]:8080"),
    U("https://[::1]", "https v6 host=::1 port=443 target=/ key=https://[::1]:443 Host=[::1]"),
    U("https://[::1]:8443", "https v6 host=::1 port=8443 given target=/ key=https://[::1]:8443 Host=[::1]:8443"),
    U("http://[::1]:/", "http v6 host=::1 port=80 target=/ key=http://[::1]:80 Host=[::1]"),
    U("http://[::1]:80", "http v6 host=::1 port=80 given target=/ key=http://[::1]:80 Host=[::1]"),
    U("http://[2001:DB8::A]/", "http v6 host=2001:DB8::A port=80 target=/ key=http://[2001:db8::a]:80 Host=[2001:DB8::A]"),
    U("http://[2001:0db8:0000:0000:0000:0000:0000:0001]/", "http v6 host=2001:0db8:0000:0000:0000:0000:0000:0001 port=80 target=/ key=http://[2001:db8::1]:80 Host=[2001:0db8:0000:0000:0000:0000:0000:0001]"),
    U("http://[::ffff:192.0.2.1]/", "http v6 host=::ffff:192.0.2.1 port=80 target=/ key=http://[::ffff:192.0.2.1]:80 Host=[::ffff:192.0.2.1]"),
    U("http://[1:2:3:4:5:6:7:8]", "http v6 host=1:2:3:4:5:6:7:8 port=80 target=/ key=http://[1:2:3:4:5:6:7:8]:80 Host=[1:2:3:4:5:6:7:8]"),
    U("http://[::]", "http v6 host=:: port=80 target=/ key=http://[::]:80 Host=[::]"),
    U("http://[::1]?q", "http v6 host=::1 port=80 target=/?q key=http://[::1]:80 Host=[::1]"),
    U("http://[::1]#f", "http v6 host=::1 port=80 target=/ key=http://[::1]:80 Host=[::1]"),
    U("http://[fe80::1%25eth0]/", "http v6 host=fe80::1 zone=eth0 port=80 target=/ key=http://[fe80::1%25eth0]:80 Host=[fe80::1]"),
    U("http://[FE80::1%25En0]:8080", "http v6 host=FE80::1 zone=En0 port=8080 given target=/ key=http://[fe80::1%25En0]:8080 Host=[FE80::1]:8080"),
    /* ---- registered names ---- */
    U("http://a/", NAME80("http", "a", "/")),
    U("http://example.com./", NAME80("http", "example.com.", "/")),
    U("http://my_service:8080/", "http name host=my_service port=8080 given target=/ key=http://my_service:8080 Host=my_service:8080"),
    U("http://xn--nxasmq6b.com/", NAME80("http", "xn--nxasmq6b.com", "/")),
    U("http://123.example/", NAME80("http", "123.example", "/")),
    U("http://1.2.3.4a/", NAME80("http", "1.2.3.4a", "/")),
    U("http://0x7g/", NAME80("http", "0x7g", "/")),
    U("http://a-b.c-d/", NAME80("http", "a-b.c-d", "/")),
    U("http://" L63 "/", NAME80("http", L63, "/")),
    U("http://" H253 "/", NAME80("http", H253, "/")),
    U("http://" H253 "./", NAME80("http", H253 ".", "/")),

    /* ---- bytes that never belong in a URL: EINVAL anywhere ---- */
    U("", "ERR EINVAL"),
    U("http://exa mple.com/", "ERR EINVAL"),
    U("http://example.com/a b", "ERR EINVAL"),
    U(" http://example.com/", "ERR EINVAL"),
    U("http://example.com/ ", "ERR EINVAL"),
    U("http://example.com/\t", "ERR EINVAL"),
    U("http://example.com/\r\nX: y", "ERR EINVAL"),
    U("http://example.com/\x7f", "ERR EINVAL"),
    U("http://example.com/\0x", "ERR EINVAL"),
    U("http://example.com/caf\xc3\xa9", "ERR EINVAL"),
    U("http://ex\xc3\xa4mple.com/", "ERR EINVAL"),
    U("http://example.com/#caf\xc3\xa9", "ERR EINVAL"),
    U("http://example.com\\@evil.com/", "ERR EINVAL"),
    U("http:\\\\example.com\\", "ERR EINVAL"),
    U("http://example.com/a\\b", "ERR EINVAL"),
    U("http://example.com/#a b", "ERR EINVAL"),
    U("http://h: 80/", "ERR EINVAL"),
    /* ---- not an absolute http(s) URL: EINVAL ---- */
    U("example.com", "ERR EINVAL"),
    U("example.com/path", "ERR EINVAL"),
    U("/path", "ERR EINVAL"),
    U("//example.com/", "ERR EINVAL"),
    U("http:example.com", "ERR EINVAL"),
    U("http:/example.com", "ERR EINVAL"),
    U("http//example.com", "ERR EINVAL"),
    U("://example.com", "ERR EINVAL"),
    U("1http://x/", "ERR EINVAL"),
    U("localhost:8080", "ERR EINVAL"),
    U("mailto:a@b.c", "ERR EINVAL"),
    U("http:", "ERR EINVAL"),
    U("http:/", "ERR EINVAL"),
    U("http", "ERR EINVAL"),
    /* ---- bad ports: EINVAL ---- */
    U("http://h:0/", "ERR EINVAL"),
    U("http://h:00/", "ERR EINVAL"),
    U("http://h:65536/", "ERR EINVAL"),
    U("http://h:99999999999999999999/", "ERR EINVAL"),
    U("http://h:8x/", "ERR EINVAL"),
    U("http://h:x8/", "ERR EINVAL"),
    U("http://h:+80/", "ERR EINVAL"),
    U("http://h:-1/", "ERR EINVAL"),
    U("http://h:80:90/", "ERR EINVAL"),
    U("http://h::80/", "ERR EINVAL"),
    U("http://h:8080:/", "ERR EINVAL"),
    U("http://h:0x50/", "ERR EINVAL"),
    U("http://[::1]:http/", "ERR EINVAL"),
    U("http://[::1]:80]/", "ERR EINVAL"),
    /* ---- more than one '@': EINVAL ---- */
    U("http://a@b@c/", "ERR EINVAL"),
    U("http://user:pass@evil.com@good.com/", "ERR EINVAL"),
    /* ---- other schemes and userinfo: ENOTSUP ---- */
    U("ftp://example.com/", "ERR ENOTSUP"),
    U("ws://example.com/", "ERR ENOTSUP"),
    U("file:///etc/passwd", "ERR ENOTSUP"),
    U("httpx://example.com/", "ERR ENOTSUP"),
    U("htt://example.com/", "ERR ENOTSUP"),
    U("http+unix://x/", "ERR ENOTSUP"),
    U("http://user:pass@example.com/", "ERR ENOTSUP"),
    U("http://user@example.com/", "ERR ENOTSUP"),
    U("http://@example.com/", "ERR ENOTSUP"),
    U("https://:pass@example.com/", "ERR ENOTSUP"),
    U("http://user@[::1]:8080/", "ERR ENOTSUP"),
    /* ---- hosts: EBADHOST ---- */
    U("http:///path", "ERR EBADHOST"),
    U("http://", "ERR EBADHOST"),
    U("http://:80/", "ERR EBADHOST"),
    U("http://?q", "ERR EBADHOST"),
    U("http://#f", "ERR EBADHOST"),
    U("http://::1/", "ERR EBADHOST"),
    U("http://ex%41mple.com/", "ERR EBADHOST"),
    U("http://exa!mple.com/", "ERR EBADHOST"),
    U("http://a,b/", "ERR EBADHOST"),
    U("http://a~b/", "ERR EBADHOST"),
    U("http://a..b/", "ERR EBADHOST"),
    U("http://.a/", "ERR EBADHOST"),
    U("http://./", "ERR EBADHOST"),
    U("http://a../", "ERR EBADHOST"),
    U("http://a[b]/", "ERR EBADHOST"),
    U("http://" L63 "x/", "ERR EBADHOST"),
    U("http://" H253 "b/", "ERR EBADHOST"),
    /* names that read as numbers must be strict dotted quads */
    U("http://127.1/", "ERR EBADHOST"),
    U("http://0x7f.0.0.1/", "ERR EBADHOST"),
    U("http://0X7F000001/", "ERR EBADHOST"),
    U("http://0177.0.0.1/", "ERR EBADHOST"),
    U("http://2130706433/", "ERR EBADHOST"),
    U("http://1.2.3.4./", "ERR EBADHOST"),
    U("http://256.0.0.1/", "ERR EBADHOST"),
    U("http://1.2.3/", "ERR EBADHOST"),
    U("http://1.2.3.4.5/", "ERR EBADHOST"),
    U("http://01.2.3.4/", "ERR EBADHOST"),
    U("http://1.2.3.04/", "ERR EBADHOST"),
    U("http://1.2.3.1000/", "ERR EBADHOST"),
    U("http://a.123/", "ERR EBADHOST"),
    U("http://0x/", "ERR EBADHOST"),
    /* IPv6 */
    U("http://[::1/", "ERR EBADHOST"),
    U("http://[]/", "ERR EBADHOST"),
    U("http://[::1]x/", "ERR EBADHOST"),
    U("http://[::1]]/", "ERR EBADHOST"),
    U("http://[::1][::2]/", "ERR EBADHOST"),
    U("http://[1.2.3.4]/", "ERR EBADHOST"),
    U("http://[v1.fe]/", "ERR EBADHOST"),
    U("http://[::g]/", "ERR EBADHOST"),
    U("http://[1:2:3:4:5:6:7:8:9]/", "ERR EBADHOST"),
    U("http://[12345::1]/", "ERR EBADHOST"),
    U("http://[::ffff:01.2.3.4]/", "ERR EBADHOST"),
    U("http://[0000:0000:0000:0000:0000:0000:0000:0000:0]/", "ERR EBADHOST"),
    U("http://[fe80::1%eth0]/", "ERR EBADHOST"),
    U("http://[fe80::1%25]/", "ERR EBADHOST"),
    U("http://[fe80::1%2]/", "ERR EBADHOST"),
    U("http://[fe80::1%25eth%30]/", "ERR EBADHOST"),
    U("http://[fe80::1%25" L63 "x]/", "ERR EBADHOST"),
    U("http://[fe80::1%25eth0", "ERR EBADHOST"),
    U("http://]/", "ERR EBADHOST"),
    /* ---- path, query, fragment: EBADTARGET ---- */
    U("http://h/%zz", "ERR EBADTARGET"),
    U("http://h/%4", "ERR EBADTARGET"),
    U("http://h/%", "ERR EBADTARGET"),
    U("http://h/%%41", "ERR EBADTARGET"),
    U("http://h/?q=%G0", "ERR EBADTARGET"),
    U("http://h?%", "ERR EBADTARGET"),
    U("http://h/#%x", "ERR EBADTARGET"),
    U("http://h/a\"b", "ERR EBADTARGET"),
    U("http://h/<script>", "ERR EBADTARGET"),
    U("http://h/a{b}", "ERR EBADTARGET"),
    U("http://h/`", "ERR EBADTARGET"),
    U("http://h/?q=\"x\"", "ERR EBADTARGET"),
    U("http://h/?a={1}", "ERR EBADTARGET"),
    U("http://h/#<x>", "ERR EBADTARGET"),
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

/* ---- helpers ---------------------------------------------------------------------- */

static void dump(const url_parts *u, char *out, size_t cap)
{
    char key[URL_ORIGIN_KEY_MAX], hh[URL_HOST_HEADER_MAX], zone[80] = "";
    size_t n;
    assert_int_equal(url_origin_key(u, key, sizeof(key), &n), 0);
    assert_int_equal(strlen(key), n);
    assert_int_equal(url_host_header(u, hh, sizeof(hh), &n), 0);
    assert_int_equal(strlen(hh), n);
    if (u->zone.len)
        snprintf(zone, sizeof(zone), " zone=%.*s", (int) u->zone.len, u->zone.p);
    snprintf(out, cap, "%.*s %s host=%.*s%s port=%u%s target=%.*s%.*s key=%s Host=%s",
             (int) u->scheme.len, u->scheme.p,
             u->is_ipv6   ? "v6"
             : u->is_ipv4 ? "v4"
                          : "name",
             (int) u->host.len, u->host.p, zone, u->port, u->port_given ? " given" : "",
             (int) u->path.len, u->path.p, (int) u->query.len, u->query.p ? u->query.p : "",
             key, hh);
}

static int inside(ferry_str s, const char *base, size_t len)
{
    return s.len == 0 ? s.p == NULL || (s.p >= base && s.p <= base + len)
                      : s.p >= base && s.p + s.len <= base + len;
}

/* The URL rebuilt from its pieces, the port explicit when it was given. */
static size_t reassemble(const url_parts *u, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%.*s://%s%.*s%s%.*s%s", (int) u->scheme.len, u->scheme.p,
                     u->is_ipv6 ? "[" : "", (int) u->host.len, u->host.p,
                     u->zone.len ? "%25" : "", (int) u->zone.len, u->zone.p ? u->zone.p : "",
                     u->is_ipv6 ? "]" : "");
    assert_true(n > 0 && (size_t) n < cap);
    if (u->port_given)
        n += snprintf(out + n, cap - (size_t) n, ":%u", u->port);
    n += snprintf(out + n, cap - (size_t) n, "%.*s%.*s", (int) u->path.len, u->path.p,
                  (int) u->query.len, u->query.p ? u->query.p : "");
    assert_true((size_t) n < cap);
    return (size_t) n;
}

static int str_eq(ferry_str a, ferry_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static void assert_same(const url_parts *a, const url_parts *b)
{
    assert_true(str_eq(a->scheme, b->scheme));
    assert_true(str_eq(a->host, b->host));
    assert_true(str_eq(a->zone, b->zone));
    assert_true(str_eq(a->path, b->path));
    assert_true(str_eq(a->query, b->query));
    assert_true((a->query.p == NULL) == (b->query.p == NULL));
    assert_int_equal(a->port, b->port);
    assert_int_equal(a->https, b->https);
    assert_int_equal(a->port_given, b->port_given);
    assert_int_equal(a->is_ipv4, b->is_ipv4);
    assert_int_equal(a->is_ipv6, b->is_ipv6);
    assert_memory_equal(a->addr, b->addr, sizeof(a->addr));
}

/* What every accepted URL keeps: slices in the input, writers that size
 * themselves, a reassembly that parses the same, and a request head that
 * ferry's own server parser accepts with the same target. */
static void check_accepted(const url_parts *u, const char *in, size_t len, int line)
{
    char buf[1024];
    assert_true(inside(u->scheme, in, len) && inside(u->host, in, len) &&
                inside(u->zone, in, len) && inside(u->query, in, len));
    assert_true(inside(u->path, in, len) || (u->path.len == 1 && u->path.p[0] == '/'));
    assert_true(u->path.len > 0 && u->path.p[0] == '/');
    assert_true(!u->query.p || (u->query.len > 0 && u->query.p[0] == '?'));
    assert_true(u->port > 0 && (u->port_given || u->port == (u->https ? 443 : 80)));

    /* the writers: cap 0 sizes, cap == size is too small, size + 1 fits */
    int (*writers[])(const url_parts *, char *, size_t, size_t *) = {url_origin_key,
                                                                     url_host_header};
    for (size_t w = 0; w < 2; w++) {
        size_t need = 0, got = 0;
        assert_int_equal(writers[w](u, NULL, 0, &need), FERRY_ENOBUFS);
        char *exact = malloc(need + 1);
        assert_non_null(exact);
        assert_int_equal(writers[w](u, exact, need, &got), FERRY_ENOBUFS);
        assert_int_equal(got, need);
        assert_int_equal(writers[w](u, exact, need + 1, &got), 0);
        assert_int_equal(got, need);
        assert_int_equal(exact[need], 0);
        free(exact);
    }

    size_t n = reassemble(u, buf, sizeof(buf));
    url_parts again;
    int r = url_parse(buf, n, &again);
    if (r != 0)
        fail_msg("line %d: reassembled %s does not parse: %s", line, buf, ferry_err_name(r));
    assert_same(u, &again);

    /* GET <target> HTTP/1.1 / Host: <Host> — as the client will send it */
    char head[1024], hh[URL_HOST_HEADER_MAX];
    size_t hn;
    assert_int_equal(url_host_header(u, hh, sizeof(hh), &hn), 0);
    int hl = snprintf(head, sizeof(head), "GET %.*s%.*s HTTP/1.1\r\nHost: %s\r\n\r\n",
                      (int) u->path.len, u->path.p, (int) u->query.len,
                      u->query.p ? u->query.p : "", hh);
    parse_field fields[4];
    parse_head h;
    parse_limits lim = PARSE_LIMITS_DEFAULT;
    parse_head_init(&h, fields);
    r = parse_request(&h, head, (size_t) hl, &lim);
    if (r != hl)
        fail_msg("line %d: ferry's parser refuses %s: %s", line, head, ferry_err_name(r));
    assert_int_equal(h.target_len, u->path.len + u->query.len);
}

/* ---- URL tests --------------------------------------------------------------------- */

static void test_table(void **state)
{
    (void) state;
    int failures = 0;
    assert_true(NCASES >= 80);
    for (size_t i = 0; i < NCASES; i++) {
        const struct ucase *c = &cases[i];
        /* an exact-size copy: ASan sees any read past the end */
        char *in = malloc(c->len ? c->len : 1);
        assert_non_null(in);
        memcpy(in, c->in, c->len);
        url_parts u;
        char got[2048];
        int r = url_parse(in, c->len, &u);
        if (r < 0)
            snprintf(got, sizeof(got), "ERR %s", ferry_err_name(r));
        else
            dump(&u, got, sizeof(got));
        if (strcmp(got, c->expect) != 0) {
            print_error("line %d:\n  want %s\n  got  %s\n", c->line, c->expect, got);
            failures++;
        } else if (r == 0) {
            check_accepted(&u, in, c->len, c->line);
        }
        free(in);
    }
    if (failures)
        fail_msg("%d of %zu URL cases failed", failures, NCASES);
}

/* Case, default ports and IPv6 spelling do not split the pool. */
static void test_origin_key_equivalence(void **state)
{
    (void) state;
    static const char *const same[][2] = {
        {"http://example.com/", "HTTP://EXAMPLE.COM:80/x?y"},
        {"https://Example.com", "https://example.COM:443#f"},
        {"http://[::1]/", "http://[0:0:0:0:0:0:0:1]:80"},
        {"http://[2001:DB8::1]", "http://[2001:0db8:0:0::0001]:/"},
    };
    static const char *const differ[][2] = {
        {"http://example.com/", "https://example.com/"},
        {"http://example.com/", "http://example.com:8080/"},
        {"http://example.com/", "http://example.com./"},
        {"http://[fe80::1%25eth0]/", "http://[fe80::1%25eth1]/"},
        {"http://[fe80::1%25eth0]/", "http://[fe80::1%25ETH0]/"},
        {"http://127.0.0.1/", "http://[::ffff:127.0.0.1]/"},
    };
    for (int pass = 0; pass < 2; pass++) {
        const char *const(*t)[2] = pass ? differ : same;
        size_t n = pass ? sizeof(differ) / sizeof(differ[0]) : sizeof(same) / sizeof(same[0]);
        for (size_t i = 0; i < n; i++) {
            char k0[URL_ORIGIN_KEY_MAX], k1[URL_ORIGIN_KEY_MAX];
            url_parts a, b;
            size_t w;
            assert_int_equal(url_parse(t[i][0], strlen(t[i][0]), &a), 0);
            assert_int_equal(url_parse(t[i][1], strlen(t[i][1]), &b), 0);
            assert_int_equal(url_origin_key(&a, k0, sizeof(k0), &w), 0);
            assert_int_equal(url_origin_key(&b, k1, sizeof(k1), &w), 0);
            if ((strcmp(k0, k1) == 0) != !pass)
                fail_msg("%s and %s: keys %s and %s", t[i][0], t[i][1], k0, k1);
        }
    }
}

/* The longest host and zone fit the advertised buffer sizes exactly enough. */
static void test_writer_maxima(void **state)
{
    (void) state;
    static const char *const longest[] = {
        "https://" H253 ".:65535/",
        "https://[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255%25" L63 "]:65535",
        "https://[0000:0000:0000:0000:0000:0000:0000:0000]:12345",
    };
    for (size_t i = 0; i < sizeof(longest) / sizeof(longest[0]); i++) {
        url_parts u;
        char key[URL_ORIGIN_KEY_MAX], hh[URL_HOST_HEADER_MAX];
        size_t n;
        assert_int_equal(url_parse(longest[i], strlen(longest[i]), &u), 0);
        assert_int_equal(url_origin_key(&u, key, sizeof(key), &n), 0);
        assert_int_equal(url_host_header(&u, hh, sizeof(hh), &n), 0);
    }
    url_parts u;
    size_t n;
    assert_int_equal(url_parse(longest[0], strlen(longest[0]), &u), 0);
    assert_int_equal(u.host.len, URL_HOST_MAX);
    assert_int_equal(url_origin_key(&u, NULL, 0, &n), FERRY_ENOBUFS);
    assert_int_equal(n + 1, URL_ORIGIN_KEY_MAX);
    assert_int_equal(url_host_header(&u, NULL, 0, &n), FERRY_ENOBUFS);
    assert_int_equal(n + 1, URL_HOST_HEADER_MAX);
}

static void test_parsed_addresses(void **state)
{
    (void) state;
    url_parts u;
    assert_int_equal(url_parse("http://192.0.2.10:81/", 21, &u), 0);
    static const uint8_t v4[16] = {192, 0, 2, 10};
    assert_memory_equal(u.addr, v4, 16);
    assert_int_equal(url_parse("http://[2001:db8::ff01]/", 24, &u), 0);
    static const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
                                   0,    0,    0,    0,    0, 0, 0xff, 0x01};
    assert_memory_equal(u.addr, v6, 16);
    assert_int_equal(url_parse("http://example.com/", 19, &u), 0);
    static const uint8_t zero[16] = {0};
    assert_memory_equal(u.addr, zero, 16);
    /* the path of a URL without one is the static "/", not a slice of the input */
    const char *s = "http://h?x";
    assert_int_equal(url_parse(s, strlen(s), &u), 0);
    assert_true(u.path.p < s || u.path.p >= s + strlen(s));
    assert_int_equal(u.path.len, 1);
    /* only len bytes are read: what follows does not matter */
    assert_int_equal(url_parse("http://h/a b", 10, &u), 0);
    assert_int_equal(u.path.len, 2);
    assert_int_equal(url_parse("http://h:80x", 11, &u), 0);
    assert_int_equal(u.port, 80);
    /* bad arguments */
    assert_int_equal(url_parse(NULL, 0, &u), FERRY_EINVAL);
    assert_int_equal(url_parse("http://h/", 9, NULL), FERRY_EINVAL);
}

/* ---- forms ------------------------------------------------------------------------- */

static void test_form_encode_vectors(void **state)
{
    (void) state;
    static const struct {
        const char *kv[6];
        size_t npairs;
        const char *expect;
    } v[] = {
        {{"a b", "c=d"}, 1, "a+b=c%3Dd"},
        {{"a", "a b&c=d"}, 1, "a=a+b%26c%3Dd"},
        {{"a b&c=d", ""}, 1, "a+b%26c%3Dd="},
        {{"name", "John Doe", "age", "30"}, 2, "name=John+Doe&age=30"},
        {{"k", ""}, 1, "k="},
        {{"", ""}, 1, "="},
        {{NULL}, 0, ""},
        {{"*-._", "~!'()"}, 1, "*-._=%7E%21%27%28%29"},
        {{"q", "\xc3\xa9t\xc3\xa9"}, 1, "q=%C3%A9t%C3%A9"},         /* "été" in UTF-8 */
        {{"emoji", "\xf0\x9f\x98\x80"}, 1, "emoji=%F0%9F%98%80"},    /* U+1F600 */
        {{"\xe2\x82\xac", "\xe6\x97\xa5\xe6\x9c\xac"}, 1, "%E2%82%AC=%E6%97%A5%E6%9C%AC"},
        {{"plus", "1+1=2"}, 1, "plus=1%2B1%3D2"},
        {{"path", "/a/b?c#d"}, 1, "path=%2Fa%2Fb%3Fc%23d"},
        {{"pct", "100%"}, 1, "pct=100%25"},
        {{"nl", "a\r\nb"}, 1, "nl=a%0D%0Ab"},
        {{"tab", "\t"}, 1, "tab=%09"},
        {{"AZaz09", "xyzXYZ"}, 1, "AZaz09=xyzXYZ"},
        {{"a", "1", "a", "2", "b", "  "}, 3, "a=1&a=2&b=++"},
        {{"\xff", "\x80\x7f"}, 1, "%FF=%80%7F"},
        {{"q", "\"<>`{}|\\^[]"}, 1, "q=%22%3C%3E%60%7B%7D%7C%5C%5E%5B%5D"},
        {{"s", "!$&'()*+,;=:@/?"}, 1, "s=%21%24%26%27%28%29*%2B%2C%3B%3D%3A%40%2F%3F"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char out[256];
        size_t n = 99;
        int r = url_form_encode(v[i].kv, v[i].npairs, out, sizeof(out), &n);
        if (r != 0 || strcmp(out, v[i].expect) != 0)
            fail_msg("vector %zu: want %s, got %s (%d)", i, v[i].expect, r ? "-" : out, r);
        assert_int_equal(n, strlen(v[i].expect));

        /* the slice variant agrees, and the sizing protocol holds */
        ferry_str sl[6];
        for (size_t j = 0; j < 2 * v[i].npairs; j++)
            sl[j] = (ferry_str){v[i].kv[j], strlen(v[i].kv[j])};
        char out2[256];
        assert_int_equal(url_form_encode_n(sl, v[i].npairs, out2, sizeof(out2), &n), 0);
        assert_string_equal(out2, v[i].expect);
        assert_int_equal(url_form_encode(v[i].kv, v[i].npairs, NULL, 0, &n), FERRY_ENOBUFS);
        assert_int_equal(n, strlen(v[i].expect));
        assert_int_equal(url_form_encode(v[i].kv, v[i].npairs, out2, n, &n), FERRY_ENOBUFS);

        /* and decoding each key and value gives the input back */
        char *save = NULL;
        size_t k = 0;
        for (char *pair = strtok_r(out, "&", &save); pair; pair = strtok_r(NULL, "&", &save)) {
            char *eq = strchr(pair, '=');
            assert_non_null(eq);
            char dec[64];
            size_t dn;
            assert_int_equal(url_form_decode(pair, (size_t) (eq - pair), dec, sizeof(dec), &dn), 0);
            assert_int_equal(dn, strlen(v[i].kv[2 * k]));
            assert_memory_equal(dec, v[i].kv[2 * k], dn);
            assert_int_equal(url_form_decode(eq + 1, strlen(eq + 1), dec, sizeof(dec), &dn), 0);
            assert_int_equal(dn, strlen(v[i].kv[2 * k + 1]));
            assert_memory_equal(dec, v[i].kv[2 * k + 1], dn);
            k++;
        }
    }
}

static void test_form_encode_edges(void **state)
{
    (void) state;
    char out[64];
    size_t n;
    /* NUL bytes travel through the slice variant */
    ferry_str nul[2] = {{"a\0b", 3}, {NULL, 0}};
    assert_int_equal(url_form_encode_n(nul, 1, out, sizeof(out), &n), 0);
    assert_string_equal(out, "a%00b=");
    /* NULL entries */
    const char *bad[2] = {"k", NULL};
    assert_int_equal(url_form_encode(bad, 1, out, sizeof(out), &n), FERRY_EINVAL);
    ferry_str badn[2] = {{"k", 1}, {NULL, 3}};
    assert_int_equal(url_form_encode_n(badn, 1, out, sizeof(out), &n), FERRY_EINVAL);
    assert_int_equal(url_form_encode(NULL, 1, out, sizeof(out), &n), FERRY_EINVAL);
    assert_int_equal(url_form_encode(NULL, 0, out, sizeof(out), &n), 0);
    assert_string_equal(out, "");
    assert_int_equal(url_form_encode(NULL, SIZE_MAX, out, sizeof(out), &n), FERRY_EINVAL);
    /* every byte value: kept, '+' or %XX, never anything else */
    char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (char) i;
    ferry_str one[2] = {{all, 256}, {"", 0}};
    char big[1024];
    assert_int_equal(url_form_encode_n(one, 1, big, sizeof(big), &n), 0);
    size_t kept = 0, plus = 0, escaped = 0;
    for (size_t i = 0; i + 1 < n; i++) { /* the last byte is the '=' */
        if (big[i] == '%') {
            assert_true(i + 2 < n && strchr("0123456789ABCDEF", big[i + 1]) &&
                        strchr("0123456789ABCDEF", big[i + 2]));
            escaped++;
            i += 2;
        } else if (big[i] == '+') {
            plus++;
        } else {
            assert_true(isalnum((unsigned char) big[i]) || strchr("*-._", big[i]));
            kept++;
        }
    }
    assert_int_equal(kept, 26 + 26 + 10 + 4); /* letters, digits and "*-._" */
    assert_int_equal(plus, 1);
    assert_int_equal(escaped, 256 - kept - plus);
    assert_int_equal(big[n - 1], '=');
    char dec[256];
    size_t dn;
    assert_int_equal(url_form_decode(big, n - 1, dec, sizeof(dec), &dn), 0);
    assert_int_equal(dn, 256);
    assert_memory_equal(dec, all, 256);
}

/* ---- percent-decoding ------------------------------------------------------------- */

static void test_percent_decode(void **state)
{
    (void) state;
    static const struct {
        const char *in;
        size_t len;
        const char *path; /* url_percent_decode, NULL: EINVAL */
        size_t path_len;
        const char *form; /* url_form_decode */
    } v[] = {
#define D(in, out, form) {in, sizeof(in) - 1, out, sizeof(out) - 1, form}
#define DBAD(in)         {in, sizeof(in) - 1, NULL, 0, NULL}
        D("", "", ""),
        D("abc", "abc", "abc"),
        D("a%20b", "a b", "a b"),
        D("%41%42", "AB", "AB"),
        D("%2F%2f", "//", "//"),
        D("%2E%2E", "..", ".."),
        D("%00", "\0", "\0"),
        D("a+b", "a+b", "a b"),
        D("%2B+", "++", "+ "),
        D("%e2%82%AC", "\xe2\x82\xac", "\xe2\x82\xac"),
        D("%ff%80", "\xff\x80", "\xff\x80"),
        D("100%25", "100%", "100%"),
        DBAD("%"),
        DBAD("%4"),
        DBAD("a%4"),
        DBAD("%zz"),
        DBAD("%%41"),
        DBAD("%4g"),
        DBAD("%g4"),
        DBAD("ok%"),
#undef D
#undef DBAD
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char out[64];
        size_t n = 99;
        int r = url_percent_decode(v[i].in, v[i].len, out, sizeof(out), &n);
        int rf = url_form_decode(v[i].in, v[i].len, out + 32, 32, &n);
        if (!v[i].path) {
            if (r != FERRY_EINVAL || rf != FERRY_EINVAL)
                fail_msg("decode %zu (%s): want EINVAL, got %d/%d", i, v[i].in, r, rf);
            continue;
        }
        assert_int_equal(rf, 0);
        assert_int_equal(n, v[i].path_len);
        assert_memory_equal(out + 32, v[i].form, n);
        assert_int_equal(url_percent_decode(v[i].in, v[i].len, out, sizeof(out), &n), 0);
        assert_int_equal(n, v[i].path_len);
        assert_memory_equal(out, v[i].path, n);

        /* in place, and the sizing rule */
        char place[64];
        memcpy(place, v[i].in, v[i].len);
        assert_int_equal(url_percent_decode(place, v[i].len, place, v[i].len, &n), 0);
        assert_memory_equal(place, v[i].path, n);
        if (v[i].path_len > 0) {
            assert_int_equal(url_percent_decode(v[i].in, v[i].len, out, v[i].path_len - 1, &n),
                             FERRY_ENOBUFS);
            assert_int_equal(n, v[i].path_len);
            assert_int_equal(url_percent_decode(v[i].in, v[i].len, NULL, 0, &n), FERRY_ENOBUFS);
        }
    }
    size_t n;
    assert_int_equal(url_percent_decode(NULL, 1, NULL, 0, &n), FERRY_EINVAL);
    assert_int_equal(url_percent_decode(NULL, 0, NULL, 0, &n), 0);
    assert_int_equal(n, 0);
}

/* ferry_url_check: the code url_parse gives, and a reason naming what is
 * wrong, for each kind of refusal (the one line `ferry fetch` prints). */
static void test_url_check_reasons(void **state)
{
    (void) state;
    static const struct {
        const char *url;
        int code;
        const char *why;
    } checks[] = {
        {"http://127.0.0.1:8080/", 0, NULL},
        {"https://example.com/", 0, NULL},
        {"http://[::1%25lo]:8080/", 0, NULL},
        {"http://example.com./", 0, NULL}, /* a trailing dot on a name is fine */
        {"", FERRY_EINVAL, "empty URL"},
        {"example.com", FERRY_EINVAL, "not an absolute URL (http://host/...)"},
        {"ftp://example.com/", FERRY_ENOTSUP, "scheme is not http or https"},
        {"http://h:99999/", FERRY_EINVAL, "port out of range (1-65535)"},
        {"http://h:0/", FERRY_EINVAL, "port out of range (1-65535)"},
        {"http://h:8o/", FERRY_EINVAL, "port is not a decimal number"},
        {"http://1.2.3.4./", FERRY_EINVAL, "trailing dot after an IPv4 address"},
        {"http://127.1/", FERRY_EINVAL,
         "host ends in a number but is not a dotted-quad IPv4 address"},
        {"http://a..b/", FERRY_EINVAL, "empty label in the host"},
        {"http://a!b/", FERRY_EINVAL,
         "character not allowed in a host name (letters, digits, '-', '.', '_')"},
        {"http://h/caf\xc3\xa9", FERRY_EINVAL, "non-ASCII byte in the path (percent-encode it)"},
        {"http://h/?q=\xc3\xa9", FERRY_EINVAL,
         "non-ASCII byte in the query (percent-encode it)"},
        {"http://h\xc3\xa9/", FERRY_EINVAL, "non-ASCII byte in the host (use the xn-- form)"},
        {"http://h/a b", FERRY_EINVAL, "space in the path (write %20)"},
        {"http://h/a\\b", FERRY_EINVAL, "backslash in the path (write %5C)"},
        {"http://h/#\x01", FERRY_EINVAL, "control character in the fragment"},
        {"http://h/%zz", FERRY_EINVAL, "'%' not followed by two hex digits in the path"},
        {"http://h/a<b", FERRY_EINVAL,
         "character not allowed in the path (\" < > ` { }: percent-encode it)"},
        {"http://u:p@h/", FERRY_ENOTSUP, "user:password@ in the URL (send an Authorization header)"},
        {"http://a@b@c/", FERRY_EINVAL, "more than one '@' before the host"},
        {"http://[::1/", FERRY_EINVAL, "IPv6 address without its ']'"},
        {"http://[::g]/", FERRY_EINVAL, "character not allowed in an IPv6 address"},
        {"http://[::1%lo]/", FERRY_EINVAL, "IPv6 zone not introduced by %25 (RFC 6874)"},
        {"http://[::1]x/", FERRY_EINVAL, "something other than a port after ']'"},
    };
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        const char *why = "unset";
        int rc = ferry_url_check(checks[i].url, &why);
        if (rc != checks[i].code || (checks[i].why == NULL) != (why == NULL) ||
            (why && strcmp(why, checks[i].why) != 0))
            fail_msg("%s: %s (%s), want %s (%s)", checks[i].url, ferry_err_name(rc),
                     why ? why : "NULL", ferry_err_name(checks[i].code),
                     checks[i].why ? checks[i].why : "NULL");
    }
    const char *why = NULL;
    assert_int_equal(ferry_url_check(NULL, &why), FERRY_EINVAL);
    assert_string_equal(why, "no URL");
    assert_int_equal(ferry_url_check("http://h:70000/", NULL), FERRY_EINVAL);
}

/* Zones become scope ids without the resolver: numbers as they are, names
 * through if_nametoindex (the loopback interface is "lo" here). */
static void test_zone_index(void **state)
{
    (void) state;
    url_parts u;
    uint32_t idx = 99;
    assert_int_equal(url_parse("http://[::1]/", 13, &u), 0);
    assert_int_equal(url_zone_index(&u, &idx), 0);
    assert_int_equal(idx, 0);
    const char *num = "http://[fe80::1%2517]/";
    assert_int_equal(url_parse(num, strlen(num), &u), 0);
    assert_int_equal(url_zone_index(&u, &idx), 0);
    assert_int_equal(idx, 17);
    const char *lo = "http://[::1%25lo]/";
    assert_int_equal(url_parse(lo, strlen(lo), &u), 0);
    assert_int_equal(url_zone_index(&u, &idx), 0);
    assert_true(idx > 0);
    const char *none = "http://[::1%25nosuchif0]/";
    assert_int_equal(url_parse(none, strlen(none), &u), 0);
    assert_int_equal(url_zone_index(&u, &idx), FERRY_EAI_NONAME);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_origin_key_equivalence),
        cmocka_unit_test(test_writer_maxima),
        cmocka_unit_test(test_parsed_addresses),
        cmocka_unit_test(test_form_encode_vectors),
        cmocka_unit_test(test_form_encode_edges),
        cmocka_unit_test(test_percent_decode),
        cmocka_unit_test(test_url_check_reasons),
        cmocka_unit_test(test_zone_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
