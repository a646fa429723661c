/* hist.h — a log-linear latency histogram for `ferry bench` and `ferry fetch`.
 *
 * Values are microseconds (uint64). Below 256 µs every value has its own
 * counter; above, each power-of-two range [2^k, 2^(k+1)) is cut into 128
 * equal slots, so a slot is at most 1/128 (0.78 %) of its values wide. That
 * is HdrHistogram's layout with two significant digits. No Debian package
 * offers an HdrHistogram for C (only Java, Go, Python and Rust ports exist
 * outside the archive), so this is a small one of our own.
 *
 * Recording is O(1) with no allocation (a count-leading-zeros and a shift);
 * a histogram is one fixed block (about 30 KiB), so each thread keeps its own
 * and they are merged at the end. Values of 2^36 µs (about 19 hours) and
 * above land in the last slot; max keeps the exact largest value.
 */
#ifndef FERRY_TOOL_HIST_H
#define FERRY_TOOL_HIST_H

#include <stdint.h>

#define HIST_EXACT_BITS 8  /* values below 2^8 are counted exactly */
#define HIST_SUB_BITS   7  /* 2^7 slots per power of two above */
#define HIST_MAX_BITS   36 /* top of the range: 2^36 µs */
#define HIST_SLOTS                                                                                 \
    ((1u << HIST_EXACT_BITS) + (HIST_MAX_BITS - HIST_EXACT_BITS) * (1u << HIST_SUB_BITS))

typedef struct hist {
    uint64_t count;
    uint64_t sum; /* exact, for the mean */
    uint64_t min; /* exact; UINT64_MAX when empty */
    uint64_t max; /* exact; 0 when empty */
    uint64_t slots[HIST_SLOTS];
} hist;

void hist_init(hist *h);
void hist_record(hist *h, uint64_t us);
/* Add src's counts into dst. */
void hist_merge(hist *dst, const hist *src);

/* The value at percentile p (0 < p <= 100): the smallest recorded value v
 * such that at least p % of the values are <= v, reported as the top of its
 * slot (never below the true value, at most 0.78 % above it) and clamped to
 * [min, max]. 0 for an empty histogram. */
uint64_t hist_percentile(const hist *h, double p);
double hist_mean(const hist *h);

/* Slot mapping, exposed for the tests: the slot of a value, and the lowest
 * and highest value a slot stands for. */
uint32_t hist_slot(uint64_t us);
uint64_t hist_slot_low(uint32_t slot);
uint64_t hist_slot_high(uint32_t slot);

#endif /* FERRY_TOOL_HIST_H */
