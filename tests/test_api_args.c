/* test_api_args.c — every function ferry.h declares, called with NULL for
 * each pointer argument and 0 for each length (issue 13 item 5): each gives
 * FERRY_EINVAL or the neutral value its comment documents, and none crashes
 * (run it under `make asan` too).
 *
 * One table, one row per function, named by the function (ROW(ferry_x)
 * runs row_ferry_x). test_table_covers_header reads include/ferry.h with the
 * rule tests/install/symbols.sh uses and fails when the header declares a
 * function the table lacks, or the table names one it no longer declares: a
 * new entry point cannot skip the rule.
 *
 * Rows run where the handles they need beside the NULL exist: on the test's
 * thread with a loop, a listening server, one that never listened, an agent,
 * a queue and ticket keys (AT_MAIN); in the server's request callback, one
 * request per row so no row sees another's leftovers (AT_HANDLER); in a
 * streamed client request's on_body_ready (AT_CLIENT). Everything runs on one
 * loop, which must close clean at the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include <cmocka.h>

#include "ferry.h"
#include "support/client_support.h"

#ifndef FERRY_SOURCE_DIR
#error "CMakeLists.txt passes FERRY_SOURCE_DIR (the tree, for include/ferry.h)"
#endif

typedef struct fx {
    uv_loop_t *loop;
    ferry_server *server; /* listening on 127.0.0.1 */
    ferry_server *idle;   /* never listened: what listen_unix and set_tls may take */
    ferry_agent *agent;
    ferry_queue *queue;
    ferry_tls_ticket_keys *keys;
    int port;
    int started, done; /* asynchronous work begun and finished (requests, tasks) */
    /* AT_HANDLER */
    ferry_req *req;
    ferry_res *res;
    bool ended;       /* the row ended the response itself */
    bool expect_fail; /* ...and the client is to see an error for it */
    /* AT_CLIENT */
    ferry_client_req *creq;
    /* callbacks that must never run, and those that must */
    int bad_calls;
    int good_writes;
    int server_closed, queue_closed;
} fx;

typedef enum { AT_MAIN, AT_HANDLER, AT_CLIENT } where;

typedef struct row {
    const char *name;
    where at;
    void (*run)(fx *f);
} row;

static void assert_none(ferry_str s)
{
    assert_null(s.p);
    assert_int_equal(s.len, 0);
}

/* What an out pointer holds before a call that must set it to NULL. */
static char not_null_yet;
#define NOT_NULL_YET ((void *) &not_null_yet)

/* ---- callbacks ---------------------------------------------------------------- */

static void on_request_unused(ferry_req *req, ferry_res *res, void *data)
{
    (void) req;
    (void) data;
    ferry_res_send(res, 500, NULL, NULL, 0);
}

static void bad_server_close(ferry_server *s, void *data)
{
    (void) s;
    ((fx *) data)->bad_calls++;
}

static void bad_agent_close(ferry_agent *a, void *data)
{
    (void) a;
    ((fx *) data)->bad_calls++;
}

static void bad_queue_close(ferry_queue *q, void *data)
{
    (void) q;
    ((fx *) data)->bad_calls++;
}

static void bad_task(ferry_queue_task *t, int status, void *data)
{
    (void) t;
    (void) status;
    ((fx *) data)->bad_calls++;
}

static void bad_res_write(ferry_res *res, int status, void *data)
{
    (void) res;
    (void) status;
    ((fx *) data)->bad_calls++;
}

static void bad_client_write(ferry_client_req *req, int status, void *data)
{
    (void) req;
    (void) status;
    ((fx *) data)->bad_calls++;
}

static void bad_body(ferry_req *req, int status, const char *body, size_t len, void *data)
{
    (void) req;
    (void) status;
    (void) body;
    (void) len;
    ((fx *) data)->bad_calls++;
}

static void bad_data(ferry_req *req, int status, const char *buf, size_t len, void *data)
{
    bad_body(req, status, buf, len, data);
}

static void bad_work(void *data)
{
    ((fx *) data)->bad_calls++;
}

static void bad_after_work(ferry_res *res, int status, void *data)
{
    (void) res;
    (void) status;
    ((fx *) data)->bad_calls++;
}

static void bad_abort(ferry_res *res, int err, void *data)
{
    (void) res;
    (void) err;
    ((fx *) data)->bad_calls++;
}

static void bad_done(ferry_client_req *req, int status, void *data)
{
    (void) req;
    (void) status;
    ((fx *) data)->bad_calls++;
}

static void bad_fetched(ferry_client_req *req, int status, const ferry_response *r, void *data)
{
    (void) r;
    bad_done(req, status, data);
}

static const ferry_request_callbacks bad_callbacks = {.on_done = bad_done};

/* A real request or fetch a row started: it must succeed. */
static void good_done(ferry_client_req *req, int status, void *data)
{
    (void) req;
    fx *f = data;
    assert_int_equal(status, 0);
    f->done++;
}

static void good_fetched(ferry_client_req *req, int status, const ferry_response *r, void *data)
{
    assert_non_null(r);
    assert_int_equal(r->status, 200);
    good_done(req, status, data);
}

static const ferry_request_callbacks good_callbacks = {.on_done = good_done};

static void good_task(ferry_queue_task *t, int status, void *data)
{
    fx *f = data;
    assert_int_equal(status, 0);
    ferry_queue_task_done(NULL); /* nothing, and t still runs */
    ferry_queue_task_done(t);
    f->done++;
}

static void good_client_write(ferry_client_req *req, int status, void *data)
{
    (void) req;
    assert_int_equal(status, 0);
    ((fx *) data)->good_writes++;
}

static ferry_request_options opts(fx *f, const char *method, const char *path)
{
    ferry_request_options o = cs_opts(method, cs_url(f->port, path));
    o.retries = 0; /* a row's request runs its row once */
    return o;
}

/* ---- rows: errors, versions, names ----------------------------------------------- */

static void row_ferry_version_string(fx *f)
{
    (void) f;
    assert_string_equal(ferry_version_string(), FERRY_VERSION_STRING);
}

static void row_ferry_strerror(fx *f)
{
    (void) f;
    assert_non_null(ferry_strerror(0));
    assert_non_null(ferry_strerror(FERRY_EINVAL));
}

static void row_ferry_err_name(fx *f)
{
    (void) f;
    assert_non_null(ferry_err_name(0));
    assert_string_equal(ferry_err_name(FERRY_EINVAL), "EINVAL");
}

static void row_ferry_err_http_status(fx *f)
{
    (void) f;
    assert_int_equal(ferry_err_http_status(0), 0);
}

static void row_ferry_err_kind_of(fx *f)
{
    (void) f;
    assert_int_equal(ferry_err_kind_of(0), FERRY_ERRK_OTHER);
}

static void row_ferry_err_kind_name(fx *f)
{
    (void) f;
    assert_string_equal(ferry_err_kind_name((ferry_err_kind) 999), "other");
    assert_string_equal(ferry_err_kind_name((ferry_err_kind) -1), "other");
}

/* ---- rows: TLS ------------------------------------------------------------------ */

static void row_ferry_tls_options_init_sized(fx *f)
{
    (void) f;
    ferry_tls_options_init_sized(NULL, sizeof(ferry_tls_options));
    ferry_tls_options o;
    memset(&o, 0xab, sizeof(o));
    ferry_tls_options_init_sized(&o, 0); /* too small for struct_size: left alone */
    assert_int_equal(((unsigned char *) &o)[0], 0xab);
}

static void row_ferry_tls_context_new(fx *f)
{
    (void) f;
    ferry_tls_context *ctx = NOT_NULL_YET;
    assert_int_equal(ferry_tls_context_new(NULL, &ctx), FERRY_EINVAL);
    assert_null(ctx);
    ferry_tls_options o;
    ferry_tls_options_init(&o);
    assert_int_equal(ferry_tls_context_new(&o, NULL), FERRY_EINVAL);
    o.sni_certs = NULL;
    o.sni_cert_count = 2;
    ctx = NOT_NULL_YET;
    assert_int_equal(ferry_tls_context_new(&o, &ctx), FERRY_EINVAL);
    assert_null(ctx);
    assert_true(ferry_tls_error_detail()[0] != '\0');
}

static void row_ferry_tls_context_ref(fx *f)
{
    (void) f;
    assert_null(ferry_tls_context_ref(NULL));
}

static void row_ferry_tls_context_free(fx *f)
{
    (void) f;
    ferry_tls_context_free(NULL);
}

static void row_ferry_tls_error_detail(fx *f)
{
    (void) f;
    assert_non_null(ferry_tls_error_detail());
}

static void row_ferry_tls_ticket_keys_new(fx *f)
{
    (void) f;
    assert_int_equal(ferry_tls_ticket_keys_new(0, 0, NULL), FERRY_EINVAL);
}

static void row_ferry_tls_ticket_keys_ref(fx *f)
{
    (void) f;
    assert_null(ferry_tls_ticket_keys_ref(NULL));
}

static void row_ferry_tls_ticket_keys_free(fx *f)
{
    (void) f;
    ferry_tls_ticket_keys_free(NULL);
}

static void row_ferry_tls_ticket_keys_rotate(fx *f)
{
    (void) f;
    assert_int_equal(ferry_tls_ticket_keys_rotate(NULL), FERRY_EINVAL);
}

static void row_ferry_tls_ticket_keys_export(fx *f)
{
    unsigned char buf[FERRY_TLS_TICKET_KEYS_EXPORT_MAX];
    size_t len = 123;
    assert_int_equal(ferry_tls_ticket_keys_export(NULL, buf, sizeof(buf), &len), FERRY_EINVAL);
    assert_int_equal(len, 0);
    assert_int_equal(ferry_tls_ticket_keys_export(f->keys, buf, sizeof(buf), NULL), FERRY_EINVAL);
    assert_int_equal(ferry_tls_ticket_keys_export(f->keys, NULL, 0, NULL), FERRY_EINVAL);
    /* buf NULL with cap 0: the size only, as documented */
    assert_int_equal(ferry_tls_ticket_keys_export(f->keys, NULL, 0, &len), 0);
    assert_true(len > 0 && len <= sizeof(buf));
}

static void row_ferry_tls_ticket_keys_import(fx *f)
{
    unsigned char buf[FERRY_TLS_TICKET_KEYS_EXPORT_MAX];
    size_t len;
    assert_int_equal(ferry_tls_ticket_keys_export(f->keys, buf, sizeof(buf), &len), 0);
    assert_int_equal(ferry_tls_ticket_keys_import(NULL, buf, len), FERRY_EINVAL);
    assert_int_equal(ferry_tls_ticket_keys_import(f->keys, NULL, 0), FERRY_EINVAL);
    assert_int_equal(ferry_tls_ticket_keys_import(f->keys, NULL, len), FERRY_EINVAL);
    assert_int_equal(ferry_tls_ticket_keys_import(f->keys, buf, 0), FERRY_EINVAL);
    assert_int_equal(ferry_tls_ticket_keys_import(f->keys, buf, len), 0); /* still usable */
}

static void row_ferry_tls_verify_reason_name(fx *f)
{
    (void) f;
    assert_string_equal(ferry_tls_verify_reason_name((ferry_tls_verify_reason) 999), "other");
    assert_string_equal(ferry_tls_verify_reason_name((ferry_tls_verify_reason) -1), "other");
}

/* ---- rows: server ----------------------------------------------------------------- */

static void row_ferry_server_options_init_sized(fx *f)
{
    (void) f;
    ferry_server_options_init_sized(NULL, sizeof(ferry_server_options));
    ferry_server_options o;
    memset(&o, 0xab, sizeof(o));
    ferry_server_options_init_sized(&o, 0);
    assert_int_equal(((unsigned char *) &o)[0], 0xab);
}

static void row_ferry_server_new(fx *f)
{
    ferry_server *s = NOT_NULL_YET;
    assert_int_equal(ferry_server_new(NULL, NULL, on_request_unused, NULL, &s), FERRY_EINVAL);
    assert_null(s);
    s = NOT_NULL_YET;
    assert_int_equal(ferry_server_new(f->loop, NULL, NULL, NULL, &s), FERRY_EINVAL);
    assert_null(s);
    assert_int_equal(ferry_server_new(f->loop, NULL, on_request_unused, NULL, NULL), FERRY_EINVAL);
    ferry_server_options o;
    memset(&o, 0, sizeof(o)); /* struct_size 0: never initialised */
    s = NOT_NULL_YET;
    assert_int_equal(ferry_server_new(f->loop, &o, on_request_unused, NULL, &s), FERRY_EINVAL);
    assert_null(s);
    /* o NULL: the defaults (the fixture's servers are made so too) */
    assert_int_equal(ferry_server_new(f->loop, NULL, on_request_unused, NULL, &s), 0);
    assert_int_equal(ferry_server_free(s), 0);
}

static void row_ferry_server_listen(fx *f)
{
    (void) f; /* host NULL is the fixture's own listen */
    assert_int_equal(ferry_server_listen(NULL, "127.0.0.1", 0), FERRY_EINVAL);
    assert_int_equal(ferry_server_listen(NULL, NULL, 0), FERRY_EINVAL);
}

static void row_ferry_server_listen_unix(fx *f)
{
    assert_int_equal(ferry_server_listen_unix(NULL, "/tmp/x.sock"), FERRY_EINVAL);
    assert_int_equal(ferry_server_listen_unix(f->idle, NULL), FERRY_EINVAL);
}

static void row_ferry_server_port(fx *f)
{
    assert_int_equal(ferry_server_port(NULL), FERRY_EINVAL);
    assert_int_equal(ferry_server_port(f->idle), FERRY_ENOTCONN);
}

static void row_ferry_server_data(fx *f)
{
    assert_null(ferry_server_data(NULL));
    assert_ptr_equal(ferry_server_data(f->server), f);
}

static void row_ferry_server_set_data(fx *f)
{
    ferry_server_set_data(NULL, f);
    ferry_server_set_data(f->idle, f);
    assert_ptr_equal(ferry_server_data(f->idle), f);
}

static void row_ferry_server_loop(fx *f)
{
    assert_null(ferry_server_loop(NULL));
    assert_ptr_equal(ferry_server_loop(f->server), f->loop);
}

static void row_ferry_server_listen_fd(fx *f)
{
    assert_int_equal(ferry_server_listen_fd(NULL, -1), FERRY_EINVAL);
    assert_int_equal(ferry_server_listen_fd(f->idle, -1), FERRY_EINVAL);
    int p[2];
    assert_int_equal(pipe(p), 0);
    close(p[1]);
    assert_int_equal(ferry_server_listen_fd(NULL, p[0]), FERRY_EINVAL); /* and closed */
    assert_int_equal(pipe(p), 0);
    close(p[1]);
    assert_int_equal(ferry_server_listen_fd(f->idle, p[0]), FERRY_EINVAL); /* not a socket */
    assert_int_equal(ferry_server_port(f->idle), FERRY_ENOTCONN);
}

static void row_ferry_server_listener_fd(fx *f)
{
    assert_int_equal(ferry_server_listener_fd(NULL, 0), FERRY_EINVAL);
    assert_int_equal(ferry_server_listener_fd(f->idle, 0), FERRY_EINVAL);
    assert_int_equal(ferry_server_listener_fd(f->server, 999), FERRY_EINVAL);
}

static void row_ferry_server_listeners_reclaim(fx *f)
{
    assert_int_equal(ferry_server_listeners_reclaim(NULL), FERRY_EINVAL);
    assert_int_equal(ferry_server_listeners_reclaim(f->idle), 0); /* nothing handed: nothing to do */
}

static void never_posted(ferry_server *s, int status, void *data)
{
    (void) s;
    (void) status;
    ((fx *) data)->bad_calls++;
}

static void row_ferry_server_post(fx *f)
{
    assert_int_equal(ferry_server_post(NULL, never_posted, f), FERRY_EINVAL);
    assert_int_equal(ferry_server_post(f->server, NULL, f), FERRY_EINVAL);
    assert_int_equal(ferry_server_post(f->idle, never_posted, f), FERRY_ENOTCONN);
}

static void row_ferry_server_draining(fx *f)
{
    assert_int_equal(ferry_server_draining(NULL), 0);
    assert_int_equal(ferry_server_draining(f->server), 0);
}

/* Groups: NULLs, and a group that never starts (no thread is made). */
static ferry_group *idle_group(fx *f)
{
    ferry_group_options go;
    ferry_group_options_init(&go);
    go.loops = 1;
    ferry_group *g;
    assert_int_equal(ferry_group_new(&go, NULL, on_request_unused, f, &g), 0);
    return g;
}

static void row_ferry_group_options_init_sized(fx *f)
{
    (void) f;
    ferry_group_options_init_sized(NULL, sizeof(ferry_group_options));
    ferry_group_options go;
    ferry_group_options_init(&go);
    assert_int_equal(go.loops, 0);
}

static void row_ferry_group_new(fx *f)
{
    ferry_group *g = (ferry_group *) f;
    assert_int_equal(ferry_group_new(NULL, NULL, on_request_unused, f, NULL), FERRY_EINVAL);
    assert_int_equal(ferry_group_new(NULL, NULL, NULL, f, &g), FERRY_EINVAL);
    assert_null(g);
    ferry_group_options go = {0}; /* no _init: struct_size 0 */
    assert_int_equal(ferry_group_new(&go, NULL, on_request_unused, f, &g), FERRY_EINVAL);
}

static void row_ferry_group_listen(fx *f)
{
    assert_int_equal(ferry_group_listen(NULL, "127.0.0.1", 0), FERRY_EINVAL);
    ferry_group *g = idle_group(f);
    assert_int_equal(ferry_group_listen(g, "127.0.0.1", 70000), FERRY_EINVAL);
    assert_int_equal(ferry_group_free(g), 0);
}

static void row_ferry_group_listen_fd(fx *f)
{
    assert_int_equal(ferry_group_listen_fd(NULL, -1), FERRY_EINVAL);
    ferry_group *g = idle_group(f);
    assert_int_equal(ferry_group_listen_fd(g, -1), FERRY_EINVAL);
    int p[2];
    assert_int_equal(pipe(p), 0);
    close(p[1]);
    assert_int_equal(ferry_group_listen_fd(g, p[0]), FERRY_EINVAL);
    assert_int_equal(ferry_group_free(g), 0);
}

static void row_ferry_group_port(fx *f)
{
    assert_int_equal(ferry_group_port(NULL), FERRY_ENOTCONN);
    ferry_group *g = idle_group(f);
    assert_int_equal(ferry_group_port(g), FERRY_ENOTCONN);
    assert_int_equal(ferry_group_free(g), 0);
}

static void row_ferry_group_loops(fx *f)
{
    assert_int_equal(ferry_group_loops(NULL), 0);
    ferry_group *g = idle_group(f);
    assert_int_equal(ferry_group_loops(g), 1);
    assert_int_equal(ferry_group_free(g), 0);
}

static void row_ferry_group_listener_fds(fx *f)
{
    int fds[2];
    assert_int_equal(ferry_group_listener_fds(NULL, fds, 2), FERRY_EINVAL);
    ferry_group *g = idle_group(f);
    assert_int_equal(ferry_group_listener_fds(g, NULL, 2), FERRY_EINVAL);
    assert_int_equal(ferry_group_listener_fds(g, NULL, 0), 0);
    assert_int_equal(ferry_group_free(g), 0);
}

static void row_ferry_group_listeners_reclaim(fx *f)
{
    assert_int_equal(ferry_group_listeners_reclaim(NULL), FERRY_EINVAL);
    ferry_group *g = idle_group(f);
    assert_int_equal(ferry_group_listeners_reclaim(g), 0);
    assert_int_equal(ferry_group_free(g), 0);
}

static void row_ferry_group_on_signals(fx *f)
{
    (void) f;
    assert_int_equal(ferry_group_on_signals(NULL, 0), FERRY_EINVAL);
}

static void row_ferry_group_start(fx *f)
{
    assert_int_equal(ferry_group_start(NULL), FERRY_EINVAL);
    ferry_group *g = idle_group(f);
    assert_int_equal(ferry_group_start(g), FERRY_ENOTCONN); /* nothing to listen on */
    assert_int_equal(ferry_group_free(g), 0);
}

static void row_ferry_group_wait(fx *f)
{
    assert_int_equal(ferry_group_wait(NULL), FERRY_EINVAL);
    ferry_group *g = idle_group(f);
    assert_int_equal(ferry_group_wait(g), 0); /* never started: nothing to wait for */
    assert_int_equal(ferry_group_free(g), 0);
}

static void row_ferry_group_run(fx *f)
{
    (void) f;
    assert_int_equal(ferry_group_run(NULL), FERRY_EINVAL);
}

static int group_closes;

static void group_closed_cb(ferry_group *g, void *data)
{
    (void) g;
    (void) data;
    group_closes++;
}

static void row_ferry_group_close(fx *f)
{
    ferry_group_close(NULL, 0, group_closed_cb, f);
    ferry_group *g = idle_group(f);
    ferry_group_close(g, 0, group_closed_cb, f); /* never started: closed at once */
    ferry_group_close(g, 0, group_closed_cb, f);
    assert_int_equal(group_closes, 1);
    assert_int_equal(ferry_group_draining(g), 1);
    assert_int_equal(ferry_group_free(g), 0);
}

static void row_ferry_group_drain(fx *f)
{
    (void) f;
    ferry_group_drain(NULL, 10, 0, group_closed_cb, NULL);
}

static void row_ferry_server_drain(fx *f)
{
    (void) f;
    ferry_server_drain(NULL, 10, 0, NULL);
}

static void row_ferry_group_close_idle(fx *f)
{
    (void) f;
    ferry_group_close_idle(NULL);
}

static void row_ferry_group_destroy(fx *f)
{
    ferry_group_destroy(NULL);
    ferry_group *g = idle_group(f);
    ferry_group_destroy(g);
    assert_int_equal(ferry_group_free(g), 0);
}

static void row_ferry_group_draining(fx *f)
{
    (void) f;
    assert_int_equal(ferry_group_draining(NULL), 0);
}

static void row_ferry_group_post(fx *f)
{
    assert_int_equal(ferry_group_post(NULL, 0, never_posted, f), FERRY_EINVAL);
    ferry_group *g = idle_group(f);
    assert_int_equal(ferry_group_post(g, 0, NULL, f), FERRY_EINVAL);
    assert_int_equal(ferry_group_post(g, 1, never_posted, f), FERRY_EINVAL);
    assert_int_equal(ferry_group_post(g, 0, never_posted, f), FERRY_ENOTCONN);
    assert_int_equal(ferry_group_free(g), 0);
}

static void row_ferry_group_stats_get_sized(fx *f)
{
    ferry_server_stats st;
    memset(&st, 0xff, sizeof(st));
    ferry_group_stats_get_sized(NULL, &st, sizeof(st));
    assert_int_equal(st.requests, 0);
    ferry_group *g = idle_group(f);
    ferry_group_stats_get_sized(g, NULL, sizeof(st));
    ferry_group_stats_get(g, &st);
    assert_int_equal(st.requests, 0);
    assert_int_equal(ferry_group_free(g), 0);
}

static void row_ferry_group_free(fx *f)
{
    (void) f;
    assert_int_equal(ferry_group_free(NULL), 0);
}

static void row_ferry_server_set_tls(fx *f)
{
    assert_int_equal(ferry_server_set_tls(NULL, NULL), FERRY_EINVAL);
    assert_int_equal(ferry_server_set_tls(f->idle, NULL), 0); /* NULL ctx: plain HTTP */
}

static void row_ferry_server_close_idle(fx *f)
{
    (void) f;
    ferry_server_close_idle(NULL);
}

static void row_ferry_server_close(fx *f)
{
    ferry_server_close(NULL, 0, bad_server_close); /* bad_calls: cb never runs */
    ferry_server_close(NULL, 0, NULL);
    (void) f;
}

static void row_ferry_server_destroy(fx *f)
{
    (void) f;
    ferry_server_destroy(NULL);
}

static void row_ferry_server_on_signals(fx *f)
{
    (void) f;
    assert_int_equal(ferry_server_on_signals(NULL, 0), FERRY_EINVAL);
}

static void row_ferry_server_free(fx *f)
{
    (void) f;
    assert_int_equal(ferry_server_free(NULL), 0);
}

static void row_ferry_server_stats_get_sized(fx *f)
{
    ferry_server_stats st, zero;
    memset(&zero, 0, sizeof(zero));
    memset(&st, 0xff, sizeof(st));
    ferry_server_stats_get_sized(NULL, &st, sizeof(st));
    assert_memory_equal(&st, &zero, sizeof(st));
    ferry_server_stats_get_sized(f->server, NULL, sizeof(st));
    ferry_server_stats_get_sized(NULL, NULL, sizeof(st));
    memset(&st, 0xff, sizeof(st));
    ferry_server_stats_get_sized(f->server, &st, 0); /* size 0: nothing written */
    assert_int_equal(st.connections_active, UINT64_MAX);
}

static void row_ferry_server_stats_get(fx *f)
{
    ferry_server_stats st;
    memset(&st, 0xff, sizeof(st));
    (ferry_server_stats_get)(NULL, &st); /* 0.1.0's function, not the macro */
    assert_int_equal(st.connections_active, 0);
    assert_int_equal(st.closing, 0);
    (ferry_server_stats_get)(f->server, NULL);
}

/* ---- rows: a request and its response (AT_HANDLER: f->req, f->res live) ---------- */

static void row_ferry_req_method(fx *f)
{
    assert_none(ferry_req_method(NULL));
    assert_int_equal(ferry_req_method(f->req).len, 3); /* GET */
}

static void row_ferry_req_target(fx *f)
{
    assert_none(ferry_req_target(NULL));
    assert_non_null(ferry_req_target(f->req).p);
}

static void row_ferry_req_path(fx *f)
{
    assert_none(ferry_req_path(NULL));
    assert_non_null(ferry_req_path(f->req).p);
}

static void row_ferry_req_query(fx *f)
{
    assert_none(ferry_req_query(NULL));
    assert_none(ferry_req_query(f->req)); /* no '?' */
}

static void row_ferry_req_version_minor(fx *f)
{
    assert_int_equal(ferry_req_version_minor(NULL), FERRY_EINVAL);
    assert_int_equal(ferry_req_version_minor(f->req), 1);
}

static void row_ferry_req_header(fx *f)
{
    assert_none(ferry_req_header(NULL, "host"));
    assert_none(ferry_req_header(f->req, NULL));
    assert_non_null(ferry_req_header(f->req, "host").p);
}

static void row_ferry_req_header_count(fx *f)
{
    assert_int_equal(ferry_req_header_count(NULL), 0);
    assert_true(ferry_req_header_count(f->req) > 0);
}

static void row_ferry_req_header_at(fx *f)
{
    ferry_str n, v;
    assert_int_equal(ferry_req_header_at(NULL, 0, &n, &v), FERRY_EINVAL);
    assert_int_equal(ferry_req_header_at(f->req, 0, NULL, &v), FERRY_EINVAL);
    assert_int_equal(ferry_req_header_at(f->req, 0, &n, NULL), FERRY_EINVAL);
    assert_int_equal(ferry_req_header_at(f->req, 0, NULL, NULL), FERRY_EINVAL);
    assert_int_equal(ferry_req_header_at(f->req, 0, &n, &v), 0);
}

static void row_ferry_req_peer(fx *f)
{
    struct sockaddr_storage a;
    assert_int_equal(ferry_req_peer(NULL, &a), FERRY_EINVAL);
    assert_int_equal(ferry_req_peer(f->req, NULL), FERRY_EINVAL);
    assert_int_equal(ferry_req_peer(f->req, &a), 0);
}

static void row_ferry_req_tls(fx *f)
{
    ferry_tls_info info;
    assert_int_equal(ferry_req_tls(NULL, &info), FERRY_EINVAL);
    assert_int_equal(ferry_req_tls(f->req, NULL), FERRY_EINVAL);
    assert_int_equal(ferry_req_tls(f->req, &info), FERRY_ENOTSUP); /* plain HTTP */
}

static void row_ferry_req_res(fx *f)
{
    assert_null(ferry_req_res(NULL));
    assert_ptr_equal(ferry_req_res(f->req), f->res);
}

static void row_ferry_req_server(fx *f)
{
    assert_null(ferry_req_server(NULL));
    assert_ptr_equal(ferry_req_server(f->req), f->server);
}

static void row_ferry_req_read_body(fx *f)
{
    assert_int_equal(ferry_req_read_body(NULL, 0, bad_body, f), FERRY_EINVAL);
    assert_int_equal(ferry_req_read_body(f->req, 0, NULL, f), FERRY_EINVAL);
}

static void row_ferry_req_on_data(fx *f)
{
    assert_int_equal(ferry_req_on_data(NULL, bad_data, f), FERRY_EINVAL);
    assert_int_equal(ferry_req_on_data(f->req, NULL, f), FERRY_EINVAL);
}

static void row_ferry_req_pause(fx *f)
{
    (void) f;
    ferry_req_pause(NULL);
}

static void row_ferry_req_resume(fx *f)
{
    (void) f;
    ferry_req_resume(NULL);
}

static void row_ferry_res_set_status(fx *f)
{
    assert_int_equal(ferry_res_set_status(NULL, 200), FERRY_EINVAL);
    assert_int_equal(ferry_res_set_status(f->res, 200), 0);
}

static void row_ferry_res_set_header(fx *f)
{
    assert_int_equal(ferry_res_set_header(NULL, "x-a", "1"), FERRY_EINVAL);
    assert_int_equal(ferry_res_set_header(f->res, NULL, "1"), FERRY_EINVAL);
    assert_int_equal(ferry_res_set_header(f->res, "x-a", NULL), FERRY_EINVAL);
    assert_int_equal(ferry_res_set_header(f->res, "x-a", "1"), 0);
}

static void row_ferry_res_add_header(fx *f)
{
    assert_int_equal(ferry_res_add_header(NULL, "x-a", "1"), FERRY_EINVAL);
    assert_int_equal(ferry_res_add_header(f->res, NULL, "1"), FERRY_EINVAL);
    assert_int_equal(ferry_res_add_header(f->res, "x-a", NULL), FERRY_EINVAL);
    assert_int_equal(ferry_res_add_header(f->res, "x-a", "1"), 0);
}

static void row_ferry_res_write(fx *f)
{
    assert_int_equal(ferry_res_write(NULL, "x", 1, bad_res_write, f), FERRY_EINVAL);
    assert_int_equal(ferry_res_write(f->res, NULL, 1, bad_res_write, f), FERRY_EINVAL);
    /* NULL with 0 is an empty write: it sends the head, the response goes on */
    assert_int_equal(ferry_res_write(f->res, NULL, 0, NULL, NULL), 0);
    assert_int_equal(ferry_res_write(f->res, "ok", 2, NULL, NULL), 0);
    assert_int_equal(ferry_res_end(f->res), 0);
    f->ended = true;
}

static void row_ferry_res_end(fx *f)
{
    (void) f;
    assert_int_equal(ferry_res_end(NULL), FERRY_EINVAL);
}

static void row_ferry_res_send(fx *f)
{
    assert_int_equal(ferry_res_send(NULL, 200, NULL, "x", 1), FERRY_EINVAL);
    assert_int_equal(ferry_res_send(NULL, 200, NULL, NULL, 0), FERRY_EINVAL);
    /* (every other row's response ends with ferry_res_send(res, 200, NULL,
     * NULL, 0), which must give 0). A NULL body with a length still ends
     * the response, as documented: FERRY_EINVAL, and the connection closes. */
    assert_int_equal(ferry_res_send(f->res, 200, "text/plain", NULL, 5), FERRY_EINVAL);
    f->ended = true;
    f->expect_fail = true;
}

static void row_ferry_res_aborted(fx *f)
{
    assert_int_equal(ferry_res_aborted(NULL), 1);
    assert_int_equal(ferry_res_aborted(f->res), 0);
}

static void row_ferry_res_req(fx *f)
{
    assert_null(ferry_res_req(NULL));
    assert_ptr_equal(ferry_res_req(f->res), f->req);
}

static void row_ferry_res_on_abort(fx *f)
{
    ferry_res_on_abort(NULL, bad_abort, f);
    ferry_res_on_abort(f->res, NULL, NULL); /* NULL cb: removes it, allowed */
}

static void row_ferry_res_offload(fx *f)
{
    assert_int_equal(ferry_res_offload(NULL, bad_work, bad_after_work, f), FERRY_EINVAL);
    assert_int_equal(ferry_res_offload(f->res, NULL, bad_after_work, f), FERRY_EINVAL);
    assert_int_equal(ferry_res_offload(f->res, bad_work, NULL, f), FERRY_EINVAL);
}

/* ---- rows: client ---------------------------------------------------------------- */

static void row_ferry_agent_options_init_sized(fx *f)
{
    (void) f;
    ferry_agent_options_init_sized(NULL, sizeof(ferry_agent_options));
    ferry_agent_options o;
    memset(&o, 0xab, sizeof(o));
    ferry_agent_options_init_sized(&o, 0);
    assert_int_equal(((unsigned char *) &o)[0], 0xab);
}

static void row_ferry_agent_new(fx *f)
{
    ferry_agent *a = NOT_NULL_YET;
    assert_int_equal(ferry_agent_new(NULL, NULL, &a), FERRY_EINVAL);
    assert_null(a);
    assert_int_equal(ferry_agent_new(f->loop, NULL, NULL), FERRY_EINVAL);
}

static void row_ferry_agent_close(fx *f)
{
    ferry_agent_close(NULL, 0, bad_agent_close, f);
    ferry_agent_close(NULL, 1, NULL, NULL);
}

static void row_ferry_agent_free(fx *f)
{
    (void) f;
    assert_int_equal(ferry_agent_free(NULL), 0);
}

static void row_ferry_agent_stats_get_sized(fx *f)
{
    ferry_agent_stats st, zero;
    memset(&zero, 0, sizeof(zero));
    memset(&st, 0xff, sizeof(st));
    ferry_agent_stats_get_sized(NULL, &st, sizeof(st));
    assert_memory_equal(&st, &zero, sizeof(st));
    ferry_agent_stats_get_sized(f->agent, NULL, sizeof(st));
    ferry_agent_stats_get_sized(NULL, NULL, sizeof(st));
}

static void row_ferry_agent_stats_get(fx *f)
{
    ferry_agent_stats st;
    memset(&st, 0xff, sizeof(st));
    (ferry_agent_stats_get)(NULL, &st);
    assert_int_equal(st.sockets_active, 0);
    assert_int_equal(st.closing, 0);
    (ferry_agent_stats_get)(f->agent, NULL);
}

static void row_ferry_agent_origin_stats_get_sized(fx *f)
{
    const char *url = cs_url(f->port, "/");
    ferry_agent_origin_stats st, zero;
    memset(&zero, 0, sizeof(zero));
    memset(&st, 0xff, sizeof(st));
    assert_int_equal(ferry_agent_origin_stats_get_sized(NULL, url, &st, sizeof(st)), FERRY_EINVAL);
    assert_memory_equal(&st, &zero, sizeof(st));
    memset(&st, 0xff, sizeof(st));
    assert_int_equal(ferry_agent_origin_stats_get_sized(f->agent, NULL, &st, sizeof(st)),
                     FERRY_EINVAL);
    assert_memory_equal(&st, &zero, sizeof(st));
    assert_int_equal(ferry_agent_origin_stats_get_sized(f->agent, url, NULL, sizeof(st)),
                     FERRY_EINVAL);
    assert_int_equal(ferry_agent_origin_stats_get_sized(f->agent, url, &st, sizeof(st)), 0);
}

static void row_ferry_agent_origin_stats_get(fx *f)
{
    ferry_agent_origin_stats st;
    const char *url = cs_url(f->port, "/");
    /* the name without "(" is 0.1.0's function, not the macro */
    int (*get)(const ferry_agent *, const char *, ferry_agent_origin_stats *) =
        ferry_agent_origin_stats_get;
    assert_int_equal(get(NULL, url, &st), FERRY_EINVAL);
    assert_int_equal(get(f->agent, NULL, &st), FERRY_EINVAL);
    assert_int_equal(get(f->agent, url, NULL), FERRY_EINVAL);
}

static void row_ferry_request_options_init_sized(fx *f)
{
    (void) f;
    ferry_request_options_init_sized(NULL, sizeof(ferry_request_options));
    ferry_request_options o;
    memset(&o, 0xab, sizeof(o));
    ferry_request_options_init_sized(&o, 0);
    assert_int_equal(((unsigned char *) &o)[0], 0xab);
}

static void row_ferry_url_check(fx *f)
{
    const char *why = NULL;
    assert_int_equal(ferry_url_check(NULL, &why), FERRY_EINVAL);
    assert_non_null(why);
    assert_int_equal(ferry_url_check(NULL, NULL), FERRY_EINVAL);
    assert_int_equal(ferry_url_check(cs_url(f->port, "/"), NULL), 0);
}

static void row_ferry_response_header(fx *f)
{
    (void) f;
    ferry_response r;
    memset(&r, 0, sizeof(r)); /* headers NULL, header_count 0 */
    assert_none(ferry_response_header(NULL, "a"));
    assert_none(ferry_response_header(&r, NULL));
    assert_none(ferry_response_header(&r, "a"));
}

/* ferry_request and ferry_fetch share their checks; each row runs them all. */
static void request_checks(fx *f, bool fetch)
{
    ferry_request_options o = opts(f, "GET", "/plain");
    ferry_client_req *out;
#define START(a, o, out)                                                                           \
    (fetch ? ferry_fetch((a), (o), 0, bad_fetched, f, (out))                                       \
           : ferry_request((a), (o), &bad_callbacks, f, (out)))
#define REFUSED(a, o)                                                                              \
    do {                                                                                           \
        out = NOT_NULL_YET;                                                                        \
        assert_int_equal(START((a), (o), &out), FERRY_EINVAL);                                     \
        assert_null(out);                                                                          \
        assert_int_equal(START((a), (o), NULL), FERRY_EINVAL);                                     \
    } while (0)
    REFUSED(NULL, &o);
    REFUSED(f->agent, NULL);
    ferry_request_options bad = o;
    bad.url = NULL;
    REFUSED(f->agent, &bad);
    bad = o;
    bad.headers = NULL; /* the case: NULL headers with a count */
    bad.header_count = 2;
    REFUSED(f->agent, &bad);
    bad = o;
    bad.body = NULL;
    bad.body_len = 3;
    REFUSED(f->agent, &bad);
    bad = o;
    bad.struct_size = 0;
    REFUSED(f->agent, &bad);
#undef REFUSED
#undef START
    /* NULL callbacks */
    out = NOT_NULL_YET;
    if (fetch) {
        assert_int_equal(ferry_fetch(f->agent, &o, 0, NULL, f, &out), FERRY_EINVAL);
    } else {
        assert_int_equal(ferry_request(f->agent, &o, NULL, f, &out), FERRY_EINVAL);
        assert_null(out);
        ferry_request_callbacks no_done = {0};
        out = NOT_NULL_YET;
        assert_int_equal(ferry_request(f->agent, &o, &no_done, f, &out), FERRY_EINVAL);
        assert_null(out);
        ferry_request_options streamed = o;
        streamed.stream_body = 1; /* without on_body_ready */
        out = NOT_NULL_YET;
        assert_int_equal(ferry_request(f->agent, &streamed, &bad_callbacks, f, &out), FERRY_EINVAL);
    }
    assert_null(out);
    /* NULL arrays with 0 and out NULL are fine: a real request, answered */
    o.headers = NULL;
    o.header_count = 0;
    o.body = NULL;
    o.body_len = 0;
    int rc = fetch ? ferry_fetch(f->agent, &o, 0, good_fetched, f, NULL)
                   : ferry_request(f->agent, &o, &good_callbacks, f, NULL);
    assert_int_equal(rc, 0);
    f->started++;
}

static void row_ferry_request(fx *f)
{
    request_checks(f, false);
}

static void row_ferry_fetch(fx *f)
{
    request_checks(f, true);
}

static void row_ferry_request_abort(fx *f)
{
    (void) f;
    ferry_request_abort(NULL);
}

static void row_ferry_client_req_tls_verify_reason(fx *f)
{
    (void) f;
    assert_int_equal(ferry_client_req_tls_verify_reason(NULL), FERRY_TLS_VERIFY_OK);
}

static void row_ferry_client_req_attempts(fx *f)
{
    (void) f;
    assert_int_equal(ferry_client_req_attempts(NULL), 0);
}

static void row_ferry_client_req_pause(fx *f)
{
    (void) f;
    ferry_client_req_pause(NULL);
}

static void row_ferry_client_req_resume(fx *f)
{
    (void) f;
    ferry_client_req_resume(NULL);
}

/* AT_CLIENT: f->creq is a streamed request in on_body_ready. */
static void row_ferry_client_req_write(fx *f)
{
    assert_int_equal(ferry_client_req_write(NULL, "x", 1, bad_client_write, f), FERRY_EINVAL);
    assert_int_equal(ferry_client_req_write(f->creq, NULL, 1, bad_client_write, f), FERRY_EINVAL);
    assert_int_equal(ferry_client_req_write(f->creq, NULL, 0, good_client_write, f), 0);
}

static void row_ferry_client_req_end_body(fx *f)
{
    (void) f;
    assert_int_equal(ferry_client_req_end_body(NULL), FERRY_EINVAL);
}

static void row_ferry_form_encode(fx *f)
{
    (void) f;
    const char *pairs[] = {"a", "b"};
    const char *holes[] = {"a", NULL};
    char *out = NOT_NULL_YET;
    size_t len = 99;
    assert_int_equal(ferry_form_encode(NULL, 1, &out, &len), FERRY_EINVAL);
    assert_null(out);
    assert_int_equal(ferry_form_encode(holes, 1, &out, &len), FERRY_EINVAL);
    assert_null(out);
    assert_int_equal(ferry_form_encode(pairs, 1, NULL, &len), FERRY_EINVAL);
    assert_int_equal(ferry_form_encode(NULL, 0, &out, &len), 0); /* no pairs: "" */
    assert_string_equal(out, "");
    assert_int_equal(len, 0);
    free(out);
    assert_int_equal(ferry_form_encode(pairs, 1, &out, NULL), 0); /* out_len optional */
    assert_string_equal(out, "a=b");
    free(out);
}

/* ---- rows: queue ------------------------------------------------------------------- */

static void row_ferry_queue_options_init_sized(fx *f)
{
    (void) f;
    ferry_queue_options_init_sized(NULL, sizeof(ferry_queue_options));
    ferry_queue_options o;
    memset(&o, 0xab, sizeof(o));
    ferry_queue_options_init_sized(&o, 0);
    assert_int_equal(((unsigned char *) &o)[0], 0xab);
}

static void row_ferry_queue_new(fx *f)
{
    ferry_queue *q = NOT_NULL_YET;
    assert_int_equal(ferry_queue_new(NULL, NULL, &q), FERRY_EINVAL);
    assert_null(q);
    assert_int_equal(ferry_queue_new(f->loop, NULL, NULL), FERRY_EINVAL);
}

static void row_ferry_queue_push(fx *f)
{
    ferry_queue_task *t = NOT_NULL_YET;
    assert_int_equal(ferry_queue_push(NULL, NULL, 0, bad_task, f, &t), FERRY_EINVAL);
    assert_null(t);
    t = NOT_NULL_YET;
    assert_int_equal(ferry_queue_push(f->queue, NULL, 3, bad_task, f, &t), FERRY_EINVAL);
    assert_null(t);
    t = NOT_NULL_YET;
    assert_int_equal(ferry_queue_push(f->queue, NULL, 0, NULL, f, &t), FERRY_EINVAL);
    assert_null(t);
    /* no key (NULL, 0) and out NULL: a real task */
    assert_int_equal(ferry_queue_push(f->queue, NULL, 0, good_task, f, NULL), 0);
    f->started++;
}

static void row_ferry_queue_task_done(fx *f)
{
    (void) f; /* good_task calls it with NULL beside a live task too */
    ferry_queue_task_done(NULL);
}

static void row_ferry_queue_task_cancel(fx *f)
{
    (void) f;
    assert_int_equal(ferry_queue_task_cancel(NULL), FERRY_EINVAL);
}

static void row_ferry_queue_close(fx *f)
{
    ferry_queue_close(NULL, FERRY_QUEUE_CANCEL, bad_queue_close, f);
    ferry_queue_close(NULL, FERRY_QUEUE_DRAIN, NULL, NULL);
}

static void row_ferry_queue_free(fx *f)
{
    (void) f;
    assert_int_equal(ferry_queue_free(NULL), 0);
}

static void row_ferry_queue_stats_get_sized(fx *f)
{
    ferry_queue_stats st, zero;
    memset(&zero, 0, sizeof(zero));
    memset(&st, 0xff, sizeof(st));
    ferry_queue_stats_get_sized(NULL, &st, sizeof(st));
    assert_memory_equal(&st, &zero, sizeof(st));
    ferry_queue_stats_get_sized(f->queue, NULL, sizeof(st));
    ferry_queue_stats_get_sized(NULL, NULL, sizeof(st));
}

static void row_ferry_queue_stats_get(fx *f)
{
    ferry_queue_stats st;
    memset(&st, 0xff, sizeof(st));
    (ferry_queue_stats_get)(NULL, &st);
    assert_int_equal(st.running, 0);
    assert_int_equal(st.closing, 0);
    (ferry_queue_stats_get)(f->queue, NULL);
}

/* ---- the table ---------------------------------------------------------------------- */

/* clang-format off */
#define ROW(fn, at) {#fn, at, row_##fn}
/* clang-format on */

static const row rows[] = {
    ROW(ferry_version_string, AT_MAIN),
    ROW(ferry_strerror, AT_MAIN),
    ROW(ferry_err_name, AT_MAIN),
    ROW(ferry_err_http_status, AT_MAIN),
    ROW(ferry_err_kind_of, AT_MAIN),
    ROW(ferry_err_kind_name, AT_MAIN),
    ROW(ferry_tls_options_init_sized, AT_MAIN),
    ROW(ferry_tls_context_new, AT_MAIN),
    ROW(ferry_tls_context_ref, AT_MAIN),
    ROW(ferry_tls_context_free, AT_MAIN),
    ROW(ferry_tls_error_detail, AT_MAIN),
    ROW(ferry_tls_ticket_keys_new, AT_MAIN),
    ROW(ferry_tls_ticket_keys_ref, AT_MAIN),
    ROW(ferry_tls_ticket_keys_free, AT_MAIN),
    ROW(ferry_tls_ticket_keys_rotate, AT_MAIN),
    ROW(ferry_tls_ticket_keys_export, AT_MAIN),
    ROW(ferry_tls_ticket_keys_import, AT_MAIN),
    ROW(ferry_tls_verify_reason_name, AT_MAIN),
    ROW(ferry_server_options_init_sized, AT_MAIN),
    ROW(ferry_server_new, AT_MAIN),
    ROW(ferry_server_listen, AT_MAIN),
    ROW(ferry_server_listen_unix, AT_MAIN),
    ROW(ferry_server_port, AT_MAIN),
    ROW(ferry_server_data, AT_MAIN),
    ROW(ferry_server_set_data, AT_MAIN),
    ROW(ferry_server_loop, AT_MAIN),
    ROW(ferry_server_listen_fd, AT_MAIN),
    ROW(ferry_server_listener_fd, AT_MAIN),
    ROW(ferry_server_listeners_reclaim, AT_MAIN),
    ROW(ferry_server_post, AT_MAIN),
    ROW(ferry_server_draining, AT_MAIN),
    ROW(ferry_group_options_init_sized, AT_MAIN),
    ROW(ferry_group_new, AT_MAIN),
    ROW(ferry_group_listen, AT_MAIN),
    ROW(ferry_group_listen_fd, AT_MAIN),
    ROW(ferry_group_port, AT_MAIN),
    ROW(ferry_group_loops, AT_MAIN),
    ROW(ferry_group_listener_fds, AT_MAIN),
    ROW(ferry_group_listeners_reclaim, AT_MAIN),
    ROW(ferry_group_on_signals, AT_MAIN),
    ROW(ferry_group_start, AT_MAIN),
    ROW(ferry_group_wait, AT_MAIN),
    ROW(ferry_group_run, AT_MAIN),
    ROW(ferry_group_close, AT_MAIN),
    ROW(ferry_group_close_idle, AT_MAIN),
    ROW(ferry_group_drain, AT_MAIN),
    ROW(ferry_server_drain, AT_MAIN),
    ROW(ferry_group_destroy, AT_MAIN),
    ROW(ferry_group_draining, AT_MAIN),
    ROW(ferry_group_post, AT_MAIN),
    ROW(ferry_group_stats_get_sized, AT_MAIN),
    ROW(ferry_group_free, AT_MAIN),
    ROW(ferry_server_set_tls, AT_MAIN),
    ROW(ferry_server_close_idle, AT_MAIN),
    ROW(ferry_server_close, AT_MAIN),
    ROW(ferry_server_destroy, AT_MAIN),
    ROW(ferry_server_on_signals, AT_MAIN),
    ROW(ferry_server_free, AT_MAIN),
    ROW(ferry_server_stats_get_sized, AT_MAIN),
    ROW(ferry_server_stats_get, AT_MAIN),
    ROW(ferry_req_method, AT_HANDLER),
    ROW(ferry_req_target, AT_HANDLER),
    ROW(ferry_req_path, AT_HANDLER),
    ROW(ferry_req_query, AT_HANDLER),
    ROW(ferry_req_version_minor, AT_HANDLER),
    ROW(ferry_req_header, AT_HANDLER),
    ROW(ferry_req_header_count, AT_HANDLER),
    ROW(ferry_req_header_at, AT_HANDLER),
    ROW(ferry_req_peer, AT_HANDLER),
    ROW(ferry_req_tls, AT_HANDLER),
    ROW(ferry_req_res, AT_HANDLER),
    ROW(ferry_req_server, AT_HANDLER),
    ROW(ferry_req_read_body, AT_HANDLER),
    ROW(ferry_req_on_data, AT_HANDLER),
    ROW(ferry_req_pause, AT_HANDLER),
    ROW(ferry_req_resume, AT_HANDLER),
    ROW(ferry_res_set_status, AT_HANDLER),
    ROW(ferry_res_set_header, AT_HANDLER),
    ROW(ferry_res_add_header, AT_HANDLER),
    ROW(ferry_res_write, AT_HANDLER),
    ROW(ferry_res_end, AT_HANDLER),
    ROW(ferry_res_send, AT_HANDLER),
    ROW(ferry_res_aborted, AT_HANDLER),
    ROW(ferry_res_req, AT_HANDLER),
    ROW(ferry_res_on_abort, AT_HANDLER),
    ROW(ferry_res_offload, AT_HANDLER),
    ROW(ferry_agent_options_init_sized, AT_MAIN),
    ROW(ferry_agent_new, AT_MAIN),
    ROW(ferry_agent_close, AT_MAIN),
    ROW(ferry_agent_free, AT_MAIN),
    ROW(ferry_agent_stats_get_sized, AT_MAIN),
    ROW(ferry_agent_stats_get, AT_MAIN),
    ROW(ferry_agent_origin_stats_get_sized, AT_MAIN),
    ROW(ferry_agent_origin_stats_get, AT_MAIN),
    ROW(ferry_request_options_init_sized, AT_MAIN),
    ROW(ferry_url_check, AT_MAIN),
    ROW(ferry_response_header, AT_MAIN),
    ROW(ferry_request, AT_MAIN),
    ROW(ferry_fetch, AT_MAIN),
    ROW(ferry_request_abort, AT_MAIN),
    ROW(ferry_client_req_tls_verify_reason, AT_MAIN),
    ROW(ferry_client_req_attempts, AT_MAIN),
    ROW(ferry_client_req_pause, AT_MAIN),
    ROW(ferry_client_req_resume, AT_MAIN),
    ROW(ferry_client_req_write, AT_CLIENT),
    ROW(ferry_client_req_end_body, AT_MAIN),
    ROW(ferry_form_encode, AT_MAIN),
    ROW(ferry_queue_options_init_sized, AT_MAIN),
    ROW(ferry_queue_new, AT_MAIN),
    ROW(ferry_queue_push, AT_MAIN),
    ROW(ferry_queue_task_done, AT_MAIN),
    ROW(ferry_queue_task_cancel, AT_MAIN),
    ROW(ferry_queue_close, AT_MAIN),
    ROW(ferry_queue_free, AT_MAIN),
    ROW(ferry_queue_stats_get_sized, AT_MAIN),
    ROW(ferry_queue_stats_get, AT_MAIN),
};

#define NROWS (sizeof(rows) / sizeof(rows[0]))

static int ran[NROWS];         /* times each row ran */
static int row_status[NROWS];  /* AT_HANDLER: the fetch's status */
static bool row_failed[NROWS]; /* AT_HANDLER: the row expected the client to fail */

/* ---- ferry.h's declarations ---------------------------------------------------------- */

/* The functions ferry.h declares, by symbols.sh's rule: a line in column 0
 * that is not a typedef (comments, macros and continuations are indented or
 * start with '#' or '/'), with "// ..." cut, and every "ferry_x(" or
 * "ferry_x)(" in it (the second form: a function a macro of its name hides). */
static size_t declared_functions(char names[][64], size_t cap)
{
    const char *path = FERRY_SOURCE_DIR "/include/ferry.h";
    FILE *fp = fopen(path, "r");
    if (!fp) fail_msg("cannot open %s", path);
    size_t n = 0;
    char line[1024];
    while (fgets(line, sizeof(line), fp)) {
        char *cut = strstr(line, "//");
        if (cut) *cut = '\0';
        bool col0 = (line[0] >= 'a' && line[0] <= 'z') || (line[0] >= 'A' && line[0] <= 'Z') ||
                    line[0] == '_';
        if (!col0 || strncmp(line, "typedef", 7) == 0) continue;
        for (char *p = line; (p = strstr(p, "ferry_")) != NULL;) {
            bool word_start =
                p == line || !((p[-1] >= 'a' && p[-1] <= 'z') || (p[-1] >= 'A' && p[-1] <= 'Z') ||
                               (p[-1] >= '0' && p[-1] <= '9') || p[-1] == '_');
            size_t len = 6;
            while ((p[len] >= 'a' && p[len] <= 'z') || (p[len] >= '0' && p[len] <= '9') ||
                   p[len] == '_')
                len++;
            const char *after = p + len + (p[len] == ')');
            if (word_start && *after == '(' && len < 64) {
                bool seen = false;
                for (size_t i = 0; i < n; i++)
                    seen = seen || (strlen(names[i]) == len && memcmp(names[i], p, len) == 0);
                if (!seen) {
                    assert_true(n < cap);
                    memcpy(names[n], p, len);
                    names[n][len] = '\0';
                    n++;
                }
            }
            p += len;
        }
    }
    fclose(fp);
    return n;
}

static void test_table_covers_header(void **state)
{
    (void) state;
    static char names[256][64];
    size_t n = declared_functions(names, 256);
    assert_true(n > 50); /* the parse found the header's functions at all */
    int missing = 0;
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t r = 0; r < NROWS; r++)
            found = found || strcmp(rows[r].name, names[i]) == 0;
        if (!found) {
            print_error("ferry.h declares %s, which tests/test_api_args.c has no row for\n",
                        names[i]);
            missing++;
        }
    }
    for (size_t r = 0; r < NROWS; r++) {
        bool found = false;
        for (size_t i = 0; i < n; i++)
            found = found || strcmp(rows[r].name, names[i]) == 0;
        if (!found) {
            print_error("row %s: ferry.h declares no such function\n", rows[r].name);
            missing++;
        }
        for (size_t s = r + 1; s < NROWS; s++)
            if (strcmp(rows[r].name, rows[s].name) == 0) {
                print_error("row %s twice\n", rows[r].name);
                missing++;
            }
    }
    assert_int_equal(missing, 0);
    assert_int_equal(n, NROWS);
}

/* ---- running the rows ------------------------------------------------------------------ */

static void on_body_read(ferry_req *req, int status, const char *body, size_t len, void *data)
{
    (void) data;
    assert_int_equal(status, 0);
    assert_int_equal(ferry_res_send(ferry_req_res(req), 200, "text/plain", body, len), 0);
}

/* /row/N runs row N (AT_HANDLER) in this request and answers unless the row
 * did; /body reads a streamed body back; /plain answers 200. */
static void on_request(ferry_req *req, ferry_res *res, void *data)
{
    fx *f = data;
    ferry_str path = ferry_req_path(req);
    char p[64] = "";
    if (path.len < sizeof(p)) memcpy(p, path.p, path.len);
    unsigned i;
    if (sscanf(p, "/row/%u", &i) == 1 && i < NROWS && rows[i].at == AT_HANDLER) {
        f->req = req;
        f->res = res;
        f->ended = f->expect_fail = false;
        rows[i].run(f);
        ran[i]++;
        row_failed[i] = f->expect_fail;
        f->req = NULL;
        f->res = NULL;
        if (!f->ended) /* NULL body with length 0: an empty body, fine */
            assert_int_equal(ferry_res_send(res, 200, NULL, NULL, 0), 0);
    } else if (strcmp(p, "/body") == 0) {
        assert_int_equal(ferry_req_read_body(req, 0, on_body_read, f), 0);
    } else {
        assert_int_equal(ferry_res_send(res, 200, "text/plain", "ok", 2), 0);
    }
}

typedef struct row_fetch {
    fx *f;
    size_t i;
} row_fetch;

static row_fetch fetches[NROWS];

static void on_row_fetched(ferry_client_req *req, int status, const ferry_response *r, void *data)
{
    (void) req;
    row_fetch *rf = data;
    row_status[rf->i] = status == 0 ? r->status : status;
    rf->f->done++;
}

static void on_stream_ready(ferry_client_req *req, void *data)
{
    fx *f = data;
    f->creq = req;
    for (size_t i = 0; i < NROWS; i++)
        if (rows[i].at == AT_CLIENT) {
            rows[i].run(f);
            ran[i]++;
        }
    f->creq = NULL;
    assert_int_equal(ferry_client_req_write(req, "abc", 3, good_client_write, f), 0);
    assert_int_equal(ferry_client_req_end_body(req), 0);
}

static void on_stream_response(ferry_client_req *req, const ferry_response *r, void *data)
{
    (void) req;
    (void) data;
    assert_int_equal(r->status, 200);
}

static const ferry_request_callbacks stream_callbacks = {
    .on_response = on_stream_response, .on_done = good_done, .on_body_ready = on_stream_ready};

static bool all_done(void *arg)
{
    fx *f = arg;
    return f->done >= f->started;
}

static bool server_closed(void *arg)
{
    return ((fx *) arg)->server_closed > 0;
}

static bool queue_closed(void *arg)
{
    return ((fx *) arg)->queue_closed > 0;
}

static void on_server_closed(ferry_server *s, void *data)
{
    (void) s;
    ((fx *) data)->server_closed++;
}

static void on_queue_closed(ferry_queue *q, void *data)
{
    (void) q;
    ((fx *) data)->queue_closed++;
}

static void test_every_row(void **state)
{
    (void) state;
    static fx fixture;
    fx *f = &fixture;
    memset(f, 0, sizeof(*f));
    f->loop = cs_loop_new();
    assert_int_equal(ferry_server_new(f->loop, NULL, on_request, f, &f->server), 0);
    assert_int_equal(ferry_server_listen(f->server, NULL, 0), 0); /* NULL: 127.0.0.1 */
    f->port = ferry_server_port(f->server);
    assert_true(f->port > 0);
    assert_int_equal(ferry_server_new(f->loop, NULL, on_request_unused, f, &f->idle), 0);
    f->agent = cs_agent_new(f->loop, NULL);
    assert_int_equal(ferry_queue_new(f->loop, NULL, &f->queue), 0);
    assert_int_equal(ferry_tls_ticket_keys_new(0, 3600, &f->keys), 0);

    for (size_t i = 0; i < NROWS; i++) {
        if (rows[i].at == AT_MAIN) {
            rows[i].run(f);
            ran[i]++;
        } else if (rows[i].at == AT_HANDLER) {
            char path[32];
            snprintf(path, sizeof(path), "/row/%zu", i);
            ferry_request_options o = opts(f, "GET", path);
            fetches[i] = (row_fetch){f, i};
            assert_int_equal(ferry_fetch(f->agent, &o, 0, on_row_fetched, &fetches[i], NULL), 0);
            f->started++;
        }
    }
    ferry_request_options so = opts(f, "POST", "/body");
    so.stream_body = 1; /* chunked */
    assert_int_equal(ferry_request(f->agent, &so, &stream_callbacks, f, NULL), 0);
    f->started++;

    assert_true(cs_run_until_fn(f->loop, all_done, f, 10000));
    for (size_t i = 0; i < NROWS; i++) {
        if (ran[i] != 1) fail_msg("row %s ran %d times", rows[i].name, ran[i]);
        if (rows[i].at != AT_HANDLER) continue;
        if (row_failed[i] && row_status[i] >= 0)
            fail_msg("row %s: the client got %d, not an error", rows[i].name, row_status[i]);
        if (!row_failed[i] && row_status[i] != 200)
            fail_msg("row %s: the client got %d, not 200", rows[i].name, row_status[i]);
    }
    assert_int_equal(f->good_writes, 2); /* the empty write and "abc" */

    ferry_queue_close(f->queue, FERRY_QUEUE_DRAIN, on_queue_closed, f);
    assert_true(cs_run_until_fn(f->loop, queue_closed, f, 5000));
    assert_int_equal(ferry_queue_free(f->queue), 0);
    cs_agent_finish(f->loop, f->agent, 0);
    ferry_server_close(f->server, 0, on_server_closed);
    assert_true(cs_run_until_fn(f->loop, server_closed, f, 5000));
    assert_int_equal(ferry_server_free(f->server), 0);
    assert_int_equal(ferry_server_free(f->idle), 0); /* never listened */
    ferry_tls_ticket_keys_free(f->keys);
    assert_int_equal(f->bad_calls, 0); /* no callback given with a refused call ran */
    cs_loop_finish(f->loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_covers_header),
        cmocka_unit_test(test_every_row),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
