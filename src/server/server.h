/* server.h — the server's own struct, shared by the files of src/server/.
 * Data only. Who calls whom (never upward):
 *
 *   server.c      the public server API: options, listening, the shutdown
 *        │        calls, signals, stats
 *        ├──> listener.c     listening sockets, the accept loop
 *        ├──> exchange.c     the req/res API the handler uses; the exchange cache
 *        │       │
 *        └──> server_conn.c  one connection's state machine
 *                │   ▲ conn_events (exchange.c's): requests, bodies, write
 *                │   │ progress, aborts reported upward
 *                ├──> response.c  status lines, header blocks, framing, ferry's own answers
 *                └──> conn_set (below)  counts what a close must wait for
 *
 * A connection reports to the server only through the conn_set's `changed`
 * callback, and to the exchange layer only through conn_events.
 */
#ifndef FERRY_SERVER_H
#define FERRY_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/closer.h"
#include "core/list.h"
#include "core/timeouts.h"
#include "core/transport.h"
#include "ferry.h"
#include "server/exchange.h"
#include "server/listener.h"
#include "server/proxy_proto.h"
#include "server/response.h"

/* What a close must wait for: every connection gone and every exchange a
 * handler held released — after a destroy, only those the thread pool or a
 * running callback still uses. The connection and exchange code keep the counts;
 * `changed` (the server's) runs when a connection closed or an exchange was
 * released, so the server can finish a close. */
typedef struct conn_set {
    list_link conns;         /* every open connection (server_conn.link) */
    uint32_t n;              /* open connections */
    uint32_t nidle;          /* of which idle in keep-alive */
    uint32_t ex_outstanding; /* exchanges not yet released */
    list_link live_ex;       /* those exchanges (exchange.live) */
    void (*changed)(struct conn_set *set);
} conn_set;

/* The exchange layer's side of a connection (exchange.c implements it):
 * server_conn.c calls these and nothing else above it. */
typedef struct conn_events {
    /* An exchange for a new request (NULL: out of memory). */
    exchange *(*get)(ferry_server *s);
    /* The head is parsed: hand the request to the handler. */
    void (*request)(exchange *ex);
    /* Decoded body bytes for the consumer: buffered, or handed to the
     * handler's data callback. Returns 0, or FERRY_ENOMEM (buffering). */
    int (*body)(exchange *ex, const char *p, size_t n);
    /* The body is complete (0) or failed (< 0): tell the consumer once. */
    void (*body_end)(exchange *ex, int status);
    /* Output progressed: write callbacks whose bytes are out are due (they
     * run from the loop, never inside the call that wrote). Failures come
     * through detached. */
    void (*flushed)(exchange *ex);
    /* The connection let go of ex: err < 0, the response is lost (the
     * handler is told through its abort callback); 0, it went out whole. */
    void (*detached)(exchange *ex, int err);
} conn_events;

struct ferry_server {
    uv_loop_t *loop;
    ferry_server_options opt;
    ferry_request_cb on_request;
    void *data;

    listener **listeners;   /* nlisteners, each allocated alone (its handles must not move); owned */
    uint32_t nlisteners;
    bool started;           /* timers, lists and handles below are initialised */
    listener_owner lowner;  /* this server, as the listeners' owner */

    /* timeout lists, one per duration */
    timeout_list t_headers, t_request, t_keep_alive, t_idle, t_linger, t_handshake;
    ferry_tls_context *tls;   /* new connections speak TLS with it (a reference), or NULL */
    proxy_trust proxy_trust;  /* opt.proxy_trusted, parsed (owned); no rules: anyone */
    bool proxy_trust_set;

    transport_pool tpool;   /* the connections' read and write buffers */
    response_ctx rctx;      /* Date and Keep-Alive lines */
    conn_set set;
    const conn_events *exev;

    /* the exchange layer's (exchange.c) */
    uv_idle_t defer;        /* runs write callbacks a loop turn later, never re-entrantly */
    exchange *deferred;     /* exchanges with write callbacks due */
    exchange *free_ex;      /* cached exchanges (LIFO) */
    uint32_t free_ex_count;

    /* posts from other threads (ferry_server_post): a mutex-guarded FIFO and
     * the async handle that wakes the loop for it */
    uv_mutex_t mail_lock;
    uv_async_t mailbox;
    struct server_post *mail_head, *mail_tail;
    bool mail_open;         /* guarded by mail_lock: posts are accepted */

    /* shutdown */
    bool draining;          /* a close began (drain_delay_ms counts too) */
    bool handed_on;         /* a listener fd was handed out: another process accepts too */
    uv_timer_t drain_timer;
    uint64_t close_grace_ms; /* the grace the close after the drain gets */
    bool closing, destroyed, close_cb_fired, handles_closing;
    closer closer;          /* the server's own handles, at the end */
    ferry_server_close_cb close_cb;
    uv_timer_t grace_timer;
    uv_signal_t sig_term, sig_int;
    bool signals_on;
    int signals_seen;
    uint64_t signal_grace_ms;

    ferry_server_stats stats;
    void *group_slot;       /* group.c's: the loop of a ferry_group this server is */
};

/* server.c, for group.c: bind and listen on every address `host` stands for
 * (NULL: 127.0.0.1; port 0: one free port for all). ls has room for
 * SERVER_MAX_ADDRS; on success *nbound of them hold open sockets (the
 * caller's). */
#define SERVER_MAX_ADDRS 16
int server_bind_host(const char *host, int port, uint32_t backlog, bool reuse_port, listener *ls,
                     uint32_t *nbound);
/* The server is one loop of a group: the stats its loop publishes. */
void server_stats_add(ferry_server_stats *sum, const ferry_server_stats *x);

#endif /* FERRY_SERVER_H */
