/* hello.c — the smallest ferry server: answers every request with
 * "hello, world". Usage: hello [PORT]  (0 or none: any free port)
 * SIGTERM/SIGINT close it gracefully. */
#include <stdio.h>
#include <stdlib.h>

#include "ferry.h"

static void on_request(ferry_req *req, ferry_res *res, void *data)
{
    (void) req;
    (void) data;
    ferry_res_send(res, 200, "text/plain", "hello, world", 12);
}

int main(int argc, char **argv)
{
    uv_loop_t *loop = uv_default_loop();
    ferry_server *s;
    int rc = ferry_server_new(loop, NULL, on_request, NULL, &s);
    if (rc == 0)
        rc = ferry_server_listen(s, "127.0.0.1", argc > 1 ? atoi(argv[1]) : 0);
    if (rc < 0) {
        fprintf(stderr, "hello: %s\n", ferry_strerror(rc));
        return 1;
    }
    printf("listening on http://127.0.0.1:%d\n", ferry_server_port(s));
    fflush(stdout);
    ferry_server_on_signals(s, 5000); /* SIGTERM: graceful, at most 5 s */
    uv_run(loop, UV_RUN_DEFAULT);     /* returns once the server has closed */
    ferry_server_free(s);
    return uv_loop_close(loop) == 0 ? 0 : 1;
}
