/* chain.c — a sequential chain of requests that keeps a session, the way a
 * browser would: log in with a form, get the session cookie, use it.
 *
 *   POST /login  (user=alice&pass=...)  → Set-Cookie: sid=...
 *   GET  /me     (Cookie: sid=...)      → "alice"
 *   POST /notes  (text=...)             → "saved ..."
 *
 * The agent keeps the cookie jar (cookies = 1); each step starts from the
 * previous step's callback. The server is a ferry server this program starts
 * on 127.0.0.1, port 0, on the same loop, so it runs anywhere.
 * Usage: chain   — prints each step; exits 0 if the chain went through. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"

/* ---- the server: a tiny app with a session ------------------------------------- */

static int path_is(ferry_req *req, const char *p)
{
    ferry_str s = ferry_req_path(req);
    return s.len == strlen(p) && memcmp(s.p, p, s.len) == 0;
}

static int logged_in(ferry_req *req)
{
    ferry_str c = ferry_req_header(req, "cookie");
    for (size_t i = 0; c.p && i + 11 <= c.len; i++)
        if (memcmp(c.p + i, "sid=s3ss10n", 11) == 0) return 1;
    return 0;
}

static void on_login_body(ferry_req *req, int status, const char *body, size_t len, void *data)
{
    static const char want[] = "user=alice&pass=open+sesame%21";
    ferry_res *res = ferry_req_res(req);
    (void) data;
    if (status < 0) {
        ferry_res_end(res);
    } else if (len == sizeof(want) - 1 && memcmp(body, want, len) == 0) {
        ferry_res_add_header(res, "Set-Cookie", "sid=s3ss10n; Path=/; HttpOnly");
        ferry_res_send(res, 200, "text/plain", "welcome", 7);
    } else {
        ferry_res_send(res, 401, "text/plain", "wrong password", 14);
    }
}

static void on_note_body(ferry_req *req, int status, const char *body, size_t len, void *data)
{
    ferry_res *res = ferry_req_res(req);
    (void) data;
    if (status < 0) {
        ferry_res_end(res);
        return;
    }
    char msg[256];
    int n = snprintf(msg, sizeof(msg), "saved %.*s", (int) len, body);
    ferry_res_send(res, 200, "text/plain", msg, (size_t) n);
}

static void on_request(ferry_req *req, ferry_res *res, void *data)
{
    (void) data;
    if (path_is(req, "/login"))
        ferry_req_read_body(req, 4096, on_login_body, NULL);
    else if (!logged_in(req))
        ferry_res_send(res, 401, "text/plain", "log in first", 12);
    else if (path_is(req, "/me"))
        ferry_res_send(res, 200, "text/plain", "alice", 5);
    else if (path_is(req, "/notes"))
        ferry_req_read_body(req, 4096, on_note_body, NULL);
    else
        ferry_res_send(res, 404, "text/plain", "not found", 9);
}

/* ---- the client: three steps, each started by the previous one -------------- */

typedef struct chain {
    ferry_agent *agent;
    ferry_server *server;
    char base[64];
    int step;
    int ok; /* 1 once the last step succeeded */
} chain;

static void next_step(chain *c);

static void on_server_closed(ferry_server *s, void *data)
{
    (void) s;
    (void) data;
}

static void on_agent_closed(ferry_agent *a, void *data)
{
    chain *c = data;
    (void) a;
    ferry_server_close(c->server, 1000, on_server_closed);
}

static void finish(chain *c)
{
    ferry_agent_close(c->agent, 0, on_agent_closed, c);
}

static void on_fetched(ferry_client_req *req, int status, const ferry_response *r, void *data)
{
    chain *c = data;
    (void) req;
    if (status < 0) {
        printf("step %d failed: %s\n", c->step, ferry_strerror(status));
        finish(c);
        return;
    }
    ferry_str cookie = ferry_response_header(r, "set-cookie");
    printf("step %d: %d %.*s\n", c->step, r->status, (int) r->body.len, r->body.p);
    if (cookie.p) printf("        Set-Cookie: %.*s\n", (int) cookie.len, cookie.p);
    if (r->status != 200) {
        finish(c);
        return;
    }
    c->step++;
    next_step(c);
}

static void next_step(chain *c)
{
    char url[128];
    char *form = NULL;
    size_t form_len = 0;
    ferry_request_options o;
    ferry_request_options_init(&o);
    o.url = url;
    switch (c->step) {
    case 1: {
        const char *pairs[] = {"user", "alice", "pass", "open sesame!"};
        ferry_form_encode(pairs, 2, &form, &form_len);
        snprintf(url, sizeof(url), "%s/login", c->base);
        o.method = "POST";
        break;
    }
    case 2: snprintf(url, sizeof(url), "%s/me", c->base); break;
    case 3: {
        const char *pairs[] = {"text", "remember the milk"};
        ferry_form_encode(pairs, 1, &form, &form_len);
        snprintf(url, sizeof(url), "%s/notes", c->base);
        o.method = "POST";
        break;
    }
    default:
        c->ok = 1;
        printf("chain done\n");
        finish(c);
        return;
    }
    if (form) {
        o.body = form; /* copied by ferry */
        o.body_len = form_len;
        o.content_type = "application/x-www-form-urlencoded";
    }
    printf("step %d: %s %s\n", c->step, o.method ? o.method : "GET", url);
    int rc = ferry_fetch(c->agent, &o, 0, on_fetched, c, NULL);
    free(form);
    if (rc < 0) {
        printf("step %d refused: %s\n", c->step, ferry_strerror(rc));
        finish(c);
    }
}

int main(void)
{
    uv_loop_t *loop = uv_default_loop();
    chain c;
    memset(&c, 0, sizeof(c));
    c.step = 1;
    int rc = ferry_server_new(loop, NULL, on_request, NULL, &c.server);
    if (rc == 0) rc = ferry_server_listen(c.server, "127.0.0.1", 0);
    ferry_agent_options ao;
    ferry_agent_options_init(&ao);
    ao.cookies = 1; /* the session cookie is kept and sent back */
    if (rc == 0) rc = ferry_agent_new(loop, &ao, &c.agent);
    if (rc < 0) {
        fprintf(stderr, "chain: %s\n", ferry_strerror(rc));
        return 1;
    }
    snprintf(c.base, sizeof(c.base), "http://127.0.0.1:%d", ferry_server_port(c.server));
    next_step(&c);
    uv_run(loop, UV_RUN_DEFAULT); /* returns once agent and server closed */
    ferry_agent_free(c.agent);
    ferry_server_free(c.server);
    int clean = uv_loop_close(loop) == 0;
    return clean && c.ok ? 0 : 1;
}
