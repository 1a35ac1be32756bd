/* rng.c - SplitMix64-based counter generator (see rng.h for why). */
#include "dtrain/rng.h"

#include <math.h>

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

uint64_t dt_rand_u64(uint64_t seed, uint64_t stream, uint64_t counter)
{
    /* Key the counter by (seed, stream) through one mixing round each, so
     * nearby seeds and streams give unrelated sequences; then SplitMix64's
     * golden-ratio increment walks the counter. */
    uint64_t key = mix64(seed + UINT64_C(0x9e3779b97f4a7c15));
    key = mix64(key ^ (stream * UINT64_C(0xd1b54a32d192ed03)));
    return mix64(key + counter * UINT64_C(0x9e3779b97f4a7c15));
}

double dt_rand_uniform(uint64_t seed, uint64_t stream, uint64_t counter)
{
    return (double)(dt_rand_u64(seed, stream, counter) >> 11) * 0x1.0p-53;
}

uint64_t dt_rand_below(uint64_t seed, uint64_t stream, uint64_t counter, uint64_t bound)
{
    /* Lemire's multiply-shift with rejection on 32-bit halves would need a
     * bound < 2^32; dtrain's bounds (dataset sizes) are, but stay general by
     * using 128-bit products. */
    for (uint64_t attempt = 0;; attempt++) {
        uint64_t x = dt_rand_u64(seed, stream, counter + (attempt << 40));
        __uint128_t m = (__uint128_t)x * bound;
        uint64_t low = (uint64_t)m;
        if (low >= bound) return (uint64_t)(m >> 64);
        uint64_t threshold = -bound % bound;
        if (low >= threshold) return (uint64_t)(m >> 64);
    }
}

double dt_rand_normal(uint64_t seed, uint64_t stream, uint64_t counter)
{
    double u1 = dt_rand_uniform(seed, stream, 2 * counter);
    double u2 = dt_rand_uniform(seed, stream, 2 * counter + 1);
    if (u1 < 0x1.0p-60) u1 = 0x1.0p-60; /* log(0) guard */
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}
