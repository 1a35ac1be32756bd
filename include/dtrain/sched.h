/* sched.h - the learning rate lr(k) of tests/reference/SPEC.md, in double.
 *
 * The cyclic schedules (cosine_restarts, one_cycle, cyclic) are torch's
 * CosineAnnealingWarmRestarts, OneCycleLR and CyclicLR stepped once per
 * update (never per epoch), on j = k - warmup_steps like every schedule;
 * their momentum cycling is not supported.
 *
 * k counts the updates already applied (0 for the first update). All
 * durations here are in updates; the trainer converts *_epochs config keys
 * with the number of updates per epoch before filling dt_sched. */
#ifndef DTRAIN_SCHED_H
#define DTRAIN_SCHED_H

#include <stdbool.h>

#define DT_MAX_MILESTONES 64

typedef enum {
    DT_SCHED_CONSTANT,
    DT_SCHED_FACTOR,
    DT_SCHED_MULTISTEP,
    DT_SCHED_SQRT,
    DT_SCHED_COSINE,
    DT_SCHED_POLY,
    DT_SCHED_COSINE_RESTARTS, /* torch CosineAnnealingWarmRestarts (SGDR) */
    DT_SCHED_ONE_CYCLE,       /* torch OneCycleLR */
    DT_SCHED_CYCLIC,          /* torch CyclicLR */
    DT_SCHED_COUNT
} dt_sched_name;

/* cyclic's scale of each cycle's height (torch CyclicLR's mode). */
typedef enum {
    DT_CYCLIC_TRIANGULAR,  /* every cycle the full height */
    DT_CYCLIC_TRIANGULAR2, /* the height halves each cycle */
    DT_CYCLIC_EXP_RANGE,   /* the height times gamma^j */
    DT_CYCLIC_MODE_COUNT
} dt_cyclic_mode;

/* one_cycle's interpolation inside a phase (torch's anneal_strategy). */
typedef enum { DT_ANNEAL_COS, DT_ANNEAL_LINEAR, DT_ANNEAL_COUNT } dt_anneal;

typedef struct {
    dt_sched_name name;
    double base_lr;           /* optimizer.lr */
    long warmup_steps;        /* W */
    double warmup_begin_lr;   /* b */
    double factor;            /* factor, multistep */
    long step_size;           /* factor */
    double min_lr;            /* factor */
    int n_milestones;         /* multistep, in updates after warmup */
    long milestones[DT_MAX_MILESTONES];
    long max_steps;           /* cosine, poly: T, warmup included */
    double final_lr, power;   /* cosine, poly */
    /* cosine_restarts: the first period T_0 (in updates after warmup), each
     * next period period_mult times the last; min_lr is eta_min */
    long period;
    long period_mult;
    /* one_cycle, over max_steps - warmup_steps updates: from base/div_factor
     * up to base (its max_lr) during the first pct_start of them, then down
     * to base/div_factor/final_div_factor (three_phase: back to
     * base/div_factor first, then down) */
    double pct_start, div_factor, final_div_factor;
    dt_anneal anneal;
    bool three_phase;
    /* cyclic: from base (its base_lr) to max_lr over step_size_up updates,
     * back over step_size_down, scaled per mode (gamma: exp_range) */
    double max_lr, gamma;
    long step_size_up, step_size_down;
    dt_cyclic_mode cyclic_mode;
} dt_sched;

/* The schedule's name as the config spells it ("constant", "cosine", ...);
 * "?" out of range. */
const char *dt_sched_str(dt_sched_name name);
/* "triangular", "triangular2", "exp_range"; "cos", "linear"; "?" out of range. */
const char *dt_cyclic_mode_str(dt_cyclic_mode mode);
const char *dt_anneal_str(dt_anneal anneal);

/* lr(k) for k >= 0. */
double dt_sched_lr(const dt_sched *s, long k);

#endif
