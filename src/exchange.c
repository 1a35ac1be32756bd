/* exchange.c - the gradient exchange of exchange.h over the reductions of
 * reduce.h (or, reproducible, over the fixed tree of reduce_exact.h):
 * buckets, the tail, the pieces a rank updates, and the parameters' return
 * trip in the sharded strategy.
 *
 * Order is the contract with the other ranks: buckets start in index order
 * (k = 0 at the end of the arena) as backward makes them final, and are
 * completed in the same order, so every rank runs the same sequence of
 * operations whatever its timing. */
#include "dtrain/exchange.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "comm_internal.h" /* dt__comm_wait; SMPI: MPI calls are compute boundaries */
#include "dtrain/reduce_exact.h"

/* Below this a bucket is latency-bound; above the maximum count an MPI
 * count (int) overflows. */
#define MIN_BUCKET_FLOATS 1024
#define MAX_BUCKET_FLOATS ((size_t)1 << 30)
#define MAX_BUCKETS DT_REDUCE_MAX_INFLIGHT

struct dt_exchange {
    dt_exchange_options o;
    int world, rank;
    bool alone;          /* one rank: the arena is its own sum */
    bool tail_in_bucket; /* replicated float32: bucket 0 runs on over the tail */
    dt_reduce_op op;     /* ALLREDUCE (replicated) or REDUCE_SCATTER (sharded) */
    dt_reduce_plan *plan;
    int n_buckets;
    size_t lo[MAX_BUCKETS], hi[MAX_BUCKETS]; /* bucket k: gradients [lo, hi) */
    dt_reduce_handle *h[MAX_BUCKETS];
    double t_start[MAX_BUCKETS], t_done[MAX_BUCKETS]; /* for the timeline */
    /* The tail outside the buckets (sharded, or a bfloat16 wire): summed in
     * double, never rounded to bfloat16, by two non-blocking allreduces on
     * communicators of its own: inside the node, started as soon as the
     * tail is final (before backward), then across the nodes, started when
     * the first is seen complete (at a layer boundary or at the finish,
     * before the buckets). It is in flight behind backward and the buckets
     * in every build, never a point where the ranks wait for it alone: a
     * blocking reduction of two values over 128 ranks is a chain of
     * latency-bound rounds, 0.4-0.5 ms on the simulated 10 GbE cluster, a
     * sixth of the update (launch/results/scaling-round2.md). Its sums are
     * of float values in double, exact in practice: the same on every
     * rank. Uneven nodes: the first step is this rank alone, the second
     * the world. */
    MPI_Comm tail_node, tail_cross;
    MPI_Request tail_req;
    int tail_phase; /* 0 idle, 1 the node sum in flight, 2 the cross sum */
    double tail_node_sum[DT_EXACT_MAX_SUMS]; /* out of place: SMPI's non-blocking
                                                collectives mis-handle MPI_IN_PLACE */
    int started;       /* buckets 0..started-1 are in flight */
    size_t ready_from; /* arena[ready_from, n_params) is final */
    float *arena;
    float *early_params; /* sharded: each bucket's parameters go out as soon
                            as its piece has run (dt_exchange_spread_early) */
    bool params_in_flight; /* their allgathers are started, not waited */
    double ready_seconds;
    double tail[DT_EXACT_MAX_SUMS]; /* the trainer's global quantities */
    dt_exact *exact;   /* reproducible: the fixed tree (NULL otherwise) */
    size_t piece_lo, piece_hi; /* reproducible: this rank's pieces, as node
                                  indices at depth tree_depth */
    /* This rank's share: the parameters it updates, packed in bucket order
     * (reproducible: its one contiguous piece) when it is a part of the
     * arena, so that state kept per share (the optimizer's) is 1/P of it.
     * Bucket k's part starts at at[k] of the share (= lo[k] when the share
     * is the whole arena); reproducible, piece [lo, hi) at lo - share_lo. */
    size_t share, share_lo;
    size_t at[MAX_BUCKETS];
    int *counts, *displs; /* per rank: collect and distribute */
};

/* Elements bucket k hands to the reduction (the tail rides on bucket 0). */
static size_t bucket_count(const dt_exchange *x, int k)
{
    size_t n = x->hi[k] - x->lo[k];
    return k == 0 && x->tail_in_bucket ? n + x->o.n_tail : n;
}

static void plan_buckets(dt_exchange *x)
{
    const size_t n = x->o.n_params;
    size_t size = x->o.bucket_floats;
    if (size < MIN_BUCKET_FLOATS) size = MIN_BUCKET_FLOATS;
    if (size > MAX_BUCKET_FLOATS) size = MAX_BUCKET_FLOATS;
    if (!x->o.overlap || size > n) size = DT_MAX(n, 1);
    if ((n + size - 1) / size > MAX_BUCKETS) size = (n + MAX_BUCKETS - 1) / MAX_BUCKETS;
    x->n_buckets = n == 0 ? 1 : (int)((n + size - 1) / size);
    for (int k = 0; k < x->n_buckets; k++) {
        x->hi[k] = n - DT_MIN(n, (size_t)k * size);
        x->lo[k] = x->hi[k] > size ? x->hi[k] - size : 0;
    }
}

/* ---- the share: what this rank updates ---------------------------------- */

/* Is each rank's share a part of the arena (a sharded update on P > 1)?
 * The same answer on every rank. */
static bool share_partial(const dt_exchange *x)
{
    return !x->alone && x->op == DT_REDUCE_REDUCE_SCATTER;
}

/* This rank's part [*plo, *phi) of bucket k's gradients. */
static void bucket_piece(const dt_exchange *x, int k, size_t *plo, size_t *phi)
{
    if (!share_partial(x)) {
        *plo = x->lo[k];
        *phi = x->hi[k];
        return;
    }
    dt_reduce_piece(x->plan, bucket_count(x, k), plo, phi);
    *plo += x->lo[k];
    *phi += x->lo[k];
}

/* Sharded: rank r's part of segment k of the arena, as [*lo, *hi).
 * Segment k is bucket k; reproducible, the one segment is the arena and
 * rank r's part is its piece of the tree (the union of its pieces). */
static void part_of(const dt_exchange *x, int r, int k, size_t *lo, size_t *hi)
{
    if (x->exact) {
        dt_exact_piece_of(x->exact, r, x->o.n_params, lo, hi);
        return;
    }
    dt_reduce_piece_of(x->plan, r, x->hi[k] - x->lo[k], lo, hi);
    *lo += x->lo[k];
    *hi += x->lo[k];
}

static int segments(const dt_exchange *x) { return x->exact ? 1 : x->n_buckets; }

static void plan_share(dt_exchange *x)
{
    if (!share_partial(x)) {
        x->share = x->o.n_params;
        for (int k = 0; k < x->n_buckets; k++) x->at[k] = x->lo[k];
        return;
    }
    size_t at = 0;
    for (int k = 0; k < segments(x); k++) {
        size_t lo, hi;
        part_of(x, x->rank, k, &lo, &hi);
        if (k == 0) x->share_lo = lo;
        x->at[k] = at;
        at += hi - lo;
    }
    x->share = at;
}

/* Where reproducible piece [lo, hi) starts in the share. */
static size_t exact_at(const dt_exchange *x, size_t lo)
{
    return share_partial(x) ? lo - x->share_lo : lo;
}

/* Reproducible: one bucket over the whole arena; the tail in double. */
static dt_status create_exact(dt_exchange *x, dt_error *err)
{
    const int depth = x->o.tree_depth;
    if (x->o.dtype != DT_REDUCE_FLOAT32)
        return dt_fail(err, DT_ECONFIG, "a reproducible exchange sums in float32 only");
    if (depth < 0 || depth > 40 || (x->world & (x->world - 1)) || x->world > (1L << depth))
        return dt_fail(err, DT_ECONFIG,
                       "a reproducible exchange over 2^%d leaves cannot run on %d ranks", depth,
                       x->world);
    x->o.overlap = false;
    x->tail_in_bucket = false;
    x->n_buckets = 1;
    x->lo[0] = 0;
    x->hi[0] = x->o.n_params;
    dt_status st = dt_exact_create(DT_MAX(x->o.n_params, 1) * sizeof(float), &x->exact, err);
    if (st) return st;
    /* The pieces under this rank's node (depth log2 P) at depth tree_depth
     * (replicated: every rank has every piece). */
    const int below = depth - dt_exact_log2_world(x->exact);
    if (x->o.update == DT_UPDATE_SHARDED) {
        x->piece_lo = dt_exact_piece_index(x->exact, x->rank) << below;
        x->piece_hi = x->piece_lo + ((size_t)1 << below);
    } else {
        x->piece_lo = 0;
        x->piece_hi = (size_t)1 << depth;
    }
    return DT_OK;
}

dt_status dt_exchange_create(const dt_exchange_options *o, dt_exchange **out, dt_error *err)
{
    if (o->n_tail > DT_EXACT_MAX_SUMS) DT_BUG("a tail of %zu values", o->n_tail);
    dt_exchange *x = dt_calloc(1, sizeof *x);
    if (!x) return dt_fail(err, DT_EINTERNAL, "out of memory");
    x->o = *o;
    x->tail_node = x->tail_cross = MPI_COMM_NULL; /* not all-zero bits in Open MPI */
    x->tail_req = MPI_REQUEST_NULL;
    MPI_Comm_size(MPI_COMM_WORLD, &x->world);
    MPI_Comm_rank(MPI_COMM_WORLD, &x->rank);
    x->alone = x->world == 1;
    x->counts = dt_malloc(2 * (size_t)x->world * sizeof *x->counts);
    if (!x->counts) {
        dt_free(x);
        return dt_fail(err, DT_EINTERNAL, "out of memory");
    }
    x->displs = x->counts + x->world;
    if (o->reproducible) {
        x->op = o->update == DT_UPDATE_SHARDED ? DT_REDUCE_REDUCE_SCATTER : DT_REDUCE_ALLREDUCE;
        dt_status st = create_exact(x, err);
        if (st) {
            dt_exchange_free(x);
            return st;
        }
        plan_share(x);
        *out = x;
        return DT_OK;
    }
    /* Blocking reductions (the SMPI build's default, reduce.h): a bucket
     * started inside backward would only serialise it. */
    if (x->alone || dt_reduce_blocking_default()) x->o.overlap = false;
    x->op = o->update == DT_UPDATE_SHARDED ? DT_REDUCE_REDUCE_SCATTER : DT_REDUCE_ALLREDUCE;
    x->tail_in_bucket = o->update == DT_UPDATE_REPLICATED && o->dtype == DT_REDUCE_FLOAT32;
    plan_buckets(x);
    dt_status st = DT_OK;
    if (!x->alone) {
        size_t max_count = bucket_count(x, 0);
        for (int k = 1; k < x->n_buckets; k++) max_count = DT_MAX(max_count, bucket_count(x, k));
        st = dt_reduce_plan_create(o->algo, o->dtype, DT_MAX(max_count, 1), x->n_buckets,
                                   &x->plan, err);
    }
    /* collective: every rank takes the same branch (the same options) */
    if (!st && !x->alone && !x->tail_in_bucket && o->n_tail > 0) {
        dt__comm_layout lay;
        dt__comm_split_nodes(&x->tail_node, &x->tail_cross, &lay);
        if (!lay.uniform) {
            MPI_Comm_free(&x->tail_node);
            MPI_Comm_free(&x->tail_cross);
            MPI_Comm_dup(MPI_COMM_SELF, &x->tail_node);
            MPI_Comm_dup(MPI_COMM_WORLD, &x->tail_cross);
        }
    }
    if (st) {
        dt_exchange_free(x);
        return st;
    }
    plan_share(x);
    *out = x;
    return DT_OK;
}

void dt_exchange_free(dt_exchange *x)
{
    if (!x) return;
    dt_reduce_plan_free(x->plan);
    if (x->tail_node != MPI_COMM_NULL) MPI_Comm_free(&x->tail_node);
    if (x->tail_cross != MPI_COMM_NULL) MPI_Comm_free(&x->tail_cross);
    dt_exact_free(x->exact);
    dt_free(x->counts);
    dt_free(x);
}

double *dt_exchange_tail(dt_exchange *x) { return x->tail; }

static bool tail_apart(const dt_exchange *x) { return x->tail_node != MPI_COMM_NULL; }

/* Move the tail's two sums on: test (or, with wait, complete) the one in
 * flight; when the node sum is complete, start the cross-node one
 * (tail -> tail_node_sum -> tail). */
static void tail_advance(dt_exchange *x, bool wait)
{
    if (!x->tail_phase) return;
    if (wait) {
        dt__comm_wait(1, &x->tail_req, "the loss and stop-flag allreduce");
    } else {
        int done; /* the request is freed (set to NULL) when it completes */
        MPI_Test(&x->tail_req, &done, MPI_STATUS_IGNORE);
        if (!done) return;
    }
    if (x->tail_phase == 1) {
        MPI_Iallreduce(x->tail_node_sum, x->tail, (int)x->o.n_tail, MPI_DOUBLE, MPI_SUM,
                       x->tail_cross, &x->tail_req);
        x->tail_phase = 2;
    } else {
        x->tail_phase = 0;
    }
}

void dt_exchange_begin(dt_exchange *x, float *arena)
{
    x->arena = arena;
    x->started = 0;
    x->ready_from = x->o.n_params;
    x->ready_seconds = 0;
    if (x->exact) return; /* the tail stays in double */
    if (tail_apart(x)) {
        MPI_Iallreduce(x->tail, x->tail_node_sum, (int)x->o.n_tail, MPI_DOUBLE, MPI_SUM,
                       x->tail_node, &x->tail_req);
        x->tail_phase = 1;
    } else {
        for (size_t i = 0; i < x->o.n_tail; i++) arena[x->o.n_params + i] = (float)x->tail[i];
    }
}

static void start_ready_buckets(dt_exchange *x)
{
    while (x->started < x->n_buckets && x->lo[x->started] >= x->ready_from) {
        int k = x->started++;
        x->t_start[k] = MPI_Wtime();
        x->h[k] = dt_reduce_start(x->plan, x->op, x->arena + x->lo[k], bucket_count(x, k));
    }
}

void dt_exchange_ready(void *xp, size_t offset, size_t count)
{
    dt_exchange *x = xp;
    if (!x->o.overlap) return;
    double t0 = MPI_Wtime();
    /* Ranges come in from the end; anything else only delays the start. */
    if (offset + count >= x->ready_from && offset < x->ready_from) x->ready_from = offset;
    start_ready_buckets(x);
    /* Open MPI progresses non-blocking collectives only inside MPI calls:
     * give the ones in flight a push at every layer boundary. */
    if (x->started > 0) dt_reduce_progress(x->plan);
    tail_advance(x, false);
    x->ready_seconds += MPI_Wtime() - t0;
}

/* Reproducible: the pieces of this rank, in partition order, empty ones
 * included (the contract of dt_exchange_piece_sum). */
static void for_each_exact_piece(const dt_exchange *x, dt_piece_fn piece, void *ctx)
{
    for (size_t i = x->piece_lo; i < x->piece_hi; i++) {
        size_t lo, hi;
        dt_exact_node(x->o.n_params, x->o.tree_depth, i, &lo, &hi);
        piece(ctx, lo, hi, exact_at(x, lo));
    }
}

static const double *finish_exact(dt_exchange *x, dt_piece_fn piece, void *ctx)
{
    x->t_start[0] = MPI_Wtime();
    if (!x->alone) {
        dt_exact_reduce_scatter(x->exact, DT_EXACT_FLOAT, x->arena, x->o.n_params, x->tail,
                                (int)x->o.n_tail);
        if (x->op == DT_REDUCE_ALLREDUCE)
            dt_exact_allgather(x->exact, DT_EXACT_FLOAT, x->arena, x->o.n_params);
    }
    x->t_done[0] = MPI_Wtime();
    if (piece) for_each_exact_piece(x, piece, ctx);
    return x->tail;
}

const double *dt_exchange_finish(dt_exchange *x, dt_piece_fn piece, void *ctx)
{
    if (x->exact) return finish_exact(x, piece, ctx);
    if (!x->alone) {
        x->ready_from = 0;
        if (x->tail_phase == 1) tail_advance(x, true); /* the cross-node sum before the buckets */
        start_ready_buckets(x);
        tail_advance(x, true);
    }
    float *const early = share_partial(x) ? x->early_params : NULL;
    x->early_params = NULL;
    for (int k = 0; k < x->n_buckets; k++) {
        if (!x->alone) dt_reduce_wait(x->h[k]);
        x->t_done[k] = MPI_Wtime();
        if (x->alone) x->t_start[k] = x->t_done[k];
        size_t lo, hi;
        bucket_piece(x, k, &lo, &hi);
        if (piece && hi > lo) piece(ctx, lo, hi, x->at[k]);
        /* the bucket's slot was just freed: its allgather takes it, in the
         * same start/wait order on every rank */
        if (early)
            x->h[k] = dt_reduce_start(x->plan, DT_REDUCE_ALLGATHER, early + x->lo[k],
                                      x->hi[k] - x->lo[k]);
    }
    x->params_in_flight = early != NULL;
    if (!tail_apart(x))
        for (size_t i = 0; i < x->o.n_tail; i++) x->tail[i] = (double)x->arena[x->o.n_params + i];
    return x->tail;
}

void dt_exchange_for_each_piece(const dt_exchange *x, dt_piece_fn piece, void *ctx)
{
    if (x->exact) {
        for_each_exact_piece(x, piece, ctx);
        return;
    }
    for (int k = 0; k < x->n_buckets; k++) {
        size_t lo, hi;
        bucket_piece(x, k, &lo, &hi);
        if (hi > lo) piece(ctx, lo, hi, x->at[k]);
    }
}

/* Allgather every bucket's pieces of `array` (parameter layout). */
static void allgather_buckets(dt_exchange *x, float *array)
{
    for (int k = 0; k < x->n_buckets; k++)
        x->h[k] = dt_reduce_start(x->plan, DT_REDUCE_ALLGATHER, array + x->lo[k],
                                  x->hi[k] - x->lo[k]);
    for (int k = 0; k < x->n_buckets; k++) dt_reduce_wait(x->h[k]);
}

/* Did any rank poison one of its pieces (their first values)? */
static bool any_poisoned(const dt_exchange *x, const float *params)
{
    for (int k = 0; k < x->n_buckets; k++)
        for (int r = 0; r < x->world; r++) {
            size_t lo, hi;
            dt_reduce_piece_of(x->plan, r, x->hi[k] - x->lo[k], &lo, &hi);
            if (hi > lo && isnan(params[x->lo[k] + lo])) return true;
        }
    return false;
}

/* Reproducible, sharded: the same poisoning, over the pieces. */
static bool exact_params(dt_exchange *x, float *params, bool bad)
{
    const size_t n = x->o.n_params;
    const int depth = x->o.tree_depth;
    size_t lo, hi;
    for (size_t i = x->piece_lo; bad && i < x->piece_hi; i++) {
        dt_exact_node(n, depth, i, &lo, &hi);
        if (hi > lo) params[lo] = NAN;
    }
    dt_exact_allgather(x->exact, DT_EXACT_FLOAT, params, n);
    for (size_t i = 0; i < (size_t)1 << depth; i++) {
        dt_exact_node(n, depth, i, &lo, &hi);
        if (hi > lo && isnan(params[lo])) return true;
    }
    return false;
}

void dt_exchange_spread_early(dt_exchange *x, float *params)
{
    DT_CHECK(!x->exact);
    x->early_params = params;
}

bool dt_exchange_params(dt_exchange *x, float *params, bool bad)
{
    if (!share_partial(x)) return bad;
    if (x->exact) return exact_params(x, params, bad);
    if (x->params_in_flight) {
        /* started by finish; a bad piece poisoned itself before */
        x->params_in_flight = false;
        for (int k = 0; k < x->n_buckets; k++) dt_reduce_wait(x->h[k]);
        return any_poisoned(x, params);
    }
    if (bad) {
        for (int k = 0; k < x->n_buckets; k++) {
            size_t lo, hi;
            bucket_piece(x, k, &lo, &hi);
            if (hi > lo) params[lo] = NAN;
        }
    }
    allgather_buckets(x, params);
    return any_poisoned(x, params);
}

void dt_exchange_gather(dt_exchange *x, float *array)
{
    if (!share_partial(x)) return;
    if (x->exact) dt_exact_allgather(x->exact, DT_EXACT_FLOAT, array, x->o.n_params);
    else allgather_buckets(x, array);
}

size_t dt_exchange_share(const dt_exchange *x) { return x->share; }

/* Rank r's part of segment k, as MPI counts relative to the segment's
 * start (a bucket is at most MAX_BUCKET_FLOATS; the reproducible arena
 * fits MPI counts, dt_exact_create checked); returns that start. */
static size_t segment_counts(dt_exchange *x, int k)
{
    const size_t base = x->exact ? 0 : x->lo[k];
    for (int r = 0; r < x->world; r++) {
        size_t lo, hi;
        part_of(x, r, k, &lo, &hi);
        x->counts[r] = (int)(hi - lo);
        x->displs[r] = (int)(lo - base);
    }
    return base;
}

/* Whole arrays travel in pieces an int can count. */
static void bcast_floats(float *a, size_t n)
{
    for (size_t i = 0; i < n; i += MAX_BUCKET_FLOATS)
        MPI_Bcast(a + i, (int)DT_MIN(n - i, MAX_BUCKET_FLOATS), MPI_FLOAT, 0, MPI_COMM_WORLD);
}

void dt_exchange_collect(dt_exchange *x, const float *share, float *whole)
{
    if (!share_partial(x)) {
        if (x->rank == 0 && whole != share) memcpy(whole, share, x->o.n_params * sizeof *whole);
        return;
    }
    for (int k = 0; k < segments(x); k++) {
        const size_t base = segment_counts(x, k);
        MPI_Gatherv(share + x->at[k], x->counts[x->rank], MPI_FLOAT,
                    x->rank == 0 ? whole + base : NULL, x->counts, x->displs, MPI_FLOAT, 0,
                    MPI_COMM_WORLD);
    }
}

void dt_exchange_distribute(dt_exchange *x, const float *whole, float *share)
{
    if (!share_partial(x)) {
        if (x->rank == 0 && whole != share) memcpy(share, whole, x->o.n_params * sizeof *share);
        if (!x->alone) bcast_floats(share, x->o.n_params);
        return;
    }
    for (int k = 0; k < segments(x); k++) {
        const size_t base = segment_counts(x, k);
        MPI_Scatterv(x->rank == 0 ? whole + base : NULL, x->counts, x->displs, MPI_FLOAT,
                     share + x->at[k], x->counts[x->rank], MPI_FLOAT, 0, MPI_COMM_WORLD);
    }
}

size_t dt_exchange_max_pieces(const dt_exchange *x)
{
    return x->exact ? (size_t)1 << x->o.tree_depth : (size_t)x->n_buckets;
}

double dt_exchange_piece_sum(dt_exchange *x, const double *values, double *count)
{
    DT_CHECK(x->exact);
    double v[2] = {dt_exact_tree_sum(values, x->piece_hi - x->piece_lo), *count};
    /* replicated, every rank summed every piece: nothing to combine */
    if (share_partial(x))
        dt_exact_allreduce(x->exact, DT_EXACT_PIECE_TREE, v, 2);
    *count = v[1];
    return v[0];
}

bool dt_exchange_reproducible(const dt_exchange *x) { return x->exact != NULL; }

double dt_exchange_ready_seconds(const dt_exchange *x) { return x->ready_seconds; }
int dt_exchange_buckets(const dt_exchange *x) { return x->n_buckets; }

void dt_exchange_bucket_times(const dt_exchange *x, int k, double *start, double *done)
{
    *start = x->t_start[k];
    *done = x->t_done[k];
}
bool dt_exchange_sharded(const dt_exchange *x) { return x->op == DT_REDUCE_REDUCE_SCATTER; }

void dt_exchange_describe(const dt_exchange *x, char *buf, size_t size)
{
    if (x->exact) {
        snprintf(buf, size,
                 "%s update, reproducible: a fixed tree over %ld leaves (%s), float32, 1 "
                 "bucket, not overlapped with backward",
                 dt_update_mode_name(x->o.update), 1L << x->o.tree_depth,
                 x->alone ? "1 rank"
                 : x->op == DT_REDUCE_ALLREDUCE
                     ? "recursive-halving reduce-scatter and recursive-doubling allgather"
                     : "recursive-halving reduce-scatter, parameter allgather by recursive "
                       "doubling");
        return;
    }
    const char *algo = x->alone ? "none (1 rank)"
                                : dt_reduce_algo_name(dt_reduce_resolve(
                                      x->plan, x->op, bucket_count(x, 0)));
    size_t kib = (x->hi[0] - x->lo[0]) * sizeof(float) / 1024;
    snprintf(buf, size, "%s update, %s %s in %s, %d bucket%s of up to %zu KiB%s",
             dt_update_mode_name(x->o.update), dt_reduce_op_name(x->op), algo,
             dt_reduce_dtype_name(x->o.dtype), x->n_buckets, x->n_buckets == 1 ? "" : "s", kib,
             x->o.overlap ? ", overlapped with backward" : "");
}
