/* dns.c — name resolution for the client: uv_getaddrinfo, a TTL cache in
 * front of it, and the RFC 8305 address order (the contract is in dns.h,
 * the user's view in docs/dns.md).
 *
 * What it owns: one `dns_entry` per name (the lowercased name, the
 * uv_getaddrinfo_t while resolving, the queries waiting for it, and the
 * cache's reference to the answer), and the idle handle that delivers
 * answers taken from the cache. It owns no query: queries live in the
 * caller's requests and are only linked into the cache's lists.
 *
 * Entries are kept in one list, least recently used first, and found by a
 * linear scan. An agent talks to a handful of origins, so the cache holds a
 * few dozen short names at most; comparing lengths first makes a scan of
 * them cheaper than hashing the name, and it is nothing next to the connect
 * that follows. The list also gives eviction for free: the head is the
 * entry to drop. (With thousands of names a hash table would pay off; the
 * agent's max_entries keeps us far from that.)
 *
 * An entry is either resolving (its getaddrinfo is in flight; new queries
 * for the name join its waiters) or answered (an address list or a failure
 * code, fresh until `expires` on the loop clock). A stale answered entry is
 * dropped when it is next looked at, and a new lookup starts with a new
 * entry. Resolving entries are never evicted: their waiters hang on them,
 * and libuv owns their request until it calls back.
 *
 * Delivery: every answer goes through the cache's ready list. A query
 * answered from the cache is queued there and the idle handle delivers it
 * on the next idle phase, so its callback never runs inside dns_resolve. A
 * getaddrinfo that comes back moves its waiters there and delivers at once
 * (we are already on the loop). Queries are taken off the list one at a
 * time before their callback runs, so a callback may cancel others, resolve
 * again (even with the same query), evict, or close the cache, and nothing
 * is left pointing at freed memory. One pass delivers only what was queued
 * when it began (the sequence numbers), so a callback that resolves again
 * in a loop cannot keep the loop from polling.
 *
 * Closing cancels every query and frees every answered entry at once.
 * uv_cancel removes a getaddrinfo still queued on the thread pool, but one
 * already running cannot be stopped: its entry stays until the callback
 * comes back (with UV_EAI_CANCELED or a real answer, which is discarded).
 * The close callback runs once the idle handle is closed and no
 * getaddrinfo is outstanding.
 */
#include "util/dns.h"

#include <assert.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"

#ifndef container_of
// clang-format off
#define container_of(ptr, type, member) ((type *) ((char *) (ptr) - offsetof(type, member)))
// clang-format on
#endif

enum { Q_IDLE = 0, Q_WAITING, Q_READY };

typedef struct dns_entry {
    list_link link; /* in cache->_entries */
    dns_cache *cache;
    uv_getaddrinfo_t req; /* libuv's while resolving */
    list_link waiters;    /* dns_query._link, while resolving */
    dns_addrs *addrs;     /* the cache's reference to the answer; NULL: resolving or failed */
    int status;           /* answered: 0 or the lookup's failure */
    bool resolving;
    uint64_t expires; /* answered: uv_now() from which it is stale */
    size_t len;
    char name[]; /* lowercased, NUL-terminated for getaddrinfo */
} dns_entry;

/* ---- addresses ----------------------------------------------------------- */

void dns_addrs_release(dns_addrs *a)
{
    if (a == NULL) return;
    assert(a->refs > 0);
    if (--a->refs == 0) free(a);
}

static dns_addrs *addrs_ref(dns_addrs *a)
{
    if (a != NULL) a->refs++;
    return a;
}

/* An IPv4 or IPv6 address we can connect to, or NULL. */
static const struct sockaddr *usable(const struct addrinfo *ai)
{
    const struct sockaddr *sa = ai->ai_addr;
    if (sa == NULL) return NULL;
    if (ai->ai_family == AF_INET && sa->sa_family == AF_INET &&
        ai->ai_addrlen >= sizeof(struct sockaddr_in))
        return sa;
    if (ai->ai_family == AF_INET6 && sa->sa_family == AF_INET6 &&
        ai->ai_addrlen >= sizeof(struct sockaddr_in6))
        return sa;
    return NULL;
}

/* Same address (the port is ignored; a link-local IPv6 address on another
 * interface is another address). Both are of one family. */
static bool same_addr(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *) a;
        const struct sockaddr_in *y = (const struct sockaddr_in *) b;
        return x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const struct sockaddr_in6 *) a;
    const struct sockaddr_in6 *y = (const struct sockaddr_in6 *) b;
    return memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0 &&
           x->sin6_scope_id == y->sin6_scope_id;
}

static void copy_addr(struct sockaddr_storage *dst, const struct sockaddr *src)
{
    memset(dst, 0, sizeof(*dst));
    if (src->sa_family == AF_INET) {
        memcpy(dst, src, sizeof(struct sockaddr_in));
        ((struct sockaddr_in *) dst)->sin_port = 0;
    } else {
        memcpy(dst, src, sizeof(struct sockaddr_in6));
        ((struct sockaddr_in6 *) dst)->sin6_port = 0;
    }
}

/* RFC 8305 §4: getaddrinfo has already sorted the list by RFC 6724; keep
 * that order within each family, and alternate families starting with the
 * first address's, so a broken IPv6 (or IPv4) path costs one failed
 * attempt before the other family is tried, not one per address.
 *
 * Allocates *out (owner: the caller, one reference). Collects at most
 * DNS_MAX_ADDRS unique addresses per family (on the stack), which is all
 * the interleaving can use, and keeps the duplicate check O(DNS_MAX_ADDRS)
 * per address however long the list. */
int dns_addrs_from_addrinfo(const struct addrinfo *ai, dns_addrs **out)
{
    const struct sockaddr *fam[2][DNS_MAX_ADDRS];
    uint32_t n[2] = {0, 0};
    int first = AF_UNSPEC;
    *out = NULL;
    for (; ai != NULL; ai = ai->ai_next) {
        const struct sockaddr *sa = usable(ai);
        if (sa == NULL) continue;
        if (first == AF_UNSPEC) first = sa->sa_family;
        int f = sa->sa_family == first ? 0 : 1;
        if (n[f] == DNS_MAX_ADDRS) continue;
        bool dup = false;
        for (uint32_t i = 0; i < n[f] && !dup; i++)
            dup = same_addr(fam[f][i], sa);
        if (!dup) fam[f][n[f]++] = sa;
    }
    uint32_t count = n[0] + n[1];
    if (count == 0) return UV_EAI_NONAME;
    if (count > DNS_MAX_ADDRS) count = DNS_MAX_ADDRS;
    dns_addrs *a = malloc(sizeof(*a) + count * sizeof(a->addr[0]));
    if (a == NULL) return FERRY_ENOMEM;
    a->refs = 1;
    a->count = count;
    uint32_t k = 0, i = 0, j = 0;
    while (k < count) {
        if (i < n[0]) copy_addr(&a->addr[k++], fam[0][i++]);
        if (k < count && j < n[1]) copy_addr(&a->addr[k++], fam[1][j++]);
    }
    *out = a;
    return 0;
}

/* ---- names --------------------------------------------------------------- */

/* ASCII only: host names are compared as DNS does, never by locale. */
static char lower(char ch)
{
    return ch >= 'A' && ch <= 'Z' ? (char) (ch - 'A' + 'a') : ch;
}

static bool name_equal(const dns_entry *e, const char *host, size_t len)
{
    if (e->len != len) return false;
    for (size_t i = 0; i < len; i++)
        if (e->name[i] != lower(host[i])) return false;
    return true;
}

static bool ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/* "localhost" and its subdomains (RFC 6761 §6.3), given lowercased. These
 * resolve to loopback addresses, which AI_ADDRCONFIG does not count (RFC
 * 3493 §6.1): on a machine whose only IPv6 address is ::1 the flag would
 * drop ::1 from localhost's answer, and a server listening only on ::1
 * would be unreachable. */
static bool is_localhost(const char *name, size_t len)
{
    if (len > 0 && name[len - 1] == '.') len--;
    return (len == 9 && memcmp(name, "localhost", 9) == 0) || ends_with(name, len, ".localhost");
}

static bool name_ok(const char *host, size_t len)
{
    return host != NULL && len > 0 && len <= DNS_MAX_NAME && memchr(host, '\0', len) == NULL;
}

/* How long an answer with `status` stays. The resolver's verdicts on the
 * name are kept briefly: a burst of requests to a mistyped or dead name
 * then costs one lookup a second instead of one each (every lookup holds
 * one of libuv's four pool threads, for the resolver's whole timeout when
 * it is unreachable), while a name that just appeared is seen within a
 * second. Local failures (memory, a system error, a cancelled lookup) say
 * nothing about the name and are not kept. */
static uint64_t answer_ttl(const dns_cache *c, int status)
{
    if (status == 0) return c->_ttl_ms;
    switch (status) {
    case UV_EAI_NONAME:
    case UV_EAI_NODATA:
    case UV_EAI_AGAIN:
    case UV_EAI_FAIL:
    case UV_EAI_ADDRFAMILY:
        return c->_ttl_ms < DNS_FAILURE_TTL_MS ? c->_ttl_ms : DNS_FAILURE_TTL_MS;
    default: return 0;
    }
}

/* ---- entries ------------------------------------------------------------- */

static bool entry_fresh(const dns_cache *c, const dns_entry *e)
{
    return !e->resolving && uv_now(c->_loop) < e->expires;
}

static dns_entry *entry_find(dns_cache *c, const char *host, size_t len)
{
    for (list_link *l = c->_entries.next; l != &c->_entries; l = l->next) {
        dns_entry *e = container_of(l, dns_entry, link);
        if (name_equal(e, host, len)) return e;
    }
    return NULL;
}

/* Most recently used goes to the tail; the head is evicted first. */
static void entry_touch(dns_cache *c, dns_entry *e)
{
    list_remove(&e->link);
    list_append(&c->_entries, &e->link);
}

static void entry_free(dns_cache *c, dns_entry *e)
{
    assert(!e->resolving && list_empty(&e->waiters));
    list_remove(&e->link);
    dns_addrs_release(e->addrs);
    c->entries--;
    free(e);
}

/* Evict answered entries until at most `keep` remain: stale ones first,
 * then the least recently used. Resolving entries are skipped, so while
 * many distinct lookups are in flight the cache may hold more than its
 * maximum; the next answer or insert trims it back. */
static void cache_trim(dns_cache *c, uint32_t keep)
{
    list_link *l = c->_entries.next;
    while (l != &c->_entries && c->entries > keep) {
        dns_entry *e = container_of(l, dns_entry, link);
        l = l->next;
        if (!e->resolving && !entry_fresh(c, e)) entry_free(c, e);
    }
    l = c->_entries.next;
    while (l != &c->_entries && c->entries > keep) {
        dns_entry *e = container_of(l, dns_entry, link);
        l = l->next;
        if (!e->resolving) entry_free(c, e);
    }
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* ---- delivery ------------------------------------------------------------ */

static void on_idle(uv_idle_t *idle);

/* Queue q's answer; `a` is the reference its callback will get. */
static void ready_push(dns_cache *c, dns_query *q, int status, dns_addrs *a)
{
    q->_status = status;
    q->_addrs = a;
    q->_seq = c->_seq++;
    q->_state = Q_READY;
    list_append(&c->_ready, &q->_link);
    uv_idle_start(&c->_idle, on_idle); /* no-op when already started */
}

/* Run the callbacks of the queries queued before this pass began. Each is
 * unlinked and idle before its callback runs (see the top of the file). */
static void deliver(dns_cache *c)
{
    uint64_t end = c->_seq;
    while (!list_empty(&c->_ready)) {
        dns_query *q = container_of(c->_ready.next, dns_query, _link);
        if (q->_seq >= end) break;
        list_remove(&q->_link);
        dns_cb cb = q->_cb;
        int status = q->_status;
        dns_addrs *a = q->_addrs;
        q->_addrs = NULL;
        q->_state = Q_IDLE;
        cb(q, status, a);
    }
    if (!c->_closing && list_empty(&c->_ready)) uv_idle_stop(&c->_idle);
}

static void on_idle(uv_idle_t *idle)
{
    deliver(container_of(idle, dns_cache, _idle));
}

/* ---- closing ------------------------------------------------------------- */

static void close_maybe_finish(dns_cache *c)
{
    if (!c->_idle_closed || c->_inflight > 0 || c->_closed) return;
    c->_closed = true;
    if (c->_close_cb != NULL) c->_close_cb(c); /* may free c: touch nothing after */
}

static void on_idle_closed(uv_handle_t *h)
{
    dns_cache *c = container_of((uv_idle_t *) h, dns_cache, _idle);
    c->_idle_closed = true;
    close_maybe_finish(c);
}

/* ---- lookups ------------------------------------------------------------- */

/* libuv calls back on the loop. The answer goes into the entry and to
 * every waiter; the entry is touched no more once delivery starts, since a
 * callback may evict or replace it. */
static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    dns_entry *e = container_of(req, dns_entry, req);
    dns_cache *c = e->cache;
    dns_addrs *a = NULL;
    if (status == 0) status = dns_addrs_from_addrinfo(res, &a);
    uv_freeaddrinfo(res);
    c->_inflight--;
    e->resolving = false;
    if (c->_closing) { /* its waiters were cancelled; nobody wants the answer */
        dns_addrs_release(a);
        entry_free(c, e);
        close_maybe_finish(c);
        return;
    }
    e->addrs = a;
    e->status = status;
    uint64_t ttl = answer_ttl(c, status);
    e->expires = add_sat(uv_now(c->_loop), ttl);
    while (!list_empty(&e->waiters)) {
        dns_query *q = container_of(e->waiters.next, dns_query, _link);
        list_remove(&q->_link);
        ready_push(c, q, status, addrs_ref(a));
    }
    entry_touch(c, e);
    if (ttl == 0)
        entry_free(c, e);
    else
        cache_trim(c, c->_max);
    deliver(c);
}

/* Create the entry for `host` and start its getaddrinfo. Allocates the
 * entry (owner: the cache; freed by entry_free, or by on_resolved once the
 * cache is closing). */
static int entry_start(dns_cache *c, const char *host, size_t len, dns_entry **out)
{
    cache_trim(c, c->_max > 0 ? c->_max - 1 : 0); /* room for the answer to come */
    dns_entry *e = malloc(sizeof(*e) + len + 1);
    if (e == NULL) return FERRY_ENOMEM;
    for (size_t i = 0; i < len; i++)
        e->name[i] = lower(host[i]);
    e->name[len] = '\0';
    e->len = len;
    e->cache = c;
    e->addrs = NULL;
    e->status = 0;
    e->expires = 0;
    list_init(&e->waiters);

    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    /* AI_ADDRCONFIG: no IPv6 answers on a host without IPv6 (and the
     * reverse), each of which would cost a failed connect. */
    hints.ai_flags = is_localhost(e->name, len) ? 0 : AI_ADDRCONFIG;
    int rc = uv_getaddrinfo(c->_loop, &e->req, on_resolved, e->name, NULL, &hints);
    if (rc < 0) {
        free(e);
        return rc;
    }
    e->resolving = true;
    list_append(&c->_entries, &e->link);
    c->entries++;
    c->lookups++;
    c->_inflight++;
    *out = e;
    return 0;
}

/* ---- the interface ------------------------------------------------------- */

int dns_cache_init(uv_loop_t *loop, dns_cache *c, uint64_t ttl_ms, uint32_t max_entries)
{
    memset(c, 0, sizeof(*c));
    int rc = uv_idle_init(loop, &c->_idle);
    if (rc < 0) return rc;
    c->_loop = loop;
    c->_ttl_ms = ttl_ms;
    c->_max = max_entries;
    list_init(&c->_entries);
    list_init(&c->_ready);
    return 0;
}

dns_addrs *dns_lookup_cached(dns_cache *c, const char *host, size_t host_len)
{
    if (c->_closing || !name_ok(host, host_len)) return NULL;
    dns_entry *e = entry_find(c, host, host_len);
    if (e == NULL || e->resolving) return NULL;
    if (!entry_fresh(c, e)) {
        entry_free(c, e);
        return NULL;
    }
    if (e->addrs == NULL) return NULL; /* a cached failure: dns_resolve reports it */
    entry_touch(c, e);
    c->hits++;
    return addrs_ref(e->addrs);
}

int dns_resolve(dns_cache *c, dns_query *q, const char *host, size_t host_len, dns_cb cb)
{
    if (c->_closing) return FERRY_ECLOSING;
    if (cb == NULL || !name_ok(host, host_len)) return FERRY_EINVAL;
    dns_entry *e = entry_find(c, host, host_len);
    if (e != NULL && !e->resolving && !entry_fresh(c, e)) {
        entry_free(c, e);
        e = NULL;
    }
    q->_cache = c;
    q->_cb = cb;
    q->_addrs = NULL;
    if (e != NULL && !e->resolving) {
        entry_touch(c, e);
        c->hits++;
        ready_push(c, q, e->status, addrs_ref(e->addrs));
        return 0;
    }
    if (e != NULL) {
        c->shared++;
    } else {
        int rc = entry_start(c, host, host_len, &e);
        if (rc < 0) return rc;
    }
    q->_state = Q_WAITING;
    list_append(&e->waiters, &q->_link);
    return 0;
}

void dns_cancel(dns_query *q)
{
    if (q->_state == Q_IDLE) return;
    dns_cache *c = q->_cache;
    list_remove(&q->_link);
    dns_addrs_release(q->_addrs);
    q->_addrs = NULL;
    q->_state = Q_IDLE;
    /* A waiter's lookup goes on: the answer is usually wanted again soon
     * (a retry), and a running getaddrinfo cannot be stopped anyway. */
    if (!c->_closing && list_empty(&c->_ready)) uv_idle_stop(&c->_idle);
}

void dns_cache_close(dns_cache *c, dns_close_cb cb)
{
    if (c->_closing) return;
    c->_closing = true;
    c->_close_cb = cb;
    while (!list_empty(&c->_ready))
        dns_cancel(container_of(c->_ready.next, dns_query, _link));
    list_link *l = c->_entries.next;
    while (l != &c->_entries) {
        dns_entry *e = container_of(l, dns_entry, link);
        l = l->next;
        if (!e->resolving) {
            entry_free(c, e);
            continue;
        }
        while (!list_empty(&e->waiters))
            dns_cancel(container_of(e->waiters.next, dns_query, _link));
        /* Succeeds only while the lookup is still queued (its callback then
         * gets UV_EAI_CANCELED); a running one fails with UV_EBUSY and we
         * wait for it. Either way on_resolved frees the entry. */
        (void) uv_cancel((uv_req_t *) &e->req);
    }
    uv_close((uv_handle_t *) &c->_idle, on_idle_closed);
}
