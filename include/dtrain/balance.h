/* balance.h - shards of the global batch sized to each rank's speed
 * (comm.balance).
 *
 * By default every rank gets an even shard of each global batch, so every
 * update waits for the slowest rank: a node of an older CPU kind in the
 * allocation, a straggling host, or a VM whose vCPUs are not equally fast
 * (on the 2-vCPU development VM one vCPU ran LeNet's update 1.45x slower
 * than the other for minutes at a time, and two ranks then ran at the
 * slower one's pace).
 *
 * With balancing on, each rank times its own compute (batch gather,
 * forward, backward) per sample over a window of updates. At the end of a
 * window the ranks share these costs (one allreduce of P doubles) and
 * every rank computes the same new cut of the batch from the same numbers:
 * shares that make cost x samples as equal as whole samples allow, at
 * least one sample each. A new cut is taken only if it shortens the
 * predicted update by more than a few percent, so that noise does not
 * move it back and forth.
 *
 * Only where the global batch is cut moves: its samples and their order
 * are those of the even split (SPEC "Data order"), and the gradient is
 * still the sum over the global batch divided by its size. The update is
 * therefore the same as with even shards up to float rounding, like a
 * change of world size, but the cut depends on timing, so two runs are no
 * longer bit-identical. That is why it is off by default, and refused with
 * comm.reproducible.
 *
 * Nothing here allocates after dt_balance_create. */
#ifndef DTRAIN_BALANCE_H
#define DTRAIN_BALANCE_H

#include <stdbool.h>

#include "dtrain/common.h"

/* Updates per timing window. */
#define DT_BALANCE_WINDOW 16

typedef struct dt_balance dt_balance;

/* For a global batch of `global_batch` samples over `world` ranks; starts
 * with the even split of dt_shard. */
dt_status dt_balance_create(int world, int rank, long global_batch, dt_balance **out,
                            dt_error *err);
void dt_balance_free(dt_balance *bal);

/* The largest shard a rank can be given: the arena size its buffers need. */
long dt_balance_max_shard(long global_batch, int world);

/* This rank's [begin, end) of a global batch of b samples: the current cut
 * for a full batch, the even split for a short one. */
void dt_balance_shard(const dt_balance *bal, long b, long *begin, long *end);

/* This rank's compute for one full-batch update. At the end of a window
 * (every rank notes the same updates) it is collective: the costs are
 * shared and a new cut may be taken. Returns true when the cut changed. */
bool dt_balance_note(dt_balance *bal, double seconds, long samples);

/* The current cut: counts[r] samples for rank r (world entries). */
const long *dt_balance_counts(const dt_balance *bal);
/* The smoothed cost per sample of each rank, in seconds (0 until the
 * first window ends). */
const double *dt_balance_costs(const dt_balance *bal);
long dt_balance_changes(const dt_balance *bal);

/* The cut of b samples over `world` ranks of the given costs per sample:
 * at least one each (when b >= world), then each further sample to the
 * rank whose time cost x (count + 1) is smallest (the lower rank on a tie),
 * so that the largest cost x count is as small as whole samples allow.
 * A cost that is not positive and finite counts as the mean of the others.
 * Pure and deterministic: every rank gets the same bits. */
void dt_balance_split(const double *cost, int world, long b, long *counts);
/* max over ranks of cost[r] x counts[r]: the predicted compute time. */
double dt_balance_predict(const double *cost, const long *counts, int world);

#endif
