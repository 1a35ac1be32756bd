/* data.c - IDX loading, normalisation, the epoch permutation and sharding.
 *
 * Loading. An IDX file is a 4-byte magic (0, 0, type 0x08 = ubyte, number of
 * dimensions), one big-endian u32 per dimension, then the product of the
 * dimensions in bytes. Files may be gzip (detected by the 1f 8b magic, not by
 * the name) or raw. Both go through one small reader (idx_file) that inflates
 * with zlib directly rather than gzread, because gzread silently ignores
 * garbage after the gzip stream; ours verifies every member's CRC and length,
 * accepts concatenated members (valid gzip) and rejects anything else.
 *
 * The reader is written to be fed hostile files (it will be fuzzed):
 *  - every header field is checked before any allocation (magic, dimension
 *    count, zero dimensions, products that overflow 64 bits or the int/long
 *    fields of dt_dataset);
 *  - a header's size is never trusted for allocation: the payload buffer
 *    starts at min(expected, 1 MiB) (or the real size of a raw regular file)
 *    and doubles only as data actually arrives, so a header claiming 2^31
 *    images costs at most twice what the file really holds;
 *  - after the announced payload we read one more byte: if it exists the file
 *    has trailing data; reading it also drives zlib through the gzip trailer,
 *    so a truncated or CRC-damaged .gz is reported even when the payload
 *    length happened to come out right;
 *  - every message starts with the file's path and says what was expected and
 *    what was found. Nothing prints; errors go up as DT_EDATA (DT_EINTERNAL
 *    only for out-of-memory).
 * The whole file is always validated, also with limit > 0 (the verdict on a
 * file must not depend on how much of it a run uses); the samples past the
 * limit stream through a fixed scratch buffer and are not kept.
 *
 * Epoch order: see dt_epoch_permutation below for the exact algorithm. */
#include "dtrain/data.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>

#include "dtrain/rng.h"

#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u
#define IN_CHUNK ((size_t)64 * 1024)        /* compressed read size */
#define START_CAP ((uint64_t)1 << 20)       /* first payload buffer, bytes */
#define MAX_READ ((size_t)1 << 30)          /* one zlib call (uInt) */
#define TRAILING_COUNT_CAP ((uint64_t)1 << 20) /* count trailing bytes up to */

/* ---- the reader --------------------------------------------------------- */

typedef struct {
    const char *path;
    FILE *f;
    int gz;              /* content is gzip: inflate; else raw */
    int z_ready;         /* inflateInit2 succeeded (needs inflateEnd) */
    int z_done;          /* the last gzip member ended and the file with it */
    z_stream zs;
    unsigned char *in;   /* IN_CHUNK bytes: gzip input, or raw bytes peeked */
    size_t in_off, in_len;
    uint64_t raw_size;   /* size of a raw regular file, 0 if unknown */
    uint64_t delivered;  /* (decompressed) bytes handed out so far */
} idx_file;

static dt_status read_error(idx_file *r, dt_error *err)
{
    int e = errno;
    return dt_fail(err, DT_EDATA, "%s: read error: %s", r->path, e ? strerror(e) : "I/O error");
}

static dt_status idx_open(idx_file *r, const char *path, dt_error *err)
{
    memset(r, 0, sizeof *r);
    r->path = path;
    errno = 0;
    r->f = fopen(path, "rb");
    if (!r->f) return dt_fail(err, DT_EDATA, "%s: cannot open: %s", path, strerror(errno));
    r->in = dt_malloc(IN_CHUNK);
    if (!r->in) return dt_fail(err, DT_EINTERNAL, "%s: out of memory", path);

    /* Peek at the first bytes to tell gzip from raw; they stay in `in` and
     * are consumed from there in either mode. */
    errno = 0;
    r->in_len = fread(r->in, 1, IN_CHUNK, r->f);
    if (r->in_len < IN_CHUNK && ferror(r->f)) return read_error(r, err);
    if (r->in_len >= 2 && r->in[0] == 0x1f && r->in[1] == 0x8b) {
        r->gz = 1;
        /* 16 + MAX_WBITS: gzip wrapper only (a zlib or bare deflate stream
         * is not a .gz and gets "incorrect header check"). */
        if (inflateInit2(&r->zs, 16 + MAX_WBITS) != Z_OK)
            return dt_fail(err, DT_EINTERNAL, "%s: cannot initialise zlib", path);
        r->z_ready = 1;
        r->zs.next_in = r->in;
        r->zs.avail_in = (uInt)r->in_len;
    } else {
        struct stat st;
        if (fstat(fileno(r->f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
            r->raw_size = (uint64_t)st.st_size;
    }
    return DT_OK;
}

static void idx_close(idx_file *r)
{
    if (r->z_ready) inflateEnd(&r->zs);
    if (r->f) fclose(r->f);
    dt_free(r->in);
    memset(r, 0, sizeof *r);
}

/* Fill the gzip input buffer, keeping `keep` unconsumed bytes at its start.
 * Returns the number of new bytes (0 at end of file). */
static dt_status gz_refill(idx_file *r, size_t *added, dt_error *err)
{
    size_t keep = r->zs.avail_in;
    if (keep) memmove(r->in, r->zs.next_in, keep);
    errno = 0;
    size_t k = fread(r->in + keep, 1, IN_CHUNK - keep, r->f);
    if (k == 0 && ferror(r->f)) return read_error(r, err);
    r->zs.next_in = r->in;
    r->zs.avail_in = (uInt)(keep + k);
    *added = k;
    return DT_OK;
}

/* A gzip member ended: either the file ends too, another member follows
 * (concatenated .gz files are valid gzip), or it is garbage. */
static dt_status gz_member_end(idx_file *r, dt_error *err)
{
    size_t added = 1;
    while (r->zs.avail_in < 2 && added) {
        dt_status st = gz_refill(r, &added, err);
        if (st) return st;
    }
    if (r->zs.avail_in == 0) {
        r->z_done = 1;
        return DT_OK;
    }
    if (r->zs.avail_in >= 2 && r->zs.next_in[0] == 0x1f && r->zs.next_in[1] == 0x8b) {
        if (inflateReset(&r->zs) != Z_OK)
            return dt_fail(err, DT_EINTERNAL, "%s: zlib reset failed", r->path);
        return DT_OK;
    }
    return dt_fail(err, DT_EDATA,
                   "%s: trailing garbage after the end of the gzip stream "
                   "(%" PRIu64 " bytes decompressed, then bytes that are not gzip)",
                   r->path, r->delivered);
}

/* Read up to n bytes; *got < n only at the end of the (decompressed) data. */
static dt_status idx_read(idx_file *r, void *dst, size_t n, size_t *got, dt_error *err)
{
    unsigned char *out = dst;
    size_t done = 0;
    if (!r->gz) {
        size_t take = DT_MIN(n, r->in_len - r->in_off);
        memcpy(out, r->in + r->in_off, take);
        r->in_off += take;
        done = take;
        if (done < n) {
            errno = 0;
            done += fread(out + done, 1, n - done, r->f);
            if (done < n && ferror(r->f)) return read_error(r, err);
        }
        r->delivered += done;
        *got = done;
        return DT_OK;
    }
    while (done < n && !r->z_done) {
        if (r->zs.avail_in == 0) {
            size_t added = 0;
            dt_status st = gz_refill(r, &added, err);
            if (st) return st;
            if (!added)
                return dt_fail(err, DT_EDATA,
                               "%s: corrupt gzip stream: unexpected end of file after %" PRIu64
                               " decompressed bytes (the .gz is truncated)",
                               r->path, r->delivered + done);
        }
        size_t want = DT_MIN(n - done, MAX_READ);
        r->zs.next_out = out + done;
        r->zs.avail_out = (uInt)want;
        int rc = inflate(&r->zs, Z_NO_FLUSH);
        done += want - r->zs.avail_out;
        if (rc == Z_STREAM_END) {
            r->delivered += done;
            dt_status st = gz_member_end(r, err);
            r->delivered -= done;
            if (st) return st;
        } else if (rc == Z_MEM_ERROR) {
            return dt_fail(err, DT_EINTERNAL, "%s: out of memory in zlib", r->path);
        } else if (rc == Z_BUF_ERROR) {
            /* no progress: only legitimate when the input ran dry, which the
             * refill above handles next iteration */
            if (r->zs.avail_in != 0)
                return dt_fail(err, DT_EDATA, "%s: corrupt gzip stream: %s", r->path,
                               r->zs.msg ? r->zs.msg : "no progress");
        } else if (rc != Z_OK) {
            const char *why = r->zs.msg ? r->zs.msg
                              : rc == Z_NEED_DICT ? "needs a preset dictionary"
                                                  : zError(rc);
            return dt_fail(err, DT_EDATA, "%s: corrupt gzip stream: %s", r->path, why);
        }
    }
    r->delivered += done;
    *got = done;
    return DT_OK;
}

/* ---- headers ------------------------------------------------------------ */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Read and check magic and dimensions: ndims u32 values, none zero. */
static dt_status idx_header(idx_file *r, int ndims, uint32_t *dims, dt_error *err)
{
    const uint32_t want = 0x00000800u | (uint32_t)ndims;
    const char *kind = ndims == 3 ? "IDX3 ubyte images" : "IDX1 ubyte labels";
    const char *gzn = r->gz ? " (decompressed)" : "";
    unsigned char hdr[16];
    size_t got;
    dt_status st = idx_read(r, hdr, 4, &got, err);
    if (st) return st;
    if (got == 0)
        return dt_fail(err, DT_EDATA, "%s: empty file%s, expected an IDX header (%s)", r->path,
                       gzn, kind);
    if (got < 4)
        return dt_fail(err, DT_EDATA,
                       "%s: truncated header: file has %zu bytes%s, an IDX magic needs 4",
                       r->path, got, gzn);
    uint32_t magic = be32(hdr);
    if (magic != want) {
        char hint[96] = "";
        if ((magic & 0xffffff00u) == 0x00000800u)
            snprintf(hint, sizeof hint, "; it is IDX ubyte with %u dimension%s instead of %d",
                     (unsigned)(magic & 0xff), (magic & 0xff) == 1 ? "" : "s", ndims);
        else if ((magic & 0xffff0000u) == 0 && (magic & 0xff00u) != 0x0800u)
            snprintf(hint, sizeof hint, "; element type 0x%02x is not unsigned byte (0x08)",
                     (unsigned)((magic >> 8) & 0xff));
        return dt_fail(err, DT_EDATA, "%s: bad magic 0x%08" PRIx32 ", expected 0x%08" PRIx32
                       " (%s)%s", r->path, magic, want, kind, hint);
    }
    size_t need = 4 * (size_t)ndims;
    st = idx_read(r, hdr + 4, need, &got, err);
    if (st) return st;
    if (got < need)
        return dt_fail(err, DT_EDATA,
                       "%s: truncated header: file has %zu bytes%s, the %d-dimension header "
                       "needs %zu", r->path, 4 + got, gzn, ndims, 4 + need);
    static const char *const names3[] = {"image count", "rows", "columns"};
    for (int i = 0; i < ndims; i++) {
        dims[i] = be32(hdr + 4 + 4 * i);
        if (dims[i] == 0)
            return dt_fail(err, DT_EDATA, "%s: header says zero %s", r->path,
                           ndims == 3 ? names3[i] : "labels");
    }
    return DT_OK;
}

/* ---- payload -------------------------------------------------------------- */

typedef struct {
    uint64_t total;     /* bytes the header announces */
    uint64_t keep;      /* first `keep` bytes go into the buffer */
    int check_labels;   /* payload is labels: range-check every byte */
    int max_classes;    /* labels must be < this (<= 256) */
    int max_label;      /* out: largest label seen (whole file) */
    const char *what;   /* "1024 images of 28x28 = 802816 bytes" */
    int header_len;
} payload_spec;

static dt_status check_labels(const idx_file *r, payload_spec *p, const uint8_t *b, size_t n,
                              uint64_t base, dt_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (b[i] >= p->max_classes)
            return dt_fail(err, DT_EDATA,
                           "%s: label %d at index %" PRIu64 " is out of range for %d classes",
                           r->path, b[i], base + i, p->max_classes);
        if (b[i] > p->max_label) p->max_label = b[i];
    }
    return DT_OK;
}

static dt_status truncated(const idx_file *r, const payload_spec *p, uint64_t have,
                           dt_error *err)
{
    return dt_fail(err, DT_EDATA,
                   "%s: truncated: header says %s, file has %" PRIu64
                   " bytes after the %d-byte header%s",
                   r->path, p->what, have, p->header_len, r->gz ? " (decompressed)" : "");
}

/* Read the whole payload, keep the first p->keep bytes in *out (allocated
 * with dt_malloc, grown only as data arrives), stream the rest through a
 * scratch buffer, and insist the data ends exactly at p->total. */
static dt_status read_payload(idx_file *r, payload_spec *p, uint8_t **out, dt_error *err)
{
    dt_status st;
    size_t got;
    uint8_t *buf = NULL;
    uint64_t have = 0;

    /* Start with what the file can really hold: a raw regular file's size,
     * else 1 MiB; double while data keeps arriving. */
    uint64_t cap = DT_MIN(p->keep, START_CAP);
    if (r->raw_size > r->delivered) {
        uint64_t left = r->raw_size - r->delivered;
        cap = DT_MIN(p->keep, DT_MAX(left, 1));
    }
    if (cap > SIZE_MAX) return dt_fail(err, DT_EINTERNAL, "%s: too large", r->path);
    buf = dt_malloc((size_t)cap);
    if (!buf) return dt_fail(err, DT_EINTERNAL, "%s: out of memory", r->path);

    while (have < p->keep) {
        if (have == cap) {
            uint64_t ncap = cap > p->keep / 2 ? p->keep : 2 * cap;
            uint8_t *nb = ncap <= SIZE_MAX ? dt_realloc(buf, (size_t)ncap) : NULL;
            if (!nb) {
                st = dt_fail(err, DT_EINTERNAL, "%s: out of memory (%" PRIu64 " bytes)",
                             r->path, ncap);
                goto fail;
            }
            buf = nb;
            cap = ncap;
        }
        size_t want = (size_t)DT_MIN(cap - have, (uint64_t)MAX_READ);
        st = idx_read(r, buf + have, want, &got, err);
        if (st) goto fail;
        if (p->check_labels && (st = check_labels(r, p, buf + have, got, have, err))) goto fail;
        have += got;
        if (got < want) {
            st = truncated(r, p, have, err);
            goto fail;
        }
    }

    /* The samples past the limit: validated, not kept. */
    uint8_t scratch[8192];
    while (have < p->total) {
        size_t want = (size_t)DT_MIN(p->total - have, (uint64_t)sizeof scratch);
        st = idx_read(r, scratch, want, &got, err);
        if (st) goto fail;
        if (p->check_labels && (st = check_labels(r, p, scratch, got, have, err))) goto fail;
        have += got;
        if (got < want) {
            st = truncated(r, p, have, err);
            goto fail;
        }
    }

    /* One byte more must not exist. Reading it also makes zlib check the
     * gzip trailer (CRC and length) and what follows the stream. */
    st = idx_read(r, scratch, 1, &got, err);
    if (st) goto fail;
    if (got) {
        /* Count a bounded amount of the excess for the message; a second
         * error while counting does not change the verdict. */
        uint64_t extra = 1;
        dt_error ignored;
        while (extra <= TRAILING_COUNT_CAP &&
               idx_read(r, scratch, sizeof scratch, &got, &ignored) == DT_OK && got)
            extra += got;
        if (extra > TRAILING_COUNT_CAP)
            st = dt_fail(err, DT_EDATA,
                         "%s: trailing garbage: more than %" PRIu64 " bytes%s after the %s "
                         "the header announces", r->path, TRAILING_COUNT_CAP,
                         r->gz ? " (decompressed)" : "", p->what);
        else
            st = dt_fail(err, DT_EDATA,
                         "%s: trailing garbage: %" PRIu64 " bytes%s after the %s the header "
                         "announces", r->path, extra, r->gz ? " (decompressed)" : "", p->what);
        goto fail;
    }
    *out = buf;
    return DT_OK;
fail:
    dt_free(buf);
    return st;
}

/* ---- dt_idx_load ---------------------------------------------------------- */

dt_status dt_idx_load(const char *images_path, const char *labels_path, long limit,
                      int max_classes, dt_dataset *out, dt_error *err)
{
    idx_file im, lb;
    uint32_t idims[3], ldims[1];
    uint8_t *images = NULL, *labels = NULL;
    char what_im[160], what_lb[96];
    dt_status st;

    memset(out, 0, sizeof *out);
    memset(&im, 0, sizeof im);
    memset(&lb, 0, sizeof lb);
    if (max_classes <= 0 || max_classes > 256) max_classes = 256; /* any ubyte */

    /* Both headers first: every structural problem is found before any
     * payload allocation. */
    if ((st = idx_open(&im, images_path, err))) goto done;
    if ((st = idx_header(&im, 3, idims, err))) goto done;
    if ((st = idx_open(&lb, labels_path, err))) goto done;
    if ((st = idx_header(&lb, 1, ldims, err))) goto done;

    uint64_t n = idims[0], h = idims[1], w = idims[2], pixels, total;
    if (h > INT_MAX || w > INT_MAX || __builtin_mul_overflow(h, w, &pixels) ||
        pixels > (uint64_t)LONG_MAX || __builtin_mul_overflow(n, pixels, &total) ||
        total > (uint64_t)LONG_MAX) {
        st = dt_fail(err, DT_EDATA,
                     "%s: header sizes %" PRIu64 " x %" PRIu64 " x %" PRIu64
                     " overflow (the product does not fit in 63 bits)",
                     images_path, n, h, w);
        goto done;
    }
    uint64_t kept = limit > 0 && (uint64_t)limit < n ? (uint64_t)limit : n;
    snprintf(what_im, sizeof what_im, "%" PRIu64 " images of %" PRIu64 "x%" PRIu64 " = %" PRIu64
             " bytes", n, h, w, total);
    snprintf(what_lb, sizeof what_lb, "%" PRIu32 " labels = %" PRIu32 " bytes", ldims[0],
             ldims[0]);

    payload_spec pim = {.total = total, .keep = kept * pixels, .what = what_im,
                        .header_len = 16};
    if ((st = read_payload(&im, &pim, &images, err))) goto done;

    uint64_t kept_l = DT_MIN(kept, (uint64_t)ldims[0]);
    payload_spec plb = {.total = ldims[0], .keep = kept_l, .check_labels = 1,
                        .max_classes = max_classes, .max_label = -1, .what = what_lb,
                        .header_len = 8};
    if ((st = read_payload(&lb, &plb, &labels, err))) goto done;

    if (ldims[0] != n) {
        st = dt_fail(err, DT_EDATA,
                     "%s: count mismatch: %" PRIu32 " labels, but %s has %" PRIu64 " images",
                     labels_path, ldims[0], images_path, n);
        goto done;
    }

    out->n = (long)kept;
    out->c = 1;
    out->h = (int)h;
    out->w = (int)w;
    out->sample_size = (long)pixels;
    out->images = images;
    out->labels = labels;
    /* over the whole file, so the class count does not depend on `limit` */
    out->n_classes = 1 + plb.max_label;
    images = labels = NULL;
    st = DT_OK;
done:
    dt_free(images);
    dt_free(labels);
    idx_close(&im);
    idx_close(&lb);
    return st;
}

void dt_dataset_free(dt_dataset *ds)
{
    if (!ds) return;
    dt_free(ds->images);
    dt_free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

/* ---- normalisation --------------------------------------------------------- */

/* Exact: a histogram of byte values, then mean and population variance over
 * the 256 bins (two passes over the bins, no cancellation). An empty data
 * set gives mean 0, std 0; a constant one std 0 (callers decide). */
void dt_dataset_stats(const dt_dataset *ds, double *mean, double *std)
{
    uint64_t hist[256] = {0};
    uint64_t count = (uint64_t)ds->n * (uint64_t)ds->sample_size;
    for (uint64_t i = 0; i < count; i++) hist[ds->images[i]]++;
    double m = 0, v = 0;
    if (count) {
        for (int b = 0; b < 256; b++) m += (double)hist[b] * (b / 255.0);
        m /= (double)count;
        for (int b = 0; b < 256; b++) {
            double d = b / 255.0 - m;
            v += (double)hist[b] * d * d;
        }
        v /= (double)count;
    }
    *mean = m;
    *std = sqrt(v);
}

void dt_gather_batch(const dt_dataset *ds, const uint32_t *idx, long count, float mean,
                     float std, float *x, int *y)
{
    /* (v/255 - mean)/std = v*scale + shift: a convert and a multiply-add
     * per pixel, which vectorises (a 256-entry table lookup does not, and
     * cost 4% of an MLP update). */
    const float scale = (float)(1.0 / (255.0 * (double)std));
    const float shift = (float)(-(double)mean / (double)std);
    const long ss = ds->sample_size;
    for (long k = 0; k < count; k++) {
        DT_CHECK(idx[k] < (uint64_t)ds->n);
        const uint8_t *restrict src = ds->images + (size_t)idx[k] * (size_t)ss;
        float *restrict dst = x + (size_t)k * (size_t)ss;
        for (long j = 0; j < ss; j++) dst[j] = (float)src[j] * scale + shift;
        y[k] = ds->labels[idx[k]];
    }
}

/* ---- data order -------------------------------------------------------------- */

/* The epoch permutation (tests/reference/SPEC.md "Data order"; README cites this):
 *
 *   stream = DT_STREAM_PERMUTATION | (epoch << 8)
 *   perm[i] = i                                   for i in [0, n)
 *   for i = n-1 down to 1:
 *       j = dt_rand_below(seed, stream, counter = i, bound = i + 1)
 *       swap(perm[i], perm[j])
 *
 * i.e. Durstenfeld's Fisher-Yates shuffle whose i-th draw is the counter-based
 * value (seed, stream, i), so it is a pure function of (seed, epoch, n); the
 * low byte of the stream keeps it apart from other uses (DT_STREAM_INIT = 2),
 * the epoch sits above it (epochs < 2^56). dt_rand_below is unbiased
 * (rejection), so every permutation is equally likely up to the generator. */
void dt_epoch_permutation(uint64_t seed, uint64_t epoch, uint32_t *perm, long n)
{
    DT_CHECK(n >= 0 && (uint64_t)n <= (uint64_t)UINT32_MAX + 1);
    const uint64_t stream = (uint64_t)DT_STREAM_PERMUTATION | (epoch << 8);
    for (long i = 0; i < n; i++) perm[i] = (uint32_t)i;
    for (long i = n - 1; i > 0; i--) {
        uint64_t j = dt_rand_below(seed, stream, (uint64_t)i, (uint64_t)i + 1);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

long dt_updates_per_epoch(long n, long global_batch, bool drop_last)
{
    DT_CHECK(n >= 0 && global_batch > 0);
    return drop_last ? n / global_batch : n / global_batch + (n % global_batch != 0);
}

void dt_shard(long b, int rank, int world, long *begin, long *end)
{
    DT_CHECK(b >= 0 && world > 0 && rank >= 0 && rank < world);
    /* 128-bit products: r*b cannot overflow whatever b and P are */
    *begin = (long)((__int128)rank * b / world);
    *end = (long)((__int128)(rank + 1) * b / world);
}
