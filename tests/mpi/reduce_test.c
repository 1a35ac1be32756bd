/* reduce_test.c - the reductions of reduce.h against sums computed in double.
 *
 *   mpiexec -np P reduce_test          (DTRAIN_RANKS_PER_NODE=k: fake nodes)
 *
 * For every algorithm (auto, mpi, hierarchical) x wire dtype x operation and
 * a list of counts (0, 1, below P, odd, the default MLP's 269,322): each
 * rank fills the range from a known function of (rank, index), and the
 * result is checked against the double-precision sum of those inputs:
 * exact for small integers (in float32 and in bfloat16), within P float
 * epsilons of sum |x| for float32 and within (P+1) bfloat16 epsilons for
 * bfloat16. NaN and Inf propagate. REDUCE_SCATTER in float32 leaves
 * everything outside the rank's piece untouched (bfloat16 may not: the wire
 * is the range itself); ALLGATHER restores every bit. The pieces
 * cover the range exactly once, 16-float aligned, sizes within 16. Four
 * operations of mixed kinds are in flight at once, progressed by test and
 * progress and waited in another order than started, without allocating.
 * Every failed check prints one line; the exit status is 1 if any rank
 * failed one. */
#include <float.h>
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtrain/comm.h"
#include "dtrain/reduce.h"

static int rank, world;
static long checks, failures;

#define EXPECT(cond, ...)                                                          \
    do {                                                                           \
        checks++;                                                                  \
        if (!(cond)) {                                                             \
            if (++failures <= 20) {                                                \
                fprintf(stderr, "rank %d: %s:%d: ", rank, __FILE__, __LINE__);     \
                fprintf(stderr, __VA_ARGS__);                                      \
                fputc('\n', stderr);                                               \
            }                                                                      \
        }                                                                          \
    } while (0)

static uint32_t mix(uint32_t a, uint32_t b)
{
    uint32_t h = a * 0x9e3779b1u ^ (b + 0x7f4a7c15u) * 0x85ebca77u;
    h ^= h >> 15;
    h *= 0xc2b2ae3du;
    return h ^ (h >> 13);
}

/* INT: small integers (sums exact in both dtypes); REAL: mixed magnitudes;
 * SPECIAL: Inf, NaN and Inf - Inf in the first three indices; ROUND: at
 * most two non-zero inputs per index whose sum (or single value) needs one
 * bfloat16 rounding, ties included, so round-to-nearest-even is checked
 * exactly (truncation or ties-away would fail). */
typedef enum { PATTERN_INT, PATTERN_REAL, PATTERN_SPECIAL, PATTERN_ROUND } pattern;

/* A NaN whose payload is only in the low bits: cut to bfloat16 without
 * care it would become an Inf. */
static float low_nan(void)
{
    uint32_t u = 0x7f800001u;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The input of rank r at index i. */
static float input(pattern pat, int r, size_t i)
{
    float small = (float)((int)((r * 7 + (int)(i % 1009) * 13) % 11) - 5);
    if (pat == PATTERN_INT) return small;
    if (pat == PATTERN_SPECIAL && world >= 2 && i < 3) {
        if (i == 0) return r == 0 ? INFINITY : 1.0f;          /* Inf */
        if (i == 1) return r == world - 1 ? low_nan() : 2.0f; /* NaN */
        return r == 0 ? INFINITY : r == 1 ? -INFINITY : 0.0f; /* Inf - Inf = NaN */
    }
    if (pat == PATTERN_SPECIAL) return small;
    if (pat == PATTERN_ROUND) {
        static const float first[5] = {1.0f, 1.0f, 1.0f + 0x1p-7f, 1.0f + 0x3p-9f,
                                       -(1.0f + 0x1p-8f + 0x1p-10f)};
        static const float second[5] = {0x3p-9f, 0x1p-8f, 0x1p-8f, 0, 0};
        float scale = ldexpf(1.0f, (int)((i / 5) % 8) - 4);
        return scale * (r == 0 ? first[i % 5] : r == 1 ? second[i % 5] : 0.0f);
    }
    uint32_t h = mix((uint32_t)r, (uint32_t)i);
    return ldexpf((float)((int)(h % 20001u) - 10000), -(int)((h >> 20) % 16u));
}

static void reference(pattern pat, size_t i, double *sum, double *abs_sum)
{
    *sum = *abs_sum = 0;
    for (int r = 0; r < world; r++) {
        double x = input(pat, r, i);
        *sum += x;
        *abs_sum += fabs(x);
    }
}

/* x rounded to the nearest bfloat16 (8 significant bits), ties to even:
 * an independent model of the library's conversion. */
static double bf16_nearest(double x)
{
    if (x == 0) return x;
    int e;
    frexp(x, &e);
    double ulp = ldexp(1.0, e - 8);
    return nearbyint(x / ulp) * ulp;
}

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* Is got the sum at index i, within the dtype's rounding? */
static int sum_ok(pattern pat, dt_reduce_dtype dtype, size_t i, float got)
{
    double sum, abs_sum;
    reference(pat, i, &sum, &abs_sum);
    if (world == 1) dtype = DT_REDUCE_FLOAT32; /* one rank: no wire, the range stays exact */
    if (isnan(sum)) return isnan(got);
    if (isinf(sum)) return isinf(got) && (got > 0) == (sum > 0);
    if (pat == PATTERN_INT || pat == PATTERN_SPECIAL) return got == sum; /* exact */
    if (pat == PATTERN_ROUND) return got == (dtype == DT_REDUCE_BFLOAT16 ? bf16_nearest(sum) : sum);
    double eps = dtype == DT_REDUCE_BFLOAT16 ? ldexp(1.0, -8) * (world + 1) : FLT_EPSILON * world;
    return fabs(got - sum) <= eps * abs_sum + FLT_MIN;
}

/* The value of index i gathered by ALLGATHER: arbitrary bits, no NaN. */
static float gathered(size_t i)
{
    uint32_t u = mix(0xa11u, (uint32_t)i);
    if ((u & 0x7f800000u) == 0x7f800000u) u ^= 0x40000000u;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Fill buf for op, as rank `rank` would before calling it. */
static void fill(const dt_reduce_plan *plan, dt_reduce_op op, pattern pat, float *buf, size_t n)
{
    if (op != DT_REDUCE_ALLGATHER) {
        for (size_t i = 0; i < n; i++) buf[i] = input(pat, rank, i);
        return;
    }
    size_t lo, hi;
    dt_reduce_piece(plan, n, &lo, &hi);
    for (size_t i = 0; i < n; i++) buf[i] = i >= lo && i < hi ? gathered(i) : (float)-rank - 0.5f;
}

/* Check buf after op; returns the number of bad entries (first one printed). */
static void check(const dt_reduce_plan *plan, dt_reduce_op op, dt_reduce_dtype dtype, pattern pat,
                  const float *buf, size_t n, const char *what)
{
    size_t lo, hi, bad = 0, first = 0;
    dt_reduce_piece(plan, n, &lo, &hi);
    for (size_t i = 0; i < n; i++) {
        int ok;
        if (op == DT_REDUCE_ALLREDUCE)
            ok = sum_ok(pat, dtype, i, buf[i]);
        else if (op == DT_REDUCE_REDUCE_SCATTER)
            ok = i >= lo && i < hi               ? sum_ok(pat, dtype, i, buf[i])
                 : dtype == DT_REDUCE_BFLOAT16 ? 1
                                               : same_bits(buf[i], input(pat, rank, i));
        else
            ok = same_bits(buf[i], gathered(i));
        if (!ok && bad++ == 0) first = i;
    }
    double sum = 0, abs_sum = 0;
    if (bad) reference(pat, first, &sum, &abs_sum);
    EXPECT(bad == 0,
           "%s: %s %s %s count %zu (piece [%zu,%zu)): %zu wrong, first at %zu: %.9g (sum %.9g)",
           what, dt_reduce_algo_name(dt_reduce_resolve(plan, op, n)), dt_reduce_dtype_name(dtype),
           dt_reduce_op_name(op), n, lo, hi, bad, first, bad ? buf[first] : 0.0, sum);
}

static void check_pieces(const dt_reduce_plan *plan, size_t n)
{
    unsigned char *seen = calloc(n + 1, 1);
    size_t min_len = (size_t)-1, max_len = 0, lo, hi, my_lo, my_hi;
    int aligned = 1, inside = 1;
    for (int r = 0; r < world; r++) {
        dt_reduce_piece_of(plan, r, n, &lo, &hi);
        inside &= lo <= hi && hi <= n;
        aligned &= lo % 16 == 0;
        min_len = DT_MIN(min_len, hi - lo);
        max_len = DT_MAX(max_len, hi - lo);
        for (size_t i = lo; i < hi && i < n; i++) seen[i]++;
    }
    size_t twice = 0;
    for (size_t i = 0; i < n; i++) twice += seen[i] != 1;
    EXPECT(inside && twice == 0, "pieces of %zu floats: %zu indices not covered exactly once", n,
           twice);
    EXPECT(aligned, "pieces of %zu floats: a piece starts off a 16-float boundary", n);
    EXPECT(max_len - min_len <= 16, "pieces of %zu floats: lengths %zu..%zu", n, min_len, max_len);
    dt_reduce_piece(plan, n, &my_lo, &my_hi);
    dt_reduce_piece_of(plan, rank, n, &lo, &hi);
    EXPECT(my_lo == lo && my_hi == hi, "dt_reduce_piece differs from dt_reduce_piece_of");
    free(seen);
}

/* Four operations of mixed kinds over the buckets of one buffer in flight
 * at once, three rounds, waited in another order each round. */
static void check_in_flight(dt_reduce_plan *plan, dt_reduce_dtype dtype, float *buf)
{
    enum { BUCKETS = 4 };
    const size_t len[BUCKETS] = {1000, 16 * (size_t)world + 3, 7, 4099};
    const dt_reduce_op ops[BUCKETS] = {DT_REDUCE_ALLREDUCE, DT_REDUCE_REDUCE_SCATTER,
                                       DT_REDUCE_ALLGATHER, DT_REDUCE_ALLREDUCE};
    static const int order[3][BUCKETS] = {{3, 2, 1, 0}, {1, 3, 0, 2}, {0, 1, 2, 3}};
    for (int round = 0; round < 3; round++) {
        size_t off[BUCKETS], at = 0;
        for (int b = 0; b < BUCKETS; b++) {
            off[b] = at;
            fill(plan, ops[(b + round) % BUCKETS], PATTERN_REAL, buf + at, len[b]);
            at += len[b];
        }
        uint64_t allocs = dt_alloc_count();
        dt_reduce_handle *h[BUCKETS];
        for (int b = 0; b < BUCKETS; b++)
            h[b] = dt_reduce_start(plan, ops[(b + round) % BUCKETS], buf + off[b], len[b]);
        for (int spin = 0; spin < 3; spin++) {
            dt_reduce_progress(plan);
            for (int b = 0; b < BUCKETS; b++) (void)dt_reduce_test(h[b]);
        }
        for (int k = 0; k < BUCKETS; k++) dt_reduce_wait(h[order[round][k]]);
        EXPECT(dt_alloc_count() == allocs, "operations in flight allocated %llu times",
               (unsigned long long)(dt_alloc_count() - allocs));
        for (int b = 0; b < BUCKETS; b++)
            check(plan, ops[(b + round) % BUCKETS], dtype, PATTERN_REAL, buf + off[b], len[b],
                  "in flight");
    }
}

static void check_layout(const dt_reduce_plan *plan)
{
    const char *rpn = getenv("DTRAIN_RANKS_PER_NODE");
    int k = rpn && *rpn ? atoi(rpn) : world; /* one machine: one node */
    int nodes = (world + k - 1) / k, uniform = world % k == 0 || world < k;
    EXPECT(dt_reduce_world(plan) == world, "world %d", dt_reduce_world(plan));
    EXPECT(dt_reduce_nodes(plan) == nodes, "nodes %d, expected %d", dt_reduce_nodes(plan), nodes);
    EXPECT(dt_reduce_nodes_uniform(plan) == uniform, "uniform %d, expected %d",
           dt_reduce_nodes_uniform(plan), uniform);
    EXPECT(dt_reduce_ranks_per_node(plan) == DT_MIN(k, world), "ranks per node %d",
           dt_reduce_ranks_per_node(plan));
    /* hierarchical runs only where the nodes are uniform */
    EXPECT(dt_reduce_resolve(plan, DT_REDUCE_ALLREDUCE, 1000) ==
               (uniform ? DT_REDUCE_HIERARCHICAL : DT_REDUCE_MPI),
           "hierarchical resolved to %s",
           dt_reduce_algo_name(dt_reduce_resolve(plan, DT_REDUCE_ALLREDUCE, 1000)));
}

/* auto: node-aware where there are several uniform nodes of several ranks,
 * except an allreduce from 2 MiB on the wire (the rule of reduce.md) */
static void check_auto(const dt_reduce_plan *plan)
{
    int nodes = dt_reduce_nodes(plan), per_node = dt_reduce_ranks_per_node(plan);
    dt_reduce_algo aware = nodes > 1 && per_node > 1 && dt_reduce_nodes_uniform(plan)
                               ? DT_REDUCE_HIERARCHICAL
                               : DT_REDUCE_MPI;
    EXPECT(dt_reduce_resolve(plan, DT_REDUCE_ALLREDUCE, 269322) == aware &&
               dt_reduce_resolve(plan, DT_REDUCE_ALLREDUCE, 1 << 20) == DT_REDUCE_MPI,
           "auto allreduce: %s for 1.08 MB, %s for 4 MB, expected %s and mpi",
           dt_reduce_algo_name(dt_reduce_resolve(plan, DT_REDUCE_ALLREDUCE, 269322)),
           dt_reduce_algo_name(dt_reduce_resolve(plan, DT_REDUCE_ALLREDUCE, 1 << 20)),
           dt_reduce_algo_name(aware));
    EXPECT(dt_reduce_resolve(plan, DT_REDUCE_REDUCE_SCATTER, 1 << 20) == aware &&
               dt_reduce_resolve(plan, DT_REDUCE_ALLGATHER, 1 << 20) == aware,
           "auto reduce-scatter/allgather: %s, expected %s",
           dt_reduce_algo_name(dt_reduce_resolve(plan, DT_REDUCE_REDUCE_SCATTER, 1 << 20)),
           dt_reduce_algo_name(aware));
}

static void check_names(void)
{
    dt_reduce_algo a;
    dt_reduce_dtype d;
    for (int i = 0; i < DT_REDUCE_ALGO_COUNT; i++)
        EXPECT(dt_reduce_algo_from_name(dt_reduce_algo_name((dt_reduce_algo)i), &a) == 0 &&
                   a == (dt_reduce_algo)i,
               "algo name %d", i);
    for (int i = 0; i < DT_REDUCE_DTYPE_COUNT; i++)
        EXPECT(dt_reduce_dtype_from_name(dt_reduce_dtype_name((dt_reduce_dtype)i), &d) == 0 &&
                   d == (dt_reduce_dtype)i,
               "dtype name %d", i);
    EXPECT(dt_reduce_algo_from_name("ring", &a) == -1 && dt_reduce_algo_from_name(NULL, &a) == -1,
           "unknown algorithm accepted");
    EXPECT(dt_reduce_dtype_from_name("float16", &d) == -1, "unknown dtype accepted");
    EXPECT(dt_reduce_algo_name(DT_REDUCE_ALGO_COUNT) == NULL, "name of an invalid algorithm");
    EXPECT(!strcmp(dt_reduce_algo_name(DT_REDUCE_HIERARCHICAL), "hierarchical") &&
               !strcmp(dt_reduce_dtype_name(DT_REDUCE_BFLOAT16), "bfloat16"),
           "names");
}

int main(int argc, char **argv)
{
    dt_comm c;
    if (dt_comm_init(&argc, &argv, &c) != DT_OK) return 1;
    rank = c.rank;
    world = c.world;
    dt_comm_set_timeout(300); /* every wait polls through the watchdog */
    check_names();

    const size_t counts[] = {0, 1, (size_t)world - 1, 5, 16 * (size_t)world - 1,
                             16 * (size_t)world + 5, 1001, 48 * (size_t)world + 7, 40013, 269322};
    const size_t max_count = 269322;
    float *buf = dt_alloc_aligned(max_count * sizeof *buf);
    for (int algo = 0; algo < DT_REDUCE_ALGO_COUNT; algo++) {
        for (int dtype = 0; dtype < DT_REDUCE_DTYPE_COUNT; dtype++) {
            dt_reduce_plan *plan;
            dt_error err;
            if (dt_reduce_plan_create((dt_reduce_algo)algo, (dt_reduce_dtype)dtype, max_count, 4,
                                      &plan, &err) != DT_OK) {
                fprintf(stderr, "rank %d: %s\n", rank, err.msg);
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
            if (algo == DT_REDUCE_HIERARCHICAL && dtype == 0) check_layout(plan);
            if (algo == DT_REDUCE_AUTO && dtype == 0) check_auto(plan);
            for (size_t k = 0; k < DT_ARRAY_LEN(counts); k++) {
                size_t n = counts[k];
                if (algo == 0 && dtype == 0) check_pieces(plan, n);
                for (int op = 0; op < DT_REDUCE_OP_COUNT; op++) {
                    pattern pats[] = {PATTERN_INT, PATTERN_REAL, PATTERN_SPECIAL,
                                      PATTERN_ROUND};
                    for (size_t p = 0; p < DT_ARRAY_LEN(pats); p++) {
                        if (op == DT_REDUCE_ALLGATHER && p > 0) break;
                        fill(plan, (dt_reduce_op)op, pats[p], buf, n);
                        dt_reduce_run(plan, (dt_reduce_op)op, buf, n);
                        check(plan, (dt_reduce_op)op, (dt_reduce_dtype)dtype, pats[p], buf, n,
                              "single");
                    }
                }
            }
            check_in_flight(plan, (dt_reduce_dtype)dtype, buf);
            dt_reduce_plan_free(plan);
        }
    }
    dt_free(buf);

    long totals[2] = {checks, failures}, sums[2];
    MPI_Allreduce(totals, sums, 2, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0)
        printf("reduce_test: %d ranks (DTRAIN_RANKS_PER_NODE=%s): %ld checks, %ld failed\n", world,
               getenv("DTRAIN_RANKS_PER_NODE") ? getenv("DTRAIN_RANKS_PER_NODE") : "unset", sums[0],
               sums[1]);
    dt_comm_finalize();
    return sums[1] != 0;
}
