/* client.h — the client's two top structs, data only: the agent handle
 * (agent.c: the public ferry_agent_* calls, closing) and a request
 * (request.c: the public request calls and the request's state). Who calls
 * whom, never upward:
 *
 *   agent.c     ferry_agent_new/close/free/stats: builds the pool with the
 *     │         request layer's event tables, closes everything in order
 *   request.c   ferry_request/fetch/abort/...: wire bytes, request timeouts,
 *     │         retries, redirects, cookies, completion
 *   pool.c      origins, idle sockets, the queue, budgets, the kick
 *     │         ▲ pool_events (agent.c wires request.c's)
 *   conn.c      one socket
 *               ▲ conn_events (pool.c's), exchange_events (request.c's)
 *
 * Ownership: the agent owns its pool, the pool its origins, each origin its
 * sockets. A request is the caller's from ferry_request() until its
 * completion callback returns; meanwhile it is on at most one of: its
 * origin's queue (pe), a socket's in-flight list (x), the agent's backoff
 * list or its done list (link).
 */
#ifndef FERRY_CLIENT_H
#define FERRY_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "client/pool.h"
#include "core/closer.h"
#include "ferry.h"
#include "util/cookie.h"
#include "util/url.h"

typedef struct ferry_client_req client_req;

/* A parsed URL, shared by the requests made with the same URL string (a
 * load generator or a poller sends thousands): parsed and looked up once.
 * Refcounted; the agent keeps the last one used. */
typedef struct client_url {
    uint32_t refs;
    client_origin *origin;              /* no reference of its own (see request.c) */
    url_parts parts;                    /* slices of str */
    char host_hdr[URL_HOST_HEADER_MAX]; /* the Host value it gives */
    size_t host_hdr_len;
    size_t len;
    char str[];
} client_url;

struct ferry_agent {
    uv_loop_t *loop;
    ferry_agent_options opt;
    client_pool pool;

    /* the request layer's */
    list_link done;           /* requests whose completion is due (never inside a call) */
    list_link retry_wait;     /* requests in backoff, by deadline */
    uv_timer_t retry_timer;
    uint32_t live_requests;   /* not yet freed */
    uint64_t rng;             /* backoff jitter */
    bool rng_seeded;
    client_url *last_url;     /* the URL of the latest request, for the next one */
    client_req *free_reqs;    /* finished requests kept for reuse */
    uint32_t nfree_reqs;
    ferry_header *hdrs;       /* a streamed response's headers, for on_response */
    cookie_jar jar;
    bool have_jar;

    /* closing */
    bool closing, closing_abort, handles_closing, close_done;
    closer closer;
    ferry_agent_close_cb close_cb;
    void *close_data;

    ferry_agent_stats stats;  /* the request layer's counters (the rest are the pool's) */
};

enum req_state {
    RQ_NEW,       /* between attempts, or not yet queued */
    RQ_WAITING,   /* on its origin's queue */
    RQ_SENT,      /* on a socket */
    RQ_BACKOFF,   /* on agent.retry_wait */
    RQ_DONE,      /* completion decided, on agent.done or being delivered */
};

struct ferry_client_req {
    ferry_agent *agent;
    pool_entry pe;            /* its place in the pool */
    client_exchange x;        /* its passage over a socket */
    list_link link;           /* agent.done or agent.retry_wait */
    uint8_t state;            /* enum req_state; changed only in request.c */
    bool idempotent, fetch, reused, stale_retried, response_delivered;
    bool body_started, retry_pending;
    bool redirect_pending;    /* drain this 3xx, then follow redirect_to */
    bool body_dropped, creds_dropped; /* by a redirect, for every later hop */
    char *redirect_to;        /* resolved absolute URL (owned) */
    uint32_t redirects_left, nredirects;
    int redirect_status;
    ferry_request_options *saved; /* the options, copied, for rebuilding after a redirect
                                     (one block with its strings; owned; NULL if no
                                     redirects were allowed) */
    const char *method;       /* the method now: saved->method, or "GET" after a 303 */
    uint64_t retry_delay;
    uint64_t deadline_at;     /* loop time, with t_total */
    int final_status;
    uint8_t tls_reason;       /* a failed TLS verification's ferry_tls_verify_reason */
    uint32_t attempts;
    uint32_t retries_left;

    ferry_request_callbacks cb;
    ferry_fetch_cb fetch_cb;
    void *data;

    url_parts url;            /* slices of u->str */
    client_url *u;            /* one reference */
    char *wire;               /* request head (and in-memory body), built once, resent on retry */
    size_t wire_cap;
    client_req *next_free;    /* in the agent's cache */
    uint64_t stream_len;      /* declared length of a streamed body, or UINT64_MAX */
    uint64_t stream_sent;

    uint64_t t_headers, t_body, t_queue, t_total; /* resolved, ms */
    timeout_entry tmo;        /* the queue wait */
    timeout_entry t_deadline; /* total_timeout_ms */
    uint64_t retry_at;        /* loop time for the backoff */

    /* response */
    ferry_response res;
    ferry_header *hdrs;       /* fetch: res.headers, into head_copy (owned) */
    char *head_copy;          /* fetch: the response head's bytes */
    char *fetch_buf;          /* head copy + body, fetch only */
    size_t fetch_len, fetch_cap;
    uint64_t fetch_max;
};

/* ---- agent.c, for request.c ---- */

/* The TLS client configuration from the agent's options (at the first
 * https URL, or at ferry_agent_new when certificates were given). */
int agent_tls_init(ferry_agent *a);

/* ---- request.c, for agent.c ---- */

extern const exchange_events request_exchange_events;
void request_on_sending(pool_entry *e, client_conn *c, bool reused);
void request_on_failed(pool_entry *e, int err);
void request_on_origin_freed(ferry_agent *a, client_origin *o);
/* Deliver the completions due (the kick). */
void request_run_done(ferry_agent *a);
/* The agent is aborting: requests in backoff end with FERRY_ECLOSING. */
void request_abort_backoff(ferry_agent *a);
/* Free what the request layer caches (the agent is freed). */
void request_cache_clear(ferry_agent *a);

#endif /* FERRY_CLIENT_H */
