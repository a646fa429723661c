/* rate.h — the open-model request schedule of `ferry bench -R`.
 *
 * Request i of a schedule is *intended* to start at t0 + i / rate. The
 * scheduler does not send anything itself: it wakes its owner (cb) when the
 * next intended time has come, and the owner takes every request that is due
 * (rate_peek <= now), as far as it has room. A request that could not start
 * on time keeps its intended time, so its latency is measured from when it
 * should have been sent: a server that stalls the client is charged for the
 * whole stall, not just for the requests that happened to be in flight
 * (coordinated omission, corrected as wrk2 does).
 *
 * Intended times come from the index, not from the previous send, so the
 * rate does not drift however late a wake-up is. On Linux the wake-ups come
 * from a timerfd armed at the absolute intended time (nanoseconds, with the
 * thread's timer slack lowered to 1 ns); elsewhere from a uv_timer, whose
 * millisecond resolution then shows up as latency.
 */
#ifndef FERRY_TOOL_RATE_H
#define FERRY_TOOL_RATE_H

#include <stdint.h>

#include <uv.h>

typedef struct rate_sched rate_sched;
typedef void (*rate_cb)(rate_sched *r, void *data);
typedef void (*rate_close_cb)(rate_sched *r, void *data);

struct rate_sched {
    double per_s;       /* the rate */
    uint64_t t0_ns;     /* uv_hrtime() of request 0 */
    uint64_t taken;     /* requests taken so far */
    uint64_t armed_ns;  /* what the timer is armed for; 0: not armed */
    rate_cb cb;
    void *data;
    uv_loop_t *loop;
    int fd; /* timerfd, or -1 with the uv_timer fallback */
    rate_close_cb on_closed;
    union {
        uv_poll_t poll;
        uv_timer_t timer;
    } h;
};

/* Set up a schedule of per_s requests per second (> 0) on loop. cb runs from
 * the loop once an armed time has come. Returns 0 or a negative libuv code. */
int rate_init(rate_sched *r, uv_loop_t *loop, double per_s, rate_cb cb, void *data);
/* Request 0 is due at t0_ns (a uv_hrtime() value). */
void rate_start(rate_sched *r, uint64_t t0_ns);
/* The intended start of the next request (the taken-th). */
uint64_t rate_peek(const rate_sched *r);
/* The next request is on its way. */
void rate_take(rate_sched *r);
/* Wake the owner when the next request is due (at once if it already is).
 * Arming for the time already armed does nothing. */
void rate_arm(rate_sched *r);
void rate_disarm(rate_sched *r);
/* Close its handle; done(r, data) runs from the loop once it is closed (may
 * be NULL). r's memory must stay valid until then. */
void rate_close(rate_sched *r, rate_close_cb done);

#endif /* FERRY_TOOL_RATE_H */
