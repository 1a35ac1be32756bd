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

/* The instruction set each OpenBLAS core's kernels use: 0 the generic SSE
 * ones it falls back to on a CPU it does not know (0.3.21 on Sapphire
 * Rapids), 1 AVX, 2 AVX2 + FMA, 3 AVX-512. A core below what the CPU runs
 * is slow: on an AMD Zen 5, `Haswell` trains the default MLP 1.6x slower
 * than `SkylakeX`. A name not listed (another architecture, a core newer
 * than this table) is never replaced. */
static const struct {
    const char *name;
    int level;
} core_levels[] = {
    {"Prescott", 0},    {"Core2", 0},     {"Nehalem", 0},     {"Penryn", 0},
    {"Dunnington", 0},  {"Atom", 0},      {"Barcelona", 0},   {"Unknown", 0},
    {"Sandybridge", 1}, {"Bulldozer", 1}, {"Piledriver", 1},  {"Steamroller", 1},
    {"Haswell", 2},     {"Zen", 2},       {"Excavator", 2},   {"SkylakeX", 3},
    {"Cooperlake", 3},  {"SapphireRapids", 3},
};

static int core_level(const char *core)
{
    for (size_t i = 0; core && i < sizeof core_levels / sizeof core_levels[0]; i++)
        if (strcmp(core, core_levels[i].name) == 0) return core_levels[i].level;
    return -1;
}

const char *dt_runtime_better_core(const char *core, const char *best)
{
    const int have = core_level(core), can = core_level(best);
    return have >= 0 && can > have ? best : NULL;
}

/* The AVX-512 or AVX2 kernel family this CPU can run, or NULL. */
static const char *best_core_for_cpu(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}

const char *dt_runtime_faster_core(void)
{
    return dt_runtime_better_core(openblas_get_corename(), best_core_for_cpu());
}

/* Set in the re-executed image: which core it was given. It also stops a
 * second re-exec, should OpenBLAS ignore OPENBLAS_CORETYPE. */
#define REEXEC_MARK "DTRAIN_BLAS_REEXECUTED"

void dt_runtime_fix_blas_kernel(char **argv)
{
    /* DTRAIN_BLAS_REEXEC: "0" never; unset: only when OpenBLAS chose, on
     * its own, a core below what this CPU can run; "force": always, exactly
     * once (the test of this path on CPUs that OpenBLAS does recognise),
     * with the better core when the current one is below it (even one the
     * user chose), else the core in use, so the forced image computes what
     * the plain one would. */
#ifdef DTRAIN_SMPI
    (void)argv; /* every simulated rank is a thread of smpirun: no exec */
    return;
#endif
    if (getenv(REEXEC_MARK)) return;
    const char *mode = getenv("DTRAIN_BLAS_REEXEC");
    if (mode && strcmp(mode, "0") == 0) return;
    const bool force = mode && strcmp(mode, "force") == 0;
    const char *core = openblas_get_corename();
    const char *better = dt_runtime_faster_core();
    if (!force && (getenv("OPENBLAS_CORETYPE") || !better)) return;
    const char *want = better ? better : core;
    if (!want) return;

    /* Exec the binary's real path, not /proc/self/exe: the kernel names a
     * process after the file it executes, and ps, top, pgrep -x dtrain and
     * the signals of users, tests and batch scripts go by that name. argv
     * is passed on unchanged. */
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0 || (size_t)len >= sizeof self - 1) return;
    self[len] = 0;
    char saved[64] = "";
    const char *user = getenv("OPENBLAS_CORETYPE");
    if (user) snprintf(saved, sizeof saved, "%s", user);
    char wanted[64];
    snprintf(wanted, sizeof wanted, "%s", want); /* `core` is OpenBLAS's buffer */
    setenv("OPENBLAS_CORETYPE", wanted, 1);
    setenv(REEXEC_MARK, wanted, 1);
    execv(self, argv);
    /* exec failed: carry on with the kernel we have; the log shows which. */
    unsetenv(REEXEC_MARK);
    if (saved[0])
        setenv("OPENBLAS_CORETYPE", saved, 1);
    else
        unsetenv("OPENBLAS_CORETYPE");
}

bool dt_runtime_reexecuted(void) { return getenv(REEXEC_MARK) != NULL; }

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
