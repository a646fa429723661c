/* test_server_listen.c — where a server listens (IPv4, IPv6, unix sockets,
 * port 0), listen errors, and two request shapes at the edge of what ferry
 * serves: an Upgrade offer (declined by answering in HTTP/1.1) and CONNECT
 * (501). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cmocka.h>

#include "support/server_harness.h"

static void hello(ferry_req *req, ferry_res *res, void *data)
{
    (void) req;
    (void) data;
    ferry_res_send(res, 200, "text/plain", "hello, world", 12);
}

/* A blocking client on its own thread: connect to `addr`, send one request,
 * keep the response, then wake the loop. */
typedef struct {
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char response[512];
    uv_async_t done;
} client_job;

static void *client_thread(void *arg)
{
    client_job *j = arg;
    int fd = socket(j->addr.ss_family, SOCK_STREAM, 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (fd >= 0 && connect(fd, (struct sockaddr *) &j->addr, j->addr_len) == 0) {
        const char *req = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        if (send(fd, req, strlen(req), 0) > 0) {
            size_t got = 0;
            ssize_t n;
            while (got < sizeof(j->response) - 1 &&
                   (n = recv(fd, j->response + got, sizeof(j->response) - 1 - got, 0)) > 0)
                got += (size_t) n;
            j->response[got] = 0;
        }
    }
    if (fd >= 0)
        close(fd);
    uv_async_send(&j->done);
    return NULL;
}

static void on_closed(ferry_server *s, void *data)
{
    (void) s;
    (void) data;
}

static void on_client_done(uv_async_t *a)
{
    ferry_server *s = a->data;
    uv_close((uv_handle_t *) a, NULL);
    ferry_server_close(s, 0, on_closed);
}

/* Serve one request from a client thread on `s`, then close; the loop must end clean. */
static void serve_one(uv_loop_t *loop, ferry_server *s, client_job *j)
{
    pthread_t t;
    uv_async_init(loop, &j->done, on_client_done);
    j->done.data = s;
    assert_int_equal(pthread_create(&t, NULL, client_thread, j), 0);
    uv_run(loop, UV_RUN_DEFAULT);
    pthread_join(t, NULL);
    assert_int_equal(ferry_server_free(s), 0);
    assert_int_equal(uv_loop_close(loop), 0);
}

static void test_ipv6_loopback(void **state)
{
    (void) state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    ferry_server *s;
    assert_int_equal(ferry_server_new(&loop, NULL, hello, NULL, &s), 0);
    int rc = ferry_server_listen(s, "::1", 0);
    if (rc == FERRY_EADDRNOTAVAIL || rc == UV_EAFNOSUPPORT) {
        ferry_server_free(s);
        uv_loop_close(&loop);
        skip(); /* no IPv6 loopback in this sandbox */
    }
    assert_int_equal(rc, 0);
    assert_true(ferry_server_port(s) > 0);
    client_job j;
    memset(&j, 0, sizeof(j));
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *) &j.addr;
    uv_ip6_addr("::1", ferry_server_port(s), a6);
    j.addr_len = sizeof(*a6);
    serve_one(&loop, s, &j);
    assert_non_null(strstr(j.response, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(j.response, "hello, world"));
}

/* A name listens on every address it resolves to ("localhost" here: the
 * loopback address /etc/hosts gives it), on one port. */
static void test_listen_name(void **state)
{
    (void) state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    ferry_server *s;
    assert_int_equal(ferry_server_new(&loop, NULL, hello, NULL, &s), 0);
    assert_int_equal(ferry_server_listen(s, "localhost", 0), 0);
    assert_true(ferry_server_port(s) > 0);
    client_job j;
    memset(&j, 0, sizeof(j));
    struct sockaddr_in *a4 = (struct sockaddr_in *) &j.addr;
    uv_ip4_addr("127.0.0.1", ferry_server_port(s), a4);
    j.addr_len = sizeof(*a4);
    serve_one(&loop, s, &j);
    assert_non_null(strstr(j.response, "hello, world"));
}

static void test_unix_socket(void **state)
{
    (void) state;
    char path[64];
    snprintf(path, sizeof(path), "/tmp/ferry-test-%d.sock", (int) getpid());
    unlink(path);
    uv_loop_t loop;
    uv_loop_init(&loop);
    ferry_server *s;
    assert_int_equal(ferry_server_new(&loop, NULL, hello, NULL, &s), 0);
    assert_int_equal(ferry_server_listen_unix(s, path), 0);
    assert_true(ferry_server_port(s) < 0); /* no TCP port */
    client_job j;
    memset(&j, 0, sizeof(j));
    struct sockaddr_un *un = (struct sockaddr_un *) &j.addr;
    un->sun_family = AF_UNIX;
    strcpy(un->sun_path, path);
    j.addr_len = sizeof(*un);
    serve_one(&loop, s, &j);
    unlink(path);
    assert_non_null(strstr(j.response, "hello, world"));
    assert_non_null(strstr(j.response, "Connection: close"));
}

static void test_listen_errors_and_port_zero(void **state)
{
    (void) state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    ferry_server *s, *t;
    /* a server that never listened can be freed at once */
    assert_int_equal(ferry_server_new(&loop, NULL, hello, NULL, &t), 0);
    /* a malformed IPv6 literal is refused without a lookup (names resolve:
     * see test_listen_name) */
    assert_int_equal(ferry_server_listen(t, "1::zz", 0), FERRY_EINVAL);
    assert_int_equal(ferry_server_listen(t, "", 0), FERRY_EINVAL);
    assert_int_equal(ferry_server_listen(t, "127.0.0.1", 70000), FERRY_EINVAL);
    assert_int_equal(ferry_server_port(t), FERRY_ENOTCONN);
    assert_int_equal(ferry_server_free(t), 0);
    assert_int_equal(ferry_server_new(&loop, NULL, NULL, NULL, &t), FERRY_EINVAL);

    assert_int_equal(ferry_server_new(&loop, NULL, hello, NULL, &s), 0);
    assert_int_equal(ferry_server_listen(s, NULL, 0), 0); /* NULL: 127.0.0.1 */
    int port = ferry_server_port(s);
    assert_true(port > 0 && port < 65536);
    assert_int_equal(ferry_server_listen(s, "127.0.0.1", 0), FERRY_EALREADY);
    /* the port is taken: a second server cannot bind it */
    assert_int_equal(ferry_server_new(&loop, NULL, hello, NULL, &t), 0);
    assert_int_equal(ferry_server_listen(t, "127.0.0.1", port), FERRY_EADDRINUSE);
    assert_int_equal(ferry_server_free(t), 0);
    /* listening and not closed: free refuses */
    assert_int_equal(ferry_server_free(s), FERRY_EBUSY);
    client_job j;
    memset(&j, 0, sizeof(j));
    struct sockaddr_in *a4 = (struct sockaddr_in *) &j.addr;
    uv_ip4_addr("127.0.0.1", port, a4);
    j.addr_len = sizeof(*a4);
    serve_one(&loop, s, &j);
    assert_non_null(strstr(j.response, "hello, world"));
}

static void test_upgrade_offer_is_declined_in_http11(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, hello, NULL);
    int fd = tc_connect(harness_port(h));
    tc_send(fd, "GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n");
    tc_response r;
    assert_int_equal(tc_read_response(fd, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello, world");
    tc_response_free(&r);
    /* and the connection goes on in HTTP/1.1 */
    assert_int_equal(tc_get(fd, "/", &r), 0);
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
    tc_close(fd);
    harness_stop(h);
}

static void test_connect_is_501(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, hello, NULL);
    int fd = tc_connect(harness_port(h));
    tc_send(fd, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    tc_response r;
    assert_int_equal(tc_read_response(fd, &r), 0);
    assert_int_equal(r.status, 501);
    assert_true(tc_header_has_token(&r, "Connection", "close"));
    tc_response_free(&r);
    assert_int_equal(harness_handler_calls(h), 0);
    tc_close(fd);
    harness_stop(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipv6_loopback),
        cmocka_unit_test(test_listen_name),
        cmocka_unit_test(test_unix_socket),
        cmocka_unit_test(test_listen_errors_and_port_zero),
        cmocka_unit_test(test_upgrade_offer_is_declined_in_http11),
        cmocka_unit_test(test_connect_is_501),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
