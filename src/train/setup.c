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

#include "trainer.h"

/* dir/name, or dir/name.gz when only that exists. */
#define DATA_PATH_MAX (2 * DT_PATH_MAX + 8)
static void data_path(const char *dir, const char *name, char *out, size_t size)
{
    snprintf(out, size, "%s/%s", dir, name);
    if (access(out, F_OK) == 0) return;
    char gz[DATA_PATH_MAX + 8];
    snprintf(gz, sizeof gz, "%s.gz", out);
    size_t len = strlen(gz);
    if (len < size && access(gz, F_OK) == 0) memcpy(out, gz, len + 1);
}

static dt_status load_pair(const char *dir, const char *images, const char *labels, long limit,
                           int n_classes, dt_dataset *ds, char *img_path, dt_error *err)
{
    char lbl[DATA_PATH_MAX];
    data_path(dir, images, img_path, DATA_PATH_MAX);
    data_path(dir, labels, lbl, sizeof lbl);
    return dt_idx_load(img_path, lbl, limit, n_classes, ds, err);
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
    char img[DATA_PATH_MAX];
    dt_status status = load_pair(c->data.dir, c->data.train_images, c->data.train_labels,
                                 c->data.train_limit, n_classes, &d->train, img, err);
    if (status) return status;
    status = load_pair(c->data.dir, c->data.test_images, c->data.test_labels,
                       c->data.test_limit, n_classes, &d->test, img, err);
    if (status) return status;

    const int *in = c->model.input;
    if (d->train.sample_size != (long)in[0] * in[1] * in[2] ||
        d->test.sample_size != d->train.sample_size)
        return dt_fail(err, DT_EDATA, "%s: samples are %dx%dx%d but model.input is [%d, %d, %d]",
                       img, d->test.c, d->test.h, d->test.w, in[0], in[1], in[2]);
    if (d->test.n == 0) return dt_fail(err, DT_EDATA, "%s: the test set is empty", img);
    d->mean = 0;
    d->std = 1;
    if (c->data.normalize) {
        dt_dataset_stats(&d->train, &d->mean, &d->std);
        if (!(d->std > 0)) d->std = 1; /* a constant image set: only centre it */
    }
    return DT_OK;
}

/* The schedule of SPEC in updates: durations given in epochs converted. */
static dt_status resolve_schedule(trainer *tr, dt_error *err)
{
    const dt_config *c = &tr->cfg;
    dt_sched *s = &tr->sched;
    memset(s, 0, sizeof *s);
    s->name = c->scheduler.name;
    s->base_lr = c->optimizer.lr;
    s->warmup_steps = c->scheduler.warmup.set ? dt_duration_steps(c->scheduler.warmup, tr->upe) : 0;
    s->warmup_begin_lr = c->scheduler.warmup_begin_lr;
    s->factor = c->scheduler.factor;
    s->step_size = c->scheduler.step_size.set ? dt_duration_steps(c->scheduler.step_size, tr->upe) : 1;
    s->min_lr = c->scheduler.min_lr;
    s->n_milestones = c->scheduler.n_milestones;
    for (int i = 0; i < s->n_milestones; i++) {
        dt_duration m = {c->scheduler.milestones[i], c->scheduler.milestones_in_epochs, true};
        s->milestones[i] = dt_duration_steps(m, tr->upe); /* saturates, never overflows */
    }
    /* max unset = the run length; a run that ends inside its warmup never
     * reaches the decay, so only an explicit max_steps <= warmup is wrong. */
    s->max_steps = c->scheduler.max.set ? dt_duration_steps(c->scheduler.max, tr->upe)
                                        : DT_MAX(tr->total_steps, s->warmup_steps + 1);
    s->final_lr = c->scheduler.final_lr;
    s->power = c->scheduler.power;
    if ((s->name == DT_SCHED_COSINE || s->name == DT_SCHED_POLY) &&
        s->max_steps <= s->warmup_steps)
        return dt_fail(err, DT_ECONFIG,
                       "%s: scheduler: max_steps (%ld updates) must exceed warmup_steps (%ld "
                       "updates)",
                       c->source, s->max_steps, s->warmup_steps);
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
    return resolve_schedule(tr, err);
}

static void optim_hparams(const dt_config *c, dt_optim_hparams *hp)
{
    memset(hp, 0, sizeof *hp);
    hp->name = c->optimizer.name;
    hp->momentum = c->optimizer.momentum;
    hp->nesterov = c->optimizer.nesterov;
    hp->beta1 = c->optimizer.beta1;
    hp->beta2 = c->optimizer.beta2;
    hp->alpha = c->optimizer.alpha;
    hp->rho = c->optimizer.rho;
    hp->eps = c->optimizer.eps;
    hp->weight_decay = c->optimizer.weight_decay;
    hp->clip_grad_norm = c->optimizer.clip_grad_norm;
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
    size_t bucket_floats = (size_t)c->comm.bucket_kb * 1024 / sizeof(float);
    return dt_grad_sync_create(n_params + TAIL_COUNT, bucket_floats, c->comm.overlap, &tr->sync,
                               err);
}

dt_status train_build(trainer *tr, dt_error *err)
{
    const dt_config *c = &tr->cfg;
    const dt_comm *cm = tr->comm;
    long begin, end;
    dt_shard(c->train.global_batch, cm->rank, cm->world, &begin, &end);
    const long shard_max = end - begin + 1; /* a short last batch is never larger */
    const long max_batch = DT_MAX(shard_max, TRAIN_EVAL_CHUNK);
    dt_status st = build_model(tr, max_batch, err);
    if (st) return st;
    dt_optim_hparams hp;
    optim_hparams(c, &hp);
    st = dt_optim_init(&tr->opt, &hp, dt_model_param_count(tr->model), err);
    if (st) return st;
    train_data *d = &tr->data;
    d->perm = dt_malloc((size_t)d->train.n * sizeof *d->perm);
    d->x = dt_alloc_aligned((size_t)max_batch * (size_t)dt_model_input_size(tr->model) *
                            sizeof *d->x);
    d->y = dt_malloc((size_t)max_batch * sizeof *d->y);
    if (!d->perm || !d->x || !d->y) return dt_fail(err, DT_EINTERNAL, "out of memory");
    dt_model_init_params(tr->model, c->model.init, c->run.seed);
    return train_checkpoint_identity(tr, &tr->ckpt_id, err);
}

void train_free(trainer *tr)
{
    dt_metrics_close(tr->metrics);
    dt_free(tr->data.perm);
    dt_free(tr->data.x);
    dt_free(tr->data.y);
    dt_optim_free(&tr->opt);
    dt_grad_sync_free(tr->sync);
    dt_model_free(tr->model);
    dt_free(tr->grad_arena);
    dt_dataset_free(&tr->data.train);
    dt_dataset_free(&tr->data.test);
}
