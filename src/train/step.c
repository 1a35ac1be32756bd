/* step.c - one update, as SPEC describes it, and the evaluation.
 *
 *   indices of the global batch (epoch permutation, the same on every rank)
 *   -> this rank's shard -> forward, zero grads, backward (sums)
 *   -> gradient exchange: sum over ranks of [gradients | loss | stop]
 *   -> / b, non-finite guard, weight decay, clipping -> optimizer, lr(k)
 *      (on each range as its sum completes; sharded: on this rank's ranges,
 *      with the optimizer state of those alone, then the new parameters are
 *      spread)
 *   -> the averaged copy (optimizer.average), over the same ranges: sharded,
 *      each rank averages only its own pieces of a whole-sized copy,
 *      gathered when evaluated or checkpointed
 *
 * Every rank reaches the same verdict (finite or not, stop or not): from
 * the summed gradient it holds, or (sharded) from what travels with the
 * parameters. Nothing here allocates.
 *
 * Reproducible mode (comm.reproducible) changes three things, so that
 * every bit is independent of the world size: the exchange sums over a
 * fixed tree (exchange.h); the clipping norm is one double per fixed
 * piece, combined over the pieces' tree, in both update modes; and
 * evaluation runs fixed chunks of the test set whose sums are added in
 * chunk order on every rank. */
#include <math.h>
#include <string.h>

#include "trainer.h"

/* This rank's shard of the global batch of update `step` into data.x/y.
 * Returns the shard's size; *b is the global batch's. */
static long gather_shard(trainer *tr, long step, bool new_epoch, long *b)
{
    const dt_config *c = &tr->cfg;
    train_data *d = &tr->data;
    const long B = c->train.global_batch, N = d->train.n;
    const long epoch = (step - 1) / tr->upe, i = (step - 1) % tr->upe;
    if (new_epoch) dt_epoch_permutation(c->run.seed, (uint64_t)epoch, d->perm, N);
    *b = DT_MIN(B, N - i * B); /* short only if !drop_last */
    long begin, end;
    if (tr->balance) dt_balance_shard(tr->balance, *b, &begin, &end);
    else dt_shard(*b, tr->comm->rank, tr->comm->world, &begin, &end);
    dt_gather_batch(&d->train, d->perm + i * B + begin, end - begin, (float)d->mean,
                    (float)d->std, d->x, d->y);
    return end - begin;
}

/* The optimizer's part of an update, run by the exchange on each range of
 * the parameters this rank owns (as soon as that range's sum is complete,
 * while later buckets are still in flight), unless a global quantity
 * (clipping's norm, the skip policy) has to be known first: then `hold`
 * defers the steps until every range is prepared. */
typedef struct {
    dt_optimizer *opt;
    float *w, *g;
    float scale; /* 1/b */
    double lr;
    bool hold;
    bool bad;     /* a non-finite gradient in one of this rank's ranges */
    bool poison;  /* mark such a range in w itself (dt_exchange_spread_early) */
    double sumsq; /* of this rank's ranges, for clipping */
    double *piece_sumsq; /* reproducible: each range's own, in order */
    size_t n_pieces, max_pieces;
    double seconds;
} update_ctx;

static void prepare_and_step(void *ctx, size_t lo, size_t hi, size_t at)
{
    update_ctx *u = ctx;
    double t0 = dt_comm_time(), sumsq;
    bool finite = dt_optim_prepare_range(u->opt, u->w, u->g, u->scale, lo, hi, &sumsq);
    u->sumsq += sumsq;
    if (u->piece_sumsq) {
        DT_CHECK(u->n_pieces < u->max_pieces);
        u->piece_sumsq[u->n_pieces++] = sumsq;
    }
    u->bad |= !finite;
    if (!u->hold && finite) dt_optim_step_range(u->opt, u->w, u->g, u->lr, lo, hi, at);
    if (u->poison && !finite) u->w[lo] = NAN;
    u->seconds += dt_comm_time() - t0;
}

static void clip_and_step(void *ctx, size_t lo, size_t hi, size_t at)
{
    update_ctx *u = ctx;
    dt_optim_scale_range(u->g, lo, hi, dt_optim_clip_factor(u->opt, u->sumsq));
    dt_optim_step_range(u->opt, u->w, u->g, u->lr, lo, hi, at);
}

static void read_tail(const double *tail, step_record *rec)
{
    rec->loss = tail[TAIL_LOSS_SUM] / (double)rec->samples;
    rec->stop = tail[TAIL_STOP] > 0;
}

/* The steps were held until every piece was prepared; now the verdict and
 * the norm are global: clip and step each piece, spread the new parameters
 * (sharded) and advance. A skipped update changed nothing anywhere:
 * nothing to spread. */
static bool step_held(trainer *tr, update_ctx *u, bool finite)
{
    if (!finite) return false;
    double t0 = dt_comm_time();
    dt_exchange_for_each_piece(tr->exchange, clip_and_step, u);
    u->seconds += dt_comm_time() - t0;
    dt_exchange_params(tr->exchange, u->w, false);
    dt_optim_advance(&tr->opt);
    return true;
}

/* Not held: each piece stepped as its sum completed; spread the new
 * parameters (sharded: with the non-finite verdict) and advance. */
static bool spread_and_advance(trainer *tr, update_ctx *u)
{
    bool finite = !dt_exchange_params(tr->exchange, u->w, u->bad);
    if (finite) dt_optim_advance(&tr->opt);
    return finite;
}

/* Reproducible: both update modes run on the exchange's pieces; a held
 * update (clipping, skip) first sums the pieces' squared norms over their
 * fixed tree, with the count of non-finite pieces. */
static bool exchange_and_update_exact(trainer *tr, step_record *rec, update_ctx *u)
{
    dt_exchange *x = tr->exchange;
    u->piece_sumsq = tr->repro.piece_sumsq;
    u->max_pieces = dt_exchange_max_pieces(x);
    read_tail(dt_exchange_finish(x, prepare_and_step, u), rec);
    if (!u->hold) return spread_and_advance(tr, u);
    double bad = u->bad ? 1 : 0;
    u->sumsq = dt_exchange_piece_sum(x, u->piece_sumsq, &bad);
    return step_held(tr, u, bad == 0);
}

/* Complete the exchange and apply the update; returns whether the gradient
 * was finite on every rank (the same verdict everywhere). */
static bool exchange_and_update(trainer *tr, step_record *rec, update_ctx *u)
{
    dt_exchange *x = tr->exchange;
    if (tr->repro.on) return exchange_and_update_exact(tr, rec, u);
    const bool sharded = dt_exchange_sharded(x);
    if (sharded && !u->hold) {
        /* each bucket's new parameters leave while later buckets are summed */
        u->poison = true;
        dt_exchange_spread_early(x, u->w);
    }
    if (!u->hold || sharded) {
        read_tail(dt_exchange_finish(x, prepare_and_step, u), rec);
    } else {
        /* replicated, held: the whole arena at once, as SPEC writes it */
        read_tail(dt_exchange_finish(x, NULL, NULL), rec);
        double t0 = dt_comm_time();
        bool finite = dt_optim_prepare(&tr->opt, u->w, u->g, u->scale);
        if (finite) dt_optim_step(&tr->opt, u->w, u->g, u->lr);
        u->seconds += dt_comm_time() - t0;
        return finite;
    }
    if (!(sharded && u->hold)) return spread_and_advance(tr, u);
    /* one small sum over ranks: the non-finite count and the norm */
    double global[2] = {u->bad ? 1.0 : 0.0, u->sumsq};
    dt_comm_allreduce_sum_d(global, 2);
    u->sumsq = global[1];
    return step_held(tr, u, global[0] == 0);
}

/* Fold the new parameters into the averaged copy, over this rank's pieces. */
typedef struct {
    const dt_average_hparams *hp;
    float *avg;
    const float *w;
    long n_before;
} average_ctx;

static void average_piece(void *ctx, size_t lo, size_t hi, size_t at)
{
    (void)at; /* the averaged copy is whole-sized: it is evaluated */
    const average_ctx *a = ctx;
    dt_average_update_range(a->hp, a->avg, a->w, a->n_before, lo, hi);
}

static void update_average(trainer *tr)
{
    average_ctx a = {&tr->average, tr->avg, dt_model_params(tr->model),
                     dt_average_count(&tr->average, tr->opt.t) - 1};
    dt_exchange_for_each_piece(tr->exchange, average_piece, &a);
}

/* Backward's progress, seen through the exchange's callback: with a
 * timeline, the work before each reported range becomes a span (index =
 * the range, from the end of the arena: a dense layer's bias, then its
 * weights in blocks of rows; nn.h). */
typedef struct {
    dt_exchange *exchange;
    dt_trace *trace;
    long step;
    double t_last;
    long block;
} backward_watch;

static void traced_ready(void *ctx, size_t offset, size_t count)
{
    backward_watch *b = ctx;
    double now = dt_comm_time();
    dt_trace_span(b->trace, "backward", "compute", b->t_last, now, b->step, b->block++);
    dt_exchange_ready(b->exchange, offset, count);
    b->t_last = dt_comm_time();
}

static void trace_step(trainer *tr, long step, const double t[5], double opt_seconds)
{
    dt_trace *tc = tr->trace;
    dt_trace_span(tc, "update", "step", t[0], t[4], step, -1);
    dt_trace_span(tc, "data", "compute", t[0], t[1], step, -1);
    dt_trace_span(tc, "forward", "compute", t[1], t[2], step, -1);
    dt_trace_span(tc, "exchange and update", "comm", t[3], t[4], step, -1);
    dt_trace_span(tc, "optimizer (sum)", "optimizer", t[4] - opt_seconds, t[4], step, -1);
    for (int k = 0; k < dt_exchange_buckets(tr->exchange); k++) {
        double b0, b1;
        dt_exchange_bucket_times(tr->exchange, k, &b0, &b1);
        dt_trace_span(tc, "bucket", "buckets", b0, b1, step, k);
    }
}

void train_step(trainer *tr, long step, bool new_epoch, step_record *rec)
{
    double *tail = dt_exchange_tail(tr->exchange);
    rec->step = step;
    rec->epoch = (step - 1) / tr->upe;
    rec->epoch_end = (step - 1) % tr->upe == tr->upe - 1;

    dt_comm_sim_update();
    double t0 = dt_comm_time();
    const long n = gather_shard(tr, step, new_epoch, &rec->samples);
    double t1 = dt_comm_time();

    double loss_sum = 0;
    dt_model_zero_grads(tr->model);
    if (n > 0) dt_model_forward(tr->model, tr->data.x, tr->data.y, n, &loss_sum, NULL);
    double t2 = dt_comm_time();

    /* The tail is final before backward starts, so it may leave first. A
     * rank with an empty shard joins with zeros (SPEC step 1). */
    tail[TAIL_LOSS_SUM] = loss_sum;
    tail[TAIL_STOP] = train_stop_signal ? 1.0 : 0.0;
    dt_exchange_begin(tr->exchange, tr->grad_arena);
    const bool traced = dt_trace_wants(tr->trace, step);
    backward_watch watch = {tr->exchange, tr->trace, step, t2, 0};
    if (n > 0 && traced) dt_model_backward(tr->model, traced_ready, &watch);
    else if (n > 0) dt_model_backward(tr->model, dt_exchange_ready, tr->exchange);
    double t3 = dt_comm_time();

    const dt_optim_hparams *hp = &tr->opt.hp;
    rec->lr = dt_sched_lr(&tr->sched, tr->opt.t);
    update_ctx u = {
        .opt = &tr->opt,
        .w = dt_model_params(tr->model),
        .g = tr->grad_arena,
        .scale = 1.0f / (float)rec->samples,
        .lr = rec->lr,
        .hold = hp->clip_grad_norm > 0 || tr->cfg.optimizer.nonfinite == DT_NONFINITE_SKIP,
    };
    rec->finite = exchange_and_update(tr, rec, &u);
    if (rec->finite && dt_average_due(&tr->average, tr->opt.t)) {
        double ta = dt_comm_time();
        update_average(tr);
        u.seconds += dt_comm_time() - ta;
    }
    const double in_backward = dt_exchange_ready_seconds(tr->exchange);
    /* this rank's compute for the balancer (collective at a window's end,
     * which every rank reaches at the same update) */
    if (tr->balance && rec->samples == tr->cfg.train.global_batch)
        dt_balance_note(tr->balance, t3 - t0 - in_backward, n);
    double t4 = dt_comm_time();

    rec->seconds = t4 - t0;
    rec->comm_seconds = t4 - t3 - u.seconds + in_backward;
    tr->time.data += t1 - t0;
    tr->time.forward += t2 - t1;
    tr->time.backward += t3 - t2 - in_backward;
    tr->time.comm += rec->comm_seconds;
    tr->time.optimizer += u.seconds;
    if (traced) trace_step(tr, step, (const double[5]){t0, t1, t2, t3, t4}, u.seconds);
}

/* The test samples [first, first + n) into data.x/y. */
static void gather_test(train_data *d, long first, long n)
{
    uint32_t idx[TRAIN_EVAL_CHUNK];
    for (long j = 0; j < n; j++) idx[j] = (uint32_t)(first + j);
    dt_gather_batch(&d->test, idx, n, (float)d->mean, (float)d->std, d->x, d->y);
}

/* Reproducible: chunk c is test samples [c * TRAIN_EVAL_CHUNK, ...) on any
 * P; each rank evaluates the chunks of its piece of the chunk list (the
 * fixed partition of reduce_exact.h), every chunk's sums go to every rank,
 * and every rank adds them in chunk order. */
static void evaluate_exact(trainer *tr, double *loss, double *accuracy)
{
    train_data *d = &tr->data;
    const long chunks = tr->repro.eval_chunks;
    double *closs = tr->repro.chunk_loss, *ccorrect = tr->repro.chunk_correct;
    size_t lo, hi;
    dt_exact_piece_of(tr->repro.eval_tree, tr->comm->rank, (size_t)chunks, &lo, &hi);
    for (size_t c = lo; c < hi; c++) {
        const long first = (long)c * TRAIN_EVAL_CHUNK;
        const long n = DT_MIN(TRAIN_EVAL_CHUNK, d->test.n - first);
        gather_test(d, first, n);
        double l = 0;
        long correct = 0;
        dt_model_forward(tr->model, d->x, d->y, n, &l, &correct);
        closs[c] = l;
        ccorrect[c] = (double)correct;
    }
    dt_exact_allgather(tr->repro.eval_tree, DT_EXACT_DOUBLE, closs, (size_t)chunks);
    dt_exact_allgather(tr->repro.eval_tree, DT_EXACT_DOUBLE, ccorrect, (size_t)chunks);
    double sums[2] = {0, 0};
    for (long c = 0; c < chunks; c++) {
        sums[0] += closs[c];
        sums[1] += ccorrect[c];
    }
    *loss = sums[0] / (double)d->test.n;
    *accuracy = sums[1] / (double)d->test.n;
}

/* Mean test loss and accuracy: each rank evaluates a contiguous slice of
 * the test set in chunks, the sums are reduced. */
void train_evaluate(trainer *tr, double *loss, double *accuracy)
{
    double t0 = dt_comm_time();
    train_data *d = &tr->data;
    if (tr->repro.on) {
        evaluate_exact(tr, loss, accuracy);
        tr->time.eval += dt_comm_time() - t0;
        return;
    }
    long begin, end;
    dt_shard(d->test.n, tr->comm->rank, tr->comm->world, &begin, &end);
    double sums[2] = {0, 0}; /* loss, correct */
    for (long i = begin; i < end; i += TRAIN_EVAL_CHUNK) {
        long n = DT_MIN(TRAIN_EVAL_CHUNK, end - i);
        gather_test(d, i, n);
        long correct = 0;
        dt_model_forward(tr->model, d->x, d->y, n, &sums[0], &correct);
        sums[1] += (double)correct;
    }
    dt_comm_allreduce_sum_d(sums, 2);
    *loss = sums[0] / (double)d->test.n;
    *accuracy = sums[1] / (double)d->test.n;
    tr->time.eval += dt_comm_time() - t0;
}

const float *train_averaged_params(const trainer *tr)
{
    if (!tr->avg || dt_average_count(&tr->average, tr->opt.t) == 0) return NULL;
    return tr->avg;
}

/* The model evaluates whatever its parameter arena holds: the average goes
 * in, the raw parameters wait in avg_swap and come back bit for bit. */
void train_evaluate_average(trainer *tr, double *loss, double *accuracy)
{
    *loss = *accuracy = NAN;
    if (!tr->avg || dt_average_count(&tr->average, tr->opt.t) == 0) return;
    double t0 = dt_comm_time();
    dt_exchange_gather(tr->exchange, tr->avg);
    const size_t bytes = dt_model_param_count(tr->model) * sizeof(float);
    float *w = dt_model_params(tr->model);
    memcpy(tr->avg_swap, w, bytes);
    memcpy(w, tr->avg, bytes);
    tr->time.eval += dt_comm_time() - t0;
    train_evaluate(tr, loss, accuracy);
    memcpy(w, tr->avg_swap, bytes);
}
