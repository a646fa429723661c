/* transport.c — see transport.h. */
#include "core/transport.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "core/buf.h"
#include "ferry.h"

int transport_open(uv_loop_t *loop, transport *t, uv_os_sock_t fd, bool is_pipe,
                   bool *initialised)
{
    *initialised = false;
    t->is_pipe = is_pipe;
    t->reading = false;
    int rc = is_pipe ? uv_pipe_init(loop, &t->io.pipe, 0) : uv_tcp_init(loop, &t->io.tcp);
    if (rc < 0)
        return rc;
    *initialised = true;
    rc = is_pipe ? uv_pipe_open(&t->io.pipe, fd) : uv_tcp_open(&t->io.tcp, fd);
    if (rc < 0)
        return rc;
    if (!is_pipe)
        uv_tcp_nodelay(&t->io.tcp, 1);
    return 0;
}

int transport_tcp_init(uv_loop_t *loop, transport *t)
{
    t->is_pipe = false;
    t->reading = false;
    return uv_tcp_init(loop, &t->io.tcp);
}

int transport_connect(transport *t, uv_connect_t *req, const struct sockaddr *addr,
                      uv_connect_cb cb)
{
    uv_tcp_nodelay(&t->io.tcp, 1);
    return uv_tcp_connect(req, &t->io.tcp, addr, cb);
}

/* The out-of-line halves of the inline calls in transport.h: these do the
 * work once the inline check has found there is some. */
int transport_read_start_now(transport *t, uv_alloc_cb alloc_cb, uv_read_cb read_cb)
{
    int rc = uv_read_start(&t->io.s, alloc_cb, read_cb);
    if (rc == 0)
        t->reading = true;
    return rc;
}

void transport_read_stop_now(transport *t)
{
    uv_read_stop(&t->io.s);
    t->reading = false;
}

/* Grows q->out (owner: q, freed by transport_out_free or _trim). */
int transport_out_grow(transport_out *q, size_t n)
{
    return buf_reserve(&q->out, &q->out_cap, q->out_len + n, 4096);
}

void transport_out_free(transport_out *q)
{
    free(q->out);
    free(q->wout);
    q->out = q->wout = NULL;
    q->out_cap = q->wout_cap = q->out_len = q->wout_len = 0;
}

void transport_out_trim_now(transport_out *q, size_t keep_bytes)
{
    if (q->out_cap > keep_bytes && !q->out_len) {
        free(q->out);
        q->out = NULL;
        q->out_cap = 0;
    }
    if (q->wout_cap > keep_bytes && !q->writing) {
        free(q->wout);
        q->wout = NULL;
        q->wout_cap = 0;
    }
}

int64_t transport_flush_rest(transport *t, transport_out *q, size_t taken, uv_write_cb cb)
{
    /* swap buffers: the in-flight write keeps `wout`, new bytes go to `out` */
    char *w = q->wout;
    size_t wcap = q->wout_cap;
    q->wout = q->out;
    q->wout_cap = q->out_cap;
    q->wout_len = q->out_len - taken;
    q->out = w;
    q->out_cap = wcap;
    q->out_len = 0;
    uv_buf_t rest = {.base = q->wout + taken, .len = q->wout_len};
    int rc = uv_write(&q->wreq, &t->io.s, &rest, 1, cb);
    if (rc < 0)
        return rc;
    q->writing = true;
    return (int64_t) taken;
}

size_t transport_out_written(transport_out *q, int status)
{
    size_t n = status < 0 ? 0 : q->wout_len;
    q->flushed_total += n;
    q->wout_len = 0;
    q->writing = false;
    return n;
}

int transport_peek(transport *t)
{
    uv_os_fd_t fd;
    int rc = uv_fileno(&t->io.h, &fd);
    if (rc != 0)
        return rc;
    char b;
    for (;;) {
        ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
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

ssize_t transport_read_now(transport *t, char *buf, size_t cap)
{
    uv_os_fd_t fd;
    int rc = uv_fileno(&t->io.h, &fd);
    if (rc != 0)
        return rc;
    for (;;) {
        ssize_t n = recv(fd, buf, cap, MSG_DONTWAIT);
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

int transport_shutdown_write(transport *t)
{
    uv_os_fd_t fd;
    int rc = uv_fileno(&t->io.h, &fd);
    if (rc != 0)
        return rc;
    return shutdown(fd, SHUT_WR) == 0 ? 0 : -errno;
}

int transport_peername(transport *t, struct sockaddr_storage *addr)
{
    if (t->is_pipe)
        return FERRY_ENOTSUP;
    int len = (int) sizeof(*addr);
    return uv_tcp_getpeername(&t->io.tcp, (struct sockaddr *) addr, &len);
}

void transport_close(transport *t, bool reset, uv_close_cb cb)
{
    t->reading = false;
    if (uv_is_closing(&t->io.h))
        return;
    if (reset && !t->is_pipe && uv_tcp_close_reset(&t->io.tcp, cb) == 0)
        return;
    uv_close(&t->io.h, cb);
}
