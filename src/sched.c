/* sched.c - the learning-rate schedules of tests/reference/SPEC.md as pure functions of k.
 *
 * Linear warmup over the first W updates, then one small function per
 * schedule (table `schedules`, with the schedule's name) of j = k - W. Everything is double: the
 * cosine schedule's 1 + cos(pi*j/L) cancels near its end, and float32
 * formulas miss the reference there by a relative 4e-6.
 *
 * The cyclic schedules follow torch.optim.lr_scheduler's arithmetic
 * operation for operation (CosineAnnealingWarmRestarts, OneCycleLR,
 * CyclicLR), so that the float64 golden vectors made with torch match to a
 * few ulps; each is stepped once per update. torch's momentum cycling has
 * no counterpart here.
 *
 * Invalid parameters (step_size < 1, max_steps <= warmup_steps for cosine
 * and poly, too many milestones, a one_cycle phase of no length) are
 * rejected by the config module or the trainer; here they are broken
 * invariants. */
#include "dtrain/sched.h"

#include <limits.h>
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

/* SGDR: the position t_cur inside the current period t_i, which is
 * period * period_mult^i for the i-th restart. Integer arithmetic, as torch
 * steps it (T_cur += 1; at T_i: T_cur -= T_i, T_i *= T_mult); a period that
 * would overflow a long never ends. */
static double lr_cosine_restarts(const dt_sched *s, long j)
{
    DT_CHECK(s->period >= 1 && s->period_mult >= 1);
    long t_cur = j, t_i = s->period;
    if (s->period_mult == 1) {
        t_cur = j % t_i;
    } else {
        while (t_cur >= t_i) {
            t_cur -= t_i;
            t_i = t_i > LONG_MAX / s->period_mult ? LONG_MAX : t_i * s->period_mult;
        }
    }
    return s->min_lr +
           (s->base_lr - s->min_lr) * (1 + cos(M_PI * (double)t_cur / (double)t_i)) / 2;
}

/* torch's _annealing_cos and _annealing_linear, as written there. */
static double anneal(dt_anneal how, double start, double end, double pct)
{
    if (how == DT_ANNEAL_LINEAR) return (end - start) * pct + start;
    double cos_out = cos(M_PI * pct) + 1;
    return end + (start - end) / 2.0 * cos_out;
}

/* OneCycleLR over L = max_steps - warmup_steps updates: phases end at the
 * (possibly fractional) steps torch computes; after the last one, the
 * final rate (torch refuses to step that far). */
static double lr_one_cycle(const dt_sched *s, long j)
{
    const double len = decay_len(s);
    const double initial = s->base_lr / s->div_factor;
    const double final = initial / s->final_div_factor;
    if ((double)j > len - 1) return final;
    double ends[3], from[3], to[3];
    int phases;
    if (s->three_phase) {
        phases = 3;
        ends[0] = s->pct_start * len - 1, from[0] = initial, to[0] = s->base_lr;
        ends[1] = 2 * s->pct_start * len - 2, from[1] = s->base_lr, to[1] = initial;
        ends[2] = len - 1, from[2] = initial, to[2] = final;
    } else {
        phases = 2;
        ends[0] = s->pct_start * len - 1, from[0] = initial, to[0] = s->base_lr;
        ends[1] = len - 1, from[1] = s->base_lr, to[1] = final;
    }
    double start = 0;
    for (int i = 0; i < phases; i++) {
        if ((double)j <= ends[i] || i == phases - 1) {
            DT_CHECK(ends[i] > start);
            return anneal(s->anneal, from[i], to[i], ((double)j - start) / (ends[i] - start));
        }
        start = ends[i];
    }
    DT_BUG("one_cycle: no phase for j = %ld", j);
}

/* CyclicLR: base -> max_lr over step_size_up, back over step_size_down;
 * triangular2 halves each cycle's height, exp_range scales by gamma^j. */
static double lr_cyclic(const dt_sched *s, long j)
{
    DT_CHECK(s->step_size_up >= 1 && s->step_size_down >= 1);
    const double up = (double)s->step_size_up, total = up + (double)s->step_size_down;
    const double ratio = up / total;
    const double cycle = floor(1 + (double)j / total);
    const double x = 1. + (double)j / total - cycle;
    const double scale = x <= ratio ? x / ratio : (x - 1) / (ratio - 1);
    const double height = (s->max_lr - s->base_lr) * scale;
    switch (s->cyclic_mode) {
    case DT_CYCLIC_TRIANGULAR: return s->base_lr + height * 1.;
    case DT_CYCLIC_TRIANGULAR2: return s->base_lr + height * (1 / pow(2., cycle - 1));
    case DT_CYCLIC_EXP_RANGE: return s->base_lr + height * pow(s->gamma, (double)j);
    default: DT_BUG("cyclic mode %d out of range", (int)s->cyclic_mode);
    }
}

static const struct {
    const char *name; /* SPEC's scheduler.name */
    sched_fn lr;
} schedules[DT_SCHED_COUNT] = {
    [DT_SCHED_CONSTANT] = {"constant", lr_constant}, [DT_SCHED_FACTOR] = {"factor", lr_factor},
    [DT_SCHED_MULTISTEP] = {"multistep", lr_multistep}, [DT_SCHED_SQRT] = {"sqrt", lr_sqrt},
    [DT_SCHED_COSINE] = {"cosine", lr_cosine},       [DT_SCHED_POLY] = {"poly", lr_poly},
    [DT_SCHED_COSINE_RESTARTS] = {"cosine_restarts", lr_cosine_restarts},
    [DT_SCHED_ONE_CYCLE] = {"one_cycle", lr_one_cycle},
    [DT_SCHED_CYCLIC] = {"cyclic", lr_cyclic},
};

static const char *const cyclic_modes[DT_CYCLIC_MODE_COUNT] = {
    [DT_CYCLIC_TRIANGULAR] = "triangular", [DT_CYCLIC_TRIANGULAR2] = "triangular2",
    [DT_CYCLIC_EXP_RANGE] = "exp_range"};
static const char *const anneals[DT_ANNEAL_COUNT] = {[DT_ANNEAL_COS] = "cos",
                                                      [DT_ANNEAL_LINEAR] = "linear"};

const char *dt_cyclic_mode_str(dt_cyclic_mode mode)
{
    return (unsigned)mode < DT_CYCLIC_MODE_COUNT ? cyclic_modes[mode] : "?";
}

const char *dt_anneal_str(dt_anneal how)
{
    return (unsigned)how < DT_ANNEAL_COUNT ? anneals[how] : "?";
}

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
