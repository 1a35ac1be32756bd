/* golden_optim.c - checker for kind: optim reference files.
 *
 * The open-loop procedure of tests/reference/README.md: w = init; for
 * t = 1 .. steps take `grad t`, run dt_optim_preprocess with OUR w (coupled
 * decay, clipping), dt_optim_step with `lr t`, and compare w with `param t`
 * at rtol 1e-5, atol 1e-5. Also:
 *   - a reference value that is exactly 0 must be exactly 0 here (the
 *     "zeros" coordinates: no 0/0, no drift);
 *   - every `lr t` line must equal dt_sched_lr(t-1) of the dt_sched built
 *     from the scheduler headers (rtol 1e-6, atol 1e-12), which checks the
 *     schedule module on nine more configurations;
 *   - the worst ratio at the tight tolerance (rtol 1e-5, atol 1e-6) is
 *     computed too and printed to stderr when DT_GOLDEN_VERBOSE is set.
 * Unknown optimizer names, unknown or missing headers, and missing or short
 * data lines make the file uncheckable (-1). */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtrain/optim.h"
#include "dtrain/sched.h"
#include "refparse.h"

/* golden_sched.c */
int golden_sched_parse(const ref_file *f, dt_sched *s, char *why, size_t why_size);
int golden_sched_known_key(const char *scheduler, const char *key);

static const struct {
    const char *name;
    dt_optimizer_name id;
    const char *keys; /* hyperparameter headers, space-separated */
} optim_names[] = {
    {"sgd", DT_OPT_SGD, "momentum nesterov"},
    {"momentum", DT_OPT_MOMENTUM, "momentum nesterov"},
    {"adagrad", DT_OPT_ADAGRAD, "eps"},
    {"rmsprop", DT_OPT_RMSPROP, "alpha eps"},
    {"adadelta", DT_OPT_ADADELTA, "rho eps"},
    {"adam", DT_OPT_ADAM, "beta1 beta2 eps"},
    {"adamw", DT_OPT_ADAMW, "beta1 beta2 eps"},
    {"yogi", DT_OPT_YOGI, "beta1 beta2 eps"},
};

static bool in_list(const char *list, const char *key)
{
    size_t len = strlen(key);
    for (const char *p = list; (p = strstr(p, key)) != NULL; p += len)
        if ((p == list || p[-1] == ' ') && (p[len] == ' ' || p[len] == 0)) return true;
    return false;
}

/* Fill hp from the headers; -1 with why on anything unexpected. */
static int parse_hparams(const ref_file *f, dt_optim_hparams *hp, char *why, size_t why_size)
{
    memset(hp, 0, sizeof *hp);
    const char *name = ref_header(f, "optimizer");
    int idx = -1;
    for (size_t i = 0; i < sizeof optim_names / sizeof optim_names[0]; i++)
        if (name && strcmp(optim_names[i].name, name) == 0) idx = (int)i;
    if (idx < 0) {
        snprintf(why, why_size, "unknown optimizer '%s'", name ? name : "(missing)");
        return -1;
    }
    const char *keys = optim_names[idx].keys;
    hp->name = optim_names[idx].id;
    const struct {
        const char *key;
        double *dst;
    } dbl[] = {
        {"momentum", &hp->momentum}, {"alpha", &hp->alpha}, {"rho", &hp->rho},
        {"beta1", &hp->beta1},       {"beta2", &hp->beta2}, {"eps", &hp->eps},
    };
    for (size_t i = 0; i < sizeof dbl / sizeof dbl[0]; i++)
        if (in_list(keys, dbl[i].key) &&
            ref_header_double(f, dbl[i].key, dbl[i].dst, why, why_size))
            return -1;
    if (in_list(keys, "nesterov")) {
        long nest;
        if (ref_header_long(f, "nesterov", &nest, why, why_size)) return -1;
        if (nest != 0 && nest != 1) {
            snprintf(why, why_size, "nesterov must be 0 or 1");
            return -1;
        }
        hp->nesterov = nest == 1;
    }
    if (ref_header_double(f, "weight_decay", &hp->weight_decay, why, why_size) ||
        ref_header_double(f, "clip_grad_norm", &hp->clip_grad_norm, why, why_size))
        return -1;
    if (hp->weight_decay < 0 || hp->clip_grad_norm < 0 || hp->eps < 0 || hp->momentum < 0) {
        snprintf(why, why_size, "negative hyperparameter");
        return -1;
    }
    /* every header must be one we understand */
    const char *scheduler = ref_header(f, "scheduler");
    for (int h = 0; h < f->n_headers; h++) {
        const char *key = f->keys[h];
        if (!in_list("kind case optimizer n steps weight_decay clip_grad_norm", key) &&
            !in_list(keys, key) && !golden_sched_known_key(scheduler, key)) {
            snprintf(why, why_size, "unexpected header '%s' for optimizer %s", key, name);
            return -1;
        }
    }
    return 0;
}

/* The numbers of line `label t` into out (exactly n of them), else -1. */
static int row(const ref_file *f, const char *label, long t, double *out, int n, char *why,
               size_t why_size)
{
    char prefix[64];
    if (t >= 0)
        snprintf(prefix, sizeof prefix, "%s %ld", label, t);
    else
        snprintf(prefix, sizeof prefix, "%s", label);
    int got = ref_row(f, prefix, out, n);
    if (got != n) {
        snprintf(why, why_size, "line '%s': %s", prefix, got < 0 ? "missing" : "wrong count");
        return -1;
    }
    return 0;
}

int golden_check_optim(const ref_file *f, double *worst, char *why, size_t why_size)
{
    const double rtol = 1e-5, atol = 1e-5, atol_tight = 1e-6;
    dt_optim_hparams hp;
    dt_sched sched;
    long n, steps;
    *worst = 0;
    if (parse_hparams(f, &hp, why, why_size) || golden_sched_parse(f, &sched, why, why_size) ||
        ref_header_long(f, "n", &n, why, why_size) ||
        ref_header_long(f, "steps", &steps, why, why_size))
        return -1;
    if (n < 1 || n > 1000000 || steps < 1) {
        snprintf(why, why_size, "bad n %ld or steps %ld", n, steps);
        return -1;
    }
    float *w = malloc((size_t)n * sizeof *w), *g = malloc((size_t)n * sizeof *g);
    double *ref = malloc((size_t)n * sizeof *ref);
    dt_optimizer opt;
    dt_error err;
    int rc = -1;
    double tight = 0;
    bool opt_live = false;
    if (!w || !g || !ref) {
        snprintf(why, why_size, "out of memory");
        goto done;
    }
    if (dt_optim_init(&opt, &hp, (size_t)n, &err) != DT_OK) {
        snprintf(why, why_size, "dt_optim_init: %s", err.msg);
        goto done;
    }
    opt_live = true;
    if (row(f, "init", -1, ref, (int)n, why, why_size)) goto done;
    for (long i = 0; i < n; i++) w[i] = (float)ref[i];

    rc = 0;
    for (long t = 1; t <= steps; t++) {
        double lr;
        if (row(f, "lr", t, &lr, 1, why, why_size) || row(f, "grad", t, ref, (int)n, why, why_size)) {
            rc = -1;
            goto done;
        }
        double lr_sched = dt_sched_lr(&sched, t - 1);
        if (fabs(lr_sched - lr) > 1e-12 + 1e-6 * fabs(lr) && rc == 0) {
            snprintf(why, why_size, "lr %ld = %.17g but dt_sched_lr(%ld) = %.17g", t, lr, t - 1,
                     lr_sched);
            rc = 1;
        }
        for (long i = 0; i < n; i++) g[i] = (float)ref[i];
        if (!dt_all_finite(g, (size_t)n)) {
            snprintf(why, why_size, "grad %ld is not finite", t);
            rc = -1;
            goto done;
        }
        dt_optim_preprocess(&opt, w, g);
        dt_optim_step(&opt, w, g, lr);
        if (row(f, "param", t, ref, (int)n, why, why_size)) {
            rc = -1;
            goto done;
        }
        double r = ref_worst_ratio(w, ref, (int)n, rtol, atol);
        double rt = ref_worst_ratio(w, ref, (int)n, rtol, atol_tight);
        if (r > *worst) *worst = r;
        if (rt > tight) tight = rt;
        for (long i = 0; i < n && rc == 0; i++) {
            if (ref[i] == 0 && w[i] != 0) {
                snprintf(why, why_size, "param %ld [%ld] = %g, must stay exactly 0", t, i,
                         (double)w[i]);
                rc = 1;
            }
        }
        if (r > 1 && rc == 0) {
            long bad = 0;
            for (long i = 1; i < n; i++)
                if (fabs(w[i] - ref[i]) / (atol + rtol * fabs(ref[i])) >
                    fabs(w[bad] - ref[bad]) / (atol + rtol * fabs(ref[bad])))
                    bad = i;
            snprintf(why, why_size, "param %ld [%ld] = %.9g, reference %.17g", t, bad,
                     (double)w[bad], ref[bad]);
            rc = 1;
        }
    }
    if (opt.t != steps && rc == 0) {
        snprintf(why, why_size, "optimizer t = %ld after %ld updates", opt.t, steps);
        rc = 1;
    }
    if (getenv("DT_GOLDEN_VERBOSE"))
        fprintf(stderr, "optim %-40s worst %.3g (atol 1e-5)  %.3g (atol 1e-6)\n",
                ref_header(f, "case") ? ref_header(f, "case") : f->path, *worst, tight);
done:
    if (opt_live) dt_optim_free(&opt);
    free(w);
    free(g);
    free(ref);
    return rc;
}
