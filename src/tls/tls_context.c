/* tls_context.c — server contexts (ferry_tls_context) and the client's
 * configuration (tls_client_config): certificates, keys and trust loaded
 * from PEM, and the SSL_CTX settings every connection inherits.
 *
 * Choices that hold for both sides: TLS 1.2 at least, 1.3 preferred;
 * renegotiation refused (SSL_OP_NO_RENEGOTIATION: a peer's attempt is
 * answered with a no_renegotiation warning and goes nowhere); OpenSSL's read
 * and write buffers released whenever they are empty
 * (SSL_MODE_RELEASE_BUFFERS), so an idle connection holds none.
 *
 * Server: one SSL_CTX per context holds the default certificate; an SNI
 * match swaps the connection's certificate in the servername callback
 * (SSL_use_cert_and_key on that SSL only). Resumption is by tickets only
 * (OpenSSL's session cache is off: no lock shared by every handshake): two
 * tickets after a full handshake, one after a resumption. The session id context is a digest of the
 * client certificate policy, so a session made where no client certificate was asked for cannot
 * resume where one is required.
 *
 * PEM comes from memory or from files read whole here (so a missing file is
 * FERRY_ENOENT, not an OpenSSL string), never through OpenSSL's password
 * prompt: an encrypted key fails to load instead of reading the terminal.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "core/options.h"
#include "tls/tls_context.h"
#include "tls/tls_engine.h"

#define MAX_PEM_FILE (16u << 20) /* a CA bundle is ~200 KB; anything this big is a mistake */
#define DEFAULT_CIPHERS                                                                            \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
/* A client certificate chain is a few KB; OpenSSL's default allows 100 KB
 * per hostile handshake. */
#define SERVER_MAX_CERT_LIST 32768

/* ---- error detail ------------------------------------------------------------ */

static _Thread_local char detail[256];

const char *ferry_tls_error_detail(void)
{
    return detail;
}

void tls_clear_detail(void)
{
    detail[0] = '\0';
}

void tls_set_detail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    unsigned long e = ERR_peek_error();
    if (e && n >= 0 && (size_t) n < sizeof(detail) - 3) {
        const char *why = ERR_reason_error_string(e);
        snprintf(detail + n, sizeof(detail) - (size_t) n, ": %s", why ? why : "OpenSSL error");
    }
    ERR_clear_error();
}

/* ---- small helpers ------------------------------------------------------------- */

bool tls_version_ok(int v)
{
    return v == 0 || v == FERRY_TLS_1_2 || v == FERRY_TLS_1_3;
}

int tls_alpn_wire(const char *list, unsigned char *out, size_t cap, size_t *len)
{
    size_t n = 0;
    const char *p = list;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t l = end ? (size_t) (end - p) : strlen(p);
        if (l == 0 || l > 255 || n + 1 + l > cap) return FERRY_EINVAL;
        out[n++] = (unsigned char) l;
        memcpy(out + n, p, l);
        n += l;
        p += l + (end ? 1 : 0);
        if (end && !*p) return FERRY_EINVAL; /* a trailing comma */
    }
    if (n == 0) return FERRY_EINVAL;
    *len = n;
    return 0;
}

static int set_versions(SSL_CTX *c, int min, int max)
{
    if (!tls_version_ok(min) || !tls_version_ok(max)) return FERRY_EINVAL;
    min = min ? min : FERRY_TLS_1_2;
    max = max ? max : FERRY_TLS_1_3;
    if (min > max || !SSL_CTX_set_min_proto_version(c, min) ||
        !SSL_CTX_set_max_proto_version(c, max))
        return FERRY_EINVAL;
    return 0;
}

/* Read a whole file (owner of *out: the caller, free()). */
static int read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int rc = -errno;
        tls_set_detail("%s: %s", path, strerror(errno));
        return rc;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) ||
        (uint64_t) st.st_size > MAX_PEM_FILE) {
        fclose(f);
        tls_set_detail("%s: not a regular file of at most 16 MiB", path);
        return FERRY_EINVAL;
    }
    size_t size = (size_t) st.st_size;
    char *buf = malloc(size + 1);
    if (!buf) {
        fclose(f);
        return FERRY_ENOMEM;
    }
    size_t got = fread(buf, 1, size, f);
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        tls_set_detail("%s: read error", path);
        return -EIO;
    }
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

/* The PEM text of a file or a string. *owned is what to free (NULL for a
 * string). `what` names it in errors. */
static int pem_source(const char *file, const char *pem, char **owned, const char **text,
                      size_t *len)
{
    *owned = NULL;
    if (file) {
        int rc = read_file(file, owned, len);
        *text = *owned;
        return rc;
    }
    *text = pem;
    *len = strlen(pem);
    return 0;
}

static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void) buf, (void) size, (void) rwflag, (void) u;
    return 0;
}

/* Every certificate in text (owner: the caller, sk_X509_pop_free). */
static STACK_OF(X509) * read_certs(const char *text, size_t len)
{
    BIO *b = BIO_new_mem_buf(text, (int) len);
    STACK_OF(X509) *sk = sk_X509_new_null();
    if (!b || !sk) goto fail;
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, no_password, NULL)) != NULL) {
        if (!sk_X509_push(sk, x)) {
            X509_free(x);
            goto fail;
        }
    }
    /* the loop ends at the end of the text (PEM_R_NO_START_LINE) or at a bad block */
    unsigned long e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
        ERR_clear_error();
    if (ERR_peek_error()) goto fail;
    BIO_free(b);
    return sk;
fail:
    BIO_free(b);
    sk_X509_pop_free(sk, X509_free);
    return NULL;
}

static EVP_PKEY *read_key(const char *text, size_t len)
{
    BIO *b = BIO_new_mem_buf(text, (int) len);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, no_password, NULL) : NULL;
    BIO_free(b);
    return k;
}

/* A loaded certificate chain and key. */
typedef struct loaded_cert {
    X509 *cert;
    EVP_PKEY *key;
    STACK_OF(X509) * chain; /* intermediates, maybe empty */
} loaded_cert;

static void loaded_free(loaded_cert *l)
{
    X509_free(l->cert);
    EVP_PKEY_free(l->key);
    sk_X509_pop_free(l->chain, X509_free);
    memset(l, 0, sizeof(*l));
}

static const char *cert_what(const ferry_tls_cert *c)
{
    return c->cert_file ? c->cert_file : "certificate PEM";
}

static int load_cert(const ferry_tls_cert *c, loaded_cert *out)
{
    memset(out, 0, sizeof(*out));
    if (!c->cert_file && !c->cert_pem) {
        tls_set_detail("no certificate given");
        return FERRY_EINVAL;
    }
    char *owned = NULL, *key_owned = NULL;
    const char *text, *key_text = NULL;
    size_t len, key_len = 0;
    int rc = pem_source(c->cert_file, c->cert_pem, &owned, &text, &len);
    if (rc < 0) return rc;
    rc = FERRY_ETLSCERT;
    out->chain = len <= INT32_MAX ? read_certs(text, len) : NULL;
    if (!out->chain || sk_X509_num(out->chain) == 0) {
        tls_set_detail("%s: no PEM certificate", cert_what(c));
        goto done;
    }
    out->cert = sk_X509_shift(out->chain);
    if (c->key_file || c->key_pem) {
        int krc = pem_source(c->key_file, c->key_pem, &key_owned, &key_text, &key_len);
        if (krc < 0) {
            rc = krc;
            goto done;
        }
    } else {
        key_text = text;
        key_len = len;
    }
    const char *key_what = c->key_file ? c->key_file : c->key_pem ? "key PEM" : cert_what(c);
    out->key = key_len <= INT32_MAX ? read_key(key_text, key_len) : NULL;
    if (!out->key) {
        tls_set_detail("%s: no unencrypted PEM private key", key_what);
        goto done;
    }
    if (X509_check_private_key(out->cert, out->key) != 1) {
        tls_set_detail("%s", key_what);
        goto done;
    }
    rc = 0;
done:
    if (key_owned) {
        OPENSSL_cleanse(key_owned, key_len);
        free(key_owned);
    }
    if (owned) {
        if (!c->key_file && !c->key_pem) OPENSSL_cleanse(owned, len);
        free(owned);
    }
    if (rc < 0) loaded_free(out);
    return rc;
}

/* CA certificates from a file or a string (owner: the caller). */
static int load_cas(const char *file, const char *pem, STACK_OF(X509) * *out)
{
    *out = NULL;
    char *owned;
    const char *text;
    size_t len;
    int rc = pem_source(file, pem, &owned, &text, &len);
    if (rc < 0) return rc;
    *out = len <= INT32_MAX ? read_certs(text, len) : NULL;
    free(owned);
    if (!*out || sk_X509_num(*out) == 0) {
        sk_X509_pop_free(*out, X509_free);
        *out = NULL;
        tls_set_detail("%s: no PEM certificate", file ? file : "CA PEM");
        return FERRY_ETLSCERT;
    }
    return 0;
}

static int store_add_all(X509_STORE *st, STACK_OF(X509) * cas)
{
    for (int i = 0; i < sk_X509_num(cas); i++)
        if (!X509_STORE_add_cert(st, sk_X509_value(cas, i))) return FERRY_ENOMEM;
    return 0;
}

/* ---- verification reasons --------------------------------------------------------- */

ferry_tls_verify_reason tls_verify_reason_of(long e)
{
    switch (e) {
    case X509_V_OK: return FERRY_TLS_VERIFY_OK;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: /* a root nobody here trusts */
        return FERRY_TLS_VERIFY_UNKNOWN_ISSUER;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH: return FERRY_TLS_VERIFY_HOSTNAME_MISMATCH;
    case X509_V_ERR_CERT_HAS_EXPIRED: return FERRY_TLS_VERIFY_EXPIRED;
    case X509_V_ERR_CERT_NOT_YET_VALID: return FERRY_TLS_VERIFY_NOT_YET_VALID;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: return FERRY_TLS_VERIFY_SELF_SIGNED;
    default: return FERRY_TLS_VERIFY_OTHER;
    }
}

const char *ferry_tls_verify_reason_name(ferry_tls_verify_reason r)
{
    static const char *const names[] = {"ok",
                                        "unknown-issuer",
                                        "hostname-mismatch",
                                        "expired",
                                        "not-yet-valid",
                                        "self-signed",
                                        "no-certificate",
                                        "other"};
    return (unsigned) r < sizeof(names) / sizeof(names[0]) ? names[r] : "other";
}

/* ---- SNI --------------------------------------------------------------------------- */

/* Lower-case `name` into out (cap bytes), without a trailing dot; false if
 * it is empty, too long or has a byte no host name has. */
static bool norm_name(const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    if (n && name[n - 1] == '.') n--;
    if (n == 0 || n >= cap) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char) name[i];
        if (!isalnum(ch) && ch != '-' && ch != '.' && ch != '_' && !(i == 0 && ch == '*'))
            return false;
        out[i] = (char) tolower(ch);
    }
    out[n] = '\0';
    return true;
}

static int entry_cmp(const void *a, const void *b)
{
    const tls_sni_entry *x = a, *y = b;
    if (x->wildcard != y->wildcard) return x->wildcard ? 1 : -1;
    return strcmp(x->name, y->name);
}

static int add_entry(ferry_tls_context *ctx, size_t *cap, const char *name, const loaded_cert *l)
{
    char norm[256];
    if (!norm_name(name, norm, sizeof(norm)) ||
        (norm[0] == '*' && (norm[1] != '.' || norm[2] == '\0')) || strchr(norm + 1, '*')) {
        tls_set_detail("SNI name \"%s\": not a host name or *.wildcard", name);
        return FERRY_EINVAL;
    }
    if (ctx->sni_count == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        tls_sni_entry *n = realloc(ctx->sni, ncap * sizeof(*n));
        if (!n) return FERRY_ENOMEM;
        ctx->sni = n;
        *cap = ncap;
    }
    tls_sni_entry *e = &ctx->sni[ctx->sni_count];
    memset(e, 0, sizeof(*e));
    e->wildcard = norm[0] == '*';
    e->name = strdup(e->wildcard ? norm + 1 : norm);
    if (!e->name) return FERRY_ENOMEM;
    ctx->sni_count++;
    e->chain = X509_chain_up_ref(l->chain);
    if (!e->chain || !X509_up_ref(l->cert) || !EVP_PKEY_up_ref(l->key))
        return FERRY_ENOMEM; /* (up_ref only fails on a broken lock) */
    e->cert = l->cert;
    e->key = l->key;
    return 0;
}

/* An SNI certificate's entries: its name, or its DNS names. */
static int add_sni_cert(ferry_tls_context *ctx, size_t *cap, const ferry_tls_cert *c)
{
    loaded_cert l;
    int rc = load_cert(c, &l);
    if (rc < 0) return rc;
    if (c->name) {
        rc = add_entry(ctx, cap, c->name, &l);
    } else {
        GENERAL_NAMES *gens = X509_get_ext_d2i(l.cert, NID_subject_alt_name, NULL, NULL);
        int added = 0;
        for (int i = 0; rc == 0 && i < sk_GENERAL_NAME_num(gens); i++) {
            const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
            if (g->type != GEN_DNS) continue;
            const unsigned char *p = ASN1_STRING_get0_data(g->d.dNSName);
            int n = ASN1_STRING_length(g->d.dNSName);
            char name[256];
            if (n <= 0 || n >= (int) sizeof(name) || memchr(p, 0, (size_t) n)) continue;
            memcpy(name, p, (size_t) n);
            name[n] = '\0';
            rc = add_entry(ctx, cap, name, &l);
            added++;
        }
        GENERAL_NAMES_free(gens);
        if (rc == 0 && added == 0) {
            tls_set_detail("%s: no DNS name to answer SNI with (give .name)", cert_what(c));
            rc = FERRY_EINVAL;
        }
    }
    loaded_free(&l);
    return rc;
}

/* Sort, and drop later duplicates (the first certificate given wins). */
static void sni_finish(ferry_tls_context *ctx)
{
    if (ctx->sni_count == 0) return;
    /* qsort is not stable: order by (kind, name) keeping the original
     * position as the tie-break, through a stable insertion sort — lists are short */
    for (size_t i = 1; i < ctx->sni_count; i++) {
        tls_sni_entry e = ctx->sni[i];
        size_t j = i;
        while (j > 0 && entry_cmp(&ctx->sni[j - 1], &e) > 0) {
            ctx->sni[j] = ctx->sni[j - 1];
            j--;
        }
        ctx->sni[j] = e;
    }
    size_t out = 1;
    for (size_t i = 1; i < ctx->sni_count; i++) {
        if (entry_cmp(&ctx->sni[out - 1], &ctx->sni[i]) == 0) {
            free(ctx->sni[i].name);
            X509_free(ctx->sni[i].cert);
            EVP_PKEY_free(ctx->sni[i].key);
            sk_X509_pop_free(ctx->sni[i].chain, X509_free);
            continue;
        }
        ctx->sni[out++] = ctx->sni[i];
    }
    ctx->sni_count = out;
    ctx->sni_exact = 0;
    while (ctx->sni_exact < out && !ctx->sni[ctx->sni_exact].wildcard)
        ctx->sni_exact++;
}

static const tls_sni_entry *sni_search(const tls_sni_entry *v, size_t n, const char *name)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, v[mid].name);
        if (c == 0) return &v[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const tls_sni_entry *tls_context_sni_find(const ferry_tls_context *ctx, const char *name)
{
    char norm[256];
    if (ctx->sni_count == 0 || !norm_name(name, norm, sizeof(norm)) || norm[0] == '*') return NULL;
    const tls_sni_entry *e = sni_search(ctx->sni, ctx->sni_exact, norm);
    if (e) return e;
    const char *dot = strchr(norm, '.'); /* a wildcard stands for exactly one label */
    return dot && dot != norm
               ? sni_search(ctx->sni + ctx->sni_exact, ctx->sni_count - ctx->sni_exact, dot)
               : NULL;
}

static int on_servername(SSL *s, int *alert, void *arg)
{
    const ferry_tls_context *ctx = arg;
    const char *name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
    if (!name) return SSL_TLSEXT_ERR_NOACK;
    const tls_sni_entry *e = tls_context_sni_find(ctx, name);
    if (e) {
        SSL_certs_clear(s); /* or the default's key type would stay on offer */
        if (SSL_use_cert_and_key(s, e->cert, e->key, e->chain, 1) != 1) {
            *alert = SSL_AD_INTERNAL_ERROR;
            return SSL_TLSEXT_ERR_ALERT_FATAL;
        }
    }
    return SSL_TLSEXT_ERR_OK;
}

/* ---- server contexts ---------------------------------------------------------------- */

/* The first of our protocols (in our order) that the client offers. */
static int on_alpn(SSL *s, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void) s;
    const ferry_tls_context *ctx = arg;
    for (size_t i = 0; i < ctx->alpn_len; i += 1u + ctx->alpn[i]) {
        const unsigned char *ours = ctx->alpn + i;
        for (unsigned j = 0; j < inlen; j += 1u + in[j]) {
            if (j + 1u + in[j] > inlen) break;
            if (in[j] == ours[0] && memcmp(in + j + 1, ours + 1, ours[0]) == 0) {
                *out = ours + 1;
                *outlen = ours[0];
                return SSL_TLSEXT_ERR_OK;
            }
        }
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL; /* no_application_protocol, RFC 7301 §3.2 */
}

static void tls_options_defaults(ferry_tls_options *o)
{
    memset(o, 0, sizeof(*o));
    o->min_version = FERRY_TLS_1_2;
    o->max_version = FERRY_TLS_1_3;
    o->alpn = "http/1.1";
    o->session_tickets = 1;
    o->session_timeout_s = 300;
    o->ticket_key_rotation_s = 3600;
}

void ferry_tls_options_init_sized(ferry_tls_options *o, size_t size)
{
    ferry_tls_options def;
    tls_options_defaults(&def);
    options_init_sized(o, size, &def, sizeof(def));
}

/* SHA-256 of the client certificate policy: the mode and every CA's DER. */
static int sid_context(SSL_CTX *c, ferry_tls_client_cert mode, STACK_OF(X509) * cas)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    unsigned char m = (unsigned char) mode;
    int ok = h && EVP_DigestInit_ex(h, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(h, "ferry-tls-sid", 13) && EVP_DigestUpdate(h, &m, 1);
    for (int i = 0; ok && i < sk_X509_num(cas); i++) {
        unsigned char *der = NULL;
        int n = i2d_X509(sk_X509_value(cas, i), &der);
        ok = n > 0 && EVP_DigestUpdate(h, der, (size_t) n);
        OPENSSL_free(der);
    }
    ok = ok && EVP_DigestFinal_ex(h, md, &mdlen) && SSL_CTX_set_session_id_context(c, md, mdlen);
    EVP_MD_CTX_free(h);
    return ok ? 0 : FERRY_ENOMEM;
}

static int client_certs(ferry_tls_context *ctx, const ferry_tls_options *o)
{
    SSL_CTX *c = ctx->ssl_ctx;
    STACK_OF(X509) *cas = NULL;
    if (o->client_cert != FERRY_TLS_CLIENT_CERT_NONE) {
        if (!o->client_ca_file && !o->client_ca_pem) {
            tls_set_detail("client certificates: no client_ca_file or client_ca_pem");
            return FERRY_EINVAL;
        }
        int rc = load_cas(o->client_ca_file, o->client_ca_pem, &cas);
        if (rc < 0) return rc;
        X509_STORE *st = SSL_CTX_get_cert_store(c);
        rc = store_add_all(st, cas);
        for (int i = 0; rc == 0 && i < sk_X509_num(cas); i++)
            if (!SSL_CTX_add_client_CA(c, sk_X509_value(cas, i))) rc = FERRY_ENOMEM;
        if (rc < 0) {
            sk_X509_pop_free(cas, X509_free);
            return rc;
        }
        int mode = SSL_VERIFY_PEER;
        if (o->client_cert == FERRY_TLS_CLIENT_CERT_REQUIRE)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(c, mode, NULL);
    }
    int rc = sid_context(c, o->client_cert, cas);
    sk_X509_pop_free(cas, X509_free);
    return rc;
}

static void context_destroy(ferry_tls_context *ctx)
{
    SSL_CTX_free(ctx->ssl_ctx);
    for (size_t i = 0; i < ctx->sni_count; i++) {
        free(ctx->sni[i].name);
        X509_free(ctx->sni[i].cert);
        EVP_PKEY_free(ctx->sni[i].key);
        sk_X509_pop_free(ctx->sni[i].chain, X509_free);
    }
    free(ctx->sni);
    ferry_tls_ticket_keys_free(ctx->keys);
    free(ctx);
}

static int context_build(ferry_tls_context *ctx, const ferry_tls_options *o)
{
    SSL_CTX *c = ctx->ssl_ctx = SSL_CTX_new(TLS_server_method());
    if (!c) return FERRY_ENOMEM;
    SSL_CTX_set_app_data(c, ctx);
    int rc = set_versions(c, o->min_version, o->max_version);
    if (rc < 0) {
        tls_set_detail("versions: min 0x%04x, max 0x%04x", (unsigned) o->min_version,
                       (unsigned) o->max_version);
        return rc;
    }
    SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_max_cert_list(c, SERVER_MAX_CERT_LIST);
    if (SSL_CTX_set_cipher_list(c, o->ciphers ? o->ciphers : DEFAULT_CIPHERS) != 1 ||
        (o->ciphersuites && SSL_CTX_set_ciphersuites(c, o->ciphersuites) != 1)) {
        tls_set_detail("cipher list");
        return FERRY_EINVAL;
    }
    if (o->session_tickets) {
        if (o->ticket_keys) {
            ctx->keys = ferry_tls_ticket_keys_ref(o->ticket_keys);
        } else {
            rc = ferry_tls_ticket_keys_new(o->ticket_key_rotation_s, o->session_timeout_s,
                                           &ctx->keys);
            if (rc < 0) return rc;
        }
        SSL_CTX_set_timeout(c, (long) (o->session_timeout_s ? o->session_timeout_s : 300));
        SSL_CTX_set_num_tickets(c, 2); /* OpenSSL's default: two clients may resume at once */
        SSL_CTX_set_tlsext_ticket_key_evp_cb(c, tls_ticket_key_cb);
    } else {
        SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(c, 0);
    }
    if (o->alpn) {
        if (tls_alpn_wire(o->alpn, ctx->alpn, sizeof(ctx->alpn), &ctx->alpn_len) < 0) {
            tls_set_detail("ALPN list \"%s\"", o->alpn);
            return FERRY_EINVAL;
        }
        SSL_CTX_set_alpn_select_cb(c, on_alpn, ctx);
    }

    loaded_cert l;
    rc = load_cert(&o->cert, &l);
    if (rc < 0) return rc;
    if (SSL_CTX_use_cert_and_key(c, l.cert, l.key, l.chain, 1) != 1) {
        tls_set_detail("%s", cert_what(&o->cert));
        loaded_free(&l);
        return FERRY_ETLSCERT;
    }
    loaded_free(&l);
    size_t cap = 0;
    for (size_t i = 0; i < o->sni_cert_count; i++)
        if ((rc = add_sni_cert(ctx, &cap, &o->sni_certs[i])) < 0) return rc;
    sni_finish(ctx);
    if (ctx->sni_count) {
        SSL_CTX_set_tlsext_servername_callback(c, on_servername);
        SSL_CTX_set_tlsext_servername_arg(c, ctx);
    }
    return client_certs(ctx, o);
}

int ferry_tls_context_new(const ferry_tls_options *o, ferry_tls_context **out)
{
    if (!out)
        return FERRY_EINVAL;
    *out = NULL;
    tls_clear_detail();
    ferry_tls_options opt; /* the caller's, perhaps from an older header, over our defaults */
    tls_options_defaults(&opt);
    if (!o || options_copy(&opt, sizeof(opt), o, TLS_OPTIONS_V1_SIZE) != 0) {
        tls_set_detail("options not initialised with ferry_tls_options_init");
        return FERRY_EINVAL;
    }
    o = &opt;
    if (o->client_cert < FERRY_TLS_CLIENT_CERT_NONE ||
        o->client_cert > FERRY_TLS_CLIENT_CERT_REQUIRE || (o->sni_cert_count && !o->sni_certs)) {
        tls_set_detail("bad options");
        return FERRY_EINVAL;
    }
    ferry_tls_context *ctx = calloc(1, sizeof(*ctx));
    if (!ctx) return FERRY_ENOMEM;
    atomic_init(&ctx->refs, 1);
    int rc = context_build(ctx, o);
    if (rc < 0) {
        if (rc == FERRY_ENOMEM && !detail[0]) tls_set_detail("out of memory");
        context_destroy(ctx);
        return rc;
    }
    *out = ctx;
    return 0;
}

ferry_tls_context *ferry_tls_context_ref(ferry_tls_context *ctx)
{
    if (!ctx) return NULL;
    atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
    return ctx;
}

void ferry_tls_context_free(ferry_tls_context *ctx)
{
    if (ctx && atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) == 1)
        context_destroy(ctx);
}

/* ---- client configuration ------------------------------------------------------------- */

void tls_client_options_init(tls_client_options *o)
{
    memset(o, 0, sizeof(*o));
}

/* Trust: o's CAs, else the system's: $SSL_CERT_DIR, else $SSL_CERT_FILE,
 * else OpenSSL's default directory (read by hash), else its default file. */
static int client_trust(SSL_CTX *c, const tls_client_options *o)
{
    X509_STORE *st = SSL_CTX_get_cert_store(c);
    if (o->ca_file || o->ca_pem) {
        STACK_OF(X509) *cas = NULL;
        int rc = load_cas(o->ca_file, o->ca_pem, &cas);
        if (rc == 0) rc = store_add_all(st, cas);
        sk_X509_pop_free(cas, X509_free);
        if (rc < 0) return rc;
    }
    if (o->ca_dir && !X509_STORE_load_path(st, o->ca_dir)) {
        tls_set_detail("%s", o->ca_dir);
        return FERRY_ETLSCERT;
    }
    if (o->ca_file || o->ca_pem || o->ca_dir) return 0;
    /* One source, and a directory when there is one: it is read lazily, a
     * certificate at a time (~12 KB), where the ca-certificates bundle file
     * costs ~35 ms and ~800 KB of heap per client config. */
    const char *dir = getenv(X509_get_default_cert_dir_env());
    const char *file = dir ? NULL : getenv(X509_get_default_cert_file_env());
    struct stat sb;
    if (!file && !dir) {
        dir = X509_get_default_cert_dir();
        if (stat(dir, &sb) != 0) {
            dir = NULL;
            file = X509_get_default_cert_file();
        }
    }
    /* a missing system store is not an error here: verification will say
     * "unknown issuer" for every server, which names the problem */
    if (file && !X509_STORE_load_file(st, file)) ERR_clear_error();
    if (dir && !X509_STORE_load_path(st, dir)) ERR_clear_error();
    return 0;
}

int tls_client_config_init(tls_client_config *cfg, const tls_client_options *o)
{
    memset(cfg, 0, sizeof(*cfg));
    tls_clear_detail();
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    if (!c) return FERRY_ENOMEM;
    int rc = set_versions(c, o->min_version, o->max_version);
    if (rc < 0) {
        tls_set_detail("versions");
        goto fail;
    }
    SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
    /* sessions go to the caller's tls_session_cache, not OpenSSL's */
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(c, tls_engine_new_session_cb);
    SSL_CTX_set_verify(c, o->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    if ((o->ciphers && SSL_CTX_set_cipher_list(c, o->ciphers) != 1) ||
        (o->ciphersuites && SSL_CTX_set_ciphersuites(c, o->ciphersuites) != 1)) {
        tls_set_detail("cipher list");
        rc = FERRY_EINVAL;
        goto fail;
    }
    unsigned char alpn[256];
    size_t alpn_len;
    const char *list = o->alpn ? o->alpn : "http/1.1";
    if (tls_alpn_wire(list, alpn, sizeof(alpn), &alpn_len) < 0) {
        tls_set_detail("ALPN list \"%s\"", list);
        rc = FERRY_EINVAL;
        goto fail;
    }
    if (SSL_CTX_set_alpn_protos(c, alpn, (unsigned) alpn_len) != 0) { /* 0 is success here */
        rc = FERRY_ENOMEM;
        goto fail;
    }
    if ((rc = client_trust(c, o)) < 0) goto fail;
    if (o->cert_file || o->cert_pem) {
        ferry_tls_cert cert = {.cert_file = o->cert_file,
                               .key_file = o->key_file,
                               .cert_pem = o->cert_pem,
                               .key_pem = o->key_pem};
        loaded_cert l;
        if ((rc = load_cert(&cert, &l)) < 0) goto fail;
        if (SSL_CTX_use_cert_and_key(c, l.cert, l.key, l.chain, 1) != 1) {
            tls_set_detail("%s", cert_what(&cert));
            rc = FERRY_ETLSCERT;
        }
        loaded_free(&l);
        if (rc < 0) goto fail;
    }
    cfg->ssl_ctx = c;
    cfg->insecure = o->insecure;
    return 0;
fail:
    SSL_CTX_free(c);
    return rc;
}

void tls_client_config_destroy(tls_client_config *cfg)
{
    SSL_CTX_free(cfg->ssl_ctx);
    memset(cfg, 0, sizeof(*cfg));
}
