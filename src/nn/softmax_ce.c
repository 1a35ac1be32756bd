/* softmax_ce.c - the softmax cross-entropy head on the last layer's logits.
 *
 * Per sample, loss = logsumexp(z) - z[y], computed stably as
 * m + log(sum exp(z - m)) - z[y] with m = max z, so no exp overflows and the
 * largest term is exactly 1 (the sum is >= 1, its log finite). The sum and
 * the loss are formed in double: the loss feeds the logged training loss
 * and the tests, and C is small. The gradient of the SUMMED loss w.r.t. z is
 * softmax(z) - onehot(y); backward recomputes the softmax from the kept
 * logits (C exps per sample, negligible), so it is idempotent and forward
 * stays a pure evaluation. Accuracy: argmax with the FIRST maximum on ties. */
#include <math.h>

#include "layers.h"

/* One sample's loss; *right is whether its first argmax is the label. */
static inline double sample_ce(const float *zr, int y, int C, bool *right)
{
    int arg = 0;
    float m = zr[0];
    for (int j = 1; j < C; j++)
        if (zr[j] > m) {
            m = zr[j];
            arg = j;
        }
    double s = 0.0;
    for (int j = 0; j < C; j++) s += exp((double)zr[j] - (double)m);
    DT_CHECK(y >= 0 && y < C);
    *right = arg == y;
    return (double)m + log(s) - (double)zr[y];
}

void nn_softmax_ce_forward(const float *z, const int *labels, long B, int C, double *loss_sum,
                           long *correct)
{
    double loss = 0.0;
    long right = 0;
    for (long r = 0; r < B; r++) {
        bool ok;
        loss += sample_ce(z + r * C, labels[r], C, &ok);
        right += ok;
    }
    if (loss_sum) *loss_sum += loss;
    if (correct) *correct += right;
}

void nn_softmax_ce_losses(const float *z, const int *labels, long B, int C, double *losses,
                          long *correct)
{
    long right = 0;
    for (long r = 0; r < B; r++) {
        bool ok;
        losses[r] = sample_ce(z + r * C, labels[r], C, &ok);
        right += ok;
    }
    if (correct) *correct += right;
}

void nn_softmax_ce_backward(float *dz, const float *z, const int *labels, long B, int C)
{
    for (long r = 0; r < B; r++) {
        const float *zr = z + r * C;
        float *dr = dz + r * C;
        float m = zr[0];
        for (int j = 1; j < C; j++) m = zr[j] > m ? zr[j] : m;
        float s = 0.0f;
        for (int j = 0; j < C; j++) {
            dr[j] = expf(zr[j] - m);
            s += dr[j];
        }
        float inv = 1.0f / s;
        for (int j = 0; j < C; j++) dr[j] *= inv;
        dr[labels[r]] -= 1.0f;
    }
}
