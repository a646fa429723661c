/* test_tls_engine.c — the TLS engine, contexts, ticket keys and the client
 * session cache, with a client engine and a server engine paired in memory:
 * every byte one side outputs is fed to the other, whole or cut into pieces.
 * Certificates come from tests/support/test_certs (made at test time).
 *
 * TLS_BENCH=N in the environment also times N full handshakes (ECDSA and
 * RSA) and N resumptions, and prints handshakes per second.
 */
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "ferry.h"
#include "support/test_certs.h"
#include "tls/tls_context.h"
#include "tls/tls_engine.h"
#include "tls/tls_session_cache.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static const test_certs *tc;

/* ---- setup helpers ------------------------------------------------------------ */

static ferry_tls_options sopts(const test_cert *cert)
{
    ferry_tls_options o;
    ferry_tls_options_init(&o);
    o.cert.cert_file = cert->cert_file;
    o.cert.key_file = cert->key_file;
    return o;
}

static ferry_tls_context *sctx_new(const ferry_tls_options *o)
{
    ferry_tls_context *ctx = NULL;
    int rc = ferry_tls_context_new(o, &ctx);
    if (rc != 0)
        fail_msg("ferry_tls_context_new: %s (%s)", ferry_err_name(rc), ferry_tls_error_detail());
    return ctx;
}

static ferry_tls_context *sctx_for(const test_cert *cert)
{
    ferry_tls_options o = sopts(cert);
    return sctx_new(&o);
}

static tls_client_options copts(void)
{
    tls_client_options o;
    tls_client_options_init(&o);
    o.ca_file = tc->ca.cert_file;
    return o;
}

static void ccfg_init(tls_client_config *cfg, const tls_client_options *o)
{
    int rc = tls_client_config_init(cfg, o);
    if (rc != 0)
        fail_msg("tls_client_config_init: %s (%s)", ferry_err_name(rc), ferry_tls_error_detail());
}

/* ---- a pair of engines, pumped in memory --------------------------------------- */

/* TLS_BENCH: CPU time spent in calls on one engine (the server's) */
static tls_engine *timed;
static double timed_s;

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

typedef struct side {
    tls_engine *e;
    char *got; /* plaintext read */
    size_t got_len, got_cap;
    int err;  /* first error read or fed */
    bool eof; /* read returned FERRY_EOF */
    size_t peak_buffered;
} side;

typedef struct pair {
    side c, s;
    size_t chunk;    /* ciphertext is fed in pieces of at most this (0: whole) */
    size_t read_cap; /* plaintext is read this many bytes at a time (0: 16 KiB) */
} pair;

static void side_free(side *x)
{
    tls_engine_free(x->e);
    free(x->got);
    memset(x, 0, sizeof(*x));
}

static void pair_free(pair *p)
{
    side_free(&p->c);
    side_free(&p->s);
}

static void note_peak(side *x)
{
    size_t b = tls_engine_buffered(x->e);
    if (b > x->peak_buffered) x->peak_buffered = b;
}

/* Read what x can; true if it produced anything (plaintext or an outcome). */
static bool side_read(side *x, size_t cap)
{
    char buf[16384];
    if (cap == 0 || cap > sizeof(buf)) cap = sizeof(buf);
    bool any = false;
    while (!x->err && !x->eof) {
        double t0 = x->e == timed ? cpu_s() : 0;
        ssize_t n = tls_engine_read(x->e, buf, cap);
        if (x->e == timed) timed_s += cpu_s() - t0;
        note_peak(x);
        if (n == 0) break;
        any = true;
        if (n == FERRY_EOF) {
            x->eof = true;
        } else if (n < 0) {
            x->err = (int) n;
        } else {
            if (x->got_len + (size_t) n > x->got_cap) {
                x->got_cap = (x->got_len + (size_t) n) * 2;
                x->got = realloc(x->got, x->got_cap);
                assert_non_null(x->got);
            }
            memcpy(x->got + x->got_len, buf, (size_t) n);
            x->got_len += (size_t) n;
        }
    }
    return any;
}

/* Move a's output into b, in pieces; true if anything moved. */
static bool move(side *a, side *b, size_t chunk, size_t limit)
{
    bool moved = false;
    size_t n, total = 0;
    const char *p;
    while ((p = tls_engine_out_peek(a->e, &n)) != NULL && (!limit || total < limit)) {
        size_t k = chunk && chunk < n ? chunk : n;
        if (limit && k > limit - total) k = limit - total;
        double t0 = b->e == timed ? cpu_s() : 0;
        int rc = b->err ? 0 : tls_engine_feed(b->e, p, k);
        if (b->e == timed) timed_s += cpu_s() - t0;
        note_peak(b);
        tls_engine_out_consume(a->e, k);
        total += k;
        moved = true;
        if (rc < 0 && !b->err) b->err = rc;
        if (chunk) /* small pieces: let b read between them */
            side_read(b, 0);
    }
    return moved;
}

/* Pump both ways until nothing moves. */
static void pump(pair *p)
{
    for (int i = 0; i < 100000; i++) {
        bool any = side_read(&p->c, p->read_cap);
        any |= side_read(&p->s, p->read_cap);
        any |= move(&p->c, &p->s, p->chunk, 0);
        any |= move(&p->s, &p->c, p->chunk, 0);
        if (!any) return;
    }
    fail_msg("pump: no quiescence");
}

static void pair_start(pair *p, tls_engine *c, tls_engine *s)
{
    memset(p, 0, sizeof(*p));
    p->c.e = c;
    p->s.e = s;
}

/* A client for host (with cache/key, may be NULL) against ctx, handshaken. */
static void connect_pair(pair *p, const tls_client_config *cfg, const char *host,
                         tls_session_cache *cache, const char *key, ferry_tls_context *ctx)
{
    tls_engine *c, *s;
    assert_int_equal(tls_engine_new_client(cfg, host, cache, key, &c), 0);
    assert_int_equal(tls_engine_new_server(ctx, &s), 0);
    size_t chunk = p->chunk, read_cap = p->read_cap;
    pair_start(p, c, s);
    p->chunk = chunk;
    p->read_cap = read_cap;
    assert_int_equal(tls_engine_handshake(c), 0);
    pump(p);
}

static void assert_ok_pair(pair *p)
{
    if (p->c.err || p->s.err)
        fail_msg("client %s (%s), server %s (%s)", ferry_err_name(p->c.err),
                 tls_engine_error_detail(p->c.e), ferry_err_name(p->s.err),
                 tls_engine_error_detail(p->s.e));
    assert_true(tls_engine_handshake_done(p->c.e));
    assert_true(tls_engine_handshake_done(p->s.e));
}

static void send_str(side *x, const char *s)
{
    assert_int_equal(tls_engine_write(x->e, s, strlen(s)), 0);
}

static void expect_got(side *x, const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(x->got_len, n);
    assert_memory_equal(x->got, s, n);
    x->got_len = 0;
}

/* A request and its response across p. */
static void exchange(pair *p)
{
    send_str(&p->c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    pump(p);
    expect_got(&p->s, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    send_str(&p->s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    pump(p);
    expect_got(&p->c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
}

static bool str_has(ferry_str s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.p, want, s.len) == 0;
}

/* ---- handshakes ---------------------------------------------------------------- */

static void test_handshake_tls13_ecdsa(void **state)
{
    (void) state;
    ferry_tls_context *ctx = sctx_for(&tc->server_ec);
    tls_client_options co = copts();
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    pair p = {0};
    connect_pair(&p, &cfg, "localhost", NULL, NULL, ctx);
    assert_ok_pair(&p);
    exchange(&p);

    ferry_tls_info ci, si;
    tls_engine_info(p.c.e, &ci);
    tls_engine_info(p.s.e, &si);
    assert_string_equal(ci.version, "TLSv1.3");
    assert_string_equal(si.version, "TLSv1.3");
    assert_string_equal(ci.cipher, si.cipher);
    assert_true(str_has(ci.alpn, "http/1.1"));
    assert_true(str_has(si.alpn, "http/1.1"));
    assert_true(str_has(si.sni, "localhost"));
    assert_false(ci.resumed);
    assert_int_equal(ci.peer_verified, 1);
    assert_non_null(strstr(ci.peer_subject, "CN=ferry test server (ec)"));
    assert_int_equal(ci.verify_reason, FERRY_TLS_VERIFY_OK);
    assert_int_equal(si.peer_verified, 0); /* no client certificate asked for */
    assert_null(si.peer_subject);
    assert_int_equal(tls_engine_verify_reason(p.c.e, NULL), FERRY_TLS_VERIFY_OK);
    assert_true(tls_engine_is_server(p.s.e));
    assert_false(tls_engine_is_server(p.c.e));
    assert_int_equal(tls_engine_alert(p.c.e, NULL), -1);

    /* idle: nothing buffered either side, nothing pending */
    assert_int_equal(tls_engine_buffered(p.c.e), 0);
    assert_int_equal(tls_engine_buffered(p.s.e), 0);
    assert_false(tls_engine_has_input(p.c.e));
    pair_free(&p);
    tls_client_config_destroy(&cfg);
    ferry_tls_context_free(ctx);
}

static void test_handshake_tls12_rsa(void **state)
{
    (void) state;
    ferry_tls_options o = sopts(&tc->server_rsa);
    o.max_version = FERRY_TLS_1_2;
    ferry_tls_context *ctx = sctx_new(&o);
    tls_client_options co = copts();
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    pair p = {0};
    connect_pair(&p, &cfg, "127.0.0.1", NULL, NULL, ctx);
    assert_ok_pair(&p);
    exchange(&p);
    ferry_tls_info ci, si;
    tls_engine_info(p.c.e, &ci);
    tls_engine_info(p.s.e, &si);
    assert_string_equal(ci.version, "TLSv1.2");
    assert_string_equal(ci.cipher, "ECDHE-RSA-AES128-GCM-SHA256");
    assert_null(si.sni.p); /* an IP literal: no SNI */
    assert_non_null(strstr(ci.peer_subject, "CN=ferry test server (rsa)"));
    pair_free(&p);
    tls_client_config_destroy(&cfg);
    ferry_tls_context_free(ctx);
}

/* A TLS 1.3-only server refuses a TLS 1.2-only client. */
static void test_version_mismatch(void **state)
{
    (void) state;
    ferry_tls_options o = sopts(&tc->server_ec);
    o.min_version = FERRY_TLS_1_3;
    ferry_tls_context *ctx = sctx_new(&o);
    tls_client_options co = copts();
    co.max_version = FERRY_TLS_1_2;
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    pair p = {0};
    connect_pair(&p, &cfg, "localhost", NULL, NULL, ctx);
    assert_int_equal(p.s.err, FERRY_ETLSHANDSHAKE);
    assert_int_equal(p.c.err, FERRY_ETLSALERT); /* protocol_version */
    assert_int_equal(tls_engine_alert(p.c.e, NULL), 70);
    assert_string_equal(tls_engine_error_detail(p.s.e), "unsupported protocol");
    /* errors are sticky */
    char buf[8];
    assert_int_equal(tls_engine_read(p.c.e, buf, sizeof(buf)), FERRY_ETLSALERT);
    assert_int_equal(tls_engine_write(p.c.e, "x", 1), FERRY_ETLSALERT);
    pair_free(&p);
    tls_client_config_destroy(&cfg);
    ferry_tls_context_free(ctx);
}

/* A client may write its request before the handshake is done. */
static void test_write_before_handshake(void **state)
{
    (void) state;
    ferry_tls_context *ctx = sctx_for(&tc->server_ec);
    tls_client_options co = copts();
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    tls_engine *c, *s;
    assert_int_equal(tls_engine_new_client(&cfg, "localhost", NULL, NULL, &c), 0);
    assert_int_equal(tls_engine_new_server(ctx, &s), 0);
    pair p;
    pair_start(&p, c, s);
    send_str(&p.c, "early request");
    assert_true(tls_engine_buffered(c) > 0);
    pump(&p);
    assert_ok_pair(&p);
    expect_got(&p.s, "early request");
    pair_free(&p);
    tls_client_config_destroy(&cfg);
    ferry_tls_context_free(ctx);
}

/* ---- verification ------------------------------------------------------------------ */

typedef struct verify_case {
    const char *what;
    const test_cert *cert;
    bool leaf_only; /* serve the leaf without its intermediate */
    const char *host;
    ferry_tls_verify_reason reason;
    int server_alert; /* the alert the server receives from the client */
} verify_case;

static void run_verify_case(const verify_case *vc, bool insecure)
{
    ferry_tls_options o;
    ferry_tls_options_init(&o);
    o.cert.cert_pem = vc->leaf_only ? vc->cert->leaf_pem : vc->cert->cert_pem;
    o.cert.key_pem = vc->cert->key_pem;
    ferry_tls_context *ctx = sctx_new(&o);
    tls_client_options co = copts();
    co.insecure = insecure;
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    pair p = {0};
    connect_pair(&p, &cfg, vc->host, NULL, NULL, ctx);
    long x509;
    ferry_tls_verify_reason r = tls_engine_verify_reason(p.c.e, &x509);
    if (r != vc->reason)
        fail_msg("%s: reason %s (X509 %ld: %s), want %s", vc->what, ferry_tls_verify_reason_name(r),
                 x509, X509_verify_cert_error_string(x509),
                 ferry_tls_verify_reason_name(vc->reason));
    if (vc->reason == FERRY_TLS_VERIFY_OK || insecure) {
        assert_ok_pair(&p);
        exchange(&p);
        ferry_tls_info ci;
        tls_engine_info(p.c.e, &ci);
        assert_int_equal(ci.peer_verified, vc->reason == FERRY_TLS_VERIFY_OK);
        assert_int_equal(ci.verify_reason, vc->reason);
    } else {
        if (p.c.err != FERRY_ETLSVERIFY)
            fail_msg("%s: client %s", vc->what, ferry_err_name(p.c.err));
        assert_int_equal(p.s.err, FERRY_ETLSALERT);
        if (tls_engine_alert(p.s.e, NULL) != vc->server_alert)
            fail_msg("%s: server got alert %d", vc->what, tls_engine_alert(p.s.e, NULL));
        assert_true(strlen(tls_engine_error_detail(p.c.e)) > 0);
        assert_false(tls_engine_handshake_done(p.c.e));
    }
    pair_free(&p);
    tls_client_config_destroy(&cfg);
    ferry_tls_context_free(ctx);
}

static void test_verify_failures(void **state)
{
    (void) state;
    const verify_case cases[] = {
        {"ok by name", &tc->server_ec, false, "localhost", FERRY_TLS_VERIFY_OK, 0},
        {"ok, www", &tc->server_ec, false, "WWW.Example.Test.", FERRY_TLS_VERIFY_OK, 0},
        {"ok by IPv4", &tc->server_ec, false, "127.0.0.1", FERRY_TLS_VERIFY_OK, 0},
        {"ok by IPv6", &tc->server_ec, false, "::1", FERRY_TLS_VERIFY_OK, 0},
        {"ok by [IPv6]", &tc->server_rsa, false, "[::1]", FERRY_TLS_VERIFY_OK, 0},
        {"ok with intermediate", &tc->chained, false, "localhost", FERRY_TLS_VERIFY_OK, 0},
        {"intermediate missing", &tc->chained, true, "localhost", FERRY_TLS_VERIFY_UNKNOWN_ISSUER,
         48},
        {"unknown CA", &tc->unknown_ca, false, "localhost", FERRY_TLS_VERIFY_UNKNOWN_ISSUER, 48},
        {"expired", &tc->expired, false, "localhost", FERRY_TLS_VERIFY_EXPIRED, 45},
        {"not yet valid", &tc->not_yet_valid, false, "localhost", FERRY_TLS_VERIFY_NOT_YET_VALID,
         42},
        {"self-signed", &tc->self_signed, false, "localhost", FERRY_TLS_VERIFY_SELF_SIGNED, 48},
        {"wrong host", &tc->wrong_host, false, "localhost", FERRY_TLS_VERIFY_HOSTNAME_MISMATCH, 42},
        {"other name", &tc->server_ec, false, "other.test", FERRY_TLS_VERIFY_HOSTNAME_MISMATCH, 42},
        {"partial name", &tc->server_ec, false, "host", FERRY_TLS_VERIFY_HOSTNAME_MISMATCH, 42},
        {"other IPv4", &tc->server_ec, false, "127.0.0.2", FERRY_TLS_VERIFY_HOSTNAME_MISMATCH, 42},
        {"wildcard is one label", &tc->wildcard, false, "a.b.wild.test",
         FERRY_TLS_VERIFY_HOSTNAME_MISMATCH, 42},
        {"wildcard matches", &tc->wildcard, false, "x.wild.test", FERRY_TLS_VERIFY_OK, 0},
        {"client cert as server", &tc->client, false, "localhost", FERRY_TLS_VERIFY_OTHER, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        verify_case vc = cases[i];
        if (vc.cert == &tc->client) {
            /* no SAN, and clientAuth only: the purpose check fails first */
            vc.server_alert = 43; /* unsupported_certificate */
        }
        run_verify_case(&vc, false);
        if (vc.reason != FERRY_TLS_VERIFY_OK)
            run_verify_case(&vc, true); /* insecure: it connects and says why */
    }
}

/* Without a CA of its own, a client trusts the system's store, which does not
 * know the test CA. */
static void test_verify_system_store(void **state)
{
    (void) state;
    ferry_tls_context *ctx = sctx_for(&tc->server_ec);
    tls_client_options co;
    tls_client_options_init(&co);
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    pair p = {0};
    connect_pair(&p, &cfg, "localhost", NULL, NULL, ctx);
    assert_int_equal(p.c.err, FERRY_ETLSVERIFY);
    assert_int_equal(tls_engine_verify_reason(p.c.e, NULL), FERRY_TLS_VERIFY_UNKNOWN_ISSUER);
    pair_free(&p);
    tls_client_config_destroy(&cfg);
    ferry_tls_context_free(ctx);
}

/* ---- SNI and ALPN ------------------------------------------------------------------------- */

static const char *served_cn(ferry_tls_context *ctx, const char *host, const char *want_sni)
{
    static char cn[128];
    tls_client_options co = copts();
    co.insecure = true; /* some names do not match: we only look at what came */
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    pair p = {0};
    connect_pair(&p, &cfg, host, NULL, NULL, ctx);
    assert_ok_pair(&p);
    X509 *peer = SSL_get0_peer_certificate(tls_engine_ssl(p.c.e));
    assert_non_null(peer);
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof(cn));
    ferry_tls_info si;
    tls_engine_info(p.s.e, &si);
    if (want_sni)
        assert_true(str_has(si.sni, want_sni));
    else
        assert_null(si.sni.p);
    pair_free(&p);
    tls_client_config_destroy(&cfg);
    return cn;
}

static void test_sni(void **state)
{
    (void) state;
    ferry_tls_cert sni[4] = {
        {.cert_file = tc->api.cert_file, .key_file = tc->api.key_file}, /* names from its SANs */
        {.cert_pem = tc->wildcard.cert_pem, .key_pem = tc->wildcard.key_pem},
        {.cert_file = tc->server_rsa.cert_file,
         .key_file = tc->server_rsa.key_file,
         .name = "rsa.example.test"},
        /* a second certificate for a name already taken: the first one given wins */
        {.cert_file = tc->wrong_host.cert_file,
         .key_file = tc->wrong_host.key_file,
         .name = "API.example.test"},
    };
    ferry_tls_options o = sopts(&tc->server_ec);
    o.sni_certs = sni;
    o.sni_cert_count = 4;
    ferry_tls_context *ctx = sctx_new(&o);
    assert_string_equal(served_cn(ctx, "api.example.test", "api.example.test"), "api.example.test");
    assert_string_equal(served_cn(ctx, "API.Example.TEST", "API.Example.TEST"), "api.example.test");
    assert_string_equal(served_cn(ctx, "x.wild.test", "x.wild.test"), "*.wild.test");
    assert_string_equal(served_cn(ctx, "rsa.example.test", "rsa.example.test"),
                        "ferry test server (rsa)");
    /* a wildcard covers one label only; unknown names and no SNI get the default */
    assert_string_equal(served_cn(ctx, "a.b.wild.test", "a.b.wild.test"), "ferry test server (ec)");
    assert_string_equal(served_cn(ctx, "wild.test", "wild.test"), "ferry test server (ec)");
    assert_string_equal(served_cn(ctx, "unknown.test", "unknown.test"), "ferry test server (ec)");
    assert_string_equal(served_cn(ctx, "127.0.0.1", NULL), "ferry test server (ec)");

    /* and the client verifies the one it gets */
    tls_client_options co = copts();
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    pair p = {0};
    connect_pair(&p, &cfg, "q.wild.test", NULL, NULL, ctx);
    assert_ok_pair(&p);
    pair_free(&p);
    tls_client_config_destroy(&cfg);
    ferry_tls_context_free(ctx);

    /* the lookup itself */
    o.sni_cert_count = 2;
    ctx = sctx_new(&o);
    assert_non_null(tls_context_sni_find(ctx, "api.example.test."));
    assert_non_null(tls_context_sni_find(ctx, "Z.WILD.TEST"));
    assert_null(tls_context_sni_find(ctx, "*.wild.test"));
    assert_null(tls_context_sni_find(ctx, ".wild.test"));
    assert_null(tls_context_sni_find(ctx, "wild.test"));
    assert_null(tls_context_sni_find(ctx, ""));
    ferry_tls_context_free(ctx);
}

static void alpn_case(const char *server, const char *client, const char *want, int cerr, int serr)
{
    ferry_tls_options o = sopts(&tc->server_ec);
    o.alpn = server;
    ferry_tls_context *ctx = sctx_new(&o);
    tls_client_options co = copts();
    co.alpn = client;
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    pair p = {0};
    connect_pair(&p, &cfg, "localhost", NULL, NULL, ctx);
    assert_int_equal(p.c.err, cerr);
    assert_int_equal(p.s.err, serr);
    if (!cerr) {
        ferry_tls_info ci, si;
        tls_engine_info(p.c.e, &ci);
        tls_engine_info(p.s.e, &si);
        if (want) {
            assert_true(str_has(ci.alpn, want));
            assert_true(str_has(si.alpn, want));
        } else {
            assert_null(ci.alpn.p);
        }
    } else {
        assert_int_equal(tls_engine_alert(p.c.e, NULL), 120); /* no_application_protocol */
    }
    pair_free(&p);
    tls_client_config_destroy(&cfg);
    ferry_tls_context_free(ctx);
}

static void test_alpn(void **state)
{
    (void) state;
    alpn_case("http/1.1", NULL, "http/1.1", 0, 0);
    alpn_case("h2,http/1.1", "http/1.1", "http/1.1", 0, 0);
    alpn_case("h2,http/1.1", "http/1.1,h2", "h2", 0, 0); /* the server's order */
    alpn_case(NULL, "http/1.1", NULL, 0, 0);             /* a server without ALPN */
    alpn_case("http/1.1", "h2", NULL, FERRY_ETLSALERT, FERRY_ETLSHANDSHAKE);
}

/* ---- client certificates ---------------------------------------------------------------- */

static void client_cert_case(ferry_tls_client_cert mode, const test_cert *cert, int version,
                             int cerr, int serr, int calert, ferry_tls_verify_reason sreason)
{
    ferry_tls_options o = sopts(&tc->server_ec);
    o.client_cert = mode;
    o.client_ca_file = tc->ca.cert_file;
    o.max_version = version;
    ferry_tls_context *ctx = sctx_new(&o);
    tls_client_options co = copts();
    if (cert) {
        co.cert_pem = cert->cert_pem;
        co.key_pem = cert->key_pem;
    }
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    pair p = {0};
    connect_pair(&p, &cfg, "localhost", NULL, NULL, ctx);
    if (p.c.err != cerr || p.s.err != serr)
        fail_msg("mode %d: client %s (%s), server %s (%s)", mode, ferry_err_name(p.c.err),
                 tls_engine_error_detail(p.c.e), ferry_err_name(p.s.err),
                 tls_engine_error_detail(p.s.e));
    assert_int_equal(tls_engine_alert(p.c.e, NULL), calert);
    if (calert == 116) assert_string_equal(tls_engine_error_detail(p.c.e), "certificate required");
    assert_int_equal(tls_engine_verify_reason(p.s.e, NULL), sreason);
    if (!serr) {
        exchange(&p);
        ferry_tls_info si;
        tls_engine_info(p.s.e, &si);
        bool asked = mode != FERRY_TLS_CLIENT_CERT_NONE;
        assert_int_equal(si.peer_verified, cert != NULL && asked);
        if (cert && asked)
            assert_string_equal(si.peer_subject, "CN=ferry test client,O=ferry tests");
    }
    pair_free(&p);
    tls_client_config_destroy(&cfg);
    ferry_tls_context_free(ctx);
}

static void test_client_certs(void **state)
{
    (void) state;
    const ferry_tls_verify_reason ok = FERRY_TLS_VERIFY_OK;
    for (int v = 0; v < 2; v++) {
        int version = v ? FERRY_TLS_1_2 : FERRY_TLS_1_3;
        client_cert_case(FERRY_TLS_CLIENT_CERT_REQUIRE, &tc->client, version, 0, 0, -1, ok);
        client_cert_case(FERRY_TLS_CLIENT_CERT_REQUEST, &tc->client, version, 0, 0, -1, ok);
        client_cert_case(FERRY_TLS_CLIENT_CERT_REQUEST, NULL, version, 0, 0, -1, ok);
        /* required, none sent: TLS 1.3 says certificate_required (116) after the
         * client thinks it is done; TLS 1.2 fails the handshake (40) */
        client_cert_case(FERRY_TLS_CLIENT_CERT_REQUIRE, NULL, version, FERRY_ETLSALERT,
                         FERRY_ETLSVERIFY, v ? 40 : 116, FERRY_TLS_VERIFY_NO_CERTIFICATE);
        /* one the server's CA did not sign: unknown_ca (48) */
        client_cert_case(FERRY_TLS_CLIENT_CERT_REQUEST, &tc->client_unknown_ca, version,
                         FERRY_ETLSALERT, FERRY_ETLSVERIFY, 48, FERRY_TLS_VERIFY_UNKNOWN_ISSUER);
    }
    client_cert_case(FERRY_TLS_CLIENT_CERT_NONE, &tc->client, FERRY_TLS_1_3, 0, 0, -1, ok);
}

/* ---- resumption ------------------------------------------------------------------------ */

/* Connect to ctx through cache under "origin"; returns whether it resumed. */
static bool connect_resumed(const tls_client_config *cfg, tls_session_cache *cache,
                            ferry_tls_context *ctx)
{
    pair p = {0};
    connect_pair(&p, cfg, "localhost", cache, "https://localhost:443", ctx);
    assert_ok_pair(&p);
    exchange(&p); /* also reads the TLS 1.3 ticket */
    bool resumed = tls_engine_resumed(p.c.e);
    ferry_tls_info ci, si;
    tls_engine_info(p.c.e, &ci);
    tls_engine_info(p.s.e, &si);
    assert_int_equal(ci.resumed, resumed);
    assert_int_equal(si.resumed, resumed);
    /* a resumed session still knows what was verified */
    assert_int_equal(ci.peer_verified, 1);
    pair_free(&p);
    return resumed;
}

static void resumption_case(int version)
{
    ferry_tls_options o = sopts(&tc->server_ec);
    o.max_version = version;
    ferry_tls_context *ctx = sctx_new(&o);
    tls_client_options co = copts();
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    tls_session_cache cache;
    assert_int_equal(tls_session_cache_init(&cache, 0), 0);
    assert_false(connect_resumed(&cfg, &cache, ctx));
    assert_int_equal(cache.count, 1);
    assert_true(connect_resumed(&cfg, &cache, ctx));
    assert_true(connect_resumed(&cfg, &cache, ctx));
    assert_int_equal(cache.count, 1);
    assert_true(cache.hits >= 2);

    /* without tickets, nothing resumes */
    o.session_tickets = 0;
    ferry_tls_context *plain = sctx_new(&o);
    tls_session_cache_destroy(&cache);
    assert_int_equal(tls_session_cache_init(&cache, 0), 0);
    assert_false(connect_resumed(&cfg, &cache, plain));
    assert_false(connect_resumed(&cfg, &cache, plain));
    tls_session_cache_destroy(&cache);
    ferry_tls_context_free(plain);
    tls_client_config_destroy(&cfg);
    ferry_tls_context_free(ctx);
}

static void test_resumption_tls13(void **state)
{
    (void) state;
    resumption_case(FERRY_TLS_1_3);
}

static void test_resumption_tls12(void **state)
{
    (void) state;
    resumption_case(FERRY_TLS_1_2);
}

/* Contexts (think: two loops, or a reloaded certificate) sharing ticket keys
 * resume each other's sessions; after export/import, another process does. */
static void test_resumption_shared_keys(void **state)
{
    (void) state;
    ferry_tls_ticket_keys *keys;
    assert_int_equal(ferry_tls_ticket_keys_new(3600, 300, &keys), 0);
    ferry_tls_options o = sopts(&tc->server_ec);
    o.ticket_keys = keys;
    ferry_tls_context *a = sctx_new(&o);
    o.cert.cert_file = tc->server_rsa.cert_file; /* a reload with another certificate */
    o.cert.key_file = tc->server_rsa.key_file;
    ferry_tls_context *b = sctx_new(&o);
    ferry_tls_ticket_keys_free(keys); /* the contexts hold theirs */

    tls_client_options co = copts();
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    for (int v = 0; v < 2; v++) {
        tls_client_options co2 = copts();
        co2.max_version = v ? FERRY_TLS_1_2 : FERRY_TLS_1_3;
        tls_client_config cfg2;
        ccfg_init(&cfg2, &co2);
        tls_session_cache cache;
        assert_int_equal(tls_session_cache_init(&cache, 4), 0);
        assert_false(connect_resumed(&cfg2, &cache, a));
        assert_true(connect_resumed(&cfg2, &cache, b));
        assert_true(connect_resumed(&cfg2, &cache, a));
        tls_session_cache_destroy(&cache);
        tls_client_config_destroy(&cfg2);
    }

    /* a context with keys of its own does not know those tickets */
    ferry_tls_options own = sopts(&tc->server_ec);
    ferry_tls_context *c = sctx_new(&own);
    tls_session_cache cache;
    assert_int_equal(tls_session_cache_init(&cache, 4), 0);
    assert_false(connect_resumed(&cfg, &cache, a));
    assert_false(connect_resumed(&cfg, &cache, c));

    /* export from a's keys, import into fresh keys: d resumes a's sessions */
    unsigned char buf[FERRY_TLS_TICKET_KEYS_EXPORT_MAX];
    size_t len;
    assert_false(connect_resumed(&cfg, &cache, a));
    assert_int_equal(ferry_tls_ticket_keys_export(a->keys, NULL, 0, &len), 0);
    assert_int_equal(len, 8 + 88);
    assert_int_equal(ferry_tls_ticket_keys_export(a->keys, buf, 10, &len), FERRY_ENOBUFS);
    assert_int_equal(ferry_tls_ticket_keys_export(a->keys, buf, sizeof(buf), &len), 0);
    ferry_tls_ticket_keys *imported;
    assert_int_equal(ferry_tls_ticket_keys_new(3600, 300, &imported), 0);
    assert_int_equal(ferry_tls_ticket_keys_import(imported, buf, 7), FERRY_EINVAL);
    buf[0] ^= 1;
    assert_int_equal(ferry_tls_ticket_keys_import(imported, buf, len), FERRY_EINVAL);
    buf[0] ^= 1;
    assert_int_equal(ferry_tls_ticket_keys_import(imported, buf, len - 1), FERRY_EINVAL);
    assert_int_equal(ferry_tls_ticket_keys_import(imported, buf, len), 0);
    own.ticket_keys = imported;
    ferry_tls_context *d = sctx_new(&own);
    ferry_tls_ticket_keys_free(imported);
    assert_true(connect_resumed(&cfg, &cache, d));

    tls_session_cache_destroy(&cache);
    tls_client_config_destroy(&cfg);
    ferry_tls_context_free(a);
    ferry_tls_context_free(b);
    ferry_tls_context_free(c);
    ferry_tls_context_free(d);
}

static uint64_t fake_now;
static uint64_t fake_clock(void)
{
    return fake_now;
}

/* Rotation: a ticket under the previous key still resumes (and is replaced
 * by one under the new key); once lifetime_s has passed since its key was
 * replaced, it no longer does. */
static void test_ticket_rotation(void **state)
{
    (void) state;
    ferry_tls_ticket_keys *keys;
    assert_int_equal(ferry_tls_ticket_keys_new(100, 50, &keys), 0);
    fake_now = (uint64_t) time(NULL);
    tls_ticket_keys_set_clock(keys, fake_clock);
    ferry_tls_options o = sopts(&tc->server_ec);
    o.ticket_keys = keys;
    ferry_tls_context *ctx = sctx_new(&o);
    tls_client_options co = copts();
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    tls_session_cache cache;
    assert_int_equal(tls_session_cache_init(&cache, 4), 0);
    const char *key = "https://localhost:443";

    /* OpenSSL's TLS 1.3 client uses a session once: tests keep unused copies */
    assert_false(connect_resumed(&cfg, &cache, ctx)); /* ticket under key 1 */
    SSL_SESSION *s = tls_session_cache_get1(&cache, key);
    SSL_SESSION *old = SSL_SESSION_dup(s);
    SSL_SESSION_free(s);

    fake_now += 101;                                 /* the next ticket rotates */
    assert_true(connect_resumed(&cfg, &cache, ctx)); /* key 1 still decrypts */
    assert_int_equal(tls_ticket_keys_count(keys), 2);
    s = tls_session_cache_get1(&cache, key); /* the renewed ticket, under key 2 */
    SSL_SESSION *renewed = SSL_SESSION_dup(s);
    tls_session_cache_put(&cache, key, s); /* back, for the next connection */
    SSL_SESSION_free(s);
    assert_true(connect_resumed(&cfg, &cache, ctx));

    fake_now += 51; /* key 1 was replaced 51 s ago: its tickets are dead */
    tls_session_cache_put(&cache, key, old);
    assert_false(connect_resumed(&cfg, &cache, ctx));
    tls_session_cache_put(&cache, key, renewed); /* key 2's tickets live on */
    assert_true(connect_resumed(&cfg, &cache, ctx));

    /* forced rotations keep at most FERRY_TLS_TICKET_KEYS_MAX keys */
    for (int i = 0; i < 40; i++)
        assert_int_equal(ferry_tls_ticket_keys_rotate(keys), 0);
    assert_int_equal(tls_ticket_keys_count(keys), FERRY_TLS_TICKET_KEYS_MAX);
    fake_now += 51;
    assert_int_equal(ferry_tls_ticket_keys_rotate(keys), 0);
    assert_int_equal(tls_ticket_keys_count(keys), 2); /* the rest expired */

    SSL_SESSION_free(old);
    SSL_SESSION_free(renewed);
    tls_session_cache_destroy(&cache);
    tls_client_config_destroy(&cfg);
    ferry_tls_context_free(ctx);
    ferry_tls_ticket_keys_free(keys);
}

/* A TLS 1.3 ticket (and a key update) reaching an idle client is consumed
 * silently: no plaintext, not "closed", and the session is cached. */
static void test_ticket_at_idle_client(void **state)
{
    (void) state;
    ferry_tls_context *ctx = sctx_for(&tc->server_ec);
    tls_client_options co = copts();
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    tls_session_cache cache;
    assert_int_equal(tls_session_cache_init(&cache, 4), 0);
    pair p = {0};
    connect_pair(&p, &cfg, "localhost", &cache, "o", ctx);
    assert_ok_pair(&p);
    exchange(&p);
    uint64_t stored = cache.stored;

    SSL *ss = tls_engine_ssl(p.s.e);
    assert_int_equal(SSL_new_session_ticket(ss), 1);
    assert_int_equal(SSL_do_handshake(ss), 1); /* writes the ticket */
    assert_true(tls_engine_out_pending(p.s.e) > 0);
    move(&p.s, &p.c, 0, 0);
    assert_true(tls_engine_has_input(p.c.e));
    char buf[64];
    assert_int_equal(tls_engine_read(p.c.e, buf, sizeof(buf)), 0);
    assert_false(tls_engine_peer_closed(p.c.e));
    assert_false(tls_engine_has_input(p.c.e));
    assert_int_equal(cache.stored, stored + 1);
    assert_int_equal(tls_engine_buffered(p.c.e), 0);

    /* a key update asking for ours: consumed too; the client's own goes out
     * before its next record (RFC 8446 §4.6.3) */
    assert_int_equal(SSL_key_update(ss, SSL_KEY_UPDATE_REQUESTED), 1);
    assert_int_equal(SSL_do_handshake(ss), 1);
    move(&p.s, &p.c, 0, 0);
    assert_int_equal(tls_engine_read(p.c.e, buf, sizeof(buf)), 0);
    assert_false(tls_engine_peer_closed(p.c.e));
    exchange(&p); /* and the connection still works, under new keys */
    assert_int_equal(p.c.err, 0);
    pair_free(&p);
    tls_session_cache_destroy(&cache);
    tls_client_config_destroy(&cfg);
    ferry_tls_context_free(ctx);
}

/* ---- records cut anywhere, big transfers ------------------------------------------------- */

static void test_split_everywhere(void **state)
{
    (void) state;
    ferry_tls_context *ctx = sctx_for(&tc->server_ec);
    tls_client_options co = copts();
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    for (int v = 0; v < 2; v++) {
        /* the whole handshake a byte at a time, reading a byte at a time */
        tls_client_options co2 = copts();
        co2.max_version = v ? FERRY_TLS_1_2 : 0;
        tls_client_config cfg2;
        ccfg_init(&cfg2, &co2);
        pair p = {.chunk = 1, .read_cap = 1};
        connect_pair(&p, &cfg2, "localhost", NULL, NULL, ctx);
        assert_ok_pair(&p);
        exchange(&p);
        pair_free(&p);
        tls_client_config_destroy(&cfg2);
    }

    /* a response of three records, cut at every offset into two feeds */
    pair p = {0};
    connect_pair(&p, &cfg, "localhost", NULL, NULL, ctx);
    assert_ok_pair(&p);
    send_str(&p.s, "HTTP/1.1 200 OK\r\n");
    send_str(&p.s, "Content-Length: 5\r\n\r\n");
    send_str(&p.s, "hello");
    size_t n;
    const char *wire = tls_engine_out_peek(p.s.e, &n);
    char *copy = malloc(n);
    memcpy(copy, wire, n);
    tls_engine_out_consume(p.s.e, n);
    const char *want = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    /* a fresh client per cut would need a handshake each: instead the server
     * re-sends the same plaintext, and every cut is checked on the live pair */
    for (size_t cut = 0; cut <= n; cut++) {
        if (cut == 0) {
            assert_int_equal(tls_engine_feed(p.c.e, copy, n), 0);
        } else {
            send_str(&p.s, "HTTP/1.1 200 OK\r\n");
            send_str(&p.s, "Content-Length: 5\r\n\r\n");
            send_str(&p.s, "hello");
            const char *w = tls_engine_out_peek(p.s.e, &n);
            assert_int_equal(tls_engine_feed(p.c.e, w, cut), 0);
            assert_int_equal(tls_engine_feed(p.c.e, w + cut, n - cut), 0);
            tls_engine_out_consume(p.s.e, n);
        }
        side_read(&p.c, (cut % 7) + 1);
        assert_int_equal(p.c.err, 0);
        expect_got(&p.c, want);
    }
    free(copy);
    pair_free(&p);
    tls_client_config_destroy(&cfg);
    ferry_tls_context_free(ctx);
}

static unsigned char pattern_at(uint64_t i)
{
    return (unsigned char) ((i * 2654435761u) >> 13);
}

/* 10 MiB each way at once, through 16 KiB moves, with writers that wait
 * while 64 KiB of ciphertext is unsent: every engine buffer stays bounded. */
static void test_ten_mib_both_ways(void **state)
{
    (void) state;
    ferry_tls_context *ctx = sctx_for(&tc->server_ec);
    tls_client_options co = copts();
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    pair p = {0};
    connect_pair(&p, &cfg, "localhost", NULL, NULL, ctx);
    assert_ok_pair(&p);
    const uint64_t total = 10u << 20;
    uint64_t sent[2] = {0, 0}, got[2] = {0, 0};
    side *sides[2] = {&p.c, &p.s};
    char *chunk = malloc(16384);
    char *rbuf = malloc(16384);
    size_t peak_out = 0;
    while (got[0] < total || got[1] < total) {
        for (int k = 0; k < 2; k++) {
            side *w = sides[k];
            if (sent[k] < total && tls_engine_out_pending(w->e) < 65536) {
                size_t n = 16384;
                if (total - sent[k] < n) n = (size_t) (total - sent[k]);
                for (size_t i = 0; i < n; i++)
                    chunk[i] = (char) pattern_at(sent[k] + i);
                assert_int_equal(tls_engine_write(w->e, chunk, n), 0);
                sent[k] += n;
            }
            if (tls_engine_out_pending(w->e) > peak_out) peak_out = tls_engine_out_pending(w->e);
        }
        for (int k = 0; k < 2; k++) {
            side *from = sides[k], *to = sides[1 - k];
            move(from, to, 0, 16384);
            ssize_t n;
            while ((n = tls_engine_read(to->e, rbuf, 16384)) > 0) {
                for (ssize_t i = 0; i < n; i++)
                    if ((unsigned char) rbuf[i] != pattern_at(got[k] + (uint64_t) i))
                        fail_msg("byte %llu differs", (unsigned long long) (got[k] + i));
                got[k] += (uint64_t) n;
            }
            assert_true(n == 0);
            note_peak(to);
        }
    }
    printf("10 MiB each way: peak ciphertext pending %zu B; engine buffers at most %zu B "
           "(client), %zu B (server)\n",
           peak_out, p.c.peak_buffered, p.s.peak_buffered);
    assert_true(peak_out < 65536 + 17000);
    assert_true(p.c.peak_buffered < 256 * 1024);
    assert_true(p.s.peak_buffered < 256 * 1024);
    /* done: the buffers are gone again */
    assert_int_equal(tls_engine_buffered(p.c.e), 0);
    assert_int_equal(tls_engine_buffered(p.s.e), 0);
    free(chunk);
    free(rbuf);
    pair_free(&p);
    tls_client_config_destroy(&cfg);
    ferry_tls_context_free(ctx);
}

/* out_take hands the pending ciphertext over and the engine starts afresh. */
static void test_out_take(void **state)
{
    (void) state;
    ferry_tls_context *ctx = sctx_for(&tc->server_ec);
    tls_client_options co = copts();
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    pair p = {0};
    connect_pair(&p, &cfg, "localhost", NULL, NULL, ctx);
    assert_ok_pair(&p);
    char *base;
    const char *data;
    size_t len;
    assert_false(tls_engine_out_take(p.s.e, &base, &data, &len));
    send_str(&p.s, "first");
    size_t n;
    const char *w = tls_engine_out_peek(p.s.e, &n);
    char head[3];
    memcpy(head, w, 3);
    tls_engine_out_consume(p.s.e, 3); /* a partial write first */
    assert_true(tls_engine_out_take(p.s.e, &base, &data, &len));
    assert_int_equal(len, n - 3);
    assert_int_equal(tls_engine_out_pending(p.s.e), 0);
    send_str(&p.s, "second"); /* into a new buffer while `base` is in flight */
    size_t n2;
    const char *w2 = tls_engine_out_peek(p.s.e, &n2);
    /* deliver: the 3 bytes, the taken rest, then the second record */
    char *all = malloc(n + n2);
    memcpy(all + 3, data, len);
    memcpy(all + n, w2, n2);
    tls_engine_out_consume(p.s.e, n2);
    free(base);
    memcpy(all, head, 3);
    assert_int_equal(tls_engine_feed(p.c.e, all, n + n2), 0);
    side_read(&p.c, 0);
    expect_got(&p.c, "firstsecond");
    free(all);
    pair_free(&p);
    tls_client_config_destroy(&cfg);
    ferry_tls_context_free(ctx);
}

/* ---- closing ---------------------------------------------------------------------------- */

static void test_close_notify_both_ways(void **state)
{
    (void) state;
    ferry_tls_context *ctx = sctx_for(&tc->server_ec);
    tls_client_options co = copts();
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    for (int v = 0; v < 2; v++) {
        tls_client_options co2 = copts();
        co2.max_version = v ? FERRY_TLS_1_2 : 0;
        tls_client_config cfg2;
        ccfg_init(&cfg2, &co2);
        /* the server closes (graceful close after a response) */
        pair p = {0};
        connect_pair(&p, &cfg2, "localhost", NULL, NULL, ctx);
        exchange(&p);
        send_str(&p.s, "last words");
        assert_int_equal(tls_engine_shutdown(p.s.e), 0);
        assert_int_equal(tls_engine_shutdown(p.s.e), 0); /* once */
        assert_int_equal(tls_engine_write(p.s.e, "x", 1), FERRY_EPIPE);
        pump(&p);
        expect_got(&p.c, "last words");
        assert_true(p.c.eof);
        assert_true(tls_engine_peer_closed(p.c.e));
        char buf[8];
        assert_int_equal(tls_engine_read(p.c.e, buf, sizeof(buf)), FERRY_EOF);
        /* a FIN after the close_notify changes nothing */
        assert_int_equal(tls_engine_feed_eof(p.c.e), 0);
        assert_int_equal(tls_engine_read(p.c.e, buf, sizeof(buf)), FERRY_EOF);
        /* the client answers with its own; the server reads it as a clean end */
        assert_int_equal(tls_engine_shutdown(p.c.e), 0);
        pump(&p);
        assert_true(p.s.eof);
        pair_free(&p);

        /* the client closes first; the server still answers what it read */
        connect_pair(&p, &cfg2, "localhost", NULL, NULL, ctx);
        send_str(&p.c, "request");
        assert_int_equal(tls_engine_shutdown(p.c.e), 0);
        pump(&p);
        expect_got(&p.s, "request");
        assert_true(p.s.eof);
        send_str(&p.s, "response");
        pump(&p);
        expect_got(&p.c, "response");
        pair_free(&p);
        tls_client_config_destroy(&cfg2);
    }
    tls_client_config_destroy(&cfg);
    ferry_tls_context_free(ctx);
}

/* A FIN without close_notify is FERRY_ETLSTRUNCATED, after the plaintext
 * that arrived before it. */
static void test_truncation(void **state)
{
    (void) state;
    ferry_tls_context *ctx = sctx_for(&tc->server_ec);
    tls_client_options co = copts();
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    pair p = {0};
    connect_pair(&p, &cfg, "localhost", NULL, NULL, ctx);
    send_str(&p.s, "HTTP/1.0 200 OK\r\n\r\nbody until close");
    move(&p.s, &p.c, 0, 0);
    assert_int_equal(tls_engine_feed_eof(p.c.e), 0);
    side_read(&p.c, 0);
    expect_got(&p.c, "HTTP/1.0 200 OK\r\n\r\nbody until close");
    assert_int_equal(p.c.err, FERRY_ETLSTRUNCATED);
    assert_false(tls_engine_peer_closed(p.c.e));
    assert_int_equal(ferry_err_kind_of(p.c.err), FERRY_ERRK_RESET);
    pair_free(&p);

    /* a record cut by the FIN: the same */
    connect_pair(&p, &cfg, "localhost", NULL, NULL, ctx);
    send_str(&p.s, "cut short");
    size_t n;
    const char *w = tls_engine_out_peek(p.s.e, &n);
    assert_int_equal(tls_engine_feed(p.c.e, w, n - 1), 0);
    assert_int_equal(tls_engine_feed_eof(p.c.e), 0);
    char buf[64];
    assert_int_equal(tls_engine_read(p.c.e, buf, sizeof(buf)), FERRY_ETLSTRUNCATED);
    pair_free(&p);

    /* and in the middle of a handshake */
    tls_engine *s;
    assert_int_equal(tls_engine_new_server(ctx, &s), 0);
    assert_int_equal(tls_engine_feed(s, "\x16\x03\x01", 3), 0);
    assert_int_equal(tls_engine_feed_eof(s), FERRY_ETLSTRUNCATED);
    tls_engine_free(s);
    tls_client_config_destroy(&cfg);
    ferry_tls_context_free(ctx);
}

/* Renegotiation is refused both ways, and the refusing side goes on. */
static void test_renegotiation_refused(void **state)
{
    (void) state;
    ferry_tls_options o = sopts(&tc->server_ec);
    o.max_version = FERRY_TLS_1_2;
    ferry_tls_context *ctx = sctx_new(&o);
    tls_client_options co = copts();
    tls_client_config cfg;
    ccfg_init(&cfg, &co);

    /* the client asks (its own refusal switched off, as a hostile one would) */
    pair p = {0};
    connect_pair(&p, &cfg, "localhost", NULL, NULL, ctx);
    assert_ok_pair(&p);
    SSL *cs = tls_engine_ssl(p.c.e);
    SSL_clear_options(cs, SSL_OP_NO_RENEGOTIATION);
    assert_int_equal(SSL_renegotiate(cs), 1);
    SSL_do_handshake(cs); /* sends a ClientHello */
    ERR_clear_error();
    move(&p.c, &p.s, 0, 0);
    char buf[64];
    assert_int_equal(tls_engine_read(p.s.e, buf, sizeof(buf)), 0); /* refused: a warning */
    assert_int_equal(SSL_num_renegotiations(tls_engine_ssl(p.s.e)), 0);
    send_str(&p.s, "still here");
    assert_int_equal(tls_engine_out_pending(p.s.e) > 0, 1);
    pair_free(&p);

    /* the server asks; the client refuses and keeps reading */
    connect_pair(&p, &cfg, "localhost", NULL, NULL, ctx);
    assert_ok_pair(&p);
    SSL *ss = tls_engine_ssl(p.s.e);
    SSL_clear_options(ss, SSL_OP_NO_RENEGOTIATION);
    assert_int_equal(SSL_renegotiate(ss), 1);
    SSL_do_handshake(ss); /* sends a HelloRequest */
    ERR_clear_error();
    move(&p.s, &p.c, 0, 0);
    assert_int_equal(tls_engine_read(p.c.e, buf, sizeof(buf)), 0);
    assert_true(tls_engine_out_pending(p.c.e) > 0); /* its no_renegotiation warning */
    assert_int_equal(SSL_num_renegotiations(tls_engine_ssl(p.c.e)), 0);
    pair_free(&p);
    tls_client_config_destroy(&cfg);
    ferry_tls_context_free(ctx);
}

/* ---- hostile or mistaken input -------------------------------------------------------------- */

static void test_plain_http_detected(void **state)
{
    (void) state;
    ferry_tls_context *ctx = sctx_for(&tc->server_ec);
    tls_engine *s;
    assert_int_equal(tls_engine_new_server(ctx, &s), 0);
    assert_int_equal(tls_engine_feed(s, "GET / HTTP/1.1\r\n", 16), FERRY_ETLSPLAINHTTP);
    char buf[8];
    assert_int_equal(tls_engine_read(s, buf, sizeof(buf)), FERRY_ETLSPLAINHTTP);
    assert_int_equal(tls_engine_out_pending(s), 0); /* the transport writes the 400 itself */
    assert_int_equal(ferry_err_http_status(FERRY_ETLSPLAINHTTP), 400);
    tls_engine_free(s);

    /* one byte is enough to tell */
    assert_int_equal(tls_engine_new_server(ctx, &s), 0);
    assert_int_equal(tls_engine_feed(s, "P", 1), FERRY_ETLSPLAINHTTP);
    tls_engine_free(s);

    /* binary junk is a failed handshake, not plain HTTP */
    assert_int_equal(tls_engine_new_server(ctx, &s), 0);
    assert_int_equal(tls_engine_feed(s, "\x00\x01\x02\x03\x04\x05", 6), FERRY_ETLSHANDSHAKE);
    assert_true(strlen(tls_engine_error_detail(s)) > 0);
    tls_engine_free(s);

    /* a handshake record with garbage inside */
    assert_int_equal(tls_engine_new_server(ctx, &s), 0);
    assert_int_equal(tls_engine_feed(s, "\x16\x03\x01\x00\x05\x01\xff\xff\xff\xff", 10),
                     FERRY_ETLSHANDSHAKE);
    tls_engine_free(s);

    /* a client meeting a plain HTTP server */
    tls_client_options co = copts();
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    tls_engine *c;
    assert_int_equal(tls_engine_new_client(&cfg, "localhost", NULL, NULL, &c), 0);
    assert_int_equal(tls_engine_handshake(c), 0);
    const char *resp = "HTTP/1.1 400 Bad Request\r\n\r\n";
    assert_int_equal(tls_engine_feed(c, resp, strlen(resp)), FERRY_ETLSHANDSHAKE);
    assert_string_equal(tls_engine_error_detail(c), "wrong version number");
    tls_engine_free(c);
    tls_client_config_destroy(&cfg);
    ferry_tls_context_free(ctx);
}

/* Half a ClientHello, then nothing: "need more", and little memory held. */
static void test_half_client_hello(void **state)
{
    (void) state;
    ferry_tls_context *ctx = sctx_for(&tc->server_ec);
    tls_client_options co = copts();
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    tls_engine *c, *s;
    assert_int_equal(tls_engine_new_client(&cfg, "localhost", NULL, NULL, &c), 0);
    assert_int_equal(tls_engine_new_server(ctx, &s), 0);
    assert_int_equal(tls_engine_handshake(c), 0);
    size_t n;
    const char *hello = tls_engine_out_peek(c, &n);
    assert_true(n > 100);
    assert_int_equal(tls_engine_feed(s, hello, n / 2), 0);
    char buf[16];
    assert_int_equal(tls_engine_read(s, buf, sizeof(buf)), 0);
    assert_int_equal(tls_engine_handshake(s), 0);
    assert_false(tls_engine_handshake_done(s));
    assert_int_equal(tls_engine_out_pending(s), 0);
    /* OpenSSL took the bytes into its record buffer: ours are gone */
    assert_int_equal(tls_engine_buffered(s), 0);
    assert_true(tls_engine_has_input(s));
    tls_engine_free(c);
    tls_engine_free(s);

    /* a record header announcing 16 KiB, fed a byte at a time up to 10 KiB */
    assert_int_equal(tls_engine_new_server(ctx, &s), 0);
    unsigned char rec[10240] = {0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0xff, 0xff};
    for (size_t i = 0; i < sizeof(rec); i++)
        assert_int_equal(tls_engine_feed(s, rec + i, 1), 0);
    assert_int_equal(tls_engine_buffered(s), 0);
    /* an oversized record is refused at once */
    tls_engine_free(s);
    assert_int_equal(tls_engine_new_server(ctx, &s), 0);
    assert_int_equal(tls_engine_feed(s, "\x16\x03\x01\xff\xff", 5), FERRY_ETLSHANDSHAKE);
    tls_engine_free(s);
    tls_client_config_destroy(&cfg);
    ferry_tls_context_free(ctx);
}

/* ---- memory of idle connections -----------------------------------------------------------------
 */

static size_t heap_used(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static void idle_memory_case(const test_cert *cert, const char *label)
{
    enum { N = 200 };
    ferry_tls_context *ctx = sctx_for(cert);
    tls_client_options co = copts();
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    tls_session_cache cache;
    assert_int_equal(tls_session_cache_init(&cache, 4), 0);
    static pair pairs[N];
    pair warm = {0}; /* OpenSSL's one-time allocations happen here */
    connect_pair(&warm, &cfg, "localhost", &cache, "o", ctx);
    exchange(&warm);
    pair_free(&warm);

    size_t before = heap_used();
    for (int i = 0; i < N; i++) {
        connect_pair(&pairs[i], &cfg, "localhost", &cache, "o", ctx);
        assert_ok_pair(&pairs[i]);
        exchange(&pairs[i]);
        free(pairs[i].c.got), pairs[i].c.got = NULL;
        free(pairs[i].s.got), pairs[i].s.got = NULL;
        assert_int_equal(tls_engine_buffered(pairs[i].c.e), 0);
        assert_int_equal(tls_engine_buffered(pairs[i].s.e), 0);
    }
    size_t all = heap_used();
    for (int i = 0; i < N; i++)
        tls_engine_free(pairs[i].c.e);
    size_t servers = heap_used();
    for (int i = 0; i < N; i++)
        tls_engine_free(pairs[i].s.e);
    size_t none = heap_used();
    memset(pairs, 0, sizeof(pairs));
    long per_server = ((long) servers - (long) none) / N;
    long per_client = ((long) all - (long) servers) / N;
    printf("idle TLS 1.3 connection, %s: server %ld B, client %ld B of heap (baseline drift "
           "%ld B)\n",
           label, per_server, per_client, ((long) none - (long) before) / N);
    if (!UNDER_ASAN) {
        assert_true(per_server > 0);
        /* nginx: ~16 KB of RSS per idle TLS connection. OpenSSL 3.0's SSL object
         * alone is 7.6 KB, its two AES-GCM contexts 2.3 KB, the session 0.9 KB */
        assert_true(per_server <= 16384);
    }
    tls_session_cache_destroy(&cache);
    tls_client_config_destroy(&cfg);
    ferry_tls_context_free(ctx);
}

static void test_idle_memory(void **state)
{
    (void) state;
    idle_memory_case(&tc->server_ec, "ECDSA");
    idle_memory_case(&tc->server_rsa, "RSA");
}

/* ---- contexts, keys and the cache on their own -------------------------------------------------
 */

/* ---- threads: a context per loop, ticket keys shared -------------------------------- */

/* No cmocka inside threads: a plain pump that says whether all went well. */
static bool plain_shuttle(tls_engine *a, tls_engine *b)
{
    char buf[4096];
    size_t n;
    const char *p;
    while ((p = tls_engine_out_peek(a, &n)) != NULL) {
        int rc = tls_engine_feed(b, p, n);
        tls_engine_out_consume(a, n);
        if (rc < 0) return false;
    }
    ssize_t r;
    while ((r = tls_engine_read(b, buf, sizeof(buf))) > 0) {
    }
    return r == 0;
}

/* One connection through cache; 1 resumed, 0 full, -1 failed. */
static int plain_connect(const tls_client_config *cfg, tls_session_cache *cache,
                         ferry_tls_context *ctx)
{
    tls_engine *c, *s;
    if (tls_engine_new_client(cfg, "localhost", cache, "o", &c) != 0) return -1;
    if (tls_engine_new_server(ctx, &s) != 0) {
        tls_engine_free(c);
        return -1;
    }
    bool ok = tls_engine_handshake(c) == 0;
    for (int i = 0; ok && i < 10; i++)
        ok = plain_shuttle(c, s) && plain_shuttle(s, c);
    ok = ok && tls_engine_handshake_done(c) && tls_engine_handshake_done(s) &&
         tls_engine_write(c, "ping", 4) == 0 && plain_shuttle(c, s) &&
         tls_engine_write(s, "pong", 4) == 0 && plain_shuttle(s, c);
    int rc = ok ? tls_engine_resumed(c) : -1;
    tls_engine_free(c);
    tls_engine_free(s);
    return rc;
}

typedef struct loop_job {
    ferry_tls_context *ctx;
    tls_client_config cfg;
    tls_session_cache cache;
    int n, resumed, failed;
    atomic_int *stop;
} loop_job;

static void *loop_thread(void *arg)
{
    loop_job *j = arg;
    for (int i = 0; i < j->n; i++) {
        int r = plain_connect(&j->cfg, &j->cache, j->ctx);
        j->resumed += r == 1;
        j->failed += r < 0;
    }
    return NULL;
}

/* Rotates (fewer times than the keys kept, so every ticket stays good) and
 * exports while the loops run. */
static void *rotate_thread(void *arg)
{
    loop_job *j = arg;
    for (int i = 0; i < FERRY_TLS_TICKET_KEYS_MAX - 2 && !atomic_load(j->stop); i++) {
        ferry_tls_ticket_keys_rotate(j->ctx->keys);
        unsigned char buf[FERRY_TLS_TICKET_KEYS_EXPORT_MAX];
        size_t len;
        ferry_tls_ticket_keys_export(j->ctx->keys, buf, sizeof(buf), &len);
        struct timespec ts = {0, 3000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* Two "loops" on two threads, each with its own context and client, sharing
 * ticket keys while a third thread rotates and exports them; then each
 * client's session resumes on the other's context. */
static void test_threads_share_keys(void **state)
{
    (void) state;
    ferry_tls_ticket_keys *keys;
    assert_int_equal(ferry_tls_ticket_keys_new(3600, 300, &keys), 0);
    ferry_tls_options o = sopts(&tc->server_ec);
    o.ticket_keys = keys;
    loop_job jobs[2];
    tls_client_options co = copts();
    atomic_int stop;
    atomic_init(&stop, 0);
    for (int i = 0; i < 2; i++) {
        memset(&jobs[i], 0, sizeof(jobs[i]));
        jobs[i].ctx = sctx_new(&o);
        ccfg_init(&jobs[i].cfg, &co);
        assert_int_equal(tls_session_cache_init(&jobs[i].cache, 4), 0);
        jobs[i].n = UNDER_ASAN ? 15 : 40;
        jobs[i].stop = &stop;
    }
    pthread_t t[3];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, loop_thread, &jobs[i]), 0);
    assert_int_equal(pthread_create(&t[2], NULL, rotate_thread, &jobs[0]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    atomic_store(&stop, 1);
    pthread_join(t[2], NULL);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(jobs[i].failed, 0);
        /* all but the first: rotated keys still decrypt for 300 s */
        assert_int_equal(jobs[i].resumed, jobs[i].n - 1);
    }
    assert_int_equal(plain_connect(&jobs[0].cfg, &jobs[0].cache, jobs[1].ctx), 1);
    assert_int_equal(plain_connect(&jobs[1].cfg, &jobs[1].cache, jobs[0].ctx), 1);
    for (int i = 0; i < 2; i++) {
        tls_session_cache_destroy(&jobs[i].cache);
        tls_client_config_destroy(&jobs[i].cfg);
        ferry_tls_context_free(jobs[i].ctx);
    }
    ferry_tls_ticket_keys_free(keys);
}

/* A connection keeps its context alive after the owner dropped it (a reload
 * swapped it): the handshake finishes and the context goes with the last
 * connection (ASan's leak check holds the last part). */
static void test_context_outlives_owner(void **state)
{
    (void) state;
    ferry_tls_context *ctx = sctx_for(&tc->server_ec);
    tls_client_options co = copts();
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    tls_engine *c, *s;
    assert_int_equal(tls_engine_new_client(&cfg, "localhost", NULL, NULL, &c), 0);
    assert_int_equal(tls_engine_new_server(ctx, &s), 0);
    ferry_tls_context_free(ctx);     /* the owner's reference */
    tls_client_config_destroy(&cfg); /* the client's SSL keeps its SSL_CTX too */
    pair p;
    pair_start(&p, c, s);
    assert_int_equal(tls_engine_handshake(c), 0);
    pump(&p);
    assert_ok_pair(&p);
    exchange(&p);
    pair_free(&p);
}

static void test_context_errors(void **state)
{
    (void) state;
    ferry_tls_context *ctx;
    ferry_tls_options o;
    ferry_tls_options_init(&o);
    assert_int_equal(ferry_tls_context_new(&o, &ctx), FERRY_EINVAL);
    assert_null(ctx);

    o.cert.cert_file = "/nonexistent/server.crt";
    assert_int_equal(ferry_tls_context_new(&o, &ctx), FERRY_ENOENT);
    assert_non_null(strstr(ferry_tls_error_detail(), "/nonexistent/server.crt"));

    o.cert.cert_file = tc->server_ec.cert_file;
    o.cert.key_file = tc->api.key_file; /* not its key */
    assert_int_equal(ferry_tls_context_new(&o, &ctx), FERRY_ETLSCERT);
    assert_non_null(strstr(ferry_tls_error_detail(), tc->api.key_file));
    if (!strstr(ferry_tls_error_detail(), "mismatch"))
        fail_msg("detail: %s", ferry_tls_error_detail());

    o.cert.key_file = tc->server_ec.cert_file; /* no key in it */
    assert_int_equal(ferry_tls_context_new(&o, &ctx), FERRY_ETLSCERT);

    o.cert.cert_file = NULL;
    o.cert.key_file = NULL;
    o.cert.cert_pem = "not PEM at all";
    assert_int_equal(ferry_tls_context_new(&o, &ctx), FERRY_ETLSCERT);

    /* a chain and key in one string works */
    char both[8192];
    snprintf(both, sizeof(both), "%s%s", tc->server_ec.cert_pem, tc->server_ec.key_pem);
    o.cert.cert_pem = both;
    assert_int_equal(ferry_tls_context_new(&o, &ctx), 0);
    ferry_tls_context_free(ferry_tls_context_ref(ctx)); /* a second reference, dropped */
    ferry_tls_context_free(ctx);
    ferry_tls_context_free(NULL);

    const char *bad_alpn[] = {"", ",", "http/1.1,", ",h2", "h2,,http/1.1"};
    for (size_t i = 0; i < sizeof(bad_alpn) / sizeof(bad_alpn[0]); i++) {
        o.alpn = bad_alpn[i];
        assert_int_equal(ferry_tls_context_new(&o, &ctx), FERRY_EINVAL);
    }
    o.alpn = "h2,http/1.1";
    o.min_version = FERRY_TLS_1_3;
    o.max_version = FERRY_TLS_1_2;
    assert_int_equal(ferry_tls_context_new(&o, &ctx), FERRY_EINVAL);
    o.max_version = 0x0301;
    assert_int_equal(ferry_tls_context_new(&o, &ctx), FERRY_EINVAL);
    o.max_version = 0;
    o.ciphers = "NO-SUCH-CIPHER";
    assert_int_equal(ferry_tls_context_new(&o, &ctx), FERRY_EINVAL);
    o.ciphers = NULL;

    const char *bad_names[] = {"*", "*.", "a.*.b", "**.x", "sp ace", "", "."};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        ferry_tls_cert sni = {
            .cert_pem = tc->api.cert_pem, .key_pem = tc->api.key_pem, .name = bad_names[i]};
        o.sni_certs = &sni;
        o.sni_cert_count = 1;
        assert_int_equal(ferry_tls_context_new(&o, &ctx), FERRY_EINVAL);
    }
    /* an SNI certificate without DNS names needs a name */
    ferry_tls_cert sni = {.cert_pem = tc->client.cert_pem, .key_pem = tc->client.key_pem};
    o.sni_certs = &sni;
    o.sni_cert_count = 1;
    assert_int_equal(ferry_tls_context_new(&o, &ctx), FERRY_EINVAL);
    o.sni_cert_count = 0;

    o.client_cert = FERRY_TLS_CLIENT_CERT_REQUIRE; /* without a CA */
    assert_int_equal(ferry_tls_context_new(&o, &ctx), FERRY_EINVAL);
    o.client_ca_file = tc->server_ec.key_file; /* no certificate in it */
    assert_int_equal(ferry_tls_context_new(&o, &ctx), FERRY_ETLSCERT);

    tls_client_options co = copts();
    tls_client_config cfg;
    co.ca_file = "/nonexistent/ca.pem";
    assert_int_equal(tls_client_config_init(&cfg, &co), FERRY_ENOENT);
    co = copts();
    co.cert_file = tc->client.cert_file; /* no key */
    assert_int_equal(tls_client_config_init(&cfg, &co), FERRY_ETLSCERT);
    co = copts();
    co.alpn = "";
    assert_int_equal(tls_client_config_init(&cfg, &co), FERRY_EINVAL);
    tls_client_config_destroy(&cfg); /* zeroed: nothing */
    tls_engine *e;
    assert_int_equal(tls_engine_new_client(&cfg, "localhost", NULL, NULL, &e), FERRY_EINVAL);
    co = copts();
    ccfg_init(&cfg, &co);
    assert_int_equal(tls_engine_new_client(&cfg, "", NULL, NULL, &e), FERRY_EINVAL);
    assert_int_equal(tls_engine_new_client(&cfg, "[]", NULL, NULL, &e), FERRY_EINVAL);
    /* a zone is dropped from an IPv6 literal */
    assert_int_equal(tls_engine_new_client(&cfg, "[fe80::1%eth0]", NULL, NULL, &e), 0);
    tls_engine_free(e);
    tls_engine_free(NULL);
    tls_client_config_destroy(&cfg);
}

static void test_verify_reason_names(void **state)
{
    (void) state;
    assert_string_equal(ferry_tls_verify_reason_name(FERRY_TLS_VERIFY_OK), "ok");
    assert_string_equal(ferry_tls_verify_reason_name(FERRY_TLS_VERIFY_UNKNOWN_ISSUER),
                        "unknown-issuer");
    assert_string_equal(ferry_tls_verify_reason_name(FERRY_TLS_VERIFY_HOSTNAME_MISMATCH),
                        "hostname-mismatch");
    assert_string_equal(ferry_tls_verify_reason_name(FERRY_TLS_VERIFY_NO_CERTIFICATE),
                        "no-certificate");
    assert_string_equal(ferry_tls_verify_reason_name((ferry_tls_verify_reason) 99), "other");
    assert_int_equal(tls_verify_reason_of(X509_V_ERR_CERT_HAS_EXPIRED), FERRY_TLS_VERIFY_EXPIRED);
    assert_int_equal(tls_verify_reason_of(X509_V_ERR_IP_ADDRESS_MISMATCH),
                     FERRY_TLS_VERIFY_HOSTNAME_MISMATCH);
    assert_int_equal(tls_verify_reason_of(X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN),
                     FERRY_TLS_VERIFY_UNKNOWN_ISSUER);
    assert_int_equal(tls_verify_reason_of(X509_V_ERR_CERT_REVOKED), FERRY_TLS_VERIFY_OTHER);
}

/* A resumable session of the given version, made without a handshake. */
static SSL_SESSION *fake_session(int version, unsigned char id)
{
    static SSL_CTX *sc;
    static const SSL_CIPHER *cipher12, *cipher13;
    if (!sc) {
        sc = SSL_CTX_new(TLS_client_method());
        SSL *ssl = SSL_new(sc);
        STACK_OF(SSL_CIPHER) *all = SSL_get_ciphers(ssl);
        for (int i = 0; i < sk_SSL_CIPHER_num(all); i++) {
            const SSL_CIPHER *c = sk_SSL_CIPHER_value(all, i);
            bool v13 = strncmp(SSL_CIPHER_get_name(c), "TLS_", 4) == 0; /* 1.3 suites' names */
            if (v13 && !cipher13) cipher13 = c;
            if (!v13 && !cipher12) cipher12 = c;
        }
        SSL_free(ssl);
    }
    SSL_SESSION *s = SSL_SESSION_new();
    assert_non_null(s);
    unsigned char mk[32] = {id}, sid[32] = {id, 1};
    assert_int_equal(SSL_SESSION_set_protocol_version(s, version), 1);
    assert_int_equal(SSL_SESSION_set_cipher(s, version == TLS1_3_VERSION ? cipher13 : cipher12), 1);
    assert_int_equal(SSL_SESSION_set1_master_key(s, mk, sizeof(mk)), 1);
    assert_int_equal(SSL_SESSION_set1_id(s, sid, sizeof(sid)), 1);
    SSL_SESSION_set_time(s, (long) time(NULL));
    SSL_SESSION_set_timeout(s, 300);
    assert_true(SSL_SESSION_is_resumable(s));
    return s;
}

/* The cache on its own: the LRU bound over origins, TLS 1.2 sessions that
 * stay and replace each other, TLS 1.3 tickets that are taken one at a
 * time, references, expiry. */
static void test_session_cache(void **state)
{
    (void) state;
    tls_session_cache c;
    assert_int_equal(tls_session_cache_init(&c, 3), 0);
    SSL_SESSION *s[5];
    for (int i = 0; i < 5; i++)
        s[i] = fake_session(TLS1_2_VERSION, (unsigned char) i);
    const char *keys[5] = {"a", "b", "c", "d", "e"};
    for (int i = 0; i < 3; i++)
        tls_session_cache_put(&c, keys[i], s[i]);
    assert_int_equal(c.count, 3);
    SSL_SESSION *got = tls_session_cache_get1(&c, "a"); /* a is now the most recent */
    assert_ptr_equal(got, s[0]);
    SSL_SESSION_free(got);
    got = tls_session_cache_get1(&c, "a"); /* TLS 1.2: still there */
    assert_ptr_equal(got, s[0]);
    SSL_SESSION_free(got);
    tls_session_cache_put(&c, "d", s[3]); /* evicts b, the least recent */
    assert_int_equal(c.count, 3);
    assert_int_equal(c.evicted, 1);
    assert_null(tls_session_cache_get1(&c, "b"));
    tls_session_cache_put(&c, "a", s[4]); /* replaces a's */
    assert_int_equal(tls_session_cache_sessions(&c, "a"), 1);
    got = tls_session_cache_get1(&c, "a");
    assert_ptr_equal(got, s[4]);
    SSL_SESSION_free(got);
    tls_session_cache_remove(&c, "a");
    tls_session_cache_remove(&c, "nothing");
    assert_int_equal(c.count, 2);
    /* an expired session is dropped when asked for */
    SSL_SESSION_set_time(s[3], (long) time(NULL) - 1000);
    assert_null(tls_session_cache_get1(&c, "d"));
    assert_int_equal(c.count, 1);
    for (int i = 0; i < 5; i++)
        SSL_SESSION_free(s[i]); /* the cache's references keep the kept ones alive */
    got = tls_session_cache_get1(&c, "c");
    assert_non_null(got);
    SSL_SESSION_free(got);

    /* TLS 1.3: up to TLS_SESSIONS_PER_KEY tickets, newest first, each taken once */
    SSL_SESSION *t[6];
    for (int i = 0; i < 6; i++) {
        t[i] = fake_session(TLS1_3_VERSION, (unsigned char) (10 + i));
        tls_session_cache_put(&c, "t", t[i]);
    }
    tls_session_cache_put(&c, "t", t[5]); /* the same one again: held once */
    assert_int_equal(tls_session_cache_sessions(&c, "t"), TLS_SESSIONS_PER_KEY);
    for (int i = 5; i > 5 - TLS_SESSIONS_PER_KEY; i--) {
        got = tls_session_cache_get1(&c, "t");
        assert_ptr_equal(got, t[i]);
        SSL_SESSION_free(got);
    }
    assert_null(tls_session_cache_get1(&c, "t")); /* all taken: the origin is forgotten */
    assert_int_equal(tls_session_cache_sessions(&c, "t"), 0);
    /* a TLS 1.2 session replaces tickets, and the other way round */
    tls_session_cache_put(&c, "t", t[0]);
    tls_session_cache_put(&c, "t", t[1]);
    SSL_SESSION *v12 = fake_session(TLS1_2_VERSION, 30);
    tls_session_cache_put(&c, "t", v12);
    assert_int_equal(tls_session_cache_sessions(&c, "t"), 1);
    tls_session_cache_put(&c, "t", t[2]);
    assert_int_equal(tls_session_cache_sessions(&c, "t"), 1);
    got = tls_session_cache_get1(&c, "t");
    assert_ptr_equal(got, t[2]);
    SSL_SESSION_free(got);
    SSL_SESSION_free(v12);
    for (int i = 0; i < 6; i++)
        SSL_SESSION_free(t[i]);
    tls_session_cache_destroy(&c);
    tls_session_cache_destroy(&c); /* twice: harmless */
}

/* Two tickets after a full TLS 1.3 handshake: two connections opened at
 * once both resume; a third finds none left and does a full handshake. */
static void test_parallel_resumption(void **state)
{
    (void) state;
    ferry_tls_context *ctx = sctx_for(&tc->server_ec);
    tls_client_options co = copts();
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    tls_session_cache cache;
    assert_int_equal(tls_session_cache_init(&cache, 4), 0);
    assert_false(connect_resumed(&cfg, &cache, ctx));
    assert_int_equal(tls_session_cache_sessions(&cache, "https://localhost:443"), 2);
    pair p[3];
    for (int i = 0; i < 3; i++) { /* all three created before any ticket comes back */
        tls_engine *c, *s;
        assert_int_equal(
            tls_engine_new_client(&cfg, "localhost", &cache, "https://localhost:443", &c), 0);
        assert_int_equal(tls_engine_new_server(ctx, &s), 0);
        pair_start(&p[i], c, s);
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tls_engine_handshake(p[i].c.e), 0);
        pump(&p[i]);
        assert_ok_pair(&p[i]);
        assert_int_equal(tls_engine_resumed(p[i].c.e), i < 2);
        pair_free(&p[i]);
    }
    tls_session_cache_destroy(&cache);
    tls_client_config_destroy(&cfg);
    ferry_tls_context_free(ctx);
}

/* ---- timing (TLS_BENCH=N) ----------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void bench_case(const test_cert *cert, const char *label, int n, bool resume)
{
    ferry_tls_context *ctx = sctx_for(cert);
    tls_client_options co = copts();
    tls_client_config cfg;
    ccfg_init(&cfg, &co);
    tls_session_cache cache;
    assert_int_equal(tls_session_cache_init(&cache, 4), 0);
    pair p = {0};
    connect_pair(&p, &cfg, "localhost", &cache, "o", ctx);
    exchange(&p);
    pair_free(&p);
    double t0 = now_s();
    timed_s = 0;
    for (int i = 0; i < n; i++) {
        tls_engine *c, *s;
        assert_int_equal(tls_engine_new_client(&cfg, "localhost", resume ? &cache : NULL, "o", &c),
                         0);
        double c0 = cpu_s();
        assert_int_equal(tls_engine_new_server(ctx, &s), 0);
        timed_s += cpu_s() - c0;
        pair_start(&p, c, s);
        timed = s;
        assert_int_equal(tls_engine_handshake(c), 0);
        pump(&p);
        assert_ok_pair(&p);
        if (resume) {
            exchange(&p);
            assert_true(tls_engine_resumed(p.c.e));
        }
        timed = NULL;
        c0 = cpu_s();
        tls_engine_free(s);
        timed_s += cpu_s() - c0;
        p.s.e = NULL;
        pair_free(&p);
    }
    double dt = now_s() - t0;
    printf("%s %s: %.0f handshakes/s, client and server in one thread (%d in %.2f s); "
           "server side alone %.0f us CPU each = %.0f/s\n",
           label, resume ? "resumed" : "full", n / dt, n, dt, timed_s / n * 1e6, n / timed_s);
    tls_session_cache_destroy(&cache);
    tls_client_config_destroy(&cfg);
    ferry_tls_context_free(ctx);
}

static void test_bench(void **state)
{
    (void) state;
    const char *env = getenv("TLS_BENCH");
    int n = env ? atoi(env) : 0;
    if (n <= 0) skip();
    bench_case(&tc->server_ec, "ECDSA P-256", n, false);
    bench_case(&tc->server_rsa, "RSA-2048", n, false);
    bench_case(&tc->server_ec, "ECDSA P-256", n, true);
}

static int setup(void **state)
{
    (void) state;
    tc = test_certs_get();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_tls13_ecdsa),
        cmocka_unit_test(test_handshake_tls12_rsa),
        cmocka_unit_test(test_version_mismatch),
        cmocka_unit_test(test_write_before_handshake),
        cmocka_unit_test(test_verify_failures),
        cmocka_unit_test(test_verify_system_store),
        cmocka_unit_test(test_sni),
        cmocka_unit_test(test_alpn),
        cmocka_unit_test(test_client_certs),
        cmocka_unit_test(test_resumption_tls13),
        cmocka_unit_test(test_resumption_tls12),
        cmocka_unit_test(test_resumption_shared_keys),
        cmocka_unit_test(test_ticket_rotation),
        cmocka_unit_test(test_ticket_at_idle_client),
        cmocka_unit_test(test_split_everywhere),
        cmocka_unit_test(test_ten_mib_both_ways),
        cmocka_unit_test(test_out_take),
        cmocka_unit_test(test_close_notify_both_ways),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_renegotiation_refused),
        cmocka_unit_test(test_plain_http_detected),
        cmocka_unit_test(test_half_client_hello),
        cmocka_unit_test(test_idle_memory),
        cmocka_unit_test(test_threads_share_keys),
        cmocka_unit_test(test_context_outlives_owner),
        cmocka_unit_test(test_context_errors),
        cmocka_unit_test(test_verify_reason_names),
        cmocka_unit_test(test_session_cache),
        cmocka_unit_test(test_parallel_resumption),
        cmocka_unit_test(test_bench),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
