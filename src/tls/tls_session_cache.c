/* tls_session_cache.c — the client's per-origin TLS sessions (see the header):
 * a chained hash table keyed by SipHash (origins can come from redirects,
 * i.e. from servers) plus an LRU list that bounds it. */
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
    SSL_SESSION *sess; /* one reference */
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

/* Unlink and free the entry at *pp. */
static void drop(tls_session_cache *c, tls_session_entry **pp)
{
    tls_session_entry *e = *pp;
    *pp = e->next;
    list_remove(&e->lru);
    SSL_SESSION_free(e->sess);
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
        e->sess = NULL;
        e->next = NULL;
        *pp = e;
        list_insert_after(&c->lru, &e->lru);
        c->count++;
    } else {
        list_remove(&e->lru);
        list_insert_after(&c->lru, &e->lru);
    }
    SSL_SESSION_up_ref(sess);
    SSL_SESSION_free(e->sess);
    e->sess = sess;
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
    if (!e || expired(e->sess)) {
        if (e) drop(c, pp);
        c->misses++;
        return NULL;
    }
    list_remove(&e->lru);
    list_insert_after(&c->lru, &e->lru);
    c->hits++;
    SSL_SESSION_up_ref(e->sess);
    return e->sess;
}

void tls_session_cache_remove(tls_session_cache *c, const char *key)
{
    if (!c->buckets) return;
    uint64_t hash;
    tls_session_entry **pp = slot_of(c, key, strlen(key), &hash);
    if (*pp) drop(c, pp);
}
