/* closer.h — closing a set of libuv handles and finishing once the last one
 * is closed: the server, the agent and the queue each own several handles
 * (timers, idles, signals, timeout lists) and have one callback to run when
 * all are gone.
 *
 *     closer_begin(&s->closer, on_all_closed);   // holds one count
 *     closer_handle(&s->closer, (uv_handle_t *) &s->timer);
 *     closer_list(&s->closer, &s->t_headers, NULL);
 *     closer_end(&s->closer);                     // releases it
 *
 * `done` runs once, from the last close callback (or from closer_end when
 * nothing was left to close). A handle's data pointer is the closer's while
 * it closes. Allocates nothing. */
#ifndef FERRY_CLOSER_H
#define FERRY_CLOSER_H

#include <uv.h>

#include "core/list.h"
#include "core/timeouts.h"

typedef struct closer {
    int pending;
    void (*done)(struct closer *c);
    void (*list_closed)(timeout_list *l); /* the owner's, run for each list */
} closer;

static inline void closer_begin(closer *c, void (*done)(closer *c))
{
    c->pending = 1;
    c->done = done;
    c->list_closed = NULL;
}

/* One more thing to wait for (an asynchronous close of the owner's own). */
static inline void closer_add(closer *c)
{
    c->pending++;
}

/* That thing is closed. */
static inline void closer_release(closer *c)
{
    if (--c->pending == 0)
        c->done(c);
}

static inline void closer_on_handle(uv_handle_t *h)
{
    closer_release(h->data);
}

/* Close h (unless it is closing already) and wait for it. */
static inline void closer_handle(closer *c, uv_handle_t *h)
{
    if (uv_is_closing(h))
        return;
    h->data = c;
    c->pending++;
    uv_close(h, closer_on_handle);
}

static inline void closer_on_list(timeout_list *l)
{
    closer *c = l->data;
    if (c->list_closed)
        c->list_closed(l); /* may free l */
    closer_release(c);
}

/* Close a timeout list and wait for it; each_closed (may be NULL) runs for
 * it first, e.g. to free it. */
static inline void closer_list(closer *c, timeout_list *l, void (*each_closed)(timeout_list *l))
{
    l->data = c;
    c->list_closed = each_closed;
    c->pending++;
    timeout_list_close(l, closer_on_list);
}

/* Everything to close was handed over: release the count closer_begin held. */
static inline void closer_end(closer *c)
{
    closer_release(c);
}

#endif /* FERRY_CLOSER_H */
