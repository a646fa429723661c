/* report.c — outcome counting and the shared summary pieces (see report.h). */
#include "report.h"

#include <inttypes.h>
#include <string.h>
#include <sys/resource.h>

#include "ferry.h"

void run_stats_init(run_stats *s)
{
    memset(s, 0, sizeof *s);
    hist_init(&s->latency);
}

void run_stats_merge(run_stats *dst, const run_stats *src)
{
    hist_merge(&dst->latency, &src->latency);
    dst->requests += src->requests;
    dst->responses += src->responses;
    dst->failed += src->failed;
    dst->non_2xx += src->non_2xx;
    for (int k = 0; k < ERRK_COUNT; k++)
        dst->kinds[k] += src->kinds[k];
    for (int i = 0; i < REPORT_STATUSES; i++)
        dst->status[i] += src->status[i];
    dst->codes_other += src->codes_other;
    if (!dst->first_error) {
        dst->first_error = src->first_error;
        dst->first_why = src->first_why;
        dst->first_url = src->first_url;
    }
    for (int i = 0; i < REPORT_CODES && src->codes[i].count; i++) {
        int code = src->codes[i].code;
        int placed = 0;
        for (int k = 0; k < REPORT_CODES; k++) {
            if (dst->codes[k].count == 0)
                dst->codes[k].code = code;
            if (dst->codes[k].code == code) {
                dst->codes[k].count += src->codes[i].count;
                placed = 1;
                break;
            }
        }
        if (!placed)
            dst->codes_other += src->codes[i].count;
    }
}

void run_stats_response(run_stats *s, int status, uint64_t latency_us)
{
    s->requests++;
    s->responses++;
    hist_record(&s->latency, latency_us);
    if (status >= 0 && status < REPORT_STATUSES)
        s->status[status]++;
    if (status < 200 || status > 299)
        s->non_2xx++;
    if (status >= 400) {
        s->failed++;
        s->kinds[status >= 500 ? ERRK_HTTP_5XX : ERRK_HTTP_4XX]++;
    }
}

void run_stats_error(run_stats *s, int err, const ferry_client_req *req, const char *url)
{
    s->requests++;
    s->failed++;
    s->kinds[err_kind_of(err)]++;
    if (!s->first_error) {
        s->first_error = err;
        s->first_why = req && err == FERRY_ETLSVERIFY ? ferry_client_req_tls_verify_reason(req)
                                                      : FERRY_TLS_VERIFY_OK;
        s->first_url = url;
    }
    for (int k = 0; k < REPORT_CODES; k++) {
        if (s->codes[k].count == 0)
            s->codes[k].code = err;
        if (s->codes[k].code == err) {
            s->codes[k].count++;
            return;
        }
    }
    s->codes_other++;
}

err_kind err_kind_of(int err)
{
    switch (ferry_err_kind_of(err)) { /* the library's classification, one for every code */
    case FERRY_ERRK_TIMEOUT: return ERRK_TIMEOUT;
    case FERRY_ERRK_CONNECT: return ERRK_CONNECT;
    case FERRY_ERRK_RESET: return ERRK_RESET;
    case FERRY_ERRK_PROTOCOL: return ERRK_PROTOCOL;
    case FERRY_ERRK_POOL: return ERRK_POOL;
    case FERRY_ERRK_ABORTED: return ERRK_ABORTED;
    case FERRY_ERRK_TLS: return ERRK_TLS;
    default: return ERRK_OTHER;
    }
}

const char *err_kind_name(err_kind k)
{
    static const char *const names[ERRK_COUNT] = {
        "timeout", "connect", "reset", "protocol", "pool",
        "aborted", "tls",     "other", "http_4xx", "http_5xx",
    };
    return (unsigned) k < ERRK_COUNT ? names[k] : "other";
}

void report_json_latency(json *j, const char *key, const hist *h)
{
    json_obj_begin(j, key);
    json_u64(j, "p50", hist_percentile(h, 50));
    json_u64(j, "p90", hist_percentile(h, 90));
    json_u64(j, "p99", hist_percentile(h, 99));
    json_u64(j, "p999", hist_percentile(h, 99.9));
    json_u64(j, "max", h->max);
    json_u64(j, "min", h->count ? h->min : 0);
    json_double(j, "mean", hist_mean(h), 1);
    json_obj_end(j);
}

void report_json_outcomes(json *j, const run_stats *s)
{
    json_u64(j, "requests", s->requests);
    json_u64(j, "succeeded", s->requests - s->failed);
    json_u64(j, "failed", s->failed);
    json_obj_begin(j, "errors");
    for (int k = 0; k < ERRK_COUNT; k++)
        if (s->kinds[k])
            json_u64(j, err_kind_name((err_kind) k), s->kinds[k]);
    json_obj_end(j);
    json_obj_begin(j, "error_codes");
    for (int k = 0; k < REPORT_CODES && s->codes[k].count; k++)
        json_u64(j, ferry_err_name(s->codes[k].code), s->codes[k].count);
    if (s->codes_other)
        json_u64(j, "OTHER", s->codes_other);
    json_obj_end(j);
    json_obj_begin(j, "status");
    for (int i = 0; i < REPORT_STATUSES; i++) {
        if (s->status[i]) {
            char name[8];
            snprintf(name, sizeof name, "%d", i);
            json_u64(j, name, s->status[i]);
        }
    }
    json_obj_end(j);
    if (!s->first_error) {
        json_null(j, "first_error");
        return;
    }
    json_obj_begin(j, "first_error");
    json_str(j, "code", ferry_err_name(s->first_error));
    json_str(j, "message", ferry_strerror(s->first_error));
    if (s->first_url)
        json_str(j, "url", s->first_url);
    if (s->first_error == FERRY_ETLSVERIFY)
        json_str(j, "tls_verify_reason", ferry_tls_verify_reason_name(s->first_why));
    json_obj_end(j);
}

void report_json_connections(json *j, const ferry_agent_stats *as)
{
    json_u64(j, "connections_opened", as->connections_opened);
    json_u64(j, "sockets_reused", as->sockets_reused);
    json_u64(j, "retries", as->retries);
    json_u64(j, "tls_handshakes", as->tls_handshakes);
    json_u64(j, "tls_resumed", as->tls_resumed);
}

void report_text_latency(FILE *f, const char *label, const hist *h)
{
    char a[32], b[32], c[32], d[32], e[32], m[32];
    if (h->count == 0) {
        fprintf(f, "  %-13s no responses\n", label);
        return;
    }
    fprintf(f, "  %-13s p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (µs; mean %s)\n", label,
            fmt_count(a, hist_percentile(h, 50)), fmt_count(b, hist_percentile(h, 90)),
            fmt_count(c, hist_percentile(h, 99)), fmt_count(d, hist_percentile(h, 99.9)),
            fmt_count(e, h->max), fmt_count(m, (uint64_t) (hist_mean(h) + 0.5)));
}

void report_text_outcomes(FILE *f, const run_stats *s)
{
    char n[32];
    fprintf(f, "  %-13s", "statuses");
    int any = 0;
    for (int i = 0; i < REPORT_STATUSES; i++) {
        if (s->status[i]) {
            fprintf(f, "%s%d: %s", any ? ", " : " ", i, fmt_count(n, s->status[i]));
            any = 1;
        }
    }
    fprintf(f, "%s\n", any ? "" : " none");

    fprintf(f, "  %-13s", "errors");
    uint64_t transport = 0;
    for (int k = 0; k < ERRK_HTTP_4XX; k++)
        transport += s->kinds[k];
    if (s->failed == 0) {
        fprintf(f, " none\n");
        return;
    }
    any = 0;
    for (int k = 0; k < ERRK_COUNT; k++) {
        if (!s->kinds[k])
            continue;
        fprintf(f, "%s%s %s", any ? ", " : " ", err_kind_name((err_kind) k),
                fmt_count(n, s->kinds[k]));
        any = 1;
    }
    if (transport) {
        fprintf(f, " (");
        for (int k = 0; k < REPORT_CODES && s->codes[k].count; k++)
            fprintf(f, "%s%s %s", k ? ", " : "", ferry_err_name(s->codes[k].code),
                    fmt_count(n, s->codes[k].count));
        if (s->codes_other)
            fprintf(f, ", others %s", fmt_count(n, s->codes_other));
        fprintf(f, ")");
    }
    fprintf(f, "\n");
    if (s->first_error) {
        /* The code, where, and what it means; a certificate also says why. */
        fprintf(f, "  %-13s %s", "first error", ferry_err_name(s->first_error));
        if (s->first_url)
            fprintf(f, " on %.300s", s->first_url);
        fprintf(f, ": %s", ferry_strerror(s->first_error));
        if (s->first_error == FERRY_ETLSVERIFY)
            fprintf(f, " (%s)", ferry_tls_verify_reason_name(s->first_why));
        fprintf(f, "\n");
    }
}

void report_text_connections(FILE *f, const ferry_agent_stats *as)
{
    char a[32], b[32], c[32];
    fprintf(f, "  %-13s %s opened, %s requests on reused sockets, %s retries\n", "connections",
            fmt_count(a, as->connections_opened), fmt_count(b, as->sockets_reused),
            fmt_count(c, as->retries));
    if (as->tls_handshakes)
        fprintf(f, "  %-13s %s handshake%s, %s resumed (%.1f%%)\n", "tls",
                fmt_count(a, as->tls_handshakes), as->tls_handshakes == 1 ? "" : "s",
                fmt_count(b, as->tls_resumed),
                100.0 * (double) as->tls_resumed / (double) as->tls_handshakes);
}

const char *fmt_count(char *buf, uint64_t v)
{
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%" PRIu64, v);
    int out = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            buf[out++] = ',';
        buf[out++] = digits[i];
    }
    buf[out] = '\0';
    return buf;
}

const char *fmt_bytes(char *buf, double v)
{
    static const char *const units[] = {"B", "KB", "MB", "GB", "TB"};
    int u = 0;
    while (v >= 1000.0 && u < 4) {
        v /= 1000.0;
        u++;
    }
    snprintf(buf, 32, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
    return buf;
}

void progress_show(const char *text)
{
    fprintf(stderr, "\r%s\033[K", text);
    fflush(stderr);
}

void progress_clear(void)
{
    fputs("\r\033[K", stderr);
    fflush(stderr);
}

double process_cpu_seconds(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0.0;
    return (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec / 1e6 +
           (double) ru.ru_stime.tv_sec + (double) ru.ru_stime.tv_usec / 1e6;
}
