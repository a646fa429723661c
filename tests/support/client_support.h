/* client_support.h — what every client test needs: a loop of its own, a way
 * to run it until something happened (never longer than a watchdog), a
 * recorder for one request's callbacks, and a teardown that closes the agent
 * and proves the loop closed clean.
 *
 * The client (ferry_agent) runs on the test's main thread, on a loop made by
 * cs_loop_new(); the servers it talks to run in threads of their own
 * (server_harness.h: a real ferry server; raw_server.h: a misbehaving one).
 */
#ifndef FERRY_TESTS_CLIENT_SUPPORT_H
#define FERRY_TESTS_CLIENT_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry.h"

/* ---- loop ------------------------------------------------------------------ */

uv_loop_t *cs_loop_new(void);
/* Run the loop until nothing is left (at most 5 s), then assert
 * uv_loop_close() == 0, naming any handle left open, and free the loop. */
void cs_loop_finish(uv_loop_t *loop);

/* Run the loop until *counter >= target; false if timeout_ms passed first. */
bool cs_run_until(uv_loop_t *loop, const int *counter, int target, int timeout_ms);
/* Run the loop until pred(arg) (checked after every loop iteration and every
 * millisecond, so it may watch other threads); false on timeout. */
bool cs_run_until_fn(uv_loop_t *loop, bool (*pred)(void *arg), void *arg, int timeout_ms);
/* Run the loop for ms milliseconds. */
void cs_run_for(uv_loop_t *loop, int ms);

/* Close the agent (gracefully or aborting what is active), wait for its
 * close callback (which must not run inside ferry_agent_close and must run
 * exactly once), and free it. */
void cs_agent_finish(uv_loop_t *loop, ferry_agent *a, int abort_active);

/* ferry_agent_new on loop (ao NULL: the defaults); fails the test if refused. */
ferry_agent *cs_agent_new(uv_loop_t *loop, const ferry_agent_options *ao);
/* The usual end of a test's client side: cs_agent_finish(loop, a, 0), then
 * cs_loop_finish(loop) (which proves the loop closed clean). */
void cs_client_finish(uv_loop_t *loop, ferry_agent *a);
/* The agent's stats now, as a value. */
ferry_agent_stats cs_stats(const ferry_agent *a);

/* ---- one request, recorded ------------------------------------------------- */

typedef struct cs_result {
    int done;               /* on_done (or fetch cb) calls: must end at 1 */
    int status;             /* on_done's status */
    int responses;          /* on_response calls */
    int http_status;        /* the response's status */
    uint32_t attempts;      /* ferry_response.attempts */
    int reused;             /* ferry_response.reused_socket */
    int data_calls;         /* on_data calls */
    size_t body_len;        /* body bytes received (all of them) */
    char body[8192];        /* the first bytes of the body, NUL-terminated */
    char first_header[256]; /* with want_header: its value, if present */
    const char *want_header;
    double t_start, t_done; /* now_ms() at cs_request and at on_done */
    int *counter;           /* incremented when done (may be NULL) */
    int id;                 /* the test's own tag */
    void *user;             /* the test's own pointer */
    ferry_client_req *req;
} cs_result;

/* Callbacks that record into a cs_result (data); cs_callbacks_drain has no
 * on_data (the agent drains the body). */
extern const ferry_request_callbacks cs_callbacks;
extern const ferry_request_callbacks cs_callbacks_drain;

/* ferry_request with cs_callbacks (or _drain) and r as data; sets r->t_start
 * and r->req. Returns ferry_request's result. */
int cs_request(ferry_agent *a, const ferry_request_options *o, cs_result *r, bool drain);
/* cs_request (streaming, not drained), then run the loop until r ended; fails
 * the test if it did not end within timeout_ms. */
void cs_run_request(uv_loop_t *loop, ferry_agent *a, const ferry_request_options *o, cs_result *r,
                    int timeout_ms);
/* ferry_fetch recording into r (the body goes to r->body). */
int cs_fetch(ferry_agent *a, const ferry_request_options *o, uint64_t max_body, cs_result *r);

/* "http://127.0.0.1:PORT/path" into a static rotating buffer (8 slots). */
const char *cs_url(int port, const char *path);
/* Options with url and method set, everything else default. */
ferry_request_options cs_opts(const char *method, const char *url);

/* Fail with a readable message unless r ended once with want (0: success). */
#define cs_assert_done(r, want) cs_assert_done_at((r), (want), __FILE__, __LINE__)
void cs_assert_done_at(const cs_result *r, int want, const char *file, int line);

/* Print the agent stats (one line) for the test log. */
void cs_print_stats(const char *label, const ferry_agent *a);

/* ---- server side: a handler that says what it received ---------------------- */

/* A request callback for harness_start (runs on the server's loop thread).
 * /inspect reads the whole body (up to 16 MiB) and answers 200 with one
 * "name: value" line each for method, target, host, content-length,
 * transfer-encoding, connection, cookie, content-type, expect, x-test (empty
 * when absent) and "body: <bytes> <fnv1a-32 hex>". Every other path goes to
 * the harness's demo handlers (server_harness.h). */
void cs_inspect_handler(ferry_req *req, ferry_res *res, void *data);
/* The value of line "name: value" in an /inspect answer, copied into out
 * ("" if absent). */
const char *cs_inspect_field(const char *answer, const char *name, char *out, size_t out_size);

#endif /* FERRY_TESTS_CLIENT_SUPPORT_H */
