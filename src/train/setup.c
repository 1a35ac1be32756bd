/* setup.c - from a validated configuration to everything a run needs:
 * the data sets, the run length and schedule in updates, the model with
 * its gradient arena, the optimizer, the gradient exchange and the
 * batch buffers. Nothing here is written to disk and nothing is
 * collective: run.c has every rank agree on the outcome of each stage. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtrain/fs.h"
#include "dtrain/runtime.h"
#include "trainer.h"

/* dir/name, or dir/name.gz when only that exists. A path that does not
 * fit is an error, never a silently shortened name. */
static dt_status data_path(const char *dir, const char *name, dt_path *out, dt_error *err)
{
    dt_status st = dt_path_join(out, dir, name, err);
    if (st || access(out->s, F_OK) == 0) return st;
    dt_path gz;
    char gz_name[DT_PATH_MAX];
    int len = snprintf(gz_name, sizeof gz_name, "%s.gz", name);
    if (len > 0 && (size_t)len < sizeof gz_name && dt_path_join(&gz, dir, gz_name, NULL) == DT_OK &&
        access(gz.s, F_OK) == 0)
        *out = gz;
    return DT_OK;
}

static dt_status load_pair(const char *dir, const char *images, const char *labels, long limit,
                           int n_classes, dt_dataset *ds, dt_path *img, dt_error *err)
{
    dt_path lbl;
    dt_error why = {0};
    if (data_path(dir, images, img, &why) || data_path(dir, labels, &lbl, &why))
        return dt_fail(err, DT_EDATA, "data: %s", why.msg); /* a data file, not a dtrain fault */
    return dt_idx_load(img->s, lbl.s, limit, n_classes, ds, err);
}

dt_status train_load_data(trainer *tr, int n_classes, dt_error *err)
{
    const dt_config *c = &tr->cfg;
    train_data *d = &tr->data;
    struct stat st;
    if (stat(c->data.dir, &st) != 0)
        return dt_fail(err, DT_EDATA, "data.dir %s: %s", c->data.dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return dt_fail(err, DT_EDATA, "data.dir %s: not a directory", c->data.dir);
    dt_path img;
    dt_status status = load_pair(c->data.dir, c->data.train_images, c->data.train_labels,
                                 c->data.train_limit, n_classes, &d->train, &img, err);
    if (status) return status;
    status = load_pair(c->data.dir, c->data.test_images, c->data.test_labels,
                       c->data.test_limit, n_classes, &d->test, &img, err);
    if (status) return status;

    const int *in = c->model.input;
    if (d->train.sample_size != (long)in[0] * in[1] * in[2] ||
        d->test.sample_size != d->train.sample_size)
        return dt_fail(err, DT_EDATA, "%s: samples are %dx%dx%d but model.input is [%d, %d, %d]",
                       img.s, d->test.c, d->test.h, d->test.w, in[0], in[1], in[2]);
    if (d->test.n == 0) return dt_fail(err, DT_EDATA, "%s: the test set is empty", img.s);
    d->mean = 0;
    d->std = 1;
    if (c->data.normalize) {
        dt_dataset_stats(&d->train, &d->mean, &d->std);
        if (!(d->std > 0)) d->std = 1; /* a constant image set: only centre it */
    }
    return DT_OK;
}

/* one_cycle's phases end where torch puts them, at pct_start * L - 1 (and
 * 2 * pct_start * L - 2 with three phases) and L - 1 for L = max_steps -
 * warmup_steps; a phase that does not end after the previous one would
 * divide by zero (torch fails there too). Same expressions as sched.c. */
static dt_status check_one_cycle(const dt_config *c, const dt_sched *s, dt_error *err)
{
    const double len = (double)(s->max_steps - s->warmup_steps);
    const double end1 = s->pct_start * len - 1, end2 = 2 * s->pct_start * len - 2;
    bool ok = end1 > 0 && (!s->three_phase || (end2 > end1 && len - 1 > end2));
    if (ok) return DT_OK;
    return dt_fail(err, DT_ECONFIG,
                   "%s: scheduler.pct_start: %g of %ld updates (max_steps - warmup_steps) leaves "
                   "a one_cycle phase without updates; it needs pct_start * %ld > 1%s",
                   c->source, s->pct_start, s->max_steps - s->warmup_steps,
                   s->max_steps - s->warmup_steps,
                   s->three_phase ? " and 2 * pct_start * updates < updates + 1" : "");
}

/* The schedule of SPEC in updates: durations given in epochs converted. */
static dt_status resolve_schedule(trainer *tr, dt_error *err)
{
    const dt_config *c = &tr->cfg;
    /* the config holds the schedule but its durations: convert them */
    dt_sched *s = &tr->sched;
    *s = c->scheduler.sched;
    s->base_lr = c->optimizer.lr;
    s->warmup_steps = c->scheduler.warmup.set ? dt_duration_steps(c->scheduler.warmup, tr->upe) : 0;
    s->step_size = c->scheduler.step_size.set ? dt_duration_steps(c->scheduler.step_size, tr->upe) : 1;
    for (int i = 0; i < s->n_milestones; i++) {
        dt_duration m = {s->milestones[i], c->scheduler.milestones_in_epochs, true};
        s->milestones[i] = dt_duration_steps(m, tr->upe); /* saturates, never overflows */
    }
    /* max unset = the run length; a run that ends inside its warmup never
     * reaches the decay, so only an explicit max_steps <= warmup is wrong. */
    s->max_steps = c->scheduler.max.set ? dt_duration_steps(c->scheduler.max, tr->upe)
                                        : DT_MAX(tr->total_steps, s->warmup_steps + 1);
    s->period = c->scheduler.period.set ? dt_duration_steps(c->scheduler.period, tr->upe) : 1;
    s->step_size_up = c->scheduler.step_size_up.set
                          ? dt_duration_steps(c->scheduler.step_size_up, tr->upe)
                          : 1;
    s->step_size_down = c->scheduler.step_size_down.set
                            ? dt_duration_steps(c->scheduler.step_size_down, tr->upe)
                            : s->step_size_up;
    if ((s->name == DT_SCHED_COSINE || s->name == DT_SCHED_POLY ||
         s->name == DT_SCHED_ONE_CYCLE) &&
        s->max_steps <= s->warmup_steps)
        return dt_fail(err, DT_ECONFIG,
                       "%s: scheduler: max_steps (%ld updates) must exceed warmup_steps (%ld "
                       "updates)",
                       c->source, s->max_steps, s->warmup_steps);
    if (s->name == DT_SCHED_ONE_CYCLE) return check_one_cycle(c, s, err);
    return DT_OK;
}

dt_status train_resolve_lengths(trainer *tr, dt_error *err)
{
    const dt_config *c = &tr->cfg;
    tr->upe = dt_updates_per_epoch(tr->data.train.n, c->train.global_batch, c->data.drop_last);
    if (tr->upe == 0)
        return dt_fail(err, DT_ECONFIG,
                       "%s: train.global_batch: %ld is larger than the training set (%ld "
                       "samples) with data.drop_last: true",
                       c->source, c->train.global_batch, tr->data.train.n);
    tr->total_steps = dt_duration_steps(c->train.length, tr->upe);
    tr->average = c->optimizer.average;
    tr->average.start = dt_duration_steps(c->optimizer.average_start, tr->upe);
    return resolve_schedule(tr, err);
}

/* The model with the trainer's gradient arena, and the gradient exchange
 * over [gradients | tail]. */
static dt_status build_model(trainer *tr, long max_batch, dt_error *err)
{
    const dt_config *c = &tr->cfg;
    dt_status st = dt_model_create(c->model.layers, c->model.n_layers, c->model.input, max_batch,
                                   c->source, &tr->model, err);
    if (st) return st;
    const size_t n_params = dt_model_param_count(tr->model);
    tr->grad_arena = dt_alloc_aligned((n_params + TAIL_COUNT) * sizeof(float));
    if (!tr->grad_arena) return dt_fail(err, DT_EINTERNAL, "out of memory");
    dt_model_bind_grads(tr->model, tr->grad_arena);
    if (tr->repro.on) {
        st = dt_model_set_leaf(tr->model, tr->repro.leaf_samples, err);
        if (st) return st;
    }
    dt_exchange_options xo = {
        .n_params = n_params,
        .n_tail = TAIL_COUNT,
        .bucket_floats = (size_t)c->comm.bucket_kb * 1024 / sizeof(float),
        .overlap = c->comm.overlap,
        .update = c->comm.update,
        .algo = c->comm.allreduce,
        .dtype = c->comm.dtype,
        .reproducible = tr->repro.on,
        .tree_depth = tr->repro.depth,
    };
    return dt_exchange_create(&xo, &tr->exchange, err);
}

/* "1, 2, 4, 8" or "1, 2, 4, ..., 128": the world sizes that split
 * `leaves` leaves into whole subtrees. */
static void allowed_world_sizes(long leaves, char *buf, size_t size)
{
    int len = 0;
    for (long p = 1; p <= leaves && len >= 0 && (size_t)len < size; p *= 2) {
        const bool elide = leaves > 8 && p == 8;
        if (elide) p = leaves;
        len += snprintf(buf + len, size - (size_t)len, "%s%s%ld", p == 1 ? "" : ", ",
                        elide ? "..., " : "", p);
    }
}

/* comm.reproducible: the leaves follow from the global batch alone; the
 * world size must split them into whole subtrees (a power of two dividing
 * their number), and every batch must be whole. */
static dt_status plan_leaves(trainer *tr, dt_error *err)
{
    const dt_config *c = &tr->cfg;
    tr->repro.on = c->comm.reproducible;
    if (!tr->repro.on) return DT_OK;
    const long B = c->train.global_batch, N = tr->data.train.n;
    const int P = tr->comm->world;
    tr->repro.leaves = B & -B;
    tr->repro.leaf_samples = B / tr->repro.leaves;
    while ((1L << tr->repro.depth) < tr->repro.leaves) tr->repro.depth++;
    if (P > tr->repro.leaves || tr->repro.leaves % P != 0) {
        char allowed[160];
        allowed_world_sizes(tr->repro.leaves, allowed, sizeof allowed);
        return dt_fail(err, DT_ECONFIG,
                       "%s: comm.reproducible: %d rank%s cannot split %ld lea%s of %ld sample%s "
                       "into whole subtrees; use %s rank%s",
                       c->source, P, P == 1 ? "" : "s", tr->repro.leaves,
                       tr->repro.leaves == 1 ? "f" : "ves", tr->repro.leaf_samples,
                       tr->repro.leaf_samples == 1 ? "" : "s", allowed,
                       tr->repro.leaves == 1 ? "" : "s");
    }
    if (!c->data.drop_last && N % B != 0)
        return dt_fail(err, DT_ECONFIG,
                       "%s: comm.reproducible: with data.drop_last: false every epoch ends with "
                       "a short batch of %ld samples (%ld training samples, train.global_batch "
                       "%ld), and the leaves are cut from whole batches; set data.drop_last: "
                       "true",
                       c->source, N % B, N, B);
    return DT_OK;
}

/* Reproducible: the buffers of the clipping norm's pieces and of the
 * evaluation's fixed chunks (collective: the chunks' exchange). */
static dt_status build_reproducible(trainer *tr, dt_error *err)
{
    if (!tr->repro.on) return DT_OK;
    const long chunks = (tr->data.test.n + TRAIN_EVAL_CHUNK - 1) / TRAIN_EVAL_CHUNK;
    tr->repro.eval_chunks = chunks;
    tr->repro.piece_sumsq =
        dt_calloc(dt_exchange_max_pieces(tr->exchange), sizeof *tr->repro.piece_sumsq);
    tr->repro.chunk_loss = dt_calloc((size_t)chunks, sizeof(double));
    tr->repro.chunk_correct = dt_calloc((size_t)chunks, sizeof(double));
    if (!tr->repro.piece_sumsq || !tr->repro.chunk_loss || !tr->repro.chunk_correct)
        return dt_fail(err, DT_EINTERNAL, "out of memory");
    return dt_exact_create((size_t)chunks * sizeof(double), &tr->repro.eval_tree, err);
}

dt_status train_build(trainer *tr, dt_error *err)
{
    const dt_config *c = &tr->cfg;
    const dt_comm *cm = tr->comm;
    dt_status st = plan_leaves(tr, err);
    if (st) return st;
    long begin, end;
    dt_shard(c->train.global_batch, cm->rank, cm->world, &begin, &end);
    long shard_max = end - begin + 1; /* a short last batch is never larger */
    if (c->comm.balance && cm->world > 1) {
        st = dt_balance_create(cm->world, cm->rank, c->train.global_batch, &tr->balance, err);
        if (st) return st;
        shard_max = DT_MAX(shard_max, dt_balance_max_shard(c->train.global_batch, cm->world));
    }
    const long max_batch = DT_MAX(shard_max, TRAIN_EVAL_CHUNK);
    st = build_model(tr, max_batch, err);
    if (st) return st;
    if ((st = build_reproducible(tr, err))) return st;
    /* the optimizer's state for this rank's share only (sharded: 1/P) */
    st = dt_optim_init(&tr->opt, &c->optimizer.hp, dt_exchange_share(tr->exchange), err);
    if (st) return st;
    if (tr->average.kind != DT_AVERAGE_NONE) {
        /* the averaged copy, and room for the raw weights while the model
         * evaluates the average */
        const size_t bytes = dt_model_param_count(tr->model) * sizeof(float);
        tr->avg = dt_alloc_aligned(bytes);
        tr->avg_swap = dt_alloc_aligned(bytes);
        if (!tr->avg || !tr->avg_swap) return dt_fail(err, DT_EINTERNAL, "out of memory");
    }
    train_data *d = &tr->data;
    d->perm = dt_malloc((size_t)d->train.n * sizeof *d->perm);
    d->x = dt_alloc_aligned((size_t)max_batch * (size_t)dt_model_input_size(tr->model) *
                            sizeof *d->x);
    d->y = dt_malloc((size_t)max_batch * sizeof *d->y);
    if (!d->perm || !d->x || !d->y) return dt_fail(err, DT_EINTERNAL, "out of memory");
    dt_model_init_params(tr->model, c->model.init, c->run.seed);
    return train_checkpoint_identity(tr, &tr->ckpt_id, err);
}

dt_status train_build_weights_only(trainer *tr, dt_error *err)
{
    const dt_config *c = &tr->cfg;
    dt_status st = dt_model_create(c->model.layers, c->model.n_layers, c->model.input, 1,
                                   c->source, &tr->model, err);
    if (st) return st;
    st = dt_optim_init(&tr->opt, &c->optimizer.hp, dt_model_param_count(tr->model), err);
    if (st) return st;
    /* a checkpoint of a run with averaging carries the averaged copy: room
     * for it, so that the file matches and --export can write it */
    tr->average = c->optimizer.average;
    if (tr->average.kind != DT_AVERAGE_NONE) {
        tr->avg = dt_alloc_aligned(dt_model_param_count(tr->model) * sizeof(float));
        if (!tr->avg) return dt_fail(err, DT_EINTERNAL, "out of memory");
    }
    return train_checkpoint_identity(tr, &tr->ckpt_id, err);
}

/* Reproducible: the model's own start-up check, once the BLAS threads are
 * set (a sample's result must not depend on them either). */
dt_status train_check_reproducible(trainer *tr, dt_error *err)
{
    if (!tr->repro.on || dt_model_rows_invariant(tr->model)) return DT_OK;
    return dt_fail(err, DT_EINTERNAL,
                   "comm.reproducible: the start-up self-check failed: with this build and "
                   "OpenBLAS kernel (%s) a sample's result depends on the rest of its batch or "
                   "on the BLAS threads (%d), so the run would not be reproducible; run without "
                   "comm.reproducible",
                   dt_runtime_blas_core(), tr->threads);
}

void train_free(trainer *tr)
{
    dt_metrics_close(tr->metrics);
    dt_free(tr->data.perm);
    dt_free(tr->data.x);
    dt_free(tr->data.y);
    dt_optim_free(&tr->opt);
    dt_free(tr->avg);
    dt_free(tr->avg_swap);
    dt_exchange_free(tr->exchange);
    dt_balance_free(tr->balance);
    dt_exact_free(tr->repro.eval_tree);
    dt_free(tr->repro.piece_sumsq);
    dt_free(tr->repro.chunk_loss);
    dt_free(tr->repro.chunk_correct);
    dt_model_free(tr->model);
    dt_free(tr->grad_arena);
    dt_dataset_free(&tr->data.train);
    dt_dataset_free(&tr->data.test);
}
