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

#endif
