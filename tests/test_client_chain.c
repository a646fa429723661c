/* test_client_chain.c — a session kept the way a browser keeps it: an agent
 * with cookies = 1 against a ferry server with a login handler.
 *
 *   POST /login (form) → Set-Cookie: sid (HttpOnly) and theme (Path=/prefs)
 *   GET /me with the cookie → 200; POST /notes (form) with the cookie → 200
 *   the Path=/prefs cookie goes to /prefs only; a caller's own Cookie wins
 *   POST /logout → Set-Cookie: sid=; Max-Age=0 → GET /me → 401
 * and the same chain with cookies = 0 never sends a Cookie. */
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

/* ---- the server: a tiny session app (runs on the harness thread) ---------------- */

static bool path_is(ferry_req *req, const char *p)
{
    ferry_str s = ferry_req_path(req);
    return s.len == strlen(p) && memcmp(s.p, p, s.len) == 0;
}

static bool has_session(ferry_req *req)
{
    ferry_str c = ferry_req_header(req, "cookie");
    if (!c.p) return false;
    for (size_t i = 0; i + 10 <= c.len; i++)
        if (memcmp(c.p + i, "sid=abc123", 10) == 0 && (i == 0 || c.p[i - 1] == ' ')) return true;
    return false;
}

static void send_text(ferry_res *res, int status, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    ferry_res_send(res, status, "text/plain", buf, (size_t) n);
}

static void on_login_body(ferry_req *req, int status, const char *body, size_t len, void *data)
{
    (void) data;
    ferry_res *res = ferry_req_res(req);
    if (status < 0) {
        ferry_res_end(res);
        return;
    }
    /* user=alice&pass=s3cr%26t+%3D%21 is "alice" / "s3cr&t =!" form-encoded */
    static const char want[] = "user=alice&pass=s3cr%26t+%3D%21";
    if (len == sizeof(want) - 1 && memcmp(body, want, len) == 0) {
        ferry_res_add_header(res, "Set-Cookie", "sid=abc123; Path=/; HttpOnly");
        ferry_res_add_header(res, "Set-Cookie", "theme=dark; Path=/prefs");
        send_text(res, 200, "welcome alice");
    } else {
        send_text(res, 401, "bad login: %.*s", (int) len, body);
    }
}

static void on_notes_body(ferry_req *req, int status, const char *body, size_t len, void *data)
{
    (void) data;
    ferry_res *res = ferry_req_res(req);
    if (status < 0) {
        ferry_res_end(res);
        return;
    }
    if (!has_session(req)) {
        send_text(res, 401, "no session");
        return;
    }
    ferry_str ct = ferry_req_header(req, "content-type");
    send_text(res, 200, "saved %.*s as %.*s", (int) len, body, (int) ct.len, ct.p ? ct.p : "");
}

static void session_app(ferry_req *req, ferry_res *res, void *data)
{
    (void) data;
    ferry_str cookie = ferry_req_header(req, "cookie");
    if (path_is(req, "/login")) {
        ferry_req_read_body(req, 4096, on_login_body, NULL);
    } else if (path_is(req, "/me")) {
        if (has_session(req))
            send_text(res, 200, "alice; cookie=%.*s", (int) cookie.len, cookie.p);
        else
            send_text(res, 401, "who are you; cookie=%.*s", (int) cookie.len,
                      cookie.p ? cookie.p : "");
    } else if (path_is(req, "/notes")) {
        ferry_req_read_body(req, 4096, on_notes_body, NULL);
    } else if (path_is(req, "/prefs/view")) {
        send_text(res, 200, "cookie=%.*s", (int) cookie.len, cookie.p ? cookie.p : "");
    } else if (path_is(req, "/logout")) {
        ferry_res_add_header(res, "Set-Cookie", "sid=; Path=/; Max-Age=0");
        send_text(res, 200, "bye");
    } else {
        send_text(res, 404, "no such page");
    }
}

/* ---- the client ------------------------------------------------------------------ */

static void step(uv_loop_t *loop, ferry_agent *a, const char *method, const char *url,
                 const char *form_body, const ferry_header *hs, size_t nh, cs_result *r)
{
    ferry_request_options o = cs_opts(method, url);
    if (form_body) {
        o.body = form_body;
        o.body_len = strlen(form_body);
        o.content_type = "application/x-www-form-urlencoded";
    }
    o.headers = hs;
    o.header_count = nh;
    int done = 0;
    r->counter = &done;
    assert_int_equal(cs_fetch(a, &o, 0, r), 0);
    if (!cs_run_until(loop, &done, 1, 10000)) fail_msg("%s %s did not end", method, url);
    r->counter = NULL;
    cs_assert_done(r, 0);
    print_message("%s %s → %d %s\n", method, strchr(url + 7, '/'), r->http_status, r->body);
}

/* An agent with the default options but its cookie jar on or off. */
static ferry_agent *cookie_agent(uv_loop_t *loop, int cookies)
{
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.cookies = cookies;
    return cs_agent_new(loop, &ao);
}

static char *form(const char *const *pairs, size_t n)
{
    char *s = NULL;
    size_t len = 0;
    assert_int_equal(ferry_form_encode(pairs, n, &s, &len), 0);
    return s;
}

static void test_login_chain_keeps_the_session(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, session_app, NULL);
    int port = harness_port(h);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = cookie_agent(loop, 1);

    cs_result r1 = {0}, r2 = {0}, r3 = {0}, r4 = {0}, r5 = {0}, r6 = {0}, r7 = {0}, r0 = {0};
    step(loop, a, "GET", cs_url(port, "/me"), NULL, NULL, 0, &r0);
    assert_int_equal(r0.http_status, 401); /* no session yet */

    const char *login[] = {"user", "alice", "pass", "s3cr&t =!"};
    char *body = form(login, 2);
    step(loop, a, "POST", cs_url(port, "/login"), body, NULL, 0, &r1);
    free(body);
    assert_int_equal(r1.http_status, 200);
    assert_string_equal(r1.body, "welcome alice");

    step(loop, a, "GET", cs_url(port, "/me"), NULL, NULL, 0, &r2);
    assert_int_equal(r2.http_status, 200);
    assert_string_equal(r2.body, "alice; cookie=sid=abc123"); /* not theme: Path=/prefs */

    const char *note[] = {"text", "hello world", "tag", "a&b"};
    body = form(note, 2);
    step(loop, a, "POST", cs_url(port, "/notes"), body, NULL, 0, &r3);
    free(body);
    assert_int_equal(r3.http_status, 200);
    assert_string_equal(r3.body,
                        "saved text=hello+world&tag=a%26b as application/x-www-form-urlencoded");

    step(loop, a, "GET", cs_url(port, "/prefs/view"), NULL, NULL, 0, &r4);
    assert_int_equal(r4.http_status, 200);
    /* RFC 6265 §5.4: longer paths first */
    assert_string_equal(r4.body, "cookie=theme=dark; sid=abc123");

    ferry_header own[] = {{{"Cookie", 6}, {"sid=other", 9}}};
    step(loop, a, "GET", cs_url(port, "/me"), NULL, own, 1, &r5);
    assert_int_equal(r5.http_status, 401); /* the caller's Cookie wins */
    assert_string_equal(r5.body, "who are you; cookie=sid=other");

    step(loop, a, "POST", cs_url(port, "/logout"), NULL, NULL, 0, &r6);
    assert_int_equal(r6.http_status, 200);
    step(loop, a, "GET", cs_url(port, "/me"), NULL, NULL, 0, &r7);
    assert_int_equal(r7.http_status, 401);
    assert_string_equal(r7.body, "who are you; cookie=");

    ferry_agent_stats st = cs_stats(a);
    assert_int_equal(st.completed, 8);
    assert_int_equal(st.connections_opened, 1); /* one kept-alive socket for the whole chain */
    cs_client_finish(loop, a);
    harness_stop(h);
}

static void test_cookies_off_sends_none(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, session_app, NULL);
    int port = harness_port(h);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = cookie_agent(loop, 0); /* the default */
    cs_result r1 = {0}, r2 = {0};
    step(loop, a, "POST", cs_url(port, "/login"), "user=alice&pass=s3cr%26t+%3D%21", NULL, 0, &r1);
    assert_int_equal(r1.http_status, 200);
    step(loop, a, "GET", cs_url(port, "/me"), NULL, NULL, 0, &r2);
    assert_int_equal(r2.http_status, 401);
    assert_string_equal(r2.body, "who are you; cookie=");
    cs_client_finish(loop, a);
    harness_stop(h);
}

/* Two agents, two jars: a session in one is not visible to the other. */
static void test_jars_are_per_agent(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, session_app, NULL);
    int port = harness_port(h);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = cookie_agent(loop, 1);
    ferry_agent *b = cookie_agent(loop, 1);
    cs_result r1 = {0}, r2 = {0}, r3 = {0};
    step(loop, a, "POST", cs_url(port, "/login"), "user=alice&pass=s3cr%26t+%3D%21", NULL, 0, &r1);
    step(loop, a, "GET", cs_url(port, "/me"), NULL, NULL, 0, &r2);
    step(loop, b, "GET", cs_url(port, "/me"), NULL, NULL, 0, &r3);
    assert_int_equal(r2.http_status, 200);
    assert_int_equal(r3.http_status, 401);
    cs_agent_finish(loop, a, 0);
    cs_agent_finish(loop, b, 0);
    cs_loop_finish(loop);
    harness_stop(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_login_chain_keeps_the_session),
        cmocka_unit_test(test_cookies_off_sends_none),
        cmocka_unit_test(test_jars_are_per_agent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
