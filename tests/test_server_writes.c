/* test_server_writes.c — response writes and their callbacks: a callback
 * never runs inside ferry_res_write (a handler chaining writes from its
 * callback must not recurse), callbacks fire for HEAD responses whose body is
 * dropped, and linger_timeout_ms 0 closes right after the FIN. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "support/server_harness.h"

enum { PIECES = 2000 };

typedef struct {
    ferry_res *res;
    int sent, depth, max_depth, in_write, cb_inside_write;
} chain;

static chain the_chain;
static char piece[100];

static void on_piece(ferry_res *res, int status, void *data);

/* Write the next piece; its callback writes the one after. */
static void write_next(chain *ch)
{
    if (ch->sent == PIECES) {
        ferry_res_end(ch->res);
        return;
    }
    ch->sent++;
    ch->in_write = 1;
    int rc = ferry_res_write(ch->res, piece, sizeof(piece), on_piece, ch);
    ch->in_write = 0;
    if (rc < 0)
        ferry_res_end(ch->res);
}

static void on_piece(ferry_res *res, int status, void *data)
{
    (void) res;
    chain *ch = data;
    if (ch->in_write)
        ch->cb_inside_write++;
    if (++ch->depth > ch->max_depth)
        ch->max_depth = ch->depth;
    if (status == 0)
        write_next(ch);
    else
        ferry_res_end(ch->res);
    ch->depth--;
}

static void chain_handler(ferry_req *req, ferry_res *res, void *data)
{
    (void) req;
    (void) data;
    memset(&the_chain, 0, sizeof(the_chain));
    memset(piece, 'p', sizeof(piece));
    the_chain.res = res;
    write_next(&the_chain);
}

static void test_write_callbacks_never_reenter(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, chain_handler, NULL);
    int fd = tc_connect(harness_port(h));
    tc_response r;
    assert_int_equal(tc_get(fd, "/", &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, (size_t) PIECES * sizeof(piece));
    tc_response_free(&r);
    tc_close(fd);
    harness_stop(h);
    assert_int_equal(the_chain.sent, PIECES);
    assert_int_equal(the_chain.cb_inside_write, 0);
    assert_int_equal(the_chain.max_depth, 1);
}

static _Atomic int head_cb_status = 1;

static void on_head_write(ferry_res *res, int status, void *data)
{
    (void) data;
    head_cb_status = status;
    ferry_res_end(res);
}

static void head_handler(ferry_req *req, ferry_res *res, void *data)
{
    (void) req;
    (void) data;
    ferry_res_set_header(res, "Content-Length", "5");
    if (ferry_res_write(res, "hello", 5, on_head_write, NULL) < 0)
        ferry_res_end(res);
}

static void test_head_write_callback_fires(void **state)
{
    (void) state;
    head_cb_status = 1;
    harness *h = harness_start(NULL, head_handler, NULL);
    int fd = tc_connect(harness_port(h));
    tc_send(fd, "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    tc_response r;
    assert_int_equal(tc_read_response_ex(fd, &r, PARSE_REQ_HEAD, 3000), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(tc_header(&r, "Content-Length"), "5");
    assert_int_equal(r.body_len, 0);
    tc_response_free(&r);
    /* the callback runs a loop turn after the bytes left: wait for it */
    double end = now_ms() + 2000;
    while (head_cb_status == 1 && now_ms() < end)
        sleep_ms(2);
    assert_int_equal(head_cb_status, 0);
    /* the connection is still good */
    tc_send(fd, "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(tc_read_response_ex(fd, &r, PARSE_REQ_HEAD, 3000), 0);
    tc_response_free(&r);
    tc_close(fd);
    harness_stop(h);
}

static void test_linger_zero_closes_after_fin(void **state)
{
    (void) state;
    ferry_server_options o;
    harness_options_init(&o);
    o.linger_timeout_ms = 0;
    harness *h = harness_start(&o, NULL, NULL);
    int fd = tc_connect(harness_port(h));
    /* a 400 closes the connection; with no linger the socket is gone at once */
    tc_send(fd, "G@T / HTTP/1.1\r\nHost: t\r\n\r\n");
    tc_response r;
    assert_int_equal(tc_read_response(fd, &r), 0);
    assert_int_equal(r.status, 400);
    tc_response_free(&r);
    assert_int_equal(tc_expect_eof(fd, 1000), TC_FIN);
    ferry_server_stats st;
    double end = now_ms() + 1000;
    do {
        harness_stats(h, &st);
        if (st.connections_active == 0)
            break;
        sleep_ms(5);
    } while (now_ms() < end);
    assert_int_equal(st.connections_active, 0); /* not waiting for our close */
    tc_close(fd);
    harness_stop(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_callbacks_never_reenter),
        cmocka_unit_test(test_head_write_callback_fires),
        cmocka_unit_test(test_linger_zero_closes_after_fin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
