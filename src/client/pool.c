/* pool.c — the client's connection pool (see pool.h for its place).
 *
 * How a request meets a socket: the request layer queues its pool_entry at
 * the tail of its origin's queue and the pool kicks itself; the kick (a
 * uv_idle + uv_check pair, so it runs right after the current I/O callbacks,
 * never inside a public call) pumps each origin: queued entries take idle
 * sockets (checked for a pending FIN/RST first), then new sockets are opened
 * while the budgets allow, at most one per queued entry. A socket that
 * finishes a response takes the next queued entry itself (conn_events
 * .available), so a busy pool never goes through the idle list at all. A
 * connecting socket "is driven by" the oldest queued entry that caused it:
 * if the connect fails, that entry gets the error (and may retry); if it
 * succeeds, it serves whichever entry is at the head of the queue.
 *
 * The idle lists are LIFO: the most recently used socket is the one least
 * likely to have been closed by the server.
 */
#include "client/pool.h"

#include <stdlib.h>
#include <string.h>

static const conn_events pool_conn_events;
static void on_kick(uv_idle_t *h);
static void on_kick_check(uv_check_t *h);

static client_pool *pool_of(const client_conn *c)
{
    return container_of(c->ctx, client_pool, cctx);
}

static void on_fd_restore(timeout_entry *e);

int pool_init(client_pool *p, uv_loop_t *loop, const pool_events *ev,
              const exchange_events *xev, const pool_limits *lim, uint32_t max_header_bytes,
              uint32_t max_headers, uint64_t keep_alive_margin_ms, uint64_t dns_ttl_ms,
              uint32_t tls_sessions)
{
    memset(p, 0, sizeof(*p));
    p->loop = loop;
    p->ev = ev;
    p->lim = *lim;
    list_init(&p->origins);
    list_init(&p->starving);
    list_init(&p->pump);
    list_init(&p->resume);
    timeout_set_init(&p->timers, loop);
    timeout_entry_init(&p->fd_restore, on_fd_restore);
    /* what can fail first; the handles last (their inits cannot fail but
     * the DNS cache's, and a handle must be closed before its memory goes) */
    int rc = tls_session_cache_init(&p->sessions, tls_sessions);
    if (rc < 0)
        return rc;
    rc = conn_ctx_init(&p->cctx, loop, &pool_conn_events, xev, &p->timers, &p->dns,
                       max_header_bytes, max_headers, keep_alive_margin_ms);
    if (rc == 0)
        rc = dns_cache_init(loop, &p->dns, dns_ttl_ms, 256);
    if (rc < 0) {
        tls_session_cache_destroy(&p->sessions);
        return rc;
    }
    p->cctx.tls = &p->tls;
    p->cctx.sessions = &p->sessions;
    uv_idle_init(loop, &p->kick);
    uv_check_init(loop, &p->kick_check);
    p->kick.data = p->kick_check.data = p;
    return 0;
}

void pool_free(client_pool *p)
{
    conn_ctx_free(&p->cctx);
    if (p->tls_ready)
        tls_client_config_destroy(&p->tls);
    tls_session_cache_destroy(&p->sessions);
}

/* ---- origins ---- */

static void origin_free(client_origin *o)
{
    o->pool->ev->origin_freed(o->pool, o);
    list_remove(&o->link);
    list_remove(&o->starving_link);
    list_remove(&o->kick_link);
    o->pool->norigins--;
    free(o->host);
    free(o);
}

void pool_origin_unref(client_origin *o)
{
    if (--o->refs == 0)
        origin_free(o);
}

client_origin *pool_origin_find(const client_pool *p, const char *key, size_t key_len)
{
    for (const list_link *l = p->origins.next; l != &p->origins; l = l->next) {
        client_origin *o = container_of(l, client_origin, link);
        if (o->key_len == key_len && memcmp(o->key, key, key_len) == 0)
            return o;
    }
    return NULL;
}

/* The origin of u, made on first use (owner: the pool; freed when no
 * request or socket refers to it). The caller takes a reference. */
client_origin *pool_origin_for(client_pool *p, const url_parts *u, int *err)
{
    char key[URL_ORIGIN_KEY_MAX];
    size_t klen;
    uint32_t scope;
    *err = url_origin_key(u, key, sizeof(key), &klen);
    if (*err)
        return NULL;
    /* A linear search with move-to-front: agents talk to a handful of
     * origins, and the one just used is almost always the next. */
    client_origin *o = pool_origin_find(p, key, klen);
    if (o) {
        if (o->link.prev != &p->origins) {
            list_remove(&o->link);
            list_insert_after(&p->origins, &o->link);
        }
        o->refs++;
        return o;
    }
    o = calloc(1, sizeof(*o) + klen + 1);
    if (!o) {
        *err = FERRY_ENOMEM;
        return NULL;
    }
    size_t hlen = u->host.len + (u->zone.len ? 1 + u->zone.len : 0);
    o->host = malloc(hlen + 1);
    if (!o->host) {
        free(o);
        *err = FERRY_ENOMEM;
        return NULL;
    }
    memcpy(o->host, u->host.p, u->host.len);
    if (u->zone.len) { /* getaddrinfo reads "fe80::1%eth0" */
        o->host[u->host.len] = '%';
        memcpy(o->host + u->host.len + 1, u->zone.p, u->zone.len);
    }
    o->host[hlen] = '\0';
    o->target.host = o->host;
    o->target.port = u->port;
    o->target.tls = u->https;
    o->target.tls_key = o->key;
    o->pool = p;
    memcpy(o->key, key, klen + 1);
    o->key_len = klen;
    if (u->is_ipv4) {
        struct sockaddr_in *sin = (struct sockaddr_in *) &o->target.addr;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(u->port);
        memcpy(&sin->sin_addr, u->addr, 4);
        o->target.literal = true;
    } else if (u->is_ipv6 && url_zone_index(u, &scope) == 0) {
        /* a zone naming no interface is left to getaddrinfo: EAI_NONAME */
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &o->target.addr;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(u->port);
        memcpy(&sin6->sin6_addr, u->addr, 16);
        sin6->sin6_scope_id = scope;
        o->target.literal = true;
    }
    list_init(&o->idle);
    list_init(&o->busy);
    list_init(&o->waiting);
    list_init(&o->starving_link);
    list_init(&o->kick_link);
    list_insert_after(&p->origins, &o->link);
    p->norigins++;
    o->refs = 1;
    return o;
}

static void want_pump(client_origin *o)
{
    client_pool *p = o->pool;
    if (list_empty(&o->kick_link))
        list_append(&p->pump, &o->kick_link);
    pool_kick(p);
}

/* ---- the queue ---- */

static void enqueued(pool_entry *e)
{
    client_origin *o = e->origin;
    e->queued = true;
    o->nwaiting++;
    o->pool->nqueued++;
    want_pump(o);
}

void pool_enqueue(pool_entry *e, bool front)
{
    client_origin *o = e->origin;
    if (front)
        list_insert_after(&o->waiting, &e->link);
    else
        list_append(&o->waiting, &e->link);
    enqueued(e);
}

void pool_enqueue_after(pool_entry *e, pool_entry *lead)
{
    list_insert_after(&lead->link, &e->link);
    enqueued(e);
}

void pool_unqueue(pool_entry *e)
{
    client_origin *o = e->origin;
    if (!e->queued)
        return;
    e->queued = false;
    list_remove(&e->link);
    o->nwaiting--;
    o->pool->nqueued--;
    if (!o->nwaiting)
        list_remove(&o->starving_link);
    if (e->driving) {
        e->driving->driver = NULL;
        e->driving = NULL;
    }
}

void pool_cancel(pool_entry *e)
{
    client_conn *c = e->driving;
    client_origin *o = e->origin;
    pool_unqueue(e);
    /* a connect made for e that no other queued entry will use */
    if (c && o->nwaiting < o->nconnecting)
        conn_close(c, 0);
}

/* Sockets the pool may have open: the configured budget, or fewer while the
 * process is out of descriptors. */
static uint32_t total_budget(const client_pool *p)
{
    return p->fd_capped && p->fd_cap < p->lim.max_total_sockets ? p->fd_cap
                                                                : p->lim.max_total_sockets;
}

uint32_t pool_queue_excess(const client_origin *o)
{
    const client_pool *p = o->pool;
    uint32_t room = o->nidle;
    uint32_t per = p->lim.max_sockets_per_origin - (o->nidle + o->nbusy);
    uint32_t budget = total_budget(p);
    uint32_t tot = budget > p->total_sockets ? budget - p->total_sockets : 0;
    room += per < tot ? per : tot;
    room += o->nconnecting;
    return o->nwaiting + 1 > room ? o->nwaiting + 1 - room : 0;
}

/* ---- handing out sockets ---- */

/* e takes socket c (idle, or connected and free, or with room for one more). */
static void dispatch(client_origin *o, pool_entry *e, client_conn *c)
{
    client_pool *p = o->pool;
    pool_unqueue(e);
    if (c->state == CC_IDLE) {
        list_remove(&c->pool_link);
        list_append(&o->busy, &c->pool_link);
        o->nidle--;
        o->nbusy++;
    }
    bool reused = c->served > 0;
    if (reused) {
        p->sockets_reused++;
        o->reused++;
    }
    o->requests++;
    e->force_new = false;
    p->ev->sending(e, c, reused);
    conn_send(c, e->x);
}

static bool origin_can_open(const client_origin *o)
{
    const client_pool *p = o->pool;
    return o->nidle + o->nbusy < p->lim.max_sockets_per_origin &&
           p->total_sockets < total_budget(p);
}

/* A connect found the process out of descriptors (EMFILE, ENFILE): the
 * sockets open now are the budget for a while (the one that failed is
 * still counted), and idle sockets no queued request wants are retired —
 * their descriptors serve waiting requests better, here or in a server
 * sharing the process. The request stays queued instead of failing. */
static void pool_out_of_fds(client_pool *p)
{
    p->fd_capped = true;
    p->fd_cap = p->total_sockets ? p->total_sockets - 1 : 0;
    p->emfile_cuts++;
    timeout_set_arm(&p->timers, &p->fd_restore, POOL_FD_RESTORE_MS, false);
    for (list_link *l = p->origins.next; l != &p->origins; l = l->next) {
        client_origin *o = container_of(l, client_origin, link);
        if (o->nwaiting)
            continue;
        while (!list_empty(&o->idle)) {
            p->idle_closed++;
            conn_close(container_of(o->idle.next, client_conn, pool_link), 0);
        }
    }
}

/* The budget comes back; what waits gets a look. A second EMFILE cuts it again. */
static void on_fd_restore(timeout_entry *e)
{
    client_pool *p = container_of(e, client_pool, fd_restore);
    p->fd_capped = false;
    for (list_link *l = p->origins.next; l != &p->origins; l = l->next) {
        client_origin *o = container_of(l, client_origin, link);
        if (o->nwaiting && list_empty(&o->kick_link))
            list_append(&p->pump, &o->kick_link);
    }
    pool_kick(p);
}

/* The total budget is spent: close the least recently used idle socket of
 * another origin so this one can open (idle sockets are worth less than
 * waiting requests). */
static void steal_idle_socket(client_origin *want)
{
    client_pool *p = want->pool;
    for (list_link *l = p->origins.prev; l != &p->origins; l = l->prev) {
        client_origin *o = container_of(l, client_origin, link);
        if (o != want && !list_empty(&o->idle)) {
            p->idle_closed++;
            conn_close(container_of(o->idle.next, client_conn, pool_link), 0);
            return;
        }
    }
}

/* A new socket for o, driven by e (which stays queued). */
static client_conn *open_socket(client_origin *o, pool_entry *e, int *err)
{
    client_pool *p = o->pool;
    uint64_t idle_ms = p->lim.max_idle_per_origin ? p->lim.idle_timeout_ms : 0;
    client_conn *c = conn_new(&p->cctx, &o->target, o, e->connect_ms, idle_ms, err);
    if (!c)
        return NULL;
    o->refs++;
    p->total_sockets++;
    o->nbusy++;
    o->nconnecting++;
    list_append(&o->busy, &c->pool_link);
    c->driver = e;
    e->driving = c;
    conn_start(c);
    return c;
}

/* Give waiting entries sockets: idle ones first, then new ones. */
static void pool_pump(client_origin *o)
{
    client_pool *p = o->pool;
    while (!list_empty(&o->waiting)) {
        pool_entry *e = container_of(o->waiting.next, pool_entry, link);
        /* an idle socket, unless this entry must have a fresh one */
        if (!e->force_new && !list_empty(&o->idle)) {
            client_conn *c = container_of(o->idle.prev, client_conn, pool_link);
            if (!conn_check_idle(&p->cctx, c))
                continue; /* it was stale and is closed now; try the next */
            dispatch(o, e, c);
            continue;
        }
        /* pipelining: a busy socket with room */
        if (p->lim.pipelining > 1 && !e->force_new) {
            client_conn *best = NULL;
            for (list_link *l = o->busy.next; l != &o->busy; l = l->next) {
                client_conn *c = container_of(l, client_conn, pool_link);
                if (conn_can_take(c, e->x, p->lim.pipelining, p->lim.max_requests_per_socket) &&
                    (!best || c->ninflight < best->ninflight))
                    best = c;
            }
            if (best) {
                dispatch(o, e, best);
                continue;
            }
        }
        break;
    }
    /* open sockets for queued entries that no connecting socket will serve */
    uint32_t undriven = o->nwaiting > o->nconnecting ? o->nwaiting - o->nconnecting : 0;
    list_link *l = o->waiting.next;
    while (undriven && !p->aborting) {
        if (!origin_can_open(o)) {
            if (o->nidle && container_of(o->waiting.next, pool_entry, link)->force_new) {
                /* an entry that must have a fresh socket: make room (the
                 * slot is free once the socket's handle has closed) */
                p->idle_closed++;
                conn_close(container_of(o->idle.next, client_conn, pool_link), 0);
            } else if (o->nidle + o->nbusy < p->lim.max_sockets_per_origin) {
                /* held back only by the total budget: free one slot at a
                 * time; the pump runs again when it is free */
                if (list_empty(&o->starving_link))
                    list_append(&p->starving, &o->starving_link);
                steal_idle_socket(o);
            }
            break;
        }
        while (l != &o->waiting && container_of(l, pool_entry, link)->driving)
            l = l->next;
        if (l == &o->waiting)
            break;
        pool_entry *e = container_of(l, pool_entry, link);
        int err;
        client_conn *c = open_socket(o, e, &err);
        if (!c) {
            pool_unqueue(e);
            p->ev->failed(e, err);
            break;
        }
        undriven--;
        /* a connect that failed at once took e off the queue: start over */
        l = e->driving == c ? l->next : o->waiting.next;
    }
}

/* Whether another origin has entries held back by the total budget. */
static bool other_origin_starving(const client_origin *o)
{
    const client_pool *p = o->pool;
    for (const list_link *l = p->starving.next; l != &p->starving; l = l->next) {
        const client_origin *s = container_of(l, client_origin, starving_link);
        if (s != o && s->nwaiting)
            return true;
    }
    return false;
}

/* ---- conn_events ---- */

static void on_conn_ready(client_conn *c)
{
    client_origin *o = c->owner;
    o->nconnecting--;
    o->opened++;
    pool_entry *d = c->driver;
    if (d) {
        d->driving = NULL;
        c->driver = NULL;
    }
    c->ctx->ev->available(c);
}

/* A socket finished its last response (or just connected): give it the
 * next queued entry, park it as idle, or close it. */
static void on_conn_available(client_conn *c)
{
    client_origin *o = c->owner;
    client_pool *p = o->pool;
    bool reusable = conn_reusable(c) &&
                    !(p->lim.max_requests_per_socket && c->served >= p->lim.max_requests_per_socket);
    if (!reusable || p->aborting) {
        conn_close(c, 0);
        return;
    }
    /* the oldest queued entry that does not insist on a fresh socket */
    for (list_link *l = o->waiting.next; l != &o->waiting; l = l->next) {
        pool_entry *e = container_of(l, pool_entry, link);
        if (e->force_new && c->served)
            continue;
        dispatch(o, e, c);
        if (p->lim.pipelining > 1 && o->nwaiting)
            want_pump(o); /* room for more on this socket */
        return;
    }
    /* nothing to do here: keep it, unless another origin needs the budget,
     * the pool is full, or closing */
    if (p->closing || o->nidle >= p->lim.max_idle_per_origin || other_origin_starving(o) ||
        c->idle_ms == 0) {
        p->idle_closed++;
        conn_close(c, 0);
        return;
    }
    list_remove(&c->pool_link);
    list_append(&o->idle, &c->pool_link); /* the tail is the most recently used */
    o->nbusy--;
    o->nidle++;
    conn_make_idle(c);
}

static void on_conn_closing(client_conn *c, int err, uint8_t prev)
{
    client_origin *o = c->owner;
    client_pool *p = o->pool;
    if (prev == CC_RESOLVING || prev == CC_CONNECTING)
        o->nconnecting--;
    list_remove(&c->pool_link);
    if (prev == CC_IDLE)
        o->nidle--;
    else
        o->nbusy--;
    list_remove(&c->resume_link);
    pool_entry *d = c->driver;
    if (d) {
        d->driving = NULL;
        c->driver = NULL;
        if ((err == UV_EMFILE || err == UV_ENFILE) && prev == CC_CONNECTING && d->queued) {
            pool_out_of_fds(p); /* d waits for a socket to free instead */
        } else if (err < 0 && (prev == CC_RESOLVING || prev == CC_CONNECTING) && d->queued) {
            pool_unqueue(d);
            d->tls_reason = c->tls_reason;
            p->ev->failed(d, err);
        }
    }
}

/* A socket is gone: its budget slot is free. */
static void on_conn_freed(client_conn *c)
{
    client_origin *o = c->owner;
    client_pool *p = o->pool;
    p->total_sockets--;
    if (!list_empty(&o->waiting) && list_empty(&o->kick_link))
        list_append(&p->pump, &o->kick_link);
    /* the origin that waited longest for the total budget goes first */
    while (!list_empty(&p->starving)) {
        client_origin *s = container_of(p->starving.next, client_origin, starving_link);
        list_remove(&s->starving_link);
        if (!s->nwaiting)
            continue;
        if (list_empty(&s->kick_link))
            list_append(&p->pump, &s->kick_link);
        break;
    }
    pool_kick(p);
    pool_origin_unref(o);
}

static void on_conn_schedule(client_conn *c)
{
    client_pool *p = pool_of(c);
    if (list_empty(&c->resume_link))
        list_append(&p->resume, &c->resume_link);
    pool_kick(p);
}

static const conn_events pool_conn_events = {
    .ready = on_conn_ready,
    .available = on_conn_available,
    .closing = on_conn_closing,
    .freed = on_conn_freed,
    .schedule = on_conn_schedule,
};

/* ---- the kick ---- */

void pool_kick(client_pool *p)
{
    if (p->kick_on || p->handles_closed)
        return;
    p->kick_on = true;
    uv_idle_start(&p->kick, on_kick);
    uv_check_start(&p->kick_check, on_kick_check);
}

/* The handles stop first: whatever the run queues kicks them again. */
static void pool_run(client_pool *p)
{
    p->kick_on = false;
    uv_idle_stop(&p->kick);
    uv_check_stop(&p->kick_check);
    p->ev->run_due(p); /* completions first: their callbacks often queue the next request */
    while (!list_empty(&p->resume)) {
        client_conn *c = container_of(p->resume.next, client_conn, resume_link);
        list_remove(&c->resume_link);
        conn_process(c);
    }
    while (!list_empty(&p->pump)) {
        client_origin *o = container_of(p->pump.next, client_origin, kick_link);
        list_remove(&o->kick_link);
        o->refs++;
        pool_pump(o);
        pool_origin_unref(o);
    }
    p->ev->settled(p);
}

static void on_kick(uv_idle_t *h)
{
    pool_run(h->data);
}

static void on_kick_check(uv_check_t *h)
{
    pool_run(h->data);
}

/* ---- closing ---- */

void pool_close(client_pool *p, bool abort, int err)
{
    bool first = !p->closing;
    p->closing = true;
    if (abort && !p->aborting) {
        p->aborting = true;
        for (list_link *l = p->origins.next; l != &p->origins;) {
            client_origin *o = container_of(l, client_origin, link);
            o->refs++;
            while (!list_empty(&o->waiting)) {
                pool_entry *e = container_of(o->waiting.next, pool_entry, link);
                pool_unqueue(e);
                p->ev->failed(e, err);
            }
            while (!list_empty(&o->busy))
                conn_close(container_of(o->busy.next, client_conn, pool_link), err);
            l = l->next;
            pool_origin_unref(o);
        }
    }
    if (first || abort) {
        for (list_link *l = p->origins.next; l != &p->origins;) {
            client_origin *o = container_of(l, client_origin, link);
            l = l->next;
            o->refs++;
            while (!list_empty(&o->idle))
                conn_close(container_of(o->idle.next, client_conn, pool_link), 0);
            pool_origin_unref(o);
        }
    }
}

static void on_pool_dns_closed(dns_cache *d)
{
    client_pool *p = container_of(d, client_pool, dns);
    closer_release(p->dns_closer);
}

void pool_close_handles(client_pool *p, closer *c)
{
    p->handles_closed = true;
    p->kick_on = false;
    closer_handle(c, (uv_handle_t *) &p->kick);
    closer_handle(c, (uv_handle_t *) &p->kick_check);
    timeout_set_close(&p->timers, c);
    closer_add(c);
    p->dns_closer = c;
    dns_cache_close(&p->dns, on_pool_dns_closed);
}
