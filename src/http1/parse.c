/* parse.c — the HTTP/1.1 message parser (see parse.h for the contract).
 *
 * Shape: one resumable scanner for heads (request or response) and one byte
 * state machine for chunked framing. The head scanner is straight-line code
 * with gotos between stages; a call that runs out of input records its stage
 * and position, and the next call jumps back in, so no byte is validated
 * twice except the few bytes of a version or a CRLF split across calls.
 *
 * Hot loops: field values and request-targets are checked eight bytes at a
 * time (SWAR: a word is "plain printable ASCII" when no byte is < 0x20 or
 * > 0x7e); anything else drops to a table for that word. Tokens (methods, field
 * names) go through the same table byte by byte; they are short.
 *
 * Why not a library: no Debian package ships a strict, incremental, zero-copy
 * HTTP/1.1 parser (picohttpparser is only inside libh2o and checks far less;
 * http-parser is deprecated and lenient).
 */
#include "http1/parse.h"

#include <string.h>

#include "ferry.h"

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* char_class bits: CH_TOKEN tchar (RFC 9110 §5.6.2); CH_VALUE field-vchar, SP,
 * HTAB or obs-text; CH_HOST characters of uri-host [":" port] (no ','). Hex
 * digits have their own table, hex_val. */
enum { CH_TOKEN = 1, CH_VALUE = 2, CH_HOST = 4 };
static const uint8_t char_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 7, 2, 3, 7, 7, 7, 7, 6, 6, 7, 7, 2, 7, 7, 2,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 2, 6, 2, 2,
    2, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 2, 6, 3, 7,
    3, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 2, 3, 2, 7, 0,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
};

#define CLASS(c, bit) (char_class[(unsigned char) (c)] & (bit))

/* Hex digit values, -1 for anything else: chunk sizes are read a digit per lookup. */
static const int8_t hex_val[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, -1, -1, -1, -1, -1, -1,
    -1, 10, 11, 12, 13, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, 10, 11, 12, 13, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};


/* ---- eight bytes at a time -------------------------------------------------- */
#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull
/* Nonzero when some byte of x is < n (n <= 128) or > m (m <= 127). Exact as a
 * yes/no answer (the classic "hasless"/"hasmore" bit tricks). */
#define OUTSIDE(x, n, m) ((((x) - ONES * (n)) & ~(x)) | (((x) + ONES * (127 - (m))) | (x))) & HIGHS

static inline uint64_t load8(const char *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
    return x;
}

/* Index of the first (lowest-addressed) flagged byte of a nonzero mask. */
static inline unsigned first_flagged(uint64_t m)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (unsigned) __builtin_clzll(m) >> 3;
#else
    return (unsigned) __builtin_ctzll(m) >> 3;
#endif
}

/* Skip field-value characters; stops at the first byte that is not one
 * (CR, LF, or an invalid control) or at end. */
static inline const char *skip_value(const char *p, const char *end)
{
    while (end - p >= 8) {
        uint64_t m = OUTSIDE(load8(p), 0x20, 0x7e);
        if (likely(!m)) {
            p += 8;
            continue;
        }
        /* The lowest flagged byte is exact (false positives only sit above a
         * true one): jump to it; HTAB and obs-text are fine, go on after it. */
        p += first_flagged(m);
        if (!CLASS(*p, CH_VALUE))
            return p;
        p++;
    }
    while (p < end && CLASS(*p, CH_VALUE))
        p++;
    return p;
}

/* Skip request-target characters (visible ASCII, 0x21-0x7e). */
static inline const char *skip_target(const char *p, const char *end)
{
    while (end - p >= 8) {
        uint64_t m = OUTSIDE(load8(p), 0x21, 0x7e);
        if (m)
            return p + first_flagged(m); /* every flagged byte ends the target */
        p += 8;
    }
    while (p < end && (unsigned char) (*p - 0x21) < 0x5e)
        p++;
    return p;
}

static inline const char *skip_token(const char *p, const char *end)
{
    /* Four bytes per bounds check: names are short, but not that short. */
    while (end - p >= 4) {
        if (!CLASS(p[0], CH_TOKEN))
            return p;
        if (!CLASS(p[1], CH_TOKEN))
            return p + 1;
        if (!CLASS(p[2], CH_TOKEN))
            return p + 2;
        if (!CLASS(p[3], CH_TOKEN))
            return p + 3;
        p += 4;
    }
    while (p < end && CLASS(*p, CH_TOKEN))
        p++;
    return p;
}

static inline const char *skip_ows(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

/* Compare n bytes of s case-insensitively with a lowercase literal made of
 * letters, digits and '-'. s holds only validated token or value bytes, for
 * which |0x20 can only map an upper-case letter onto its lower case. */
static inline uint32_t load4(const char *p)
{
    uint32_t x;
    memcpy(&x, p, 4);
    return x;
}

static inline int lit_ieq(const char *s, const char *lit, size_t n)
{
    /* n is a constant at every call: whole words, the last one overlapping. */
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8)
            if ((load8(s + i) | 0x2020202020202020ull) != load8(lit + i))
                return 0;
        return (load8(s + n - 8) | 0x2020202020202020ull) == load8(lit + n - 8);
    }
    if (n >= 4)
        return (load4(s) | 0x20202020u) == load4(lit) &&
               (load4(s + n - 4) | 0x20202020u) == load4(lit + n - 4);
    for (size_t i = 0; i < n; i++)
        if ((s[i] | 0x20) != lit[i])
            return 0;
    return 1;
}

static inline unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char) (c | 0x20) : c;
}

bool parse_is_token(const char *s, size_t n)
{
    if (!n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!CLASS(s[i], CH_TOKEN))
            return false;
    return true;
}

const parse_field *parse_find_field(const parse_head *h, const char *name, size_t name_len)
{
    for (uint32_t i = 0; i < h->nfields; i++) {
        const parse_field *f = &h->fields[i];
        if (f->name_len != name_len)
            continue;
        size_t k = 0;
        while (k < name_len && lower((unsigned char) f->name[k]) == lower((unsigned char) name[k]))
            k++;
        if (k == name_len)
            return f;
    }
    return NULL;
}

/* ---- framing facts from individual fields ---------------------------------- */

/* parse_head._seen bits */
enum {
    SEEN_CL = 1 << 0,
    SEEN_TE = 1 << 1,
    SEEN_TE_CHUNKED = 1 << 2,
    SEEN_TE_LAST_CHUNKED = 1 << 3,
    SEEN_TE_OTHER = 1 << 4,
    SEEN_CONN_CLOSE = 1 << 5,
    SEEN_CONN_KEEP_ALIVE = 1 << 6,
    SEEN_CONN_UPGRADE = 1 << 7,
    SEEN_UPGRADE = 1 << 8,
};

/* Content-Length: 1*DIGIT, or a list of identical values (RFC 9110 §8.6).
 * Every element must be a number; a different value, here or in an earlier
 * field, is a conflict. Values above INT64_MAX overflow. */
static int note_content_length(parse_head *h, const char *p, const char *end)
{
    for (;;) {
        p = skip_ows(p, end);
        if (p == end || (unsigned char) (*p - '0') > 9)
            return FERRY_EBADCL;
        uint64_t v = 0;
        do {
            unsigned d = (unsigned) (*p++ - '0');
            if (v > (uint64_t) (INT64_MAX - d) / 10)
                return FERRY_ECLOVERFLOW;
            v = v * 10 + d;
        } while (p < end && (unsigned char) (*p - '0') <= 9);
        if ((h->_seen & SEEN_CL) && v != h->content_length)
            return FERRY_ECLCONFLICT;
        h->content_length = v;
        h->_seen |= SEEN_CL;
        p = skip_ows(p, end);
        if (p == end)
            return 0;
        if (*p++ != ',')
            return FERRY_EBADCL;
    }
}

/* Transfer-Encoding: a list of codings, possibly over several fields. We
 * record whether chunked is present, whether it is last, and whether any other
 * coding appears; chunked twice, or chunked with parameters, is an error. */
static int note_transfer_encoding(parse_head *h, const char *p, const char *end)
{
    if (likely(end - p == 7 && lit_ieq(p, "chunked", 7) && !(h->_seen & SEEN_TE))) {
        h->_seen |= SEEN_TE | SEEN_TE_CHUNKED | SEEN_TE_LAST_CHUNKED; /* the usual value */
        return 0;
    }
    h->_seen |= SEEN_TE;
    for (;;) {
        p = skip_ows(p, end);
        if (p == end)
            return 0;
        if (*p == ',') { /* empty list element: ignored (RFC 9110 §5.6.1) */
            p++;
            continue;
        }
        const char *tok = p;
        p = skip_token(p, end);
        if (p == tok)
            return FERRY_EBADTE;
        int chunked = (p - tok == 7 && lit_ieq(tok, "chunked", 7));
        p = skip_ows(p, end);
        if (chunked) {
            if (h->_seen & SEEN_TE_CHUNKED)
                return FERRY_EBADTE;
            h->_seen |= SEEN_TE_CHUNKED | SEEN_TE_LAST_CHUNKED;
        } else {
            h->_seen = (uint16_t) ((h->_seen | SEEN_TE_OTHER) & ~SEEN_TE_LAST_CHUNKED);
            while (p < end && *p != ',') /* parameters of a coding we reject anyway */
                p++;
        }
        if (p == end)
            return 0;
        if (*p++ != ',')
            return FERRY_EBADTE; /* e.g. "chunked;x=1" or "chunked foo" */
    }
}

/* Connection: the tokens close, keep-alive and upgrade matter; others name
 * hop-by-hop fields and are ignored here. */
static void note_connection(parse_head *h, const char *p, const char *end)
{
    while (p < end) {
        p = skip_ows(p, end);
        const char *tok = p;
        p = skip_token(p, end);
        size_t n = (size_t) (p - tok);
        if (n == 5 && lit_ieq(tok, "close", 5))
            h->_seen |= SEEN_CONN_CLOSE;
        else if (n == 10 && lit_ieq(tok, "keep-alive", 10))
            h->_seen |= SEEN_CONN_KEEP_ALIVE;
        else if (n == 7 && lit_ieq(tok, "upgrade", 7))
            h->_seen |= SEEN_CONN_UPGRADE;
        while (p < end && *p != ',')
            p++;
        if (p < end)
            p++;
    }
}

/* Keep-Alive: timeout=N (responses): the client expires idle sockets before
 * the server does. Other parameters are ignored; a malformed one is too. */
static void note_keep_alive(parse_head *h, const char *p, const char *end)
{
    while (p < end) {
        p = skip_ows(p, end);
        if (end - p > 8 && lit_ieq(p, "timeout=", 8)) {
            uint32_t v = 0;
            p += 8;
            const char *digits = p;
            while (p < end && (unsigned char) (*p - '0') <= 9 && v < 1000000)
                v = v * 10 + (uint32_t) (*p++ - '0');
            if (p > digits) { /* timeout=0 is a hint too: do not pool */
                h->keep_alive_timeout_s = v;
                h->flags |= PARSE_F_KEEP_ALIVE_HINT;
            }
        }
        while (p < end && *p != ',')
            p++;
        if (p < end)
            p++;
    }
}

/* Look at a completed field: framing and connection headers are recognised
 * here, once, so the connection code never re-reads the field list. */
static int note_field(parse_head *h, const parse_field *f, int response)
{
    const char *n = f->name, *v = f->value, *vend = f->value + f->value_len;
    switch (f->name_len) {
    case 4:
        if (!response && lit_ieq(n, "host", 4)) {
            if (h->_hosts < 2)
                h->_hosts++;
            for (const char *p = v; p < vend; p++)
                if (!CLASS(*p, CH_HOST))
                    return FERRY_EBADHOST;
        }
        return 0;
    case 6:
        if (!response && lit_ieq(n, "expect", 6)) {
            if (f->value_len == 12 && lit_ieq(v, "100-continue", 12))
                h->flags |= PARSE_F_EXPECT_CONTINUE;
            else
                h->flags |= PARSE_F_EXPECT_OTHER;
        }
        return 0;
    case 7:
        if (lit_ieq(n, "upgrade", 7))
            h->_seen |= SEEN_UPGRADE;
        return 0;
    case 10:
        if (lit_ieq(n, "connection", 10))
            note_connection(h, v, vend);
        else if (response && lit_ieq(n, "keep-alive", 10))
            note_keep_alive(h, v, vend);
        return 0;
    case 14:
        return lit_ieq(n, "content-length", 14) ? note_content_length(h, v, vend) : 0;
    case 17:
        return lit_ieq(n, "transfer-encoding", 17) ? note_transfer_encoding(h, v, vend) : 0;
    default: return 0;
    }
}

static int keep_alive(const parse_head *h)
{
    if (h->_seen & SEEN_CONN_CLOSE)
        return 0;
    return h->version_minor >= 1 || (h->_seen & SEEN_CONN_KEEP_ALIVE);
}

/* RFC 9112 §6.1-6.3 for requests: TE and CL together, TE in HTTP/1.0, TE not
 * ending in chunked, and Host missing (1.1) or repeated are all fatal. */
static int finish_request(parse_head *h)
{
    unsigned s = h->_seen, f = 0;
    /* The usual request: no framing or connection fields, one Host, 1.1. */
    if (likely(s == 0 && h->_hosts == 1 && h->version_minor == 1 &&
               h->method_id != PARSE_M_CONNECT)) {
        h->flags |= PARSE_F_NO_BODY | PARSE_F_KEEP_ALIVE;
        return 0;
    }
    if (s & SEEN_TE) {
        if (s & SEEN_CL)
            return FERRY_ECLTE;
        if (h->version_minor == 0 || !(s & SEEN_TE_LAST_CHUNKED))
            return FERRY_EBADTE;
        if (s & SEEN_TE_OTHER)
            return FERRY_ETEUNSUP;
        f |= PARSE_F_CHUNKED;
    } else if (s & SEEN_CL) {
        f |= PARSE_F_CONTENT_LENGTH;
    } else {
        f |= PARSE_F_NO_BODY;
    }
    if (h->_hosts > 1 || (h->_hosts == 0 && h->version_minor >= 1))
        return FERRY_EBADHOST;
    if (keep_alive(h))
        f |= PARSE_F_KEEP_ALIVE;
    if (((s & SEEN_CONN_UPGRADE) && (s & SEEN_UPGRADE)) || h->method_id == PARSE_M_CONNECT)
        f |= PARSE_F_UPGRADE;
    h->flags |= f;
    return 0;
}

/* RFC 9112 §6.3 for responses, in its order: no body for HEAD, 1xx, 204, 304;
 * a tunnel for 2xx to CONNECT; then chunked, Content-Length, or until close. */
static int finish_response(parse_head *h, unsigned req)
{
    unsigned s = h->_seen, f = 0;
    int st = h->status;
    if ((s & SEEN_TE) && (s & SEEN_CL))
        return FERRY_ECLTE;
    if (s & SEEN_CL)
        f |= PARSE_F_CONTENT_LENGTH;
    if (st == 101 || ((req & PARSE_REQ_CONNECT) && st >= 200 && st < 300)) {
        f = PARSE_F_NO_BODY | PARSE_F_UPGRADE;
    } else if ((req & PARSE_REQ_HEAD) || st < 200 || st == 204 || st == 304) {
        f |= PARSE_F_NO_BODY;
    } else if (s & SEEN_TE) {
        if (h->version_minor == 0)
            return FERRY_EBADTE;
        if (!(s & SEEN_TE_LAST_CHUNKED))
            f |= PARSE_F_UNTIL_CLOSE;
        else if (s & SEEN_TE_OTHER)
            return FERRY_ETEUNSUP;
        else
            f |= PARSE_F_CHUNKED;
    } else if (!(s & SEEN_CL)) {
        f |= PARSE_F_UNTIL_CLOSE;
    }
    if (keep_alive(h) && !(f & (PARSE_F_UNTIL_CLOSE | PARSE_F_UPGRADE)))
        f |= PARSE_F_KEEP_ALIVE;
    h->flags |= f;
    return 0;
}

/* ---- the start line ----------------------------------------------------------- */

static parse_method method_id(const char *m, size_t n)
{
#define M(lit, id)                                                                                 \
    if (memcmp(m, lit, sizeof(lit) - 1) == 0)                                                      \
        return id;
    switch (n) {
    case 3: M("GET", PARSE_M_GET) M("PUT", PARSE_M_PUT) break;
    case 4: M("HEAD", PARSE_M_HEAD) M("POST", PARSE_M_POST) break;
    case 5: M("PATCH", PARSE_M_PATCH) M("TRACE", PARSE_M_TRACE) break;
    case 6: M("DELETE", PARSE_M_DELETE) break;
    case 7: M("CONNECT", PARSE_M_CONNECT) M("OPTIONS", PARSE_M_OPTIONS) break;
    default: break;
    }
#undef M
    return PARSE_M_OTHER;
}

/* The four request-target forms (RFC 9112 §3.2): origin ("/..."), absolute
 * ("scheme:..."), authority (CONNECT only: "host:port") and asterisk
 * (OPTIONS only). Characters were already checked to be visible ASCII. */
static int check_target(const char *t, size_t n, parse_method m)
{
    if (m == PARSE_M_CONNECT) {
        const char *colon = NULL;
        for (size_t i = 0; i < n; i++) {
            if (t[i] == ':')
                colon = t + i;
            else if (!CLASS(t[i], CH_HOST))
                return FERRY_EBADTARGET;
        }
        return (colon && colon > t && colon < t + n - 1) ? 0 : FERRY_EBADTARGET;
    }
    if (t[0] == '/')
        return 0;
    if (t[0] == '*')
        return (n == 1 && m == PARSE_M_OPTIONS) ? 0 : FERRY_EBADTARGET;
    /* absolute-form: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":" */
    if (!((t[0] | 0x20) >= 'a' && (t[0] | 0x20) <= 'z'))
        return FERRY_EBADTARGET;
    for (size_t i = 1; i < n; i++) {
        char c = t[i];
        if (c == ':')
            return i + 1 < n ? 0 : FERRY_EBADTARGET;
        if (!(((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
              c == '-' || c == '.'))
            return FERRY_EBADTARGET;
    }
    return FERRY_EBADTARGET;
}

/* "HTTP/1.x" at p. Returns 1 and sets *minor, 0 if more bytes are needed,
 * FERRY_EVERSION for a well-formed other version (HTTP/2.0, HTTP/0.9), or
 * FERRY_EBADVERSION. HTTP-name is case-sensitive (RFC 9112 §2.3). */
static inline __attribute__((always_inline)) int read_version(const char *p, const char *end,
                                                              int *minor)
{
    static const char lit[] = "HTTP/1.";
    size_t have = (size_t) (end - p);
    if (likely(have >= 8)) { /* the usual case: one 8-byte compare */
        uint64_t x = load8(p);
        if (likely((x & 0x00ffffffffffffffull) == (load8("HTTP/1.0") & 0x00ffffffffffffffull) &&
                   (unsigned char) (p[7] - '0') <= 9)) {
            *minor = p[7] == '0' ? 0 : 1;
            return 1;
        }
    }
    size_t n = have < 8 ? have : 8;
    for (size_t i = 0; i < n && i < 7; i++) {
        if (p[i] == lit[i])
            continue;
        if (i != 5 || (unsigned char) (p[5] - '0') > 9)
            return FERRY_EBADVERSION;
        if (have < 8)
            return 0;
        return (p[6] == '.' && (unsigned char) (p[7] - '0') <= 9) ? FERRY_EVERSION
                                                                  : FERRY_EBADVERSION;
    }
    if (have < 8)
        return 0;
    if ((unsigned char) (p[7] - '0') > 9)
        return FERRY_EBADVERSION;
    *minor = p[7] == '0' ? 0 : 1; /* 1.2+ is processed as 1.1 (RFC 9110 §2.5) */
    return 1;
}

/* At a line end: 2 for CRLF, 1 for a bare LF when lenient, 0 when the LF is
 * still to come, else an error (`other` when p is not at CR or LF at all). */
static inline int line_end(const char *p, const char *end, int lenient, int other)
{
    if (*p == '\r') {
        if (end - p < 2)
            return 0;
        return p[1] == '\n' ? 2 : FERRY_EBARECR;
    }
    if (*p == '\n')
        return lenient ? 1 : FERRY_EBARELF;
    return other;
}

/* ---- the head scanner ----------------------------------------------------------- */

enum stage {
    ST_START,   /* skipping empty lines before the start line */
    ST_METHOD,  /* _mark: start of the method */
    ST_TARGET,  /* _mark: start of the target */
    ST_VERSION, /* _mark: start of "HTTP/1.x" (re-read, at most 10 bytes) */
    ST_STATUS,  /* _mark: start of the status line (re-read, at most 14 bytes) */
    ST_REASON,  /* _mark: start of the reason phrase */
    ST_FIELD,   /* at the start of a field line or the blank line */
    ST_NAME,    /* _mark: start of the field name */
    ST_OWS,     /* after the colon; _name/_name_len hold the name */
    ST_VALUE,   /* _mark: start of the value */
};

void parse_head_init(parse_head *h, parse_field *fields)
{
    /* Field by field, not memset: gcc turns a 120-byte memset into rep stosq,
     * whose start-up cost is a third of a small request's parse. */
    h->method = h->target = h->reason = NULL;
    h->method_len = h->target_len = h->reason_len = 0;
    h->method_id = PARSE_M_OTHER;
    h->status = h->version_minor = 0;
    h->fields = fields;
    h->nfields = h->flags = h->keep_alive_timeout_s = 0;
    h->content_length = 0;
    h->_base = 0;
    h->_pos = h->_mark = 0; /* _name, _name_len: written before they are read */
    h->_stage = h->_hosts = 0;
    h->_seen = 0;
}

/* The caller moved the bytes (e.g. realloc): shift every stored pointer. The
 * old address is only used as a number. */
static void rebase(parse_head *h, const char *buf)
{
    uintptr_t from = h->_base, to = (uintptr_t) buf;
    h->_base = to;
    if (!from)
        return;
#define MOVE(ptr)                                                                                  \
    if (ptr)                                                                                       \
    (ptr) = (const char *) ((uintptr_t) (ptr) -from + to)
    MOVE(h->method);
    MOVE(h->target);
    MOVE(h->reason);
    for (uint32_t i = 0; i < h->nfields; i++) {
        MOVE(h->fields[i].name);
        MOVE(h->fields[i].value);
    }
#undef MOVE
}

void parse_head_move(parse_head *h, const char *buf)
{
    rebase(h, buf);
}

static int parse_head_bytes(parse_head *h, const char *buf, size_t len, const parse_limits *lim,
                            int response, unsigned req)
{
    if (unlikely(h->_base != (uintptr_t) buf)) {
        if (h->_base)
            rebase(h, buf);
        else
            h->_base = (uintptr_t) buf;
    }
    size_t max_head = lim->max_head_bytes < INT32_MAX ? lim->max_head_bytes : INT32_MAX;
    const int lenient = lim->lenient_lf;
    const char *end = buf + (len < max_head ? len : max_head);
    const char *p = buf + h->_pos, *mark = buf + h->_mark;
    enum stage st;
    int r;

    if (likely(h->_stage == ST_START)) /* a first call: no dispatch */
        goto start;
    switch ((enum stage) h->_stage) {
    case ST_START: goto start;
    case ST_METHOD: goto method;
    case ST_TARGET: goto target;
    case ST_VERSION: goto version;
    case ST_STATUS: goto status;
    case ST_REASON: goto reason;
    case ST_FIELD: goto field;
    case ST_NAME: goto name;
    case ST_OWS: goto ows;
    case ST_VALUE: goto value;
    }

start:
    /* RFC 9112 §2.2: ignore empty lines before the start line. */
    while (p < end && (*p == '\r' || *p == '\n')) {
        if ((r = line_end(p, end, lenient, 0)) <= 0) {
            if (r < 0)
                return r;
            break;
        }
        p += r;
    }
    mark = p;
    if (p == end || (*p == '\r' && end - p < 2)) {
        st = ST_START;
        goto more;
    }
    if (response)
        goto status;

method:
    if (p == mark && likely(end - p >= 4) && load4(p) == load4("GET ")) { /* most requests */
        h->method = mark;
        h->method_len = 3;
        h->method_id = PARSE_M_GET;
        mark = p += 4;
        goto target;
    }
    p = skip_token(p, end);
    if (unlikely(p == end)) {
        st = ST_METHOD;
        goto more;
    }
    if (unlikely(*p != ' '))
        return FERRY_EBADMETHOD;
    if (unlikely(p == mark))
        return FERRY_EBADREQLINE;
    h->method = mark;
    h->method_len = (uint32_t) (p - mark);
    h->method_id = method_id(mark, h->method_len);
    mark = ++p;

target:
    p = skip_target(p, end);
    if (unlikely((size_t) (p - mark) > lim->max_target_len))
        return FERRY_EURITOOLONG;
    if (unlikely(p == end)) {
        st = ST_TARGET;
        goto more;
    }
    if (unlikely(*p != ' '))
        return (*p == '\r' || *p == '\n') ? FERRY_EBADREQLINE : FERRY_EBADTARGET;
    if (unlikely(p == mark))
        return FERRY_EBADREQLINE;
    h->target = mark;
    h->target_len = (uint32_t) (p - mark);
    if ((r = check_target(mark, h->target_len, h->method_id)) < 0)
        return r;
    mark = ++p;

version:
    p = mark;
    if ((r = read_version(p, end, &h->version_minor)) <= 0) {
        if (r < 0)
            return r;
        st = ST_VERSION;
        goto more;
    }
    p += 8;
    if (likely(end - p >= 2 && p[0] == '\r' && p[1] == '\n')) {
        p += 2;
        goto field;
    }
    if (p == end) {
        st = ST_VERSION;
        goto more;
    }
    if ((r = line_end(p, end, lenient, FERRY_EBADVERSION)) <= 0) {
        if (r < 0)
            return r;
        st = ST_VERSION;
        goto more;
    }
    p += r;
    goto field;

status:
    /* "HTTP/1.1 200 OK": re-read from the line start until the reason begins. */
    p = mark;
    if ((r = read_version(p, end, &h->version_minor)) <= 0) {
        if (r < 0)
            return r == FERRY_EBADVERSION ? FERRY_EBADSTATUS : r;
        st = ST_STATUS;
        goto more;
    }
    p += 8;
    if (end - p < 5) {
        for (const char *q = p; q < end; q++) /* fail early on garbage */
            if (q == p ? *q != ' ' : (unsigned char) (*q - '0') > 9)
                return FERRY_EBADSTATUS;
        st = ST_STATUS;
        goto more;
    }
    if (p[0] != ' ' || (unsigned char) (p[1] - '1') > 8 || (unsigned char) (p[2] - '0') > 9 ||
        (unsigned char) (p[3] - '0') > 9)
        return FERRY_EBADSTATUS;
    h->status = (p[1] - '0') * 100 + (p[2] - '0') * 10 + (p[3] - '0');
    p += 4;
    if (*p == ' ') {
        mark = ++p;
        goto reason;
    }
    /* No reason phrase and no SP: tolerated, as every client does. */
    if (*p != '\r' && *p != '\n')
        return FERRY_EBADSTATUS;
    mark = p;

reason:
    p = skip_value(p, end);
    if (p == end) {
        st = ST_REASON;
        goto more;
    }
    if ((r = line_end(p, end, lenient, FERRY_EBADSTATUS)) <= 0) {
        if (r < 0)
            return r;
        st = ST_REASON;
        goto more;
    }
    h->reason = mark;
    h->reason_len = (uint32_t) (p - mark);
    p += r;

field:
    if (unlikely(p == end)) {
        st = ST_FIELD;
        goto more;
    }
    if (*p == '\r' || *p == '\n') {
        if (likely(end - p >= 2 && p[0] == '\r' && p[1] == '\n')) {
            r = 2;
        } else if ((r = line_end(p, end, lenient, 0)) <= 0) {
            if (r < 0)
                return r;
            st = ST_FIELD;
            goto more;
        }
        p += r;
        if ((r = response ? finish_response(h, req) : finish_request(h)) < 0)
            return r;
        h->_pos = (uint32_t) (p - buf);
        return (int) (p - buf);
    }
    if (unlikely(*p == ' ' || *p == '\t'))
        return FERRY_EOBSFOLD; /* also whitespace before the first field (RFC 9112 §2.2) */
    if (unlikely(h->nfields >= lim->max_fields))
        return FERRY_ETOOMANYFIELDS;
    mark = p;

name:
    p = skip_token(p, end);
    if (unlikely(p == end)) {
        st = ST_NAME;
        goto more;
    }
    if (unlikely(*p != ':'))
        return (*p == ' ' || *p == '\t') ? FERRY_EFIELDWS : FERRY_EBADFIELD;
    if (unlikely(p == mark))
        return FERRY_EBADFIELD;
    h->_name = (uint32_t) (mark - buf);
    h->_name_len = (uint32_t) (p - mark);
    p++;

ows:
    if (likely(end - p >= 2 && p[0] == ' ' && p[1] != ' ' && p[1] != '\t'))
        p++; /* "Name: value", the usual shape */
    else
        p = skip_ows(p, end);
    if (unlikely(p == end)) {
        st = ST_OWS;
        goto more;
    }
    mark = p;

value:
    p = skip_value(p, end);
    if (unlikely(p == end)) {
        st = ST_VALUE;
        goto more;
    }
    if (likely(end - p >= 2 && p[0] == '\r' && p[1] == '\n')) {
        r = 2;
    } else if ((r = line_end(p, end, lenient, FERRY_EBADVALUE)) <= 0) {
        if (r < 0)
            return r;
        st = ST_VALUE;
        goto more;
    }
    {
        const char *vend = p;
        while (vend > mark && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;
        parse_field *f = &h->fields[h->nfields++];
        f->name = buf + h->_name;
        f->name_len = h->_name_len;
        f->value = mark;
        f->value_len = (uint32_t) (vend - mark);
        p += r;
        if ((r = note_field(h, f, response)) < 0)
            return r;
    }
    goto field;

more:
    /* Out of bytes. If we stopped at the head limit rather than at the end of
     * the input, the head is too large: 414 while still in the target. */
    if ((size_t) (end - buf) >= max_head)
        return st == ST_TARGET ? FERRY_EURITOOLONG : FERRY_EHEADTOOBIG;
    h->_stage = (uint8_t) st;
    h->_pos = (uint32_t) (p - buf);
    h->_mark = (uint32_t) (mark - buf);
    return 0;
}

int parse_request(parse_head *h, const char *buf, size_t len, const parse_limits *lim)
{
    return parse_head_bytes(h, buf, len, lim, 0, 0);
}

int parse_response(parse_head *h, const char *buf, size_t len, const parse_limits *lim,
                   unsigned req)
{
    return parse_head_bytes(h, buf, len, lim, 1, req);
}

/* ---- chunked bodies (RFC 9112 §7.1) ------------------------------------------ */

enum chunk_state {
    C_SIZE0,    /* first hex digit of a chunk size */
    C_SIZE,     /* more hex digits */
    C_SIZE_WS,  /* BWS after the size: only ";" may follow */
    C_EXT,      /* chunk-ext outside quotes */
    C_EXT_Q,    /* inside a quoted-string */
    C_EXT_QP,   /* after a backslash in a quoted-string */
    C_SIZE_LF,  /* CR seen at the end of the size line */
    C_DATA,     /* chunk data */
    C_DATA_CR,  /* CRLF after chunk data */
    C_DATA_LF,
    C_TR_START, /* start of a trailer line or the final blank line */
    C_TR_NAME,
    C_TR_VALUE,
    C_TR_LF,
    C_END_LF,   /* CR of the final blank line seen */
    C_DONE,
};

void parse_chunked_init(parse_chunked_state *c, uint32_t max_trailer_bytes, bool lenient_lf)
{
    memset(c, 0, sizeof(*c));
    c->max_trailer_bytes = max_trailer_bytes;
    c->lenient_lf = lenient_lf;
}

int parse_chunked(parse_chunked_state *c, char *buf, size_t len, size_t *data_len, size_t *consumed)
{
    size_t i = 0, out = 0;
    int err = 0;
    /* State in locals: buf is char *, so through c every store to buf would
     * force a reload of c's fields; write back once on the way out. */
    unsigned st = c->state;
    uint64_t rem = c->remaining;
    uint32_t line_bytes = c->line_bytes, trailer_bytes = c->trailer_bytes;
    const uint32_t max_trailer = c->max_trailer_bytes;
    const bool lenient = c->lenient_lf;

    if (st == C_DONE) {
        *data_len = *consumed = 0;
        return 1;
    }
    while (i < len) {
        if (st == C_DATA_CR && len - i >= 2 && buf[i] == '\r' && buf[i + 1] == '\n') {
            i += 2; /* CRLF after data, then usually a plain size line: fast path */
            st = C_SIZE0;
            continue;
        }
        if (st == C_SIZE0 && line_bytes == 0) {
            size_t j = i, stop = len - i > 15 ? i + 15 : len; /* 15 digits cannot overflow */
            uint64_t v = 0;
            int d;
            while (j < stop && (d = hex_val[(unsigned char) buf[j]]) >= 0) {
                v = (v << 4) | (uint64_t) d;
                j++;
            }
            if (j > i && len - j >= 2 && buf[j] == '\r' && buf[j + 1] == '\n') {
                i = j + 2;
                rem = v;
                st = v ? C_DATA : C_TR_START;
                continue;
            }
        }
        if (st == C_DATA) {
            size_t n = len - i;
            if (n > rem)
                n = (size_t) rem;
            if (out != i)
                memmove(buf + out, buf + i, n);
            out += n;
            i += n;
            rem -= n;
            if (rem == 0)
                st = C_DATA_CR;
            continue;
        }
        unsigned char ch = (unsigned char) buf[i++];
        if (st <= C_SIZE_LF && ++line_bytes > PARSE_CHUNK_LINE_MAX) {
            err = FERRY_ECHUNKEXT;
            goto fail;
        }
        /* the trailer section's fields count; the final blank line does not */
        if (st >= C_TR_START && st != C_END_LF &&
            !(st == C_TR_START && (ch == '\r' || ch == '\n')) && ++trailer_bytes > max_trailer) {
            err = FERRY_ETRAILERTOOBIG;
            goto fail;
        }
        switch ((enum chunk_state) st) {
        case C_SIZE0:
            if (hex_val[ch] < 0) {
                err = FERRY_EBADCHUNK;
                goto fail;
            }
            rem = (uint64_t) hex_val[ch];
            st = C_SIZE;
            break;
        case C_SIZE:
            if (hex_val[ch] >= 0) {
                if (rem > (INT64_MAX >> 4)) {
                    err = FERRY_ECHUNKOVERFLOW;
                    goto fail;
                }
                rem = (rem << 4) | (uint64_t) hex_val[ch];
            } else if (ch == ';') {
                st = C_EXT;
            } else if (ch == ' ' || ch == '\t') {
                st = C_SIZE_WS;
            } else if (ch == '\r') {
                st = C_SIZE_LF;
            } else if (ch == '\n') {
                if (!lenient) {
                    err = FERRY_EBARELF;
                    goto fail;
                }
                goto size_done;
            } else {
                err = FERRY_EBADCHUNK; /* "0x10", "-1", "+5", "1 2" ... */
                goto fail;
            }
            break;
        case C_SIZE_WS:
            if (ch == ';') {
                st = C_EXT;
            } else if (ch != ' ' && ch != '\t') {
                err = FERRY_EBADCHUNK;
                goto fail;
            }
            break;
        case C_EXT:
            if (ch == '\r') {
                st = C_SIZE_LF;
            } else if (ch == '"') {
                st = C_EXT_Q;
            } else if (ch == '\n') {
                if (!lenient) {
                    err = FERRY_EBARELF;
                    goto fail;
                }
                goto size_done;
            } else if (!CLASS(ch, CH_TOKEN) && ch != ';' && ch != '=' && ch != ' ' && ch != '\t') {
                err = FERRY_ECHUNKEXT;
                goto fail;
            }
            break;
        case C_EXT_Q:
            if (ch == '"') {
                st = C_EXT;
            } else if (ch == '\\') {
                st = C_EXT_QP;
            } else if (!CLASS(ch, CH_VALUE)) {
                err = FERRY_ECHUNKEXT;
                goto fail;
            }
            break;
        case C_EXT_QP:
            if (!CLASS(ch, CH_VALUE)) {
                err = FERRY_ECHUNKEXT;
                goto fail;
            }
            st = C_EXT_Q;
            break;
        case C_SIZE_LF:
            if (ch != '\n') {
                err = FERRY_EBARECR;
                goto fail;
            }
        size_done:
            line_bytes = 0;
            st = rem ? C_DATA : C_TR_START;
            break;
        case C_DATA: break; /* handled above */
        case C_DATA_CR:
            if (ch == '\r') {
                st = C_DATA_LF;
            } else if (ch == '\n' && lenient) {
                st = C_SIZE0;
            } else {
                err = FERRY_ECHUNKEND;
                goto fail;
            }
            break;
        case C_DATA_LF:
            if (ch != '\n') {
                err = FERRY_ECHUNKEND;
                goto fail;
            }
            st = C_SIZE0;
            break;
        case C_TR_START:
            if (ch == '\r') {
                st = C_END_LF;
            } else if (ch == '\n') {
                if (!lenient) {
                    err = FERRY_EBARELF;
                    goto fail;
                }
                goto done;
            } else if (ch == ' ' || ch == '\t') {
                err = FERRY_EOBSFOLD;
                goto fail;
            } else if (CLASS(ch, CH_TOKEN)) {
                st = C_TR_NAME;
            } else {
                err = FERRY_EBADFIELD;
                goto fail;
            }
            break;
        case C_TR_NAME:
            if (ch == ':') {
                st = C_TR_VALUE;
            } else if (!CLASS(ch, CH_TOKEN)) {
                err = (ch == ' ' || ch == '\t') ? FERRY_EFIELDWS : FERRY_EBADFIELD;
                goto fail;
            }
            break;
        case C_TR_VALUE:
            if (ch == '\r') {
                st = C_TR_LF;
            } else if (ch == '\n') {
                if (!lenient) {
                    err = FERRY_EBARELF;
                    goto fail;
                }
                st = C_TR_START;
            } else if (!CLASS(ch, CH_VALUE)) {
                err = FERRY_EBADVALUE;
                goto fail;
            }
            break;
        case C_TR_LF:
            if (ch != '\n') {
                err = FERRY_EBARECR;
                goto fail;
            }
            st = C_TR_START;
            break;
        case C_END_LF:
            if (ch != '\n') {
                err = FERRY_EBARECR;
                goto fail;
            }
        done:
            c->state = C_DONE;
            c->remaining = rem;
            c->line_bytes = line_bytes;
            c->trailer_bytes = trailer_bytes;
            *data_len = out;
            *consumed = i;
            return 1;
        case C_DONE: break; /* returned before reading further */
        }
    }
    c->state = (uint8_t) st;
    c->remaining = rem;
    c->line_bytes = line_bytes;
    c->trailer_bytes = trailer_bytes;
    *data_len = out;
    *consumed = i;
    return 0;

fail:
    c->state = (uint8_t) st;
    c->remaining = rem;
    c->line_bytes = line_bytes;
    c->trailer_bytes = trailer_bytes;
    *data_len = out;
    *consumed = i;
    return err;
}
