/* test_server_emfile.c — accept under pressure: running out of file
 * descriptors (issue 3, Node bug #10: libuv's EMFILE trick accepts and closes
 * the excess connections, Node drops them silently) and max_connections.
 * Either way ferry stops accepting, leaves the waiting connections in the
 * listen backlog, counts the pause in stats, does not spin, and serves them
 * once a descriptor or a slot is free again. */
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
#include <sys/socket.h>
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

    /* Every client asks; the accepted ones are answered now. */
    for (int i = 0; i < CLIENTS; i++)
        tc_send(fds[i], "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    bool served[CLIENTS] = {0};
    int served_now = 0;
    double end = now_ms() + 1000;
    while (now_ms() < end) {
        struct pollfd p[CLIENTS];
        for (int i = 0; i < CLIENTS; i++)
            p[i] = (struct pollfd){served[i] ? -1 : fds[i], POLLIN, 0};
        if (poll(p, CLIENTS, 50) <= 0) continue;
        for (int i = 0; i < CLIENTS; i++) {
            if (p[i].fd < 0 || !p[i].revents) continue;
            tc_response r;
            int rc = tc_read_response(fds[i], &r);
            if (rc != 0)
                fail_msg("client %d: %s instead of a response (dropped from the backlog?)", i,
                         tc_result_name(rc));
            assert_int_equal(r.status, 200);
            tc_response_free(&r);
            served[i] = true;
            served_now++;
        }
    }
    assert_true(served_now >= 1 && served_now < CLIENTS);
    /* Free descriptors on both sides: close the served clients. */
    for (int i = 0; i < CLIENTS; i++)
        if (served[i]) tc_close(fds[i]);

    /* The ones that waited in the backlog were not dropped: each gets its answer. */
    for (int i = 0; i < CLIENTS; i++) {
        if (served[i]) continue;
        tc_response r;
        int rc = tc_read_response_ex(fds[i], &r, 0, 5000);
        if (rc != 0) fail_msg("client %d (waited in the backlog): %s", i, tc_result_name(rc));
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "hello, world");
        tc_response_free(&r);
        tc_close(fds[i]);
    }
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_emfile_pauses_accept_and_recovers, restore_nofile),
        cmocka_unit_test(test_max_connections_pauses_accept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
