/* data.h - datasets in IDX format, normalisation, epoch order and sharding.
 *
 * Images stay as uint8 in memory (47 MB for Fashion-MNIST's training set)
 * and are normalised per batch into float. Every header field of an IDX
 * file is checked against the file's real (decompressed) size before any
 * allocation, so a truncated or lying file is an error naming the file and
 * what is wrong, never a crash or a huge allocation.
 *
 * Data order (tests/reference/SPEC.md): epoch e visits the training set in the order of a
 * permutation generated from (seed, e) alone; global batch i is positions
 * [i*B, (i+1)*B) of it; rank r of P takes [floor(r*b/P), floor((r+1)*b/P)).
 * The permutation is a Fisher-Yates shuffle driven by a counter-based
 * generator (see dt_rand_u64 in rng.h), so it depends on nothing but the
 * seed and the epoch number. */
#ifndef DTRAIN_DATA_H
#define DTRAIN_DATA_H

#include <stdbool.h>
#include <stdint.h>

#include "dtrain/common.h"

typedef struct {
    long n;            /* samples */
    int c, h, w;       /* per-sample shape (IDX3 images: c = 1) */
    long sample_size;  /* c*h*w */
    uint8_t *images;   /* n * sample_size bytes */
    uint8_t *labels;   /* n bytes */
    int n_classes;     /* 1 + the largest label */
} dt_dataset;

/* Read an image file (IDX3 ubyte: magic 0x00000803) and a label file (IDX1
 * ubyte: 0x00000801), gzip or raw (detected by content, not the name).
 * limit > 0 keeps only the first `limit` samples. Checks: magic, dimension
 * counts, sizes against the file length (truncated / trailing garbage),
 * equal counts in both files, labels < max_classes. DT_EDATA on failure,
 * the message naming the file. */
dt_status dt_idx_load(const char *images_path, const char *labels_path, long limit,
                      int max_classes, dt_dataset *out, dt_error *err);
void dt_dataset_free(dt_dataset *ds);

/* Mean and standard deviation of all pixels /255 (in double). */
void dt_dataset_stats(const dt_dataset *ds, double *mean, double *std);

/* Copy samples idx[0..count) into x (count * sample_size floats),
 * x = (pixel/255 - mean) / std (mean 0, std 1 turns normalisation off),
 * and their labels into y. */
void dt_gather_batch(const dt_dataset *ds, const uint32_t *idx, long count, float mean,
                     float std, float *x, int *y);

/* perm[0..n) = the epoch's permutation of 0..n-1, from (seed, epoch) only. */
void dt_epoch_permutation(uint64_t seed, uint64_t epoch, uint32_t *perm, long n);

/* Updates per epoch: drop_last ? floor(n/B) : ceil(n/B). */
long dt_updates_per_epoch(long n, long global_batch, bool drop_last);

/* The slice of a batch of b samples that rank r of P owns. */
void dt_shard(long b, int rank, int world, long *begin, long *end);

#endif
