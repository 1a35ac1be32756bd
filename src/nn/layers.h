/* layers.h - the nn module's inside: the per-kind kernels (shapes in the
 * signature, llm.c style), the layer-kind table, and the model struct.
 * Internal to src/nn; tests include it to call the kernels directly.
 *
 * Kernel conventions (all tensors row-major float, batch first):
 *  - x is a layer's input, y its output, dy = dL/dy, dx = dL/dx.
 *  - backward ACCUMULATES (+=) into dw and db (gradients of the SUM of the
 *    per-sample losses) and OVERWRITES dx. dx == NULL skips the input
 *    gradient (the first parameterised layer has nobody to pass it to).
 *  - An activation `act` fused into dense/conv is applied to the output in
 *    forward (y = act(Wx + b)); in backward the kernel first forms
 *    dz = dy * act'(y) from the post-activation y. Activation derivatives
 *    are written in terms of y only (relu: y > 0, sigmoid: y(1-y),
 *    tanh: 1-y^2), which is what lets activations run in place.
 *  - Nothing here allocates; conv takes a caller-provided workspace. */
#ifndef DTRAIN_NN_LAYERS_H
#define DTRAIN_NN_LAYERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtrain/nn.h"

typedef enum { NN_ACT_NONE, NN_ACT_RELU, NN_ACT_SIGMOID, NN_ACT_TANH } nn_act;

/* ---- activation.c ------------------------------------------------------- */
/* y = act(x) elementwise; y may equal x. */
void nn_act_forward(nn_act act, float *y, const float *x, long n);
/* dx = dy * act'(.) with y the forward OUTPUT; dx may equal dy.
 * NN_ACT_NONE copies (or does nothing when dx == dy). */
void nn_act_backward(nn_act act, float *dx, const float *dy, const float *y, long n);
/* y[r][j] = act(y[r][j] + b[j]) in place: the dense epilogue. */
void nn_act_bias_rows(nn_act act, float *y, const float *b, long rows, int cols);
/* y[i] = act(z[i] + b) for one scalar bias: the conv epilogue (y may equal z). */
void nn_act_bias_scalar(nn_act act, float *y, const float *z, float b, long n);

/* ---- dense.c: W [out][in], y = x W^T + b over a batch of B rows --------- */
void nn_dense_forward(float *y, const float *x, const float *w, const float *b, long B, int in,
                      int out, nn_act act);
/* dy is turned into dz in place when act != NONE (y is then required). */
void nn_dense_backward(float *dx, float *dw, float *db, float *dy, const float *y,
                       const float *x, const float *w, long B, int in, int out, nn_act act);
/* The same, with ready(ctx, ...) called on each part of the layer's range
 * [off, off + in*out + out) as it becomes final, from the end (db) to the
 * start (dW in blocks of rows from the last); B = 0 reports it whole. */
void nn_dense_backward_ready(float *dx, float *dw, float *db, float *dy, const float *y,
                             const float *x, const float *w, long B, int in, int out, nn_act act,
                             dt_grad_ready_fn ready, void *ctx, size_t off);

/* ---- conv.c: NCHW, weights [out_c][in_c][kh][kw], cross-correlation ----- */
typedef struct {
    int c, h, w;                    /* input channels and plane */
    int out_c, kh, kw, stride, pad; /* zero padding on every side */
    int oh, ow;                     /* floor((h + 2 pad - kh) / stride) + 1, same for w */
} nn_conv_geom;

/* Fill oh, ow from the rest; 0, or -1 when the kernel does not fit. */
int nn_conv_geom_init(nn_conv_geom *g);
/* Floats of workspace the kernels need when they im2col `chunk` samples
 * at a time (chunk >= 1; results do not depend on it). */
size_t nn_conv_workspace(const nn_conv_geom *g, long chunk);
/* True when this geometry runs the direct kernels (1 input channel, stride 1,
 * kw <= 8, a CPU with AVX2+FMA) instead of im2col + sgemm: forward always,
 * backward when dx is NULL (see conv.c). */
bool nn_conv_is_direct(const nn_conv_geom *g);
/* whether its dx (outside leaf mode) is a direct kernel too, not sgemm + col2im */
bool nn_conv_dx_is_direct(const nn_conv_geom *g);
void nn_conv_forward(float *y, const float *x, const float *w, const float *b, long B,
                     const nn_conv_geom *g, nn_act act, float *ws, long chunk);
/* dy is read-only here (dz lives in the workspace). */
void nn_conv_backward(float *dx, float *dw, float *db, const float *dy, const float *y,
                      const float *x, const float *w, long B, const nn_conv_geom *g, nn_act act,
                      float *ws, long chunk);

/* ---- maxpool.c: per channel plane h x w -> oh x ow ---------------------- */
/* idx[n][c][i][j] = offset inside the input plane of the window's FIRST
 * maximum in row-major order (what backward routes the gradient to). */
void nn_maxpool_forward(float *y, int32_t *idx, const float *x, long B, int c, int h, int w,
                        int size, int stride, int oh, int ow);
/* dx is overwritten (zeros outside the maxima; overlapping windows add). */
void nn_maxpool_backward(float *dx, const float *dy, const int32_t *idx, long B, int c, int h,
                         int w, int size, int stride, int oh, int ow);

/* ---- softmax_ce.c: the loss head on logits z [B][C] --------------------- */
/* Adds sum over samples of logsumexp(z) - z[label] (in double) to *loss_sum
 * and the number of samples whose first argmax equals the label to *correct
 * (either may be NULL). */
void nn_softmax_ce_forward(const float *z, const int *labels, long B, int C, double *loss_sum,
                           long *correct);
/* dz = softmax(z) - onehot(label): the gradient of the SUMMED loss. */
void nn_softmax_ce_backward(float *dz, const float *z, const int *labels, long B, int C);

/* ---- tree.c: reproducible mode (dt_model_set_leaf; see tree.c) ---------- */
/* Levels of a counter over `leaves` leaves: ceil(log2(leaves)) + 1. */
int nn_tree_levels(long leaves);
/* n is a multiple of leaf and n / leaf a power of two. */
bool nn_whole_subtree(long n, long leaf);
/* A binary counter over leaves of `len` floats in buf [(levels + 1) * len]:
 * fill nn_tree_leaf() (NOT zeroed), push, repeat; finish adds the root
 * (the tree's T(0, L); L must be a power of two) into dst. */
typedef struct {
    float *buf;
    size_t len;
    int levels;
    long count;
} nn_tree;
void nn_tree_begin(nn_tree *t, float *buf, size_t len, int levels);
float *nn_tree_leaf(nn_tree *t);
void nn_tree_push(nn_tree *t);
void nn_tree_finish(nn_tree *t, float *dst);
/* T(0, leaves) of leaf_sums in double (overwrites them); leaves a power of 2. */
double nn_tree_sum_double(double *leaf_sums, long leaves);
/* db[o] += T over leaves of the leaf's sequential sum of dz[k][o];
 * buf: (levels + 1) * out floats. */
void nn_bias_grads_tree(float *db, const float *dz, long n, int out, long leaf, float *buf,
                        int levels);
/* dw[o][i] += T over leaves of the leaf's sequential sum of the rounded
 * products dzt[o][k] * x[k][i] (dzt is dz transposed, [out][n]); n must be
 * a whole subtree. buf: (levels + 1) * in floats (portable path). */
void nn_dense_dw_tree(float *dw, const float *dzt, const float *x, long n, int in, int out,
                      long leaf, float *buf, int levels);
/* C[r][c] = sum_k A(r,k) B[k][c] (r < M, c < N; A(r,k) = A[r*rs_a + k*cs_a]),
 * each element one fmaf chain in ascending k from 0: bits independent of M,
 * N, and the element's position. Overwrites C. */
void nn_rows_gemm(float *C, long ldc, const float *A, long rs_a, long cs_a, const float *B,
                  long ldb, long M, long N, long K);
/* dst [cols][rows] = src [rows][cols]^T */
void nn_transpose(float *dst, const float *src, long rows, long cols);
/* Tests: use at most this instruction set in the leaf kernels and in the
 * AVX-512 convolution kernels (all give the same bits); NN_ISA_AVX512, the
 * best the CPU has, is the default. nn_isa: the set in use now. */
enum { NN_ISA_PORTABLE, NN_ISA_AVX2, NN_ISA_AVX512 };
void nn_leaf_limit_isa(int max_isa);
int nn_isa(void);
static inline bool nn_use_avx512(void) { return nn_isa() >= NN_ISA_AVX512; }
/* The 16-lane mask of lanes [0, n), n clamped to [0, 16] (an __mmask16). */
static inline unsigned short nn_lanes16(long n)
{
    return n >= 16 ? 0xFFFFu : n <= 0 ? 0u : (unsigned short)((1u << n) - 1);
}

/* Leaf-mode variants of the kernels (a layer with l->leaf > 0 calls these).
 * ws: the layer's leaf workspace (nn_dense_leaf_workspace / nn_conv_leaf_workspace). */
size_t nn_dense_leaf_workspace(long max_batch, int in, int out, int levels);
void nn_dense_forward_leaf(float *y, const float *x, const float *w, const float *b, long B,
                           int in, int out, nn_act act, float *ws);
void nn_dense_backward_leaf(float *dx, float *dw, float *db, float *dy, const float *y,
                            const float *x, const float *w, long B, int in, int out, nn_act act,
                            long leaf, float *ws, int levels);
size_t nn_conv_leaf_workspace(const nn_conv_geom *g, long chunk, int levels);
/* forward with every GEMM row-invariant (the direct kernels are per sample) */
void nn_conv_forward_leaf(float *y, const float *x, const float *w, const float *b, long B,
                          const nn_conv_geom *g, nn_act act, float *ws, long chunk);
/* backward leaf by leaf: each leaf's dW/db into a zeroed buffer by the
 * ordinary kernel (GEMMs row-invariant), then the tree; B a whole subtree. */
void nn_conv_backward_leaf(float *dx, float *dw, float *db, const float *dy, const float *y,
                           const float *x, const float *w, long B, const nn_conv_geom *g,
                           nn_act act, float *ws, long chunk, long leaf, float *tree_ws,
                           int levels);
/* per-sample cross-entropies (the terms nn_softmax_ce_forward sums) */
void nn_softmax_ce_losses(const float *z, const int *labels, long B, int C, double *losses,
                          long *correct);

/* ---- the layer table ----------------------------------------------------
 * A kind is one nn_kind (defined next to its kernels) plus one line in
 * model.c's table. setup() infers and validates the output shape and
 * fills the layer's sizes; forward()/backward() adapt the layer record to
 * the kernel's signature. */
typedef struct {
    int c, h, w;
    bool flat; /* after dense/flatten: a vector of c values, not an image */
} nn_shape;

typedef struct nn_layer nn_layer;

typedef struct {
    const char *name;   /* as in the config: "dense", "conv", ... */
    nn_act act;         /* activation kinds: which one; NONE otherwise */
    bool in_place;      /* output is the input buffer (activations, flatten) */
    bool fuses_act;     /* a following activation can run in this layer's epilogue */
    /* l->spec, l->in, l->in_is_input are set; fill l->out, n_w, n_b, fan_in,
     * fan_out, macs, ws_floats, n_idx. 0, or -1 with what is wrong in why. */
    int (*setup)(nn_layer *l, char *why, size_t why_size);
    void (*forward)(nn_layer *l, long n);
    void (*backward)(nn_layer *l, long n);
    /* Backward of n >= 0 samples that reports the layer's parameter
     * gradients itself (dt_grad_ready_fn: from the end of its range towards
     * the start, every float once); NULL: backward, then the whole range. */
    void (*backward_ready)(nn_layer *l, long n, dt_grad_ready_fn ready, void *ctx);
    /* "conv 6x5x5 s1 p2", "dense 256", "relu" */
    void (*label)(const nn_layer *l, char *buf, size_t size);
    /* floats of leaf-mode workspace (l->leaf_levels set); NULL: none */
    size_t (*leaf_workspace)(const nn_layer *l);
} nn_kind;

extern const nn_kind nn_kind_dense, nn_kind_relu, nn_kind_sigmoid, nn_kind_tanh,
    nn_kind_flatten, nn_kind_conv, nn_kind_maxpool;

/* Samples per im2col chunk: as many as keep one chunk's columns within this
 * many floats (256 KB: col and Z stay in L2). Measured on LeNet at batch
 * 128, 1 thread: chunks of 2-8 samples beat 1 (wider GEMMs) and beat 16-128
 * (col falls out of cache) by 1.3-2x on conv1; see conv.c. */
#define NN_CONV_COL_BUDGET (1L << 16)

struct nn_layer {
    const nn_kind *kind;
    dt_layer_spec spec;
    nn_shape in, out;
    long in_size, out_size; /* floats per sample */
    long max_batch;         /* samples per call at most (set before setup) */
    bool in_is_input;       /* reads the model input (nothing before but flatten) */
    bool need_dx;           /* some parameterised layer lies before this one */
    bool fused;             /* activation computed by the previous layer's epilogue */
    nn_act act;             /* activation fused into this layer */

    size_t off, n_w, n_b;   /* weights at off, bias at off + n_w (arena floats) */
    long fan_in, fan_out;
    double macs;            /* multiply-adds of one sample's forward */
    size_t ws_floats;       /* conv workspace need */
    size_t n_idx;           /* maxpool argmax entries per sample */
    nn_conv_geom conv;
    long chunk;             /* conv: samples per im2col chunk */
    long leaf;              /* reproducible mode: samples per leaf; 0 off */
    int leaf_levels;        /* levels of the leaf counter at max_batch */
    float *leaf_ws;         /* leaf-mode workspace (shared, the model's) */

    float *w, *b, *dw, *db;
    const float *x;         /* input (set by each forward) */
    float *y;               /* output; the input buffer for in-place kinds */
    float *dx, *dy;         /* dx == dy for in-place kinds; dx NULL if !need_dx */
    int32_t *idx;
    float *ws;
};

struct dt_model {
    int n_layers;
    nn_layer layers[DT_MAX_LAYERS];
    int first_param; /* backward stops here */
    nn_shape input;
    long input_size, max_batch;
    int outputs;
    size_t n_params;
    double flops;
    float *params, *grads; /* the two arenas (64-byte aligned) */
    bool grads_owned;      /* false after dt_model_bind_grads */
    float *acts;           /* every non-in-place layer's output, max_batch rows */
    float *dbuf[2];        /* ping-pong gradient buffers for backward */
    int32_t *idx;          /* maxpool argmax indices */
    float *ws;             /* conv im2col workspace, shared */
    int *labels;           /* copy of the last forward's labels */
    bool have_labels;
    long n;                /* samples of the last forward; -1 before any */
    long leaf;             /* reproducible mode: samples per leaf; 0 off */
    float *leaf_ws;        /* its workspace (max over layers) */
    double *sample_loss;   /* its per-sample losses, max_batch */
    const float *logits;   /* output of the last layer (set by forward) */
};

#endif
