/* transport.h — a byte stream the HTTP code reads and writes without knowing
 * what carries it: plain TCP or a unix socket (transport_tcp.c), TLS
 * (src/tls/transport_tls.c), or a test's fake. It is the only place in ferry
 * that does socket I/O (Redis's connection.h and nginx's c->recv/c->send are
 * the models).
 *
 * What a transport owns:
 * - the socket and its uv_poll_t (the plain transports make their own
 *   recv/send calls; transport_tcp.c says why);
 * - the read buffer it fills, `rbuf`, a block borrowed from its pool's
 *   buf_pool while it holds bytes and given back when the owner has consumed
 *   them all: the bytes there are always *plaintext*, whatever the wire
 *   carries;
 * - its output buffer `out`, borrowed from the pool when bytes are queued and
 *   given back once they are written and the owner said it is idle: so bytes
 *   can still be written for an idle connection (a TLS close_notify or
 *   handshake record) and an idle connection holds no buffer at all;
 * - the totals `queued_total` / `flushed_total`, so an owner's write
 *   callbacks fire exactly when their bytes reached the kernel.
 *
 * What the owner (a server connection, a client socket) does: embeds the
 * transport in its own struct (recovering itself with container_of), reads
 * the bytes in t->rbuf from on_read and consumes them with buf_consume,
 * queues output with transport_reserve + transport_put, calls
 * transport_flush, and says when it wants bytes (read_start / read_stop).
 * The transport reports upward through the pool's transport_events, one
 * table per kind of owner. No event ever runs inside the call that caused it,
 * except that transport_close may run nothing and on_closed runs later.
 *
 * Memory: the transport is embedded in its owner's struct and must not move
 * or be freed before on_closed ran. rbuf and out are the pool's blocks, lent
 * (owner: this transport until it gives them back; transport_close gives
 * them back). impl (TLS state, a fake's state) is the implementation's.
 */
#ifndef FERRY_TRANSPORT_H
#define FERRY_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <uv.h>

#include "core/buf.h"
#include "ferry.h"

typedef struct transport transport;
typedef struct transport_pool transport_pool;

/* Output bytes waiting to be written: buf[off..len) (off: written already). */
typedef struct transport_out {
    struct transport_out *next_free; /* in the pool's cache */
    char *buf;
    size_t off, len, cap;
} transport_out;

/* What a transport tells its owner. Every event gets the transport. */
typedef struct transport_events {
    /* n > 0: n plaintext bytes were appended to t->rbuf (in discard mode:
     * read and dropped). n == FERRY_EOF: the peer closed its side cleanly
     * (FIN; over TLS a close_notify). FERRY_EINCOMPLETE: the peer closed
     * without the close it owed (TLS only: a truncation). Other n < 0: the
     * connection failed (a reset, a TLS alert). After an end or a failure no
     * more reads are reported — except to a TLS server's owner that lingers
     * after the failure in discard mode: its raw bytes and its end (so the
     * alert can go out before a graceful close; transport_tls.h). */
    void (*on_read)(transport *t, ssize_t n);
    /* Bytes that could not be written at once went out later: status 0 and
     * flushed_total advanced (transport_out_pending says whether more wait),
     * or writing failed (status < 0; what was queued is dropped). */
    void (*on_written)(transport *t, int status);
    /* The transport can carry application bytes, or never will: a client's
     * connect (and TLS handshake) finished, or a TLS server's handshake did.
     * status < 0: it failed; the owner closes the transport. */
    void (*on_ready)(transport *t, int status);
    /* The handle is closed: from here on the owner may free the memory. */
    void (*on_closed)(transport *t);
} transport_events;

/* One implementation. Reached through the inline calls below, never directly. */
typedef struct transport_ops {
    const char *name;
    /* t->want_read changed, or the implementation needs other I/O. */
    void (*update)(transport *t);
    /* Hand t->out to the peer: what the socket takes now, the rest later. */
    int64_t (*flush)(transport *t);
    int (*pending)(transport *t);
    ssize_t (*read_now)(transport *t);
    int (*shutdown)(transport *t);
    void (*close)(transport *t, bool reset);
    void (*idle)(transport *t); /* may be NULL: nothing beyond the output buffer */
    int (*peername)(transport *t, struct sockaddr_storage *addr);
    /* What TLS agreed on; NULL for transports without TLS. */
    int (*tls_info)(transport *t, ferry_tls_info *info);
} transport_ops;

/* Shared by every transport of one owner (the server's connections, an
 * agent's sockets): their event table, their read buffers and a cache of
 * output buffers. One per owner per loop; not thread-safe. */
struct transport_pool {
    const transport_events *ev;
    buf_pool rbufs;
    transport_out *free_out; /* cached output buffers, LIFO */
    uint32_t nfree_out, max_free_out;
    size_t out_keep_bytes;   /* output buffers bigger than this are freed, not cached */
    uint64_t bytes_in;       /* application bytes read, all transports (stats); not
                                counting what a discarding transport throws away */
    uint64_t bytes_out;      /* application bytes handed to the kernel */
    char discard[4096];      /* where a discarding transport's bytes go */
};

/* flags */
enum {
    TF_WANT_READ = 1 << 0, /* the owner wants bytes (read_start) */
    TF_WRITING = 1 << 1,   /* bytes wait for the socket to take them */
    TF_DISCARD = 1 << 2,   /* read and drop (a closing server connection's linger) */
    TF_IDLE = 1 << 3,      /* the owner expects nothing soon: give buffers back */
    TF_CLOSING = 1 << 4,   /* transport_close was called */
    TF_PIPE = 1 << 5,      /* a unix socket */
    TF_POLLING = 1 << 6,   /* the poll handle is started */
    TF_ENDED = 1 << 7,     /* an end or a failure was reported: nothing more to read */
    TF_CONNECTING = 1 << 8, /* a client's connect is under way */
    TF_SHUT_PENDING = 1 << 9, /* send our FIN once the output is written */
};

struct transport {
    const transport_ops *ops;
    transport_pool *pool;
    buf_block *rbuf;        /* plaintext read so far, not yet consumed (may be NULL) */
    transport_out *out;     /* output not yet written (NULL: none) */
    void *impl;             /* the implementation's state: TLS, a fake; NULL for TCP */
    uint64_t queued_total;  /* output bytes ever queued */
    uint64_t flushed_total; /* output bytes ever handed to the kernel */
    int fd;                 /* -1: none */
    uint16_t flags;         /* TF_* */
    uint16_t poll_events;   /* UV_READABLE/UV_WRITABLE the poll handle watches */
    uv_poll_t poll;         /* poll.data = the transport; only if fd >= 0 */
};

/* ---- pools ---- */

/* Ready a pool whose transports report to ev and read into blocks of
 * rbuf_size bytes (keeping up to rbuf_cache of them). Allocates nothing. */
int transport_pool_init(transport_pool *p, const transport_events *ev, size_t rbuf_size,
                        size_t rbuf_cache);
/* Free the cached buffers. FERRY_EBUSY if read buffers are still lent out. */
int transport_pool_destroy(transport_pool *p);

/* ---- plain sockets (transport_tcp.c) ---- */

/* Wrap an open, connected socket (accepted, or inherited): the transport
 * owns fd from here on, also on failure (it closes it). */
int transport_tcp_open(transport *t, transport_pool *p, uv_loop_t *loop, uv_os_sock_t fd,
                       bool is_pipe);
/* A new TCP socket connecting to addr; on_ready(t, status) when it is done.
 * A failure to start (EMFILE...) is returned here and nothing is open. */
int transport_tcp_connect(transport *t, transport_pool *p, uv_loop_t *loop,
                          const struct sockaddr *addr);
extern const transport_ops transport_tcp_ops;

/* The plain socket calls TLS builds on (transport_tcp.c): move bytes between
 * the socket and a buffer, without the HTTP-level bookkeeping. */
ssize_t transport_sock_recv(transport *t, char *buf, size_t cap);  /* n, 0 nothing, EOF, <0 */
ssize_t transport_sock_send(transport *t, const char *buf, size_t n); /* n taken, <0 */
void transport_sock_watch(transport *t, int events, uv_poll_cb cb);  /* UV_READABLE|UV_WRITABLE */
int transport_sock_error(transport *t, int fallback);               /* SO_ERROR, as -errno */
/* Close the socket (a RST with reset) and its poll handle; cb runs once the
 * handle is closed. Buffers go back to the pool. */
void transport_sock_close(transport *t, bool reset, uv_close_cb cb);
int transport_sock_peername(transport *t, struct sockaddr_storage *addr);
/* The plain transport's socket setup, for transports built on it. */
void transport_sock_init(transport *t, transport_pool *p, int fd, bool is_pipe);

/* ---- reading ---- */

/* Ask for bytes / stop asking (idempotent, cheap: callers ask after every
 * request). Stopping is how the owner applies backpressure. */
static inline void transport_read_start(transport *t)
{
    if (!(t->flags & TF_WANT_READ)) {
        t->flags |= TF_WANT_READ;
        t->ops->update(t);
    }
}

static inline void transport_read_stop(transport *t)
{
    if (t->flags & TF_WANT_READ) {
        t->flags &= (uint16_t) ~TF_WANT_READ;
        t->ops->update(t);
    }
}

static inline bool transport_reading(const transport *t)
{
    return (t->flags & TF_WANT_READ) != 0;
}

/* Read and drop everything from now on (on_read still reports counts, the
 * end and failures). For a connection that sent its FIN and waits for the
 * peer's. */
static inline void transport_discard(transport *t)
{
    t->flags |= TF_DISCARD;
}

/* Read what has already arrived, without waiting, into t->rbuf (decrypted).
 * Returns bytes added (0: nothing waiting, or no room), FERRY_EOF, or a
 * negative code. For the idle-close race: bytes the kernel holds for a
 * connection about to close. */
static inline ssize_t transport_read_now(transport *t)
{
    return t->ops->read_now(t);
}

/* What is waiting, without losing it: 0 nothing, 1 application bytes
 * (already in t->rbuf or still in the kernel), FERRY_EOF the peer closed, or
 * a negative code. A TLS record that carries no application data (a session
 * ticket) counts as nothing. Asked before reusing an idle client socket and
 * before a server decides whether to linger. UV_EBADF: no open socket. */
static inline int transport_pending(transport *t)
{
    return t->rbuf && t->rbuf->len ? 1 : t->ops->pending(t);
}

/* Borrow t->rbuf if it has none (NULL without memory) — for callers that read
 * into it themselves through transport_read_now. */
buf_block *transport_rbuf_get(transport *t);
/* Give t->rbuf back to the pool if it holds no bytes. */
void transport_rbuf_release(transport *t);
/* Make t->rbuf hold at least min_size bytes (it may move). */
int transport_rbuf_grow(transport *t, size_t min_size);

/* ---- writing ---- */

/* Room for n more output bytes (FERRY_ENOMEM leaves everything as it was).
 * Inline when there is room already: every response asks. */
int transport_reserve_slow(transport *t, size_t n);
static inline int transport_reserve(transport *t, size_t n)
{
    transport_out *o = t->out;
    return o && o->len + n <= o->cap ? 0 : transport_reserve_slow(t, n);
}

/* Queue n bytes (room reserved first). */
static inline void transport_put(transport *t, const void *p, size_t n)
{
    transport_out *o = t->out;
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    t->queued_total += n;
}

/* Where the next reserved bytes go, and the call that counts them: for
 * writers that format in place (numbers, chunk sizes). */
static inline char *transport_put_ptr(transport *t)
{
    return t->out->buf + t->out->len;
}

static inline void transport_put_done(transport *t, size_t n)
{
    t->out->len += n;
    t->queued_total += n;
}

/* Queued bytes not yet handed to the kernel. */
static inline uint64_t transport_out_queued(const transport *t)
{
    return t->queued_total - t->flushed_total;
}

static inline bool transport_out_pending(const transport *t)
{
    return t->queued_total != t->flushed_total;
}

/* Hand queued bytes on. Returns the bytes the kernel took now (>= 0; what it
 * did not take goes out later and on_written reports it), or a negative code
 * (the connection failed; nothing more will be written). */
static inline int64_t transport_flush(transport *t)
{
    return t->out && t->out->off < t->out->len ? t->ops->flush(t) : 0;
}

/* ---- the connection's end ---- */

/* Graceful end of our side, reading goes on: FIN once the output is written
 * (TLS: close_notify first). 0, UV_EBADF (no socket), or the system's error. */
static inline int transport_shutdown(transport *t)
{
    return t->ops->shutdown(t);
}

/* Nothing is expected soon (an idle keep-alive connection): give the output
 * buffer back once it is written, and let an implementation release what it
 * can (TLS: its record buffers). Any read or write later borrows again. */
void transport_out_release(transport *t);
static inline void transport_idle(transport *t)
{
    t->flags |= TF_IDLE;
    if (t->out)
        transport_out_release(t);
    if (t->ops->idle)
        t->ops->idle(t);
}

static inline void transport_busy(transport *t)
{
    t->flags &= (uint16_t) ~TF_IDLE;
}

/* Close: gracefully (reset false: TLS sends its close_notify if the socket
 * takes it now, then FIN) or with a RST (TCP), so the peer learns at once
 * that the exchange failed. Queued output is dropped. on_closed runs from
 * the loop later; only then may the transport's memory go. Idempotent. */
static inline void transport_close(transport *t, bool reset)
{
    if (!(t->flags & TF_CLOSING)) {
        t->flags |= TF_CLOSING;
        t->ops->close(t, reset);
    }
}

static inline bool transport_closing(const transport *t)
{
    return (t->flags & TF_CLOSING) != 0;
}

/* The peer's address; FERRY_ENOTSUP on a unix socket. */
static inline int transport_peername(transport *t, struct sockaddr_storage *addr)
{
    return t->ops->peername(t, addr);
}

/* What TLS agreed on (version, cipher, SNI, ALPN, resumed, the peer's
 * certificate): 0, or FERRY_ENOTSUP on a transport without TLS. */
static inline int transport_tls_info(transport *t, ferry_tls_info *info)
{
    return t->ops->tls_info ? t->ops->tls_info(t, info) : FERRY_ENOTSUP;
}

static inline bool transport_is_tls(const transport *t)
{
    return t->ops->tls_info != NULL;
}

/* Keep the loop alive for this transport or not (an idle pooled client
 * socket does not keep a program running). */
void transport_ref(transport *t, bool ref);

/* ---- for implementations ---- */

/* Give back t->out if it is drained and the owner is idle (declared above). */
/* Count n queued bytes as handed to the kernel. */
void transport_out_advance(transport *t, size_t n);
/* Take n queued bytes out of the buffer without counting them (TLS: they
 * are in the engine now) / count n bytes as handed to the kernel later. */
void transport_out_consume(transport *t, size_t n);
void transport_count_flushed(transport *t, size_t n);
/* Give everything back (close). */
void transport_release_all(transport *t);

#endif /* FERRY_TRANSPORT_H */
