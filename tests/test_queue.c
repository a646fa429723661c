/* test_queue.c — ferry_queue on a real loop: per-key order under interleaved
 * keys and timer-driven completion, the concurrency limit (never exceeded,
 * reached), FIFO across keys, tasks without a key, max_queued and
 * max_queued_per_key, cancel (queued, ready head, running, twice, from a
 * callback), close in both modes and from a callback, 100k tasks that finish
 * inside their own callback at constant stack depth, the per-turn budget,
 * the loop phase a task starts in, key copying and the key table growing
 * and shrinking. Every test closes its queue and proves the loop closes
 * clean. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ferry.h"
#include "util/siphash.h"

#define MAXKEYS  128
#define MAXORDER 4096

enum { SYNC = -1, HOLD = -2 }; /* job.delay_ms: done inside cb; completed by the test */

/* One task as a test sees it. */
typedef struct job {
    int id;
    int key;      /* index into R.key_*; -1: pushed without a key */
    int seq;      /* position among its key's pushes */
    int delay_ms; /* >= 0: done from a timer after this long; SYNC; HOLD */
    ferry_queue_task *task;
    uv_timer_t timer;
    int started;
    int finished;
    int cancelled;
} job;

static struct {
    uv_loop_t *loop;
    int in_call; /* > 0 while the test is inside a ferry_queue_* call */
    int running; /* started, not finished */
    int max_running;
    int key_running[MAXKEYS];
    int key_next_seq[MAXKEYS];
    int order[MAXORDER]; /* job ids in start order */
    size_t norder;
    int cancel_order[MAXORDER];
    size_t ncancel;
    int closed;               /* close callbacks seen */
    uint64_t iterations;      /* uv_prepare ticks: one per loop iteration, before the poll */
    void (*on_start)(job *j); /* extra behaviour when a job starts */
} R;

static int setup(void **state)
{
    (void) state;
    memset(&R, 0, sizeof(R));
    return 0;
}

static void finish_loop(uv_loop_t *loop)
{
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(loop), 0);
}

static void job_finish(job *j)
{
    R.running--;
    if (j->key >= 0) R.key_running[j->key] = 0;
    j->finished++;
    R.in_call++;
    ferry_queue_task_done(j->task);
    R.in_call--;
}

static void on_job_timer(uv_timer_t *t)
{
    job *j = t->data;
    uv_close((uv_handle_t *) t, NULL);
    job_finish(j);
}

/* The task callback for every job: checks that no callback runs inside a
 * ferry_queue_* call, that the limit and per-key serialisation hold and that
 * each key's tasks start in push order; then finishes as the job says. */
static void job_cb(ferry_queue_task *t, int status, void *data)
{
    job *j = data;
    assert_int_equal(R.in_call, 0);
    if (status == FERRY_ECANCELED) {
        assert_int_equal(j->started, 0);
        j->cancelled++;
        assert_true(R.ncancel < MAXORDER);
        R.cancel_order[R.ncancel++] = j->id;
        return;
    }
    assert_int_equal(status, 0);
    assert_int_equal(j->started, 0);
    assert_int_equal(j->cancelled, 0);
    assert_ptr_equal(t, j->task);
    j->started++;
    R.running++;
    if (R.running > R.max_running) R.max_running = R.running;
    if (j->key >= 0) {
        assert_int_equal(R.key_running[j->key], 0); /* never two of one key at once */
        R.key_running[j->key] = 1;
        assert_int_equal(j->seq, R.key_next_seq[j->key]); /* push order within a key */
        R.key_next_seq[j->key]++;
    }
    if (R.norder < MAXORDER) R.order[R.norder++] = j->id;
    if (R.on_start != NULL) R.on_start(j);
    if (j->delay_ms == SYNC) {
        job_finish(j);
    } else if (j->delay_ms >= 0) {
        assert_int_equal(uv_timer_init(R.loop, &j->timer), 0);
        j->timer.data = j;
        assert_int_equal(uv_timer_start(&j->timer, on_job_timer, (uint64_t) j->delay_ms, 0), 0);
    }
}

/* Push `j` under key "user-<key>" from a stack buffer that is scribbled over
 * right after, so the queue must have copied it. */
static int push_job(ferry_queue *q, job *j)
{
    char buf[32];
    int n = 0;
    if (j->key >= 0) n = snprintf(buf, sizeof(buf), "user-%d", j->key);
    R.in_call++;
    int rc = ferry_queue_push(q, j->key >= 0 ? buf : NULL, (size_t) n, job_cb, j, &j->task);
    R.in_call--;
    memset(buf, 'x', sizeof(buf));
    return rc;
}

static void job_init(job *j, int id, int key, int delay_ms)
{
    memset(j, 0, sizeof(*j));
    j->id = id;
    j->key = key;
    j->delay_ms = delay_ms;
}

/* Set each job's seq from the order they will be pushed in. */
static void number_jobs(job *jobs, size_t n)
{
    int seq[MAXKEYS] = {0};
    for (size_t i = 0; i < n; i++)
        if (jobs[i].key >= 0) jobs[i].seq = seq[jobs[i].key]++;
}

static void on_closed(ferry_queue *q, void *data)
{
    assert_int_equal(R.in_call, 0);
    assert_ptr_equal(data, &R);
    R.closed++;
    assert_int_equal(ferry_queue_free(q), 0); /* allowed from inside the close callback */
}

/* Close (drain), run the loop dry, and check the callback ran exactly once. */
static void close_and_finish(ferry_queue *q, uv_loop_t *loop)
{
    R.in_call++;
    ferry_queue_close(q, FERRY_QUEUE_DRAIN, on_closed, &R);
    R.in_call--;
    assert_int_equal(R.closed, 0); /* never inside the call */
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(R.closed, 1);
    finish_loop(loop);
}

static ferry_queue *new_queue(uv_loop_t *loop, uint32_t concurrency)
{
    ferry_queue_options o;
    ferry_queue_options_init(&o);
    o.concurrency = concurrency;
    ferry_queue *q = NULL;
    assert_int_equal(ferry_queue_new(loop, &o, &q), 0);
    assert_non_null(q);
    return q;
}

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* ---- options and arguments ------------------------------------------------- */

static void test_options_defaults(void **state)
{
    (void) state;
    ferry_queue_options o;
    memset(&o, 0xab, sizeof(o));
    ferry_queue_options_init(&o);
    assert_int_equal(o.concurrency, 16);
    assert_int_equal(o.max_queued, 10000);
    assert_int_equal(o.max_queued_per_key, 0);
    assert_int_equal(o.max_starts_per_turn, 1024);
}

static void test_invalid_arguments(void **state)
{
    (void) state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    R.loop = &loop;
    ferry_queue *q = (ferry_queue *) &loop; /* must be overwritten */
    assert_int_equal(ferry_queue_new(NULL, NULL, &q), FERRY_EINVAL);
    assert_null(q);
    assert_int_equal(ferry_queue_new(&loop, NULL, NULL), FERRY_EINVAL);
    assert_int_equal(ferry_queue_new(&loop, NULL, &q), 0); /* NULL options: defaults */

    ferry_queue_task *t = (ferry_queue_task *) &loop;
    assert_int_equal(ferry_queue_push(q, NULL, 0, NULL, NULL, &t), FERRY_EINVAL);
    assert_null(t);
    assert_int_equal(ferry_queue_push(q, NULL, 3, job_cb, NULL, NULL), FERRY_EINVAL);
    assert_int_equal(ferry_queue_task_cancel(NULL), FERRY_EINVAL);
    assert_int_equal(ferry_queue_free(q), FERRY_EBUSY); /* not closed */
    assert_int_equal(ferry_queue_free(NULL), 0);

    ferry_queue_stats st;
    ferry_queue_stats_get(q, &st);
    assert_int_equal(st.pushed, 0);
    assert_int_equal(st.closing, 0);
    close_and_finish(q, &loop);
}

/* ---- order and limits -------------------------------------------------------- */

/* 40 keys x 30 tasks pushed in a shuffled interleaving (plus 100 without a
 * key), each finishing from a timer after 0-3 ms: every key's tasks start in
 * push order and never overlap, the limit holds and is reached. */
static void test_per_key_order_async(void **state)
{
    (void) state;
    enum { KEYS = 40, PER = 30, NOKEY = 100, N = KEYS * PER + NOKEY };
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    R.loop = &loop;
    ferry_queue *q = new_queue(&loop, 8);
    job *jobs = calloc(N, sizeof(*jobs));
    assert_non_null(jobs);
    uint32_t seed = 12345;
    int left[KEYS];
    for (int k = 0; k < KEYS; k++)
        left[k] = PER;
    int nokey_left = NOKEY;
    for (int i = 0; i < N; i++) {
        /* pick a key with tasks left, or no key, at random */
        int k;
        do {
            k = (int) (lcg(&seed) % (KEYS + 1)) - 1;
        } while (k >= 0 ? left[k] == 0 : nokey_left == 0);
        if (k >= 0)
            left[k]--;
        else
            nokey_left--;
        job_init(&jobs[i], i, k, (int) (lcg(&seed) % 4));
    }
    number_jobs(jobs, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(push_job(q, &jobs[i]), 0);
    assert_int_equal(R.norder, 0); /* nothing starts inside push */

    ferry_queue_stats st;
    ferry_queue_stats_get(q, &st);
    assert_int_equal(st.queued, N);
    assert_int_equal(st.keys, KEYS);
    assert_int_equal(st.running, 0);

    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(jobs[i].started, 1);
        assert_int_equal(jobs[i].finished, 1);
    }
    for (int k = 0; k < KEYS; k++)
        assert_int_equal(R.key_next_seq[k], PER);
    assert_int_equal(R.max_running, 8); /* reached, and (checked per start) never more */
    ferry_queue_stats_get(q, &st);
    assert_int_equal(st.completed, N);
    assert_int_equal(st.pushed, N);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.running, 0);
    assert_int_equal(st.keys, 0); /* per-key state is released once a key is idle */
    close_and_finish(q, &loop);
    free(jobs);
}

static int limit_seen;
static ferry_queue *limit_q;

static void check_limit_on_start(job *j)
{
    (void) j;
    ferry_queue_stats st;
    ferry_queue_stats_get(limit_q, &st);
    assert_true(st.running <= (uint64_t) limit_seen);
    assert_int_equal(st.running, (uint64_t) R.running);
}

/* 200 tasks without a key, concurrency 5, finishing after 1 ms: the stats
 * agree with what the tasks see, and the limit is hit but never passed. */
static void test_concurrency_limit(void **state)
{
    (void) state;
    enum { N = 200 };
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    R.loop = &loop;
    ferry_queue *q = new_queue(&loop, 5);
    limit_q = q;
    limit_seen = 5;
    R.on_start = check_limit_on_start;
    job jobs[N];
    for (int i = 0; i < N; i++) {
        job_init(&jobs[i], i, -1, i % 3 == 0 ? 0 : 1);
        assert_int_equal(push_job(q, &jobs[i]), 0);
    }
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(R.max_running, 5);
    for (int i = 0; i < N; i++) {
        assert_int_equal(jobs[i].finished, 1);
        assert_int_equal(R.order[i], i); /* no keys, no contention for order: push order */
    }
    close_and_finish(q, &loop);
}

/* concurrency 0 = no global limit: 50 keys all run at once, but a key's own
 * tasks still one at a time. */
static void test_no_global_limit(void **state)
{
    (void) state;
    enum { KEYS = 50, N = KEYS * 2 };
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    R.loop = &loop;
    ferry_queue *q = new_queue(&loop, 0);
    job jobs[N];
    for (int i = 0; i < N; i++)
        job_init(&jobs[i], i, i % KEYS, 2);
    number_jobs(jobs, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(push_job(q, &jobs[i]), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(R.max_running, KEYS);
    for (int i = 0; i < N; i++)
        assert_int_equal(jobs[i].finished, 1);
    close_and_finish(q, &loop);
}

/* Tasks without a key obey only the limit: ten of them run side by side,
 * next to a keyed task, and keyed tasks of one key still wait their turn. */
static void test_no_key_tasks(void **state)
{
    (void) state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    R.loop = &loop;
    ferry_queue *q = new_queue(&loop, 16);
    job jobs[14];
    for (int i = 0; i < 10; i++)
        job_init(&jobs[i], i, -1, 5);
    for (int i = 10; i < 14; i++)
        job_init(&jobs[i], i, 7, 1); /* one key, four tasks */
    number_jobs(jobs, 14);
    for (int i = 0; i < 14; i++)
        assert_int_equal(push_job(q, &jobs[i]), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_NOWAIT), 1);
    assert_int_equal(R.running, 11); /* all ten without a key + the key's first */
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(R.max_running, 11);
    assert_int_equal(R.key_next_seq[7], 4);
    close_and_finish(q, &loop);
}

static void expect_order(const int *want, size_t n)
{
    assert_int_equal(R.norder, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(R.order[i], want[i]);
}

/* FIFO across keys, by readiness. With one slot and tasks finishing inside
 * their callback: A1 A2 A3 B1 C1 N1 B2 pushed; runnable at once are A1 B1 C1
 * N1 (push order); A2 becomes runnable when A1 is done and queues behind
 * them; so A2 waits for B1, C1, N1, and B2 (runnable after B1) comes
 * before A3 (runnable after A2). */
static void test_fifo_across_keys(void **state)
{
    (void) state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    R.loop = &loop;
    ferry_queue *q = new_queue(&loop, 1);
    enum { A1, A2, A3, B1, C1, N1, B2, N };
    job jobs[N];
    int keys[N] = {0, 0, 0, 1, 2, -1, 1};
    for (int i = 0; i < N; i++)
        job_init(&jobs[i], i, keys[i], SYNC);
    number_jobs(jobs, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(push_job(q, &jobs[i]), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    expect_order((const int[]){A1, B1, C1, N1, A2, B2, A3}, N);
    close_and_finish(q, &loop);
}

/* The same with two slots and completion from timers: without contention
 * on a key, tasks start in push order; a backlogged key (A) gets a slot per
 * round, not both. */
static void test_fifo_across_keys_async(void **state)
{
    (void) state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    R.loop = &loop;
    ferry_queue *q = new_queue(&loop, 2);
    enum { A1, A2, A3, B1, C1, D1, E1, N };
    job jobs[N];
    int keys[N] = {0, 0, 0, 1, 2, 3, 4};
    for (int i = 0; i < N; i++)
        job_init(&jobs[i], i, keys[i], 2);
    number_jobs(jobs, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(push_job(q, &jobs[i]), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    /* A1 B1 | C1 D1 (A2 became runnable after them) | E1 A2 | A3 */
    expect_order((const int[]){A1, B1, C1, D1, E1, A2, A3}, N);
    assert_int_equal(R.max_running, 2);
    close_and_finish(q, &loop);
}

/* ---- limits on the queue's length --------------------------------------- */

static void test_max_queued(void **state)
{
    (void) state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    R.loop = &loop;
    ferry_queue_options o;
    ferry_queue_options_init(&o);
    o.concurrency = 2;
    o.max_queued = 3;
    ferry_queue *q;
    assert_int_equal(ferry_queue_new(&loop, &o, &q), 0);
    job jobs[8];
    for (int i = 0; i < 8; i++)
        job_init(&jobs[i], i, -1, HOLD);
    for (int i = 0; i < 3; i++)
        assert_int_equal(push_job(q, &jobs[i]), 0);
    assert_int_equal(push_job(q, &jobs[3]), FERRY_EQUEUEFULL);
    assert_null(jobs[3].task);
    ferry_queue_stats st;
    ferry_queue_stats_get(q, &st);
    assert_int_equal(st.queued, 3);
    assert_int_equal(st.rejected, 1);
    assert_int_equal(st.pushed, 3);

    /* Two start; running tasks do not count against max_queued. */
    assert_int_equal(uv_run(&loop, UV_RUN_NOWAIT), 0);
    assert_int_equal(R.running, 2);
    assert_int_equal(push_job(q, &jobs[3]), 0);
    assert_int_equal(push_job(q, &jobs[4]), 0);
    assert_int_equal(push_job(q, &jobs[5]), FERRY_EQUEUEFULL);
    ferry_queue_stats_get(q, &st);
    assert_int_equal(st.queued, 3);
    assert_int_equal(st.running, 2);
    assert_int_equal(st.rejected, 2);

    /* Finish everything by hand, a step at a time. */
    for (int i = 0; i < 5; i++) {
        job_finish(&jobs[i]);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    for (int i = 0; i < 5; i++)
        assert_int_equal(jobs[i].finished, 1);
    assert_int_equal(jobs[5].started, 0); /* a rejected task's callback never runs */
    close_and_finish(q, &loop);
}

static void test_max_queued_per_key(void **state)
{
    (void) state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    R.loop = &loop;
    ferry_queue_options o;
    ferry_queue_options_init(&o);
    o.max_queued_per_key = 2;
    ferry_queue *q;
    assert_int_equal(ferry_queue_new(&loop, &o, &q), 0);
    job jobs[8];
    int keys[8] = {0, 0, 0, 1, 1, -1, -1, -1};
    for (int i = 0; i < 8; i++)
        job_init(&jobs[i], i, keys[i], SYNC);
    number_jobs(jobs, 8);
    assert_int_equal(push_job(q, &jobs[0]), 0);
    assert_int_equal(push_job(q, &jobs[1]), 0);
    assert_int_equal(push_job(q, &jobs[2]), FERRY_EQUEUEFULL); /* a third for key 0 */
    assert_int_equal(push_job(q, &jobs[3]), 0);                /* other keys unaffected */
    assert_int_equal(push_job(q, &jobs[4]), 0);
    for (int i = 5; i < 8; i++) /* the per-key limit does not apply without a key */
        assert_int_equal(push_job(q, &jobs[i]), 0);
    ferry_queue_stats st;
    ferry_queue_stats_get(q, &st);
    assert_int_equal(st.rejected, 1);
    assert_int_equal(st.queued, 7);
    /* Once key 0's first task has started, it has room for one more. */
    R.key_next_seq[0] = 0;
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    jobs[2].seq = 2;
    assert_int_equal(push_job(q, &jobs[2]), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(jobs[2].finished, 1);
    close_and_finish(q, &loop);
}

/* ---- cancel ------------------------------------------------------------------ */

/* One slot, held by X. Queued: B1, C1, C2, D1, A2 behind a running A1 ...
 * cancel a waiting task of a busy key, a runnable head (its successor takes
 * its place in line), a running task (EBUSY), and one twice (EALREADY).
 * Cancellation callbacks run from the loop, before any other task starts. */
static void test_cancel(void **state)
{
    (void) state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    R.loop = &loop;
    ferry_queue *q = new_queue(&loop, 1);
    enum { X, B1, C1, C2, D1, X2, X3, N };
    job jobs[N];
    int keys[N] = {0, 1, 2, 2, 3, 0, 0};
    for (int i = 0; i < N; i++)
        job_init(&jobs[i], i, keys[i], SYNC);
    jobs[X].delay_ms = HOLD;
    number_jobs(jobs, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(push_job(q, &jobs[i]), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_NOWAIT), 0);
    expect_order((const int[]){X}, 1);

    R.in_call++;
    assert_int_equal(ferry_queue_task_cancel(jobs[X].task), FERRY_EBUSY);
    assert_int_equal(ferry_queue_task_cancel(jobs[X2].task), 0); /* waiting behind X */
    assert_int_equal(ferry_queue_task_cancel(jobs[C1].task), 0); /* runnable head of key 2 */
    assert_int_equal(ferry_queue_task_cancel(jobs[C1].task), FERRY_EALREADY);
    R.in_call--;
    assert_int_equal(jobs[C1].cancelled, 0); /* not inside the call */
    ferry_queue_stats st;
    ferry_queue_stats_get(q, &st);
    assert_int_equal(st.queued, 4);
    assert_int_equal(st.cancelled, 2);
    jobs[X3].seq = 1; /* X2 will never run */
    jobs[C2].seq = 0;
    R.key_next_seq[0] = 1;

    /* The callbacks come on the next pass even though the slot is taken. */
    assert_int_equal(uv_run(&loop, UV_RUN_NOWAIT), 0);
    assert_int_equal(R.ncancel, 2);
    assert_int_equal(R.cancel_order[0], X2);
    assert_int_equal(R.cancel_order[1], C1);
    assert_int_equal(R.norder, 1);

    job_finish(&jobs[X]);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    /* C2 took C1's place: before D1; X3 became runnable when X was done. */
    expect_order((const int[]){X, B1, C2, D1, X3}, 5);
    assert_int_equal(jobs[X2].started + jobs[C1].started, 0);
    assert_int_equal(jobs[X2].cancelled + jobs[C1].cancelled, 2);
    ferry_queue_stats_get(q, &st);
    assert_int_equal(st.completed, 5);
    assert_int_equal(st.cancelled, 2);
    assert_int_equal(st.keys, 0);
    close_and_finish(q, &loop);
}

/* Cancelling the only task of a key releases the key's state at once. */
static void test_cancel_releases_key(void **state)
{
    (void) state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    R.loop = &loop;
    ferry_queue *q = new_queue(&loop, 4);
    job j;
    job_init(&j, 0, 5, SYNC);
    assert_int_equal(push_job(q, &j), 0);
    ferry_queue_stats st;
    ferry_queue_stats_get(q, &st);
    assert_int_equal(st.keys, 1);
    assert_int_equal(ferry_queue_task_cancel(j.task), 0);
    ferry_queue_stats_get(q, &st);
    assert_int_equal(st.keys, 0);
    assert_int_equal(st.queued, 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(j.cancelled, 1);
    close_and_finish(q, &loop);
}

/* A running task cancels the next queued one: the cancellation is delivered
 * after its callback returns, and the cancelled task never starts. */
static job *victim;

static void cancel_victim_on_start(job *j)
{
    if (j->id != 0) return;
    R.in_call++;
    assert_int_equal(ferry_queue_task_cancel(victim->task), 0);
    R.in_call--;
    assert_int_equal(victim->cancelled, 0);
}

static void test_cancel_from_callback(void **state)
{
    (void) state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    R.loop = &loop;
    ferry_queue *q = new_queue(&loop, 1);
    job jobs[3];
    for (int i = 0; i < 3; i++)
        job_init(&jobs[i], i, -1, SYNC);
    victim = &jobs[1];
    R.on_start = cancel_victim_on_start;
    for (int i = 0; i < 3; i++)
        assert_int_equal(push_job(q, &jobs[i]), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    expect_order((const int[]){0, 2}, 2);
    assert_int_equal(jobs[1].cancelled, 1);
    close_and_finish(q, &loop);
}

/* The per-turn budget applies to cancellation callbacks too: 100 cancelled
 * with a budget of 10 are not delivered at once: at most 10 between two
 * polls, so one loop iteration (an idle pass with what the check phase left,
 * then a check pass with a fresh 10) delivers 10 to 20. */
static void test_cancel_budget(void **state)
{
    (void) state;
    enum { N = 101 };
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    R.loop = &loop;
    ferry_queue_options o;
    ferry_queue_options_init(&o);
    o.concurrency = 1;
    o.max_starts_per_turn = 10;
    ferry_queue *q;
    assert_int_equal(ferry_queue_new(&loop, &o, &q), 0);
    job jobs[N];
    for (int i = 0; i < N; i++) {
        job_init(&jobs[i], i, -1, i == 0 ? HOLD : SYNC);
        assert_int_equal(push_job(q, &jobs[i]), 0);
    }
    assert_int_equal(uv_run(&loop, UV_RUN_NOWAIT), 0);
    assert_int_equal(R.running, 1);
    ferry_queue_close(q, FERRY_QUEUE_CANCEL, on_closed, &R);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_true(R.ncancel >= 10 && R.ncancel <= 20);
    job_finish(&jobs[0]);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(R.ncancel, N - 1);
    for (int i = 1; i < N; i++)
        assert_int_equal(R.cancel_order[i - 1], i); /* no keys: push order */
    assert_int_equal(R.closed, 1);
    finish_loop(&loop);
}

/* ---- close ---------------------------------------------------------------------- */

/* Two running (5 ms timers), four queued. DRAIN: push is refused, all six
 * finish, then the callback runs once (from the loop). */
static void test_close_drain(void **state)
{
    (void) state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    R.loop = &loop;
    ferry_queue *q = new_queue(&loop, 2);
    job jobs[7];
    for (int i = 0; i < 7; i++)
        job_init(&jobs[i], i, i % 2 ? 1 : -1, 5);
    number_jobs(jobs, 7);
    for (int i = 0; i < 6; i++)
        assert_int_equal(push_job(q, &jobs[i]), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_NOWAIT), 1);
    assert_int_equal(R.running, 2);

    R.in_call++;
    ferry_queue_close(q, FERRY_QUEUE_DRAIN, on_closed, &R);
    R.in_call--;
    assert_int_equal(push_job(q, &jobs[6]), FERRY_ECLOSING);
    ferry_queue_stats st;
    ferry_queue_stats_get(q, &st);
    assert_int_equal(st.closing, 1);
    assert_int_equal(st.queued, 4);
    assert_int_equal(st.rejected, 0); /* ECLOSING is not a full queue */
    assert_int_equal(ferry_queue_free(q), FERRY_EBUSY);
    assert_int_equal(R.closed, 0);

    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(R.closed, 1);
    for (int i = 0; i < 6; i++)
        assert_int_equal(jobs[i].finished, 1);
    assert_int_equal(jobs[6].started + jobs[6].cancelled, 0);
    finish_loop(&loop);
}

/* CANCEL: the four queued get FERRY_ECANCELED (each key's in push order),
 * the two running finish, then the callback. A second close with a callback
 * does not replace the first one's. */
static int second_cb_calls;

static void on_closed_second(ferry_queue *q, void *data)
{
    (void) q;
    (void) data;
    second_cb_calls++;
}

static void test_close_cancel(void **state)
{
    (void) state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    R.loop = &loop;
    second_cb_calls = 0;
    ferry_queue *q = new_queue(&loop, 2);
    job jobs[6];
    int keys[6] = {0, 1, 0, 0, -1, 1};
    for (int i = 0; i < 6; i++)
        job_init(&jobs[i], i, keys[i], 5);
    number_jobs(jobs, 6);
    for (int i = 0; i < 6; i++)
        assert_int_equal(push_job(q, &jobs[i]), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_NOWAIT), 1);
    expect_order((const int[]){0, 1}, 2);

    R.in_call++;
    ferry_queue_close(q, FERRY_QUEUE_CANCEL, on_closed, &R);
    ferry_queue_close(q, FERRY_QUEUE_CANCEL, on_closed_second, NULL);
    R.in_call--;
    assert_int_equal(R.ncancel, 0);
    ferry_queue_stats st;
    ferry_queue_stats_get(q, &st);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.running, 2);
    assert_int_equal(st.cancelled, 4);
    assert_int_equal(st.keys, 2); /* the running tasks' keys */

    assert_int_equal(uv_run(&loop, UV_RUN_NOWAIT), 1);
    assert_int_equal(R.ncancel, 4); /* delivered while the two still run */
    assert_int_equal(R.running, 2);
    int pos2 = -1, pos3 = -1;
    for (int i = 0; i < 4; i++) {
        if (R.cancel_order[i] == 2) pos2 = i;
        if (R.cancel_order[i] == 3) pos3 = i;
    }
    assert_true(pos2 >= 0 && pos3 > pos2);
    assert_int_equal(R.closed, 0);

    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(R.closed, 1);
    assert_int_equal(second_cb_calls, 0);
    assert_int_equal(jobs[0].finished + jobs[1].finished, 2);
    for (int i = 2; i < 6; i++) {
        assert_int_equal(jobs[i].started, 0);
        assert_int_equal(jobs[i].cancelled, 1);
    }
    finish_loop(&loop);
}

/* DRAIN first, then CANCEL: the second call cancels what is still queued. */
static void test_close_drain_then_cancel(void **state)
{
    (void) state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    R.loop = &loop;
    ferry_queue *q = new_queue(&loop, 1);
    job jobs[4];
    for (int i = 0; i < 4; i++)
        job_init(&jobs[i], i, 3, 3);
    number_jobs(jobs, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(push_job(q, &jobs[i]), 0);
    ferry_queue_close(q, FERRY_QUEUE_DRAIN, NULL, NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_NOWAIT), 1);       /* job 0 runs */
    ferry_queue_close(q, FERRY_QUEUE_CANCEL, on_closed, &R); /* adds the callback */
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(R.closed, 1);
    assert_int_equal(jobs[0].finished, 1);
    assert_int_equal(R.ncancel, 3);
    finish_loop(&loop);
}

/* Closing an empty queue: the callback still comes from the loop. */
static void test_close_empty(void **state)
{
    (void) state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    R.loop = &loop;
    ferry_queue *q = new_queue(&loop, 1);
    close_and_finish(q, &loop);
}

/* A task closes its own queue from its callback (DRAIN): the tasks already
 * queued still run; the close completes after the last. */
static ferry_queue *self_close_q;

static void close_on_start(job *j)
{
    if (j->id != 0) return;
    R.in_call++;
    ferry_queue_close(self_close_q, FERRY_QUEUE_DRAIN, on_closed, &R);
    R.in_call--;
}

static void test_close_from_task(void **state)
{
    (void) state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    R.loop = &loop;
    ferry_queue *q = new_queue(&loop, 4);
    self_close_q = q;
    R.on_start = close_on_start;
    job jobs[5];
    for (int i = 0; i < 5; i++) {
        job_init(&jobs[i], i, 9, i < 3 ? SYNC : 1);
    }
    number_jobs(jobs, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(push_job(q, &jobs[i]), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(R.closed, 1);
    for (int i = 0; i < 5; i++)
        assert_int_equal(jobs[i].finished, 1);
    finish_loop(&loop);
}

/* ---- tasks that finish inside their own callback --------------------------- */

static uintptr_t stack_lo, stack_hi;
static uint64_t sync_runs;

/* The frame address, not a local's: AddressSanitizer may move locals to a
 * heap-allocated "fake stack". */
static void note_stack(void)
{
    uintptr_t p = (uintptr_t) __builtin_frame_address(0);
    if (stack_lo == 0 || p < stack_lo) stack_lo = p;
    if (p > stack_hi) stack_hi = p;
}

static void sync_cb(ferry_queue_task *t, int status, void *data)
{
    (void) data;
    assert_int_equal(status, 0);
    note_stack();
    sync_runs++;
    ferry_queue_task_done(t);
}

static void on_prepare_tick(uv_prepare_t *p)
{
    (void) p;
    R.iterations++;
}

/* 100,000 tasks that call done inside their callback, with `key_mode`:
 * 0 none, 1 all one key, 2 each its own key. The stack depth at the callback
 * stays the same (no recursion), and with the default budget the loop
 * polls between batches of 1024. */
static void run_sync(uint32_t budget, int key_mode)
{
    enum { N = 100000 };
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    R.loop = &loop;
    ferry_queue_options o;
    ferry_queue_options_init(&o);
    o.max_queued = N;
    o.max_starts_per_turn = budget;
    ferry_queue *q;
    assert_int_equal(ferry_queue_new(&loop, &o, &q), 0);
    uv_prepare_t tick;
    assert_int_equal(uv_prepare_init(&loop, &tick), 0);
    assert_int_equal(uv_prepare_start(&tick, on_prepare_tick), 0);
    uv_unref((uv_handle_t *) &tick);
    stack_lo = stack_hi = 0;
    sync_runs = 0;
    for (uint32_t i = 0; i < N; i++) {
        char key[16];
        int n = snprintf(key, sizeof(key), "k%u", key_mode == 2 ? i : 0);
        assert_int_equal(ferry_queue_push(q, key_mode ? key : NULL, key_mode ? (size_t) n : 0,
                                          sync_cb, NULL, NULL),
                         0);
    }
    ferry_queue_stats st;
    ferry_queue_stats_get(q, &st);
    assert_int_equal(st.keys, key_mode == 2 ? N : key_mode);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(sync_runs, N);
    assert_true(stack_hi - stack_lo < 1024); /* recursion would take megabytes */
    ferry_queue_stats_get(q, &st);
    assert_int_equal(st.completed, N);
    assert_int_equal(st.keys, 0);
    if (budget != 0) assert_true(R.iterations >= N / budget); /* the loop polled between batches */
    uv_close((uv_handle_t *) &tick, NULL);
    close_and_finish(q, &loop);
}

static void test_sync_completion_100k(void **state)
{
    (void) state;
    run_sync(1024, 0);
}

static void test_sync_completion_100k_one_key(void **state)
{
    (void) state;
    run_sync(1024, 1);
}

static void test_sync_completion_100k_keys(void **state)
{
    (void) state;
    run_sync(1024, 2); /* also grows the key table to 100k keys and back */
}

static void test_sync_completion_100k_no_budget(void **state)
{
    (void) state;
    run_sync(0, 0); /* all in one pass: still no recursion */
}

/* A task that pushes its successor (same key) and finishes at once, 10,000
 * deep: a chain built from inside callbacks. */
static ferry_queue *chain_q;
static int chain_left;

static void chain_cb(ferry_queue_task *t, int status, void *data)
{
    (void) data;
    assert_int_equal(status, 0);
    note_stack();
    if (--chain_left > 0)
        assert_int_equal(ferry_queue_push(chain_q, "chain", 5, chain_cb, NULL, NULL), 0);
    ferry_queue_task_done(t);
}

static void test_chain_from_callbacks(void **state)
{
    (void) state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    R.loop = &loop;
    chain_q = new_queue(&loop, 4);
    chain_left = 10000;
    stack_lo = stack_hi = 0;
    assert_int_equal(ferry_queue_push(chain_q, "chain", 5, chain_cb, NULL, NULL), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(chain_left, 0);
    assert_true(stack_hi - stack_lo < 1024);
    close_and_finish(chain_q, &loop);
}

/* ---- when tasks start ------------------------------------------------------------ */

/* R.iterations counts loop iterations (a prepare handle runs once per
 * iteration, after the idle phase and before the poll). */
static uint64_t pushed_at, started_at;
static ferry_queue *phase_q;
static uv_async_t phase_async;
static uv_timer_t phase_marker; /* a 0 ms timer started next to the push */
static int marker_before_start; /* it fired before the task started */

static void phase_cb(ferry_queue_task *t, int status, void *data)
{
    (void) data;
    assert_int_equal(status, 0);
    started_at = R.iterations;
    ferry_queue_task_done(t);
}

static void push_phase_task(void)
{
    pushed_at = R.iterations;
    started_at = UINT64_MAX;
    assert_int_equal(ferry_queue_push(phase_q, "p", 1, phase_cb, NULL, NULL), 0);
    assert_int_equal(started_at, UINT64_MAX);
}

static void on_phase_timer(uv_timer_t *t)
{
    push_phase_task();
    uv_close((uv_handle_t *) t, NULL);
}

static void on_phase_marker(uv_timer_t *t)
{
    marker_before_start = started_at == UINT64_MAX;
    uv_close((uv_handle_t *) t, NULL);
}

static void on_phase_async(uv_async_t *a)
{
    push_phase_task();
    /* Due at the next iteration's timer phase, which comes before its idle
     * phase: it fires first only if the task did not start in this
     * iteration's check phase. */
    assert_int_equal(uv_timer_init(R.loop, &phase_marker), 0);
    assert_int_equal(uv_timer_start(&phase_marker, on_phase_marker, 0, 0), 0);
    uv_close((uv_handle_t *) a, NULL);
}

static void test_start_latency(void **state)
{
    (void) state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    R.loop = &loop;
    phase_q = new_queue(&loop, 4);
    uv_prepare_t tick;
    assert_int_equal(uv_prepare_init(&loop, &tick), 0);
    assert_int_equal(uv_prepare_start(&tick, on_prepare_tick), 0);
    uv_unref((uv_handle_t *) &tick);

    /* From a timer callback: started in the same iteration's idle phase,
     * before the prepare tick (so before the poll). */
    uv_timer_t timer;
    assert_int_equal(uv_timer_init(&loop, &timer), 0);
    assert_int_equal(uv_timer_start(&timer, on_phase_timer, 1, 0), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(started_at, pushed_at);

    /* From an I/O callback (the async's eventfd is read in the poll phase):
     * started in the same iteration's check phase, before the next tick. */
    assert_int_equal(uv_async_init(&loop, &phase_async, on_phase_async), 0);
    assert_int_equal(uv_async_send(&phase_async), 0);
    marker_before_start = -1;
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(started_at, pushed_at);
    assert_int_equal(marker_before_start, 0);

    uv_close((uv_handle_t *) &tick, NULL);
    close_and_finish(phase_q, &loop);
}

/* An idle queue neither spins nor keeps the loop alive: with one task held
 * open, uv_run returns at once, having run a bounded number of iterations. */
static void test_idle_queue_does_not_spin(void **state)
{
    (void) state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    R.loop = &loop;
    ferry_queue *q = new_queue(&loop, 1);
    uv_prepare_t tick;
    assert_int_equal(uv_prepare_init(&loop, &tick), 0);
    assert_int_equal(uv_prepare_start(&tick, on_prepare_tick), 0);
    uv_unref((uv_handle_t *) &tick);
    job jobs[3];
    for (int i = 0; i < 3; i++)
        job_init(&jobs[i], i, -1, HOLD);
    for (int i = 0; i < 3; i++)
        assert_int_equal(push_job(q, &jobs[i]), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0); /* one held, two waiting: nothing to do */
    assert_true(R.iterations <= 2);
    assert_int_equal(R.running, 1);
    for (int i = 0; i < 3; i++) {
        job_finish(&jobs[i]);
        assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(jobs[i].finished, 1);
    uv_close((uv_handle_t *) &tick, NULL);
    close_and_finish(q, &loop);
}

/* ---- keys ---------------------------------------------------------------------- */

/* Keys are byte strings: copied, compared by length and bytes (NUL inside
 * is fine), and the empty key is a key, unlike NULL. */
static void test_key_identity(void **state)
{
    (void) state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    R.loop = &loop;
    ferry_queue *q = new_queue(&loop, 16);
    char buf[8];
    memcpy(buf, "user", 4);
    assert_int_equal(ferry_queue_push(q, buf, 4, sync_cb, NULL, NULL), 0);
    memcpy(buf, "xxxx", 4); /* the queue kept its own copy */
    memcpy(buf, "user", 4);
    assert_int_equal(ferry_queue_push(q, buf, 4, sync_cb, NULL, NULL), 0);
    assert_int_equal(ferry_queue_push(q, "use", 3, sync_cb, NULL, NULL), 0);
    assert_int_equal(ferry_queue_push(q, "a\0b", 3, sync_cb, NULL, NULL), 0);
    assert_int_equal(ferry_queue_push(q, "a\0c", 3, sync_cb, NULL, NULL), 0);
    assert_int_equal(ferry_queue_push(q, "", 0, sync_cb, NULL, NULL), 0);
    assert_int_equal(ferry_queue_push(q, "", 0, sync_cb, NULL, NULL), 0);
    assert_int_equal(ferry_queue_push(q, NULL, 0, sync_cb, NULL, NULL), 0);
    ferry_queue_stats st;
    ferry_queue_stats_get(q, &st);
    assert_int_equal(st.keys, 5); /* user, use, a\0b, a\0c, "" */
    assert_int_equal(st.queued, 8);
    sync_runs = 0;
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(sync_runs, 8);
    close_and_finish(q, &loop);
}

/* ---- the hash ------------------------------------------------------------------ */

/* SipHash-2-4 against the paper's vectors (key 00..0f, message 00..len-1)
 * checks the shared round function; SipHash-1-3 against values CPython
 * (which uses it for bytes) and other implementations give for a zero key. */
static void test_siphash_vectors(void **state)
{
    (void) state;
    uint8_t key[16], msg[64];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t) i;
    for (int i = 0; i < 64; i++)
        msg[i] = (uint8_t) i;
    assert_true(siphash24(key, msg, 0) == UINT64_C(0x726fdb47dd0e0e31));
    assert_true(siphash24(key, msg, 7) == UINT64_C(0xab0200f58b01d137));
    assert_true(siphash24(key, msg, 8) == UINT64_C(0x93f5f5799a932462));
    assert_true(siphash24(key, msg, 15) == UINT64_C(0xa129ca6149be45e5));
    assert_true(siphash24(key, msg, 63) == UINT64_C(0x958a324ceb064572));
    uint8_t zero[16] = {0};
    assert_true(siphash13(zero, "", 0) == UINT64_C(0xd1fba762150c532c));
    assert_true(siphash13(zero, "siphash", 7) == UINT64_C(0x8264ceeccb16bcbe));
    assert_true(siphash13(zero, "digest-sip_hash", 15) == UINT64_C(0xce31007e34130c0a));
    const char *s = "hello world, a longer key!";
    assert_true(siphash13(zero, s, strlen(s)) == UINT64_C(0x3f1b165910b45245));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_options_defaults, setup),
        cmocka_unit_test_setup(test_invalid_arguments, setup),
        cmocka_unit_test_setup(test_per_key_order_async, setup),
        cmocka_unit_test_setup(test_concurrency_limit, setup),
        cmocka_unit_test_setup(test_no_global_limit, setup),
        cmocka_unit_test_setup(test_no_key_tasks, setup),
        cmocka_unit_test_setup(test_fifo_across_keys, setup),
        cmocka_unit_test_setup(test_fifo_across_keys_async, setup),
        cmocka_unit_test_setup(test_max_queued, setup),
        cmocka_unit_test_setup(test_max_queued_per_key, setup),
        cmocka_unit_test_setup(test_cancel, setup),
        cmocka_unit_test_setup(test_cancel_releases_key, setup),
        cmocka_unit_test_setup(test_cancel_from_callback, setup),
        cmocka_unit_test_setup(test_cancel_budget, setup),
        cmocka_unit_test_setup(test_close_drain, setup),
        cmocka_unit_test_setup(test_close_cancel, setup),
        cmocka_unit_test_setup(test_close_drain_then_cancel, setup),
        cmocka_unit_test_setup(test_close_empty, setup),
        cmocka_unit_test_setup(test_close_from_task, setup),
        cmocka_unit_test_setup(test_sync_completion_100k, setup),
        cmocka_unit_test_setup(test_sync_completion_100k_one_key, setup),
        cmocka_unit_test_setup(test_sync_completion_100k_keys, setup),
        cmocka_unit_test_setup(test_sync_completion_100k_no_budget, setup),
        cmocka_unit_test_setup(test_chain_from_callbacks, setup),
        cmocka_unit_test_setup(test_start_latency, setup),
        cmocka_unit_test_setup(test_idle_queue_does_not_spin, setup),
        cmocka_unit_test_setup(test_key_identity, setup),
        cmocka_unit_test_setup(test_siphash_vectors, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
