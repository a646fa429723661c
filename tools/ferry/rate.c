/* rate.c — the open-model schedule (see rate.h): intended times from the
 * request index, and one wake-up source per schedule: a timerfd watched by a
 * uv_poll on Linux (nanosecond deadlines), a uv_timer elsewhere.
 */
#include "rate.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#ifdef __linux__
#include <sys/prctl.h>
#include <sys/timerfd.h>
#endif

#ifdef __linux__
static void on_poll(uv_poll_t *p, int status, int events)
{
    (void) events;
    rate_sched *r = p->data;
    uint64_t expirations;
    while (read(r->fd, &expirations, sizeof expirations) > 0) {
    }
    (void) status;
    r->armed_ns = 0;
    r->cb(r, r->data);
}
#endif

static void on_timer(uv_timer_t *t)
{
    rate_sched *r = t->data;
    r->armed_ns = 0;
    r->cb(r, r->data);
}

int rate_init(rate_sched *r, uv_loop_t *loop, double per_s, rate_cb cb, void *data)
{
    if (!(per_s > 0.0))
        return UV_EINVAL;
    memset(r, 0, sizeof *r);
    r->per_s = per_s;
    r->cb = cb;
    r->data = data;
    r->loop = loop;
    r->fd = -1;
#ifdef __linux__
    /* The default 50 µs timer slack would be added to every wake-up. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    r->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (r->fd >= 0) {
        int err = uv_poll_init(loop, &r->h.poll, r->fd);
        if (err < 0) {
            close(r->fd);
            return err;
        }
        r->h.poll.data = r;
        return 0;
    }
#endif
    int err = uv_timer_init(loop, &r->h.timer);
    if (err < 0)
        return err;
    r->h.timer.data = r;
    return 0;
}

void rate_start(rate_sched *r, uint64_t t0_ns)
{
    r->t0_ns = t0_ns;
    r->taken = 0;
}

uint64_t rate_peek(const rate_sched *r)
{
    /* taken * 1e9 is exact in a double up to 2^53 ns (104 days), and one
     * division rounds once: no error accumulates with the index. */
    return r->t0_ns + (uint64_t) llround((double) r->taken * 1e9 / r->per_s);
}

void rate_take(rate_sched *r)
{
    r->taken++;
}

void rate_arm(rate_sched *r)
{
    uint64_t due = rate_peek(r);
    if (r->armed_ns == due)
        return;
    r->armed_ns = due;
#ifdef __linux__
    if (r->fd >= 0) {
        /* 0 would disarm the timerfd: anything in the past fires at once. */
        struct itimerspec its = {0};
        its.it_value.tv_sec = (time_t) (due / 1000000000u);
        its.it_value.tv_nsec = (long) (due % 1000000000u);
        if (due == 0)
            its.it_value.tv_nsec = 1;
        timerfd_settime(r->fd, TFD_TIMER_ABSTIME, &its, NULL);
        if (!uv_is_active((uv_handle_t *) &r->h.poll))
            uv_poll_start(&r->h.poll, UV_READABLE, on_poll);
        return;
    }
#endif
    uint64_t now = uv_hrtime();
    uint64_t ms = due > now ? (due - now + 999999u) / 1000000u : 0;
    uv_timer_start(&r->h.timer, on_timer, ms, 0);
}

void rate_disarm(rate_sched *r)
{
    r->armed_ns = 0;
#ifdef __linux__
    if (r->fd >= 0) {
        struct itimerspec its = {0};
        timerfd_settime(r->fd, 0, &its, NULL);
        uv_poll_stop(&r->h.poll);
        return;
    }
#endif
    uv_timer_stop(&r->h.timer);
}

static void on_closed(uv_handle_t *h)
{
    rate_sched *r = h->data;
    if (r->fd >= 0) {
        close(r->fd);
        r->fd = -1;
    }
    if (r->on_closed)
        r->on_closed(r, r->data);
}

void rate_close(rate_sched *r, rate_close_cb done)
{
    r->armed_ns = 0;
    r->on_closed = done;
    uv_close((uv_handle_t *) &r->h, on_closed);
}
