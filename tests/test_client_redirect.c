/* test_client_redirect.c — max_redirects: off by default, then 301/302/303/
 * 307/308 followed per RFC 9110 §15.4 against a ferry server: absolute and
 * relative Locations, method and body rules, the hop limit, credentials
 * dropped across origins, https targets followed, and retries still working
 * behind a redirect. */
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
#include "support/server_harness.h"

/* ---- the server (harness thread) ---- */

static int other_port; /* the second server, for cross-origin hops */

static bool path_is(ferry_req *req, const char *p)
{
    ferry_str s = ferry_req_path(req);
    return s.len == strlen(p) && memcmp(s.p, p, s.len) == 0;
}

static void redirect(ferry_res *res, int status, const char *to)
{
    ferry_res_set_header(res, "Location", to);
    ferry_res_send(res, status, "text/plain", "moved", 5);
}

static void on_echo_body(ferry_req *req, int status, const char *body, size_t len, void *data)
{
    (void) data;
    char out[512];
    ferry_str m = ferry_req_method(req);
    ferry_str ct = ferry_req_header(req, "content-type");
    int n = snprintf(out, sizeof(out), "%.*s len=%zu body=%.*s ct=%.*s", (int) m.len, m.p,
                     status == 0 ? len : 0, (int) (status == 0 ? len : 0), body, (int) ct.len,
                     ct.p ? ct.p : "");
    ferry_res_send(ferry_req_res(req), 200, "text/plain", out, (size_t) n);
}

static void app(ferry_req *req, ferry_res *res, void *data)
{
    (void) data;
    char to[128];
    if (path_is(req, "/moved"))
        redirect(res, 301, "/final");
    else if (path_is(req, "/found-abs")) {
        snprintf(to, sizeof(to), "http://127.0.0.1:%d/final", harness_port(harness_self()));
        redirect(res, 302, to);
    } else if (path_is(req, "/see-other"))
        redirect(res, 303, "/echo");
    else if (path_is(req, "/found"))
        redirect(res, 302, "/echo");
    else if (path_is(req, "/temp"))
        redirect(res, 307, "/echo");
    else if (path_is(req, "/perm"))
        redirect(res, 308, "/echo#frag");
    else if (path_is(req, "/a/rel"))
        redirect(res, 302, "next");
    else if (path_is(req, "/loop"))
        redirect(res, 302, "/loop");
    else if (path_is(req, "/tls"))
        redirect(res, 302, "https://127.0.0.1:1/x");
    else if (path_is(req, "/cross")) {
        snprintf(to, sizeof(to), "http://127.0.0.1:%d/headers", other_port);
        redirect(res, 302, to);
    } else if (path_is(req, "/dir/file")) {
        ferry_str q = ferry_req_query(req);
        if (!q.len)
            redirect(res, 302, "?page=2");
        else {
            int n = snprintf(to, sizeof(to), "file %.*s", (int) q.len, q.p);
            ferry_res_send(res, 200, "text/plain", to, (size_t) n);
        }
    } else if (path_is(req, "/ftp"))
        redirect(res, 302, "ftp://example.com/f");
    else if (path_is(req, "/broken"))
        redirect(res, 302, "http://[::1");
    else if (path_is(req, "/same"))
        redirect(res, 302, "/headers");
    else if (path_is(req, "/no-location"))
        ferry_res_send(res, 302, "text/plain", "nowhere", 7);
    else if (path_is(req, "/final"))
        ferry_res_send(res, 200, "text/plain", "final", 5);
    else if (path_is(req, "/a/next"))
        ferry_res_send(res, 200, "text/plain", "a-next", 6);
    else if (path_is(req, "/echo"))
        ferry_req_read_body(req, 0, on_echo_body, NULL);
    else if (path_is(req, "/headers")) {
        char out[256];
        ferry_str au = ferry_req_header(req, "authorization");
        ferry_str x = ferry_req_header(req, "x-keep");
        int n = snprintf(out, sizeof(out), "auth=%.*s x=%.*s", (int) au.len, au.p ? au.p : "",
                         (int) x.len, x.p ? x.p : "");
        ferry_res_send(res, 200, "text/plain", out, (size_t) n);
    } else
        ferry_res_send(res, 404, "text/plain", "no", 2);
}

/* ---- the client ---- */

typedef struct got {
    int done, status, http;
    uint32_t redirects;
    char url[256];
    char body[512];
} got;

static void on_fetched(ferry_client_req *req, int status, const ferry_response *r, void *data)
{
    (void) req;
    got *g = data;
    g->done++;
    g->status = status;
    if (r) {
        g->http = r->status;
        g->redirects = r->redirects;
        snprintf(g->url, sizeof(g->url), "%.*s", (int) r->url.len, r->url.p);
        snprintf(g->body, sizeof(g->body), "%.*s", (int) r->body.len, r->body.p ? r->body.p : "");
    }
}

static harness *h, *h2;
static int port;

static int setup(void **state)
{
    (void) state;
    h2 = harness_start(NULL, app, NULL);
    other_port = harness_port(h2);
    h = harness_start(NULL, app, NULL);
    port = harness_port(h);
    return 0;
}

static int teardown(void **state)
{
    (void) state;
    harness_stop(h);
    harness_stop(h2);
    return 0;
}

/* One fetch on a fresh loop and agent; returns what came back. */
static got fetch(const char *method, const char *path, const char *body, uint32_t max_redirects,
                 const ferry_header *hdrs, size_t nh)
{
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a;
    assert_int_equal(ferry_agent_new(loop, NULL, &a), 0);
    ferry_request_options o = cs_opts(method, cs_url(port, path));
    o.max_redirects = max_redirects;
    o.headers = hdrs;
    o.header_count = nh;
    if (body) {
        o.body = body;
        o.body_len = strlen(body);
        o.content_type = "text/x-test";
    }
    got g = {0};
    assert_int_equal(ferry_fetch(a, &o, 0, on_fetched, &g, NULL), 0);
    assert_true(cs_run_until(loop, &g.done, 1, 5000));
    assert_int_equal(g.done, 1);
    ferry_agent_stats st;
    ferry_agent_stats_get(a, &st);
    if (g.status == 0) /* a failure has no response to count them in */
        assert_int_equal(st.redirects, g.redirects);
    cs_agent_finish(loop, a, 0);
    cs_loop_finish(loop);
    return g;
}

static void test_off_by_default(void **state)
{
    (void) state;
    got g = fetch("GET", "/moved", NULL, 0, NULL, 0);
    assert_int_equal(g.status, 0);
    assert_int_equal(g.http, 301);
    assert_int_equal(g.redirects, 0);
    assert_string_equal(g.body, "moved");
}

static void test_301_and_absolute_302_followed(void **state)
{
    (void) state;
    got g = fetch("GET", "/moved", NULL, 5, NULL, 0);
    assert_int_equal(g.http, 200);
    assert_string_equal(g.body, "final");
    assert_int_equal(g.redirects, 1);
    assert_string_equal(g.url, cs_url(port, "/final"));
    g = fetch("GET", "/found-abs", NULL, 5, NULL, 0);
    assert_string_equal(g.body, "final");
}

static void test_relative_location(void **state)
{
    (void) state;
    got g = fetch("GET", "/a/rel", NULL, 5, NULL, 0);
    assert_int_equal(g.http, 200);
    assert_string_equal(g.body, "a-next");
}

static void test_303_and_302_post_become_get(void **state)
{
    (void) state;
    got g = fetch("POST", "/see-other", "payload", 5, NULL, 0);
    assert_string_equal(g.body, "GET len=0 body= ct=");
    g = fetch("POST", "/found", "payload", 5, NULL, 0);
    assert_string_equal(g.body, "GET len=0 body= ct=");
    g = fetch("PUT", "/found", "payload", 5, NULL, 0); /* only POST changes on 301/302 */
    assert_string_equal(g.body, "PUT len=7 body=payload ct=text/x-test");
}

static void test_307_308_keep_method_and_body(void **state)
{
    (void) state;
    got g = fetch("POST", "/temp", "payload", 5, NULL, 0);
    assert_string_equal(g.body, "POST len=7 body=payload ct=text/x-test");
    g = fetch("POST", "/perm", "payload", 5, NULL, 0); /* the fragment is not sent */
    assert_string_equal(g.body, "POST len=7 body=payload ct=text/x-test");
}

static void test_hop_limit(void **state)
{
    (void) state;
    got g = fetch("GET", "/loop", NULL, 3, NULL, 0);
    assert_int_equal(g.status, 0);
    assert_int_equal(g.http, 302); /* the fourth answer is handed over as it is */
    assert_int_equal(g.redirects, 3);
}

static void test_credentials_dropped_across_origins(void **state)
{
    (void) state;
    ferry_header hs[] = {{{"Authorization", 13}, {"Bearer t0k3n", 12}},
                         {{"X-Keep", 6}, {"yes", 3}}};
    got g = fetch("GET", "/cross", NULL, 5, hs, 2);
    assert_int_equal(g.http, 200);
    assert_string_equal(g.body, "auth= x=yes");
    /* within one origin the caller's Authorization goes along */
    g = fetch("GET", "/same", NULL, 5, hs, 2);
    assert_string_equal(g.body, "auth=Bearer t0k3n x=yes");
}

static void test_https_target_followed_and_no_location_delivered(void **state)
{
    (void) state;
    /* an https target is followed since TLS: port 1 refuses the connection */
    got g = fetch("GET", "/tls", NULL, 5, NULL, 0);
    assert_int_equal(g.status, FERRY_ECONNREFUSED);
    g = fetch("GET", "/no-location", NULL, 5, NULL, 0);
    assert_int_equal(g.status, 0);
    assert_int_equal(g.http, 302);
    assert_string_equal(g.body, "nowhere");
}

static void test_query_only_and_unfollowable_locations(void **state)
{
    (void) state;
    got g = fetch("GET", "/dir/file", NULL, 5, NULL, 0); /* "?page=2": same path, new query */
    assert_int_equal(g.http, 200);
    assert_string_equal(g.body, "file page=2");
    g = fetch("GET", "/ftp", NULL, 5, NULL, 0); /* another scheme: the 3xx is the answer */
    assert_int_equal(g.status, 0);
    assert_int_equal(g.http, 302);
    assert_int_equal(g.redirects, 0);
    g = fetch("GET", "/broken", NULL, 5, NULL, 0); /* not a URL: the 3xx is the answer */
    assert_int_equal(g.status, 0);
    assert_int_equal(g.http, 302);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off_by_default),
        cmocka_unit_test(test_301_and_absolute_302_followed),
        cmocka_unit_test(test_relative_location),
        cmocka_unit_test(test_303_and_302_post_become_get),
        cmocka_unit_test(test_307_308_keep_method_and_body),
        cmocka_unit_test(test_hop_limit),
        cmocka_unit_test(test_credentials_dropped_across_origins),
        cmocka_unit_test(test_https_target_followed_and_no_location_delivered),
        cmocka_unit_test(test_query_only_and_unfollowable_locations),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
