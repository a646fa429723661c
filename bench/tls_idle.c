/* tls_idle — open N TLS keep-alive connections to 127.0.0.1:PORT and hold them idle:
 * idle_conns (bench/idle_conns.c) for HTTPS, which it cannot speak.
 *
 *   tls_idle PORT N HOLD_SECONDS
 *
 * Each connection does a full TLS handshake (certificates are not verified: the
 * server's memory is what is measured), sends one `GET / HTTP/1.1`, reads the whole
 * response (head plus Content-Length bytes; the session tickets a TLS 1.3 server
 * sends come before it), then stays open without sending anything more: an idle TLS
 * keep-alive connection as the server sees it. The set-up is sequential, with
 * blocking sockets: simple, and no burst of handshakes for the server to queue.
 *
 * bench/tls.sh reads the server's RSS before and after "ready" for the bytes per
 * idle TLS connection.
 *
 * Output on stdout, one line each, flushed at once so a script can poll it:
 *   ready OK N        all set-ups finished (OK of N succeeded)
 *   closed K N        at exit: K of the N had been closed by the server meanwhile
 *                     (readable: a close_notify, a FIN or a reset)
 * It exits when the hold time ends or on SIGTERM/SIGINT. Exit status 0 when all N
 * were set up, else 1. Set-up gives up after 60 s; every socket call has a 5 s
 * timeout. RLIMIT_NOFILE is raised to the hard limit first.
 */
#define _GNU_SOURCE /* sigaction, usleep, clock_gettime with -std=c17 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

enum { SETUP_SECONDS = 60, IO_SECONDS = 5, HEAD_MAX = 4096 };

static const char request[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: tls_idle\r\n\r\n";

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void) sig;
    stop = 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* One response: the head, then Content-Length bytes. 0, or -1. */
static int read_response(SSL *ssl)
{
    char buf[HEAD_MAX + 1];
    size_t have = 0;
    for (;;) {
        int r = SSL_read(ssl, buf + have, (int) (HEAD_MAX - have));
        if (r <= 0)
            return -1;
        have += (size_t) r;
        buf[have] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end) {
            size_t head = (size_t) (end + 4 - buf), len = 0;
            for (char *p = buf; p < end; p = strstr(p, "\r\n") + 2)
                if (strncasecmp(p, "Content-Length:", 15) == 0)
                    len = strtoul(p + 15, NULL, 10);
            if (have >= head + len)
                return 0;
        }
        if (have == HEAD_MAX)
            return -1;
    }
}

/* Connect, handshake, one request and its response. The SSL (owner: the caller) or NULL. */
static SSL *open_one(SSL_CTX *ctx, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return NULL;
    struct timeval tv = {.tv_sec = IO_SECONDS};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t) port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    SSL *ssl = NULL;
    if (connect(fd, (struct sockaddr *) &a, sizeof a) != 0 || !(ssl = SSL_new(ctx)) ||
        !SSL_set_fd(ssl, fd) || SSL_connect(ssl) != 1 ||
        SSL_write(ssl, request, (int) sizeof request - 1) != (int) sizeof request - 1 ||
        read_response(ssl) != 0) {
        ERR_clear_error();
        SSL_free(ssl);
        close(fd);
        return NULL;
    }
    return ssl;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: tls_idle PORT N HOLD_SECONDS\n");
        return 2;
    }
    int port = atoi(argv[1]), n = atoi(argv[2]);
    double hold = atof(argv[3]);
    if (port <= 0 || port > 65535 || n <= 0 || hold <= 0) {
        fprintf(stderr, "tls_idle: bad arguments\n");
        return 2;
    }
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: a signal ends a wait */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return 1;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL **conns = calloc((size_t) n, sizeof *conns);
    if (!conns)
        return 1;
    int ok = 0;
    double t0 = now_s();
    for (int i = 0; i < n && !stop && now_s() - t0 < SETUP_SECONDS; i++)
        if ((conns[i] = open_one(ctx, port)) != NULL)
            ok++;
    printf("ready %d %d\n", ok, n);
    fflush(stdout);

    double until = now_s() + hold;
    while (!stop && now_s() < until)
        usleep(50000);

    int closed = 0;
    for (int i = 0; i < n; i++) {
        if (!conns[i])
            continue;
        struct pollfd p = {.fd = SSL_get_fd(conns[i]), .events = POLLIN};
        if (poll(&p, 1, 0) == 1)
            closed++;
    }
    printf("closed %d %d\n", closed, ok);
    fflush(stdout);
    for (int i = 0; i < n; i++) {
        if (conns[i]) {
            close(SSL_get_fd(conns[i]));
            SSL_free(conns[i]);
        }
    }
    free(conns);
    SSL_CTX_free(ctx);
    return ok == n ? 0 : 1;
}
