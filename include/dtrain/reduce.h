/* reduce.h - the gradient and parameter reductions, as a table of algorithms.
 *
 * One plan per run. It knows the world and node layout, owns every buffer
 * and communicator an operation needs (nothing is allocated per operation)
 * and runs up to max_inflight non-blocking operations at once, each over a
 * contiguous range buf[0..count) of floats, in place:
 *
 *   DT_REDUCE_ALLREDUCE       every rank gets the sum over ranks of the range
 *   DT_REDUCE_REDUCE_SCATTER  every rank gets the sum of its own piece only
 *                             (dt_reduce_piece); the rest of buf is unchanged
 *                             in float32 and undefined in bfloat16 (it
 *                             carries the wire)
 *   DT_REDUCE_ALLGATHER       each rank's piece is copied to every rank
 *                             (always float32: the new parameters)
 *
 * Algorithms (comm.allreduce):
 *   mpi           flat MPI collectives on the world (MPI_Iallreduce,
 *                 MPI_Ireduce_scatter, MPI_Iallgatherv)
 *   hierarchical  node-aware, from MPI's own collectives on a node
 *                 communicator (MPI_Comm_split_type SHARED) and a "cross"
 *                 communicator of the ranks with the same local rank:
 *                 reduce-scatter inside the node into one slice per local
 *                 rank, then per slice an inter-node allreduce (or
 *                 reduce-scatter), then allgather inside the node.
 *                 Up to 16 nodes the inter-node step is direct: one
 *                 MPI_Alltoallv that hands every rank the partial sums of
 *                 its piece, which it adds itself (and one that sends its
 *                 piece to every node), instead of Open MPI's multi-round
 *                 algorithms (src/reduce.c says why and what it measured;
 *                 DTRAIN_REDUCE_CROSS=tree|direct overrides).
 *                 Needs the same number of ranks on every node; otherwise
 *                 the plan runs mpi instead (dt_reduce_resolve says so).
 *   auto          picks one per operation from count, P and nodes (the
 *                 rule and the measurements behind it: launch/results/reduce.md)
 *
 * Wire dtype (comm.dtype): float32, or bfloat16 for ALLREDUCE and
 * REDUCE_SCATTER: the range is rounded to bfloat16 (nearest even, NaN and
 * Inf kept), summed by a user-defined MPI_Op that adds in float and rounds
 * each partial sum back to bfloat16, and widened back to float.
 *
 * Pieces: the range is cut into P pieces in "piece order", each a multiple
 * of 16 floats long except the last (sizes differ by at most 16 floats;
 * each starts 16-float aligned relative to buf). Piece order is the same
 * for every algorithm, so REDUCE_SCATTER and ALLGATHER of mpi and
 * hierarchical are interchangeable; it is NOT the world rank order when
 * nodes are uniform (rank with local rank l on the c-th node owns piece
 * l * nodes + c): ask dt_reduce_piece / dt_reduce_piece_of.
 *
 * Progress: MPI progresses non-blocking collectives only inside MPI calls;
 * dt_reduce_test and dt_reduce_progress push the operations in flight (a
 * hierarchical one is a chain of phases: when phase k completes, phase k+1
 * starts). Every wait polls through the watchdog (comm.timeout_s).
 *
 * SPMD contract: every rank starts the same operations (op, count) in the
 * same order and waits each exactly once, in the same order as the other
 * ranks; that order decides which preallocated slot, and which private
 * communicators, an operation uses. Tests may differ between ranks.
 *
 * Under the SimGrid build (DTRAIN_SMPI) every phase is a blocking
 * collective run inside dt_reduce_start (SMPI's non-blocking collectives
 * are naive and, in place, wrong: reduce.md). DTRAIN_REDUCE_BLOCKING=1|0
 * overrides that choice in either build.
 *
 * Node layout: DTRAIN_RANKS_PER_NODE=k (environment) makes fake nodes of k
 * consecutive world ranks, for testing the hierarchical algorithm on one
 * machine; unset, nodes are what MPI_Comm_split_type(SHARED) reports, which
 * under SMPI is one node per simulated host. */
#ifndef DTRAIN_REDUCE_H
#define DTRAIN_REDUCE_H

#include <stddef.h>

#include "dtrain/common.h"

typedef enum {
    DT_REDUCE_AUTO = 0,
    DT_REDUCE_MPI,
    DT_REDUCE_HIERARCHICAL,
    DT_REDUCE_ALGO_COUNT
} dt_reduce_algo;

typedef enum { DT_REDUCE_FLOAT32 = 0, DT_REDUCE_BFLOAT16, DT_REDUCE_DTYPE_COUNT } dt_reduce_dtype;

typedef enum {
    DT_REDUCE_ALLREDUCE = 0,
    DT_REDUCE_REDUCE_SCATTER,
    DT_REDUCE_ALLGATHER,
    DT_REDUCE_OP_COUNT
} dt_reduce_op;

/* Names for the config: "auto", "mpi", "hierarchical"; "float32",
 * "bfloat16"; "allreduce", "reduce_scatter", "allgather". from_name returns
 * 0 and sets *out, or -1 for an unknown name (out untouched). name returns
 * NULL for a value out of range. */
int dt_reduce_algo_from_name(const char *name, dt_reduce_algo *out);
const char *dt_reduce_algo_name(dt_reduce_algo algo);
int dt_reduce_dtype_from_name(const char *name, dt_reduce_dtype *out);
const char *dt_reduce_dtype_name(dt_reduce_dtype dtype);
const char *dt_reduce_op_name(dt_reduce_op op);

#define DT_REDUCE_MAX_INFLIGHT 64

typedef struct dt_reduce_plan dt_reduce_plan;
typedef struct dt_reduce_handle dt_reduce_handle;

/* Collective over MPI_COMM_WORLD (MPI must be initialised). max_count: the
 * longest range one operation will cover (<= INT_MAX); max_inflight:
 * operations in flight at once, 1..DT_REDUCE_MAX_INFLIGHT. Returns
 * DT_EINTERNAL (out of memory, max_count too large) with a message. */
dt_status dt_reduce_plan_create(dt_reduce_algo algo, dt_reduce_dtype dtype, size_t max_count,
                                int max_inflight, dt_reduce_plan **out, dt_error *err);
/* Collective (frees communicators). NULL is fine. No operation in flight. */
void dt_reduce_plan_free(dt_reduce_plan *plan);

/* The layout the plan sees: world size, nodes, ranks per node (the largest
 * node's when uneven), and whether every node has the same number. */
int dt_reduce_world(const dt_reduce_plan *plan);
int dt_reduce_nodes(const dt_reduce_plan *plan);
int dt_reduce_ranks_per_node(const dt_reduce_plan *plan);
int dt_reduce_nodes_uniform(const dt_reduce_plan *plan);
/* 1 when every phase runs as a blocking collective inside dt_reduce_start. */
int dt_reduce_blocking(const dt_reduce_plan *plan);
/* What dt_reduce_blocking will say of a plan created now (the build's
 * default, or DTRAIN_REDUCE_BLOCKING). */
int dt_reduce_blocking_default(void);

/* The algorithm an operation of `count` floats actually runs (mpi or
 * hierarchical): auto resolved, hierarchical replaced by mpi on uneven
 * nodes. The same on every rank. */
dt_reduce_algo dt_reduce_resolve(const dt_reduce_plan *plan, dt_reduce_op op, size_t count);

/* [*lo, *hi) of a range of count floats: this rank's piece, or the piece of
 * world rank `rank`. The P pieces cover [0, count) exactly once. */
void dt_reduce_piece(const dt_reduce_plan *plan, size_t count, size_t *lo, size_t *hi);
void dt_reduce_piece_of(const dt_reduce_plan *plan, int rank, size_t count, size_t *lo,
                        size_t *hi);

/* Start op over buf[0..count) (count <= max_count; buf must stay valid and
 * untouched until the wait). Returns the handle of a preallocated slot.
 * More than max_inflight at once is a bug (DT_BUG). */
dt_reduce_handle *dt_reduce_start(dt_reduce_plan *plan, dt_reduce_op op, float *buf,
                                  size_t count);
/* Progress h (start its next phase when one completes); 1 once complete.
 * Does not release h: wait for it. */
int dt_reduce_test(dt_reduce_handle *h);
/* Progress every operation in flight (from the backward callback). */
void dt_reduce_progress(dt_reduce_plan *plan);
/* Complete h (through the watchdog) and release it; buf holds the result. */
void dt_reduce_wait(dt_reduce_handle *h);

/* Blocking convenience: start + wait. */
void dt_reduce_run(dt_reduce_plan *plan, dt_reduce_op op, float *buf, size_t count);

#endif
