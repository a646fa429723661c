/* listener.c — see listener.h. */
#define _GNU_SOURCE /* accept4 */
#include "server/listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "ferry.h"

#define ACCEPT_BATCH 128 /* accepts per wake-up, so one listener cannot starve the loop */

static int bind_listen(listener *l, int fd, const struct sockaddr *addr, socklen_t len,
                       uint32_t backlog)
{
    if (bind(fd, addr, len) < 0 || listen(fd, (int) backlog) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    l->fd = fd;
    l->closed = false;
    return 0;
}

int listener_bind_tcp(listener *l, const struct sockaddr *addr, uint32_t backlog, bool reuse_port)
{
    memset(l, 0, sizeof(*l));
    l->fd = -1;
    l->closed = true;
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
#ifdef SO_REUSEPORT
    if (reuse_port)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
#else
    (void) reuse_port;
#endif
    socklen_t len = addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                : sizeof(struct sockaddr_in);
    int rc = bind_listen(l, fd, addr, len, backlog);
    if (rc < 0)
        return rc;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *) &ss, &sl);
    l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &ss)->sin6_port
                                             : ((struct sockaddr_in *) &ss)->sin_port);
    return 0;
}

int listener_bind_unix(listener *l, const char *path, uint32_t backlog)
{
    memset(l, 0, sizeof(*l));
    l->fd = -1;
    l->closed = true;
    struct sockaddr_un sun;
    if (!path || strlen(path) >= sizeof(sun.sun_path))
        return FERRY_EINVAL;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    l->is_pipe = true;
    return bind_listen(l, fd, (struct sockaddr *) &sun, sizeof(sun), backlog);
}

int listener_adopt_fd(listener *l, int fd)
{
    memset(l, 0, sizeof(*l));
    l->fd = -1;
    l->closed = true;
    int acc = 0, type = 0;
    socklen_t n = sizeof(acc), tn = sizeof(type);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &n) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tn) < 0 ||
        getsockname(fd, (struct sockaddr *) &ss, &sl) < 0) {
        int err = errno == ENOTSOCK ? FERRY_EINVAL : -errno;
        close(fd);
        return err;
    }
    if (!acc || type != SOCK_STREAM ||
        (ss.ss_family != AF_INET && ss.ss_family != AF_INET6 && ss.ss_family != AF_UNIX)) {
        close(fd);
        return FERRY_EINVAL; /* not a listening stream socket */
    }
    /* inherited sockets come blocking and without close-on-exec */
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
        fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    l->fd = fd;
    l->closed = false;
    l->is_pipe = ss.ss_family == AF_UNIX;
    if (!l->is_pipe)
        l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &ss)->sin6_port
                                                 : ((struct sockaddr_in *) &ss)->sin_port);
    return 0;
}

static void on_readable(uv_poll_t *p, int status, int events);

static void on_retry(uv_timer_t *t)
{
    listener_resume(t->data);
}

int listener_start(listener *l, uv_loop_t *loop, const listener_owner *owner)
{
    l->owner = owner;
    int rc = uv_poll_init_socket(loop, &l->poll, l->fd);
    if (rc < 0)
        return rc;
    uv_timer_init(loop, &l->retry);
    l->poll.data = l->retry.data = l;
    l->started = true;
    l->paused = false;
    uv_poll_start(&l->poll, UV_READABLE, on_readable);
    return 0;
}

void listener_pause(listener *l)
{
    if (l->paused || !l->started || l->closed)
        return;
    l->paused = true;
    uv_poll_stop(&l->poll);
}

void listener_resume(listener *l)
{
    if (!l->paused || l->closed || uv_is_active((uv_handle_t *) &l->retry))
        return;
    l->paused = false;
    uv_poll_start(&l->poll, UV_READABLE, on_readable);
}

void listener_accept(listener *l, int batch)
{
    for (int i = 0; i < batch && !l->closed; i++) {
        if (!l->owner->may_accept(l)) {
            if (!l->paused)
                l->pauses_full++;
            listener_pause(l);
            return;
        }
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO || errno == EPERM)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Room made (idle connections closed: their descriptors are
                 * free now)? Then the client waiting is worth more: go on.
                 * Else leave it in the backlog and try again shortly: never
                 * accept-and-drop, never spin. */
                if ((errno == EMFILE || errno == ENFILE) && l->owner->on_emfile(l))
                    continue;
                if (!l->paused)
                    l->pauses_emfile++;
                listener_pause(l);
                uv_timer_start(&l->retry, on_retry, LISTENER_RETRY_MS, 0);
            }
            return;
        }
        l->owner->on_accept(l, fd, l->is_pipe);
    }
}

static void on_readable(uv_poll_t *p, int status, int events)
{
    (void) events;
    if (status < 0)
        return;
    listener_accept(p->data, ACCEPT_BATCH);
}

void listener_close(listener *l, closer *c)
{
    if (l->closed)
        return;
    l->closed = true;
    if (l->started) {
        uv_timer_stop(&l->retry);
        closer_handle(c, (uv_handle_t *) &l->poll); /* stops the poll: the fd may go */
        closer_handle(c, (uv_handle_t *) &l->retry);
    }
    close(l->fd);
    l->fd = -1;
}
