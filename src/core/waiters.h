/* waiters.h — write callbacks waiting for their bytes to reach the kernel:
 * a FIFO of (mark, callback, data), where mark is the output total that
 * covers the write. The server's responses and the client's streamed request
 * bodies both promise "cb runs once the bytes are handed to the kernel",
 * against their transport's flushed_total.
 *
 * Callbacks are stored as a generic function pointer and cast back by the
 * owner to its own type (ferry_write_cb, ferry_client_write_cb): casting a
 * function pointer to another function pointer type and back is defined C.
 *
 * Memory: the array (owner: the write_waiters, freed by waiters_free) grows
 * by doubling; popping is O(1). */
#ifndef FERRY_WAITERS_H
#define FERRY_WAITERS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef void (*waiter_fn)(void);

typedef struct write_waiter {
    uint64_t at; /* due once flushed_total >= at */
    waiter_fn cb;
    void *data;
} write_waiter;

typedef struct write_waiters {
    write_waiter *v;
    uint32_t head, n, cap;
} write_waiters;

/* Room for one more callback, so that a push after a write cannot fail.
 * Returns 0, or -1 without memory (w unchanged). */
static inline int waiters_reserve(write_waiters *w)
{
    if (w->head + w->n == w->cap) {
        if (w->head) {
            memmove(w->v, w->v + w->head, w->n * sizeof(*w->v));
            w->head = 0;
        } else {
            uint32_t cap = w->cap ? w->cap * 2 : 4;
            write_waiter *v = realloc(w->v, cap * sizeof(*v));
            if (!v)
                return -1;
            w->v = v;
            w->cap = cap;
        }
    }
    return 0;
}

/* Queue a callback. Returns 0, or -1 without memory (w unchanged). */
static inline int waiters_push(write_waiters *w, uint64_t at, waiter_fn cb, void *data)
{
    if (waiters_reserve(w) < 0)
        return -1;
    w->v[w->head + w->n++] = (write_waiter){at, cb, data};
    return 0;
}

static inline bool waiters_any(const write_waiters *w)
{
    return w->n != 0;
}

/* Whether the oldest callback's bytes are all out. */
static inline bool waiters_due(const write_waiters *w, uint64_t flushed)
{
    return w->n && w->v[w->head].at <= flushed;
}

/* Take the oldest callback into *out: if its bytes are out, or any with
 * `all` (the writes failed). Returns whether one was taken. Callbacks run by
 * the caller may push more. */
static inline bool waiters_pop(write_waiters *w, uint64_t flushed, bool all, write_waiter *out)
{
    if (!w->n || (!all && w->v[w->head].at > flushed))
        return false;
    *out = w->v[w->head];
    if (--w->n == 0)
        w->head = 0;
    else
        w->head++;
    return true;
}

/* Forget every callback, keeping the array. */
static inline void waiters_clear(write_waiters *w)
{
    w->head = w->n = 0;
}

static inline void waiters_free(write_waiters *w)
{
    free(w->v);
    w->v = NULL;
    w->head = w->n = w->cap = 0;
}

#endif /* FERRY_WAITERS_H */
