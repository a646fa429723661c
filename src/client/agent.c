/* agent.c — the client's pool: one origin per (scheme, host, port), each with
 * its idle sockets (LIFO: the most recently used socket is the one least
 * likely to have been closed by the server), its busy sockets and a FIFO
 * queue of requests waiting for a socket; socket budgets per origin and in
 * total; the timeout lists; DNS; closing; stats.
 *
 * How a request meets a socket: ferry_request puts it at the tail of its
 * origin's queue and kicks the agent; the kick (a uv_idle + uv_check pair, so
 * it runs right after the current I/O callbacks, never inside a public call)
 * pumps each origin: queued requests take idle sockets (checked for a pending
 * FIN/RST first), then new sockets are opened while the budgets allow, at
 * most one per queued request. A socket that finishes a response takes the
 * next queued request itself (client_conn.c calls agent_conn_available), so a
 * busy pool never goes through the idle list at all. A connecting socket
 * "is driven by" the oldest queued request that caused it: if the connect
 * fails, that request gets the error (and may retry); if it succeeds, it
 * serves whichever request is at the head of the queue.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "client/client_internal.h"

#define TOTAL_SOCKETS_RESERVE 64 /* fds left for everything else when deriving the budget */

void ferry_agent_options_init(ferry_agent_options *o)
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

static void on_kick(uv_idle_t *h);
static void on_kick_check(uv_check_t *h);
static void on_retry_timer(uv_timer_t *t);

/* Allocates the agent (owner: the caller, released by ferry_agent_free). */
int ferry_agent_new(uv_loop_t *loop, const ferry_agent_options *o, ferry_agent **out)
{
    if (!loop || !out)
        return FERRY_EINVAL;
    ferry_agent_options def;
    if (!o) {
        ferry_agent_options_init(&def);
        o = &def;
    }
    if (o->pipelining == 0 || o->max_sockets_per_origin == 0 || o->max_headers == 0 ||
        o->max_header_bytes < 64)
        return FERRY_EINVAL;
    ferry_agent *a = calloc(1, sizeof(*a));
    if (!a)
        return FERRY_ENOMEM;
    a->loop = loop;
    a->opt = *o;
    a->max_total = o->max_total_sockets ? o->max_total_sockets : default_total_sockets();
    list_init(&a->origins);
    list_init(&a->starving);
    list_init(&a->pump);
    list_init(&a->done);
    list_init(&a->resume);
    list_init(&a->retry_wait);
    int rc = buf_pool_init(&a->rbufs, BUF_DEFAULT_SIZE, 64);
    if (rc == 0 && o->cookies) {
        rc = cookie_jar_init(&a->jar, NULL);
        a->have_jar = rc == 0;
    }
    if (rc == 0)
        rc = dns_cache_init(loop, &a->dns, o->dns_ttl_ms, 256);
    if (rc != 0) {
        if (a->have_jar)
            cookie_jar_free(&a->jar);
        free(a);
        return rc;
    }
    uv_idle_init(loop, &a->kick);
    uv_check_init(loop, &a->kick_check);
    uv_timer_init(loop, &a->retry_timer);
    a->kick.data = a->kick_check.data = a->retry_timer.data = a;
    *out = a;
    return 0;
}

/* ---- timeout lists ---- */

/* The timeout list for one duration, made on first use (owner: the agent,
 * closed with it). weak lists do not keep the loop alive (idle sockets). */
timeout_list *agent_tlist(ferry_agent *a, uint64_t duration_ms, bool weak)
{
    if (duration_ms == 0 || a->handles_closing)
        return NULL;
    if (duration_ms > TIMEOUT_MAX_MS)
        duration_ms = TIMEOUT_MAX_MS;
    for (tlist_node *t = a->tlists; t; t = t->next)
        if (t->weak == weak && timeout_list_duration(&t->list) == duration_ms)
            return &t->list;
    tlist_node *t = calloc(1, sizeof(*t));
    if (!t || timeout_list_init(a->loop, &t->list, duration_ms) != 0) {
        free(t);
        return NULL;
    }
    if (weak)
        timeout_list_set_weak(&t->list);
    t->weak = weak;
    t->next = a->tlists;
    a->tlists = t;
    return &t->list;
}

/* Arm e for duration_ms on the agent's list for it; 0 disarms. */
void agent_arm(ferry_agent *a, timeout_entry *e, uint64_t duration_ms, bool weak)
{
    timeout_list *l = agent_tlist(a, duration_ms, weak);
    if (l)
        timeout_arm(l, e);
    else
        timeout_disarm(e);
}

/* ---- origins ---- */

static void origin_free(client_origin *o)
{
    ferry_agent *a = o->agent;
    if (a->last_url && a->last_url->origin == o) {
        agent_url_unref(a->last_url);
        a->last_url = NULL;
    }
    list_remove(&o->link);
    list_remove(&o->starving_link);
    list_remove(&o->kick_link);
    o->agent->norigins--;
    free(o->host);
    free(o);
}

void agent_origin_unref(client_origin *o)
{
    if (--o->refs == 0)
        origin_free(o);
}

/* The origin of u, made on first use (owner: the agent; freed when no
 * request or socket refers to it). The caller takes a reference. */
client_origin *agent_origin_for(ferry_agent *a, const url_parts *u, int *err)
{
    char key[URL_ORIGIN_KEY_MAX];
    size_t klen;
    uint32_t scope;
    *err = url_origin_key(u, key, sizeof(key), &klen);
    if (*err)
        return NULL;
    /* A linear search with move-to-front: agents talk to a handful of
     * origins, and the one just used is almost always the next. */
    list_link *l;
    for (l = a->origins.next; l != &a->origins; l = l->next) {
        client_origin *o = container_of(l, client_origin, link);
        if (o->key_len == klen && memcmp(o->key, key, klen) == 0) {
            if (l != a->origins.next) {
                list_remove(l);
                l->next = a->origins.next;
                l->prev = &a->origins;
                a->origins.next->prev = l;
                a->origins.next = l;
            }
            o->refs++;
            return o;
        }
    }
    client_origin *o = calloc(1, sizeof(*o) + klen + 1);
    if (!o) {
        *err = FERRY_ENOMEM;
        return NULL;
    }
    size_t hlen = u->host.len + (u->zone.len ? 1 + u->zone.len : 0);
    o->host = malloc(hlen + 1);
    if (!o->host) {
        free(o);
        *err = FERRY_ENOMEM;
        return NULL;
    }
    memcpy(o->host, u->host.p, u->host.len);
    if (u->zone.len) { /* getaddrinfo reads "fe80::1%eth0" */
        o->host[u->host.len] = '%';
        memcpy(o->host + u->host.len + 1, u->zone.p, u->zone.len);
    }
    o->host[hlen] = '\0';
    o->port = u->port;
    o->agent = a;
    memcpy(o->key, key, klen + 1);
    o->key_len = klen;
    if (u->is_ipv4) {
        struct sockaddr_in *sin = (struct sockaddr_in *) &o->addr;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(u->port);
        memcpy(&sin->sin_addr, u->addr, 4);
        o->literal = true;
    } else if (u->is_ipv6 && url_zone_index(u, &scope) == 0) {
        /* a zone naming no interface is left to getaddrinfo: EAI_NONAME */
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &o->addr;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(u->port);
        memcpy(&sin6->sin6_addr, u->addr, 16);
        sin6->sin6_scope_id = scope;
        o->literal = true;
    }
    list_init(&o->idle);
    list_init(&o->busy);
    list_init(&o->waiting);
    list_init(&o->starving_link);
    list_init(&o->kick_link);
    list_append(&a->origins, &o->link);
    a->norigins++;
    o->refs = 1;
    return o;
}

void agent_url_unref(client_url *u)
{
    if (u && --u->refs == 0)
        free(u);
}

/* The parsed URL for s: the agent's last one when s is the same string, else
 * parsed now (allocates it: owner, its references — the caller's, and the
 * agent's as its last URL). The caller also gets one reference to u->origin.
 * A URL holds no origin reference of its own: the requests using it do, and
 * when its origin is forgotten the agent forgets it as its last URL too. */
client_url *agent_url_get(ferry_agent *a, const char *s, int *err)
{
    size_t len = strlen(s);
    client_url *u = a->last_url;
    *err = 0;
    if (u && u->len == len && memcmp(u->str, s, len) == 0) {
        u->refs++;
        u->origin->refs++;
        return u;
    }
    u = malloc(sizeof(*u) + len + 1);
    if (!u) {
        *err = FERRY_ENOMEM;
        return NULL;
    }
    memcpy(u->str, s, len + 1);
    u->len = len;
    *err = url_parse(u->str, len, &u->parts);
    if (*err == FERRY_EBADHOST || *err == FERRY_EBADTARGET)
        *err = FERRY_EINVAL; /* to the caller, a bad URL is a bad argument */
    if (*err == 0 && u->parts.https)
        *err = FERRY_ENOTSUP; /* until TLS lands */
    if (*err == 0)
        *err = url_host_header(&u->parts, u->host_hdr, sizeof(u->host_hdr), &u->host_hdr_len);
    if (*err == 0)
        u->origin = agent_origin_for(a, &u->parts, err);
    if (*err) {
        free(u);
        return NULL;
    }
    u->refs = 2;
    agent_url_unref(a->last_url);
    a->last_url = u;
    return u;
}

/* ---- header arrays ----
 * A socket needs max_headers parse_fields only while it parses a head, so
 * they are lent out then: 10,000 idle sockets hold none. */

#define FIELDS_CACHE 64

/* Allocates an array (owner: the borrowing socket until it puts it back,
 * then the agent's cache; freed by agent_fields_clear). */
parse_field *agent_fields_get(ferry_agent *a)
{
    void *f = a->free_fields;
    if (f) {
        a->free_fields = *(void **) f;
        a->nfree_fields--;
        return f;
    }
    return malloc(a->opt.max_headers * sizeof(parse_field));
}

void agent_fields_put(ferry_agent *a, parse_field *f)
{
    if (!f)
        return;
    if (a->nfree_fields >= FIELDS_CACHE) {
        free(f);
        return;
    }
    *(void **) f = a->free_fields; /* the array's first bytes link the cache */
    a->free_fields = f;
    a->nfree_fields++;
}

static void agent_fields_clear(ferry_agent *a)
{
    while (a->free_fields) {
        void *f = a->free_fields;
        a->free_fields = *(void **) f;
        free(f);
    }
    a->nfree_fields = 0;
}

/* ---- the queue and the pump ---- */

static bool origin_can_open(const client_origin *o)
{
    const ferry_agent *a = o->agent;
    return o->nidle + o->nbusy < a->opt.max_sockets_per_origin && a->total_sockets < a->max_total;
}

/* The total budget is spent: close the least recently used idle socket of
 * another origin so this one can open (idle sockets are worth less than
 * waiting requests). Returns whether one was closed. */
static bool steal_idle_socket(client_origin *want)
{
    ferry_agent *a = want->agent;
    for (list_link *l = a->origins.prev; l != &a->origins; l = l->prev) {
        client_origin *o = container_of(l, client_origin, link);
        if (o != want && !list_empty(&o->idle)) {
            client_conn *c = container_of(o->idle.next, client_conn, link);
            a->stats.idle_closed++;
            client_conn_close(c, 0);
            return true;
        }
    }
    return false;
}

/* Give waiting requests sockets: idle ones first, then new ones. */
void agent_pump(client_origin *o)
{
    ferry_agent *a = o->agent;
    while (!list_empty(&o->waiting)) {
        client_req *r = container_of(o->waiting.next, client_req, link);
        /* an idle socket, unless this request must have a fresh one */
        if (!r->force_new && !list_empty(&o->idle)) {
            client_conn *c = container_of(o->idle.prev, client_conn, link);
            if (!client_conn_check_idle(c))
                continue; /* it was stale and is closed now; try the next */
            agent_unqueue(r);
            client_conn_send(c, r);
            continue;
        }
        /* pipelining: a busy socket with room */
        if (a->opt.pipelining > 1 && !r->force_new) {
            client_conn *best = NULL;
            for (list_link *l = o->busy.next; l != &o->busy; l = l->next) {
                client_conn *c = container_of(l, client_conn, link);
                if (client_conn_can_take(c, r) && (!best || c->ninflight < best->ninflight))
                    best = c;
            }
            if (best) {
                agent_unqueue(r);
                client_conn_send(best, r);
                continue;
            }
        }
        break;
    }
    /* open sockets for queued requests that no connecting socket will serve */
    uint32_t undriven = o->nwaiting > o->nconnecting ? o->nwaiting - o->nconnecting : 0;
    list_link *l = o->waiting.next;
    while (undriven && !a->closing_abort) {
        if (!origin_can_open(o)) {
            if (o->nidle && container_of(o->waiting.next, client_req, link)->force_new) {
                /* a request that must have a fresh socket: make room (the
                 * slot is free once the socket's handle has closed) */
                client_conn_close(container_of(o->idle.next, client_conn, link), 0);
                a->stats.idle_closed++;
            } else if (o->nidle + o->nbusy < a->opt.max_sockets_per_origin) {
                /* held back only by the total budget: free one slot at a
                 * time; the pump runs again when it is free */
                if (list_empty(&o->starving_link))
                    list_append(&a->starving, &o->starving_link);
                steal_idle_socket(o);
            }
            break;
        }
        while (l != &o->waiting && container_of(l, client_req, link)->driving)
            l = l->next;
        if (l == &o->waiting)
            break;
        client_req *r = container_of(l, client_req, link);
        int err;
        client_conn *c = client_conn_new(o, r, &err);
        if (!c) {
            agent_unqueue(r);
            client_req_complete(r, err);
            break;
        }
        undriven--;
        /* a connect that failed at once took r off the queue: start over */
        l = r->driving == c ? l->next : o->waiting.next;
    }
}

/* A request joins its origin's queue (at the tail, or the front when it is
 * being retried after waiting its turn once already). */
void agent_enqueue(client_req *r, bool front)
{
    client_origin *o = r->origin;
    ferry_agent *a = r->agent;
    r->state = RQ_WAITING;
    if (front)
        list_insert_after(&o->waiting, &r->link);
    else
        list_append(&o->waiting, &r->link);
    o->nwaiting++;
    a->nqueued++;
    agent_arm(a, &r->tmo, r->t_queue, false);
    if (list_empty(&o->kick_link))
        list_append(&a->pump, &o->kick_link);
    agent_kick(a);
}

/* Queue r right behind lead, which is queued on the same origin. */
void agent_enqueue_after(client_req *r, client_req *lead)
{
    client_origin *o = r->origin;
    ferry_agent *a = r->agent;
    r->state = RQ_WAITING;
    list_insert_after(&lead->link, &r->link);
    o->nwaiting++;
    a->nqueued++;
    agent_arm(a, &r->tmo, r->t_queue, false);
    if (list_empty(&o->kick_link))
        list_append(&a->pump, &o->kick_link);
    agent_kick(a);
}

/* The request leaves its origin's queue (it got a socket, or ends). */
void agent_unqueue(client_req *r)
{
    client_origin *o = r->origin;
    list_remove(&r->link);
    o->nwaiting--;
    r->agent->nqueued--;
    if (!o->nwaiting)
        list_remove(&o->starving_link);
    timeout_disarm(&r->tmo);
    if (r->driving) {
        r->driving->driver = NULL;
        r->driving = NULL;
    }
}

/* How many requests would have to wait if one more came for o now. */
uint32_t agent_queue_excess(const client_origin *o)
{
    const ferry_agent *a = o->agent;
    uint32_t room = o->nidle;
    uint32_t per = a->opt.max_sockets_per_origin - (o->nidle + o->nbusy);
    uint32_t tot = a->max_total > a->total_sockets ? a->max_total - a->total_sockets : 0;
    room += per < tot ? per : tot;
    room += o->nconnecting;
    return o->nwaiting + 1 > room ? o->nwaiting + 1 - room : 0;
}

/* Whether another origin has requests held back by the total budget. */
static bool other_origin_starving(const client_origin *o)
{
    const ferry_agent *a = o->agent;
    for (const list_link *l = a->starving.next; l != &a->starving; l = l->next) {
        const client_origin *s = container_of(l, client_origin, starving_link);
        if (s != o && s->nwaiting)
            return true;
    }
    return false;
}

/* A socket finished its last request (or just connected): give it the next
 * queued request, park it as idle, or close it. */
void agent_conn_available(client_conn *c)
{
    client_origin *o = c->origin;
    ferry_agent *a = c->agent;
    bool reusable = !c->no_reuse && !c->peer_eof &&
                    !(a->opt.max_requests_per_socket && c->served >= a->opt.max_requests_per_socket);
    if (!reusable || a->closing_abort) {
        client_conn_close(c, 0);
        return;
    }
    /* the oldest queued request that does not insist on a fresh socket */
    for (list_link *l = o->waiting.next; l != &o->waiting; l = l->next) {
        client_req *r = container_of(l, client_req, link);
        if (r->force_new && c->served)
            continue;
        agent_unqueue(r);
        client_conn_send(c, r);
        if (a->opt.pipelining > 1 && o->nwaiting && list_empty(&o->kick_link)) {
            list_append(&a->pump, &o->kick_link); /* room for more on this socket */
            agent_kick(a);
        }
        return;
    }
    /* nothing to do here: keep it, unless another origin needs the budget,
     * the pool is full, or the agent is closing */
    if (a->closing || o->nidle >= a->opt.max_idle_per_origin || other_origin_starving(o) ||
        c->idle_ms == 0) {
        a->stats.idle_closed++;
        client_conn_close(c, 0);
        return;
    }
    client_conn_make_idle(c);
}

/* A socket is gone (its handle closed): its budget slot is free. */
void agent_conn_freed(ferry_agent *a, client_origin *o)
{
    a->total_sockets--;
    if (!list_empty(&o->waiting) && list_empty(&o->kick_link))
        list_append(&a->pump, &o->kick_link);
    /* the origin that waited longest for the total budget goes first */
    while (!list_empty(&a->starving)) {
        client_origin *s = container_of(a->starving.next, client_origin, starving_link);
        list_remove(&s->starving_link);
        if (!s->nwaiting)
            continue;
        if (list_empty(&s->kick_link))
            list_append(&a->pump, &s->kick_link);
        break;
    }
    agent_kick(a);
}

/* ---- the kick: dispatch, completions, resumed bodies ---- */

void agent_kick(ferry_agent *a)
{
    if (a->kick_on || a->handles_closing)
        return;
    a->kick_on = true;
    uv_idle_start(&a->kick, on_kick);
    uv_check_start(&a->kick_check, on_kick_check);
}

static void agent_run(ferry_agent *a)
{
    /* completions first: their callbacks often queue the next request */
    while (!list_empty(&a->done)) {
        client_req *r = container_of(a->done.next, client_req, link);
        list_remove(&r->link);
        client_req_deliver_done(r);
    }
    while (!list_empty(&a->resume)) {
        client_conn *c = container_of(a->resume.next, client_conn, resume_link);
        list_remove(&c->resume_link);
        client_conn_process(c);
    }
    while (!list_empty(&a->pump)) {
        client_origin *o = container_of(a->pump.next, client_origin, kick_link);
        list_remove(&o->kick_link);
        o->refs++;
        agent_pump(o);
        agent_origin_unref(o);
    }
    if (list_empty(&a->done) && list_empty(&a->resume) && list_empty(&a->pump)) {
        a->kick_on = false;
        uv_idle_stop(&a->kick);
        uv_check_stop(&a->kick_check);
    }
    agent_maybe_close_done(a);
}

static void on_kick(uv_idle_t *h)
{
    agent_run(h->data);
}

static void on_kick_check(uv_check_t *h)
{
    agent_run(h->data);
}

/* ---- retries ---- */

static void retry_timer_update(ferry_agent *a)
{
    if (list_empty(&a->retry_wait)) {
        uv_timer_stop(&a->retry_timer);
        return;
    }
    client_req *r = container_of(a->retry_wait.next, client_req, link);
    uint64_t now = uv_now(a->loop);
    uv_timer_start(&a->retry_timer, on_retry_timer, r->retry_at > now ? r->retry_at - now : 0, 0);
}

/* Wait delay_ms, then queue again. Backoffs are rare, so the list is kept
 * sorted by a linear insertion; one timer serves it. */
void agent_schedule_retry(client_req *r, uint64_t delay_ms)
{
    ferry_agent *a = r->agent;
    uv_update_time(a->loop);
    agent_schedule_retry_at(r, uv_now(a->loop) + delay_ms);
}

/* Wait until loop time `at`; among equal times, first come first out. */
void agent_schedule_retry_at(client_req *r, uint64_t at)
{
    ferry_agent *a = r->agent;
    r->retry_at = at;
    r->state = RQ_BACKOFF;
    list_link *l = a->retry_wait.prev;
    while (l != &a->retry_wait && container_of(l, client_req, link)->retry_at > r->retry_at)
        l = l->prev;
    list_insert_after(l, &r->link);
    retry_timer_update(a);
}

void agent_cancel_retry(client_req *r)
{
    list_remove(&r->link);
    retry_timer_update(r->agent);
}

static void on_retry_timer(uv_timer_t *t)
{
    ferry_agent *a = t->data;
    uint64_t now = uv_now(a->loop);
    list_link due;
    list_init(&due);
    while (!list_empty(&a->retry_wait)) {
        client_req *r = container_of(a->retry_wait.next, client_req, link);
        if (r->retry_at > now)
            break;
        list_remove(&r->link);
        list_append(&due, &r->link);
    }
    /* the last due first: each goes to the front, so they keep their order */
    while (!list_empty(&due)) {
        client_req *r = container_of(due.prev, client_req, link);
        list_remove(&r->link);
        agent_enqueue(r, true);
    }
    retry_timer_update(a);
}

/* Full jitter (AWS's name): a uniform delay in [0, min(cap, base * 2^n)),
 * so clients that failed together do not come back together. */
uint64_t agent_backoff_ms(ferry_agent *a, uint32_t retry_no)
{
    uint64_t ceil = a->opt.retry_base_ms;
    for (uint32_t i = 0; i < retry_no && ceil < a->opt.retry_max_delay_ms; i++)
        ceil *= 2;
    if (ceil > a->opt.retry_max_delay_ms)
        ceil = a->opt.retry_max_delay_ms;
    if (ceil == 0)
        return 0;
    /* jitter only needs to decorrelate clients, not to be unpredictable */
    a->rng = a->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    if (a->rng_seeded == false) {
        a->rng ^= (uint64_t) uv_hrtime() ^ (uint64_t) (uintptr_t) a;
        a->rng_seeded = true;
    }
    return (a->rng >> 33) % ceil;
}

/* ---- closing ---- */

/* One of the agent's handles has closed; after the last, the close callback. */
static void agent_handle_gone(ferry_agent *a)
{
    if (--a->open_handles == 0 && !a->close_cb_fired) {
        a->close_cb_fired = true;
        a->close_done = true;
        if (a->close_cb)
            a->close_cb(a, a->close_data);
    }
}

static void on_agent_handle_closed(uv_handle_t *h)
{
    agent_handle_gone(h->data);
}

static void on_tlist_closed(timeout_list *l)
{
    ferry_agent *a = l->data;
    free(container_of(l, tlist_node, list));
    agent_handle_gone(a);
}

static void on_dns_closed(dns_cache *c)
{
    agent_handle_gone(container_of(c, ferry_agent, dns));
}

/* Once closing and nothing is left (no request, no socket), close the
 * agent's own handles; the close callback runs when the last is closed. */
void agent_maybe_close_done(ferry_agent *a)
{
    if (!a->closing || a->handles_closing || a->live_requests || a->total_sockets)
        return;
    a->handles_closing = true;
    a->kick_on = false;
    a->open_handles = 4; /* kick, kick_check, retry_timer, dns */
    uv_close((uv_handle_t *) &a->kick, on_agent_handle_closed);
    uv_close((uv_handle_t *) &a->kick_check, on_agent_handle_closed);
    uv_close((uv_handle_t *) &a->retry_timer, on_agent_handle_closed);
    for (tlist_node *t = a->tlists; t; t = t->next)
        a->open_handles++;
    tlist_node *t = a->tlists;
    a->tlists = NULL;
    while (t) {
        tlist_node *next = t->next;
        t->list.data = a;
        timeout_list_close(&t->list, on_tlist_closed);
        t = next;
    }
    dns_cache_close(&a->dns, on_dns_closed);
}

void ferry_agent_close(ferry_agent *a, int abort_active, ferry_agent_close_cb cb, void *data)
{
    if (!a)
        return;
    if (!a->close_cb && cb) {
        a->close_cb = cb;
        a->close_data = data;
    }
    bool first = !a->closing;
    a->closing = true;
    if (abort_active && !a->closing_abort) {
        a->closing_abort = true;
        /* every request ends with FERRY_ECLOSING; their sockets close */
        for (list_link *l = a->origins.next; l != &a->origins;) {
            client_origin *o = container_of(l, client_origin, link);
            o->refs++;
            while (!list_empty(&o->waiting)) {
                client_req *r = container_of(o->waiting.next, client_req, link);
                agent_unqueue(r);
                client_req_complete(r, FERRY_ECLOSING);
            }
            while (!list_empty(&o->busy)) {
                client_conn *c = container_of(o->busy.next, client_conn, link);
                client_conn_close(c, FERRY_ECLOSING);
            }
            l = l->next;
            agent_origin_unref(o);
        }
        while (!list_empty(&a->retry_wait)) {
            client_req *r = container_of(a->retry_wait.next, client_req, link);
            list_remove(&r->link);
            client_req_complete(r, FERRY_ECLOSING);
        }
        retry_timer_update(a);
    }
    if (first || abort_active) {
        for (list_link *l = a->origins.next; l != &a->origins;) {
            client_origin *o = container_of(l, client_origin, link);
            l = l->next;
            o->refs++;
            while (!list_empty(&o->idle)) {
                client_conn *c = container_of(o->idle.next, client_conn, link);
                client_conn_close(c, 0);
            }
            agent_origin_unref(o);
        }
    }
    /* the callback never runs inside this call: the kick decides */
    if (!a->handles_closing) {
        a->kick_on = false;
        agent_kick(a);
    }
}

int ferry_agent_free(ferry_agent *a)
{
    if (!a)
        return 0;
    if (!a->close_done)
        return FERRY_EBUSY;
    agent_url_unref(a->last_url);
    client_req_cache_clear(a);
    agent_fields_clear(a);
    free(a->hdrs);
    if (a->have_jar)
        cookie_jar_free(&a->jar);
    buf_pool_destroy(&a->rbufs);
    free(a);
    return 0;
}

/* ---- stats ---- */

void ferry_agent_stats_get(const ferry_agent *a, ferry_agent_stats *st)
{
    *st = a->stats;
    st->sockets_active = st->sockets_idle = st->queued = 0;
    for (const list_link *l = a->origins.next; l != &a->origins; l = l->next) {
        const client_origin *o = container_of(l, client_origin, link);
        st->sockets_active += o->nbusy;
        st->sockets_idle += o->nidle;
        st->queued += o->nwaiting;
    }
    st->origins = a->norigins;
    st->dns_lookups = a->dns.lookups;
    st->dns_cache_hits = a->dns.hits;
    st->closing = a->closing;
}

int ferry_agent_origin_stats_get(const ferry_agent *a, const char *url,
                                 ferry_agent_origin_stats *st)
{
    memset(st, 0, sizeof(*st));
    if (!url)
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
    for (const list_link *l = a->origins.next; l != &a->origins; l = l->next) {
        const client_origin *o = container_of(l, client_origin, link);
        if (o->key_len == klen && memcmp(o->key, key, klen) == 0) {
            st->active = o->nbusy;
            st->idle = o->nidle;
            st->queued = o->nwaiting;
            st->connections_opened = o->opened;
            st->sockets_reused = o->reused;
            st->requests = o->requests;
            return 0;
        }
    }
    return 0;
}
