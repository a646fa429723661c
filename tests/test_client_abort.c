/* test_client_abort.c — ending requests and agents early.
 *
 * ferry_request_abort at every phase: queued, resolving, connecting,
 * waiting for the head, mid-body, during a retry's backoff, from inside
 * on_response, on_data and on_done, twice, and on a fetch. Each time
 * on_done runs exactly once, with FERRY_EABORTED, from the loop (never inside
 * the abort call), the socket is closed (the server sees it), and the agent
 * is left with nothing active; ASan checks that nothing leaked.
 *
 * ferry_agent_close graceful (active and queued requests finish, new ones get
 * FERRY_ECLOSING at once) vs abort (everything ends with FERRY_ECLOSING), a
 * graceful close turned into an abort, idle sockets closed at once, the
 * callback never inside the call, and ferry_agent_free refusing before it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ferry.h"
#include "support/client_support.h"
#include "support/raw_server.h"
#include "support/server_harness.h"

static ferry_agent *new_agent(uv_loop_t *loop, uint32_t max_sockets_per_origin)
{
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    if (max_sockets_per_origin) ao.max_sockets_per_origin = max_sockets_per_origin;
    return cs_agent_new(loop, &ao);
}

/* Abort now and check the callback does not run inside the call. */
static void abort_now(cs_result *r)
{
    int before = r->done;
    ferry_request_abort(r->req);
    if (r->done != before) fail_msg("on_done ran inside ferry_request_abort");
}

/* Abort r (abort_now), run until its on_done, and assert it ended with
 * FERRY_EABORTED. */
static void abort_and_wait(uv_loop_t *loop, cs_result *r, int timeout_ms)
{
    abort_now(r);
    assert_true(cs_run_until(loop, &r->done, 1, timeout_ms));
    cs_assert_done(r, FERRY_EABORTED);
}

static bool agent_quiet(void *arg)
{
    ferry_agent_stats st;
    ferry_agent_stats_get(arg, &st);
    return st.sockets_active == 0 && st.queued == 0;
}

/* Nothing active or queued once the aborted socket's close completed. */
static void assert_agent_quiet(uv_loop_t *loop, ferry_agent *a)
{
    cs_run_until_fn(loop, agent_quiet, a, 1000);
    ferry_agent_stats st;
    ferry_agent_stats_get(a, &st);
    if (st.sockets_active || st.queued)
        fail_msg("after the abort: %llu sockets active, %llu requests queued",
                 (unsigned long long) st.sockets_active, (unsigned long long) st.queued);
}

typedef struct raw_peer_wait {
    raw_server *s;
    uint64_t closes, requests;
} raw_peer_wait;

static bool raw_reached(void *arg)
{
    raw_peer_wait *w = arg;
    raw_stats st;
    raw_stats_get(w->s, &st);
    return st.peer_closes >= w->closes && st.requests >= w->requests;
}

/* Run until the raw server has seen `requests` requests and `closes` client closes. */
static void wait_raw(uv_loop_t *loop, raw_server *s, uint64_t requests, uint64_t closes)
{
    raw_peer_wait w = {s, closes, requests};
    if (!cs_run_until_fn(loop, raw_reached, &w, 5000)) {
        raw_stats st;
        raw_stats_get(s, &st);
        fail_msg("raw server: %llu requests, %llu client closes; expected %llu and %llu",
                 (unsigned long long) st.requests, (unsigned long long) st.peer_closes,
                 (unsigned long long) requests, (unsigned long long) closes);
    }
}

static void test_abort_queued_then_waiting_for_head(void **state)
{
    (void) state;
    raw_server *s = raw_start_mode(RAW_SILENT);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, 1);
    cs_result r1 = {0}, r2 = {0};
    int done = 0;
    r1.counter = r2.counter = &done;
    ferry_request_options o = cs_opts("GET", cs_url(raw_port(s), "/"));
    assert_int_equal(cs_request(a, &o, &r1, false), 0);
    assert_int_equal(cs_request(a, &o, &r2, false), 0);
    wait_raw(loop, s, 1, 0);
    ferry_agent_stats st = cs_stats(a);
    assert_int_equal(st.queued, 1);

    abort_now(&r2); /* queued */
    assert_true(cs_run_until(loop, &done, 1, 5000));
    cs_assert_done(&r2, FERRY_EABORTED);
    assert_int_equal(r1.done, 0);
    st = cs_stats(a);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.sockets_active, 1);

    abort_now(&r1); /* waiting for the head */
    assert_true(cs_run_until(loop, &done, 2, 5000));
    cs_assert_done(&r1, FERRY_EABORTED);
    wait_raw(loop, s, 1, 1); /* its socket was closed */
    assert_agent_quiet(loop, a);
    st = cs_stats(a);
    assert_int_equal(st.failed, 2);
    assert_int_equal(st.sockets_idle, 0);
    cs_client_finish(loop, a);
    raw_stop(s);
}

/* The connect itself is not bound to the request (a connecting socket serves
 * whichever request of its origin is first in line when it connects), so an
 * abort ends the request at once, and the orphan connect may finish or time
 * out on its own: it must not outlive its connect_timeout_ms. */
static void test_abort_while_connecting(void **state)
{
    (void) state;
    blackhole b;
    int port = blackhole_open(&b);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, 0);
    ferry_request_options o = cs_opts("GET", cs_url(port, "/"));
    o.connect_timeout_ms = 1000;
    cs_result r = {0};
    assert_int_equal(cs_request(a, &o, &r, false), 0);
    cs_run_for(loop, 50);
    assert_int_equal(r.done, 0);
    abort_and_wait(loop, &r, 5000);
    assert_true(r.t_done - r.t_start < 500);
    double t0 = now_ms();
    if (!cs_run_until_fn(loop, agent_quiet, a, 3000))
        fail_msg("the aborted request's connect was still open 3 s later (connect timeout 1 s)");
    ferry_agent_stats st = cs_stats(a);
    print_message("orphan connect gone %.0f ms after the abort (timeouts_connect %llu)\n",
                  now_ms() - t0, (unsigned long long) st.timeouts_connect);
    assert_int_equal(st.queued, 0);
    cs_client_finish(loop, a);
    blackhole_close(&b);
}

/* Right after ferry_request, before the loop ran: DNS ("localhost") may be in
 * flight on the thread pool; the loop must still close clean. */
static void test_abort_right_after_start(void **state)
{
    (void) state;
    raw_server *s = raw_start(NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, 0);
    char url[64];
    snprintf(url, sizeof(url), "http://localhost:%d/", raw_port(s));
    ferry_request_options o = cs_opts("GET", url);
    cs_result r = {0}, r2 = {0};
    int done = 0;
    r.counter = r2.counter = &done;
    assert_int_equal(cs_request(a, &o, &r, false), 0);
    abort_now(&r);
    o.url = cs_url(raw_port(s), "/ip");
    assert_int_equal(cs_request(a, &o, &r2, false), 0);
    abort_now(&r2);
    assert_true(cs_run_until(loop, &done, 2, 5000));
    cs_assert_done(&r, FERRY_EABORTED);
    cs_assert_done(&r2, FERRY_EABORTED);
    assert_int_equal(r.responses + r2.responses, 0);
    assert_agent_quiet(loop, a);
    cs_client_finish(loop, a);
    raw_stop(s);
}

static void test_abort_mid_body(void **state)
{
    (void) state;
    raw_server *s = raw_start_mode(RAW_PART_BODY);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, 0);
    ferry_request_options o = cs_opts("GET", cs_url(raw_port(s), "/"));
    cs_result r = {0};
    assert_int_equal(cs_request(a, &o, &r, false), 0);
    assert_true(cs_run_until(loop, &r.data_calls, 1, 5000));
    cs_run_for(loop, 20);
    assert_int_equal(r.responses, 1);
    assert_int_equal(r.body_len, 1000);
    abort_and_wait(loop, &r, 5000);
    wait_raw(loop, s, 1, 1);
    assert_agent_quiet(loop, a);
    cs_client_finish(loop, a);
    raw_stop(s);
}

/* Aborts from inside the callbacks. */
typedef struct inside {
    cs_result r;
    int where; /* 1 on_response, 2 on_data, 3 on_done */
    int data_after_abort;
    int aborted;
} inside;

static void in_response(ferry_client_req *req, const ferry_response *resp, void *data)
{
    inside *x = data;
    x->r.responses++;
    x->r.http_status = resp->status;
    if (x->where == 1) {
        ferry_request_abort(req);
        ferry_request_abort(req); /* a second call does nothing */
        x->aborted = 1;
        if (x->r.done) fail_msg("on_done ran inside ferry_request_abort (from on_response)");
    }
}

static void in_data(ferry_client_req *req, const char *buf, size_t len, void *data)
{
    inside *x = data;
    (void) buf;
    if (x->aborted) x->data_after_abort++;
    x->r.data_calls++;
    x->r.body_len += len;
    if (x->where == 2 && !x->aborted) {
        ferry_request_abort(req);
        x->aborted = 1;
        if (x->r.done) fail_msg("on_done ran inside ferry_request_abort (from on_data)");
    }
}

static void in_done(ferry_client_req *req, int status, void *data)
{
    inside *x = data;
    x->r.done++;
    x->r.status = status;
    if (x->where == 3) ferry_request_abort(req); /* completion was decided: does nothing */
}

static const ferry_request_callbacks inside_cb = {in_response, in_data, in_done, NULL};

static void inside_case(int where)
{
    harness *h = harness_start(NULL, NULL, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, 0);
    ferry_request_options o = cs_opts("GET", cs_url(harness_port(h), "/big?bytes=2000000"));
    inside x = {0};
    x.where = where;
    assert_int_equal(ferry_request(a, &o, &inside_cb, &x, NULL), 0);
    assert_true(cs_run_until(loop, &x.r.done, 1, 10000));
    cs_run_for(loop, 30); /* a second on_done would show here */
    assert_int_equal(x.r.done, 1);
    assert_int_equal(x.data_after_abort, 0);
    if (where == 3) {
        assert_int_equal(x.r.status, 0);
        assert_int_equal(x.r.body_len, 2000000);
    } else {
        assert_int_equal(x.r.status, FERRY_EABORTED);
        assert_int_equal(x.r.data_calls, where == 1 ? 0 : 1);
    }
    assert_agent_quiet(loop, a);
    ferry_agent_stats st = cs_stats(a);
    if (where != 3) assert_int_equal(st.sockets_idle, 0); /* an aborted socket is not pooled */
    cs_client_finish(loop, a);
    harness_stop(h);
}

static void test_abort_inside_on_response(void **state)
{
    (void) state;
    inside_case(1);
}

static void test_abort_inside_on_data(void **state)
{
    (void) state;
    inside_case(2);
}

static void test_abort_inside_on_done_does_nothing(void **state)
{
    (void) state;
    inside_case(3);
}

static void test_abort_during_retry_backoff(void **state)
{
    (void) state;
    raw_options ro = {0};
    ro.error_first = 100;
    ro.retry_after = "5";
    raw_server *s = raw_start(&ro);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, 0);
    ferry_request_options o = cs_opts("GET", cs_url(raw_port(s), "/"));
    cs_result r = {0};
    assert_int_equal(cs_request(a, &o, &r, false), 0);
    wait_raw(loop, s, 1, 0);
    cs_run_for(loop, 50); /* the 503 arrived; the retry waits 5 s */
    assert_int_equal(r.done, 0);
    assert_int_equal(r.responses, 0); /* retries happen before on_response */
    abort_and_wait(loop, &r, 3000);
    assert_true(r.t_done - r.t_start < 3000);
    raw_stats rs;
    raw_stats_get(s, &rs);
    assert_int_equal(rs.requests, 1);
    assert_agent_quiet(loop, a);
    cs_client_finish(loop, a);
    raw_stop(s);
}

static void test_abort_fetch_mid_body(void **state)
{
    (void) state;
    raw_server *s = raw_start_mode(RAW_PART_BODY);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, 0);
    ferry_request_options o = cs_opts("GET", cs_url(raw_port(s), "/"));
    cs_result r = {0};
    assert_int_equal(cs_fetch(a, &o, 0, &r), 0);
    wait_raw(loop, s, 1, 0);
    cs_run_for(loop, 50);
    abort_and_wait(loop, &r, 3000);
    assert_int_equal(r.http_status, 200); /* the head had arrived: the callback gets it */
    assert_agent_quiet(loop, a);
    cs_client_finish(loop, a);
    raw_stop(s);
}

/* ---- ferry_agent_close ------------------------------------------------------------ */

typedef struct closing {
    int closed;
    int last_done_before_close; /* on_done count when the close callback ran */
    int *done;
} closing;

static void on_closed(ferry_agent *a, void *data)
{
    closing *c = data;
    (void) a;
    c->closed++;
    c->last_done_before_close = *c->done;
}

static bool server_saw(void *arg)
{
    return harness_handler_calls(arg) >= 2;
}

/* 2 active + 2 queued requests to /slow, then close. */
static void close_case(int abort_active, int upgrade_to_abort)
{
    harness *h = harness_start(NULL, NULL, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, 2);
    cs_result r[4];
    memset(r, 0, sizeof(r));
    int done = 0;
    ferry_request_options o = cs_opts("GET", cs_url(harness_port(h), "/slow?ms=150"));
    for (int i = 0; i < 4; i++) {
        r[i].counter = &done;
        r[i].id = i;
        assert_int_equal(cs_request(a, &o, &r[i], false), 0);
    }
    assert_true(cs_run_until_fn(loop, server_saw, h, 5000));

    closing c = {0, 0, &done};
    ferry_agent_close(a, abort_active, on_closed, &c);
    if (upgrade_to_abort) ferry_agent_close(a, 1, NULL, NULL);
    assert_int_equal(c.closed, 0);
    assert_int_equal(done, 0); /* nothing ends inside the call */
    cs_result late = {0};
    assert_int_equal(cs_request(a, &o, &late, false), FERRY_ECLOSING);
    assert_int_equal(cs_fetch(a, &o, 0, &late), FERRY_ECLOSING);
    assert_int_equal(ferry_agent_free(a), FERRY_EBUSY);
    ferry_agent_stats st = cs_stats(a);
    assert_int_equal(st.closing, 1);

    assert_true(cs_run_until(loop, &c.closed, 1, 10000));
    cs_run_for(loop, 20);
    assert_int_equal(c.closed, 1);
    assert_int_equal(late.done, 0);
    assert_int_equal(done, 4);
    assert_int_equal(c.last_done_before_close, 4); /* the callback comes after the last on_done */
    int want = (abort_active || upgrade_to_abort) ? FERRY_ECLOSING : 0;
    for (int i = 0; i < 4; i++)
        cs_assert_done(&r[i], want);
    if (!want)
        for (int i = 0; i < 4; i++)
            assert_string_equal(r[i].body, "slow ms=150");
    assert_int_equal(ferry_agent_free(a), 0);
    cs_loop_finish(loop);
    ferry_server_stats ss;
    harness_stats(h, &ss);
    assert_int_equal(ss.connections_active, 0);
    harness_stop(h);
}

static void test_agent_close_graceful(void **state)
{
    (void) state;
    close_case(0, 0);
}

static void test_agent_close_abort(void **state)
{
    (void) state;
    close_case(1, 0);
}

static void test_agent_close_graceful_turned_abort(void **state)
{
    (void) state;
    close_case(0, 1);
}

static bool raw_one_close(void *arg)
{
    raw_stats st;
    raw_stats_get(arg, &st);
    return st.peer_closes >= 1;
}

static void test_agent_close_closes_idle_sockets_at_once(void **state)
{
    (void) state;
    raw_server *s = raw_start(NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, 0);
    cs_result r = {0};
    ferry_request_options o = cs_opts("GET", cs_url(raw_port(s), "/"));
    assert_int_equal(cs_request(a, &o, &r, false), 0);
    assert_true(cs_run_until(loop, &r.done, 1, 5000));
    cs_assert_done(&r, 0);
    ferry_agent_stats st = cs_stats(a);
    assert_int_equal(st.sockets_idle, 1);
    int done = 0;
    closing c = {0, 0, &done};
    double t0 = now_ms();
    ferry_agent_close(a, 0, on_closed, &c);
    assert_int_equal(c.closed, 0);
    assert_true(cs_run_until(loop, &c.closed, 1, 5000));
    assert_true(now_ms() - t0 < 1000); /* not after an idle timeout */
    assert_true(cs_run_until_fn(loop, raw_one_close, s, 5000));
    assert_int_equal(ferry_agent_free(a), 0);
    cs_loop_finish(loop);
    raw_stop(s);
}

static void test_agent_close_empty_and_twice(void **state)
{
    (void) state;
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, 0);
    int done = 0;
    closing c = {0, 0, &done};
    ferry_agent_close(a, 0, on_closed, &c);
    ferry_agent_close(a, 0, NULL, NULL); /* idempotent */
    assert_int_equal(c.closed, 0);       /* never inside the call, even with nothing open */
    assert_true(cs_run_until(loop, &c.closed, 1, 5000));
    cs_run_for(loop, 10);
    assert_int_equal(c.closed, 1);
    assert_int_equal(ferry_agent_free(a), 0);
    cs_loop_finish(loop);
}

/* Closing the agent from inside a request's on_done. */
static ferry_agent *close_from_cb_agent;
static closing close_from_cb_state;

static void close_in_done(ferry_client_req *req, int status, void *data)
{
    cs_result *r = data;
    (void) req;
    r->done++;
    r->status = status;
    ferry_agent_close(close_from_cb_agent, 0, on_closed, &close_from_cb_state);
}

static void test_agent_close_from_on_done(void **state)
{
    (void) state;
    raw_server *s = raw_start(NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, 0);
    close_from_cb_agent = a;
    int done = 0;
    memset(&close_from_cb_state, 0, sizeof(close_from_cb_state));
    close_from_cb_state.done = &done;
    ferry_request_callbacks cb = cs_callbacks;
    cb.on_done = close_in_done;
    cs_result r = {0};
    ferry_request_options o = cs_opts("GET", cs_url(raw_port(s), "/"));
    assert_int_equal(ferry_request(a, &o, &cb, &r, NULL), 0);
    assert_true(cs_run_until(loop, &close_from_cb_state.closed, 1, 5000));
    cs_assert_done(&r, 0);
    assert_int_equal(ferry_agent_free(a), 0);
    cs_loop_finish(loop);
    raw_stop(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_abort_queued_then_waiting_for_head),
        cmocka_unit_test(test_abort_while_connecting),
        cmocka_unit_test(test_abort_right_after_start),
        cmocka_unit_test(test_abort_mid_body),
        cmocka_unit_test(test_abort_inside_on_response),
        cmocka_unit_test(test_abort_inside_on_data),
        cmocka_unit_test(test_abort_inside_on_done_does_nothing),
        cmocka_unit_test(test_abort_during_retry_backoff),
        cmocka_unit_test(test_abort_fetch_mid_body),
        cmocka_unit_test(test_agent_close_graceful),
        cmocka_unit_test(test_agent_close_abort),
        cmocka_unit_test(test_agent_close_graceful_turned_abort),
        cmocka_unit_test(test_agent_close_closes_idle_sockets_at_once),
        cmocka_unit_test(test_agent_close_empty_and_twice),
        cmocka_unit_test(test_agent_close_from_on_done),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
