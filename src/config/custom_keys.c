/* custom_keys.c - the two keys whose value is a list of structured items.
 *
 * model.layers: each item is a layer kind in the form cfg_layer_forms gives
 * it (a bare word, {kind: VALUE} or {kind: {params}}), named as nn names it;
 * the item's position is kept in the dt_layer_spec so that nn's shape
 * errors point into the file.
 * scheduler.milestones | milestones_epochs: an increasing list of ints,
 * stored in the embedded dt_sched with the unit of the key that gave it. */
#include <limits.h>
#include <string.h>

#include "config_internal.h"

/* ======================================================================
 * model.layers
 * ====================================================================== */
static bool is_word(const layer_form *form) { return !form->value && !form->params; }

/* A bare word: relu, sigmoid, tanh, flatten. */
static dt_status parse_word_layer(loader *L, const node *n, const char *path,
                                  dt_layer_spec *spec)
{
    for (int k = 0; k < DT_LAYER_KIND_COUNT; k++)
        if (is_word(&cfg_layer_forms[k]) && strcmp(n->text, dt_layer_str((dt_layer_kind)k)) == 0) {
            spec->kind = (dt_layer_kind)k;
            return DT_OK;
        }
    char got[160];
    return cfg_fail_node(L, n, "%s: unknown layer %s; expected %s", path,
                         cfg_describe(n, false, got, sizeof got), cfg_layer_help);
}

/* {kind: VALUE} or {kind: {params}}; `item` places a missing parameter. */
static dt_status parse_keyed_layer(loader *L, const node *item, const char *path,
                                   dt_layer_spec *spec, const dt_config *cfg)
{
    const entry *e = &item->ents[0];
    char sub[PATH_BUF];
    cfg_subpath(sub, sizeof sub, "%s.%s", path, e->key);
    for (int k = 0; k < DT_LAYER_KIND_COUNT; k++) {
        const layer_form *form = &cfg_layer_forms[k];
        if (is_word(form) || strcmp(e->key, dt_layer_str((dt_layer_kind)k)) != 0) continue;
        spec->kind = (dt_layer_kind)k;
        if (form->value) return cfg_parse_field(L, form->value, e->val, sub, spec);
        if (form->if_null && cfg_is_null(e->val))
            return cfg_expected(L, e->val, sub, form->if_null, "");
        cfg_apply_defaults(form->params, form->n_params, NULL, spec, 0);
        return cfg_apply_map(L, e->val, item, sub, form->params, form->n_params, NULL, spec, cfg);
    }
    char key[160];
    node k = {.kind = N_SCALAR, .plain = true, .text = e->key};
    return cfg_fail_entry(L, e, "%s: unknown layer %s; expected %s", path,
                          cfg_describe(&k, false, key, sizeof key), cfg_layer_help);
}

static dt_status parse_layer(loader *L, const node *n, const char *path, dt_layer_spec *spec,
                             const dt_config *cfg)
{
    memset(spec, 0, sizeof *spec);
    spec->line = n->line;
    spec->col = n->col;
    if (n->kind == N_SCALAR) return parse_word_layer(L, n, path, spec);
    if (n->kind != N_MAP || n->n != 1) {
        char got[160];
        return cfg_fail_node(L, n, "%s: expected one layer like {dense: 64}, got %s", path,
                             cfg_describe(n, false, got, sizeof got));
    }
    return parse_keyed_layer(L, n, path, spec, cfg);
}

static dt_status parse_layers(loader *L, const field *f, const node *n, const char *path,
                              void *base)
{
    dt_config *cfg = base;
    if (n->kind != N_LIST || n->n == 0)
        return cfg_expected(L, n, path, "a non-empty list of layers", "");
    if (n->n > DT_MAX_LAYERS) {
        char what[64];
        snprintf(what, sizeof what, "at most %d layers", DT_MAX_LAYERS);
        return cfg_expected(L, n, path, what, "");
    }
    for (int i = 0; i < n->n; i++) {
        char sub[PATH_BUF];
        cfg_subpath(sub, sizeof sub, "%s[%d]", path, i);
        dt_status st = parse_layer(L, n->ents[i].val, sub, &cfg->model.layers[i], cfg);
        if (st) return st;
    }
    cfg->model.n_layers = n->n;
    return DT_OK;
}

/* One item per line, in the form it was read in: "    - {conv: {out: 6, ...}}". */
static void write_layers(const field *f, const void *base, FILE *out)
{
    const dt_config *cfg = base;
    fputc('\n', out);
    for (int i = 0; i < cfg->model.n_layers; i++) {
        const dt_layer_spec *s = &cfg->model.layers[i];
        static const layer_form word = {0}; /* a kind out of range is written as "?" */
        const layer_form *form =
            (unsigned)s->kind < DT_LAYER_KIND_COUNT ? &cfg_layer_forms[s->kind] : &word;
        const char *name = dt_layer_str(s->kind);
        fprintf(out, "    - ");
        if (form->value) {
            fprintf(out, "{%s: %ld}", name, cfg_load_int(s, form->value));
        } else if (form->params) {
            fprintf(out, "{%s: {", name);
            for (size_t k = 0; k < form->n_params; k++)
                fprintf(out, "%s%s: %ld", k ? ", " : "", form->params[k].key,
                        cfg_load_int(s, &form->params[k]));
            fprintf(out, "}}");
        } else {
            fprintf(out, "%s", name);
        }
        if (i + 1 < cfg->model.n_layers) fputc('\n', out);
    }
}

const custom_ops cfg_layers_ops = {.parse = parse_layers, .write = write_layers};

/* ======================================================================
 * scheduler.milestones | milestones_epochs
 * ====================================================================== */
static dt_status parse_milestones(loader *L, const field *f, const node *n, const char *path,
                                  void *base)
{
    dt_config *cfg = base;
    dt_sched *s = &cfg->scheduler.sched;
    char what[96];
    snprintf(what, sizeof what, "a non-empty list of at most %d increasing ints > 0",
             DT_MAX_MILESTONES);
    if (n->kind != N_LIST || n->n == 0 || n->n > DT_MAX_MILESTONES)
        return cfg_expected(L, n, path, what, "");
    for (int i = 0; i < n->n; i++) {
        char sub[PATH_BUF];
        cfg_subpath(sub, sizeof sub, "%s[%d]", path, i);
        long v = 0;
        dt_status st = cfg_get_int(L, n->ents[i].val, sub, R_GT0, LONG_MAX, &v);
        if (st) return st;
        if (i > 0 && v <= s->milestones[i - 1]) {
            snprintf(what, sizeof what, "an int > %ld (milestones must increase)",
                     s->milestones[i - 1]);
            return cfg_expected(L, n->ents[i].val, sub, what, "");
        }
        s->milestones[i] = v;
    }
    s->n_milestones = n->n;
    cfg->scheduler.milestones_in_epochs = f->unit == U_EPOCHS;
    return DT_OK;
}

static void write_milestones(const field *f, const void *base, FILE *out)
{
    const dt_sched *s = &((const dt_config *)base)->scheduler.sched;
    fputs(" [", out);
    for (int i = 0; i < s->n_milestones; i++)
        fprintf(out, "%s%ld", i ? ", " : "", s->milestones[i]);
    fputc(']', out);
}

static dur_unit milestones_unit(const void *base)
{
    return ((const dt_config *)base)->scheduler.milestones_in_epochs ? U_EPOCHS : U_STEPS;
}

const custom_ops cfg_milestones_ops = {
    .parse = parse_milestones, .write = write_milestones, .held_unit = milestones_unit};
