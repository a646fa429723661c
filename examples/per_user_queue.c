/* per_user_queue.c — a server that applies each user's updates one at a time,
 * in order, while different users proceed in parallel: ferry_queue keyed by
 * the X-User header. A 20 ms timer stands in for the database call. A request
 * whose client leaves while it waits is cancelled.
 * Usage: per_user_queue [PORT]  — see docs/queue.md. */
#include <stdio.h>
#include <stdlib.h>

#include "ferry.h"

static uv_loop_t *loop;
static ferry_queue *queue; /* one per loop */

typedef struct update {
    ferry_res *res;
    ferry_queue_task *task;
    uv_timer_t db;          /* stands in for a database call */
} update;

static void on_db_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_db_done(uv_timer_t *t)
{
    update *u = t->data;
    ferry_res_send(u->res, 200, "text/plain", "applied\n", 8);
    ferry_queue_task_done(u->task); /* this user's next request may start */
    uv_close((uv_handle_t *) &u->db, on_db_closed);
}

/* Runs when it is this user's turn and a slot is free. */
static void apply_update(ferry_queue_task *t, int status, void *data)
{
    update *u = data;
    if (status == FERRY_ECANCELED) { /* the client left, or the queue closed */
        ferry_res_send(u->res, 503, "text/plain", "cancelled\n", 10);
        free(u);
        return;
    }
    (void) t; /* the same handle push gave us in u->task */
    uv_timer_init(loop, &u->db);
    u->db.data = u;
    uv_timer_start(&u->db, on_db_done, 20, 0);
}

static void on_abort(ferry_res *res, int err, void *data)
{
    update *u = data;
    (void) res;
    (void) err;
    ferry_queue_task_cancel(u->task); /* FERRY_EBUSY once it runs: it will answer */
}

static void on_request(ferry_req *req, ferry_res *res, void *data)
{
    (void) data;
    ferry_str user = ferry_req_header(req, "X-User"); /* absent: {NULL, 0}, no key */
    update *u = calloc(1, sizeof(*u));
    if (u == NULL) {
        ferry_res_send(res, 503, "text/plain", "busy\n", 5);
        return;
    }
    u->res = res;
    /* The key is copied: user.p points into the request buffer. */
    int rc = ferry_queue_push(queue, user.p, user.len, apply_update, u, &u->task);
    if (rc < 0) { /* FERRY_EQUEUEFULL, FERRY_ECLOSING, FERRY_ENOMEM */
        free(u);
        ferry_res_send(res, 503, "text/plain", "busy\n", 5);
        return;
    }
    ferry_res_on_abort(res, on_abort, u); /* safe after push: apply_update has not run yet */
}

int main(int argc, char **argv)
{
    loop = uv_default_loop();
    ferry_queue_options qo;
    ferry_queue_options_init(&qo);
    qo.concurrency = 64;         /* updates in flight, all users */
    qo.max_queued_per_key = 100; /* one user cannot fill the queue */
    ferry_queue_new(loop, &qo, &queue);

    ferry_server *s;
    ferry_server_new(loop, NULL, on_request, NULL, &s);
    if (ferry_server_listen(s, "127.0.0.1", argc > 1 ? atoi(argv[1]) : 0) < 0)
        return 1;
    printf("listening on http://127.0.0.1:%d\n", ferry_server_port(s));
    fflush(stdout);
    ferry_server_on_signals(s, 10000);
    uv_run(loop, UV_RUN_DEFAULT); /* returns once the server has closed */

    ferry_queue_close(queue, FERRY_QUEUE_DRAIN, NULL, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    ferry_queue_free(queue);
    ferry_server_free(s);
    return uv_loop_close(loop);
}
