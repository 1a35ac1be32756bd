/* simclock.h - what a stretch of compute costs on SimGrid's simulated clock.
 *
 * Only the SMPI build (DTRAIN_SMPI) has a simulated clock; elsewhere this
 * header defines nothing. SMPI runs every simulated rank's compute for
 * real, one rank at a time on the host, and by default charges the host
 * thread CPU time it measured between two MPI calls. With 128 ranks on a
 * 2-vCPU host that clock is noisy: a rank that waited for the CPU, or
 * found its data evicted by the 127 others, charges the stall, and every
 * collective then waits for the slowest rank of 128 (round 2 measured
 * single stalls of 2-12 ms in updates of 1-3 ms).
 *
 * DTRAIN_SMPI_COMPUTE=median (with smpirun --cfg=smpi/simulate-computation:no,
 * so that SMPI's own charge is off) makes dtrain charge the clock itself.
 * Every stretch of compute still runs and is still measured; it is charged
 * the median of the last SIMCLOCK_HISTORY measurements of the same stretch
 * on the same rank. A stretch is named by where it ends (the MPI call or
 * the dt_comm_time() reading, by file and line) and by how many such
 * boundaries the update has passed before it (dt_comm_sim_update() starts
 * the count), so the backward of each layer, the optimizer on each bucket
 * and the data gather each have their own history. DTRAIN_SMPI_COMPUTE
 * unset or "measured" leaves SMPI's charge as it is.
 *
 * Every MPI call that can let another simulated rank run must pass through
 * dt__simclock_enter/leave, or the next stretch would include that rank's
 * compute: the macros below wrap each one the comm library uses. The
 * files of the comm library include this header after <mpi.h>. */
#ifndef DTRAIN_SIMCLOCK_H
#define DTRAIN_SIMCLOCK_H

#ifdef DTRAIN_SMPI
#include <mpi.h>

/* After MPI_Init: reads DTRAIN_SMPI_COMPUTE. Returns 0, or -1 after rank
 * 0 printed why the setting cannot run (an unknown value, or SMPI's own
 * charge still on); every rank reads the same setting. */
int dt__simclock_init(int rank);
/* A stretch ends here (before an MPI call or a clock reading): charge it. */
void dt__simclock_enter(const char *file, int line);
/* The call returned: the next stretch starts now. Returns rc. */
int dt__simclock_leave(int rc);

/* MPI_Wtime, a boundary too: SMPI sleeps 10 ns of simulated time in it
 * (smpi/wtime), which lets the other ranks run. */
double dt__simclock_wtime(const char *file, int line);

#define DT__SIMCLOCK(call) (dt__simclock_enter(__FILE__, __LINE__), dt__simclock_leave(call))
/* A macro's own name is not expanded again inside its expansion, so each
 * of these calls the real function. */
#define MPI_Allgather(...) DT__SIMCLOCK(MPI_Allgather(__VA_ARGS__))
#define MPI_Allgatherv(...) DT__SIMCLOCK(MPI_Allgatherv(__VA_ARGS__))
#define MPI_Alltoallv(...) DT__SIMCLOCK(MPI_Alltoallv(__VA_ARGS__))
#define MPI_Allreduce(...) DT__SIMCLOCK(MPI_Allreduce(__VA_ARGS__))
#define MPI_Barrier(...) DT__SIMCLOCK(MPI_Barrier(__VA_ARGS__))
#define MPI_Bcast(...) DT__SIMCLOCK(MPI_Bcast(__VA_ARGS__))
#define MPI_Comm_dup(...) DT__SIMCLOCK(MPI_Comm_dup(__VA_ARGS__))
#define MPI_Comm_free(...) DT__SIMCLOCK(MPI_Comm_free(__VA_ARGS__))
#define MPI_Comm_split(...) DT__SIMCLOCK(MPI_Comm_split(__VA_ARGS__))
#define MPI_Comm_split_type(...) DT__SIMCLOCK(MPI_Comm_split_type(__VA_ARGS__))
#define MPI_Gather(...) DT__SIMCLOCK(MPI_Gather(__VA_ARGS__))
#define MPI_Iallgatherv(...) DT__SIMCLOCK(MPI_Iallgatherv(__VA_ARGS__))
#define MPI_Iallreduce(...) DT__SIMCLOCK(MPI_Iallreduce(__VA_ARGS__))
#define MPI_Ialltoallv(...) DT__SIMCLOCK(MPI_Ialltoallv(__VA_ARGS__))
#define MPI_Ibarrier(...) DT__SIMCLOCK(MPI_Ibarrier(__VA_ARGS__))
#define MPI_Ibcast(...) DT__SIMCLOCK(MPI_Ibcast(__VA_ARGS__))
#define MPI_Igather(...) DT__SIMCLOCK(MPI_Igather(__VA_ARGS__))
#define MPI_Ireduce_scatter(...) DT__SIMCLOCK(MPI_Ireduce_scatter(__VA_ARGS__))
#define MPI_Irecv(...) DT__SIMCLOCK(MPI_Irecv(__VA_ARGS__))
#define MPI_Isend(...) DT__SIMCLOCK(MPI_Isend(__VA_ARGS__))
#define MPI_Reduce_scatter(...) DT__SIMCLOCK(MPI_Reduce_scatter(__VA_ARGS__))
#define MPI_Test(...) DT__SIMCLOCK(MPI_Test(__VA_ARGS__))
#define MPI_Testall(...) DT__SIMCLOCK(MPI_Testall(__VA_ARGS__))
#define MPI_Waitall(...) DT__SIMCLOCK(MPI_Waitall(__VA_ARGS__))
#define MPI_Wtime() dt__simclock_wtime(__FILE__, __LINE__)
#endif

#endif
