/* golden_mlp.c - checker for kind: mlp reference files.
 *
 * Builds the network of the headers through the public API (dense layers
 * with the activation between them, input [s0, 1, 1]), loads W and b into
 * the parameter arena (its layout is per layer W [out][in] then b, the same
 * as the file), runs forward on the batch and compares the logits and the
 * mean loss, then backward (gradients of the summed loss, divided by B here
 * as the trainer does after the allreduce) and compares every dW and db. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtrain/nn.h"
#include "refparse.h"

#define RTOL 1e-4
#define ATOL 1e-6
#define MAX_SIZES 16

/* Read row `prefix` into double buf (n values exactly) and narrow to float. */
static int get_row(const ref_file *f, const char *prefix, double *buf, int n, char *why,
                   size_t why_size)
{
    int got = ref_row(f, prefix, buf, n);
    if (got != n) {
        snprintf(why, why_size, "row '%s': %d values, expected %d", prefix, got, n);
        return -1;
    }
    return 0;
}

static int compare(const char *what, const float *a, const double *r, int n, double *worst,
                   char *why, size_t why_size)
{
    double w = ref_worst_ratio(a, r, n, RTOL, ATOL);
    if (w > *worst) *worst = w;
    if (w > 1.0) {
        if (!why[0]) snprintf(why, why_size, "%s off (ratio %.3g)", what, w);
        return 1;
    }
    return 0;
}

int golden_check_mlp(const ref_file *f, double *worst, char *why, size_t why_size)
{
    *worst = 0;
    why[0] = 0;
    long L, B;
    if (ref_header_long(f, "layers", &L, why, why_size) ||
        ref_header_long(f, "batch", &B, why, why_size))
        return -1;
    const char *act = ref_header(f, "activation"), *sz = ref_header(f, "sizes");
    if (!act || !sz || L < 1 || L + 1 > MAX_SIZES || B < 1) {
        snprintf(why, why_size, "bad activation/sizes/layers/batch headers");
        return -1;
    }
    int sizes[MAX_SIZES], ns = 0;
    char *end;
    for (const char *p = sz; ns < MAX_SIZES; p = end) {
        long v = strtol(p, &end, 10);
        if (end == p) break;
        sizes[ns++] = (int)v;
    }
    if (ns != L + 1) {
        snprintf(why, why_size, "sizes has %d values, expected %ld", ns, L + 1);
        return -1;
    }
    dt_layer_kind ak;
    if (strcmp(act, "relu") == 0)
        ak = DT_LAYER_RELU;
    else if (strcmp(act, "sigmoid") == 0)
        ak = DT_LAYER_SIGMOID;
    else if (strcmp(act, "tanh") == 0)
        ak = DT_LAYER_TANH;
    else {
        snprintf(why, why_size, "unknown activation '%s'", act);
        return -1;
    }

    dt_layer_spec specs[2 * MAX_SIZES];
    int n_specs = 0;
    for (long l = 0; l < L; l++) {
        if (l > 0) specs[n_specs++] = (dt_layer_spec){.kind = ak};
        specs[n_specs++] = (dt_layer_spec){.kind = DT_LAYER_DENSE, .units = sizes[l + 1]};
    }
    int input[3] = {sizes[0], 1, 1};
    dt_model *m = NULL;
    dt_error err;
    if (dt_model_create(specs, n_specs, input, B, f->path, &m, &err) != DT_OK) {
        snprintf(why, why_size, "dt_model_create: %s", err.msg);
        return -1;
    }

    int rc = -1, C = sizes[L], maxn = 0;
    for (int i = 0; i < ns; i++) maxn = sizes[i] > maxn ? sizes[i] : maxn;
    size_t np = dt_model_param_count(m);
    double *buf = malloc(sizeof(double) * (size_t)(maxn * maxn + np + 1));
    float *x = malloc(sizeof(float) * (size_t)(B * sizes[0]));
    float *fl = malloc(sizeof(float) * (size_t)(maxn * maxn + np + 1));
    int *labels = malloc(sizeof(int) * (size_t)B);
    if (!buf || !x || !fl || !labels) {
        snprintf(why, why_size, "out of memory");
        goto done;
    }
    char prefix[64];
    for (long s = 0; s < B; s++) {
        snprintf(prefix, sizeof prefix, "x %ld", s);
        if (get_row(f, prefix, buf, sizes[0], why, why_size)) goto done;
        for (int i = 0; i < sizes[0]; i++) x[s * sizes[0] + i] = (float)buf[i];
        snprintf(prefix, sizeof prefix, "label %ld", s);
        if (get_row(f, prefix, buf, 1, why, why_size)) goto done;
        labels[s] = (int)buf[0];
    }
    float *params = dt_model_params(m);
    size_t off = 0;
    for (long l = 0; l < L; l++) {
        int nw = sizes[l + 1] * sizes[l], nb = sizes[l + 1];
        snprintf(prefix, sizeof prefix, "layer %ld W", l);
        if (get_row(f, prefix, buf, nw, why, why_size)) goto done;
        for (int i = 0; i < nw; i++) params[off++] = (float)buf[i];
        snprintf(prefix, sizeof prefix, "layer %ld b", l);
        if (get_row(f, prefix, buf, nb, why, why_size)) goto done;
        for (int i = 0; i < nb; i++) params[off++] = (float)buf[i];
    }
    if (off != np) {
        snprintf(why, why_size, "model has %zu parameters, the file %zu", np, off);
        goto done;
    }

    double loss_sum = 0;
    dt_model_forward(m, x, labels, B, &loss_sum, NULL);
    rc = 0;
    const float *logits = dt_model_logits(m);
    for (long s = 0; s < B; s++) {
        snprintf(prefix, sizeof prefix, "logits %ld", s);
        if (get_row(f, prefix, buf, C, why, why_size)) {
            rc = -1;
            goto done;
        }
        snprintf(prefix, sizeof prefix, "logits %ld", s);
        rc |= compare(prefix, logits + s * C, buf, C, worst, why, why_size);
    }
    if (get_row(f, "loss", buf, 1, why, why_size)) {
        rc = -1;
        goto done;
    }
    float mean_loss = (float)(loss_sum / (double)B);
    rc |= compare("loss", &mean_loss, buf, 1, worst, why, why_size);

    dt_model_zero_grads(m);
    dt_model_backward(m, NULL, NULL);
    const float *grads = dt_model_grads(m);
    off = 0;
    for (long l = 0; l < L; l++) {
        int counts[2] = {sizes[l + 1] * sizes[l], sizes[l + 1]};
        const char *names[2] = {"dW", "db"};
        for (int k = 0; k < 2; k++) {
            snprintf(prefix, sizeof prefix, "layer %ld %s", l, names[k]);
            if (get_row(f, prefix, buf, counts[k], why, why_size)) {
                rc = -1;
                goto done;
            }
            for (int i = 0; i < counts[k]; i++) fl[i] = grads[off + i] / (float)B;
            off += counts[k];
            rc |= compare(prefix, fl, buf, counts[k], worst, why, why_size);
        }
    }
done:
    free(buf);
    free(x);
    free(fl);
    free(labels);
    dt_model_free(m);
    return rc;
}
