/* fuzz_client.c — the client's socket code against arbitrary server bytes.
 *
 * fuzz_parse covers the parser; this covers what the client builds on it:
 * 1xx heads, framing, chunked bodies split over reads, HEAD, pipelined
 * responses, fetch limits, pause/resume, and a server that closes anywhere.
 * Each input is one exchange over real loopback TCP: a server in the same
 * loop accepts, writes the input's bytes, and half-closes. Checked: every
 * request completes exactly once, the agent closes, nothing leaks (ASan/LSan).
 *
 * Input: byte 0 picks the shape (bit 0 HEAD, bit 1 streamed response with a
 * pause, bit 2 two requests pipelined, bit 3 a 64-byte fetch limit); the
 * rest is what the server sends.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"

static uv_loop_t loop;
static uv_tcp_t listener;
static int port;
static const uint8_t *reply;
static size_t reply_len;
static int completions, expected, agent_closed;
static ferry_agent *agent;

typedef struct server_conn {
    uv_tcp_t tcp;
    uv_write_t wr;
    uv_shutdown_t sd;
    int wrote;
} server_conn;

static void on_server_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *b)
{
    static char buf[65536];
    (void) h;
    (void) size;
    *b = uv_buf_init(buf, sizeof(buf));
}

static void on_shutdown(uv_shutdown_t *sd, int status)
{
    (void) sd;
    (void) status;
}

static void on_written(uv_write_t *wr, int status)
{
    server_conn *s = wr->data;
    if (status == 0 && uv_shutdown(&s->sd, (uv_stream_t *) &s->tcp, on_shutdown) == 0)
        return;
    if (!uv_is_closing((uv_handle_t *) &s->tcp))
        uv_close((uv_handle_t *) &s->tcp, on_server_closed);
}

/* Reads the request(s), answers once with the input, and closes after the client does. */
static void on_server_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    server_conn *s = st->data;
    (void) b;
    if (n < 0) {
        if (!uv_is_closing((uv_handle_t *) st))
            uv_close((uv_handle_t *) st, on_server_closed);
        return;
    }
    if (n > 0 && !s->wrote) {
        s->wrote = 1;
        uv_buf_t out = uv_buf_init((char *) reply, (unsigned) reply_len);
        s->wr.data = s;
        if (uv_write(&s->wr, st, &out, 1, on_written) < 0)
            uv_close((uv_handle_t *) st, on_server_closed);
    }
}

static void on_connection(uv_stream_t *l, int status)
{
    if (status < 0)
        return;
    server_conn *s = calloc(1, sizeof(*s));
    uv_tcp_init(&loop, &s->tcp);
    s->tcp.data = s;
    if (uv_accept(l, (uv_stream_t *) &s->tcp) < 0) {
        uv_close((uv_handle_t *) &s->tcp, on_server_closed);
        return;
    }
    uv_read_start((uv_stream_t *) &s->tcp, on_alloc, on_server_read);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void) argc;
    (void) argv;
    uv_loop_init(&loop);
    uv_tcp_init(&loop, &listener);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    if (uv_tcp_bind(&listener, (const struct sockaddr *) &a, 0) != 0 ||
        uv_listen((uv_stream_t *) &listener, 128, on_connection) != 0)
        abort();
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_getsockname(&listener, (struct sockaddr *) &ss, &len);
    port = ntohs(((struct sockaddr_in *) &ss)->sin_port);
    uv_unref((uv_handle_t *) &listener); /* uv_run returns when an exchange is over */
    return 0;
}

static void done(void)
{
    if (++completions > expected)
        abort(); /* a request completed twice */
}

static void on_fetched(ferry_client_req *r, int status, const ferry_response *res, void *data)
{
    (void) r;
    (void) data;
    if (status == 0 && (!res || res->status < 200 || res->status > 999))
        abort();
    done();
}

static void on_response(ferry_client_req *r, const ferry_response *res, void *data)
{
    (void) data;
    if (res->status < 200)
        abort();
    ferry_client_req_pause(r); /* resumed from on_data's absence: see on_data */
    ferry_client_req_resume(r);
}

static void on_data(ferry_client_req *r, const char *p, size_t n, void *data)
{
    (void) data;
    volatile char sink = n ? p[n - 1] : 0;
    (void) sink;
    ferry_client_req_pause(r);
    ferry_client_req_resume(r);
}

static void on_done(ferry_client_req *r, int status, void *data)
{
    (void) r;
    (void) status;
    (void) data;
    done();
}

static void on_agent_closed(ferry_agent *a, void *data)
{
    (void) a;
    (void) data;
    agent_closed++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t shape = data[0];
    reply = data + 1;
    reply_len = size - 1;
    completions = agent_closed = 0;

    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.pipelining = (shape & 4) ? 2 : 1;
    ao.max_sockets_per_origin = 1;
    ao.retries = 0;
    ao.headers_timeout_ms = 2000;
    ao.body_timeout_ms = 2000;
    if (ferry_agent_new(&loop, &ao, &agent) != 0)
        abort();
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    ferry_request_options o;
    ferry_request_options_init(&o);
    o.url = url;
    o.method = (shape & 1) ? "HEAD" : "GET";
    expected = (shape & 4) ? 2 : 1;
    for (int i = 0; i < expected; i++) {
        int rc;
        if (shape & 2) {
            ferry_request_callbacks cb = {on_response, on_data, on_done, NULL};
            rc = ferry_request(agent, &o, &cb, NULL, NULL);
        } else {
            rc = ferry_fetch(agent, &o, (shape & 8) ? 64 : 0, on_fetched, NULL, NULL);
        }
        if (rc != 0)
            abort();
    }
    uv_run(&loop, UV_RUN_DEFAULT); /* every request completes (a timeout at worst) */
    if (completions != expected)
        abort();
    ferry_agent_close(agent, 1, on_agent_closed, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (agent_closed != 1 || ferry_agent_free(agent) != 0)
        abort();
    return 0;
}
