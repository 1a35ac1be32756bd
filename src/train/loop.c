/* loop.c - the updates, and what follows each one, in this order:
 *
 *   non-finite policy -> replica check -> progress and metrics
 *   -> stop request (checkpoint, exit 5) -> evaluation -> checkpoint
 *
 * Each is a named step over the update's step_record. Every decision is
 * taken from values that every rank shares (the summed gradient, the step
 * number), so every rank takes the same branch without a collective. */
#include "trainer.h"

/* Throughput and communication share since the last logged update. */
typedef struct {
    double t0, comm;
    long samples;
} log_window;

static dt_status apply_nonfinite_policy(trainer *tr, const step_record *r, run_result *res,
                                        dt_error *err)
{
    if (r->finite) return DT_OK;
    if (tr->cfg.optimizer.nonfinite == DT_NONFINITE_ABORT)
        return dt_fail(err, DT_EDIVERGED,
                       "step %ld: non-finite gradient (NaN or Inf); the run diverged "
                       "(optimizer.nonfinite: abort; lower optimizer.lr or set "
                       "nonfinite: skip)",
                       r->step);
    res->skipped++;
    if (tr->metrics) dt_metrics_skip(tr->metrics, r->step, (int)r->epoch + 1, res->skipped);
    return DT_OK;
}

static dt_status check_replicas(trainer *tr, long step, dt_error *err)
{
    long every = tr->cfg.comm.check_replicas_every;
    if (every <= 0 || step % every != 0) return DT_OK;
    const float *w = dt_model_params(tr->model);
    uint64_t h = dt_fnv1a64(DT_FNV_INIT, w, dt_model_param_count(tr->model) * sizeof *w);
    if (!dt_comm_all_equal_u64(h))
        return dt_fail(err, DT_EINTERNAL,
                       "step %ld: replica check failed: the parameters differ across ranks", step);
    return DT_OK;
}

static void log_progress(trainer *tr, const step_record *r, log_window *win, run_result *res)
{
    win->comm += r->comm_seconds;
    win->samples += r->samples;
    const bool last = r->step == tr->total_steps;
    if (r->step % tr->cfg.train.log_every != 0 && !last && !r->stop) return;
    res->train_loss = r->loss;
    double now = dt_comm_time(), span = now - win->t0;
    if (tr->metrics) {
        dt_train_record rec = {
            .step = r->step,
            .epoch = (int)r->epoch + 1,
            .progress = (double)r->step / (double)tr->upe,
            .total_steps = tr->total_steps,
            .loss = r->loss,
            .lr = r->lr,
            .samples_per_second = span > 0 ? (double)win->samples / span : 0,
            .comm_share = span > 0 ? win->comm / span : 0,
        };
        dt_metrics_train(tr->metrics, &rec);
    }
    *win = (log_window){.t0 = dt_comm_time()};
}

static dt_status stop_if_asked(trainer *tr, const step_record *r, run_result *res,
                               dt_error *err)
{
    if (!r->stop) return DT_OK;
    dt_status st = train_save_checkpoint(tr, r->step, res->skipped, err);
    if (st) return st;
    return dt_fail(err, DT_EPREEMPTED,
                   "stopped by a signal at step %ld of %ld; checkpoint written to %s; "
                   "continue with --resume latest",
                   r->step, tr->total_steps, tr->cfg.checkpoint.dir);
}

/* After the last update of an epoch that is due, and after the last update. */
static void evaluate_if_due(trainer *tr, const step_record *r, log_window *win, run_result *res)
{
    const bool last = r->step == tr->total_steps;
    const long every = tr->cfg.train.eval_every;
    const bool due = every > 0 && r->epoch_end && (r->epoch + 1) % every == 0;
    if (!due && !last) return;
    double t0 = dt_comm_time();
    train_evaluate(tr, &res->test_loss, &res->test_accuracy);
    train_evaluate_average(tr, &res->avg_test_loss, &res->avg_test_accuracy);
    dt_trace_span(tr->trace, "evaluation", "eval", t0, dt_comm_time(), r->step, -1);
    if (tr->metrics) {
        dt_eval_record rec = {
            .step = r->step,
            .epoch = (int)(r->epoch_end ? r->epoch + 1 : r->epoch),
            .progress = (double)r->step / (double)tr->upe,
            .test_loss = res->test_loss,
            .test_accuracy = res->test_accuracy,
            .has_average = tr->avg != NULL,
            .avg_test_loss = res->avg_test_loss,
            .avg_test_accuracy = res->avg_test_accuracy,
        };
        dt_metrics_eval(tr->metrics, &rec);
    }
    win->t0 += dt_comm_time() - t0; /* evaluation is not training */
}

static dt_status checkpoint_if_due(trainer *tr, const step_record *r, log_window *win,
                                   const run_result *res, dt_error *err)
{
    if (!train_checkpoint_due(tr, r->step) && r->step != tr->total_steps) return DT_OK;
    double t0 = dt_comm_time();
    dt_status st = train_save_checkpoint(tr, r->step, res->skipped, err);
    dt_trace_span(tr->trace, "checkpoint", "io", t0, dt_comm_time(), r->step, -1);
    win->t0 += dt_comm_time() - t0;
    return st;
}

static dt_status after_step(trainer *tr, const step_record *r, log_window *win,
                            run_result *res, dt_error *err)
{
    dt_status st = apply_nonfinite_policy(tr, r, res, err);
    if (st == DT_OK) st = check_replicas(tr, r->step, err);
    if (st) return st;
    log_progress(tr, r, win, res);
    if ((st = stop_if_asked(tr, r, res, err))) return st;
    evaluate_if_due(tr, r, win, res);
    return checkpoint_if_due(tr, r, win, res, err);
}

dt_status train_loop(trainer *tr, long first_step, run_result *res, dt_error *err)
{
    log_window win = {.t0 = dt_comm_time()};
    dt_status st = DT_OK;
    const uint64_t allocs_before = dt_alloc_count();
    for (long step = first_step; step <= tr->total_steps && st == DT_OK; step++) {
        dt_comm_set_step(step);
        dt_comm_exit_if_orphaned();
        step_record r;
        const bool new_epoch = (step - 1) % tr->upe == 0 || step == first_step;
        train_step(tr, step, new_epoch, &r);
        res->train_seconds += r.seconds;
        res->samples += (double)r.samples;
        st = after_step(tr, &r, &win, res, err);
    }
    /* Checkpoint writes (every epoch at most) allocate their I/O buffers;
     * the per-update path must not allocate at all. */
    res->loop_allocations = dt_alloc_count() - allocs_before - tr->ckpt_allocs;
    if (st == DT_OK && first_step > tr->total_steps) { /* resumed a finished run: evaluate only */
        train_evaluate(tr, &res->test_loss, &res->test_accuracy);
        train_evaluate_average(tr, &res->avg_test_loss, &res->avg_test_accuracy);
    }
    return st;
}
