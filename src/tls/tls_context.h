/* tls_context.h — what a TLS connection is made from: the server's context
 * (ferry_tls_context, public and opaque), the ticket keys it may share with
 * other contexts (ferry_tls_ticket_keys), and the client's configuration
 * (tls_client_config, embedded in whatever owns client connections: the
 * agent). All of it is OpenSSL objects built once; tls_engine.c makes the
 * per-connection SSL objects from them. Nothing here knows about sockets or
 * libuv.
 *
 * Files: tls_context.c (server contexts, the client config, loading PEM),
 * tls_ticket_keys.c (ticket keys and OpenSSL's ticket callback).
 *
 * Thread safety: a ferry_tls_context and a tls_client_config are read-only
 * after they are made, except for their atomic reference count (the
 * context's) and OpenSSL's internal state, which OpenSSL guards; the ticket
 * keys take a read-write lock once per ticket.
 */
#ifndef FERRY_TLS_CONTEXT_H
#define FERRY_TLS_CONTEXT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "ferry.h"

/* One SNI entry: a name (lower case, no trailing dot; a wildcard is stored
 * as its suffix, ".example.com") and the certificate that answers it. */
typedef struct tls_sni_entry {
    char *name;
    bool wildcard;
    X509 *cert; /* a reference each */
    EVP_PKEY *key;
    STACK_OF(X509) * chain; /* intermediates; may be NULL */
} tls_sni_entry;

struct ferry_tls_context {
    atomic_uint refs;
    SSL_CTX *ssl_ctx;   /* default certificate, options, callbacks */
    tls_sni_entry *sni; /* exact names sorted, then wildcards sorted */
    size_t sni_exact, sni_count;
    ferry_tls_ticket_keys *keys; /* a reference; NULL without tickets */
    unsigned char alpn[256];     /* ALPN wire format, our order of preference */
    size_t alpn_len;             /* 0: no ALPN */
};

/* The server's SNI choice for `name` (any case, maybe a trailing dot):
 * the entry, or NULL for the default certificate. */
const tls_sni_entry *tls_context_sni_find(const ferry_tls_context *ctx, const char *name);

/* ---- client ---------------------------------------------------------------- */

/* What a client's TLS needs; the agent fills it from its options
 * (ferry_agent_options' tls_* fields). Strings are only read by
 * tls_client_config_init. */
typedef struct tls_client_options {
    const char *ca_file;   /* PEM CAs to trust instead of the system's */
    const char *ca_dir;    /* a c_rehash'ed directory of CAs, instead of the system's */
    const char *ca_pem;    /* CAs in memory, instead of the system's */
    const char *cert_file; /* a client certificate chain (PEM), or cert_pem */
    const char *key_file;  /* its key; NULL: in cert_file */
    const char *cert_pem;
    const char *key_pem;
    int min_version;          /* FERRY_TLS_1_2 (0 = default) */
    int max_version;          /* FERRY_TLS_1_3 (0 = default) */
    const char *alpn;         /* offered, comma-separated; NULL: "http/1.1" */
    const char *ciphers;      /* TLS 1.2 list; NULL: OpenSSL's default */
    const char *ciphersuites; /* TLS 1.3; NULL: OpenSSL's */
    bool insecure;            /* DANGEROUS: accept any certificate for any name */
} tls_client_options;

/* Zero everything: the defaults (system trust store, verification on). */
void tls_client_options_init(tls_client_options *o);

/* Embedded in its owner (the agent). One per loop: its SSL_CTX may be used
 * from one thread at a time for new connections (OpenSSL itself would allow
 * more; the agent is one loop's). */
typedef struct tls_client_config {
    SSL_CTX *ssl_ctx;
    bool insecure;
} tls_client_config;

/* Build cfg from o: the trust store (o's CAs, else $SSL_CERT_DIR, else
 * $SSL_CERT_FILE, else OpenSSL's default directory, /etc/ssl/certs on
 * Debian, read lazily), the client certificate, versions, ALPN and the
 * session callback that feeds tls_session_cache. Costs ~0.3 ms and ~15 KB
 * (a bundle file instead of a directory: ~35 ms, ~800 KB), so an agent
 * should make it when it first needs it. Owner of what it allocates: cfg,
 * until tls_client_config_destroy. Returns 0 or as ferry_tls_context_new
 * (ferry_tls_error_detail() says what failed). */
int tls_client_config_init(tls_client_config *cfg, const tls_client_options *o);
/* Release cfg's SSL_CTX (connections made from it keep their own reference,
 * so this is safe while they live). Zeroed cfg: nothing. */
void tls_client_config_destroy(tls_client_config *cfg);

/* ---- shared by the tls files ----------------------------------------------- */

/* Record what failed, for ferry_tls_error_detail(): a printf-style prefix
 * and OpenSSL's first queued reason, if any (the queue is then cleared). */
void tls_set_detail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tls_clear_detail(void);

/* ALPN "a,b" → wire format (length-prefixed) in out[0..*len); FERRY_EINVAL
 * for an empty or over-long name or list. */
int tls_alpn_wire(const char *list, unsigned char *out, size_t cap, size_t *len);

/* Version number (0 = default) → OpenSSL's; false for an unknown one. */
bool tls_version_ok(int v);

/* The ticket key callback for SSL_CTX_set_tlsext_ticket_key_evp_cb; it finds
 * the keys through the SSL's SSL_CTX app data (the ferry_tls_context). */
int tls_ticket_key_cb(SSL *s, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                      EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc);

/* Tests: read "now" (seconds of wall-clock time) from clock instead. */
void tls_ticket_keys_set_clock(ferry_tls_ticket_keys *k, uint64_t (*clock)(void));
/* How many keys k holds now (the current one included). */
size_t tls_ticket_keys_count(ferry_tls_ticket_keys *k);

/* The verification reason for an X509_V_ERR_* code. */
ferry_tls_verify_reason tls_verify_reason_of(long x509_err);

#endif /* FERRY_TLS_CONTEXT_H */
