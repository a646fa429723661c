/* serve_files.c — `ferry serve --dir DIR`: static files for GET and HEAD.
 *
 * Every file-system call runs on libuv's thread pool (uv_fs_* with a
 * callback), so a slow disk never stalls the loop. One request is a chain of
 * callbacks over one uv_fs_t:
 *
 *   realpath → open → fstat → directory: close → realpath(…/index.html) → …
 *                           → regular file: (read 64 KiB → ferry_res_write → its callback)*
 *                                           → ferry_res_end → close
 *
 * The next piece is read only once the previous one was handed to the kernel
 * (ferry_res_write's callback), so a slow client holds one 64 KiB buffer, not
 * the file. Containment: the decoded path may hold no ".." segment and no
 * NUL, and the realpath of the result (symlinks resolved) must lie under the
 * realpath of DIR.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "ferry.h"
#include "serve.h"

#define FILE_CHUNK (64 * 1024)

typedef struct file_req {
    uv_fs_t fs;
    const serve_app *app;
    ferry_res *res;
    uint64_t start_ns;
    char *path;    /* what is being resolved or opened, NUL-terminated */
    uv_file fd;    /* -1 until open */
    int tried_index;
    int head;      /* HEAD (or a 304): headers only */
    uint64_t size; /* from fstat of the open file */
    int64_t mtime; /* seconds, from the same fstat */
    uint64_t offset; /* bytes read and queued so far */
    char *buf;     /* FILE_CHUNK bytes, only while streaming */
} file_req;

static void start_realpath(file_req *fr);

/* ---- Paths ------------------------------------------------------------------ */

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode the request path into out (room for in.len + 1 bytes) and
 * check it: 0, or the status to answer — 400 for a path that does not start
 * with '/', a broken escape or a NUL; 403 for a ".." segment, encoded or not. */
static int decode_path(ferry_str in, char *out)
{
    if (in.len == 0 || in.p[0] != '/')
        return 400;
    size_t n = 0;
    for (size_t i = 0; i < in.len; i++) {
        char c = in.p[i];
        if (c == '%') {
            int hi = i + 2 < in.len ? hex_digit(in.p[i + 1]) : -1;
            int lo = hi >= 0 ? hex_digit(in.p[i + 2]) : -1;
            if (lo < 0)
                return 400;
            c = (char) (hi * 16 + lo);
            i += 2;
        }
        if (c == '\0')
            return 400;
        out[n++] = c;
    }
    out[n] = '\0';
    for (const char *seg = out; seg; seg = strchr(seg + 1, '/'))
        if (strncmp(seg, "/..", 3) == 0 && (seg[3] == '/' || seg[3] == '\0'))
            return 403;
    return 0;
}

/* realpath results are absolute and canonical, so a prefix test on a segment
 * boundary is enough. */
static int inside_root(const serve_app *app, const char *p)
{
    if (app->root_len == 1) /* DIR is "/" */
        return p[0] == '/';
    return strncmp(p, app->root, app->root_len) == 0 &&
           (p[app->root_len] == '\0' || p[app->root_len] == '/');
}

static const char *content_type(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {"html", "text/html; charset=utf-8"}, {"htm", "text/html; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},   {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"}, {"json", "application/json"},
        {"txt", "text/plain; charset=utf-8"}, {"png", "image/png"},
        {"jpg", "image/jpeg"},                {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},                 {"svg", "image/svg+xml"},
        {"ico", "image/x-icon"},              {"wasm", "application/wasm"},
        {"pdf", "application/pdf"},
    };
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    if (dot)
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcasecmp(dot + 1, types[i].ext) == 0)
                return types[i].type;
    return "application/octet-stream";
}

/* ---- Dates (IMF-fixdate, RFC 9110 §5.6.7) ------------------------------------------ */

static const char wdays[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* "Sun, 06 Nov 1994 08:49:37 GMT" (29 bytes) into out; fixed English
 * names, so the locale cannot change it. */
#define DATE_BUF 64
static void format_date(int64_t t, char out[DATE_BUF])
{
    time_t tt = (time_t) t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm)) {
        tt = 0;
        gmtime_r(&tt, &tm);
    }
    snprintf(out, DATE_BUF, "%s, %02d %s %04d %02d:%02d:%02d GMT", wdays[tm.tm_wday % 7],
             tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil), so no timegm() and no TZ games. */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int digits(const char *p, int n, int64_t *out)
{
    int64_t v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 0;
}

/* Parse an IMF-fixdate into seconds since the epoch; -1 for anything else
 * (the obsolete RFC 850 and asctime forms are ignored, which only costs a
 * full response instead of a 304). */
static int parse_date(ferry_str s, int64_t *out)
{
    const char *p = s.p;
    int64_t day, year, hh, mm, ss;
    if (s.len != 29 || p[3] != ',' || p[4] != ' ' || p[7] != ' ' || p[11] != ' ' ||
        p[16] != ' ' || p[19] != ':' || p[22] != ':' || memcmp(p + 25, " GMT", 4) != 0)
        return -1;
    if (digits(p + 5, 2, &day) || digits(p + 12, 4, &year) || digits(p + 17, 2, &hh) ||
        digits(p + 20, 2, &mm) || digits(p + 23, 2, &ss))
        return -1;
    int mon = -1;
    for (int i = 0; i < 12; i++)
        if (memcmp(p + 8, months[i], 3) == 0)
            mon = i;
    if (mon < 0 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60)
        return -1;
    *out = days_from_civil(year, mon + 1, day) * 86400 + hh * 3600 + mm * 60 + ss;
    return 0;
}

/* ---- The request's life ------------------------------------------------------------ */

static void free_file_req(file_req *fr)
{
    free(fr->path);
    free(fr->buf);
    free(fr);
}

static void on_closed(uv_fs_t *fs)
{
    file_req *fr = fs->data;
    uv_fs_req_cleanup(fs);
    free_file_req(fr);
}

/* The response is over (req and res are gone): close the file, if any, on
 * the pool, then free. */
static void release(file_req *fr)
{
    if (fr->fd < 0 || uv_fs_close(fr->app->loop, &fr->fs, fr->fd, on_closed) != 0)
        free_file_req(fr);
}

static void fail(file_req *fr, int status)
{
    const char *msg = status == 404   ? "not found"
                      : status == 403 ? "forbidden"
                      : status == 400 ? "bad request"
                                      : "internal server error";
    serve_reply_text(fr->app, fr->res, fr->start_ns, status, msg);
    release(fr);
}

/* The status for a failed realpath or open. */
static int fs_status(ssize_t err)
{
    switch (err) {
    case UV_ENOENT:
    case UV_ENOTDIR:
    case UV_ENAMETOOLONG:
    case UV_ELOOP: return 404;
    case UV_EACCES:
    case UV_EPERM: return 403;
    default: return 500;
    }
}

/* Status and headers of a file response. Called only once the outcome is
 * known (for a GET, after the first piece was read), so that a failure
 * before it can still answer 500 with headers of its own. */
static void set_headers(file_req *fr, int status)
{
    char date[DATE_BUF], len[24];
    format_date(fr->mtime, date);
    ferry_res_set_status(fr->res, status);
    ferry_res_set_header(fr->res, "Last-Modified", date);
    if (status == 304)
        return;
    snprintf(len, sizeof len, "%" PRIu64, fr->size);
    ferry_res_set_header(fr->res, "Content-Type", content_type(fr->path));
    ferry_res_set_header(fr->res, "Content-Length", len);
}

/* End a response whose headers are set, after `sent` body bytes. If fewer
 * than Content-Length were sent (the file shrank, a read failed), ending it
 * leaves the client a short body; ferry then has to close the connection. */
static void finish(file_req *fr, int status)
{
    ferry_res *res = fr->res;
    serve_log(fr->app, ferry_res_req(res), status, fr->head ? 0 : fr->offset, fr->start_ns);
    ferry_res_end(res);
    release(fr);
}

static void read_next(file_req *fr);

static void on_written(ferry_res *res, int status, void *data)
{
    file_req *fr = data;
    if (status < 0 || ferry_res_aborted(res))
        finish(fr, 200);
    else
        read_next(fr);
}

static void on_read(uv_fs_t *fs)
{
    file_req *fr = fs->data;
    ssize_t n = fs->result;
    uv_fs_req_cleanup(fs);
    if (n <= 0 && fr->offset == 0) {
        /* Nothing sent yet: the status can still tell the truth. */
        fail(fr, 500);
        return;
    }
    if (n <= 0) {
        finish(fr, 200);
        return;
    }
    if (fr->offset == 0)
        set_headers(fr, 200);
    uint64_t len = (uint64_t) n;
    if (len > fr->size - fr->offset)
        len = fr->size - fr->offset; /* the file grew: send what fstat promised */
    fr->offset += len;
    if (fr->offset >= fr->size) {
        /* The last piece: ferry copies it, so end at once, no callback. */
        ferry_res_write(fr->res, fr->buf, (size_t) len, NULL, NULL);
        finish(fr, 200);
        return;
    }
    /* Nothing may touch fr after this call: on_written may already have run. */
    if (ferry_res_write(fr->res, fr->buf, (size_t) len, on_written, fr) < 0)
        finish(fr, 200);
}

static void read_next(file_req *fr)
{
    uv_buf_t b = uv_buf_init(fr->buf, FILE_CHUNK);
    if (uv_fs_read(fr->app->loop, &fr->fs, fr->fd, &b, 1, (int64_t) fr->offset, on_read) == 0)
        return;
    if (fr->offset == 0)
        fail(fr, 500);
    else
        finish(fr, 200);
}

static void on_dir_closed(uv_fs_t *fs)
{
    file_req *fr = fs->data;
    uv_fs_req_cleanup(fs);
    fr->fd = -1;
    fr->tried_index = 1;
    size_t n = strlen(fr->path);
    char *p = realloc(fr->path, n + sizeof "/index.html");
    if (!p) {
        fail(fr, 500);
        return;
    }
    memcpy(p + n, "/index.html", sizeof "/index.html");
    fr->path = p;
    start_realpath(fr);
}

static void on_stat(uv_fs_t *fs)
{
    file_req *fr = fs->data;
    ssize_t result = fs->result;
    uv_stat_t st = fs->statbuf;
    uv_fs_req_cleanup(fs);
    if (result < 0) {
        fail(fr, 500);
        return;
    }
    if (S_ISDIR(st.st_mode) && !fr->tried_index) {
        if (uv_fs_close(fr->app->loop, &fr->fs, fr->fd, on_dir_closed) != 0)
            fail(fr, 500);
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        fail(fr, 403);
        return;
    }
    fr->size = st.st_size;
    fr->mtime = st.st_mtim.tv_sec;

    /* If-None-Match takes precedence (RFC 9110 §13.1.3); without ETags we
     * never match it, so If-Modified-Since is then ignored. A date later than
     * our clock is invalid (RFC 9110 §13.1.3, RFC 7232 §3.3) and ignored too:
     * a client with a clock ahead would otherwise get 304 for a changed file. */
    ferry_req *req = ferry_res_req(fr->res);
    int64_t since;
    if (!ferry_req_header(req, "If-None-Match").p &&
        parse_date(ferry_req_header(req, "If-Modified-Since"), &since) == 0 &&
        fr->mtime <= since && since <= (int64_t) time(NULL)) {
        set_headers(fr, 304);
        fr->head = 1; /* no body */
        finish(fr, 304);
        return;
    }
    if (fr->head || fr->size == 0) {
        set_headers(fr, 200);
        finish(fr, 200);
        return;
    }
    fr->buf = malloc(FILE_CHUNK);
    if (!fr->buf) {
        fail(fr, 500);
        return;
    }
    read_next(fr);
}

static void on_open(uv_fs_t *fs)
{
    file_req *fr = fs->data;
    ssize_t result = fs->result;
    uv_fs_req_cleanup(fs);
    if (result < 0) {
        fail(fr, fs_status(result));
        return;
    }
    fr->fd = (uv_file) result;
    if (uv_fs_fstat(fr->app->loop, &fr->fs, fr->fd, on_stat) != 0)
        fail(fr, 500);
}

static void on_realpath(uv_fs_t *fs)
{
    file_req *fr = fs->data;
    if (fs->result < 0) {
        int status = fs_status(fs->result);
        uv_fs_req_cleanup(fs);
        /* A directory without index.html is not a file we serve. */
        fail(fr, fr->tried_index && status == 404 ? 403 : status);
        return;
    }
    const char *resolved = fs->ptr;
    int inside = inside_root(fr->app, resolved);
    char *copy = inside ? strdup(resolved) : NULL;
    uv_fs_req_cleanup(fs);
    if (!inside || !copy) {
        fail(fr, inside ? 500 : 403);
        return;
    }
    free(fr->path);
    fr->path = copy;
    /* O_NONBLOCK: opening a FIFO must not park a pool thread; fstat then
     * rejects anything that is not a regular file or a directory. */
    if (uv_fs_open(fr->app->loop, &fr->fs, fr->path, UV_FS_O_RDONLY | UV_FS_O_NONBLOCK, 0,
                   on_open) != 0)
        fail(fr, 500);
}

static void start_realpath(file_req *fr)
{
    if (uv_fs_realpath(fr->app->loop, &fr->fs, fr->path, on_realpath) != 0)
        fail(fr, 500);
}

void serve_files(const serve_app *app, ferry_req *req, ferry_res *res, uint64_t start_ns)
{
    ferry_str path = ferry_req_path(req);
    file_req *fr = calloc(1, sizeof *fr);
    char *full = malloc(app->root_len + path.len + 1);
    if (!fr || !full) {
        free(fr);
        free(full);
        serve_reply_text(app, res, start_ns, 500, "out of memory");
        return;
    }
    fr->fs.data = fr;
    fr->app = app;
    fr->res = res;
    fr->start_ns = start_ns;
    fr->fd = -1;
    fr->head = serve_str_eq(ferry_req_method(req), "HEAD");
    fr->path = full;
    /* root "/" plus "/x" would give "//x": harmless, realpath folds it. */
    memcpy(full, app->root, app->root_len);
    int status = decode_path(path, full + app->root_len);
    if (status != 0) {
        fail(fr, status);
        return;
    }
    start_realpath(fr);
}
