/* test_client_timeouts.c — guarantee 3 of issue 4: every phase of a request
 * has a timeout, and each ends with its own code.
 *
 *   accepts, never answers        → FERRY_EHEADERSTIMEOUT
 *   half a response head, stall   → FERRY_EHEADERSTIMEOUT
 *   part of the body, stall       → FERRY_EBODYTIMEOUT (after on_response)
 *   body paused by the caller     → FERRY_EBODYTIMEOUT (pausing is no escape)
 *   connect to a black hole       → FERRY_ECONNECTTIMEOUT (a listen backlog of 1,
 *                                   filled with never-accepted connections on
 *                                   127.0.0.1: the kernel drops further SYNs)
 *   total deadline                → FERRY_EDEADLINE, also while queued
 *   waiting for a socket          → FERRY_EQUEUETIMEOUT
 * plus the agent's defaults applying when a request leaves FERRY_AGENT_DEFAULT,
 * and the stats counter of each. Times are short (150-300 ms); bounds check
 * "not before the timeout" strictly and "not much after" generously. */
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

enum {
    EARLY_MS = 20,  /* the loop's cached time and our measuring */
    LATE_MS = 1500, /* behaviour, not speed: a loaded CI machine is slow */
};

static void check_elapsed(const char *what, const cs_result *r, double timeout)
{
    double ms = r->t_done - r->t_start;
    print_message("%s: %.1f ms (timeout %.0f ms)\n", what, ms, timeout);
    if (ms < timeout - EARLY_MS)
        fail_msg("%s ended after %.1f ms, before its %.0f ms timeout", what, ms, timeout);
    if (ms > timeout + LATE_MS)
        fail_msg("%s ended after %.1f ms, expected about %.0f ms", what, ms, timeout);
}

/* An agent with every timeout long and no retries, so each test sets only
 * the one it measures. */
static ferry_agent *quiet_agent(uv_loop_t *loop, ferry_agent_options *ao)
{
    ferry_agent_options o;
    if (!ao) {
        ferry_agent_options_init(&o);
        ao = &o;
    }
    ao->connect_timeout_ms = 10000;
    ao->headers_timeout_ms = 10000;
    ao->body_timeout_ms = 10000;
    ao->retries = 0;
    return cs_agent_new(loop, ao);
}

static void test_headers_timeout_server_never_answers(void **state)
{
    (void) state;
    raw_server *s = raw_start_mode(RAW_SILENT);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = quiet_agent(loop, NULL);
    ferry_request_options o = cs_opts("GET", cs_url(raw_port(s), "/"));
    o.headers_timeout_ms = 200;
    cs_result r = {0};
    cs_run_request(loop, a, &o, &r, 10000);
    cs_assert_done(&r, FERRY_EHEADERSTIMEOUT);
    assert_int_equal(r.responses, 0);
    check_elapsed("headers timeout (silent server)", &r, 200);
    ferry_agent_stats st = cs_stats(a);
    assert_int_equal(st.timeouts_headers, 1);
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.sockets_active, 0);
    cs_client_finish(loop, a);
    raw_stats rs;
    raw_stats_get(s, &rs);
    assert_int_equal(rs.requests, 1);
    raw_stop(s);
}

static void test_headers_timeout_half_a_head(void **state)
{
    (void) state;
    raw_server *s = raw_start_mode(RAW_HALF_HEAD);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = quiet_agent(loop, NULL);
    ferry_request_options o = cs_opts("GET", cs_url(raw_port(s), "/"));
    o.headers_timeout_ms = 200;
    cs_result r = {0};
    cs_run_request(loop, a, &o, &r, 10000);
    cs_assert_done(&r, FERRY_EHEADERSTIMEOUT);
    assert_int_equal(r.responses, 0);
    check_elapsed("headers timeout (half a head)", &r, 200);
    ferry_agent_stats st = cs_stats(a);
    assert_int_equal(st.timeouts_headers, 1);
    cs_client_finish(loop, a);
    raw_stop(s);
}

static void test_body_timeout_stall_mid_body(void **state)
{
    (void) state;
    raw_options ro = {0};
    ro.script.mode = RAW_PART_BODY;
    ro.script.part_body_bytes = 1000;
    raw_server *s = raw_start(&ro);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = quiet_agent(loop, NULL);
    ferry_request_options o = cs_opts("GET", cs_url(raw_port(s), "/"));
    o.body_timeout_ms = 200;
    cs_result r = {0};
    cs_run_request(loop, a, &o, &r, 10000);
    cs_assert_done(&r, FERRY_EBODYTIMEOUT);
    assert_int_equal(r.responses, 1);
    assert_int_equal(r.http_status, 200);
    assert_int_equal(r.body_len, 1000);
    check_elapsed("body timeout (stall mid-body)", &r, 200);
    ferry_agent_stats st = cs_stats(a);
    assert_int_equal(st.timeouts_body, 1);
    assert_int_equal(st.timeouts_headers, 0);
    cs_client_finish(loop, a);
    raw_stop(s);
}

/* A fetch of a stalled body fails the same way, with the head. */
typedef struct fetch_seen {
    int calls, status, http_status, had_head;
} fetch_seen;

static void on_fetch(ferry_client_req *req, int status, const ferry_response *r, void *data)
{
    fetch_seen *f = data;
    (void) req;
    f->calls++;
    f->status = status;
    f->had_head = r != NULL;
    if (r) f->http_status = r->status;
}

static void test_body_timeout_fetch(void **state)
{
    (void) state;
    raw_server *s = raw_start_mode(RAW_PART_BODY);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = quiet_agent(loop, NULL);
    ferry_request_options o = cs_opts("GET", cs_url(raw_port(s), "/"));
    o.body_timeout_ms = 150;
    fetch_seen f = {0};
    assert_int_equal(ferry_fetch(a, &o, 0, on_fetch, &f, NULL), 0);
    assert_true(cs_run_until(loop, &f.calls, 1, 10000));
    assert_int_equal(f.status, FERRY_EBODYTIMEOUT);
    assert_int_equal(f.had_head, 1);
    assert_int_equal(f.http_status, 200);
    cs_run_for(loop, 20);
    assert_int_equal(f.calls, 1);
    cs_client_finish(loop, a);
    raw_stop(s);
}

/* A paused body is still bounded by body_timeout_ms. */
static void pause_forever(ferry_client_req *req, const char *buf, size_t len, void *data)
{
    cs_result *r = data;
    (void) buf;
    r->data_calls++;
    r->body_len += len;
    ferry_client_req_pause(req);
}

static void test_body_timeout_while_paused(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, NULL, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = quiet_agent(loop, NULL);
    ferry_request_options o = cs_opts("GET", cs_url(harness_port(h), "/big?bytes=4000000"));
    o.body_timeout_ms = 200;
    ferry_request_callbacks cb = cs_callbacks;
    cb.on_data = pause_forever;
    cs_result r = {0};
    int done = 0;
    r.counter = &done;
    r.t_start = now_ms();
    assert_int_equal(ferry_request(a, &o, &cb, &r, NULL), 0);
    assert_true(cs_run_until(loop, &done, 1, 10000));
    cs_assert_done(&r, FERRY_EBODYTIMEOUT);
    assert_int_equal(r.data_calls, 1); /* paused: on_data never ran again */
    assert_true(r.body_len < 4000000);
    check_elapsed("body timeout (paused)", &r, 200);
    cs_client_finish(loop, a);
    harness_stop(h);
}

static void test_connect_timeout_black_hole(void **state)
{
    (void) state;
    blackhole b;
    int port = blackhole_open(&b);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = quiet_agent(loop, NULL);
    ferry_request_options o = cs_opts("GET", cs_url(port, "/"));
    o.connect_timeout_ms = 200;
    cs_result r = {0};
    cs_run_request(loop, a, &o, &r, 10000);
    cs_assert_done(&r, FERRY_ECONNECTTIMEOUT);
    assert_int_equal(r.responses, 0);
    check_elapsed("connect timeout", &r, 200);
    ferry_agent_stats st = cs_stats(a);
    assert_int_equal(st.timeouts_connect, 1);
    assert_int_equal(st.connections_opened, 0);
    cs_client_finish(loop, a);
    blackhole_close(&b);
}

/* A connect timeout is a connect error: an idempotent request retries it. */
static void test_connect_timeout_is_retried(void **state)
{
    (void) state;
    blackhole b;
    int port = blackhole_open(&b);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.retry_base_ms = 10;
    ferry_agent *a = quiet_agent(loop, &ao);
    ferry_request_options o = cs_opts("GET", cs_url(port, "/"));
    o.connect_timeout_ms = 150;
    o.retries = 2;
    cs_result r = {0};
    cs_run_request(loop, a, &o, &r, 15000);
    cs_assert_done(&r, FERRY_ECONNECTTIMEOUT);
    ferry_agent_stats st = cs_stats(a);
    cs_print_stats("connect timeout, retries 2", a);
    assert_int_equal(st.retries, 2);
    assert_int_equal(st.timeouts_connect, 3);
    assert_true(r.t_done - r.t_start >= 3 * 150 - EARLY_MS);
    cs_client_finish(loop, a);
    blackhole_close(&b);
}

static void test_total_deadline(void **state)
{
    (void) state;
    raw_server *s = raw_start_mode(RAW_SILENT);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = quiet_agent(loop, NULL);
    ferry_request_options o = cs_opts("GET", cs_url(raw_port(s), "/"));
    o.total_timeout_ms = 250;
    cs_result r = {0};
    cs_run_request(loop, a, &o, &r, 10000);
    cs_assert_done(&r, FERRY_EDEADLINE);
    check_elapsed("total deadline", &r, 250);
    ferry_agent_stats st = cs_stats(a);
    assert_int_equal(st.timeouts_total, 1);
    assert_int_equal(st.timeouts_headers, 0);
    cs_client_finish(loop, a);
    raw_stop(s);
}

/* A deadline in the middle of a body also ends it with FERRY_EDEADLINE. */
static void test_total_deadline_mid_body(void **state)
{
    (void) state;
    raw_server *s = raw_start_mode(RAW_PART_BODY);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = quiet_agent(loop, NULL);
    ferry_request_options o = cs_opts("GET", cs_url(raw_port(s), "/"));
    o.total_timeout_ms = 250;
    cs_result r = {0};
    cs_run_request(loop, a, &o, &r, 10000);
    cs_assert_done(&r, FERRY_EDEADLINE);
    assert_int_equal(r.responses, 1);
    check_elapsed("total deadline mid-body", &r, 250);
    cs_client_finish(loop, a);
    raw_stop(s);
}

static void test_queue_timeout_and_deadline_while_queued(void **state)
{
    (void) state;
    raw_server *s = raw_start_mode(RAW_SILENT);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.max_sockets_per_origin = 1;
    ferry_agent *a = quiet_agent(loop, &ao);

    /* The only socket is taken by a request the server never answers. */
    cs_result first = {0}, q1 = {0}, q2 = {0};
    int done = 0;
    first.counter = q1.counter = q2.counter = &done;
    first.id = 1;
    q1.id = 2;
    q2.id = 3;
    ferry_request_options o = cs_opts("GET", cs_url(raw_port(s), "/"));
    assert_int_equal(cs_request(a, &o, &first, false), 0);
    o.queue_timeout_ms = 200;
    assert_int_equal(cs_request(a, &o, &q1, false), 0);
    o.queue_timeout_ms = FERRY_AGENT_DEFAULT;
    o.total_timeout_ms = 300;
    assert_int_equal(cs_request(a, &o, &q2, false), 0);
    assert_true(cs_run_until(loop, &done, 2, 10000));
    cs_assert_done(&q1, FERRY_EQUEUETIMEOUT);
    check_elapsed("queue timeout", &q1, 200);
    cs_assert_done(&q2, FERRY_EDEADLINE);
    check_elapsed("deadline while queued", &q2, 300);
    assert_int_equal(first.done, 0); /* still waiting for its head */
    ferry_agent_stats st = cs_stats(a);
    assert_int_equal(st.timeouts_queue, 1);
    assert_int_equal(st.timeouts_total, 1);
    assert_int_equal(st.queued, 0);
    raw_stats rs;
    raw_stats_get(s, &rs);
    assert_int_equal(rs.connections, 1); /* the queued ones never got a socket */

    ferry_request_abort(first.req);
    assert_true(cs_run_until(loop, &done, 3, 5000));
    cs_assert_done(&first, FERRY_EABORTED);
    cs_client_finish(loop, a);
    raw_stop(s);
}

/* Timeouts left at FERRY_AGENT_DEFAULT take the agent's value. */
static void test_agent_default_timeouts_apply(void **state)
{
    (void) state;
    raw_server *s = raw_start_mode(RAW_SILENT);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ferry_agent *a0 = quiet_agent(loop, &ao);
    cs_agent_finish(loop, a0, 0);
    ao.headers_timeout_ms = 150;
    ferry_agent *a = cs_agent_new(loop, &ao);
    ferry_request_options o = cs_opts("GET", cs_url(raw_port(s), "/"));
    o.retries = 0;
    assert_true(o.headers_timeout_ms == FERRY_AGENT_DEFAULT);
    cs_result r = {0};
    cs_run_request(loop, a, &o, &r, 10000);
    cs_assert_done(&r, FERRY_EHEADERSTIMEOUT);
    check_elapsed("agent default headers timeout", &r, 150);
    cs_client_finish(loop, a);
    raw_stop(s);
}

/* No timeout fires early: a response that takes 150 ms under a 600 ms headers
 * timeout and a 600 ms body timeout arrives whole. */
static void test_no_timeout_before_its_time(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, NULL, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = quiet_agent(loop, NULL);
    ferry_request_options o = cs_opts("GET", cs_url(harness_port(h), "/slow?ms=150"));
    o.headers_timeout_ms = 600;
    o.body_timeout_ms = 600;
    o.total_timeout_ms = 2000;
    o.connect_timeout_ms = 600;
    cs_result r = {0};
    cs_run_request(loop, a, &o, &r, 10000);
    cs_assert_done(&r, 0);
    assert_string_equal(r.body, "slow ms=150");
    /* The same socket again: the headers timer starts afresh on reuse. */
    cs_result r2 = {0};
    cs_run_request(loop, a, &o, &r2, 10000);
    cs_assert_done(&r2, 0);
    assert_int_equal(r2.reused, 1);
    ferry_agent_stats st = cs_stats(a);
    assert_int_equal(st.timeouts_connect + st.timeouts_headers + st.timeouts_body +
                         st.timeouts_queue + st.timeouts_total,
                     0);
    cs_client_finish(loop, a);
    harness_stop(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_headers_timeout_server_never_answers),
        cmocka_unit_test(test_headers_timeout_half_a_head),
        cmocka_unit_test(test_body_timeout_stall_mid_body),
        cmocka_unit_test(test_body_timeout_fetch),
        cmocka_unit_test(test_body_timeout_while_paused),
        cmocka_unit_test(test_connect_timeout_black_hole),
        cmocka_unit_test(test_connect_timeout_is_retried),
        cmocka_unit_test(test_total_deadline),
        cmocka_unit_test(test_total_deadline_mid_body),
        cmocka_unit_test(test_queue_timeout_and_deadline_while_queued),
        cmocka_unit_test(test_agent_default_timeouts_apply),
        cmocka_unit_test(test_no_timeout_before_its_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
