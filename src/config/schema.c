/* schema.c - every key of a dtrain config, one row each.
 *
 * A row says the key's type, range, default, where its value is stored
 * (an offset into dt_config, or into dt_layer_spec for layer parameters)
 * and, in the optimizer and scheduler sections, which names it applies to.
 * The engine (fields.c) parses, defaults and checks a row, and write.c
 * writes it back, so adding a key is adding a row. The names of
 * optimizers, schedules and layer kinds are their modules' (optim, sched,
 * nn); the README documents the keys. */
#include <math.h>

#include "config_internal.h"

/* Enums are stored through an int lvalue (allowed: the enum's compatible
 * type is int or unsigned int when it has the size of an int). */
_Static_assert(sizeof(dt_optimizer_name) == sizeof(int) && sizeof(dt_sched_name) == sizeof(int) &&
                   sizeof(dt_init_kind) == sizeof(int) &&
                   sizeof(dt_nonfinite_policy) == sizeof(int) &&
                   sizeof(dt_update_mode) == sizeof(int) && sizeof(dt_reduce_algo) == sizeof(int) &&
                   sizeof(dt_reduce_dtype) == sizeof(int) &&
                   sizeof(dt_average_kind) == sizeof(int) &&
                   sizeof(dt_cyclic_mode) == sizeof(int) && sizeof(dt_anneal) == sizeof(int),
               "enums are stored as int");

/* ---- the names of the enum keys ----------------------------------------- */
static const char *optimizer_name(int v) { return dt_optimizer_str((dt_optimizer_name)v); }
static const char *sched_name(int v) { return dt_sched_str((dt_sched_name)v); }
static const name_list optimizer_names = {DT_OPT_COUNT, optimizer_name};
static const name_list sched_names = {DT_SCHED_COUNT, sched_name};
static const char *update_name(int v) { return dt_update_mode_name((dt_update_mode)v); }
static const char *allreduce_name(int v) { return dt_reduce_algo_name((dt_reduce_algo)v); }
static const char *dtype_name(int v) { return dt_reduce_dtype_name((dt_reduce_dtype)v); }
static const char *average_name(int v) { return dt_average_str((dt_average_kind)v); }
static const char *cyclic_mode_name(int v) { return dt_cyclic_mode_str((dt_cyclic_mode)v); }
static const char *anneal_name(int v) { return dt_anneal_str((dt_anneal)v); }
static const name_list average_names = {DT_AVERAGE_COUNT, average_name};
static const name_list cyclic_mode_names = {DT_CYCLIC_MODE_COUNT, cyclic_mode_name};
static const name_list anneal_names = {DT_ANNEAL_COUNT, anneal_name};
static const name_list update_names = {DT_UPDATE_MODE_COUNT, update_name};
static const name_list allreduce_names = {DT_REDUCE_ALGO_COUNT, allreduce_name};
static const name_list dtype_names = {DT_REDUCE_DTYPE_COUNT, dtype_name};

/* The config's own enums: no module owns these words. */
static const char *const dataset_words[] = {"fashion-mnist", "mnist", "idx"};
static const char *const init_words[] = {[DT_INIT_HE] = "he", [DT_INIT_XAVIER] = "xavier"};
static const char *const nonfinite_words[] = {[DT_NONFINITE_ABORT] = "abort",
                                              [DT_NONFINITE_SKIP] = "skip"};
static const char *dataset_name(int v) { return dataset_words[v]; }
static const char *init_name(int v) { return init_words[v]; }
static const char *nonfinite_name(int v) { return nonfinite_words[v]; }
static const name_list dataset_names = {(int)DT_ARRAY_LEN(dataset_words), dataset_name};
static const name_list init_names = {(int)DT_ARRAY_LEN(init_words), init_name};
static const name_list nonfinite_names = {(int)DT_ARRAY_LEN(nonfinite_words), nonfinite_name};

/* Per-optimizer defaults (tests/reference/SPEC.md). Entries for optimizers a key does not
 * apply to are never used but keep the config deterministic. */
static const double lr_def[DT_OPT_COUNT] = {
    [DT_OPT_SGD] = NAN,     [DT_OPT_MOMENTUM] = NAN, [DT_OPT_ADAGRAD] = NAN,
    [DT_OPT_RMSPROP] = NAN, [DT_OPT_ADADELTA] = 1.0, [DT_OPT_ADAM] = NAN,
    [DT_OPT_ADAMW] = NAN,   [DT_OPT_YOGI] = NAN};
static const double momentum_def[DT_OPT_COUNT] = {
    [DT_OPT_SGD] = 0.0,     [DT_OPT_MOMENTUM] = 0.9, [DT_OPT_ADAGRAD] = 0.9,
    [DT_OPT_RMSPROP] = 0.9, [DT_OPT_ADADELTA] = 0.9, [DT_OPT_ADAM] = 0.9,
    [DT_OPT_ADAMW] = 0.9,   [DT_OPT_YOGI] = 0.9};
static const double eps_def[DT_OPT_COUNT] = {
    [DT_OPT_SGD] = 1e-8,     [DT_OPT_MOMENTUM] = 1e-8, [DT_OPT_ADAGRAD] = 1e-10,
    [DT_OPT_RMSPROP] = 1e-8, [DT_OPT_ADADELTA] = 1e-6, [DT_OPT_ADAM] = 1e-8,
    [DT_OPT_ADAMW] = 1e-8,   [DT_OPT_YOGI] = 1e-3};
static const double weight_decay_def[DT_OPT_COUNT] = {[DT_OPT_ADAMW] = 0.01};

static const int input_def[3] = {1, 28, 28}; /* Fashion-MNIST: 1 channel of 28x28 */

/* The tables read best as one row per key. */
/* clang-format off */
#define OFF(member) offsetof(dt_config, member)
#define SIZE(member) sizeof(((dt_config *)0)->member)
#define OPT(x) (1u << DT_OPT_##x)
#define SCH(x) (1u << DT_SCHED_##x)
#define AVG(x) (1u << DT_AVERAGE_##x)

#define INT_ROW(k, r, member, w, d) \
    {.key = k, .type = F_INT, .range = r, .off = OFF(member), .width = w, .def = d}
#define FLOAT_ROW(k, r, member, app, d) \
    {.key = k, .type = F_FLOAT, .range = r, .off = OFF(member), .applies = app, .def = d}
#define BOOL_ROW(k, member, app, d) \
    {.key = k, .type = F_BOOL, .off = OFF(member), .applies = app, .def = d}
#define STR_ROW(k, member, d) \
    {.key = k, .type = F_STR, .off = OFF(member), .capacity = SIZE(member), .def = NAN, \
     .def_str = d}
#define DUR_ROW(k, r, member, u, app, d) \
    {.key = k, .type = F_DUR, .range = r, .off = OFF(member), .unit = u, .applies = app, .def = d}

static const field run_fields[] = {
    STR_ROW("name", run.name, NULL), /* default: the config file's base name */
    INT_ROW("seed", R_GE0, run.seed, W_ULL, 0),
    STR_ROW("out_dir", run.out_dir, NULL), /* default: runs/<name> */
    STR_ROW("trace", run.trace, ""),
    INT_ROW("trace_steps", R_GT0, run.trace_steps, W_LONG, 200),
};

static const field data_fields[] = {
    {.key = "dataset", .type = F_ENUM, .off = OFF(data.dataset),
     .capacity = SIZE(data.dataset), .def = 0, .names = &dataset_names},
    STR_ROW("dir", data.dir, "/usr/share/datasets/fashion-mnist"),
    STR_ROW("train_images", data.train_images, "train-images-idx3-ubyte"),
    STR_ROW("train_labels", data.train_labels, "train-labels-idx1-ubyte"),
    STR_ROW("test_images", data.test_images, "t10k-images-idx3-ubyte"),
    STR_ROW("test_labels", data.test_labels, "t10k-labels-idx1-ubyte"),
    BOOL_ROW("normalize", data.normalize, 0, 1),
    BOOL_ROW("drop_last", data.drop_last, 0, 1),
    INT_ROW("train_limit", R_GE0, data.train_limit, W_LONG, 0),
    INT_ROW("test_limit", R_GE0, data.test_limit, W_LONG, 0),
};

static const field model_fields[] = {
    {.key = "input", .type = F_INTS, .range = R_GT0, .off = OFF(model.input), .count = 3,
     .def = NAN, .def_ints = input_def, .what = "[C, H, W], three ints > 0"},
    {.key = "layers", .type = F_CUSTOM, .required = true, .def = NAN, .custom = &cfg_layers_ops},
    {.key = "init", .type = F_ENUM, .off = OFF(model.init), .def = DT_INIT_HE,
     .names = &init_names},
    STR_ROW("init_from", model.init_from, ""), /* a safetensors file; "" = model.init */
};

static const field train_fields[] = {
    DUR_ROW("epochs", R_GT0, train.length, U_EPOCHS, 0, 10),
    DUR_ROW("steps", R_GT0, train.length, U_STEPS, 0, NAN),
    INT_ROW("global_batch", R_GT0, train.global_batch, W_LONG, 128),
    INT_ROW("eval_every", R_GE0, train.eval_every, W_LONG, 1),
    INT_ROW("log_every", R_GT0, train.log_every, W_LONG, 50),
};

#define MOMENTUM_OPTS (OPT(SGD) | OPT(MOMENTUM))
#define ADAM_OPTS (OPT(ADAM) | OPT(ADAMW) | OPT(YOGI))
static const field optimizer_fields[] = {
    {.key = "name", .type = F_ENUM, .off = OFF(optimizer.hp.name), .required = true, .def = NAN,
     .names = &optimizer_names},
    {.key = "lr", .type = F_FLOAT, .range = R_GT0, .off = OFF(optimizer.lr), .def_opt = lr_def},
    {.key = "momentum", .type = F_FLOAT, .range = R_UNIT, .off = OFF(optimizer.hp.momentum),
     .applies = MOMENTUM_OPTS, .def_opt = momentum_def},
    BOOL_ROW("nesterov", optimizer.hp.nesterov, MOMENTUM_OPTS, 0),
    FLOAT_ROW("beta1", R_UNIT, optimizer.hp.beta1, ADAM_OPTS, 0.9),
    FLOAT_ROW("beta2", R_UNIT, optimizer.hp.beta2, ADAM_OPTS, 0.999),
    FLOAT_ROW("alpha", R_UNIT, optimizer.hp.alpha, OPT(RMSPROP), 0.99),
    FLOAT_ROW("rho", R_UNIT, optimizer.hp.rho, OPT(ADADELTA), 0.9),
    {.key = "eps", .type = F_FLOAT, .range = R_GT0, .off = OFF(optimizer.hp.eps),
     .applies = OPT(ADAGRAD) | OPT(RMSPROP) | OPT(ADADELTA) | ADAM_OPTS, .def_opt = eps_def},
    {.key = "weight_decay", .type = F_FLOAT, .range = R_GE0,
     .off = OFF(optimizer.hp.weight_decay), .def_opt = weight_decay_def},
    FLOAT_ROW("clip_grad_norm", R_GE0, optimizer.hp.clip_grad_norm, 0, 0),
    {.key = "nonfinite", .type = F_ENUM, .off = OFF(optimizer.nonfinite),
     .def = DT_NONFINITE_ABORT, .names = &nonfinite_names},
    /* path averaging (added after checkpoints existed: quiet at its default) */
    {.key = "average", .type = F_ENUM, .off = OFF(optimizer.average.kind),
     .def = DT_AVERAGE_NONE, .names = &average_names, .quiet_default = true},
    {.key = "average_decay", .type = F_FLOAT, .range = R_UNIT,
     .off = OFF(optimizer.average.decay), .def = 0.999, .only_with = "average",
     .only_mask = AVG(EMA)},
    {.key = "average_start", .type = F_DUR, .range = R_GE0, .off = OFF(optimizer.average_start),
     .unit = U_STEPS, .def = 0, .only_with = "average", .only_mask = AVG(EMA) | AVG(SWA)},
    {.key = "average_start_epochs", .type = F_DUR, .range = R_GE0,
     .off = OFF(optimizer.average_start), .unit = U_EPOCHS, .def = NAN, .only_with = "average",
     .only_mask = AVG(EMA) | AVG(SWA)},
};

#define MAX_SCHEDS (SCH(COSINE) | SCH(POLY) | SCH(ONE_CYCLE))
static const field scheduler_fields[] = {
    {.key = "name", .type = F_ENUM, .off = OFF(scheduler.sched.name), .def = DT_SCHED_CONSTANT,
     .names = &sched_names},
    DUR_ROW("warmup_steps", R_GE0, scheduler.warmup, U_STEPS, 0, 0),
    DUR_ROW("warmup_epochs", R_GE0, scheduler.warmup, U_EPOCHS, 0, NAN),
    FLOAT_ROW("warmup_begin_lr", R_GE0, scheduler.sched.warmup_begin_lr, 0, 0),
    FLOAT_ROW("factor", R_FRAC, scheduler.sched.factor, SCH(FACTOR) | SCH(MULTISTEP), 0.1),
    DUR_ROW("step_size", R_GT0, scheduler.step_size, U_STEPS, SCH(FACTOR), 1),
    DUR_ROW("step_size_epochs", R_GT0, scheduler.step_size, U_EPOCHS, SCH(FACTOR), NAN),
    FLOAT_ROW("min_lr", R_GE0, scheduler.sched.min_lr, SCH(FACTOR) | SCH(COSINE_RESTARTS), 0),
    {.key = "milestones", .type = F_CUSTOM, .unit = U_STEPS, .applies = SCH(MULTISTEP),
     .def = NAN, .custom = &cfg_milestones_ops},
    {.key = "milestones_epochs", .type = F_CUSTOM, .unit = U_EPOCHS, .applies = SCH(MULTISTEP),
     .def = NAN, .custom = &cfg_milestones_ops},
    DUR_ROW("max_steps", R_GT0, scheduler.max, U_STEPS, MAX_SCHEDS, NAN),
    DUR_ROW("max_epochs", R_GT0, scheduler.max, U_EPOCHS, MAX_SCHEDS, NAN),
    FLOAT_ROW("final_lr", R_GE0, scheduler.sched.final_lr, SCH(COSINE) | SCH(POLY), 0),
    FLOAT_ROW("power", R_GT0, scheduler.sched.power, SCH(POLY), 1),
    /* the cyclic schedules: torch's parameters under torch's names */
    DUR_ROW("period", R_GT0, scheduler.period, U_STEPS, SCH(COSINE_RESTARTS), NAN),
    DUR_ROW("period_epochs", R_GT0, scheduler.period, U_EPOCHS, SCH(COSINE_RESTARTS), NAN),
    {.key = "period_mult", .type = F_INT, .range = R_GT0, .off = OFF(scheduler.sched.period_mult),
     .width = W_LONG, .applies = SCH(COSINE_RESTARTS), .def = 1},
    {.key = "pct_start", .type = F_FLOAT, .range = R_UNIT, .off = OFF(scheduler.sched.pct_start),
     .applies = SCH(ONE_CYCLE), .def = 0.3},
    FLOAT_ROW("div_factor", R_GT0, scheduler.sched.div_factor, SCH(ONE_CYCLE), 25),
    FLOAT_ROW("final_div_factor", R_GT0, scheduler.sched.final_div_factor, SCH(ONE_CYCLE), 1e4),
    {.key = "anneal_strategy", .type = F_ENUM, .off = OFF(scheduler.sched.anneal),
     .applies = SCH(ONE_CYCLE), .def = DT_ANNEAL_COS, .names = &anneal_names},
    BOOL_ROW("three_phase", scheduler.sched.three_phase, SCH(ONE_CYCLE), 0),
    FLOAT_ROW("max_lr", R_GT0, scheduler.sched.max_lr, SCH(CYCLIC), NAN), /* required */
    DUR_ROW("step_size_up", R_GT0, scheduler.step_size_up, U_STEPS, SCH(CYCLIC), 2000),
    DUR_ROW("step_size_up_epochs", R_GT0, scheduler.step_size_up, U_EPOCHS, SCH(CYCLIC), NAN),
    DUR_ROW("step_size_down", R_GT0, scheduler.step_size_down, U_STEPS, SCH(CYCLIC), NAN),
    DUR_ROW("step_size_down_epochs", R_GT0, scheduler.step_size_down, U_EPOCHS, SCH(CYCLIC), NAN),
    {.key = "mode", .type = F_ENUM, .off = OFF(scheduler.sched.cyclic_mode), .applies = SCH(CYCLIC),
     .def = DT_CYCLIC_TRIANGULAR, .names = &cyclic_mode_names},
    FLOAT_ROW("gamma", R_FRAC, scheduler.sched.gamma, SCH(CYCLIC), 1),
};

static const field checkpoint_fields[] = {
    DUR_ROW("every_steps", R_GE0, checkpoint.every, U_STEPS, 0, NAN),
    DUR_ROW("every_epochs", R_GE0, checkpoint.every, U_EPOCHS, 0, 1),
    INT_ROW("keep", R_GT0, checkpoint.keep, W_LONG, 3),
    STR_ROW("dir", checkpoint.dir, NULL), /* default: <out_dir>/checkpoints */
};

static const field comm_fields[] = {
    INT_ROW("bucket_kb", R_GT0, comm.bucket_kb, W_LONG, 1024),
    BOOL_ROW("overlap", comm.overlap, 0, 1),
    INT_ROW("check_replicas_every", R_GE0, comm.check_replicas_every, W_LONG, 100),
    INT_ROW("timeout_s", R_GE0, comm.timeout_s, W_LONG, 300),
    {.key = "update", .type = F_ENUM, .off = OFF(comm.update), .def = DT_UPDATE_REPLICATED,
     .names = &update_names},
    {.key = "allreduce", .type = F_ENUM, .off = OFF(comm.allreduce), .def = DT_REDUCE_AUTO,
     .names = &allreduce_names},
    {.key = "dtype", .type = F_ENUM, .off = OFF(comm.dtype), .def = DT_REDUCE_FLOAT32,
     .names = &dtype_names},
    BOOL_ROW("reproducible", comm.reproducible, 0, 0),
    BOOL_ROW("balance", comm.balance, 0, 0),
};

static const field runtime_fields[] = {
    INT_ROW("threads", R_GE0, runtime.threads, W_LONG, 0),
};

#define SECTION(name, tab, selector) {name, tab, DT_ARRAY_LEN(tab), selector}
const section cfg_sections[] = {
    SECTION("run", run_fields, NULL),
    SECTION("data", data_fields, NULL),
    SECTION("model", model_fields, NULL),
    SECTION("train", train_fields, NULL),
    SECTION("optimizer", optimizer_fields, &optimizer_fields[0]),
    SECTION("scheduler", scheduler_fields, &scheduler_fields[0]),
    SECTION("checkpoint", checkpoint_fields, NULL),
    SECTION("comm", comm_fields, NULL),
    SECTION("runtime", runtime_fields, NULL),
};
const size_t cfg_n_sections = DT_ARRAY_LEN(cfg_sections);

/* Keys that exclude each other: the command line wins over the file. */
const key_pair cfg_pairs[] = {
    {"train", "epochs", "steps"},
    {"scheduler", "warmup_steps", "warmup_epochs"},
    {"scheduler", "step_size", "step_size_epochs"},
    {"scheduler", "milestones", "milestones_epochs"},
    {"scheduler", "max_steps", "max_epochs"},
    {"scheduler", "period", "period_epochs"},
    {"scheduler", "step_size_up", "step_size_up_epochs"},
    {"scheduler", "step_size_down", "step_size_down_epochs"},
    {"optimizer", "average_start", "average_start_epochs"},
    {"checkpoint", "every_steps", "every_epochs"},
};
const size_t cfg_n_pairs = DT_ARRAY_LEN(cfg_pairs);

/* ---- layer parameters, stored in a dt_layer_spec ------------------------ */
#define LOFF(member) offsetof(dt_layer_spec, member)
#define LAYER_INT(k, r, member, d) \
    {.key = k, .type = F_INT, .range = r, .off = LOFF(member), .width = W_INT, .def = d}
static const field conv_fields[] = {
    {.key = "out", .type = F_INT, .range = R_GT0, .off = LOFF(out_channels), .width = W_INT,
     .required = true, .def = NAN},
    {.key = "kernel", .type = F_INT, .range = R_GT0, .off = LOFF(kernel), .width = W_INT,
     .required = true, .def = NAN},
    LAYER_INT("stride", R_GT0, stride, 1),
    LAYER_INT("pad", R_GE0, pad, 0),
};
static const field maxpool_fields[] = {
    LAYER_INT("size", R_GT0, size, 2),
    {.key = "stride", .type = F_INT, .range = R_GT0, .off = LOFF(stride), .width = W_INT,
     .def = NAN, .def_key = "size"},
};
static const field dense_field = LAYER_INT("dense", R_GT0, units, NAN);

/* Kinds without a line are bare words (relu, sigmoid, tanh, flatten). */
const layer_form cfg_layer_forms[DT_LAYER_KIND_COUNT] = {
    [DT_LAYER_DENSE] = {.value = &dense_field},
    [DT_LAYER_CONV] = {.params = conv_fields, .n_params = DT_ARRAY_LEN(conv_fields),
                       .if_null = "{out: N, kernel: K}"},
    [DT_LAYER_MAXPOOL] = {.params = maxpool_fields, .n_params = DT_ARRAY_LEN(maxpool_fields)},
};
/* clang-format on */

const char cfg_layer_help[] =
    "relu, sigmoid, tanh, flatten, {dense: N}, {conv: {out: N, kernel: K, stride: S, pad: P}} "
    "or {maxpool: {size: N, stride: S}}";
