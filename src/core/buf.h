/* buf.h — read-buffer pool: buffers are borrowed while reading, returned when idle.
 *
 * A server with 10,000 keep-alive connections has perhaps 100 reading at any
 * moment. If every connection owned a 16 KiB read buffer, the idle ones would
 * pin 160 MB doing nothing. Instead a connection borrows a block from the
 * pool when bytes arrive and gives it back as soon as it holds no unparsed
 * bytes, so idle connections hold no read buffer at all. Returned blocks go on
 * a LIFO free list (the most recently used block is the one most likely still
 * in cache), up to max_cached; beyond that they are freed. A head larger than
 * the pool's size can grow its block (buf_grow); an oversized block is freed,
 * not cached, when it comes back, so one large request does not leave large
 * blocks behind.
 *
 * Who borrows: a transport (core/transport.h) fills its `rbuf` from its
 * pool's buf_pool when bytes arrive and gives it back with
 * buf_pool_put_if_empty once its owner has consumed them (buf_consume); a
 * head that does not fit grows the block (buf_grow) first.
 *
 * One pool per loop; not thread-safe (ferry's one-loop-per-thread model).
 */
#ifndef FERRY_BUF_H
#define FERRY_BUF_H

#include <stddef.h>
#include <stdint.h>

/* Default block size: Node's 16 KiB head limit fits in one block. */
#define BUF_DEFAULT_SIZE 16384

/* One read buffer: a header and its bytes in a single allocation. */
typedef struct buf_block {
    struct buf_block *_next; /* free-list link while cached (private) */
    size_t size;             /* capacity of data[] in bytes */
    size_t len;              /* bytes held: data[0..len); the borrower's to manage */
    char data[];
} buf_block;

/* Counters, readable at any time (pool->stats.outstanding, ...). */
typedef struct buf_pool_stats {
    size_t outstanding; /* blocks lent out now */
    size_t cached;      /* blocks on the free list now */
    size_t bytes;       /* data bytes held by lent and cached blocks now */
    uint64_t allocated; /* blocks ever allocated (cache misses) */
    uint64_t reused;    /* gets served from the free list */
    uint64_t grown;     /* successful buf_grow() reallocations */
} buf_pool_stats;

typedef struct buf_pool {
    buf_pool_stats stats;
    /* private */
    size_t _buf_size;   /* size of a standard block */
    size_t _max_cached; /* free-list bound */
    buf_block *_free;   /* free list, most recently returned first */
} buf_pool;

/* Ready an empty pool of `buf_size`-byte blocks (0 = BUF_DEFAULT_SIZE) that
 * keeps at most `max_cached` returned blocks for reuse (0 = none). Allocates
 * nothing. Returns 0, or FERRY_EINVAL for a size beyond SIZE_MAX / 2. */
int buf_pool_init(buf_pool *pool, size_t buf_size, size_t max_cached);

/* Free every cached block. Returns 0, or FERRY_EBUSY if blocks are still lent
 * out: the pool then caches nothing more, later buf_pool_put() calls free
 * their block at once, and the pool must outlive those calls. */
int buf_pool_destroy(buf_pool *pool);

/* Borrow an empty block (len 0, size = the pool's size): the most recently
 * returned one, or a new allocation. Owner: the caller, from here until it
 * hands the block back with buf_pool_put(). NULL when out of memory. */
buf_block *buf_pool_get(buf_pool *pool);

/* Give a block back (NULL does nothing). A standard-size block goes on the
 * free list if it has room, else it is freed; a grown block is always freed.
 * The caller must not touch the block afterwards. */
void buf_pool_put(buf_pool *pool, buf_block *b);

/* Give *slot back and set it to NULL if it holds no bytes (len == 0); keep it
 * otherwise. Call at the end of every read callback so that a connection
 * holds a block only while it has unparsed bytes. */
void buf_pool_put_if_empty(buf_pool *pool, buf_block **slot);

/* Make *b hold at least `min_size` bytes, keeping data[0..len): at least
 * double its size, by reallocation, so *b (and data) may move; pointers into
 * the old data must be rebased. Owner: unchanged, the borrower's; the grown
 * block is freed, not cached, by buf_pool_put(). Returns 0 (also when it is
 * already big enough), or FERRY_ENOMEM with *b unchanged and still valid. */
int buf_grow(buf_pool *pool, buf_block **b, size_t min_size);

/* Make a plain byte buffer (*buf, *cap bytes; owner: the caller's struct)
 * hold `need` bytes, doubling from `first` (or from *cap), by realloc: the
 * one growth rule for output, header and body buffers. Returns 0, or
 * FERRY_ENOMEM with *buf and *cap unchanged. */
int buf_reserve(char **buf, size_t *cap, size_t need, size_t first);

/* Record that `n` bytes were read into the free tail: len += n.
 * n must not exceed size - len. */
void buf_commit(buf_block *b, size_t n);

/* Drop the first `n` bytes (a parsed message), moving the rest to the front;
 * n >= len empties the block. */
void buf_consume(buf_block *b, size_t n);

#endif /* FERRY_BUF_H */
