/* config.h - the YAML configuration of a run (schema: the README's configuration reference).
 *
 * dt_config_load parses the YAML file with libyaml, applies the `--set`
 * overrides (each VALUE parsed as YAML), validates every key strictly
 * against the schema and fills a dt_config with every default resolved.
 * Errors name the file, line and column, the key's full path and what was
 * expected, e.g.
 *   configs/x.yaml:12:9: optimizer.lr: expected a float > 0, got "-0.1"
 * and for an override
 *   --set optimizer.lr=-1: optimizer.lr: expected a float > 0, got "-1"
 * The module knows nothing of MPI or training: it reads one file. */
#ifndef DTRAIN_CONFIG_H
#define DTRAIN_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

#include "dtrain/average.h"
#include "dtrain/common.h"
#include "dtrain/exchange.h"
#include "dtrain/nn.h"
#include "dtrain/optim.h"
#include "dtrain/sched.h"

#define DT_NAME_MAX 128

/* A duration that the config may give in updates or in epochs. Epochs are
 * converted by the trainer once the training set size is known
 * (dt_duration_steps). `set` is false when the key was absent. */
typedef struct {
    long value;
    bool in_epochs;
    bool set;
} dt_duration;

typedef struct {
    char source[DT_PATH_MAX]; /* the config file's path as given */

    struct {
        char name[DT_NAME_MAX];
        unsigned long long seed;
        char out_dir[DT_PATH_MAX];
        char trace[DT_PATH_MAX]; /* Chrome trace JSON of the first updates; "" = none */
        long trace_steps;        /* updates traced */
    } run;

    struct {
        char dataset[32]; /* fashion-mnist | mnist | idx */
        char dir[DT_PATH_MAX];
        char train_images[DT_PATH_MAX], train_labels[DT_PATH_MAX];
        char test_images[DT_PATH_MAX], test_labels[DT_PATH_MAX];
        bool normalize, drop_last;
        long train_limit, test_limit; /* 0 = all */
    } data;

    struct {
        int input[3]; /* C, H, W */
        int n_layers;
        dt_layer_spec layers[DT_MAX_LAYERS];
        dt_init_kind init;
        char init_from[DT_PATH_MAX]; /* initial weights (safetensors); "" = init */
    } model;

    struct {
        dt_duration length; /* epochs (default 10) or steps */
        long global_batch;
        long eval_every, log_every;
    } train;

    /* The optimizer's hyper-parameters as optim takes them; lr is the base of
     * the schedule, nonfinite the trainer's policy. */
    struct {
        dt_optim_hparams hp;
        double lr;
        dt_nonfinite_policy nonfinite;
        /* path averaging; the trainer fills average.start from
         * average_start (average_start | average_start_epochs) */
        dt_average_hparams average;
        dt_duration average_start;
    } optimizer;

    /* The schedule as sched takes it, except what needs the number of
     * updates per epoch: the trainer fills sched.base_lr (optimizer.lr),
     * sched.warmup_steps, sched.step_size, sched.max_steps, sched.period,
     * sched.step_size_up and sched.step_size_down from the durations here,
     * and converts sched.milestones, which are in epochs when
     * milestones_in_epochs. */
    struct {
        dt_sched sched;
        dt_duration warmup;       /* warmup_steps | warmup_epochs */
        dt_duration step_size;    /* step_size | step_size_epochs */
        dt_duration max;          /* max_steps | max_epochs; unset = run length */
        bool milestones_in_epochs;
        dt_duration period;         /* cosine_restarts: period | period_epochs */
        dt_duration step_size_up;   /* cyclic: step_size_up | step_size_up_epochs */
        dt_duration step_size_down; /* cyclic: ..._down | ..._down_epochs; unset = up */
    } scheduler;

    struct {
        dt_duration every; /* every_steps | every_epochs (default 1 epoch) */
        long keep;
        char dir[DT_PATH_MAX];
    } checkpoint;

    struct {
        long bucket_kb;
        bool overlap;
        long check_replicas_every;
        long timeout_s; /* collective watchdog; 0 = off */
        dt_update_mode update;
        dt_reduce_algo allreduce;
        dt_reduce_dtype dtype;
        bool reproducible; /* the same bits on any power-of-two world size */
        bool balance;      /* shards sized to each rank's measured speed */
    } comm;

    struct {
        long threads; /* 0 = automatic */
    } runtime;
} dt_config;

/* Load `path`, apply the `n_sets` overrides ("a.b=VALUE" strings, in order),
 * validate, fill *cfg. Returns DT_OK or DT_ECONFIG (message in err; a file
 * that cannot be read is DT_ECONFIG as well). */
dt_status dt_config_load(const char *path, const char *const *sets, int n_sets,
                         dt_config *cfg, dt_error *err);

/* Write the resolved configuration (every key, defaults filled in) as YAML
 * that dt_config_load reads back to an identical dt_config. */
void dt_config_write_yaml(const dt_config *cfg, FILE *out);

/* A duration in updates: value * updates_per_epoch when in epochs. */
long dt_duration_steps(dt_duration d, long updates_per_epoch);

#endif
