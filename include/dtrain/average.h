/* average.h - averaging the parameters along the path (optimizer.average).
 *
 * Besides the parameters w, the trainer may keep an averaged copy a in an
 * arena of the same layout, updated after every applied update whose
 * number t is above `start` (updates skipped as non-finite are not
 * averaged). With n the number of updates averaged before this one:
 *   ema: a = w when n = 0, else a = decay * a + (1 - decay) * w
 *        (torch.optim.swa_utils.AveragedModel with that avg_fn)
 *   swa: a = a + (w - a) / (n + 1), a uniform mean of every averaged w
 *        (AveragedModel's default avg_fn; its first update copies too)
 * Each element is computed in double and rounded once. n is a function of
 * t alone (dt_average_count), so a resumed run needs only the arena.
 * dtrain has no BatchNorm, so SWA needs no recomputation of batch
 * statistics (torch's update_bn). Pure functions: no MPI, no layers; the
 * range form lets a sharded update average only this rank's pieces. */
#ifndef DTRAIN_AVERAGE_H
#define DTRAIN_AVERAGE_H

#include <stddef.h>

typedef enum { DT_AVERAGE_NONE, DT_AVERAGE_EMA, DT_AVERAGE_SWA, DT_AVERAGE_COUNT } dt_average_kind;

typedef struct {
    dt_average_kind kind;
    double decay; /* ema, in [0, 1) */
    long start;   /* updates applied before the first averaged one */
} dt_average_hparams;

/* "none", "ema", "swa"; "?" out of range. */
const char *dt_average_str(dt_average_kind kind);

/* Updates averaged once t updates were applied: max(0, t - start), and 0
 * when averaging is off. */
long dt_average_count(const dt_average_hparams *hp, long t);

/* Whether the update that makes t updates applied is averaged. */
int dt_average_due(const dt_average_hparams *hp, long t);

/* Fold w[lo, hi) into avg[lo, hi); n_before: updates averaged before this
 * one (0: copy). */
void dt_average_update_range(const dt_average_hparams *hp, float *avg, const float *w,
                             long n_before, size_t lo, size_t hi);

#endif
