/* app.c — a program outside the tree, built against an installed ferry (with
 * pkg-config, and with find_package(ferry)): a server and a client request in
 * one loop. It asks for a path, the server answers 200 with the path back, and
 * the loop must end clean. Exit 0 and "ok ..." on stdout, else 1.
 *
 * With -DAPP_DEFINES_INTERNAL_NAMES it also defines functions named like
 * ferry's internals. They must neither clash at link time (libferry.a) nor be
 * called by the library (libferry.so): each one records that it ran.
 */
#include <stdio.h>
#include <string.h>

#include <ferry.h>

#ifdef APP_DEFINES_INTERNAL_NAMES
static int internal_names_called;
/* ferry's own take other arguments; a program is free to use these names. */
int parse_request(const char *s);
int url_parse(const char *s);
int buf_reserve(void);
int parse_request(const char *s)
{
    internal_names_called++;
    return s ? -1 : 0;
}
int url_parse(const char *s)
{
    internal_names_called++;
    return s ? -1 : 0;
}
int buf_reserve(void)
{
    internal_names_called++;
    return -1;
}
#endif

typedef struct app {
    ferry_server *server;
    ferry_agent *agent;
    int status;
    char body[64];
} app;

static void on_request(ferry_req *req, ferry_res *res, void *data)
{
    (void) data;
    ferry_str path = ferry_req_path(req);
    ferry_res_send(res, 200, "text/plain", path.p, path.len);
}

static void on_agent_closed(ferry_agent *a, void *data)
{
    (void) a;
    (void) data;
}

static void on_fetch(ferry_client_req *req, int status, const ferry_response *r, void *data)
{
    (void) req;
    app *ap = data;
    ap->status = status < 0 ? status : r->status;
    if (status == 0 && r->body.len < sizeof(ap->body)) memcpy(ap->body, r->body.p, r->body.len);
    ferry_agent_close(ap->agent, 0, on_agent_closed, NULL);
    ferry_server_close(ap->server, 0, NULL);
}

int main(void)
{
    uv_loop_t loop;
    app ap = {0};
    if (uv_loop_init(&loop) != 0) return 1;
    ferry_server_options so;
    ferry_server_options_init(&so);
    int rc = ferry_server_new(&loop, &so, on_request, NULL, &ap.server);
    if (rc == 0) rc = ferry_server_listen(ap.server, "127.0.0.1", 0);
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    if (rc == 0) rc = ferry_agent_new(&loop, &ao, &ap.agent);
    char url[64];
    ferry_request_options o;
    ferry_request_options_init(&o);
    o.url = url;
    o.total_timeout_ms = 5000;
    if (rc == 0) {
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/from-outside",
                 ferry_server_port(ap.server));
        rc = ferry_fetch(ap.agent, &o, 0, on_fetch, &ap, NULL);
    }
    if (rc < 0) {
        fprintf(stderr, "app: %s\n", ferry_strerror(rc));
        return 1;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    ferry_agent_free(ap.agent);
    ferry_server_free(ap.server);
    int clean = uv_loop_close(&loop) == 0;
    int ok = clean && ap.status == 200 && strcmp(ap.body, "/from-outside") == 0;
#ifdef APP_DEFINES_INTERNAL_NAMES
    if (internal_names_called)
        fprintf(stderr, "app: ferry called the program's own internal-named functions %d times\n",
                internal_names_called);
    ok = ok && internal_names_called == 0 && parse_request(NULL) == 0;
    internal_names_called = 0;
#endif
    printf("%s status %d body '%s' loop %s (ferry %s)\n", ok ? "ok" : "FAIL", ap.status, ap.body,
           clean ? "clean" : "NOT CLEAN", ferry_version_string());
    return ok ? 0 : 1;
}
