/* listener.h — one listening socket and its accept loop.
 *
 * Accepting is ours, not uv_listen's: the socket is watched by a uv_poll_t
 * and we call accept4() ourselves, so accepting can pause for real — stop
 * polling and leave clients waiting in the kernel's backlog — when the
 * server is full (max_connections) or out of file descriptors. libuv's
 * listener answers EMFILE by accepting and closing the excess connections.
 *
 * The listener knows nothing of connections: it hands each accepted socket
 * to its owner's on_accept, asks may_accept before each accept, and reports
 * EMFILE through on_emfile (the owner may free descriptors before the
 * retry). Memory: embedded in its owner's array; it must not move or be freed
 * before listener_close's closer completed. */
#ifndef FERRY_LISTENER_H
#define FERRY_LISTENER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "core/closer.h"

typedef struct listener listener;

typedef struct listener_owner {
    void *data;
    /* A socket was accepted: it is the owner's now (it closes it on failure). */
    void (*on_accept)(listener *l, uv_os_sock_t fd, bool is_pipe);
    /* Whether another connection may be accepted now; false pauses until
     * listener_resume (a connection slot freed). */
    bool (*may_accept)(listener *l);
    /* Out of file descriptors. The owner may close idle connections to make
     * room: if it did (true), accepting goes on at once; otherwise it pauses
     * for LISTENER_RETRY_MS. */
    bool (*on_emfile)(listener *l);
} listener_owner;

struct listener {
    const listener_owner *owner;
    uv_os_sock_t fd;
    bool is_pipe;
    bool started;  /* poll and retry timer initialised */
    bool paused;   /* poll stopped */
    bool closed;   /* socket closed */
    int port;      /* bound TCP port, 0 for a unix socket */
    uint64_t pauses_emfile, pauses_full;
    uv_poll_t poll;
    uv_timer_t retry;
};

#define LISTENER_RETRY_MS 50 /* back-off after EMFILE/ENFILE */

/* Bind and listen on addr (TCP; reuse_port sets SO_REUSEPORT) or on a unix
 * socket path. The socket is open but not yet accepting. */
int listener_bind_tcp(listener *l, const struct sockaddr *addr, uint32_t backlog, bool reuse_port);
int listener_bind_unix(listener *l, const char *path, uint32_t backlog);
/* Take fd, a socket that already listens (closed on failure: FERRY_EINVAL if
 * it is not a listening stream socket). */
int listener_adopt_fd(listener *l, int fd);

/* Start accepting on loop. */
int listener_start(listener *l, uv_loop_t *loop, const listener_owner *owner);

/* Accept up to `batch` waiting connections now (close() takes in the
 * backlog before it stops listening). */
void listener_accept(listener *l, int batch);

void listener_pause(listener *l);
void listener_resume(listener *l);

/* Close the socket now (a connect() after this is refused, not left in a
 * backlog nobody accepts) and its handles through c. Idempotent. */
void listener_close(listener *l, closer *c);

#endif /* FERRY_LISTENER_H */
