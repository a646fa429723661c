/* queue.c — ferry_queue: asynchronous tasks under a concurrency limit, with
 * optional per-key serialisation (the API and its contract are in ferry.h,
 * the guide in docs/queue.md).
 *
 * What it owns: the tasks (allocated by push, freed by done or after their
 * cancellation callback), one `qkey` per key that has a task queued or
 * running (holding the queue's copy of the key bytes), the key table, and two
 * libuv handles (an idle and a check watcher) that run the dispatcher.
 *
 * Data structures and their costs:
 *   - Each key keeps a FIFO of its waiting tasks (doubly linked, so a cancel
 *     from the middle is O(1)) and a `running` flag.
 *   - One global *ready list* holds every runnable task: tasks without a key,
 *     and the first waiting task of each key that has nothing running. A
 *     slot that frees starts the ready list's head: O(1), no scan over
 *     queued tasks and no test of busy keys (a busy key's tasks are never on
 *     the list). Entries are appended when they become runnable: at push
 *     (no key, or a key with nothing queued or running) or when a key's
 *     running task is done (its next task goes to the tail). Cancelling a
 *     ready task puts its key's next task in its place, O(1).
 *   - Starting the oldest *pushed* runnable task instead would be a priority
 *     queue problem: a key's next task becomes runnable long after it was
 *     pushed and would have to go into the middle of the list (a heap over
 *     the ready keys: O(log keys) per start). FIFO by readiness is O(1) and
 *     is the fairer rule for per-user queues: a key with a backlog gets one
 *     turn per round instead of holding the front (see ferry.h, "Order").
 *   - Keys are found in a chained hash table, O(1) average per push, done
 *     and cancel: power-of-two buckets, doubled when there are more keys
 *     than buckets, halved when under one in eight (the hysteresis keeps a
 *     key that comes and goes from resizing every time). Chains compare the
 *     stored 64-bit hash before the bytes. A `qkey` is freed as soon as its
 *     key has nothing queued or running, so a server keyed by user id holds
 *     state only for the users with work in flight.
 *   - The hash is SipHash-1-3 under a random per-queue key (siphash.c):
 *     keys usually come from clients (user ids, addresses), and a fixed
 *     hash would let a client send keys that all collide, turning every
 *     lookup into a scan of one long chain.
 * Memory: one task (~80 bytes) per queued or running task, one qkey (~64
 * bytes + the key) per live key, one pointer per bucket.
 *
 * Why a hash table of our own: Debian packages some, none that fits.
 * uthash (uthash-dev) is macros that exit() the process when malloc fails
 * unless every user redefines uthash_fatal, and hashes unkeyed by default;
 * GLib's GHashTable brings GLib and aborts on out-of-memory; Concurrency
 * Kit's ck_ht is built for lock-free sharing we do not need. POSIX
 * hsearch_r() cannot delete an entry (there is no hdelete), has a size
 * fixed at hcreate_r() and takes NUL-terminated string keys only, so the
 * per-key state of a long-running server could never be released. The
 * table below is ~80 lines.
 *
 * Dispatching: tasks never start inside ferry_queue_push, and callbacks
 * never run inside done, cancel or close (libuv's rule: a callback never
 * fires inside the call that registered it). Whenever there is something to
 * do (a runnable task and a free slot, a cancellation to deliver, a close to
 * finish), both handles are started; the first of the loop's idle phase
 * (before it polls for I/O) or check phase (right after) runs a *pass*. So a
 * push from a timer callback starts in the same iteration's idle phase, and
 * one from an I/O callback in the same iteration's check phase: no extra
 * loop iteration and no extra poll either way. With nothing to do, both
 * handles are stopped, so an idle queue neither spins nor keeps the loop
 * alive.
 *
 * A pass starts tasks until the slots or the ready list run out. A task
 * that calls ferry_queue_task_done inside its own callback only frees its
 * slot and returns; the pass's loop then starts the next one, so any number
 * of tasks that finish synchronously run iteratively, at constant stack
 * depth. Starts (and cancellation callbacks) are counted from one check
 * phase to the next, and a pass stops when max_starts_per_turn is used up:
 * at most that many happen between two polls for I/O, so a long queue of
 * instant tasks cannot starve the loop's sockets. (An idle-phase pass uses
 * what the previous check phase left; after a long quiet spell that may be
 * little, which costs at most one non-blocking poll before the check phase
 * refills it.)
 *
 * Closing: push refuses (FERRY_ECLOSING); DRAIN lets queued tasks run,
 * CANCEL moves them to the cancelled list. Once nothing is queued, running
 * or waiting for its cancellation callback, the handles are closed, and the
 * user's callback runs from the last handle's close callback, after which
 * nothing touches the queue (so it may be freed from there).
 */
#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/closer.h"
#include "core/list.h"
#include "core/options.h"
#include "ferry.h"
#include "util/siphash.h"

#define KEYTAB_MIN_BUCKETS 16

/* ---- types ----------------------------------------------------------------- */

typedef struct qkey {
    struct qkey *hnext; /* next in its bucket's chain */
    uint64_t hash;
    list_link waiting; /* its queued tasks (klink), in push order */
    size_t nwaiting;
    bool running; /* one of its tasks is running */
    size_t len;
    unsigned char bytes[]; /* the queue's copy of the key */
} qkey;

typedef enum { T_QUEUED, T_RUNNING, T_CANCELLED } task_state;

struct ferry_queue_task {
    ferry_queue *q;
    qkey *key; /* NULL: no key (and once cancelled) */
    ferry_task_cb cb;
    void *data;
    list_link klink; /* in key->waiting while queued under a key */
    list_link rlink; /* in q->ready while runnable; in q->cancelled once cancelled */
    uint8_t state;
    bool ready; /* rlink is in q->ready */
};

typedef enum { Q_OPEN, Q_CLOSING, Q_HANDLES_CLOSING, Q_CLOSED } queue_state;

struct ferry_queue {
    uv_loop_t *loop;
    ferry_queue_options opt;
    uv_idle_t idle;   /* runs a pass before the poll; also keeps the poll from blocking */
    uv_check_t check; /* runs a pass right after the poll */
    list_link ready;      /* runnable tasks, in the order they became runnable */
    list_link cancelled;  /* cancelled tasks whose callback has not run yet */
    /* the key table */
    qkey **buckets;
    size_t mask; /* buckets - 1; a power of two minus one */
    size_t nkeys;
    uint8_t seed[16];
    /* counts */
    uint64_t running;
    uint64_t queued;
    uint64_t pushed, completed, ncancelled, rejected;
    /* state */
    queue_state state;
    closer closer;
    bool armed;         /* idle and check started */
    bool dispatching;   /* inside a pass: done/cancel/push/close leave the re-arming to it */
    uint32_t turn_left; /* starts left before the next poll (reset in the check phase) */
    ferry_queue_close_cb close_cb;
    void *close_data;
};

/* ---- key table ------------------------------------------------------------- */

static uint64_t key_hash(const ferry_queue *q, const void *key, size_t len)
{
    return siphash13(q->seed, key, len);
}

static qkey *key_find(const ferry_queue *q, const void *key, size_t len, uint64_t hash)
{
    for (qkey *k = q->buckets[hash & q->mask]; k != NULL; k = k->hnext) {
        if (k->hash == hash && k->len == len && memcmp(k->bytes, key, len) == 0) return k;
    }
    return NULL;
}

/* Rehash into `nbuckets` (a power of two). On allocation failure the table
 * stays as it is: longer chains, still correct. */
static void keytab_resize(ferry_queue *q, size_t nbuckets)
{
    qkey **nb = calloc(nbuckets, sizeof(*nb));
    if (nb == NULL) return;
    for (size_t i = 0; i <= q->mask; i++) {
        qkey *k = q->buckets[i];
        while (k != NULL) {
            qkey *next = k->hnext;
            size_t j = (size_t) (k->hash & (nbuckets - 1));
            k->hnext = nb[j];
            nb[j] = k;
            k = next;
        }
    }
    free(q->buckets);
    q->buckets = nb;
    q->mask = nbuckets - 1;
}

static qkey *key_create(ferry_queue *q, const void *key, size_t len, uint64_t hash)
{
    qkey *k = malloc(sizeof(*k) + len);
    if (k == NULL) return NULL;
    k->hash = hash;
    list_init(&k->waiting);
    k->nwaiting = 0;
    k->running = false;
    k->len = len;
    if (len > 0) memcpy(k->bytes, key, len);
    size_t i = (size_t) (hash & q->mask);
    k->hnext = q->buckets[i];
    q->buckets[i] = k;
    q->nkeys++;
    if (q->nkeys > q->mask + 1 && q->mask < SIZE_MAX / 2 / sizeof(qkey *))
        keytab_resize(q, (q->mask + 1) * 2);
    return k;
}

/* Free `k` if nothing is queued or running under it. */
static void key_release(ferry_queue *q, qkey *k, bool may_shrink)
{
    if (k->running || k->nwaiting > 0) return;
    qkey **pp = &q->buckets[k->hash & q->mask];
    while (*pp != k)
        pp = &(*pp)->hnext;
    *pp = k->hnext;
    free(k);
    q->nkeys--;
    if (may_shrink && q->mask + 1 > KEYTAB_MIN_BUCKETS && q->nkeys < (q->mask + 1) / 8)
        keytab_resize(q, (q->mask + 1) / 2);
}

/* ---- dispatching ------------------------------------------------------------ */

static ferry_queue_task *task_of_rlink(list_link *l)
{
    return container_of(l, ferry_queue_task, rlink);
}

static ferry_queue_task *task_of_klink(list_link *l)
{
    return container_of(l, ferry_queue_task, klink);
}

static void ready_append(ferry_queue *q, ferry_queue_task *t)
{
    list_append(&q->ready, &t->rlink);
    t->ready = true;
}

static bool can_start(const ferry_queue *q)
{
    return !list_empty(&q->ready) && (q->opt.concurrency == 0 || q->running < q->opt.concurrency);
}

static bool has_work(const ferry_queue *q)
{
    return !list_empty(&q->cancelled) || can_start(q);
}

static void on_idle(uv_idle_t *h);
static void on_check(uv_check_t *h);
static void on_handles_closed(closer *c);

static void handles_arm(ferry_queue *q)
{
    if (q->armed) return;
    q->armed = true;
    uv_idle_start(&q->idle, on_idle);
    uv_check_start(&q->check, on_check);
}

static void handles_disarm(ferry_queue *q)
{
    if (!q->armed) return;
    q->armed = false;
    uv_idle_stop(&q->idle);
    uv_check_stop(&q->check);
}

/* Called after anything that may create work or end it: arm the handles if
 * a pass has something to do, stop them otherwise, and finish a close once
 * the queue is empty. Inside a pass it does nothing; the pass calls it on
 * its way out. */
static void queue_kick(ferry_queue *q)
{
    if (q->dispatching || q->state >= Q_HANDLES_CLOSING) return;
    if (has_work(q)) {
        handles_arm(q);
        return;
    }
    handles_disarm(q);
    if (q->state == Q_CLOSING && q->queued == 0 && q->running == 0) {
        q->state = Q_HANDLES_CLOSING;
        closer_begin(&q->closer, on_handles_closed);
        closer_handle(&q->closer, (uv_handle_t *) &q->idle);
        closer_handle(&q->closer, (uv_handle_t *) &q->check);
        closer_end(&q->closer);
    }
}

/* Start the ready list's head. Its callback may push, cancel, close, or call
 * done on itself or any other running task: every one of those only edits
 * lists and counters while q->dispatching is set. */
static void task_start(ferry_queue *q)
{
    ferry_queue_task *t = task_of_rlink(q->ready.next);
    list_remove(&t->rlink);
    t->ready = false;
    qkey *k = t->key;
    if (k != NULL) {
        list_remove(&t->klink);
        k->nwaiting--;
        k->running = true;
    }
    q->queued--;
    q->running++;
    t->state = T_RUNNING;
    t->cb(t, 0, t->data); /* t may be gone from here on */
}

static void cancelled_deliver(ferry_queue *q)
{
    ferry_queue_task *t = task_of_rlink(q->cancelled.next);
    list_remove(&t->rlink);
    t->cb(t, FERRY_ECANCELED, t->data);
    free(t);
}

/* One pass: deliver cancellations, then start runnable tasks while there are
 * free slots and turn_left allows. Iterative: a task finishing inside its own
 * callback just frees a slot for the next round of this loop. */
static void queue_pass(ferry_queue *q)
{
    bool unlimited = q->opt.max_starts_per_turn == 0;
    q->dispatching = true;
    while (q->turn_left > 0) {
        if (!list_empty(&q->cancelled))
            cancelled_deliver(q);
        else if (can_start(q))
            task_start(q);
        else
            break;
        if (!unlimited) q->turn_left--;
    }
    q->dispatching = false;
    queue_kick(q); /* out of budget with work left: stays armed for the check phase */
}

/* The budget counts from one check phase (just after a poll) to the next, so
 * at most max_starts_per_turn starts happen between two polls. An idle pass
 * with no budget left does nothing: the idle handle still keeps the poll
 * from blocking, and the check pass right after it continues. */
static void on_idle(uv_idle_t *h)
{
    queue_pass(h->data);
}

static void on_check(uv_check_t *h)
{
    ferry_queue *q = h->data;
    q->turn_left = q->opt.max_starts_per_turn ? q->opt.max_starts_per_turn : 1;
    queue_pass(q);
}

static void on_handles_closed(closer *c)
{
    ferry_queue *q = container_of(c, ferry_queue, closer);
    q->state = Q_CLOSED;
    if (q->close_cb != NULL) q->close_cb(q, q->close_data); /* may free q: nothing after this */
}

/* ---- public API --------------------------------------------------------------- */

static void queue_options_defaults(ferry_queue_options *o)
{
    memset(o, 0, sizeof(*o));
    o->concurrency = 16;
    o->max_queued = 10000;
    o->max_queued_per_key = 0;
    o->max_starts_per_turn = 1024;
}

void ferry_queue_options_init_sized(ferry_queue_options *o, size_t size)
{
    ferry_queue_options def;
    queue_options_defaults(&def);
    options_init_sized(o, size, &def, sizeof(def));
}

/* Allocates the queue (owner: the caller, released by ferry_queue_free after
 * ferry_queue_close's callback). */
int ferry_queue_new(uv_loop_t *loop, const ferry_queue_options *o, ferry_queue **out)
{
    if (out == NULL) return FERRY_EINVAL;
    *out = NULL;
    if (loop == NULL) return FERRY_EINVAL;
    ferry_queue_options opt; /* the caller's, perhaps from an older header, over our defaults */
    queue_options_defaults(&opt);
    if (o != NULL && options_copy(&opt, sizeof(opt), o, QUEUE_OPTIONS_V1_SIZE) != 0)
        return FERRY_EINVAL;
    o = &opt;
    ferry_queue *q = calloc(1, sizeof(*q));
    if (q == NULL) return FERRY_ENOMEM;
    q->buckets = calloc(KEYTAB_MIN_BUCKETS, sizeof(*q->buckets));
    if (q->buckets == NULL) {
        free(q);
        return FERRY_ENOMEM;
    }
    q->mask = KEYTAB_MIN_BUCKETS - 1;
    /* getrandom(2) through libuv, synchronously. Should it fail, a seed
     * from the clock and an address still differs per process and queue. */
    if (uv_random(NULL, NULL, q->seed, sizeof(q->seed), 0, NULL) != 0) {
        uint64_t a = uv_hrtime(), b = (uint64_t) (uintptr_t) q;
        memcpy(q->seed, &a, sizeof(a));
        memcpy(q->seed + 8, &b, sizeof(b));
    }
    q->loop = loop;
    q->opt = *o;
    q->turn_left = o->max_starts_per_turn ? o->max_starts_per_turn : 1;
    list_init(&q->ready);
    list_init(&q->cancelled);
    uv_idle_init(loop, &q->idle);
    uv_check_init(loop, &q->check);
    q->idle.data = q;
    q->check.data = q;
    q->state = Q_OPEN;
    *out = q;
    return 0;
}

int ferry_queue_push(ferry_queue *q, const void *key, size_t key_len, ferry_task_cb cb, void *data,
                     ferry_queue_task **out)
{
    if (out != NULL) *out = NULL;
    if (q == NULL || cb == NULL || (key == NULL && key_len != 0) ||
        key_len > SIZE_MAX - sizeof(qkey))
        return FERRY_EINVAL;
    if (q->state != Q_OPEN) return FERRY_ECLOSING;
    if (q->opt.max_queued != 0 && q->queued >= q->opt.max_queued) {
        q->rejected++;
        return FERRY_EQUEUEFULL;
    }
    qkey *k = NULL;
    uint64_t hash = 0;
    if (key != NULL) {
        hash = key_hash(q, key, key_len);
        k = key_find(q, key, key_len, hash);
        if (k != NULL && q->opt.max_queued_per_key != 0 &&
            k->nwaiting >= q->opt.max_queued_per_key) {
            q->rejected++;
            return FERRY_EQUEUEFULL;
        }
    }
    ferry_queue_task *t = malloc(sizeof(*t));
    if (t == NULL) return FERRY_ENOMEM;
    if (key != NULL && k == NULL) {
        k = key_create(q, key, key_len, hash);
        if (k == NULL) {
            free(t);
            return FERRY_ENOMEM;
        }
    }
    t->q = q;
    t->key = k;
    t->cb = cb;
    t->data = data;
    t->state = T_QUEUED;
    t->ready = false;
    list_init(&t->rlink);
    list_init(&t->klink);
    if (k != NULL) {
        /* Runnable now only if the key has nothing ahead of it. */
        bool first = !k->running && k->nwaiting == 0;
        list_insert_before(&k->waiting, &t->klink);
        k->nwaiting++;
        if (first) ready_append(q, t);
    } else {
        ready_append(q, t);
    }
    q->queued++;
    q->pushed++;
    if (out != NULL) *out = t;
    queue_kick(q);
    return 0;
}

void ferry_queue_task_done(ferry_queue_task *t)
{
    if (t == NULL) return;
    ferry_queue *q = t->q;
    assert(t->state == T_RUNNING);
    qkey *k = t->key;
    q->running--;
    q->completed++;
    if (k != NULL) {
        k->running = false;
        if (!list_empty(&k->waiting))
            ready_append(q, task_of_klink(k->waiting.next));
        else
            key_release(q, k, true);
    }
    free(t);
    queue_kick(q);
}

/* Take a queued task out of line and onto the cancelled list. If it was
 * runnable, its key's next task takes its place in the ready list, so that
 * key loses nothing. */
static void task_cancel(ferry_queue *q, ferry_queue_task *t, bool may_shrink)
{
    qkey *k = t->key;
    if (t->ready) {
        if (k != NULL && t->klink.next != &k->waiting) {
            ferry_queue_task *next = task_of_klink(t->klink.next);
            list_insert_before(&t->rlink, &next->rlink);
            next->ready = true;
        }
        list_remove(&t->rlink);
        t->ready = false;
    }
    if (k != NULL) {
        list_remove(&t->klink);
        k->nwaiting--;
        t->key = NULL;
        key_release(q, k, may_shrink);
    }
    q->queued--;
    q->ncancelled++;
    t->state = T_CANCELLED;
    list_insert_before(&q->cancelled, &t->rlink);
}

int ferry_queue_task_cancel(ferry_queue_task *t)
{
    if (t == NULL) return FERRY_EINVAL;
    if (t->state == T_RUNNING) return FERRY_EBUSY;
    if (t->state == T_CANCELLED) return FERRY_EALREADY;
    ferry_queue *q = t->q;
    task_cancel(q, t, true);
    queue_kick(q);
    return 0;
}

/* Cancel every queued task: each key's in push order (keys in table order),
 * then the tasks without a key, which by then are all that is left on the
 * ready list. The table is walked as it is, so nothing resizes it meanwhile. */
static void cancel_all(ferry_queue *q)
{
    for (size_t i = 0; i <= q->mask; i++) {
        qkey *k = q->buckets[i];
        while (k != NULL) {
            qkey *next = k->hnext; /* k may be released by its last cancel */
            while (k->nwaiting > 0)
                task_cancel(q, task_of_klink(k->waiting.next), false);
            k = next;
        }
    }
    while (!list_empty(&q->ready))
        task_cancel(q, task_of_rlink(q->ready.next), false);
    while (q->mask + 1 > KEYTAB_MIN_BUCKETS && q->nkeys < (q->mask + 1) / 8) {
        size_t before = q->mask;
        keytab_resize(q, (q->mask + 1) / 2);
        if (q->mask == before) break; /* out of memory: keep the larger table */
    }
}

void ferry_queue_close(ferry_queue *q, ferry_queue_close_mode mode, ferry_queue_close_cb cb,
                       void *data)
{
    if (q == NULL || q->state == Q_CLOSED) return;
    if (cb != NULL && q->close_cb == NULL) {
        q->close_cb = cb;
        q->close_data = data;
    }
    if (q->state == Q_OPEN) q->state = Q_CLOSING;
    if (mode == FERRY_QUEUE_CANCEL) cancel_all(q);
    queue_kick(q);
}

int ferry_queue_free(ferry_queue *q)
{
    if (q == NULL) return 0;
    if (q->state != Q_CLOSED) return FERRY_EBUSY;
    free(q->buckets);
    free(q);
    return 0;
}

void ferry_queue_stats_get_sized(const ferry_queue *q, ferry_queue_stats *out, size_t size)
{
    ferry_queue_stats all, *st = &all;
    memset(st, 0, sizeof(*st));
    if (q == NULL) { /* no queue: zeros, never the caller's garbage */
        stats_copy(out, size, st, sizeof(*st));
        return;
    }
    st->running = q->running;
    st->queued = q->queued;
    st->keys = q->nkeys;
    st->pushed = q->pushed;
    st->completed = q->completed;
    st->cancelled = q->ncancelled;
    st->rejected = q->rejected;
    st->closing = q->state != Q_OPEN;
    stats_copy(out, size, st, sizeof(*st));
}

void(ferry_queue_stats_get)(const ferry_queue *q, ferry_queue_stats *st)
{
    ferry_queue_stats_get_sized(q, st, QUEUE_STATS_V1_SIZE);
}
