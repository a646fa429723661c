/* test_raw_server.c — the client tests' misbehaving server (support/raw_server.h)
 * does what its scripts say, checked with plain blocking sockets: keep-alive
 * answers, close after N responses (FIN, RST, after a delay), the keep-alive
 * idle close, Keep-Alive hints, error_first with Retry-After, reset_first,
 * silence, half a head, part of a body, request bodies (Content-Length and
 * chunked), per-connection scripts, ::1, and the black hole. A client test
 * that fails should fail because of the client, not because of its server. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
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

#include <cmocka.h>

#include "ferry.h"
#include "support/raw_server.h"
#include "support/server_harness.h"

static void test_answers_keep_alive(void **state)
{
    (void) state;
    raw_server *s = raw_start(NULL);
    int fd = tc_connect(raw_port(s));
    for (int i = 0; i < 3; i++) {
        tc_response r;
        assert_tc_ok(tc_get(fd, "/x", &r));
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "ok");
        assert_null(tc_header(&r, "Connection"));
        tc_response_free(&r);
    }
    raw_stats st;
    raw_stats_get(s, &st);
    assert_int_equal(st.connections, 1);
    assert_int_equal(st.requests, 3);
    char line[128];
    raw_request_line(s, 2, line, sizeof(line));
    assert_string_equal(line, "GET /x");
    tc_close(fd);
    raw_stop(s);
}

static void test_close_after_n_fin(void **state)
{
    (void) state;
    raw_options o = {0};
    o.script.close_after = 2;
    raw_server *s = raw_start(&o);
    int fd = tc_connect(raw_port(s));
    tc_response r;
    assert_tc_ok(tc_get(fd, "/", &r));
    tc_response_free(&r);
    assert_tc_ok(tc_get(fd, "/", &r));
    tc_response_free(&r);
    assert_tc_eof(tc_expect_eof(fd, 2000), TC_FIN);
    tc_close(fd);
    raw_stats st;
    raw_stats_get(s, &st);
    assert_int_equal(st.server_closes, 1);
    raw_stop(s);
}

static void test_close_after_n_rst(void **state)
{
    (void) state;
    raw_options o = {0};
    o.script.close_after = 1;
    o.script.close_how = RAW_RST;
    raw_server *s = raw_start(&o);
    int fd = tc_connect(raw_port(s));
    tc_response r;
    assert_tc_ok(tc_get(fd, "/", &r));
    tc_response_free(&r);
    assert_tc_eof(tc_expect_eof(fd, 2000), TC_RST);
    tc_close(fd);
    raw_stats st;
    raw_stats_get(s, &st);
    assert_int_equal(st.resets_sent, 1);
    raw_stop(s);
}

static void test_close_after_delay_leaves_request_unread(void **state)
{
    (void) state;
    raw_options o = {0};
    o.script.close_after = 1;
    o.script.close_delay_ms = 150;
    raw_server *s = raw_start(&o);
    int fd = tc_connect(raw_port(s));
    tc_response r;
    assert_tc_ok(tc_get(fd, "/", &r));
    tc_response_free(&r);
    double t0 = now_ms();
    tc_send(fd, "GET /second HTTP/1.1\r\nHost: x\r\n\r\n"); /* never read: the close resets */
    tc_eof e = tc_expect_eof(fd, 2000);
    double ms = now_ms() - t0;
    assert_true(e == TC_RST || e == TC_FIN);
    assert_true(ms >= 100 && ms < 1500);
    raw_stats st;
    raw_stats_get(s, &st);
    assert_int_equal(st.requests, 1);
    tc_close(fd);
    raw_stop(s);
}

static void test_idle_close(void **state)
{
    (void) state;
    raw_options o = {0};
    o.script.idle_close_ms = 100;
    o.script.keep_alive_hint = 1;
    raw_server *s = raw_start(&o);
    int fd = tc_connect(raw_port(s));
    tc_response r;
    assert_tc_ok(tc_get(fd, "/", &r));
    assert_string_equal(tc_header(&r, "Keep-Alive"), "timeout=1");
    tc_response_free(&r);
    sleep_ms(50);
    assert_tc_ok(tc_get(fd, "/", &r)); /* in time: the idle timer restarts */
    tc_response_free(&r);
    double t0 = now_ms();
    assert_tc_eof(tc_expect_eof(fd, 2000), TC_FIN);
    double ms = now_ms() - t0;
    assert_true(ms >= 80 && ms < 1000);
    tc_close(fd);
    raw_stop(s);
}

static void test_error_first_with_retry_after(void **state)
{
    (void) state;
    raw_options o = {0};
    o.error_first = 2;
    o.error_status = 429;
    o.retry_after = "0";
    raw_server *s = raw_start(&o);
    int fd = tc_connect(raw_port(s));
    tc_response r;
    for (int i = 0; i < 2; i++) {
        assert_tc_ok(tc_get(fd, "/", &r));
        assert_int_equal(r.status, 429);
        assert_string_equal(tc_header(&r, "Retry-After"), "0");
        tc_response_free(&r);
    }
    assert_tc_ok(tc_get(fd, "/", &r));
    assert_int_equal(r.status, 200);
    assert_null(tc_header(&r, "Retry-After"));
    tc_response_free(&r);
    tc_close(fd);
    raw_stats st;
    raw_stats_get(s, &st);
    assert_int_equal(st.errors_sent, 2);
    raw_stop(s);
}

static void test_reset_first(void **state)
{
    (void) state;
    raw_options o = {0};
    o.reset_first = 1;
    raw_server *s = raw_start(&o);
    int fd = tc_connect(raw_port(s));
    tc_response r;
    int rc = tc_get(fd, "/", &r);
    assert_true(rc == TC_ERESET || rc == TC_ECLOSED);
    tc_close(fd);
    fd = tc_connect(raw_port(s));
    assert_tc_ok(tc_get(fd, "/", &r));
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
    tc_close(fd);
    raw_stats st;
    raw_stats_get(s, &st);
    assert_int_equal(st.resets_sent, 1);
    assert_int_equal(st.requests, 2);
    raw_stop(s);
}

static void test_silent_half_head_part_body(void **state)
{
    (void) state;
    raw_script scripts[3] = {{.mode = RAW_SILENT},
                             {.mode = RAW_HALF_HEAD},
                             {.mode = RAW_PART_BODY, .part_body_bytes = 500}};
    raw_options o = {0};
    o.per_conn = scripts;
    o.nper_conn = 3;
    raw_server *s = raw_start(&o);
    tc_response r;
    int fd = tc_connect(raw_port(s));
    tc_send(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(tc_read_response_ex(fd, &r, 0, 200), TC_ETIMEOUT);
    tc_response_free(&r);
    assert_int_equal(tc_buffered(fd), 0);
    tc_close(fd);

    fd = tc_connect(raw_port(s));
    tc_send(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(tc_read_response_ex(fd, &r, 0, 200), TC_ETIMEOUT);
    tc_response_free(&r);
    assert_true(tc_buffered(fd) > 10);
    tc_close(fd);

    fd = tc_connect(raw_port(s));
    tc_send(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(tc_read_response_ex(fd, &r, 0, 200), TC_ETIMEOUT);
    tc_response_free(&r); /* the head was complete: it is kept */
    assert_true(tc_buffered(fd) > 500);
    tc_close(fd);

    raw_stats st;
    raw_stats_get(s, &st);
    assert_int_equal(st.connections, 3);
    assert_int_equal(st.requests, 3);
    raw_stop(s);
}

static void test_request_bodies(void **state)
{
    (void) state;
    raw_server *s = raw_start(NULL);
    int fd = tc_connect(raw_port(s));
    tc_send(fd, "POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    tc_response r;
    assert_tc_ok(tc_read_response(fd, &r));
    tc_response_free(&r);
    tc_send(fd, "POST /te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n");
    assert_tc_ok(tc_read_response(fd, &r));
    tc_response_free(&r);
    raw_stats st;
    raw_stats_get(s, &st);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.body_bytes, 12);
    char line[128];
    raw_request_line(s, 1, line, sizeof(line));
    assert_string_equal(line, "POST /te");
    tc_close(fd);
    raw_stop(s);
}

static void test_ipv6(void **state)
{
    (void) state;
    raw_options o = {0};
    o.host = "::1";
    raw_server *s = raw_start(&o);
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof(a));
    a.sin6_family = AF_INET6;
    a.sin6_port = htons((uint16_t) raw_port(s));
    a.sin6_addr = in6addr_loopback;
    assert_int_equal(connect(fd, (struct sockaddr *) &a, sizeof(a)), 0);
    tc_response r;
    assert_tc_ok(tc_get(fd, "/", &r));
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
    tc_close(fd);
    raw_stop(s);
}

static void test_blackhole(void **state)
{
    (void) state;
    blackhole b;
    int port = blackhole_open(&b);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t) port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *) &a, sizeof(a));
    assert_true(rc != 0 && errno == EINPROGRESS);
    struct pollfd p = {fd, POLLOUT, 0};
    assert_int_equal(poll(&p, 1, 300), 0); /* still connecting after 300 ms */
    close(fd);
    blackhole_close(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answers_keep_alive),
        cmocka_unit_test(test_close_after_n_fin),
        cmocka_unit_test(test_close_after_n_rst),
        cmocka_unit_test(test_close_after_delay_leaves_request_unread),
        cmocka_unit_test(test_idle_close),
        cmocka_unit_test(test_error_first_with_retry_after),
        cmocka_unit_test(test_reset_first),
        cmocka_unit_test(test_silent_half_head_part_body),
        cmocka_unit_test(test_request_bodies),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_blackhole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
