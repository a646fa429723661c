/* loadgen.c — mixed, bounded load against one HTTP/1.1 server on loopback,
 * for the reliability runs (docs/reliability.md): soak.sh and slowloris.sh.
 *
 * One libuv loop drives a fixed set of actors, each a connection playing one
 * part over and over until --seconds is up:
 *
 *   keepalive  GET after GET on one socket (a new socket every 100)
 *   fresh      one GET per connection, Connection: close
 *   pipeline   --depth GETs in one write, then their responses
 *   upload     POST /echo with --upload-bytes of body; the echo must match
 *   malformed  a broken request (bad field name, CL+TE, bare LF, 20 KB head,
 *              bad Content-Length, no Host); a 4xx, then the server closes
 *   slowloris  a request head trickled one byte every --trickle-ms, never
 *              finished; the server must cut it (408 or close): the time from
 *              connect to the cut is recorded
 *   idle       one GET, then silence until the server's keep-alive timeout
 *   probe      one GET every --probe-ms on a kept-alive socket: its latency
 *
 * A raw client rather than ferry's agent: the agent would retry, pool and
 * frame its way around exactly the faults this counts. Responses are parsed
 * with ferry's own parser (src/http1/parse.h). Anything a well-behaved server
 * must not do — a reset or close mid-exchange, a 5xx, a 4xx to a good request,
 * a parse error, a short echo — counts as unexpected and is described on
 * stderr (the first 20). The last line of stdout is one JSON object.
 *
 *   loadgen --port P [--host 127.0.0.1] --seconds S [--keepalive N] [--fresh N]
 *           [--pipeline N] [--upload N] [--malformed N] [--slowloris N] [--idle N]
 *           [--probe N] [--depth 16] [--upload-bytes 65536] [--trickle-ms 100]
 *           [--probe-ms 5] [--ramp-ms 1000]
 */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <uv.h>

#include "ferry.h"
#include "http1/parse.h"

enum { K_KA, K_FRESH, K_PIPE, K_UPLOAD, K_BAD, K_SLOW, K_IDLE, K_PROBE, K_COUNT };
static const char *const kind_name[K_COUNT] = {"keepalive", "fresh",     "pipeline", "upload",
                                               "malformed", "slowloris", "idle",     "probe"};

typedef struct kstats {
    uint64_t actors, connections, requests, responses, s2xx, s4xx, s5xx;
    uint64_t expected_closes, unexpected;
} kstats;

typedef struct actor {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_timer_t timer; /* start, reconnect, trickle, probe */
    int kind, id;
    bool open, connecting, closing_tcp;
    char *rbuf;
    size_t rlen, rcap;
    parse_head head;
    parse_field fields[100];
    int head_len; /* > 0 while the body of a parsed head is awaited */
    uint64_t body_len;
    int outstanding;            /* requests sent, responses not yet complete */
    uint64_t on_conn;           /* responses on this connection */
    uint64_t t_connect, t_sent; /* uv_hrtime() */
    uint32_t trickle_pos;
    int variant; /* malformed: which one */
    bool got_4xx, got_408;
} actor;

static struct {
    const char *host;
    int port;
    double seconds;
    int count[K_COUNT];
    int depth, trickle_ms, probe_ms, ramp_ms;
    size_t upload_bytes;
} cfg = {.host = "127.0.0.1",
         .seconds = 10,
         .depth = 16,
         .trickle_ms = 100,
         .probe_ms = 5,
         .ramp_ms = 1000,
         .upload_bytes = 65536};

static uv_loop_t *loop;
static uv_timer_t deadline;
static bool stopping;
static struct sockaddr_storage target;
static actor *actors;
static size_t nactors;
static kstats ks[K_COUNT];
static char *upload_body;
static uint64_t *probe_us;
static size_t nprobe, probe_cap;
static uint64_t slow_cuts, slow_408, slow_cut_min_ms = UINT64_MAX, slow_cut_max_ms;
static int complaints;

static const parse_limits limits = {65536, 100, 8192, true};

static void complain(actor *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void complain(actor *a, const char *fmt, ...)
{
    ks[a->kind].unexpected++;
    if (++complaints > 20) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: unexpected: %s #%d (after %" PRIu64 " responses on the socket): ",
            kind_name[a->kind], a->id, a->on_conn);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- writing ---------------------------------------------------------------- */

typedef struct wreq {
    uv_write_t w;
    actor *a;
    char data[];
} wreq;

static void on_written(uv_write_t *w, int status)
{
    wreq *r = (wreq *) w;
    actor *a = r->a;
    /* A server that already answered a broken or trickled request may close
     * before our bytes are all out; that is its right. */
    if (status < 0 && !stopping && a->kind != K_BAD && a->kind != K_SLOW && a->open)
        complain(a, "write failed: %s", ferry_err_name(status));
    free(r);
}

/* Queue bytes (copied) plus an optional borrowed tail (the upload body). */
static void send_bytes(actor *a, const char *p, size_t n, const char *tail, size_t tail_len)
{
    wreq *r = malloc(sizeof(*r) + n);
    if (!r) abort();
    r->a = a;
    memcpy(r->data, p, n);
    uv_buf_t bufs[2] = {uv_buf_init(r->data, (unsigned) n),
                        uv_buf_init((char *) tail, (unsigned) tail_len)};
    if (uv_write(&r->w, (uv_stream_t *) &a->tcp, bufs, tail ? 2 : 1, on_written) != 0) free(r);
}

static const char *const malformed[] = {
    "GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    "GET / HTTP/1.1\nHost: x\n\n",
    NULL, /* a 20 KB head: 431 */
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n",
    "GET / HTTP/1.1\r\nUser-Agent: no-host\r\n\r\n",
};
#define NMALFORMED (sizeof malformed / sizeof malformed[0])

static void send_request(actor *a)
{
    char buf[256];
    int n;
    a->t_sent = uv_hrtime();
    switch (a->kind) {
    case K_FRESH:
        n = snprintf(buf, sizeof buf,
                     "GET /fresh HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n");
        send_bytes(a, buf, (size_t) n, NULL, 0);
        a->outstanding = 1;
        break;
    case K_PIPE: {
        char *p = malloc(64 * (size_t) cfg.depth);
        size_t len = 0;
        for (int i = 0; i < cfg.depth; i++)
            len += (size_t) sprintf(p + len, "GET /pipe/%d HTTP/1.1\r\nHost: l\r\n\r\n", i);
        send_bytes(a, p, len, NULL, 0);
        free(p);
        a->outstanding = cfg.depth;
        break;
    }
    case K_UPLOAD:
        n = snprintf(buf, sizeof buf,
                     "POST /echo HTTP/1.1\r\nHost: l\r\nContent-Type: application/octet-stream\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     cfg.upload_bytes);
        send_bytes(a, buf, (size_t) n, upload_body, cfg.upload_bytes);
        a->outstanding = 1;
        break;
    case K_BAD: {
        a->variant = (a->variant + 1) % (int) NMALFORMED;
        if (malformed[a->variant]) {
            send_bytes(a, malformed[a->variant], strlen(malformed[a->variant]), NULL, 0);
        } else {
            size_t len = 20000;
            char *p = malloc(len + 64);
            size_t k = (size_t) sprintf(p, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ");
            memset(p + k, 'a', len);
            k += len;
            memcpy(p + k, "\r\n\r\n", 4);
            send_bytes(a, p, k + 4, NULL, 0);
            free(p);
        }
        a->outstanding = 1;
        break;
    }
    case K_SLOW:
        n = snprintf(buf, sizeof buf, "GET /slowloris HTTP/1.1\r\nHost: l\r\n");
        send_bytes(a, buf, (size_t) n, NULL, 0);
        a->outstanding = 1;
        break;
    default: /* keepalive, idle, probe */
        n = snprintf(buf, sizeof buf, "GET /%s HTTP/1.1\r\nHost: l\r\n\r\n", kind_name[a->kind]);
        send_bytes(a, buf, (size_t) n, NULL, 0);
        a->outstanding = 1;
        break;
    }
    ks[a->kind].requests += (uint64_t) a->outstanding;
}

/* ---- connections -------------------------------------------------------------- */

static void start_connect(actor *a);

static void on_timer(uv_timer_t *t);

static void arm(actor *a, uint64_t ms)
{
    if (!stopping) uv_timer_start(&a->timer, on_timer, ms, 0);
}

static void on_tcp_closed(uv_handle_t *h)
{
    actor *a = h->data;
    a->closing_tcp = false;
    if (stopping) return;
    /* The next connection: at once for most, after a breath for the churners. */
    arm(a, a->kind == K_FRESH || a->kind == K_BAD ? 2 : a->kind == K_SLOW ? 10 : 0);
}

static void close_conn(actor *a)
{
    if (!a->open && !a->connecting) return;
    a->open = a->connecting = false;
    a->closing_tcp = true;
    uv_close((uv_handle_t *) &a->tcp, on_tcp_closed);
}

/* The server closed (EOF) or reset (err) the connection. */
static void on_peer_close(actor *a, int err)
{
    if (stopping) return;
    kstats *k = &ks[a->kind];
    uint64_t ms = (uv_hrtime() - a->t_connect) / 1000000;
    switch (a->kind) {
    case K_FRESH:
        if (a->outstanding == 0 && err == UV_EOF)
            k->expected_closes++;
        else
            complain(a, "%s before the response was complete", ferry_err_name(err));
        break;
    case K_BAD:
        if (a->got_4xx)
            k->expected_closes++; /* FIN or RST: our unread bytes may cause a reset */
        else
            complain(a, "%s before any answer to malformed request %d", ferry_err_name(err),
                     a->variant);
        break;
    case K_SLOW:
        k->expected_closes++;
        slow_cuts++;
        slow_408 += a->got_408;
        if (ms < slow_cut_min_ms) slow_cut_min_ms = ms;
        if (ms > slow_cut_max_ms) slow_cut_max_ms = ms;
        break;
    case K_IDLE:
        if (a->outstanding == 0 && a->on_conn > 0 && err == UV_EOF)
            k->expected_closes++;
        else
            complain(a, "%s while %d responses were due", ferry_err_name(err), a->outstanding);
        break;
    default: complain(a, "%s with %d responses due", ferry_err_name(err), a->outstanding); break;
    }
    close_conn(a);
}

/* One complete response (its head is in a->head, its body in the buffer). */
static void on_response(actor *a, const char *body, size_t body_len)
{
    kstats *k = &ks[a->kind];
    int st = a->head.status;
    k->responses++;
    a->on_conn++;
    a->outstanding--;
    if (st >= 500)
        k->s5xx++;
    else if (st >= 400)
        k->s4xx++;
    else
        k->s2xx++;
    switch (a->kind) {
    case K_BAD:
        if (st >= 400 && st < 500)
            a->got_4xx = true;
        else
            complain(a, "status %d for malformed request %d", st, a->variant);
        return; /* the server closes next */
    case K_SLOW:
        if (st == 408)
            a->got_408 = true;
        else
            complain(a, "status %d for a trickled head", st);
        return;
    default: break;
    }
    if (st != 200) {
        complain(a, "status %d", st);
        close_conn(a);
        return;
    }
    if (a->kind == K_UPLOAD &&
        (body_len != cfg.upload_bytes || memcmp(body, upload_body, body_len) != 0)) {
        complain(a, "echo of %zu bytes differs from the %zu sent", body_len, cfg.upload_bytes);
        close_conn(a);
        return;
    }
    if (a->kind == K_PROBE) {
        uint64_t us = (uv_hrtime() - a->t_sent) / 1000;
        if (nprobe == probe_cap) {
            probe_cap = probe_cap ? probe_cap * 2 : 4096;
            probe_us = realloc(probe_us, probe_cap * sizeof *probe_us);
            if (!probe_us) abort();
        }
        probe_us[nprobe++] = us;
    }
    if (a->outstanding > 0) return;
    switch (a->kind) {
    case K_KA:
        if (a->on_conn >= 100)
            close_conn(a);
        else
            send_request(a);
        break;
    case K_PIPE:
    case K_UPLOAD: send_request(a); break;
    case K_PROBE: arm(a, (uint64_t) cfg.probe_ms); break;
    default: break; /* fresh: the server closes; idle: wait for its timeout */
    }
}

/* Parse what arrived: complete responses, in order. */
static void consume(actor *a)
{
    size_t off = 0;
    while (a->open && off < a->rlen) {
        if (a->head_len == 0) {
            int r = parse_response(&a->head, a->rbuf + off, a->rlen - off, &limits, 0);
            if (r == 0) break;
            if (r < 0) {
                complain(a, "unparsable response: %s", ferry_err_name(r));
                close_conn(a);
                return;
            }
            if (a->head.flags & PARSE_F_CONTENT_LENGTH)
                a->body_len = a->head.content_length;
            else if (a->head.flags & PARSE_F_NO_BODY)
                a->body_len = 0;
            else {
                complain(a, "a response without Content-Length (status %d)", a->head.status);
                close_conn(a);
                return;
            }
            a->head_len = r;
        }
        if (a->rlen - off < (size_t) a->head_len + a->body_len) break;
        const char *body = a->rbuf + off + a->head_len;
        size_t blen = (size_t) a->body_len;
        off += (size_t) a->head_len + blen;
        a->head_len = 0;
        if (a->head.status >= 100 && a->head.status < 200) {
            parse_head_init(&a->head, a->fields);
            continue;
        }
        on_response(a, body, blen);
        parse_head_init(&a->head, a->fields);
    }
    if (off && a->open) {
        /* parse_head rebases itself when the bytes move */
        memmove(a->rbuf, a->rbuf + off, a->rlen - off);
        a->rlen -= off;
    } else if (!a->open) {
        a->rlen = 0;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    actor *a = h->data;
    (void) suggested;
    if (a->rcap - a->rlen < 65536) {
        a->rcap = a->rcap ? a->rcap * 2 : 131072;
        a->rbuf = realloc(a->rbuf, a->rcap);
        if (!a->rbuf) abort();
    }
    *buf = uv_buf_init(a->rbuf + a->rlen, (unsigned) (a->rcap - a->rlen));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    actor *a = s->data;
    (void) buf;
    if (n > 0) {
        a->rlen += (size_t) n;
        consume(a);
        /* A parse that wants more keeps its state; an idle buffer is dropped. */
        return;
    }
    if (n < 0) on_peer_close(a, (int) n);
}

static void on_connected(uv_connect_t *c, int status)
{
    actor *a = c->data;
    a->connecting = false;
    if (status < 0) {
        if (status == UV_ECANCELED || stopping) {
            return;
        }
        complain(a, "connect: %s", ferry_err_name(status));
        a->open = true;
        close_conn(a);
        return;
    }
    a->open = true;
    ks[a->kind].connections++;
    uv_tcp_nodelay(&a->tcp, 1);
    uv_read_start((uv_stream_t *) &a->tcp, on_alloc, on_read);
    if (a->kind == K_SLOW) arm(a, (uint64_t) cfg.trickle_ms);
    send_request(a);
}

static void start_connect(actor *a)
{
    if (stopping || a->closing_tcp) return;
    uv_tcp_init(loop, &a->tcp);
    a->tcp.data = a;
    a->creq.data = a;
    a->rlen = 0;
    a->head_len = 0;
    a->outstanding = 0;
    a->on_conn = 0;
    a->trickle_pos = 0;
    a->got_4xx = a->got_408 = false;
    parse_head_init(&a->head, a->fields);
    a->t_connect = uv_hrtime();
    a->connecting = true;
    int rc = uv_tcp_connect(&a->creq, &a->tcp, (struct sockaddr *) &target, on_connected);
    if (rc < 0) {
        complain(a, "connect: %s", ferry_err_name(rc));
        a->connecting = false;
        a->open = true;
        close_conn(a);
    }
}

static void on_timer(uv_timer_t *t)
{
    actor *a = t->data;
    if (stopping) return;
    if (!a->open && !a->connecting) {
        start_connect(a);
        return;
    }
    if (a->kind == K_SLOW && a->open) {
        static const char line[] = "X-Trickle: y\r\n";
        send_bytes(a, &line[a->trickle_pos++ % (sizeof line - 1)], 1, NULL, 0);
        arm(a, (uint64_t) cfg.trickle_ms);
    } else if (a->kind == K_PROBE && a->open && a->outstanding == 0) {
        send_request(a);
    }
}

static void on_deadline(uv_timer_t *t)
{
    (void) t;
    stopping = true;
    for (size_t i = 0; i < nactors; i++) {
        actor *a = &actors[i];
        uv_timer_stop(&a->timer);
        uv_close((uv_handle_t *) &a->timer, NULL);
        if (a->open || a->connecting) {
            a->open = a->connecting = false;
            uv_close((uv_handle_t *) &a->tcp, NULL);
        }
    }
    uv_close((uv_handle_t *) &deadline, NULL);
}

/* ---- results ------------------------------------------------------------------ */

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *) x, b = *(const uint64_t *) y;
    return a < b ? -1 : a > b;
}

static uint64_t pct(double p)
{
    if (!nprobe) return 0;
    size_t i = (size_t) (p / 100.0 * (double) (nprobe - 1) + 0.5);
    return probe_us[i];
}

static void print_json(double elapsed)
{
    uint64_t unexpected = 0, s5xx_good = 0, s4xx_good = 0;
    printf("{\"seconds\":%.3f,\"kinds\":{", elapsed);
    int first = 1;
    for (int k = 0; k < K_COUNT; k++) {
        unexpected += ks[k].unexpected;
        if (k != K_BAD && k != K_SLOW) {
            s5xx_good += ks[k].s5xx;
            s4xx_good += ks[k].s4xx;
        }
        if (!ks[k].actors) continue;
        printf("%s\"%s\":{\"actors\":%" PRIu64 ",\"connections\":%" PRIu64 ",\"requests\":%" PRIu64
               ",\"responses\":%" PRIu64 ",\"2xx\":%" PRIu64 ",\"4xx\":%" PRIu64 ",\"5xx\":%" PRIu64
               ",\"expected_closes\":%" PRIu64 ",\"unexpected\":%" PRIu64 "}",
               first ? "" : ",", kind_name[k], ks[k].actors, ks[k].connections, ks[k].requests,
               ks[k].responses, ks[k].s2xx, ks[k].s4xx, ks[k].s5xx, ks[k].expected_closes,
               ks[k].unexpected);
        first = 0;
    }
    qsort(probe_us, nprobe, sizeof *probe_us, cmp_u64);
    printf("},\"unexpected\":%" PRIu64 ",\"5xx\":%" PRIu64 ",\"4xx_to_good\":%" PRIu64
           ",\"probe_us\":{\"n\":%zu,\"p50\":%" PRIu64 ",\"p99\":%" PRIu64 ",\"max\":%" PRIu64
           "},\"slowloris\":{\"cut\":%" PRIu64 ",\"with_408\":%" PRIu64 ",\"cut_ms_min\":%" PRIu64
           ",\"cut_ms_max\":%" PRIu64 "}}\n",
           unexpected, s5xx_good, s4xx_good, nprobe, pct(50), pct(99),
           nprobe ? probe_us[nprobe - 1] : 0, slow_cuts, slow_408, slow_cuts ? slow_cut_min_ms : 0,
           slow_cut_max_ms);
}

/* ---- main ------------------------------------------------------------------- */

static int usage(const char *msg)
{
    fprintf(stderr, "loadgen: %s (see the comment at the top of tests/reliability/loadgen.c)\n",
            msg);
    return 2;
}

static int to_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (i + 1 >= argc) return usage("a flag without its value");
        const char *v = argv[++i];
        long n;
        int k = -1;
        for (int j = 0; j < K_COUNT; j++)
            if (f[0] == '-' && f[1] == '-' && strcmp(f + 2, kind_name[j]) == 0) k = j;
        if (strcmp(f, "--host") == 0) {
            cfg.host = v;
            continue;
        }
        if (strcmp(f, "--seconds") == 0) {
            cfg.seconds = atof(v);
            if (!(cfg.seconds > 0 && cfg.seconds <= 3600)) return usage("--seconds: 0 < S <= 3600");
            continue;
        }
        if (to_int(v, 0, 100000, &n) < 0) return usage("a bad number");
        if (k >= 0)
            cfg.count[k] = (int) n;
        else if (strcmp(f, "--port") == 0)
            cfg.port = (int) n;
        else if (strcmp(f, "--depth") == 0 && n > 0 && n <= 1000)
            cfg.depth = (int) n;
        else if (strcmp(f, "--upload-bytes") == 0 && n > 0)
            cfg.upload_bytes = (size_t) n;
        else if (strcmp(f, "--trickle-ms") == 0 && n > 0)
            cfg.trickle_ms = (int) n;
        else if (strcmp(f, "--probe-ms") == 0)
            cfg.probe_ms = (int) n;
        else if (strcmp(f, "--ramp-ms") == 0)
            cfg.ramp_ms = (int) n;
        else
            return usage("an unknown flag or a value out of range");
    }
    if (cfg.port <= 0 || cfg.port > 65535) return usage("--port is needed");
    if (uv_ip4_addr(cfg.host, cfg.port, (struct sockaddr_in *) &target) != 0 &&
        uv_ip6_addr(cfg.host, cfg.port, (struct sockaddr_in6 *) &target) != 0)
        return usage("--host must be an IP literal");

    /* Thousands of sockets: take the hard limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    upload_body = malloc(cfg.upload_bytes);
    for (size_t i = 0; i < cfg.upload_bytes; i++)
        upload_body[i] = (char) ('a' + (i * 7 + i / 251) % 26);
    for (int k = 0; k < K_COUNT; k++)
        nactors += (size_t) cfg.count[k];
    actors = calloc(nactors ? nactors : 1, sizeof *actors);
    loop = uv_default_loop();
    size_t idx = 0;
    for (int k = 0; k < K_COUNT; k++) {
        ks[k].actors = (uint64_t) cfg.count[k];
        for (int j = 0; j < cfg.count[k]; j++, idx++) {
            actor *a = &actors[idx];
            a->kind = k;
            a->id = j;
            uv_timer_init(loop, &a->timer);
            a->timer.data = a;
        }
    }
    /* Start the actors spread over --ramp-ms (the probe first: it measures). */
    for (size_t i = 0; i < nactors; i++) {
        actor *a = &actors[i];
        uint64_t at = a->kind == K_PROBE || nactors < 2
                          ? 0
                          : (uint64_t) cfg.ramp_ms * (uint64_t) i / (uint64_t) nactors;
        uv_timer_start(&a->timer, on_timer, at, 0);
    }
    uv_timer_init(loop, &deadline);
    uv_timer_start(&deadline, on_deadline, (uint64_t) (cfg.seconds * 1000), 0);
    uint64_t t0 = uv_hrtime();
    uv_run(loop, UV_RUN_DEFAULT);
    double elapsed = (double) (uv_hrtime() - t0) / 1e9;
    print_json(elapsed);
    int rc = uv_loop_close(loop) == 0 ? 0 : 1;
    for (size_t i = 0; i < nactors; i++)
        free(actors[i].rbuf);
    free(actors);
    free(upload_body);
    free(probe_us);
    return rc;
}
