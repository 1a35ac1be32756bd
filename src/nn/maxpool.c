/* maxpool.c - max pooling over each channel plane, no padding.
 *
 * out = floor((h - size) / stride) + 1, so a trailing row/column that no
 * window covers is dropped (and gets zero gradient). Forward records, per
 * output, the plane offset of the window's FIRST maximum in row-major order
 * (strict '>' while scanning), and backward routes dy there; with
 * overlapping windows (size > stride) one input can collect several
 * gradients, hence the zero-then-add. Indices are allocated once by the
 * model (n_idx per sample). */
#include <stdio.h>
#include <string.h>

#include "layers.h"

void nn_maxpool_forward(float *y, int32_t *idx, const float *x, long B, int c, int h, int w,
                        int size, int stride, int oh, int ow)
{
    const long plane = (long)h * w, oplane = (long)oh * ow;
    for (long p = 0; p < B * c; p++) {
        const float *xp = x + p * plane;
        float *yp = y + p * oplane;
        int32_t *ip = idx + p * oplane;
        if (size == 2 && stride == 2) {
            /* the common case, as selects instead of a branchy scan; the
             * order of the comparisons keeps the first maximum */
            for (int i = 0; i < oh; i++) {
                const float *r0 = xp + 2L * i * w, *r1 = r0 + w;
                for (int j = 0; j < ow; j++) {
                    int at = 2 * i * w + 2 * j;
                    float m = r0[2 * j];
                    int k = at;
                    k = r0[2 * j + 1] > m ? at + 1 : k;
                    m = r0[2 * j + 1] > m ? r0[2 * j + 1] : m;
                    k = r1[2 * j] > m ? at + w : k;
                    m = r1[2 * j] > m ? r1[2 * j] : m;
                    k = r1[2 * j + 1] > m ? at + w + 1 : k;
                    m = r1[2 * j + 1] > m ? r1[2 * j + 1] : m;
                    yp[i * ow + j] = m;
                    ip[i * ow + j] = k;
                }
            }
            continue;
        }
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                int at = i * stride * w + j * stride;
                float best = xp[at];
                int arg = at;
                for (int a = 0; a < size; a++) {
                    const float *r = xp + (i * stride + a) * w + j * stride;
                    for (int b = 0; b < size; b++)
                        if (r[b] > best) {
                            best = r[b];
                            arg = (i * stride + a) * w + j * stride + b;
                        }
                }
                yp[i * ow + j] = best;
                ip[i * ow + j] = arg;
            }
    }
}

void nn_maxpool_backward(float *dx, const float *dy, const int32_t *idx, long B, int c, int h,
                         int w, int size, int stride, int oh, int ow)
{
    const long plane = (long)h * w, oplane = (long)oh * ow;
    if (size == 2 && stride == 2 && h == 2 * oh && w == 2 * ow) {
        /* 2x2 windows tiling the plane: every dx is written once, without
         * the pass that zeroes dx first (a third of this backward's time in
         * LeNet). 0.0f + dy, as the zero-then-add gives: +0 for a -0 dy. */
        for (long p = 0; p < B * c; p++) {
            float *xp = dx + p * plane;
            const float *dp = dy + p * oplane;
            const int32_t *ip = idx + p * oplane;
            for (int i = 0; i < oh; i++) {
                float *r0 = xp + 2L * i * w, *r1 = r0 + w;
                for (int j = 0; j < ow; j++) {
                    const int at = 2 * i * w + 2 * j, k = ip[i * ow + j];
                    const float d = 0.0f + dp[i * ow + j];
                    r0[2 * j] = k == at ? d : 0.0f;
                    r0[2 * j + 1] = k == at + 1 ? d : 0.0f;
                    r1[2 * j] = k == at + w ? d : 0.0f;
                    r1[2 * j + 1] = k == at + w + 1 ? d : 0.0f;
                }
            }
        }
        return;
    }
    memset(dx, 0, (size_t)(B * c * plane) * sizeof *dx);
    for (long p = 0; p < B * c; p++) {
        float *xp = dx + p * plane;
        const float *dp = dy + p * oplane;
        const int32_t *ip = idx + p * oplane;
        for (long k = 0; k < oplane; k++) xp[ip[k]] += dp[k];
    }
}

/* ---- the kind ------------------------------------------------------------ */
static int maxpool_setup(nn_layer *l, char *why, size_t why_size)
{
    const dt_layer_spec *s = &l->spec;
    if (l->in.flat) {
        snprintf(why, why_size, "its input is a flat vector of %ld values, not a CxHxW image",
                 l->in_size);
        return -1;
    }
    if (s->size < 1 || s->stride < 1) {
        snprintf(why, why_size, "needs size >= 1 and stride >= 1, got size %d stride %d", s->size,
                 s->stride);
        return -1;
    }
    if (s->size > l->in.h || s->size > l->in.w) {
        snprintf(why, why_size, "pool %d leaves nothing of its input %dx%dx%d", s->size, l->in.c,
                 l->in.h, l->in.w);
        return -1;
    }
    l->out = (nn_shape){l->in.c, (l->in.h - s->size) / s->stride + 1,
                        (l->in.w - s->size) / s->stride + 1, false};
    l->n_idx = (size_t)l->out.c * (size_t)l->out.h * (size_t)l->out.w;
    return 0;
}

static void maxpool_fwd(nn_layer *l, long n)
{
    nn_maxpool_forward(l->y, l->idx, l->x, n, l->in.c, l->in.h, l->in.w, l->spec.size,
                       l->spec.stride, l->out.h, l->out.w);
}

static void maxpool_bwd(nn_layer *l, long n)
{
    if (!l->dx) return; /* nothing before it needs a gradient */
    nn_maxpool_backward(l->dx, l->dy, l->idx, n, l->in.c, l->in.h, l->in.w, l->spec.size,
                        l->spec.stride, l->out.h, l->out.w);
}

static void maxpool_label(const nn_layer *l, char *buf, size_t size)
{
    snprintf(buf, size, "maxpool %d s%d", l->spec.size, l->spec.stride);
}

const nn_kind nn_kind_maxpool = {.name = "maxpool", .setup = maxpool_setup,
                                 .forward = maxpool_fwd, .backward = maxpool_bwd,
                                 .label = maxpool_label};
