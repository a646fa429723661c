/* test_server_fake.c — the server's HTTP code with no socket under it
 * (tests/support/fake_transport): requests split at every byte, a
 * pipelined burst delivered one byte at a time, responses written a few
 * bytes per loop turn (the output drains below the pipelining bound by the
 * slow path: the burst must not stall), writes that fail mid-response, a
 * half-closed client, and the idle-close race with bytes still "in the
 * kernel". Everything runs on the test's own loop; each test closes the
 * server and proves the loop closes clean. */
#include <setjmp.h>
#include <stdarg.h>
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
    int aborts, abort_err, write_errs;
    int handler_ended;
} rig;

static rig *cur;

/* ---- handlers ---- */

static void on_echo_body(ferry_req *req, int status, const char *body, size_t len, void *data)
{
    (void) data;
    ferry_res *res = ferry_req_res(req);
    if (status < 0) {
        ferry_res_end(res);
        return;
    }
    ferry_res_send(res, 200, "text/plain", body, len);
}

typedef struct big {
    ferry_res *res;
    int left;
} big;

static void on_abort(ferry_res *res, int err, void *data)
{
    (void) res;
    (void) data;
    cur->aborts++;
    cur->abort_err = err;
}

static void big_write(big *b);

static void on_big_written(ferry_res *res, int status, void *data)
{
    big *b = data;
    (void) res;
    if (status < 0) {
        cur->write_errs++;
        ferry_res_end(b->res);
        cur->handler_ended++;
        free(b);
        return;
    }
    big_write(b);
}

static void big_write(big *b)
{
    static char chunk[1000];
    if (b->left-- == 0) {
        ferry_res_end(b->res);
        cur->handler_ended++;
        free(b);
        return;
    }
    memset(chunk, 'x', sizeof(chunk));
    int rc = ferry_res_write(b->res, chunk, sizeof(chunk), on_big_written, b);
    if (rc < 0) {
        ferry_res_end(b->res);
        cur->handler_ended++;
        free(b);
    }
}

static void handler(ferry_req *req, ferry_res *res, void *data)
{
    (void) data;
    ferry_str path = ferry_req_path(req);
    if (path.len == 5 && memcmp(path.p, "/echo", 5) == 0) {
        ferry_req_read_body(req, 0, on_echo_body, NULL);
        return;
    }
    if (path.len == 4 && memcmp(path.p, "/big", 4) == 0) {
        big *b = calloc(1, sizeof(*b));
        b->res = res;
        b->left = 50;
        ferry_res_on_abort(res, on_abort, NULL);
        ferry_res_set_header(res, "Content-Length", "50000");
        big_write(b);
        return;
    }
    ferry_res_send(res, 200, "text/plain", "hello, world", 12);
}

/* ---- the rig ---- */

static void rig_start(rig *r)
{
    memset(r, 0, sizeof(*r));
    cur = r;
    assert_int_equal(uv_loop_init(&r->loop), 0);
    ferry_server_options o;
    ferry_server_options_init(&o);
    o.linger_timeout_ms = 200;
    assert_int_equal(ferry_server_new(&r->loop, &o, handler, r, &r->s), 0);
    /* listening creates the timeout lists; no socket connects to it */
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

static void rig_finish(rig *r)
{
    ferry_server_close(r->s, 0, on_closed);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    assert_int_equal(r->closed, 1);
    assert_int_equal(ferry_server_free(r->s), 0);
    assert_int_equal(uv_loop_close(&r->loop), 0);
}

/* The response bytes without the Date lines (they change by the second). */
static char *undated(const char *s)
{
    char *out = malloc(strlen(s) + 1);
    size_t n = 0;
    while (*s) {
        if (strncmp(s, "Date: ", 6) == 0) {
            s = strstr(s, "\r\n") + 2;
            continue;
        }
        out[n++] = *s++;
    }
    out[n] = '\0';
    return out;
}

static int count(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

/* Run until the output holds `want` responses, or nothing moves for a while. */
static void run_until_responses(rig *r, fake_conn *f, int want)
{
    size_t last = (size_t) -1;
    for (int idle = 0; idle < 200;) {
        turns(r, 1);
        size_t len;
        const char *out = fake_output(f, &len);
        if (count(out, "HTTP/1.1 200 OK") >= want)
            return;
        idle = len == last ? idle + 1 : 0;
        last = len;
    }
}

/* ---- tests ---- */

static const char two_requests[] = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                                   "\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: y\r\n\r\n"
                                   "GET / HTTP/1.1\r\nHost: t\r\n\r\n";

static void test_split_at_every_byte(void **state)
{
    (void) state;
    size_t n = sizeof(two_requests) - 1;
    char *reference = NULL;
    for (size_t k = 0; k <= n; k++) {
        rig r;
        rig_start(&r);
        fake_conn *f = fake_open(r.s);
        fake_deliver(f, two_requests, k);
        turns(&r, 2);
        fake_deliver(f, two_requests + k, n - k);
        run_until_responses(&r, f, 2);
        char *got = undated(fake_output(f, NULL));
        assert_int_equal(count(got, "HTTP/1.1 200 OK"), 2);
        assert_non_null(strstr(got, "\r\n\r\nhello, world"));
        if (!reference)
            reference = strdup(got);
        else if (strcmp(reference, got) != 0)
            fail_msg("split at byte %zu: different output:\n%s\nvs\n%s", k, got, reference);
        free(got);
        assert_false(fake_closed(f));
        fake_eof(f); /* the client leaves: a FIN, never a RST */
        turns(&r, 3);
        assert_true(fake_closed(f));
        assert_false(fake_reset(f));
        turns(&r, 1);
        fake_free(f);
        rig_finish(&r);
    }
    free(reference);
}

static void test_pipelined_byte_by_byte(void **state)
{
    (void) state;
    rig r;
    rig_start(&r);
    fake_conn *f = fake_open(r.s);
    char req[64];
    for (int i = 0; i < 100; i++) {
        int len = snprintf(req, sizeof(req), "GET /%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
        for (int k = 0; k < len; k++) {
            fake_deliver(f, req + k, 1);
            turns(&r, 1);
        }
    }
    run_until_responses(&r, f, 100);
    assert_int_equal(count(fake_output(f, NULL), "HTTP/1.1 200 OK"), 100);
    fake_eof(f);
    turns(&r, 3);
    fake_free(f);
    rig_finish(&r);
}

/* 3000 pipelined requests at once, and a "kernel" that takes 700 bytes per
 * loop turn: the output crosses the pipelining bound (64 KiB) over and over,
 * and drains below it only from the loop. Every request is answered. */
static void test_pipelined_burst_slow_reader(void **state)
{
    (void) state;
    rig r;
    rig_start(&r);
    fake_conn *f = fake_open(r.s);
    fake_write_limit(f, 700);
    const char one[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    size_t n = 3000;
    char *burst = malloc(n * (sizeof(one) - 1));
    for (size_t i = 0; i < n; i++)
        memcpy(burst + i * (sizeof(one) - 1), one, sizeof(one) - 1);
    fake_deliver(f, burst, n * (sizeof(one) - 1));
    free(burst);
    run_until_responses(&r, f, (int) n);
    assert_int_equal(count(fake_output(f, NULL), "HTTP/1.1 200 OK"), (int) n);
    assert_int_equal(fake_unread(f), 0);
    fake_eof(f);
    turns(&r, 5);
    fake_free(f);
    rig_finish(&r);
}

/* Writes fail mid-response: the handler hears of it (its write callback
 * gets the error), the connection is reset, nothing leaks. */
static void test_write_failure_mid_response(void **state)
{
    (void) state;
    rig r;
    rig_start(&r);
    fake_conn *f = fake_open(r.s);
    fake_write_limit(f, 300);
    fake_fail_writes(f, FERRY_EPIPE, 5000);
    fake_deliver(f, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n", 31);
    for (int i = 0; i < 500 && !fake_closed(f); i++)
        turns(&r, 1);
    assert_true(fake_closed(f));
    assert_true(fake_reset(f));
    turns(&r, 5);
    /* the pending write callback carries the error first; the handler ends
     * the response there, so the abort callback has nothing left to tell */
    assert_int_equal(r.write_errs, 1);
    assert_int_equal(r.aborts, 0);
    assert_int_equal(r.handler_ended, 1);
    size_t len;
    fake_output(f, &len);
    assert_int_equal(len, 5000); /* what went out before the failure */
    fake_free(f);
    rig_finish(&r);
}

/* A request and the client's FIN in one read: still answered (unlike
 * Node), then a FIN. */
static void test_half_closed_client_is_answered(void **state)
{
    (void) state;
    rig r;
    rig_start(&r);
    fake_conn *f = fake_open(r.s);
    fake_deliver(f, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", 28);
    fake_eof(f);
    turns(&r, 5);
    const char *out = fake_output(f, NULL);
    assert_non_null(strstr(out, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(out, "Connection: close"));
    assert_true(fake_closed(f));
    assert_false(fake_reset(f));
    fake_free(f);
    rig_finish(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_at_every_byte),
        cmocka_unit_test(test_pipelined_byte_by_byte),
        cmocka_unit_test(test_pipelined_burst_slow_reader),
        cmocka_unit_test(test_write_failure_mid_response),
        cmocka_unit_test(test_half_closed_client_is_answered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
