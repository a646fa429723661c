/* test_certs.c — the test PKI of test_certs.h, made with OpenSSL's API.
 *
 * Everything is built in memory (keys, X509v3 certificates, PEM text), then
 * written to a mkdtemp() directory that an atexit handler removes. Memory
 * owned here lives until exit (it is reachable through the static table, so
 * LeakSanitizer does not count it).
 */
#include "test_certs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define SERVER_NAMES "DNS:localhost,IP:127.0.0.1,IP:::1,DNS:example.test,DNS:www.example.test"
#define BROKEN_NAMES "DNS:localhost,IP:127.0.0.1"
#define DAY          (24L * 3600)

static test_certs certs;
static int made;
static char dir_buf[64];
static char *files[64];
static size_t nfiles;

static void die(const char *what)
{
    fprintf(stderr, "test_certs: %s failed\n", what);
    ERR_print_errors_fp(stderr);
    abort();
}

static char *dup_str(const char *s)
{
    char *p = strdup(s);
    if (!p) die("strdup");
    return p;
}

static void cleanup(void)
{
    for (size_t i = 0; i < nfiles; i++) {
        unlink(files[i]);
        free(files[i]);
    }
    nfiles = 0;
    if (dir_buf[0]) rmdir(dir_buf);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0) die(path);
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n <= 0) die("write");
        off += (size_t) n;
    }
    close(fd);
}

/* Write text to dir/name; returns the path (owner: this file, until exit). */
static const char *put_file(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir_buf, name);
    write_file(path, text, 0600);
    if (nfiles == sizeof(files) / sizeof(files[0])) die("too many files");
    files[nfiles] = dup_str(path);
    return files[nfiles++];
}

static char *bio_text(BIO *b)
{
    char *p;
    long n = BIO_get_mem_data(b, &p);
    char *s = malloc((size_t) n + 1);
    if (!s) die("malloc");
    memcpy(s, p, (size_t) n);
    s[n] = '\0';
    return s;
}

static char *key_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b || !PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL))
        die("PEM_write_bio_PrivateKey");
    char *s = bio_text(b);
    BIO_free(b);
    return s;
}

static char *cert_pem(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b || !PEM_write_bio_X509(b, x)) die("PEM_write_bio_X509");
    char *s = bio_text(b);
    BIO_free(b);
    return s;
}

static EVP_PKEY *ec_key(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!k) die("EC keygen");
    return k;
}

/* RSA-2048 takes 50-500 ms, more under ASan: one key per user, kept in
 * $TMPDIR. It is only used if it is a regular file of ours that nobody
 * else can read or write. */
static EVP_PKEY *rsa_key(void)
{
    const char *tmp = getenv("TMPDIR");
    char path[512], part[560];
    snprintf(path, sizeof(path), "%s/ferry-test-rsa2048-%u.pem", tmp && *tmp ? tmp : "/tmp",
             (unsigned) getuid());
    struct stat st;
    int fd = open(path, O_RDONLY | O_NOFOLLOW);
    if (fd >= 0) {
        EVP_PKEY *k = NULL;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == getuid() &&
            (st.st_mode & 077) == 0) {
            FILE *f = fdopen(fd, "r");
            if (f) {
                k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
                fclose(f);
                fd = -1;
            }
        }
        if (fd >= 0) close(fd);
        if (k && EVP_PKEY_get_bits(k) == 2048 && EVP_PKEY_is_a(k, "RSA")) return k;
        EVP_PKEY_free(k);
        ERR_clear_error();
    }
    EVP_PKEY *k = EVP_RSA_gen(2048);
    if (!k) die("RSA keygen");
    /* another test process may be writing it too: write aside, then rename */
    char *pem = key_pem(k);
    snprintf(part, sizeof(part), "%s.%d", path, (int) getpid());
    write_file(part, pem, 0600);
    if (rename(part, path) != 0) unlink(part);
    free(pem);
    return k;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!ext || !X509_add_ext(x, ext, -1)) die("X509 extension");
    X509_EXTENSION_free(ext);
}

enum kind { KIND_CA, KIND_SERVER, KIND_CLIENT, KIND_SELF };

/* A certificate for key, signed by issuer/issuer_key (both NULL:
 * self-signed), valid from now+from_s to now+to_s. sans: for servers. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, enum kind kind, const char *sans,
                       X509 *issuer, EVP_PKEY *issuer_key, long from_s, long to_s)
{
    X509 *x = X509_new();
    if (!x || !X509_set_version(x, X509_VERSION_3)) die("X509_new");
    unsigned char serial[16];
    if (RAND_bytes(serial, sizeof(serial)) != 1) die("RAND_bytes");
    serial[0] &= 0x7f; /* positive */
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x))) die("serial");
    BN_free(bn);
    if (!X509_gmtime_adj(X509_getm_notBefore(x), from_s) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), to_s))
        die("validity");
    X509_NAME *name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *) "ferry tests",
                                    -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *) cn, -1, -1,
                                    0))
        die("subject");
    if (!X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) ||
        !X509_set_pubkey(x, key))
        die("issuer");
    X509 *ext_issuer = issuer ? issuer : x;
    add_ext(x, ext_issuer, NID_subject_key_identifier, "hash");
    if (issuer) add_ext(x, ext_issuer, NID_authority_key_identifier, "keyid");
    switch (kind) {
    case KIND_CA:
        add_ext(x, ext_issuer, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, ext_issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
        break;
    case KIND_SERVER:
        add_ext(x, ext_issuer, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(x, ext_issuer, NID_ext_key_usage, "serverAuth");
        break;
    case KIND_CLIENT:
        add_ext(x, ext_issuer, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(x, ext_issuer, NID_ext_key_usage, "clientAuth");
        break;
    case KIND_SELF: /* like `openssl req -x509`: it may sign itself */ break;
    }
    if (sans) add_ext(x, ext_issuer, NID_subject_alt_name, sans);
    if (!X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256())) die("X509_sign");
    return x;
}

typedef struct made_cert {
    X509 *x;
    EVP_PKEY *key;
} made_cert;

/* Fill *out from a made certificate, writing base.crt and base.key; chain_pem
 * (may be NULL) is appended to the chain file. */
static void store(test_cert *out, const char *base, const char *cn, X509 *x, EVP_PKEY *key,
                  const char *chain_pem)
{
    char name[96];
    char *leaf = cert_pem(x);
    char *chain = leaf;
    if (chain_pem) {
        size_t a = strlen(leaf), b = strlen(chain_pem);
        chain = malloc(a + b + 1);
        if (!chain) die("malloc");
        memcpy(chain, leaf, a);
        memcpy(chain + a, chain_pem, b + 1);
    }
    out->leaf_pem = leaf;
    out->cert_pem = chain;
    out->key_pem = key_pem(key);
    out->cn = dup_str(cn);
    snprintf(name, sizeof(name), "%s.crt", base);
    out->cert_file = put_file(name, out->cert_pem);
    snprintf(name, sizeof(name), "%s.key", base);
    out->key_file = put_file(name, out->key_pem);
}

static made_cert one(test_cert *out, const char *base, const char *cn, enum kind kind,
                     const char *sans, const made_cert *issuer, EVP_PKEY *key, long from_s,
                     long to_s)
{
    made_cert m = {NULL, key ? key : ec_key()};
    m.x = make_cert(m.key, cn, kind, sans, issuer ? issuer->x : NULL, issuer ? issuer->key : NULL,
                    from_s, to_s);
    store(out, base, cn, m.x, m.key, NULL);
    return m;
}

static void done(made_cert m)
{
    X509_free(m.x);
    EVP_PKEY_free(m.key);
}

const test_certs *test_certs_get(void)
{
    if (made) return &certs;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir_buf, sizeof(dir_buf), "%s/ferry-certs-XXXXXX",
             tmp && *tmp && strlen(tmp) < 40 ? tmp : "/tmp");
    if (!mkdtemp(dir_buf)) die("mkdtemp");
    atexit(cleanup);
    certs.dir = dir_buf;

    const long year = 365 * DAY;
    made_cert ca =
        one(&certs.ca, "ca", "ferry test CA", KIND_CA, NULL, NULL, NULL, -DAY, 10 * year);
    done(one(&certs.server_ec, "server-ec", "ferry test server (ec)", KIND_SERVER, SERVER_NAMES,
             &ca, NULL, -DAY, year));
    done(one(&certs.server_rsa, "server-rsa", "ferry test server (rsa)", KIND_SERVER, SERVER_NAMES,
             &ca, rsa_key(), -DAY, year));
    done(one(&certs.api, "api", "api.example.test", KIND_SERVER, "DNS:api.example.test", &ca, NULL,
             -DAY, year));
    done(one(&certs.wildcard, "wildcard", "*.wild.test", KIND_SERVER, "DNS:*.wild.test", &ca, NULL,
             -DAY, year));
    done(one(&certs.client, "client", "ferry test client", KIND_CLIENT, NULL, &ca, NULL, -DAY,
             year));
    done(one(&certs.expired, "expired", "ferry expired", KIND_SERVER, BROKEN_NAMES, &ca, NULL,
             -30 * DAY, -DAY));
    done(one(&certs.not_yet_valid, "not-yet-valid", "ferry not yet valid", KIND_SERVER,
             BROKEN_NAMES, &ca, NULL, DAY, 30 * DAY));
    done(one(&certs.self_signed, "self-signed", "ferry self-signed", KIND_SELF, BROKEN_NAMES, NULL,
             NULL, -DAY, year));
    done(one(&certs.wrong_host, "wrong-host", "wrong.test", KIND_SERVER, "DNS:wrong.test", &ca,
             NULL, -DAY, year));

    /* an intermediate between ca and a leaf; the chain file carries both */
    made_cert inter = one(&certs.intermediate, "intermediate", "ferry test intermediate", KIND_CA,
                          NULL, &ca, NULL, -DAY, 5 * year);
    made_cert leaf = {NULL, ec_key()};
    leaf.x = make_cert(leaf.key, "ferry chained server", KIND_SERVER, BROKEN_NAMES, inter.x,
                       inter.key, -DAY, year);
    store(&certs.chained, "chained", "ferry chained server", leaf.x, leaf.key,
          certs.intermediate.cert_pem);
    done(leaf);
    done(inter);

    made_cert other = one(&certs.other_ca, "other-ca", "ferry unknown CA", KIND_CA, NULL, NULL,
                          NULL, -DAY, 10 * year);
    done(one(&certs.unknown_ca, "unknown-ca", "ferry unknown-CA server", KIND_SERVER, BROKEN_NAMES,
             &other, NULL, -DAY, year));
    done(one(&certs.client_unknown_ca, "client-unknown-ca", "ferry unknown-CA client", KIND_CLIENT,
             NULL, &other, NULL, -DAY, year));
    done(other);
    done(ca);
    made = 1;
    return &certs;
}
