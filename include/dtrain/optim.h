/* optim.h - the update rules of tests/reference/SPEC.md over flat float arrays.
 *
 * An optimizer is a table entry {name, state_slots, step}; its state lives
 * in state_slots arenas (v, s, m, u of tests/reference/SPEC.md), zero at the
 * start, laid out like the parameter arena or, in a sharded update, like
 * this rank's share of it. The gradient pre-processing of tests/reference/SPEC.md
 * (non-finite check, coupled weight decay, global-norm clipping) is here
 * too, as separate calls, because the trainer must decide on the non-finite
 * guard before any state changes. Pure functions: no MPI, no layers. */
#ifndef DTRAIN_OPTIM_H
#define DTRAIN_OPTIM_H

#include <stdbool.h>
#include <stddef.h>

#include "dtrain/common.h"

typedef enum {
    DT_OPT_SGD,
    DT_OPT_MOMENTUM,
    DT_OPT_ADAGRAD,
    DT_OPT_RMSPROP,
    DT_OPT_ADADELTA,
    DT_OPT_ADAM,
    DT_OPT_ADAMW,
    DT_OPT_YOGI,
    DT_OPT_COUNT
} dt_optimizer_name;

typedef enum { DT_NONFINITE_ABORT, DT_NONFINITE_SKIP } dt_nonfinite_policy;

#define DT_OPTIM_MAX_SLOTS 2

typedef struct {
    dt_optimizer_name name;
    double momentum;
    bool nesterov;
    double beta1, beta2, alpha, rho, eps;
    double weight_decay, clip_grad_norm;
} dt_optim_hparams;

typedef struct {
    dt_optim_hparams hp;
    size_t n;                          /* parameters whose state this holds */
    long t;                            /* updates applied so far */
    int slots;                         /* state arenas in use */
    float *state[DT_OPTIM_MAX_SLOTS];  /* 64-byte aligned, n floats each */
} dt_optimizer;

/* The optimizer's name as the config spells it ("sgd", "adamw", ...); "?"
 * out of range. */
const char *dt_optimizer_str(dt_optimizer_name name);

/* Number of state arenas the named optimizer keeps (sgd with momentum > 0
 * behaves as momentum and keeps 1). */
int dt_optim_state_slots(const dt_optim_hparams *hp);

/* Allocate zeroed state for n parameters: the whole arena, or (a sharded
 * update) only the share of it this rank updates. DT_EINTERNAL if out of
 * memory. */
dt_status dt_optim_init(dt_optimizer *opt, const dt_optim_hparams *hp, size_t n,
                        dt_error *err);
void dt_optim_free(dt_optimizer *opt);

/* True iff every g[i] is finite. */
bool dt_all_finite(const float *g, size_t n);
/* g *= scale, then the same verdict, in one pass over the arena (the
 * trainer's division by the global batch and its non-finite guard). */
bool dt_scale_all_finite(float *g, size_t n, float scale);

/* SPEC pre-processing steps 3-4 in place: g += weight_decay * w (not for
 * adamw), then global-norm clipping when clip_grad_norm > 0. With clipping,
 * returns the gradient norm after decay and before clipping (accumulated in
 * double); without, the norm is not computed (one pass fewer) and 0 is
 * returned. */
double dt_optim_preprocess(const dt_optimizer *opt, const float *w, float *g);

/* The trainer's whole pre-processing of a summed gradient: g *= scale (the
 * 1/b of SPEC step 1), the non-finite verdict (step 2), then steps 3-4 as
 * dt_optim_preprocess. Bit-identical to dt_scale_all_finite followed by
 * dt_optim_preprocess, in one pass over the arena when there is no
 * clipping. Returns false when g is not finite (then g is unspecified and
 * the update must be skipped). */
bool dt_optim_prepare(const dt_optimizer *opt, const float *w, float *g, float scale);

/* One update with learning rate lr: increments opt->t first, so bias
 * corrections use t = 1 on the first update. */
void dt_optim_step(dt_optimizer *opt, float *w, const float *g, double lr);

/* ---- the same update range by range ---------------------------------------
 * For an update applied in pieces (a shard of the arena, or each bucket as
 * its reduction completes): per piece, dt_optim_prepare_range, then
 * dt_optim_step_range with the same lr; once per update, dt_optim_advance.
 * Elementwise, so the pieces give the bits of the whole calls. With
 * clipping, every piece's *sumsq (decayed gradient, double) must be summed
 * over all pieces of all ranks first, and each piece scaled by
 * dt_optim_clip_factor(total) before its step. */
bool dt_optim_prepare_range(const dt_optimizer *opt, const float *w, float *g, float scale,
                            size_t lo, size_t hi, double *sumsq);
float dt_optim_clip_factor(const dt_optimizer *opt, double total_sumsq);
void dt_optim_scale_range(float *g, size_t lo, size_t hi, float s);
/* w[lo, hi) and g[lo, hi) with the state at [at, at + hi - lo): at = lo
 * when the state is laid out like the arena, the range's place in this
 * rank's share when it holds only that (exchange.h). Uses t = opt->t + 1
 * (the update being applied) without advancing it. */
void dt_optim_step_range(const dt_optimizer *opt, float *w, const float *g, double lr, size_t lo,
                         size_t hi, size_t at);
void dt_optim_advance(dt_optimizer *opt);

#endif
