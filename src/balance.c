/* balance.c - the cut of the global batch that balance.h describes. */
#include "dtrain/balance.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtrain/comm.h"
#include "dtrain/data.h"

/* A new cut must shorten the predicted compute time by more than this
 * fraction. The cost of one window varies by a few percent on an idle
 * machine; at 3%, two ranks of equal speed were re-cut 0-15 times in 62
 * windows (63/65, then 65/63), for no measurable gain. */
#define BALANCE_MIN_GAIN 0.05
/* Weight of the newest window in the smoothed cost per sample. */
#define BALANCE_NEW_WEIGHT 0.5

struct dt_balance {
    int world, rank;
    long global_batch;
    long *counts;       /* the current cut, world entries */
    long *trial;        /* a candidate cut */
    double *costs;      /* smoothed seconds per sample, world entries */
    double *window;     /* the allreduce buffer */
    long begin;         /* this rank's first sample under the current cut */
    double seconds;     /* this window's compute so far */
    long samples, updates;
    bool warm;          /* the first update (cold caches, first touches) was skipped */
    long changes;
    double skew;        /* test hook: this rank's times are taken as skew x longer */
};

long dt_balance_max_shard(long global_batch, int world)
{
    return DT_MAX(1, global_batch - (world - 1));
}

static void set_begin(dt_balance *bal)
{
    bal->begin = 0;
    for (int r = 0; r < bal->rank; r++) bal->begin += bal->counts[r];
}

dt_status dt_balance_create(int world, int rank, long global_batch, dt_balance **out,
                            dt_error *err)
{
    DT_CHECK(world > 0 && rank >= 0 && rank < world && global_batch > 0);
    dt_balance *bal = dt_calloc(1, sizeof *bal);
    if (!bal) return dt_fail(err, DT_EINTERNAL, "out of memory");
    bal->world = world;
    bal->rank = rank;
    bal->global_batch = global_batch;
    bal->counts = dt_calloc((size_t)world, sizeof *bal->counts);
    bal->trial = dt_calloc((size_t)world, sizeof *bal->trial);
    bal->costs = dt_calloc((size_t)world, sizeof *bal->costs);
    bal->window = dt_calloc((size_t)world, sizeof *bal->window);
    if (!bal->counts || !bal->trial || !bal->costs || !bal->window) {
        dt_balance_free(bal);
        return dt_fail(err, DT_EINTERNAL, "out of memory");
    }
    for (int r = 0; r < world; r++) {
        long b0, b1;
        dt_shard(global_batch, r, world, &b0, &b1);
        bal->counts[r] = b1 - b0;
    }
    set_begin(bal);
    /* DTRAIN_TEST_BALANCE_SKEW=R:F makes rank R's compute count F times
     * longer, so that tests can move the cut on ranks of equal speed. */
    bal->skew = 1.0;
    const char *skew = getenv("DTRAIN_TEST_BALANCE_SKEW");
    int skew_rank;
    double factor;
    if (skew && sscanf(skew, "%d:%lf", &skew_rank, &factor) == 2 && skew_rank == rank &&
        factor > 0 && isfinite(factor))
        bal->skew = factor;
    *out = bal;
    return DT_OK;
}

void dt_balance_free(dt_balance *bal)
{
    if (!bal) return;
    dt_free(bal->counts);
    dt_free(bal->trial);
    dt_free(bal->costs);
    dt_free(bal->window);
    dt_free(bal);
}

void dt_balance_shard(const dt_balance *bal, long b, long *begin, long *end)
{
    if (b != bal->global_batch) { /* a short last batch: the even split */
        dt_shard(b, bal->rank, bal->world, begin, end);
        return;
    }
    *begin = bal->begin;
    *end = bal->begin + bal->counts[bal->rank];
}

static bool usable(double c)
{
    return c > 0 && isfinite(c);
}

/* Rank r's cost per sample; `fill` (the mean of the usable ones) stands in
 * for one that is not usable. */
static double cost_of(const double *cost, int r, double fill)
{
    return usable(cost[r]) ? cost[r] : fill;
}

/* The rank other than `except` whose shard would take least with one more
 * sample (the lower rank on a tie); -1 if there is none. */
static int cheapest_next(const double *cost, double fill, const long *counts, int world,
                         int except)
{
    int best = -1;
    double best_t = 0;
    for (int r = 0; r < world; r++) {
        if (r == except) continue;
        const double t = cost_of(cost, r, fill) * (double)(counts[r] + 1);
        if (best < 0 || t < best_t) {
            best = r;
            best_t = t;
        }
    }
    return best;
}

void dt_balance_split(const double *cost, int world, long b, long *counts)
{
    if (b < world) { /* not a sample for every rank: nothing to balance */
        for (int r = 0; r < world; r++) {
            long b0, b1;
            dt_shard(b, r, world, &b0, &b1);
            counts[r] = b1 - b0;
        }
        return;
    }
    double sum = 0;
    int known = 0;
    for (int r = 0; r < world; r++) {
        if (usable(cost[r])) {
            sum += cost[r];
            known++;
        }
    }
    const double fill = known ? sum / known : 1.0;
#define COST(r) cost_of(cost, r, fill)
    /* Start from one each and the rest shared in proportion to speed,
     * rounded down (so at most `world` samples are left to place), fill
     * greedily, then repair the start where it was above a rank's optimum. */
    double speed = 0;
    for (int r = 0; r < world; r++) speed += 1.0 / COST(r);
    long used = 0;
    for (int r = 0; r < world; r++) {
        double share = (double)(b - world) * (1.0 / COST(r)) / speed;
        /* costs so small that their speeds overflow give NaN or inf here */
        if (!(share >= 0)) share = 0;
        if (share > (double)(b - world)) share = (double)(b - world);
        counts[r] = 1 + (long)share;
        used += counts[r];
    }
    while (used > b) { /* rounding above the exact shares: take from the longest */
        int worst = -1;
        for (int r = 0; r < world; r++)
            if (counts[r] > 1 && (worst < 0 || COST(r) * (double)counts[r] >
                                                   COST(worst) * (double)counts[worst]))
                worst = r;
        counts[worst]--;
        used--;
    }
    while (used < b) {
        counts[cheapest_next(cost, fill, counts, world, -1)]++;
        used++;
    }
    /* The start can be above a rank's optimum: move single samples off the
     * longest shard while that shortens it. When no move does, no cut has a
     * smaller maximum: it would need fewer samples on the longest shard, so
     * one more on some rank r, which takes at least cost[r] x (counts[r] + 1).
     * Each move lowers the longest shard or their number: it ends. */
    for (;;) {
        int worst = 0;
        for (int r = 1; r < world; r++)
            if (COST(r) * (double)counts[r] > COST(worst) * (double)counts[worst]) worst = r;
        if (counts[worst] <= 1) break;
        const int to = cheapest_next(cost, fill, counts, world, worst);
        if (to < 0 ||
            !(COST(to) * (double)(counts[to] + 1) < COST(worst) * (double)counts[worst]))
            break;
        counts[worst]--;
        counts[to]++;
    }
#undef COST
}

double dt_balance_predict(const double *cost, const long *counts, int world)
{
    double worst = 0;
    for (int r = 0; r < world; r++) worst = DT_MAX(worst, cost[r] * (double)counts[r]);
    return worst;
}

bool dt_balance_note(dt_balance *bal, double seconds, long samples)
{
    if (!bal->warm) {
        bal->warm = true;
        return false;
    }
    bal->seconds += seconds * bal->skew;
    bal->samples += samples;
    if (++bal->updates < DT_BALANCE_WINDOW) return false;

    const int P = bal->world;
    memset(bal->window, 0, (size_t)P * sizeof *bal->window);
    bal->window[bal->rank] = bal->samples > 0 ? bal->seconds / (double)bal->samples : 0;
    dt_comm_allreduce_sum_d(bal->window, (size_t)P);
    bal->seconds = 0;
    bal->samples = 0;
    bal->updates = 0;
    for (int r = 0; r < P; r++) {
        const double c = bal->window[r];
        if (!usable(c)) continue;
        bal->costs[r] = usable(bal->costs[r])
                            ? (1 - BALANCE_NEW_WEIGHT) * bal->costs[r] + BALANCE_NEW_WEIGHT * c
                            : c;
    }
    dt_balance_split(bal->costs, P, bal->global_batch, bal->trial);
    const double now = dt_balance_predict(bal->costs, bal->counts, P);
    const double next = dt_balance_predict(bal->costs, bal->trial, P);
    if (!(next < now * (1 - BALANCE_MIN_GAIN))) return false;
    memcpy(bal->counts, bal->trial, (size_t)P * sizeof *bal->counts);
    set_begin(bal);
    bal->changes++;
    return true;
}

const long *dt_balance_counts(const dt_balance *bal)
{
    return bal->counts;
}

const double *dt_balance_costs(const dt_balance *bal)
{
    return bal->costs;
}

long dt_balance_changes(const dt_balance *bal)
{
    return bal->changes;
}
