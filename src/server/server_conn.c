/* server_conn.c — one server connection: its state machine, and the
 * request/response pair (the "exchange") a handler sees.
 *
 *   NEW ──first byte──> HEAD ──head parsed──> BUSY ──response ended and body
 *    │                   ^                      │      read or drained──> FLUSHING
 *    │                   └──pipelined bytes─────┼──────────────────────────┘ │
 *    │                                          │                            │ all written
 *    └─────────────── closing: SHUTTING (flush) → CLOSING (FIN sent, linger) → CLOSED
 *                                                              IDLE <────────┘ (keep-alive)
 *
 * One exchange at a time per connection: the next pipelined request is
 * parsed when the current response is ended and its body consumed, and only
 * while less than OUT_HIGH_WATER bytes wait to be written — so parsing never
 * outruns the client's reading. Responses to pipelined requests are queued
 * into one output buffer and leave in one write per loop turn.
 *
 * Timers: `tmo` (one per connection) is in the headers list while a head is
 * awaited (from accept for the first request, from the first byte for later
 * ones), the idle list while busy (if idle_timeout is set), the keep-alive
 * list while idle, and the linger list after our FIN. The exchange's
 * `t_request` runs from a request's first byte until its body is complete.
 *
 * Idle means: no request in progress and the last response fully handed to
 * the kernel. A connection is only closed as idle after reading what is
 * already waiting in the kernel: a request that raced the close is answered
 * (with Connection: close), and the close is a FIN followed by a short linger
 * that reads and discards, so the client never gets a RST for a request it
 * sent in time.
 *
 * The socket work itself (reading on and off, try_write then uv_write, the
 * peek before lingering, FIN and RST) is transport.c's, shared with the
 * client: this file only decides when.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/server_internal.h"
#include "core/transport.h"

#define OUT_HIGH_WATER (64 * 1024) /* stop parsing pipelined requests above this */
#define EXCHANGE_CACHE 64
#define OUT_KEEP_BYTES (64 * 1024) /* output buffers larger than this are freed, not cached */

enum conn_state {
    C_NEW,      /* accepted, no byte yet */
    C_HEAD,     /* reading a request head */
    C_BUSY,     /* the handler has the request */
    C_FLUSHING, /* response ended, body consumed; waiting to write it all */
    C_IDLE,     /* keep-alive, nothing in progress */
    C_SHUTTING, /* will send FIN once the output is written */
    C_CLOSING,  /* FIN sent; reading and discarding until the peer's FIN */
    C_CLOSED,   /* uv_close issued */
};

enum { BODY_NONE, BODY_LENGTH, BODY_CHUNKED };
enum { MODE_UNREAD, MODE_BUFFER, MODE_STREAM, MODE_DRAIN };

/* response flags */
enum {
    RF_HAS_CL = 1 << 0,     /* the handler set Content-Length */
    RF_HAS_DATE = 1 << 1,   /* the handler set Date */
    RF_CONN_CLOSE = 1 << 2, /* the handler set Connection: close */
    RF_HEAD_SENT = 1 << 3,  /* the status line and headers are queued */
    RF_CHUNKED = 1 << 4,    /* body goes out chunked */
    RF_NO_BODY = 1 << 5,    /* HEAD, 1xx, 204, 304: body bytes are dropped */
    RF_TAKEN = 1 << 6,      /* ferry answered (error) in the handler's place */
    RF_CLOSE_DELIM = 1 << 7 /* HTTP/1.0 stream: the body ends when we close */
};

struct server_conn {
    transport t; /* the socket; t.io.h.data points back here */
    ferry_server *server;
    list_link link;
    timeout_entry tmo;
    exchange *ex;
    buf_block *rbuf;
    uint32_t requests;
    uint8_t state;
    bool peer_eof, close_after, in_process, idle_counted;
};

struct ferry_res {
    struct ferry_req *req;
};

typedef struct write_waiter {
    uint64_t at; /* fires once flushed_total reaches this */
    ferry_write_cb cb;
    void *data;
} write_waiter;

struct ferry_req {
    struct ferry_res res;
    ferry_server *server;
    server_conn *conn; /* NULL once the connection let go */
    exchange *next_free;
    bool handler_done, conn_done, offloaded;
    uint32_t holds; /* user callbacks running that ferry called: no release meanwhile */
    bool deferred;    /* on the server's list of write callbacks due */
    ferry_abort_cb abort_cb;
    void *abort_data;
    int taken_err; /* why ferry answered in the handler's place */
    exchange *defer_next;
    bool end_pending; /* the body was complete before the handler asked for it */

    /* request */
    parse_head head;
    uint32_t head_len;
    uint8_t body_kind, body_mode;
    bool body_done, body_paused, continue_sent, body_failed, called;
    uint64_t body_left;
    uint64_t body_seen;
    uint64_t body_max;
    parse_chunked_state chunk;
    char *body_buf;
    size_t body_len, body_cap;
    ferry_body_cb body_cb;
    ferry_data_cb data_cb;
    void *cb_data;
    timeout_entry t_request;

    /* response */
    int status;
    uint8_t rflags;
    bool keep_alive;
    char *hdrs;
    size_t hdrs_len, hdrs_cap;
    uint64_t res_cl, res_sent;

    /* output: the response bytes on their way to the connection's transport;
     * kept with the exchange so a pooled exchange brings warm buffers */
    transport_out out;
    write_waiter *waiters;
    size_t nwaiters, waiters_cap;

    /* offload */
    uv_work_t work;
    ferry_work_cb work_cb;
    ferry_after_work_cb after_cb;
    void *work_data;

    parse_field fields[]; /* server->opt.max_headers entries */
};

static void conn_process(server_conn *c);
static void conn_flush(server_conn *c);
static void conn_shutdown(server_conn *c);
static void conn_destroy(server_conn *c, int err);
static void conn_update_reading(server_conn *c);
static void exchange_maybe_release(exchange *ex);

server_conn *server_conn_from_link(list_link *l)
{
    return container_of(l, server_conn, link);
}

/* ---- exchanges: pooled, since every request needs one ---- */

/* Allocates an exchange (owner: the server's cache; lent to one connection
 * and its handler until released). */
static exchange *exchange_get(ferry_server *s)
{
    exchange *ex = s->free_ex;
    if (ex) {
        s->free_ex = ex->next_free;
        s->free_ex_count--;
    } else {
        ex = calloc(1, sizeof(*ex) + (size_t) s->opt.max_headers * sizeof(parse_field));
        if (!ex)
            return NULL;
        ex->server = s;
        ex->res.req = ex;
    }
    s->ex_outstanding++;
    return ex;
}

/* Reset the per-request part, keeping buffers for the next request. */
static void exchange_reset(exchange *ex)
{
    timeout_disarm(&ex->t_request);
    parse_head_init(&ex->head, ex->fields);
    ex->head_len = 0;
    ex->handler_done = true; /* until a handler has it */
    ex->called = ex->end_pending = false;
    ex->body_kind = BODY_NONE;
    ex->body_mode = MODE_UNREAD;
    ex->body_done = ex->body_paused = ex->continue_sent = ex->body_failed = false;
    ex->body_left = ex->body_seen = ex->body_max = 0;
    ex->body_len = 0;
    ex->body_cb = NULL;
    ex->data_cb = NULL;
    ex->status = 200;
    ex->rflags = 0;
    ex->abort_cb = NULL;
    ex->keep_alive = false;
    ex->hdrs_len = 0;
    ex->res_cl = ex->res_sent = 0;
    timeout_entry_init(&ex->t_request, NULL);
}

static void exchange_free(exchange *ex)
{
    free(ex->body_buf);
    free(ex->hdrs);
    transport_out_free(&ex->out);
    free(ex->waiters);
    free(ex);
}

static void exchange_put(ferry_server *s, exchange *ex)
{
    /* bytes the connection never sent are dropped; big buffers are not cached */
    transport_out_reset(&ex->out);
    transport_out_trim(&ex->out, OUT_KEEP_BYTES);
    free(ex->body_buf);
    ex->body_buf = NULL;
    ex->body_cap = 0;
    ex->nwaiters = 0;
    ex->conn = NULL;
    ex->conn_done = ex->offloaded = false;
    if (s->free_ex_count < EXCHANGE_CACHE) {
        ex->next_free = s->free_ex;
        s->free_ex = ex;
        s->free_ex_count++;
    } else {
        exchange_free(ex);
    }
    server_exchange_released(s);
}

void exchange_cache_clear(ferry_server *s)
{
    while (s->free_ex) {
        exchange *ex = s->free_ex;
        s->free_ex = ex->next_free;
        exchange_free(ex);
    }
    s->free_ex_count = 0;
}

/* Free the exchange once nobody needs it: the connection let go, the handler
 * ended the response, no write is in flight and no offloaded work pending. */
static void exchange_maybe_release(exchange *ex)
{
    if (ex->conn_done && ex->handler_done && !ex->out.writing && !ex->offloaded && !ex->holds)
        exchange_put(ex->server, ex);
}

/* Around every user callback ferry makes with an exchange: the callback may
 * end the response or destroy the server, and the exchange must survive
 * until the callback returns. Do not touch ex after unhold(). */
static inline void hold(exchange *ex)
{
    ex->holds++;
}

static inline void unhold(exchange *ex)
{
    if (--ex->holds == 0)
        exchange_maybe_release(ex);
}

/* The response is lost while the handler still has it: tell the handler
 * once (ferry_res_on_abort). */
static void exchange_lost(exchange *ex, int err)
{
    ferry_abort_cb cb = ex->abort_cb;
    if (!cb || ex->handler_done)
        return;
    ex->abort_cb = NULL;
    hold(ex);
    cb(&ex->res, err, ex->abort_data);
    unhold(ex);
}

/* The connection lets go of its exchange (closing, or going idle). */
static void conn_detach_exchange(server_conn *c)
{
    exchange *ex = c->ex;
    if (!ex)
        return;
    c->ex = NULL;
    timeout_disarm(&ex->t_request);
    ex->conn = NULL;
    ex->conn_done = true;
    if (ex->rflags & RF_TAKEN)
        exchange_lost(ex, ex->taken_err); /* ferry answered in its place */
    exchange_maybe_release(ex);
}

/* ---- output ---- */


/* Make room for n more bytes of output (owner: the exchange's transport_out). */
static inline int out_reserve(exchange *ex, size_t n)
{
    return transport_out_reserve(&ex->out, n);
}

static inline void out_put(exchange *ex, const void *p, size_t n)
{
    transport_out_put(&ex->out, p, n);
}

static size_t fmt_u64(char *buf, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

static inline void out_u64(exchange *ex, uint64_t v)
{
    char buf[24];
    out_put(ex, buf, fmt_u64(buf, v));
}

/* Run the write callbacks whose bytes have all reached the kernel (status
 * 0), or all of them with an error when the connection failed. */
static void fire_waiters(exchange *ex, int status)
{
    hold(ex);
    while (ex->nwaiters && (status < 0 || ex->waiters[0].at <= ex->out.flushed_total)) {
        write_waiter w = ex->waiters[0];
        memmove(ex->waiters, ex->waiters + 1, (ex->nwaiters - 1) * sizeof(w));
        ex->nwaiters--;
        w.cb(&ex->res, status, w.data); /* may write again and append waiters */
    }
    unhold(ex);
}

/* Write callbacks never run inside ferry_res_write (a handler that writes
 * again from its callback would recurse without bound): when the kernel took
 * the bytes at once, the callbacks run on the next loop turn. */
static void defer_waiters(exchange *ex)
{
    ferry_server *s = ex->server;
    if (ex->deferred)
        return;
    ex->deferred = true;
    hold(ex);
    ex->defer_next = s->deferred;
    s->deferred = ex;
    uv_idle_start(&s->defer, server_on_defer);
}

void server_on_defer(uv_idle_t *h)
{
    ferry_server *s = h->data;
    exchange *list = s->deferred;
    s->deferred = NULL;
    while (list) {
        exchange *ex = list;
        list = ex->defer_next;
        ex->deferred = false;
        fire_waiters(ex, 0);
        unhold(ex);
    }
    if (!s->deferred)
        uv_idle_stop(h);
}

static void on_write_done(uv_write_t *wr, int status)
{
    exchange *ex = container_of(wr, exchange, out.wreq);
    server_conn *c = ex->conn;
    size_t n = transport_out_written(&ex->out, status);
    if (status < 0 || !c) {
        if (c)
            conn_destroy(c, status);
        else
            exchange_maybe_release(ex);
        return;
    }
    c->server->stats.bytes_out += n;
    fire_waiters(ex, 0);
    if (c->state == C_CLOSED)
        return;
    conn_flush(c);
    if (c->state == C_SHUTTING && !transport_out_pending(&ex->out))
        conn_shutdown(c);
    else if (c->state == C_FLUSHING || c->state == C_BUSY)
        conn_process(c);
}

/* Hand queued bytes to the kernel (transport_flush: what the socket will not
 * take at once goes to one uv_write, finished in on_write_done). */
static void conn_flush(server_conn *c)
{
    exchange *ex = c->ex;
    if (!ex || !ex->out.out_len || ex->out.writing || c->state == C_CLOSED)
        return;
    uint64_t before = ex->out.flushed_total;
    int64_t n = transport_flush(&c->t, &ex->out, on_write_done);
    if (n < 0) {
        /* try_write may have taken a part before uv_write failed */
        c->server->stats.bytes_out += ex->out.flushed_total - before;
        conn_destroy(c, (int) n);
        return;
    }
    c->server->stats.bytes_out += (uint64_t) n;
    if (ex->out.writing && c->server->opt.idle_timeout_ms && c->state != C_CLOSING)
        timeout_arm(&c->server->t_idle, &c->tmo); /* a slow reader is watched */
    if (ex->nwaiters && ex->waiters[0].at <= ex->out.flushed_total)
        defer_waiters(ex);
}

/* Write callbacks whose bytes are all out (or were dropped, as for HEAD)
 * are due even when there was nothing to flush. */
static void check_waiters_due(exchange *ex)
{
    if (ex && ex->nwaiters && ex->waiters[0].at <= ex->out.flushed_total)
        defer_waiters(ex);
}

static bool out_pending(const server_conn *c)
{
    return c->ex && transport_out_pending(&c->ex->out);
}

/* ---- response heads ---- */

static const char *reason_phrase(int status)
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

/* The status line for the statuses most responses use, ready to copy. */
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

/* Whether this response can leave the connection open for another request. */
static bool decide_keep_alive(server_conn *c, exchange *ex)
{
    ferry_server *s = ex->server;
    if (!c || !(ex->head.flags & PARSE_F_KEEP_ALIVE) || s->closing || c->close_after ||
        c->peer_eof || (ex->rflags & (RF_CONN_CLOSE | RF_TAKEN | RF_CLOSE_DELIM)))
        return false;
    if (s->opt.max_requests_per_connection && c->requests >= s->opt.max_requests_per_connection)
        return false;
    if (!ex->body_done) {
        /* A body the handler did not take must be drained to reuse the
         * connection: only if it is small, and only if the client will send
         * it (with Expect: 100-continue and no 100 sent, it may not). */
        if ((ex->head.flags & PARSE_F_EXPECT_CONTINUE) && !ex->continue_sent)
            return false;
        if (ex->body_kind == BODY_LENGTH && ex->body_left > s->opt.max_drain_bytes)
            return false;
    }
    return true;
}

/* Queue the status line and headers. `total` is the whole body's length when
 * the response is ended at the same time (ferry_res_send / end without
 * writes), or UINT64_MAX when the body will be streamed. */
static int queue_head(server_conn *c, exchange *ex, uint64_t total, const char *ctype,
                      size_t ctype_len)
{
    ferry_server *s = ex->server;
    int st = ex->status;
    if (ex->head.method_id == PARSE_M_HEAD || st < 200 || st == 204 || st == 304)
        ex->rflags |= RF_NO_BODY;
    bool framed = st >= 200 && st != 204 && st != 304;
    if (framed && !(ex->rflags & RF_HAS_CL) && total == UINT64_MAX &&
        ex->head.version_minor == 0 && ex->head.method_id != PARSE_M_HEAD)
        ex->rflags |= RF_CLOSE_DELIM; /* HTTP/1.0 has no chunked */
    ex->keep_alive = decide_keep_alive(c, ex);
    int rc = out_reserve(ex, 360 + ex->hdrs_len + ctype_len);
    if (rc < 0)
        return rc;
    size_t sl;
    const char *line = common_status_line(st, &sl);
    if (line) {
        out_put(ex, line, sl);
    } else {
        out_put(ex, "HTTP/1.1 ", 9);
        out_u64(ex, (uint64_t) st);
        out_put(ex, " ", 1);
        const char *reason = reason_phrase(st); /* at most 31 bytes */
        out_put(ex, reason, strlen(reason));
        out_put(ex, "\r\n", 2);
    }
    if (!(ex->rflags & RF_HAS_DATE))
        out_put(ex, server_date_line(s), SERVER_DATE_LINE_LEN);
    if (ex->hdrs_len)
        out_put(ex, ex->hdrs, ex->hdrs_len);
    if (ctype_len) {
        out_put(ex, "Content-Type: ", 14);
        out_put(ex, ctype, ctype_len);
        out_put(ex, "\r\n", 2);
    }
    if (framed) {
        if (ex->rflags & RF_HAS_CL) {
            out_put(ex, "Content-Length: ", 16);
            out_u64(ex, ex->res_cl);
            out_put(ex, "\r\n", 2);
        } else if (total != UINT64_MAX) {
            out_put(ex, "Content-Length: ", 16);
            out_u64(ex, total);
            out_put(ex, "\r\n", 2);
        } else if (!(ex->rflags & RF_CLOSE_DELIM) && ex->head.method_id != PARSE_M_HEAD) {
            out_put(ex, "Transfer-Encoding: chunked\r\n", 28);
            ex->rflags |= RF_CHUNKED;
        }
    }
    if (!ex->keep_alive) {
        out_put(ex, "Connection: close\r\n", 19);
    } else {
        if (ex->head.version_minor == 0)
            out_put(ex, "Connection: keep-alive\r\n", 24);
        out_put(ex, s->ka_line, s->ka_line_len);
    }
    out_put(ex, "\r\n", 2);
    ex->rflags |= RF_HEAD_SENT;
    return 0;
}

/* A response ferry writes itself (400, 408, 413, 417, 431, 501, 505...):
 * short, with Connection: close, then the connection closes gracefully. */
static void conn_error_response(server_conn *c, int status, int err)
{
    ferry_server *s = c->server;
    exchange *ex = c->ex;
    switch (status) {
    case 400: s->stats.errors_400++; break;
    case 408: s->stats.errors_408++; break;
    case 413: s->stats.errors_413++; break;
    case 414: s->stats.errors_414++; break;
    case 417: s->stats.errors_417++; break;
    case 431: s->stats.errors_431++; break;
    case 501: s->stats.errors_501++; break;
    case 505: s->stats.errors_505++; break;
    default: break;
    }
    c->close_after = true;
    if (!ex || (ex->rflags & RF_HEAD_SENT)) {
        conn_shutdown(c); /* too late for a status: just close */
        return;
    }
    ex->rflags = (uint8_t) ((ex->rflags & (RF_HAS_DATE)) | RF_TAKEN);
    ex->taken_err = err;
    ex->hdrs_len = 0;
    ex->status = status;
    char body[160];
    int n = snprintf(body, sizeof(body), "%d %s: %s\n", status, reason_phrase(status),
                     ferry_strerror(err));
    static const char ct[] = "text/plain; charset=utf-8";
    if (queue_head(c, ex, (uint64_t) n, ct, sizeof(ct) - 1) == 0 &&
        ex->head.method_id != PARSE_M_HEAD && out_reserve(ex, (size_t) n) == 0)
        out_put(ex, body, (size_t) n);
    conn_shutdown(c);
}

/* ---- request bodies ---- */

static void body_deliver_end(server_conn *c, exchange *ex, int status)
{
    hold(ex);
    if (ex->body_mode == MODE_BUFFER && ex->body_cb) {
        ferry_body_cb cb = ex->body_cb;
        ex->body_cb = NULL;
        cb(ex, status, status == 0 ? (ex->body_buf ? ex->body_buf : "") : NULL,
           status == 0 ? ex->body_len : 0, ex->cb_data);
    } else if (ex->body_mode == MODE_STREAM && ex->data_cb) {
        ferry_data_cb cb = ex->data_cb;
        ex->data_cb = NULL;
        cb(ex, status == 0 ? FERRY_EOF : status, NULL, 0, ex->cb_data);
    }
    (void) c;
    unhold(ex);
}

/* The body failed (bad framing, too big, client gone): tell the consumer
 * once; the connection will not be reused. */
static void body_fail(server_conn *c, exchange *ex, int err)
{
    if (ex->body_failed || ex->body_done)
        return;
    ex->body_failed = true;
    ex->body_done = true; /* nothing more will be read for it */
    timeout_disarm(&ex->t_request);
    if (c)
        c->close_after = true;
    body_deliver_end(c, ex, err);
}

/* The request failed while the handler has it (timeout, too big, bad
 * framing): ferry writes its own status first, if no response has started,
 * so the handler — told second — sees ferry_res_aborted() and cannot race
 * it with an answer of its own. */
static void conn_fail_request(server_conn *c, exchange *ex, int status, int err)
{
    if (c->state != C_CLOSED && !(ex->rflags & RF_HEAD_SENT) && !ex->handler_done)
        conn_error_response(c, status, err);
    else if (c->state != C_CLOSED)
        c->close_after = true;
    body_fail(c, ex, err);
    if (c->state != C_CLOSED && ex->handler_done && c->ex == ex &&
        (c->state == C_BUSY || c->state == C_FLUSHING))
        conn_shutdown(c);
}

/* Hand the consumer n decoded bytes. Returns false if the connection went
 * away or the body failed meanwhile. */
static bool body_take(server_conn *c, exchange *ex, const char *p, size_t n)
{
    ex->body_seen += n;
    switch (ex->body_mode) {
    case MODE_BUFFER:
        if (n == 0)
            return true;
        if (ex->body_seen > ex->body_max) {
            conn_fail_request(c, ex, 413, FERRY_EBODYTOOBIG);
            return false;
        }
        if (ex->body_len + n > ex->body_cap) {
            size_t cap = ex->body_cap ? ex->body_cap * 2 : 4096;
            while (cap < ex->body_len + n)
                cap *= 2;
            if (cap > ex->body_max && ex->body_max >= ex->body_len + n)
                cap = (size_t) ex->body_max;
            char *nb = realloc(ex->body_buf, cap);
            if (!nb) {
                body_fail(c, ex, FERRY_ENOMEM);
                return false;
            }
            ex->body_buf = nb;
            ex->body_cap = cap;
        }
        memcpy(ex->body_buf + ex->body_len, p, n);
        ex->body_len += n;
        return true;
    case MODE_STREAM:
        if (n && ex->data_cb) {
            hold(ex);
            ex->data_cb(ex, 0, p, n, ex->cb_data);
            if (c->state == C_CLOSED || c->ex != ex) {
                unhold(ex);
                return false;
            }
            unhold(ex);
        }
        return !ex->body_failed;
    case MODE_DRAIN:
        if (ex->body_seen > ex->server->opt.max_drain_bytes) {
            /* Not worth reading: close once the response is out. */
            c->close_after = true;
            ex->body_done = true;
            timeout_disarm(&ex->t_request);
            return false;
        }
        return true;
    default: return true;
    }
}

/* Decode and deliver what the read buffer holds behind the head. */
static void conn_feed_body(server_conn *c)
{
    exchange *ex = c->ex;
    buf_block *b = c->rbuf;
    while (!ex->body_done && !ex->body_paused && ex->body_mode != MODE_UNREAD && b &&
           b->len > ex->head_len) {
        char *p = b->data + ex->head_len;
        size_t avail = b->len - ex->head_len, data_len, used;
        int r;
        if (ex->body_kind == BODY_LENGTH) {
            data_len = used = avail < ex->body_left ? avail : (size_t) ex->body_left;
            ex->body_left -= used;
            r = ex->body_left == 0;
        } else {
            r = parse_chunked(&ex->chunk, p, avail, &data_len, &used);
            if (r < 0) {
                conn_fail_request(c, ex, 400, r);
                return;
            }
        }
        bool ok = body_take(c, ex, p, data_len);
        if (c->state == C_CLOSED || c->ex != ex)
            return;
        /* drop what was used: decoded data at the front, framing consumed */
        memmove(p, p + used, avail - used);
        b->len -= used;
        if (!ok)
            return;
        if (r == 1) {
            ex->body_done = true;
            timeout_disarm(&ex->t_request);
            body_deliver_end(c, ex, 0);
            return;
        }
    }
}

/* ---- the request head ---- */

static void on_request_timeout(timeout_entry *e)
{
    exchange *ex = container_of(e, exchange, t_request);
    server_conn *c = ex->conn;
    if (!c)
        return;
    c->server->stats.timeouts_request++;
    if (c->state == C_HEAD) /* no handler yet: the 408 is all there is */
        conn_error_response(c, 408, FERRY_EREQUESTTIMEOUT);
    else
        conn_fail_request(c, ex, 408, FERRY_EREQUESTTIMEOUT);
}

/* Start an exchange at a request's first byte. */
static bool conn_begin_request(server_conn *c)
{
    if (!c->ex) {
        c->ex = exchange_get(c->server);
        if (!c->ex) {
            conn_destroy(c, FERRY_ENOMEM);
            return false;
        }
        exchange_reset(c->ex);
        c->ex->conn = c;
        c->ex->conn_done = false;
    }
    timeout_entry_init(&c->ex->t_request, on_request_timeout); /* armed by conn_arm_timers */
    return true;
}

/* Arm the headers and request clocks only for a request that did not arrive
 * whole in one read: most never need them, and arming reads the clock. The
 * deadline then runs from the end of the read that brought the first byte
 * (microseconds after it), and is not pushed back by later bytes. */
static void conn_arm_timers(server_conn *c)
{
    exchange *ex = c->ex;
    ferry_server *s = c->server;
    if (!ex)
        return;
    if (c->state == C_HEAD) {
        if (!timeout_is_armed(&c->tmo))
            timeout_arm(&s->t_headers, &c->tmo);
        if (!timeout_is_armed(&ex->t_request))
            timeout_arm(&s->t_request, &ex->t_request);
    } else if (c->state == C_BUSY && !ex->body_done && !timeout_is_armed(&ex->t_request)) {
        timeout_arm(&s->t_request, &ex->t_request);
    }
}

/* Parse the head; on completion, hand it to the handler. Returns true if the
 * state moved on (BUSY, or an error response). */
static bool conn_parse_head(server_conn *c)
{
    ferry_server *s = c->server;
    exchange *ex = c->ex;
    parse_limits lim = {s->opt.max_header_bytes, s->opt.max_headers, s->opt.max_target_bytes,
                        false};
    int r = parse_request(&ex->head, c->rbuf->data, c->rbuf->len, &lim);
    if (r == 0)
        return false;
    if (r < 0) {
        int st = ferry_err_http_status(r);
        conn_error_response(c, st ? st : 400, r);
        return true;
    }
    ex->head_len = (uint32_t) r;
    const parse_head *h = &ex->head;
    /* the head is in: the headers clock stops; inactivity is watched while busy */
    if (s->opt.idle_timeout_ms)
        timeout_arm(&s->t_idle, &c->tmo);
    else
        timeout_disarm(&c->tmo);
    if (h->flags & PARSE_F_CHUNKED) {
        ex->body_kind = BODY_CHUNKED;
        parse_chunked_init(&ex->chunk, s->opt.max_header_bytes, false);
    } else if ((h->flags & PARSE_F_CONTENT_LENGTH) && h->content_length) {
        ex->body_kind = BODY_LENGTH;
        ex->body_left = h->content_length;
    } else {
        ex->body_kind = BODY_NONE;
    }
    ex->body_done = ex->body_kind == BODY_NONE;
    if (ex->body_done)
        timeout_disarm(&ex->t_request);
    c->requests++;
    s->stats.requests++;
    c->state = C_BUSY;
    if (h->version_minor >= 1 && (h->flags & PARSE_F_EXPECT_OTHER)) {
        conn_error_response(c, 417, FERRY_EEXPECT);
        return true;
    }
    if ((h->flags & PARSE_F_EXPECT_CONTINUE) && s->opt.reject_expect_continue) {
        conn_error_response(c, 417, FERRY_EEXPECT);
        return true;
    }
    if (h->method_id == PARSE_M_CONNECT) {
        /* ferry does not hand over raw connections (yet): refuse clearly */
        conn_error_response(c, 501, FERRY_ENOTSUP);
        return true;
    }
    /* An Upgrade offer (h2c, websocket) is simply declined by answering in
     * HTTP/1.1, as RFC 9110 §7.8 allows. */
    ex->called = true;
    ex->handler_done = false;
    hold(ex);
    s->on_request(ex, &ex->res, s->data);
    unhold(ex);
    return true;
}

/* The exchange is complete (response ended, body consumed). Move on: the next
 * pipelined request, idle, or close. Returns true if another head is ready
 * to be parsed now. */
static bool conn_after_exchange(server_conn *c)
{
    exchange *ex = c->ex;
    if (!ex->keep_alive || c->close_after) {
        conn_shutdown(c);
        return false;
    }
    if (c->rbuf && c->rbuf->len) {
        if (ex->out.out_len + (ex->out.writing ? ex->out.wout_len : 0) > OUT_HIGH_WATER)
            return false; /* let the client read first */
        exchange_reset(ex);
        c->state = C_HEAD;
        timeout_disarm(&c->tmo); /* conn_arm_timers starts the headers clock if needed */
        if (!conn_begin_request(c))
            return false;
        return true;
    }
    if (out_pending(c))
        return false;
    /* idle: hold nothing */
    conn_detach_exchange(c);
    buf_pool_put_if_empty(&c->server->rbufs, &c->rbuf);
    c->state = C_IDLE;
    c->idle_counted = true;
    c->server->nidle++;
    timeout_arm(&c->server->t_keep_alive, &c->tmo);
    if (c->server->closing)
        server_conn_close_idle(c);
    return false;
}

/* Drop the finished request's bytes (head; the body was consumed as it was
 * read), keeping any pipelined bytes behind them. */
static void conn_finish_exchange(server_conn *c)
{
    exchange *ex = c->ex;
    buf_block *b = c->rbuf;
    if (b && ex->head_len) {
        memmove(b->data, b->data + ex->head_len, b->len - ex->head_len);
        b->len -= ex->head_len;
        ex->head_len = 0;
    }
    c->state = C_FLUSHING;
}

static void conn_process(server_conn *c)
{
    if (c->in_process)
        return;
    c->in_process = true;
    for (bool progress = true; progress && c->state != C_CLOSED;) {
        progress = false;
        switch (c->state) {
        case C_HEAD: progress = c->rbuf && c->rbuf->len && conn_parse_head(c); break;
        case C_BUSY: {
            exchange *ex = c->ex;
            if (ex->end_pending) {
                ex->end_pending = false;
                body_deliver_end(c, ex, 0);
                if (c->state != C_BUSY || c->ex != ex)
                    break;
            }
            if (!ex->body_done && ex->handler_done) {
                if (ex->body_mode == MODE_UNREAD)
                    ex->body_mode = MODE_DRAIN; /* the handler did not want it */
                if (c->close_after || !ex->keep_alive)
                    ex->body_done = true; /* we close after the response: skip it */
            }
            conn_feed_body(c);
            if (c->state == C_BUSY && c->ex == ex && ex->handler_done && ex->body_done) {
                conn_finish_exchange(c);
                progress = true;
            }
            break;
        }
        case C_FLUSHING:
            /* no flush here: pipelined responses leave together below */
            progress = conn_after_exchange(c);
            break;
        default: break;
        }
    }
    c->in_process = false;
    if (c->state == C_CLOSED)
        return;
    conn_flush(c);
    if (c->state == C_FLUSHING && !out_pending(c))
        conn_after_exchange(c);
    if (c->state != C_CLOSED) {
        conn_arm_timers(c);
        conn_update_reading(c);
    }
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    server_conn *c = h->data;
    (void) suggested;
    if (c->state == C_CLOSING || c->state == C_CLOSED) {
        *out = uv_buf_init(c->server->discard, sizeof(c->server->discard));
        return;
    }
    buf_uv_alloc(&c->server->rbufs, &c->rbuf, out);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    server_conn *c = st->data;
    ferry_server *s = c->server;
    (void) buf;
    if (nread == 0)
        return;
    if (c->state == C_CLOSING || c->state == C_CLOSED) {
        if (nread < 0 && c->state == C_CLOSING) /* the peer's FIN (or reset): done */
            conn_destroy(c, 0);
        return;
    }
    if (nread < 0) {
        buf_pool_put_if_empty(&s->rbufs, &c->rbuf);
        if (nread != UV_EOF) {
            conn_destroy(c, (int) nread);
            return;
        }
        c->peer_eof = true;
        transport_read_stop(&c->t);
        switch (c->state) {
        case C_NEW:
        case C_IDLE:
        case C_HEAD: /* nothing to answer: the client left */
            conn_destroy(c, 0);
            return;
        default:
            /* A half-closed client still gets its response (unlike Node). */
            if (c->ex && !c->ex->body_done)
                body_fail(c, c->ex, FERRY_EOF);
            c->close_after = true;
            if (c->state != C_CLOSED)
                conn_process(c);
            return;
        }
    }
    buf_commit(c->rbuf, (size_t) nread);
    s->stats.bytes_in += (uint64_t) nread;
    if (c->state == C_IDLE || c->state == C_NEW) {
        if (c->state == C_IDLE) {
            s->nidle--;
            c->idle_counted = false;
            timeout_disarm(&c->tmo); /* keep-alive over; a headers clock only if needed */
        }
        c->state = C_HEAD;
        if (!conn_begin_request(c))
            return;
    } else if (c->state == C_BUSY && s->opt.idle_timeout_ms) {
        timeout_arm(&s->t_idle, &c->tmo);
    }
    conn_process(c);
}

/* Read while there is room and someone wants the bytes; a full buffer or a
 * paused body stops reading, which is the backpressure the client feels. */
static void conn_update_reading(server_conn *c)
{
    bool want = !c->peer_eof && c->state != C_CLOSED && c->state != C_SHUTTING;
    if (want && c->state != C_CLOSING) {
        exchange *ex = c->ex;
        if (ex && ex->body_paused && !ex->body_done)
            want = false;
        if (c->rbuf && c->rbuf->len >= c->rbuf->size)
            want = false;
    }
    if (want)
        transport_read_start(&c->t, on_alloc, on_read);
    else
        transport_read_stop(&c->t);
}

/* ---- closing ---- */

static void on_conn_closed(uv_handle_t *h)
{
    server_conn *c = h->data;
    ferry_server *s = c->server;
    list_remove(&c->link);
    if (c->idle_counted)
        s->nidle--;
    buf_block *b = c->rbuf;
    c->rbuf = NULL;
    if (b)
        buf_pool_put(&s->rbufs, b);
    free(c);
    server_conn_closed(s);
}

/* Close now. err < 0 aborts the exchange (the handler sees it through
 * ferry_res_aborted, its body callback and its write callbacks). */
static void conn_destroy(server_conn *c, int err)
{
    if (c->state == C_CLOSED)
        return;
    bool reset = err != 0 && c->state != C_CLOSING;
    c->state = C_CLOSED;
    timeout_disarm(&c->tmo);
    if (c->idle_counted) {
        c->server->nidle--;
        c->idle_counted = false;
    }
    exchange *ex = c->ex;
    if (ex) {
        c->ex = NULL;
        timeout_disarm(&ex->t_request);
        ex->conn = NULL;
        ex->conn_done = true;
        /* tell the handler, with the exchange already detached */
        if (!ex->body_done && ex->body_mode != MODE_UNREAD)
            body_fail(NULL, ex, err < 0 ? err : FERRY_ECONNRESET);
        if (ex->nwaiters)
            fire_waiters(ex, err < 0 ? err : FERRY_ECONNRESET);
        hold(ex);
        exchange_lost(ex, err < 0 ? err : FERRY_ECONNRESET);
        unhold(ex);
    }
    transport_close(&c->t, reset, on_conn_closed);
}

/* Graceful close: write what is queued, send FIN, then — if the client may
 * still be sending — read and discard until its FIN (or the linger timeout),
 * so no RST is ever sent for bytes it already sent: a RST can destroy the
 * response still unread in its receive buffer. A client whose request was
 * read whole and that has sent nothing more needs no linger (nginx's rule
 * too): then the close is immediate. */
static void conn_shutdown(server_conn *c)
{
    if (c->state == C_CLOSED || c->state == C_CLOSING)
        return;
    if (out_pending(c)) {
        c->state = C_SHUTTING;
        conn_flush(c);
        if (c->state != C_SHUTTING || out_pending(c))
            return;
    }
    bool may_send = (c->rbuf && c->rbuf->len) || (c->ex && !c->ex->body_done) ||
                    c->state == C_HEAD || c->state == C_NEW;
    if (!may_send && !c->peer_eof)
        may_send = transport_peek(&c->t) == 1; /* bytes already waiting */
    conn_detach_exchange(c);
    buf_block *b = c->rbuf;
    c->rbuf = NULL;
    if (b)
        buf_pool_put(&c->server->rbufs, b);
    if (c->idle_counted) {
        c->server->nidle--;
        c->idle_counted = false;
    }
    if (c->peer_eof || !may_send || !c->server->opt.linger_timeout_ms) {
        conn_destroy(c, 0); /* nothing unread: close() sends the FIN */
        return;
    }
    if (transport_shutdown_write(&c->t) == UV_EBADF) { /* no socket left to linger on */
        conn_destroy(c, 0);
        return;
    }
    c->state = C_CLOSING;
    timeout_arm(&c->server->t_linger, &c->tmo); /* on_conn_timeout closes it */
    transport_read_start(&c->t, on_alloc, on_read);
}

bool server_conn_is_idle(const server_conn *c)
{
    /* No complete head yet counts as idle: nobody is waiting for an answer. */
    return c->state == C_IDLE || c->state == C_NEW || c->state == C_HEAD;
}

/* Read whatever the kernel already holds for this connection, without
 * waiting: libuv would deliver it on the next loop turn, but we are about to
 * close. Returns bytes read (0: none), or a negative code for EOF/errors. */
static ssize_t conn_read_pending(server_conn *c)
{
    ssize_t total = 0;
    for (;;) {
        if (!c->rbuf) {
            c->rbuf = buf_pool_get(&c->server->rbufs);
            if (!c->rbuf)
                return total;
            c->rbuf->len = 0;
        }
        size_t room = c->rbuf->size - c->rbuf->len;
        if (!room)
            return total;
        ssize_t n = transport_read_now(&c->t, c->rbuf->data + c->rbuf->len, room);
        if (n > 0) {
            c->rbuf->len += (size_t) n;
            c->server->stats.bytes_in += (uint64_t) n;
            total += n;
            continue;
        }
        buf_pool_put_if_empty(&c->server->rbufs, &c->rbuf);
        if (n == FERRY_EOF) {
            c->peer_eof = true;
            return total ? total : UV_EOF;
        }
        if (n == 0)
            return total; /* nothing more waiting */
        return total ? total : n;
    }
}

void server_conn_close_idle(server_conn *c)
{
    if (!server_conn_is_idle(c))
        return;
    /* The idle-close race: a request may already be in the kernel. Read it
     * and, if its head is complete, answer it with Connection: close. */
    ssize_t n = conn_read_pending(c);
    if (n < 0 && n != UV_EOF) {
        conn_destroy(c, (int) n);
        return;
    }
    if (n > 0) {
        if (c->state == C_IDLE) {
            c->server->nidle--;
            c->idle_counted = false;
        }
        if (c->state != C_HEAD) {
            c->state = C_HEAD;
            if (!conn_begin_request(c))
                return;
        }
    }
    if (c->state == C_HEAD && c->rbuf && c->rbuf->len) {
        c->close_after = true;
        conn_process(c);
        if (c->state != C_HEAD)
            return; /* answered, or being answered, with Connection: close */
        conn_shutdown(c); /* a partial head: the client is mid-send, so linger */
        return;
    }
    /* Nothing pending: close now, as nginx and Node do for idle connections
     * (with nothing unread, close() sends a FIN, not a RST); lingering here
     * would only wait on clients that never read. */
    conn_destroy(c, 0);
}

void server_conn_begin_shutdown(server_conn *c)
{
    /* The response in flight will carry Connection: close (decide_keep_alive
     * sees server->closing); if its head is already out, we close after it. */
    c->close_after = true;
}

void server_conn_destroy(server_conn *c)
{
    conn_destroy(c, FERRY_ECLOSING);
}

/* ---- timeouts on the connection ---- */

static void on_conn_timeout(timeout_entry *e)
{
    server_conn *c = container_of(e, server_conn, tmo);
    ferry_server *s = c->server;
    switch (c->state) {
    case C_NEW:
    case C_HEAD:
        s->stats.timeouts_headers++;
        if (!c->ex && !conn_begin_request(c))
            return;
        conn_error_response(c, 408, FERRY_EHEADERSTIMEOUT);
        return;
    case C_IDLE:
        s->stats.timeouts_keep_alive++;
        server_conn_close_idle(c);
        return;
    case C_CLOSING: conn_destroy(c, 0); return;
    default: /* busy and silent for idle_timeout_ms */
        s->stats.timeouts_idle++;
        if (c->ex && !(c->ex->rflags & RF_HEAD_SENT) && !c->ex->handler_done) {
            conn_fail_request(c, c->ex, 408, FERRY_EIDLETIMEOUT);
            return;
        }
        conn_destroy(c, FERRY_EIDLETIMEOUT);
        return;
    }
}

/* Allocates the connection (owner: the server's list, freed in
 * on_conn_closed after transport_close). */
int server_conn_accept(ferry_server *s, uv_os_sock_t fd, bool is_pipe)
{
    server_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return FERRY_ENOMEM;
    bool initialised;
    int rc = transport_open(s->loop, &c->t, fd, is_pipe, &initialised);
    if (!initialised) {
        free(c);
        return rc;
    }
    c->t.io.h.data = c;
    c->server = s;
    list_init(&c->link);
    list_append(&s->conns, &c->link);
    s->nconns++;
    if (rc < 0) {
        /* the handle exists: close it properly. The fd uv_*_open refused is
         * not the handle's, so it is closed here. */
        c->state = C_CLOSED;
        transport_close(&c->t, false, on_conn_closed);
        close(fd);
        return 0;
    }
    s->stats.connections_accepted++;
    c->state = C_NEW;
    timeout_entry_init(&c->tmo, on_conn_timeout);
    timeout_arm(&s->t_headers, &c->tmo); /* a silent connection is not free */
    conn_update_reading(c);
    return 0;
}

/* ---- public: request ---- */

ferry_str ferry_req_method(const ferry_req *req)
{
    return (ferry_str){req->head.method, req->head.method_len};
}

ferry_str ferry_req_target(const ferry_req *req)
{
    return (ferry_str){req->head.target, req->head.target_len};
}

ferry_str ferry_req_path(const ferry_req *req)
{
    const char *q = memchr(req->head.target, '?', req->head.target_len);
    size_t n = q ? (size_t) (q - req->head.target) : req->head.target_len;
    return (ferry_str){req->head.target, n};
}

ferry_str ferry_req_query(const ferry_req *req)
{
    const char *q = memchr(req->head.target, '?', req->head.target_len);
    if (!q)
        return (ferry_str){NULL, 0};
    return (ferry_str){q + 1, req->head.target_len - (size_t) (q + 1 - req->head.target)};
}

int ferry_req_version_minor(const ferry_req *req)
{
    return req->head.version_minor;
}

ferry_str ferry_req_header(const ferry_req *req, const char *name)
{
    const parse_field *f = parse_find_field(&req->head, name, strlen(name));
    return f ? (ferry_str){f->value, f->value_len} : (ferry_str){NULL, 0};
}

size_t ferry_req_header_count(const ferry_req *req)
{
    return req->head.nfields;
}

int ferry_req_header_at(const ferry_req *req, size_t i, ferry_str *name, ferry_str *value)
{
    if (i >= req->head.nfields)
        return FERRY_EINVAL;
    const parse_field *f = &req->head.fields[i];
    *name = (ferry_str){f->name, f->name_len};
    *value = (ferry_str){f->value, f->value_len};
    return 0;
}

int ferry_req_peer(const ferry_req *req, struct sockaddr_storage *addr)
{
    server_conn *c = req->conn;
    if (!c)
        return FERRY_ENOTCONN;
    return transport_peername(&c->t, addr);
}

ferry_res *ferry_req_res(ferry_req *req)
{
    return &req->res;
}

ferry_server *ferry_req_server(const ferry_req *req)
{
    return req->server;
}

/* Common start of read_body / on_data: the checks, the caller's data, and
 * 100 Continue for a client waiting for it. */
static int body_start(ferry_req *req, uint8_t mode, void *data)
{
    if (req->body_mode != MODE_UNREAD || req->handler_done)
        return FERRY_EALREADY;
    req->body_mode = mode;
    req->cb_data = data;
    server_conn *c = req->conn;
    if (c && (req->head.flags & PARSE_F_EXPECT_CONTINUE) && !req->body_done &&
        !req->continue_sent && !(req->rflags & RF_HEAD_SENT)) {
        /* The client waits for this before sending the body. */
        if (out_reserve(req, 25) == 0) {
            out_put(req, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            req->continue_sent = true;
        }
    }
    return 0;
}

/* Run the connection's processing unless we are already inside it (then it
 * continues when the handler returns). */
static void kick(ferry_req *req)
{
    server_conn *c = req->conn;
    if (c && !c->in_process && c->state != C_CLOSED)
        conn_process(c);
}

/* Common end of read_body / on_data: deliver what is there (a body already
 * complete is delivered by conn_process, never from inside the call). */
static int body_go(ferry_req *req)
{
    if (!req->conn) {
        body_fail(NULL, req, FERRY_ECONNRESET);
        return 0;
    }
    if (req->body_done)
        req->end_pending = true;
    kick(req);
    return 0;
}

int ferry_req_read_body(ferry_req *req, uint64_t max_bytes, ferry_body_cb cb, void *data)
{
    if (!cb)
        return FERRY_EINVAL;
    int rc = body_start(req, MODE_BUFFER, data);
    if (rc < 0)
        return rc;
    req->body_cb = cb;
    req->body_max = max_bytes ? max_bytes : req->server->opt.max_body_bytes;
    server_conn *c = req->conn;
    if (c && req->body_kind == BODY_LENGTH && req->head.content_length > req->body_max) {
        /* Declared too big: refuse before reading a byte, and say so now. */
        req->body_mode = MODE_UNREAD;
        req->body_cb = NULL;
        c->close_after = true;
        if (c->state != C_CLOSED && !(req->rflags & RF_HEAD_SENT))
            conn_error_response(c, 413, FERRY_EBODYTOOBIG);
        return FERRY_EBODYTOOBIG;
    }
    if (c && req->body_kind == BODY_LENGTH) { /* the size is known: allocate once */
        char *nb = realloc(req->body_buf, (size_t) req->head.content_length);
        if (nb) {
            req->body_buf = nb;
            req->body_cap = (size_t) req->head.content_length;
        }
    }
    return body_go(req);
}

int ferry_req_on_data(ferry_req *req, ferry_data_cb cb, void *data)
{
    if (!cb)
        return FERRY_EINVAL;
    int rc = body_start(req, MODE_STREAM, data);
    if (rc < 0)
        return rc;
    req->data_cb = cb;
    return body_go(req);
}

void ferry_req_pause(ferry_req *req)
{
    req->body_paused = true;
    if (req->conn && !req->conn->in_process)
        conn_update_reading(req->conn);
}

void ferry_req_resume(ferry_req *req)
{
    if (!req->body_paused)
        return;
    req->body_paused = false;
    kick(req);
}

/* ---- public: response ---- */

ferry_req *ferry_res_req(ferry_res *res)
{
    return res->req;
}

void ferry_res_on_abort(ferry_res *res, ferry_abort_cb cb, void *data)
{
    res->req->abort_cb = cb;
    res->req->abort_data = data;
}

int ferry_res_aborted(const ferry_res *res)
{
    const exchange *ex = res->req;
    return !ex->conn || ex->conn->state == C_CLOSED || (ex->rflags & RF_TAKEN);
}

int ferry_res_set_status(ferry_res *res, int status)
{
    exchange *ex = res->req;
    if (status < 100 || status > 599)
        return FERRY_EINVAL;
    if (ex->rflags & RF_HEAD_SENT || ex->handler_done)
        return FERRY_EALREADY;
    ex->status = status;
    return 0;
}

/* Case-insensitive name comparison with a lowercase literal of length n. */
static bool name_is(const char *name, const char *lit, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((name[i] | 0x20) != lit[i])
            return false;
    return true;
}

/* Remove every "name: ..." line from the handler's header block. */
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
    case 17:
        return name_is(name, "transfer-encoding", 17) ? FERRY_EINVAL : 0;
    default: return 0;
    }
}

static int header_common(ferry_res *res, const char *name, const char *value, bool replace)
{
    exchange *ex = res->req;
    if (!name || !value)
        return FERRY_EINVAL;
    if (ex->rflags & RF_HEAD_SENT || ex->handler_done)
        return FERRY_EALREADY;
    size_t n = strlen(name), v = strlen(value);
    if (!parse_is_token(name, n))
        return FERRY_EINVAL;
    for (size_t i = 0; i < v; i++) {
        unsigned char ch = (unsigned char) value[i];
        if ((ch < 32 && ch != '\t') || ch == 127)
            return FERRY_EINVAL; /* no CR/LF: no response splitting */
    }
    int rc = header_special(ex, name, n, value, v);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    if (replace && ex->hdrs_len)
        hdrs_remove(ex, name, n);
    size_t need = ex->hdrs_len + n + v + 4;
    if (need > ex->hdrs_cap && buf_reserve(&ex->hdrs, &ex->hdrs_cap, need, 256) < 0)
        return FERRY_ENOMEM;
    char *p = ex->hdrs + ex->hdrs_len;
    memcpy(p, name, n);
    p[n] = ':';
    p[n + 1] = ' ';
    memcpy(p + n + 2, value, v);
    p[n + 2 + v] = '\r';
    p[n + 3 + v] = '\n';
    ex->hdrs_len = need;
    return 0;
}

int ferry_res_set_header(ferry_res *res, const char *name, const char *value)
{
    return header_common(res, name, value, true);
}

int ferry_res_add_header(ferry_res *res, const char *name, const char *value)
{
    return header_common(res, name, value, false);
}

/* Queue body bytes (framed as the head decided). */
static int queue_body(exchange *ex, const void *buf, size_t len)
{
    if (!len || (ex->rflags & RF_NO_BODY))
        return 0;
    if ((ex->rflags & RF_HAS_CL) && ex->res_sent + len > ex->res_cl)
        return FERRY_EINVAL; /* more than the declared Content-Length */
    int rc = out_reserve(ex, len + 32);
    if (rc < 0)
        return rc;
    if (ex->rflags & RF_CHUNKED) {
        char hex[20];
        int n = snprintf(hex, sizeof(hex), "%zx\r\n", len);
        out_put(ex, hex, (size_t) n);
        out_put(ex, buf, len);
        out_put(ex, "\r\n", 2);
    } else {
        out_put(ex, buf, len);
    }
    ex->res_sent += len;
    return 0;
}

int ferry_res_write(ferry_res *res, const void *buf, size_t len, ferry_write_cb cb, void *data)
{
    exchange *ex = res->req;
    server_conn *c = ex->conn;
    if (ex->handler_done)
        return FERRY_EALREADY;
    if (!c || c->state == C_CLOSED || (ex->rflags & RF_TAKEN))
        return FERRY_ECONNRESET;
    if (!(ex->rflags & RF_HEAD_SENT)) {
        int rc = queue_head(c, ex, UINT64_MAX, NULL, 0);
        if (rc < 0)
            return rc;
    }
    int rc = queue_body(ex, buf, len);
    if (rc < 0)
        return rc;
    if (cb) {
        if (ex->nwaiters == ex->waiters_cap) {
            size_t cap = ex->waiters_cap ? ex->waiters_cap * 2 : 4;
            write_waiter *w = realloc(ex->waiters, cap * sizeof(*w));
            if (!w)
                return FERRY_ENOMEM;
            ex->waiters = w;
            ex->waiters_cap = cap;
        }
        ex->waiters[ex->nwaiters++] = (write_waiter){ex->out.queued_total, cb, data};
    }
    if (!c->in_process)
        conn_flush(c);
    check_waiters_due(ex);
    return 0;
}

/* The handler is done with the response. */
static void res_finish(exchange *ex)
{
    server_conn *c = ex->conn;
    ex->handler_done = true;
    if (!c || c->state == C_CLOSED) {
        exchange_maybe_release(ex);
        return;
    }
    if (ex->rflags & RF_TAKEN) {
        exchange_maybe_release(ex);
        return;
    }
    if ((ex->rflags & RF_HAS_CL) && ex->res_sent < ex->res_cl && !(ex->rflags & RF_NO_BODY))
        c->close_after = true; /* promised more than was sent: the framing is broken */
    if (!ex->body_done && ex->body_mode == MODE_UNREAD)
        ex->body_mode = MODE_DRAIN;
    if (!c->in_process)
        conn_process(c);
}

int ferry_res_end(ferry_res *res)
{
    exchange *ex = res->req;
    if (ex->handler_done)
        return FERRY_EALREADY;
    server_conn *c = ex->conn;
    if (c && c->state != C_CLOSED && !(ex->rflags & RF_TAKEN)) {
        int rc = 0;
        if (!(ex->rflags & RF_HEAD_SENT))
            rc = queue_head(c, ex, 0, NULL, 0);
        else if (ex->rflags & RF_CHUNKED)
            rc = out_reserve(ex, 5) == 0 ? (out_put(ex, "0\r\n\r\n", 5), 0) : FERRY_ENOMEM;
        if (rc < 0) {
            c->close_after = true;
            conn_destroy(c, rc);
        } else if (ex->rflags & RF_CLOSE_DELIM) {
            c->close_after = true;
        }
    }
    res_finish(ex);
    return 0;
}

int ferry_res_send(ferry_res *res, int status, const char *content_type, const void *body,
                   size_t len)
{
    exchange *ex = res->req;
    if (ex->handler_done)
        return FERRY_EALREADY;
    server_conn *c = ex->conn;
    if (!c || c->state == C_CLOSED || (ex->rflags & RF_TAKEN)) {
        res_finish(ex);
        return 0;
    }
    if (ex->rflags & RF_HEAD_SENT) {
        /* a response is already under way: finish it as ferry_res_end would */
        queue_body(ex, body, len);
        ferry_res_end(res);
        return FERRY_EALREADY;
    }
    int rc = ferry_res_set_status(res, status);
    size_t ctype_len = 0;
    if (rc == 0 && content_type) {
        /* The usual case, no other headers yet: straight into the head. */
        ctype_len = strlen(content_type);
        for (size_t i = 0; i < ctype_len && rc == 0; i++) {
            unsigned char ch = (unsigned char) content_type[i];
            if ((ch < 32 && ch != '\t') || ch == 127)
                rc = FERRY_EINVAL;
        }
        if (rc == 0 && ex->hdrs_len) {
            rc = ferry_res_set_header(res, "Content-Type", content_type);
            ctype_len = 0;
        }
    }
    ex->rflags &= (uint8_t) ~RF_HAS_CL;
    if (rc == 0)
        rc = queue_head(c, ex, len, content_type, ctype_len);
    if (rc == 0)
        rc = queue_body(ex, body, len);
    if (rc < 0) {
        c->close_after = true;
        conn_destroy(c, rc);
    }
    res_finish(ex);
    return rc;
}

/* ---- offload ---- */

static void offload_work(uv_work_t *w)
{
    exchange *ex = container_of(w, exchange, work);
    ex->work_cb(ex->work_data);
}

static void offload_done(uv_work_t *w, int status)
{
    exchange *ex = container_of(w, exchange, work);
    ex->offloaded = false;
    hold(ex);
    ex->after_cb(&ex->res, status, ex->work_data);
    unhold(ex);
}

int ferry_res_offload(ferry_res *res, ferry_work_cb work_cb, ferry_after_work_cb after_cb,
                      void *data)
{
    exchange *ex = res->req;
    if (!work_cb || !after_cb)
        return FERRY_EINVAL;
    if (ex->handler_done || ex->offloaded)
        return FERRY_EALREADY;
    ex->work_cb = work_cb;
    ex->after_cb = after_cb;
    ex->work_data = data;
    int rc = uv_queue_work(ex->server->loop, &ex->work, offload_work, offload_done);
    if (rc == 0)
        ex->offloaded = true;
    return rc;
}
