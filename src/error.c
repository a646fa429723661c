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
