/* activation.c - relu, sigmoid, tanh: elementwise kernels and their layer
 * kinds.
 *
 * The switch on the activation sits outside each loop, so every loop is a
 * flat, branch-free (relu: vectorised max/select) pass; there is no
 * per-element function pointer. Derivatives use the forward OUTPUT y:
 * relu'(x) = [y > 0] (so relu'(0) = 0), sigmoid' = y(1-y), tanh' = 1-y^2.
 * That makes the kinds in-place (output buffer == input buffer), and lets
 * dense/conv run a following activation in their epilogue ("fused"): the
 * activation layer is then skipped by the model, and the parameterised
 * layer applies act in forward and act' at the start of its backward. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "layers.h"

void nn_act_forward(nn_act act, float *y, const float *x, long n)
{
    switch (act) {
    case NN_ACT_NONE:
        if (y != x) memmove(y, x, (size_t)n * sizeof *y);
        break;
    case NN_ACT_RELU:
        for (long i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case NN_ACT_SIGMOID:
        for (long i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    case NN_ACT_TANH:
        for (long i = 0; i < n; i++) y[i] = tanhf(x[i]);
        break;
    }
}

void nn_act_backward(nn_act act, float *dx, const float *dy, const float *y, long n)
{
    switch (act) {
    case NN_ACT_NONE:
        if (dx != dy) memmove(dx, dy, (size_t)n * sizeof *dx);
        break;
    case NN_ACT_RELU:
        /* dy[i] is loaded whatever y[i] is, so this is a select, not a
         * branch: GCC vectorises it (the branchy form mispredicted on the
         * random sign of y and ran at ~5 cycles per element) */
        for (long i = 0; i < n; i++) {
            float d = dy[i];
            dx[i] = y[i] > 0.0f ? d : 0.0f;
        }
        break;
    case NN_ACT_SIGMOID:
        for (long i = 0; i < n; i++) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
        break;
    case NN_ACT_TANH:
        for (long i = 0; i < n; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
        break;
    }
}

void nn_act_bias_rows(nn_act act, float *y, const float *b, long rows, int cols)
{
    for (long r = 0; r < rows; r++) {
        float *yr = y + r * cols;
        switch (act) {
        case NN_ACT_NONE:
            for (int j = 0; j < cols; j++) yr[j] += b[j];
            break;
        case NN_ACT_RELU:
            for (int j = 0; j < cols; j++) {
                float v = yr[j] + b[j];
                yr[j] = v > 0.0f ? v : 0.0f;
            }
            break;
        case NN_ACT_SIGMOID:
            for (int j = 0; j < cols; j++) yr[j] = 1.0f / (1.0f + expf(-(yr[j] + b[j])));
            break;
        case NN_ACT_TANH:
            for (int j = 0; j < cols; j++) yr[j] = tanhf(yr[j] + b[j]);
            break;
        }
    }
}

void nn_act_bias_scalar(nn_act act, float *y, const float *z, float b, long n)
{
    switch (act) {
    case NN_ACT_NONE:
        for (long i = 0; i < n; i++) y[i] = z[i] + b;
        break;
    case NN_ACT_RELU:
        for (long i = 0; i < n; i++) {
            float v = z[i] + b;
            y[i] = v > 0.0f ? v : 0.0f;
        }
        break;
    case NN_ACT_SIGMOID:
        for (long i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-(z[i] + b)));
        break;
    case NN_ACT_TANH:
        for (long i = 0; i < n; i++) y[i] = tanhf(z[i] + b);
        break;
    }
}

/* ---- the kinds ----------------------------------------------------------- */
static int act_setup(nn_layer *l, char *why, size_t why_size)
{
    if (l->in_is_input) {
        snprintf(why, why_size, "an activation needs a layer before it to act on, not the raw input");
        return -1;
    }
    l->out = l->in;
    return 0;
}

static void act_forward(nn_layer *l, long n)
{
    if (l->fused) return; /* done in the previous layer's epilogue */
    nn_act_forward(l->kind->act, l->y, l->y, n * l->out_size);
}

static void act_backward(nn_layer *l, long n)
{
    if (l->fused) return; /* done at the start of the previous layer's backward */
    nn_act_backward(l->kind->act, l->dx, l->dy, l->y, n * l->out_size);
}

static void act_label(const nn_layer *l, char *buf, size_t size)
{
    snprintf(buf, size, "%s", l->kind->name);
}

#define ACT_KIND(var, nm, a)                                                               \
    const nn_kind var = {.name = nm, .act = a, .in_place = true, .setup = act_setup,        \
                         .forward = act_forward, .backward = act_backward, .label = act_label}
ACT_KIND(nn_kind_relu, "relu", NN_ACT_RELU);
ACT_KIND(nn_kind_sigmoid, "sigmoid", NN_ACT_SIGMOID);
ACT_KIND(nn_kind_tanh, "tanh", NN_ACT_TANH);

/* flatten: a shape change only; the data are already contiguous per sample. */
static int flatten_setup(nn_layer *l, char *why, size_t why_size)
{
    (void)why;
    (void)why_size;
    l->out = (nn_shape){(int)l->in_size, 1, 1, true};
    return 0;
}

static void flatten_pass(nn_layer *l, long n)
{
    (void)l;
    (void)n;
}

const nn_kind nn_kind_flatten = {.name = "flatten", .in_place = true, .setup = flatten_setup,
                                 .forward = flatten_pass, .backward = flatten_pass,
                                 .label = act_label};
