/* fuzz_tls.c — libFuzzer target for src/tls: arbitrary bytes as TLS records
 * into a server engine and into a client engine.
 *
 * Input: data[0] picks the target and its settings, data[1] seeds the cut
 * of the rest into feeds (1 byte to 4 KiB), the rest is what the peer
 * "sent". Targets:
 *   0 a server (TLS 1.2 and 1.3, SNI certificates, client certificates
 *     requested) reading a ClientHello and what follows;
 *   1 a client that sent its ClientHello (insecure, so a certificate that
 *     does not verify does not end the handshake early), reading a server's
 *     flight;
 *   2 the server of a completed real handshake, reading records after it;
 *   3 the client of a completed real handshake, the same;
 * bit 2 limits the fuzzed side to TLS 1.2 (whose handshake is in the clear,
 * so the fuzzer reaches Certificate and ServerKeyExchange parsing).
 * After each feed the target reads until it has nothing to give and its
 * output is discarded; at the end it gets an EOF, a write and a shutdown.
 * Checked: no crash, no leak (ASan), engine buffers bounded, a sticky error
 * stays the same, and every result is one the header lists.
 *
 * Certificates come from tests/support/test_certs.c, compiled in here (the
 * fuzz targets link only the library). FUZZ_TLS_WRITE_SEEDS=dir writes the
 * seed corpus (fuzz/seeds/fuzz_tls: real ClientHellos and server flights
 * from these engines) into dir at start-up.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/support/test_certs.c"
#include "ferry.h"
#include "tls/tls_engine.h"

#define CHECK(cond, what)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_tls: %s (line %d)\n", what, __LINE__);                           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Our buffers: what was fed in one go (4 KiB) plus OpenSSL's largest flight
 * (a server's certificate chain, an alert) — far below this. */
#define MAX_BUFFERED (512 * 1024)

static ferry_tls_context *server13, *server12;
static tls_client_config client13, client12;
static tls_session_cache cache;

static bool known_result(long r)
{
    return r >= 0 || r == FERRY_EOF || r == FERRY_ETLSTRUNCATED || r == FERRY_ETLSPLAINHTTP ||
           r == FERRY_ETLSVERIFY || r == FERRY_ETLSALERT || r == FERRY_ETLSHANDSHAKE ||
           r == FERRY_ETLSPROTOCOL || r == FERRY_ENOMEM || r == FERRY_EPIPE;
}

static ferry_tls_context *make_server(int max_version)
{
    const test_certs *c = test_certs_get();
    static ferry_tls_cert sni[2];
    sni[0] = (ferry_tls_cert){.cert_pem = c->api.cert_pem, .key_pem = c->api.key_pem};
    sni[1] = (ferry_tls_cert){.cert_pem = c->wildcard.cert_pem, .key_pem = c->wildcard.key_pem};
    ferry_tls_options o;
    ferry_tls_options_init(&o);
    o.cert.cert_pem = c->server_ec.cert_pem;
    o.cert.key_pem = c->server_ec.key_pem;
    o.sni_certs = sni;
    o.sni_cert_count = 2;
    o.max_version = max_version;
    o.alpn = "h2,http/1.1";
    o.client_cert = FERRY_TLS_CLIENT_CERT_REQUEST;
    o.client_ca_pem = c->ca.cert_pem;
    ferry_tls_context *ctx;
    CHECK(ferry_tls_context_new(&o, &ctx) == 0, ferry_tls_error_detail());
    return ctx;
}

static void make_client(tls_client_config *cfg, int max_version)
{
    tls_client_options o;
    tls_client_options_init(&o);
    o.ca_pem = test_certs_get()->ca.cert_pem;
    o.max_version = max_version;
    o.insecure = true;
    CHECK(tls_client_config_init(cfg, &o) == 0, ferry_tls_error_detail());
}

/* Move a's output to b whole, and let b read; false once either fails. */
static bool shuttle(tls_engine *a, tls_engine *b)
{
    char buf[4096];
    size_t n;
    const char *p;
    while ((p = tls_engine_out_peek(a, &n)) != NULL) {
        int rc = tls_engine_feed(b, p, n);
        tls_engine_out_consume(a, n);
        if (rc < 0)
            return false;
    }
    ssize_t r;
    while ((r = tls_engine_read(b, buf, sizeof(buf))) > 0) {
    }
    return r == 0;
}

/* A real handshake between a client and a server; both usable after. */
static void handshake(tls_engine *c, tls_engine *s)
{
    CHECK(tls_engine_handshake(c) == 0, "client hello");
    for (int i = 0; i < 20 && !(tls_engine_handshake_done(c) && tls_engine_handshake_done(s));
         i++) {
        CHECK(shuttle(c, s) && shuttle(s, c), "real handshake");
    }
    CHECK(shuttle(c, s) && shuttle(s, c), "after the handshake");
    CHECK(tls_engine_handshake_done(c) && tls_engine_handshake_done(s), "handshake done");
}

/* Read everything e gives now; returns the last result. */
static long drain(tls_engine *e)
{
    char buf[1024];
    long r;
    int guard = 0;
    while ((r = (long) tls_engine_read(e, buf, (size_t) (guard % 3 == 0 ? 1 : sizeof(buf)))) > 0)
        guard++;
    CHECK(known_result(r), "unknown read result");
    return r;
}

static uint32_t next_rand(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

static void run(tls_engine *e, const uint8_t *p, size_t n, uint8_t seed)
{
    uint32_t rs = seed;
    int err = 0;
    size_t off = 0;
    while (off < n) {
        size_t k = 1 + next_rand(&rs) % (seed & 1 ? 16 : 4096);
        if (k > n - off)
            k = n - off;
        int rc = tls_engine_feed(e, p + off, k);
        CHECK(known_result(rc), "unknown feed result");
        off += k;
        long r = drain(e);
        if (r < 0 && r != FERRY_EOF) {
            CHECK(!err || err == r, "error not sticky");
            err = (int) r;
        }
        CHECK(tls_engine_buffered(e) < MAX_BUFFERED, "engine buffers unbounded");
        size_t out;
        tls_engine_out_peek(e, &out);
        tls_engine_out_consume(e, out);
    }
    tls_engine_feed_eof(e);
    drain(e);
    CHECK(known_result(tls_engine_write(e, "GET / HTTP/1.1\r\n\r\n", 18)), "write");
    CHECK(known_result(tls_engine_shutdown(e)), "shutdown");
    ferry_tls_info info;
    tls_engine_info(e, &info);
    tls_engine_verify_reason(e, NULL);
    tls_engine_alert(e, NULL);
    (void) tls_engine_error_detail(e);
}

/* ---- seeds ---- */

static void write_seed(const char *dir, const char *name, uint8_t mode, const char *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, path);
    uint8_t head[2] = {mode, 0x80};
    fwrite(head, 1, 2, f);
    fwrite(p, 1, n, f);
    fclose(f);
}

/* The first flight of each side, as the other side's fuzz input. */
static void write_seeds(const char *dir)
{
    struct {
        const char *name;
        tls_client_config *cfg;
        ferry_tls_context *ctx;
        const char *host;
        uint8_t tls12;
    } cases[] = {
        {"tls13-localhost", &client13, server13, "localhost", 0},
        {"tls13-sni-api", &client13, server13, "api.example.test", 0},
        {"tls12-wildcard", &client12, server12, "x.wild.test", 4},
        {"tls13-ip", &client13, server13, "127.0.0.1", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tls_engine *c, *s;
        CHECK(tls_engine_new_client(cases[i].cfg, cases[i].host, NULL, NULL, &c) == 0, "seed");
        CHECK(tls_engine_new_server(cases[i].ctx, &s) == 0, "seed");
        CHECK(tls_engine_handshake(c) == 0, "seed");
        char name[128];
        size_t n;
        const char *hello = tls_engine_out_peek(c, &n);
        snprintf(name, sizeof(name), "server-%s-client-hello", cases[i].name);
        write_seed(dir, name, (uint8_t) (0 | cases[i].tls12), hello, n);
        CHECK(tls_engine_feed(s, hello, n) == 0, "seed");
        tls_engine_out_consume(c, n);
        const char *flight = tls_engine_out_peek(s, &n);
        snprintf(name, sizeof(name), "client-%s-server-flight", cases[i].name);
        write_seed(dir, name, (uint8_t) (1 | cases[i].tls12), flight, n);
        tls_engine_free(c);
        tls_engine_free(s);
    }
    /* after a handshake: a record, a close_notify, an alert-like record */
    const char tail[] = "\x17\x03\x03\x00\x13"
                        "0123456789abcdefghi"
                        "\x15\x03\x03\x00\x02\x01\x00";
    write_seed(dir, "server-after-handshake-records", 2, tail, sizeof(tail) - 1);
    write_seed(dir, "client-after-handshake-records", 3, tail, sizeof(tail) - 1);
    write_seed(dir, "server-plain-http", 0, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void) argc, (void) argv;
    server13 = make_server(0);
    server12 = make_server(FERRY_TLS_1_2);
    make_client(&client13, 0);
    make_client(&client12, FERRY_TLS_1_2);
    CHECK(tls_session_cache_init(&cache, 8) == 0, "cache");
    const char *dir = getenv("FUZZ_TLS_WRITE_SEEDS");
    if (dir)
        write_seeds(dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t mode = data[0], seed = data[1];
    bool tls12 = mode & 4;
    ferry_tls_context *sctx = tls12 ? server12 : server13;
    tls_client_config *ccfg = tls12 ? &client12 : &client13;
    tls_engine *c = NULL, *s = NULL;
    switch (mode & 3) {
    case 0:
        CHECK(tls_engine_new_server(sctx, &s) == 0, "server");
        run(s, data + 2, size - 2, seed);
        break;
    case 1:
        /* with the cache, a stored session is offered on the next run */
        CHECK(tls_engine_new_client(ccfg, seed & 2 ? "api.example.test" : "localhost", &cache,
                                    "fuzz", &c) == 0,
              "client");
        CHECK(tls_engine_handshake(c) == 0, "client hello");
        tls_engine_out_consume(c, tls_engine_out_pending(c));
        run(c, data + 2, size - 2, seed);
        break;
    default:
        CHECK(tls_engine_new_client(ccfg, "localhost", NULL, NULL, &c) == 0, "client");
        CHECK(tls_engine_new_server(sctx, &s) == 0, "server");
        handshake(c, s);
        run((mode & 3) == 2 ? s : c, data + 2, size - 2, seed);
        break;
    }
    tls_engine_free(c);
    tls_engine_free(s);
    return 0;
}
