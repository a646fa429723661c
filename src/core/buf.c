/* buf.c — read-buffer pool: a LIFO free list of fixed-size blocks.
 *
 * Owns the cached blocks (freed by buf_pool_destroy) and the bookkeeping;
 * a lent block belongs to its borrower until it comes back. A block is one
 * allocation (header + bytes), so a cache miss is one malloc and a hit is two
 * pointer moves. Grown blocks are recognised by size != the pool's size and
 * never cached. See buf.h for who borrows.
 */
#include "core/buf.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"

/* Largest data size we will ask malloc for; anything near SIZE_MAX would
 * overflow the header arithmetic. */
#define BUF_MAX_SIZE (SIZE_MAX / 2)

int buf_pool_init(buf_pool *pool, size_t buf_size, size_t max_cached)
{
    if (buf_size == 0) buf_size = BUF_DEFAULT_SIZE;
    if (buf_size > BUF_MAX_SIZE) return FERRY_EINVAL;
    memset(pool, 0, sizeof(*pool));
    pool->_buf_size = buf_size;
    pool->_max_cached = max_cached;
    pool->_free = NULL;
    return 0;
}

int buf_pool_destroy(buf_pool *pool)
{
    while (pool->_free != NULL) {
        buf_block *b = pool->_free;
        pool->_free = b->_next;
        pool->stats.cached--;
        pool->stats.bytes -= b->size;
        free(b);
    }
    /* Lent blocks may still come back: make sure they are freed, not cached. */
    pool->_max_cached = 0;
    return pool->stats.outstanding != 0 ? FERRY_EBUSY : 0;
}

buf_block *buf_pool_get(buf_pool *pool)
{
    buf_block *b = pool->_free;
    if (b != NULL) {
        pool->_free = b->_next;
        pool->stats.cached--;
        pool->stats.reused++;
    } else {
        b = malloc(sizeof(*b) + pool->_buf_size);
        if (b == NULL) return NULL;
        b->size = pool->_buf_size;
        pool->stats.allocated++;
        pool->stats.bytes += b->size;
    }
    b->_next = NULL;
    b->len = 0;
    pool->stats.outstanding++;
    return b;
}

void buf_pool_put(buf_pool *pool, buf_block *b)
{
    if (b == NULL) return;
    pool->stats.outstanding--;
    if (b->size == pool->_buf_size && pool->stats.cached < pool->_max_cached) {
        b->len = 0;
        b->_next = pool->_free;
        pool->_free = b;
        pool->stats.cached++;
        return;
    }
    pool->stats.bytes -= b->size;
    free(b);
}

void buf_pool_put_if_empty(buf_pool *pool, buf_block **slot)
{
    if (*slot != NULL && (*slot)->len == 0) {
        buf_pool_put(pool, *slot);
        *slot = NULL;
    }
}

/* Doubling keeps a head that grows a little at a time at O(n) total copying;
 * the caller's own limit (max_header_bytes) bounds how far it goes. */
int buf_grow(buf_pool *pool, buf_block **bp, size_t min_size)
{
    buf_block *b = *bp;
    if (min_size <= b->size) return 0;
    if (min_size > BUF_MAX_SIZE) return FERRY_ENOMEM;
    size_t new_size = b->size <= BUF_MAX_SIZE / 2 ? b->size * 2 : BUF_MAX_SIZE;
    if (new_size < min_size) new_size = min_size;
    buf_block *nb = realloc(b, sizeof(*nb) + new_size);
    if (nb == NULL) return FERRY_ENOMEM;
    pool->stats.bytes += new_size - nb->size;
    pool->stats.grown++;
    nb->size = new_size;
    *bp = nb;
    return 0;
}

void buf_commit(buf_block *b, size_t n)
{
    assert(n <= b->size - b->len);
    b->len += n;
}

void buf_consume(buf_block *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

int buf_reserve(char **buf, size_t *cap, size_t need, size_t first)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : first;
    while (c < need)
        c *= 2;
    char *p = realloc(*buf, c);
    if (!p)
        return FERRY_ENOMEM;
    *buf = p;
    *cap = c;
    return 0;
}
