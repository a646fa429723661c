/* test_server_timeouts.c — every server timeout firing on time and not before:
 * keep-alive, headers (slowloris), request (slow body), idle (inactivity),
 * plus "0 = never" and the stats counters. Node sweeps these every 30 s
 * (node-semantics.md §1.5, issue 3 item 5); ferry's fire within ~10 ms, so the
 * bounds here are the timeout itself (minus a little for the client measuring
 * after the server started its clock) and a generous upper margin.
 * Acceptance tests for issue 3 ("Lifecycle, timeouts and limits"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <poll.h>

#include <cmocka.h>

#include "ferry.h"
#include "support/server_harness.h"

enum {
    EARLY_MS = 20, /* a timer may look early by the loop's cached time and our measuring */
    LATE_MS = 250, /* generous: "within ~10 ms" on an idle machine, CI is not idle */
};

/* Fail unless elapsed lies in [timeout - EARLY_MS, timeout + LATE_MS]; quietly. */
static void check_on_time(const char *what, double elapsed, double timeout)
{
    if (elapsed < timeout - EARLY_MS)
        fail_msg("%s fired after %.1f ms, before its %.0f ms timeout", what, elapsed, timeout);
    if (elapsed > timeout + LATE_MS)
        fail_msg("%s fired after %.1f ms, expected about %.0f ms", what, elapsed, timeout);
}

/* check_on_time, printing the measurement (one per test, for the log). */
static void assert_on_time(const char *what, double elapsed, double timeout)
{
    print_message("%s: %.1f ms (timeout %.0f ms)\n", what, elapsed, timeout);
    check_on_time(what, elapsed, timeout);
}

/* Options with every timeout long, so each test turns on only the one it measures. */
static void quiet_options(ferry_server_options *o)
{
    harness_options_init(o);
    o->keep_alive_timeout_ms = 30000;
    o->headers_timeout_ms = 30000;
    o->request_timeout_ms = 30000;
    o->idle_timeout_ms = 0;
}

/* True if the socket has something to read (data, FIN or RST) right now. */
static bool readable_now(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, 0) > 0;
}

static void test_keep_alive_timeout_fires_on_time(void **state)
{
    (void) state;
    ferry_server_options o;
    quiet_options(&o);
    o.keep_alive_timeout_ms = 200;
    harness *h = harness_start(&o, NULL, NULL);
    int fd = tc_connect(harness_port(h));
    tc_response r;
    assert_tc_ok(tc_get(fd, "/", &r));
    double t0 = now_ms();
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
    assert_tc_eof(tc_expect_eof(fd, 2000), TC_FIN);
    assert_on_time("keep-alive close", now_ms() - t0, 200);
    tc_close(fd);
    ferry_server_stats st;
    harness_stats(h, &st);
    assert_int_equal(st.timeouts_keep_alive, 1);
    assert_int_equal(st.timeouts_headers, 0);
    assert_int_equal(st.errors_408, 0); /* an idle connection just closes */
    harness_stop(h);
}

static void test_keep_alive_timer_restarts_per_request(void **state)
{
    (void) state;
    ferry_server_options o;
    quiet_options(&o);
    o.keep_alive_timeout_ms = 400;
    harness *h = harness_start(&o, NULL, NULL);
    int fd = tc_connect(harness_port(h));
    tc_response r;
    double t0 = 0;
    for (int i = 0; i < 3; i++) { /* 3 x 250 ms > 400 ms: each request restarts the clock */
        if (i) sleep_ms(250);
        assert_tc_ok(tc_get(fd, "/", &r));
        t0 = now_ms();
        assert_int_equal(r.status, 200);
        tc_response_free(&r);
    }
    assert_tc_eof(tc_expect_eof(fd, 2000), TC_FIN);
    assert_on_time("keep-alive close after the 3rd request", now_ms() - t0, 400);
    tc_close(fd);
    ferry_server_stats st;
    harness_stats(h, &st);
    assert_int_equal(st.timeouts_keep_alive, 1);
    assert_int_equal(st.requests, 3);
    harness_stop(h);
}

static void test_keep_alive_timeout_announced(void **state)
{
    (void) state;
    ferry_server_options o;
    quiet_options(&o);
    o.keep_alive_timeout_ms = 2500;
    harness *h = harness_start(&o, NULL, NULL);
    int fd = tc_connect(harness_port(h));
    tc_response r;
    assert_tc_ok(tc_get(fd, "/", &r));
    const char *ka = tc_header(&r, "Keep-Alive");
    if (!ka) fail_msg("no Keep-Alive header with keep_alive_timeout_ms = 2500");
    unsigned n = 0;
    const char *t = strstr(ka, "timeout=");
    assert_non_null(t);
    assert_int_equal(sscanf(t, "timeout=%u", &n), 1);
    /* A client trusts N: announcing more than the server waits is the keep-alive race. */
    assert_true(n >= 1 && n * 1000 <= 2500);
    tc_response_free(&r);
    tc_close(fd);
    harness_stop(h);
}

static void test_keep_alive_timeout_zero_never_closes(void **state)
{
    (void) state;
    ferry_server_options o;
    quiet_options(&o);
    o.keep_alive_timeout_ms = 0;
    harness *h = harness_start(&o, NULL, NULL);
    int fd = tc_connect(harness_port(h));
    tc_response r;
    assert_tc_ok(tc_get(fd, "/", &r));
    tc_response_free(&r);
    assert_tc_eof(tc_expect_eof(fd, 800), TC_OPEN);
    assert_tc_ok(tc_get(fd, "/", &r));
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
    tc_close(fd);
    ferry_server_stats st;
    harness_stats(h, &st);
    assert_int_equal(st.timeouts_keep_alive, 0);
    harness_stop(h);
}

/* Read the 408 a timeout produces and the close after it; return ms since t0. */
static double expect_408_then_close(int fd, double t0)
{
    tc_response r;
    assert_tc_ok(tc_read_response_ex(fd, &r, 0, 3000));
    double elapsed = now_ms() - t0;
    assert_int_equal(r.status, 408);
    assert_true(tc_header_has_token(&r, "Connection", "close"));
    tc_response_free(&r);
    tc_eof e = tc_expect_eof(fd, 2000);
    if (e != TC_FIN) fail_msg("after the 408: %s, expected TC_FIN", tc_eof_name(e));
    return elapsed;
}

static void test_headers_timeout_silent_connection(void **state)
{
    (void) state;
    ferry_server_options o;
    quiet_options(&o);
    o.headers_timeout_ms = 200;
    harness *h = harness_start(&o, NULL, NULL);
    double t0 = now_ms();
    int fd = tc_connect(harness_port(h));
    assert_on_time("headers timeout, silent", expect_408_then_close(fd, t0), 200);
    tc_close(fd);
    ferry_server_stats st;
    harness_stats(h, &st);
    assert_int_equal(st.timeouts_headers, 1);
    assert_int_equal(st.errors_408, 1);
    assert_int_equal(harness_handler_calls(h), 0);
    harness_stop(h);
}

static void test_headers_timeout_half_sent_head(void **state)
{
    (void) state;
    ferry_server_options o;
    quiet_options(&o);
    o.headers_timeout_ms = 200;
    harness *h = harness_start(&o, NULL, NULL);
    int fd = tc_connect(harness_port(h));
    double t0 = now_ms();
    tc_send(fd, "GET / HTTP/1.1\r\nHost: t\r\n");
    assert_on_time("headers timeout, half-sent", expect_408_then_close(fd, t0), 200);
    tc_close(fd);
    ferry_server_stats st;
    harness_stats(h, &st);
    assert_int_equal(st.timeouts_headers, 1);
    assert_int_equal(harness_handler_calls(h), 0);
    harness_stop(h);
}

static void test_headers_timeout_is_a_deadline_not_inactivity(void **state)
{
    (void) state;
    ferry_server_options o;
    quiet_options(&o);
    o.headers_timeout_ms = 250;
    harness *h = harness_start(&o, NULL, NULL);
    int fd = tc_connect(harness_port(h));
    /* Slowloris: one byte every 30 ms keeps the socket busy but the head never ends. */
    const char *head =
        "GET / HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    double t0 = now_ms();
    for (size_t i = 0; head[i] && !readable_now(fd) && now_ms() - t0 < 1500; i++) {
        if (tc_try_send_n(fd, head + i, 1) != 1) break;
        sleep_ms(30);
    }
    assert_on_time("headers timeout, trickled head", expect_408_then_close(fd, t0), 250);
    tc_close(fd);
    harness_stop(h);
}

static void test_headers_timeout_not_before(void **state)
{
    (void) state;
    ferry_server_options o;
    quiet_options(&o);
    o.headers_timeout_ms = 400;
    harness *h = harness_start(&o, NULL, NULL);
    int fd = tc_connect(harness_port(h));
    tc_send(fd, "GET / HTTP/1.1\r\n");
    sleep_ms(200);
    tc_send(fd, "Host: t\r\n");
    sleep_ms(100);
    tc_send(fd, "\r\n");
    tc_response r;
    assert_tc_ok(tc_read_response(fd, &r));
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
    /* The clock stops at the end of the head: an idle keep-alive connection is not
     * subject to it (Node E5c). */
    assert_tc_eof(tc_expect_eof(fd, 600), TC_OPEN);
    tc_close(fd);
    ferry_server_stats st;
    harness_stats(h, &st);
    assert_int_equal(st.timeouts_headers, 0);
    harness_stop(h);
}

static void test_headers_timeout_on_a_reused_connection(void **state)
{
    (void) state;
    ferry_server_options o;
    quiet_options(&o);
    o.headers_timeout_ms = 200;
    harness *h = harness_start(&o, NULL, NULL);
    int fd = tc_connect(harness_port(h));
    tc_response r;
    assert_tc_ok(tc_get(fd, "/", &r));
    tc_response_free(&r);
    sleep_ms(300); /* idle longer than the headers timeout: not subject to it */
    double t0 = now_ms();
    tc_send(fd, "GET / HTTP/1.1\r\n"); /* the second head starts and stalls */
    assert_on_time("headers timeout, second request", expect_408_then_close(fd, t0), 200);
    tc_close(fd);
    ferry_server_stats st;
    harness_stats(h, &st);
    assert_int_equal(st.timeouts_headers, 1);
    assert_int_equal(st.requests, 1);
    harness_stop(h);
}

/* Send body bytes one at a time every gap_ms until the server answers or n are sent. */
static void trickle(int fd, size_t n, int gap_ms)
{
    for (size_t i = 0; i < n && !readable_now(fd); i++) {
        if (tc_try_send_n(fd, "x", 1) != 1) break;
        sleep_ms(gap_ms);
    }
}

static void test_request_timeout_trickled_body(void **state)
{
    (void) state;
    const char *targets[] = {"/echo", "/noanswer"}; /* a handler reading, one not reading */
    for (int i = 0; i < 2; i++) {
        ferry_server_options o;
        quiet_options(&o);
        o.request_timeout_ms = 300;
        harness *h = harness_start(&o, NULL, NULL);
        int fd = tc_connect(harness_port(h));
        char head[128];
        snprintf(head, sizeof(head), "POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n",
                 targets[i]);
        double t0 = now_ms();
        tc_send(fd, head);
        trickle(fd, 100, 40);
        assert_on_time(targets[i], expect_408_then_close(fd, t0), 300);
        tc_close(fd);
        ferry_server_stats st;
        harness_stats(h, &st);
        assert_int_equal(st.timeouts_request, 1);
        assert_int_equal(st.errors_408, 1);
        harness_stop(h);
    }
}

static void test_request_timeout_not_before_and_not_for_the_response(void **state)
{
    (void) state;
    ferry_server_options o;
    quiet_options(&o);
    o.request_timeout_ms = 400;
    harness *h = harness_start(&o, NULL, NULL);
    int fd = tc_connect(harness_port(h));
    tc_send(fd, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n");
    trickle(fd, 5, 45); /* done after ~225 ms */
    tc_response r;
    assert_tc_ok(tc_read_response(fd, &r));
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "xxxxx");
    tc_response_free(&r);
    /* The request is complete at once; the handler takes longer than the timeout:
     * request_timeout covers receiving the request, not answering it. */
    assert_tc_ok(tc_get(fd, "/slow?ms=700", &r));
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
    tc_close(fd);
    ferry_server_stats st;
    harness_stats(h, &st);
    assert_int_equal(st.timeouts_request, 0);
    harness_stop(h);
}

static void test_idle_timeout_busy_connection(void **state)
{
    (void) state;
    ferry_server_options o;
    quiet_options(&o);
    o.idle_timeout_ms = 200;
    harness *h = harness_start(&o, NULL, NULL);
    int fd = tc_connect(harness_port(h));
    tc_send(fd, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    double t0 = now_ms(); /* silence from here */
    /* Idle sockets just close (docs/server.md, timeouts); a 408 first is tolerated. */
    tc_response r;
    int rc = tc_read_response_ex(fd, &r, 0, 3000);
    double elapsed = now_ms() - t0;
    if (rc == 0) {
        assert_int_equal(r.status, 408);
        tc_response_free(&r);
        tc_eof e = tc_expect_eof(fd, 2000);
        assert_true(e == TC_FIN || e == TC_RST);
    } else if (rc != TC_ECLOSED && rc != TC_ERESET) {
        fail_msg("idle timeout: %s", tc_result_name(rc));
    }
    assert_on_time("idle timeout", elapsed, 200);
    tc_close(fd);
    ferry_server_stats st;
    harness_stats(h, &st);
    assert_int_equal(st.timeouts_idle, 1);
    assert_int_equal(st.timeouts_request, 0);
    harness_stop(h);
}

static void test_idle_timeout_not_before(void **state)
{
    (void) state;
    ferry_server_options o;
    quiet_options(&o);
    o.idle_timeout_ms = 300;
    harness *h = harness_start(&o, NULL, NULL);
    int fd = tc_connect(harness_port(h));
    tc_send(fd, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\n\r\n");
    trickle(fd, 8, 120); /* ~1 s in all, never 300 ms silent */
    tc_response r;
    assert_tc_ok(tc_read_response(fd, &r));
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "xxxxxxxx");
    tc_response_free(&r);
    tc_close(fd);
    ferry_server_stats st;
    harness_stats(h, &st);
    assert_int_equal(st.timeouts_idle, 0);
    harness_stop(h);
}

enum { MANY = 12 };

static void test_two_timeout_lists_many_connections(void **state)
{
    (void) state;
    /* Keep-alive (200 ms) and headers (350 ms) lists running side by side with
     * entries added at staggered times: each connection closes on its own clock. */
    ferry_server_options o;
    quiet_options(&o);
    o.keep_alive_timeout_ms = 200;
    o.headers_timeout_ms = 350;
    harness *h = harness_start(&o, NULL, NULL);
    int idle[MANY], silent[MANY];
    double t_idle[MANY], t_silent[MANY], closed_idle[MANY] = {0}, closed_silent[MANY] = {0};
    for (int i = 0; i < MANY; i++) {
        silent[i] = tc_connect(harness_port(h));
        t_silent[i] = now_ms();
        idle[i] = tc_connect(harness_port(h));
        tc_response r;
        assert_tc_ok(tc_get(idle[i], "/", &r));
        t_idle[i] = now_ms();
        tc_response_free(&r);
        sleep_ms(10);
    }
    struct pollfd p[2 * MANY];
    int left = 2 * MANY;
    double end = now_ms() + 3000;
    while (left > 0 && now_ms() < end) {
        for (int i = 0; i < MANY; i++) {
            p[i] = (struct pollfd){closed_idle[i] ? -1 : idle[i], POLLIN, 0};
            p[MANY + i] = (struct pollfd){closed_silent[i] ? -1 : silent[i], POLLIN, 0};
        }
        if (poll(p, 2 * MANY, 50) <= 0) continue;
        double t = now_ms();
        for (int i = 0; i < 2 * MANY; i++) {
            if (p[i].fd < 0 || !p[i].revents) continue;
            if (i < MANY) {
                closed_idle[i] = t;
            } else {
                closed_silent[i - MANY] = t;
            }
            left--;
        }
    }
    assert_int_equal(left, 0);
    double worst_idle = 0, worst_silent = 0;
    for (int i = 0; i < MANY; i++) {
        double di = closed_idle[i] - t_idle[i], ds = closed_silent[i] - t_silent[i];
        worst_idle = di > worst_idle ? di : worst_idle;
        worst_silent = ds > worst_silent ? ds : worst_silent;
        check_on_time("keep-alive list entry", di, 200);
        assert_tc_eof(tc_expect_eof(idle[i], 1000), TC_FIN);
        check_on_time("headers list entry", ds, 350);
        tc_response r;
        assert_tc_ok(tc_read_response(silent[i], &r));
        assert_int_equal(r.status, 408);
        tc_response_free(&r);
        tc_close(idle[i]);
        tc_close(silent[i]);
    }
    print_message("%d connections per list: latest keep-alive close %.1f ms (200), latest 408 "
                  "%.1f ms (350)\n",
                  MANY, worst_idle, worst_silent);
    ferry_server_stats st;
    harness_stats(h, &st);
    assert_int_equal(st.timeouts_keep_alive, MANY);
    assert_int_equal(st.timeouts_headers, MANY);
    assert_int_equal(st.errors_408, MANY);
    harness_stop(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keep_alive_timeout_fires_on_time),
        cmocka_unit_test(test_keep_alive_timer_restarts_per_request),
        cmocka_unit_test(test_keep_alive_timeout_announced),
        cmocka_unit_test(test_keep_alive_timeout_zero_never_closes),
        cmocka_unit_test(test_headers_timeout_silent_connection),
        cmocka_unit_test(test_headers_timeout_half_sent_head),
        cmocka_unit_test(test_headers_timeout_is_a_deadline_not_inactivity),
        cmocka_unit_test(test_headers_timeout_not_before),
        cmocka_unit_test(test_headers_timeout_on_a_reused_connection),
        cmocka_unit_test(test_request_timeout_trickled_body),
        cmocka_unit_test(test_request_timeout_not_before_and_not_for_the_response),
        cmocka_unit_test(test_idle_timeout_busy_connection),
        cmocka_unit_test(test_idle_timeout_not_before),
        cmocka_unit_test(test_two_timeout_lists_many_connections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
