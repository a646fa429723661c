/* proxy_proto.h — the PROXY protocol header a balancer sends before the
 * first byte of a connection, and the list of sources allowed to send one.
 *
 * HAProxy's specification (proxy-protocol.txt, versions 1 and 2): a balancer
 * that relays TCP connections prepends one header naming the client's
 * address, so the server can log and filter the real client instead of the
 * balancer. Pure code: no I/O, no allocation in the parser, bytes in and a
 * result out, so it is tested and fuzzed alone (tests/test_proxy_proto.c,
 * fuzz/fuzz_proxy.c). The server reads the header before TLS, within the
 * headers timeout, and consumes exactly the length returned.
 *
 * ---- Decisions (each has cases in tests/test_proxy_proto.c) --------------
 *
 * Never guess. The spec says a receiver configured for the protocol must not
 * guess whether a header is there, so every connection must begin with one.
 * The parser decides on each byte whether it can still begin a valid header:
 * "GET / HTTP/1.1" is refused on its 'G', not after a timeout. A prefix that
 * can still become a header ("PROX", the first 9 bytes of the v2 signature,
 * a v1 line without its CRLF yet) is "need more" (0), never an error; a
 * valid header is recognised on exactly the same bytes whether they come at
 * once or one at a time.
 *
 * Version 1: "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" or "PROXY UNKNOWN...",
 * one line of printable US-ASCII, at most 107 bytes with its CRLF; one space
 * between fields and none at the end. IPv4 is four decimal octets without
 * leading zeros; IPv6 is what inet_pton(3) accepts (the compressed forms real
 * senders write; no zone). Ports are 0-65535 without leading zeros. Any
 * other byte, a bare CR or LF, or no CRLF within 107 bytes is an error.
 * UNKNOWN (whatever follows it on the line) keeps the real peer.
 *
 * Version 2: the 12-byte signature, version 2, command LOCAL (keep the real
 * peer; the family and address block are ignored, as the spec says) or
 * PROXY. With PROXY: TCP or UDP over IPv4 (12 address bytes at least), IPv6
 * (36) or UNIX (216: two 108-byte paths); UNSPEC keeps the real peer, and so
 * does UDP (a datagram flow cannot be this TCP connection: the spec's
 * fall back to UNSPEC for what a receiver does not support). Another
 * version or command, or a family/protocol byte other than the seven the spec
 * lists (0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32), is an error, as is a
 * length shorter than the family's addresses. The TLVs after the addresses
 * are skipped, but walked: each must fit exactly in the length, or the header
 * is an error. The CRC32C TLV is not checked (TCP already checksums; the spec
 * makes checking optional). A header longer than PROXY_V2_MAX (the spec
 * designs for 536 bytes; AWS-style TLVs add a few hundred) is refused as
 * soon as its length field arrives, so the server never buffers more.
 *
 * Trust. A list of networks, "127.0.0.1,10.0.0.0/8,::1,fd00::/8": bare
 * addresses are /32 and /128, a prefix with host bits set ("10.0.0.1/8") is
 * refused as a typo, spaces around commas are fine, empty entries are not.
 * IPv4-mapped IPv6 addresses ("::ffff:10.1.2.3", what a dual-stack "::"
 * listener sees) are IPv4 addresses here, in the list and in the peer (so
 * "::/0" does not trust the IPv4 clients of such a listener). The
 * word "unix" trusts every unix-socket peer (the socket's file permissions
 * say who may connect); without it, no unix peer is trusted by a list.
 */
#ifndef FERRY_PROXY_PROTO_H
#define FERRY_PROXY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The longest v1 line, its CRLF included (the spec's "worst case"). */
#define PROXY_V1_MAX 107
/* The longest v2 header accepted: 16 fixed bytes, then addresses and TLVs. */
#define PROXY_V2_MAX 2048

typedef struct proxy_header {
    int version;   /* 1 or 2 */
    bool local;    /* LOCAL, UNKNOWN, UNSPEC or UDP: keep the real peer; src and dst unset */
    bool has_addr; /* src and dst hold the client's and the balancer's addresses: AF_INET,
                      AF_INET6 (with ports) or AF_UNIX (the paths as sent); always !local */
    struct sockaddr_storage src, dst;
} proxy_header;

/* Parse the header at buf[0..len). Returns its length (> 0) when complete,
 * 0 when every byte so far can still begin a valid header (read more), and
 * FERRY_EPROXY when it cannot (close the connection, no response). Never
 * reads past len; *out is written only on success. Bytes after the header
 * (the first request) are not looked at. */
int proxy_parse(const char *buf, size_t len, proxy_header *out);

/* One network of a trust list. */
typedef struct proxy_trust_rule {
    int family;      /* AF_INET, AF_INET6, or AF_UNIX (every unix-socket peer) */
    unsigned prefix; /* leading bits that must match: 0-32 or 0-128 */
    uint8_t addr[16];
} proxy_trust_rule;

typedef struct proxy_trust {
    proxy_trust_rule *rules;
    size_t count;
} proxy_trust;

/* Parse a comma-separated list into *out. The rules array (owner: *out;
 * release with proxy_trust_free) is allocated here. Returns 0, FERRY_EINVAL
 * for a list that is empty or has an entry that is not an address, a
 * network or "unix" (*out is then empty), or FERRY_ENOMEM. */
int proxy_trust_parse(const char *list, proxy_trust *out);

/* Whether peer (the socket's own peer address, as getpeername fills a
 * sockaddr_storage: the whole struct of its family is read) may send a
 * header. t NULL means no list was configured: every peer is trusted. */
bool proxy_trusted(const proxy_trust *t, const struct sockaddr *peer);

/* Release the rules; *t is empty afterwards. NULL does nothing. */
void proxy_trust_free(proxy_trust *t);

#endif
