/* test_timeouts.c — timeout lists on a real loop: order, re-arm, disarm,
 * callbacks that mutate lists mid-sweep, duration 0, precision, loop liveness
 * and closing. Every test closes its lists and proves the loop closes clean.
 * Durations are 10-30 ms so the whole file runs well under a second. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ferry.h"
#include "core/timeouts.h"

#define MS UINT64_C(1000000) /* uv_hrtime() nanoseconds per millisecond */

/* An owner struct with an embedded entry, as a connection would have. */
typedef struct item {
    int id;
    int fired;
    timeout_entry te;                /* deliberately not the first field: container_of */
    timeout_list *list;              /* list it was last armed on (via arm()) */
    uint64_t armed_hr;               /* uv_hrtime() at the last arm() */
    uint64_t fired_hr;               /* uv_hrtime() at the last firing */
    void (*action)(struct item *it); /* extra behaviour, run last in the callback */
} item;

static int order[256];
static size_t norder;

/* The common callback: checks the entry is already disarmed and did not fire
 * early (real time, not the loop clock), records the order, then runs the
 * item's action, which may free the item: nothing touches it afterwards. */
static void on_fire(timeout_entry *e)
{
    item *it = container_of(e, item, te);
    assert_false(timeout_is_armed(e));
    it->fired++;
    it->fired_hr = uv_hrtime();
    assert_true(it->fired_hr - it->armed_hr >= timeout_list_duration(it->list) * MS);
    assert_true(norder < sizeof(order) / sizeof(order[0]));
    order[norder++] = it->id;
    if (it->action != NULL) it->action(it);
}

static void item_init(item *it, int id)
{
    memset(it, 0, sizeof(*it));
    it->id = id;
    timeout_entry_init(&it->te, on_fire);
}

static item *item_new(int id)
{
    item *it = malloc(sizeof(*it));
    assert_non_null(it);
    item_init(it, id);
    return it;
}

static void arm(timeout_list *l, item *it)
{
    it->list = l;
    it->armed_hr = uv_hrtime();
    timeout_arm(l, &it->te);
}

static void expect_order(const int *want, size_t n)
{
    assert_int_equal(norder, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(order[i], want[i]);
}

/* Close every handle first; this runs the loop dry and proves nothing leaked. */
static void finish(uv_loop_t *loop)
{
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(loop), 0);
}

static int setup(void **state)
{
    (void) state;
    norder = 0;
    return 0;
}

/* ---- order ------------------------------------------------------------- */

static void test_fires_in_arming_order(void **state)
{
    (void) state;
    uv_loop_t loop;
    timeout_list l;
    item it[64];
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(timeout_list_init(&loop, &l, 10), 0);
    for (int i = 0; i < 64; i++)
        item_init(&it[i], i);
    int want[64];
    for (int k = 0; k < 64; k++) {
        want[k] = (k * 37) % 64; /* a permutation: arming order, not id order */
        arm(&l, &it[want[k]]);
    }
    assert_int_equal(timeout_list_count(&l), 64);

    /* Returns by itself once the list is empty. */
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    expect_order(want, 64);
    for (int i = 0; i < 64; i++)
        assert_int_equal(it[i].fired, 1);
    assert_int_equal(timeout_list_count(&l), 0);
    timeout_list_close(&l, NULL);
    finish(&loop);
}

static void test_rearm_moves_to_tail(void **state)
{
    (void) state;
    uv_loop_t loop;
    timeout_list l;
    item it[10];
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(timeout_list_init(&loop, &l, 10), 0);
    for (int i = 0; i < 10; i++) {
        item_init(&it[i], i);
        arm(&l, &it[i]);
    }
    arm(&l, &it[3]);
    arm(&l, &it[0]);
    assert_int_equal(timeout_list_count(&l), 10);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    expect_order((const int[]){1, 2, 4, 5, 6, 7, 8, 9, 3, 0}, 10);
    timeout_list_close(&l, NULL);
    finish(&loop);
}

/* Re-arming later pushes the deadline back: the entry fires a full duration
 * after the re-arm, behind entries armed before it. */
static timeout_list *rearm_list;
static item *rearm_item;

static void on_rearm_timer(uv_timer_t *t)
{
    arm(rearm_list, rearm_item);
    uv_close((uv_handle_t *) t, NULL);
}

static void test_rearm_pushes_deadline_back(void **state)
{
    (void) state;
    uv_loop_t loop;
    timeout_list l;
    uv_timer_t helper;
    item it[3];
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(timeout_list_init(&loop, &l, 20), 0);
    uint64_t start = uv_hrtime();
    for (int i = 0; i < 3; i++) {
        item_init(&it[i], i);
        arm(&l, &it[i]);
    }
    rearm_list = &l;
    rearm_item = &it[0];
    assert_int_equal(uv_timer_init(&loop, &helper), 0);
    assert_int_equal(uv_timer_start(&helper, on_rearm_timer, 8, 0), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    expect_order((const int[]){1, 2, 0}, 3);
    assert_int_equal(it[0].fired, 1); /* once: the first arming was replaced */
    /* Re-armed after the helper's 8 ms; on_fire checked a full 20 ms since. */
    assert_true(it[0].armed_hr - start >= 7 * MS);
    assert_true(it[0].fired_hr - it[0].armed_hr >= 20 * MS);
    assert_true(it[0].fired_hr - start < 500 * MS);
    timeout_list_close(&l, NULL);
    finish(&loop);
}

/* The point of the design: re-arming only moves the entry to the tail; the
 * uv_timer keeps its earlier due time, wakes early once, finds nothing
 * expired and sleeps until the new head. */
static void test_rearm_does_not_restart_timer(void **state)
{
    (void) state;
    uv_loop_t loop;
    timeout_list l;
    item a, b;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(timeout_list_init(&loop, &l, 30), 0);
    item_init(&a, 1);
    item_init(&b, 2);
    arm(&l, &a);
    uint64_t due = uv_now(&loop) + uv_timer_get_due_in(&l._timer);
    uv_sleep(5);
    arm(&l, &a); /* head re-armed: head changes to itself, later deadline */
    arm(&l, &b); /* tail append */
    assert_int_equal(uv_now(&loop) + uv_timer_get_due_in(&l._timer), due);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    expect_order((const int[]){1, 2}, 2);
    assert_int_equal(a.fired, 1);
    timeout_list_close(&l, NULL);
    finish(&loop);
}

/* ---- disarm ------------------------------------------------------------ */

static void test_disarm_prevents_firing(void **state)
{
    (void) state;
    uv_loop_t loop;
    timeout_list l;
    item it[5];
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(timeout_list_init(&loop, &l, 10), 0);
    for (int i = 0; i < 5; i++) {
        item_init(&it[i], i);
        arm(&l, &it[i]);
        assert_true(timeout_is_armed(&it[i].te));
    }
    timeout_disarm(&it[0].te); /* head: the timer stays due early, harmlessly */
    timeout_disarm(&it[2].te); /* middle */
    timeout_disarm(&it[4].te); /* tail */
    timeout_disarm(&it[2].te); /* twice is fine */
    assert_false(timeout_is_armed(&it[2].te));
    assert_int_equal(timeout_list_count(&l), 2);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    expect_order((const int[]){1, 3}, 2);
    assert_int_equal(it[0].fired + it[2].fired + it[4].fired, 0);
    timeout_list_close(&l, NULL);
    finish(&loop);
}

/* ---- callbacks that mutate the list mid-sweep ---------------------------- */

enum { A, B, C, D, E, F, G, H, NMUT };
static item *mut[NMUT];
static timeout_list *mut_l, *mut_m;

static void act_a(item *it)
{
    if (it->fired == 1) timeout_disarm(&mut[C]->te); /* expired, not yet fired: never fires */
}

static void act_b(item *it)
{
    (void) it;
    timeout_disarm(&mut[D]->te); /* owner teardown: disarm, then free */
    free(mut[D]);
    mut[D] = NULL;
}

static void act_e(item *it)
{
    if (it->fired == 1) {
        arm(mut_l, it); /* re-arm itself: fires again a duration later */
    } else {
        mut[E] = NULL;
        free(it); /* free itself from its own callback */
    }
}

static void act_f(item *it)
{
    (void) it;
    arm(mut_l, mut[G]); /* expired, not yet fired: moves behind E, fires once, later */
}

static void act_h(item *it)
{
    arm(mut_m, mut[A]); /* an already fired entry onto another list */
    mut[H] = NULL;
    free(it);
}

static void test_callbacks_mutate_during_sweep(void **state)
{
    (void) state;
    uv_loop_t loop;
    timeout_list l, m;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(timeout_list_init(&loop, &l, 10), 0);
    assert_int_equal(timeout_list_init(&loop, &m, 30), 0);
    mut_l = &l;
    mut_m = &m;
    void (*acts[NMUT])(item *) = {act_a, act_b, NULL, NULL, act_e, act_f, NULL, act_h};
    for (int i = 0; i < NMUT; i++) {
        mut[i] = item_new(i);
        mut[i]->action = acts[i];
        arm(&l, mut[i]);
    }
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);

    /* First sweep A B (C disarmed, D freed) E F (G moved) H; then the
     * re-armed E and G on l; then A on the 30 ms list. */
    expect_order((const int[]){A, B, E, F, H, E, G, A}, 8);
    assert_null(mut[D]);
    assert_null(mut[E]);
    assert_null(mut[H]);
    assert_int_equal(mut[A]->fired, 2);
    assert_int_equal(mut[B]->fired, 1);
    assert_int_equal(mut[C]->fired, 0);
    assert_int_equal(mut[F]->fired, 1);
    assert_int_equal(mut[G]->fired, 1);
    assert_int_equal(timeout_list_count(&l) + timeout_list_count(&m), 0);
    for (int i = 0; i < NMUT; i++) {
        if (mut[i] != NULL) assert_false(timeout_is_armed(&mut[i]->te));
        free(mut[i]);
    }
    timeout_list_close(&l, NULL);
    timeout_list_close(&m, NULL);
    finish(&loop);
}

/* An entry that re-arms itself fires exactly once per arming, each time a
 * full duration after the previous arming (on_fire checks the "not early"). */
static void act_rearm_5(item *it)
{
    if (it->fired < 5) arm(it->list, it);
}

static void test_self_rearm_fires_once_per_arming(void **state)
{
    (void) state;
    uv_loop_t loop;
    timeout_list l;
    item it;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(timeout_list_init(&loop, &l, 10), 0);
    item_init(&it, 7);
    it.action = act_rearm_5;
    uint64_t start = uv_hrtime();
    arm(&l, &it);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(it.fired, 5);
    assert_int_equal(norder, 5);
    assert_true(uv_hrtime() - start >= 50 * MS);
    assert_true(uv_hrtime() - start < 500 * MS);
    timeout_list_close(&l, NULL);
    finish(&loop);
}

/* ---- closing ------------------------------------------------------------- */

static int closed_count;

static void on_list_closed(timeout_list *l)
{
    (void) l;
    closed_count++;
}

static void on_list_closed_free(timeout_list *l)
{
    closed_count++;
    free(l);
}

static timeout_list *heap_list;
static item *close_items[4];

static void act_close_list(item *it)
{
    (void) it;
    timeout_list_close(heap_list, on_list_closed_free);
    assert_int_equal(timeout_list_count(heap_list), 0); /* still valid until the cb */
    assert_false(timeout_is_armed(&close_items[2]->te));
    arm(heap_list, close_items[3]); /* arming a closing list leaves it disarmed */
    assert_false(timeout_is_armed(&close_items[3]->te));
    timeout_list_close(heap_list, on_list_closed_free); /* idempotent */
}

static void test_close_list_from_its_callback(void **state)
{
    (void) state;
    uv_loop_t loop;
    timeout_list other;
    item bystander;
    item it[4];
    assert_int_equal(uv_loop_init(&loop), 0);
    heap_list = malloc(sizeof(*heap_list));
    assert_non_null(heap_list);
    assert_int_equal(timeout_list_init(&loop, heap_list, 10), 0);
    assert_int_equal(timeout_list_init(&loop, &other, 10), 0);
    closed_count = 0;
    for (int i = 0; i < 4; i++) {
        item_init(&it[i], i);
        close_items[i] = &it[i];
        arm(heap_list, &it[i]);
    }
    it[1].action = act_close_list;
    item_init(&bystander, 99);
    arm(&other, &bystander);

    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(closed_count, 1); /* and the list was freed in its close cb */
    assert_int_equal(it[0].fired + it[1].fired, 2);
    assert_int_equal(it[2].fired + it[3].fired, 0);
    assert_int_equal(bystander.fired, 1);
    timeout_list_close(&other, NULL);
    finish(&loop);
}

static void test_close_with_armed_entries(void **state)
{
    (void) state;
    uv_loop_t loop;
    timeout_list l;
    item it[3];
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(timeout_list_init(&loop, &l, 1000), 0);
    closed_count = 0;
    for (int i = 0; i < 3; i++) {
        item_init(&it[i], i);
        arm(&l, &it[i]);
    }
    timeout_list_close(&l, on_list_closed);
    timeout_list_close(&l, on_list_closed);
    assert_int_equal(timeout_list_count(&l), 0);
    for (int i = 0; i < 3; i++)
        assert_false(timeout_is_armed(&it[i].te));
    timeout_disarm(&it[0].te); /* disarming after the close is harmless */

    uint64_t start = uv_hrtime();
    finish(&loop);
    assert_true(uv_hrtime() - start < 100 * MS); /* did not wait for 1000 ms */
    assert_int_equal(closed_count, 1);
    assert_int_equal(norder, 0);
}

/* ---- duration 0, liveness, several lists -------------------------------- */

static void test_duration_zero_never_fires(void **state)
{
    (void) state;
    uv_loop_t loop;
    timeout_list never, slow;
    item a, b;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(timeout_list_init(&loop, &never, 0), 0);
    assert_int_equal(timeout_list_init(&loop, &slow, 1000), 0);
    assert_int_equal(timeout_list_duration(&never), 0);
    item_init(&a, 1);
    item_init(&b, 2);
    arm(&never, &a);
    assert_false(timeout_is_armed(&a.te));
    assert_int_equal(timeout_list_count(&never), 0);
    /* "Now this entry's timeout is never": it leaves the list it was on. */
    arm(&slow, &b);
    arm(&never, &b);
    assert_false(timeout_is_armed(&b.te));
    assert_int_equal(timeout_list_count(&slow), 0);

    uint64_t start = uv_hrtime();
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0); /* nothing keeps it alive */
    assert_true(uv_hrtime() - start < 100 * MS);
    assert_int_equal(norder, 0);
    timeout_list_close(&never, NULL);
    timeout_list_close(&slow, NULL);
    finish(&loop);
}

static void test_empty_list_does_not_keep_loop_alive(void **state)
{
    (void) state;
    uv_loop_t loop;
    timeout_list l;
    item a, b;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(timeout_list_init(&loop, &l, 10000), 0);
    item_init(&a, 1);
    item_init(&b, 2);

    uint64_t start = uv_hrtime();
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0); /* fresh list */
    arm(&l, &a);
    arm(&l, &b);
    arm(&l, &a); /* the timer stays due for a's first deadline */
    timeout_disarm(&b.te);
    timeout_disarm(&a.te);
    assert_int_equal(timeout_list_count(&l), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0); /* timer still due, but unref'd */
    assert_true(uv_hrtime() - start < 100 * MS);

    /* And the timer is ref'd again when the list fills. */
    arm(&l, &a);
    assert_int_not_equal(uv_loop_alive(&loop), 0);
    timeout_disarm(&a.te);
    assert_int_equal(uv_loop_alive(&loop), 0);
    assert_int_equal(norder, 0);
    timeout_list_close(&l, NULL);
    finish(&loop);
}

/* An entry moved from a long list to a short one fires on the short one, and
 * the now empty long list does not hold the loop. */
static void test_move_between_lists(void **state)
{
    (void) state;
    uv_loop_t loop;
    timeout_list slow, fast;
    item a;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(timeout_list_init(&loop, &slow, 10000), 0);
    assert_int_equal(timeout_list_init(&loop, &fast, 10), 0);
    item_init(&a, 1);
    arm(&slow, &a);
    arm(&fast, &a);
    assert_int_equal(timeout_list_count(&slow), 0);
    assert_int_equal(timeout_list_count(&fast), 1);
    uint64_t start = uv_hrtime();
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(a.fired, 1);
    assert_true(uv_hrtime() - start < 500 * MS);
    timeout_list_close(&slow, NULL);
    timeout_list_close(&fast, NULL);
    finish(&loop);
}

static void test_init_rejects_huge_duration(void **state)
{
    (void) state;
    uv_loop_t loop;
    timeout_list l;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(timeout_list_init(&loop, &l, TIMEOUT_MAX_MS + 1), FERRY_EINVAL);
    assert_int_equal(timeout_list_init(&loop, &l, TIMEOUT_MAX_MS), 0);
    timeout_list_close(&l, NULL);
    finish(&loop);
}

/* ---- precision ------------------------------------------------------------ */

static void test_precision(void **state)
{
    (void) state;
    uv_loop_t loop;
    timeout_list l;
    item it;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(timeout_list_init(&loop, &l, 30), 0);
    item_init(&it, 1);

    uint64_t start = uv_hrtime();
    arm(&l, &it);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(it.fired, 1);
    assert_true(it.fired_hr - start >= 30 * MS);
    assert_true(it.fired_hr - start < 500 * MS);

    /* The loop's cached time is now 25 ms stale, as after a long callback:
     * arming must not inherit the staleness and fire early. */
    uv_sleep(25);
    start = uv_hrtime();
    arm(&l, &it);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(it.fired, 2);
    assert_true(it.fired_hr - start >= 30 * MS);
    assert_true(it.fired_hr - start < 500 * MS);
    timeout_list_close(&l, NULL);
    finish(&loop);
}

/* ---- randomised mutation ----------------------------------------------- */

/* Entries on three short lists (and a duration-0 one) whose callbacks arm,
 * disarm, free and replace random entries, including themselves, checked
 * against a model after every callback: each firing matches exactly one
 * arming, never early, and every list's count agrees. The run ends by
 * closing all lists from inside a callback. */
#define RN 48
#define RL 3 /* timed lists; lists[RL] has duration 0 */

static struct {
    uv_loop_t *loop;
    timeout_list lists[RL + 1];
    item *items[RN];
    int armed_on[RN]; /* model: list index, or -1 */
    uint64_t armed_now[RN];
    size_t fires;
    uint64_t start;
    bool closed;
    uint32_t rng;
} R;

static uint32_t rnd(void)
{
    R.rng ^= R.rng << 13;
    R.rng ^= R.rng >> 17;
    R.rng ^= R.rng << 5;
    return R.rng;
}

static void rnd_fire(timeout_entry *e);

static void rnd_arm(int j, int l)
{
    item *it = R.items[j];
    it->list = &R.lists[l];
    it->armed_hr = uv_hrtime();
    timeout_arm(&R.lists[l], &it->te);
    R.armed_on[j] = l == RL ? -1 : l;
    R.armed_now[j] = uv_now(R.loop);
}

static void rnd_op(int j)
{
    switch (rnd() % 5) {
    case 0:
    case 1: rnd_arm(j, (int) (rnd() % (RL + 1))); break;
    case 2:
        timeout_disarm(&R.items[j]->te);
        R.armed_on[j] = -1;
        break;
    case 3:
        timeout_disarm(&R.items[j]->te);
        free(R.items[j]);
        R.items[j] = item_new(j);
        timeout_entry_init(&R.items[j]->te, rnd_fire);
        R.armed_on[j] = -1;
        if (rnd() % 2) rnd_arm(j, (int) (rnd() % RL));
        break;
    default: break;
    }
}

static void rnd_check_model(void)
{
    size_t counts[RL + 1] = {0};
    for (int j = 0; j < RN; j++) {
        assert_int_equal(timeout_is_armed(&R.items[j]->te), R.armed_on[j] >= 0);
        if (R.armed_on[j] >= 0) counts[R.armed_on[j]]++;
    }
    for (int l = 0; l <= RL; l++)
        assert_int_equal(timeout_list_count(&R.lists[l]), counts[l]);
}

static void rnd_fire(timeout_entry *e)
{
    item *it = container_of(e, item, te);
    int i = it->id;
    assert_false(R.closed);
    assert_ptr_equal(R.items[i], it);
    assert_true(R.armed_on[i] >= 0); /* one firing per arming */
    uint64_t dur = timeout_list_duration(&R.lists[R.armed_on[i]]);
    assert_true(uv_now(R.loop) >= R.armed_now[i] + dur);
    assert_true(uv_hrtime() - it->armed_hr >= dur * MS);
    assert_false(timeout_is_armed(e));
    R.armed_on[i] = -1;
    R.fires++;

    if (R.fires >= 2000 || uv_hrtime() - R.start > 200 * MS) {
        for (int l = 0; l <= RL; l++)
            timeout_list_close(&R.lists[l], NULL);
        for (int j = 0; j < RN; j++)
            R.armed_on[j] = -1;
        R.closed = true;
        rnd_check_model();
        return;
    }
    /* Mostly re-arm itself, so the population does not die out; then
     * random operations, which may free `it`. */
    if (rnd() % 4 != 0) rnd_arm(i, (int) (rnd() % RL));
    int nops = (int) (rnd() % 4);
    for (int k = 0; k < nops; k++)
        rnd_op((int) (rnd() % RN));
    rnd_check_model();
}

static void test_random_mutation_during_sweeps(void **state)
{
    (void) state;
    uv_loop_t loop;
    memset(&R, 0, sizeof(R));
    R.loop = &loop;
    R.rng = 0x9e3779b9u;
    assert_int_equal(uv_loop_init(&loop), 0);
    for (int l = 0; l < RL; l++)
        assert_int_equal(timeout_list_init(&loop, &R.lists[l], (uint64_t) l + 1), 0);
    assert_int_equal(timeout_list_init(&loop, &R.lists[RL], 0), 0);
    R.start = uv_hrtime();
    for (int j = 0; j < RN; j++) {
        R.items[j] = item_new(j);
        timeout_entry_init(&R.items[j]->te, rnd_fire);
        rnd_arm(j, j % RL);
    }
    rnd_check_model();
    /* The run may also end early if every entry ends up disarmed. */
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    if (!R.closed)
        for (int l = 0; l <= RL; l++)
            timeout_list_close(&R.lists[l], NULL);
    assert_true(R.closed);       /* ended by the close from a callback */
    assert_true(R.fires >= 200); /* ~650 on an idle machine */
    for (int j = 0; j < RN; j++)
        free(R.items[j]);
    finish(&loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_fires_in_arming_order, setup),
        cmocka_unit_test_setup(test_rearm_moves_to_tail, setup),
        cmocka_unit_test_setup(test_rearm_pushes_deadline_back, setup),
        cmocka_unit_test_setup(test_rearm_does_not_restart_timer, setup),
        cmocka_unit_test_setup(test_disarm_prevents_firing, setup),
        cmocka_unit_test_setup(test_callbacks_mutate_during_sweep, setup),
        cmocka_unit_test_setup(test_self_rearm_fires_once_per_arming, setup),
        cmocka_unit_test_setup(test_close_list_from_its_callback, setup),
        cmocka_unit_test_setup(test_close_with_armed_entries, setup),
        cmocka_unit_test_setup(test_duration_zero_never_fires, setup),
        cmocka_unit_test_setup(test_empty_list_does_not_keep_loop_alive, setup),
        cmocka_unit_test_setup(test_move_between_lists, setup),
        cmocka_unit_test_setup(test_init_rejects_huge_duration, setup),
        cmocka_unit_test_setup(test_precision, setup),
        cmocka_unit_test_setup(test_random_mutation_during_sweeps, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
