/* dense.c - fully connected layer over a batch, on OpenBLAS sgemm.
 *
 * W is [out][in] row-major (PyTorch), so with x [B][in] the batch forward is
 * one GEMM y = x W^T (a matrix-vector product per row for tiny batches),
 * followed by a single epilogue pass adding the bias and
 * applying a fused activation. Backward is two GEMMs: dW += dz^T x (beta 1:
 * accumulation, as the contract asks) and dx = dz W (beta 0), plus db +=
 * column sums of dz. The input of a dense layer after a conv/pool layer is
 * the flattened NCHW sample, so "flatten" costs nothing. */
#include <cblas.h>
#include <limits.h>
#include <stdio.h>

#include "layers.h"

/* Up to this many rows, one matrix-vector product per row beats the GEMM:
 * sgemm packs all of W for every call, which a batch of 1-4 samples (a
 * strong-scaling shard at 32-128 ranks) cannot amortise. 784x256, one
 * thread, AMD Zen 5 with OpenBLAS 0.3.21's Haswell kernels: forward 124 us
 * by sgemm against 17-22 us by sgemv at 1 row, 124-134 against 36-46 at 2,
 * 106-123 against 74-93 at 4; dx alike. dW stays one GEMM (sger is slower
 * from 1 row on). */
#ifdef DTRAIN_SMPI
/* Under SimGrid, 128 simulated ranks share one process, and there sgemv
 * at one row measured 2.3 ms of charged compute per forward at P = 128
 * (against 0.12 ms at P = 8, and 0.23 ms for sgemm at P = 128): an
 * artefact of the simulation, not of a node; the simulated build keeps
 * the GEMM, so that its figures stay comparable with the earlier ones. */
#define GEMV_MAX_ROWS 0
#else
#define GEMV_MAX_ROWS 4
#endif

void nn_dense_forward(float *y, const float *x, const float *w, const float *b, long B, int in,
                      int out, nn_act act)
{
    if (B <= 0) return;
    if (B <= GEMV_MAX_ROWS)
        for (long r = 0; r < B; r++)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, w, in, x + r * in, 1, 0.0f,
                        y + r * out, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, out, in, 1.0f, x, in, w, in,
                    0.0f, y, out);
    nn_act_bias_rows(act, y, b, B, out);
}

void nn_dense_backward(float *dx, float *dw, float *db, float *dy, const float *y,
                       const float *x, const float *w, long B, int in, int out, nn_act act)
{
    if (B <= 0) return;
    if (act != NN_ACT_NONE) nn_act_backward(act, dy, dy, y, B * out); /* dy becomes dz */
    for (long r = 0; r < B; r++) {
        const float *dr = dy + r * out;
        for (int j = 0; j < out; j++) db[j] += dr[j];
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, (int)B, 1.0f, dy, out, x, in,
                1.0f, dw, in);
    if (dx && B <= GEMV_MAX_ROWS)
        for (long r = 0; r < B; r++)
            cblas_sgemv(CblasRowMajor, CblasTrans, out, in, 1.0f, w, in, dy + r * out, 1, 0.0f,
                        dx + r * in, 1);
    else if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)B, in, out, 1.0f, dy, out, w,
                    in, 0.0f, dx, in);
}

/* ---- reproducible mode (leaf > 0; see tree.c) ----------------------------
 * forward  y^T [out][B] = W x^T by nn_rows_gemm on x^T (each element one
 *          chain over the inputs), transposed back, then the same epilogue;
 * backward db and dW by the leaf tree; dx = dz W by nn_rows_gemm.
 * Workspace: forward x^T and y^T; backward dz^T and the tree's buffer. */
size_t nn_dense_leaf_workspace(long max_batch, int in, int out, int levels)
{
    size_t mb = (size_t)max_batch, fwd = ((size_t)in + (size_t)out) * mb;
    size_t bwd = (size_t)out * mb + ((size_t)levels + 1) * (size_t)DT_MAX(in, out);
    return DT_MAX(fwd, bwd);
}

void nn_dense_forward_leaf(float *y, const float *x, const float *w, const float *b, long B,
                           int in, int out, nn_act act, float *ws)
{
    if (B <= 0) return;
    float *xt = ws, *yt = ws + (size_t)in * (size_t)B;
    nn_transpose(xt, x, B, in);
    nn_rows_gemm(yt, B, w, in, 1, xt, B, out, B, in);
    nn_transpose(y, yt, out, B);
    nn_act_bias_rows(act, y, b, B, out);
}

void nn_dense_backward_leaf(float *dx, float *dw, float *db, float *dy, const float *y,
                            const float *x, const float *w, long B, int in, int out, nn_act act,
                            long leaf, float *ws, int levels)
{
    if (B <= 0) return;
    if (act != NN_ACT_NONE) nn_act_backward(act, dy, dy, y, B * out); /* dy becomes dz */
    float *dzt = ws, *buf = ws + (size_t)out * (size_t)B;
    nn_bias_grads_tree(db, dy, B, out, leaf, buf, levels);
    nn_transpose(dzt, dy, B, out);
    nn_dense_dw_tree(dw, dzt, x, B, in, out, leaf, buf, levels);
    if (dx) nn_rows_gemm(dx, in, dy, out, 1, w, in, B, in, out);
}

/* ---- the kind ------------------------------------------------------------ */
static int dense_setup(nn_layer *l, char *why, size_t why_size)
{
    int units = l->spec.units;
    if (units < 1) {
        snprintf(why, why_size, "needs a positive number of units, got %d", units);
        return -1;
    }
    if (l->in_size > INT_MAX) { /* cannot happen: the model caps sizes */
        snprintf(why, why_size, "input of %ld values is too large", l->in_size);
        return -1;
    }
    l->out = (nn_shape){units, 1, 1, true};
    l->n_w = (size_t)units * (size_t)l->in_size;
    l->n_b = (size_t)units;
    l->fan_in = l->in_size;
    l->fan_out = units;
    l->macs = (double)units * (double)l->in_size;
    return 0;
}

static void dense_fwd(nn_layer *l, long n)
{
    if (l->leaf)
        nn_dense_forward_leaf(l->y, l->x, l->w, l->b, n, (int)l->in_size, (int)l->out_size,
                              l->act, l->leaf_ws);
    else
        nn_dense_forward(l->y, l->x, l->w, l->b, n, (int)l->in_size, (int)l->out_size, l->act);
}

static void dense_bwd(nn_layer *l, long n)
{
    if (l->leaf)
        nn_dense_backward_leaf(l->dx, l->dw, l->db, l->dy, l->y, l->x, l->w, n,
                               (int)l->in_size, (int)l->out_size, l->act, l->leaf, l->leaf_ws,
                               l->leaf_levels);
    else
        nn_dense_backward(l->dx, l->dw, l->db, l->dy, l->y, l->x, l->w, n, (int)l->in_size,
                          (int)l->out_size, l->act);
}

static size_t dense_leaf_ws(const nn_layer *l)
{
    return nn_dense_leaf_workspace(l->max_batch, (int)l->in_size, (int)l->out_size,
                                   l->leaf_levels);
}

static void dense_label(const nn_layer *l, char *buf, size_t size)
{
    snprintf(buf, size, "dense %d", l->spec.units);
}

const nn_kind nn_kind_dense = {.name = "dense", .fuses_act = true, .setup = dense_setup,
                               .forward = dense_fwd, .backward = dense_bwd,
                               .label = dense_label, .leaf_workspace = dense_leaf_ws};
