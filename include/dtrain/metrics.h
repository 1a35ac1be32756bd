/* metrics.h - what rank 0 tells the user and the tools.
 *
 * The progress line on stdout (a bar redrawn in place on a terminal, plain
 * lines otherwise, e.g. in Slurm logs), out_dir/metrics.jsonl (one JSON
 * object per logged update and per evaluation, each written whole with one
 * write(2) as it happens, so a killed job keeps its curve) and
 * out_dir/summary.json (the atomic durable write of fs.h: complete or
 * absent). Field names are the contract of the README's "Output" section.
 *
 * No silent failure: the first metrics.jsonl write that fails (disk full,
 * I/O error) is kept as the module's verdict, DT_EINTERNAL with one line
 * "OUT_DIR/metrics.jsonl: cannot write: <strerror>"; the file is cut back to
 * its last complete record and later records are dropped. The record
 * functions return that verdict, dt_metrics_status reports it at any time,
 * and dt_metrics_write_summary returns it instead of writing a summary. */
#ifndef DTRAIN_METRICS_H
#define DTRAIN_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "dtrain/common.h"

typedef struct {
    long step;           /* updates applied or skipped so far (t) */
    int epoch;           /* the epoch this update belongs to, from 1 */
    double progress;     /* epochs done, fractional */
    long total_steps;
    double loss, lr, samples_per_second;
    double comm_share;   /* exposed communication / step time, 0..1 */
} dt_train_record;

typedef struct {
    long step;
    int epoch;           /* epochs completed when evaluated */
    double progress;
    double test_loss, test_accuracy;
    /* the averaged copy's (optimizer.average); written only when has_average
     * (null while no update has been averaged yet) */
    bool has_average;
    double avg_test_loss, avg_test_accuracy;
} dt_eval_record;

typedef struct {
    double test_accuracy, test_loss, train_loss;
    bool has_average; /* avg_test_*: the averaged copy's, as in dt_eval_record */
    double avg_test_accuracy, avg_test_loss;
    long steps, skipped_updates;
    double epochs;
    int world_size, nodes, threads;
    long global_batch;
    double wall_seconds, samples_per_second;
    double flops_per_sample; /* forward + backward, 2 x multiply-adds */
    /* seconds per phase, rank 0's */
    double t_data, t_forward, t_backward, t_comm, t_optimizer, t_eval;
    uint64_t param_checksum;
    uint64_t loop_allocations; /* dt_ allocations inside the training loop (must be 0) */
    const char *blas_core;
    const char *mpi_library; /* dt_comm_mpi_library(); the version and git
                              * commit of version.h are added by metrics */
    const char *name;
} dt_summary;

typedef struct dt_metrics dt_metrics;

/* Open out_dir/metrics.jsonl for writing (truncating, or appending when
 * `append`). progress: where the progress line goes (stdout; NULL for none),
 * redrawn in place as a bar when `bar`, else one line per record. */
dt_status dt_metrics_open(dt_metrics **out, const char *out_dir, bool append, FILE *progress,
                          bool bar, dt_error *err);
dt_status dt_metrics_train(dt_metrics *m, const dt_train_record *r);
dt_status dt_metrics_eval(dt_metrics *m, const dt_eval_record *r);
/* A non-finite gradient skipped under nonfinite: skip. */
dt_status dt_metrics_skip(dt_metrics *m, long step, int epoch, long skipped_total);
/* DT_OK, or the first failed metrics.jsonl write (copied into err). */
dt_status dt_metrics_status(const dt_metrics *m, dt_error *err);
/* A free-form line on the progress stream (start-up facts). */
void dt_metrics_note(dt_metrics *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The end of the run: metrics.jsonl fsync'ed and closed (checked), then
 * summary.json written atomically. Returns the first failure of either. */
dt_status dt_metrics_write_summary(dt_metrics *m, const dt_summary *s, dt_error *err);
void dt_metrics_close(dt_metrics *m);

/* The facts of a run, said once at its start (report.c). */
typedef struct {
    const char *name;
    int world, nodes, threads;
    const char *blas_core;
    bool reexecuted;    /* the BLAS re-exec happened (runtime.h) */
    size_t n_params;
    const char *layers; /* one line per layer */
    const char *exchange; /* how gradients are exchanged (exchange.h) */
    long train_samples, test_samples, total_steps, global_batch, updates_per_epoch;
    const char *optimizer, *schedule, *out_dir;
    double lr;
} dt_run_facts;
void dt_metrics_startup(dt_metrics *m, const dt_run_facts *f);
/* The closing line, after the summary was written. */
void dt_metrics_finish(dt_metrics *m, const dt_summary *s);

/* s as a JSON string literal, quoted and escaped (summary files). */
void dt_metrics_json_string(FILE *f, const char *s);

#endif
