/* tls_ticket_keys.c — session ticket keys (ferry_tls_ticket_keys), shared by
 * any number of contexts on any threads, and OpenSSL's ticket callback.
 *
 * A ticket is the server's session state, encrypted and authenticated under
 * a key only the server knows; a client hands it back to resume. Whoever
 * holds the keys can resume (and, for TLS 1.2, decrypt recorded sessions), so
 * keys are random, rotated, and dropped once no live ticket can need them.
 * Each key is 16 bytes of name (sent in the clear inside the ticket, to find
 * the key again), an AES-256-CBC key and an HMAC-SHA256 key — the layout
 * RFC 5077 §4 recommends, and nginx's 80-byte key files use.
 *
 * keys[0] encrypts; keys[1..n) only decrypt, each until `retired +
 * lifetime_s`, where `retired` is when the key after it was made. A lock
 * guards the array: readers (every ticket) take it shared for a copy of one
 * key; rotation takes it exclusively. The cipher is fetched once per object,
 * so no ticket pays for a provider lookup of AES (OpenSSL still fetches HMAC
 * itself for each ticket's MAC context; that is per handshake, not per record).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "tls/tls_context.h"

#define KEY_BYTES 88 /* export: name 16, aes 32, hmac 32, created 8 */
static const unsigned char export_magic[8] = {'F', 'R', 'Y', 'T', 'K', 'E', 'Y', '1'};

typedef struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
    uint64_t created; /* wall-clock seconds */
} ticket_key;

struct ferry_tls_ticket_keys {
    atomic_uint refs;
    pthread_rwlock_t lock;
    uint64_t rotation_s, lifetime_s;
    ticket_key keys[FERRY_TLS_TICKET_KEYS_MAX]; /* [0] is current */
    size_t n;
    EVP_CIPHER *cipher; /* AES-256-CBC, fetched once */
    uint64_t (*clock)(void);
};

static uint64_t wall_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t) ts.tv_sec;
}

static int fresh_key(ticket_key *k, uint64_t now)
{
    if (RAND_bytes(k->name, sizeof(k->name)) != 1 || RAND_bytes(k->aes, sizeof(k->aes)) != 1 ||
        RAND_bytes(k->hmac, sizeof(k->hmac)) != 1)
        return FERRY_ENOMEM; /* the DRBG failed: nothing better to say */
    k->created = now;
    return 0;
}

/* Drop keys no live ticket can need (caller holds the write lock). */
static void drop_expired(ferry_tls_ticket_keys *k, uint64_t now)
{
    for (size_t i = 1; i < k->n; i++) {
        uint64_t retired = k->keys[i - 1].created;
        if (retired + k->lifetime_s < now) {
            OPENSSL_cleanse(&k->keys[i], (k->n - i) * sizeof(ticket_key));
            k->n = i;
            return;
        }
    }
}

/* Push a new current key (caller holds the write lock). */
static int rotate_locked(ferry_tls_ticket_keys *k, uint64_t now)
{
    ticket_key nk;
    int rc = fresh_key(&nk, now);
    if (rc < 0) return rc;
    size_t keep = k->n < FERRY_TLS_TICKET_KEYS_MAX ? k->n : FERRY_TLS_TICKET_KEYS_MAX - 1;
    memmove(&k->keys[1], &k->keys[0], keep * sizeof(ticket_key));
    k->keys[0] = nk;
    k->n = keep + 1;
    OPENSSL_cleanse(&nk, sizeof(nk));
    drop_expired(k, now);
    return 0;
}

int ferry_tls_ticket_keys_new(uint64_t rotation_s, uint64_t lifetime_s, ferry_tls_ticket_keys **out)
{
    if (!out) return FERRY_EINVAL;
    *out = NULL;
    ferry_tls_ticket_keys *k = calloc(1, sizeof(*k));
    if (!k) return FERRY_ENOMEM;
    if (pthread_rwlock_init(&k->lock, NULL) != 0) {
        free(k);
        return FERRY_ENOMEM;
    }
    atomic_init(&k->refs, 1);
    k->rotation_s = rotation_s;
    k->lifetime_s = lifetime_s;
    k->clock = wall_clock;
    k->cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    int rc = k->cipher ? fresh_key(&k->keys[0], k->clock()) : FERRY_ENOMEM;
    if (rc < 0) {
        tls_set_detail("ticket keys");
        ferry_tls_ticket_keys_free(k);
        return rc;
    }
    k->n = 1;
    *out = k;
    return 0;
}

ferry_tls_ticket_keys *ferry_tls_ticket_keys_ref(ferry_tls_ticket_keys *k)
{
    if (!k) return NULL;
    atomic_fetch_add_explicit(&k->refs, 1, memory_order_relaxed);
    return k;
}

void ferry_tls_ticket_keys_free(ferry_tls_ticket_keys *k)
{
    if (!k || atomic_fetch_sub_explicit(&k->refs, 1, memory_order_acq_rel) != 1) return;
    OPENSSL_cleanse(k->keys, sizeof(k->keys));
    EVP_CIPHER_free(k->cipher);
    pthread_rwlock_destroy(&k->lock);
    free(k);
}

int ferry_tls_ticket_keys_rotate(ferry_tls_ticket_keys *k)
{
    if (!k) return FERRY_EINVAL;
    pthread_rwlock_wrlock(&k->lock);
    int rc = rotate_locked(k, k->clock());
    pthread_rwlock_unlock(&k->lock);
    return rc;
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char) v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* Format: the 8-byte magic, then per key name, aes, hmac, created (big
 * endian), newest first; the count is the length's. */
int ferry_tls_ticket_keys_export(ferry_tls_ticket_keys *k, void *buf, size_t cap, size_t *len)
{
    if (len) *len = 0;
    if (!k || !len) return FERRY_EINVAL;
    pthread_rwlock_rdlock(&k->lock);
    size_t need = sizeof(export_magic) + k->n * KEY_BYTES;
    *len = need;
    int rc = 0;
    if (buf && cap >= need) {
        unsigned char *p = buf;
        memcpy(p, export_magic, sizeof(export_magic));
        p += sizeof(export_magic);
        for (size_t i = 0; i < k->n; i++, p += KEY_BYTES) {
            memcpy(p, k->keys[i].name, 16);
            memcpy(p + 16, k->keys[i].aes, 32);
            memcpy(p + 48, k->keys[i].hmac, 32);
            put_u64(p + 80, k->keys[i].created);
        }
    } else if (buf) {
        rc = FERRY_ENOBUFS;
    }
    pthread_rwlock_unlock(&k->lock);
    return rc;
}

int ferry_tls_ticket_keys_import(ferry_tls_ticket_keys *k, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    if (!k) return FERRY_EINVAL;
    if (!buf || len < sizeof(export_magic) + KEY_BYTES ||
        (len - sizeof(export_magic)) % KEY_BYTES != 0 ||
        (len - sizeof(export_magic)) / KEY_BYTES > FERRY_TLS_TICKET_KEYS_MAX ||
        memcmp(p, export_magic, sizeof(export_magic)) != 0) {
        tls_set_detail("ticket keys: not an export of ferry_tls_ticket_keys_export");
        return FERRY_EINVAL;
    }
    size_t n = (len - sizeof(export_magic)) / KEY_BYTES;
    ticket_key keys[FERRY_TLS_TICKET_KEYS_MAX];
    p += sizeof(export_magic);
    for (size_t i = 0; i < n; i++, p += KEY_BYTES) {
        memcpy(keys[i].name, p, 16);
        memcpy(keys[i].aes, p + 16, 32);
        memcpy(keys[i].hmac, p + 48, 32);
        keys[i].created = get_u64(p + 80);
    }
    pthread_rwlock_wrlock(&k->lock);
    OPENSSL_cleanse(k->keys, sizeof(k->keys));
    memcpy(k->keys, keys, n * sizeof(ticket_key));
    k->n = n;
    drop_expired(k, k->clock());
    pthread_rwlock_unlock(&k->lock);
    OPENSSL_cleanse(keys, sizeof(keys));
    return 0;
}

void tls_ticket_keys_set_clock(ferry_tls_ticket_keys *k, uint64_t (*clock)(void))
{
    k->clock = clock ? clock : wall_clock;
}

size_t tls_ticket_keys_count(ferry_tls_ticket_keys *k)
{
    pthread_rwlock_rdlock(&k->lock);
    size_t n = k->n;
    pthread_rwlock_unlock(&k->lock);
    return n;
}

/* A copy of the key to encrypt with, rotating first if it is due. */
static int current_key(ferry_tls_ticket_keys *k, ticket_key *out)
{
    uint64_t now = k->clock();
    pthread_rwlock_rdlock(&k->lock);
    bool due = k->rotation_s && now >= k->keys[0].created + k->rotation_s;
    if (!due) *out = k->keys[0];
    pthread_rwlock_unlock(&k->lock);
    if (!due) return 0;
    pthread_rwlock_wrlock(&k->lock);
    int rc = 0;
    if (now >= k->keys[0].created + k->rotation_s) /* nobody rotated meanwhile */
        rc = rotate_locked(k, now);
    *out = k->keys[0];
    pthread_rwlock_unlock(&k->lock);
    return rc;
}

/* The key named `name` that may still decrypt: 1 current, 2 older (the
 * ticket is renewed), 0 none. */
static int find_key(ferry_tls_ticket_keys *k, const unsigned char name[16], ticket_key *out)
{
    uint64_t now = k->clock();
    int found = 0;
    pthread_rwlock_rdlock(&k->lock);
    for (size_t i = 0; i < k->n; i++) {
        if (CRYPTO_memcmp(k->keys[i].name, name, 16) != 0) continue;
        if (i == 0 || k->keys[i - 1].created + k->lifetime_s >= now) {
            *out = k->keys[i];
            found = i == 0 ? 1 : 2;
        }
        break;
    }
    pthread_rwlock_unlock(&k->lock);
    return found;
}

static int mac_init(EVP_MAC_CTX *hctx, unsigned char *key)
{
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, 32);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *) "SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    return EVP_MAC_CTX_set_params(hctx, params);
}

/* OpenSSL's contract: encrypting, 1 = ticket made, 0 = no ticket; decrypting,
 * 0 = unknown key (full handshake), 1 = resume, 2 = resume and renew; < 0
 * an error. */
int tls_ticket_key_cb(SSL *s, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                      EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    ferry_tls_context *ctx = SSL_CTX_get_app_data(SSL_get_SSL_CTX(s));
    ferry_tls_ticket_keys *k = ctx ? ctx->keys : NULL;
    if (!k) return 0;
    ticket_key key;
    int rc;
    if (enc) {
        if (current_key(k, &key) < 0 || RAND_bytes(iv, 16) != 1)
            return 0; /* no ticket: the connection still works */
        memcpy(key_name, key.name, 16);
        rc =
            EVP_EncryptInit_ex2(cctx, k->cipher, key.aes, iv, NULL) == 1 && mac_init(hctx, key.hmac)
                ? 1
                : -1;
    } else {
        rc = find_key(k, key_name, &key);
        /* OpenSSL's TLS 1.3 client uses a session once, and OpenSSL's server
         * sends a ticket after a resumption only when told to renew */
        if (rc == 1 && SSL_version(s) >= TLS1_3_VERSION) rc = 2;
        if (rc > 0 && (EVP_DecryptInit_ex2(cctx, k->cipher, key.aes, iv, NULL) != 1 ||
                       !mac_init(hctx, key.hmac)))
            rc = -1;
    }
    OPENSSL_cleanse(&key, sizeof(key));
    return rc;
}
