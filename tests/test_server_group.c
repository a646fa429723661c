/* test_server_group.c — server groups (issue 11, "Many loops"): N loops on N
 * threads serving the same sockets, per-loop start/stop hooks and data,
 * stats summed, close/close_idle/post from another thread, the close
 * callback once after the last loop, both socket layouts (SO_REUSEPORT per
 * loop, one shared), a failed start, adopting sockets and handing them on
 * (an in-process restart under load: zero failed requests), and a server's
 * drain delay (draining, still serving, then the graceful close). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "ferry.h"
#include "support/server_harness.h"

enum { LOOPS = 2 };

typedef struct rig rig;

/* What a loop's start hook makes: the handler's data on that loop. */
typedef struct per_loop {
    rig *r;
    uint32_t index;
    uv_timer_t slow; /* /slow answers from a timer on this loop */
    ferry_res *slow_res;
    uv_thread_t thread;
} per_loop;

struct rig {
    atomic_int starts, stops, closes, posts_ran, posts_on_loop;
    int fail_start_at; /* the loop whose start hook fails; -1: none */
    per_loop *loops[LOOPS];
    atomic_int served[LOOPS];
    const char *tag;   /* in every response: which group answered */
};

static void on_slow(uv_timer_t *t)
{
    per_loop *pl = t->data;
    ferry_res_send(pl->slow_res, 200, "text/plain", "slow", 4);
    pl->slow_res = NULL;
}

/* "tag loop N"; /slow after 300 ms; /draining: 503 once the server drains. */
static void handler(ferry_req *req, ferry_res *res, void *data)
{
    per_loop *pl = data;
    atomic_fetch_add(&pl->r->served[pl->index], 1);
    ferry_str path = ferry_req_path(req);
    if (path.len == 5 && memcmp(path.p, "/slow", 5) == 0) {
        pl->slow_res = res;
        uv_timer_start(&pl->slow, on_slow, 300, 0);
        return;
    }
    if (path.len == 9 && memcmp(path.p, "/draining", 9) == 0) {
        int d = ferry_server_draining(ferry_req_server(req));
        ferry_res_send(res, d ? 503 : 200, "text/plain", d ? "draining" : "ok", d ? 8 : 2);
        return;
    }
    char body[48];
    int n = snprintf(body, sizeof(body), "%s loop %u", pl->r->tag, pl->index);
    ferry_res_send(res, 200, "text/plain", body, (size_t) n);
}

static int on_loop_start(ferry_server *s, uint32_t index, void *data)
{
    rig *r = data;
    if ((int) index == r->fail_start_at)
        return FERRY_ENOMEM;
    per_loop *pl = calloc(1, sizeof(*pl));
    pl->r = r;
    pl->index = index;
    pl->thread = uv_thread_self();
    uv_timer_init(ferry_server_loop(s), &pl->slow);
    pl->slow.data = pl;
    r->loops[index] = pl;
    ferry_server_set_data(s, pl);
    atomic_fetch_add(&r->starts, 1);
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_loop_stop(ferry_server *s, uint32_t index, void *data)
{
    rig *r = data;
    per_loop *pl = ferry_server_data(s);
    assert_ptr_equal(pl, r->loops[index]);
    uv_close((uv_handle_t *) &pl->slow, on_timer_closed); /* the loop ends after this */
    atomic_fetch_add(&r->stops, 1);
}

static void on_group_closed(ferry_group *g, void *data)
{
    (void) g;
    atomic_fetch_add(&((rig *) data)->closes, 1);
}

static ferry_group *group_new(rig *r, bool shared, const ferry_server_options *so)
{
    r->fail_start_at = r->fail_start_at ? r->fail_start_at : -1;
    if (!r->tag)
        r->tag = "a";
    ferry_group_options go;
    ferry_group_options_init(&go);
    go.loops = LOOPS;
    go.shared_listener = shared;
    go.on_loop_start = on_loop_start;
    go.on_loop_stop = on_loop_stop;
    ferry_server_options o;
    if (!so) {
        harness_options_init(&o);
        so = &o;
    }
    ferry_group *g;
    assert_int_equal(ferry_group_new(&go, so, handler, r, &g), 0);
    return g;
}

/* One request on a new connection: the loop that answered, or -1. */
static int which_loop(int port, const char *tag)
{
    int fd = tc_try_connect(port);
    if (fd < 0)
        return -1;
    tc_response resp;
    int loop = -1;
    tc_send(fd, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    if (tc_read_response(fd, &resp) == 0) {
        char want[8];
        unsigned n;
        if (resp.status == 200 && sscanf(resp.body, "%7s loop %u", want, &n) == 2 &&
            (!tag || strcmp(want, tag) == 0))
            loop = (int) n;
        tc_response_free(&resp);
    }
    tc_close(fd);
    return loop;
}

static void stop_group(ferry_group *g, rig *r)
{
    ferry_group_close(g, 1000, on_group_closed, r);
    assert_int_equal(ferry_group_wait(g), 0);
    assert_int_equal(atomic_load(&r->closes), 1);
    assert_int_equal(atomic_load(&r->stops), atomic_load(&r->starts));
    assert_int_equal(ferry_group_free(g), 0);
}

static void every_loop_serves(bool shared)
{
    rig r = {0};
    ferry_group *g = group_new(&r, shared, NULL);
    assert_int_equal(ferry_group_listen(g, "127.0.0.1", 0), 0);
    int port = ferry_group_port(g);
    assert_true(port > 0);
    assert_int_equal(ferry_group_start(g), 0);
    assert_int_equal(atomic_load(&r.starts), LOOPS);
    assert_false(uv_thread_equal(&r.loops[0]->thread, &r.loops[1]->thread));
    int per[LOOPS] = {0};
    /* new connections spread over the loops (by the kernel's hash, or by who
     * is free): with 200 of them, each loop gets some */
    for (int i = 0; i < 200; i++) {
        int l = which_loop(port, NULL);
        assert_true(l >= 0 && l < LOOPS);
        per[l]++;
        if (shared && per[0] && per[1])
            break;
    }
    print_message("%s: loop 0 %d, loop 1 %d connections\n", shared ? "shared" : "reuseport",
                  per[0], per[1]);
    if (!shared)
        assert_true(per[0] > 0 && per[1] > 0);
    /* stats are the loops' sum, each at most 100 ms old */
    int total = per[0] + per[1];
    ferry_server_stats st;
    for (int i = 0; i < 100; i++) {
        ferry_group_stats_get(g, &st);
        if (st.requests == (uint64_t) total)
            break;
        sleep_ms(20);
    }
    assert_int_equal(st.requests, total);
    assert_int_equal(st.connections_accepted, total);
    assert_int_equal(st.draining, 0);
    stop_group(g, &r);
}

static void test_reuseport_loops_share_the_connections(void **state)
{
    (void) state;
    every_loop_serves(false);
}

static void test_shared_listener_serves_too(void **state)
{
    (void) state;
    every_loop_serves(true);
}

typedef struct close_arg {
    ferry_group *g;
    rig *r;
} close_arg;

static void *close_from_thread(void *p)
{
    close_arg *a = p;
    sleep_ms(100);
    ferry_group_close(a->g, 5000, on_group_closed, a->r);
    ferry_group_close(a->g, 5000, on_group_closed, a->r); /* idempotent: cb still once */
    return NULL;
}

/* A close from another thread: idle connections go at once, an in-flight
 * response finishes with Connection: close, the callback runs once. */
static void test_close_from_another_thread_is_graceful(void **state)
{
    (void) state;
    rig r = {0};
    ferry_group *g = group_new(&r, false, NULL);
    assert_int_equal(ferry_group_listen(g, "127.0.0.1", 0), 0);
    int port = ferry_group_port(g);
    assert_int_equal(ferry_group_start(g), 0);
    int idle = tc_connect(port);
    tc_response resp;
    assert_tc_ok(tc_get(idle, "/", &resp));
    tc_response_free(&resp);
    int busy = tc_connect(port);
    tc_send(busy, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    sleep_ms(50);
    close_arg a = {g, &r};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, close_from_thread, &a), 0);
    assert_tc_eof(tc_expect_eof(idle, 2000), TC_FIN);
    assert_tc_ok(tc_read_response(busy, &resp));
    assert_int_equal(resp.status, 200);
    assert_true(tc_header_has_token(&resp, "Connection", "close"));
    tc_response_free(&resp);
    assert_true(ferry_group_draining(g));
    assert_int_equal(ferry_group_wait(g), 0);
    pthread_join(t, NULL);
    assert_int_equal(atomic_load(&r.closes), 1);
    assert_int_equal(atomic_load(&r.stops), LOOPS);
    assert_true(tc_try_connect(port) < 0); /* refused: nothing listens */
    tc_close(idle);
    tc_close(busy);
    assert_int_equal(ferry_group_free(g), 0);
}

static void on_post(ferry_server *s, int status, void *data)
{
    rig *r = data;
    if (status == 0) {
        per_loop *pl = ferry_server_data(s);
        uv_thread_t self = uv_thread_self();
        if (pl->index == 1 && uv_thread_equal(&self, &pl->thread))
            atomic_fetch_add(&r->posts_on_loop, 1);
    }
    atomic_fetch_add(&r->posts_ran, 1);
}

static void test_post_runs_on_the_loop_thread(void **state)
{
    (void) state;
    rig r = {0};
    ferry_group *g = group_new(&r, false, NULL);
    assert_int_equal(ferry_group_post(g, 1, on_post, &r), FERRY_ENOTCONN);
    assert_int_equal(ferry_group_listen(g, "127.0.0.1", 0), 0);
    assert_int_equal(ferry_group_start(g), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(ferry_group_post(g, 1, on_post, &r), 0);
    assert_int_equal(ferry_group_post(g, LOOPS, on_post, &r), FERRY_EINVAL);
    for (int i = 0; i < 200 && atomic_load(&r.posts_ran) < 100; i++)
        sleep_ms(10);
    assert_int_equal(atomic_load(&r.posts_on_loop), 100);
    stop_group(g, &r);
    /* posted after the end: refused, never run */
    assert_int_equal(atomic_load(&r.posts_ran), 100);
}

/* SO_REUSEPORT must not let a second group (or process) join the first's
 * sockets and split its traffic: the port is in use. */
static void test_reuseport_group_refuses_a_port_in_use(void **state)
{
    (void) state;
    rig ra = {0}, rb = {0};
    ferry_group *a = group_new(&ra, false, NULL);
    assert_int_equal(ferry_group_listen(a, "127.0.0.1", 0), 0);
    ferry_group *b = group_new(&rb, false, NULL);
    assert_int_equal(ferry_group_listen(b, "127.0.0.1", ferry_group_port(a)), FERRY_EADDRINUSE);
    assert_int_equal(ferry_group_free(b), 0);
    assert_int_equal(ferry_group_free(a), 0);
}

/* A start hook that fails: start says why, the loops that started stop
 * (their stop hooks run), nothing is left listening. */
static void test_failed_loop_start_stops_the_group(void **state)
{
    (void) state;
    rig r = {0};
    r.fail_start_at = 1;
    ferry_group *g = group_new(&r, false, NULL);
    assert_int_equal(ferry_group_listen(g, "127.0.0.1", 0), 0);
    int port = ferry_group_port(g);
    assert_int_equal(ferry_group_start(g), FERRY_ENOMEM);
    assert_int_equal(atomic_load(&r.starts), 1);
    assert_int_equal(atomic_load(&r.stops), 1);
    assert_true(tc_try_connect(port) < 0);
    assert_int_equal(ferry_group_free(g), 0);
}

/* ---- handing the sockets on: an in-process restart ---- */

typedef struct load {
    int port;
    atomic_bool stop;
    atomic_int ok, failed, from_b;
} load;

static void *load_main(void *p)
{
    load *l = p;
    while (!atomic_load(&l->stop)) {
        int fd = tc_try_connect(l->port);
        if (fd < 0) {
            atomic_fetch_add(&l->failed, 1);
            continue;
        }
        /* two requests per connection: the keep-alive one may meet the close */
        for (int k = 0; k < 2; k++) {
            tc_response resp;
            static const char get[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
            if (tc_try_send_n(fd, get, sizeof(get) - 1) != (ssize_t) sizeof(get) - 1) {
                atomic_fetch_add(&l->failed, 1);
                break;
            }
            int rc = tc_read_response(fd, &resp);
            if (rc != 0 || resp.status != 200) {
                if (rc == 0)
                    tc_response_free(&resp);
                atomic_fetch_add(&l->failed, 1);
                break;
            }
            atomic_fetch_add(&l->ok, 1);
            if (resp.body[0] == 'b')
                atomic_fetch_add(&l->from_b, 1);
            bool closing = tc_header_has_token(&resp, "Connection", "close");
            tc_response_free(&resp);
            if (closing)
                break; /* the server said so: a new connection, as any client does */
        }
        tc_close(fd);
    }
    return NULL;
}

/* Group a serves; its sockets go to group b (dups, as a child would get
 * them); b starts; a closes gracefully after a drain (ferry_group_drain). A client running
 * all along sees no failure: a stops accepting (what waits in the backlog
 * is b's), answers each kept-alive connection's next request with
 * Connection: close, and closes only what stayed silent through the delay. */
static void handoff(bool shared)
{
    rig ra = {0}, rb = {0};
    ra.tag = "a";
    rb.tag = "b";
    ferry_group *a = group_new(&ra, shared, NULL);
    assert_int_equal(ferry_group_listen(a, "127.0.0.1", 0), 0);
    assert_int_equal(ferry_group_start(a), 0);
    load l = {.port = ferry_group_port(a)};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, load_main, &l), 0);
    sleep_ms(150);
    int fds[16];
    int n = ferry_group_listener_fds(a, fds, 16);
    assert_int_equal(n, shared ? 1 : LOOPS);
    ferry_group *b = group_new(&rb, shared, NULL);
    for (int i = 0; i < n; i++)
        assert_int_equal(ferry_group_listen_fd(b, dup(fds[i])), 0);
    assert_int_equal(ferry_group_port(b), l.port);
    assert_int_equal(ferry_group_start(b), 0);
    ferry_group_drain(a, 200, 2000, on_group_closed, &ra); /* what a restart does */
    assert_int_equal(ferry_group_wait(a), 0);
    sleep_ms(150); /* b alone */
    atomic_store(&l.stop, true);
    pthread_join(t, NULL);
    print_message("%s: %d ok (%d from the new group), %d failed\n", shared ? "shared" : "reuseport",
                  atomic_load(&l.ok), atomic_load(&l.from_b), atomic_load(&l.failed));
    assert_int_equal(atomic_load(&l.failed), 0);
    assert_true(atomic_load(&l.from_b) > 0);
    assert_int_equal(ferry_group_free(a), 0);
    stop_group(b, &rb);
}

static void test_handoff_reuseport_loses_nothing(void **state)
{
    (void) state;
    handoff(false);
}

static void test_handoff_shared_loses_nothing(void **state)
{
    (void) state;
    handoff(true);
}

/* A hand-off that came to nothing (the new process died before it accepted):
 * once the sockets are reclaimed, a close drains them as if they had never
 * been handed on — a client arriving during the drain is served, where a
 * group that still thinks another process accepts would leave it in the
 * backlog until the socket closes under it. */
static void test_reclaimed_sockets_are_drained(void **state)
{
    (void) state;
    rig r = {0};
    ferry_server_options so;
    harness_options_init(&so);
    so.drain_delay_ms = 400;
    ferry_group *g = group_new(&r, false, &so);
    assert_int_equal(ferry_group_listen(g, "127.0.0.1", 0), 0);
    int port = ferry_group_port(g);
    assert_int_equal(ferry_group_start(g), 0);
    int fds[16];
    assert_int_equal(ferry_group_listener_fds(g, fds, 16), LOOPS);
    assert_int_equal(ferry_group_listeners_reclaim(g), 0);
    ferry_group_close(g, 1000, on_group_closed, &r);
    sleep_ms(50);
    assert_int_equal(ferry_group_listeners_reclaim(g), FERRY_ECLOSING);
    int fd = tc_connect(port);
    tc_response resp;
    assert_tc_ok(tc_get(fd, "/", &resp)); /* accepted and served while draining */
    assert_int_equal(resp.status, 200);
    assert_true(tc_header_has_token(&resp, "Connection", "close"));
    tc_response_free(&resp);
    tc_close(fd);
    assert_int_equal(ferry_group_wait(g), 0);
    assert_int_equal(atomic_load(&r.closes), 1);
    assert_int_equal(ferry_group_free(g), 0);
}

/* drain_delay_ms: a close first drains — draining is 1 (the health check
 * answers 503), everything is still served, new connections too, each
 * response with Connection: close (clients leave at a request boundary) —
 * and only then closes. */
static void test_drain_delay_serves_then_closes(void **state)
{
    (void) state;
    rig r = {0};
    ferry_server_options so;
    harness_options_init(&so);
    so.drain_delay_ms = 400;
    ferry_group *g = group_new(&r, false, &so);
    assert_int_equal(ferry_group_listen(g, "127.0.0.1", 0), 0);
    int port = ferry_group_port(g);
    assert_int_equal(ferry_group_start(g), 0);
    int fd = tc_connect(port);
    tc_response resp;
    assert_tc_ok(tc_get(fd, "/draining", &resp));
    assert_int_equal(resp.status, 200);
    tc_response_free(&resp);
    double t0 = now_ms();
    ferry_group_close(g, 1000, on_group_closed, &r);
    sleep_ms(50);
    assert_tc_ok(tc_get(fd, "/draining", &resp));
    assert_int_equal(resp.status, 503);
    assert_true(tc_header_has_token(&resp, "Connection", "close"));
    tc_response_free(&resp);
    assert_tc_eof(tc_expect_eof(fd, 1000), TC_FIN);
    int fd2 = tc_connect(port); /* still accepted while draining */
    assert_tc_ok(tc_get(fd2, "/", &resp));
    assert_int_equal(resp.status, 200);
    assert_true(tc_header_has_token(&resp, "Connection", "close"));
    tc_response_free(&resp);
    ferry_server_stats st;
    ferry_group_stats_get(g, &st);
    assert_int_equal(st.draining, 1);
    assert_int_equal(ferry_group_wait(g), 0);
    double ms = now_ms() - t0;
    if (ms < 380)
        fail_msg("closed %.0f ms after the close began; the drain delay is 400", ms);
    assert_int_equal(atomic_load(&r.closes), 1);
    tc_close(fd);
    tc_close(fd2);
    assert_int_equal(ferry_group_free(g), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuseport_loops_share_the_connections),
        cmocka_unit_test(test_shared_listener_serves_too),
        cmocka_unit_test(test_close_from_another_thread_is_graceful),
        cmocka_unit_test(test_post_runs_on_the_loop_thread),
        cmocka_unit_test(test_reuseport_group_refuses_a_port_in_use),
        cmocka_unit_test(test_failed_loop_start_stops_the_group),
        cmocka_unit_test(test_handoff_reuseport_loses_nothing),
        cmocka_unit_test(test_handoff_shared_loses_nothing),
        cmocka_unit_test(test_reclaimed_sockets_are_drained),
        cmocka_unit_test(test_drain_delay_serves_then_closes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
