/* test_docs_agree.c — places where ferry.h and the code disagreed (issue 13
 * item 9), each held to what the header now says:
 *
 *   ferry_res_set_status       100..599, else FERRY_EINVAL (999 was accepted)
 *   ferry_client_req_attempts  the attempt count of a failed ferry_fetch, whose
 *                              r is NULL (it could not be read at all)
 *   body callbacks             FERRY_ECLOSING when the server is destroyed with
 *                              a body being read (it was not in the list)
 *   ferry_agent_new            FERRY_ENOENT / FERRY_EINVAL / FERRY_ETLSCERT for a
 *                              CA file that cannot be used (not listed)
 *   timeouts                   2^32-1 ms at most: FERRY_EINVAL from
 *                              ferry_server_new beyond, an agent's capped
 *   ferry_url_check            https:// passes (it said FERRY_ENOTSUP at use)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "ferry.h"
#include "support/client_support.h"
#include "support/server_harness.h"

/* ---- ferry_res_set_status ---- */

static int status_rc[5];

static void status_handler(ferry_req *req, ferry_res *res, void *data)
{
    (void) req;
    (void) data;
    static const int tries[5] = {999, 600, 99, 0, 599};
    for (int i = 0; i < 5; i++)
        status_rc[i] = ferry_res_set_status(res, tries[i]);
    ferry_res_send(res, 200, "text/plain", "ok", 2);
}

static void test_set_status_range(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, status_handler, NULL);
    int fd = tc_connect(harness_port(h));
    tc_response r;
    assert_int_equal(tc_get(fd, "/", &r), 0);
    assert_int_equal(r.status, 200);
    tc_response_free(&r);
    tc_close(fd);
    harness_stop(h);
    assert_int_equal(status_rc[0], FERRY_EINVAL); /* 999 */
    assert_int_equal(status_rc[1], FERRY_EINVAL); /* 600 */
    assert_int_equal(status_rc[2], FERRY_EINVAL); /* 99 */
    assert_int_equal(status_rc[3], FERRY_EINVAL); /* 0 */
    assert_int_equal(status_rc[4], 0);            /* 599 */
}

/* ---- ferry_client_req_attempts ---- */

typedef struct attempts_seen {
    int done, status, had_response;
    uint32_t attempts;
} attempts_seen;

static void on_fetched(ferry_client_req *req, int status, const ferry_response *r, void *data)
{
    attempts_seen *s = data;
    s->done++;
    s->status = status;
    s->had_response = r != NULL;
    s->attempts = ferry_client_req_attempts(req);
}

static void on_done(ferry_client_req *req, int status, void *data)
{
    attempts_seen *s = data;
    s->done++;
    s->status = status;
    s->attempts = ferry_client_req_attempts(req);
}

/* A port nobody listens on: bound, noted, closed. */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    assert_int_equal(bind(fd, (struct sockaddr *) &sin, sizeof sin), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *) &sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

static void test_attempts_of_a_failed_fetch(void **state)
{
    (void) state;
    uv_loop_t *loop = cs_loop_new();
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.retry_base_ms = 1;
    ferry_agent *a = cs_agent_new(loop, &ao);
    int port = dead_port();

    ferry_request_options o = cs_opts("GET", cs_url(port, "/"));
    o.retries = 2;
    attempts_seen f = {0};
    assert_int_equal(ferry_fetch(a, &o, 0, on_fetched, &f, NULL), 0);
    assert_true(cs_run_until(loop, &f.done, 1, 5000));
    assert_int_equal(f.status, FERRY_ECONNREFUSED);
    assert_false(f.had_response);
    assert_int_equal(f.attempts, 3);

    /* streaming too, and a request without retries */
    ferry_request_callbacks cb = {.on_done = on_done};
    attempts_seen d = {0};
    o.retries = 0;
    assert_int_equal(ferry_request(a, &o, &cb, &d, NULL), 0);
    assert_true(cs_run_until(loop, &d.done, 1, 5000));
    assert_int_equal(d.status, FERRY_ECONNREFUSED);
    assert_int_equal(d.attempts, 1);
    assert_int_equal(ferry_client_req_attempts(NULL), 0);
    cs_client_finish(loop, a);
}

/* ---- FERRY_ECLOSING in a body callback ---- */

static atomic_int body_status = 1;

static void on_body(ferry_req *req, int status, const char *body, size_t len, void *data)
{
    (void) body;
    (void) len;
    (void) data;
    atomic_store(&body_status, status);
    ferry_res_end(ferry_req_res(req));
}

static void body_handler(ferry_req *req, ferry_res *res, void *data)
{
    (void) res;
    (void) data;
    ferry_req_read_body(req, 0, on_body, NULL);
}

static void test_body_cb_gets_eclosing(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, body_handler, NULL);
    int fd = tc_connect(harness_port(h));
    tc_send(fd, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789");
    assert_true(harness_wait_handler_calls(h, 1, 5000));
    usleep(50 * 1000);                              /* the ten bytes reach the body reader */
    assert_int_equal(atomic_load(&body_status), 1); /* still reading */
    harness_destroy(h);
    for (int i = 0; i < 500 && atomic_load(&body_status) == 1; i++)
        usleep(10 * 1000);
    assert_string_equal(ferry_err_name(atomic_load(&body_status)), "ECLOSING");
    tc_close(fd);
    harness_stop(h);
}

/* ---- ferry_agent_new and its TLS files ---- */

static int agent_rc(const char *ca_file)
{
    uv_loop_t *loop = cs_loop_new();
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.tls_ca_file = ca_file;
    ferry_agent *a = NULL;
    int rc = ferry_agent_new(loop, &ao, &a);
    if (a)
        cs_agent_finish(loop, a, 0);
    cs_loop_finish(loop);
    return rc;
}

static void test_agent_new_tls_files(void **state)
{
    (void) state;
    char dir[] = "/tmp/ferry-docs-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/ca.pem", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("not a certificate\n", f);
    fclose(f);
    char missing[64];
    snprintf(missing, sizeof(missing), "%s/missing.pem", dir);
    assert_string_equal(ferry_err_name(agent_rc(missing)), "ENOENT");
    assert_string_equal(ferry_err_name(agent_rc(path)), "ETLSCERT");
    assert_string_equal(ferry_err_name(agent_rc(dir)), "EINVAL"); /* not a regular file */
    assert_non_null(strstr(ferry_tls_error_detail(), dir));
    unlink(path);
    rmdir(dir);
}

/* ---- the timeout cap ---- */

static void noop_handler(ferry_req *req, ferry_res *res, void *data)
{
    (void) req;
    (void) data;
    ferry_res_send(res, 200, "text/plain", "", 0);
}

static void test_timeout_cap(void **state)
{
    (void) state;
    uv_loop_t *loop = cs_loop_new();
    const size_t fields[] = {
        offsetof(ferry_server_options, keep_alive_timeout_ms),
        offsetof(ferry_server_options, headers_timeout_ms),
        offsetof(ferry_server_options, request_timeout_ms),
        offsetof(ferry_server_options, idle_timeout_ms),
        offsetof(ferry_server_options, linger_timeout_ms),
        offsetof(ferry_server_options, tls_handshake_timeout_ms),
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        ferry_server_options so;
        ferry_server *s = NULL;
        ferry_server_options_init(&so);
        *(uint64_t *) ((char *) &so + fields[i]) = UINT64_C(0xFFFFFFFF);
        assert_int_equal(ferry_server_new(loop, &so, noop_handler, NULL, &s), 0);
        assert_int_equal(ferry_server_free(s), 0); /* it never listened */
        *(uint64_t *) ((char *) &so + fields[i]) = UINT64_C(0x100000000);
        assert_int_equal(ferry_server_new(loop, &so, noop_handler, NULL, &s), FERRY_EINVAL);
    }
    /* an agent's and a request's longer timeouts are taken (they count as the cap) */
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.connect_timeout_ms = ao.headers_timeout_ms = ao.total_timeout_ms = UINT64_C(1) << 40;
    ferry_agent *a = cs_agent_new(loop, &ao);
    ferry_request_options o = cs_opts("GET", cs_url(dead_port(), "/"));
    o.retries = 0;
    o.body_timeout_ms = UINT64_C(1) << 40;
    attempts_seen d = {0};
    ferry_request_callbacks cb = {.on_done = on_done};
    assert_int_equal(ferry_request(a, &o, &cb, &d, NULL), 0);
    assert_true(cs_run_until(loop, &d.done, 1, 5000));
    assert_int_equal(d.status, FERRY_ECONNREFUSED);
    cs_client_finish(loop, a);
}

/* ---- ferry_url_check and https ---- */

static void test_url_check_https(void **state)
{
    (void) state;
    const char *why = "unset";
    assert_int_equal(ferry_url_check("https://example.test:8443/p?q", &why), 0);
    assert_null(why);
    assert_int_equal(ferry_url_check("ftp://example.test/", &why), FERRY_ENOTSUP);
    assert_non_null(why);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_status_range),
        cmocka_unit_test(test_attempts_of_a_failed_fetch),
        cmocka_unit_test(test_body_cb_gets_eclosing),
        cmocka_unit_test(test_agent_new_tls_files),
        cmocka_unit_test(test_timeout_cap),
        cmocka_unit_test(test_url_check_https),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
