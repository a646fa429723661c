/* response.c — see response.h. The hot path is response_queue_head: one
 * reserve for the whole head, then copies (the common status lines, the
 * Date and Keep-Alive lines are prebuilt). */
#include "server/response.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "http1/message.h"
#include "server/exchange.h"

void response_ctx_init(response_ctx *rc, uint64_t keep_alive_timeout_ms)
{
    memset(rc, 0, sizeof(*rc));
    rc->date_sec = -1;
    if (keep_alive_timeout_ms) /* announced on every keep-alive response: build once */
        rc->ka_line_len = (uint8_t) snprintf(rc->ka_line, sizeof(rc->ka_line),
                                             "Keep-Alive: timeout=%llu\r\n",
                                             (unsigned long long) (keep_alive_timeout_ms / 1000));
}

const char *response_date_line(response_ctx *rc)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    if ((int64_t) now != rc->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        /* by hand, not strftime: %a/%b follow the process locale */
        snprintf(rc->date_line, sizeof(rc->date_line),
                 "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n", days[tm.tm_wday], tm.tm_mday,
                 months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
        rc->date_sec = (int64_t) now;
    }
    return rc->date_line;
}

const char *response_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return status < 200 ? "Informational" : status < 300 ? "OK" : status < 400 ? "Redirect"
                    : status < 500 ? "Client Error" : "Server Error";
    }
}

/* The status line for the statuses most responses use, ready to copy (a
 * deliberate second copy of nine reason texts: no formatting per response). */
static const char *common_status_line(int status, size_t *len)
{
#define LINE(s)                                                                                    \
    do {                                                                                           \
        *len = sizeof(s) - 1;                                                                      \
        return s;                                                                                  \
    } while (0)
    switch (status) {
    case 200: LINE("HTTP/1.1 200 OK\r\n");
    case 201: LINE("HTTP/1.1 201 Created\r\n");
    case 204: LINE("HTTP/1.1 204 No Content\r\n");
    case 301: LINE("HTTP/1.1 301 Moved Permanently\r\n");
    case 302: LINE("HTTP/1.1 302 Found\r\n");
    case 304: LINE("HTTP/1.1 304 Not Modified\r\n");
    case 400: LINE("HTTP/1.1 400 Bad Request\r\n");
    case 404: LINE("HTTP/1.1 404 Not Found\r\n");
    case 500: LINE("HTTP/1.1 500 Internal Server Error\r\n");
    default: return NULL;
    }
#undef LINE
}

static bool framed(int st)
{
    return st >= 200 && st != 204 && st != 304;
}

void response_frame(exchange *ex, uint64_t total)
{
    int st = ex->status;
    if (ex->head.method_id == PARSE_M_HEAD || st < 200 || st == 204 || st == 304)
        ex->rflags |= RF_NO_BODY;
    if (framed(st) && !(ex->rflags & RF_HAS_CL) && total == UINT64_MAX &&
        ex->head.version_minor == 0 && ex->head.method_id != PARSE_M_HEAD)
        ex->rflags |= RF_CLOSE_DELIM; /* HTTP/1.0 has no chunked */
}

int response_queue_head(exchange *ex, transport *t, response_ctx *rc, uint64_t total,
                        const char *ctype, size_t ctype_len)
{
    int st = ex->status;
    /* status line 35 (reason <= 31), Date 37, Content-Type 16, Content-Length
     * 38, Transfer-Encoding 28, Connection 24, Keep-Alive 48, CRLF 2 */
    int rc_ = transport_reserve(t, 360 + ex->hdrs_len + ctype_len);
    if (rc_ < 0)
        return rc_;
    char *p = transport_put_ptr(t), *start = p;
    size_t sl;
    const char *line = common_status_line(st, &sl);
    if (line) {
        memcpy(p, line, sl);
        p += sl;
    } else {
        memcpy(p, "HTTP/1.1 ", 9);
        p += 9;
        p += http1_fmt_u64(p, (uint64_t) st);
        *p++ = ' ';
        const char *reason = response_reason(st);
        size_t rl = strlen(reason);
        memcpy(p, reason, rl);
        p += rl;
        *p++ = '\r';
        *p++ = '\n';
    }
    if (!(ex->rflags & RF_HAS_DATE)) {
        memcpy(p, response_date_line(rc), RESPONSE_DATE_LINE_LEN);
        p += RESPONSE_DATE_LINE_LEN;
    }
    if (ex->hdrs_len) {
        memcpy(p, ex->hdrs, ex->hdrs_len);
        p += ex->hdrs_len;
    }
    if (ctype_len)
        p += http1_put_field(p, "Content-Type", 12, ctype, ctype_len);
    if (framed(st)) {
        if (ex->rflags & RF_HAS_CL) {
            p += http1_put_content_length(p, ex->res_cl);
        } else if (total != UINT64_MAX) {
            p += http1_put_content_length(p, total);
        } else if (!(ex->rflags & RF_CLOSE_DELIM) && ex->head.method_id != PARSE_M_HEAD) {
            memcpy(p, "Transfer-Encoding: chunked\r\n", 28);
            p += 28;
            ex->rflags |= RF_CHUNKED;
        }
    }
    if (!ex->keep_alive) {
        memcpy(p, "Connection: close\r\n", 19);
        p += 19;
    } else {
        if (ex->head.version_minor == 0) {
            memcpy(p, "Connection: keep-alive\r\n", 24);
            p += 24;
        }
        memcpy(p, rc->ka_line, rc->ka_line_len);
        p += rc->ka_line_len;
    }
    *p++ = '\r';
    *p++ = '\n';
    transport_put_done(t, (size_t) (p - start));
    ex->rflags |= RF_HEAD_SENT;
    return 0;
}

int response_queue_body(exchange *ex, transport *t, const void *buf, size_t len)
{
    if (!buf && len)
        return FERRY_EINVAL; /* ferry_res_send's body: checked here, for both of its paths */
    if (!len || (ex->rflags & RF_NO_BODY))
        return 0;
    if ((ex->rflags & RF_HAS_CL) && ex->res_sent + len > ex->res_cl)
        return FERRY_EINVAL; /* more than the declared Content-Length */
    int rc = transport_reserve(t, len + HTTP1_CHUNK_OVERHEAD);
    if (rc < 0)
        return rc;
    if (ex->rflags & RF_CHUNKED)
        transport_put_done(t, http1_put_chunk(transport_put_ptr(t), buf, len));
    else
        transport_put(t, buf, len);
    ex->res_sent += len;
    return 0;
}

int response_queue_end(exchange *ex, transport *t)
{
    if (!(ex->rflags & RF_CHUNKED))
        return 0;
    if (transport_reserve(t, HTTP1_LAST_CHUNK_LEN) < 0)
        return FERRY_ENOMEM;
    transport_put(t, HTTP1_LAST_CHUNK, HTTP1_LAST_CHUNK_LEN);
    return 0;
}

size_t response_make_error(exchange *ex, int status, int err, char *body)
{
    ex->rflags = (uint8_t) ((ex->rflags & RF_HAS_DATE) | RF_TAKEN);
    ex->taken_err = err;
    ex->hdrs_len = 0;
    ex->status = status;
    int n = snprintf(body, RESPONSE_ERROR_MAX, "%d %s: %s\n", status, response_reason(status),
                     ferry_strerror(err));
    return n < 0 ? 0 : (size_t) n;
}

/* ---- the handler's header block ---- */

/* Case-insensitive comparison of name[0..n) with a lowercase literal. */
static bool name_is(const char *name, const char *lit, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((name[i] | 0x20) != lit[i])
            return false;
    return true;
}

/* Remove every "name: ..." line from the header block. */
static void hdrs_remove(exchange *ex, const char *name, size_t n)
{
    size_t i = 0;
    while (i < ex->hdrs_len) {
        char *line = ex->hdrs + i;
        char *eol = memchr(line, '\n', ex->hdrs_len - i);
        size_t len = (size_t) (eol - line) + 1;
        if (len > n && line[n] == ':') {
            size_t k = 0;
            while (k < n && ((line[k] | 0x20) == (name[k] | 0x20)))
                k++;
            if (k == n) {
                memmove(line, line + len, ex->hdrs_len - i - len);
                ex->hdrs_len -= len;
                continue;
            }
        }
        i += len;
    }
}

/* Fields ferry writes itself, recognised by length first. Returns 1 if the
 * field was consumed here (not to be stored), 0 to store it, or an error. */
static int header_special(exchange *ex, const char *name, size_t n, const char *value, size_t v)
{
    switch (n) {
    case 4:
        if (name_is(name, "date", 4))
            ex->rflags |= RF_HAS_DATE;
        return 0;
    case 10:
        if (name_is(name, "connection", 10)) {
            for (size_t i = 0; i + 5 <= v; i++)
                if (name_is(value + i, "close", 5))
                    ex->rflags |= RF_CONN_CLOSE;
            return 1;
        }
        return name_is(name, "keep-alive", 10) ? FERRY_EINVAL : 0;
    case 14:
        if (name_is(name, "content-length", 14)) {
            uint64_t cl = 0;
            if (v == 0 || v > 19)
                return FERRY_EINVAL;
            for (size_t i = 0; i < v; i++) {
                if (value[i] < '0' || value[i] > '9')
                    return FERRY_EINVAL;
                cl = cl * 10 + (uint64_t) (value[i] - '0');
            }
            ex->res_cl = cl;
            ex->rflags |= RF_HAS_CL;
            return 1;
        }
        return 0;
    case 17: return name_is(name, "transfer-encoding", 17) ? FERRY_EINVAL : 0;
    default: return 0;
    }
}

/* Grows ex->hdrs (owner: the exchange; kept for its next request). */
int response_header(exchange *ex, const char *name, const char *value, bool replace)
{
    size_t n = strlen(name), v = strlen(value);
    if (!parse_is_token(name, n) || !http1_value_ok(value, v))
        return FERRY_EINVAL; /* no CR/LF or other controls: no response splitting */
    int rc = header_special(ex, name, n, value, v);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    if (replace && ex->hdrs_len)
        hdrs_remove(ex, name, n);
    size_t need = ex->hdrs_len + n + v + 4;
    if (need > ex->hdrs_cap && buf_reserve(&ex->hdrs, &ex->hdrs_cap, need, 256) < 0)
        return FERRY_ENOMEM;
    ex->hdrs_len += http1_put_field(ex->hdrs + ex->hdrs_len, name, n, value, v);
    return 0;
}
