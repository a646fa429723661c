/* flags.c — table-driven flag parsing for fetch and bench, and the usage and
 * number helpers serve shares (rules in flags.h).
 * Values are checked here, by kind, so a command's callback only stores them.
 */
#include "flags.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ferry %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (try 'ferry %s --help')\n", cmd);
    va_end(ap);
    return 2;
}

int parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    if (s[0] < '0' || s[0] > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return -1;
    *out = (uint64_t) v;
    return 0;
}

int parse_decimal(const char *s, int allow_s, double *out)
{
    /* Check the shape first: strtod alone would take signs, exponents,
     * hex floats, "inf" and leading spaces. */
    size_t n = strlen(s);
    if (allow_s && n > 0 && s[n - 1] == 's')
        n--;
    size_t digits = 0, dots = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] >= '0' && s[i] <= '9')
            digits++;
        else if (s[i] == '.')
            dots++;
        else
            return -1;
    }
    if (digits == 0 || dots > 1 || n > 32)
        return -1;
    char buf[40];
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

const char *flag_name(const flag_spec *spec)
{
    return spec->long_name ? spec->long_name : spec->short_name;
}

static const flag_spec *find_long(const flag_spec *specs, size_t n, const char *arg, size_t len)
{
    for (size_t k = 0; k < n; k++) {
        const char *name = specs[k].long_name;
        if (name && strlen(name) == len && memcmp(name, arg, len) == 0)
            return &specs[k];
    }
    return NULL;
}

static const flag_spec *find_short(const flag_spec *specs, size_t n, char c)
{
    for (size_t k = 0; k < n; k++) {
        const char *name = specs[k].short_name;
        if (name && name[1] == c && name[2] == '\0')
            return &specs[k];
    }
    return NULL;
}

/* Check val against the spec's kind and fill v. */
static int check_value(const char *cmd, const flag_spec *spec, const char *val, flag_value *v)
{
    v->str = val;
    switch (spec->kind) {
    case FLAG_BOOL:
    case FLAG_STR: return 0;
    case FLAG_UINT:
        if (parse_uint(val, spec->max, &v->u) < 0 || v->u < spec->min)
            return usage_error(cmd,
                               "invalid value '%s' for %s: expected an integer from %" PRIu64
                               " to %" PRIu64,
                               val, flag_name(spec), spec->min, spec->max);
        return 0;
    case FLAG_SECONDS:
        if (parse_decimal(val, 1, &v->d) < 0 || v->d > (double) spec->max ||
            (spec->min && v->d <= 0.0))
            return usage_error(cmd,
                               "invalid value '%s' for %s: expected seconds, a number %s %" PRIu64,
                               val, flag_name(spec), spec->min ? "above 0 and up to" : "up to",
                               spec->max);
        v->u = (uint64_t) llround(v->d * 1e9);
        return 0;
    case FLAG_RATE:
        if (parse_decimal(val, 0, &v->d) < 0 || !(v->d > 0.0) || v->d > (double) spec->max)
            return usage_error(cmd,
                               "invalid value '%s' for %s: expected a number above 0 and up to "
                               "%" PRIu64,
                               val, flag_name(spec), spec->max);
        return 0;
    }
    return 0;
}

int flags_parse(const char *cmd, int argc, char **argv, const flag_spec *specs, size_t nspecs,
                flag_cb on_flag, arg_cb on_arg, void *ctx)
{
    int only_args = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int rc;
        if (only_args || arg[0] != '-' || arg[1] == '\0') {
            if ((rc = on_arg(ctx, arg)) != 0)
                return rc;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_args = 1;
            continue;
        }
        const flag_spec *spec;
        const char *val = NULL;
        int attached = 0;
        if (arg[1] == '-') {
            const char *eq = strchr(arg, '=');
            size_t len = eq ? (size_t) (eq - arg) : strlen(arg);
            spec = find_long(specs, nspecs, arg, len);
            if (!spec)
                return usage_error(cmd, "unknown option '%.*s'", (int) len, arg);
            if (eq) {
                val = eq + 1;
                attached = 1;
            }
        } else {
            spec = find_short(specs, nspecs, arg[1]);
            if (!spec)
                return usage_error(cmd, "unknown option '-%c'", arg[1]);
            if (arg[2] != '\0') {
                val = arg + 2;
                attached = 1;
            }
        }
        const char *shown = arg[1] == '-' ? spec->long_name : spec->short_name;
        if (spec->kind == FLAG_BOOL) {
            if (attached)
                return usage_error(cmd, "option '%s' takes no value", shown);
        } else if (!attached) {
            if (i + 1 >= argc)
                return usage_error(cmd, "option '%s' needs a value", shown);
            val = argv[++i];
        }
        if (spec->kind != FLAG_BOOL && spec->kind != FLAG_STR && val[0] == '\0')
            return usage_error(cmd, "option '%s' needs a value", shown);
        flag_value v = {0};
        if ((rc = check_value(cmd, spec, val, &v)) != 0)
            return rc;
        if ((rc = on_flag(ctx, spec, &v)) != 0)
            return rc;
    }
    return 0;
}

static int is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

int flag_header(const char *cmd, const char *arg, ferry_header *out)
{
    const char *colon = strchr(arg, ':');
    if (!colon || colon == arg)
        return usage_error(cmd, "invalid header '%s': expected 'Name: value'", arg);
    for (const char *p = arg; p < colon; p++)
        if (!is_tchar((unsigned char) *p))
            return usage_error(cmd, "invalid header name in '%s'", arg);
    const char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t vlen = strlen(v);
    while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        vlen--;
    for (size_t i = 0; i < vlen; i++)
        if (((unsigned char) v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f)
            return usage_error(cmd, "invalid character in the value of header '%s'", arg);
    size_t nlen = (size_t) (colon - arg);
    static const char *const ferrys[] = {"content-length", "transfer-encoding"};
    for (size_t k = 0; k < sizeof ferrys / sizeof ferrys[0]; k++)
        if (strlen(ferrys[k]) == nlen && strncasecmp(arg, ferrys[k], nlen) == 0)
            return usage_error(cmd, "header '%.*s' is set by ferry", (int) nlen, arg);
    if (nlen == 10 && strncasecmp(arg, "connection", 10) == 0 &&
        !(vlen == 5 && strncasecmp(v, "close", 5) == 0) &&
        !(vlen == 10 && strncasecmp(v, "keep-alive", 10) == 0))
        return usage_error(cmd, "header 'Connection' may only be close or keep-alive");
    *out = (ferry_header){{arg, nlen}, {v, vlen}};
    return 0;
}

int flag_method(const char *cmd, const char *arg)
{
    if (!arg[0])
        return usage_error(cmd, "option '-X' needs a method");
    for (const char *p = arg; *p; p++)
        if (!is_tchar((unsigned char) *p))
            return usage_error(cmd, "invalid method '%s'", arg);
    return 0;
}

int flag_url(const char *cmd, const char *arg)
{
    const char *why;
    if (ferry_url_check(arg, &why) == 0)
        return 0;
    /* The URL as printable ASCII (\xNN for the rest, cut at 200 bytes), so
     * the error stays one readable line whatever bytes it holds. */
    char shown[4 * 200 + 4];
    size_t n = 0, i = 0;
    for (; arg[i] && i < 200; i++) {
        unsigned char c = (unsigned char) arg[i];
        if (c >= 0x20 && c < 0x7f)
            shown[n++] = (char) c;
        else
            n += (size_t) snprintf(shown + n, sizeof shown - n, "\\x%02x", c);
    }
    if (arg[i])
        n += (size_t) snprintf(shown + n, sizeof shown - n, "...");
    shown[n] = '\0';
    return usage_error(cmd, "invalid URL '%s': %s", shown, why);
}

int tls_flag(tls_flags *t, const flag_spec *spec, const flag_value *v)
{
    switch (spec->id) {
    case FLAG_TLS_CACERT: t->cacert = v->str; return 1;
    case FLAG_TLS_INSECURE: t->insecure = 1; return 1;
    case FLAG_TLS_CERT: t->cert = v->str; return 1;
    case FLAG_TLS_KEY: t->key = v->str; return 1;
    default: return 0;
    }
}

int tls_flags_check(const char *cmd, const tls_flags *t)
{
    if (t->key && !t->cert)
        return usage_error(cmd, "--key needs --cert");
    if (t->insecure)
        fprintf(stderr, "ferry %s: warning: --insecure: server certificates are not verified; "
                        "anyone on the path can read and change the traffic\n",
                cmd);
    return 0;
}

void tls_flags_agent(const tls_flags *t, ferry_agent_options *ao)
{
    ao->tls_ca_file = t->cacert;
    ao->tls_cert_file = t->cert;
    ao->tls_key_file = t->key; /* NULL: in the --cert file */
    ao->tls_insecure = t->insecure;
}

const char *agent_error_why(int err)
{
    /* set (and cleared first) only by the TLS part of ferry_agent_new */
    const char *d = ferry_tls_error_detail();
    return d[0] ? d : ferry_strerror(err);
}

int read_whole_file(const char *path, char **out, size_t *out_len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap)
            break;
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    int failed = !buf || ferror(f);
    int saved = buf ? EIO : ENOMEM;
    fclose(f);
    if (failed) {
        free(buf);
        errno = saved;
        return -1;
    }
    *out = buf;
    *out_len = len;
    return 0;
}
