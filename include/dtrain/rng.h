/* rng.h - counter-based random numbers.
 *
 * dtrain's randomness (initial weights, epoch order) must be a pure function
 * of (seed, stream, counter) so that every rank, any world size and a
 * resumed run all see the same values without sharing generator state.
 * dt_rand_u64 is SplitMix64's finaliser applied to a key built from the
 * three inputs (a counter-based generator in the sense of Salmon et al.,
 * "Parallel random numbers: as easy as 1, 2, 3", SC'11): cheap and
 * stateless; its statistics are checked in tests/unit/test_base.c. */
#ifndef DTRAIN_RNG_H
#define DTRAIN_RNG_H

#include <stdint.h>

/* Streams keep independent uses apart. */
enum { DT_STREAM_PERMUTATION = 1, DT_STREAM_INIT = 2 };

uint64_t dt_rand_u64(uint64_t seed, uint64_t stream, uint64_t counter);
/* Uniform in [0, 1) with 53 random bits. */
double dt_rand_uniform(uint64_t seed, uint64_t stream, uint64_t counter);
/* Uniform integer in [0, bound), bound > 0, unbiased (Lemire's method with
 * rejection draws taken from counter + 2^32 * attempt). */
uint64_t dt_rand_below(uint64_t seed, uint64_t stream, uint64_t counter, uint64_t bound);
/* Standard normal (Box-Muller on two uniforms from counters 2c and 2c+1). */
double dt_rand_normal(uint64_t seed, uint64_t stream, uint64_t counter);

#endif
