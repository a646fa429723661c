/* ferry — HTTP/1.1 server and client library for C on libuv.
 *
 * This is the whole public API. Handles are opaque; option structs have an
 * *_init() that fills every default (always call it: it also records the
 * struct's size, which is how a newer library reads an older program's
 * options; docs/abi.md); functions return 0 or a negative FERRY_E* code that
 * ferry_strerror() names. See docs/ for the guide.
 *
 * Timeouts. Every *_timeout_ms option counts milliseconds up to 2^32-1
 * (4294967295, about 49.7 days), where the timeout lists stop. A server
 * timeout above it is FERRY_EINVAL (from ferry_server_new; for a group, from
 * ferry_group_start); an agent's or a request's above it counts as 2^32-1.
 * Longer is "never" in practice: use the option's 0 where it has one.
 *
 * Arguments. Every entry point checks its arguments: a NULL where a handle or
 * a required pointer is expected, or an array that is NULL with a count or
 * length above 0 (headers + header_count, body + len, buf + len), returns
 * FERRY_EINVAL, or the neutral value noted for a function that returns a
 * value (NULL, 0, {NULL,0}, stats all zero, "other"); a void function does
 * nothing. NULL with a count of 0 is an empty array, not an error. An out
 * pointer is written only when it is not NULL. *_free(NULL) returns 0 or does
 * nothing, as free(NULL). Using a handle after it is gone (after its
 * completion callback returned, after *_free) is not detectable and is
 * undefined behaviour — ASan builds report it. tests/test_api_args.c calls
 * every function declared here with NULLs and zero lengths.
 */
#ifndef FERRY_H
#define FERRY_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Everything declared from here to the matching pop is the exported ABI: the
 * library is built with -fvisibility=hidden, so nothing else leaves it, and
 * no declaration needs a marker that could be forgotten (docs/abi.md). */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/* tests/abi builds a second library with -DFERRY_ABI_TEST_GROW, whose options
 * structs end in these extra fields: a newer library, as an old program meets
 * it. Never defined otherwise. */
#ifdef FERRY_ABI_TEST_GROW
#define FERRY_ABI_TEST_GROW_FIELDS_ uint64_t abi_test_grown_[5];
#else
#define FERRY_ABI_TEST_GROW_FIELDS_
#endif

#define FERRY_VERSION_MAJOR  0
#define FERRY_VERSION_MINOR  2
#define FERRY_VERSION_PATCH  0
#define FERRY_VERSION_STRING "0.2.0"
/* 0xMMmmpp: compare with FERRY_VERSION_HEX >= 0x000100 in feature tests. */
#define FERRY_VERSION_HEX                                                                          \
    ((FERRY_VERSION_MAJOR << 16) | (FERRY_VERSION_MINOR << 8) | FERRY_VERSION_PATCH)

/* The version of the library actually linked, e.g. "0.1.0". */
const char *ferry_version_string(void);

/* ---- Errors --------------------------------------------------------------
 *
 * One table, libuv style: XX(name, value, http_status, message).
 * Values are negative. Where an errno fits, the code *is* libuv's code, so a
 * UV_E* value from the loop passes through unchanged. ferry's own codes start
 * at -30001. http_status is the status a server answers when it meets that
 * error in a request (0: not something a server answers).
 */
#define FERRY_ERRNO_MAP(XX)                                                                        \
    /* errno / libuv codes */                                                                      \
    XX(EOF, UV_EOF, 0, "end of stream")                                                            \
    XX(ETIMEDOUT, UV_ETIMEDOUT, 0, "timed out")                                                    \
    XX(ECONNREFUSED, UV_ECONNREFUSED, 0, "connection refused")                                     \
    XX(ECONNRESET, UV_ECONNRESET, 0, "connection reset by peer")                                   \
    XX(ECONNABORTED, UV_ECONNABORTED, 0, "connection aborted")                                     \
    XX(EPIPE, UV_EPIPE, 0, "broken pipe")                                                          \
    XX(ENOTCONN, UV_ENOTCONN, 0, "socket is not connected")                                        \
    XX(EADDRINUSE, UV_EADDRINUSE, 0, "address already in use")                                     \
    XX(EADDRNOTAVAIL, UV_EADDRNOTAVAIL, 0, "address not available")                                \
    XX(EHOSTUNREACH, UV_EHOSTUNREACH, 0, "host is unreachable")                                    \
    XX(ENETUNREACH, UV_ENETUNREACH, 0, "network is unreachable")                                   \
    XX(EMFILE, UV_EMFILE, 0, "too many open files")                                                \
    XX(ENFILE, UV_ENFILE, 0, "file table overflow")                                                \
    XX(ENOBUFS, UV_ENOBUFS, 0, "no buffer space available")                                        \
    XX(ENOMEM, UV_ENOMEM, 0, "not enough memory")                                                  \
    XX(EINVAL, UV_EINVAL, 0, "invalid argument")                                                   \
    XX(ENOENT, UV_ENOENT, 0, "no such file or directory")                                          \
    XX(EACCES, UV_EACCES, 0, "permission denied")                                                  \
    XX(EBUSY, UV_EBUSY, 0, "resource busy or locked")                                              \
    XX(EALREADY, UV_EALREADY, 0, "operation already in progress")                                  \
    XX(ECANCELED, UV_ECANCELED, 0, "operation canceled")                                           \
    XX(ENOTSUP, UV_ENOTSUP, 0, "operation not supported")                                          \
    XX(EAI_NONAME, UV_EAI_NONAME, 0, "unknown host name")                                          \
    XX(EAI_AGAIN, UV_EAI_AGAIN, 0, "temporary failure in name resolution")                         \
    XX(EAI_FAIL, UV_EAI_FAIL, 0, "permanent failure in name resolution")                           \
    /* request line (server side) */                                                               \
    XX(EBADREQLINE, -30001, 400, "malformed request line")                                         \
    XX(EBADMETHOD, -30002, 400, "invalid character in method")                                     \
    XX(EBADTARGET, -30003, 400, "invalid request-target")                                          \
    XX(EURITOOLONG, -30004, 414, "request-target too long")                                        \
    XX(EBADVERSION, -30005, 400, "malformed HTTP version")                                         \
    XX(EVERSION, -30006, 505, "HTTP version not supported")                                        \
    /* status line (client side); a gateway would answer 502 */                                    \
    XX(EBADSTATUS, -30007, 502, "malformed status line")                                           \
    /* header fields */                                                                            \
    XX(EBADFIELD, -30010, 400, "invalid character in header name")                                 \
    XX(EFIELDWS, -30011, 400, "whitespace between header name and colon")                          \
    XX(EOBSFOLD, -30012, 400, "obsolete line folding in header")                                   \
    XX(EBADVALUE, -30013, 400, "invalid character in header value")                                \
    XX(EBARECR, -30014, 400, "CR not followed by LF")                                              \
    XX(EBARELF, -30015, 400, "line ended by LF without CR")                                        \
    XX(EHEADTOOBIG, -30016, 431, "message head too large")                                         \
    XX(ETOOMANYFIELDS, -30017, 431, "too many header fields")                                      \
    XX(EBADHOST, -30018, 400, "missing, repeated or invalid Host")                                 \
    /* body framing */                                                                             \
    XX(EBADCL, -30020, 400, "invalid Content-Length")                                              \
    XX(ECLOVERFLOW, -30021, 400, "Content-Length too large to represent")                          \
    XX(ECLCONFLICT, -30022, 400, "conflicting Content-Length values")                              \
    XX(ECLTE, -30023, 400, "both Content-Length and Transfer-Encoding")                            \
    XX(EBADTE, -30024, 400, "Transfer-Encoding does not end in chunked")                           \
    XX(ETEUNSUP, -30025, 501, "unsupported transfer coding")                                       \
    XX(EBADCHUNK, -30026, 400, "invalid chunk size")                                               \
    XX(ECHUNKOVERFLOW, -30027, 400, "chunk size too large to represent")                           \
    XX(ECHUNKEXT, -30028, 400, "invalid or oversized chunk extension")                             \
    XX(ECHUNKEND, -30029, 400, "chunk data not followed by CRLF")                                  \
    XX(ETRAILERTOOBIG, -30030, 400, "chunked trailer section too large")                           \
    XX(EBODYTOOBIG, -30031, 413, "message body larger than the limit")                             \
    XX(EEXPECT, -30032, 417, "unsupported expectation")                                            \
    /* connection life, pools and queues */                                                        \
    XX(EHEADERSTIMEOUT, -30040, 408, "timed out waiting for the message head")                     \
    XX(EREQUESTTIMEOUT, -30041, 408, "timed out waiting for the whole request")                    \
    XX(EIDLETIMEOUT, -30042, 0, "socket inactive for too long")                                    \
    XX(EQUEUEFULL, -30043, 0, "queue is full")                                                     \
    /* -30044 (EPOOLFULL until 0.1.0, never returned) stays unused */                              \
    XX(EABORTED, -30045, 0, "aborted by the caller")                                               \
    XX(ECLOSING, -30046, 0, "server or agent is closing")                                        \
    /* client requests */                                                                          \
    XX(ECONNECTTIMEOUT, -30050, 0, "timed out connecting")                                         \
    XX(EBODYTIMEOUT, -30051, 0, "response body stalled for too long")                              \
    XX(EQUEUETIMEOUT, -30052, 0, "timed out waiting for a free socket")                            \
    XX(EDEADLINE, -30053, 0, "request deadline passed")                                            \
    XX(EINCOMPLETE, -30054, 0, "connection closed before the message was complete")             \
    XX(EUNANSWERED, -30055, 0, "connection closed after the whole request was sent, before any "   \
                               "response: not sent again, it may have been applied")             \
    /* TLS (docs/tls.md) */                                                                        \
    XX(ETLSVERIFY, -30060, 0, "TLS certificate verification failed")                               \
    XX(ETLSHANDSHAKE, -30061, 0, "TLS handshake failed")                                           \
    XX(ETLSALERT, -30062, 0, "TLS alert received from the peer")                                   \
    XX(ETLSPROTOCOL, -30063, 0, "TLS protocol error after the handshake")                          \
    XX(ETLSTRUNCATED, -30064, 0, "connection closed without TLS close_notify")                     \
    XX(ETLSPLAINHTTP, -30065, 400, "plain HTTP request sent to a TLS port")                        \
    XX(ETLSCERT, -30066, 0, "TLS certificate or key could not be loaded")                          \
    /* PROXY protocol (docs/server.md): the connection closes without a response */                \
    XX(EPROXY, -30070, 0, "missing or malformed PROXY protocol header")

/* FERRY_EOF, FERRY_ETIMEDOUT, ..., FERRY_EBADREQLINE, ... */
typedef enum {
#define FERRY_ERRNO_ENUM_(name, value, status, msg) FERRY_##name = (value),
    FERRY_ERRNO_MAP(FERRY_ERRNO_ENUM_)
#undef FERRY_ERRNO_ENUM_
} ferry_errno;

/* A short human message for any negative code: ferry's own, libuv's, or
 * "unknown error". A static string: never NULL, never allocated, never
 * overwritten by a later call; safe from any thread. */
const char *ferry_strerror(int err);

/* The code's name without the prefix, e.g. "ETIMEDOUT", "EBADCL", "EPERM".
 * Unknown codes give "UNKNOWN". A static string, as ferry_strerror's. */
const char *ferry_err_name(int err);

/* The HTTP status a server answers for this error in a request (400, 413,
 * 414, 431, 501, 505, ...), or 0 when it is not a request error. */
int ferry_err_http_status(int err);

/* What kind of failure a code is, for metrics and retry decisions: every
 * code in the table has one (a test holds the table to it). */
typedef enum ferry_err_kind {
    FERRY_ERRK_OTHER = 0, /* argument, memory, file-system and local errors */
    FERRY_ERRK_TIMEOUT,   /* a timeout of any kind fired */
    FERRY_ERRK_CONNECT,   /* no connection: refused, unreachable, name not resolved, fds */
    FERRY_ERRK_RESET,     /* the connection broke: reset, closed early, broken pipe */
    FERRY_ERRK_PROTOCOL,  /* a malformed or unacceptable message (either side) */
    FERRY_ERRK_POOL,      /* a limit or a closing pool/queue refused it */
    FERRY_ERRK_ABORTED,   /* the caller aborted or cancelled it */
    FERRY_ERRK_TLS,       /* TLS: verification, handshake, alerts, certificates */
} ferry_err_kind;

ferry_err_kind ferry_err_kind_of(int err);
/* "other", "timeout", "connect", "reset", "protocol", "pool", "aborted", "tls". */
const char *ferry_err_kind_name(ferry_err_kind kind);


/* ---- Strings -------------------------------------------------------------
 * A slice of bytes owned by someone else (usually a connection's read
 * buffer); not NUL-terminated. {NULL, 0} means "absent". */
typedef struct ferry_str {
    const char *p;
    size_t len;
} ferry_str;

/* ---- TLS -------------------------------------------------------------------
 *
 * TLS 1.2 and 1.3 through OpenSSL 3; see docs/tls.md. A server takes its
 * certificates from a ferry_tls_context; ticket keys (ferry_tls_ticket_keys)
 * let contexts, loops and a re-executed process resume each other's sessions.
 *
 * Thread safety. A context is immutable once made and reference counted with
 * atomics: any thread may use it or drop a reference, and several loops may
 * share one. OpenSSL 3.0 slows down when many threads share one SSL_CTX, so a
 * program with a loop per thread should give each loop its own context (made
 * from the same options and the same ticket keys, so resumption still works
 * across loops). Ticket keys are shared by design: every call on them is
 * thread-safe, and a context takes their lock once per ticket it issues or
 * checks (two or three times per handshake), never per record.
 */
typedef struct ferry_tls_context ferry_tls_context;
typedef struct ferry_tls_ticket_keys ferry_tls_ticket_keys;

/* Protocol versions, by their wire value; 0 in options means the default. */
#define FERRY_TLS_1_2 0x0303
#define FERRY_TLS_1_3 0x0304

typedef enum ferry_tls_client_cert {
    FERRY_TLS_CLIENT_CERT_NONE = 0, /* do not ask for one (default) */
    FERRY_TLS_CLIENT_CERT_REQUEST,  /* ask: a client without one is let in; one whose
                                       certificate does not verify is refused */
    FERRY_TLS_CLIENT_CERT_REQUIRE,  /* refuse clients without a verified certificate */
} ferry_tls_client_cert;

/* A certificate chain and its private key, from files or from memory. Also
 * the element of ferry_tls_options.sni_certs, so it has no struct_size and
 * never grows within a major version (docs/abi.md). */
typedef struct ferry_tls_cert {
    const char *cert_file; /* PEM: the leaf first, then its intermediates */
    const char *key_file;  /* PEM private key, unencrypted; NULL: read from cert_file */
    const char *cert_pem;  /* the chain in memory (NUL-terminated), when cert_file is NULL */
    const char *key_pem;   /* its key in memory; NULL: read from cert_pem */
    const char *name;      /* SNI certificates: the name to answer, exact ("www.example.com")
                              or a wildcard for one label ("*.example.com"); NULL: every
                              DNS name in the certificate. Ignored for the default one */
} ferry_tls_cert;

/* An options struct: fill it with ferry_tls_options_init(), then set fields. */
typedef struct ferry_tls_options {
    size_t struct_size;                 /* set by ferry_tls_options_init (docs/abi.md) */
    ferry_tls_cert cert;                /* the default certificate; required */
    const ferry_tls_cert *sni_certs;    /* more certificates, chosen by the name the client
                                           sends (SNI): exact names first, then wildcards;
                                           no SNI or no match: cert. Copied */
    size_t sni_cert_count;
    int min_version;                    /* FERRY_TLS_1_2 (default) or FERRY_TLS_1_3 */
    int max_version;                    /* FERRY_TLS_1_3 (default) or FERRY_TLS_1_2 */
    const char *alpn;                   /* protocols, comma-separated, in order of preference;
                                           "http/1.1". A client that offers ALPN but none of
                                           these is refused (RFC 7301); one that offers none
                                           is served */
    const char *ciphers;                /* TLS 1.2 suites, OpenSSL syntax; NULL: ECDHE with
                                           AES-GCM or ChaCha20-Poly1305 only */
    const char *ciphersuites;           /* TLS 1.3 suites; NULL: OpenSSL's */
    int session_tickets;                /* 1 (default): resume sessions with tickets; 0: never */
    uint64_t session_timeout_s;         /* a session resumes for this long; 300 (nginx's and
                                           HAProxy's default) */
    ferry_tls_ticket_keys *ticket_keys; /* keys shared with other contexts (the context holds
                                           a reference); NULL (default): keys of its own */
    uint64_t ticket_key_rotation_s;     /* its own keys: a new key every this many seconds,
                                           the old one still accepted for session_timeout_s;
                                           3600; 0 = never */
    ferry_tls_client_cert client_cert;  /* FERRY_TLS_CLIENT_CERT_NONE */
    const char *client_ca_file;         /* PEM CAs that sign client certificates; one of the
                                           two is required with REQUEST or REQUIRE */
    const char *client_ca_pem;          /* the same in memory */
} ferry_tls_options;

#define ferry_tls_options_init(o) ferry_tls_options_init_sized((o), sizeof(ferry_tls_options))
void ferry_tls_options_init_sized(ferry_tls_options *o, size_t size);

/* Load the certificates and keys and make a context. *out (owner: the
 * caller, who holds one reference) is used by servers given it
 * (ferry_server_options.tls, ferry_server_set_tls), which take references of
 * their own, as does every connection that started a handshake with it.
 * Returns 0; FERRY_ETLSCERT for a certificate, key or CA that does not load,
 * or a key that does not match its certificate; FERRY_ENOENT / FERRY_EACCES
 * for a file; FERRY_EINVAL for bad options (no certificate, a bad ALPN list,
 * cipher list, version or SNI name); FERRY_ENOMEM. ferry_tls_error_detail()
 * then says what failed, e.g. "server.key: key values mismatch". */
int ferry_tls_context_new(const ferry_tls_options *o, ferry_tls_context **out);
/* Take another reference (returns ctx; NULL for NULL). */
ferry_tls_context *ferry_tls_context_ref(ferry_tls_context *ctx);
/* Drop a reference; the context goes when the last holder drops its own
 * (connections still using it keep it alive). NULL does nothing. */
void ferry_tls_context_free(ferry_tls_context *ctx);

/* What the last failed ferry_tls_* call on this thread failed on (a file,
 * an OpenSSL reason), e.g. for a log line; "" if nothing failed. Thread-local,
 * overwritten by the next failure; never NULL. */
const char *ferry_tls_error_detail(void);

/* Session ticket keys. The newest key encrypts new tickets; a key that was
 * replaced still decrypts for lifetime_s, so a ticket keeps working for its
 * whole life (give lifetime_s >= the contexts' session_timeout_s). A ticket
 * under an older key resumes and is replaced by one under the newest. At most
 * FERRY_TLS_TICKET_KEYS_MAX keys are kept (older ones are dropped first).
 * Rotation happens when a ticket is issued after rotation_s (0 = only on
 * ferry_tls_ticket_keys_rotate), from wall-clock time, so it survives an
 * export and import. Two processes that rotate on their own diverge: share
 * keys across processes by export/import from one owner. */
#define FERRY_TLS_TICKET_KEYS_MAX 16
/* Make keys with one fresh random key. *out: owner the caller (one reference). */
int ferry_tls_ticket_keys_new(uint64_t rotation_s, uint64_t lifetime_s,
                              ferry_tls_ticket_keys **out);
ferry_tls_ticket_keys *ferry_tls_ticket_keys_ref(ferry_tls_ticket_keys *k); /* k; NULL: NULL */
void ferry_tls_ticket_keys_free(ferry_tls_ticket_keys *k); /* drop a reference; NULL: nothing */
/* A new random key encrypts from now on (the old ones still decrypt). */
int ferry_tls_ticket_keys_rotate(ferry_tls_ticket_keys *k);
/* Every key, as bytes for ferry_tls_ticket_keys_import in another process
 * (e.g. the one a graceful restart executes). The bytes are secret: whoever
 * has them can decrypt tickets, and so recorded TLS 1.2 sessions. With buf
 * NULL or cap too small, only *len is set (and FERRY_ENOBUFS returned when
 * buf was given). len is required. At most FERRY_TLS_TICKET_KEYS_EXPORT_MAX
 * bytes. */
#define FERRY_TLS_TICKET_KEYS_EXPORT_MAX (8 + 88 * FERRY_TLS_TICKET_KEYS_MAX)
int ferry_tls_ticket_keys_export(ferry_tls_ticket_keys *k, void *buf, size_t cap, size_t *len);
/* Replace k's keys with exported ones (its rotation_s and lifetime_s stay);
 * contexts using k see them at their next ticket. FERRY_EINVAL for bytes
 * that are not an export (NULL or 0 bytes included). */
int ferry_tls_ticket_keys_import(ferry_tls_ticket_keys *k, const void *buf, size_t len);

/* Why a certificate did not verify. */
typedef enum ferry_tls_verify_reason {
    FERRY_TLS_VERIFY_OK = 0,
    FERRY_TLS_VERIFY_UNKNOWN_ISSUER,    /* no trusted CA signed it, or an intermediate the
                                           peer should have sent is missing */
    FERRY_TLS_VERIFY_HOSTNAME_MISMATCH, /* valid, but not for this host name or address */
    FERRY_TLS_VERIFY_EXPIRED,           /* past its notAfter (or an issuer's) */
    FERRY_TLS_VERIFY_NOT_YET_VALID,     /* before its notBefore */
    FERRY_TLS_VERIFY_SELF_SIGNED,       /* a self-signed certificate nobody trusts */
    FERRY_TLS_VERIFY_NO_CERTIFICATE,    /* the peer sent none (a client, to a server that
                                           requires one) */
    FERRY_TLS_VERIFY_OTHER,             /* anything else: a bad signature, the wrong purpose,
                                           a chain too long, ... */
} ferry_tls_verify_reason;

/* "ok", "unknown-issuer", "hostname-mismatch", "expired", "not-yet-valid",
 * "self-signed", "no-certificate", "other". Never NULL. */
const char *ferry_tls_verify_reason_name(ferry_tls_verify_reason r);

/* What a TLS connection agreed on. Strings are static or owned by the
 * connection: valid while it lives (for a request: until its response ends). */
typedef struct ferry_tls_info {
    const char *version;                   /* "TLSv1.3", "TLSv1.2" */
    const char *cipher;                    /* e.g. "TLS_AES_128_GCM_SHA256" */
    ferry_str sni;                         /* the name the client asked for; {NULL,0}: none */
    ferry_str alpn;                        /* the protocol agreed ("http/1.1"); {NULL,0}: none */
    int resumed;                           /* 1: a resumed session (no full handshake) */
    int peer_verified;                     /* 1: the peer's certificate verified */
    const char *peer_subject;              /* its subject, RFC 2253 ("CN=a,O=b"), when it
                                              verified; NULL otherwise */
    ferry_tls_verify_reason verify_reason; /* why the peer's certificate did not verify */
} ferry_tls_info;

/* ---- Server ----------------------------------------------------------------
 *
 * Handles: ferry_server (long-lived; new → listen → close(cb) → free), and per
 * request a ferry_req / ferry_res pair, valid from the request callback until
 * the response is ended (ferry_res_end/ferry_res_send; ferry_res_offload's
 * after_cb counts as inside). Every request must be answered, even if the
 * client has gone (ferry_res_aborted() tells): ending it releases its memory.
 * The request's strings stay valid until then, whatever happened to the
 * connection. After the response is ended, req and res are gone: any call
 * with them is a use-after-free (ASan builds report it).
 * One loop, one thread: call everything on the loop's thread.
 */
typedef struct ferry_server ferry_server;
typedef struct ferry_req ferry_req;
typedef struct ferry_res ferry_res;

typedef void (*ferry_request_cb)(ferry_req *req, ferry_res *res, void *data);
typedef void (*ferry_server_close_cb)(ferry_server *s, void *data);

/* Every limit and timeout, with its default. Times in ms; 0 disables where noted. */
typedef struct ferry_server_options {
    size_t struct_size;               /* sizeof, set by the _init macro; never by hand */
    uint64_t keep_alive_timeout_ms;   /* idle keep-alive connection closes after; 5000; 0 = never */
    uint64_t headers_timeout_ms;      /* accept/first byte to end of head → 408; 60000; 0 = off */
    uint64_t request_timeout_ms;      /* first byte to end of body → 408; 300000; 0 = off */
    uint64_t idle_timeout_ms;         /* socket inactivity while busy → close; 0 = off (default) */
    uint64_t linger_timeout_ms;       /* after our FIN, read and discard this long at most,
                                         waiting for the peer's; 2000; 0 = close at once */
    uint32_t max_header_bytes;        /* request line + fields → 431; 16384 */
    uint32_t max_headers;             /* header fields → 431; 100 */
    uint32_t max_target_bytes;        /* request-target → 414; 8192 */
    uint64_t max_body_bytes;          /* ferry_req_read_body limit → 413; 1 MiB; 0 = none */
    uint64_t max_drain_bytes;         /* unread body discarded to keep the connection; 256 KiB */
    uint32_t max_connections;         /* open connections; beyond, accept pauses; 0 = fd limit */
    uint32_t max_requests_per_connection; /* last one gets Connection: close; 0 = no limit */
    uint32_t read_buffer_bytes;       /* per busy connection, pooled; 16384 */
    uint32_t backlog;                 /* listen(2) backlog; 511 */
    int reject_expect_continue;       /* 1: answer Expect: 100-continue with 417; 0 (default):
                                         send 100 when the handler starts reading the body */
    int reuse_port;                   /* SO_REUSEPORT: other sockets (processes) may bind the
                                         same port and the kernel spreads connections; 0. A
                                         group uses SO_REUSEPORT for its loops either way */
    /* since 0.2 */
    ferry_tls_context *tls;           /* HTTPS: the certificates (the server takes a reference;
                                         ferry_server_set_tls swaps them); NULL: plain HTTP */
    uint64_t tls_handshake_timeout_ms; /* a TLS handshake must end within; 10000. The
                                         headers timeout also covers handshake plus head */
    uint64_t drain_delay_ms;          /* a close first drains this long: everything is still
                                         served (with Connection: close), ferry_server_draining()
                                         says 1 (answer health checks 503), then the graceful
                                         close; 0 */
    int proxy_protocol;               /* 1: every connection begins with a PROXY protocol
                                         header (v1 or v2, read before TLS within the headers
                                         timeout); its source is the request's peer. A missing
                                         or malformed one closes the connection, no response; 0 */
    const char *proxy_trusted;        /* with proxy_protocol: who may connect, e.g.
                                         "10.0.0.0/8,::1,unix"; others are closed at once.
                                         NULL: anyone (copied; FERRY_EINVAL if malformed) */
    FERRY_ABI_TEST_GROW_FIELDS_
} ferry_server_options;

/* Fill *o with the defaults. A macro, so that sizeof is the caller's: the
 * library fills and later reads only that many bytes (docs/abi.md). */
#define ferry_server_options_init(o) \
    ferry_server_options_init_sized((o), sizeof(ferry_server_options))
void ferry_server_options_init_sized(ferry_server_options *o, size_t size);

/* Create a server on `loop` (o NULL: defaults). The server owns nothing of
 * the caller's; free it with ferry_server_free() after its close callback ran
 * (or right away if it never listened). */
int ferry_server_new(uv_loop_t *loop, const ferry_server_options *o, ferry_request_cb on_request,
                     void *data, ferry_server **out);
/* host: an IP literal ("127.0.0.1", "::1", "0.0.0.0", "::"), a host name, or
 * NULL (= "127.0.0.1"). A name is resolved here (getaddrinfo, blocking) and
 * every address it has is listened on (up to 16; one this host cannot have,
 * such as IPv6 when it is off, is skipped). port 0: one free port, the same
 * for every address. FERRY_EAI_NONAME / FERRY_EAI_AGAIN when the name does
 * not resolve, FERRY_EINVAL for a malformed IPv6 literal or a port outside
 * 0-65535, FERRY_EALREADY if the server listens already, or bind's error
 * (FERRY_EADDRINUSE...). */
int ferry_server_listen(ferry_server *s, const char *host, int port);
int ferry_server_listen_unix(ferry_server *s, const char *path);
int ferry_server_port(const ferry_server *s); /* the bound TCP port, or a negative code */
void *ferry_server_data(const ferry_server *s);
/* Replace the data the request and close callbacks get (a group's loop
 * start hook gives each loop its own). */
void ferry_server_set_data(ferry_server *s, void *data);
/* The loop the server runs on (a group's start hook makes its agent there). */
uv_loop_t *ferry_server_loop(const ferry_server *s);
/* Adopt a socket that already listens (systemd socket activation, a
 * restart's inherited one): TCP or unix, any address. The server owns fd
 * from here on, whatever the result; it may listen on several. */
int ferry_server_listen_fd(ferry_server *s, int fd);
/* The i-th listening socket, to hand on to a process that will accept from
 * it too (still the server's: dup it, or clear FD_CLOEXEC in the child).
 * FERRY_EINVAL past the last. Once asked for, a close leaves what waits in
 * the backlog to that other process instead of accepting it. */
int ferry_server_listener_fd(ferry_server *s, uint32_t i);
/* The process the sockets went to is gone (a restart that failed): they are
 * s's alone again, and a close takes in what waits in their backlog instead
 * of leaving it. 0; FERRY_ECLOSING once a close began. */
int ferry_server_listeners_reclaim(ferry_server *s);

/* Run fn(s, status, data) on s's loop thread — from any thread: the way in
 * for work done elsewhere. status 0; FERRY_ECANCELED if the server closed
 * before fn could run (fn runs once either way, then data is the caller's
 * again). Returns 0, FERRY_ENOTCONN before the server listens, FERRY_ECLOSING
 * once it has closed (fn will not run), FERRY_ENOMEM. s must not have been freed. */
typedef void (*ferry_post_cb)(ferry_server *s, int status, void *data);
int ferry_server_post(ferry_server *s, ferry_post_cb fn, void *data);

/* Shutdown. All idempotent and safe from any callback.
 * close_idle: close every idle connection now (idle = no request in progress
 *   and the last response fully written; a connection that has not sent a
 *   complete head counts as idle).
 * close: stop accepting, close idle connections at once, mark in-flight
 *   responses Connection: close and close each connection after its response;
 *   after grace_ms (0 = wait forever) destroy what remains; cb fires once, when
 *   the last connection is gone (timeouts keep running meanwhile).
 * destroy: stop accepting and reset every connection now (cb of a pending
 *   close still fires). Responses handlers still hold are aborted (their abort
 *   callbacks run) and no longer keep the close waiting; offloaded work not
 *   yet started is cancelled; work already running is waited for.
 * draining: 1 from the moment a close began (during drain_delay_ms too):
 *   a health check handler answers 503 then, so a balancer stops sending.
 * on_signals: SIGTERM/SIGINT → close(grace_ms); a second signal → destroy.
 *   Its watchers do not keep the loop alive and close with the server, so
 *   uv_run() returns once the close is done: free the server after it.
 * A write to a socket the peer reset is an error code, never a SIGPIPE: ferry
 * sends with MSG_NOSIGNAL and leaves the process's SIGPIPE disposition alone
 * (server and client alike). */
/* Hot reload: new handshakes use ctx (the server takes a reference and
 * drops the old one); open connections keep theirs. NULL: back to plain
 * HTTP for new connections. */
int ferry_server_set_tls(ferry_server *s, ferry_tls_context *ctx);
void ferry_server_close_idle(ferry_server *s);
void ferry_server_close(ferry_server *s, uint64_t grace_ms, ferry_server_close_cb cb); /* cb may be NULL */
/* ferry_server_close with this drain delay instead of drain_delay_ms (a
 * restart drains whatever SIGTERM does). */
void ferry_server_drain(ferry_server *s, uint64_t drain_ms, uint64_t grace_ms,
                        ferry_server_close_cb cb);
void ferry_server_destroy(ferry_server *s);
int ferry_server_draining(const ferry_server *s);
int ferry_server_on_signals(ferry_server *s, uint64_t grace_ms);
/* Release the server. Only after its close callback ran, or if it never
 * listened; returns FERRY_EBUSY otherwise; NULL: 0, as free(NULL). A
 * response a handler still holds outlives it: end it as usual (the bytes go
 * nowhere) and that frees it; ferry_req_server() returns NULL for it meanwhile. */
int ferry_server_free(ferry_server *s);

typedef struct ferry_server_stats {
    uint64_t connections_active; /* open now, idle ones included */
    uint64_t connections_idle;   /* open now, idle in keep-alive (served, nothing pending) */
    uint64_t connections_accepted;
    uint64_t requests;           /* request heads handed to the handler */
    uint64_t bytes_in;           /* request bytes read (not those thrown away after our FIN) */
    uint64_t bytes_out;
    uint64_t timeouts_headers;
    uint64_t timeouts_request;
    uint64_t timeouts_keep_alive;
    uint64_t timeouts_idle;
    uint64_t errors_400, errors_408, errors_413, errors_414, errors_417, errors_431, errors_501,
        errors_505;              /* error responses ferry wrote itself */
    uint64_t accept_pauses_emfile;          /* accept paused: out of file descriptors */
    uint64_t accept_pauses_max_connections; /* accept paused: max_connections reached */
    int closing;                 /* 1 once ferry_server_close/destroy was called */
    /* since 0.2 */
    uint64_t tls_handshakes;     /* TLS handshakes completed */
    uint64_t tls_resumed;        /* of which resumed a session */
    uint64_t tls_handshake_timeouts; /* connections closed for a slow handshake */
    uint64_t connections_shed_emfile; /* idle keep-alive connections closed to accept
                                         others when out of file descriptors */
    int draining;                /* 1 once a close began, drain delay included */
    uint64_t proxy_errors;       /* connections closed for a missing or malformed PROXY header */
    uint64_t proxy_rejected;     /* connections from outside proxy_trusted, closed at once */
} ferry_server_stats;

/* Fill *st (all zero for a NULL server). A macro, so that the size is the
 * caller's: stats structs grow at the end (docs/abi.md). */
#define ferry_server_stats_get(s, \
    st) ferry_server_stats_get_sized((s), (st), sizeof(ferry_server_stats))
void ferry_server_stats_get_sized(const ferry_server *s, ferry_server_stats *st, size_t size);
/* 0.1.0's entry point, for programs built against it: 0.1.0's fields only. */
void(ferry_server_stats_get)(const ferry_server *s, ferry_server_stats *st);

/* ---- Request ---- */
ferry_str ferry_req_method(const ferry_req *req);
ferry_str ferry_req_target(const ferry_req *req); /* as sent: path?query */
ferry_str ferry_req_path(const ferry_req *req);   /* target up to '?' */
ferry_str ferry_req_query(const ferry_req *req);  /* after '?', without it; {NULL,0} if none */
int ferry_req_version_minor(const ferry_req *req); /* 0 or 1; FERRY_EINVAL for NULL */
/* First field with this name, case-insensitive; {NULL,0} if absent. */
ferry_str ferry_req_header(const ferry_req *req, const char *name);
size_t ferry_req_header_count(const ferry_req *req);
/* The i-th field in arrival order (name and value both required);
 * FERRY_EINVAL past the end. */
int ferry_req_header_at(const ferry_req *req, size_t i, ferry_str *name, ferry_str *value);
/* The peer's address (struct sockaddr_in/in6); FERRY_ENOTSUP on unix sockets. */
int ferry_req_peer(const ferry_req *req, struct sockaddr_storage *addr);
/* What the request's TLS connection agreed on (docs/tls.md): 0, or
 * FERRY_ENOTSUP for a plain connection, FERRY_ENOTCONN once it is gone.
 * Strings are valid until the response ends. */
int ferry_req_tls(const ferry_req *req, ferry_tls_info *info);
ferry_res *ferry_req_res(ferry_req *req);
ferry_server *ferry_req_server(const ferry_req *req);

/* Body callbacks run from the loop; called from inside the request callback
 * they run after it returns, called later they may run before the call
 * returns. After a body error the handler must still end the response (if
 * ferry already answered, e.g. 413 or 408, ferry_res_aborted() is 1 and
 * whatever the handler sends is dropped).
 *
 * Buffered body: cb once with the whole body (status 0), or a negative code:
 * FERRY_EBODYTOOBIG beyond max_bytes (0 = the server's max_body_bytes; ferry
 * then answers 413 itself unless the handler already started a response; a
 * declared Content-Length over the limit is refused at once: the call returns
 * FERRY_EBODYTOOBIG and cb is not called),
 * FERRY_ECONNRESET/FERRY_EOF if the client went away, a parse error for bad
 * chunked framing, FERRY_EREQUESTTIMEOUT or FERRY_EIDLETIMEOUT when ferry
 * answered 408 in the handler's place, FERRY_ECLOSING when the server reset
 * the connection while shutting down (ferry_server_destroy, the end of
 * ferry_server_close's grace, a second signal). The bytes are valid until cb
 * returns. */
typedef void (*ferry_body_cb)(ferry_req *req, int status, const char *body, size_t len,
                              void *data);
int ferry_req_read_body(ferry_req *req, uint64_t max_bytes, ferry_body_cb cb, void *data);

/* Streamed body: cb with each piece as it arrives (status 0, bytes valid until
 * cb returns), then once with FERRY_EOF (len 0) at the end, or once with a
 * negative code (those of the buffered body, FERRY_ECLOSING included).
 * pause/resume apply backpressure to the client. */
typedef void (*ferry_data_cb)(ferry_req *req, int status, const char *buf, size_t len,
                              void *data);
int ferry_req_on_data(ferry_req *req, ferry_data_cb cb, void *data);
void ferry_req_pause(ferry_req *req);
void ferry_req_resume(ferry_req *req);

/* ---- Response ----
 * Status and headers may change until the first write. Date, and
 * Content-Length or Transfer-Encoding: chunked, are added; so are Connection
 * and Keep-Alive. A body written with ferry_res_write and no Content-Length is
 * sent chunked (HTTP/1.0 clients: delimited by close). */
/* 100..599, else FERRY_EINVAL (the client accepts nothing else); FERRY_EALREADY
 * once the head is out. */
int ferry_res_set_status(ferry_res *res, int status);
int ferry_res_set_header(ferry_res *res, const char *name, const char *value); /* replaces */
int ferry_res_add_header(ferry_res *res, const char *name, const char *value); /* appends */

/* Queue bytes for the client. ferry copies them; cb (may be NULL) fires when
 * they are handed to the kernel (status 0) or the connection failed — wait for
 * it before writing more to respect backpressure. cb never runs before this
 * call returns (it may run after ferry_res_end: then only note the status).
 * A negative return means nothing was queued and cb will not run (buf NULL
 * with len > 0: FERRY_EINVAL). */
typedef void (*ferry_write_cb)(ferry_res *res, int status, void *data);
int ferry_res_write(ferry_res *res, const void *buf, size_t len, ferry_write_cb cb, void *data);
/* Finish the response; after this, req and res are gone. It always
 * finishes, even when it returns an error (then the connection is closed).
 * If fewer bytes than a Content-Length the handler set were written, the
 * connection closes after them: the client sees a truncated body, never a
 * desynchronised stream. */
int ferry_res_end(ferry_res *res);
/* The common case: status, Content-Type (NULL: none), a body copied at once,
 * end. Like ferry_res_end it always finishes the response: with an invalid
 * argument (status out of range, body NULL with len > 0, ...) it returns
 * FERRY_EINVAL and closes the connection. A Content-Length the handler set
 * is kept for HEAD; 1xx, 204 and 304 get no body headers. */
int ferry_res_send(ferry_res *res, int status, const char *content_type, const void *body,
                   size_t len);
/* 1 once the client is gone or the connection was destroyed: writes are
 * dropped, but the response must still be ended. 1 for NULL. */
int ferry_res_aborted(const ferry_res *res);
ferry_req *ferry_res_req(ferry_res *res);
/* cb(res, err, data) runs once if the response is lost before the handler
 * ends it: the connection was reset or destroyed, or ferry answered in the
 * handler's place (408, 413, ...). The handler must still end the response
 * (from cb or later). A client that only half-closes is not an abort: it
 * still gets its response. Registering again replaces cb; NULL removes it. */
typedef void (*ferry_abort_cb)(ferry_res *res, int err, void *data);
void ferry_res_on_abort(ferry_res *res, ferry_abort_cb cb, void *data);

/* Run work_cb(data) on the libuv thread pool, then after_cb(res, status, data)
 * back on the loop. The loop keeps serving others meanwhile. after_cb must
 * end the response. status FERRY_ECANCELED: the response was lost (client
 * gone, server destroyed) before the work started, and it never ran. Work
 * already running cannot be stopped from outside: register ferry_res_on_abort
 * and have work_cb check a flag (atomic) it sets — a close waits for running
 * work. Returns 0, FERRY_EALREADY (ended, or work already queued),
 * FERRY_ECONNRESET (the response is already lost: end it instead),
 * FERRY_ECLOSING (the server was destroyed), or libuv's error. */
typedef void (*ferry_work_cb)(void *data);
typedef void (*ferry_after_work_cb)(ferry_res *res, int status, void *data);
int ferry_res_offload(ferry_res *res, ferry_work_cb work_cb, ferry_after_work_cb after_cb,
                      void *data);

/* ---- Server groups: every core ---------------------------------------------
 *
 * A group runs N loops on N threads, each with its own ferry_server (same
 * options, same handler) serving the same sockets; a connection stays on the
 * loop that accepted it, so a handler never sees another thread. Lifecycle:
 * new → listen (and/or listen_fd) → start (or run) → ... close → wait → free.
 * close, close_idle, destroy, post, stats and draining may be called from
 * any thread; the rest from the thread that made the group. See
 * docs/server.md ("Many loops").
 */
typedef struct ferry_group ferry_group;
typedef void (*ferry_group_close_cb)(ferry_group *g, void *data);

typedef struct ferry_group_options {
    size_t struct_size;     /* sizeof, set by the _init macro; never by hand */
    uint32_t loops;         /* loops (threads); 0 = one per CPU the process may use */
    int shared_listener;    /* 0 (default): each loop its own SO_REUSEPORT socket per
                               address, the kernel spreads connections; 1: one socket,
                               every loop accepts from it */
    /* On each loop's thread, before it accepts: make what the loop owns (an
     * agent, a queue, a database handle) and give it to the loop's handlers
     * with ferry_server_set_data(s, ...). data: the group's. Nonzero: the
     * group does not start (ferry_group_start returns it). */
    int (*on_loop_start)(ferry_server *s, uint32_t index, void *data);
    /* On the loop's thread once its server has closed: close what
     * on_loop_start made; the thread ends when the loop has nothing left. */
    void (*on_loop_stop)(ferry_server *s, uint32_t index, void *data);
} ferry_group_options;

#define ferry_group_options_init(o) \
    ferry_group_options_init_sized((o), sizeof(ferry_group_options))
void ferry_group_options_init_sized(ferry_group_options *o, size_t size);

/* so: the servers' options (NULL: defaults); data: what the request
 * callback gets unless a loop's start hook replaces it. */
int ferry_group_new(const ferry_group_options *go, const ferry_server_options *so,
                    ferry_request_cb on_request, void *data, ferry_group **out);
/* As ferry_server_listen, before start; port 0: one free port for all loops. */
int ferry_group_listen(ferry_group *g, const char *host, int port);
/* Adopt a listening socket (owned by the group from here on, whatever the
 * result), before start: systemd's LISTEN_FDS, a restart's inherited ones. */
int ferry_group_listen_fd(ferry_group *g, int fd);
int ferry_group_port(const ferry_group *g); /* the TCP port, or FERRY_ENOTCONN */
uint32_t ferry_group_loops(const ferry_group *g);
/* The group's listening sockets, to hand on to a process that takes over
 * (up to max in fds; returns how many there are). They stay the group's:
 * clear FD_CLOEXEC on dups in the child. From then on a close leaves what
 * waits in the backlog to that process. */
int ferry_group_listener_fds(ferry_group *g, int *fds, size_t max);
/* As ferry_server_listeners_reclaim, for every loop: the process the sockets
 * were handed to is gone. Any thread; FERRY_ECLOSING once a close began. */
int ferry_group_listeners_reclaim(ferry_group *g);
/* SIGTERM/SIGINT → ferry_group_close(grace_ms); a second → destroy. Before start. */
int ferry_group_on_signals(ferry_group *g, uint64_t grace_ms);
/* Start the threads; returns once every loop accepts (0) or the first
 * failure (everything started is stopped again). */
int ferry_group_start(ferry_group *g);
/* Block until every loop has ended (after a close). Not from a loop's thread
 * (FERRY_EBUSY). Returns 0, or FERRY_EBUSY if a loop's stop hook left
 * handles open (ferry closed them). */
int ferry_group_wait(ferry_group *g);
/* start, then wait: for main(). */
int ferry_group_run(ferry_group *g);
/* As the server calls, on every loop. cb runs once, on the thread of the
 * last loop to end, after its stop hook. */
void ferry_group_close(ferry_group *g, uint64_t grace_ms, ferry_group_close_cb cb, void *data);
/* As ferry_server_drain, on every loop. */
void ferry_group_drain(ferry_group *g, uint64_t drain_ms, uint64_t grace_ms,
                       ferry_group_close_cb cb, void *data);
void ferry_group_close_idle(ferry_group *g);
void ferry_group_destroy(ferry_group *g);
int ferry_group_draining(const ferry_group *g); /* 1 once a close began */
/* Run fn on loop `index`'s thread (as ferry_server_post). FERRY_EINVAL past
 * the last loop, FERRY_ENOTCONN before start, FERRY_ECLOSING once it ended. */
int ferry_group_post(ferry_group *g, uint32_t index, ferry_post_cb fn, void *data);
/* Summed over the loops, each loop's part at most 100 ms old (the calling
 * loop's own part current). */
#define ferry_group_stats_get(g, \
    st) ferry_group_stats_get_sized((g), (st), sizeof(ferry_server_stats))
void ferry_group_stats_get_sized(ferry_group *g, ferry_server_stats *st, size_t size);
/* After wait (or if never started); FERRY_EBUSY otherwise. */
int ferry_group_free(ferry_group *g);

/* ---- Client ----------------------------------------------------------------
 *
 * Handles: ferry_agent (long-lived: new → requests ... → close(cb) → free),
 * one pool of kept-alive sockets per origin (scheme, host, port); and per
 * request a ferry_client_req, valid from ferry_request()/ferry_fetch() until
 * its completion callback returns. One loop, one thread. See docs/client.md.
 *
 * What the agent guarantees:
 * - a response body nobody reads is drained and the socket goes back to the
 *   pool at once (the pool cannot stall);
 * - sockets beyond max_sockets_per_origin / max_total_sockets are not opened:
 *   requests wait in a FIFO queue (max_queue long; beyond, FERRY_EQUEUEFULL),
 *   so 2000 requests at once never meet EMFILE;
 * - every phase has a timeout (connect, response head, body inactivity,
 *   queue wait, and a total deadline over queueing and retries);
 * - an idle socket is retired before the server's advertised
 *   Keep-Alive: timeout, checked for a pending FIN/RST before reuse, and a
 *   request that fails on a reused socket before any response byte arrived is
 *   retried on a fresh socket (the keep-alive race is never seen);
 * - idempotent requests are retried on connect errors, resets and
 *   502/503/504/429 (honouring Retry-After) with exponential backoff and full
 *   jitter, within the total deadline.
 */
typedef struct ferry_agent ferry_agent;
typedef struct ferry_client_req ferry_client_req;

/* A header field as two slices (request options: the caller's; responses:
 * the agent's, valid as documented where they are handed out). */
typedef struct ferry_header {
    ferry_str name;
    ferry_str value;
} ferry_header;

/* Request option value meaning "use the agent's default" (timeouts, retries). */
#define FERRY_AGENT_DEFAULT UINT64_MAX

typedef struct ferry_agent_options {
    size_t struct_size;               /* sizeof, set by the _init macro; never by hand */
    uint32_t max_sockets_per_origin;  /* open sockets to one origin; 256 */
    uint32_t max_total_sockets;       /* all origins; 0 (default) = RLIMIT_NOFILE's soft limit
                                         minus a reserve of 64, at least 16 */
    uint32_t max_idle_per_origin;     /* kept-alive idle sockets per origin; beyond, a freed
                                         socket closes; 256; 0 = no keep-alive */
    uint32_t max_queue;               /* requests waiting for a socket, all origins; beyond,
                                         FERRY_EQUEUEFULL; 10000; 0 = no limit */
    uint32_t max_requests_per_socket; /* a socket closes after this many; 0 = no limit */
    uint32_t pipelining;              /* requests in flight per socket; 1 (no pipelining) */
    uint64_t idle_timeout_ms;         /* an idle socket closes after; 4000; and always
                                         keep_alive_margin_ms before the server's
                                         Keep-Alive: timeout=N (not pooled if that is <= 0) */
    uint64_t keep_alive_margin_ms;    /* 1000 */
    uint32_t max_header_bytes;        /* response head → FERRY_EHEADTOOBIG; 65536 */
    uint32_t max_headers;             /* response header fields; 200 */
    int cookies;                      /* 1: keep an RFC 6265 cookie jar for this agent; 0 */
    /* defaults for requests (ferry_request_options fields left at FERRY_AGENT_DEFAULT) */
    uint64_t connect_timeout_ms;      /* DNS + TCP connect, per attempt; 10000 */
    uint64_t headers_timeout_ms;      /* request written → response head complete; 60000 */
    uint64_t body_timeout_ms;         /* inactivity while the body arrives (paused
                                         or not); 60000 */
    uint64_t queue_timeout_ms;        /* waiting for a socket; 0 = only the total deadline */
    uint64_t total_timeout_ms;        /* the whole request, retries included; 0 = none */
    uint32_t retries;                 /* for idempotent requests; 2 */
    uint64_t retry_base_ms;           /* backoff: full jitter over base * 2^attempt; 100 */
    uint64_t retry_max_delay_ms;      /* cap on one backoff; a longer Retry-After means
                                         no retry (the caller gets that response); 10000 */
    uint64_t dns_ttl_ms;              /* how long a resolved name is reused; 30000 */
    /* since 0.2: https:// (docs/tls.md). Certificates are verified against the system's
       trust store (Debian's ca-certificates) unless a CA is given here */
    const char *tls_ca_file;          /* PEM CAs to trust instead; NULL */
    const char *tls_ca_dir;           /* a c_rehash'ed directory of CAs instead; NULL */
    const char *tls_ca_pem;           /* CAs in memory (NUL-terminated) instead; NULL */
    const char *tls_cert_file;        /* a client certificate chain (PEM) for servers that ask */
    const char *tls_key_file;         /* its key; NULL: in tls_cert_file */
    const char *tls_cert_pem;         /* the same in memory */
    const char *tls_key_pem;
    int tls_min_version;              /* FERRY_TLS_1_2 (default) or FERRY_TLS_1_3 */
    int tls_insecure;                 /* DANGEROUS, 0: 1 accepts any certificate for any name,
                                         so anyone on the path can read and change the
                                         traffic. For tests against self-signed servers only */
    uint32_t tls_session_cache_size;  /* origins whose sessions are kept for resumption; 100 */
    FERRY_ABI_TEST_GROW_FIELDS_
} ferry_agent_options;

/* Fill *o with the defaults. A macro, so that sizeof is the caller's: the
 * library fills and later reads only that many bytes (docs/abi.md). */
#define ferry_agent_options_init(o) ferry_agent_options_init_sized((o), sizeof(ferry_agent_options))
void ferry_agent_options_init_sized(ferry_agent_options *o, size_t size);

/* Create an agent on `loop` (o NULL: defaults). Free it with
 * ferry_agent_free() after its close callback ran. Given a CA (tls_ca_*), a
 * client certificate (tls_cert_*), tls_insecure or a tls_min_version above
 * TLS 1.2, the TLS configuration is made here (the strings need not outlive
 * the call), so a bad file fails here: FERRY_ENOENT (or another errno code,
 * e.g. FERRY_EACCES) for a file that cannot be opened, FERRY_EINVAL for one
 * that is not a regular file of at most 16 MiB, FERRY_ETLSCERT for one that
 * holds no usable PEM certificate or unencrypted key, or a key that does not
 * match its certificate; ferry_tls_error_detail() names the file and why.
 * Otherwise it is made at the first https:// request, from the system's
 * trust store (a missing store is no error: verification then fails,
 * unknown-issuer). Also FERRY_EINVAL (no loop or out; pipelining,
 * max_sockets_per_origin or max_headers 0; max_header_bytes below 64) and
 * FERRY_ENOMEM. */
int ferry_agent_new(uv_loop_t *loop, const ferry_agent_options *o, ferry_agent **out);

typedef void (*ferry_agent_close_cb)(ferry_agent *a, void *data);
/* Stop taking requests (FERRY_ECLOSING), close idle sockets at once, and
 * either let active and queued requests finish (abort_active 0) or end them
 * all with FERRY_ECLOSING (1). cb (may be NULL) runs from the loop once the
 * last socket is closed — never inside this call. Idempotent; a second call
 * may turn a graceful close into an abort. */
void ferry_agent_close(ferry_agent *a, int abort_active, ferry_agent_close_cb cb, void *data);
/* Release the agent once its close completed; FERRY_EBUSY before; NULL: 0. */
int ferry_agent_free(ferry_agent *a);

typedef struct ferry_agent_stats {
    uint64_t sockets_active;     /* open sockets carrying a request (or connecting) */
    uint64_t sockets_idle;       /* open sockets in the pool */
    uint64_t queued;             /* requests waiting for a socket */
    uint64_t origins;            /* origins with a socket or a queued request */
    uint64_t connections_opened; /* TCP connections established, ever */
    uint64_t sockets_reused;     /* requests sent on a socket that served one before */
    uint64_t requests;           /* requests accepted by ferry_request/ferry_fetch */
    uint64_t completed;          /* requests done with a response (any status) */
    uint64_t failed;             /* requests done with an error */
    uint64_t retries;            /* attempts beyond the first */
    uint64_t redirects;          /* redirects followed */
    uint64_t stale_retries;      /* of which after a reused socket failed before a byte */
    uint64_t timeouts_connect, timeouts_headers, timeouts_body, timeouts_queue, timeouts_total;
    uint64_t idle_closed;        /* idle sockets retired (timeout, server hint, limit) */
    uint64_t stale_detected;     /* idle sockets found closed by the server before reuse */
    uint64_t dns_lookups;        /* getaddrinfo calls */
    uint64_t dns_cache_hits;
    uint64_t queue_rejected;     /* FERRY_EQUEUEFULL */
    uint64_t bytes_out, bytes_in;
    int closing;
    /* since 0.2 */
    uint64_t tls_handshakes;     /* TLS handshakes completed */
    uint64_t tls_resumed;        /* of which resumed a cached session */
    uint64_t emfile_budget_cuts; /* connects that found the process out of file descriptors:
                                    the socket budget was lowered for a second, the
                                    request kept waiting */
} ferry_agent_stats;

/* Fill *st (a macro for the caller's size, as ferry_server_stats_get; all
 * zero for a NULL agent). */
#define ferry_agent_stats_get(a, \
    st) ferry_agent_stats_get_sized((a), (st), sizeof(ferry_agent_stats))
void ferry_agent_stats_get_sized(const ferry_agent *a, ferry_agent_stats *st, size_t size);
void(ferry_agent_stats_get)(const ferry_agent *a, ferry_agent_stats *st); /* 0.1.0's */

typedef struct ferry_agent_origin_stats {
    uint32_t active, idle, queued;  /* sockets busy or connecting, sockets pooled, requests
                                       waiting — now */
    uint64_t connections_opened;    /* since the origin was first used; an origin with no
                                       socket and no request is forgotten, counters too */
    uint64_t sockets_reused;        /* requests sent on a socket that had served one */
    uint64_t requests;              /* attempts sent to this origin (retries count) */
} ferry_agent_origin_stats;

/* Stats of the origin of `url` (any URL of that origin); all zero for an
 * origin the agent does not know. FERRY_EINVAL for a bad URL. */
#define ferry_agent_origin_stats_get(a, url, st)                                                  \
    ferry_agent_origin_stats_get_sized((a), (url), (st), sizeof(ferry_agent_origin_stats))
int ferry_agent_origin_stats_get_sized(const ferry_agent *a, const char *url,
                                       ferry_agent_origin_stats *st, size_t size);
int(ferry_agent_origin_stats_get)(const ferry_agent *a, const char *url,
                                  ferry_agent_origin_stats *st); /* 0.1.0's */

/* ---- One request ---- */
typedef struct ferry_request_options {
    size_t struct_size;            /* sizeof, set by the _init macro; never by hand */
    const char *method;            /* "GET" (default), "POST", ... any token */
    const char *url;               /* absolute http:// or https:// URL: IPv4, [IPv6] or a
                                      name */
    const ferry_header *headers;   /* extra fields, copied (NULL with header_count 0:
                                      none). Host replaces the URL's (virtual hosts);
                                      Connection may be close (the socket ends with
                                      this response) or keep-alive; Content-Length
                                      and Transfer-Encoding are ferry's */
    size_t header_count;
    const void *body;              /* request body, copied; NULL with body_len 0: none */
    size_t body_len;
    int stream_body;               /* 1: the body comes through on_body_ready and
                                      ferry_client_req_write / _end (body is ignored) */
    int64_t stream_body_length;    /* with stream_body: its length, or -1 (default):
                                      unknown, sent chunked */
    const char *content_type;      /* Content-Type, or NULL */
    uint64_t connect_timeout_ms;   /* each FERRY_AGENT_DEFAULT (default) → the agent's */
    uint64_t headers_timeout_ms;
    uint64_t body_timeout_ms;
    uint64_t queue_timeout_ms;
    uint64_t total_timeout_ms;
    uint64_t retries;              /* FERRY_AGENT_DEFAULT: the agent's for idempotent
                                      requests, 0 otherwise */
    int idempotent;                /* 1: retry even if the method is not GET, HEAD,
                                      OPTIONS, PUT, DELETE or TRACE */
    int expect_continue;           /* 1: send Expect: 100-continue and the body only
                                      after 100 (or 1 s without an answer) */
    uint32_t max_redirects;        /* follow 301/302/303/307/308 this many times; 0
                                      (default): a 3xx is the response. 303 (and 301/302
                                      after POST) become GET without a body; 307/308 keep
                                      method and body; Authorization and Cookie headers
                                      given here are dropped when the origin changes; a
                                      streamed body is never redirected */
    FERRY_ABI_TEST_GROW_FIELDS_
} ferry_request_options;

/* Fill *o with the defaults. A macro, so that sizeof is the caller's: the
 * library fills and later reads only that many bytes (docs/abi.md). */
#define ferry_request_options_init(o) \
    ferry_request_options_init_sized((o), sizeof(ferry_request_options))
void ferry_request_options_init_sized(ferry_request_options *o, size_t size);

/* Whether ferry_request would take url as a URL: 0, or the code it would
 * return for it (FERRY_EINVAL: malformed, a bad byte, host, port, path or
 * query; FERRY_ENOTSUP: another scheme, or user:password@). why (may
 * be NULL) gets a static one-line reason ("port out of range (1-65535)",
 * "non-ASCII byte in the path (percent-encode it)", ...), NULL when 0.
 * http:// and https:// pass (an https request uses TLS with the agent's
 * tls_* options; docs/tls.md); names are not resolved. Safe from any
 * thread; allocates nothing. */
int ferry_url_check(const char *url, const char **why);

/* A response head (and, for ferry_fetch, its body). */
typedef struct ferry_response {
    int status;                  /* 100..599 */
    int version_minor;           /* 0 or 1 */
    ferry_str reason;
    const ferry_header *headers; /* header_count fields, in arrival order */
    size_t header_count;
    ferry_str body;              /* ferry_fetch only; {NULL,0} for streamed responses */
    int reused_socket;           /* 1: answered on a socket that served a request before */
    uint32_t attempts;           /* 1 + retries it took */
    uint32_t redirects;          /* redirects followed to get here */
    ferry_str url;               /* the URL that answered (the last redirect's target) */
} ferry_response;

/* First field with this name, case-insensitive; {NULL,0} if absent. */
ferry_str ferry_response_header(const ferry_response *r, const char *name);

/* Streaming callbacks. Each gets the request and the data passed to
 * ferry_request. on_response (may be NULL) runs once, with the final response head (1xx
 * skipped; r valid until it returns); retries happen before it, never after.
 * on_data (may be NULL: the body is drained and dropped) gets body pieces,
 * valid until it returns. on_done runs exactly once, last, with 0 after the
 * whole body or a negative code (the request is gone when it returns).
 * on_body_ready (stream_body only) runs when the request may write its body
 * with ferry_client_req_write / ferry_client_req_end_body — once per attempt
 * that reaches the socket; a streamed body is not retried after it started. */
typedef struct ferry_request_callbacks {
    void (*on_response)(ferry_client_req *req, const ferry_response *r, void *data);
    void (*on_data)(ferry_client_req *req, const char *buf, size_t len, void *data);
    void (*on_done)(ferry_client_req *req, int status, void *data);
    void (*on_body_ready)(ferry_client_req *req, void *data);
} ferry_request_callbacks;

/* Start a request. Returns 0 (on_done will run, never inside this call) or
 * a negative code (FERRY_EINVAL bad URL/method/header or headers/body NULL
 * with a count, FERRY_ENOTSUP another scheme, or user:password@ in the URL,
 * FERRY_ETLSCERT a CA or client certificate of the agent's that does not
 * load (the first https:// request), FERRY_EQUEUEFULL, FERRY_ECLOSING,
 * FERRY_ENOMEM; no callback runs).
 * out (may be NULL) receives the handle, valid until on_done returns (NULL
 * on failure). */
int ferry_request(ferry_agent *a, const ferry_request_options *o, const ferry_request_callbacks *cb,
                  void *data, ferry_client_req **out);

/* Buffered: cb(req, status, r, data) once. status 0: r holds the whole
 * response, body included (at most max_body_bytes, else FERRY_EBODYTOOBIG;
 * 0 = 64 MiB). status < 0: r is the head if one arrived, else NULL. r and
 * its bytes are valid until cb returns. Returns as ferry_request. */
typedef void (*ferry_fetch_cb)(ferry_client_req *req, int status, const ferry_response *r,
                               void *data);
int ferry_fetch(ferry_agent *a, const ferry_request_options *o, uint64_t max_body_bytes,
                ferry_fetch_cb cb, void *data, ferry_client_req **out);

/* End the request now: on_done (or the fetch cb) runs with FERRY_EABORTED
 * from the loop, never inside this call; its socket is closed unless the
 * request had not reached one. Safe from any callback; a second call, or one
 * after completion was decided, does nothing. */
void ferry_request_abort(ferry_client_req *req);

/* Inside the completion callback of a request that failed with
 * FERRY_ETLSVERIFY: why the server's certificate did not verify (unknown
 * issuer, host name mismatch, expired, ...; ferry_tls_verify_reason_name). */
ferry_tls_verify_reason ferry_client_req_tls_verify_reason(const ferry_client_req *req);
/* Attempts made so far: 1 + retries (redirect hops do not count). Inside
 * on_done or the fetch cb it is the final count, also for a request that
 * failed with r == NULL (a refused connect retried twice gives 3). 0 for NULL. */
uint32_t ferry_client_req_attempts(const ferry_client_req *req);

/* Backpressure on the response body: while paused, on_data does not run and
 * the socket is not read (body_timeout_ms still runs). */
void ferry_client_req_pause(ferry_client_req *req);
void ferry_client_req_resume(ferry_client_req *req);

/* Streamed request body: copy len bytes out; cb (may be NULL) runs once they
 * reached the kernel (status 0) or the request failed — wait for it before
 * writing more. Then ferry_client_req_end_body. FERRY_EINVAL if the request
 * has no streamed body, or it is already ended. */
typedef void (*ferry_client_write_cb)(ferry_client_req *req, int status, void *data);
int ferry_client_req_write(ferry_client_req *req, const void *buf, size_t len,
                           ferry_client_write_cb cb, void *data);
int ferry_client_req_end_body(ferry_client_req *req);

/* application/x-www-form-urlencoded from 2 * npairs strings (key, value,
 * ...; none NULL), WHATWG rules. *out is malloc'd (the caller frees it) and
 * NUL-terminated ("" for npairs 0); *out_len (out_len may be NULL) excludes
 * the NUL. */
int ferry_form_encode(const char *const *pairs, size_t npairs, char **out, size_t *out_len);

/* ---- Task queue ------------------------------------------------------------
 *
 * ferry_queue runs asynchronous tasks under a global concurrency limit and,
 * optionally, per-key serialisation: tasks pushed with the same key run one
 * at a time, in push order; tasks of different keys run in parallel up to the
 * limit; tasks without a key obey only the limit. Typical use: a server
 * handler pushes the work of a request under the user's id, so one user's
 * requests are applied in order while other users' proceed. See docs/queue.md.
 *
 * Handles: ferry_queue (long-lived: new → push ... → close(cb) → free) and
 * ferry_queue_task (a request: it completes through exactly one call of its
 * ferry_task_cb). One loop, one thread: call everything on the loop's thread.
 *
 * A task's life:
 *   push → queued → cb(t, 0, data) starts it → the task calls
 *   ferry_queue_task_done(t) when its work is finished → gone;
 *   or push → queued → cancelled (ferry_queue_task_cancel, or a close with
 *   FERRY_QUEUE_CANCEL) → cb(t, FERRY_ECANCELED, data) → gone, no done call.
 * ferry_queue_task_done may be called from any callback on the loop's thread,
 * including from inside cb itself (work that finishes at once); 100,000 such
 * tasks in a row run at a constant stack depth (no recursion).
 *
 * Callbacks never run inside the call that caused them (libuv's rule): push,
 * done, cancel and close always return first. Tasks start, and cancellations
 * are delivered, in the loop's next idle or check phase — in the same loop
 * iteration when the call was made from an I/O or timer callback, without an
 * extra poll. At most max_starts_per_turn starts happen between two polls
 * for I/O, so a long queue of instant tasks cannot starve the server.
 *
 * Order: a task is *runnable* when it has no key, or it is the oldest queued
 * task of its key and no task of that key is running. When a slot is free,
 * the task that has been runnable the longest starts (FIFO, O(1)). A task
 * pushed to an idle key is runnable at once, so without contention tasks
 * start in push order; when a key's task finishes, its next task becomes
 * runnable then and waits behind the tasks already runnable — a key with a
 * backlog gets one turn per round and cannot hold the front of the queue.
 */
typedef struct ferry_queue ferry_queue;
typedef struct ferry_queue_task ferry_queue_task;

/* status 0: start the work; call ferry_queue_task_done(t) once it is
 * finished (t stays valid until then). status FERRY_ECANCELED: the task was
 * cancelled before it started; release data; t is gone when cb returns. */
typedef void (*ferry_task_cb)(ferry_queue_task *t, int status, void *data);
typedef void (*ferry_queue_close_cb)(ferry_queue *q, void *data);

typedef struct ferry_queue_options {
    size_t struct_size;           /* sizeof, set by the _init macro; never by hand */
    uint32_t concurrency;         /* tasks running at once, all keys together; 16;
                                     0 = no limit (only per-key serialisation) */
    uint32_t max_queued;          /* tasks waiting to start, all keys; a push beyond fails
                                     with FERRY_EQUEUEFULL; 10000; 0 = no limit */
    uint32_t max_queued_per_key;  /* tasks waiting to start under one key; a push beyond
                                     fails with FERRY_EQUEUEFULL; 0 = only max_queued (default) */
    uint32_t max_starts_per_turn; /* task starts plus cancellations delivered between two
                                     polls for I/O; 1024; 0 = no limit */
    FERRY_ABI_TEST_GROW_FIELDS_
} ferry_queue_options;

/* Fill *o with the defaults. A macro, so that sizeof is the caller's: the
 * library fills and later reads only that many bytes (docs/abi.md). */
#define ferry_queue_options_init(o) ferry_queue_options_init_sized((o), sizeof(ferry_queue_options))
void ferry_queue_options_init_sized(ferry_queue_options *o, size_t size);

/* Create a queue on `loop` (o NULL: defaults). The caller owns it: close it,
 * then free it after the close callback ran. It initialises two libuv
 * handles, so it must be closed before the loop is. */
int ferry_queue_new(uv_loop_t *loop, const ferry_queue_options *o, ferry_queue **out);

/* Queue a task. key: key_len bytes, copied (the queue owns the copy; the
 * caller's buffer may be reused at once); NULL (with key_len 0) = no key; a
 * non-NULL key of length 0 is the empty key, a key like any other. cb runs
 * later, never inside this call. out (may be NULL) receives the task handle,
 * for ferry_queue_task_cancel. Returns 0; FERRY_EQUEUEFULL beyond max_queued
 * or max_queued_per_key; FERRY_ECLOSING once ferry_queue_close was called;
 * FERRY_EINVAL; FERRY_ENOMEM. On error cb will never run. */
int ferry_queue_push(ferry_queue *q, const void *key, size_t key_len, ferry_task_cb cb,
                     void *data, ferry_queue_task **out);

/* The task's work is finished: its slot and its key are free for the next
 * task. Exactly once per started task; t is gone when this returns. */
void ferry_queue_task_done(ferry_queue_task *t);

/* Cancel a task that has not started: it leaves the queue at once (the next
 * task of its key takes its place in line) and its cb runs later, from the
 * loop, with FERRY_ECANCELED. Returns 0; FERRY_EBUSY if it is running (let it
 * finish); FERRY_EALREADY if it is already cancelled. t must be valid: not
 * yet done, and not past its cancellation callback. */
int ferry_queue_task_cancel(ferry_queue_task *t);

typedef enum ferry_queue_close_mode {
    FERRY_QUEUE_DRAIN = 0,  /* queued tasks still run, in order */
    FERRY_QUEUE_CANCEL = 1, /* queued tasks get FERRY_ECANCELED */
} ferry_queue_close_mode;

/* Stop accepting tasks (push returns FERRY_ECLOSING) and, per mode, let the
 * queued tasks run or cancel them; running tasks always finish. cb(q, data)
 * (may be NULL) runs from the loop once no task is queued or running and the
 * queue's handles are closed — never inside this call, even when the queue
 * is empty. A second call may turn DRAIN into CANCEL, and sets cb only if
 * none was given. ferry_queue_free may be called from inside cb. */
void ferry_queue_close(ferry_queue *q, ferry_queue_close_mode mode, ferry_queue_close_cb cb,
                       void *data);

/* Release the queue once its close has completed (its callback ran, or would
 * have, when none was given); FERRY_EBUSY before; NULL: 0. */
int ferry_queue_free(ferry_queue *q);

typedef struct ferry_queue_stats {
    uint64_t running;   /* started, not yet done */
    uint64_t queued;    /* waiting to start (cancelled tasks excluded) */
    uint64_t keys;      /* keys with a task queued or running (per-key queues alive) */
    uint64_t pushed;    /* tasks accepted by ferry_queue_push, ever */
    uint64_t completed; /* ferry_queue_task_done calls, ever */
    uint64_t cancelled; /* tasks cancelled before they started, ever */
    uint64_t rejected;  /* pushes refused with FERRY_EQUEUEFULL, ever */
    int closing;        /* 1 once ferry_queue_close was called */
} ferry_queue_stats;

/* Fill *st (a macro for the caller's size, as ferry_server_stats_get; all
 * zero for a NULL queue). */
#define ferry_queue_stats_get(q, \
    st) ferry_queue_stats_get_sized((q), (st), sizeof(ferry_queue_stats))
void ferry_queue_stats_get_sized(const ferry_queue *q, ferry_queue_stats *st, size_t size);
void(ferry_queue_stats_get)(const ferry_queue *q, ferry_queue_stats *st); /* 0.1.0's */

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif /* FERRY_H */
