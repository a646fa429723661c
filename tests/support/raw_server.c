/* raw_server.c — the misbehaving server of raw_server.h: a libuv loop in its
 * own thread, one small state machine per connection (read a request head,
 * read and drop its body, then do what the script says), and a black hole.
 *
 * Everything the main thread reads (stats, the request log) sits behind one
 * mutex; the main thread only starts, reads and stops. A stop is a uv_async:
 * the loop thread closes every handle, and the thread's last act is
 * uv_loop_close(), whose result raw_stop() asserts.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <cmocka.h>
#include <uv.h>

#include "http1/parse.h"
#include "support/raw_server.h"

enum {
    RAW_MAX_FIELDS = 100,
    RAW_LOG = 256,
    RAW_LINE = 128,
    RAW_PART_BODY_LENGTH = 100000,
};

typedef enum { READ_HEAD, READ_BODY_CL, READ_BODY_CHUNKED } read_state;
typedef enum { T_NONE, T_RESPOND, T_CLOSE, T_IDLE } timer_purpose;

typedef struct rconn rconn;

struct raw_server {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t async;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;

    raw_options opts;
    raw_script *per_conn; /* owned copy of opts.per_conn */

    /* under mu */
    raw_stats st;
    char log[RAW_LOG][RAW_LINE];
    bool ready;
    int start_err;
    int port;
    bool stop_requested;
    bool thread_done;
    int loop_close_rc;

    /* loop thread only */
    rconn *conns; /* open connections, a doubly linked list */
    uint64_t accepted;
    uint64_t requests; /* server-wide complete requests, for error_first/reset_first */
    uint64_t rng;      /* fault_seed's xorshift64* state */
};

struct rconn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    raw_server *srv;
    rconn *prev, *next;
    raw_script sc;
    int handles_open;
    bool closing;
    bool busy;    /* a response is pending (delayed or being written) */
    bool stalled; /* half head / part body sent: ignore everything */
    bool last;    /* the response being written is the connection's last */
    timer_purpose tp;
    uint32_t responses;
    char line[RAW_LINE]; /* "METHOD target" of the request being read */
    bool is_head;        /* that request is a HEAD: the response has no body */

    /* input */
    char *buf;
    size_t len, cap;
    read_state rs;
    parse_head head;
    parse_field fields[RAW_MAX_FIELDS];
    uint64_t body_left;
    parse_chunked_state chunked;
};

/* A response on its way to the kernel. */
typedef struct rwrite {
    uv_write_t req;
    rconn *c;
    size_t len;
    char data[];
} rwrite;

static void process(rconn *c);

static void stat_add(raw_server *s, uint64_t *field, uint64_t n)
{
    pthread_mutex_lock(&s->mu);
    *field += n;
    pthread_mutex_unlock(&s->mu);
}

/* ---- closing --------------------------------------------------------------- */

static void on_conn_handle_closed(uv_handle_t *h)
{
    rconn *c = h->data;
    if (--c->handles_open == 0) {
        free(c->buf);
        free(c);
    }
}

/* Close a connection: by_server says who ended it (for the stats); how is
 * FIN (plain close) or RST (SO_LINGER 0). */
static void conn_close(rconn *c, raw_close_how how, bool by_server)
{
    if (c->closing) return;
    c->closing = true;
    raw_server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;

    pthread_mutex_lock(&s->mu);
    s->st.open_now--;
    if (by_server) s->st.server_closes++;
    if (by_server && how == RAW_RST) s->st.resets_sent++;
    if (!by_server) s->st.peer_closes++;
    pthread_mutex_unlock(&s->mu);

    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *) &c->timer, on_conn_handle_closed);
    if (how == RAW_RST && uv_tcp_close_reset(&c->tcp, on_conn_handle_closed) == 0) return;
    uv_close((uv_handle_t *) &c->tcp, on_conn_handle_closed);
}

/* ---- writing --------------------------------------------------------------- */

static void on_timer(uv_timer_t *t);

static void start_timer(rconn *c, timer_purpose tp, uint64_t ms)
{
    c->tp = tp;
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void on_written(uv_write_t *req, int status)
{
    rwrite *w = (rwrite *) req;
    rconn *c = w->c;
    free(w);
    if (c->closing) return;
    if (status < 0) {
        conn_close(c, RAW_FIN, false);
        return;
    }
    if (c->stalled) return;
    if (c->last) {
        if (c->sc.close_delay_ms)
            start_timer(c, T_CLOSE, c->sc.close_delay_ms);
        else
            conn_close(c, c->sc.close_how, true);
        return;
    }
    c->busy = false;
    if (c->sc.idle_close_ms) start_timer(c, T_IDLE, c->sc.idle_close_ms);
    process(c); /* a pipelined request may be buffered already */
}

static void send_bytes(rconn *c, const char *p, size_t n)
{
    rwrite *w = malloc(sizeof(*w) + n);
    assert_non_null(w);
    w->c = c;
    w->len = n;
    memcpy(w->data, p, n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned) n);
    if (uv_write(&w->req, (uv_stream_t *) &c->tcp, &b, 1, on_written) != 0) {
        free(w);
        conn_close(c, RAW_FIN, false);
    }
}

static const char *reason_of(int status)
{
    switch (status) {
    case 200: return "OK";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

/* A complete response with Content-Length; error: an error_first answer. */
static void respond(rconn *c, bool error)
{
    raw_server *s = c->srv;
    int status = error ? (s->opts.error_status ? s->opts.error_status : 503)
                       : (c->sc.status ? c->sc.status : 200);
    const char *body = error ? "retry later" : (c->sc.body ? c->sc.body : "ok");
    size_t blen = strlen(body);
    c->responses++;
    c->last = c->sc.connection_close || (c->sc.close_after && c->responses >= c->sc.close_after);
    if (c->last) uv_read_stop((uv_stream_t *) &c->tcp); /* what follows stays unread */

    char head[512];
    int n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n", status,
                     reason_of(status), blen);
    if (c->sc.keep_alive)
        n += snprintf(head + n, sizeof(head) - (size_t) n, "Keep-Alive: %s\r\n", c->sc.keep_alive);
    else if (c->sc.keep_alive_hint)
        n += snprintf(head + n, sizeof(head) - (size_t) n, "Keep-Alive: timeout=%u\r\n",
                      c->sc.keep_alive_hint);
    if (c->sc.connection_close)
        n += snprintf(head + n, sizeof(head) - (size_t) n, "Connection: close\r\n");
    if (error && s->opts.retry_after)
        n += snprintf(head + n, sizeof(head) - (size_t) n, "Retry-After: %s\r\n",
                      s->opts.retry_after);
    n += snprintf(head + n, sizeof(head) - (size_t) n, "\r\n");
    size_t total = (size_t) n + (c->is_head ? 0 : blen);
    char *msg = malloc(total);
    assert_non_null(msg);
    memcpy(msg, head, (size_t) n);
    memcpy(msg + n, body, total - (size_t) n);
    send_bytes(c, msg, total);
    free(msg);
}

static void stall_half_head(rconn *c)
{
    static const char half[] = "HTTP/1.1 200 OK\r\nContent-Type: text/pl";
    c->stalled = true;
    send_bytes(c, half, sizeof(half) - 1);
}

static void stall_part_body(rconn *c)
{
    size_t part = c->sc.part_body_bytes ? c->sc.part_body_bytes : 1000;
    if (part > RAW_PART_BODY_LENGTH) part = RAW_PART_BODY_LENGTH;
    char head[128];
    int n = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n",
                     RAW_PART_BODY_LENGTH);
    char *msg = malloc((size_t) n + part);
    assert_non_null(msg);
    memcpy(msg, head, (size_t) n);
    memset(msg + n, 'x', part);
    c->stalled = true;
    send_bytes(c, msg, (size_t) n + part);
    free(msg);
}

static void on_timer(uv_timer_t *t)
{
    rconn *c = t->data;
    timer_purpose tp = c->tp;
    c->tp = T_NONE;
    if (c->closing) return;
    switch (tp) {
    case T_RESPOND: respond(c, false); break;
    case T_CLOSE: conn_close(c, c->sc.close_how, true); break;
    case T_IDLE: conn_close(c, c->sc.close_how, true); break;
    case T_NONE: break;
    }
}

/* ---- seeded faults -------------------------------------------------------- */

static uint64_t next_rand(raw_server *s)
{
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return s->rng * 0x2545F4914F6CDD1DULL;
}

static raw_fault draw_fault(raw_server *s)
{
    if (next_rand(s) % 100 >= s->opts.fault_pct)
        return RAW_F_NONE;
    raw_fault kinds[RAW_F_COUNT];
    int n = 0;
    for (int f = RAW_F_NONE + 1; f < RAW_F_COUNT; f++)
        if (!s->opts.fault_mask || (s->opts.fault_mask & (1u << f)))
            kinds[n++] = (raw_fault) f;
    return n ? kinds[next_rand(s) % (uint64_t) n] : RAW_F_NONE;
}

/* Send msg as the connection's last bytes, then close it how. */
static void send_last(rconn *c, const char *msg, size_t n, raw_close_how how)
{
    c->busy = true;
    c->last = true;
    c->sc.close_how = how;
    c->sc.close_delay_ms = 0;
    uv_read_stop((uv_stream_t *) &c->tcp);
    send_bytes(c, msg, n);
}

static void play_fault(rconn *c, raw_fault f)
{
    char msg[600];
    int n;
    switch (f) {
    case RAW_F_RESET_MID:
        n = snprintf(msg, sizeof(msg), "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
        memset(msg + n, 'x', 500);
        send_last(c, msg, (size_t) n + 500, RAW_RST);
        break;
    case RAW_F_HEAD_CLOSE:
        n = snprintf(msg, sizeof(msg), "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
        send_last(c, msg, (size_t) n, RAW_FIN);
        break;
    case RAW_F_STALL_BODY: stall_part_body(c); break;
    case RAW_F_LIE_LENGTH:
        n = snprintf(msg, sizeof(msg), "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nok");
        send_last(c, msg, (size_t) n, RAW_FIN);
        break;
    case RAW_F_CLOSE_UNREAD:
        if (c->responses > 0) stat_add(c->srv, &c->srv->st.close_unread_reused, 1);
        conn_close(c, RAW_FIN, true);
        break;
    default: break;
    }
}

/* ---- reading --------------------------------------------------------------- */

/* A whole request (head and body) arrived: log it, then act. */
static void request_complete(rconn *c)
{
    raw_server *s = c->srv;
    uint64_t n = ++s->requests;
    pthread_mutex_lock(&s->mu);
    uint64_t idx = s->st.requests++;
    if (idx < RAW_LOG) memcpy(s->log[idx], c->line, RAW_LINE);
    pthread_mutex_unlock(&s->mu);
    if (s->opts.on_request) s->opts.on_request(c->line, s->opts.on_request_data);

    if (n <= s->opts.error_first) {
        stat_add(s, &s->st.errors_sent, 1);
        c->busy = true;
        respond(c, true);
        return;
    }
    if (n <= (uint64_t) s->opts.error_first + s->opts.reset_first) {
        conn_close(c, RAW_RST, true);
        return;
    }
    raw_fault f = s->opts.fault_pct ? draw_fault(s) : RAW_F_NONE;
    if (f != RAW_F_NONE) {
        stat_add(s, &s->st.faults[f], 1);
        play_fault(c, f);
        return;
    }
    switch (c->sc.mode) {
    case RAW_ANSWER:
        c->busy = true;
        if (c->sc.response_delay_ms)
            start_timer(c, T_RESPOND, c->sc.response_delay_ms);
        else
            respond(c, false);
        break;
    case RAW_SILENT: break;
    case RAW_HALF_HEAD: stall_half_head(c); break;
    case RAW_PART_BODY: stall_part_body(c); break;
    }
}

static void consume(rconn *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Parse as much of the buffered input as the script lets us. */
static void process(rconn *c)
{
    static const parse_limits lim = PARSE_LIMITS_DEFAULT;
    raw_server *s = c->srv;
    while (!c->closing && !c->busy && !c->stalled) {
        if (c->rs == READ_HEAD) {
            if (c->len == 0) return;
            int rc = parse_request(&c->head, c->buf, c->len, &lim);
            if (rc == 0) return;
            if (rc < 0) {
                conn_close(c, RAW_FIN, true);
                return;
            }
            stat_add(s, &s->st.heads, 1);
            c->is_head = c->head.method_id == PARSE_M_HEAD;
            snprintf(c->line, sizeof(c->line), "%.*s %.*s", (int) c->head.method_len,
                     c->head.method, (int) (c->head.target_len > 100 ? 100 : c->head.target_len),
                     c->head.target);
            c->body_left = 0;
            if (c->head.flags & PARSE_F_CHUNKED) {
                c->rs = READ_BODY_CHUNKED;
                parse_chunked_init(&c->chunked, 4096, false);
            } else if ((c->head.flags & PARSE_F_CONTENT_LENGTH) && c->head.content_length) {
                c->rs = READ_BODY_CL;
                c->body_left = c->head.content_length;
            }
            if (c->rs == READ_HEAD) { /* no body: complete now */
                consume(c, (size_t) rc);
                parse_head_init(&c->head, c->fields);
                request_complete(c);
            } else {
                consume(c, (size_t) rc);
            }
            continue;
        }
        bool done = false;
        if (c->rs == READ_BODY_CL) {
            size_t take = c->len < c->body_left ? c->len : (size_t) c->body_left;
            if (take == 0) return;
            stat_add(s, &s->st.body_bytes, take);
            consume(c, take);
            c->body_left -= take;
            done = c->body_left == 0;
        } else {
            if (c->len == 0) return;
            size_t data_len = 0, used = 0;
            int rc = parse_chunked(&c->chunked, c->buf, c->len, &data_len, &used);
            if (rc < 0) {
                conn_close(c, RAW_FIN, true);
                return;
            }
            stat_add(s, &s->st.body_bytes, data_len);
            consume(c, used);
            done = rc == 1;
            if (!done && used == 0) return;
        }
        if (done) {
            c->rs = READ_HEAD;
            parse_head_init(&c->head, c->fields);
            request_complete(c);
        }
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    rconn *c = h->data;
    (void) suggested;
    if (c->cap - c->len < 16384) {
        c->cap = c->cap ? c->cap * 2 : 65536;
        c->buf = realloc(c->buf, c->cap);
        assert_non_null(c->buf);
    }
    *b = uv_buf_init(c->buf + c->len, (unsigned) (c->cap - c->len));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    rconn *c = st->data;
    (void) b;
    if (c->closing) return;
    if (nread < 0) {
        conn_close(c, RAW_FIN, false);
        return;
    }
    if (nread == 0) return;
    c->len += (size_t) nread;
    if (c->tp == T_IDLE) { /* a request arrived in time: the keep-alive timer stops */
        uv_timer_stop(&c->timer);
        c->tp = T_NONE;
    }
    if (c->stalled) {
        c->len = 0;
        return;
    }
    process(c);
}

static void on_connection(uv_stream_t *l, int status)
{
    raw_server *s = l->data;
    if (status < 0) return;
    rconn *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->srv = s;
    uv_tcp_init(&s->loop, &c->tcp);
    uv_timer_init(&s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    if (uv_accept(l, (uv_stream_t *) &c->tcp) != 0) {
        uv_close((uv_handle_t *) &c->tcp, on_conn_handle_closed);
        uv_close((uv_handle_t *) &c->timer, on_conn_handle_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uint64_t i = s->accepted++;
    c->sc = i < s->opts.nper_conn ? s->per_conn[i] : s->opts.script;
    parse_head_init(&c->head, c->fields);
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;

    pthread_mutex_lock(&s->mu);
    s->st.connections++;
    s->st.open_now++;
    if (s->st.open_now > s->st.max_open) s->st.max_open = s->st.open_now;
    pthread_mutex_unlock(&s->mu);
    uv_read_start((uv_stream_t *) &c->tcp, on_alloc, on_read);
}

/* ---- thread, start and stop -------------------------------------------------- */

static void on_async(uv_async_t *a)
{
    raw_server *s = a->data;
    pthread_mutex_lock(&s->mu);
    bool stop = s->stop_requested;
    pthread_mutex_unlock(&s->mu);
    if (!stop) return;
    while (s->conns)
        conn_close(s->conns, RAW_FIN, true);
    uv_close((uv_handle_t *) &s->listener, NULL);
    uv_close((uv_handle_t *) &s->async, NULL);
}

static void *raw_main(void *arg)
{
    raw_server *s = arg;
    const char *host = s->opts.host ? s->opts.host : "127.0.0.1";
    struct sockaddr_storage ss;
    int rc = strchr(host, ':') ? uv_ip6_addr(host, 0, (struct sockaddr_in6 *) &ss)
                               : uv_ip4_addr(host, 0, (struct sockaddr_in *) &ss);
    uv_tcp_init(&s->loop, &s->listener);
    s->listener.data = s;
    uv_async_init(&s->loop, &s->async, on_async);
    s->async.data = s;
    if (rc == 0) rc = uv_tcp_bind(&s->listener, (struct sockaddr *) &ss, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *) &s->listener, 1024, on_connection);
    int port = 0;
    if (rc == 0) {
        struct sockaddr_storage name;
        int len = sizeof(name);
        rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *) &name, &len);
        if (rc == 0)
            port = ntohs(name.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &name)->sin6_port
                                                    : ((struct sockaddr_in *) &name)->sin_port);
    }
    pthread_mutex_lock(&s->mu);
    s->start_err = rc;
    s->port = port;
    s->ready = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (rc != 0) {
        uv_close((uv_handle_t *) &s->listener, NULL);
        uv_close((uv_handle_t *) &s->async, NULL);
    }
    uv_run(&s->loop, UV_RUN_DEFAULT);
    int crc = uv_loop_close(&s->loop);
    pthread_mutex_lock(&s->mu);
    s->loop_close_rc = crc;
    s->thread_done = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

raw_server *raw_start(const raw_options *o)
{
    raw_server *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    if (o) s->opts = *o;
    s->rng = s->opts.fault_seed ? s->opts.fault_seed : 0x9E3779B97F4A7C15ULL;
    if (s->opts.nper_conn) {
        s->per_conn = calloc(s->opts.nper_conn, sizeof(raw_script));
        assert_non_null(s->per_conn);
        memcpy(s->per_conn, s->opts.per_conn, s->opts.nper_conn * sizeof(raw_script));
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    assert_int_equal(uv_loop_init(&s->loop), 0);
    assert_int_equal(pthread_create(&s->thread, NULL, raw_main, s), 0);
    pthread_mutex_lock(&s->mu);
    while (!s->ready)
        pthread_cond_wait(&s->cv, &s->mu);
    int err = s->start_err;
    pthread_mutex_unlock(&s->mu);
    if (err != 0) {
        pthread_join(s->thread, NULL);
        fail_msg("raw_start: cannot listen on %s: %s", s->opts.host ? s->opts.host : "127.0.0.1",
                 uv_strerror(err));
    }
    return s;
}

raw_server *raw_start_mode(raw_mode mode)
{
    raw_options o = {0};
    o.script.mode = mode;
    return raw_start(&o);
}

int raw_port(const raw_server *s)
{
    return s->port;
}

void raw_stats_get(raw_server *s, raw_stats *st)
{
    pthread_mutex_lock(&s->mu);
    *st = s->st;
    pthread_mutex_unlock(&s->mu);
}

static double mono_ms(void)
{
    return (double) uv_hrtime() / 1e6;
}

bool raw_wait_requests(raw_server *s, uint64_t n, int timeout_ms)
{
    double end = mono_ms() + timeout_ms;
    for (;;) {
        raw_stats st;
        raw_stats_get(s, &st);
        if (st.requests >= n) return true;
        if (mono_ms() >= end) return false;
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
}

void raw_request_line(raw_server *s, size_t i, char *out, size_t out_size)
{
    pthread_mutex_lock(&s->mu);
    snprintf(out, out_size, "%s", i < RAW_LOG && i < s->st.requests ? s->log[i] : "");
    pthread_mutex_unlock(&s->mu);
}

void raw_stop(raw_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->stop_requested = true;
    pthread_mutex_unlock(&s->mu);
    uv_async_send(&s->async);
    pthread_join(s->thread, NULL);
    int rc = s->loop_close_rc;
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->per_conn);
    free(s);
    if (rc != 0) fail_msg("raw_stop: uv_loop_close: %s (a handle was left open)", uv_err_name(rc));
}

/* ---- black hole -------------------------------------------------------------- */

/* Whether a non-blocking connect on fd completed within ms. */
static bool connect_completes(int fd, int ms)
{
    struct pollfd p = {fd, POLLOUT, 0};
    return poll(&p, 1, ms) > 0;
}

int blackhole_open(blackhole *b)
{
    memset(b, 0, sizeof(*b));
    b->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(b->listen_fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(b->listen_fd, (struct sockaddr *) &a, sizeof(a)), 0);
    assert_int_equal(listen(b->listen_fd, 1), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(b->listen_fd, (struct sockaddr *) &a, &len), 0);
    b->port = ntohs(a.sin_port);
    /* Fill the accept queue until one connect stays pending: then the queue is
     * full and the kernel drops further SYNs. */
    while (b->nfillers < (int) (sizeof(b->fillers) / sizeof(b->fillers[0]))) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        assert_true(fd >= 0);
        b->fillers[b->nfillers++] = fd;
        int rc = connect(fd, (struct sockaddr *) &a, sizeof(a));
        if (rc != 0 && errno != EINPROGRESS) fail_msg("blackhole: connect: %s", strerror(errno));
        if (rc != 0 && !connect_completes(fd, 100)) return b->port;
    }
    blackhole_close(b);
    fail_msg("blackhole: the kernel completed %zu connects to a backlog of 1: cannot build a "
             "black hole on 127.0.0.1",
             sizeof(b->fillers) / sizeof(b->fillers[0]));
    return -1;
}

void blackhole_close(blackhole *b)
{
    for (int i = 0; i < b->nfillers; i++)
        close(b->fillers[i]);
    b->nfillers = 0;
    if (b->listen_fd >= 0) close(b->listen_fd);
    b->listen_fd = -1;
}
