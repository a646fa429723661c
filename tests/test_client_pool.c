/* test_client_pool.c — the agent's pool: the two guarantees of issue 4 that
 * are about sockets, and the pool's shape seen through its stats.
 *
 * (1) The pool stall: 2000 requests over 5 sockets whose callers never read
 *     the bodies all complete, on at most 5 connections.
 * (2) EMFILE: 2000 requests at once queue beyond max_total_sockets (set
 *     small, and the default budget under a lowered RLIMIT_NOFILE) and all
 *     complete; max_queue rejects synchronously with FERRY_EQUEUEFULL.
 * Plus LIFO reuse, per-origin and total limits, the idle cap, no keep-alive
 * (max_idle_per_origin 0), and ferry_agent_origin_stats_get.
 *
 * The servers are real ferry servers (server_harness.h) in threads; the
 * agent runs on this thread's loop. Every test ends with the agent closed
 * and uv_loop_close() == 0. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "ferry.h"
#include "support/client_support.h"
#include "support/server_harness.h"

enum { MANY = 2000 };

/* ---- many requests, counted (no per-request memory) ---------------------- */

typedef struct mass {
    ferry_agent *agent;
    int done, ok, failed, not_200;
    int first_error;
    uint64_t max_open; /* agent: sockets_active + sockets_idle, sampled at every response */
    uint64_t max_active;
    uint32_t max_attempts;
} mass;

static void mass_response(ferry_client_req *req, const ferry_response *r, void *data)
{
    mass *m = data;
    (void) req;
    if (r->status != 200) m->not_200++;
    if (r->attempts > m->max_attempts) m->max_attempts = r->attempts;
    ferry_agent_stats st;
    ferry_agent_stats_get(m->agent, &st);
    if (st.sockets_active + st.sockets_idle > m->max_open)
        m->max_open = st.sockets_active + st.sockets_idle;
    if (st.sockets_active > m->max_active) m->max_active = st.sockets_active;
}

static void mass_done(ferry_client_req *req, int status, void *data)
{
    mass *m = data;
    (void) req;
    m->done++;
    if (status == 0) {
        m->ok++;
    } else {
        m->failed++;
        if (!m->first_error) m->first_error = status;
    }
}

static const ferry_request_callbacks mass_cb = {mass_response, NULL, mass_done, NULL};

/* Issue n GETs of url at once; every one must be accepted. */
static void mass_fire(mass *m, const char *url, int n)
{
    ferry_request_options o = cs_opts("GET", url);
    for (int i = 0; i < n; i++) {
        int rc = ferry_request(m->agent, &o, &mass_cb, m, NULL);
        if (rc != 0) fail_msg("request %d of %d refused: %s", i, n, ferry_err_name(rc));
    }
}

static void mass_wait(uv_loop_t *loop, mass *m, int n, int timeout_ms)
{
    if (!cs_run_until(loop, &m->done, n, timeout_ms)) {
        cs_print_stats("stuck", m->agent);
        fail_msg("%d of %d requests done after %d ms (the pool stalled?)", m->done, n, timeout_ms);
    }
    if (m->failed)
        fail_msg("%d of %d requests failed, the first with %s (%s)", m->failed, n,
                 ferry_err_name(m->first_error), ferry_strerror(m->first_error));
    assert_int_equal(m->ok, n);
    assert_int_equal(m->not_200, 0);
}

/* ---- a server handler that records the most connections open at once ---- */

static atomic_uint_fast64_t server_max_active;

static void counting_handler(ferry_req *req, ferry_res *res, void *data)
{
    (void) data;
    ferry_server_stats st;
    ferry_server_stats_get(ferry_req_server(req), &st);
    uint64_t cur = atomic_load(&server_max_active);
    while (st.connections_active > cur &&
           !atomic_compare_exchange_weak(&server_max_active, &cur, st.connections_active)) {
    }
    ferry_res_send(res, 200, "text/plain", "counted", 7);
}

/* ---- (1) the pool stall ---------------------------------------------------- */

static void test_pool_stall_2000_unread_bodies_5_sockets(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, NULL, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.max_sockets_per_origin = 5;
    mass m = {0};
    assert_int_equal(ferry_agent_new(loop, &ao, &m.agent), 0);

    /* 20 KB bodies, nobody reads them (on_data NULL): each must be drained. */
    double t0 = now_ms();
    mass_fire(&m, cs_url(harness_port(h), "/big?bytes=20000"), MANY);
    mass_wait(loop, &m, MANY, 60000);
    print_message("2000 unread 20 KB bodies over 5 sockets: %.0f ms\n", now_ms() - t0);

    ferry_agent_stats st;
    ferry_agent_stats_get(m.agent, &st);
    cs_print_stats("pool stall", m.agent);
    assert_true(st.connections_opened <= 5);
    assert_true(m.max_open <= 5);
    assert_int_equal(st.completed, MANY);
    assert_int_equal(st.failed, 0);
    assert_int_equal(st.requests, MANY);
    ferry_server_stats ss;
    harness_stats(h, &ss);
    if (ss.connections_accepted > 5)
        fail_msg("the server saw %llu connections, at most 5 allowed",
                 (unsigned long long) ss.connections_accepted);
    assert_int_equal(ss.requests, MANY);

    cs_agent_finish(loop, m.agent, 0);
    cs_loop_finish(loop);
    harness_stop(h);
}

/* ---- (2) EMFILE: max_total_sockets, max_queue, the default budget ---------- */

static void test_2000_at_once_max_total_sockets_50(void **state)
{
    (void) state;
    atomic_store(&server_max_active, 0);
    harness *h = harness_start(NULL, counting_handler, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.max_total_sockets = 50;
    mass m = {0};
    assert_int_equal(ferry_agent_new(loop, &ao, &m.agent), 0);

    mass_fire(&m, cs_url(harness_port(h), "/"), MANY);
    ferry_agent_stats st;
    ferry_agent_stats_get(m.agent, &st);
    assert_int_equal(st.requests, MANY);
    assert_true(st.sockets_active + st.sockets_idle <= 50);
    mass_wait(loop, &m, MANY, 60000);

    ferry_agent_stats_get(m.agent, &st);
    cs_print_stats("max_total_sockets 50", m.agent);
    print_message("agent: at most %llu open; server: at most %llu connections at once\n",
                  (unsigned long long) m.max_open,
                  (unsigned long long) atomic_load(&server_max_active));
    assert_true(m.max_open <= 50);
    assert_true(st.connections_opened <= 50);
    assert_true(atomic_load(&server_max_active) <= 50);
    ferry_server_stats ss;
    harness_stats(h, &ss);
    assert_true(ss.connections_accepted <= 50);
    assert_int_equal(ss.requests, MANY);

    cs_agent_finish(loop, m.agent, 0);
    cs_loop_finish(loop);
    harness_stop(h);
}

static void test_max_queue_rejects_synchronously(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, NULL, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.max_sockets_per_origin = 1;
    ao.max_queue = 10;
    mass m = {0};
    assert_int_equal(ferry_agent_new(loop, &ao, &m.agent), 0);

    /* One request takes the only socket; 10 wait; the 12th is refused. */
    ferry_request_options o = cs_opts("GET", cs_url(harness_port(h), "/slow?ms=50"));
    int accepted = 0, rc = 0;
    while (accepted < 100 && (rc = ferry_request(m.agent, &o, &mass_cb, &m, NULL)) == 0)
        accepted++;
    assert_int_equal(rc, FERRY_EQUEUEFULL);
    assert_int_equal(m.done, 0); /* no callback for the refused one, none inside the calls */
    print_message("accepted %d with max_sockets_per_origin 1, max_queue 10\n", accepted);
    assert_int_equal(accepted, 11);
    ferry_agent_stats st;
    ferry_agent_stats_get(m.agent, &st);
    assert_int_equal(st.queue_rejected, 1);
    assert_int_equal(st.requests, 11);
    assert_int_equal(st.queued + st.sockets_active, 11);
    cs_result f = {0};
    assert_int_equal(cs_fetch(m.agent, &o, 0, &f), FERRY_EQUEUEFULL); /* fetch too */
    ferry_agent_stats_get(m.agent, &st);
    assert_int_equal(st.queue_rejected, 2);

    mass_wait(loop, &m, 11, 20000);
    /* The queue drained: requests are accepted again. */
    assert_int_equal(ferry_request(m.agent, &o, &mass_cb, &m, NULL), 0);
    mass_wait(loop, &m, 12, 20000);
    assert_int_equal(f.done, 0);
    ferry_agent_stats_get(m.agent, &st);
    assert_int_equal(st.completed, 12);
    assert_true(st.connections_opened <= 1);

    cs_agent_finish(loop, m.agent, 0);
    cs_loop_finish(loop);
    harness_stop(h);
}

/* The default max_total_sockets is RLIMIT_NOFILE's soft limit minus 64. The
 * server runs in a child process so that its sockets do not count against
 * this process's limit: with RLIMIT_NOFILE 256 here, 2000 requests at once
 * must all complete with at most 192 sockets and no EMFILE. */
typedef struct child_server {
    pid_t pid;
    int fd; /* our end of the socketpair */
    int port;
} child_server;

static void child_handler(ferry_req *req, ferry_res *res, void *data)
{
    (void) req;
    (void) data;
    ferry_res_send(res, 200, "text/plain", "child", 5);
}

typedef struct child_state {
    ferry_server *s;
    uv_poll_t poll;
    int fd;
    uint64_t max_active;
} child_state;

static void child_closed(ferry_server *s, void *data)
{
    (void) s;
    (void) data;
}

static void child_on_parent(uv_poll_t *p, int status, int events)
{
    child_state *c = p->data;
    (void) status;
    (void) events;
    ferry_server_stats st;
    ferry_server_stats_get(c->s, &st);
    char line[128];
    int n =
        snprintf(line, sizeof(line), "%llu %llu\n", (unsigned long long) st.connections_accepted,
                 (unsigned long long) st.requests);
    if (write(c->fd, line, (size_t) n) < 0) _exit(3);
    uv_poll_stop(p);
    uv_close((uv_handle_t *) p, NULL);
    ferry_server_close(c->s, 0, child_closed);
}

static void child_main(int fd)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) _exit(2);
    child_state c = {0};
    c.fd = fd;
    ferry_server_options so;
    ferry_server_options_init(&so);
    so.backlog = 4096;
    so.linger_timeout_ms = 0;
    if (ferry_server_new(&loop, &so, child_handler, NULL, &c.s) != 0) _exit(2);
    if (ferry_server_listen(c.s, "127.0.0.1", 0) != 0) _exit(2);
    int port = ferry_server_port(c.s);
    if (write(fd, &port, sizeof(port)) != sizeof(port)) _exit(2);
    uv_poll_init(&loop, &c.poll, fd);
    c.poll.data = &c;
    uv_poll_start(&c.poll, UV_READABLE | UV_DISCONNECT, child_on_parent);
    uv_run(&loop, UV_RUN_DEFAULT);
    ferry_server_free(c.s);
    _exit(uv_loop_close(&loop) == 0 ? 0 : 4);
}

static void child_server_start(child_server *cs)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(sv[0]);
        child_main(sv[1]);
    }
    close(sv[1]);
    cs->pid = pid;
    cs->fd = sv[0];
    assert_int_equal(read(cs->fd, &cs->port, sizeof(cs->port)), (ssize_t) sizeof(cs->port));
}

/* Ask the child to stop; returns its connections_accepted and requests. */
static void child_server_stop(child_server *cs, unsigned long long *accepted,
                              unsigned long long *requests)
{
    assert_int_equal(write(cs->fd, "x", 1), 1);
    char line[128] = {0};
    size_t got = 0;
    while (got < sizeof(line) - 1) {
        ssize_t n = read(cs->fd, line + got, sizeof(line) - 1 - got);
        if (n <= 0) break;
        got += (size_t) n;
        if (memchr(line, '\n', got)) break;
    }
    assert_int_equal(sscanf(line, "%llu %llu", accepted, requests), 2);
    close(cs->fd);
    int st = 0;
    assert_int_equal(waitpid(cs->pid, &st, 0), cs->pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_2000_at_once_default_budget_low_rlimit(void **state)
{
    (void) state;
    child_server cs;
    child_server_start(&cs);

    struct rlimit saved, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    low = saved;
    low.rlim_cur = 256;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);

    uv_loop_t *loop = cs_loop_new();
    mass m = {0};
    int rc = ferry_agent_new(loop, NULL, &m.agent); /* defaults: budget 256 - 64 = 192 */
    if (rc == 0) {
        mass_fire(&m, cs_url(cs.port, "/"), MANY);
        cs_run_until(loop, &m.done, MANY, 60000);
    }
    setrlimit(RLIMIT_NOFILE, &saved); /* before any assertion can leave this test */
    assert_int_equal(rc, 0);
    mass_wait(loop, &m, MANY, 1000);
    ferry_agent_stats st;
    ferry_agent_stats_get(m.agent, &st);
    cs_print_stats("default budget, RLIMIT_NOFILE 256", m.agent);
    print_message("agent: at most %llu sockets open\n", (unsigned long long) m.max_open);
    assert_true(m.max_open <= 192);
    assert_true(st.connections_opened <= 192);

    cs_agent_finish(loop, m.agent, 0);
    cs_loop_finish(loop);
    unsigned long long accepted = 0, requests = 0;
    child_server_stop(&cs, &accepted, &requests);
    print_message("child server: %llu connections, %llu requests\n", accepted, requests);
    assert_true(accepted <= 192);
    assert_int_equal(requests, MANY);
}

/* ---- LIFO reuse ------------------------------------------------------------ */

/* /port?ms=N: answer the client's port after N ms, so the test knows which
 * socket carried each request and in which order sockets were freed. */
typedef struct port_ctx {
    uv_timer_t timer;
    ferry_res *res;
    char body[16];
} port_ctx;

static void port_ctx_closed(uv_handle_t *h)
{
    free(h->data);
}

static void port_fire(uv_timer_t *t)
{
    port_ctx *p = t->data;
    ferry_res_send(p->res, 200, "text/plain", p->body, strlen(p->body));
    uv_close((uv_handle_t *) t, port_ctx_closed);
}

static void port_handler(ferry_req *req, ferry_res *res, void *data)
{
    (void) data;
    struct sockaddr_storage ss;
    int port = 0;
    if (ferry_req_peer(req, &ss) == 0)
        port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *) &ss)->sin_port
                                             : ((struct sockaddr_in6 *) &ss)->sin6_port);
    ferry_str q = ferry_req_query(req);
    unsigned ms = 0;
    if (q.p && q.len > 3 && memcmp(q.p, "ms=", 3) == 0)
        for (size_t i = 3; i < q.len && q.p[i] >= '0' && q.p[i] <= '9'; i++)
            ms = ms * 10 + (unsigned) (q.p[i] - '0');
    port_ctx *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    p->res = res;
    snprintf(p->body, sizeof(p->body), "%d", port);
    uv_timer_init(harness_loop(harness_self()), &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, port_fire, ms, 0);
}

static void test_lifo_reuse(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, port_handler, NULL);
    int port = harness_port(h);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a;
    assert_int_equal(ferry_agent_new(loop, NULL, &a), 0);

    /* Three sockets, freed in the order A (10 ms), B (80 ms), C (160 ms). */
    cs_result r[3];
    memset(r, 0, sizeof(r));
    int done = 0;
    const char *paths[3] = {"/port?ms=10", "/port?ms=80", "/port?ms=160"};
    for (int i = 0; i < 3; i++) {
        r[i].counter = &done;
        r[i].id = i;
        ferry_request_options o = cs_opts("GET", cs_url(port, paths[i]));
        assert_int_equal(cs_request(a, &o, &r[i], false), 0);
    }
    assert_true(cs_run_until(loop, &done, 3, 10000));
    for (int i = 0; i < 3; i++)
        cs_assert_done(&r[i], 0);
    assert_string_not_equal(r[0].body, r[1].body);
    assert_string_not_equal(r[1].body, r[2].body);
    ferry_agent_origin_stats os;
    assert_int_equal(ferry_agent_origin_stats_get(a, cs_url(port, "/"), &os), 0);
    assert_int_equal(os.idle, 3);
    assert_int_equal(os.active, 0);
    assert_int_equal(os.connections_opened, 3);

    /* Sequential requests: LIFO takes the most recently freed socket, C's, each time. */
    for (int k = 0; k < 3; k++) {
        cs_result s = {0};
        int d = 0;
        s.counter = &d;
        s.id = 10 + k;
        ferry_request_options o = cs_opts("GET", cs_url(port, "/port?ms=0"));
        assert_int_equal(cs_request(a, &o, &s, false), 0);
        assert_true(cs_run_until(loop, &d, 1, 10000));
        cs_assert_done(&s, 0);
        if (strcmp(s.body, r[2].body) != 0)
            fail_msg("sequential request %d used port %s; LIFO means the last freed socket (%s); "
                     "the others were %s (freed first) and %s",
                     k, s.body, r[2].body, r[0].body, r[1].body);
        assert_int_equal(s.reused, 1);
    }
    assert_int_equal(ferry_agent_origin_stats_get(a, cs_url(port, "/other?x"), &os), 0);
    assert_int_equal(os.connections_opened, 3);
    assert_int_equal(os.sockets_reused, 3);
    assert_int_equal(os.requests, 6);
    assert_int_equal(os.idle, 3);

    cs_agent_finish(loop, a, 0);
    cs_loop_finish(loop);
    harness_stop(h);
}

/* ---- per-origin and total limits, origin stats ------------------------------ */

typedef struct two_servers {
    harness *a, *b;
    uint64_t want;
} two_servers;

static bool both_saw(void *arg)
{
    two_servers *t = arg;
    return harness_handler_calls(t->a) + harness_handler_calls(t->b) >= t->want;
}

static void test_per_origin_and_total_limits(void **state)
{
    (void) state;
    two_servers t = {harness_start(NULL, NULL, NULL), harness_start(NULL, NULL, NULL), 3};
    int pa = harness_port(t.a), pb = harness_port(t.b);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.max_sockets_per_origin = 2;
    ao.max_total_sockets = 3;
    ferry_agent *a;
    assert_int_equal(ferry_agent_new(loop, &ao, &a), 0);

    cs_result r[6];
    memset(r, 0, sizeof(r));
    int done = 0;
    for (int i = 0; i < 6; i++) {
        r[i].counter = &done;
        r[i].id = i;
        ferry_request_options o = cs_opts("GET", cs_url(i < 4 ? pa : pb, "/slow?ms=300"));
        assert_int_equal(cs_request(a, &o, &r[i], false), 0);
    }
    /* Origin A gets its 2 sockets, B the third; the rest wait. */
    if (!cs_run_until_fn(loop, both_saw, &t, 10000)) fail_msg("the servers never saw 3 requests");
    cs_run_for(loop, 50);
    ferry_agent_origin_stats oa, ob, none;
    assert_int_equal(ferry_agent_origin_stats_get(a, cs_url(pa, "/"), &oa), 0);
    assert_int_equal(ferry_agent_origin_stats_get(a, cs_url(pb, "/"), &ob), 0);
    print_message("A: active %u queued %u; B: active %u queued %u\n", oa.active, oa.queued,
                  ob.active, ob.queued);
    assert_int_equal(oa.active, 2);
    assert_int_equal(oa.queued, 2);
    assert_int_equal(ob.active, 1);
    assert_int_equal(ob.queued, 1);
    ferry_agent_stats st;
    ferry_agent_stats_get(a, &st);
    assert_int_equal(st.sockets_active, 3);
    assert_int_equal(st.queued, 3);
    assert_int_equal(st.origins, 2);
    assert_int_equal(oa.connections_opened, 2);
    assert_int_equal(ob.connections_opened, 1);
    assert_int_equal(harness_handler_calls(t.a) + harness_handler_calls(t.b), 3);

    /* Unknown origin: zeros; bad URL: EINVAL. */
    memset(&none, 0xff, sizeof(none));
    assert_int_equal(ferry_agent_origin_stats_get(a, "http://127.0.0.1:1/", &none), 0);
    assert_int_equal(none.active + none.idle + none.queued, 0);
    assert_int_equal(none.connections_opened + none.sockets_reused + none.requests, 0);
    assert_int_equal(ferry_agent_origin_stats_get(a, "not a url", &none), FERRY_EINVAL);

    assert_true(cs_run_until(loop, &done, 6, 10000));
    for (int i = 0; i < 6; i++)
        cs_assert_done(&r[i], 0);
    ferry_agent_stats_get(a, &st);
    assert_true(st.sockets_active + st.sockets_idle <= 3);
    ferry_server_stats sa, sb;
    harness_stats(t.a, &sa);
    harness_stats(t.b, &sb);
    assert_true(sa.connections_accepted <= 2);
    assert_int_equal(sa.requests, 4);
    assert_int_equal(sb.requests, 2);
    /* An origin left with no socket is forgotten, its counters with it (ferry.h:
     * "all zero for an origin the agent does not know"): check A's while it lives. */
    assert_int_equal(ferry_agent_origin_stats_get(a, cs_url(pa, "/"), &oa), 0);
    print_message("after: A idle %u opened %llu reused %llu requests %llu\n", oa.idle,
                  (unsigned long long) oa.connections_opened,
                  (unsigned long long) oa.sockets_reused, (unsigned long long) oa.requests);
    if (oa.idle) {
        assert_int_equal(oa.connections_opened, 2);
        assert_int_equal(oa.sockets_reused, 2);
        assert_int_equal(oa.requests, 4); /* counted when sent (ferry.h does not say) */
    }

    cs_agent_finish(loop, a, 0);
    cs_loop_finish(loop);
    harness_stop(t.a);
    harness_stop(t.b);
}

static bool server_has_one_conn(void *arg)
{
    ferry_server_stats st;
    harness_stats(arg, &st);
    return st.connections_active == 1;
}

static void test_max_idle_per_origin(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, NULL, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.max_idle_per_origin = 1;
    ferry_agent *a;
    assert_int_equal(ferry_agent_new(loop, &ao, &a), 0);
    cs_result r[3];
    memset(r, 0, sizeof(r));
    int done = 0;
    for (int i = 0; i < 3; i++) {
        r[i].counter = &done;
        ferry_request_options o = cs_opts("GET", cs_url(harness_port(h), "/slow?ms=50"));
        assert_int_equal(cs_request(a, &o, &r[i], false), 0);
    }
    assert_true(cs_run_until(loop, &done, 3, 10000));
    for (int i = 0; i < 3; i++)
        cs_assert_done(&r[i], 0);
    ferry_agent_origin_stats os;
    assert_int_equal(ferry_agent_origin_stats_get(a, cs_url(harness_port(h), "/"), &os), 0);
    assert_int_equal(os.connections_opened, 3);
    assert_int_equal(os.idle, 1);
    assert_int_equal(os.active, 0);
    /* The server sees the two extra sockets close. */
    assert_true(cs_run_until_fn(loop, server_has_one_conn, h, 5000));
    cs_print_stats("max_idle_per_origin 1", a);
    cs_agent_finish(loop, a, 0);
    cs_loop_finish(loop);
    harness_stop(h);
}

static void test_no_keep_alive_when_max_idle_is_zero(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, NULL, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.max_idle_per_origin = 0;
    ferry_agent *a;
    assert_int_equal(ferry_agent_new(loop, &ao, &a), 0);
    for (int i = 0; i < 3; i++) {
        cs_result r = {0};
        int done = 0;
        r.counter = &done;
        ferry_request_options o = cs_opts("GET", cs_url(harness_port(h), "/"));
        assert_int_equal(cs_request(a, &o, &r, false), 0);
        assert_true(cs_run_until(loop, &done, 1, 10000));
        cs_assert_done(&r, 0);
        assert_int_equal(r.reused, 0);
        assert_string_equal(r.body, "hello, world");
    }
    ferry_agent_stats st;
    ferry_agent_stats_get(a, &st);
    assert_int_equal(st.connections_opened, 3);
    assert_int_equal(st.sockets_reused, 0);
    assert_int_equal(st.sockets_idle, 0);
    ferry_server_stats ss;
    harness_stats(h, &ss);
    assert_int_equal(ss.connections_accepted, 3);
    cs_agent_finish(loop, a, 0);
    cs_loop_finish(loop);
    harness_stop(h);
}

int main(void)
{
    raise_nofile_limit();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_stall_2000_unread_bodies_5_sockets),
        cmocka_unit_test(test_2000_at_once_max_total_sockets_50),
        cmocka_unit_test(test_max_queue_rejects_synchronously),
        cmocka_unit_test(test_2000_at_once_default_budget_low_rlimit),
        cmocka_unit_test(test_lifo_reuse),
        cmocka_unit_test(test_per_origin_and_total_limits),
        cmocka_unit_test(test_max_idle_per_origin),
        cmocka_unit_test(test_no_keep_alive_when_max_idle_is_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
