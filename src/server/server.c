/* server.c — a ferry_server: options, listening and accepting, the four
 * shutdown calls, stats, and the Date header cache.
 *
 * Accepting is ours, not uv_listen's: the listening socket is watched by a
 * uv_poll_t and we call accept4() ourselves. That lets the server pause for
 * real — stop polling and leave clients waiting in the kernel's backlog —
 * when it reaches max_connections or runs out of file descriptors. (libuv's
 * listener answers EMFILE by accepting and closing the excess connections.)
 *
 * Shutdown is counted, not guessed: close() finishes when the connection list
 * is empty and every exchange a handler held has been ended; then the
 * server's own handles (poll, timers, signals, timeout lists) are closed and
 * the user's callback runs once the last of them is.
 */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/options.h"
#include "server/server_internal.h"

#define ACCEPT_BATCH      128 /* accepts per wake-up, so one listener cannot starve the loop */
#define ACCEPT_RETRY_MS   50  /* back-off after EMFILE/ENFILE */

static void server_options_defaults(ferry_server_options *o)
{
    memset(o, 0, sizeof(*o));
    o->keep_alive_timeout_ms = 5000;
    o->headers_timeout_ms = 60000;
    o->request_timeout_ms = 300000;
    o->idle_timeout_ms = 0;
    o->linger_timeout_ms = 2000;
    o->max_header_bytes = 16384;
    o->max_headers = 100;
    o->max_target_bytes = 8192;
    o->max_body_bytes = 1024 * 1024;
    o->max_drain_bytes = 256 * 1024;
    o->max_connections = 0;
    o->max_requests_per_connection = 0;
    o->read_buffer_bytes = 16384;
    o->backlog = 511;
    o->reject_expect_continue = 0;
    o->reuse_port = 0;
}

void ferry_server_options_init_sized(ferry_server_options *o, size_t size)
{
    ferry_server_options def;
    server_options_defaults(&def);
    options_init_sized(o, size, &def, sizeof(def));
}

/* Allocates the server (owner: the caller, released by ferry_server_free). */
int ferry_server_new(uv_loop_t *loop, const ferry_server_options *o, ferry_request_cb on_request,
                     void *data, ferry_server **out)
{
    *out = NULL;
    if (!loop || !on_request)
        return FERRY_EINVAL;
    ferry_server_options opt; /* the caller's, perhaps from an older header, over our defaults */
    server_options_defaults(&opt);
    if (o && options_copy(&opt, sizeof(opt), o, SERVER_OPTIONS_V1_SIZE) != 0)
        return FERRY_EINVAL;
    o = &opt;
    if (o->max_header_bytes < 64 || o->max_header_bytes > (1u << 30) || o->max_headers == 0 ||
        o->max_headers > 65536 || o->max_target_bytes == 0)
        return FERRY_EINVAL;
    if (o->keep_alive_timeout_ms > TIMEOUT_MAX_MS || o->headers_timeout_ms > TIMEOUT_MAX_MS ||
        o->request_timeout_ms > TIMEOUT_MAX_MS || o->idle_timeout_ms > TIMEOUT_MAX_MS ||
        o->linger_timeout_ms > TIMEOUT_MAX_MS)
        return FERRY_EINVAL;
    ferry_server *s = calloc(1, sizeof(*s));
    if (!s)
        return FERRY_ENOMEM;
    /* A write to a socket the peer reset must be an error code, not the end
     * of the process: ignore SIGPIPE unless the program chose a handler. */
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
    s->loop = loop;
    s->opt = *o;
    if (s->opt.backlog == 0)
        s->opt.backlog = 511;
    if (s->opt.max_body_bytes == 0)
        s->opt.max_body_bytes = UINT64_MAX; /* 0 = no limit */
    if (s->opt.keep_alive_timeout_ms) /* announced on every keep-alive response: build once */
        s->ka_line_len = (uint8_t) snprintf(s->ka_line, sizeof(s->ka_line),
                                            "Keep-Alive: timeout=%llu\r\n",
                                            (unsigned long long) (s->opt.keep_alive_timeout_ms / 1000));
    s->on_request = on_request;
    s->data = data;
    s->listen_fd = -1;
    s->date_sec = -1;
    list_init(&s->conns);
    /* The block holds the head plus room for body bytes behind it, so a head
     * at the limit never forces the buffer to move (its slices stay valid). */
    size_t block = o->read_buffer_bytes;
    if (block < (size_t) o->max_header_bytes + 4096)
        block = (size_t) o->max_header_bytes + 4096;
    int rc = buf_pool_init(&s->rbufs, block, 256);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void *ferry_server_data(const ferry_server *s)
{
    return s->data;
}

int ferry_server_port(const ferry_server *s)
{
    return s->port > 0 ? s->port : FERRY_ENOTCONN;
}

static void on_listen_readable(uv_poll_t *p, int status, int events);

static void accept_resume(ferry_server *s)
{
    if (!s->accept_paused || s->closing || !s->listening)
        return;
    s->accept_paused = false;
    uv_poll_start(&s->listen_poll, UV_READABLE, on_listen_readable);
}

static void accept_pause(ferry_server *s, int emfile)
{
    if (s->accept_paused)
        return;
    s->accept_paused = true;
    uv_poll_stop(&s->listen_poll);
    if (emfile) {
        s->stats.accept_pauses_emfile++;
    } else {
        s->stats.accept_pauses_max_connections++;
    }
}

static void on_accept_retry(uv_timer_t *t)
{
    accept_resume(t->data);
}

/* Accept up to `batch` waiting connections. */
static void accept_some(ferry_server *s, int batch)
{
    for (int i = 0; i < batch; i++) {
        if (s->opt.max_connections && s->nconns >= s->opt.max_connections) {
            accept_pause(s, 0);
            return;
        }
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO || errno == EPERM)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Leave the client in the backlog and try again shortly:
                 * never accept-and-drop, never spin. */
                accept_pause(s, 1);
                uv_timer_start(&s->accept_retry, on_accept_retry, ACCEPT_RETRY_MS, 0);
            }
            return;
        }
        if (server_conn_accept(s, fd, s->listen_is_pipe) < 0)
            close(fd);
    }
}

static void on_listen_readable(uv_poll_t *p, int status, int events)
{
    ferry_server *s = p->data;
    (void) events;
    if (status < 0 || s->closing)
        return;
    accept_some(s, ACCEPT_BATCH);
}

/* Lists, timers and the poll handle exist only once the server listens, so a
 * server that never listened can be freed at once. */
static int server_start_handles(ferry_server *s)
{
    const ferry_server_options *o = &s->opt;
    timeout_list *lists[] = {&s->t_headers, &s->t_request, &s->t_keep_alive, &s->t_idle,
                             &s->t_linger};
    uint64_t durations[] = {o->headers_timeout_ms, o->request_timeout_ms,
                            o->keep_alive_timeout_ms, o->idle_timeout_ms, o->linger_timeout_ms};
    for (int i = 0; i < 5; i++) {
        int rc = timeout_list_init(s->loop, lists[i], durations[i]);
        if (rc < 0)
            return rc; /* only possible for bad durations, checked in _new */
        lists[i]->data = s;
    }
    uv_timer_init(s->loop, &s->accept_retry);
    s->accept_retry.data = s;
    uv_timer_init(s->loop, &s->grace_timer);
    s->grace_timer.data = s;
    uv_idle_init(s->loop, &s->defer);
    s->defer.data = s;
    return 0;
}

static int listen_on_fd(ferry_server *s, int fd, bool is_pipe)
{
    if (listen(fd, (int) s->opt.backlog) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    int rc = server_start_handles(s);
    if (rc == 0)
        rc = uv_poll_init_socket(s->loop, &s->listen_poll, fd);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    s->listen_poll.data = s;
    s->listen_fd = fd;
    s->listen_is_pipe = is_pipe;
    s->listening = true;
    uv_poll_start(&s->listen_poll, UV_READABLE, on_listen_readable);
    return 0;
}

int ferry_server_listen(ferry_server *s, const char *host, int port)
{
    if (s->listening || s->closing)
        return FERRY_EALREADY;
    if (port < 0 || port > 65535)
        return FERRY_EINVAL;
    if (!host || strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof(ss));
    if (strchr(host, ':')) {
        if (uv_ip6_addr(host, port, (struct sockaddr_in6 *) &ss) != 0)
            return FERRY_EINVAL;
        sl = sizeof(struct sockaddr_in6);
    } else {
        if (uv_ip4_addr(host, port, (struct sockaddr_in *) &ss) != 0)
            return FERRY_EINVAL;
        sl = sizeof(struct sockaddr_in);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
#ifdef SO_REUSEPORT
    if (s->opt.reuse_port)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
#endif
    if (bind(fd, (struct sockaddr *) &ss, sl) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *) &ss, &sl);
    s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &ss)->sin6_port
                                             : ((struct sockaddr_in *) &ss)->sin_port);
    return listen_on_fd(s, fd, false);
}

int ferry_server_listen_unix(ferry_server *s, const char *path)
{
    if (s->listening || s->closing)
        return FERRY_EALREADY;
    struct sockaddr_un sun;
    if (!path || strlen(path) >= sizeof(sun.sun_path))
        return FERRY_EINVAL;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *) &sun, sizeof(sun)) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return listen_on_fd(s, fd, true);
}

/* ---- the Date header ---- */

const char *server_date_line(ferry_server *s)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    if ((int64_t) now != s->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        /* by hand, not strftime: %a/%b follow the process locale */
        snprintf(s->date_line, sizeof(s->date_line), "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
                 days[tm.tm_wday],
                 tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                 tm.tm_sec);
        s->date_sec = (int64_t) now;
    }
    return s->date_line;
}

/* ---- shutdown ---- */

static void stop_listening(ferry_server *s);
static void maybe_finish(ferry_server *s);

/* One of our handles finished closing; the last one fires the user's callback. */
static void handle_done(ferry_server *s)
{
    if (--s->open_handles == 0 && s->handles_closing && !s->close_cb_fired) {
        s->close_cb_fired = true;
        if (s->close_cb)
            s->close_cb(s, s->data);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    handle_done(h->data);
}

static void on_list_closed(timeout_list *l)
{
    handle_done(l->data);
}

static void close_handle(ferry_server *s, uv_handle_t *h)
{
    if (uv_is_closing(h))
        return;
    h->data = s;
    s->open_handles++;
    uv_close(h, on_handle_closed);
}

/* Everything is gone: close our own handles; the user's callback runs when
 * the last one is closed. */
static void maybe_finish(ferry_server *s)
{
    if (!s->closing || s->handles_closing || s->nconns || s->ex_outstanding)
        return;
    s->handles_closing = true;
    s->open_handles++; /* held until every close below is issued */
    if (s->listening) {
        close_handle(s, (uv_handle_t *) &s->accept_retry);
        close_handle(s, (uv_handle_t *) &s->grace_timer);
        close_handle(s, (uv_handle_t *) &s->defer);
        timeout_list *lists[] = {&s->t_headers, &s->t_request, &s->t_keep_alive, &s->t_idle,
                                 &s->t_linger};
        for (int i = 0; i < 5; i++) {
            s->open_handles++;
            timeout_list_close(lists[i], on_list_closed);
        }
    }
    if (s->signals_on) {
        close_handle(s, (uv_handle_t *) &s->sig_term);
        close_handle(s, (uv_handle_t *) &s->sig_int);
    }
    /* the poll handle was closed by stop_listening */
    handle_done(s);
}

static void on_poll_closed(uv_handle_t *h)
{
    handle_done(h->data);
}

/* Close the listening socket now, not a loop turn later: a connect() after
 * close() returns must be refused, not left in a backlog nobody accepts. */
static void stop_listening(ferry_server *s)
{
    if (!s->listening || uv_is_closing((uv_handle_t *) &s->listen_poll))
        return;
    uv_timer_stop(&s->accept_retry);
    uv_poll_stop(&s->listen_poll);
    close(s->listen_fd);
    s->listen_fd = -1;
    s->open_handles++;
    uv_close((uv_handle_t *) &s->listen_poll, on_poll_closed);
}

void ferry_server_close_idle(ferry_server *s)
{
    list_link *l = s->conns.next;
    while (l != &s->conns) {
        list_link *next = l->next; /* closing may unlink this one */
        server_conn *c = server_conn_from_link(l);
        if (server_conn_is_idle(c))
            server_conn_close_idle(c);
        l = next;
    }
}

static void on_grace_timeout(uv_timer_t *t)
{
    ferry_server_destroy(t->data);
}

void ferry_server_close(ferry_server *s, uint64_t grace_ms, ferry_server_close_cb cb)
{
    if (s->close_cb_fired) {
        /* Already closed. The callback fires once in a server's life: only
         * if none was registered when it finished (destroy, then close). */
        if (cb && !s->close_cb) {
            s->close_cb = cb;
            cb(s, s->data);
        }
        return;
    }
    if (cb && !s->close_cb)
        s->close_cb = cb;
    if (s->closing) {
        maybe_finish(s);
        return;
    }
    /* Clients already in the backlog connected before close(): take them in,
     * so a request they already sent is answered (with Connection: close)
     * rather than reset with the listening socket. */
    if (s->listening && !s->accept_paused && !uv_is_closing((uv_handle_t *) &s->listen_poll))
        accept_some(s, 1 << 20);
    s->closing = true;
    s->stats.closing = 1;
    stop_listening(s);
    list_link *l = s->conns.next;
    while (l != &s->conns) {
        list_link *next = l->next;
        server_conn *c = server_conn_from_link(l);
        if (server_conn_is_idle(c))
            server_conn_close_idle(c);
        else
            server_conn_begin_shutdown(c);
        l = next;
    }
    if (grace_ms && s->listening && s->nconns) {
        s->grace_armed = true;
        uv_timer_start(&s->grace_timer, on_grace_timeout, grace_ms, 0);
    }
    maybe_finish(s);
}

void ferry_server_destroy(ferry_server *s)
{
    if (!s->closing) {
        s->closing = true;
        s->stats.closing = 1;
        stop_listening(s);
    }
    s->destroyed = true;
    if (s->listening)
        uv_timer_stop(&s->grace_timer);
    list_link *l = s->conns.next;
    while (l != &s->conns) {
        list_link *next = l->next;
        server_conn_destroy(server_conn_from_link(l));
        l = next;
    }
    maybe_finish(s);
}

static void on_signal(uv_signal_t *h, int signum)
{
    ferry_server *s = h->data;
    (void) signum;
    if (++s->signals_seen == 1)
        ferry_server_close(s, s->signal_grace_ms, NULL);
    else
        ferry_server_destroy(s);
}

int ferry_server_on_signals(ferry_server *s, uint64_t grace_ms)
{
    s->signal_grace_ms = grace_ms;
    if (s->signals_on)
        return 0;
    if (s->handles_closing)
        return FERRY_ECLOSING;
    int rc = uv_signal_init(s->loop, &s->sig_term);
    if (rc < 0)
        return rc;
    uv_signal_init(s->loop, &s->sig_int);
    s->sig_term.data = s->sig_int.data = s;
    uv_signal_start(&s->sig_term, on_signal, SIGTERM);
    uv_signal_start(&s->sig_int, on_signal, SIGINT);
    /* Signal watchers alone must not keep the loop alive. */
    uv_unref((uv_handle_t *) &s->sig_term);
    uv_unref((uv_handle_t *) &s->sig_int);
    s->signals_on = true;
    return 0;
}

int ferry_server_free(ferry_server *s)
{
    if (!s)
        return 0;
    if ((s->listening || s->signals_on) && !s->close_cb_fired)
        return FERRY_EBUSY;
    exchange_cache_clear(s);
    buf_pool_destroy(&s->rbufs);
    free(s);
    return 0;
}

void ferry_server_stats_get(const ferry_server *s, ferry_server_stats *st)
{
    *st = s->stats;
    st->connections_active = s->nconns;
    st->connections_idle = s->nidle;
}

/* ---- called by connections ---- */

void server_conn_closed(ferry_server *s)
{
    s->nconns--;
    if (s->accept_paused && s->opt.max_connections && s->nconns < s->opt.max_connections &&
        !uv_is_active((uv_handle_t *) &s->accept_retry))
        accept_resume(s);
    maybe_finish(s);
}

void server_exchange_released(ferry_server *s)
{
    s->ex_outstanding--;
    maybe_finish(s);
}
