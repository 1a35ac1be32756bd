/* test_sched.c - Check suite for the sched module.
 *
 * Each schedule at hand-picked k where tests/reference/SPEC.md's formula has a value that
 * can be written down (a half-way cosine, a quarter of a squared poly, ...),
 * with and without warmup, the boundaries (k = W, j = T - W, the flat tail
 * after T, milestones hit exactly), and the invariant checks that abort. */
#include <check.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>

#include "check_main.h"
#include "dtrain/sched.h"

#define ck_assert_lr(got, want)                                                         \
    do {                                                                                \
        double got_ = (got), want_ = (want);                                            \
        ck_assert_msg(fabs(got_ - want_) <= 1e-14 * fabs(want_) + 1e-300,               \
                      "%s = %.17g, expected %.17g", #got, got_, want_);                  \
    } while (0)

static dt_sched make(dt_sched_name name, double base)
{
    return (dt_sched){.name = name, .base_lr = base, .factor = 0.1, .step_size = 1,
                      .power = 1.0};
}

START_TEST(test_constant)
{
    dt_sched s = make(DT_SCHED_CONSTANT, 0.1);
    ck_assert_lr(dt_sched_lr(&s, 0), 0.1);
    ck_assert_lr(dt_sched_lr(&s, 7), 0.1);
    ck_assert_lr(dt_sched_lr(&s, 1000000), 0.1);
}
END_TEST

START_TEST(test_warmup)
{
    /* W = 4, b = 0.01, base = 0.1: lr(k) = 0.01 + 0.09*k/4 for k < 4 */
    dt_sched s = make(DT_SCHED_CONSTANT, 0.1);
    s.warmup_steps = 4;
    s.warmup_begin_lr = 0.01;
    ck_assert_lr(dt_sched_lr(&s, 0), 0.01);
    ck_assert_lr(dt_sched_lr(&s, 1), 0.0325);
    ck_assert_lr(dt_sched_lr(&s, 2), 0.055);
    ck_assert_lr(dt_sched_lr(&s, 3), 0.0775);
    ck_assert_lr(dt_sched_lr(&s, 4), 0.1); /* j = 0 */
    /* from 0 (default b): the first update has lr 0 */
    s.warmup_begin_lr = 0;
    ck_assert(dt_sched_lr(&s, 0) == 0.0);
    ck_assert_lr(dt_sched_lr(&s, 1), 0.025);
    /* W = 1: only k = 0 is warmup */
    s.warmup_steps = 1;
    s.warmup_begin_lr = 0.02;
    ck_assert_lr(dt_sched_lr(&s, 0), 0.02);
    ck_assert_lr(dt_sched_lr(&s, 1), 0.1);
}
END_TEST

START_TEST(test_factor)
{
    /* base 0.2, factor 0.5, step 3, min 0.01 */
    dt_sched s = make(DT_SCHED_FACTOR, 0.2);
    s.factor = 0.5;
    s.step_size = 3;
    s.min_lr = 0.01;
    ck_assert_lr(dt_sched_lr(&s, 0), 0.2);
    ck_assert_lr(dt_sched_lr(&s, 2), 0.2);
    ck_assert_lr(dt_sched_lr(&s, 3), 0.1);
    ck_assert_lr(dt_sched_lr(&s, 5), 0.1);
    ck_assert_lr(dt_sched_lr(&s, 6), 0.05);
    ck_assert_lr(dt_sched_lr(&s, 12), 0.0125);
    ck_assert_lr(dt_sched_lr(&s, 15), 0.01); /* 0.00625 floored at min_lr */
    ck_assert_lr(dt_sched_lr(&s, 300), 0.01);
    /* with warmup, the steps count from the end of warmup */
    s.warmup_steps = 2;
    ck_assert_lr(dt_sched_lr(&s, 4), 0.2);  /* j = 2 */
    ck_assert_lr(dt_sched_lr(&s, 5), 0.1);  /* j = 3 */
}
END_TEST

START_TEST(test_multistep)
{
    dt_sched s = make(DT_SCHED_MULTISTEP, 0.5);
    s.factor = 0.1;
    s.n_milestones = 2;
    s.milestones[0] = 5;
    s.milestones[1] = 12;
    ck_assert_lr(dt_sched_lr(&s, 0), 0.5);
    ck_assert_lr(dt_sched_lr(&s, 4), 0.5);
    ck_assert_lr(dt_sched_lr(&s, 5), 0.5 * 0.1); /* m <= j: the milestone itself */
    ck_assert_lr(dt_sched_lr(&s, 11), 0.5 * 0.1);
    ck_assert_lr(dt_sched_lr(&s, 12), 0.5 * 0.1 * 0.1);
    ck_assert_lr(dt_sched_lr(&s, 99), 0.5 * 0.1 * 0.1);
    /* milestones are in updates after warmup */
    s.warmup_steps = 3;
    ck_assert_lr(dt_sched_lr(&s, 7), 0.5);       /* j = 4 */
    ck_assert_lr(dt_sched_lr(&s, 8), 0.5 * 0.1); /* j = 5 */
    /* none: constant */
    s.n_milestones = 0;
    ck_assert_lr(dt_sched_lr(&s, 50), 0.5);
}
END_TEST

START_TEST(test_sqrt)
{
    dt_sched s = make(DT_SCHED_SQRT, 0.3);
    ck_assert_lr(dt_sched_lr(&s, 0), 0.3);
    ck_assert_lr(dt_sched_lr(&s, 3), 0.15);  /* 0.3/sqrt(4) */
    ck_assert_lr(dt_sched_lr(&s, 8), 0.1);   /* 0.3/sqrt(9) */
    ck_assert_lr(dt_sched_lr(&s, 1), 0.3 / sqrt(2.0));
    s.warmup_steps = 5;
    s.warmup_begin_lr = 0.05;
    ck_assert_lr(dt_sched_lr(&s, 5), 0.3);   /* j = 0 */
    ck_assert_lr(dt_sched_lr(&s, 8), 0.15);  /* j = 3 */
}
END_TEST

START_TEST(test_cosine)
{
    /* T = 10, W = 0, final 0.001: half-way (j = 5) is the mean */
    dt_sched s = make(DT_SCHED_COSINE, 0.1);
    s.max_steps = 10;
    s.final_lr = 0.001;
    ck_assert_lr(dt_sched_lr(&s, 0), 0.1);
    ck_assert_lr(dt_sched_lr(&s, 5), (0.1 + 0.001) / 2);
    /* T = 12, j = 4: cos(pi/3) = 1/2 -> final + (base-final)*3/4 */
    s.max_steps = 12;
    ck_assert_lr(dt_sched_lr(&s, 4), 0.001 + 0.099 * 0.75);
    ck_assert_lr(dt_sched_lr(&s, 12), 0.001);  /* j = T - W: cos(pi) */
    ck_assert(dt_sched_lr(&s, 13) == 0.001);   /* flat tail, exactly */
    ck_assert(dt_sched_lr(&s, 1000) == 0.001);
    /* warmup W = 2, T = 10: decay over L = 8, half-way at k = 6 */
    s.max_steps = 10;
    s.warmup_steps = 2;
    s.warmup_begin_lr = 0;
    ck_assert_lr(dt_sched_lr(&s, 1), 0.05);
    ck_assert_lr(dt_sched_lr(&s, 2), 0.1);
    ck_assert_lr(dt_sched_lr(&s, 6), (0.1 + 0.001) / 2);
    ck_assert_lr(dt_sched_lr(&s, 10), 0.001);
    ck_assert(dt_sched_lr(&s, 11) == 0.001);
    /* non-increasing after warmup */
    for (long k = 2; k < 20; k++) ck_assert(dt_sched_lr(&s, k + 1) <= dt_sched_lr(&s, k));
}
END_TEST

START_TEST(test_cosine_double_precision)
{
    /* Near the end 1 + cos(pi*j/L) cancels: with L = 1000, j = 999,
     * (1 + cos(pi*0.999))/2 = sin^2(pi*0.0005) (half-angle), which float32
     * formulas get wrong in the 3rd digit. */
    dt_sched s = make(DT_SCHED_COSINE, 1.0);
    s.max_steps = 1000;
    double want = sin(M_PI * 0.0005) * sin(M_PI * 0.0005);
    double got = dt_sched_lr(&s, 999);
    ck_assert_msg(fabs(got - want) <= 1e-9 * want, "got %.17g want %.17g", got, want);
}
END_TEST

START_TEST(test_poly)
{
    /* power 2, T = 12, W = 2: L = 10; j = 5 -> (1/2)^2 = 1/4 */
    dt_sched s = make(DT_SCHED_POLY, 0.2);
    s.max_steps = 12;
    s.warmup_steps = 2;
    s.warmup_begin_lr = 0.02;
    s.power = 2;
    s.final_lr = 0.001;
    ck_assert_lr(dt_sched_lr(&s, 1), 0.11);
    ck_assert_lr(dt_sched_lr(&s, 2), 0.2);
    ck_assert_lr(dt_sched_lr(&s, 7), 0.001 + 0.199 * 0.25);
    ck_assert_lr(dt_sched_lr(&s, 12), 0.001);
    ck_assert(dt_sched_lr(&s, 13) == 0.001);
    ck_assert(dt_sched_lr(&s, 500) == 0.001);
    /* power 1 is linear; power 0.5 at j = 3L/4 is sqrt(1/4) = 1/2 */
    s.power = 1;
    s.final_lr = 0;
    s.warmup_steps = 0;
    s.max_steps = 8;
    ck_assert_lr(dt_sched_lr(&s, 2), 0.15);
    s.power = 0.5;
    ck_assert_lr(dt_sched_lr(&s, 6), 0.1);
    ck_assert(dt_sched_lr(&s, 8) == 0.0);
    ck_assert(dt_sched_lr(&s, 9) == 0.0);
}
END_TEST

/* The cyclic schedules at points where torch's formulas have round values
 * (the golden files in tests/reference/sched/ hold torch's own rates). */
START_TEST(test_cosine_restarts)
{
    /* period 4, doubling: restarts at j = 4, 12, 28 */
    dt_sched s = make(DT_SCHED_COSINE_RESTARTS, 0.1);
    s.period = 4;
    s.period_mult = 2;
    ck_assert_lr(dt_sched_lr(&s, 0), 0.1);
    ck_assert_lr(dt_sched_lr(&s, 2), 0.05);  /* half of the first period */
    ck_assert_lr(dt_sched_lr(&s, 4), 0.1);   /* restart */
    ck_assert_lr(dt_sched_lr(&s, 8), 0.05);  /* half of the period of 8 */
    ck_assert_lr(dt_sched_lr(&s, 12), 0.1);  /* restart */
    ck_assert_lr(dt_sched_lr(&s, 20), 0.05); /* half of 16 */
    ck_assert_lr(dt_sched_lr(&s, 28), 0.1);
    /* min_lr is the bottom; period_mult 1 repeats */
    s.period_mult = 1;
    s.min_lr = 0.02;
    ck_assert_lr(dt_sched_lr(&s, 6), 0.06);
    ck_assert_lr(dt_sched_lr(&s, 400), 0.1);
    /* after a warmup of 3, j counts from its end */
    s.warmup_steps = 3;
    ck_assert_lr(dt_sched_lr(&s, 3), 0.1);
    ck_assert_lr(dt_sched_lr(&s, 5), 0.06);
    /* periods that would overflow a long end the restarts, not the program */
    s.warmup_steps = 0;
    s.period = LONG_MAX / 2;
    s.period_mult = 3;
    ck_assert(dt_sched_lr(&s, LONG_MAX - 1) >= s.min_lr);
}
END_TEST

START_TEST(test_one_cycle)
{
    /* L = 10, pct 0.5: up over j = 0..4 from 1/4 to 1, down over 4..9 to 1/8 */
    dt_sched s = make(DT_SCHED_ONE_CYCLE, 1.0);
    s.max_steps = 10;
    s.pct_start = 0.5;
    s.div_factor = 4;
    s.final_div_factor = 2;
    s.anneal = DT_ANNEAL_LINEAR;
    ck_assert_lr(dt_sched_lr(&s, 0), 0.25);
    ck_assert_lr(dt_sched_lr(&s, 2), 0.625);
    ck_assert_lr(dt_sched_lr(&s, 4), 1.0);
    ck_assert_lr(dt_sched_lr(&s, 6), 0.65); /* 1 + (0.125 - 1) * 2/5 */
    ck_assert_lr(dt_sched_lr(&s, 9), 0.125);
    ck_assert_lr(dt_sched_lr(&s, 10), 0.125); /* the tail */
    ck_assert_lr(dt_sched_lr(&s, 1000), 0.125);
    s.anneal = DT_ANNEAL_COS;
    ck_assert_lr(dt_sched_lr(&s, 2), 0.625); /* a cosine's midpoint is the mean too */
    ck_assert_lr(dt_sched_lr(&s, 4), 1.0);
    /* three phases: back to 1/4 at j = 8, then down to 1/8 at j = 9 */
    s.three_phase = true;
    s.anneal = DT_ANNEAL_LINEAR;
    s.pct_start = 0.4; /* ends at 3, 6, 9 */
    ck_assert_lr(dt_sched_lr(&s, 3), 1.0);
    ck_assert_lr(dt_sched_lr(&s, 6), 0.25);
    ck_assert_lr(dt_sched_lr(&s, 9), 0.125);
    /* max_steps counts the warmup: L = 10 after 5 warmup updates */
    s.warmup_steps = 5;
    s.max_steps = 15;
    ck_assert_lr(dt_sched_lr(&s, 5), 0.25);
    ck_assert_lr(dt_sched_lr(&s, 8), 1.0);
}
END_TEST

START_TEST(test_cyclic)
{
    /* base 0.1 -> 0.5 over 2 updates, back over 2 */
    dt_sched s = make(DT_SCHED_CYCLIC, 0.1);
    s.max_lr = 0.5;
    s.step_size_up = 2;
    s.step_size_down = 2;
    s.gamma = 1;
    ck_assert_lr(dt_sched_lr(&s, 0), 0.1);
    ck_assert_lr(dt_sched_lr(&s, 1), 0.3);
    ck_assert_lr(dt_sched_lr(&s, 2), 0.5);
    ck_assert_lr(dt_sched_lr(&s, 3), 0.3);
    ck_assert_lr(dt_sched_lr(&s, 4), 0.1);
    ck_assert_lr(dt_sched_lr(&s, 6), 0.5);
    s.cyclic_mode = DT_CYCLIC_TRIANGULAR2; /* the second cycle is half as high */
    ck_assert_lr(dt_sched_lr(&s, 2), 0.5);
    ck_assert_lr(dt_sched_lr(&s, 6), 0.3);
    ck_assert_lr(dt_sched_lr(&s, 10), 0.2);
    s.cyclic_mode = DT_CYCLIC_EXP_RANGE; /* height * gamma^j */
    s.gamma = 0.5;
    ck_assert_lr(dt_sched_lr(&s, 2), 0.2);
    ck_assert_lr(dt_sched_lr(&s, 6), 0.1 + 0.4 / 64);
    /* uneven: up 1, down 3 */
    s.cyclic_mode = DT_CYCLIC_TRIANGULAR;
    s.step_size_up = 1;
    s.step_size_down = 3;
    ck_assert_lr(dt_sched_lr(&s, 1), 0.5);
    ck_assert_lr(dt_sched_lr(&s, 2), 0.1 + 0.4 * 2 / 3);
    /* warmup ramps to base, where the cycle starts */
    s.warmup_steps = 2;
    ck_assert_lr(dt_sched_lr(&s, 1), 0.05);
    ck_assert_lr(dt_sched_lr(&s, 3), 0.5);
    /* names */
    ck_assert_str_eq(dt_sched_str(DT_SCHED_CYCLIC), "cyclic");
    ck_assert_str_eq(dt_cyclic_mode_str(DT_CYCLIC_EXP_RANGE), "exp_range");
    ck_assert_str_eq(dt_anneal_str(DT_ANNEAL_LINEAR), "linear");
    ck_assert_str_eq(dt_anneal_str(DT_ANNEAL_COUNT), "?");
}
END_TEST

/* Broken invariants (config must reject these) abort via DT_BUG. */
START_TEST(test_bad_step_size_aborts)
{
    dt_sched s = make(DT_SCHED_FACTOR, 0.1);
    s.step_size = 0;
    (void)dt_sched_lr(&s, 3);
}
END_TEST

START_TEST(test_bad_max_steps_aborts)
{
    dt_sched s = make(DT_SCHED_COSINE, 0.1);
    s.warmup_steps = 10;
    s.max_steps = 10;
    (void)dt_sched_lr(&s, 12);
}
END_TEST

START_TEST(test_one_cycle_empty_phase_aborts)
{
    /* pct_start * L - 1 = 0: the first phase has no length (the trainer
     * refuses this configuration) */
    dt_sched s = make(DT_SCHED_ONE_CYCLE, 0.1);
    s.max_steps = 10;
    s.pct_start = 0.1;
    s.div_factor = 25;
    s.final_div_factor = 1e4;
    (void)dt_sched_lr(&s, 0);
}
END_TEST

START_TEST(test_cyclic_zero_step_aborts)
{
    dt_sched s = make(DT_SCHED_CYCLIC, 0.1);
    s.max_lr = 1;
    s.step_size_up = 0;
    s.step_size_down = 3;
    (void)dt_sched_lr(&s, 1);
}
END_TEST

START_TEST(test_restarts_zero_period_aborts)
{
    dt_sched s = make(DT_SCHED_COSINE_RESTARTS, 0.1);
    s.period_mult = 1;
    (void)dt_sched_lr(&s, 1);
}
END_TEST

START_TEST(test_bad_name_aborts)
{
    dt_sched s = make(DT_SCHED_COUNT, 0.1);
    (void)dt_sched_lr(&s, 0);
}
END_TEST

static Suite *sched_suite(void)
{
    Suite *s = suite_create("sched");
    TCase *tc = tcase_create("schedules");
    tcase_add_test(tc, test_constant);
    tcase_add_test(tc, test_warmup);
    tcase_add_test(tc, test_factor);
    tcase_add_test(tc, test_multistep);
    tcase_add_test(tc, test_sqrt);
    tcase_add_test(tc, test_cosine);
    tcase_add_test(tc, test_cosine_double_precision);
    tcase_add_test(tc, test_poly);
    tcase_add_test(tc, test_cosine_restarts);
    tcase_add_test(tc, test_one_cycle);
    tcase_add_test(tc, test_cyclic);
    suite_add_tcase(s, tc);
    TCase *tb = tcase_create("invariants");
    tcase_add_test_raise_signal(tb, test_bad_step_size_aborts, SIGABRT);
    tcase_add_test_raise_signal(tb, test_bad_max_steps_aborts, SIGABRT);
    tcase_add_test_raise_signal(tb, test_bad_name_aborts, SIGABRT);
    tcase_add_test_raise_signal(tb, test_one_cycle_empty_phase_aborts, SIGABRT);
    tcase_add_test_raise_signal(tb, test_cyclic_zero_step_aborts, SIGABRT);
    tcase_add_test_raise_signal(tb, test_restarts_zero_period_aborts, SIGABRT);
    suite_add_tcase(s, tb);
    return s;
}

DT_CHECK_MAIN(sched_suite)
