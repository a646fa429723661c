/* fake_transport.h — a transport with no socket behind it, for testing the
 * HTTP code alone: the test hands a server connection its bytes split
 * wherever it likes, takes what the server writes, lets writes go out a few
 * bytes at a time (the rest "later", from the loop) or fail on demand, and
 * sees how the connection ended (FIN, RST, our FIN while reading on).
 *
 * A fake connection belongs to a server that listens (its timeout lists and
 * handles exist then); everything runs on the test's own loop thread: the
 * fake's deferred work (slow writes, close callbacks) runs when the test
 * runs the loop. */
#ifndef FERRY_TESTS_FAKE_TRANSPORT_H
#define FERRY_TESTS_FAKE_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry.h"

typedef struct fake_conn fake_conn;

/* A server connection over a fake transport (owner: the test; free it with
 * fake_free once the connection has closed). */
fake_conn *fake_open(ferry_server *s);
void fake_free(fake_conn *f);

/* Hand n bytes to the connection now, as one read (or as many as its read
 * buffer takes; the rest waits until it reads again). */
void fake_deliver(fake_conn *f, const void *p, size_t n);
/* The peer's FIN. */
void fake_eof(fake_conn *f);
/* The peer's RST: the connection's next read fails with FERRY_ECONNRESET (now). */
void fake_peer_reset(fake_conn *f);
/* Bytes handed over but not yet read by the connection. */
size_t fake_unread(const fake_conn *f);

/* The kernel takes at most `bytes` per write (0: everything); the rest goes
 * out from the loop, `bytes` per turn. */
void fake_write_limit(fake_conn *f, size_t bytes);
/* Writes fail with err once `after` more bytes went out. */
void fake_fail_writes(fake_conn *f, int err, size_t after);

/* What the connection wrote so far (NUL-terminated copy kept by the fake). */
const char *fake_output(const fake_conn *f, size_t *len);
/* Forget it (the test consumed it). */
void fake_output_clear(fake_conn *f);

bool fake_closed(const fake_conn *f);  /* the connection closed the transport */
bool fake_reset(const fake_conn *f);   /* ...with a RST */
bool fake_shut(const fake_conn *f);    /* it sent its FIN and went on reading */
bool fake_reading(const fake_conn *f); /* it asks for bytes now */

#endif /* FERRY_TESTS_FAKE_TRANSPORT_H */
