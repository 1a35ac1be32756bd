/* runtime.c - BLAS kernel, thread count, terminal detection (see runtime.h). */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "dtrain/runtime.h"

#include <cblas.h>
#include <sched.h>
#include <stdbool.h>
#include <sys/types.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* OpenBLAS core names that mean "did not recognise this CPU". */
static int is_fallback_core(const char *core)
{
    static const char *const generic[] = {"Prescott", "Core2", "Nehalem", "Penryn",
                                          "Dunnington", "Atom", "Barcelona", "Unknown"};
    for (size_t i = 0; i < sizeof generic / sizeof generic[0]; i++)
        if (core && strcmp(core, generic[i]) == 0) return 1;
    return 0;
}

void dt_runtime_fix_blas_kernel(char **argv)
{
    /* DTRAIN_BLAS_REEXEC: "0" never; "force" even when the user's own
     * OPENBLAS_CORETYPE chose a fallback core (the test of this path on CPUs
     * that OpenBLAS does recognise); unset: only when OpenBLAS guessed. */
#ifdef DTRAIN_SMPI
    (void)argv; /* every simulated rank is a thread of smpirun: no exec */
    return;
#endif
    const char *mode = getenv("DTRAIN_BLAS_REEXEC");
    if (mode && strcmp(mode, "0") == 0) return;
    bool force = mode && strcmp(mode, "force") == 0;
    if (getenv("OPENBLAS_CORETYPE") && !force) return;
    if (!is_fallback_core(openblas_get_corename())) return;
    __builtin_cpu_init();
    const char *want = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        want = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        want = "Haswell";
    if (!want) return;
    /* DTRAIN_BLAS_REEXEC=0 in the new image guards against a loop should
     * OpenBLAS ignore the variable. */
    const char *user = getenv("OPENBLAS_CORETYPE");
    char saved[64] = "";
    if (user) snprintf(saved, sizeof saved, "%s", user);
    setenv("OPENBLAS_CORETYPE", want, 1);
    setenv("DTRAIN_BLAS_REEXEC", "0", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the kernel we have; the log shows which. */
    if (saved[0])
        setenv("OPENBLAS_CORETYPE", saved, 1);
    else
        unsetenv("OPENBLAS_CORETYPE");
}

const char *dt_runtime_blas_core(void) { return openblas_get_corename(); }

int dt_runtime_pick_threads(long requested, int local_ranks)
{
    if (requested > 0) return (int)requested;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online < 1) online = 1;
    if (local_ranks < 1) local_ranks = 1;
    long threads = online / local_ranks;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        long allowed = CPU_COUNT(&set);
        if (allowed > 0 && allowed < threads) threads = allowed;
    }
    return threads < 1 ? 1 : (int)threads;
}

void dt_runtime_set_threads(int threads) { openblas_set_num_threads(threads); }

/* Is `fd` of process `pid` a terminal? Read through /proc, since the
 * descriptor is not ours. */
static bool proc_fd_is_terminal(pid_t pid, int fd)
{
    char link[64], target[256];
    snprintf(link, sizeof link, "/proc/%d/fd/%d", (int)pid, fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0) return false;
    target[n] = 0;
    return strncmp(target, "/dev/pts/", 9) == 0 || strncmp(target, "/dev/tty", 8) == 0;
}

bool dt_runtime_progress_bar(void)
{
    const char *mode = getenv("DTRAIN_PROGRESS");
    if (mode && strcmp(mode, "bar") == 0) return true;
    if (mode && strcmp(mode, "lines") == 0) return false;
    if (!isatty(STDOUT_FILENO)) return false;
    if (getenv("SLURM_JOB_ID")) return false; /* batch logs, even through srun --pty */
    /* Open MPI gives every rank a pseudo-terminal as stdout, whatever mpirun
     * writes to. A local launch has mpirun as parent: ask where its stdout
     * goes. A remote rank's parent (orted) has no terminal: plain lines. */
    if (getenv("OMPI_COMM_WORLD_SIZE")) return proc_fd_is_terminal(getppid(), STDOUT_FILENO);
    return true;
}
