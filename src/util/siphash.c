/* siphash.c — SipHash-c-d (see siphash.h for why a keyed hash).
 *
 * Written from the description in the paper ("SipHash: a fast short-input
 * PRF", section 2): the state is four 64-bit words initialised from the key
 * and four constants; each 8-byte little-endian word m of the message is
 * xored into v3, followed by c SipRounds, then xored into v0; the last word
 * holds the remaining bytes and the length modulo 256 in its top byte; then
 * 0xff is xored into v2 and d SipRounds give v0^v1^v2^v3.
 */
#include "util/siphash.h"

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static uint64_t load_le64(const uint8_t *p)
{
    return (uint64_t) p[0] | (uint64_t) p[1] << 8 | (uint64_t) p[2] << 16 | (uint64_t) p[3] << 24 |
           (uint64_t) p[4] << 32 | (uint64_t) p[5] << 40 | (uint64_t) p[6] << 48 |
           (uint64_t) p[7] << 56;
}

typedef struct sip_state {
    uint64_t v0, v1, v2, v3;
} sip_state;

static inline void sip_round(sip_state *s)
{
    s->v0 += s->v1;
    s->v1 = ROTL(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = ROTL(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = ROTL(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = ROTL(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = ROTL(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = ROTL(s->v2, 32);
}

static inline void sip_absorb(sip_state *s, uint64_t m, int c_rounds)
{
    s->v3 ^= m;
    for (int i = 0; i < c_rounds; i++)
        sip_round(s);
    s->v0 ^= m;
}

static inline uint64_t siphash_cd(const uint8_t key[16], const void *data, size_t len, int c_rounds,
                                  int d_rounds)
{
    const uint8_t *p = data;
    uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
    sip_state s = {
        k0 ^ UINT64_C(0x736f6d6570736575),
        k1 ^ UINT64_C(0x646f72616e646f6d),
        k0 ^ UINT64_C(0x6c7967656e657261),
        k1 ^ UINT64_C(0x7465646279746573),
    };
    const uint8_t *end = p + (len & ~(size_t) 7);
    for (; p != end; p += 8)
        sip_absorb(&s, load_le64(p), c_rounds);
    uint64_t last = (uint64_t) (len & 0xff) << 56;
    switch (len & 7) {
    case 7: last |= (uint64_t) p[6] << 48; /* fall through */
    case 6: last |= (uint64_t) p[5] << 40; /* fall through */
    case 5: last |= (uint64_t) p[4] << 32; /* fall through */
    case 4: last |= (uint64_t) p[3] << 24; /* fall through */
    case 3: last |= (uint64_t) p[2] << 16; /* fall through */
    case 2: last |= (uint64_t) p[1] << 8;  /* fall through */
    case 1: last |= (uint64_t) p[0]; break;
    default: break;
    }
    sip_absorb(&s, last, c_rounds);
    s.v2 ^= 0xff;
    for (int i = 0; i < d_rounds; i++)
        sip_round(&s);
    return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

uint64_t siphash13(const uint8_t key[16], const void *data, size_t len)
{
    return siphash_cd(key, data, len, 1, 3);
}

uint64_t siphash24(const uint8_t key[16], const void *data, size_t len)
{
    return siphash_cd(key, data, len, 2, 4);
}
