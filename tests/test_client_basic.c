/* test_client_basic.c — the request API as a user meets it, against a real
 * ferry server (server_harness.h, with support's /inspect handler that says
 * what it received): option defaults, GET and fetch, what goes on the wire
 * (Host, Content-Length, user headers, Connection), POST bodies and forms,
 * HEAD, chunked responses, response head limits, max_body_bytes →
 * FERRY_EBODYTOOBIG, 100-continue, max_requests_per_socket, synchronous
 * refusals (https:// → FERRY_ENOTSUP, bad URL/method/header → FERRY_EINVAL),
 * IPv6 [::1], "localhost" through the resolver and its cache, and pooled
 * sockets not keeping uv_run() alive. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "ferry.h"
#include "support/client_support.h"
#include "support/raw_server.h"
#include "support/server_harness.h"

static ferry_agent *new_agent(uv_loop_t *loop, const ferry_agent_options *ao)
{
    ferry_agent *a;
    assert_int_equal(ferry_agent_new(loop, ao, &a), 0);
    return a;
}

/* Run one streaming request to completion. */
static void run_req(uv_loop_t *loop, ferry_agent *a, const ferry_request_options *o, cs_result *r)
{
    int done = 0;
    r->counter = &done;
    int rc = cs_request(a, o, r, false);
    if (rc != 0)
        fail_msg("ferry_request(%s %s): %s", o->method ? o->method : "GET", o->url,
                 ferry_err_name(rc));
    if (!cs_run_until(loop, &done, 1, 10000)) fail_msg("%s did not end within 10 s", o->url);
    r->counter = NULL;
}

static void run_fetch(uv_loop_t *loop, ferry_agent *a, const ferry_request_options *o, uint64_t max,
                      cs_result *r)
{
    int done = 0;
    r->counter = &done;
    assert_int_equal(cs_fetch(a, o, max, r), 0);
    if (!cs_run_until(loop, &done, 1, 10000)) fail_msg("%s did not end within 10 s", o->url);
    r->counter = NULL;
}

static const char *field(const cs_result *r, const char *name)
{
    static char buf[4][512];
    static int k;
    return cs_inspect_field(r->body, name, buf[k++ % 4], sizeof(buf[0]));
}

/* ---- defaults --------------------------------------------------------------------- */

static void test_option_defaults(void **state)
{
    (void) state;
    ferry_agent_options a;
    memset(&a, 0xa5, sizeof(a));
    ferry_agent_options_init(&a);
    assert_int_equal(a.max_sockets_per_origin, 256);
    assert_int_equal(a.max_total_sockets, 0);
    assert_int_equal(a.max_idle_per_origin, 256);
    assert_int_equal(a.max_queue, 10000);
    assert_int_equal(a.max_requests_per_socket, 0);
    assert_int_equal(a.pipelining, 1);
    assert_int_equal(a.idle_timeout_ms, 4000);
    assert_int_equal(a.keep_alive_margin_ms, 1000);
    assert_int_equal(a.max_header_bytes, 65536);
    assert_int_equal(a.max_headers, 200);
    assert_int_equal(a.cookies, 0);
    assert_int_equal(a.connect_timeout_ms, 10000);
    assert_int_equal(a.headers_timeout_ms, 60000);
    assert_int_equal(a.body_timeout_ms, 60000);
    assert_int_equal(a.queue_timeout_ms, 0);
    assert_int_equal(a.total_timeout_ms, 0);
    assert_int_equal(a.retries, 2);
    assert_int_equal(a.retry_base_ms, 100);
    assert_int_equal(a.retry_max_delay_ms, 10000);
    assert_int_equal(a.dns_ttl_ms, 30000);

    ferry_request_options o;
    memset(&o, 0xa5, sizeof(o));
    ferry_request_options_init(&o);
    assert_true(o.method == NULL || strcmp(o.method, "GET") == 0);
    assert_null(o.url);
    assert_null(o.headers);
    assert_int_equal(o.header_count, 0);
    assert_null(o.body);
    assert_int_equal(o.body_len, 0);
    assert_int_equal(o.stream_body, 0);
    assert_int_equal(o.stream_body_length, -1);
    assert_null(o.content_type);
    assert_true(o.connect_timeout_ms == FERRY_AGENT_DEFAULT);
    assert_true(o.headers_timeout_ms == FERRY_AGENT_DEFAULT);
    assert_true(o.body_timeout_ms == FERRY_AGENT_DEFAULT);
    assert_true(o.queue_timeout_ms == FERRY_AGENT_DEFAULT);
    assert_true(o.total_timeout_ms == FERRY_AGENT_DEFAULT);
    assert_true(o.retries == FERRY_AGENT_DEFAULT);
    assert_int_equal(o.idempotent, 0);
    assert_int_equal(o.expect_continue, 0);
}

/* ---- plain exchanges ----------------------------------------------------------------- */

static void test_get_and_fetch(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, NULL, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, NULL); /* NULL options: defaults */
    ferry_request_options o;
    ferry_request_options_init(&o);
    o.url = cs_url(harness_port(h), "/");
    cs_result r = {0};
    r.want_header = "content-length";
    run_req(loop, a, &o, &r);
    cs_assert_done(&r, 0);
    assert_int_equal(r.responses, 1);
    assert_int_equal(r.http_status, 200);
    assert_string_equal(r.body, "hello, world");
    assert_string_equal(r.first_header, "12");
    assert_int_equal(r.attempts, 1);
    assert_int_equal(r.reused, 0);

    cs_result f = {0};
    f.want_header = "CONTENT-TYPE"; /* case-insensitive */
    run_fetch(loop, a, &o, 0, &f);
    cs_assert_done(&f, 0);
    assert_int_equal(f.http_status, 200);
    assert_string_equal(f.body, "hello, world");
    assert_string_equal(f.first_header, "text/plain");
    assert_int_equal(f.reused, 1);

    ferry_agent_stats st;
    ferry_agent_stats_get(a, &st);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.completed, 2);
    assert_int_equal(st.connections_opened, 1);
    assert_int_equal(st.sockets_reused, 1);
    assert_true(st.bytes_out > 0 && st.bytes_in > 0);
    cs_agent_finish(loop, a, 0);
    cs_loop_finish(loop);
    harness_stop(h);
}

/* The response as on_response sees it: version, reason, headers in order. */
typedef struct head_seen {
    int status, version_minor, done;
    char reason[32];
    size_t header_count;
    int has_date;
    char missing[32];
} head_seen;

static void head_response(ferry_client_req *req, const ferry_response *r, void *data)
{
    head_seen *s = data;
    (void) req;
    s->status = r->status;
    s->version_minor = r->version_minor;
    snprintf(s->reason, sizeof(s->reason), "%.*s", (int) r->reason.len, r->reason.p);
    s->header_count = r->header_count;
    for (size_t i = 0; i < r->header_count; i++)
        if (r->headers[i].name.len == 4 && strncasecmp(r->headers[i].name.p, "date", 4) == 0)
            s->has_date = 1;
    ferry_str none = ferry_response_header(r, "x-not-there");
    if (none.p != NULL || none.len != 0) snprintf(s->missing, sizeof(s->missing), "present");
}

static void head_done(ferry_client_req *req, int status, void *data)
{
    head_seen *s = data;
    (void) req;
    (void) status;
    s->done++;
}

static void test_response_head_fields(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, NULL, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, NULL);
    ferry_request_options o = cs_opts("GET", cs_url(harness_port(h), "/"));
    head_seen s = {0};
    ferry_request_callbacks cb = {head_response, NULL, head_done, NULL};
    assert_int_equal(ferry_request(a, &o, &cb, &s, NULL), 0);
    assert_true(cs_run_until(loop, &s.done, 1, 10000));
    assert_int_equal(s.status, 200);
    assert_int_equal(s.version_minor, 1);
    assert_string_equal(s.reason, "OK");
    assert_true(s.header_count >= 3);
    assert_int_equal(s.has_date, 1);
    assert_string_equal(s.missing, "");
    cs_agent_finish(loop, a, 0);
    cs_loop_finish(loop);
    harness_stop(h);
}

static void test_what_goes_on_the_wire(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, cs_inspect_handler, NULL);
    int port = harness_port(h);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, NULL);

    ferry_header hs[] = {{{"X-Test", 6}, {"abc def", 7}}};
    ferry_request_options o = cs_opts("GET", cs_url(port, "/inspect?q=1&r=%20"));
    o.headers = hs;
    o.header_count = 1;
    cs_result r = {0};
    run_req(loop, a, &o, &r);
    cs_assert_done(&r, 0);
    char host[64];
    snprintf(host, sizeof(host), "127.0.0.1:%d", port);
    assert_string_equal(field(&r, "method"), "GET");
    assert_string_equal(field(&r, "target"), "/inspect?q=1&r=%20");
    assert_string_equal(field(&r, "host"), host);
    assert_string_equal(field(&r, "x-test"), "abc def");
    assert_string_equal(field(&r, "content-length"), "");
    assert_string_equal(field(&r, "transfer-encoding"), "");
    assert_string_equal(field(&r, "body"), "0 811c9dc5");

    /* POST with a body: Content-Length and Content-Type. */
    ferry_request_options p = cs_opts("POST", cs_url(port, "/inspect"));
    p.body = "name=ferry&x=1";
    p.body_len = 14;
    p.content_type = "application/x-www-form-urlencoded";
    cs_result r2 = {0};
    run_req(loop, a, &p, &r2);
    cs_assert_done(&r2, 0);
    assert_string_equal(field(&r2, "method"), "POST");
    assert_string_equal(field(&r2, "content-length"), "14");
    assert_string_equal(field(&r2, "content-type"), "application/x-www-form-urlencoded");
    char want[32];
    snprintf(want, sizeof(want), "14 %08x", (unsigned) harness_fnv1a(2166136261u, p.body, 14));
    assert_string_equal(field(&r2, "body"), want);

    /* POST, PUT and PATCH without a body carry Content-Length: 0. */
    const char *methods[] = {"POST", "PUT", "PATCH"};
    for (int i = 0; i < 3; i++) {
        ferry_request_options e = cs_opts(methods[i], cs_url(port, "/inspect"));
        cs_result r3 = {0};
        run_req(loop, a, &e, &r3);
        cs_assert_done(&r3, 0);
        assert_string_equal(field(&r3, "method"), methods[i]);
        assert_string_equal(field(&r3, "content-length"), "0");
    }
    /* A method that is any token. */
    ferry_request_options m = cs_opts("PROPFIND", cs_url(port, "/inspect"));
    cs_result r4 = {0};
    run_req(loop, a, &m, &r4);
    cs_assert_done(&r4, 0);
    assert_string_equal(field(&r4, "method"), "PROPFIND");
    cs_agent_finish(loop, a, 0);
    cs_loop_finish(loop);
    harness_stop(h);
}

/* A Host header replaces the URL's (a virtual host on an address);
 * Connection: close ends the socket with that response. */
static void test_host_and_connection_close_headers(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, cs_inspect_handler, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, NULL);
    ferry_header vhost[] = {{{"Host", 4}, {"example.test", 12}}};
    ferry_request_options o = cs_opts("GET", cs_url(harness_port(h), "/inspect"));
    o.headers = vhost;
    o.header_count = 1;
    cs_result r = {0};
    run_req(loop, a, &o, &r);
    cs_assert_done(&r, 0);
    assert_string_equal(field(&r, "host"), "example.test");
    ferry_agent_stats st;
    ferry_agent_stats_get(a, &st);
    assert_int_equal(st.sockets_idle, 1);

    ferry_header close_hdr[] = {{{"connection", 10}, {"close", 5}}};
    o.headers = close_hdr;
    cs_result r2 = {0};
    run_req(loop, a, &o, &r2);
    cs_assert_done(&r2, 0);
    assert_int_equal(r2.reused, 1);
    assert_string_equal(field(&r2, "connection"), "close");
    ferry_agent_stats_get(a, &st);
    assert_int_equal(st.sockets_idle, 0); /* ended with that response */

    ferry_header ka[] = {{{"Connection", 10}, {"keep-alive", 10}}};
    o.headers = ka;
    cs_result r3 = {0};
    run_req(loop, a, &o, &r3);
    cs_assert_done(&r3, 0);
    assert_int_equal(r3.reused, 0);
    ferry_agent_stats_get(a, &st);
    assert_int_equal(st.sockets_idle, 1);
    assert_int_equal(st.connections_opened, 2);
    cs_agent_finish(loop, a, 0);
    cs_loop_finish(loop);
    harness_stop(h);
}

/* A Connection: close request pipelined behind another is sent once, ends
 * its socket, and nothing is pipelined behind it (the review's case: it was
 * replayed, so the server handled it twice). */
static void test_connection_close_pipelined_sent_once(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, cs_inspect_handler, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.pipelining = 4;
    ao.max_sockets_per_origin = 1;
    ferry_agent *a = new_agent(loop, &ao);
    ferry_header close_hdr[] = {{{"Connection", 10}, {"close", 5}}};
    ferry_request_options oa = cs_opts("GET", cs_url(harness_port(h), "/inspect"));
    ferry_request_options ob = oa, oc = oa;
    ob.headers = close_hdr;
    ob.header_count = 1;
    int done = 0;
    cs_result ra = {.counter = &done}, rb = {.counter = &done}, rc = {.counter = &done};
    assert_int_equal(cs_request(a, &oa, &ra, false), 0);
    assert_int_equal(cs_request(a, &ob, &rb, false), 0);
    assert_int_equal(cs_request(a, &oc, &rc, false), 0);
    assert_true(cs_run_until(loop, &done, 3, 5000));
    cs_assert_done(&ra, 0);
    cs_assert_done(&rb, 0);
    cs_assert_done(&rc, 0);
    assert_int_equal(harness_handler_calls(h), 3); /* not 4: B was not replayed */
    ferry_agent_stats st;
    ferry_agent_stats_get(a, &st);
    assert_int_equal(st.retries, 0);
    assert_int_equal(st.connections_opened, 2); /* A and B on one, C on the next */
    cs_agent_finish(loop, a, 0);
    cs_loop_finish(loop);
    harness_stop(h);
}

static void test_no_keep_alive_sends_connection_close(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, cs_inspect_handler, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.max_idle_per_origin = 0;
    ferry_agent *a = new_agent(loop, &ao);
    ferry_request_options o = cs_opts("GET", cs_url(harness_port(h), "/inspect"));
    cs_result r = {0};
    run_req(loop, a, &o, &r);
    cs_assert_done(&r, 0);
    assert_string_equal(field(&r, "connection"), "close");
    cs_agent_finish(loop, a, 0);
    cs_loop_finish(loop);
    harness_stop(h);
}

static void test_form_encode(void **state)
{
    (void) state;
    const char *pairs[] = {"user", "a b&c=d", "note", "caf\xc3\xa9 100%", "safe", "*-._~!"};
    char *s = NULL;
    size_t n = 0;
    assert_int_equal(ferry_form_encode(pairs, 3, &s, &n), 0);
    assert_non_null(s);
    /* WHATWG application/x-www-form-urlencoded: space → '+', *-._ kept, others %XX */
    assert_string_equal(s, "user=a+b%26c%3Dd&note=caf%C3%A9+100%25&safe=*-._%7E%21");
    assert_int_equal(n, strlen(s));
    free(s);
    const char *empty[] = {"k", ""};
    assert_int_equal(ferry_form_encode(empty, 1, &s, &n), 0);
    assert_string_equal(s, "k=");
    free(s);
    assert_int_equal(ferry_form_encode(pairs, 0, &s, &n), 0);
    assert_string_equal(s, "");
    assert_int_equal(n, 0);
    free(s);
}

static void test_head_request(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, NULL, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, NULL);
    ferry_request_options o = cs_opts("HEAD", cs_url(harness_port(h), "/"));
    cs_result r = {0};
    r.want_header = "content-length";
    run_req(loop, a, &o, &r);
    cs_assert_done(&r, 0);
    assert_int_equal(r.http_status, 200);
    assert_int_equal(r.body_len, 0);
    assert_string_equal(r.first_header, "12");
    /* The socket is in step: the next request on it gets its own response. */
    ferry_request_options g = cs_opts("GET", cs_url(harness_port(h), "/"));
    cs_result r2 = {0};
    run_req(loop, a, &g, &r2);
    cs_assert_done(&r2, 0);
    assert_string_equal(r2.body, "hello, world");
    assert_int_equal(r2.reused, 1);
    cs_agent_finish(loop, a, 0);
    cs_loop_finish(loop);
    harness_stop(h);
}

static void test_chunked_response(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, NULL, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, NULL);
    ferry_request_options o = cs_opts("GET", cs_url(harness_port(h), "/chunked?n=4"));
    cs_result r = {0};
    run_fetch(loop, a, &o, 0, &r);
    cs_assert_done(&r, 0);
    assert_string_equal(r.body, "chunk 0\nchunk 1\nchunk 2\nchunk 3\n");
    cs_result r2 = {0};
    run_req(loop, a, &o, &r2);
    cs_assert_done(&r2, 0);
    assert_string_equal(r2.body, "chunk 0\nchunk 1\nchunk 2\nchunk 3\n");
    assert_int_equal(r2.reused, 1);
    cs_agent_finish(loop, a, 0);
    cs_loop_finish(loop);
    harness_stop(h);
}

/* ---- limits ----------------------------------------------------------------------------- */

static void test_fetch_max_body_bytes(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, NULL, NULL);
    int port = harness_port(h);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, NULL);
    const char *paths[] = {"/big?bytes=10000", "/big?bytes=10000&chunked=1"};
    char no_head[128] = "";
    for (int i = 0; i < 2; i++) {
        ferry_request_options o = cs_opts("GET", cs_url(port, paths[i]));
        cs_result over = {0}, exact = {0};
        run_fetch(loop, a, &o, 1000, &over);
        cs_assert_done(&over, FERRY_EBODYTOOBIG);
        if (over.http_status != 200) {
            size_t n = strlen(no_head);
            snprintf(no_head + n, sizeof(no_head) - n, " %s", paths[i]);
        }
        run_fetch(loop, a, &o, 10000, &exact);
        cs_assert_done(&exact, 0);
        assert_int_equal(exact.body_len, 10000);
        for (size_t k = 0; k < sizeof(exact.body) - 1 && k < 10000; k++)
            if (exact.body[k] != harness_pattern(k)) fail_msg("%s: byte %zu differs", paths[i], k);
    }
    /* 0 = 64 MiB: a 3 MB body is fine. */
    ferry_request_options o = cs_opts("GET", cs_url(port, "/big?bytes=3000000"));
    cs_result big = {0};
    run_fetch(loop, a, &o, 0, &big);
    cs_assert_done(&big, 0);
    assert_int_equal(big.body_len, 3000000);
    cs_agent_finish(loop, a, 0);
    cs_loop_finish(loop);
    harness_stop(h);
    if (no_head[0])
        fail_msg("over max_body_bytes, the fetch callback got r == NULL though the head had "
                 "arrived (ferry.h: \"status < 0: r is the head if one arrived\"):%s",
                 no_head);
}

/* Response heads over the agent's limits. */
static void many_headers_handler(ferry_req *req, ferry_res *res, void *data)
{
    (void) req;
    (void) data;
    char name[16];
    for (int i = 0; i < 30; i++) {
        snprintf(name, sizeof(name), "X-H%d", i);
        ferry_res_add_header(res, name, "v");
    }
    static char big[3000];
    memset(big, 'b', sizeof(big) - 1);
    ferry_res_set_header(res, "X-Big", big);
    ferry_res_send(res, 200, "text/plain", "ok", 2);
}

static void test_response_head_limits(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, many_headers_handler, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.max_headers = 10;
    ao.retries = 0;
    ferry_agent *a = new_agent(loop, &ao);
    ferry_request_options o = cs_opts("GET", cs_url(harness_port(h), "/"));
    cs_result r = {0};
    run_req(loop, a, &o, &r);
    cs_assert_done(&r, FERRY_ETOOMANYFIELDS);
    assert_int_equal(r.responses, 0);
    cs_agent_finish(loop, a, 0);

    ferry_agent_options_init(&ao);
    ao.max_header_bytes = 1024;
    ao.retries = 0;
    a = new_agent(loop, &ao);
    cs_result r2 = {0};
    run_req(loop, a, &o, &r2);
    cs_assert_done(&r2, FERRY_EHEADTOOBIG);
    cs_agent_finish(loop, a, 0);

    a = new_agent(loop, NULL); /* the defaults take it */
    cs_result r3 = {0};
    run_req(loop, a, &o, &r3);
    cs_assert_done(&r3, 0);
    cs_agent_finish(loop, a, 0);
    cs_loop_finish(loop);
    harness_stop(h);
}

static void test_max_requests_per_socket(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, NULL, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.max_requests_per_socket = 2;
    ferry_agent *a = new_agent(loop, &ao);
    for (int i = 0; i < 5; i++) {
        ferry_request_options o = cs_opts("GET", cs_url(harness_port(h), "/"));
        cs_result r = {0};
        run_req(loop, a, &o, &r);
        cs_assert_done(&r, 0);
        assert_int_equal(r.reused, i % 2);
    }
    ferry_agent_stats st;
    ferry_agent_stats_get(a, &st);
    assert_int_equal(st.connections_opened, 3);
    cs_agent_finish(loop, a, 0);
    cs_loop_finish(loop);
    harness_stop(h);
}

static void test_expect_continue(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, NULL, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, NULL);
    ferry_request_options o = cs_opts("POST", cs_url(harness_port(h), "/echo?wait_ms=100"));
    o.body = "continued body";
    o.body_len = 14;
    o.content_type = "text/x-test";
    o.expect_continue = 1;
    cs_result r = {0};
    r.want_header = "content-type";
    run_req(loop, a, &o, &r);
    cs_assert_done(&r, 0);
    assert_int_equal(r.responses, 1); /* the 100 is not a response the caller sees */
    assert_int_equal(r.http_status, 200);
    assert_string_equal(r.body, "continued body");
    assert_string_equal(r.first_header, "text/x-test");
    double ms = r.t_done - r.t_start;
    print_message("100-continue exchange: %.0f ms (the server reads after 100 ms)\n", ms);
    if (ms >= 1000)
        fail_msg("the body went out after %.0f ms: on the 1 s fallback, not on the server's "
                 "100 Continue (sent at ~100 ms)",
                 ms);
    cs_agent_finish(loop, a, 0);
    cs_loop_finish(loop);
    harness_stop(h);
}

/* ---- refused at once ------------------------------------------------------------------- */

static void test_synchronous_refusals(void **state)
{
    (void) state;
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, NULL);
    cs_result r = {0};
    /* https:// is a request like any other since TLS (tests/test_tls_client.c) */
    ferry_request_options o;

    /* Another scheme: "not supported" or "invalid" both say it. */
    o = cs_opts("GET", "ftp://127.0.0.1/");
    int rc_ftp = cs_request(a, &o, &r, false);
    assert_true(rc_ftp == FERRY_EINVAL || rc_ftp == FERRY_ENOTSUP);
    o = cs_opts("GET", NULL);
    assert_int_equal(cs_request(a, &o, &r, false), FERRY_EINVAL);
    o = cs_opts("GE T", "http://127.0.0.1:1/");
    assert_int_equal(cs_request(a, &o, &r, false), FERRY_EINVAL);
    o = cs_opts("", "http://127.0.0.1:1/");
    assert_int_equal(cs_request(a, &o, &r, false), FERRY_EINVAL);

    o = cs_opts("GET", "http://127.0.0.1:1/");
    ferry_header bad_name[] = {{{"Bad Name", 8}, {"v", 1}}};
    ferry_header bad_value[] = {{{"X-Ok", 4}, {"a\r\nInjected: 1", 15}}};
    ferry_header framing[][1] = {{{{"content-length", 14}, {"5", 1}}},
                                 {{{"Transfer-Encoding", 17}, {"chunked", 7}}},
                                 {{{"Connection", 10}, {"upgrade", 7}}},
                                 {{{"Connection", 10}, {"close, upgrade", 14}}}};
    o.header_count = 1;
    o.headers = bad_name;
    assert_int_equal(cs_request(a, &o, &r, false), FERRY_EINVAL);
    o.headers = bad_value;
    assert_int_equal(cs_request(a, &o, &r, false), FERRY_EINVAL);
    for (int i = 0; i < 4; i++) {
        o.headers = framing[i];
        int rc = cs_request(a, &o, &r, false);
        if (rc != FERRY_EINVAL)
            fail_msg("header %.*s given by the caller: %s, expected EINVAL",
                     (int) framing[i][0].name.len, framing[i][0].name.p, ferry_err_name(rc));
    }
    cs_run_for(loop, 10);
    assert_int_equal(r.done, 0); /* no callback for any refusal */
    ferry_agent_stats st;
    ferry_agent_stats_get(a, &st);
    assert_int_equal(st.requests, 0);
    cs_agent_finish(loop, a, 0);
    cs_loop_finish(loop);
}

/* ferry.h: "FERRY_EINVAL bad URL": every malformed URL, one code; a URL
 * with user:password@ is refused as unsupported (FERRY_ENOTSUP). */
static void test_bad_urls_einval(void **state)
{
    (void) state;
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, NULL);
    cs_result r = {0};
    ferry_request_options o;
    const char *bad_urls[] = {"http://",
                              "not a url",
                              "http://a b/",
                              "http://127.0.0.1:99999/",
                              "",
                              "/relative"};
    char wrong[512] = "";
    for (size_t i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++) {
        o = cs_opts("GET", bad_urls[i]);
        int rc = cs_request(a, &o, &r, false);
        if (rc == 0) fail_msg("URL \"%s\" was accepted", bad_urls[i]);
        if (rc != FERRY_EINVAL) {
            size_t n = strlen(wrong);
            snprintf(wrong + n, sizeof(wrong) - n, " \"%s\" → %s;", bad_urls[i],
                     ferry_err_name(rc));
        }
    }
    o = cs_opts("GET", "http://user:pw@127.0.0.1/");
    assert_int_equal(cs_request(a, &o, &r, false), FERRY_ENOTSUP);
    cs_run_for(loop, 10);
    assert_int_equal(r.done, 0);
    cs_agent_finish(loop, a, 0);
    cs_loop_finish(loop);
    if (wrong[0]) fail_msg("bad URLs must give FERRY_EINVAL (ferry.h), got:%s", wrong);
}

/* ---- addresses and names --------------------------------------------------------------- */

static void test_ipv6_literal(void **state)
{
    (void) state;
    raw_options ro = {0};
    ro.host = "::1";
    ro.script.body = "over ipv6";
    raw_server *s = raw_start(&ro);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = new_agent(loop, NULL);
    char url[64];
    snprintf(url, sizeof(url), "http://[::1]:%d/v6", raw_port(s));
    ferry_request_options o = cs_opts("GET", url);
    cs_result r = {0};
    run_req(loop, a, &o, &r);
    cs_assert_done(&r, 0);
    assert_string_equal(r.body, "over ipv6");
    ferry_agent_stats st;
    ferry_agent_stats_get(a, &st);
    assert_int_equal(st.dns_lookups, 0); /* a literal needs no resolver */
    char line[64];
    raw_request_line(s, 0, line, sizeof(line));
    assert_string_equal(line, "GET /v6");
    cs_agent_finish(loop, a, 0);
    cs_loop_finish(loop);
    raw_stop(s);
}

static void test_localhost_resolves_and_caches(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, cs_inspect_handler, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.max_idle_per_origin = 0; /* every request needs a new connection, so a new address */
    ferry_agent *a = new_agent(loop, &ao);
    char url[64], host[32];
    snprintf(url, sizeof(url), "http://localhost:%d/inspect", harness_port(h));
    snprintf(host, sizeof(host), "localhost:%d", harness_port(h));
    for (int i = 0; i < 3; i++) {
        ferry_request_options o = cs_opts("GET", url);
        cs_result r = {0};
        run_req(loop, a, &o, &r);
        cs_assert_done(&r, 0);
        assert_string_equal(field(&r, "host"), host);
    }
    ferry_agent_stats st;
    ferry_agent_stats_get(a, &st);
    print_message("localhost x3: dns_lookups %llu, cache hits %llu\n",
                  (unsigned long long) st.dns_lookups, (unsigned long long) st.dns_cache_hits);
    assert_int_equal(st.dns_lookups, 1);
    assert_int_equal(st.dns_cache_hits, 2);
    assert_int_equal(st.connections_opened, 3);
    cs_agent_finish(loop, a, 0);
    cs_loop_finish(loop);
    harness_stop(h);
}

/* Pooled idle sockets do not keep uv_run() from returning. */
static void test_idle_sockets_do_not_hold_the_loop(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, NULL, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.idle_timeout_ms = 3000;
    ferry_agent *a = new_agent(loop, &ao);
    ferry_request_options o = cs_opts("GET", cs_url(harness_port(h), "/"));
    cs_result r = {0};
    run_req(loop, a, &o, &r);
    cs_assert_done(&r, 0);
    ferry_agent_stats st;
    ferry_agent_stats_get(a, &st);
    assert_int_equal(st.sockets_idle, 1);
    double t0 = now_ms();
    uv_run(loop, UV_RUN_DEFAULT);
    double ms = now_ms() - t0;
    print_message("uv_run returned after %.0f ms with a pooled socket\n", ms);
    assert_true(ms < 1000);
    ferry_agent_stats_get(a, &st);
    assert_int_equal(st.sockets_idle, 1); /* still pooled: it was only unref'd */
    cs_agent_finish(loop, a, 0);
    cs_loop_finish(loop);
    harness_stop(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_option_defaults),
        cmocka_unit_test(test_get_and_fetch),
        cmocka_unit_test(test_response_head_fields),
        cmocka_unit_test(test_what_goes_on_the_wire),
        cmocka_unit_test(test_host_and_connection_close_headers),
        cmocka_unit_test(test_connection_close_pipelined_sent_once),
        cmocka_unit_test(test_no_keep_alive_sends_connection_close),
        cmocka_unit_test(test_form_encode),
        cmocka_unit_test(test_head_request),
        cmocka_unit_test(test_chunked_response),
        cmocka_unit_test(test_fetch_max_body_bytes),
        cmocka_unit_test(test_response_head_limits),
        cmocka_unit_test(test_max_requests_per_socket),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_synchronous_refusals),
        cmocka_unit_test(test_bad_urls_einval),
        cmocka_unit_test(test_ipv6_literal),
        cmocka_unit_test(test_localhost_resolves_and_caches),
        cmocka_unit_test(test_idle_sockets_do_not_hold_the_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
