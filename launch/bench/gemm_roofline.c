/* gemm_roofline - the GEMM-only time of one training update: what dtrain's
 * samples/s could at best be if everything but the cblas_sgemm calls took
 * no time.
 *
 *   gemm_roofline [-b B] [-t T] [-r SAMPLES] [-w WORLD] [--kv] MODEL
 *     MODEL   lenet                 the LeNet of configs/fashion_mnist_lenet.yaml
 *             784 256 256 10        an MLP: input size, then every dense layer's units
 *     -b B    samples per update on this rank (default 128; 64 for each of 2 ranks)
 *     -t T    OpenBLAS threads (default 1)
 *     -r S    timed samples, the median is reported (default 21)
 *     -w W    ranks: the samples/s bound is W * B / t (each rank on its own core)
 *     --kv    also print one "key=value ..." line for scripts (launch/bench/compare)
 *
 * The calls are exactly those of src/nn/dense.c and src/nn/conv.c for one
 * update, in the order forward (layer 1..L) then backward (L..1):
 *   dense  forward  y  = x W^T      B x out x in
 *          backward dW += dz^T x    out x in x B   (beta 1)
 *                   dx = dz W       B x in x out   (not for the first layer)
 *   conv   per chunk of G samples (G = NN_CONV_COL_BUDGET / (K*P), as conv_setup):
 *          forward  Z  = W col      O x G*P x K
 *          backward dW += dZ col^T  O x K x G*P   (beta 1)
 *                   dcol = W^T dZ   K x G*P x O   (not for the first layer)
 * on buffers laid out like the model's (conv GEMMs share one workspace, as
 * in the model, so col stays in cache as it does after im2col).
 *
 * The list is checked against the real thing: the program builds the same
 * model with dt_model_create, runs one forward + backward, and records every
 * cblas_sgemm it makes (the link wraps cblas_sgemm); shapes, transposes,
 * leading dimensions, beta and order must match the mirrored list, else it
 * exits 1. It also times that real dt_model forward + backward at the same
 * batch, so the report shows how much of the nn time is not GEMM.
 *
 * OpenBLAS core: the same fix as dtrain (dt_runtime_fix_blas_kernel:
 * re-exec with OPENBLAS_CORETYPE when 0.3.21 falls back to Prescott). */
#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../src/nn/layers.h" /* nn_conv_is_direct */
#include "dtrain/common.h"
#include "dtrain/nn.h"
#include "dtrain/runtime.h"
#include "bench_time.h"

/* Must equal src/nn/layers.h (checked at run time against the real model). */
#define COL_BUDGET (1L << 16)
#define MAX_CALLS 4096

/* ---- the wrapped cblas_sgemm: records the real model's calls ------------- */
typedef struct {
    int ta, tb, M, N, K, lda, ldb, ldc;
    float beta;
} gemm_shape;

void __real_cblas_sgemm(OPENBLAS_CONST enum CBLAS_ORDER order,
                        OPENBLAS_CONST enum CBLAS_TRANSPOSE ta,
                        OPENBLAS_CONST enum CBLAS_TRANSPOSE tb, OPENBLAS_CONST blasint M,
                        OPENBLAS_CONST blasint N, OPENBLAS_CONST blasint K,
                        OPENBLAS_CONST float alpha, OPENBLAS_CONST float *A,
                        OPENBLAS_CONST blasint lda, OPENBLAS_CONST float *B,
                        OPENBLAS_CONST blasint ldb, OPENBLAS_CONST float beta, float *C,
                        OPENBLAS_CONST blasint ldc);
void __wrap_cblas_sgemm(OPENBLAS_CONST enum CBLAS_ORDER order,
                        OPENBLAS_CONST enum CBLAS_TRANSPOSE ta,
                        OPENBLAS_CONST enum CBLAS_TRANSPOSE tb, OPENBLAS_CONST blasint M,
                        OPENBLAS_CONST blasint N, OPENBLAS_CONST blasint K,
                        OPENBLAS_CONST float alpha, OPENBLAS_CONST float *A,
                        OPENBLAS_CONST blasint lda, OPENBLAS_CONST float *B,
                        OPENBLAS_CONST blasint ldb, OPENBLAS_CONST float beta, float *C,
                        OPENBLAS_CONST blasint ldc);

static bool recording;
static gemm_shape recorded[MAX_CALLS];
static int n_recorded;

void __wrap_cblas_sgemm(OPENBLAS_CONST enum CBLAS_ORDER order,
                        OPENBLAS_CONST enum CBLAS_TRANSPOSE ta,
                        OPENBLAS_CONST enum CBLAS_TRANSPOSE tb, OPENBLAS_CONST blasint M,
                        OPENBLAS_CONST blasint N, OPENBLAS_CONST blasint K,
                        OPENBLAS_CONST float alpha, OPENBLAS_CONST float *A,
                        OPENBLAS_CONST blasint lda, OPENBLAS_CONST float *B,
                        OPENBLAS_CONST blasint ldb, OPENBLAS_CONST float beta, float *C,
                        OPENBLAS_CONST blasint ldc)
{
    if (recording && n_recorded < MAX_CALLS)
        recorded[n_recorded++] = (gemm_shape){ta == CblasTrans, tb == CblasTrans, M, N, K,
                                              lda, ldb, ldc, beta};
    __real_cblas_sgemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* ---- the mirrored list ------------------------------------------------------ */
typedef struct {
    gemm_shape s;
    const float *A, *B;
    float *C;
    int group;   /* index into groups[] */
    bool direct; /* dtrain computes this product with its direct conv kernel (no sgemm) */
} gemm_call;

typedef struct {
    char name[64]; /* "conv1 fwd Z=W col" */
    int calls;
    bool direct; /* done by the direct conv kernel in dtrain */
    double flops;
    double *t; /* per timed sample: seconds per update in this group */
} group;

static gemm_call calls[MAX_CALLS];
static int n_calls;
static group groups[128];
static int n_groups;

static void die(const char *what)
{
    fprintf(stderr, "gemm_roofline: %s\n", what);
    exit(2);
}

static float *buf(size_t n)
{
    float *p = dt_alloc_aligned(DT_MAX(n, 1) * sizeof *p);
    if (!p) die("out of memory");
    uint32_t s = (uint32_t)n * 2654435761u + 12345u;
    for (size_t i = 0; i < n; i++) { /* small values in [-0.5, 0.5): no denormals, no overflow */
        s = s * 1664525u + 1013904223u;
        p[i] = (float)(s >> 8) * (1.0f / 16777216.0f) - 0.5f;
    }
    return p;
}

static int group_for(const char *name)
{
    for (int i = 0; i < n_groups; i++)
        if (strcmp(groups[i].name, name) == 0) return i;
    if (n_groups == (int)DT_ARRAY_LEN(groups)) die("too many layers");
    snprintf(groups[n_groups].name, sizeof groups[n_groups].name, "%s", name);
    return n_groups++;
}

static bool adding_direct; /* the calls being added are done by a direct kernel in dtrain */

static void add(const char *name, bool ta, bool tb, int M, int N, int K, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc)
{
    if (n_calls == MAX_CALLS) die("too many GEMM calls");
    int g = group_for(name);
    calls[n_calls++] = (gemm_call){{ta, tb, M, N, K, lda, ldb, ldc, beta}, A, B, C, g, adding_direct};
    groups[g].direct = adding_direct;
    groups[g].calls++;
    groups[g].flops += 2.0 * M * N * K;
}

/* A layer of the mirrored model. */
typedef struct {
    bool conv;
    int in, out;                   /* dense */
    int c, h, w, o, k, pad, oh, ow; /* conv (stride 1) */
    long chunk;
    bool direct;    /* dtrain runs it with its direct kernel: fwd and dW without sgemm */
    bool direct_dx; /* and dx too (nn_conv_dx_is_direct) */
    float *W, *dW, *x, *y, *dy, *dx; /* dense activations; conv uses ws */
    char name[16];
} layer;

static void dense_fwd(const layer *l, int B)
{
    char n[64];
    snprintf(n, sizeof n, "%s fwd  y=x W^T", l->name);
    add(n, false, true, B, l->out, l->in, l->x, l->in, l->W, l->in, 0.0f, l->y, l->out);
}

static void dense_bwd(const layer *l, int B, bool need_dx)
{
    char n[64];
    snprintf(n, sizeof n, "%s bwd  dW+=dz^T x", l->name);
    add(n, true, false, l->out, l->in, B, l->dy, l->out, l->x, l->in, 1.0f, l->dW, l->in);
    if (need_dx) {
        snprintf(n, sizeof n, "%s bwd  dx=dz W", l->name);
        add(n, false, false, B, l->in, l->out, l->dy, l->out, l->W, l->in, 0.0f, l->dx, l->in);
    }
}

static void conv_fwd(const layer *l, int B, float *ws)
{
    const long P = (long)l->oh * l->ow, K = (long)l->c * l->k * l->k, O = l->o;
    char n[64];
    snprintf(n, sizeof n, "%s fwd  Z=W col (chunk %ld)", l->name, l->chunk);
    adding_direct = l->direct;
    for (long n0 = 0; n0 < B; n0 += l->chunk) {
        long G = DT_MIN(l->chunk, B - n0);
        float *col = ws, *z = ws + G * P * K;
        add(n, false, false, (int)O, (int)(G * P), (int)K, l->W, (int)K, col, (int)(G * P),
            0.0f, z, (int)(G * P));
    }
    adding_direct = false;
}

static void conv_bwd(const layer *l, int B, bool need_dx, float *ws)
{
    const long P = (long)l->oh * l->ow, K = (long)l->c * l->k * l->k, O = l->o;
    char n1[64], n2[64];
    snprintf(n1, sizeof n1, "%s bwd  dW+=dZ col^T", l->name);
    snprintf(n2, sizeof n2, "%s bwd  dcol=W^T dZ", l->name);
    for (long n0 = 0; n0 < B; n0 += l->chunk) {
        long G = DT_MIN(l->chunk, B - n0), GP = G * P;
        float *col = ws, *dz = ws + GP * K;
        adding_direct = l->direct;
        add(n1, false, true, (int)O, (int)K, (int)GP, dz, (int)GP, col, (int)GP, 1.0f, l->dW,
            (int)K);
        adding_direct = false;
        adding_direct = l->direct_dx;
        if (need_dx)
            add(n2, true, false, (int)K, (int)GP, (int)O, l->W, (int)K, dz, (int)GP, 0.0f, col,
                (int)GP);
        adding_direct = false;
    }
}

/* ---- the model ---------------------------------------------------------------- */
static layer layers[DT_MAX_LAYERS];
static int n_layers;
static dt_layer_spec specs[DT_MAX_LAYERS];
static int n_specs;
static int input_shape[3];

static void spec_dense(int units)
{
    specs[n_specs++] = (dt_layer_spec){.kind = DT_LAYER_DENSE, .units = units};
}
static void spec_kind(dt_layer_kind k) { specs[n_specs++] = (dt_layer_spec){.kind = k}; }

static void make_lenet(long max_batch)
{
    input_shape[0] = 1, input_shape[1] = 28, input_shape[2] = 28;
    /* conv 6x5x5 p2: 1x28x28 -> 6x28x28, pool -> 6x14x14;
     * conv 16x5x5: -> 16x10x10, pool -> 16x5x5; dense 120, 84, 10 */
    const int convs[2][5] = {{1, 28, 6, 5, 2}, {6, 14, 16, 5, 0}};
    for (int i = 0; i < 2; i++) {
        layer *l = &layers[n_layers++];
        l->conv = true;
        l->c = convs[i][0], l->h = l->w = convs[i][1], l->o = convs[i][2], l->k = convs[i][3];
        l->pad = convs[i][4];
        l->oh = l->ow = l->h + 2 * l->pad - l->k + 1;
        long K = (long)l->c * l->k * l->k, P = (long)l->oh * l->ow;
        l->chunk = DT_MAX(1, DT_MIN(COL_BUDGET / (K * P), max_batch));
        nn_conv_geom g = {.c = l->c, .h = l->h, .w = l->w, .out_c = l->o, .kh = l->k,
                          .kw = l->k, .stride = 1, .pad = l->pad};
        if (nn_conv_geom_init(&g) != 0) die("bad conv geometry");
        l->direct = nn_conv_is_direct(&g);
        l->direct_dx = nn_conv_dx_is_direct(&g);
        snprintf(l->name, sizeof l->name, "conv%d", i + 1);
        specs[n_specs++] = (dt_layer_spec){.kind = DT_LAYER_CONV, .out_channels = l->o,
                                           .kernel = l->k, .stride = 1, .pad = l->pad};
        spec_kind(DT_LAYER_RELU);
        specs[n_specs++] = (dt_layer_spec){.kind = DT_LAYER_MAXPOOL, .size = 2, .stride = 2};
    }
    const int dense[4] = {16 * 5 * 5, 120, 84, 10};
    for (int i = 0; i < 3; i++) {
        layer *l = &layers[n_layers++];
        l->in = dense[i], l->out = dense[i + 1];
        snprintf(l->name, sizeof l->name, "dense%d", i + 1);
        spec_dense(l->out);
        if (i < 2) spec_kind(DT_LAYER_RELU);
    }
}

static void make_mlp(const int *sizes, int n)
{
    if (sizes[0] == 784)
        input_shape[0] = 1, input_shape[1] = 28, input_shape[2] = 28;
    else
        input_shape[0] = sizes[0], input_shape[1] = 1, input_shape[2] = 1;
    for (int i = 0; i + 1 < n; i++) {
        layer *l = &layers[n_layers++];
        l->in = sizes[i], l->out = sizes[i + 1];
        snprintf(l->name, sizeof l->name, "dense%d", i + 1);
        spec_dense(l->out);
        if (i + 2 < n) spec_kind(DT_LAYER_RELU);
    }
}

static float *mirror_ws; /* the conv layers' col/dz workspace */

/* the mirror's buffers (a dense layer's x may be the previous one's y) */
static void free_calls(void)
{
    for (int i = 0; i < n_layers; i++) {
        layer *l = &layers[i];
        dt_free(l->W);
        dt_free(l->dW);
        if (!l->conv) {
            if (!(i > 0 && !layers[i - 1].conv)) dt_free(l->x);
            dt_free(l->y);
            dt_free(l->dy);
            dt_free(l->dx);
        }
    }
    dt_free(mirror_ws);
}

static void build_calls(int B)
{
    size_t ws_floats = 1;
    for (int i = 0; i < n_layers; i++) {
        layer *l = &layers[i];
        if (l->conv) {
            long K = (long)l->c * l->k * l->k, P = (long)l->oh * l->ow, O = l->o;
            l->W = buf((size_t)(O * K));
            l->dW = buf((size_t)(O * K));
            ws_floats = DT_MAX(ws_floats, (size_t)(l->chunk * P * (K + O)));
        } else {
            l->W = buf((size_t)l->out * l->in);
            l->dW = buf((size_t)l->out * l->in);
            /* x of a dense layer is the previous layer's y where there is one */
            l->x = (i > 0 && !layers[i - 1].conv) ? layers[i - 1].y : buf((size_t)B * l->in);
            l->y = buf((size_t)B * l->out);
            l->dy = buf((size_t)B * l->out);
            l->dx = buf((size_t)B * l->in);
        }
    }
    float *ws = mirror_ws = buf(ws_floats);
    for (int i = 0; i < n_layers; i++)
        if (layers[i].conv)
            conv_fwd(&layers[i], B, ws);
        else
            dense_fwd(&layers[i], B);
    for (int i = n_layers - 1; i >= 0; i--)
        if (layers[i].conv)
            conv_bwd(&layers[i], B, i > 0, ws);
        else
            dense_bwd(&layers[i], B, i > 0);
}

/* ---- timing ------------------------------------------------------------------- */
static double median(double *v, int n)
{
    double *c = malloc((size_t)n * sizeof *c);
    if (!c) die("out of memory");
    memcpy(c, v, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, bench_cmp_double);
    double m = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
    free(c);
    return m;
}

static void run_update(double *group_t)
{
    for (int i = 0; i < n_calls; i++) {
        const gemm_call *c = &calls[i];
        double t0 = group_t ? bench_wall_now() : 0;
        __real_cblas_sgemm(CblasRowMajor, c->s.ta ? CblasTrans : CblasNoTrans,
                           c->s.tb ? CblasTrans : CblasNoTrans, c->s.M, c->s.N, c->s.K, 1.0f,
                           c->A, c->s.lda, c->B, c->s.ldb, c->s.beta, c->C, c->s.ldc);
        if (group_t) group_t[c->group] += bench_wall_now() - t0;
    }
}

/* ---- the real model: check the list, time forward + backward ---------------- */
static bool same_shape(const gemm_shape *a, const gemm_shape *b)
{
    return a->ta == b->ta && a->tb == b->tb && a->M == b->M && a->N == b->N && a->K == b->K &&
           a->lda == b->lda && a->ldb == b->ldb && a->ldc == b->ldc && a->beta == b->beta;
}

static dt_model *real_model(int B, long max_batch, float **x, int **y)
{
    dt_model *m = NULL;
    dt_error err = {0};
    if (dt_model_create(specs, n_specs, input_shape, max_batch, NULL, &m, &err) != DT_OK) {
        fprintf(stderr, "gemm_roofline: dt_model_create: %s\n", err.msg);
        exit(2);
    }
    dt_model_init_params(m, DT_INIT_HE, 1);
    long in = dt_model_input_size(m);
    *x = buf((size_t)B * (size_t)in);
    *y = dt_malloc((size_t)B * sizeof **y);
    if (!*y) die("out of memory");
    for (int i = 0; i < B; i++) (*y)[i] = i % dt_model_outputs(m);
    return m;
}

static void real_update(dt_model *m, const float *x, const int *y, int B)
{
    double loss = 0;
    dt_model_zero_grads(m);
    dt_model_forward(m, x, y, B, &loss, NULL);
    dt_model_backward(m, NULL, NULL);
}

static int check_against_model(dt_model *m, const float *x, const int *y, int B)
{
    n_recorded = 0;
    recording = true;
    real_update(m, x, y, B);
    recording = false;
    int bad = 0, r = 0, expected = 0;
    for (int i = 0; i < n_calls; i++) {
        if (calls[i].direct) continue; /* no sgemm in dtrain for this product */
        expected++;
        if (bad || r >= n_recorded) {
            r++;
            continue;
        }
        if (!same_shape(&recorded[r], &calls[i].s)) {
            const gemm_shape *a = &recorded[r], *b = &calls[i].s;
            fprintf(stderr,
                    "gemm_roofline: call %d differs: dtrain %c%c %dx%dx%d ld %d %d %d beta %g, "
                    "mirror %c%c %dx%dx%d ld %d %d %d beta %g (%s)\n",
                    r, a->ta ? 'T' : 'N', a->tb ? 'T' : 'N', a->M, a->N, a->K, a->lda, a->ldb,
                    a->ldc, a->beta, b->ta ? 'T' : 'N', b->tb ? 'T' : 'N', b->M, b->N, b->K,
                    b->lda, b->ldb, b->ldc, b->beta, groups[calls[i].group].name);
            bad = 1;
        }
        r++;
    }
    if (n_recorded != expected) {
        fprintf(stderr, "gemm_roofline: dtrain made %d GEMM calls in one update, the mirror %d\n",
                n_recorded, expected);
        bad = 1;
    }
    return bad;
}

/* Updates per timed sample so one sample takes about `target` seconds. */
static int calibrate(void (*fn)(void *), void *ctx, double target)
{
    int reps = 1;
    for (;;) {
        double t0 = bench_wall_now();
        for (int r = 0; r < reps; r++) fn(ctx);
        double dt = bench_wall_now() - t0;
        if (dt >= target || reps >= (1 << 20)) return reps;
        reps = dt > 0 ? DT_MAX(reps * 2, (int)(reps * target / dt * 1.1)) : reps * 2;
    }
}

static void gemm_fn(void *ctx)
{
    (void)ctx;
    run_update(NULL);
}

typedef struct {
    dt_model *m;
    const float *x;
    const int *y;
    int B;
} real_ctx;

static void real_fn(void *ctx)
{
    real_ctx *c = ctx;
    real_update(c->m, c->x, c->y, c->B);
}

/* ---- main ------------------------------------------------------------------------ */
static void usage(void)
{
    fprintf(stderr, "usage: gemm_roofline [-b B] [-t THREADS] [-r SAMPLES] [-w WORLD] [--kv] "
                    "lenet | IN N1 N2 ... NOUT\n"
                    "  e.g. gemm_roofline 784 256 256 10;  gemm_roofline -b 64 -w 2 lenet\n");
    exit(2);
}

static long int_arg(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == 0 || *end != 0 || v < 1 || v > 1000000) usage();
    return v;
}

int main(int argc, char **argv)
{
    dt_runtime_fix_blas_kernel(argv);
    int B = 128, threads = 1, samples = 21, world = 1, sizes[DT_MAX_LAYERS], n_sizes = 0;
    bool kv = false, lenet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-b") == 0 && i + 1 < argc)
            B = (int)int_arg(argv[++i]);
        else if (strcmp(a, "-t") == 0 && i + 1 < argc)
            threads = (int)int_arg(argv[++i]);
        else if (strcmp(a, "-r") == 0 && i + 1 < argc)
            samples = (int)int_arg(argv[++i]);
        else if (strcmp(a, "-w") == 0 && i + 1 < argc)
            world = (int)int_arg(argv[++i]);
        else if (strcmp(a, "--kv") == 0)
            kv = true;
        else if (strcmp(a, "lenet") == 0 && n_sizes == 0 && !lenet)
            lenet = true;
        else if (a[0] != '-' && !lenet && n_sizes < DT_MAX_LAYERS / 2)
            sizes[n_sizes++] = (int)int_arg(a);
        else
            usage();
    }
    if (!lenet && n_sizes < 2) usage();
    openblas_set_num_threads(threads);

    long max_batch = DT_MAX(B, 256); /* as train.c's build() */
    char model_name[256] = "lenet";
    if (lenet) {
        make_lenet(max_batch);
    } else {
        make_mlp(sizes, n_sizes);
        size_t used = 0;
        model_name[0] = 0;
        for (int i = 0; i < n_sizes; i++)
            used += (size_t)snprintf(model_name + used, sizeof model_name - used, "%s%d",
                                     i ? "-" : "mlp ", sizes[i]);
    }
    build_calls(B);

    float *x;
    int *y;
    dt_model *m = real_model(B, max_batch, &x, &y);
    if (check_against_model(m, x, y, B)) {
        fprintf(stderr, "gemm_roofline: the mirrored GEMM list no longer matches src/nn; update "
                        "launch/bench/gemm_roofline.c\n");
        return 1;
    }
    double flops = 0;
    for (int g = 0; g < n_groups; g++) flops += groups[g].flops;
    double model_flops = dt_model_flops_per_sample(m) * B;

    /* warm up and calibrate both, then SAMPLES rounds, each timing REPS
     * GEMM-only updates, RREPS real forward+backward updates and a per-GEMM
     * breakdown pass, interleaved so that noise from other work on the
     * machine hits all three alike; medians over the rounds. */
    real_ctx rc = {m, x, y, B};
    for (int r = 0; r < 3; r++) run_update(NULL), real_fn(&rc);
    int reps = calibrate(gemm_fn, NULL, 0.03);
    int rreps = calibrate(real_fn, &rc, 0.03);
    double *tot = calloc((size_t)samples, sizeof *tot);
    double *rt = calloc((size_t)samples, sizeof *rt);
    double *ctot = calloc((size_t)samples, sizeof *ctot);
    double *crt = calloc((size_t)samples, sizeof *crt);
    double *gt = calloc((size_t)n_groups, sizeof *gt);
    if (!tot || !rt || !ctot || !crt || !gt) die("out of memory");
    for (int g = 0; g < n_groups; g++)
        if (!(groups[g].t = calloc((size_t)samples, sizeof(double)))) die("out of memory");
    for (int s = 0; s < samples; s++) {
        double t0 = bench_wall_now(), c0 = bench_cpu_now();
        for (int r = 0; r < reps; r++) run_update(NULL);
        tot[s] = (bench_wall_now() - t0) / reps;
        ctot[s] = (bench_cpu_now() - c0) / reps;
        t0 = bench_wall_now(), c0 = bench_cpu_now();
        for (int r = 0; r < rreps; r++) real_fn(&rc);
        rt[s] = (bench_wall_now() - t0) / rreps;
        crt[s] = (bench_cpu_now() - c0) / rreps;
        memset(gt, 0, (size_t)n_groups * sizeof *gt);
        int breps = DT_MAX(1, reps / 4);
        for (int r = 0; r < breps; r++) run_update(gt); /* a clock read per call */
        for (int g = 0; g < n_groups; g++) groups[g].t[s] = gt[g] / breps;
    }
    double t_gemm = median(tot, samples), t_real = median(rt, samples);
    double c_gemm = median(ctot, samples), c_real = median(crt, samples);
    double t_min = tot[0], r_min = rt[0];
    for (int s = 1; s < samples; s++) t_min = DT_MIN(t_min, tot[s]), r_min = DT_MIN(r_min, rt[s]);

    time_t wall = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M", localtime(&wall));
    printf("gemm_roofline: %s, batch %d per rank, %d OpenBLAS thread%s, core %s, %s\n",
           model_name, B, threads, threads == 1 ? "" : "s", openblas_get_corename(), date);
    int n_direct = 0;
    for (int i = 0; i < n_calls; i++) n_direct += calls[i].direct;
    printf("  %d sgemm calls per update: the GEMM formulation of every layer (im2col chunks for "
           "conv);\n  dtrain makes the %d not marked '*' (same shapes and order, checked); the "
           "%d marked '*' it\n  computes with its direct conv kernels, and they stay in the bound "
           "as the GEMMs they replace\n",
           n_calls, n_calls - n_direct, n_direct);
    printf("  %-34s %5s %9s %9s %8s\n", "GEMM (M x N x K)", "calls", "MFLOP", "us/update",
           "GFLOP/s");
    for (int g = 0; g < n_groups; g++) {
        /* shape of the group's first (full) call */
        const gemm_shape *s = NULL;
        for (int i = 0; i < n_calls && !s; i++)
            if (calls[i].group == g) s = &calls[i].s;
        double tg = median(groups[g].t, samples);
        printf("%c %-34s %5d %9.3f %9.1f %8.1f   %dx%dx%d\n", groups[g].direct ? '*' : ' ',
               groups[g].name, groups[g].calls,
               groups[g].flops * 1e-6, tg * 1e6, tg > 0 ? groups[g].flops / tg * 1e-9 : 0,
               s->M, s->N, s->K);
    }
    double gflops = flops / t_gemm * 1e-9;
    double bound = world * B / t_gemm;
    printf("  GEMM time per update: %.3f ms median of %d samples x %d updates (min %.3f ms)\n",
           t_gemm * 1e3, samples, reps, t_min * 1e3);
    printf("  FLOPs per update: %.4g (%.1f MFLOP; dt_model_flops_per_sample x B = %.1f MFLOP)\n",
           flops, flops * 1e-6, model_flops * 1e-6);
    printf("  achieved: %.1f GFLOP/s\n", gflops);
    printf("  bound: %.0f samples/s (%d rank%s x %d samples / GEMM time)\n", bound, world,
           world == 1 ? "" : "s", B);
    printf("  dt_model zero+forward+backward (real, same batch): %.3f ms per update (min %.3f "
           "ms);\n  GEMMs are %.0f%% of it, %.3f ms is not GEMM (medians; min: %.0f%%, %.3f ms)\n",
           t_real * 1e3, r_min * 1e3, 100.0 * t_gemm / t_real, (t_real - t_gemm) * 1e3,
           100.0 * t_min / r_min, (r_min - t_min) * 1e3);
    printf("  CPU time per update (median; leaves out waiting for a CPU on a shared machine%s): "
           "GEMMs %.3f ms, dt_model %.3f ms, not GEMM %.3f ms\n",
           threads > 1 ? ", summed over threads" : "", c_gemm * 1e3, c_real * 1e3,
           (c_real - c_gemm) * 1e3);
    if (kv)
        printf("KV model=%s batch=%d threads=%d world=%d core=%s calls=%d gemm_ms=%.4f "
               "flops=%.6g gflops=%.2f bound_sps=%.1f model_ms=%.4f gemm_min_ms=%.4f model_min_ms=%.4f "
               "gemm_cpu_ms=%.4f model_cpu_ms=%.4f\n",
               lenet ? "lenet" : "mlp", B, threads, world, openblas_get_corename(), n_calls,
               t_gemm * 1e3, flops, gflops, bound, t_real * 1e3, t_min * 1e3, r_min * 1e3, c_gemm * 1e3, c_real * 1e3);
    dt_model_free(m);
    dt_free(x);
    dt_free(y);
    for (int g = 0; g < n_groups; g++) free(groups[g].t);
    free(tot);
    free(rt);
    free(ctot);
    free(crt);
    free(gt);
    free_calls();
    return 0;
}
