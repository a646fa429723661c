/* idle_conns — open N keep-alive connections to 127.0.0.1:PORT and hold them idle.
 *
 *   idle_conns PORT N HOLD_SECONDS [req|lazy|silent]
 *
 * With `req` (the default) each connection sends one `GET / HTTP/1.1` and reads
 * the whole response (head plus Content-Length bytes), then stays open without
 * sending anything more: an idle keep-alive connection as a server sees it.
 * When the server closes one, the client closes its end at once.
 * `lazy` is the same, except that a connection the server closed is left open
 * until the client exits, as a pooled client that notices only on reuse would.
 * With `silent` the connections are opened and never send a byte.
 *
 * bench/server.sh uses it for two figures: the server's memory per idle
 * connection (RSS before and after "ready") and the time a graceful close takes
 * with idle connections open (the client reports when it saw them close).
 *
 * Output on stdout, one line each, flushed at once so a script can poll it:
 *   ready OK N                        all set-ups finished (OK of N succeeded)
 *   closed K N FIRST_US LAST_US       at exit: K of the N were closed by the
 *                                     server; FIRST/LAST are CLOCK_REALTIME
 *                                     microseconds (0 when none closed)
 * It exits when the hold time ends, on SIGTERM/SIGINT, or (except `lazy`) as
 * soon as the server has closed every connection. Exit status 0 when all N were set up, else 1.
 *
 * Bounded in time: set-up gives up after 20 s, the hold after HOLD_SECONDS.
 * Only loopback. RLIMIT_NOFILE is raised to the hard limit first. At most
 * MAX_PENDING connections are in their set-up at once, so a burst of SYNs does
 * not overflow the server's accept queue (that would cost 1 s SYN retries and
 * measure the kernel, not the server). */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { MAX_PENDING = 256, HEAD_MAX = 1024, SETUP_SECONDS = 20 };

enum state { ST_FREE, ST_CONNECTING, ST_READING, ST_IDLE, ST_CLOSED, ST_FAILED };

typedef struct conn {
    int fd;
    enum state st;
    size_t have;       /* bytes of the response read so far */
    size_t want;       /* head + body length once the head is parsed, else 0 */
    char head[HEAD_MAX];
} conn;

static const char request[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: idle_conns\r\n\r\n";

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int64_t now_us(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Start a non-blocking connect; the socket is watched for writability. */
static int start_connect(int ep, conn *c, const struct sockaddr_in *sa)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (const struct sockaddr *)sa, sizeof *sa) < 0 && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    c->st = ST_CONNECTING;
    return 0;
}

/* Once the head is complete, work out how many bytes the whole response has.
 * Only Content-Length framing is understood: the servers measured answer a
 * fixed 12-byte body. A head without it counts as complete by itself. */
static void parse_head(conn *c)
{
    char *end = memmem(c->head, c->have, "\r\n\r\n", 4);
    if (!end)
        return;
    size_t head_len = (size_t)(end - c->head) + 4;
    size_t body = 0;
    for (char *p = c->head; p < end; p++) {
        if ((p == c->head || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
            body = strtoul(p + 15, NULL, 10);
            break;
        }
    }
    c->want = head_len + body;
}

/* Returns 1 when the response is complete, 0 when more is needed, -1 on error/EOF. */
static int read_response(conn *c)
{
    for (;;) {
        char scratch[4096];
        char *dst = c->want == 0 && c->have < HEAD_MAX ? c->head + c->have : scratch;
        size_t room = dst == scratch ? sizeof scratch : HEAD_MAX - c->have;
        ssize_t n = read(c->fd, dst, room);
        if (n < 0)
            return errno == EAGAIN ? 0 : -1;
        if (n == 0)
            return -1;
        c->have += (size_t)n;
        if (c->want == 0) {
            parse_head(c);
            if (c->want == 0 && c->have >= HEAD_MAX)
                return -1; /* head larger than we care for */
        }
        if (c->want != 0 && c->have >= c->want)
            return 1;
    }
}

static void fail(int ep, conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->st = ST_FAILED;
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: idle_conns PORT N HOLD_SECONDS [req|lazy|silent]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    long n = atol(argv[2]);
    double hold = atof(argv[3]);
    const char *mode = argc == 5 ? argv[4] : "req";
    int silent = strcmp(mode, "silent") == 0, lazy = strcmp(mode, "lazy") == 0;
    if (port <= 0 || port > 65535 || n <= 0 || hold < 0 ||
        (!silent && !lazy && strcmp(mode, "req") != 0)) {
        fprintf(stderr, "idle_conns: bad arguments\n");
        return 2;
    }
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa_sig = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa_sig, NULL);
    sigaction(SIGINT, &sa_sig, NULL);

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    conn *conns = calloc((size_t)n, sizeof *conns);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (!conns || ep < 0) {
        perror("idle_conns");
        return 1;
    }

    /* Set-up phase: keep up to MAX_PENDING connections connecting or reading. */
    long next = 0, pending = 0, ok = 0, failed = 0;
    int64_t deadline = now_us(CLOCK_MONOTONIC) + (int64_t)SETUP_SECONDS * 1000000;
    struct epoll_event evs[256];
    while (!stop && ok + failed < n && now_us(CLOCK_MONOTONIC) < deadline) {
        while (pending < MAX_PENDING && next < n) {
            conn *c = &conns[next++];
            if (start_connect(ep, c, &sa) < 0) {
                c->st = ST_FAILED;
                failed++;
            } else {
                pending++;
            }
        }
        int k = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < k; i++) {
            conn *c = evs[i].data.ptr;
            int done = 0;
            if (c->st == ST_CONNECTING) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err != 0 || (evs[i].events & (EPOLLERR | EPOLLHUP))) {
                    done = -1;
                } else if (silent) {
                    done = 1;
                } else if (write(c->fd, request, sizeof request - 1) != (ssize_t)(sizeof request - 1)) {
                    done = -1; /* a fresh socket takes 80 bytes whole, or is broken */
                } else {
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                    c->st = ST_READING;
                }
            } else if (c->st == ST_READING) {
                done = read_response(c);
            }
            if (done == 0)
                continue;
            pending--;
            if (done < 0) {
                fail(ep, c);
                failed++;
                continue;
            }
            /* Idle from here on: watch only for the server closing it. */
            struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            c->st = ST_IDLE;
            ok++;
        }
    }
    printf("ready %ld %ld\n", ok, n);
    fflush(stdout);

    /* Hold phase: note when the server closes connections; leave when all are gone. */
    long closed = 0;
    int64_t first = 0, last = 0;
    int64_t end = now_us(CLOCK_MONOTONIC) + (int64_t)(hold * 1e6);
    while (!stop && (closed < ok || lazy)) {
        int64_t left = end - now_us(CLOCK_MONOTONIC);
        if (left <= 0)
            break;
        int k = epoll_wait(ep, evs, 256, (int)(left / 1000) + 1);
        for (int i = 0; i < k; i++) {
            conn *c = evs[i].data.ptr;
            if (c->st != ST_IDLE)
                continue;
            char buf[512];
            ssize_t r = read(c->fd, buf, sizeof buf);
            if (r > 0 || (r < 0 && errno == EAGAIN))
                continue; /* unexpected bytes (e.g. a 408): keep waiting for the close */
            int64_t t = now_us(CLOCK_REALTIME);
            if (closed == 0)
                first = t;
            last = t;
            closed++;
            /* Close at once, as a client watching its idle connections does
             * on EOF: a server that lingers for our FIN after its own is then
             * not kept waiting. close() also takes the fd out of the epoll
             * set. A lazy client only stops watching it. */
            if (lazy) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            } else {
                close(c->fd);
                c->fd = -1;
            }
            c->st = ST_CLOSED;
        }
    }
    printf("closed %ld %ld %lld %lld\n", closed, ok, (long long)first, (long long)last);
    fflush(stdout);
    for (long i = 0; i < n; i++)
        if (conns[i].fd > 0)
            close(conns[i].fd);
    free(conns);
    close(ep);
    return ok == n ? 0 : 1;
}
