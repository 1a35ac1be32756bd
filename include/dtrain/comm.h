/* comm.h - everything dtrain does with MPI.
 *
 * Start-up and shutdown, world and node layout, the one verdict every rank
 * agrees on before it acts on an error, the gradient allreduce, and the
 * replica check. Only comm and train call MPI; no other module links it. */
#ifndef DTRAIN_COMM_H
#define DTRAIN_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "dtrain/common.h"

typedef struct {
    int rank, world;           /* in MPI_COMM_WORLD */
    int local_rank, local_size; /* on this node (MPI_Comm_split_type SHARED) */
    int nodes;                 /* number of distinct nodes */
} dt_comm;

/* MPI_Init_thread (funneled), fills c, installs MPI_Abort as the abort hook
 * of DT_BUG. Returns DT_EINTERNAL if MPI cannot start. */
dt_status dt_comm_init(int *argc, char ***argv, dt_comm *c);
void dt_comm_finalize(void);

/* Every rank passes its own status and error; all return the same verdict:
 * DT_OK if every rank is fine, else the status of the lowest failing rank,
 * whose message is copied into err on every rank. One collective. */
dt_status dt_comm_agree(const dt_comm *c, dt_status local, dt_error *err);

/* In-place sum over all ranks of n floats. */
void dt_comm_allreduce_sum(float *buf, size_t n);
/* In-place sum of n doubles (small: losses, counts). */
void dt_comm_allreduce_sum_d(double *buf, size_t n);

/* Broadcast `bytes` bytes from rank `root` (chunked past INT_MAX). */
void dt_comm_bcast(void *buf, size_t bytes, int root);

/* True iff `value` is the same on every rank (one allreduce of min and max). */
int dt_comm_all_equal_u64(uint64_t value);

/* ---- the gradient allreduce ------------------------------------------------
 * Sums an arena of n floats over all ranks, in buckets of about
 * bucket_floats contiguous floats counted from the END of the arena (the
 * last layer's gradients are ready first). With overlap, a bucket's
 * non-blocking allreduce (out of place, into the result arena) starts as
 * soon as backward has produced all of it (dt_grad_sync_ready, called from
 * the backward callback, which also progresses the ones in flight) and
 * dt_grad_sync_finish waits for the rest. Without overlap, finish does one
 * blocking in-place allreduce. Both sum the same numbers; the results
 * differ only in floating-point summation order. */
typedef struct dt_grad_sync dt_grad_sync;

dt_status dt_grad_sync_create(size_t n, size_t bucket_floats, int overlap, dt_grad_sync **out,
                              dt_error *err);
void dt_grad_sync_free(dt_grad_sync *s);
/* Start an update: nothing of `send` (n floats) is ready yet. */
void dt_grad_sync_begin(dt_grad_sync *s, float *send);
/* [offset, offset+count) of send is final. Ranges arrive from the end of the
 * arena towards its start (dt_grad_ready_fn of nn.h has this shape). */
void dt_grad_sync_ready(void *sync, size_t offset, size_t count);
/* Everything is final: complete the sum; returns the arena holding it. */
float *dt_grad_sync_finish(dt_grad_sync *s);
/* Seconds spent inside dt_grad_sync_ready calls since the last begin. */
double dt_grad_sync_ready_seconds(const dt_grad_sync *s);
int dt_grad_sync_buckets(const dt_grad_sync *s);

double dt_comm_time(void); /* MPI_Wtime */

/* ---- the watchdog ------------------------------------------------------------
 * Every collective above waits by polling. With a timeout > 0, a collective
 * that has not completed after `seconds` prints one line on each waiting
 * rank (naming the step set by dt_comm_set_step and the exchange) and ends
 * the job with exit status DT_ETIMEOUT (MPI_Abort). 0 waits forever. */
void dt_comm_set_timeout(double seconds);
void dt_comm_set_step(long step);
/* A rank started by a launcher (mpirun, srun) whose launcher has died is an
 * orphan: it prints one line and exits. Checked inside every wait and by
 * this call (once per update, for ranks that are not waiting). */
void dt_comm_exit_if_orphaned(void);

#endif
