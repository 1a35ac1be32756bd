/* average.c - the EMA and SWA rules of average.h over flat float arrays.
 *
 * The arithmetic is torch's avg_fn written for one element, in double: the
 * float32 copy then differs from the float64 reference only by its own
 * rounding, not by rounding of 1 - decay or of 1/(n+1) (0.999f is
 * 0.99900001287, an error that an EMA over thousands of updates would
 * compound). */
#include "dtrain/average.h"

#include "dtrain/common.h"

static const char *const kinds[DT_AVERAGE_COUNT] = {
    [DT_AVERAGE_NONE] = "none", [DT_AVERAGE_EMA] = "ema", [DT_AVERAGE_SWA] = "swa"};

const char *dt_average_str(dt_average_kind kind)
{
    return (unsigned)kind < DT_AVERAGE_COUNT ? kinds[kind] : "?";
}

long dt_average_count(const dt_average_hparams *hp, long t)
{
    if (hp->kind == DT_AVERAGE_NONE || t <= hp->start) return 0;
    return t - hp->start;
}

int dt_average_due(const dt_average_hparams *hp, long t)
{
    return hp->kind != DT_AVERAGE_NONE && t > hp->start;
}

void dt_average_update_range(const dt_average_hparams *hp, float *avg, const float *w,
                             long n_before, size_t lo, size_t hi)
{
    DT_CHECK(n_before >= 0 && lo <= hi);
    if (n_before == 0) { /* the first averaged update copies, for both rules */
        for (size_t i = lo; i < hi; i++) avg[i] = w[i];
        return;
    }
    switch (hp->kind) {
    case DT_AVERAGE_EMA: {
        const double d = hp->decay, one_minus_d = 1 - hp->decay;
        for (size_t i = lo; i < hi; i++) avg[i] = (float)(d * avg[i] + one_minus_d * w[i]);
        return;
    }
    case DT_AVERAGE_SWA: {
        const double n1 = (double)n_before + 1;
        for (size_t i = lo; i < hi; i++)
            avg[i] = (float)(avg[i] + ((double)w[i] - avg[i]) / n1);
        return;
    }
    default: DT_BUG("averaging kind %d cannot update", (int)hp->kind);
    }
}
