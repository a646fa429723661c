/* agent.c — the ferry_agent handle: options, new, close, free and stats.
 * It builds the pool (pool.c) with the request layer's event tables
 * (request.c) and closes both in order: the agent's close completes when no
 * request and no socket is left, then its handles close and the user's
 * callback runs (see client.h for the layers).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "client/client.h"
#include "core/options.h"

#define TOTAL_SOCKETS_RESERVE 64 /* fds left for everything else when deriving the budget */

static void agent_options_defaults(ferry_agent_options *o)
{
    memset(o, 0, sizeof(*o));
    o->max_sockets_per_origin = 256;
    o->max_total_sockets = 0;
    o->max_idle_per_origin = 256;
    o->max_queue = 10000;
    o->max_requests_per_socket = 0;
    o->pipelining = 1;
    o->idle_timeout_ms = 4000;
    o->keep_alive_margin_ms = 1000;
    o->max_header_bytes = 65536;
    o->max_headers = 200;
    o->cookies = 0;
    o->connect_timeout_ms = 10000;
    o->headers_timeout_ms = 60000;
    o->body_timeout_ms = 60000;
    o->queue_timeout_ms = 0;
    o->total_timeout_ms = 0;
    o->retries = 2;
    o->retry_base_ms = 100;
    o->retry_max_delay_ms = 10000;
    o->dns_ttl_ms = 30000;
    o->tls_min_version = FERRY_TLS_1_2;
    o->tls_session_cache_size = TLS_SESSION_CACHE_DEFAULT;
}

void ferry_agent_options_init_sized(ferry_agent_options *o, size_t size)
{
    ferry_agent_options def;
    agent_options_defaults(&def);
    options_init_sized(o, size, &def, sizeof(def));
}

/* The default socket budget: what the fd limit allows, minus a reserve. */
static uint32_t default_total_sockets(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return 4096;
    rlim_t n = rl.rlim_cur > TOTAL_SOCKETS_RESERVE + 16 ? rl.rlim_cur - TOTAL_SOCKETS_RESERVE : 16;
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t) n;
}

/* The agent options' TLS part as a client configuration (owner: cfg). */
static int agent_tls_config(ferry_agent_options *o, tls_client_config *cfg)
{
    tls_client_options to;
    tls_client_options_init(&to);
    to.ca_file = o->tls_ca_file;
    to.ca_dir = o->tls_ca_dir;
    to.ca_pem = o->tls_ca_pem;
    to.cert_file = o->tls_cert_file;
    to.key_file = o->tls_key_file;
    to.cert_pem = o->tls_cert_pem;
    to.key_pem = o->tls_key_pem;
    to.min_version = o->tls_min_version;
    to.insecure = o->tls_insecure != 0;
    int rc = tls_client_config_init(cfg, &to);
    /* the strings were read; later use of them would see the caller's memory */
    o->tls_ca_file = o->tls_ca_dir = o->tls_ca_pem = NULL;
    o->tls_cert_file = o->tls_key_file = o->tls_cert_pem = o->tls_key_pem = NULL;
    return rc;
}

int agent_tls_init(ferry_agent *a)
{
    if (a->pool.tls_ready)
        return 0;
    int rc = agent_tls_config(&a->opt, &a->pool.tls);
    if (rc == 0)
        a->pool.tls_ready = true;
    return rc;
}

static ferry_agent *agent_of(client_pool *p)
{
    return container_of(p, ferry_agent, pool);
}

static void on_run_due(client_pool *p)
{
    request_run_done(agent_of(p));
}

static void maybe_close_done(ferry_agent *a);

static void on_settled(client_pool *p)
{
    maybe_close_done(agent_of(p));
}

static void on_origin_freed(client_pool *p, client_origin *o)
{
    request_on_origin_freed(agent_of(p), o);
}

static const pool_events agent_pool_events = {
    .sending = request_on_sending,
    .failed = request_on_failed,
    .run_due = on_run_due,
    .settled = on_settled,
    .origin_freed = on_origin_freed,
};

/* Allocates the agent (owner: the caller, released by ferry_agent_free). */
int ferry_agent_new(uv_loop_t *loop, const ferry_agent_options *o, ferry_agent **out)
{
    if (!out)
        return FERRY_EINVAL;
    *out = NULL;
    if (!loop)
        return FERRY_EINVAL;
    ferry_agent_options opt; /* the caller's, perhaps from an older header, over our defaults */
    agent_options_defaults(&opt);
    if (o && options_copy(&opt, sizeof(opt), o, AGENT_OPTIONS_V1_SIZE) != 0)
        return FERRY_EINVAL;
    o = &opt;
    if (o->pipelining == 0 || o->max_sockets_per_origin == 0 || o->max_headers == 0 ||
        o->max_header_bytes < 64)
        return FERRY_EINVAL;
    ferry_agent *a = calloc(1, sizeof(*a));
    if (!a)
        return FERRY_ENOMEM;
    a->loop = loop;
    a->opt = *o;
    list_init(&a->done);
    list_init(&a->retry_wait);
    pool_limits lim = {
        .max_sockets_per_origin = o->max_sockets_per_origin,
        .max_total_sockets = o->max_total_sockets ? o->max_total_sockets
                                                  : default_total_sockets(),
        .max_idle_per_origin = o->max_idle_per_origin,
        .max_requests_per_socket = o->max_requests_per_socket,
        .pipelining = o->pipelining,
        .idle_timeout_ms = o->idle_timeout_ms,
    };
    int rc = 0;
    if (o->cookies) {
        rc = cookie_jar_init(&a->jar, NULL);
        a->have_jar = rc == 0;
    }
    /* Certificates given: load them now, so a bad path fails here (the
     * strings need not outlive this call); else at the first https URL. */
    tls_client_config tls = {0};
    bool tls_now = o->tls_ca_file || o->tls_ca_dir || o->tls_ca_pem || o->tls_cert_file ||
                   o->tls_cert_pem || o->tls_insecure || o->tls_min_version > FERRY_TLS_1_2;
    if (rc == 0 && tls_now)
        rc = agent_tls_config(&a->opt, &tls);
    if (rc == 0)
        rc = pool_init(&a->pool, loop, &agent_pool_events, &request_exchange_events, &lim,
                       o->max_header_bytes, o->max_headers, o->keep_alive_margin_ms,
                       o->dns_ttl_ms, o->tls_session_cache_size);
    if (rc != 0) {
        if (a->have_jar)
            cookie_jar_free(&a->jar);
        tls_client_config_destroy(&tls);
        free(a);
        return rc;
    }
    if (tls_now) {
        a->pool.tls = tls; /* the pool owns it from here */
        a->pool.tls_ready = true;
    }
    uv_timer_init(loop, &a->retry_timer);
    a->retry_timer.data = a;
    *out = a;
    return 0;
}

/* ---- closing ---- */

static void on_all_closed(closer *c)
{
    ferry_agent *a = container_of(c, ferry_agent, closer);
    a->close_done = true;
    if (a->close_cb)
        a->close_cb(a, a->close_data);
}

/* Once closing and nothing is left (no request, no socket), close the
 * agent's own handles; the close callback runs when the last is closed. */
static void maybe_close_done(ferry_agent *a)
{
    if (!a->closing || a->handles_closing || a->live_requests || a->pool.total_sockets)
        return;
    a->handles_closing = true;
    closer_begin(&a->closer, on_all_closed);
    closer_handle(&a->closer, (uv_handle_t *) &a->retry_timer);
    pool_close_handles(&a->pool, &a->closer);
    closer_end(&a->closer);
}

void ferry_agent_close(ferry_agent *a, int abort_active, ferry_agent_close_cb cb, void *data)
{
    if (!a)
        return;
    if (!a->close_cb && cb) {
        a->close_cb = cb;
        a->close_data = data;
    }
    a->closing = true;
    if (abort_active && !a->closing_abort) {
        /* every request ends with FERRY_ECLOSING; their sockets close */
        a->closing_abort = true;
        pool_close(&a->pool, true, FERRY_ECLOSING);
        request_abort_backoff(a);
    } else {
        pool_close(&a->pool, false, 0);
    }
    /* the callback never runs inside this call: the kick decides */
    pool_kick(&a->pool);
}

int ferry_agent_free(ferry_agent *a)
{
    if (!a)
        return 0;
    if (!a->close_done)
        return FERRY_EBUSY;
    request_cache_clear(a);
    free(a->hdrs);
    if (a->have_jar)
        cookie_jar_free(&a->jar);
    pool_free(&a->pool);
    free(a);
    return 0;
}

/* ---- stats ---- */

void ferry_agent_stats_get_sized(const ferry_agent *a, ferry_agent_stats *out, size_t size)
{
    if (!a) { /* no agent: zeros, never the caller's garbage */
        stats_copy(out, size, &(ferry_agent_stats){0}, sizeof(ferry_agent_stats));
        return;
    }
    const client_pool *p = &a->pool;
    const conn_stats *cs = &p->cctx.stats;
    ferry_agent_stats all = a->stats, *st = &all;
    st->sockets_active = st->sockets_idle = st->queued = 0;
    for (const list_link *l = p->origins.next; l != &p->origins; l = l->next) {
        const client_origin *o = container_of(l, client_origin, link);
        st->sockets_active += o->nbusy;
        st->sockets_idle += o->nidle;
        st->queued += o->nwaiting;
    }
    st->origins = p->norigins;
    st->connections_opened = cs->connections_opened;
    st->sockets_reused = p->sockets_reused;
    st->stale_detected = cs->stale_detected;
    st->timeouts_connect = cs->timeouts_connect;
    st->timeouts_headers += cs->timeouts_headers;
    st->idle_closed = p->idle_closed + cs->idle_closed;
    st->emfile_budget_cuts = p->emfile_cuts;
    st->dns_lookups = p->dns.lookups;
    st->dns_cache_hits = p->dns.hits;
    st->bytes_in = p->cctx.tpool.bytes_in;
    st->bytes_out = p->cctx.tpool.bytes_out;
    st->closing = a->closing;
    st->tls_handshakes = cs->tls_handshakes;
    st->tls_resumed = cs->tls_resumed;
    stats_copy(out, size, st, sizeof(*st));
}

void(ferry_agent_stats_get)(const ferry_agent *a, ferry_agent_stats *st)
{
    ferry_agent_stats_get_sized(a, st, AGENT_STATS_V1_SIZE);
}

int ferry_agent_origin_stats_get_sized(const ferry_agent *a, const char *url,
                                       ferry_agent_origin_stats *out, size_t size)
{
    ferry_agent_origin_stats all, *st = &all;
    memset(st, 0, sizeof(*st));
    stats_copy(out, size, st, sizeof(*st));
    if (!a || !url || !out)
        return FERRY_EINVAL;
    url_parts u;
    int rc = url_parse(url, strlen(url), &u);
    if (rc)
        return rc;
    char key[URL_ORIGIN_KEY_MAX];
    size_t klen;
    rc = url_origin_key(&u, key, sizeof(key), &klen);
    if (rc)
        return rc;
    const client_origin *o = pool_origin_find(&a->pool, key, klen);
    if (o) {
        st->active = o->nbusy;
        st->idle = o->nidle;
        st->queued = o->nwaiting;
        st->connections_opened = o->opened;
        st->sockets_reused = o->reused;
        st->requests = o->requests;
    }
    stats_copy(out, size, st, sizeof(*st));
    return 0;
}

int(ferry_agent_origin_stats_get)(const ferry_agent *a, const char *url,
                                  ferry_agent_origin_stats *st)
{
    return ferry_agent_origin_stats_get_sized(a, url, st, ORIGIN_STATS_V1_SIZE);
}
