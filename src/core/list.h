/* list.h — an intrusive doubly-linked list with a sentinel, embedded in its
 * owners' structs (a server's connections, a timeout list's entries): O(1)
 * append and remove, no allocation. Recover the owner with container_of. */
#ifndef FERRY_LIST_H
#define FERRY_LIST_H

#include <stdbool.h>
#include <stddef.h>

#ifndef container_of
/* The struct of type `type` whose field `member` is at `ptr`. */
// clang-format off
#define container_of(ptr, type, member) ((type *) ((char *) (ptr) - offsetof(type, member)))
// clang-format on
#endif

typedef struct list_link {
    struct list_link *prev, *next;
} list_link;

static inline void list_init(list_link *sentinel)
{
    sentinel->prev = sentinel->next = sentinel;
}

static inline bool list_empty(const list_link *sentinel)
{
    return sentinel->next == sentinel;
}

static inline void list_append(list_link *sentinel, list_link *l)
{
    l->prev = sentinel->prev;
    l->next = sentinel;
    sentinel->prev->next = l;
    sentinel->prev = l;
}

/* Put l right after `at` (a sentinel: at the front). */
static inline void list_insert_after(list_link *at, list_link *l)
{
    l->prev = at;
    l->next = at->next;
    at->next->prev = l;
    at->next = l;
}

/* Put l right before `at` (a sentinel: at the back). */
static inline void list_insert_before(list_link *at, list_link *l)
{
    list_append(at, l);
}

/* Unlink l; it is left pointing at itself, so removing it again is harmless. */
static inline void list_remove(list_link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = l;
}

#endif /* FERRY_LIST_H */
