/* test_certs.h — certificates made at test time, so no key that expires is
 * committed: a test CA, server and client certificates signed by it, and the
 * broken ones each verification failure needs.
 *
 * test_certs_get() makes them all once per process (about 20 ms: P-256 keys
 * and signatures) and writes them as PEM files into a private temporary
 * directory, removed at exit. The only slow key, RSA-2048, is generated
 * once per user and kept in $TMPDIR (a file only that user can read, checked
 * before use), so a suite of test processes pays for it once.
 *
 * Names. The servers' certificates cover localhost, 127.0.0.1, ::1,
 * example.test and www.example.test; SNI tests use api.example.test (exact)
 * and *.wild.test (wildcard); broken certificates cover localhost and
 * 127.0.0.1 unless said otherwise. Every subject CN differs, so a test can
 * tell which certificate it got.
 *
 * Not thread-safe on the first call: call it from the test's main thread
 * before starting server threads. Aborts (with a message) if OpenSSL fails.
 */
#ifndef FERRY_TESTS_TEST_CERTS_H
#define FERRY_TESTS_TEST_CERTS_H

typedef struct test_cert {
    const char *cert_file; /* PEM chain: the leaf, then its intermediate if it has one */
    const char *key_file;  /* PEM private key (PKCS#8, unencrypted) */
    const char *cert_pem;  /* the same bytes in memory, NUL-terminated */
    const char *key_pem;
    const char *leaf_pem; /* the leaf alone (differs from cert_pem for `chained`) */
    const char *cn;       /* the subject's common name */
} test_cert;

typedef struct test_certs {
    const char *dir;             /* the temporary directory holding every file */
    test_cert ca;                /* the test CA: trust this (cert_file) */
    test_cert server_ec;         /* ECDSA P-256, signed by ca: CN "ferry test server (ec)" */
    test_cert server_rsa;        /* RSA-2048, signed by ca, the same names */
    test_cert api;               /* api.example.test only (an exact SNI entry) */
    test_cert wildcard;          /* *.wild.test only (a wildcard SNI entry) */
    test_cert intermediate;      /* a CA signed by ca */
    test_cert chained;           /* localhost, signed by intermediate; the chain file holds both */
    test_cert client;            /* a client certificate (clientAuth) signed by ca */
    test_cert expired;           /* signed by ca, valid until yesterday */
    test_cert not_yet_valid;     /* signed by ca, valid from tomorrow */
    test_cert self_signed;       /* localhost, signed by its own key */
    test_cert wrong_host;        /* signed by ca, for wrong.test only */
    test_cert other_ca;          /* a CA nobody trusts */
    test_cert unknown_ca;        /* localhost, signed by other_ca */
    test_cert client_unknown_ca; /* a client certificate signed by other_ca */
} test_certs;

const test_certs *test_certs_get(void);

#endif /* FERRY_TESTS_TEST_CERTS_H */
