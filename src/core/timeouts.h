/* timeouts.h — timeout lists: one list per duration, one uv_timer per list.
 *
 * A connection re-arms its timeouts on almost every event (a read, a written
 * response, a new request), so arming must cost next to nothing. h2o's idea:
 * keep one list per timeout *duration*. Every entry of a list has the same
 * duration, so an entry armed later always expires later: arming appends at
 * the tail and the list stays sorted by deadline with no search. Arm, re-arm
 * and disarm are O(1) pointer moves, and a single uv_timer_t per list, armed
 * no later than the head's deadline, serves every entry.
 *
 * The timer is lazy. Re-arming the head only moves it to the tail, and the
 * timer stays armed for the old, earlier deadline: when it fires it finds the
 * head not yet expired and re-arms itself for the new head. So the hot path
 * (re-arm) never touches libuv's timer heap; at worst the list wakes up once
 * early per duration. The timer is started only when an entry is armed on a
 * list whose timer is idle.
 *
 * An empty list never keeps the loop alive: its timer is unref'd while the
 * list is empty and ref'd again when an entry is armed (no call needed from
 * the caller). So a server whose last connection went away lets uv_run()
 * return at once instead of waiting out a keep-alive timeout.
 *
 * Entries are embedded in the caller's struct; a callback gets the entry and
 * recovers its owner with container_of():
 *
 *     struct conn { ...; timeout_entry idle; };
 *     static void on_idle(timeout_entry *e)
 *     {
 *         struct conn *c = container_of(e, struct conn, idle);
 *         conn_close(c);
 *     }
 *     timeout_entry_init(&c->idle, on_idle);
 *     timeout_arm(&server->keep_alive, &c->idle);   // on every state change
 *     timeout_disarm(&c->idle);                      // before freeing c
 *
 * Callbacks may do anything to any entry or list: disarm, re-arm or free
 * other entries or themselves, and close the list. An entry is disarmed
 * before its callback runs, and it fires at most once per arming. An armed
 * entry must be disarmed before its memory is freed.
 *
 * Precision: deadlines are in the loop's clock (uv_now) and an entry never
 * fires before `duration` ms of real time have passed since it was armed:
 * arming refreshes the loop's cached time (uv_update_time), so a deadline set
 * late in a long callback, or long after uv_loop_init(), is not early, and
 * TIMEOUT_SLACK_MS covers the clock's rounding. It fires as soon as the loop
 * gets to its timers after that, normally within a millisecond or two.
 *
 * Memory: nothing here allocates. Entries and lists live in the caller's
 * memory; the list's uv_timer_t is embedded in the list.
 */
#ifndef FERRY_TIMEOUTS_H
#define FERRY_TIMEOUTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/list.h"

/* The loop clock counts whole milliseconds (truncated) and may come from a
 * clock that lags by up to 1 ms (libuv uses CLOCK_MONOTONIC_COARSE when its
 * resolution is 1 ms or finer), so "now" can be up to 2 ms behind real time.
 * Adding 2 ms to every deadline makes "never early" hold; a timeout 2 ms late
 * is harmless, one that fires early is a bug. */
#define TIMEOUT_SLACK_MS 2

/* Longest duration a list accepts (~49.7 days); longer ones are FERRY_EINVAL. */
#define TIMEOUT_MAX_MS UINT64_C(0xFFFFFFFF)

typedef struct timeout_entry timeout_entry;
typedef struct timeout_list timeout_list;

/* Runs when `entry` expires, after it was disarmed. */
typedef void (*timeout_cb)(timeout_entry *entry);

/* Called once the list's timer handle is closed; the list's memory may be
 * released from here on. */
typedef void (*timeout_close_cb)(timeout_list *list);

typedef list_link timeout_link;

/* Embed in the owner's struct. All fields are private to timeouts.c. */
struct timeout_entry {
    timeout_link _link;  /* position in its list; unused while disarmed */
    timeout_list *_list; /* the list it is armed on, NULL while disarmed */
    uint64_t _deadline;  /* uv_now() value at or after which it expires */
    timeout_cb _cb;
};

/* One duration's timeouts. Embed it or allocate it; it must not move while
 * initialised, and its memory may be released only after close_cb ran. */
struct timeout_list {
    void *data; /* the caller's, untouched by timeouts.c */
    /* private */
    uv_timer_t _timer;   /* armed no later than the head's deadline */
    timeout_link _armed; /* sentinel: armed entries in deadline order */
    uint64_t _duration;  /* ms; 0 = never expires */
    size_t _count;       /* armed entries */
    timeout_close_cb _close_cb;
    bool _closing;
    bool _weak;          /* never keeps the loop alive (timeout_list_set_weak) */
};

/* Ready `list` for entries that expire `duration_ms` after they are armed
 * (0 = never: arming on it leaves an entry disarmed). Initialises a timer
 * handle on `loop`, so every initialised list must be closed with
 * timeout_list_close() before the loop closes. Returns 0, FERRY_EINVAL if
 * duration_ms > TIMEOUT_MAX_MS, or a libuv error from uv_timer_init(). */
int timeout_list_init(uv_loop_t *loop, timeout_list *list, uint64_t duration_ms);

/* Disarm every entry (none of their callbacks runs) and close the timer.
 * `close_cb` (may be NULL) runs from the loop once the handle is closed; only
 * then may the list's memory be released. Safe from inside any timeout
 * callback, including one of this list's. A second call does nothing. */
void timeout_list_close(timeout_list *list, timeout_close_cb close_cb);

/* Let the list's armed entries not keep the loop alive, as for a client's
 * idle pooled sockets: uv_run() may return while they are still pooled. */
void timeout_list_set_weak(timeout_list *list);

/* The list's duration in ms, as given to timeout_list_init(). */
uint64_t timeout_list_duration(const timeout_list *list);

/* Entries armed on the list and not yet fired. */
size_t timeout_list_count(const timeout_list *list);

/* The armed entry that expires first (armed longest ago), or NULL. */
timeout_entry *timeout_list_first(const timeout_list *list);

/* Ready `entry` (disarmed) to run `cb` when it expires. */
void timeout_entry_init(timeout_entry *entry, timeout_cb cb);

/* Arm `entry` to expire `duration` ms from now, or re-arm it: an entry armed
 * anywhere (this list or another) is first removed, so it moves to the tail
 * with a fresh deadline. O(1); touches the uv_timer only if the list's timer
 * was idle. On a list of duration 0, or one that is closing, the entry ends
 * up disarmed: "this entry's timeout is now never". */
void timeout_arm(timeout_list *list, timeout_entry *entry);

/* Disarm `entry` if armed; its callback will not run. O(1). */
void timeout_disarm(timeout_entry *entry);

/* Whether `entry` is armed (on any list) and has not fired since. */
bool timeout_is_armed(const timeout_entry *entry);

/* ---- a set of lists, one per duration, made on first use ----
 * For timeouts whose durations are options per request (a client's connect,
 * headers, body, queue and total timeouts): a program uses a handful of
 * values, so a short list of lists serves them. */
typedef struct timeout_set_node timeout_set_node;
typedef struct timeout_set {
    uv_loop_t *loop;
    timeout_set_node *head; /* most recently made first */
    bool closed;
} timeout_set;

void timeout_set_init(timeout_set *set, uv_loop_t *loop);
/* The list for duration_ms (weak: it does not keep the loop alive), made on
 * first use; NULL for 0, after close, or without memory. */
timeout_list *timeout_set_list(timeout_set *set, uint64_t duration_ms, bool weak);
/* Arm e for duration_ms on the set's list for it; 0 (or no list) disarms. */
void timeout_set_arm(timeout_set *set, timeout_entry *e, uint64_t duration_ms, bool weak);
/* Close every list through c (core/closer.h); their memory goes as each closes. */
struct closer;
void timeout_set_close(timeout_set *set, struct closer *c);

#endif /* FERRY_TIMEOUTS_H */
