/* run.c - one training run, stage by stage.
 *
 *   load and check the configuration -> check the model's shapes -> load
 *   the data -> resolve lengths, build -> (--check: print the plan) ->
 *   resume -> create the outputs -> train -> summary
 *
 * Every stage ends with one verdict that every rank agrees on before
 * anything is written, so a bad input leaves no half-written result and no
 * rank waiting in a collective. All buffers exist before the loop; the loop
 * allocates nothing, and the run reports that it did not
 * (train_loop_allocations). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "dtrain/runtime.h"
#include "dtrain/train.h"
#include "trainer.h"

/* Room for dt_model_describe's one line per layer. */
#define LAYOUT_TEXT_MAX (DT_MAX_LAYERS * 96)

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

/* The model's shapes are part of the configuration: check them before
 * reading any data. Its outputs bound the label range. */
static dt_status check_model_then_load(trainer *tr, dt_error *err)
{
    const dt_config *c = &tr->cfg;
    dt_model *probe = NULL;
    dt_status st = dt_model_create(c->model.layers, c->model.n_layers, c->model.input, 1,
                                   c->source, &probe, err);
    int outputs = st ? 0 : dt_model_outputs(probe);
    dt_model_free(probe);
    if ((st = agree(tr, st, err))) return st;
    return train_load_data(tr, outputs, err);
}

static void print_plan(const trainer *tr)
{
    const dt_config *c = &tr->cfg;
    const long b = c->train.global_batch;
    const int P = tr->comm->world;
    printf("plan: %s: %zu parameters, %ld train / %ld test samples, %ld updates (%ld per "
           "epoch) of global batch %ld on %d rank%s (%ld-%ld per rank), %s lr %g, %s schedule; "
           "out_dir %s\n",
           c->run.name, dt_model_param_count(tr->model), tr->data.train.n, tr->data.test.n,
           tr->total_steps, tr->upe, b, P, P == 1 ? "" : "s", b / P, (b + P - 1) / P,
           dt_optimizer_str(c->optimizer.name), c->optimizer.lr, dt_sched_str(c->scheduler.name),
           c->run.out_dir);
}

static dt_status make_out_dir(const char *path, dt_error *err)
{
    char buf[DT_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char saved = *p;
            *p = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return dt_fail(err, DT_EINTERNAL, "cannot create run.out_dir %s: %s", buf,
                               strerror(errno));
            *p = saved;
            if (!saved) break;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return dt_fail(err, DT_EINTERNAL, "run.out_dir %s is not a directory", path);
    return DT_OK;
}

static dt_status write_resolved_config(const dt_config *c, dt_error *err)
{
    char path[DT_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/config.resolved.yaml", c->run.out_dir);
    FILE *f = fopen(path, "w");
    if (!f) return dt_fail(err, DT_EINTERNAL, "cannot write %s: %s", path, strerror(errno));
    dt_config_write_yaml(c, f);
    if (fclose(f) != 0)
        return dt_fail(err, DT_EINTERNAL, "cannot write %s: %s", path, strerror(errno));
    return DT_OK;
}

/* Rank 0's output folder and files, after everything was validated. */
static dt_status open_outputs(trainer *tr, bool resumed, dt_error *err)
{
    if (tr->comm->rank != 0) return DT_OK;
    dt_status st = make_out_dir(tr->cfg.run.out_dir, err);
    if (st == DT_OK) st = write_resolved_config(&tr->cfg, err);
    if (st == DT_OK)
        st = dt_metrics_open(&tr->metrics, tr->cfg.run.out_dir, resumed, stdout,
                             dt_runtime_progress_bar(), err);
    return st;
}

static void report_startup(const trainer *tr)
{
    if (!tr->metrics) return;
    const dt_config *c = &tr->cfg;
    char layout[LAYOUT_TEXT_MAX];
    dt_model_describe(tr->model, layout, sizeof layout);
    dt_run_facts f = {
        .name = c->run.name,
        .world = tr->comm->world,
        .nodes = tr->comm->nodes,
        .threads = tr->threads,
        .blas_core = dt_runtime_blas_core(),
        .reexecuted = dt_runtime_reexecuted(),
        .n_params = dt_model_param_count(tr->model),
        .layers = layout,
        .overlap = c->comm.overlap,
        .buckets = dt_grad_sync_buckets(tr->sync),
        .bucket_kb = c->comm.bucket_kb,
        .train_samples = tr->data.train.n,
        .test_samples = tr->data.test.n,
        .total_steps = tr->total_steps,
        .global_batch = c->train.global_batch,
        .updates_per_epoch = tr->upe,
        .optimizer = dt_optimizer_str(c->optimizer.name),
        .schedule = dt_sched_str(c->scheduler.name),
        .out_dir = c->run.out_dir,
        .lr = c->optimizer.lr,
    };
    dt_metrics_startup(tr->metrics, &f);
}

static dt_status write_summary(trainer *tr, const run_result *res, double wall, dt_error *err)
{
    const float *w = dt_model_params(tr->model);
    uint64_t checksum = dt_fnv1a64(DT_FNV_INIT, w, dt_model_param_count(tr->model) * sizeof *w);
    if (tr->comm->rank != 0) return DT_OK;
    const phase_times *t = &tr->time;
    dt_summary s = {
        .name = tr->cfg.run.name,
        .test_accuracy = res->test_accuracy,
        .test_loss = res->test_loss,
        .train_loss = res->train_loss,
        .steps = tr->total_steps,
        .skipped_updates = res->skipped,
        .epochs = (double)tr->total_steps / (double)tr->upe,
        .world_size = tr->comm->world,
        .nodes = tr->comm->nodes,
        .threads = tr->threads,
        .global_batch = tr->cfg.train.global_batch,
        .wall_seconds = wall,
        .samples_per_second = res->train_seconds > 0 ? res->samples / res->train_seconds : 0,
        .flops_per_sample = dt_model_flops_per_sample(tr->model),
        .t_data = t->data,
        .t_forward = t->forward,
        .t_backward = t->backward,
        .t_comm = t->comm,
        .t_optimizer = t->optimizer,
        .t_eval = t->eval,
        .param_checksum = checksum,
        .blas_core = dt_runtime_blas_core(),
        .loop_allocations = res->loop_allocations,
    };
    dt_status st = dt_metrics_write_summary(tr->metrics, &s, err);
    if (st == DT_OK) dt_metrics_finish(tr->metrics, &s);
    return st;
}

/* From a checked configuration to a trainer ready to run (or to --check's
 * plan). */
static dt_status prepare(trainer *tr, dt_error *err)
{
    dt_status st = check_model_then_load(tr, err);
    if ((st = agree(tr, st, err))) return st;
    st = train_resolve_lengths(tr, err);
    if (st == DT_OK) st = train_build(tr, err);
    if ((st = agree(tr, st, err))) return st;
    tr->threads = dt_runtime_pick_threads(tr->cfg.runtime.threads, tr->comm->local_size);
    dt_runtime_set_threads(tr->threads);
    return DT_OK;
}

dt_status dt_train_run(const dt_comm *comm, const dt_run_options *opt)
{
    static trainer tr; /* large (the config); one run per process */
    memset(&tr, 0, sizeof tr);
    tr.comm = comm;
    dt_error err = {0};
    const bool root = comm->rank == 0;
    long first_step = 1;
    run_result res = {0};

    /* A stop request during start-up is honoured after the first update
     * (with its checkpoint), not by the signal's default action. */
    train_install_stop_handlers();
    dt_status st = dt_config_load(opt->config_path, opt->sets, opt->n_sets, &tr.cfg, &err);
    if ((st = agree(&tr, st, &err))) goto done;
    dt_comm_set_timeout((double)tr.cfg.comm.timeout_s);
    if (opt->print_config) {
        if (root) dt_config_write_yaml(&tr.cfg, stdout);
        if (!opt->check_only) goto done;
    }
    if ((st = prepare(&tr, &err))) goto done;
    if (opt->check_only) {
        if (root) print_plan(&tr);
        goto done;
    }
    /* Resume: every rank gets the checkpoint's state before anything runs. */
    if (opt->resume) {
        st = train_resume(&tr, opt->resume, &first_step, &res.skipped, &err);
        if ((st = agree(&tr, st, &err))) goto done;
    }
    st = open_outputs(&tr, opt->resume != NULL, &err);
    if ((st = agree(&tr, st, &err))) goto done;
    report_startup(&tr);

    double wall0 = dt_comm_time();
    st = train_loop(&tr, first_step, &res, &err);
    if ((st = agree(&tr, st, &err))) goto done;
    st = write_summary(&tr, &res, dt_comm_time() - wall0, &err);
    st = agree(&tr, st, &err);

done:
    train_free(&tr);
    return st;
}
