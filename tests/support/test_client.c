/* test_client.c — blocking HTTP/1.1 test clients for the server tests.
 *
 * The test's main thread is the client: plain sockets, poll() for time
 * limits, and ferry's own response parser (src/parse.h) to read exactly one
 * response at a time. Bytes that arrive beyond the current response (the next
 * pipelined one) stay in a per-fd buffer for the next read, so every socket
 * must be closed with tc_close() (tc_connect also clears a reused fd's buffer).
 * Nothing here runs on the loop thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "support/server_harness.h"

enum {
    TC_MAX_FD = 65536,
    TC_MAX_FIELDS = 256,
    TC_DEFAULT_TIMEOUT_MS = 5000,
    TC_READ_PIECE = 64 * 1024,
};

/* Bytes received on an fd but not yet consumed. */
typedef struct tcbuf {
    char *p;
    size_t len, cap;
} tcbuf;

static tcbuf *bufs[TC_MAX_FD];

/* ---- utilities ------------------------------------------------------------- */

double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

void sleep_ms(double ms)
{
    if (ms <= 0) return;
    long long ns = (long long) (ms * 1e6);
    struct timespec ts = {(time_t) (ns / 1000000000LL), (long) (ns % 1000000000LL)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void raise_nofile_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory stream's own fd */
}

double process_cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (double) (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

/* ---- the per-fd buffer ----------------------------------------------------- */

/* The fd's buffer, created on first use. */
static tcbuf *buf_of(int fd)
{
    assert_true(fd >= 0 && fd < TC_MAX_FD);
    if (!bufs[fd]) {
        bufs[fd] = calloc(1, sizeof(tcbuf));
        assert_non_null(bufs[fd]);
    }
    return bufs[fd];
}

/* Forget what was buffered for fd (a closed fd's number gets reused). */
static void buf_drop(int fd)
{
    if (fd >= 0 && fd < TC_MAX_FD && bufs[fd]) {
        free(bufs[fd]->p);
        free(bufs[fd]);
        bufs[fd] = NULL;
    }
}

/* Make room for at least `more` bytes past len (geometric growth: 10 MiB bodies). */
static void buf_reserve(tcbuf *b, size_t more)
{
    if (b->cap - b->len >= more) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < more)
        cap *= 2;
    char *p = realloc(b->p, cap);
    assert_non_null(p);
    b->p = p;
    b->cap = cap;
}

/* Remove the first n bytes (a response was consumed). */
static void buf_consume(tcbuf *b, size_t n)
{
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

/* Read once into the buffer before the deadline: >0 bytes, 0 FIN, TC_E* otherwise. */
static int buf_fill(int fd, tcbuf *b, double deadline, size_t want)
{
    double left = deadline - now_ms();
    if (left <= 0) return TC_ETIMEOUT;
    struct pollfd pfd = {fd, POLLIN, 0};
    int pr = poll(&pfd, 1, (int) left + 1);
    if (pr == 0) return TC_ETIMEOUT;
    if (pr < 0) return errno == EINTR ? buf_fill(fd, b, deadline, want) : TC_ERESET;
    buf_reserve(b, want > TC_READ_PIECE ? want : TC_READ_PIECE);
    ssize_t n = recv(fd, b->p + b->len, b->cap - b->len, MSG_DONTWAIT);
    if (n > 0) {
        b->len += (size_t) n;
        return (int) (n > 0x7fffffff ? 0x7fffffff : n);
    }
    if (n == 0) return 0;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return buf_fill(fd, b, deadline, want);
    return errno == ETIMEDOUT ? TC_ETIMEOUT : TC_ERESET;
}

/* ---- connecting and sending ------------------------------------------------- */

int tc_try_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t) port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    buf_drop(fd);
    return fd;
}

int tc_connect(int port)
{
    int fd = tc_try_connect(port);
    if (fd < 0) fail_msg("tc_connect(127.0.0.1:%d): %s", port, strerror(-fd));
    return fd;
}

ssize_t tc_try_send_n(int fd, const void *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t w = send(fd, (const char *) p + off, n - off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return off ? (ssize_t) off : -errno;
        }
        off += (size_t) w;
    }
    return (ssize_t) off;
}

void tc_send_n(int fd, const void *p, size_t n)
{
    ssize_t w = tc_try_send_n(fd, p, n);
    if (w < 0 || (size_t) w != n)
        fail_msg("tc_send: %zd of %zu bytes: %s", w, n, w < 0 ? strerror((int) -w) : "short");
}

void tc_send(int fd, const char *s)
{
    tc_send_n(fd, s, strlen(s));
}

void tc_close(int fd)
{
    buf_drop(fd);
    close(fd);
}

void tc_reset(int fd)
{
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    tc_close(fd);
}

size_t tc_buffered(int fd)
{
    return fd >= 0 && fd < TC_MAX_FD && bufs[fd] ? bufs[fd]->len : 0;
}

/* ---- reading one response ---------------------------------------------------- */

/* A NUL-terminated copy of n bytes. */
static char *dupn(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    if (n) memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

void tc_response_free(tc_response *r)
{
    if (!r) return;
    free(r->head);
    for (size_t i = 0; i < r->nfields; i++) {
        free(r->fields[i].name);
        free(r->fields[i].value);
    }
    free(r->fields);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* Copy the parsed head out of the buffer before it moves. */
static void copy_head(tc_response *r, const parse_head *h, const char *raw, size_t n)
{
    r->status = h->status;
    r->version_minor = h->version_minor;
    r->flags = h->flags;
    r->head = dupn(raw, n);
    r->head_len = n;
    r->nfields = h->nfields;
    r->fields = calloc(h->nfields ? h->nfields : 1, sizeof(tc_field));
    assert_non_null(r->fields);
    for (uint32_t i = 0; i < h->nfields; i++) {
        r->fields[i].name = dupn(h->fields[i].name, h->fields[i].name_len);
        r->fields[i].value = dupn(h->fields[i].value, h->fields[i].value_len);
    }
    r->chunked = (h->flags & PARSE_F_CHUNKED) != 0;
    r->has_content_length = (h->flags & PARSE_F_CONTENT_LENGTH) != 0;
    r->until_close = (h->flags & PARSE_F_UNTIL_CLOSE) != 0;
}

/* Map a buf_fill result inside a body to the caller's outcome. */
static int body_error(int rc)
{
    return rc == 0 ? TC_ETRUNC : rc;
}

int tc_read_response_ex(int fd, tc_response *r, unsigned req_flags, int timeout_ms)
{
    memset(r, 0, sizeof(*r));
    tcbuf *b = buf_of(fd);
    double deadline = now_ms() + timeout_ms;
    parse_field *fields = malloc(TC_MAX_FIELDS * sizeof(parse_field));
    assert_non_null(fields);
    parse_head h;
    parse_head_init(&h, fields);
    parse_limits lim = {1u << 20, TC_MAX_FIELDS, 1u << 16, false};

    int n = 0;
    for (;;) {
        if (b->len) {
            n = parse_response(&h, b->p, b->len, &lim, req_flags);
            if (n < 0) {
                free(fields);
                return TC_EPARSE;
            }
            if (n > 0) break;
        }
        int rc = buf_fill(fd, b, deadline, 0);
        if (rc <= 0) {
            free(fields);
            return rc == 0 ? (b->len ? TC_ETRUNC : TC_ECLOSED) : rc;
        }
    }
    copy_head(r, &h, b->p, (size_t) n);
    free(fields);
    size_t head = (size_t) n;

    if (r->flags & (PARSE_F_NO_BODY | PARSE_F_UPGRADE)) {
        buf_consume(b, head);
        r->body = dupn("", 0);
        return 0;
    }
    if (r->has_content_length) {
        uint64_t cl = h.content_length;
        while (b->len - head < cl) {
            int rc = buf_fill(fd, b, deadline, (size_t) (cl - (b->len - head)));
            if (rc <= 0) return body_error(rc);
        }
        r->body = dupn(b->p + head, (size_t) cl);
        r->body_len = (size_t) cl;
        buf_consume(b, head + (size_t) cl);
        return 0;
    }
    if (r->chunked) {
        buf_consume(b, head);
        parse_chunked_state cs;
        parse_chunked_init(&cs, 16384, false);
        size_t blen = 0, bcap = 4096;
        char *body = malloc(bcap);
        assert_non_null(body);
        for (;;) {
            size_t data_len = 0, consumed = 0;
            int rc = b->len ? parse_chunked(&cs, b->p, b->len, &data_len, &consumed) : 0;
            if (rc < 0) {
                free(body);
                return TC_EPARSE;
            }
            if (data_len) {
                while (bcap - blen < data_len + 1)
                    bcap *= 2;
                body = realloc(body, bcap);
                assert_non_null(body);
                memcpy(body + blen, b->p, data_len);
                blen += data_len;
            }
            if (b->len) buf_consume(b, consumed);
            if (rc == 1) break;
            int fr = buf_fill(fd, b, deadline, 0);
            if (fr <= 0) {
                free(body);
                return body_error(fr);
            }
        }
        body = realloc(body, blen + 1);
        body[blen] = '\0';
        r->body = body;
        r->body_len = blen;
        return 0;
    }
    /* Until close (an HTTP/1.0 client, or no framing at all). */
    for (;;) {
        int rc = buf_fill(fd, b, deadline, 0);
        if (rc == 0) break;
        if (rc < 0) return rc;
    }
    r->body = dupn(b->p + head, b->len - head);
    r->body_len = b->len - head;
    buf_consume(b, b->len);
    return 0;
}

int tc_read_response(int fd, tc_response *r)
{
    return tc_read_response_ex(fd, r, 0, TC_DEFAULT_TIMEOUT_MS);
}

int tc_get(int fd, const char *target, tc_response *r)
{
    char req[2048];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", target);
    tc_send(fd, req);
    return tc_read_response(fd, r);
}

const char *tc_header(const tc_response *r, const char *name)
{
    for (size_t i = 0; i < r->nfields; i++)
        if (strcasecmp(r->fields[i].name, name) == 0) return r->fields[i].value;
    return NULL;
}

size_t tc_header_count(const tc_response *r, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nfields; i++)
        n += strcasecmp(r->fields[i].name, name) == 0;
    return n;
}

bool tc_header_has_token(const tc_response *r, const char *name, const char *token)
{
    size_t tl = strlen(token);
    for (size_t i = 0; i < r->nfields; i++) {
        if (strcasecmp(r->fields[i].name, name) != 0) continue;
        const char *p = r->fields[i].value;
        while (*p) {
            while (*p == ' ' || *p == '\t' || *p == ',')
                p++;
            const char *e = p;
            while (*e && *e != ',')
                e++;
            const char *t = e;
            while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
                t--;
            if ((size_t) (t - p) == tl && strncasecmp(p, token, tl) == 0) return true;
            p = e;
        }
    }
    return false;
}

tc_eof tc_expect_eof(int fd, int timeout_ms)
{
    tcbuf *b = buf_of(fd);
    if (b->len) return TC_DATA;
    double deadline = now_ms() + timeout_ms;
    int rc = buf_fill(fd, b, deadline, 0);
    if (rc > 0) return TC_DATA;
    if (rc == 0) return TC_FIN;
    return rc == TC_ETIMEOUT ? TC_OPEN : TC_RST;
}

const char *tc_result_name(int rc)
{
    switch (rc) {
    case 0: return "OK";
    case TC_ECLOSED: return "TC_ECLOSED (FIN before a response)";
    case TC_ERESET: return "TC_ERESET (connection reset)";
    case TC_ETIMEOUT: return "TC_ETIMEOUT (no complete response in time)";
    case TC_EPARSE: return "TC_EPARSE (not an HTTP response)";
    case TC_ETRUNC: return "TC_ETRUNC (FIN inside a response)";
    default: return "unknown";
    }
}

const char *tc_eof_name(tc_eof e)
{
    switch (e) {
    case TC_FIN: return "TC_FIN";
    case TC_RST: return "TC_RST";
    case TC_OPEN: return "TC_OPEN (still open)";
    case TC_DATA: return "TC_DATA (bytes arrived)";
    default: return "unknown";
    }
}
