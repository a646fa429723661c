/* body.c — see body.h. */
#include "http1/body.h"

void body_decoder_start(body_decoder *d, const parse_head *h, uint32_t max_trailer_bytes,
                        bool lenient_lf)
{
    d->left = 0;
    if (h->flags & PARSE_F_NO_BODY) {
        d->kind = BODY_NONE;
    } else if (h->flags & PARSE_F_CHUNKED) {
        d->kind = BODY_CHUNKED;
        parse_chunked_init(&d->chunk, max_trailer_bytes, lenient_lf);
    } else if (h->flags & PARSE_F_CONTENT_LENGTH) {
        d->left = h->content_length;
        d->kind = h->content_length ? BODY_LENGTH : BODY_NONE;
    } else if (h->flags & PARSE_F_UNTIL_CLOSE) {
        d->kind = BODY_UNTIL_CLOSE;
    } else {
        d->kind = BODY_NONE;
    }
}

int body_decode(body_decoder *d, char *buf, size_t len, size_t *data_len, size_t *used)
{
    switch (d->kind) {
    case BODY_LENGTH: {
        size_t n = len < d->left ? len : (size_t) d->left;
        d->left -= n;
        *data_len = *used = n;
        if (d->left)
            return 0;
        d->kind = BODY_NONE;
        return 1;
    }
    case BODY_CHUNKED: {
        int r = parse_chunked(&d->chunk, buf, len, data_len, used);
        if (r == 1)
            d->kind = BODY_NONE;
        return r;
    }
    case BODY_UNTIL_CLOSE: *data_len = *used = len; return 0;
    default: *data_len = *used = 0; return 1;
    }
}
