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

double dt_comm_time(void); /* MPI_Wtime */
/* An update begins. Under SimGrid with DTRAIN_SMPI_COMPUTE=median the
 * compute stretches of an update are numbered from here (src/simclock.h);
 * elsewhere it does nothing. */
void dt_comm_sim_update(void);

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

/* The first line of MPI_Get_library_version, e.g. "Open MPI v4.1.4, package:
 * Debian OpenMPI, ...". Callable before MPI starts and after it ends. The
 * string is static (filled on the first call). */
const char *dt_comm_mpi_library(void);
/* ---- the trace's collectives ---------------------------------------------
 * The origin of the trace clocks: this rank's MPI_Wtime read right after a
 * barrier (clocks of different nodes are not synchronised, so every rank
 * takes its own reading at the moment all ranks leave the same barrier). */
double dt_comm_clock_origin(void);
/* Gather each rank's `len` bytes at `mine` to rank `root`. On root, *all is
 * one dt_malloc'd buffer (free with dt_free) holding every rank's bytes in
 * rank order, and lens[r] (an array of world entries, root only) the length
 * of rank r's; elsewhere *all = NULL and lens is not touched. Every rank
 * returns the same status: DT_EINTERNAL if root runs out of memory. Any
 * sizes (chunked past INT_MAX). */
dt_status dt_comm_gather_bytes(const void *mine, size_t len, int root, void **all,
                               size_t *lens, dt_error *err);

#endif
