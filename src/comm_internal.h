/* comm_internal.h - what the files of the comm library share (dt__ prefix:
 * internal, not part of the contract in include/dtrain/comm.h). */
#ifndef DTRAIN_COMM_INTERNAL_H
#define DTRAIN_COMM_INTERNAL_H

#include <mpi.h>

#include "simclock.h" /* SMPI: every MPI call below is a boundary of the charged compute */

/* Complete n requests. With the watchdog on (comm.timeout_s > 0) this polls
 * and, past the deadline, prints one line naming the step and `what` (e.g.
 * "the gradient allreduce") and ends the job with DT_ETIMEOUT; it also
 * leaves when the launcher died. Every wait of a collective in the comm
 * library goes through here. */
void dt__comm_wait(int n, MPI_Request *req, const char *what);

/* The node layout (collective over MPI_COMM_WORLD): *node gets the ranks of
 * this rank's node (DTRAIN_RANKS_PER_NODE=k: fake nodes of k consecutive
 * ranks; otherwise MPI_Comm_split_type SHARED), *cross the ranks with the
 * same local rank on every node (one per node only when nodes are
 * uniform). The caller frees both. */
typedef struct {
    int local_rank, local_size; /* in *node */
    int node_index;             /* rank in *cross */
    int nodes, uniform;         /* number of nodes; all of the same size */
    int max_local;              /* ranks of the largest node */
} dt__comm_layout;
void dt__comm_split_nodes(MPI_Comm *node, MPI_Comm *cross, dt__comm_layout *lay);

#endif
