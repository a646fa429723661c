/* client_support.c — loop helpers, the request recorder and the clean
 * teardown of client_support.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "support/client_support.h"
#include "support/server_harness.h"

/* ---- loop ------------------------------------------------------------------ */

uv_loop_t *cs_loop_new(void)
{
    uv_loop_t *loop = malloc(sizeof(*loop));
    assert_non_null(loop);
    assert_int_equal(uv_loop_init(loop), 0);
    return loop;
}

/* uv_walk: name an open handle and close it, so the report is complete. */
static void note_open(uv_handle_t *h, void *arg)
{
    char *out = arg;
    size_t n = strlen(out);
    if (n < 400)
        snprintf(out + n, 512 - n, "%s%s%s%s", n ? ", " : "", uv_handle_type_name(h->type),
                 uv_is_active(h) ? "(active)" : "", uv_is_closing(h) ? "(closing)" : "");
}

void cs_loop_finish(uv_loop_t *loop)
{
    double end = now_ms() + 5000;
    while (uv_loop_alive(loop) && now_ms() < end) {
        uv_run(loop, UV_RUN_NOWAIT);
        if (uv_loop_alive(loop)) sleep_ms(1);
    }
    uv_run(loop, UV_RUN_NOWAIT);
    int rc = uv_loop_close(loop);
    if (rc != 0) {
        char open_handles[512] = "";
        uv_walk(loop, note_open, open_handles);
        /* The loop is leaked on purpose: its handles belong to the failed test. */
        fail_msg("uv_loop_close: %s; still open: %s", uv_err_name(rc),
                 open_handles[0] ? open_handles : "(no handle: an active request)");
    }
    free(loop);
}

typedef struct waiter {
    const int *counter;
    int target;
    bool (*pred)(void *arg);
    void *arg;
    bool timed_out;
    uv_prepare_t prepare; /* before the poll: a condition met by a close callback */
    uv_check_t check;     /* after the poll: a condition met by an I/O callback */
    uv_timer_t poll;
    uv_timer_t watchdog;
} waiter;

static bool waiter_met(waiter *w)
{
    return w->pred ? w->pred(w->arg) : *w->counter >= w->target;
}

static void on_wait_check(uv_check_t *c)
{
    waiter *w = c->data;
    if (waiter_met(w)) uv_stop(c->loop);
}

static void on_wait_prepare(uv_prepare_t *p)
{
    waiter *w = p->data;
    if (waiter_met(w)) uv_stop(p->loop); /* the poll then does not block */
}

static void on_wait_poll(uv_timer_t *t)
{
    waiter *w = t->data;
    if (waiter_met(w)) uv_stop(t->loop);
}

static void on_wait_watchdog(uv_timer_t *t)
{
    waiter *w = t->data;
    w->timed_out = true;
    uv_stop(t->loop);
}

static bool run_waiter(uv_loop_t *loop, waiter *w, int timeout_ms)
{
    if (waiter_met(w)) return true;
    uv_check_init(loop, &w->check);
    w->check.data = w;
    uv_check_start(&w->check, on_wait_check);
    uv_unref((uv_handle_t *) &w->check);
    uv_prepare_init(loop, &w->prepare);
    w->prepare.data = w;
    uv_prepare_start(&w->prepare, on_wait_prepare);
    uv_unref((uv_handle_t *) &w->prepare);
    uv_timer_init(loop, &w->watchdog);
    w->watchdog.data = w;
    uv_timer_start(&w->watchdog, on_wait_watchdog, (uint64_t) timeout_ms, 0);
    bool polling = w->pred != NULL;
    if (polling) {
        uv_timer_init(loop, &w->poll);
        w->poll.data = w;
        uv_timer_start(&w->poll, on_wait_poll, 1, 1);
    }
    while (!waiter_met(w) && !w->timed_out)
        uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *) &w->check, NULL);
    uv_close((uv_handle_t *) &w->prepare, NULL);
    uv_close((uv_handle_t *) &w->watchdog, NULL);
    if (polling) uv_close((uv_handle_t *) &w->poll, NULL);
    uv_run(loop, UV_RUN_NOWAIT); /* the closes complete before w goes out of scope */
    return waiter_met(w);
}

bool cs_run_until(uv_loop_t *loop, const int *counter, int target, int timeout_ms)
{
    waiter w;
    memset(&w, 0, sizeof(w));
    w.counter = counter;
    w.target = target;
    return run_waiter(loop, &w, timeout_ms);
}

bool cs_run_until_fn(uv_loop_t *loop, bool (*pred)(void *arg), void *arg, int timeout_ms)
{
    waiter w;
    memset(&w, 0, sizeof(w));
    w.pred = pred;
    w.arg = arg;
    return run_waiter(loop, &w, timeout_ms);
}

static bool never(void *arg)
{
    (void) arg;
    return false;
}

void cs_run_for(uv_loop_t *loop, int ms)
{
    waiter w;
    memset(&w, 0, sizeof(w));
    w.pred = never;
    run_waiter(loop, &w, ms);
}

static void on_agent_closed(ferry_agent *a, void *data)
{
    (void) a;
    (*(int *) data)++;
}

void cs_agent_finish(uv_loop_t *loop, ferry_agent *a, int abort_active)
{
    int closed = 0;
    ferry_agent_close(a, abort_active, on_agent_closed, &closed);
    if (closed != 0) fail_msg("ferry_agent_close ran its callback inside the call");
    if (!cs_run_until(loop, &closed, 1, 10000)) {
        ferry_agent_stats st;
        ferry_agent_stats_get(a, &st);
        fail_msg("ferry_agent_close: no callback within 10 s (active %llu, idle %llu, queued "
                 "%llu)",
                 (unsigned long long) st.sockets_active, (unsigned long long) st.sockets_idle,
                 (unsigned long long) st.queued);
    }
    cs_run_for(loop, 5); /* a second callback would show here */
    if (closed != 1) fail_msg("the agent's close callback ran %d times", closed);
    int rc = ferry_agent_free(a);
    if (rc != 0) fail_msg("ferry_agent_free after the close callback: %s", ferry_err_name(rc));
}

ferry_agent *cs_agent_new(uv_loop_t *loop, const ferry_agent_options *ao)
{
    ferry_agent *a;
    int rc = ferry_agent_new(loop, ao, &a);
    if (rc != 0) fail_msg("ferry_agent_new: %s", ferry_err_name(rc));
    return a;
}

void cs_client_finish(uv_loop_t *loop, ferry_agent *a)
{
    cs_agent_finish(loop, a, 0);
    cs_loop_finish(loop);
}

ferry_agent_stats cs_stats(const ferry_agent *a)
{
    ferry_agent_stats st;
    ferry_agent_stats_get(a, &st);
    return st;
}

/* ---- the recorder ---------------------------------------------------------- */

static void rec_response(ferry_client_req *req, const ferry_response *r, void *data)
{
    cs_result *x = data;
    (void) req;
    x->responses++;
    x->http_status = r->status;
    x->attempts = r->attempts;
    x->reused = r->reused_socket;
    if (x->want_header) {
        ferry_str v = ferry_response_header(r, x->want_header);
        if (v.p) snprintf(x->first_header, sizeof(x->first_header), "%.*s", (int) v.len, v.p);
    }
}

static void rec_append(cs_result *x, const char *buf, size_t len)
{
    if (x->body_len < sizeof(x->body) - 1) {
        size_t room = sizeof(x->body) - 1 - x->body_len;
        memcpy(x->body + x->body_len, buf, len < room ? len : room);
        x->body[x->body_len + (len < room ? len : room)] = '\0';
    }
    x->body_len += len;
}

static void rec_data(ferry_client_req *req, const char *buf, size_t len, void *data)
{
    cs_result *x = data;
    (void) req;
    x->data_calls++;
    rec_append(x, buf, len);
}

static void rec_done(ferry_client_req *req, int status, void *data)
{
    cs_result *x = data;
    (void) req;
    x->done++;
    x->status = status;
    x->t_done = now_ms();
    if (x->counter) (*x->counter)++;
}

const ferry_request_callbacks cs_callbacks = {rec_response, rec_data, rec_done, NULL};
const ferry_request_callbacks cs_callbacks_drain = {rec_response, NULL, rec_done, NULL};

int cs_request(ferry_agent *a, const ferry_request_options *o, cs_result *r, bool drain)
{
    r->t_start = now_ms();
    return ferry_request(a, o, drain ? &cs_callbacks_drain : &cs_callbacks, r, &r->req);
}

/* The request's own counter, so the caller's cs_result needs none set. */
void cs_run_request(uv_loop_t *loop, ferry_agent *a, const ferry_request_options *o, cs_result *r,
                    int timeout_ms)
{
    int done = 0;
    r->counter = &done;
    assert_int_equal(cs_request(a, o, r, false), 0);
    if (!cs_run_until(loop, &done, 1, timeout_ms))
        fail_msg("the request did not end within %d ms", timeout_ms);
    r->counter = NULL;
}

static void rec_fetch(ferry_client_req *req, int status, const ferry_response *resp, void *data)
{
    cs_result *x = data;
    if (resp) {
        rec_response(req, resp, data);
        if (resp->body.len) rec_append(x, resp->body.p, resp->body.len);
    }
    rec_done(req, status, data);
}

int cs_fetch(ferry_agent *a, const ferry_request_options *o, uint64_t max_body, cs_result *r)
{
    r->t_start = now_ms();
    return ferry_fetch(a, o, max_body, rec_fetch, r, &r->req);
}

const char *cs_url(int port, const char *path)
{
    static char slots[8][256];
    static int next;
    char *s = slots[next++ % 8];
    snprintf(s, 256, "http://127.0.0.1:%d%s", port, path);
    return s;
}

ferry_request_options cs_opts(const char *method, const char *url)
{
    ferry_request_options o;
    ferry_request_options_init(&o);
    o.method = method;
    o.url = url;
    return o;
}

void cs_assert_done_at(const cs_result *r, int want, const char *file, int line)
{
    if (r->done != 1)
        fail_msg("%s:%d: request %d: on_done ran %d times, expected once", file, line, r->id,
                 r->done);
    if (r->status != want)
        fail_msg("%s:%d: request %d ended with %s (%s), expected %s (HTTP status %d, "
                 "on_response %d times, %zu body bytes)",
                 file, line, r->id, ferry_err_name(r->status), ferry_strerror(r->status),
                 want ? ferry_err_name(want) : "0", r->http_status, r->responses, r->body_len);
}

void cs_print_stats(const char *label, const ferry_agent *a)
{
    ferry_agent_stats s;
    ferry_agent_stats_get(a, &s);
    print_message("%s: requests %llu completed %llu failed %llu opened %llu reused %llu retries "
                  "%llu stale_retries %llu stale_detected %llu idle_closed %llu queued %llu "
                  "active %llu idle %llu\n",
                  label, (unsigned long long) s.requests, (unsigned long long) s.completed,
                  (unsigned long long) s.failed, (unsigned long long) s.connections_opened,
                  (unsigned long long) s.sockets_reused, (unsigned long long) s.retries,
                  (unsigned long long) s.stale_retries, (unsigned long long) s.stale_detected,
                  (unsigned long long) s.idle_closed, (unsigned long long) s.queued,
                  (unsigned long long) s.sockets_active, (unsigned long long) s.sockets_idle);
}

/* ---- the inspect handler ----------------------------------------------------- */

typedef struct inspect_ctx {
    char head[2048];
    size_t n;
} inspect_ctx;

static void inspect_add(inspect_ctx *x, const char *name, ferry_str v)
{
    int w = snprintf(x->head + x->n, sizeof(x->head) - x->n, "%s: %.*s\n", name, (int) v.len,
                     v.p ? v.p : "");
    if (w > 0 && x->n + (size_t) w < sizeof(x->head)) x->n += (size_t) w;
}

static void inspect_body(ferry_req *req, int status, const char *body, size_t len, void *data)
{
    inspect_ctx *x = data;
    ferry_res *res = ferry_req_res(req);
    if (status < 0) {
        free(x);
        if (!ferry_res_aborted(res))
            ferry_res_send(res, 400, "text/plain", "body error", 10);
        else
            ferry_res_end(res);
        return;
    }
    int w = snprintf(x->head + x->n, sizeof(x->head) - x->n, "body: %zu %08x\n", len,
                     (unsigned) harness_fnv1a(2166136261u, body, len));
    if (w > 0 && x->n + (size_t) w < sizeof(x->head)) x->n += (size_t) w;
    ferry_res_send(res, 200, "text/plain", x->head, x->n);
    free(x);
}

void cs_inspect_handler(ferry_req *req, ferry_res *res, void *data)
{
    (void) data;
    ferry_str path = ferry_req_path(req);
    if (!(path.len == 8 && memcmp(path.p, "/inspect", 8) == 0)) {
        demo_handle(req, res, harness_self());
        return;
    }
    inspect_ctx *x = calloc(1, sizeof(*x));
    assert_non_null(x);
    inspect_add(x, "method", ferry_req_method(req));
    inspect_add(x, "target", ferry_req_target(req));
    static const char *const names[] = {"host",       "content-length", "transfer-encoding",
                                        "connection", "cookie",         "content-type",
                                        "expect",     "x-test"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        inspect_add(x, names[i], ferry_req_header(req, names[i]));
    int rc = ferry_req_read_body(req, 16u << 20, inspect_body, x);
    if (rc < 0) {
        free(x);
        ferry_res_send(res, 413, "text/plain", "too big", 7);
    }
}

const char *cs_inspect_field(const char *answer, const char *name, char *out, size_t out_size)
{
    out[0] = '\0';
    size_t nl = strlen(name);
    for (const char *p = answer; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t) (eol - p) : strlen(p);
        if (len > nl + 1 && memcmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = len - (size_t) (v - p);
            snprintf(out, out_size, "%.*s", (int) vl, v);
            return out;
        }
        p = eol ? eol + 1 : NULL;
    }
    return out;
}
