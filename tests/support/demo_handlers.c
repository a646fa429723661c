/* demo_handlers.c — the request handlers the server tests talk to, chosen by
 * path (the list is in server_harness.h). They run on the loop thread.
 *
 * Every request that enters here is counted in demo.outstanding and counted
 * out right after it is ended, so harness_stop() can wait until the last one
 * finished before it frees the server. Every timer a handler starts is closed
 * (its context is freed in the close callback), so the loop closes clean.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "support/harness_internal.h"

enum { BIG_PIECE = 64 * 1024, REAPER_MS = 10 };

uint32_t harness_fnv1a(uint32_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 16777619u;
    }
    return h;
}

void demo_request_done(harness *h)
{
    h->demo.outstanding--;
}

/* True if the request path is exactly p: routes are matched whole. */
static bool path_is(const ferry_req *req, const char *p)
{
    ferry_str s = ferry_req_path(req);
    return s.len == strlen(p) && s.p && memcmp(s.p, p, s.len) == 0;
}

/* A decimal query parameter (?key=N), or dflt: routes take their sizes from it. */
static uint64_t query_u64(const ferry_req *req, const char *key, uint64_t dflt)
{
    ferry_str q = ferry_req_query(req);
    size_t klen = strlen(key);
    const char *p = q.p, *end = q.p ? q.p + q.len : NULL;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t) (end - p));
        const char *e = amp ? amp : end;
        if ((size_t) (e - p) > klen && memcmp(p, key, klen) == 0 && p[klen] == '=') {
            uint64_t v = 0;
            for (const char *d = p + klen + 1; d < e && *d >= '0' && *d <= '9'; d++)
                v = v * 10 + (uint64_t) (*d - '0');
            return v;
        }
        p = amp ? amp + 1 : end;
    }
    return dflt;
}

/* Answer and count the request out: every route ends through here or finish_end. */
static void finish_send(harness *h, ferry_res *res, int status, const char *ctype, const void *body,
                        size_t len)
{
    ferry_res_send(res, status, ctype, body, len);
    demo_request_done(h);
}

/* End a response whose status/body were already given (or that was aborted). */
static void finish_end(harness *h, ferry_res *res)
{
    ferry_res_end(res);
    demo_request_done(h);
}

/* Body errors ferry answers itself (413, 408) or that leave no one to answer:
 * the handler only ends the response. Others (bad framing) get the demo's 400. */
static bool body_error_needs_no_answer(ferry_res *res, int status)
{
    return status == FERRY_EBODYTOOBIG || status == FERRY_EREQUESTTIMEOUT ||
           status == FERRY_EHEADERSTIMEOUT || status == FERRY_EIDLETIMEOUT ||
           status == FERRY_ETIMEDOUT || status == FERRY_ECONNRESET || status == FERRY_EOF ||
           status == FERRY_ECANCELED || status == FERRY_ECLOSING || ferry_res_aborted(res);
}

/* uv_close callback for handles embedded at the start of a malloc'd context. */
static void free_ctx_on_close(uv_handle_t *hd)
{
    free(hd->data);
}

/* ---- /echo ---------------------------------------------------------------- */

typedef struct echo_ctx {
    harness *h;
    ferry_req *req;
    ferry_res *res;
    uint64_t max;
    bool timer_init;
    uv_timer_t timer;
    char ctype[128];
} echo_ctx;

/* Release an echo context: through the timer's close callback if it has one. */
static void echo_free(echo_ctx *e)
{
    if (e->timer_init) {
        e->timer.data = e;
        uv_close((uv_handle_t *) &e->timer, free_ctx_on_close);
    } else {
        free(e);
    }
}

/* The whole body arrived (or failed): send it back. */
static void echo_body(ferry_req *req, int status, const char *body, size_t len, void *data)
{
    (void) req;
    echo_ctx *e = data;
    if (status == 0) {
        finish_send(e->h, e->res, 200, e->ctype[0] ? e->ctype : "application/octet-stream", body,
                    len);
    } else if (body_error_needs_no_answer(e->res, status)) {
        finish_end(e->h, e->res);
    } else {
        char msg[96];
        int n = snprintf(msg, sizeof(msg), "body error %s\n", ferry_err_name(status));
        finish_send(e->h, e->res, 400, "text/plain", msg, (size_t) n);
    }
    echo_free(e);
}

/* Start the buffered read (now, or after ?wait_ms). */
static void echo_read(echo_ctx *e)
{
    int rc = ferry_req_read_body(e->req, e->max, echo_body, e);
    if (rc < 0) {
        char msg[96];
        int n = snprintf(msg, sizeof(msg), "read_body %s\n", ferry_err_name(rc));
        finish_send(e->h, e->res, 500, "text/plain", msg, (size_t) n);
        echo_free(e);
    }
}

/* ?wait_ms elapsed: start reading (this is when 100 Continue may go out). */
static void echo_wait_done(uv_timer_t *t)
{
    echo_read(t->data);
}

/* /echo: remember the Content-Type, then read the body (maybe after a wait). */
static void route_echo(harness *h, ferry_req *req, ferry_res *res)
{
    echo_ctx *e = calloc(1, sizeof(*e));
    e->h = h;
    e->req = req;
    e->res = res;
    e->max = query_u64(req, "max", 0);
    ferry_str ct = ferry_req_header(req, "content-type");
    if (ct.p && ct.len < sizeof(e->ctype)) {
        memcpy(e->ctype, ct.p, ct.len);
        e->ctype[ct.len] = '\0';
    }
    uint64_t wait = query_u64(req, "wait_ms", 0);
    if (wait == 0) {
        echo_read(e);
        return;
    }
    uv_timer_init(&h->loop, &e->timer);
    e->timer_init = true;
    e->timer.data = e;
    uv_timer_start(&e->timer, echo_wait_done, wait, 0);
}

/* ---- /stream -------------------------------------------------------------- */

typedef struct stream_ctx {
    harness *h;
    ferry_req *req;
    ferry_res *res;
    uv_timer_t timer; /* resumes reading after a pause */
    uint64_t hold_ms;
    uint64_t bytes;
    uint32_t hash;
    bool held, paused;
} stream_ctx;

/* The pause is over: let the client's bytes flow again. */
static void stream_resume(uv_timer_t *t)
{
    stream_ctx *s = t->data;
    s->paused = false;
    ferry_req_resume(s->req);
}

/* Each piece: digest it and pause; the end: answer "<bytes> <fnv hex>". */
static void stream_data(ferry_req *req, int status, const char *buf, size_t len, void *data)
{
    stream_ctx *s = data;
    if (status == 0) {
        s->bytes += len;
        s->hash = harness_fnv1a(s->hash, buf, len);
        if (!s->paused) {
            ferry_req_pause(req);
            s->paused = true;
            uint64_t ms = !s->held ? s->hold_ms : 0;
            s->held = true;
            uv_timer_start(&s->timer, stream_resume, ms, 0);
        }
        return;
    }
    uv_timer_stop(&s->timer);
    if (status == FERRY_EOF) {
        char msg[64];
        int n = snprintf(msg, sizeof(msg), "%" PRIu64 " %08" PRIx32, s->bytes, s->hash);
        finish_send(s->h, s->res, 200, "text/plain", msg, (size_t) n);
    } else if (body_error_needs_no_answer(s->res, status)) {
        finish_end(s->h, s->res);
    } else {
        char msg[96];
        int n = snprintf(msg, sizeof(msg), "stream error %s\n", ferry_err_name(status));
        finish_send(s->h, s->res, 400, "text/plain", msg, (size_t) n);
    }
    uv_close((uv_handle_t *) &s->timer, free_ctx_on_close);
}

/* /stream: streamed body with pause/resume after every piece. */
static void route_stream(harness *h, ferry_req *req, ferry_res *res)
{
    stream_ctx *s = calloc(1, sizeof(*s));
    s->h = h;
    s->req = req;
    s->res = res;
    s->hold_ms = query_u64(req, "hold_ms", 0);
    s->hash = 2166136261u;
    uv_timer_init(&h->loop, &s->timer);
    s->timer.data = s;
    int rc = ferry_req_on_data(req, stream_data, s);
    if (rc < 0) {
        finish_send(h, res, 500, "text/plain", "on_data failed\n", 15);
        uv_close((uv_handle_t *) &s->timer, free_ctx_on_close);
    }
}

/* ---- /slow ---------------------------------------------------------------- */

typedef struct slow_ctx {
    harness *h;
    ferry_res *res;
    uv_timer_t timer;
    size_t len;
    char body[256];
} slow_ctx;

/* The delay passed: answer, then close the timer (the context goes with it). */
static void slow_fire(uv_timer_t *t)
{
    slow_ctx *s = t->data;
    finish_send(s->h, s->res, 200, "text/plain", s->body, s->len);
    uv_close((uv_handle_t *) t, free_ctx_on_close);
}

/* /slow?ms=N: answer "slow <query>" after N ms without blocking the loop. */
static void route_slow(harness *h, ferry_req *req, ferry_res *res)
{
    slow_ctx *s = calloc(1, sizeof(*s));
    s->h = h;
    s->res = res;
    ferry_str q = ferry_req_query(req);
    size_t ql = q.p && q.len < 200 ? q.len : 0;
    memcpy(s->body, "slow ", 5);
    if (ql) memcpy(s->body + 5, q.p, ql);
    s->len = 5 + ql;
    uv_timer_init(&h->loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, slow_fire, query_u64(req, "ms", 100), 0);
}

/* ---- /chunked, /big, /bigsend ---------------------------------------------- */

/* /chunked?n=K: K writes without Content-Length, so the response is chunked. */
static void route_chunked(harness *h, ferry_req *req, ferry_res *res)
{
    uint64_t n = query_u64(req, "n", 3);
    ferry_res_set_status(res, 200);
    ferry_res_set_header(res, "Content-Type", "text/plain");
    for (uint64_t i = 0; i < n; i++) {
        char piece[32];
        int len = snprintf(piece, sizeof(piece), "chunk %" PRIu64 "\n", i);
        ferry_res_write(res, piece, (size_t) len, NULL, NULL);
    }
    finish_end(h, res);
}

/* Fill p with the pattern bytes at offsets [off, off+n): bodies the client can verify. */
static void fill_pattern(char *p, size_t n, uint64_t off)
{
    for (size_t i = 0; i < n; i++)
        p[i] = harness_pattern(off + i);
}

typedef struct big_ctx {
    harness *h;
    ferry_res *res;
    uint64_t total, sent;
    char piece[BIG_PIECE];
} big_ctx;

static void big_next(big_ctx *b);

/* A piece reached the kernel: write the next (backpressure), or stop on error. */
static void big_written(ferry_res *res, int status, void *data)
{
    (void) res;
    big_ctx *b = data;
    if (status < 0) {
        finish_end(b->h, b->res);
        free(b);
        return;
    }
    big_next(b);
}

/* Write the next piece, or end the response when all are out. */
static void big_next(big_ctx *b)
{
    if (b->sent == b->total) {
        finish_end(b->h, b->res);
        free(b);
        return;
    }
    uint64_t left = b->total - b->sent;
    size_t n = left < BIG_PIECE ? (size_t) left : BIG_PIECE;
    fill_pattern(b->piece, n, b->sent);
    b->sent += n;
    if (ferry_res_write(b->res, b->piece, n, big_written, b) < 0) {
        finish_end(b->h, b->res);
        free(b);
    }
}

/* /big?bytes=N[&chunked=1]: a large body written one piece per write callback. */
static void route_big(harness *h, ferry_req *req, ferry_res *res)
{
    big_ctx *b = malloc(sizeof(*b));
    b->h = h;
    b->res = res;
    b->total = query_u64(req, "bytes", 1 << 20);
    b->sent = 0;
    ferry_res_set_status(res, 200);
    ferry_res_set_header(res, "Content-Type", "application/octet-stream");
    if (!query_u64(req, "chunked", 0)) {
        char cl[32];
        snprintf(cl, sizeof(cl), "%" PRIu64, b->total);
        ferry_res_set_header(res, "Content-Length", cl);
    }
    big_next(b);
}

/* /bigsend?bytes=N: the whole body in one ferry_res_send, ended before it is flushed. */
static void route_bigsend(harness *h, ferry_req *req, ferry_res *res)
{
    uint64_t n = query_u64(req, "bytes", 1 << 20);
    char *p = malloc(n ? (size_t) n : 1);
    fill_pattern(p, (size_t) n, 0);
    finish_send(h, res, 200, "application/octet-stream", p, (size_t) n);
    free(p);
}

/* ---- /cpu ------------------------------------------------------------------ */

typedef struct cpu_ctx {
    harness *h;
    uint64_t ms;
    uint64_t sink;
} cpu_ctx;

/* On the thread pool: spin for ms of wall time (a CPU-bound handler). */
static void cpu_work(void *data)
{
    cpu_ctx *c = data;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t sink = 0;
    int64_t elapsed_ms;
    do {
        for (int i = 0; i < 10000; i++)
            sink += (uint64_t) i * 2654435761u;
        clock_gettime(CLOCK_MONOTONIC, &t);
        elapsed_ms = ((int64_t) (t.tv_sec - t0.tv_sec) * 1000000000LL + (t.tv_nsec - t0.tv_nsec)) /
                     1000000LL;
    } while (elapsed_ms < (int64_t) c->ms);
    c->sink = sink; /* keeps the loop from being optimised away */
}

/* Back on the loop: answer (or just end if the server was destroyed meanwhile). */
static void cpu_after(ferry_res *res, int status, void *data)
{
    cpu_ctx *c = data;
    if (status == 0)
        finish_send(c->h, res, 200, "text/plain", "cpu", 3);
    else
        finish_end(c->h, res);
    free(c);
}

/* /cpu?ms=N: burn N ms through ferry_res_offload. */
static void route_cpu(harness *h, ferry_req *req, ferry_res *res)
{
    cpu_ctx *c = malloc(sizeof(*c));
    c->h = h;
    c->ms = query_u64(req, "ms", 100);
    if (ferry_res_offload(res, cpu_work, cpu_after, c) < 0) {
        free(c);
        finish_send(h, res, 500, "text/plain", "offload failed\n", 15);
    }
}

/* ---- /noanswer ------------------------------------------------------------- */

/* Every REAPER_MS: end the /noanswer requests whose connection is gone. */
static void reaper_tick(uv_timer_t *t)
{
    harness *h = t->data;
    demo_pending **pp = &h->demo.noanswer;
    while (*pp) {
        demo_pending *p = *pp;
        if (ferry_res_aborted(p->res)) {
            *pp = p->next;
            h->demo.noanswer_count--;
            finish_end(h, p->res);
            free(p);
        } else {
            pp = &p->next;
        }
    }
    if (!h->demo.noanswer) uv_timer_stop(t);
}

/* /noanswer: park the request; see the header for what ends it. */
static void route_noanswer(harness *h, ferry_res *res)
{
    demo_pending *p = malloc(sizeof(*p));
    p->res = res;
    p->next = h->demo.noanswer;
    h->demo.noanswer = p;
    h->demo.noanswer_count++;
    if (!h->demo.reaper_init) {
        uv_timer_init(&h->loop, &h->demo.reaper);
        h->demo.reaper.data = h;
        h->demo.reaper_init = true;
    }
    if (!uv_is_active((uv_handle_t *) &h->demo.reaper))
        uv_timer_start(&h->demo.reaper, reaper_tick, REAPER_MS, REAPER_MS);
}

void demo_release_noanswer(harness *h)
{
    while (h->demo.noanswer) {
        demo_pending *p = h->demo.noanswer;
        h->demo.noanswer = p->next;
        h->demo.noanswer_count--;
        finish_send(h, p->res, 200, "text/plain", "released", 8);
        free(p);
    }
    if (h->demo.reaper_init) uv_timer_stop(&h->demo.reaper);
}

void demo_close_handles(harness *h)
{
    if (h->demo.reaper_init) {
        uv_close((uv_handle_t *) &h->demo.reaper, NULL);
        h->demo.reaper_init = false;
    }
}

/* ---- dispatch -------------------------------------------------------------- */

void demo_handle(ferry_req *req, ferry_res *res, void *data)
{
    harness *h = data ? data : harness_self();
    h->demo.outstanding++;
    if (path_is(req, "/echo"))
        route_echo(h, req, res);
    else if (path_is(req, "/stream"))
        route_stream(h, req, res);
    else if (path_is(req, "/slow"))
        route_slow(h, req, res);
    else if (path_is(req, "/chunked"))
        route_chunked(h, req, res);
    else if (path_is(req, "/big"))
        route_big(h, req, res);
    else if (path_is(req, "/bigsend"))
        route_bigsend(h, req, res);
    else if (path_is(req, "/cpu"))
        route_cpu(h, req, res);
    else if (path_is(req, "/noanswer"))
        route_noanswer(h, res);
    else
        finish_send(h, res, 200, "text/plain", "hello, world", 12);
}
