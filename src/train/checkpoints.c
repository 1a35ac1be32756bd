/* checkpoints.c - what a checkpoint of this run is (its identity), writing
 * one, resuming from one, and the stop requests that ask for one.
 *
 * Rank 0 reads and writes the files; every rank learns the outcome through
 * one agreed verdict, and a resume broadcasts the state to every rank (or
 * each rank's share of the optimizer's, sharded), so a run may resume on
 * any number of ranks in either update mode. */
#define _GNU_SOURCE /* open_memstream */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer.h"

volatile sig_atomic_t train_stop_signal;

static void on_stop_signal(int sig) { train_stop_signal = sig; }

void train_install_stop_handlers(void)
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
 * tracing, names and paths): a checkpoint only resumes the run it belongs to. */
static dt_status config_hash(const dt_config *c, uint64_t *hash, dt_error *err)
{
    dt_config *k = dt_malloc(sizeof *k);
    if (!k) return dt_fail(err, DT_EINTERNAL, "out of memory hashing the configuration");
    *k = *c;
    memset(k->source, 0, sizeof k->source);
    memset(k->run.name, 0, sizeof k->run.name);
    memset(k->run.out_dir, 0, sizeof k->run.out_dir);
    memset(k->run.trace, 0, sizeof k->run.trace);
    k->run.trace_steps = 0;
    memset(k->data.dir, 0, sizeof k->data.dir);
    /* where the first weights came from does not change what a checkpoint
     * continues (and --resume wins over it) */
    memset(k->model.init_from, 0, sizeof k->model.init_from);
    memset(&k->train.length, 0, sizeof k->train.length);
    k->train.eval_every = k->train.log_every = 0;
    memset(&k->checkpoint, 0, sizeof k->checkpoint);
    memset(&k->comm, 0, sizeof k->comm);
    memset(&k->runtime, 0, sizeof k->runtime);
    for (int i = 0; i < k->model.n_layers; i++) k->model.layers[i].line = k->model.layers[i].col = 0;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    dt_status st = DT_OK;
    if (f) dt_config_write_yaml(k, f);
    if (!f || fclose(f) != 0 || !text)
        st = dt_fail(err, DT_EINTERNAL, "cannot hash the configuration: out of memory");
    else
        *hash = dt_fnv1a64(DT_FNV_INIT, text, len);
    free(text); /* open_memstream's buffer is libc's */
    dt_free(k);
    return st;
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

dt_status train_checkpoint_identity(const trainer *tr, dt_ckpt_header *h, dt_error *err)
{
    memset(h, 0, sizeof *h);
    h->layout_hash = layout_hash(&tr->cfg, dt_model_param_count(tr->model));
    h->n_params = dt_model_param_count(tr->model);
    h->optimizer = (uint32_t)tr->opt.hp.name;
    /* the averaged copy is one more arena after the optimizer's */
    h->slots = (uint32_t)tr->opt.slots + (tr->avg ? 1u : 0u);
    h->seed = tr->cfg.run.seed;
    return config_hash(&tr->cfg, &h->config_hash, err);
}

/* The optimizer state as whole arrays, for the file (rank 0): the arenas
 * themselves, unless the update is sharded over several ranks and each
 * holds only its share. Then rank 0 allocates whole arrays for the time of
 * the write or the read, and the other ranks stay at 1/P (whole[k] NULL). */
static bool state_in_shares(const trainer *tr)
{
    return tr->comm->world > 1 && dt_exchange_sharded(tr->exchange);
}

static dt_status whole_state(trainer *tr, float *whole[DT_CKPT_MAX_SLOTS], dt_error *err)
{
    const size_t n = dt_model_param_count(tr->model);
    for (int k = 0; k < DT_CKPT_MAX_SLOTS; k++)
        whole[k] = k < tr->opt.slots && !state_in_shares(tr) ? tr->opt.state[k] : NULL;
    if (!state_in_shares(tr) || tr->comm->rank != 0) return DT_OK;
    for (int k = 0; k < tr->opt.slots; k++)
        if (!(whole[k] = dt_alloc_aligned(n * sizeof(float))))
            return dt_fail(err, DT_EINTERNAL,
                           "out of memory for the optimizer state of a checkpoint (%d x %zu "
                           "floats on rank 0)",
                           tr->opt.slots, n);
    return DT_OK;
}

static void free_whole_state(const trainer *tr, float *whole[DT_CKPT_MAX_SLOTS])
{
    if (!state_in_shares(tr)) return;
    for (int k = 0; k < tr->opt.slots; k++) dt_free(whole[k]);
}

/* Rank 0 writes; every rank learns whether it worked (one collective). */
dt_status train_save_checkpoint(trainer *tr, long step, long skipped, dt_error *err)
{
    /* Sharded, each rank holds the optimizer state of its own share: rank 0
     * collects it (a collective), and the averaged copy is gathered, so
     * that the file is the same whatever the strategy and any run may
     * resume it. */
    const uint64_t allocs0 = dt_alloc_count();
    float *whole[DT_CKPT_MAX_SLOTS];
    dt_status st = whole_state(tr, whole, err);
    if (state_in_shares(tr)) st = dt_comm_agree(tr->comm, st, err);
    if (st == DT_OK) {
        for (int k = 0; k < tr->opt.slots; k++)
            dt_exchange_collect(tr->exchange, tr->opt.state[k], whole[k]);
        if (tr->avg) dt_exchange_gather(tr->exchange, tr->avg);
    }
    if (st == DT_OK && tr->comm->rank == 0) {
        dt_ckpt_header h = tr->ckpt_id;
        h.step = step;
        h.opt_t = tr->opt.t;
        h.skipped = skipped;
        h.world_size = (uint32_t)tr->comm->world;
        const float *state[DT_CKPT_MAX_SLOTS] = {whole[0], whole[1]};
        state[tr->opt.slots] = tr->avg; /* NULL, and not written, when averaging is off */
        char path[DT_PATH_MAX + 64];
        st = dt_ckpt_write(tr->cfg.checkpoint.dir, tr->cfg.checkpoint.keep, &h,
                           dt_model_params(tr->model), state, path, sizeof path, err);
        if (st == DT_OK && tr->metrics) dt_metrics_note(tr->metrics, "checkpoint: %s", path);
        /* a metrics.jsonl that could not be written ends the run here, at
         * the latest (and before a signal's stop hides it) */
        if (st == DT_OK && tr->metrics) st = dt_metrics_status(tr->metrics, err);
    }
    free_whole_state(tr, whole);
    tr->ckpt_allocs += dt_alloc_count() - allocs0;
    return dt_comm_agree(tr->comm, st, err);
}

static void warn_rank0(void *ctx, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "dtrain: warning: %s\n", msg);
    fflush(stderr);
}

/* Rank 0 reads and verifies the checkpoint, every rank receives it (its
 * share of the optimizer state, when sharded). */
dt_status train_resume(trainer *tr, const char *what, long *first_step, long *skipped,
                       dt_error *err)
{
    dt_ckpt_header want = tr->ckpt_id, got;
    memset(&got, 0, sizeof got);
    float *w = dt_model_params(tr->model);
    float *whole[DT_CKPT_MAX_SLOTS];
    char path[DT_PATH_MAX + 64] = "";
    dt_status st = whole_state(tr, whole, err);
    whole[tr->opt.slots] = tr->avg;
    if (st == DT_OK && tr->comm->rank == 0)
        st = dt_ckpt_resume(what, tr->cfg.checkpoint.dir, &want, w, whole, &got, path,
                            sizeof path, warn_rank0, NULL, err);
    st = dt_comm_agree(tr->comm, st, err);
    if (st == DT_OK) {
        const size_t n = dt_model_param_count(tr->model);
        dt_comm_bcast(&got, sizeof got, 0);
        dt_comm_bcast(w, n * sizeof *w, 0);
        for (int k = 0; k < tr->opt.slots; k++)
            dt_exchange_distribute(tr->exchange, whole[k], tr->opt.state[k]);
        if (tr->avg) dt_comm_bcast(tr->avg, n * sizeof(float), 0);
    }
    whole[tr->opt.slots] = NULL;
    free_whole_state(tr, whole);
    if (st) return st;
    tr->opt.t = got.opt_t;
    *first_step = got.step + 1;
    *skipped = got.skipped;
    if (tr->comm->rank == 0)
        printf("resumed from %s: step %lld, written by %u rank%s\n", path, (long long)got.step,
               got.world_size, got.world_size == 1 ? "" : "s");
    return DT_OK;
}

/* Is a checkpoint due after `step` (not counting the end and stop requests)? */
bool train_checkpoint_due(const trainer *tr, long step)
{
    dt_duration every = tr->cfg.checkpoint.every;
    if (!every.set || every.value <= 0) return false;
    if (every.in_epochs) return step % tr->upe == 0 && (step / tr->upe) % every.value == 0;
    return step % every.value == 0;
}
