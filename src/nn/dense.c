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

/* Backward in three parts: dy becomes dz and db += its column sums; dx =
 * dz W; dW rows [j0, j1) += dz[:, j0:j1]^T x. */
static void dense_dz_db(float *db, float *dy, const float *y, long B, int out, nn_act act)
{
    if (act != NN_ACT_NONE) nn_act_backward(act, dy, dy, y, B * out);
    for (long r = 0; r < B; r++) {
        const float *dr = dy + r * out;
        for (int j = 0; j < out; j++) db[j] += dr[j];
    }
}

static void dense_dx(float *dx, const float *dz, const float *w, long B, int in, int out)
{
    if (B <= GEMV_MAX_ROWS)
        for (long r = 0; r < B; r++)
            cblas_sgemv(CblasRowMajor, CblasTrans, out, in, 1.0f, w, in, dz + r * out, 1, 0.0f,
                        dx + r * in, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)B, in, out, 1.0f, dz, out, w,
                    in, 0.0f, dx, in);
}

static void dense_dw_rows(float *dw, const float *dz, const float *x, long B, int in, int out,
                          int j0, int j1)
{
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, j1 - j0, in, (int)B, 1.0f, dz + j0, out,
                x, in, 1.0f, dw + (size_t)j0 * (size_t)in, in);
}

void nn_dense_backward(float *dx, float *dw, float *db, float *dy, const float *y,
                       const float *x, const float *w, long B, int in, int out, nn_act act)
{
    if (B <= 0) return;
    dense_dz_db(db, dy, y, B, out, act); /* dy becomes dz */
    dense_dw_rows(dw, dy, x, B, in, out, 0, out);
    if (dx) dense_dx(dx, dy, w, B, in, out);
}

/* The same backward, with the parameter gradients reported as they become
 * final, from the end of the layer's range towards its start: db, then dW
 * in blocks of rows from the last. The first layer's dW is most of an
 * MLP's gradient (784x256 of 269k) and is computed last; reported whole,
 * none of it could travel before backward ends. In blocks, the buckets it
 * spans start one by one while the rest is computed. A block is the same
 * GEMM on fewer rows, starting at a multiple of 48 of them: OpenBLAS's
 * sgemm kernels tile rows by 16 (SkylakeX, Cooperlake) or 24 (Haswell,
 * Zen), and a block that cuts a tile changes the bits of its elements
 * (measured: Haswell, 16- or 80-row blocks; 24 to 240 in steps of 24 are
 * exact on every x86-64 kernel of OpenBLAS 0.3.21 tried). */
enum { DENSE_READY_FLOATS = 1 << 16, DENSE_ROW_TILE = 48 };

void nn_dense_backward_ready(float *dx, float *dw, float *db, float *dy, const float *y,
                             const float *x, const float *w, long B, int in, int out, nn_act act,
                             dt_grad_ready_fn ready, void *ctx, size_t off)
{
    const size_t n_w = (size_t)in * (size_t)out;
    if (B <= 0) {
        ready(ctx, off, n_w + (size_t)out);
        return;
    }
    dense_dz_db(db, dy, y, B, out, act); /* dy becomes dz */
    ready(ctx, off + n_w, (size_t)out);
    if (dx) dense_dx(dx, dy, w, B, in, out);
    const int rows = DT_MAX(DENSE_ROW_TILE, DENSE_READY_FLOATS / in / DENSE_ROW_TILE * DENSE_ROW_TILE);
    for (int j1 = out, j0; j1 > 0; j1 = j0) {
        j0 = (j1 - 1) / rows * rows; /* blocks aligned from row 0, as the whole GEMM tiles */
        dense_dw_rows(dw, dy, x, B, in, out, j0, j1);
        ready(ctx, off + (size_t)j0 * (size_t)in, (size_t)(j1 - j0) * (size_t)in);
    }
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

/* Reproducible mode reports the layer whole (its tree kernels are not cut). */
static void dense_bwd_ready(nn_layer *l, long n, dt_grad_ready_fn ready, void *ctx)
{
    if (l->leaf) {
        if (n > 0) dense_bwd(l, n);
        ready(ctx, l->off, l->n_w + l->n_b);
        return;
    }
    nn_dense_backward_ready(l->dx, l->dw, l->db, l->dy, l->y, l->x, l->w, n, (int)l->in_size,
                            (int)l->out_size, l->act, ready, ctx, l->off);
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
                               .backward_ready = dense_bwd_ready,
                               .label = dense_label, .leaf_workspace = dense_leaf_ws};
