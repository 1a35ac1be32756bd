/* train.c - the training loop.
 *
 * It reads like the algorithm (DESIGN.md, "Data flow of one update"):
 *
 *   for each update t:
 *     indices of the global batch (epoch permutation, same on every rank)
 *     -> this rank's shard -> forward, zero grads, backward (sums)
 *     -> allreduce-sum of the gradient arena, / b
 *     -> non-finite guard, weight decay, clipping -> optimizer step, lr(k)
 *     -> replica check, metrics (rank 0)
 *
 * Set-up validates everything (config, data, model shapes, output folder)
 * and has every rank agree on one verdict before anything is written, so a
 * bad input leaves no half-written result and no rank waiting in a
 * collective. All buffers are allocated before the loop; the loop allocates
 * nothing, and the run reports that it did not (train_loop_allocations). */
#include "dtrain/train.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtrain/checkpoint.h"
#include "dtrain/config.h"
#include "dtrain/data.h"
#include "dtrain/fs.h"
#include "dtrain/metrics.h"
#include "dtrain/nn.h"
#include "dtrain/optim.h"
#include "dtrain/runtime.h"
#include "dtrain/sched.h"

/* Seconds spent per phase on this rank. */
typedef struct {
    double data, forward, backward, comm, optimizer, eval;
} phase_times;

typedef struct {
    const dt_comm *comm;
    dt_config cfg;
    dt_dataset train, test;
    double mean, std; /* normalisation of the training set */
    dt_model *model;
    dt_optimizer opt;
    dt_grad_sync *sync; /* the gradient allreduce (bucketed, maybe overlapped) */
    dt_sched sched;
    long upe;          /* updates per epoch */
    long total_steps;
    long shard_max;    /* largest shard of any batch on this rank */
    uint32_t *perm;    /* epoch permutation (train.n) */
    float *x;          /* batch inputs, max_batch * input size */
    int *y;
    int threads;
    dt_metrics *metrics; /* rank 0 only */
    dt_ckpt_header ckpt_id; /* what identifies this run's checkpoints */
    uint64_t ckpt_allocs;   /* allocations made by checkpoint writes */
    phase_times time;
} trainer;

/* ---- set-up ---------------------------------------------------------------- */

/* dir/name, or dir/name.gz when only that exists. */
#define DT_DATA_PATH_MAX (2 * DT_PATH_MAX + 8)
static void data_path(const char *dir, const char *name, char *out, size_t size)
{
    snprintf(out, size, "%s/%s", dir, name);
    if (access(out, F_OK) == 0) return;
    char gz[DT_DATA_PATH_MAX + 8];
    snprintf(gz, sizeof gz, "%s.gz", out);
    size_t len = strlen(gz);
    if (len < size && access(gz, F_OK) == 0) memcpy(out, gz, len + 1);
}

static dt_status load_data(trainer *tr, int n_classes, dt_error *err)
{
    const dt_config *c = &tr->cfg;
    struct stat st;
    if (stat(c->data.dir, &st) != 0)
        return dt_fail(err, DT_EDATA, "data.dir %s: %s", c->data.dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return dt_fail(err, DT_EDATA, "data.dir %s: not a directory", c->data.dir);
    char img[DT_DATA_PATH_MAX], lbl[DT_DATA_PATH_MAX];
    data_path(c->data.dir, c->data.train_images, img, sizeof img);
    data_path(c->data.dir, c->data.train_labels, lbl, sizeof lbl);
    dt_status st_ = dt_idx_load(img, lbl, c->data.train_limit, n_classes, &tr->train, err);
    if (st_) return st_;
    data_path(c->data.dir, c->data.test_images, img, sizeof img);
    data_path(c->data.dir, c->data.test_labels, lbl, sizeof lbl);
    st_ = dt_idx_load(img, lbl, c->data.test_limit, n_classes, &tr->test, err);
    if (st_) return st_;

    const int *in = c->model.input;
    if (tr->train.sample_size != (long)in[0] * in[1] * in[2] ||
        tr->test.sample_size != tr->train.sample_size)
        return dt_fail(err, DT_EDATA,
                       "%s: samples are %dx%dx%d but model.input is [%d, %d, %d]", img,
                       tr->test.c, tr->test.h, tr->test.w, in[0], in[1], in[2]);
    if (tr->test.n == 0)
        return dt_fail(err, DT_EDATA, "%s: the test set is empty", img);
    if (c->data.normalize) {
        dt_dataset_stats(&tr->train, &tr->mean, &tr->std);
        if (!(tr->std > 0)) tr->std = 1; /* a constant image set: only centre it */
    } else {
        tr->mean = 0;
        tr->std = 1;
    }
    return DT_OK;
}

/* Durations in updates, the schedule, and the run length. */
static dt_status resolve_lengths(trainer *tr, dt_error *err)
{
    const dt_config *c = &tr->cfg;
    tr->upe = dt_updates_per_epoch(tr->train.n, c->train.global_batch, c->data.drop_last);
    if (tr->upe == 0)
        return dt_fail(err, DT_ECONFIG,
                       "%s: train.global_batch: %ld is larger than the training set (%ld "
                       "samples) with data.drop_last: true",
                       c->source, c->train.global_batch, tr->train.n);
    tr->total_steps = dt_duration_steps(c->train.length, tr->upe);

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

/* out_dir/config.resolved.yaml, atomically: complete or absent. */
static dt_status write_resolved_config(const dt_config *c, dt_error *err)
{
    dt_path path;
    dt_status st = dt_path_join(&path, c->run.out_dir, "config.resolved.yaml", err);
    if (st != DT_OK) return st;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return dt_fail(err, DT_EINTERNAL, "%s: out of memory", path.s);
    dt_config_write_yaml(c, f);
    bool ok = !ferror(f);
    if (fclose(f) != 0) ok = false; /* a memory stream: fails only out of memory */
    st = ok ? dt_fs_write_atomic(path.s, text, len, err)
            : dt_fail(err, DT_EINTERNAL, "%s: out of memory", path.s);
    free(text); /* open_memstream's, not a dt_ allocation */
    return st;
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

static void checkpoint_identity(const trainer *tr, dt_ckpt_header *h);

/* Model, optimizer and buffers; the model's max batch covers the largest
 * shard and evaluation chunks. */
static dt_status build(trainer *tr, dt_error *err)
{
    const dt_config *c = &tr->cfg;
    const dt_comm *cm = tr->comm;
    long b = c->train.global_batch, begin, end;
    dt_shard(b, cm->rank, cm->world, &begin, &end);
    tr->shard_max = end - begin + 1; /* a short last batch is never larger */
    long max_batch = DT_MAX(tr->shard_max, 256);
    dt_status st = dt_model_create(c->model.layers, c->model.n_layers, c->model.input,
                                   max_batch, c->source, &tr->model, err);
    if (st) return st;
    dt_optim_hparams hp;
    optim_hparams(c, &hp);
    st = dt_optim_init(&tr->opt, &hp, dt_model_param_count(tr->model), err);
    if (st) return st;
    size_t bucket_floats = (size_t)c->comm.bucket_kb * 1024 / sizeof(float);
    st = dt_grad_sync_create(dt_model_param_count(tr->model) + DT_GRAD_EXTRA, bucket_floats,
                             c->comm.overlap, &tr->sync, err);
    if (st) return st;
    tr->perm = dt_malloc((size_t)tr->train.n * sizeof *tr->perm);
    tr->x = dt_alloc_aligned((size_t)max_batch * (size_t)dt_model_input_size(tr->model) *
                             sizeof *tr->x);
    tr->y = dt_malloc((size_t)max_batch * sizeof *tr->y);
    if (!tr->perm || !tr->x || !tr->y) return dt_fail(err, DT_EINTERNAL, "out of memory");
    dt_model_init_params(tr->model, c->model.init, c->run.seed);
    checkpoint_identity(tr, &tr->ckpt_id);
    return DT_OK;
}

static void trainer_free(trainer *tr)
{
    dt_metrics_close(tr->metrics);
    dt_free(tr->perm);
    dt_free(tr->x);
    dt_free(tr->y);
    dt_optim_free(&tr->opt);
    dt_grad_sync_free(tr->sync);
    dt_model_free(tr->model);
    dt_dataset_free(&tr->train);
    dt_dataset_free(&tr->test);
}

/* ---- the loop ---------------------------------------------------------------- */

/* Mean test loss and accuracy: each rank evaluates a contiguous slice of the
 * test set, the sums are reduced. */
static void evaluate(trainer *tr, double *loss, double *accuracy)
{
    double t0 = dt_comm_time();
    long begin, end;
    dt_shard(tr->test.n, tr->comm->rank, tr->comm->world, &begin, &end);
    long chunk = dt_model_max_batch(tr->model);
    double sums[2] = {0, 0}; /* loss, correct */
    uint32_t idx[512];
    chunk = DT_MIN(chunk, (long)DT_ARRAY_LEN(idx));
    for (long i = begin; i < end; i += chunk) {
        long n = DT_MIN(chunk, end - i);
        for (long j = 0; j < n; j++) idx[j] = (uint32_t)(i + j);
        dt_gather_batch(&tr->test, idx, n, (float)tr->mean, (float)tr->std, tr->x, tr->y);
        long correct = 0;
        dt_model_forward(tr->model, tr->x, tr->y, n, &sums[0], &correct);
        sums[1] += (double)correct;
    }
    dt_comm_allreduce_sum_d(sums, 2);
    *loss = sums[0] / (double)tr->test.n;
    *accuracy = sums[1] / (double)tr->test.n;
    tr->time.eval += dt_comm_time() - t0;
}

typedef struct {
    double train_loss, test_loss, test_accuracy;
    long skipped;
    double train_seconds;
    double samples; /* training samples consumed */
    uint64_t loop_allocations;
} run_result;

/* ---- checkpoints and stop requests ------------------------------------------ */

static volatile sig_atomic_t stop_signal; /* the signal that asked for a stop */

static void on_stop_signal(int sig) { stop_signal = sig; }

static void install_stop_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

/* Hash of the resolved configuration minus the keys a resume may change
 * (run length, logging, evaluation, checkpointing, communication, threads,
 * names and paths): a checkpoint only resumes the run it belongs to. */
static uint64_t config_hash(const dt_config *c)
{
    dt_config *k = dt_malloc(sizeof *k);
    if (!k) return 0;
    *k = *c;
    memset(k->source, 0, sizeof k->source);
    memset(k->run.name, 0, sizeof k->run.name);
    memset(k->run.out_dir, 0, sizeof k->run.out_dir);
    memset(k->data.dir, 0, sizeof k->data.dir);
    memset(&k->train.length, 0, sizeof k->train.length);
    k->train.eval_every = k->train.log_every = 0;
    memset(&k->checkpoint, 0, sizeof k->checkpoint);
    memset(&k->comm, 0, sizeof k->comm);
    memset(&k->runtime, 0, sizeof k->runtime);
    for (int i = 0; i < k->model.n_layers; i++) k->model.layers[i].line = k->model.layers[i].col = 0;
    char *text = NULL;
    size_t len = 0;
    uint64_t h = 0;
    FILE *f = open_memstream(&text, &len);
    if (f) {
        dt_config_write_yaml(k, f);
        fclose(f);
        h = dt_fnv1a64(DT_FNV_INIT, text, len);
    }
    free(text); /* open_memstream's buffer is libc's */
    dt_free(k);
    return h;
}

static uint64_t layout_hash(const dt_config *c, size_t n_params)
{
    uint64_t h = dt_fnv1a64(DT_FNV_INIT, c->model.input, sizeof c->model.input);
    for (int i = 0; i < c->model.n_layers; i++) {
        const dt_layer_spec *l = &c->model.layers[i];
        int32_t f[7] = {(int32_t)l->kind, l->units, l->out_channels, l->kernel,
                        l->stride, l->pad, l->size};
        h = dt_fnv1a64(h, f, sizeof f);
    }
    uint64_t n = n_params;
    return dt_fnv1a64(h, &n, sizeof n);
}

static void checkpoint_identity(const trainer *tr, dt_ckpt_header *h)
{
    memset(h, 0, sizeof *h);
    h->layout_hash = layout_hash(&tr->cfg, dt_model_param_count(tr->model));
    h->config_hash = config_hash(&tr->cfg);
    h->n_params = dt_model_param_count(tr->model);
    h->optimizer = (uint32_t)tr->opt.hp.name;
    h->slots = (uint32_t)tr->opt.slots;
    h->seed = tr->cfg.run.seed;
}

/* Rank 0 writes; every rank learns whether it worked (one collective). */
static dt_status save_checkpoint(trainer *tr, long step, long skipped, dt_error *err)
{
    dt_status st = DT_OK;
    if (tr->comm->rank == 0) {
        const uint64_t allocs0 = dt_alloc_count();
        dt_ckpt_header h = tr->ckpt_id;
        h.step = step;
        h.opt_t = tr->opt.t;
        h.skipped = skipped;
        h.world_size = (uint32_t)tr->comm->world;
        const float *state[DT_CKPT_MAX_SLOTS] = {tr->opt.state[0], tr->opt.state[1]};
        char path[DT_PATH_MAX + 64];
        st = dt_ckpt_write(tr->cfg.checkpoint.dir, tr->cfg.checkpoint.keep, &h,
                           dt_model_params(tr->model), state, path, sizeof path, err);
        if (st == DT_OK && tr->metrics) dt_metrics_note(tr->metrics, "checkpoint: %s", path);
        tr->ckpt_allocs += dt_alloc_count() - allocs0;
    }
    return dt_comm_agree(tr->comm, st, err);
}

static void warn_rank0(void *ctx, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "dtrain: warning: %s\n", msg);
    fflush(stderr);
}

/* Rank 0 reads and verifies the checkpoint, every rank receives it. */
static dt_status resume_from(trainer *tr, const char *what, long *first_step, long *skipped,
                             dt_error *err)
{
    dt_ckpt_header want = tr->ckpt_id, got;
    memset(&got, 0, sizeof got);
    float *w = dt_model_params(tr->model);
    float *state[DT_CKPT_MAX_SLOTS] = {tr->opt.state[0], tr->opt.state[1]};
    char path[DT_PATH_MAX + 64] = "";
    dt_status st = DT_OK;
    if (tr->comm->rank == 0)
        st = dt_ckpt_resume(what, tr->cfg.checkpoint.dir, &want, w, state, &got, path,
                            sizeof path, warn_rank0, NULL, err);
    st = dt_comm_agree(tr->comm, st, err);
    if (st) return st;
    const size_t n = dt_model_param_count(tr->model);
    dt_comm_bcast(&got, sizeof got, 0);
    dt_comm_bcast(w, n * sizeof *w, 0);
    for (int k = 0; k < tr->opt.slots; k++) dt_comm_bcast(tr->opt.state[k], n * sizeof(float), 0);
    tr->opt.t = got.opt_t;
    *first_step = got.step + 1;
    *skipped = got.skipped;
    if (tr->comm->rank == 0)
        printf("resumed from %s: step %lld, written by %u rank%s\n", path, (long long)got.step,
               got.world_size, got.world_size == 1 ? "" : "s");
    return DT_OK;
}

/* Is a checkpoint due after `step` (not counting the end and stop requests)? */
static bool checkpoint_due(const trainer *tr, long step)
{
    dt_duration every = tr->cfg.checkpoint.every;
    if (!every.set || every.value <= 0) return false;
    if (every.in_epochs) return step % tr->upe == 0 && (step / tr->upe) % every.value == 0;
    return step % every.value == 0;
}

/* ---- the loop ---------------------------------------------------------------- */

static dt_status train_loop(trainer *tr, long first_step, run_result *res, dt_error *err)
{
    const dt_config *c = &tr->cfg;
    const dt_comm *cm = tr->comm;
    const long B = c->train.global_batch, N = tr->train.n;
    const size_t n_params = dt_model_param_count(tr->model);
    float *w = dt_model_params(tr->model), *g_send = dt_model_grads(tr->model);
    float *extra = dt_model_grad_extra(tr->model); /* [0] loss sum, [1] stop request */
    double window_t0 = dt_comm_time(), window_comm = 0;
    long window_samples = 0;
    double train_t = 0;

    const uint64_t allocs_before = dt_alloc_count();
    for (long step = first_step; step <= tr->total_steps; step++) {
        const long epoch = (step - 1) / tr->upe; /* 0-based */
        const long i = (step - 1) % tr->upe;     /* batch within the epoch */
        double t0 = dt_comm_time();
        if (i == 0 || step == first_step)
            dt_epoch_permutation(c->run.seed, (uint64_t)epoch, tr->perm, N);
        const long b = DT_MIN(B, N - i * B); /* short only if !drop_last */
        long begin, end;
        dt_shard(b, cm->rank, cm->world, &begin, &end);
        const long n = end - begin;
        dt_gather_batch(&tr->train, tr->perm + i * B + begin, n, (float)tr->mean,
                        (float)tr->std, tr->x, tr->y);
        double t1 = dt_comm_time();

        double loss_sum = 0;
        dt_model_zero_grads(tr->model);
        if (n > 0) dt_model_forward(tr->model, tr->x, tr->y, n, &loss_sum, NULL);
        double t2 = dt_comm_time();

        /* One allreduce carries the gradient sums, the loss sum and any
         * rank's stop request (the extra floats after the gradient arena,
         * final before backward starts); buckets may start while backward
         * runs on earlier layers. A rank with an empty shard joins with
         * zeros (SPEC step 1). */
        extra[0] = (float)loss_sum;
        extra[1] = stop_signal ? 1.0f : 0.0f;
        dt_grad_sync_begin(tr->sync, g_send);
        dt_grad_sync_ready(tr->sync, n_params, DT_GRAD_EXTRA);
        if (n > 0) dt_model_backward(tr->model, dt_grad_sync_ready, tr->sync);
        double t3 = dt_comm_time();
        float *g = dt_grad_sync_finish(tr->sync);
        const double batch_loss = (double)g[n_params] / (double)b;
        const bool stop = g[n_params + 1] > 0;
        double t4 = dt_comm_time();
        const double in_backward = dt_grad_sync_ready_seconds(tr->sync);

        const bool finite = dt_optim_prepare(&tr->opt, w, g, 1.0f / (float)b);
        double lr = dt_sched_lr(&tr->sched, tr->opt.t);
        if (finite) dt_optim_step(&tr->opt, w, g, lr);
        double t5 = dt_comm_time();
        tr->time.data += t1 - t0;
        tr->time.forward += t2 - t1;
        tr->time.backward += t3 - t2 - in_backward;
        tr->time.comm += t4 - t3 + in_backward;
        tr->time.optimizer += t5 - t4;
        train_t += t5 - t0;
        window_comm += t4 - t3 + in_backward;
        window_samples += b;
        res->samples += (double)b;

        if (!finite) {
            /* Every rank holds the same averaged gradient, so every rank
             * takes this branch at the same step: no extra collective. */
            if (c->optimizer.nonfinite == DT_NONFINITE_ABORT)
                return dt_fail(err, DT_EDIVERGED,
                               "step %ld: non-finite gradient (NaN or Inf); the run diverged "
                               "(optimizer.nonfinite: abort; lower optimizer.lr or set "
                               "nonfinite: skip)",
                               step);
            res->skipped++;
            if (tr->metrics) dt_metrics_skip(tr->metrics, step, (int)epoch + 1, res->skipped);
        }

        if (c->comm.check_replicas_every > 0 && step % c->comm.check_replicas_every == 0) {
            uint64_t h = dt_fnv1a64(DT_FNV_INIT, w, n_params * sizeof *w);
            if (!dt_comm_all_equal_u64(h))
                return dt_fail(err, DT_EINTERNAL,
                               "step %ld: replica check failed: the parameters differ across "
                               "ranks",
                               step);
        }

        const bool epoch_end = i == tr->upe - 1;
        if (step % c->train.log_every == 0 || step == tr->total_steps || stop) {
            res->train_loss = batch_loss;
            double now = dt_comm_time(), span = now - window_t0;
            if (tr->metrics) {
                dt_train_record r = {
                    .step = step,
                    .epoch = (int)epoch + 1,
                    .progress = (double)step / (double)tr->upe,
                    .total_steps = tr->total_steps,
                    .loss = batch_loss,
                    .lr = lr,
                    .samples_per_second = span > 0 ? (double)window_samples / span : 0,
                    .comm_share = span > 0 ? window_comm / span : 0,
                };
                dt_metrics_train(tr->metrics, &r);
            }
            window_t0 = dt_comm_time();
            window_comm = 0;
            window_samples = 0;
        }
        if (stop) {
            res->loop_allocations = dt_alloc_count() - allocs_before - tr->ckpt_allocs;
            dt_status st = save_checkpoint(tr, step, res->skipped, err);
            if (st) return st;
            return dt_fail(err, DT_EPREEMPTED,
                           "stopped by a signal at step %ld of %ld; checkpoint written to %s; "
                           "continue with --resume latest",
                           step, tr->total_steps, c->checkpoint.dir);
        }
        if (epoch_end || step == tr->total_steps) {
            bool last = step == tr->total_steps;
            bool due = c->train.eval_every > 0 && epoch_end && (epoch + 1) % c->train.eval_every == 0;
            if (due || last) {
                double t_eval0 = dt_comm_time();
                evaluate(tr, &res->test_loss, &res->test_accuracy);
                if (tr->metrics) {
                    dt_eval_record r = {
                        .step = step,
                        .epoch = (int)(epoch_end ? epoch + 1 : epoch),
                        .progress = (double)step / (double)tr->upe,
                        .test_loss = res->test_loss,
                        .test_accuracy = res->test_accuracy,
                    };
                    dt_metrics_eval(tr->metrics, &r);
                }
                window_t0 += dt_comm_time() - t_eval0; /* evaluation is not training */
            }
        }
        if (checkpoint_due(tr, step) || step == tr->total_steps) {
            double t_ck = dt_comm_time();
            dt_status st = save_checkpoint(tr, step, res->skipped, err);
            if (st) return st;
            window_t0 += dt_comm_time() - t_ck;
        }
    }
    /* Checkpoint writes (every epoch at most) allocate their I/O buffers;
     * the per-update path must not allocate at all. */
    res->loop_allocations = dt_alloc_count() - allocs_before - tr->ckpt_allocs;
    res->train_seconds = train_t;
    if (first_step > tr->total_steps) /* resumed a finished run: evaluate only */
        evaluate(tr, &res->test_loss, &res->test_accuracy);
    return DT_OK;
}

/* ---- the run ----------------------------------------------------------------- */

static void print_plan(const trainer *tr)
{
    const dt_config *c = &tr->cfg;
    long b = c->train.global_batch;
    printf("plan: %s: %zu parameters, %ld train / %ld test samples, %ld updates (%ld per "
           "epoch) of global batch %ld on %d rank%s (%ld-%ld per rank), %s lr %g, %s schedule; "
           "out_dir %s\n",
           c->run.name, dt_model_param_count(tr->model), tr->train.n, tr->test.n,
           tr->total_steps, tr->upe, b, tr->comm->world, tr->comm->world == 1 ? "" : "s",
           b / tr->comm->world, (b + tr->comm->world - 1) / tr->comm->world,
           dt_optimizer_str(c->optimizer.name), c->optimizer.lr,
           dt_sched_str(c->scheduler.name), c->run.out_dir);
}

/* Agree on a verdict; on failure rank 0 prints the one error line. */
static dt_status agree(const trainer *tr, dt_status st, dt_error *err)
{
    st = dt_comm_agree(tr->comm, st, err);
    if (st && tr->comm->rank == 0) {
        fprintf(stderr, "dtrain: %s\n", err->msg);
        fflush(stderr);
    }
    return st;
}

dt_status dt_train_run(const dt_comm *comm, const dt_run_options *opt)
{
    static trainer tr; /* large (the config); one run per process */
    memset(&tr, 0, sizeof tr);
    tr.comm = comm;
    dt_error err = {0};
    const bool root = comm->rank == 0;

    /* A stop request during start-up is honoured after the first update
     * (with its checkpoint), not by the signal's default action. */
    install_stop_handlers();
    dt_status st = dt_config_load(opt->config_path, opt->sets, opt->n_sets, &tr.cfg, &err);
    if ((st = agree(&tr, st, &err))) goto done;
    if (opt->print_config) {
        if (root) dt_config_write_yaml(&tr.cfg, stdout);
        if (!opt->check_only) goto done;
    }
    /* The model's shapes are part of the configuration: check them before
     * reading any data. Outputs bound the label range. */
    {
        dt_model *probe = NULL;
        st = dt_model_create(tr.cfg.model.layers, tr.cfg.model.n_layers, tr.cfg.model.input, 1,
                             tr.cfg.source, &probe, &err);
        int outputs = st ? 0 : dt_model_outputs(probe);
        dt_model_free(probe);
        if ((st = agree(&tr, st, &err))) goto done;
        st = load_data(&tr, outputs, &err);
    }
    if ((st = agree(&tr, st, &err))) goto done;
    st = resolve_lengths(&tr, &err);
    if (st == DT_OK) st = build(&tr, &err);
    if ((st = agree(&tr, st, &err))) goto done;

    tr.threads = dt_runtime_pick_threads(tr.cfg.runtime.threads, comm->local_size);
    dt_runtime_set_threads(tr.threads);

    if (opt->check_only) {
        if (root) print_plan(&tr);
        goto done;
    }

    /* Resume: every rank gets the checkpoint's state before anything runs. */
    long first_step = 1, skipped = 0;
    if (opt->resume) {
        st = resume_from(&tr, opt->resume, &first_step, &skipped, &err);
        if ((st = agree(&tr, st, &err))) goto done;
    }

    /* Output folder and files: rank 0's, after everything was validated. */
    if (root) {
        st = dt_fs_mkdir_p(tr.cfg.run.out_dir, "run.out_dir", &err);
        if (st == DT_OK) st = write_resolved_config(&tr.cfg, &err);
        if (st == DT_OK) st = dt_metrics_open(&tr.metrics, tr.cfg.run.out_dir, opt->resume != NULL, stdout,
                                 dt_runtime_progress_bar(), &err);
    }
    if ((st = agree(&tr, st, &err))) goto done;

    if (tr.metrics) {
        char layout[4096];
        dt_model_describe(tr.model, layout, sizeof layout);
        dt_metrics_note(tr.metrics,
                        "run %s: %d rank%s on %d node%s, %d BLAS thread%s per rank (OpenBLAS "
                        "%s), %zu parameters",
                        tr.cfg.run.name, comm->world, comm->world == 1 ? "" : "s", comm->nodes,
                        comm->nodes == 1 ? "" : "s", tr.threads, tr.threads == 1 ? "" : "s",
                        dt_runtime_blas_core(), dt_model_param_count(tr.model));
        /* one indented line per layer */
        size_t len = strlen(layout);
        while (len && layout[len - 1] == '\n') layout[--len] = 0;
        for (char *line = layout, *next; line; line = next) {
            next = strchr(line, '\n');
            if (next) *next++ = 0;
            dt_metrics_note(tr.metrics, "  %s", line);
        }
        dt_metrics_note(tr.metrics, "  gradient allreduce: %s",
                        tr.cfg.comm.overlap ? "bucketed, overlapped with backward" : "one blocking call");
        if (tr.cfg.comm.overlap)
            dt_metrics_note(tr.metrics, "  %d bucket%s of up to %ld KiB",
                            dt_grad_sync_buckets(tr.sync), dt_grad_sync_buckets(tr.sync) == 1 ? "" : "s",
                            tr.cfg.comm.bucket_kb);
        dt_metrics_note(tr.metrics,
                        "%ld train / %ld test samples, %ld updates of %ld (%ld per epoch), %s "
                        "lr %g, %s schedule -> %s",
                        tr.train.n, tr.test.n, tr.total_steps, tr.cfg.train.global_batch,
                        tr.upe, dt_optimizer_str(tr.cfg.optimizer.name), tr.cfg.optimizer.lr,
                        dt_sched_str(tr.cfg.scheduler.name), tr.cfg.run.out_dir);
    }

    double wall0 = dt_comm_time();
    run_result res = {0};
    res.skipped = skipped;
    st = train_loop(&tr, first_step, &res, &err);
    if ((st = agree(&tr, st, &err))) goto done;
    double wall = dt_comm_time() - wall0;

    const float *w = dt_model_params(tr.model);
    uint64_t checksum = dt_fnv1a64(DT_FNV_INIT, w, dt_model_param_count(tr.model) * sizeof *w);
    if (root) {
        dt_summary s = {
            .name = tr.cfg.run.name,
            .test_accuracy = res.test_accuracy,
            .test_loss = res.test_loss,
            .train_loss = res.train_loss,
            .steps = tr.total_steps,
            .skipped_updates = res.skipped,
            .epochs = (double)tr.total_steps / (double)tr.upe,
            .world_size = comm->world,
            .nodes = comm->nodes,
            .threads = tr.threads,
            .global_batch = tr.cfg.train.global_batch,
            .wall_seconds = wall,
            .samples_per_second = res.train_seconds > 0
                                      ? res.samples / res.train_seconds
                                      : 0,
            .flops_per_sample = dt_model_flops_per_sample(tr.model),
            .t_data = tr.time.data,
            .t_forward = tr.time.forward,
            .t_backward = tr.time.backward,
            .t_comm = tr.time.comm,
            .t_optimizer = tr.time.optimizer,
            .t_eval = tr.time.eval,
            .param_checksum = checksum,
            .blas_core = dt_runtime_blas_core(),
            .loop_allocations = res.loop_allocations,
        };
        st = dt_metrics_write_summary(tr.metrics, &s, &err);
        if (st == DT_OK)
            dt_metrics_note(tr.metrics,
                            "done: test_accuracy %.4f  test_loss %.4f  %.0f samples/s (%.1f "
                            "GFLOP/s)  %.1f s  param_checksum %016llx",
                            s.test_accuracy, s.test_loss, s.samples_per_second,
                            s.samples_per_second * s.flops_per_sample * 1e-9, wall,
                            (unsigned long long)checksum);
    }
    st = agree(&tr, st, &err);

done:
    trainer_free(&tr);
    return st;
}
