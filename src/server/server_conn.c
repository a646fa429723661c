/* server_conn.c — one server connection: its state machine.
 *
 *   NEW ──first byte──> HEAD ──head parsed──> BUSY ──response ended and body
 *    │                   ^                      │      read or drained──> FLUSHING
 *    │                   └──pipelined bytes─────┼──────────────────────────┘ │
 *    │                                          │                            │ all written
 *    └─────────────── closing: SHUTTING (flush) → CLOSING (FIN sent, linger) → CLOSED
 *                                                              IDLE <────────┘ (keep-alive)
 *
 * The state changes in one place, conn_set_state, which checks the
 * transition and keeps the server's idle count.
 *
 * One exchange at a time per connection: the next pipelined request is
 * parsed when the current response is ended and its body consumed, and only
 * while less than OUT_HIGH_WATER bytes wait to be written — so parsing never
 * outruns the client's reading. Whenever the output drains below the bound,
 * by a write that completes inside a call or later, parsing goes on.
 * Responses to pipelined requests are queued into one output buffer and
 * leave in one write per loop turn.
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
 * The bytes themselves go through the transport (core/transport.h): this
 * file decides when to read, write, shut down and close, never how.
 */
#include "server/server_conn.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http1/body.h"
#include "tls/transport_tls.h"

#define OUT_HIGH_WATER (64 * 1024) /* stop parsing pipelined requests above this */

static void conn_process(server_conn *c);
static void conn_shutdown(server_conn *c);
static void conn_destroy(server_conn *c, int err);
static void on_conn_timeout(timeout_entry *e);

server_conn *server_conn_from_link(list_link *l)
{
    return container_of(l, server_conn, link);
}

/* ---- the one place the state changes ---- */

#ifndef NDEBUG
#define S(x) (1u << (x))
static const unsigned allowed_next[] = {
    [C_NEW] = S(C_HEAD) | S(C_SHUTTING) | S(C_CLOSING) | S(C_CLOSED),
    [C_HEAD] = S(C_HEAD) | S(C_BUSY) | S(C_SHUTTING) | S(C_CLOSING) | S(C_CLOSED),
    [C_BUSY] = S(C_FLUSHING) | S(C_SHUTTING) | S(C_CLOSING) | S(C_CLOSED),
    [C_FLUSHING] = S(C_HEAD) | S(C_IDLE) | S(C_SHUTTING) | S(C_CLOSING) | S(C_CLOSED),
    [C_IDLE] = S(C_HEAD) | S(C_SHUTTING) | S(C_CLOSING) | S(C_CLOSED),
    [C_SHUTTING] = S(C_CLOSING) | S(C_CLOSED),
    [C_CLOSING] = S(C_CLOSED),
    [C_CLOSED] = 0,
};
#undef S
#endif

static void conn_set_state(server_conn *c, enum conn_state to)
{
    assert(allowed_next[c->state] & (1u << to));
    conn_set *set = &c->server->set;
    if (c->state == C_IDLE)
        set->nidle--;
    if (to == C_IDLE)
        set->nidle++;
    c->state = (uint8_t) to;
}

/* ---- the exchange ---- */

static void on_request_timeout(timeout_entry *e);

/* Start an exchange at a request's first byte. */
static bool conn_begin_request(server_conn *c)
{
    if (!c->ex) {
        exchange *ex = c->server->exev->get(c->server);
        if (!ex) {
            conn_destroy(c, FERRY_ENOMEM);
            return false;
        }
        ex->conn = c;
        ex->conn_done = false;
        c->ex = ex;
    }
    transport_busy(&c->t);
    timeout_entry_init(&c->ex->t_request, on_request_timeout); /* armed by conn_arm_timers */
    return true;
}

/* The connection lets go of its exchange (closing, or going idle); err < 0:
 * the response is lost. */
static void conn_detach(server_conn *c, int err)
{
    exchange *ex = c->ex;
    if (!ex)
        return;
    c->ex = NULL;
    timeout_disarm(&ex->t_request);
    if (!ex->handler_done && c->t.rbuf) /* its strings stay valid until the response ends */
        exchange_keep_head(ex, c->t.rbuf->data);
    ex->conn = NULL;
    ex->conn_done = true;
    if (!err && (ex->rflags & RF_TAKEN))
        err = ex->taken_err; /* ferry answered in the handler's place */
    c->server->exev->detached(ex, err);
}

/* ---- output ---- */

void server_conn_flush(server_conn *c)
{
    if (c->state == C_CLOSED)
        return;
    int64_t n = transport_flush(&c->t);
    if (n < 0) {
        conn_destroy(c, (int) n);
        return;
    }
    ferry_server *s = c->server;
    if (transport_out_pending(&c->t) && s->opt.idle_timeout_ms && c->state != C_CLOSING)
        timeout_arm(&s->t_idle, &c->tmo); /* a slow reader is watched */
    if (c->ex && waiters_due(&c->ex->waiters, c->t.flushed_total))
        s->exev->flushed(c->ex);
}

/* Whether this response can leave the connection open for another request. */
static bool decide_keep_alive(server_conn *c, exchange *ex)
{
    ferry_server *s = c->server;
    /* draining (a close began, its drain delay too): every client moves to a
     * new connection at a request boundary, where no request can be lost */
    if (!(ex->head.flags & PARSE_F_KEEP_ALIVE) || s->draining || c->close_after || c->peer_eof ||
        (ex->rflags & (RF_CONN_CLOSE | RF_TAKEN | RF_CLOSE_DELIM)))
        return false;
    if (s->opt.max_requests_per_connection && c->requests >= s->opt.max_requests_per_connection)
        return false;
    if (!ex->body_done) {
        /* A body the handler did not take must be drained to reuse the
         * connection: only if it is small, and only if the client will send
         * it (with Expect: 100-continue and no 100 sent, it may not). */
        if ((ex->head.flags & PARSE_F_EXPECT_CONTINUE) && !ex->continue_sent)
            return false;
        if (ex->body.kind == BODY_LENGTH && ex->body.left > s->opt.max_drain_bytes)
            return false;
    }
    return true;
}

int server_conn_queue_head(server_conn *c, exchange *ex, uint64_t total, const char *ctype,
                           size_t ctype_len)
{
    response_frame(ex, total);
    ex->keep_alive = decide_keep_alive(c, ex);
    return response_queue_head(ex, &c->t, &c->server->rctx, total, ctype, ctype_len);
}

/* A response ferry writes itself (400, 408, 413, 417, 431, 501, 505...):
 * short, with Connection: close, then the connection closes gracefully. */
void server_conn_error_response(server_conn *c, int status, int err)
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
    char body[RESPONSE_ERROR_MAX];
    size_t n = response_make_error(ex, status, err, body);
    static const char ct[] = "text/plain; charset=utf-8";
    if (server_conn_queue_head(c, ex, n, ct, sizeof(ct) - 1) == 0 &&
        ex->head.method_id != PARSE_M_HEAD && transport_reserve(&c->t, n) == 0)
        transport_put(&c->t, body, n);
    conn_shutdown(c);
}

/* ---- request bodies ---- */

/* The body failed (bad framing, too big, client gone): tell the consumer
 * once; the connection will not be reused. */
static void body_fail(server_conn *c, exchange *ex, int err)
{
    if (ex->body_failed || ex->body_done)
        return;
    ex->body_failed = true;
    ex->body_done = true; /* nothing more will be read for it */
    timeout_disarm(&ex->t_request);
    c->close_after = true;
    c->server->exev->body_end(ex, err);
}

/* The request failed while the handler has it (timeout, too big, bad
 * framing): ferry writes its own status first, if no response has started,
 * so the handler — told second — sees ferry_res_aborted() and cannot race
 * it with an answer of its own. */
static void conn_fail_request(server_conn *c, exchange *ex, int status, int err)
{
    if (c->state != C_CLOSED && !(ex->rflags & RF_HEAD_SENT) && !ex->handler_done)
        server_conn_error_response(c, status, err);
    else if (c->state != C_CLOSED)
        c->close_after = true;
    body_fail(c, ex, err);
    if (c->state != C_CLOSED && ex->handler_done && c->ex == ex &&
        (c->state == C_BUSY || c->state == C_FLUSHING))
        conn_shutdown(c);
}

/* Hand the consumer n decoded bytes. Returns false if the connection went
 * away, the body failed or it is not worth reading any more. */
static bool body_take(server_conn *c, exchange *ex, const char *p, size_t n)
{
    ferry_server *s = c->server;
    ex->body_seen += n;
    switch (ex->body_mode) {
    case MODE_BUFFER: {
        if (n == 0)
            return true;
        if (ex->body_seen > ex->body_max) {
            conn_fail_request(c, ex, 413, FERRY_EBODYTOOBIG);
            return false;
        }
        int rc = s->exev->body(ex, p, n);
        if (rc < 0) {
            body_fail(c, ex, rc);
            return false;
        }
        return true;
    }
    case MODE_STREAM:
        if (n) {
            s->exev->body(ex, p, n); /* the handler's callback: anything may happen */
            if (c->state == C_CLOSED || c->ex != ex)
                return false;
        }
        return !ex->body_failed;
    case MODE_DRAIN:
        if (ex->body_seen > s->opt.max_drain_bytes) {
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
    buf_block *b = c->t.rbuf;
    while (!ex->body_done && !ex->body_paused && ex->body_mode != MODE_UNREAD && b &&
           b->len > ex->head_len) {
        char *p = b->data + ex->head_len;
        size_t avail = b->len - ex->head_len, data_len, used;
        int r = body_decode(&ex->body, p, avail, &data_len, &used);
        if (r < 0) {
            conn_fail_request(c, ex, 400, r);
            return;
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
            c->server->exev->body_end(ex, 0);
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
        server_conn_error_response(c, 408, FERRY_EREQUESTTIMEOUT);
    else
        conn_fail_request(c, ex, 408, FERRY_EREQUESTTIMEOUT);
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
    buf_block *b = c->t.rbuf;
    parse_limits lim = {s->opt.max_header_bytes, s->opt.max_headers, s->opt.max_target_bytes,
                        false};
    int r = parse_request(&ex->head, b->data, b->len, &lim);
    if (r == 0)
        return false;
    if (r < 0) {
        int st = ferry_err_http_status(r);
        server_conn_error_response(c, st ? st : 400, r);
        return true;
    }
    ex->head_len = (uint32_t) r;
    if (ex->head.version_minor == 0) /* RFC 9110 §10.1.1: ignored in an HTTP/1.0 request */
        ex->head.flags &= ~(uint32_t) (PARSE_F_EXPECT_CONTINUE | PARSE_F_EXPECT_OTHER);
    const parse_head *h = &ex->head;
    /* the head is in: the headers clock stops; inactivity is watched while busy */
    if (s->opt.idle_timeout_ms)
        timeout_arm(&s->t_idle, &c->tmo);
    else
        timeout_disarm(&c->tmo);
    body_decoder_start(&ex->body, h, s->opt.max_header_bytes, false);
    ex->body_done = !body_has_more(&ex->body);
    if (ex->body_done)
        timeout_disarm(&ex->t_request);
    c->requests++;
    s->stats.requests++;
    conn_set_state(c, C_BUSY);
    if (h->version_minor >= 1 && (h->flags & PARSE_F_EXPECT_OTHER)) {
        server_conn_error_response(c, 417, FERRY_EEXPECT);
        return true;
    }
    if ((h->flags & PARSE_F_EXPECT_CONTINUE) && s->opt.reject_expect_continue) {
        server_conn_error_response(c, 417, FERRY_EEXPECT);
        return true;
    }
    if (h->method_id == PARSE_M_CONNECT) {
        /* ferry does not hand over raw connections (yet): refuse clearly */
        server_conn_error_response(c, 501, FERRY_ENOTSUP);
        return true;
    }
    /* An Upgrade offer (h2c, websocket) is simply declined by answering in
     * HTTP/1.1, as RFC 9110 §7.8 allows. */
    s->exev->request(ex);
    return true;
}

/* The exchange is complete (response ended, body consumed). Move on: the next
 * pipelined request, idle, or close. Returns whether the state changed. */
static bool conn_after_exchange(server_conn *c)
{
    exchange *ex = c->ex;
    if (!ex->keep_alive || c->close_after) {
        conn_shutdown(c);
        return true;
    }
    buf_block *b = c->t.rbuf;
    if (b && b->len) {
        if (transport_out_queued(&c->t) > OUT_HIGH_WATER)
            return false; /* let the client read first */
        exchange_reset(ex);
        conn_set_state(c, C_HEAD);
        timeout_disarm(&c->tmo); /* conn_arm_timers starts the headers clock if needed */
        return conn_begin_request(c);
    }
    if (transport_out_pending(&c->t))
        return false;
    /* idle: hold nothing */
    conn_detach(c, 0);
    transport_rbuf_release(&c->t);
    conn_set_state(c, C_IDLE);
    transport_idle(&c->t);
    timeout_arm(&c->server->t_keep_alive, &c->tmo);
    if (c->server->closing)
        server_conn_close_idle(c);
    return true;
}

/* Drop the finished request's head (the body was consumed as it was read),
 * keeping any pipelined bytes behind it. */
static void conn_finish_exchange(server_conn *c)
{
    exchange *ex = c->ex;
    buf_block *b = c->t.rbuf;
    if (b && ex->head_len) {
        memmove(b->data, b->data + ex->head_len, b->len - ex->head_len);
        b->len -= ex->head_len;
        ex->head_len = 0;
    }
    conn_set_state(c, C_FLUSHING);
}

/* One pass over what can happen now, until nothing does. */
static bool conn_step(server_conn *c)
{
    switch (c->state) {
    case C_HEAD: return c->t.rbuf && c->t.rbuf->len && conn_parse_head(c);
    case C_BUSY: {
        exchange *ex = c->ex;
        if (ex->end_pending) {
            ex->end_pending = false;
            c->server->exev->body_end(ex, 0);
            if (c->state != C_BUSY || c->ex != ex)
                return false;
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
            return true;
        }
        return false;
    }
    case C_FLUSHING:
        /* no flush here: pipelined responses leave together below */
        return conn_after_exchange(c);
    default: return false;
    }
}

static void conn_process(server_conn *c)
{
    if (c->in_process)
        return;
    c->in_process = true;
    for (;;) {
        while (c->state != C_CLOSED && conn_step(c)) {
        }
        if (c->state == C_CLOSED)
            break;
        server_conn_flush(c);
        /* a flush that brought the output under the bound, or emptied it,
         * lets a finished exchange move on: the next pipelined request, or
         * idle */
        if (c->state == C_FLUSHING && conn_after_exchange(c))
            continue;
        break;
    }
    c->in_process = false;
    if (c->state == C_CLOSED)
        return;
    conn_arm_timers(c);
    server_conn_update_reading(c);
}

void server_conn_kick(server_conn *c)
{
    if (!c->in_process && c->state != C_CLOSED)
        conn_process(c);
}

/* ---- transport events ---- */

static bool conn_read_proxy(server_conn *c);

static void on_read(transport *t, ssize_t nread)
{
    server_conn *c = container_of(t, server_conn, t);
    ferry_server *s = c->server;
    if (c->state == C_CLOSING || c->state == C_CLOSED) {
        if (nread < 0 && c->state == C_CLOSING) /* the peer's FIN (or reset): done */
            conn_destroy(c, 0);
        return;
    }
    if (nread == FERRY_ETLSPLAINHTTP) { /* the transport answered 400 in plain text */
        s->stats.errors_400++;
        c->close_after = true;
        conn_shutdown(c); /* the client may still be sending: FIN, linger */
        return;
    }
    if (nread == FERRY_ETLSTRUNCATED)
        nread = FERRY_EOF; /* a FIN without close_notify: between requests, just the end */
    if (nread < 0 && ferry_err_kind_of((int) nread) == FERRY_ERRK_TLS && !c->ex) {
        /* A refused handshake (no or an untrusted client certificate, no
         * shared version...) or a bad record between requests: nothing to
         * abort, and the engine's alert says why. Close as gracefully as
         * after a response — the alert, FIN, linger — since a RST here
         * overtakes the alert and the client sees only a reset. */
        c->close_after = true;
        conn_shutdown(c);
        return;
    }
    if (nread < 0) {
        if (nread != FERRY_EOF) {
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
    if (c->proxy_wait && !conn_read_proxy(c))
        return;
    if (c->state == C_IDLE || c->state == C_NEW) {
        if (c->state == C_IDLE)
            timeout_disarm(&c->tmo); /* keep-alive over; a headers clock only if needed */
        conn_set_state(c, C_HEAD);
        if (!conn_begin_request(c))
            return;
    } else if (c->state == C_BUSY && s->opt.idle_timeout_ms) {
        timeout_arm(&s->t_idle, &c->tmo);
    }
    conn_process(c);
}

/* The PROXY header (proxy_proto.h), before anything else — TLS included.
 * Returns true once it is consumed and bytes after it wait in the read
 * buffer; false while it is incomplete, or when the connection was closed
 * for it, or when TLS takes the bytes after it. The headers timeout, armed
 * at accept, bounds the wait. */
static bool conn_read_proxy(server_conn *c)
{
    ferry_server *s = c->server;
    buf_block *b = c->t.rbuf;
    proxy_header h;
    int r = proxy_parse(b->data, b->len, &h);
    if (r == 0)
        return false; /* it fits in any read buffer: PROXY_V2_MAX is 2 KiB */
    if (r < 0) {
        /* the spec: no guessing, no answer */
        s->stats.proxy_errors++;
        conn_destroy(c, r);
        return false;
    }
    c->proxy_wait = false;
    if (h.has_addr) {
        c->proxy_peer = malloc(sizeof(*c->proxy_peer)); /* owner: c, freed in on_closed */
        if (!c->proxy_peer) {
            conn_destroy(c, FERRY_ENOMEM);
            return false;
        }
        *c->proxy_peer = h.src;
    }
    buf_consume(b, (size_t) r);
    if (c->proxy_tls) {
        /* what follows is TLS: hand it the bytes already read */
        int rc = transport_tls_upgrade_server(&c->t, s->tls, &s->t_handshake, b->data, b->len);
        b->len = 0;
        transport_rbuf_release(&c->t);
        if (rc < 0)
            conn_destroy(c, rc);
        else
            server_conn_update_reading(c);
        return false;
    }
    return b->len > 0;
}

int server_conn_peer(server_conn *c, struct sockaddr_storage *addr)
{
    if (c->proxy_peer) {
        *addr = *c->proxy_peer;
        return 0;
    }
    return transport_peername(&c->t, addr);
}

static void on_written(transport *t, int status)
{
    server_conn *c = container_of(t, server_conn, t);
    if (status < 0) {
        conn_destroy(c, status);
        return;
    }
    if (c->ex)
        c->server->exev->flushed(c->ex);
    if (c->state == C_CLOSED)
        return;
    if (c->state == C_SHUTTING) {
        if (!transport_out_pending(&c->t))
            conn_shutdown(c);
        return;
    }
    /* any progress may bring the output under the bound: parsing goes on */
    conn_process(c);
}

/* A TLS handshake finished (or failed, or ran out of time). */
static void on_ready(transport *t, int status)
{
    server_conn *c = container_of(t, server_conn, t);
    ferry_server *s = c->server;
    if (status < 0) {
        if (status == FERRY_EHEADERSTIMEOUT)
            s->stats.tls_handshake_timeouts++;
        conn_destroy(c, status);
        return;
    }
    ferry_tls_info info;
    s->stats.tls_handshakes++;
    if (transport_tls_info(t, &info) == 0 && info.resumed)
        s->stats.tls_resumed++;
}

static void on_closed(transport *t)
{
    server_conn *c = container_of(t, server_conn, t);
    conn_set *set = &c->server->set;
    list_remove(&c->link);
    set->n--;
    free(c->proxy_peer);
    free(c);
    set->changed(set);
}

const transport_events server_conn_transport_events = {
    .on_read = on_read,
    .on_written = on_written,
    .on_ready = on_ready,
    .on_closed = on_closed,
};

/* Read while there is room and someone wants the bytes; a full buffer or a
 * paused body stops reading, which is the backpressure the client feels. */
void server_conn_update_reading(server_conn *c)
{
    bool want = !c->peer_eof && c->state != C_CLOSED && c->state != C_SHUTTING;
    if (want && c->state != C_CLOSING) {
        exchange *ex = c->ex;
        if (ex && ex->body_paused && !ex->body_done)
            want = false;
        if (c->t.rbuf && c->t.rbuf->len >= c->t.rbuf->size)
            want = false;
    }
    if (want)
        transport_read_start(&c->t);
    else
        transport_read_stop(&c->t);
}

/* ---- closing ---- */

/* Close now. err < 0 aborts the exchange (the handler sees it through
 * ferry_res_aborted, its body callback and its write callbacks). */
static void conn_destroy(server_conn *c, int err)
{
    if (c->state == C_CLOSED)
        return;
    bool reset = err != 0 && c->state != C_CLOSING;
    conn_set_state(c, C_CLOSED);
    timeout_disarm(&c->tmo);
    conn_detach(c, err < 0 ? err : FERRY_ECONNRESET);
    transport_close(&c->t, reset);
}

void server_conn_destroy(server_conn *c, int err)
{
    conn_destroy(c, err);
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
    if (transport_out_pending(&c->t)) {
        if (c->state != C_SHUTTING)
            conn_set_state(c, C_SHUTTING);
        server_conn_flush(c);
        if (c->state != C_SHUTTING || transport_out_pending(&c->t))
            return;
    }
    bool may_send = (c->t.rbuf && c->t.rbuf->len) || (c->ex && !c->ex->body_done) ||
                    c->state == C_HEAD || c->state == C_NEW;
    if (!may_send && !c->peer_eof)
        may_send = transport_pending(&c->t) == 1; /* bytes already waiting */
    conn_detach(c, 0);
    if (c->t.rbuf) { /* what is unread is dropped */
        c->t.rbuf->len = 0;
        transport_rbuf_release(&c->t);
    }
    if (c->peer_eof || !may_send || !c->server->opt.linger_timeout_ms) {
        conn_destroy(c, 0); /* nothing unread: close() sends the FIN */
        return;
    }
    if (transport_shutdown(&c->t) == UV_EBADF) { /* no socket left to linger on */
        conn_destroy(c, 0);
        return;
    }
    conn_set_state(c, C_CLOSING);
    timeout_arm(&c->server->t_linger, &c->tmo); /* on_conn_timeout closes it */
    transport_discard(&c->t);
    transport_read_start(&c->t);
}

bool server_conn_is_idle(const server_conn *c)
{
    /* No complete head yet counts as idle: nobody is waiting for an answer. */
    return c->state == C_IDLE || c->state == C_NEW || c->state == C_HEAD;
}

bool server_conn_is_kept_alive(const server_conn *c)
{
    return c->state == C_IDLE;
}

void server_conn_close_idle(server_conn *c)
{
    if (!server_conn_is_idle(c))
        return;
    /* The idle-close race: a request may already be in the kernel. Read it
     * and, if its head is complete, answer it with Connection: close. */
    ssize_t n = transport_read_now(&c->t);
    if (n < 0 && n != FERRY_EOF) {
        conn_destroy(c, (int) n);
        return;
    }
    if (c->proxy_wait && (n <= 0 || !conn_read_proxy(c))) {
        conn_destroy(c, 0); /* no request of it is in: nothing to answer */
        return;
    }
    if (n > 0 && c->state != C_HEAD) {
        conn_set_state(c, C_HEAD);
        if (!conn_begin_request(c))
            return;
    }
    if (c->state == C_HEAD && c->t.rbuf && c->t.rbuf->len) {
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
        server_conn_error_response(c, 408, FERRY_EHEADERSTIMEOUT);
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

/* Allocates the connection (owner: the server's connection set, freed in
 * on_closed once the transport has closed). */
int server_conn_open(ferry_server *s, server_transport_open open, void *arg)
{
    if (!s->started)
        return FERRY_ENOTCONN; /* the timeout lists exist once the server listens */
    server_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        open(NULL, &s->tpool, s->loop, arg); /* it releases what arg holds */
        return FERRY_ENOMEM;
    }
    int rc = open(&c->t, &s->tpool, s->loop, arg);
    if (rc < 0) { /* nothing is open */
        free(c);
        return rc;
    }
    c->server = s;
    list_append(&s->set.conns, &c->link);
    s->set.n++;
    s->stats.connections_accepted++;
    c->state = C_NEW;
    timeout_entry_init(&c->tmo, on_conn_timeout);
    timeout_arm(&s->t_headers, &c->tmo); /* a silent connection is not free */
    server_conn_update_reading(c);
    return 0;
}

typedef struct accepted {
    uv_os_sock_t fd;
    bool is_pipe;
} accepted;

static int open_accepted(transport *t, transport_pool *p, uv_loop_t *loop, void *arg)
{
    accepted *a = arg;
    if (!t) {
        close(a->fd);
        return 0;
    }
    return transport_tcp_open(t, p, loop, a->fd, a->is_pipe); /* closes fd on failure */
}

static int open_accepted_tls(transport *t, transport_pool *p, uv_loop_t *loop, void *arg)
{
    accepted *a = arg;
    if (!t)
        return open_accepted(t, p, loop, arg);
    ferry_server *s = container_of(p, ferry_server, tpool);
    return transport_tls_open_server(t, p, loop, a->fd, s->tls, &s->t_handshake);
}

/* With the PROXY protocol: only trusted peers may speak (the rest are
 * closed before a byte is read), and TLS starts after the header. */
static int accept_proxied(ferry_server *s, uv_os_sock_t fd, bool is_pipe)
{
    struct sockaddr_storage peer;
    socklen_t len = sizeof(peer);
    memset(&peer, 0, sizeof(peer));
    if (s->proxy_trust_set &&
        (getpeername(fd, (struct sockaddr *) &peer, &len) < 0 ||
         !proxy_trusted(&s->proxy_trust, (struct sockaddr *) &peer))) {
        s->stats.proxy_rejected++;
        close(fd);
        return 0;
    }
    accepted a = {fd, is_pipe};
    int rc = server_conn_open(s, open_accepted, &a);
    if (rc == 0) {
        server_conn *c = server_conn_from_link(s->set.conns.prev); /* the one just added */
        c->proxy_wait = true;
        c->proxy_tls = s->tls && !is_pipe;
    }
    return rc;
}

int server_conn_accept(ferry_server *s, uv_os_sock_t fd, bool is_pipe)
{
    if (s->opt.proxy_protocol)
        return accept_proxied(s, fd, is_pipe);
    accepted a = {fd, is_pipe};
    return server_conn_open(s, s->tls && !is_pipe ? open_accepted_tls : open_accepted, &a);
}
