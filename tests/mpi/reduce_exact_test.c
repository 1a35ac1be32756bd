/* reduce_exact_test.c - the fixed-tree sums of reduce_exact.h, bit for bit.
 *
 *   mpiexec -np P reduce_exact_test        (P = 1, 2, 4, 8: the sums; P = 3:
 *                                           the plan must refuse the world)
 *
 * A batch of LEAVES = 8 leaves, each a vector of random values of mixed
 * magnitudes (so that the order of additions shows in the bits), defined by
 * (leaf, index) alone. Rank r of P holds leaves [r*8/P, (r+1)*8/P) and
 * contributes their local tree. Whatever P is, the results must be the bits
 * of the tree over all 8 leaves that one rank computes alone, sequentially:
 *  - reduce-scatter: this rank's piece, and the doubles riding along;
 *  - allgather after it: the whole vector;
 *  - the two allreduce orders (rank tree; the partition's tree over per-piece
 *    values at depth 3);
 * for float and double vectors of awkward lengths (0, 1, 7, 1000003, ...).
 * The pieces must be nodes of the fixed partition covering [0, n) exactly
 * once, one per rank. Sensitivity: for the long vector, the left-to-right
 * sum of the 8 leaves must differ from the tree in some elements (else a
 * bitwise comparison would prove nothing). Each pass runs with the watchdog
 * polling and with blocking waits. Every failed check prints one line; the
 * exit status is 1 if any rank failed one. */
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtrain/comm.h"
#include "dtrain/reduce_exact.h"

enum { LEAVES = 8, DEPTH = 3 };

static int rank, world;
static long checks, failures;

#define EXPECT(cond, ...)                                                      \
    do {                                                                       \
        checks++;                                                              \
        if (!(cond) && ++failures <= 20) {                                     \
            fprintf(stderr, "rank %d: %s:%d: ", rank, __FILE__, __LINE__);     \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
        }                                                                      \
    } while (0)

static uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t z = a * 0x9e3779b97f4a7c15u + b + 0x632be59bd9b4e5d1u;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* Leaf `leaf`'s value at index i: a random mantissa, exponents over 2^-12
 * .. 2^12, either sign. salt separates vectors of different tests. */
static double value(uint64_t salt, int leaf, size_t i)
{
    uint64_t h = mix(mix(salt, (uint64_t)leaf), i);
    double m = (double)(h >> 11) / 9007199254740992.0 * 2.0 - 1.0;
    return ldexp(m, (int)(mix(h, 7) % 25) - 12);
}

static float valuef(uint64_t salt, int leaf, size_t i) { return (float)value(salt, leaf, i); }

/* T(a, b) over leaves at index i, mid = (a + b) / 2, in float or double. */
static float tree_f(uint64_t salt, int a, int b, size_t i)
{
    if (b - a == 1) return valuef(salt, a, i);
    int mid = (a + b) / 2;
    return tree_f(salt, a, mid, i) + tree_f(salt, mid, b, i);
}

static double tree_d(uint64_t salt, int a, int b, size_t i)
{
    if (b - a == 1) return value(salt, a, i);
    int mid = (a + b) / 2;
    return tree_d(salt, a, mid, i) + tree_d(salt, mid, b, i);
}

static int same_f(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }
static int same_d(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

/* This rank's leaves [*a, *b). */
static void my_leaves(int *a, int *b)
{
    *a = rank * LEAVES / world;
    *b = (rank + 1) * LEAVES / world;
}

/* The pieces of n elements: one node at depth log2 P per rank, each rank
 * its own, together [0, n) exactly once. */
static void check_pieces(dt_exact *x, size_t n)
{
    const int k = dt_exact_log2_world(x);
    char *seen = calloc((size_t)world, 1);
    for (int r = 0; r < world; r++) {
        size_t idx = dt_exact_piece_index(x, r), lo, hi, nlo, nhi;
        EXPECT(idx < (size_t)world, "rank %d: piece index %zu", r, idx);
        if (idx >= (size_t)world) continue;
        EXPECT(!seen[idx], "two ranks own piece %zu", idx);
        seen[idx] = 1;
        dt_exact_piece_of(x, r, n, &lo, &hi);
        dt_exact_node(n, k, idx, &nlo, &nhi);
        EXPECT(lo == nlo && hi == nhi, "n %zu rank %d: piece [%zu, %zu) is not node (%d, %zu)",
               n, r, lo, hi, k, idx);
    }
    size_t end = 0;
    for (size_t i = 0; i < (size_t)world; i++) {
        size_t lo, hi;
        dt_exact_node(n, k, i, &lo, &hi);
        EXPECT(lo == end && hi >= lo, "n %zu: node %zu is [%zu, %zu), expected to start at %zu", n,
               i, lo, hi, end);
        end = hi;
    }
    EXPECT(end == n, "n %zu: the pieces end at %zu", n, end);
    free(seen);
}

static void test_float(dt_exact *x, size_t n, uint64_t salt)
{
    int a, b;
    my_leaves(&a, &b);
    float *v = malloc(DT_MAX(n, 1) * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = tree_f(salt, a, b, i);
    /* the doubles riding along: one per slot, leaf values of their own */
    double sums[DT_EXACT_MAX_SUMS];
    for (int j = 0; j < DT_EXACT_MAX_SUMS; j++) sums[j] = tree_d(salt + 1000 + (uint64_t)j, a, b, 0);
    dt_exact_reduce_scatter(x, DT_EXACT_FLOAT, v, n, sums, DT_EXACT_MAX_SUMS);
    for (int j = 0; j < DT_EXACT_MAX_SUMS; j++) {
        double want = tree_d(salt + 1000 + (uint64_t)j, 0, LEAVES, 0);
        EXPECT(same_d(sums[j], want), "float n %zu: riding sum %d is %.17g, the tree %.17g", n, j,
               sums[j], want);
    }
    size_t lo, hi;
    dt_exact_piece_of(x, rank, n, &lo, &hi);
    long bad = 0;
    for (size_t i = lo; i < hi; i++) {
        float want = tree_f(salt, 0, LEAVES, i);
        if (!same_f(v[i], want) && bad++ == 0)
            EXPECT(0, "float n %zu: reduce-scatter [%zu] = %.9g, the tree %.9g", n, i, v[i], want);
    }
    checks++;
    dt_exact_allgather(x, DT_EXACT_FLOAT, v, n);
    long bad_all = 0, order_matters = 0;
    for (size_t i = 0; i < n; i++) {
        float want = tree_f(salt, 0, LEAVES, i);
        if (!same_f(v[i], want) && bad_all++ == 0)
            EXPECT(0, "float n %zu: allgather [%zu] = %.9g, the tree %.9g", n, i, v[i], want);
        float seq = 0;
        for (int l = 0; l < LEAVES; l++) seq += valuef(salt, l, i);
        order_matters += !same_f(seq, want);
    }
    checks++;
    if (n > 100000)
        EXPECT(order_matters > 0, "float n %zu: the left-to-right sum never differs from the tree", n);
    if (rank == 0 && n > 100000)
        printf("float n %zu: %ld of %zu elements differ between the tree and left to right\n", n,
               order_matters, n);
    free(v);
}

static void test_double(dt_exact *x, size_t n, uint64_t salt)
{
    int a, b;
    my_leaves(&a, &b);
    double *v = malloc(DT_MAX(n, 1) * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = tree_d(salt, a, b, i);
    dt_exact_reduce_scatter(x, DT_EXACT_DOUBLE, v, n, NULL, 0);
    size_t lo, hi;
    dt_exact_piece_of(x, rank, n, &lo, &hi);
    long bad = 0;
    for (size_t i = lo; i < hi; i++) {
        double want = tree_d(salt, 0, LEAVES, i);
        if (!same_d(v[i], want) && bad++ == 0)
            EXPECT(0, "double n %zu: reduce-scatter [%zu] = %.17g, the tree %.17g", n, i, v[i], want);
    }
    checks++;
    dt_exact_allgather(x, DT_EXACT_DOUBLE, v, n);
    long bad_all = 0, order_matters = 0;
    for (size_t i = 0; i < n; i++) {
        double want = tree_d(salt, 0, LEAVES, i);
        if (!same_d(v[i], want) && bad_all++ == 0)
            EXPECT(0, "double n %zu: allgather [%zu] = %.17g, the tree %.17g", n, i, v[i], want);
        double seq = 0;
        for (int l = 0; l < LEAVES; l++) seq += value(salt, l, i);
        order_matters += !same_d(seq, want);
    }
    checks++;
    if (n > 100000)
        EXPECT(order_matters > 0, "double n %zu: the left-to-right sum never differs from the tree", n);
    free(v);
}

/* Both allreduce orders on DT_EXACT_MAX_SUMS doubles. */
static void test_allreduce(dt_exact *x, uint64_t salt)
{
    int a, b;
    my_leaves(&a, &b);
    double v[DT_EXACT_MAX_SUMS];
    for (int j = 0; j < DT_EXACT_MAX_SUMS; j++) v[j] = tree_d(salt, a, b, (size_t)j);
    dt_exact_allreduce(x, DT_EXACT_RANK_TREE, v, DT_EXACT_MAX_SUMS);
    for (int j = 0; j < DT_EXACT_MAX_SUMS; j++)
        EXPECT(same_d(v[j], tree_d(salt, 0, LEAVES, (size_t)j)), "rank tree [%d]: %.17g vs %.17g",
               j, v[j], tree_d(salt, 0, LEAVES, (size_t)j));
    /* per-piece values: the partition's 8 nodes at depth 3; this rank holds
     * the ones under its piece, in partition order */
    const int below = DEPTH - dt_exact_log2_world(x);
    const size_t first = dt_exact_piece_index(x, rank) << below, count = (size_t)1 << below;
    double block[LEAVES];
    for (int j = 0; j < DT_EXACT_MAX_SUMS; j++) {
        for (size_t i = 0; i < count; i++) block[i] = value(salt + 77, (int)(first + i), (size_t)j);
        v[j] = dt_exact_tree_sum(block, count);
    }
    dt_exact_allreduce(x, DT_EXACT_PIECE_TREE, v, DT_EXACT_MAX_SUMS);
    for (int j = 0; j < DT_EXACT_MAX_SUMS; j++)
        EXPECT(same_d(v[j], tree_d(salt + 77, 0, LEAVES, (size_t)j)),
               "piece tree [%d]: %.17g vs %.17g", j, v[j], tree_d(salt + 77, 0, LEAVES, (size_t)j));
    EXPECT(dt_exact_tree_sum(v, 0) == 0, "the tree of nothing is not 0");
    EXPECT(same_d(dt_exact_tree_sum(v, 1), v[0]), "the tree of one value is not that value");
}

int main(int argc, char **argv)
{
    dt_comm c;
    if (dt_comm_init(&argc, &argv, &c) != DT_OK) return 1;
    rank = c.rank;
    world = c.world;
    static const size_t lengths[] = {0, 1, 2, 3, 7, 8, 9, 1023, 4096, 1000003};
    const size_t max_n = 1000003;
    dt_exact *x = NULL;
    dt_error err = {0};
    dt_status st = dt_exact_create(max_n * sizeof(double), &x, &err);
    if (world & (world - 1)) {
        /* not a power of two: refused on every rank, before any message */
        EXPECT(st == DT_ECONFIG && x == NULL, "%d ranks: create returned %d", world, (int)st);
        if (rank == 0) printf("%d ranks refused: %s\n", world, err.msg);
    } else if (world > LEAVES) {
        fprintf(stderr, "reduce_exact_test: at most %d ranks\n", LEAVES);
        failures++;
    } else {
        EXPECT(st == DT_OK, "create: %s", err.msg);
        for (int pass = 0; pass < 2 && st == DT_OK; pass++) {
            dt_comm_set_timeout(pass == 0 ? 120 : 0); /* polled, then blocking waits */
            for (size_t t = 0; t < DT_ARRAY_LEN(lengths); t++) {
                check_pieces(x, lengths[t]);
                test_float(x, lengths[t], 100 * t + (uint64_t)pass);
                test_double(x, lengths[t], 100 * t + 50 + (uint64_t)pass);
            }
            test_allreduce(x, 9000 + (uint64_t)pass);
        }
        dt_exact_free(x);
    }
    long totals[2] = {checks, failures}, sums[2];
    MPI_Allreduce(totals, sums, 2, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0)
        printf("reduce_exact_test: %d ranks: %ld checks, %ld failed\n", world, sums[0], sums[1]);
    dt_comm_finalize();
    return sums[1] != 0;
}
