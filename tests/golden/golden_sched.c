/* golden_sched.c - checker for kind: sched reference files.
 *
 * Builds a dt_sched from the headers (format: tests/reference/README.md) and
 * compares dt_sched_lr(k) with every `lr k v` line, k = 0 .. count-1, at
 * rtol 1e-6, atol 1e-12; the cyclic schedules (cosine_restarts, one_cycle,
 * cyclic), whose files hold torch's own float64 rates and whose C code
 * repeats torch's operations, at rtol 1e-12, atol 1e-18. The header parser is shared with golden_optim.c,
 * whose files carry the same scheduler keys. Every header must be known:
 * an unexpected key or a missing one makes the file uncheckable (-1). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtrain/sched.h"
#include "refparse.h"

int golden_sched_parse(const ref_file *f, dt_sched *s, char *why, size_t why_size);
int golden_sched_known_key(const char *scheduler, const char *key);

static const struct {
    const char *name;
    dt_sched_name id;
    const char *keys; /* the keys this schedule needs, space-separated */
} sched_names[] = {
    {"constant", DT_SCHED_CONSTANT, ""},
    {"factor", DT_SCHED_FACTOR, "factor step_size min_lr"},
    {"multistep", DT_SCHED_MULTISTEP, "milestones factor"},
    {"sqrt", DT_SCHED_SQRT, ""},
    {"cosine", DT_SCHED_COSINE, "max_steps final_lr"},
    {"poly", DT_SCHED_POLY, "max_steps power final_lr"},
    {"cosine_restarts", DT_SCHED_COSINE_RESTARTS, "period period_mult min_lr"},
    {"one_cycle", DT_SCHED_ONE_CYCLE,
     "max_steps pct_start div_factor final_div_factor anneal_strategy three_phase"},
    {"cyclic", DT_SCHED_CYCLIC, "max_lr step_size_up step_size_down mode gamma"},
};

static int in_list(const char *list, const char *key);

/* A header word that one of sched's name functions spells; -1 if none. */
static int parse_word(const ref_file *f, const char *key, const char *(*name)(int), int count,
                      char *why, size_t why_size)
{
    const char *v = ref_header(f, key);
    for (int i = 0; v && i < count; i++)
        if (strcmp(v, name(i)) == 0) return i;
    snprintf(why, why_size, "bad or missing header '%s'", key);
    return -1;
}
static const char *mode_name(int i) { return dt_cyclic_mode_str((dt_cyclic_mode)i); }
static const char *anneal_name(int i) { return dt_anneal_str((dt_anneal)i); }

/* The keys of the cyclic schedules into s; 0, or -1 with why. */
static int parse_cyclic_keys(const ref_file *f, const char *keys, dt_sched *s, char *why,
                             size_t why_size)
{
    long three = 0;
    if (in_list(keys, "period") &&
        (ref_header_long(f, "period", &s->period, why, why_size) ||
         ref_header_long(f, "period_mult", &s->period_mult, why, why_size) ||
         ref_header_double(f, "min_lr", &s->min_lr, why, why_size)))
        return -1;
    if (in_list(keys, "pct_start")) {
        if (ref_header_double(f, "pct_start", &s->pct_start, why, why_size) ||
            ref_header_double(f, "div_factor", &s->div_factor, why, why_size) ||
            ref_header_double(f, "final_div_factor", &s->final_div_factor, why, why_size) ||
            ref_header_long(f, "three_phase", &three, why, why_size))
            return -1;
        int a = parse_word(f, "anneal_strategy", anneal_name, DT_ANNEAL_COUNT, why, why_size);
        if (a < 0) return -1;
        s->anneal = (dt_anneal)a;
        s->three_phase = three != 0;
    }
    if (in_list(keys, "step_size_up")) {
        if (ref_header_double(f, "max_lr", &s->max_lr, why, why_size) ||
            ref_header_long(f, "step_size_up", &s->step_size_up, why, why_size) ||
            ref_header_long(f, "step_size_down", &s->step_size_down, why, why_size) ||
            ref_header_double(f, "gamma", &s->gamma, why, why_size))
            return -1;
        int m = parse_word(f, "mode", mode_name, DT_CYCLIC_MODE_COUNT, why, why_size);
        if (m < 0) return -1;
        s->cyclic_mode = (dt_cyclic_mode)m;
    }
    return 0;
}

static int find_sched(const char *name)
{
    for (size_t i = 0; i < sizeof sched_names / sizeof sched_names[0]; i++)
        if (name && strcmp(sched_names[i].name, name) == 0) return (int)i;
    return -1;
}

/* Whole-word membership of key in a space-separated list. */
static int in_list(const char *list, const char *key)
{
    size_t len = strlen(key);
    for (const char *p = list; (p = strstr(p, key)) != NULL; p += len)
        if ((p == list || p[-1] == ' ') && (p[len] == ' ' || p[len] == 0)) return 1;
    return 0;
}

/* Is key one of the scheduler keys of `scheduler` (common ones included)? */
int golden_sched_known_key(const char *scheduler, const char *key)
{
    int i = find_sched(scheduler);
    if (in_list("scheduler lr warmup_steps warmup_begin_lr", key)) return 1;
    return i >= 0 && in_list(sched_names[i].keys, key);
}

static int parse_milestones(const char *v, dt_sched *s, char *why, size_t why_size)
{
    s->n_milestones = 0;
    const char *p = v;
    for (;;) {
        while (*p == ' ') p++;
        if (!*p) break;
        char *end;
        long m = strtol(p, &end, 10);
        if (end == p || (*end && *end != ' ') || m < 0) {
            snprintf(why, why_size, "bad milestones: %s", v);
            return -1;
        }
        if (s->n_milestones == DT_MAX_MILESTONES) {
            snprintf(why, why_size, "more than %d milestones", DT_MAX_MILESTONES);
            return -1;
        }
        if (s->n_milestones > 0 && m < s->milestones[s->n_milestones - 1]) {
            snprintf(why, why_size, "milestones not increasing: %s", v);
            return -1;
        }
        s->milestones[s->n_milestones++] = m;
        p = end;
    }
    return 0;
}

int golden_sched_parse(const ref_file *f, dt_sched *s, char *why, size_t why_size)
{
    memset(s, 0, sizeof *s);
    const char *name = ref_header(f, "scheduler");
    int i = find_sched(name);
    if (i < 0) {
        snprintf(why, why_size, "unknown scheduler '%s'", name ? name : "(missing)");
        return -1;
    }
    s->name = sched_names[i].id;
    if (ref_header_double(f, "lr", &s->base_lr, why, why_size) ||
        ref_header_long(f, "warmup_steps", &s->warmup_steps, why, why_size) ||
        ref_header_double(f, "warmup_begin_lr", &s->warmup_begin_lr, why, why_size))
        return -1;
    if (s->warmup_steps < 0) {
        snprintf(why, why_size, "warmup_steps < 0");
        return -1;
    }
    const char *keys = sched_names[i].keys;
    if (in_list(keys, "factor") && ref_header_double(f, "factor", &s->factor, why, why_size))
        return -1;
    if (in_list(keys, "step_size")) {
        if (ref_header_long(f, "step_size", &s->step_size, why, why_size) ||
            ref_header_double(f, "min_lr", &s->min_lr, why, why_size))
            return -1;
        if (s->step_size < 1) {
            snprintf(why, why_size, "step_size < 1");
            return -1;
        }
    }
    if (in_list(keys, "milestones")) {
        const char *v = ref_header(f, "milestones");
        if (!v) {
            snprintf(why, why_size, "missing header 'milestones'");
            return -1;
        }
        if (parse_milestones(v, s, why, why_size)) return -1;
    }
    if (in_list(keys, "max_steps")) {
        if (ref_header_long(f, "max_steps", &s->max_steps, why, why_size) ||
            (in_list(keys, "final_lr") &&
             ref_header_double(f, "final_lr", &s->final_lr, why, why_size)))
            return -1;
        if (s->max_steps <= s->warmup_steps) {
            snprintf(why, why_size, "max_steps must exceed warmup_steps");
            return -1;
        }
    }
    if (in_list(keys, "power") && ref_header_double(f, "power", &s->power, why, why_size))
        return -1;
    return parse_cyclic_keys(f, keys, s, why, why_size);
}

int golden_check_sched(const ref_file *f, double *worst, char *why, size_t why_size)
{
    dt_sched s;
    long count;
    int failed = 0;
    *worst = 0;
    if (golden_sched_parse(f, &s, why, why_size)) return -1;
    const int torch_made = s.name == DT_SCHED_COSINE_RESTARTS || s.name == DT_SCHED_ONE_CYCLE ||
                           s.name == DT_SCHED_CYCLIC;
    const double rtol = torch_made ? 1e-12 : 1e-6, atol = torch_made ? 1e-18 : 1e-12;
    const char *scheduler = ref_header(f, "scheduler");
    for (int h = 0; h < f->n_headers; h++) {
        const char *key = f->keys[h];
        if (strcmp(key, "kind") && strcmp(key, "case") && strcmp(key, "count") &&
            !golden_sched_known_key(scheduler, key)) {
            snprintf(why, why_size, "unexpected header '%s' for scheduler %s", key, scheduler);
            return -1;
        }
    }
    if (ref_header_long(f, "count", &count, why, why_size)) return -1;
    if (count < 1) {
        snprintf(why, why_size, "count < 1");
        return -1;
    }
    if (f->n_lines != count) {
        snprintf(why, why_size, "%d data lines, count says %ld", f->n_lines, count);
        return -1;
    }
    for (long k = 0; k < count; k++) {
        char prefix[32];
        double ref;
        snprintf(prefix, sizeof prefix, "lr %ld", k);
        if (ref_row(f, prefix, &ref, 1) != 1) {
            snprintf(why, why_size, "no single-value line '%s'", prefix);
            return -1;
        }
        double got = dt_sched_lr(&s, k);
        double ratio = fabs(got - ref) / (atol + rtol * fabs(ref));
        if (isnan(ratio)) ratio = INFINITY;
        if (ratio > *worst) *worst = ratio;
        if (ratio > 1 && !failed) {
            failed = 1;
            snprintf(why, why_size, "lr(%ld) = %.17g, reference %.17g", k, got, ref);
        }
    }
    return failed;
}
