/* message.h — writing HTTP/1.1 messages, for both sides: the one rule for
 * header field values, header lines, Content-Length, and chunked framing.
 * The server writes responses straight into its transport's output, the
 * client builds its requests once and replays them; both reserve room first
 * and then format in place with these calls (no bounds checks of their own,
 * no allocation), so each side keeps its own buffer and the rules are one. */
#ifndef FERRY_MESSAGE_H
#define FERRY_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* RFC 9110 §5.5: a field value is field-vchar (VCHAR, obs-text), SP and HTAB.
 * Every other control byte (NUL, CR, LF, DEL, ...) is refused on both sides:
 * no response splitting, no request smuggling through a header value. */
static inline bool http1_value_ok(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char) p[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return false;
    }
    return true;
}

#define HTTP1_U64_MAX 20 /* digits of UINT64_MAX */

/* Decimal digits of v at dst; returns their count. */
static inline size_t http1_fmt_u64(char *dst, uint64_t v)
{
    char tmp[HTTP1_U64_MAX];
    size_t n = 0;
    do {
        tmp[n++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        dst[i] = tmp[n - 1 - i];
    return n;
}

/* "name: value\r\n"; needs n + v + 4 bytes. */
static inline size_t http1_put_field(char *dst, const char *name, size_t n, const char *value,
                                     size_t v)
{
    memcpy(dst, name, n);
    dst[n] = ':';
    dst[n + 1] = ' ';
    memcpy(dst + n + 2, value, v);
    dst[n + 2 + v] = '\r';
    dst[n + 3 + v] = '\n';
    return n + v + 4;
}

#define HTTP1_CONTENT_LENGTH_MAX (16 + HTTP1_U64_MAX + 2)

/* "Content-Length: N\r\n"; needs HTTP1_CONTENT_LENGTH_MAX bytes. */
static inline size_t http1_put_content_length(char *dst, uint64_t len)
{
    memcpy(dst, "Content-Length: ", 16);
    size_t n = 16 + http1_fmt_u64(dst + 16, len);
    dst[n] = '\r';
    dst[n + 1] = '\n';
    return n + 2;
}

/* ---- chunked framing out ---- */

#define HTTP1_CHUNK_HEAD_MAX 18 /* 16 hex digits + CRLF */
#define HTTP1_CHUNK_TAIL "\r\n"
#define HTTP1_LAST_CHUNK "0\r\n\r\n"
#define HTTP1_LAST_CHUNK_LEN 5
/* What framing adds around n > 0 data bytes, at most. */
#define HTTP1_CHUNK_OVERHEAD (HTTP1_CHUNK_HEAD_MAX + 2)

/* The size line of a chunk of n > 0 bytes ("1a2b\r\n"); returns its length. */
static inline size_t http1_chunk_head(char *dst, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[16];
    size_t k = 0;
    do {
        tmp[k++] = hex[n & 15];
        n >>= 4;
    } while (n);
    for (size_t i = 0; i < k; i++)
        dst[i] = tmp[k - 1 - i];
    dst[k] = '\r';
    dst[k + 1] = '\n';
    return k + 2;
}

/* A whole chunk: size line, data, CRLF; needs n + HTTP1_CHUNK_OVERHEAD. */
static inline size_t http1_put_chunk(char *dst, const void *data, size_t n)
{
    size_t h = http1_chunk_head(dst, n);
    memcpy(dst + h, data, n);
    dst[h + n] = '\r';
    dst[h + n + 1] = '\n';
    return h + n + 2;
}

#endif /* FERRY_MESSAGE_H */
