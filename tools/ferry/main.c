/* ferry — the command-line tool. It links the library like any user would and
 * uses only include/ferry.h (and OpenSSL's version string, which `ferry
 * version` prints with libuv's). main() only dispatches: each subcommand lives in
 * its own file and is declared in cmd.h: serve, fetch and bench. */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "cmd.h"
#include "restart.h"
#include "ferry.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: ferry <command> [options]\n"
                 "\n"
                 "commands:\n"
                 "  serve      run an HTTP server: a demo handler or static files\n"
                 "  fetch      fetch URLs through one connection pool and summarise\n"
                 "  bench      load-test a URL: throughput and latency percentiles\n"
                 "  version    print the versions of ferry, libuv and OpenSSL\n"
                 "  help       show this help\n");
}

int main(int argc, char **argv)
{
    restart_init(argc, argv); /* the path and argv a restart runs again */
    if (argc < 2) {
        fprintf(stderr, "ferry: missing command (try 'ferry help')\n");
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "fetch") == 0)
        return cmd_fetch(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0)
        return cmd_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        if (argc > 2) {
            fprintf(stderr, "ferry: version: unexpected argument '%s'\n", argv[2]);
            return 2;
        }
        /* the libraries actually linked, which may differ from the headers built against */
        printf("ferry %s\nlibuv %s\n%s\n", ferry_version_string(), uv_version_string(),
               OpenSSL_version(OPENSSL_VERSION));
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "ferry: unknown command '%s' (try 'ferry help')\n", cmd);
    return 2;
}
