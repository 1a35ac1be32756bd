/* nn.h - layers, their forward/backward, and the parameter/gradient arenas.
 *
 * A model is a list of layers built from dt_layer_spec items (model.layers
 * of the config) on an input shape [C, H, W]. All parameters live in one
 * 64-byte aligned float arena, the gradients in a second arena with the same
 * layout (layer by layer in forward order; within a layer the weights, then
 * the bias), so one allreduce covers the whole model and optimizers are flat
 * loops. Layouts follow PyTorch (tests/reference/SPEC.md): dense W is [out][in] row-major,
 * y = W x + b; conv is NCHW with weights [out_c][in_c][kh][kw]. A dense
 * layer after a conv/pool layer flattens implicitly. The last layer's
 * outputs are the class logits, trained with softmax cross-entropy.
 *
 * Activations and workspaces for max_batch samples are allocated once by
 * dt_model_create; forward, backward and evaluation allocate nothing.
 * The module knows nothing of MPI or optimizers. */
#ifndef DTRAIN_NN_H
#define DTRAIN_NN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtrain/common.h"

#define DT_MAX_LAYERS 64

typedef enum {
    DT_LAYER_DENSE,
    DT_LAYER_RELU,
    DT_LAYER_SIGMOID,
    DT_LAYER_TANH,
    DT_LAYER_FLATTEN,
    DT_LAYER_CONV,
    DT_LAYER_MAXPOOL,
    DT_LAYER_KIND_COUNT
} dt_layer_kind;

/* The kind's name as the config spells it ("dense", "relu", ...); "?" out of
 * range. */
const char *dt_layer_str(dt_layer_kind kind);

/* One item of model.layers. Fields that do not apply to the kind are 0. */
typedef struct {
    dt_layer_kind kind;
    int units;                /* dense */
    int out_channels, kernel; /* conv */
    int stride, pad;          /* conv and maxpool (stride) */
    int size;                 /* maxpool */
    int line, col;            /* position in the config file (0: from --set) */
} dt_layer_spec;

typedef enum { DT_INIT_HE, DT_INIT_XAVIER } dt_init_kind;

typedef struct dt_model dt_model;

/* Build the model: infer every layer's shape, allocate the arenas and the
 * activation buffers for up to max_batch samples. A layer list whose shapes
 * do not fit (a kernel larger than its input, a pool that leaves nothing, no
 * layers, an activation with nothing to act on, a last layer with fewer than
 * 2 outputs) is DT_ECONFIG with a message of the form
 *   "<source>:<line>:<col>: model.layers[3] (conv): kernel 5 is larger than its input 1x4x4"
 * (source is the config file name; the position part is left out when the
 * spec has line 0). */
dt_status dt_model_create(const dt_layer_spec *layers, int n_layers, const int input[3],
                          long max_batch, const char *source, dt_model **out,
                          dt_error *err);
void dt_model_free(dt_model *m);

size_t dt_model_param_count(const dt_model *m);
float *dt_model_params(dt_model *m); /* the parameter arena */
float *dt_model_grads(dt_model *m);  /* the gradient arena, same layout */
/* Use the caller's gradient arena (n_params floats, 64-byte aligned, the
 * layout of dt_model_grads) from now on; the model's own is freed, the
 * caller's stays the caller's. A trainer that reduces more than the
 * gradients in one exchange allocates [gradients | its own floats]. */
void dt_model_bind_grads(dt_model *m, float *grads);
long dt_model_input_size(const dt_model *m); /* C*H*W */
int dt_model_outputs(const dt_model *m);     /* number of logits */
long dt_model_max_batch(const dt_model *m);
/* The parameters of model.layers[layer] in PyTorch's shapes (the
 * safetensors export and import name them "<layer>.weight" and
 * "<layer>.bias"): returns 0 for a layer without parameters, else 2 and
 * out[0] = the weight (dense [out, in] with `in` the flattened input,
 * conv [out_c, in_c, kh, kw]), out[1] = the bias [out]; each at `offset`
 * floats into the parameter arena, `count` floats long. */
typedef struct {
    size_t offset, count;
    int ndim;
    long shape[4];
} dt_param_tensor;
int dt_model_layer_tensors(const dt_model *m, int layer, dt_param_tensor out[2]);
/* Multiply-adds x 2 of one sample's forward + backward pass (for GFLOP/s). */
double dt_model_flops_per_sample(const dt_model *m);
/* One line per layer ("conv 6x5x5 s1 p2: 1x28x28 -> 6x28x28, 156 params")
 * written into buf; used by --check and the start-up log. */
void dt_model_describe(const dt_model *m, char *buf, size_t size);

/* Weights from the seed (He: normal with std sqrt(2/fan_in); Xavier: uniform
 * in +-sqrt(6/(fan_in+fan_out))), biases 0. A pure function of (seed,
 * layout): every rank derives the same values without communication. */
void dt_model_init_params(dt_model *m, dt_init_kind init, uint64_t seed);

/* Forward n <= max_batch samples x[n][input_size] with labels y[n]; keeps
 * the activations for dt_model_backward. Adds the summed cross-entropy of the
 * n samples to *loss_sum and the number whose argmax equals the label to
 * *correct (either may be NULL). */
void dt_model_forward(dt_model *m, const float *x, const int *y, long n, double *loss_sum,
                      long *correct);

/* Called by backward as soon as a range [offset, offset+count) of the
 * gradient arena (in floats) is final: ranges follow each other from the
 * end of the arena to its start, each float once. A layer is one range or
 * several (a dense layer: its bias, then its weights in blocks of rows
 * from the last). Lets comm start a bucket's allreduce early. */
typedef void (*dt_grad_ready_fn)(void *ctx, size_t offset, size_t count);

/* Backward of the *summed* loss of the last forward's n samples: ACCUMULATES
 * (+=) into the gradient arena (zero it first with dt_model_zero_grads).
 * ready may be NULL. */
void dt_model_backward(dt_model *m, dt_grad_ready_fn ready, void *ctx);
void dt_model_zero_grads(dt_model *m);

/* Logits of the last forward, n x outputs (for tests). */
const float *dt_model_logits(const dt_model *m);

/* Reproducible mode: leaf_samples > 0 switches it on, 0 off (default).
 * The batch is cut into leaves of leaf_samples consecutive samples. For a
 * forward/backward of n samples, n a multiple of the leaf and L = n / leaf a
 * power of two (a "whole subtree"; backward of anything else is a bug):
 *  - every parameter-gradient element backward accumulates is T(0, L),
 *    T(a, b) = T(a, mid) + T(mid, b), mid = (a+b)/2, one float add, T(a, a+1)
 *    the gradient of leaf a alone, computed from that leaf's samples only
 *    (not n, not its position, not the BLAS thread count). So rank r of P
 *    holding samples [r n, (r+1) n) holds the tree's node over its leaves,
 *    and combining ranks pairwise at distance 1, 2, 4, ... finishes the tree;
 *  - forward's *loss_sum += the same tree in double over the leaves'
 *    sequential double sums; for n not a whole subtree (evaluation chunks)
 *    the plain sequential sum;
 *  - every sample's logits, loss, correctness, activations and input
 *    gradients are bit-identical whatever n, the other samples and the
 *    BLAS thread count (leaf mode computes its GEMMs itself).
 * A leaf larger than max_batch or negative is DT_ECONFIG; out of memory for
 * the workspace DT_EINTERNAL (the model then stays in the default mode).
 * Allocates once here; forward and backward still allocate nothing. */
dt_status dt_model_set_leaf(dt_model *m, long leaf_samples, dt_error *err);
long dt_model_leaf(const dt_model *m); /* 0: default mode */

/* The start-up self-check of reproducible mode: on a synthetic batch of the
 * largest whole subtree that fits max_batch, the gradients and loss equal
 * bit for bit the sum of its two halves computed alone, every sample's
 * logits equal those computed alone, and (when this process runs several
 * BLAS threads) those of one thread. false: this build or machine would
 * train a silently non-reproducible model; the trainer must stop. Leaves
 * the gradient arena as it found it; the next backward needs a new forward.
 * Allocates (start-up only). In the default mode (leaf 0) it checks the
 * same with leaves of 1 and is expected to fail. */
bool dt_model_rows_invariant(dt_model *m);

#endif
