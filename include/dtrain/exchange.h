/* exchange.h - one update's gradient exchange, whatever the strategy.
 *
 * The trainer calls the same few things every update:
 *
 *   dt_exchange_tail(x)[i] = ...       this rank's global quantities
 *   dt_exchange_begin(x, arena)        [gradients | tail] of this rank
 *   dt_exchange_ready(x, off, count)   from backward, as layers finish
 *   dt_exchange_finish(x, piece, ctx)  complete the sums; piece(ctx, lo, hi)
 *                                      runs on each range of the parameters
 *                                      this rank updates, as soon as its sum
 *                                      is complete (overlapped with the rest)
 *   dt_exchange_params(x, params, bad) sharded: spread the new parameters,
 *                                      and the non-finite verdict with them
 *
 * Strategies (comm.update):
 *   replicated  the gradient is allreduced; every rank updates every
 *               parameter (pieces: the buckets, or the whole arena)
 *   sharded     the gradient is reduce-scattered; each rank updates its
 *               piece of every bucket (1/P of the parameters, 1/P of the
 *               optimizer's work and state) and the new parameters are
 *               allgathered
 * Each over the reduction algorithm (comm.allreduce: flat MPI collectives
 * or node-aware, reduce.h) and the wire dtype (comm.dtype: float32 or
 * bfloat16; parameters always travel in float32), or, reproducible
 * (comm.reproducible), over the fixed tree of reduce_exact.h: the sums,
 * the pieces and everything computed per piece have the same bits on any
 * power-of-two number of ranks.
 *
 * The tail (a few global quantities: the loss sum, a stop request) is
 * summed over all ranks with the gradients. By default it travels as
 * float32 after the gradients in the arena: inside the last bucket when
 * the gradients are allreduced in float32, else as one small float32
 * allreduce of its own plan (node-aware like the buckets), started before
 * backward (with the buckets when the plan blocks, as under SMPI), so it
 * is complete by the time the gradients are. Reproducible, it stays in
 * double and rides on the reduce-scatter's messages, summed over the same
 * rank tree as the gradients.
 *
 * Reproducible mode: one bucket, not overlapped with backward (the tree
 * needs every leaf's sum, so nothing could start early anyway), whatever
 * comm.overlap, comm.bucket_kb and comm.allreduce say. The exchange is a
 * recursive-halving reduce-scatter; replicated then allgathers the summed
 * gradient, sharded allgathers the new parameters. The pieces the update
 * runs on are the element partition's nodes at depth tree_depth (log2 of
 * the number of leaves: never fewer nodes than ranks), in partition order:
 * all of them replicated, the ones under this rank's piece sharded; empty
 * ones included, so that a per-piece quantity (the clipping norm's sum of
 * squares) has a fixed slot and dt_exchange_piece_sum can combine the
 * pieces over the partition's tree.
 *
 * Buckets are contiguous ranges of the gradients of about bucket_floats,
 * counted from the end of the arena (the last layer's gradients are ready
 * first); with overlap off there is one, started by finish. Every rank
 * starts and completes them in the same order. Nothing allocates after
 * dt_exchange_create. */
#ifndef DTRAIN_EXCHANGE_H
#define DTRAIN_EXCHANGE_H

#include <stdbool.h>
#include <stddef.h>

#include "dtrain/common.h"
#include "dtrain/reduce.h"

typedef enum { DT_UPDATE_REPLICATED = 0, DT_UPDATE_SHARDED, DT_UPDATE_MODE_COUNT } dt_update_mode;

/* "replicated", "sharded"; from_name: 0 and *out set, or -1. */
int dt_update_mode_from_name(const char *name, dt_update_mode *out);
const char *dt_update_mode_name(dt_update_mode mode);

typedef struct {
    size_t n_params;      /* gradients at arena[0, n_params) */
    size_t n_tail;        /* tail at arena[n_params, n_params + n_tail), small */
    size_t bucket_floats; /* bucket size (clamped to a sane range) */
    bool overlap;         /* start buckets during backward */
    dt_update_mode update;
    dt_reduce_algo algo;
    dt_reduce_dtype dtype;
    bool reproducible; /* the fixed tree of reduce_exact.h; needs a power-of-two
                          world of at most 2^tree_depth ranks, float32 */
    int tree_depth;    /* reproducible: log2 of the number of leaves */
} dt_exchange_options;

typedef struct dt_exchange dt_exchange;

/* [lo, hi) of the parameter arena whose summed gradient this rank holds;
 * `at`: where the range starts in this rank's share (below). */
typedef void (*dt_piece_fn)(void *ctx, size_t lo, size_t hi, size_t at);

/* Collective (every rank, the same options). */
dt_status dt_exchange_create(const dt_exchange_options *o, dt_exchange **out, dt_error *err);
void dt_exchange_free(dt_exchange *x);

/* n_tail doubles: this rank's tail, set before dt_exchange_begin. */
double *dt_exchange_tail(dt_exchange *x);
void dt_exchange_begin(dt_exchange *x, float *arena);
/* arena[offset, offset + count) is final; ranges come from the end of the
 * arena towards its start (the shape of nn.h's dt_grad_ready_fn). */
void dt_exchange_ready(void *x, size_t offset, size_t count);
/* Complete every sum. piece (may be NULL) runs on each of this rank's
 * ranges in bucket order, each as soon as it is complete (reproducible:
 * on each of its pieces, empty ones included). Returns the summed tail
 * (n_tail doubles), the same on every rank. */
const double *dt_exchange_finish(dt_exchange *x, dt_piece_fn piece, void *ctx);
/* This rank's ranges again (after finish): a second pass after a global
 * decision, such as the clipping norm. */
void dt_exchange_for_each_piece(const dt_exchange *x, dt_piece_fn piece, void *ctx);
/* Sharded: every rank's updated ranges of `params` to every rank; `bad`
 * says this rank found a non-finite gradient in its ranges, and the result
 * says whether any rank did (carried by the parameters themselves: a bad
 * rank poisons the first value of each of its ranges, which no healthy
 * parameter is). Replicated: nothing to send, returns `bad`. */
bool dt_exchange_params(dt_exchange *x, float *params, bool bad);
/* Sharded, not reproducible, called before dt_exchange_finish: start each
 * bucket's allgather of `params` as soon as piece has run on this rank's
 * range of it, so that it overlaps the later buckets' sums;
 * dt_exchange_params (whose `bad` is then unused) completes them. piece
 * must then itself poison the first value of a range whose gradient is
 * not finite. Lasts one update. */
void dt_exchange_spread_early(dt_exchange *x, float *params);
/* Sharded: make an array laid out like the parameters (the averaged copy)
 * whole on every rank from each rank's ranges. */
void dt_exchange_gather(dt_exchange *x, float *array);

/* ---- the share -------------------------------------------------------------
 * A rank's share is the parameters it updates, packed: every range finish
 * hands it, in that order, back to back. Sharded on P > 1 ranks it is about
 * n_params / P (the ranges of every bucket, or reproducible, the rank's
 * piece of the tree); otherwise it is the arena itself, and at = lo. State
 * kept per share (the optimizer's) costs 1/P of the memory. */
size_t dt_exchange_share(const dt_exchange *x);
/* Collective: every rank's share into rank 0's whole array (n_params
 * floats; ignored on other ranks), for a checkpoint. */
void dt_exchange_collect(dt_exchange *x, const float *share, float *whole);
/* Collective, the reverse: rank 0's whole array (ignored elsewhere) to each
 * rank's share (replicated: the whole array to every rank). */
void dt_exchange_distribute(dt_exchange *x, const float *whole, float *share);

/* Reproducible: the most pieces finish gives one rank (2^tree_depth). */
size_t dt_exchange_max_pieces(const dt_exchange *x);
/* Reproducible: the sum, over the pieces of every rank, of one double per
 * piece (values[i]: this rank's i-th piece in the order finish ran them),
 * taken over the partition's tree: the same bits on every rank and for
 * every P. *count (a small integer, such as a count of non-finite pieces)
 * is summed over ranks with it. Sharded: collective. */
double dt_exchange_piece_sum(dt_exchange *x, const double *values, double *count);
bool dt_exchange_reproducible(const dt_exchange *x);

/* Seconds spent inside dt_exchange_ready since the last begin. */
double dt_exchange_ready_seconds(const dt_exchange *x);
int dt_exchange_buckets(const dt_exchange *x);
/* When bucket k's reduction started and was seen complete (MPI_Wtime) in
 * the last finish: the timeline's spans. */
void dt_exchange_bucket_times(const dt_exchange *x, int k, double *start, double *done);
bool dt_exchange_sharded(const dt_exchange *x);
/* "replicated, allreduce hierarchical, float32, 2 buckets of up to 1024 KiB
 * overlapped with backward" */
void dt_exchange_describe(const dt_exchange *x, char *buf, size_t size);

#endif
