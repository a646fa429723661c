/* tls_session_cache.c — the client's per-origin TLS sessions (see the header):
 * a chained hash table keyed by SipHash (origins can come from redirects,
 * i.e. from servers) plus an LRU list that bounds it. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "ferry.h"
#include "tls/tls_session_cache.h"
#include "util/siphash.h"

struct tls_session_entry {
    list_link lru; /* first: the list link is the entry */
    tls_session_entry *next;
    uint64_t hash;
    SSL_SESSION *sess[TLS_SESSIONS_PER_KEY]; /* newest first, one reference each */
    size_t nsess;
    size_t key_len;
    char key[];
};

#define ENTRY_OF(link) ((tls_session_entry *) (void *) (link))

int tls_session_cache_init(tls_session_cache *c, size_t max_entries)
{
    memset(c, 0, sizeof(*c));
    list_init(&c->lru);
    c->max = max_entries ? max_entries : TLS_SESSION_CACHE_DEFAULT;
    size_t n = 8;
    while (n < c->max && n < ((size_t) 1 << 20))
        n <<= 1;
    c->buckets = calloc(n, sizeof(*c->buckets));
    if (!c->buckets) return FERRY_ENOMEM;
    c->nbuckets = n;
    if (RAND_bytes(c->hash_key, sizeof(c->hash_key)) != 1) {
        free(c->buckets);
        c->buckets = NULL;
        return FERRY_ENOMEM;
    }
    return 0;
}

static tls_session_entry **slot_of(tls_session_cache *c, const char *key, size_t len,
                                   uint64_t *hash)
{
    *hash = siphash13(c->hash_key, key, len);
    tls_session_entry **pp = &c->buckets[*hash & (c->nbuckets - 1)];
    while (*pp &&
           !((*pp)->hash == *hash && (*pp)->key_len == len && memcmp((*pp)->key, key, len) == 0))
        pp = &(*pp)->next;
    return pp;
}

static void clear_sessions(tls_session_entry *e)
{
    for (size_t i = 0; i < e->nsess; i++)
        SSL_SESSION_free(e->sess[i]);
    e->nsess = 0;
}

/* Unlink and free the entry at *pp. */
static void drop(tls_session_cache *c, tls_session_entry **pp)
{
    tls_session_entry *e = *pp;
    *pp = e->next;
    list_remove(&e->lru);
    clear_sessions(e);
    free(e);
    c->count--;
}

static void drop_entry(tls_session_cache *c, tls_session_entry *e)
{
    uint64_t hash;
    drop(c, slot_of(c, e->key, e->key_len, &hash));
}

void tls_session_cache_destroy(tls_session_cache *c)
{
    while (c->buckets && !list_empty(&c->lru))
        drop_entry(c, ENTRY_OF(c->lru.next));
    free(c->buckets);
    c->buckets = NULL;
}

static bool expired(const SSL_SESSION *s)
{
    return (uint64_t) SSL_SESSION_get_time(s) + (uint64_t) SSL_SESSION_get_timeout(s) <=
           (uint64_t) time(NULL);
}

static bool single_use(const SSL_SESSION *s)
{
    return SSL_SESSION_get_protocol_version(s) >= TLS1_3_VERSION;
}

static void touch(tls_session_cache *c, tls_session_entry *e)
{
    list_remove(&e->lru);
    list_insert_after(&c->lru, &e->lru);
}

/* TLS 1.2 sessions resume any number of times: the newest is all we need.
 * TLS 1.3 tickets are used once by OpenSSL's client (RFC 8446 §C.4 asks
 * clients not to reuse them), and a server sends several so that as many
 * connections can resume: keep up to TLS_SESSIONS_PER_KEY of them. */
void tls_session_cache_put(tls_session_cache *c, const char *key, SSL_SESSION *sess)
{
    if (!c->buckets || !SSL_SESSION_is_resumable(sess)) return;
    size_t len = strlen(key);
    uint64_t hash;
    tls_session_entry **pp = slot_of(c, key, len, &hash);
    tls_session_entry *e = *pp;
    if (!e) {
        e = malloc(sizeof(*e) + len + 1);
        if (!e) return;
        e->hash = hash;
        e->key_len = len;
        memcpy(e->key, key, len + 1);
        e->nsess = 0;
        e->next = NULL;
        *pp = e;
        list_insert_after(&c->lru, &e->lru);
        c->count++;
    } else {
        touch(c, e);
    }
    SSL_SESSION_up_ref(sess); /* before anything below may drop the same session */
    if (!single_use(sess) || (e->nsess && !single_use(e->sess[0]))) {
        clear_sessions(e);
    } else {
        for (size_t i = 0; i < e->nsess; i++) {
            if (e->sess[i] == sess) { /* already held: move it to the front */
                SSL_SESSION_free(sess);
                memmove(&e->sess[1], &e->sess[0], i * sizeof(e->sess[0]));
                e->sess[0] = sess;
                c->stored++;
                return;
            }
        }
        if (e->nsess == TLS_SESSIONS_PER_KEY) SSL_SESSION_free(e->sess[--e->nsess]);
    }
    memmove(&e->sess[1], &e->sess[0], e->nsess * sizeof(e->sess[0]));
    e->sess[0] = sess;
    e->nsess++;
    c->stored++;
    while (c->count > c->max) {
        drop_entry(c, ENTRY_OF(c->lru.prev));
        c->evicted++;
    }
}

SSL_SESSION *tls_session_cache_get1(tls_session_cache *c, const char *key)
{
    if (!c->buckets) return NULL;
    uint64_t hash;
    tls_session_entry **pp = slot_of(c, key, strlen(key), &hash);
    tls_session_entry *e = *pp;
    SSL_SESSION *s = NULL;
    while (e && e->nsess && !s) {
        s = e->sess[0];
        if (expired(s) || !SSL_SESSION_is_resumable(s)) {
            SSL_SESSION_free(s);
            s = NULL;
        } else if (!single_use(s)) {
            SSL_SESSION_up_ref(s); /* it stays */
            break;
        }
        /* taken: a TLS 1.3 ticket leaves with its only reference */
        memmove(&e->sess[0], &e->sess[1], (e->nsess - 1) * sizeof(e->sess[0]));
        e->nsess--;
    }
    if (e && e->nsess == 0) {
        drop(c, pp);
        e = NULL;
    }
    if (!s) {
        c->misses++;
        return NULL;
    }
    if (e) touch(c, e);
    c->hits++;
    return s;
}

void tls_session_cache_remove(tls_session_cache *c, const char *key)
{
    if (!c->buckets) return;
    uint64_t hash;
    tls_session_entry **pp = slot_of(c, key, strlen(key), &hash);
    if (*pp) drop(c, pp);
}

size_t tls_session_cache_sessions(tls_session_cache *c, const char *key)
{
    if (!c->buckets) return 0;
    uint64_t hash;
    tls_session_entry *e = *slot_of(c, key, strlen(key), &hash);
    return e ? e->nsess : 0;
}
