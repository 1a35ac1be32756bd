/* sgemm_rows.c - is OpenBLAS sgemm row-invariant for dtrain's dense shapes?
 *
 * Reproducible mode (issue 13) needs every sample's row of a dense layer's
 * output (y = x W^T) and input gradient (dx = dz W) to have the same bits
 * whatever the number M of rows in the call, the row's position in it, and
 * the BLAS thread count. This measures it, for the calls of src/nn/dense.c on
 * the MLP and LeNet dense shapes: the reference is one call of 128 rows at
 * the given thread count; for every M in 1..128 the rows [0, M) and
 * [128 - M, 128) are computed by a call of M rows and compared bit for bit
 * with the reference. Thread counts 1 and 2 are also compared at M = 128.
 *
 *   sgemm_rows            prints one line per shape and operation:
 *     <op> <in>x<out>: M with differing rows at 1 thread, at 2 threads;
 *     threads 1 vs 2 at M = 128 (same/differ)
 * Run it under several OPENBLAS_CORETYPE values (the kernel in use is named
 * on the first line). Exit status 0 always: it reports, it does not judge. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROWS 128

static void fill(float *a, long n, unsigned seed)
{
    for (long i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        a[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
}

/* y[M][n] for op 0 (forward: x[M][k] W[n][k]^T) or op 1 (dx: dz[M][k] W[k][n]) */
static void run(int op, const float *a, const float *w, float *c, int M, int k, int n)
{
    if (op == 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, n, k, 1.0f, a, k, w, k, 0.0f, c,
                    n);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, n, k, 1.0f, a, k, w, n, 0.0f,
                    c, n);
}

int main(void)
{
    static const int shapes[][2] = {{784, 256}, {256, 256}, {256, 10},
                                    {400, 120}, {120, 84},  {84, 10}};
    printf("OpenBLAS core %s, config %s\n", openblas_get_corename(), openblas_get_config());
    int bad_total = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int op = 0; op < 2; op++) {
            /* forward: K = in, N = out; dx: K = out, N = in */
            int in = shapes[s][0], out = shapes[s][1];
            int k = op == 0 ? in : out, n = op == 0 ? out : in;
            float *a = malloc(sizeof(float) * ROWS * k), *w = malloc(sizeof(float) * k * n);
            float *ref[2], *c = malloc(sizeof(float) * ROWS * n);
            fill(a, (long)ROWS * k, 7u + (unsigned)s);
            fill(w, (long)k * n, 99u + (unsigned)s);
            int differ_m[2] = {0, 0};
            for (int t = 0; t < 2; t++) {
                openblas_set_num_threads(t + 1);
                ref[t] = malloc(sizeof(float) * ROWS * n);
                run(op, a, w, ref[t], ROWS, k, n);
                for (int M = 1; M <= ROWS; M++) {
                    int bad = 0;
                    run(op, a, w, c, M, k, n);
                    bad |= memcmp(c, ref[t], sizeof(float) * (size_t)M * n) != 0;
                    run(op, a + (long)(ROWS - M) * k, w, c, M, k, n);
                    bad |= memcmp(c, ref[t] + (long)(ROWS - M) * n,
                                  sizeof(float) * (size_t)M * n) != 0;
                    differ_m[t] += bad;
                }
            }
            int threads_differ = memcmp(ref[0], ref[1], sizeof(float) * ROWS * n) != 0;
            printf("%-7s %4dx%-4d (M x %d x K %d): M of 1..128 with differing rows: %3d at 1 "
                   "thread, %3d at 2 threads; 128 rows 1 vs 2 threads: %s\n",
                   op == 0 ? "forward" : "dx", in, out, n, k, differ_m[0], differ_m[1],
                   threads_differ ? "DIFFER" : "same");
            bad_total += differ_m[0] + differ_m[1] + threads_differ;
            free(a);
            free(w);
            free(c);
            free(ref[0]);
            free(ref[1]);
        }
    printf("%s\n", bad_total ? "NOT row-invariant" : "row-invariant for these shapes");
    return 0;
}
