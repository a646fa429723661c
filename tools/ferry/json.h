/* json.h — a tiny streaming JSON writer for the --json summaries: one object
 * on one line, keys in the order written, commas placed for the caller.
 * Strings are escaped (control characters as \u00XX); doubles are written
 * with a fixed number of decimals, non-finite ones as null.
 */
#ifndef FERRY_TOOL_JSON_H
#define FERRY_TOOL_JSON_H

#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 8

typedef struct json {
    FILE *f;
    int depth;
    int first[JSON_MAX_DEPTH];
} json;

/* '{' ... '}' and a newline. */
void json_begin(json *j, FILE *f);
void json_end(json *j);
/* "key": { ... } */
void json_obj_begin(json *j, const char *key);
void json_obj_end(json *j);
void json_u64(json *j, const char *key, uint64_t v);
void json_i64(json *j, const char *key, int64_t v);
void json_double(json *j, const char *key, double v, int decimals);
void json_str(json *j, const char *key, const char *s);
void json_null(json *j, const char *key);

#endif /* FERRY_TOOL_JSON_H */
