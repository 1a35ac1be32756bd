/* tree.c - the kernels of reproducible mode (issue 13, dt_model_set_leaf).
 *
 * The batch is cut into leaves of s consecutive samples. Every parameter
 * gradient is T(0, L) over the L = n/s leaves: T(a, b) = T(a, mid) +
 * T(mid, b), mid = (a+b)/2, one float add, and T(a, a+1) the leaf's own sum,
 * whose every operation depends on nothing but the leaf's samples. Since a
 * node of that tree is the same whichever process forms it, P ranks holding
 * 2^k leaves each, combined pairwise across ranks, give the bits of one rank
 * holding them all. Three pieces make that hold:
 *
 *  1. nn_tree: a binary counter over leaves (levels[i] holds the pending
 *     subtree of 2^i leaves; a new leaf carries upwards like an increment),
 *     for small vectors (conv dW/db, dense db): the caller forms the leaf
 *     with the existing kernels into a zeroed buffer, pushes, and at the end
 *     adds the root into the gradient.
 *  2. nn_dense_dw_tree: dW[o][i] += T of leaf sums of dz[k][o] x[k][i]. The
 *     dense weights are too large for a buffer per level (784x256 floats x 8
 *     levels), so the tree is formed per register tile (2 outputs x 16
 *     inputs): blocks of up to 4 leaves as a subtree in registers, the
 *     blocks through a counter of a few vectors on the stack. Products are
 *     rounded before they are added (separate mul and add: a fused
 *     multiply-add would not round the first product of a leaf of 1, and the
 *     portable path could not match it), a leaf of s > 1 samples is their
 *     sequential sum.
 *  3. nn_rows_gemm: C = A B with every element one fused multiply-add chain
 *     in ascending k from 0. Each element is computed alone, in the same
 *     order, whichever rows and columns share the call and however the
 *     calls are cut, so a sample's outputs do not depend on the batch it is
 *     in. OpenBLAS gives no such promise (launch/bench/sgemm_rows measures
 *     it: see the README), so leaf mode does its dense forward, dense dx and
 *     the conv dx/im2col GEMMs here.
 *
 * The kernels run on the calling thread. (Tried: OpenMP over the output
 * tiles, which changes no bit since every element is formed whole by one
 * thread; 2 threads took the MLP's update from 1.4 to 0.9 ms on an idle
 * core, but libgomp's idle threads spin between regions, and on the shared
 * 2-core machine LeNet's update went from 6 to 16-37 ms. One thread already
 * meets the cost target against 2-thread OpenBLAS: launch/bench/leaf_cost.)
 * Both kernels have an AVX2+FMA path (chosen once at run time, as conv.c
 * does) and a portable C path computing exactly the same bits (fmaf for the
 * chain, separate mul/add for the tree; this file is compiled with
 * -ffp-contract=off so the compiler fuses nothing); the tests compare the two. */
#include <math.h>
#include <string.h>

#include "layers.h"

static int isa_limit = NN_ISA_AVX512;
void nn_leaf_limit_isa(int max_isa) { isa_limit = max_isa; }

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define NN_TREE_AVX2 1
/* the best the CPU has, found once (the limit is applied on each call) */
static int cpu_isa(void)
{
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        known = avx2 && __builtin_cpu_supports("avx512f") ? NN_ISA_AVX512
                : avx2                                    ? NN_ISA_AVX2
                                                          : NN_ISA_PORTABLE;
    }
    return known;
}
int nn_isa(void) { return DT_MIN(cpu_isa(), isa_limit); }
static bool use_avx2(void) { return DT_MIN(cpu_isa(), isa_limit) >= NN_ISA_AVX2; }
#else
#define NN_TREE_AVX2 0
int nn_isa(void) { return NN_ISA_PORTABLE; }
#endif

int nn_tree_levels(long leaves)
{
    int k = 0;
    while ((1L << k) < leaves) k++;
    return k + 1;
}

bool nn_whole_subtree(long n, long leaf)
{
    if (leaf <= 0 || n <= 0 || n % leaf) return false;
    long L = n / leaf;
    return (L & (L - 1)) == 0;
}

/* ---- 1. the counter over small vectors ------------------------------------ */
void nn_tree_begin(nn_tree *t, float *buf, size_t len, int levels)
{
    t->buf = buf;
    t->len = len;
    t->levels = levels;
    t->count = 0;
}

float *nn_tree_leaf(nn_tree *t) { return t->buf + (size_t)t->levels * t->len; }

void nn_tree_push(nn_tree *t)
{
    const float *carry = nn_tree_leaf(t);
    int lvl = 0;
    while ((t->count >> lvl) & 1) {
        float *node = t->buf + (size_t)lvl * t->len;
        for (size_t i = 0; i < t->len; i++) node[i] += carry[i];
        carry = node;
        lvl++;
    }
    if (lvl >= t->levels) DT_BUG("leaf tree: %ld leaves overflow %d levels", t->count + 1, t->levels);
    float *dst = t->buf + (size_t)lvl * t->len;
    if (dst != carry) memcpy(dst, carry, t->len * sizeof *dst);
    t->count++;
}

void nn_tree_finish(nn_tree *t, float *dst)
{
    if (t->count == 0) return;
    if (t->count & (t->count - 1)) DT_BUG("leaf tree of %ld leaves is not whole", t->count);
    int root = nn_tree_levels(t->count) - 1;
    const float *r = t->buf + (size_t)root * t->len;
    for (size_t i = 0; i < t->len; i++) dst[i] += r[i];
}

double nn_tree_sum_double(double *leaf_sums, long leaves)
{
    /* pairwise in place, level by level: the same nodes as the recursion
     * T(a, b) = T(a, mid) + T(mid, b) for a power of two */
    for (long width = 1; width < leaves; width *= 2)
        for (long a = 0; a + width < leaves; a += 2 * width) leaf_sums[a] += leaf_sums[a + width];
    return leaves > 0 ? leaf_sums[0] : 0.0;
}

/* ---- 2. dense dW: the tree per register tile ------------------------------ */
void nn_bias_grads_tree(float *db, const float *dz, long n, int out, long leaf, float *buf,
                        int levels)
{
    nn_tree t;
    nn_tree_begin(&t, buf, (size_t)out, levels);
    float *v = nn_tree_leaf(&t);
    for (long k0 = 0; k0 < n; k0 += leaf) {
        memcpy(v, dz + k0 * out, (size_t)out * sizeof *v);
        for (long k = k0 + 1; k < k0 + leaf; k++)
            for (int o = 0; o < out; o++) v[o] += dz[k * out + o];
        nn_tree_push(&t);
    }
    nn_tree_finish(&t, db);
}

/* The portable path: per output row o, the leaves over all inputs. */
static void dw_tree_portable(float *dw, const float *dzt, const float *x, long n, int in, int out,
                             long leaf, float *buf, int levels)
{
    nn_tree t;
    for (int o = 0; o < out; o++) {
        const float *d = dzt + (long)o * n;
        nn_tree_begin(&t, buf, (size_t)in, levels);
        float *v = nn_tree_leaf(&t);
        for (long k0 = 0; k0 < n; k0 += leaf) {
            for (int i = 0; i < in; i++) v[i] = d[k0] * x[k0 * in + i];
            for (long k = k0 + 1; k < k0 + leaf; k++)
                for (int i = 0; i < in; i++) {
                    float p = d[k] * x[k * in + i];
                    v[i] += p;
                }
            nn_tree_push(&t);
        }
        nn_tree_finish(&t, dw + (long)o * in);
    }
}

#if NN_TREE_AVX2
#define DW_MAX_LEVELS 40
#define DW_SUPER 64 /* leaves per super-block (a power of two >= 4) */

/* p = the products of sample k for NO outputs x 2 vectors of inputs */
__attribute__((target("avx2,fma"), always_inline)) static inline void
dw_products(__m256 p[2][2], const float *dzt, long n, const float *x, long in, long k,
            const __m256i mask[2], const int NO, const bool TAIL)
{
    __m256 xv[2];
    for (int v = 0; v < 2; v++)
        xv[v] = TAIL ? _mm256_maskload_ps(x + k * in + 8 * v, mask[v])
                     : _mm256_loadu_ps(x + k * in + 8 * v);
    for (int c = 0; c < 2; c++) {
        /* lanes of an absent second output: defined, never stored */
        __m256 d = c < NO ? _mm256_broadcast_ss(dzt + c * n + k) : _mm256_setzero_ps();
        for (int v = 0; v < 2; v++) p[c][v] = _mm256_mul_ps(d, xv[v]);
    }
}

/* r = the leaf of s >= 1 samples from k0: its products summed in order */
__attribute__((target("avx2,fma"), always_inline)) static inline void
dw_leaf(__m256 r[2][2], const float *dzt, long n, const float *x, long in, long k0, long s,
        const __m256i mask[2], const int NO, const bool TAIL)
{
    dw_products(r, dzt, n, x, in, k0, mask, NO, TAIL);
    for (long k = k0 + 1; k < k0 + s; k++) {
        __m256 p[2][2];
        dw_products(p, dzt, n, x, in, k, mask, NO, TAIL);
        for (int c = 0; c < NO; c++)
            for (int v = 0; v < 2; v++) r[c][v] = _mm256_add_ps(r[c][v], p[c][v]);
    }
}

/* The subtree of BL (1, 2 or 4) leaves from k0, formed in registers. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
dw_block(__m256 r[2][2], const float *dzt, long n, const float *x, long in, long k0, long s,
         const __m256i mask[2], const int NO, const bool TAIL, const int BL)
{
    dw_leaf(r, dzt, n, x, in, k0, s, mask, NO, TAIL);
    if (BL == 1) return;
    __m256 b[2][2];
    dw_leaf(b, dzt, n, x, in, k0 + s, s, mask, NO, TAIL);
    for (int c = 0; c < NO; c++)
        for (int v = 0; v < 2; v++) r[c][v] = _mm256_add_ps(r[c][v], b[c][v]);
    if (BL == 2) return;
    __m256 e[2][2];
    dw_leaf(b, dzt, n, x, in, k0 + 2 * s, s, mask, NO, TAIL);
    dw_leaf(e, dzt, n, x, in, k0 + 3 * s, s, mask, NO, TAIL);
    for (int c = 0; c < NO; c++)
        for (int v = 0; v < 2; v++) {
            b[c][v] = _mm256_add_ps(b[c][v], e[c][v]);
            r[c][v] = _mm256_add_ps(r[c][v], b[c][v]);
        }
}

/* One tile: outputs o..o+NO, inputs [i0, i0+16) (x and dw already offset). */
__attribute__((target("avx2,fma"), always_inline)) static inline void
dw_tile(float *dw, long ldw, const float *dzt, long n, const float *x, long in, long s,
        const __m256i mask[2], const int NO, const bool TAIL, const int BL)
{
    __m256 stack[DW_MAX_LEVELS][2][2], vals[DW_SUPER / 4][2][2];
    __m256 r[2][2] = {{_mm256_setzero_ps(), _mm256_setzero_ps()},
                      {_mm256_setzero_ps(), _mm256_setzero_ps()}};
    const long L = n / s, super = L < DW_SUPER ? L : DW_SUPER, blocks = super / BL;
    long count = 0;
    for (long k0 = 0; k0 < n; k0 += super * s) {
        /* a super-block of up to DW_SUPER leaves: its blocks' subtrees into
         * vals, then pairwise level by level (loops of a fixed trip count,
         * which the branch predictor learns; a counter per block of 4
         * leaves mispredicted its carries and took 5x the products' time) */
        for (long b = 0; b < blocks; b++)
            dw_block(vals[b], dzt, n, x, in, k0 + b * BL * s, s, mask, NO, TAIL, BL);
        for (long width = 1; width < blocks; width *= 2)
            for (long a = 0; a + width < blocks; a += 2 * width)
                for (int c = 0; c < NO; c++)
                    for (int v = 0; v < 2; v++)
                        vals[a][c][v] = _mm256_add_ps(vals[a][c][v], vals[a + width][c][v]);
        for (int c = 0; c < NO; c++)
            for (int v = 0; v < 2; v++) r[c][v] = vals[0][c][v];
        /* and the super-blocks through the counter */
        int lvl = 0;
        while ((count >> lvl) & 1) {
            for (int c = 0; c < NO; c++)
                for (int v = 0; v < 2; v++) r[c][v] = _mm256_add_ps(stack[lvl][c][v], r[c][v]);
            lvl++;
        }
        for (int c = 0; c < NO; c++)
            for (int v = 0; v < 2; v++) stack[lvl][c][v] = r[c][v];
        count++;
    }
    /* count is a power of two: the last carry reached the top, r is the root */
    for (int c = 0; c < NO; c++)
        for (int v = 0; v < 2; v++) {
            float *d = dw + c * ldw + 8 * v;
            if (TAIL) {
                __m256 o = _mm256_add_ps(_mm256_maskload_ps(d, mask[v]), r[c][v]);
                _mm256_maskstore_ps(d, mask[v], o);
            } else {
                _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), r[c][v]));
            }
        }
}

/* ---- the leaf-1 fast path: one output x 32 inputs per tile --------------
 * Leaves of one sample are the common case (global batch 128 = 128 leaves).
 * The general tile above keeps 2 x 2 vectors of each tree level live and
 * spills (2.3 ms where sgemm takes 0.5); here a tile is one output row o and
 * 4 vectors of inputs, a block of 4 samples ((p0 + p1) + (p2 + p3)) takes
 * 11 registers, and x is read straight into the multiplies. Same nodes,
 * same bits as the general path (the tests compare with the portable one). */
#define DW1_SUPER 64 /* leaves per super-block */

__attribute__((target("avx2,fma"), always_inline)) static inline __m256
dw1_load(const float *p, __m256i m, const bool TAIL)
{
    return TAIL ? _mm256_maskload_ps(p, m) : _mm256_loadu_ps(p);
}

/* out = the subtree of samples k..k+3 (d = dzt row o + k, x = x row k + i0) */
__attribute__((target("avx2,fma"), always_inline)) static inline void
dw1_block4(__m256 out[4], const float *d, const float *x, long in, const __m256i m[4],
           const bool TAIL)
{
    const __m256 d0 = _mm256_broadcast_ss(d), d1 = _mm256_broadcast_ss(d + 1);
    __m256 a[4];
    for (int v = 0; v < 4; v++)
        a[v] = _mm256_add_ps(_mm256_mul_ps(d0, dw1_load(x + 8 * v, m[v], TAIL)),
                             _mm256_mul_ps(d1, dw1_load(x + in + 8 * v, m[v], TAIL)));
    const __m256 d2 = _mm256_broadcast_ss(d + 2), d3 = _mm256_broadcast_ss(d + 3);
    for (int v = 0; v < 4; v++) {
        __m256 b = _mm256_add_ps(_mm256_mul_ps(d2, dw1_load(x + 2 * in + 8 * v, m[v], TAIL)),
                                 _mm256_mul_ps(d3, dw1_load(x + 3 * in + 8 * v, m[v], TAIL)));
        out[v] = _mm256_add_ps(a[v], b);
    }
}

/* out = the subtree of BS = 4, 8 or 16 samples from k (pointers offset) */
__attribute__((target("avx2,fma"), always_inline)) static inline void
dw1_block(__m256 out[4], const float *d, const float *x, long in, const __m256i m[4],
          const bool TAIL, const int BS)
{
    dw1_block4(out, d, x, in, m, TAIL);
    if (BS == 4) return;
    __m256 h[4];
    dw1_block4(h, d + 4, x + 4 * in, in, m, TAIL);
    for (int v = 0; v < 4; v++) out[v] = _mm256_add_ps(out[v], h[v]);
    if (BS == 8) return;
    __m256 g[4];
    dw1_block4(g, d + 8, x + 8 * in, in, m, TAIL);
    dw1_block4(h, d + 12, x + 12 * in, in, m, TAIL);
    for (int v = 0; v < 4; v++) out[v] = _mm256_add_ps(out[v], _mm256_add_ps(g[v], h[v]));
}

/* dw row o, inputs [i0, i0 + 32): n >= BS samples, n a power of two; blocks
 * of BS = 4 or 8 samples in registers */
__attribute__((target("avx2,fma"), always_inline)) static inline void
dw1_tile(float *dw, const float *d, const float *x, long n, long in, const __m256i m[4],
         const bool TAIL, const int BS)
{
    __m256 stack[DW_MAX_LEVELS][4], vals[DW1_SUPER / 4][4], r[4];
    const long super = n < DW1_SUPER ? n : DW1_SUPER, blocks = super / BS;
    long count = 0;
    for (int v = 0; v < 4; v++) r[v] = _mm256_setzero_ps();
    for (long k0 = 0; k0 < n; k0 += super) {
        /* (the first block outside the loop: blocks >= 1, which the
         * compiler cannot see) */
        dw1_block(vals[0], d + k0, x + k0 * in, in, m, TAIL, BS);
        for (long b = 1; b < blocks; b++)
            dw1_block(vals[b], d + k0 + BS * b, x + (k0 + BS * b) * in, in, m, TAIL, BS);
        for (long width = 1; width < blocks; width *= 2)
            for (long a = 0; a + width < blocks; a += 2 * width)
                for (int v = 0; v < 4; v++)
                    vals[a][v] = _mm256_add_ps(vals[a][v], vals[a + width][v]);
        for (int v = 0; v < 4; v++) r[v] = vals[0][v];
        int lvl = 0;
        while ((count >> lvl) & 1) {
            for (int v = 0; v < 4; v++) r[v] = _mm256_add_ps(stack[lvl][v], r[v]);
            lvl++;
        }
        for (int v = 0; v < 4; v++) stack[lvl][v] = r[v];
        count++;
    }
    for (int v = 0; v < 4; v++) {
        float *p = dw + 8 * v;
        if (TAIL)
            _mm256_maskstore_ps(p, m[v], _mm256_add_ps(_mm256_maskload_ps(p, m[v]), r[v]));
        else
            _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), r[v]));
    }
}

/* Tiles [t0, t1) of the (32-input block, output) grid, input block major.
 * Up to DW1_PACK samples, the block's 32 columns of x are first packed into
 * a contiguous panel (zero-padded past `in`), which every output row of the
 * block then reads. Measured on MLP layer 1 (784x256, n 128, 1 thread, CPU
 * time): strided x 1.55 ms, packed 1.22; blocks of 8 in registers 1.05, of
 * 16 0.93 (vals traffic); sgemm's dW 0.49. */
#define DW1_PACK 256
__attribute__((target("avx2,fma"))) static void dw1_tiles(float *dw, const float *dzt,
                                                          const float *x, long n, int in,
                                                          int out, long t0, long t1)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __attribute__((aligned(32))) float panel[DW1_PACK * 32];
    const __m256i all[4] = {_mm256_set1_epi32(-1), _mm256_set1_epi32(-1), _mm256_set1_epi32(-1),
                            _mm256_set1_epi32(-1)};
    int packed = -1;
    for (long t = t0; t < t1; t++) {
        const int i0 = (int)(t / out) * 32, o = (int)(t % out);
        const int rem = in - i0;
        __m256i m[4];
        for (int v = 0; v < 4; v++)
            m[v] = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem - 8 * v), idx);
        float *d = dw + (long)o * in + i0;
        const float *dz = dzt + (long)o * n;
        if (n <= DW1_PACK) {
            if (packed != i0) {
                for (long k = 0; k < n; k++)
                    for (int v = 0; v < 4; v++)
                        _mm256_store_ps(panel + k * 32 + 8 * v,
                                        _mm256_maskload_ps(x + k * in + i0 + 8 * v, m[v]));
                packed = i0;
            }
            if (rem >= 32 && n >= 16)
                dw1_tile(d, dz, panel, n, 32, all, false, 16);
            else if (n >= 16)
                dw1_tile(d, dz, panel, n, 32, m, true, 16);
            else if (n >= 8)
                dw1_tile(d, dz, panel, n, 32, m, true, 8);
            else
                dw1_tile(d, dz, panel, n, 32, m, true, 4);
        } else if (rem >= 32) {
            dw1_tile(d, dz, x + i0, n, in, m, false, 16);
        } else {
            dw1_tile(d, dz, x + i0, n, in, m, true, 16);
        }
    }
}

/* ---- the leaf-1 fast path in AVX-512 ----------------------------------------
 * The same tiles (one output x 32 inputs, the same packed panel) as 2
 * vectors of 16, and blocks of up to 32 samples in registers: half the
 * instructions of the AVX2 path, for CPUs whose OpenBLAS kernel is AVX-512
 * too (SkylakeX/Cooperlake: the default mode's dW there is twice as fast as
 * Haswell's). The nodes, and so the bits, are the AVX2 path's. */
__attribute__((target("avx512f"), always_inline)) static inline __m512
z_load(const float *p, __mmask16 m, const bool TAIL)
{
    return TAIL ? _mm512_maskz_loadu_ps(m, p) : _mm512_loadu_ps(p);
}

__attribute__((target("avx512f"), always_inline)) static inline void
z_block4(__m512 out[2], const float *d, const float *x, long in, const __mmask16 m[2],
         const bool TAIL)
{
    const __m512 d0 = _mm512_set1_ps(d[0]), d1 = _mm512_set1_ps(d[1]);
    const __m512 d2 = _mm512_set1_ps(d[2]), d3 = _mm512_set1_ps(d[3]);
    for (int v = 0; v < 2; v++) {
        __m512 a = _mm512_add_ps(_mm512_mul_ps(d0, z_load(x + 16 * v, m[v], TAIL)),
                                 _mm512_mul_ps(d1, z_load(x + in + 16 * v, m[v], TAIL)));
        __m512 b = _mm512_add_ps(_mm512_mul_ps(d2, z_load(x + 2 * in + 16 * v, m[v], TAIL)),
                                 _mm512_mul_ps(d3, z_load(x + 3 * in + 16 * v, m[v], TAIL)));
        out[v] = _mm512_add_ps(a, b);
    }
}

/* out = the subtree of 8, 16, 32 samples: its two halves' subtrees added */
#define Z_HALVES(name, half)                                                                     \
    __attribute__((target("avx512f"), always_inline)) static inline void name(                   \
        __m512 out[2], const float *d, const float *x, long in, const __mmask16 m[2],            \
        const bool TAIL)                                                                         \
    {                                                                                            \
        __m512 h[2];                                                                             \
        half(out, d, x, in, m, TAIL);                                                            \
        half(h, d + BS_OF_##half, x + BS_OF_##half * in, in, m, TAIL);                           \
        for (int v = 0; v < 2; v++) out[v] = _mm512_add_ps(out[v], h[v]);                        \
    }
#define BS_OF_z_block4 4
#define BS_OF_z_block8 8
#define BS_OF_z_block16 16
Z_HALVES(z_block8, z_block4)
Z_HALVES(z_block16, z_block8)
Z_HALVES(z_block32, z_block16)
#undef Z_HALVES

__attribute__((target("avx512f"), always_inline)) static inline void
z_block(__m512 out[2], const float *d, const float *x, long in, const __mmask16 m[2],
        const bool TAIL, const int BS)
{
    if (BS == 4)
        z_block4(out, d, x, in, m, TAIL);
    else if (BS == 8)
        z_block8(out, d, x, in, m, TAIL);
    else if (BS == 16)
        z_block16(out, d, x, in, m, TAIL);
    else
        z_block32(out, d, x, in, m, TAIL);
}

__attribute__((target("avx512f"), always_inline)) static inline void
z_tile(float *dw, const float *d, const float *x, long n, long in, const __mmask16 m[2],
       const bool TAIL, const int BS)
{
    __m512 stack[DW_MAX_LEVELS][2], vals[DW1_SUPER / 4][2], r[2];
    const long super = n < DW1_SUPER ? n : DW1_SUPER, blocks = super / BS;
    long count = 0;
    for (int v = 0; v < 2; v++) r[v] = _mm512_setzero_ps();
    for (long k0 = 0; k0 < n; k0 += super) {
        z_block(vals[0], d + k0, x + k0 * in, in, m, TAIL, BS);
        for (long b = 1; b < blocks; b++)
            z_block(vals[b], d + k0 + BS * b, x + (k0 + BS * b) * in, in, m, TAIL, BS);
        for (long width = 1; width < blocks; width *= 2)
            for (long a = 0; a + width < blocks; a += 2 * width)
                for (int v = 0; v < 2; v++)
                    vals[a][v] = _mm512_add_ps(vals[a][v], vals[a + width][v]);
        for (int v = 0; v < 2; v++) r[v] = vals[0][v];
        int lvl = 0;
        while ((count >> lvl) & 1) {
            for (int v = 0; v < 2; v++) r[v] = _mm512_add_ps(stack[lvl][v], r[v]);
            lvl++;
        }
        for (int v = 0; v < 2; v++) stack[lvl][v] = r[v];
        count++;
    }
    for (int v = 0; v < 2; v++) {
        float *p = dw + 16 * v;
        if (TAIL)
            _mm512_mask_storeu_ps(p, m[v], _mm512_add_ps(_mm512_maskz_loadu_ps(m[v], p), r[v]));
        else
            _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), r[v]));
    }
}

static __mmask16 z_lanes_below(int k)
{
    return k >= 16 ? (__mmask16)0xffff : k <= 0 ? (__mmask16)0 : (__mmask16)((1u << k) - 1);
}

__attribute__((target("avx512f"))) static void z_tiles(float *dw, const float *dzt,
                                                       const float *x, long n, int in, int out,
                                                       long t0, long t1)
{
    __attribute__((aligned(64))) float panel[DW1_PACK * 32];
    const __mmask16 all[2] = {0xffff, 0xffff};
    int packed = -1;
    for (long t = t0; t < t1; t++) {
        const int i0 = (int)(t / out) * 32, o = (int)(t % out);
        const int rem = in - i0;
        const __mmask16 m[2] = {z_lanes_below(rem), z_lanes_below(rem - 16)};
        float *d = dw + (long)o * in + i0;
        const float *dz = dzt + (long)o * n;
        if (n <= DW1_PACK) {
            if (packed != i0) {
                for (long k = 0; k < n; k++)
                    for (int v = 0; v < 2; v++)
                        _mm512_store_ps(panel + k * 32 + 16 * v,
                                        _mm512_maskz_loadu_ps(m[v], x + k * in + i0 + 16 * v));
                packed = i0;
            }
            const __mmask16 *mm = rem >= 32 ? all : m;
            if (n >= 32)
                z_tile(d, dz, panel, n, 32, mm, rem < 32, 32);
            else if (n >= 16)
                z_tile(d, dz, panel, n, 32, mm, true, 16);
            else if (n >= 8)
                z_tile(d, dz, panel, n, 32, mm, true, 8);
            else
                z_tile(d, dz, panel, n, 32, mm, true, 4);
        } else {
            z_tile(d, dz, x + i0, n, in, m, true, 32);
        }
    }
}

/* Tiles [t0, t1) of the (16-input block, output pair) grid, input block
 * major so that neighbouring tiles share their x panel. */
__attribute__((target("avx2,fma"))) static void dw_tree_tiles(float *dw, const float *dzt,
                                                              const float *x, long n, int in,
                                                              int out, long leaf, long t0,
                                                              long t1)
{
    const long L = n / leaf, pairs = (out + 1) / 2;
    const int BL = L >= 4 ? 4 : (int)L;
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (long t = t0; t < t1; t++) {
        const int i0 = (int)(t / pairs) * 16, o = (int)(t % pairs) * 2;
        const int rem = in - i0;
        const bool tail = rem < 16;
        __m256i mask[2] = {_mm256_cmpgt_epi32(_mm256_set1_epi32(rem), idx),
                           _mm256_cmpgt_epi32(_mm256_set1_epi32(rem - 8), idx)};
        const int NO = out - o >= 2 ? 2 : 1;
        float *d = dw + (long)o * in + i0;
        const float *dz = dzt + (long)o * n, *xs = x + i0;
#define DW_CALL(no, t, bl) dw_tile(d, in, dz, n, xs, in, leaf, mask, no, t, bl)
#define DW_BL(no, t)                                                                             \
    do {                                                                                         \
        if (BL == 4)                                                                             \
            DW_CALL(no, t, 4);                                                                   \
        else if (BL == 2)                                                                        \
            DW_CALL(no, t, 2);                                                                   \
        else                                                                                     \
            DW_CALL(no, t, 1);                                                                   \
    } while (0)
        if (NO == 2 && !tail)
            DW_BL(2, false);
        else if (NO == 2)
            DW_BL(2, true);
        else if (!tail)
            DW_BL(1, false);
        else
            DW_BL(1, true);
#undef DW_BL
#undef DW_CALL
    }
}
#endif

void nn_dense_dw_tree(float *dw, const float *dzt, const float *x, long n, int in, int out,
                      long leaf, float *buf, int levels)
{
    if (!nn_whole_subtree(n, leaf)) DT_BUG("leaf mode: %ld samples are not whole leaves of %ld", n, leaf);
#if NN_TREE_AVX2
    if (nn_use_avx512() && leaf == 1 && n >= 4 && nn_tree_levels(n) <= DW_MAX_LEVELS) {
        const long tiles = (long)((in + 31) / 32) * out;
        z_tiles(dw, dzt, x, n, in, out, 0, tiles);
        return;
    }
    if (use_avx2() && leaf == 1 && n >= 4 && nn_tree_levels(n) <= DW_MAX_LEVELS) {
        const long tiles = (long)((in + 31) / 32) * out;
        dw1_tiles(dw, dzt, x, n, in, out, 0, tiles);
        return;
    }
    if (use_avx2() && nn_tree_levels(n / leaf) <= DW_MAX_LEVELS) {
        const long tiles = (long)((in + 15) / 16) * ((out + 1) / 2);
        dw_tree_tiles(dw, dzt, x, n, in, out, leaf, 0, tiles);
        return;
    }
#endif
    dw_tree_portable(dw, dzt, x, n, in, out, leaf, buf, levels);
}

/* ---- 3. the row-invariant GEMM ------------------------------------------------ */
static void rows_gemm_portable(float *C, long ldc, const float *A, long rs_a, long cs_a,
                               const float *B, long ldb, long M, long N, long K)
{
    for (long r = 0; r < M; r++)
        for (long c = 0; c < N; c++) {
            float acc = 0.0f;
            for (long k = 0; k < K; k++) acc = fmaf(A[r * rs_a + k * cs_a], B[k * ldb + c], acc);
            C[r * ldc + c] = acc;
        }
}

#if NN_TREE_AVX2
/* C rows r0..r0+MR, columns c0..c0+8*NV (pointers already offset). */
__attribute__((target("avx2,fma"), always_inline)) static inline void
rows_block(float *C, long ldc, const float *A, long rs_a, long cs_a, const float *B, long ldb,
           long K, const __m256i mask[3], const int MR, const int NV, const bool TAIL)
{
    __m256 acc[4][3];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = _mm256_setzero_ps();
    for (long k = 0; k < K; k++) {
        __m256 b[3];
        const float *bk = B + k * ldb;
        for (int v = 0; v < NV; v++)
            b[v] = TAIL ? _mm256_maskload_ps(bk + 8 * v, mask[v]) : _mm256_loadu_ps(bk + 8 * v);
        for (int r = 0; r < MR; r++) {
            __m256 a = _mm256_broadcast_ss(A + r * rs_a + k * cs_a);
            for (int v = 0; v < NV; v++) acc[r][v] = _mm256_fmadd_ps(a, b[v], acc[r][v]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) {
            if (TAIL)
                _mm256_maskstore_ps(C + r * ldc + 8 * v, mask[v], acc[r][v]);
            else
                _mm256_storeu_ps(C + r * ldc + 8 * v, acc[r][v]);
        }
}

/* Tiles [t0, t1) of the (24-column block, 4-row block) grid, column block
 * major (neighbouring tiles share their B panel); the last row block may
 * be short and runs row by row. */
__attribute__((target("avx2,fma"))) static void rows_gemm_tiles(float *C, long ldc,
                                                                const float *A, long rs_a,
                                                                long cs_a, const float *B,
                                                                long ldb, long M, long N, long K,
                                                                long t0, long t1)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const long row_blocks = (M + 3) / 4;
    for (long t = t0; t < t1; t++) {
        const long c0 = t / row_blocks * 24, rb = t % row_blocks;
        const long rem = N - c0;
        __m256i mask[3];
        for (int v = 0; v < 3; v++)
            mask[v] = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)DT_MIN(rem - 8 * v, 8)), idx);
        const int NV = rem >= 24 ? 3 : (int)((rem + 7) / 8);
        const bool tail = rem < 24;
        for (long r0 = rb * 4; r0 < DT_MIN(rb * 4 + 4, M);) {
            const int MR = M - r0 >= 4 ? 4 : 1;
            float *c = C + r0 * ldc + c0;
            const float *a = A + r0 * rs_a, *b = B + c0;
#define RB(mr, nv, t) rows_block(c, ldc, a, rs_a, cs_a, b, ldb, K, mask, mr, nv, t)
            if (!tail)
                MR == 4 ? RB(4, 3, false) : RB(1, 3, false);
            else if (NV == 3)
                MR == 4 ? RB(4, 3, true) : RB(1, 3, true);
            else if (NV == 2)
                MR == 4 ? RB(4, 2, true) : RB(1, 2, true);
            else
                MR == 4 ? RB(4, 1, true) : RB(1, 1, true);
#undef RB
            r0 += MR;
        }
    }
}
#endif

#if NN_TREE_AVX2
/* The same in AVX-512: rows r0..r0+MR (8 or 1), columns c0..c0+16*NV. */
__attribute__((target("avx512f"), always_inline)) static inline void
z_rows_block(float *C, long ldc, const float *A, long rs_a, long cs_a, const float *B, long ldb,
             long K, const __mmask16 m[3], const int MR, const int NV, const bool TAIL)
{
    __m512 acc[8][3];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    for (long k = 0; k < K; k++) {
        __m512 b[3];
        const float *bk = B + k * ldb;
        for (int v = 0; v < NV; v++)
            b[v] = TAIL ? _mm512_maskz_loadu_ps(m[v], bk + 16 * v) : _mm512_loadu_ps(bk + 16 * v);
        for (int r = 0; r < MR; r++) {
            __m512 a = _mm512_set1_ps(A[r * rs_a + k * cs_a]);
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
        }
    }
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) {
            if (TAIL)
                _mm512_mask_storeu_ps(C + r * ldc + 16 * v, m[v], acc[r][v]);
            else
                _mm512_storeu_ps(C + r * ldc + 16 * v, acc[r][v]);
        }
}

/* Tiles [t0, t1) of the (48-column block, 8-row block) grid. */
__attribute__((target("avx512f"))) static void z_rows_tiles(float *C, long ldc, const float *A,
                                                            long rs_a, long cs_a, const float *B,
                                                            long ldb, long M, long N, long K,
                                                            long t0, long t1)
{
    const long row_blocks = (M + 7) / 8;
    for (long t = t0; t < t1; t++) {
        const long c0 = t / row_blocks * 48, rb = t % row_blocks;
        const long rem = N - c0;
        const __mmask16 m[3] = {z_lanes_below((int)DT_MIN(rem, 16)),
                                z_lanes_below((int)DT_MIN(rem - 16, 16)),
                                z_lanes_below((int)DT_MIN(rem - 32, 16))};
        const int NV = rem >= 48 ? 3 : (int)((rem + 15) / 16);
        const bool tail = rem < 48;
        for (long r0 = rb * 8; r0 < DT_MIN(rb * 8 + 8, M);) {
            const int MR = M - r0 >= 8 ? 8 : 1;
            float *c = C + r0 * ldc + c0;
            const float *a = A + r0 * rs_a, *b = B + c0;
#define ZB(mr, nv, t) z_rows_block(c, ldc, a, rs_a, cs_a, b, ldb, K, m, mr, nv, t)
            if (!tail)
                MR == 8 ? ZB(8, 3, false) : ZB(1, 3, false);
            else if (NV == 3)
                MR == 8 ? ZB(8, 3, true) : ZB(1, 3, true);
            else if (NV == 2)
                MR == 8 ? ZB(8, 2, true) : ZB(1, 2, true);
            else
                MR == 8 ? ZB(8, 1, true) : ZB(1, 1, true);
#undef ZB
            r0 += MR;
        }
    }
}
#endif

void nn_rows_gemm(float *C, long ldc, const float *A, long rs_a, long cs_a, const float *B,
                  long ldb, long M, long N, long K)
{
    if (M <= 0 || N <= 0) return;
#if NN_TREE_AVX2
    if (nn_use_avx512()) {
        const long tiles = (N + 47) / 48 * ((M + 7) / 8);
        z_rows_tiles(C, ldc, A, rs_a, cs_a, B, ldb, M, N, K, 0, tiles);
        return;
    }
    if (use_avx2()) {
        const long tiles = (N + 23) / 24 * ((M + 3) / 4);
        rows_gemm_tiles(C, ldc, A, rs_a, cs_a, B, ldb, M, N, K, 0, tiles);
        return;
    }
#endif
    rows_gemm_portable(C, ldc, A, rs_a, cs_a, B, ldb, M, N, K);
}

void nn_transpose(float *dst, const float *src, long rows, long cols)
{
    /* dst[c][r] = src[r][c] in 16x16 tiles, so both sides stay in cache lines */
    for (long r0 = 0; r0 < rows; r0 += 16)
        for (long c0 = 0; c0 < cols; c0 += 16) {
            long r1 = DT_MIN(r0 + 16, rows), c1 = DT_MIN(c0 + 16, cols);
            for (long c = c0; c < c1; c++)
                for (long r = r0; r < r1; r++) dst[c * rows + r] = src[r * cols + c];
        }
}
