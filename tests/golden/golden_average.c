/* golden_average.c - checker for kind: average reference files.
 *
 * The procedure of tests/reference/README.md ("average/"): avg = 0; for
 * t = 1 .. steps, with w = `param t` (float32 values, exactly), fold w into
 * avg with dt_average_update_range when t > start, n_before =
 * dt_average_count(t) - 1, and compare avg with `avg t` at rtol 1e-6,
 * atol 1e-7 (the copy is float32, each element computed in double and
 * rounded once). A coordinate whose reference is exactly 0 must be exactly
 * 0. `avg t` lines must exist for exactly the t > start. Unknown or missing
 * headers make the file uncheckable (-1). The average is checked in two
 * ranges ([0, n/2) and [n/2, n)), as a sharded update computes it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtrain/average.h"
#include "refparse.h"

#define MAX_N 64

int golden_check_average(const ref_file *f, double *worst, char *why, size_t why_size)
{
    const double rtol = 1e-6, atol = 1e-7;
    *worst = 0;
    dt_average_hparams hp = {0};
    const char *kind = ref_header(f, "average");
    if (kind && strcmp(kind, "ema") == 0) hp.kind = DT_AVERAGE_EMA;
    else if (kind && strcmp(kind, "swa") == 0) hp.kind = DT_AVERAGE_SWA;
    else {
        snprintf(why, why_size, "unknown average '%s'", kind ? kind : "(missing)");
        return -1;
    }
    long n, steps;
    if (ref_header_long(f, "start", &hp.start, why, why_size) ||
        ref_header_long(f, "n", &n, why, why_size) ||
        ref_header_long(f, "steps", &steps, why, why_size) ||
        (hp.kind == DT_AVERAGE_EMA && ref_header_double(f, "decay", &hp.decay, why, why_size)))
        return -1;
    for (int h = 0; h < f->n_headers; h++) {
        const char *k = f->keys[h];
        const char *known[] = {"kind", "case", "average", "start", "n", "steps"};
        int ok = hp.kind == DT_AVERAGE_EMA && strcmp(k, "decay") == 0;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) ok |= strcmp(k, known[i]) == 0;
        if (!ok) {
            snprintf(why, why_size, "unexpected header '%s'", k);
            return -1;
        }
    }
    if (n < 1 || n > MAX_N || steps < 1 || hp.start < 0) {
        snprintf(why, why_size, "n, steps or start out of range");
        return -1;
    }
    float w[MAX_N], avg[MAX_N] = {0};
    double ref[MAX_N];
    int failed = 0;
    for (long t = 1; t <= steps; t++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "param %ld", t);
        if (ref_row(f, prefix, ref, MAX_N) != n) {
            snprintf(why, why_size, "no line '%s' of %ld values", prefix, n);
            return -1;
        }
        for (long i = 0; i < n; i++) w[i] = (float)ref[i];
        snprintf(prefix, sizeof prefix, "avg %ld", t);
        int have = ref_row(f, prefix, ref, MAX_N);
        if (!dt_average_due(&hp, t)) {
            if (have >= 0) {
                snprintf(why, why_size, "line '%s' for an update before start", prefix);
                return -1;
            }
            continue;
        }
        if (have != n) {
            snprintf(why, why_size, "no line '%s' of %ld values", prefix, n);
            return -1;
        }
        const long n_before = dt_average_count(&hp, t) - 1;
        dt_average_update_range(&hp, avg, w, n_before, 0, (size_t)n / 2);
        dt_average_update_range(&hp, avg, w, n_before, (size_t)n / 2, (size_t)n);
        double r = ref_worst_ratio(avg, ref, (int)n, rtol, atol);
        for (long i = 0; i < n; i++)
            if (ref[i] == 0 && avg[i] != 0) r = INFINITY;
        if (r > *worst) *worst = r;
        if (r > 1 && !failed) {
            failed = 1;
            snprintf(why, why_size, "avg %ld differs (worst ratio %.3g)", t, r);
        }
    }
    return failed;
}
