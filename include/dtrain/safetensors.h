/* safetensors.h - tensors in and out in the safetensors format (the format
 * of Hugging Face's `safetensors` library, which PyTorch users save with
 * safetensors.torch.save_file(model.state_dict(), PATH)).
 *
 * The format, as this module reads and writes it:
 *
 *   offset  size  field
 *        0     8  N, the header's length in bytes, unsigned little-endian
 *        8     N  the header: a JSON object, UTF-8, padded with spaces
 *      8+N        the data section: every tensor's bytes, back to back
 *
 * The header maps each tensor's name to
 *   {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}
 * (offsets in bytes, relative to the data section, end exclusive), plus an
 * optional "__metadata__" object whose values are all strings. Elements
 * are little-endian, row-major (C order).
 *
 * Writing: F32 only, the header padded with spaces so that the data starts
 * at a multiple of 8 bytes (as the reference implementation does), the
 * tensors in the caller's order; atomically and durably (fs.h): complete
 * or absent, DT_EINTERNAL with the file and strerror on a storage fault.
 *
 * Reading is strict, because the bytes may come from anywhere: the file
 * must be a regular file; N at least 2, at most 100000000 and within the
 * file; the header valid UTF-8 and exactly one JSON object of the shape
 * above (no unknown or repeated keys, no duplicate tensor names, integers
 * without sign, fraction or exponent, only whitespace after the object);
 * a known dtype; a shape of at most DT_ST_MAX_DIMS dimensions whose byte
 * size (which must not overflow) equals end - begin; and the tensors must
 * tile the data section exactly: no overlap, no gap, nothing after the
 * last one. Only F32 tensors can be read into floats, and a non-finite
 * value (NaN, Inf) is refused as damage. Every failure is DT_EDATA with
 * one line that starts with the file's path and names the tensor
 * concerned, e.g.
 *   w.safetensors: tensor "2.weight": shape [10, 64], expected [10, 128]
 * (DT_EINTERNAL only for out of memory and I/O errors). Nothing prints. */
#ifndef DTRAIN_SAFETENSORS_H
#define DTRAIN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "dtrain/common.h"

#define DT_ST_MAX_DIMS 8
#define DT_ST_NAME_MAX 256   /* bytes of a tensor name, with its NUL */
#define DT_ST_HEADER_MAX 100000000ull

/* A tensor to write, or one a reader expects: float32, row-major. */
typedef struct {
    const char *name;
    int ndim;
    long shape[DT_ST_MAX_DIMS];
    float *data; /* write: read from; read: written to (count floats) */
} dt_st_tensor;

/* One "__metadata__" entry (both strings, any UTF-8). */
typedef struct {
    const char *key, *value;
} dt_st_meta;

/* Write `n` tensors and `n_meta` metadata entries to path. Names must be
 * unique and not "__metadata__" (a bug otherwise). */
dt_status dt_st_write(const char *path, const dt_st_tensor *t, int n, const dt_st_meta *meta,
                      int n_meta, dt_error *err);

/* ---- reading ------------------------------------------------------------ */

/* What the header says of one tensor. */
typedef struct {
    char name[DT_ST_NAME_MAX];
    char dtype[16];
    int ndim;
    uint64_t shape[DT_ST_MAX_DIMS];
    uint64_t count;      /* elements: the product of the shape (1 for []) */
    uint64_t begin, end; /* bytes, relative to the data section */
} dt_st_info;

/* An opened file whose header has been verified (the data not yet read). */
typedef struct {
    char *path;
    int fd;
    uint64_t data_start, data_len; /* the data section within the file */
    int n;                         /* tensors, in header order */
    dt_st_info *tensors;
    int n_meta;
    char **meta; /* key0, value0, key1, value1, ... */
} dt_st_file;

/* Open path and verify everything but the values (see above). *out is the
 * caller's to dt_st_close on success, NULL on failure. */
dt_status dt_st_open(const char *path, dt_st_file **out, dt_error *err);
void dt_st_close(dt_st_file *f);

/* The tensor called name, or NULL. */
const dt_st_info *dt_st_find(const dt_st_file *f, const char *name);
/* The metadata value of key, or NULL. */
const char *dt_st_meta_get(const dt_st_file *f, const char *key);

/* The file holds exactly the tensors of want[0..n): every name present
 * with dtype F32 and that shape, and no other tensor. The message names
 * the first tensor that is missing, not expected, of another dtype or of
 * another shape. */
dt_status dt_st_check(const dt_st_file *f, const dt_st_tensor *want, int n, dt_error *err);

/* Read the F32 tensor t into dst (t->count floats), checking that every
 * value is finite. */
dt_status dt_st_read_f32(const dt_st_file *f, const dt_st_info *t, float *dst, dt_error *err);

/* open + check + read every tensor of want into its data + close. On
 * failure the arrays may have been partly written. */
dt_status dt_st_load(const char *path, const dt_st_tensor *want, int n, dt_error *err);

#endif
