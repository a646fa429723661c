/* server_conn.h — one server connection: its state machine over a
 * transport. Called by server.c (accept, the shutdown calls) and exchange.c
 * (the handler's writes and body reads); it reports upward only through
 * conn_events (to exchange.c) and the conn_set (to server.c). */
#ifndef FERRY_SERVER_CONN_H
#define FERRY_SERVER_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/list.h"
#include "core/timeouts.h"
#include "core/transport.h"
#include "server/server.h"

enum conn_state {
    C_NEW,      /* accepted, no byte yet */
    C_HEAD,     /* reading a request head */
    C_BUSY,     /* the handler has the request */
    C_FLUSHING, /* response ended, body consumed; waiting to write it all */
    C_IDLE,     /* keep-alive, nothing in progress */
    C_SHUTTING, /* will send FIN once the output is written */
    C_CLOSING,  /* FIN sent; reading and discarding until the peer's FIN */
    C_CLOSED,   /* transport_close issued */
};

struct server_conn {
    transport t;            /* the socket; first, so container_of is free */
    ferry_server *server;
    list_link link;         /* server->set.conns */
    timeout_entry tmo;      /* headers, idle, keep-alive or linger: see server_conn.c */
    exchange *ex;           /* the request in progress, if any */
    uint32_t requests;      /* heads parsed on this connection */
    uint8_t state;          /* enum conn_state; changed only by conn_set_state */
    bool peer_eof;          /* the client sent its FIN */
    bool close_after;       /* close once the current response is out */
    bool in_process;        /* inside conn_process: do not re-enter */
    bool proxy_wait;        /* the PROXY header must come first */
    bool proxy_tls;         /* ...and TLS after it */
    struct sockaddr_storage *proxy_peer; /* the client the header named (owned), or NULL */
};

/* The request's peer: the PROXY header's client, else the socket's. */
int server_conn_peer(server_conn *c, struct sockaddr_storage *addr);

/* ---- for server.c ---- */

/* The connections' transport events (the server's transport pool takes them). */
extern const transport_events server_conn_transport_events;

/* A connection over a transport that open() sets up in t (with the
 * server's pool and loop; on failure nothing may be left open). open is
 * called with t NULL when there is no memory for the connection, to release
 * what arg holds. For plain sockets server_conn_accept; TLS and tests' fake
 * transports use it directly. */
typedef int (*server_transport_open)(transport *t, transport_pool *p, uv_loop_t *loop, void *arg);
int server_conn_open(ferry_server *s, server_transport_open open, void *arg);
/* Take an accepted socket (closed on failure). */
int server_conn_accept(ferry_server *s, uv_os_sock_t fd, bool is_pipe);
/* No request in progress: idle in keep-alive, or no complete head yet. */
bool server_conn_is_idle(const server_conn *c);
/* Idle in keep-alive: it served a response and waits for the next request. */
bool server_conn_is_kept_alive(const server_conn *c);
/* Close an idle (or not-yet-requested) connection gracefully: read what is
 * already in the kernel first and answer a complete request with
 * Connection: close (the idle-close race), else FIN. */
void server_conn_close_idle(server_conn *c);
/* The server is closing: finish the current exchange with Connection: close. */
void server_conn_begin_shutdown(server_conn *c);
/* Close now with a RST; the handler's response is lost (err). */
void server_conn_destroy(server_conn *c, int err);
server_conn *server_conn_from_link(list_link *l);

/* ---- for exchange.c ---- */

/* Run the state machine unless it is running already (then it continues
 * when the handler returns). */
void server_conn_kick(server_conn *c);
/* Hand queued output to the transport; write callbacks due are deferred. */
void server_conn_flush(server_conn *c);
/* Read or stop reading as the buffer, the body and the state say. */
void server_conn_update_reading(server_conn *c);
/* Frame and queue ex's response head (keep-alive decided here). */
int server_conn_queue_head(server_conn *c, exchange *ex, uint64_t total, const char *ctype,
                           size_t ctype_len);
/* ferry answers in the handler's place (413 for a declared body too big). */
void server_conn_error_response(server_conn *c, int status, int err);

static inline bool server_conn_closed(const server_conn *c)
{
    return c->state == C_CLOSED;
}

#endif /* FERRY_SERVER_CONN_H */
