/* checkpoint.c - the checkpoint file of checkpoint.h (which describes the
 * format): CRC32C, encoding, writing through the atomic write of fs.h,
 * verification before use, resume from the newest usable file.
 *
 * Reading is two passes over the file through one 64 KiB buffer: pass 1
 * checks the size, the header and the CRC of the whole file without touching
 * the caller's arrays; only when everything verified does pass 2 decode the
 * payload into them (recomputing the CRC, so a file replaced between the two
 * passes is detected - that is the one failure after which the arrays are
 * unspecified). Memory use is that fixed buffer, whatever the file claims.
 * Writing streams the same way: header and floats through one buffer, whose
 * bytes the trailer CRC follows as they are flushed. */
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

#include "dtrain/fs.h"

_Static_assert(sizeof(float) == 4, "checkpoints store floats as IEEE-754 binary32");
_Static_assert(sizeof(uint32_t) == 4, "uint32_t");

#define CK_MAGIC "DTRAINCK"
#define CK_VERSION 1u
#define CK_BOM 0x01020304u
#define CK_HEADER_CRC_OFF 84
#define CK_HEADER_SIZE 88
#define CK_TRAILER_SIZE 4
#define CK_BUF_SIZE (64 * 1024) /* multiple of 4: floats never straddle buffers */
#define CK_NAME_PREFIX "ckpt-"
#define CK_NAME_SUFFIX ".dtck"
#define CK_NAME_MAX 256 /* a file name (not a path): NAME_MAX + 1 */

/* ======================================================================
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78).
 * Software: slicing-by-8 over tables built once at load time. Hardware: the
 * SSE4.2 crc32 instruction (8 bytes per instruction). Both compute the same
 * function (the tests compare them); crc_raw, chosen once at load time, is
 * the one every caller uses. dt__ names are internal (exported for the tests).
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

typedef uint32_t (*crc_raw_fn)(uint32_t c, const unsigned char *p, size_t n);
/* Raw register update of every CRC in this file; ~crc_raw(~crc, ...) is the
 * finished CRC32C. Set before main, so no thread ever sees it change. */
static crc_raw_fn crc_raw = crc_sw_raw;

/* Tables and CPU dispatch once, before main: no lazy init, so no data race
 * when several threads checksum (and the hot path has no branch on "ready"). */
__attribute__((constructor)) static void crc_init(void)
{
    crc_init_tables();
#if CK_HAVE_HW
    __builtin_cpu_init(); /* required before __builtin_cpu_supports in a constructor */
    if (__builtin_cpu_supports("sse4.2")) crc_raw = crc_hw_raw;
#endif
}

uint32_t dt_crc32c(uint32_t crc, const void *data, size_t len)
{
    return ~crc_raw(~crc, data, len);
}

/* 1 when the hardware path exists on this CPU (and is what dt_crc32c uses). */
int dt__crc32c_hw_available(void);
int dt__crc32c_hw_available(void) { return crc_raw == crc_hw_raw; }

/* The hardware path; only call when dt__crc32c_hw_available(). */
uint32_t dt__crc32c_hw(uint32_t crc, const void *data, size_t len);
uint32_t dt__crc32c_hw(uint32_t crc, const void *data, size_t len)
{
    return ~crc_hw_raw(~crc, data, len);
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
 * File names
 * ====================================================================== */

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
    char name[CK_NAME_MAX];
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
        size_t len = strlen(de->d_name);
        if (!parse_ckpt_name(de->d_name, &step) || len >= sizeof v->name) continue;
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
        memcpy(v[n].name, de->d_name, len + 1);
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

/* ======================================================================
 * Writing
 * ====================================================================== */
typedef struct {
    dt_fs_atomic file;
    uint32_t crc; /* raw register (pre-inverted), of everything flushed */
    size_t used;
    unsigned char buf[CK_BUF_SIZE];
} ck_writer;

static dt_status wr_flush(ck_writer *w, dt_error *err)
{
    w->crc = crc_raw(w->crc, w->buf, w->used);
    dt_status st = dt_fs_atomic_write(&w->file, w->buf, w->used, err);
    w->used = 0;
    return st;
}

static dt_status wr_floats(ck_writer *w, const float *x, uint64_t n, dt_error *err)
{
    while (n) {
        if (w->used == CK_BUF_SIZE) {
            dt_status st = wr_flush(w, err);
            if (st != DT_OK) return st;
        }
        size_t room = (CK_BUF_SIZE - w->used) / 4;
        size_t k = n < room ? (size_t)n : room;
        encode_floats(w->buf + w->used, x, k);
        w->used += 4 * k;
        x += k;
        n -= k;
    }
    return DT_OK;
}

/* header, arenas, trailer into an open atomic file (removed on failure) */
static dt_status wr_checkpoint(ck_writer *w, const dt_ckpt_header *h, const float *params,
                               const float *const *state, dt_error *err)
{
    encode_header(w->buf, h);
    w->used = CK_HEADER_SIZE;
    dt_status st = wr_floats(w, params, h->n_params, err);
    for (uint32_t s = 0; st == DT_OK && s < h->slots; s++)
        st = wr_floats(w, state[s], h->n_params, err);
    if (st == DT_OK) st = wr_flush(w, err);
    if (st != DT_OK) return st;
    unsigned char trailer[CK_TRAILER_SIZE];
    put_u32(trailer, ~w->crc);
    return dt_fs_atomic_write(&w->file, trailer, sizeof trailer, err);
}

static dt_status write_file(const char *path, const dt_ckpt_header *h, const float *params,
                            const float *const *state, dt_error *err)
{
    ck_writer *w = dt_malloc(sizeof *w); /* 64 KiB: not on the stack */
    if (!w) return dt_fail(err, DT_EINTERNAL, "%s: out of memory", path);
    w->crc = ~0u;
    w->used = 0;
    dt_status st = dt_fs_atomic_open(&w->file, path, err);
    if (st == DT_OK) st = wr_checkpoint(w, h, params, state, err);
    if (st == DT_OK) st = dt_fs_atomic_commit(&w->file, err);
    dt_free(w);
    return st;
}

/* Retention: all but the newest `keep` (keep <= 0: all). The file just
 * written is never removed, even when older-numbered (a run resumed from an
 * older file writes below files of the abandoned continuation). */
static dt_status remove_old(const char *dir, long keep, const char *just_written, dt_error *err)
{
    if (keep <= 0) return DT_OK;
    ck_entry *v;
    size_t n;
    int rc = list_ckpts(dir, &v, &n);
    if (rc != 0)
        return dt_fail(err, DT_EINTERNAL, "%s: cannot list for cleanup: %s", dir,
                       rc == -2 ? "out of memory" : strerror(errno));
    dt_status out = DT_OK;
    for (size_t i = (size_t)keep; i < n && out == DT_OK; i++) {
        if (strcmp(v[i].name, just_written) == 0) continue;
        dt_path old;
        out = dt_path_join(&old, dir, v[i].name, err);
        if (out == DT_OK && unlink(old.s) != 0 && errno != ENOENT)
            out = dt_fail(err, DT_EINTERNAL, "%s: cannot remove old checkpoint: %s", old.s,
                          strerror(errno));
    }
    dt_free(v);
    return out;
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

    char name[CK_NAME_MAX], line[CK_NAME_MAX + 1];
    snprintf(name, sizeof name, CK_NAME_PREFIX "%012lld" CK_NAME_SUFFIX, (long long)h->step);
    snprintf(line, sizeof line, "%s\n", name);
    dt_path path, latest;
    dt_status st = dt_path_join(&path, dir, name, err);
    if (st == DT_OK) st = dt_path_join(&latest, dir, "latest", err);
    if (st == DT_OK) st = dt_fs_mkdir_p(dir, "checkpoint.dir", err);
    if (st == DT_OK) st = write_file(path.s, h, params, state, err);
    if (st == DT_OK) st = dt_fs_write_atomic(latest.s, line, strlen(line), err);
    if (st != DT_OK) return st;
    if (path_out && path_size) {
        DT_CHECK(strlen(path.s) < path_size);
        memcpy(path_out, path.s, strlen(path.s) + 1);
    }
    return remove_old(dir, keep, name, err);
}

/* ======================================================================
 * Reading
 * ====================================================================== */

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

static dt_status fail_read(const char *path, dt_error *err)
{
    return dt_fail(err, DT_EDATA, "%s: cannot read: %s", path,
                   errno ? strerror(errno) : "file shrank while being read");
}

/* Is the header (the first min(size, 88) bytes, in h) a sound v1 header for
 * a file of exactly `size` bytes? Decodes it into *fh when it is. */
static dt_status check_header(const char *path, uint64_t size, const unsigned char *h,
                              dt_ckpt_header *fh, dt_error *err)
{
    const size_t have = size < CK_HEADER_SIZE ? (size_t)size : CK_HEADER_SIZE;
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
    if (dt_crc32c(0, h, CK_HEADER_CRC_OFF) != get_u32(h + CK_HEADER_CRC_OFF))
        return dt_fail(err, DT_EDATA, "%s: checksum mismatch (file is damaged) in the header",
                       path);
    decode_header(h, fh);
    if (fh->slots > DT_CKPT_MAX_SLOTS)
        return dt_fail(err, DT_EDATA, "%s: %u optimizer state arenas, at most %d supported",
                       path, fh->slots, DT_CKPT_MAX_SLOTS);
    /* Exact size before anything else is read: a lying header cannot make us
     * read (or, anywhere up the stack, allocate) more than the file holds. */
    uint64_t arenas = 1 + (uint64_t)fh->slots;
    uint64_t max_params = (UINT64_MAX - CK_HEADER_SIZE - CK_TRAILER_SIZE) / 4 / arenas;
    if (fh->n_params > max_params)
        return dt_fail(err, DT_EDATA, "%s: truncated: %llu bytes, header claims %llu parameters",
                       path, (unsigned long long)size, (unsigned long long)fh->n_params);
    uint64_t expected = CK_HEADER_SIZE + 4 * fh->n_params * arenas + CK_TRAILER_SIZE;
    if (size != expected)
        return dt_fail(err, DT_EDATA, "%s: %s: %llu bytes, expected %llu", path,
                       size < expected ? "truncated" : "trailing data",
                       (unsigned long long)size, (unsigned long long)expected);
    return DT_OK;
}

/* The file is intact; is it ours? */
static dt_status check_identity(const char *path, const dt_ckpt_header *fh,
                                const dt_ckpt_header *expect, dt_error *err)
{
    if (fh->layout_hash != expect->layout_hash)
        return dt_fail(err, DT_EDATA,
                       "%s: written for another model (layout hash %016llx, this model %016llx)",
                       path, (unsigned long long)fh->layout_hash,
                       (unsigned long long)expect->layout_hash);
    if (fh->n_params != expect->n_params)
        return dt_fail(err, DT_EDATA,
                       "%s: written for another model (%llu parameters, this model has %llu)",
                       path, (unsigned long long)fh->n_params,
                       (unsigned long long)expect->n_params);
    if (fh->optimizer != expect->optimizer || fh->slots != expect->slots)
        return dt_fail(err, DT_EDATA,
                       "%s: written for optimizer %u (%u state slots), this run uses optimizer "
                       "%u (%u state slots)%s",
                       path, fh->optimizer, fh->slots, expect->optimizer, expect->slots,
                       fh->optimizer == expect->optimizer
                           ? "; optimizer.average keeps one more: a run with averaging "
                             "resumes only from a checkpoint with its averaged copy, and the "
                             "reverse"
                           : "");
    if (fh->config_hash != expect->config_hash)
        return dt_fail(err, DT_EDATA,
                       "%s: written with another configuration (config hash %016llx, this run "
                       "%016llx)",
                       path, (unsigned long long)fh->config_hash,
                       (unsigned long long)expect->config_hash);
    return DT_OK;
}

/* Stream the payload [CK_HEADER_SIZE, CK_HEADER_SIZE + payload) through
 * buf, continuing the raw CRC register *crc. With params non-NULL (pass 2),
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
            *crc = crc_raw(*crc, buf, 4 * k);
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
    const uint64_t size = (uint64_t)st.st_size;

    unsigned char h[CK_HEADER_SIZE];
    dt_ckpt_header fh;
    if (pread_full(fd, h, size < CK_HEADER_SIZE ? (size_t)size : CK_HEADER_SIZE, 0) != 0)
        return fail_read(path, err);
    dt_status s = check_header(path, size, h, &fh, err);
    if (s != DT_OK) return s;

    /* Pass 1: the whole-file CRC, into the scratch buffer only. */
    const uint32_t crc_hdr = crc_raw(~0u, h, CK_HEADER_SIZE);
    uint32_t crc = crc_hdr;
    unsigned char t[CK_TRAILER_SIZE];
    if (stream_payload(fd, buf, fh.n_params, fh.slots, NULL, NULL, &crc) != 0 ||
        pread_full(fd, t, CK_TRAILER_SIZE, size - CK_TRAILER_SIZE) != 0)
        return fail_read(path, err);
    if (~crc != get_u32(t))
        return dt_fail(err, DT_EDATA, "%s: checksum mismatch (file is damaged)", path);
    if ((s = check_identity(path, &fh, expect, err)) != DT_OK) return s;

    /* Pass 2: decode into the caller's arrays, re-checking the CRC so that a
     * file replaced between the passes cannot slip through. */
    crc = crc_hdr;
    if (stream_payload(fd, buf, fh.n_params, fh.slots, params, state, &crc) != 0)
        return fail_read(path, err);
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
    close(fd); /* read-only: nothing to lose */
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
 * (the reason in *why). */
static int read_latest(const char *dir, char name[CK_NAME_MAX], dt_error *why)
{
    dt_path path;
    if (dt_path_join(&path, dir, "latest", why) != DT_OK) return -1;
    int fd = open(path.s, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int en = errno;
        dt_fail(why, DT_EDATA, "%s: cannot open: %s", path.s, strerror(en));
        return en == ENOENT ? 0 : -1;
    }
    char buf[CK_NAME_MAX + 44]; /* room for a newline and a little junk */
    size_t n = 0;
    for (;;) {
        ssize_t k = read(fd, buf + n, sizeof buf - 1 - n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            dt_fail(why, DT_EDATA, "%s: cannot read: %s", path.s, strerror(errno));
            close(fd);
            return -1;
        }
        n += (size_t)k;
        if (k == 0 || n == sizeof buf - 1) break;
    }
    close(fd); /* read-only: nothing to lose */
    buf[n] = '\0';
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) buf[--n] = '\0';
    int64_t step;
    if (!parse_ckpt_name(buf, &step) || n >= CK_NAME_MAX) {
        dt_fail(why, DT_EDATA, "%s: does not name a checkpoint file (ckpt-<step>.dtck)", path.s);
        return -1;
    }
    memcpy(name, buf, n + 1);
    return 1;
}

typedef struct {
    const dt_ckpt_header *expect;
    float *params;
    float *const *state;
    dt_ckpt_header *got;
    dt_ckpt_warn_fn warn;
    void *ctx;
    dt_error first; /* the newest failure: the one the user wants to hear */
    bool failed;
} ck_search;

/* One candidate dir/name: DT_OK; DT_EDATA when damaged or not ours (warned,
 * try the next file); any other status is final (in err). */
static dt_status try_candidate(ck_search *s, const char *dir, const char *name, dt_path *path,
                               dt_error *err)
{
    dt_error e = {0};
    dt_status st;
    if (dt_path_join(path, dir, name, &e) != DT_OK)
        st = e.code = DT_EDATA; /* dir/name too long: unusable, like a damaged file */
    else
        st = dt_ckpt_read(path->s, s->expect, s->params, s->state, s->got, &e);
    if (st == DT_OK) return DT_OK;
    if (st != DT_EDATA) {
        if (err) *err = e;
        return st;
    }
    if (!s->failed) s->first = e;
    s->failed = true;
    warnf(s->warn, s->ctx, "%s (skipped)", e.msg);
    return DT_EDATA;
}

/* resume("latest"): the `latest` pointer first, then every file newest first. */
static dt_status resume_newest(ck_search *s, const char *dir, dt_path *path, dt_error *err)
{
    ck_entry *v;
    size_t n;
    int rc = list_ckpts(dir, &v, &n);
    if (rc == -2) return dt_fail(err, DT_EINTERNAL, "%s: out of memory", dir);
    if (rc != 0)
        return dt_fail(err, DT_EDATA, "no usable checkpoint in %s: cannot open directory: %s", dir,
                       strerror(errno));

    char tried[CK_NAME_MAX] = "";
    dt_error why = {0};
    const int lr = read_latest(dir, tried, &why);
    dt_status st = DT_EDATA;
    if (lr == 1)
        st = try_candidate(s, dir, tried, path, err);
    else if (n > 0) /* latest missing or unusable: not a reason to give up, but worth a line */
        warnf(s->warn, s->ctx, "%s; trying the checkpoints in %s newest first", why.msg, dir);
    for (size_t i = 0; i < n && st == DT_EDATA; i++)
        if (lr != 1 || strcmp(v[i].name, tried) != 0) st = try_candidate(s, dir, v[i].name, path, err);
    dt_free(v);
    if (st != DT_EDATA) return st;
    if (s->failed) return dt_fail(err, DT_EDATA, "no usable checkpoint in %s: %s", dir, s->first.msg);
    return dt_fail(err, DT_EDATA, "no usable checkpoint in %s: no ckpt-*.dtck files", dir);
}

dt_status dt_ckpt_resume(const char *what, const char *dir, const dt_ckpt_header *expect,
                         float *params, float *const *state, dt_ckpt_header *got,
                         char *path_out, size_t path_size, dt_ckpt_warn_fn warn, void *ctx,
                         dt_error *err)
{
    DT_CHECK(what && expect);
    dt_path path;
    dt_status st;
    if (strcmp(what, "latest") != 0) {
        st = dt_path_set(&path, what, err);
        if (st == DT_OK) st = dt_ckpt_read(what, expect, params, state, got, err);
    } else {
        DT_CHECK(dir);
        ck_search s = {.expect = expect, .params = params, .state = state, .got = got,
                       .warn = warn, .ctx = ctx};
        st = resume_newest(&s, dir, &path, err);
    }
    if (st == DT_OK && path_out && path_size) {
        DT_CHECK(strlen(path.s) < path_size);
        memcpy(path_out, path.s, strlen(path.s) + 1);
    }
    return st;
}
