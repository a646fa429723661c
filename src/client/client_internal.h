/* client_internal.h — what the client's three files share. Not public.
 *
 *   agent.c        the pool: origins, idle sockets (LIFO), the waiting queue,
 *                  socket budgets, timeout lists, DNS, closing, stats
 *   client_conn.c  one socket to an origin: connect, write requests, parse
 *                  responses, deliver bodies, go idle or close
 *   client_req.c   one request: the public calls, its wire bytes, timeouts,
 *                  retries and completion
 *
 * Ownership in one paragraph: the agent owns its origins, and each origin
 * owns its sockets (client_conn). A request (ferry_client_req) is owned by
 * the caller's callbacks from ferry_request() until its completion callback
 * returns; meanwhile it is on exactly one of: the agent's start list, its
 * origin's wait queue, a connection's in-flight list, the retry list, or
 * none (resolving a name, or completing). A connection points at the
 * requests it carries; a request points at its connection while it is on it.
 */
#ifndef FERRY_CLIENT_INTERNAL_H
#define FERRY_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "util/cookie.h"
#include "util/dns.h"
#include "ferry.h"
#include "core/list.h"
#include "http1/parse.h"
#include "core/timeouts.h"
#include "core/transport.h"
#include "util/url.h"

typedef struct client_origin client_origin;
typedef struct client_url client_url;
typedef struct client_conn client_conn;
typedef struct ferry_client_req client_req;

/* One timeout list per distinct duration, made on first use: request
 * timeouts are per-request options, but a program uses a handful of values. */
typedef struct tlist_node {
    struct tlist_node *next;
    bool weak;
    timeout_list list;
} tlist_node;

struct ferry_agent {
    uv_loop_t *loop;
    ferry_agent_options opt;
    uint32_t max_total;       /* resolved max_total_sockets */

    list_link origins;        /* client_origin.link */
    uint32_t norigins;
    uint32_t total_sockets;   /* open or connecting, all origins */
    uint32_t nqueued;         /* requests on origins' wait queues */
    list_link starving;       /* origins with waiters blocked by the total budget */

    list_link pump;           /* origins whose queue needs a look (client_origin.kick_link) */
    list_link done;           /* requests whose completion is due (never inside a call) */
    list_link resume;         /* sockets to process again (client_conn.resume_link) */
    uv_idle_t kick;           /* runs the three lists: idle keeps poll from blocking, */
    uv_check_t kick_check;    /* check runs them right after this turn's I/O */
    bool kick_on;
    uint32_t live_requests;   /* not yet freed */
    uint64_t rng;             /* backoff jitter */
    bool rng_seeded;

    list_link retry_wait;     /* requests in backoff, by deadline */
    uv_timer_t retry_timer;

    client_url *last_url;     /* the URL of the latest request, for the next one */
    client_req *free_reqs;    /* finished requests kept for reuse (client_req.c) */
    void *free_fields;        /* parse_field arrays kept for reuse (agent_fields_get) */
    uint32_t nfree_fields;
    ferry_header *hdrs;       /* a streamed response's headers, for on_response */
    uint32_t nfree_reqs;
    tlist_node *tlists;
    buf_pool rbufs;
    dns_cache dns;
    cookie_jar jar;
    bool have_jar;

    /* closing */
    bool closing, closing_abort, handles_closing, close_done, close_cb_fired;
    int open_handles;
    ferry_agent_close_cb close_cb;
    void *close_data;

    ferry_agent_stats stats;
};

/* A parsed URL, shared by the requests made with the same URL string (a
 * load generator or a poller sends thousands): parsed and looked up once.
 * Refcounted; the agent keeps the last one used. */
struct client_url {
    uint32_t refs;
    client_origin *origin; /* one reference */
    url_parts parts;       /* slices of str */
    char host_hdr[URL_HOST_HEADER_MAX]; /* the Host value it gives */
    size_t host_hdr_len;
    size_t len;
    char str[];
};

struct client_origin {
    list_link link;          /* agent.origins */
    list_link starving_link; /* agent.starving while waiters are blocked by the total */
    list_link kick_link;     /* agent.pump */
    ferry_agent *agent;
    uint32_t refs;           /* requests and sockets referring to it */
    uint32_t nconnecting;    /* sockets resolving or connecting */
    list_link idle;          /* idle client_conn, most recently used last (LIFO) */
    list_link busy;          /* connecting or carrying requests */
    list_link waiting;       /* queued requests, FIFO */
    uint32_t nidle, nbusy, nwaiting;
    uint64_t opened, reused, requests;
    /* where to connect */
    bool literal;            /* the host is an IP literal: addr is it */
    struct sockaddr_storage addr;
    char *host;              /* NUL-terminated, for DNS */
    uint16_t port;
    size_t key_len;
    char key[];              /* url_origin_key, NUL-terminated */
};

enum conn_state {
    CC_RESOLVING,  /* waiting for DNS (holds a budget slot) */
    CC_CONNECTING,
    CC_ACTIVE,     /* carrying requests */
    CC_IDLE,       /* in the pool */
    CC_CLOSED,     /* close issued */
};

struct client_conn {
    transport t;
    list_link link;           /* origin.idle or origin.busy */
    client_origin *origin;
    ferry_agent *agent;
    uint8_t state;
    bool peer_eof;
    bool no_reuse;            /* the server said close, or a limit: close when done */
    timeout_entry tmo;        /* connect (per attempt) or idle */
    uv_connect_t connect_req;
    dns_query dnsq;
    dns_addrs *addrs;         /* being tried, one reference (NULL: `single`) */
    struct sockaddr_storage single; /* an IP literal's address */
    uint32_t next_addr;
    int last_err;
    bool reconnecting;        /* handle closing to try the next address */
    bool no_reuse_after;      /* close once the current response ends */
    bool force_reset;
    client_req *driver;       /* the queued request this connect is for, if any */
    list_link resume_link;    /* agent.resume */

    list_link inflight;       /* requests written or being written, in order */
    uint32_t ninflight;
    uint32_t served;          /* responses completed on this socket */
    uint64_t idle_ms;         /* how long this socket may stay idle */

    buf_block *rbuf;
    transport_out out;

    /* the response being read (for the first in-flight request) */
    parse_head head;
    bool head_done;
    uint8_t body_kind;
    uint64_t body_left;
    parse_chunked_state chunk;
    parse_field *fields;      /* borrowed from the agent while a head is parsed */
};

enum { CB_NONE, CB_LENGTH, CB_CHUNKED, CB_UNTIL_CLOSE };

enum req_state {
    RQ_NEW,       /* on agent.start */
    RQ_RESOLVING, /* connection for it resolving/connecting (still on origin.waiting) */
    RQ_WAITING,   /* on origin.waiting */
    RQ_SENT,      /* on a connection's in-flight list */
    RQ_BACKOFF,   /* on agent.retry_wait */
    RQ_DONE,      /* completion decided, on agent.done or being delivered */
};

typedef struct client_waiter {
    uint64_t at;
    ferry_client_write_cb cb;
    void *data;
} client_waiter;

struct ferry_client_req {
    ferry_agent *agent;
    client_origin *origin;
    client_conn *conn;
    list_link link;           /* whichever list the state says */
    uint8_t state;
    bool idempotent, is_head, stream_body, chunked_body, body_ended, body_started;
    bool fetch, paused, aborted, got_byte, reused, stale_retried, response_delivered;
    bool expect_continue, continue_waiting, force_new, retry_pending;
    bool close_after;         /* the caller sent Connection: close */
    bool redirect_pending;    /* drain this 3xx, then follow redirect_to */
    char *redirect_to;        /* resolved absolute URL (owned) */
    uint32_t redirects_left, nredirects;
    int redirect_status;
    ferry_request_options *saved; /* the options, copied, for rebuilding after a redirect
                                     (one block with its strings; owned; NULL if no
                                     redirects were allowed) */
    const char *method;       /* the method now: saved->method, or "GET" after a 303 */
    bool body_dropped, creds_dropped; /* by a redirect, for every later hop */
    bool ghost;               /* a placeholder for a request that left its socket early */
    client_conn *driving;     /* a socket connecting on this request's behalf */
    uint64_t retry_delay;
    uint64_t deadline_at;     /* loop time, with t_total */
    timeout_entry t_continue; /* Expect: 100-continue wait */
    int final_status;
    uint32_t attempts;
    uint32_t retries_left;

    ferry_request_callbacks cb;
    ferry_fetch_cb fetch_cb;
    void *data;

    url_parts url;            /* slices of u->str */
    client_url *u;            /* one reference */
    char *wire;               /* request head (and in-memory body), built once, resent on retry */
    size_t wire_len, head_len, wire_cap;
    client_req *next_free;    /* in the agent's cache */
    uint64_t stream_len;      /* declared length of a streamed body, or UINT64_MAX */
    uint64_t stream_sent;

    uint64_t t_connect, t_headers, t_body, t_queue, t_total; /* resolved, ms */
    timeout_entry tmo;        /* queue / headers / body phase */
    timeout_entry t_deadline; /* total_timeout_ms */
    uint64_t retry_at;        /* loop time for the backoff */

    client_waiter *waiters;   /* streamed body write callbacks */
    size_t nwaiters, waiters_cap;
    uint64_t body_mark;       /* conn out.queued_total when the request's bytes end */

    /* response */
    ferry_response res;
    ferry_header *hdrs;       /* fetch: res.headers, into head_copy (owned) */
    char *head_copy;          /* fetch: the response head's bytes */
    char *fetch_buf;          /* head copy + body, fetch only */
    size_t fetch_len, fetch_cap;
    uint64_t fetch_max;
};

#define CONTINUE_WAIT_MS 1000 /* send the body anyway if the server says nothing */

/* agent.c */
timeout_list *agent_tlist(ferry_agent *a, uint64_t duration_ms, bool weak);
void agent_arm(ferry_agent *a, timeout_entry *e, uint64_t duration_ms, bool weak);
void agent_kick(ferry_agent *a);
client_origin *agent_origin_for(ferry_agent *a, const url_parts *u, int *err);
client_url *agent_url_get(ferry_agent *a, const char *s, int *err);
void agent_url_unref(client_url *u);
parse_field *agent_fields_get(ferry_agent *a);
void agent_fields_put(ferry_agent *a, parse_field *f);
void agent_origin_unref(client_origin *o);
void agent_enqueue(client_req *r, bool front);
void agent_unqueue(client_req *r);
uint32_t agent_queue_excess(const client_origin *o);
void agent_pump(client_origin *o);
void agent_conn_available(client_conn *c);
void agent_conn_freed(ferry_agent *a, client_origin *o);
void agent_schedule_retry(client_req *r, uint64_t delay_ms);
void agent_schedule_retry_at(client_req *r, uint64_t at);
void agent_enqueue_after(client_req *r, client_req *lead);
void agent_cancel_retry(client_req *r);
uint64_t agent_backoff_ms(ferry_agent *a, uint32_t retry_no);
void agent_maybe_close_done(ferry_agent *a);

/* client_conn.c */
client_conn *client_conn_new(client_origin *o, client_req *driver, int *err);
void client_conn_on_dns(dns_query *q, int status, dns_addrs *addrs);
bool client_conn_can_take(const client_conn *c, const client_req *r);
bool client_conn_check_idle(client_conn *c);
void client_conn_make_idle(client_conn *c);
void client_conn_send(client_conn *c, client_req *r);
void client_conn_send_body(client_conn *c, client_req *r);
void client_conn_write_body(client_conn *c, client_req *r, const void *buf, size_t len,
                            bool last);
void client_conn_flush(client_conn *c);
void client_conn_schedule(client_conn *c);
void client_conn_process(client_conn *c);
void client_conn_resume(client_conn *c);
void client_conn_detach(client_conn *c, client_req *r, int err);
void client_conn_close(client_conn *c, int err);
void client_conn_close_ex(client_conn *c, int err, bool all_collateral);

/* client_req.c */
/* How an attempt failed: on the socket after sending, or while connecting
 * (nothing was sent). (Requests pipelined behind a failure go through
 * client_req_replay instead.) */
enum { AF_SENT, AF_CONNECT };
void client_req_attempt_failed(client_req *r, int err, int how);
client_req *client_req_replay(client_req *r, client_req *lead);
client_req *client_req_ghost(const client_req *r); /* stands in for r on its socket */
void client_req_free_ghost(client_req *g);
void client_req_response_head(client_req *r, client_conn *c, const parse_head *h,
                              size_t head_len);
void client_req_body(client_req *r, const char *p, size_t n);
void client_req_message_end(client_req *r);
void client_req_complete(client_req *r, int status);
void client_req_deliver_done(client_req *r);
void client_req_body_ready(client_req *r);
void client_req_fire_waiters(client_req *r, uint64_t flushed);
void client_req_on_timeout(timeout_entry *e);
void client_req_on_deadline(timeout_entry *e);
void client_req_cache_clear(ferry_agent *a);

#endif /* FERRY_CLIENT_INTERNAL_H */
