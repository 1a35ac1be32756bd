/* bench_time.h - the clocks and the sort order the benchmarks share.
 *
 * Header only: each benchmark is one file plus this. */
#ifndef DTRAIN_BENCH_TIME_H
#define DTRAIN_BENCH_TIME_H

#include <time.h>

/* Wall time in seconds (monotonic). */
static inline double bench_wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU time of the process (all its threads) in seconds: on a shared, loaded
 * machine wall time mostly measures the waits for a core, and a longer
 * kernel is more often preempted, which biases a ratio of wall times. With
 * one thread this is the work's time; with T threads, T times it at best. */
static inline double bench_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* qsort order of doubles, ascending. */
static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif
