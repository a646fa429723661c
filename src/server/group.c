/* group.c — a server group: one ferry_server per loop, one loop per thread,
 * all serving the same sockets with the same options and handler.
 *
 * Threads. The group's fields under `lock` are shared; everything else of a
 * loop (its server, its handles) is touched only on that loop's thread.
 * Calls from outside a loop (close, destroy, close_idle, post) reach it
 * through ferry_server_post, made under `lock` while the loop's server is
 * alive. Each loop publishes its stats under the lock every
 * STATS_PUBLISH_MS and when it ends, so ferry_group_stats_get never waits
 * for a loop (two loops asking each other would deadlock).
 *
 * Sockets. By default each loop has its own SO_REUSEPORT socket per address:
 * the kernel spreads connections evenly and no loop wakes for another's
 * (docs/server.md has the measurements against one shared socket). With
 * shared_listener, one socket per address is polled by every loop: whichever
 * is free accepts. Adopted sockets (socket activation, a restart) are shared
 * that way too, unless there is exactly one SO_REUSEPORT socket per loop for
 * an address — what a reuseport group hands on — which keeps the spread.
 * Every loop gets dups; the group keeps its own copy of each socket to hand
 * on, and closes those as a close begins unless they were handed on, so new
 * clients are refused rather than left in a backlog nobody accepts from.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/options.h"
#include "server/server.h"

#define STATS_PUBLISH_MS 100
#define GROUP_MAX_FDS 128  /* sockets a group listens on (each loop polls at most these) */
#define GROUP_MAX_LOOPS 1024
#define DRAIN_OPTION UINT64_MAX

typedef struct group_loop {
    ferry_group *g;
    uint32_t index;
    uv_loop_t loop;
    uv_thread_t thread;     /* the creator's handle, to join */
    uv_thread_t self;       /* the same thread, as it sees itself (under g->lock) */
    bool self_known;
    ferry_server *s;        /* the loop's; NULL for others until ready, and after it ends */
    int fds[GROUP_MAX_FDS]; /* sockets it adopts at start (dups) */
    uint32_t nfds;
    uv_timer_t stats_timer;
    uv_signal_t sig_term, sig_int; /* loop 0, with ferry_group_on_signals */
    bool handles_on, signals_on;
    bool stop_hook_due;     /* on_loop_start succeeded: on_loop_stop runs at the end */
    ferry_server_stats snap; /* under g->lock */
} group_loop;

struct ferry_group {
    ferry_group_options opt;
    ferry_server_options sopt;
    ferry_request_cb on_request;
    void *data;
    uint32_t n;
    group_loop *loops;
    uint64_t signal_grace_ms;
    bool want_signals;
    atomic_int signals_seen;

    uv_mutex_t lock;
    uv_cond_t cond;
    int fds[GROUP_MAX_FDS]; /* the group's own copy of every listening socket */
    uint32_t nfds;
    int port;
    uint32_t nthreads, nready, nfinished;
    int start_rc, wait_rc;
    bool started, created_all, joined, closing, handed_on, done, close_cb_fired;
    uint64_t grace_ms;
    uint64_t drain_ms;      /* DRAIN_OPTION: each server's drain_delay_ms */
    ferry_group_close_cb close_cb;
    void *close_data;
};

static void group_options_defaults(ferry_group_options *o)
{
    memset(o, 0, sizeof(*o));
    o->struct_size = sizeof(*o);
}

void ferry_group_options_init_sized(ferry_group_options *o, size_t size)
{
    ferry_group_options def;
    group_options_defaults(&def);
    options_init_sized(o, size, &def, sizeof(def));
}

/* Allocates the group and its loop slots (owner: the caller, released by
 * ferry_group_free). The loops' servers are made on their threads. */
int ferry_group_new(const ferry_group_options *go, const ferry_server_options *so,
                    ferry_request_cb on_request, void *data, ferry_group **out)
{
    if (!out)
        return FERRY_EINVAL;
    *out = NULL;
    if (!on_request)
        return FERRY_EINVAL;
    ferry_group_options opt;
    group_options_defaults(&opt);
    if (go && options_copy(&opt, sizeof(opt), go, GROUP_OPTIONS_V1_SIZE) != 0)
        return FERRY_EINVAL;
    ferry_server_options sopt;
    ferry_server_options_init(&sopt);
    if (so && options_copy(&sopt, sizeof(sopt), so, SERVER_OPTIONS_V1_SIZE) != 0)
        return FERRY_EINVAL;
    uint32_t n = opt.loops ? opt.loops : (uint32_t) uv_available_parallelism();
    if (n == 0 || n > GROUP_MAX_LOOPS)
        return FERRY_EINVAL;
    ferry_group *g = calloc(1, sizeof(*g));
    group_loop *loops = g ? calloc(n, sizeof(*loops)) : NULL;
    if (!loops || uv_mutex_init(&g->lock) != 0) {
        free(loops);
        free(g);
        return FERRY_ENOMEM;
    }
    if (uv_cond_init(&g->cond) != 0) {
        uv_mutex_destroy(&g->lock);
        free(loops);
        free(g);
        return FERRY_ENOMEM;
    }
    g->opt = opt;
    g->sopt = sopt;
    if (g->sopt.tls)
        ferry_tls_context_ref(g->sopt.tls); /* the group's; each loop's server takes its own */
    g->on_request = on_request;
    g->data = data;
    g->n = n;
    g->loops = loops;
    for (uint32_t i = 0; i < n; i++) {
        loops[i].g = g;
        loops[i].index = i;
    }
    *out = g;
    return 0;
}

uint32_t ferry_group_loops(const ferry_group *g)
{
    return g ? g->n : 0;
}

/* ---- sockets: before start, on the caller's thread ---- */

static int keep_fd(ferry_group *g, int fd)
{
    if (g->nfds == GROUP_MAX_FDS) {
        close(fd);
        return FERRY_ENOMEM;
    }
    g->fds[g->nfds++] = fd;
    return 0;
}

int ferry_group_listen(ferry_group *g, const char *host, int port)
{
    if (!g)
        return FERRY_EINVAL;
    if (g->started || g->closing)
        return FERRY_EALREADY;
    bool reuse = !g->opt.shared_listener && g->n > 1;
    uint32_t copies = reuse ? g->n : 1, first = g->nfds;
    int rc = 0, bound_port = port;
    if (reuse && !g->sopt.reuse_port) {
        /* SO_REUSEPORT would let us join another process's sockets on the
         * port (same user) and silently split its traffic: a plain bind
         * first says whether the port is really free. (reuse_port set by
         * the caller: sharing with other processes is what is asked.) */
        listener probe[SERVER_MAX_ADDRS];
        uint32_t nprobe = 0;
        rc = server_bind_host(host, port, 1, false, probe, &nprobe);
        for (uint32_t i = 0; i < nprobe; i++) {
            if (i == 0 && port == 0)
                bound_port = probe[i].port; /* the free port it found, for every copy */
            close(probe[i].fd);
        }
        if (rc < 0)
            return rc;
    }
    for (uint32_t k = 0; k < copies && rc == 0; k++) {
        listener ls[SERVER_MAX_ADDRS];
        uint32_t bound = 0;
        /* the first copy may pick a free port; the others bind that one */
        rc = server_bind_host(host, bound_port, g->sopt.backlog ? g->sopt.backlog : 511,
                              reuse || g->sopt.reuse_port, ls, &bound);
        for (uint32_t i = 0; i < bound; i++) {
            if (k == 0 && i == 0 && ls[i].port > 0)
                bound_port = ls[i].port;
            if (rc == 0)
                rc = keep_fd(g, ls[i].fd);
            else
                close(ls[i].fd);
        }
    }
    if (rc < 0) { /* all or nothing */
        for (uint32_t i = first; i < g->nfds; i++)
            close(g->fds[i]);
        g->nfds = first;
        return rc;
    }
    if (!g->port && bound_port > 0)
        g->port = bound_port;
    return 0;
}

int ferry_group_listen_fd(ferry_group *g, int fd)
{
    if (fd < 0)
        return FERRY_EINVAL;
    if (!g || g->started || g->closing) {
        close(fd);
        return g ? FERRY_EALREADY : FERRY_EINVAL;
    }
    listener l; /* to check it, and make it non-blocking and close-on-exec */
    int rc = listener_adopt_fd(&l, fd);
    if (rc < 0)
        return rc;
    if (!g->port && l.port > 0)
        g->port = l.port;
    return keep_fd(g, fd);
}

int ferry_group_port(const ferry_group *g)
{
    return g && g->port ? g->port : FERRY_ENOTCONN;
}

int ferry_group_listener_fds(ferry_group *g, int *fds, size_t max)
{
    if (!g || (!fds && max))
        return FERRY_EINVAL;
    uv_mutex_lock(&g->lock);
    g->handed_on = true;
    for (size_t i = 0; i < g->nfds && i < max; i++)
        fds[i] = g->fds[i];
    int count = (int) g->nfds;
    uv_mutex_unlock(&g->lock);
    return count;
}

int ferry_group_listeners_reclaim(ferry_group *g)
{
    if (!g)
        return FERRY_EINVAL;
    uv_mutex_lock(&g->lock);
    /* the loops' servers learn of a hand-off only when the close reaches
       them, so the group's flag is the whole state until then */
    int rc = g->closing ? FERRY_ECLOSING : 0;
    if (!rc)
        g->handed_on = false;
    uv_mutex_unlock(&g->lock);
    return rc;
}

static bool same_address(int a, int b)
{
    struct sockaddr_storage x, y;
    socklen_t xl = sizeof(x), yl = sizeof(y);
    if (getsockname(a, (struct sockaddr *) &x, &xl) < 0 ||
        getsockname(b, (struct sockaddr *) &y, &yl) < 0)
        return false;
    return xl == yl && memcmp(&x, &y, xl) == 0;
}

static bool is_reuseport(int fd)
{
    int one = 0;
    socklen_t len = sizeof(one);
    return getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, &len) == 0 && one;
}

/* Which loop polls which socket (see the top of the file). Each loop gets
 * dups, so loops and the group close theirs independently. */
static int group_assign(ferry_group *g)
{
    bool taken[GROUP_MAX_FDS] = {false};
    for (uint32_t i = 0; i < g->nfds; i++) {
        if (taken[i])
            continue;
        uint32_t same[GROUP_MAX_FDS], k = 0;
        bool all_reuse = true;
        for (uint32_t j = i; j < g->nfds; j++)
            if (!taken[j] && (j == i || same_address(g->fds[i], g->fds[j]))) {
                taken[j] = true;
                same[k++] = j;
                all_reuse = all_reuse && is_reuseport(g->fds[j]);
            }
        bool one_each = k == g->n && all_reuse;
        for (uint32_t l = 0; l < g->n; l++) {
            group_loop *gl = &g->loops[l];
            for (uint32_t m = one_each ? l : 0; m < (one_each ? l + 1 : k); m++) {
                if (gl->nfds == GROUP_MAX_FDS)
                    return FERRY_ENOMEM;
                int d = dup(g->fds[same[m]]);
                if (d < 0)
                    return -errno;
                gl->fds[gl->nfds++] = d;
            }
        }
    }
    return 0;
}

/* ---- reaching a loop from any thread ---- */

int ferry_group_post(ferry_group *g, uint32_t index, ferry_post_cb fn, void *data)
{
    if (!g || !fn || index >= g->n)
        return FERRY_EINVAL;
    uv_mutex_lock(&g->lock);
    ferry_server *s = g->loops[index].s;
    int rc = s ? ferry_server_post(s, fn, data) : g->started ? FERRY_ECLOSING : FERRY_ENOTCONN;
    uv_mutex_unlock(&g->lock);
    return rc;
}

typedef enum { ASK_CLOSE, ASK_DESTROY, ASK_CLOSE_IDLE } group_ask;

static void group_server_closed(ferry_server *s, void *data);

/* On a loop's thread: what the group asked. */
static void on_ask(ferry_server *s, int status, void *data)
{
    group_ask ask = (group_ask) (intptr_t) data;
    if (status < 0)
        return; /* the server closed meanwhile */
    group_loop *gl = s->group_slot;
    ferry_group *g = gl->g;
    uv_mutex_lock(&g->lock);
    bool handed_on = g->handed_on;
    uint64_t grace = g->grace_ms, drain = g->drain_ms;
    uv_mutex_unlock(&g->lock);
    if (handed_on)
        s->handed_on = true; /* another process accepts from the backlog */
    if (drain == DRAIN_OPTION)
        drain = s->opt.drain_delay_ms;
    switch (ask) {
    case ASK_CLOSE: ferry_server_drain(s, drain, grace, group_server_closed); break;
    case ASK_DESTROY:
        ferry_server_close(s, grace, group_server_closed); /* the callback, once */
        ferry_server_destroy(s);
        break;
    case ASK_CLOSE_IDLE: ferry_server_close_idle(s); break;
    }
}

static void ask_all(ferry_group *g, group_ask ask)
{
    for (uint32_t i = 0; i < g->n; i++)
        ferry_group_post(g, i, on_ask, (void *) (intptr_t) ask);
}

/* Under the lock: every thread ended (or none was made) after a close began:
 * the close callback is due. Returns it (to call outside the lock). */
static ferry_group_close_cb due_close_cb(ferry_group *g, void **cb_data)
{
    if (g->done || !g->closing || (g->started && (!g->created_all || g->nfinished < g->nthreads)))
        return NULL;
    g->done = true;
    uv_cond_broadcast(&g->cond);
    if (g->close_cb_fired || !g->close_cb)
        return NULL;
    g->close_cb_fired = true;
    *cb_data = g->close_data;
    return g->close_cb;
}

void ferry_group_close(ferry_group *g, uint64_t grace_ms, ferry_group_close_cb cb, void *data)
{
    ferry_group_drain(g, DRAIN_OPTION, grace_ms, cb, data);
}

void ferry_group_drain(ferry_group *g, uint64_t drain_ms, uint64_t grace_ms,
                       ferry_group_close_cb cb, void *data)
{
    if (!g)
        return;
    uv_mutex_lock(&g->lock);
    ferry_group_close_cb late = NULL;
    if (cb && !g->close_cb) {
        g->close_cb = cb;
        g->close_data = data;
        if (g->close_cb_fired || g->done) /* already over: the callback fires once, now */
            late = cb;
        if (late)
            g->close_cb_fired = true;
    }
    bool first = !g->closing;
    if (first) {
        g->closing = true;
        g->grace_ms = grace_ms;
        g->drain_ms = drain_ms;
        if (!g->handed_on) { /* new clients are refused at once (the loops hold dups) */
            for (uint32_t i = 0; i < g->nfds; i++)
                close(g->fds[i]);
            g->nfds = 0;
        }
    }
    void *cb_data = NULL;
    ferry_group_close_cb due = due_close_cb(g, &cb_data);
    uv_mutex_unlock(&g->lock);
    if (late)
        late(g, data);
    else if (due)
        due(g, cb_data);
    if (first)
        ask_all(g, ASK_CLOSE);
}

void ferry_group_destroy(ferry_group *g)
{
    if (!g)
        return;
    ferry_group_close(g, 0, NULL, NULL);
    ask_all(g, ASK_DESTROY);
}

void ferry_group_close_idle(ferry_group *g)
{
    if (g)
        ask_all(g, ASK_CLOSE_IDLE);
}

int ferry_group_draining(const ferry_group *g)
{
    if (!g)
        return 0;
    ferry_group *mg = (ferry_group *) g; /* the lock is not part of the value */
    uv_mutex_lock(&mg->lock);
    int d = mg->closing;
    uv_mutex_unlock(&mg->lock);
    return d;
}

int ferry_group_on_signals(ferry_group *g, uint64_t grace_ms)
{
    if (!g)
        return FERRY_EINVAL;
    if (g->started)
        return FERRY_EALREADY;
    g->want_signals = true;
    g->signal_grace_ms = grace_ms;
    return 0;
}

/* ---- stats ---- */

static void publish_stats(group_loop *gl)
{
    ferry_server_stats st;
    ferry_server_stats_get(gl->s, &st);
    uv_mutex_lock(&gl->g->lock);
    gl->snap = st;
    uv_mutex_unlock(&gl->g->lock);
}

static void on_stats_timer(uv_timer_t *t)
{
    publish_stats(t->data);
}

void ferry_group_stats_get_sized(ferry_group *g, ferry_server_stats *out, size_t size)
{
    if (!out)
        return;
    if (!g) { /* no group: zeros, never the caller's garbage */
        stats_copy(out, size, &(ferry_server_stats){0}, sizeof(ferry_server_stats));
        return;
    }
    ferry_server_stats sum, x;
    memset(&sum, 0, sizeof(sum));
    uv_thread_t self = uv_thread_self();
    uv_mutex_lock(&g->lock);
    for (uint32_t i = 0; i < g->n; i++) {
        group_loop *gl = &g->loops[i];
        if (gl->s && gl->self_known && uv_thread_equal(&self, &gl->self))
            ferry_server_stats_get(gl->s, &x); /* our own loop: now */
        else
            x = gl->snap;
        server_stats_add(&sum, &x);
    }
    sum.closing |= g->closing;
    sum.draining |= g->closing;
    uv_mutex_unlock(&g->lock);
    stats_copy(out, size, &sum, sizeof(sum));
}

/* ---- one loop's thread ---- */

static void on_signal(uv_signal_t *h, int signum)
{
    (void) signum;
    ferry_group *g = ((group_loop *) h->data)->g;
    if (atomic_fetch_add(&g->signals_seen, 1) == 0)
        ferry_group_close(g, g->signal_grace_ms, NULL, NULL);
    else
        ferry_group_destroy(g);
}

static void on_handle_closed(uv_handle_t *h)
{
    (void) h;
}

/* The loop's server has closed: the user's teardown, then our handles. The
 * loop runs out once what the user's hook closes is closed too. */
static void group_server_closed(ferry_server *s, void *data)
{
    (void) data;
    group_loop *gl = s->group_slot;
    ferry_group *g = gl->g;
    if (gl->stop_hook_due) {
        gl->stop_hook_due = false;
        if (g->opt.on_loop_stop)
            g->opt.on_loop_stop(s, gl->index, g->data);
    }
    if (gl->handles_on) {
        gl->handles_on = false;
        uv_close((uv_handle_t *) &gl->stats_timer, on_handle_closed);
    }
    if (gl->signals_on) {
        gl->signals_on = false;
        uv_close((uv_handle_t *) &gl->sig_term, on_handle_closed);
        uv_close((uv_handle_t *) &gl->sig_int, on_handle_closed);
    }
}

static void close_leftover(uv_handle_t *h, void *arg)
{
    *(bool *) arg = true;
    if (!uv_is_closing(h))
        uv_close(h, on_handle_closed);
}

/* Make the loop's server and handles, adopt the sockets, run the user's
 * start hook. Returns 0 or the first failure. */
static int loop_setup(group_loop *gl)
{
    ferry_group *g = gl->g;
    int rc = ferry_server_new(&gl->loop, &g->sopt, g->on_request, g->data, &gl->s);
    uint32_t i = 0;
    for (; rc == 0 && i < gl->nfds; i++)
        rc = ferry_server_listen_fd(gl->s, gl->fds[i]); /* owns the fd, whatever rc */
    for (; i < gl->nfds; i++)
        close(gl->fds[i]);
    gl->nfds = 0;
    if (!gl->s)
        return rc;
    gl->s->group_slot = gl;
    uv_timer_init(&gl->loop, &gl->stats_timer);
    gl->stats_timer.data = gl;
    uv_timer_start(&gl->stats_timer, on_stats_timer, STATS_PUBLISH_MS, STATS_PUBLISH_MS);
    uv_unref((uv_handle_t *) &gl->stats_timer);
    gl->handles_on = true;
    if (rc == 0 && gl->index == 0 && g->want_signals) {
        uv_signal_init(&gl->loop, &gl->sig_term);
        uv_signal_init(&gl->loop, &gl->sig_int);
        gl->sig_term.data = gl->sig_int.data = gl;
        uv_signal_start(&gl->sig_term, on_signal, SIGTERM);
        uv_signal_start(&gl->sig_int, on_signal, SIGINT);
        uv_unref((uv_handle_t *) &gl->sig_term); /* they alone do not keep the loop */
        uv_unref((uv_handle_t *) &gl->sig_int);
        gl->signals_on = true;
    }
    if (rc == 0 && g->opt.on_loop_start) {
        rc = g->opt.on_loop_start(gl->s, gl->index, g->data);
        if (rc > 0)
            rc = FERRY_EINVAL; /* the hook's own nonzero: not one of ours */
    }
    gl->stop_hook_due = rc == 0;
    return rc;
}

static void loop_main(void *arg)
{
    group_loop *gl = arg;
    ferry_group *g = gl->g;
    uv_mutex_lock(&g->lock);
    gl->self = uv_thread_self();
    gl->self_known = true;
    uv_mutex_unlock(&g->lock);
    int rc = uv_loop_init(&gl->loop);
    bool have_loop = rc == 0;
    if (rc == 0) {
        rc = loop_setup(gl);
    } else {
        for (uint32_t i = 0; i < gl->nfds; i++)
            close(gl->fds[i]);
        gl->nfds = 0;
    }
    ferry_server *s = gl->s;
    uv_mutex_lock(&g->lock);
    g->nready++;
    if (rc < 0 && !g->start_rc)
        g->start_rc = rc;
    if (rc < 0)
        gl->s = NULL; /* nothing is posted to a loop that did not start */
    uv_cond_broadcast(&g->cond);
    uv_mutex_unlock(&g->lock);
    bool leftovers = false;
    if (s) {
        if (rc < 0) {
            s->handed_on = true; /* the other loops, or the next process, accept */
            ferry_server_close(s, 0, group_server_closed);
        }
        uv_run(&gl->loop, UV_RUN_DEFAULT);
        publish_stats(gl);
        uv_mutex_lock(&g->lock);
        gl->s = NULL; /* no more posts */
        uv_mutex_unlock(&g->lock);
        ferry_server_free(s);
    }
    if (have_loop && uv_loop_close(&gl->loop) == UV_EBUSY) {
        /* handles a stop hook left open: close them so the loop can go,
         * and say so through ferry_group_wait */
        uv_walk(&gl->loop, close_leftover, &leftovers);
        uv_run(&gl->loop, UV_RUN_DEFAULT);
        uv_loop_close(&gl->loop);
    }
    uv_mutex_lock(&g->lock);
    g->nfinished++;
    if (leftovers)
        g->wait_rc = FERRY_EBUSY;
    void *cb_data = NULL;
    ferry_group_close_cb cb = due_close_cb(g, &cb_data);
    uv_cond_broadcast(&g->cond);
    uv_mutex_unlock(&g->lock);
    if (cb)
        cb(g, cb_data); /* on the last loop's thread */
}

/* ---- start, wait, free ---- */

int ferry_group_start(ferry_group *g)
{
    if (!g)
        return FERRY_EINVAL;
    if (g->started || g->closing)
        return FERRY_EALREADY;
    if (!g->nfds)
        return FERRY_ENOTCONN; /* listen first */
    int rc = group_assign(g);
    if (rc < 0) {
        for (uint32_t i = 0; i < g->n; i++) {
            for (uint32_t k = 0; k < g->loops[i].nfds; k++)
                close(g->loops[i].fds[k]);
            g->loops[i].nfds = 0;
        }
        return rc;
    }
    uv_mutex_lock(&g->lock);
    g->started = true;
    uv_mutex_unlock(&g->lock);
    uint32_t made = 0;
    for (; made < g->n; made++) {
        uv_mutex_lock(&g->lock);
        g->nthreads++;
        uv_mutex_unlock(&g->lock);
        rc = uv_thread_create(&g->loops[made].thread, loop_main, &g->loops[made]);
        if (rc < 0) {
            uv_mutex_lock(&g->lock);
            g->nthreads--;
            uv_mutex_unlock(&g->lock);
            for (uint32_t i = made; i < g->n; i++) /* never adopted */
                for (uint32_t k = 0; k < g->loops[i].nfds; k++)
                    close(g->loops[i].fds[k]);
            break;
        }
    }
    uv_mutex_lock(&g->lock);
    g->created_all = true;
    while (g->nready < g->nthreads)
        uv_cond_wait(&g->cond, &g->lock);
    if (rc == 0)
        rc = g->start_rc;
    uv_mutex_unlock(&g->lock);
    if (rc < 0) {
        ferry_group_destroy(g);
        ferry_group_wait(g);
    }
    return rc;
}

int ferry_group_wait(ferry_group *g)
{
    if (!g)
        return FERRY_EINVAL;
    if (!g->started || g->joined)
        return 0;
    uv_thread_t self = uv_thread_self();
    uv_mutex_lock(&g->lock);
    bool own = false;
    for (uint32_t i = 0; i < g->nthreads; i++)
        own = own || (g->loops[i].self_known && uv_thread_equal(&self, &g->loops[i].self));
    uv_mutex_unlock(&g->lock);
    if (own)
        return FERRY_EBUSY; /* a loop cannot wait for itself */
    for (uint32_t i = 0; i < g->nthreads; i++)
        uv_thread_join(&g->loops[i].thread);
    uv_mutex_lock(&g->lock);
    g->joined = true;
    int rc = g->wait_rc;
    uv_mutex_unlock(&g->lock);
    return rc;
}

int ferry_group_run(ferry_group *g)
{
    int rc = ferry_group_start(g);
    if (rc < 0)
        return rc;
    return ferry_group_wait(g);
}

int ferry_group_free(ferry_group *g)
{
    if (!g)
        return 0;
    if (g->started && !g->joined)
        return FERRY_EBUSY;
    for (uint32_t i = 0; i < g->nfds; i++)
        close(g->fds[i]);
    ferry_tls_context_free(g->sopt.tls);
    uv_cond_destroy(&g->cond);
    uv_mutex_destroy(&g->lock);
    free(g->loops);
    free(g);
    return 0;
}
