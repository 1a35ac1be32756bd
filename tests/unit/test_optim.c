/* test_optim.c - Check suite for the optim module.
 *
 * Every optimizer gets at least one step checked against tests/reference/SPEC.md's formula
 * evaluated by hand in double inside the test (not by a second copy of the
 * float loops). Then the properties tests/reference/SPEC.md and optim.h promise: state
 * slots, zeroed 64-byte aligned state, lr = 0 still advancing t and state,
 * zero gradients staying exactly zero, coupled decay then clipping (and no
 * coupled decay for adamw), the non-finite scan, sgd+momentum == momentum,
 * and no allocation inside a step. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "dtrain/optim.h"

/* Relative closeness for float results against double hand values. */
#define ck_assert_close(got, want, rel)                                               \
    do {                                                                              \
        double got_ = (double)(got), want_ = (double)(want);                          \
        ck_assert_msg(fabs(got_ - want_) <= (rel) * fabs(want_) + 1e-30,              \
                      "%s = %.9g, expected %.9g (%s)", #got, got_, want_, #want);      \
    } while (0)

static dt_optim_hparams hparams(dt_optimizer_name name)
{
    /* SPEC defaults */
    dt_optim_hparams hp = {.name = name, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    switch (name) {
    case DT_OPT_MOMENTUM: hp.momentum = 0.9; break;
    case DT_OPT_ADAGRAD: hp.eps = 1e-10; break;
    case DT_OPT_RMSPROP: hp.alpha = 0.99; break;
    case DT_OPT_ADADELTA: hp.rho = 0.9, hp.eps = 1e-6; break;
    case DT_OPT_ADAMW: hp.weight_decay = 0.01; break;
    case DT_OPT_YOGI: hp.eps = 1e-3; break;
    default: break;
    }
    return hp;
}

static void init_opt(dt_optimizer *opt, const dt_optim_hparams *hp, size_t n)
{
    dt_error err;
    ck_assert_int_eq(dt_optim_init(opt, hp, n, &err), DT_OK);
}

/* ---- state layout ---------------------------------------------------- */

START_TEST(test_state_slots)
{
    const int want[DT_OPT_COUNT] = {
        [DT_OPT_SGD] = 0,      [DT_OPT_MOMENTUM] = 1, [DT_OPT_ADAGRAD] = 1,
        [DT_OPT_RMSPROP] = 1,  [DT_OPT_ADADELTA] = 2, [DT_OPT_ADAM] = 2,
        [DT_OPT_ADAMW] = 2,    [DT_OPT_YOGI] = 2,
    };
    for (int k = 0; k < DT_OPT_COUNT; k++) {
        dt_optim_hparams hp = hparams((dt_optimizer_name)k);
        ck_assert_int_eq(dt_optim_state_slots(&hp), want[k]);
    }
    dt_optim_hparams sgd = hparams(DT_OPT_SGD);
    sgd.momentum = 0.5;
    ck_assert_int_eq(dt_optim_state_slots(&sgd), 1); /* sgd with momentum is momentum */
}
END_TEST

START_TEST(test_init_zeroed_aligned)
{
    for (int k = 0; k < DT_OPT_COUNT; k++) {
        dt_optim_hparams hp = hparams((dt_optimizer_name)k);
        dt_optimizer opt;
        const size_t n = 1001;
        init_opt(&opt, &hp, n);
        ck_assert_int_eq(opt.slots, dt_optim_state_slots(&hp));
        ck_assert_int_eq(opt.t, 0);
        ck_assert_uint_eq(opt.n, n);
        for (int s = 0; s < opt.slots; s++) {
            ck_assert_ptr_nonnull(opt.state[s]);
            ck_assert_uint_eq((uintptr_t)opt.state[s] % 64, 0);
            for (size_t i = 0; i < n; i++) ck_assert(opt.state[s][i] == 0.0f);
        }
        for (int s = opt.slots; s < DT_OPTIM_MAX_SLOTS; s++) ck_assert_ptr_null(opt.state[s]);
        dt_optim_free(&opt);
        for (int s = 0; s < DT_OPTIM_MAX_SLOTS; s++) ck_assert_ptr_null(opt.state[s]);
        dt_optim_free(&opt); /* idempotent */
    }
}
END_TEST

/* ---- one optimizer at a time, against double hand math ----------------- */

START_TEST(test_sgd_step)
{
    dt_optim_hparams hp = hparams(DT_OPT_SGD);
    dt_optimizer opt;
    float w[3] = {1.0f, -2.0f, 0.25f};
    const float g[3] = {0.5f, -1.5f, 0.0f};
    init_opt(&opt, &hp, 3);
    dt_optim_step(&opt, w, g, 0.1);
    ck_assert_close(w[0], 1.0 - 0.1 * 0.5, 1e-6);
    ck_assert_close(w[1], -2.0 + 0.1 * 1.5, 1e-6);
    ck_assert(w[2] == 0.25f);
    ck_assert_int_eq(opt.t, 1);
    dt_optim_free(&opt);
}
END_TEST

START_TEST(test_momentum_steps)
{
    for (int nesterov = 0; nesterov <= 1; nesterov++) {
        dt_optim_hparams hp = hparams(DT_OPT_MOMENTUM);
        hp.momentum = 0.9;
        hp.nesterov = nesterov;
        dt_optimizer opt;
        float w[1] = {1.0f};
        init_opt(&opt, &hp, 1);
        const double g1 = 0.5, g2 = -0.25, lr = 0.1, mu = 0.9;
        float g = (float)g1;
        dt_optim_step(&opt, w, &g, lr);
        double v = g1; /* 0.9*0 + g1, no dampening */
        double wd = 1.0 - lr * (nesterov ? g1 + mu * v : v);
        ck_assert_close(opt.state[0][0], v, 1e-6);
        ck_assert_close(w[0], wd, 1e-6);
        g = (float)g2;
        dt_optim_step(&opt, w, &g, lr);
        v = mu * v + g2; /* 0.2 */
        wd -= lr * (nesterov ? g2 + mu * v : v);
        ck_assert_close(opt.state[0][0], 0.2, 1e-6);
        ck_assert_close(w[0], wd, 1e-6);
        /* plain: 1 - 0.1*0.5 - 0.1*0.2 = 0.93;
         * nesterov: 1 - 0.1*(0.5+0.45) - 0.1*(-0.25+0.18) = 0.912 */
        ck_assert_close(w[0], nesterov ? 0.912 : 0.93, 1e-6);
        dt_optim_free(&opt);
    }
}
END_TEST

START_TEST(test_adagrad_steps)
{
    dt_optim_hparams hp = hparams(DT_OPT_ADAGRAD);
    dt_optimizer opt;
    float w[1] = {1.0f};
    init_opt(&opt, &hp, 1);
    float g = 3.0f;
    dt_optim_step(&opt, w, &g, 0.1);
    /* s = 9, w = 1 - 0.1*3/(3+1e-10) */
    ck_assert_close(opt.state[0][0], 9.0, 1e-7);
    ck_assert_close(w[0], 1.0 - 0.1 * 3.0 / (3.0 + 1e-10), 1e-6);
    g = 4.0f;
    dt_optim_step(&opt, w, &g, 0.1);
    /* s = 25, w -= 0.1*4/5 */
    ck_assert_close(opt.state[0][0], 25.0, 1e-7);
    ck_assert_close(w[0], 0.9 - 0.08, 1e-6);
    dt_optim_free(&opt);
}
END_TEST

START_TEST(test_adagrad_eps_outside_sqrt)
{
    /* g = 1e-5: sqrt(s) = 1e-5, eps = 1e-5 -> w moves by lr/2. Inside the
     * root it would be lr*1e-5/sqrt(1e-10 + 1e-5) ~ lr*3e-3. */
    dt_optim_hparams hp = hparams(DT_OPT_ADAGRAD);
    hp.eps = 1e-5;
    dt_optimizer opt;
    float w[1] = {0.0f}, g = 1e-5f;
    init_opt(&opt, &hp, 1);
    dt_optim_step(&opt, w, &g, 1.0);
    ck_assert_close(w[0], -1e-5 / (1e-5 + 1e-5), 1e-5);
    dt_optim_free(&opt);
}
END_TEST

START_TEST(test_rmsprop_steps)
{
    dt_optim_hparams hp = hparams(DT_OPT_RMSPROP);
    hp.alpha = 0.9;
    dt_optimizer opt;
    float w[1] = {2.0f};
    init_opt(&opt, &hp, 1);
    float g = 1.0f;
    dt_optim_step(&opt, w, &g, 0.01);
    double s = 0.1 * 1.0; /* 0.9*0 + 0.1*1 */
    double wd = 2.0 - 0.01 * 1.0 / (sqrt(s) + 1e-8);
    ck_assert_close(opt.state[0][0], s, 1e-6);
    ck_assert_close(w[0], wd, 1e-6);
    g = -2.0f;
    dt_optim_step(&opt, w, &g, 0.01);
    s = 0.9 * s + 0.1 * 4.0; /* 0.49 */
    wd -= 0.01 * -2.0 / (sqrt(s) + 1e-8);
    ck_assert_close(opt.state[0][0], 0.49, 1e-6);
    ck_assert_close(w[0], wd, 1e-6);
    dt_optim_free(&opt);
}
END_TEST

START_TEST(test_adadelta_steps)
{
    dt_optim_hparams hp = hparams(DT_OPT_ADADELTA);
    dt_optimizer opt;
    float w[1] = {1.0f};
    init_opt(&opt, &hp, 1);
    const double rho = 0.9, eps = 1e-6;
    double s = 0, u = 0, wd = 1.0;
    const double gs[2] = {0.5, -1.0};
    for (int t = 0; t < 2; t++) {
        float g = (float)gs[t];
        dt_optim_step(&opt, w, &g, 1.0);
        s = rho * s + (1 - rho) * gs[t] * gs[t]; /* the NEW s goes into d */
        double d = sqrt(u + eps) / sqrt(s + eps) * gs[t];
        u = rho * u + (1 - rho) * d * d;
        wd -= d;
        ck_assert_close(opt.state[0][0], s, 1e-6);
        ck_assert_close(opt.state[1][0], u, 1e-5);
        ck_assert_close(w[0], wd, 1e-6);
    }
    /* first step: d = sqrt(1e-6)/sqrt(0.025+1e-6)*0.5 ~ 3.16e-3 */
    dt_optim_free(&opt);
}
END_TEST

/* Adam-family reference in double for one coordinate. */
typedef struct {
    double m, v, w;
} adam_ref;

static void adam_ref_step(adam_ref *r, double g, double lr, long t, double b1, double b2,
                          double eps, double decoupled_wd, int yogi)
{
    r->w -= lr * decoupled_wd * r->w;
    r->m = b1 * r->m + (1 - b1) * g;
    if (yogi) {
        double g2 = g * g, d = r->v - g2;
        r->v -= (1 - b2) * (d > 0 ? 1 : d < 0 ? -1 : 0) * g2;
    } else {
        r->v = b2 * r->v + (1 - b2) * g * g;
    }
    double mh = r->m / (1 - pow(b1, (double)t)), vh = r->v / (1 - pow(b2, (double)t));
    r->w -= lr * mh / (sqrt(vh) + eps);
}

START_TEST(test_adam_first_step_is_lr_sign)
{
    /* t = 1: mh = g, vh = g^2, so w moves by lr*g/(|g|+eps) ~ lr*sign(g),
     * whatever beta1, beta2 are. Without bias correction it would move
     * by lr*0.1g/(sqrt(0.001)|g|) = 3.16 lr. */
    dt_optim_hparams hp = hparams(DT_OPT_ADAM);
    dt_optimizer opt;
    float w[3] = {1.0f, 1.0f, 1.0f};
    const float g[3] = {2.0f, -0.001f, 0.0f};
    init_opt(&opt, &hp, 3);
    dt_optim_step(&opt, w, g, 0.01);
    ck_assert_close(w[0], 1.0 - 0.01 * 2.0 / (2.0 + 1e-8), 1e-6);
    ck_assert_close(w[1], 1.0 + 0.01 * 0.001 / (0.001 + 1e-8), 1e-6);
    ck_assert(w[2] == 1.0f);
    ck_assert_close(opt.state[0][0], 0.1 * 2.0, 1e-6);
    ck_assert_close(opt.state[1][0], 0.001 * 4.0, 1e-6);
    dt_optim_free(&opt);
}
END_TEST

START_TEST(test_adam_three_steps)
{
    dt_optim_hparams hp = hparams(DT_OPT_ADAM);
    hp.beta1 = 0.8, hp.beta2 = 0.99, hp.eps = 1e-3;
    dt_optimizer opt;
    float w[1] = {0.5f};
    adam_ref r = {0, 0, 0.5};
    const double gs[3] = {0.3, -0.1, 0.05}, lrs[3] = {0.1, 0.05, 0.02};
    init_opt(&opt, &hp, 1);
    for (int t = 1; t <= 3; t++) {
        float g = (float)gs[t - 1];
        dt_optim_step(&opt, w, &g, lrs[t - 1]);
        adam_ref_step(&r, gs[t - 1], lrs[t - 1], t, 0.8, 0.99, 1e-3, 0, 0);
        ck_assert_int_eq(opt.t, t);
        ck_assert_close(opt.state[0][0], r.m, 1e-6);
        ck_assert_close(opt.state[1][0], r.v, 1e-6);
        ck_assert_close(w[0], r.w, 1e-6);
    }
    dt_optim_free(&opt);
}
END_TEST

START_TEST(test_adamw_decoupled)
{
    dt_optim_hparams hp = hparams(DT_OPT_ADAMW);
    hp.weight_decay = 0.1;
    dt_optimizer opt;
    float w[2] = {2.0f, -1.0f};
    const float g0[2] = {0.5f, 0.0f};
    adam_ref r0 = {0, 0, 2.0}, r1 = {0, 0, -1.0};
    init_opt(&opt, &hp, 2);
    for (int t = 1; t <= 2; t++) {
        float g[2] = {g0[0], g0[1]};
        /* preprocess must not add wd*w to g for adamw */
        dt_optim_preprocess(&opt, w, g);
        ck_assert(g[0] == g0[0] && g[1] == g0[1]);
        dt_optim_step(&opt, w, g, 0.05);
        adam_ref_step(&r0, 0.5, 0.05, t, 0.9, 0.999, 1e-8, 0.1, 0);
        adam_ref_step(&r1, 0.0, 0.05, t, 0.9, 0.999, 1e-8, 0.1, 0);
        ck_assert_close(w[0], r0.w, 1e-6);
        ck_assert_close(w[1], r1.w, 1e-6);
    }
    /* coordinate 1 has no gradient: only the decay moves it, (1-0.005)^2 */
    ck_assert_close(w[1], -1.0 * 0.995 * 0.995, 1e-6);
    dt_optim_free(&opt);
}
END_TEST

START_TEST(test_yogi_sign)
{
    /* beta2 = 0.75 keeps everything exact in binary:
     * t=1, g=2: v = 0 - 0.25*sign(0-4)*4 = 1          (sign -1)
     * t=2, g=1: v - g^2 = 0, sign(0) = 0: v stays 1   (adam would give 1)
     * t=3, g=0.5: sign(1-0.25) = +1: v = 1 - 0.25*0.25 = 0.9375
     * t=4, g=3: sign(0.9375-9) = -1: v = 0.9375 + 0.25*9 = 3.1875 */
    dt_optim_hparams hp = hparams(DT_OPT_YOGI);
    hp.beta1 = 0.5, hp.beta2 = 0.75;
    dt_optimizer opt;
    float w[1] = {1.0f};
    adam_ref r = {0, 0, 1.0};
    const double gs[4] = {2.0, 1.0, 0.5, 3.0}, vs[4] = {1.0, 1.0, 0.9375, 3.1875};
    init_opt(&opt, &hp, 1);
    for (int t = 1; t <= 4; t++) {
        float g = (float)gs[t - 1];
        dt_optim_step(&opt, w, &g, 0.01);
        adam_ref_step(&r, gs[t - 1], 0.01, t, 0.5, 0.75, 1e-3, 0, 1);
        ck_assert(opt.state[1][0] == (float)vs[t - 1]);
        ck_assert_close(r.v, vs[t - 1], 1e-15);
        ck_assert_close(opt.state[0][0], r.m, 1e-6);
        ck_assert_close(w[0], r.w, 1e-6);
    }
    dt_optim_free(&opt);
}
END_TEST

/* ---- properties over every optimizer ------------------------------------ */

START_TEST(test_lr_zero_advances_state)
{
    const size_t n = 37;
    float w[37], w0[37], g[37];
    for (size_t i = 0; i < n; i++) {
        w[i] = w0[i] = 0.1f * (float)i - 1.5f;
        g[i] = 0.05f * (float)((int)(i % 7) - 3) + 0.01f;
    }
    for (int k = 0; k < DT_OPT_COUNT; k++) {
        dt_optim_hparams hp = hparams((dt_optimizer_name)k);
        dt_optimizer opt;
        init_opt(&opt, &hp, n);
        memcpy(w, w0, sizeof w);
        dt_optim_step(&opt, w, g, 0.0);
        ck_assert_int_eq(opt.t, 1);
        ck_assert_msg(memcmp(w, w0, sizeof w) == 0, "optimizer %d moved w with lr 0", k);
        for (int s = 0; s < opt.slots; s++) {
            int moved = 0;
            for (size_t i = 0; i < n; i++) moved += opt.state[s][i] != 0.0f;
            ck_assert_msg(moved > 0, "optimizer %d slot %d did not advance", k, s);
        }
        dt_optim_free(&opt);
    }
    /* and the next update uses t = 2: adam after (lr 0, lr 0.1) */
    dt_optim_hparams hp = hparams(DT_OPT_ADAM);
    dt_optimizer opt;
    float x[1] = {1.0f}, gx = 0.5f;
    adam_ref r = {0, 0, 1.0};
    init_opt(&opt, &hp, 1);
    dt_optim_step(&opt, x, &gx, 0.0);
    dt_optim_step(&opt, x, &gx, 0.1);
    adam_ref_step(&r, 0.5, 0.0, 1, 0.9, 0.999, 1e-8, 0, 0);
    adam_ref_step(&r, 0.5, 0.1, 2, 0.9, 0.999, 1e-8, 0, 0);
    ck_assert_int_eq(opt.t, 2);
    ck_assert_close(x[0], r.w, 1e-6);
    dt_optim_free(&opt);
}
END_TEST

START_TEST(test_zero_gradient_stays_zero)
{
    /* Coordinates 0 and 5 start at 0 with a zero gradient at every step;
     * with coupled decay and clipping on, they must stay exactly 0 (no 0/0)
     * and so must their state. */
    const size_t n = 11;
    for (int k = 0; k < DT_OPT_COUNT; k++) {
        dt_optim_hparams hp = hparams((dt_optimizer_name)k);
        hp.weight_decay = 0.01;
        hp.clip_grad_norm = 0.5;
        dt_optimizer opt;
        float w[11];
        init_opt(&opt, &hp, n);
        for (size_t i = 0; i < n; i++) w[i] = (i == 0 || i == 5) ? 0.0f : 0.3f * (float)i;
        for (int t = 0; t < 20; t++) {
            float g[11];
            for (size_t i = 0; i < n; i++)
                g[i] = (i == 0 || i == 5) ? 0.0f : 0.1f * (float)(((int)i + t) % 5) - 0.2f;
            dt_optim_preprocess(&opt, w, g);
            dt_optim_step(&opt, w, g, t == 0 ? 0.0 : 0.05);
            ck_assert_msg(w[0] == 0.0f && w[5] == 0.0f && !signbit(w[0]) && !signbit(w[5]),
                          "optimizer %d: zero coordinate became %g / %g", k, (double)w[0],
                          (double)w[5]);
            for (int s = 0; s < opt.slots; s++)
                ck_assert(opt.state[s][0] == 0.0f && opt.state[s][5] == 0.0f);
            ck_assert(dt_all_finite(w, n));
        }
        dt_optim_free(&opt);
    }
}
END_TEST

START_TEST(test_sgd_momentum_is_momentum)
{
    const size_t n = 19;
    for (int nesterov = 0; nesterov <= 1; nesterov++) {
        dt_optim_hparams a = hparams(DT_OPT_SGD), b = hparams(DT_OPT_MOMENTUM);
        a.momentum = b.momentum = 0.7;
        a.nesterov = b.nesterov = nesterov;
        a.weight_decay = b.weight_decay = 0.02;
        a.clip_grad_norm = b.clip_grad_norm = 1.0;
        dt_optimizer oa, ob;
        init_opt(&oa, &a, n);
        init_opt(&ob, &b, n);
        ck_assert_int_eq(oa.slots, 1);
        float wa[19], wb[19];
        for (size_t i = 0; i < n; i++) wa[i] = wb[i] = 0.2f * (float)i - 1.0f;
        for (int t = 0; t < 10; t++) {
            float ga[19], gb[19];
            for (size_t i = 0; i < n; i++)
                ga[i] = gb[i] = sinf((float)(i * 3 + (size_t)t)) * (float)(t + 1);
            dt_optim_preprocess(&oa, wa, ga);
            dt_optim_preprocess(&ob, wb, gb);
            dt_optim_step(&oa, wa, ga, 0.03);
            dt_optim_step(&ob, wb, gb, 0.03);
        }
        ck_assert(memcmp(wa, wb, sizeof wa) == 0);
        ck_assert(memcmp(oa.state[0], ob.state[0], n * sizeof(float)) == 0);
        /* and it really is momentum, not plain sgd */
        float wc[1] = {1.0f}, g1 = 1.0f;
        dt_optim_hparams c = hparams(DT_OPT_SGD);
        c.momentum = 0.5;
        c.nesterov = nesterov;
        dt_optimizer oc;
        init_opt(&oc, &c, 1);
        dt_optim_step(&oc, wc, &g1, 0.1);
        dt_optim_step(&oc, wc, &g1, 0.1);
        /* v = 1 then 1.5: plain 1 - 0.1 - 0.15; nesterov 1 - 0.15 - 0.175 */
        ck_assert_close(wc[0], nesterov ? 0.675 : 0.75, 1e-6);
        dt_optim_free(&oa);
        dt_optim_free(&ob);
        dt_optim_free(&oc);
    }
}
END_TEST

/* ---- pre-processing ------------------------------------------------------ */

START_TEST(test_clip_scale)
{
    dt_optim_hparams hp = hparams(DT_OPT_SGD);
    hp.clip_grad_norm = 1.0;
    dt_optimizer opt;
    init_opt(&opt, &hp, 2);
    const float w[2] = {0, 0};
    float g[2] = {3.0f, 4.0f};
    double norm = dt_optim_preprocess(&opt, w, g);
    ck_assert_close(norm, 5.0, 1e-15);
    const double scale = 1.0 / (5.0 + 1e-6);
    ck_assert_close(g[0], 3.0 * scale, 1e-7);
    ck_assert_close(g[1], 4.0 * scale, 1e-7);
    /* below the threshold: untouched, bit for bit */
    opt.hp.clip_grad_norm = 5.1;
    g[0] = 3.0f, g[1] = 4.0f;
    ck_assert_close(dt_optim_preprocess(&opt, w, g), 5.0, 1e-15);
    ck_assert(g[0] == 3.0f && g[1] == 4.0f);
    /* clip == norm: scale = 5/(5+1e-6) < 1 still applies (SPEC formula) */
    opt.hp.clip_grad_norm = 5.0;
    dt_optim_preprocess(&opt, w, g);
    ck_assert_close(g[0], 3.0 * 5.0 / (5.0 + 1e-6), 1e-7);
    ck_assert(g[0] < 3.0f);
    /* off: untouched, and the norm is not computed (0) */
    opt.hp.clip_grad_norm = 0;
    g[0] = 300.0f, g[1] = 400.0f;
    ck_assert_close(dt_optim_preprocess(&opt, w, g), 0.0, 0);
    ck_assert(g[0] == 300.0f && g[1] == 400.0f);
    dt_optim_free(&opt);
}
END_TEST

START_TEST(test_decay_before_clip)
{
    /* w = (1, 0), g = (2, 4), wd = 1: g + wd*w = (3, 4), norm 5, clipped
     * to norm 1 -> (0.6, 0.8). Clipping first would give norm(2,4) = 4.47
     * and (0.447+1, 0.894). */
    dt_optim_hparams hp = hparams(DT_OPT_MOMENTUM);
    hp.weight_decay = 1.0;
    hp.clip_grad_norm = 1.0;
    dt_optimizer opt;
    init_opt(&opt, &hp, 2);
    const float w[2] = {1.0f, 0.0f};
    float g[2] = {2.0f, 4.0f};
    ck_assert_close(dt_optim_preprocess(&opt, w, g), 5.0, 1e-15);
    ck_assert_close(g[0], 3.0 / (5.0 + 1e-6), 1e-7);
    ck_assert_close(g[1], 4.0 / (5.0 + 1e-6), 1e-7);
    dt_optim_free(&opt);
}
END_TEST

START_TEST(test_preprocess_long_vector)
{
    /* n not a multiple of any vector width: the tail must be decayed and
     * counted in the norm exactly like the body. */
    const size_t sizes[] = {1, 7, 8, 9, 15, 16, 17, 1003};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si];
        dt_optim_hparams hp = hparams(DT_OPT_ADAM);
        hp.weight_decay = 0.5;
        hp.clip_grad_norm = 0.1;
        dt_optimizer opt;
        init_opt(&opt, &hp, n);
        float *w = malloc(n * sizeof *w), *g = malloc(n * sizeof *g);
        double *want = malloc(n * sizeof *want);
        ck_assert(w && g && want);
        double ss = 0;
        for (size_t i = 0; i < n; i++) {
            w[i] = (float)(i % 13) * 0.25f - 1.0f;
            g[i] = (float)((i * 7) % 11) * 0.1f - 0.5f;
            /* float decay as the library does it, norm in double */
            want[i] = (double)(g[i] + 0.5f * w[i]);
            ss += want[i] * want[i];
        }
        double norm = sqrt(ss), scale = 0.1 / (norm + 1e-6);
        ck_assert_close(dt_optim_preprocess(&opt, w, g), norm, 1e-12);
        for (size_t i = 0; i < n; i++) ck_assert_close(g[i], want[i] * scale, 1e-6);
        free(w);
        free(g);
        free(want);
        dt_optim_free(&opt);
    }
}
END_TEST

/* ---- non-finite scan ----------------------------------------------------- */

START_TEST(test_all_finite)
{
    const size_t sizes[] = {1, 2, 3, 7, 8, 9, 31, 33, 4095, 4096, 4097, 10007};
    const float bad[] = {NAN, -NAN, INFINITY, -INFINITY};
    ck_assert(dt_all_finite(NULL, 0));
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si];
        float *g = malloc(n * sizeof *g);
        ck_assert_ptr_nonnull(g);
        for (size_t i = 0; i < n; i++) g[i] = (float)i * 1e-3f - 0.5f;
        /* extremes that are finite */
        g[0] = FLT_MAX;
        g[n / 2] = -FLT_MAX;
        g[n - 1] = n > 2 ? 1e-45f /* denormal */ : -0.0f;
        ck_assert_msg(dt_all_finite(g, n), "n=%zu finite", n);
        const size_t pos[] = {0, n / 2, n - 1, n > 1 ? n - 2 : 0, n > 4097 ? 4096 : 0};
        for (size_t pi = 0; pi < sizeof pos / sizeof pos[0]; pi++) {
            for (size_t bi = 0; bi < sizeof bad / sizeof bad[0]; bi++) {
                float keep = g[pos[pi]];
                g[pos[pi]] = bad[bi];
                ck_assert_msg(!dt_all_finite(g, n), "n=%zu pos=%zu value %d not caught", n,
                              pos[pi], (int)bi);
                g[pos[pi]] = keep;
            }
        }
        ck_assert(dt_all_finite(g, n));
        free(g);
    }
}
END_TEST

START_TEST(test_scale_all_finite)
{
    const size_t n = 1001;
    float *g = malloc(n * sizeof *g);
    ck_assert_ptr_nonnull(g);
    for (size_t i = 0; i < n; i++) g[i] = (float)i - 500.0f;
    ck_assert(dt_scale_all_finite(g, n, 0.25f));
    for (size_t i = 0; i < n; i++) ck_assert_float_eq(g[i], ((float)i - 500.0f) * 0.25f);
    const float bad[] = {NAN, INFINITY, -INFINITY};
    for (size_t bi = 0; bi < 3; bi++) {
        g[n - 1] = bad[bi]; /* the tail too */
        ck_assert(!dt_scale_all_finite(g, n, 1.0f / 128));
        g[n - 1] = 0;
        g[3] = bad[bi];
        ck_assert(!dt_scale_all_finite(g, n, 1.0f / 128));
        g[3] = 0;
    }
    ck_assert(dt_scale_all_finite(g, n, 1.0f / 128));
    free(g);
}
END_TEST

START_TEST(test_prepare_matches_two_calls)
{
    /* the fused pre-processing is bit-identical to scale + check, then
     * preprocess, with decay, without, with clipping, and for adamw */
    const size_t n = 777;
    float *w = malloc(n * sizeof *w), *g0 = malloc(n * sizeof *g0);
    float *ga = malloc(n * sizeof *ga), *gb = malloc(n * sizeof *gb);
    ck_assert(w && g0 && ga && gb);
    for (size_t i = 0; i < n; i++) {
        w[i] = sinf((float)i) * 0.7f;
        g0[i] = cosf((float)i * 1.3f) * 9.0f;
    }
    const struct { dt_optimizer_name name; double wd, clip; } cases[] = {
        {DT_OPT_MOMENTUM, 1e-3, 0}, {DT_OPT_MOMENTUM, 0, 0}, {DT_OPT_SGD, 0.05, 0.5},
        {DT_OPT_ADAMW, 0.01, 0}, {DT_OPT_ADAM, 0.01, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        dt_optim_hparams hp = {.name = cases[c].name, .momentum = 0.9, .beta1 = 0.9,
                               .beta2 = 0.999, .eps = 1e-8,
                               .weight_decay = cases[c].wd, .clip_grad_norm = cases[c].clip};
        dt_optimizer opt;
        ck_assert_int_eq(dt_optim_init(&opt, &hp, n, NULL), DT_OK);
        memcpy(ga, g0, n * sizeof *ga);
        memcpy(gb, g0, n * sizeof *gb);
        ck_assert(dt_optim_prepare(&opt, w, ga, 1.0f / 96));
        ck_assert(dt_scale_all_finite(gb, n, 1.0f / 96));
        dt_optim_preprocess(&opt, w, gb);
        ck_assert_msg(memcmp(ga, gb, n * sizeof *ga) == 0, "case %zu differs", c);
        ga[n - 1] = NAN;
        ck_assert(!dt_optim_prepare(&opt, w, ga, 1.0f / 96));
        ga[0] = INFINITY;
        ck_assert(!dt_optim_prepare(&opt, w, ga, 1.0f / 96));
        dt_optim_free(&opt);
    }
    free(w), free(g0), free(ga), free(gb);
}
END_TEST

/* ---- no allocation in the hot path ---------------------------------------- */

START_TEST(test_step_allocates_nothing)
{
    for (int k = 0; k < DT_OPT_COUNT; k++) {
        dt_optim_hparams hp = hparams((dt_optimizer_name)k);
        hp.clip_grad_norm = 1.0;
        hp.weight_decay = 0.1;
        dt_optimizer opt;
        float w[64], g[64];
        for (int i = 0; i < 64; i++) w[i] = g[i] = (float)i * 0.01f;
        init_opt(&opt, &hp, 64);
        uint64_t before = dt_alloc_count();
        ck_assert(dt_all_finite(g, 64));
        dt_optim_preprocess(&opt, w, g);
        dt_optim_step(&opt, w, g, 0.01);
        ck_assert_uint_eq(dt_alloc_count(), before);
        dt_optim_free(&opt);
    }
}
END_TEST

static Suite *optim_suite(void)
{
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("rules");
    tcase_add_test(tc, test_state_slots);
    tcase_add_test(tc, test_init_zeroed_aligned);
    tcase_add_test(tc, test_sgd_step);
    tcase_add_test(tc, test_momentum_steps);
    tcase_add_test(tc, test_adagrad_steps);
    tcase_add_test(tc, test_adagrad_eps_outside_sqrt);
    tcase_add_test(tc, test_rmsprop_steps);
    tcase_add_test(tc, test_adadelta_steps);
    tcase_add_test(tc, test_adam_first_step_is_lr_sign);
    tcase_add_test(tc, test_adam_three_steps);
    tcase_add_test(tc, test_adamw_decoupled);
    tcase_add_test(tc, test_yogi_sign);
    suite_add_tcase(s, tc);
    TCase *tp = tcase_create("properties");
    tcase_add_test(tp, test_lr_zero_advances_state);
    tcase_add_test(tp, test_zero_gradient_stays_zero);
    tcase_add_test(tp, test_sgd_momentum_is_momentum);
    tcase_add_test(tp, test_clip_scale);
    tcase_add_test(tp, test_decay_before_clip);
    tcase_add_test(tp, test_preprocess_long_vector);
    tcase_add_test(tp, test_all_finite);
    tcase_add_test(tp, test_scale_all_finite);
    tcase_add_test(tp, test_prepare_matches_two_calls);
    tcase_add_test(tp, test_step_allocates_nothing);
    suite_add_tcase(s, tp);
    return s;
}

DT_CHECK_MAIN(optim_suite)
