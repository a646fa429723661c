/* serve.h — what `ferry serve`'s two files share: serve.c (flags, the
 * server's life, the router, the demo handler and the special paths) and
 * serve_files.c (static files for --dir). Private to the tool. */
#ifndef FERRY_TOOL_SERVE_H
#define FERRY_TOOL_SERVE_H

#include <stdint.h>

#include "ferry.h"

/* One per loop (--workers): what that loop's handlers need. */
typedef struct serve_app {
    uv_loop_t *loop;
    ferry_server *server;
    ferry_group *group;      /* all the loops: /status sums them */
    const char *root; /* --dir after realpath(3), no trailing '/' unless it is "/"; or NULL */
    size_t root_len;
    int quiet; /* --quiet: no access log */
    const char *health_path; /* --health-path: 200, or 503 once draining */
} serve_app;

/* 1 if the slice holds exactly the NUL-terminated `lit`. */
int serve_str_eq(ferry_str s, const char *lit);

/* The access log line for a response about to end (req is still valid):
 * `PEER "METHOD TARGET HTTP/1.x" STATUS BYTES MSms` on stderr, unless quiet;
 * STATUS is "aborted" for a response nobody will receive (the client left,
 * or the server was destroyed). start_ns is uv_hrtime() when the request
 * arrived. */
void serve_log(const serve_app *app, ferry_req *req, int status, uint64_t body_bytes,
               uint64_t start_ns);

/* Log, then answer with ferry_res_send. The response is over afterwards. */
void serve_reply(const serve_app *app, ferry_res *res, uint64_t start_ns, int status,
                 const char *content_type, const char *body, size_t len);

/* serve_reply with a text/plain body: msg and a newline. */
void serve_reply_text(const serve_app *app, ferry_res *res, uint64_t start_ns, int status,
                      const char *msg);

/* --dir: answer a GET or HEAD from the directory tree (serve_files.c). */
void serve_files(const serve_app *app, ferry_req *req, ferry_res *res, uint64_t start_ns);

#endif /* FERRY_TOOL_SERVE_H */
