/* hist.c — the log-linear latency histogram (layout and precision in hist.h).
 *
 * Slot numbering: slots 0..255 are the values 0..255; then for each k from 8
 * to 35, the 128 slots of [2^k, 2^(k+1)), each 2^(k-7) wide. A value's slot is
 * found from its highest set bit and the 7 bits below it.
 */
#include "hist.h"

#include <string.h>

#define EXACT     (1u << HIST_EXACT_BITS)
#define SUB       (1u << HIST_SUB_BITS)
#define VALUE_TOP (UINT64_C(1) << HIST_MAX_BITS)

void hist_init(hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

uint32_t hist_slot(uint64_t us)
{
    if (us < EXACT)
        return (uint32_t) us;
    if (us >= VALUE_TOP)
        return HIST_SLOTS - 1;
    unsigned k = 63u - (unsigned) __builtin_clzll(us); /* HIST_EXACT_BITS <= k < HIST_MAX_BITS */
    unsigned shift = k - HIST_SUB_BITS;
    uint32_t sub = (uint32_t) (us >> shift) - SUB; /* the 7 bits below the top one */
    return EXACT + (k - HIST_EXACT_BITS) * SUB + sub;
}

uint64_t hist_slot_low(uint32_t slot)
{
    if (slot < EXACT)
        return slot;
    uint32_t i = slot - EXACT;
    unsigned k = HIST_EXACT_BITS + i / SUB;
    uint64_t sub = SUB + i % SUB;
    return sub << (k - HIST_SUB_BITS);
}

uint64_t hist_slot_high(uint32_t slot)
{
    if (slot < EXACT)
        return slot;
    unsigned k = HIST_EXACT_BITS + (slot - EXACT) / SUB;
    return hist_slot_low(slot) + (UINT64_C(1) << (k - HIST_SUB_BITS)) - 1;
}

void hist_record(hist *h, uint64_t us)
{
    h->slots[hist_slot(us)]++;
    h->count++;
    h->sum += us;
    if (us < h->min)
        h->min = us;
    if (us > h->max)
        h->max = us;
}

void hist_merge(hist *dst, const hist *src)
{
    if (src->count == 0)
        return;
    for (uint32_t i = 0; i < HIST_SLOTS; i++)
        dst->slots[i] += src->slots[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

/* Walk the slots until the running count reaches ceil(p% of count): a scan
 * of at most HIST_SLOTS counters, done only when reporting. */
uint64_t hist_percentile(const hist *h, double p)
{
    if (h->count == 0)
        return 0;
    if (p >= 100.0)
        return h->max;
    double want_d = p / 100.0 * (double) h->count;
    uint64_t want = (uint64_t) want_d;
    if ((double) want < want_d)
        want++;
    if (want == 0)
        want = 1;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < HIST_SLOTS; i++) {
        seen += h->slots[i];
        if (seen >= want) {
            uint64_t v = hist_slot_high(i);
            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return v;
        }
    }
    return h->max;
}

double hist_mean(const hist *h)
{
    return h->count ? (double) h->sum / (double) h->count : 0.0;
}
