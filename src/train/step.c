/* step.c - one update, as SPEC describes it, and the evaluation.
 *
 *   indices of the global batch (epoch permutation, the same on every rank)
 *   -> this rank's shard -> forward, zero grads, backward (sums)
 *   -> gradient exchange: sum over ranks of [gradients | loss | stop]
 *   -> / b, non-finite guard, weight decay, clipping -> optimizer, lr(k)
 *
 * Every rank holds the same summed gradient afterwards, so every rank
 * reaches the same verdict (finite or not, stop or not) with no further
 * collective. Nothing here allocates. */
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
    dt_shard(*b, tr->comm->rank, tr->comm->world, &begin, &end);
    dt_gather_batch(&d->train, d->perm + i * B + begin, end - begin, (float)d->mean,
                    (float)d->std, d->x, d->y);
    return end - begin;
}

void train_step(trainer *tr, long step, bool new_epoch, step_record *rec)
{
    const size_t n_params = dt_model_param_count(tr->model);
    float *w = dt_model_params(tr->model), *tail = tr->grad_arena + n_params;
    rec->step = step;
    rec->epoch = (step - 1) / tr->upe;
    rec->epoch_end = (step - 1) % tr->upe == tr->upe - 1;

    double t0 = dt_comm_time();
    const long n = gather_shard(tr, step, new_epoch, &rec->samples);
    double t1 = dt_comm_time();

    double loss_sum = 0;
    dt_model_zero_grads(tr->model);
    if (n > 0) dt_model_forward(tr->model, tr->data.x, tr->data.y, n, &loss_sum, NULL);
    double t2 = dt_comm_time();

    /* The tail is final before backward starts, so the bucket holding it
     * may leave first. A rank with an empty shard joins with zeros (SPEC
     * step 1). */
    tail[TAIL_LOSS_SUM] = (float)loss_sum;
    tail[TAIL_STOP] = train_stop_signal ? 1.0f : 0.0f;
    dt_grad_sync_begin(tr->sync, tr->grad_arena);
    dt_grad_sync_ready(tr->sync, n_params, TAIL_COUNT);
    if (n > 0) dt_model_backward(tr->model, dt_grad_sync_ready, tr->sync);
    double t3 = dt_comm_time();
    float *g = dt_grad_sync_finish(tr->sync);
    rec->loss = (double)g[n_params + TAIL_LOSS_SUM] / (double)rec->samples;
    rec->stop = g[n_params + TAIL_STOP] > 0;
    double t4 = dt_comm_time();
    const double in_backward = dt_grad_sync_ready_seconds(tr->sync);

    rec->finite = dt_optim_prepare(&tr->opt, w, g, 1.0f / (float)rec->samples);
    rec->lr = dt_sched_lr(&tr->sched, tr->opt.t);
    if (rec->finite) dt_optim_step(&tr->opt, w, g, rec->lr);
    double t5 = dt_comm_time();

    rec->seconds = t5 - t0;
    rec->comm_seconds = t4 - t3 + in_backward;
    tr->time.data += t1 - t0;
    tr->time.forward += t2 - t1;
    tr->time.backward += t3 - t2 - in_backward;
    tr->time.comm += rec->comm_seconds;
    tr->time.optimizer += t5 - t4;
}

/* Mean test loss and accuracy: each rank evaluates a contiguous slice of
 * the test set in chunks, the sums are reduced. */
void train_evaluate(trainer *tr, double *loss, double *accuracy)
{
    double t0 = dt_comm_time();
    train_data *d = &tr->data;
    long begin, end;
    dt_shard(d->test.n, tr->comm->rank, tr->comm->world, &begin, &end);
    double sums[2] = {0, 0}; /* loss, correct */
    uint32_t idx[TRAIN_EVAL_CHUNK];
    for (long i = begin; i < end; i += TRAIN_EVAL_CHUNK) {
        long n = DT_MIN(TRAIN_EVAL_CHUNK, end - i);
        for (long j = 0; j < n; j++) idx[j] = (uint32_t)(i + j);
        dt_gather_batch(&d->test, idx, n, (float)d->mean, (float)d->std, d->x, d->y);
        long correct = 0;
        dt_model_forward(tr->model, d->x, d->y, n, &sums[0], &correct);
        sums[1] += (double)correct;
    }
    dt_comm_allreduce_sum_d(sums, 2);
    *loss = sums[0] / (double)d->test.n;
    *accuracy = sums[1] / (double)d->test.n;
    tr->time.eval += dt_comm_time() - t0;
}
