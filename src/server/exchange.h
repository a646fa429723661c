/* exchange.h — one request and its response (the "exchange"): the struct the
 * connection (server_conn.c) parses into and frames, the response writer
 * (response.c) writes from, and the public req/res API (exchange.c) lends to
 * the handler. Data only: who does what is in those three files.
 *
 * Ownership: an exchange comes from the server's cache (exchange_get) at a
 * request's first byte and belongs to its connection and, once the head is
 * parsed, to the handler too. It outlives its connection when the handler
 * still holds it (the client went away mid-request) and goes back to the
 * cache when both let go, no write is in flight, no offloaded work is
 * pending and no callback is running (exchange_release). */
#ifndef FERRY_EXCHANGE_H
#define FERRY_EXCHANGE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/list.h"
#include "core/timeouts.h"
#include "core/waiters.h"
#include "ferry.h"
#include "http1/body.h"
#include "http1/parse.h"

typedef struct server_conn server_conn;
typedef struct ferry_req exchange;

/* how the handler takes the request body */
enum { MODE_UNREAD, MODE_BUFFER, MODE_STREAM, MODE_DRAIN };

/* response flags */
enum {
    RF_HAS_CL = 1 << 0,     /* the handler set Content-Length */
    RF_HAS_DATE = 1 << 1,   /* the handler set Date */
    RF_CONN_CLOSE = 1 << 2, /* the handler set Connection: close */
    RF_HEAD_SENT = 1 << 3,  /* the status line and headers are queued */
    RF_CHUNKED = 1 << 4,    /* body goes out chunked */
    RF_NO_BODY = 1 << 5,    /* HEAD, 1xx, 204, 304: body bytes are dropped */
    RF_TAKEN = 1 << 6,      /* ferry answered (error) in the handler's place */
    RF_CLOSE_DELIM = 1 << 7 /* HTTP/1.0 stream: the body ends when we close */
};

struct ferry_res {
    struct ferry_req *req;
};

struct ferry_req {
    struct ferry_res res;
    ferry_server *server; /* NULL: an orphan the server was freed under (ferry_server_free) */
    server_conn *conn;  /* NULL once the connection let go */
    list_link live;     /* on the server's set.live_ex until released */
    exchange *next_free;
    bool handler_done;  /* the response was ended (or no handler has it yet) */
    bool conn_done;     /* the connection let go */
    bool offloaded;     /* work is on the thread pool */
    bool called;        /* the handler was called */
    bool deferred;      /* on the server's list of write callbacks due */
    bool end_pending;   /* the body was complete before the handler asked for it */
    uint32_t holds;     /* callbacks into the user running: no release meanwhile */
    int taken_err;      /* why ferry answered in the handler's place */
    exchange *defer_next;
    ferry_abort_cb abort_cb;
    void *abort_data;

    /* request */
    parse_head head;
    uint32_t head_len;
    char *head_copy;    /* the head's bytes once the connection's buffer went (owned) */
    uint8_t body_mode;  /* MODE_* */
    bool body_done, body_paused, continue_sent, body_failed;
    body_decoder body;
    uint64_t body_seen; /* decoded bytes so far */
    uint64_t body_max;  /* MODE_BUFFER's limit */
    char *body_buf;     /* MODE_BUFFER: the body so far (owned) */
    size_t body_len, body_cap;
    ferry_body_cb body_cb;
    ferry_data_cb data_cb;
    void *cb_data;
    timeout_entry t_request;

    /* response */
    int status;
    uint8_t rflags;     /* RF_* */
    bool keep_alive;    /* decided when the head is queued */
    char *hdrs;         /* the handler's header lines, "Name: value\r\n"... (owned) */
    size_t hdrs_len, hdrs_cap;
    uint64_t res_cl, res_sent;
    write_waiters waiters; /* ferry_res_write callbacks */

    /* offload */
    uv_work_t work;
    ferry_work_cb work_cb;
    ferry_after_work_cb after_cb;
    void *work_data;

    parse_field fields[]; /* server->opt.max_headers entries */
};

/* exchange.c, for server.c: the events the connections report through, and
 * freeing the cache when the server goes. */
typedef struct conn_events conn_events;
const conn_events *exchange_events(void);
void exchange_cache_clear(ferry_server *s);
/* For a close: does an exchange still need the server? Before a destroy,
 * any unreleased one; after, only those with work on the thread pool or a
 * callback running — a response the handler merely holds does not. */
bool exchange_any_pending(ferry_server *s);
/* ferry_server_free: the responses handlers still hold become orphans that
 * free themselves when ended. */
void exchange_orphan_all(ferry_server *s);
/* The connection's read buffer is going while the handler still has the
 * request: keep the head's bytes (the first head_len of buf). */
void exchange_keep_head(exchange *ex, const char *buf);

/* Ready ex for the next request on its connection, keeping its buffers and
 * any write callbacks still waiting for the previous response's bytes. */
static inline void exchange_reset(exchange *ex)
{
    timeout_disarm(&ex->t_request);
    parse_head_init(&ex->head, ex->fields);
    ex->head_len = 0;
    ex->handler_done = true; /* until a handler has it */
    ex->called = ex->end_pending = false;
    ex->body.kind = BODY_NONE;
    ex->body_mode = MODE_UNREAD;
    ex->body_done = ex->body_paused = ex->continue_sent = ex->body_failed = false;
    ex->body_seen = ex->body_max = 0;
    ex->body_len = 0;
    ex->body_cb = NULL;
    ex->data_cb = NULL;
    ex->status = 200;
    ex->rflags = 0;
    ex->abort_cb = NULL;
    ex->keep_alive = false;
    ex->hdrs_len = 0;
    ex->res_cl = ex->res_sent = 0;
    timeout_entry_init(&ex->t_request, NULL);
}

#endif /* FERRY_EXCHANGE_H */
