/* cookie.c — the RFC 6265 cookie jar (see cookie.h for the rules it follows).
 *
 * Owns every stored cookie (one allocation each: the struct followed by its
 * name, value, domain and path, each NUL-terminated) and two pointer arrays
 * of equal capacity: _items, the cookies in no order, and _scratch, where
 * cookie_jar_header() gathers and sorts the matching ones without
 * allocating. Removal swaps the last item into the hole, so order carries no
 * meaning; creation and access order live in the cookies' own sequence
 * numbers.
 *
 * The file reads top-down in the order a Set-Cookie travels: byte helpers,
 * the §5.1.1 date algorithm, host and path matching, the public-suffix rule,
 * Set-Cookie parsing into a `parsed` record that points into the caller's
 * bytes, then storage (replacement, expiry, limits) and retrieval.
 */
#include "util/cookie.h"

#include <stdlib.h>
#include <string.h>

#ifdef FERRY_HAVE_LIBPSL
#include <libpsl.h>
#endif

#include "ferry.h"

/* bis §5.6: an attribute value longer than this is ignored. */
#define COOKIE_MAX_ATTR_VALUE 1024

/* ---- bytes ------------------------------------------------------------------ */

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char) (c + 32) : c;
}

/* Equal ignoring ASCII case; b is lower-case or compared the same way. */
static bool ieq(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn) return false;
    for (size_t i = 0; i < an; i++)
        if (lower((unsigned char) a[i]) != lower((unsigned char) b[i])) return false;
    return true;
}

static bool iprefix(const char *s, size_t n, const char *prefix)
{
    size_t pn = strlen(prefix);
    return n >= pn && ieq(s, pn, prefix, pn);
}

static bool bytes_eq(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

static void trim(const char **s, size_t *n)
{
    while (*n > 0 && is_wsp((*s)[0])) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && is_wsp((*s)[*n - 1]))
        (*n)--;
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int64_t add_sat(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b) return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b) return INT64_MIN;
    return a + b;
}

/* ---- dates (§5.1.1) ----------------------------------------------------------- */

/* delimiter = %x09 / %x20-2F / %x3B-40 / %x5B-60 / %x7B-7E */
static bool is_date_delim(unsigned char c)
{
    return c == 0x09 || (c >= 0x20 && c <= 0x2F) || (c >= 0x3B && c <= 0x40) ||
           (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
}

/* Leading digits of t[0..n) as a number, if there are min..max of them (the
 * grammar's "min*maxDIGIT ( non-digit *OCTET )"). */
static bool match_digits(const char *t, size_t n, size_t min, size_t max, int *out)
{
    size_t k = 0;
    int v = 0;
    while (k < n && is_digit((unsigned char) t[k])) {
        if (k == max) return false;
        v = v * 10 + (t[k] - '0');
        k++;
    }
    if (k < min) return false;
    *out = v;
    return true;
}

/* time = hms-time ( non-digit *OCTET ); hms-time = 1*2DIGIT ":" 1*2DIGIT ":" 1*2DIGIT */
static bool match_time(const char *t, size_t n, int hms[3])
{
    size_t i = 0;
    for (int f = 0; f < 3; f++) {
        size_t k = 0;
        int v = 0;
        while (i < n && is_digit((unsigned char) t[i])) {
            if (k == 2) return false;
            v = v * 10 + (t[i] - '0');
            i++;
            k++;
        }
        if (k == 0) return false;
        hms[f] = v;
        if (f < 2) {
            if (i >= n || t[i] != ':') return false;
            i++;
        }
    }
    return true;
}

/* month = ( "jan" / ... / "dec" ) *OCTET, case-insensitive; 1..12 or 0. */
static int match_month(const char *t, size_t n)
{
    static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
    if (n < 3) return 0;
    for (int m = 0; m < 12; m++)
        if (ieq(t, 3, months + 3 * m, 3)) return m + 1;
    return 0;
}

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar
 * (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int cookie_parse_date(const char *s, size_t len, int64_t *out)
{
    if (s == NULL || out == NULL) return FERRY_EINVAL;
    bool found_time = false, found_day = false, found_month = false, found_year = false;
    int hms[3] = {0, 0, 0}, day = 0, month = 0, year = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && is_date_delim((unsigned char) s[i]))
            i++;
        size_t start = i;
        while (i < len && !is_date_delim((unsigned char) s[i]))
            i++;
        const char *t = s + start;
        size_t n = i - start;
        if (n == 0) continue;
        int v;
        if (!found_time && match_time(t, n, hms)) {
            found_time = true;
        } else if (!found_day && match_digits(t, n, 1, 2, &v)) {
            found_day = true;
            day = v;
        } else if (!found_month && (v = match_month(t, n)) != 0) {
            found_month = true;
            month = v;
        } else if (!found_year && match_digits(t, n, 2, 4, &v)) {
            found_year = true;
            year = v;
        }
    }
    if (year >= 70 && year <= 99) year += 1900;
    if (year >= 0 && year <= 69) year += 2000;
    if (!found_time || !found_day || !found_month || !found_year) return FERRY_EINVAL;
    if (day < 1 || day > 31 || year < 1601 || hms[0] > 23 || hms[1] > 59 || hms[2] > 59)
        return FERRY_EINVAL;
    if (day > days_in_month(year, month)) return FERRY_EINVAL; /* "Feb 30" does not exist */
    *out = days_from_civil(year, month, day) * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2];
    return 0;
}

/* ---- hosts and paths ------------------------------------------------------------ */

/* "[::1]" is compared as "::1", so callers may pass either form. */
static void unbracket(const char **h, size_t *n)
{
    if (*n >= 2 && (*h)[0] == '[' && (*h)[*n - 1] == ']') {
        (*h)++;
        *n -= 2;
    }
}

/* An IP address rather than a host name (§5.1.3 "string is a host name"):
 * IPv6 has a colon; for IPv4 we take the WHATWG URL rule that a host whose
 * last label is a number ("1.2.3.4", "10.1", "0x7f.1") is an address. No TLD
 * is numeric, so nothing real is misread, and every address form is caught. */
static bool is_ip(const char *h, size_t n)
{
    if (memchr(h, ':', n) != NULL) return true;
    if (n > 0 && h[n - 1] == '.') n--;
    size_t start = n;
    while (start > 0 && h[start - 1] != '.')
        start--;
    const char *l = h + start;
    size_t ln = n - start;
    if (ln == 0) return false;
    size_t i = 0;
    bool hex = ln >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X');
    if (hex) i = 2;
    for (; i < ln; i++) {
        unsigned char c = (unsigned char) l[i];
        bool ok = is_digit(c) || (hex && ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')));
        if (!ok) return false;
    }
    return true;
}

/* §5.1.3: host (any case) domain-matches domain (lower-case): identical, or
 * host is a name ending in "." + domain. */
static bool domain_match(const char *host, size_t hn, const char *dom, size_t dn)
{
    if (ieq(host, hn, dom, dn)) return true;
    if (dn == 0 || hn <= dn) return false;
    return host[hn - dn - 1] == '.' && ieq(host + hn - dn, dn, dom, dn) && !is_ip(host, hn);
}

/* The path part of a request-target: up to '?' or '#'. */
static void cut_query(const char *p, size_t *n)
{
    for (size_t i = 0; i < *n; i++)
        if (p[i] == '?' || p[i] == '#') {
            *n = i;
            return;
        }
}

/* Hosts and request paths come from a parsed URL or request-target, where
 * control bytes and spaces cannot occur; refusing them here keeps every
 * stored string free of them (and NUL-terminated at its length). */
static bool has_ctl_or_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];
        if (c <= 0x20 || c == 0x7f) return true;
    }
    return false;
}

/* §5.1.4 default-path: the directory of the request path, "/" at the top. */
static void default_path(const char *p, size_t n, const char **out, size_t *out_n)
{
    if (n == 0 || p[0] != '/') {
        *out = "/";
        *out_n = 1;
        return;
    }
    size_t last = n - 1;
    while (p[last] != '/')
        last--;
    if (last == 0) {
        *out = "/";
        *out_n = 1;
    } else {
        *out = p;
        *out_n = last;
    }
}

/* §5.1.4 path-match: req equals cpath, or cpath is a prefix of req ending in
 * '/' or followed in req by '/'. */
static bool path_match(const char *req, size_t rn, const char *cpath, size_t cn)
{
    if (cn > rn || memcmp(req, cpath, cn) != 0) return false;
    return cn == rn || cpath[cn - 1] == '/' || req[cn] == '/';
}

/* ---- public suffixes ------------------------------------------------------------ */

/* The stand-in rule: a single label ("com", "localhost", "") is a suffix. */
static bool builtin_is_public_suffix(const char *d, size_t n)
{
    return memchr(d, '.', n) == NULL;
}

#ifdef FERRY_HAVE_LIBPSL
/* libpsl's built-in list (compiled into libpsl, a static context: no
 * loading, no allocation, safe from any thread). libpsl wants a NUL-terminated
 * lower-case name; one longer than any Domain attribute can be counts as a
 * suffix, which only ever rejects a cookie. */
bool cookie_is_public_suffix(const char *domain, size_t len)
{
    const psl_ctx_t *psl = psl_builtin();
    if (psl == NULL) return builtin_is_public_suffix(domain, len);
    char buf[COOKIE_MAX_ATTR_VALUE + 1];
    if (len > COOKIE_MAX_ATTR_VALUE) return true;
    memcpy(buf, domain, len);
    buf[len] = 0;
    return psl_is_public_suffix(psl, buf) != 0;
}

const char *cookie_psl_backend(void)
{
    return psl_builtin() != NULL ? "libpsl" : "builtin";
}
#else
bool cookie_is_public_suffix(const char *domain, size_t len)
{
    return builtin_is_public_suffix(domain, len);
}

const char *cookie_psl_backend(void)
{
    return "builtin";
}
#endif

/* ---- Set-Cookie parsing (§5.2, bis §5.6) ------------------------------------------ */

/* One Set-Cookie value, parsed; slices point into the caller's bytes except
 * where noted. */
typedef struct {
    const char *name, *value, *domain, *path;
    size_t name_len, value_len, domain_len, path_len;
    bool have_max_age, have_expires, have_domain, have_path;
    int64_t max_age, expires;
    bool secure, http_only;
    cookie_samesite samesite;
} parsed;

/* bis §5.6: a control character other than HTAB voids the whole value. */
static bool has_ctl(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) return true;
    }
    return false;
}

/* Max-Age (§5.2.2): "-"? DIGIT+; saturates instead of overflowing. */
static bool parse_max_age(const char *v, size_t n, int64_t *out)
{
    size_t i = 0;
    bool neg = n > 0 && v[0] == '-';
    if (neg) i = 1;
    if (i == n) return false;
    int64_t x = 0;
    for (; i < n; i++) {
        if (!is_digit((unsigned char) v[i])) return false;
        int d = v[i] - '0';
        x = x > (INT64_MAX - d) / 10 ? INT64_MAX : x * 10 + d;
    }
    *out = neg ? -x : x;
    return true;
}

static void parse_attribute(parsed *c, const char *an, size_t ann, const char *av, size_t avn)
{
    if (avn > COOKIE_MAX_ATTR_VALUE) return;
    if (ieq(an, ann, "expires", 7)) {
        int64_t t;
        if (cookie_parse_date(av, avn, &t) == 0) {
            c->have_expires = true;
            c->expires = t;
        }
    } else if (ieq(an, ann, "max-age", 7)) {
        int64_t d;
        if (parse_max_age(av, avn, &d)) {
            c->have_max_age = true;
            c->max_age = d;
        }
    } else if (ieq(an, ann, "domain", 6)) {
        if (avn == 0) return; /* bis: an empty Domain is ignored */
        if (av[0] == '.') {
            av++;
            avn--;
        }
        c->have_domain = true;
        c->domain = av;
        c->domain_len = avn;
    } else if (ieq(an, ann, "path", 4)) {
        c->have_path = true;
        c->path = avn > 0 && av[0] == '/' ? av : NULL; /* NULL: the default-path */
        c->path_len = c->path ? avn : 0;
    } else if (ieq(an, ann, "secure", 6)) {
        c->secure = true;
    } else if (ieq(an, ann, "httponly", 8)) {
        c->http_only = true;
    } else if (ieq(an, ann, "samesite", 8)) {
        c->samesite = ieq(av, avn, "none", 4)     ? COOKIE_SAMESITE_NONE
                      : ieq(av, avn, "lax", 3)    ? COOKIE_SAMESITE_LAX
                      : ieq(av, avn, "strict", 6) ? COOKIE_SAMESITE_STRICT
                                                  : COOKIE_SAMESITE_DEFAULT;
    }
}

/* Split s into the name-value pair and the attributes. False: ignore it. */
static bool parse_set_cookie(parsed *c, const char *s, size_t n)
{
    memset(c, 0, sizeof(*c));
    if (has_ctl(s, n)) return false;
    const char *semi = memchr(s, ';', n);
    size_t nv_len = semi ? (size_t) (semi - s) : n;
    const char *eq = memchr(s, '=', nv_len);
    if (eq == NULL) { /* bis: no '=' is a nameless cookie */
        c->name = s;
        c->name_len = 0;
        c->value = s;
        c->value_len = nv_len;
    } else {
        c->name = s;
        c->name_len = (size_t) (eq - s);
        c->value = eq + 1;
        c->value_len = nv_len - c->name_len - 1;
    }
    trim(&c->name, &c->name_len);
    trim(&c->value, &c->value_len);
    if (c->name_len == 0 && c->value_len == 0) return false;

    size_t pos = nv_len;
    while (pos < n) {
        pos++; /* the ';' */
        const char *av = s + pos;
        const char *end = memchr(av, ';', n - pos);
        size_t av_len = end ? (size_t) (end - av) : n - pos;
        pos += av_len;
        const char *aeq = memchr(av, '=', av_len);
        const char *an = av, *val = "";
        size_t ann = av_len, valn = 0;
        if (aeq != NULL) {
            ann = (size_t) (aeq - av);
            val = aeq + 1;
            valn = av_len - ann - 1;
        }
        trim(&an, &ann);
        trim(&val, &valn);
        if (ann > 0) parse_attribute(c, an, ann, val, valn);
    }
    return true;
}

/* ---- storage (§5.3, bis §5.7) ----------------------------------------------------- */

int cookie_jar_init(cookie_jar *jar, const cookie_limits *limits)
{
    static const cookie_limits defaults = COOKIE_LIMITS_DEFAULT;
    if (jar == NULL) return FERRY_EINVAL;
    const cookie_limits *l = limits ? limits : &defaults;
    if (l->max_cookie_bytes == 0 || l->max_per_domain == 0 || l->max_total == 0 ||
        l->max_age_s < 0 || l->max_per_domain > l->max_total)
        return FERRY_EINVAL;
    memset(jar, 0, sizeof(*jar));
    jar->limits = *l;
    return 0;
}

void cookie_jar_free(cookie_jar *jar)
{
    if (jar == NULL) return;
    for (size_t i = 0; i < jar->_count; i++)
        free(jar->_items[i]);
    free(jar->_items);
    free(jar->_scratch);
    jar->_items = jar->_scratch = NULL;
    jar->_count = jar->_cap = 0;
}

size_t cookie_jar_count(const cookie_jar *jar)
{
    return jar ? jar->_count : 0;
}

const cookie *cookie_jar_at(const cookie_jar *jar, size_t i)
{
    return jar && i < jar->_count ? jar->_items[i] : NULL;
}

/* Room for `need` items in both arrays. On failure nothing changed. */
static int reserve(cookie_jar *jar, size_t need)
{
    if (need <= jar->_cap) return 0;
    const size_t most = jar->limits.max_total < SIZE_MAX ? jar->limits.max_total + 1 : SIZE_MAX;
    size_t cap = jar->_cap == 0 ? 16 : jar->_cap > SIZE_MAX / 2 ? SIZE_MAX : jar->_cap * 2;
    if (cap < need) cap = need;
    if (cap > most) cap = most;
    if (cap < need || cap > SIZE_MAX / sizeof(cookie *)) return FERRY_ENOMEM;
    cookie **items = realloc(jar->_items, cap * sizeof(cookie *));
    if (items == NULL) return FERRY_ENOMEM;
    jar->_items = items;
    cookie **scratch = realloc(jar->_scratch, cap * sizeof(cookie *));
    if (scratch == NULL) return FERRY_ENOMEM; /* _items grew, harmlessly; _cap did not */
    jar->_scratch = scratch;
    jar->_cap = cap;
    return 0;
}

static void remove_at(cookie_jar *jar, size_t i)
{
    free(jar->_items[i]);
    jar->_items[i] = jar->_items[--jar->_count];
}

static bool is_expired(const cookie *c, int64_t now_s)
{
    return c->expiry_s <= now_s;
}

size_t cookie_jar_purge_expired(cookie_jar *jar, int64_t now_s)
{
    size_t dropped = 0;
    if (jar == NULL) return 0;
    for (size_t i = 0; i < jar->_count;) {
        if (is_expired(jar->_items[i], now_s)) {
            remove_at(jar, i);
            dropped++;
        } else {
            i++;
        }
    }
    return dropped;
}

size_t cookie_jar_clear_session(cookie_jar *jar)
{
    size_t dropped = 0;
    if (jar == NULL) return 0;
    for (size_t i = 0; i < jar->_count;) {
        if (!jar->_items[i]->persistent) {
            remove_at(jar, i);
            dropped++;
        } else {
            i++;
        }
    }
    return dropped;
}

/* Copy src[0..n) to *at, NUL-terminate, lower-case if asked; advance *at. */
static const char *put_str(char **at, const char *src, size_t n, bool lower_case)
{
    char *d = *at;
    for (size_t i = 0; i < n; i++)
        d[i] = lower_case ? (char) lower((unsigned char) src[i]) : src[i];
    d[n] = 0;
    *at += n + 1;
    return d;
}

/* One allocation holding the struct and its four strings. */
static cookie *cookie_new(const parsed *p, const char *dom, size_t dom_len, const char *path,
                          size_t path_len)
{
    size_t strings = p->name_len + p->value_len + dom_len + path_len + 4;
    cookie *c = malloc(sizeof(*c) + strings);
    if (c == NULL) return NULL;
    memset(c, 0, sizeof(*c));
    char *at = (char *) (c + 1);
    c->name = put_str(&at, p->name, p->name_len, false);
    c->value = put_str(&at, p->value, p->value_len, false);
    c->domain = put_str(&at, dom, dom_len, true);
    c->path = put_str(&at, path, path_len, false);
    c->name_len = p->name_len;
    c->value_len = p->value_len;
    c->domain_len = dom_len;
    c->path_len = path_len;
    c->secure = p->secure;
    c->http_only = p->http_only;
    c->samesite = p->samesite;
    return c;
}

/* Index of the least recently used cookie, among those whose domain is
 * `dom` (any case) if given, cookies without Secure first when
 * prefer_insecure; SIZE_MAX if none. */
static size_t lru_victim(const cookie_jar *jar, const char *dom, size_t dom_len,
                         bool prefer_insecure)
{
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < jar->_count; i++) {
        const cookie *c = jar->_items[i];
        if (dom && !ieq(c->domain, c->domain_len, dom, dom_len)) continue;
        if (best == SIZE_MAX) {
            best = i;
            continue;
        }
        const cookie *b = jar->_items[best];
        if (prefer_insecure && b->secure != c->secure) {
            if (!c->secure) best = i;
            continue;
        }
        if (c->last_access_s < b->last_access_s ||
            (c->last_access_s == b->last_access_s && c->_access_seq < b->_access_seq))
            best = i;
    }
    return best;
}

static size_t count_domain(const cookie_jar *jar, const char *dom, size_t dom_len)
{
    size_t n = 0;
    for (size_t i = 0; i < jar->_count; i++)
        if (ieq(jar->_items[i]->domain, jar->_items[i]->domain_len, dom, dom_len)) n++;
    return n;
}

/* §5.3's eviction after inserting `fresh`, whose domain is `dom` (the
 * caller's bytes, any case: they outlive `fresh`, which may be evicted).
 * Returns false if `fresh` itself was evicted. */
static bool enforce_limits(cookie_jar *jar, const cookie *fresh, const char *dom, size_t dom_len,
                           int64_t now_s)
{
    bool fresh_alive = true;
    size_t in_dom = count_domain(jar, dom, dom_len);
    if (in_dom > jar->limits.max_per_domain || jar->_count > jar->limits.max_total) {
        cookie_jar_purge_expired(jar, now_s);
        in_dom = count_domain(jar, dom, dom_len);
    }
    while (in_dom > jar->limits.max_per_domain) {
        size_t v = lru_victim(jar, dom, dom_len, true);
        if (jar->_items[v] == fresh) fresh_alive = false;
        remove_at(jar, v);
        in_dom--;
    }
    while (jar->_count > jar->limits.max_total) {
        size_t v = lru_victim(jar, NULL, 0, false);
        if (jar->_items[v] == fresh) fresh_alive = false;
        remove_at(jar, v);
    }
    return fresh_alive;
}

int cookie_jar_set(cookie_jar *jar, const char *set_cookie, size_t len, const char *req_host,
                   size_t host_len, const char *req_path, size_t path_len, int secure_request,
                   int64_t now_s)
{
    if (jar == NULL || (set_cookie == NULL && len > 0) || req_host == NULL ||
        (req_path == NULL && path_len > 0))
        return FERRY_EINVAL;
    unbracket(&req_host, &host_len);
    if (req_path == NULL) req_path = "";
    if (host_len == 0 || has_ctl_or_space(req_host, host_len) ||
        has_ctl_or_space(req_path, path_len))
        return FERRY_EINVAL;
    cut_query(req_path, &path_len);

    parsed p;
    if (set_cookie == NULL || !parse_set_cookie(&p, set_cookie, len)) return COOKIE_IGNORED;
    if (p.name_len + p.value_len > jar->limits.max_cookie_bytes) return COOKIE_IGNORED;

    /* Expiry: Max-Age wins over Expires; both are capped at max_age_s. */
    int64_t cap = jar->limits.max_age_s ? jar->limits.max_age_s : INT64_MAX;
    int64_t expiry = COOKIE_SESSION;
    if (p.have_max_age) {
        expiry = p.max_age <= 0 ? INT64_MIN : add_sat(now_s, p.max_age < cap ? p.max_age : cap);
    } else if (p.have_expires) {
        int64_t limit = add_sat(now_s, cap);
        expiry = p.expires < limit ? p.expires : limit;
    }
    const bool persistent = p.have_max_age || p.have_expires;

    /* Domain (§5.3 steps 4-6): host-only unless a valid Domain says otherwise. */
    const char *dom = req_host;
    size_t dom_len = host_len;
    bool host_only = true;
    if (p.have_domain && p.domain_len > 0) {
        for (size_t i = 0; i < p.domain_len; i++)
            if ((unsigned char) p.domain[i] >= 0x80) return COOKIE_IGNORED; /* bis: ASCII only */
        char low[COOKIE_MAX_ATTR_VALUE];
        for (size_t i = 0; i < p.domain_len; i++)
            low[i] = (char) lower((unsigned char) p.domain[i]);
        bool same_as_host = ieq(req_host, host_len, low, p.domain_len);
        if (cookie_is_public_suffix(low, p.domain_len) || is_ip(req_host, host_len)) {
            if (!same_as_host) return COOKIE_IGNORED;
        } else if (!domain_match(req_host, host_len, low, p.domain_len)) {
            return COOKIE_IGNORED;
        } else {
            host_only = false;
            dom = p.domain; /* lower-cased when copied */
            dom_len = p.domain_len;
        }
    }

    /* Path: the attribute if it starts with '/', else the default-path. */
    const char *path = p.path;
    size_t plen = p.path_len;
    if (path == NULL) default_path(req_path, path_len, &path, &plen);

    /* Secure only from secure requests; prefixes (bis §4.1.3, §5.7). */
    if (p.secure && !secure_request) return COOKIE_IGNORED;
    if (iprefix(p.name, p.name_len, "__secure-") && !p.secure) return COOKIE_IGNORED;
    if (iprefix(p.name, p.name_len, "__host-") &&
        !(p.secure && host_only && p.have_path && plen == 1 && path[0] == '/'))
        return COOKIE_IGNORED;
    if (p.name_len == 0 &&
        (iprefix(p.value, p.value_len, "__secure-") || iprefix(p.value, p.value_len, "__host-")))
        return COOKIE_IGNORED;

    /* Leave Secure cookies alone: an insecure request cannot shadow one. The
     * stored domain is lower-case; the new one compares case-blind. */
    if (!p.secure && !secure_request) {
        for (size_t i = 0; i < jar->_count; i++) {
            const cookie *c = jar->_items[i];
            if (c->secure && bytes_eq(c->name, c->name_len, p.name, p.name_len) &&
                (domain_match(c->domain, c->domain_len, dom, dom_len) ||
                 domain_match(dom, dom_len, c->domain, c->domain_len)) &&
                path_match(path, plen, c->path, c->path_len))
                return COOKIE_IGNORED;
        }
    }

    /* The cookie this one replaces: same name, domain, host-only flag, path. */
    size_t old = SIZE_MAX;
    for (size_t i = 0; i < jar->_count; i++) {
        const cookie *c = jar->_items[i];
        if (c->host_only == host_only && bytes_eq(c->name, c->name_len, p.name, p.name_len) &&
            ieq(dom, dom_len, c->domain, c->domain_len) &&
            bytes_eq(c->path, c->path_len, path, plen)) {
            old = i;
            break;
        }
    }
    if (expiry <= now_s) { /* already expired: a deletion */
        if (old != SIZE_MAX) remove_at(jar, old);
        return COOKIE_EXPIRED;
    }

    /* Allocate everything before changing anything: ENOMEM leaves the jar as it was. */
    if (reserve(jar, jar->_count + 1) != 0) return FERRY_ENOMEM;
    cookie *c = cookie_new(&p, dom, dom_len, path, plen);
    if (c == NULL) return FERRY_ENOMEM;
    c->expiry_s = expiry;
    c->persistent = persistent;
    c->host_only = host_only;
    c->last_access_s = now_s;
    c->_access_seq = ++jar->_seq;
    if (old != SIZE_MAX) {
        c->creation_s = jar->_items[old]->creation_s;
        c->_created_seq = jar->_items[old]->_created_seq;
        free(jar->_items[old]);
        jar->_items[old] = c;
    } else {
        c->creation_s = now_s;
        c->_created_seq = c->_access_seq;
        jar->_items[jar->_count++] = c;
    }
    if (!enforce_limits(jar, c, dom, dom_len, now_s)) return COOKIE_IGNORED;
    return old != SIZE_MAX ? COOKIE_REPLACED : COOKIE_STORED;
}

/* ---- retrieval (§5.4, bis §5.8.3) ------------------------------------------------- */

/* Longer paths first, then earlier creation (arrival order on ties). */
static int cmp_for_header(const void *a, const void *b)
{
    const cookie *x = *(const cookie *const *) a;
    const cookie *y = *(const cookie *const *) b;
    if (x->path_len != y->path_len) return x->path_len > y->path_len ? -1 : 1;
    if (x->creation_s != y->creation_s) return x->creation_s < y->creation_s ? -1 : 1;
    if (x->_created_seq != y->_created_seq) return x->_created_seq < y->_created_seq ? -1 : 1;
    return 0;
}

int cookie_jar_header(cookie_jar *jar, const char *host, size_t host_len, const char *path,
                      size_t path_len, int secure_request, int64_t now_s, char *out, size_t cap,
                      size_t *written)
{
    if (jar == NULL || host == NULL || written == NULL || (path == NULL && path_len > 0) ||
        (out == NULL && cap > 0))
        return FERRY_EINVAL;
    *written = 0;
    unbracket(&host, &host_len);
    if (path == NULL) path = "";
    if (host_len == 0 || has_ctl_or_space(host, host_len) || has_ctl_or_space(path, path_len))
        return FERRY_EINVAL;
    cut_query(path, &path_len);
    if (path_len == 0 || path[0] != '/') { /* an empty or odd target asks for "/" */
        path = "/";
        path_len = 1;
    }

    size_t n = 0, need = 0;
    for (size_t i = 0; i < jar->_count;) {
        cookie *c = jar->_items[i];
        if (is_expired(c, now_s)) {
            remove_at(jar, i);
            continue;
        }
        i++;
        bool host_ok = c->host_only ? ieq(host, host_len, c->domain, c->domain_len)
                                    : domain_match(host, host_len, c->domain, c->domain_len);
        if (!host_ok || !path_match(path, path_len, c->path, c->path_len)) continue;
        if (c->secure && !secure_request) continue;
        jar->_scratch[n++] = c;
        need += (n > 1 ? 2 : 0) + c->name_len + (c->name_len ? 1 : 0) + c->value_len;
    }
    if (n == 0) {
        if (cap > 0) out[0] = 0;
        return 0;
    }
    *written = need;
    if (need >= cap) return FERRY_ENOBUFS;

    qsort(jar->_scratch, n, sizeof(cookie *), cmp_for_header);
    char *o = out;
    for (size_t i = 0; i < n; i++) {
        cookie *c = jar->_scratch[i];
        if (i > 0) {
            *o++ = ';';
            *o++ = ' ';
        }
        if (c->name_len) {
            memcpy(o, c->name, c->name_len);
            o += c->name_len;
            *o++ = '=';
        }
        memcpy(o, c->value, c->value_len);
        o += c->value_len;
        c->last_access_s = now_s;
        c->_access_seq = ++jar->_seq;
    }
    *o = 0;
    return 0;
}
