/* test_server_emfile.c — accept under pressure: running out of file
 * descriptors (issue 3, Node bug #10: libuv's EMFILE trick accepts and closes
 * the excess connections, Node drops them silently) and max_connections.
 * Either way ferry stops accepting, leaves the waiting connections in the
 * listen backlog, counts the pause in stats, does not spin, and serves them
 * once a descriptor or a slot is free again — out of descriptors, it frees
 * some by closing its idle keep-alive connections. And a server and an agent
 * sharing one process and a low limit (issue 13 item 4). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ferry.h"
#include "support/server_harness.h"

/* Timeouts that never interfere. */
static void long_options(ferry_server_options *o)
{
    harness_options_init(o);
    o->keep_alive_timeout_ms = 30000;
    o->headers_timeout_ms = 30000;
    o->request_timeout_ms = 30000;
}

/* The highest open descriptor number: RLIMIT_NOFILE bounds numbers, not counts. */
static int highest_open_fd(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int self = dirfd(d), max = -1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && atoi(e->d_name) != self && atoi(e->d_name) > max)
            max = atoi(e->d_name);
    closedir(d);
    return max;
}

/* CPU the whole process burns over ms of waiting: a spinning accept loop shows here. */
static double cpu_over(double ms)
{
    double c0 = process_cpu_ms();
    sleep_ms(ms);
    return process_cpu_ms() - c0;
}

enum { CLIENTS = 20, SPARE = 8, MAX_BALLAST = 4096 };

/* What the EMFILE test changed, undone by its teardown even when it fails. */
static struct rlimit saved;
static int ballast[MAX_BALLAST], nballast;

/* Teardown: give the process its descriptor limit back and drop the ballast. */
static int restore_nofile(void **state)
{
    (void) state;
    if (saved.rlim_cur) setrlimit(RLIMIT_NOFILE, &saved);
    for (int i = 0; i < nballast; i++)
        close(ballast[i]);
    nballast = 0;
    return 0;
}

static void test_emfile_pauses_accept_and_recovers(void **state)
{
    (void) state;
    ferry_server_options o;
    long_options(&o);
    harness *h = harness_start(&o, NULL, NULL);

    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    /* RLIMIT_NOFILE bounds descriptor numbers, not counts, and an inherited fd
     * may sit high above holes: fill every hole below it with ballast, so the
     * limit leaves exactly CLIENTS + SPARE free numbers. */
    int top = highest_open_fd();
    for (;;) {
        int fd = dup(0);
        assert_true(fd >= 0);
        if (fd > top || nballast == MAX_BALLAST) {
            close(fd);
            break;
        }
        ballast[nballast++] = fd;
    }
    rlim_t limit = (rlim_t) top + 1 + CLIENTS + SPARE;
    struct rlimit low = saved;
    low.rlim_cur = limit;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);

    /* Take the client descriptors first, so the server is the one that runs out. */
    int fds[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fds[i] < 0)
            fail_msg("client socket %d under a limit of %llu: %s", i, (unsigned long long) limit,
                     strerror(errno));
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t) harness_port(h))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {5, 0};
    for (int i = 0; i < CLIENTS; i++) {
        setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fds[i], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        /* Completes in the kernel (listen backlog) whether or not ferry accepts. */
        assert_int_equal(connect(fds[i], (struct sockaddr *) &sa, sizeof(sa)), 0);
    }
    bool paused = harness_wait_stat(h, accept_pauses_emfile, 1, 3000);
    ferry_server_stats st;
    harness_stats(h, &st);
    print_message("limit %llu: accepted %llu of %d, emfile pauses %llu\n",
                  (unsigned long long) limit, (unsigned long long) st.connections_accepted, CLIENTS,
                  (unsigned long long) st.accept_pauses_emfile);
    if (!paused) fail_msg("no accept pause counted for EMFILE");
    assert_true(st.connections_accepted < CLIENTS);

    /* Out of descriptors and waiting: no busy loop. */
    double cpu = cpu_over(500);
    print_message("CPU while out of descriptors: %.1f ms over 500 ms\n", cpu);
    assert_true(cpu < 150);

    /* Every client asks. The accepted ones are answered and go idle in
     * keep-alive; at the next retry the server closes those (its idle
     * connections are worth less than clients with a request) and accepts
     * the ones waiting in the backlog: all are answered, none dropped. */
    for (int i = 0; i < CLIENTS; i++)
        tc_send(fds[i], "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    for (int i = 0; i < CLIENTS; i++) {
        tc_response r;
        int rc = tc_read_response_ex(fds[i], &r, 0, 5000);
        if (rc != 0) fail_msg("client %d: %s instead of a response", i, tc_result_name(rc));
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "hello, world");
        tc_response_free(&r);
    }
    harness_stats(h, &st);
    print_message("idle connections shed: %llu\n", (unsigned long long) st.connections_shed_emfile);
    assert_true(st.connections_shed_emfile >= 1);
    for (int i = 0; i < CLIENTS; i++)
        tc_close(fds[i]);
    restore_nofile(NULL);
    harness_stats(h, &st);
    assert_int_equal(st.connections_accepted, CLIENTS);
    assert_true(st.accept_pauses_emfile >= 1);
    assert_int_equal(st.requests, CLIENTS);
    harness_stop(h);
}

static void test_max_connections_pauses_accept(void **state)
{
    (void) state;
    ferry_server_options o;
    long_options(&o);
    o.max_connections = 3;
    harness *h = harness_start(&o, NULL, NULL);
    int fds[5];
    for (int i = 0; i < 3; i++) {
        fds[i] = tc_connect(harness_port(h));
        tc_response r;
        assert_tc_ok(tc_get(fds[i], "/", &r));
        tc_response_free(&r);
    }
    for (int i = 3; i < 5; i++) {
        fds[i] = tc_connect(harness_port(h)); /* completes in the backlog */
        tc_send(fds[i], "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    /* Not served, not closed: waiting. (Node closes them at once.) */
    for (int i = 3; i < 5; i++) {
        tc_response r;
        int rc = tc_read_response_ex(fds[i], &r, 0, 300);
        if (rc != TC_ETIMEOUT)
            fail_msg("connection %d beyond max_connections: %s, expected to wait", i,
                     rc == 0 ? "served" : tc_result_name(rc));
    }
    ferry_server_stats st;
    harness_stats(h, &st);
    assert_int_equal(st.connections_active, 3);
    assert_int_equal(st.connections_accepted, 3);
    assert_true(st.accept_pauses_max_connections >= 1);
    double cpu = cpu_over(300);
    assert_true(cpu < 100);

    /* A slot frees: the oldest waiting connection is accepted and answered. */
    tc_close(fds[0]);
    tc_response r;
    assert_tc_ok(tc_read_response_ex(fds[3], &r, 0, 3000));
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
    assert_int_equal(tc_read_response_ex(fds[4], &r, 0, 200), TC_ETIMEOUT);
    tc_close(fds[1]);
    assert_tc_ok(tc_read_response_ex(fds[4], &r, 0, 3000));
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
    harness_stats(h, &st);
    assert_int_equal(st.connections_accepted, 5);
    assert_true(st.connections_active <= 3);
    for (int i = 2; i < 5; i++)
        tc_close(fds[i]);
    harness_stop(h);
}

/* ---- a server and an agent in one process under a low fd limit ---- */

enum { FD_LIMIT = 256, BURST = 2000 };

typedef struct burst {
    uv_loop_t loop;
    ferry_server *s;
    ferry_agent *a;
    int done, ok, failed, first_err;
} burst;

static void burst_handler(ferry_req *req, ferry_res *res, void *data)
{
    (void) req;
    (void) data;
    ferry_res_send(res, 200, "text/plain", "hello, world", 12);
}

static void burst_closed(ferry_server *s, void *data)
{
    (void) s;
    (void) data;
}

static void burst_agent_closed(ferry_agent *a, void *data)
{
    (void) a;
    (void) data;
}

static void burst_done(ferry_client_req *req, int status, const ferry_response *r, void *data)
{
    (void) req;
    burst *b = data;
    if (status == 0 && r->status == 200) {
        b->ok++;
    } else {
        b->failed++;
        if (!b->first_err)
            b->first_err = status ? status : r->status;
    }
    if (++b->done == BURST)
        ferry_agent_close(b->a, 0, burst_agent_closed, NULL);
}

/* Issue 13 item 4: 2000 requests at once from an agent to a server in the
 * same process (one loop), with `ulimit -n 256`. The agent's budget (the
 * limit less a reserve) does not know about the server's sockets, so the
 * server runs out first; connections it cannot accept used to wait for the
 * agent's 4 s idle timeout to free descriptors (8 s in all). Now the server
 * sheds its idle keep-alive connections on EMFILE and the agent lowers its
 * budget on EMFILE: no error, no idle timeout waited out. */
/* A server in a child process, for when the test's own process runs out of
 * descriptors on purpose. Returns its port; *pid is the child's. */
static int child_server(pid_t *pid)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    *pid = fork();
    assert_true(*pid >= 0);
    if (*pid == 0) {
        close(p[0]);
        uv_loop_t loop;
        ferry_server *s;
        ferry_server_options so;
        ferry_server_options_init(&so);
        so.keep_alive_timeout_ms = 30000;
        if (uv_loop_init(&loop) || ferry_server_new(&loop, &so, burst_handler, NULL, &s) ||
            ferry_server_listen(s, "127.0.0.1", 0) || ferry_server_on_signals(s, 0))
            _exit(1);
        int port = ferry_server_port(s);
        if (write(p[1], &port, sizeof(port)) != sizeof(port))
            _exit(1);
        close(p[1]);
        uv_run(&loop, UV_RUN_DEFAULT); /* until SIGTERM */
        _exit(0);
    }
    close(p[1]);
    int port = 0;
    assert_int_equal(read(p[0], &port, sizeof(port)), (ssize_t) sizeof(port));
    close(p[0]);
    return port;
}

/* Run BURST fetches from an agent to a server: on the same loop, or (fds_left
 * > 0) in a child process while ballast leaves this one fds_left descriptors
 * — far fewer than the agent's budget, which it made from the limit. */
static void run_burst(const char *what, int fds_left)
{
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    /* The limit bounds descriptor numbers: above an inherited high one, keep
     * FD_LIMIT numbers free (a test runner may hold a few up there). */
    int top = highest_open_fd();
    struct rlimit low = saved;
    low.rlim_cur = top < FD_LIMIT / 2 ? FD_LIMIT : (rlim_t) top + 1 + FD_LIMIT;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);

    burst b = {0};
    assert_int_equal(uv_loop_init(&b.loop), 0);
    pid_t child = 0;
    int port;
    if (fds_left) {
        port = child_server(&child);
    } else {
        ferry_server_options so;
        ferry_server_options_init(&so);
        so.keep_alive_timeout_ms = 30000; /* nothing times out during the test */
        assert_int_equal(ferry_server_new(&b.loop, &so, burst_handler, &b, &b.s), 0);
        assert_int_equal(ferry_server_listen(b.s, "127.0.0.1", 0), 0);
        port = ferry_server_port(b.s);
    }
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    assert_int_equal(ferry_agent_new(&b.loop, &ao, &b.a), 0);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    ferry_request_options ro;
    ferry_request_options_init(&ro);
    ro.url = url;
    /* the first request makes the agent's handles; then the ballast */
    assert_int_equal(ferry_fetch(b.a, &ro, 0, burst_done, &b, NULL), 0);
    uv_run(&b.loop, UV_RUN_NOWAIT);
    if (fds_left) {
        int fd;
        while (nballast < MAX_BALLAST && (fd = dup(0)) >= 0)
            ballast[nballast++] = fd;
        for (int i = 0; i < fds_left && nballast; i++)
            close(ballast[--nballast]);
    }
    double t0 = now_ms();
    for (int i = 1; i < BURST; i++)
        assert_int_equal(ferry_fetch(b.a, &ro, 0, burst_done, &b, NULL), 0);
    while (b.done < BURST && now_ms() - t0 < 20000)
        uv_run(&b.loop, UV_RUN_ONCE);
    double ms = now_ms() - t0;
    ferry_server_stats ss = {0};
    if (b.s)
        ferry_server_stats_get(b.s, &ss);
    ferry_agent_stats as;
    ferry_agent_stats_get(b.a, &as);
    print_message("%s: %d requests in %.0f ms; server: %llu accepted, %llu emfile pauses, "
                  "%llu idle shed; agent: %llu opened, %llu emfile budget cuts\n",
                  what, BURST, ms, (unsigned long long) ss.connections_accepted,
                  (unsigned long long) ss.accept_pauses_emfile,
                  (unsigned long long) ss.connections_shed_emfile,
                  (unsigned long long) as.connections_opened,
                  (unsigned long long) as.emfile_budget_cuts);
    if (child) {
        kill(child, SIGTERM);
        int wst;
        waitpid(child, &wst, 0);
    }
    if (b.done < BURST)
        fail_msg("%d of %d requests done after 20 s", b.done, BURST);
    if (b.failed)
        fail_msg("%d requests failed (first: %s)", b.failed,
                 b.first_err < 0 ? ferry_strerror(b.first_err) : "an HTTP status");
    /* The agent idle timeout is 4 s: finishing well under it shows nothing waited it out. */
    if (ms > 3000)
        fail_msg("%.0f ms: something waited out a timeout", ms);
    if (fds_left)
        assert_true(as.emfile_budget_cuts >= 1);
    else
        ferry_server_close(b.s, 0, burst_closed);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    if (b.s)
        assert_int_equal(ferry_server_free(b.s), 0);
    assert_int_equal(ferry_agent_free(b.a), 0);
    assert_int_equal(uv_loop_close(&b.loop), 0);
    restore_nofile(NULL);
}

/* Issue 13 item 4: 2000 requests at once from an agent to a server in the
 * same process (one loop), with `ulimit -n 256`. The agent's budget (the
 * limit less a reserve) does not know about the server's sockets, so the
 * server runs out first; connections it cannot accept used to wait for the
 * agent's 4 s idle timeout to free descriptors (8 s in all). Now the server
 * sheds its idle keep-alive connections on EMFILE: no error, no idle
 * timeout waited out. */
static void test_agent_and_server_in_one_process_under_256_fds(void **state)
{
    (void) state;
    run_burst("ulimit -n 256, one process", 0);
}

/* The agent is the one that runs out: 40 descriptors left against a budget
 * of ~190. EMFILE on a connect lowers the budget for a second and the request
 * waits for a socket instead of failing with EMFILE. */
static void test_agent_emfile_on_connect_queues(void **state)
{
    (void) state;
    run_burst("40 descriptors left to the agent", 40);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_emfile_pauses_accept_and_recovers, restore_nofile),
        cmocka_unit_test(test_max_connections_pauses_accept),
        cmocka_unit_test_teardown(test_agent_and_server_in_one_process_under_256_fds,
                                  restore_nofile),
        cmocka_unit_test_teardown(test_agent_emfile_on_connect_queues, restore_nofile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
