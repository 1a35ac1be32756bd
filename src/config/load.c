/* load.c - dt_config_load: read the file, graft the --set values, validate.
 *
 * Validation walks the tree against the schema (schema.c): unknown sections
 * first (a typo is not a missing key), then the exclusive pairs, then the
 * selectors (optimizer.name, scheduler.name: per-optimizer defaults and
 * which keys apply depend on them), the defaults, every section's keys, and
 * last the checks and defaults that involve more than one key. */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "config_internal.h"

static dt_status check_sections(loader *L, const node *root)
{
    for (int i = 0; i < root->n; i++) {
        const entry *e = &root->ents[i];
        bool known = false;
        for (size_t s = 0; s < cfg_n_sections; s++)
            known |= strcmp(e->key, cfg_sections[s].name) == 0;
        if (known) continue;
        char list[200];
        size_t o = 0;
        for (size_t s = 0; s < cfg_n_sections; s++)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", s ? ", " : "",
                                  cfg_sections[s].name);
        return cfg_fail_entry(L, e, "%s: unknown section; allowed: %s", e->key, list);
    }
    return DT_OK;
}

/* The section's selector: its default, then its value when given. */
static dt_status read_selector(loader *L, const node *root, const section *sec, dt_config *cfg)
{
    cfg_apply_defaults(sec->selector, 1, NULL, cfg, DT_OPT_SGD);
    const node *s = cfg_lookup(root, sec->name);
    const node *n = s && s->kind == N_MAP ? cfg_lookup(s, sec->selector->key) : NULL;
    if (!n) return DT_OK; /* cfg_apply_map reports a missing name or a bad section */
    char path[PATH_BUF];
    snprintf(path, sizeof path, "%s.%s", sec->name, sec->selector->key);
    return cfg_parse_field(L, sec->selector, n, path, cfg);
}

/* Requirements that involve more than one key. */
static dt_status cross_checks(loader *L, const node *root, const dt_config *cfg)
{
    const node *opt = cfg_lookup(root, "optimizer"), *sch = cfg_lookup(root, "scheduler");
    const node *data = cfg_lookup(root, "data");
    if (isnan(cfg->optimizer.lr))
        return cfg_fail_node(L, opt ? opt : root,
                             "optimizer.lr: required key missing (for optimizer '%s')",
                             dt_optimizer_str(cfg->optimizer.hp.name));
    if (cfg->scheduler.sched.name == DT_SCHED_MULTISTEP && cfg->scheduler.sched.n_milestones == 0)
        return cfg_fail_node(L, sch ? sch : root,
                             "scheduler.milestones: required key missing (scheduler 'multistep' "
                             "needs milestones or milestones_epochs)");
    if (cfg->scheduler.sched.name == DT_SCHED_COSINE_RESTARTS && !cfg->scheduler.period.set)
        return cfg_fail_node(L, sch ? sch : root,
                             "scheduler.period: required key missing (scheduler "
                             "'cosine_restarts' needs period or period_epochs)");
    if (cfg->scheduler.sched.name == DT_SCHED_CYCLIC && isnan(cfg->scheduler.sched.max_lr))
        return cfg_fail_node(L, sch ? sch : root,
                             "scheduler.max_lr: required key missing (for scheduler 'cyclic')");
    if (strcmp(cfg->data.dataset, "idx") == 0) {
        static const char *const files[] = {"train_images", "train_labels", "test_images",
                                            "test_labels"};
        for (size_t i = 0; i < DT_ARRAY_LEN(files); i++)
            if (!cfg_lookup(data, files[i]))
                return cfg_fail_node(
                    L, data ? data : root,
                    "data.%s: required key missing (dataset 'idx' names all four files)", files[i]);
    }
    const dt_duration *mx = &cfg->scheduler.max, *wu = &cfg->scheduler.warmup;
    if (mx->set && wu->set && mx->in_epochs == wu->in_epochs && mx->value <= wu->value) {
        const entry *e = cfg_find(sch, mx->in_epochs ? "max_epochs" : "max_steps");
        return cfg_fail_at(L, e ? e->src : -1, e ? e->line : 0, e ? e->col : 0,
                           "scheduler.%s: expected more than scheduler.%s (%ld), got %ld",
                           mx->in_epochs ? "max_epochs" : "max_steps",
                           wu->in_epochs ? "warmup_epochs" : "warmup_steps", wu->value,
                           mx->value);
    }
    /* Reproducible mode sums in float32 over a fixed tree; a bfloat16 wire
     * rounds every partial sum, in an order the tree does not fix. */
    if (cfg->comm.reproducible && cfg->comm.dtype != DT_REDUCE_FLOAT32) {
        const entry *e = cfg_find(cfg_lookup(root, "comm"), "dtype");
        return cfg_fail_at(L, e ? e->src : -1, e ? e->line : 0, e ? e->col : 0,
                           "comm.dtype: %s cannot be exact with comm.reproducible: true (it "
                           "sums in float32); set comm.dtype: float32 or comm.reproducible: "
                           "false",
                           dt_reduce_dtype_name(cfg->comm.dtype));
    }
    /* The exact tree fixes which samples each rank sums; balancing moves
     * the cut with the measured speed. */
    if (cfg->comm.reproducible && cfg->comm.balance) {
        const entry *e = cfg_find(cfg_lookup(root, "comm"), "balance");
        return cfg_fail_at(L, e ? e->src : -1, e ? e->line : 0, e ? e->col : 0,
                           "comm.balance: true cannot be exact with comm.reproducible: true "
                           "(the cut of the batch would follow timing); set one of them to "
                           "false");
    }
    return DT_OK;
}

/* Defaults made of other values: run.name, run.out_dir, checkpoint.dir. */
static dt_status default_names(loader *L, const node *root, dt_config *cfg)
{
    if (!cfg->run.name[0]) { /* the file's base name without its extension */
        const char *b = strrchr(L->path, '/');
        b = b ? b + 1 : L->path;
        const char *dot = strrchr(b, '.');
        size_t len = dot && dot != b ? (size_t)(dot - b) : strlen(b);
        len = DT_MIN(len, sizeof cfg->run.name - 1);
        if (len == 0)
            snprintf(cfg->run.name, sizeof cfg->run.name, "run");
        else
            snprintf(cfg->run.name, sizeof cfg->run.name, "%.*s", (int)len, b);
    }
    if (!cfg->run.out_dir[0] &&
        (size_t)snprintf(cfg->run.out_dir, sizeof cfg->run.out_dir, "runs/%s", cfg->run.name) >=
            sizeof cfg->run.out_dir)
        return cfg_fail_node(L, root,
                             "run.out_dir: the default runs/<name> is too long; set run.out_dir");
    if (!cfg->checkpoint.dir[0] &&
        (size_t)snprintf(cfg->checkpoint.dir, sizeof cfg->checkpoint.dir, "%s/checkpoints",
                         cfg->run.out_dir) >= sizeof cfg->checkpoint.dir)
        return cfg_fail_node(L, root,
                             "checkpoint.dir: the default <out_dir>/checkpoints is too long; set "
                             "checkpoint.dir");
    return DT_OK;
}

static dt_status validate(loader *L, const node *root, dt_config *cfg)
{
    dt_status st = check_sections(L, root);
    if (!st) st = cfg_check_pairs(L, root);
    for (size_t s = 0; !st && s < cfg_n_sections; s++)
        if (cfg_sections[s].selector) st = read_selector(L, root, &cfg_sections[s], cfg);
    if (st) return st;
    for (size_t s = 0; s < cfg_n_sections; s++) {
        const section *t = &cfg_sections[s];
        cfg_apply_defaults(t->fields, t->n, t->selector, cfg, cfg->optimizer.hp.name);
    }
    for (size_t s = 0; s < cfg_n_sections; s++) {
        const section *t = &cfg_sections[s];
        st = cfg_apply_map(L, cfg_lookup(root, t->name), root, t->name, t->fields, t->n, t, cfg,
                           cfg);
        if (st) return st;
    }
    if ((st = cross_checks(L, root, cfg))) return st;
    return default_names(L, root, cfg);
}

/* The file as a tree whose top level is a mapping. */
static dt_status read_tree(loader *L, char **text, node **root)
{
    size_t len = 0;
    dt_status st = cfg_read_file(L, text, &len);
    if (!st) st = cfg_parse_doc(L, *text, len, -1, "", root);
    if (st || (*root)->kind == N_MAP) return st;
    char got[160];
    return cfg_is_null(*root) && !(*root)->text[0]
               ? cfg_fail_at(L, -1, 0, 0, "the file is empty (no YAML document)")
               : cfg_fail_node(L, *root,
                               "expected a mapping of sections (run:, model:, ...) at the "
                               "top level, got %s",
                               cfg_describe(*root, false, got, sizeof got));
}

dt_status dt_config_load(const char *path, const char *const *sets, int n_sets, dt_config *cfg,
                         dt_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    if (!path) return dt_fail(err, DT_ECONFIG, "no config file given");
    if (n_sets < 0 || (n_sets > 0 && !sets)) return dt_fail(err, DT_ECONFIG, "bad --set list");
    if (strlen(path) >= sizeof cfg->source)
        return dt_fail(err, DT_ECONFIG, "config path is longer than %zu bytes",
                       sizeof cfg->source - 1);
    for (int i = 0; i < n_sets; i++)
        if (!sets[i]) return dt_fail(err, DT_ECONFIG, "bad --set list");

    loader L = {.path = path, .sets = sets, .err = err};
    char *text = NULL;
    node *root = NULL;
    dt_status st = read_tree(&L, &text, &root);
    if (!st) st = cfg_check_pairs(&L, root); /* both in the file, before --set can hide it */
    for (int i = 0; !st && i < n_sets; i++) st = cfg_apply_set(&L, root, i);
    if (!st) {
        snprintf(cfg->source, sizeof cfg->source, "%s", path);
        st = validate(&L, root, cfg);
    }
    cfg_node_free(root);
    dt_free(text);
    /* one line whatever the input: keys, paths and --set text may hold
     * control characters (a folded multi-line key has newlines) */
    if (st && err)
        for (char *c = err->msg; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
    return st;
}

long dt_duration_steps(dt_duration d, long updates_per_epoch)
{
    if (!d.in_epochs) return d.value;
    if (d.value <= 0 || updates_per_epoch <= 0) return 0;
    if (d.value > LONG_MAX / updates_per_epoch) return LONG_MAX;
    return d.value * updates_per_epoch;
}
