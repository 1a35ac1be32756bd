/* fuzz_idx.c - libFuzzer target for the IDX reader (dt_idx_load).
 *
 * Input layout:
 *   byte 0     flags
 *                bits 0-1  how the images file is stored: 0 the bytes as
 *                          they are (raw, or gzip when they start 1f 8b),
 *                          1 gzip-compressed here with zlib, 2 the bytes
 *                          after a prepended gzip magic 1f 8b (so mutations
 *                          exercise the gzip reader), 3 gzip as two
 *                          concatenated members
 *                bits 2-3  the same for the labels file
 *                bits 4-5  limit: 0, 1, 2, 1000000
 *                bits 6-7  max_classes: 0 (any), 10, 1, 300
 *   bytes 1-2  length L of the images file's bytes (little-endian)
 *   then       min(L, what is left) bytes: the images file's content,
 *              the rest: the labels file's content.
 * Both files are memfds. Properties checked besides the sanitizers:
 *  - a failure is DT_EDATA with a one-line message that starts with the
 *    path of one of the two files, and the dataset is left zeroed;
 *  - a success agrees with the bytes: shape and count from the headers,
 *    n <= limit, labels below n_classes <= max_classes, and, when the
 *    decompressed content is known (encodings 0 non-gzip, 1, 3), the kept
 *    images and labels are exactly the payload bytes. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "dtrain/data.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

typedef struct {
    unsigned char *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) fz_die("realloc");
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
}

/* Append src as one gzip member (zlib's gzip wrapper, windowBits 16+15). */
static void gzip_member(buf *b, const unsigned char *src, size_t n, int level)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        fz_die("deflateInit2");
    size_t bound = deflateBound(&zs, (uLong)n) + 64;
    unsigned char *out = malloc(bound);
    if (!out) fz_die("malloc");
    zs.next_in = (unsigned char *)src;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)bound;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END) fz_die("deflate");
    put(b, out, bound - zs.avail_out);
    deflateEnd(&zs);
    free(out);
}

/* The file content for encoding `enc` of the bytes src[0..n). *known: the
 * decompressed content is src itself. */
static void encode(buf *b, int enc, const unsigned char *src, size_t n, int *known)
{
    b->n = 0;
    *known = 0;
    switch (enc) {
    case 0:
        put(b, src, n);
        *known = !(n >= 2 && src[0] == 0x1f && src[1] == 0x8b);
        break;
    case 1:
        gzip_member(b, src, n, n & 1 ? 0 : 6); /* stored blocks sometimes */
        *known = 1;
        break;
    case 2:
        put(b, "\x1f\x8b", 2);
        put(b, src, n);
        break;
    default:
        gzip_member(b, src, n / 2, 1);
        gzip_member(b, src + n / 2, n - n / 2, 9);
        *known = 1;
        break;
    }
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static fz_file fim, flb;
    static buf bim, blb;
    fz_open(&fim, "dtrain-fuzz-images");
    fz_open(&flb, "dtrain-fuzz-labels");
    if (size < 3) return 0;

    const unsigned flags = data[0];
    size_t ilen = (size_t)data[1] | (size_t)data[2] << 8;
    const unsigned char *img = data + 3;
    size_t rest = size - 3;
    if (ilen > rest) ilen = rest;
    const unsigned char *lab = img + ilen;
    size_t llen = rest - ilen;

    static const long limits[4] = {0, 1, 2, 1000000};
    static const int classes[4] = {0, 10, 1, 300};
    long limit = limits[(flags >> 4) & 3];
    int max_classes = classes[(flags >> 6) & 3];

    int known_im, known_lb;
    encode(&bim, (int)(flags & 3), img, ilen, &known_im);
    encode(&blb, (int)((flags >> 2) & 3), lab, llen, &known_lb);
    fz_set(&fim, bim.p, bim.n);
    fz_set(&flb, blb.p, blb.n);

    dt_dataset ds;
    dt_error err = {0};
    dt_status st = dt_idx_load(fim.path, flb.path, limit, max_classes, &ds, &err);
    fz_verdict(st, st ? err.msg : "");
    if (st != DT_OK) {
        FZ_ASSERT(st == DT_EDATA, "status %d: %s", st, err.msg);
        FZ_ASSERT(fz_one_line(err.msg), "message not one non-empty line: '%s'", err.msg);
        FZ_ASSERT(strncmp(err.msg, fim.path, strlen(fim.path)) == 0 ||
                      strncmp(err.msg, flb.path, strlen(flb.path)) == 0,
                  "message does not name a file: %s", err.msg);
        FZ_ASSERT(ds.images == NULL && ds.labels == NULL && ds.n == 0, "dataset not cleared");
        return 0;
    }

    FZ_ASSERT(ds.n > 0 && ds.c == 1 && ds.h > 0 && ds.w > 0, "bad shape n=%ld %dx%dx%d", ds.n,
              ds.c, ds.h, ds.w);
    FZ_ASSERT(ds.sample_size == (long)ds.h * ds.w, "sample_size %ld", ds.sample_size);
    FZ_ASSERT(limit <= 0 || ds.n <= limit, "n %ld > limit %ld", ds.n, limit);
    int cap = max_classes <= 0 || max_classes > 256 ? 256 : max_classes;
    FZ_ASSERT(ds.n_classes >= 1 && ds.n_classes <= cap, "n_classes %d", ds.n_classes);
    for (long i = 0; i < ds.n; i++)
        FZ_ASSERT(ds.labels[i] < ds.n_classes, "label %d >= n_classes %d", ds.labels[i],
                  ds.n_classes);
    if (known_im) {
        FZ_ASSERT(ilen >= 16, "loaded from %zu bytes", ilen);
        uint32_t n = be32(img + 4), h = be32(img + 8), w = be32(img + 12);
        FZ_ASSERT(be32(img) == 0x803 && (uint64_t)h * w * n + 16 == ilen,
                  "header %08x %u x %u x %u vs %zu bytes", be32(img), n, h, w, ilen);
        FZ_ASSERT((uint32_t)ds.h == h && (uint32_t)ds.w == w, "shape");
        FZ_ASSERT(ds.n == (limit > 0 && limit < (long)n ? limit : (long)n), "count");
        FZ_ASSERT(memcmp(ds.images, img + 16, (size_t)ds.n * (size_t)ds.sample_size) == 0,
                  "images differ from the file");
    }
    if (known_lb) {
        FZ_ASSERT(llen == 8 + be32(lab + 4) && be32(lab) == 0x801, "labels header");
        FZ_ASSERT(memcmp(ds.labels, lab + 8, (size_t)ds.n) == 0, "labels differ from the file");
        int mx = 0;
        for (size_t i = 8; i < llen; i++) mx = lab[i] > mx ? lab[i] : mx;
        FZ_ASSERT(ds.n_classes == mx + 1, "n_classes %d, largest label %d", ds.n_classes, mx);
    }
    double mean, sd;
    dt_dataset_stats(&ds, &mean, &sd);
    FZ_ASSERT(mean >= 0 && mean <= 1 && sd >= 0 && sd <= 1, "stats %g %g", mean, sd);
    dt_dataset_free(&ds);
    return 0;
}
