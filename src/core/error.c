/* error.c — names and messages for ferry's error codes.
 *
 * Everything comes from FERRY_ERRNO_MAP in ferry.h, so adding a code is one
 * line there. Codes outside it that libuv knows (UV_ERRNO_MAP) get libuv's own
 * static strings; anything else gets a fixed "unknown error" / "UNKNOWN".
 * Only static strings come back: no buffer is shared between calls or
 * threads, so a saved pointer stays valid and two calls in one printf work.
 * uv_strerror/uv_err_name are only called for codes libuv knows, because for
 * others libuv 1.44 mallocs a message and never frees it.
 */
#include "ferry.h"

/* Whether libuv has a static message and name for err. */
static int uv_knows(int err)
{
    switch (err) {
#define FERRY_UV_KNOWN_(name, msg) case UV_##name:
        UV_ERRNO_MAP(FERRY_UV_KNOWN_)
#undef FERRY_UV_KNOWN_
        return 1;
    default: return 0;
    }
}

const char *ferry_version_string(void)
{
    return FERRY_VERSION_STRING;
}

const char *ferry_strerror(int err)
{
    switch (err) {
#define FERRY_STRERROR_(name, value, status, msg)                                                  \
    case (value): return msg;
        FERRY_ERRNO_MAP(FERRY_STRERROR_)
#undef FERRY_STRERROR_
    default: break;
    }
    if (err >= 0)
        return "success";
    return uv_knows(err) ? uv_strerror(err) : "unknown error";
}

const char *ferry_err_name(int err)
{
    switch (err) {
#define FERRY_ERR_NAME_(name, value, status, msg)                                                  \
    case (value): return #name;
        FERRY_ERRNO_MAP(FERRY_ERR_NAME_)
#undef FERRY_ERR_NAME_
    default: break;
    }
    if (err >= 0)
        return "OK";
    return uv_knows(err) ? uv_err_name(err) : "UNKNOWN";
}

int ferry_err_http_status(int err)
{
    switch (err) {
#define FERRY_ERR_STATUS_(name, value, status, msg)                                                \
    case (value): return (status);
        FERRY_ERRNO_MAP(FERRY_ERR_STATUS_)
#undef FERRY_ERR_STATUS_
    default: return 0;
    }
}

ferry_err_kind ferry_err_kind_of(int err)
{
    switch (err) {
    case FERRY_ETIMEDOUT:
    case FERRY_ECONNECTTIMEOUT:
    case FERRY_EHEADERSTIMEOUT:
    case FERRY_EREQUESTTIMEOUT:
    case FERRY_EIDLETIMEOUT:
    case FERRY_EBODYTIMEOUT:
    case FERRY_EQUEUETIMEOUT:
    case FERRY_EDEADLINE: return FERRY_ERRK_TIMEOUT;
    case FERRY_ECONNREFUSED:
    case FERRY_EHOSTUNREACH:
    case FERRY_ENETUNREACH:
    case FERRY_EADDRNOTAVAIL:
    case FERRY_EAI_NONAME:
    case FERRY_EAI_AGAIN:
    case FERRY_EAI_FAIL:
    case FERRY_ENOTCONN:
    case FERRY_EMFILE:
    case FERRY_ENFILE: return FERRY_ERRK_CONNECT;
    case FERRY_ECONNRESET:
    case FERRY_ECONNABORTED:
    case FERRY_EPIPE:
    case FERRY_EOF:
    case FERRY_EINCOMPLETE:
    case FERRY_EUNANSWERED:
    /* a FIN where TLS wanted a close_notify: the connection ended, as with
     * EOF (the HTTP layer turns it into EOF or EINCOMPLETE) */
    case FERRY_ETLSTRUNCATED: return FERRY_ERRK_RESET;
    case FERRY_ETLSVERIFY:
    case FERRY_ETLSHANDSHAKE:
    case FERRY_ETLSALERT:
    case FERRY_ETLSPROTOCOL:
    case FERRY_ETLSPLAINHTTP:
    case FERRY_ETLSCERT: return FERRY_ERRK_TLS;
    /* a connection without a valid PROXY header: a malformed message, though
     * no HTTP status is ever sent for it */
    case FERRY_EPROXY: return FERRY_ERRK_PROTOCOL;
    case FERRY_EQUEUEFULL:
    case FERRY_ECLOSING: return FERRY_ERRK_POOL;
    case FERRY_EABORTED:
    case FERRY_ECANCELED: return FERRY_ERRK_ABORTED;
    default: break;
    }
    /* the message-level codes: start lines, header fields, body framing,
     * expectations — everything the table maps to an HTTP status, and the
     * status line's own */
    if (ferry_err_http_status(err) || err == FERRY_EBADSTATUS)
        return FERRY_ERRK_PROTOCOL;
    return FERRY_ERRK_OTHER;
}

const char *ferry_err_kind_name(ferry_err_kind kind)
{
    static const char *const names[] = {"other", "timeout", "connect", "reset",
                                        "protocol", "pool", "aborted", "tls"};
    return (unsigned) kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "other";
}
