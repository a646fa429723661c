/* nfq_netem.c — delay, jitter, reordering and loss for the packets an
 * iptables NFQUEUE rule hands over, for kernels built without sch_netem
 * (faults.sh uses `tc qdisc ... netem` when it exists, this otherwise).
 *
 * Each queued packet gets a verdict later: dropped with probability --loss
 * percent; else released after --delay ms plus a uniform jitter in
 * [-jitter, +jitter], or at once with probability --reorder percent (netem's
 * meaning: that packet overtakes the delayed ones). Verdicts are given by
 * packet id in release order, so jitter and --reorder reorder packets on the
 * wire for real. Seeded (--seed), runs until SIGTERM/SIGINT, then accepts
 * whatever it still holds and exits 0.
 *
 *   ip netns exec NS nfq_netem --queue 0 --delay 40 --jitter 20 --loss 5 --reorder 10
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <linux/netfilter.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#define MAX_HELD 65536

typedef struct held {
    uint64_t at_ns; /* release time, CLOCK_MONOTONIC */
    uint32_t id;
} held;

static held heap[MAX_HELD]; /* a min-heap on at_ns */
static size_t nheld;
static volatile sig_atomic_t stop;
static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static double delay_ms, jitter_ms, loss_pct, reorder_pct;
static uint64_t seen, dropped, reordered;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static double uniform(void) /* [0, 1) */
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (double) ((rng * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

static void heap_push(held h)
{
    size_t i = nheld++;
    while (i > 0 && heap[(i - 1) / 2].at_ns > h.at_ns) {
        heap[i] = heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    heap[i] = h;
}

static held heap_pop(void)
{
    held top = heap[0], last = heap[--nheld];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= nheld) break;
        if (c + 1 < nheld && heap[c + 1].at_ns < heap[c].at_ns) c++;
        if (heap[c].at_ns >= last.at_ns) break;
        heap[i] = heap[c];
        i = c;
    }
    if (nheld) heap[i] = last;
    return top;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa,
                     void *data)
{
    (void) msg;
    (void) data;
    struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
    if (!ph) return 0;
    uint32_t id = ntohl(ph->packet_id);
    seen++;
    if (uniform() * 100 < loss_pct) {
        dropped++;
        return nfq_set_verdict(qh, id, NF_DROP, 0, NULL);
    }
    double ms = delay_ms + (2 * uniform() - 1) * jitter_ms;
    if (uniform() * 100 < reorder_pct) {
        reordered++;
        ms = 0;
    }
    if (ms <= 0 || nheld == MAX_HELD) return nfq_set_verdict(qh, id, NF_ACCEPT, 0, NULL);
    heap_push((held){now_ns() + (uint64_t) (ms * 1e6), id});
    return 0;
}

static void on_signal(int sig)
{
    (void) sig;
    stop = 1;
}

static int usage(void)
{
    fprintf(stderr, "usage: nfq_netem [--queue N] [--delay MS] [--jitter MS] [--loss PCT] "
                    "[--reorder PCT] [--seed N]\n");
    return 2;
}

int main(int argc, char **argv)
{
    unsigned queue = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) return usage();
        const char *f = argv[i], *v = argv[++i];
        if (strcmp(f, "--queue") == 0)
            queue = (unsigned) atoi(v);
        else if (strcmp(f, "--delay") == 0)
            delay_ms = atof(v);
        else if (strcmp(f, "--jitter") == 0)
            jitter_ms = atof(v);
        else if (strcmp(f, "--loss") == 0)
            loss_pct = atof(v);
        else if (strcmp(f, "--reorder") == 0)
            reorder_pct = atof(v);
        else if (strcmp(f, "--seed") == 0) {
            /* splitmix64 of the seed: never the all-zero state xorshift stays in */
            uint64_t z = strtoull(v, NULL, 10) + 0x9E3779B97F4A7C15ULL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
            rng = (z ^ (z >> 31)) | 1;
        } else
            return usage();
    }
    struct nfq_handle *h = nfq_open();
    if (!h) {
        fprintf(stderr, "nfq_netem: nfq_open: %s\n", strerror(errno));
        return 1;
    }
    struct nfq_q_handle *qh = nfq_create_queue(h, (uint16_t) queue, on_packet, NULL);
    if (!qh || nfq_set_mode(qh, NFQNL_COPY_META, 0) < 0) {
        fprintf(stderr, "nfq_netem: cannot bind queue %u: %s\n", queue, strerror(errno));
        nfq_close(h);
        return 1;
    }
    nfq_set_queue_maxlen(qh, MAX_HELD);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    int fd = nfq_fd(h);
    char buf[65536] __attribute__((aligned));
    printf("nfq_netem: queue %u ready\n", queue);
    fflush(stdout);
    while (!stop) {
        uint64_t t = now_ns();
        while (nheld && heap[0].at_ns <= t)
            nfq_set_verdict(qh, heap_pop().id, NF_ACCEPT, 0, NULL);
        int wait_ms = nheld ? (int) ((heap[0].at_ns - t) / 1000000) + 1 : 200;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, wait_ms) > 0) {
            ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n > 0) nfq_handle_packet(h, buf, (int) n);
        }
    }
    while (nheld)
        nfq_set_verdict(qh, heap_pop().id, NF_ACCEPT, 0, NULL);
    fprintf(stderr, "nfq_netem: %" PRIu64 " packets, %" PRIu64 " dropped, %" PRIu64 " sent ahead\n",
            seen, dropped, reordered);
    nfq_destroy_queue(qh);
    nfq_close(h);
    return 0;
}
