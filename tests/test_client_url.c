/* test_client_url.c — URLs as the client takes them (issue 13 item 7):
 *
 *   http://[::1%25lo]:P/   an IPv6 literal with an interface NAME as its zone
 *                          connects (getaddrinfo resolved zone names only for
 *                          link-local addresses: it was FERRY_EAI_NONAME)
 *   http://[::1%251]:P/    a numeric zone, as before
 *   %25nosuchif0           a zone naming no interface: FERRY_EAI_NONAME
 *   every URL ferry_url_check refuses, ferry_request refuses with the same code
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <net/if.h>

#include <cmocka.h>

#include "ferry.h"
#include "support/client_support.h"
#include "support/raw_server.h"

static void get_zoned(const char *zone, int want)
{
    raw_options ro = {0};
    ro.host = "::1";
    raw_server *s = raw_start(&ro);
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = cs_agent_new(loop, NULL);
    char url[128];
    snprintf(url, sizeof url, "http://[::1%%25%s]:%d/z", zone, raw_port(s));
    assert_int_equal(ferry_url_check(url, NULL), 0);
    ferry_request_options o = cs_opts("GET", url);
    o.retries = 0;
    cs_result r = {0};
    cs_run_request(loop, a, &o, &r, 5000);
    cs_assert_done(&r, want);
    if (want == 0) assert_int_equal(r.http_status, 200);
    cs_client_finish(loop, a);
    raw_stop(s);
}

static void test_zone_by_name(void **state)
{
    (void) state;
    if (if_nametoindex("lo") == 0) skip(); /* no interface called lo on this system */
    get_zoned("lo", 0);
}

static void test_zone_by_number(void **state)
{
    (void) state;
    char zone[16];
    unsigned idx = if_nametoindex("lo");
    if (idx == 0) skip();
    snprintf(zone, sizeof zone, "%u", idx);
    get_zoned(zone, 0);
}

static void test_zone_unknown(void **state)
{
    (void) state;
    get_zoned("nosuchif0", FERRY_EAI_NONAME);
}

static void test_request_refuses_what_check_refuses(void **state)
{
    (void) state;
    static const char *const bad[] = {"http://h:99999/", "http://1.2.3.4./", "http://h/caf\xc3\xa9",
                                      "ftp://h/",        "http://h/%zz",     "http://[::1%lo]/"};
    uv_loop_t *loop = cs_loop_new();
    ferry_agent *a = cs_agent_new(loop, NULL);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *why = NULL;
        int want = ferry_url_check(bad[i], &why);
        assert_true(want < 0);
        assert_non_null(why);
        ferry_request_options o = cs_opts("GET", bad[i]);
        cs_result r = {0};
        assert_int_equal(cs_request(a, &o, &r, true), want);
    }
    cs_client_finish(loop, a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zone_by_name),
        cmocka_unit_test(test_zone_by_number),
        cmocka_unit_test(test_zone_unknown),
        cmocka_unit_test(test_request_refuses_what_check_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
