/* trainer.h - the state of one run, shared by the files of src/train/
 * (internal; the contract is include/dtrain/train.h).
 *
 *   setup.c       config -> data, lengths, schedule, model, optimizer,
 *                 exchange, checkpoint identity
 *   step.c        one update: batch, forward, backward + gradient exchange,
 *                 optimizer; returns a step record
 *   loop.c        the updates, and what follows each: non-finite policy,
 *                 replica check, logging, stop requests, evaluation,
 *                 checkpoints
 *   checkpoints.c save and resume
 *   weights.c     the weights in and out (safetensors), init_from
 *   evaluate.c    --evaluate's per-class report
 *   run.c         dt_train_run: the order of all of the above, and the
 *                 one verdict every rank agrees on at each stage */
#ifndef DTRAIN_TRAINER_H
#define DTRAIN_TRAINER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "dtrain/average.h"
#include "dtrain/balance.h"
#include "dtrain/checkpoint.h"
#include "dtrain/comm.h"
#include "dtrain/config.h"
#include "dtrain/data.h"
#include "dtrain/exchange.h"
#include "dtrain/metrics.h"
#include "dtrain/nn.h"
#include "dtrain/optim.h"
#include "dtrain/reduce_exact.h"
#include "dtrain/sched.h"
#include "dtrain/trace.h"

/* Evaluation and start-up probes run the model on chunks of this many
 * samples (the model's buffers hold at least this many). */
#define TRAIN_EVAL_CHUNK 256

/* Global quantities of an update that travel with the gradients through
 * the exchange (its tail), summed with them at no extra collective. */
enum {
    TAIL_LOSS_SUM, /* sum of the per-sample losses of this rank's shard */
    TAIL_STOP,     /* 1 if this rank was asked to stop (SIGTERM, SIGUSR1) */
    TAIL_COUNT
};

/* Seconds spent per phase on this rank. */
typedef struct {
    double data, forward, backward, comm, optimizer, eval;
} phase_times;

/* The training and test sets and the batch buffers. */
typedef struct {
    dt_dataset train, test;
    double mean, std; /* normalisation, from the training set */
    uint32_t *perm;   /* the current epoch's permutation (train.n) */
    float *x;         /* inputs of a shard or an evaluation chunk */
    int *y;
} train_data;

typedef struct {
    const dt_comm *comm;
    dt_config cfg;
    train_data data;
    dt_model *model;
    float *grad_arena;  /* [gradients | TAIL_COUNT floats], the model's grads */
    dt_optimizer opt;
    dt_average_hparams average; /* optimizer.average, start in updates */
    float *avg;         /* the averaged copy (NULL when averaging is off); sharded,
                         * only this rank's pieces are current between gathers */
    float *avg_swap;    /* the raw parameters while the average is evaluated */
    bool avg_loaded;    /* --export/--evaluate: a checkpoint's started average is in avg */
    dt_sched sched;
    dt_exchange *exchange; /* the gradient exchange */
    dt_balance *balance;   /* comm.balance on more than one rank; else NULL (even shards) */
    long upe;           /* updates per epoch */
    long total_steps;
    int threads;        /* BLAS threads of this rank */
    dt_metrics *metrics;    /* rank 0 only */
    dt_trace *trace;        /* the timeline; NULL when run.trace is not set */
    dt_ckpt_header ckpt_id; /* what identifies this run's checkpoints */
    /* comm.reproducible: the same bits on every power-of-two world size */
    struct {
        bool on;
        long leaves;          /* of the global batch: its largest power-of-two divisor */
        long leaf_samples;    /* global batch / leaves */
        int depth;            /* log2(leaves) */
        double *piece_sumsq;  /* one per exchange piece: the clipping norm's blocks */
        dt_exact *eval_tree;  /* evaluation: every chunk's sums to every rank */
        long eval_chunks;     /* fixed chunks of TRAIN_EVAL_CHUNK test samples */
        double *chunk_loss, *chunk_correct;
    } repro;
    uint64_t ckpt_allocs;   /* allocations made by checkpoint writes */
    phase_times time;
} trainer;

/* What one update did. */
typedef struct {
    long step;         /* t, from 1 */
    long epoch;        /* 0-based */
    bool epoch_end;    /* the last update of its epoch */
    long samples;      /* b: samples in the global batch */
    double loss;       /* mean loss over the global batch */
    double lr;
    bool finite;       /* false: the gradient had a NaN/Inf, nothing was updated */
    bool stop;         /* some rank was asked to stop */
    double seconds;    /* the whole update */
    double comm_seconds; /* exposed communication */
} step_record;

/* The results a run reports. */
typedef struct {
    double train_loss, test_loss, test_accuracy;
    double avg_test_loss, avg_test_accuracy; /* of the averaged copy; NaN: none yet */
    long skipped;
    double train_seconds;
    double samples; /* training samples consumed */
    uint64_t loop_allocations;
} run_result;

/* setup.c */
dt_status train_load_data(trainer *tr, int n_classes, dt_error *err);
dt_status train_resolve_lengths(trainer *tr, dt_error *err);
dt_status train_build(trainer *tr, dt_error *err);
/* The model (for one sample), the optimizer and the checkpoint identity,
 * without data: enough to read a checkpoint and export its weights. */
dt_status train_build_weights_only(trainer *tr, dt_error *err);
dt_status train_check_reproducible(trainer *tr, dt_error *err);
void train_free(trainer *tr);

/* step.c */
void train_step(trainer *tr, long step, bool new_epoch, step_record *rec);
void train_evaluate(trainer *tr, double *loss, double *accuracy);
/* The averaged copy made whole on every rank (collective) and evaluated;
 * NaN when averaging is off or no update has been averaged yet. */
void train_evaluate_average(trainer *tr, double *loss, double *accuracy);
/* The averaged parameters, for the export at the end of the run: NULL when
 * averaging is off or nothing was averaged yet. Whole on every rank after
 * the final evaluation (train_evaluate_average gathers it). */
const float *train_averaged_params(const trainer *tr);

/* checkpoints.c */
extern volatile sig_atomic_t train_stop_signal; /* the signal that asked for a stop */
void train_install_stop_handlers(void);
dt_status train_checkpoint_identity(const trainer *tr, dt_ckpt_header *h, dt_error *err);
dt_status train_save_checkpoint(trainer *tr, long step, long skipped, dt_error *err);
dt_status train_resume(trainer *tr, const char *what, long *first_step, long *skipped,
                       dt_error *err);
bool train_checkpoint_due(const trainer *tr, long step);

/* loop.c */
dt_status train_loop(trainer *tr, long first_step, run_result *res, dt_error *err);

/* weights.c: the weights in and out in safetensors (tensor "<i>.weight" and
 * "<i>.bias" for model.layers[i]). */
typedef struct {
    char kind[16];               /* "checkpoint" or "safetensors" */
    char path[DT_PATH_MAX + 64]; /* the file the weights came from */
    long step;                   /* the update they were taken after; -1 unknown */
    char config_hash[20];        /* as the source states it ("" unknown) */
} weights_source;
/* The weights every export writes (the end of a run, --export): the
 * average along the path once it has started, else the parameters. */
const float *train_export_params(trainer *tr);
/* Rank 0 writes train_export_params to path atomically, with the step and
 * the config hash as metadata; the other ranks return DT_OK (the caller
 * agrees on the verdict). */
dt_status train_write_weights(trainer *tr, const char *path, long step, dt_error *err);
/* model.init_from: rank 0 reads path strictly (DT_EDATA naming the file and
 * the tensor), every rank agrees and receives the weights. */
dt_status train_init_from(trainer *tr, const char *path, dt_error *err);
/* --evaluate and --export: the weights of `what` into the model (and the
 * optimizer state, from a checkpoint) on every rank, agreed. `what` is
 * "latest" (checkpoint.dir), a folder (a checkpoint.dir, or a run.out_dir
 * with checkpoints/ in it: its newest usable checkpoint), a checkpoint
 * file (by its magic) or a safetensors file. */
dt_status train_load_weights(trainer *tr, const char *what, weights_source *src, dt_error *err);
/* mkdir -p the folder a file is to be written into. */
dt_status train_make_parent(const char *path, dt_error *err);

/* evaluate.c: the test set with per-class counts (--evaluate). */
typedef struct {
    long samples, correct;
    double loss;        /* mean over the test set */
    int classes;        /* the model's outputs */
    long *confusion;    /* [true][predicted], classes x classes */
} eval_report;
dt_status train_evaluate_report(trainer *tr, eval_report *r, dt_error *err);
void train_eval_report_free(eval_report *r);
/* Rank 0: the readable table on out, and the JSON summary written
 * atomically to path. */
void train_print_eval_report(const trainer *tr, const eval_report *r, const weights_source *src,
                             FILE *out);
dt_status train_write_eval_report(const trainer *tr, const eval_report *r,
                                  const weights_source *src, const char *path, dt_error *err);

#endif
