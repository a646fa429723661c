/* test_server_lifetime.c — what a handler holds when the connection or the
 * server goes away (issue 13 items 2 and 5), over the fake transport:
 * - a held request's strings stay valid after the client reset it, even
 *   once its read buffer serves another connection;
 * - offloaded work not yet started is cancelled when the response is lost
 *   (after_cb gets FERRY_ECANCELED); running work is told through the abort
 *   callback and the close waits only for it;
 * - a close with a grace period completes (its callback once) although a
 *   handler never ends its response; ferry_server_free then succeeds, and
 *   ending the response later frees it (ASan: no leak, no use after free);
 * - ferry_res_offload on a lost response or a destroyed server says so. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ferry.h"
#include "support/fake_transport.h"

typedef struct rig {
    uv_loop_t loop;
    ferry_server *s;
    int closed;
    ferry_req *held_req; /* /hold: the handler keeps the response */
    ferry_res *held_res;
    int aborts, abort_err;
    int after_calls, after_status;
    atomic_bool stop_work;
    atomic_int work_started;
    bool destroy_in_handler;
} rig;

static rig *cur;

static bool path_is(const ferry_req *req, const char *p)
{
    ferry_str path = ferry_req_path(req);
    return path.len == strlen(p) && memcmp(path.p, p, path.len) == 0;
}

static void on_abort(ferry_res *res, int err, void *data)
{
    (void) res;
    rig *r = data;
    r->aborts++;
    r->abort_err = err;
    atomic_store(&r->stop_work, true);
}

/* /spin: runs until told to stop (bounded: 10 s, far past any test's wait). */
static void spin_work(void *data)
{
    rig *r = data;
    atomic_fetch_add(&r->work_started, 1);
    for (int i = 0; i < 10000 && !atomic_load(&r->stop_work); i++)
        uv_sleep(1);
}

static void noop_work(void *data)
{
    (void) data;
}

static void after_work(ferry_res *res, int status, void *data)
{
    rig *r = data;
    r->after_calls++;
    r->after_status = status;
    ferry_res_send(res, 200, "text/plain", "done", 4);
}

static void handler(ferry_req *req, ferry_res *res, void *data)
{
    rig *r = data;
    if (path_is(req, "/hold")) {
        r->held_req = req;
        r->held_res = res;
        ferry_res_on_abort(res, on_abort, r);
        if (r->destroy_in_handler)
            ferry_server_destroy(r->s);
        return;
    }
    if (path_is(req, "/spin")) {
        ferry_res_on_abort(res, on_abort, r);
        assert_int_equal(ferry_res_offload(res, spin_work, after_work, r), 0);
        return;
    }
    if (path_is(req, "/work")) {
        ferry_res_on_abort(res, on_abort, r);
        assert_int_equal(ferry_res_offload(res, noop_work, after_work, r), 0);
        return;
    }
    ferry_res_send(res, 200, "text/plain", "hello, world", 12);
}

static void rig_start(rig *r)
{
    memset(r, 0, sizeof(*r));
    cur = r;
    assert_int_equal(uv_loop_init(&r->loop), 0);
    ferry_server_options o;
    ferry_server_options_init(&o);
    assert_int_equal(ferry_server_new(&r->loop, &o, handler, r, &r->s), 0);
    assert_int_equal(ferry_server_listen(r->s, "127.0.0.1", 0), 0);
}

static void on_closed(ferry_server *s, void *data)
{
    (void) s;
    ((rig *) data)->closed++;
}

static void turns(rig *r, int n)
{
    for (int i = 0; i < n; i++)
        uv_run(&r->loop, UV_RUN_NOWAIT);
}

/* Run the loop until cond holds, at most ~timeout_ms. */
#define RUN_UNTIL(r, cond, timeout_ms)                                                             \
    do {                                                                                           \
        for (int i_ = 0; i_ < (timeout_ms) && !(cond); i_++) {                                     \
            uv_run(&(r)->loop, UV_RUN_NOWAIT);                                                     \
            if (!(cond))                                                                           \
                uv_sleep(1);                                                                       \
        }                                                                                          \
    } while (0)

static void rig_end(rig *r)
{
    uv_run(&r->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&r->loop), 0);
}

static const char hold_req[] = "GET /hold?x=1 HTTP/1.1\r\nHost: t\r\nX-Mine: held value\r\n\r\n";

/* ---- tests ---- */

static void test_held_request_strings_survive_reset(void **state)
{
    (void) state;
    rig r;
    rig_start(&r);
    fake_conn *f = fake_open(r.s);
    fake_deliver(f, hold_req, sizeof(hold_req) - 1);
    assert_non_null(r.held_req);
    fake_peer_reset(f);
    assert_int_equal(r.aborts, 1);
    assert_true(ferry_res_aborted(r.held_res));
    turns(&r, 3);
    assert_true(fake_closed(f));
    /* the read buffer goes back to the pool and serves the next connection */
    fake_conn *g = fake_open(r.s);
    static const char other[] = "GET /zzzzzzzzzzzzzzzzzzzzzzzzzzzzz HTTP/1.1\r\nHost: u\r\n"
                                "X-Other: zzzzzzzzzzzzzzzzzzzz\r\n\r\n";
    fake_deliver(g, other, sizeof(other) - 1);
    turns(&r, 3);
    ferry_str target = ferry_req_target(r.held_req);
    assert_int_equal(target.len, 9);
    assert_memory_equal(target.p, "/hold?x=1", 9);
    ferry_str v = ferry_req_header(r.held_req, "x-mine");
    assert_int_equal(v.len, 10);
    assert_memory_equal(v.p, "held value", 10);
    ferry_str m = ferry_req_method(r.held_req);
    assert_int_equal(m.len, 3);
    assert_memory_equal(m.p, "GET", 3);
    assert_int_equal(ferry_res_send(r.held_res, 200, NULL, "late", 4), 0); /* dropped */
    ferry_server_close(r.s, 0, on_closed);
    RUN_UNTIL(&r, r.closed, 2000);
    assert_int_equal(r.closed, 1);
    fake_free(f);
    fake_free(g);
    assert_int_equal(ferry_server_free(r.s), 0);
    rig_end(&r);
}

/* The thread pool's threads, each parked until released. */
#define POOL_THREADS 4 /* libuv's default; main() pins UV_THREADPOOL_SIZE */
static void block_work(uv_work_t *w)
{
    uv_sem_wait(w->data);
}

static void block_done(uv_work_t *w, int status)
{
    (void) w;
    assert_int_equal(status, 0);
}

static void test_queued_offload_cancelled_when_response_lost(void **state)
{
    (void) state;
    rig r;
    rig_start(&r);
    uv_sem_t go;
    assert_int_equal(uv_sem_init(&go, 0), 0);
    uv_work_t b[POOL_THREADS];
    for (int i = 0; i < POOL_THREADS; i++) {
        b[i].data = &go;
        assert_int_equal(uv_queue_work(&r.loop, &b[i], block_work, block_done), 0);
    }
    fake_conn *f = fake_open(r.s);
    static const char req[] = "GET /work HTTP/1.1\r\nHost: t\r\n\r\n";
    fake_deliver(f, req, sizeof(req) - 1); /* queued behind the blockers */
    fake_peer_reset(f);
    assert_int_equal(r.aborts, 1);
    RUN_UNTIL(&r, r.after_calls, 2000);
    assert_int_equal(r.after_calls, 1);
    assert_int_equal(r.after_status, FERRY_ECANCELED);
    for (int i = 0; i < POOL_THREADS; i++)
        uv_sem_post(&go);
    ferry_server_close(r.s, 0, on_closed);
    RUN_UNTIL(&r, r.closed, 2000);
    assert_int_equal(r.closed, 1);
    fake_free(f);
    assert_int_equal(ferry_server_free(r.s), 0);
    rig_end(&r);
    uv_sem_destroy(&go);
}

static void test_destroy_stops_running_offload_through_abort(void **state)
{
    (void) state;
    rig r;
    rig_start(&r);
    fake_conn *f = fake_open(r.s);
    static const char req[] = "GET /spin HTTP/1.1\r\nHost: t\r\n\r\n";
    fake_deliver(f, req, sizeof(req) - 1);
    for (int i = 0; i < 2000 && !atomic_load(&r.work_started); i++)
        uv_sleep(1);
    assert_int_equal(atomic_load(&r.work_started), 1);
    uint64_t t0 = uv_hrtime();
    ferry_server_close(r.s, 0, on_closed);
    ferry_server_destroy(r.s);
    assert_int_equal(r.aborts, 1);
    assert_int_equal(r.abort_err, FERRY_ECLOSING);
    RUN_UNTIL(&r, r.closed, 5000);
    double ms = (double) (uv_hrtime() - t0) / 1e6;
    assert_int_equal(r.closed, 1);
    assert_int_equal(r.after_calls, 1); /* the close waited for the running work */
    assert_int_equal(r.after_status, 0);
    if (ms > 3000)
        fail_msg("the close took %.0f ms; the work stops within ms of its abort", ms);
    fake_free(f);
    assert_int_equal(ferry_server_free(r.s), 0);
    rig_end(&r);
}

/* The case: a handler that never ends its response, then a close
 * with a grace period. */
static void close_with_held_response(bool destroy_in_handler)
{
    rig r;
    rig_start(&r);
    r.destroy_in_handler = destroy_in_handler;
    fake_conn *f = fake_open(r.s);
    fake_deliver(f, hold_req, sizeof(hold_req) - 1);
    assert_non_null(r.held_res);
    ferry_server_close(r.s, 30, on_closed);
    RUN_UNTIL(&r, r.closed, 3000);
    assert_int_equal(r.closed, 1);
    assert_int_equal(r.aborts, 1);
    assert_true(ferry_res_aborted(r.held_res));
    turns(&r, 2);
    assert_int_equal(r.closed, 1); /* once */
    fake_free(f);
    assert_int_equal(ferry_server_free(r.s), 0);
    /* the handle outlives the server; its strings too; ending it frees it */
    ferry_str target = ferry_req_target(r.held_req);
    assert_int_equal(target.len, 9);
    assert_memory_equal(target.p, "/hold?x=1", 9);
    assert_null(ferry_req_server(r.held_req));
    assert_int_equal(ferry_res_offload(r.held_res, noop_work, after_work, &r), FERRY_ECLOSING);
    assert_int_equal(ferry_res_end(r.held_res), 0);
    rig_end(&r);
}

static void test_close_completes_with_a_held_response(void **state)
{
    (void) state;
    close_with_held_response(false);
}

static void test_destroy_inside_the_handler_that_holds(void **state)
{
    (void) state;
    close_with_held_response(true);
}

static void test_offload_on_lost_response_or_destroyed_server(void **state)
{
    (void) state;
    rig r;
    rig_start(&r);
    fake_conn *f = fake_open(r.s);
    fake_deliver(f, hold_req, sizeof(hold_req) - 1);
    fake_peer_reset(f);
    assert_int_equal(ferry_res_offload(r.held_res, noop_work, after_work, &r), FERRY_ECONNRESET);
    ferry_server_destroy(r.s);
    assert_int_equal(ferry_res_offload(r.held_res, noop_work, after_work, &r), FERRY_ECLOSING);
    assert_int_equal(ferry_res_end(r.held_res), 0);
    ferry_server_close(r.s, 0, on_closed);
    RUN_UNTIL(&r, r.closed, 2000);
    assert_int_equal(r.closed, 1);
    fake_free(f);
    assert_int_equal(ferry_server_free(r.s), 0);
    rig_end(&r);
}

int main(void)
{
    setenv("UV_THREADPOOL_SIZE", "4", 1); /* before the pool starts: POOL_THREADS */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_held_request_strings_survive_reset),
        cmocka_unit_test(test_queued_offload_cancelled_when_response_lost),
        cmocka_unit_test(test_destroy_stops_running_offload_through_abort),
        cmocka_unit_test(test_close_completes_with_a_held_response),
        cmocka_unit_test(test_destroy_inside_the_handler_that_holds),
        cmocka_unit_test(test_offload_on_lost_response_or_destroyed_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
