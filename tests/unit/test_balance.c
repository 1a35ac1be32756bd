/* test_balance.c - Check suite for the cut of balance.h.
 *
 * dt_balance_split against a brute-force optimum on every small case, its
 * invariants (the whole batch, at least one sample each, the same result
 * for the same costs) on random ones, the costs it cannot use, and the
 * shards a new balancer hands out before any timing (the even split). The
 * collective part (dt_balance_note at a window's end) runs in
 * tests/mpi/balance.sh. */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "check_main.h"
#include "dtrain/balance.h"
#include "dtrain/data.h"

static long sum_of(const long *n, int world)
{
    long s = 0;
    for (int r = 0; r < world; r++) s += n[r];
    return s;
}

START_TEST(test_equal_costs_even)
{
    const double cost[4] = {2e-5, 2e-5, 2e-5, 2e-5};
    long n[4];
    dt_balance_split(cost, 4, 128, n);
    for (int r = 0; r < 4; r++) ck_assert_int_eq(n[r], 32);
    dt_balance_split(cost, 3, 128, n);
    ck_assert_int_eq(sum_of(n, 3), 128);
    for (int r = 0; r < 3; r++) ck_assert(n[r] == 42 || n[r] == 43);
}
END_TEST

START_TEST(test_proportional)
{
    /* 1:3 -> 96 and 32 samples: both take 96 cost units */
    long n[3];
    dt_balance_split((const double[]){1.0, 3.0}, 2, 128, n);
    ck_assert_int_eq(n[0], 96);
    ck_assert_int_eq(n[1], 32);
    dt_balance_split((const double[]){2.0, 1.0, 2.0}, 3, 100, n);
    ck_assert_int_eq(n[0], 25);
    ck_assert_int_eq(n[1], 50);
    ck_assert_int_eq(n[2], 25);
    ck_assert(fabs(dt_balance_predict((const double[]){2.0, 1.0, 2.0}, n, 3) - 50.0) < 1e-12);
}
END_TEST

START_TEST(test_at_least_one)
{
    long n[3];
    dt_balance_split((const double[]){1.0, 1e9, 1.0}, 3, 128, n);
    ck_assert_int_eq(n[1], 1);
    ck_assert_int_eq(n[0] + n[2], 127);
    /* the batch exactly as large as the world: one each, whatever the costs */
    dt_balance_split((const double[]){1.0, 50.0, 3.0}, 3, 3, n);
    for (int r = 0; r < 3; r++) ck_assert_int_eq(n[r], 1);
}
END_TEST

START_TEST(test_fewer_samples_than_ranks)
{
    /* nothing to balance: dt_shard's split, empty shards included */
    long n[5];
    dt_balance_split((const double[]){1, 9, 1, 9, 1}, 5, 3, n);
    for (int r = 0; r < 5; r++) {
        long b0, b1;
        dt_shard(3, r, 5, &b0, &b1);
        ck_assert_int_eq(n[r], b1 - b0);
    }
}
END_TEST

START_TEST(test_unusable_costs)
{
    /* not positive or not finite: counted as the mean of the usable ones */
    long n[4];
    dt_balance_split((const double[]){1.0, NAN, 1.0, 0.0}, 4, 128, n);
    for (int r = 0; r < 4; r++) ck_assert_int_eq(n[r], 32);
    /* usable but so small that 1/cost overflows: still a whole cut */
    dt_balance_split((const double[]){1e-310, 1e-310, 1.0, 1e-320}, 4, 128, n);
    ck_assert_int_eq(sum_of(n, 4), 128);
    for (int r = 0; r < 4; r++) ck_assert_int_ge(n[r], 1);
    ck_assert_int_eq(n[2], 1);
    dt_balance_split((const double[]){INFINITY, -1.0, NAN, 0.0}, 4, 10, n);
    ck_assert_int_eq(sum_of(n, 4), 10);
    for (int r = 0; r < 4; r++) ck_assert(n[r] == 2 || n[r] == 3);
}
END_TEST

/* The smallest possible max(cost x count) over every cut of b into `world`
 * shards of at least one sample. */
static double brute_best(const double *cost, int world, long b, long *n, int r, long left)
{
    if (r == world - 1) {
        n[r] = left;
        return dt_balance_predict(cost, n, world);
    }
    double best = INFINITY;
    for (long k = 1; k <= left - (world - 1 - r); k++) {
        n[r] = k;
        best = fmin(best, brute_best(cost, world, b, n, r + 1, left - k));
    }
    return best;
}

START_TEST(test_optimal_small)
{
    srand(7);
    for (int trial = 0; trial < 300; trial++) {
        const int world = 2 + trial % 3;
        const long b = world + rand() % 18;
        double cost[4];
        for (int r = 0; r < world; r++) cost[r] = 0.5 + (double)(rand() % 1000) / 100.0;
        long n[4], scratch[4];
        dt_balance_split(cost, world, b, n);
        ck_assert_int_eq(sum_of(n, world), b);
        for (int r = 0; r < world; r++) ck_assert_int_ge(n[r], 1);
        const double best = brute_best(cost, world, b, scratch, 0, b);
        ck_assert_msg(dt_balance_predict(cost, n, world) <= best * (1 + 1e-12),
                      "trial %d: world %d, b %ld: %g above the optimum %g", trial, world, b,
                      dt_balance_predict(cost, n, world), best);
    }
}
END_TEST

START_TEST(test_invariants_random)
{
    srand(11);
    enum { W = 128 };
    double cost[W];
    long n[W], again[W];
    for (int trial = 0; trial < 200; trial++) {
        const int world = 1 + rand() % W;
        const long b = world + rand() % 5000;
        for (int r = 0; r < world; r++) cost[r] = 1e-6 * (1 + rand() % 100);
        dt_balance_split(cost, world, b, n);
        dt_balance_split(cost, world, b, again);
        ck_assert_int_eq(sum_of(n, world), b);
        for (int r = 0; r < world; r++) {
            ck_assert_int_ge(n[r], 1);
            ck_assert_int_eq(n[r], again[r]);
        }
        /* no single sample moved off the longest shard would shorten the
         * update: max <= cost[r] * (n[r] + 1) for every other rank, unless
         * the longest is one sample (then no cut is shorter) */
        const double worst = dt_balance_predict(cost, n, world);
        int longest = 0;
        for (int r = 1; r < world; r++)
            if (cost[r] * (double)n[r] > cost[longest] * (double)n[longest]) longest = r;
        if (n[longest] == 1) continue;
        for (int r = 0; r < world; r++)
            if (cost[r] * (double)n[r] < worst)
                ck_assert(cost[r] * (double)(n[r] + 1) >= worst * (1 - 1e-12));
    }
}
END_TEST

START_TEST(test_balancer_starts_even)
{
    for (int world = 1; world <= 5; world++) {
        for (int rank = 0; rank < world; rank++) {
            dt_balance *bal = NULL;
            dt_error err = {0};
            ck_assert_int_eq(dt_balance_create(world, rank, 128, &bal, &err), DT_OK);
            long b0, b1, e0, e1;
            dt_balance_shard(bal, 128, &b0, &b1);
            dt_shard(128, rank, world, &e0, &e1);
            ck_assert_int_eq(b0, e0);
            ck_assert_int_eq(b1, e1);
            ck_assert_int_eq(dt_balance_counts(bal)[rank], e1 - e0);
            /* a short last batch: the even split of its own size */
            dt_balance_shard(bal, 37, &b0, &b1);
            dt_shard(37, rank, world, &e0, &e1);
            ck_assert_int_eq(b0, e0);
            ck_assert_int_eq(b1, e1);
            ck_assert_int_eq(dt_balance_changes(bal), 0);
            /* notes inside the first window need no other rank */
            for (int u = 0; u < DT_BALANCE_WINDOW; u++)
                ck_assert(!dt_balance_note(bal, 1e-3, e1 - e0));
            dt_balance_free(bal);
        }
    }
    ck_assert_int_eq(dt_balance_max_shard(128, 2), 127);
    ck_assert_int_eq(dt_balance_max_shard(3, 8), 1);
}
END_TEST

static Suite *balance_suite(void)
{
    Suite *s = suite_create("balance");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_equal_costs_even);
    tcase_add_test(tc, test_proportional);
    tcase_add_test(tc, test_at_least_one);
    tcase_add_test(tc, test_fewer_samples_than_ranks);
    tcase_add_test(tc, test_unusable_costs);
    tcase_add_test(tc, test_optimal_small);
    tcase_add_test(tc, test_invariants_random);
    tcase_add_test(tc, test_balancer_starts_even);
    suite_add_tcase(s, tc);
    return s;
}

DT_CHECK_MAIN(balance_suite)
