/* reduce_bench.c - time one exchange of the reduce.h operations, per
 * algorithm and wire dtype, against a plain blocking MPI_Allreduce.
 *
 *   reduce_bench [-n COUNT[,COUNT...]] [-r REPS] [-w WARMUP] [-c]
 *
 * Built with the rest of dtrain; under SimGrid (cmake -DDTRAIN_SMPI=ON) it
 * runs on the simulated 16 x 8 clusters, e.g.
 *
 *   smpirun -np 128 -platform launch/platforms/cluster_16x8_fast.xml \
 *       -hostfile launch/platforms/hostfile_16x8 --cfg=smpi/host-speed:1Gf \
 *       --cfg=smpi/coll-selector:ompi build-smpi/launch/bench/reduce_bench -n 269322
 *
 * Default count: 269,322 floats (the default MLP's gradient, 1.08 MB). For
 * each case, REPS timed repetitions after WARMUP: barrier, then the
 * operation on every rank; a repetition's time is the slowest rank's
 * (MPI_Wtime: the simulated clock under SMPI). Prints the layout the plan
 * sees (nodes from MPI_Comm_split_type SHARED: one per simulated host) and
 * one Markdown row per case: median and minimum ms. -c also checks every
 * result against the exact sum of small-integer inputs ("ok" / "WRONG").
 * DTRAIN_REDUCE_BLOCKING=0 runs the non-blocking collectives (SMPI's own
 * default is blocking; see launch/results/reduce.md). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtrain/reduce.h"
#include "bench_time.h"

static int rank, world;

/* Inputs whose sums are exact in float32 and in bfloat16 at P <= 128. */
static float input(int r, size_t i) { return (float)((int)((r * 3 + (int)(i % 7)) % 3) - 1); }

static void fill(const dt_reduce_plan *plan, dt_reduce_op op, float *buf, size_t n)
{
    size_t lo, hi;
    dt_reduce_piece(plan, n, &lo, &hi);
    for (size_t i = 0; i < n; i++)
        buf[i] = op == DT_REDUCE_ALLGATHER ? (i >= lo && i < hi ? (float)(i % 1000) : -1.0f)
                                           : input(rank, i);
}

/* 1 if buf holds the result of `ops` (the last op decides what is checked) */
static int result_ok(const dt_reduce_plan *plan, const char *ops, const float *buf, size_t n)
{
    size_t lo, hi;
    dt_reduce_piece(plan, n, &lo, &hi);
    int only_piece = !strcmp(ops, "rs");
    for (size_t i = 0; i < n; i++) {
        if (only_piece && (i < lo || i >= hi)) continue;
        double sum = 0;
        for (int r = 0; r < world; r++) sum += input(r, i);
        if (buf[i] != (float)sum) return 0;
    }
    return 1;
}

/* One timed repetition of a case; returns this rank's seconds. */
static double run_once(dt_reduce_plan *plan, const char *ops, float *buf, size_t n)
{
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    if (!strcmp(ops, "MPI_Allreduce"))
        MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    else if (!strcmp(ops, "allreduce"))
        dt_reduce_run(plan, DT_REDUCE_ALLREDUCE, buf, n);
    else if (!strcmp(ops, "rs"))
        dt_reduce_run(plan, DT_REDUCE_REDUCE_SCATTER, buf, n);
    else if (!strcmp(ops, "ag"))
        dt_reduce_run(plan, DT_REDUCE_ALLGATHER, buf, n);
    else { /* rs+ag: the sharded update's pair (the update itself is not timed) */
        dt_reduce_run(plan, DT_REDUCE_REDUCE_SCATTER, buf, n);
        dt_reduce_run(plan, DT_REDUCE_ALLGATHER, buf, n);
    }
    return MPI_Wtime() - t0;
}

static void bench(dt_reduce_plan *plan, const char *algo, const char *dtype, const char *ops,
                  float *buf, size_t n, int reps, int warmup, int check)
{
    double *t = malloc((size_t)reps * sizeof *t);
    int ok = 1;
    for (int k = 0; k < warmup + reps; k++) {
        fill(plan, !strcmp(ops, "ag") ? DT_REDUCE_ALLGATHER : DT_REDUCE_ALLREDUCE, buf, n);
        double mine = run_once(plan, ops, buf, n), slowest;
        if (check && k == warmup && strcmp(ops, "ag")) ok = result_ok(plan, ops, buf, n);
        if (check && k == warmup && !strcmp(ops, "ag"))
            for (size_t i = 0; i < n && ok; i++) ok = buf[i] == (float)(i % 1000);
        MPI_Allreduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (k >= warmup) t[k - warmup] = slowest;
    }
    int all_ok;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    qsort(t, (size_t)reps, sizeof *t, bench_cmp_double);
    if (rank == 0)
        printf("| %d | %zu | %.2f | %s | %s | %s | %.3f | %.3f | %s |\n", world, n,
               (double)n * 4 / 1e6, algo, dtype, ops, t[reps / 2] * 1e3, t[0] * 1e3,
               check ? (all_ok ? "ok" : "WRONG") : "-");
    free(t);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    size_t counts[16] = {269322};
    int n_counts = 1, reps = 5, warmup = 1, check = 0;
    /* REDUCE_BENCH_ALGOS=mpi|hierarchical, REDUCE_BENCH_DTYPES=float32|bfloat16:
     * only those (a simulated P = 128 run of every case takes minutes) */
    const char *only_algo = getenv("REDUCE_BENCH_ALGOS");
    const char *only_dtype = getenv("REDUCE_BENCH_DTYPES");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc) {
            n_counts = 0;
            for (char *s = strtok(argv[++i], ","); s && n_counts < 16; s = strtok(NULL, ","))
                counts[n_counts++] = strtoul(s, NULL, 10);
        } else if (!strcmp(argv[i], "-r") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "-w") && i + 1 < argc) {
            warmup = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "-c")) {
            check = 1;
        } else {
            if (rank == 0) fprintf(stderr, "usage: reduce_bench [-n N[,N...]] [-r R] [-w W] [-c]\n");
            MPI_Finalize();
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    size_t max_count = 1;
    for (int k = 0; k < n_counts; k++) max_count = counts[k] > max_count ? counts[k] : max_count;
    float *buf = malloc(max_count * sizeof *buf);

    static const char *const ops[] = {"allreduce", "rs+ag", "rs", "ag"};
    int header = 0;
    for (int a = DT_REDUCE_MPI; a <= DT_REDUCE_HIERARCHICAL; a++) {
        if (only_algo && !strstr(only_algo, dt_reduce_algo_name((dt_reduce_algo)a))) continue;
        for (int d = 0; d < DT_REDUCE_DTYPE_COUNT; d++) {
            if (only_dtype && !strstr(only_dtype, dt_reduce_dtype_name((dt_reduce_dtype)d)))
                continue;
            dt_reduce_plan *plan;
            dt_error err;
            if (dt_reduce_plan_create((dt_reduce_algo)a, (dt_reduce_dtype)d, max_count, 1, &plan,
                                      &err) != DT_OK) {
                fprintf(stderr, "reduce_bench: %s\n", err.msg);
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
            if (!header && rank == 0) {
                const char *b = getenv("DTRAIN_REDUCE_BLOCKING");
                printf("P=%d nodes=%d ranks_per_node=%d uniform=%d DTRAIN_REDUCE_BLOCKING=%s\n\n",
                       world, dt_reduce_nodes(plan), dt_reduce_ranks_per_node(plan),
                       dt_reduce_nodes_uniform(plan), b ? b : "(build default)");
                printf("| P | floats | MB | algorithm | wire | operation | median ms | min ms | "
                       "check |\n|---|---|---|---|---|---|---|---|---|\n");
                header = 1;
            }
            for (int k = 0; k < n_counts; k++) {
                if (a == DT_REDUCE_MPI && d == 0 && !getenv("REDUCE_BENCH_NO_BASELINE"))
                    bench(plan, "flat", "float32", "MPI_Allreduce", buf, counts[k], reps, warmup,
                          check);
                for (size_t o = 0; o < sizeof ops / sizeof *ops; o++) {
                    if (d == DT_REDUCE_BFLOAT16 && !strcmp(ops[o], "ag")) continue; /* float32 */
                    bench(plan, dt_reduce_algo_name(dt_reduce_resolve(plan, DT_REDUCE_ALLREDUCE,
                                                                      counts[k])),
                          dt_reduce_dtype_name((dt_reduce_dtype)d), ops[o], buf, counts[k], reps,
                          warmup, check);
                }
            }
            dt_reduce_plan_free(plan);
        }
    }
    free(buf);
    MPI_Finalize();
    return 0;
}
