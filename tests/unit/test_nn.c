/* test_nn.c - Check suite for the nn module.
 *
 * Gradient checks come in two strengths:
 *  1. Per kind (dense with every fused activation, relu/sigmoid/tanh,
 *     softmax-CE, conv at stride 1/2 and pad 0/2 with a non-square kernel,
 *     maxpool 2/2 and 3/2): the float32 kernels' backward is compared with
 *     central differences of a plain float64 re-implementation of the
 *     forward (which is itself first compared with the kernel's forward).
 *     The loss is L = sum_k r_k y_k with random r (so dy = r), h = 1e-5 in
 *     double: truncation h^2/6 |L'''| ~ 1e-11 and rounding 1e-16 |L| / h ~
 *     1e-10 are far below the float32 error of the kernels themselves,
 *     which accumulate at most a few hundred products: n * 2^-24 ~ 3e-5 of
 *     the sum of |terms|. Hence the test bound |g - fd| <= 1e-4 |fd| +
 *     1e-5 max|fd| + 1e-6 (the max term covers cancellation in sums).
 *     Kinks are kept out by construction: relu inputs have |x| >= 0.1,
 *     maxpool inputs are distinct values at least 1e-2 apart, and for a relu
 *     fused into dense/conv the test asserts that no pre-activation is
 *     within 1e-4 of 0 (>> h * |dz/dtheta|).
 *  2. Whole models (an MLP, a small LeNet-like stack) through the public API:
 *     float32 central differences of the summed cross-entropy on every
 *     parameter, h = 1e-3 (the logits are float32, so the loss carries a
 *     rounding error of a few ulp of its B terms, ~1e-7 * B; divided by 2h
 *     that is ~2e-4 for B = 4; truncation h^2/6 |L'''| is ~1e-6 at these
 *     scales). Bound: |g - fd| <= 5e-3 |fd| + 5e-4, and the relative L2 error
 *     over all checked entries < 2e-3 (measured: worst element at ~1/4 of
 *     the bound, L2 ~3e-4). Coordinates whose +-h perturbation changes a
 *     relu sign or a maxpool argmax anywhere (a kink inside [p-h, p+h]) are
 *     excluded, and the test asserts that fewer than 10% are.
 * A self-test corrupts one gradient entry and asserts the checkers notice,
 * so a checker that accepts anything fails the suite. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "../../src/nn/layers.h"
#include "dtrain/nn.h"
#include "dtrain/rng.h"

/* ---- helpers --------------------------------------------------------------- */
static void fill_uniform(float *a, long n, uint64_t seed, float lo, float hi)
{
    for (long i = 0; i < n; i++) a[i] = lo + (hi - lo) * (float)dt_rand_uniform(seed, 7, (uint64_t)i);
}

/* |v| in [0.1, 1], random sign: no relu kink within reach of any h used. */
static void fill_away_from_zero(float *a, long n, uint64_t seed)
{
    for (long i = 0; i < n; i++) {
        float v = 0.1f + 0.9f * (float)dt_rand_uniform(seed, 8, (uint64_t)i);
        a[i] = dt_rand_uniform(seed, 9, (uint64_t)i) < 0.5 ? -v : v;
    }
}

/* A random permutation of {k * 0.01 - n * 0.005}: distinct, 1e-2 apart. */
static void fill_distinct(float *a, long n, uint64_t seed)
{
    for (long i = 0; i < n; i++) a[i] = (float)((double)i * 0.01 - (double)n * 0.005);
    for (long i = n - 1; i > 0; i--) {
        long j = (long)dt_rand_below(seed, 5, (uint64_t)i, (uint64_t)i + 1);
        float t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static double act_d(nn_act a, double v)
{
    switch (a) {
    case NN_ACT_RELU: return v > 0 ? v : 0;
    case NN_ACT_SIGMOID: return 1.0 / (1.0 + exp(-v));
    case NN_ACT_TANH: return tanh(v);
    default: return v;
    }
}

/* ---- float64 references -------------------------------------------------- */
static void ref_dense(double *y, const double *x, const double *w, const double *b, long B,
                      int in, int out, nn_act act, double *min_abs_z)
{
    for (long r = 0; r < B; r++)
        for (int o = 0; o < out; o++) {
            double z = b[o];
            for (int i = 0; i < in; i++) z += w[o * in + i] * x[r * in + i];
            if (min_abs_z && fabs(z) < *min_abs_z) *min_abs_z = fabs(z);
            y[r * out + o] = act_d(act, z);
        }
}

static void ref_conv(double *y, const double *x, const double *w, const double *b, long B,
                     const nn_conv_geom *g, nn_act act, double *min_abs_z)
{
    for (long n = 0; n < B; n++)
        for (int o = 0; o < g->out_c; o++)
            for (int i = 0; i < g->oh; i++)
                for (int j = 0; j < g->ow; j++) {
                    double z = b[o];
                    for (int c = 0; c < g->c; c++)
                        for (int p = 0; p < g->kh; p++)
                            for (int q = 0; q < g->kw; q++) {
                                int ih = i * g->stride + p - g->pad, iw = j * g->stride + q - g->pad;
                                if (ih < 0 || ih >= g->h || iw < 0 || iw >= g->w) continue;
                                z += w[((o * g->c + c) * g->kh + p) * g->kw + q] *
                                     x[((n * g->c + c) * g->h + ih) * g->w + iw];
                            }
                    if (min_abs_z && fabs(z) < *min_abs_z) *min_abs_z = fabs(z);
                    y[((n * g->out_c + o) * g->oh + i) * g->ow + j] = act_d(act, z);
                }
}

static void ref_maxpool(double *y, const double *x, long B, int c, int h, int w, int size,
                        int stride, int oh, int ow)
{
    for (long p = 0; p < B * c; p++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                double m = -INFINITY;
                for (int a = 0; a < size; a++)
                    for (int b = 0; b < size; b++) {
                        double v = x[p * h * w + (i * stride + a) * w + j * stride + b];
                        if (v > m) m = v;
                    }
                y[p * oh * ow + i * ow + j] = m;
            }
}

static double ref_ce(const double *z, const int *labels, long B, int C)
{
    double L = 0;
    for (long r = 0; r < B; r++) {
        double m = z[r * C];
        for (int j = 1; j < C; j++) m = fmax(m, z[r * C + j]);
        double s = 0;
        for (int j = 0; j < C; j++) s += exp(z[r * C + j] - m);
        L += m + log(s) - z[r * C + labels[r]];
    }
    return L;
}

/* ---- per-kind finite-difference harness ----------------------------------- */
static bool quiet; /* the self-test's corrupted runs fail on purpose */
typedef struct fd_case fd_case;
struct fd_case {
    const char *name;
    long nx, np, ny;
    /* float64 forward y(x, p) */
    void (*ref)(const fd_case *c, double *y, const double *x, const double *p);
    /* float32 kernels: forward into y, backward from dy (may be clobbered),
     * dx overwritten, dp accumulated */
    void (*run)(const fd_case *c, float *y, float *dx, float *dp, const float *x, const float *p,
                float *dy);
    long B;
    int in, out;
    nn_act act;
    nn_conv_geom g;
    long chunk;
    int c, h, w, size, stride, oh, ow;
    const int *labels;
    double min_abs_z; /* smallest |pre-activation| seen by ref (kink guard) */
};

static double fd_loss(fd_case *c, const double *x, const double *p, const double *r, double *y)
{
    c->ref(c, y, x, p);
    double L = 0;
    for (long k = 0; k < c->ny; k++) L += r[k] * y[k];
    return L;
}

/* Compare analytic gradient g[n] with central differences of L over v[n]. */
static int fd_compare(fd_case *c, const char *what, double *v, long n, const float *g,
                      double *xd, double *pd, const double *r, double *y)
{
    const double h = 1e-5;
    double *fd = malloc(sizeof(double) * (size_t)(n + 1));
    double gmax = 0;
    for (long j = 0; j < n; j++) {
        double keep = v[j];
        v[j] = keep + h;
        double lp = fd_loss(c, xd, pd, r, y);
        v[j] = keep - h;
        double lm = fd_loss(c, xd, pd, r, y);
        v[j] = keep;
        fd[j] = (lp - lm) / (2 * h);
        gmax = fmax(gmax, fabs(fd[j]));
    }
    int bad = 0;
    for (long j = 0; j < n; j++) {
        double tol = 1e-4 * fabs(fd[j]) + 1e-5 * gmax + 1e-6;
        if (!(fabs((double)g[j] - fd[j]) <= tol)) {
            if (bad < 3 && !quiet)
                fprintf(stderr, "  %s %s[%ld]: analytic %.8g, finite difference %.8g\n", c->name,
                        what, j, (double)g[j], fd[j]);
            bad++;
        }
    }
    free(fd);
    return bad;
}

/* Run the case; corrupt = 1 adds an error of 1e-3 * (1 + max) to one dx
 * entry, 2 to one parameter gradient entry. Returns the number of bad values. */
static int fd_check(fd_case *c, const float *x, const float *p, int corrupt)
{
    long nx = c->nx, np = c->np, ny = c->ny;
    float *yk = malloc(sizeof(float) * (size_t)ny), *dy = malloc(sizeof(float) * (size_t)ny);
    float *dx = malloc(sizeof(float) * (size_t)nx), *dp = malloc(sizeof(float) * (size_t)(np + 1));
    double *xd = malloc(sizeof(double) * (size_t)nx), *pd = malloc(sizeof(double) * (size_t)(np + 1));
    double *r = malloc(sizeof(double) * (size_t)ny), *y = malloc(sizeof(double) * (size_t)ny);
    fill_uniform(dy, ny, 99, -1.0f, 1.0f);
    for (long k = 0; k < ny; k++) r[k] = dy[k];
    for (long k = 0; k < nx; k++) xd[k] = x[k];
    for (long k = 0; k < np; k++) pd[k] = p[k];
    /* dp starts at 0.25: backward must ADD to it */
    for (long k = 0; k < np; k++) dp[k] = 0.25f;
    c->run(c, yk, dx, dp, x, p, dy);
    for (long k = 0; k < np; k++) dp[k] -= 0.25f;
    if (corrupt == 1) dx[nx / 2] += 1e-3f * (1.0f + fabsf(dx[nx / 2]));
    if (corrupt == 2) dp[np / 2] += 1e-3f * (1.0f + fabsf(dp[np / 2]));

    int bad = 0;
    c->min_abs_z = INFINITY;
    c->ref(c, y, xd, pd);
    for (long k = 0; k < ny; k++)
        if (!(fabs((double)yk[k] - y[k]) <= 1e-5 * fabs(y[k]) + 1e-5)) {
            if (bad < 3 && !quiet)
                fprintf(stderr, "  %s y[%ld]: kernel %.8g, reference %.8g\n", c->name, k,
                        (double)yk[k], y[k]);
            bad++;
        }
    if (c->act == NN_ACT_RELU) ck_assert_msg(c->min_abs_z > 1e-4, "%s: a relu kink at %g", c->name, c->min_abs_z);
    bad += fd_compare(c, "dx", xd, nx, dx, xd, pd, r, y);
    if (np) bad += fd_compare(c, "dp", pd, np, dp, xd, pd, r, y);
    free(yk);
    free(dy);
    free(dx);
    free(dp);
    free(xd);
    free(pd);
    free(r);
    free(y);
    return bad;
}

/* dense: p = [W (out x in), b (out)] */
static void dense_ref(const fd_case *c, double *y, const double *x, const double *p)
{
    ref_dense(y, x, p, p + c->in * c->out, c->B, c->in, c->out, c->act,
              (double *)&c->min_abs_z);
}
static void dense_run(const fd_case *c, float *y, float *dx, float *dp, const float *x,
                      const float *p, float *dy)
{
    long nw = (long)c->in * c->out;
    nn_dense_forward(y, x, p, p + nw, c->B, c->in, c->out, c->act);
    nn_dense_backward(dx, dp, dp + nw, dy, y, x, p, c->B, c->in, c->out, c->act);
}

static int check_dense(nn_act act, int corrupt)
{
    fd_case c = {.name = "dense", .ref = dense_ref, .run = dense_run, .B = 4, .in = 7, .out = 5,
                 .act = act};
    c.nx = c.B * c.in;
    c.np = (long)c.in * c.out + c.out;
    c.ny = c.B * c.out;
    float x[28], p[40];
    fill_uniform(x, c.nx, 1, -1, 1);
    fill_uniform(p, c.np, 2, -0.6f, 0.6f);
    return fd_check(&c, x, p, corrupt);
}

START_TEST(test_dense_grad)
{
    const nn_act acts[] = {NN_ACT_NONE, NN_ACT_RELU, NN_ACT_SIGMOID, NN_ACT_TANH};
    for (size_t i = 0; i < DT_ARRAY_LEN(acts); i++)
        ck_assert_msg(check_dense(acts[i], 0) == 0, "dense with fused act %d", (int)acts[i]);
}
END_TEST

/* activations on their own (the in-place kernels the unfused kinds use) */
static void act_ref(const fd_case *c, double *y, const double *x, const double *p)
{
    (void)p;
    for (long k = 0; k < c->nx; k++) y[k] = act_d(c->act, x[k]);
}
static void act_run(const fd_case *c, float *y, float *dx, float *dp, const float *x,
                    const float *p, float *dy)
{
    (void)dp;
    (void)p;
    memcpy(y, x, sizeof(float) * (size_t)c->nx);
    nn_act_forward(c->act, y, y, c->nx); /* in place, as the model runs it */
    memcpy(dx, dy, sizeof(float) * (size_t)c->nx);
    nn_act_backward(c->act, dx, dx, y, c->nx);
}

START_TEST(test_activation_grad)
{
    const nn_act acts[] = {NN_ACT_RELU, NN_ACT_SIGMOID, NN_ACT_TANH};
    for (size_t i = 0; i < DT_ARRAY_LEN(acts); i++) {
        fd_case c = {.name = "act", .ref = act_ref, .run = act_run, .act = acts[i]};
        c.nx = c.ny = 40;
        float x[40];
        fill_away_from_zero(x, 40, 3 + i);
        for (int k = 0; k < 5; k++) x[k] *= 4; /* reach the saturated parts */
        ck_assert_msg(fd_check(&c, x, NULL, 0) == 0, "activation %d", (int)acts[i]);
    }
}
END_TEST

START_TEST(test_relu_at_zero)
{
    float x[3] = {0.0f, -0.0f, 1.0f}, y[3], dy[3] = {1, 1, 1}, dx[3];
    nn_act_forward(NN_ACT_RELU, y, x, 3);
    nn_act_backward(NN_ACT_RELU, dx, dy, y, 3);
    ck_assert(y[0] == 0.0f && y[1] == 0.0f && y[2] == 1.0f);
    ck_assert(dx[0] == 0.0f && dx[1] == 0.0f && dx[2] == 1.0f); /* relu'(0) = 0 */
}
END_TEST

/* softmax-CE: y = [summed loss], r[0] scales it */
static void ce_ref(const fd_case *c, double *y, const double *x, const double *p)
{
    (void)p;
    y[0] = ref_ce(x, c->labels, c->B, c->out);
}
static void ce_run(const fd_case *c, float *y, float *dx, float *dp, const float *x,
                   const float *p, float *dy)
{
    (void)dp;
    (void)p;
    double loss = 0;
    nn_softmax_ce_forward(x, c->labels, c->B, c->out, &loss, NULL);
    y[0] = (float)loss;
    nn_softmax_ce_backward(dx, x, c->labels, c->B, c->out);
    for (long k = 0; k < c->nx; k++) dx[k] *= dy[0];
}

START_TEST(test_softmax_ce_grad)
{
    int labels[5] = {0, 3, 2, 3, 1};
    fd_case c = {.name = "softmax-ce", .ref = ce_ref, .run = ce_run, .B = 5, .out = 4,
                 .labels = labels};
    c.nx = 20;
    c.ny = 1;
    float z[20];
    fill_uniform(z, 20, 11, -3, 3);
    z[0] = 40; /* a dominant logit: stability */
    ck_assert_int_eq(fd_check(&c, z, NULL, 0), 0);
}
END_TEST

START_TEST(test_softmax_ce_values)
{
    /* loss and accuracy against hand values; ties go to the first maximum */
    float z[4 * 3] = {1, 2, 0, 5, 5, 1, 5, 5, 1, 1000, 0, -1000};
    int y[4] = {1, 0, 1, 1};
    double loss = 0;
    long right = 0;
    nn_softmax_ce_forward(z, y, 4, 3, &loss, &right);
    ck_assert_int_eq(right, 2); /* rows 0 and 1 */
    double l0 = log(exp(1.0) + exp(2.0) + 1.0) - 2.0;
    double l12 = 5.0 + log(2.0 + exp(-4.0));
    double expect = l0 + (l12 - 5.0) + (l12 - 5.0) + 1000.0;
    ck_assert_msg(fabs(loss - expect) < 1e-5, "loss %.9g expected %.9g", loss, expect);
    ck_assert(isfinite(loss));
    float dz[12];
    nn_softmax_ce_backward(dz, z, y, 4, 3);
    ck_assert(fabsf(dz[9] - 1.0f) < 1e-6f && fabsf(dz[10] + 1.0f) < 1e-6f && dz[11] == 0.0f);
    for (int r = 0; r < 4; r++) ck_assert(fabsf(dz[3 * r] + dz[3 * r + 1] + dz[3 * r + 2]) < 1e-6f);
}
END_TEST

/* conv: p = [W (O x C x kh x kw), b (O)] */
static void conv_ref(const fd_case *c, double *y, const double *x, const double *p)
{
    long nw = (long)c->g.out_c * c->g.c * c->g.kh * c->g.kw;
    ref_conv(y, x, p, p + nw, c->B, &c->g, c->act, (double *)&c->min_abs_z);
}
static void conv_run(const fd_case *c, float *y, float *dx, float *dp, const float *x,
                     const float *p, float *dy)
{
    long nw = (long)c->g.out_c * c->g.c * c->g.kh * c->g.kw;
    float *ws = malloc(sizeof(float) * nn_conv_workspace(&c->g, c->chunk));
    nn_conv_forward(y, x, p, p + nw, c->B, &c->g, c->act, ws, c->chunk);
    nn_conv_backward(dx, dp, dp + nw, dy, y, x, p, c->B, &c->g, c->act, ws, c->chunk);
    free(ws);
}

static int check_conv(int C, int H, int W, int O, int kh, int kw, int stride, int pad, long B,
                      long chunk, nn_act act, int corrupt)
{
    fd_case c = {.name = "conv", .ref = conv_ref, .run = conv_run, .B = B, .chunk = chunk,
                 .act = act,
                 .g = {.c = C, .h = H, .w = W, .out_c = O, .kh = kh, .kw = kw, .stride = stride,
                       .pad = pad}};
    ck_assert_int_eq(nn_conv_geom_init(&c.g), 0);
    c.nx = B * C * H * W;
    c.np = (long)O * C * kh * kw + O;
    c.ny = B * O * c.g.oh * c.g.ow;
    float *x = malloc(sizeof(float) * (size_t)c.nx), *p = malloc(sizeof(float) * (size_t)c.np);
    fill_uniform(x, c.nx, 21, -1, 1);
    fill_uniform(p, c.np, 22, -0.5f, 0.5f);
    int bad = fd_check(&c, x, p, corrupt);
    free(x);
    free(p);
    return bad;
}

START_TEST(test_conv_grad)
{
    /* C H W O kh kw stride pad B chunk */
    ck_assert_int_eq(check_conv(2, 6, 7, 3, 3, 3, 1, 0, 2, 1, NN_ACT_NONE, 0), 0);
    ck_assert_int_eq(check_conv(2, 6, 7, 3, 3, 3, 1, 2, 2, 2, NN_ACT_NONE, 0), 0);
    ck_assert_int_eq(check_conv(2, 7, 6, 3, 3, 3, 2, 0, 3, 2, NN_ACT_NONE, 0), 0);
    ck_assert_int_eq(check_conv(2, 7, 6, 3, 3, 3, 2, 2, 3, 1, NN_ACT_NONE, 0), 0);
    ck_assert_int_eq(check_conv(3, 5, 6, 2, 4, 3, 1, 2, 2, 2, NN_ACT_NONE, 0), 0); /* kh != kw */
    ck_assert_int_eq(check_conv(1, 9, 8, 2, 5, 2, 2, 1, 3, 3, NN_ACT_NONE, 0), 0);
    ck_assert_int_eq(check_conv(2, 6, 6, 3, 3, 3, 1, 1, 2, 2, NN_ACT_TANH, 0), 0); /* fused */
    ck_assert_int_eq(check_conv(2, 6, 6, 3, 3, 3, 1, 1, 2, 1, NN_ACT_SIGMOID, 0), 0);
    ck_assert_int_eq(check_conv(1, 5, 5, 2, 5, 5, 1, 0, 2, 2, NN_ACT_NONE, 0), 0); /* 1x1 out */
}
END_TEST

/* The first layer's backward is asked for no dx (dx == NULL), which is when
 * a 1-channel stride-1 conv forms dW and db with its direct kernel: run that
 * for the parameter gradient and take dx from a second backward into a
 * scratch gradient. */
static void conv_run_nodx(const fd_case *c, float *y, float *dx, float *dp, const float *x,
                          const float *p, float *dy)
{
    long nw = (long)c->g.out_c * c->g.c * c->g.kh * c->g.kw;
    float *ws = malloc(sizeof(float) * nn_conv_workspace(&c->g, c->chunk));
    float *scratch = calloc((size_t)c->np, sizeof(float));
    nn_conv_forward(y, x, p, p + nw, c->B, &c->g, c->act, ws, c->chunk);
    nn_conv_backward(NULL, dp, dp + nw, dy, y, x, p, c->B, &c->g, c->act, ws, c->chunk);
    nn_conv_backward(dx, scratch, scratch + nw, dy, y, x, p, c->B, &c->g, c->act, ws, c->chunk);
    free(scratch);
    free(ws);
}

static int check_conv_nodx(int H, int W, int O, int kh, int kw, int pad, long B, nn_act act,
                           int corrupt)
{
    fd_case c = {.name = "conv (no dx)", .ref = conv_ref, .run = conv_run_nodx, .B = B,
                 .chunk = 1, .act = act,
                 .g = {.c = 1, .h = H, .w = W, .out_c = O, .kh = kh, .kw = kw, .stride = 1,
                       .pad = pad}};
    ck_assert_int_eq(nn_conv_geom_init(&c.g), 0);
    c.nx = B * H * W;
    c.np = (long)O * kh * kw + O;
    c.ny = B * O * c.g.oh * c.g.ow;
    float *x = malloc(sizeof(float) * (size_t)c.nx), *p = malloc(sizeof(float) * (size_t)c.np);
    fill_uniform(x, c.nx, 23, -1, 1);
    fill_uniform(p, c.np, 24, -0.5f, 0.5f);
    int bad = fd_check(&c, x, p, corrupt);
    free(x);
    free(p);
    return bad;
}

START_TEST(test_conv_grad_one_channel)
{
    /* H W O kh kw pad B: output rows of 35 (two 32-column blocks, a ragged
     * tail), an odd number of output channels, kh != kw, the widest kernel
     * the direct path takes (kw 8) and the narrowest */
    ck_assert_int_eq(check_conv_nodx(6, 35, 3, 5, 5, 2, 2, NN_ACT_NONE, 0), 0);
    ck_assert_int_eq(check_conv_nodx(5, 9, 2, 3, 2, 1, 3, NN_ACT_TANH, 0), 0);
    ck_assert_int_eq(check_conv_nodx(4, 12, 4, 2, 8, 0, 2, NN_ACT_SIGMOID, 0), 0);
    ck_assert_int_eq(check_conv_nodx(5, 7, 1, 1, 1, 0, 2, NN_ACT_NONE, 0), 0);
    ck_assert_int_eq(check_conv_nodx(4, 30, 2, 5, 5, 2, 2, NN_ACT_RELU, 0), 0);
    quiet = true; /* the checker must see a wrong weight gradient */
    ck_assert_int_gt(check_conv_nodx(6, 35, 3, 5, 5, 2, 2, NN_ACT_NONE, 2), 0);
    quiet = false;
}
END_TEST

/* The 16-lane kernels (output channels in multiples of 16, the first conv's
 * channel groups of up to 6) against the double reference, at each
 * instruction-set limit; where the CPU lacks AVX-512 both runs take AVX2. */
START_TEST(test_conv_grad_wide)
{
    for (int isa = NN_ISA_AVX2; isa <= NN_ISA_AVX512; isa++) {
        nn_leaf_limit_isa(isa);
        /* C H W O kh kw stride pad B chunk: conv2 of LeNet in small (pixel
         * blocks of 5 in pairs); rows of 7 and 13 (blocks of 6, a pair and a
         * single); 32 channels, kh != kw; 20 channels (no 16-lane kernel) */
        ck_assert_int_eq(check_conv(3, 9, 14, 16, 5, 5, 1, 0, 2, 2, NN_ACT_RELU, 0), 0);
        ck_assert_int_eq(check_conv(2, 7, 9, 16, 3, 3, 1, 1, 2, 1, NN_ACT_NONE, 0), 0);
        ck_assert_int_eq(check_conv(2, 5, 13, 32, 2, 3, 1, 1, 2, 2, NN_ACT_TANH, 0), 0);
        ck_assert_int_eq(check_conv(2, 6, 6, 20, 3, 3, 1, 1, 2, 2, NN_ACT_NONE, 0), 0);
        /* 12 channels in 16 lanes; pad 2 > the rows' offsets of col2im */
        ck_assert_int_eq(check_conv(2, 6, 9, 12, 3, 3, 1, 2, 3, 2, NN_ACT_TANH, 0), 0);
        /* one input channel: 7 and 13 outputs (groups 6 + 1 and 6 + 6 + 1) */
        ck_assert_int_eq(check_conv_nodx(6, 35, 7, 5, 5, 2, 2, NN_ACT_RELU, 0), 0);
        ck_assert_int_eq(check_conv_nodx(4, 30, 13, 3, 4, 1, 2, NN_ACT_SIGMOID, 0), 0);
    }
    nn_leaf_limit_isa(NN_ISA_AVX512);
}
END_TEST

/* conv forward + backward of one geometry at an ISA limit: y | dx | dW | db */
static float *conv_outputs(int C, int H, int W, int O, int k, int pad, long B, nn_act act, int isa,
                           size_t *n)
{
    nn_conv_geom g = {.c = C, .h = H, .w = W, .out_c = O, .kh = k, .kw = k, .stride = 1,
                      .pad = pad};
    ck_assert_int_eq(nn_conv_geom_init(&g), 0);
    const long nx = B * C * H * W, nw = (long)O * C * k * k, ny = B * O * g.oh * g.ow;
    float *x = malloc(sizeof(float) * (size_t)nx), *p = malloc(sizeof(float) * (size_t)(nw + O));
    fill_uniform(x, nx, 31, -1, 1);
    fill_uniform(p, nw + O, 32, -0.5f, 0.5f);
    *n = (size_t)(ny + nx + nw + O);
    float *out = calloc(*n, sizeof(float)), *dy = malloc(sizeof(float) * (size_t)ny);
    fill_uniform(dy, ny, 33, -1, 1);
    float *ws = malloc(sizeof(float) * nn_conv_workspace(&g, 2));
    nn_leaf_limit_isa(isa);
    nn_conv_forward(out, x, p, p + nw, B, &g, act, ws, 2);
    float *dx = out + ny, *dw = dx + nx;
    nn_conv_backward(C > 1 ? dx : NULL, dw, dw + nw, dy, out, x, p, B, &g, act, ws, 2);
    nn_leaf_limit_isa(NN_ISA_AVX512);
    free(ws);
    free(dy);
    free(p);
    free(x);
    return out;
}

/* The AVX-512 convolution kernels give the AVX2 ones' bits: LeNet's two
 * convolutions on 3 samples, a 32-channel one with odd rows, 12 channels
 * in 16 lanes with a wide pad, 13 channels of one input channel. */
START_TEST(test_conv_wide_same_bits)
{
    const int geo[][6] = {/* C H W O k pad */ {1, 28, 28, 6, 5, 2},
                          {6, 14, 14, 16, 5, 0},
                          {3, 9, 13, 32, 3, 1},
                          {2, 8, 11, 12, 3, 2},
                          {1, 11, 40, 13, 3, 1}};
    for (size_t i = 0; i < DT_ARRAY_LEN(geo); i++) {
        const int *q = geo[i];
        size_t na, nb;
        float *a = conv_outputs(q[0], q[1], q[2], q[3], q[4], q[5], 3, NN_ACT_RELU, NN_ISA_AVX2, &na);
        float *b = conv_outputs(q[0], q[1], q[2], q[3], q[4], q[5], 3, NN_ACT_RELU, NN_ISA_AVX512, &nb);
        ck_assert(na == nb);
        size_t diff = 0;
        for (size_t k = 0; k < na; k++) diff += memcmp(&a[k], &b[k], sizeof(float)) != 0;
        ck_assert_msg(diff == 0, "geometry %zu: %zu of %zu values differ", i, diff, na);
        free(a);
        free(b);
    }
}
END_TEST

/* dx of several input channels with samples in the vector lanes: each
 * geometry of conv.c's kernel table, and one without a kernel (the GEMM),
 * at both ISA limits, against the sum in double; and a sample's dx has the
 * same bits alone as in a batch of 37 (two full groups of 16 lanes and a
 * short one, so every lane position and both group edges). */
START_TEST(test_conv_dx_lanes)
{
    const int geo[][6] = {/* C H W O k pad */ {6, 14, 14, 16, 5, 0}, {2, 14, 14, 3, 5, 2},
                          {3, 16, 16, 4, 3, 1},  {2, 14, 14, 5, 3, 1}, {4, 8, 8, 8, 3, 1},
                          {2, 12, 12, 3, 5, 0}};
    const long B = 37, probe[] = {0, 5, 15, 16, 31, 32, 36};
    for (int isa = NN_ISA_AVX2; isa <= NN_ISA_AVX512; isa++)
        for (size_t t = 0; t < DT_ARRAY_LEN(geo); t++) {
            const int *q = geo[t];
            nn_conv_geom g = {.c = q[0], .h = q[1], .w = q[2], .out_c = q[3], .kh = q[4],
                              .kw = q[4], .stride = 1, .pad = q[5]};
            ck_assert_int_eq(nn_conv_geom_init(&g), 0);
            const long in = (long)g.c * g.h * g.w, out = (long)g.out_c * g.oh * g.ow;
            const long nw = (long)g.out_c * g.c * g.kh * g.kw;
            float *x = malloc(sizeof(float) * (size_t)(B * in)), *w = malloc(sizeof(float) * (size_t)(nw + g.out_c));
            float *dy = malloc(sizeof(float) * (size_t)(B * out)), *y = calloc((size_t)(B * out), sizeof(float));
            float *dx = malloc(sizeof(float) * (size_t)(B * in)), *dx1 = malloc(sizeof(float) * (size_t)in);
            float *dw = calloc((size_t)(nw + g.out_c), sizeof(float));
            float *ws = malloc(sizeof(float) * nn_conv_workspace(&g, 2));
            fill_uniform(x, B * in, 51 + t, -1, 1);
            fill_uniform(w, nw + g.out_c, 52 + t, -0.5f, 0.5f);
            fill_uniform(dy, B * out, 53 + t, -1, 1);
            nn_leaf_limit_isa(isa);
            nn_conv_backward(dx, dw, dw + nw, dy, y, x, w, B, &g, NN_ACT_NONE, ws, 2);
            size_t bad = 0;
            for (long n = 0; n < B; n++)
                for (int c = 0; c < g.c; c++)
                    for (int i = 0; i < g.h; i++)
                        for (int j = 0; j < g.w; j++) {
                            double ref = 0, mag = 0;
                            for (int o = 0; o < g.out_c; o++)
                                for (int ki = 0; ki < g.kh; ki++)
                                    for (int kj = 0; kj < g.kw; kj++) {
                                        const int r = i + g.pad - ki, s = j + g.pad - kj;
                                        if (r < 0 || r >= g.oh || s < 0 || s >= g.ow) continue;
                                        const double v = (double)dy[((n * g.out_c + o) * g.oh + r) * g.ow + s] *
                                                         w[((o * g.c + c) * g.kh + ki) * g.kw + kj];
                                        ref += v;
                                        mag += fabs(v);
                                    }
                            const double got = dx[n * in + ((long)c * g.h + i) * g.w + j];
                            bad += fabs(got - ref) > 1e-6 * (mag + 1e-3);
                        }
            ck_assert_msg(bad == 0, "isa %d geometry %zu: %zu of %ld values off the sum", isa, t, bad, B * in);
            for (size_t k = 0; k < DT_ARRAY_LEN(probe); k++) {
                const long n = probe[k];
                nn_conv_backward(dx1, dw, dw + nw, dy + n * out, y, x + n * in, w, 1, &g, NN_ACT_NONE, ws, 2);
                ck_assert_msg(memcmp(dx1, dx + n * in, sizeof(float) * (size_t)in) == 0,
                              "isa %d geometry %zu: sample %ld alone differs", isa, t, n);
            }
            nn_leaf_limit_isa(NN_ISA_AVX512);
            free(ws);
            free(dw);
            free(dx1);
            free(dx);
            free(y);
            free(dy);
            free(w);
            free(x);
        }
}
END_TEST

/* 2x2/2 max pooling with AVX-512 gives the C loop's maxima, indices and
 * gradients, ties (first maximum) and NaN included; rows of 28, 10, 9
 * (odd: a column dropped) and 40 (16 + 4 outputs). */
START_TEST(test_maxpool_same_bits)
{
    const int geo[][2] = {{28, 28}, {10, 10}, {7, 9}, {6, 40}};
    for (size_t t = 0; t < DT_ARRAY_LEN(geo); t++) {
        const int h = geo[t][0], w = geo[t][1], oh = h / 2, ow = w / 2, C = 3;
        const long nx = (long)C * h * w, ny = (long)C * oh * ow;
        float *x = malloc(sizeof(float) * (size_t)nx), *dy = malloc(sizeof(float) * (size_t)ny);
        fill_uniform(x, nx, 41 + (uint64_t)t, -2, 2);
        for (long i = 0; i < nx; i++) x[i] = roundf(x[i]); /* 5 levels: many ties */
        x[3] = NAN;
        x[nx - 2] = NAN;
        fill_uniform(dy, ny, 43, -1, 1);
        dy[0] = -0.0f;
        float *y[2], *dx[2];
        int32_t *idx[2];
        for (int r = 0; r < 2; r++) {
            y[r] = malloc(sizeof(float) * (size_t)ny);
            idx[r] = malloc(sizeof(int32_t) * (size_t)ny);
            dx[r] = malloc(sizeof(float) * (size_t)nx);
            nn_leaf_limit_isa(r ? NN_ISA_AVX512 : NN_ISA_AVX2);
            nn_maxpool_forward(y[r], idx[r], x, 1, C, h, w, 2, 2, oh, ow);
            nn_maxpool_backward(dx[r], dy, idx[r], 1, C, h, w, 2, 2, oh, ow);
        }
        nn_leaf_limit_isa(NN_ISA_AVX512);
        ck_assert_msg(memcmp(y[0], y[1], sizeof(float) * (size_t)ny) == 0, "geometry %zu: y", t);
        ck_assert_msg(memcmp(idx[0], idx[1], sizeof(int32_t) * (size_t)ny) == 0, "geometry %zu: idx", t);
        ck_assert_msg(memcmp(dx[0], dx[1], sizeof(float) * (size_t)nx) == 0, "geometry %zu: dx", t);
        for (int r = 0; r < 2; r++) {
            free(y[r]);
            free(idx[r]);
            free(dx[r]);
        }
        free(x);
        free(dy);
    }
}
END_TEST

START_TEST(test_conv_grad_relu)
{
    ck_assert_int_eq(check_conv(2, 6, 6, 3, 3, 3, 2, 2, 2, 2, NN_ACT_RELU, 0), 0);
}
END_TEST

/* maxpool: distinct inputs, so every window has one maximum by >= 1e-2 */
static void pool_ref(const fd_case *c, double *y, const double *x, const double *p)
{
    (void)p;
    ref_maxpool(y, x, c->B, c->c, c->h, c->w, c->size, c->stride, c->oh, c->ow);
}
static void pool_run(const fd_case *c, float *y, float *dx, float *dp, const float *x,
                     const float *p, float *dy)
{
    (void)dp;
    (void)p;
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)c->ny);
    nn_maxpool_forward(y, idx, x, c->B, c->c, c->h, c->w, c->size, c->stride, c->oh, c->ow);
    nn_maxpool_backward(dx, dy, idx, c->B, c->c, c->h, c->w, c->size, c->stride, c->oh, c->ow);
    free(idx);
}

static int check_pool(int C, int H, int W, int size, int stride, long B, int corrupt)
{
    fd_case c = {.name = "maxpool", .ref = pool_ref, .run = pool_run, .B = B, .c = C, .h = H,
                 .w = W, .size = size, .stride = stride};
    c.oh = (H - size) / stride + 1;
    c.ow = (W - size) / stride + 1;
    c.nx = B * C * H * W;
    c.ny = B * C * c.oh * c.ow;
    float *x = malloc(sizeof(float) * (size_t)c.nx);
    fill_distinct(x, c.nx, 31);
    int bad = fd_check(&c, x, NULL, corrupt);
    free(x);
    return bad;
}

START_TEST(test_maxpool_grad)
{
    for (int isa = NN_ISA_AVX2; isa <= NN_ISA_AVX512; isa++) { /* 2x2/2: C and AVX-512 */
        nn_leaf_limit_isa(isa);
        ck_assert_int_eq(check_pool(2, 6, 6, 2, 2, 2, 0), 0);
        ck_assert_int_eq(check_pool(2, 7, 9, 2, 2, 2, 0), 0); /* odd: last row/col dropped */
        ck_assert_int_eq(check_pool(1, 4, 42, 2, 2, 2, 0), 0); /* 21 outputs: 16 + 5 */
    }
    nn_leaf_limit_isa(NN_ISA_AVX512);
    ck_assert_int_eq(check_pool(2, 7, 7, 3, 2, 2, 0), 0); /* overlapping windows */
    ck_assert_int_eq(check_pool(1, 8, 6, 3, 2, 3, 0), 0);
    ck_assert_int_eq(check_pool(2, 4, 4, 3, 1, 2, 0), 0); /* 2x2 out of 4x4, but 3x3 windows overlap */
}
END_TEST

START_TEST(test_maxpool_ties)
{
    /* 2x4 plane, two 2x2 windows: all equal -> top-left; [0 2; 2 1] -> (0,1) */
    float x[8] = {1, 1, 0, 2, 1, 1, 2, 1}, y[2], dy[2] = {3, 5}, dx[8];
    int32_t idx[2];
    nn_maxpool_forward(y, idx, x, 1, 1, 2, 4, 2, 2, 1, 2);
    ck_assert_int_eq(idx[0], 0);
    ck_assert_int_eq(idx[1], 3);
    nn_maxpool_backward(dx, dy, idx, 1, 1, 2, 4, 2, 2, 1, 2);
    const float expect[8] = {3, 0, 0, 5, 0, 0, 0, 0};
    ck_assert(memcmp(dx, expect, sizeof dx) == 0);
}
END_TEST

/* The checkers can fail: a corrupted entry must be caught. */
START_TEST(test_checker_catches_errors)
{
    quiet = true;
    ck_assert_int_gt(check_dense(NN_ACT_TANH, 1), 0);
    ck_assert_int_gt(check_dense(NN_ACT_RELU, 2), 0);
    ck_assert_int_gt(check_conv(2, 6, 7, 3, 3, 3, 2, 1, 2, 2, NN_ACT_NONE, 1), 0);
    ck_assert_int_gt(check_conv(2, 6, 7, 3, 3, 3, 2, 1, 2, 2, NN_ACT_NONE, 2), 0);
    ck_assert_int_gt(check_pool(2, 6, 6, 3, 2, 2, 1), 0);
    quiet = false;
}
END_TEST

/* ---- model-level checks ----------------------------------------------------- */
static dt_model *make(const dt_layer_spec *s, int n, int c, int h, int w, long max_batch)
{
    int input[3] = {c, h, w};
    dt_model *m = NULL;
    dt_error err = {0};
    dt_status st = dt_model_create(s, n, input, max_batch, "net.yaml", &m, &err);
    ck_assert_msg(st == DT_OK, "create: %s", err.msg);
    return m;
}

#define DENSE(n) {.kind = DT_LAYER_DENSE, .units = (n)}
#define CONV(o, k, s, p) {.kind = DT_LAYER_CONV, .out_channels = (o), .kernel = (k), .stride = (s), .pad = (p)}
#define POOL(z, s) {.kind = DT_LAYER_MAXPOOL, .size = (z), .stride = (s)}
#define ACT(k) {.kind = (k)}

/* A hash of every relu sign and maxpool argmax of the last forward. */
static uint64_t kink_pattern(const dt_model *m, long n)
{
    uint64_t h = DT_FNV_INIT;
    for (int i = 0; i < m->n_layers; i++) {
        const nn_layer *l = &m->layers[i];
        bool relu = l->act == NN_ACT_RELU || (l->kind->act == NN_ACT_RELU && !l->fused);
        if (relu)
            for (long k = 0; k < n * l->out_size; k++) {
                unsigned char bit = l->y[k] > 0;
                h = dt_fnv1a64(h, &bit, 1);
            }
        if (l->idx) h = dt_fnv1a64(h, l->idx, sizeof(int32_t) * (size_t)n * l->n_idx);
    }
    return h;
}

static double model_loss(dt_model *m, const float *x, const int *y, long n)
{
    double L = 0;
    dt_model_forward(m, x, y, n, &L, NULL);
    return L;
}

/* Float32 central differences on every parameter (see the file comment). */
static void model_fd_check(dt_model *m, const float *x, const int *y, long n)
{
    size_t np = dt_model_param_count(m);
    float *p = dt_model_params(m);
    float *g = malloc(sizeof(float) * np);
    model_loss(m, x, y, n);
    uint64_t base = kink_pattern(m, n);
    dt_model_zero_grads(m);
    dt_model_backward(m, NULL, NULL);
    memcpy(g, dt_model_grads(m), sizeof(float) * np);
    double err2 = 0, ref2 = 0, worst = 0;
    long skipped = 0, bad = 0;
    for (size_t j = 0; j < np; j++) {
        const float keep = p[j], h = 1e-3f;
        p[j] = keep + h;
        double hp = (double)p[j] - keep;
        double lp = model_loss(m, x, y, n);
        bool kink = kink_pattern(m, n) != base;
        p[j] = keep - h;
        double hm = keep - (double)p[j];
        double lm = model_loss(m, x, y, n);
        kink |= kink_pattern(m, n) != base;
        p[j] = keep;
        if (kink) {
            skipped++;
            continue;
        }
        double fd = (lp - lm) / (hp + hm);
        double d = fabs((double)g[j] - fd);
        worst = fmax(worst, d / (5e-3 * fabs(fd) + 5e-4));
        err2 += d * d;
        ref2 += fd * fd;
        if (!(d <= 5e-3 * fabs(fd) + 5e-4)) {
            if (bad < 5)
                fprintf(stderr, "  model param %zu: analytic %.6g, finite difference %.6g\n", j,
                        (double)g[j], fd);
            bad++;
        }
    }
    free(g);
    if (getenv("DT_TEST_VERBOSE"))
        fprintf(stderr, "model fd: %zu params, %ld skipped, rel L2 %.3g, worst ratio %.3g\n",
                np, skipped, sqrt(err2 / ref2), worst);
    ck_assert_msg(bad == 0, "%ld of %zu parameter gradients off", bad, np);
    ck_assert_msg(skipped * 10 < (long)np, "%ld of %zu parameters skipped at kinks", skipped, np);
    ck_assert_msg(sqrt(err2) < 2e-3 * sqrt(ref2), "relative L2 error %g", sqrt(err2 / ref2));
}

START_TEST(test_mlp_grad)
{
    dt_layer_spec s[] = {DENSE(9), ACT(DT_LAYER_SIGMOID), DENSE(8), ACT(DT_LAYER_RELU),
                         DENSE(6), ACT(DT_LAYER_TANH), DENSE(4)};
    dt_model *m = make(s, DT_ARRAY_LEN(s), 1, 3, 4, 5); /* image input, flattened by dense */
    dt_model_init_params(m, DT_INIT_XAVIER, 3);
    float *p = dt_model_params(m);
    for (size_t k = 0; k < dt_model_param_count(m); k++) p[k] += 0.05f; /* biases nonzero too */
    float x[5 * 12];
    int y[5] = {0, 1, 2, 3, 1};
    fill_uniform(x, 60, 41, -2, 2);
    model_fd_check(m, x, y, 5);
    dt_model_free(m);
}
END_TEST

static dt_model *make_lenet_small(long max_batch)
{
    dt_layer_spec s[] = {CONV(4, 3, 1, 1),      POOL(2, 2),        ACT(DT_LAYER_RELU),
                         CONV(5, 3, 2, 2),      ACT(DT_LAYER_TANH), POOL(3, 2),
                         {.kind = DT_LAYER_FLATTEN}, DENSE(8), ACT(DT_LAYER_RELU), DENSE(3)};
    return make(s, DT_ARRAY_LEN(s), 2, 10, 9, max_batch);
}

START_TEST(test_lenet_grad)
{
    dt_model *m = make_lenet_small(4);
    dt_model_init_params(m, DT_INIT_HE, 5);
    float *p = dt_model_params(m);
    for (size_t k = 0; k < dt_model_param_count(m); k++) p[k] += 0.02f;
    float x[4 * 2 * 10 * 9];
    int y[4] = {2, 0, 1, 2};
    fill_uniform(x, DT_ARRAY_LEN(x), 43, -1, 1);
    model_fd_check(m, x, y, 4);
    dt_model_free(m);
}
END_TEST

START_TEST(test_lenet_shapes_and_describe)
{
    dt_layer_spec s[] = {CONV(6, 5, 1, 2), ACT(DT_LAYER_RELU), POOL(2, 2), CONV(16, 5, 1, 0),
                         ACT(DT_LAYER_RELU), POOL(2, 2), DENSE(120), ACT(DT_LAYER_RELU),
                         DENSE(84), ACT(DT_LAYER_RELU), DENSE(10)};
    dt_model *m = make(s, DT_ARRAY_LEN(s), 1, 28, 28, 8);
    ck_assert_uint_eq(dt_model_param_count(m), 156 + 2416 + 48120 + 10164 + 850);
    ck_assert_int_eq(dt_model_outputs(m), 10);
    ck_assert_int_eq(dt_model_input_size(m), 784);
    ck_assert_int_eq(dt_model_max_batch(m), 8);
    /* forward MACs: conv1 6*25*784, conv2 16*150*100, dense 400*120, 120*84, 84*10;
     * backward: dW of all, dx of all but conv1 */
    double c1 = 6 * 25 * 784, c2 = 16 * 150 * 100, d1 = 48000, d2 = 10080, d3 = 840;
    double expect = 2 * (2 * c1 + 3 * (c2 + d1 + d2 + d3));
    ck_assert_double_eq_tol(dt_model_flops_per_sample(m), expect, 1e-6);
    char buf[2048];
    dt_model_describe(m, buf, sizeof buf);
    const char *want = "conv 6x5x5 s1 p2: 1x28x28 -> 6x28x28, 156 params\n"
                       "relu: 6x28x28 -> 6x28x28\n"
                       "maxpool 2 s2: 6x28x28 -> 6x14x14\n"
                       "conv 16x5x5 s1 p0: 6x14x14 -> 16x10x10, 2416 params\n"
                       "relu: 16x10x10 -> 16x10x10\n"
                       "maxpool 2 s2: 16x10x10 -> 16x5x5\n"
                       "dense 120: 16x5x5 -> 120, 48120 params\n"
                       "relu: 120 -> 120\n"
                       "dense 84: 120 -> 84, 10164 params\n"
                       "relu: 84 -> 84\n"
                       "dense 10: 84 -> 10, 850 params\n";
    ck_assert_str_eq(buf, want);
    char small[40];
    dt_model_describe(m, small, sizeof small); /* truncates, stays terminated */
    ck_assert_uint_eq(strlen(small), sizeof small - 1);
    dt_model_free(m);
}
END_TEST

/* ---- shape errors ------------------------------------------------------------ */
static void expect_error(const dt_layer_spec *s, int n, int c, int h, int w, const char *source,
                         const char *msg)
{
    int input[3] = {c, h, w};
    dt_model *m = (dt_model *)1;
    dt_error err = {0};
    dt_status st = dt_model_create(s, n, input, 4, source, &m, &err);
    ck_assert_int_eq(st, DT_ECONFIG);
    ck_assert_int_eq(err.code, DT_ECONFIG);
    ck_assert_ptr_null(m);
    ck_assert_str_eq(err.msg, msg);
}

START_TEST(test_shape_errors)
{
    dt_layer_spec s[4];
    s[0] = (dt_layer_spec)CONV(4, 5, 1, 0);
    s[0].line = 3, s[0].col = 7;
    expect_error(s, 1, 1, 4, 4, "net.yaml",
                 "net.yaml:3:7: model.layers[0] (conv): kernel 5 is larger than its input 1x4x4");
    s[0] = (dt_layer_spec)CONV(4, 7, 1, 1); /* no position: --set */
    expect_error(s, 1, 1, 4, 4, "net.yaml",
                 "net.yaml: model.layers[0] (conv): kernel 7 is larger than its input 1x4x4 padded by 1");

    s[0] = (dt_layer_spec)CONV(4, 5, 1, 0);
    s[1] = (dt_layer_spec)POOL(5, 2);
    s[1].line = 9, s[1].col = 5;
    expect_error(s, 2, 1, 8, 8, "net.yaml",
                 "net.yaml:9:5: model.layers[1] (maxpool): pool 5 leaves nothing of its input 4x4x4");

    s[0] = (dt_layer_spec)DENSE(10);
    s[1] = (dt_layer_spec)CONV(4, 1, 1, 0);
    s[1].line = 4, s[1].col = 3;
    expect_error(s, 2, 1, 8, 8, "a.yaml",
                 "a.yaml:4:3: model.layers[1] (conv): its input is a flat vector of 10 values, "
                 "not a CxHxW image");
    s[0] = (dt_layer_spec){.kind = DT_LAYER_FLATTEN};
    s[1] = (dt_layer_spec)POOL(2, 2);
    expect_error(s, 2, 1, 8, 8, "a.yaml",
                 "a.yaml: model.layers[1] (maxpool): its input is a flat vector of 64 values, "
                 "not a CxHxW image");

    s[0] = (dt_layer_spec)ACT(DT_LAYER_RELU);
    s[0].line = 2, s[0].col = 9;
    s[1] = (dt_layer_spec)DENSE(3);
    expect_error(s, 2, 1, 8, 8, "net.yaml",
                 "net.yaml:2:9: model.layers[0] (relu): an activation needs a layer before it "
                 "to act on, not the raw input");
    s[0] = (dt_layer_spec){.kind = DT_LAYER_FLATTEN};
    s[1] = (dt_layer_spec)ACT(DT_LAYER_TANH);
    expect_error(s, 2, 1, 8, 8, "net.yaml",
                 "net.yaml: model.layers[1] (tanh): an activation needs a layer before it "
                 "to act on, not the raw input");

    s[0] = (dt_layer_spec)POOL(2, 2);
    s[1] = (dt_layer_spec){.kind = DT_LAYER_FLATTEN, .line = 5, .col = 2};
    expect_error(s, 2, 1, 8, 8, "net.yaml",
                 "net.yaml:5:2: model.layers[1] (flatten): the model has no dense or conv layer, "
                 "so nothing to train");

    s[0] = (dt_layer_spec)DENSE(8);
    s[1] = (dt_layer_spec)ACT(DT_LAYER_RELU);
    s[2] = (dt_layer_spec)DENSE(1);
    s[2].line = 6, s[2].col = 4;
    expect_error(s, 3, 1, 8, 8, "net.yaml",
                 "net.yaml:6:4: model.layers[2] (dense): the last layer's output gives the class "
                 "logits and needs at least 2 values, not 1");

    s[0] = (dt_layer_spec)DENSE(65536); /* 65536 x 65536 weights */
    expect_error(s, 1, 1, 256, 256, "net.yaml",
                 "net.yaml: model.layers[0] (dense): parameter count overflows: 4295032832 "
                 "parameters after 0 exceed the limit of 2147483647");
    s[0] = (dt_layer_spec)DENSE(40000);
    s[1] = (dt_layer_spec)DENSE(60000);
    expect_error(s, 2, 1, 1, 30000, "net.yaml",
                 "net.yaml: model.layers[1] (dense): parameter count overflows: 2400060000 "
                 "parameters after 1200040000 exceed the limit of 2147483647");

    s[0] = (dt_layer_spec)DENSE(0);
    expect_error(s, 1, 1, 8, 8, "net.yaml",
                 "net.yaml: model.layers[0] (dense): needs a positive number of units, got 0");
    s[0] = (dt_layer_spec)CONV(4, 3, 0, 0);
    expect_error(s, 1, 1, 8, 8, "net.yaml",
                 "net.yaml: model.layers[0] (conv): needs out >= 1, kernel >= 1, stride >= 1 and "
                 "pad >= 0, got out 4 kernel 3 stride 0 pad 0");
    s[0] = (dt_layer_spec)CONV(4, 3, 1, 0);
    s[1] = (dt_layer_spec)POOL(2, 0);
    expect_error(s, 2, 1, 8, 8, "net.yaml",
                 "net.yaml: model.layers[1] (maxpool): needs size >= 1 and stride >= 1, got size "
                 "2 stride 0");

    expect_error(s, 0, 1, 8, 8, "net.yaml", "net.yaml: model.layers: no layers");
    s[0] = (dt_layer_spec)DENSE(4);
    expect_error(s, 1, 0, 8, 8, "net.yaml",
                 "net.yaml: model.input: [0, 8, 8] is not a valid [C, H, W] shape");
    s[0] = (dt_layer_spec){.kind = DT_LAYER_KIND_COUNT, .line = 1, .col = 1};
    expect_error(s, 1, 1, 8, 8, "net.yaml", "net.yaml:1:1: model.layers[0]: unknown layer kind 7");
    s[0] = (dt_layer_spec)CONV(4, 5, 1, 0);
    s[0].line = 3;
    expect_error(s, 1, 1, 4, 4, NULL, "model.layers[0] (conv): kernel 5 is larger than its input 1x4x4");
}
END_TEST

START_TEST(test_valid_edge_shapes)
{
    /* kernel exactly the padded input, pool exactly the input, a relu after a pool, relu relu */
    dt_layer_spec s[] = {CONV(3, 6, 1, 1), ACT(DT_LAYER_RELU), ACT(DT_LAYER_RELU), POOL(3, 1),
                         ACT(DT_LAYER_RELU), DENSE(2)};
    dt_model *m = make(s, DT_ARRAY_LEN(s), 1, 6, 6, 2);
    ck_assert_int_eq(m->layers[0].out.h, 3);
    ck_assert_int_eq(m->layers[3].out.h, 1);
    ck_assert(m->layers[1].fused && !m->layers[2].fused && !m->layers[4].fused);
    dt_model_free(m);
}
END_TEST

/* ---- init ------------------------------------------------------------------ */
static void moments(const float *a, size_t n, double *mean, double *std)
{
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) s += a[i];
    *mean = s / (double)n;
    for (size_t i = 0; i < n; i++) s2 += (a[i] - *mean) * (a[i] - *mean);
    *std = sqrt(s2 / (double)n);
}

START_TEST(test_init_he)
{
    dt_layer_spec s[] = {CONV(64, 5, 1, 0), ACT(DT_LAYER_RELU), DENSE(300), DENSE(10)};
    dt_model *m = make(s, DT_ARRAY_LEN(s), 16, 8, 8, 1);
    float *p = dt_model_params(m);
    for (size_t k = 0; k < dt_model_param_count(m); k++) p[k] = 7; /* biases must be reset */
    dt_model_init_params(m, DT_INIT_HE, 42);
    const nn_layer *conv = &m->layers[0], *dense = &m->layers[2];
    double mean, std;
    moments(conv->w, conv->n_w, &mean, &std); /* 25600 weights, fan_in 16*5*5 */
    double want = sqrt(2.0 / 400);
    ck_assert_msg(fabs(std / want - 1) < 0.05, "conv std %g want %g", std, want);
    ck_assert(fabs(mean) < 5 * want / sqrt((double)conv->n_w));
    moments(dense->w, dense->n_w, &mean, &std); /* 300 x 1024, fan_in 64*4*4 */
    want = sqrt(2.0 / 1024);
    ck_assert_msg(fabs(std / want - 1) < 0.05, "dense std %g want %g", std, want);
    for (int i = 0; i < 4; i++)
        for (size_t k = 0; k < m->layers[i].n_b; k++) ck_assert(m->layers[i].b[k] == 0.0f);
    /* a pure function of (seed, arena offset) */
    size_t off = dense->off + 1234;
    float v = (float)(sqrt(2.0 / 1024) * dt_rand_normal(42, DT_STREAM_INIT, off));
    ck_assert(p[off] == v);
    dt_model_free(m);
}
END_TEST

START_TEST(test_init_xavier)
{
    dt_layer_spec s[] = {DENSE(300), ACT(DT_LAYER_TANH), DENSE(10)};
    dt_model *m = make(s, DT_ARRAY_LEN(s), 1, 1, 200, 1);
    dt_model_init_params(m, DT_INIT_XAVIER, 9);
    const nn_layer *l = &m->layers[0];
    double a = sqrt(6.0 / 500), mean, std;
    for (size_t k = 0; k < l->n_w; k++) ck_assert(fabsf(l->w[k]) <= (float)a);
    moments(l->w, l->n_w, &mean, &std);
    ck_assert_msg(fabs(std / (a / sqrt(3.0)) - 1) < 0.05, "xavier std %g", std);
    dt_model_free(m);
}
END_TEST

START_TEST(test_init_determinism)
{
    dt_layer_spec s[] = {CONV(4, 3, 1, 1), ACT(DT_LAYER_RELU), DENSE(20), DENSE(5)};
    dt_model *a = make(s, 4, 2, 6, 6, 3), *b = make(s, 4, 2, 6, 6, 7);
    size_t n = dt_model_param_count(a);
    dt_model_init_params(a, DT_INIT_HE, 123);
    dt_model_init_params(b, DT_INIT_HE, 123);
    ck_assert(memcmp(dt_model_params(a), dt_model_params(b), n * sizeof(float)) == 0);
    dt_model_init_params(b, DT_INIT_HE, 124);
    size_t same = 0;
    for (size_t k = 0; k < n; k++) same += dt_model_params(a)[k] == dt_model_params(b)[k];
    size_t biases = 4 + 20 + 5;
    ck_assert_uint_eq(same, biases); /* only the zero biases agree */
    dt_model_free(a);
    dt_model_free(b);
}
END_TEST

/* ---- backward semantics ----------------------------------------------------- */
typedef struct {
    int calls;
    size_t off[DT_MAX_LAYERS], count[DT_MAX_LAYERS];
    float *snapshot;
    const float *grads;
} ready_log;

static void on_ready(void *ctx, size_t offset, size_t count)
{
    ready_log *r = ctx;
    r->off[r->calls] = offset;
    r->count[r->calls] = count;
    r->calls++;
    memcpy(r->snapshot + offset, r->grads + offset, count * sizeof(float));
}

START_TEST(test_backward_accumulates_and_ready)
{
    dt_model *m = make_lenet_small(6);
    dt_model_init_params(m, DT_INIT_HE, 1);
    size_t np = dt_model_param_count(m);
    float x[6 * 180];
    int y[6] = {0, 1, 2, 0, 1, 2};
    fill_uniform(x, DT_ARRAY_LEN(x), 51, -1, 1);
    float *g1 = malloc(np * sizeof(float)), *snap = calloc(np, sizeof(float));
    dt_model_forward(m, x, y, 6, NULL, NULL);
    dt_model_zero_grads(m);
    ready_log r = {.snapshot = snap, .grads = dt_model_grads(m)};
    dt_model_backward(m, on_ready, &r);
    memcpy(g1, dt_model_grads(m), np * sizeof(float));
    /* ready: at least once per parameterised layer (a dense layer: its
     * bias, then its weights), reverse order, tiling the arena, and the
     * gradients were already final when announced */
    ck_assert_int_eq(r.calls, 6);
    size_t end = np;
    for (int i = 0; i < r.calls; i++) {
        ck_assert_uint_eq(r.off[i] + r.count[i], end);
        end = r.off[i];
    }
    ck_assert_uint_eq(end, 0);
    ck_assert(memcmp(snap, g1, np * sizeof(float)) == 0);
    /* a second backward ADDS the same gradient */
    dt_model_backward(m, NULL, NULL);
    const float *g = dt_model_grads(m);
    for (size_t k = 0; k < np; k++)
        ck_assert_msg(fabsf(g[k] - 2 * g1[k]) <= 1e-6f * (1 + fabsf(g1[k])), "param %zu", k);
    /* the gradient of the sum: samples [0,3) plus samples [3,6) */
    dt_model_zero_grads(m);
    dt_model_forward(m, x, y, 3, NULL, NULL);
    dt_model_backward(m, NULL, NULL);
    dt_model_forward(m, x + 3 * 180, y + 3, 3, NULL, NULL);
    dt_model_backward(m, NULL, NULL);
    for (size_t k = 0; k < np; k++)
        ck_assert_msg(fabsf(g[k] - g1[k]) <= 1e-5f * (1 + fabsf(g1[k])), "param %zu", k);
    /* zero_grads, and an empty batch still announces every layer */
    dt_model_zero_grads(m);
    for (size_t k = 0; k < np; k++) ck_assert(g[k] == 0.0f);
    double loss = 0;
    long right = 0;
    dt_model_forward(m, x, y, 0, &loss, &right);
    r.calls = 0;
    dt_model_backward(m, on_ready, &r);
    ck_assert_int_eq(r.calls, 4);
    ck_assert(loss == 0 && right == 0);
    for (size_t k = 0; k < np; k++) ck_assert(g[k] == 0.0f);
    free(g1);
    free(snap);
    dt_model_free(m);
}
END_TEST

void openblas_set_num_threads(int threads); /* OpenBLAS's, as in its cblas.h */
int openblas_get_num_threads(void);

/* A dense layer's backward reported in parts has the bits of the whole
 * one (dz, db, dW and dx) on one BLAS thread (more threads split the rows
 * their own way), and its parts tile the layer's range from the end, each
 * final when announced: large layers in several blocks of rows, row
 * counts that are and are not multiples of the blocks. */
START_TEST(test_dense_ready_same_bits)
{
    const int threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    const int shapes[][3] = {/* B in out */ {1, 784, 256}, {37, 784, 256}, {5, 300, 33},
                             {128, 256, 10}, {3, 2000, 70}, {0, 784, 256}};
    for (size_t i = 0; i < DT_ARRAY_LEN(shapes); i++) {
        const long B = shapes[i][0];
        const int in = shapes[i][1], out = shapes[i][2];
        const size_t nw = (size_t)in * (size_t)out, np = nw + (size_t)out, off = 5;
        const size_t nx = (size_t)DT_MAX(B, 1) * (size_t)in, ny = (size_t)DT_MAX(B, 1) * (size_t)out;
        float *x = malloc(nx * sizeof(float)), *w = malloc(nw * sizeof(float));
        float *y = malloc(ny * sizeof(float)), *dy[2], *dx[2], *g[2];
        fill_uniform(x, nx, 61 + i, -1, 1);
        fill_uniform(w, nw, 71 + i, -0.1f, 0.1f);
        fill_uniform(y, ny, 81 + i, 0, 1); /* post-ReLU outputs: some zero below */
        for (size_t k = 0; k < ny; k += 3) y[k] = 0;
        for (int v = 0; v < 2; v++) {
            dy[v] = malloc(ny * sizeof(float));
            dx[v] = calloc(nx, sizeof(float));
            g[v] = malloc((off + np) * sizeof(float));
            fill_uniform(dy[v], ny, 91 + i, -1, 1);
            fill_uniform(g[v], off + np, 101 + i, -1, 1); /* backward accumulates */
        }
        float *snap = calloc(off + np, sizeof(float));
        ready_log r = {.snapshot = snap, .grads = g[1]};
        nn_dense_backward(dx[0], g[0] + off, g[0] + off + nw, dy[0], y, x, w, B, in, out,
                          NN_ACT_RELU);
        nn_dense_backward_ready(dx[1], g[1] + off, g[1] + off + nw, dy[1], y, x, w, B, in, out,
                                NN_ACT_RELU, on_ready, &r, off);
        ck_assert_msg(memcmp(g[0], g[1], (off + np) * sizeof(float)) == 0, "shape %zu: dW/db", i);
        ck_assert_msg(memcmp(dx[0], dx[1], nx * sizeof(float)) == 0, "shape %zu: dx", i);
        ck_assert_msg(memcmp(dy[0], dy[1], ny * sizeof(float)) == 0, "shape %zu: dz", i);
        ck_assert_msg(memcmp(snap + off, g[1] + off, np * sizeof(float)) == 0,
                      "shape %zu: a part changed after it was announced", i);
        size_t end = off + np;
        for (int c = 0; c < r.calls; c++) {
            ck_assert_uint_eq(r.off[c] + r.count[c], end);
            end = r.off[c];
        }
        ck_assert_uint_eq(end, off);
        if (B == 0) ck_assert_int_eq(r.calls, 1);
        else ck_assert_int_ge(r.calls, out > 48 ? 3 : 2); /* bias, then one block or more */
        free(snap);
        for (int v = 0; v < 2; v++) {
            free(dy[v]);
            free(dx[v]);
            free(g[v]);
        }
        free(x);
        free(w);
        free(y);
    }
    openblas_set_num_threads(threads);
}
END_TEST

START_TEST(test_no_allocation_in_step)
{
    dt_layer_spec s[] = {CONV(6, 5, 1, 2), ACT(DT_LAYER_RELU), POOL(2, 2), CONV(16, 5, 1, 0),
                         ACT(DT_LAYER_RELU), POOL(2, 2), DENSE(120), ACT(DT_LAYER_RELU),
                         DENSE(84), ACT(DT_LAYER_SIGMOID), DENSE(10)};
    dt_model *m = make(s, DT_ARRAY_LEN(s), 1, 28, 28, 16);
    dt_model_init_params(m, DT_INIT_HE, 2);
    float *x = malloc(16 * 784 * sizeof(float));
    int y[16];
    for (int i = 0; i < 16; i++) y[i] = i % 10;
    fill_uniform(x, 16 * 784, 61, 0, 1);
    double loss = 0;
    long right = 0;
    uint64_t before = dt_alloc_count();
    for (int it = 0; it < 2; it++) {
        dt_model_forward(m, x, y, 16, &loss, &right);
        dt_model_zero_grads(m);
        dt_model_backward(m, NULL, NULL);
        dt_model_forward(m, x, NULL, 11, NULL, NULL); /* evaluation, no labels */
    }
    ck_assert_uint_eq(dt_alloc_count(), before);
    ck_assert(isfinite(loss) && loss > 0);
    free(x);
    dt_model_free(m);
}
END_TEST

START_TEST(test_forward_values)
{
    /* dense 3 with W = I, b = (0, 0, 1): logits = x + (0,0,1); loss and accuracy */
    dt_layer_spec s[] = {DENSE(3)};
    dt_model *m = make(s, 1, 3, 1, 1, 2);
    float *p = dt_model_params(m);
    const float params[12] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1};
    memcpy(p, params, sizeof params);
    float x[6] = {1, 2, 0, 5, 5, 4};
    int y[2] = {1, 1};
    double loss = 0;
    long right = 0;
    dt_model_forward(m, x, y, 2, &loss, &right);
    const float *z = dt_model_logits(m);
    ck_assert(z[2] == 1.0f && z[5] == 5.0f);
    ck_assert_int_eq(right, 1); /* row 1 ties 5,5,5: first max is class 0 */
    double expect = log(exp(1.0) + exp(2.0) + exp(1.0)) - 2.0 + log(3.0);
    ck_assert_double_eq_tol(loss, expect, 1e-6);
    dt_model_free(m);
}
END_TEST


/* ---- reproducible mode (dt_model_set_leaf) ------------------------------------
 * The contract: with leaves of s samples, backward of n samples (a whole
 * subtree) equals bit for bit the tree-combination of the backward of its
 * halves, and of its quarters, each computed alone from zeroed gradients;
 * the loss likewise in double; every sample's outputs do not depend on the
 * batch around it nor on the BLAS thread count. */

#define LEAF_N 128

/* Small models for the leaf tests, built for max_batch 128. Sizes are odd
 * on purpose (tails of every kernel): an MLP on 63 inputs; one on 64 with
 * multiples of 16; a LeNet-like stack on 1x12x12 (the direct conv kernels
 * where the CPU has AVX2); the stride-2 stack of make_lenet_small (the
 * im2col path). */
static dt_model *leaf_model(int which)
{
    dt_model *m;
    if (which == 0) {
        dt_layer_spec s[] = {DENSE(37), ACT(DT_LAYER_RELU), DENSE(19), ACT(DT_LAYER_TANH),
                             DENSE(10)};
        m = make(s, DT_ARRAY_LEN(s), 1, 7, 9, LEAF_N);
    } else if (which == 1) {
        dt_layer_spec s[] = {DENSE(48), ACT(DT_LAYER_RELU), DENSE(32), ACT(DT_LAYER_RELU),
                             DENSE(10)};
        m = make(s, DT_ARRAY_LEN(s), 1, 8, 8, LEAF_N);
    } else if (which == 2) {
        dt_layer_spec s[] = {CONV(4, 3, 1, 1),  ACT(DT_LAYER_RELU), POOL(2, 2),
                             CONV(6, 3, 1, 0),  ACT(DT_LAYER_RELU), POOL(2, 2),
                             DENSE(16),         ACT(DT_LAYER_RELU), DENSE(10)};
        m = make(s, DT_ARRAY_LEN(s), 1, 12, 12, LEAF_N);
    } else {
        m = make_lenet_small(LEAF_N);
    }
    dt_model_init_params(m, DT_INIT_HE, 11 + (uint64_t)which);
    float *p = dt_model_params(m);
    for (size_t k = 0; k < dt_model_param_count(m); k++) p[k] += 0.01f; /* nonzero biases */
    return m;
}

static float *leaf_inputs(const dt_model *m, int *y)
{
    long in = dt_model_input_size(m);
    float *x = malloc(sizeof(float) * LEAF_N * (size_t)in);
    fill_uniform(x, LEAF_N * in, 71, -1, 1);
    for (int k = 0; k < LEAF_N; k++) y[k] = (k * 7 + 3) % dt_model_outputs(m);
    return x;
}

/* forward + backward of rows [first, first + n) from zeroed gradients */
static void leaf_pass(dt_model *m, const float *x, const int *y, long first, long n, float *g,
                      double *loss)
{
    long in = dt_model_input_size(m);
    *loss = 0;
    dt_model_zero_grads(m);
    dt_model_forward(m, x + first * in, y + first, n, loss, NULL);
    dt_model_backward(m, NULL, NULL);
    memcpy(g, dt_model_grads(m), sizeof(float) * dt_model_param_count(m));
}

/* T(a, b) of the contract over per-leaf vectors g[leaf][np], in place into
 * g[a]: T(a, mid) + T(mid, b), mid = (a + b) / 2 (the test's own tree) */
static void tree_combine(float *g, size_t np, long a, long b)
{
    if (b - a < 2) return;
    long mid = (a + b) / 2;
    tree_combine(g, np, a, mid);
    tree_combine(g, np, mid, b);
    for (size_t k = 0; k < np; k++) g[(size_t)a * np + k] += g[(size_t)mid * np + k];
}

static double tree_combine_double(double *v, long a, long b)
{
    if (b - a == 1) return v[a];
    long mid = (a + b) / 2;
    return tree_combine_double(v, a, mid) + tree_combine_double(v, mid, b);
}

/* The gradient and loss of all 128 rows vs the tree-combination of parts
 * computed alone: halves (g0 + g1) and quarters ((q0 + q1) + (q2 + q3)). */
static void check_tree_split(dt_model *m, long leaf, const char *what)
{
    size_t np = dt_model_param_count(m);
    int y[LEAF_N];
    float *x = leaf_inputs(m, y);
    float *full = malloc(sizeof(float) * np), *part = malloc(sizeof(float) * np * 4);
    ck_assert(dt_model_set_leaf(m, leaf, NULL) == DT_OK);
    double lf, lp[4];
    leaf_pass(m, x, y, 0, LEAF_N, full, &lf);
    for (int h = 0; h < 2; h++) leaf_pass(m, x, y, h * LEAF_N / 2, LEAF_N / 2, part + h * np, &lp[h]);
    for (size_t k = 0; k < np; k++) part[k] += part[np + k];
    double l2 = lp[0] + lp[1];
    ck_assert_msg(memcmp(part, full, sizeof(float) * np) == 0, "%s leaf %ld: halves differ", what, leaf);
    ck_assert_msg(memcmp(&l2, &lf, sizeof l2) == 0, "%s leaf %ld: loss of halves %.17g vs %.17g",
                  what, leaf, l2, lf);
    for (int q = 0; q < 4; q++) leaf_pass(m, x, y, q * LEAF_N / 4, LEAF_N / 4, part + q * np, &lp[q]);
    for (size_t k = 0; k < np; k++) {
        float a = part[k] + part[np + k], b = part[2 * np + k] + part[3 * np + k];
        part[k] = a + b;
    }
    double l4 = (lp[0] + lp[1]) + (lp[2] + lp[3]);
    ck_assert_msg(memcmp(part, full, sizeof(float) * np) == 0, "%s leaf %ld: quarters differ", what, leaf);
    ck_assert_msg(memcmp(&l4, &lf, sizeof l4) == 0, "%s leaf %ld: loss of quarters", what, leaf);
    /* every leaf alone (what 128 / leaf ranks compute), combined by the
     * test's own recursive tree: the whole contract, including the order
     * inside the kernels' register blocks */
    long leaves = LEAF_N / leaf;
    float *each = malloc(sizeof(float) * np * (size_t)leaves);
    double lleaf[LEAF_N];
    for (long j = 0; j < leaves; j++) leaf_pass(m, x, y, j * leaf, leaf, each + j * np, &lleaf[j]);
    tree_combine(each, np, 0, leaves);
    double lt = tree_combine_double(lleaf, 0, leaves);
    ck_assert_msg(memcmp(each, full, sizeof(float) * np) == 0, "%s leaf %ld: leaves alone differ",
                  what, leaf);
    ck_assert_msg(memcmp(&lt, &lf, sizeof lt) == 0, "%s leaf %ld: loss of leaves", what, leaf);
    free(each);
    /* one and two BLAS threads */
    int threads = openblas_get_num_threads();
    openblas_set_num_threads(threads == 1 ? 2 : 1);
    leaf_pass(m, x, y, 0, LEAF_N, part, &lp[0]);
    openblas_set_num_threads(threads);
    ck_assert_msg(memcmp(part, full, sizeof(float) * np) == 0, "%s leaf %ld: threads differ", what, leaf);
    ck_assert(memcmp(&lp[0], &lf, sizeof lf) == 0);
    free(x);
    free(full);
    free(part);
}

START_TEST(test_leaf_tree_mlp)
{
    for (int which = 0; which < 2; which++)
        for (long leaf = 1; leaf <= 4; leaf *= 2) {
            dt_model *m = leaf_model(which);
            check_tree_split(m, leaf, which ? "MLP 64" : "MLP 63");
            dt_model_free(m);
        }
}
END_TEST

START_TEST(test_leaf_tree_lenet)
{
    for (int which = 2; which < 4; which++)
        for (long leaf = 1; leaf <= 2; leaf++) {
            dt_model *m = leaf_model(which);
            check_tree_split(m, leaf, which == 2 ? "LeNet direct" : "LeNet im2col");
            dt_model_free(m);
        }
}
END_TEST

/* A sample's logits and every activation row: alone, and at its place in a
 * batch of 128, bit for bit (and the correct count and per-sample loss). */
START_TEST(test_leaf_rows_invariant)
{
    for (int which = 0; which < 4; which++) {
        dt_model *m = leaf_model(which);
        ck_assert(dt_model_set_leaf(m, 1, NULL) == DT_OK);
        int y[LEAF_N];
        float *x = leaf_inputs(m, y);
        long in = dt_model_input_size(m), C = dt_model_outputs(m);
        float *acts = malloc(sizeof(float) * LEAF_N * 4096);
        dt_model_forward(m, x, y, LEAF_N, NULL, NULL);
        /* every layer's output of the batch, concatenated */
        size_t at = 0;
        for (int i = 0; i < m->n_layers; i++) {
            const nn_layer *l = &m->layers[i];
            if (l->kind->in_place) continue;
            memcpy(acts + at, l->y, sizeof(float) * LEAF_N * (size_t)l->out_size);
            at += LEAF_N * (size_t)l->out_size;
        }
        ck_assert(at <= LEAF_N * 4096);
        for (long k = 0; k < LEAF_N; k += 5) {
            double loss = 0;
            dt_model_forward(m, x + k * in, y + k, 1, &loss, NULL);
            size_t off = 0;
            for (int i = 0; i < m->n_layers; i++) {
                const nn_layer *l = &m->layers[i];
                if (l->kind->in_place) continue;
                ck_assert_msg(memcmp(l->y, acts + off + k * l->out_size,
                                     sizeof(float) * (size_t)l->out_size) == 0,
                              "model %d layer %d: sample %ld alone differs", which, i, k);
                off += LEAF_N * (size_t)l->out_size;
            }
            double ref = 0;
            nn_softmax_ce_forward(acts + off - LEAF_N * C + k * C, y + k, 1, (int)C, &ref, NULL);
            ck_assert(memcmp(&loss, &ref, sizeof ref) == 0);
        }
        free(acts);
        free(x);
        dt_model_free(m);
    }
}
END_TEST

/* The input gradient of the first layer that has one: for each sample,
 * backward alone vs inside the batch (read through a conv/dense whose dx
 * is kept: the second parameterised layer's). */
START_TEST(test_leaf_dx_rows_invariant)
{
    for (int which = 0; which < 4; which++) {
        dt_model *m = leaf_model(which);
        ck_assert(dt_model_set_leaf(m, 1, NULL) == DT_OK);
        int y[LEAF_N];
        float *x = leaf_inputs(m, y);
        long in = dt_model_input_size(m);
        /* the second parameterised layer: its dx is the last one written */
        const nn_layer *l = NULL;
        int seen = 0;
        for (int i = 0; i < m->n_layers && !l; i++)
            if (m->layers[i].n_w && ++seen == 2) l = &m->layers[i];
        ck_assert(l && l->dx);
        size_t row = (size_t)l->in_size;
        float *dx = malloc(sizeof(float) * LEAF_N * row);
        dt_model_forward(m, x, y, LEAF_N, NULL, NULL);
        dt_model_backward(m, NULL, NULL);
        memcpy(dx, l->dx, sizeof(float) * LEAF_N * row);
        for (long k = 0; k < LEAF_N; k += 3) {
            dt_model_forward(m, x + k * in, y + k, 1, NULL, NULL);
            dt_model_backward(m, NULL, NULL);
            ck_assert_msg(memcmp(l->dx, dx + k * row, sizeof(float) * row) == 0,
                          "model %d: dx of sample %ld alone differs", which, k);
        }
        free(dx);
        free(x);
        dt_model_free(m);
    }
}
END_TEST

/* Leaf mode computes the same gradient as the default mode up to float
 * rounding (sums in another order), and switching back restores the
 * default mode's bits. */
START_TEST(test_leaf_matches_default)
{
    for (int which = 0; which < 4; which++) {
        dt_model *m = leaf_model(which);
        size_t np = dt_model_param_count(m);
        int y[LEAF_N];
        float *x = leaf_inputs(m, y);
        float *gd = malloc(sizeof(float) * np), *gl = malloc(sizeof(float) * np);
        float *gd2 = malloc(sizeof(float) * np);
        double ld, ll, ld2;
        leaf_pass(m, x, y, 0, LEAF_N, gd, &ld);
        ck_assert(dt_model_set_leaf(m, 2, NULL) == DT_OK);
        ck_assert_int_eq(dt_model_leaf(m), 2);
        leaf_pass(m, x, y, 0, LEAF_N, gl, &ll);
        ck_assert(dt_model_set_leaf(m, 0, NULL) == DT_OK);
        ck_assert_int_eq(dt_model_leaf(m), 0);
        leaf_pass(m, x, y, 0, LEAF_N, gd2, &ld2);
        ck_assert(memcmp(gd, gd2, sizeof(float) * np) == 0 && ld == ld2);
        double gmax = 0;
        for (size_t k = 0; k < np; k++) gmax = fmax(gmax, fabs(gd[k]));
        bool any_differs = false;
        for (size_t k = 0; k < np; k++) {
            ck_assert_msg(fabs(gd[k] - gl[k]) <= 1e-5 * gmax + 1e-4 * fabs(gd[k]),
                          "model %d param %zu: default %.9g, leaf %.9g", which, k, gd[k], gl[k]);
            any_differs |= gd[k] != gl[k];
        }
        ck_assert(fabs(ld - ll) <= 1e-6 * ld);
        /* and the sums really were taken in another order */
        ck_assert(any_differs);
        free(gd);
        free(gl);
        free(gd2);
        free(x);
        dt_model_free(m);
    }
}
END_TEST

START_TEST(test_leaf_grad)
{
    /* finite differences through the public API in leaf mode (n = 4: 4
     * leaves of 1, then 2 leaves of 2) */
    dt_layer_spec s[] = {DENSE(9), ACT(DT_LAYER_SIGMOID), DENSE(8), ACT(DT_LAYER_RELU),
                         DENSE(6), ACT(DT_LAYER_TANH), DENSE(4)};
    dt_model *m = make(s, DT_ARRAY_LEN(s), 1, 3, 4, 4);
    dt_model_init_params(m, DT_INIT_XAVIER, 3);
    float *p = dt_model_params(m);
    for (size_t k = 0; k < dt_model_param_count(m); k++) p[k] += 0.05f;
    float x[4 * 12];
    int y[4] = {0, 1, 2, 3};
    fill_uniform(x, 48, 41, -2, 2);
    ck_assert(dt_model_set_leaf(m, 1, NULL) == DT_OK);
    model_fd_check(m, x, y, 4);
    dt_model_free(m);

    m = make_lenet_small(4);
    dt_model_init_params(m, DT_INIT_HE, 5);
    p = dt_model_params(m);
    for (size_t k = 0; k < dt_model_param_count(m); k++) p[k] += 0.02f;
    float xl[4 * 2 * 10 * 9];
    int yl[4] = {2, 0, 1, 2};
    fill_uniform(xl, DT_ARRAY_LEN(xl), 43, -1, 1);
    ck_assert(dt_model_set_leaf(m, 2, NULL) == DT_OK);
    model_fd_check(m, xl, yl, 4);
    dt_model_free(m);

    m = leaf_model(2); /* the direct conv kernels */
    float *xd = malloc(sizeof(float) * 4 * 144);
    int yd[4] = {3, 1, 4, 1};
    fill_uniform(xd, 4 * 144, 45, -1, 1);
    ck_assert(dt_model_set_leaf(m, 1, NULL) == DT_OK);
    model_fd_check(m, xd, yd, 4);
    free(xd);
    dt_model_free(m);
}
END_TEST

/* The AVX-512, AVX2 and portable C paths compute the same bits (where the
 * CPU lacks one, the limit falls back to what it has: the comparison then
 * is of a path with itself). */
START_TEST(test_leaf_portable_same_bits)
{
    for (int which = 0; which < 4; which++) {
        dt_model *m = leaf_model(which);
        size_t np = dt_model_param_count(m);
        int y[LEAF_N];
        float *x = leaf_inputs(m, y);
        float *ga = malloc(sizeof(float) * np), *gp = malloc(sizeof(float) * np);
        double la, lp;
        ck_assert(dt_model_set_leaf(m, 1, NULL) == DT_OK);
        nn_leaf_limit_isa(NN_ISA_PORTABLE);
        leaf_pass(m, x, y, 0, LEAF_N, gp, &lp);
        nn_leaf_limit_isa(NN_ISA_AVX2);
        leaf_pass(m, x, y, 0, LEAF_N, ga, &la);
        ck_assert_msg(memcmp(ga, gp, sizeof(float) * np) == 0, "model %d: AVX2", which);
        ck_assert(memcmp(&la, &lp, sizeof la) == 0);
        nn_leaf_limit_isa(NN_ISA_AVX512);
        leaf_pass(m, x, y, 0, LEAF_N, ga, &la);
        ck_assert_msg(memcmp(ga, gp, sizeof(float) * np) == 0, "model %d: AVX-512", which);
        ck_assert(memcmp(&la, &lp, sizeof la) == 0);
        free(ga);
        free(gp);
        free(x);
        dt_model_free(m);
    }
}
END_TEST

START_TEST(test_leaf_errors_and_self_check)
{
    dt_model *m = leaf_model(2);
    dt_error err = {0};
    ck_assert_int_eq(dt_model_set_leaf(m, -1, &err), DT_ECONFIG);
    ck_assert_msg(strstr(err.msg, "leaf of -1 samples") != NULL, "%s", err.msg);
    ck_assert_int_eq(dt_model_set_leaf(m, LEAF_N + 1, &err), DT_ECONFIG);
    ck_assert_msg(strstr(err.msg, "does not fit in a step of at most 128") != NULL, "%s", err.msg);
    ck_assert_int_eq(dt_model_leaf(m), 0);
    /* the self-check: passes in leaf mode, leaves the gradients alone; the
     * default mode (one sequential GEMM sum) fails it, so it can fail */
    size_t np = dt_model_param_count(m);
    float *g = dt_model_grads(m);
    for (size_t k = 0; k < np; k++) g[k] = (float)k;
    ck_assert(!dt_model_rows_invariant(m));
    for (long leaf = 1; leaf <= 4; leaf *= 2) {
        ck_assert(dt_model_set_leaf(m, leaf, NULL) == DT_OK);
        ck_assert_msg(dt_model_rows_invariant(m), "leaf %ld", leaf);
    }
    for (size_t k = 0; k < np; k++) ck_assert(g[k] == (float)k);
    /* and allocation stays at set-up: none in a leaf-mode step */
    int y[LEAF_N];
    float *x = leaf_inputs(m, y);
    double loss = 0;
    uint64_t before = dt_alloc_count();
    dt_model_forward(m, x, y, 64, &loss, NULL);
    dt_model_backward(m, NULL, NULL);
    dt_model_forward(m, x, y, 37, &loss, NULL); /* evaluation chunk: sequential loss */
    ck_assert_uint_eq(dt_alloc_count(), before);
    free(x);
    dt_model_free(m);
}
END_TEST

/* For a batch that is not a whole subtree the loss is the plain sequential
 * sum, as in the default mode. */
START_TEST(test_leaf_eval_loss_sequential)
{
    dt_model *m = leaf_model(0);
    ck_assert(dt_model_set_leaf(m, 1, NULL) == DT_OK);
    int y[LEAF_N];
    float *x = leaf_inputs(m, y);
    double loss = 0, ref = 0;
    long right = 0, ref_right = 0;
    dt_model_forward(m, x, y, 37, &loss, &right);
    nn_softmax_ce_forward(dt_model_logits(m), y, 37, dt_model_outputs(m), &ref, &ref_right);
    ck_assert(memcmp(&loss, &ref, sizeof ref) == 0 && right == ref_right);
    /* and for a whole subtree, the tree (differs from sequential somewhere) */
    loss = 0;
    right = 0;
    dt_model_forward(m, x, y, 64, &loss, &right);
    double seq = 0;
    ref_right = 0;
    nn_softmax_ce_forward(dt_model_logits(m), y, 64, dt_model_outputs(m), &seq, &ref_right);
    double v[64];
    nn_softmax_ce_losses(dt_model_logits(m), y, 64, dt_model_outputs(m), v, NULL);
    double tree = nn_tree_sum_double(v, 64);
    ck_assert(memcmp(&loss, &tree, sizeof tree) == 0 && right == ref_right);
    ck_assert(fabs(loss - seq) <= 1e-12 * seq);
    free(x);
    dt_model_free(m);
}
END_TEST

static Suite *nn_suite(void)
{
    Suite *s = suite_create("nn");
    TCase *kinds = tcase_create("kinds");
    tcase_set_timeout(kinds, 120);
    tcase_add_test(kinds, test_dense_grad);
    tcase_add_test(kinds, test_dense_ready_same_bits);
    tcase_add_test(kinds, test_activation_grad);
    tcase_add_test(kinds, test_relu_at_zero);
    tcase_add_test(kinds, test_softmax_ce_grad);
    tcase_add_test(kinds, test_softmax_ce_values);
    tcase_add_test(kinds, test_conv_grad);
    tcase_add_test(kinds, test_conv_grad_relu);
    tcase_add_test(kinds, test_conv_grad_one_channel);
    tcase_add_test(kinds, test_conv_grad_wide);
    tcase_add_test(kinds, test_conv_wide_same_bits);
    tcase_add_test(kinds, test_conv_dx_lanes);
    tcase_add_test(kinds, test_maxpool_same_bits);
    tcase_add_test(kinds, test_maxpool_grad);
    tcase_add_test(kinds, test_maxpool_ties);
    tcase_add_test(kinds, test_checker_catches_errors);
    suite_add_tcase(s, kinds);
    TCase *model = tcase_create("model");
    tcase_set_timeout(model, 120);
    tcase_add_test(model, test_mlp_grad);
    tcase_add_test(model, test_lenet_grad);
    tcase_add_test(model, test_lenet_shapes_and_describe);
    tcase_add_test(model, test_shape_errors);
    tcase_add_test(model, test_valid_edge_shapes);
    tcase_add_test(model, test_init_he);
    tcase_add_test(model, test_init_xavier);
    tcase_add_test(model, test_init_determinism);
    tcase_add_test(model, test_backward_accumulates_and_ready);
    tcase_add_test(model, test_no_allocation_in_step);
    tcase_add_test(model, test_forward_values);
    suite_add_tcase(s, model);
    TCase *leaf = tcase_create("leaf");
    tcase_set_timeout(leaf, 300);
    tcase_add_test(leaf, test_leaf_tree_mlp);
    tcase_add_test(leaf, test_leaf_tree_lenet);
    tcase_add_test(leaf, test_leaf_rows_invariant);
    tcase_add_test(leaf, test_leaf_dx_rows_invariant);
    tcase_add_test(leaf, test_leaf_matches_default);
    tcase_add_test(leaf, test_leaf_grad);
    tcase_add_test(leaf, test_leaf_portable_same_bits);
    tcase_add_test(leaf, test_leaf_errors_and_self_check);
    tcase_add_test(leaf, test_leaf_eval_loss_sequential);
    suite_add_tcase(s, leaf);
    return s;
}

DT_CHECK_MAIN(nn_suite)
