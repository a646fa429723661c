/* fetch_many.c — 2000 requests through one agent with bounded concurrency,
 * then a summary. The agent does the bounding: every request is started at
 * once, at most CONCURRENCY sockets are opened, the rest wait in the agent's
 * queue, and bodies nobody reads are drained so sockets return to the pool.
 *
 * Usage: fetch_many [URL [N [CONCURRENCY]]]
 *   URL          what to fetch; none (or "-"): a ferry server this program
 *                starts on 127.0.0.1, port 0, on the same loop
 *   N            requests, 2000
 *   CONCURRENCY  sockets at most, 50
 * Prints "completed C, failed F, connections opened O, reused R" and exits 0
 * if every request got a 2xx response. See docs/client.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"

typedef struct run {
    ferry_agent *agent;
    ferry_server *server; /* ours, when no URL was given */
    int total, done, ok, failed, not_2xx;
    int first_error;
    uint64_t start_ns;
} run;

/* Our own server, when no URL is given: answers every request. */
static void on_request(ferry_req *req, ferry_res *res, void *data)
{
    (void) req;
    (void) data;
    ferry_res_send(res, 200, "text/plain", "hello from fetch_many\n", 22);
}

static void on_server_closed(ferry_server *s, void *data)
{
    (void) s;
    (void) data;
}

static void on_agent_closed(ferry_agent *a, void *data)
{
    run *r = data;
    (void) a;
    if (r->server) ferry_server_close(r->server, 1000, on_server_closed);
}

static void on_response(ferry_client_req *req, const ferry_response *res, void *data)
{
    run *r = data;
    (void) req;
    if (res->status < 200 || res->status > 299) r->not_2xx++;
}

/* Each request ends here exactly once; the last one prints the summary. */
static void on_done(ferry_client_req *req, int status, void *data)
{
    run *r = data;
    (void) req;
    r->done++;
    if (status == 0) {
        r->ok++;
    } else {
        r->failed++;
        if (!r->first_error) r->first_error = status;
    }
    if (r->done < r->total) return;

    ferry_agent_stats st;
    ferry_agent_stats_get(r->agent, &st);
    double ms = (double) (uv_hrtime() - r->start_ns) / 1e6;
    printf("completed %d, failed %d, connections opened %llu, reused %llu\n", r->ok, r->failed,
           (unsigned long long) st.connections_opened, (unsigned long long) st.sockets_reused);
    printf("%d requests in %.0f ms; non-2xx %d; retries %llu (stale sockets %llu)\n", r->total, ms,
           r->not_2xx, (unsigned long long) st.retries, (unsigned long long) st.stale_retries);
    if (r->first_error)
        printf("first error: %s (%s)\n", ferry_err_name(r->first_error),
               ferry_strerror(r->first_error));
    ferry_agent_close(r->agent, 0, on_agent_closed, r);
}

int main(int argc, char **argv)
{
    uv_loop_t *loop = uv_default_loop();
    run r;
    memset(&r, 0, sizeof(r));
    const char *url = argc > 1 && strcmp(argv[1], "-") != 0 ? argv[1] : NULL;
    r.total = argc > 2 ? atoi(argv[2]) : 2000;
    int concurrency = argc > 3 ? atoi(argv[3]) : 50;
    if (r.total <= 0 || concurrency <= 0) {
        fprintf(stderr, "usage: fetch_many [URL [N [CONCURRENCY]]]\n");
        return 2;
    }

    char own_url[64];
    int rc = 0;
    if (!url) {
        rc = ferry_server_new(loop, NULL, on_request, NULL, &r.server);
        if (rc == 0) rc = ferry_server_listen(r.server, "127.0.0.1", 0);
        if (rc == 0) {
            snprintf(own_url, sizeof(own_url), "http://127.0.0.1:%d/", ferry_server_port(r.server));
            url = own_url;
        }
    }

    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.max_sockets_per_origin = (uint32_t) concurrency; /* the bound */
    ao.max_queue = 0;                                   /* the rest wait, however many */
    if (rc == 0) rc = ferry_agent_new(loop, &ao, &r.agent);
    if (rc < 0) {
        fprintf(stderr, "fetch_many: %s\n", ferry_strerror(rc));
        return 1;
    }

    ferry_request_options o;
    ferry_request_options_init(&o);
    o.url = url;
    o.total_timeout_ms = 30000;
    /* on_data NULL: we only want the status; the agent drains each body. */
    ferry_request_callbacks cb = {on_response, NULL, on_done, NULL};
    r.start_ns = uv_hrtime();
    for (int i = 0; i < r.total; i++) {
        rc = ferry_request(r.agent, &o, &cb, &r, NULL);
        if (rc < 0) { /* refused at once (bad URL, https://...): no callback will run */
            fprintf(stderr, "fetch_many: %s: %s\n", url, ferry_strerror(rc));
            r.total = i;
            break;
        }
    }
    if (r.total == 0) ferry_agent_close(r.agent, 0, on_agent_closed, &r);

    uv_run(loop, UV_RUN_DEFAULT); /* returns once the agent (and our server) closed */
    ferry_agent_free(r.agent);
    if (r.server) ferry_server_free(r.server);
    int clean = uv_loop_close(loop) == 0;
    return clean && r.total > 0 && r.failed == 0 && r.not_2xx == 0 ? 0 : 1;
}
