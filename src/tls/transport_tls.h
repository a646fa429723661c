/* transport_tls.h — the TLS transport: core/transport.h's operations over a
 * socket that carries TLS (the engine, tls_engine.c, does the records; this
 * file moves ciphertext between it and the socket). The HTTP code above
 * sees plaintext in t->rbuf and queues plaintext output, exactly as over
 * plain TCP; nothing there knows TLS is in the way.
 *
 * What it adds to the plain transport:
 * - the handshake: a server's starts at accept, a client's after connect;
 *   on_ready reports it done (or failed). A server connection's handshake has
 *   its own deadline (the list the caller gives: tls_handshake_timeout_ms);
 * - a graceful end sends close_notify before the FIN (shutdown, and a close
 *   without reset when the socket takes it at once);
 * - a peer's close_notify is FERRY_EOF; a FIN without it FERRY_ETLSTRUNCATED
 *   (the HTTP layer decides whether that truncated anything);
 * - plain HTTP sent to a server: a short plain-text 400 is written and the
 *   read reports FERRY_ETLSPLAINHTTP (the owner then closes gracefully);
 * - a failure (a refused handshake, a bad record) sends the engine's alert
 *   and reports the error; a server's owner may still close gracefully
 *   (shutdown: the FIN once the alert is out, then a linger in discard
 *   mode), so the alert reaches the peer rather than a RST;
 * - a write that fails because the peer reset reports what the peer said
 *   before, if that was an alert: a server that refuses us and resets at
 *   once is seen as its alert (FERRY_ETLSALERT), not as FERRY_ECONNRESET;
 * - records that carry no application data (a TLS 1.3 session ticket at an
 *   idle client) are consumed without an event, and `pending` says nothing
 *   is waiting.
 * Write callbacks stay exact: plaintext counts as handed to the kernel once
 * the records that carry it were sent.
 *
 * Memory: the engine and this transport's state (owner: the transport,
 * freed once its handle closed).
 */
#ifndef FERRY_TRANSPORT_TLS_H
#define FERRY_TRANSPORT_TLS_H

#include "core/timeouts.h"
#include "core/transport.h"
#include "tls/tls_context.h"
#include "tls/tls_session_cache.h"

/* A TLS server on an accepted socket: ctx's certificates, a handshake that
 * must finish within handshake_list's duration (NULL: no deadline of its
 * own). The transport owns fd from here on; on failure nothing is open. */
int transport_tls_open_server(transport *t, transport_pool *p, uv_loop_t *loop, uv_os_sock_t fd,
                              ferry_tls_context *ctx, timeout_list *handshake_list);

/* Make an open plain transport (a server connection that read a PROXY
 * header first) a TLS server; early[0..n) are bytes already read that
 * belong to TLS. On failure it is still the plain one: close it. */
int transport_tls_upgrade_server(transport *t, ferry_tls_context *ctx,
                                 timeout_list *handshake_list, const char *early, size_t n);

/* A new TCP socket connecting to addr, then a TLS handshake with cfg for
 * host (SNI and certificate check; an IP literal checks the address),
 * resuming from / storing into cache under cache_key (may be NULL).
 * on_ready(t, status) once both are done or one failed. A failure to start
 * is returned here and nothing is open. */
int transport_tls_connect(transport *t, transport_pool *p, uv_loop_t *loop,
                          const struct sockaddr *addr, const tls_client_config *cfg,
                          const char *host, tls_session_cache *cache, const char *cache_key);

/* Why the peer's certificate did not verify (FERRY_TLS_VERIFY_OK: it did,
 * or this is not a TLS transport). */
ferry_tls_verify_reason transport_tls_verify_reason(transport *t);

#endif /* FERRY_TRANSPORT_TLS_H */
