/* bench.c — `ferry bench`: an HTTP load generator on the ferry client
 * (docs/bench.md).
 *
 * THREADS worker threads, each with its own uv_loop and ferry_agent (one
 * loop per thread, as ferry wants). A worker's share of CONNS becomes its
 * agent's max_sockets_per_origin, -p its `pipelining` and -M its
 * `max_requests_per_socket`, so the pool does the connection work:
 * - closed model: a worker keeps share × PIPELINE requests in flight and
 *   starts the next one when one ends; latency runs from the ferry_request
 *   call to the end of the response;
 * - open model (-R): a worker starts requests on its share of the rate
 *   schedule (rate.c) as far as share × PIPELINE in flight allows; a request
 *   that could not start on time starts later, and its latency still runs
 *   from its intended start (coordinated omission corrected, as in wrk2).
 * Per request the tool does no allocation: requests reuse a worker's slots
 * and its one ferry_request_options; recording is a few increments and an
 * O(1) histogram update. Bodies are not buffered (no on_data: the agent
 * drains them); bytes come from the agent's stats.
 *
 * Measurement: requests that start after the warm-up and end before the
 * deadline count. At the deadline (or SIGINT/SIGTERM) a worker closes its agent with
 * abort_active, so requests still in flight end at once and are not counted.
 * The main thread only starts the workers, prints progress on a TTY and
 * merges their results.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "ferry.h"
#include "flags.h"
#include "rate.h"
#include "report.h"

#define CMD          "bench"
#define MAX_HEADERS  64
#define MAX_THREADS  64
#define PROGRESS_MS  250

typedef struct bench_config {
    const char *url;
    uint64_t conns, threads, pipeline, max_per_conn;
    uint64_t duration_ns; /* -d; 0 with -n */
    uint64_t requests;    /* -n; 0 with -d */
    uint64_t warmup_ns;
    double rate; /* -R; 0: closed model */
    const char *method;
    ferry_header headers[MAX_HEADERS];
    size_t nheaders;
    const char *body;
    const char *body_file;
    int json, help, duration_given;
    tls_flags tls; /* --cacert, -k, --cert, --key */
} bench_config;

typedef struct worker worker;
typedef struct bench bench;

typedef struct bslot {
    worker *w;
    uint64_t start_ns; /* closed: when ferry_request was called; open: the intended start */
    uint64_t sent_ns;  /* when ferry_request was called */
    int status;
} bslot;

struct worker {
    bench *b;
    int id;
    uv_thread_t tid;
    uv_loop_t loop;
    ferry_agent *agent;
    ferry_request_options ropts;
    ferry_request_callbacks cbs;
    uint32_t conns;
    uint64_t cap;   /* in flight at most */
    uint64_t quota; /* requests to start: the -n share, or UINT64_MAX */
    uint64_t issued, inflight;
    bslot *slots;
    bslot **free_slots;
    size_t nfree;
    double rate;
    rate_sched sched;
    int open_model;
    uv_timer_t phase;     /* end of warm-up, then end of the run */
    uv_async_t stop_async;
    uv_mutex_t lock;      /* guards async_closed against the main thread's send */
    int lock_ready;
    int async_closed;     /* 1 until stop_async is initialised, and once it is closed */
    uint64_t t0, t_measure, t_end, t_stop, t_last;
    int measuring, stopping;
    int fatal;            /* a request the agent refused at once */
    int init_err;
    char init_why[256];   /* why, from this thread's ferry_tls_error_detail */
    run_stats *st;
    hist *uncorrected; /* open model: latency from the actual send, as wrk2's --u_latency */
    ferry_agent_stats as0, as1;
    uint64_t unsent;      /* open model: due by the end, never started */
    atomic_uint_fast64_t progress_done, progress_failed;
    atomic_int finished;
};

struct bench {
    bench_config *cfg;
    worker *workers;
    size_t nworkers;
    uv_barrier_t ready;
    uv_loop_t loop;
    uv_async_t done_async;
    uv_timer_t progress;
    uv_signal_t sigint, sigterm; /* either stops the run with its summary */
    int tty;
    int interrupted;
    uint64_t t_start;
};

/* ---- Flags --------------------------------------------------------------------- */

enum {
    F_C, F_T, F_D, F_N, F_R, F_P, F_M, F_H, F_X, F_BODY, F_BODY_FILE, F_WARMUP, F_JSON, F_HELP,
    F_HELP_SHORT,
};

static const flag_spec specs[] = {
    {"-c", NULL, F_C, FLAG_UINT, 1, 100000},
    {"-t", NULL, F_T, FLAG_UINT, 1, MAX_THREADS},
    {"-d", NULL, F_D, FLAG_SECONDS, 1, 86400},
    {"-n", NULL, F_N, FLAG_UINT, 1, UINT64_C(1000000000000)},
    {"-R", NULL, F_R, FLAG_RATE, 0, 100000000},
    {"-p", NULL, F_P, FLAG_UINT, 1, 1024},
    {"-M", NULL, F_M, FLAG_UINT, 1, UINT32_MAX},
    {"-H", NULL, F_H, FLAG_STR, 0, 0},
    {"-X", NULL, F_X, FLAG_STR, 0, 0},
    {NULL, "--body", F_BODY, FLAG_STR, 0, 0},
    {NULL, "--body-file", F_BODY_FILE, FLAG_STR, 0, 0},
    {NULL, "--warmup", F_WARMUP, FLAG_SECONDS, 0, 3600},
    {NULL, "--cacert", FLAG_TLS_CACERT, FLAG_STR, 0, 0},
    {"-k", "--insecure", FLAG_TLS_INSECURE, FLAG_BOOL, 0, 0},
    {NULL, "--cert", FLAG_TLS_CERT, FLAG_STR, 0, 0},
    {NULL, "--key", FLAG_TLS_KEY, FLAG_STR, 0, 0},
    {NULL, "--json", F_JSON, FLAG_BOOL, 0, 0},
    {NULL, "--help", F_HELP, FLAG_BOOL, 0, 0},
    {"-h", NULL, F_HELP_SHORT, FLAG_BOOL, 0, 0},
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ferry bench URL [options]\n"
            "\n"
            "Load-test one URL and report throughput and latency (docs/bench.md).\n"
            "\n"
            "options ([default]):\n"
            "  -c CONNS              connections, spread over the threads [10]\n"
            "  -t THREADS            threads, each with its own loop and pool [1]\n"
            "  -d SECONDS            duration, e.g. 5, 0.5, 10s [10]\n"
            "  -n REQUESTS           stop after this many requests instead of a duration\n"
            "  -R RATE               open model: RATE requests/s in all, latency measured\n"
            "                        from each request's intended start [closed model]\n"
            "  -p PIPELINE           requests in flight per connection [1]\n"
            "  -M N                  reconnect after N requests on a connection [never];\n"
            "                        over https, -M 1 measures TLS handshakes\n"
            "  -H 'Name: value'      add a header field (repeatable)\n"
            "  -X METHOD             request method [GET; POST with a body]\n"
            "  --body DATA           request body\n"
            "  --body-file F         request body from file F\n"
            "  --warmup SECONDS      run this long before measuring (with -d) [0]\n"
            "  --cacert FILE         trust the CAs in FILE (PEM) instead of the system's\n"
            "  -k, --insecure        DANGEROUS: accept any server certificate, for any name\n"
            "  --cert FILE           client certificate chain (PEM), for servers that ask\n"
            "  --key FILE            its private key [in the --cert file]\n"
            "  --json                print the summary as one JSON object on stdout's last line\n"
            "  --help                show this help\n"
            "\n"
            "Exit status: 0 if every measured request got a response, 1 if any failed or\n"
            "the run could not start, 2 for bad usage.\n");
}

static int add_header(bench_config *c, const char *arg)
{
    if (c->nheaders == MAX_HEADERS)
        return usage_error(CMD, "too many -H headers (at most %d)", MAX_HEADERS);
    int rc = flag_header(CMD, arg, &c->headers[c->nheaders]);
    if (rc == 0)
        c->nheaders++;
    return rc;
}

static int on_flag(void *ctx, const flag_spec *spec, const flag_value *v)
{
    bench_config *c = ctx;
    if (tls_flag(&c->tls, spec, v))
        return 0;
    switch (spec->id) {
    case F_C: c->conns = v->u; break;
    case F_T: c->threads = v->u; break;
    case F_D:
        c->duration_ns = v->u;
        c->duration_given = 1;
        break;
    case F_N: c->requests = v->u; break;
    case F_R: c->rate = v->d; break;
    case F_P: c->pipeline = v->u; break;
    case F_M: c->max_per_conn = v->u; break;
    case F_H: return add_header(c, v->str);
    case F_X:
        if (flag_method(CMD, v->str) != 0)
            return 2;
        c->method = v->str;
        break;
    case F_BODY:
        if (c->body_file)
            return usage_error(CMD, "--body and --body-file exclude each other");
        c->body = v->str;
        break;
    case F_BODY_FILE:
        if (c->body)
            return usage_error(CMD, "--body and --body-file exclude each other");
        c->body_file = v->str;
        break;
    case F_WARMUP: c->warmup_ns = v->u; break;
    case F_JSON: c->json = 1; break;
    case F_HELP:
    case F_HELP_SHORT: c->help = 1; break;
    }
    return 0;
}

static int on_arg(void *ctx, const char *arg)
{
    bench_config *c = ctx;
    if (c->url)
        return usage_error(CMD, "unexpected argument '%s': one URL only", arg);
    if (flag_url(CMD, arg) != 0)
        return 2;
    c->url = arg;
    return 0;
}

/* ---- A worker ---------------------------------------------------------------------- */

static void worker_stop(worker *w, uint64_t t_stop);

static void issue(worker *w, uint64_t start_ns)
{
    bslot *s = w->free_slots[--w->nfree];
    s->start_ns = start_ns;
    s->sent_ns = w->open_model ? uv_hrtime() : start_ns;
    s->status = 0;
    w->issued++;
    w->inflight++;
    int err = ferry_request(w->agent, &w->ropts, &w->cbs, s, NULL);
    if (err < 0) {
        w->inflight--;
        w->free_slots[w->nfree++] = s;
        w->fatal = err;
        worker_stop(w, uv_hrtime());
    }
}

/* Closed model: fill the free slots. */
static void pump_closed(worker *w)
{
    while (!w->stopping && w->nfree > 0 && w->issued < w->quota)
        issue(w, uv_hrtime());
}

/* Open model: start every request that is due, as far as the slots go; if
 * there is room left, sleep until the next one is due. */
static void pump_open(worker *w)
{
    uint64_t now = uv_hrtime();
    while (!w->stopping && w->nfree > 0 && w->issued < w->quota && rate_peek(&w->sched) <= now) {
        uint64_t intended = rate_peek(&w->sched);
        rate_take(&w->sched);
        issue(w, intended);
    }
    if (!w->stopping && w->nfree > 0 && w->issued < w->quota)
        rate_arm(&w->sched);
}

static void on_due(rate_sched *r, void *data)
{
    (void) r;
    pump_open(data);
}

static void on_response(ferry_client_req *req, const ferry_response *r, void *data)
{
    (void) req;
    ((bslot *) data)->status = r->status;
}

static void on_done(ferry_client_req *req, int status, void *data)
{
    bslot *s = data;
    worker *w = s->w;
    w->inflight--;
    w->free_slots[w->nfree++] = s;
    if (w->stopping)
        return;
    uint64_t now = uv_hrtime();
    if (w->measuring && s->start_ns >= w->t_measure && (!w->t_end || now <= w->t_end)) {
        if (status == 0) {
            run_stats_response(w->st, s->status, now > s->start_ns ? (now - s->start_ns) / 1000u : 0);
            if (w->open_model)
                hist_record(w->uncorrected, now > s->sent_ns ? (now - s->sent_ns) / 1000u : 0);
        } else
            run_stats_error(w->st, status, req, w->b->cfg->url);
        w->t_last = now;
        atomic_store_explicit(&w->progress_done, w->st->requests, memory_order_relaxed);
        atomic_store_explicit(&w->progress_failed, w->st->failed, memory_order_relaxed);
    }
    if (w->issued >= w->quota && w->inflight == 0) {
        worker_stop(w, now);
        return;
    }
    if (w->open_model)
        pump_open(w);
    else
        pump_closed(w);
}

static void on_phase(uv_timer_t *t)
{
    worker *w = t->data;
    if (!w->measuring) {
        /* The warm-up is over: measure from its intended end on. */
        w->measuring = 1;
        ferry_agent_stats_get(w->agent, &w->as0);
        if (w->t_end) {
            uint64_t now = uv_hrtime();
            uint64_t left = w->t_end > now ? (w->t_end - now + 999999u) / 1000000u : 0;
            uv_timer_start(&w->phase, on_phase, left, 0);
        }
        return;
    }
    worker_stop(w, w->t_end);
}

static void on_stop_async(uv_async_t *a)
{
    worker *w = a->data;
    worker_stop(w, uv_hrtime());
}

static void on_agent_closed(ferry_agent *a, void *data)
{
    (void) a;
    (void) data;
}

/* End the run: note the stats, close every handle; in-flight requests are
 * aborted and not counted. */
static void worker_stop(worker *w, uint64_t t_stop)
{
    if (w->stopping)
        return;
    w->stopping = 1;
    w->t_stop = t_stop;
    ferry_agent_stats_get(w->agent, &w->as1);
    if (w->open_model) {
        /* Requests due by the end that never got a slot. */
        while (rate_peek(&w->sched) <= t_stop && w->issued + w->unsent < w->quota) {
            rate_take(&w->sched);
            w->unsent++;
        }
        rate_disarm(&w->sched);
        rate_close(&w->sched, NULL);
    }
    uv_close((uv_handle_t *) &w->phase, NULL);
    uv_mutex_lock(&w->lock);
    w->async_closed = 1;
    uv_close((uv_handle_t *) &w->stop_async, NULL);
    uv_mutex_unlock(&w->lock);
    ferry_agent_close(w->agent, 1, on_agent_closed, w);
}

static int worker_setup(worker *w)
{
    const bench_config *c = w->b->cfg;
    int err = uv_loop_init(&w->loop);
    if (err < 0)
        return err;
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.max_sockets_per_origin = w->conns;
    ao.max_idle_per_origin = w->conns;
    ao.pipelining = (uint32_t) c->pipeline;
    ao.max_requests_per_socket = (uint32_t) c->max_per_conn;
    ao.retries = 0; /* a load generator counts failures; it does not hide them */
    tls_flags_agent(&c->tls, &ao);
    if ((err = ferry_agent_new(&w->loop, &ao, &w->agent)) < 0) {
        snprintf(w->init_why, sizeof w->init_why, "%s", agent_error_why(err));
        uv_loop_close(&w->loop);
        return err;
    }
    uv_timer_init(&w->loop, &w->phase);
    w->phase.data = w;
    uv_async_init(&w->loop, &w->stop_async, on_stop_async);
    w->stop_async.data = w;
    uv_mutex_lock(&w->lock);
    w->async_closed = 0;
    uv_mutex_unlock(&w->lock);
    if (w->open_model && (err = rate_init(&w->sched, &w->loop, w->rate, on_due, w)) < 0)
        w->open_model = 0; /* never happens on Linux; reported below */
    w->cbs = (ferry_request_callbacks){.on_response = on_response, .on_done = on_done};
    return err;
}

static void worker_main(void *arg)
{
    worker *w = arg;
    w->init_err = worker_setup(w);
    uv_barrier_wait(&w->b->ready);
    if (w->init_err < 0) {
        if (w->agent) {
            worker_stop(w, uv_hrtime());
            uv_run(&w->loop, UV_RUN_DEFAULT);
            ferry_agent_free(w->agent);
            uv_loop_close(&w->loop);
        }
        atomic_store(&w->finished, 1);
        uv_async_send(&w->b->done_async);
        return;
    }
    const bench_config *c = w->b->cfg;
    w->t0 = uv_hrtime();
    w->t_measure = w->t0 + c->warmup_ns;
    w->t_end = c->duration_ns ? w->t_measure + c->duration_ns : 0;
    w->measuring = c->warmup_ns == 0;
    if (c->warmup_ns)
        uv_timer_start(&w->phase, on_phase, (c->warmup_ns + 999999u) / 1000000u, 0);
    else if (w->t_end)
        uv_timer_start(&w->phase, on_phase, (c->duration_ns + 999999u) / 1000000u, 0);
    if (w->open_model) {
        rate_start(&w->sched, w->t0);
        pump_open(w);
    } else {
        pump_closed(w);
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    ferry_agent_free(w->agent);
    if (uv_loop_close(&w->loop) != 0)
        fprintf(stderr, "ferry bench: thread %d left handles open\n", w->id);
    atomic_store(&w->finished, 1);
    uv_async_send(&w->b->done_async);
}

/* ---- The main thread ------------------------------------------------------------------ */

static void stop_workers(bench *b)
{
    for (size_t i = 0; i < b->nworkers; i++) {
        worker *w = &b->workers[i];
        uv_mutex_lock(&w->lock);
        if (!w->async_closed)
            uv_async_send(&w->stop_async);
        uv_mutex_unlock(&w->lock);
    }
}

static void on_sigint(uv_signal_t *h, int signum)
{
    (void) signum;
    bench *b = h->data;
    b->interrupted = 1;
    stop_workers(b);
}

static void on_progress(uv_timer_t *t)
{
    bench *b = t->data;
    const bench_config *c = b->cfg;
    uint64_t done = 0, failed = 0;
    for (size_t i = 0; i < b->nworkers; i++) {
        done += atomic_load_explicit(&b->workers[i].progress_done, memory_order_relaxed);
        failed += atomic_load_explicit(&b->workers[i].progress_failed, memory_order_relaxed);
    }
    uint64_t now = uv_hrtime();
    double el = (double) (now - b->t_start) / 1e9;
    double measured = el - (double) c->warmup_ns / 1e9;
    char line[160], n[32], r[32];
    if (measured <= 0)
        snprintf(line, sizeof line, "%.1fs  warming up", el);
    else
        snprintf(line, sizeof line, "%.1fs  %s requests  %s req/s  errors %" PRIu64, el,
                 fmt_count(n, done), fmt_count(r, (uint64_t) ((double) done / measured)), failed);
    progress_show(line);
}

static void on_worker_done(uv_async_t *a)
{
    bench *b = a->data;
    for (size_t i = 0; i < b->nworkers; i++)
        if (!atomic_load(&b->workers[i].finished))
            return;
    if (b->tty) {
        uv_timer_stop(&b->progress);
        progress_clear();
    }
    uv_close((uv_handle_t *) &b->progress, NULL);
    uv_close((uv_handle_t *) &b->sigint, NULL);
    uv_close((uv_handle_t *) &b->sigterm, NULL);
    if (b->interrupted) { /* the closes restored the default: ignore the signal's twin */
        signal(SIGINT, SIG_IGN);
        signal(SIGTERM, SIG_IGN);
    }
    uv_close((uv_handle_t *) &b->done_async, NULL);
}

/* The merged results of all workers. */
typedef struct totals {
    run_stats *st;
    hist *uncorrected;
    ferry_agent_stats as; /* connections_opened, sockets_reused, retries: summed */
    uint64_t bytes_in, bytes_out, unsent;
    double elapsed, cpu_s;
} totals;

static void print_summary(bench *b, const totals *t)
{
    const run_stats *st = t->st;
    const ferry_agent_stats *as = &t->as;
    uint64_t bytes_in = t->bytes_in, bytes_out = t->bytes_out, unsent = t->unsent;
    double elapsed = t->elapsed, cpu_s = t->cpu_s;
    const bench_config *c = b->cfg;
    double rps = elapsed > 0 ? (double) st->requests / elapsed : 0;
    double bps = elapsed > 0 ? (double) bytes_in / elapsed : 0;
    if (c->json) {
        json j;
        json_begin(&j, stdout);
        report_json_outcomes(&j, st);
        json_u64(&j, "non_2xx", st->non_2xx);
        json_double(&j, "elapsed_s", elapsed, 6);
        json_double(&j, "requests_per_second", rps, 1);
        json_u64(&j, "bytes", bytes_in);
        json_double(&j, "bytes_per_second", bps, 1);
        json_u64(&j, "bytes_out", bytes_out);
        report_json_latency(&j, "latency_us", &st->latency);
        if (c->rate > 0)
            report_json_latency(&j, "latency_uncorrected_us", t->uncorrected);
        report_json_connections(&j, as);
        json_str(&j, "url", c->url);
        json_str(&j, "model", c->rate > 0 ? "open" : "closed");
        if (c->rate > 0)
            json_double(&j, "rate", c->rate, 1);
        else
            json_null(&j, "rate");
        json_u64(&j, "unsent", unsent);
        json_u64(&j, "connections", c->conns);
        json_u64(&j, "threads", c->threads);
        json_u64(&j, "pipeline", c->pipeline);
        json_double(&j, "cpu_s", cpu_s, 3);
        json_u64(&j, "interrupted", (uint64_t) b->interrupted);
        json_end(&j);
        return;
    }
    char x[32], y[32], z[32];
    FILE *f = stdout;
    fprintf(f, "ferry bench %s: %s model", c->url, c->rate > 0 ? "open" : "closed");
    if (c->rate > 0)
        fprintf(f, " at %.0f req/s", c->rate);
    fprintf(f, ", %" PRIu64 " connection%s, %" PRIu64 " thread%s", c->conns,
            c->conns == 1 ? "" : "s", c->threads, c->threads == 1 ? "" : "s");
    if (c->pipeline > 1)
        fprintf(f, ", %" PRIu64 " pipelined", c->pipeline);
    if (c->max_per_conn)
        fprintf(f, ", %" PRIu64 " requests per connection", c->max_per_conn);
    fprintf(f, "%s\n", b->interrupted ? " (interrupted)" : "");
    fprintf(f, "  %-13s %s in %.3f s: %s req/s\n", "requests", fmt_count(x, st->requests),
            elapsed, fmt_count(y, (uint64_t) (rps + 0.5)));
    fprintf(f, "  %-13s %s read (%s/s), %s written\n", "transfer", fmt_bytes(x, (double) bytes_in),
            fmt_bytes(y, bps), fmt_bytes(z, (double) bytes_out));
    report_text_latency(f, "latency", &st->latency);
    if (c->rate > 0)
        report_text_latency(f, "uncorrected", t->uncorrected);
    report_text_outcomes(f, st);
    fprintf(f, "  %-13s %s\n", "non-2xx", fmt_count(x, st->non_2xx));
    if (c->rate > 0)
        fprintf(f, "  %-13s %s due but never sent (all connections busy)\n", "unsent",
                fmt_count(x, unsent));
    report_text_connections(f, as);
    fprintf(f, "  %-13s %.2f s (%.2f µs per request)\n", "client CPU", cpu_s,
            st->requests ? cpu_s * 1e6 / (double) st->requests : 0.0);
    fflush(f);
}

int cmd_bench(int argc, char **argv)
{
    bench_config cfg = {.conns = 10, .threads = 1, .pipeline = 1, .duration_ns = UINT64_C(10000000000)};
    int rc = flags_parse(CMD, argc, argv, specs, sizeof specs / sizeof specs[0], on_flag, on_arg,
                         &cfg);
    if (rc != 0)
        return rc;
    if (cfg.help) {
        usage(stdout);
        return 0;
    }
    if (!cfg.url)
        return usage_error(CMD, "no URL given");
    if (cfg.requests && cfg.duration_given)
        return usage_error(CMD, "-d and -n exclude each other");
    if (cfg.requests) {
        cfg.duration_ns = 0;
        if (cfg.warmup_ns)
            return usage_error(CMD, "--warmup goes with -d, not -n");
    }
    if (cfg.threads > cfg.conns)
        return usage_error(CMD, "-t %" PRIu64 " needs at least as many connections (-c %" PRIu64
                                ")",
                           cfg.threads, cfg.conns);
    if (cfg.requests && cfg.requests < cfg.threads)
        return usage_error(CMD, "-n %" PRIu64 " is less than one request per thread",
                           cfg.requests);
    if ((rc = tls_flags_check(CMD, &cfg.tls)) != 0)
        return rc;

    char *file_body = NULL;
    size_t body_len = cfg.body ? strlen(cfg.body) : 0;
    if (cfg.body_file && read_whole_file(cfg.body_file, &file_body, &body_len) < 0)
        return usage_error(CMD, "cannot read '%s': %s", cfg.body_file, strerror(errno));
    int has_body = cfg.body || cfg.body_file;

    bench b = {.cfg = &cfg, .nworkers = (size_t) cfg.threads};
    b.workers = calloc(b.nworkers, sizeof *b.workers);
    run_stats *total = malloc(sizeof *total);
    hist *uncorrected = malloc(sizeof *uncorrected);
    int ok = b.workers && total && uncorrected;
    for (size_t i = 0; ok && i < b.nworkers; i++) {
        worker *w = &b.workers[i];
        w->b = &b;
        w->id = (int) i;
        w->conns = (uint32_t) (cfg.conns / cfg.threads + (i < cfg.conns % cfg.threads));
        w->cap = (uint64_t) w->conns * cfg.pipeline;
        w->quota = cfg.requests ? cfg.requests / cfg.threads + (i < cfg.requests % cfg.threads)
                                : UINT64_MAX;
        w->open_model = cfg.rate > 0;
        w->rate = cfg.rate * (double) w->conns / (double) cfg.conns;
        w->st = malloc(sizeof *w->st);
        w->uncorrected = malloc(sizeof *w->uncorrected);
        w->slots = calloc(w->cap, sizeof *w->slots);
        w->free_slots = calloc(w->cap, sizeof *w->free_slots);
        w->async_closed = 1;
        if (!w->st || !w->uncorrected || !w->slots || !w->free_slots ||
            uv_mutex_init(&w->lock) != 0) {
            ok = 0;
            break;
        }
        w->lock_ready = 1;
        run_stats_init(w->st);
        hist_init(w->uncorrected);
        for (uint64_t k = 0; k < w->cap; k++) {
            w->slots[k].w = w;
            w->free_slots[w->nfree++] = &w->slots[w->cap - 1 - k];
        }
        ferry_request_options_init(&w->ropts);
        w->ropts.url = cfg.url;
        w->ropts.method = cfg.method ? cfg.method : has_body ? "POST" : "GET";
        w->ropts.headers = cfg.headers;
        w->ropts.header_count = cfg.nheaders;
        w->ropts.body = file_body ? file_body : cfg.body;
        w->ropts.body_len = body_len;
        w->ropts.retries = 0;
    }
    if (!ok) {
        fprintf(stderr, "ferry bench: out of memory\n");
        rc = 1;
        goto out;
    }

    uv_loop_init(&b.loop);
    uv_barrier_init(&b.ready, (unsigned) b.nworkers + 1);
    uv_async_init(&b.loop, &b.done_async, on_worker_done);
    b.done_async.data = &b;
    uv_timer_init(&b.loop, &b.progress);
    b.progress.data = &b;
    uv_signal_init(&b.loop, &b.sigint);
    b.sigint.data = &b;
    uv_signal_start(&b.sigint, on_sigint, SIGINT);
    uv_signal_init(&b.loop, &b.sigterm);
    b.sigterm.data = &b;
    uv_signal_start(&b.sigterm, on_sigint, SIGTERM);
    b.tty = isatty(STDERR_FILENO);

    size_t started = 0;
    for (; started < b.nworkers; started++)
        if (uv_thread_create(&b.workers[started].tid, worker_main, &b.workers[started]) != 0)
            break;
    if (started < b.nworkers) {
        /* Cannot happen short of a broken system; do not leave threads waiting. */
        fprintf(stderr, "ferry bench: cannot start thread %zu\n", started);
        exit(1);
    }
    uv_barrier_wait(&b.ready);
    b.t_start = uv_hrtime();
    if (b.tty)
        uv_timer_start(&b.progress, on_progress, PROGRESS_MS, PROGRESS_MS);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    for (size_t i = 0; i < b.nworkers; i++)
        uv_thread_join(&b.workers[i].tid);
    uv_loop_close(&b.loop);
    uv_barrier_destroy(&b.ready);
    double cpu_s = process_cpu_seconds();

    /* Merge. */
    run_stats_init(total);
    hist_init(uncorrected);
    totals t = {.st = total, .uncorrected = uncorrected, .cpu_s = cpu_s};
    int fatal = 0, init_err = 0;
    const char *init_why = NULL;
    for (size_t i = 0; i < b.nworkers; i++) {
        worker *w = &b.workers[i];
        if (w->init_err < 0) {
            init_err = w->init_err;
            init_why = w->init_why[0] ? w->init_why : NULL;
            continue;
        }
        if (w->fatal)
            fatal = w->fatal;
        run_stats_merge(total, w->st);
        hist_merge(uncorrected, w->uncorrected);
        t.as.connections_opened += w->as1.connections_opened;
        t.as.sockets_reused += w->as1.sockets_reused;
        t.as.retries += w->as1.retries;
        t.as.tls_handshakes += w->as1.tls_handshakes;
        t.as.tls_resumed += w->as1.tls_resumed;
        t.bytes_in += w->as1.bytes_in - w->as0.bytes_in;
        t.bytes_out += w->as1.bytes_out - w->as0.bytes_out;
        t.unsent += w->unsent;
        uint64_t end = w->t_end && !b.interrupted ? w->t_end
                       : cfg.requests && w->t_last ? w->t_last
                                                   : w->t_stop;
        double el = end > w->t_measure ? (double) (end - w->t_measure) / 1e9 : 0;
        if (el > t.elapsed)
            t.elapsed = el;
    }
    if (init_err < 0) {
        /* a --cacert, --cert or --key file that does not load: which, and why */
        fprintf(stderr, "ferry bench: cannot start: %s\n",
                init_why ? init_why : ferry_strerror(init_err));
        rc = 1;
        goto out;
    }
    if (fatal < 0) {
        fprintf(stderr, "ferry bench: the agent refused the request: %s\n", ferry_strerror(fatal));
        rc = 1;
        goto out;
    }
    print_summary(&b, &t);
    rc = total->failed || b.interrupted ? 1 : 0;

out:
    if (b.workers) {
        for (size_t i = 0; i < b.nworkers; i++) {
            worker *w = &b.workers[i];
            free(w->st);
            free(w->uncorrected);
            free(w->slots);
            free(w->free_slots);
            if (w->lock_ready)
                uv_mutex_destroy(&w->lock);
        }
    }
    free(b.workers);
    free(total);
    free(uncorrected);
    free(file_body);
    return rc;
}
