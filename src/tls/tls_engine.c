/* tls_engine.c — one TLS connection over the engine's own buffers (see
 * tls_engine.h for the contract).
 *
 * The BIO: OpenSSL reads ciphertext from e->in[in_off..in_len) and appends
 * what it writes to e->out. A read with nothing buffered says "retry" — or
 * EOF once feed_eof was called, which OpenSSL 3 turns into
 * SSL_R_UNEXPECTED_EOF_WHILE_READING when no close_notify came first
 * (openssl#11381); that is how FERRY_ETLSTRUNCATED is told from FERRY_EOF.
 * Writes never block: the output buffer grows, and the transport applies
 * backpressure above the engine, as it does for plain TCP.
 *
 * Buffers are allocated when bytes arrive and freed as soon as they are
 * empty (input read, output sent), so an idle connection holds none; OpenSSL
 * does the same with its own (SSL_MODE_RELEASE_BUFFERS, set on every
 * SSL_CTX in tls_context.c).
 *
 * OpenSSL's error queue is per thread and must be empty before a call whose
 * result SSL_get_error interprets; it is cleared only when not empty
 * (ERR_clear_error walks all its slots, ERR_peek_error does not).
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls/tls_engine.h"

#define IN_DEFAULT  (16384 + 2048 + 5) /* one record of any version */
#define OUT_FIRST   4096
#define EARLY_FIRST 1024

struct tls_engine {
    SSL *ssl;                 /* owns the BIO */
    ferry_tls_context *ctx;   /* server: a reference */
    tls_session_cache *cache; /* client: not owned */
    char *cache_key;          /* client: owned copy */
    char *in;                 /* ciphertext received, in[in_off..in_len) unread */
    size_t in_off, in_len, in_cap;
    char *out; /* ciphertext to send, out[out_off..out_len) */
    size_t out_off, out_len, out_cap;
    char *early; /* plaintext written before the handshake completed */
    size_t early_len, early_cap;
    char *peer_subject;     /* formatted on demand */
    unsigned long ossl_err; /* OpenSSL's error behind `err` */
    long verify_err;        /* X509_V_ERR_* */
    int err;                /* sticky error, 0 while none */
    int alert;              /* the peer's fatal alert, -1 while none */
    bool server, hs_done, eof_in, peer_closed, shutdown_sent, sniffed, nomem;
};

/* ---- the BIO ------------------------------------------------------------------------ */

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

/* Make buf hold `need` bytes (doubling from `first`); false on ENOMEM. */
static bool reserve(char **buf, size_t *cap, size_t need, size_t first)
{
    if (need <= *cap) return true;
    size_t n = *cap ? *cap : first;
    while (n < need) {
        if (n > SIZE_MAX / 2) return false;
        n *= 2;
    }
    char *p = realloc(*buf, n);
    if (!p) return false;
    *buf = p;
    *cap = n;
    return true;
}

static int bio_read_ex(BIO *b, char *buf, size_t len, size_t *readbytes)
{
    tls_engine *e = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    size_t avail = e->in_len - e->in_off;
    *readbytes = 0;
    if (avail == 0) {
        if (!e->eof_in) BIO_set_retry_read(b);
        return 0;
    }
    size_t n = len < avail ? len : avail;
    memcpy(buf, e->in + e->in_off, n);
    e->in_off += n;
    *readbytes = n;
    return 1;
}

static int bio_write_ex(BIO *b, const char *buf, size_t len, size_t *written)
{
    tls_engine *e = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    *written = 0;
    if (e->out_off == e->out_len) {
        e->out_off = e->out_len = 0;
    } else if (e->out_len + len > e->out_cap && e->out_off > 0) {
        /* make room from what was sent before growing */
        memmove(e->out, e->out + e->out_off, e->out_len - e->out_off);
        e->out_len -= e->out_off;
        e->out_off = 0;
    }
    if (!reserve(&e->out, &e->out_cap, e->out_len + len, OUT_FIRST)) {
        e->nomem = true;
        return 0;
    }
    memcpy(e->out + e->out_len, buf, len);
    e->out_len += len;
    *written = len;
    return 1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void) num, (void) ptr;
    tls_engine *e = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;
    case BIO_CTRL_EOF: return e->eof_in && e->in_off == e->in_len;
    case BIO_CTRL_PENDING: return (long) (e->in_len - e->in_off);
    case BIO_CTRL_WPENDING: return (long) (e->out_len - e->out_off);
    default: return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ferry tls engine");
    if (m && BIO_meth_set_read_ex(m, bio_read_ex) && BIO_meth_set_write_ex(m, bio_write_ex) &&
        BIO_meth_set_ctrl(m, bio_ctrl) && BIO_meth_set_create(m, bio_create))
        bio_method = m; /* made once, kept for the life of the process */
    else
        BIO_meth_free(m);
}

/* The BIO over e's buffers, given to the SSL (which then owns it). */
static int attach_bio(tls_engine *e)
{
    pthread_once(&bio_once, bio_method_init);
    BIO *b = bio_method ? BIO_new(bio_method) : NULL;
    if (!b) return FERRY_ENOMEM;
    BIO_set_data(b, e);
    SSL_set_bio(e->ssl, b, b);
    return 0;
}

/* ---- buffers ------------------------------------------------------------------------- */

static void release_in_if_empty(tls_engine *e)
{
    if (e->in && e->in_off == e->in_len) {
        free(e->in);
        e->in = NULL;
        e->in_off = e->in_len = e->in_cap = 0;
    }
}

static void release_out_if_empty(tls_engine *e)
{
    if (e->out && e->out_off == e->out_len) {
        free(e->out);
        e->out = NULL;
        e->out_off = e->out_len = e->out_cap = 0;
    }
}

static inline void clear_errors(void)
{
    if (ERR_peek_error()) ERR_clear_error();
}

/* ---- errors ------------------------------------------------------------------------- */

static int fail(tls_engine *e, int code)
{
    if (!e->err) {
        e->err = code;
        /* a session that ended in a failed handshake is not offered again */
        if (!e->server && !e->hs_done && e->cache && e->cache_key)
            tls_session_cache_remove(e->cache, e->cache_key);
    }
    return e->err;
}

static void note_verify(tls_engine *e)
{
    e->verify_err = SSL_get_verify_result(e->ssl);
}

/* What OpenSSL's failure r (from SSL_get_error) means: 0 for "want more
 * input", FERRY_EOF for close_notify, else a sticky error. Clears the queue. */
static int ssl_result(tls_engine *e, int r)
{
    int se = SSL_get_error(e->ssl, r);
    unsigned long ec = ERR_peek_error();
    int code;
    switch (se) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE: clear_errors(); return 0;
    case SSL_ERROR_ZERO_RETURN:
        clear_errors();
        e->peer_closed = true;
        return FERRY_EOF;
    default: break;
    }
    e->ossl_err = ec;
    int reason = ERR_GET_LIB(ec) == ERR_LIB_SSL ? ERR_GET_REASON(ec) : 0;
    if (e->nomem) {
        code = FERRY_ENOMEM;
    } else if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING ||
               (se == SSL_ERROR_SYSCALL && e->eof_in)) {
        code = FERRY_ETLSTRUNCATED;
    } else if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        note_verify(e);
        code = FERRY_ETLSVERIFY;
    } else if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        e->verify_err = -1; /* no X509 code says "none sent" */
        code = FERRY_ETLSVERIFY;
    } else if (reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256) {
        e->alert = reason - SSL_AD_REASON_OFFSET; /* OpenSSL's code for an alert received */
        code = FERRY_ETLSALERT;
    } else {
        code = e->hs_done ? FERRY_ETLSPROTOCOL : FERRY_ETLSHANDSHAKE;
    }
    ERR_clear_error();
    return fail(e, code);
}

/* ---- creating ------------------------------------------------------------------------- */

static tls_engine *engine_new(SSL_CTX *sctx, bool server)
{
    tls_engine *e = calloc(1, sizeof(*e));
    if (!e) return NULL;
    e->alert = -1;
    e->server = server;
    e->ssl = SSL_new(sctx);
    if (!e->ssl || attach_bio(e) < 0) {
        SSL_free(e->ssl);
        free(e);
        clear_errors();
        return NULL;
    }
    SSL_set_app_data(e->ssl, e);
    if (server)
        SSL_set_accept_state(e->ssl);
    else
        SSL_set_connect_state(e->ssl);
    return e;
}

int tls_engine_new_server(ferry_tls_context *ctx, tls_engine **out)
{
    tls_engine *e = engine_new(ctx->ssl_ctx, true);
    if (!e) return *out = NULL, FERRY_ENOMEM;
    e->ctx = ferry_tls_context_ref(ctx);
    *out = e;
    return 0;
}

/* Host checks and SNI for host: an IP literal is checked as an address and
 * sent no SNI (RFC 6066 §3); a name is checked and sent without a trailing dot. */
static int set_host(tls_engine *e, const char *host)
{
    char name[256];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    const char *zone = memchr(host, '%', n);
    if (zone && memchr(host, ':', n)) n = (size_t) (zone - host);
    if (n && host[n - 1] == '.') n--;
    if (n == 0 || n >= sizeof(name)) return FERRY_EINVAL;
    memcpy(name, host, n);
    name[n] = '\0';
    unsigned char addr[16];
    if (inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1)
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(e->ssl), name) == 1 ? 0 : FERRY_EINVAL;
    SSL_set_hostflags(e->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (SSL_set_tlsext_host_name(e->ssl, name) != 1 || SSL_set1_host(e->ssl, name) != 1)
        return FERRY_EINVAL;
    return 0;
}

int tls_engine_new_client(const tls_client_config *cfg, const char *host, tls_session_cache *cache,
                          const char *cache_key, tls_engine **out)
{
    *out = NULL;
    if (!cfg->ssl_ctx || !host) return FERRY_EINVAL;
    tls_engine *e = engine_new(cfg->ssl_ctx, false);
    if (!e) return FERRY_ENOMEM;
    int rc = set_host(e, host);
    if (rc == 0 && cache && cache_key) {
        e->cache = cache;
        e->cache_key = strdup(cache_key);
        if (!e->cache_key) {
            rc = FERRY_ENOMEM;
        } else {
            SSL_SESSION *s = tls_session_cache_get1(cache, cache_key);
            if (s) {
                if (SSL_set_session(e->ssl, s) != 1) clear_errors(); /* a full handshake then */
                SSL_SESSION_free(s);
            }
        }
    }
    if (rc < 0) {
        clear_errors();
        tls_engine_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

void tls_engine_free(tls_engine *e)
{
    if (!e) return;
    /* OpenSSL marks the session of a connection freed before both
     * close_notify alerts were exchanged as not resumable (RFC 2246's old
     * rule; RFC 5246 §7.2.1 dropped it). A connection that ended well, or with
     * a bare FIN, keeps its session resumable; one that failed does not. */
    if (e->ssl && e->hs_done && (e->err == 0 || e->err == FERRY_ETLSTRUNCATED))
        SSL_set_shutdown(e->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(e->ssl);
    ferry_tls_context_free(e->ctx);
    free(e->cache_key);
    free(e->in);
    free(e->out);
    free(e->early);
    free(e->peer_subject);
    free(e);
}

/* ---- handshake ------------------------------------------------------------------------- */

static int ssl_write_all(tls_engine *e, const char *p, size_t n)
{
    clear_errors();
    while (n > 0) {
        size_t w = 0;
        int r = SSL_write_ex(e->ssl, p, n, &w);
        if (r != 1) {
            int rc = ssl_result(e, r);
            /* our BIO never asks to retry a write, and renegotiation is off */
            return rc < 0 && rc != FERRY_EOF ? rc : fail(e, FERRY_ETLSPROTOCOL);
        }
        p += w;
        n -= w;
    }
    return 0;
}

static int handshake_done(tls_engine *e)
{
    e->hs_done = true;
    note_verify(e);
    if (e->early_len) {
        int rc = ssl_write_all(e, e->early, e->early_len);
        if (rc < 0) return rc;
    }
    free(e->early);
    e->early = NULL;
    e->early_len = e->early_cap = 0;
    return 1;
}

/* A server's first byte: a TLS record starts with 0x16 (handshake) or, for an
 * SSLv2-style hello, has its top bit set. Printable ASCII is someone
 * speaking plain HTTP (nginx answers those with a 400). Anything else
 * OpenSSL refuses ("wrong version number"). */
static bool looks_plain(unsigned char b)
{
    return b != 0x16 && !(b & 0x80) && b >= 0x20 && b < 0x7f;
}

static int hs_step(tls_engine *e)
{
    if (e->err) return e->err;
    if (e->hs_done) return 1;
    if (e->server && !e->sniffed && e->in_off < e->in_len) {
        e->sniffed = true;
        if (looks_plain((unsigned char) e->in[e->in_off])) return fail(e, FERRY_ETLSPLAINHTTP);
    }
    clear_errors();
    int r = SSL_do_handshake(e->ssl);
    if (r == 1) return handshake_done(e);
    r = ssl_result(e, r);
    if (r == FERRY_EOF) /* close_notify instead of a handshake */
        r = fail(e, FERRY_ETLSHANDSHAKE);
    return r;
}

int tls_engine_handshake(tls_engine *e)
{
    int r = hs_step(e);
    release_in_if_empty(e);
    return r;
}

bool tls_engine_handshake_done(const tls_engine *e)
{
    return e->hs_done;
}

bool tls_engine_is_server(const tls_engine *e)
{
    return e->server;
}

/* ---- ciphertext in ----------------------------------------------------------------------- */

char *tls_engine_in_space(tls_engine *e, size_t want, size_t *room)
{
    if (want == 0) want = IN_DEFAULT;
    if (e->in_off == e->in_len) {
        e->in_off = e->in_len = 0;
    } else if (e->in_off > 0) {
        memmove(e->in, e->in + e->in_off, e->in_len - e->in_off);
        e->in_len -= e->in_off;
        e->in_off = 0;
    }
    if (want > SIZE_MAX - e->in_len || !reserve(&e->in, &e->in_cap, e->in_len + want, want)) {
        *room = 0;
        return NULL;
    }
    *room = e->in_cap - e->in_len;
    return e->in + e->in_len;
}

int tls_engine_in_commit(tls_engine *e, size_t n)
{
    e->in_len += n;
    if (e->err || e->hs_done) return e->err;
    int r = hs_step(e);
    release_in_if_empty(e);
    return r < 0 ? r : 0;
}

int tls_engine_feed(tls_engine *e, const void *p, size_t n)
{
    if (e->err) return e->err;
    if (n == 0) return 0;
    size_t room;
    char *dst = tls_engine_in_space(e, n, &room);
    if (!dst) return fail(e, FERRY_ENOMEM);
    memcpy(dst, p, n);
    return tls_engine_in_commit(e, n);
}

int tls_engine_feed_eof(tls_engine *e)
{
    e->eof_in = true;
    if (e->err || e->hs_done) return e->err;
    int r = hs_step(e);
    release_in_if_empty(e);
    return r < 0 ? r : 0;
}

/* ---- plaintext ------------------------------------------------------------------------------ */

ssize_t tls_engine_read(tls_engine *e, char *buf, size_t cap)
{
    if (e->err) return e->err;
    if (e->peer_closed) return FERRY_EOF;
    if (!e->hs_done) {
        int r = hs_step(e);
        if (r <= 0) {
            release_in_if_empty(e);
            return r;
        }
    }
    if (cap > SSIZE_MAX) cap = SSIZE_MAX;
    clear_errors();
    size_t n = 0;
    int r = SSL_read_ex(e->ssl, buf, cap, &n);
    if (r == 1) return (ssize_t) n;
    int rc = ssl_result(e, r);
    release_in_if_empty(e);
    return rc;
}

int tls_engine_write(tls_engine *e, const void *p, size_t n)
{
    if (e->err) return e->err;
    if (e->shutdown_sent) return FERRY_EPIPE;
    if (n == 0) return 0;
    if (!e->hs_done) {
        if (n > SIZE_MAX - e->early_len ||
            !reserve(&e->early, &e->early_cap, e->early_len + n, EARLY_FIRST))
            return fail(e, FERRY_ENOMEM);
        memcpy(e->early + e->early_len, p, n);
        e->early_len += n;
        return 0;
    }
    return ssl_write_all(e, p, n);
}

bool tls_engine_has_input(const tls_engine *e)
{
    return e->in_len > e->in_off || SSL_has_pending(e->ssl);
}

/* ---- ciphertext out ---------------------------------------------------------------------------
 */

size_t tls_engine_out_pending(const tls_engine *e)
{
    return e->out_len - e->out_off;
}

const char *tls_engine_out_peek(const tls_engine *e, size_t *len)
{
    *len = e->out_len - e->out_off;
    return *len ? e->out + e->out_off : NULL;
}

void tls_engine_out_consume(tls_engine *e, size_t n)
{
    size_t pending = e->out_len - e->out_off;
    e->out_off += n < pending ? n : pending;
    release_out_if_empty(e);
}

bool tls_engine_out_take(tls_engine *e, char **base, const char **data, size_t *len)
{
    if (e->out_len == e->out_off) {
        release_out_if_empty(e);
        return false;
    }
    *base = e->out;
    *data = e->out + e->out_off;
    *len = e->out_len - e->out_off;
    e->out = NULL;
    e->out_off = e->out_len = e->out_cap = 0;
    return true;
}

/* ---- closing ------------------------------------------------------------------------------------
 */

int tls_engine_shutdown(tls_engine *e)
{
    if (e->err || !e->hs_done || e->shutdown_sent) return 0;
    e->shutdown_sent = true;
    clear_errors();
    int r = SSL_shutdown(e->ssl);
    if (r >= 0) return 0;
    r = ssl_result(e, r);
    return r == FERRY_EOF ? 0 : r;
}

bool tls_engine_peer_closed(const tls_engine *e)
{
    return e->peer_closed;
}

/* ---- information
 * --------------------------------------------------------------------------------- */

static const char *peer_subject(tls_engine *e, X509 *peer)
{
    if (e->peer_subject) return e->peer_subject;
    BIO *b = BIO_new(BIO_s_mem());
    if (b && X509_NAME_print_ex(b, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253) >= 0) {
        char *p;
        long n = BIO_get_mem_data(b, &p);
        e->peer_subject = malloc((size_t) n + 1);
        if (e->peer_subject) {
            memcpy(e->peer_subject, p, (size_t) n);
            e->peer_subject[n] = '\0';
        }
    }
    BIO_free(b);
    clear_errors();
    return e->peer_subject;
}

void tls_engine_info(tls_engine *e, ferry_tls_info *info)
{
    memset(info, 0, sizeof(*info));
    if (!e->hs_done) return;
    info->version = SSL_get_version(e->ssl);
    info->cipher = SSL_CIPHER_get_name(SSL_get_current_cipher(e->ssl));
    const char *sni = SSL_get_servername(e->ssl, TLSEXT_NAMETYPE_host_name);
    if (sni) info->sni = (ferry_str){sni, strlen(sni)};
    const unsigned char *alpn;
    unsigned alpn_len;
    SSL_get0_alpn_selected(e->ssl, &alpn, &alpn_len);
    if (alpn_len) info->alpn = (ferry_str){(const char *) alpn, alpn_len};
    info->resumed = SSL_session_reused(e->ssl);
    info->verify_reason = tls_engine_verify_reason(e, NULL);
    X509 *peer = SSL_get0_peer_certificate(e->ssl);
    if (peer && e->verify_err == X509_V_OK) {
        info->peer_verified = 1;
        info->peer_subject = peer_subject(e, peer);
    }
}

bool tls_engine_resumed(const tls_engine *e)
{
    return e->hs_done && SSL_session_reused(e->ssl);
}

ferry_tls_verify_reason tls_engine_verify_reason(const tls_engine *e, long *x509_err)
{
    if (x509_err) *x509_err = e->verify_err;
    if (e->verify_err == -1) return FERRY_TLS_VERIFY_NO_CERTIFICATE;
    return tls_verify_reason_of(e->verify_err);
}

/* OpenSSL 3.0 names most alerts, but not TLS 1.3's newer ones. */
static const char *alert_name(int alert)
{
    switch (alert) {
    case 109: return "missing extension";
    case 116: return "certificate required";
    default: return SSL_alert_desc_string_long(alert);
    }
}

int tls_engine_alert(const tls_engine *e, const char **name)
{
    if (name) *name = e->alert >= 0 ? alert_name(e->alert) : "";
    return e->alert;
}

const char *tls_engine_error_detail(const tls_engine *e)
{
    if (e->err == FERRY_ETLSVERIFY && e->verify_err > 0)
        return X509_verify_cert_error_string(e->verify_err);
    if (e->err == FERRY_ETLSVERIFY && e->verify_err == -1)
        return "peer did not return a certificate";
    if (e->err == FERRY_ETLSALERT) return alert_name(e->alert);
    const char *s = e->ossl_err ? ERR_reason_error_string(e->ossl_err) : NULL;
    return s ? s : "";
}

SSL_SESSION *tls_engine_get1_session(const tls_engine *e)
{
    return e->hs_done ? SSL_get1_session(e->ssl) : NULL;
}

size_t tls_engine_buffered(const tls_engine *e)
{
    return e->in_cap + e->out_cap + e->early_cap;
}

SSL *tls_engine_ssl(tls_engine *e)
{
    return e->ssl;
}

int tls_engine_new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    tls_engine *e = SSL_get_app_data(ssl);
    if (e && e->cache && e->cache_key)
        tls_session_cache_put(e->cache, e->cache_key, sess); /* it takes its own reference */
    return 0;                                                /* so OpenSSL keeps its own */
}
