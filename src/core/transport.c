/* transport.c — what every transport shares: its pool, the read buffer it
 * lends out, the output buffer and its totals. The implementations
 * (transport_tcp.c, src/tls/transport_tls.c) only move bytes. */
#include "core/transport.h"

#include <stdlib.h>

#include "ferry.h"

#define OUT_CACHE 256 /* output buffers a pool keeps for reuse */

int transport_pool_init(transport_pool *p, const transport_events *ev, size_t rbuf_size,
                        size_t rbuf_cache)
{
    memset(p, 0, sizeof(*p));
    p->ev = ev;
    p->max_free_out = OUT_CACHE;
    p->out_keep_bytes = 64 * 1024;
    return buf_pool_init(&p->rbufs, rbuf_size, rbuf_cache);
}

int transport_pool_destroy(transport_pool *p)
{
    while (p->free_out) {
        transport_out *o = p->free_out;
        p->free_out = o->next_free;
        free(o->buf);
        free(o);
    }
    p->nfree_out = 0;
    return buf_pool_destroy(&p->rbufs);
}

buf_block *transport_rbuf_get(transport *t)
{
    if (!t->rbuf)
        t->rbuf = buf_pool_get(&t->pool->rbufs);
    return t->rbuf;
}

void transport_rbuf_release(transport *t)
{
    buf_pool_put_if_empty(&t->pool->rbufs, &t->rbuf);
}

int transport_rbuf_grow(transport *t, size_t min_size)
{
    if (!transport_rbuf_get(t))
        return FERRY_ENOMEM;
    return buf_grow(&t->pool->rbufs, &t->rbuf, min_size);
}

/* Borrows t->out from the pool's cache or allocates it (owner: t until
 * transport_out_release gives it back; the pool frees cached ones), and
 * grows its buffer (owner: the transport_out). */
int transport_reserve_slow(transport *t, size_t n)
{
    transport_out *o = t->out;
    if (!o) {
        transport_pool *p = t->pool;
        if ((o = p->free_out)) { /* the usual case: a cached one, empty */
            p->free_out = o->next_free;
            p->nfree_out--;
        } else if (!(o = calloc(1, sizeof(*o)))) {
            return FERRY_ENOMEM;
        }
        t->out = o;
        if (n <= o->cap)
            return 0;
    } else if (o->off && o->off == o->len) {
        o->off = o->len = 0;
    } else if (o->off > o->cap / 2) { /* most of it is written: move the rest down */
        memmove(o->buf, o->buf + o->off, o->len - o->off);
        o->len -= o->off;
        o->off = 0;
    }
    if (o->len + n <= o->cap)
        return 0;
    return buf_reserve(&o->buf, &o->cap, o->len + n, 4096);
}

void transport_out_consume(transport *t, size_t n)
{
    transport_out *o = t->out;
    o->off += n;
    if (o->off == o->len)
        o->off = o->len = 0;
}

void transport_count_flushed(transport *t, size_t n)
{
    t->flushed_total += n;
    t->pool->bytes_out += n;
}

void transport_out_advance(transport *t, size_t n)
{
    transport_out_consume(t, n);
    transport_count_flushed(t, n);
}

void transport_out_release(transport *t)
{
    transport_out *o = t->out;
    if (!o || o->len || !(t->flags & TF_IDLE)) /* bytes queued, or the owner is busy */
        return;
    t->out = NULL;
    transport_pool *p = t->pool;
    if (o->cap > p->out_keep_bytes) { /* one big response does not stay cached */
        free(o->buf);
        o->buf = NULL;
        o->cap = 0;
    }
    if (p->nfree_out < p->max_free_out) {
        o->next_free = p->free_out;
        p->free_out = o;
        p->nfree_out++;
    } else {
        free(o->buf);
        free(o);
    }
}

void transport_release_all(transport *t)
{
    if (t->rbuf) {
        buf_pool_put(&t->pool->rbufs, t->rbuf);
        t->rbuf = NULL;
    }
    if (t->out) {
        t->out->off = t->out->len = 0; /* unwritten bytes are dropped */
        t->flags = (uint16_t) ((t->flags | TF_IDLE) & ~TF_WRITING);
        transport_out_release(t);
    }
}

void transport_ref(transport *t, bool ref)
{
    if (t->fd < 0)
        return;
    if (ref)
        uv_ref((uv_handle_t *) &t->poll);
    else
        uv_unref((uv_handle_t *) &t->poll);
}
