/* test_transport.c — the socket plumbing server and client share, over real
 * TCP connections on 127.0.0.1: peek (nothing, bytes, FIN, RST), reading
 * what the kernel holds, a flush bigger than the socket buffers (the
 * try_write part, the uv_write part, and bytes appended meanwhile arriving
 * after it in order), our FIN while reading goes on, close with a RST,
 * connecting, and the output buffers alone.
 *
 * The transport owns one end (accepted, as the server's connections are);
 * the test drives the other end with plain system calls. A wait for the
 * kernel is a poll() on the condition, never a sleep. Every test closes its
 * handles and proves the loop closes clean (uv_loop_close == 0). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "ferry.h"
#include "core/transport.h"

#ifndef container_of
#define container_of(ptr, type, member) ((type *) ((char *) (ptr) - offsetof(type, member)))
#endif

#define WATCHDOG_MS 10000 /* a hang fails here instead of at ctest's timeout */

/* One connection: `t` wraps the accepted end, `peer` is the connecting end. */
typedef struct pair {
    uv_loop_t loop;
    uv_timer_t watchdog;
    transport t;
    int peer;
    int closed; /* close callbacks run */
} pair;

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

static void pair_open(pair *p, int bufsize)
{
    memset(p, 0, sizeof(*p));
    assert_int_equal(uv_loop_init(&p->loop), 0);
    assert_int_equal(uv_timer_init(&p->loop, &p->watchdog), 0);
    assert_int_equal(uv_timer_start(&p->watchdog, on_watchdog, WATCHDOG_MS, 0), 0);
    int fd = connect_pair(&p->peer, bufsize);
    bool initialised;
    assert_int_equal(transport_open(&p->loop, &p->t, fd, false, &initialised), 0);
    assert_true(initialised);
    p->t.io.h.data = p;
}

static void on_closed(uv_handle_t *h)
{
    pair *p = h->data;
    p->closed++;
}

/* Close what is still open and prove nothing is left on the loop. */
static void pair_finish(pair *p)
{
    if (!uv_is_closing(&p->t.io.h))
        transport_close(&p->t, false, on_closed);
    uv_close((uv_handle_t *) &p->watchdog, NULL);
    assert_int_equal(uv_run(&p->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(p->closed, 1);
    if (p->peer >= 0)
        close(p->peer);
    assert_int_equal(uv_loop_close(&p->loop), 0);
}

/* Wait (without a sleep) until fd has something to read, EOF or an error. */
static void wait_readable(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, WATCHDOG_MS), 1);
}

/* The transport's socket, for waiting on it with poll(). */
static int transport_fd(transport *t)
{
    uv_os_fd_t fd;
    assert_int_equal(uv_fileno(&t->io.h, &fd), 0);
    return fd;
}

static void peer_send(int fd, const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(send(fd, s, n, 0), (ssize_t) n);
}

static void test_peek(void **state)
{
    (void) state;
    pair p;
    pair_open(&p, 0);
    assert_int_equal(transport_peek(&p.t), 0); /* nothing pending */

    peer_send(p.peer, "abc");
    wait_readable(transport_fd(&p.t));
    assert_int_equal(transport_peek(&p.t), 1);
    assert_int_equal(transport_peek(&p.t), 1); /* still there: peeking consumes nothing */
    char buf[8];
    assert_int_equal(transport_read_now(&p.t, buf, sizeof(buf)), 3);
    assert_memory_equal(buf, "abc", 3);
    assert_int_equal(transport_peek(&p.t), 0);
    pair_finish(&p);
}

static void test_peek_after_fin(void **state)
{
    (void) state;
    pair p;
    pair_open(&p, 0);
    assert_int_equal(shutdown(p.peer, SHUT_WR), 0);
    wait_readable(transport_fd(&p.t));
    assert_int_equal(transport_peek(&p.t), FERRY_EOF);
    assert_int_equal(transport_peek(&p.t), FERRY_EOF);
    pair_finish(&p);
}

static void test_peek_after_rst(void **state)
{
    (void) state;
    pair p;
    pair_open(&p, 0);
    struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* close() sends a RST */
    assert_int_equal(setsockopt(p.peer, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(p.peer);
    p.peer = -1;
    wait_readable(transport_fd(&p.t));
    int rc = transport_peek(&p.t);
    assert_true(rc < 0);
    assert_int_not_equal(rc, FERRY_EOF);
    assert_int_equal(rc, FERRY_ECONNRESET);
    pair_finish(&p);
}

static void test_read_now(void **state)
{
    (void) state;
    pair p;
    pair_open(&p, 0);
    char buf[16];
    assert_int_equal(transport_read_now(&p.t, buf, sizeof(buf)), 0); /* nothing waiting */

    peer_send(p.peer, "hello, world");
    wait_readable(transport_fd(&p.t));
    assert_int_equal(transport_read_now(&p.t, buf, 5), 5); /* no more than asked */
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(transport_read_now(&p.t, buf, sizeof(buf)), 7);
    assert_memory_equal(buf, ", world", 7);
    assert_int_equal(transport_read_now(&p.t, buf, sizeof(buf)), 0);

    assert_int_equal(shutdown(p.peer, SHUT_WR), 0);
    wait_readable(transport_fd(&p.t));
    assert_int_equal(transport_read_now(&p.t, buf, sizeof(buf)), FERRY_EOF);

    /* once closing, there is no socket: UV_EBADF, not a socket error */
    transport_close(&p.t, false, on_closed);
    assert_int_equal(transport_read_now(&p.t, buf, sizeof(buf)), UV_EBADF);
    assert_int_equal(transport_peek(&p.t), UV_EBADF);
    assert_int_equal(transport_shutdown_write(&p.t), UV_EBADF);
    pair_finish(&p);
}

/* ---- a flush bigger than the socket buffers ---- */

#define BIG_BYTES ((size_t) 8 << 20)
#define TAIL_BYTES ((size_t) 100000)

typedef struct big_flush {
    pair p;
    transport_out q;
    uv_poll_t reader; /* the peer, reading as the bytes come */
    char *rx;
    size_t rx_len;
    size_t expect_write; /* bytes the in-flight uv_write carries */
    int writes_done;
} big_flush;

static unsigned char big_byte(size_t i)
{
    return (unsigned char) (i * 131 + (i >> 12));
}

static unsigned char tail_byte(size_t i)
{
    return (unsigned char) ~(i * 7);
}

static void on_big_written(uv_write_t *req, int status)
{
    transport_out *q = container_of(req, transport_out, wreq);
    big_flush *b = container_of(q, big_flush, q);
    assert_int_equal(status, 0);
    assert_int_equal(transport_out_written(q, status), b->expect_write);
    assert_false(q->writing);
    b->writes_done++;
    /* the bytes appended meanwhile go now */
    size_t queued = q->out_len;
    int64_t n = transport_flush(&b->p.t, q, on_big_written);
    assert_true(n >= 0);
    if (q->writing)
        b->expect_write = queued - (size_t) n;
}

static void on_peer_readable(uv_poll_t *h, int status, int events)
{
    big_flush *b = h->data;
    (void) events;
    assert_int_equal(status, 0);
    for (;;) {
        size_t room = BIG_BYTES + TAIL_BYTES - b->rx_len;
        ssize_t n = recv(b->p.peer, b->rx + b->rx_len, room, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        assert_true(n > 0);
        b->rx_len += (size_t) n;
        if (b->rx_len == BIG_BYTES + TAIL_BYTES) {
            uv_poll_stop(h);
            char extra;
            assert_int_equal(recv(b->p.peer, &extra, 1, 0), -1); /* nothing beyond */
            return;
        }
    }
}

static void test_flush_larger_than_socket_buffers(void **state)
{
    (void) state;
    big_flush *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    pair_open(&b->p, 64 * 1024);
    transport_out *q = &b->q;

    char *src = malloc(BIG_BYTES);
    assert_non_null(src);
    for (size_t i = 0; i < BIG_BYTES; i++)
        src[i] = (char) big_byte(i);
    assert_int_equal(transport_out_reserve(q, BIG_BYTES), 0);
    transport_out_put(q, src, BIG_BYTES);
    assert_int_equal(q->queued_total, BIG_BYTES);

    int64_t n = transport_flush(&b->p.t, q, on_big_written);
    assert_true(n >= 0);
    assert_true((size_t) n < BIG_BYTES); /* the kernel could not take it all... */
    assert_true(q->writing);             /* ...so the rest is a uv_write */
    assert_int_equal(q->flushed_total, (uint64_t) n);
    assert_int_equal(q->out_len, 0);
    assert_int_equal(q->wout_len, BIG_BYTES - (size_t) n);
    assert_true(transport_out_pending(q));
    b->expect_write = BIG_BYTES - (size_t) n;

    /* appended while the write is in flight: queued behind it, not sent */
    for (size_t i = 0; i < TAIL_BYTES; i++)
        src[i] = (char) tail_byte(i);
    assert_int_equal(transport_out_reserve(q, TAIL_BYTES), 0);
    transport_out_put(q, src, TAIL_BYTES);
    assert_int_equal(transport_flush(&b->p.t, q, on_big_written), 0);
    assert_int_equal(q->out_len, TAIL_BYTES);
    assert_int_equal(q->flushed_total, (uint64_t) n);
    free(src);

    b->rx = malloc(BIG_BYTES + TAIL_BYTES);
    assert_non_null(b->rx);
    assert_int_equal(fcntl(b->p.peer, F_SETFL, fcntl(b->p.peer, F_GETFL) | O_NONBLOCK), 0);
    assert_int_equal(uv_poll_init(&b->p.loop, &b->reader, b->p.peer), 0);
    b->reader.data = b;
    assert_int_equal(uv_poll_start(&b->reader, UV_READABLE, on_peer_readable), 0);
    while (b->rx_len < BIG_BYTES + TAIL_BYTES || transport_out_pending(q))
        uv_run(&b->p.loop, UV_RUN_ONCE);

    assert_true(b->writes_done >= 1);
    assert_int_equal(q->flushed_total, BIG_BYTES + TAIL_BYTES);
    assert_int_equal(q->queued_total, BIG_BYTES + TAIL_BYTES);
    for (size_t i = 0; i < BIG_BYTES; i++)
        if ((unsigned char) b->rx[i] != big_byte(i))
            fail_msg("byte %zu of the big write differs", i);
    for (size_t i = 0; i < TAIL_BYTES; i++)
        if ((unsigned char) b->rx[BIG_BYTES + i] != tail_byte(i))
            fail_msg("byte %zu of the bytes appended meanwhile differs", i);

    uv_close((uv_handle_t *) &b->reader, NULL);
    pair_finish(&b->p);
    transport_out_free(q);
    assert_null(q->out);
    assert_null(q->wout);
    free(b->rx);
    free(b);
}

/* ---- our FIN, reading on ---- */

typedef struct reader {
    char buf[64];
    size_t len;
    ssize_t last; /* the last nread */
    int calls;
} reader;

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    reader *r = h->loop->data;
    (void) suggested;
    *out = uv_buf_init(r->buf + r->len, (unsigned) (sizeof(r->buf) - r->len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    reader *r = s->loop->data;
    (void) buf;
    if (nread == 0)
        return;
    r->calls++;
    r->last = nread;
    if (nread > 0)
        r->len += (size_t) nread;
    else
        transport_read_stop(transport_of(s));
}

static void test_shutdown_write_keeps_reading(void **state)
{
    (void) state;
    pair p;
    reader r = {0};
    pair_open(&p, 0);
    p.loop.data = &r;
    assert_int_equal(transport_read_start(&p.t, on_alloc, on_read), 0);
    assert_true(p.t.reading);
    assert_int_equal(transport_read_start(&p.t, on_alloc, on_read), 0); /* idempotent */

    assert_int_equal(transport_shutdown_write(&p.t), 0);
    char b[8];
    wait_readable(p.peer);
    assert_int_equal(recv(p.peer, b, sizeof(b), 0), 0); /* the peer sees our FIN */

    peer_send(p.peer, "still here");
    while (r.len < 10)
        uv_run(&p.loop, UV_RUN_ONCE);
    assert_memory_equal(r.buf, "still here", 10);

    assert_int_equal(shutdown(p.peer, SHUT_WR), 0);
    while (r.last != UV_EOF)
        uv_run(&p.loop, UV_RUN_ONCE);
    assert_false(p.t.reading);
    transport_read_stop(&p.t); /* idempotent */
    pair_finish(&p);
}

/* ---- closing ---- */

static void test_close_with_reset(void **state)
{
    (void) state;
    pair p;
    pair_open(&p, 0);
    transport_close(&p.t, true, on_closed);
    transport_close(&p.t, true, on_closed); /* already closing: nothing more */
    while (!p.closed)
        uv_run(&p.loop, UV_RUN_ONCE);
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
    transport_close(&p.t, false, on_closed);
    while (!p.closed)
        uv_run(&p.loop, UV_RUN_ONCE);
    char b[8];
    wait_readable(p.peer);
    assert_int_equal(recv(p.peer, b, sizeof(b), 0), 0);
    pair_finish(&p);
}

/* ---- connecting, as the client will ---- */

typedef struct connecting {
    int status;
    int done;
} connecting;

static void on_connect(uv_connect_t *req, int status)
{
    connecting *c = req->data;
    c->status = status;
    c->done = 1;
}

static void test_connect(void **state)
{
    (void) state;
    pair p;
    memset(&p, 0, sizeof(p));
    assert_int_equal(uv_loop_init(&p.loop), 0);
    assert_int_equal(uv_timer_init(&p.loop, &p.watchdog), 0);
    assert_int_equal(uv_timer_start(&p.watchdog, on_watchdog, WATCHDOG_MS, 0), 0);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    assert_int_equal(bind(lfd, (struct sockaddr *) &a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 1), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *) &a, &alen), 0);

    assert_int_equal(transport_tcp_init(&p.loop, &p.t), 0);
    p.t.io.h.data = &p;
    uv_connect_t req;
    connecting c = {0};
    req.data = &c;
    assert_int_equal(transport_connect(&p.t, &req, (struct sockaddr *) &a, on_connect), 0);
    while (!c.done)
        uv_run(&p.loop, UV_RUN_ONCE);
    assert_int_equal(c.status, 0);
    p.peer = accept(lfd, NULL, NULL);
    assert_true(p.peer >= 0);
    close(lfd);

    int nodelay = 0;
    socklen_t len = sizeof(nodelay);
    assert_int_equal(getsockopt(transport_fd(&p.t), IPPROTO_TCP, TCP_NODELAY, &nodelay, &len), 0);
    assert_true(nodelay);

    struct sockaddr_storage peer_addr, local;
    socklen_t llen = sizeof(local);
    assert_int_equal(transport_peername(&p.t, &peer_addr), 0);
    assert_int_equal(getsockname(p.peer, (struct sockaddr *) &local, &llen), 0);
    assert_int_equal(((struct sockaddr_in *) &peer_addr)->sin_port,
                     ((struct sockaddr_in *) &local)->sin_port);

    peer_send(p.peer, "x");
    wait_readable(transport_fd(&p.t));
    assert_int_equal(transport_peek(&p.t), 1);
    pair_finish(&p);
}

/* ---- the output buffers alone ---- */

static void test_out_buffers(void **state)
{
    (void) state;
    transport_out q = {0};
    assert_int_equal(transport_out_reserve(&q, 10), 0);
    assert_int_equal(q.out_cap, 4096); /* first size */
    transport_out_put(&q, "0123456789", 10);
    assert_int_equal(transport_out_reserve(&q, 5000), 0);
    assert_int_equal(q.out_cap, 8192); /* doubled, contents kept */
    assert_memory_equal(q.out, "0123456789", 10);
    assert_true(transport_out_pending(&q));

    /* a failed write counts nothing; a completed one counts its bytes */
    q.wout_len = 7;
    q.writing = true;
    assert_int_equal(transport_out_written(&q, UV_EPIPE), 0);
    assert_false(q.writing);
    assert_int_equal(q.wout_len, 0);
    assert_int_equal(q.flushed_total, 0);
    q.wout_len = 7;
    q.writing = true;
    assert_int_equal(transport_out_written(&q, 0), 7);
    assert_int_equal(q.flushed_total, 7);

    /* reset keeps the buffer; trim frees what is bigger than asked */
    transport_out_reset(&q);
    assert_int_equal(q.out_len, 0);
    assert_int_equal(q.queued_total, 0);
    assert_int_equal(q.flushed_total, 0);
    assert_false(transport_out_pending(&q));
    transport_out_trim(&q, 8192);
    assert_non_null(q.out);
    transport_out_trim(&q, 4096);
    assert_null(q.out);
    assert_int_equal(q.out_cap, 0);

    /* trim leaves a buffer with bytes still queued alone */
    assert_int_equal(transport_out_reserve(&q, 10000), 0);
    transport_out_put(&q, "x", 1);
    transport_out_trim(&q, 4096);
    assert_non_null(q.out);
    transport_out_free(&q);
    assert_null(q.out);
    assert_int_equal(q.out_cap, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peek),
        cmocka_unit_test(test_peek_after_fin),
        cmocka_unit_test(test_peek_after_rst),
        cmocka_unit_test(test_read_now),
        cmocka_unit_test(test_flush_larger_than_socket_buffers),
        cmocka_unit_test(test_shutdown_write_keeps_reading),
        cmocka_unit_test(test_close_with_reset),
        cmocka_unit_test(test_close_with_fin),
        cmocka_unit_test(test_connect),
        cmocka_unit_test(test_out_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
