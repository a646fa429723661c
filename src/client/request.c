/* request.c — one client request: the public calls, its bytes on the wire
 * (built once, replayed on retry), its timeouts, the retry policy, redirects,
 * cookies and its completion. The only file that changes a request's state.
 *
 * Life: ferry_request → queued on its origin (pool.c) → sent on a socket
 * (conn.c) → response head (on_response, or a retry decision) → body →
 * on_done. Any attempt can fail; attempt_failed decides between another
 * attempt and the end. Retries happen before on_response, never after it.
 *
 * Completion runs the user's callback exactly once. After a successful
 * response it runs at once (we are in the socket's read callback); every
 * other completion is put on the agent's done list and runs from the kick,
 * so it never runs inside a public call, and never inside the socket code
 * that found the error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "client/client.h"
#include "core/options.h"
#include "http1/message.h"

#define FETCH_DEFAULT_MAX (64u * 1024 * 1024)

static void request_options_defaults(ferry_request_options *o)
{
    memset(o, 0, sizeof(*o));
    o->method = "GET";
    o->stream_body_length = -1;
    o->connect_timeout_ms = FERRY_AGENT_DEFAULT;
    o->headers_timeout_ms = FERRY_AGENT_DEFAULT;
    o->body_timeout_ms = FERRY_AGENT_DEFAULT;
    o->queue_timeout_ms = FERRY_AGENT_DEFAULT;
    o->total_timeout_ms = FERRY_AGENT_DEFAULT;
    o->retries = FERRY_AGENT_DEFAULT;
}

void ferry_request_options_init_sized(ferry_request_options *o, size_t size)
{
    ferry_request_options def;
    request_options_defaults(&def);
    options_init_sized(o, size, &def, sizeof(def));
}

ferry_str ferry_response_header(const ferry_response *r, const char *name)
{
    ferry_str none = {NULL, 0};
    if (!r || !name)
        return none;
    size_t n = strlen(name);
    for (size_t i = 0; i < r->header_count; i++) {
        const ferry_header *h = &r->headers[i];
        if (h->name.len == n && strncasecmp(h->name.p, name, n) == 0)
            return h->value;
    }
    return none;
}

/* ---- building the request bytes ---- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int err;
} sbuf;

static void sb_put(sbuf *b, const void *p, size_t n)
{
    if (b->err)
        return;
    if (b->len + n > b->cap && buf_reserve(&b->p, &b->cap, b->len + n, 256) < 0) {
        b->err = FERRY_ENOMEM;
        return;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void sb_str(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static bool name_is(const ferry_str *s, const char *name)
{
    size_t n = strlen(name);
    return s->len == n && strncasecmp(s->p, name, n) == 0;
}

static bool value_is(const ferry_str *s, const char *v)
{
    return name_is(s, v);
}

static bool method_idempotent(const char *m, size_t n)
{
    switch (n) {
    case 3: return memcmp(m, "GET", 3) == 0 || memcmp(m, "PUT", 3) == 0;
    case 4: return memcmp(m, "HEAD", 4) == 0;
    case 5: return memcmp(m, "TRACE", 5) == 0;
    case 6: return memcmp(m, "DELETE", 6) == 0;
    case 7: return memcmp(m, "OPTIONS", 7) == 0;
    default: return false;
    }
}

/* POST, PUT and PATCH carry a Content-Length even when empty (RFC 9110 §8.6). */
static bool method_wants_length(const char *m, size_t n)
{
    return (n == 4 && memcmp(m, "POST", 4) == 0) || (n == 3 && memcmp(m, "PUT", 3) == 0) ||
           (n == 5 && memcmp(m, "PATCH", 5) == 0);
}

/* Copy what rebuilding the request after a redirect needs into one block
 * (owner: r->saved, freed with r): the options, the header fields and
 * their bytes, the method, the content type and the in-memory body. */
static int save_options(client_req *r, const ferry_request_options *o, const char *method)
{
    size_t need = sizeof(*o) + o->header_count * sizeof(ferry_header) + strlen(method) + 1 +
                  (o->content_type ? strlen(o->content_type) + 1 : 0) + o->body_len;
    for (size_t i = 0; i < o->header_count; i++)
        need += o->headers[i].name.len + o->headers[i].value.len;
    ferry_request_options *so = malloc(need);
    if (!so)
        return FERRY_ENOMEM;
    *so = *o;
    ferry_header *hs = (ferry_header *) (so + 1);
    char *p = (char *) (hs + o->header_count);
    for (size_t i = 0; i < o->header_count; i++) {
        const ferry_header *h = &o->headers[i];
        memcpy(p, h->name.p, h->name.len);
        hs[i].name = (ferry_str){p, h->name.len};
        p += h->name.len;
        if (h->value.len)
            memcpy(p, h->value.p, h->value.len);
        hs[i].value = (ferry_str){p, h->value.len};
        p += h->value.len;
    }
    so->headers = hs;
    size_t ml = strlen(method) + 1;
    memcpy(p, method, ml);
    so->method = r->method = p;
    p += ml;
    if (o->content_type) {
        size_t cl = strlen(o->content_type) + 1;
        memcpy(p, o->content_type, cl);
        so->content_type = p;
        p += cl;
    }
    if (o->body_len)
        memcpy(p, o->body, o->body_len);
    so->body = o->body_len ? p : NULL;
    so->url = NULL; /* the current URL is r->u */
    r->saved = so;
    return 0;
}

/* build_wire gives up: the buffer stays the request's, for reuse. */
static int wire_fail(client_req *r, sbuf *b, int err)
{
    r->wire = b->p;
    r->wire_cap = b->cap;
    return err;
}

/* The request's bytes: head, then the in-memory body (owner: the request,
 * r->wire, freed with it). */
static int build_wire(client_req *r, const ferry_request_options *o, const char *method)
{
    ferry_agent *a = r->agent;
    sbuf b = {r->wire, 0, r->wire_cap, 0}; /* a kept request's buffer, if any */
    r->wire = NULL;
    r->wire_cap = 0;
    bool has_cookie = false;
    const ferry_header *host_field = NULL;
    for (size_t i = 0; i < o->header_count; i++) {
        const ferry_header *h = &o->headers[i];
        if (!h->name.p || !parse_is_token(h->name.p, h->name.len) ||
            (h->value.len && !h->value.p) || !http1_value_ok(h->value.p, h->value.len))
            return wire_fail(r, &b, FERRY_EINVAL);
        if (name_is(&h->name, "content-length") || name_is(&h->name, "transfer-encoding"))
            return wire_fail(r, &b, FERRY_EINVAL); /* ferry frames the message */
        if (name_is(&h->name, "host")) { /* a virtual host on an address: replaces the URL's */
            if (host_field || !h->value.len)
                return wire_fail(r, &b, FERRY_EINVAL);
            host_field = h;
        }
        if (name_is(&h->name, "connection")) {
            /* close: this socket ends with the response; keep-alive is the
             * default anyway; anything else (upgrade...) ferry cannot honour */
            if (value_is(&h->value, "close"))
                r->x.close_after = true;
            else if (!value_is(&h->value, "keep-alive"))
                return wire_fail(r, &b, FERRY_EINVAL);
        }
        if (name_is(&h->name, "cookie"))
            has_cookie = true;
    }
    if (o->content_type && !http1_value_ok(o->content_type, strlen(o->content_type)))
        return wire_fail(r, &b, FERRY_EINVAL);

    sb_str(&b, method);
    sb_put(&b, " ", 1);
    sb_put(&b, r->url.path.p, r->url.path.len);
    if (r->url.query.len)
        sb_put(&b, r->url.query.p, r->url.query.len);
    sb_str(&b, " HTTP/1.1\r\nHost: ");
    if (host_field)
        sb_put(&b, host_field->value.p, host_field->value.len);
    else
        sb_put(&b, r->u->host_hdr, r->u->host_hdr_len);
    sb_put(&b, "\r\n", 2);
    for (size_t i = 0; i < o->header_count; i++) {
        const ferry_header *h = &o->headers[i];
        if (h == host_field || name_is(&h->name, "connection"))
            continue; /* written below, once */
        sb_put(&b, h->name.p, h->name.len);
        sb_put(&b, ": ", 2);
        sb_put(&b, h->value.p, h->value.len);
        sb_put(&b, "\r\n", 2);
    }
    if (o->content_type) {
        sb_str(&b, "Content-Type: ");
        sb_str(&b, o->content_type);
        sb_put(&b, "\r\n", 2);
    }
    char line[HTTP1_CONTENT_LENGTH_MAX];
    bool has_body = false;
    if (o->stream_body) {
        has_body = true;
        if (o->stream_body_length >= 0)
            sb_put(&b, line, http1_put_content_length(line, (uint64_t) o->stream_body_length));
        else
            sb_str(&b, "Transfer-Encoding: chunked\r\n");
    } else if (o->body_len || method_wants_length(method, strlen(method))) {
        has_body = o->body_len > 0;
        sb_put(&b, line, http1_put_content_length(line, o->body_len));
    }
    if (o->expect_continue && has_body)
        sb_str(&b, "Expect: 100-continue\r\n");
    if (a->opt.max_idle_per_origin == 0 || r->x.close_after)
        sb_str(&b, "Connection: close\r\n");
    if (a->have_jar && !has_cookie) {
        size_t need = 0;
        int64_t now = (int64_t) time(NULL);
        int rc = cookie_jar_header(&a->jar, r->url.host.p, r->url.host.len, r->url.path.p,
                                   r->url.path.len, 0, now, NULL, 0, &need);
        if (rc == FERRY_ENOBUFS && need) {
            char *v = malloc(need + 1);
            if (v && cookie_jar_header(&a->jar, r->url.host.p, r->url.host.len, r->url.path.p,
                                       r->url.path.len, 0, now, v, need + 1, &need) == 0) {
                sb_str(&b, "Cookie: ");
                sb_put(&b, v, need);
                sb_put(&b, "\r\n", 2);
            }
            free(v);
        }
    }
    sb_put(&b, "\r\n", 2);
    r->x.head_len = b.len;
    if (!o->stream_body && o->body_len)
        sb_put(&b, o->body, o->body_len);
    r->wire = b.p;
    r->wire_cap = b.cap;
    if (b.err)
        return b.err;
    r->x.wire = r->wire;
    r->x.wire_len = b.len;
    r->x.expect_continue = o->expect_continue && has_body;
    return 0;
}

/* ---- URLs ---- */

static void url_unref(client_url *u)
{
    if (u && --u->refs == 0)
        free(u);
}

/* The parsed URL for s: the agent's last one when s is the same string, else
 * parsed now (allocates it: owner, its references — the caller's, and the
 * agent's as its last URL). The caller also gets one reference to u->origin.
 * A URL holds no origin reference of its own: the requests using it do, and
 * when its origin is forgotten the agent forgets it as its last URL too
 * (request_on_origin_freed). */
static client_url *url_get(ferry_agent *a, const char *s, int *err)
{
    size_t len = strlen(s);
    client_url *u = a->last_url;
    *err = 0;
    if (u && u->len == len && memcmp(u->str, s, len) == 0) {
        u->refs++;
        pool_origin_ref(u->origin);
        return u;
    }
    u = malloc(sizeof(*u) + len + 1);
    if (!u) {
        *err = FERRY_ENOMEM;
        return NULL;
    }
    memcpy(u->str, s, len + 1);
    u->len = len;
    *err = url_parse(u->str, len, &u->parts);
    if (*err == FERRY_EBADHOST || *err == FERRY_EBADTARGET)
        *err = FERRY_EINVAL; /* to the caller, a bad URL is a bad argument */
    if (*err == 0 && u->parts.https && !a->pool.tls_ready)
        *err = agent_tls_init(a);
    if (*err == 0)
        *err = url_host_header(&u->parts, u->host_hdr, sizeof(u->host_hdr), &u->host_hdr_len);
    if (*err == 0)
        u->origin = pool_origin_for(&a->pool, &u->parts, err);
    if (*err) {
        free(u);
        return NULL;
    }
    u->refs = 2;
    url_unref(a->last_url);
    a->last_url = u;
    return u;
}

void request_on_origin_freed(ferry_agent *a, client_origin *o)
{
    if (a->last_url && a->last_url->origin == o) {
        url_unref(a->last_url);
        a->last_url = NULL;
    }
}

/* ---- starting ---- */

static uint64_t pick(uint64_t req, uint64_t agent)
{
    return req == FERRY_AGENT_DEFAULT ? agent : req;
}

/* Finished requests kept for reuse, per agent. Not under AddressSanitizer:
 * there a handle used after its completion must stay a detected error. */
#if defined(__SANITIZE_ADDRESS__)
#define REQ_CACHE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REQ_CACHE 0
#endif
#endif
#ifndef REQ_CACHE
#define REQ_CACHE 64
#endif
#define REQ_KEEP_WIRE 4096  /* a kept request keeps a wire buffer up to this size */

static void req_free(client_req *r)
{
    ferry_agent *a = r->agent;
    timeout_disarm(&r->tmo);
    timeout_disarm(&r->t_deadline);
    if (r->pe.origin)
        pool_origin_unref(r->pe.origin);
    url_unref(r->u);
    free(r->hdrs);
    free(r->head_copy);
    free(r->fetch_buf);
    waiters_free(&r->x.waiters);
    free(r->saved);
    free(r->redirect_to);
    a->live_requests--;
    /* a program making requests makes more: keep the struct and its wire
     * buffer (a malloc, a free and a 700-byte clear each time otherwise) */
    if (REQ_CACHE && a->nfree_reqs + 1 <= REQ_CACHE && r->wire_cap <= REQ_KEEP_WIRE &&
        !a->closing) {
        char *wire = r->wire;
        size_t cap = r->wire_cap;
        memset(r, 0, sizeof(*r));
        r->wire = wire;
        r->wire_cap = cap;
        r->next_free = a->free_reqs;
        a->free_reqs = r;
        a->nfree_reqs++;
    } else {
        free(r->wire);
        free(r);
    }
}

/* A request struct: a kept one, or a new one (owner: the agent's cache
 * between requests; see req_free). Zeroed but for its wire buffer. */
static client_req *req_alloc(ferry_agent *a)
{
    client_req *r = a->free_reqs;
    if (r) {
        a->free_reqs = r->next_free;
        a->nfree_reqs--;
        r->next_free = NULL;
        return r;
    }
    return calloc(1, sizeof(*r));
}

void request_cache_clear(ferry_agent *a)
{
    while (a->free_reqs) {
        client_req *r = a->free_reqs;
        a->free_reqs = r->next_free;
        free(r->wire);
        free(r);
    }
    a->nfree_reqs = 0;
    url_unref(a->last_url);
    a->last_url = NULL;
}

static void on_queue_timeout(timeout_entry *e);
static void on_deadline(timeout_entry *e);
static void enqueue(client_req *r, bool front);

/* Allocates the request (owner: the caller's callbacks until its
 * completion callback returns; freed right after it). */
static int start(ferry_agent *a, const ferry_request_options *o, const ferry_request_callbacks *cb,
                 ferry_fetch_cb fetch_cb, uint64_t fetch_max, void *data, ferry_client_req **out)
{
    ferry_request_options opt; /* the caller's, perhaps from an older header, over our defaults */
    request_options_defaults(&opt);
    if (!o || options_copy(&opt, sizeof(opt), o, REQUEST_OPTIONS_V1_SIZE) != 0)
        return FERRY_EINVAL;
    o = &opt;
    if (!a || !o->url)
        return FERRY_EINVAL;
    if (a->closing)
        return FERRY_ECLOSING;
    const char *method = o->method ? o->method : "GET";
    size_t mlen = strlen(method);
    if (!parse_is_token(method, mlen))
        return FERRY_EINVAL;
    if (!o->stream_body && o->body_len && !o->body)
        return FERRY_EINVAL;
    if (o->header_count && !o->headers)
        return FERRY_EINVAL;
    client_req *r = req_alloc(a);
    if (!r)
        return FERRY_ENOMEM;
    r->agent = a;
    list_init(&r->link);
    r->pe.x = &r->x;
    timeout_entry_init(&r->tmo, on_queue_timeout);
    timeout_entry_init(&r->t_deadline, on_deadline);
    int rc;
    r->u = url_get(a, o->url, &rc);
    if (r->u) {
        r->url = r->u->parts;
        r->pe.origin = r->u->origin; /* the reference url_get gave */
    }
    if (rc == 0) {
        r->idempotent = method_idempotent(method, mlen) || o->idempotent;
        r->x.pipelinable = r->idempotent;
        r->x.is_head = mlen == 4 && memcmp(method, "HEAD", 4) == 0;
        r->x.stream_body = o->stream_body != 0;
        r->x.chunked_body = r->x.stream_body && o->stream_body_length < 0;
        r->stream_len = r->x.stream_body && o->stream_body_length >= 0
                            ? (uint64_t) o->stream_body_length
                            : UINT64_MAX;
        rc = build_wire(r, o, method);
    }
    if (rc == 0 && o->max_redirects && !o->stream_body) {
        rc = save_options(r, o, method);
        r->redirects_left = o->max_redirects;
    }
    if (rc == 0 && a->opt.max_queue) {
        /* would this request wait, and is the queue full? (checked now, so
         * the caller learns it from the return value) */
        uint32_t excess = pool_queue_excess(r->pe.origin);
        uint32_t others = a->pool.nqueued - r->pe.origin->nwaiting;
        if (excess && others + excess > a->opt.max_queue) {
            a->stats.queue_rejected++;
            rc = FERRY_EQUEUEFULL;
        }
    }
    if (rc != 0) {
        a->live_requests++; /* req_free balances it */
        req_free(r);
        return rc;
    }
    if (cb)
        r->cb = *cb;
    r->fetch = fetch_cb != NULL;
    r->fetch_cb = fetch_cb;
    r->fetch_max = fetch_max ? fetch_max : FETCH_DEFAULT_MAX;
    r->data = data;
    r->pe.connect_ms = pick(o->connect_timeout_ms, a->opt.connect_timeout_ms);
    r->x.t_headers = r->t_headers = pick(o->headers_timeout_ms, a->opt.headers_timeout_ms);
    r->x.t_body = r->t_body = pick(o->body_timeout_ms, a->opt.body_timeout_ms);
    r->t_queue = pick(o->queue_timeout_ms, a->opt.queue_timeout_ms);
    r->t_total = pick(o->total_timeout_ms, a->opt.total_timeout_ms);
    uint64_t retries = o->retries == FERRY_AGENT_DEFAULT ? (r->idempotent ? a->opt.retries : 0)
                                                         : o->retries;
    r->retries_left = retries > UINT32_MAX ? UINT32_MAX : (uint32_t) retries;
    r->attempts = 1;
    a->live_requests++;
    a->stats.requests++;
    if (r->t_total) {
        uv_update_time(a->loop);
        r->deadline_at = uv_now(a->loop) + r->t_total;
        timeout_set_arm(&a->pool.timers, &r->t_deadline, r->t_total, false);
    }
    enqueue(r, false);
    if (out)
        *out = r;
    return 0;
}

int ferry_request(ferry_agent *a, const ferry_request_options *o, const ferry_request_callbacks *cb,
                  void *data, ferry_client_req **out)
{
    if (out)
        *out = NULL; /* on every failure, also those caught before start() */
    if (!cb || !cb->on_done || (o && o->stream_body && !cb->on_body_ready))
        return FERRY_EINVAL;
    return start(a, o, cb, NULL, 0, data, out);
}

int ferry_fetch(ferry_agent *a, const ferry_request_options *o, uint64_t max_body_bytes,
                ferry_fetch_cb cb, void *data, ferry_client_req **out)
{
    if (out)
        *out = NULL;
    if (!cb || (o && o->stream_body))
        return FERRY_EINVAL;
    return start(a, o, NULL, cb, max_body_bytes, data, out);
}

/* ---- the queue and backoff ---- */

/* r joins its origin's queue (at the tail, or the front when it is being
 * retried after waiting its turn once already). */
static void enqueue(client_req *r, bool front)
{
    r->state = RQ_WAITING;
    pool_enqueue(&r->pe, front);
    timeout_set_arm(&r->agent->pool.timers, &r->tmo, r->t_queue, false);
}

/* ...or right behind lead, which is queued on the same origin. */
static void enqueue_after(client_req *r, client_req *lead)
{
    r->state = RQ_WAITING;
    pool_enqueue_after(&r->pe, &lead->pe);
    timeout_set_arm(&r->agent->pool.timers, &r->tmo, r->t_queue, false);
}

static void on_retry_timer(uv_timer_t *t);

static void retry_timer_update(ferry_agent *a)
{
    if (list_empty(&a->retry_wait)) {
        uv_timer_stop(&a->retry_timer);
        return;
    }
    client_req *r = container_of(a->retry_wait.next, client_req, link);
    uint64_t now = uv_now(a->loop);
    uv_timer_start(&a->retry_timer, on_retry_timer, r->retry_at > now ? r->retry_at - now : 0, 0);
}

/* Wait until loop time `at`; among equal times, first come first out.
 * Backoffs are rare, so the list is kept sorted by a linear insertion; one
 * timer serves it. */
static void backoff_until(client_req *r, uint64_t at)
{
    ferry_agent *a = r->agent;
    r->retry_at = at;
    r->state = RQ_BACKOFF;
    list_link *l = a->retry_wait.prev;
    while (l != &a->retry_wait && container_of(l, client_req, link)->retry_at > r->retry_at)
        l = l->prev;
    list_insert_after(l, &r->link);
    retry_timer_update(a);
}

static void backoff(client_req *r, uint64_t delay_ms)
{
    uv_update_time(r->agent->loop);
    backoff_until(r, uv_now(r->agent->loop) + delay_ms);
}

static void cancel_backoff(client_req *r)
{
    list_remove(&r->link);
    retry_timer_update(r->agent);
}

static void on_retry_timer(uv_timer_t *t)
{
    ferry_agent *a = t->data;
    uint64_t now = uv_now(a->loop);
    list_link due;
    list_init(&due);
    while (!list_empty(&a->retry_wait)) {
        client_req *r = container_of(a->retry_wait.next, client_req, link);
        if (r->retry_at > now)
            break;
        list_remove(&r->link);
        list_append(&due, &r->link);
    }
    /* the last due first: each goes to the front, so they keep their order */
    while (!list_empty(&due)) {
        client_req *r = container_of(due.prev, client_req, link);
        list_remove(&r->link);
        enqueue(r, true);
    }
    retry_timer_update(a);
}

/* Full jitter (AWS's name): a uniform delay in [0, min(cap, base * 2^n)),
 * so clients that failed together do not come back together. */
static uint64_t backoff_ms(ferry_agent *a, uint32_t retry_no)
{
    uint64_t ceil = a->opt.retry_base_ms;
    for (uint32_t i = 0; i < retry_no && ceil < a->opt.retry_max_delay_ms; i++)
        ceil *= 2;
    if (ceil > a->opt.retry_max_delay_ms)
        ceil = a->opt.retry_max_delay_ms;
    if (ceil == 0)
        return 0;
    /* jitter only needs to decorrelate clients, not to be unpredictable */
    a->rng = a->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    if (a->rng_seeded == false) {
        a->rng ^= (uint64_t) uv_hrtime() ^ (uint64_t) (uintptr_t) a;
        a->rng_seeded = true;
    }
    return (a->rng >> 33) % ceil;
}

/* ---- ending ---- */

/* Take r off whatever it is on (queue, socket, backoff). */
static void req_leave(client_req *r, int err)
{
    switch (r->state) {
    case RQ_WAITING: pool_cancel(&r->pe); break;
    case RQ_BACKOFF: cancel_backoff(r); break;
    case RQ_SENT:
        if (r->x.conn)
            conn_detach(r->x.conn, &r->x, err);
        break;
    default: list_remove(&r->link); break;
    }
    timeout_disarm(&r->tmo);
}

/* End r with status; the callback runs from the pool's kick. */
static void complete(client_req *r, int status)
{
    if (r->state == RQ_DONE)
        return;
    req_leave(r, status < 0 ? status : FERRY_EABORTED);
    r->state = RQ_DONE;
    r->final_status = status;
    timeout_disarm(&r->t_deadline);
    list_append(&r->agent->done, &r->link);
    pool_kick(&r->agent->pool);
}

/* Run the completion callback, then free r. */
static void deliver_done(client_req *r)
{
    ferry_agent *a = r->agent;
    int status = r->final_status;
    write_waiter w; /* their bytes never made it */
    while (waiters_pop(&r->x.waiters, 0, true, &w))
        if (w.cb)
            ((ferry_client_write_cb) w.cb)(r, status < 0 ? status : FERRY_ECANCELED, w.data);
    if (status < 0)
        a->stats.failed++;
    else
        a->stats.completed++;
    if (r->fetch) {
        const ferry_response *res = NULL;
        if (r->response_delivered) {
            r->res.body.p = r->fetch_buf;
            r->res.body.len = r->fetch_len;
            res = &r->res;
        }
        r->fetch_cb(r, status, res, r->data);
    } else if (r->cb.on_done) {
        r->cb.on_done(r, status, r->data);
    }
    req_free(r);
}

void request_run_done(ferry_agent *a)
{
    while (!list_empty(&a->done)) {
        client_req *r = container_of(a->done.next, client_req, link);
        list_remove(&r->link);
        deliver_done(r);
    }
}

void request_abort_backoff(ferry_agent *a)
{
    while (!list_empty(&a->retry_wait)) {
        client_req *r = container_of(a->retry_wait.next, client_req, link);
        list_remove(&r->link);
        r->state = RQ_NEW;
        complete(r, FERRY_ECLOSING);
    }
    retry_timer_update(a);
}

static bool connect_error(int err)
{
    switch (err) {
    case FERRY_ECONNREFUSED:
    case FERRY_ECONNECTTIMEOUT:
    case FERRY_EHOSTUNREACH:
    case FERRY_ENETUNREACH:
    case FERRY_EADDRNOTAVAIL:
    case FERRY_EAI_AGAIN:
    case FERRY_ETIMEDOUT: return true;
    default: return false;
    }
}

static bool reset_error(int err)
{
    switch (err) {
    case FERRY_ECONNRESET:
    case FERRY_EPIPE:
    case FERRY_ECONNABORTED:
    case FERRY_EINCOMPLETE:
    case FERRY_EOF: return true;
    default: return false;
    }
}

/* Whether a retry after delay_ms still ends before the deadline. */
static bool within_deadline(const client_req *r, uint64_t delay_ms)
{
    if (!r->t_total)
        return true;
    uint64_t now = uv_now(r->agent->loop);
    return now + delay_ms < r->deadline_at;
}

/* Another attempt after delay_ms: counted, then queued (at the front: this
 * request has waited its turn already). */
static void retry(client_req *r, uint64_t delay_ms)
{
    r->attempts++;
    r->reused = false;
    r->agent->stats.retries++;
    r->body_started = false;
    r->retry_pending = false;
    r->redirect_pending = false; /* a 3xx cut short: the next attempt decides anew */
    free(r->redirect_to);
    r->redirect_to = NULL;
    if (delay_ms == 0)
        enqueue(r, true);
    else
        backoff(r, delay_ms);
}

/* How an attempt failed: on the socket after sending, or while connecting
 * (nothing was sent). */
enum { AF_SENT, AF_CONNECT };

/* An attempt failed with err; r is off its socket already. */
static void attempt_failed(client_req *r, int err, int how)
{
    ferry_agent *a = r->agent;
    if (r->state == RQ_DONE)
        return;
    r->state = RQ_NEW;
    if (a->closing_abort) {
        complete(r, FERRY_ECLOSING);
        return;
    }
    bool replayable = !(r->x.stream_body && r->body_started);
    if (r->response_delivered || !replayable) {
        complete(r, err);
        return;
    }
    /* The keep-alive race: a reused socket the server closed just as we
     * wrote. Try once more on a fresh socket, outside the retry budget —
     * unless the request is not idempotent and all of it reached the kernel:
     * then the server may have read it and acted (RFC 9110 §9.2.2), so it
     * is not sent twice and the caller learns that it may have been. */
    if (r->reused && !r->x.got_byte && !r->stale_retried && reset_error(err)) {
        if (!r->idempotent && r->x.sent_whole) {
            complete(r, FERRY_EUNANSWERED);
            return;
        }
        r->stale_retried = true;
        r->pe.force_new = true;
        a->stats.stale_retries++;
        retry(r, 0);
        return;
    }
    bool nothing_sent = how == AF_CONNECT && connect_error(err);
    if (r->retries_left && (nothing_sent || (r->idempotent && reset_error(err)))) {
        uint64_t delay = backoff_ms(a, r->attempts - 1);
        if (within_deadline(r, delay)) {
            r->retries_left--;
            retry(r, delay);
            return;
        }
    }
    complete(r, err);
}

/* r was pipelined behind a request that failed and never got an answer:
 * send it again, right behind `lead` (the request before it: in its backoff,
 * or after it in the queue), so the order holds. Returns r, the next lead. */
static client_req *replay(client_req *r, client_req *lead)
{
    ferry_agent *a = r->agent;
    if (r->state == RQ_DONE)
        return lead;
    r->state = RQ_NEW;
    if (a->closing_abort || r->x.got_byte || (r->x.stream_body && r->body_started)) {
        attempt_failed(r, r->x.got_byte ? FERRY_EINCOMPLETE : FERRY_ECONNRESET, AF_SENT);
        return lead;
    }
    if (lead && lead->state == RQ_BACKOFF)
        backoff_until(r, lead->retry_at);
    else if (lead && lead->state == RQ_WAITING)
        enqueue_after(r, lead);
    else
        enqueue(r, true);
    return r;
}

/* ---- pool events ---- */

void request_on_sending(pool_entry *e, client_conn *c, bool reused)
{
    client_req *r = container_of(e, client_req, pe);
    (void) c;
    timeout_disarm(&r->tmo); /* the queue wait is over */
    r->state = RQ_SENT;
    r->reused = reused;
}

void request_on_failed(pool_entry *e, int err)
{
    client_req *r = container_of(e, client_req, pe);
    timeout_disarm(&r->tmo);
    r->tls_reason = e->tls_reason;
    attempt_failed(r, err, AF_CONNECT);
}
/* Retry-After (RFC 9110 §10.2.3): seconds, or an HTTP date. Returns ms, or
 * -1 when absent or unreadable. */
static int64_t retry_after_ms(const parse_head *h)
{
    const parse_field *f = parse_find_field(h, "retry-after", 11);
    if (!f || !f->value_len)
        return -1;
    uint64_t v = 0;
    uint32_t i = 0;
    for (; i < f->value_len && f->value[i] >= '0' && f->value[i] <= '9'; i++) {
        v = v * 10 + (uint64_t) (f->value[i] - '0');
        if (v > 86400 * 365)
            return -1;
    }
    if (i == f->value_len)
        return (int64_t) v * 1000;
    int64_t when;
    if (cookie_parse_date(f->value, f->value_len, &when) == 0) {
        int64_t now = (int64_t) time(NULL);
        return when > now ? (when - now) * 1000 : 0;
    }
    return -1;
}

/* Location (RFC 9110 §10.2.2) resolved against the request's URL, as an
 * absolute URL (allocated: owner, the caller), by RFC 3986 §5.2: absolute
 * URLs, "//authority/path", "/path", "?query" and relative paths (merged
 * with the base's directory; dot segments are left to the server). A
 * fragment is dropped. NULL: nothing to follow (empty, or a scheme other
 * than http and https — the 3xx is then the response). */
static char *resolve_location(const client_req *r, const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == '#') {
            n = i;
            break;
        }
    if (!n)
        return NULL;
    /* a scheme: ALPHA *(ALPHA / DIGIT / "+" / "-" / ".") ":" before any / ? # */
    size_t k = 0;
    while (k < n && (((v[k] | 0x20) >= 'a' && (v[k] | 0x20) <= 'z') ||
                     (k && ((v[k] >= '0' && v[k] <= '9') || v[k] == '+' || v[k] == '-' ||
                            v[k] == '.'))))
        k++;
    bool has_scheme = k && k < n && v[k] == ':';
    if (has_scheme && !((k == 4 && strncasecmp(v, "http", 4) == 0) ||
                        (k == 5 && strncasecmp(v, "https", 5) == 0)))
        return NULL;
    const url_parts *u = &r->url;
    const char *str = r->u->str;
    /* the base's scheme and authority: up to the first / ? # after "://" */
    const char *auth = strstr(str, "://");
    size_t olen = auth ? (size_t) (auth + 3 - str) : 0;
    while (olen < r->u->len && str[olen] != '/' && str[olen] != '?' && str[olen] != '#')
        olen++;
    size_t slen = auth ? (size_t) (auth - str) + 1 : 0; /* "http:" */
    size_t cap = n + r->u->len + u->path.len + 16;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    int len;
    if (has_scheme)
        len = snprintf(out, cap, "%.*s", (int) n, v);
    else if (n >= 2 && v[0] == '/' && v[1] == '/')
        len = snprintf(out, cap, "%.*s%.*s", (int) slen, str, (int) n, v);
    else if (v[0] == '/')
        len = snprintf(out, cap, "%.*s%.*s", (int) olen, str, (int) n, v);
    else if (v[0] == '?')
        len = snprintf(out, cap, "%.*s%.*s%.*s", (int) olen, str, (int) u->path.len, u->path.p,
                       (int) n, v);
    else {
        size_t dir = u->path.len; /* the path up to its last '/' (it starts with one) */
        while (dir > 1 && u->path.p[dir - 1] != '/')
            dir--;
        len = snprintf(out, cap, "%.*s%.*s%.*s", (int) olen, str, (int) dir, u->path.p, (int) n,
                       v);
    }
    if (len < 0 || (size_t) len >= cap) {
        free(out);
        return NULL;
    }
    /* a target that is not a URL at all is the server's fault: hand over the 3xx */
    url_parts check;
    int rc = url_parse(out, (size_t) len, &check);
    if (rc != 0 && rc != FERRY_ENOTSUP) {
        free(out);
        return NULL;
    }
    return out;
}

/* Go where a 3xx pointed: new URL (and perhaps origin), method and body per
 * RFC 9110 §15.4, the request built again, queued at the front. */
static int follow_redirect(client_req *r)
{
    ferry_agent *a = r->agent;
    ferry_request_options o = *r->saved;
    int st = r->redirect_status;
    r->redirect_pending = false;
    bool to_get = st == 303 ? !r->x.is_head
                            : (st == 301 || st == 302) && strcmp(r->method, "POST") == 0;
    if (to_get) {
        r->method = "GET"; /* for this and every later hop */
        r->body_dropped = true;
    }
    const char *method = r->method;
    if (r->body_dropped) {
        o.body = NULL;
        o.body_len = 0;
        o.content_type = NULL;
        o.expect_continue = 0;
    }
    int rc;
    client_url *u = url_get(a, r->redirect_to, &rc);
    if (!u)
        return rc;
    if (u->origin != r->pe.origin)
        r->creds_dropped = true;
    /* credentials the caller gave for one origin do not travel to another */
    ferry_header *kept = NULL;
    if (r->creds_dropped && o.header_count) {
        kept = malloc(o.header_count * sizeof(*kept));
        if (!kept) {
            client_origin *uo = u->origin;
            url_unref(u);
            pool_origin_unref(uo);
            return FERRY_ENOMEM;
        }
        size_t n = 0;
        for (size_t i = 0; i < o.header_count; i++) {
            const ferry_str *nm = &o.headers[i].name;
            if (name_is(nm, "authorization") || name_is(nm, "cookie") || name_is(nm, "host"))
                continue;
            kept[n++] = o.headers[i];
        }
        o.headers = kept;
        o.header_count = n;
    }
    url_unref(r->u);
    pool_origin_unref(r->pe.origin);
    r->u = u;
    r->url = u->parts;
    r->pe.origin = u->origin; /* the reference url_get gave */
    size_t mlen = strlen(method);
    r->x.is_head = mlen == 4 && memcmp(method, "HEAD", 4) == 0;
    r->idempotent = method_idempotent(method, mlen) || o.idempotent;
    r->x.pipelinable = r->idempotent;
    r->x.close_after = false;
    rc = build_wire(r, &o, method);
    free(kept);
    if (rc)
        return rc;
    r->redirects_left--;
    r->nredirects++;
    a->stats.redirects++;
    r->reused = r->body_started = false;
    r->response_delivered = false;
    enqueue(r, true);
    return 0;
}

/* Fill r->res and r->hdrs from the parsed head. Fields point into `base`
 * (the read buffer, or the fetch copy at `copy`). */
static void fill_response(client_req *r, const parse_head *h, const char *base,
                          const char *copy, ferry_header *hs)
{
    const char *to = copy ? copy : base;
    for (uint32_t i = 0; i < h->nfields; i++) {
        hs[i].name.p = to + (h->fields[i].name - base);
        hs[i].name.len = h->fields[i].name_len;
        hs[i].value.p = to + (h->fields[i].value - base);
        hs[i].value.len = h->fields[i].value_len;
    }
    r->res.status = h->status;
    r->res.version_minor = h->version_minor;
    r->res.reason.p = h->reason ? to + (h->reason - base) : NULL;
    r->res.reason.len = h->reason_len;
    r->res.headers = hs;
    r->res.header_count = h->nfields;
    r->res.body.p = NULL;
    r->res.body.len = 0;
    r->res.reused_socket = r->reused;
    r->res.attempts = r->attempts;
    r->res.redirects = r->nredirects;
    r->res.url = (ferry_str){r->u->str, r->u->len};
}

static void store_cookies(client_req *r, const parse_head *h)
{
    ferry_agent *a = r->agent;
    int64_t now = (int64_t) time(NULL);
    for (uint32_t i = 0; i < h->nfields; i++) {
        const parse_field *f = &h->fields[i];
        if (f->name_len == 10 && strncasecmp(f->name, "set-cookie", 10) == 0)
            cookie_jar_set(&a->jar, f->value, f->value_len, r->url.host.p, r->url.host.len,
                           r->url.path.p, r->url.path.len, 0, now);
    }
}

/* A final response head arrived for r on c. */
static void on_head(client_exchange *x, const parse_head *h, const char *base, size_t head_len)
{
    client_req *r = container_of(x, client_req, x);
    ferry_agent *a = r->agent;
    if (a->have_jar)
        store_cookies(r, h);
    /* a redirect to follow: drain this response, then go there */
    int st = h->status;
    if (r->redirects_left && (st == 301 || st == 302 || st == 303 || st == 307 || st == 308)) {
        const parse_field *loc = parse_find_field(h, "location", 8);
        char *to = loc ? resolve_location(r, loc->value, loc->value_len) : NULL;
        if (to) {
            free(r->redirect_to);
            r->redirect_to = to;
            r->redirect_pending = true;
            r->redirect_status = st;
            return;
        }
    }
    /* a retryable status: drain this response, then try again */
    if ((st == 502 || st == 503 || st == 504 || st == 429) && r->retries_left && r->idempotent &&
        !(r->x.stream_body && r->body_started)) {
        int64_t ra = retry_after_ms(h);
        uint64_t delay = ra >= 0 ? (uint64_t) ra : backoff_ms(a, r->attempts - 1);
        if ((ra < 0 || (uint64_t) ra <= a->opt.retry_max_delay_ms) && within_deadline(r, delay)) {
            r->retry_pending = true;
            r->retry_delay = delay;
            return;
        }
    }
    if (r->fetch) {
        size_t hl = head_len;
        char *copy = malloc(hl ? hl : 1);
        ferry_header *hs = malloc((h->nfields ? h->nfields : 1) * sizeof(*hs));
        if (!copy || !hs) {
            free(copy);
            free(hs);
            complete(r, FERRY_ENOMEM);
            return;
        }
        free(r->hdrs);
        r->hdrs = hs;
        fill_response(r, h, base, copy, hs);
        memcpy(copy, base, hl);
        free(r->head_copy);
        r->head_copy = copy;
        r->response_delivered = true;
        if ((h->flags & PARSE_F_CONTENT_LENGTH) && h->content_length > r->fetch_max)
            complete(r, FERRY_EBODYTOOBIG); /* refused before a byte of it */
        return;
    }
    /* streamed: the headers live in the read buffer until on_response
     * returns, and callbacks never nest, so one array serves the agent */
    if (!a->hdrs && !(a->hdrs = malloc(a->opt.max_headers * sizeof(*a->hdrs)))) {
        complete(r, FERRY_ENOMEM);
        return;
    }
    fill_response(r, h, base, NULL, a->hdrs);
    r->response_delivered = true;
    if (r->cb.on_response)
        r->cb.on_response(r, &r->res, r->data);
}

/* Body bytes of the response to r. */
static void on_body(client_exchange *x, const char *p, size_t n)
{
    client_req *r = container_of(x, client_req, x);
    if (r->retry_pending || r->redirect_pending || r->state == RQ_DONE)
        return; /* drained */
    if (r->fetch) {
        if (r->fetch_len + n > r->fetch_max) {
            complete(r, FERRY_EBODYTOOBIG);
            return;
        }
        if (buf_reserve(&r->fetch_buf, &r->fetch_cap, r->fetch_len + n, 4096) < 0) {
            complete(r, FERRY_ENOMEM);
            return;
        }
        memcpy(r->fetch_buf + r->fetch_len, p, n);
        r->fetch_len += n;
        return;
    }
    if (r->cb.on_data)
        r->cb.on_data(r, p, n, r->data);
}

/* The response to r ended (r is off its socket): done, or retried. */
static void on_end(client_exchange *x)
{
    client_req *r = container_of(x, client_req, x);
    if (r->state == RQ_DONE)
        return;
    if (r->retry_pending) {
        r->retries_left--;
        r->state = RQ_NEW;
        retry(r, r->retry_delay);
        return;
    }
    if (r->redirect_pending) {
        int err = follow_redirect(r);
        if (err == 0)
            return;
        complete(r, err);
        return;
    }
    r->state = RQ_DONE;
    r->final_status = 0;
    timeout_disarm(&r->t_deadline);
    deliver_done(r);
}

/* ---- exchange events ---- */

static client_exchange *on_failed(client_exchange *x, int err)
{
    client_req *r = container_of(x, client_req, x);
    attempt_failed(r, err, AF_SENT);
    return x;
}

static client_exchange *on_replay(client_exchange *x, client_exchange *lead)
{
    client_req *r = container_of(x, client_req, x);
    client_req *l = replay(r, lead ? container_of(lead, client_req, x) : NULL);
    return l ? &l->x : NULL;
}

/* this attempt's socket wants the streamed body */
static void on_body_ready(client_exchange *x)
{
    client_req *r = container_of(x, client_req, x);
    r->body_started = true;
    r->stream_sent = 0;
    if (r->cb.on_body_ready)
        r->cb.on_body_ready(r, r->data);
}

static void on_writes_due(client_exchange *x, uint64_t flushed)
{
    client_req *r = container_of(x, client_req, x);
    write_waiter w;
    while (r->state != RQ_DONE && waiters_pop(&x->waiters, flushed, false, &w))
        if (w.cb)
            ((ferry_client_write_cb) w.cb)(r, 0, w.data);
}

static void on_timeout(client_exchange *x, int err)
{
    client_req *r = container_of(x, client_req, x);
    if (err == FERRY_EBODYTIMEOUT)
        r->agent->stats.timeouts_body++;
    else
        r->agent->stats.timeouts_headers++;
    complete(r, err);
}

const exchange_events request_exchange_events = {
    .head = on_head,
    .body = on_body,
    .end = on_end,
    .failed = on_failed,
    .replay = on_replay,
    .body_ready = on_body_ready,
    .writes_due = on_writes_due,
    .timeout = on_timeout,
};

/* ---- request timeouts ---- */

static void on_queue_timeout(timeout_entry *e)
{
    client_req *r = container_of(e, client_req, tmo);
    if (r->state != RQ_WAITING)
        return;
    r->agent->stats.timeouts_queue++;
    complete(r, FERRY_EQUEUETIMEOUT);
}

static void on_deadline(timeout_entry *e)
{
    client_req *r = container_of(e, client_req, t_deadline);
    r->agent->stats.timeouts_total++;
    complete(r, FERRY_EDEADLINE);
}

/* ---- public calls on a request ---- */

void ferry_request_abort(ferry_client_req *r)
{
    if (!r || r->state == RQ_DONE)
        return;
    complete(r, FERRY_EABORTED);
}

ferry_tls_verify_reason ferry_client_req_tls_verify_reason(const ferry_client_req *r)
{
    return r ? (ferry_tls_verify_reason) r->tls_reason : FERRY_TLS_VERIFY_OK;
}

uint32_t ferry_client_req_attempts(const ferry_client_req *r)
{
    return r ? r->attempts : 0;
}

void ferry_client_req_pause(ferry_client_req *r)
{
    if (r)
        r->x.paused = true;
}

void ferry_client_req_resume(ferry_client_req *r)
{
    if (!r || !r->x.paused)
        return;
    r->x.paused = false;
    if (r->x.conn && r->state == RQ_SENT)
        conn_resume(r->x.conn);
}

int ferry_client_req_write(ferry_client_req *r, const void *buf, size_t len,
                           ferry_client_write_cb cb, void *data)
{
    if (!r || !r->x.stream_body || r->x.body_ended || (len && !buf))
        return FERRY_EINVAL;
    client_conn *c = r->x.conn;
    if (r->state != RQ_SENT || !c || !r->body_started)
        return FERRY_ENOTCONN;
    if (r->stream_len != UINT64_MAX && r->stream_sent + len > r->stream_len)
        return FERRY_EINVAL;
    if (cb && waiters_reserve(&r->x.waiters) < 0)
        return FERRY_ENOMEM;
    r->stream_sent += len;
    if (conn_write_body(c, &r->x, buf, len, false) < 0)
        return FERRY_ENOMEM; /* appending failed and took the socket down */
    if (cb)
        waiters_push(&r->x.waiters, c->t.queued_total, (waiter_fn) cb, data);
    conn_touch(c, &r->x); /* the upload is progress: the response clock starts again */
    conn_flush(c);        /* a failure here reaches cb through the request's end */
    return 0;
}

int ferry_client_req_end_body(ferry_client_req *r)
{
    if (!r || !r->x.stream_body || r->x.body_ended)
        return FERRY_EINVAL;
    client_conn *c = r->x.conn;
    if (r->state != RQ_SENT || !c || !r->body_started)
        return FERRY_ENOTCONN;
    if (r->stream_len != UINT64_MAX && r->stream_sent != r->stream_len)
        return FERRY_EINVAL;
    if (conn_write_body(c, &r->x, NULL, 0, true) < 0)
        return FERRY_ENOMEM;
    conn_touch(c, &r->x);
    conn_flush(c);
    return 0;
}

/* ---- forms ---- */

/* Allocates *out (owner: the caller, who frees it). */
int ferry_form_encode(const char *const *pairs, size_t npairs, char **out, size_t *out_len)
{
    if (!out)
        return FERRY_EINVAL;
    *out = NULL;
    size_t need = 0;
    int rc = url_form_encode(pairs, npairs, NULL, 0, &need);
    if (rc != 0 && rc != FERRY_ENOBUFS)
        return rc;
    char *s = malloc(need + 1);
    if (!s)
        return FERRY_ENOMEM;
    rc = url_form_encode(pairs, npairs, s, need + 1, &need);
    if (rc != 0) {
        free(s);
        return rc;
    }
    *out = s;
    if (out_len)
        *out_len = need;
    return 0;
}
