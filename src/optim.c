/* optim.c - the optimizers and gradient pre-processing of tests/reference/SPEC.md.
 *
 * An optimizer is one line of the table `optimizers` below: its state slot
 * count and a step function over flat float arrays. Adding one means one
 * step function and one table line; nothing else switches on the name.
 *
 * How a step function is written (all of them follow the same pattern):
 *   - Every per-update scalar (1-beta, bias corrections, lr/bc1, ...) is
 *     computed once, in double, from the double hyperparameters, and then
 *     rounded to float once. In particular 1-beta and 1-beta^t both come from
 *     the same double beta: forming 1-beta in float32 from 0.999f while the
 *     bias correction uses 0.999 gives a systematic 1.3e-5 relative error per
 *     adam step (tests/reference/README.md, "float32 arrangement").
 *   - The loop body is pure float arithmetic on restrict pointers with no
 *     branches and no calls, so GCC/Clang vectorise it (sqrtf needs
 *     -fno-math-errno for that; without it GCC keeps a scalar sqrtss plus an
 *     errno fallback call and the loop stays scalar).
 *   - Adam-family updates use lr*mh/(sqrt(vh)+eps) rewritten as
 *     (lr/bc1)*m / (sqrt(v)*(1/sqrt(bc2)) + eps), torch's arrangement: two
 *     per-update scalars instead of two divisions per element.
 *   - A coordinate whose gradient and state are zero gets a zero update:
 *     every division has eps > 0 (or sqrt(eps) > 0) in its denominator.
 * An update with lr = 0 runs the full loop: state and t advance, w keeps its
 * value (w - 0*x = w for finite x). */
#include "dtrain/optim.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* One update over n coordinates. t is the update number (1 on the first
 * update), s0/s1 the state arenas (NULL when the optimizer has fewer). */
typedef void (*step_fn)(const dt_optim_hparams *hp, long t, double lr, size_t n,
                        float *restrict w, const float *restrict g, float *restrict s0,
                        float *restrict s1);

static void step_sgd(const dt_optim_hparams *hp, long t, double lr, size_t n,
                     float *restrict w, const float *restrict g, float *restrict s0,
                     float *restrict s1)
{
    (void)hp, (void)t, (void)s0, (void)s1;
    const float a = (float)lr;
    for (size_t i = 0; i < n; i++) w[i] -= a * g[i];
}

/* v = mu*v + g; d = nesterov ? g + mu*v : v; w -= lr*d. No dampening. */
static void step_momentum(const dt_optim_hparams *hp, long t, double lr, size_t n,
                          float *restrict w, const float *restrict g, float *restrict v,
                          float *restrict s1)
{
    (void)t, (void)s1;
    const float mu = (float)hp->momentum, a = (float)lr;
    if (hp->nesterov) {
        for (size_t i = 0; i < n; i++) {
            float vi = mu * v[i] + g[i];
            v[i] = vi;
            w[i] -= a * (g[i] + mu * vi);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float vi = mu * v[i] + g[i];
            v[i] = vi;
            w[i] -= a * vi;
        }
    }
}

/* s += g^2; w -= lr*g/(sqrt(s)+eps). */
static void step_adagrad(const dt_optim_hparams *hp, long t, double lr, size_t n,
                         float *restrict w, const float *restrict g, float *restrict s,
                         float *restrict s1)
{
    (void)t, (void)s1;
    const float a = (float)lr, eps = (float)hp->eps;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float si = s[i] + gi * gi;
        s[i] = si;
        w[i] -= a * gi / (sqrtf(si) + eps);
    }
}

/* s = alpha*s + (1-alpha)*g^2; w -= lr*g/(sqrt(s)+eps). */
static void step_rmsprop(const dt_optim_hparams *hp, long t, double lr, size_t n,
                         float *restrict w, const float *restrict g, float *restrict s,
                         float *restrict s1)
{
    (void)t, (void)s1;
    const float al = (float)hp->alpha, om = (float)(1.0 - hp->alpha);
    const float a = (float)lr, eps = (float)hp->eps;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float si = al * s[i] + om * (gi * gi);
        s[i] = si;
        w[i] -= a * gi / (sqrtf(si) + eps);
    }
}

/* s = rho*s + (1-rho)*g^2; d = sqrt(u+eps)/sqrt(s+eps)*g (with the new s);
 * u = rho*u + (1-rho)*d^2; w -= lr*d. */
static void step_adadelta(const dt_optim_hparams *hp, long t, double lr, size_t n,
                          float *restrict w, const float *restrict g, float *restrict s,
                          float *restrict u)
{
    (void)t;
    const float rho = (float)hp->rho, om = (float)(1.0 - hp->rho);
    const float a = (float)lr, eps = (float)hp->eps;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float si = rho * s[i] + om * (gi * gi);
        float d = sqrtf(u[i] + eps) / sqrtf(si + eps) * gi;
        s[i] = si;
        u[i] = rho * u[i] + om * (d * d);
        w[i] -= a * d;
    }
}

/* Per-update scalars shared by adam, adamw and yogi. */
typedef struct {
    float b1, omb1, b2, omb2; /* beta1, 1-beta1, beta2, 1-beta2 */
    float step;               /* lr / (1 - beta1^t) */
    float rbc2;               /* 1 / sqrt(1 - beta2^t) */
    float eps;
} adam_coef;

static adam_coef adam_coefs(const dt_optim_hparams *hp, long t, double lr)
{
    double bc1 = 1.0 - pow(hp->beta1, (double)t);
    double bc2 = 1.0 - pow(hp->beta2, (double)t);
    return (adam_coef){
        .b1 = (float)hp->beta1,
        .omb1 = (float)(1.0 - hp->beta1),
        .b2 = (float)hp->beta2,
        .omb2 = (float)(1.0 - hp->beta2),
        .step = (float)(lr / bc1),
        .rbc2 = (float)(1.0 / sqrt(bc2)),
        .eps = (float)hp->eps,
    };
}

/* Adam with a decoupled decay `dec` applied first (w -= dec*w with the old
 * w): adamw passes lr*weight_decay, adam 0 (w - 0*w is w exactly). */
static void adam_loop(const adam_coef c, float dec, size_t n, float *restrict w,
                      const float *restrict g, float *restrict m, float *restrict v)
{
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = c.b1 * m[i] + c.omb1 * gi;
        float vi = c.b2 * v[i] + c.omb2 * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        float wi = w[i] - dec * w[i];
        w[i] = wi - c.step * mi / (sqrtf(vi) * c.rbc2 + c.eps);
    }
}

static void step_adam(const dt_optim_hparams *hp, long t, double lr, size_t n,
                      float *restrict w, const float *restrict g, float *restrict m,
                      float *restrict v)
{
    adam_loop(adam_coefs(hp, t, lr), 0.0f, n, w, g, m, v);
}

/* Decoupled decay first, then adam. The coupled decay of
 * dt_optim_preprocess is skipped for this one (table). */
static void step_adamw(const dt_optim_hparams *hp, long t, double lr, size_t n,
                       float *restrict w, const float *restrict g, float *restrict m,
                       float *restrict v)
{
    adam_loop(adam_coefs(hp, t, lr), (float)(lr * hp->weight_decay), n, w, g, m, v);
}

/* v = v - (1-beta2)*sign(v - g^2)*g^2 with sign(0) = 0; otherwise adam. The
 * sign is two comparisons (no copysign, which would give sign(0) = 1). */
static void step_yogi(const dt_optim_hparams *hp, long t, double lr, size_t n,
                      float *restrict w, const float *restrict g, float *restrict m,
                      float *restrict v)
{
    const adam_coef c = adam_coefs(hp, t, lr);
    for (size_t i = 0; i < n; i++) {
        float gi = g[i], g2 = gi * gi, vo = v[i];
        float sg = (float)((vo > g2) - (vo < g2));
        float mi = c.b1 * m[i] + c.omb1 * gi;
        float vi = vo - c.omb2 * sg * g2;
        m[i] = mi;
        v[i] = vi;
        w[i] -= c.step * mi / (sqrtf(vi) * c.rbc2 + c.eps);
    }
}

typedef struct {
    const char *name;   /* SPEC's optimizer.name */
    int state_slots;    /* arenas of n floats */
    bool coupled_decay; /* dt_optim_preprocess adds weight_decay*w to g */
    step_fn step;
} optimizer_kind;

static const optimizer_kind optimizers[DT_OPT_COUNT] = {
    [DT_OPT_SGD] = {"sgd", 0, true, step_sgd},
    [DT_OPT_MOMENTUM] = {"momentum", 1, true, step_momentum},
    [DT_OPT_ADAGRAD] = {"adagrad", 1, true, step_adagrad},
    [DT_OPT_RMSPROP] = {"rmsprop", 1, true, step_rmsprop},
    [DT_OPT_ADADELTA] = {"adadelta", 2, true, step_adadelta},
    [DT_OPT_ADAM] = {"adam", 2, true, step_adam},
    [DT_OPT_ADAMW] = {"adamw", 2, false, step_adamw},
    [DT_OPT_YOGI] = {"yogi", 2, true, step_yogi},
};

/* The table entry that runs hp: SPEC's "sgd with momentum > 0 is momentum"
 * is the one alias. */
static const optimizer_kind *kind_of(const dt_optim_hparams *hp)
{
    if ((unsigned)hp->name >= DT_OPT_COUNT) DT_BUG("optimizer name %d out of range", (int)hp->name);
    if (hp->name == DT_OPT_SGD && hp->momentum > 0) return &optimizers[DT_OPT_MOMENTUM];
    return &optimizers[hp->name];
}

const char *dt_optimizer_str(dt_optimizer_name name)
{
    return (unsigned)name < DT_OPT_COUNT ? optimizers[name].name : "?";
}

int dt_optim_state_slots(const dt_optim_hparams *hp) { return kind_of(hp)->state_slots; }

dt_status dt_optim_init(dt_optimizer *opt, const dt_optim_hparams *hp, size_t n, dt_error *err)
{
    memset(opt, 0, sizeof *opt);
    opt->hp = *hp;
    opt->n = n;
    int slots = dt_optim_state_slots(hp);
    if (n > SIZE_MAX / sizeof(float))
        return dt_fail(err, DT_EINTERNAL, "optimizer state for %zu parameters is too large", n);
    for (int k = 0; k < slots; k++) {
        opt->state[k] = dt_alloc_aligned(n * sizeof(float)); /* zeroed */
        if (!opt->state[k]) {
            dt_optim_free(opt);
            return dt_fail(err, DT_EINTERNAL,
                           "out of memory for %s state (%d x %zu floats)",
                           kind_of(hp)->name, slots, n);
        }
        opt->slots = k + 1;
    }
    return DT_OK;
}

void dt_optim_free(dt_optimizer *opt)
{
    for (int k = 0; k < DT_OPTIM_MAX_SLOTS; k++) {
        dt_free(opt->state[k]);
        opt->state[k] = NULL;
    }
    opt->slots = 0;
}

/* Bit test instead of isfinite()/x*0: it vectorises as an integer OR
 * reduction (a float sum would need -ffast-math to be reordered) and it
 * survives -ffinite-math-only, which folds isfinite(x) to true. An exponent
 * of all ones is Inf or NaN. Blocks give an early exit on a bad gradient
 * without a branch in the inner loop. */
bool dt_all_finite(const float *g, size_t n)
{
    enum { BLOCK = 4096 };
    for (size_t i0 = 0; i0 < n; i0 += BLOCK) {
        size_t end = n - i0 < BLOCK ? n : i0 + BLOCK;
        uint32_t bad = 0;
        for (size_t i = i0; i < end; i++) {
            uint32_t u;
            memcpy(&u, &g[i], sizeof u);
            bad |= (u & 0x7f800000u) == 0x7f800000u;
        }
        if (bad) return false;
    }
    return true;
}

bool dt_scale_all_finite(float *g, size_t n, float scale)
{
    uint32_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        float v = g[i] * scale;
        g[i] = v;
        uint32_t u;
        memcpy(&u, &v, sizeof u);
        bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
    return !bad;
}

/* Sum of squares in double with 8 independent partial sums: the inner j
 * loop vectorises (a single running double sum would not be reordered by
 * the compiler) and the pairwise-ish split is also a little more accurate. */
enum { NORM_LANES = 8 };

static double sumsq_tail(const float *g, size_t i, size_t n, double *acc)
{
    double s = 0;
    for (; i < n; i++) s += (double)g[i] * (double)g[i];
    for (int j = 0; j < NORM_LANES; j++) s += acc[j];
    return s;
}

static double sumsq(const float *restrict g, size_t n)
{
    double acc[NORM_LANES] = {0};
    size_t i = 0;
    for (; i + NORM_LANES <= n; i += NORM_LANES)
        for (int j = 0; j < NORM_LANES; j++) acc[j] += (double)g[i + j] * (double)g[i + j];
    return sumsq_tail(g, i, n, acc);
}

/* g += wd*w and the sum of squares of the new g, in one pass. */
static double decay_sumsq(float *restrict g, const float *restrict w, float wd, size_t n)
{
    double acc[NORM_LANES] = {0};
    size_t i = 0;
    for (; i + NORM_LANES <= n; i += NORM_LANES)
        for (int j = 0; j < NORM_LANES; j++) {
            float gi = g[i + j] + wd * w[i + j];
            g[i + j] = gi;
            acc[j] += (double)gi * (double)gi;
        }
    for (size_t k = i; k < n; k++) g[k] += wd * w[k];
    return sumsq_tail(g, i, n, acc);
}

double dt_optim_preprocess(const dt_optimizer *opt, const float *w, float *g)
{
    const dt_optim_hparams *hp = &opt->hp;
    const size_t n = opt->n;
    const bool decay = kind_of(hp)->coupled_decay && hp->weight_decay != 0;
    if (hp->clip_grad_norm <= 0) {
        /* No clipping: the norm is not needed, only the decay (or nothing). */
        if (decay) {
            const float wd = (float)hp->weight_decay;
            for (size_t i = 0; i < n; i++) g[i] += wd * w[i];
        }
        return 0;
    }
    double ss;
    if (decay)
        ss = decay_sumsq(g, w, (float)hp->weight_decay, n);
    else
        ss = sumsq(g, n);
    double norm = sqrt(ss);
    double scale = hp->clip_grad_norm / (norm + 1e-6);
    if (scale < 1.0) {
        const float s = (float)scale;
        for (size_t i = 0; i < n; i++) g[i] *= s;
    }
    return norm;
}

/* g = g * scale + wd * w with the non-finite verdict of g * scale, in one
 * pass: the same operations in the same order as dt_scale_all_finite then
 * the decay loop (no contraction under -std=c11). */
static bool scale_check_decay(float *restrict g, const float *restrict w, size_t n, float scale,
                              float wd)
{
    uint32_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        float v = g[i] * scale;
        uint32_t u;
        memcpy(&u, &v, sizeof u);
        bad |= (u & 0x7f800000u) == 0x7f800000u;
        g[i] = v + wd * w[i];
    }
    return !bad;
}

bool dt_optim_prepare(const dt_optimizer *opt, const float *w, float *g, float scale)
{
    const dt_optim_hparams *hp = &opt->hp;
    const size_t n = opt->n;
    const bool decay = kind_of(hp)->coupled_decay && hp->weight_decay != 0;
    if (hp->clip_grad_norm > 0 || !decay) {
        if (!dt_scale_all_finite(g, n, scale)) return false;
        dt_optim_preprocess(opt, w, g);
        return true;
    }
    return scale_check_decay(g, w, n, scale, (float)hp->weight_decay);
}

void dt_optim_step(dt_optimizer *opt, float *w, const float *g, double lr)
{
    const optimizer_kind *k = kind_of(&opt->hp);
    DT_CHECK(opt->slots >= k->state_slots);
    opt->t++;
    k->step(&opt->hp, opt->t, lr, opt->n, w, g, opt->state[0], opt->state[1]);
}

/* ---- ranges: the sharded and the overlapped update ------------------------
 * The same elementwise operations as above on [lo, hi) of the arenas, so
 * that an update applied range by range is bit-identical to the whole one
 * (the norm for clipping aside, whose sum runs in another order). */

bool dt_optim_prepare_range(const dt_optimizer *opt, const float *w, float *g, float scale,
                            size_t lo, size_t hi, double *piece_sumsq)
{
    const dt_optim_hparams *hp = &opt->hp;
    const size_t n = hi - lo;
    const bool decay = kind_of(hp)->coupled_decay && hp->weight_decay != 0;
    *piece_sumsq = 0;
    if (hp->clip_grad_norm > 0 || !decay) {
        if (!dt_scale_all_finite(g + lo, n, scale)) return false;
        if (hp->clip_grad_norm > 0)
            *piece_sumsq = decay ? decay_sumsq(g + lo, w + lo, (float)hp->weight_decay, n)
                           : sumsq(g + lo, n);
        return true;
    }
    return scale_check_decay(g + lo, w + lo, n, scale, (float)hp->weight_decay);
}

float dt_optim_clip_factor(const dt_optimizer *opt, double total_sumsq)
{
    if (opt->hp.clip_grad_norm <= 0) return 1.0f;
    double scale = opt->hp.clip_grad_norm / (sqrt(total_sumsq) + 1e-6);
    return scale < 1.0 ? (float)scale : 1.0f;
}

void dt_optim_scale_range(float *g, size_t lo, size_t hi, float s)
{
    if (s == 1.0f) return;
    for (size_t i = lo; i < hi; i++) g[i] *= s;
}

void dt_optim_step_range(const dt_optimizer *opt, float *w, const float *g, double lr, size_t lo,
                         size_t hi, size_t at)
{
    const optimizer_kind *k = kind_of(&opt->hp);
    DT_CHECK(opt->slots >= k->state_slots && lo <= hi && at <= opt->n && hi - lo <= opt->n - at);
    float *s0 = opt->state[0] ? opt->state[0] + at : NULL;
    float *s1 = opt->state[1] ? opt->state[1] + at : NULL;
    k->step(&opt->hp, opt->t + 1, lr, hi - lo, w + lo, g + lo, s0, s1);
}

void dt_optim_advance(dt_optimizer *opt) { opt->t++; }

