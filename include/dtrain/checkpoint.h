/* checkpoint.h - the on-disk checkpoint: format, atomic write, verification.
 *
 * One file per checkpoint, DIR/ckpt-<step>.dtck (step zero-padded to 12
 * digits), written by rank 0 (the state is replicated). This comment is the
 * format's one description; checkpoint.c implements it.
 *
 * Format version 1. Every integer little-endian, every float its IEEE-754
 * binary32 bits little-endian, whatever the host:
 *
 *   offset  size  field
 *        0     8  magic "DTRAINCK"
 *        8     4  format version, 1
 *       12     4  byte-order mark 0x01020304 (bytes 04 03 02 01)
 *       16     8  layout_hash    \
 *       24     8  config_hash     |
 *       32     8  n_params        |
 *       40     4  optimizer       |
 *       44     4  slots           |  the dt_ckpt_header fields below,
 *       48     8  step            |  in this order
 *       56     8  opt_t           |
 *       64     8  skipped         |
 *       72     8  seed            |
 *       80     4  world_size     /
 *       84     4  header CRC: CRC32C of bytes 0..83
 *       88        payload: params[n_params], then state[s][n_params] for
 *                 s = 0 .. slots-1 (4 bytes per float): the optimizer's
 *                 state arenas, then, when optimizer.average is on, the
 *                 averaged copy of the parameters
 *    end-4     4  trailer CRC: CRC32C of every byte before it (88 + payload)
 *
 * The file size is therefore exactly 88 + 4 * n_params * (1 + slots) + 4.
 * CRC32C is Castagnoli (reflected polynomial 0x82F63B78, initial value and
 * final xor 0xFFFFFFFF; "123456789" -> 0xE3069283).
 * Why a header CRC besides the trailer: the reader must trust n_params and
 * slots to know the file's size before it reads the payload; with the
 * header checked on its own, a flipped bit there is reported as damage, not
 * as a misleading "truncated", and a header that passes its CRC but claims
 * an absurd size (a crafted file) is still refused by the exact-size check
 * before any payload byte is read.
 *
 * Writing is atomic and durable (dt_fs_atomic, fs.h): a temporary file in
 * the same folder, fsync'ed, renamed to ckpt-<step>.dtck, the folder
 * fsync'ed; then the `latest` pointer file (the file name and a newline) is
 * replaced the same way; then all but the newest `keep` checkpoints are
 * removed. A failure or a crash at any moment leaves the previous checkpoint
 * and `latest` usable, and no temporary file behind after a failure.
 * Reading verifies everything (size, magic, version, byte order, both CRCs,
 * layout, config) before any byte of it reaches the caller's arrays. */
#ifndef DTRAIN_CHECKPOINT_H
#define DTRAIN_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "dtrain/common.h"
#include "dtrain/optim.h"

/* A checkpoint holds every state arena an optimizer may keep, and the
 * averaged copy of the parameters (optimizer.average) after them: one more
 * arena of the same layout, so the format stays version 1 and a file
 * written without averaging reads as before. optim.h is a header of
 * constants and types to checkpoint (no link dependency); optim knows
 * nothing of checkpoints. */
#define DT_CKPT_MAX_SLOTS (DT_OPTIM_MAX_SLOTS + 1)

typedef struct {
    uint64_t layout_hash; /* model layout (layers, input shape) */
    uint64_t config_hash; /* resolved config minus resumable keys */
    uint64_t n_params;
    uint32_t optimizer;   /* dt_optimizer_name */
    uint32_t slots;       /* state arenas: the optimizer's, + 1 when averaging */
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
