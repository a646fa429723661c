/* client_conn.c — one client socket to an origin.
 *
 *   RESOLVING ──addresses──> CONNECTING ──connected──> ACTIVE <──request── IDLE
 *       │                        │  (next address        │    ──last response──^
 *       │                        │   on failure)         │
 *       └────────────────────────┴──── failure/close ────┴──────> CLOSED
 *
 * Requests are written in order into one output buffer and their responses
 * read in the same order (more than one in flight only with pipelining). The
 * response being read always belongs to the first request on `inflight`.
 * Body bytes go to the request (client_req_body) straight from the read
 * buffer — chunked bodies decoded in place — and a body nobody asked for is
 * parsed and dropped, so the socket is free again the moment the response
 * ends. An idle socket keeps reading: a FIN or RST from the server closes it
 * at once, and anything else it sends unasked is a broken server.
 *
 * Callbacks into the request (which may call the user) can close the socket
 * or end the request; every loop re-checks both after them. The socket's
 * memory is only freed from uv_close's callback, so it outlives any such
 * call.
 */
#include <stdlib.h>
#include <string.h>

#include "client/client_internal.h"

#define CHUNK_TRAILER_MAX 16384

static void on_connect(uv_connect_t *req, int status);
static void on_closed(uv_handle_t *h);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void conn_connect_next(client_conn *c);
static void on_conn_timeout(timeout_entry *e);

/* Allocates a socket for origin o (owner: the origin's lists while open;
 * freed in on_closed after uv_close), driven by the queued request r. */
client_conn *client_conn_new(client_origin *o, client_req *r, int *err)
{
    ferry_agent *a = o->agent;
    client_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        *err = FERRY_ENOMEM;
        return NULL;
    }
    int rc = transport_tcp_init(a->loop, &c->t);
    if (rc < 0) {
        free(c);
        *err = rc;
        return NULL;
    }
    c->t.io.h.data = c;
    c->agent = a;
    c->origin = o;
    o->refs++;
    list_init(&c->inflight);
    list_init(&c->resume_link);
    c->idle_ms = a->opt.max_idle_per_origin ? a->opt.idle_timeout_ms : 0;
    a->total_sockets++;
    o->nbusy++;
    o->nconnecting++;
    list_append(&o->busy, &c->link);
    c->driver = r;
    r->driving = c;
    timeout_entry_init(&c->tmo, on_conn_timeout);
    agent_arm(a, &c->tmo, r->t_connect, false);
    if (o->literal) {
        c->state = CC_CONNECTING;
        c->single = o->addr;
        conn_connect_next(c);
        return c;
    }
    dns_addrs *cached = dns_lookup_cached(&a->dns, o->host, strlen(o->host));
    if (cached) {
        c->addrs = cached;
        c->state = CC_CONNECTING;
        conn_connect_next(c);
        return c;
    }
    c->state = CC_RESOLVING;
    rc = dns_resolve(&a->dns, &c->dnsq, o->host, strlen(o->host), client_conn_on_dns);
    if (rc < 0)
        client_conn_close(c, rc);
    return c;
}

void client_conn_on_dns(dns_query *q, int status, dns_addrs *addrs)
{
    client_conn *c = container_of(q, client_conn, dnsq);
    if (c->state != CC_RESOLVING) {
        if (addrs)
            dns_addrs_release(addrs);
        return;
    }
    if (status < 0 || !addrs || !addrs->count) {
        if (addrs)
            dns_addrs_release(addrs);
        client_conn_close(c, status < 0 ? status : FERRY_EAI_NONAME);
        return;
    }
    c->addrs = addrs;
    c->state = CC_CONNECTING;
    conn_connect_next(c);
}

/* Connect to the next address; when one fails, the handle is closed and a
 * fresh one tries the next (a socket that failed to connect is not reused). */
static void conn_connect_next(client_conn *c)
{
    const struct sockaddr_storage *sa;
    if (c->addrs) {
        if (c->next_addr >= c->addrs->count) {
            client_conn_close(c, c->last_err ? c->last_err : FERRY_ECONNREFUSED);
            return;
        }
        sa = &c->addrs->addr[c->next_addr++];
    } else {
        if (c->next_addr++ > 0) {
            client_conn_close(c, c->last_err ? c->last_err : FERRY_ECONNREFUSED);
            return;
        }
        sa = &c->single;
    }
    struct sockaddr_storage addr = *sa;
    if (addr.ss_family == AF_INET)
        ((struct sockaddr_in *) &addr)->sin_port = htons(c->origin->port);
    else
        ((struct sockaddr_in6 *) &addr)->sin6_port = htons(c->origin->port);
    int rc = transport_connect(&c->t, &c->connect_req, (const struct sockaddr *) &addr, on_connect);
    if (rc < 0) {
        c->last_err = rc;
        c->reconnecting = true;
        transport_close(&c->t, false, on_closed);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    client_conn *c = container_of(req, client_conn, connect_req);
    if (c->state != CC_CONNECTING)
        return; /* closed meanwhile (status is UV_ECANCELED) */
    if (status < 0) {
        c->last_err = status;
        bool more = c->addrs ? c->next_addr < c->addrs->count : false;
        if (more) {
            c->reconnecting = true;
            transport_close(&c->t, false, on_closed);
        } else {
            client_conn_close(c, status);
        }
        return;
    }
    ferry_agent *a = c->agent;
    client_origin *o = c->origin;
    o->nconnecting--;
    o->opened++;
    a->stats.connections_opened++;
    c->state = CC_ACTIVE;
    timeout_disarm(&c->tmo);
    if (c->addrs) {
        dns_addrs_release(c->addrs);
        c->addrs = NULL;
    }
    if (c->driver) {
        c->driver->driving = NULL;
        c->driver = NULL;
    }
    if (transport_read_start(&c->t, on_alloc, on_read) < 0) {
        client_conn_close(c, FERRY_ENOTCONN);
        return;
    }
    agent_conn_available(c);
}

static void on_conn_timeout(timeout_entry *e)
{
    client_conn *c = container_of(e, client_conn, tmo);
    if (c->state == CC_IDLE) {
        c->agent->stats.idle_closed++;
        client_conn_close(c, 0);
        return;
    }
    /* connecting (DNS included) for too long */
    c->agent->stats.timeouts_connect++;
    client_conn_close(c, FERRY_ECONNECTTIMEOUT);
}

/* ---- pool transitions ---- */

void client_conn_make_idle(client_conn *c)
{
    client_origin *o = c->origin;
    c->state = CC_IDLE;
    list_remove(&c->link);
    list_append(&o->idle, &c->link); /* the tail is the most recently used */
    o->nbusy--;
    o->nidle++;
    agent_arm(c->agent, &c->tmo, c->idle_ms, true);
    uv_unref(&c->t.io.h); /* a pooled socket does not keep the program running */
    if (!transport_out_pending(&c->out))
        transport_out_free(&c->out); /* idle sockets hold no buffers (4 KiB each) */
    /* keep reading: a FIN or RST from the server closes it while idle */
    if (transport_read_start(&c->t, on_alloc, on_read) < 0) {
        client_conn_close(c, 0);
        return;
    }
    buf_pool_put_if_empty(&c->agent->rbufs, &c->rbuf);
}

/* Before reuse: a socket the server closed (FIN or RST pending, or bytes it
 * should never have sent) is closed here instead of failing a request. */
bool client_conn_check_idle(client_conn *c)
{
    int rc = (c->rbuf && c->rbuf->len) ? 1 : transport_peek(&c->t);
    if (rc == 0)
        return true;
    c->agent->stats.stale_detected++;
    client_conn_close(c, 0);
    return false;
}

/* Whether c can carry r as well as what it carries (pipelining). Only
 * idempotent requests with in-memory bodies are pipelined: a failure then
 * replays them safely. */
bool client_conn_can_take(const client_conn *c, const client_req *r)
{
    if (c->state != CC_ACTIVE || c->no_reuse || c->no_reuse_after || c->peer_eof ||
        c->ninflight >= c->agent->opt.pipelining)
        return false;
    if (c->ninflight == 0)
        return true;
    if (!r->idempotent || r->stream_body || r->expect_continue)
        return false;
    uint32_t max = c->agent->opt.max_requests_per_socket;
    if (max && c->served + c->ninflight >= max)
        return false;
    const client_req *last = container_of(c->inflight.prev, client_req, link);
    return last->idempotent && !last->stream_body && !last->expect_continue && last->body_ended &&
           !last->close_after && !r->close_after; /* the socket ends with a close request */
}

/* ---- writing ---- */

static void on_write_done(uv_write_t *wr, int status)
{
    transport_out *q = container_of(wr, transport_out, wreq);
    client_conn *c = container_of(q, client_conn, out);
    size_t n = transport_out_written(q, status);
    if (c->state == CC_CLOSED)
        return;
    if (status < 0) {
        client_conn_close(c, status);
        return;
    }
    c->agent->stats.bytes_out += n;
    client_conn_flush(c);
}

/* Whether a request on c has write callbacks whose bytes are out. */
static bool waiters_due(const client_conn *c)
{
    for (const list_link *l = c->inflight.next; l != &c->inflight; l = l->next) {
        const client_req *r = container_of(l, client_req, link);
        if (r->nwaiters && r->waiters[0].at <= c->out.flushed_total)
            return true;
    }
    return false;
}

void client_conn_flush(client_conn *c)
{
    if (c->state == CC_CLOSED)
        return;
    int64_t n = transport_flush(&c->t, &c->out, on_write_done);
    if (n < 0) {
        client_conn_close(c, (int) n);
        return;
    }
    c->agent->stats.bytes_out += (uint64_t) n;
    if (waiters_due(c))
        client_conn_schedule(c); /* write callbacks never run inside the write call */
}

/* Process c from the agent's kick: resumed bodies, due write callbacks. */
void client_conn_schedule(client_conn *c)
{
    ferry_agent *a = c->agent;
    if (list_empty(&c->resume_link))
        list_append(&a->resume, &c->resume_link);
    agent_kick(a);
}

static void append(client_conn *c, const void *p, size_t n)
{
    if (transport_out_reserve(&c->out, n) < 0) {
        client_conn_close(c, FERRY_ENOMEM);
        return;
    }
    transport_out_put(&c->out, p, n);
}

/* Put r's bytes on the socket: its head, then its in-memory body — or,
 * with Expect: 100-continue, only the head until the server says 100 (or a
 * second passes); a streamed body is asked for through on_body_ready. */
void client_conn_send(client_conn *c, client_req *r)
{
    ferry_agent *a = c->agent;
    client_origin *o = c->origin;
    if (c->state == CC_IDLE) {
        list_remove(&c->link);
        list_append(&o->busy, &c->link);
        o->nidle--;
        o->nbusy++;
        uv_ref(&c->t.io.h);
        timeout_disarm(&c->tmo);
    }
    c->state = CC_ACTIVE;
    if (!c->peer_eof && transport_read_start(&c->t, on_alloc, on_read) < 0) {
        client_conn_close(c, FERRY_ENOTCONN);
        agent_enqueue(r, true); /* never sent */
        return;
    }
    r->force_new = false;
    r->state = RQ_SENT;
    r->conn = c;
    list_append(&c->inflight, &r->link);
    c->ninflight++;
    r->got_byte = false;
    r->reused = c->served > 0;
    if (r->reused) {
        a->stats.sockets_reused++;
        o->reused++;
    }
    o->requests++;
    if (c->ninflight == 1) /* a pipelined request's clock starts when it reaches the front */
        agent_arm(a, &r->tmo, r->t_headers, false);
    bool body_now = !r->expect_continue;
    append(c, r->wire, body_now ? r->wire_len : r->head_len);
    if (c->state == CC_CLOSED)
        return;
    if (!body_now) {
        r->continue_waiting = true;
        agent_arm(a, &r->t_continue, CONTINUE_WAIT_MS, false);
    } else if (!r->stream_body) {
        r->body_ended = true;
    }
    client_conn_flush(c);
    if (c->state != CC_CLOSED && body_now && r->stream_body)
        client_req_body_ready(r);
}

/* The server said 100 (or stayed silent for a second): send the body. */
void client_conn_send_body(client_conn *c, client_req *r)
{
    r->continue_waiting = false;
    timeout_disarm(&r->t_continue);
    if (r->stream_body) {
        client_req_body_ready(r);
        return;
    }
    append(c, r->wire + r->head_len, r->wire_len - r->head_len);
    r->body_ended = true;
    client_conn_flush(c);
}

/* Queue a piece of a streamed body (chunk-framed when its length is
 * unknown); last: the body ends after it. The caller flushes. */
void client_conn_write_body(client_conn *c, client_req *r, const void *buf, size_t len, bool last)
{
    if (r->chunked_body && len) {
        char line[24];
        int n = snprintf(line, sizeof(line), "%zx\r\n", len);
        append(c, line, (size_t) n);
        if (c->state != CC_CLOSED)
            append(c, buf, len);
        if (c->state != CC_CLOSED)
            append(c, "\r\n", 2);
    } else if (len) {
        append(c, buf, len);
    }
    if (last && r->chunked_body && c->state != CC_CLOSED)
        append(c, "0\r\n\r\n", 5);
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    client_conn *c = h->data;
    (void) suggested;
    buf_uv_alloc(&c->agent->rbufs, &c->rbuf, out);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    client_conn *c = s->data;
    ferry_agent *a = c->agent;
    (void) buf;
    if (nread == 0 || c->state == CC_CLOSED)
        return;
    if (nread < 0) {
        buf_pool_put_if_empty(&a->rbufs, &c->rbuf);
        if (c->state == CC_IDLE) { /* the server closed a pooled socket: fine */
            a->stats.stale_detected++;
            client_conn_close(c, 0);
            return;
        }
        if (nread == UV_EOF) {
            /* what is buffered may still finish the response (a body
             * delimited by the close ends here); a paused reader gets it
             * when it resumes, and process() closes after that */
            c->peer_eof = true;
            transport_read_stop(&c->t);
            client_conn_process(c);
            return;
        }
        client_conn_close(c, (int) nread);
        return;
    }
    buf_commit(c->rbuf, (size_t) nread);
    a->stats.bytes_in += (uint64_t) nread;
    if (c->state == CC_IDLE || list_empty(&c->inflight)) {
        /* bytes nobody asked for: this socket cannot be trusted */
        a->stats.stale_detected++;
        client_conn_close(c, 0);
        return;
    }
    client_req *r = container_of(c->inflight.next, client_req, link);
    r->got_byte = true;
    if (c->head_done)
        agent_arm(a, &r->tmo, r->t_body, false); /* body inactivity restarts */
    client_conn_process(c);
}

/* The response to r is complete: r leaves the socket and completes (or is
 * retried); the socket takes the next request or goes idle. */
static void message_end(client_conn *c, client_req *r)
{
    list_remove(&r->link);
    c->ninflight--;
    r->conn = NULL;
    timeout_disarm(&r->tmo);
    c->served++;
    c->head_done = false;
    c->body_kind = CB_NONE;
    /* the server answered before r's body was all sent (an early 413, a
     * final status instead of 100): the rest of it must never be taken
     * for the next request */
    if (!r->body_ended || r->close_after || c->peer_eof || c->no_reuse_after)
        c->no_reuse = true;
    client_req_message_end(r); /* may free r */
    if (c->state == CC_CLOSED)
        return;
    if (c->ninflight) {
        if (c->no_reuse) { /* the server will not answer those behind: replay them */
            client_conn_close_ex(c, 0, true);
            return;
        }
        client_req *next = container_of(c->inflight.next, client_req, link);
        agent_arm(c->agent, &next->tmo, next->t_headers, false);
        return;
    }
    if (c->rbuf && c->rbuf->len) { /* more than the response: broken server */
        client_conn_close(c, 0);
        return;
    }
    buf_pool_put_if_empty(&c->agent->rbufs, &c->rbuf);
    agent_conn_available(c);
}

/* The head of the response to r is complete (rc bytes in the buffer). */
static void on_head(client_conn *c, client_req *r, int rc)
{
    ferry_agent *a = c->agent;
    parse_head *h = &c->head;
    c->head_done = true;
    c->body_left = 0;
    if (h->flags & PARSE_F_NO_BODY) {
        c->body_kind = CB_NONE;
    } else if (h->flags & PARSE_F_CHUNKED) {
        c->body_kind = CB_CHUNKED;
        parse_chunked_init(&c->chunk, CHUNK_TRAILER_MAX, true);
    } else if (h->flags & PARSE_F_CONTENT_LENGTH) {
        c->body_left = h->content_length;
        c->body_kind = h->content_length ? CB_LENGTH : CB_NONE;
    } else {
        c->body_kind = CB_UNTIL_CLOSE;
        c->no_reuse = true;
    }
    if (!(h->flags & PARSE_F_KEEP_ALIVE))
        c->no_reuse_after = true;
    if (h->flags & PARSE_F_KEEP_ALIVE_HINT) {
        /* retire the socket before the server does (the keep-alive race) */
        uint64_t hint = (uint64_t) h->keep_alive_timeout_s * 1000;
        uint64_t t = hint > a->opt.keep_alive_margin_ms ? hint - a->opt.keep_alive_margin_ms : 0;
        if (t < c->idle_ms)
            c->idle_ms = t;
    }
    if (r->continue_waiting) {
        /* a final answer before 100: the body was never sent, and the
         * server may still expect it, so this socket ends with the response */
        r->continue_waiting = false;
        timeout_disarm(&r->t_continue);
        c->no_reuse_after = true;
    }
    if (c->body_kind != CB_NONE)
        agent_arm(a, &r->tmo, r->t_body, false);
    else
        timeout_disarm(&r->tmo);
    client_req_response_head(r, c, h, (size_t) rc); /* may end r or close c */
    agent_fields_put(a, c->fields); /* the head is used up */
    c->fields = NULL;
    if (c->state != CC_CLOSED)
        buf_consume(c->rbuf, (size_t) rc);
}

/* Parse what the read buffer holds: heads, bodies, the next response. */
void client_conn_process(client_conn *c)
{
    ferry_agent *a = c->agent;
    if (c->state != CC_CLOSED && waiters_due(c)) {
        for (list_link *l = c->inflight.next; l != &c->inflight;) {
            client_req *r = container_of(l, client_req, link);
            l = l->next;
            client_req_fire_waiters(r, c->out.flushed_total);
            if (c->state == CC_CLOSED)
                return;
        }
    }
    while (c->state == CC_ACTIVE && !list_empty(&c->inflight)) {
        client_req *r = container_of(c->inflight.next, client_req, link);
        if (!c->head_done) {
            if (!c->rbuf || !c->rbuf->len)
                break;
            if (!c->fields) { /* borrowed while a head is read: idle sockets hold none */
                if (!(c->fields = agent_fields_get(a))) {
                    client_conn_close(c, FERRY_ENOMEM);
                    return;
                }
                parse_head_init(&c->head, c->fields);
            }
            parse_limits lim = {a->opt.max_header_bytes, a->opt.max_headers, UINT32_MAX, true};
            int rc = parse_response(&c->head, c->rbuf->data, c->rbuf->len, &lim,
                                    r->is_head ? PARSE_REQ_HEAD : 0);
            if (rc < 0) {
                client_conn_close(c, rc);
                return;
            }
            if (rc == 0) {
                if (c->rbuf->len == c->rbuf->size) {
                    size_t want = c->rbuf->size * 2;
                    if (buf_grow(&a->rbufs, &c->rbuf, want) < 0) {
                        client_conn_close(c, FERRY_ENOMEM);
                        return;
                    }
                }
                break;
            }
            if (c->head.status < 200) {
                if (c->head.status == 101) { /* we never ask for an upgrade */
                    client_conn_close(c, FERRY_EBADSTATUS);
                    return;
                }
                bool go_on = c->head.status == 100 && r->continue_waiting;
                buf_consume(c->rbuf, (size_t) rc);
                parse_head_init(&c->head, c->fields);
                if (go_on)
                    client_conn_send_body(c, r);
                continue;
            }
            on_head(c, r, rc);
            if (c->state != CC_ACTIVE)
                return;
            if (r->conn != c) /* r ended in its callback; c was closed with it */
                return;
            if (c->body_kind == CB_NONE)
                message_end(c, r);
            continue;
        }
        /* body */
        if (r->paused) {
            transport_read_stop(&c->t);
            return;
        }
        if (c->body_kind == CB_UNTIL_CLOSE && c->peer_eof && (!c->rbuf || !c->rbuf->len)) {
            message_end(c, r);
            continue;
        }
        if (!c->rbuf || !c->rbuf->len)
            break;
        char *p = c->rbuf->data;
        size_t len = c->rbuf->len;
        if (c->body_kind == CB_LENGTH) {
            size_t n = len < c->body_left ? len : (size_t) c->body_left;
            c->body_left -= n;
            client_req_body(r, p, n);
            if (c->state != CC_ACTIVE || r->conn != c)
                return;
            buf_consume(c->rbuf, n);
            if (c->body_left == 0)
                message_end(c, r);
        } else if (c->body_kind == CB_CHUNKED) {
            size_t dlen = 0, used = 0;
            int rc = parse_chunked(&c->chunk, p, len, &dlen, &used);
            if (rc < 0) {
                client_conn_close(c, rc);
                return;
            }
            if (dlen) {
                client_req_body(r, p, dlen);
                if (c->state != CC_ACTIVE || r->conn != c)
                    return;
            }
            buf_consume(c->rbuf, used);
            if (rc == 1)
                message_end(c, r);
        } else { /* until close */
            client_req_body(r, p, len);
            if (c->state != CC_ACTIVE || r->conn != c)
                return;
            buf_consume(c->rbuf, len);
        }
    }
    if (c->state == CC_ACTIVE) {
        if (c->peer_eof)
            client_conn_close(c, FERRY_EOF);
        else if (!c->t.reading)
            transport_read_start(&c->t, on_alloc, on_read);
    }
}

void client_conn_resume(client_conn *c)
{
    client_conn_schedule(c);
}

/* r leaves c before its response is complete (abort, timeout, a body over
 * the limit). If r is at the front, the socket is out of step with the
 * server and closes (reset); requests pipelined behind r are sent again
 * elsewhere. If r is behind another request, that one must not suffer: a
 * ghost takes r's place, so r's response is read and dropped when it comes. */
void client_conn_detach(client_conn *c, client_req *r, int err)
{
    bool front = c->inflight.next == &r->link;
    if (!front) {
        client_req *g = client_req_ghost(r);
        if (g) {
            g->conn = c;
            g->link.prev = r->link.prev;
            g->link.next = r->link.next;
            r->link.prev->next = &g->link;
            r->link.next->prev = &g->link;
            list_init(&r->link);
            r->conn = NULL;
            timeout_disarm(&r->tmo);
            return;
        }
    }
    list_remove(&r->link);
    c->ninflight--;
    r->conn = NULL;
    timeout_disarm(&r->tmo);
    c->force_reset = true; /* tell the server at once that the exchange is over */
    client_conn_close_ex(c, err, true);
}

/* ---- closing ---- */

void client_conn_close(client_conn *c, int err)
{
    client_conn_close_ex(c, err, false);
}

/* Close the socket. err 0: a clean close (FIN); < 0: something failed, and
 * unless it was the server's close, the socket is reset. The request at the
 * front fails with err (client_req_attempt_failed decides on a retry); the
 * ones behind it, and with all_collateral the front one too, never got an
 * answer and are sent again. */
void client_conn_close_ex(client_conn *c, int err, bool all_collateral)
{
    if (c->state == CC_CLOSED)
        return;
    ferry_agent *a = c->agent;
    client_origin *o = c->origin;
    uint8_t prev = c->state;
    c->state = CC_CLOSED;
    timeout_disarm(&c->tmo);
    if (prev == CC_RESOLVING)
        dns_cancel(&c->dnsq);
    if (prev == CC_RESOLVING || prev == CC_CONNECTING)
        o->nconnecting--;
    list_remove(&c->link);
    if (prev == CC_IDLE)
        o->nidle--;
    else
        o->nbusy--;
    list_remove(&c->resume_link);
    if (c->addrs) {
        dns_addrs_release(c->addrs);
        c->addrs = NULL;
    }
    bool had_requests = !list_empty(&c->inflight);
    list_link gone = c->inflight;
    if (had_requests) { /* take the whole list over */
        gone.next->prev = &gone;
        gone.prev->next = &gone;
    } else {
        list_init(&gone);
    }
    list_init(&c->inflight);
    c->ninflight = 0;
    /* The front request's failure is its own (unless all_collateral); the
     * rest never got an answer and are replayed behind it, in order. */
    client_req *lead = NULL;
    if (!list_empty(&gone) && !all_collateral) {
        client_req *r = container_of(gone.next, client_req, link);
        list_remove(&r->link);
        r->conn = NULL;
        timeout_disarm(&r->tmo);
        timeout_disarm(&r->t_continue);
        if (r->ghost) {
            client_req_free_ghost(r);
        } else {
            int e = err;
            if (e == 0 || e == FERRY_EOF)
                e = r->got_byte ? FERRY_EINCOMPLETE : FERRY_ECONNRESET;
            client_req_attempt_failed(r, e, AF_SENT);
            lead = r;
        }
    }
    while (!list_empty(&gone)) {
        client_req *r = container_of(gone.next, client_req, link);
        list_remove(&r->link);
        r->conn = NULL;
        timeout_disarm(&r->tmo);
        timeout_disarm(&r->t_continue);
        if (r->ghost)
            client_req_free_ghost(r);
        else
            lead = client_req_replay(r, lead);
    }
    client_req *d = c->driver;
    if (d) {
        d->driving = NULL;
        c->driver = NULL;
        if (err < 0 && (prev == CC_RESOLVING || prev == CC_CONNECTING) && d->state == RQ_WAITING) {
            agent_unqueue(d);
            client_req_attempt_failed(d, err, AF_CONNECT);
        }
    }
    if (prev == CC_IDLE)
        uv_ref(&c->t.io.h); /* closing must finish before the loop may end */
    bool reset = c->force_reset || (err < 0 && err != FERRY_EOF && had_requests);
    c->reconnecting = false;
    transport_close(&c->t, reset, on_closed);
    (void) a;
}

static void on_closed(uv_handle_t *h)
{
    client_conn *c = h->data;
    ferry_agent *a = c->agent;
    if (c->reconnecting && c->state == CC_CONNECTING) {
        /* the previous address failed: a fresh handle for the next one */
        c->reconnecting = false;
        int rc = transport_tcp_init(a->loop, &c->t);
        if (rc < 0) {
            /* no handle to close: finish by hand */
            c->state = CC_CLOSED;
            c->origin->nconnecting--;
            c->origin->nbusy--;
            list_remove(&c->link);
            timeout_disarm(&c->tmo);
            client_req *d = c->driver;
            if (d) {
                d->driving = NULL;
                if (d->state == RQ_WAITING) {
                    agent_unqueue(d);
                    client_req_attempt_failed(d, rc, AF_CONNECT);
                }
            }
        } else {
            c->t.io.h.data = c;
            conn_connect_next(c);
            return;
        }
    }
    client_origin *o = c->origin;
    if (c->addrs)
        dns_addrs_release(c->addrs);
    if (c->rbuf)
        buf_pool_put(&a->rbufs, c->rbuf);
    transport_out_free(&c->out);
    agent_fields_put(a, c->fields);
    free(c);
    agent_conn_freed(a, o);
    agent_origin_unref(o);
}
