/* serve.c — `ferry serve`: the demo and test server, and (with --dir) a
 * static file server.
 *
 * It is a user of the library like any other: it only includes ferry.h. The
 * command runs a ferry_group of --workers loops (one by default), each with
 * its serve_app. Flags map one-to-one onto ferry_server_options (defaults
 * from ferry_server_options_init, so the tool never restates them).
 *
 * The main thread runs a control loop of its own: it watches SIGTERM/SIGINT
 * (a graceful close, then a destroy), SIGHUP (TLS reload) and SIGUSR2 (a
 * zero-downtime restart, restart.c), and ends when the group's close
 * callback says the last loop is done.
 *
 * HTTPS (--tls-*): the flags are kept, and a context is made from them at
 * start and again on each SIGHUP, which hands the new one to every loop's
 * ferry_server_set_tls (open connections keep the old one). Every context
 * shares one set of ticket keys, so sessions resume across reloads — and
 * across restarts, which hand the keys to the new process.
 *
 * The handler answers everything on the loop without blocking it: /slow with
 * a uv_timer, /cpu on the thread pool through ferry_res_offload, bodies
 * through ferry_req_read_body, files (serve_files.c) with uv_fs_* on the pool.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "cmd.h"
#include "ferry.h"
#include "flags.h"
#include "restart.h"
#include "serve.h"

#define CMD "serve"

/* Upper bound for millisecond flags: the library's timeouts stop at 2^32 - 1
 * ms (49.7 days; ferry_server_new refuses more), which is "never" for every
 * practical purpose. */
#define MS_FLAG_MAX   UINT64_C(4294967295)
/* /slow and /cpu: at most a minute, so a stray request cannot pin a thread
 * or hold a shutdown for long. */
#define DEMO_MS_MAX     60000
#define DEMO_MS_MAX_STR "60000"
/* A /slow request checks this often whether its client left (or the server
 * was destroyed), so it ends early instead of holding the loop. */
#define SLOW_POLL_MS  100

static const char hello[] = "hello, world";

/* --tls-sni entries at most: far more than a test server needs. */
#define MAX_SNI 64

/* ---- Flags ----------------------------------------------------------------- */

typedef struct serve_config {
    ferry_server_options opts;
    const char *host;
    int port;
    uint64_t grace_ms;
    const char *dir;
    int quiet;
    int help;
    uint32_t workers;          /* loops; 0 = one per CPU */
    int shared_listener;       /* one socket all workers accept from */
    const char *health_path;   /* NULL: none */
    const char *pid_file;
    int proxy_trusted_given;
    /* HTTPS: files are read at start and again on SIGHUP */
    const char *tls_cert, *tls_key, *tls_client_ca;
    int tls_client_required;
    int tls_timeout_given;
    ferry_tls_cert sni[MAX_SNI]; /* --tls-sni NAME=CERT,KEY: slices of sni_buf */
    char *sni_buf[MAX_SNI];      /* each entry's copy of its argument, cut at '=' and ','
                                    (owner: the config, config_free) */
    size_t nsni;
} serve_config;

/* The tool's own defaults; the server's come from ferry_server_options_init
 * so that they are never restated here. */
static void config_defaults(serve_config *c)
{
    *c = (serve_config){.host = "127.0.0.1",
                        .port = 8080,
                        .grace_ms = 10000,
                        .workers = 1,
                        .health_path = "/healthz"};
    ferry_server_options_init(&c->opts);
}

static void config_free(serve_config *c)
{
    for (size_t i = 0; i < c->nsni; i++)
        free(c->sni_buf[i]);
    c->nsni = 0;
}

/* The defaults printed are the ones in force: ferry_server_options_init's. */
static void usage(FILE *out, const serve_config *d)
{
    const ferry_server_options *o = &d->opts;
    fprintf(out,
            "usage: ferry serve [options]\n"
            "\n"
            "Without --dir: GET/HEAD answer 'hello, world'; a request with a body gets it\n"
            "echoed back; /slow?ms=N, /cpu?ms=N and /status are special (docs/serve.md).\n"
            "\n"
            "options (--flag VALUE or --flag=VALUE; times in milliseconds; [default]):\n"
            "  --host H                  address or host name to listen on (every address\n"
            "                            a name resolves to) [%s]\n"
            "  --port P                  TCP port, 0 = any free one [%d]\n"
            "  --keep-alive-timeout MS   idle time before a keep-alive close, 0 = never [%" PRIu64
            "]\n"
            "  --headers-timeout MS      time to receive a request head, 0 = off [%" PRIu64 "]\n"
            "  --request-timeout MS      time to receive a whole request, 0 = off [%" PRIu64 "]\n"
            "  --idle-timeout MS         socket inactivity while busy, 0 = off [%" PRIu64 "]\n"
            "  --max-connections N       open connections, 0 = no limit but fds [%" PRIu32 "]\n"
            "  --max-requests-per-connection N\n"
            "                            requests per connection, 0 = no limit [%" PRIu32 "]\n"
            "  --max-body BYTES          request body limit, 413 beyond [%" PRIu64 "]\n"
            "  --shutdown-grace MS       after SIGTERM/SIGINT, time left to in-flight requests\n"
            "                            before connections are reset, 0 = forever [%" PRIu64 "]\n"
            "  --drain-delay MS          after SIGTERM/SIGINT, keep serving this long (health\n"
            "                            path 503, Connection: close) before closing [%" PRIu64 "]\n"
            "  --health-path PATH        answers 200, or 503 from the moment a shutdown starts;\n"
            "                            '' = none [%s]\n"
            "  --workers N               event loops (threads), 0 = one per CPU [%" PRIu32 "]\n"
            "  --shared-listener         workers accept from one socket, not one each\n"
            "  --reuse-port              SO_REUSEPORT: other processes may share the port\n"
            "  --pid-file FILE           written by the process that accepts (restarts too)\n"
            "  --proxy-protocol          every connection starts with a PROXY v1/v2 header\n"
            "  --proxy-trusted LIST      with it: only these sources (\"10.0.0.0/8,::1,unix\")\n"
            "  --dir DIR                 serve the files under DIR (GET/HEAD)\n"
            "  --quiet                   no access log on stderr\n"
            "  --help                    show this help\n"
            "\n"
            "HTTPS (docs/tls.md; SIGHUP reloads every file below):\n"
            "  --tls-cert FILE           certificate chain (PEM, leaf first); HTTPS on\n"
            "  --tls-key FILE            its private key [in the --tls-cert file]\n"
            "  --tls-sni NAME=CERT,KEY   another certificate, for clients asking for NAME\n"
            "                            (exact, or *.domain); repeatable\n"
            "  --tls-client-ca FILE      ask clients for a certificate signed by these CAs\n"
            "  --tls-client-required     refuse clients without one\n"
            "  --tls-handshake-timeout MS\n"
            "                            time to finish the TLS handshake, 0 = off [%" PRIu64 "]\n"
            "\n"
            "Prints 'listening on http://HOST:PORT' (https:// with --tls-cert) once it\n"
            "accepts. A second signal resets all connections at once. SIGUSR2: restart with\n"
            "no connection lost (a new process takes the sockets; docs/deploy.md). Listening\n"
            "sockets from systemd (LISTEN_FDS) replace --host/--port. Exit status: 0 after\n"
            "a signal-initiated shutdown or a restart, 1 if it cannot start, 2 for bad usage.\n",
            d->host, d->port, o->keep_alive_timeout_ms, o->headers_timeout_ms,
            o->request_timeout_ms, o->idle_timeout_ms, o->max_connections,
            o->max_requests_per_connection, o->max_body_bytes, d->grace_ms, o->drain_delay_ms,
            d->health_path, d->workers, o->tls_handshake_timeout_ms);
}

typedef enum {
    OPT_HOST,
    OPT_PORT,
    OPT_KEEP_ALIVE,
    OPT_HEADERS,
    OPT_REQUEST,
    OPT_IDLE,
    OPT_MAX_CONNECTIONS,
    OPT_MAX_REQUESTS,
    OPT_MAX_BODY,
    OPT_GRACE,
    OPT_DIR,
    OPT_QUIET,
    OPT_HELP,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TLS_SNI,
    OPT_TLS_CLIENT_CA,
    OPT_TLS_CLIENT_REQUIRED,
    OPT_TLS_HANDSHAKE,
    OPT_DRAIN_DELAY,
    OPT_HEALTH_PATH,
    OPT_WORKERS,
    OPT_PID_FILE,
    OPT_PROXY,
    OPT_PROXY_TRUSTED,
    OPT_SHARED_LISTENER,
    OPT_REUSE_PORT,
} opt_id;

/* max: the largest value of a numeric flag; 0 for flags whose value is a
 * string (has_value) or that take none. */
static const struct opt_spec {
    const char *name;
    opt_id id;
    int has_value;
    uint64_t max;
} opt_specs[] = {
    {"--host", OPT_HOST, 1, 0},
    {"--port", OPT_PORT, 1, 65535},
    {"--keep-alive-timeout", OPT_KEEP_ALIVE, 1, MS_FLAG_MAX},
    {"--headers-timeout", OPT_HEADERS, 1, MS_FLAG_MAX},
    {"--request-timeout", OPT_REQUEST, 1, MS_FLAG_MAX},
    {"--idle-timeout", OPT_IDLE, 1, MS_FLAG_MAX},
    {"--max-connections", OPT_MAX_CONNECTIONS, 1, UINT32_MAX},
    {"--max-requests-per-connection", OPT_MAX_REQUESTS, 1, UINT32_MAX},
    {"--max-body", OPT_MAX_BODY, 1, UINT64_MAX},
    {"--shutdown-grace", OPT_GRACE, 1, MS_FLAG_MAX},
    {"--dir", OPT_DIR, 1, 0},
    {"--quiet", OPT_QUIET, 0, 0},
    {"--help", OPT_HELP, 0, 0},
    {"-h", OPT_HELP, 0, 0},
    {"--tls-cert", OPT_TLS_CERT, 1, 0},
    {"--tls-key", OPT_TLS_KEY, 1, 0},
    {"--tls-sni", OPT_TLS_SNI, 1, 0},
    {"--tls-client-ca", OPT_TLS_CLIENT_CA, 1, 0},
    {"--tls-client-required", OPT_TLS_CLIENT_REQUIRED, 0, 0},
    {"--tls-handshake-timeout", OPT_TLS_HANDSHAKE, 1, MS_FLAG_MAX},
    {"--drain-delay", OPT_DRAIN_DELAY, 1, MS_FLAG_MAX},
    {"--health-path", OPT_HEALTH_PATH, 1, 0},
    {"--workers", OPT_WORKERS, 1, 1024},
    {"--pid-file", OPT_PID_FILE, 1, 0},
    {"--proxy-protocol", OPT_PROXY, 0, 0},
    {"--proxy-trusted", OPT_PROXY_TRUSTED, 1, 0},
    {"--shared-listener", OPT_SHARED_LISTENER, 0, 0},
    {"--reuse-port", OPT_REUSE_PORT, 0, 0},
};

/* An IPv4 or IPv6 literal, or what can be a host name: letters, digits, '-',
 * '_' and '.', at most 253 bytes. Whether a name resolves is the library's
 * to say (ferry_server_listen listens on every address it resolves to). */
static int host_ok(const char *h)
{
    unsigned char addr[sizeof(struct in6_addr)];
    if (uv_inet_pton(AF_INET, h, addr) == 0 || uv_inet_pton(AF_INET6, h, addr) == 0)
        return 1;
    size_t n = strlen(h);
    if (n == 0 || n > 253 || h[0] == '.' || h[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = h[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.'))
            return 0;
    }
    return 1;
}

/* --tls-sni NAME=CERT,KEY: NAME up to the first '=', KEY after the last ','
 * (a path may hold '=' or ','; a name never does). The library checks NAME.
 * The three are cut from one copy of val (owner: cfg, freed by config_free). */
static int add_sni(serve_config *cfg, const char *val)
{
    if (cfg->nsni == MAX_SNI)
        return usage_error(CMD, "too many --tls-sni certificates (at most %d)", MAX_SNI);
    char *buf = strdup(val);
    if (!buf)
        return usage_error(CMD, "out of memory");
    char *eq = strchr(buf, '=');
    char *comma = eq ? strrchr(eq + 1, ',') : NULL;
    if (!eq || eq == buf || !comma || comma == eq + 1 || comma[1] == '\0') {
        free(buf);
        return usage_error(CMD, "invalid value '%s' for --tls-sni: expected NAME=CERT,KEY", val);
    }
    *eq = '\0';
    *comma = '\0';
    cfg->sni_buf[cfg->nsni] = buf;
    cfg->sni[cfg->nsni++] = (ferry_tls_cert){.name = buf, .cert_file = eq + 1, .key_file = comma + 1};
    return 0;
}

/* Fill cfg from argv (argv[0] is "serve"). Returns 0, or 2 after printing
 * the one line that says what is wrong. */
static int parse_flags(int argc, char **argv, serve_config *cfg)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-')
            return usage_error(CMD, "unexpected argument '%s'", arg);
        const char *eq = strchr(arg, '=');
        size_t name_len = eq ? (size_t) (eq - arg) : strlen(arg);
        const struct opt_spec *spec = NULL;
        for (size_t k = 0; k < sizeof opt_specs / sizeof opt_specs[0]; k++) {
            if (strlen(opt_specs[k].name) == name_len &&
                memcmp(opt_specs[k].name, arg, name_len) == 0) {
                spec = &opt_specs[k];
                break;
            }
        }
        if (!spec)
            return usage_error(CMD, "unknown option '%s'", arg);

        const char *val = NULL;
        if (!spec->has_value) {
            if (eq)
                return usage_error(CMD, "option '%s' takes no value", spec->name);
        } else if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            return usage_error(CMD, "option '%s' needs a value", spec->name);
        }

        uint64_t n = 0;
        if (val && !spec->max && val[0] == '\0' && spec->id != OPT_HEALTH_PATH)
            return usage_error(CMD, "option '%s' needs a value", spec->name);
        if (spec->max && parse_uint(val, spec->max, &n) < 0)
            return usage_error(CMD,
                               "invalid value '%s' for %s: expected an integer from 0 to %" PRIu64,
                               val, spec->name, spec->max);
        switch (spec->id) {
        case OPT_HOST:
            if (!host_ok(val))
                return usage_error(CMD,
                                   "invalid value '%s' for %s: expected an IPv4 or IPv6 address "
                                   "or a host name",
                                   val, spec->name);
            cfg->host = val;
            break;
        case OPT_PORT: cfg->port = (int) n; break;
        case OPT_KEEP_ALIVE: cfg->opts.keep_alive_timeout_ms = n; break;
        case OPT_HEADERS: cfg->opts.headers_timeout_ms = n; break;
        case OPT_REQUEST: cfg->opts.request_timeout_ms = n; break;
        case OPT_IDLE: cfg->opts.idle_timeout_ms = n; break;
        case OPT_MAX_CONNECTIONS: cfg->opts.max_connections = (uint32_t) n; break;
        case OPT_MAX_REQUESTS: cfg->opts.max_requests_per_connection = (uint32_t) n; break;
        case OPT_MAX_BODY: cfg->opts.max_body_bytes = n; break;
        case OPT_GRACE: cfg->grace_ms = n; break;
        case OPT_DIR: cfg->dir = val; break;
        case OPT_QUIET: cfg->quiet = 1; break;
        case OPT_HELP: cfg->help = 1; break;
        case OPT_TLS_CERT: cfg->tls_cert = val; break;
        case OPT_TLS_KEY: cfg->tls_key = val; break;
        case OPT_TLS_SNI: {
            int rc = add_sni(cfg, val);
            if (rc != 0)
                return rc;
            break;
        }
        case OPT_TLS_CLIENT_CA: cfg->tls_client_ca = val; break;
        case OPT_TLS_CLIENT_REQUIRED: cfg->tls_client_required = 1; break;
        case OPT_TLS_HANDSHAKE:
            cfg->opts.tls_handshake_timeout_ms = n;
            cfg->tls_timeout_given = 1;
            break;
        case OPT_DRAIN_DELAY: cfg->opts.drain_delay_ms = n; break;
        case OPT_HEALTH_PATH:
            if (val[0] && val[0] != '/')
                return usage_error(CMD, "invalid value '%s' for %s: a path starts with '/'", val,
                                   spec->name);
            cfg->health_path = val[0] ? val : NULL;
            break;
        case OPT_WORKERS: cfg->workers = (uint32_t) n; break;
        case OPT_PID_FILE: cfg->pid_file = val; break;
        case OPT_PROXY: cfg->opts.proxy_protocol = 1; break;
        case OPT_PROXY_TRUSTED:
            cfg->opts.proxy_trusted = val;
            cfg->proxy_trusted_given = 1;
            break;
        case OPT_SHARED_LISTENER: cfg->shared_listener = 1; break;
        case OPT_REUSE_PORT: cfg->opts.reuse_port = 1; break;
        }
    }
    return 0;
}

/* Flags that only mean something with others: 0, or 2 after one line. */
static int check_combinations(const serve_config *cfg)
{
    if (cfg->proxy_trusted_given && !cfg->opts.proxy_protocol)
        return usage_error(CMD, "--proxy-trusted needs --proxy-protocol");
    if (cfg->tls_cert)
        return cfg->tls_client_required && !cfg->tls_client_ca
                   ? usage_error(CMD, "--tls-client-required needs --tls-client-ca")
                   : 0;
    const char *alone = cfg->tls_key                 ? "--tls-key"
                        : cfg->nsni                  ? "--tls-sni"
                        : cfg->tls_client_ca         ? "--tls-client-ca"
                        : cfg->tls_client_required   ? "--tls-client-required"
                        : cfg->tls_timeout_given     ? "--tls-handshake-timeout"
                                                     : NULL;
    return alone ? usage_error(CMD, "%s needs --tls-cert", alone) : 0;
}

/* ---- Helpers shared with serve_files.c --------------------------------------- */

int serve_str_eq(ferry_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && (n == 0 || memcmp(s.p, lit, n) == 0);
}

/* Clamp a slice length for printf's %.*s. */
static int pf_len(ferry_str s)
{
    return s.len > 4096 ? 4096 : (int) s.len;
}

void serve_log(const serve_app *app, ferry_req *req, int status, uint64_t body_bytes,
               uint64_t start_ns)
{
    if (app->quiet)
        return;
    char peer[INET6_ADDRSTRLEN + 16] = "-";
    struct sockaddr_storage ss;
    if (ferry_req_peer(req, &ss) == 0) {
        char ip[INET6_ADDRSTRLEN] = "?";
        if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *a = (const struct sockaddr_in *) &ss;
            uv_ip4_name(a, ip, sizeof ip);
            snprintf(peer, sizeof peer, "%s:%u", ip, (unsigned) ntohs(a->sin_port));
        } else if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const struct sockaddr_in6 *) &ss;
            uv_ip6_name(a, ip, sizeof ip);
            snprintf(peer, sizeof peer, "[%s]:%u", ip, (unsigned) ntohs(a->sin6_port));
        }
    }
    /* HTTPS: the version, "resumed" for an abbreviated handshake, and a
     * verified client certificate's subject. */
    char tls[320] = "";
    ferry_tls_info info;
    if (ferry_req_tls(req, &info) == 0)
        snprintf(tls, sizeof tls, " %s%s%s%.256s%s", info.version, info.resumed ? " resumed" : "",
                 info.peer_subject ? " client=\"" : "", info.peer_subject ? info.peer_subject : "",
                 info.peer_subject ? "\"" : "");
    ferry_str method = ferry_req_method(req), target = ferry_req_target(req);
    uint64_t us = (uv_hrtime() - start_ns) / 1000;
    /* a response nobody receives is logged as what happened, not as sent */
    char st[16];
    if (ferry_res_aborted(ferry_req_res(req))) {
        snprintf(st, sizeof st, "aborted");
        body_bytes = 0;
    } else {
        snprintf(st, sizeof st, "%d", status);
    }
    fprintf(stderr, "%s \"%.*s %.*s HTTP/1.%d\" %s %" PRIu64 " %" PRIu64 ".%03" PRIu64 "ms%s\n",
            peer, pf_len(method), method.p, pf_len(target), target.p,
            ferry_req_version_minor(req), st, body_bytes, us / 1000, us % 1000, tls);
}

static int is_head(const ferry_req *req)
{
    return serve_str_eq(ferry_req_method(req), "HEAD");
}

void serve_reply(const serve_app *app, ferry_res *res, uint64_t start_ns, int status,
                 const char *content_type, const char *body, size_t len)
{
    if (!app->quiet) {
        ferry_req *req = ferry_res_req(res);
        serve_log(app, req, status, is_head(req) ? 0 : len, start_ns);
    }
    ferry_res_send(res, status, content_type, body, len);
}

void serve_reply_text(const serve_app *app, ferry_res *res, uint64_t start_ns, int status,
                      const char *msg)
{
    char body[256];
    snprintf(body, sizeof body, "%s\n", msg);
    serve_reply(app, res, start_ns, status, "text/plain", body, strlen(body));
}

/* The ms=N parameter of /slow and /cpu: 0 and the value, or -1 if it is
 * missing, not a plain decimal number or above DEMO_MS_MAX. */
static int query_ms(const ferry_req *req, uint64_t *ms)
{
    ferry_str q = ferry_req_query(req);
    if (!q.p)
        return -1;
    const char *p = q.p, *end = q.p + q.len;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t) (end - p));
        const char *stop = amp ? amp : end;
        if (stop - p > 3 && memcmp(p, "ms=", 3) == 0) {
            char digits[24];
            size_t n = (size_t) (stop - p - 3);
            if (n >= sizeof digits)
                return -1;
            memcpy(digits, p + 3, n);
            digits[n] = '\0';
            return parse_uint(digits, DEMO_MS_MAX, ms);
        }
        p = amp ? amp + 1 : NULL;
    }
    return -1;
}

static void reply_bad_ms(const serve_app *app, ferry_res *res, uint64_t start_ns)
{
    serve_reply_text(app, res, start_ns, 400, "ms must be an integer from 0 to " DEMO_MS_MAX_STR);
}

/* ---- /slow?ms=N: answer later, from a timer ------------------------------------ */

typedef struct slow_req {
    uv_timer_t timer;
    const serve_app *app;
    ferry_res *res;
    uint64_t start_ns;
    uint64_t ms;
    uint64_t deadline_ns; /* uv_hrtime() at which to answer */
} slow_req;

static void slow_closed(uv_handle_t *h)
{
    free(h->data);
}

static void slow_tick(uv_timer_t *t);

/* Wait until the deadline, never less: the loop's clock is cached and
 * coarse (a timer can fire a little early in real time), so the real clock
 * decides and a wake-up before the deadline sleeps again for the rest. */
static void slow_arm(slow_req *sr)
{
    uint64_t now = uv_hrtime();
    uint64_t left = sr->deadline_ns > now ? (sr->deadline_ns - now + 999999) / 1000000 : 0;
    uv_timer_start(&sr->timer, slow_tick, left < SLOW_POLL_MS ? left : SLOW_POLL_MS, 0);
}

/* Fires every SLOW_POLL_MS at most: answers at the deadline, or earlier when
 * the response was aborted (the client left, or the server was destroyed),
 * so a dead request does not keep the loop alive for up to a minute. */
static void slow_tick(uv_timer_t *t)
{
    slow_req *sr = t->data;
    if (uv_hrtime() < sr->deadline_ns && !ferry_res_aborted(sr->res)) {
        slow_arm(sr);
        return;
    }
    char body[64];
    int n = snprintf(body, sizeof body, "waited %" PRIu64 " ms\n", sr->ms);
    serve_reply(sr->app, sr->res, sr->start_ns, 200, "text/plain", body, (size_t) n);
    uv_close((uv_handle_t *) t, slow_closed);
}

static void serve_slow(const serve_app *app, ferry_req *req, ferry_res *res, uint64_t start_ns)
{
    uint64_t ms;
    if (query_ms(req, &ms) < 0) {
        reply_bad_ms(app, res, start_ns);
        return;
    }
    slow_req *sr = malloc(sizeof *sr);
    if (!sr || uv_timer_init(app->loop, &sr->timer) != 0) {
        free(sr);
        serve_reply_text(app, res, start_ns, 500, "out of memory");
        return;
    }
    sr->timer.data = sr;
    sr->app = app;
    sr->res = res;
    sr->start_ns = start_ns;
    sr->ms = ms;
    sr->deadline_ns = uv_hrtime() + ms * 1000000;
    slow_arm(sr);
}

/* ---- /cpu?ms=N: burn CPU on the thread pool ------------------------------------- */

typedef struct cpu_req {
    const serve_app *app;
    uint64_t start_ns;
    uint64_t ms;
    atomic_bool stop; /* set on the loop when the response is lost; read by the burn */
} cpu_req;

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

/* On a pool thread: spin until this thread has used ms of CPU (wall time
 * where the thread CPU clock is missing): real work, as a heavy handler's
 * would be, not a sleep. */
static void cpu_burn(void *data)
{
    cpu_req *cr = data;
    struct timespec probe;
    clockid_t id = clock_gettime(CLOCK_THREAD_CPUTIME_ID, &probe) == 0 ? CLOCK_THREAD_CPUTIME_ID
                                                                         : CLOCK_MONOTONIC;
    uint64_t until = clock_ns(id) + cr->ms * 1000000u;
    volatile uint64_t sink = 0;
    /* a lost response stops the work within ~10000 iterations (microseconds):
     * a destroy waits for running work, so it must not run on for nobody */
    while (clock_ns(id) < until && !atomic_load_explicit(&cr->stop, memory_order_relaxed))
        for (int i = 0; i < 10000; i++)
            sink = sink + (uint64_t) i;
}

static void cpu_abort(ferry_res *res, int err, void *data)
{
    (void) res;
    (void) err;
    atomic_store(&((cpu_req *) data)->stop, true);
}

static void cpu_done(ferry_res *res, int status, void *data)
{
    cpu_req *cr = data;
    if (status == 0) {
        char body[64];
        int n = snprintf(body, sizeof body, "burned %" PRIu64 " ms of CPU\n", cr->ms);
        serve_reply(cr->app, res, cr->start_ns, 200, "text/plain", body, (size_t) n);
    } else {
        serve_reply_text(cr->app, res, cr->start_ns, 503, ferry_strerror(status));
    }
    free(cr);
}

static void serve_cpu(const serve_app *app, ferry_req *req, ferry_res *res, uint64_t start_ns)
{
    uint64_t ms;
    if (query_ms(req, &ms) < 0) {
        reply_bad_ms(app, res, start_ns);
        return;
    }
    cpu_req *cr = malloc(sizeof *cr);
    if (!cr) {
        serve_reply_text(app, res, start_ns, 500, "out of memory");
        return;
    }
    cr->app = app;
    cr->start_ns = start_ns;
    cr->ms = ms;
    atomic_init(&cr->stop, false);
    ferry_res_on_abort(res, cpu_abort, cr);
    int rc = ferry_res_offload(res, cpu_burn, cpu_done, cr);
    if (rc < 0) {
        ferry_res_on_abort(res, NULL, NULL);
        free(cr);
        serve_reply_text(app, res, start_ns, 503, ferry_strerror(rc));
    }
}

/* ---- /status: the server's stats as one JSON object ----------------------------- */

#define STATS_FIELDS(XX)                                                                           \
    XX(connections_active)                                                                         \
    XX(connections_idle)                                                                           \
    XX(connections_accepted)                                                                       \
    XX(requests)                                                                                   \
    XX(bytes_in)                                                                                   \
    XX(bytes_out)                                                                                  \
    XX(timeouts_headers)                                                                           \
    XX(timeouts_request)                                                                           \
    XX(timeouts_keep_alive)                                                                        \
    XX(timeouts_idle)                                                                              \
    XX(errors_400)                                                                                 \
    XX(errors_408)                                                                                 \
    XX(errors_413)                                                                                 \
    XX(errors_414)                                                                                 \
    XX(errors_417)                                                                                 \
    XX(errors_431)                                                                                 \
    XX(errors_501)                                                                                 \
    XX(errors_505)                                                                                 \
    XX(accept_pauses_emfile)                                                                       \
    XX(accept_pauses_max_connections)                                                              \
    XX(tls_handshakes)                                                                             \
    XX(tls_resumed)                                                                                \
    XX(tls_handshake_timeouts)                                                                     \
    XX(connections_shed_emfile)                                                                    \
    XX(proxy_errors)                                                                               \
    XX(proxy_rejected)

static void serve_status(const serve_app *app, ferry_res *res, uint64_t start_ns)
{
    ferry_server_stats st;
    ferry_group_stats_get(app->group, &st); /* every loop's: this one's now, others' <100 ms old */
    char body[2048];
    size_t n = 0;
#define STATS_JSON_(f)                                                                             \
    n += (size_t) snprintf(body + n, sizeof body - n, "%s\"" #f "\":%" PRIu64, n ? "," : "{",     \
                           st.f);
    STATS_FIELDS(STATS_JSON_)
#undef STATS_JSON_
    n += (size_t) snprintf(body + n, sizeof body - n,
                           ",\"closing\":%s,\"draining\":%s,\"workers\":%" PRIu32 "}\n",
                           st.closing ? "true" : "false", st.draining ? "true" : "false",
                           ferry_group_loops(app->group));
    serve_reply(app, res, start_ns, 200, "application/json", body, n);
}

/* ---- The demo handler: hello, echo, 501 ----------------------------------------- */

typedef struct echo_req {
    const serve_app *app;
    uint64_t start_ns;
} echo_req;

/* A body is coming when Content-Length is above zero or any Transfer-Encoding
 * is present (the parser has already rejected the two together). */
static int has_body(const ferry_req *req)
{
    if (ferry_req_header(req, "Transfer-Encoding").p)
        return 1;
    ferry_str cl = ferry_req_header(req, "Content-Length");
    for (size_t i = 0; i < cl.len; i++)
        if (cl.p[i] != '0')
            return 1;
    return 0;
}

static void echo_body(ferry_req *req, int status, const char *body, size_t len, void *data)
{
    echo_req *er = data;
    ferry_res *res = ferry_req_res(req);
    if (status < 0) {
        /* Too big, bad chunked framing, or the client left: the response must
         * still be ended; ferry_err_http_status names the right status. */
        int code = ferry_err_http_status(status);
        serve_reply_text(er->app, res, er->start_ns, code ? code : 400, ferry_strerror(status));
        free(er);
        return;
    }
    /* Headers are slices; ferry_res_send wants a C string. */
    ferry_str ct = ferry_req_header(req, "Content-Type");
    char *type = NULL;
    if (ct.p && (type = malloc(ct.len + 1)) != NULL) {
        memcpy(type, ct.p, ct.len);
        type[ct.len] = '\0';
    }
    serve_reply(er->app, res, er->start_ns, 200, type ? type : "application/octet-stream", body,
                len);
    free(type);
    free(er);
}

static void serve_echo(const serve_app *app, ferry_req *req, ferry_res *res, uint64_t start_ns)
{
    echo_req *er = malloc(sizeof *er);
    if (!er) {
        serve_reply_text(app, res, start_ns, 500, "out of memory");
        return;
    }
    er->app = app;
    er->start_ns = start_ns;
    /* 0: the server's max_body_bytes (--max-body). */
    int rc = ferry_req_read_body(req, 0, echo_body, er);
    if (rc < 0) {
        free(er);
        serve_reply_text(app, res, start_ns, 500, ferry_strerror(rc));
    }
}

/* The router. Special paths answer GET and HEAD only; any other method
 * there follows the general rules (POST /status echoes like any POST). With
 * --dir, GET and HEAD go to the files and other methods get 501. */
static void on_request(ferry_req *req, ferry_res *res, void *data)
{
    const serve_app *app = data;
    uint64_t start_ns = app->quiet ? 0 : uv_hrtime();
    ferry_str method = ferry_req_method(req);
    if (serve_str_eq(method, "GET") || serve_str_eq(method, "HEAD")) {
        ferry_str path = ferry_req_path(req);
        if (app->health_path && serve_str_eq(path, app->health_path)) {
            /* readiness: a balancer stops sending once it sees the 503 */
            int draining = ferry_server_draining(app->server);
            serve_reply_text(app, res, start_ns, draining ? 503 : 200, draining ? "draining" : "ok");
        } else if (serve_str_eq(path, "/slow"))
            serve_slow(app, req, res, start_ns);
        else if (serve_str_eq(path, "/cpu"))
            serve_cpu(app, req, res, start_ns);
        else if (serve_str_eq(path, "/status"))
            serve_status(app, res, start_ns);
        else if (app->root)
            serve_files(app, req, res, start_ns);
        else
            serve_reply(app, res, start_ns, 200, "text/plain", hello, sizeof hello - 1);
        return;
    }
    if (!app->root && (has_body(req) || serve_str_eq(method, "POST") ||
                       serve_str_eq(method, "PUT") || serve_str_eq(method, "PATCH"))) {
        serve_echo(app, req, res, start_ns);
        return;
    }
    serve_reply_text(app, res, start_ns, 501, "not implemented");
}

/* ---- The command ------------------------------------------------------------------ */

static void count_handle(uv_handle_t *h, void *arg)
{
    (void) h;
    ++*(int *) arg;
}

/* Let close callbacks started by ferry_server_free run, then close the loop.
 * A handle still open here is a leak somewhere: say so and fail. */
static int close_loop(uv_loop_t *loop)
{
    for (int i = 0; i < 16 && uv_run(loop, UV_RUN_NOWAIT) != 0; i++)
        ;
    int rc = uv_loop_close(loop);
    if (rc != 0) {
        int open = 0;
        uv_walk(loop, count_handle, &open);
        fprintf(stderr, "ferry serve: %d libuv handle(s) still open at exit\n", open);
        return 1;
    }
    return 0;
}

/* ---- HTTPS: the context, made again on SIGHUP ---------------------------------------- */

/* A context from the --tls-* flags; *out's owner: the caller. Returns 0 or
 * ferry_tls_context_new's code (ferry_tls_error_detail says why). */
static int tls_context(const serve_config *c, ferry_tls_ticket_keys *keys, ferry_tls_context **out)
{
    ferry_tls_options o;
    ferry_tls_options_init(&o);
    o.cert.cert_file = c->tls_cert;
    o.cert.key_file = c->tls_key; /* NULL: in the certificate's file */
    o.sni_certs = c->sni;
    o.sni_cert_count = c->nsni;
    o.ticket_keys = keys;
    if (c->tls_client_ca) {
        o.client_cert =
            c->tls_client_required ? FERRY_TLS_CLIENT_CERT_REQUIRE : FERRY_TLS_CLIENT_CERT_REQUEST;
        o.client_ca_file = c->tls_client_ca;
    }
    return ferry_tls_context_new(&o, out);
}

/* What failed, for a one-line message: the library's detail names the file
 * and OpenSSL's reason; the code's message when it has none. */
static const char *tls_why(int rc)
{
    const char *d = ferry_tls_error_detail();
    return d[0] ? d : ferry_strerror(rc);
}

/* ---- The control loop: signals, reloads, restarts ---------------------------------------- */

/* A restart drains at least this long: every kept-alive client's next
 * request is answered with Connection: close (and it reconnects to the new
 * process); what stayed silent that long is closed. */
#define RESTART_DRAIN_MS 500
/* The new process must accept within this, or the old one keeps serving. */
#define RESTART_READY_MS 15000

typedef struct control {
    const serve_config *cfg;
    ferry_group *group;
    uv_loop_t loop;
    uv_signal_t sig_term, sig_int, sig_hup, sig_usr2;
    uv_async_t group_done;      /* the group's close callback, from a loop thread */
    ferry_tls_ticket_keys *keys; /* TLS: every context's (owner: serve_run) */
    int signals;                /* SIGTERM/SIGINT seen */
    bool restarting, restarted, closing;
} control;

static void on_control_closed(uv_handle_t *h)
{
    (void) h;
}

/* On the last loop's thread: the group is done; wake the control loop. */
static void on_group_closed(ferry_group *g, void *data)
{
    (void) g;
    uv_async_send(&((control *) data)->group_done);
}

static void on_group_done(uv_async_t *a)
{
    control *c = a->data;
    uv_handle_t *hs[] = {(uv_handle_t *) &c->sig_term, (uv_handle_t *) &c->sig_int,
                         (uv_handle_t *) &c->sig_hup, (uv_handle_t *) &c->sig_usr2,
                         (uv_handle_t *) &c->group_done};
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++)
        uv_close(hs[i], on_control_closed);
}

static void on_term(uv_signal_t *h, int signum)
{
    (void) signum;
    control *c = h->data;
    if (++c->signals == 1) {
        c->closing = true;
        ferry_group_close(c->group, c->cfg->grace_ms, on_group_closed, c);
    } else {
        ferry_group_destroy(c->group); /* the second: reset everything now */
    }
}

/* SIGHUP, on each loop: its server takes the new context. */
static void set_tls_on_loop(ferry_server *s, int status, void *data)
{
    ferry_tls_context *ctx = data;
    if (status == 0)
        ferry_server_set_tls(s, ctx); /* takes its own reference */
    ferry_tls_context_free(ctx);     /* the post's */
}

/* SIGHUP: read every certificate file again. New handshakes get the new
 * context; open connections keep theirs; a failure keeps the old one. */
static void on_hup(uv_signal_t *h, int signum)
{
    (void) signum;
    control *c = h->data;
    if (!c->cfg->tls_cert)
        return;
    ferry_tls_context *ctx;
    int rc = tls_context(c->cfg, c->keys, &ctx);
    if (rc < 0) {
        fprintf(stderr, "ferry serve: SIGHUP: reload failed, keeping the old certificates: %s\n",
                tls_why(rc));
        return;
    }
    for (uint32_t i = 0; i < ferry_group_loops(c->group); i++)
        if (ferry_group_post(c->group, i, set_tls_on_loop, ferry_tls_context_ref(ctx)) < 0)
            ferry_tls_context_free(ctx); /* that loop has ended */
    ferry_tls_context_free(ctx);
    fprintf(stderr, "ferry serve: SIGHUP: TLS certificates reloaded\n");
}

static void on_restart_done(int status, const char *why, void *data)
{
    control *c = data;
    c->restarting = false;
    if (status < 0) {
        /* the sockets are ours alone again: a later SIGTERM must drain their backlog */
        ferry_group_listeners_reclaim(c->group);
        fprintf(stderr, "ferry serve: SIGUSR2: restart failed, still serving: %s\n", why);
        return;
    }
    /* The new process accepts: drain and go. It wrote the pid file. */
    fprintf(stderr, "ferry serve: SIGUSR2: the new process accepts; draining and exiting\n");
    c->restarted = c->closing = true;
    uint64_t drain = c->cfg->opts.drain_delay_ms > RESTART_DRAIN_MS ? c->cfg->opts.drain_delay_ms
                                                                    : RESTART_DRAIN_MS;
    ferry_group_drain(c->group, drain, c->cfg->grace_ms, on_group_closed, c);
}

/* SIGUSR2: start the new process with our sockets and ticket keys. */
static void on_usr2(uv_signal_t *h, int signum)
{
    (void) signum;
    control *c = h->data;
    if (c->restarting || c->closing) {
        fprintf(stderr, "ferry serve: SIGUSR2: %s\n",
                c->restarting ? "a restart is already under way" : "shutting down");
        return;
    }
    int fds[128];
    int n = ferry_group_listener_fds(c->group, fds, 128);
    if (n <= 0 || n > 128) {
        fprintf(stderr, "ferry serve: SIGUSR2: no listening sockets to hand on\n");
        return;
    }
    int rc = restart_spawn(&c->loop, fds, n, c->keys, RESTART_READY_MS, on_restart_done, c);
    if (rc < 0) {
        ferry_group_listeners_reclaim(c->group);
        fprintf(stderr, "ferry serve: SIGUSR2: cannot start the new process: %s\n",
                uv_strerror(rc));
        return;
    }
    c->restarting = true;
    fprintf(stderr, "ferry serve: SIGUSR2: starting a new process\n");
}

/* ---- One loop of the group ---------------------------------------------------------------- */

typedef struct serve_loops {
    const serve_app *base; /* what every loop's app starts as */
    serve_app *apps;       /* one per loop (owner: serve_run); they outlive the loops */
    ferry_group *group;
} serve_loops;

static int loop_start(ferry_server *s, uint32_t index, void *data)
{
    serve_loops *sl = data;
    serve_app *app = &sl->apps[index];
    *app = *sl->base;
    app->loop = ferry_server_loop(s);
    app->server = s;
    app->group = sl->group;
    ferry_server_set_data(s, app);
    return 0;
}

/* ---- The server's life ------------------------------------------------------------------ */

/* "listening on http://HOST:PORT", IPv6 hosts in brackets, as in a URL. */
static void print_listening(ferry_group *g, const char *host, int tls)
{
    int v6 = strchr(host, ':') != NULL;
    printf("listening on %s://%s%s%s:%d\n", tls ? "https" : "http", v6 ? "[" : "", host,
           v6 ? "]" : "", ferry_group_port(g));
    fflush(stdout);
}

/* Listen: on sockets handed to us (a restart's, systemd's), else on
 * --host/--port. *host: what to print, --host or the first adopted
 * socket's address (in name, INET6_ADDRSTRLEN bytes). On failure, say why. */
static int group_listen(ferry_group *g, const serve_config *cfg, const char **host, char *name)
{
    const char *source;
    int n = restart_inherited_fds(&source);
    *host = cfg->host;
    if (n > 0) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        if (getsockname(3, (struct sockaddr *) &ss, &len) == 0) {
            if (ss.ss_family == AF_INET && uv_ip4_name((struct sockaddr_in *) &ss, name,
                                                       INET6_ADDRSTRLEN) == 0)
                *host = name;
            else if (ss.ss_family == AF_INET6 &&
                     uv_ip6_name((struct sockaddr_in6 *) &ss, name, INET6_ADDRSTRLEN) == 0)
                *host = name;
        }
        for (int i = 0; i < n; i++) {
            int rc = ferry_group_listen_fd(g, 3 + i);
            if (rc < 0) {
                fprintf(stderr, "ferry serve: fd %d from %s is not a listening socket: %s\n",
                        3 + i, source, ferry_strerror(rc));
                for (int k = i + 1; k < n; k++)
                    close(3 + k);
                return rc;
            }
        }
        return 0;
    }
    int rc = ferry_group_listen(g, cfg->host, cfg->port);
    if (rc < 0)
        fprintf(stderr, "ferry serve: cannot listen on %s port %d: %s\n", cfg->host, cfg->port,
                ferry_strerror(rc));
    return rc;
}

/* The whole life: the group on its threads, the control loop on this one.
 * Returns the exit status. With TLS it owns the ticket keys every context
 * shares, and its reference on the first context. */
static int serve_run(const serve_config *cfg, serve_app *base)
{
    control c = {.cfg = cfg};
    int rc = uv_loop_init(&c.loop);
    if (rc != 0) {
        fprintf(stderr, "ferry serve: cannot start the event loop: %s\n", uv_strerror(rc));
        return 1;
    }
    ferry_tls_context *ctx = NULL;
    serve_loops sl = {.base = base};
    int status = 1;
    if (cfg->tls_cert) {
        /* hourly rotation and a ticket's 300 s life: the contexts' defaults;
         * a restart's keys replace the new ones, so its clients resume */
        rc = ferry_tls_ticket_keys_new(3600, 300, &c.keys);
        if (rc == 0 && restart_inherited_ticket_keys(c.keys) < 0)
            fprintf(stderr, "ferry serve: the old process's ticket keys did not import\n");
        if (rc == 0)
            rc = tls_context(cfg, c.keys, &ctx);
        if (rc < 0) {
            fprintf(stderr, "ferry serve: cannot load the TLS certificates: %s\n", tls_why(rc));
            goto out;
        }
    }
    ferry_group_options go;
    ferry_group_options_init(&go);
    go.loops = cfg->workers;
    go.shared_listener = cfg->shared_listener;
    go.on_loop_start = loop_start;
    ferry_server_options o = cfg->opts;
    o.tls = ctx;
    rc = ferry_group_new(&go, &o, on_request, &sl, &c.group);
    if (rc < 0) {
        fprintf(stderr, "ferry serve: cannot create the server: %s\n", ferry_strerror(rc));
        goto out;
    }
    sl.group = c.group;
    sl.apps = calloc(ferry_group_loops(c.group), sizeof *sl.apps);
    const char *host;
    char name[INET6_ADDRSTRLEN];
    if (!sl.apps || group_listen(c.group, cfg, &host, name) < 0)
        goto out;
    /* Signals are watched before the group accepts: a script may send one as
     * soon as it reads the listening line. */
    uv_signal_t *sigs[] = {&c.sig_term, &c.sig_int, &c.sig_hup, &c.sig_usr2};
    uv_signal_cb cbs[] = {on_term, on_term, on_hup, on_usr2};
    int nums[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR2};
    for (int i = 0; i < 4; i++) {
        uv_signal_init(&c.loop, sigs[i]);
        sigs[i]->data = &c;
        uv_signal_start(sigs[i], cbs[i], nums[i]);
    }
    uv_async_init(&c.loop, &c.group_done, on_group_done);
    c.group_done.data = &c;
    rc = ferry_group_start(c.group);
    if (rc < 0) {
        fprintf(stderr, "ferry serve: cannot start: %s\n", ferry_strerror(rc));
        on_group_done(&c.group_done);
        uv_run(&c.loop, UV_RUN_DEFAULT);
        goto out;
    }
    print_listening(c.group, host, cfg->tls_cert != NULL);
    restart_ready(cfg->pid_file); /* we accept: the pid file names us; an old process may go */
    uv_run(&c.loop, UV_RUN_DEFAULT); /* until the group's close callback */
    rc = ferry_group_wait(c.group);
    status = 0;
    if (rc < 0) {
        fprintf(stderr, "ferry serve: a loop ended with handles open: %s\n", ferry_strerror(rc));
        status = 1;
    }
    if (!c.restarted)
        restart_forget_pid_file(cfg->pid_file);
out:
    if (c.group && ferry_group_free(c.group) < 0)
        status = 1; /* started and not waited for: cannot happen */
    free(sl.apps);
    ferry_tls_context_free(ctx);
    ferry_tls_ticket_keys_free(c.keys);
    if (close_loop(&c.loop) != 0)
        status = 1;
    return status;
}

int cmd_serve(int argc, char **argv)
{
    serve_config cfg;
    config_defaults(&cfg);
    int rc = parse_flags(argc, argv, &cfg);
    if (rc == 0 && cfg.help) {
        serve_config defaults; /* not cfg: "--port 9 --help" still shows 8080 */
        config_defaults(&defaults);
        usage(stdout, &defaults);
        config_free(&cfg);
        return 0;
    }
    if (rc == 0)
        rc = check_combinations(&cfg);
    if (rc != 0) {
        config_free(&cfg);
        return rc;
    }

    serve_app app = {.quiet = cfg.quiet, .health_path = cfg.health_path};
    char *root = NULL;
    if (cfg.dir) {
        struct stat st;
        root = realpath(cfg.dir, NULL);
        if (!root || stat(root, &st) != 0 || !S_ISDIR(st.st_mode)) {
            fprintf(stderr, "ferry serve: --dir '%s': %s\n", cfg.dir,
                    root ? "not a directory" : strerror(errno));
            free(root);
            config_free(&cfg);
            return 2;
        }
        app.root = root;
        app.root_len = strlen(root);
    }

    /* The library never raises SIGPIPE (its sockets send with MSG_NOSIGNAL);
     * this is for the access log: a closed stdout pipe must not end the server. */
    signal(SIGPIPE, SIG_IGN);
    int status = serve_run(&cfg, &app);
    free(root);
    config_free(&cfg);
    return status;
}
