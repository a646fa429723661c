/* test_server_proxy.c — the PROXY protocol in the server (issue 11, "Behind
 * a load balancer"): a v1 or v2 header names the request's peer; LOCAL keeps
 * the socket's; a header split at every byte still works; a missing or
 * malformed one closes the connection with no response; peers outside
 * proxy_trusted are closed before anything is read; the header comes before
 * TLS. (The parser alone: test_proxy_proto.c.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "ferry.h"
#include "support/server_harness.h"
#include "support/test_certs.h"

/* "<family> <ip> <port>" of ferry_req_peer. */
static void peer_handler(ferry_req *req, ferry_res *res, void *data)
{
    (void) data;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    char ip[64] = "?", out[160];
    int port = 0;
    if (ferry_req_peer(req, &ss) == 0) {
        if (ss.ss_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *) &ss)->sin_addr, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in *) &ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *) &ss)->sin6_addr, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in6 *) &ss)->sin6_port);
        }
    }
    int n = snprintf(out, sizeof(out), "%s %s %d",
                     ss.ss_family == AF_INET ? "inet" : ss.ss_family == AF_INET6 ? "inet6" : "?",
                     ip, port);
    ferry_res_send(res, 200, "text/plain", out, (size_t) n);
}

static harness *proxy_server(const char *trusted, ferry_tls_context *tls)
{
    ferry_server_options o;
    harness_options_init(&o);
    o.proxy_protocol = 1;
    o.proxy_trusted = trusted;
    o.tls = tls;
    o.headers_timeout_ms = 2000;
    return harness_start(&o, peer_handler, NULL);
}

/* Send the header and a GET; return the body of the answer (caller frees). */
static char *peer_through(int port, const void *header, size_t n)
{
    int fd = tc_connect(port);
    tc_send_n(fd, header, n);
    tc_response r;
    assert_tc_ok(tc_get(fd, "/", &r));
    assert_int_equal(r.status, 200);
    char *body = strdup(r.body);
    tc_response_free(&r);
    tc_close(fd);
    return body;
}

static const char v1_tcp4[] = "PROXY TCP4 203.0.113.7 10.0.0.5 51234 443\r\n";

static void test_v1_names_the_peer(void **state)
{
    (void) state;
    harness *h = proxy_server(NULL, NULL);
    char *b = peer_through(harness_port(h), v1_tcp4, sizeof(v1_tcp4) - 1);
    assert_string_equal(b, "inet 203.0.113.7 51234");
    free(b);
    static const char v1_tcp6[] = "PROXY TCP6 2001:db8::1 2001:db8::2 4000 80\r\n";
    b = peer_through(harness_port(h), v1_tcp6, sizeof(v1_tcp6) - 1);
    assert_string_equal(b, "inet6 2001:db8::1 4000");
    free(b);
    static const char unknown[] = "PROXY UNKNOWN\r\n"; /* the real peer stays */
    b = peer_through(harness_port(h), unknown, sizeof(unknown) - 1);
    assert_memory_equal(b, "inet 127.0.0.1 ", 15);
    free(b);
    harness_stop(h);
}

/* A v2 header: signature, version/command, family, length, addresses. */
static size_t v2_header(unsigned char *out, int local)
{
    static const unsigned char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                          0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
    memcpy(out, sig, 12);
    out[12] = local ? 0x20 : 0x21;
    out[13] = 0x11; /* TCP over IPv4 */
    out[14] = 0;
    out[15] = 12 + 7; /* the addresses and one TLV of 4 bytes */
    unsigned char *a = out + 16;
    inet_pton(AF_INET, "198.51.100.9", a);
    inet_pton(AF_INET, "10.0.0.5", a + 4);
    a[8] = 0x1f; /* 8080 */
    a[9] = 0x90;
    a[10] = 0x01;
    a[11] = 0xbb;
    a[12] = 0x04; /* PP2_TYPE_NOOP, 4 bytes */
    a[13] = 0;
    a[14] = 4;
    memset(a + 15, 0, 4);
    return 16 + 12 + 7;
}

static void test_v2_names_the_peer_and_local_keeps_the_socket(void **state)
{
    (void) state;
    harness *h = proxy_server(NULL, NULL);
    unsigned char hdr[64];
    size_t n = v2_header(hdr, 0);
    char *b = peer_through(harness_port(h), hdr, n);
    assert_string_equal(b, "inet 198.51.100.9 8080");
    free(b);
    n = v2_header(hdr, 1); /* LOCAL: the balancer's own health check */
    b = peer_through(harness_port(h), hdr, n);
    assert_memory_equal(b, "inet 127.0.0.1 ", 15);
    free(b);
    harness_stop(h);
}

static void test_header_split_at_every_byte(void **state)
{
    (void) state;
    harness *h = proxy_server(NULL, NULL);
    int fd = tc_connect(harness_port(h));
    for (size_t i = 0; i < sizeof(v1_tcp4) - 1; i++) {
        tc_send_n(fd, v1_tcp4 + i, 1);
        sleep_ms(1);
    }
    tc_response r;
    assert_tc_ok(tc_get(fd, "/", &r));
    assert_string_equal(r.body, "inet 203.0.113.7 51234");
    tc_response_free(&r);
    /* the header is once per connection: the next request is plain HTTP */
    assert_tc_ok(tc_get(fd, "/", &r));
    assert_string_equal(r.body, "inet 203.0.113.7 51234");
    tc_response_free(&r);
    tc_close(fd);
    harness_stop(h);
}

/* No guessing: a request without a header, or a broken one, is closed with
 * no response at all. */
static void test_missing_or_malformed_header_closes_silently(void **state)
{
    (void) state;
    harness *h = proxy_server(NULL, NULL);
    const char *bad[] = {
        "GET / HTTP/1.1\r\nHost: t\r\n\r\n",
        "PROXY TCP4 203.0.113.7 10.0.0.5 51234\r\n",        /* a port missing */
        "PROXY TCP4 203.0.113.007 10.0.0.5 51234 443\r\n",  /* leading zeros */
        "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int fd = tc_connect(harness_port(h));
        tc_send(fd, bad[i]);
        static const char get[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
        tc_try_send_n(fd, get, sizeof(get) - 1); /* may meet the close already */
        tc_response r;
        int rc = tc_read_response(fd, &r);
        if (rc == 0) {
            tc_response_free(&r);
            fail_msg("case %zu: a response (%d) instead of a silent close", i, r.status);
        }
        assert_true(rc == TC_ECLOSED || rc == TC_ERESET);
        tc_close(fd);
    }
    ferry_server_stats st;
    harness_stats(h, &st);
    assert_int_equal(st.proxy_errors, 4);
    assert_int_equal(st.requests, 0);
    assert_int_equal(harness_handler_calls(h), 0);
    harness_stop(h);
}

static void test_untrusted_source_is_closed_before_reading(void **state)
{
    (void) state;
    harness *h = proxy_server("10.0.0.0/8, 192.168.0.0/16", NULL);
    int fd = tc_connect(harness_port(h));
    tc_try_send_n(fd, v1_tcp4, sizeof(v1_tcp4) - 1); /* closed at accept: may be reset */
    tc_response r;
    int rc = tc_read_response(fd, &r);
    assert_true(rc == TC_ECLOSED || rc == TC_ERESET);
    tc_close(fd);
    ferry_server_stats st;
    harness_stats(h, &st);
    assert_int_equal(st.proxy_rejected, 1);
    assert_int_equal(harness_handler_calls(h), 0);
    harness_stop(h);
    /* 127.0.0.1 trusted: served */
    h = proxy_server("10.0.0.0/8,127.0.0.1", NULL);
    char *b = peer_through(harness_port(h), v1_tcp4, sizeof(v1_tcp4) - 1);
    assert_string_equal(b, "inet 203.0.113.7 51234");
    free(b);
    harness_stop(h);
}

static void test_malformed_trust_list_is_einval(void **state)
{
    (void) state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    ferry_server_options o;
    ferry_server_options_init(&o);
    o.proxy_protocol = 1;
    o.proxy_trusted = "10.0.0.1/8"; /* host bits set: a typo */
    ferry_server *s;
    assert_int_equal(ferry_server_new(&loop, &o, peer_handler, NULL, &s), FERRY_EINVAL);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* The header is read before TLS: header, then the handshake, then HTTPS. */
static void test_header_before_tls(void **state)
{
    (void) state;
    const test_certs *certs = test_certs_get();
    ferry_tls_options to;
    ferry_tls_options_init(&to);
    to.cert.cert_file = certs->server_ec.cert_file;
    to.cert.key_file = certs->server_ec.key_file;
    ferry_tls_context *ctx;
    assert_int_equal(ferry_tls_context_new(&to, &ctx), 0);
    harness *h = proxy_server(NULL, ctx);
    ferry_tls_context_free(ctx);
    int fd = tc_connect(harness_port(h));
    tc_send(fd, v1_tcp4); /* in the clear, before the ClientHello */
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
    SSL *ssl = SSL_new(cctx);
    SSL_set_fd(ssl, fd);
    assert_int_equal(SSL_connect(ssl), 1);
    static const char get[] = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    assert_int_equal(SSL_write(ssl, get, (int) sizeof(get) - 1), (int) sizeof(get) - 1);
    char buf[2048];
    size_t n = 0;
    int r;
    while (n < sizeof(buf) - 1 && (r = SSL_read(ssl, buf + n, (int) (sizeof(buf) - 1 - n))) > 0)
        n += (size_t) r;
    buf[n] = '\0';
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
    assert_non_null(strstr(buf, "inet 203.0.113.7 51234"));
    SSL_free(ssl);
    SSL_CTX_free(cctx);
    close(fd);
    ferry_server_stats st;
    harness_stats(h, &st);
    assert_int_equal(st.tls_handshakes, 1);
    harness_stop(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_names_the_peer),
        cmocka_unit_test(test_v2_names_the_peer_and_local_keeps_the_socket),
        cmocka_unit_test(test_header_split_at_every_byte),
        cmocka_unit_test(test_missing_or_malformed_header_closes_silently),
        cmocka_unit_test(test_untrusted_source_is_closed_before_reading),
        cmocka_unit_test(test_malformed_trust_list_is_einval),
        cmocka_unit_test(test_header_before_tls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
