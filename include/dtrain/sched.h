/* sched.h - the learning rate lr(k) of tests/reference/SPEC.md, in double.
 *
 * k counts the updates already applied (0 for the first update). All
 * durations here are in updates; the trainer converts *_epochs config keys
 * with the number of updates per epoch before filling dt_sched. */
#ifndef DTRAIN_SCHED_H
#define DTRAIN_SCHED_H

#define DT_MAX_MILESTONES 64

typedef enum {
    DT_SCHED_CONSTANT,
    DT_SCHED_FACTOR,
    DT_SCHED_MULTISTEP,
    DT_SCHED_SQRT,
    DT_SCHED_COSINE,
    DT_SCHED_POLY,
    DT_SCHED_COUNT
} dt_sched_name;

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
} dt_sched;

/* The schedule's name as the config spells it ("constant", "cosine", ...);
 * "?" out of range. */
const char *dt_sched_str(dt_sched_name name);

/* lr(k) for k >= 0. */
double dt_sched_lr(const dt_sched *s, long k);

#endif
