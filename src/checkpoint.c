/* checkpoint.c - the on-disk checkpoint: CRC32C, the v1 file format, atomic
 * and durable writing, verification before use, resume from the newest
 * usable file.
 *
 * File format, version 1 (every integer little-endian, written byte by byte
 * with shifts so the host's byte order and struct padding never leak in):
 *
 *   off  size  field
 *     0     8  magic "DTRAINCK"
 *     8     4  format version (1)
 *    12     4  byte-order mark 0x01020304 (bytes 04 03 02 01)
 *    16     8  layout_hash
 *    24     8  config_hash
 *    32     8  n_params
 *    40     4  optimizer
 *    44     4  slots (state arenas, <= DT_CKPT_MAX_SLOTS)
 *    48     8  step
 *    56     8  opt_t
 *    64     8  skipped
 *    72     8  seed
 *    80     4  world_size
 *    84     4  CRC32C of bytes 0..83 (the header alone)
 *    88        payload: params[n_params], then state[s][n_params] for each
 *              slot, each float as its IEEE-754 binary32 bits, little-endian
 *   end-4   4  CRC32C of every byte before it (header and payload)
 *
 * Why a header CRC as well as the trailer: the reader must trust n_params and
 * slots to compute the expected file size before it reads the payload. With
 * the header checked on its own, a flipped bit in n_params is reported as
 * damage ("checksum mismatch") instead of a misleading "truncated", and a
 * header that passes its CRC but claims an absurd size (a crafted file) is
 * still refused by the exact-size check before any payload byte is read.
 *
 * Reading is two passes over the file through one 64 KiB buffer: pass 1
 * checks the size, the header and the CRC of the whole file without touching
 * the caller's arrays; only when everything verified does pass 2 decode the
 * payload into them (recomputing the CRC, so a file replaced between the two
 * passes is detected - that is the one failure after which the arrays are
 * unspecified). Memory use is that fixed buffer, whatever the file claims.
 *
 * Writing goes to ".ckpt-<step>.tmp.<pid>" in the target folder, checked
 * write by write, fsync'ed, closed, renamed to ckpt-<step>.dtck (step
 * zero-padded to 12 digits), then the folder is fsync'ed so the rename itself
 * is durable; `latest` is replaced the same way. On any failure the temporary
 * file is removed and the previous checkpoint and `latest` are untouched. */
#include "dtrain/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

_Static_assert(sizeof(float) == 4, "checkpoints store floats as IEEE-754 binary32");
_Static_assert(sizeof(uint32_t) == 4, "uint32_t");

#define CK_MAGIC "DTRAINCK"
#define CK_VERSION 1u
#define CK_BOM 0x01020304u
#define CK_HEADER_CRC_OFF 84
#define CK_HEADER_SIZE 88
#define CK_TRAILER_SIZE 4
#define CK_BUF_SIZE (64 * 1024) /* multiple of 4: floats never straddle buffers */
#define CK_PATH_MAX 4096
#define CK_NAME_PREFIX "ckpt-"
#define CK_NAME_SUFFIX ".dtck"

/* ======================================================================
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78).
 * Software: slicing-by-8 over tables built once at load time. Hardware: the
 * SSE4.2 crc32 instruction (8 bytes per instruction), chosen at load time
 * when the CPU has it. Both compute the same function; the tests compare
 * them. dt__ names are internal (exported only for the tests).
 * ====================================================================== */
static uint32_t crc_table[8][256];

static void crc_init_tables(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

/* Raw CRC register update (no pre/post inversion). */
static uint32_t crc_sw_raw(uint32_t c, const unsigned char *p, size_t n)
{
    while (n && ((uintptr_t)p & 7)) {
        c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
        n--;
    }
    while (n >= 8) {
        /* assemble little-endian words explicitly: correct on any host */
        uint32_t lo = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                      (uint32_t)p[3] << 24;
        uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
                      (uint32_t)p[7] << 24;
        lo ^= c;
        c = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
            crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
            crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
            crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
    return c;
}

uint32_t dt__crc32c_sw(uint32_t crc, const void *data, size_t len);
uint32_t dt__crc32c_sw(uint32_t crc, const void *data, size_t len)
{
    return ~crc_sw_raw(~crc, data, len);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CK_HAVE_HW 1
__attribute__((target("sse4.2"))) static uint32_t crc_hw_raw(uint32_t c, const unsigned char *p,
                                                              size_t n)
{
    while (n && ((uintptr_t)p & 7)) {
        c = __builtin_ia32_crc32qi(c, *p++);
        n--;
    }
    uint64_t c64 = c;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8); /* x86 is little-endian, which is what CRC32C wants */
        c64 = __builtin_ia32_crc32di(c64, w);
        p += 8;
        n -= 8;
    }
    c = (uint32_t)c64;
    while (n--) c = __builtin_ia32_crc32qi(c, *p++);
    return c;
}
#else
#define CK_HAVE_HW 0
static uint32_t crc_hw_raw(uint32_t c, const unsigned char *p, size_t n)
{
    return crc_sw_raw(c, p, n);
}
#endif

static bool crc_hw_ok;

/* Tables and CPU dispatch once, before main: no lazy init, so no data race
 * when several threads checksum (and the hot path has no branch on "ready"). */
__attribute__((constructor)) static void crc_init(void)
{
    crc_init_tables();
#if CK_HAVE_HW
    __builtin_cpu_init(); /* required before __builtin_cpu_supports in a constructor */
    crc_hw_ok = __builtin_cpu_supports("sse4.2");
#endif
}

/* 1 when the hardware path exists on this CPU (and is what dt_crc32c uses). */
int dt__crc32c_hw_available(void);
int dt__crc32c_hw_available(void) { return crc_hw_ok; }

/* The hardware path; only call when dt__crc32c_hw_available(). */
uint32_t dt__crc32c_hw(uint32_t crc, const void *data, size_t len);
uint32_t dt__crc32c_hw(uint32_t crc, const void *data, size_t len)
{
    return ~crc_hw_raw(~crc, data, len);
}

uint32_t dt_crc32c(uint32_t crc, const void *data, size_t len)
{
    return crc_hw_ok ? ~crc_hw_raw(~crc, data, len) : ~crc_sw_raw(~crc, data, len);
}

/* ======================================================================
 * Little-endian encoding
 * ====================================================================== */
static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}
static void put_u64(unsigned char *p, uint64_t v)
{
    put_u32(p, (uint32_t)v);
    put_u32(p + 4, (uint32_t)(v >> 32));
}
static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const unsigned char *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define CK_HOST_LE 1
#else
#define CK_HOST_LE 0
#endif

/* n floats -> 4n bytes little-endian. On a little-endian host this is a
 * memcpy; elsewhere each float's bits go through put_u32. (Assumes float
 * and integer byte order agree, true of every host dtrain targets.) */
static void encode_floats(unsigned char *dst, const float *src, size_t n)
{
#if CK_HOST_LE
    memcpy(dst, src, n * 4);
#else
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &src[i], 4);
        put_u32(dst + 4 * i, b);
    }
#endif
}
static void decode_floats(float *dst, const unsigned char *src, size_t n)
{
#if CK_HOST_LE
    memcpy(dst, src, n * 4);
#else
    for (size_t i = 0; i < n; i++) {
        uint32_t b = get_u32(src + 4 * i);
        memcpy(&dst[i], &b, 4);
    }
#endif
}

static void encode_header(unsigned char *p, const dt_ckpt_header *h)
{
    memcpy(p, CK_MAGIC, 8);
    put_u32(p + 8, CK_VERSION);
    put_u32(p + 12, CK_BOM);
    put_u64(p + 16, h->layout_hash);
    put_u64(p + 24, h->config_hash);
    put_u64(p + 32, h->n_params);
    put_u32(p + 40, h->optimizer);
    put_u32(p + 44, h->slots);
    put_u64(p + 48, (uint64_t)h->step);
    put_u64(p + 56, (uint64_t)h->opt_t);
    put_u64(p + 64, (uint64_t)h->skipped);
    put_u64(p + 72, h->seed);
    put_u32(p + 80, h->world_size);
    put_u32(p + CK_HEADER_CRC_OFF, dt_crc32c(0, p, CK_HEADER_CRC_OFF));
}

static void decode_header(const unsigned char *p, dt_ckpt_header *h)
{
    h->layout_hash = get_u64(p + 16);
    h->config_hash = get_u64(p + 24);
    h->n_params = get_u64(p + 32);
    h->optimizer = get_u32(p + 40);
    h->slots = get_u32(p + 44);
    h->step = (int64_t)get_u64(p + 48);
    h->opt_t = (int64_t)get_u64(p + 56);
    h->skipped = (int64_t)get_u64(p + 64);
    h->seed = get_u64(p + 72);
    h->world_size = get_u32(p + 80);
}

/* ======================================================================
 * Small POSIX helpers
 * ====================================================================== */
static int write_full(int fd, const unsigned char *p, size_t n)
{
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (k == 0) {
            errno = EIO;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Read exactly n bytes at off; returns 0, or -1 with errno (0 on early EOF). */
static int pread_full(int fd, unsigned char *p, size_t n, uint64_t off)
{
    while (n) {
        ssize_t k = pread(fd, p, n, (off_t)off);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (k == 0) {
            errno = 0;
            return -1;
        }
        p += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

/* snprintf for messages and copies where truncation is acceptable (a path
 * longer than the buffer is cut, not an error); keeps -Wformat-truncation
 * quiet without sprinkling casts over every call. */
static void strf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void strf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, size, fmt, ap);
    va_end(ap);
}

/* fsync a folder so a rename inside it is durable. Filesystems that cannot
 * sync a directory (EINVAL/ENOTSUP) give no stronger guarantee to ask for. */
static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int e = errno;
    if (rc < 0 && (e == EINVAL || e == ENOTSUP)) rc = 0;
    close(fd);
    errno = e;
    return rc;
}

/* mkdir -p. On failure returns -1 with errno and the failing prefix in bad. */
static int mkdir_p(const char *dir, char *bad, size_t bad_size)
{
    char buf[CK_PATH_MAX];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof buf) {
        strf(bad, bad_size, "%s", dir);
        errno = n ? ENAMETOOLONG : ENOENT;
        return -1;
    }
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        if (buf[i - 1] == '/') continue; /* "a//b" */
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            strf(bad, bad_size, "%s", buf);
            return -1;
        }
        buf[i] = saved;
    }
    struct stat st;
    if (stat(dir, &st) != 0) {
        strf(bad, bad_size, "%s", dir);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        strf(bad, bad_size, "%s", dir);
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

/* "ckpt-<digits>.dtck" -> step; false for anything else (including temp
 * files, which start with a dot, and `latest`). */
static bool parse_ckpt_name(const char *name, int64_t *step)
{
    size_t plen = strlen(CK_NAME_PREFIX);
    if (strncmp(name, CK_NAME_PREFIX, plen) != 0) return false;
    const char *d = name + plen;
    uint64_t v = 0;
    size_t nd = 0;
    while (d[nd] >= '0' && d[nd] <= '9') {
        if (v > (uint64_t)(INT64_MAX - 9) / 10) return false;
        v = v * 10 + (uint64_t)(d[nd] - '0');
        nd++;
    }
    if (nd == 0 || strcmp(d + nd, CK_NAME_SUFFIX) != 0) return false;
    *step = (int64_t)v;
    return true;
}

typedef struct {
    int64_t step;
    char name[256];
} ck_entry;

static int entry_newest_first(const void *a, const void *b)
{
    const ck_entry *x = a, *y = b;
    if (x->step != y->step) return x->step > y->step ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The checkpoint files of dir, newest (highest step) first. *out is NULL or
 * a dt_malloc'ed array the caller frees. -1 with errno when dir cannot be
 * listed; -2 when out of memory. */
static int list_ckpts(const char *dir, ck_entry **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) return -1;
    ck_entry *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int rc = 0;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        int64_t step;
        if (!parse_ckpt_name(de->d_name, &step) || strlen(de->d_name) >= sizeof v->name) continue;
        if (n == cap) {
            size_t ncap = cap ? 2 * cap : 16;
            ck_entry *nv = dt_realloc(v, ncap * sizeof *nv);
            if (!nv) {
                rc = -2;
                break;
            }
            v = nv;
            cap = ncap;
        }
        v[n].step = step;
        strf(v[n].name, sizeof v[n].name, "%s", de->d_name);
        n++;
        errno = 0;
    }
    if (rc == 0 && errno != 0) rc = -1; /* readdir failed */
    int e = errno;
    closedir(d);
    if (rc != 0) {
        dt_free(v);
        errno = e;
        return rc;
    }
    if (n > 1) qsort(v, n, sizeof *v, entry_newest_first);
    *out = v;
    *count = n;
    return 0;
}

static bool join_path(char *buf, size_t size, const char *dir, const char *name)
{
    int k = snprintf(buf, size, "%s/%s", dir, name);
    return k > 0 && (size_t)k < size;
}

/* ======================================================================
 * Writing
 * ====================================================================== */
typedef struct {
    int fd;
    uint32_t crc; /* raw register (pre-inverted), of everything flushed */
    size_t used;
    unsigned char buf[CK_BUF_SIZE];
} ck_writer;

static int wr_flush(ck_writer *w)
{
    if (!w->used) return 0;
    w->crc = crc_hw_ok ? crc_hw_raw(w->crc, w->buf, w->used) : crc_sw_raw(w->crc, w->buf, w->used);
    int rc = write_full(w->fd, w->buf, w->used);
    w->used = 0;
    return rc;
}

static int wr_floats(ck_writer *w, const float *x, uint64_t n)
{
    while (n) {
        if (w->used == CK_BUF_SIZE && wr_flush(w) != 0) return -1;
        size_t room = (CK_BUF_SIZE - w->used) / 4;
        size_t k = n < room ? (size_t)n : room;
        encode_floats(w->buf + w->used, x, k);
        w->used += 4 * k;
        x += k;
        n -= k;
    }
    return 0;
}

/* Write data to dir/name atomically and durably through tmp_name. */
typedef int (*ck_body_fn)(ck_writer *w, const void *arg);

static dt_status write_atomic(const char *dir, const char *name, const char *tmp_name,
                              ck_body_fn body, const void *arg, bool trailer, dt_error *err)
{
    char tmp[CK_PATH_MAX], dst[CK_PATH_MAX];
    if (!join_path(tmp, sizeof tmp, dir, tmp_name) || !join_path(dst, sizeof dst, dir, name))
        return dt_fail(err, DT_EINTERNAL, "%s: checkpoint path too long", dir);

    ck_writer *w = dt_malloc(sizeof *w); /* 64 KiB: not on the stack */
    if (!w) return dt_fail(err, DT_EINTERNAL, "%s: out of memory", tmp);
    w->crc = ~0u;
    w->used = 0;
    w->fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (w->fd < 0) {
        int e = errno;
        dt_free(w);
        return dt_fail(err, DT_EINTERNAL, "%s: cannot create: %s", tmp, strerror(e));
    }
    const char *what = "cannot write";
    int rc = body(w, arg);
    if (rc == 0) rc = wr_flush(w);
    if (rc == 0 && trailer) {
        unsigned char t[4];
        put_u32(t, ~w->crc);
        rc = write_full(w->fd, t, 4);
    }
    if (rc == 0) {
        what = "cannot fsync";
        rc = fsync(w->fd);
    }
    int e = errno;
    if (close(w->fd) != 0 && rc == 0) {
        what = "cannot close";
        rc = -1;
        e = errno;
    }
    dt_free(w);
    if (rc == 0 && rename(tmp, dst) != 0) {
        unlink(tmp);
        return dt_fail(err, DT_EINTERNAL, "%s: cannot rename to %s: %s", tmp, dst, strerror(errno));
    }
    if (rc != 0) {
        unlink(tmp);
        return dt_fail(err, DT_EINTERNAL, "%s: %s: %s", tmp, what, strerror(e));
    }
    if (fsync_dir(dir) != 0) {
        e = errno;
        return dt_fail(err, DT_EINTERNAL, "%s: cannot fsync directory: %s", dir, strerror(e));
    }
    return DT_OK;
}

typedef struct {
    const dt_ckpt_header *h;
    const float *params;
    const float *const *state;
} ck_payload;

static int body_ckpt(ck_writer *w, const void *arg)
{
    const ck_payload *p = arg;
    encode_header(w->buf, p->h);
    w->used = CK_HEADER_SIZE;
    if (wr_floats(w, p->params, p->h->n_params) != 0) return -1;
    for (uint32_t s = 0; s < p->h->slots; s++)
        if (wr_floats(w, p->state[s], p->h->n_params) != 0) return -1;
    return 0;
}

static int body_text(ck_writer *w, const void *arg)
{
    const char *s = arg;
    size_t n = strlen(s);
    if (n > CK_BUF_SIZE) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(w->buf, s, n);
    w->used = n;
    return 0;
}

dt_status dt_ckpt_write(const char *dir, long keep, const dt_ckpt_header *h, const float *params,
                        const float *const *state, char *path_out, size_t path_size,
                        dt_error *err)
{
    DT_CHECK(dir && h);
    DT_CHECK(h->n_params == 0 || params);
    if (h->slots > DT_CKPT_MAX_SLOTS)
        return dt_fail(err, DT_EINTERNAL, "%s: %u optimizer state arenas, at most %d supported",
                       dir, h->slots, DT_CKPT_MAX_SLOTS);
    for (uint32_t s = 0; s < h->slots; s++) DT_CHECK(h->n_params == 0 || (state && state[s]));
    if (h->step < 0)
        return dt_fail(err, DT_EINTERNAL, "%s: negative step %lld", dir, (long long)h->step);

    char bad[CK_PATH_MAX];
    if (mkdir_p(dir, bad, sizeof bad) != 0)
        return dt_fail(err, DT_EINTERNAL, "%s: cannot create checkpoint directory: %s", bad,
                       strerror(errno));

    char name[64], tmp_name[96];
    strf(name, sizeof name, CK_NAME_PREFIX "%012lld" CK_NAME_SUFFIX, (long long)h->step);
    strf(tmp_name, sizeof tmp_name, ".%s.tmp.%ld", name, (long)getpid());
    ck_payload pl = {h, params, state};
    dt_status st = write_atomic(dir, name, tmp_name, body_ckpt, &pl, true, err);
    if (st != DT_OK) return st;

    char path[CK_PATH_MAX];
    join_path(path, sizeof path, dir, name); /* fits: write_atomic checked it */
    if (path_out && path_size) strf(path_out, path_size, "%s", path);

    char line[80];
    strf(line, sizeof line, "%s\n", name);
    strf(tmp_name, sizeof tmp_name, ".latest.tmp.%ld", (long)getpid());
    st = write_atomic(dir, "latest", tmp_name, body_text, line, false, err);
    if (st != DT_OK) return st;

    /* Retention. keep <= 0 keeps everything. The file just written is never
     * removed, even when older-numbered (a run resumed from an older file
     * writes below files of the abandoned continuation). */
    if (keep <= 0) return DT_OK;
    ck_entry *v;
    size_t n;
    int rc = list_ckpts(dir, &v, &n);
    if (rc != 0)
        return dt_fail(err, DT_EINTERNAL, "%s: cannot list for cleanup: %s", dir,
                       rc == -2 ? "out of memory" : strerror(errno));
    dt_status out = DT_OK;
    for (size_t i = (size_t)keep; i < n; i++) {
        if (strcmp(v[i].name, name) == 0) continue;
        char old[CK_PATH_MAX];
        if (!join_path(old, sizeof old, dir, v[i].name)) continue;
        if (unlink(old) != 0 && errno != ENOENT && out == DT_OK)
            out = dt_fail(err, DT_EINTERNAL, "%s: cannot remove old checkpoint: %s", old,
                          strerror(errno));
    }
    dt_free(v);
    return out;
}

/* ======================================================================
 * Reading
 * ====================================================================== */

/* Stream the payload [CK_HEADER_SIZE, CK_HEADER_SIZE + payload) through
 * buf, continuing the raw CRC register *crc. With dst non-NULL (pass 2),
 * decode it into params then state[0..slots). */
static int stream_payload(int fd, unsigned char *buf, uint64_t n_params, uint32_t slots,
                          float *params, float *const *state, uint32_t *crc)
{
    uint64_t off = CK_HEADER_SIZE;
    for (uint32_t a = 0; a <= slots; a++) {
        float *dst = params ? (a == 0 ? params : state[a - 1]) : NULL;
        uint64_t left = n_params;
        while (left) {
            size_t k = left < CK_BUF_SIZE / 4 ? (size_t)left : CK_BUF_SIZE / 4;
            if (pread_full(fd, buf, 4 * k, off) != 0) return -1;
            *crc = crc_hw_ok ? crc_hw_raw(*crc, buf, 4 * k) : crc_sw_raw(*crc, buf, 4 * k);
            if (dst) {
                decode_floats(dst, buf, k);
                dst += k;
            }
            off += 4 * k;
            left -= k;
        }
    }
    return 0;
}

static dt_status read_fd(int fd, unsigned char *buf, const char *path,
                         const dt_ckpt_header *expect, float *params, float *const *state,
                         dt_ckpt_header *got, dt_error *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return dt_fail(err, DT_EDATA, "%s: cannot stat: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return dt_fail(err, DT_EDATA, "%s: not a regular file", path);
    uint64_t size = (uint64_t)st.st_size;

    unsigned char h[CK_HEADER_SIZE];
    size_t have = size < CK_HEADER_SIZE ? (size_t)size : CK_HEADER_SIZE;
    if (pread_full(fd, h, have, 0) != 0)
        return dt_fail(err, DT_EDATA, "%s: cannot read: %s", path,
                       errno ? strerror(errno) : "file shrank while being read");
    /* magic and version first, on what there is: a future format may have
     * another header size, and a stranger's file should not be "truncated" */
    if (memcmp(h, CK_MAGIC, have < 8 ? have : 8) != 0)
        return dt_fail(err, DT_EDATA, "%s: not a dtrain checkpoint (bad magic)", path);
    uint32_t version = have >= 12 ? get_u32(h + 8) : CK_VERSION;
    if (version != CK_VERSION)
        return dt_fail(err, DT_EDATA,
                       "%s: format version %u is not supported (this dtrain reads %u)", path,
                       version, CK_VERSION);
    if (size < CK_HEADER_SIZE + CK_TRAILER_SIZE)
        return dt_fail(err, DT_EDATA, "%s: truncated: %llu bytes, expected at least %d", path,
                       (unsigned long long)size, CK_HEADER_SIZE + CK_TRAILER_SIZE);
    uint32_t bom = get_u32(h + 12);
    if (bom != CK_BOM)
        return dt_fail(err, DT_EDATA,
                       "%s: byte order mark reads 0x%08x, expected 0x%08x (%s)", path, bom, CK_BOM,
                       bom == 0x04030201u ? "written in the wrong byte order"
                                          : "file is damaged");
    uint32_t hcrc = dt_crc32c(0, h, CK_HEADER_CRC_OFF);
    if (hcrc != get_u32(h + CK_HEADER_CRC_OFF))
        return dt_fail(err, DT_EDATA, "%s: checksum mismatch (file is damaged) in the header",
                       path);

    dt_ckpt_header fh;
    decode_header(h, &fh);
    if (fh.slots > DT_CKPT_MAX_SLOTS)
        return dt_fail(err, DT_EDATA, "%s: %u optimizer state arenas, at most %d supported",
                       path, fh.slots, DT_CKPT_MAX_SLOTS);
    /* Exact size before anything else is read: a lying header cannot make us
     * read (or, anywhere up the stack, allocate) more than the file holds. */
    uint64_t arenas = 1 + (uint64_t)fh.slots;
    uint64_t max_params = (UINT64_MAX - CK_HEADER_SIZE - CK_TRAILER_SIZE) / 4 / arenas;
    if (fh.n_params > max_params)
        return dt_fail(err, DT_EDATA, "%s: truncated: %llu bytes, header claims %llu parameters",
                       path, (unsigned long long)size, (unsigned long long)fh.n_params);
    uint64_t expected = CK_HEADER_SIZE + 4 * fh.n_params * arenas + CK_TRAILER_SIZE;
    if (size < expected)
        return dt_fail(err, DT_EDATA, "%s: truncated: %llu bytes, expected %llu", path,
                       (unsigned long long)size, (unsigned long long)expected);
    if (size > expected)
        return dt_fail(err, DT_EDATA, "%s: trailing data: %llu bytes, expected %llu", path,
                       (unsigned long long)size, (unsigned long long)expected);

    /* Pass 1: the whole-file CRC, into the scratch buffer only. */
    uint32_t crc_hdr = crc_hw_ok ? crc_hw_raw(~0u, h, CK_HEADER_SIZE)
                                 : crc_sw_raw(~0u, h, CK_HEADER_SIZE);
    uint32_t crc = crc_hdr;
    unsigned char t[4];
    if (stream_payload(fd, buf, fh.n_params, fh.slots, NULL, NULL, &crc) != 0 ||
        pread_full(fd, t, 4, size - 4) != 0)
        return dt_fail(err, DT_EDATA, "%s: cannot read: %s", path,
                       errno ? strerror(errno) : "file shrank while being read");
    if (~crc != get_u32(t))
        return dt_fail(err, DT_EDATA, "%s: checksum mismatch (file is damaged)", path);

    /* The file is intact; is it ours? */
    if (fh.layout_hash != expect->layout_hash)
        return dt_fail(err, DT_EDATA,
                       "%s: written for another model (layout hash %016llx, this model %016llx)",
                       path, (unsigned long long)fh.layout_hash,
                       (unsigned long long)expect->layout_hash);
    if (fh.n_params != expect->n_params)
        return dt_fail(err, DT_EDATA,
                       "%s: written for another model (%llu parameters, this model has %llu)",
                       path, (unsigned long long)fh.n_params, (unsigned long long)expect->n_params);
    if (fh.optimizer != expect->optimizer || fh.slots != expect->slots)
        return dt_fail(err, DT_EDATA,
                       "%s: written for optimizer %u (%u state slots), this run uses optimizer "
                       "%u (%u state slots)",
                       path, fh.optimizer, fh.slots, expect->optimizer, expect->slots);
    if (fh.config_hash != expect->config_hash)
        return dt_fail(err, DT_EDATA,
                       "%s: written with another configuration (config hash %016llx, this run "
                       "%016llx)",
                       path, (unsigned long long)fh.config_hash,
                       (unsigned long long)expect->config_hash);

    /* Pass 2: decode into the caller's arrays, re-checking the CRC so that a
     * file replaced between the passes cannot slip through. */
    crc = crc_hdr;
    if (stream_payload(fd, buf, fh.n_params, fh.slots, params, state, &crc) != 0)
        return dt_fail(err, DT_EDATA, "%s: cannot read: %s", path,
                       errno ? strerror(errno) : "file shrank while being read");
    if (~crc != get_u32(t))
        return dt_fail(err, DT_EDATA, "%s: file changed while being read", path);
    if (got) *got = fh;
    return DT_OK;
}

dt_status dt_ckpt_read(const char *path, const dt_ckpt_header *expect, float *params,
                       float *const *state, dt_ckpt_header *got, dt_error *err)
{
    DT_CHECK(path && expect);
    DT_CHECK(expect->slots <= DT_CKPT_MAX_SLOTS);
    DT_CHECK(expect->n_params == 0 || params);
    for (uint32_t s = 0; s < expect->slots; s++)
        DT_CHECK(expect->n_params == 0 || (state && state[s]));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dt_fail(err, DT_EDATA, "%s: cannot open: %s", path, strerror(errno));
    unsigned char *buf = dt_malloc(CK_BUF_SIZE);
    dt_status st = buf ? read_fd(fd, buf, path, expect, params, state, got, err)
                       : dt_fail(err, DT_EINTERNAL, "%s: out of memory", path);
    dt_free(buf);
    close(fd);
    return st;
}

/* ======================================================================
 * Resume
 * ====================================================================== */
static void warnf(dt_ckpt_warn_fn warn, void *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void warnf(dt_ckpt_warn_fn warn, void *ctx, const char *fmt, ...)
{
    if (!warn) return;
    char msg[DT_ERRMSG_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    warn(ctx, msg);
}

/* dir/latest -> the file name it holds. 1 found, 0 missing, -1 unusable
 * (reason in why). */
static int read_latest(const char *dir, char *name, size_t name_size, char *why, size_t why_size)
{
    char path[CK_PATH_MAX];
    if (!join_path(path, sizeof path, dir, "latest")) {
        strf(why, why_size, "%s/latest: path too long", dir);
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        strf(why, why_size, "%s: cannot open: %s", path, strerror(e));
        return e == ENOENT ? 0 : -1;
    }
    char buf[300];
    size_t n = 0;
    for (;;) {
        ssize_t k = read(fd, buf + n, sizeof buf - 1 - n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            if (k < 0) {
                strf(why, why_size, "%s: cannot read: %s", path, strerror(errno));
                close(fd);
                return -1;
            }
            break;
        }
        n += (size_t)k;
        if (n == sizeof buf - 1) break;
    }
    close(fd);
    buf[n] = '\0';
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) buf[--n] = '\0';
    int64_t step;
    if (!parse_ckpt_name(buf, &step) || n >= name_size) {
        strf(why, why_size, "%s: does not name a checkpoint file (ckpt-<step>.dtck)", path);
        return -1;
    }
    memcpy(name, buf, n + 1);
    return 1;
}

/* One candidate of resume("latest"): DT_OK, DT_EDATA with the reason in *e
 * (try the next file), or any other status, copied to err (give up). */
static dt_status try_candidate(const char *path, const dt_ckpt_header *expect, float *params,
                               float *const *state, dt_ckpt_header *got, dt_error *e,
                               dt_error *err)
{
    memset(e, 0, sizeof *e);
    dt_status st = dt_ckpt_read(path, expect, params, state, got, e);
    if (st != DT_OK && st != DT_EDATA && err) *err = *e;
    return st;
}

dt_status dt_ckpt_resume(const char *what, const char *dir, const dt_ckpt_header *expect,
                         float *params, float *const *state, dt_ckpt_header *got,
                         char *path_out, size_t path_size, dt_ckpt_warn_fn warn, void *ctx,
                         dt_error *err)
{
    DT_CHECK(what && expect);
    if (strcmp(what, "latest") != 0) {
        dt_status st = dt_ckpt_read(what, expect, params, state, got, err);
        if (st == DT_OK && path_out && path_size) strf(path_out, path_size, "%s", what);
        return st;
    }
    DT_CHECK(dir);

    ck_entry *v;
    size_t n;
    int rc = list_ckpts(dir, &v, &n);
    if (rc == -2) return dt_fail(err, DT_EINTERNAL, "%s: out of memory", dir);
    if (rc != 0)
        return dt_fail(err, DT_EDATA, "no usable checkpoint in %s: cannot open directory: %s", dir,
                       strerror(errno));

    dt_error e1 = {0}; /* the newest failure: the one the user wants to hear */
    bool failed = false;
    char path[CK_PATH_MAX];
    char tried[256] = "";
    dt_status st = DT_EDATA;

    char why[DT_ERRMSG_MAX];
    int lr = read_latest(dir, tried, sizeof tried, why, sizeof why);
    if (lr == 1) {
        if (!join_path(path, sizeof path, dir, tried)) {
            dt_fail(&e1, DT_EDATA, "%s/%s: path too long", dir, tried);
        } else {
            dt_error e;
            st = try_candidate(path, expect, params, state, got, &e, err);
            if (st != DT_EDATA) goto done;
            e1 = e;
        }
        failed = true;
        warnf(warn, ctx, "%s (skipped)", e1.msg);
    } else if (n > 0) {
        /* latest missing or unusable: not a reason to give up, but worth a line */
        warnf(warn, ctx, "%s; trying the checkpoints in %s newest first", why, dir);
    }

    for (size_t i = 0; i < n; i++) {
        if (lr == 1 && strcmp(v[i].name, tried) == 0) continue;
        if (!join_path(path, sizeof path, dir, v[i].name)) continue;
        dt_error e;
        st = try_candidate(path, expect, params, state, got, &e, err);
        if (st != DT_EDATA) goto done;
        if (!failed) e1 = e;
        failed = true;
        warnf(warn, ctx, "%s (skipped)", e.msg);
    }
    st = DT_EDATA;
    if (failed)
        dt_fail(err, DT_EDATA, "no usable checkpoint in %s: %s", dir, e1.msg);
    else
        dt_fail(err, DT_EDATA, "no usable checkpoint in %s: no ckpt-*.dtck files", dir);
done:
    if (st == DT_OK && path_out && path_size) strf(path_out, path_size, "%s", path);
    dt_free(v);
    return st;
}
