/* restart.c — see restart.h. The child is started with uv_spawn, whose stdio
 * table places each inherited descriptor at a chosen number (3, 4, ...), so
 * no fork/dup2 dance is written here. */
#define _GNU_SOURCE /* pipe2 */
#include "restart.h"

#include <stdbool.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

#define MAX_INHERITED 128 /* a group's listening sockets at most (group.c) */

static char self_path[PATH_MAX];
static char **self_argv;

void restart_init(int argc, char **argv)
{
    (void) argc;
    self_argv = argv;
    /* the path, not the inode: a new build installed there is what runs next */
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
    if (n > 0) {
        self_path[n] = '\0';
    } else {
        snprintf(self_path, sizeof(self_path), "%s", argv[0]);
    }
}

int restart_inherited_fds(const char **source)
{
    *source = NULL;
    const char *n = getenv("FERRY_LISTEN_FDS");
    if (n) {
        *source = "restart";
    } else {
        /* systemd: LISTEN_PID must be ours, or the variables were meant for
         * a process that started us */
        n = getenv("LISTEN_FDS");
        const char *pid = getenv("LISTEN_PID");
        if (n && pid && strtol(pid, NULL, 10) == (long) getpid())
            *source = "systemd";
        else
            n = NULL;
    }
    long count = n ? strtol(n, NULL, 10) : 0;
    unsetenv("FERRY_LISTEN_FDS");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDNAMES");
    if (count <= 0 || count > MAX_INHERITED)
        return 0;
    for (int fd = 3; fd < 3 + count; fd++) /* nothing we start may keep them */
        fcntl(fd, F_SETFD, FD_CLOEXEC);
    return (int) count;
}

int restart_inherited_ticket_keys(ferry_tls_ticket_keys *k)
{
    const char *v = getenv("FERRY_TICKET_KEYS_FD");
    if (!v)
        return 0;
    int fd = (int) strtol(v, NULL, 10);
    unsetenv("FERRY_TICKET_KEYS_FD");
    unsigned char buf[FERRY_TLS_TICKET_KEYS_EXPORT_MAX];
    size_t len = 0;
    ssize_t r;
    while (len < sizeof(buf) && (r = read(fd, buf + len, sizeof(buf) - len)) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            break;
        len += (size_t) r;
    }
    close(fd);
    int rc = ferry_tls_ticket_keys_import(k, buf, len);
    memset(buf, 0, sizeof(buf)); /* secret */
    return rc < 0 ? rc : 1;
}

void restart_ready(const char *pid_file)
{
    if (pid_file) {
        char tmp[PATH_MAX];
        snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", pid_file, (long) getpid());
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%ld\n", (long) getpid()) < 0 || fclose(f) != 0 ||
            rename(tmp, pid_file) != 0) {
            fprintf(stderr, "ferry: serve: pid file %s: %s\n", pid_file, strerror(errno));
            unlink(tmp);
        }
    }
    const char *v = getenv("FERRY_READY_FD");
    if (v) {
        int fd = (int) strtol(v, NULL, 10);
        unsetenv("FERRY_READY_FD");
        if (write(fd, "R", 1) != 1)
            fprintf(stderr, "ferry: serve: could not tell the old process: %s\n",
                    strerror(errno));
        close(fd);
    }
}

void restart_forget_pid_file(const char *pid_file)
{
    if (!pid_file)
        return;
    FILE *f = fopen(pid_file, "r");
    long pid = 0;
    if (!f)
        return;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    if (pid == (long) getpid())
        unlink(pid_file);
}

/* ---- starting the new process ---- */

typedef struct spawn {
    uv_process_t proc;
    uv_poll_t ready;
    uv_timer_t timer;
    int ready_fd;
    uint64_t timeout_ms;
    bool finished;
    int open_handles;
    restart_done_cb done;
    void *data;
    char **env;
    char why[128];
} spawn;

static void spawn_handle_closed(uv_handle_t *h)
{
    spawn *sp = h->data;
    if (--sp->open_handles == 0) {
        if (sp->ready_fd >= 0)
            close(sp->ready_fd);
        for (char **e = sp->env; e && *e; e++)
            free(*e);
        free(sp->env);
        free(sp);
    }
}

/* The outcome is known: tell, and let go of the child (closing the process
 * handle does not touch the process). */
static void spawn_finish(spawn *sp, int status)
{
    if (sp->finished)
        return;
    sp->finished = true;
    uv_close((uv_handle_t *) &sp->ready, spawn_handle_closed);
    uv_close((uv_handle_t *) &sp->timer, spawn_handle_closed);
    uv_close((uv_handle_t *) &sp->proc, spawn_handle_closed);
    sp->done(status, status < 0 ? sp->why : NULL, sp->data);
}

static void on_ready_readable(uv_poll_t *p, int status, int events)
{
    (void) events;
    spawn *sp = p->data;
    char c;
    ssize_t r = status < 0 ? -1 : read(sp->ready_fd, &c, 1);
    if (r < 0 && errno == EAGAIN)
        return;
    if (r == 1 && c == 'R') {
        spawn_finish(sp, 0);
        return;
    }
    /* closed without a report: its exit status, if it comes, says more */
    uv_poll_stop(p);
    snprintf(sp->why, sizeof(sp->why), "it closed its report pipe without reporting");
}

static void on_child_exit(uv_process_t *proc, int64_t exit_status, int term_signal)
{
    spawn *sp = proc->data;
    if (term_signal)
        snprintf(sp->why, sizeof(sp->why), "it was killed by signal %d (%s) before accepting",
                 term_signal, strsignal(term_signal));
    else
        snprintf(sp->why, sizeof(sp->why), "it exited with status %lld before accepting",
                 (long long) exit_status);
    spawn_finish(sp, UV_ESRCH);
}

static void on_timeout(uv_timer_t *t)
{
    spawn *sp = t->data;
    snprintf(sp->why, sizeof(sp->why), "it did not report within %llu ms (stopped it)",
             (unsigned long long) sp->timeout_ms);
    uv_process_kill(&sp->proc, SIGTERM);
    spawn_finish(sp, UV_ETIMEDOUT);
}

/* environ without our variables, plus ours. Allocates the array and its
 * strings (owner: the spawn, freed when its handles are closed). */
static char **child_env(int nfds, int ready_at, int keys_at)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 4, sizeof(*env));
    if (!env)
        return NULL;
    size_t k = 0;
    static const char *const ours[] = {"FERRY_LISTEN_FDS=", "FERRY_READY_FD=",
                                       "FERRY_TICKET_KEYS_FD=", "LISTEN_FDS=", "LISTEN_PID=",
                                       "LISTEN_FDNAMES="};
    for (size_t i = 0; i < n; i++) {
        bool skip = false;
        for (size_t j = 0; j < sizeof(ours) / sizeof(ours[0]) && !skip; j++)
            skip = strncmp(environ[i], ours[j], strlen(ours[j])) == 0;
        if (!skip && !(env[k++] = strdup(environ[i])))
            goto fail;
    }
    char v[64];
    snprintf(v, sizeof(v), "FERRY_LISTEN_FDS=%d", nfds);
    if (!(env[k++] = strdup(v)))
        goto fail;
    snprintf(v, sizeof(v), "FERRY_READY_FD=%d", ready_at);
    if (!(env[k++] = strdup(v)))
        goto fail;
    if (keys_at >= 0) {
        snprintf(v, sizeof(v), "FERRY_TICKET_KEYS_FD=%d", keys_at);
        if (!(env[k++] = strdup(v)))
            goto fail;
    }
    return env;
fail:
    for (size_t i = 0; i < k; i++)
        free(env[i]);
    free(env);
    return NULL;
}

/* Allocates the spawn's state (owner: itself, freed once its handles close). */
int restart_spawn(uv_loop_t *loop, const int *fds, int nfds, ferry_tls_ticket_keys *keys,
                  uint64_t timeout_ms, restart_done_cb done, void *data)
{
    if (!self_argv || nfds <= 0 || nfds > MAX_INHERITED)
        return UV_EINVAL;
    int rp[2], kp[2] = {-1, -1};
    if (pipe2(rp, O_CLOEXEC) < 0)
        return -errno;
    if (keys) { /* the keys go through a pipe: they fit in its buffer, written before exec */
        unsigned char buf[FERRY_TLS_TICKET_KEYS_EXPORT_MAX];
        size_t len = 0;
        int rc = ferry_tls_ticket_keys_export(keys, buf, sizeof(buf), &len);
        if (rc == 0 && pipe2(kp, O_CLOEXEC) == 0) {
            ssize_t w = write(kp[1], buf, len);
            close(kp[1]);
            kp[1] = -1;
            if (w != (ssize_t) len) {
                close(kp[0]);
                kp[0] = -1;
            }
        }
        memset(buf, 0, sizeof(buf));
    }
    spawn *sp = calloc(1, sizeof(*sp));
    int ready_at = 3 + nfds, keys_at = kp[0] >= 0 ? 4 + nfds : -1;
    char **env = sp ? child_env(nfds, ready_at, keys_at) : NULL;
    if (sp)
        sp->proc.data = sp;
    uv_stdio_container_t io[3 + MAX_INHERITED + 2];
    int nio = 0;
    for (int i = 0; i < 3; i++)
        io[nio++] = (uv_stdio_container_t){.flags = UV_INHERIT_FD, .data.fd = i};
    for (int i = 0; i < nfds; i++)
        io[nio++] = (uv_stdio_container_t){.flags = UV_INHERIT_FD, .data.fd = fds[i]};
    io[nio++] = (uv_stdio_container_t){.flags = UV_INHERIT_FD, .data.fd = rp[1]};
    if (kp[0] >= 0)
        io[nio++] = (uv_stdio_container_t){.flags = UV_INHERIT_FD, .data.fd = kp[0]};
    int rc = env ? 0 : UV_ENOMEM;
    if (rc == 0) {
        uv_process_options_t o;
        memset(&o, 0, sizeof(o));
        o.file = self_path;
        o.args = self_argv;
        o.env = env;
        o.stdio = io;
        o.stdio_count = nio;
        o.exit_cb = on_child_exit;
        sp->proc.data = sp;
        rc = uv_spawn(loop, &sp->proc, &o);
    }
    close(rp[1]); /* the child's now */
    if (kp[0] >= 0)
        close(kp[0]);
    if (rc < 0) {
        close(rp[0]);
        if (!env) {
            free(sp);
            return rc;
        }
        /* uv_spawn failed after initialising the handle: it must be closed
         * all the same (sp and env go when it is) */
        sp->env = env;
        sp->ready_fd = -1;
        sp->open_handles = 1;
        uv_close((uv_handle_t *) &sp->proc, spawn_handle_closed);
        return rc;
    }
    sp->env = env;
    sp->ready_fd = rp[0];
    sp->timeout_ms = timeout_ms;
    sp->done = done;
    sp->data = data;
    sp->open_handles = 3;
    fcntl(rp[0], F_SETFL, fcntl(rp[0], F_GETFL) | O_NONBLOCK);
    uv_poll_init(loop, &sp->ready, rp[0]);
    sp->ready.data = sp;
    uv_poll_start(&sp->ready, UV_READABLE, on_ready_readable);
    uv_timer_init(loop, &sp->timer);
    sp->timer.data = sp;
    uv_timer_start(&sp->timer, on_timeout, timeout_ms, 0);
    return 0;
}
