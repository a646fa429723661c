/* json.c — the streaming JSON writer (see json.h). */
#include "json.h"

#include <inttypes.h>
#include <math.h>

static void put_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

/* The comma before a member, then its key. */
static void key(json *j, const char *k)
{
    if (!j->first[j->depth])
        fputc(',', j->f);
    j->first[j->depth] = 0;
    put_string(j->f, k);
    fputc(':', j->f);
}

void json_begin(json *j, FILE *f)
{
    j->f = f;
    j->depth = 0;
    j->first[0] = 1;
    fputc('{', f);
}

void json_end(json *j)
{
    fputs("}\n", j->f);
    fflush(j->f);
}

void json_obj_begin(json *j, const char *k)
{
    key(j, k);
    fputc('{', j->f);
    if (j->depth + 1 < JSON_MAX_DEPTH)
        j->depth++;
    j->first[j->depth] = 1;
}

void json_obj_end(json *j)
{
    fputc('}', j->f);
    if (j->depth > 0)
        j->depth--;
}

void json_u64(json *j, const char *k, uint64_t v)
{
    key(j, k);
    fprintf(j->f, "%" PRIu64, v);
}

void json_i64(json *j, const char *k, int64_t v)
{
    key(j, k);
    fprintf(j->f, "%" PRId64, v);
}

void json_double(json *j, const char *k, double v, int decimals)
{
    key(j, k);
    if (isfinite(v))
        fprintf(j->f, "%.*f", decimals, v);
    else
        fputs("null", j->f);
}

void json_str(json *j, const char *k, const char *s)
{
    key(j, k);
    put_string(j->f, s);
}

void json_null(json *j, const char *k)
{
    key(j, k);
    fputs("null", j->f);
}
