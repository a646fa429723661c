/* fetch.c — `ferry fetch`: fetch URLs through one agent, CONC at a time,
 * and summarise what happened (docs/fetch.md).
 *
 * The command owns one loop and one ferry_agent. Each URL is fetched -n
 * times, round-robin over the URLs; at most CONC requests are in flight (the
 * agent may open up to --max-sockets sockets per origin, CONC by default, and
 * queues the rest). Without -o, responses go through ferry_request with no
 * body callback, so the agent drains bodies without buffering them; with -o
 * they go through ferry_fetch and each body is written whole. Latency is from
 * the ferry_request call to the end of the body, retries and queueing included.
 * Connection and retry counts come from ferry_agent_stats_get.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd.h"
#include "ferry.h"
#include "flags.h"
#include "report.h"

#define CMD           "fetch"
#define MAX_HEADERS   64
#define MS_FLAG_MAX   UINT64_C(31536000000) /* a year: "never" in practice */
#define PROGRESS_MS   200

typedef enum { OUT_NONE, OUT_STDOUT, OUT_FILE, OUT_DIR } out_mode;

typedef struct fetch_config {
    uint64_t per_url;           /* -n */
    uint64_t conc;              /* -c */
    const char *method;         /* -X, or NULL: GET, POST with a body */
    ferry_header headers[MAX_HEADERS];
    size_t nheaders;
    const char *content_type;   /* from -H Content-Type, --form, -d */
    const char *data;           /* -d */
    const char *data_file;      /* --data-file */
    const char **form;          /* --form k=v, split into key, value pairs */
    size_t nform;               /* strings in form (2 per pair) */
    uint64_t timeout_ms;        /* --timeout: total_timeout_ms; 0 = none */
    uint64_t connect_timeout_ms;
    uint64_t retries;
    uint64_t max_redirects;
    uint64_t max_sockets;       /* 0: conc */
    const char *out;            /* -o */
    const char *urls_file;      /* -i */
    int cookies, json, help;
    tls_flags tls;              /* --cacert, -k, --cert, --key */
    const char **urls;
    size_t nurls, urls_cap;
    char **owned;               /* strings to free at exit */
    size_t nowned, owned_cap;
} fetch_config;

typedef struct fetch_app fetch_app;

/* One request in flight; conc of them, reused (no allocation per request). */
typedef struct slot {
    fetch_app *app;
    size_t url;
    uint64_t start_ns;
    int status;
} slot;

struct fetch_app {
    fetch_config *cfg;
    uv_loop_t loop;
    ferry_agent *agent;
    ferry_request_options ropts;
    ferry_request_callbacks cbs;
    slot *slots;
    slot **free_slots;
    size_t nfree;
    uint64_t total, next, inflight;
    run_stats *st;
    uint64_t t_start, t_end;
    ferry_agent_stats astats;
    out_mode out;
    char **out_names; /* DIR: one file name per URL */
    unsigned char *written; /* FILE/DIR: a body was written for that URL */
    int stdout_mid_line;    /* -o -: the last byte written was not '\n' */
    int write_failed;
    int interrupted;
    int finished;
    int tty;
    uv_timer_t progress;
    uv_signal_t sigint, sigterm; /* either stops the run with its summary */
};

/* ---- Flags ------------------------------------------------------------------ */

enum {
    F_N, F_C, F_X, F_H, F_D, F_DATA_FILE, F_FORM, F_TIMEOUT, F_CONNECT_TIMEOUT, F_RETRIES,
    F_MAX_REDIRECTS,
    F_MAX_SOCKETS, F_O, F_I, F_COOKIES, F_JSON, F_HELP, F_HELP_SHORT,
};

static const flag_spec specs[] = {
    {"-n", NULL, F_N, FLAG_UINT, 1, 1000000000},
    {"-c", NULL, F_C, FLAG_UINT, 1, 100000},
    {"-X", NULL, F_X, FLAG_STR, 0, 0},
    {"-H", NULL, F_H, FLAG_STR, 0, 0},
    {"-d", NULL, F_D, FLAG_STR, 0, 0},
    {NULL, "--data-file", F_DATA_FILE, FLAG_STR, 0, 0},
    {NULL, "--form", F_FORM, FLAG_STR, 0, 0},
    {NULL, "--timeout", F_TIMEOUT, FLAG_UINT, 0, MS_FLAG_MAX},
    {NULL, "--connect-timeout", F_CONNECT_TIMEOUT, FLAG_UINT, 1, MS_FLAG_MAX},
    {NULL, "--retries", F_RETRIES, FLAG_UINT, 0, 100},
    {NULL, "--max-redirects", F_MAX_REDIRECTS, FLAG_UINT, 0, 100},
    {NULL, "--max-sockets", F_MAX_SOCKETS, FLAG_UINT, 1, 100000},
    {"-o", NULL, F_O, FLAG_STR, 0, 0},
    {"-i", NULL, F_I, FLAG_STR, 0, 0},
    {NULL, "--cookies", F_COOKIES, FLAG_BOOL, 0, 0},
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
            "usage: ferry fetch [options] URL...\n"
            "\n"
            "Fetch each URL (http:// or https://) -n times through one connection pool, at\n"
            "most CONC at a time, and print a summary (docs/fetch.md).\n"
            "\n"
            "options ([default]; times in milliseconds):\n"
            "  -n N                  requests per URL [1]\n"
            "  -c CONC               requests in flight at most [1: one kept-alive socket]\n"
            "  -X METHOD             request method [GET; POST with a body]\n"
            "  -H 'Name: value'      add a header field (repeatable)\n"
            "  -d DATA               request body [Content-Type: application/x-www-form-urlencoded]\n"
            "  --data-file F         request body from file F [application/octet-stream]\n"
            "  --form k=v            URL-encoded form field (repeatable)\n"
            "  --timeout MS          deadline per request, retries included; 0 = none [0]\n"
            "  --connect-timeout MS  DNS + TCP connect, per attempt [the agent's: 10000]\n"
            "  --retries N           retries of idempotent requests [the agent's: 2]\n"
            "  --max-redirects N     follow up to N redirects (301/302/303/307/308) [0]\n"
            "  --max-sockets N       sockets per origin [CONC]\n"
            "  -o FILE|DIR|-         write bodies: to FILE (one URL), one file per URL in DIR,\n"
            "                        or all to stdout [bodies are read and dropped]\n"
            "  -i FILE               read more URLs from FILE, one per line ('-': stdin)\n"
            "  --cookies             keep a cookie jar across the requests\n"
            "  --cacert FILE         trust the CAs in FILE (PEM) instead of the system's\n"
            "  -k, --insecure        DANGEROUS: accept any server certificate, for any name\n"
            "  --cert FILE           client certificate chain (PEM), for servers that ask\n"
            "  --key FILE            its private key [in the --cert file]\n"
            "  --json                print the summary as one JSON object on stdout's last line\n"
            "  --help                show this help\n"
            "\n"
            "Exit status: 0 if every request got a status below 400, 1 if any failed,\n"
            "2 for bad usage.\n");
}

static int keep(fetch_config *c, char *s)
{
    if (c->nowned == c->owned_cap) {
        size_t cap = c->owned_cap ? c->owned_cap * 2 : 16;
        char **p = realloc(c->owned, cap * sizeof *p);
        if (!p) {
            free(s);
            return -1;
        }
        c->owned = p;
        c->owned_cap = cap;
    }
    c->owned[c->nowned++] = s;
    return 0;
}

static int add_url(fetch_config *c, const char *url)
{
    if (flag_url(CMD, url) != 0)
        return 2;
    if (c->nurls == c->urls_cap) {
        size_t cap = c->urls_cap ? c->urls_cap * 2 : 8;
        const char **p = realloc(c->urls, cap * sizeof *p);
        if (!p)
            return usage_error(CMD, "out of memory");
        c->urls = p;
        c->urls_cap = cap;
    }
    c->urls[c->nurls++] = url;
    return 0;
}

/* -H: Content-Type becomes the body's type (so -d cannot add a second one);
 * other fields are slices into the argument itself (argv outlives the run). */
static int add_header(fetch_config *c, const char *arg)
{
    ferry_header h;
    int rc = flag_header(CMD, arg, &h);
    if (rc != 0)
        return rc;
    if (h.name.len == 12 && strncasecmp(h.name.p, "content-type", 12) == 0) {
        char *ct = strndup(h.value.p, h.value.len);
        if (!ct || keep(c, ct) < 0)
            return usage_error(CMD, "out of memory");
        c->content_type = ct;
        return 0;
    }
    if (c->nheaders == MAX_HEADERS)
        return usage_error(CMD, "too many -H headers (at most %d)", MAX_HEADERS);
    c->headers[c->nheaders++] = h;
    return 0;
}

static int on_flag(void *ctx, const flag_spec *spec, const flag_value *v)
{
    fetch_config *c = ctx;
    if (tls_flag(&c->tls, spec, v))
        return 0;
    switch (spec->id) {
    case F_N: c->per_url = v->u; break;
    case F_C: c->conc = v->u; break;
    case F_X:
        if (flag_method(CMD, v->str) != 0)
            return 2;
        c->method = v->str;
        break;
    case F_H: return add_header(c, v->str);
    case F_D:
        if (c->data_file || c->nform)
            return usage_error(CMD, "-d, --data-file and --form exclude each other");
        c->data = v->str;
        break;
    case F_DATA_FILE:
        if (c->data || c->nform)
            return usage_error(CMD, "-d, --data-file and --form exclude each other");
        c->data_file = v->str;
        break;
    case F_FORM: {
        if (c->data || c->data_file)
            return usage_error(CMD, "-d, --data-file and --form exclude each other");
        const char *eq = strchr(v->str, '=');
        if (!eq || eq == v->str)
            return usage_error(CMD, "invalid --form '%s': expected key=value", v->str);
        char *key = strndup(v->str, (size_t) (eq - v->str));
        const char **p = realloc(c->form, (c->nform + 2) * sizeof *p);
        if (!key || keep(c, key) < 0 || !p)
            return usage_error(CMD, "out of memory");
        c->form = p;
        c->form[c->nform++] = key;
        c->form[c->nform++] = eq + 1;
        break;
    }
    case F_TIMEOUT: c->timeout_ms = v->u; break;
    case F_CONNECT_TIMEOUT: c->connect_timeout_ms = v->u; break;
    case F_RETRIES: c->retries = v->u; break;
    case F_MAX_REDIRECTS: c->max_redirects = v->u; break;
    case F_MAX_SOCKETS: c->max_sockets = v->u; break;
    case F_O:
        if (!v->str[0])
            return usage_error(CMD, "option '-o' needs a file, a directory or '-'");
        c->out = v->str;
        break;
    case F_I: c->urls_file = v->str; break;
    case F_COOKIES: c->cookies = 1; break;
    case F_JSON: c->json = 1; break;
    case F_HELP:
    case F_HELP_SHORT: c->help = 1; break;
    }
    return 0;
}

static int on_arg(void *ctx, const char *arg)
{
    return add_url(ctx, arg);
}

/* -i FILE: one URL per line; blank lines and lines starting with '#' skipped. */
static int read_urls_file(fetch_config *c)
{
    FILE *f = strcmp(c->urls_file, "-") == 0 ? stdin : fopen(c->urls_file, "r");
    if (!f)
        return usage_error(CMD, "cannot read '%s': %s", c->urls_file, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
                         line[n - 1] == '\t'))
            line[--n] = '\0';
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == '\0' || *s == '#')
            continue;
        char *url = strdup(s);
        if (!url || keep(c, url) < 0) {
            rc = usage_error(CMD, "out of memory");
            break;
        }
        if ((rc = add_url(c, url)) != 0)
            break;
    }
    free(line);
    if (f != stdin)
        fclose(f);
    return rc;
}

static void free_config(fetch_config *c)
{
    for (size_t i = 0; i < c->nowned; i++)
        free(c->owned[i]);
    free(c->owned);
    free(c->urls);
    free(c->form);
}

/* ---- Output (-o) --------------------------------------------------------------- */

/* A file name for a URL in -o DIR: its last path segment, or index.html;
 * characters outside [A-Za-z0-9._-] become '_'; a name already taken gets
 * ".2", ".3", ... appended. */
static char *dir_name_for(const char *url, char **taken, size_t ntaken)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    const char *path = p + strcspn(p, "/?#");
    const char *end = path + strcspn(path, "?#");
    const char *seg = end;
    while (seg > path && seg[-1] != '/')
        seg--;
    size_t len = (size_t) (end - seg);
    char base[256];
    if (len == 0) {
        snprintf(base, sizeof base, "index.html");
    } else {
        if (len > sizeof base - 16)
            len = sizeof base - 16;
        for (size_t i = 0; i < len; i++) {
            char ch = seg[i];
            int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                     (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
            base[i] = ok ? ch : '_';
        }
        base[len] = '\0';
        if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
            snprintf(base, sizeof base, "_");
    }
    char name[280];
    snprintf(name, sizeof name, "%s", base);
    for (unsigned k = 2;; k++) {
        int clash = 0;
        for (size_t i = 0; i < ntaken && !clash; i++)
            clash = strcmp(taken[i], name) == 0;
        if (!clash)
            break;
        snprintf(name, sizeof name, "%s.%u", base, k);
    }
    return strdup(name);
}

static int setup_output(fetch_app *app)
{
    fetch_config *c = app->cfg;
    if (!c->out) {
        app->out = OUT_NONE;
        return 0;
    }
    if (strcmp(c->out, "-") == 0) {
        app->out = OUT_STDOUT;
        return 0;
    }
    struct stat sb;
    app->written = calloc(c->nurls, 1);
    if (!app->written)
        return usage_error(CMD, "out of memory");
    if (stat(c->out, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        app->out = OUT_DIR;
        app->out_names = calloc(c->nurls, sizeof *app->out_names);
        if (!app->out_names)
            return usage_error(CMD, "out of memory");
        for (size_t i = 0; i < c->nurls; i++) {
            app->out_names[i] = dir_name_for(c->urls[i], app->out_names, i);
            if (!app->out_names[i])
                return usage_error(CMD, "out of memory");
        }
        return 0;
    }
    if (c->nurls != 1)
        return usage_error(CMD, "-o FILE takes exactly one URL; give an existing directory "
                                "for several");
    /* Create it now: a path that cannot be written is bad usage, found before any request. */
    FILE *f = fopen(c->out, "wb");
    if (!f)
        return usage_error(CMD, "cannot write '%s': %s", c->out, strerror(errno));
    fclose(f);
    app->out = OUT_FILE;
    return 0;
}

static void write_body(fetch_app *app, size_t url, const char *body, size_t len)
{
    if (app->out == OUT_STDOUT) {
        if (len && fwrite(body, 1, len, stdout) != len)
            app->write_failed = 1;
        if (len)
            app->stdout_mid_line = body[len - 1] != '\n';
        return;
    }
    if (app->written[url])
        return;
    app->written[url] = 1;
    char path[PATH_MAX];
    if (app->out == OUT_DIR)
        snprintf(path, sizeof path, "%s/%s", app->cfg->out, app->out_names[url]);
    else
        snprintf(path, sizeof path, "%s", app->cfg->out);
    FILE *f = fopen(path, "wb");
    int ok = f && (len == 0 || fwrite(body, 1, len, f) == len);
    if (f && fclose(f) != 0)
        ok = 0;
    if (!ok) {
        fprintf(stderr, "ferry fetch: cannot write '%s': %s\n", path, strerror(errno));
        app->write_failed = 1;
    }
}

/* ---- Requests ---------------------------------------------------------------- */

static void pump(fetch_app *app);
static void finish(fetch_app *app);

static void slot_done(fetch_app *app, slot *s)
{
    app->inflight--;
    app->free_slots[app->nfree++] = s;
    if (!app->interrupted)
        pump(app);
}

static uint64_t since_us(uint64_t start_ns)
{
    return (uv_hrtime() - start_ns) / 1000u;
}

static void on_response(ferry_client_req *req, const ferry_response *r, void *data)
{
    (void) req;
    ((slot *) data)->status = r->status;
}

static void on_done(ferry_client_req *req, int status, void *data)
{
    slot *s = data;
    fetch_app *app = s->app;
    if (!app->interrupted) {
        if (status == 0)
            run_stats_response(app->st, s->status, since_us(s->start_ns));
        else
            run_stats_error(app->st, status, req, app->cfg->urls[s->url]);
    }
    slot_done(app, s);
}

static void on_fetched(ferry_client_req *req, int status, const ferry_response *r, void *data)
{
    slot *s = data;
    fetch_app *app = s->app;
    if (!app->interrupted) {
        if (status == 0) {
            run_stats_response(app->st, r->status, since_us(s->start_ns));
            write_body(app, s->url, r->body.p, r->body.len);
        } else {
            run_stats_error(app->st, status, req, app->cfg->urls[s->url]);
        }
    }
    slot_done(app, s);
}

/* Start requests until CONC are in flight or none are left. A request the
 * agent refuses at once (bad URL, https, queue full) counts as failed here;
 * no callback will run for it. */
static void pump(fetch_app *app)
{
    while (app->next < app->total && app->nfree > 0) {
        slot *s = app->free_slots[--app->nfree];
        s->url = (size_t) (app->next % app->cfg->nurls);
        s->status = 0;
        app->next++;
        app->inflight++;
        app->ropts.url = app->cfg->urls[s->url];
        s->start_ns = uv_hrtime();
        int err = app->out == OUT_NONE
                      ? ferry_request(app->agent, &app->ropts, &app->cbs, s, NULL)
                      : ferry_fetch(app->agent, &app->ropts, 0, on_fetched, s, NULL);
        if (err < 0) {
            run_stats_error(app->st, err, NULL, app->ropts.url);
            app->inflight--;
            app->free_slots[app->nfree++] = s;
        }
    }
    if (app->inflight == 0 && app->next == app->total)
        finish(app);
}

static void on_agent_closed(ferry_agent *a, void *data)
{
    (void) a;
    (void) data;
}

static void print_progress(fetch_app *app)
{
    uint64_t done = app->st->requests;
    double el = (double) (uv_hrtime() - app->t_start) / 1e9;
    double rps = el > 0 ? (double) done / el : 0;
    char bar[21];
    size_t fill = app->total ? (size_t) (20 * done / app->total) : 0;
    for (size_t i = 0; i < 20; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[20] = '\0';
    char line[160], eta[32] = "-";
    if (rps > 0 && done < app->total)
        snprintf(eta, sizeof eta, "%.1fs", (double) (app->total - done) / rps);
    snprintf(line, sizeof line,
             "[%s] %" PRIu64 "/%" PRIu64 "  %.0f req/s  errors %" PRIu64 "  ETA %s", bar, done,
             app->total, rps, app->st->failed, eta);
    progress_show(line);
}

static void on_progress(uv_timer_t *t)
{
    print_progress(t->data);
}

/* Everything ended (or SIGINT/SIGTERM): take the agent's counts, close it and the
 * tool's own handles; the loop then runs out. */
static void finish(fetch_app *app)
{
    if (app->finished)
        return;
    app->finished = 1;
    app->t_end = uv_hrtime();
    ferry_agent_stats_get(app->agent, &app->astats);
    ferry_agent_close(app->agent, app->interrupted, on_agent_closed, app);
    if (app->tty) {
        uv_timer_stop(&app->progress);
        progress_clear();
    }
    uv_close((uv_handle_t *) &app->progress, NULL);
    uv_close((uv_handle_t *) &app->sigint, NULL);
    uv_close((uv_handle_t *) &app->sigterm, NULL);
}

static void on_sigint(uv_signal_t *h, int signum)
{
    (void) signum;
    fetch_app *app = h->data;
    app->interrupted = 1;
    finish(app);
    /* finish() closed the watchers, which restores the default action: the
     * twin of this signal (timeout(1) and service managers send one to the
     * process and one to its group) must not kill us before the summary. */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
}

/* ---- Summary ---------------------------------------------------------------------- */

static void print_summary(fetch_app *app)
{
    const run_stats *st = app->st;
    const ferry_agent_stats *as = &app->astats;
    double el = (double) (app->t_end - app->t_start) / 1e9;
    double rps = el > 0 ? (double) st->requests / el : 0;
    if (app->cfg->json) {
        if (app->stdout_mid_line)
            fputc('\n', stdout);
        json j;
        json_begin(&j, stdout);
        report_json_outcomes(&j, st);
        report_json_connections(&j, as);
        json_double(&j, "elapsed_s", el, 6);
        json_double(&j, "requests_per_second", rps, 1);
        report_json_latency(&j, "latency_us", &st->latency);
        json_u64(&j, "urls", app->cfg->nurls);
        json_u64(&j, "concurrency", app->cfg->conc);
        json_u64(&j, "bytes_in", as->bytes_in);
        json_u64(&j, "bytes_out", as->bytes_out);
        json_u64(&j, "interrupted", (uint64_t) app->interrupted);
        json_end(&j);
        return;
    }
    /* With -o - the bodies own stdout; the summary goes to stderr. */
    FILE *f = app->out == OUT_STDOUT ? stderr : stdout;
    char a[32], b[32];
    fprintf(f, "ferry fetch: %s request%s to %zu URL%s in %.3f s (%s req/s)%s\n",
            fmt_count(a, st->requests), st->requests == 1 ? "" : "s", app->cfg->nurls,
            app->cfg->nurls == 1 ? "" : "s", el, fmt_count(b, (uint64_t) (rps + 0.5)),
            app->interrupted ? ", interrupted" : "");
    fprintf(f, "  %-13s %s\n", "succeeded", fmt_count(a, st->requests - st->failed));
    fprintf(f, "  %-13s %s\n", "failed", fmt_count(a, st->failed));
    report_text_outcomes(f, st);
    report_text_connections(f, as);
    report_text_latency(f, "latency", &st->latency);
    fflush(f);
}

/* ---- The command ---------------------------------------------------------------------- */

int cmd_fetch(int argc, char **argv)
{
    fetch_config cfg = {.per_url = 1,
                        .conc = 1,
                        .connect_timeout_ms = FERRY_AGENT_DEFAULT,
                        .retries = FERRY_AGENT_DEFAULT};
    int rc = flags_parse(CMD, argc, argv, specs, sizeof specs / sizeof specs[0], on_flag, on_arg,
                         &cfg);
    if (rc == 0 && cfg.help) {
        usage(stdout);
        free_config(&cfg);
        return 0;
    }
    if (rc == 0 && cfg.urls_file)
        rc = read_urls_file(&cfg);
    if (rc == 0 && cfg.nurls == 0)
        rc = usage_error(CMD, "no URL given");
    if (rc == 0 && cfg.per_url * cfg.nurls > UINT64_C(1000000000))
        rc = usage_error(CMD, "too many requests: -n times the URLs is above 1000000000");
    if (rc == 0)
        rc = tls_flags_check(CMD, &cfg.tls);

    /* The body: -d, --data-file or --form. */
    char *body = NULL;
    size_t body_len = 0;
    if (rc == 0 && cfg.data_file) {
        if (read_whole_file(cfg.data_file, &body, &body_len) < 0)
            rc = usage_error(CMD, "cannot read '%s': %s", cfg.data_file, strerror(errno));
        else if (!cfg.content_type)
            cfg.content_type = "application/octet-stream";
    } else if (rc == 0 && cfg.nform) {
        int err = ferry_form_encode(cfg.form, cfg.nform / 2, &body, &body_len);
        if (err < 0)
            rc = usage_error(CMD, "cannot encode the form: %s", ferry_strerror(err));
        else if (!cfg.content_type)
            cfg.content_type = "application/x-www-form-urlencoded";
    } else if (rc == 0 && cfg.data) {
        body_len = strlen(cfg.data);
        if (!cfg.content_type)
            cfg.content_type = "application/x-www-form-urlencoded";
    }
    int has_body = cfg.data_file || cfg.nform || cfg.data;

    fetch_app app = {.cfg = &cfg};
    run_stats *st = malloc(sizeof *st);
    if (rc == 0 && !st)
        rc = usage_error(CMD, "out of memory");
    if (rc == 0)
        rc = setup_output(&app);
    if (rc != 0)
        goto out;
    run_stats_init(st);
    app.st = st;
    app.total = cfg.per_url * cfg.nurls;
    size_t nslots = (size_t) (cfg.conc < app.total ? cfg.conc : app.total);
    app.slots = calloc(nslots, sizeof *app.slots);
    app.free_slots = calloc(nslots, sizeof *app.free_slots);
    if (!app.slots || !app.free_slots) {
        rc = usage_error(CMD, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nslots; i++) {
        app.slots[i].app = &app;
        app.free_slots[app.nfree++] = &app.slots[nslots - 1 - i];
    }

    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.max_sockets_per_origin = (uint32_t) (cfg.max_sockets ? cfg.max_sockets : cfg.conc);
    if (ao.max_idle_per_origin < ao.max_sockets_per_origin)
        ao.max_idle_per_origin = ao.max_sockets_per_origin;
    if (ao.max_queue && ao.max_queue < cfg.conc)
        ao.max_queue = (uint32_t) cfg.conc;
    if (cfg.connect_timeout_ms != FERRY_AGENT_DEFAULT)
        ao.connect_timeout_ms = cfg.connect_timeout_ms;
    if (cfg.retries != FERRY_AGENT_DEFAULT)
        ao.retries = (uint32_t) cfg.retries;
    ao.total_timeout_ms = cfg.timeout_ms;
    ao.cookies = cfg.cookies;
    tls_flags_agent(&cfg.tls, &ao);

    ferry_request_options_init(&app.ropts);
    app.ropts.method = cfg.method ? cfg.method : has_body ? "POST" : "GET";
    app.ropts.headers = cfg.headers;
    app.ropts.header_count = cfg.nheaders;
    app.ropts.body = body ? body : cfg.data;
    app.ropts.body_len = body_len;
    app.ropts.content_type = cfg.content_type;
    app.ropts.max_redirects = (uint32_t) cfg.max_redirects;
    app.cbs = (ferry_request_callbacks){.on_response = on_response, .on_done = on_done};

    if (uv_loop_init(&app.loop) != 0) {
        fprintf(stderr, "ferry fetch: cannot create a loop\n");
        rc = 1;
        goto out;
    }
    int err = ferry_agent_new(&app.loop, &ao, &app.agent);
    if (err < 0) {
        /* a --cacert, --cert or --key file that does not load: which, and why */
        fprintf(stderr, "ferry fetch: cannot create the agent: %s\n", agent_error_why(err));
        uv_loop_close(&app.loop);
        rc = 1;
        goto out;
    }
    app.tty = isatty(STDERR_FILENO);
    uv_timer_init(&app.loop, &app.progress);
    app.progress.data = &app;
    /* Not one-shot: `timeout` and service managers signal the process and its
     * group, so two arrive at once, and a reset handler would let the second
     * kill us before the summary (on_sigint ignores them from then on). */
    uv_signal_init(&app.loop, &app.sigint);
    app.sigint.data = &app;
    uv_signal_start(&app.sigint, on_sigint, SIGINT);
    uv_unref((uv_handle_t *) &app.sigint);
    uv_signal_init(&app.loop, &app.sigterm);
    app.sigterm.data = &app;
    uv_signal_start(&app.sigterm, on_sigint, SIGTERM);
    uv_unref((uv_handle_t *) &app.sigterm);
    if (app.tty)
        uv_timer_start(&app.progress, on_progress, PROGRESS_MS, PROGRESS_MS);

    app.t_start = uv_hrtime();
    pump(&app);
    uv_run(&app.loop, UV_RUN_DEFAULT);
    ferry_agent_free(app.agent);
    if (uv_loop_close(&app.loop) != 0)
        fprintf(stderr, "ferry fetch: handles left open at exit\n");

    print_summary(&app);
    fflush(stdout);
    rc = (st->failed || app.write_failed || app.interrupted) ? 1 : 0;

out:
    free(body);
    free(st);
    free(app.slots);
    free(app.free_slots);
    free(app.written);
    if (app.out_names)
        for (size_t i = 0; i < cfg.nurls; i++)
            free(app.out_names[i]);
    free(app.out_names);
    free_config(&cfg);
    return rc;
}
