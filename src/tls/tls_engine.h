/* tls_engine.h — one TLS connection, server or client side, as bytes in and
 * bytes out: no sockets, no libuv, no callbacks into the caller. The
 * transport (transport_tls) moves ciphertext between the socket and the
 * engine and plaintext between the engine and the HTTP code.
 *
 *   socket ──ciphertext──▶ in_space/in_commit (or feed) ─▶ read ──plaintext──▶ HTTP
 *   socket ◀──ciphertext── out_peek/out_consume (or out_take) ◀─ write ◀──plaintext── HTTP
 *
 * OpenSSL reads and writes through a BIO of ours over the engine's two
 * buffers, not through memory BIOs: the transport can receive straight into
 * the input buffer (no copy), send the output buffer with one syscall or
 * take it for an asynchronous write (no copy), and both buffers are freed
 * the moment they are empty, so an idle connection holds none (OpenSSL's own
 * buffers go too: SSL_MODE_RELEASE_BUFFERS). EOF is ours to report, so a FIN
 * without close_notify is told apart from a clean close.
 *
 * After every call that takes input (in_commit, feed, feed_eof, read,
 * handshake) and every write or shutdown, the transport sends what
 * tls_engine_out_pending() reports: handshake records, alerts, tickets, key
 * updates and close_notify appear there whether or not the HTTP code is
 * doing anything.
 *
 * Results: plaintext byte counts, 0 ("nothing now: need more ciphertext"),
 * FERRY_EOF (the peer's close_notify: a clean end) or a negative code:
 *   FERRY_ETLSTRUNCATED  the socket ended (feed_eof) without close_notify —
 *                        fine after a complete HTTP message, a truncation
 *                        (FERRY_EINCOMPLETE) inside a close-delimited body;
 *   FERRY_ETLSPLAINHTTP  (server) the first byte was not a TLS record but
 *                        printable ASCII: answer a plain-text 400 and close;
 *   FERRY_ETLSVERIFY     a certificate did not verify (tls_engine_verify_reason);
 *   FERRY_ETLSALERT      the peer sent a fatal alert (tls_engine_alert);
 *   FERRY_ETLSHANDSHAKE  the handshake failed here (no shared version, cipher
 *                        or ALPN protocol, a malformed message, ...);
 *   FERRY_ETLSPROTOCOL   a bad record after the handshake (bad MAC, ...);
 *   FERRY_ENOMEM.
 * Errors are sticky: once one is returned, every later call returns it. An
 * alert we send on error is in the output: send it, then close.
 *
 * Memory, owners: the engine (tls_engine_free) owns its SSL, its buffers and
 * the strings tls_engine_info hands out; a server engine holds a reference
 * on its ferry_tls_context, a client engine one on its config's SSL_CTX (via
 * the SSL). Bounds: the input buffer holds what was fed and not yet read
 * (the transport stops reading the socket while the reader is paused);
 * OpenSSL takes at most one record (16 KiB + 2 KiB) into its own buffer; a
 * handshake message may use up to ~128 KiB (OpenSSL's ClientHello limit) or
 * 32 KiB (a client's certificate chain, our limit) while the handshake lasts.
 *
 * One engine is used by one thread at a time. Nothing here takes a lock per
 * record: encryption uses the connection's own cipher contexts, and the
 * ticket keys' lock is taken once per ticket (two or three times per
 * handshake).
 */
#ifndef FERRY_TLS_ENGINE_H
#define FERRY_TLS_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "ferry.h"
#include "tls/tls_context.h"
#include "tls/tls_session_cache.h"

typedef struct tls_engine tls_engine;

/* A server connection using ctx (the engine takes a reference, so ctx may
 * be swapped and freed by its owner meanwhile). *out: owner the caller,
 * until tls_engine_free. 0 or FERRY_ENOMEM. */
int tls_engine_new_server(ferry_tls_context *ctx, tls_engine **out);

/* A client connection to host: a DNS name (sent as SNI and checked against
 * the certificate's DNS names) or an IPv4/IPv6 literal (checked against its
 * IP addresses, no SNI; brackets and a %zone are allowed and ignored). With
 * a cache, the engine resumes cache_key's session if it has one and stores
 * every new session under cache_key (the cache must outlive the engine).
 * cfg->insecure: the handshake succeeds whatever the certificate, and
 * tls_engine_verify_reason still says what was wrong. Call
 * tls_engine_handshake to produce the ClientHello. 0, FERRY_EINVAL (empty
 * host), FERRY_ENOMEM. */
int tls_engine_new_client(const tls_client_config *cfg, const char *host, tls_session_cache *cache,
                          const char *cache_key, tls_engine **out);

void tls_engine_free(tls_engine *e); /* NULL: nothing */

/* ---- ciphertext in ---- */

/* Room for at least `want` bytes of ciphertext at the end of the input
 * buffer (allocated or grown here; owner: the engine), for the transport to
 * receive into; *room is how much there is. NULL on ENOMEM. Valid until the
 * next call on e. */
char *tls_engine_in_space(tls_engine *e, size_t want, size_t *room);
/* n bytes were received into the in_space. Drives the handshake.
 * 0 or an error code. */
int tls_engine_in_commit(tls_engine *e, size_t n);
/* The same, copying p[0..n). */
int tls_engine_feed(tls_engine *e, const void *p, size_t n);
/* The socket reached EOF (the peer's FIN): once the buffered input is read,
 * read returns FERRY_EOF if a close_notify came first, else
 * FERRY_ETLSTRUNCATED. */
int tls_engine_feed_eof(tls_engine *e);

/* ---- handshake ---- */

/* Advance the handshake (a client's first call produces the ClientHello):
 * 1 done (now or before), 0 in progress (send the output, wait for input),
 * or an error code. in_commit, feed and read advance it too. */
int tls_engine_handshake(tls_engine *e);
bool tls_engine_handshake_done(const tls_engine *e);
bool tls_engine_is_server(const tls_engine *e);

/* ---- plaintext ---- */

/* Decrypt into buf[0..cap): bytes (> 0), 0 (nothing yet: every buffered
 * byte was used, e.g. a TLS 1.3 ticket or key update arriving at an idle
 * client, which the engine consumes silently — check the output), FERRY_EOF
 * (close_notify) or an error code. Call until it returns <= 0 after new
 * input, unless the reader is paused. */
ssize_t tls_engine_read(tls_engine *e, char *buf, size_t cap);

/* Encrypt p[0..n) into the output, all of it (one or more records). Before
 * the handshake is done the bytes are kept (copied) and encrypted when it
 * completes, so a client may write its request at once. 0, FERRY_EPIPE
 * after tls_engine_shutdown, or an error code. */
int tls_engine_write(tls_engine *e, const void *p, size_t n);

/* Whether decrypted or undecrypted input is waiting here (the "anything
 * pending" check before reusing or closing: the socket may be quiet while
 * the engine holds bytes). */
bool tls_engine_has_input(const tls_engine *e);

/* ---- ciphertext out ---- */

/* Bytes waiting to be sent. */
size_t tls_engine_out_pending(const tls_engine *e);
/* Them: valid until the next call on e; *len their count (0: NULL). */
const char *tls_engine_out_peek(const tls_engine *e, size_t *len);
/* n of them were sent (n <= pending). The buffer is freed when empty. */
void tls_engine_out_consume(tls_engine *e, size_t n);
/* All of them, as a buffer the caller now owns (free(*base) once written;
 * the data starts at *data, *len bytes) — for an asynchronous write while
 * the engine goes on producing output into a new buffer. false if none. */
bool tls_engine_out_take(tls_engine *e, char **base, const char **data, size_t *len);

/* ---- closing ---- */

/* Queue our close_notify (once). Before the handshake completed, or after
 * an error, there is nothing to send and this does nothing: close the
 * socket. Reading may go on (the peer's last bytes, its close_notify).
 * 0 or an error code. */
int tls_engine_shutdown(tls_engine *e);
/* Whether the peer's close_notify was read (read returned FERRY_EOF). */
bool tls_engine_peer_closed(const tls_engine *e);

/* ---- what was agreed, what went wrong ---- */

/* Version, cipher, SNI, ALPN, resumption, peer certificate (see
 * ferry_tls_info). Strings: static or the engine's (the peer subject is
 * formatted on first use, owner: the engine). Zeroes before the handshake. */
void tls_engine_info(tls_engine *e, ferry_tls_info *info);
/* 1 if the handshake resumed a session. */
bool tls_engine_resumed(const tls_engine *e);
/* The peer certificate's verification: the reason, and OpenSSL's
 * X509_V_ERR_* code in *x509_err (may be NULL). OK while nothing failed. */
ferry_tls_verify_reason tls_engine_verify_reason(const tls_engine *e, long *x509_err);
/* The fatal alert the peer sent (RFC 8446 §6 number, e.g. 42 bad_certificate)
 * and its name, or -1 / "" if none came. */
int tls_engine_alert(const tls_engine *e, const char **name);
/* OpenSSL's reason for the error the engine returned ("wrong version
 * number", "certificate verify failed", ...), static; "" if none. */
const char *tls_engine_error_detail(const tls_engine *e);

/* A client's session now (for a cache other than tls_session_cache), with
 * a new reference the caller frees; NULL before the handshake. */
SSL_SESSION *tls_engine_get1_session(const tls_engine *e);

/* Bytes the engine holds in its own buffers (input, output, plaintext
 * waiting for the handshake) — for tests and stats; OpenSSL's are not
 * counted. */
size_t tls_engine_buffered(const tls_engine *e);

/* The SSL, for tests and diagnostics only: the engine's state depends on
 * nobody else driving it. */
SSL *tls_engine_ssl(tls_engine *e);

/* For the client SSL_CTX (tls_client_config_init): OpenSSL's new-session
 * callback, which stores the session in the engine's cache. */
int tls_engine_new_session_cb(SSL *ssl, SSL_SESSION *sess);

#endif /* FERRY_TLS_ENGINE_H */
