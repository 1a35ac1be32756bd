/* bench_models.h - the layer tables of the example configs, for the
 * benchmarks that build a dt_model directly (header only). */
#ifndef DTRAIN_BENCH_MODELS_H
#define DTRAIN_BENCH_MODELS_H

#include "dtrain/nn.h"

/* configs/fashion_mnist_mlp.yaml: 784-256-256-10 */
static const dt_layer_spec bench_mlp[] = {
    {.kind = DT_LAYER_DENSE, .units = 256}, {.kind = DT_LAYER_RELU},
    {.kind = DT_LAYER_DENSE, .units = 256}, {.kind = DT_LAYER_RELU},
    {.kind = DT_LAYER_DENSE, .units = 10},
};

/* configs/fashion_mnist_lenet.yaml, on 1x28x28 inputs */
static const dt_layer_spec bench_lenet[] = {
    {.kind = DT_LAYER_CONV, .out_channels = 6, .kernel = 5, .stride = 1, .pad = 2},
    {.kind = DT_LAYER_RELU},
    {.kind = DT_LAYER_MAXPOOL, .size = 2, .stride = 2},
    {.kind = DT_LAYER_CONV, .out_channels = 16, .kernel = 5, .stride = 1},
    {.kind = DT_LAYER_RELU},
    {.kind = DT_LAYER_MAXPOOL, .size = 2, .stride = 2},
    {.kind = DT_LAYER_DENSE, .units = 120}, {.kind = DT_LAYER_RELU},
    {.kind = DT_LAYER_DENSE, .units = 84},  {.kind = DT_LAYER_RELU},
    {.kind = DT_LAYER_DENSE, .units = 10},
};

#endif
