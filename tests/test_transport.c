/* test_transport.c — the plain transport (core/transport_tcp.c) over real
 * TCP connections on 127.0.0.1: what is pending (nothing, bytes, FIN, RST),
 * reading what the kernel holds, reading through on_read with backpressure,
 * bytes sent before a RST still delivered, a flush bigger than the socket
 * buffers (the part taken at once, the rest later, bytes appended meanwhile
 * arriving after it in order), a write to a reset socket with SIGPIPE at its
 * default (an error, not a dead process), our FIN while reading goes on (and
 * held back until the output is written), discarding, close with FIN or RST,
 * connecting, and the pool's output buffers.
 *
 * The transport owns one end (accepted, as the server's connections are);
 * the test drives the other end with plain system calls. A wait for the
 * kernel is a poll() on the condition, never a sleep. Every test closes its
 * transport and proves the loop closes clean (uv_loop_close == 0). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/transport.h"
#include "ferry.h"

#define WATCHDOG_MS 10000 /* a hang fails here instead of at ctest's timeout */

/* One connection: `t` wraps the accepted end, `peer` is the connecting end;
 * the events the transport reported are recorded here. */
typedef struct pair {
    uv_loop_t loop;
    uv_timer_t watchdog;
    transport_pool pool;
    transport t;
    int peer;
    int closed;      /* on_closed calls */
    ssize_t last;    /* the last on_read value */
    int reads;       /* on_read calls */
    size_t got;      /* bytes seen by on_read (consumed, unless keep) */
    bool keep;       /* on_read leaves the bytes in t->rbuf */
    char seen[64];   /* the first bytes on_read saw */
    int written;     /* on_written calls */
    int write_status;
    int ready, ready_status;
} pair;

static pair *pair_of(transport *t)
{
    return (pair *) ((char *) t - offsetof(pair, t));
}

static void ev_read(transport *t, ssize_t n)
{
    pair *p = pair_of(t);
    p->reads++;
    p->last = n;
    if (n <= 0)
        return;
    if (!(t->flags & TF_DISCARD)) {
        size_t room = sizeof(p->seen) - (p->got < sizeof(p->seen) ? p->got : sizeof(p->seen));
        size_t k = (size_t) n < room ? (size_t) n : room;
        memcpy(p->seen + (sizeof(p->seen) - room), t->rbuf->data + t->rbuf->len - (size_t) n, k);
        if (!p->keep)
            buf_consume(t->rbuf, t->rbuf->len);
    }
    p->got += (size_t) n;
}

static void ev_written(transport *t, int status)
{
    pair *p = pair_of(t);
    p->written++;
    p->write_status = status;
}

static void ev_ready(transport *t, int status)
{
    pair *p = pair_of(t);
    p->ready++;
    p->ready_status = status;
}

static void ev_closed(transport *t)
{
    pair_of(t)->closed++;
}

static const transport_events test_events = {ev_read, ev_written, ev_ready, ev_closed};

static void on_watchdog(uv_timer_t *h)
{
    (void) h;
    fail_msg("watchdog: the loop waited %d ms for an event that never came", WATCHDOG_MS);
}

/* Listen, connect, accept, by hand. bufsize > 0 shrinks the accepted end's
 * send buffer and the peer's receive buffer (set before the handshake, so
 * the window is small from the start). Returns the accepted fd. */
static int connect_pair(int *peer, int bufsize)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (bufsize > 0)
        assert_int_equal(setsockopt(lfd, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof(bufsize)), 0);
    assert_int_equal(bind(lfd, (struct sockaddr *) &a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 1), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *) &a, &alen), 0);
    *peer = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(*peer >= 0);
    if (bufsize > 0)
        assert_int_equal(setsockopt(*peer, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof(bufsize)), 0);
    assert_int_equal(connect(*peer, (struct sockaddr *) &a, sizeof(a)), 0);
    int fd = accept(lfd, NULL, NULL);
    assert_true(fd >= 0);
    close(lfd);
    return fd;
}

static void pair_init(pair *p, size_t rbuf_size)
{
    memset(p, 0, sizeof(*p));
    p->peer = -1;
    assert_int_equal(uv_loop_init(&p->loop), 0);
    assert_int_equal(uv_timer_init(&p->loop, &p->watchdog), 0);
    assert_int_equal(uv_timer_start(&p->watchdog, on_watchdog, WATCHDOG_MS, 0), 0);
    uv_unref((uv_handle_t *) &p->watchdog);
    assert_int_equal(transport_pool_init(&p->pool, &test_events, rbuf_size, 4), 0);
}

static void pair_open(pair *p, int bufsize)
{
    pair_init(p, 0);
    int fd = connect_pair(&p->peer, bufsize);
    assert_int_equal(transport_tcp_open(&p->t, &p->pool, &p->loop, fd, false), 0);
}

/* Close what is still open and prove nothing is left on the loop. */
static void pair_finish(pair *p)
{
    transport_close(&p->t, false);
    uv_close((uv_handle_t *) &p->watchdog, NULL);
    assert_int_equal(uv_run(&p->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(p->closed, 1);
    if (p->peer >= 0)
        close(p->peer);
    assert_int_equal(transport_pool_destroy(&p->pool), 0);
    assert_int_equal(uv_loop_close(&p->loop), 0);
}

/* Wait (without a sleep) until fd has something to read, EOF or an error. */
static void wait_readable(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, WATCHDOG_MS), 1);
}

static void peer_send(int fd, const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(send(fd, s, n, 0), (ssize_t) n);
}

static void peer_reset(pair *p)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* close() sends a RST */
    assert_int_equal(setsockopt(p->peer, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(p->peer);
    p->peer = -1;
}

static void run_until(pair *p, const int *counter, int value)
{
    while (*counter < value)
        uv_run(&p->loop, UV_RUN_ONCE);
}

static void test_pending(void **state)
{
    (void) state;
    pair p;
    pair_open(&p, 0);
    assert_int_equal(transport_pending(&p.t), 0); /* nothing pending */

    peer_send(p.peer, "abc");
    wait_readable(p.t.fd);
    assert_int_equal(transport_pending(&p.t), 1);
    assert_int_equal(transport_pending(&p.t), 1); /* still there: asking consumes nothing */
    assert_int_equal(transport_read_now(&p.t), 3);
    assert_memory_equal(p.t.rbuf->data, "abc", 3);
    assert_int_equal(transport_pending(&p.t), 1); /* in the read buffer now */
    buf_consume(p.t.rbuf, 3);
    assert_int_equal(transport_pending(&p.t), 0);
    transport_rbuf_release(&p.t);
    assert_null(p.t.rbuf);
    pair_finish(&p);
}

static void test_pending_after_fin(void **state)
{
    (void) state;
    pair p;
    pair_open(&p, 0);
    assert_int_equal(shutdown(p.peer, SHUT_WR), 0);
    wait_readable(p.t.fd);
    assert_int_equal(transport_pending(&p.t), FERRY_EOF);
    assert_int_equal(transport_pending(&p.t), FERRY_EOF);
    pair_finish(&p);
}

static void test_pending_after_rst(void **state)
{
    (void) state;
    pair p;
    pair_open(&p, 0);
    peer_reset(&p);
    wait_readable(p.t.fd);
    assert_int_equal(transport_pending(&p.t), FERRY_ECONNRESET);
    pair_finish(&p);
}

static void test_read_now(void **state)
{
    (void) state;
    pair p;
    pair_init(&p, 5); /* a 5-byte read buffer: read_now takes no more than it holds */
    int fd = connect_pair(&p.peer, 0);
    assert_int_equal(transport_tcp_open(&p.t, &p.pool, &p.loop, fd, false), 0);
    assert_int_equal(transport_read_now(&p.t), 0); /* nothing waiting */
    assert_null(p.t.rbuf);                         /* and nothing held */

    peer_send(p.peer, "hello, world");
    wait_readable(p.t.fd);
    assert_int_equal(transport_read_now(&p.t), 5);
    assert_memory_equal(p.t.rbuf->data, "hello", 5);
    assert_int_equal(transport_read_now(&p.t), 0); /* full: no room */
    buf_consume(p.t.rbuf, 5);
    assert_int_equal(transport_read_now(&p.t), 5);
    assert_memory_equal(p.t.rbuf->data, ", wor", 5);
    buf_consume(p.t.rbuf, 5);
    assert_int_equal(transport_read_now(&p.t), 2);
    buf_consume(p.t.rbuf, 2);

    assert_int_equal(shutdown(p.peer, SHUT_WR), 0);
    wait_readable(p.t.fd);
    assert_int_equal(transport_read_now(&p.t), FERRY_EOF);
    assert_null(p.t.rbuf);

    /* once closing, there is no socket: UV_EBADF, not a socket error */
    transport_close(&p.t, false);
    assert_int_equal(transport_read_now(&p.t), UV_EBADF);
    assert_int_equal(transport_pending(&p.t), UV_EBADF);
    assert_int_equal(transport_shutdown(&p.t), UV_EBADF);
    pair_finish(&p);
}

/* on_read gets the bytes in the read buffer; a full buffer stops reading
 * until the owner makes room (backpressure). */
static void test_read_events_and_backpressure(void **state)
{
    (void) state;
    pair p;
    pair_init(&p, 8);
    int fd = connect_pair(&p.peer, 0);
    assert_int_equal(transport_tcp_open(&p.t, &p.pool, &p.loop, fd, false), 0);
    p.keep = true;
    transport_read_start(&p.t);
    assert_true(transport_reading(&p.t));
    transport_read_start(&p.t); /* idempotent */
    peer_send(p.peer, "0123456789abcdef");
    run_until(&p, &p.reads, 1);
    assert_int_equal(p.t.rbuf->len, 8);
    assert_memory_equal(p.t.rbuf->data, "01234567", 8);
    /* the buffer is full: the next wake-up stops reading instead of spinning */
    while (transport_reading(&p.t))
        uv_run(&p.loop, UV_RUN_ONCE);
    assert_int_equal(p.reads, 1);
    buf_consume(p.t.rbuf, 8);
    transport_read_start(&p.t);
    run_until(&p, &p.reads, 2);
    assert_memory_equal(p.t.rbuf->data, "89abcdef", 8);
    buf_consume(p.t.rbuf, 8);
    p.keep = false;
    assert_int_equal(shutdown(p.peer, SHUT_WR), 0);
    while (p.last != FERRY_EOF)
        uv_run(&p.loop, UV_RUN_ONCE);
    assert_null(p.t.rbuf); /* empty buffers go back to the pool */
    pair_finish(&p);
}

/* Bytes the peer sent before its RST arrive first; then the reset. */
static void test_bytes_before_rst(void **state)
{
    (void) state;
    pair p;
    pair_open(&p, 0);
    peer_send(p.peer, "last words");
    peer_reset(&p);
    transport_read_start(&p.t);
    while (p.last >= 0)
        uv_run(&p.loop, UV_RUN_ONCE);
    assert_int_equal(p.got, 10);
    assert_memory_equal(p.seen, "last words", 10);
    assert_int_equal(p.last, FERRY_ECONNRESET);
    pair_finish(&p);
}

/* ---- a flush bigger than the socket buffers ---- */

#define BIG_BYTES ((size_t) 8 << 20)
#define TAIL_BYTES ((size_t) 100000)

typedef struct peer_reader {
    uv_poll_t poll;
    int fd;
    char *rx;
    size_t len, want;
} peer_reader;

static unsigned char big_byte(size_t i)
{
    return (unsigned char) (i * 131 + (i >> 12));
}

static unsigned char tail_byte(size_t i)
{
    return (unsigned char) ~(i * 7);
}

static void on_peer_readable(uv_poll_t *h, int status, int events)
{
    peer_reader *r = h->data;
    (void) events;
    assert_int_equal(status, 0);
    for (;;) {
        ssize_t n = recv(r->fd, r->rx + r->len, r->want - r->len, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        assert_true(n > 0);
        r->len += (size_t) n;
        if (r->len == r->want) {
            uv_poll_stop(h);
            char extra;
            assert_int_equal(recv(r->fd, &extra, 1, 0), -1); /* nothing beyond */
            return;
        }
    }
}

static void test_flush_larger_than_socket_buffers(void **state)
{
    (void) state;
    pair p;
    pair_open(&p, 64 * 1024);
    char *src = malloc(BIG_BYTES);
    assert_non_null(src);
    for (size_t i = 0; i < BIG_BYTES; i++)
        src[i] = (char) big_byte(i);
    assert_int_equal(transport_reserve(&p.t, BIG_BYTES), 0);
    transport_put(&p.t, src, BIG_BYTES);
    assert_int_equal(p.t.queued_total, BIG_BYTES);

    int64_t n = transport_flush(&p.t);
    assert_true(n >= 0);
    assert_true((size_t) n < BIG_BYTES); /* the kernel could not take it all... */
    assert_true(p.t.flags & TF_WRITING); /* ...so the rest waits for room */
    assert_int_equal(p.t.flushed_total, (uint64_t) n);
    assert_int_equal(transport_out_queued(&p.t), BIG_BYTES - (size_t) n);

    /* appended while the rest waits: queued behind it, nothing sent now */
    for (size_t i = 0; i < TAIL_BYTES; i++)
        src[i] = (char) tail_byte(i);
    assert_int_equal(transport_reserve(&p.t, TAIL_BYTES), 0);
    transport_put(&p.t, src, TAIL_BYTES);
    assert_int_equal(transport_flush(&p.t), 0);
    assert_int_equal(p.t.flushed_total, (uint64_t) n);
    free(src);

    peer_reader r = {.fd = p.peer, .want = BIG_BYTES + TAIL_BYTES};
    r.rx = malloc(r.want);
    assert_non_null(r.rx);
    assert_int_equal(fcntl(p.peer, F_SETFL, fcntl(p.peer, F_GETFL) | O_NONBLOCK), 0);
    assert_int_equal(uv_poll_init(&p.loop, &r.poll, p.peer), 0);
    r.poll.data = &r;
    assert_int_equal(uv_poll_start(&r.poll, UV_READABLE, on_peer_readable), 0);
    while (r.len < r.want || transport_out_pending(&p.t))
        uv_run(&p.loop, UV_RUN_ONCE);

    assert_true(p.written >= 1); /* progress was reported */
    assert_int_equal(p.write_status, 0);
    assert_false(p.t.flags & TF_WRITING);
    assert_int_equal(p.t.flushed_total, BIG_BYTES + TAIL_BYTES);
    assert_int_equal(p.pool.bytes_out, BIG_BYTES + TAIL_BYTES);
    for (size_t i = 0; i < BIG_BYTES; i++)
        if ((unsigned char) r.rx[i] != big_byte(i))
            fail_msg("byte %zu of the big write differs", i);
    for (size_t i = 0; i < TAIL_BYTES; i++)
        if ((unsigned char) r.rx[BIG_BYTES + i] != tail_byte(i))
            fail_msg("byte %zu of the bytes appended meanwhile differs", i);
    uv_close((uv_handle_t *) &r.poll, NULL);
    free(r.rx);
    pair_finish(&p);
}

/* SIGPIPE is left at its default here: a write to a socket the peer reset
 * must come back as an error (the transport sends with MSG_NOSIGNAL), not
 * end the process. */
static void test_write_to_reset_socket_is_an_error(void **state)
{
    (void) state;
    struct sigaction dfl = {.sa_handler = SIG_DFL}, old;
    sigemptyset(&dfl.sa_mask);
    assert_int_equal(sigaction(SIGPIPE, &dfl, &old), 0);
    pair p;
    pair_open(&p, 0);
    peer_reset(&p);
    wait_readable(p.t.fd);
    int64_t rc = 0;
    for (int i = 0; i < 3 && rc >= 0; i++) { /* the RST may need a write to be seen */
        assert_int_equal(transport_reserve(&p.t, 4), 0);
        transport_put(&p.t, "ping", 4);
        rc = transport_flush(&p.t);
    }
    assert_true(rc == FERRY_EPIPE || rc == FERRY_ECONNRESET);
    pair_finish(&p);
    sigaction(SIGPIPE, &old, NULL);
}

/* ---- our FIN, reading on ---- */

static void test_shutdown_keeps_reading(void **state)
{
    (void) state;
    pair p;
    pair_open(&p, 0);
    transport_read_start(&p.t);
    assert_int_equal(transport_shutdown(&p.t), 0);
    char b[8];
    wait_readable(p.peer);
    assert_int_equal(recv(p.peer, b, sizeof(b), 0), 0); /* the peer sees our FIN */

    peer_send(p.peer, "still here");
    while (p.got < 10)
        uv_run(&p.loop, UV_RUN_ONCE);
    assert_memory_equal(p.seen, "still here", 10);

    assert_int_equal(shutdown(p.peer, SHUT_WR), 0);
    while (p.last != FERRY_EOF)
        uv_run(&p.loop, UV_RUN_ONCE);
    transport_read_stop(&p.t);
    transport_read_stop(&p.t); /* idempotent */
    pair_finish(&p);
}

/* With output still waiting, the FIN follows the last byte. */
static void test_shutdown_waits_for_output(void **state)
{
    (void) state;
    pair p;
    pair_open(&p, 64 * 1024);
    size_t n = 4 << 20;
    char *src = calloc(1, n);
    assert_non_null(src);
    assert_int_equal(transport_reserve(&p.t, n), 0);
    transport_put(&p.t, src, n);
    free(src);
    assert_true(transport_flush(&p.t) >= 0);
    assert_true(transport_out_pending(&p.t));
    assert_int_equal(transport_shutdown(&p.t), 0); /* held back */
    size_t total = 0;
    char buf[65536];
    assert_int_equal(fcntl(p.peer, F_SETFL, fcntl(p.peer, F_GETFL) | O_NONBLOCK), 0);
    for (;;) {
        uv_run(&p.loop, UV_RUN_NOWAIT);
        ssize_t k = recv(p.peer, buf, sizeof(buf), 0);
        if (k == 0)
            break;
        if (k > 0)
            total += (size_t) k;
        else
            assert_true(errno == EAGAIN);
    }
    assert_int_equal(total, n); /* every byte before the FIN */
    pair_finish(&p);
}

/* Discarding: bytes are read and dropped, counted, and the end still comes. */
static void test_discard(void **state)
{
    (void) state;
    pair p;
    pair_open(&p, 0);
    transport_discard(&p.t);
    transport_read_start(&p.t);
    peer_send(p.peer, "ignored");
    assert_int_equal(shutdown(p.peer, SHUT_WR), 0);
    while (p.last != FERRY_EOF)
        uv_run(&p.loop, UV_RUN_ONCE);
    assert_int_equal(p.got, 7);
    assert_null(p.t.rbuf);              /* no read buffer was borrowed */
    assert_int_equal(p.pool.bytes_in, 0); /* and what was thrown away is not counted in */
    pair_finish(&p);
}

/* ---- closing ---- */

static void test_close_with_reset(void **state)
{
    (void) state;
    pair p;
    pair_open(&p, 0);
    transport_close(&p.t, true);
    transport_close(&p.t, true); /* already closing: nothing more */
    run_until(&p, &p.closed, 1);
    char b[8];
    wait_readable(p.peer);
    errno = 0;
    assert_int_equal(recv(p.peer, b, sizeof(b), 0), -1);
    assert_int_equal(errno, ECONNRESET);
    pair_finish(&p);
}

static void test_close_with_fin(void **state)
{
    (void) state;
    pair p;
    pair_open(&p, 0);
    transport_close(&p.t, false);
    run_until(&p, &p.closed, 1);
    char b[8];
    wait_readable(p.peer);
    assert_int_equal(recv(p.peer, b, sizeof(b), 0), 0);
    pair_finish(&p);
}

/* ---- connecting, as the client does ---- */

static void test_connect(void **state)
{
    (void) state;
    pair p;
    pair_init(&p, 0);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    assert_int_equal(bind(lfd, (struct sockaddr *) &a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 1), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *) &a, &alen), 0);

    assert_int_equal(transport_tcp_connect(&p.t, &p.pool, &p.loop, (struct sockaddr *) &a), 0);
    assert_int_equal(p.ready, 0); /* never inside the call */
    run_until(&p, &p.ready, 1);
    assert_int_equal(p.ready_status, 0);
    p.peer = accept(lfd, NULL, NULL);
    assert_true(p.peer >= 0);

    int nodelay = 0;
    socklen_t len = sizeof(nodelay);
    assert_int_equal(getsockopt(p.t.fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len), 0);
    assert_true(nodelay);

    struct sockaddr_storage peer_addr, local;
    socklen_t llen = sizeof(local);
    assert_int_equal(transport_peername(&p.t, &peer_addr), 0);
    assert_int_equal(getsockname(p.peer, (struct sockaddr *) &local, &llen), 0);
    assert_int_equal(((struct sockaddr_in *) &peer_addr)->sin_port,
                     ((struct sockaddr_in *) &local)->sin_port);

    peer_send(p.peer, "x");
    wait_readable(p.t.fd);
    assert_int_equal(transport_pending(&p.t), 1);
    pair_finish(&p);

    /* nobody listening: the refusal comes from the loop, as an error */
    pair q;
    pair_init(&q, 0);
    close(lfd); /* the port is free now */
    assert_int_equal(transport_tcp_connect(&q.t, &q.pool, &q.loop, (struct sockaddr *) &a), 0);
    run_until(&q, &q.ready, 1);
    assert_int_equal(q.ready_status, FERRY_ECONNREFUSED);
    pair_finish(&q);
}

/* ---- the output buffer ---- */

static void test_out_buffers(void **state)
{
    (void) state;
    pair p;
    pair_open(&p, 0);
    assert_null(p.t.out); /* nothing borrowed until something is queued */
    assert_int_equal(transport_reserve(&p.t, 10), 0);
    transport_out *o = p.t.out;
    assert_int_equal(o->cap, 4096); /* first size */
    transport_put(&p.t, "0123456789", 10);
    assert_int_equal(transport_reserve(&p.t, 5000), 0);
    assert_int_equal(o->cap, 8192); /* doubled, contents kept */
    assert_memory_equal(o->buf, "0123456789", 10);
    assert_true(transport_out_pending(&p.t));

    /* written at once; while busy the buffer stays, once idle it goes back */
    assert_int_equal(transport_flush(&p.t), 10);
    assert_false(transport_out_pending(&p.t));
    assert_ptr_equal(p.t.out, o);
    transport_idle(&p.t);
    assert_null(p.t.out);
    assert_int_equal(p.pool.nfree_out, 1);
    /* the next borrow takes the cached one */
    transport_busy(&p.t);
    assert_int_equal(transport_reserve(&p.t, 1), 0);
    assert_ptr_equal(p.t.out, o);
    assert_int_equal(p.pool.nfree_out, 0);
    transport_put(&p.t, "x", 1);
    transport_idle(&p.t); /* a byte still queued: kept */
    assert_ptr_equal(p.t.out, o);
    assert_int_equal(transport_flush(&p.t), 1); /* once written, idle gives it back */
    assert_null(p.t.out);

    /* a big one is not cached with its buffer */
    transport_busy(&p.t);
    assert_int_equal(transport_reserve(&p.t, 200000), 0);
    transport_put(&p.t, "y", 1);
    assert_int_equal(transport_flush(&p.t), 1);
    transport_idle(&p.t);
    assert_null(p.t.out);
    assert_non_null(p.pool.free_out);
    assert_int_equal(p.pool.free_out->cap, 0);
    char b[16];
    wait_readable(p.peer);
    assert_int_equal(recv(p.peer, b, sizeof(b), 0), 12);
    pair_finish(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pending),
        cmocka_unit_test(test_pending_after_fin),
        cmocka_unit_test(test_pending_after_rst),
        cmocka_unit_test(test_read_now),
        cmocka_unit_test(test_read_events_and_backpressure),
        cmocka_unit_test(test_bytes_before_rst),
        cmocka_unit_test(test_flush_larger_than_socket_buffers),
        cmocka_unit_test(test_write_to_reset_socket_is_an_error),
        cmocka_unit_test(test_shutdown_keeps_reading),
        cmocka_unit_test(test_shutdown_waits_for_output),
        cmocka_unit_test(test_discard),
        cmocka_unit_test(test_close_with_reset),
        cmocka_unit_test(test_close_with_fin),
        cmocka_unit_test(test_connect),
        cmocka_unit_test(test_out_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
