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

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define NN_POOL16 1

/* ---- 2x2 stride 2, 16 outputs of a row at once (AVX-512) ---------------------
 * The even and odd columns of 32 inputs are separated by two permutes, and
 * the window is scanned in the scalar order with the same strict '>' (false
 * for NaN, as _CMP_GT_OQ): the same maxima and the same indices. Backward
 * writes the four inputs of each window (0.0f + dy where the index points,
 * +0 elsewhere) and interleaves them back into the two rows. */
static const int32_t pool_evens[16] = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
static const int32_t pool_lanes[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
/* lane 2l of a row is window l's even input, lane 2l+1 its odd one */
static const int32_t pool_lo[16] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23};

__attribute__((target("avx512f"), always_inline)) static inline void
pool_row16(float *y, int32_t *idx, const float *r0, int w, int at0, int n)
{
    const __m512i evens = _mm512_loadu_si512(pool_evens);
    const __m512i odds = _mm512_add_epi32(evens, _mm512_set1_epi32(1));
    const __mmask16 ma = nn_lanes16(2 * n), mb = nn_lanes16(2 * n - 16);
    __m512 v[4]; /* the window's inputs in scan order: r0 even, r0 odd, r1 even, r1 odd */
    for (int r = 0; r < 2; r++) {
        const float *row = r0 + (long)r * w;
        const __m512 a = _mm512_maskz_loadu_ps(ma, row), b = _mm512_maskz_loadu_ps(mb, row + 16);
        v[2 * r] = _mm512_permutex2var_ps(a, evens, b);
        v[2 * r + 1] = _mm512_permutex2var_ps(a, odds, b);
    }
    const __m512i at = _mm512_add_epi32(_mm512_set1_epi32(at0),
                                        _mm512_slli_epi32(_mm512_loadu_si512(pool_lanes), 1));
    const int32_t step[4] = {0, 1, w, w + 1};
    __m512 m = v[0];
    __m512i k = at;
    for (int q = 1; q < 4; q++) {
        const __mmask16 gt = _mm512_cmp_ps_mask(v[q], m, _CMP_GT_OQ);
        k = _mm512_mask_mov_epi32(k, gt, _mm512_add_epi32(at, _mm512_set1_epi32(step[q])));
        m = _mm512_mask_mov_ps(m, gt, v[q]);
    }
    const __mmask16 out = nn_lanes16(n);
    _mm512_mask_storeu_ps(y, out, m);
    _mm512_mask_storeu_epi32(idx, out, k);
}

__attribute__((target("avx512f"), always_inline)) static inline void
unpool_row16(float *r0, const float *dy, const int32_t *idx, int w, int at0, int n)
{
    const __mmask16 out = nn_lanes16(n);
    const __m512 d = _mm512_add_ps(_mm512_setzero_ps(), _mm512_maskz_loadu_ps(out, dy));
    const __m512i k = _mm512_maskz_loadu_epi32(out, idx);
    const __m512i at = _mm512_add_epi32(_mm512_set1_epi32(at0),
                                        _mm512_slli_epi32(_mm512_loadu_si512(pool_lanes), 1));
    const __m512i lo = _mm512_loadu_si512(pool_lo);
    const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
    const int32_t step[4] = {0, 1, w, w + 1};
    __m512 v[4];
    for (int q = 0; q < 4; q++)
        v[q] = _mm512_maskz_mov_ps(
            _mm512_cmpeq_epi32_mask(k, _mm512_add_epi32(at, _mm512_set1_epi32(step[q]))), d);
    const __mmask16 ma = nn_lanes16(2 * n), mb = nn_lanes16(2 * n - 16);
    for (int r = 0; r < 2; r++) {
        float *row = r0 + (long)r * w;
        _mm512_mask_storeu_ps(row, ma, _mm512_permutex2var_ps(v[2 * r], lo, v[2 * r + 1]));
        _mm512_mask_storeu_ps(row + 16, mb, _mm512_permutex2var_ps(v[2 * r], hi, v[2 * r + 1]));
    }
}

/* every plane of the batch in one call (the row kernels inlined, their
 * constants loaded once) */
__attribute__((target("avx512f"))) static void pool_planes16(float *y, int32_t *idx,
                                                             const float *x, long planes, int h,
                                                             int w, int oh, int ow)
{
    const long plane = (long)h * w, oplane = (long)oh * ow;
    for (long p = 0; p < planes; p++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j += 16)
                pool_row16(y + p * oplane + i * ow + j, idx + p * oplane + i * ow + j,
                           x + p * plane + 2L * i * w + 2 * j, w, 2 * i * w + 2 * j,
                           DT_MIN(16, ow - j));
}

__attribute__((target("avx512f"))) static void unpool_planes16(float *dx, const float *dy,
                                                               const int32_t *idx, long planes,
                                                               int h, int w, int oh, int ow)
{
    const long plane = (long)h * w, oplane = (long)oh * ow;
    for (long p = 0; p < planes; p++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j += 16)
                unpool_row16(dx + p * plane + 2L * i * w + 2 * j, dy + p * oplane + i * ow + j,
                             idx + p * oplane + i * ow + j, w, 2 * i * w + 2 * j,
                             DT_MIN(16, ow - j));
}

#else
#define NN_POOL16 0
#endif

void nn_maxpool_forward(float *y, int32_t *idx, const float *x, long B, int c, int h, int w,
                        int size, int stride, int oh, int ow)
{
    const long plane = (long)h * w, oplane = (long)oh * ow;
#if NN_POOL16
    if (size == 2 && stride == 2 && nn_use_avx512()) {
        pool_planes16(y, idx, x, B * c, h, w, oh, ow);
        return;
    }
#endif
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
    if (size == 2 && stride == 2 && h == 2 * oh && w == 2 * ow && ow >= 8) {
        /* 2x2 windows tiling the plane: every dx is written once, without
         * the pass that zeroes dx first (a third of this backward's time in
         * LeNet's first pooling). 0.0f + dy, as the zero-then-add gives: +0
         * for a -0 dy. Rows of fewer than 8 outputs (LeNet's second
         * pooling, 5) are faster as zero-then-scatter: 0.034 against 0.048
         * ms per update. */
#if NN_POOL16
        if (nn_use_avx512()) {
            unpool_planes16(dx, dy, idx, B * c, h, w, oh, ow);
            return;
        }
#endif
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
