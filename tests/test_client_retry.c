/* test_client_retry.c — guarantee 5 of issue 4: retries that are safe.
 *
 *   GET on 503 + Retry-After: 0, on 429, on 502/504  → retried, attempts counted
 *   GET on a reset before any response byte          → retried on a fresh socket
 *   GET on ECONNREFUSED                              → retried, then the error
 *   POST on 503 / on a reset                         → not retried ...
 *   ... unless idempotent = 1                        → retried
 *   retries = 0, and the retries budget running out  → the last response
 *   Retry-After honoured, and capped by retry_max_delay_ms
 *   backoff never runs past total_timeout_ms
 * The servers are raw_server.h scripts whose first K requests fail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "ferry.h"
#include "support/client_support.h"
#include "support/raw_server.h"

static ferry_agent *new_agent(uv_loop_t *loop, uint64_t retry_base_ms)
{
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.retry_base_ms = retry_base_ms;
    return cs_agent_new(loop, &ao);
}

static uint64_t raw_requests(raw_server *s)
{
    raw_stats st;
    raw_stats_get(s, &st);
    return st.requests;
}

/* error_first K with status and Retry-After; method; expected attempts. */
static void status_case(int status, const char *retry_after, uint32_t error_first,
                        const char *method, int idempotent, uint64_t retries, int want_status,
                        uint32_t want_attempts)
{
    raw_options ro = {0};
    ro.error_first = error_first;
    ro.error_status = status;
    ro.retry_after = retry_after;
    raw_server *s = raw_start(&ro);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, 5);
    ferry_request_options o = cs_opts(method, cs_url(raw_port(s), "/r"));
    o.idempotent = idempotent;
    o.retries = retries;
    if (strcmp(method, "POST") == 0) {
        o.body = "a=1";
        o.body_len = 3;
        o.content_type = "application/x-www-form-urlencoded";
    }
    cs_result r = {0};
    cs_run_request(loop, a, &o, &r, 20000);
    cs_assert_done(&r, 0);
    print_message("%s, %u x %d (Retry-After %s): final %d after %u attempts\n", method, error_first,
                  status, retry_after ? retry_after : "-", r.http_status, r.attempts);
    assert_int_equal(r.http_status, want_status);
    assert_int_equal(r.attempts, want_attempts);
    assert_int_equal(raw_requests(s), want_attempts);
    ferry_agent_stats st = cs_stats(a);
    assert_int_equal(st.retries, want_attempts - 1);
    assert_int_equal(st.completed, 1);
    assert_int_equal(st.requests, 1);
    if (strcmp(method, "POST") == 0) {
        char line[128];
        raw_request_line(s, want_attempts - 1, line, sizeof(line));
        assert_string_equal(line, "POST /r");
        raw_stats rs;
        raw_stats_get(s, &rs);
        assert_int_equal(rs.body_bytes, 3 * (uint64_t) want_attempts); /* the body each time */
    }
    cs_client_finish(loop, a);
    raw_stop(s);
}

static void test_get_retried_on_503_retry_after_0(void **state)
{
    (void) state;
    status_case(503, "0", 2, "GET", 0, FERRY_AGENT_DEFAULT, 200, 3);
}

static void test_get_retried_on_429(void **state)
{
    (void) state;
    status_case(429, "0", 1, "GET", 0, FERRY_AGENT_DEFAULT, 200, 2);
}

static void test_get_retried_on_502_and_504(void **state)
{
    (void) state;
    status_case(502, NULL, 1, "GET", 0, FERRY_AGENT_DEFAULT, 200, 2);
    status_case(504, NULL, 1, "GET", 0, FERRY_AGENT_DEFAULT, 200, 2);
}

static void test_other_idempotent_methods_retried(void **state)
{
    (void) state;
    status_case(503, "0", 1, "PUT", 0, FERRY_AGENT_DEFAULT, 200, 2);
    status_case(503, "0", 1, "DELETE", 0, FERRY_AGENT_DEFAULT, 200, 2);
    status_case(503, "0", 1, "HEAD", 0, FERRY_AGENT_DEFAULT, 200, 2);
}

static void test_500_and_404_not_retried(void **state)
{
    (void) state;
    status_case(500, NULL, 1, "GET", 0, FERRY_AGENT_DEFAULT, 500, 1);
    status_case(404, NULL, 1, "GET", 0, FERRY_AGENT_DEFAULT, 404, 1);
}

static void test_post_not_retried_on_503(void **state)
{
    (void) state;
    status_case(503, "0", 1, "POST", 0, FERRY_AGENT_DEFAULT, 503, 1);
    status_case(503, "0", 1, "PATCH", 0, FERRY_AGENT_DEFAULT, 503, 1);
}

static void test_post_idempotent_retried_on_503(void **state)
{
    (void) state;
    status_case(503, "0", 1, "POST", 1, FERRY_AGENT_DEFAULT, 200, 2);
}

static void test_retries_zero_not_retried(void **state)
{
    (void) state;
    status_case(503, "0", 1, "GET", 0, 0, 503, 1);
}

static void test_retries_exhausted_gives_last_response(void **state)
{
    (void) state;
    /* The default is 2 retries: 3 attempts, all 503, and the caller sees the 503. */
    status_case(503, "0", 10, "GET", 0, FERRY_AGENT_DEFAULT, 503, 3);
    status_case(503, "0", 10, "GET", 0, 4, 503, 5);
}

/* A reset before any response byte on a fresh socket. */
static void reset_case(const char *method, int idempotent, int want_ok)
{
    raw_options ro = {0};
    ro.reset_first = 1;
    raw_server *s = raw_start(&ro);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, 5);
    ferry_request_options o = cs_opts(method, cs_url(raw_port(s), "/"));
    o.idempotent = idempotent;
    if (strcmp(method, "POST") == 0) {
        o.body = "x=1";
        o.body_len = 3;
    }
    cs_result r = {0};
    cs_run_request(loop, a, &o, &r, 20000);
    raw_stats rs;
    raw_stats_get(s, &rs);
    print_message("%s%s on a reset: %s, server saw %llu requests\n", method,
                  idempotent ? " (idempotent)" : "", r.status ? ferry_err_name(r.status) : "ok",
                  (unsigned long long) rs.requests);
    if (want_ok) {
        cs_assert_done(&r, 0);
        assert_int_equal(r.http_status, 200);
        assert_int_equal(r.attempts, 2);
        assert_int_equal(rs.requests, 2);
        assert_int_equal(rs.connections, 2);
    } else {
        assert_int_equal(r.done, 1);
        if (r.status != FERRY_ECONNRESET && r.status != FERRY_EINCOMPLETE &&
            r.status != FERRY_EPIPE && r.status != FERRY_EOF)
            fail_msg("a reset POST ended with %s, expected a connection error",
                     ferry_err_name(r.status));
        assert_int_equal(r.responses, 0);
        assert_int_equal(rs.requests, 1); /* never sent twice */
    }
    cs_client_finish(loop, a);
    raw_stop(s);
}

static void test_get_retried_on_reset(void **state)
{
    (void) state;
    reset_case("GET", 0, 1);
}

static void test_post_not_retried_on_reset(void **state)
{
    (void) state;
    reset_case("POST", 0, 0);
}

static void test_post_idempotent_retried_on_reset(void **state)
{
    (void) state;
    reset_case("POST", 1, 1);
}

/* A port nobody listens on: bind, read the port, close. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *) &a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *) &a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static void test_connection_refused_retried_then_error(void **state)
{
    (void) state;
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, 5);
    ferry_request_options o = cs_opts("GET", cs_url(closed_port(), "/"));
    cs_result r = {0};
    cs_run_request(loop, a, &o, &r, 20000);
    cs_assert_done(&r, FERRY_ECONNREFUSED);
    ferry_agent_stats st = cs_stats(a);
    assert_int_equal(st.retries, 2);
    assert_int_equal(st.failed, 1);
    /* POST: a refused connect sent nothing, but POST is not retried by default. */
    ferry_request_options p = cs_opts("POST", o.url);
    cs_result r2 = {0};
    cs_run_request(loop, a, &p, &r2, 20000);
    cs_assert_done(&r2, FERRY_ECONNREFUSED);
    cs_client_finish(loop, a);
}

/* Retry-After: 1 is honoured: the second attempt comes a second later. */
static void test_retry_after_honoured(void **state)
{
    (void) state;
    raw_options ro = {0};
    ro.error_first = 1;
    ro.retry_after = "1";
    raw_server *s = raw_start(&ro);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, 1);
    ferry_request_options o = cs_opts("GET", cs_url(raw_port(s), "/"));
    cs_result r = {0};
    cs_run_request(loop, a, &o, &r, 20000);
    cs_assert_done(&r, 0);
    double ms = r.t_done - r.t_start;
    print_message("Retry-After: 1 → done after %.0f ms\n", ms);
    assert_int_equal(r.attempts, 2);
    assert_true(ms >= 950);
    assert_true(ms < 4000);
    cs_client_finish(loop, a);
    raw_stop(s);
}

/* Retry-After beyond retry_max_delay_ms is capped. */
static void test_retry_after_capped(void **state)
{
    (void) state;
    raw_options ro = {0};
    ro.error_first = 1;
    ro.retry_after = "30";
    raw_server *s = raw_start(&ro);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.retry_base_ms = 1;
    ao.retry_max_delay_ms = 100;
    ferry_agent *a = cs_agent_new(loop, &ao);
    ferry_request_options o = cs_opts("GET", cs_url(raw_port(s), "/"));
    cs_result r = {0};
    cs_run_request(loop, a, &o, &r, 20000);
    double ms = r.t_done - r.t_start;
    print_message("Retry-After: 30 with retry_max_delay_ms 100 → %s %d after %.0f ms\n",
                  r.status ? ferry_err_name(r.status) : "ok", r.http_status, ms);
    cs_assert_done(&r, 0);
    assert_true(ms < 3000);
    /* Capped and retried (200), or given up at once (the 503): never a 30 s wait. */
    assert_true(r.http_status == 200 || r.http_status == 503);
    cs_client_finish(loop, a);
    raw_stop(s);
}

/* A long backoff (base 5 s) or a long Retry-After never runs past the deadline. */
static void deadline_case(const char *retry_after)
{
    raw_options ro = {0};
    ro.error_first = 1000;
    ro.retry_after = retry_after;
    raw_server *s = raw_start(&ro);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, 5000);
    ferry_request_options o = cs_opts("GET", cs_url(raw_port(s), "/"));
    o.total_timeout_ms = 300;
    o.retries = 5;
    cs_result r = {0};
    cs_run_request(loop, a, &o, &r, 20000);
    double ms = r.t_done - r.t_start;
    print_message("backoff under a 300 ms deadline (Retry-After %s): %s %d after %.0f ms, %llu "
                  "requests\n",
                  retry_after ? retry_after : "-", r.status ? ferry_err_name(r.status) : "ok",
                  r.http_status, ms, (unsigned long long) raw_requests(s));
    assert_int_equal(r.done, 1);
    assert_true(r.status == 0 || r.status == FERRY_EDEADLINE);
    if (r.status == 0) assert_int_equal(r.http_status, 503);
    if (ms > 300 + 1000) fail_msg("the deadline was 300 ms; the request ended after %.0f ms", ms);
    cs_client_finish(loop, a);
    raw_stop(s);
}

static void test_backoff_never_exceeds_deadline(void **state)
{
    (void) state;
    deadline_case(NULL);
    deadline_case("5");
}

/* Many retries with a real backoff: all spaced, attempts as the stats say. */
static void test_backoff_spacing_grows(void **state)
{
    (void) state;
    raw_options ro = {0};
    ro.error_first = 3;
    raw_server *s = raw_start(&ro);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, 20);
    ferry_request_options o = cs_opts("GET", cs_url(raw_port(s), "/"));
    o.retries = 3;
    cs_result r = {0};
    cs_run_request(loop, a, &o, &r, 20000);
    cs_assert_done(&r, 0);
    assert_int_equal(r.http_status, 200);
    assert_int_equal(r.attempts, 4);
    /* Full jitter over 20 * 2^n: at most 20 + 40 + 80 ms of waiting (plus slack). */
    assert_true(r.t_done - r.t_start < 140 + 1500);
    cs_client_finish(loop, a);
    raw_stop(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_retried_on_503_retry_after_0),
        cmocka_unit_test(test_get_retried_on_429),
        cmocka_unit_test(test_get_retried_on_502_and_504),
        cmocka_unit_test(test_other_idempotent_methods_retried),
        cmocka_unit_test(test_500_and_404_not_retried),
        cmocka_unit_test(test_post_not_retried_on_503),
        cmocka_unit_test(test_post_idempotent_retried_on_503),
        cmocka_unit_test(test_retries_zero_not_retried),
        cmocka_unit_test(test_retries_exhausted_gives_last_response),
        cmocka_unit_test(test_get_retried_on_reset),
        cmocka_unit_test(test_post_not_retried_on_reset),
        cmocka_unit_test(test_post_idempotent_retried_on_reset),
        cmocka_unit_test(test_connection_refused_retried_then_error),
        cmocka_unit_test(test_retry_after_honoured),
        cmocka_unit_test(test_retry_after_capped),
        cmocka_unit_test(test_backoff_never_exceeds_deadline),
        cmocka_unit_test(test_backoff_spacing_grows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
