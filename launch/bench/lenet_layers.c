/* lenet_layers - where one LeNet update's forward and backward time goes,
 * layer by layer (the model of configs/fashion_mnist_lenet.yaml).
 *
 *   lenet_layers [-b B] [-r ROUNDS] [-n UPDATES] [-i avx2|c]
 *
 * Builds the real model with dt_model_create, runs one forward + backward so
 * every buffer holds what it would in training, then times each layer's
 * forward and backward alone (the kind's own function, as dt_model_forward
 * and dt_model_backward call it). Rounds alternate over the layers, so noise
 * from other work on the machine hits all alike; it reports medians of CPU
 * time (CLOCK_PROCESS_CPUTIME_ID, which leaves out waiting for a CPU) per
 * update of B samples, one OpenBLAS thread.
 *
 * -i avx2 (or c) holds dtrain's own kernels to AVX2 (or portable C) on a
 * CPU with AVX-512, to measure the path a CPU without it takes.
 *
 * -n UPDATES instead runs that many plain forward + backward updates and
 * nothing else: the program to give `valgrind --tool=callgrind`, whose
 * instruction counts per function are repeatable on a loaded machine.
 *
 * -c: instruction counts per layer and direction. Run as
 *   valgrind --tool=callgrind --collect-atstart=no lenet_layers -c
 * each layer's forward (then backward) runs 4 times with collection on and
 * the counts are dumped under its name ("fwd 0 conv 6x5x5 s1 p2"): one
 * callgrind.out.PID.N file per dump, whose "summary:" line is the total. */
#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#endif
#endif
#ifndef CALLGRIND_DUMP_STATS_AT
#define CALLGRIND_TOGGLE_COLLECT
#define CALLGRIND_DUMP_STATS_AT(s) (void)(s)
#endif
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../src/nn/layers.h"
#include "dtrain/runtime.h"
#include "bench_models.h"
#include "bench_time.h"

int main(int argc, char **argv)
{
    dt_runtime_fix_blas_kernel(argv);
    int B = 128, rounds = 31, updates = 0, isa = NN_ISA_AVX512;
    bool counts = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-b") == 0 && i + 1 < argc)
            B = atoi(argv[++i]);
        else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "-c") == 0)
            counts = true;
        else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            updates = atoi(argv[++i]);
        else if (strcmp(argv[i], "-i") == 0 && i + 1 < argc && strcmp(argv[i + 1], "avx2") == 0)
            isa = NN_ISA_AVX2, i++;
        else if (strcmp(argv[i], "-i") == 0 && i + 1 < argc && strcmp(argv[i + 1], "c") == 0)
            isa = NN_ISA_PORTABLE, i++;
        else {
            fprintf(stderr, "usage: lenet_layers [-b B] [-r ROUNDS] [-n UPDATES | -c] [-i avx2|c]\n");
            return 2;
        }
    }
    if (B < 1 || rounds < 1 || updates < 0) return 2;
    openblas_set_num_threads(1);
    nn_leaf_limit_isa(isa);
    const int input[3] = {1, 28, 28};
    const int n_specs = (int)DT_ARRAY_LEN(bench_lenet);
    dt_model *m = NULL;
    dt_error err = {0};
    if (dt_model_create(bench_lenet, n_specs, input, DT_MAX(B, 256), NULL, &m, &err) != DT_OK) {
        fprintf(stderr, "lenet_layers: %s\n", err.msg);
        return 2;
    }
    dt_model_init_params(m, DT_INIT_HE, 1);
    float *x = malloc((size_t)B * 784 * sizeof *x);
    int *y = malloc((size_t)B * sizeof *y);
    if (!x || !y) return 2;
    uint32_t s = 12345u;
    for (long i = 0; i < (long)B * 784; i++) { /* roughly a normalised image */
        s = s * 1664525u + 1013904223u;
        x[i] = (float)(s >> 8) * (2.0f / 16777216.0f) - 0.6f;
    }
    for (int i = 0; i < B; i++) y[i] = i % 10;

    if (updates > 0) {
        double loss = 0;
        for (int u = 0; u < updates; u++) {
            dt_model_zero_grads(m);
            dt_model_forward(m, x, y, B, &loss, NULL);
            dt_model_backward(m, NULL, NULL);
        }
        printf("lenet_layers: %d updates of %d samples, loss sum %.6g\n", updates, B, loss);
        dt_model_free(m);
        return 0;
    }

    double loss = 0;
    for (int w = 0; w < 5; w++) {
        dt_model_zero_grads(m);
        dt_model_forward(m, x, y, B, &loss, NULL);
        dt_model_backward(m, NULL, NULL);
    }
    int L = m->n_layers;
    if (counts) {
        char name[160], label[128];
        for (int pass = 0; pass < 2; pass++)
            for (int k = 0; k < L; k++) {
                int i = pass ? L - 1 - k : k;
                nn_layer *l = &m->layers[i];
                if (l->fused || (pass && i < m->first_param)) continue;
                l->kind->label(l, label, sizeof label);
                snprintf(name, sizeof name, "%s %d %s", pass ? "bwd" : "fwd", i, label);
                CALLGRIND_TOGGLE_COLLECT;
                for (int r = 0; r < 4; r++)
                    pass ? l->kind->backward(l, B) : l->kind->forward(l, B);
                CALLGRIND_TOGGLE_COLLECT;
                CALLGRIND_DUMP_STATS_AT(name);
            }
        dt_model_free(m);
        return 0;
    }
    double *tf = calloc((size_t)(L * rounds), sizeof *tf), *tb = calloc((size_t)(L * rounds), sizeof *tb);
    double *tu = calloc((size_t)rounds, sizeof *tu);
    if (!tf || !tb || !tu) return 2;
    const int reps = 20;
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < L; i++) {
            nn_layer *l = &m->layers[i];
            double t0 = bench_cpu_now();
            for (int k = 0; k < reps; k++) l->kind->forward(l, B);
            tf[i * rounds + r] = (bench_cpu_now() - t0) / reps;
        }
        for (int i = L - 1; i >= m->first_param; i--) {
            nn_layer *l = &m->layers[i];
            double t0 = bench_cpu_now();
            for (int k = 0; k < reps; k++) l->kind->backward(l, B);
            tb[i * rounds + r] = (bench_cpu_now() - t0) / reps;
        }
        double t0 = bench_cpu_now();
        for (int k = 0; k < reps; k++) {
            dt_model_zero_grads(m);
            dt_model_forward(m, x, y, B, &loss, NULL);
            dt_model_backward(m, NULL, NULL);
        }
        tu[r] = (bench_cpu_now() - t0) / reps;
    }
    printf("lenet_layers: batch %d, 1 OpenBLAS thread, core %s, kernels %s; CPU ms per update, median of %d "
           "rounds\n",
           B, openblas_get_corename(), (const char *[]){"C", "AVX2", "AVX-512"}[nn_isa()], rounds);
    printf("  %-28s %9s %9s\n", "layer", "forward", "backward");
    double sf = 0, sb = 0;
    for (int i = 0; i < L; i++) {
        nn_layer *l = &m->layers[i];
        char label[128];
        l->kind->label(l, label, sizeof label);
        if (l->fused) strcat(label, " (fused)");
        qsort(tf + i * rounds, (size_t)rounds, sizeof *tf, bench_cmp_double);
        qsort(tb + i * rounds, (size_t)rounds, sizeof *tb, bench_cmp_double);
        double f = tf[i * rounds + rounds / 2] * 1e3, b = tb[i * rounds + rounds / 2] * 1e3;
        sf += f, sb += b;
        printf("  %-28s %9.3f %9.3f\n", label, f, b);
    }
    qsort(tu, (size_t)rounds, sizeof *tu, bench_cmp_double);
    printf("  %-28s %9.3f %9.3f\n", "sum of layers", sf, sb);
    printf("  whole zero+forward+backward (with the loss head): %.3f ms\n", tu[rounds / 2] * 1e3);
    dt_model_free(m);
    free(x), free(y), free(tf), free(tb), free(tu);
    return 0;
}
