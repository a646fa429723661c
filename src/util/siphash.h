/* siphash.h — SipHash, a keyed hash for tables whose keys come from the network.
 *
 * A hash table keyed by strings a client chooses (user names, addresses,
 * tokens) degrades to a list if the client can choose strings that collide:
 * with a fixed hash such as FNV-1a, colliding keys are cheap to compute
 * offline, and each lookup becomes a scan ("hash flooding"). SipHash
 * (Aumasson and Bernstein, 2012) is a pseudo-random function of a secret
 * 128-bit key: without the key, collisions cannot be predicted. Each table
 * draws its own key at creation.
 *
 * Two variants share one implementation: SipHash-2-4, the one in the paper,
 * whose test vector checks the round function; and SipHash-1-3, the faster
 * variant Python, Ruby and Rust use for their hash tables, which is what
 * tables here use. Both give 64 bits.
 *
 * Why not a library: OpenSSL 3 (which ferry links) offers SipHash-2-4 only as
 * an EVP_MAC, whose per-message init/update/final through the provider layer
 * costs several times the hash of a short key, on the path of every queue
 * push; it has no SipHash-1-3. No other Debian-packaged C library we link
 * exposes a keyed table hash. The function is ~40 lines and checked against
 * the published vectors (tests/test_queue.c).
 */
#ifndef FERRY_SIPHASH_H
#define FERRY_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* SipHash-1-3 of data[0..len) under the 16-byte key. */
uint64_t siphash13(const uint8_t key[16], const void *data, size_t len);

/* SipHash-2-4 of data[0..len) under the 16-byte key. */
uint64_t siphash24(const uint8_t key[16], const void *data, size_t len);

#endif /* FERRY_SIPHASH_H */
