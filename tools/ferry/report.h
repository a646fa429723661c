/* report.h — what `ferry fetch` and `ferry bench` count, and how they print
 * it: outcomes by kind, statuses, the latency histogram, and the summary
 * pieces both commands share (text and --json), plus the TTY progress line.
 *
 * Outcome of one request:
 * - a response (any status) → its status is counted and its latency
 *   recorded; a status of 400 or more is also a failure of kind http_4xx or
 *   http_5xx;
 * - an error code → a failure of the kind below; its code is counted too
 *   (error_codes in JSON, by ferry_err_name). No latency is recorded.
 * Kinds: timeout, connect, reset, protocol, pool, aborted, tls, other,
 * http_4xx, http_5xx (docs/fetch.md lists which codes fall under which).
 * The first error is kept whole: its code, its URL and, for a certificate
 * that did not verify, why (the first-error line, "first_error" in JSON).
 *
 * A run_stats is a plain block: each thread keeps its own, recording costs a
 * few increments and a hist_record, and run_stats_merge adds them at the end.
 */
#ifndef FERRY_TOOL_REPORT_H
#define FERRY_TOOL_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "ferry.h"
#include "hist.h"
#include "json.h"

typedef enum err_kind {
    ERRK_TIMEOUT,
    ERRK_CONNECT,
    ERRK_RESET,
    ERRK_PROTOCOL,
    ERRK_POOL,
    ERRK_ABORTED,
    ERRK_TLS,
    ERRK_OTHER,
    ERRK_HTTP_4XX,
    ERRK_HTTP_5XX,
    ERRK_COUNT
} err_kind;

#define REPORT_CODES     24  /* distinct error codes counted by name */
#define REPORT_STATUSES  600 /* statuses 0..599 */

typedef struct run_stats {
    hist latency;        /* µs, responses only */
    uint64_t requests;   /* ended: responses + errors */
    uint64_t responses;  /* of which with a response (any status) */
    uint64_t failed;     /* errors + statuses >= 400 */
    uint64_t non_2xx;    /* responses with a status outside 200..299 */
    uint64_t kinds[ERRK_COUNT];
    struct {
        int code;
        uint64_t count;
    } codes[REPORT_CODES];
    uint64_t codes_other; /* errors beyond REPORT_CODES distinct codes */
    uint64_t status[REPORT_STATUSES];
    int first_error;                   /* the first error's code; 0: none yet */
    ferry_tls_verify_reason first_why; /* with FERRY_ETLSVERIFY: why */
    const char *first_url;             /* its URL (the caller's string, which outlives s) */
} run_stats;

void run_stats_init(run_stats *s);
void run_stats_merge(run_stats *dst, const run_stats *src);
/* A response with this status, latency_us after its start. */
void run_stats_response(run_stats *s, int status, uint64_t latency_us);
/* A request to url that ended with a negative error code; req is its handle
 * inside its completion callback (for the TLS verification reason), or
 * NULL when the agent refused it at once. */
void run_stats_error(run_stats *s, int err, const ferry_client_req *req, const char *url);

err_kind err_kind_of(int err);
const char *err_kind_name(err_kind k);

/* key: {"p50":..,"p90":..,"p99":..,"p999":..,"max":..,"min":..,"mean":..} */
void report_json_latency(json *j, const char *key, const hist *h);
/* "requests", "succeeded", "failed", then "errors": {kind: count, ...}
 * (kinds with a count only), "error_codes": {"ECONNREFUSED": n, ...},
 * "status": {"200": n, ...}, "first_error": {"code", "message", "url",
 * "tls_verify_reason"} or null. */
void report_json_outcomes(json *j, const run_stats *s);
/* The pool's work: "connections_opened", "sockets_reused", "retries",
 * "tls_handshakes", "tls_resumed". */
void report_json_connections(json *j, const ferry_agent_stats *as);

/* Text lines (two-space indent, a label column): latency percentiles,
 * statuses, errors by kind with their codes and the first error (with the
 * verification reason); connections, and TLS handshakes when there were any. */
void report_text_latency(FILE *f, const char *label, const hist *h);
void report_text_outcomes(FILE *f, const run_stats *s);
void report_text_connections(FILE *f, const ferry_agent_stats *as);

/* 12345678 → "12,345,678" into buf (at least 32 bytes); returns buf. */
const char *fmt_count(char *buf, uint64_t v);
/* 12.3 MB, 512 KB, 900 B (decimal units) into buf (at least 32 bytes). */
const char *fmt_bytes(char *buf, double v);

/* The progress line on stderr: "\r" + text + clear-to-end-of-line; and its
 * removal. Callers print it only when stderr is a terminal. */
void progress_show(const char *text);
void progress_clear(void);

/* User + system CPU seconds of this process so far. */
double process_cpu_seconds(void);

#endif /* FERRY_TOOL_REPORT_H */
