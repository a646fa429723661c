/* exchange.c — the request/response API a handler sees (ferry_req_*,
 * ferry_res_*), the cache of exchanges, write callbacks and offloaded work.
 *
 * It sits above the connection: it calls server_conn.c to write, flush and
 * move the state machine on, and implements the conn_events the connection
 * reports through (a request to hand to the handler, body bytes, write
 * progress, the connection letting go).
 *
 * Around every user callback an exchange is held (hold/unhold): the
 * callback may end the response or destroy the server, and the exchange must
 * survive until it returns. Write callbacks never run inside ferry_res_write
 * (a handler that writes again from its callback would recurse without
 * bound): they run from the loop's next turn, once their bytes are out.
 */
#include <stdlib.h>
#include <string.h>

#include "http1/message.h"
#include "server/server_conn.h"

#define EXCHANGE_CACHE 64

/* ---- the cache: every request needs an exchange ---- */

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
    s->set.ex_outstanding++;
    list_append(&s->set.live_ex, &ex->live);
    exchange_reset(ex);
    return ex;
}

static void exchange_free(exchange *ex)
{
    free(ex->body_buf);
    free(ex->head_copy);
    free(ex->hdrs);
    waiters_free(&ex->waiters);
    free(ex);
}

static void exchange_put(ferry_server *s, exchange *ex)
{
    if (!s) { /* an orphan: its server was freed (exchange_orphan_all) */
        exchange_free(ex);
        return;
    }
    list_remove(&ex->live);
    free(ex->body_buf); /* big bodies are not cached */
    ex->body_buf = NULL;
    ex->body_cap = 0;
    free(ex->head_copy);
    ex->head_copy = NULL;
    waiters_clear(&ex->waiters);
    ex->conn = NULL;
    ex->conn_done = ex->offloaded = false;
    if (s->free_ex_count < EXCHANGE_CACHE) {
        ex->next_free = s->free_ex;
        s->free_ex = ex;
        s->free_ex_count++;
    } else {
        exchange_free(ex);
    }
    s->set.ex_outstanding--;
    if (s->closing) /* only a close waits for exchanges */
        s->set.changed(&s->set);
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
 * ended the response, no offloaded work is pending, no callback running. */
static void exchange_maybe_release(exchange *ex)
{
    if (!ex->conn_done || ex->offloaded || ex->holds)
        return;
    ferry_server *s = ex->server;
    if (ex->handler_done)
        exchange_put(s, ex);
    else if (s && s->destroyed)
        s->set.changed(&s->set); /* only held now: it no longer keeps the close waiting */
}

bool exchange_any_pending(ferry_server *s)
{
    if (!s->destroyed)
        return s->set.ex_outstanding != 0;
    for (list_link *l = s->set.live_ex.next; l != &s->set.live_ex; l = l->next) {
        const exchange *ex = container_of(l, exchange, live);
        if (!ex->conn_done || ex->offloaded || ex->holds)
            return true;
    }
    return false;
}

void exchange_orphan_all(ferry_server *s)
{
    while (!list_empty(&s->set.live_ex)) {
        exchange *ex = container_of(s->set.live_ex.next, exchange, live);
        list_remove(&ex->live);
        ex->server = NULL;
        s->set.ex_outstanding--;
    }
}

/* Copies the head (owner: the exchange, freed when it is released). On
 * failure the request is left with no fields rather than dangling ones. */
void exchange_keep_head(exchange *ex, const char *buf)
{
    if (ex->head_copy || !ex->head_len)
        return;
    ex->head_copy = malloc(ex->head_len);
    if (ex->head_copy) {
        memcpy(ex->head_copy, buf, ex->head_len);
        parse_head_move(&ex->head, ex->head_copy);
    } else {
        ex->head.method = ex->head.target = "";
        ex->head.method_len = ex->head.target_len = 0;
        ex->head.nfields = 0;
    }
}

static inline void hold(exchange *ex)
{
    ex->holds++;
}

/* Do not touch ex after unhold(). */
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

/* ---- write callbacks ---- */

/* The output total the exchange's writes are measured against: its
 * connection's; once it let go cleanly, everything it wrote is out. */
static uint64_t exchange_flushed(const exchange *ex)
{
    return ex->conn ? ex->conn->t.flushed_total : UINT64_MAX;
}

/* Run the write callbacks whose bytes have all reached the kernel (status
 * 0), or all of them with an error when the connection failed. */
static void fire_waiters(exchange *ex, int status)
{
    hold(ex);
    write_waiter w;
    while (waiters_pop(&ex->waiters, exchange_flushed(ex), status < 0, &w))
        ((ferry_write_cb) w.cb)(&ex->res, status, w.data); /* may write again */
    unhold(ex);
}

static void on_defer(uv_idle_t *h)
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

/* Run the due write callbacks on the next loop turn. */
static void defer_waiters(exchange *ex)
{
    ferry_server *s = ex->server;
    if (ex->deferred)
        return;
    ex->deferred = true;
    hold(ex);
    ex->defer_next = s->deferred;
    s->deferred = ex;
    s->defer.data = s;
    uv_idle_start(&s->defer, on_defer);
}

static void check_waiters_due(exchange *ex)
{
    if (waiters_due(&ex->waiters, exchange_flushed(ex)))
        defer_waiters(ex);
}

/* ---- bodies ---- */

static void body_deliver_end(exchange *ex, int status)
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
    unhold(ex);
}

/* The body failed with no connection to tell (it let go). */
static void body_fail_detached(exchange *ex, int err)
{
    if (ex->body_failed || ex->body_done)
        return;
    ex->body_failed = ex->body_done = true;
    timeout_disarm(&ex->t_request);
    body_deliver_end(ex, err);
}

/* ---- conn_events ---- */

static void ev_request(exchange *ex)
{
    ferry_server *s = ex->server;
    ex->called = true;
    ex->handler_done = false;
    hold(ex);
    s->on_request(ex, &ex->res, s->data);
    unhold(ex);
}

/* Grows ex->body_buf (owner: the exchange, freed when it is released). */
static int ev_body(exchange *ex, const char *p, size_t n)
{
    if (ex->body_mode == MODE_BUFFER) {
        if (ex->body_len + n > ex->body_cap) {
            /* doubling, but never past the limit when the body fits under it */
            size_t cap = ex->body_cap ? ex->body_cap * 2 : 4096;
            while (cap < ex->body_len + n)
                cap *= 2;
            if (cap > ex->body_max && ex->body_max >= ex->body_len + n)
                cap = (size_t) ex->body_max;
            char *nb = realloc(ex->body_buf, cap);
            if (!nb)
                return FERRY_ENOMEM;
            ex->body_buf = nb;
            ex->body_cap = cap;
        }
        memcpy(ex->body_buf + ex->body_len, p, n);
        ex->body_len += n;
    } else if (ex->body_mode == MODE_STREAM && ex->data_cb) {
        hold(ex);
        ex->data_cb(ex, 0, p, n, ex->cb_data);
        unhold(ex);
    }
    return 0;
}

static void ev_flushed(exchange *ex)
{
    check_waiters_due(ex);
}

static void ev_detached(exchange *ex, int err)
{
    if (err < 0) {
        /* Work not yet started is for nobody now: after_cb gets
         * FERRY_ECANCELED. Running work hears it through the abort callback. */
        if (ex->offloaded)
            uv_cancel((uv_req_t *) &ex->work);
        hold(ex);
        if (ex->body_mode != MODE_UNREAD)
            body_fail_detached(ex, err);
        if (waiters_any(&ex->waiters))
            fire_waiters(ex, err);
        exchange_lost(ex, err);
        unhold(ex);
        return;
    }
    exchange_maybe_release(ex);
}

static const conn_events exchange_conn_events = {
    .get = exchange_get,
    .request = ev_request,
    .body = ev_body,
    .body_end = body_deliver_end,
    .flushed = ev_flushed,
    .detached = ev_detached,
};

const conn_events *exchange_events(void)
{
    return &exchange_conn_events;
}

/* ---- public: request ---- */

ferry_str ferry_req_method(const ferry_req *req)
{
    if (!req)
        return (ferry_str){NULL, 0};
    return (ferry_str){req->head.method, req->head.method_len};
}

ferry_str ferry_req_target(const ferry_req *req)
{
    if (!req)
        return (ferry_str){NULL, 0};
    return (ferry_str){req->head.target, req->head.target_len};
}

ferry_str ferry_req_path(const ferry_req *req)
{
    if (!req)
        return (ferry_str){NULL, 0};
    const char *q = memchr(req->head.target, '?', req->head.target_len);
    size_t n = q ? (size_t) (q - req->head.target) : req->head.target_len;
    return (ferry_str){req->head.target, n};
}

ferry_str ferry_req_query(const ferry_req *req)
{
    if (!req)
        return (ferry_str){NULL, 0};
    const char *q = memchr(req->head.target, '?', req->head.target_len);
    if (!q)
        return (ferry_str){NULL, 0};
    return (ferry_str){q + 1, req->head.target_len - (size_t) (q + 1 - req->head.target)};
}

int ferry_req_version_minor(const ferry_req *req)
{
    if (!req)
        return FERRY_EINVAL;
    return req->head.version_minor;
}

ferry_str ferry_req_header(const ferry_req *req, const char *name)
{
    if (!req || !name)
        return (ferry_str){NULL, 0};
    const parse_field *f = parse_find_field(&req->head, name, strlen(name));
    return f ? (ferry_str){f->value, f->value_len} : (ferry_str){NULL, 0};
}

size_t ferry_req_header_count(const ferry_req *req)
{
    if (!req)
        return 0;
    return req->head.nfields;
}

int ferry_req_header_at(const ferry_req *req, size_t i, ferry_str *name, ferry_str *value)
{
    if (!req || !name || !value || i >= req->head.nfields)
        return FERRY_EINVAL;
    const parse_field *f = &req->head.fields[i];
    *name = (ferry_str){f->name, f->name_len};
    *value = (ferry_str){f->value, f->value_len};
    return 0;
}

int ferry_req_peer(const ferry_req *req, struct sockaddr_storage *addr)
{
    if (!req || !addr)
        return FERRY_EINVAL;
    server_conn *c = req->conn;
    if (!c)
        return FERRY_ENOTCONN;
    return server_conn_peer(c, addr);
}

int ferry_req_tls(const ferry_req *req, ferry_tls_info *info)
{
    if (!req || !info)
        return FERRY_EINVAL;
    memset(info, 0, sizeof(*info));
    server_conn *c = req->conn;
    if (!c)
        return FERRY_ENOTCONN;
    return transport_tls_info(&c->t, info);
}

ferry_res *ferry_req_res(ferry_req *req)
{
    return req ? &req->res : NULL;
}

ferry_server *ferry_req_server(const ferry_req *req)
{
    return req ? req->server : NULL;
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
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (transport_reserve(&c->t, sizeof(cont) - 1) == 0) {
            transport_put(&c->t, cont, sizeof(cont) - 1);
            req->continue_sent = true;
        }
    }
    return 0;
}

/* Common end of read_body / on_data: deliver what is there (a body already
 * complete is delivered by the connection, never from inside the call). */
static int body_go(ferry_req *req)
{
    if (!req->conn) {
        body_fail_detached(req, FERRY_ECONNRESET);
        return 0;
    }
    if (req->body_done)
        req->end_pending = true;
    server_conn_kick(req->conn);
    return 0;
}

int ferry_req_read_body(ferry_req *req, uint64_t max_bytes, ferry_body_cb cb, void *data)
{
    if (!req || !cb)
        return FERRY_EINVAL;
    if (req->body_mode != MODE_UNREAD || req->handler_done)
        return FERRY_EALREADY;
    uint64_t max = max_bytes ? max_bytes : req->server ? req->server->opt.max_body_bytes : 0;
    server_conn *c = req->conn;
    bool sized = req->head.flags & PARSE_F_CONTENT_LENGTH;
    if (c && sized && req->head.content_length > max) {
        /* Declared too big: refuse before reading a byte, and say so now —
         * with the final status, never a 100 Continue first (RFC 9110
         * §10.1.1: a server that knows the answer sends it). */
        c->close_after = true;
        if (!server_conn_closed(c) && !(req->rflags & RF_HEAD_SENT))
            server_conn_error_response(c, 413, FERRY_EBODYTOOBIG);
        return FERRY_EBODYTOOBIG;
    }
    int rc = body_start(req, MODE_BUFFER, data);
    if (rc < 0)
        return rc;
    req->body_cb = cb;
    req->body_max = max;
    if (c && sized && req->head.content_length) { /* the size is known: allocate once */
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
    if (!req || !cb)
        return FERRY_EINVAL;
    int rc = body_start(req, MODE_STREAM, data);
    if (rc < 0)
        return rc;
    req->data_cb = cb;
    return body_go(req);
}

void ferry_req_pause(ferry_req *req)
{
    if (!req)
        return;
    req->body_paused = true;
    if (req->conn && !req->conn->in_process)
        server_conn_update_reading(req->conn);
}

void ferry_req_resume(ferry_req *req)
{
    if (!req || !req->body_paused)
        return;
    req->body_paused = false;
    if (req->conn)
        server_conn_kick(req->conn);
}

/* ---- public: response ---- */

ferry_req *ferry_res_req(ferry_res *res)
{
    return res ? res->req : NULL;
}

void ferry_res_on_abort(ferry_res *res, ferry_abort_cb cb, void *data)
{
    if (!res)
        return;
    res->req->abort_cb = cb;
    res->req->abort_data = data;
}

int ferry_res_aborted(const ferry_res *res)
{
    if (!res)
        return 1; /* nothing to write to: as good as gone */
    const exchange *ex = res->req;
    return !ex->conn || server_conn_closed(ex->conn) || (ex->rflags & RF_TAKEN);
}

int ferry_res_set_status(ferry_res *res, int status)
{
    if (!res)
        return FERRY_EINVAL;
    exchange *ex = res->req;
    if (status < 100 || status > 599)
        return FERRY_EINVAL;
    if (ex->rflags & RF_HEAD_SENT || ex->handler_done)
        return FERRY_EALREADY;
    ex->status = status;
    return 0;
}

static int header_common(ferry_res *res, const char *name, const char *value, bool replace)
{
    if (!res || !name || !value)
        return FERRY_EINVAL;
    exchange *ex = res->req;
    if (ex->rflags & RF_HEAD_SENT || ex->handler_done)
        return FERRY_EALREADY;
    return response_header(ex, name, value, replace);
}

int ferry_res_set_header(ferry_res *res, const char *name, const char *value)
{
    return header_common(res, name, value, true);
}

int ferry_res_add_header(ferry_res *res, const char *name, const char *value)
{
    return header_common(res, name, value, false);
}

int ferry_res_write(ferry_res *res, const void *buf, size_t len, ferry_write_cb cb, void *data)
{
    if (!res || (!buf && len))
        return FERRY_EINVAL;
    exchange *ex = res->req;
    server_conn *c = ex->conn;
    if (ex->handler_done)
        return FERRY_EALREADY;
    if (!c || server_conn_closed(c) || (ex->rflags & RF_TAKEN))
        return FERRY_ECONNRESET;
    if (!(ex->rflags & RF_HEAD_SENT)) {
        int rc = server_conn_queue_head(c, ex, UINT64_MAX, NULL, 0);
        if (rc < 0)
            return rc;
    }
    if (cb && waiters_reserve(&ex->waiters) < 0)
        return FERRY_ENOMEM;
    int rc = response_queue_body(ex, &c->t, buf, len);
    if (rc < 0)
        return rc;
    if (cb)
        waiters_push(&ex->waiters, c->t.queued_total, (waiter_fn) cb, data);
    if (!c->in_process)
        server_conn_flush(c);
    check_waiters_due(ex);
    return 0;
}

/* The handler is done with the response. */
static void res_finish(exchange *ex)
{
    server_conn *c = ex->conn;
    ex->handler_done = true;
    if (!c || server_conn_closed(c) || (ex->rflags & RF_TAKEN)) {
        exchange_maybe_release(ex);
        return;
    }
    if ((ex->rflags & RF_HAS_CL) && ex->res_sent < ex->res_cl && !(ex->rflags & RF_NO_BODY))
        c->close_after = true; /* promised more than was sent: the framing is broken */
    if (!ex->body_done && ex->body_mode == MODE_UNREAD)
        ex->body_mode = MODE_DRAIN;
    server_conn_kick(c);
}

int ferry_res_end(ferry_res *res)
{
    if (!res)
        return FERRY_EINVAL;
    exchange *ex = res->req;
    if (ex->handler_done)
        return FERRY_EALREADY;
    server_conn *c = ex->conn;
    if (c && !server_conn_closed(c) && !(ex->rflags & RF_TAKEN)) {
        int rc = !(ex->rflags & RF_HEAD_SENT) ? server_conn_queue_head(c, ex, 0, NULL, 0)
                                              : response_queue_end(ex, &c->t);
        if (rc < 0) {
            c->close_after = true;
            server_conn_destroy(c, rc);
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
    if (!res)
        return FERRY_EINVAL;
    exchange *ex = res->req;
    if (ex->handler_done)
        return FERRY_EALREADY;
    server_conn *c = ex->conn;
    if (!c || server_conn_closed(c) || (ex->rflags & RF_TAKEN)) {
        res_finish(ex);
        return 0;
    }
    if (ex->rflags & RF_HEAD_SENT) {
        /* a response is already under way: finish it as ferry_res_end would */
        response_queue_body(ex, &c->t, body, len);
        ferry_res_end(res);
        return FERRY_EALREADY;
    }
    int rc = ferry_res_set_status(res, status);
    size_t ctype_len = 0;
    if (rc == 0 && content_type) {
        /* The usual case, no other headers yet: straight into the head. */
        ctype_len = strlen(content_type);
        if (!http1_value_ok(content_type, ctype_len))
            rc = FERRY_EINVAL;
        if (rc == 0 && ex->hdrs_len) {
            rc = ferry_res_set_header(res, "Content-Type", content_type);
            ctype_len = 0;
        }
    }
    ex->rflags &= (uint8_t) ~RF_HAS_CL;
    if (rc == 0)
        rc = server_conn_queue_head(c, ex, len, content_type, ctype_len);
    if (rc == 0)
        rc = response_queue_body(ex, &c->t, body, len);
    if (rc < 0) {
        c->close_after = true;
        server_conn_destroy(c, rc);
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
    if (!res || !work_cb || !after_cb)
        return FERRY_EINVAL;
    exchange *ex = res->req;
    if (ex->handler_done || ex->offloaded)
        return FERRY_EALREADY;
    if (!ex->server || ex->server->destroyed)
        return FERRY_ECLOSING;
    if (!ex->conn)
        return FERRY_ECONNRESET; /* the response is lost: nothing to compute it for */
    ex->work_cb = work_cb;
    ex->after_cb = after_cb;
    ex->work_data = data;
    int rc = uv_queue_work(ex->server->loop, &ex->work, offload_work, offload_done);
    if (rc == 0)
        ex->offloaded = true;
    return rc;
}
