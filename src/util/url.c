/* url.c — absolute http(s) URLs, form encoding, percent-decoding (contract
 * and every decision: url.h).
 *
 * Shape: url_parse() makes one pass over the input to refuse bytes that never
 * belong in a URL, then walks it once more in order — scheme, authority
 * (userinfo check, host, port), path, query, fragment — each piece checked
 * against one character-class table. Nothing allocates; the only copy is an
 * IPv6 literal into a small stack buffer, because uv_inet_pton wants a
 * NUL-terminated string.
 */
#include "util/url.h"

#include <net/if.h>
#include <string.h>

#include <uv.h>

/* char_class bits: U_HOST letters, digits, "-._" (registered names);
 * U_PATH pchar without '%' plus '/' and "[]|^" (path, query, fragment);
 * U_SCHEME letters, digits, "+-."; U_ZONE unreserved (IPv6 zones);
 * U_FORM bytes form encoding keeps (letters, digits, "*-._"); U_HEX;
 * U_BAD bytes refused anywhere: controls, space, DEL, >= 0x80, '\'. */
enum { U_HOST = 1, U_PATH = 2, U_SCHEME = 4, U_ZONE = 8, U_FORM = 16, U_HEX = 32, U_BAD = 64 };
static const uint8_t char_class[256] = {
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 2, 0, 0, 2, 0, 2, 2, 2, 2, 18, 6, 2, 31, 31, 2,
    63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 2, 2, 0, 2, 0, 0,
    2, 63, 63, 63, 63, 63, 63, 31, 31, 31, 31, 31, 31, 31, 31, 31,
    31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 2, 64, 2, 2, 27,
    0, 63, 63, 63, 63, 63, 63, 31, 31, 31, 31, 31, 31, 31, 31, 31,
    31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 0, 2, 0, 10, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
};

#define CLASS(c, bit) (char_class[(unsigned char) (c)] & (bit))

/* Record why a parse failed (ferry_url_check hands it out) and return code. */
#define FAIL(out, code, reason) return ((out)->why = (reason), (code))

/* The parts of a URL a refused byte can sit in, for bad_byte_reason(). */
enum { PART_SCHEME, PART_HOST, PART_PATH, PART_QUERY, PART_FRAGMENT, PART_COUNT };

static const char hex_upper[] = "0123456789ABCDEF";

/* The path of a URL that has none. */
static const char root_path[] = "/";

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char) (c | 0x20);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char) (c | 0x20) : c;
}

/* Whether s[0..n) equals the lowercase ASCII literal lit, ignoring case. */
static bool lit_ieq(const char *s, size_t n, const char *lit)
{
    size_t i = 0;
    for (; i < n && lit[i]; i++)
        if (lower(s[i]) != lit[i])
            return false;
    return i == n && lit[i] == 0;
}

/* Check path, query or fragment bytes p[0..n) (part: PART_PATH, _QUERY or
 * _FRAGMENT): the U_PATH class plus the characters in `extra`, and complete
 * percent-escapes. */
static int check_component(const char *p, size_t n, const char *extra, int part, url_parts *out)
{
    static const char *const bad_char[PART_COUNT] = {
        [PART_PATH] = "character not allowed in the path (\" < > ` { }: percent-encode it)",
        [PART_QUERY] = "character not allowed in the query (\" < > ` { }: percent-encode it)",
        [PART_FRAGMENT] = "character not allowed in the fragment",
    };
    static const char *const bad_escape[PART_COUNT] = {
        [PART_PATH] = "'%' not followed by two hex digits in the path",
        [PART_QUERY] = "'%' not followed by two hex digits in the query",
        [PART_FRAGMENT] = "'%' not followed by two hex digits in the fragment",
    };
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (CLASS(c, U_PATH))
            continue;
        if (c == '%') {
            if (n - i < 3 || !CLASS(p[i + 1], U_HEX) || !CLASS(p[i + 2], U_HEX))
                FAIL(out, FERRY_EBADTARGET, bad_escape[part]);
            i += 2;
            continue;
        }
        if (!strchr(extra, c) || c == 0)
            FAIL(out, FERRY_EBADTARGET, bad_char[part]);
    }
    return 0;
}

/* Strict dotted quad: four decimal octets 0-255, no leading zeros. */
static bool parse_ipv4(const char *p, size_t n, uint8_t out[4])
{
    size_t i = 0;
    for (int octet = 0; octet < 4; octet++) {
        if (octet > 0) {
            if (i >= n || p[i] != '.')
                return false;
            i++;
        }
        size_t start = i;
        unsigned v = 0;
        while (i < n && p[i] >= '0' && p[i] <= '9' && i - start < 3)
            v = v * 10 + (unsigned) (p[i++] - '0');
        size_t digits = i - start;
        if (digits == 0 || v > 255 || (digits > 1 && p[start] == '0'))
            return false;
        out[octet] = (uint8_t) v;
    }
    return i == n;
}

/* Whether the label p[0..n) reads as a number to inet_aton() or WHATWG's
 * IPv4 parser: all digits, or "0x"/"0X" and hex digits (possibly none). */
static bool label_is_numeric(const char *p, size_t n)
{
    size_t i = 0;
    if (n >= 2 && p[0] == '0' && (p[1] | 0x20) == 'x') {
        for (i = 2; i < n; i++)
            if (!CLASS(p[i], U_HEX))
                return false;
        return true;
    }
    if (n == 0)
        return false;
    for (; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return false;
    return true;
}

/* A host without brackets: an IPv4 literal or a registered name. */
static int parse_name_or_ipv4(const char *p, size_t n, url_parts *out)
{
    if (n == 0)
        FAIL(out, FERRY_EBADHOST, "empty host");
    size_t name_len = p[n - 1] == '.' ? n - 1 : n; /* without a trailing dot */
    if (name_len == 0)
        FAIL(out, FERRY_EBADHOST, "empty label in the host");
    if (name_len > URL_HOST_MAX - 1)
        FAIL(out, FERRY_EBADHOST, "host name longer than 253 characters");
    size_t label = 0, last = 0; /* current label length; start of the last label */
    for (size_t i = 0; i < name_len; i++) {
        if (p[i] == '.') {
            if (label == 0)
                FAIL(out, FERRY_EBADHOST, "empty label in the host"); /* "a..b", ".a" */
            label = 0;
            last = i + 1;
            continue;
        }
        if (!CLASS(p[i], U_HOST))
            FAIL(out, FERRY_EBADHOST,
                 "character not allowed in a host name (letters, digits, '-', '.', '_')");
        if (++label > 63)
            FAIL(out, FERRY_EBADHOST, "host label longer than 63 characters");
    }
    if (label == 0)
        FAIL(out, FERRY_EBADHOST, "empty label in the host");
    if (!label_is_numeric(p + last, name_len - last))
        return 0;
    /* Ends in a number: an IPv4 literal or nothing. */
    if (name_len != n && parse_ipv4(p, name_len, out->addr))
        FAIL(out, FERRY_EBADHOST, "trailing dot after an IPv4 address");
    if (name_len != n || !parse_ipv4(p, n, out->addr))
        FAIL(out, FERRY_EBADHOST,
             "host ends in a number but is not a dotted-quad IPv4 address");
    out->is_ipv4 = true;
    return 0;
}

/* The inside of "[...]": address, optionally "%25" and a zone. */
static int parse_ipv6(const char *p, size_t n, url_parts *out)
{
    size_t alen = n;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '%') {
            if (n - i < 3 || p[i + 1] != '2' || p[i + 2] != '5')
                FAIL(out, FERRY_EBADHOST, "IPv6 zone not introduced by %25 (RFC 6874)");
            size_t zlen = n - i - 3;
            if (zlen == 0 || zlen > URL_ZONE_MAX)
                FAIL(out, FERRY_EBADHOST, "IPv6 zone empty or longer than 63 characters");
            for (size_t j = i + 3; j < n; j++)
                if (!CLASS(p[j], U_ZONE))
                    FAIL(out, FERRY_EBADHOST, "character not allowed in an IPv6 zone");
            out->zone = (ferry_str){p + i + 3, zlen};
            alen = i;
            break;
        }
        if (!(CLASS(p[i], U_HEX) || p[i] == ':' || p[i] == '.'))
            FAIL(out, FERRY_EBADHOST, "character not allowed in an IPv6 address");
    }
    char tmp[46];
    if (alen == 0 || alen >= sizeof(tmp))
        FAIL(out, FERRY_EBADHOST, "invalid IPv6 address");
    memcpy(tmp, p, alen);
    tmp[alen] = 0;
    if (uv_inet_pton(AF_INET6, tmp, out->addr) != 0)
        FAIL(out, FERRY_EBADHOST, "invalid IPv6 address");
    out->host = (ferry_str){p, alen};
    out->is_ipv6 = true;
    return 0;
}

/* The authority p[0..n): host and port (userinfo is refused by the caller). */
static int parse_authority(const char *p, size_t n, url_parts *out)
{
    size_t host_end; /* index of the ':' before the port, or n */
    int r;
    if (n > 0 && p[0] == '[') {
        const char *close = memchr(p, ']', n);
        if (!close)
            FAIL(out, FERRY_EBADHOST, "IPv6 address without its ']'");
        size_t inner = (size_t) (close - p) - 1;
        if ((r = parse_ipv6(p + 1, inner, out)) < 0)
            return r;
        host_end = inner + 2;
        if (host_end < n && p[host_end] != ':')
            FAIL(out, FERRY_EBADHOST, "something other than a port after ']'"); /* "[::1]x" */
    } else {
        const char *colon = memchr(p, ':', n);
        host_end = colon ? (size_t) (colon - p) : n;
        if ((r = parse_name_or_ipv4(p, host_end, out)) < 0)
            return r;
        out->host = (ferry_str){p, host_end};
    }
    out->port = out->https ? 443 : 80;
    if (host_end >= n || host_end + 1 == n)
        return 0; /* no port, or an empty one: the default */
    uint32_t v = 0;
    for (size_t i = host_end + 1; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            FAIL(out, FERRY_EINVAL, "port is not a decimal number");
        v = v * 10 + (uint32_t) (p[i] - '0');
        if (v > 65535)
            FAIL(out, FERRY_EINVAL, "port out of range (1-65535)");
    }
    if (v == 0)
        FAIL(out, FERRY_EINVAL, "port out of range (1-65535)");
    out->port = (uint16_t) v;
    out->port_given = true;
    return 0;
}

/* Why byte s[at] (a U_BAD one) is refused, and in which part it sits: found
 * only on this error path, by the same landmarks the parser uses. */
static const char *bad_byte_reason(const char *s, size_t at)
{
    static const char *const reasons[4][PART_COUNT] = {
        {"non-ASCII byte in the scheme", "non-ASCII byte in the host (use the xn-- form)",
         "non-ASCII byte in the path (percent-encode it)",
         "non-ASCII byte in the query (percent-encode it)", "non-ASCII byte in the fragment"},
        {"space in the scheme", "space in the host", "space in the path (write %20)",
         "space in the query (write %20 or +)", "space in the fragment"},
        {"control character in the scheme", "control character in the host",
         "control character in the path", "control character in the query",
         "control character in the fragment"},
        {"backslash in the scheme", "backslash in the host", "backslash in the path (write %5C)",
         "backslash in the query (write %5C)", "backslash in the fragment"},
    };
    unsigned char c = (unsigned char) s[at];
    int kind = c >= 0x80 ? 0 : c == ' ' ? 1 : c == '\\' ? 3 : 2;
    int part = PART_SCHEME;
    for (size_t i = 0, slashes = 0; i < at; i++) {
        char d = s[i];
        if (part == PART_SCHEME && d == '/' && ++slashes == 2)
            part = PART_HOST;
        else if (part == PART_HOST && d == '/')
            part = PART_PATH;
        if ((part == PART_HOST || part == PART_PATH) && d == '?')
            part = PART_QUERY;
        if (part != PART_SCHEME && d == '#')
            part = PART_FRAGMENT;
    }
    return reasons[kind][part];
}

int url_parse(const char *s, size_t len, url_parts *out)
{
    if (!out)
        return FERRY_EINVAL;
    if (!s || len == 0) {
        memset(out, 0, sizeof(*out));
        FAIL(out, FERRY_EINVAL, "empty URL");
    }
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < len; i++)
        if (CLASS(s[i], U_BAD))
            FAIL(out, FERRY_EINVAL, bad_byte_reason(s, i));

    /* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then "://" */
    size_t i = 0;
    if (lower(s[0]) < 'a' || lower(s[0]) > 'z')
        FAIL(out, FERRY_EINVAL, "not an absolute URL (http://host/...)"); /* scheme: a letter */
    while (i < len && CLASS(s[i], U_SCHEME))
        i++;
    if (len - i < 3 || memcmp(s + i, "://", 3) != 0)
        FAIL(out, FERRY_EINVAL, "not an absolute URL (http://host/...)");
    if (lit_ieq(s, i, "https"))
        out->https = true;
    else if (!lit_ieq(s, i, "http"))
        FAIL(out, FERRY_ENOTSUP, "scheme is not http or https");
    out->scheme = (ferry_str){s, i};
    i += 3;

    /* authority: up to '/', '?', '#' or the end */
    size_t a = i, ats = 0;
    while (i < len && s[i] != '/' && s[i] != '?' && s[i] != '#') {
        if (s[i] == '@')
            ats++;
        i++;
    }
    if (ats > 1)
        FAIL(out, FERRY_EINVAL, "more than one '@' before the host");
    if (ats == 1)
        FAIL(out, FERRY_ENOTSUP, "user:password@ in the URL (send an Authorization header)");
    int r = parse_authority(s + a, i - a, out);
    if (r < 0)
        return r;

    /* path: '/' up to '?', '#' or the end */
    size_t p = i;
    while (i < len && s[i] != '?' && s[i] != '#')
        i++;
    if ((r = check_component(s + p, i - p, "", PART_PATH, out)) < 0)
        return r;
    out->path = i > p ? (ferry_str){s + p, i - p} : (ferry_str){root_path, 1};

    /* query: '?' up to '#' or the end */
    if (i < len && s[i] == '?') {
        size_t q = i;
        while (i < len && s[i] != '#')
            i++;
        if ((r = check_component(s + q, i - q, "?", PART_QUERY, out)) < 0)
            return r;
        out->query = (ferry_str){s + q, i - q};
    }

    /* fragment: checked, then dropped */
    if (i < len)
        return check_component(s + i, len - i, "?#", PART_FRAGMENT, out);
    return 0;
}

int url_zone_index(const url_parts *u, uint32_t *index)
{
    *index = 0;
    if (!u->zone.len)
        return 0;
    char name[URL_ZONE_MAX + 1];
    if (u->zone.len > URL_ZONE_MAX)
        return FERRY_EINVAL;
    memcpy(name, u->zone.p, u->zone.len);
    name[u->zone.len] = '\0';
    uint64_t v = 0;
    size_t i = 0;
    while (i < u->zone.len && name[i] >= '0' && name[i] <= '9' && v <= UINT32_MAX)
        v = v * 10 + (uint64_t) (name[i++] - '0');
    if (i == u->zone.len && v <= UINT32_MAX) {
        *index = (uint32_t) v; /* RFC 4007 §11.2: a number is the index itself */
        return 0;
    }
    unsigned k = if_nametoindex(name);
    if (k == 0)
        return FERRY_EAI_NONAME;
    *index = k;
    return 0;
}

int ferry_url_check(const char *url, const char **why)
{
    url_parts u;
    int rc = url ? url_parse(url, strlen(url), &u) : FERRY_EINVAL;
    if (why)
        *why = rc == 0 ? NULL : url ? u.why : "no URL";
    /* ferry_request's codes: to a caller, a bad URL is a bad argument */
    return rc == FERRY_EBADHOST || rc == FERRY_EBADTARGET ? FERRY_EINVAL : rc;
}

/* ---- writers ------------------------------------------------------------------- */

/* An output cursor: counts every byte, stores those that fit. */
typedef struct {
    char *p;
    size_t cap, n;
} writer;

static void put(writer *w, const char *s, size_t n)
{
    if (w->n < w->cap) {
        size_t room = w->cap - w->n;
        memcpy(w->p + w->n, s, n < room ? n : room);
    }
    w->n += n;
}

static void put_lower(writer *w, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (w->n < w->cap)
            w->p[w->n] = lower(s[i]);
        w->n++;
    }
}

static void put_port(writer *w, uint16_t port)
{
    char d[6];
    size_t k = sizeof(d);
    d[--k] = 0;
    do {
        d[--k] = (char) ('0' + port % 10);
        port /= 10;
    } while (port);
    put(w, ":", 1);
    put(w, d + k, sizeof(d) - 1 - k);
}

/* NUL-terminate when there is room; the writers' common return. */
static int finish(writer *w, size_t *written)
{
    if (written)
        *written = w->n;
    if (w->n >= w->cap)
        return FERRY_ENOBUFS;
    w->p[w->n] = 0;
    return 0;
}

int url_origin_key(const url_parts *u, char *out, size_t cap, size_t *written)
{
    writer w = {out, out ? cap : 0, 0};
    put(&w, u->https ? "https://" : "http://", u->https ? 8 : 7);
    if (u->is_ipv6) {
        char canon[64];
        if (uv_inet_ntop(AF_INET6, u->addr, canon, sizeof(canon)) != 0)
            return FERRY_EINVAL; /* not from url_parse */
        put(&w, "[", 1);
        put(&w, canon, strlen(canon));
        if (u->zone.len) {
            put(&w, "%25", 3);
            put(&w, u->zone.p, u->zone.len);
        }
        put(&w, "]", 1);
    } else {
        put_lower(&w, u->host.p, u->host.len);
    }
    put_port(&w, u->port);
    return finish(&w, written);
}

int url_host_header(const url_parts *u, char *out, size_t cap, size_t *written)
{
    writer w = {out, out ? cap : 0, 0};
    if (u->is_ipv6)
        put(&w, "[", 1);
    put(&w, u->host.p, u->host.len);
    if (u->is_ipv6)
        put(&w, "]", 1);
    if (u->port != (u->https ? 443 : 80))
        put_port(&w, u->port);
    return finish(&w, written);
}

/* ---- forms --------------------------------------------------------------------- */

static void put_form_component(writer *w, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];
        if (CLASS(c, U_FORM)) {
            put(w, s + i, 1);
        } else if (c == ' ') {
            put(w, "+", 1);
        } else {
            char e[3] = {'%', hex_upper[c >> 4], hex_upper[c & 15]};
            put(w, e, 3);
        }
    }
}

/* Component i of the pairs, from slices or from C strings. */
static ferry_str form_component(const ferry_str *slices, const char *const *cstrs, size_t i)
{
    return slices ? slices[i] : (ferry_str){cstrs[i], cstrs[i] ? strlen(cstrs[i]) : 0};
}

/* Both encoders: exactly one of slices and cstrs is set (unless npairs is 0). */
static int form_encode(const ferry_str *slices, const char *const *cstrs, size_t npairs,
                       char *out, size_t cap, size_t *written)
{
    writer w = {out, out ? cap : 0, 0};
    if (written)
        *written = 0;
    if (npairs > SIZE_MAX / 2 || (npairs && !slices && !cstrs))
        return FERRY_EINVAL;
    size_t total = 0; /* the encoded length, checked for overflow before writing */
    for (size_t i = 0; i < 2 * npairs; i++) {
        ferry_str c = form_component(slices, cstrs, i);
        if (!c.p && (c.len || cstrs))
            return FERRY_EINVAL;
        if (c.len > (SIZE_MAX - 2 - total) / 3)
            return FERRY_ENOMEM; /* the result would not fit in memory */
        total += 3 * c.len + 1;
    }
    for (size_t i = 0; i < npairs; i++) {
        ferry_str k = form_component(slices, cstrs, 2 * i);
        ferry_str v = form_component(slices, cstrs, 2 * i + 1);
        if (i > 0)
            put(&w, "&", 1);
        put_form_component(&w, k.p, k.len);
        put(&w, "=", 1);
        put_form_component(&w, v.p, v.len);
    }
    return finish(&w, written);
}

int url_form_encode_n(const ferry_str *pairs, size_t npairs, char *out, size_t cap,
                      size_t *written)
{
    return form_encode(pairs, NULL, npairs, out, cap, written);
}

int url_form_encode(const char *const *pairs, size_t npairs, char *out, size_t cap,
                    size_t *written)
{
    return form_encode(NULL, pairs, npairs, out, cap, written);
}

/* ---- decoding ------------------------------------------------------------------ */

static int decode(const char *s, size_t len, char *out, size_t cap, size_t *written, bool plus)
{
    size_t need = 0;
    if (written)
        *written = 0;
    if (!s && len)
        return FERRY_EINVAL;
    for (size_t i = 0; i < len; i++, need++) {
        if (s[i] == '%') {
            if (len - i < 3 || hex_value(s[i + 1]) < 0 || hex_value(s[i + 2]) < 0)
                return FERRY_EINVAL;
            i += 2;
        }
    }
    if (written)
        *written = need;
    if (need > cap || (need && !out))
        return FERRY_ENOBUFS;
    /* Writing never overtakes reading (o <= i), so out == s is safe. */
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            c = (char) (hex_value(s[i + 1]) << 4 | hex_value(s[i + 2]));
            i += 2;
        } else if (plus && c == '+') {
            c = ' ';
        }
        out[o++] = c;
    }
    return 0;
}

int url_percent_decode(const char *s, size_t len, char *out, size_t cap, size_t *written)
{
    return decode(s, len, out, cap, written, false);
}

int url_form_decode(const char *s, size_t len, char *out, size_t cap, size_t *written)
{
    return decode(s, len, out, cap, written, true);
}
