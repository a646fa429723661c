/* transport.h — a byte stream over a libuv socket, shared by the server's
 * connections (server_conn.c) and the client's (client_conn.c), so neither
 * side has its own copy of the socket plumbing: opening and connecting,
 * reading with an on/off switch, writing with a try_write fast path, the
 * checks made before closing or reusing a socket, and closing with a FIN or a
 * RST. Plain TCP and unix sockets now; TLS will slot in behind the same calls.
 *
 * Memory: nothing here allocates except transport_out_reserve() (through
 * transport_out_grow()), which grows the caller's output buffers (owner: the
 * transport_out, freed by transport_out_free() or, past a size, by
 * transport_out_trim()). The transport is embedded in its owner's struct and
 * must not move or be freed before the close callback ran.
 *
 * The calls the server makes per request (reserve, flush, read start/stop,
 * trim) are inline up to their first libuv call: they replaced code that
 * was inline in server_conn.c, and the hot path must not pay for the move.
 */
#ifndef FERRY_TRANSPORT_H
#define FERRY_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

typedef struct transport {
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } io;
    bool is_pipe;
    bool reading; /* uv_read_start is in effect */
} transport;

/* Bytes waiting to be written. `out` collects new bytes; while a uv_write is
 * in flight it owns `wout`, and new bytes keep going to `out`. */
typedef struct transport_out {
    char *out, *wout;
    size_t out_len, out_cap, wout_len, wout_cap;
    uv_write_t wreq;
    bool writing;           /* a uv_write is in flight */
    uint64_t queued_total;  /* bytes ever appended */
    uint64_t flushed_total; /* bytes ever handed to the kernel */
} transport_out;

/* The transport whose handle is h (h->data is the owner's; this is for
 * callbacks that get the handle). */
#define transport_of(handle) ((transport *) (handle))

/* Wrap an accepted (or otherwise open) socket: init, open, TCP_NODELAY.
 * On failure after the handle was initialised, *initialised is set and the
 * caller must still transport_close() it. A socket uv_*_open refused was not
 * adopted by the handle: closing the handle does not close it; the caller
 * closes it. */
int transport_open(uv_loop_t *loop, transport *t, uv_os_sock_t fd, bool is_pipe,
                   bool *initialised);

/* A TCP transport ready to connect (init only). */
int transport_tcp_init(uv_loop_t *loop, transport *t);
/* Connect to addr; cb(req, status) as uv_tcp_connect's. Sets TCP_NODELAY. */
int transport_connect(transport *t, uv_connect_t *req, const struct sockaddr *addr,
                      uv_connect_cb cb);

/* Start/stop reading; both idempotent (the `reading` flag tracks it, inline,
 * since the server asks after every request). */
static inline int transport_read_start(transport *t, uv_alloc_cb alloc_cb, uv_read_cb read_cb);
static inline void transport_read_stop(transport *t);
int transport_read_start_now(transport *t, uv_alloc_cb alloc_cb, uv_read_cb read_cb);
void transport_read_stop_now(transport *t);

/* Grow q->out to take n more bytes; FERRY_ENOMEM leaves it as it was.
 * Inline when there is room already (every response asks at least once). */
static inline int transport_out_reserve(transport_out *q, size_t n);
int transport_out_grow(transport_out *q, size_t n);
static inline void transport_out_put(transport_out *q, const void *p, size_t n);
/* Release q's buffers (they may also be kept for reuse: see transport_out_trim). */
void transport_out_free(transport_out *q);
/* Forget queued bytes and the totals, keeping the buffers, so q can serve
 * another exchange. No write may be in flight. */
static inline void transport_out_reset(transport_out *q);
/* Free buffers bigger than keep_bytes, so a cached transport_out stays small
 * (inline: a pooled exchange asks after every request). */
static inline void transport_out_trim(transport_out *q, size_t keep_bytes);
void transport_out_trim_now(transport_out *q, size_t keep_bytes);
/* Whether bytes are queued or a write is in flight. */
static inline bool transport_out_pending(const transport_out *q)
{
    return q->out_len || q->writing;
}

/* Hand q->out to the kernel: uv_try_write first (no request, no callback);
 * what the socket would not take goes to one uv_write whose completion calls
 * cb (recover q with container_of(req, transport_out, wreq) and call
 * transport_out_written). Returns the bytes the kernel took at once (>= 0;
 * q->writing tells whether a write is now in flight), or a negative code
 * (the socket failed; no write is in flight, and q->flushed_total still
 * counts what try_write took before uv_write failed). Does nothing while a
 * write is in flight or nothing is queued. */
static inline int64_t transport_flush(transport *t, transport_out *q, uv_write_cb cb);
/* transport_flush's slow half: try_write took only `taken` bytes, so swap
 * the buffers and start the uv_write for the rest. */
int64_t transport_flush_rest(transport *t, transport_out *q, size_t taken, uv_write_cb cb);
/* Account for a completed uv_write, given the status its callback got:
 * returns the bytes it carried to the kernel (0 if it failed). */
size_t transport_out_written(transport_out *q, int status);

/* The calls below that reach the socket itself return UV_EBADF (from
 * uv_fileno) when there is no open socket (closing, or never opened), so
 * callers can tell that apart from what the socket says. */

/* What is waiting on the socket, without consuming it and without
 * blocking: 0 nothing, 1 bytes to read, FERRY_EOF the peer closed (FIN), or
 * a negative code (a reset). The client asks before reusing an idle socket;
 * the server before deciding whether to linger. */
int transport_peek(transport *t);

/* Read what the kernel already holds, without waiting, into buf[0..cap).
 * Returns bytes read (0: nothing waiting), FERRY_EOF, or a negative code. */
ssize_t transport_read_now(transport *t, char *buf, size_t cap);

/* Send our FIN (shutdown(SHUT_WR)) without closing: reading goes on.
 * 0, UV_EBADF, or shutdown(2)'s error (the peer may have reset already). */
int transport_shutdown_write(transport *t);

/* The peer's address; FERRY_ENOTSUP on a unix socket. */
int transport_peername(transport *t, struct sockaddr_storage *addr);

/* Close: with a FIN, or (reset, TCP only) a RST so the peer sees at once
 * that the exchange failed. cb runs from the loop once the handle is closed;
 * only then may the transport's memory go. */
void transport_close(transport *t, bool reset, uv_close_cb cb);

/* ---- inline ---- */
#include <string.h>
static inline int transport_read_start(transport *t, uv_alloc_cb alloc_cb, uv_read_cb read_cb)
{
    return t->reading ? 0 : transport_read_start_now(t, alloc_cb, read_cb);
}

static inline void transport_read_stop(transport *t)
{
    if (t->reading)
        transport_read_stop_now(t);
}

static inline void transport_out_trim(transport_out *q, size_t keep_bytes)
{
    if (q->out_cap > keep_bytes || q->wout_cap > keep_bytes)
        transport_out_trim_now(q, keep_bytes);
}

static inline int transport_out_reserve(transport_out *q, size_t n)
{
    return q->out_len + n <= q->out_cap ? 0 : transport_out_grow(q, n);
}

static inline void transport_out_put(transport_out *q, const void *p, size_t n)
{
    memcpy(q->out + q->out_len, p, n);
    q->out_len += n;
    q->queued_total += n;
}

/* Inline up to the try_write, which usually takes everything: a response
 * then costs no call beyond libuv's. */
static inline int64_t transport_flush(transport *t, transport_out *q, uv_write_cb cb)
{
    if (q->writing || q->out_len == 0)
        return 0;
    /* not uv_buf_init: a call into libuv per write for a two-field struct */
    uv_buf_t b = {.base = q->out, .len = q->out_len};
    int n = uv_try_write(&t->io.s, &b, 1);
    if (n == UV_EAGAIN || n == UV_ENOSYS)
        n = 0;
    if (n < 0)
        return n;
    q->flushed_total += (uint64_t) n;
    if ((size_t) n == q->out_len) {
        q->out_len = 0;
        return n;
    }
    return transport_flush_rest(t, q, (size_t) n, cb);
}

static inline void transport_out_reset(transport_out *q)
{
    q->out_len = q->wout_len = 0;
    q->queued_total = q->flushed_total = 0;
}

#endif /* FERRY_TRANSPORT_H */
