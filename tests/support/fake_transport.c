/* fake_transport.c — see fake_transport.h. An implementation of
 * core/transport.h's operations over memory: what a real transport would
 * read from the kernel comes from fake_deliver, what it would send goes to
 * an output string. */
#include "support/fake_transport.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/transport.h"
#include "server/server_conn.h"

struct fake_conn {
    transport *t;          /* NULL once closed */
    uv_idle_t tick;        /* deferred work: slow writes, the close callback */
    char *in;              /* delivered, not yet read */
    size_t in_len, in_cap;
    bool in_eof;           /* the peer's FIN, once the bytes before it are read */
    char *out;             /* written so far */
    size_t out_len, out_cap;
    size_t limit;          /* bytes per write, 0 = all */
    int fail_err;
    size_t fail_after;
    bool closed, reset, shut, close_due;
};

static fake_conn *fake_of(transport *t)
{
    return t->impl;
}

static void grow(char **p, size_t *cap, size_t need)
{
    if (need + 1 <= *cap)
        return;
    size_t c = *cap ? *cap : 256;
    while (c < need + 1)
        c *= 2;
    *p = realloc(*p, c);
    assert_non_null(*p);
    *cap = c;
}

/* Move delivered bytes into the connection's read buffer while it reads. */
static void pump_in(fake_conn *f)
{
    transport *t = f->t;
    while (t && !(t->flags & (TF_CLOSING | TF_ENDED)) && transport_reading(t) &&
           (f->in_len || f->in_eof)) {
        if (!f->in_len) { /* everything before the FIN was read */
            t->flags |= TF_ENDED;
            f->in_eof = false;
            t->pool->ev->on_read(t, FERRY_EOF);
            return;
        }
        size_t n;
        if (t->flags & TF_DISCARD) {
            n = f->in_len;
        } else {
            buf_block *b = transport_rbuf_get(t);
            assert_non_null(b);
            if (b->len == b->size)
                return; /* full: the owner stops reading or makes room */
            n = b->size - b->len < f->in_len ? b->size - b->len : f->in_len;
            memcpy(b->data + b->len, f->in, n);
            buf_commit(b, n);
        }
        memmove(f->in, f->in + n, f->in_len - n);
        f->in_len -= n;
        if (!(t->flags & TF_DISCARD))
            t->pool->bytes_in += n;
        t->pool->ev->on_read(t, (ssize_t) n);
        t = f->t; /* the callback may have closed it */
        if (t && !(t->flags & TF_CLOSING))
            transport_rbuf_release(t);
    }
}

/* Take up to `max` queued bytes as written. Returns what was taken, or the
 * failure. */
static int64_t take_out(fake_conn *f, size_t max)
{
    transport *t = f->t;
    transport_out *o = t->out;
    size_t n = o ? o->len - o->off : 0;
    if (f->limit && n > f->limit)
        n = f->limit;
    if (n > max)
        n = max;
    if (f->fail_err) {
        if (f->fail_after == 0)
            return f->fail_err;
        if (n > f->fail_after)
            n = f->fail_after;
        f->fail_after -= n;
    }
    grow(&f->out, &f->out_cap, f->out_len + n);
    memcpy(f->out + f->out_len, o->buf + o->off, n);
    f->out_len += n;
    f->out[f->out_len] = '\0';
    transport_out_advance(t, n);
    return (int64_t) n;
}

static void schedule(fake_conn *f);

static void on_tick(uv_idle_t *h)
{
    fake_conn *f = h->data;
    uv_idle_stop(h);
    if (f->close_due) {
        f->close_due = false;
        transport *t = f->t;
        f->t = NULL;
        t->pool->ev->on_closed(t); /* the connection may free t now */
        return;
    }
    transport *t = f->t;
    if (!t || !(t->flags & TF_WRITING))
        return;
    int64_t n = take_out(f, SIZE_MAX);
    if (n < 0) {
        t->flags &= (uint16_t) ~TF_WRITING;
        t->out->off = t->out->len = 0;
        t->pool->ev->on_written(t, (int) n);
        return;
    }
    if (!t->out || t->out->len == 0) {
        t->flags &= (uint16_t) ~TF_WRITING;
        transport_out_release(t);
    } else {
        schedule(f);
    }
    t->pool->ev->on_written(t, 0);
}

static void schedule(fake_conn *f)
{
    uv_idle_start(&f->tick, on_tick);
}

static void fake_update(transport *t)
{
    pump_in(fake_of(t));
}

static int64_t fake_flush(transport *t)
{
    fake_conn *f = fake_of(t);
    if (t->flags & TF_WRITING)
        return 0;
    int64_t n = take_out(f, SIZE_MAX);
    if (n < 0)
        return n;
    if (t->out && t->out->len) {
        t->flags |= TF_WRITING;
        schedule(f);
    } else if (t->flags & TF_IDLE) {
        transport_out_release(t);
    }
    return n;
}

static int fake_pending(transport *t)
{
    fake_conn *f = fake_of(t);
    if (t->flags & TF_CLOSING)
        return UV_EBADF;
    return f->in_len ? 1 : f->in_eof ? FERRY_EOF : 0;
}

static ssize_t fake_read_now(transport *t)
{
    fake_conn *f = fake_of(t);
    if (t->flags & TF_CLOSING)
        return UV_EBADF;
    if (!f->in_len)
        return f->in_eof ? FERRY_EOF : 0;
    buf_block *b = transport_rbuf_get(t);
    size_t n = b->size - b->len < f->in_len ? b->size - b->len : f->in_len;
    memcpy(b->data + b->len, f->in, n);
    buf_commit(b, n);
    memmove(f->in, f->in + n, f->in_len - n);
    f->in_len -= n;
    return (ssize_t) n;
}

static int fake_shutdown(transport *t)
{
    fake_conn *f = fake_of(t);
    if (t->flags & TF_CLOSING)
        return UV_EBADF;
    f->shut = true;
    return 0;
}

static void fake_close(transport *t, bool reset)
{
    fake_conn *f = fake_of(t);
    transport_release_all(t);
    f->closed = true;
    f->reset = reset;
    f->close_due = true; /* on_closed from the loop, never inside the call */
    schedule(f);
}

static int fake_peername(transport *t, struct sockaddr_storage *addr)
{
    (void) t;
    (void) addr;
    return FERRY_ENOTSUP;
}

static const transport_ops fake_ops = {
    .name = "fake",
    .update = fake_update,
    .flush = fake_flush,
    .pending = fake_pending,
    .read_now = fake_read_now,
    .shutdown = fake_shutdown,
    .close = fake_close,
    .idle = NULL,
    .peername = fake_peername,
};

static int open_fake(transport *t, transport_pool *p, uv_loop_t *loop, void *arg)
{
    fake_conn *f = arg;
    (void) loop;
    if (!t)
        return 0;
    memset(t, 0, sizeof(*t));
    t->ops = &fake_ops;
    t->pool = p;
    t->impl = f;
    t->fd = -1;
    f->t = t;
    return 0;
}

/* Allocates the fake (owner: the test, fake_free). */
fake_conn *fake_open(ferry_server *s)
{
    fake_conn *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(uv_idle_init(s->loop, &f->tick), 0);
    f->tick.data = f;
    assert_int_equal(server_conn_open(s, open_fake, f), 0);
    return f;
}

static void on_tick_closed(uv_handle_t *h)
{
    free(h->data);
}

void fake_free(fake_conn *f)
{
    assert_true(f->closed && !f->t); /* the connection is gone */
    free(f->in);
    free(f->out);
    uv_close((uv_handle_t *) &f->tick, on_tick_closed); /* frees f */
}

void fake_deliver(fake_conn *f, const void *p, size_t n)
{
    grow(&f->in, &f->in_cap, f->in_len + n);
    memcpy(f->in + f->in_len, p, n);
    f->in_len += n;
    pump_in(f);
}

void fake_peer_reset(fake_conn *f)
{
    transport *t = f->t;
    if (t && !(t->flags & TF_CLOSING))
        t->pool->ev->on_read(t, FERRY_ECONNRESET); /* what a read returns after a RST */
}

void fake_eof(fake_conn *f)
{
    f->in_eof = true;
    pump_in(f);
}

size_t fake_unread(const fake_conn *f)
{
    return f->in_len;
}

void fake_write_limit(fake_conn *f, size_t bytes)
{
    f->limit = bytes;
}

void fake_fail_writes(fake_conn *f, int err, size_t after)
{
    f->fail_err = err;
    f->fail_after = after;
}

const char *fake_output(const fake_conn *f, size_t *len)
{
    if (len)
        *len = f->out_len;
    return f->out ? f->out : "";
}

void fake_output_clear(fake_conn *f)
{
    f->out_len = 0;
    if (f->out)
        f->out[0] = '\0';
}

bool fake_closed(const fake_conn *f)
{
    return f->closed;
}

bool fake_reset(const fake_conn *f)
{
    return f->reset;
}

bool fake_shut(const fake_conn *f)
{
    return f->shut;
}

bool fake_reading(const fake_conn *f)
{
    return f->t && transport_reading(f->t);
}
