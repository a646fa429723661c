/* test_field_rule.c — one rule for header field values on both sides
 * (RFC 9110 §5.5: field-vchar, SP, HTAB, obs-text). For every byte value b,
 * "a<b>b" is offered as a header value to the server (ferry_res_set_header,
 * ferry_res_add_header, and ferry_res_send's content type) and to the client
 * (a request header field and the request's content type); each must accept
 * exactly the bytes the RFC allows, so both sides refuse the same ones. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ferry.h"
#include "support/client_support.h"
#include "support/server_harness.h"

static bool rfc_allows(unsigned b)
{
    return b == '\t' || b == ' ' || (b >= 0x21 && b <= 0x7e) || b >= 0x80;
}

/* The server's verdicts, recorded by the handler (on the loop thread; read
 * after harness_stop joined it). NUL ends a C string, so byte 0 is offered
 * to the client only (its fields are slices). */
static int set_ok[256], add_ok[256], ctype_ok[256];

/* GET /?b=NN: try "a<NN>b" with set and add, then as the content type of
 * the answer (a refused one ends the response on a closed connection). */
static void judge(ferry_req *req, ferry_res *res, void *data)
{
    (void) data;
    ferry_str q = ferry_req_query(req);
    char num[8] = {0};
    memcpy(num, q.p + 2, q.len - 2 < sizeof(num) - 1 ? q.len - 2 : sizeof(num) - 1);
    unsigned b = (unsigned) strtoul(num, NULL, 10);
    char v[4] = {'a', (char) b, 'b', '\0'};
    set_ok[b] = ferry_res_set_header(res, "X-T", v) == 0 ? 1 : -1;
    add_ok[b] = ferry_res_add_header(res, "X-U", v) == 0 ? 1 : -1;
    ferry_res_set_header(res, "X-T", "x");
    ctype_ok[b] = ferry_res_send(res, 200, v, "ok", 2) == 0 ? 1 : -1;
}

static void test_server_and_client_refuse_the_same_bytes(void **state)
{
    (void) state;
    harness *h = harness_start(NULL, judge, NULL);
    int fd = -1;
    for (unsigned b = 1; b < 256; b++) {
        if (fd < 0)
            fd = tc_connect(harness_port(h));
        char target[16];
        snprintf(target, sizeof(target), "/?b=%u", b);
        tc_response r;
        int rc = tc_get(fd, target, &r);
        if (rc == 0) {
            assert_int_equal(r.status, 200);
            tc_response_free(&r);
        } else { /* a refused content type: that connection is gone */
            tc_close(fd);
            fd = -1;
        }
    }
    if (fd >= 0)
        tc_close(fd);
    harness_stop(h);

    /* the client refuses a bad value in ferry_request itself */
    static cs_result res[256][2];
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = cs_agent_new(loop, NULL);
    int hdr_ok[256], client_ctype_ok[256];
    for (unsigned b = 0; b < 256; b++) {
        char v[4] = {'a', (char) b, 'b', '\0'};
        ferry_header hd = {{"X-T", 3}, {v, 3}};
        ferry_request_options o = cs_opts("GET", "http://127.0.0.1:9/");
        o.headers = &hd;
        o.header_count = 1;
        hdr_ok[b] = cs_request(a, &o, &res[b][0], true) == 0 ? 1 : -1;
        if (b) {
            ferry_request_options o2 = cs_opts("GET", "http://127.0.0.1:9/");
            o2.content_type = v;
            client_ctype_ok[b] = cs_request(a, &o2, &res[b][1], true) == 0 ? 1 : -1;
        }
    }
    cs_agent_finish(loop, a, 1); /* the accepted ones end with FERRY_ECLOSING */
    cs_loop_finish(loop);

    for (unsigned b = 0; b < 256; b++) {
        int want = rfc_allows(b) ? 1 : -1;
        if (hdr_ok[b] != want)
            fail_msg("client header value byte 0x%02x: %s", b, hdr_ok[b] > 0 ? "accepted" : "refused");
        if (b == 0)
            continue;
        if (client_ctype_ok[b] != want)
            fail_msg("client content type byte 0x%02x: %s", b,
                     client_ctype_ok[b] > 0 ? "accepted" : "refused");
        if (set_ok[b] != want || add_ok[b] != want)
            fail_msg("server header value byte 0x%02x: %s", b, set_ok[b] > 0 ? "accepted" : "refused");
        if (ctype_ok[b] != want)
            fail_msg("server content type byte 0x%02x: %s", b, ctype_ok[b] > 0 ? "accepted" : "refused");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_and_client_refuse_the_same_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
