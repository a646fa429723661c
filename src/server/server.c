/* server.c — a ferry_server: options, listening, the four shutdown calls,
 * signals and stats. The parts it drives: listener.c (sockets and the
 * accept loop), server_conn.c (connections), exchange.c (the handler's API).
 *
 * Shutdown is counted, not guessed: close() finishes when the connection set
 * is empty and every exchange a handler held has been released (the set's
 * `changed` callback tells); then the server's own handles (timers, signals,
 * timeout lists) are closed and the user's callback runs once the last of
 * them is.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/options.h"
#include "server/server_conn.h"

#define MAX_LISTENERS SERVER_MAX_ADDRS

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
    o->tls = NULL;
    o->tls_handshake_timeout_ms = 10000;
}

void ferry_server_options_init_sized(ferry_server_options *o, size_t size)
{
    ferry_server_options def;
    server_options_defaults(&def);
    options_init_sized(o, size, &def, sizeof(def));
}

static void maybe_finish(ferry_server *s);
static void on_set_changed(conn_set *set);
static void on_accept(listener *l, uv_os_sock_t fd, bool is_pipe);
static bool may_accept(listener *l);
static bool on_emfile(listener *l);

/* Allocates the server (owner: the caller, released by ferry_server_free). */
int ferry_server_new(uv_loop_t *loop, const ferry_server_options *o, ferry_request_cb on_request,
                     void *data, ferry_server **out)
{
    if (!out)
        return FERRY_EINVAL;
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
        o->linger_timeout_ms > TIMEOUT_MAX_MS || o->tls_handshake_timeout_ms > TIMEOUT_MAX_MS)
        return FERRY_EINVAL;
    ferry_server *s = calloc(1, sizeof(*s));
    if (!s)
        return FERRY_ENOMEM;
    if (o->proxy_protocol && o->proxy_trusted) {
        int rc = proxy_trust_parse(o->proxy_trusted, &s->proxy_trust);
        if (rc < 0) {
            free(s);
            return rc;
        }
        s->proxy_trust_set = true;
    }
    if (uv_mutex_init(&s->mail_lock) != 0) {
        proxy_trust_free(&s->proxy_trust);
        free(s);
        return FERRY_ENOMEM;
    }
    s->loop = loop;
    s->opt = *o;
    if (s->opt.backlog == 0)
        s->opt.backlog = 511;
    if (s->opt.max_body_bytes == 0)
        s->opt.max_body_bytes = UINT64_MAX; /* 0 = no limit */
    response_ctx_init(&s->rctx, s->opt.keep_alive_timeout_ms);
    s->on_request = on_request;
    s->data = data;
    list_init(&s->set.conns);
    list_init(&s->set.live_ex);
    s->set.changed = on_set_changed;
    s->exev = exchange_events();
    if (o->tls)
        s->tls = ferry_tls_context_ref(o->tls);
    s->opt.tls = NULL; /* the reference is s->tls */
    s->opt.proxy_trusted = NULL; /* parsed into s->proxy_trust */
    s->lowner = (listener_owner){s, on_accept, may_accept, on_emfile};
    /* The block holds the head plus room for body bytes behind it, so a head
     * at the limit never forces the buffer to move (its slices stay valid). */
    size_t block = o->read_buffer_bytes;
    if (block < (size_t) o->max_header_bytes + 4096)
        block = (size_t) o->max_header_bytes + 4096;
    int rc = transport_pool_init(&s->tpool, &server_conn_transport_events, block, 256);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void *ferry_server_data(const ferry_server *s)
{
    return s ? s->data : NULL;
}

void ferry_server_set_data(ferry_server *s, void *data)
{
    if (s)
        s->data = data;
}

uv_loop_t *ferry_server_loop(const ferry_server *s)
{
    return s ? s->loop : NULL;
}

int ferry_server_port(const ferry_server *s)
{
    if (!s)
        return FERRY_EINVAL;
    for (uint32_t i = 0; i < s->nlisteners; i++)
        if (s->listeners[i]->port > 0)
            return s->listeners[i]->port;
    return FERRY_ENOTCONN;
}

/* ---- listening ---- */

static ferry_server *owner_server(listener *l)
{
    return l->owner->data;
}

static void on_accept(listener *l, uv_os_sock_t fd, bool is_pipe)
{
    server_conn_accept(owner_server(l), fd, is_pipe); /* it closes fd on failure */
}

static bool may_accept(listener *l)
{
    ferry_server *s = owner_server(l);
    return !s->opt.max_connections || s->set.n < s->opt.max_connections;
}

/* Idle keep-alive connections closed per EMFILE (nginx drains up to 32
 * reusable connections when it runs out the same way). */
#define SHED_BATCH 32

/* Out of descriptors with clients waiting in the backlog: an idle keep-alive
 * connection is worth less than a client with a request, so close the ones
 * idle longest. Their descriptors are free when this returns. */
static bool on_emfile(listener *l)
{
    ferry_server *s = owner_server(l);
    uint32_t shed = 0;
    timeout_entry *e;
    while (shed < SHED_BATCH && (e = timeout_list_first(&s->t_keep_alive))) {
        server_conn_close_idle(container_of(e, server_conn, tmo));
        shed++;
    }
    if (!s->opt.keep_alive_timeout_ms) /* "never": idle ones are not on that list */
        for (list_link *k = s->set.conns.next; shed < SHED_BATCH && k != &s->set.conns;) {
            server_conn *c = server_conn_from_link(k);
            k = k->next; /* closing may unlink c */
            if (server_conn_is_kept_alive(c)) {
                server_conn_close_idle(c);
                shed++;
            }
        }
    s->stats.connections_shed_emfile += shed;
    return shed > 0;
}

/* ---- posts from other threads ---- */

typedef struct server_post {
    struct server_post *next;
    ferry_post_cb fn;
    void *data;
} server_post;

/* Run what was posted, oldest first; status FERRY_ECANCELED once closing
 * (then the mailbox is shut first, so nothing arrives behind). */
static void mail_run(ferry_server *s, int status)
{
    uv_mutex_lock(&s->mail_lock);
    server_post *p = s->mail_head;
    s->mail_head = s->mail_tail = NULL;
    if (status < 0)
        s->mail_open = false;
    uv_mutex_unlock(&s->mail_lock);
    while (p) {
        server_post *next = p->next;
        p->fn(s, status, p->data);
        free(p);
        p = next;
    }
}

static void on_mail(uv_async_t *a)
{
    mail_run(a->data, 0);
}

/* Allocates a post (owner: the mailbox, freed after fn ran). */
int ferry_server_post(ferry_server *s, ferry_post_cb fn, void *data)
{
    if (!s || !fn)
        return FERRY_EINVAL;
    server_post *p = malloc(sizeof(*p));
    if (!p)
        return FERRY_ENOMEM;
    *p = (server_post){NULL, fn, data};
    uv_mutex_lock(&s->mail_lock);
    int rc = s->mail_open ? 0 : s->started ? FERRY_ECLOSING : FERRY_ENOTCONN;
    if (rc == 0) {
        if (s->mail_tail)
            s->mail_tail->next = p;
        else
            s->mail_head = p;
        s->mail_tail = p;
        uv_async_send(&s->mailbox); /* under the lock: the handle cannot be closing yet */
    }
    uv_mutex_unlock(&s->mail_lock);
    if (rc < 0)
        free(p);
    return rc;
}

/* Lists, timers and handles exist only once the server listens, so a
 * server that never listened can be freed at once. */
static int server_start(ferry_server *s)
{
    if (s->started)
        return 0;
    const ferry_server_options *o = &s->opt;
    timeout_list *lists[] = {&s->t_headers, &s->t_request, &s->t_keep_alive, &s->t_idle,
                             &s->t_linger, &s->t_handshake};
    uint64_t durations[] = {o->headers_timeout_ms,    o->request_timeout_ms,
                            o->keep_alive_timeout_ms, o->idle_timeout_ms,
                            o->linger_timeout_ms,     o->tls_handshake_timeout_ms};
    for (int i = 0; i < 6; i++) {
        int rc = timeout_list_init(s->loop, lists[i], durations[i]);
        if (rc < 0)
            return rc; /* only possible for bad durations, checked in _new */
    }
    uv_timer_init(s->loop, &s->grace_timer);
    s->grace_timer.data = s;
    uv_idle_init(s->loop, &s->defer);
    s->defer.data = s;
    uv_timer_init(s->loop, &s->drain_timer);
    s->drain_timer.data = s;
    uv_async_init(s->loop, &s->mailbox, on_mail);
    s->mailbox.data = s;
    uv_unref((uv_handle_t *) &s->mailbox); /* a way in, not a reason to run */
    uv_mutex_lock(&s->mail_lock);
    s->mail_open = true;
    uv_mutex_unlock(&s->mail_lock);
    s->started = true;
    return 0;
}

/* Take the bound listeners in l[0..n) (owner: the server from here on) and
 * start accepting on them, after any the server has already. Each listener
 * is allocated alone (owner: the server, freed by ferry_server_free): its uv
 * handles must not move once started. */
static int server_adopt(ferry_server *s, listener *l, uint32_t n)
{
    int rc = server_start(s);
    listener **all = NULL;
    if (rc == 0) {
        all = realloc(s->listeners, (s->nlisteners + n) * sizeof(*all));
        if (all)
            s->listeners = all;
        else
            rc = FERRY_ENOMEM;
    }
    uint32_t i = 0;
    for (; rc == 0 && i < n; i++) {
        listener *one = malloc(sizeof(*one));
        if (!one) {
            rc = FERRY_ENOMEM;
            break;
        }
        *one = l[i];
        rc = listener_start(one, s->loop, &s->lowner);
        if (rc < 0) {
            free(one);
            break;
        }
        s->listeners[s->nlisteners++] = one; /* closes with the server */
    }
    for (; i < n; i++) /* nothing unstarted is left behind */
        close(l[i].fd);
    return rc;
}

/* The addresses `host` stands for: a literal, or every address a name
 * resolves to (getaddrinfo, synchronous: listening happens once, at start). */
static int resolve_listen_host(const char *host, int port, struct sockaddr_storage *out,
                               uint32_t *n)
{
    *n = 0;
    memset(out, 0, sizeof(*out));
    if (uv_ip4_addr(host, port, (struct sockaddr_in *) out) == 0 ||
        uv_ip6_addr(host, port, (struct sockaddr_in6 *) out) == 0) {
        *n = 1;
        return 0;
    }
    if (!*host || strchr(host, ':'))
        return FERRY_EINVAL; /* a malformed IPv6 literal is not a name */
    struct addrinfo hints, *res;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0)
        return rc == EAI_NONAME || rc == EAI_FAIL ? FERRY_EAI_NONAME : FERRY_EAI_AGAIN;
    for (struct addrinfo *ai = res; ai && *n < MAX_LISTENERS; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        bool dup = false;
        for (uint32_t i = 0; i < *n && !dup; i++)
            dup = memcmp(&out[i], ai->ai_addr, ai->ai_addrlen) == 0;
        if (dup)
            continue;
        memset(&out[*n], 0, sizeof(out[*n]));
        memcpy(&out[*n], ai->ai_addr, ai->ai_addrlen);
        if (ai->ai_family == AF_INET)
            ((struct sockaddr_in *) &out[*n])->sin_port = htons((uint16_t) port);
        else
            ((struct sockaddr_in6 *) &out[*n])->sin6_port = htons((uint16_t) port);
        (*n)++;
    }
    freeaddrinfo(res);
    return *n ? 0 : FERRY_EAI_NONAME;
}

int server_bind_host(const char *host, int port, uint32_t backlog, bool reuse_port, listener *ls,
                     uint32_t *nbound)
{
    *nbound = 0;
    if (port < 0 || port > 65535)
        return FERRY_EINVAL;
    if (!host)
        host = "127.0.0.1";
    struct sockaddr_storage addrs[MAX_LISTENERS];
    uint32_t n;
    int rc = resolve_listen_host(host, port, addrs, &n);
    if (rc < 0)
        return rc;
    uint32_t bound = 0;
    /* port 0 with several addresses: the first gets a free port and the rest
     * take the same one, which may be taken on their family: try again */
    for (int attempt = 0; attempt < (port == 0 && n > 1 ? 8 : 1); attempt++) {
        bound = 0;
        rc = 0;
        for (uint32_t i = 0; i < n; i++) {
            uint16_t want = bound && port == 0 ? (uint16_t) ls[0].port : (uint16_t) port;
            if (addrs[i].ss_family == AF_INET)
                ((struct sockaddr_in *) &addrs[i])->sin_port = htons(want);
            else
                ((struct sockaddr_in6 *) &addrs[i])->sin6_port = htons(want);
            rc = listener_bind_tcp(&ls[bound], (struct sockaddr *) &addrs[i], backlog, reuse_port);
            if (rc == 0)
                bound++;
            else if (n == 1 || (rc != FERRY_EADDRNOTAVAIL && rc != -EAFNOSUPPORT))
                break; /* a name's address this host cannot have (IPv6 off) is skipped */
            else
                rc = 0;
        }
        if (rc == 0 && bound)
            break;
        for (uint32_t i = 0; i < bound; i++)
            close(ls[i].fd);
        bound = 0;
        if (rc != FERRY_EADDRINUSE)
            break;
    }
    if (rc < 0 || bound == 0)
        return rc < 0 ? rc : FERRY_EADDRNOTAVAIL;
    *nbound = bound;
    return 0;
}

int ferry_server_listen(ferry_server *s, const char *host, int port)
{
    if (!s)
        return FERRY_EINVAL;
    if (s->nlisteners || s->closing)
        return FERRY_EALREADY;
    listener ls[SERVER_MAX_ADDRS];
    uint32_t bound;
    int rc = server_bind_host(host, port, s->opt.backlog, s->opt.reuse_port != 0, ls, &bound);
    if (rc < 0)
        return rc;
    return server_adopt(s, ls, bound);
}

int ferry_server_listen_unix(ferry_server *s, const char *path)
{
    if (!s)
        return FERRY_EINVAL;
    if (s->nlisteners || s->closing)
        return FERRY_EALREADY;
    listener l;
    int rc = listener_bind_unix(&l, path, s->opt.backlog);
    if (rc < 0)
        return rc;
    return server_adopt(s, &l, 1);
}

int ferry_server_listen_fd(ferry_server *s, int fd)
{
    if (fd < 0)
        return FERRY_EINVAL;
    if (!s || s->closing) {
        close(fd);
        return s ? FERRY_ECLOSING : FERRY_EINVAL;
    }
    listener l;
    int rc = listener_adopt_fd(&l, fd);
    if (rc < 0)
        return rc;
    return server_adopt(s, &l, 1);
}

int ferry_server_listener_fd(ferry_server *s, uint32_t i)
{
    if (!s || i >= s->nlisteners || s->listeners[i]->closed)
        return FERRY_EINVAL;
    s->handed_on = true;
    return s->listeners[i]->fd;
}

int ferry_server_listeners_reclaim(ferry_server *s)
{
    if (!s)
        return FERRY_EINVAL;
    if (s->draining || s->closing)
        return FERRY_ECLOSING; /* the close already decided who takes the backlog */
    s->handed_on = false;
    return 0;
}

/* ---- shutdown ---- */

static void on_all_closed(closer *c)
{
    ferry_server *s = container_of(c, ferry_server, closer);
    if (s->close_cb_fired)
        return;
    s->close_cb_fired = true;
    if (s->close_cb)
        s->close_cb(s, s->data);
}

/* The close has begun: from here on handles are closed through the closer. */
static void begin_closing(ferry_server *s)
{
    s->closing = true;
    s->stats.closing = 1;
    closer_begin(&s->closer, on_all_closed);
    /* The listening sockets close now, not a loop turn later: a connect()
     * after close() returns must be refused, not left in a backlog nobody
     * accepts. */
    for (uint32_t i = 0; i < s->nlisteners; i++)
        listener_close(s->listeners[i], &s->closer);
}

/* Everything is gone: close our own handles; the user's callback runs when
 * the last one is closed. */
static void maybe_finish(ferry_server *s)
{
    if (!s->closing || s->handles_closing || s->set.n || exchange_any_pending(s))
        return;
    s->handles_closing = true;
    if (s->started) {
        mail_run(s, FERRY_ECANCELED); /* shuts the mailbox: nothing is posted behind */
        closer_handle(&s->closer, (uv_handle_t *) &s->mailbox);
        closer_handle(&s->closer, (uv_handle_t *) &s->drain_timer);
        closer_handle(&s->closer, (uv_handle_t *) &s->grace_timer);
        closer_handle(&s->closer, (uv_handle_t *) &s->defer);
        timeout_list *lists[] = {&s->t_headers, &s->t_request, &s->t_keep_alive, &s->t_idle,
                                 &s->t_linger,  &s->t_handshake};
        for (int i = 0; i < 6; i++)
            closer_list(&s->closer, lists[i], NULL);
    }
    if (s->signals_on) {
        closer_handle(&s->closer, (uv_handle_t *) &s->sig_term);
        closer_handle(&s->closer, (uv_handle_t *) &s->sig_int);
    }
    closer_end(&s->closer);
}

static void on_set_changed(conn_set *set)
{
    ferry_server *s = container_of(set, ferry_server, set);
    if (s->opt.max_connections && set->n < s->opt.max_connections)
        for (uint32_t i = 0; i < s->nlisteners; i++)
            listener_resume(s->listeners[i]); /* a slot is free */
    maybe_finish(s);
}

int ferry_server_set_tls(ferry_server *s, ferry_tls_context *ctx)
{
    if (!s)
        return FERRY_EINVAL;
    ferry_tls_context *old = s->tls;
    s->tls = ctx ? ferry_tls_context_ref(ctx) : NULL;
    ferry_tls_context_free(old); /* connections that use it hold their own */
    return 0;
}

void ferry_server_close_idle(ferry_server *s)
{
    if (!s)
        return;
    list_link *l = s->set.conns.next;
    while (l != &s->set.conns) {
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

static void close_now(ferry_server *s, uint64_t grace_ms);

static void on_drained(uv_timer_t *t)
{
    ferry_server *s = t->data;
    close_now(s, s->close_grace_ms);
}

void ferry_server_close(ferry_server *s, uint64_t grace_ms, ferry_server_close_cb cb)
{
    if (s)
        ferry_server_drain(s, s->opt.drain_delay_ms, grace_ms, cb);
}

void ferry_server_drain(ferry_server *s, uint64_t drain_ms, uint64_t grace_ms,
                        ferry_server_close_cb cb)
{
    if (!s)
        return;
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
    if (s->draining)
        return; /* the drain delay runs; the close follows it */
    s->draining = true;
    if (drain_ms && s->started && s->nlisteners) {
        /* Serve a while longer, each response with Connection: close: a
         * balancer still sending until its health check sees the 503 loses
         * nothing, and keep-alive clients leave at a request boundary. A
         * socket handed on stops being ours to accept from now: the other
         * process takes the new clients, ours get the delay to speak. */
        s->close_grace_ms = grace_ms;
        for (uint32_t i = 0; i < s->nlisteners && s->handed_on; i++)
            listener_pause(s->listeners[i]);
        uv_timer_start(&s->drain_timer, on_drained, drain_ms, 0);
        return;
    }
    close_now(s, grace_ms);
}

static void close_now(ferry_server *s, uint64_t grace_ms)
{
    /* Clients already in the backlog connected before close(): take them in,
     * so a request they already sent is answered (with Connection: close)
     * rather than reset with the listening socket — unless the socket was
     * handed on: then another process accepts them. */
    for (uint32_t i = 0; i < s->nlisteners && !s->handed_on; i++)
        if (!s->listeners[i]->paused)
            listener_accept(s->listeners[i], 1 << 20);
    begin_closing(s);
    list_link *l = s->set.conns.next;
    while (l != &s->set.conns) {
        list_link *next = l->next;
        server_conn *c = server_conn_from_link(l);
        if (server_conn_is_idle(c))
            server_conn_close_idle(c);
        else
            server_conn_begin_shutdown(c);
        l = next;
    }
    if (grace_ms && s->started && s->set.n)
        uv_timer_start(&s->grace_timer, on_grace_timeout, grace_ms, 0);
    maybe_finish(s);
}

void ferry_server_destroy(ferry_server *s)
{
    if (!s)
        return;
    s->draining = true;
    if (!s->closing)
        begin_closing(s);
    s->destroyed = true;
    if (s->started) {
        uv_timer_stop(&s->grace_timer);
        uv_timer_stop(&s->drain_timer);
    }
    list_link *l = s->set.conns.next;
    while (l != &s->set.conns) {
        list_link *next = l->next;
        server_conn_destroy(server_conn_from_link(l), FERRY_ECLOSING);
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
    if (!s)
        return FERRY_EINVAL;
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

int ferry_server_draining(const ferry_server *s)
{
    return s && s->draining;
}

int ferry_server_free(ferry_server *s)
{
    if (!s)
        return 0;
    if ((s->started || s->signals_on) && !s->close_cb_fired)
        return FERRY_EBUSY;
    exchange_orphan_all(s);
    exchange_cache_clear(s);
    transport_pool_destroy(&s->tpool);
    ferry_tls_context_free(s->tls);
    for (uint32_t i = 0; i < s->nlisteners; i++)
        free(s->listeners[i]);
    free(s->listeners);
    uv_mutex_destroy(&s->mail_lock);
    proxy_trust_free(&s->proxy_trust);
    free(s);
    return 0;
}

void ferry_server_stats_get_sized(const ferry_server *s, ferry_server_stats *out, size_t size)
{
    if (!s) { /* no server: zeros, never the caller's garbage */
        stats_copy(out, size, &(ferry_server_stats){0}, sizeof(ferry_server_stats));
        return;
    }
    ferry_server_stats st = s->stats;
    st.connections_active = s->set.n;
    st.draining = s->draining;
    st.connections_idle = s->set.nidle;
    st.bytes_in = s->tpool.bytes_in;
    st.bytes_out = s->tpool.bytes_out;
    for (uint32_t i = 0; i < s->nlisteners; i++) {
        st.accept_pauses_emfile += s->listeners[i]->pauses_emfile;
        st.accept_pauses_max_connections += s->listeners[i]->pauses_full;
    }
    stats_copy(out, size, &st, sizeof(st));
}

void server_stats_add(ferry_server_stats *sum, const ferry_server_stats *x)
{
    /* a new field must be added here too: the size check says so */
    _Static_assert(sizeof(ferry_server_stats) == 28 * sizeof(uint64_t),
                   "ferry_server_stats changed: update server_stats_add");
    uint64_t *to[] = {&sum->connections_active, &sum->connections_idle,
                      &sum->connections_accepted, &sum->requests, &sum->bytes_in, &sum->bytes_out,
                      &sum->timeouts_headers, &sum->timeouts_request, &sum->timeouts_keep_alive,
                      &sum->timeouts_idle, &sum->errors_400, &sum->errors_408, &sum->errors_413,
                      &sum->errors_414, &sum->errors_417, &sum->errors_431, &sum->errors_501,
                      &sum->errors_505, &sum->accept_pauses_emfile,
                      &sum->accept_pauses_max_connections, &sum->tls_handshakes,
                      &sum->tls_resumed, &sum->tls_handshake_timeouts,
                      &sum->connections_shed_emfile, &sum->proxy_errors, &sum->proxy_rejected};
    const uint64_t *from[] = {&x->connections_active, &x->connections_idle,
                              &x->connections_accepted, &x->requests, &x->bytes_in, &x->bytes_out,
                              &x->timeouts_headers, &x->timeouts_request, &x->timeouts_keep_alive,
                              &x->timeouts_idle, &x->errors_400, &x->errors_408, &x->errors_413,
                              &x->errors_414, &x->errors_417, &x->errors_431, &x->errors_501,
                              &x->errors_505, &x->accept_pauses_emfile,
                              &x->accept_pauses_max_connections, &x->tls_handshakes,
                              &x->tls_resumed, &x->tls_handshake_timeouts,
                              &x->connections_shed_emfile, &x->proxy_errors,
                              &x->proxy_rejected};
    for (size_t i = 0; i < sizeof(to) / sizeof(to[0]); i++)
        *to[i] += *from[i];
    sum->closing |= x->closing;
    sum->draining |= x->draining;
}

void(ferry_server_stats_get)(const ferry_server *s, ferry_server_stats *st)
{
    ferry_server_stats_get_sized(s, st, SERVER_STATS_V1_SIZE);
}
