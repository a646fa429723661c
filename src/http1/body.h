/* body.h — message bodies in: the one decoder both sides use for
 * Content-Length, chunked and (responses) close-delimited bodies, over input
 * that arrives in pieces. Chunked data is decoded in place (parse_chunked).
 * No I/O, no allocation. */
#ifndef FERRY_BODY_H
#define FERRY_BODY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http1/parse.h"

enum { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_UNTIL_CLOSE };

typedef struct body_decoder {
    uint8_t kind;        /* BODY_* */
    uint64_t left;       /* BODY_LENGTH: bytes still to come */
    parse_chunked_state chunk;
} body_decoder;

/* Ready d for the body of the message whose head h was just parsed (a
 * request's or a response's: the parser's framing flags decide). Trailer
 * sections of chunked bodies are bounded by max_trailer_bytes. */
void body_decoder_start(body_decoder *d, const parse_head *h, uint32_t max_trailer_bytes,
                        bool lenient_lf);

/* Decode buf[0..len): afterwards buf[0..*data_len) holds body data and
 * *used input bytes were taken (what follows the body starts at buf + *used).
 * Returns 1 when the body is complete, 0 when more is needed, or a negative
 * FERRY_E* code (bad chunked framing). A close-delimited body never completes
 * here: the peer's close ends it. */
int body_decode(body_decoder *d, char *buf, size_t len, size_t *data_len, size_t *used);

static inline bool body_has_more(const body_decoder *d)
{
    return d->kind != BODY_NONE;
}

#endif /* FERRY_BODY_H */
