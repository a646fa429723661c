/* test_server_pipelining.c — a pipelined burst to a slow reader, over a real
 * socket: 5000 GETs written in one go by a client with a small receive
 * buffer that starts reading 0.3 s later. The responses back up past the
 * server's pipelining bound (64 KiB of unwritten output pauses parsing) and
 * drain only as the client reads; parsing must resume every time. A server
 * that misses one resumption stalls until its headers timeout (before this
 * was fixed: 4790 of 5001 answered, then a 408 a minute later). */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "support/server_harness.h"

#define N_REQUESTS 5000
#define READ_BOUND_MS 10000 /* generous: the whole burst takes well under a second */

static int count(const char *s, size_t n, const char *what)
{
    int c = 0;
    size_t k = strlen(what);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(s + i, what, k) == 0)
            c++;
    return c;
}

static void test_burst_to_a_slow_reader(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, NULL, NULL);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    int small = 4096; /* set before connecting, so the window is small from the start */
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t) harness_port(h))};
    int rc = connect(fd, (struct sockaddr *) &a, sizeof(a));
    assert_true(rc == 0 || errno == EINPROGRESS);
    struct pollfd pw = {.fd = fd, .events = POLLOUT};
    assert_int_equal(poll(&pw, 1, 5000), 1);

    static const char one[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    static const char last[] = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    size_t len = N_REQUESTS * (sizeof(one) - 1) + sizeof(last) - 1;
    char *req = malloc(len);
    assert_non_null(req);
    for (size_t i = 0; i < N_REQUESTS; i++)
        memcpy(req + i * (sizeof(one) - 1), one, sizeof(one) - 1);
    memcpy(req + N_REQUESTS * (sizeof(one) - 1), last, sizeof(last) - 1);

    /* write what the socket takes for 0.3 s without reading */
    size_t sent = 0;
    double t0 = now_ms();
    while (sent < len && now_ms() - t0 < 300) {
        ssize_t w = send(fd, req + sent, len - sent, MSG_NOSIGNAL);
        if (w > 0)
            sent += (size_t) w;
        else
            poll(&pw, 1, 10);
    }
    while (now_ms() - t0 < 300)
        poll(NULL, 0, 10);

    /* now read everything (and send the rest as there is room) */
    size_t cap = 1 << 20, got = 0;
    char *rx = malloc(cap);
    assert_non_null(rx);
    double start = now_ms();
    bool eof = false;
    while (!eof && now_ms() - start < READ_BOUND_MS) {
        struct pollfd p = {.fd = fd, .events = POLLIN | (sent < len ? POLLOUT : 0)};
        if (poll(&p, 1, 100) <= 0)
            continue;
        if ((p.revents & POLLOUT) && sent < len) {
            ssize_t w = send(fd, req + sent, len - sent, MSG_NOSIGNAL);
            if (w > 0)
                sent += (size_t) w;
        }
        if (p.revents & (POLLIN | POLLHUP)) {
            if (got + 65536 > cap) {
                cap *= 2;
                rx = realloc(rx, cap);
                assert_non_null(rx);
            }
            ssize_t r = recv(fd, rx + got, 65536, 0);
            if (r == 0)
                eof = true;
            else if (r > 0)
                got += (size_t) r;
        }
    }
    int answered = count(rx, got, "HTTP/1.1 200 OK");
    if (answered != N_REQUESTS + 1 || !eof)
        fail_msg("%d of %d responses within %d ms (%s), %zu of %zu request bytes sent", answered,
                 N_REQUESTS + 1, READ_BOUND_MS, eof ? "then the close" : "no close", sent, len);
    assert_int_equal(count(rx, got, "HTTP/1.1 408"), 0);
    close(fd);
    free(rx);
    free(req);
    harness_stop(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_to_a_slow_reader),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
