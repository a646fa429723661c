/* harness_internal.h — what server_harness.c and demo_handlers.c share: the
 * harness struct (the loop thread's state) and the demo handlers' bookkeeping.
 * Tests include server_harness.h only. */
#ifndef FERRY_TESTS_HARNESS_INTERNAL_H
#define FERRY_TESTS_HARNESS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "support/server_harness.h"

/* One /noanswer request waiting to be ended. */
typedef struct demo_pending {
    ferry_res *res;
    struct demo_pending *next;
} demo_pending;

/* Demo bookkeeping, touched on the loop thread only. */
typedef struct demo_state {
    size_t outstanding;     /* demo requests not yet ended: harness_stop waits for 0 */
    demo_pending *noanswer; /* /noanswer requests, newest first */
    size_t noanswer_count;
    uv_timer_t reaper; /* polls ferry_res_aborted() of /noanswer requests */
    bool reaper_init;
} demo_state;

/* A harness_call in flight: queued by the main thread, run by the loop. */
typedef struct hcall {
    harness_fn fn;
    void *arg;
    bool done;
    struct hcall *next;
} hcall;

struct harness {
    uv_loop_t loop;
    uv_async_t async;      /* wakes the loop for queued calls */
    uv_timer_t stop_timer; /* during harness_stop: waits for close cb + demo requests */
    uv_timer_t watchdog;   /* during harness_stop: unref'd; fires only if the loop will not end */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;

    ferry_server_options opts;
    ferry_request_cb user_cb;
    void *user_data;
    ferry_server *server;

    /* under mu */
    hcall *calls;
    bool ready;
    int start_err;
    int port;
    int close_cb_count;
    uint64_t close_start_ns, close_done_ns;
    bool thread_done;

    /* loop thread only */
    bool close_called; /* ferry_server_close was called (by anyone through the harness) */
    bool stopping;
    bool destroy_fallback; /* harness_stop had to call destroy: close never finished */
    uint64_t stop_start_ns;
    int free_rc;
    bool watchdog_fired;
    char leaked[512]; /* handle types left open when the watchdog fired */
    int loop_close_rc;
    bool stop_gave_up;

    atomic_uint_fast64_t handler_calls;
    demo_state demo;
};

/* Called by the demo when it ends a request, so harness_stop can wait. */
void demo_request_done(harness *h);
/* End every pending /noanswer request (loop thread). */
void demo_release_noanswer(harness *h);
/* Close the demo's own handles (loop thread, at stop). */
void demo_close_handles(harness *h);

#endif /* FERRY_TESTS_HARNESS_INTERNAL_H */
