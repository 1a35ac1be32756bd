/* run.c - one training run, stage by stage.
 *
 *   load and check the configuration -> check the model's shapes -> load
 *   the data -> resolve lengths, build -> model.init_from (unless resumed)
 *   -> (--check: print the plan) -> resume -> create the outputs -> train
 *   -> model.safetensors -> summary
 *
 * and the two forms that do not train: --export (configuration, model,
 * checkpoint -> safetensors; no data is read) and --evaluate
 * (configuration, data, model, weights -> the test set's report).
 *
 * Every stage ends with one verdict that every rank agrees on before
 * anything is written, so a bad input leaves no half-written result and no
 * rank waiting in a collective. All buffers exist before the loop; the loop
 * allocates nothing, and the run reports that it did not
 * (train_loop_allocations). */
#define _GNU_SOURCE /* open_memstream */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtrain/fs.h"
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

/* The model's shapes are part of the configuration: they are checked
 * before any data is read. The outputs bound the label range. */
static dt_status probe_model(const trainer *tr, int *outputs, dt_error *err)
{
    const dt_config *c = &tr->cfg;
    dt_model *probe = NULL;
    dt_status st = dt_model_create(c->model.layers, c->model.n_layers, c->model.input, 1,
                                   c->source, &probe, err);
    *outputs = st ? 0 : dt_model_outputs(probe);
    dt_model_free(probe);
    return st;
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
           dt_optimizer_str(c->optimizer.hp.name), c->optimizer.lr, dt_sched_str(c->scheduler.sched.name),
           c->run.out_dir);
    if (tr->average.kind == DT_AVERAGE_EMA)
        printf("plan: ema of the weights (decay %g) after every update from update %ld on\n",
               tr->average.decay, tr->average.start + 1);
    else if (tr->average.kind == DT_AVERAGE_SWA)
        printf("plan: swa (uniform mean) of the weights after every update from update %ld on\n",
               tr->average.start + 1);
    if (c->model.init_from[0]) printf("initial weights: %s\n", c->model.init_from);
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

/* Rank 0's output folder and files, after everything was validated. */
static dt_status open_outputs(trainer *tr, bool resumed, dt_error *err)
{
    if (tr->comm->rank != 0) return DT_OK;
    dt_status st = dt_fs_mkdir_p(tr->cfg.run.out_dir, "run.out_dir", err);
    if (st == DT_OK) st = write_resolved_config(&tr->cfg, err);
    if (st == DT_OK)
        st = dt_metrics_open(&tr->metrics, tr->cfg.run.out_dir, resumed, stdout,
                             dt_runtime_progress_bar(), err);
    return st;
}

/* Where comm.balance left the cut: every rank's shard (and its compute per
 * sample) up to 8 ranks, the smallest and largest beyond. */
static void report_balance(const trainer *tr)
{
    if (!tr->metrics || !tr->balance) return;
    const long *n = dt_balance_counts(tr->balance);
    const double *cost = dt_balance_costs(tr->balance);
    const int P = tr->comm->world;
    char buf[512];
    size_t used = 0;
    if (P <= 8) {
        for (int r = 0; r < P && used < sizeof buf; r++)
            used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%ld (%.1f us/sample)",
                                     r ? ", " : "", n[r], cost[r] * 1e6);
    } else {
        int lo = 0, hi = 0;
        for (int r = 1; r < P; r++) {
            if (n[r] < n[lo]) lo = r;
            if (n[r] > n[hi]) hi = r;
        }
        snprintf(buf, sizeof buf, "from %ld (rank %d) to %ld (rank %d)", n[lo], lo, n[hi], hi);
    }
    dt_metrics_note(tr->metrics, "balance: shards %s of %ld after %ld re-cut%s", buf,
                    tr->cfg.train.global_batch, dt_balance_changes(tr->balance),
                    dt_balance_changes(tr->balance) == 1 ? "" : "s");
}

/* Collective. The start-up line names rank 0's OpenBLAS kernel; a job whose
 * ranks run different ones (nodes of two CPU kinds, a re-exec turned off on
 * some) says so. */
static void report_startup(const trainer *tr)
{
    const char *core = dt_runtime_blas_core();
    const bool one_core = dt_comm_all_equal_u64(dt_fnv1a64(DT_FNV_INIT, core, strlen(core)));
    if (!tr->metrics) return;
    const char *faster = dt_runtime_faster_core();
    char core_text[128];
    if (!one_core)
        snprintf(core_text, sizeof core_text, "%s on rank 0, another kernel on other ranks", core);
    else if (faster)
        snprintf(core_text, sizeof core_text, "%s%s; this CPU also runs the faster %s", core,
                 getenv("OPENBLAS_CORETYPE") ? " from OPENBLAS_CORETYPE" : "", faster);
    else
        snprintf(core_text, sizeof core_text, "%s", core);
    const dt_config *c = &tr->cfg;
    char layout[LAYOUT_TEXT_MAX], exchange[320];
    dt_model_describe(tr->model, layout, sizeof layout);
    dt_exchange_describe(tr->exchange, exchange, sizeof exchange);
    const size_t share = tr->opt.n, n = dt_model_param_count(tr->model); /* as allocated */
    if (share < n && tr->opt.slots > 0) {
        const size_t used = strlen(exchange);
        snprintf(exchange + used, sizeof exchange - used,
                 "; optimizer state for this rank's share (rank 0: %zu of %zu parameters)",
                 share, n);
    }
    if (tr->balance) {
        const size_t used = strlen(exchange);
        snprintf(exchange + used, sizeof exchange - used,
                 "; shards sized to each rank's measured speed");
    }
    dt_run_facts f = {
        .name = c->run.name,
        .world = tr->comm->world,
        .nodes = tr->comm->nodes,
        .threads = tr->threads,
        .blas_core = core_text,
        .reexecuted = dt_runtime_reexecuted(),
        .n_params = dt_model_param_count(tr->model),
        .layers = layout,
        .exchange = exchange,
        .train_samples = tr->data.train.n,
        .test_samples = tr->data.test.n,
        .total_steps = tr->total_steps,
        .global_batch = c->train.global_batch,
        .updates_per_epoch = tr->upe,
        .optimizer = dt_optimizer_str(c->optimizer.hp.name),
        .schedule = dt_sched_str(c->scheduler.sched.name),
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
        .has_average = tr->avg != NULL,
        .avg_test_accuracy = res->avg_test_accuracy,
        .avg_test_loss = res->avg_test_loss,
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
        .mpi_library = dt_comm_mpi_library(),
        .loop_allocations = res->loop_allocations,
    };
    dt_status st = dt_metrics_write_summary(tr->metrics, &s, err);
    if (st == DT_OK) dt_metrics_finish(tr->metrics, &s);
    return st;
}

/* out_dir/model.safetensors, before the summary: a run whose summary.json
 * exists has exported its weights. */
static dt_status export_at_end(trainer *tr, long step, dt_error *err)
{
    dt_path path;
    dt_status st = DT_OK;
    /* sharded, each rank holds its own pieces of the average: all of it to
     * every rank (a collective) before rank 0 writes it */
    if (train_averaged_params(tr)) dt_exchange_gather(tr->exchange, tr->avg);
    if (tr->comm->rank == 0) {
        st = dt_path_join(&path, tr->cfg.run.out_dir, "model.safetensors", err);
        if (st == DT_OK) st = train_write_weights(tr, path.s, step, err);
        if (st == DT_OK && tr->metrics) dt_metrics_note(tr->metrics, "weights: %s", path.s);
    }
    return agree(tr, st, err);
}

/* The path --export or --evaluate writes: --output, else out_dir/name. */
static dt_status output_path(const trainer *tr, const dt_run_options *opt, const char *name,
                             dt_path *out, dt_error *err)
{
    if (opt->output) return dt_path_set(out, opt->output, err);
    return dt_path_join(out, tr->cfg.run.out_dir, name, err);
}

/* --export: a checkpoint's weights as safetensors, without data. */
static dt_status run_export(trainer *tr, const dt_run_options *opt, dt_error *err)
{
    dt_status st = train_build_weights_only(tr, err);
    if ((st = agree(tr, st, err))) return st;
    weights_source src;
    st = train_load_weights(tr, opt->export_from, &src, err);
    if ((st = agree(tr, st, err))) return st;
    dt_path out = {.s = ""};
    if (tr->comm->rank == 0) {
        st = output_path(tr, opt, "model.safetensors", &out, err);
        if (st == DT_OK) st = train_make_parent(out.s, err);
        if (st == DT_OK) st = train_write_weights(tr, out.s, src.step, err);
    }
    if ((st = agree(tr, st, err))) return st;
    if (tr->comm->rank == 0) {
        printf("exported %s (%s, step %ld): %zu parameters to %s\n", src.path, src.kind,
               src.step, dt_model_param_count(tr->model), out.s);
    }
    return DT_OK;
}

/* --evaluate: the test set through the given weights. */
static dt_status run_evaluate(trainer *tr, const dt_run_options *opt, dt_error *err)
{
    weights_source src;
    dt_status st = train_load_weights(tr, opt->evaluate, &src, err);
    if ((st = agree(tr, st, err))) return st;
    eval_report r;
    st = train_evaluate_report(tr, &r, err);
    if ((st = agree(tr, st, err))) return st;
    dt_path out = {.s = ""};
    if (tr->comm->rank == 0) {
        st = output_path(tr, opt, "evaluate/summary.json", &out, err);
        if (st == DT_OK) st = train_write_eval_report(tr, &r, &src, out.s, err);
    }
    st = agree(tr, st, err);
    if (st == DT_OK && tr->comm->rank == 0) {
        train_print_eval_report(tr, &r, &src, stdout);
        printf("\nsummary: %s\n", out.s);
    }
    train_eval_report_free(&r);
    return st;
}

/* The timeline of the first run.trace_steps updates (every rank; the clock
 * origin is a collective). */
static dt_status open_trace(trainer *tr, long first_step, dt_error *err)
{
    const dt_config *c = &tr->cfg;
    if (!c->run.trace[0]) return DT_OK;
    size_t per = dt_trace_events_per_update(c->model.n_layers, dt_exchange_buckets(tr->exchange));
    double origin = dt_comm_clock_origin();
    return dt_trace_create((size_t)c->run.trace_steps * per + 64, first_step, c->run.trace_steps,
                           tr->comm->rank, origin, &tr->trace, err);
}

/* Every rank's spans to rank 0, which writes run.trace. */
static dt_status write_trace(trainer *tr, dt_error *err)
{
    if (!tr->trace) return DT_OK;
    const bool root = tr->comm->rank == 0;
    void *mine = NULL, *all = NULL;
    size_t len = 0;
    size_t *lens = root ? dt_calloc((size_t)tr->comm->world, sizeof *lens) : NULL;
    dt_status st = root && !lens ? dt_fail(err, DT_EINTERNAL, "out of memory")
                                 : dt_trace_serialize(tr->trace, &mine, &len, err);
    if (!(st = agree(tr, st, err))) st = dt_comm_gather_bytes(mine, len, 0, &all, lens, err);
    if (!st && root) st = dt_trace_write_json(tr->cfg.run.trace, all, lens, tr->comm->world, err);
    if (!st && root && tr->metrics) dt_metrics_note(tr->metrics, "trace: %s", tr->cfg.run.trace);
    st = agree(tr, st, err);
    dt_free(mine);
    dt_free(all);
    dt_free(lens);
    return st;
}

/* From a checked configuration to a trainer ready to run (or to --check's
 * plan). */
static dt_status prepare(trainer *tr, dt_error *err)
{
    int outputs;
    dt_status st = probe_model(tr, &outputs, err);
    if ((st = agree(tr, st, err))) return st;
    st = train_load_data(tr, outputs, err);
    if ((st = agree(tr, st, err))) return st;
    st = train_resolve_lengths(tr, err);
    if (st == DT_OK) st = train_build(tr, err);
    if ((st = agree(tr, st, err))) return st;
    tr->threads = dt_runtime_pick_threads(tr->cfg.runtime.threads, tr->comm->local_size);
    dt_runtime_set_threads(tr->threads);
    st = train_check_reproducible(tr, err);
    return agree(tr, st, err);
}

dt_status dt_train_run(const dt_comm *comm, const dt_run_options *opt)
{
    static trainer tr; /* large (the config); one run per process */
    memset(&tr, 0, sizeof tr);
    tr.comm = comm;
    dt_error err = {0};
    const bool root = comm->rank == 0;
    long first_step = 1;
    run_result res = {.avg_test_loss = NAN, .avg_test_accuracy = NAN};

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
    if (opt->export_from) {
        st = run_export(&tr, opt, &err);
        goto done;
    }
    if ((st = prepare(&tr, &err))) goto done;
    if (opt->evaluate) {
        st = run_evaluate(&tr, opt, &err);
        goto done;
    }
    /* The first weights from a file (checked by --check too); a resumed
     * run takes them from its checkpoint and never reads the file. */
    if (tr.cfg.model.init_from[0] && !opt->resume) {
        st = train_init_from(&tr, tr.cfg.model.init_from, &err);
        if ((st = agree(&tr, st, &err))) goto done;
    }
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
    st = open_trace(&tr, first_step, &err);
    if ((st = agree(&tr, st, &err))) goto done;
    report_startup(&tr);
    if (tr.metrics && tr.cfg.model.init_from[0] && !opt->resume)
        dt_metrics_note(tr.metrics, "initial weights: %s", tr.cfg.model.init_from);

    double wall0 = dt_comm_time();
    st = train_loop(&tr, first_step, &res, &err);
    if ((st = agree(&tr, st, &err))) goto done;
    report_balance(&tr);
    /* the weights after the last update (a resumed run that had already
     * finished: those of its checkpoint) */
    st = export_at_end(&tr, DT_MAX(tr.total_steps, first_step - 1), &err);
    if (st) goto done;
    st = write_summary(&tr, &res, dt_comm_time() - wall0, &err);
    if ((st = agree(&tr, st, &err))) goto done;
    st = write_trace(&tr, &err);

done:
    dt_trace_free(tr.trace);
    train_free(&tr);
    return st;
}
