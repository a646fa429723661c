/* parse_bench.c — ferry's parser against picohttpparser, side by side.
 *
 * Four realistic messages: a tiny GET, a ~700-byte browser GET with 15 header
 * fields, a chunked POST (head plus body, ~1 KB) and a response head with 10
 * fields. For each message the two parsers run interleaved: several rounds
 * (7; N iterations sized so a round of one parser takes ~75 ms), each timing N
 * iterations of ferry and N of pico in 16 alternating slices, so noise from
 * elsewhere on the machine hits both alike. The median round per parser is
 * reported as ns per message and MB/s of message bytes, with the spread
 * (max - min) / median of the rounds. The chunked POST is copied into a scratch buffer every
 * iteration, for both parsers alike, because both decoders work in place.
 *
 * picohttpparser comes from Debian's libh2o, which exports phr_*; the few
 * declarations needed are below, so no h2o header is included. Both parsers
 * are checked once up front to accept every message and to agree on head
 * length, header count and body length; the program exits 1 if not.
 *
 * Usage: parse_bench [--rounds N] [--quick]
 * The last lines are one ratio per message: ferry time / pico time (lower is
 * better for ferry).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "http1/parse.h"

/* ---- picohttpparser, as exported by libh2o --------------------------------------
 * Layouts from picohttpparser.h. The decoder struct is declared with the two
 * counters newer releases append: older ones never touch them, and zeroing the
 * larger struct is always safe. */
struct phr_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

struct phr_chunked_decoder {
    size_t bytes_left_in_chunk;
    char consume_trailer;
    char _hex_count;
    char _state;
    uint64_t _total_read;
    uint64_t _total_overhead;
};

int phr_parse_request(const char *buf, size_t len, const char **method, size_t *method_len,
                      const char **path, size_t *path_len, int *minor_version,
                      struct phr_header *headers, size_t *num_headers, size_t last_len);
int phr_parse_response(const char *buf, size_t len, int *minor_version, int *status,
                       const char **msg, size_t *msg_len, struct phr_header *headers,
                       size_t *num_headers, size_t last_len);
ssize_t phr_decode_chunked(struct phr_chunked_decoder *decoder, char *buf, size_t *bufsz);

/* ---- messages ------------------------------------------------------------------- */

#define MAX_FIELDS 100

static const char tiny_get[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

static const char browser_get[] =
    "GET /search?q=wireless+headphones&page=2 HTTP/1.1\r\n"
    "Host: shop.example.com\r\n"
    "Connection: keep-alive\r\n"
    "sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n"
    "sec-ch-ua-mobile: ?0\r\n"
    "sec-ch-ua-platform: \"Windows\"\r\n"
    "Upgrade-Insecure-Requests: 1\r\n"
    "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
    "Gecko) Chrome/124.0.0.0 Safari/537.36\r\n"
    "Accept: "
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"
    "Sec-Fetch-Site: same-origin\r\n"
    "Sec-Fetch-Mode: navigate\r\n"
    "Sec-Fetch-Dest: document\r\n"
    "Referer: https://shop.example.com/\r\n"
    "Accept-Encoding: gzip, deflate, br, zstd\r\n"
    "Accept-Language: en-US,en;q=0.9,de;q=0.8\r\n"
    "Cookie: sid=8f2a1c9e4b7d0a6f; _ga=GA1.2.1234567890.1700000000\r\n"
    "\r\n";

static const char response_head[] =
    "HTTP/1.1 200 OK\r\n"
    "Date: Tue, 14 May 2024 09:21:07 GMT\r\n"
    "Server: nginx/1.24.0\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "Content-Length: 48213\r\n"
    "Connection: keep-alive\r\n"
    "Keep-Alive: timeout=5\r\n"
    "Cache-Control: private, max-age=0, must-revalidate\r\n"
    "ETag: \"bc45-6a1b2c3d4e5f\"\r\n"
    "Vary: Accept-Encoding\r\n"
    "Set-Cookie: session_id=8f2a1c9e4b7d0a6f; Path=/; HttpOnly; Secure; SameSite=Lax\r\n"
    "\r\n";

static const char post_head[] = "POST /api/v1/events HTTP/1.1\r\n"
                                "Host: api.example.com\r\n"
                                "User-Agent: curl/8.5.0\r\n"
                                "Accept: */*\r\n"
                                "Content-Type: application/json\r\n"
                                "Transfer-Encoding: chunked\r\n"
                                "\r\n";

enum kind { REQUEST, RESPONSE, CHUNKED_REQUEST };

typedef struct message {
    const char *name;
    enum kind kind;
    const char *buf;
    size_t len;
    size_t nfields;   /* header fields it holds */
    size_t body_len;  /* decoded body bytes (chunked only) */
    size_t body_wire; /* body bytes on the wire after the head (chunked only) */
} message;

/* The chunked POST: the head above, then four chunks of JSON-ish data. */
static char post_buf[2048];

static size_t build_post(size_t *body_len, size_t *body_wire)
{
    static const size_t sizes[] = {200, 256, 300, 100};
    static const char filler[] = "{\"event\":\"page_view\",\"ts\":1715678467,\"user\":\"u-48213\","
                                 "\"path\":\"/products/search\",\"ref\":\"/\"},";
    size_t n = strlen(post_head);
    memcpy(post_buf, post_head, n);
    *body_len = 0;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        n += (size_t) snprintf(post_buf + n, sizeof(post_buf) - n, "%zx\r\n", sizes[i]);
        for (size_t k = 0; k < sizes[i]; k++)
            post_buf[n++] = filler[(*body_len + k) % (sizeof(filler) - 1)];
        *body_len += sizes[i];
        post_buf[n++] = '\r';
        post_buf[n++] = '\n';
    }
    memcpy(post_buf + n, "0\r\n\r\n", 5);
    *body_wire = n + 5 - strlen(post_head);
    return n + 5;
}

/* ---- one message, once, per parser ------------------------------------------------
 * Each returns a checksum (head length + field count + decoded body bytes), or
 * -1 when the parser did not accept the message; *seen says what it found. */

typedef struct seen {
    size_t head, nfields, body;
} seen;

static char scratch[2048];
static const parse_limits ferry_limits = PARSE_LIMITS_DEFAULT;

static long ferry_once(const message *m, seen *s)
{
    parse_field fields[MAX_FIELDS];
    parse_head h;
    const char *buf = m->buf;
    int r;
    parse_head_init(&h, fields);
    if (m->kind == RESPONSE) {
        r = parse_response(&h, buf, m->len, &ferry_limits, 0);
    } else {
        if (m->kind == CHUNKED_REQUEST) {
            memcpy(scratch, m->buf, m->len);
            buf = scratch;
        }
        r = parse_request(&h, buf, m->len, &ferry_limits);
    }
    if (r <= 0) return -1;
    s->head = (size_t) r;
    s->nfields = h.nfields;
    s->body = 0;
    if (m->kind == CHUNKED_REQUEST) {
        parse_chunked_state c;
        size_t consumed, rest = m->len - (size_t) r;
        if (!(h.flags & PARSE_F_CHUNKED)) return -1;
        parse_chunked_init(&c, 16384, false);
        if (parse_chunked(&c, scratch + r, rest, &s->body, &consumed) != 1 || consumed != rest)
            return -1;
    }
    return (long) (s->head + s->nfields + s->body);
}

static long pico_once(const message *m, seen *s)
{
    struct phr_header headers[MAX_FIELDS];
    size_t nh = MAX_FIELDS;
    const char *buf = m->buf, *method, *path, *msg;
    size_t method_len, path_len, msg_len;
    int minor, status, r;
    if (m->kind == RESPONSE) {
        r = phr_parse_response(buf, m->len, &minor, &status, &msg, &msg_len, headers, &nh, 0);
    } else {
        if (m->kind == CHUNKED_REQUEST) {
            memcpy(scratch, m->buf, m->len);
            buf = scratch;
        }
        r = phr_parse_request(buf, m->len, &method, &method_len, &path, &path_len, &minor, headers,
                              &nh, 0);
    }
    if (r <= 0) return -1;
    s->head = (size_t) r;
    s->nfields = nh;
    s->body = 0;
    if (m->kind == CHUNKED_REQUEST) {
        struct phr_chunked_decoder dec;
        memset(&dec, 0, sizeof(dec));
        dec.consume_trailer = 1;
        s->body = m->len - (size_t) r;
        if (phr_decode_chunked(&dec, scratch + r, &s->body) != 0) /* 0: done, none left over */
            return -1;
    }
    return (long) (s->head + s->nfields + s->body);
}

/* ---- timing --------------------------------------------------------------------- */

typedef long (*parse_fn)(const message *, seen *);

static volatile long sink;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e9 + (double) ts.tv_nsec;
}

/* ns per message over n iterations. */
static double run(parse_fn fn, const message *m, long n)
{
    seen s;
    long sum = 0;
    double t0 = now_ns();
    for (long i = 0; i < n; i++)
        sum += fn(m, &s);
    double t1 = now_ns();
    sink += sum;
    return (t1 - t0) / (double) n;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t) n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Iterations so that the slower parser takes about target_ns per round. */
static long calibrate(const message *m, double target_ns)
{
    long n = 1000;
    for (;;) {
        double t = run(ferry_once, m, n) * (double) n, u = run(pico_once, m, n) * (double) n;
        double slow = t > u ? t : u;
        if (slow >= 10e6 || n >= (1L << 30)) return (long) ((double) n * target_ns / slow) + 1;
        n *= 4;
    }
}

/* Both parsers must accept the message and agree on what it holds. */
static int verify(const message *m)
{
    seen f = {0, 0, 0}, p = {0, 0, 0};
    if (ferry_once(m, &f) < 0 || pico_once(m, &p) < 0) {
        fprintf(stderr, "parse_bench: %s: %s rejected the message\n", m->name,
                ferry_once(m, &f) < 0 ? "ferry" : "picohttpparser");
        return -1;
    }
    size_t want_head = m->kind == CHUNKED_REQUEST ? m->len - m->body_wire : m->len;
    if (f.head != p.head || f.head != want_head || f.nfields != p.nfields ||
        f.nfields != m->nfields || f.body != p.body || f.body != m->body_len) {
        fprintf(stderr,
                "parse_bench: %s: parsers disagree: head %zu/%zu bytes, %zu/%zu fields, "
                "body %zu/%zu bytes (ferry/pico; expected %zu, %zu, %zu)\n",
                m->name, f.head, p.head, f.nfields, p.nfields, f.body, p.body, want_head,
                m->nfields, m->body_len);
        return -1;
    }
    return 0;
}

#define MAX_ROUNDS 101
#define SLICES     16

int main(int argc, char **argv)
{
    int rounds = 7;
    double target_ns = 75e6;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            rounds = 3;
            target_ns = 15e6;
        } else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > MAX_ROUNDS) {
                fprintf(stderr, "parse_bench: --rounds takes 1..%d\n", MAX_ROUNDS);
                return 2;
            }
            rounds = (int) v;
        } else {
            fprintf(stderr, "usage: parse_bench [--rounds N] [--quick]\n");
            return 2;
        }
    }

    size_t post_body, post_wire;
    size_t post_len = build_post(&post_body, &post_wire);
    const message msgs[] = {
        {"tiny-get", REQUEST, tiny_get, sizeof(tiny_get) - 1, 1, 0, 0},
        {"browser-get", REQUEST, browser_get, sizeof(browser_get) - 1, 15, 0, 0},
        {"post-chunked", CHUNKED_REQUEST, post_buf, post_len, 5, post_body, post_wire},
        {"response", RESPONSE, response_head, sizeof(response_head) - 1, 10, 0, 0},
    };
    enum { NMSG = sizeof(msgs) / sizeof(msgs[0]) };

    for (int i = 0; i < NMSG; i++)
        if (verify(&msgs[i]) < 0) return 1;

    printf("parse_bench: ferry vs picohttpparser (libh2o), %d rounds interleaved, median\n",
           rounds);
    printf("%-13s %6s %7s %6s  %-6s %9s %9s %7s\n", "message", "bytes", "fields", "body", "parser",
           "ns/msg", "MB/s", "spread");
    double ratio[NMSG];
    for (int i = 0; i < NMSG; i++) {
        const message *m = &msgs[i];
        long n = calibrate(m, target_ns);
        double t[2][MAX_ROUNDS];
        /* A round times n iterations of each parser, in SLICES alternating
         * slices, so a burst of noise from elsewhere hits both alike. */
        long slice = n / SLICES + 1;
        for (int r = 0; r < rounds; r++) {
            t[0][r] = t[1][r] = 0;
            for (int k = 0; k < SLICES; k++) {
                int first = (r + k) & 1; /* alternate who goes first */
                t[first][r] += run(first ? pico_once : ferry_once, m, slice) / SLICES;
                t[!first][r] += run(first ? ferry_once : pico_once, m, slice) / SLICES;
            }
        }
        double med[2];
        for (int p = 0; p < 2; p++) {
            double lo = t[p][0], hi = t[p][0];
            for (int r = 1; r < rounds; r++) {
                lo = t[p][r] < lo ? t[p][r] : lo;
                hi = t[p][r] > hi ? t[p][r] : hi;
            }
            med[p] = median(t[p], rounds);
            printf("%-13s %6zu %7zu %6zu  %-6s %9.1f %9.1f %6.1f%%\n", m->name, m->len, m->nfields,
                   m->body_len, p ? "pico" : "ferry", med[p], (double) m->len / med[p] * 1e3,
                   (hi - lo) / med[p] * 100);
        }
        ratio[i] = med[0] / med[1];
    }
    for (int i = 0; i < NMSG; i++)
        printf("ratio %s: ferry/pico time = %.2fx\n", msgs[i].name, ratio[i]);
    return 0;
}
