/* flags.h — the command line of `ferry fetch` and `ferry bench`: a table of
 * flags, each with a short name (-n), a long name (--timeout) or both, and a
 * value kind that is checked before the command sees it.
 *
 * Spellings: `-n 5`, `-n5`, `--retries 3`, `--retries=3`; `--` ends the flags.
 * Everything else (including a lone `-`) is a positional argument. Numbers
 * are strict: digits only, no sign, no spaces, no junk after them. Bad usage
 * is one line on stderr, `ferry CMD: what is wrong (try 'ferry CMD --help')`,
 * and exit status 2.
 *
 * `ferry serve` keeps its own long-only parser (serve.c) but uses usage_error
 * and parse_uint from here, so bad usage reads the same in every command.
 */
#ifndef FERRY_TOOL_FLAGS_H
#define FERRY_TOOL_FLAGS_H

#include <stddef.h>
#include <stdint.h>

#include "ferry.h"

typedef enum flag_kind {
    FLAG_BOOL,    /* no value */
    FLAG_STR,     /* any string, not checked here */
    FLAG_UINT,    /* decimal integer in [min, max] */
    FLAG_SECONDS, /* decimal number of seconds, optional 's' suffix, > 0 if min is 1
                     (".5", "2", "2.5s"); value in ns, at most max seconds */
    FLAG_RATE,    /* decimal number > 0 (requests per second), at most max */
} flag_kind;

typedef struct flag_spec {
    const char *short_name; /* "-n", or NULL */
    const char *long_name;  /* "--timeout", or NULL */
    int id;
    flag_kind kind;
    uint64_t min, max; /* FLAG_UINT bounds; FLAG_SECONDS/FLAG_RATE: max (min 1: must be > 0) */
} flag_spec;

typedef struct flag_value {
    const char *str; /* the value as given (NULL for FLAG_BOOL) */
    uint64_t u;      /* FLAG_UINT; FLAG_SECONDS in nanoseconds */
    double d;        /* FLAG_RATE; FLAG_SECONDS in seconds */
} flag_value;

/* on_flag: one call per flag given, in order; on_arg: one per positional
 * argument. Each returns 0, or 2 after printing its one line (usage_error). */
typedef int (*flag_cb)(void *ctx, const flag_spec *spec, const flag_value *v);
typedef int (*arg_cb)(void *ctx, const char *arg);

/* Parse argv[1..argc) (argv[0] is the command's name). Returns 0, or 2 after
 * one line on stderr. */
int flags_parse(const char *cmd, int argc, char **argv, const flag_spec *specs, size_t nspecs,
                flag_cb on_flag, arg_cb on_arg, void *ctx);

/* The flag's name as the user would write it: its long name, else short. */
const char *flag_name(const flag_spec *spec);

/* Print `ferry CMD: <message> (try 'ferry CMD --help')` on stderr; returns 2. */
__attribute__((format(printf, 2, 3))) int usage_error(const char *cmd, const char *fmt, ...);

/* A whole string of decimal digits, at most max: 0 or -1. */
int parse_uint(const char *s, uint64_t max, uint64_t *out);
/* A plain decimal number ("12", "0.5", ".5", "3.", optional trailing 's' if
 * allow_s): 0 or -1. No sign, exponent, spaces, inf or nan. */
int parse_decimal(const char *s, int allow_s, double *out);

/* -H 'Name: value': the name a token, the value trimmed and free of control
 * characters; Content-Length and Transfer-Encoding are refused (the library
 * writes them), Connection may only be close or keep-alive. out points into
 * arg. 0, or 2 after one line on stderr. */
int flag_header(const char *cmd, const char *arg, ferry_header *out);
/* -X METHOD: a non-empty token. 0, or 2 after one line on stderr. */
int flag_method(const char *cmd, const char *arg);
/* A URL ferry_request takes (ferry_url_check): 0, or 2 after one line on
 * stderr naming the URL and the reason. */
int flag_url(const char *cmd, const char *arg);
/* --cacert FILE, -k/--insecure, --cert FILE, --key FILE: the TLS flags fetch
 * and bench share. Each command lists the four in its own table (so its man
 * page can be checked against it) with these ids, and hands them to tls_flag. */
enum { FLAG_TLS_CACERT = 1000, FLAG_TLS_INSECURE, FLAG_TLS_CERT, FLAG_TLS_KEY };
typedef struct tls_flags {
    const char *cacert, *cert, *key; /* argv strings */
    int insecure;
} tls_flags;
/* Store spec's value if it is a TLS flag: 1, else 0. */
int tls_flag(tls_flags *t, const flag_spec *spec, const flag_value *v);
/* After parsing: --key without --cert is bad usage (2, after one line); -k
 * prints its warning on stderr (once). 0 or 2. */
int tls_flags_check(const char *cmd, const tls_flags *t);
/* The agent options the flags set (their strings are read by ferry_agent_new). */
void tls_flags_agent(const tls_flags *t, ferry_agent_options *ao);
/* Why ferry_agent_new failed with err, for one line (call it right after,
 * on the same thread): the TLS detail (which file, and OpenSSL's reason)
 * when there is one, else the code's message. */
const char *agent_error_why(int err);

/* The whole of a file, malloc'd (the caller frees it): 0, or -1 with errno. */
int read_whole_file(const char *path, char **out, size_t *out_len);

#endif /* FERRY_TOOL_FLAGS_H */
