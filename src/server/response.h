/* response.h — writing a response into a connection's transport: the status
 * line, the handler's header block and ferry's own fields (Date, framing,
 * Connection, Keep-Alive), body framing, and the short answers ferry writes
 * itself (400, 408, 413, ...). Keeping the handler's header block is here
 * too (ferry_res_set_header). No decisions about the connection: the caller
 * says whether it stays open. */
#ifndef FERRY_RESPONSE_H
#define FERRY_RESPONSE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/transport.h"

typedef struct ferry_req exchange;

/* Lines built once and reused: Date changes once a second, Keep-Alive never. */
typedef struct response_ctx {
    char date_line[48]; /* "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" */
    int64_t date_sec;
    char ka_line[48];   /* "Keep-Alive: timeout=5\r\n", or empty */
    uint8_t ka_line_len;
} response_ctx;

#define RESPONSE_DATE_LINE_LEN 37

void response_ctx_init(response_ctx *rc, uint64_t keep_alive_timeout_ms);
const char *response_date_line(response_ctx *rc);
const char *response_reason(int status);

/* Decide the response's framing from its status, the request and whether
 * the whole body is known now (total; UINT64_MAX: it will be streamed):
 * sets RF_NO_BODY and RF_CLOSE_DELIM. Call before deciding keep-alive. */
void response_frame(exchange *ex, uint64_t total);

/* Queue the status line and headers (ex->keep_alive decided). ctype: a
 * Content-Type to add (ctype_len bytes), or ctype_len 0. */
int response_queue_head(exchange *ex, transport *t, response_ctx *rc, uint64_t total,
                        const char *ctype, size_t ctype_len);

/* Queue body bytes as the head framed them (chunked or not; dropped for
 * HEAD/204/304). FERRY_EINVAL past a Content-Length the handler set, or
 * for buf NULL with len > 0. */
int response_queue_body(exchange *ex, transport *t, const void *buf, size_t len);

/* The end of a chunked body (nothing otherwise). */
int response_queue_end(exchange *ex, transport *t);

/* Turn ex into ferry's own short answer: status, a text body naming err,
 * Connection: close. The caller queues it with response_queue_head. Returns
 * the body length (written to body, which holds RESPONSE_ERROR_MAX). */
#define RESPONSE_ERROR_MAX 160
size_t response_make_error(exchange *ex, int status, int err, char *body);

/* The handler's header block: set (replace) or add a field. Fields ferry
 * writes itself are taken here (Content-Length is remembered, Connection:
 * close noted, Transfer-Encoding and Keep-Alive refused). */
int response_header(exchange *ex, const char *name, const char *value, bool replace);

#endif /* FERRY_RESPONSE_H */
