/* tls_session_cache.h — a client's TLS sessions per origin, so a new
 * connection to an origin resumes instead of paying for a full handshake.
 *
 * Keys are strings the owner picks (the agent: its origin key, e.g.
 * "https://example.com:443"). For TLS 1.2 a key holds its newest session,
 * which resumes any number of connections. TLS 1.3 tickets are used once
 * (OpenSSL's client marks a session not resumable once it resumed), so a key
 * holds up to TLS_SESSIONS_PER_KEY of them, newest first, and get1 takes one
 * out: as many connections can resume at once as tickets are held (a server
 * sends two after a full handshake and one after each resumption).
 * Bounded: beyond max_entries the least recently used origin is forgotten
 * (Node's https.Agent keeps 100). A TLS 1.2 session is stored at the end of
 * its handshake; TLS 1.3 tickets come later, possibly while the socket is
 * idle: tls_engine stores both when the connection was made with a cache
 * (tls_engine_new_client).
 *
 * References: the cache holds one reference on each SSL_SESSION it keeps and
 * drops it when the session is replaced, taken, evicted or the cache
 * destroyed; tls_session_cache_get1 hands the caller a reference of its own.
 *
 * One loop, one thread (it lives in the agent); no locks.
 */
#ifndef FERRY_TLS_SESSION_CACHE_H
#define FERRY_TLS_SESSION_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "core/list.h"

#define TLS_SESSION_CACHE_DEFAULT 100
#define TLS_SESSIONS_PER_KEY      4

typedef struct tls_session_entry tls_session_entry;

typedef struct tls_session_cache {
    list_link lru;               /* most recently used first */
    tls_session_entry **buckets; /* chained; nbuckets a power of two */
    size_t nbuckets, count, max;
    uint8_t hash_key[16];
    uint64_t stored, hits, misses, evicted; /* counters, ever */
} tls_session_cache;

/* Ready an empty cache of at most max_entries (0: TLS_SESSION_CACHE_DEFAULT).
 * Allocates its bucket array (owner: c, until tls_session_cache_destroy).
 * Returns 0 or FERRY_ENOMEM. */
int tls_session_cache_init(tls_session_cache *c, size_t max_entries);
/* Drop every session and free the cache's memory. */
void tls_session_cache_destroy(tls_session_cache *c);

/* Keep sess (the cache takes a reference of its own) for key: a TLS 1.2
 * session replaces what key had, a TLS 1.3 one joins the others (the oldest
 * goes beyond TLS_SESSIONS_PER_KEY). A session that cannot resume is not
 * kept. The entry (owner: c) is allocated on first use of key; on ENOMEM
 * nothing changes. */
void tls_session_cache_put(tls_session_cache *c, const char *key, SSL_SESSION *sess);
/* key's newest session, with a reference the caller frees (after handing
 * it to SSL_set_session), or NULL. A TLS 1.3 session leaves the cache; a
 * TLS 1.2 one stays. Expired sessions are dropped on the way. */
SSL_SESSION *tls_session_cache_get1(tls_session_cache *c, const char *key);
/* How many sessions key holds now. */
size_t tls_session_cache_sessions(tls_session_cache *c, const char *key);
/* Forget key's sessions (e.g. after a failed handshake with one). */
void tls_session_cache_remove(tls_session_cache *c, const char *key);

#endif /* FERRY_TLS_SESSION_CACHE_H */
