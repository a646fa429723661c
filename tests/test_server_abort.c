/* test_server_abort.c — ferry_res_on_abort: a handler that holds a request
 * hears once when its response is lost (reset, destroy, ferry answering in
 * its place), and not when the client merely half-closes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "support/server_harness.h"

static _Atomic int abort_err;   /* 0 until the abort callback ran */
static _Atomic int abort_calls;
static ferry_res *held;         /* the held response (loop thread only) */

static void on_abort(ferry_res *res, int err, void *data)
{
    (void) data;
    abort_err = err;
    abort_calls++;
    held = NULL;
    ferry_res_end(res);
}

/* Reads and ignores body bytes. */
static void ignore_data(ferry_req *req, int status, const char *buf, size_t len, void *data)
{
    (void) req;
    (void) status;
    (void) buf;
    (void) len;
    (void) data;
}

/* Holds every request until it is aborted or released. /body also starts
 * reading the body, so a request timeout can take the response over. */
static void holding_handler(ferry_req *req, ferry_res *res, void *data)
{
    (void) data;
    held = res;
    ferry_res_on_abort(res, on_abort, NULL);
    ferry_str p = ferry_req_path(req);
    if (p.len == 5 && memcmp(p.p, "/body", 5) == 0)
        assert_int_equal(ferry_req_on_data(req, ignore_data, NULL), 0);
}

static void release_held(ferry_server *s, void *arg)
{
    (void) s;
    (void) arg;
    if (held) {
        ferry_res *res = held;
        held = NULL;
        ferry_res_send(res, 200, "text/plain", "late", 4);
    }
}

static bool wait_abort(int ms)
{
    double end = now_ms() + ms;
    while (!abort_calls && now_ms() < end)
        sleep_ms(5);
    return abort_calls > 0;
}

static void reset_state(void)
{
    abort_err = 0;
    abort_calls = 0;
    held = NULL;
}

static void test_client_reset_aborts(void **state)
{
    (void) state;
    reset_state();
    harness *h = harness_start(NULL, holding_handler, NULL);
    int fd = tc_connect(harness_port(h));
    tc_send(fd, "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(harness_wait_handler_calls(h, 1, 2000));
    tc_reset(fd); /* RST */
    assert_true(wait_abort(2000));
    assert_int_equal(abort_err, FERRY_ECONNRESET);
    assert_int_equal(abort_calls, 1);
    harness_stop(h);
}

static void test_destroy_aborts(void **state)
{
    (void) state;
    reset_state();
    harness *h = harness_start(NULL, holding_handler, NULL);
    int fd = tc_connect(harness_port(h));
    tc_send(fd, "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(harness_wait_handler_calls(h, 1, 2000));
    harness_destroy(h);
    assert_true(wait_abort(2000));
    assert_int_equal(abort_err, FERRY_ECLOSING);
    assert_int_equal(abort_calls, 1);
    tc_close(fd);
    harness_stop(h);
}

static void test_half_close_is_not_an_abort(void **state)
{
    (void) state;
    reset_state();
    harness *h = harness_start(NULL, holding_handler, NULL);
    int fd = tc_connect(harness_port(h));
    tc_send(fd, "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(harness_wait_handler_calls(h, 1, 2000));
    shutdown(fd, SHUT_WR);
    sleep_ms(150);
    assert_int_equal(abort_calls, 0);
    harness_call(h, release_held, NULL);
    tc_response r;
    assert_int_equal(tc_read_response(fd, &r), 0);
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
    assert_int_equal(abort_calls, 0);
    tc_close(fd);
    harness_stop(h);
}

static void test_request_timeout_takes_over_and_aborts(void **state)
{
    (void) state;
    reset_state();
    ferry_server_options o;
    harness_options_init(&o);
    o.request_timeout_ms = 200;
    harness *h = harness_start(&o, holding_handler, NULL);
    int fd = tc_connect(harness_port(h));
    tc_send(fd, "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    tc_response r;
    assert_int_equal(tc_read_response_ex(fd, &r, 0, 3000), 0);
    assert_int_equal(r.status, 408); /* ferry's, not the handler's */
    tc_response_free(&r);
    assert_true(wait_abort(2000));
    assert_int_equal(abort_err, FERRY_EREQUESTTIMEOUT);
    assert_int_equal(abort_calls, 1);
    tc_close(fd);
    harness_stop(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_reset_aborts),
        cmocka_unit_test(test_destroy_aborts),
        cmocka_unit_test(test_half_close_is_not_an_abort),
        cmocka_unit_test(test_request_timeout_takes_over_and_aborts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
