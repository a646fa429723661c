/* parse.h — HTTP/1.1 message parser: bytes in, a head (or an error) out.
 *
 * No I/O, no allocation, no global state. Results point into the caller's
 * buffer. Both sides of ferry use it: the server parses requests, the client
 * parses responses, and both decode chunked bodies with parse_chunked().
 *
 * Incremental use: call parse_request() with everything received so far; it
 * returns 0 ("need more") until the head is complete. Call again with the same
 * bytes plus the new ones. The parser remembers how far it validated, so a head
 * that arrives one byte at a time costs O(n), not O(n^2). The caller may move
 * the bytes between calls (e.g. realloc): the parser rebases its pointers.
 *
 * Strictness (RFC 9112): everything that lets two parsers disagree about where a
 * message ends is an error with its own FERRY_E* code, and ferry_err_http_status()
 * gives the status a server answers (400, 414, 431, 501, 505). Bare LF is
 * rejected (FERRY_EBARELF) unless parse_limits.lenient_lf is set: the server
 * never sets it, the client does, because real servers still send bare LF and a
 * response cannot smuggle a request. See docs/parser.md for every rule.
 */
#ifndef FERRY_PARSE_H
#define FERRY_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One header field: name and value as slices of the caller's buffer. The value
 * has leading and trailing SP/HTAB removed. Neither is NUL-terminated. */
typedef struct parse_field {
    const char *name;
    const char *value;
    uint32_t name_len;
    uint32_t value_len;
} parse_field;

/* Methods a connection treats specially; anything else is PARSE_M_OTHER. */
typedef enum {
    PARSE_M_OTHER = 0,
    PARSE_M_GET,
    PARSE_M_HEAD,
    PARSE_M_POST,
    PARSE_M_PUT,
    PARSE_M_DELETE,
    PARSE_M_CONNECT,
    PARSE_M_OPTIONS,
    PARSE_M_TRACE,
    PARSE_M_PATCH,
} parse_method;

/* Framing and connection facts, computed once when the head completes. */
enum {
    PARSE_F_CONTENT_LENGTH = 1u << 0,  /* body is content_length bytes */
    PARSE_F_CHUNKED = 1u << 1,         /* body is chunked: use parse_chunked() */
    PARSE_F_UNTIL_CLOSE = 1u << 2,     /* response body runs until the peer closes */
    PARSE_F_NO_BODY = 1u << 3,         /* nothing follows the head (see docs/parser.md) */
    PARSE_F_KEEP_ALIVE = 1u << 4,      /* connection may carry another message */
    PARSE_F_UPGRADE = 1u << 5,         /* Connection: upgrade + Upgrade, CONNECT, or 101 */
    PARSE_F_EXPECT_CONTINUE = 1u << 6, /* Expect: 100-continue */
    PARSE_F_EXPECT_OTHER = 1u << 7,    /* another expectation: a server answers 417 */
    PARSE_F_KEEP_ALIVE_HINT = 1u << 8, /* response Keep-Alive: timeout=N (N may be 0) */
};

/* What to tell parse_response() about the request it answers. */
enum {
    PARSE_REQ_HEAD = 1u << 0,    /* the request was HEAD: no body follows */
    PARSE_REQ_CONNECT = 1u << 1, /* the request was CONNECT: 2xx starts a tunnel */
};

typedef struct parse_limits {
    uint32_t max_head_bytes; /* start line + fields + blank line; FERRY_EHEADTOOBIG (431) */
    uint32_t max_fields;     /* header fields; FERRY_ETOOMANYFIELDS (431) */
    uint32_t max_target_len; /* request-target bytes; FERRY_EURITOOLONG (414) */
    bool lenient_lf;         /* accept bare LF as a line end (client side only) */
} parse_limits;

/* Server defaults, matching Node's 16 KiB head and 100 fields. */
#define PARSE_LIMITS_DEFAULT {16384, 100, 8192, false}

/* The parsed head. Public fields are valid once parse_request/response
 * returned > 0; fields beginning with _ are the parser's resumable state. */
typedef struct parse_head {
    /* request line */
    const char *method;
    const char *target;
    uint32_t method_len;
    uint32_t target_len;
    parse_method method_id;
    /* status line */
    const char *reason;
    uint32_t reason_len;
    int status;
    /* both */
    int version_minor;       /* 0 or 1 (HTTP/1.2+ is read as 1.1, RFC 9110 §2.5) */
    parse_field *fields;     /* caller's array of at least limits.max_fields entries */
    uint32_t nfields;
    uint32_t flags;          /* PARSE_F_* */
    uint64_t content_length; /* with PARSE_F_CONTENT_LENGTH */
    uint32_t keep_alive_timeout_s; /* response "Keep-Alive: timeout=N" (with
                                      PARSE_F_KEEP_ALIVE_HINT; 0 if absent) */

    /* resumable state (private) */
    uintptr_t _base;  /* buffer address of the previous call, for rebasing */
    uint32_t _pos;    /* offset where scanning resumes */
    uint32_t _mark;   /* offset where the current element began */
    uint32_t _name;   /* offset of the current field's name */
    uint32_t _name_len;
    uint8_t _stage;
    uint8_t _hosts;   /* Host fields seen */
    uint16_t _seen;   /* framing headers seen (bits private to parse.c) */
} parse_head;

/* Ready h for a new message whose fields go into `fields`. */
void parse_head_init(parse_head *h, parse_field *fields);
/* The completed head's bytes were copied to buf (same offsets as in the
 * buffer it was parsed from): point every field there. */
void parse_head_move(parse_head *h, const char *buf);

/* Parse a request head from buf[0..len).
 * Returns the head's length in bytes (> 0) when complete, 0 when more bytes
 * are needed, or a negative FERRY_E* code. */
int parse_request(parse_head *h, const char *buf, size_t len, const parse_limits *lim);

/* Parse a response head; `req` is PARSE_REQ_* for the request it answers.
 * Returns as parse_request(). 1xx heads are returned like any other: the
 * caller skips them (except 101) and parses the next head. */
int parse_response(parse_head *h, const char *buf, size_t len, const parse_limits *lim,
                   unsigned req);

/* Whether s[0..n) is a non-empty token (RFC 9110 §5.6.2): a valid field name
 * or method. The server checks header names a handler sets with it. */
bool parse_is_token(const char *s, size_t n);

/* Case-insensitive lookup of a field by name; NULL if absent. */
const parse_field *parse_find_field(const parse_head *h, const char *name, size_t name_len);

/* ---- chunked bodies --------------------------------------------------------
 * Decodes in place over split input: each call takes whatever arrived, moves
 * the chunk data to the front of buf and keeps its state across calls, so the
 * caller can hand the data on and reuse the buffer. Chunk extensions are
 * validated and skipped; trailer fields are validated and discarded. */
typedef struct parse_chunked_state {
    uint64_t remaining;     /* data bytes left in the current chunk */
    uint32_t line_bytes;    /* bytes of the current size line (extension bound) */
    uint32_t trailer_bytes; /* bytes of the trailer section so far */
    uint32_t max_trailer_bytes;
    uint8_t state;
    bool lenient_lf;
} parse_chunked_state;

#define PARSE_CHUNK_LINE_MAX 4096 /* a size line with extensions; FERRY_ECHUNKEXT beyond */

void parse_chunked_init(parse_chunked_state *c, uint32_t max_trailer_bytes, bool lenient_lf);

/* Decode buf[0..len). On return buf[0..*data_len) holds decoded chunk data and
 * *consumed input bytes were used. Returns 1 when the body (trailers included)
 * is complete — whatever follows starts at buf + *consumed; 0 when all input
 * was consumed and more is needed; or a negative FERRY_E* code. */
int parse_chunked(parse_chunked_state *c, char *buf, size_t len, size_t *data_len, size_t *consumed);

#endif /* FERRY_PARSE_H */
