/* transport_tls.c — see transport_tls.h. The socket calls are the plain
 * transport's (transport_sock_*); between them and the HTTP code sits the
 * engine: ciphertext is received straight into its input buffer and sent
 * from its output buffer, plaintext goes to and from the transport's own
 * buffers.
 *
 * Decrypted bytes the owner was not reading yet stay in the engine; when it
 * asks for bytes again they are delivered from the loop (the socket may
 * have nothing new to wake us): the poll watches for writability once, as a
 * wake-up that always comes.
 */
#include "tls/transport_tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tls/tls_engine.h"

#define TLS_READ_CHUNK 16384 /* ciphertext received per call: one full record */
#define TLS_MARKS 16         /* plaintext writes whose records are still on their way */

/* Plaintext bytes that count as handed to the kernel once the ciphertext
 * sent reaches cipher_end. */
typedef struct tls_mark {
    uint64_t cipher_end;
    uint64_t plain;
} tls_mark;

typedef struct tls_state {
    transport *t;
    tls_engine *e;
    timeout_entry handshake_tmo;
    bool server;
    bool handshake_reported; /* on_ready ran for the handshake */
    bool failed;             /* the engine returned an error: no more TLS */
    bool wake;               /* go on from the loop: buffered plaintext, early bytes */
    int fail_err;
    int early_err;           /* the early bytes failed: reported from the loop */
    uint64_t cipher_sent;    /* ciphertext handed to the kernel, ever */
    tls_mark marks[TLS_MARKS];
    uint32_t mhead, mcount;
} tls_state;

static const transport_ops tls_ops;
static void tls_on_poll(uv_poll_t *h, int status, int events);

static tls_state *st_of(transport *t)
{
    return t->impl;
}

/* ---- sending ciphertext ---- */

static uint64_t cipher_queued(tls_state *st)
{
    return st->cipher_sent + tls_engine_out_pending(st->e);
}

/* Plaintext whose records were all sent counts as flushed. */
static void count_marks(transport *t, tls_state *st)
{
    while (st->mcount && st->marks[st->mhead].cipher_end <= st->cipher_sent) {
        transport_count_flushed(t, (size_t) st->marks[st->mhead].plain);
        st->mhead = (st->mhead + 1) % TLS_MARKS;
        st->mcount--;
    }
}

static void push_mark(tls_state *st, uint64_t plain)
{
    /* before the handshake is done the engine holds the plaintext: its
     * records come later (fixed up when the handshake ends) */
    uint64_t end = tls_engine_handshake_done(st->e) ? cipher_queued(st) : UINT64_MAX;
    if (st->mcount == TLS_MARKS) { /* full: fold into the newest */
        tls_mark *last = &st->marks[(st->mhead + st->mcount - 1) % TLS_MARKS];
        last->cipher_end = end;
        last->plain += plain;
        return;
    }
    st->marks[(st->mhead + st->mcount) % TLS_MARKS] = (tls_mark){end, plain};
    st->mcount++;
}

static void fix_marks(tls_state *st)
{
    for (uint32_t i = 0; i < st->mcount; i++) {
        tls_mark *m = &st->marks[(st->mhead + i) % TLS_MARKS];
        if (m->cipher_end == UINT64_MAX)
            m->cipher_end = cipher_queued(st);
    }
}

static int tls_events(const transport *t)
{
    tls_state *st = t->impl;
    int ev = 0;
    bool handshaking = !st->failed && !tls_engine_handshake_done(st->e);
    /* after a failure only a lingering server reads (raw, dropped: tls_read);
     * any other read would find nothing to do and wake us forever */
    bool reading = st->failed ? (t->flags & (TF_WANT_READ | TF_DISCARD)) ==
                                    (TF_WANT_READ | TF_DISCARD)
                              : (t->flags & TF_WANT_READ) || handshaking;
    if (reading && !(t->flags & TF_ENDED))
        ev |= UV_READABLE;
    if ((t->flags & (TF_WRITING | TF_CONNECTING)) || st->wake)
        ev |= UV_WRITABLE;
    return ev;
}

static void tls_update_poll(transport *t)
{
    transport_sock_watch(t, tls_events(t), tls_on_poll);
}

/* The poll was the plain transport's: make it ours. */
static void tls_take_poll(transport *t)
{
    t->poll_events = 0;
    t->flags &= (uint16_t) ~TF_POLLING;
    tls_update_poll(t);
}

/* A send failed because the peer is gone. A server that refuses us (no or
 * an untrusted client certificate) may send its alert and reset at once:
 * the alert arrived first and waits in the kernel, and it says what went
 * wrong where the reset does not. Read what is waiting through the engine
 * (bounded; plaintext is dropped: the connection is over either way) and
 * return the engine's TLS error if that brings one, else err. */
static int peer_reason(transport *t, int err)
{
    tls_state *st = st_of(t);
    if (st->failed || (err != FERRY_ECONNRESET && err != FERRY_EPIPE))
        return err;
    for (int rounds = 0; rounds < 8; rounds++) {
        ssize_t r;
        do
            r = tls_engine_read(st->e, t->pool->discard, sizeof(t->pool->discard));
        while (r > 0);
        if (r < 0)
            return ferry_err_kind_of((int) r) == FERRY_ERRK_TLS ? (int) r : err;
        size_t room;
        char *p = tls_engine_in_space(st->e, TLS_READ_CHUNK, &room);
        if (!p)
            break;
        ssize_t n = transport_sock_recv(t, p, room);
        if (n <= 0)
            break; /* nothing more, or the reset itself */
        if (tls_engine_in_commit(st->e, (size_t) n) < 0)
            continue; /* the read above reports the error */
    }
    return err;
}

/* Send what the engine has; what the socket does not take waits for
 * writability. Returns 0 or the socket's error (or what the peer said
 * before it went: peer_reason). */
static int send_cipher(transport *t)
{
    tls_state *st = st_of(t);
    for (;;) {
        size_t len;
        const char *p = tls_engine_out_peek(st->e, &len);
        if (!len)
            break;
        ssize_t w = transport_sock_send(t, p, len);
        if (w < 0)
            return peer_reason(t, (int) w);
        if (w == 0)
            break;
        tls_engine_out_consume(st->e, (size_t) w);
        st->cipher_sent += (uint64_t) w;
    }
    count_marks(t, st);
    bool more = tls_engine_out_pending(st->e) != 0;
    if (more)
        t->flags |= TF_WRITING;
    else
        t->flags &= (uint16_t) ~TF_WRITING;
    /* after a failure, plaintext still queued will never be sent: the FIN
     * waits only for the alert */
    if (!more && (t->flags & TF_SHUT_PENDING) && (st->failed || !(t->out && t->out->len))) {
        t->flags &= (uint16_t) ~TF_SHUT_PENDING;
        shutdown(t->fd, SHUT_WR);
    }
    tls_update_poll(t);
    return 0;
}

/* ---- failures ---- */

static const char plain_http_answer[] = "HTTP/1.1 400 Bad Request\r\n"
                                        "Content-Type: text/plain; charset=utf-8\r\n"
                                        "Content-Length: 37\r\n"
                                        "Connection: close\r\n\r\n"
                                        "This port speaks HTTPS, not HTTP.\r\n\r\n";

/* The engine failed with err: send what it has for the peer (an alert),
 * and for plain HTTP on a TLS port a plain-text 400, then tell the owner.
 * What the socket does not take now goes out as it becomes writable. A
 * server's owner may then close gracefully (transport_shutdown: the FIN
 * after the alert, then a linger in discard mode, reading raw), so the
 * alert is not destroyed by a RST: a close with the client's bytes unread,
 * or an immediate reset, would make the client see ECONNRESET instead. */
static void fail(transport *t, int err)
{
    tls_state *st = st_of(t);
    if (st->failed)
        return;
    st->failed = true;
    st->fail_err = err;
    timeout_disarm(&st->handshake_tmo);
    if (err == FERRY_ETLSPLAINHTTP)
        transport_sock_send(t, plain_http_answer, sizeof(plain_http_answer) - 1);
    else
        send_cipher(t);
    const transport_events *ev = t->pool->ev;
    if (!st->handshake_reported && !st->server) {
        st->handshake_reported = true;
        ev->on_ready(t, err); /* a client's connect failed */
        return;
    }
    if (!st->server) /* a server may linger: its owner reads on, raw */
        t->flags |= TF_ENDED;
    tls_update_poll(t);
    ev->on_read(t, err);
}

/* ---- receiving ---- */

/* The handshake just finished: tell the owner, once. */
static void handshake_done(transport *t)
{
    tls_state *st = st_of(t);
    if (st->handshake_reported || !tls_engine_handshake_done(st->e))
        return;
    st->handshake_reported = true;
    timeout_disarm(&st->handshake_tmo);
    fix_marks(st);
    t->pool->ev->on_ready(t, 0);
}

/* Decrypt into the read buffer (or the discard buffer) until it is full or
 * the engine has nothing more: the bytes added, and in *end what stopped it
 * (0: nothing more or full; FERRY_EOF, FERRY_ETLSTRUNCATED, an error). */
static ssize_t decrypt(transport *t, ssize_t *end)
{
    tls_state *st = st_of(t);
    ssize_t total = 0;
    *end = 0;
    for (;;) {
        ssize_t r;
        if (t->flags & TF_DISCARD) {
            r = tls_engine_read(st->e, t->pool->discard, sizeof(t->pool->discard));
        } else {
            buf_block *b = transport_rbuf_get(t);
            if (!b) {
                *end = FERRY_ENOMEM;
                return total;
            }
            if (b->len == b->size)
                return total; /* the owner makes room first */
            r = tls_engine_read(st->e, b->data + b->len, b->size - b->len);
            if (r > 0) {
                buf_commit(b, (size_t) r);
                t->pool->bytes_in += (uint64_t) r;
            }
        }
        if (r <= 0) {
            *end = r;
            return total;
        }
        total += r;
    }
}

/* Hand the owner what the engine has decrypted, while it reads: as long as
 * it makes room, the engine is drained (no socket event would bring back
 * bytes it already holds). */
static void deliver(transport *t)
{
    const transport_events *ev = t->pool->ev;
    ssize_t end = 0;
    while ((t->flags & TF_WANT_READ) && !(t->flags & (TF_ENDED | TF_CLOSING))) {
        ssize_t total = decrypt(t, &end);
        if (total > 0) {
            ev->on_read(t, total);
            if (t->flags & TF_CLOSING)
                return;
        }
        bool full = t->rbuf && t->rbuf->len == t->rbuf->size;
        if (end != 0 || total == 0 || full)
            break; /* an end, nothing more, or the owner kept what it got */
    }
    if (end < 0) {
        if (end == FERRY_EOF || end == FERRY_ETLSTRUNCATED) {
            t->flags |= TF_ENDED;
            tls_update_poll(t);
            ev->on_read(t, end);
        } else {
            fail(t, (int) end);
        }
        if (t->flags & TF_CLOSING)
            return;
    }
    if (end == 0)
        send_cipher(t); /* a ticket's processing may have queued a reply */
    if (!(t->flags & TF_CLOSING))
        transport_rbuf_release(t);
}

/* After the engine failed, a lingering owner still reads: raw bytes, dropped. */
static void read_raw(transport *t)
{
    ssize_t n = transport_sock_recv(t, t->pool->discard, sizeof(t->pool->discard));
    if (n == 0)
        return;
    if (n < 0) {
        t->flags |= TF_ENDED;
        tls_update_poll(t);
    }
    t->pool->ev->on_read(t, n);
}

/* Readable: one recv of ciphertext into the engine, then what it yields. */
static void tls_read(transport *t)
{
    tls_state *st = st_of(t);
    if (st->failed) {
        if (t->flags & TF_DISCARD)
            read_raw(t);
        return;
    }
    size_t room;
    char *p = tls_engine_in_space(st->e, TLS_READ_CHUNK, &room);
    if (!p) {
        fail(t, FERRY_ENOMEM);
        return;
    }
    ssize_t n = transport_sock_recv(t, p, room);
    int rc;
    if (n > 0)
        rc = tls_engine_in_commit(st->e, (size_t) n);
    else if (n == FERRY_EOF)
        rc = tls_engine_feed_eof(st->e);
    else if (n == 0)
        return; /* a spurious wake-up */
    else
        rc = (int) n; /* the socket failed */
    if (rc < 0) {
        fail(t, rc);
        return;
    }
    rc = send_cipher(t);
    if (rc < 0) {
        fail(t, rc);
        return;
    }
    handshake_done(t);
    if (t->flags & TF_CLOSING)
        return;
    if (n == FERRY_EOF && !tls_engine_handshake_done(st->e)) {
        fail(t, st->server ? FERRY_EOF : FERRY_ETLSHANDSHAKE); /* gone mid-handshake */
        return;
    }
    deliver(t);
}

/* A server's client did not finish its handshake in time. */
static void on_handshake_timeout(timeout_entry *e)
{
    tls_state *st = container_of(e, tls_state, handshake_tmo);
    transport *t = st->t;
    if (st->handshake_reported || (t->flags & TF_CLOSING))
        return;
    st->handshake_reported = true;
    st->failed = true;
    st->fail_err = FERRY_EHEADERSTIMEOUT;
    t->pool->ev->on_ready(t, FERRY_EHEADERSTIMEOUT);
}

/* Go on from the loop: send what the engine has (a reply to early bytes),
 * see the handshake through, deliver buffered plaintext. */
static void progress(transport *t)
{
    tls_state *st = st_of(t);
    if (st->early_err) {
        int err = st->early_err;
        st->early_err = 0;
        fail(t, err);
        return;
    }
    if (st->failed)
        return;
    int rc = send_cipher(t);
    if (rc < 0) {
        fail(t, rc);
        return;
    }
    handshake_done(t);
    if (!(t->flags & TF_CLOSING))
        deliver(t);
}

/* ---- the poll ---- */

static void tls_on_poll(uv_poll_t *h, int status, int events)
{
    transport *t = h->data;
    tls_state *st = st_of(t);
    if (t->flags & TF_CLOSING)
        return;
    uint64_t flushed = t->flushed_total;
    if (status < 0) { /* POLLERR: libuv stopped the handle; read the real error */
        t->flags &= (uint16_t) ~TF_POLLING;
        t->poll_events = 0;
        events = UV_READABLE | UV_WRITABLE;
    }
    if (t->flags & TF_CONNECTING) {
        if (!(events & UV_WRITABLE))
            return;
        t->flags &= (uint16_t) ~TF_CONNECTING;
        int err = transport_sock_error(t, status < 0 ? status : 0);
        if (err < 0) {
            st->handshake_reported = true;
            tls_update_poll(t);
            t->pool->ev->on_ready(t, err);
            return;
        }
        int rc = tls_engine_handshake(st->e); /* the ClientHello */
        if (rc < 0 || send_cipher(t) < 0) {
            fail(t, rc < 0 ? rc : FERRY_ECONNRESET);
            return;
        }
        return;
    }
    if (events & UV_WRITABLE) {
        if (st->wake) {
            st->wake = false;
            progress(t);
            if (t->flags & TF_CLOSING)
                return;
        }
        if (t->flags & TF_WRITING) {
            int rc = send_cipher(t);
            if (rc < 0) {
                t->flags &= (uint16_t) ~TF_WRITING;
                if (t->out)
                    t->out->off = t->out->len = 0;
                st->failed = true;
                st->fail_err = rc;
                tls_update_poll(t);
                t->pool->ev->on_written(t, rc);
                return;
            }
        }
    }
    if ((events & UV_READABLE) && !(t->flags & TF_ENDED)) {
        tls_read(t);
        if (t->flags & TF_CLOSING)
            return;
    }
    tls_update_poll(t);
    if (t->flushed_total != flushed) {
        if (!transport_out_pending(t))
            transport_out_release(t);
        t->pool->ev->on_written(t, 0);
    }
}

/* ---- the operations ---- */

static void tls_update(transport *t)
{
    tls_state *st = st_of(t);
    /* reading again with plaintext already decrypted: deliver it soon */
    if ((t->flags & TF_WANT_READ) && tls_engine_has_input(st->e) && !st->failed)
        st->wake = true;
    tls_update_poll(t);
}

static int64_t tls_flush(transport *t)
{
    tls_state *st = st_of(t);
    if (st->failed)
        return st->fail_err < 0 ? st->fail_err : FERRY_ECONNRESET;
    transport_out *o = t->out;
    size_t n = o->len - o->off;
    int rc = tls_engine_write(st->e, o->buf + o->off, n);
    if (rc < 0)
        return rc;
    transport_out_consume(t, n); /* the engine has the bytes now */
    push_mark(st, n);
    uint64_t before = t->flushed_total;
    if (!(t->flags & TF_WRITING)) {
        rc = send_cipher(t);
        if (rc < 0)
            return rc;
    }
    if ((t->flags & TF_IDLE) && !transport_out_pending(t))
        transport_out_release(t);
    return (int64_t) (t->flushed_total - before);
}

/* Pull what the kernel holds into the engine and what it decrypts into
 * t->rbuf, without waiting and without events. Returns plaintext bytes
 * added, or FERRY_EOF / an error when that is all there is. */
static ssize_t pull_now(transport *t)
{
    tls_state *st = st_of(t);
    if (t->fd < 0 || (t->flags & TF_CLOSING))
        return UV_EBADF;
    if (st->failed)
        return st->fail_err;
    ssize_t total = 0;
    for (int rounds = 0; rounds < 64; rounds++) {
        buf_block *b = transport_rbuf_get(t);
        if (!b)
            return total ? total : FERRY_ENOMEM;
        while (b->len < b->size) {
            ssize_t r = tls_engine_read(st->e, b->data + b->len, b->size - b->len);
            if (r > 0) {
                buf_commit(b, (size_t) r);
                t->pool->bytes_in += (uint64_t) r;
                total += r;
                continue;
            }
            if (r < 0 && !total) {
                transport_rbuf_release(t);
                return r == FERRY_ETLSTRUNCATED ? FERRY_EOF : r;
            }
            break;
        }
        if (b->len == b->size)
            break;
        size_t room;
        char *p = tls_engine_in_space(st->e, TLS_READ_CHUNK, &room);
        if (!p)
            break;
        ssize_t n = transport_sock_recv(t, p, room);
        int rc = 0;
        if (n > 0)
            rc = tls_engine_in_commit(st->e, (size_t) n);
        else if (n == FERRY_EOF)
            rc = tls_engine_feed_eof(st->e);
        else if (n < 0)
            rc = (int) n;
        if (rc < 0) {
            if (!total) {
                transport_rbuf_release(t);
                return rc;
            }
            break;
        }
        send_cipher(t);
        if (n == 0) { /* nothing more in the kernel: one last look at the engine */
            ssize_t r = tls_engine_read(st->e, b->data + b->len, b->size - b->len);
            if (r > 0) {
                buf_commit(b, (size_t) r);
                t->pool->bytes_in += (uint64_t) r;
                total += r;
            }
            break;
        }
    }
    transport_rbuf_release(t);
    return total;
}

static int tls_pending(transport *t)
{
    ssize_t n = pull_now(t);
    if (n > 0)
        return 1;
    return (int) n; /* 0 nothing (a ticket was consumed), EOF, an error */
}

static ssize_t tls_read_now(transport *t)
{
    return pull_now(t);
}

static int tls_shutdown(transport *t)
{
    tls_state *st = st_of(t);
    if (t->fd < 0 || (t->flags & TF_CLOSING))
        return UV_EBADF;
    if (!st->failed && tls_engine_handshake_done(st->e)) {
        if (t->out && t->out->len && tls_flush(t) < 0)
            return st->fail_err;
        tls_engine_shutdown(st->e); /* close_notify, then the FIN below */
    }
    if (st->failed && !tls_engine_out_pending(st->e)) /* nothing more to say in TLS */
        return shutdown(t->fd, SHUT_WR) == 0 ? 0 : -errno;
    /* the FIN once the engine's output (close_notify, or the alert of a
     * failure the socket did not take at once) is written */
    t->flags |= TF_SHUT_PENDING;
    return send_cipher(t);
}

static void tls_on_closed(uv_handle_t *h)
{
    transport *t = h->data;
    tls_state *st = st_of(t);
    timeout_disarm(&st->handshake_tmo);
    tls_engine_free(st->e);
    free(st);
    t->impl = NULL;
    t->pool->ev->on_closed(t);
}

static void tls_close(transport *t, bool reset)
{
    tls_state *st = st_of(t);
    timeout_disarm(&st->handshake_tmo);
    if (!reset && !st->failed && t->fd >= 0 && tls_engine_handshake_done(st->e)) {
        /* a close_notify if the socket takes it now; a close never waits */
        tls_engine_shutdown(st->e);
        size_t len;
        const char *p = tls_engine_out_peek(st->e, &len);
        if (len)
            transport_sock_send(t, p, len);
    }
    transport_sock_close(t, reset, tls_on_closed);
}

static int tls_info(transport *t, ferry_tls_info *info)
{
    tls_state *st = st_of(t);
    memset(info, 0, sizeof(*info));
    if (!st || !st->e)
        return FERRY_ENOTCONN;
    tls_engine_info(st->e, info);
    return 0;
}

static const transport_ops tls_ops = {
    .name = "tls",
    .update = tls_update,
    .flush = tls_flush,
    .pending = tls_pending,
    .read_now = tls_read_now,
    .shutdown = tls_shutdown,
    .close = tls_close,
    .idle = NULL,
    .peername = transport_sock_peername,
    .tls_info = tls_info,
};

ferry_tls_verify_reason transport_tls_verify_reason(transport *t)
{
    if (t->ops != &tls_ops || !t->impl)
        return FERRY_TLS_VERIFY_OK;
    return tls_engine_verify_reason(st_of(t)->e, NULL);
}

/* ---- starting ---- */

/* Allocates the state (owner: the transport, freed in tls_on_closed). */
static tls_state *state_new(void)
{
    return calloc(1, sizeof(tls_state));
}

/* The server's state, made before anything is opened (owner: the caller
 * until attached). */
static int server_state(ferry_tls_context *ctx, tls_state **out)
{
    tls_state *st = state_new();
    if (!st)
        return FERRY_ENOMEM;
    int rc = tls_engine_new_server(ctx, &st->e);
    if (rc < 0) {
        free(st);
        return rc;
    }
    *out = st;
    return 0;
}

static int attach_server(transport *t, tls_state *st, timeout_list *handshake_list,
                         const char *early, size_t n)
{
    int rc;
    st->server = true;
    st->t = t;
    timeout_entry_init(&st->handshake_tmo, on_handshake_timeout);
    t->impl = st;
    t->ops = &tls_ops;
    if (handshake_list)
        timeout_arm(handshake_list, &st->handshake_tmo);
    if (n) {
        rc = tls_engine_feed(st->e, early, n);
        if (rc < 0)
            st->early_err = rc;
        st->wake = true; /* the reply (or the failure) goes out from the loop */
    }
    return 0;
}

int transport_tls_open_server(transport *t, transport_pool *p, uv_loop_t *loop, uv_os_sock_t fd,
                              ferry_tls_context *ctx, timeout_list *handshake_list)
{
    tls_state *st;
    int rc = server_state(ctx, &st);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    rc = transport_tcp_open(t, p, loop, fd, false); /* closes fd on failure */
    if (rc < 0) {
        tls_engine_free(st->e);
        free(st);
        return rc;
    }
    return attach_server(t, st, handshake_list, NULL, 0);
}

int transport_tls_upgrade_server(transport *t, ferry_tls_context *ctx,
                                 timeout_list *handshake_list, const char *early, size_t n)
{
    tls_state *st;
    int rc = server_state(ctx, &st);
    if (rc < 0)
        return rc;
    rc = attach_server(t, st, handshake_list, early, n);
    tls_take_poll(t);
    return rc;
}

int transport_tls_connect(transport *t, transport_pool *p, uv_loop_t *loop,
                          const struct sockaddr *addr, const tls_client_config *cfg,
                          const char *host, tls_session_cache *cache, const char *cache_key)
{
    tls_state *st = state_new();
    if (!st)
        return FERRY_ENOMEM;
    int rc = tls_engine_new_client(cfg, host, cache, cache_key, &st->e);
    if (rc < 0) {
        free(st);
        return rc;
    }
    timeout_entry_init(&st->handshake_tmo, on_handshake_timeout);
    st->t = t;
    rc = transport_tcp_connect(t, p, loop, addr);
    if (rc < 0) {
        tls_engine_free(st->e);
        free(st);
        return rc;
    }
    t->impl = st;
    t->ops = &tls_ops;
    tls_take_poll(t); /* the TCP connect's poll calls us from now on */
    return 0;
}
