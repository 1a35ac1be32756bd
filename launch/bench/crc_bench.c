/* crc_bench - CRC-32C throughput of the checkpoint module's two paths, the
 * portable table-driven one and the SSE4.2 instruction (when the CPU has it).
 *
 *   crc_bench [MIB] [REPS]      (default 10 MiB, best of 5)
 *
 * A benchmark, not a test: it prints figures and checks only that both
 * paths agree. It was the unit test test_crc_speed, whose wall-clock bound
 * failed on slow or busy machines while saying nothing about correctness
 * (tests/unit/test_checkpoint.c checks the values). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench_time.h"

/* The checkpoint module's internal entry points (src/checkpoint.c). */
uint32_t dt__crc32c_sw(uint32_t crc, const void *data, size_t len);
uint32_t dt__crc32c_hw(uint32_t crc, const void *data, size_t len);
int dt__crc32c_hw_available(void);

/* Best time of `reps` runs of one path over buf; its CRC in *crc. */
static double best_time(uint32_t (*crc_fn)(uint32_t, const void *, size_t), const unsigned char *buf,
                        size_t n, int reps, uint32_t *crc)
{
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = bench_wall_now();
        *crc = crc_fn(0, buf, n);
        double t = bench_wall_now() - t0;
        if (t < best) best = t;
    }
    return best;
}

int main(int argc, char **argv)
{
    long mib = argc > 1 ? atol(argv[1]) : 10;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    if (mib < 1 || reps < 1) {
        fprintf(stderr, "usage: crc_bench [MIB >= 1] [REPS >= 1]\n");
        return 2;
    }
    size_t n = (size_t)mib << 20;
    unsigned char *buf = malloc(n);
    if (!buf) {
        fprintf(stderr, "crc_bench: out of memory for %ld MiB\n", mib);
        return 1;
    }
    for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)(i * 131u);
    uint32_t crc_sw, crc_hw;
    double t_sw = best_time(dt__crc32c_sw, buf, n, reps, &crc_sw);
    printf("crc32c %ld MiB, best of %d: software %.2f ms (%.0f MB/s)", mib, reps, t_sw * 1e3,
           (double)n / t_sw / 1e6);
    int status = 0;
    if (dt__crc32c_hw_available()) {
        double t_hw = best_time(dt__crc32c_hw, buf, n, reps, &crc_hw);
        printf(", sse4.2 %.2f ms (%.0f MB/s, %.1fx)", t_hw * 1e3, (double)n / t_hw / 1e6, t_sw / t_hw);
        if (crc_hw != crc_sw) {
            printf("\ncrc_bench: the paths disagree: software %08x, sse4.2 %08x", crc_sw, crc_hw);
            status = 1;
        }
    } else {
        printf(", no sse4.2 on this CPU");
    }
    printf("\n");
    free(buf);
    return status;
}
