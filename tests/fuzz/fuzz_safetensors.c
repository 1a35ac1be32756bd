/* fuzz_safetensors.c - libFuzzer target for the safetensors reader
 * (dt_st_open, dt_st_check, dt_st_read_f32, dt_st_load).
 *
 * Input layout:
 *   byte 0   mode
 *              bit 0  the rest is HEADER '\0' DATA: the harness writes the
 *                     8-byte length of HEADER in front, so that mutations of
 *                     the JSON text reach the parser with a consistent length
 *                     (else the rest is the file's bytes as they are)
 *              bit 1  also dt_st_load against a fixed model of four tensors
 *                     (0.weight [3, 2], 0.bias [3], 2.weight [1, 3],
 *                     2.bias [1]), the import path of model.init_from
 *              bit 2  a file that opens with only finite F32 tensors is
 *                     written again with dt_st_write (in /dev/shm) and read
 *                     back: the same names, shapes, values and metadata
 *   rest     see bit 0
 * Properties besides the sanitizers: a failure is DT_EDATA with one line
 * that starts with the file's path; a file that opens has tensors whose
 * extents hold exactly their shape's bytes and tile the data section,
 * unique names, and F32 values that read back as the file's little-endian
 * bits (or a non-finite one is refused); dt_st_load succeeds exactly when
 * the file holds the model's four tensors as F32, all finite, and nothing
 * else. */
#define _GNU_SOURCE
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtrain/safetensors.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static const dt_st_tensor model[] = {
    {.name = "0.weight", .ndim = 2, .shape = {3, 2}},
    {.name = "0.bias", .ndim = 1, .shape = {3}},
    {.name = "2.weight", .ndim = 2, .shape = {1, 3}},
    {.name = "2.bias", .ndim = 1, .shape = {1}},
};
#define MODEL_N 4

static char copy_path[128]; /* the round trip's file, removed at exit */
static void remove_copy(void) { unlink(copy_path); }

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void check_failure(dt_status st, const dt_error *err, const char *path)
{
    FZ_ASSERT(st == DT_EDATA, "status %d: %s", st, err->msg);
    FZ_ASSERT(fz_one_line(err->msg), "message not one non-empty line: '%s'", err->msg);
    FZ_ASSERT(!strncmp(err->msg, path, strlen(path)), "message does not name the file: '%s'",
              err->msg);
}

/* Reads every F32 tensor: values equal the file's bits, or refused when
 * one is not finite. Returns whether all tensors are finite F32. */
static int check_values(const dt_st_file *f, const unsigned char *file, size_t n)
{
    int all_f32 = 1;
    for (int i = 0; i < f->n; i++) {
        const dt_st_info *t = &f->tensors[i];
        if (strcmp(t->dtype, "F32")) {
            all_f32 = 0;
            continue;
        }
        FZ_ASSERT(f->data_start + t->end <= n, "extent past the file");
        float *v = malloc(t->count ? 4 * t->count : 1);
        if (!v) fz_die("malloc");
        dt_error err = {0};
        dt_status st = dt_st_read_f32(f, t, v, &err);
        const unsigned char *src = file + f->data_start + t->begin;
        int finite = 1;
        for (uint64_t k = 0; k < t->count && finite; k++) {
            uint32_t bits = le32(src + 4 * k);
            float x;
            memcpy(&x, &bits, 4);
            finite = isfinite(x);
            if (st == DT_OK) FZ_ASSERT(!memcmp(&v[k], &bits, 4), "value %llu differs", (unsigned long long)k);
        }
        if (finite) FZ_ASSERT(st == DT_OK, "finite tensor refused: %s", err.msg);
        else {
            check_failure(st, &err, f->path);
            all_f32 = 0;
        }
        free(v);
    }
    return all_f32;
}

static void check_structure(const dt_st_file *f)
{
    uint64_t total = 0;
    for (int i = 0; i < f->n; i++) {
        const dt_st_info *t = &f->tensors[i];
        FZ_ASSERT(t->begin <= t->end && t->end <= f->data_len, "extent out of the data");
        uint64_t count = 1;
        for (int d = 0; d < t->ndim; d++) count *= t->shape[d];
        FZ_ASSERT(count == t->count, "count");
        unsigned es = !strcmp(t->dtype, "F64") || !strcmp(t->dtype, "I64") || !strcmp(t->dtype, "U64") ? 8
                      : !strcmp(t->dtype, "F32") || !strcmp(t->dtype, "I32") || !strcmp(t->dtype, "U32") ? 4
                      : !strcmp(t->dtype, "F16") || !strcmp(t->dtype, "BF16") || !strcmp(t->dtype, "I16") ||
                                !strcmp(t->dtype, "U16") ? 2 : 1;
        FZ_ASSERT(t->end - t->begin == count * es, "extent is not the shape's bytes");
        FZ_ASSERT(fz_one_line(t->name) || !t->name[0], "name with a control character");
        for (int j = 0; j < i; j++) FZ_ASSERT(strcmp(t->name, f->tensors[j].name), "duplicate name");
        total += t->end - t->begin;
    }
    FZ_ASSERT(total == f->data_len, "the tensors do not tile the data section");
}

/* The file's finite F32 tensors written again and read back. */
static void round_trip(const dt_st_file *f)
{
    if (!copy_path[0]) {
        struct stat sb;
        const char *base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) ? "/dev/shm" : "/tmp";
        snprintf(copy_path, sizeof copy_path, "%s/dtrain-fuzz-st-%ld", base, (long)getpid());
        atexit(remove_copy);
    }
    for (int i = 0; i < f->n; i++) /* the writer takes dimensions as long */
        for (int d = 0; d < f->tensors[i].ndim; d++)
            if (f->tensors[i].shape[d] > (uint64_t)LONG_MAX) return;
    dt_st_tensor *t = calloc((size_t)f->n + 1, sizeof *t);
    dt_st_meta *m = calloc((size_t)f->n_meta + 1, sizeof *m);
    if (!t || !m) fz_die("calloc");
    for (int i = 0; i < f->n; i++) {
        const dt_st_info *in = &f->tensors[i];
        t[i].name = in->name;
        t[i].ndim = in->ndim;
        for (int d = 0; d < in->ndim; d++) t[i].shape[d] = (long)in->shape[d];
        if (!(t[i].data = malloc(in->count ? 4 * in->count : 1))) fz_die("malloc");
        dt_error err = {0};
        FZ_ASSERT(dt_st_read_f32(f, in, t[i].data, &err) == DT_OK, "read: %s", err.msg);
    }
    for (int i = 0; i < f->n_meta; i++) m[i] = (dt_st_meta){f->meta[2 * i], f->meta[2 * i + 1]};
    dt_error err = {0};
    FZ_ASSERT(dt_st_write(copy_path, t, f->n, m, f->n_meta, &err) == DT_OK, "write: %s", err.msg);
    dt_st_file *g;
    FZ_ASSERT(dt_st_open(copy_path, &g, &err) == DT_OK, "written file refused: %s", err.msg);
    FZ_ASSERT(g->n == f->n && g->n_meta == f->n_meta, "counts differ");
    FZ_ASSERT(dt_st_check(g, t, f->n, &err) == DT_OK, "written file differs: %s", err.msg);
    for (int i = 0; i < f->n_meta; i++) {
        const char *v = dt_st_meta_get(g, f->meta[2 * i]);
        FZ_ASSERT(v && !strcmp(v, f->meta[2 * i + 1]), "metadata differs");
    }
    for (int i = 0; i < f->n; i++) {
        const dt_st_info *in = dt_st_find(g, t[i].name);
        float *v = malloc(in->count ? 4 * in->count : 1);
        if (!v) fz_die("malloc");
        FZ_ASSERT(dt_st_read_f32(g, in, v, &err) == DT_OK, "read back: %s", err.msg);
        FZ_ASSERT(!memcmp(v, t[i].data, 4 * in->count), "values differ after the round trip");
        free(v);
        free(t[i].data);
    }
    dt_st_close(g);
    free(t);
    free(m);
}

/* Would dt_st_load against the model succeed on this (opened) file? */
static int fits_model(const dt_st_file *f, const unsigned char *file)
{
    if (f->n != MODEL_N) return 0;
    for (int k = 0; k < MODEL_N; k++) {
        const dt_st_info *t = dt_st_find(f, model[k].name);
        if (!t || strcmp(t->dtype, "F32") || t->ndim != model[k].ndim) return 0;
        for (int d = 0; d < t->ndim; d++)
            if (t->shape[d] != (uint64_t)model[k].shape[d]) return 0;
        for (uint64_t i = 0; i < t->count; i++) {
            uint32_t bits = le32(file + f->data_start + t->begin + 4 * i);
            float x;
            memcpy(&x, &bits, 4);
            if (!isfinite(x)) return 0;
        }
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static fz_file ff;
    fz_open(&ff, "dtrain-fuzz-st");
    if (size < 1) return 0;
    const unsigned mode = data[0];
    const unsigned char *rest = data + 1;
    size_t n = size - 1;
    unsigned char *file;
    if (mode & 1) { /* HEADER \0 DATA, with the length put in front */
        const unsigned char *nul = memchr(rest, 0, n);
        size_t hlen = nul ? (size_t)(nul - rest) : n;
        size_t dlen = nul ? n - hlen - 1 : 0;
        file = malloc(8 + hlen + dlen);
        if (!file) fz_die("malloc");
        for (int i = 0; i < 8; i++) file[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
        memcpy(file + 8, rest, hlen);
        if (dlen) memcpy(file + 8 + hlen, nul + 1, dlen);
        n = 8 + hlen + dlen;
    } else {
        file = malloc(n ? n : 1);
        if (!file) fz_die("malloc");
        memcpy(file, rest, n);
    }
    fz_set(&ff, file, n);

    dt_st_file *f = NULL;
    dt_error err = {0};
    dt_status st = dt_st_open(ff.path, &f, &err);
    fz_verdict(st, st ? err.msg : "");
    int fits = 0;
    if (st != DT_OK) {
        check_failure(st, &err, ff.path);
        FZ_ASSERT(f == NULL, "file handed out on failure");
    } else {
        check_structure(f);
        int all_finite_f32 = check_values(f, file, n);
        fits = fits_model(f, file);
        if ((mode & 4) && all_finite_f32) round_trip(f);
        dt_st_close(f);
    }
    if (mode & 2) {
        float a[6], b[3], c[3], d[1];
        dt_st_tensor want[MODEL_N];
        memcpy(want, model, sizeof want);
        want[0].data = a, want[1].data = b, want[2].data = c, want[3].data = d;
        dt_error e2 = {0};
        dt_status ls = dt_st_load(ff.path, want, MODEL_N, &e2);
        if (ls != DT_OK) check_failure(ls, &e2, ff.path);
        FZ_ASSERT((ls == DT_OK) == fits, "dt_st_load says %d, the file %s the model: %s", ls,
                  fits ? "fits" : "does not fit", e2.msg);
    }
    free(file);
    return 0;
}
