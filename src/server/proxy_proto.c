/* proxy_proto.c — PROXY protocol v1/v2 headers and trust lists (proxy_proto.h).
 *
 * The parser looks at each byte once it has it and decides whether it can
 * still begin a valid header, so "need more" and "error" never depend on how
 * the bytes were split. Addresses are copied out into sockaddr structs
 * built on the stack, so nothing is cast in place from the caller's buffer
 * (which has no alignment).
 */
#include "server/proxy_proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "ferry.h"

/* \r\n\r\n\0\r\nQUIT\n: chosen by the spec to be refused by other protocols. */
static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_prefix[] = "PROXY "; /* 6 bytes */

/* ---- addresses -------------------------------------------------------------- */

/* Four decimal octets 0-255, no leading zeros, exactly s[0..n). */
static bool parse_ip4(const char *s, size_t n, uint8_t out[4])
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= n || s[i] != '.') return false;
            i++;
        }
        size_t start = i;
        unsigned v = 0;
        while (i < n && i - start < 3 && s[i] >= '0' && s[i] <= '9')
            v = v * 10 + (unsigned) (s[i++] - '0');
        if (i == start || v > 255 || (s[start] == '0' && i - start > 1)) return false;
        out[part] = (uint8_t) v;
    }
    return i == n;
}

/* An IPv6 address as inet_pton reads it (no zone: '%' is not accepted). */
static bool parse_ip6(const char *s, size_t n, uint8_t out[16])
{
    char tmp[INET6_ADDRSTRLEN];
    if (n == 0 || n >= sizeof(tmp)) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
              c == ':' || c == '.'))
            return false;
    }
    memcpy(tmp, s, n);
    tmp[n] = 0;
    return inet_pton(AF_INET6, tmp, out) == 1;
}

/* 0-65535 in decimal, no leading zeros. */
static bool parse_port(const char *s, size_t n, uint16_t *out)
{
    if (n == 0 || n > 5 || (s[0] == '0' && n > 1)) return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (unsigned) (s[i] - '0');
    }
    if (v > 65535) return false;
    *out = (uint16_t) v;
    return true;
}

static void set_in4(struct sockaddr_storage *ss, const uint8_t a[4], uint16_t port_host)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port_host);
    memcpy(&sin.sin_addr, a, 4);
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, &sin, sizeof(sin));
}

static void set_in6(struct sockaddr_storage *ss, const uint8_t a[16], uint16_t port_host)
{
    struct sockaddr_in6 sin6;
    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(port_host);
    memcpy(&sin6.sin6_addr, a, 16);
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, &sin6, sizeof(sin6));
}

static void set_unix(struct sockaddr_storage *ss, const uint8_t path[108])
{
    struct sockaddr_un sun;
    _Static_assert(sizeof(sun.sun_path) == 108, "the spec's unix addresses are 108 bytes");
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, 108);
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, &sun, sizeof(sun));
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t) ((unsigned) p[0] << 8 | p[1]);
}

/* ---- version 1 ------------------------------------------------------------------ */

/* Whether the bytes after "PROXY " so far can begin "TCP4 ", "TCP6 " or
 * "UNKNOWN" + space or CRLF: an HTTP client that happens to send "PROXY " is
 * still refused before 107 bytes. */
static bool v1_family_prefix_ok(const char *s, size_t n)
{
    static const char *const fams[] = {"TCP4 ", "TCP6 ", "UNKNOWN "};
    for (size_t f = 0; f < 3; f++) {
        size_t flen = strlen(fams[f]), m = n < flen ? n : flen;
        if (memcmp(s, fams[f], m) == 0) return true;
    }
    return false;
}

/* The next space-separated field of line[*pos..n): not empty, and followed by
 * exactly one space or (last) by the end. */
static bool v1_field(const char *line, size_t n, size_t *pos, bool last, const char **f,
                     size_t *flen)
{
    size_t start = *pos, i = start;
    while (i < n && line[i] != ' ')
        i++;
    if (i == start || (last ? i != n : i == n)) return false;
    *f = line + start;
    *flen = i - start;
    *pos = last ? i : i + 1;
    return true;
}

/* The line between "PROXY " and CRLF, all printable. */
static int v1_line(const char *line, size_t n, proxy_header *out)
{
    if (n >= 7 && memcmp(line, "UNKNOWN", 7) == 0 && (n == 7 || line[7] == ' ')) {
        memset(out, 0, sizeof(*out));
        out->version = 1;
        out->local = true;
        return 0;
    }
    bool v6;
    if (n >= 5 && memcmp(line, "TCP4 ", 5) == 0)
        v6 = false;
    else if (n >= 5 && memcmp(line, "TCP6 ", 5) == 0)
        v6 = true;
    else
        return FERRY_EPROXY;

    const char *f[4];
    size_t fl[4], pos = 5;
    for (int i = 0; i < 4; i++)
        if (!v1_field(line, n, &pos, i == 3, &f[i], &fl[i])) return FERRY_EPROXY;
    uint8_t sa[16], da[16];
    uint16_t sp, dp;
    bool ok = v6 ? parse_ip6(f[0], fl[0], sa) && parse_ip6(f[1], fl[1], da)
                 : parse_ip4(f[0], fl[0], sa) && parse_ip4(f[1], fl[1], da);
    if (!ok || !parse_port(f[2], fl[2], &sp) || !parse_port(f[3], fl[3], &dp)) return FERRY_EPROXY;
    memset(out, 0, sizeof(*out));
    out->version = 1;
    out->has_addr = true;
    if (v6) {
        set_in6(&out->src, sa, sp);
        set_in6(&out->dst, da, dp);
    } else {
        set_in4(&out->src, sa, sp);
        set_in4(&out->dst, da, dp);
    }
    return 0;
}

static int parse_v1(const char *buf, size_t len, proxy_header *out)
{
    size_t n = len < PROXY_V1_MAX ? len : PROXY_V1_MAX;
    for (size_t i = 0; i < n; i++) {
        char c = buf[i];
        if (i < 6) {
            if (c != v1_prefix[i]) return FERRY_EPROXY;
            continue;
        }
        if (c == '\r') {
            if (!v1_family_prefix_ok(buf + 6, i - 6) || i + 1 >= PROXY_V1_MAX) return FERRY_EPROXY;
            if (i + 1 >= len) return 0;
            if (buf[i + 1] != '\n') return FERRY_EPROXY;
            int rc = v1_line(buf + 6, i - 6, out);
            return rc < 0 ? rc : (int) (i + 2);
        }
        if (c < 0x20 || c > 0x7e) /* a bare LF, other controls, non-ASCII */
            return FERRY_EPROXY;
    }
    if (len >= PROXY_V1_MAX) /* no CRLF in the first 107 bytes */
        return FERRY_EPROXY;
    return n <= 6 || v1_family_prefix_ok(buf + 6, n - 6) ? 0 : FERRY_EPROXY;
}

/* ---- version 2 ------------------------------------------------------------------ */

enum { V2_FIXED = 16 };

static int parse_v2(const char *buf, size_t len, proxy_header *out)
{
    const uint8_t *p = (const uint8_t *) buf;
    if (memcmp(p, v2_sig, len < 12 ? len : 12) != 0) return FERRY_EPROXY;
    if (len < 13) return 0;
    /* version 2; command LOCAL (0) or PROXY (1) */
    if (p[12] >> 4 != 2 || (p[12] & 0x0F) > 1) return FERRY_EPROXY;
    const bool local_cmd = (p[12] & 0x0F) == 0;
    if (len < 14) return 0;
    /* With PROXY: one of the seven family/protocol bytes the spec lists, and
     * how many address bytes it takes (UNSPEC: unknown, so none are read).
     * With LOCAL the byte is ignored, as the spec says. */
    size_t addr_len = 0;
    bool addresses = false;
    if (!local_cmd) {
        switch (p[13]) {
        case 0x00: break;
        case 0x11:
        case 0x12: addr_len = 12; break;
        case 0x21:
        case 0x22: addr_len = 36; break;
        case 0x31:
        case 0x32: addr_len = 216; break;
        default: return FERRY_EPROXY;
        }
        addresses = (p[13] & 0x0F) == 1; /* STREAM; UDP falls back to UNSPEC */
    }
    if (len < V2_FIXED) return 0;
    const size_t body = be16(p + 14), total = V2_FIXED + body;
    if (total > PROXY_V2_MAX || body < addr_len) return FERRY_EPROXY;
    if (len < total) return 0;
    /* The TLVs: type, 2-byte length, value; each must fit exactly. Where the
     * address layout is unknown (LOCAL, UNSPEC) the block is skipped whole. */
    if (!local_cmd && p[13] != 0x00) {
        size_t i = V2_FIXED + addr_len;
        while (i < total) {
            if (total - i < 3 || be16(p + i + 1) > total - i - 3) return FERRY_EPROXY;
            i += 3 + (size_t) be16(p + i + 1);
        }
    }

    memset(out, 0, sizeof(*out));
    out->version = 2;
    out->local = !addresses;
    out->has_addr = addresses;
    if (addresses) {
        const uint8_t *a = p + V2_FIXED;
        switch (p[13] >> 4) {
        case 1:
            set_in4(&out->src, a, be16(a + 8));
            set_in4(&out->dst, a + 4, be16(a + 10));
            break;
        case 2:
            set_in6(&out->src, a, be16(a + 32));
            set_in6(&out->dst, a + 16, be16(a + 34));
            break;
        default:
            set_unix(&out->src, a);
            set_unix(&out->dst, a + 108);
            break;
        }
    }
    return (int) total;
}

int proxy_parse(const char *buf, size_t len, proxy_header *out)
{
    if (len == 0) return 0;
    if (buf[0] == v1_prefix[0]) return parse_v1(buf, len, out);
    if ((uint8_t) buf[0] == v2_sig[0]) return parse_v2(buf, len, out);
    return FERRY_EPROXY;
}

/* ---- trust lists ---------------------------------------------------------------- */

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};

/* Whether the first `bits` bits of a and b agree. */
static bool prefix_match(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    size_t whole = bits / 8;
    if (memcmp(a, b, whole) != 0) return false;
    unsigned rest = bits % 8;
    if (rest == 0) return true;
    uint8_t mask = (uint8_t) (0xFF << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

/* "ADDR" or "ADDR/PREFIX" or "unix", exactly s[0..n). */
static bool parse_rule(const char *s, size_t n, proxy_trust_rule *r)
{
    memset(r, 0, sizeof(*r));
    if (n == 4 && memcmp(s, "unix", 4) == 0) {
        r->family = AF_UNIX;
        return true;
    }
    const char *slash = memchr(s, '/', n);
    size_t alen = slash ? (size_t) (slash - s) : n;
    if (memchr(s, ':', alen)) {
        r->family = AF_INET6;
        r->prefix = 128;
        if (!parse_ip6(s, alen, r->addr)) return false;
    } else {
        r->family = AF_INET;
        r->prefix = 32;
        if (!parse_ip4(s, alen, r->addr)) return false;
    }
    if (slash) {
        const char *d = slash + 1;
        size_t dl = n - alen - 1;
        unsigned v = 0;
        if (dl == 0 || dl > 3 || (d[0] == '0' && dl > 1)) return false;
        for (size_t i = 0; i < dl; i++) {
            if (d[i] < '0' || d[i] > '9') return false;
            v = v * 10 + (unsigned) (d[i] - '0');
        }
        if (v > r->prefix) return false;
        r->prefix = v;
    }
    /* host bits set: "10.0.0.1/8" is most likely a typo for a host or a network */
    uint8_t masked[16];
    memcpy(masked, r->addr, 16);
    for (unsigned bit = r->prefix; bit < (r->family == AF_INET ? 32u : 128u); bit++)
        masked[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
    if (memcmp(masked, r->addr, 16) != 0) return false;
    /* a v4-mapped network is an IPv4 one, so it matches what peers normalise to */
    if (r->family == AF_INET6 && r->prefix >= 96 && memcmp(r->addr, v4_mapped, 12) == 0) {
        memmove(r->addr, r->addr + 12, 4);
        memset(r->addr + 4, 0, 12);
        r->family = AF_INET;
        r->prefix -= 96;
    }
    return true;
}

static bool list_space(char c)
{
    return c == ' ' || c == '\t';
}

int proxy_trust_parse(const char *list, proxy_trust *out)
{
    out->rules = NULL;
    out->count = 0;
    if (!list) return FERRY_EINVAL;
    size_t cap = 1;
    for (const char *c = list; *c; c++)
        cap += *c == ',';
    proxy_trust_rule *rules = calloc(cap, sizeof(*rules));
    if (!rules) return FERRY_ENOMEM;
    size_t count = 0;
    const char *s = list;
    for (;;) {
        const char *end = strchr(s, ',');
        if (!end) end = s + strlen(s);
        const char *a = s, *b = end;
        while (a < b && list_space(*a))
            a++;
        while (b > a && list_space(b[-1]))
            b--;
        if (a == b || !parse_rule(a, (size_t) (b - a), &rules[count])) {
            free(rules);
            return FERRY_EINVAL;
        }
        count++;
        if (!*end) break;
        s = end + 1;
    }
    out->rules = rules;
    out->count = count;
    return 0;
}

bool proxy_trusted(const proxy_trust *t, const struct sockaddr *peer)
{
    if (!t) return true;
    if (!peer) return false;
    int family = peer->sa_family;
    uint8_t addr[16] = {0};
    if (family == AF_INET) {
        struct sockaddr_in sin;
        memcpy(&sin, peer, sizeof(sin));
        memcpy(addr, &sin.sin_addr, 4);
    } else if (family == AF_INET6) {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, peer, sizeof(sin6));
        memcpy(addr, &sin6.sin6_addr, 16);
        if (memcmp(addr, v4_mapped, 12) == 0) {
            memmove(addr, addr + 12, 4);
            memset(addr + 4, 0, 12);
            family = AF_INET;
        }
    } else if (family != AF_UNIX) {
        return false;
    }
    for (size_t i = 0; i < t->count; i++) {
        const proxy_trust_rule *r = &t->rules[i];
        if (r->family == family && (family == AF_UNIX || prefix_match(r->addr, addr, r->prefix)))
            return true;
    }
    return false;
}

void proxy_trust_free(proxy_trust *t)
{
    if (!t) return;
    free(t->rules);
    t->rules = NULL;
    t->count = 0;
}
