/* options.h — options structs across library versions (docs/abi.md).
 *
 * Every options struct in ferry.h starts with size_t struct_size, which the
 * caller's *_options_init macro sets to sizeof the struct in the header the
 * caller was compiled against. A program built against an older header hands
 * over a shorter struct: the library writes and reads only struct_size bytes
 * of it and takes its own defaults for the fields that came later. Fields are
 * only ever appended, so the bytes the two headers share mean the same.
 */
#ifndef FERRY_CORE_OPTIONS_H
#define FERRY_CORE_OPTIONS_H

#include <stddef.h>
#include <string.h>

#include "ferry.h"

/* The size of each struct in the first release with struct_size (0.1.0): up
 * to the end of its last field then. The smallest struct_size accepted;
 * these never change when the structs grow. */
#define OPTIONS_SIZE_TO(type, last) (offsetof(type, last) + sizeof(((type *) 0)->last))
#define SERVER_OPTIONS_V1_SIZE      OPTIONS_SIZE_TO(ferry_server_options, reuse_port)
#define AGENT_OPTIONS_V1_SIZE       OPTIONS_SIZE_TO(ferry_agent_options, dns_ttl_ms)
#define REQUEST_OPTIONS_V1_SIZE     OPTIONS_SIZE_TO(ferry_request_options, max_redirects)
#define QUEUE_OPTIONS_V1_SIZE       OPTIONS_SIZE_TO(ferry_queue_options, max_starts_per_turn)
#define TLS_OPTIONS_V1_SIZE         OPTIONS_SIZE_TO(ferry_tls_options, client_ca_pem)
#define GROUP_OPTIONS_V1_SIZE       OPTIONS_SIZE_TO(ferry_group_options, on_loop_stop) /* 0.2.0 */

/* *_options_init_sized: the caller's struct of `size` bytes gets the first
 * `size` bytes of the defaults in `def` (def_size bytes), and struct_size.
 * Bytes of a newer header than this library knows are zeroed (such a program
 * needs a newer library; this keeps it from reading garbage meanwhile). A size
 * too small to hold struct_size is left alone: the call that takes the
 * options refuses it. */
static inline void options_init_sized(void *o, size_t size, const void *def, size_t def_size)
{
    if (!o || size < sizeof(size_t)) return;
    memcpy(o, def, size < def_size ? size : def_size);
    if (size > def_size) memset((char *) o + def_size, 0, size - def_size);
    memcpy(o, &size, sizeof(size));
}

/* The caller's options `src` over `dst` (dst_size bytes, already holding the
 * defaults): min(struct_size, dst_size) bytes are copied. FERRY_EINVAL when
 * struct_size is below the first version's (0: the struct was never
 * initialised with its _init). dst's struct_size ends up as dst_size. */
static inline int options_copy(void *dst, size_t dst_size, const void *src, size_t min_size)
{
    size_t given;
    memcpy(&given, src, sizeof(given));
    if (given < min_size) return FERRY_EINVAL;
    memcpy(dst, src, given < dst_size ? given : dst_size);
    memcpy(dst, &dst_size, sizeof(dst_size));
    return 0;
}

/* ---- stats structs ----
 * They grow at the end too; the caller says how big its struct is (the
 * *_stats_get macros pass sizeof), and the 0.1.0 entry points, which did
 * not, fill 0.1.0's fields. */
#define SERVER_STATS_V1_SIZE  OPTIONS_SIZE_TO(ferry_server_stats, closing)
#define AGENT_STATS_V1_SIZE   OPTIONS_SIZE_TO(ferry_agent_stats, closing)
#define ORIGIN_STATS_V1_SIZE  OPTIONS_SIZE_TO(ferry_agent_origin_stats, requests)
#define QUEUE_STATS_V1_SIZE   OPTIONS_SIZE_TO(ferry_queue_stats, closing)

/* The first `size` bytes of src (src_size bytes) into the caller's dst;
 * bytes of a newer header than this library knows are zeroed. */
static inline void stats_copy(void *dst, size_t size, const void *src, size_t src_size)
{
    if (!dst) return;
    memcpy(dst, src, size < src_size ? size : src_size);
    if (size > src_size) memset((char *) dst + src_size, 0, size - src_size);
}

#endif /* FERRY_CORE_OPTIONS_H */
