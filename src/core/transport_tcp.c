/* transport_tcp.c — the plain transport: TCP and unix stream sockets.
 *
 * The socket is watched by a uv_poll_t and read and written with our own
 * recv()/send() calls rather than through a uv_tcp_t, for three reasons:
 * - send() takes MSG_NOSIGNAL, so a write to a socket the peer reset is an
 *   error code and never a SIGPIPE: ferry does not touch the process-wide
 *   SIGPIPE disposition, and a program that only uses the client is safe
 *   (libuv writes with write(), which raises SIGPIPE);
 * - one output buffer with a written offset, instead of a uv_write_t and a
 *   second buffer for bytes queued while a write is in flight;
 * - a uv_poll_t is 160 bytes where a uv_tcp_t is 248 (a uv_pipe_t 264), and
 *   an idle keep-alive connection is mostly its handle.
 * The system calls per request are the ones libuv would make (one recv, one
 * send, no epoll_ctl while interest does not change).
 *
 * libuv's poll handle reports a socket error (POLLERR) as UV_EBADF and stops
 * itself; the real error is then read from the socket (bytes the peer sent
 * before its RST are still delivered first, as libuv's streams do).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/transport.h"
#include "ferry.h"

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* macOS: SO_NOSIGPIPE is set on the socket instead */
#endif

static void tcp_on_poll(uv_poll_t *h, int status, int events);

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void set_nosigpipe(int fd)
{
#ifdef SO_NOSIGPIPE
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#else
    (void) fd;
#endif
}

void transport_sock_init(transport *t, transport_pool *p, int fd, bool is_pipe)
{
    t->ops = &transport_tcp_ops;
    t->pool = p;
    t->rbuf = NULL;
    t->out = NULL;
    t->impl = NULL;
    t->queued_total = t->flushed_total = 0;
    t->fd = fd;
    t->flags = is_pipe ? TF_PIPE : 0;
    t->poll_events = 0;
}

int transport_tcp_open(transport *t, transport_pool *p, uv_loop_t *loop, uv_os_sock_t fd,
                       bool is_pipe)
{
    transport_sock_init(t, p, fd, is_pipe);
    int rc = uv_poll_init_socket(loop, &t->poll, fd);
    if (rc < 0) {
        close(fd);
        t->fd = -1;
        return rc;
    }
    t->poll.data = t;
    if (!is_pipe)
        set_nodelay(fd);
    set_nosigpipe(fd);
    return 0;
}

int transport_tcp_connect(transport *t, transport_pool *p, uv_loop_t *loop,
                          const struct sockaddr *addr)
{
    transport_sock_init(t, p, -1, false);
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = transport_tcp_open(t, p, loop, fd, false);
    if (rc < 0)
        return rc;
    socklen_t len = addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                : sizeof(struct sockaddr_in);
    int r;
    do
        r = connect(fd, addr, len);
    while (r < 0 && errno == EINTR);
    /* Done or refused at once, or under way: the answer comes from the poll
     * either way (a failed socket polls as an error), never inside this call. */
    t->flags |= TF_CONNECTING;
    transport_sock_watch(t, UV_WRITABLE, tcp_on_poll);
    return 0;
}

/* ---- the socket calls ---- */

ssize_t transport_sock_recv(transport *t, char *buf, size_t cap)
{
    if (t->fd < 0)
        return UV_EBADF;
    for (;;) {
        ssize_t n = recv(t->fd, buf, cap, MSG_DONTWAIT);
        if (n > 0)
            return n;
        if (n == 0)
            return cap ? FERRY_EOF : 0;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return -errno;
    }
}

ssize_t transport_sock_send(transport *t, const char *buf, size_t n)
{
    if (t->fd < 0)
        return UV_EBADF;
    for (;;) {
        ssize_t w = send(t->fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w >= 0)
            return w;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return -errno;
    }
}

/* Start, change or stop the poll; uv_poll_start costs two epoll_ctl calls,
 * so only a real change reaches it. */
void transport_sock_watch(transport *t, int events, uv_poll_cb cb)
{
    if (t->fd < 0 || (t->flags & TF_CLOSING))
        return;
    if (events == t->poll_events && (events == 0 || (t->flags & TF_POLLING)))
        return;
    t->poll_events = (uint16_t) events;
    if (events) {
        uv_poll_start(&t->poll, events, cb);
        t->flags |= TF_POLLING;
    } else {
        uv_poll_stop(&t->poll);
        t->flags &= (uint16_t) ~TF_POLLING;
    }
}

int transport_sock_error(transport *t, int fallback)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (t->fd < 0 || getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return fallback;
    return err ? -err : fallback;
}

/* ---- the plain transport ---- */

static int tcp_events(const transport *t)
{
    int ev = 0;
    if ((t->flags & TF_WANT_READ) && !(t->flags & TF_ENDED))
        ev |= UV_READABLE;
    if (t->flags & (TF_WRITING | TF_CONNECTING))
        ev |= UV_WRITABLE;
    return ev;
}

static void tcp_update(transport *t)
{
    transport_sock_watch(t, tcp_events(t), tcp_on_poll);
}

/* Readable: one recv into the read buffer (or the discard buffer), then the
 * owner hears of it. */
static void tcp_read(transport *t)
{
    const transport_events *ev = t->pool->ev;
    ssize_t n;
    if (t->flags & TF_DISCARD) {
        n = transport_sock_recv(t, t->pool->discard, sizeof(t->pool->discard));
    } else {
        buf_block *b = transport_rbuf_get(t);
        if (!b) {
            t->flags |= TF_ENDED;
            tcp_update(t);
            ev->on_read(t, FERRY_ENOMEM);
            return;
        }
        if (b->len == b->size) { /* the owner must consume or grow first */
            t->flags &= (uint16_t) ~TF_WANT_READ;
            tcp_update(t);
            return;
        }
        n = transport_sock_recv(t, b->data + b->len, b->size - b->len);
        if (n > 0)
            buf_commit(b, (size_t) n);
    }
    if (n > 0 && !(t->flags & TF_DISCARD)) /* bytes thrown away are not counted in */
        t->pool->bytes_in += (uint64_t) n;
    if (n == 0) {
        transport_rbuf_release(t);
        return;
    }
    if (n < 0) {
        t->flags |= TF_ENDED; /* an end is sticky: do not poll for it again */
        tcp_update(t);
    }
    ev->on_read(t, n);
    if (!(t->flags & TF_CLOSING))
        transport_rbuf_release(t);
}

/* Writable: the rest of the output, or the end of a connect. */
static void tcp_write_more(transport *t)
{
    const transport_events *ev = t->pool->ev;
    transport_out *o = t->out;
    ssize_t w = o ? transport_sock_send(t, o->buf + o->off, o->len - o->off) : 0;
    if (w < 0) {
        t->flags &= (uint16_t) ~TF_WRITING;
        o->off = o->len = 0; /* the connection failed: nothing more goes out */
        tcp_update(t);
        ev->on_written(t, (int) w);
        return;
    }
    if (w == 0 && o && o->off < o->len)
        return; /* a spurious wake-up */
    if (o && w > 0)
        transport_out_advance(t, (size_t) w);
    if (!t->out || t->out->off == t->out->len) {
        t->flags &= (uint16_t) ~TF_WRITING;
        tcp_update(t);
        if (t->flags & TF_SHUT_PENDING) {
            t->flags &= (uint16_t) ~TF_SHUT_PENDING;
            shutdown(t->fd, SHUT_WR);
        }
        transport_out_release(t);
    }
    ev->on_written(t, 0);
}

static void tcp_on_poll(uv_poll_t *h, int status, int events)
{
    transport *t = h->data;
    if (t->flags & TF_CLOSING)
        return;
    if (status < 0) {
        /* POLLERR: libuv stopped the handle; restart it after reading the
         * real error where the owner will hear it. */
        t->flags &= (uint16_t) ~TF_POLLING;
        t->poll_events = 0;
        events = UV_READABLE | UV_WRITABLE;
    }
    if (t->flags & TF_CONNECTING) {
        if (!(events & UV_WRITABLE))
            return;
        t->flags &= (uint16_t) ~TF_CONNECTING;
        int err = transport_sock_error(t, status < 0 ? status : 0);
        tcp_update(t);
        t->pool->ev->on_ready(t, err);
        return;
    }
    if ((events & UV_WRITABLE) && (t->flags & TF_WRITING)) {
        tcp_write_more(t);
        if (t->flags & TF_CLOSING)
            return;
    }
    if ((events & UV_READABLE) && (t->flags & TF_WANT_READ) && !(t->flags & TF_ENDED)) {
        tcp_read(t);
        if (t->flags & TF_CLOSING)
            return;
    }
    if (status < 0 || !(t->flags & TF_POLLING))
        tcp_update(t);
}

static int64_t tcp_flush(transport *t)
{
    if (t->flags & TF_WRITING)
        return 0; /* waiting for room: the new bytes follow the others */
    transport_out *o = t->out;
    ssize_t w = transport_sock_send(t, o->buf + o->off, o->len - o->off);
    if (w < 0)
        return w;
    transport_out_advance(t, (size_t) w);
    if (o->off < o->len) {
        t->flags |= TF_WRITING;
        tcp_update(t);
    } else if (t->flags & TF_IDLE) {
        transport_out_release(t);
    }
    return w;
}

static int tcp_pending(transport *t)
{
    if (t->fd < 0 || (t->flags & TF_CLOSING))
        return UV_EBADF;
    char b;
    for (;;) {
        ssize_t n = recv(t->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n > 0)
            return 1;
        if (n == 0)
            return FERRY_EOF;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return -errno;
    }
}

/* Everything the kernel holds, into the read buffer. An end seen after some
 * bytes is left in the kernel (it stays there) for the next read. */
static ssize_t tcp_read_now(transport *t)
{
    if (t->fd < 0 || (t->flags & TF_CLOSING))
        return UV_EBADF;
    ssize_t total = 0;
    for (;;) {
        buf_block *b = transport_rbuf_get(t);
        if (!b || b->len == b->size)
            break;
        ssize_t n = transport_sock_recv(t, b->data + b->len, b->size - b->len);
        if (n > 0) {
            buf_commit(b, (size_t) n);
            t->pool->bytes_in += (uint64_t) n;
            total += n;
            continue;
        }
        if (n < 0 && total == 0) {
            transport_rbuf_release(t);
            return n;
        }
        break;
    }
    transport_rbuf_release(t);
    return total;
}

static int tcp_shutdown(transport *t)
{
    if (t->fd < 0 || (t->flags & TF_CLOSING))
        return UV_EBADF;
    if (transport_out_pending(t)) {
        int64_t r = transport_flush(t);
        if (r < 0)
            return (int) r;
    }
    if (transport_out_pending(t)) {
        t->flags |= TF_SHUT_PENDING; /* tcp_write_more sends it */
        return 0;
    }
    return shutdown(t->fd, SHUT_WR) == 0 ? 0 : -errno;
}

static void tcp_on_closed(uv_handle_t *h)
{
    transport *t = h->data;
    t->pool->ev->on_closed(t);
}

void transport_sock_close(transport *t, bool reset, uv_close_cb cb)
{
    transport_release_all(t);
    if (t->fd < 0)
        return;
    if (reset && !(t->flags & TF_PIPE)) {
        struct linger l = {1, 0}; /* close() now sends a RST */
        setsockopt(t->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    }
    t->flags &= (uint16_t) ~TF_POLLING;
    uv_close((uv_handle_t *) &t->poll, cb);
    close(t->fd); /* safe right after uv_close: the poll is off */
    t->fd = -1;
}

static void tcp_close(transport *t, bool reset)
{
    transport_sock_close(t, reset, tcp_on_closed);
}

int transport_sock_peername(transport *t, struct sockaddr_storage *addr)
{
    if (t->flags & TF_PIPE)
        return FERRY_ENOTSUP;
    if (t->fd < 0)
        return UV_EBADF;
    socklen_t len = sizeof(*addr);
    return getpeername(t->fd, (struct sockaddr *) addr, &len) == 0 ? 0 : -errno;
}

const transport_ops transport_tcp_ops = {
    .name = "tcp",
    .update = tcp_update,
    .flush = tcp_flush,
    .pending = tcp_pending,
    .read_now = tcp_read_now,
    .shutdown = tcp_shutdown,
    .close = tcp_close,
    .idle = NULL,
    .peername = transport_sock_peername,
    .tls_info = NULL,
};
