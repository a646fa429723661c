/* fuzz_proxy.c — libFuzzer target for src/server/proxy_proto.c.
 *
 * Every input is used two ways:
 *   1. as the first bytes of a connection: proxy_parse() on exact-size
 *      copies (ASan catches a read past len) of every prefix until the
 *      outcome is decided, then of a few longer ones and the whole. The
 *      prefixes must give 0 ("need more") and then one lasting outcome, so a
 *      header split anywhere is read as when it comes at once; a header is
 *      recognised exactly when its last byte arrives, and what follows it
 *      never changes the result. An accepted header must hold together: a v1
 *      TCP4 line is rebuilt byte for byte from the addresses, a TCP6 one
 *      reparses the same from inet_ntop's spelling, v2 addresses are the
 *      bytes at their offsets;
 *   2. as a trust list: every network proxy_trust_parse() accepts trusts its
 *      own address.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "ferry.h"
#include "server/proxy_proto.h"

#define CHECK(cond, what)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_proxy: %s (line %d)\n", what, __LINE__);                         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* proxy_parse on a copy of buf[0..len) in a buffer of exactly len bytes. */
static int parse_exact(const uint8_t *buf, size_t len, proxy_header *h)
{
    char *copy = malloc(len ? len : 1);
    CHECK(copy, "oom");
    if (len) memcpy(copy, buf, len);
    int rc = proxy_parse(copy, len, h);
    free(copy);
    return rc;
}

static void addr_of(const struct sockaddr_storage *ss, uint8_t out[16], uint16_t *port)
{
    if (ss->ss_family == AF_INET) {
        struct sockaddr_in sin;
        memcpy(&sin, ss, sizeof(sin));
        memcpy(out, &sin.sin_addr, 4);
        *port = ntohs(sin.sin_port);
    } else {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, ss, sizeof(sin6));
        memcpy(out, &sin6.sin6_addr, 16);
        *port = ntohs(sin6.sin6_port);
    }
}

static void check_header(const uint8_t *buf, int rc, const proxy_header *h)
{
    CHECK(h->version == 1 || h->version == 2, "version");
    CHECK(h->local != h->has_addr, "local and has_addr disagree");
    CHECK(rc <= (h->version == 1 ? PROXY_V1_MAX : PROXY_V2_MAX), "header longer than the bound");
    if (h->local) {
        CHECK(h->src.ss_family == 0 && h->dst.ss_family == 0, "a local header with addresses");
        return;
    }
    int fam = h->src.ss_family;
    CHECK(fam == h->dst.ss_family, "src and dst families differ");
    uint8_t sa[16], da[16];
    uint16_t sp = 0, dp = 0;
    if (h->version == 1) {
        CHECK(fam == AF_INET || fam == AF_INET6, "v1 family");
        CHECK(buf[rc - 2] == '\r' && buf[rc - 1] == '\n', "v1 line without CRLF");
        addr_of(&h->src, sa, &sp);
        addr_of(&h->dst, da, &dp);
        char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN], line[PROXY_V1_MAX + 64];
        inet_ntop(fam, sa, s, sizeof(s));
        inet_ntop(fam, da, d, sizeof(d));
        int n = snprintf(line, sizeof(line), "PROXY TCP%c %s %s %u %u\r\n",
                         fam == AF_INET ? '4' : '6', s, d, sp, dp);
        CHECK(n > 0 && (size_t) n < sizeof(line), "rebuilt line");
        if (fam == AF_INET) {
            CHECK(n == rc && memcmp(line, buf, (size_t) n) == 0, "TCP4 line is not canonical");
        } else if (n <= PROXY_V1_MAX) {
            proxy_header again;
            CHECK(parse_exact((const uint8_t *) line, (size_t) n, &again) == n &&
                      memcmp(&again, h, sizeof(again)) == 0,
                  "TCP6 line respelled parses differently");
        }
        return;
    }
    const uint8_t *a = buf + 16;
    CHECK(buf[12] == 0x21, "v2 addresses without PROXY");
    if (fam == AF_INET) {
        CHECK(buf[13] == 0x11, "v2 family byte");
        addr_of(&h->src, sa, &sp);
        addr_of(&h->dst, da, &dp);
        CHECK(memcmp(sa, a, 4) == 0 && memcmp(da, a + 4, 4) == 0, "v4 address bytes");
        CHECK(sp == (a[8] << 8 | a[9]) && dp == (a[10] << 8 | a[11]), "v4 ports");
    } else if (fam == AF_INET6) {
        CHECK(buf[13] == 0x21, "v2 family byte");
        addr_of(&h->src, sa, &sp);
        addr_of(&h->dst, da, &dp);
        CHECK(memcmp(sa, a, 16) == 0 && memcmp(da, a + 16, 16) == 0, "v6 address bytes");
        CHECK(sp == (a[32] << 8 | a[33]) && dp == (a[34] << 8 | a[35]), "v6 ports");
    } else {
        CHECK(fam == AF_UNIX && buf[13] == 0x31, "v2 family");
        struct sockaddr_un su, du;
        memcpy(&su, &h->src, sizeof(su));
        memcpy(&du, &h->dst, sizeof(du));
        CHECK(memcmp(su.sun_path, a, 108) == 0 && memcmp(du.sun_path, a + 108, 108) == 0,
              "unix paths");
    }
}

static void check_parse(const uint8_t *data, size_t size)
{
    proxy_header whole, h;
    int rc = parse_exact(data, size, &whole);
    CHECK(rc == 0 || rc == FERRY_EPROXY || (rc > 0 && (size_t) rc <= size), "result range");

    /* every prefix until decided */
    int settled = 0;
    size_t k = 0;
    for (; k <= size && settled == 0; k++) {
        settled = parse_exact(data, k, &h);
        CHECK(settled <= 0 || (size_t) settled == k, "header recognised before its last byte");
    }
    CHECK(settled == rc, "whole and split disagree");
    if (rc > 0) {
        CHECK(memcmp(&h, &whole, sizeof(h)) == 0, "split header differs");
        check_header(data, rc, &whole);
    }
    if (rc == 0) return;
    /* a few longer prefixes, and a different byte after a header */
    for (size_t j = k; j <= size; j += 1 + (size - j) / 3) {
        CHECK(parse_exact(data, j, &h) == rc, "longer prefix disagrees");
        if (rc > 0) CHECK(memcmp(&h, &whole, sizeof(h)) == 0, "longer prefix gives another header");
    }
    if (rc > 0 && (size_t) rc < size) {
        uint8_t *alt = malloc(size);
        CHECK(alt, "oom");
        memcpy(alt, data, size);
        alt[rc] ^= 0xFF;
        CHECK(parse_exact(alt, size, &h) == rc && memcmp(&h, &whole, sizeof(h)) == 0,
              "bytes after the header changed the result");
        free(alt);
    }
}

static void check_trust(const uint8_t *data, size_t size)
{
    char *list = malloc(size + 1);
    CHECK(list, "oom");
    memcpy(list, data, size);
    list[size] = 0;
    proxy_trust t;
    int rc = proxy_trust_parse(list, &t);
    CHECK(rc == 0 || rc == FERRY_EINVAL, "trust result");
    CHECK(rc == 0 ? t.count >= 1 && t.rules != NULL : t.count == 0 && t.rules == NULL,
          "trust list shape");
    for (size_t i = 0; i < t.count; i++) {
        const proxy_trust_rule *r = &t.rules[i];
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof(ss));
        if (r->family == AF_INET) {
            CHECK(r->prefix <= 32, "v4 prefix");
            struct sockaddr_in sin = {.sin_family = AF_INET};
            memcpy(&sin.sin_addr, r->addr, 4);
            memcpy(&ss, &sin, sizeof(sin));
        } else if (r->family == AF_INET6) {
            CHECK(r->prefix <= 128, "v6 prefix");
            struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
            memcpy(&sin6.sin6_addr, r->addr, 16);
            memcpy(&ss, &sin6, sizeof(sin6));
        } else {
            CHECK(r->family == AF_UNIX, "rule family");
            ss.ss_family = AF_UNIX;
        }
        CHECK(proxy_trusted(&t, (const struct sockaddr *) &ss), "a network does not trust itself");
    }
    proxy_trust_free(&t);
    CHECK(t.rules == NULL && t.count == 0, "free leaves it empty");
    free(list);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_parse(data, size);
    check_trust(data, size);
    return 0;
}
