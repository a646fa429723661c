/* error.c — names and messages for ferry's error codes.
 *
 * Everything comes from FERRY_ERRNO_MAP in ferry.h, so adding a code is one
 * line there. Codes outside the table (other libuv/errno values) are handed to
 * libuv's reentrant formatters, into a per-thread buffer, so nothing allocates.
 */
#include "ferry.h"

static _Thread_local char error_buf[80];

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
    return uv_strerror_r(err, error_buf, sizeof(error_buf));
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
    uv_err_name_r(err, error_buf, sizeof(error_buf));
    /* libuv prints "Unknown system error N" for codes it does not know. */
    return error_buf[0] == 'E' ? error_buf : "UNKNOWN";
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
