/* test_client_keepalive.c — guarantee 4 of issue 4: the keep-alive race is
 * never seen by the caller.
 *
 * Servers (raw_server.h) that close a kept-alive socket at the worst moment:
 *   - right after each response (FIN, no Connection: close), the next request
 *     issued at once from on_done;
 *   - a reset a few ms after each response, while the next request is unread;
 *   - an idle timeout equal to the client's request spacing;
 *   - requests waiting in the queue that are handed a socket the server is
 *     about to reset (Node's reusedSocket misses these);
 *   - the client's loop blocked while the server's FIN/RST arrives, then a
 *     request on the pooled socket (the check before reuse);
 * each over many requests with zero errors, and the stats show the stale
 * sockets that were caught. Plus the agent's own retirement of idle
 * sockets: Keep-Alive: timeout=1 (not pooled), a hint minus the margin, and
 * idle_timeout_ms, each counted in idle_closed. */
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

/* ---- a chain of sequential requests ------------------------------------------ */

typedef struct chain {
    uv_loop_t *loop;
    ferry_agent *agent;
    const char *url;
    int total; /* requests to make */
    int started, done, ok, errors, first_error;
    int reused;     /* responses with reused_socket */
    int spacing_ms; /* < 0: the next request from inside on_done; else a timer */
    int block_ms;   /* > 0: block the loop this long before each request after the first */
    uv_timer_t timer;
    int timer_init;
} chain;

static void chain_next(chain *c);

static void chain_response(ferry_client_req *req, const ferry_response *r, void *data)
{
    chain *c = data;
    (void) req;
    if (r->reused_socket) c->reused++;
}

static void chain_on_timer(uv_timer_t *t)
{
    chain *c = t->data;
    if (c->block_ms > 0) sleep_ms(c->block_ms); /* FIN/RST arrive while we are blind */
    chain_next(c);
}

static void chain_done(ferry_client_req *req, int status, void *data)
{
    chain *c = data;
    (void) req;
    c->done++;
    if (status == 0) {
        c->ok++;
    } else {
        c->errors++;
        if (!c->first_error) c->first_error = status;
    }
    if (c->started >= c->total) return;
    if (c->spacing_ms < 0)
        chain_next(c);
    else
        uv_timer_start(&c->timer, chain_on_timer, (uint64_t) c->spacing_ms, 0);
}

static const ferry_request_callbacks chain_cb = {chain_response, NULL, chain_done, NULL};

static void chain_next(chain *c)
{
    ferry_request_options o = cs_opts("GET", c->url);
    c->started++;
    int rc = ferry_request(c->agent, &o, &chain_cb, c, NULL);
    if (rc != 0) fail_msg("request %d refused: %s", c->started, ferry_err_name(rc));
}

/* Run total sequential requests to url; fail on any error. */
static void chain_run(chain *c, int timeout_ms)
{
    uv_timer_init(c->loop, &c->timer);
    c->timer.data = c;
    chain_next(c);
    bool finished = cs_run_until(c->loop, &c->done, c->total, timeout_ms);
    uv_close((uv_handle_t *) &c->timer, NULL);
    if (!finished) {
        cs_print_stats("stuck", c->agent);
        fail_msg("%d of %d sequential requests done after %d ms", c->done, c->total, timeout_ms);
    }
    if (c->errors)
        fail_msg("%d of %d requests failed, the first with %s (%s): the caller saw the race",
                 c->errors, c->total, ferry_err_name(c->first_error),
                 ferry_strerror(c->first_error));
    assert_int_equal(c->ok, c->total);
}

static void print_raw(const char *label, raw_server *s)
{
    raw_stats st;
    raw_stats_get(s, &st);
    print_message("%s: server saw %llu connections, %llu requests, closed %llu, reset %llu\n",
                  label, (unsigned long long) st.connections, (unsigned long long) st.requests,
                  (unsigned long long) st.server_closes, (unsigned long long) st.resets_sent);
}

/* Run the chain c on a new agent with the defaults, print what both sides
 * saw, and return the agent's stats. */
static ferry_agent_stats run_chain(chain *c, raw_server *s, const char *label, int timeout_ms)
{
    c->agent = cs_agent_new(c->loop, NULL);
    chain_run(c, timeout_ms);
    cs_print_stats(label, c->agent);
    print_raw(label, s);
    return cs_stats(c->agent);
}

/* ---- the races ------------------------------------------------------------------ */

static void test_fin_right_after_each_response(void **state)
{
    (void) state;
    raw_options ro = {0};
    ro.script.close_after = 1; /* FIN right after the response, no Connection: close */
    raw_server *s = raw_start(&ro);
    uv_loop_t *loop = cs_loop_new();
    chain c = {.loop = loop, .url = cs_url(raw_port(s), "/"), .total = 200, .spacing_ms = -1};
    ferry_agent_stats st = run_chain(&c, s, "FIN after each response", 60000);
    assert_int_equal(st.failed, 0);
    assert_int_equal(st.completed, 200);
    if (st.stale_retries + st.stale_detected == 0)
        fail_msg("200 requests, each on a socket the server closed right after the previous "
                 "response: no stale socket was detected or retried");
    cs_client_finish(loop, c.agent);
    raw_stop(s);
}

static void test_reset_shortly_after_each_response(void **state)
{
    (void) state;
    raw_options ro = {0};
    ro.script.close_after = 1;
    ro.script.close_delay_ms = 5; /* the next request arrives first, and is never read */
    ro.script.close_how = RAW_RST;
    raw_server *s = raw_start(&ro);
    uv_loop_t *loop = cs_loop_new();
    chain c = {.loop = loop, .url = cs_url(raw_port(s), "/"), .total = 200, .spacing_ms = -1};
    ferry_agent_stats st = run_chain(&c, s, "RST 5 ms after each response", 60000);
    assert_int_equal(st.failed, 0);
    if (st.stale_retries == 0)
        fail_msg("requests written on sockets the server then reset: stale_retries is 0");
    cs_client_finish(loop, c.agent);
    raw_stop(s);
}

static void test_idle_timeout_equals_request_spacing(void **state)
{
    (void) state;
    raw_options ro = {0};
    ro.script.idle_close_ms = 15; /* the server's keep-alive timeout ... */
    raw_server *s = raw_start(&ro);
    uv_loop_t *loop = cs_loop_new();
    /* ... equals the client's pause between a response and the next request */
    chain c = {.loop = loop, .url = cs_url(raw_port(s), "/"), .total = 200, .spacing_ms = 15};
    ferry_agent_stats st = run_chain(&c, s, "idle timeout = spacing", 60000);
    assert_int_equal(st.failed, 0);
    raw_stats rs;
    raw_stats_get(s, &rs);
    assert_true(rs.server_closes >= 1); /* the race was run: the server did close idle sockets */
    cs_client_finish(loop, c.agent);
    raw_stop(s);
}

/* Requests that waited in the queue are handed the socket the previous
 * response came on; the server resets it 3 ms later, their request unread. */
typedef struct many {
    int done, ok, errors, first_error, retried_responses;
} many;

static void many_response(ferry_client_req *req, const ferry_response *r, void *data)
{
    many *m = data;
    (void) req;
    if (r->attempts > 1) m->retried_responses++;
}

static void many_done(ferry_client_req *req, int status, void *data)
{
    many *m = data;
    (void) req;
    m->done++;
    if (status == 0)
        m->ok++;
    else if (!m->errors++)
        m->first_error = status;
}

static const ferry_request_callbacks many_cb = {many_response, NULL, many_done, NULL};

static void test_queued_requests_get_dead_reused_socket(void **state)
{
    (void) state;
    raw_options ro = {0};
    ro.script.close_after = 1;
    ro.script.close_delay_ms = 3;
    raw_server *s = raw_start(&ro);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.max_sockets_per_origin = 1;
    ferry_agent *a = cs_agent_new(loop, &ao);
    many m = {0};
    ferry_request_options o = cs_opts("GET", cs_url(raw_port(s), "/"));
    for (int i = 0; i < 50; i++)
        assert_int_equal(ferry_request(a, &o, &many_cb, &m, NULL), 0);
    if (!cs_run_until(loop, &m.done, 50, 60000)) fail_msg("%d of 50 done", m.done);
    ferry_agent_stats st = cs_stats(a);
    cs_print_stats("queued requests on dying sockets", a);
    print_raw("queued requests on dying sockets", s);
    if (m.errors)
        fail_msg("%d of 50 queued requests failed, the first with %s: a queued request handed a "
                 "dead kept-alive socket must be retried on a fresh one",
                 m.errors, ferry_err_name(m.first_error));
    assert_int_equal(m.ok, 50);
    if (st.stale_retries == 0)
        fail_msg("queued requests were written on sockets the server reset: stale_retries is 0");
    cs_client_finish(loop, a);
    raw_stop(s);
}

/* The client's loop is blocked while the server closes the idle socket; the
 * next request must not be lost on it (checked before reuse, or retried). */
static void blocked_loop_case(raw_close_how how)
{
    raw_options ro = {0};
    ro.script.idle_close_ms = 30;
    ro.script.close_how = how;
    raw_server *s = raw_start(&ro);
    uv_loop_t *loop = cs_loop_new();
    chain c = {.loop = loop,
               .url = cs_url(raw_port(s), "/"),
               .total = 6,
               .spacing_ms = 0,
               .block_ms = 150};
    ferry_agent_stats st =
        run_chain(&c, s, how == RAW_RST ? "blocked loop, RST" : "blocked loop, FIN", 30000);
    assert_int_equal(st.failed, 0);
    assert_int_equal(c.reused, 0); /* every pooled socket was dead: none may carry a response */
    if (st.stale_retries + st.stale_detected == 0)
        fail_msg("5 requests each found its pooled socket closed by the server while the loop "
                 "was blocked: stale_detected and stale_retries are both 0");
    cs_client_finish(loop, c.agent);
    raw_stop(s);
}

static void test_blocked_loop_fin_pending_at_reuse(void **state)
{
    (void) state;
    blocked_loop_case(RAW_FIN);
}

static void test_blocked_loop_rst_pending_at_reuse(void **state)
{
    (void) state;
    blocked_loop_case(RAW_RST);
}

/* ---- the agent retires idle sockets itself ------------------------------------ */

static bool raw_peer_closed(void *arg)
{
    raw_stats st;
    raw_stats_get(arg, &st);
    return st.peer_closes >= 1;
}

static void one_request(uv_loop_t *loop, ferry_agent *a, const char *url, cs_result *r)
{
    ferry_request_options o = cs_opts("GET", url);
    cs_run_request(loop, a, &o, r, 10000);
    cs_assert_done(r, 0);
}

static void not_pooled_case(const char *keep_alive)
{
    raw_options ro = {0};
    ro.script.keep_alive = keep_alive; /* N s - margin 1 s <= 0: do not pool */
    raw_server *s = raw_start(&ro);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = cs_agent_new(loop, NULL);
    cs_result r1 = {0}, r2 = {0};
    one_request(loop, a, cs_url(raw_port(s), "/"), &r1);
    ferry_agent_stats st = cs_stats(a);
    if (st.sockets_idle != 0) {
        cs_client_finish(loop, a); /* clean up first: the failure is the finding */
        raw_stop(s);
        fail_msg("Keep-Alive: %s leaves no time to reuse the socket, yet it was pooled",
                 keep_alive);
    }
    assert_true(cs_run_until_fn(loop, raw_peer_closed, s, 5000)); /* the client closed it */
    st = cs_stats(a);
    assert_int_equal(st.idle_closed, 1);
    one_request(loop, a, cs_url(raw_port(s), "/"), &r2);
    assert_int_equal(r2.reused, 0);
    st = cs_stats(a);
    assert_int_equal(st.connections_opened, 2);
    assert_int_equal(st.sockets_reused, 0);
    raw_stats rs;
    raw_stats_get(s, &rs);
    assert_int_equal(rs.connections, 2);
    cs_client_finish(loop, a);
    raw_stop(s);
}

/* ---- the race and requests that are not idempotent (RFC 9110 §9.2.2) ---------- */

/* On a kept-alive socket the server reads the second request whole and then
 * resets the connection, before any response byte. `method` with
 * `idempotent`; the request is retried on a fresh socket only when that
 * cannot apply it twice. */
static void read_then_reset(const char *method, int idempotent, int want, uint64_t want_requests)
{
    raw_options ro = {0};
    ro.error_first = 1; /* the first request: a plain 200, kept alive */
    ro.error_status = 200;
    ro.reset_first = 1; /* the second: read whole, then a reset */
    raw_server *s = raw_start(&ro);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = cs_agent_new(loop, NULL);
    cs_result first = {0}, second = {0};
    ferry_request_options o = cs_opts("GET", cs_url(raw_port(s), "/first"));
    cs_run_request(loop, a, &o, &first, 10000);
    cs_assert_done(&first, 0);
    ferry_request_options p = cs_opts(method, cs_url(raw_port(s), "/second"));
    p.idempotent = idempotent;
    p.body = "amount=10";
    p.body_len = 9;
    cs_run_request(loop, a, &p, &second, 10000);
    raw_stats rs;
    raw_stats_get(s, &rs);
    print_message("%s%s read whole, then reset: %s, server saw %llu requests\n", method,
                  idempotent ? " (idempotent)" : "",
                  second.status ? ferry_err_name(second.status) : "ok",
                  (unsigned long long) rs.requests);
    cs_assert_done(&second, want);
    assert_int_equal(rs.requests, want_requests);
    if (want == 0)
        assert_int_equal(cs_stats(a).stale_retries, 1);
    cs_client_finish(loop, a);
    raw_stop(s);
}

static void test_post_read_whole_then_reset_is_not_sent_twice(void **state)
{
    (void) state;
    read_then_reset("POST", 0, FERRY_EUNANSWERED, 2); /* the GET and the POST, once */
    read_then_reset("PATCH", 0, FERRY_EUNANSWERED, 2);
}

static void test_idempotent_read_whole_then_reset_is_replayed(void **state)
{
    (void) state;
    read_then_reset("PUT", 0, 0, 3);
    read_then_reset("POST", 1, 0, 3); /* the caller said it is safe */
}

/* A kept-alive socket whose server stops reading after its first answer and
 * closes a moment later: a 4 MiB POST cannot all reach the kernel, the
 * close (a RST: unread bytes) comes while the rest still waits, so the
 * server cannot have the request, and it goes again on a fresh socket,
 * where it is answered. */
static void test_post_not_all_written_is_replayed(void **state)
{
    (void) state;
    raw_script first = {0};
    first.close_after = 1; /* reading stops after the first answer... */
    first.close_delay_ms = 100; /* ...and the socket closes this long after it */
    raw_options ro = {0};
    ro.per_conn = &first;
    ro.nper_conn = 1;
    raw_server *s = raw_start(&ro);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = cs_agent_new(loop, NULL);
    cs_result r1 = {0}, r2 = {0};
    ferry_request_options o = cs_opts("GET", cs_url(raw_port(s), "/first"));
    cs_run_request(loop, a, &o, &r1, 10000);
    cs_assert_done(&r1, 0);
    size_t n = 4u << 20;
    char *body = malloc(n);
    assert_non_null(body);
    memset(body, 'p', n);
    ferry_request_options p = cs_opts("POST", cs_url(raw_port(s), "/upload"));
    p.body = body;
    p.body_len = n;
    cs_run_request(loop, a, &p, &r2, 20000);
    free(body);
    raw_stats rs;
    raw_stats_get(s, &rs);
    print_message("4 MiB POST on a socket closing under it: %s, attempts %u, server saw %llu "
                  "requests on %llu connections\n",
                  r2.status ? ferry_err_name(r2.status) : "ok", r2.attempts,
                  (unsigned long long) rs.requests, (unsigned long long) rs.connections);
    cs_assert_done(&r2, 0);
    assert_int_equal(r2.http_status, 200);
    assert_int_equal(rs.requests, 2); /* the GET, and the POST once, whole */
    assert_int_equal(rs.connections, 2);
    assert_int_equal(cs_stats(a).stale_retries, 1);
    cs_client_finish(loop, a);
    raw_stop(s);
}

static void test_keep_alive_timeout_1_is_not_pooled(void **state)
{
    (void) state;
    not_pooled_case("timeout=1");
}

/* timeout=0 is the server saying "I close idle sockets at once" (a ferry
 * server with keep_alive_timeout_ms under 1000 sends it): not "no hint". */
static void test_keep_alive_timeout_0_is_not_pooled(void **state)
{
    (void) state;
    not_pooled_case("timeout=0");
}

static void test_keep_alive_timeout_0_with_max_is_not_pooled(void **state)
{
    (void) state;
    not_pooled_case("timeout=0, max=100");
}

static void test_keep_alive_hint_minus_margin(void **state)
{
    (void) state;
    raw_options ro = {0};
    ro.script.keep_alive_hint = 2; /* 2000 - margin 1700 = pooled 300 ms */
    raw_server *s = raw_start(&ro);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.keep_alive_margin_ms = 1700;
    ferry_agent *a = cs_agent_new(loop, &ao);
    cs_result r1 = {0}, r2 = {0}, r3 = {0};
    one_request(loop, a, cs_url(raw_port(s), "/"), &r1);
    one_request(loop, a, cs_url(raw_port(s), "/"), &r2); /* within 300 ms: reused */
    assert_int_equal(r2.reused, 1);
    ferry_agent_stats st = cs_stats(a);
    assert_int_equal(st.sockets_idle, 1);
    double t0 = now_ms();
    assert_true(cs_run_until_fn(loop, raw_peer_closed, s, 5000));
    double ms = now_ms() - t0;
    print_message("pooled socket retired after %.0f ms (hint 2 s, margin 1.7 s)\n", ms);
    assert_true(ms >= 250 && ms < 1700);
    st = cs_stats(a);
    assert_int_equal(st.sockets_idle, 0);
    assert_int_equal(st.idle_closed, 1);
    one_request(loop, a, cs_url(raw_port(s), "/"), &r3);
    assert_int_equal(r3.reused, 0);
    cs_client_finish(loop, a);
    raw_stop(s);
}

static void test_idle_timeout_retires_pooled_socket(void **state)
{
    (void) state;
    raw_options ro = {0};
    ro.script.keep_alive_hint = 30; /* a long hint: idle_timeout_ms is the shorter */
    raw_server *s = raw_start(&ro);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.idle_timeout_ms = 150;
    ferry_agent *a = cs_agent_new(loop, &ao);
    cs_result r1 = {0}, r2 = {0};
    one_request(loop, a, cs_url(raw_port(s), "/"), &r1);
    double t0 = now_ms();
    assert_true(cs_run_until_fn(loop, raw_peer_closed, s, 5000));
    double ms = now_ms() - t0;
    print_message("idle socket retired after %.0f ms (idle_timeout_ms 150)\n", ms);
    assert_true(ms >= 100 && ms < 1500);
    ferry_agent_stats st = cs_stats(a);
    assert_int_equal(st.idle_closed, 1);
    assert_int_equal(st.sockets_idle, 0);
    one_request(loop, a, cs_url(raw_port(s), "/"), &r2);
    assert_int_equal(r2.reused, 0);
    cs_client_finish(loop, a);
    raw_stop(s);
}

/* Connection: close from the server: the socket is not pooled, and nothing fails. */
static void test_connection_close_response(void **state)
{
    (void) state;
    raw_options ro = {0};
    ro.script.connection_close = 1;
    raw_server *s = raw_start(&ro);
    uv_loop_t *loop = cs_loop_new();
    chain c = {.loop = loop, .url = cs_url(raw_port(s), "/"), .total = 20, .spacing_ms = -1};
    ferry_agent_stats st = run_chain(&c, s, "Connection: close from the server", 30000);
    assert_int_equal(st.sockets_reused, 0);
    assert_int_equal(st.connections_opened, 20);
    assert_int_equal(st.stale_retries, 0); /* nothing stale: the server said it would close */
    assert_int_equal(st.sockets_idle, 0);
    cs_client_finish(loop, c.agent);
    raw_stop(s);
}

/* Against a ferry server whose keep-alive timeout equals the spacing. */
static void test_ferry_server_keep_alive_equals_spacing(void **state)
{
    (void) state;
    ferry_server_options so;
    harness_options_init(&so);
    so.keep_alive_timeout_ms = 20;
    harness *h = harness_start(&so, NULL, NULL);
    uv_loop_t *loop = cs_loop_new();
    chain c = {.loop = loop, .url = cs_url(harness_port(h), "/"), .total = 150, .spacing_ms = 20};
    c.agent = cs_agent_new(loop, NULL);
    chain_run(&c, 60000);
    cs_print_stats("ferry server, keep-alive 20 ms = spacing", c.agent);
    ferry_server_stats ss;
    harness_stats(h, &ss);
    print_message("server: %llu connections, %llu keep-alive timeouts\n",
                  (unsigned long long) ss.connections_accepted,
                  (unsigned long long) ss.timeouts_keep_alive);
    cs_client_finish(loop, c.agent);
    harness_stop(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fin_right_after_each_response),
        cmocka_unit_test(test_reset_shortly_after_each_response),
        cmocka_unit_test(test_idle_timeout_equals_request_spacing),
        cmocka_unit_test(test_queued_requests_get_dead_reused_socket),
        cmocka_unit_test(test_blocked_loop_fin_pending_at_reuse),
        cmocka_unit_test(test_blocked_loop_rst_pending_at_reuse),
        cmocka_unit_test(test_post_read_whole_then_reset_is_not_sent_twice),
        cmocka_unit_test(test_idempotent_read_whole_then_reset_is_replayed),
        cmocka_unit_test(test_post_not_all_written_is_replayed),
        cmocka_unit_test(test_keep_alive_timeout_1_is_not_pooled),
        cmocka_unit_test(test_keep_alive_timeout_0_is_not_pooled),
        cmocka_unit_test(test_keep_alive_timeout_0_with_max_is_not_pooled),
        cmocka_unit_test(test_keep_alive_hint_minus_margin),
        cmocka_unit_test(test_idle_timeout_retires_pooled_socket),
        cmocka_unit_test(test_connection_close_response),
        cmocka_unit_test(test_ferry_server_keep_alive_equals_spacing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
