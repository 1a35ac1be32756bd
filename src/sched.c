/* sched.c - the learning-rate schedules of tests/reference/SPEC.md as pure functions of k.
 *
 * Linear warmup over the first W updates, then one small function per
 * schedule (table `schedules`, with the schedule's name) of j = k - W. Everything is double: the
 * cosine schedule's 1 + cos(pi*j/L) cancels near its end, and float32
 * formulas miss the reference there by a relative 4e-6.
 *
 * Invalid parameters (step_size < 1, max_steps <= warmup_steps for cosine
 * and poly, too many milestones) are rejected by the config module; here
 * they are broken invariants. */
#include "dtrain/sched.h"

#include <math.h>

#include "dtrain/common.h"

typedef double (*sched_fn)(const dt_sched *s, long j);

static double lr_constant(const dt_sched *s, long j)
{
    (void)j;
    return s->base_lr;
}

static double lr_factor(const dt_sched *s, long j)
{
    DT_CHECK(s->step_size >= 1);
    double lr = s->base_lr * pow(s->factor, (double)(j / s->step_size));
    return lr > s->min_lr ? lr : s->min_lr;
}

static double lr_multistep(const dt_sched *s, long j)
{
    DT_CHECK(s->n_milestones >= 0 && s->n_milestones <= DT_MAX_MILESTONES);
    int passed = 0;
    for (int i = 0; i < s->n_milestones; i++) passed += s->milestones[i] <= j;
    return s->base_lr * pow(s->factor, passed);
}

static double lr_sqrt(const dt_sched *s, long j)
{
    return s->base_lr / sqrt((double)j + 1.0);
}

/* Length of the decay phase of cosine and poly, L = T - W > 0. */
static double decay_len(const dt_sched *s)
{
    DT_CHECK(s->max_steps > s->warmup_steps);
    return (double)(s->max_steps - s->warmup_steps);
}

static double lr_cosine(const dt_sched *s, long j)
{
    double len = decay_len(s);
    if ((double)j > len) return s->final_lr;
    return s->final_lr + (s->base_lr - s->final_lr) * (1.0 + cos(M_PI * (double)j / len)) / 2.0;
}

static double lr_poly(const dt_sched *s, long j)
{
    double len = decay_len(s);
    if ((double)j > len) return s->final_lr;
    return s->final_lr + (s->base_lr - s->final_lr) * pow(1.0 - (double)j / len, s->power);
}

static const struct {
    const char *name; /* SPEC's scheduler.name */
    sched_fn lr;
} schedules[DT_SCHED_COUNT] = {
    [DT_SCHED_CONSTANT] = {"constant", lr_constant}, [DT_SCHED_FACTOR] = {"factor", lr_factor},
    [DT_SCHED_MULTISTEP] = {"multistep", lr_multistep}, [DT_SCHED_SQRT] = {"sqrt", lr_sqrt},
    [DT_SCHED_COSINE] = {"cosine", lr_cosine},       [DT_SCHED_POLY] = {"poly", lr_poly},
};

const char *dt_sched_str(dt_sched_name name)
{
    return (unsigned)name < DT_SCHED_COUNT ? schedules[name].name : "?";
}

double dt_sched_lr(const dt_sched *s, long k)
{
    if ((unsigned)s->name >= DT_SCHED_COUNT) DT_BUG("schedule name %d out of range", (int)s->name);
    DT_CHECK(k >= 0 && s->warmup_steps >= 0);
    long w = s->warmup_steps;
    if (k < w)
        return s->warmup_begin_lr + (s->base_lr - s->warmup_begin_lr) * (double)k / (double)w;
    return schedules[s->name].lr(s, k - w);
}
