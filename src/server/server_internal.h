/* server_internal.h — what server.c (listening, shutdown, stats) and
 * server_conn.c (one connection's state machine) share. Not public.
 *
 * Ownership in one paragraph: the server owns its connections (a list) and
 * its pools; a connection owns its socket handle and, while busy, a read
 * buffer and an exchange (the request/response pair the handler sees). An
 * exchange outlives its connection when the handler still holds it (the
 * client went away mid-request): it is released when both the connection is
 * done with it and the handler has ended the response.
 */
#ifndef FERRY_SERVER_INTERNAL_H
#define FERRY_SERVER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "ferry.h"
#include "http1/parse.h"
#include "core/list.h"
#include "core/timeouts.h"

typedef struct server_conn server_conn;
typedef struct ferry_req exchange; /* a request and its response */

struct ferry_server {
    uv_loop_t *loop;
    ferry_server_options opt;
    ferry_request_cb on_request;
    void *data;

    /* listening: our own socket watched by a uv_poll, so accepting can be
     * paused for real (EMFILE, max_connections) while clients wait in the
     * backlog; libuv's uv_listen would accept-and-drop on EMFILE instead. */
    uv_os_sock_t listen_fd;
    bool listen_is_pipe;
    bool listening;     /* poll handle initialised */
    bool accept_paused; /* poll stopped */
    uv_poll_t listen_poll;
    uv_timer_t accept_retry; /* EMFILE back-off */
    int port;

    /* timeout lists, one per duration */
    timeout_list t_headers, t_request, t_keep_alive, t_idle, t_linger;

    uv_idle_t defer;       /* runs write callbacks a loop turn later, never re-entrantly */
    exchange *deferred;    /* exchanges with write callbacks due */
    buf_pool rbufs;        /* read buffers for busy connections */
    char discard[4096];    /* where a lingering connection's bytes go */
    exchange *free_ex;     /* cached exchanges (LIFO) */
    uint32_t free_ex_count;
    uint32_t ex_outstanding; /* exchanges not yet released */

    list_link conns;       /* every open connection */
    uint32_t nconns;
    uint32_t nidle;

    /* the Date header, formatted once a second */
    char date_line[48];    /* "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n", once a second */
    int64_t date_sec;
    char ka_line[48];      /* "Keep-Alive: timeout=5\r\n", or empty */
    uint8_t ka_line_len;

    /* shutdown */
    bool closing, destroyed, close_cb_fired, handles_closing;
    int open_handles;      /* our handles still to be closed at the end */
    ferry_server_close_cb close_cb;
    uv_timer_t grace_timer;
    bool grace_armed;
    uv_signal_t sig_term, sig_int;
    bool signals_on;
    int signals_seen;
    uint64_t signal_grace_ms;

    ferry_server_stats stats;
};

/* server.c */
void server_conn_closed(ferry_server *s); /* a connection's handle has closed */
void server_exchange_released(ferry_server *s);
#define SERVER_DATE_LINE_LEN 37
const char *server_date_line(ferry_server *s); /* "Date: ...GMT\r\n", SERVER_DATE_LINE_LEN bytes */

/* server_conn.c */
int server_conn_accept(ferry_server *s, uv_os_sock_t fd, bool is_pipe);
bool server_conn_is_idle(const server_conn *c);
/* Close an idle (or not-yet-requested) connection gracefully: read what is
 * already in the kernel first and answer a complete request with
 * Connection: close (the idle-close race), else FIN and linger. */
void server_conn_close_idle(server_conn *c);
/* Server is closing: finish the current exchange with Connection: close. */
void server_conn_begin_shutdown(server_conn *c);
void server_conn_destroy(server_conn *c);
server_conn *server_conn_from_link(list_link *l);
void exchange_cache_clear(ferry_server *s);
void server_on_defer(uv_idle_t *h);

#endif /* FERRY_SERVER_INTERNAL_H */
