/* conv.c - 2-D convolution (cross-correlation), NCHW, im2col + sgemm.
 *
 * A chunk of G samples is unfolded into col [K][G*P] (K = C*kh*kw rows, one
 * column per output pixel of every sample in the chunk, P = oh*ow), so one
 * GEMM serves G samples:
 *   forward   Z [O][G*P] = W [O][K] * col;  y[n][o][:] = act(Z[o][n*P..] + b[o])
 *   backward  dZ = dy * act'(y) gathered to [O][G*P]; db[o] += row sums;
 *             dW [O][K] += dZ * col^T        (beta 1: accumulates)
 *             dcol = W^T * dZ (into the col buffer, no longer needed), col2im -> dx
 * Batching samples makes the GEMMs wider (the first LeNet conv is only
 * 6 x 25 x 784 per sample), while a bounded chunk keeps col in cache
 * instead of unfolding the whole batch (NN_CONV_COL_BUDGET). Measured on
 * LeNet, batch 128, 1 OpenBLAS thread (ms fwd/bwd): conv1 chunk 1..8
 * 0.88-0.90/1.71-1.75, 16: 1.25/2.55, 128: 1.91/3.48; conv2 chunk 1:
 * 1.44/3.65, 4: 1.31/3.34, 128: 1.85/4.00. The budget gives chunks 3 and 4.
 * im2col/col2im find the valid output range of each kernel column once per
 * row, so the inner loops are branch-free copies (memcpy at stride 1). */
#include <cblas.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "layers.h"

int nn_conv_geom_init(nn_conv_geom *g)
{
    if (g->c < 1 || g->h < 1 || g->w < 1 || g->out_c < 1 || g->kh < 1 || g->kw < 1 ||
        g->stride < 1 || g->pad < 0)
        return -1;
    long ph = (long)g->h + 2L * g->pad, pw = (long)g->w + 2L * g->pad;
    if (g->kh > ph || g->kw > pw) return -1;
    g->oh = (int)((ph - g->kh) / g->stride + 1);
    g->ow = (int)((pw - g->kw) / g->stride + 1);
    return 0;
}

/* Output columns [lo, hi) of kernel column kj that read inside the input
 * row (the others read padding): ow*s + kj - pad in [0, w). */
static void valid_range(int kj, const nn_conv_geom *g, int *lo, int *hi)
{
    int s = g->stride, a = g->pad - kj, top = g->w - 1 + g->pad - kj;
    int l = a <= 0 ? 0 : (a + s - 1) / s;
    int h = top < 0 ? 0 : top / s + 1;
    if (h > g->ow) h = g->ow;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* ---- the direct kernel: one input channel, stride 1 ------------------------
 * With C = 1 the unfold is pure overhead: col would hold kh*kw copies of every
 * input pixel (25 in LeNet's first layer) for a GEMM whose M is the handful of
 * output channels, which OpenBLAS runs at a fraction of its peak (LeNet conv1
 * dW = dZ col^T, 6 x 25 x 2352: 17 GFLOP/s against 95 for the dense layers).
 * Here each sample's plane is copied once, zero-padded, into a staging plane
 * xs [h + 2 pad][SW], and every output row is computed in 8-wide AVX2 FMA
 * registers straight from it:
 *   forward   y[o][i][j..j+32) = act(b[o] + sum_ki,kj w[o][ki][kj] xs[i+ki][j+kj..])
 *             bias and activation in the same registers (no Z pass);
 *   backward  dz[o] = dy * act'(y) staged as [oh][NB*32] with zero columns
 *             past ow, db[o] += its sum, and
 *             dW[o][ki][kj] += sum_i,j dz[o][i][j] xs[i+ki][j+kj]
 *             with the kw taps of one (o, ki) as kw vector accumulators.
 * Output rows are covered in blocks of 32 columns (4 vectors); the staged
 * plane is wide enough (SW = NB*32 + kw - 1) that a block never reads past it.
 * Only the weight gradient is direct: the first layer has no dx to form, so
 * when dx is asked for the backward takes the im2col path. Used when the CPU
 * has AVX2 and FMA (checked once at run time; the library itself is built for
 * baseline x86-64), otherwise, and for C > 1 or stride > 1, im2col + sgemm.
 * With AVX-512F the same arithmetic runs 16 lanes wide (see "AVX-512
 * variants" below). */
#define NN_DIRECT_BLOCK 32
#define NN_DIRECT_MAX_KW 8

static size_t direct_blocks(const nn_conv_geom *g)
{
    return ((size_t)g->ow + NN_DIRECT_BLOCK - 1) / NN_DIRECT_BLOCK;
}
static size_t direct_sw(const nn_conv_geom *g)
{
    return direct_blocks(g) * NN_DIRECT_BLOCK + (size_t)g->kw - 1;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define NN_HAVE_DIRECT 1

static bool cpu_has_avx2_fma(void)
{
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return known;
}

/* xs[r][q] = x[r - pad][q - pad] inside the plane, 0 elsewhere. */
static void stage_plane(float *xs, const float *x, const nn_conv_geom *g)
{
    const long SW = (long)direct_sw(g), rows = (long)g->h + 2L * g->pad;
    memset(xs, 0, (size_t)(rows * SW) * sizeof *xs);
    for (int r = 0; r < g->h; r++)
        memcpy(xs + (long)(r + g->pad) * SW + g->pad, x + (long)r * g->w,
               (size_t)g->w * sizeof *xs);
}

/* d[0, n) = lanes [0, n) of v, n clamped to [0, 8]. Not vmaskmovps: on AMD
 * Zen a masked 256-bit store is microcoded, and a later load that overlaps
 * its 32-byte footprint (the next row of a plane) cannot be forwarded and
 * waits for it to retire; in col2im that stall was half of conv2's backward
 * (perf, Zen 5). Plain 16-, 8- and 4-byte stores write exactly n floats. */
__attribute__((target("avx2,fma"))) static inline void store_first(float *d, __m256 v, long n)
{
    if (n >= 8) {
        _mm256_storeu_ps(d, v);
        return;
    }
    __m128 h = _mm256_castps256_ps128(v);
    if (n >= 4) {
        _mm_storeu_ps(d, h);
        h = _mm256_extractf128_ps(v, 1);
        d += 4;
        n -= 4;
    }
    if (n >= 2) {
        _mm_storel_pi((__m64 *)d, h);
        h = _mm_movehl_ps(h, h);
        d += 2;
        n -= 2;
    }
    if (n >= 1) _mm_store_ss(d, h);
}

/* The sum of the 8 lanes, always in this order: (0+4, 1+5, 2+6, 3+7), then
 * (0+2, 1+3), then their sum. Every kernel that reduces a vector to one
 * gradient uses it, so the AVX2 and AVX-512 kernels agree to the bit. */
__attribute__((target("avx2"), always_inline)) static inline float hsum8(__m256 v)
{
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* Output rows i of channels o0 .. o0+NO (NO = 1 or 2, a constant after
 * inlining) over one 32-column block: 4*NO independent accumulators, so the
 * FMA latency (4 cycles) does not bound the loop, and each input vector
 * loaded serves both channels. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
direct_block(float *const yr[2], const float *xs, long SW, const float *const wo[2],
             const float *b, int KH, int KW, long left, nn_act act, const int NO)
{
    __m256 a[2][4];
    for (int c = 0; c < NO; c++)
        for (int v = 0; v < 4; v++) a[c][v] = _mm256_set1_ps(b[c]);
    for (int ki = 0; ki < KH; ki++) {
        const float *row = xs + (long)ki * SW;
        for (int kj = 0; kj < KW; kj++) {
            __m256 wv[2];
            for (int c = 0; c < NO; c++) wv[c] = _mm256_set1_ps(wo[c][ki * KW + kj]);
            for (int v = 0; v < 4; v++) {
                __m256 xv = _mm256_loadu_ps(row + kj + 8 * v);
                for (int c = 0; c < NO; c++) a[c][v] = _mm256_fmadd_ps(wv[c], xv, a[c][v]);
            }
        }
    }
    for (int c = 0; c < NO; c++) {
        if (act == NN_ACT_RELU)
            for (int v = 0; v < 4; v++) a[c][v] = _mm256_max_ps(a[c][v], _mm256_setzero_ps());
        float *d = yr[c];
        if (left >= NN_DIRECT_BLOCK) {
            for (int v = 0; v < 4; v++) _mm256_storeu_ps(d + 8 * v, a[c][v]);
        } else {
            for (int v = 0; v < 4; v++) store_first(d + 8 * v, a[c][v], left - 8 * v);
        }
    }
}

/* ---- AVX-512 variants -----------------------------------------------------
 * Where the CPU has AVX-512F (Zen 4 and 5, Sapphire Rapids) and nn_isa()
 * allows it, the direct kernels run with 16 lanes: half the instructions of
 * the AVX2 ones. Every output element is the same chain of FMAs, in the same
 * order, as in the AVX2 kernel, so the two give the same bits (test_nn
 * compares them); only the blocking around the chains differs. */
#define NN_DIRECT16_MAX_NO 6

/* direct_block over NO (<= 6, a constant after inlining) channels at once,
 * the 32-column block as two 16-lane vectors: 2*NO accumulators, and each
 * pair of input loads serves all NO channels. */
__attribute__((target("avx512f"), always_inline)) static inline void
direct_block16(float *const *yr, const float *xs, long SW, const float *const *wo, const float *b,
               int KH, int KW, long left, nn_act act, const int NO)
{
    __m512 a[NN_DIRECT16_MAX_NO][2];
    for (int c = 0; c < NO; c++)
        for (int v = 0; v < 2; v++) a[c][v] = _mm512_set1_ps(b[c]);
    for (int ki = 0; ki < KH; ki++) {
        const float *row = xs + (long)ki * SW;
        for (int kj = 0; kj < KW; kj++) {
            const __m512 xv[2] = {_mm512_loadu_ps(row + kj), _mm512_loadu_ps(row + kj + 16)};
            for (int c = 0; c < NO; c++) {
                const __m512 wv = _mm512_set1_ps(wo[c][ki * KW + kj]);
                for (int v = 0; v < 2; v++) a[c][v] = _mm512_fmadd_ps(wv, xv[v], a[c][v]);
            }
        }
    }
    for (int c = 0; c < NO; c++)
        for (int v = 0; v < 2; v++) {
            __m512 r = a[c][v];
            if (act == NN_ACT_RELU) r = _mm512_max_ps(r, _mm512_setzero_ps());
            _mm512_mask_storeu_ps(yr[c] + 16 * v, nn_lanes16(left - 16 * v), r);
        }
}

__attribute__((target("avx512f"))) static void direct_rows16(float *y, const float *w,
                                                             const float *b, long n,
                                                             const nn_conv_geom *g, nn_act act,
                                                             const float *xs)
{
    const long SW = (long)direct_sw(g), P = (long)g->oh * g->ow, NB = (long)direct_blocks(g);
    const int O = g->out_c, KH = g->kh, KW = g->kw, OW = g->ow;
    for (int o = 0; o < O; o += NN_DIRECT16_MAX_NO) {
        const int NO = DT_MIN(NN_DIRECT16_MAX_NO, O - o);
        const float *wo[NN_DIRECT16_MAX_NO];
        float *yr[NN_DIRECT16_MAX_NO];
        for (int c = 0; c < NO; c++) wo[c] = w + (long)(o + c) * KH * KW;
        for (int i = 0; i < g->oh; i++) {
            for (int c = 0; c < NO; c++) yr[c] = y + (n * O + o + c) * P + (long)i * OW;
            for (long blk = 0; blk < NB; blk++) {
                const long j0 = blk * NN_DIRECT_BLOCK;
                float *yb[NN_DIRECT16_MAX_NO];
                for (int c = 0; c < NO; c++) yb[c] = yr[c] + j0;
                const float *xb = xs + (long)i * SW + j0;
                switch (NO) {
#define NN_NO_CASE(k)                                                                            \
    case k:                                                                                      \
        direct_block16(yb, xb, SW, wo, b + o, KH, KW, OW - j0, act, k);                          \
        break;
                    NN_NO_CASE(1) NN_NO_CASE(2) NN_NO_CASE(3) NN_NO_CASE(4) NN_NO_CASE(5)
                    NN_NO_CASE(6)
#undef NN_NO_CASE
                }
            }
            if (act == NN_ACT_SIGMOID || act == NN_ACT_TANH)
                for (int c = 0; c < NO; c++) nn_act_forward(act, yr[c], yr[c], OW);
        }
    }
}

__attribute__((target("avx2,fma"))) static void direct_forward(float *y, const float *x,
                                                               const float *w, const float *b,
                                                               long B, const nn_conv_geom *g,
                                                               nn_act act, float *xs)
{
    const long SW = (long)direct_sw(g), P = (long)g->oh * g->ow, NB = (long)direct_blocks(g);
    const int O = g->out_c, KH = g->kh, KW = g->kw, OW = g->ow;
    for (long n = 0; n < B; n++) {
        stage_plane(xs, x + n * (long)g->h * g->w, g);
        if (nn_use_avx512()) {
            direct_rows16(y, w, b, n, g, act, xs);
            continue;
        }
        for (int o = 0; o < O; o += 2) {
            const int NO = O - o >= 2 ? 2 : 1;
            const float *wo[2] = {w + (long)o * KH * KW, w + (long)(o + NO - 1) * KH * KW};
            for (int i = 0; i < g->oh; i++) {
                float *yr[2] = {y + (n * O + o) * P + (long)i * OW,
                                y + (n * O + o + NO - 1) * P + (long)i * OW};
                for (long blk = 0; blk < NB; blk++) {
                    long j0 = blk * NN_DIRECT_BLOCK;
                    float *yb[2] = {yr[0] + j0, yr[1] + j0};
                    const float *xb = xs + (long)i * SW + j0;
                    if (NO == 2)
                        direct_block(yb, xb, SW, wo, b + o, KH, KW, OW - j0, act, 2);
                    else
                        direct_block(yb, xb, SW, wo, b + o, KH, KW, OW - j0, act, 1);
                }
                if (act == NN_ACT_SIGMOID || act == NN_ACT_TANH)
                    for (int c = 0; c < NO; c++) nn_act_forward(act, yr[c], yr[c], OW);
            }
        }
    }
}

/* dW[o][ki][0..KW) += sum_i,v dz[o][i][v*8..] * xs[i+ki][v*8+kj..] for the
 * channels o0, o0+1 (NO of them) and one kernel row; KW and NO are constants
 * after inlining, so the NO*KW accumulators live in registers and each input
 * vector loaded serves both channels. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
direct_dw_row(float *const dw_row[2], const float *const dz[2], const float *xs, long SW,
              long ldz, int OH, long NV, const int KW, const int NO)
{
    __m256 acc[2][NN_DIRECT_MAX_KW];
    for (int c = 0; c < NO; c++)
        for (int kj = 0; kj < KW; kj++) acc[c][kj] = _mm256_setzero_ps();
    for (int i = 0; i < OH; i++) {
        const float *xr = xs + (long)i * SW;
        for (long v = 0; v < NV; v++) {
            __m256 d[2];
            for (int c = 0; c < NO; c++) d[c] = _mm256_loadu_ps(dz[c] + (long)i * ldz + v * 8);
            for (int kj = 0; kj < KW; kj++) {
                __m256 xv = _mm256_loadu_ps(xr + v * 8 + kj);
                for (int c = 0; c < NO; c++) acc[c][kj] = _mm256_fmadd_ps(d[c], xv, acc[c][kj]);
            }
        }
    }
    for (int c = 0; c < NO; c++)
        for (int kj = 0; kj < KW; kj++) dw_row[c][kj] += hsum8(acc[c][kj]);
}

/* direct_dw_row for NP (<= 3) pairs of channels o0.., one pair per 16-lane
 * vector: the low 8 lanes are channel 2p's AVX2 accumulator, the high 8
 * channel 2p+1's, fed with the same products in the same order, and each
 * half is summed as direct_dw_row sums its vector (same bits). */
__attribute__((target("avx512f"), always_inline)) static inline void
direct_dw_pairs16(float *dw, long o0, const float *dzs, const float *xs, long SW, long ldz,
                  int OH, long NV, int KH, int ki, const int KW, const int NP)
{
    __m512 acc[3][NN_DIRECT_MAX_KW];
    for (int q = 0; q < NP; q++)
        for (int kj = 0; kj < KW; kj++) acc[q][kj] = _mm512_setzero_ps();
    const float *xr0 = xs + (long)ki * SW;
    for (int i = 0; i < OH; i++) {
        const float *xr = xr0 + (long)i * SW;
        for (long v = 0; v < NV; v++) {
            __m512 d[3];
            for (int q = 0; q < NP; q++) {
                const float *dz = dzs + ((o0 + 2 * q) * OH + i) * ldz + v * 8;
                d[q] = _mm512_castpd_ps(_mm512_insertf64x4(
                    _mm512_castpd256_pd512(_mm256_castps_pd(_mm256_loadu_ps(dz))),
                    _mm256_castps_pd(_mm256_loadu_ps(dz + (long)OH * ldz)), 1));
            }
            for (int kj = 0; kj < KW; kj++) {
                const __m512 xv = _mm512_castpd_ps(
                    _mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_loadu_ps(xr + v * 8 + kj))));
                for (int q = 0; q < NP; q++) acc[q][kj] = _mm512_fmadd_ps(d[q], xv, acc[q][kj]);
            }
        }
    }
    for (int q = 0; q < NP; q++)
        for (int half = 0; half < 2; half++) {
            float *row = dw + ((o0 + 2 * q + half) * KH + ki) * KW;
            for (int kj = 0; kj < KW; kj++)
                row[kj] += hsum8(_mm256_castpd_ps(
                    half ? _mm512_extractf64x4_pd(_mm512_castps_pd(acc[q][kj]), 1)
                         : _mm512_castpd512_pd256(_mm512_castps_pd(acc[q][kj]))));
        }
}

__attribute__((target("avx512f"))) static void direct_dw16(float *dw, const float *dzs,
                                                           const float *xs, const nn_conv_geom *g,
                                                           long SW, long ldz, long NV, int o0,
                                                           int NP)
{
    const int KH = g->kh, KW = g->kw, OH = g->oh;
    for (int ki = 0; ki < KH; ki++) switch (KW * 4 + NP) {
#define NN_DW16_CASE(k)                                                                          \
    case 4 * k + 1:                                                                              \
        direct_dw_pairs16(dw, o0, dzs, xs, SW, ldz, OH, NV, KH, ki, k, 1);                        \
        break;                                                                                   \
    case 4 * k + 2:                                                                              \
        direct_dw_pairs16(dw, o0, dzs, xs, SW, ldz, OH, NV, KH, ki, k, 2);                        \
        break;                                                                                   \
    case 4 * k + 3:                                                                              \
        direct_dw_pairs16(dw, o0, dzs, xs, SW, ldz, OH, NV, KH, ki, k, 3);                        \
        break;
            NN_DW16_CASE(1) NN_DW16_CASE(2) NN_DW16_CASE(3) NN_DW16_CASE(4) NN_DW16_CASE(5)
            NN_DW16_CASE(6) NN_DW16_CASE(7) NN_DW16_CASE(8)
#undef NN_DW16_CASE
        }
}

/* The staging of direct_backward_params for ReLU or no activation, 16
 * lanes at a time: dz = y > 0 ? dy : 0 (or dy), zero past ow, and each
 * row's 8-lane pieces added to the bias sum in the AVX2 order. */
__attribute__((target("avx512f"))) static void stage_dz16(float *dzs, float *db, const float *dy,
                                                          const float *y, long n, int O, int OH,
                                                          int OW, long ldz, nn_act act)
{
    const long P = (long)OH * OW;
    for (int o = 0; o < O; o++) {
        __m256 s = _mm256_setzero_ps();
        for (int i = 0; i < OH; i++) {
            float *d = dzs + ((long)o * OH + i) * ldz;
            const long at = (n * O + o) * P + (long)i * OW;
            for (long j = 0; j < ldz; j += 16) {
                const __mmask16 m = nn_lanes16(OW - j);
                __m512 v = _mm512_maskz_loadu_ps(m, dy + at + j);
                if (act == NN_ACT_RELU)
                    v = _mm512_maskz_mov_ps(
                        _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(m, y + at + j),
                                           _mm512_setzero_ps(), _CMP_GT_OQ),
                        v);
                _mm512_storeu_ps(d + j, v);
                s = _mm256_add_ps(s, _mm256_castpd_ps(_mm512_castpd512_pd256(_mm512_castps_pd(v))));
                s = _mm256_add_ps(s, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
            }
        }
        db[o] += hsum8(s);
    }
}

__attribute__((target("avx2,fma"))) static void direct_backward_params(
    float *dw, float *db, const float *dy, const float *y, const float *x, long B,
    const nn_conv_geom *g, nn_act act, float *ws)
{
    const long SW = (long)direct_sw(g), P = (long)g->oh * g->ow, NB = (long)direct_blocks(g);
    const long ldz = NB * NN_DIRECT_BLOCK, NV = ldz / 8;
    const int O = g->out_c, KH = g->kh, KW = g->kw, OH = g->oh, OW = g->ow;
    float *xs = ws, *dzs = ws + (long)(g->h + 2 * g->pad) * SW;
    for (long n = 0; n < B; n++) {
        stage_plane(xs, x + n * (long)g->h * g->w, g);
        /* dz, zero-padded to whole blocks, and the bias gradient */
        if ((act == NN_ACT_RELU || act == NN_ACT_NONE) && nn_use_avx512())
            stage_dz16(dzs, db, dy, y, n, O, OH, OW, ldz, act);
        else
            for (int o = 0; o < O; o++) {
                __m256 s = _mm256_setzero_ps();
                for (int i = 0; i < OH; i++) {
                    float *d = dzs + ((long)o * OH + i) * ldz;
                    long at = (n * O + o) * P + (long)i * OW;
                    nn_act_backward(act, d, dy + at, y + at, OW);
                    for (long j = OW; j < ldz; j++) d[j] = 0.0f;
                    for (long v = 0; v < NV; v++) s = _mm256_add_ps(s, _mm256_loadu_ps(d + v * 8));
                }
                db[o] += hsum8(s);
            }
        int o = 0;
        if (nn_use_avx512()) /* pairs of channels, then a last odd one */
            while (O - o >= 2) {
                const int NP = DT_MIN(3, (O - o) / 2);
                direct_dw16(dw, dzs, xs, g, SW, ldz, NV, o, NP);
                o += 2 * NP;
            }
        for (; o < O; o += 2) {
            const int NO = O - o >= 2 ? 2 : 1;
            for (int ki = 0; ki < KH; ki++) {
                float *dwr[2] = {dw + ((long)o * KH + ki) * KW,
                                 dw + ((long)(o + NO - 1) * KH + ki) * KW};
                const float *dz[2] = {dzs + (long)o * OH * ldz, dzs + (long)(o + NO - 1) * OH * ldz};
                const float *xr = xs + (long)ki * SW;
                switch (KW * 2 + NO - 1) {
#define NN_DW_CASE(k)                                                                            \
    case 2 * k:                                                                                  \
        direct_dw_row(dwr, dz, xr, SW, ldz, OH, NV, k, 1);                                       \
        break;                                                                                   \
    case 2 * k + 1:                                                                              \
        direct_dw_row(dwr, dz, xr, SW, ldz, OH, NV, k, 2);                                       \
        break;
                    NN_DW_CASE(1) NN_DW_CASE(2) NN_DW_CASE(3) NN_DW_CASE(4)
                    NN_DW_CASE(5) NN_DW_CASE(6) NN_DW_CASE(7) NN_DW_CASE(8)
#undef NN_DW_CASE
                }
            }
        }
    }
}

/* ---- the direct kernel for C > 1: output channels in the vector lanes -----
 * For several input channels (LeNet conv2: 6 -> 16, 14x14 -> 10x10) each
 * sample is a small implicit GEMM, Z^T [P][O] = col^T [P][K] * W^T [K][O],
 * whose col^T entries are read straight from a zero-padded copy of the
 * sample (xs [C][h + 2 pad][SWc]) instead of an unfolded matrix:
 *   forward  a block of JB output pixels of one row times 8 or 16 output
 *            channels in JB*NV registers; per tap (c, ki, kj) NV weight
 *            vectors of W^T and JB broadcast pixels. The block goes to a
 *            pixel-major tmp [oh][OWr][Op], then bias and activation on the
 *            way to NCHW y (one pass over the output, in L1);
 *   dW       dz^T [P][Op] (act' applied, transposed once per sample), then
 *            per (channel group, c, ki) the kw taps x NV vectors of dW^T in
 *            registers over all output pixels; summed into dWt [K][Op] over
 *            the batch and added to dw [O][K] once;
 *   dx       with samples in the lanes (dxs_row16) where the geometry has a
 *            kernel, else a GEMM over dz of a chunk and col2im.
 * Op is O rounded up to 8 (zero weights in the extra lanes, never stored). */
#define NN_MC_MAX_JB 8

typedef struct {
    int C, H, W;        /* input planes */
    int O, Op;          /* output channels, rounded up to 8 */
    int KH, KW, ph, pw; /* kernel, padding */
    int OH, OW, JB, OWr, Hs, SWc;
} mc_geom;

static mc_geom mc_make(int C, int H, int W, int O, int KH, int KW, int ph, int pw)
{
    mc_geom m = {.C = C, .H = H, .W = W, .O = O, .Op = (O + 7) / 8 * 8, .KH = KH, .KW = KW,
                 .ph = ph, .pw = pw};
    m.OH = H + 2 * ph - KH + 1;
    m.OW = W + 2 * pw - KW + 1;
    /* pixel block: 5-6 with two channel vectors, 7-8 with one (10-12 and
     * 7-8 accumulators), a divisor of the row where there is one */
    if (m.Op % 16 == 0)
        m.JB = m.OW % 5 == 0 ? 5 : 6;
    else
        m.JB = m.OW % 7 == 0 ? 7 : 8;
    m.OWr = (m.OW + m.JB - 1) / m.JB * m.JB;
    m.Hs = H + 2 * ph;
    m.SWc = m.OWr + KW - 1;
    return m;
}

/* floats: xs, tmp */
static size_t mc_xs_floats(const mc_geom *m) { return (size_t)m->C * m->Hs * m->SWc; }
static size_t mc_tmp_floats(const mc_geom *m) { return (size_t)m->OH * m->OWr * m->Op; }

static void mc_stage(float *xs, const float *x, const mc_geom *m)
{
    memset(xs, 0, mc_xs_floats(m) * sizeof *xs);
    for (int c = 0; c < m->C; c++)
        for (int r = 0; r < m->H; r++)
            memcpy(xs + ((long)c * m->Hs + r + m->ph) * m->SWc + m->pw,
                   x + ((long)c * m->H + r) * m->W, (size_t)m->W * sizeof *xs);
}

__attribute__((target("avx2,fma"), always_inline)) static inline void
mc_block(float *tmp, const float *xs, const float *wt, const mc_geom *m, const int JB,
         const int NV)
{
    __m256 a[NN_MC_MAX_JB][2];
    for (int jb = 0; jb < JB; jb++)
        for (int v = 0; v < NV; v++) a[jb][v] = _mm256_setzero_ps();
    const int Op = m->Op, KW = m->KW;
    for (int c = 0; c < m->C; c++)
        for (int ki = 0; ki < m->KH; ki++) {
            const float *xr = xs + ((long)c * m->Hs + ki) * m->SWc;
            const float *wk = wt + (long)((c * m->KH + ki) * KW) * Op;
            for (int kj = 0; kj < KW; kj++) {
                __m256 wv[2];
                for (int v = 0; v < NV; v++) wv[v] = _mm256_loadu_ps(wk + (long)kj * Op + 8 * v);
                for (int jb = 0; jb < JB; jb++) {
                    __m256 xb = _mm256_broadcast_ss(xr + jb + kj);
                    for (int v = 0; v < NV; v++) a[jb][v] = _mm256_fmadd_ps(xb, wv[v], a[jb][v]);
                }
            }
        }
    for (int jb = 0; jb < JB; jb++)
        for (int v = 0; v < NV; v++) _mm256_storeu_ps(tmp + (long)jb * Op + 8 * v, a[jb][v]);
}

/* mc_block with the 16 channels og.. in one 16-lane vector, over JB (up to
 * 12: two AVX2 pixel blocks) pixels */
__attribute__((target("avx512f"), always_inline)) static inline void
mc_block16(float *tmp, const float *xs, const float *wt, const mc_geom *m, const int JB)
{
    __m512 a[2 * 6];
    for (int jb = 0; jb < JB; jb++) a[jb] = _mm512_setzero_ps();
    const int Op = m->Op, KW = m->KW;
    for (int c = 0; c < m->C; c++)
        for (int ki = 0; ki < m->KH; ki++) {
            const float *xr = xs + ((long)c * m->Hs + ki) * m->SWc;
            const float *wk = wt + (long)((c * m->KH + ki) * KW) * Op;
            for (int kj = 0; kj < KW; kj++) {
                const __m512 wv = _mm512_loadu_ps(wk + (long)kj * Op);
                for (int jb = 0; jb < JB; jb++)
                    a[jb] = _mm512_fmadd_ps(_mm512_set1_ps(xr[jb + kj]), wv, a[jb]);
            }
        }
    for (int jb = 0; jb < JB; jb++) _mm512_storeu_ps(tmp + (long)jb * Op, a[jb]);
}

__attribute__((target("avx512f"))) static void mc_correlate16(float *tmp, const float *xs,
                                                              const float *wt, const mc_geom *m)
{
    for (int og = 0; og < m->Op; og += 16)
        for (int i = 0; i < m->OH; i++)
            for (int j0 = 0; j0 < m->OW;) {
                float *t = tmp + ((long)i * m->OWr + j0) * m->Op + og;
                const float *x0 = xs + (long)i * m->SWc + j0;
                const float *w0 = wt + og;
                /* two pixel blocks at once where both are inside the row's
                 * OWr columns of tmp */
                const bool pair = j0 + 2 * m->JB <= m->OWr;
                if (m->JB == 5)
                    pair ? mc_block16(t, x0, w0, m, 10) : mc_block16(t, x0, w0, m, 5);
                else
                    pair ? mc_block16(t, x0, w0, m, 12) : mc_block16(t, x0, w0, m, 6);
                j0 += pair ? 2 * m->JB : m->JB;
            }
}

/* tmp [OH][OWr][Op] = the correlation of the staged sample with wt [K][Op]. */
__attribute__((target("avx2,fma"))) static void mc_correlate(float *tmp, const float *xs,
                                                             const float *wt, const mc_geom *m)
{
    if (m->Op % 16 == 0 && nn_use_avx512()) {
        mc_correlate16(tmp, xs, wt, m);
        return;
    }
    for (int og = 0; og < m->Op; og += 16) {
        const bool two = og + 16 <= m->Op;
        for (int i = 0; i < m->OH; i++)
            for (int j0 = 0; j0 < m->OW; j0 += m->JB) {
                float *t = tmp + ((long)i * m->OWr + j0) * m->Op + og;
                const float *x0 = xs + (long)i * m->SWc + j0;
                const float *w0 = wt + og;
                if (two && m->JB == 5)
                    mc_block(t, x0, w0, m, 5, 2);
                else if (two)
                    mc_block(t, x0, w0, m, 6, 2);
                else if (m->JB == 7)
                    mc_block(t, x0, w0, m, 7, 1);
                else
                    mc_block(t, x0, w0, m, 8, 1);
            }
    }
}

/* y [O][OH][OW] = act(tmp^T + b) (b may be NULL: no bias) */
static void mc_unpack(float *y, const float *tmp, const float *b, const mc_geom *m, nn_act act)
{
    const long P = (long)m->OH * m->OW;
    for (int o = 0; o < m->O; o++) {
        float *yo = y + o * P;
        float bo = b ? b[o] : 0.0f;
        for (int i = 0; i < m->OH; i++) {
            const float *t = tmp + (long)i * m->OWr * m->Op + o;
            float *yr = yo + (long)i * m->OW;
            for (int j = 0; j < m->OW; j++) yr[j] = t[(long)j * m->Op] + bo;
        }
        if (act != NN_ACT_NONE) nn_act_forward(act, yo, yo, P);
    }
}

static mc_geom mc_forward_geom(const nn_conv_geom *g)
{
    return mc_make(g->c, g->h, g->w, g->out_c, g->kh, g->kw, g->pad, g->pad);
}

/* forward: wt, xs, tmp; backward: dWt, dz^T, xs, then dz and col of `chunk`
 * samples for the dx GEMM, and dzn, dzl, dxl of a group of 16 samples */
static size_t mc_workspace(const nn_conv_geom *g, long chunk)
{
    mc_geom f = mc_forward_geom(g);
    size_t K = (size_t)g->c * g->kh * g->kw, P = (size_t)g->oh * g->ow;
    size_t fwd = K * (size_t)f.Op + mc_xs_floats(&f) + mc_tmp_floats(&f);
    size_t bwd = K * (size_t)f.Op + P * (size_t)f.Op + mc_xs_floats(&f) +
                 (size_t)chunk * P * ((size_t)g->out_c + K) +
                 16 * (2 * P * (size_t)g->out_c + (size_t)g->c * g->h * g->w);
    return DT_MAX(fwd, bwd);
}

__attribute__((target("avx2,fma"))) static void mc_forward(float *y, const float *x,
                                                           const float *w, const float *b, long B,
                                                           const nn_conv_geom *g, nn_act act,
                                                           float *ws)
{
    const mc_geom m = mc_forward_geom(g);
    const long K = (long)g->c * g->kh * g->kw, P = (long)g->oh * g->ow;
    float *wt = ws, *xs = wt + K * m.Op, *tmp = xs + mc_xs_floats(&m);
    for (long k = 0; k < K; k++)
        for (int o = 0; o < m.Op; o++) wt[k * m.Op + o] = o < m.O ? w[(long)o * K + k] : 0.0f;
    for (long n = 0; n < B; n++) {
        mc_stage(xs, x + n * (long)g->c * g->h * g->w, &m);
        mc_correlate(tmp, xs, wt, &m);
        mc_unpack(y + n * m.O * P, tmp, b, &m, act);
    }
}

/* dWt[c,ki,kj][og..og+8*NV) += sum over pixels of xs[c][i+ki][j+kj] * dzt[i][j][og..] */
__attribute__((target("avx2,fma"), always_inline)) static inline void
mc_dw_rows(float *dwt, const float *dzt, const float *xs, const mc_geom *m, int c, int ki,
           const int KW, const int NV)
{
    __m256 acc[NN_DIRECT_MAX_KW][2];
    for (int kj = 0; kj < KW; kj++)
        for (int v = 0; v < NV; v++) acc[kj][v] = _mm256_setzero_ps();
    for (int i = 0; i < m->OH; i++) {
        const float *xr = xs + ((long)c * m->Hs + i + ki) * m->SWc;
        const float *dr = dzt + (long)i * m->OW * m->Op;
        for (int j = 0; j < m->OW; j++) {
            __m256 d[2];
            for (int v = 0; v < NV; v++) d[v] = _mm256_loadu_ps(dr + (long)j * m->Op + 8 * v);
            for (int kj = 0; kj < KW; kj++) {
                __m256 xb = _mm256_broadcast_ss(xr + j + kj);
                for (int v = 0; v < NV; v++) acc[kj][v] = _mm256_fmadd_ps(xb, d[v], acc[kj][v]);
            }
        }
    }
    float *dst = dwt + (long)((c * m->KH + ki) * KW) * m->Op;
    for (int kj = 0; kj < KW; kj++)
        for (int v = 0; v < NV; v++) {
            float *p = dst + (long)kj * m->Op + 8 * v;
            _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), acc[kj][v]));
        }
}

/* mc_dw_rows for the 16 channels og.. in one vector and NR (1 or 2) kernel
 * rows ki.. at once: each dz vector loaded serves NR*KW accumulators */
__attribute__((target("avx512f"), always_inline)) static inline void
mc_dw_rows16(float *dwt, const float *dzt, const float *xs, const mc_geom *m, int c, int ki,
             const int KW, const int NR)
{
    __m512 acc[2][NN_DIRECT_MAX_KW];
    for (int r = 0; r < NR; r++)
        for (int kj = 0; kj < KW; kj++) acc[r][kj] = _mm512_setzero_ps();
    for (int i = 0; i < m->OH; i++) {
        const float *xr = xs + ((long)c * m->Hs + i + ki) * m->SWc;
        const float *dr = dzt + (long)i * m->OW * m->Op;
        for (int j = 0; j < m->OW; j++) {
            const __m512 d = _mm512_loadu_ps(dr + (long)j * m->Op);
            for (int r = 0; r < NR; r++)
                for (int kj = 0; kj < KW; kj++)
                    acc[r][kj] = _mm512_fmadd_ps(_mm512_set1_ps(xr[(long)r * m->SWc + j + kj]), d,
                                                 acc[r][kj]);
        }
    }
    for (int r = 0; r < NR; r++) {
        float *dst = dwt + (long)((c * m->KH + ki + r) * KW) * m->Op;
        for (int kj = 0; kj < KW; kj++) {
            float *p = dst + (long)kj * m->Op;
            _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), acc[r][kj]));
        }
    }
}

/* dWt += the weight gradient of one staged sample, channel groups of 16 */
__attribute__((target("avx512f"))) static void mc_dw16(float *dwt, const float *dzt,
                                                       const float *xs, const mc_geom *m)
{
    for (int og = 0; og < m->Op; og += 16)
        for (int c = 0; c < m->C; c++)
            for (int ki = 0; ki < m->KH; ki += 2) {
                const int NR = DT_MIN(2, m->KH - ki);
                switch (m->KW * 2 + NR - 1) {
#define NN_MC16_CASE(k)                                                                          \
    case 2 * k:                                                                                  \
        mc_dw_rows16(dwt + og, dzt + og, xs, m, c, ki, k, 1);                                    \
        break;                                                                                   \
    case 2 * k + 1:                                                                              \
        mc_dw_rows16(dwt + og, dzt + og, xs, m, c, ki, k, 2);                                    \
        break;
                    NN_MC16_CASE(1) NN_MC16_CASE(2) NN_MC16_CASE(3) NN_MC16_CASE(4)
                    NN_MC16_CASE(5) NN_MC16_CASE(6) NN_MC16_CASE(7) NN_MC16_CASE(8)
#undef NN_MC16_CASE
                }
            }
}

/* dz^T [P][Op] of one sample from dz [O][GP] (its columns at dz), and
 * db += each channel's sum over the pixels: 16 channels per gather, each
 * lane summing its channel in pixel order as the scalar loop does. */
__attribute__((target("avx512f"))) static void dz_transpose16(float *dzt, float *db,
                                                              const float *dz, long GP, long P,
                                                              int O, int Op)
{
    const __m512i lane_rows =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                           _mm512_set1_epi32((int)GP));
    for (int og = 0; og < Op; og += 16) {
        const int live = DT_MIN(16, O - og);
        const __mmask16 m = nn_lanes16(live);
        const float *base = dz + og * GP;
        __m512 s = _mm512_setzero_ps();
        for (long p = 0; p < P; p++) {
            const __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, lane_rows, base + p, 4);
            _mm512_storeu_ps(dzt + p * Op + og, v);
            s = _mm512_add_ps(s, v);
        }
        float sum[16];
        _mm512_storeu_ps(sum, s);
        for (int l = 0; l < live; l++) db[og + l] += sum[l];
    }
}

/* col2im at stride 1 for input rows of at most 16 floats, one vector per
 * row of dx: each row's contributions are summed in a register, in the
 * (ki, kj) order of col2im (lanes without a contribution add +0, which
 * changes no sum that starts from +0), and stored once, where col2im_s1
 * adds them into memory one kernel tap at a time. */
__attribute__((target("avx512f"))) static void col2im16(float *dx, const float *col, long G,
                                                        const nn_conv_geom *g)
{
    const int OW = g->ow, OH = g->oh, H = g->h, W = g->w, KH = g->kh, KW = g->kw, pad = g->pad;
    const long P = (long)OH * OW, ld = G * P, plane = (long)H * W;
    const __mmask16 row_lanes = (__mmask16)((1u << W) - 1);
    for (long n = 0; n < G; n++)
        for (int c = 0; c < g->c; c++)
            /* 4 rows at once: 4 independent chains of adds */
            for (int ih0 = 0; ih0 < H; ih0 += 4) {
                __m512 acc[4];
                for (int r = 0; r < 4; r++) acc[r] = _mm512_setzero_ps();
                for (int ki = 0; ki < KH; ki++)
                    for (int kj = 0; kj < KW; kj++) {
                        /* lane x of a row takes col's j = x + pad - kj */
                        const int lo = DT_MAX(kj - pad, 0), hi = DT_MIN(kj - pad + OW, W);
                        if (lo >= hi) continue;
                        const __mmask16 m = (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));
                        const float *tap = col + ((long)(c * KH + ki) * KW + kj) * ld + n * P +
                                           pad - kj;
                        for (int r = 0; r < 4; r++) {
                            const int i = ih0 + r + pad - ki;
                            if (ih0 + r >= H || i < 0 || i >= OH) continue;
                            acc[r] = _mm512_add_ps(acc[r],
                                                   _mm512_maskz_loadu_ps(m, tap + (long)i * OW));
                        }
                    }
                for (int r = 0; r < 4 && ih0 + r < H; r++)
                    _mm512_mask_storeu_ps(dx + (n * g->c + c) * plane + (long)(ih0 + r) * W,
                                          row_lanes, acc[r]);
            }
}

/* col2im at stride 1 with 8-wide adds: the rows of LeNet conv2 are 10
 * floats, where the scalar loop of col2im took as long as the dx GEMM
 * (about 8 instructions per add). Same sums in the same order as col2im. */
__attribute__((target("avx2,fma"))) static void col2im_s1(float *dx, const float *col, long G,
                                                          const nn_conv_geom *g)
{
    const int OW = g->ow, OH = g->oh, H = g->h, W = g->w;
    const long P = (long)OH * OW, ld = G * P, plane = (long)H * W, in_size = plane * g->c;
    memset(dx, 0, (size_t)(G * in_size) * sizeof *dx);
    for (int c = 0; c < g->c; c++)
        for (int ki = 0; ki < g->kh; ki++)
            for (int kj = 0; kj < g->kw; kj++) {
                const float *row = col + ((long)(c * g->kh + ki) * g->kw + kj) * ld;
                int lo, hi;
                valid_range(kj, g, &lo, &hi);
                const int off = kj - g->pad, len = hi - lo;
                for (long n = 0; n < G; n++) {
                    float *xp = dx + n * in_size + c * plane;
                    const float *src = row + n * P;
                    for (int i = 0; i < OH; i++) {
                        int ih = i + ki - g->pad;
                        if (ih < 0 || ih >= H) continue;
                        const float *d = src + (long)i * OW + lo;
                        float *xr = xp + (long)ih * W + lo + off;
                        int j = 0;
                        for (; j + 8 <= len; j += 8)
                            _mm256_storeu_ps(xr + j, _mm256_add_ps(_mm256_loadu_ps(xr + j),
                                                                   _mm256_loadu_ps(d + j)));
                        for (; j < len; j++) xr[j] += d[j];
                    }
                }
            }
}

/* ---- dx of C > 1 with samples in the lanes --------------------------------
 *   dx[n][c][y][x] = sum_o sum_ki sum_kj dz[n][o][y + pad - ki][x + pad - kj] w[o][c][ki][kj]
 * The GEMM + col2im it replaces has an inner dimension of only O (16 in
 * LeNet conv2) and writes a col buffer 25 times the size of dx that col2im
 * reads back; rows of dx in the lanes instead would multiply zeros in 4 of
 * every 10 lanes (each tap reaches ow of a row's w pixels). With 16 samples
 * (8 with AVX2) in the lanes every FMA is a useful one: dz of a group of
 * samples is staged lane-interleaved (dzl [O][oh][ow][L]), one row of dx
 * (w <= 16 pixels, a vector each) is summed in registers over (o, ki, kj),
 * and dxl [C][h][w][L] is spread back to the samples. The geometry is a
 * constant in each kernel, so the taps that fall outside a row are dropped
 * at compile time; dxs_variants lists the geometries that have one, others
 * take the GEMM. LeNet conv2's backward, batch 128 (Zen 5, CPU ms): 1.04 ->
 * 0.88 with OpenBLAS's SkylakeX GEMM, 1.42 -> 0.89 with its Haswell one,
 * 1.93 -> 1.70 with AVX2 kernels (8 lanes).
 *   Each element is one chain of FMAs from +0 over (o, ki, kj) in that
 * order, at both widths, so AVX-512 and AVX2 give the same bits, and a
 * sample's dx does not depend on which group or lane it is in. They differ
 * from the GEMM's sums (still used in leaf mode) by rounding only. */
__attribute__((target("avx512f"), always_inline)) static inline void
dxs_row16(float *dxl, const float *dzl, const float *w, const nn_conv_geom *g, int c, int y,
          const int W, const int KW, const int PAD)
{
    const int OW = W + 2 * PAD - KW + 1, C = g->c, KH = g->kh, OH = g->oh;
    __m512 acc[16];
#pragma GCC unroll 16
    for (int x = 0; x < W; x++) acc[x] = _mm512_setzero_ps();
    for (int o = 0; o < g->out_c; o++)
        for (int ki = 0; ki < KH; ki++) {
            const int r = y + PAD - ki;
            if (r < 0 || r >= OH) continue;
            const float *wk = w + (((long)o * C + c) * KH + ki) * KW;
            const float *dr = dzl + ((long)o * OH + r) * OW * 16;
            __m512 wv[8];
#pragma GCC unroll 8
            for (int kj = 0; kj < KW; kj++) wv[kj] = _mm512_set1_ps(wk[kj]);
#pragma GCC unroll 16
            for (int x = 0; x < W; x++)
#pragma GCC unroll 8
                for (int kj = 0; kj < KW; kj++) {
                    const int j = x + PAD - kj;
                    if (j >= 0 && j < OW)
                        acc[x] = _mm512_fmadd_ps(wv[kj], _mm512_loadu_ps(dr + j * 16), acc[x]);
                }
        }
    float *d = dxl + ((long)c * g->h + y) * W * 16;
#pragma GCC unroll 16
    for (int x = 0; x < W; x++) _mm512_storeu_ps(d + x * 16, acc[x]);
}

/* 8 lanes: 16 registers hold 8 accumulators and the kw weights, so a row
 * is summed in blocks of 8 pixels (each the same chain as above) */
__attribute__((target("avx2,fma"), always_inline)) static inline void
dxs_row8(float *dxl, const float *dzl, const float *w, const nn_conv_geom *g, int c, int y,
         const int W, const int KW, const int PAD)
{
    const int OW = W + 2 * PAD - KW + 1, C = g->c, KH = g->kh, OH = g->oh;
#pragma GCC unroll 2
    for (int x0 = 0; x0 < W; x0 += 8) {
        __m256 acc[8];
#pragma GCC unroll 8
        for (int x = 0; x < 8; x++) acc[x] = _mm256_setzero_ps();
        for (int o = 0; o < g->out_c; o++)
            for (int ki = 0; ki < KH; ki++) {
                const int r = y + PAD - ki;
                if (r < 0 || r >= OH) continue;
                const float *wk = w + (((long)o * C + c) * KH + ki) * KW;
                const float *dr = dzl + ((long)o * OH + r) * OW * 8;
                __m256 wv[8];
#pragma GCC unroll 8
                for (int kj = 0; kj < KW; kj++) wv[kj] = _mm256_set1_ps(wk[kj]);
#pragma GCC unroll 8
                for (int x = 0; x < 8; x++)
#pragma GCC unroll 8
                    for (int kj = 0; kj < KW; kj++) {
                        const int j = x0 + x + PAD - kj;
                        if (x0 + x < W && j >= 0 && j < OW)
                            acc[x] = _mm256_fmadd_ps(wv[kj], _mm256_loadu_ps(dr + j * 8), acc[x]);
                    }
            }
        float *d = dxl + ((long)c * g->h + y) * W * 8;
#pragma GCC unroll 8
        for (int x = 0; x < 8; x++)
            if (x0 + x < W) _mm256_storeu_ps(d + (x0 + x) * 8, acc[x]);
    }
}

typedef void dxs_kernel(float *dxl, const float *dzl, const float *w, const nn_conv_geom *g);

/* one kernel per geometry (row width, kernel, pad) and width */
#define NN_DXS_VARIANT(W_, K_, P_)                                                               \
    __attribute__((target("avx512f"))) static void dxs16_##W_##_##K_##_##P_(                     \
        float *dxl, const float *dzl, const float *w, const nn_conv_geom *g)                     \
    {                                                                                            \
        for (int c = 0; c < g->c; c++)                                                           \
            for (int y = 0; y < g->h; y++) dxs_row16(dxl, dzl, w, g, c, y, W_, K_, P_);         \
    }                                                                                            \
    __attribute__((target("avx2,fma"))) static void dxs8_##W_##_##K_##_##P_(                     \
        float *dxl, const float *dzl, const float *w, const nn_conv_geom *g)                     \
    {                                                                                            \
        for (int c = 0; c < g->c; c++)                                                           \
            for (int y = 0; y < g->h; y++) dxs_row8(dxl, dzl, w, g, c, y, W_, K_, P_);          \
    }
NN_DXS_VARIANT(14, 5, 0) /* LeNet conv2 */
NN_DXS_VARIANT(14, 5, 2)
NN_DXS_VARIANT(16, 3, 1)
NN_DXS_VARIANT(14, 3, 1)
NN_DXS_VARIANT(8, 3, 1)
#undef NN_DXS_VARIANT

static const struct {
    int w, k, pad;
    dxs_kernel *lanes16, *lanes8;
} dxs_variants[] = {
#define NN_DXS_ROW(W_, K_, P_) {W_, K_, P_, dxs16_##W_##_##K_##_##P_, dxs8_##W_##_##K_##_##P_},
    NN_DXS_ROW(14, 5, 0) NN_DXS_ROW(14, 5, 2) NN_DXS_ROW(16, 3, 1) NN_DXS_ROW(14, 3, 1)
    NN_DXS_ROW(8, 3, 1)
#undef NN_DXS_ROW
};

/* the kernel for this geometry at this width (16 or 8 lanes), or NULL */
static dxs_kernel *dxs_find(const nn_conv_geom *g, int lanes)
{
    if (g->stride != 1 || g->kh != g->kw) return NULL;
    for (size_t i = 0; i < DT_ARRAY_LEN(dxs_variants); i++)
        if (dxs_variants[i].w == g->w && dxs_variants[i].k == g->kw &&
            dxs_variants[i].pad == g->pad)
            return lanes == 16 ? dxs_variants[i].lanes16 : dxs_variants[i].lanes8;
    return NULL;
}

/* a 16x16 block in registers: r[i] lane j -> r[j] lane i */
__attribute__((target("avx512f"), always_inline)) static inline void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* u[i + k] (i = 0, 4, 8, 12), 128-bit lane L: rows i..i+3 of column 4L + k */
    __m512d u[16];
    for (int i = 0; i < 16; i += 4) {
        const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]),
                      c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
        u[i] = _mm512_unpacklo_pd(a, c);
        u[i + 1] = _mm512_unpackhi_pd(a, c);
        u[i + 2] = _mm512_unpacklo_pd(b, d);
        u[i + 3] = _mm512_unpackhi_pd(b, d);
    }
    /* column 4L + k, lane M = u[4M + k] lane L: a 4x4 transpose of lanes */
    for (int k = 0; k < 4; k++) {
        const __m512 a = _mm512_castpd_ps(u[k]), b = _mm512_castpd_ps(u[4 + k]),
                     c = _mm512_castpd_ps(u[8 + k]), d = _mm512_castpd_ps(u[12 + k]);
        const __m512 s0 = _mm512_shuffle_f32x4(a, b, 0x88), s1 = _mm512_shuffle_f32x4(a, b, 0xdd),
                     s2 = _mm512_shuffle_f32x4(c, d, 0x88), s3 = _mm512_shuffle_f32x4(c, d, 0xdd);
        r[k] = _mm512_shuffle_f32x4(s0, s2, 0x88);
        r[8 + k] = _mm512_shuffle_f32x4(s0, s2, 0xdd);
        r[4 + k] = _mm512_shuffle_f32x4(s1, s3, 0x88);
        r[12 + k] = _mm512_shuffle_f32x4(s1, s3, 0xdd);
    }
}

/* Lane-interleaving of 16 samples, a 16x16 block at a time:
 *   !back  dst [n][16] from 16 rows of n floats, row s at src + s*ld;
 *   back   rows [0, rows) of n floats at dst + s*ld from src [n][16]. */
__attribute__((target("avx512f"))) static void interleave16(float *dst, const float *src, long n,
                                                            long ld, int rows, bool back)
{
    for (long i = 0; i < n; i += 16) {
        const int live = (int)DT_MIN(16, n - i);
        const __mmask16 m = nn_lanes16(live);
        __m512 r[16];
        for (int k = 0; k < 16; k++)
            if (back)
                r[k] = k < live ? _mm512_loadu_ps(src + (i + k) * 16) : _mm512_setzero_ps();
            else
                r[k] = _mm512_maskz_loadu_ps(m, src + k * ld + i);
        transpose16(r);
        for (int k = 0; k < 16; k++)
            if (back && k < rows)
                _mm512_mask_storeu_ps(dst + k * ld + i, m, r[k]);
            else if (!back && k < live)
                _mm512_storeu_ps(dst + (i + k) * 16, r[k]);
    }
}

/* dzl [n][L] from the L samples' dz in dzn [L][n] */
static void dxs_gather(float *dzl, const float *dzn, long n, int L)
{
    if (L == 16) {
        interleave16(dzl, dzn, n, n, 16, false);
        return;
    }
    for (long i = 0; i < n; i++)
        for (int s = 0; s < L; s++) dzl[i * L + s] = dzn[s * n + i];
}

/* lanes [0, count) of dxl [in_size][L] to the samples at dx, dx + in_size, ... */
static void dxs_spread(float *dx, const float *dxl, long in_size, int count, int L)
{
    if (L == 16) {
        interleave16(dx, dxl, in_size, in_size, count, true);
        return;
    }
    for (int s = 0; s < count; s++)
        for (long i = 0; i < in_size; i++) dx[s * in_size + i] = dxl[i * L + s];
}

__attribute__((target("avx2,fma"))) static void mc_backward(float *dx, float *dw, float *db,
                                                            const float *dy, const float *y,
                                                            const float *x, const float *w,
                                                            long B, const nn_conv_geom *g,
                                                            nn_act act, float *ws, long chunk,
                                                            bool exact)
{
    const mc_geom m = mc_forward_geom(g);
    const int O = g->out_c, C = g->c, KH = g->kh, KW = g->kw, Op = m.Op;
    const long K = (long)C * KH * KW, P = (long)g->oh * g->ow, in_size = (long)C * g->h * g->w;
    float *dwt = ws, *dzt = dwt + K * Op, *xs = dzt + P * Op, *dz = xs + mc_xs_floats(&m);
    float *col = dz + (long)O * chunk * P, *dzn = col + chunk * P * K, *dzl = dzn + O * P * 16;
    float *dxl = dzl + O * P * 16;
    memset(dwt, 0, (size_t)(K * Op) * sizeof *dwt);
    const int L = nn_use_avx512() ? 16 : 8;
    dxs_kernel *dxs = dx && !exact ? dxs_find(g, L) : NULL;
    if (dxs) memset(dzn, 0, (size_t)(O * P * L) * sizeof *dzn); /* lanes past a short group */
    for (long n0 = 0; n0 < B; n0 += chunk) {
        const long G = DT_MIN(chunk, B - n0), GP = G * P;
        for (long n = n0; n < n0 + G; n++) {
            /* dz [O][G*P] as the dx GEMM wants it, and dz^T for dW */
            for (int o = 0; o < O; o++)
                nn_act_backward(act, dz + o * GP + (n - n0) * P, dy + (n * O + o) * P,
                                y + (n * O + o) * P, P);
            if (Op % 16 == 0 && GP * 16 < INT_MAX && nn_use_avx512())
                dz_transpose16(dzt, db, dz + (n - n0) * P, GP, P, O, Op);
            else
                for (int o = 0; o < Op; o++) {
                    const float *src = dz + o * GP + (n - n0) * P;
                    float s = 0.0f;
                    for (long p = 0; p < P; p++) {
                        float v = o < O ? src[p] : 0.0f;
                        dzt[p * Op + o] = v;
                        s += v;
                    }
                    if (o < O) db[o] += s;
                }
            if (dxs) { /* a group of L samples complete: its dx */
                const int lane = (int)(n % L);
                for (int o = 0; o < O; o++)
                    memcpy(dzn + ((long)lane * O + o) * P, dz + o * GP + (n - n0) * P,
                           (size_t)P * sizeof *dzn);
                if (lane == L - 1 || n == B - 1) {
                    dxs_gather(dzl, dzn, O * P, L);
                    dxs(dxl, dzl, w, g);
                    dxs_spread(dx + (n - lane) * in_size, dxl, in_size, lane + 1, L);
                }
            }
            mc_stage(xs, x + n * in_size, &m);
            if (Op % 16 == 0 && nn_use_avx512()) {
                mc_dw16(dwt, dzt, xs, &m);
                continue;
            }
            for (int og = 0; og < Op; og += 16) {
                const bool two = og + 16 <= Op && KW <= 6;
                for (int c = 0; c < C; c++)
                    for (int ki = 0; ki < KH; ki++) {
                        if (two) {
                            switch (KW) {
#define NN_MC_CASE(k)                                                                            \
    case k:                                                                                      \
        mc_dw_rows(dwt + og, dzt + og, xs, &m, c, ki, k, 2);                                     \
        break;
                                NN_MC_CASE(1) NN_MC_CASE(2) NN_MC_CASE(3) NN_MC_CASE(4)
                                NN_MC_CASE(5) NN_MC_CASE(6)
#undef NN_MC_CASE
                            }
                        } else {
                            for (int o8 = og; o8 < DT_MIN(og + 16, Op); o8 += 8)
                                switch (KW) {
#define NN_MC_CASE(k)                                                                            \
    case k:                                                                                      \
        mc_dw_rows(dwt + o8, dzt + o8, xs, &m, c, ki, k, 1);                                     \
        break;
                                    NN_MC_CASE(1) NN_MC_CASE(2) NN_MC_CASE(3) NN_MC_CASE(4)
                                    NN_MC_CASE(5) NN_MC_CASE(6) NN_MC_CASE(7) NN_MC_CASE(8)
#undef NN_MC_CASE
                                }
                        }
                    }
            }
        }
        if (dx && !dxs) {
            if (exact)
                nn_rows_gemm(col, GP, w, 1, K, dz, GP, K, GP, O);
            else
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)GP, O, 1.0f, w,
                            (int)K, dz, (int)GP, 0.0f, col, (int)GP);
            if (g->w <= 16 && nn_use_avx512())
                col2im16(dx + n0 * in_size, col, G, g);
            else
                col2im_s1(dx + n0 * in_size, col, G, g);
        }
    }
    for (int o = 0; o < O; o++)
        for (long k = 0; k < K; k++) dw[(long)o * K + k] += dwt[k * Op + o];
}
#else
#define NN_HAVE_DIRECT 0
#endif

bool nn_conv_is_direct(const nn_conv_geom *g)
{
#if NN_HAVE_DIRECT
    if (g->stride != 1 || g->kw > NN_DIRECT_MAX_KW || !cpu_has_avx2_fma()) return false;
    return true;
#else
    (void)g;
    return false;
#endif
}

bool nn_conv_dx_is_direct(const nn_conv_geom *g)
{
#if NN_HAVE_DIRECT
    return g->c > 1 && nn_conv_is_direct(g) && dxs_find(g, 16) != NULL;
#else
    (void)g;
    return false;
#endif
}

size_t nn_conv_workspace(const nn_conv_geom *g, long chunk)
{
    size_t P = (size_t)g->oh * (size_t)g->ow;
    size_t K = (size_t)g->c * (size_t)g->kh * (size_t)g->kw;
    size_t unfold = (size_t)chunk * P * (K + (size_t)g->out_c);
    if (!nn_conv_is_direct(g)) return unfold;
#if NN_HAVE_DIRECT
    size_t direct = g->c > 1 ? mc_workspace(g, chunk)
                             : ((size_t)g->h + 2 * (size_t)g->pad) * direct_sw(g) +
                                   (size_t)g->out_c * (size_t)g->oh * direct_blocks(g) *
                                       NN_DIRECT_BLOCK;
#else
    size_t direct = 0;
#endif
    return DT_MAX(unfold, direct);
}

/* d[0..n) = s[0..n) for the short runs of im2col (n <= ow: 28 and 10 floats
 * in LeNet) as inline 16-byte moves. A plain loop or memcpy becomes a libc
 * memmove call (GCC turns copy loops into calls), whose fixed cost per call
 * made memmove the top entry of a LeNet training profile; the empty asm
 * statements (no instruction) stop that transformation. */
typedef float nn_v4 __attribute__((vector_size(16), aligned(4)));
static inline void copy_row(float *restrict d, const float *restrict s, int n)
{
    int j = 0;
    for (; j + 4 <= n; j += 4) {
        nn_v4 v = *(const nn_v4 *)(s + j);
        __asm__("" : "+x"(v));
        *(nn_v4 *)(d + j) = v;
    }
    for (; j < n; j++) {
        float v = s[j];
        __asm__("" : "+x"(v));
        d[j] = v;
    }
}

/* col[(c*kh + ki)*kw + kj][n*P + i*ow + j] = xpad[n][c][i*s + ki][j*s + kj] */
static void im2col(float *col, const float *x, long G, const nn_conv_geom *g)
{
    const int s = g->stride, OW = g->ow, OH = g->oh, H = g->h, W = g->w;
    const long P = (long)OH * OW, ld = G * P, plane = (long)H * W, in_size = plane * g->c;
    for (int c = 0; c < g->c; c++)
        for (int ki = 0; ki < g->kh; ki++)
            for (int kj = 0; kj < g->kw; kj++) {
                float *row = col + ((long)(c * g->kh + ki) * g->kw + kj) * ld;
                int lo, hi;
                valid_range(kj, g, &lo, &hi);
                const int off = kj - g->pad;
                for (long n = 0; n < G; n++) {
                    const float *xp = x + n * in_size + c * plane;
                    float *dst = row + n * P;
                    for (int i = 0; i < OH; i++) {
                        float *d = dst + (long)i * OW;
                        int ih = i * s + ki - g->pad;
                        if (ih < 0 || ih >= H) {
                            memset(d, 0, (size_t)OW * sizeof *d);
                            continue;
                        }
                        const float *xr = xp + (long)ih * W;
                        for (int j = 0; j < lo; j++) d[j] = 0.0f;
                        if (s == 1) {
                            copy_row(d + lo, xr + lo + off, hi - lo);
                        } else {
                            for (int j = lo; j < hi; j++) d[j] = xr[j * s + off];
                        }
                        for (int j = hi; j < OW; j++) d[j] = 0.0f;
                    }
                }
            }
}

/* The adjoint of im2col: dx (zeroed here) += every column entry at its pixel. */
static void col2im(float *dx, const float *col, long G, const nn_conv_geom *g)
{
    const int s = g->stride, OW = g->ow, OH = g->oh, H = g->h, W = g->w;
    const long P = (long)OH * OW, ld = G * P, plane = (long)H * W, in_size = plane * g->c;
    memset(dx, 0, (size_t)(G * in_size) * sizeof *dx);
    for (int c = 0; c < g->c; c++)
        for (int ki = 0; ki < g->kh; ki++)
            for (int kj = 0; kj < g->kw; kj++) {
                const float *row = col + ((long)(c * g->kh + ki) * g->kw + kj) * ld;
                int lo, hi;
                valid_range(kj, g, &lo, &hi);
                const int off = kj - g->pad;
                for (long n = 0; n < G; n++) {
                    float *xp = dx + n * in_size + c * plane;
                    const float *src = row + n * P;
                    for (int i = 0; i < OH; i++) {
                        int ih = i * s + ki - g->pad;
                        if (ih < 0 || ih >= H) continue;
                        const float *d = src + (long)i * OW;
                        float *xr = xp + (long)ih * W;
                        if (s == 1) {
                            for (int j = lo; j < hi; j++) xr[j + off] += d[j];
                        } else {
                            for (int j = lo; j < hi; j++) xr[j * s + off] += d[j];
                        }
                    }
                }
            }
}

/* db[o] += the sum over p < P of dz[o*ld + p], for every o < O. Each channel
 * is summed in ascending p from 0.0f and then added to db[o], exactly as one
 * loop per channel would (bit-identical), but four channels at a time: four
 * independent add chains instead of one whose 3-4 cycle latency made this
 * sum about half of nn_conv_backward's own time in a LeNet profile. */
static void channel_sums(float *db, const float *dz, long O, long ld, long P)
{
    long o = 0;
    for (; o + 4 <= O; o += 4) {
        const float *a = dz + o * ld, *b = a + ld, *c = b + ld, *d = c + ld;
        float sa = 0.0f, sb = 0.0f, sc = 0.0f, sd = 0.0f;
        for (long p = 0; p < P; p++) {
            sa += a[p];
            sb += b[p];
            sc += c[p];
            sd += d[p];
        }
        db[o] += sa;
        db[o + 1] += sb;
        db[o + 2] += sc;
        db[o + 3] += sd;
    }
    for (; o + 2 <= O; o += 2) {
        const float *a = dz + o * ld, *b = a + ld;
        float sa = 0.0f, sb = 0.0f;
        for (long p = 0; p < P; p++) {
            sa += a[p];
            sb += b[p];
        }
        db[o] += sa;
        db[o + 1] += sb;
    }
    for (; o < O; o++) {
        const float *a = dz + o * ld;
        float sa = 0.0f;
        for (long p = 0; p < P; p++) sa += a[p];
        db[o] += sa;
    }
}

/* exact: leaf mode, every GEMM through nn_rows_gemm (row-invariant) */
static void conv_forward(float *y, const float *x, const float *w, const float *b, long B,
                         const nn_conv_geom *g, nn_act act, float *ws, long chunk, bool exact)
{
    const long P = (long)g->oh * g->ow, K = (long)g->c * g->kh * g->kw, O = g->out_c;
    const long in_size = (long)g->c * g->h * g->w;
#if NN_HAVE_DIRECT
    if (nn_conv_is_direct(g)) {
        if (g->c == 1)
            direct_forward(y, x, w, b, B, g, act, ws);
        else
            mc_forward(y, x, w, b, B, g, act, ws);
        return;
    }
#endif
    for (long n0 = 0; n0 < B; n0 += chunk) {
        long G = DT_MIN(chunk, B - n0);
        float *col = ws, *z = ws + (size_t)(G * P * K);
        im2col(col, x + n0 * in_size, G, g);
        if (exact)
            nn_rows_gemm(z, G * P, w, K, 1, col, G * P, O, G * P, K);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)O, (int)(G * P), (int)K,
                        1.0f, w, (int)K, col, (int)(G * P), 0.0f, z, (int)(G * P));
        for (long n = 0; n < G; n++)
            for (long o = 0; o < O; o++)
                nn_act_bias_scalar(act, y + ((n0 + n) * O + o) * P, z + o * G * P + n * P, b[o], P);
    }
}

void nn_conv_forward(float *y, const float *x, const float *w, const float *b, long B,
                     const nn_conv_geom *g, nn_act act, float *ws, long chunk)
{
    conv_forward(y, x, w, b, B, g, act, ws, chunk, false);
}

void nn_conv_forward_leaf(float *y, const float *x, const float *w, const float *b, long B,
                          const nn_conv_geom *g, nn_act act, float *ws, long chunk)
{
    conv_forward(y, x, w, b, B, g, act, ws, chunk, true);
}

/* exact (leaf mode): the GEMMs through nn_rows_gemm; the dW GEMM's
 * reduction over the chunk's pixels then needs col^T and a product buffer
 * (exact_ws: chunk*P*K + O*K floats), added to dw chunk after chunk */
static void conv_backward(float *dx, float *dw, float *db, const float *dy, const float *y,
                          const float *x, const float *w, long B, const nn_conv_geom *g,
                          nn_act act, float *ws, long chunk, float *exact_ws)
{
    const bool exact = exact_ws != NULL;
    const long P = (long)g->oh * g->ow, K = (long)g->c * g->kh * g->kw, O = g->out_c;
    const long in_size = (long)g->c * g->h * g->w;
#if NN_HAVE_DIRECT
    if (nn_conv_is_direct(g) && g->c > 1) {
        mc_backward(dx, dw, db, dy, y, x, w, B, g, act, ws, chunk, exact);
        return;
    }
    if (!dx && nn_conv_is_direct(g)) {
        direct_backward_params(dw, db, dy, y, x, B, g, act, ws);
        return;
    }
#endif
    for (long n0 = 0; n0 < B; n0 += chunk) {
        long G = DT_MIN(chunk, B - n0), GP = G * P;
        float *col = ws, *dz = ws + (size_t)(GP * K);
        for (long n = 0; n < G; n++) {
            for (long o = 0; o < O; o++) {
                long at = ((n0 + n) * O + o) * P;
                nn_act_backward(act, dz + o * GP + n * P, dy + at, y + at, P);
            }
            channel_sums(db, dz + n * P, O, GP, P);
        }
        im2col(col, x + n0 * in_size, G, g);
        if (exact) {
            float *colt = exact_ws, *prod = exact_ws + GP * K;
            nn_transpose(colt, col, K, GP);
            nn_rows_gemm(prod, K, dz, GP, 1, colt, K, O, K, GP);
            for (long i = 0; i < O * K; i++) dw[i] += prod[i];
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)O, (int)K, (int)GP, 1.0f,
                        dz, (int)GP, col, (int)GP, 1.0f, dw, (int)K);
        }
        if (dx) {
            if (exact)
                nn_rows_gemm(col, GP, w, 1, K, dz, GP, K, GP, O);
            else
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)GP, (int)O, 1.0f,
                            w, (int)K, dz, (int)GP, 0.0f, col, (int)GP);
            col2im(dx + n0 * in_size, col, G, g);
        }
    }
}

void nn_conv_backward(float *dx, float *dw, float *db, const float *dy, const float *y,
                      const float *x, const float *w, long B, const nn_conv_geom *g, nn_act act,
                      float *ws, long chunk)
{
    conv_backward(dx, dw, db, dy, y, x, w, B, g, act, ws, chunk, NULL);
}

/* tree_ws: the counter over leaves of [dW | db], then the exact im2col buffers */
size_t nn_conv_leaf_workspace(const nn_conv_geom *g, long chunk, int levels)
{
    size_t K = (size_t)g->c * g->kh * g->kw, P = (size_t)g->oh * g->ow, O = (size_t)g->out_c;
    return ((size_t)levels + 1) * (O * K + O) + (size_t)chunk * P * K + O * K;
}

void nn_conv_backward_leaf(float *dx, float *dw, float *db, const float *dy, const float *y,
                           const float *x, const float *w, long B, const nn_conv_geom *g,
                           nn_act act, float *ws, long chunk, long leaf, float *tree_ws,
                           int levels)
{
    const long P = (long)g->oh * g->ow, K = (long)g->c * g->kh * g->kw, O = g->out_c;
    const long in_size = (long)g->c * g->h * g->w;
    const size_t len = (size_t)(O * K + O);
    if (db != dw + O * K) DT_BUG("conv leaf backward: bias gradient does not follow the weights");
    if (!nn_whole_subtree(B, leaf)) DT_BUG("leaf mode: %ld samples are not whole leaves of %ld", B, leaf);
    /* each leaf alone: chunks never span two leaves, so nothing of a leaf
     * depends on the batch around it */
    chunk = DT_MIN(chunk, leaf);
    float *exact_ws = tree_ws + ((size_t)levels + 1) * len;
    nn_tree t;
    nn_tree_begin(&t, tree_ws, len, levels);
    for (long k0 = 0; k0 < B; k0 += leaf) {
        float *v = nn_tree_leaf(&t);
        memset(v, 0, len * sizeof *v);
        conv_backward(dx ? dx + k0 * in_size : NULL, v, v + O * K, dy + k0 * O * P,
                      y + k0 * O * P, x + k0 * in_size, w, leaf, g, act, ws, chunk, exact_ws);
        nn_tree_push(&t);
    }
    nn_tree_finish(&t, dw);
}

/* ---- the kind ------------------------------------------------------------ */
static int conv_setup(nn_layer *l, char *why, size_t why_size)
{
    const dt_layer_spec *s = &l->spec;
    if (l->in.flat) {
        snprintf(why, why_size, "its input is a flat vector of %ld values, not a CxHxW image",
                 l->in_size);
        return -1;
    }
    if (s->out_channels < 1 || s->kernel < 1 || s->stride < 1 || s->pad < 0) {
        snprintf(why, why_size,
                 "needs out >= 1, kernel >= 1, stride >= 1 and pad >= 0, got out %d kernel %d "
                 "stride %d pad %d",
                 s->out_channels, s->kernel, s->stride, s->pad);
        return -1;
    }
    nn_conv_geom g = {.c = l->in.c, .h = l->in.h, .w = l->in.w, .out_c = s->out_channels,
                      .kh = s->kernel, .kw = s->kernel, .stride = s->stride, .pad = s->pad};
    if (nn_conv_geom_init(&g) != 0) {
        if (s->pad)
            snprintf(why, why_size, "kernel %d is larger than its input %dx%dx%d padded by %d",
                     s->kernel, l->in.c, l->in.h, l->in.w, s->pad);
        else
            snprintf(why, why_size, "kernel %d is larger than its input %dx%dx%d", s->kernel,
                     l->in.c, l->in.h, l->in.w);
        return -1;
    }
    long P = (long)g.oh * g.ow, K = (long)g.c * g.kh * g.kw;
    if (K > INT_MAX / 2 || P > INT_MAX / 2) {
        snprintf(why, why_size, "kernel or output too large");
        return -1;
    }
    l->conv = g;
    l->out = (nn_shape){g.out_c, g.oh, g.ow, false};
    l->n_w = (size_t)g.out_c * (size_t)K;
    l->n_b = (size_t)g.out_c;
    l->fan_in = K;
    l->fan_out = (long)g.out_c * g.kh * g.kw;
    l->macs = (double)g.out_c * (double)K * (double)P;
    /* chunk: as many samples as keep col within the budget; at least one,
     * and G*P must fit the int dimensions of cblas */
    long chunk = NN_CONV_COL_BUDGET / (K * P);
    if (chunk > l->max_batch) chunk = l->max_batch;
    if (chunk < 1) chunk = 1;
    if (chunk > INT_MAX / P) chunk = INT_MAX / P;
    l->chunk = chunk;
    l->ws_floats = nn_conv_workspace(&g, chunk);
    return 0;
}

static void conv_fwd(nn_layer *l, long n)
{
    if (l->leaf)
        nn_conv_forward_leaf(l->y, l->x, l->w, l->b, n, &l->conv, l->act, l->ws, l->chunk);
    else
        nn_conv_forward(l->y, l->x, l->w, l->b, n, &l->conv, l->act, l->ws, l->chunk);
}

static void conv_bwd(nn_layer *l, long n)
{
    if (l->leaf)
        nn_conv_backward_leaf(l->dx, l->dw, l->db, l->dy, l->y, l->x, l->w, n, &l->conv, l->act,
                              l->ws, l->chunk, l->leaf, l->leaf_ws, l->leaf_levels);
    else
        nn_conv_backward(l->dx, l->dw, l->db, l->dy, l->y, l->x, l->w, n, &l->conv, l->act,
                         l->ws, l->chunk);
}

static size_t conv_leaf_ws(const nn_layer *l)
{
    return nn_conv_leaf_workspace(&l->conv, l->chunk, l->leaf_levels);
}

static void conv_label(const nn_layer *l, char *buf, size_t size)
{
    snprintf(buf, size, "conv %dx%dx%d s%d p%d", l->conv.out_c, l->conv.kh, l->conv.kw,
             l->conv.stride, l->conv.pad);
}

const nn_kind nn_kind_conv = {.name = "conv", .fuses_act = true, .setup = conv_setup,
                              .forward = conv_fwd, .backward = conv_bwd, .label = conv_label,
                              .leaf_workspace = conv_leaf_ws};
