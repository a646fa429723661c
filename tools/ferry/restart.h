/* restart.h — how `ferry serve` gets its listening sockets from someone else
 * and hands them on: systemd socket activation (LISTEN_FDS), and the
 * zero-downtime restart on SIGUSR2 (docs/deploy.md).
 *
 * The restart: the running process starts a new copy of its own binary with
 * the same arguments (restart_spawn), handing it the listening sockets as
 * inherited fds 3, 4, ... (FERRY_LISTEN_FDS=N, the way LISTEN_FDS does), the
 * TLS session ticket keys through a pipe (FERRY_TICKET_KEYS_FD) and a pipe to
 * report on (FERRY_READY_FD). The new process adopts the sockets, starts
 * accepting, writes the pid file and reports (restart_ready); only then does
 * the old one drain and close. If the new one fails, the old one keeps
 * serving and says why. Private to the tool. */
#ifndef FERRY_TOOL_RESTART_H
#define FERRY_TOOL_RESTART_H

#include <stddef.h>
#include <stdint.h>

#include "ferry.h"

/* Call first thing in main(): remembers the binary's path (a new build put
 * at the same path is what a restart runs) and the arguments. */
void restart_init(int argc, char **argv);

/* The listening sockets this process was given, from fd 3 on: a restart's
 * (FERRY_LISTEN_FDS) or systemd's (LISTEN_FDS, when LISTEN_PID is ours).
 * Returns their count (0: none) and sets *source to "restart" or "systemd".
 * The variables are unset, so nothing this process starts sees them. */
int restart_inherited_fds(const char **source);

/* The ticket keys a restart handed over, imported into k: 1 if there were
 * some, 0 if not, a negative code if they would not import. */
int restart_inherited_ticket_keys(ferry_tls_ticket_keys *k);

/* This process accepts now: write pid_file (if any; atomically, by rename)
 * and tell the process that started it (if it was a restart). */
void restart_ready(const char *pid_file);

/* On exit: remove pid_file if it still names this process (a new one that
 * took over has written its own). */
void restart_forget_pid_file(const char *pid_file);

/* Start the new process and wait (on loop) for its report: done(0, NULL)
 * once it accepts; done(< 0, why) if it exited, closed the pipe without a
 * report, or did not report within timeout_ms (then it is killed). fds are
 * the listening sockets (still ours); keys, if not NULL, go along. Returns
 * 0, or a negative code if nothing could be started (done not called). */
typedef void (*restart_done_cb)(int status, const char *why, void *data);
int restart_spawn(uv_loop_t *loop, const int *fds, int nfds, ferry_tls_ticket_keys *keys,
                  uint64_t timeout_ms, restart_done_cb done, void *data);

#endif /* FERRY_TOOL_RESTART_H */
