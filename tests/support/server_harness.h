/* server_harness.h — a ferry server on its own loop thread, blocking test
 * clients, and the demo handlers the server tests talk to.
 *
 * Why a thread: the server tests want to write "connect, send these bytes,
 * read one response, expect FIN" as straight-line code with plain blocking
 * sockets. So the server runs on its own uv loop in a background pthread and
 * the test's main thread is the client. Everything that touches the server
 * (ferry is one-loop-one-thread) is marshalled onto the loop thread with
 * harness_call(), which waits for it.
 *
 * Three parts, three files:
 *   server_harness.c  the loop thread: start, call, close, stats, stop (which
 *                     asserts the loop closed clean: a leaked handle fails);
 *   test_client.c     blocking client sockets: connect, send, read exactly one
 *                     response (parsed with src/parse.h), tell FIN from RST;
 *   demo_handlers.c   the request handlers selected by path (see below).
 *
 * Demo paths (the default handler when harness_start gets cb == NULL):
 *   /                 200 "hello, world" (any path not listed here too; a
 *                     request body is never read, so it is drained by ferry)
 *   /echo             read the whole body, answer it with the request's
 *                     Content-Type. ?max=N passes N to ferry_req_read_body;
 *                     ?wait_ms=N waits N ms before starting to read (so a
 *                     100 Continue can be timed)
 *   /stream           ferry_req_on_data with pause/resume after every piece;
 *                     ?hold_ms=N pauses N ms at the first piece. Answers
 *                     "<bytes> <fnv1a-32 hex>" of what it received
 *   /slow?ms=N        answers 200 "slow <query>" after N ms (uv_timer)
 *   /chunked?n=K      K ferry_res_write calls of "chunk <i>\n", then end
 *   /big?bytes=N      N pattern bytes (harness_pattern) written 64 KiB at a
 *                     time, the next only after the previous write's cb;
 *                     Content-Length set unless &chunked=1
 *   /bigsend?bytes=N  N pattern bytes handed over in one ferry_res_send: the
 *                     response is ended long before it is flushed
 *   /cpu?ms=N         ferry_res_offload burning N ms of CPU, then 200 "cpu"
 *   /noanswer         never answered until: the test calls
 *                     harness_release_noanswer(), the server's close callback
 *                     fires, ferry_res_aborted() turns 1 (polled every 10 ms:
 *                     the API has no abort callback), or harness_stop()
 */
#ifndef FERRY_TESTS_SERVER_HARNESS_H
#define FERRY_TESTS_SERVER_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ferry.h"
#include "http1/parse.h"

/* ---- the server on its loop thread --------------------------------------- */

typedef struct harness harness;
typedef void (*harness_fn)(ferry_server *s, void *arg);

/* ferry's defaults, except linger_timeout_ms (300) so a test that leaves a
 * client socket open never waits out the 2 s default at harness_stop. */
void harness_options_init(ferry_server_options *o);

/* Start a server (options o, or harness_options_init's if NULL) listening on
 * 127.0.0.1 port 0, on a new loop in a new thread; returns once it listens.
 * cb == NULL selects the demo handlers. Fails the test if it cannot listen. */
harness *harness_start(const ferry_server_options *o, ferry_request_cb cb, void *data);
int harness_port(const harness *h);

/* On the loop thread (inside a handler or a harness_call fn): the harness
 * that owns this thread, and its server. */
harness *harness_self(void);
ferry_server *harness_server(harness *h);
uv_loop_t *harness_loop(harness *h);

/* Run fn(server, arg) on the loop thread and wait until it returned. */
void harness_call(harness *h, harness_fn fn, void *arg);

/* Shutdown calls, run on the loop thread; the close callback is the
 * harness's, which records when it fired and how often. */
void harness_close_start(harness *h, uint64_t grace_ms);
/* Milliseconds from ferry_server_close() to its callback; waits up to
 * timeout_ms for the callback, -1 if it did not fire by then. */
double harness_wait_closed(harness *h, int timeout_ms);
/* close_start + wait_closed (10 s): how long until the close callback fired. */
double harness_close(harness *h, uint64_t grace_ms);
void harness_close_idle(harness *h);
void harness_destroy(harness *h);
/* The same, for code already on the loop thread (e.g. inside a handler). */
void harness_close_on_loop(harness *h, uint64_t grace_ms);
int harness_close_cb_count(harness *h);

/* ferry_server_stats_get, read on the loop thread. */
void harness_stats(harness *h, ferry_server_stats *st);
/* Poll the stats every 5 ms until field >= min or timeout_ms passed; false on
 * timeout. Only for the uint64_t fields (not `closing`, an int). */
bool harness_wait_stat_at(harness *h, size_t field_offset, uint64_t min, int timeout_ms);
#define harness_wait_stat(h, field, min, timeout_ms)                                               \
    harness_wait_stat_at((h), offsetof(ferry_server_stats, field), (min), (timeout_ms))

/* How many times ferry called the request callback (any handler). */
uint64_t harness_handler_calls(harness *h);
/* Wait until at least n request callbacks ran; false on timeout. */
bool harness_wait_handler_calls(harness *h, uint64_t n, int timeout_ms);

/* End every pending /noanswer request (200 "released"). */
void harness_release_noanswer(harness *h);
/* How many /noanswer requests are waiting now. */
size_t harness_noanswer_pending(harness *h);

/* Close the server if nobody did (grace 1000 ms), wait for its callback,
 * let every demo request finish, free the server, close the harness's own
 * handles, join the thread, and assert: close cb fired exactly once, free
 * returned 0, nothing leaked (uv_loop_close() == 0). */
void harness_stop(harness *h);

/* ---- demo handlers (demo_handlers.c; loop thread only) -------------------- */

/* The demo request callback; data must be the harness (harness_self() works). */
void demo_handle(ferry_req *req, ferry_res *res, void *data);
/* The byte at offset i of the /big and /bigsend bodies. */
static inline char harness_pattern(uint64_t i)
{
    return (char) (((i / 26) % 2 ? 'A' : 'a') + (int) (i % 26));
}
/* FNV-1a 32-bit, continued from h (start with 2166136261u): /stream's digest. */
uint32_t harness_fnv1a(uint32_t h, const void *p, size_t n);

/* ---- blocking test clients (test_client.c; main thread only) -------------- */

/* Outcomes of tc_read_response (0 = a response was read). */
enum {
    TC_ECLOSED = -1,  /* FIN before the first byte of a response */
    TC_ERESET = -2,   /* ECONNRESET (or EPIPE) while reading */
    TC_ETIMEOUT = -3, /* nothing complete within the time limit */
    TC_EPARSE = -4,   /* bytes that are not an HTTP/1.1 response */
    TC_ETRUNC = -5,   /* FIN in the middle of a response */
};

/* Outcomes of tc_expect_eof. */
typedef enum {
    TC_FIN = 1,  /* the server closed: recv() returned 0 */
    TC_RST = 2,  /* the server reset: ECONNRESET */
    TC_OPEN = 3, /* still open, and nothing arrived, at the timeout */
    TC_DATA = 4, /* bytes arrived instead (they stay buffered for the next read) */
} tc_eof;

typedef struct tc_field {
    char *name;
    char *value;
} tc_field;

/* One response, every string NUL-terminated and owned (tc_response_free). */
typedef struct tc_response {
    int status;
    int version_minor;
    char *head; /* the raw head, status line to the blank line */
    size_t head_len;
    tc_field *fields;
    size_t nfields;
    char *body; /* decoded (de-chunked) body */
    size_t body_len;
    bool chunked;
    bool has_content_length;
    bool until_close; /* body delimited by the server's FIN */
    uint32_t flags;   /* PARSE_F_* from parse_response */
} tc_response;

/* Connect a blocking socket to 127.0.0.1:port (TCP_NODELAY, SO_RCVTIMEO and
 * SO_SNDTIMEO 5 s so nothing hangs); fails the test on error. */
int tc_connect(int port);
/* The same without asserting: the fd, or -errno (e.g. -ECONNREFUSED). */
int tc_try_connect(int port);
/* Send every byte or fail the test (MSG_NOSIGNAL: a reset peer is an error, not a signal). */
void tc_send(int fd, const char *s);
void tc_send_n(int fd, const void *p, size_t n);
/* Send what the peer takes: bytes sent, or -errno; never fails the test. */
ssize_t tc_try_send_n(int fd, const void *p, size_t n);
/* Read exactly one response (a 1xx counts as one), 5 s limit. */
int tc_read_response(int fd, tc_response *r);
/* req_flags: PARSE_REQ_HEAD for a HEAD request; timeout_ms: whole response. */
int tc_read_response_ex(int fd, tc_response *r, unsigned req_flags, int timeout_ms);
void tc_response_free(tc_response *r);
/* First field with this name (case-insensitive), or NULL. */
const char *tc_header(const tc_response *r, const char *name);
size_t tc_header_count(const tc_response *r, const char *name);
/* True if a comma-separated field value contains token (case-insensitive). */
bool tc_header_has_token(const tc_response *r, const char *name, const char *token);
/* Send "GET target HTTP/1.1" with Host and read the response. */
int tc_get(int fd, const char *target, tc_response *r);
/* Wait up to timeout_ms for the server to close: FIN, RST, still open, or data. */
tc_eof tc_expect_eof(int fd, int timeout_ms);
/* Bytes received but not yet consumed by a tc_read_response. */
size_t tc_buffered(int fd);
/* Close the socket and drop its buffered bytes. */
void tc_close(int fd);
/* Close with SO_LINGER 0: the client resets. */
void tc_reset(int fd);

/* Names for messages: "TC_ERESET", "TC_FIN", ... */
const char *tc_result_name(int rc);
const char *tc_eof_name(tc_eof e);
/* Fail the test with the outcome's name unless a response was read. */
#define assert_tc_ok(expr)                                                                         \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != 0) fail_msg("%s: %s", #expr, tc_result_name(rc_));                              \
    } while (0)
/* Fail the test unless the server closed (or reset, or stayed open) as expected. */
#define assert_tc_eof(expr, want)                                                                  \
    do {                                                                                           \
        tc_eof got_ = (expr);                                                                      \
        if (got_ != (want))                                                                        \
            fail_msg("%s: %s, expected %s", #expr, tc_eof_name(got_), tc_eof_name(want));          \
    } while (0)

/* ---- small utilities ------------------------------------------------------ */

double now_ms(void);      /* monotonic clock, milliseconds */
void sleep_ms(double ms); /* nanosleep, restarted on EINTR */
/* RLIMIT_NOFILE soft limit up to the hard limit (tests with many sockets). */
void raise_nofile_limit(void);
/* Open file descriptors of this process (counted in /proc/self/fd). */
int count_open_fds(void);
/* User+system CPU time of the whole process, ms (getrusage). */
double process_cpu_ms(void);

#endif /* FERRY_TESTS_SERVER_HARNESS_H */
