/* test_hist.c — the CLI's latency histogram (tools/ferry/hist.c): the slot
 * layout (every value inside its slot, slots contiguous, at most 1/128 wide),
 * and percentiles against distributions whose quantiles are known exactly:
 * constant, uniform, bimodal and exponential (sampled at its quantiles, so the
 * test is deterministic); then merge, mean, the empty histogram and values
 * beyond the top of the range.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <math.h>

#include <cmocka.h>

#include "hist.h"

/* Within 1 % of the true value, plus 1 µs for values recorded as integers. */
static void assert_close(uint64_t got, double want)
{
    double tol = want * 0.01 + 1.0;
    if (fabs((double) got - want) > tol)
        fail_msg("got %llu, want %.1f ± %.1f", (unsigned long long) got, want, tol);
}

static hist *new_hist(void)
{
    hist *h = malloc(sizeof *h);
    assert_non_null(h);
    hist_init(h);
    return h;
}

static void slots_cover_the_range(void **state)
{
    (void) state;
    uint64_t prev_high = 0;
    for (uint32_t s = 0; s < HIST_SLOTS; s++) {
        uint64_t lo = hist_slot_low(s), hi = hist_slot_high(s);
        assert_true(lo <= hi);
        if (s > 0)
            assert_int_equal(lo, prev_high + 1); /* contiguous, no overlap */
        prev_high = hi;
        assert_int_equal(hist_slot(lo), s);
        assert_int_equal(hist_slot(hi), s);
        if (lo >= 256)
            assert_true((double) (hi - lo + 1) / (double) lo <= 1.0 / 128 + 1e-12);
        else
            assert_int_equal(lo, hi); /* exact below 256 µs */
    }
    assert_int_equal(prev_high, (UINT64_C(1) << HIST_MAX_BITS) - 1);
    /* A sweep of values over many magnitudes: each inside its slot. */
    for (uint64_t v = 1; v < (UINT64_C(1) << 40); v = v * 3 / 2 + 1) {
        uint32_t s = hist_slot(v);
        if (v < (UINT64_C(1) << HIST_MAX_BITS)) {
            assert_true(hist_slot_low(s) <= v && v <= hist_slot_high(s));
        } else {
            assert_int_equal(s, HIST_SLOTS - 1);
        }
    }
}

static void constant(void **state)
{
    (void) state;
    hist *h = new_hist();
    for (int i = 0; i < 10000; i++)
        hist_record(h, 12345);
    /* The slot is wider than one µs, but clamping to [min, max] makes it exact. */
    assert_int_equal(hist_percentile(h, 50), 12345);
    assert_int_equal(hist_percentile(h, 99.9), 12345);
    assert_int_equal(hist_percentile(h, 0.001), 12345);
    assert_int_equal(h->min, 12345);
    assert_int_equal(h->max, 12345);
    assert_true(fabs(hist_mean(h) - 12345.0) < 1e-9);
    free(h);
}

static void uniform(void **state)
{
    (void) state;
    hist *h = new_hist();
    const uint64_t n = 100000;
    for (uint64_t v = 1; v <= n; v++)
        hist_record(h, v);
    /* The p-th percentile of 1..n is p% of n. */
    assert_close(hist_percentile(h, 50), 50000);
    assert_close(hist_percentile(h, 90), 90000);
    assert_close(hist_percentile(h, 99), 99000);
    assert_close(hist_percentile(h, 99.9), 99900);
    assert_close(hist_percentile(h, 10), 10000);
    assert_close(hist_percentile(h, 1), 1000);
    assert_int_equal(hist_percentile(h, 100), n);
    assert_int_equal(h->max, n);
    assert_int_equal(h->min, 1);
    assert_true(fabs(hist_mean(h) - (double) (n + 1) / 2) < 1e-6);
    /* Reported values never fall below the truth. */
    for (double p = 0.5; p < 100; p += 0.5)
        assert_true((double) hist_percentile(h, p) >= p / 100 * (double) n - 1e-6);

    /* Small values are exact: 0..199 once each. */
    hist *s = new_hist();
    for (uint64_t v = 0; v < 200; v++)
        hist_record(s, v);
    assert_int_equal(hist_percentile(s, 50), 99);
    assert_int_equal(hist_percentile(s, 90), 179);
    assert_int_equal(hist_percentile(s, 99), 197);
    free(s);
    free(h);
}

static void bimodal(void **state)
{
    (void) state;
    hist *h = new_hist();
    /* 90 % fast (30 µs: a loopback round trip), 10 % slow (40 ms). */
    for (int i = 0; i < 9000; i++)
        hist_record(h, 30);
    for (int i = 0; i < 1000; i++)
        hist_record(h, 40000);
    assert_int_equal(hist_percentile(h, 50), 30);
    assert_int_equal(hist_percentile(h, 90), 30); /* exactly 90 % are <= 30 */
    assert_close(hist_percentile(h, 90.01), 40000);
    assert_close(hist_percentile(h, 99), 40000);
    assert_close(hist_percentile(h, 99.9), 40000);
    assert_int_equal(h->max, 40000);
    assert_true(fabs(hist_mean(h) - (0.9 * 30 + 0.1 * 40000)) < 1e-6);
    free(h);
}

static void exponential(void **state)
{
    (void) state;
    hist *h = new_hist();
    const int n = 200000;
    const double mean = 2000.0;
    /* Sample at the midpoints of n equal quantile steps. */
    for (int i = 0; i < n; i++) {
        double q = ((double) i + 0.5) / n;
        hist_record(h, (uint64_t) llround(-mean * log(1.0 - q)));
    }
    const double ps[] = {10, 25, 50, 75, 90, 99, 99.9};
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++)
        assert_close(hist_percentile(h, ps[k]), -mean * log(1.0 - ps[k] / 100));
    assert_true(fabs(hist_mean(h) - mean) / mean < 0.01);
    free(h);
}

static void merge_equals_whole(void **state)
{
    (void) state;
    hist *a = new_hist(), *b = new_hist(), *whole = new_hist();
    for (uint64_t v = 0; v < 50000; v++) {
        uint64_t x = (v * 7919) % 65536 + v / 3;
        hist_record(v % 2 ? a : b, x);
        hist_record(whole, x);
    }
    hist_merge(a, b);
    assert_int_equal(a->count, whole->count);
    assert_int_equal(a->sum, whole->sum);
    assert_int_equal(a->min, whole->min);
    assert_int_equal(a->max, whole->max);
    for (double p = 1; p <= 100; p += 1)
        assert_int_equal(hist_percentile(a, p), hist_percentile(whole, p));
    hist *empty = new_hist();
    hist_merge(a, empty); /* merging nothing changes nothing */
    assert_int_equal(a->min, whole->min);
    free(a);
    free(b);
    free(whole);
    free(empty);
}

static void empty_and_extremes(void **state)
{
    (void) state;
    hist *h = new_hist();
    assert_int_equal(hist_percentile(h, 50), 0);
    assert_int_equal(hist_percentile(h, 100), 0);
    assert_true(hist_mean(h) == 0.0);
    hist_record(h, 0);
    assert_int_equal(hist_percentile(h, 99), 0);
    /* Beyond the range: counted in the last slot, max stays exact. */
    uint64_t huge = UINT64_C(1) << 50;
    hist_record(h, huge);
    assert_int_equal(h->max, huge);
    assert_int_equal(hist_percentile(h, 100), huge);
    assert_int_equal(h->slots[HIST_SLOTS - 1], 1);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(slots_cover_the_range), cmocka_unit_test(constant),
        cmocka_unit_test(uniform),               cmocka_unit_test(bimodal),
        cmocka_unit_test(exponential),           cmocka_unit_test(merge_equals_whole),
        cmocka_unit_test(empty_and_extremes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
