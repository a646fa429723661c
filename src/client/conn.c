/* conn.c — one client socket to an origin (see conn.h for its place).
 *
 *   RESOLVING ──addresses──> CONNECTING ──connected──> ACTIVE <──request── IDLE
 *       │                        │  (next address        │    ──last response──^
 *       │                        │   on failure)         │
 *       └────────────────────────┴──── failure/close ────┴──────> CLOSED
 *
 * Requests are written in order into the transport's output and their
 * responses read in the same order (more than one in flight only with
 * pipelining). The response being read always belongs to the first
 * exchange on `inflight`. Body bytes go up (ev->body) straight from the read
 * buffer — chunked bodies decoded in place — and a body nobody asked for is
 * parsed and dropped, so the socket is free again the moment the response
 * ends. An idle socket keeps reading: a FIN or RST from the server closes it
 * at once, and anything else it sends unasked is a broken server.
 *
 * Events (which may call the user) can close the socket or end the
 * exchange; every loop re-checks both after them. The socket's memory is
 * only freed once its transport has closed (or, if it never opened one,
 * from the next conn_process), so it outlives any such call.
 */
#include "client/conn.h"

#include <stdlib.h>
#include <string.h>

#include "ferry.h"
#include "http1/message.h"
#include "tls/transport_tls.h"

#define CHUNK_TRAILER_MAX 16384
#define CONTINUE_WAIT_MS 1000 /* send the body anyway if the server says nothing */
#define FIELDS_CACHE 64

static const transport_events conn_transport_events;
static void conn_connect_next(client_conn *c);
static void on_conn_timeout(timeout_entry *e);
static void on_x_timeout(timeout_entry *e);
static void on_continue_timeout(timeout_entry *e);
static void on_dns(dns_query *q, int status, dns_addrs *addrs);

int conn_ctx_init(conn_ctx *ctx, uv_loop_t *loop, const conn_events *ev,
                  const exchange_events *xev, timeout_set *timers, dns_cache *dns,
                  uint32_t max_header_bytes, uint32_t max_headers, uint64_t keep_alive_margin_ms)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->loop = loop;
    ctx->ev = ev;
    ctx->xev = xev;
    ctx->timers = timers;
    ctx->dns = dns;
    ctx->max_header_bytes = max_header_bytes;
    ctx->max_headers = max_headers;
    ctx->keep_alive_margin_ms = keep_alive_margin_ms;
    return transport_pool_init(&ctx->tpool, &conn_transport_events, BUF_DEFAULT_SIZE, 64);
}

void conn_ctx_free(conn_ctx *ctx)
{
    while (ctx->free_fields) {
        void *f = ctx->free_fields;
        ctx->free_fields = *(void **) f;
        free(f);
    }
    ctx->nfree_fields = 0;
    transport_pool_destroy(&ctx->tpool);
}

/* ---- header arrays ----
 * A socket needs max_headers parse_fields only while it parses a head, so
 * they are lent out then: 10,000 idle sockets hold none. */

/* Allocates an array (owner: the borrowing socket until it puts it back,
 * then the context's cache; freed by conn_ctx_free). */
static parse_field *fields_get(conn_ctx *ctx)
{
    void *f = ctx->free_fields;
    if (f) {
        ctx->free_fields = *(void **) f;
        ctx->nfree_fields--;
        return f;
    }
    return malloc(ctx->max_headers * sizeof(parse_field));
}

static void fields_put(conn_ctx *ctx, parse_field *f)
{
    if (!f)
        return;
    if (ctx->nfree_fields >= FIELDS_CACHE) {
        free(f);
        return;
    }
    *(void **) f = ctx->free_fields; /* the array's first bytes link the cache */
    ctx->free_fields = f;
    ctx->nfree_fields++;
}

/* ---- connecting ---- */

/* Allocates a socket (owner: the pool's lists while open; freed after its
 * transport closed, conn_free). Nothing starts until conn_start. */
client_conn *conn_new(conn_ctx *ctx, const client_target *target, void *owner,
                      uint64_t connect_ms, uint64_t idle_ms, int *err)
{
    client_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        *err = FERRY_ENOMEM;
        return NULL;
    }
    c->ctx = ctx;
    c->target = target;
    c->owner = owner;
    c->t.fd = -1;
    c->connect_ms = connect_ms;
    c->idle_ms = idle_ms;
    list_init(&c->pool_link);
    list_init(&c->resume_link);
    list_init(&c->inflight);
    timeout_entry_init(&c->tmo, on_conn_timeout);
    return c;
}

void conn_start(client_conn *c)
{
    conn_ctx *ctx = c->ctx;
    const client_target *tg = c->target;
    timeout_set_arm(ctx->timers, &c->tmo, c->connect_ms, false);
    if (tg->literal) {
        c->state = CC_CONNECTING;
        conn_connect_next(c);
        return;
    }
    dns_addrs *cached = dns_lookup_cached(ctx->dns, tg->host, strlen(tg->host));
    if (cached) {
        c->addrs = cached;
        c->state = CC_CONNECTING;
        conn_connect_next(c);
        return;
    }
    c->state = CC_RESOLVING;
    int rc = dns_resolve(ctx->dns, &c->dnsq, tg->host, strlen(tg->host), on_dns);
    if (rc < 0)
        conn_close(c, rc);
}

static void on_dns(dns_query *q, int status, dns_addrs *addrs)
{
    client_conn *c = container_of(q, client_conn, dnsq);
    if (c->state != CC_RESOLVING) {
        dns_addrs_release(addrs);
        return;
    }
    if (status < 0 || !addrs || !addrs->count) {
        dns_addrs_release(addrs);
        conn_close(c, status < 0 ? status : FERRY_EAI_NONAME);
        return;
    }
    c->addrs = addrs;
    c->state = CC_CONNECTING;
    conn_connect_next(c);
}

/* Connect to the next address; when one fails, its socket is closed and a
 * fresh one tries the next. */
static void conn_connect_next(client_conn *c)
{
    for (;;) {
        const struct sockaddr_storage *sa;
        if (c->addrs) {
            if (c->next_addr >= c->addrs->count)
                break;
            sa = &c->addrs->addr[c->next_addr++];
        } else {
            if (c->next_addr++ > 0)
                break;
            sa = &c->target->addr;
        }
        struct sockaddr_storage addr = *sa;
        uint16_t port = htons(c->target->port);
        if (addr.ss_family == AF_INET)
            ((struct sockaddr_in *) &addr)->sin_port = port;
        else
            ((struct sockaddr_in6 *) &addr)->sin6_port = port;
        const client_target *tg = c->target;
        int rc = tg->tls ? transport_tls_connect(&c->t, &c->ctx->tpool, c->ctx->loop,
                                                 (const struct sockaddr *) &addr, c->ctx->tls,
                                                 tg->host, c->ctx->sessions, tg->tls_key)
                         : transport_tcp_connect(&c->t, &c->ctx->tpool, c->ctx->loop,
                                                 (const struct sockaddr *) &addr);
        if (rc == 0)
            return; /* on_ready tells */
        c->last_err = rc; /* nothing was opened: the next address */
        if (rc == UV_EMFILE || rc == UV_ENFILE)
            break; /* no descriptor for any address: the pool waits for one */
    }
    conn_close(c, c->last_err ? c->last_err : FERRY_ECONNREFUSED);
}

static bool more_addresses(const client_conn *c)
{
    return c->addrs && c->next_addr < c->addrs->count;
}

static void on_ready(transport *t, int status)
{
    client_conn *c = container_of(t, client_conn, t);
    if (c->state != CC_CONNECTING)
        return;
    if (status < 0) {
        c->last_err = status;
        if (status == FERRY_ETLSVERIFY)
            c->tls_reason = (uint8_t) transport_tls_verify_reason(&c->t);
        if (more_addresses(c) && ferry_err_kind_of(status) != FERRY_ERRK_TLS) {
            c->reconnecting = true;
            transport_close(&c->t, false); /* on_closed tries the next */
        } else {
            conn_close(c, status);
        }
        return;
    }
    c->state = CC_ACTIVE;
    timeout_disarm(&c->tmo);
    dns_addrs_release(c->addrs);
    c->addrs = NULL;
    c->ctx->stats.connections_opened++;
    ferry_tls_info info;
    if (transport_tls_info(&c->t, &info) == 0) {
        c->ctx->stats.tls_handshakes++;
        if (info.resumed)
            c->ctx->stats.tls_resumed++;
    }
    transport_read_start(&c->t);
    c->ctx->ev->ready(c);
}

static void on_conn_timeout(timeout_entry *e)
{
    client_conn *c = container_of(e, client_conn, tmo);
    if (c->state == CC_IDLE) {
        c->ctx->stats.idle_closed++;
        conn_close(c, 0);
        return;
    }
    /* connecting (DNS included) for too long */
    c->ctx->stats.timeouts_connect++;
    conn_close(c, FERRY_ECONNECTTIMEOUT);
}

/* ---- the pool's view ---- */

void conn_make_idle(client_conn *c)
{
    c->state = CC_IDLE;
    timeout_set_arm(c->ctx->timers, &c->tmo, c->idle_ms, true);
    transport_ref(&c->t, false); /* a pooled socket does not keep the program running */
    transport_idle(&c->t);       /* idle sockets hold no buffers */
    transport_read_start(&c->t); /* a FIN or RST from the server closes it while idle */
    transport_rbuf_release(&c->t);
}

bool conn_check_idle(conn_ctx *ctx, client_conn *c)
{
    if (transport_pending(&c->t) == 0)
        return true;
    ctx->stats.stale_detected++;
    conn_close(c, 0);
    return false;
}

/* Only exchanges that may be replayed (idempotent, in-memory bodies) are
 * pipelined: a failure then sends them again safely. */
bool conn_can_take(const client_conn *c, const client_exchange *x, uint32_t pipelining,
                   uint32_t max_served)
{
    if (c->state != CC_ACTIVE || c->no_reuse || c->no_reuse_after || c->peer_eof ||
        c->ninflight >= pipelining)
        return false;
    if (c->ninflight == 0)
        return true;
    if (!x->pipelinable || x->stream_body || x->expect_continue)
        return false;
    if (max_served && c->served + c->ninflight >= max_served)
        return false;
    const client_exchange *last = container_of(c->inflight.prev, client_exchange, link);
    return last->pipelinable && !last->stream_body && !last->expect_continue &&
           last->body_ended && !last->close_after &&
           !x->close_after; /* the socket ends with a close request */
}

/* ---- writing ---- */

static bool waiters_due_any(const client_conn *c)
{
    for (const list_link *l = c->inflight.next; l != &c->inflight; l = l->next) {
        const client_exchange *x = container_of(l, client_exchange, link);
        if (waiters_due(&x->waiters, c->t.flushed_total))
            return true;
    }
    return false;
}

static void on_written(transport *t, int status)
{
    client_conn *c = container_of(t, client_conn, t);
    if (c->state == CC_CLOSED)
        return;
    if (status < 0) {
        conn_close(c, status);
        return;
    }
    if (waiters_due_any(c))
        c->ctx->ev->schedule(c);
}

void conn_flush(client_conn *c)
{
    if (c->state == CC_CLOSED)
        return;
    int64_t n = transport_flush(&c->t);
    if (n < 0) {
        conn_close(c, (int) n);
        return;
    }
    if (waiters_due_any(c))
        c->ctx->ev->schedule(c); /* write callbacks never run inside the write call */
}

static bool append(client_conn *c, const void *p, size_t n)
{
    if (transport_reserve(&c->t, n) < 0) {
        conn_close(c, FERRY_ENOMEM);
        return false;
    }
    transport_put(&c->t, p, n);
    return true;
}

static void arm_x(client_conn *c, client_exchange *x, uint64_t ms)
{
    timeout_set_arm(c->ctx->timers, &x->tmo, ms, false);
}

/* Put x's bytes on the socket: its head, then its in-memory body — or,
 * with Expect: 100-continue, only the head until the server says 100 (or a
 * second passes); a streamed body is asked for through ev->body_ready. */
void conn_send(client_conn *c, client_exchange *x)
{
    if (c->state == CC_IDLE) {
        transport_ref(&c->t, true);
        timeout_disarm(&c->tmo);
    }
    c->state = CC_ACTIVE;
    transport_busy(&c->t);
    if (!c->peer_eof)
        transport_read_start(&c->t);
    x->conn = c;
    x->got_byte = x->continue_waiting = x->body_ended = false;
    timeout_entry_init(&x->tmo, on_x_timeout);
    timeout_entry_init(&x->t_continue, on_continue_timeout);
    list_append(&c->inflight, &x->link);
    c->ninflight++;
    if (c->ninflight == 1) /* a pipelined exchange's clock starts when it reaches the front */
        arm_x(c, x, x->t_headers);
    bool body_now = !x->expect_continue;
    if (!append(c, x->wire, body_now ? x->wire_len : x->head_len))
        return;
    x->end_mark = c->t.queued_total;
    if (!body_now) {
        x->continue_waiting = true;
        timeout_set_arm(c->ctx->timers, &x->t_continue, CONTINUE_WAIT_MS, false);
    } else if (!x->stream_body) {
        x->body_ended = true;
    }
    conn_flush(c);
    if (c->state != CC_CLOSED && body_now && x->stream_body)
        c->ctx->xev->body_ready(x);
}

/* The server said 100 (or stayed silent for a second): send the body. */
static void conn_send_body(client_conn *c, client_exchange *x)
{
    x->continue_waiting = false;
    timeout_disarm(&x->t_continue);
    if (x->stream_body) {
        c->ctx->xev->body_ready(x);
        return;
    }
    if (!append(c, x->wire + x->head_len, x->wire_len - x->head_len))
        return;
    x->end_mark = c->t.queued_total;
    x->body_ended = true;
    conn_flush(c);
}

static void on_continue_timeout(timeout_entry *e)
{
    client_exchange *x = container_of(e, client_exchange, t_continue);
    if (x->conn && x->continue_waiting)
        conn_send_body(x->conn, x);
}

int conn_write_body(client_conn *c, client_exchange *x, const void *buf, size_t len, bool last)
{
    size_t need = len + (x->chunked_body ? HTTP1_CHUNK_OVERHEAD + HTTP1_LAST_CHUNK_LEN : 0);
    if (transport_reserve(&c->t, need) < 0) {
        conn_close(c, FERRY_ENOMEM);
        return FERRY_ENOMEM;
    }
    if (x->chunked_body && len)
        transport_put_done(&c->t, http1_put_chunk(transport_put_ptr(&c->t), buf, len));
    else if (len)
        transport_put(&c->t, buf, len);
    if (last) {
        if (x->chunked_body)
            transport_put(&c->t, HTTP1_LAST_CHUNK, HTTP1_LAST_CHUNK_LEN);
        x->body_ended = true;
    }
    x->end_mark = c->t.queued_total;
    return 0;
}

void conn_touch(client_conn *c, client_exchange *x)
{
    if (c->inflight.next == &x->link)
        arm_x(c, x, x->t_headers);
}

/* ---- reading ---- */

static void on_read(transport *t, ssize_t nread)
{
    client_conn *c = container_of(t, client_conn, t);
    conn_ctx *ctx = c->ctx;
    if (c->state == CC_CLOSED)
        return;
    if (nread == FERRY_ETLSTRUNCATED) { /* a FIN without close_notify: an end, maybe short */
        c->peer_truncated = true;
        nread = FERRY_EOF;
    }
    if (nread < 0) {
        if (c->state == CC_IDLE) { /* the server closed a pooled socket: fine */
            ctx->stats.stale_detected++;
            conn_close(c, 0);
            return;
        }
        if (nread == FERRY_EOF) {
            /* what is buffered may still finish the response (a body
             * delimited by the close ends here); a paused reader gets it
             * when it resumes, and conn_process closes after that */
            c->peer_eof = true;
            transport_read_stop(&c->t);
            conn_process(c);
            return;
        }
        conn_close(c, (int) nread);
        return;
    }
    if (c->state == CC_IDLE || list_empty(&c->inflight)) {
        /* bytes nobody asked for: this socket cannot be trusted */
        ctx->stats.stale_detected++;
        conn_close(c, 0);
        return;
    }
    client_exchange *x = container_of(c->inflight.next, client_exchange, link);
    x->got_byte = true;
    if (c->head_done)
        arm_x(c, x, x->t_body); /* body inactivity restarts */
    conn_process(c);
}

/* ---- ghosts ---- */

/* Allocates a ghost for x (owner: the socket, which frees it when the
 * response it stands for has been read, or when it closes). It knows only
 * what reading that response needs. NULL without memory. */
static client_exchange *ghost_of(const client_exchange *x)
{
    client_exchange *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->ghost = true;
    g->is_head = x->is_head;
    g->body_ended = x->body_ended;
    g->t_headers = x->t_headers;
    g->t_body = x->t_body;
    timeout_entry_init(&g->tmo, on_x_timeout);
    timeout_entry_init(&g->t_continue, on_continue_timeout);
    return g;
}

static void ghost_free(client_exchange *g)
{
    timeout_disarm(&g->tmo);
    timeout_disarm(&g->t_continue);
    free(g);
}

static void on_x_timeout(timeout_entry *e)
{
    client_exchange *x = container_of(e, client_exchange, tmo);
    client_conn *c = x->conn;
    if (!c)
        return;
    if (x->ghost) { /* the response nobody waits for never came: the socket is stuck */
        c->ctx->stats.timeouts_headers++;
        conn_close_ex(c, FERRY_EHEADERSTIMEOUT, true);
        return;
    }
    bool front = c->inflight.next == &x->link;
    c->ctx->xev->timeout(x, front && c->head_done ? FERRY_EBODYTIMEOUT : FERRY_EHEADERSTIMEOUT);
}

/* ---- responses ---- */

/* The response to x is complete: x leaves the socket (and ends, or is
 * retried); the socket takes the next exchange or is available again. */
static void message_end(client_conn *c, client_exchange *x)
{
    list_remove(&x->link);
    c->ninflight--;
    x->conn = NULL;
    timeout_disarm(&x->tmo);
    timeout_disarm(&x->t_continue);
    c->served++;
    c->head_done = false;
    c->body.kind = BODY_NONE;
    /* the server answered before x's body was all sent (an early 413, a
     * final status instead of 100): the rest of it must never be taken
     * for the next request */
    if (!x->body_ended || x->close_after || c->peer_eof || c->no_reuse_after)
        c->no_reuse = true;
    if (x->ghost)
        ghost_free(x);
    else
        c->ctx->xev->end(x); /* may free x */
    if (c->state == CC_CLOSED)
        return;
    if (c->ninflight) {
        if (c->no_reuse) { /* the server will not answer those behind: replay them */
            conn_close_ex(c, 0, true);
            return;
        }
        client_exchange *next = container_of(c->inflight.next, client_exchange, link);
        arm_x(c, next, next->t_headers);
        return;
    }
    if (c->t.rbuf && c->t.rbuf->len) { /* more than the response: broken server */
        conn_close(c, 0);
        return;
    }
    transport_rbuf_release(&c->t);
    c->ctx->ev->available(c);
}

/* The head of the response to x is complete (rc bytes in the buffer). */
static void on_head(client_conn *c, client_exchange *x, int rc)
{
    conn_ctx *ctx = c->ctx;
    parse_head *h = &c->head;
    c->head_done = true;
    body_decoder_start(&c->body, h, CHUNK_TRAILER_MAX, true);
    if (c->body.kind == BODY_UNTIL_CLOSE)
        c->no_reuse = true;
    if (!(h->flags & PARSE_F_KEEP_ALIVE))
        c->no_reuse_after = true;
    if (h->flags & PARSE_F_KEEP_ALIVE_HINT) {
        /* retire the socket before the server does (the keep-alive race) */
        uint64_t hint = (uint64_t) h->keep_alive_timeout_s * 1000;
        uint64_t t = hint > ctx->keep_alive_margin_ms ? hint - ctx->keep_alive_margin_ms : 0;
        if (t < c->idle_ms)
            c->idle_ms = t;
    }
    if (x->continue_waiting) {
        /* a final answer before 100: the body was never sent, and the
         * server may still expect it, so this socket ends with the response */
        x->continue_waiting = false;
        timeout_disarm(&x->t_continue);
        c->no_reuse_after = true;
    }
    if (body_has_more(&c->body))
        arm_x(c, x, x->t_body);
    else
        timeout_disarm(&x->tmo);
    if (!x->ghost)
        ctx->xev->head(x, h, c->t.rbuf->data, (size_t) rc); /* may end x or close c */
    fields_put(ctx, c->fields); /* the head is used up */
    c->fields = NULL;
    if (c->state != CC_CLOSED)
        buf_consume(c->t.rbuf, (size_t) rc);
}

/* Deliver body bytes of the front exchange; false if it or the socket ended. */
static bool deliver(client_conn *c, client_exchange *x, const char *p, size_t n)
{
    if (x->ghost || !n)
        return true;
    c->ctx->xev->body(x, p, n);
    return c->state == CC_ACTIVE && x->conn == c;
}

/* Parse what the read buffer holds: heads, bodies, the next response. */
void conn_process(client_conn *c)
{
    conn_ctx *ctx = c->ctx;
    if (c->state == CC_CLOSED) {
        if (c->t.fd < 0 && !transport_closing(&c->t))
            ctx->tpool.ev->on_closed(&c->t); /* closed before it had a socket */
        return;
    }
    if (waiters_due_any(c)) {
        for (list_link *l = c->inflight.next; l != &c->inflight;) {
            client_exchange *x = container_of(l, client_exchange, link);
            l = l->next;
            if (waiters_due(&x->waiters, c->t.flushed_total))
                ctx->xev->writes_due(x, c->t.flushed_total);
            if (c->state == CC_CLOSED)
                return;
        }
    }
    while (c->state == CC_ACTIVE && !list_empty(&c->inflight)) {
        client_exchange *x = container_of(c->inflight.next, client_exchange, link);
        buf_block *b = c->t.rbuf;
        if (!c->head_done) {
            if (!b || !b->len)
                break;
            if (!c->fields) { /* borrowed while a head is read: idle sockets hold none */
                if (!(c->fields = fields_get(ctx))) {
                    conn_close(c, FERRY_ENOMEM);
                    return;
                }
                parse_head_init(&c->head, c->fields);
            }
            parse_limits lim = {ctx->max_header_bytes, ctx->max_headers, UINT32_MAX, true};
            int rc = parse_response(&c->head, b->data, b->len, &lim,
                                    x->is_head ? PARSE_REQ_HEAD : 0);
            if (rc < 0) {
                conn_close(c, rc);
                return;
            }
            if (rc == 0) {
                if (b->len == b->size && transport_rbuf_grow(&c->t, b->size * 2) < 0) {
                    conn_close(c, FERRY_ENOMEM);
                    return;
                }
                break;
            }
            if (c->head.status < 200) {
                if (c->head.status == 101) { /* we never ask for an upgrade */
                    conn_close(c, FERRY_EBADSTATUS);
                    return;
                }
                bool go_on = c->head.status == 100 && x->continue_waiting;
                buf_consume(b, (size_t) rc);
                parse_head_init(&c->head, c->fields);
                if (go_on)
                    conn_send_body(c, x);
                continue;
            }
            on_head(c, x, rc);
            if (c->state != CC_ACTIVE || x->conn != c)
                return; /* x ended in its callback; c was closed with it */
            if (!body_has_more(&c->body))
                message_end(c, x);
            continue;
        }
        /* body */
        if (x->paused) {
            transport_read_stop(&c->t);
            return;
        }
        if (c->body.kind == BODY_UNTIL_CLOSE && c->peer_eof && (!b || !b->len)) {
            if (c->peer_truncated) { /* over TLS, the end of such a body needs close_notify */
                conn_close(c, FERRY_EINCOMPLETE);
                return;
            }
            message_end(c, x);
            continue;
        }
        if (!b || !b->len)
            break;
        size_t dlen, used;
        int rc = body_decode(&c->body, b->data, b->len, &dlen, &used);
        if (rc < 0) {
            conn_close(c, rc);
            return;
        }
        if (!deliver(c, x, b->data, dlen))
            return;
        buf_consume(b, used);
        if (rc == 1)
            message_end(c, x);
    }
    if (c->state == CC_ACTIVE) {
        if (c->peer_eof)
            conn_close(c, FERRY_EOF);
        else
            transport_read_start(&c->t);
    }
}

void conn_resume(client_conn *c)
{
    c->ctx->ev->schedule(c);
}

/* x leaves c before its response is complete (abort, timeout, a body over
 * the limit). If x is at the front, the socket is out of step with the
 * server and closes (reset); exchanges pipelined behind x are sent again
 * elsewhere. If x is behind another, that one must not suffer: a ghost takes
 * x's place, so x's response is read and dropped when it comes. */
void conn_detach(client_conn *c, client_exchange *x, int err)
{
    bool front = c->inflight.next == &x->link;
    timeout_disarm(&x->tmo);
    timeout_disarm(&x->t_continue);
    if (!front) {
        client_exchange *g = ghost_of(x);
        if (g) {
            g->conn = c;
            g->link.prev = x->link.prev;
            g->link.next = x->link.next;
            x->link.prev->next = &g->link;
            x->link.next->prev = &g->link;
            list_init(&x->link);
            x->conn = NULL;
            return;
        }
    }
    list_remove(&x->link);
    c->ninflight--;
    x->conn = NULL;
    c->force_reset = true; /* tell the server at once that the exchange is over */
    conn_close_ex(c, err, true);
}

/* ---- closing ---- */

void conn_close(client_conn *c, int err)
{
    conn_close_ex(c, err, false);
}

void conn_close_ex(client_conn *c, int err, bool all_collateral)
{
    if (c->state == CC_CLOSED)
        return;
    conn_ctx *ctx = c->ctx;
    uint8_t prev = c->state;
    c->state = CC_CLOSED;
    timeout_disarm(&c->tmo);
    if (prev == CC_RESOLVING)
        dns_cancel(&c->dnsq);
    dns_addrs_release(c->addrs);
    c->addrs = NULL;
    if (prev == CC_IDLE)
        transport_ref(&c->t, true); /* closing must finish before the loop may end */
    ctx->ev->closing(c, err, prev);
    bool had_requests = !list_empty(&c->inflight);
    list_link gone;
    list_init(&gone);
    if (had_requests) { /* take the whole list over */
        gone = c->inflight;
        gone.next->prev = &gone;
        gone.prev->next = &gone;
    }
    list_init(&c->inflight);
    c->ninflight = 0;
    /* The front exchange's failure is its own (unless all_collateral); the
     * rest never got an answer and are replayed behind it, in order. */
    client_exchange *lead = NULL;
    bool first = !all_collateral;
    while (!list_empty(&gone)) {
        client_exchange *x = container_of(gone.next, client_exchange, link);
        list_remove(&x->link);
        x->conn = NULL;
        timeout_disarm(&x->tmo);
        timeout_disarm(&x->t_continue);
        x->sent_whole = x->body_ended && c->t.flushed_total >= x->end_mark;
        if (x->ghost) {
            ghost_free(x);
        } else if (first) {
            int e = err;
            if (e == 0 || e == FERRY_EOF)
                e = x->got_byte ? FERRY_EINCOMPLETE : FERRY_ECONNRESET;
            lead = ctx->xev->failed(x, e);
        } else {
            lead = ctx->xev->replay(x, lead);
        }
        first = false;
    }
    bool reset = c->force_reset || (err < 0 && err != FERRY_EOF && had_requests);
    c->reconnecting = false;
    if (c->t.fd >= 0)
        transport_close(&c->t, reset);
    else
        ctx->ev->schedule(c); /* no socket yet: conn_process finishes the close */
}

static void on_closed(transport *t)
{
    client_conn *c = container_of(t, client_conn, t);
    if (c->reconnecting && c->state == CC_CONNECTING) {
        c->reconnecting = false; /* the previous address failed: try the next */
        conn_connect_next(c);
        return;
    }
    conn_ctx *ctx = c->ctx;
    dns_addrs_release(c->addrs);
    fields_put(ctx, c->fields);
    ctx->ev->freed(c);
    free(c);
}

static const transport_events conn_transport_events = {
    .on_read = on_read,
    .on_written = on_written,
    .on_ready = on_ready,
    .on_closed = on_closed,
};
