/* conn.h — one client socket to an origin (conn.c): connect (DNS, address
 * fallback), write requests in order, read their responses in order, go idle,
 * close. The bottom of the client:
 *
 *   request.c  requests: wire bytes, timeouts, retries, completion
 *      │
 *   pool.c     the pool: origins, idle sockets, the queue, budgets
 *      │
 *   conn.c     one socket (this)
 *
 * A socket knows nothing of requests or pools. It carries client_exchanges
 * (one per request attempt, embedded in the request) and reports upward
 * through conn_events, which the pool implements (forwarding what concerns a
 * request to the request layer). The pool owns the pool_link, resume_link
 * and owner/driver fields; the socket never reads them.
 */
#ifndef FERRY_CLIENT_CONN_H
#define FERRY_CLIENT_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/list.h"
#include "core/timeouts.h"
#include "core/transport.h"
#include "core/waiters.h"
#include "http1/body.h"
#include "http1/parse.h"
#include "util/dns.h"

typedef struct client_conn client_conn;
typedef struct client_exchange client_exchange;
typedef struct conn_ctx conn_ctx;

/* Where a socket connects (owner: the pool's origin, which outlives its
 * sockets). */
typedef struct client_target {
    const char *host;             /* NUL-terminated, for DNS ("fe80::1%eth0" for a zone) */
    uint16_t port;
    bool literal;                 /* an IP literal: addr is it, no DNS */
    bool tls;                     /* https: the connect includes a TLS handshake */
    const char *tls_key;          /* its sessions' key in the session cache (the origin key) */
    struct sockaddr_storage addr;
} client_target;

/* One request attempt on a socket. The request embeds it and fills the
 * request side; the socket owns the rest while the exchange is on it. */
struct client_exchange {
    list_link link;               /* the socket's in-flight list, while on it */
    client_conn *conn;            /* the socket it is on, or NULL */
    /* the request's, set before conn_send */
    const char *wire;             /* head, then the in-memory body */
    size_t wire_len, head_len;
    uint64_t t_headers, t_body;   /* this attempt's timeouts, ms (0: none) */
    bool is_head;                 /* a HEAD request: no body in the response */
    bool expect_continue;         /* send the body after 100 (or a second) */
    bool stream_body;             /* the body comes through conn_write_body */
    bool chunked_body;            /* ...of unknown length: chunked */
    bool pipelinable;             /* idempotent, in-memory body: may go behind another */
    bool close_after;             /* Connection: close: the socket ends with it */
    bool paused;                  /* the reader paused the response body */
    /* the socket's */
    bool body_ended;              /* every request byte is queued */
    bool got_byte;                /* a response byte arrived */
    bool continue_waiting;        /* head sent, body held for 100 */
    bool ghost;                   /* a stand-in for a request that left early */
    bool sent_whole;              /* when it failed: every request byte had reached the
                                     kernel (the server may have it all) */
    uint64_t end_mark;            /* the socket's queued_total at the request's last byte */
    timeout_entry tmo;            /* headers, then body inactivity */
    timeout_entry t_continue;     /* Expect: 100-continue wait */
    write_waiters waiters;        /* streamed body write callbacks (cast to the caller's type) */
};

/* What a socket tells the pool about itself. */
typedef struct conn_events {
    /* connected: it can carry requests */
    void (*ready)(client_conn *c);
    /* every response it carried has ended: reuse it, park it or close it */
    void (*available)(client_conn *c);
    /* it is closing (its state is CC_CLOSED now, prev_state what it was;
     * err 0 clean, < 0 the failure): leave the pool's lists. Its exchanges
     * are reported next. */
    void (*closing)(client_conn *c, int err, uint8_t prev_state);
    /* its socket has closed: its memory goes when this returns */
    void (*freed)(client_conn *c);
    /* run conn_process from the loop soon (write callbacks due, a resumed
     * body, a close to finish) */
    void (*schedule)(client_conn *c);
} conn_events;

/* What a socket tells the request layer about the exchanges it carries
 * (the pool passes this table down from the layer above it). The events
 * about responses concern the exchange at the front. */
typedef struct exchange_events {
    /* a final response head: fields point into base (valid until this returns) */
    void (*head)(client_exchange *x, const parse_head *h, const char *base, size_t head_len);
    void (*body)(client_exchange *x, const char *p, size_t n);
    /* the response ended; x is off the socket */
    void (*end)(client_exchange *x);
    /* x was at the front when the socket failed with err; x is off the
     * socket. Returns x, as the lead for those replayed behind it. */
    client_exchange *(*failed)(client_exchange *x, int err);
    /* x never got an answer (it was behind one that failed): send it again,
     * right behind lead (NULL: at the front). Returns the next lead. */
    client_exchange *(*replay)(client_exchange *x, client_exchange *lead);
    /* a streamed body may be written now (once per attempt) */
    void (*body_ready)(client_exchange *x);
    /* write callbacks whose bytes are out (flushed_total) are due */
    void (*writes_due)(client_exchange *x, uint64_t flushed);
    /* no progress: FERRY_EHEADERSTIMEOUT or FERRY_EBODYTIMEOUT */
    void (*timeout)(client_exchange *x, int err);
} exchange_events;

typedef struct conn_stats {
    uint64_t stale_detected;  /* idle sockets found closed by the server */
    uint64_t timeouts_connect;
    uint64_t timeouts_headers; /* of ghosts: the rest are the requests' */
    uint64_t idle_closed;     /* idle sockets whose idle timeout fired */
    uint64_t connections_opened;
    uint64_t tls_handshakes, tls_resumed;
} conn_stats;

/* Shared by the sockets of one pool (owner: the pool). */
struct conn_ctx {
    uv_loop_t *loop;
    const conn_events *ev;        /* the pool's */
    const exchange_events *xev;   /* the request layer's */
    transport_pool tpool;
    timeout_set *timers;          /* the pool's */
    dns_cache *dns;               /* the pool's */
    struct tls_client_config *tls;       /* https: the agent's trust and certificates */
    struct tls_session_cache *sessions;  /* https: sessions to resume, per origin */
    void *free_fields;            /* parse_field arrays kept for reuse */
    uint32_t nfree_fields;
    uint32_t max_header_bytes, max_headers;
    uint64_t keep_alive_margin_ms;
    conn_stats stats;
};

enum conn_state {
    CC_RESOLVING,  /* waiting for DNS */
    CC_CONNECTING,
    CC_ACTIVE,     /* carrying requests (or connected, about to) */
    CC_IDLE,       /* in the pool */
    CC_CLOSED,     /* close issued */
};

struct client_conn {
    transport t;
    conn_ctx *ctx;
    const client_target *target;
    /* the pool's */
    void *owner;              /* its origin */
    void *driver;             /* the queued request this connect is for */
    list_link pool_link;      /* the origin's idle or busy list */
    list_link resume_link;    /* the pool's list of sockets to process */
    /* the socket's */
    uint8_t state;            /* enum conn_state */
    bool peer_eof;
    bool no_reuse;            /* the server said close, or a limit: close when done */
    bool no_reuse_after;      /* close once the current response ends */
    bool force_reset;
    bool reconnecting;        /* closing to try the next address */
    bool peer_truncated;      /* TLS: the FIN came without a close_notify */
    uint8_t tls_reason;       /* TLS: why the handshake's certificate check failed */
    timeout_entry tmo;        /* connect (per attempt) or idle */
    uint64_t connect_ms;      /* the connect timeout */
    uint64_t idle_ms;         /* how long this socket may stay idle */
    dns_query dnsq;
    dns_addrs *addrs;         /* being tried, one reference (NULL: the literal) */
    uint32_t next_addr;
    int last_err;
    list_link inflight;       /* exchanges written or being written, in order */
    uint32_t ninflight;
    uint32_t served;          /* responses completed on this socket */
    /* the response being read (for the first exchange in flight) */
    parse_head head;
    bool head_done;
    body_decoder body;
    parse_field *fields;      /* borrowed while a head is parsed */
};

/* Ready ctx (allocates nothing) / free what it caches. */
int conn_ctx_init(conn_ctx *ctx, uv_loop_t *loop, const conn_events *ev,
                  const exchange_events *xev, timeout_set *timers, dns_cache *dns,
                  uint32_t max_header_bytes, uint32_t max_headers, uint64_t keep_alive_margin_ms);
void conn_ctx_free(conn_ctx *ctx);

/* A socket to target (NULL and *err without memory): nothing happens until
 * conn_start, so the pool can take it into its lists first. connect_ms
 * bounds resolving plus connecting; idle_ms 0: never pooled. */
client_conn *conn_new(conn_ctx *ctx, const client_target *target, void *owner,
                      uint64_t connect_ms, uint64_t idle_ms, int *err);
/* Resolve and connect: ev->ready reports the outcome, or ev->closing a
 * failure (which may come inside this call). */
void conn_start(client_conn *c);

/* Before reuse: an idle socket the server closed (FIN or RST pending, or
 * bytes it should never have sent) is closed here; returns whether c is
 * fit to carry a request. */
bool conn_check_idle(conn_ctx *ctx, client_conn *c);
/* Park c: its idle timer runs, it no longer keeps the loop alive, it keeps
 * reading (a close from the server closes it at once). */
void conn_make_idle(client_conn *c);
/* Whether c can carry x behind what it carries (pipelining, at most
 * `pipelining` in flight, and `max_served` responses in all; 0: no limit). */
bool conn_can_take(const client_conn *c, const client_exchange *x, uint32_t pipelining,
                   uint32_t max_served);
/* Put x on c: its bytes go out, its response is read in turn. */
void conn_send(client_conn *c, client_exchange *x);
/* Queue a piece of x's streamed body (chunk-framed when its length is
 * unknown); last: it ends after this. Returns 0 or FERRY_ENOMEM (the socket
 * then closes). */
int conn_write_body(client_conn *c, client_exchange *x, const void *buf, size_t len, bool last);
/* Restart x's response clock (an upload is progress). */
void conn_touch(client_conn *c, client_exchange *x);
void conn_flush(client_conn *c);
/* Work due from the loop: write callbacks, a resumed body. */
void conn_process(client_conn *c);
/* A paused reader resumed: process c from the loop. */
void conn_resume(client_conn *c);
/* x leaves c before its response is complete (abort, timeout, limit). */
void conn_detach(client_conn *c, client_exchange *x, int err);
/* Close. err 0: clean; < 0: failed (a reset unless the server closed). The
 * front exchange fails with err, those behind are replayed; with
 * all_collateral the front one is replayed too. */
void conn_close(client_conn *c, int err);
void conn_close_ex(client_conn *c, int err, bool all_collateral);

static inline bool conn_reusable(const client_conn *c)
{
    return !c->no_reuse && !c->peer_eof;
}

#endif /* FERRY_CLIENT_CONN_H */
