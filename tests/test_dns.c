/* test_dns.c — the client's resolver (src/dns.c) on a real loop: resolving
 * "localhost", answers from the cache (never inside the call), expiry,
 * 50 concurrent queries sharing one getaddrinfo, case-insensitive names,
 * cancelling (waiting, answered, from a callback), closing with a lookup
 * running or still queued on the thread pool, a name that cannot resolve,
 * the entry bound and LRU eviction, TTL 0, reusing a query from its own
 * callback, and the RFC 8305 address order on fabricated getaddrinfo
 * lists. Every loop test closes the cache and proves the loop closes clean. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/dns.h"
#include "ferry.h"

#define TTL_LONG 60000

/* One query as a test sees it. */
typedef struct probe {
    dns_query q; /* first: the callback recovers the probe by cast */
    int calls;
    int status;
    dns_addrs *addrs; /* the last answer's reference, released by the test */
    void (*then)(struct probe *p);
} probe;

static struct {
    uv_loop_t *loop;
    dns_cache *cache;
    int in_call;    /* > 0 while the test is inside a dns_* call */
    int closed;     /* close callbacks seen */
    probe *victim;  /* for callbacks that cancel another query */
    int *unblocked; /* pool jobs finished, read by on_closed */
    int unblocked_at_close;
} R;

static int setup(void **state)
{
    (void) state;
    memset(&R, 0, sizeof(R));
    return 0;
}

static void on_answer(dns_query *q, int status, dns_addrs *addrs)
{
    probe *p = (probe *) q;
    assert_int_equal(R.in_call, 0); /* never inside dns_resolve or dns_cancel */
    if (status < 0)
        assert_null(addrs);
    else
        assert_non_null(addrs);
    p->calls++;
    p->status = status;
    dns_addrs_release(p->addrs);
    p->addrs = addrs;
    if (p->then != NULL) p->then(p);
}

static int resolve(probe *p, const char *host)
{
    R.in_call++;
    int rc = dns_resolve(R.cache, &p->q, host, strlen(host), on_answer);
    R.in_call--;
    return rc;
}

static void probe_done(probe *p)
{
    dns_addrs_release(p->addrs);
    p->addrs = NULL;
}

static void open_cache(uv_loop_t *loop, dns_cache *c, uint64_t ttl, uint32_t max)
{
    assert_int_equal(uv_loop_init(loop), 0);
    assert_int_equal(dns_cache_init(loop, c, ttl, max), 0);
    R.loop = loop;
    R.cache = c;
}

static void on_closed(dns_cache *c)
{
    assert_ptr_equal(c, R.cache);
    assert_int_equal(R.in_call, 0);
    R.closed++;
    if (R.unblocked != NULL) R.unblocked_at_close = *R.unblocked;
}

/* Close the cache, run the loop dry, check the callback ran once, and that
 * the loop has nothing left. */
static void close_and_finish(void)
{
    R.in_call++;
    dns_cache_close(R.cache, on_closed);
    dns_cache_close(R.cache, on_closed); /* a second call does nothing */
    R.in_call--;
    assert_int_equal(R.closed, 0); /* never inside the call */
    assert_int_equal(uv_run(R.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(R.closed, 1);
    assert_int_equal(uv_loop_close(R.loop), 0);
}

static void run(void)
{
    assert_int_equal(uv_run(R.loop, UV_RUN_DEFAULT), 0);
}

static bool has_ipv4(const dns_addrs *a, const char *ip)
{
    struct in_addr want;
    assert_int_equal(inet_pton(AF_INET, ip, &want), 1);
    for (uint32_t i = 0; i < a->count; i++) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *) &a->addr[i];
        if (sin->sin_family == AF_INET && sin->sin_addr.s_addr == want.s_addr) return true;
    }
    return false;
}

/* ---- resolving and the cache ---------------------------------------------- */

static void test_localhost(void **state)
{
    (void) state;
    uv_loop_t loop;
    dns_cache c;
    open_cache(&loop, &c, TTL_LONG, 16);
    probe p = {0};
    assert_int_equal(resolve(&p, "localhost"), 0);
    assert_int_equal(p.calls, 0);
    run();
    assert_int_equal(p.calls, 1);
    assert_int_equal(p.status, 0);
    assert_true(p.addrs->count >= 1);
    assert_true(has_ipv4(p.addrs, "127.0.0.1"));
    bool v4 = false, v6 = false;
    for (uint32_t i = 0; i < p.addrs->count; i++) {
        const struct sockaddr_storage *ss = &p.addrs->addr[i];
        assert_true(ss->ss_family == AF_INET || ss->ss_family == AF_INET6);
        if (ss->ss_family == AF_INET) {
            v4 = true;
            assert_int_equal(((const struct sockaddr_in *) ss)->sin_port, 0);
        } else {
            v6 = true;
            assert_int_equal(((const struct sockaddr_in6 *) ss)->sin6_port, 0);
        }
    }
    if (v4 && v6) /* ::1 and 127.0.0.1: the first two are one of each family */
        assert_int_not_equal(p.addrs->addr[0].ss_family, p.addrs->addr[1].ss_family);
    assert_int_equal(c.lookups, 1);
    assert_int_equal(c.hits, 0);
    assert_int_equal(c.entries, 1);
    probe_done(&p);
    close_and_finish();
}

static void test_cache_hit_is_async(void **state)
{
    (void) state;
    uv_loop_t loop;
    dns_cache c;
    open_cache(&loop, &c, TTL_LONG, 16);
    probe p1 = {0}, p2 = {0};
    assert_null(dns_lookup_cached(&c, "localhost", 9)); /* a miss counts nothing */
    assert_int_equal(resolve(&p1, "localhost"), 0);
    run();
    assert_int_equal(p1.status, 0);

    assert_int_equal(resolve(&p2, "localhost"), 0);
    assert_int_equal(p2.calls, 0); /* answered from the cache, but not inline */
    assert_int_equal(c.hits, 1);
    run();
    assert_int_equal(p2.calls, 1);
    assert_int_equal(p2.status, 0);
    assert_ptr_equal(p2.addrs, p1.addrs); /* one shared answer */
    assert_int_equal(c.lookups, 1);

    dns_addrs *a = dns_lookup_cached(&c, "localhost", 9);
    assert_ptr_equal(a, p1.addrs);
    assert_int_equal(c.hits, 2);
    assert_int_equal(c.lookups, 1);
    dns_addrs_release(a);
    probe_done(&p1);
    probe_done(&p2);
    close_and_finish();
}

static void on_expired(uv_timer_t *t)
{
    probe *p = t->data;
    assert_null(dns_lookup_cached(R.cache, "localhost", 9));
    assert_int_equal(resolve(p, "localhost"), 0);
    assert_int_equal(R.cache->lookups, 2); /* stale: looked up again */
    uv_close((uv_handle_t *) t, NULL);
}

static void test_expiry(void **state)
{
    (void) state;
    uv_loop_t loop;
    dns_cache c;
    open_cache(&loop, &c, 50, 16);
    probe p1 = {0}, p2 = {0};
    assert_int_equal(resolve(&p1, "localhost"), 0);
    run();
    assert_int_equal(p1.status, 0);
    assert_int_equal(c.lookups, 1);
    uv_timer_t t;
    assert_int_equal(uv_timer_init(&loop, &t), 0);
    t.data = &p2;
    assert_int_equal(uv_timer_start(&t, on_expired, 200, 0), 0); /* well past 50 ms */
    run();
    assert_int_equal(p2.calls, 1);
    assert_int_equal(p2.status, 0);
    assert_int_equal(c.lookups, 2);
    assert_int_equal(c.hits, 0);
    assert_int_equal(c.entries, 1);
    probe_done(&p1);
    probe_done(&p2);
    close_and_finish();
}

static void test_concurrent_share_one_lookup(void **state)
{
    (void) state;
    uv_loop_t loop;
    dns_cache c;
    open_cache(&loop, &c, TTL_LONG, 16);
    probe p[50];
    memset(p, 0, sizeof(p));
    for (int i = 0; i < 50; i++)
        assert_int_equal(resolve(&p[i], "localhost"), 0);
    assert_int_equal(c.lookups, 1);
    assert_int_equal(c.shared, 49);
    run();
    for (int i = 0; i < 50; i++) {
        assert_int_equal(p[i].calls, 1);
        assert_int_equal(p[i].status, 0);
        assert_ptr_equal(p[i].addrs, p[0].addrs);
    }
    assert_int_equal(c.lookups, 1);
    assert_int_equal(c.hits, 0);
    for (int i = 0; i < 50; i++)
        probe_done(&p[i]);
    close_and_finish();
}

static void test_case_insensitive(void **state)
{
    (void) state;
    uv_loop_t loop;
    dns_cache c;
    open_cache(&loop, &c, TTL_LONG, 16);
    probe p1 = {0}, p2 = {0}, p3 = {0};
    assert_int_equal(resolve(&p1, "LocalHost"), 0);
    assert_int_equal(resolve(&p2, "LOCALHOST"), 0); /* joins the lookup in flight */
    run();
    assert_int_equal(p1.status, 0);
    assert_int_equal(p2.status, 0);
    assert_int_equal(resolve(&p3, "localhost"), 0);
    run();
    assert_int_equal(p3.status, 0);
    dns_addrs *a = dns_lookup_cached(&c, "lOcAlHoSt", 9);
    assert_non_null(a);
    dns_addrs_release(a);
    assert_null(dns_lookup_cached(&c, "localhos", 8)); /* a prefix is another name */
    assert_int_equal(c.lookups, 1);
    assert_int_equal(c.shared, 1);
    assert_int_equal(c.hits, 2);
    assert_int_equal(c.entries, 1);
    probe_done(&p1);
    probe_done(&p2);
    probe_done(&p3);
    close_and_finish();
}

/* ---- cancelling ------------------------------------------------------------ */

static void test_cancel_waiting(void **state)
{
    (void) state;
    uv_loop_t loop;
    dns_cache c;
    open_cache(&loop, &c, TTL_LONG, 16);
    probe idle = {0};
    dns_cancel(&idle.q); /* a zeroed query is idle: nothing happens */
    probe p1 = {0}, p2 = {0}, p3 = {0};
    assert_int_equal(resolve(&p1, "localhost"), 0);
    assert_int_equal(resolve(&p2, "localhost"), 0);
    R.in_call++;
    dns_cancel(&p1.q);
    dns_cancel(&p1.q); /* twice is harmless */
    R.in_call--;
    run();
    assert_int_equal(p1.calls, 0);
    assert_int_equal(p2.calls, 1);
    assert_int_equal(p2.status, 0);

    /* The only waiter cancelled: the lookup still completes and fills the cache. */
    assert_int_equal(resolve(&p3, "127.0.0.1"), 0);
    dns_cancel(&p3.q);
    run();
    assert_int_equal(p3.calls, 0);
    assert_int_equal(c.lookups, 2);
    dns_addrs *a = dns_lookup_cached(&c, "127.0.0.1", 9);
    assert_non_null(a);
    dns_addrs_release(a);
    dns_cancel(&p2.q); /* after its callback ran: nothing happens */
    probe_done(&p2);
    close_and_finish();
}

static void cancel_victim(probe *p)
{
    (void) p;
    dns_cancel(&R.victim->q);
}

/* Queries answered from the cache wait on the ready list: cancelling them
 * directly or from an earlier query's callback drops them and their
 * reference (ASan would see a leaked dns_addrs). */
static void test_cancel_ready(void **state)
{
    (void) state;
    uv_loop_t loop;
    dns_cache c;
    open_cache(&loop, &c, TTL_LONG, 16);
    probe p0 = {0}, p1 = {0}, p2 = {0}, p3 = {0};
    assert_int_equal(resolve(&p0, "localhost"), 0);
    run();
    assert_int_equal(resolve(&p1, "localhost"), 0);
    assert_int_equal(resolve(&p2, "localhost"), 0);
    assert_int_equal(resolve(&p3, "localhost"), 0);
    assert_int_equal(c.hits, 3);
    dns_cancel(&p2.q);
    p1.then = cancel_victim;
    R.victim = &p3;
    run();
    assert_int_equal(p1.calls, 1);
    assert_int_equal(p2.calls, 0);
    assert_int_equal(p3.calls, 0);
    probe_done(&p0);
    probe_done(&p1);
    close_and_finish();
}

/* Waiters of one lookup are delivered one by one: the first may cancel a
 * later one. */
static void test_cancel_from_callback(void **state)
{
    (void) state;
    uv_loop_t loop;
    dns_cache c;
    open_cache(&loop, &c, TTL_LONG, 16);
    probe p1 = {0}, p2 = {0}, p3 = {0};
    p1.then = cancel_victim;
    R.victim = &p2;
    assert_int_equal(resolve(&p1, "localhost"), 0);
    assert_int_equal(resolve(&p2, "localhost"), 0);
    assert_int_equal(resolve(&p3, "localhost"), 0);
    run();
    assert_int_equal(p1.calls, 1);
    assert_int_equal(p2.calls, 0);
    assert_int_equal(p3.calls, 1);
    probe_done(&p1);
    probe_done(&p3);
    close_and_finish();
}

static void resolve_again_once(probe *p)
{
    p->then = NULL;
    assert_int_equal(resolve(p, "localhost"), 0); /* the same query, from its own callback */
    assert_int_equal(p->calls, 1);
}

static void test_reuse_query_in_callback(void **state)
{
    (void) state;
    uv_loop_t loop;
    dns_cache c;
    open_cache(&loop, &c, TTL_LONG, 16);
    probe p = {0};
    p.then = resolve_again_once;
    assert_int_equal(resolve(&p, "localhost"), 0);
    run();
    assert_int_equal(p.calls, 2);
    assert_int_equal(p.status, 0);
    assert_int_equal(c.lookups, 1);
    assert_int_equal(c.hits, 1);
    probe_done(&p);
    close_and_finish();
}

/* ---- closing --------------------------------------------------------------- */

static void test_close_with_lookup_in_flight(void **state)
{
    (void) state;
    uv_loop_t loop;
    dns_cache c;
    open_cache(&loop, &c, TTL_LONG, 16);
    probe p1 = {0}, p2 = {0};
    assert_int_equal(resolve(&p1, "localhost"), 0);
    assert_int_equal(resolve(&p2, "no-such-host.invalid"), 0);
    R.in_call++;
    dns_cache_close(&c, on_closed);
    R.in_call--;
    assert_int_equal(resolve(&p1, "localhost"), FERRY_ECLOSING);
    assert_null(dns_lookup_cached(&c, "localhost", 9));
    run();
    assert_int_equal(R.closed, 1);
    assert_int_equal(p1.calls, 0);
    assert_int_equal(p2.calls, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void pool_block(uv_work_t *w)
{
    (void) w;
    usleep(100 * 1000);
}

static void pool_unblocked(uv_work_t *w, int status)
{
    (void) status;
    (*(int *) w->data)++;
}

/* With every pool thread busy, the getaddrinfo is still queued when the
 * cache closes: uv_cancel takes it back and its callback comes with
 * UV_EAI_CANCELED. The close callback waits for it. */
static void test_close_with_lookup_queued(void **state)
{
    (void) state;
    uv_loop_t loop;
    dns_cache c;
    open_cache(&loop, &c, TTL_LONG, 16);
    uv_work_t w[4]; /* main() pins the pool to 4 threads */
    int unblocked = 0;
    R.unblocked = &unblocked;
    for (int i = 0; i < 4; i++) {
        w[i].data = &unblocked;
        assert_int_equal(uv_queue_work(&loop, &w[i], pool_block, pool_unblocked), 0);
    }
    probe p = {0};
    assert_int_equal(resolve(&p, "localhost"), 0);
    dns_cache_close(&c, on_closed);
    run();
    assert_int_equal(unblocked, 4);
    assert_int_equal(R.closed, 1);
    /* The lookup was taken back, not waited for: the close finished while
     * the pool was still busy (the blockers take 100 ms). */
    assert_int_equal(R.unblocked_at_close, 0);
    assert_int_equal(p.calls, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void close_from_callback(probe *p)
{
    (void) p;
    dns_cache_close(R.cache, on_closed);
    assert_int_equal(R.closed, 0);
}

static void test_close_from_callback(void **state)
{
    (void) state;
    uv_loop_t loop;
    dns_cache c;
    open_cache(&loop, &c, TTL_LONG, 16);
    probe p1 = {0}, p2 = {0}, p3 = {0};
    p1.then = close_from_callback;
    assert_int_equal(resolve(&p1, "localhost"), 0);
    assert_int_equal(resolve(&p2, "localhost"), 0);
    assert_int_equal(resolve(&p3, "no-such-host.invalid"), 0);
    run();
    assert_int_equal(p1.calls, 1);
    assert_int_equal(p2.calls, 0); /* cancelled by the close */
    assert_int_equal(R.closed, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
    probe_done(&p1);
    probe_done(&p3);
}

static void test_close_unused(void **state)
{
    (void) state;
    uv_loop_t loop;
    dns_cache c;
    open_cache(&loop, &c, TTL_LONG, 16);
    close_and_finish();
}

/* ---- failures and arguments ---------------------------------------------- */

/* .invalid never resolves (RFC 6761 §6.4); without a resolver it fails too.
 * The failure answers again from the cache for a short while. */
static void test_invalid_name(void **state)
{
    (void) state;
    uv_loop_t loop;
    dns_cache c;
    open_cache(&loop, &c, TTL_LONG, 16);
    probe p1 = {0}, p2 = {0};
    assert_int_equal(resolve(&p1, "no-such-host.invalid"), 0);
    run();
    assert_int_equal(p1.calls, 1);
    assert_true(p1.status < 0);
    assert_null(p1.addrs);
    assert_null(dns_lookup_cached(&c, "no-such-host.invalid", 20)); /* not an answer */
    assert_int_equal(resolve(&p2, "No-Such-Host.INVALID"), 0);
    run();
    assert_int_equal(p2.calls, 1);
    assert_int_equal(p2.status, p1.status);
    if (p1.status == UV_EAI_NONAME || p1.status == UV_EAI_AGAIN || p1.status == UV_EAI_NODATA ||
        p1.status == UV_EAI_FAIL) {
        assert_int_equal(c.lookups, 1); /* the verdict was cached */
        assert_int_equal(c.hits, 1);
    }
    close_and_finish();
}

static void test_bad_arguments(void **state)
{
    (void) state;
    uv_loop_t loop;
    dns_cache c;
    open_cache(&loop, &c, TTL_LONG, 16);
    probe p = {0};
    char longname[DNS_MAX_NAME + 2];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(resolve(&p, ""), FERRY_EINVAL);
    assert_int_equal(resolve(&p, longname), FERRY_EINVAL);
    assert_int_equal(dns_resolve(&c, &p.q, "local\0host", 10, on_answer), FERRY_EINVAL);
    assert_int_equal(dns_resolve(&c, &p.q, "localhost", 9, NULL), FERRY_EINVAL);
    assert_null(dns_lookup_cached(&c, "", 0));
    run();
    assert_int_equal(p.calls, 0);
    assert_int_equal(c.lookups, 0);
    close_and_finish();
}

/* ---- the bound ------------------------------------------------------------- */

/* IPv4 literals resolve without a network, so they make handy distinct names. */
static void test_eviction_lru(void **state)
{
    (void) state;
    uv_loop_t loop;
    dns_cache c;
    open_cache(&loop, &c, TTL_LONG, 2);
    probe p[3];
    memset(p, 0, sizeof(p));
    assert_int_equal(resolve(&p[0], "127.0.0.1"), 0);
    assert_int_equal(resolve(&p[1], "127.0.0.2"), 0);
    run();
    assert_int_equal(p[0].status, 0);
    assert_int_equal(p[1].status, 0);
    assert_int_equal(c.entries, 2);
    dns_addrs *a = dns_lookup_cached(&c, "127.0.0.1", 9); /* .1 is now the most recent */
    assert_non_null(a);
    dns_addrs_release(a);
    assert_int_equal(resolve(&p[2], "127.0.0.3"), 0);
    run();
    assert_int_equal(p[2].status, 0);
    assert_true(has_ipv4(p[2].addrs, "127.0.0.3"));
    assert_int_equal(c.entries, 2);
    assert_null(dns_lookup_cached(&c, "127.0.0.2", 9)); /* the least recently used went */
    a = dns_lookup_cached(&c, "127.0.0.1", 9);
    assert_non_null(a);
    dns_addrs_release(a);
    a = dns_lookup_cached(&c, "127.0.0.3", 9);
    assert_non_null(a);
    dns_addrs_release(a);
    /* An evicted answer a request still holds stays valid. */
    assert_true(has_ipv4(p[1].addrs, "127.0.0.2"));
    for (int i = 0; i < 3; i++)
        probe_done(&p[i]);
    close_and_finish();
}

static void test_ttl_zero(void **state)
{
    (void) state;
    uv_loop_t loop;
    dns_cache c;
    open_cache(&loop, &c, 0, 16);
    probe p1 = {0}, p2 = {0}, p3 = {0};
    assert_int_equal(resolve(&p1, "localhost"), 0);
    assert_int_equal(resolve(&p2, "localhost"), 0); /* still shares the lookup in flight */
    run();
    assert_int_equal(c.lookups, 1);
    assert_int_equal(c.entries, 0);
    assert_null(dns_lookup_cached(&c, "localhost", 9));
    assert_int_equal(resolve(&p3, "localhost"), 0);
    run();
    assert_int_equal(c.lookups, 2);
    assert_int_equal(p3.status, 0);
    probe_done(&p1);
    probe_done(&p2);
    probe_done(&p3);
    close_and_finish();
}

/* ---- address order (RFC 8305 §4) ----------------------------------------- */

typedef struct fake_ai {
    struct addrinfo ai[64];
    struct sockaddr_storage sa[64];
    int n;
} fake_ai;

static void fake_add(fake_ai *f, const char *ip, uint32_t scope)
{
    assert_true(f->n < 64);
    struct addrinfo *ai = &f->ai[f->n];
    struct sockaddr_storage *ss = &f->sa[f->n];
    memset(ai, 0, sizeof(*ai));
    memset(ss, 0, sizeof(*ss));
    ai->ai_socktype = SOCK_STREAM;
    ai->ai_addr = (struct sockaddr *) ss;
    if (strchr(ip, ':') != NULL) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(443);
        s6->sin6_scope_id = scope;
        assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
        ai->ai_family = AF_INET6;
        ai->ai_addrlen = sizeof(*s6);
    } else if (strcmp(ip, "unix") == 0) {
        ss->ss_family = AF_UNIX;
        ai->ai_family = AF_UNIX;
        ai->ai_addrlen = sizeof(sa_family_t);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *) ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(80);
        assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
        ai->ai_family = AF_INET;
        ai->ai_addrlen = sizeof(*s4);
    }
    if (f->n > 0) f->ai[f->n - 1].ai_next = ai;
    f->n++;
}

/* The address at `i` as text ("%scope" appended for a scoped IPv6), with port 0 checked. */
static const char *addr_str(const dns_addrs *a, uint32_t i, char *buf, size_t len)
{
    const struct sockaddr_storage *ss = &a->addr[i];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *) ss;
        assert_int_equal(s4->sin_port, 0);
        assert_non_null(inet_ntop(AF_INET, &s4->sin_addr, buf, (socklen_t) len));
    } else {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *) ss;
        assert_int_equal(ss->ss_family, AF_INET6);
        assert_int_equal(s6->sin6_port, 0);
        assert_non_null(inet_ntop(AF_INET6, &s6->sin6_addr, buf, (socklen_t) len));
        if (s6->sin6_scope_id != 0) {
            size_t n = strlen(buf);
            snprintf(buf + n, len - n, "%%%u", (unsigned) s6->sin6_scope_id);
        }
    }
    return buf;
}

static void expect_order(const fake_ai *f, const char *const *want, uint32_t nwant)
{
    dns_addrs *a = NULL;
    assert_int_equal(dns_addrs_from_addrinfo(f->n > 0 ? &f->ai[0] : NULL, &a), 0);
    assert_non_null(a);
    assert_int_equal(a->count, nwant);
    char buf[INET6_ADDRSTRLEN + 16];
    for (uint32_t i = 0; i < nwant; i++)
        assert_string_equal(addr_str(a, i, buf, sizeof(buf)), want[i]);
    dns_addrs_release(a);
}

static void test_order_interleave(void **state)
{
    (void) state;
    fake_ai f = {0};
    /* IPv6 first: alternate, starting with IPv6; the repeated 2001:db8::1
     * and the unix address are dropped; each family keeps its order. */
    fake_add(&f, "2001:db8::1", 0);
    fake_add(&f, "2001:db8::2", 0);
    fake_add(&f, "192.0.2.1", 0);
    fake_add(&f, "2001:db8::1", 0);
    fake_add(&f, "unix", 0);
    fake_add(&f, "192.0.2.2", 0);
    fake_add(&f, "192.0.2.3", 0);
    fake_add(&f, "192.0.2.1", 0);
    const char *const v6first[] = {"2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2",
                                   "192.0.2.3"};
    expect_order(&f, v6first, 5);

    /* IPv4 first (getaddrinfo preferred it): start with IPv4. */
    fake_ai g = {0};
    fake_add(&g, "unix", 0);
    fake_add(&g, "192.0.2.1", 0);
    fake_add(&g, "::1", 0);
    fake_add(&g, "2001:db8::1", 0);
    fake_add(&g, "2001:db8::2", 0);
    const char *const v4first[] = {"192.0.2.1", "::1", "2001:db8::1", "2001:db8::2"};
    expect_order(&g, v4first, 4);

    /* One family, duplicates only. */
    fake_ai h = {0};
    fake_add(&h, "127.0.0.1", 0);
    fake_add(&h, "127.0.0.1", 0);
    const char *const one[] = {"127.0.0.1"};
    expect_order(&h, one, 1);

    /* A link-local address on two interfaces is two addresses. */
    fake_ai l = {0};
    fake_add(&l, "fe80::1", 1);
    fake_add(&l, "fe80::1", 2);
    fake_add(&l, "fe80::1", 1);
    const char *const scoped[] = {"fe80::1%1", "fe80::1%2"};
    expect_order(&l, scoped, 2);
}

static void test_order_cap_and_empty(void **state)
{
    (void) state;
    /* 40 IPv4 then 3 IPv6: capped at DNS_MAX_ADDRS, the IPv6 ones still
     * interleaved near the front rather than cut off. */
    fake_ai f = {0};
    char ip[32];
    for (int i = 1; i <= 40; i++) {
        snprintf(ip, sizeof(ip), "10.0.0.%d", i);
        fake_add(&f, ip, 0);
    }
    fake_add(&f, "2001:db8::a", 0);
    fake_add(&f, "2001:db8::b", 0);
    fake_add(&f, "2001:db8::c", 0);
    dns_addrs *a = NULL;
    assert_int_equal(dns_addrs_from_addrinfo(&f.ai[0], &a), 0);
    assert_int_equal(a->count, DNS_MAX_ADDRS);
    char buf[INET6_ADDRSTRLEN + 16];
    assert_string_equal(addr_str(a, 0, buf, sizeof(buf)), "10.0.0.1");
    assert_string_equal(addr_str(a, 1, buf, sizeof(buf)), "2001:db8::a");
    assert_string_equal(addr_str(a, 3, buf, sizeof(buf)), "2001:db8::b");
    assert_string_equal(addr_str(a, 5, buf, sizeof(buf)), "2001:db8::c");
    assert_string_equal(addr_str(a, 6, buf, sizeof(buf)), "10.0.0.4");
    assert_string_equal(addr_str(a, DNS_MAX_ADDRS - 1, buf, sizeof(buf)), "10.0.0.13");
    dns_addrs_release(a);

    /* Nothing usable: a failure, no allocation. */
    fake_ai u = {0};
    fake_add(&u, "unix", 0);
    a = (dns_addrs *) &u;
    assert_int_equal(dns_addrs_from_addrinfo(&u.ai[0], &a), UV_EAI_NONAME);
    assert_null(a);
    assert_int_equal(dns_addrs_from_addrinfo(NULL, &a), UV_EAI_NONAME);
    assert_null(a);
    dns_addrs_release(NULL); /* harmless */
}

int main(void)
{
    /* test_close_with_lookup_queued fills the pool with exactly 4 jobs. */
    setenv("UV_THREADPOOL_SIZE", "4", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_localhost, setup),
        cmocka_unit_test_setup(test_cache_hit_is_async, setup),
        cmocka_unit_test_setup(test_expiry, setup),
        cmocka_unit_test_setup(test_concurrent_share_one_lookup, setup),
        cmocka_unit_test_setup(test_case_insensitive, setup),
        cmocka_unit_test_setup(test_cancel_waiting, setup),
        cmocka_unit_test_setup(test_cancel_ready, setup),
        cmocka_unit_test_setup(test_cancel_from_callback, setup),
        cmocka_unit_test_setup(test_reuse_query_in_callback, setup),
        cmocka_unit_test_setup(test_close_with_lookup_in_flight, setup),
        cmocka_unit_test_setup(test_close_with_lookup_queued, setup),
        cmocka_unit_test_setup(test_close_from_callback, setup),
        cmocka_unit_test_setup(test_close_unused, setup),
        cmocka_unit_test_setup(test_invalid_name, setup),
        cmocka_unit_test_setup(test_bad_arguments, setup),
        cmocka_unit_test_setup(test_eviction_lru, setup),
        cmocka_unit_test_setup(test_ttl_zero, setup),
        cmocka_unit_test_setup(test_order_interleave, setup),
        cmocka_unit_test_setup(test_order_cap_and_empty, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
