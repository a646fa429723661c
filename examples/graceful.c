/* graceful.c — a deploy-safe shutdown. /work?ms=N answers after N ms (a
 * timer stands in for real work); on SIGTERM the server stops accepting,
 * closes idle connections at once, lets work in flight finish and answers it
 * with Connection: close, and gives up after a grace period. A handler whose
 * client goes away hears it through ferry_res_on_abort and stops early.
 * Usage: graceful [PORT [GRACE_MS]] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"

typedef struct work {
    ferry_res *res;
    uv_timer_t timer;
} work;

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_work_done(uv_timer_t *t)
{
    work *w = t->data;
    ferry_res_send(w->res, 200, "text/plain", "done\n", 5);
    uv_close((uv_handle_t *) &w->timer, on_timer_closed);
}

/* The client left (or the server was destroyed): stop and still end the response. */
static void on_abort(ferry_res *res, int err, void *data)
{
    work *w = data;
    (void) err;
    uv_timer_stop(&w->timer);
    ferry_res_end(res);
    uv_close((uv_handle_t *) &w->timer, on_timer_closed);
}

static void on_request(ferry_req *req, ferry_res *res, void *data)
{
    uv_loop_t *loop = data;
    ferry_str path = ferry_req_path(req), q = ferry_req_query(req);
    if (path.len != 5 || memcmp(path.p, "/work", 5) != 0) {
        ferry_res_send(res, 200, "text/plain", "hello, world", 12);
        return;
    }
    uint64_t ms = 100;
    if (q.len > 3 && memcmp(q.p, "ms=", 3) == 0)
        ms = strtoull(q.p + 3, NULL, 10); /* the query ends at the target's end: a SP */
    work *w = malloc(sizeof(*w));
    if (!w) {
        ferry_res_send(res, 503, "text/plain", "busy\n", 5);
        return;
    }
    w->res = res;
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, on_work_done, ms, 0);
    ferry_res_on_abort(res, on_abort, w);
}

static void on_closed(ferry_server *s, void *data)
{
    (void) data;
    ferry_server_stats st;
    ferry_server_stats_get(s, &st);
    printf("closed after %llu requests\n", (unsigned long long) st.requests);
    fflush(stdout);
}

static uv_signal_t sig;
static ferry_server *server;
static uint64_t grace_ms = 10000;

static void on_sigterm(uv_signal_t *h, int signum)
{
    (void) signum;
    uv_close((uv_handle_t *) h, NULL);
    ferry_server_close(server, grace_ms, on_closed);
}

int main(int argc, char **argv)
{
    uv_loop_t *loop = uv_default_loop();
    if (argc > 2)
        grace_ms = strtoull(argv[2], NULL, 10);
    int rc = ferry_server_new(loop, NULL, on_request, loop, &server);
    if (rc == 0)
        rc = ferry_server_listen(server, "127.0.0.1", argc > 1 ? atoi(argv[1]) : 0);
    if (rc < 0) {
        fprintf(stderr, "graceful: %s\n", ferry_strerror(rc));
        return 1;
    }
    printf("listening on http://127.0.0.1:%d\n", ferry_server_port(server));
    fflush(stdout);
    uv_signal_init(loop, &sig);
    uv_signal_start(&sig, on_sigterm, SIGTERM);
    uv_unref((uv_handle_t *) &sig);
    uv_run(loop, UV_RUN_DEFAULT);
    ferry_server_free(server);
    return uv_loop_close(loop) == 0 ? 0 : 1;
}
