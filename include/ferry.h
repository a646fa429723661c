/* ferry — HTTP/1.1 server and client library for C on libuv.
 *
 * This is the whole public API. Handles are opaque; option structs have an
 * *_init() that fills every default; functions return 0 or a negative
 * FERRY_E* code that ferry_strerror() names. See docs/ for the guide.
 */
#ifndef FERRY_H
#define FERRY_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FERRY_VERSION_MAJOR  0
#define FERRY_VERSION_MINOR  1
#define FERRY_VERSION_PATCH  0
#define FERRY_VERSION_STRING "0.1.0"
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
    XX(EPOOLFULL, -30044, 0, "connection limit reached")                                           \
    XX(EABORTED, -30045, 0, "aborted by the caller")                                               \
    XX(ECLOSING, -30046, 0, "server or agent is closing")

/* FERRY_EOF, FERRY_ETIMEDOUT, ..., FERRY_EBADREQLINE, ... */
typedef enum {
#define FERRY_ERRNO_ENUM_(name, value, status, msg) FERRY_##name = (value),
    FERRY_ERRNO_MAP(FERRY_ERRNO_ENUM_)
#undef FERRY_ERRNO_ENUM_
} ferry_errno;

/* A short human message for any negative code: ferry's own, libuv's or an
 * errno. Never NULL; never allocates. */
const char *ferry_strerror(int err);

/* The code's name without the prefix, e.g. "ETIMEDOUT", "EBADCL". Unknown
 * codes give "UNKNOWN". Never NULL; never allocates. */
const char *ferry_err_name(int err);

/* The HTTP status a server answers for this error in a request (400, 413,
 * 414, 431, 501, 505, ...), or 0 when it is not a request error. */
int ferry_err_http_status(int err);

#ifdef __cplusplus
}
#endif
#endif /* FERRY_H */
