/* golden_conv.c - checker for kind: conv reference files.
 *
 * Calls the nn module's kernels directly (src/nn/layers.h), because the
 * files use a kh x kw kernel (4x3 in one case) that the config cannot
 * express: conv (stride 1, padding from the header) then maxpool 2/2
 * forward from the file's x, weight and bias; then backward from the GIVEN
 * dpool: maxpool backward (dconv), conv backward (dx, dweight, dbias, which
 * the file gives for the summed loss sum(pool * dpool), so no division).
 * Everything runs twice, im2col'ing one sample at a time and the whole
 * batch at once, so both chunkings of the conv kernels are checked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/nn/layers.h"
#include "refparse.h"

#define RTOL 1e-4
#define ATOL 1e-6

/* Concatenate rows "<label> a b" over a, b (b < 0: rows "<label> a"), each
 * of `each` values, into out (float); -1 with why on a missing/short row. */
static int load(const ref_file *f, const char *label, int na, int nb, int each, float *out,
                double *buf, char *why, size_t why_size)
{
    char prefix[64];
    for (int a = 0; a < na; a++)
        for (int b = 0; b < (nb < 0 ? 1 : nb); b++) {
            if (nb < 0)
                snprintf(prefix, sizeof prefix, "%s %d", label, a);
            else
                snprintf(prefix, sizeof prefix, "%s %d %d", label, a, b);
            int got = ref_row(f, prefix, buf, each);
            if (got != each) {
                snprintf(why, why_size, "row '%s': %d values, expected %d", prefix, got, each);
                return -1;
            }
            float *o = out + ((long)a * (nb < 0 ? 1 : nb) + b) * each;
            for (int i = 0; i < each; i++) o[i] = (float)buf[i];
        }
    return 0;
}

/* Compare a with rows "<label> i j" (nb < 0: the single row "<label>") as
 * float64, so the tolerance applies to the reference's exact values. */
static int compare(const ref_file *f, const char *label, int na, int nb, int each,
                   const float *a, double *buf, double *worst, char *why, size_t why_size)
{
    char prefix[64];
    int bad = 0;
    for (int i = 0; i < na; i++)
        for (int j = 0; j < (nb < 0 ? 1 : nb); j++) {
            if (nb < 0)
                snprintf(prefix, sizeof prefix, "%s", label);
            else
                snprintf(prefix, sizeof prefix, "%s %d %d", label, i, j);
            if (ref_row(f, prefix, buf, each) != each) {
                snprintf(why, why_size, "row '%s' missing or short", prefix);
                return -1;
            }
            const float *ai = a + ((long)i * (nb < 0 ? 1 : nb) + j) * each;
            double w = ref_worst_ratio(ai, buf, each, RTOL, ATOL);
            if (w > *worst) *worst = w;
            if (w > 1.0) {
                if (!why[0]) snprintf(why, why_size, "%s off (ratio %.3g)", prefix, w);
                bad = 1;
            }
        }
    return bad;
}

int golden_check_conv(const ref_file *f, double *worst, char *why, size_t why_size)
{
    *worst = 0;
    why[0] = 0;
    long N, C, O, H, W, kh, kw, stride, pad, oh, ow, ps, pst, ph, pw;
    if (ref_header_long(f, "batch", &N, why, why_size) ||
        ref_header_long(f, "in_channels", &C, why, why_size) ||
        ref_header_long(f, "out_channels", &O, why, why_size) ||
        ref_header_long(f, "in_h", &H, why, why_size) ||
        ref_header_long(f, "in_w", &W, why, why_size) ||
        ref_header_long(f, "kh", &kh, why, why_size) ||
        ref_header_long(f, "kw", &kw, why, why_size) ||
        ref_header_long(f, "stride", &stride, why, why_size) ||
        ref_header_long(f, "padding", &pad, why, why_size) ||
        ref_header_long(f, "out_h", &oh, why, why_size) ||
        ref_header_long(f, "out_w", &ow, why, why_size) ||
        ref_header_long(f, "pool_size", &ps, why, why_size) ||
        ref_header_long(f, "pool_stride", &pst, why, why_size) ||
        ref_header_long(f, "pool_h", &ph, why, why_size) ||
        ref_header_long(f, "pool_w", &pw, why, why_size))
        return -1;
    nn_conv_geom g = {.c = (int)C, .h = (int)H, .w = (int)W, .out_c = (int)O, .kh = (int)kh,
                      .kw = (int)kw, .stride = (int)stride, .pad = (int)pad};
    if (nn_conv_geom_init(&g) != 0 || g.oh != oh || g.ow != ow) {
        snprintf(why, why_size, "conv geometry disagrees with out_h/out_w headers");
        return -1;
    }
    if ((H + 2 * pad - kh) / stride + 1 != oh || (oh - ps) / pst + 1 != ph ||
        (ow - ps) / pst + 1 != pw) {
        snprintf(why, why_size, "pool geometry disagrees with pool_h/pool_w headers");
        return -1;
    }
    long in_sz = C * H * W, conv_sz = O * oh * ow, pool_sz = O * ph * pw, nw = O * C * kh * kw;
    long biggest = DT_MAX(DT_MAX(in_sz, conv_sz), nw) + 16;
    float *x = malloc(sizeof(float) * (size_t)(N * in_sz));
    float *w = malloc(sizeof(float) * (size_t)nw);
    float *b = malloc(sizeof(float) * (size_t)O);
    float *conv = malloc(sizeof(float) * (size_t)(N * conv_sz));
    float *pool = malloc(sizeof(float) * (size_t)(N * pool_sz));
    float *dpool = malloc(sizeof(float) * (size_t)(N * pool_sz));
    float *dconv = malloc(sizeof(float) * (size_t)(N * conv_sz));
    float *dx = malloc(sizeof(float) * (size_t)(N * in_sz));
    float *dw = malloc(sizeof(float) * (size_t)nw);
    float *db = malloc(sizeof(float) * (size_t)O);
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)(N * pool_sz));
    float *ws = malloc(sizeof(float) * nn_conv_workspace(&g, N));
    double *buf = malloc(sizeof(double) * (size_t)biggest);
    int rc = -1;
    if (!x || !w || !b || !conv || !pool || !dpool || !dconv || !dx || !dw || !db || !idx ||
        !ws || !buf) {
        snprintf(why, why_size, "out of memory");
        goto done;
    }
    if (load(f, "x", (int)N, (int)C, (int)(H * W), x, buf, why, why_size) ||
        load(f, "weight", (int)O, (int)C, (int)(kh * kw), w, buf, why, why_size) ||
        load(f, "dpool", (int)N, (int)O, (int)(ph * pw), dpool, buf, why, why_size))
        goto done;
    if (ref_row(f, "bias", buf, (int)O) != O) {
        snprintf(why, why_size, "row 'bias' missing or short");
        goto done;
    }
    for (long o = 0; o < O; o++) b[o] = (float)buf[o];

    rc = 0;
    const long chunks[2] = {1, N};
    for (int t = 0; t < 2 && rc == 0; t++) {
        nn_conv_forward(conv, x, w, b, N, &g, NN_ACT_NONE, ws, chunks[t]);
        nn_maxpool_forward(pool, idx, conv, N, (int)O, (int)oh, (int)ow, (int)ps, (int)pst,
                           (int)ph, (int)pw);
        nn_maxpool_backward(dconv, dpool, idx, N, (int)O, (int)oh, (int)ow, (int)ps, (int)pst,
                            (int)ph, (int)pw);
        memset(dw, 0, sizeof(float) * (size_t)nw);
        memset(db, 0, sizeof(float) * (size_t)O);
        nn_conv_backward(dx, dw, db, dconv, conv, x, w, N, &g, NN_ACT_NONE, ws, chunks[t]);
        int r;
        if ((r = compare(f, "conv", (int)N, (int)O, (int)(oh * ow), conv, buf, worst, why, why_size)) ||
            (r = compare(f, "pool", (int)N, (int)O, (int)(ph * pw), pool, buf, worst, why, why_size)) ||
            (r = compare(f, "dconv", (int)N, (int)O, (int)(oh * ow), dconv, buf, worst, why, why_size)) ||
            (r = compare(f, "dx", (int)N, (int)C, (int)(H * W), dx, buf, worst, why, why_size)) ||
            (r = compare(f, "dweight", (int)O, (int)C, (int)(kh * kw), dw, buf, worst, why, why_size)) ||
            (r = compare(f, "dbias", 1, -1, (int)O, db, buf, worst, why, why_size)))
            rc = r;
        if (rc && why[0] && t == 1) {
            size_t len = strlen(why);
            snprintf(why + len, why_size - len, " (batched im2col)");
        }
    }
done:
    free(x);
    free(w);
    free(b);
    free(conv);
    free(pool);
    free(dpool);
    free(dconv);
    free(dx);
    free(dw);
    free(db);
    free(idx);
    free(ws);
    free(buf);
    return rc;
}
