/* cookie.h — an RFC 6265 cookie jar: Set-Cookie in, Cookie out.
 *
 * The client's agent keeps one jar (when the caller turns cookies on) so that
 * a chain of requests keeps a session the way a browser would: every
 * Set-Cookie value of a response goes through cookie_jar_set(), and every
 * request asks cookie_jar_header() for its Cookie header value.
 *
 * What is implemented, and where it follows RFC 6265bis rather than RFC 6265
 * (both are cited by section; "bis" is draft-ietf-httpbis-rfc6265bis):
 *   - Parsing (§5.2): the whole value is ignored if it holds a control
 *     character other than HTAB (bis §5.6). A name-value pair without '=' is a
 *     cookie with an empty name (bis §5.6; RFC 6265 ignored it): "abc" and
 *     "=abc" are both the nameless cookie "abc", sent back as just "abc"
 *     (bis §5.8.3). Both name and value empty: ignored. Attributes are
 *     case-insensitive, the last one of each kind wins, unknown or malformed
 *     ones are skipped, and an attribute value over 1024 bytes is skipped
 *     (bis §5.6).
 *   - Expires uses the tolerant date algorithm of §5.1.1 (RFC 1123, RFC 850,
 *     asctime and Netscape's "DD-Mon-YYYY" forms, two-digit years: 70-99 are
 *     19xx, 00-69 are 20xx). Max-Age wins over Expires. A lifetime longer than
 *     limits.max_age_s (400 days by default, bis §5.6.1/§5.6.2) is cut to it.
 *   - Domain (§5.2.3, §5.3 step 5-6): a leading dot is dropped, the value is
 *     lower-cased and must domain-match the request host, else the cookie is
 *     ignored. A Domain that is a public suffix (see cookie_is_public_suffix)
 *     is only accepted when it equals the host, and then makes a host-only
 *     cookie. A host that is an IP address gets host-only cookies only: a
 *     Domain equal to the address is accepted as host-only, anything else
 *     ignored. Non-ASCII Domain values are ignored (bis §5.7).
 *   - Path: default-path (§5.1.4) when missing or not starting with '/'.
 *   - Secure cookies are accepted only from secure requests, and a non-secure
 *     request cannot set a cookie that would shadow an existing Secure one
 *     ("Leave Secure Cookies Alone", bis §5.7 steps 14-16).
 *   - __Secure- and __Host- prefixes (bis §4.1.3), matched case-insensitively
 *     as the latest bis drafts and browsers do, including a nameless cookie
 *     whose value starts with a prefix (rejected).
 *   - Identity is (name, domain, host-only, path) (bis §5.7): replacing keeps
 *     the old creation time; a Set-Cookie that is already expired deletes the
 *     matching cookie and stores nothing.
 *   - HttpOnly and SameSite are stored. ferry is an HTTP client with no
 *     scripts and no notion of "site for cookies", so HttpOnly cookies are
 *     always sent and SameSite never filters a request.
 *
 * Limits (§6.1) and eviction (§5.3, bis §5.7 step 24): a cookie whose name
 * plus value exceeds limits.max_cookie_bytes is ignored. After storing, if
 * the new cookie's domain holds more than limits.max_per_domain cookies, or
 * the jar more than limits.max_total, the jar first drops every expired
 * cookie, then evicts the least recently used cookie (oldest last access:
 * set, replaced, or sent in a header) until under the limit: for the
 * per-domain limit, among that domain's cookies, those without the Secure
 * flag first (bis §5.7: an insecure site cannot push out a secure cookie);
 * for the total limit, among all cookies. The new cookie itself may be the
 * one evicted (cookie_jar_set() then says COOKIE_IGNORED).
 *
 * Time is the caller's: every call that needs it takes now_s (seconds since
 * the Unix epoch), so tests inject it and the jar never reads a clock.
 *
 * Cost: the jar is an array of pointers; set and header are O(n) in the
 * cookies stored (n <= max_total, 3000 by default), and header sorts what
 * matches. Plenty for a client; a hash by domain can come when a profile
 * says so.
 *
 * Thread model: a jar is used by one thread at a time (its agent's loop).
 */
#ifndef FERRY_COOKIE_H
#define FERRY_COOKIE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits; cookie_jar_init() takes NULL for all the defaults. */
typedef struct cookie_limits {
    size_t max_cookie_bytes; /* name + value bytes; default 4096 (RFC 6265 §6.1) */
    size_t max_per_domain;   /* cookies sharing one domain field; default 50 */
    size_t max_total;        /* cookies in the jar; default 3000 */
    int64_t max_age_s;       /* longest lifetime in seconds; default 400 days; 0 = no cap */
} cookie_limits;

// clang-format off
#define COOKIE_LIMITS_DEFAULT {4096, 50, 3000, INT64_C(400) * 24 * 3600}
// clang-format on

/* Expiry of a cookie that has none (a session cookie). */
#define COOKIE_SESSION INT64_MAX

typedef enum {
    COOKIE_SAMESITE_DEFAULT = 0, /* no SameSite attribute, or an unknown value */
    COOKIE_SAMESITE_NONE,
    COOKIE_SAMESITE_LAX,
    COOKIE_SAMESITE_STRICT,
} cookie_samesite;

/* One stored cookie. Read-only for callers; name, value, domain and path are
 * also NUL-terminated. All four live in the cookie's single allocation. */
typedef struct cookie {
    const char *name;
    const char *value;
    const char *domain; /* lower-case, no leading dot; the request host if host_only */
    const char *path;
    size_t name_len, value_len, domain_len, path_len;
    int64_t expiry_s;      /* COOKIE_SESSION when not persistent */
    int64_t creation_s;    /* kept when the cookie is replaced */
    int64_t last_access_s; /* last set or sent */
    bool persistent;       /* Max-Age or Expires was given */
    bool host_only;        /* sent to `domain` exactly, not to its subdomains */
    bool secure;           /* sent over secure requests only */
    bool http_only;
    cookie_samesite samesite;
    /* private to cookie.c */
    uint64_t _created_seq; /* tie-breaks equal creation_s: order of arrival */
    uint64_t _access_seq;  /* tie-breaks equal last_access_s */
} cookie;

typedef struct cookie_jar {
    cookie_limits limits;
    /* private to cookie.c */
    cookie **_items;   /* the cookies, in no particular order */
    cookie **_scratch; /* header(): the matching cookies, sorted; same capacity */
    size_t _count;
    size_t _cap;
    uint64_t _seq; /* counts sets and sends, for the tie-breakers */
} cookie_jar;

/* What cookie_jar_set() did with a well-formed call (never an error: a
 * Set-Cookie the spec says to ignore is not the caller's failure). */
typedef enum {
    COOKIE_STORED = 0,   /* a new cookie */
    COOKIE_REPLACED = 1, /* replaced one with the same name/domain/host-only/path */
    COOKIE_EXPIRED = 2,  /* already expired: the matching cookie, if any, is gone */
    COOKIE_IGNORED = 3,  /* rejected per the spec (malformed, wrong domain, prefix, size ...) */
} cookie_set_result;

/* Ready an empty jar with `limits` (NULL = COOKIE_LIMITS_DEFAULT). Allocates
 * nothing. Returns 0, or FERRY_EINVAL for a NULL jar, a zero max_* limit, a
 * negative max_age_s, or max_per_domain > max_total. */
int cookie_jar_init(cookie_jar *jar, const cookie_limits *limits);

/* Free every cookie and the jar's arrays; the jar is then empty and may be
 * used again (it keeps its limits). NULL is a no-op. */
void cookie_jar_free(cookie_jar *jar);

/* Process one Set-Cookie field value received in the response to a request
 * for req_host (without port; IPv6 with or without brackets) and req_path
 * (the request-target's path; a query or fragment is cut off). The host is
 * compared lower-cased. secure_request is non-zero for https (or any channel
 * the caller deems secure). None of the strings needs a NUL.
 *
 * Returns a cookie_set_result (>= 0), or FERRY_EINVAL (NULL jar or string,
 * empty host, a control byte or space in host or path) or FERRY_ENOMEM (the
 * jar is unchanged).
 *
 * Allocates, owned by the jar: one block per stored cookie (the struct and
 * its four strings), freed when it is replaced, expired, evicted, cleared or
 * by cookie_jar_free(); and the jar's two pointer arrays, grown as it fills
 * (never beyond max_total + 1 entries), freed by cookie_jar_free(). */
int cookie_jar_set(cookie_jar *jar, const char *set_cookie, size_t len, const char *req_host,
                   size_t host_len, const char *req_path, size_t path_len, int secure_request,
                   int64_t now_s);

/* The Cookie header value for a request to host/path (§5.4, bis §5.8.3):
 * every unexpired cookie whose domain matches (exactly when host-only), whose
 * path path-matches, and that is not Secure unless secure_request; sorted by
 * longer path first, then earlier creation; joined as "n1=v1; n2=v2" (a
 * nameless cookie is its value alone). The value never holds CR, LF or NUL.
 *
 * Writes the value and a terminating NUL to out[0..cap) and its length
 * (without the NUL) to *written, and marks the cookies sent (last access =
 * now_s). No cookie matches: returns 0 with *written = 0 (send no header).
 * If cap is too small for value and NUL: returns FERRY_ENOBUFS, *written is
 * the length needed (without the NUL), out is untouched and nothing is
 * marked, so a caller may measure first with out = NULL, cap = 0.
 * Expired cookies met on the way are freed. Also FERRY_EINVAL for NULL
 * arguments, an empty host, or a control byte or space in host or path.
 *
 * Allocates nothing: it sorts in the jar's scratch array. */
int cookie_jar_header(cookie_jar *jar, const char *host, size_t host_len, const char *path,
                      size_t path_len, int secure_request, int64_t now_s, char *out, size_t cap,
                      size_t *written);

/* Drop every non-persistent (session) cookie, as a browser does on exit.
 * Returns how many were dropped. */
size_t cookie_jar_clear_session(cookie_jar *jar);

/* Drop every cookie that has expired at now_s. Returns how many. */
size_t cookie_jar_purge_expired(cookie_jar *jar, int64_t now_s);

/* Cookies stored, expired ones not yet dropped included. */
size_t cookie_jar_count(const cookie_jar *jar);

/* The i-th stored cookie (i < cookie_jar_count()), in no particular order;
 * valid until the jar is next changed (set, header, clear, purge, free). */
const cookie *cookie_jar_at(const cookie_jar *jar, size_t i);

/* Whether `domain` (lower-case, no leading dot, not NUL-terminated) is a
 * public suffix such as "com" or "co.uk", on which no Domain cookie may be
 * set. Built with FERRY_HAVE_LIBPSL, this asks libpsl's built-in copy of the
 * Public Suffix List; without it, a minimal rule stands in: a name without a
 * dot ("com", "localhost") is a public suffix, multi-label suffixes such as
 * "co.uk" are not recognised. */
bool cookie_is_public_suffix(const char *domain, size_t len);

/* "libpsl" or "builtin": which rule cookie_is_public_suffix() uses. */
const char *cookie_psl_backend(void);

/* Parse a cookie date with the algorithm of RFC 6265 §5.1.1. Returns 0 and
 * the seconds since the Unix epoch (UTC) in *out, or FERRY_EINVAL. */
int cookie_parse_date(const char *s, size_t len, int64_t *out);

#endif /* FERRY_COOKIE_H */
