/* test_client_stream.c — streaming both ways.
 *
 * Responses: pause/resume from on_data (on_data never runs while paused, the
 * body arrives whole and in order), pause from on_response.
 * Request bodies through on_body_ready / ferry_client_req_write /
 * ferry_client_req_end_body: unknown length (sent chunked) and known length
 * (Content-Length) received intact by a ferry server, an empty streamed
 * body, each write waiting for the previous write's callback, misuse
 * refused with FERRY_EINVAL, and a started streamed body never replayed
 * (an idempotent PUT answered 503 is not retried). */
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

/* ---- response streaming --------------------------------------------------------- */

typedef struct reader {
    uv_timer_t timer;
    ferry_client_req *req;
    uint64_t got;
    int calls, pauses, paused, data_while_paused, mismatches, done, status, responses;
    int pause_first_n; /* pause after each of the first n pieces */
    int pause_on_response;
    double t_response, t_first_data;
} reader;

static void on_resume_timer(uv_timer_t *t)
{
    reader *r = t->data;
    r->paused = 0;
    ferry_client_req_resume(r->req);
}

static void rd_response(ferry_client_req *req, const ferry_response *resp, void *data)
{
    reader *r = data;
    (void) resp;
    r->req = req;
    r->responses++;
    r->t_response = now_ms();
    if (r->pause_on_response) {
        ferry_client_req_pause(req);
        r->paused = 1;
        uv_timer_start(&r->timer, on_resume_timer, 100, 0);
    }
}

static void rd_data(ferry_client_req *req, const char *buf, size_t len, void *data)
{
    reader *r = data;
    if (r->paused) r->data_while_paused++;
    if (r->calls++ == 0) r->t_first_data = now_ms();
    for (size_t i = 0; i < len; i++)
        if (buf[i] != harness_pattern(r->got + i)) {
            r->mismatches++;
            break;
        }
    r->got += len;
    if (r->calls <= r->pause_first_n) {
        ferry_client_req_pause(req);
        r->paused = 1;
        r->pauses++;
        uv_timer_start(&r->timer, on_resume_timer, 1, 0);
    }
}

static void rd_done(ferry_client_req *req, int status, void *data)
{
    reader *r = data;
    (void) req;
    r->done++;
    r->status = status;
    uv_timer_stop(&r->timer);
}

static const ferry_request_callbacks reader_cb = {rd_response, rd_data, rd_done, NULL};

/* GET url with the reader r (its pausing already set) until it ended. */
static void read_all(uv_loop_t *loop, ferry_agent *a, const char *url, reader *r)
{
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    ferry_request_options o = cs_opts("GET", url);
    assert_int_equal(ferry_request(a, &o, &reader_cb, r, NULL), 0);
    assert_true(cs_run_until(loop, &r->done, 1, 20000));
    uv_close((uv_handle_t *) &r->timer, NULL);
}

static void test_pause_resume_from_on_data(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, NULL, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = cs_agent_new(loop, NULL);
    reader r = {0};
    r.pause_first_n = 40;
    read_all(loop, a, cs_url(harness_port(h), "/big?bytes=3000000"), &r);
    print_message("3 MB in %d pieces, %d pauses\n", r.calls, r.pauses);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.got, 3000000);
    assert_int_equal(r.mismatches, 0);
    assert_int_equal(r.data_while_paused, 0);
    assert_true(r.pauses >= 2);
    cs_client_finish(loop, a);
    harness_stop(h);
}

static void test_pause_from_on_response(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, NULL, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = cs_agent_new(loop, NULL);
    reader r = {0};
    r.pause_on_response = 1;
    read_all(loop, a, cs_url(harness_port(h), "/big?bytes=200000"), &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.got, 200000);
    assert_int_equal(r.data_while_paused, 0);
    assert_true(r.t_first_data - r.t_response >= 90);
    cs_client_finish(loop, a);
    harness_stop(h);
}

/* ---- request body streaming ------------------------------------------------------- */

typedef struct upload {
    size_t piece, total, sent;
    uint32_t fnv;
    int ready_calls, write_cbs, write_errors, end_rc, end_again_rc, write_after_end_rc;
    int in_flight, max_in_flight;
    char buf[16384];
    cs_result res;
} upload;

static void write_next(ferry_client_req *req, upload *u);

static void on_written(ferry_client_req *req, int status, void *data)
{
    upload *u = data;
    u->write_cbs++;
    u->in_flight--;
    if (status < 0) {
        u->write_errors++;
        return;
    }
    write_next(req, u);
}

static void write_next(ferry_client_req *req, upload *u)
{
    if (u->sent >= u->total) {
        u->end_rc = ferry_client_req_end_body(req);
        u->end_again_rc = ferry_client_req_end_body(req);
        u->write_after_end_rc = ferry_client_req_write(req, "x", 1, NULL, NULL);
        return;
    }
    size_t n = u->total - u->sent < u->piece ? u->total - u->sent : u->piece;
    for (size_t i = 0; i < n; i++)
        u->buf[i] = harness_pattern(u->sent + i);
    u->fnv = harness_fnv1a(u->fnv, u->buf, n);
    u->sent += n;
    u->in_flight++;
    if (u->in_flight > u->max_in_flight) u->max_in_flight = u->in_flight;
    int rc = ferry_client_req_write(req, u->buf, n, on_written, u);
    memset(u->buf, '#', n); /* ferry copied them */
    if (rc != 0) {
        u->in_flight--;
        u->write_errors++;
    }
}

static void up_ready(ferry_client_req *req, void *data)
{
    upload *u = data;
    u->ready_calls++;
    write_next(req, u);
}

static void up_response(ferry_client_req *req, const ferry_response *r, void *data)
{
    cs_callbacks.on_response(req, r, &((upload *) data)->res);
}

static void up_data(ferry_client_req *req, const char *buf, size_t len, void *data)
{
    cs_callbacks.on_data(req, buf, len, &((upload *) data)->res);
}

static void up_done(ferry_client_req *req, int status, void *data)
{
    cs_callbacks.on_done(req, status, &((upload *) data)->res);
}

static const ferry_request_callbacks upload_cb = {up_response, up_data, up_done, up_ready};

static void upload_run(uv_loop_t *loop, ferry_agent *a, const char *method, const char *url,
                       size_t total, size_t piece, int64_t declared, upload *u)
{
    u->total = total;
    u->piece = piece;
    u->fnv = 2166136261u;
    ferry_request_options o = cs_opts(method, url);
    o.stream_body = 1;
    o.stream_body_length = declared;
    o.content_type = "application/octet-stream";
    assert_int_equal(ferry_request(a, &o, &upload_cb, u, NULL), 0);
    if (!cs_run_until(loop, &u->res.done, 1, 20000))
        fail_msg("upload of %zu bytes did not end (%zu sent)", total, u->sent);
}

static void check_upload(const upload *u, const char *want_te, const char *want_cl)
{
    char v[128], want[64];
    cs_assert_done(&u->res, 0);
    assert_int_equal(u->res.http_status, 200);
    assert_int_equal(u->ready_calls, 1);
    assert_int_equal(u->write_errors, 0);
    assert_int_equal(u->max_in_flight, u->total ? 1 : 0);
    assert_int_equal(u->end_rc, 0);
    assert_int_equal(u->end_again_rc, FERRY_EINVAL);
    assert_int_equal(u->write_after_end_rc, FERRY_EINVAL);
    assert_string_equal(cs_inspect_field(u->res.body, "transfer-encoding", v, sizeof(v)), want_te);
    assert_string_equal(cs_inspect_field(u->res.body, "content-length", v, sizeof(v)), want_cl);
    snprintf(want, sizeof(want), "%zu %08x", u->total, (unsigned) u->fnv);
    assert_string_equal(cs_inspect_field(u->res.body, "body", v, sizeof(v)), want);
}

static void test_streamed_body_unknown_length_chunked(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, cs_inspect_handler, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = cs_agent_new(loop, NULL);
    upload *u = calloc(1, sizeof(*u));
    upload_run(loop, a, "POST", cs_url(harness_port(h), "/inspect"), 500000, 10000, -1, u);
    check_upload(u, "chunked", "");
    free(u);
    /* The socket is in step after a chunked upload: the next request works on it. */
    cs_result r = {0};
    ferry_request_options o = cs_opts("GET", cs_url(harness_port(h), "/"));
    cs_run_request(loop, a, &o, &r, 10000);
    cs_assert_done(&r, 0);
    assert_int_equal(r.reused, 1);
    cs_client_finish(loop, a);
    harness_stop(h);
}

static void test_streamed_body_known_length(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, cs_inspect_handler, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = cs_agent_new(loop, NULL);
    upload *u = calloc(1, sizeof(*u));
    upload_run(loop, a, "PUT", cs_url(harness_port(h), "/inspect"), 300000, 16384, 300000, u);
    check_upload(u, "", "300000");
    free(u);
    cs_client_finish(loop, a);
    harness_stop(h);
}

static void test_streamed_body_empty(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, cs_inspect_handler, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = cs_agent_new(loop, NULL);
    upload *u = calloc(1, sizeof(*u));
    upload_run(loop, a, "POST", cs_url(harness_port(h), "/inspect"), 0, 100, -1, u);
    check_upload(u, "chunked", "");
    free(u);
    cs_client_finish(loop, a);
    harness_stop(h);
}

/* Misuse: writing to a request without a streamed body; writing past the
 * declared length. */
typedef struct misuse {
    int ready, over_rc, done, status;
} misuse;

static void mis_ready(ferry_client_req *req, void *data)
{
    misuse *m = data;
    m->ready++;
    m->over_rc = ferry_client_req_write(req, "0123456789ab", 12, NULL, NULL); /* declared 10 */
    ferry_client_req_write(req, "0123456789", 10, NULL, NULL);
    ferry_client_req_end_body(req);
}

static void mis_done(ferry_client_req *req, int status, void *data)
{
    misuse *m = data;
    (void) req;
    m->done++;
    m->status = status;
}

static void mis_response(ferry_client_req *req, const ferry_response *r, void *data)
{
    (void) req;
    (void) r;
    (void) data;
}

static void test_stream_misuse_refused(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, cs_inspect_handler, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = cs_agent_new(loop, NULL);
    cs_result r = {0};
    ferry_request_options o = cs_opts("POST", cs_url(harness_port(h), "/inspect"));
    o.body = "abc";
    o.body_len = 3;
    assert_int_equal(cs_request(a, &o, &r, false), 0);
    assert_int_equal(ferry_client_req_write(r.req, "x", 1, NULL, NULL), FERRY_EINVAL);
    assert_int_equal(ferry_client_req_end_body(r.req), FERRY_EINVAL);
    assert_true(cs_run_until(loop, &r.done, 1, 10000));
    cs_assert_done(&r, 0);

    misuse m = {0};
    ferry_request_callbacks cb = {mis_response, NULL, mis_done, mis_ready};
    ferry_request_options s = cs_opts("POST", cs_url(harness_port(h), "/inspect"));
    s.stream_body = 1;
    s.stream_body_length = 10;
    assert_int_equal(ferry_request(a, &s, &cb, &m, NULL), 0);
    assert_true(cs_run_until(loop, &m.done, 1, 10000));
    assert_int_equal(m.ready, 1);
    assert_int_equal(m.over_rc, FERRY_EINVAL);
    assert_int_equal(m.status, 0);
    cs_client_finish(loop, a);
    harness_stop(h);
}

/* An idempotent PUT whose streamed body started is not replayed on a 503. */
static void test_started_stream_not_retried(void **state)
{
    (void) state;
    raw_options ro = {0};
    ro.error_first = 1;
    ro.retry_after = "0";
    raw_server *s = raw_start(&ro);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = cs_agent_new(loop, NULL);
    upload *u = calloc(1, sizeof(*u));
    upload_run(loop, a, "PUT", cs_url(raw_port(s), "/up"), 30000, 10000, -1, u);
    cs_assert_done(&u->res, 0);
    assert_int_equal(u->res.http_status, 503);
    assert_int_equal(u->res.attempts, 1);
    assert_int_equal(u->ready_calls, 1);
    raw_stats rs;
    raw_stats_get(s, &rs);
    assert_int_equal(rs.requests, 1);
    assert_int_equal(rs.body_bytes, 30000);
    free(u);
    cs_client_finish(loop, a);
    raw_stop(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pause_resume_from_on_data),
        cmocka_unit_test(test_pause_from_on_response),
        cmocka_unit_test(test_streamed_body_unknown_length_chunked),
        cmocka_unit_test(test_streamed_body_known_length),
        cmocka_unit_test(test_streamed_body_empty),
        cmocka_unit_test(test_stream_misuse_refused),
        cmocka_unit_test(test_started_stream_not_retried),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
