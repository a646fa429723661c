/* url.h — absolute http(s) URLs in, zero-copy pieces out; form encoding and
 * percent-decoding for the client (and later the server's static files).
 *
 * What the client needs from a URL is small: where to connect (scheme, host,
 * port), what to put on the request line (the request-target) and in Host,
 * and a key to pool sockets by. url_parse() gives exactly that as slices of
 * the caller's string: no allocation, no copy, no normalisation of what is
 * sent. It is deliberately narrower than the WHATWG URL parser (what a
 * browser does with whatever a user typed) and stricter than RFC 3986 where
 * RFC 3986 leaves room for two programs to read one URL differently: the
 * caller is a program, so a URL that is not plainly one thing is an error.
 *
 *     url_parts u;
 *     int r = url_parse(s, strlen(s), &u);              // 0 or a FERRY_E* code
 *     // connect to u.host (u.is_ipv4/u.is_ipv6: u.addr holds the bytes) on u.port
 *     // request line: method, ' ', u.path, u.query (back to back), " HTTP/1.1"
 *     char host[URL_HOST_HEADER_MAX], key[URL_ORIGIN_KEY_MAX];
 *     size_t n;
 *     url_host_header(&u, host, sizeof(host), &n);      // always fits: returns 0
 *     url_origin_key(&u, key, sizeof(key), &n);         // "http://example.com:80"
 *
 * ---- Decisions (each has cases in tests/test_url.c) ------------------------
 *
 * Input. Bytes s[0..len), not necessarily NUL-terminated. Nothing is trimmed.
 * Any byte that never belongs in a URL — space, other controls (0x00-0x1f,
 * 0x7f), bytes >= 0x80 (non-ASCII, UTF-8 included) and backslash — is
 * FERRY_EINVAL wherever it appears, the fragment included. The caller
 * percent-encodes (%20, %C3%A9, %5C) and converts international host names
 * to their ASCII "xn--" form. Backslash is refused because WHATWG parsers
 * read it as '/' in http URLs while others keep it: the same string would
 * name two different hosts or paths.
 *
 * Scheme. "http" or "https", in any case ("HTTP://" is fine), followed by
 * "://". Another well-formed scheme followed by "://" (ftp://, ws://,
 * file://) is FERRY_ENOTSUP: a URL ferry understands but does not fetch.
 * Anything else — no scheme, a relative reference ("/x", "example.com"),
 * "http:x", "http:/x", "localhost:8080" — is FERRY_EINVAL. https is parsed
 * like http; refusing it until TLS lands is the client's business.
 *
 * Authority. It runs from "//" to the first '/', '?' or '#'. Userinfo is
 * refused: one '@' in it ("http://user:pass@host/") is FERRY_ENOTSUP —
 * credentials in URLs end up in logs, histories and Referer headers; send an
 * Authorization header instead. More than one '@' ("http://a@b@c/", the
 * classic which-host-is-it trick) is malformed: FERRY_EINVAL.
 *
 * Host (errors are FERRY_EBADHOST). Three kinds, one of them exactly:
 *   - IPv6 literal in brackets: "[::1]". Validated with uv_inet_pton; at
 *     most 45 characters between the brackets. `host` is the address as
 *     written without the brackets, `is_ipv6` is set and `addr` holds the 16
 *     bytes. A zone (RFC 6874: "[fe80::1%25eth0]") is accepted: `zone` is
 *     what follows "%25" (1-63 unreserved characters, no escapes), `host`
 *     stays zone-less. A bare '%' ("[fe80::1%eth0]"), an empty zone, IPvFuture
 *     ("[v1.x]") and anything but ':' port, '/', '?', '#' or the end after ']'
 *     are errors.
 *   - IPv4 literal: four decimal octets 0-255 without leading zeros
 *     ("10.0.0.1"). `is_ipv4` is set and addr[0..4) holds the bytes.
 *   - Registered name: letters, digits, '-', '.' and '_' only (no percent-
 *     escapes, no sub-delims), labels of 1-63 characters, at most 253
 *     characters plus an optional trailing dot, which is kept
 *     ("example.com." is its own origin, as in browsers).
 *   A host whose last label looks like a number (all digits, or "0x" and hex
 *   digits) must be a valid IPv4 literal, else it is an error: "127.1",
 *   "0x7f.0.0.1", "0177.0.0.1", "2130706433", "1.2.3.4." and "a.123" are
 *   refused. getaddrinfo() would read several of them as 127.0.0.1 while a
 *   check on the string saw a name — the SSRF filter bypass. So a host this
 *   parser calls a name is never a number to the resolver.
 *   The host slice keeps the case it was written in (the Host header sends it
 *   as written); url_origin_key() is where case stops mattering. Empty hosts
 *   ("http:///x", "http://:80/") are errors.
 *
 * Port (errors are FERRY_EINVAL). Decimal digits after ':', value 1-65535;
 * leading zeros are allowed ("0080" is 80), anything else (sign, letters, a
 * second ':', 0, 65536) is an error. An empty port ("http://h:/") means the
 * default, as RFC 3986 and WHATWG say. `port` is always set (80 for http,
 * 443 for https when none is given); `port_given` says whether the URL had
 * digits.
 *
 * Path and query (errors are FERRY_EBADTARGET). Sent exactly as written: no
 * dot-segment removal ("/a/../b" goes out as is), no case change, no
 * re-encoding; a caller that wants normalisation does it before. Allowed:
 * RFC 3986's pchar set (unreserved, sub-delims, ':', '@'), '/', '?' in the
 * query, percent-escapes, plus '[' ']' '|' '^', which browsers send
 * unencoded and servers accept. Refused: '"' '<' '>' '`' '{' '}' — RFC 3986
 * excludes them and WHATWG encodes them in paths — and every '%' not
 * followed by two hex digits ("%zz", "%4", a final "%"). `path` starts with
 * '/' and runs to '?', '#' or the end; when the URL has no path it points at
 * a static "/" (not into the input). `query` runs from '?' (included) to '#'
 * or the end: {NULL, 0} when absent, "?" when present but empty. The
 * request-target is `path` followed by `query`.
 *
 * Fragment. Everything from the first '#' is checked like the query (with
 * '#' also allowed: "#/route#anchor" is common) and then dropped: it is never
 * sent.
 *
 * ---- Writers and decoders ----------------------------------------------------
 * Buffers are always the caller's: nothing here allocates. Writers of text
 * (url_origin_key, url_host_header, url_form_encode*) NUL-terminate and
 * return FERRY_ENOBUFS when cap < *written + 1, with *written set to the
 * length needed (without the NUL), snprintf style — call with cap 0 to size a
 * buffer. Decoders produce bytes (possibly NULs) and do not NUL-terminate.
 */
#ifndef FERRY_URL_H
#define FERRY_URL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry.h"

#define URL_HOST_MAX 254 /* longest host slice: 253 characters and a trailing dot */
#define URL_ZONE_MAX 63  /* longest IPv6 zone */
/* Buffers that always fit url_origin_key() and url_host_header(), NUL included:
 * "https://" host ":" 5 digits, and host ":" 5 digits (an IPv6 zone with its
 * brackets and "%25" is shorter than a longest name). */
#define URL_ORIGIN_KEY_MAX  (8 + URL_HOST_MAX + 6 + 1)
#define URL_HOST_HEADER_MAX (URL_HOST_MAX + 6 + 1)

typedef struct url_parts {
    ferry_str scheme; /* "http" or "https" as written, any case */
    ferry_str host;   /* name or IPv4 as written; IPv6 without brackets and zone */
    ferry_str zone;   /* IPv6 zone after "%25", as written; {NULL, 0} if none */
    ferry_str path;   /* starts with '/'; a static "/" when the URL has no path */
    ferry_str query;  /* '?' and the query; {NULL, 0} when absent */
    uint16_t port;    /* the URL's port, or 80 / 443 */
    bool https;       /* scheme is https */
    bool port_given;  /* the URL had port digits (even if they name the default) */
    bool is_ipv4;     /* host is an IPv4 literal: addr[0..4) */
    bool is_ipv6;     /* host is an IPv6 literal: addr[0..16) */
    uint8_t addr[16]; /* the literal's bytes, network order; zeros for names */
    const char *why;  /* after an error: a static reason ("port out of range
                         (1-65535)", ...); NULL after success */
} url_parts;

/* Parse an absolute http(s) URL from s[0..len) (see the decisions above).
 * Returns 0 with *out filled, its slices pointing into s (except the static
 * "/" path), or FERRY_EINVAL (malformed, bad bytes, bad port), FERRY_ENOTSUP
 * (other scheme, userinfo), FERRY_EBADHOST or FERRY_EBADTARGET. After an
 * error only out->why is defined: a static string saying why, the text
 * ferry_url_check hands out. */
int url_parse(const char *s, size_t len, url_parts *out);

/* The pool key of u's origin: lowercase scheme "://" host ":" port, the port
 * always written ("http://example.com:80"). Names are lowercased; IPv6 is
 * written canonically (RFC 5952, via uv_inet_ntop) in brackets with its zone
 * ("https://[::1]:443", "http://[fe80::1%25eth0]:80"; zones keep their case,
 * interface names are case-sensitive). So URLs that differ only in case,
 * default port or IPv6 spelling share a key. URL_ORIGIN_KEY_MAX always fits. */
int url_origin_key(const url_parts *u, char *out, size_t cap, size_t *written);

/* The Host header value (RFC 9110 §7.2): the host as written, in brackets for
 * IPv6 (without the zone, which means nothing to the server), then ":" port
 * unless the port is the scheme's default — even when given explicitly.
 * URL_HOST_HEADER_MAX always fits. */
int url_host_header(const url_parts *u, char *out, size_t cap, size_t *written);

/* The scope id of u's IPv6 zone, for sin6_scope_id: 0 without a zone, the
 * number for a numeric zone ("%251"), else the interface of that name
 * (if_nametoindex: "%25lo", "%25eth0"). glibc's getaddrinfo resolves zone
 * names only for link-local addresses ("[::1%25lo]" was "unknown host
 * name"), so literals never go through it. 0, or FERRY_EAI_NONAME when no
 * interface has that name. */
int url_zone_index(const url_parts *u, uint32_t *index);

/* application/x-www-form-urlencoded, the WHATWG URL standard's urlencoded
 * serializer: "k1=v1&k2=v2"; in keys and values, ASCII letters, digits and
 * "*-._" are kept, space becomes '+', every other byte becomes %XX (uppercase
 * hex). Bytes are taken as they are: text should be UTF-8 already, as the
 * standard encodes it. `pairs` holds 2 * npairs NUL-terminated strings, key,
 * value, key, value...; a NULL entry is FERRY_EINVAL. npairs 0 gives "".
 * Returns 0, FERRY_ENOBUFS (see the writers' rule above) or FERRY_EINVAL. */
int url_form_encode(const char *const *pairs, size_t npairs, char *out, size_t cap,
                    size_t *written);

/* The same over byte slices (2 * npairs of them), so keys and values may hold
 * NUL bytes; a slice {NULL, 0} is empty, {NULL, n > 0} is FERRY_EINVAL. */
int url_form_encode_n(const ferry_str *pairs, size_t npairs, char *out, size_t cap,
                      size_t *written);

/* Decode percent-escapes in s[0..len) into out: "%41" becomes 'A', every
 * other byte is copied. Strict: a '%' not followed by two hex digits is
 * FERRY_EINVAL (WHATWG would copy it; a file server must not guess). '+' is
 * left alone (it is a space only in forms: see url_form_decode).
 * The output is bytes, not a path: "%2F" becomes '/', "%00" a NUL, "%2E%2E"
 * "..". A caller that maps a decoded path to files must refuse NUL, and
 * decide whether a decoded '/' may split segments (a static file server
 * should split the raw path on '/' first and decode each segment, refusing
 * segments that decode to '/', "." or ".."). That is the caller's concern.
 * The output is never longer than the input, so cap >= len always fits, and
 * out == s (in place) is allowed; other overlaps are not. Returns 0 with
 * *written bytes in out, FERRY_EINVAL, or FERRY_ENOBUFS with *written the
 * length needed. No NUL is appended. */
int url_percent_decode(const char *s, size_t len, char *out, size_t cap, size_t *written);

/* url_percent_decode() for one key or value of a form body: '+' also
 * becomes a space. Splitting the body on '&' and '=' is the caller's (encoded
 * keys and values never contain either). */
int url_form_decode(const char *s, size_t len, char *out, size_t cap, size_t *written);

#endif /* FERRY_URL_H */
