/* leaf_cost - the compute cost of reproducible mode (issue 13): one update's
 * forward + backward (zero grads, forward with loss, backward) of the MLP
 * (configs/fashion_mnist_mlp.yaml) and LeNet (configs/fashion_mnist_lenet.yaml)
 * in the default mode and in leaf mode, side by side in one run.
 *
 *   leaf_cost [-b B] [-t THREADS] [-r ROUNDS] [-s LEAF] [-m mlp|lenet] [-o default|leaf]
 *
 * -o times one mode only (the other's figures are then 0): with several
 * threads, alternating modes leaves OpenBLAS's and OpenMP's idle threads
 * spinning against each other, which a training run (one mode) never sees.
 *
 * B samples per update (128: P = 1 at global batch 128; 64: P = 2), the
 * OpenBLAS (and leaf kernels') thread count, leaf size (default 1). Rounds
 * alternate default / leaf, so load on the machine hits both alike; the
 * medians of CPU time (see bench_cpu_now()) and the lower quartiles of wall time
 * (what counts with several threads; on a loaded machine the upper ones
 * measure waiting) and their ratios are printed with the OpenBLAS kernel. Inputs are random in [0, 1), like
 * normalised pixels. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dtrain/nn.h"
#include "dtrain/runtime.h"
#include "bench_models.h"
#include "bench_time.h"

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU time of one update; its wall time into *w */
static double update(dt_model *m, const float *x, const int *y, long B, double *w)
{
    double t0 = bench_cpu_now(), w0 = wall(), loss = 0;
    dt_model_zero_grads(m);
    dt_model_forward(m, x, y, B, &loss, NULL);
    dt_model_backward(m, NULL, NULL);
    *w = wall() - w0;
    return bench_cpu_now() - t0;
}

static int only_mode = -1; /* -o: 0 default, 1 leaf */

static void run(const char *name, const dt_layer_spec *spec, int n, long B, long leaf,
                int rounds)
{
    const int input[3] = {1, 28, 28};
    dt_model *m[2];
    dt_error err = {0};
    for (int k = 0; k < 2; k++) {
        if (dt_model_create(spec, n, input, B, NULL, &m[k], &err) != DT_OK) {
            fprintf(stderr, "leaf_cost: %s\n", err.msg);
            exit(1);
        }
        dt_model_init_params(m[k], DT_INIT_HE, 1);
    }
    if (dt_model_set_leaf(m[1], leaf, &err) != DT_OK) {
        fprintf(stderr, "leaf_cost: %s\n", err.msg);
        exit(1);
    }
    bool invariant = dt_model_rows_invariant(m[1]);
    float *x = malloc(sizeof(float) * 784 * (size_t)B);
    int *y = malloc(sizeof(int) * (size_t)B);
    for (long i = 0; i < 784 * B; i++) x[i] = (float)rand() / ((float)RAND_MAX + 1.0f);
    for (long i = 0; i < B; i++) y[i] = (int)(i % 10);
    double *t[4];
    for (int k = 0; k < 4; k++) t[k] = malloc(sizeof(double) * (size_t)rounds);
    double w;
    for (int k = 0; k < 2; k++) update(m[k], x, y, B, &w); /* warm */
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < 2; k++) {
            t[k][r] = t[2 + k][r] = 0;
            if (only_mode < 0 || only_mode == k) t[k][r] = update(m[k], x, y, B, &t[2 + k][r]);
        }
    for (int k = 0; k < 4; k++) qsort(t[k], (size_t)rounds, sizeof(double), bench_cmp_double);
    double d = t[0][rounds / 2], l = t[1][rounds / 2];
    double dw = t[2][rounds / 4], lw = t[3][rounds / 4]; /* wall: lower quartile */
    printf("%-5s B=%-3ld leaf %ld: CPU default %.3f ms, leaf %.3f ms, ratio %.2f; wall (lower "
           "quartile) %.3f / %.3f ms, ratio %.2f (self-check %s)\n",
           name, B, leaf, 1e3 * d, 1e3 * l, l / d, 1e3 * dw, 1e3 * lw, lw / dw,
           invariant ? "passes" : "FAILS");
    for (int k = 0; k < 4; k++) free(t[k]);
    free(x);
    free(y);
    dt_model_free(m[0]);
    dt_model_free(m[1]);
}

int main(int argc, char **argv)
{
    dt_runtime_fix_blas_kernel(argv);
    long B = 128, leaf = 1;
    int threads = 1, rounds = 41, opt;
    const char *only = NULL;
    while ((opt = getopt(argc, argv, "b:t:r:s:m:o:")) != -1) {
        if (opt == 'b') B = atol(optarg);
        else if (opt == 't') threads = atoi(optarg);
        else if (opt == 'r') rounds = atoi(optarg);
        else if (opt == 's') leaf = atol(optarg);
        else if (opt == 'm') only = optarg;
        else if (opt == 'o') only_mode = strcmp(optarg, "leaf") == 0 ? 1 : 0;
        else {
            fprintf(stderr,
                    "usage: leaf_cost [-b B] [-t THREADS] [-r ROUNDS] [-s LEAF] [-m mlp|lenet] "
                    "[-o default|leaf]\n");
            return 2;
        }
    }
    if (B < 1 || threads < 1 || rounds < 1 || leaf < 1) {
        fprintf(stderr, "leaf_cost: -b, -t, -r and -s take positive numbers\n");
        return 2;
    }
    dt_runtime_set_threads(threads);
    printf("OpenBLAS core %s, %d thread(s)\n", dt_runtime_blas_core(), threads);
    if (!only || strcmp(only, "mlp") == 0)
        run("MLP", bench_mlp, (int)DT_ARRAY_LEN(bench_mlp), B, leaf, rounds);
    if (!only || strcmp(only, "lenet") == 0)
        run("LeNet", bench_lenet, (int)DT_ARRAY_LEN(bench_lenet), B, leaf, rounds);
    return 0;
}
