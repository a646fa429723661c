/* pool.h — the client's connection pool (pool.c): one origin per (scheme,
 * host, port), each with its idle sockets (LIFO), busy sockets and a FIFO
 * queue of requests waiting for a socket; socket budgets per origin and in
 * total; the loop kick that runs the pool's work. Below the request layer
 * (request.c), above the sockets (conn.c). Only this file changes the pool's
 * counters; it changes no request state: it reports to the layer above
 * through pool_events.
 */
#ifndef FERRY_CLIENT_POOL_H
#define FERRY_CLIENT_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "client/conn.h"
#include "core/closer.h"
#include "core/list.h"
#include "core/timeouts.h"
#include "tls/tls_context.h"
#include "tls/tls_session_cache.h"
#include "util/dns.h"
#include "util/url.h"

typedef struct client_pool client_pool;
typedef struct client_origin client_origin;
typedef struct pool_entry pool_entry;

/* A request's place in the pool, embedded in the request. */
struct pool_entry {
    list_link link;           /* its origin's queue, while waiting */
    client_origin *origin;    /* one reference, the request's */
    client_exchange *x;       /* what the socket will carry */
    client_conn *driving;     /* a socket connecting on its behalf */
    uint64_t connect_ms;      /* for a socket opened for it */
    bool queued;
    bool force_new;           /* it must have a fresh socket (the keep-alive-race replay) */
    uint8_t tls_reason;       /* with failed(FERRY_ETLSVERIFY): ferry_tls_verify_reason */
};

/* What the pool tells the layer above. */
typedef struct pool_events {
    /* e got socket c and is about to go on it (reused: c served before) */
    void (*sending)(pool_entry *e, client_conn *c, bool reused);
    /* e left the queue without a socket: the connect made for it failed
     * (err), no socket could be made, or the pool is aborting */
    void (*failed)(pool_entry *e, int err);
    /* the kick runs: work of the layer above first (completions) ... */
    void (*run_due)(client_pool *p);
    /* ... and when the pool's own is done */
    void (*settled)(client_pool *p);
    /* an origin nothing refers to any more is about to be freed */
    void (*origin_freed)(client_pool *p, client_origin *o);
} pool_events;

struct client_origin {
    list_link link;           /* pool.origins */
    list_link starving_link;  /* pool.starving while waiters are blocked by the total */
    list_link kick_link;      /* pool.pump */
    client_pool *pool;
    uint32_t refs;            /* requests and sockets referring to it */
    uint32_t nconnecting;     /* sockets resolving or connecting */
    list_link idle;           /* idle client_conn, most recently used last (LIFO) */
    list_link busy;           /* connecting or carrying requests */
    list_link waiting;        /* queued pool_entry, FIFO */
    uint32_t nidle, nbusy, nwaiting;
    uint64_t opened, reused, requests;
    client_target target;
    char *host;               /* NUL-terminated, for DNS (target.host) */
    size_t key_len;
    char key[];               /* url_origin_key, NUL-terminated */
};

typedef struct pool_limits {
    uint32_t max_sockets_per_origin, max_total_sockets, max_idle_per_origin;
    uint32_t max_requests_per_socket, pipelining;
    uint64_t idle_timeout_ms;
} pool_limits;

struct client_pool {
    uv_loop_t *loop;
    const pool_events *ev;
    pool_limits lim;
    conn_ctx cctx;            /* the sockets' shared context */
    timeout_set timers;       /* every timeout of the client, by duration */
    dns_cache dns;
    tls_client_config tls;    /* https: made at the first https origin, or at init */
    bool tls_ready;
    tls_session_cache sessions; /* https: sessions to resume, per origin */
    list_link origins;        /* client_origin.link, most recently used first */
    uint32_t norigins;
    uint32_t total_sockets;   /* open or connecting, all origins */
    uint32_t nqueued;         /* entries on the origins' queues */
    list_link starving;       /* origins with waiters blocked by the total budget */
    list_link pump;           /* origins whose queue needs a look */
    list_link resume;         /* sockets to process (client_conn.resume_link) */
    uv_idle_t kick;           /* runs the lists: idle keeps poll from blocking, */
    uv_check_t kick_check;    /* check runs them right after this turn's I/O */
    bool kick_on, closing, aborting, handles_closed;
    closer *dns_closer;       /* while the DNS cache closes */
    uint64_t sockets_reused;  /* stats */
    uint64_t idle_closed;     /* idle sockets the pool retired (limits, stealing) */
    /* Out of descriptors (EMFILE on a connect): the budget is what was open
     * then, until fd_restore expires (POOL_FD_RESTORE_MS). */
    bool fd_capped;
    uint32_t fd_cap;
    timeout_entry fd_restore;
    uint64_t emfile_cuts;     /* stats: times that happened */
};

#define POOL_FD_RESTORE_MS 1000

int pool_init(client_pool *p, uv_loop_t *loop, const pool_events *ev,
              const exchange_events *xev, const pool_limits *lim, uint32_t max_header_bytes,
              uint32_t max_headers, uint64_t keep_alive_margin_ms, uint64_t dns_ttl_ms,
              uint32_t tls_sessions);

/* Close the pool's handles through c (no socket may be left). */
void pool_close_handles(client_pool *p, closer *c);
void pool_free(client_pool *p);

/* Run the pool's work from the loop soon. */
void pool_kick(client_pool *p);

/* The origin of u, made on first use; the caller gets a reference. */
client_origin *pool_origin_for(client_pool *p, const url_parts *u, int *err);
static inline void pool_origin_ref(client_origin *o)
{
    o->refs++;
}
void pool_origin_unref(client_origin *o);
/* The origin for a URL the pool knows (NULL: none). */
client_origin *pool_origin_find(const client_pool *p, const char *key, size_t key_len);

/* Queue e on its origin (at the tail, or the front when it is being retried
 * after waiting its turn once already), or right behind lead. */
void pool_enqueue(pool_entry *e, bool front);
void pool_enqueue_after(pool_entry *e, pool_entry *lead);
/* e leaves its origin's queue; a socket connecting only for it closes. */
void pool_unqueue(pool_entry *e);
void pool_cancel(pool_entry *e);
/* How many entries would have to wait if one more came for o now. */
uint32_t pool_queue_excess(const client_origin *o);

/* Closing: no socket is parked any more and the idle ones close now; with
 * abort, queued entries fail with err and busy sockets close with it. */
void pool_close(client_pool *p, bool abort, int err);

#endif /* FERRY_CLIENT_POOL_H */
