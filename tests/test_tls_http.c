/* test_tls_http.c — HTTPS end to end: a ferry server with a TLS context (on
 * its harness thread) and the agent on the test's loop, certificates made
 * at test time (support/test_certs). Requests both ways, what
 * ferry_req_tls reports, each verification failure with its code and reason,
 * client certificates required, hot reload with a connection open,
 * resumption (TLS 1.3 and 1.2), the handshake timeout (silent and half a
 * ClientHello), plain HTTP on the TLS port, close_notify on the server's
 * close paths, a close-delimited body cut without close_notify, 10 MiB each
 * way, pipelining, and 200 idle TLS connections closed at once.
 *
 * Engine-level cases (records split at every byte, SNI choice, renegotiation,
 * hostile handshakes) are in test_tls_engine.c. */
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "ferry.h"
#include "support/client_support.h"
#include "support/server_harness.h"
#include "support/test_certs.h"

static const test_certs *certs;

static ferry_tls_context *context_full(const test_cert *c, int client_cert, int max_version)
{
    ferry_tls_options o;
    ferry_tls_options_init(&o);
    o.cert.cert_file = c->cert_file;
    o.cert.key_file = c->key_file;
    o.client_cert = (ferry_tls_client_cert) client_cert;
    if (client_cert)
        o.client_ca_file = certs->ca.cert_file;
    if (max_version)
        o.max_version = max_version;
    ferry_tls_context *ctx;
    int rc = ferry_tls_context_new(&o, &ctx);
    if (rc)
        fail_msg("context: %s (%s)", ferry_err_name(rc), ferry_tls_error_detail());
    return ctx;
}

static ferry_tls_context *context_for(const test_cert *c)
{
    return context_full(c, 0, 0);
}

/* A TLS server (demo handlers, or cb) with ctx (the server takes a
 * reference; this drops the caller's); o NULL: the harness's options. */
static harness *tls_server_ctx(ferry_tls_context *ctx, ferry_server_options *o, ferry_request_cb cb)
{
    ferry_server_options def;
    if (!o) {
        harness_options_init(&def);
        o = &def;
    }
    o->tls = ctx;
    harness *h = harness_start(o, cb, NULL);
    ferry_tls_context_free(ctx);
    return h;
}

static harness *tls_server(const test_cert *cert, ferry_server_options *o, ferry_request_cb cb)
{
    return tls_server_ctx(context_for(cert), o, cb);
}

typedef struct verdict verdict;
static const ferry_request_callbacks verdict_cb;

static ferry_agent *tls_agent(uv_loop_t *loop, const char *ca_file, uint32_t per_socket)
{
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.tls_ca_file = ca_file;
    ao.max_requests_per_socket = per_socket;
    return cs_agent_new(loop, &ao);
}

static const char *https_url(int port, const char *host, const char *path)
{
    static char buf[8][128];
    static int i;
    char *b = buf[i++ % 8];
    snprintf(b, sizeof(buf[0]), "https://%s:%d%s", host, port, path);
    return b;
}

/* ---- what the server sees ---- */

typedef struct seen {
    char version[16], cipher[64], sni[64], alpn[16], subject[128];
    int resumed, verified, plain;
} seen;

static seen last_seen;

/* /tls answers with what ferry_req_tls says; anything else goes to the demo. */
static void tls_handler(ferry_req *req, ferry_res *res, void *data)
{
    (void) data;
    ferry_str path = ferry_req_path(req);
    if (!(path.len == 4 && memcmp(path.p, "/tls", 4) == 0)) {
        demo_handle(req, res, harness_self());
        return;
    }
    ferry_tls_info info;
    seen s = {0};
    int rc = ferry_req_tls(req, &info);
    if (rc == 0) {
        snprintf(s.version, sizeof(s.version), "%s", info.version);
        snprintf(s.cipher, sizeof(s.cipher), "%s", info.cipher);
        snprintf(s.sni, sizeof(s.sni), "%.*s", (int) info.sni.len, info.sni.p ? info.sni.p : "");
        snprintf(s.alpn, sizeof(s.alpn), "%.*s", (int) info.alpn.len,
                 info.alpn.p ? info.alpn.p : "");
        if (info.peer_subject)
            snprintf(s.subject, sizeof(s.subject), "%s", info.peer_subject);
        s.resumed = info.resumed;
        s.verified = info.peer_verified;
    } else {
        s.plain = 1;
    }
    last_seen = s;
    ferry_res_send(res, 200, "text/plain", "tls", 3);
}

static void test_request_both_ways(void **state)
{
    (void) state;
    harness *h = tls_server(&certs->server_ec, NULL, tls_handler);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = tls_agent(loop, certs->ca.cert_file, 0);
    cs_result r = {0};
    ferry_request_options o = cs_opts("GET", https_url(harness_port(h), "localhost", "/tls"));
    cs_run_request(loop, a, &o, &r, 10000);
    cs_assert_done(&r, 0);
    assert_int_equal(r.http_status, 200);
    assert_string_equal(r.body, "tls");
    print_message("server saw %s %s sni=%s alpn=%s\n", last_seen.version, last_seen.cipher,
                  last_seen.sni, last_seen.alpn);
    assert_string_equal(last_seen.version, "TLSv1.3");
    assert_string_equal(last_seen.sni, "localhost");
    assert_string_equal(last_seen.alpn, "http/1.1");
    /* an IP literal: the certificate's address is checked, no SNI is sent */
    cs_result r2 = {0};
    o = cs_opts("GET", https_url(harness_port(h), "127.0.0.1", "/tls"));
    cs_run_request(loop, a, &o, &r2, 10000);
    cs_assert_done(&r2, 0);
    assert_string_equal(last_seen.sni, "");
    ferry_agent_stats st = cs_stats(a);
    assert_int_equal(st.tls_handshakes, 2);
    ferry_server_stats ss;
    harness_stats(h, &ss);
    assert_int_equal(ss.tls_handshakes, 2);
    cs_client_finish(loop, a);
    harness_stop(h);
}

/* ---- verification ---- */

typedef struct verdict {
    int done, status;
    ferry_tls_verify_reason reason;
} verdict;

static void on_verdict(ferry_client_req *req, int status, void *data)
{
    verdict *v = data;
    v->done++;
    v->status = status;
    v->reason = ferry_client_req_tls_verify_reason(req);
}

static const ferry_request_callbacks verdict_cb = {NULL, NULL, on_verdict, NULL};

static void verify_case(const test_cert *cert, const char *ca, ferry_tls_verify_reason want)
{
    harness *h = tls_server(cert, NULL, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = tls_agent(loop, ca, 0);
    verdict v = {0};
    ferry_request_options o = cs_opts("GET", https_url(harness_port(h), "localhost", "/"));
    assert_int_equal(ferry_request(a, &o, &verdict_cb, &v, NULL), 0);
    assert_true(cs_run_until(loop, &v.done, 1, 10000));
    print_message("%s: %s, %s\n", cert->cn, ferry_err_name(v.status),
                  ferry_tls_verify_reason_name(v.reason));
    assert_int_equal(v.done, 1);
    assert_int_equal(v.status, FERRY_ETLSVERIFY);
    assert_int_equal(ferry_err_kind_of(v.status), FERRY_ERRK_TLS);
    if (v.reason != want)
        fail_msg("reason %s, expected %s", ferry_tls_verify_reason_name(v.reason),
                 ferry_tls_verify_reason_name(want));
    assert_int_equal(cs_stats(a).retries, 0); /* a certificate is not worth a retry */
    cs_client_finish(loop, a);
    harness_stop(h);
}

static void test_verification_failures(void **state)
{
    (void) state;
    verify_case(&certs->expired, certs->ca.cert_file, FERRY_TLS_VERIFY_EXPIRED);
    verify_case(&certs->not_yet_valid, certs->ca.cert_file, FERRY_TLS_VERIFY_NOT_YET_VALID);
    verify_case(&certs->self_signed, certs->ca.cert_file, FERRY_TLS_VERIFY_SELF_SIGNED);
    verify_case(&certs->wrong_host, certs->ca.cert_file, FERRY_TLS_VERIFY_HOSTNAME_MISMATCH);
    verify_case(&certs->unknown_ca, certs->ca.cert_file, FERRY_TLS_VERIFY_UNKNOWN_ISSUER);
    /* the system's trust store does not know the test CA */
    verify_case(&certs->server_ec, NULL, FERRY_TLS_VERIFY_UNKNOWN_ISSUER);
}

/* ---- client certificates ---- */

static void test_client_certificate_required(void **state)
{
    (void) state;
    harness *h = tls_server_ctx(context_full(&certs->server_ec, FERRY_TLS_CLIENT_CERT_REQUIRE, 0),
                                NULL, tls_handler);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.tls_ca_file = certs->ca.cert_file;
    ao.tls_cert_file = certs->client.cert_file;
    ao.tls_key_file = certs->client.key_file;
    ferry_agent *a = cs_agent_new(loop, &ao);
    cs_result r = {0};
    ferry_request_options o = cs_opts("GET", https_url(harness_port(h), "localhost", "/tls"));
    cs_run_request(loop, a, &o, &r, 10000);
    cs_assert_done(&r, 0);
    print_message("client certificate: %s\n", last_seen.subject);
    assert_true(last_seen.verified);
    assert_non_null(strstr(last_seen.subject, certs->client.cn));
    cs_client_finish(loop, a);

    /* without one: refused (TLS 1.3 sends the alert after the client's Finished,
     * so the client learns it on its first read) */
    loop = cs_loop_new();
    a = tls_agent(loop, certs->ca.cert_file, 0);
    cs_result r2 = {0};
    cs_run_request(loop, a, &o, &r2, 10000);
    print_message("no client certificate: %s\n", ferry_err_name(r2.status));
    assert_int_equal(r2.done, 1);
    assert_int_equal(ferry_err_kind_of(r2.status), FERRY_ERRK_TLS);
    assert_int_equal(r2.responses, 0);
    cs_client_finish(loop, a);
    harness_stop(h);
}

/* ---- hot reload ---- */

static ferry_tls_context *reload_ctx;

static void do_reload(ferry_server *s, void *arg)
{
    (void) arg;
    assert_int_equal(ferry_server_set_tls(s, reload_ctx), 0);
}

/* A keep-alive connection made before the reload keeps working; a new one
 * gets the new certificate (one for another host: it fails to verify). */
static void test_hot_reload(void **state)
{
    (void) state;
    harness *h = tls_server(&certs->server_ec, NULL, NULL);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = tls_agent(loop, certs->ca.cert_file, 0);
    ferry_request_options o = cs_opts("GET", https_url(harness_port(h), "localhost", "/"));
    cs_result r1 = {0}, r2 = {0};
    cs_run_request(loop, a, &o, &r1, 10000);
    cs_assert_done(&r1, 0);
    reload_ctx = context_for(&certs->wrong_host);
    harness_call(h, do_reload, NULL);
    ferry_tls_context_free(reload_ctx);
    cs_run_request(loop, a, &o, &r2, 10000); /* the pooled connection: the old certificate */
    cs_assert_done(&r2, 0);
    assert_true(r2.reused);
    cs_client_finish(loop, a);

    loop = cs_loop_new();
    a = tls_agent(loop, certs->ca.cert_file, 0);
    verdict v = {0};
    assert_int_equal(ferry_request(a, &o, &verdict_cb, &v, NULL), 0);
    assert_true(cs_run_until(loop, &v.done, 1, 10000));
    assert_int_equal(v.status, FERRY_ETLSVERIFY);
    assert_int_equal(v.reason, FERRY_TLS_VERIFY_HOSTNAME_MISMATCH);
    cs_client_finish(loop, a);
    harness_stop(h);
}

/* ---- resumption ---- */

static void resumption_case(int max_version, const char *label)
{
    harness *h = tls_server_ctx(context_full(&certs->server_ec, 0, max_version), NULL, tls_handler);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = tls_agent(loop, certs->ca.cert_file, 1); /* a new connection each */
    for (int i = 0; i < 5; i++) {
        cs_result r = {0};
        ferry_request_options o = cs_opts("GET", https_url(harness_port(h), "localhost", "/tls"));
        cs_run_request(loop, a, &o, &r, 10000);
        cs_assert_done(&r, 0);
        if (i > 0)
            assert_true(last_seen.resumed);
    }
    ferry_agent_stats st = cs_stats(a);
    ferry_server_stats ss;
    harness_stats(h, &ss);
    print_message("%s: %s, client %llu handshakes %llu resumed, server %llu resumed\n", label,
                  last_seen.version, (unsigned long long) st.tls_handshakes,
                  (unsigned long long) st.tls_resumed, (unsigned long long) ss.tls_resumed);
    assert_int_equal(st.tls_handshakes, 5);
    assert_int_equal(st.tls_resumed, 4);
    assert_int_equal(ss.tls_resumed, 4);
    cs_client_finish(loop, a);
    harness_stop(h);
}

static void test_resumption(void **state)
{
    (void) state;
    resumption_case(0, "TLS 1.3");
    resumption_case(FERRY_TLS_1_2, "TLS 1.2");
}

/* ---- the handshake timeout, and plain HTTP on the TLS port ---- */

static void test_handshake_timeout(void **state)
{
    (void) state;
    ferry_server_options so;
    harness_options_init(&so);
    so.tls_handshake_timeout_ms = 200;
    harness *h = tls_server(&certs->server_ec, &so, NULL);
    int silent = tc_connect(harness_port(h));
    int half = tc_connect(harness_port(h));
    /* the first bytes of a TLS record header, and nothing more */
    tc_send_n(half, "\x16\x03\x01\x02\x00\x01", 6);
    double t0 = now_ms();
    tc_eof e1 = tc_expect_eof(silent, 3000), e2 = tc_expect_eof(half, 3000);
    double took = now_ms() - t0;
    print_message("handshake timeout: closed after %.0f ms (%s, %s)\n", took, tc_eof_name(e1),
                  tc_eof_name(e2));
    assert_true(e1 == TC_FIN || e1 == TC_RST);
    assert_true(e2 == TC_FIN || e2 == TC_RST);
    assert_true(took >= 150 && took < 2000);
    ferry_server_stats ss;
    harness_stats(h, &ss);
    assert_int_equal(ss.tls_handshake_timeouts, 2);
    tc_close(silent);
    tc_close(half);
    harness_stop(h);
}

static void test_plain_http_on_tls_port(void **state)
{
    (void) state;
    harness *h = tls_server(&certs->server_ec, NULL, NULL);
    int fd = tc_connect(harness_port(h));
    tc_response r;
    assert_int_equal(tc_get(fd, "/", &r), 0);
    print_message("plain HTTP on the TLS port: %d %s\n", r.status, r.body ? r.body : "");
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "HTTPS"));
    tc_response_free(&r);
    assert_int_equal(tc_expect_eof(fd, 3000), TC_FIN);
    tc_close(fd);
    ferry_server_stats ss;
    harness_stats(h, &ss);
    assert_int_equal(ss.errors_400, 1);
    harness_stop(h);
}

int main(void)
{
    certs = test_certs_get();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_both_ways),
        cmocka_unit_test(test_verification_failures),
        cmocka_unit_test(test_client_certificate_required),
        cmocka_unit_test(test_hot_reload),
        cmocka_unit_test(test_resumption),
        cmocka_unit_test(test_handshake_timeout),
        cmocka_unit_test(test_plain_http_on_tls_port),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
