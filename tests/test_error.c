/* test_error.c — the error table: names, messages and statuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <uv.h>

#include "ferry.h"

static void test_every_code_is_named(void **state)
{
    (void) state;
    static const struct {
        int code;
        const char *name;
    } all[] = {
#define ENTRY_(name, value, status, msg) {value, #name},
        FERRY_ERRNO_MAP(ENTRY_)
#undef ENTRY_
    };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        assert_true(all[i].code < 0);
        assert_string_equal(ferry_err_name(all[i].code), all[i].name);
        assert_true(strlen(ferry_strerror(all[i].code)) > 3);
        for (size_t j = i + 1; j < sizeof(all) / sizeof(all[0]); j++)
            assert_int_not_equal(all[i].code, all[j].code); /* no duplicate values */
    }
}

static void test_errno_codes_are_libuv_codes(void **state)
{
    (void) state;
    assert_int_equal(FERRY_ETIMEDOUT, UV_ETIMEDOUT);
    assert_int_equal(FERRY_ECONNRESET, UV_ECONNRESET);
    assert_int_equal(FERRY_EMFILE, UV_EMFILE);
    assert_true(FERRY_EBADREQLINE < -30000);
}

static void test_codes_outside_the_table(void **state)
{
    (void) state;
    /* A libuv code ferry does not list still gets libuv's text and name. */
    assert_string_equal(ferry_strerror(UV_EPERM), uv_strerror(UV_EPERM));
    assert_string_equal(ferry_err_name(UV_EPERM), "EPERM");
    assert_string_equal(ferry_err_name(-999999), "UNKNOWN");
    assert_non_null(ferry_strerror(-999999));
    assert_string_equal(ferry_err_name(0), "OK");
}

/* docs/errors.md's own line: both strings in one printf. With one shared
 * buffer the message was printed twice ("operation not permitted (operation
 * not permitted)"). */
static void test_two_calls_in_one_printf(void **state)
{
    (void) state;
    char line[128];
    snprintf(line, sizeof line, "%s (%s)", ferry_strerror(UV_EPERM), ferry_err_name(UV_EPERM));
    assert_string_equal(line, "operation not permitted (EPERM)");
    snprintf(line, sizeof line, "%s (%s)", ferry_strerror(-999999), ferry_err_name(-999999));
    assert_string_equal(line, "unknown error (UNKNOWN)");
}

/* A saved pointer is not overwritten by later calls with other codes. */
static void test_pointers_stay_valid(void **state)
{
    (void) state;
    const char *msg = ferry_strerror(UV_EPERM), *name = ferry_err_name(UV_EPERM);
    const char *other[] = {ferry_strerror(UV_ENOSYS), ferry_err_name(UV_ENOSYS),
                           ferry_strerror(UV_E2BIG), ferry_err_name(UV_E2BIG),
                           ferry_strerror(-999999), ferry_err_name(-999998)};
    assert_string_equal(msg, "operation not permitted");
    assert_string_equal(name, "EPERM");
    assert_string_equal(other[0], uv_strerror(UV_ENOSYS));
    assert_string_equal(other[1], "ENOSYS");
    assert_string_equal(other[3], "E2BIG");
    assert_string_equal(other[4], "unknown error");
    assert_string_equal(other[5], "UNKNOWN");
    /* static strings: the same pointer every time */
    assert_ptr_equal(ferry_strerror(UV_EPERM), msg);
    assert_ptr_equal(ferry_err_name(UV_EPERM), name);
}

/* ferry bench calls these from several threads: every thread gets the same
 * static string (a per-thread buffer would give each its own pointer, gone
 * when the thread ends) and the right text, however the calls interleave. */
#define ERR_THREADS 4
typedef struct err_thread {
    uv_thread_t tid;
    const char *msg, *name;
    int wrong;
} err_thread;

static void err_thread_main(void *arg)
{
    err_thread *t = arg;
    for (int i = 0; i < 20000; i++) {
        int code = (i & 1) ? UV_EPERM : UV_ENOSYS;
        const char *m = ferry_strerror(code), *n = ferry_err_name(code);
        if (strcmp(n, (i & 1) ? "EPERM" : "ENOSYS") != 0 || strcmp(m, uv_strerror(code)) != 0)
            t->wrong++;
    }
    t->msg = ferry_strerror(UV_EPERM);
    t->name = ferry_err_name(UV_EPERM);
}

static void test_threads(void **state)
{
    (void) state;
    err_thread t[ERR_THREADS] = {0};
    for (int i = 0; i < ERR_THREADS; i++)
        assert_int_equal(uv_thread_create(&t[i].tid, err_thread_main, &t[i]), 0);
    for (int i = 0; i < ERR_THREADS; i++)
        assert_int_equal(uv_thread_join(&t[i].tid), 0);
    for (int i = 0; i < ERR_THREADS; i++) {
        assert_int_equal(t[i].wrong, 0);
        assert_ptr_equal(t[i].msg, ferry_strerror(UV_EPERM));
        assert_ptr_equal(t[i].name, ferry_err_name(UV_EPERM));
        assert_string_equal(t[i].name, "EPERM");
    }
}

static void test_http_status(void **state)
{
    (void) state;
    assert_int_equal(ferry_err_http_status(FERRY_EHEADTOOBIG), 431);
    assert_int_equal(ferry_err_http_status(FERRY_ETOOMANYFIELDS), 431);
    assert_int_equal(ferry_err_http_status(FERRY_EURITOOLONG), 414);
    assert_int_equal(ferry_err_http_status(FERRY_ETEUNSUP), 501);
    assert_int_equal(ferry_err_http_status(FERRY_EVERSION), 505);
    assert_int_equal(ferry_err_http_status(FERRY_EBODYTOOBIG), 413);
    assert_int_equal(ferry_err_http_status(FERRY_ECLTE), 400);
    assert_int_equal(ferry_err_http_status(FERRY_ETIMEDOUT), 0);
    assert_int_equal(ferry_err_http_status(12345), 0);
}

/* Every code in the table has a kind; the only "other" ones are listed here,
 * so a new code that nobody classified fails this test. */
static void test_every_code_has_a_kind(void **state)
{
    (void) state;
    static const int other[] = {FERRY_ENOMEM, FERRY_EINVAL,     FERRY_ENOENT,
                                FERRY_EACCES, FERRY_EBUSY,      FERRY_EALREADY,
                                FERRY_ENOTSUP, FERRY_EADDRINUSE, FERRY_ENOBUFS};
    static const int all[] = {
#define CODE_(name, value, status, msg) value,
        FERRY_ERRNO_MAP(CODE_)
#undef CODE_
    };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        bool listed = false;
        for (size_t j = 0; j < sizeof(other) / sizeof(other[0]); j++)
            listed |= all[i] == other[j];
        if ((ferry_err_kind_of(all[i]) == FERRY_ERRK_OTHER) != listed)
            fail_msg("%s: kind %s", ferry_err_name(all[i]),
                     ferry_err_kind_name(ferry_err_kind_of(all[i])));
    }
    assert_int_equal(ferry_err_kind_of(FERRY_EHEADERSTIMEOUT), FERRY_ERRK_TIMEOUT);
    assert_int_equal(ferry_err_kind_of(FERRY_EINCOMPLETE), FERRY_ERRK_RESET);
    assert_int_equal(ferry_err_kind_of(FERRY_EBADSTATUS), FERRY_ERRK_PROTOCOL);
    assert_int_equal(ferry_err_kind_of(FERRY_EBADCHUNK), FERRY_ERRK_PROTOCOL);
    assert_int_equal(ferry_err_kind_of(FERRY_ECONNREFUSED), FERRY_ERRK_CONNECT);
    assert_int_equal(ferry_err_kind_of(FERRY_EQUEUEFULL), FERRY_ERRK_POOL);
    assert_int_equal(ferry_err_kind_of(FERRY_EABORTED), FERRY_ERRK_ABORTED);
    assert_int_equal(ferry_err_kind_of(FERRY_ETLSVERIFY), FERRY_ERRK_TLS);
    assert_int_equal(ferry_err_kind_of(FERRY_ETLSALERT), FERRY_ERRK_TLS);
    assert_int_equal(ferry_err_kind_of(FERRY_ETLSPLAINHTTP), FERRY_ERRK_TLS);
    assert_int_equal(ferry_err_kind_of(FERRY_ETLSCERT), FERRY_ERRK_TLS);
    assert_int_equal(ferry_err_kind_of(FERRY_ETLSTRUNCATED), FERRY_ERRK_RESET);
    assert_int_equal(ferry_err_kind_of(FERRY_EPROXY), FERRY_ERRK_PROTOCOL);
    assert_int_equal(ferry_err_http_status(FERRY_EPROXY), 0); /* closed, never answered */
    assert_string_equal(ferry_err_kind_name(FERRY_ERRK_TLS), "tls");
    assert_int_equal(ferry_err_http_status(FERRY_ETLSPLAINHTTP), 400);
    assert_int_equal(ferry_err_kind_of(UV_EPERM), FERRY_ERRK_OTHER);
    assert_string_equal(ferry_err_kind_name(FERRY_ERRK_TIMEOUT), "timeout");
    assert_string_equal(ferry_err_kind_name((ferry_err_kind) 99), "other");
}

static void test_version(void **state)
{
    (void) state;
    assert_string_equal(ferry_version_string(), FERRY_VERSION_STRING);
    assert_true(FERRY_VERSION_HEX >= 0x000100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_code_is_named),
        cmocka_unit_test(test_errno_codes_are_libuv_codes),
        cmocka_unit_test(test_codes_outside_the_table),
        cmocka_unit_test(test_two_calls_in_one_printf),
        cmocka_unit_test(test_pointers_stay_valid),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_http_status),
        cmocka_unit_test(test_every_code_has_a_kind),
        cmocka_unit_test(test_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
