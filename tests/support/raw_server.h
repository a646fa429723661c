/* raw_server.h — a small misbehaving HTTP/1.1 server for the client tests,
 * plus a "black hole" address where a TCP connect never completes.
 *
 * Why not a ferry server: the client tests need servers that do what a
 * well-behaved server never does — accept and never answer, stall in the
 * middle of a head or a body, close or reset a kept-alive socket at the worst
 * moment, answer 503/429 with Retry-After, reset a request instead of
 * answering it. raw_server does exactly what its script says and counts what
 * it saw. For a well-behaved server use server_harness.h (a real ferry server).
 *
 * Like the harness, it runs on its own libuv loop in its own thread, listening
 * on 127.0.0.1 (or ::1) port 0, so the test's main thread can run the client
 * agent on its own loop. Requests are parsed with src/parse.h (bodies, with
 * Content-Length or chunked, are read and discarded) and a script acts once a
 * request is complete. raw_stop() proves the server's loop closed clean.
 *
 * Scripts are per connection: connection i (0-based, in accept order) follows
 * per_conn[i] when i < nper_conn, else `script`. The failure injections that
 * count requests (error_first, reset_first) are server-wide.
 */
#ifndef FERRY_TESTS_RAW_SERVER_H
#define FERRY_TESTS_RAW_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum raw_mode {
    RAW_ANSWER = 0, /* answer each request: status, Content-Length, body */
    RAW_SILENT,     /* read requests, never answer (the connection stays open) */
    RAW_HALF_HEAD,  /* on the first request, send half a response head, then stall */
    RAW_PART_BODY,  /* on the first request, send a head with Content-Length 100000 and
                       part_body_bytes of it, then stall */
} raw_mode;

typedef enum raw_close_how {
    RAW_FIN = 0, /* close(): a FIN, or a RST if request bytes are still unread (as a real
                    server that closes with a request in its receive buffer) */
    RAW_RST,     /* SO_LINGER 0: always a reset */
} raw_close_how;

typedef struct raw_script {
    raw_mode mode;
    int status;                 /* RAW_ANSWER: 0 = 200 */
    const char *body;           /* RAW_ANSWER: NULL = "ok" */
    uint32_t response_delay_ms; /* RAW_ANSWER: answer this long after the request; 0 = at once */
    uint32_t part_body_bytes;   /* RAW_PART_BODY: body bytes sent before stalling; 0 = 1000 */
    uint32_t keep_alive_hint;   /* > 0: responses carry "Keep-Alive: timeout=N" */
    const char *keep_alive;     /* non-NULL: responses carry "Keep-Alive: <this>" instead
                                   (e.g. "timeout=0") */
    int connection_close;       /* 1: responses carry "Connection: close" and the socket
                                   closes after the first one (as close_after = 1) */
    uint32_t close_after;       /* close the connection after this many responses; 0 = never.
                                   Reading stops right after that response, so a request the
                                   client sends meanwhile stays unread */
    uint32_t close_delay_ms;    /* ... this long after that response was written; 0 = at once */
    raw_close_how close_how;
    uint32_t idle_close_ms; /* close a connection idle this long after its last response
                               (a keep-alive timeout; a new request's bytes cancel it);
                               0 = never */
} raw_script;

/* Seeded faults (raw_options.fault_pct): what a request may get instead of
 * its script's answer. */
typedef enum raw_fault {
    RAW_F_NONE = 0,
    RAW_F_RESET_MID,    /* head (Content-Length 1000) and 500 body bytes, then a reset */
    RAW_F_HEAD_CLOSE,   /* head (Content-Length 1000), then a FIN */
    RAW_F_STALL_BODY,   /* head (Content-Length 100000) and part of the body, then silence */
    RAW_F_LIE_LENGTH,   /* Content-Length 100 but 2 bytes, then a FIN */
    RAW_F_CLOSE_UNREAD, /* the request was read whole; the socket closes with no answer
                           (an idle-timeout close racing the request) */
    RAW_F_COUNT
} raw_fault;

typedef struct raw_options {
    const char *host;           /* "127.0.0.1" (NULL) or "::1" */
    raw_script script;          /* every connection's script, except ... */
    const raw_script *per_conn; /* ... connection i < nper_conn follows per_conn[i] (copied) */
    size_t nper_conn;
    uint32_t error_first;    /* the first K requests to the server are answered with
                                error_status instead of the script (keep-alive) */
    int error_status;        /* 0 = 503 */
    const char *retry_after; /* with error_first: a Retry-After value, or NULL: none */
    uint32_t reset_first;    /* the first K requests (after the error_first ones) are
                                answered with a reset (SO_LINGER 0) */
    /* Seeded faults, server-wide: each complete request (after the error_first
     * and reset_first ones) gets a fault with probability fault_pct / 100,
     * drawn uniformly from the kinds in fault_mask (bits 1u << RAW_F_*; 0 =
     * all), from a PRNG seeded with fault_seed: the same seed and the same
     * request order give the same faults. */
    uint32_t fault_pct;
    uint32_t fault_mask;
    uint64_t fault_seed;
    /* Called on the server's thread for every complete request, before the
     * script acts, with its "METHOD target" (up to 100 bytes of target). */
    void (*on_request)(const char *line, void *data);
    void *on_request_data;
} raw_options;

typedef struct raw_stats {
    uint64_t connections;   /* accepted */
    uint64_t open_now;      /* accepted and not yet closed (by either side) */
    uint64_t max_open;      /* the most open at once */
    uint64_t requests;      /* complete requests seen (heads + bodies) */
    uint64_t heads;         /* request heads seen (some may never complete) */
    uint64_t errors_sent;   /* error_first answers */
    uint64_t resets_sent;   /* connections reset (reset_first, or RAW_RST closes) */
    uint64_t server_closes; /* connections the server closed (script, idle, reset) */
    uint64_t peer_closes;   /* connections the client closed (EOF or error on read) */
    uint64_t body_bytes;    /* request body bytes received (decoded) */
    uint64_t faults[RAW_F_COUNT]; /* seeded faults played, by kind */
    uint64_t close_unread_reused; /* of RAW_F_CLOSE_UNREAD: on a connection that had
                                     answered before (the keep-alive race) */
} raw_stats;

typedef struct raw_server raw_server;

/* Start a server (o NULL: every connection answers 200 "ok", keep-alive) on
 * its own loop thread; returns once it listens. Fails the test otherwise. */
raw_server *raw_start(const raw_options *o);
/* raw_start with every connection playing one mode, everything else default. */
raw_server *raw_start_mode(raw_mode mode);
int raw_port(const raw_server *s);
void raw_stats_get(raw_server *s, raw_stats *st);
/* Wait until stats.requests >= n (or connections, for raw_wait_connections);
 * false on timeout. Blocks the calling thread: never call it from the client's
 * loop while the client must make progress. */
bool raw_wait_requests(raw_server *s, uint64_t n, int timeout_ms);
/* The i-th complete request's method and target ("GET /x"), 0-based, for the
 * first 256 requests; "" if there is none. The string is copied into out. */
void raw_request_line(raw_server *s, size_t i, char *out, size_t out_size);
/* Close every connection and the listener, join the thread, and assert the
 * loop closed clean (uv_loop_close == 0). */
void raw_stop(raw_server *s);

/* ---- black hole: a port where connect() never completes -------------------
 * A listening socket with a backlog of 1 that never accepts, its accept queue
 * filled with connections that were never accepted: further SYNs to it are
 * dropped, so a client's connect stays pending until its own timeout. Only
 * 127.0.0.1 is used. */
typedef struct blackhole {
    int listen_fd;
    int fillers[16];
    int nfillers;
    int port;
} blackhole;

/* Open and fill it; returns the port, or fails the test if the kernel kept
 * completing connects (then this test cannot build a black hole). */
int blackhole_open(blackhole *b);
void blackhole_close(blackhole *b);

#endif /* FERRY_TESTS_RAW_SERVER_H */
