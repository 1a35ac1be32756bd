/* simclock.c - compute charged at its median on the simulated clock (see
 * simclock.h). Without DTRAIN_SMPI only dt_comm_sim_update() exists, and
 * does nothing. */
#include "dtrain/comm.h"

#ifndef DTRAIN_SMPI
void dt_comm_sim_update(void) {}
#else
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <smpi/smpi.h>
#include <xbt/config.h>

#include "simclock.h"

enum {
    SIMCLOCK_HISTORY = 15, /* odd: the median is one measurement */
    SIMCLOCK_SLOTS = 2048, /* stretches per rank with a history; a power of 2 */
};

/* One stretch: where it ends, and its last measurements (a ring). */
typedef struct {
    const char *file; /* NULL: a free slot */
    int line;
    unsigned ordinal;
    int count, next;
    double seconds[SIMCLOCK_HISTORY];
} stretch;

/* Per simulated rank: SMPI gives every rank its own copy of the globals. */
static struct {
    bool on;
    long updates;      /* dt_comm_sim_update() calls so far */
    long stall_update; /* DTRAIN_SMPI_TEST_STALL: 0 = none */
    double stall_seconds;
    unsigned ordinal;  /* boundaries passed since dt_comm_sim_update() */
    double start;      /* host thread CPU time at which the stretch began */
    stretch table[SIMCLOCK_SLOTS];
} sim;

/* The host's clock for this thread. SMPI's header turns clock_gettime into
 * its simulated clock; the parentheses call the real function. */
static double host_cpu_seconds(void)
{
    struct timespec ts;
    (clock_gettime)(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* DTRAIN_SMPI_TEST_STALL=RANK:UPDATE:MS, for the tests: rank RANK burns MS
 * ms of CPU as its UPDATE-th update starts, as a host stall does (round 2
 * measured 2-12 ms ones). Measured, the whole simulated cluster waits for
 * it; charged at the median, it vanishes. */
static void read_test_stall(int rank)
{
    const char *v = getenv("DTRAIN_SMPI_TEST_STALL");
    int r;
    long update;
    double ms;
    if (v && sscanf(v, "%d:%ld:%lf", &r, &update, &ms) == 3 && r == rank && update > 0 && ms > 0) {
        sim.stall_update = update;
        sim.stall_seconds = ms / 1e3;
    }
}

int dt__simclock_init(int rank)
{
    read_test_stall(rank);
    const char *mode = getenv("DTRAIN_SMPI_COMPUTE");
    if (!mode || !*mode || !strcmp(mode, "measured")) return 0;
    if (strcmp(mode, "median") != 0) {
        if (rank == 0)
            fprintf(stderr, "dtrain: DTRAIN_SMPI_COMPUTE=%s: expected measured or median\n", mode);
        return -1;
    }
    if (sg_cfg_get_boolean("smpi/simulate-computation")) {
        if (rank == 0)
            fprintf(stderr, "dtrain: DTRAIN_SMPI_COMPUTE=median needs smpirun "
                        "--cfg=smpi/simulate-computation:no (else every stretch is charged twice)\n");
        return -1;
    }
    sim.on = true;
    sim.start = host_cpu_seconds();
    return 0;
}

void dt_comm_sim_update(void)
{
    sim.ordinal = 0;
    if (++sim.updates != sim.stall_update) return;
    const double until = host_cpu_seconds() + sim.stall_seconds;
    while (host_cpu_seconds() < until) {
    }
}

static stretch *find_stretch(const char *file, int line, unsigned ordinal)
{
    uint64_t h = (uint64_t)(uintptr_t)file * 0x9E3779B97F4A7C15u;
    h ^= ((uint64_t)(unsigned)line << 32 | ordinal) * 0xC2B2AE3D27D4EB4Fu;
    for (unsigned probe = 0; probe < SIMCLOCK_SLOTS; probe++) {
        stretch *s = &sim.table[(h + probe) & (SIMCLOCK_SLOTS - 1)];
        if (!s->file) *s = (stretch){.file = file, .line = line, .ordinal = ordinal};
        if (s->file == file && s->line == line && s->ordinal == ordinal) return s;
    }
    return NULL; /* full: charged as measured */
}

static double median(const double *v, int n)
{
    double sorted[SIMCLOCK_HISTORY];
    memcpy(sorted, v, (size_t)n * sizeof *v);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            double t = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = t;
        }
    return n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
}

void dt__simclock_enter(const char *file, int line)
{
    if (!sim.on) return;
    double measured = host_cpu_seconds() - sim.start, charged = measured;
    stretch *s = find_stretch(file, line, sim.ordinal++);
    if (s) {
        s->seconds[s->next] = measured;
        s->next = (s->next + 1) % SIMCLOCK_HISTORY;
        if (s->count < SIMCLOCK_HISTORY) s->count++;
        charged = median(s->seconds, s->count);
    }
    smpi_execute(charged); /* what SMPI itself would do, with `measured` */
}

double dt__simclock_wtime(const char *file, int line)
{
    dt__simclock_enter(file, line);
    double now = (MPI_Wtime)();
    dt__simclock_leave(0);
    return now;
}

int dt__simclock_leave(int rc)
{
    if (sim.on) sim.start = host_cpu_seconds();
    return rc;
}
#endif
