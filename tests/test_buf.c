/* test_buf.c — the read-buffer pool: LIFO reuse, the cache bound, growing,
 * counters, and a real libuv read path (alloc_cb/read_cb over a socketpair)
 * that borrows, grows and returns blocks. ASan checks nothing leaks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "ferry.h"

static void test_init_defaults_and_limits(void **state)
{
    (void) state;
    buf_pool pool;
    assert_int_equal(buf_pool_init(&pool, 0, 4), 0);
    buf_block *b = buf_pool_get(&pool);
    assert_non_null(b);
    assert_int_equal(b->size, BUF_DEFAULT_SIZE);
    assert_int_equal(b->len, 0);
    memset(b->data, 'x', b->size); /* the whole size is usable (ASan checks) */
    buf_pool_put(&pool, b);
    assert_int_equal(buf_pool_destroy(&pool), 0);

    assert_int_equal(buf_pool_init(&pool, SIZE_MAX, 4), FERRY_EINVAL);
    assert_int_equal(buf_pool_init(&pool, 100, 0), 0);
    buf_pool_put(&pool, NULL); /* no-op */
    assert_int_equal(pool.stats.outstanding, 0);
    assert_int_equal(buf_pool_destroy(&pool), 0);
}

static void test_lifo_reuse(void **state)
{
    (void) state;
    buf_pool pool;
    assert_int_equal(buf_pool_init(&pool, 64, 8), 0);
    buf_block *a = buf_pool_get(&pool);
    buf_block *b = buf_pool_get(&pool);
    buf_block *c = buf_pool_get(&pool);
    assert_true(a != b && b != c && a != c);
    c->len = 5; /* a returned block comes back empty */
    buf_pool_put(&pool, a);
    buf_pool_put(&pool, b);
    buf_pool_put(&pool, c);
    assert_int_equal(pool.stats.cached, 3);
    assert_ptr_equal(buf_pool_get(&pool), c); /* last in, first out */
    assert_int_equal(c->len, 0);
    assert_ptr_equal(buf_pool_get(&pool), b);
    assert_ptr_equal(buf_pool_get(&pool), a);
    assert_int_equal(pool.stats.allocated, 3);
    assert_int_equal(pool.stats.reused, 3);
    buf_pool_put(&pool, a);
    buf_pool_put(&pool, b);
    buf_pool_put(&pool, c);
    assert_int_equal(buf_pool_destroy(&pool), 0);
    assert_int_equal(pool.stats.cached, 0);
    assert_int_equal(pool.stats.bytes, 0);
}

static void test_cache_bound(void **state)
{
    (void) state;
    buf_pool pool;
    buf_block *b[5];
    assert_int_equal(buf_pool_init(&pool, 32, 2), 0);
    for (int i = 0; i < 5; i++)
        b[i] = buf_pool_get(&pool);
    assert_int_equal(pool.stats.outstanding, 5);
    assert_int_equal(pool.stats.bytes, 5 * 32);
    for (int i = 0; i < 5; i++)
        buf_pool_put(&pool, b[i]);
    assert_int_equal(pool.stats.outstanding, 0);
    assert_int_equal(pool.stats.cached, 2); /* three were freed */
    assert_int_equal(pool.stats.bytes, 2 * 32);
    /* The two kept are the first two returned; later ones found it full. */
    buf_block *x = buf_pool_get(&pool);
    assert_ptr_equal(x, b[1]);
    buf_pool_put(&pool, x);
    assert_int_equal(buf_pool_destroy(&pool), 0);

    /* max_cached 0: nothing is ever kept. */
    assert_int_equal(buf_pool_init(&pool, 32, 0), 0);
    buf_pool_put(&pool, buf_pool_get(&pool));
    buf_pool_put(&pool, buf_pool_get(&pool));
    assert_int_equal(pool.stats.cached, 0);
    assert_int_equal(pool.stats.allocated, 2);
    assert_int_equal(pool.stats.bytes, 0);
    assert_int_equal(buf_pool_destroy(&pool), 0);
}

static void test_grow(void **state)
{
    (void) state;
    buf_pool pool;
    assert_int_equal(buf_pool_init(&pool, 16, 4), 0);
    buf_block *b = buf_pool_get(&pool);
    memcpy(b->data, "0123456789abcdef", 16);
    b->len = 16;

    assert_int_equal(buf_grow(&pool, &b, 10), 0); /* already big enough */
    assert_int_equal(b->size, 16);
    assert_int_equal(pool.stats.grown, 0);

    assert_int_equal(buf_grow(&pool, &b, 17), 0); /* doubles */
    assert_int_equal(b->size, 32);
    assert_int_equal(buf_grow(&pool, &b, 1000), 0); /* more than double: exact */
    assert_int_equal(b->size, 1000);
    assert_int_equal(b->len, 16);
    assert_memory_equal(b->data, "0123456789abcdef", 16);
    memset(b->data + 16, 'y', 1000 - 16);
    assert_int_equal(pool.stats.grown, 2);
    assert_int_equal(pool.stats.bytes, 1000);

    /* Impossible sizes fail without touching the block. */
    buf_block *before = b;
    assert_int_equal(buf_grow(&pool, &b, SIZE_MAX), FERRY_ENOMEM);
    assert_int_equal(buf_grow(&pool, &b, SIZE_MAX / 2 + 1), FERRY_ENOMEM);
    assert_ptr_equal(b, before);
    assert_int_equal(b->size, 1000);

    /* A grown block is freed, not cached. */
    buf_pool_put(&pool, b);
    assert_int_equal(pool.stats.cached, 0);
    assert_int_equal(pool.stats.outstanding, 0);
    assert_int_equal(pool.stats.bytes, 0);
    assert_int_equal(buf_pool_destroy(&pool), 0);
}

/* The free tail of *slot, borrowing a block into an empty slot: what a
 * reader hands its read call (as the transport does). {NULL, 0} when full. */
static void tail_of(buf_pool *pool, buf_block **slot, uv_buf_t *out)
{
    if (*slot == NULL) *slot = buf_pool_get(pool);
    buf_block *b = *slot;
    if (b == NULL || b->len == b->size) {
        out->base = NULL;
        out->len = 0;
        return;
    }
    out->base = b->data + b->len;
    out->len = b->size - b->len;
}

static void test_commit_consume_put_if_empty(void **state)
{
    (void) state;
    buf_pool pool;
    buf_block *slot = NULL;
    uv_buf_t out;
    assert_int_equal(buf_pool_init(&pool, 8, 4), 0);

    tail_of(&pool, &slot, &out); /* borrows into the empty slot */
    assert_non_null(slot);
    assert_ptr_equal(out.base, slot->data);
    assert_int_equal(out.len, 8);
    memcpy(out.base, "abcdef", 6);
    buf_commit(slot, 6);
    tail_of(&pool, &slot, &out); /* the free tail */
    assert_ptr_equal(out.base, slot->data + 6);
    assert_int_equal(out.len, 2);
    buf_commit(slot, 2);
    tail_of(&pool, &slot, &out); /* full: libuv would say UV_ENOBUFS */
    assert_null(out.base);
    assert_int_equal(out.len, 0);

    buf_consume(slot, 3);
    assert_int_equal(slot->len, 5);
    assert_memory_equal(slot->data, "def", 3);
    buf_pool_put_if_empty(&pool, &slot); /* still holds bytes: kept */
    assert_non_null(slot);
    buf_consume(slot, 99);
    assert_int_equal(slot->len, 0);
    buf_pool_put_if_empty(&pool, &slot);
    assert_null(slot);
    buf_pool_put_if_empty(&pool, &slot); /* NULL slot: nothing */
    assert_int_equal(pool.stats.outstanding, 0);
    assert_int_equal(pool.stats.cached, 1);
    assert_int_equal(buf_pool_destroy(&pool), 0);
}

static void test_destroy_with_blocks_lent_out(void **state)
{
    (void) state;
    buf_pool pool;
    assert_int_equal(buf_pool_init(&pool, 32, 4), 0);
    buf_block *lent = buf_pool_get(&pool);
    buf_pool_put(&pool, buf_pool_get(&pool)); /* one cached */
    assert_int_equal(pool.stats.cached, 1);
    assert_int_equal(buf_pool_destroy(&pool), FERRY_EBUSY);
    assert_int_equal(pool.stats.cached, 0);
    buf_pool_put(&pool, lent); /* freed at once, not cached */
    assert_int_equal(pool.stats.cached, 0);
    assert_int_equal(pool.stats.outstanding, 0);
    assert_int_equal(pool.stats.bytes, 0);
    assert_int_equal(buf_pool_destroy(&pool), 0);
}

/* ---- through libuv --------------------------------------------------------
 * A toy connection reads "messages" ending in "\r\n\r\n" through the pool,
 * as a transport does: the block is borrowed for each read, grown when a
 * message does not fit, and returned whenever no unparsed bytes remain. */
typedef struct conn {
    uv_pipe_t pipe;
    buf_pool *pool;
    buf_block *rbuf;
    int messages;
    size_t max_outstanding;
} conn;

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    conn *c = h->data;
    (void) suggested;
    tail_of(c->pool, &c->rbuf, out);
    if (c->pool->stats.outstanding > c->max_outstanding)
        c->max_outstanding = c->pool->stats.outstanding;
}

/* End of the first message in p[0..n), or NULL. */
static char *find_end(char *p, size_t n)
{
    for (size_t i = 0; i + 4 <= n; i++)
        if (memcmp(p + i, "\r\n\r\n", 4) == 0) return p + i + 4;
    return NULL;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    conn *c = s->data;
    (void) b;
    assert_true(nread >= 0 || nread == UV_EOF);
    if (nread > 0) buf_commit(c->rbuf, (size_t) nread);
    while (c->rbuf != NULL && c->rbuf->len > 0) {
        char *end = find_end(c->rbuf->data, c->rbuf->len);
        if (end == NULL) {
            if (c->rbuf->len == c->rbuf->size) /* full: grow before libuv says ENOBUFS */
                assert_int_equal(buf_grow(c->pool, &c->rbuf, c->rbuf->size + 1), 0);
            break;
        }
        c->messages++;
        buf_consume(c->rbuf, (size_t) (end - c->rbuf->data));
    }
    buf_pool_put_if_empty(c->pool, &c->rbuf); /* idle: hold no buffer */
    if (nread == UV_EOF) {
        assert_null(c->rbuf); /* no partial message left */
        uv_close((uv_handle_t *) s, NULL);
    }
}

static void test_reads_through_libuv(void **state)
{
    (void) state;
    uv_loop_t loop;
    buf_pool pool;
    conn c = {0};
    uv_os_sock_t fds[2];
    static const char wire[] = "GET / HTTP/1.1\r\n\r\n" /* 18 bytes */
                               "GET /a-longer-target HTTP/1.1\r\nX: y\r\n\r\n"
                               "GET /c HTTP/1.1\r\n\r\n";
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(buf_pool_init(&pool, 16, 4), 0); /* smaller than one message */
    assert_int_equal(uv_socketpair(SOCK_STREAM, 0, fds, 0, 0), 0);
    c.pool = &pool;
    assert_int_equal(uv_pipe_init(&loop, &c.pipe, 0), 0);
    c.pipe.data = &c;
    assert_int_equal(uv_pipe_open(&c.pipe, fds[0]), 0);
    assert_int_equal(write(fds[1], wire, sizeof(wire) - 1), (ssize_t) (sizeof(wire) - 1));
    assert_int_equal(close(fds[1]), 0); /* EOF after the bytes */
    assert_int_equal(uv_read_start((uv_stream_t *) &c.pipe, on_alloc, on_read), 0);

    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(c.messages, 3);
    assert_null(c.rbuf);
    assert_int_equal(c.max_outstanding, 1);
    assert_int_equal(pool.stats.outstanding, 0);
    assert_true(pool.stats.grown >= 1);
    assert_int_equal(buf_pool_destroy(&pool), 0);
    assert_int_equal(pool.stats.bytes, 0);
}

/* buf_reserve: the first allocation is `first`, then doubling; contents
 * survive; enough room is a no-op. */
static void test_reserve_plain_bytes(void **state)
{
    (void) state;
    char *p = NULL;
    size_t cap = 0;
    assert_int_equal(buf_reserve(&p, &cap, 10, 256), 0);
    assert_int_equal(cap, 256);
    memcpy(p, "hello", 5);
    char *before = p;
    assert_int_equal(buf_reserve(&p, &cap, 200, 256), 0);
    assert_ptr_equal(p, before);
    assert_int_equal(cap, 256);
    assert_int_equal(buf_reserve(&p, &cap, 1000, 256), 0);
    assert_int_equal(cap, 1024);
    assert_memory_equal(p, "hello", 5);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_defaults_and_limits),
        cmocka_unit_test(test_lifo_reuse),
        cmocka_unit_test(test_cache_bound),
        cmocka_unit_test(test_grow),
        cmocka_unit_test(test_commit_consume_put_if_empty),
        cmocka_unit_test(test_destroy_with_blocks_lent_out),
        cmocka_unit_test(test_reads_through_libuv),
        cmocka_unit_test(test_reserve_plain_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
