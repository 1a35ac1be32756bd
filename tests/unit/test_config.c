/* test_config.c - Check suite for the config module (config.c).
 *
 * Configs are written as files into a temporary folder from strings in
 * this file, so every position in an expected message can be read off the
 * string. Error cases are one table (error_cases) run as a loop test: each
 * row is a YAML text, optional --set strings, and substrings the message
 * must contain. */
#include <check.h>
#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check_main.h"
#include "dtrain/config.h"

static char tmpdir[256];

/* Write `text` to tmpdir/name and return the path (static buffer). */
static const char *write_file(const char *name, const char *text, size_t len)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(text, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

static dt_status load(const char *name, const char *text, const char *const *sets, int n_sets,
                      dt_config *cfg, dt_error *err)
{
    const char *path = write_file(name, text, strlen(text));
    memset(err, 0, sizeof *err);
    return dt_config_load(path, sets, n_sets, cfg, err);
}

static void load_ok(const char *name, const char *text, const char *const *sets, int n_sets,
                    dt_config *cfg)
{
    dt_error err;
    dt_status st = load(name, text, sets, n_sets, cfg, &err);
    ck_assert_msg(st == DT_OK, "%s: expected success, got %d: %s", name, st, err.msg);
}

static void assert_has(const char *msg, const char *const *want)
{
    for (; *want; want++)
        ck_assert_msg(strstr(msg, *want), "message\n  %s\nlacks\n  %s", msg, *want);
}

/* ---- shared pieces of YAML (line numbers matter) ------------------------ */
#define L_RUN "run: {seed: 0}\n"                                      /* line 1 */
#define L_DATA "data: {dir: /tmp/data}\n"                             /* line 2 */
#define L_MODEL "model: {layers: [{dense: 32}, relu, {dense: 10}]}\n" /* line 3 */
#define L_TRAIN "train: {steps: 5, global_batch: 32}\n"               /* line 4 */
#define L_OPT "optimizer:\n  name: momentum\n  lr: 0.05\n"            /* lines 5-7 */
#define BASE L_RUN L_DATA L_MODEL L_TRAIN L_OPT

/* ======================================================================
 * Good configs
 * ====================================================================== */
static const char full_yaml[] = "# a complete config\n"                       /* 1 */
                                "run:\n"                                      /* 2 */
                                "  name: exp1\n"                              /* 3 */
                                "  seed: 42\n"                                /* 4 */
                                "  out_dir: /tmp/out/exp1\n"                  /* 5 */
                                "data:\n"                                     /* 6 */
                                "  dataset: mnist\n"                          /* 7 */
                                "  dir: /data/mnist\n"                        /* 8 */
                                "  normalize: false\n"                        /* 9 */
                                "  drop_last: False\n"                        /* 10 */
                                "  train_limit: 1000\n"                       /* 11 */
                                "  test_images: t10k-images.gz\n"             /* 12 */
                                "model:\n"                                    /* 13 */
                                "  input: [1, 28, 28]\n"                      /* 14 */
                                "  init: xavier\n"                            /* 15 */
                                "  layers:\n"                                 /* 16 */
                                "    - {conv: {out: 6, kernel: 5, pad: 2}}\n" /* 17 */
                                "    - relu\n"                                /* 18 */
                                "    - {maxpool: {size: 3}}\n"                /* 19 */
                                "    - flatten\n"                             /* 20 */
                                "    - {maxpool: {size: 2, stride: 1}}\n"     /* 21 */
                                "    - tanh\n"                                /* 22 */
                                "    - sigmoid\n"                             /* 23 */
                                "    - dense: 10\n"                           /* 24 */
                                "train:\n"                                    /* 25 */
                                "  epochs: 3\n"                               /* 26 */
                                "  global_batch: 64\n"                        /* 27 */
                                "  eval_every: 0\n"                           /* 28 */
                                "  log_every: 10\n"                           /* 29 */
                                "optimizer:\n"                                /* 30 */
                                "  name: adam\n"                              /* 31 */
                                "  lr: 1e-3\n"                                /* 32 */
                                "  beta1: 0.8\n"                              /* 33 */
                                "  eps: 1e-7\n"                               /* 34 */
                                "  weight_decay: 0.0005\n"                    /* 35 */
                                "  clip_grad_norm: 5\n"                       /* 36 */
                                "  nonfinite: skip\n"                         /* 37 */
                                "scheduler:\n"                                /* 38 */
                                "  name: cosine\n"                            /* 39 */
                                "  warmup_steps: 100\n"                       /* 40 */
                                "  warmup_begin_lr: 0.0001\n"                 /* 41 */
                                "  max_epochs: 3\n"                           /* 42 */
                                "  final_lr: 1e-5\n"                          /* 43 */
                                "checkpoint:\n"                               /* 44 */
                                "  every_steps: 500\n"                        /* 45 */
                                "  keep: 2\n"                                 /* 46 */
                                "  dir: /tmp/ckpt\n"                          /* 47 */
                                "comm:\n"                                     /* 48 */
                                "  bucket_kb: 256\n"                          /* 49 */
                                "  overlap: false\n"                          /* 50 */
                                "  check_replicas_every: 0\n"                 /* 51 */
                                "runtime:\n"                                  /* 52 */
                                "  threads: 2\n";                             /* 53 */

START_TEST(test_full_config_values)
{
    dt_config c;
    load_ok("full.yaml", full_yaml, NULL, 0, &c);
    ck_assert_str_eq(c.run.name, "exp1");
    ck_assert_uint_eq(c.run.seed, 42);
    ck_assert_str_eq(c.run.out_dir, "/tmp/out/exp1");
    ck_assert_str_eq(c.data.dataset, "mnist");
    ck_assert_str_eq(c.data.dir, "/data/mnist");
    ck_assert(!c.data.normalize && !c.data.drop_last);
    ck_assert_int_eq(c.data.train_limit, 1000);
    ck_assert_int_eq(c.data.test_limit, 0);
    ck_assert_str_eq(c.data.test_images, "t10k-images.gz");
    ck_assert_str_eq(c.data.train_images, "train-images-idx3-ubyte");
    ck_assert_int_eq(c.model.init, DT_INIT_XAVIER);
    ck_assert_int_eq(c.model.n_layers, 8);
    const dt_layer_spec *l = c.model.layers;
    ck_assert_int_eq(l[0].kind, DT_LAYER_CONV);
    ck_assert_int_eq(l[0].out_channels, 6);
    ck_assert_int_eq(l[0].kernel, 5);
    ck_assert_int_eq(l[0].stride, 1);
    ck_assert_int_eq(l[0].pad, 2);
    ck_assert_int_eq(l[0].line, 17);
    ck_assert_int_eq(l[0].col, 7);
    ck_assert_int_eq(l[1].kind, DT_LAYER_RELU);
    ck_assert_int_eq(l[1].line, 18);
    ck_assert_int_eq(l[2].kind, DT_LAYER_MAXPOOL);
    ck_assert_int_eq(l[2].size, 3);
    ck_assert_int_eq(l[2].stride, 3); /* default: the size */
    ck_assert_int_eq(l[3].kind, DT_LAYER_FLATTEN);
    ck_assert_int_eq(l[4].size, 2);
    ck_assert_int_eq(l[4].stride, 1);
    ck_assert_int_eq(l[5].kind, DT_LAYER_TANH);
    ck_assert_int_eq(l[6].kind, DT_LAYER_SIGMOID);
    ck_assert_int_eq(l[7].kind, DT_LAYER_DENSE);
    ck_assert_int_eq(l[7].units, 10);
    ck_assert_int_eq(l[7].line, 24);
    ck_assert_int_eq(l[7].col, 7);
    ck_assert(c.train.length.in_epochs && c.train.length.set);
    ck_assert_int_eq(c.train.length.value, 3);
    ck_assert_int_eq(c.train.global_batch, 64);
    ck_assert_int_eq(c.train.eval_every, 0);
    ck_assert_int_eq(c.train.log_every, 10);
    ck_assert_int_eq(c.optimizer.hp.name, DT_OPT_ADAM);
    ck_assert_double_eq(c.optimizer.lr, 1e-3);
    ck_assert_double_eq(c.optimizer.hp.beta1, 0.8);
    ck_assert_double_eq(c.optimizer.hp.beta2, 0.999);
    ck_assert_double_eq(c.optimizer.hp.eps, 1e-7);
    ck_assert_double_eq(c.optimizer.hp.weight_decay, 0.0005);
    ck_assert_double_eq(c.optimizer.hp.clip_grad_norm, 5);
    ck_assert_int_eq(c.optimizer.nonfinite, DT_NONFINITE_SKIP);
    ck_assert_int_eq(c.scheduler.sched.name, DT_SCHED_COSINE);
    ck_assert(!c.scheduler.warmup.in_epochs && c.scheduler.warmup.set);
    ck_assert_int_eq(c.scheduler.warmup.value, 100);
    ck_assert_double_eq(c.scheduler.sched.warmup_begin_lr, 0.0001);
    ck_assert(c.scheduler.max.set && c.scheduler.max.in_epochs);
    ck_assert_int_eq(c.scheduler.max.value, 3);
    ck_assert_double_eq(c.scheduler.sched.final_lr, 1e-5);
    ck_assert(c.checkpoint.every.set && !c.checkpoint.every.in_epochs);
    ck_assert_int_eq(c.checkpoint.every.value, 500);
    ck_assert_int_eq(c.checkpoint.keep, 2);
    ck_assert_str_eq(c.checkpoint.dir, "/tmp/ckpt");
    ck_assert_int_eq(c.comm.bucket_kb, 256);
    ck_assert(!c.comm.overlap);
    ck_assert_int_eq(c.comm.check_replicas_every, 0);
    ck_assert_int_eq(c.runtime.threads, 2);
    ck_assert_msg(strstr(c.source, "full.yaml"), "source %s", c.source);
}
END_TEST

START_TEST(test_defaults)
{
    dt_config c;
    load_ok("minimal.cfg.yaml",
            "model: {layers: [{dense: 10}]}\noptimizer: {name: momentum, lr: 0.1}\n", NULL, 0, &c);
    ck_assert_str_eq(c.run.name, "minimal.cfg"); /* only the last extension goes */
    ck_assert_uint_eq(c.run.seed, 0);
    ck_assert_str_eq(c.run.out_dir, "runs/minimal.cfg");
    ck_assert_str_eq(c.data.dataset, "fashion-mnist");
    ck_assert_str_eq(c.data.dir, "/usr/share/datasets/fashion-mnist");
    ck_assert_str_eq(c.data.train_images, "train-images-idx3-ubyte");
    ck_assert_str_eq(c.data.train_labels, "train-labels-idx1-ubyte");
    ck_assert_str_eq(c.data.test_images, "t10k-images-idx3-ubyte");
    ck_assert_str_eq(c.data.test_labels, "t10k-labels-idx1-ubyte");
    ck_assert(c.data.normalize && c.data.drop_last);
    ck_assert_int_eq(c.data.train_limit + c.data.test_limit, 0);
    ck_assert_int_eq(c.model.input[0], 1);
    ck_assert_int_eq(c.model.input[1], 28);
    ck_assert_int_eq(c.model.input[2], 28);
    ck_assert_int_eq(c.model.init, DT_INIT_HE);
    ck_assert(c.train.length.set && c.train.length.in_epochs);
    ck_assert_int_eq(c.train.length.value, 10);
    ck_assert_int_eq(c.train.global_batch, 128);
    ck_assert_int_eq(c.train.eval_every, 1);
    ck_assert_int_eq(c.train.log_every, 50);
    ck_assert_double_eq(c.optimizer.hp.momentum, 0.9);
    ck_assert(!c.optimizer.hp.nesterov);
    ck_assert_double_eq(c.optimizer.hp.weight_decay, 0);
    ck_assert_double_eq(c.optimizer.hp.clip_grad_norm, 0);
    ck_assert_int_eq(c.optimizer.nonfinite, DT_NONFINITE_ABORT);
    ck_assert_int_eq(c.scheduler.sched.name, DT_SCHED_CONSTANT);
    ck_assert(c.scheduler.warmup.set && !c.scheduler.warmup.in_epochs);
    ck_assert_int_eq(c.scheduler.warmup.value, 0);
    ck_assert_double_eq(c.scheduler.sched.warmup_begin_lr, 0);
    ck_assert_double_eq(c.scheduler.sched.factor, 0.1);
    ck_assert(!c.scheduler.step_size.in_epochs);
    ck_assert_int_eq(c.scheduler.step_size.value, 1);
    ck_assert_double_eq(c.scheduler.sched.min_lr, 0);
    ck_assert_int_eq(c.scheduler.sched.n_milestones, 0);
    ck_assert(!c.scheduler.max.set); /* = the run length */
    ck_assert_double_eq(c.scheduler.sched.final_lr, 0);
    ck_assert_double_eq(c.scheduler.sched.power, 1);
    ck_assert(c.checkpoint.every.set && c.checkpoint.every.in_epochs);
    ck_assert_int_eq(c.checkpoint.every.value, 1);
    ck_assert_int_eq(c.checkpoint.keep, 3);
    ck_assert_str_eq(c.checkpoint.dir, "runs/minimal.cfg/checkpoints");
    ck_assert_int_eq(c.comm.bucket_kb, 1024);
    ck_assert(c.comm.overlap);
    ck_assert_int_eq(c.comm.check_replicas_every, 100);
    ck_assert_int_eq(c.comm.timeout_s, 300);
    ck_assert_int_eq(c.runtime.threads, 0);
}
END_TEST

START_TEST(test_derived_paths_follow_given_values)
{
    dt_config c;
    load_ok("named.yaml", BASE "checkpoint: {every_epochs: 0}\n", NULL, 0, &c);
    ck_assert_str_eq(c.run.name, "named");
    static const char *const sets[] = {"run.name=other", "run.out_dir=/x/y"};
    load_ok("named.yaml", BASE, sets, 1, &c);
    ck_assert_str_eq(c.run.out_dir, "runs/other");
    ck_assert_str_eq(c.checkpoint.dir, "runs/other/checkpoints");
    load_ok("named.yaml", BASE, sets, 2, &c);
    ck_assert_str_eq(c.run.out_dir, "/x/y");
    ck_assert_str_eq(c.checkpoint.dir, "/x/y/checkpoints");
}
END_TEST

/* Per-optimizer defaults (tests/reference/SPEC.md). */
START_TEST(test_optimizer_defaults)
{
    static const struct {
        const char *name;
        dt_optimizer_name id;
        double eps, weight_decay, momentum;
    } rows[] = {
        {"sgd", DT_OPT_SGD, -1, 0, 0},
        {"momentum", DT_OPT_MOMENTUM, -1, 0, 0.9},
        {"adagrad", DT_OPT_ADAGRAD, 1e-10, 0, -1},
        {"rmsprop", DT_OPT_RMSPROP, 1e-8, 0, -1},
        {"adadelta", DT_OPT_ADADELTA, 1e-6, 0, -1},
        {"adam", DT_OPT_ADAM, 1e-8, 0, -1},
        {"adamw", DT_OPT_ADAMW, 1e-8, 0.01, -1},
        {"yogi", DT_OPT_YOGI, 1e-3, 0, -1},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char yaml[256];
        snprintf(yaml, sizeof yaml, L_RUN L_DATA L_MODEL L_TRAIN "optimizer: {name: %s, lr: 0.5}\n",
                 rows[i].name);
        dt_config c;
        load_ok("opt.yaml", yaml, NULL, 0, &c);
        ck_assert_int_eq(c.optimizer.hp.name, rows[i].id);
        ck_assert_str_eq(dt_optimizer_str(c.optimizer.hp.name), rows[i].name);
        ck_assert_double_eq(c.optimizer.lr, 0.5);
        if (rows[i].eps > 0) ck_assert_double_eq(c.optimizer.hp.eps, rows[i].eps);
        if (rows[i].momentum >= 0) ck_assert_double_eq(c.optimizer.hp.momentum, rows[i].momentum);
        ck_assert_double_eq(c.optimizer.hp.weight_decay, rows[i].weight_decay);
        ck_assert_double_eq(c.optimizer.hp.beta1, 0.9);
        ck_assert_double_eq(c.optimizer.hp.beta2, 0.999);
        ck_assert_double_eq(c.optimizer.hp.alpha, 0.99);
        ck_assert_double_eq(c.optimizer.hp.rho, 0.9);
    }
    /* adadelta is the one optimizer with a default lr */
    dt_config c;
    load_ok("opt.yaml", L_RUN L_DATA L_MODEL L_TRAIN "optimizer: {name: adadelta, rho: 0.95}\n",
            NULL, 0, &c);
    ck_assert_double_eq(c.optimizer.lr, 1.0);
    ck_assert_double_eq(c.optimizer.hp.rho, 0.95);
}
END_TEST

START_TEST(test_accepted_spellings)
{
    dt_config c;
    /* null sections, True/FALSE, hex and exponent floats, +ints, quoted strings */
    load_ok("spell.yaml",
            L_RUN L_MODEL L_TRAIN L_OPT
            "  nesterov: True\n  momentum: 0x1p-1\n  weight_decay: 1E-4\n"
            "scheduler:\ncomm: {overlap: FALSE, bucket_kb: +64}\n"
            "data: {dir: '/tmp/a b', dataset: \"mnist\"}\n"
            "...\n",
            NULL, 0, &c);
    ck_assert(c.optimizer.hp.nesterov);
    ck_assert_double_eq(c.optimizer.hp.momentum, 0.5);
    ck_assert_double_eq(c.optimizer.hp.weight_decay, 1e-4);
    ck_assert(!c.comm.overlap);
    ck_assert_int_eq(c.comm.bucket_kb, 64);
    ck_assert_str_eq(c.data.dir, "/tmp/a b");
    ck_assert_str_eq(c.data.dataset, "mnist");
    ck_assert_int_eq(c.scheduler.sched.name, DT_SCHED_CONSTANT);
}
END_TEST

START_TEST(test_schedulers)
{
    dt_config c;
    load_ok("s.yaml",
            BASE "scheduler: {name: multistep, milestones_epochs: [2, 5, 7], factor: 0.5}\n", NULL,
            0, &c);
    ck_assert_int_eq(c.scheduler.sched.name, DT_SCHED_MULTISTEP);
    ck_assert_int_eq(c.scheduler.sched.n_milestones, 3);
    ck_assert(c.scheduler.milestones_in_epochs);
    ck_assert_int_eq(c.scheduler.sched.milestones[0], 2);
    ck_assert_int_eq(c.scheduler.sched.milestones[2], 7);
    ck_assert_double_eq(c.scheduler.sched.factor, 0.5);

    load_ok("s.yaml", BASE "scheduler: {name: factor, step_size_epochs: 2, min_lr: 0.001}\n", NULL,
            0, &c);
    ck_assert(c.scheduler.step_size.in_epochs && c.scheduler.step_size.set);
    ck_assert_int_eq(c.scheduler.step_size.value, 2);
    ck_assert_double_eq(c.scheduler.sched.min_lr, 0.001);

    load_ok("s.yaml", BASE "scheduler: {name: poly, power: 2, max_steps: 50, warmup_epochs: 1}\n",
            NULL, 0, &c);
    ck_assert_str_eq(dt_sched_str(c.scheduler.sched.name), "poly");
    ck_assert_double_eq(c.scheduler.sched.power, 2);
    ck_assert(c.scheduler.max.set && !c.scheduler.max.in_epochs);
    ck_assert_int_eq(c.scheduler.max.value, 50);
    ck_assert(c.scheduler.warmup.in_epochs);
    ck_assert_int_eq(c.scheduler.warmup.value, 1);

    load_ok("s.yaml", BASE "scheduler: {name: sqrt, warmup_steps: 10}\n", NULL, 0, &c);
    ck_assert_int_eq(c.scheduler.sched.name, DT_SCHED_SQRT);
}
END_TEST

START_TEST(test_cyclic_schedules)
{
    dt_config c;
    load_ok("s.yaml",
            BASE "scheduler: {name: cosine_restarts, period_epochs: 2, period_mult: 3, "
                 "min_lr: 0.001}\n",
            NULL, 0, &c);
    ck_assert_int_eq(c.scheduler.sched.name, DT_SCHED_COSINE_RESTARTS);
    ck_assert(c.scheduler.period.set && c.scheduler.period.in_epochs);
    ck_assert_int_eq(c.scheduler.period.value, 2);
    ck_assert_int_eq(c.scheduler.sched.period_mult, 3);
    ck_assert_double_eq(c.scheduler.sched.min_lr, 0.001);

    /* one_cycle: torch's defaults */
    load_ok("s.yaml", BASE "scheduler: {name: one_cycle}\n", NULL, 0, &c);
    ck_assert_double_eq(c.scheduler.sched.pct_start, 0.3);
    ck_assert_double_eq(c.scheduler.sched.div_factor, 25);
    ck_assert_double_eq(c.scheduler.sched.final_div_factor, 1e4);
    ck_assert_int_eq(c.scheduler.sched.anneal, DT_ANNEAL_COS);
    ck_assert(!c.scheduler.sched.three_phase);
    ck_assert(!c.scheduler.max.set); /* the run length */
    load_ok("s.yaml",
            BASE "scheduler: {name: one_cycle, anneal_strategy: linear, three_phase: true, "
                 "pct_start: 0.25, max_steps: 100}\n",
            NULL, 0, &c);
    ck_assert_int_eq(c.scheduler.sched.anneal, DT_ANNEAL_LINEAR);
    ck_assert(c.scheduler.sched.three_phase);
    ck_assert_int_eq(c.scheduler.max.value, 100);

    load_ok("s.yaml",
            BASE "scheduler: {name: cyclic, max_lr: 0.5, step_size_up_epochs: 1, "
                 "step_size_down: 30, mode: exp_range, gamma: 0.99}\n",
            NULL, 0, &c);
    ck_assert_double_eq(c.scheduler.sched.max_lr, 0.5);
    ck_assert(c.scheduler.step_size_up.in_epochs && c.scheduler.step_size_up.value == 1);
    ck_assert(!c.scheduler.step_size_down.in_epochs && c.scheduler.step_size_down.value == 30);
    ck_assert_int_eq(c.scheduler.sched.cyclic_mode, DT_CYCLIC_EXP_RANGE);
    ck_assert_double_eq(c.scheduler.sched.gamma, 0.99);
    load_ok("s.yaml", BASE "scheduler: {name: cyclic, max_lr: 0.5}\n", NULL, 0, &c);
    ck_assert(c.scheduler.step_size_up.set && c.scheduler.step_size_up.value == 2000);
    ck_assert(!c.scheduler.step_size_down.set); /* = step_size_up */
    ck_assert_int_eq(c.scheduler.sched.cyclic_mode, DT_CYCLIC_TRIANGULAR);
}
END_TEST

START_TEST(test_average)
{
    dt_config c;
    load_ok("a.yaml", BASE, NULL, 0, &c);
    ck_assert_int_eq(c.optimizer.average.kind, DT_AVERAGE_NONE);
    /* the decay may come before the key it depends on */
    load_ok("a.yaml", BASE "  average_decay: 0.99\n  average: ema\n", NULL, 0, &c);
    ck_assert_int_eq(c.optimizer.average.kind, DT_AVERAGE_EMA);
    ck_assert_double_eq(c.optimizer.average.decay, 0.99);
    ck_assert(c.optimizer.average_start.set && c.optimizer.average_start.value == 0);
    load_ok("a.yaml", BASE "  average: swa\n  average_start_epochs: 7\n", NULL, 0, &c);
    ck_assert_int_eq(c.optimizer.average.kind, DT_AVERAGE_SWA);
    ck_assert(c.optimizer.average_start.in_epochs && c.optimizer.average_start.value == 7);
    static const char *const sets[] = {"optimizer.average=ema", "optimizer.average_start=100"};
    load_ok("a.yaml", BASE "  average: swa\n  average_start_epochs: 7\n", sets, 2, &c);
    ck_assert_int_eq(c.optimizer.average.kind, DT_AVERAGE_EMA);
    ck_assert(!c.optimizer.average_start.in_epochs && c.optimizer.average_start.value == 100);
    ck_assert_double_eq(c.optimizer.average.decay, 0.999);
}
END_TEST

/* ======================================================================
 * Errors: one row per case
 * ====================================================================== */
#define MAX_WANT 4
typedef struct {
    const char *what;
    const char *yaml;
    const char *sets[3];
    const char *want[MAX_WANT];
} error_case;

static const error_case error_cases[] = {
    /* ---- structure ---- */
    {"unknown key",
     BASE "  lrr: 1\n",
     {0},
     {"bad.yaml:8:3: optimizer.lrr: unknown key", "optimizer takes name, lr, momentum, nesterov"}},
    {"unknown section",
     BASE "optimiser: {lr: 1}\n",
     {0},
     {"bad.yaml:8:1: optimiser: unknown section", "allowed: run, data, model, train, optimizer"}},
    {"unknown key in layer",
     L_RUN L_DATA "model: {layers: [{conv: {out: 4, kernel: 3, padding: 1}}]}\n" L_TRAIN L_OPT,
     {0},
     {"bad.yaml:3:45: model.layers[0].conv.padding: unknown key",
      "conv takes out, kernel, stride, pad"}},
    {"section is a list",
     BASE "comm: [1]\n",
     {0},
     {"bad.yaml:8:7: comm: expected a mapping of keys, got a list"}},
    {"top level is a list",
     "- a\n- b\n",
     {0},
     {"bad.yaml:1:1: expected a mapping of sections", "got a list"}},
    {"top level is a word", "# c\nhello\n", {0}, {"bad.yaml:2:1:", "got \"hello\""}},
    {"empty file", "", {0}, {"bad.yaml: the file is empty"}},
    {"only comments", "# nothing here\n\n", {0}, {"bad.yaml: the file is empty"}},
    {"two documents",
     BASE "---\nrun: {seed: 1}\n",
     {0},
     {"bad.yaml:8:1:", "a second YAML document"}},
    /* ---- YAML ---- */
    {"syntax: unterminated flow list",
     BASE "  momentum: [0.9\n",
     {0},
     {"bad.yaml:9:1: YAML syntax error: did not find expected ',' or ']'",
      "flow sequence at line 8 column 13"}},
    {"syntax: tab indent",
     L_RUN L_DATA L_MODEL L_TRAIN "optimizer:\n\tname: sgd\n",
     {0},
     {"bad.yaml:6:1: YAML syntax error: found character that cannot start any token"}},
    {"syntax: bad indentation", BASE "   beta1: 0.9\n", {0}, {"bad.yaml:8:", "YAML syntax error"}},
    {"invalid UTF-8",
     "run: {name: \"a\xff\"}\n",
     {0},
     {"bad.yaml:1:15: YAML syntax error", "UTF-8"}},
    {"duplicate key",
     BASE "  lr: 0.1\n",
     {0},
     {"bad.yaml:8:3: optimizer.lr: duplicate key (first given at line 7 column 3)"}},
    {"duplicate section",
     BASE "run: {seed: 3}\n",
     {0},
     {"bad.yaml:8:1: run: duplicate key (first given at line 1 column 1)"}},
    {"anchor",
     "run: &r {seed: 0}\n" L_DATA L_MODEL L_TRAIN L_OPT,
     {0},
     {"bad.yaml:1:6: YAML anchors (&r) and aliases are not supported"}},
    {"alias",
     BASE "comm: *x\n",
     {0},
     {"bad.yaml:8:7: YAML aliases (*x) and anchors are not supported"}},
    {"alias as key", BASE "  *x : 1\n", {0}, {"bad.yaml:8:3: YAML aliases"}},
    {"tag",
     BASE "  momentum: !!float 0.5\n",
     {0},
     {"bad.yaml:8:13: YAML tags (tag:yaml.org,2002:float)"}},
    {"list as key", BASE "  ? [a]\n  : 1\n", {0}, {"bad.yaml:8:5: a mapping key must be a word"}},
    {"NUL in a value", "run: {name: \"a\\0b\"}\n", {0}, {"bad.yaml:1:13: a NUL character"}},
    {"nesting",
     BASE "comm: [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]\n",
     {0},
     {"bad.yaml:8:22: comm[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]: nesting deeper than 16"}},
    /* ---- types and ranges ---- */
    {"int: word",
     L_RUN L_DATA L_MODEL "train: {steps: abc}\n" L_OPT,
     {0},
     {"bad.yaml:4:16: train.steps: expected an int > 0, got \"abc\""}},
    {"int: fraction",
     L_RUN L_DATA L_MODEL "train: {steps: 1.5}\n" L_OPT,
     {0},
     {"train.steps: expected an int > 0, got \"1.5\""}},
    {"int: overflow",
     L_RUN L_DATA L_MODEL "train: {global_batch: 99999999999999999999}\n" L_OPT,
     {0},
     {"bad.yaml:4:23: train.global_batch: expected an int > 0, got \"99999999999999999999\""}},
    {"int: zero",
     L_RUN L_DATA L_MODEL "train: {log_every: 0}\n" L_OPT,
     {0},
     {"train.log_every: expected an int > 0, got \"0\""}},
    {"int: negative seed",
     "run: {seed: -1}\n" L_DATA L_MODEL L_TRAIN L_OPT,
     {0},
     {"bad.yaml:1:13: run.seed: expected an int >= 0, got \"-1\""}},
    {"int: empty",
     L_RUN L_DATA L_MODEL "train: {steps: }\n" L_OPT,
     {0},
     {"train.steps: expected an int > 0, got \"\""}},
    {"int: a list",
     L_RUN L_DATA L_MODEL "train: {steps: [1]}\n" L_OPT,
     {0},
     {"train.steps: expected an int > 0, got a list"}},
    {"int: quoted",
     L_RUN L_DATA L_MODEL "train: {steps: '5'}\n" L_OPT,
     {0},
     {"train.steps: expected an int > 0, got \"5\" (quoted, so a string)"}},
    {"float: negative lr",
     L_RUN L_DATA L_MODEL L_TRAIN "optimizer:\n  name: sgd\n  lr: -0.1\n",
     {0},
     {"bad.yaml:7:7: optimizer.lr: expected a float > 0, got \"-0.1\""}},
    {"float: zero lr",
     L_RUN L_DATA L_MODEL L_TRAIN "optimizer: {name: sgd, lr: 0}\n",
     {0},
     {"optimizer.lr: expected a float > 0, got \"0\""}},
    {"float: inf",
     L_RUN L_DATA L_MODEL L_TRAIN "optimizer: {name: sgd, lr: 1e999}\n",
     {0},
     {"optimizer.lr: expected a float > 0, got \"1e999\""}},
    {"float: nan",
     L_RUN L_DATA L_MODEL L_TRAIN "optimizer: {name: sgd, lr: nan}\n",
     {0},
     {"optimizer.lr: expected a float > 0, got \"nan\""}},
    {"float: trailing junk",
     L_RUN L_DATA L_MODEL L_TRAIN "optimizer: {name: sgd, lr: 0.1x}\n",
     {0},
     {"optimizer.lr: expected a float > 0, got \"0.1x\""}},
    {"momentum 1",
     BASE "  momentum: 1\n",
     {0},
     {"bad.yaml:8:13: optimizer.momentum: expected a float in [0, 1), got \"1\""}},
    {"beta2 negative",
     L_RUN L_DATA L_MODEL L_TRAIN "optimizer: {name: adam, lr: 1, beta2: -0.5}\n",
     {0},
     {"optimizer.beta2: expected a float in [0, 1), got \"-0.5\""}},
    {"factor above 1",
     BASE "scheduler: {name: factor, factor: 1.5}\n",
     {0},
     {"bad.yaml:8:35: scheduler.factor: expected a float in (0, 1], got \"1.5\""}},
    {"weight decay negative",
     BASE "  weight_decay: -1\n",
     {0},
     {"optimizer.weight_decay: expected a float >= 0, got \"-1\""}},
    {"bool",
     "run: {seed: 0}\ndata: {dir: /tmp/data, normalize: yes}\n" L_MODEL L_TRAIN L_OPT,
     {0},
     {"bad.yaml:2:35: data.normalize: expected true or false, got \"yes\""}},
    {"bool quoted",
     "run: {seed: 0}\ndata: {drop_last: 'true'}\n" L_MODEL L_TRAIN L_OPT,
     {0},
     {"data.drop_last: expected true or false, got \"true\" (quoted, so a string)"}},
    {"empty path",
     "run: {seed: 0}\ndata: {dir: \"\"}\n" L_MODEL L_TRAIN L_OPT,
     {0},
     {"bad.yaml:2:13: data.dir: expected a non-empty string, got \"\""}},
    {"null path",
     "run: {out_dir: ~}\n" L_DATA L_MODEL L_TRAIN L_OPT,
     {0},
     {"run.out_dir: expected a non-empty string, got \"~\""}},
    {"path as a list",
     "run: {out_dir: [a]}\n" L_DATA L_MODEL L_TRAIN L_OPT,
     {0},
     {"run.out_dir: expected a non-empty string, got a list"}},
    {"enum: optimizer name",
     L_RUN L_DATA L_MODEL L_TRAIN "optimizer: {name: adamx, lr: 1}\n",
     {0},
     {"bad.yaml:5:19: optimizer.name: expected one of sgd, momentum, adagrad, rmsprop, adadelta, "
      "adam, "
      "adamw, yogi, got \"adamx\""}},
    {"enum: dataset",
     "data: {dataset: cifar}\n" L_MODEL L_TRAIN L_OPT,
     {0},
     {"data.dataset: expected one of fashion-mnist, mnist, idx, got \"cifar\""}},
    {"enum: scheduler",
     BASE "scheduler: {name: linear}\n",
     {0},
     {"scheduler.name: expected one of constant, factor, multistep, sqrt, cosine, poly"}},
    {"enum: init",
     L_RUN L_DATA "model: {init: glorot, layers: [relu]}\n" L_TRAIN L_OPT,
     {0},
     {"model.init: expected one of he, xavier, got \"glorot\""}},
    {"input: two dims",
     L_RUN L_DATA "model: {input: [1, 28], layers: [relu]}\n" L_TRAIN L_OPT,
     {0},
     {"bad.yaml:3:16: model.input: expected [C, H, W], three ints > 0, got a list"}},
    {"input: zero",
     L_RUN L_DATA "model: {input: [1, 0, 28], layers: [relu]}\n" L_TRAIN L_OPT,
     {0},
     {"bad.yaml:3:20: model.input[1]: expected an int > 0, got \"0\""}},
    {"name too long",
     "run: {name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}"
     "\n" L_DATA L_MODEL L_TRAIN L_OPT,
     {0},
     {"run.name: expected a string of at most 127 bytes"}},
    /* ---- required keys ---- */
    {"missing layers",
     L_RUN L_DATA "model: {init: he}\n" L_TRAIN L_OPT,
     {0},
     {"bad.yaml:3:8: model.layers: required key missing"}},
    {"missing model",
     L_RUN L_DATA L_TRAIN L_OPT,
     {0},
     {"bad.yaml:1:1: model.layers: required key missing"}},
    {"missing optimizer name",
     L_RUN L_DATA L_MODEL L_TRAIN "optimizer:\n  lr: 0.1\n  beta1: 0.9\n",
     {0},
     {"bad.yaml:6:3: optimizer.name: required key missing"}},
    {"missing optimizer",
     L_RUN L_DATA L_MODEL L_TRAIN,
     {0},
     {"bad.yaml:1:1: optimizer.name: required key missing"}},
    {"missing lr",
     L_RUN L_DATA L_MODEL L_TRAIN "optimizer: {name: adam}\n",
     {0},
     {"bad.yaml:5:12: optimizer.lr: required key missing"}},
    {"idx needs all files",
     "data: {dataset: idx, dir: /d, train_images: a, train_labels: b, test_images: c}\n" L_MODEL
         L_TRAIN L_OPT,
     {0},
     {"bad.yaml:1:7: data.test_labels: required key missing"}},
    {"multistep needs milestones",
     BASE "scheduler: {name: multistep}\n",
     {0},
     {"bad.yaml:8:12: scheduler.milestones: required key missing"}},
    {"conv needs kernel",
     L_RUN L_DATA "model: {layers: [{conv: {out: 4}}]}\n" L_TRAIN L_OPT,
     {0},
     {"bad.yaml:3:25: model.layers[0].conv.kernel: required key missing"}},
    /* ---- layers ---- */
    {"empty layers",
     L_RUN L_DATA "model: {layers: []}\n" L_TRAIN L_OPT,
     {0},
     {"bad.yaml:3:17: model.layers: expected a non-empty list of layers, got an empty list"}},
    {"layers not a list",
     L_RUN L_DATA "model: {layers: relu}\n" L_TRAIN L_OPT,
     {0},
     {"model.layers: expected a non-empty list of layers, got \"relu\""}},
    {"unknown layer word",
     L_RUN L_DATA "model: {layers: [{dense: 32}, relux, {dense: 10}]}\n" L_TRAIN L_OPT,
     {0},
     {"bad.yaml:3:31: model.layers[1]: unknown layer \"relux\"",
      "expected relu, sigmoid, tanh, flatten, {dense: N}"}},
    {"unknown layer key",
     L_RUN L_DATA "model: {layers: [{dens: 32}]}\n" L_TRAIN L_OPT,
     {0},
     {"bad.yaml:3:19: model.layers[0]: unknown layer \"dens\""}},
    {"bare dense",
     L_RUN L_DATA "model: {layers: [dense]}\n" L_TRAIN L_OPT,
     {0},
     {"model.layers[0]: unknown layer \"dense\""}},
    {"dense zero",
     L_RUN L_DATA "model: {layers: [{dense: 0}]}\n" L_TRAIN L_OPT,
     {0},
     {"bad.yaml:3:26: model.layers[0].dense: expected an int > 0, got \"0\""}},
    {"dense too big for int",
     L_RUN L_DATA "model: {layers: [{dense: 3000000000}]}\n" L_TRAIN L_OPT,
     {0},
     {"model.layers[0].dense: expected an int > 0, got \"3000000000\" (at most 2147483647)"}},
    {"two layers in one item",
     L_RUN L_DATA "model: {layers: [{dense: 3, relu: 1}]}\n" L_TRAIN L_OPT,
     {0},
     {"bad.yaml:3:18: model.layers[0]: expected one layer like {dense: 64}, got a mapping"}},
    {"maxpool stride 0",
     L_RUN L_DATA "model: {layers: [{maxpool: {stride: 0}}]}\n" L_TRAIN L_OPT,
     {0},
     {"model.layers[0].maxpool.stride: expected an int > 0, got \"0\""}},
    {"conv without parameters",
     L_RUN L_DATA "model: {layers: [relu, {conv: }]}\n" L_TRAIN L_OPT,
     {0},
     {"bad.yaml:3:31: model.layers[1].conv: expected {out: N, kernel: K}, got \"\""}},
    {"word layer as a mapping",
     L_RUN L_DATA "model: {layers: [{relu: 1}]}\n" L_TRAIN L_OPT,
     {0},
     {"bad.yaml:3:19: model.layers[0]: unknown layer \"relu\"; expected relu, sigmoid"}},
    {"conv pad negative",
     L_RUN L_DATA "model: {layers: [{conv: {out: 1, kernel: 3, pad: -1}}]}\n" L_TRAIN L_OPT,
     {0},
     {"model.layers[0].conv.pad: expected an int >= 0, got \"-1\""}},
    /* ---- applies to ---- */
    {"beta1 with sgd",
     L_RUN L_DATA L_MODEL L_TRAIN "optimizer:\n  name: sgd\n  lr: 0.1\n  beta1: 0.9\n",
     {0},
     {"bad.yaml:8:3: optimizer.beta1 does not apply to optimizer 'sgd' (it applies to adam, adamw, "
      "yogi)"}},
    {"eps with momentum",
     BASE "  eps: 1e-8\n",
     {0},
     {"optimizer.eps does not apply to optimizer 'momentum' (it applies to adagrad, rmsprop, "
      "adadelta, "
      "adam, adamw, yogi)"}},
    {"momentum with adam",
     L_RUN L_DATA L_MODEL L_TRAIN "optimizer: {momentum: 0.9, name: adam, lr: 1}\n",
     {0},
     {"optimizer.momentum does not apply to optimizer 'adam' (it applies to sgd, momentum)"}},
    {"rho with rmsprop",
     L_RUN L_DATA L_MODEL L_TRAIN "optimizer: {name: rmsprop, lr: 1, rho: 0.9}\n",
     {0},
     {"optimizer.rho does not apply to optimizer 'rmsprop' (it applies to adadelta)"}},
    {"step_size with cosine",
     BASE "scheduler: {name: cosine, step_size: 3}\n",
     {0},
     {"bad.yaml:8:27: scheduler.step_size does not apply to scheduler 'cosine' (it applies to "
      "factor)"}},
    {"max_steps with constant",
     BASE "scheduler: {max_steps: 10}\n",
     {0},
     {"scheduler.max_steps does not apply to scheduler 'constant' (it applies to cosine, poly, one_cycle)"}},
    {"factor with poly",
     BASE "scheduler: {name: poly, factor: 0.5}\n",
     {0},
     {"scheduler.factor does not apply to scheduler 'poly' (it applies to factor, multistep)"}},
    {"power with cosine",
     BASE "scheduler: {name: cosine, power: 2}\n",
     {0},
     {"scheduler.power does not apply to scheduler 'cosine' (it applies to poly)"}},
    /* ---- cross-key checks ---- */
    {"milestones not increasing",
     BASE "scheduler: {name: multistep, milestones: [10, 20, 20]}\n",
     {0},
     {"bad.yaml:8:51: scheduler.milestones[2]: expected an int > 20 (milestones must increase), "
      "got \"20\""}},
    {"milestone zero",
     BASE "scheduler: {name: multistep, milestones: [0]}\n",
     {0},
     {"scheduler.milestones[0]: expected an int > 0, got \"0\""}},
    {"milestones empty",
     BASE "scheduler: {name: multistep, milestones: []}\n",
     {0},
     {"scheduler.milestones: expected a non-empty list of at most 64 increasing ints > 0"}},
    {"epochs and steps in the file",
     L_RUN L_DATA L_MODEL "train: {epochs: 2, steps: 5}\n" L_OPT,
     {0},
     {"bad.yaml:4:20: train.steps and train.epochs (line 4 column 9) exclude each other"}},
    {"warmup pair in the file",
     BASE "scheduler: {warmup_epochs: 1, warmup_steps: 1}\n",
     {0},
     {"bad.yaml:8:31: scheduler.warmup_steps and scheduler.warmup_epochs (line 8 column 13)"}},
    {"every pair in the file",
     BASE "checkpoint: {every_steps: 1, every_epochs: 1}\n",
     {0},
     {"checkpoint.every_epochs and checkpoint.every_steps (line 8 column 14) exclude each other"}},
    {"pair in file despite --set",
     L_RUN L_DATA L_MODEL "train: {epochs: 2, steps: 5}\n" L_OPT,
     {"train.steps=7"},
     {"bad.yaml:4:20: train.steps and train.epochs (line 4 column 9)"}},
    {"max not above warmup",
     BASE "scheduler: {name: cosine, warmup_steps: 10, max_steps: 10}\n",
     {0},
     {"bad.yaml:8:45: scheduler.max_steps: expected more than scheduler.warmup_steps (10), got "
      "10"}},
    /* ---- --set ---- */
    {"set: bad value",
     BASE,
     {"optimizer.lr=-1"},
     {"--set optimizer.lr=-1: optimizer.lr: expected a float > 0, got \"-1\""}},
    {"set: no =", BASE, {"optimizer.lr"}, {"--set optimizer.lr: expected KEY=VALUE"}},
    {"set: empty key", BASE, {"=3"}, {"--set =3: empty KEY"}},
    {"set: empty part",
     BASE,
     {"optimizer..lr=3"},
     {"--set optimizer..lr=3: KEY has an empty part"}},
    {"set: trailing dot", BASE, {"optimizer.=3"}, {"--set optimizer.=3: KEY has an empty part"}},
    {"set: unknown key",
     BASE,
     {"optimizer.foo=1"},
     {"--set optimizer.foo=1: optimizer.foo: unknown key"}},
    {"set: unknown section", BASE, {"foo.bar=1"}, {"--set foo.bar=1: foo: unknown section"}},
    {"set: through a list",
     BASE,
     {"model.layers.x=1"},
     {"--set model.layers.x=1: model.layers is a list, not a section of keys"}},
    {"set: through a value",
     BASE,
     {"optimizer.lr.x=1"},
     {"--set optimizer.lr.x=1: optimizer.lr is a value, not a section of keys"}},
    {"set: syntax error",
     BASE,
     {"model.layers=[{dense: 64}"},
     {"--set model.layers=[{dense: 64}: YAML syntax error in the value"}},
    {"set: layer error",
     BASE,
     {"model.layers=[relu, foo]"},
     {"--set model.layers=[relu, foo]: model.layers[1]: unknown layer \"foo\""}},
    {"set: does not apply",
     BASE,
     {"optimizer.beta1=0.5"},
     {"--set optimizer.beta1=0.5: optimizer.beta1 does not apply to optimizer 'momentum'"}},
    {"set: empty value",
     BASE,
     {"run.out_dir="},
     {"--set run.out_dir=: run.out_dir: expected a non-empty string, got \"\""}},
    {"set: both of a pair",
     BASE,
     {"train.epochs=2", "train.steps=3"},
     {"--set train.steps=3: train.steps and train.epochs (--set train.epochs=2) exclude each "
      "other"}},
    {"set: both of a pair in one value",
     BASE,
     {"train={epochs: 2, steps: 3}"},
     {"--set train={epochs: 2, steps: 3}: train.steps and train.epochs (--set train={epochs: 2, "
      "steps: 3})"}},
    {"set: duplicate in value",
     BASE,
     {"optimizer={name: sgd, name: adam}"},
     {"--set optimizer={name: sgd, name: adam}: optimizer.name: duplicate key"}},
    {"set: missing lr after replacing the section",
     BASE,
     {"optimizer={name: adam}"},
     {"--set optimizer={name: adam}: optimizer.lr: required key missing"}},
    {"set: alias", BASE, {"optimizer.lr=*a"}, {"--set optimizer.lr=*a: YAML aliases"}},
    /* ---- path averaging and the cyclic schedules ---- */
    {"average: unknown rule",
     BASE "  average: mean\n",
     {0},
     {"bad.yaml:8:12: optimizer.average: expected one of none, ema, swa, got \"mean\""}},
    {"average_decay without ema",
     BASE "  average_decay: 0.9\n",
     {0},
     {"bad.yaml:8:3: optimizer.average_decay applies only with optimizer.average: ema (it is "
      "'none')"}},
    {"average_decay with swa",
     BASE "  average_decay: 0.9\n  average: swa\n",
     {0},
     {"bad.yaml:8:3: optimizer.average_decay applies only with optimizer.average: ema (it is "
      "'swa')"}},
    {"average_start without averaging",
     BASE "  average_start_epochs: 3\n",
     {0},
     {"bad.yaml:8:3: optimizer.average_start_epochs applies only with optimizer.average: ema, "
      "swa"}},
    {"average_decay of 1",
     BASE "  average: ema\n  average_decay: 1\n",
     {0},
     {"bad.yaml:9:18: optimizer.average_decay: expected a float in [0, 1), got \"1\""}},
    {"average_start negative",
     BASE "  average: swa\n  average_start: -1\n",
     {0},
     {"bad.yaml:9:18: optimizer.average_start: expected an int >= 0"}},
    {"average_start in both units",
     BASE "  average: swa\n  average_start: 5\n  average_start_epochs: 1\n",
     {0},
     {"bad.yaml:10:3: optimizer.average_start_epochs and optimizer.average_start (line 9 "
      "column 3) exclude each other"}},
    {"cosine_restarts without period",
     BASE "scheduler: {name: cosine_restarts}\n",
     {0},
     {"bad.yaml:8:12: scheduler.period: required key missing (scheduler 'cosine_restarts'"}},
    {"cosine_restarts period_mult 0",
     BASE "scheduler: {name: cosine_restarts, period: 5, period_mult: 0}\n",
     {0},
     {"bad.yaml:8:60: scheduler.period_mult: expected an int > 0, got \"0\""}},
    {"period with cosine",
     BASE "scheduler: {name: cosine, period: 5}\n",
     {0},
     {"bad.yaml:8:27: scheduler.period does not apply to scheduler 'cosine' (it applies to "
      "cosine_restarts)"}},
    {"cyclic without max_lr",
     BASE "scheduler: {name: cyclic}\n",
     {0},
     {"bad.yaml:8:12: scheduler.max_lr: required key missing (for scheduler 'cyclic')"}},
    {"cyclic bad mode",
     BASE "scheduler: {name: cyclic, max_lr: 1, mode: triangle}\n",
     {0},
     {"scheduler.mode: expected one of triangular, triangular2, exp_range, got \"triangle\""}},
    {"cyclic gamma 0",
     BASE "scheduler: {name: cyclic, max_lr: 1, gamma: 0}\n",
     {0},
     {"scheduler.gamma: expected a float in (0, 1], got \"0\""}},
    {"cyclic step_size_up 0",
     BASE "scheduler: {name: cyclic, max_lr: 1, step_size_up: 0}\n",
     {0},
     {"scheduler.step_size_up: expected an int > 0"}},
    {"one_cycle pct_start 1",
     BASE "scheduler: {name: one_cycle, pct_start: 1}\n",
     {0},
     {"bad.yaml:8:41: scheduler.pct_start: expected a float in [0, 1), got \"1\""}},
    {"one_cycle bad anneal",
     BASE "scheduler: {name: one_cycle, anneal_strategy: cosine}\n",
     {0},
     {"scheduler.anneal_strategy: expected one of cos, linear, got \"cosine\""}},
    {"one_cycle max_steps not above warmup",
     BASE "scheduler: {name: one_cycle, max_steps: 5, warmup_steps: 5}\n",
     {0},
     {"scheduler.max_steps: expected more than scheduler.warmup_steps (5), got 5"}},
    {"final_lr with one_cycle",
     BASE "scheduler: {name: one_cycle, final_lr: 0.1}\n",
     {0},
     {"scheduler.final_lr does not apply to scheduler 'one_cycle' (it applies to cosine, poly)"}},
    {"set: optimizer change leaves a key that no longer applies",
     BASE "  momentum: 0.5\n",
     {"optimizer.name=adam"},
     {"bad.yaml:8:3: optimizer.momentum does not apply to optimizer 'adam'"}},
};

START_TEST(test_error_case)
{
    const error_case *c = &error_cases[_i];
    int n_sets = 0;
    while (n_sets < 3 && c->sets[n_sets]) n_sets++;
    dt_config cfg;
    dt_error err;
    dt_status st = load("bad.yaml", c->yaml, c->sets, n_sets, &cfg, &err);
    ck_assert_msg(st == DT_ECONFIG, "case '%s': status %d, message: %s", c->what, st, err.msg);
    ck_assert_int_eq(err.code, DT_ECONFIG);
    ck_assert_msg(!strchr(err.msg, '\n'), "case '%s': message has a newline: %s", c->what, err.msg);
    for (int k = 0; k < MAX_WANT && c->want[k]; k++)
        ck_assert_msg(strstr(err.msg, c->want[k]), "case '%s': message\n  %s\nlacks\n  %s", c->what,
                      err.msg, c->want[k]);
}
END_TEST

START_TEST(test_set_value_message_exact)
{
    static const char *const sets[] = {"optimizer.lr=-1"};
    dt_config c;
    dt_error err;
    ck_assert_int_eq(load("x.yaml", BASE, sets, 1, &c, &err), DT_ECONFIG);
    ck_assert_str_eq(err.msg,
                     "--set optimizer.lr=-1: optimizer.lr: expected a float > 0, got \"-1\"");
    ck_assert_int_eq(load("x.yaml",
                          L_RUN L_DATA L_MODEL L_TRAIN "optimizer:\n  name: sgd\n  lr: -0.1\n",
                          NULL, 0, &c, &err),
                     DT_ECONFIG);
    char want[600];
    snprintf(want, sizeof want, "%s/x.yaml:7:7: optimizer.lr: expected a float > 0, got \"-0.1\"",
             tmpdir);
    ck_assert_str_eq(err.msg, want);
}
END_TEST

START_TEST(test_unreadable_files)
{
    dt_config c;
    dt_error err = {0};
    ck_assert_int_eq(dt_config_load("/nonexistent/dtrain.yaml", NULL, 0, &c, &err), DT_ECONFIG);
    ck_assert_str_eq(err.msg,
                     "cannot read config /nonexistent/dtrain.yaml: No such file or directory");
    ck_assert_int_eq(dt_config_load(tmpdir, NULL, 0, &c, &err), DT_ECONFIG);
    assert_has(err.msg, (const char *const[]){"cannot read config ", "Is a directory", NULL});
}
END_TEST

START_TEST(test_too_large)
{
    size_t n = (1u << 20) + 100;
    char *big = malloc(n);
    ck_assert_ptr_nonnull(big);
    memset(big, '#', n);
    for (size_t i = 80; i < n; i += 80) big[i] = '\n';
    const char *path = write_file("big.yaml", big, n);
    free(big);
    dt_config c;
    dt_error err = {0};
    ck_assert_int_eq(dt_config_load(path, NULL, 0, &c, &err), DT_ECONFIG);
    assert_has(err.msg, (const char *const[]){"big.yaml is larger than 1 MiB", NULL});
}
END_TEST

START_TEST(test_limits_on_lists)
{
    char yaml[2048];
    /* 64 layers load, 65 do not */
    for (int n = 64; n <= 65; n++) {
        size_t o = (size_t)snprintf(yaml, sizeof yaml, L_RUN L_DATA "model:\n  layers:\n");
        for (int i = 0; i < n; i++)
            o += (size_t)snprintf(yaml + o, sizeof yaml - o, "    - relu\n");
        snprintf(yaml + o, sizeof yaml - o, L_TRAIN L_OPT);
        dt_config c;
        dt_error err;
        dt_status st = load("layers.yaml", yaml, NULL, 0, &c, &err);
        if (n == 64) {
            ck_assert_msg(st == DT_OK, "%s", err.msg);
            ck_assert_int_eq(c.model.n_layers, 64);
        } else {
            ck_assert_int_eq(st, DT_ECONFIG);
            assert_has(err.msg,
                       (const char *const[]){
                           "layers.yaml:5:5: model.layers: expected at most 64 layers", NULL});
        }
    }
    /* more items than any list may have */
    size_t o = (size_t)snprintf(yaml, sizeof yaml, BASE "comm: [");
    for (int i = 0; i < 300; i++) o += (size_t)snprintf(yaml + o, sizeof yaml - o, "1,");
    snprintf(yaml + o, sizeof yaml - o, "]\n");
    dt_config c;
    dt_error err;
    ck_assert_int_eq(load("items.yaml", yaml, NULL, 0, &c, &err), DT_ECONFIG);
    assert_has(err.msg, (const char *const[]){"comm: more than 256 items", NULL});
}
END_TEST

/* ======================================================================
 * --set
 * ====================================================================== */
START_TEST(test_set_overrides)
{
    static const char *const sets[] = {
        "optimizer.lr=0.5",
        "optimizer.name=adam",
        "model.layers=[{dense: 64}, relu, {conv: {out: 2, kernel: 3}}, {dense: 10}]",
        "scheduler.name=cosine",
        "scheduler.max_steps=100",
        "run.seed=7",
        "optimizer.lr=0.25", /* later wins */
        "comm={overlap: false}",
    };
    dt_config c;
    load_ok("set.yaml", BASE, sets, (int)(sizeof sets / sizeof sets[0]), &c);
    ck_assert_int_eq(c.optimizer.hp.name, DT_OPT_ADAM);
    ck_assert_double_eq(c.optimizer.lr, 0.25);
    ck_assert_double_eq(c.optimizer.hp.eps, 1e-8);
    ck_assert_int_eq(c.model.n_layers, 4);
    ck_assert_int_eq(c.model.layers[0].units, 64);
    ck_assert_int_eq(c.model.layers[0].line, 0); /* from --set: no position */
    ck_assert_int_eq(c.model.layers[2].kind, DT_LAYER_CONV);
    ck_assert_int_eq(c.model.layers[2].kernel, 3);
    ck_assert_int_eq(c.model.layers[3].units, 10);
    ck_assert_int_eq(c.scheduler.sched.name, DT_SCHED_COSINE);
    ck_assert(c.scheduler.max.set);
    ck_assert_int_eq(c.scheduler.max.value, 100);
    ck_assert_uint_eq(c.run.seed, 7);
    ck_assert(!c.comm.overlap);
    ck_assert_int_eq(c.comm.bucket_kb, 1024);
    ck_assert_int_eq(c.train.length.value, 5); /* untouched file value */
}
END_TEST

START_TEST(test_set_replaces_exclusive_partner)
{
    dt_config c;
    static const char *const epochs[] = {"train.epochs=2"};
    load_ok("pair.yaml", BASE, epochs, 1, &c); /* the file has steps: 5 */
    ck_assert(c.train.length.in_epochs);
    ck_assert_int_eq(c.train.length.value, 2);
    ck_assert_int_eq(c.train.global_batch, 32); /* the rest of the section stays */

    static const char *const steps[] = {"train.steps=9", "checkpoint.every_steps=3",
                                        "scheduler.warmup_epochs=1"};
    load_ok("pair.yaml",
            L_RUN L_DATA L_MODEL "train: {epochs: 4}\n" L_OPT
                                 "checkpoint: {every_epochs: 2}\nscheduler: {warmup_steps: 5}\n",
            steps, 3, &c);
    ck_assert(!c.train.length.in_epochs);
    ck_assert_int_eq(c.train.length.value, 9);
    ck_assert(!c.checkpoint.every.in_epochs);
    ck_assert_int_eq(c.checkpoint.every.value, 3);
    ck_assert(c.scheduler.warmup.in_epochs);
    ck_assert_int_eq(c.scheduler.warmup.value, 1);

    static const char *const ms[] = {"scheduler.milestones=[3, 4]"};
    load_ok("pair.yaml", BASE "scheduler: {name: multistep, milestones_epochs: [1]}\n", ms, 1, &c);
    ck_assert(!c.scheduler.milestones_in_epochs);
    ck_assert_int_eq(c.scheduler.sched.n_milestones, 2);
    ck_assert_int_eq(c.scheduler.sched.milestones[1], 4);

    /* the same key twice on the command line is fine: the last wins */
    static const char *const twice[] = {"train.epochs=2", "train.epochs=3"};
    load_ok("pair.yaml", BASE, twice, 2, &c);
    ck_assert_int_eq(c.train.length.value, 3);
}
END_TEST

START_TEST(test_set_into_null_section_and_new_sections)
{
    dt_config c;
    static const char *const sets[] = {"scheduler.name=sqrt", "runtime.threads=3"};
    load_ok("null.yaml", BASE "scheduler:\n", sets, 2, &c);
    ck_assert_int_eq(c.scheduler.sched.name, DT_SCHED_SQRT);
    ck_assert_int_eq(c.runtime.threads, 3);
    /* a whole config from the command line, into a file with one section */
    static const char *const all[] = {"model={layers: [{dense: 10}]}",
                                      "optimizer={name: yogi, lr: 0.01}"};
    load_ok("null.yaml", "run: {seed: 1}\n", all, 2, &c);
    ck_assert_int_eq(c.optimizer.hp.name, DT_OPT_YOGI);
    ck_assert_double_eq(c.optimizer.hp.eps, 1e-3);
}
END_TEST

/* ======================================================================
 * Round trip: load, write, load again -> the same dt_config
 * ====================================================================== */
static void round_trip(const char *name, const char *yaml, const char *const *sets, int n_sets)
{
    dt_config a, b;
    load_ok(name, yaml, sets, n_sets, &a);
    char path[512];
    snprintf(path, sizeof path, "%s/resolved-%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    dt_config_write_yaml(&a, f);
    ck_assert_int_eq(fclose(f), 0);
    dt_error err = {0};
    dt_status st = dt_config_load(path, NULL, 0, &b, &err);
    ck_assert_msg(st == DT_OK, "%s: the written config does not load: %s", name, err.msg);
    /* what legitimately differs: the source and the layers' positions */
    memset(a.source, 0, sizeof a.source);
    memset(b.source, 0, sizeof b.source);
    for (int i = 0; i < DT_MAX_LAYERS; i++) {
        a.model.layers[i].line = a.model.layers[i].col = 0;
        b.model.layers[i].line = b.model.layers[i].col = 0;
    }
    ck_assert_str_eq(a.run.name, b.run.name);
    ck_assert_str_eq(a.run.out_dir, b.run.out_dir);
    ck_assert_double_eq(a.optimizer.lr, b.optimizer.lr);
    ck_assert_int_eq(a.model.n_layers, b.model.n_layers);
    ck_assert_msg(memcmp(&a, &b, sizeof a) == 0, "%s: round trip changed the config", name);
}

START_TEST(test_round_trip)
{
    round_trip("full.yaml", full_yaml, NULL, 0);
    round_trip("minimal.yaml", BASE, NULL, 0);
    round_trip("multistep.yaml",
               "run: {name: \"we\\\"ird \\\\ name\\t\", out_dir: \"/tmp/a b/\xc3\xbc\\u2028x\"}\n"
               "data: {dataset: idx, dir: /d, train_images: a, train_labels: b, test_images: c,"
               " test_labels: 'd: e'}\n" L_MODEL L_TRAIN
               "optimizer: {name: sgd, lr: 0.1, nesterov: true, momentum: 0.3}\n"
               "scheduler: {name: multistep, milestones_epochs: [1, 2, 30], warmup_epochs: 2,"
               " warmup_begin_lr: 0.1}\n",
               NULL, 0);
    round_trip("factor.yaml",
               BASE "scheduler: {name: factor, step_size_epochs: 3, min_lr: 1e-300, factor: 1}\n"
                    "checkpoint: {every_steps: 0}\n",
               NULL, 0);
    static const char *const sets[] = {
        "optimizer={name: adadelta}",
        "scheduler={name: poly, max_steps: 77, power: 0.3333333333333333}",
        "model.layers=[{conv: {out: 3, kernel: 2, stride: 2}}, {maxpool: {size: 3}}, relu]",
        "model.input=[3, 32, 32]",
    };
    round_trip("poly.yaml", BASE, sets, 4);
    static const char *const rms[] = {
        "optimizer={name: rmsprop, lr: 0.1, alpha: 0.5, eps: 1e-3, weight_decay: 0.1}",
        "optimizer.clip_grad_norm=2.5",
        "scheduler={name: cosine, max_epochs: 3, final_lr: 0.01}",
        "run.seed=9223372036854775807",
    };
    round_trip("rms.yaml", BASE, rms, 4);
    round_trip("ema.yaml",
               BASE "  average: ema\n  average_decay: 0.95\n  average_start_epochs: 2\n"
                    "scheduler: {name: one_cycle, anneal_strategy: linear, three_phase: true, "
                    "max_epochs: 3}\n",
               NULL, 0);
    round_trip("swa.yaml",
               BASE "  average: swa\n  average_start: 30\n"
                    "scheduler: {name: cyclic, max_lr: 0.2, step_size_up_epochs: 2, mode: "
                    "triangular2}\n",
               NULL, 0);
    round_trip("sgdr.yaml",
               BASE "scheduler: {name: cosine_restarts, period: 9, period_mult: 2, min_lr: 0.01, "
                    "warmup_steps: 3}\n",
               NULL, 0);
}
END_TEST

START_TEST(test_write_has_every_key)
{
    dt_config c;
    load_ok("w.yaml", BASE, NULL, 0, &c);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    dt_config_write_yaml(&c, f);
    fclose(f);
    static const char *const keys[] = {
        "run:\n",
        "  name: \"w\"\n",
        "  seed: 0\n",
        "  out_dir: \"runs/w\"\n",
        "  dataset: fashion-mnist\n",
        "  train_images: \"train-images-idx3-ubyte\"\n",
        "  normalize: true\n",
        "  input: [1, 28, 28]\n",
        "  layers:\n    - {dense: 32}\n    - relu\n    - {dense: 10}\n",
        "  steps: 5\n",
        "  global_batch: 32\n",
        "  lr: 0.050000000000000003\n",
        "  momentum: 0.90000000000000002\n",
        "  nesterov: false\n",
        "  weight_decay: 0\n",
        "  nonfinite: abort\n",
        "  name: constant\n",
        "  warmup_steps: 0\n",
        "  every_epochs: 1\n",
        "  keep: 3\n",
        "  dir: \"runs/w/checkpoints\"\n",
        "  bucket_kb: 1024\n",
        "  overlap: true\n",
        "  check_replicas_every: 100\n",
        "  timeout_s: 300\n",
        "  threads: 0\n",
        NULL};
    assert_has(buf, keys);
    /* keys that do not apply to momentum / constant are left out */
    ck_assert_ptr_null(strstr(buf, "beta1"));
    ck_assert_ptr_null(strstr(buf, "  eps:"));
    ck_assert_ptr_null(strstr(buf, "max_"));
    ck_assert_ptr_null(strstr(buf, "epochs: 10"));
    /* added after checkpoints existed: absent at its default, so the
     * config_hash of a run without averaging is what it was */
    ck_assert_ptr_null(strstr(buf, "average"));
    free(buf);
}
END_TEST

/* ======================================================================
 * Small functions
 * ====================================================================== */
START_TEST(test_names_and_durations)
{
    ck_assert_str_eq(dt_optimizer_str(DT_OPT_ADAMW), "adamw");
    ck_assert_str_eq(dt_optimizer_str(DT_OPT_SGD), "sgd");
    ck_assert_str_eq(dt_sched_str(DT_SCHED_MULTISTEP), "multistep");
    ck_assert_str_eq(dt_layer_str(DT_LAYER_MAXPOOL), "maxpool");
    ck_assert_str_eq(dt_layer_str(DT_LAYER_DENSE), "dense");
    ck_assert_str_eq(dt_layer_str(DT_LAYER_KIND_COUNT), "?");
    ck_assert_int_eq(dt_duration_steps((dt_duration){7, false, true}, 100), 7);
    ck_assert_int_eq(dt_duration_steps((dt_duration){3, true, true}, 100), 300);
    ck_assert_int_eq(dt_duration_steps((dt_duration){0, true, true}, 100), 0);
    ck_assert_int_eq(dt_duration_steps((dt_duration){1L << 40, true, true}, 1L << 40), LONG_MAX);
}
END_TEST

/* ======================================================================
 * Robustness: mutated configs never crash or leak (ASan build checks)
 * ====================================================================== */
static unsigned long long lcg(unsigned long long *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

START_TEST(test_mutations_do_not_crash)
{
    static const char alphabet[] = "[]{}:,-&*!|>'\"\t\n#%@` ?0123456789.e~\\";
    size_t base_len = strlen(full_yaml);
    char *buf = malloc(base_len * 2 + 64);
    ck_assert_ptr_nonnull(buf);
    unsigned long long seed = 12345;
    int ok = 0, bad = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, full_yaml, base_len);
        size_t len = base_len;
        int edits = 1 + (int)(lcg(&seed) % 4);
        for (int e = 0; e < edits; e++) {
            size_t pos = lcg(&seed) % len;
            switch (lcg(&seed) % 4) {
            case 0: buf[pos] = alphabet[lcg(&seed) % (sizeof alphabet - 1)]; break;
            case 1: /* insert */
                memmove(buf + pos + 1, buf + pos, len - pos);
                buf[pos] = alphabet[lcg(&seed) % (sizeof alphabet - 1)];
                len++;
                break;
            case 2: {                           /* delete a span */
                size_t n = 1 + lcg(&seed) % 20; /* not inside DT_MIN: it evaluates twice */
                if (n > len - pos) n = len - pos;
                memmove(buf + pos, buf + pos + n, len - pos - n);
                len -= n;
                break;
            }
            default: buf[pos] = (char)(lcg(&seed) & 0xff); break;
            }
            if (len == 0) break;
        }
        const char *path = write_file("mut.yaml", buf, len);
        static const char *const sets[] = {"optimizer.lr=0.5", "train.steps=3"};
        dt_config c;
        dt_error err = {0};
        dt_status st = dt_config_load(path, sets, (int)(it % 3), &c, &err);
        ck_assert_msg(st == DT_OK || st == DT_ECONFIG, "status %d", st);
        if (st) ck_assert_msg(err.msg[0] && !strchr(err.msg, '\n'), "bad message: %s", err.msg);
        st == DT_OK ? ok++ : bad++;
    }
    free(buf);
    ck_assert_int_gt(bad, 0);
    ck_assert_int_gt(ok, 0);
}
END_TEST

/* ======================================================================
 * Runner
 * ====================================================================== */
static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char p[600];
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

int main(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/dtrain-test-config.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_full_config_values);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_derived_paths_follow_given_values);
    tcase_add_test(tc, test_optimizer_defaults);
    tcase_add_test(tc, test_accepted_spellings);
    tcase_add_test(tc, test_schedulers);
    tcase_add_test(tc, test_cyclic_schedules);
    tcase_add_test(tc, test_average);
    tcase_add_loop_test(tc, test_error_case, 0, (int)(sizeof error_cases / sizeof error_cases[0]));
    tcase_add_test(tc, test_set_value_message_exact);
    tcase_add_test(tc, test_unreadable_files);
    tcase_add_test(tc, test_too_large);
    tcase_add_test(tc, test_limits_on_lists);
    tcase_add_test(tc, test_set_overrides);
    tcase_add_test(tc, test_set_replaces_exclusive_partner);
    tcase_add_test(tc, test_set_into_null_section_and_new_sections);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_write_has_every_key);
    tcase_add_test(tc, test_names_and_durations);
    tcase_add_test(tc, test_mutations_do_not_crash);
    suite_add_tcase(s, tc);
    int status = dt_check_run(s);
    remove_tmpdir();
    return status;
}
