/* dns.h — the client's name resolution: uv_getaddrinfo behind a small TTL
 * cache. The agent resolves an origin's host here and connects
 * to the addresses in order, moving to the next when one fails.
 *
 * What a caller sees:
 *   - dns_lookup_cached() answers synchronously from a fresh cache entry, or
 *     says "miss"; the agent tries it first so the common case (a name it
 *     resolved seconds ago) costs no loop iteration at all.
 *   - dns_resolve() answers asynchronously, always from the loop and never
 *     inside the call (libuv's rule), whether the answer comes from
 *     getaddrinfo or from the cache. Concurrent queries for one name share
 *     one getaddrinfo call: a burst of requests to a new origin costs one
 *     lookup, not one per request.
 *   - Answers are dns_addrs: refcounted, shared by the cache and every query
 *     that got them, so handing an answer to 50 requests copies nothing and
 *     an entry evicted while a request still walks its addresses stays valid.
 *   - Addresses come in RFC 8305 §4 order: families interleaved, starting
 *     with the family getaddrinfo put first (its RFC 6724 choice), without
 *     duplicates, at most DNS_MAX_ADDRS of them, port 0.
 *   - Failures are the libuv code (UV_EAI_NONAME, UV_EAI_AGAIN, ...; ferry.h
 *     names them FERRY_EAI_*). The resolver's verdicts on a name are cached
 *     for DNS_FAILURE_TTL_MS (or the TTL, if shorter); local failures
 *     (out of memory, ...) are not cached. docs/dns.md has the reasons.
 *
 * Names are compared ASCII case-insensitively ("LocalHost" is "localhost").
 * IP literals are meant to be handled by the caller without a lookup; passed
 * here they work like any other name.
 *
 * Memory: the cache allocates one entry per name it holds (owner: the cache,
 * freed on eviction, expiry or close) and one dns_addrs per successful
 * lookup (owner: whoever holds a reference; freed by the last
 * dns_addrs_release()). The dns_cache and the dns_query live in the caller's
 * memory. Everything runs on the loop's thread; getaddrinfo itself runs on
 * libuv's thread pool.
 */
#ifndef FERRY_DNS_H
#define FERRY_DNS_H

#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "core/list.h"

/* Most addresses kept per name. A request tries them one by one, each with
 * its own connect timeout, so beyond a handful they are never reached; the
 * cap bounds an entry at 16 * 128 bytes. */
#define DNS_MAX_ADDRS 16

/* Longest name accepted (RFC 1035's 255 octets); longer is FERRY_EINVAL. */
#define DNS_MAX_NAME 255

/* How long a failed lookup answers for its name (never longer than the
 * cache's TTL). */
#define DNS_FAILURE_TTL_MS 1000

/* A resolved name's addresses, shared and refcounted. */
typedef struct dns_addrs {
    uint32_t refs; /* private */
    uint32_t count;
    struct sockaddr_storage addr[]; /* port 0; the caller sets the port when connecting */
} dns_addrs;

/* Drop one reference; frees at zero. NULL is ignored. */
void dns_addrs_release(dns_addrs *a);

typedef struct dns_cache dns_cache;
typedef struct dns_query dns_query;

/* A query's answer. `addrs` is a reference the callee now owns (release it),
 * NULL when status < 0. The query is idle again when this runs: it may be
 * reused (dns_resolve again) or freed from inside the callback. */
typedef void (*dns_cb)(dns_query *q, int status, dns_addrs *addrs);

typedef void (*dns_close_cb)(dns_cache *c);

/* Embedded in the caller's request struct. The caller sets nothing; every
 * field is private. A zeroed query is idle (dns_cancel on it does nothing). */
struct dns_query {
    list_link _link;   /* in its entry's waiters, or in the cache's ready list */
    dns_cache *_cache; /* set by dns_resolve */
    dns_cb _cb;
    dns_addrs *_addrs; /* ready: the reference the callback will get */
    uint64_t _seq;     /* ready: its place in the ready list (ends a delivery pass) */
    int _status;       /* ready: the status the callback will get */
    uint8_t _state;    /* idle (0), waiting for a lookup, or ready to be delivered */
};

struct dns_entry; /* one name: private to dns.c */

/* Embed it in the agent (or allocate it); it must not move between
 * dns_cache_init() and its close callback. */
struct dns_cache {
    uint64_t lookups; /* getaddrinfo calls started */
    uint64_t hits;    /* queries answered from the cache (answers and cached failures) */
    uint64_t shared;  /* queries that joined a getaddrinfo already in flight */
    uint32_t entries; /* names held, resolving or answered */
    /* private */
    uv_loop_t *_loop;
    uv_idle_t _idle;    /* delivers answers dns_resolve took from the cache */
    list_link _entries; /* every dns_entry, least recently used first */
    list_link _ready;   /* answered queries (_link) waiting for their callback, in order */
    uint64_t _ttl_ms;   /* how long an answer is reused */
    uint64_t _seq;      /* next ready-list sequence number */
    uint32_t _max;      /* entries kept once answered */
    uint32_t _inflight; /* uv_getaddrinfo calls not yet called back */
    dns_close_cb _close_cb;
    bool _closing;
    bool _idle_closed;
    bool _closed; /* the close callback ran (or is running) */
};

/* Ready `c` on `loop`: answers are reused for `ttl_ms` (0: never; concurrent
 * queries still share a lookup), and at most `max_entries` answered names
 * are kept (0: none). Initialises a handle on the loop, so the cache must be
 * closed with dns_cache_close() before the loop closes. Returns 0 or a
 * libuv error. */
int dns_cache_init(uv_loop_t *loop, dns_cache *c, uint64_t ttl_ms, uint32_t max_entries);

/* Synchronous cache hit: a new reference to a fresh entry's addresses (the
 * caller releases it), or NULL (miss, expired, a cached failure, closing).
 * Counts a hit when it returns one. */
dns_addrs *dns_lookup_cached(dns_cache *c, const char *host, size_t host_len);

/* Resolve `host` (not NUL-terminated; host_len bytes) for `q`: cb runs
 * later from the loop, never inside this call. A fresh cache entry answers
 * (one loop turn later); otherwise q joins the name's getaddrinfo in flight
 * or starts one (AF_UNSPEC, SOCK_STREAM, AI_ADDRCONFIG except for
 * localhost). `q` must be idle. Returns 0, or FERRY_EINVAL (empty, too long
 * or containing NUL), FERRY_ECLOSING, or a libuv error from uv_getaddrinfo;
 * then cb never runs. */
int dns_resolve(dns_cache *c, dns_query *q, const char *host, size_t host_len, dns_cb cb);

/* The query's cb will not run (any answer it held is released); safe at any
 * time before it ran, from any callback, and on an idle query. O(1). A
 * getaddrinfo left with no query still completes and fills the cache. */
void dns_cancel(dns_query *q);

/* Cancel every outstanding query (their callbacks do not run), drop the
 * cache, and cancel the lookups still queued on the thread pool. cb (may be
 * NULL) runs from the loop once every uv_getaddrinfo in flight has come back
 * and nothing of the cache's is left on the loop; only then may c's memory
 * go. Safe from any callback; a second call does nothing. */
void dns_cache_close(dns_cache *c, dns_close_cb cb);

/* For tests: turn a getaddrinfo result into *out in RFC 8305 §4 order
 * (IPv6 and IPv4 interleaved starting with the first address's family,
 * duplicates and other families dropped, at most DNS_MAX_ADDRS, port 0).
 * *out has one reference, owned by the caller. Returns 0, UV_EAI_NONAME
 * when no IPv4 or IPv6 address is in the list, or FERRY_ENOMEM. */
int dns_addrs_from_addrinfo(const struct addrinfo *ai, dns_addrs **out);

#endif /* FERRY_DNS_H */
