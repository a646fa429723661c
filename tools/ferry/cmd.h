/* ferry — the command-line tool's subcommands. main.c dispatches on argv[1]
 * and hands each command its own argv (argv[0] is the command's name); a
 * command returns the process's exit status: 0 success, 1 failure at run
 * time, 2 bad usage (after one line on stderr). */
#ifndef FERRY_TOOL_CMD_H
#define FERRY_TOOL_CMD_H

/* `ferry serve`: the demo/test HTTP server and static file server (serve.c). */
int cmd_serve(int argc, char **argv);
/* `ferry fetch`: fetch URLs through one agent and summarise (fetch.c). */
int cmd_fetch(int argc, char **argv);
/* `ferry bench`: load-test one URL, closed or open model (bench.c). */
int cmd_bench(int argc, char **argv);

#endif /* FERRY_TOOL_CMD_H */
