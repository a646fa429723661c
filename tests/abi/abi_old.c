/* abi_old.c — a program compiled against ferry 0.1.0's header (the frozen
 * copy beside it, ferry_v0_1_0.h), run by abi.sh on today's libferry.so.0 and
 * on one whose options structs have grown (-DFERRY_ABI_TEST_GROW): it must
 * work on both (docs/abi.md).
 *
 * Each options struct sits right before an inaccessible page, so a library
 * that writes or reads past the struct_size the program's header gave faults.
 * A few options are set and their effect checked, so the shared bytes must
 * mean the same to both sides: Connection: close after one request per
 * connection, a method, a header and a body on the wire, a queue of one.
 * Then the refusals: struct_size 0 (no _init) or below 0.1.0's is FERRY_EINVAL.
 */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ferry_v0_1_0.h"

static int failures;
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "abi_old: %s:%d: %s\n", __FILE__, __LINE__, #cond);                    \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* `size` bytes ending where a PROT_NONE page starts (sizes are multiples of 8,
 * so the struct stays aligned). Never unmapped: the process is short. */
static void *before_guard_page(size_t size)
{
    size_t pg = (size_t) sysconf(_SC_PAGESIZE);
    char *p = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || mprotect(p + pg, pg, PROT_NONE) != 0) {
        perror("abi_old: mmap");
        _exit(1);
    }
    memset(p, 0xa5, pg); /* garbage, as on a stack */
    return p + pg - size;
}

typedef struct run {
    ferry_server *server;
    ferry_agent *agent;
    ferry_queue *queue;
    int status;
    char body[64];
    int conn_close;
    int tasks_run;
} run;

/* Answers "METHOD X-Old BODY". */
static void on_body(ferry_req *req, int status, const char *body, size_t len, void *data)
{
    (void) data;
    char out[64];
    ferry_str m = ferry_req_method(req), h = ferry_req_header(req, "X-Old");
    int n = snprintf(out, sizeof(out), "%.*s %.*s %.*s", (int) m.len, m.p, (int) h.len, h.p,
                     status == 0 ? (int) len : 0, body);
    ferry_res_send(ferry_req_res(req), 200, "text/plain", out, (size_t) n);
}

static void on_request(ferry_req *req, ferry_res *res, void *data)
{
    (void) res;
    ferry_req_read_body(req, 0, on_body, data);
}

static void on_task(ferry_queue_task *t, int status, void *data)
{
    run *r = data;
    if (status == 0) {
        r->tasks_run++;
        ferry_queue_task_done(t);
    }
}

static void on_fetch(ferry_client_req *req, int status, const ferry_response *resp, void *data)
{
    (void) req;
    run *r = data;
    r->status = status < 0 ? status : resp->status;
    if (status == 0 && resp->body.len < sizeof(r->body))
        memcpy(r->body, resp->body.p, resp->body.len);
    ferry_str c = status == 0 ? ferry_response_header(resp, "Connection") : (ferry_str){NULL, 0};
    r->conn_close = c.len == 5 && memcmp(c.p, "close", 5) == 0;
    ferry_agent_close(r->agent, 0, NULL, NULL);
    ferry_server_close(r->server, 0, NULL);
    ferry_queue_close(r->queue, FERRY_QUEUE_DRAIN, NULL, NULL);
}

/* struct_size 0 and one below 0.1.0's are refused by every call taking options. */
static void check_refusals(uv_loop_t *loop)
{
    for (size_t bad = 0; bad <= 8; bad += 8) {
        ferry_server_options so;
        ferry_server_options_init(&so);
        so.struct_size = bad;
        ferry_server *s = NULL;
        CHECK(ferry_server_new(loop, &so, on_request, NULL, &s) == FERRY_EINVAL && !s);

        ferry_agent_options ao;
        ferry_agent_options_init(&ao);
        ao.struct_size = bad;
        ferry_agent *a = NULL;
        CHECK(ferry_agent_new(loop, &ao, &a) == FERRY_EINVAL);

        ferry_queue_options qo;
        ferry_queue_options_init(&qo);
        qo.struct_size = bad;
        ferry_queue *q = NULL;
        CHECK(ferry_queue_new(loop, &qo, &q) == FERRY_EINVAL && !q);
    }
}

int main(void)
{
    uv_loop_t loop;
    run r = {0};
    CHECK(uv_loop_init(&loop) == 0);
    check_refusals(&loop);

    ferry_server_options *so = before_guard_page(sizeof(*so));
    ferry_server_options_init(so);
    CHECK(so->struct_size == sizeof(*so));
    CHECK(so->max_headers == 100 && so->backlog == 511 && so->reuse_port == 0);
    so->max_requests_per_connection = 1;
    CHECK(ferry_server_new(&loop, so, on_request, &r, &r.server) == 0);
    CHECK(r.server && ferry_server_listen(r.server, "127.0.0.1", 0) == 0);

    ferry_agent_options *ao = before_guard_page(sizeof(*ao));
    ferry_agent_options_init(ao);
    CHECK(ao->struct_size == sizeof(*ao));
    CHECK(ao->retries == 2 && ao->dns_ttl_ms == 30000);
    ao->max_sockets_per_origin = 1;
    CHECK(ferry_agent_new(&loop, ao, &r.agent) == 0);

    ferry_queue_options *qo = before_guard_page(sizeof(*qo));
    ferry_queue_options_init(qo);
    CHECK(qo->struct_size == sizeof(*qo) && qo->max_starts_per_turn == 1024);
    qo->concurrency = 1;
    CHECK(ferry_queue_new(&loop, qo, &r.queue) == 0);
    for (int i = 0; i < 3; i++)
        CHECK(ferry_queue_push(r.queue, "k", 1, on_task, &r, NULL) == 0);

    ferry_request_options *ro = before_guard_page(sizeof(*ro));
    ferry_request_options_init(ro);
    CHECK(ro->struct_size == sizeof(*ro) && ro->stream_body_length == -1);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", r.server ? ferry_server_port(r.server) : 1);
    static const ferry_header hs[] = {{{"X-Old", 5}, {"yes", 3}}};
    ro->url = url;
    ro->method = "PUT";
    ro->headers = hs;
    ro->header_count = 1;
    ro->body = "abc";
    ro->body_len = 3;
    ro->total_timeout_ms = 5000;
    size_t good = ro->struct_size;
    ro->struct_size = 0;
    CHECK(ferry_fetch(r.agent, ro, 0, on_fetch, &r, NULL) == FERRY_EINVAL);
    ro->struct_size = good;
    CHECK(ferry_fetch(r.agent, ro, 0, on_fetch, &r, NULL) == 0);

    if (failures == 0) uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(r.status == 200);
    CHECK(strcmp(r.body, "PUT yes abc") == 0);
    CHECK(r.conn_close);
    CHECK(r.tasks_run == 3);
    CHECK(ferry_agent_free(r.agent) == 0);
    CHECK(ferry_server_free(r.server) == 0);
    CHECK(ferry_queue_free(r.queue) == 0);
    CHECK(uv_loop_close(&loop) == 0);
    printf("%s: status %d, body '%s', Connection: close %s, %d tasks (ferry %s)\n",
           failures ? "FAIL" : "ok", r.status, r.body, r.conn_close ? "yes" : "no", r.tasks_run,
           ferry_version_string());
    return failures ? 1 : 0;
}
