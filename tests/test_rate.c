/* test_rate.c — the open-model schedule of `ferry bench -R`
 * (tools/ferry/rate.c) on a real loop, over short runs with generous bounds:
 * - the number of requests taken in a window matches the rate (2,000/s and
 *   50,000/s), and most wake-ups are on time;
 * - intended times come from the index: after the owner stalls for 100 ms,
 *   the requests it takes late keep their intended times (so their latency is
 *   charged from when they were due: coordinated omission corrected), and the
 *   schedule catches up instead of drifting;
 * - disarm stops the wake-ups; every test closes its handles and the loop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hist.h"
#include "rate.h"

typedef struct run {
    uv_loop_t loop;
    rate_sched r;
    uv_timer_t stop_timer;
    uint64_t t0, stop_at;
    uint64_t stall_ms;     /* the first wake-up blocks this long (a busy owner) */
    uint64_t wakeups;
    uint64_t late_after_stall; /* intended time of the first request taken after the stall */
    hist lateness;         /* µs between intended time and take */
    int stopped;
    int closed;
} run;

static void take_due(rate_sched *r, void *data)
{
    run *t = data;
    t->wakeups++;
    uint64_t now = uv_hrtime();
    if (t->stopped)
        return;
    int first_after_stall = 0;
    if (t->stall_ms && t->wakeups == 1) {
        uv_sleep((unsigned) t->stall_ms);
        now = uv_hrtime();
        first_after_stall = 1;
    }
    while (rate_peek(r) <= now && rate_peek(r) <= t->stop_at) {
        uint64_t intended = rate_peek(r);
        if (first_after_stall) {
            t->late_after_stall = now - intended;
            first_after_stall = 0;
        }
        hist_record(&t->lateness, (now - intended) / 1000);
        rate_take(r);
    }
    if (rate_peek(r) <= t->stop_at)
        rate_arm(r);
}

static void on_rate_closed(rate_sched *r, void *data)
{
    (void) r;
    ((run *) data)->closed++;
}

static void on_stop(uv_timer_t *timer)
{
    run *t = timer->data;
    /* A loaded machine may run this timer before the schedule's last
     * wake-up: take what is due first, so the count does not depend on it. */
    take_due(&t->r, t);
    t->stopped = 1;
    rate_disarm(&t->r);
    rate_close(&t->r, on_rate_closed);
    uv_close((uv_handle_t *) timer, NULL);
}

/* Run a schedule of per_s for window_ms; optionally stall the first
 * stall_ms. Returns the run (caller frees). */
static run *run_schedule(double per_s, uint64_t window_ms, uint64_t stall_ms)
{
    run *t = calloc(1, sizeof *t);
    assert_non_null(t);
    hist_init(&t->lateness);
    assert_int_equal(uv_loop_init(&t->loop), 0);
    assert_int_equal(rate_init(&t->r, &t->loop, per_s, take_due, t), 0);
    assert_int_equal(uv_timer_init(&t->loop, &t->stop_timer), 0);
    t->stop_timer.data = t;
    t->t0 = uv_hrtime();
    t->stop_at = t->t0 + window_ms * 1000000u;
    t->stall_ms = stall_ms;
    rate_start(&t->r, t->t0);
    rate_arm(&t->r);
    uv_update_time(&t->loop);
    /* A little past the window, so the last due request is taken. */
    assert_int_equal(uv_timer_start(&t->stop_timer, on_stop, window_ms + 20, 0), 0);
    assert_int_equal(uv_run(&t->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(t->closed, 1);
    assert_int_equal(uv_loop_close(&t->loop), 0);
    return t;
}

static void count_matches_rate(void **state)
{
    (void) state;
    /* 2,000/s over 500 ms: requests 0..1000 are due within the window. */
    run *t = run_schedule(2000, 500, 0);
    assert_int_equal(t->r.taken, 1001);
    /* Wake-ups on time: generous bounds for a shared 2-CPU VM (typically
     * tens of µs at the median). */
    assert_true(hist_percentile(&t->lateness, 50) < 5000);
    assert_true(t->wakeups >= 100); /* it woke along the way, not once at the end */
    free(t);
}

static void high_rate_batches(void **state)
{
    (void) state;
    /* 50,000/s over 200 ms: 10,001 due, one every 20 µs. */
    run *t = run_schedule(50000, 200, 0);
    assert_int_equal(t->r.taken, 10001);
    assert_true(t->wakeups > 0 && t->wakeups <= t->r.taken + 2);
    assert_true(hist_percentile(&t->lateness, 50) < 10000);
    free(t);
}

static void stall_keeps_intended_times(void **state)
{
    (void) state;
    /* 1,000/s; the owner takes nothing for the first 100 ms. */
    run *t = run_schedule(1000, 300, 100);
    /* No drift: everything due in the window is taken in the end. */
    assert_int_equal(t->r.taken, 301);
    /* The first request taken after the stall was due at t0: its lateness is
     * the whole stall (>= 100 ms), not the time since the last wake-up. */
    assert_true(t->late_after_stall >= 100u * 1000000u);
    assert_true(t->lateness.max >= 100000);
    /* ...and the 100 requests due during the stall were late by 100..0 ms:
     * a third of all, so p80 falls among them. */
    assert_true(hist_percentile(&t->lateness, 80) >= 20000);
    free(t);
}

static void intended_times_from_the_index(void **state)
{
    (void) state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    rate_sched r;
    assert_int_equal(rate_init(&r, &loop, 3.0, take_due, NULL), 0);
    rate_start(&r, 1000);
    assert_int_equal(rate_peek(&r), 1000);
    for (int i = 0; i < 3; i++)
        rate_take(&r);
    assert_int_equal(rate_peek(&r), 1000 + 1000000000u); /* 3 per second: #3 one second on */
    for (int i = 0; i < 3000000; i++)
        rate_take(&r);
    /* A million seconds on, still exact to the nanosecond (no accumulated error). */
    assert_int_equal(rate_peek(&r), 1000 + UINT64_C(1000001) * 1000000000u);
    rate_close(&r, NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(rate_init(&r, &loop, 0.0, take_due, NULL), UV_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(intended_times_from_the_index),
        cmocka_unit_test(count_matches_rate),
        cmocka_unit_test(high_rate_batches),
        cmocka_unit_test(stall_keeps_intended_times),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
