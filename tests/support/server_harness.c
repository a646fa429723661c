/* server_harness.c — the server's loop thread: start, marshalled calls,
 * shutdown with timing, stats, and a stop that proves the loop closed clean.
 *
 * The main thread (the test) never touches the server or the loop directly:
 * it queues a call, wakes the loop with a uv_async_t and waits on a condvar
 * until the loop thread has run it. harness_stop() ends like libuv's own tests
 * (MAKE_VALGRIND_HAPPY): every handle closed, uv_loop_close() == 0, or the
 * test fails. A loop that will not end (a leaked active handle) is caught by a
 * watchdog timer that names the leaked handle types and closes them, so the
 * failing test still returns.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "support/harness_internal.h"

enum {
    CALL_WAIT_MS = 15000,   /* a harness_call that takes longer means a wedged loop */
    STOP_GRACE_MS = 1000,   /* harness_stop's close grace, if nobody closed */
    STOP_DESTROY_MS = 3000, /* stop: close cb still missing → destroy */
    STOP_GIVEUP_MS = 6000,  /* stop: still missing → give up and report */
    WATCHDOG_MS = 2000,     /* after free: the loop must end within this */
};

static _Thread_local harness *tl_self;

/* Monotonic nanoseconds, the clock both threads agree on. */
static uint64_t hr_ns(void)
{
    return uv_hrtime();
}

/* Absolute CLOCK_REALTIME deadline for pthread_cond_timedwait. */
static struct timespec deadline_in(int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long) (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

void harness_options_init(ferry_server_options *o)
{
    ferry_server_options_init(o);
    o->linger_timeout_ms = 300;
}

harness *harness_self(void)
{
    return tl_self;
}

ferry_server *harness_server(harness *h)
{
    return h->server;
}

uv_loop_t *harness_loop(harness *h)
{
    return &h->loop;
}

int harness_port(const harness *h)
{
    return h->port;
}

/* Every request passes here: count it, then hand it to the test's handler or the demo. */
static void on_request(ferry_req *req, ferry_res *res, void *data)
{
    harness *h = tl_self ? tl_self : data;
    atomic_fetch_add(&h->handler_calls, 1);
    if (h->user_cb)
        h->user_cb(req, res, h->user_data);
    else
        demo_handle(req, res, h);
}

/* The close callback: record when and how often it fired (the contract says once). */
static void on_server_closed(ferry_server *s, void *data)
{
    (void) s;
    (void) data;
    harness *h = tl_self;
    pthread_mutex_lock(&h->mu);
    h->close_cb_count++;
    if (h->close_cb_count == 1) h->close_done_ns = hr_ns();
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    /* "Never answers until the server closes": the server has closed. */
    demo_release_noanswer(h);
}

void harness_close_on_loop(harness *h, uint64_t grace_ms)
{
    pthread_mutex_lock(&h->mu);
    if (!h->close_called) h->close_start_ns = hr_ns();
    pthread_mutex_unlock(&h->mu);
    h->close_called = true;
    ferry_server_close(h->server, grace_ms, on_server_closed);
}

/* Drain the call queue on the loop thread, waking each waiting caller. */
static void on_async(uv_async_t *a)
{
    harness *h = a->data;
    pthread_mutex_lock(&h->mu);
    hcall *list = h->calls;
    h->calls = NULL;
    pthread_mutex_unlock(&h->mu);
    while (list) {
        hcall *next = list->next;
        list->fn(h->server, list->arg);
        pthread_mutex_lock(&h->mu);
        list->done = true;
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
        list = next;
    }
}

void harness_call(harness *h, harness_fn fn, void *arg)
{
    /* Heap, not stack: if the loop is wedged we fail the test and must not
     * leave the loop thread a pointer into a dead frame. */
    hcall *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->fn = fn;
    c->arg = arg;
    pthread_mutex_lock(&h->mu);
    hcall **tail = &h->calls;
    while (*tail)
        tail = &(*tail)->next;
    *tail = c;
    pthread_mutex_unlock(&h->mu);
    uv_async_send(&h->async);

    struct timespec dl = deadline_in(CALL_WAIT_MS);
    pthread_mutex_lock(&h->mu);
    int rc = 0;
    while (!c->done && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&h->cv, &h->mu, &dl);
    bool done = c->done;
    pthread_mutex_unlock(&h->mu);
    if (!done)
        fail_msg("harness_call: the loop thread did not run the call within %d ms", CALL_WAIT_MS);
    free(c);
}

/* harness_call body for harness_close_start. */
static void call_close(ferry_server *s, void *arg)
{
    (void) s;
    harness_close_on_loop(tl_self, *(uint64_t *) arg);
}

void harness_close_start(harness *h, uint64_t grace_ms)
{
    harness_call(h, call_close, &grace_ms);
}

double harness_wait_closed(harness *h, int timeout_ms)
{
    struct timespec dl = deadline_in(timeout_ms);
    pthread_mutex_lock(&h->mu);
    int rc = 0;
    while (h->close_cb_count == 0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&h->cv, &h->mu, &dl);
    double ms = h->close_cb_count ? (double) (h->close_done_ns - h->close_start_ns) / 1e6 : -1.0;
    pthread_mutex_unlock(&h->mu);
    return ms;
}

double harness_close(harness *h, uint64_t grace_ms)
{
    harness_close_start(h, grace_ms);
    return harness_wait_closed(h, 10000);
}

int harness_close_cb_count(harness *h)
{
    pthread_mutex_lock(&h->mu);
    int n = h->close_cb_count;
    pthread_mutex_unlock(&h->mu);
    return n;
}

/* harness_call body for harness_close_idle. */
static void call_close_idle(ferry_server *s, void *arg)
{
    (void) arg;
    ferry_server_close_idle(s);
}

void harness_close_idle(harness *h)
{
    harness_call(h, call_close_idle, NULL);
}

/* harness_call body for harness_destroy. */
static void call_destroy(ferry_server *s, void *arg)
{
    (void) arg;
    ferry_server_destroy(s);
}

void harness_destroy(harness *h)
{
    harness_call(h, call_destroy, NULL);
}

/* harness_call body for harness_stats. */
static void call_stats(ferry_server *s, void *arg)
{
    ferry_server_stats_get(s, arg);
}

void harness_stats(harness *h, ferry_server_stats *st)
{
    memset(st, 0, sizeof(*st));
    harness_call(h, call_stats, st);
}

bool harness_wait_stat_at(harness *h, size_t field_offset, uint64_t min, int timeout_ms)
{
    double end = now_ms() + timeout_ms;
    for (;;) {
        ferry_server_stats st;
        harness_stats(h, &st);
        uint64_t v;
        memcpy(&v, (const char *) &st + field_offset, sizeof(v));
        if (v >= min) return true;
        if (now_ms() >= end) return false;
        sleep_ms(5);
    }
}

uint64_t harness_handler_calls(harness *h)
{
    return atomic_load(&h->handler_calls);
}

bool harness_wait_handler_calls(harness *h, uint64_t n, int timeout_ms)
{
    double end = now_ms() + timeout_ms;
    while (harness_handler_calls(h) < n) {
        if (now_ms() >= end) return false;
        sleep_ms(2);
    }
    return true;
}

/* harness_call body for harness_release_noanswer. */
static void call_release(ferry_server *s, void *arg)
{
    (void) s;
    (void) arg;
    demo_release_noanswer(tl_self);
}

void harness_release_noanswer(harness *h)
{
    harness_call(h, call_release, NULL);
}

/* harness_call body for harness_noanswer_pending. */
static void call_pending(ferry_server *s, void *arg)
{
    (void) s;
    *(size_t *) arg = tl_self->demo.noanswer_count;
}

size_t harness_noanswer_pending(harness *h)
{
    size_t n = 0;
    harness_call(h, call_pending, &n);
    return n;
}

/* ---- stop ---------------------------------------------------------------- */

/* Append a handle's type to the leak report (watchdog). */
static void note_handle(uv_handle_t *hd, void *arg)
{
    harness *h = arg;
    if (hd == (uv_handle_t *) &h->watchdog) return;
    size_t n = strlen(h->leaked);
    if (n < sizeof(h->leaked) - 32)
        snprintf(h->leaked + n, sizeof(h->leaked) - n, "%s%s%s", n ? ", " : "",
                 uv_handle_type_name(hd->type), uv_is_closing(hd) ? "(closing)" : "");
    if (!uv_is_closing(hd)) uv_close(hd, NULL);
}

/* Fires only if the loop is still alive WATCHDOG_MS after everything was
 * closed: name what leaked, close it by force so the thread can end. */
static void on_watchdog(uv_timer_t *t)
{
    harness *h = t->data;
    h->watchdog_fired = true;
    uv_walk(&h->loop, note_handle, h);
    uv_close((uv_handle_t *) t, NULL);
}

/* Every STOP tick: once the close cb fired and the demo ended every request,
 * free the server and close our handles so uv_run can return. */
static void on_stop_tick(uv_timer_t *t)
{
    harness *h = t->data;
    uint64_t waited_ms = (hr_ns() - h->stop_start_ns) / 1000000u;
    int closed = harness_close_cb_count(h);
    if (closed && h->demo.outstanding == 0) {
        h->free_rc = ferry_server_free(h->server);
        h->server = NULL;
    } else if (waited_ms >= STOP_GIVEUP_MS) {
        h->stop_gave_up = true; /* reported by harness_stop; the server is leaked */
        h->free_rc = FERRY_EBUSY;
    } else {
        if (!closed && waited_ms >= STOP_DESTROY_MS && !h->destroy_fallback) {
            h->destroy_fallback = true;
            ferry_server_destroy(h->server);
        }
        demo_release_noanswer(h);
        return;
    }
    uv_timer_stop(t);
    uv_close((uv_handle_t *) t, NULL);
    uv_close((uv_handle_t *) &h->async, NULL);
    demo_close_handles(h);
    uv_timer_init(&h->loop, &h->watchdog);
    h->watchdog.data = h;
    uv_timer_start(&h->watchdog, on_watchdog, WATCHDOG_MS, 0);
    uv_unref((uv_handle_t *) &h->watchdog);
}

/* harness_call body for harness_stop: start closing, then tick until done. */
static void call_stop(ferry_server *s, void *arg)
{
    (void) s;
    (void) arg;
    harness *h = tl_self;
    h->stopping = true;
    h->stop_start_ns = hr_ns();
    demo_release_noanswer(h);
    if (!h->close_called) harness_close_on_loop(h, STOP_GRACE_MS);
    uv_timer_init(&h->loop, &h->stop_timer);
    h->stop_timer.data = h;
    uv_timer_start(&h->stop_timer, on_stop_tick, 0, 5);
}

/* The loop thread: create and listen, report, run until stop closed everything. */
static void *loop_main(void *arg)
{
    harness *h = arg;
    tl_self = h;
    int rc = uv_async_init(&h->loop, &h->async, on_async);
    h->async.data = h;
    if (rc == 0) rc = ferry_server_new(&h->loop, &h->opts, on_request, h, &h->server);
    if (rc == 0) rc = ferry_server_listen(h->server, "127.0.0.1", 0);
    int port = rc == 0 ? ferry_server_port(h->server) : 0;
    if (rc == 0 && port <= 0) rc = port < 0 ? port : FERRY_EINVAL;

    pthread_mutex_lock(&h->mu);
    h->start_err = rc;
    h->port = port;
    h->ready = true;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);

    if (rc != 0) {
        if (h->server) ferry_server_free(h->server);
        h->server = NULL;
        uv_close((uv_handle_t *) &h->async, NULL);
    }
    uv_run(&h->loop, UV_RUN_DEFAULT);
    if (rc == 0 && !h->watchdog_fired) {
        /* The unref'd watchdog is the last handle: close it and run once more. */
        uv_close((uv_handle_t *) &h->watchdog, NULL);
        uv_run(&h->loop, UV_RUN_DEFAULT);
    }
    h->loop_close_rc = uv_loop_close(&h->loop);

    pthread_mutex_lock(&h->mu);
    h->thread_done = true;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

harness *harness_start(const ferry_server_options *o, ferry_request_cb cb, void *data)
{
    harness *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    if (o)
        h->opts = *o;
    else
        harness_options_init(&h->opts);
    h->user_cb = cb;
    h->user_data = data;
    atomic_init(&h->handler_calls, 0);
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    assert_int_equal(uv_loop_init(&h->loop), 0);
    assert_int_equal(pthread_create(&h->thread, NULL, loop_main, h), 0);

    pthread_mutex_lock(&h->mu);
    while (!h->ready)
        pthread_cond_wait(&h->cv, &h->mu);
    int err = h->start_err;
    pthread_mutex_unlock(&h->mu);
    if (err != 0) {
        pthread_join(h->thread, NULL);
        fail_msg("harness_start: cannot start a server on 127.0.0.1: %s (%s)", ferry_err_name(err),
                 ferry_strerror(err));
    }
    return h;
}

void harness_stop(harness *h)
{
    harness_call(h, call_stop, NULL);
    /* The stop ticks give up after STOP_GIVEUP_MS, the watchdog WATCHDOG_MS
     * later: the thread is done well within this. */
    struct timespec dl = deadline_in(STOP_GIVEUP_MS + WATCHDOG_MS + 5000);
    pthread_mutex_lock(&h->mu);
    int rc = 0;
    while (!h->thread_done && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&h->cv, &h->mu, &dl);
    bool done = h->thread_done;
    int close_cbs = h->close_cb_count;
    pthread_mutex_unlock(&h->mu);
    if (!done)
        fail_msg("harness_stop: the loop thread did not finish (a callback never returned?)");
    pthread_join(h->thread, NULL);

    bool gave_up = h->stop_gave_up, fallback = h->destroy_fallback;
    bool watchdog = h->watchdog_fired;
    int free_rc = h->free_rc, close_rc = h->loop_close_rc;
    size_t outstanding = h->demo.outstanding;
    char leaked[sizeof(h->leaked)];
    memcpy(leaked, h->leaked, sizeof(leaked));
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);

    if (gave_up)
        fail_msg("harness_stop: close callback fired %d times and %zu demo requests were still "
                 "open %d ms after stop (server leaked)",
                 close_cbs, outstanding, STOP_GIVEUP_MS);
    if (fallback)
        fail_msg("harness_stop: ferry_server_close(grace %d ms) did not call back within %d ms; "
                 "ferry_server_destroy had to finish it",
                 STOP_GRACE_MS, STOP_DESTROY_MS);
    if (watchdog)
        fail_msg("harness_stop: loop still alive %d ms after ferry_server_free: leaked handles: %s",
                 WATCHDOG_MS, leaked);
    if (close_cbs != 1)
        fail_msg("harness_stop: the close callback fired %d times, not once", close_cbs);
    if (free_rc != 0) fail_msg("harness_stop: ferry_server_free: %s", ferry_err_name(free_rc));
    if (close_rc != 0)
        fail_msg("harness_stop: uv_loop_close: %s (a handle was left open)", uv_err_name(close_rc));
}
