/* checkpoint.h - the on-disk checkpoint: format, atomic write, verification.
 *
 * One file per checkpoint, written by rank 0 (the state is replicated):
 *
 *   header   magic "DTRAINCK", format version, byte-order mark, the model
 *            layout hash and parameter count, the optimizer and its number of
 *            state arenas, the hash of the resolved config minus the keys a
 *            resume may change, the training position (updates consumed,
 *            updates applied, skipped updates), the seed, the world size it
 *            was written at (information only)
 *   payload  the parameter arena, then each optimizer state arena
 *   trailer  CRC32C (Castagnoli) of every byte before it
 *
 * All integers little-endian, floats IEEE-754 binary32 little-endian.
 * Writing is atomic and durable: a temporary file in the same folder is
 * written, flushed and fsync'ed, renamed to ckpt-<step>.dtck, the folder is
 * fsync'ed, and the `latest` pointer file (holding the file name) is
 * replaced the same way; then all but the newest `keep` checkpoints are
 * removed. A crash at any moment leaves the previous checkpoint usable.
 * Reading verifies everything (size, magic, version, byte order, CRC,
 * layout, config) before any byte of it is used. */
#ifndef DTRAIN_CHECKPOINT_H
#define DTRAIN_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "dtrain/common.h"
#include "dtrain/optim.h"

/* A checkpoint holds every state arena an optimizer may keep. optim.h is a
 * header of constants and types to checkpoint (no link dependency); optim
 * knows nothing of checkpoints. */
#define DT_CKPT_MAX_SLOTS DT_OPTIM_MAX_SLOTS

typedef struct {
    uint64_t layout_hash; /* model layout (layers, input shape) */
    uint64_t config_hash; /* resolved config minus resumable keys */
    uint64_t n_params;
    uint32_t optimizer;   /* dt_optimizer_name */
    uint32_t slots;       /* optimizer state arenas */
    int64_t step;         /* updates consumed (applied + skipped) */
    int64_t opt_t;        /* updates applied (the optimizer's t, the schedule's k) */
    int64_t skipped;      /* updates skipped by nonfinite: skip */
    uint64_t seed;
    uint32_t world_size;  /* when written; any world size may resume */
} dt_ckpt_header;

/* CRC32C of len bytes, chainable (start with crc = 0). */
uint32_t dt_crc32c(uint32_t crc, const void *data, size_t len);

/* Write a checkpoint of h->n_params parameters and h->slots state arenas
 * into dir (created if missing), update `latest`, keep the newest `keep`.
 * The path written is copied into path_out (may be NULL). */
dt_status dt_ckpt_write(const char *dir, long keep, const dt_ckpt_header *h, const float *params,
                        const float *const *state, char *path_out, size_t path_size,
                        dt_error *err);

/* Read and verify one file against `expect` (layout_hash, config_hash,
 * n_params, optimizer, slots must match; the other fields are read from the
 * file into *got). params and state[0..slots) receive the arenas, only if
 * everything verified. DT_EDATA with a message naming the file and the
 * problem ("truncated", "checksum mismatch", "written for another model",
 * "written with another configuration: ...") otherwise. */
dt_status dt_ckpt_read(const char *path, const dt_ckpt_header *expect, float *params,
                       float *const *state, dt_ckpt_header *got, dt_error *err);

/* Resume from `what`: "latest" means the newest usable checkpoint in dir
 * (the `latest` pointer first, then every ckpt-*.dtck newest first); any
 * other string is a file path, used alone. A damaged file is reported
 * through warn (one line each, may be NULL) and the next older one tried.
 * DT_EDATA when none is usable ("no usable checkpoint in DIR: ..."). */
typedef void (*dt_ckpt_warn_fn)(void *ctx, const char *msg);
dt_status dt_ckpt_resume(const char *what, const char *dir, const dt_ckpt_header *expect,
                         float *params, float *const *state, dt_ckpt_header *got,
                         char *path_out, size_t path_size, dt_ckpt_warn_fn warn, void *ctx,
                         dt_error *err);

#endif
