/* runtime.h - the machine under the trainer: BLAS kernel and threads.
 *
 * OpenBLAS 0.3.21 (Debian 12) does not recognise recent CPUs and silently
 * falls back to older kernels: its SSE3 "Prescott" ones on Sapphire Rapids,
 * 4-5x slower than the AVX-512 ones. dt_runtime_fix_blas_kernel re-executes
 * the process once with OPENBLAS_CORETYPE set when OpenBLAS chose a core
 * below what the CPU runs (AVX-512: SkylakeX; AVX2 + FMA: Haswell), before
 * MPI is started, so users get the fast kernel with no variable to
 * remember. The new image keeps the binary's name (ps, pgrep) and argv.
 * An OPENBLAS_CORETYPE the user set is kept. DTRAIN_BLAS_REEXEC=0 turns
 * this off; =force re-executes once on any CPU (the tests' way to run this
 * path where it is not needed). */
#ifndef DTRAIN_RUNTIME_H
#define DTRAIN_RUNTIME_H

#include <stdbool.h>

/* Call first thing in main. Returns only if no re-exec was needed (or it
 * failed, in which case the slow kernel is used and reported). */
void dt_runtime_fix_blas_kernel(char **argv);
/* `best` if OpenBLAS core `core` uses an older instruction set than core
 * `best` does, else NULL (also when either name is not one it knows). */
const char *dt_runtime_better_core(const char *core, const char *best);
/* A core this CPU runs whose kernels are newer than those in use, or NULL:
 * set only when the user's OPENBLAS_CORETYPE (or DTRAIN_BLAS_REEXEC=0)
 * kept a slower one, which the start-up line then points out. */
const char *dt_runtime_faster_core(void);
/* True in a process that dt_runtime_fix_blas_kernel re-executed. */
bool dt_runtime_reexecuted(void);

/* The OpenBLAS core in use, e.g. "SkylakeX" or "Prescott". */
const char *dt_runtime_blas_core(void);

/* Threads for one rank: `requested` if > 0, else the node's cores divided
 * by the ranks on the node, capped by the CPUs this process may run on,
 * at least 1. */
int dt_runtime_pick_threads(long requested, int local_ranks);
void dt_runtime_set_threads(int threads);

/* Draw the progress bar (true) or plain lines? DTRAIN_PROGRESS=bar|lines
 * decides; otherwise a bar only when the user's terminal is stdout: under
 * mpirun every rank's stdout is a pseudo-terminal, so the launcher's stdout
 * is what counts; under Slurm, lines. */
bool dt_runtime_progress_bar(void);

#endif
