/* timeouts.c — timeout lists: sorted-by-construction lists, one timer each.
 *
 * Owns the intrusive lists and the one uv_timer_t per list; owns no entry
 * memory (entries live in their owners' structs). The design rests on one
 * invariant: within a list, an entry armed later has a deadline no earlier
 * than any entry armed before it (same duration, monotonic loop clock). From
 * it follow the O(1) append, and the fact that a running timer is never due
 * later than any armed entry, so arming never has to restart a running timer.
 * See timeouts.h for the contract.
 */
#include "core/timeouts.h"

#include <stdlib.h>

#include "core/closer.h"
#include "ferry.h"

static timeout_entry *entry_of(timeout_link *l)
{
    return container_of(l, timeout_entry, _link);
}

/* Take `entry` off its list without touching the list's timer. */
static void entry_unlink(timeout_entry *entry)
{
    list_remove(&entry->_link);
    entry->_list->_count--;
    entry->_list = NULL;
}

/* Only a list with armed entries keeps the loop alive. uv_ref/uv_unref are
 * flag flips, cheap enough for every transition to and from empty. */
static void list_update_ref(timeout_list *list)
{
    if (list_empty(&list->_armed) || list->_weak)
        uv_unref((uv_handle_t *) &list->_timer);
    else
        uv_ref((uv_handle_t *) &list->_timer);
}

static void on_timer(uv_timer_t *timer);

/* Start the idle timer for the head's deadline. libuv takes a delay relative
 * to uv_now(), so compute it against the same clock: the timer is then due at
 * exactly the head's deadline however stale the loop's cached time is. */
static void list_start_timer(timeout_list *list)
{
    uint64_t now = uv_now(list->_timer.loop);
    uint64_t deadline = entry_of(list->_armed.next)->_deadline;
    uv_timer_start(&list->_timer, on_timer, deadline > now ? deadline - now : 0, 0);
}

/* The sweep. `now` is read once, fresh: every entry armed before the sweep
 * with deadline <= now fires; an entry (re-)armed by a callback gets a
 * deadline > now, so it cannot fire again in this sweep. The loop re-reads
 * the head after each callback and holds no other pointer across one, so a
 * callback may disarm, re-arm or free any entry, or close the list (which
 * empties it and ends the loop). The list's memory stays valid throughout:
 * it may be released only from the close callback, which runs later. */
static void on_timer(uv_timer_t *timer)
{
    timeout_list *list = container_of(timer, timeout_list, _timer);
    uv_update_time(timer->loop);
    uint64_t now = uv_now(timer->loop);

    while (!list_empty(&list->_armed)) {
        timeout_entry *entry = entry_of(list->_armed.next);
        if (entry->_deadline > now) break;
        entry_unlink(entry);
        entry->_cb(entry);
    }
    if (list->_closing) return;
    /* Woken early (the head was re-armed or disarmed) or entries remain:
     * sleep until the new head. An empty list leaves the timer idle. */
    if (!list_empty(&list->_armed) && !uv_is_active((uv_handle_t *) timer)) list_start_timer(list);
    list_update_ref(list);
}

int timeout_list_init(uv_loop_t *loop, timeout_list *list, uint64_t duration_ms)
{
    if (duration_ms > TIMEOUT_MAX_MS) return FERRY_EINVAL;
    int rc = uv_timer_init(loop, &list->_timer);
    if (rc != 0) return rc;
    list_init(&list->_armed);
    list->_duration = duration_ms;
    list->_count = 0;
    list->_close_cb = NULL;
    list->_closing = false;
    list->_weak = false;
    list->data = NULL;
    list_update_ref(list); /* empty: does not keep the loop alive */
    return 0;
}

static void on_timer_closed(uv_handle_t *handle)
{
    timeout_list *list = container_of((uv_timer_t *) handle, timeout_list, _timer);
    if (list->_close_cb != NULL) list->_close_cb(list);
}

void timeout_list_close(timeout_list *list, timeout_close_cb close_cb)
{
    if (list->_closing) return;
    list->_closing = true;
    list->_close_cb = close_cb;
    while (!list_empty(&list->_armed))
        entry_unlink(entry_of(list->_armed.next));
    uv_close((uv_handle_t *) &list->_timer, on_timer_closed);
}

void timeout_list_set_weak(timeout_list *list)
{
    list->_weak = true;
    uv_unref((uv_handle_t *) &list->_timer);
}

uint64_t timeout_list_duration(const timeout_list *list)
{
    return list->_duration;
}

size_t timeout_list_count(const timeout_list *list)
{
    return list->_count;
}

timeout_entry *timeout_list_first(const timeout_list *list)
{
    if (list_empty(&list->_armed))
        return NULL;
    return container_of(list->_armed.next, timeout_entry, _link);
}

void timeout_entry_init(timeout_entry *entry, timeout_cb cb)
{
    entry->_link.prev = NULL;
    entry->_link.next = NULL;
    entry->_list = NULL;
    entry->_deadline = 0;
    entry->_cb = cb;
}

/* The hot path: unlink, read the clock, append. The timer is started only
 * when it is idle (the list was empty, or we are inside its sweep); a running
 * timer is already due no later than this entry, per the invariant above. The
 * clock is refreshed so that a deadline set late in a long loop iteration is
 * not early; with libuv's fast clock that is a vDSO read, no system call. */
void timeout_arm(timeout_list *list, timeout_entry *entry)
{
    timeout_list *old = entry->_list;
    if (old != NULL) {
        entry_unlink(entry);
        if (old != list) list_update_ref(old);
    }
    if (list->_duration == 0 || list->_closing) return;

    uv_loop_t *loop = list->_timer.loop;
    uv_update_time(loop);
    entry->_deadline = uv_now(loop) + list->_duration + TIMEOUT_SLACK_MS;
    bool was_empty = list_empty(&list->_armed);
    list_append(&list->_armed, &entry->_link);
    entry->_list = list;
    list->_count++;
    if (was_empty) {
        if (!uv_is_active((uv_handle_t *) &list->_timer)) list_start_timer(list);
        if (!list->_weak) uv_ref((uv_handle_t *) &list->_timer);
    }
}

void timeout_disarm(timeout_entry *entry)
{
    timeout_list *list = entry->_list;
    if (list == NULL) return;
    entry_unlink(entry);
    if (list_empty(&list->_armed)) uv_unref((uv_handle_t *) &list->_timer);
}

bool timeout_is_armed(const timeout_entry *entry)
{
    return entry->_list != NULL;
}

/* ---- timeout sets ---- */

struct timeout_set_node {
    timeout_set_node *next;
    bool weak;
    timeout_list list;
};

void timeout_set_init(timeout_set *set, uv_loop_t *loop)
{
    set->loop = loop;
    set->head = NULL;
    set->closed = false;
}

/* Allocates a node (owner: the set, freed when its list has closed). */
timeout_list *timeout_set_list(timeout_set *set, uint64_t duration_ms, bool weak)
{
    if (duration_ms == 0 || set->closed)
        return NULL;
    if (duration_ms > TIMEOUT_MAX_MS)
        duration_ms = TIMEOUT_MAX_MS;
    for (timeout_set_node *n = set->head; n; n = n->next)
        if (n->weak == weak && n->list._duration == duration_ms)
            return &n->list;
    timeout_set_node *n = calloc(1, sizeof(*n));
    if (!n || timeout_list_init(set->loop, &n->list, duration_ms) != 0) {
        free(n);
        return NULL;
    }
    if (weak)
        timeout_list_set_weak(&n->list);
    n->weak = weak;
    n->next = set->head;
    set->head = n;
    return &n->list;
}

void timeout_set_arm(timeout_set *set, timeout_entry *e, uint64_t duration_ms, bool weak)
{
    timeout_list *l = timeout_set_list(set, duration_ms, weak);
    if (l)
        timeout_arm(l, e);
    else
        timeout_disarm(e);
}

static void free_node(timeout_list *l)
{
    free(container_of(l, timeout_set_node, list));
}

void timeout_set_close(timeout_set *set, closer *c)
{
    set->closed = true;
    timeout_set_node *n = set->head;
    set->head = NULL;
    while (n) {
        timeout_set_node *next = n->next;
        closer_list(c, &n->list, free_node);
        n = next;
    }
}
