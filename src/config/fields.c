/* fields.c - the engine behind the schema rows: defaults, parsing, checks.
 *
 * A scalar is a number or a bool only when it is plain (unquoted); a value
 * is stored through the row's offset into the base struct, in the C type
 * the row names. A mapping is parsed row by row (cfg_apply_map): unknown
 * keys, keys that do not apply to the chosen optimizer or scheduler and
 * missing required keys are errors that list what would have been right. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"

#define AT(base, f, type) ((type *)((char *)(base) + (f)->off))
#define CAT(base, f, type) ((const type *)((const char *)(base) + (f)->off))

/* ======================================================================
 * Scalars
 * ====================================================================== */
static bool scalar_ok(const node *n)
{
    return n->kind == N_SCALAR && n->plain && n->text[0] && !isspace((unsigned char)n->text[0]);
}

static bool to_long(const node *n, long *out)
{
    if (!scalar_ok(n)) return false;
    char *end;
    errno = 0;
    long v = strtol(n->text, &end, 10);
    if (*end || errno == ERANGE) return false;
    *out = v;
    return true;
}

static bool to_double(const node *n, double *out)
{
    if (!scalar_ok(n)) return false;
    char *end;
    double v = strtod(n->text, &end);
    if (*end || !isfinite(v)) return false;
    *out = v;
    return true;
}

static bool to_bool(const node *n, bool *out)
{
    if (n->kind != N_SCALAR || !n->plain) return false;
    static const char *const t[] = {"true", "True", "TRUE"};
    static const char *const f[] = {"false", "False", "FALSE"};
    for (size_t i = 0; i < DT_ARRAY_LEN(t); i++) {
        if (strcmp(n->text, t[i]) == 0) return *out = true, true;
        if (strcmp(n->text, f[i]) == 0) return *out = false, true;
    }
    return false;
}

static const char *range_text(frange r)
{
    switch (r) {
    case R_GE0: return " >= 0";
    case R_GT0: return " > 0";
    case R_UNIT: return " in [0, 1)";
    case R_FRAC: return " in (0, 1]";
    default: return "";
    }
}

static bool in_range(double v, frange r)
{
    switch (r) {
    case R_GE0: return v >= 0;
    case R_GT0: return v > 0;
    case R_UNIT: return v >= 0 && v < 1;
    case R_FRAC: return v > 0 && v <= 1;
    default: return true;
    }
}

dt_status cfg_get_int(loader *L, const node *n, const char *path, frange r, long max, long *out)
{
    char what[64];
    snprintf(what, sizeof what, "an int%s", range_text(r));
    long v = 0;
    if (!to_long(n, &v)) return cfg_expected(L, n, path, what, "");
    if (!in_range((double)v, r)) return cfg_expected(L, n, path, what, "");
    if (v > max) {
        char note[64];
        snprintf(note, sizeof note, " (at most %ld)", max);
        return cfg_expected(L, n, path, what, note);
    }
    *out = v;
    return DT_OK;
}

void cfg_join_names(char *buf, size_t size, const name_list *names, unsigned mask)
{
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < names->count && o < size; i++)
        if (mask & (1u << i))
            o += (size_t)snprintf(buf + o, size - o, "%s%s", o ? ", " : "", names->name(i));
}

/* ======================================================================
 * Storing and loading through a row
 * ====================================================================== */
static void store_int(void *base, const field *f, long v)
{
    switch (f->width) {
    case W_INT: *AT(base, f, int) = (int)v; break;
    case W_ULL: *AT(base, f, unsigned long long) = (unsigned long long)v; break;
    case W_LONG: *AT(base, f, long) = v; break;
    }
}

long cfg_load_int(const void *base, const field *f)
{
    switch (f->width) {
    case W_INT: return *CAT(base, f, int);
    case W_ULL: return (long)*CAT(base, f, unsigned long long);
    case W_LONG: break;
    }
    return *CAT(base, f, long);
}

static void store_enum(void *base, const field *f, int v)
{
    if (f->capacity)
        snprintf(AT(base, f, char), f->capacity, "%s", f->names->name(v));
    else
        *AT(base, f, int) = v;
}

int cfg_load_enum(const void *base, const field *f)
{
    if (!f->capacity) return *CAT(base, f, int);
    for (int i = 0; i < f->names->count; i++)
        if (strcmp(CAT(base, f, char), f->names->name(i)) == 0) return i;
    return 0;
}

/* Member by member, so padding stays as memset left it (tests memcmp configs). */
static void store_dur(void *base, const field *f, long v)
{
    dt_duration *d = AT(base, f, dt_duration);
    d->value = v;
    d->in_epochs = f->unit == U_EPOCHS;
    d->set = true;
}

/* ======================================================================
 * Defaults
 * ====================================================================== */
void cfg_apply_defaults(const field *tab, size_t n, const field *skip, void *base,
                        dt_optimizer_name opt)
{
    for (size_t i = 0; i < n; i++) {
        const field *f = &tab[i];
        if (f == skip) continue;
        double d = f->def_opt ? f->def_opt[opt] : f->def;
        switch (f->type) {
        case F_FLOAT: *AT(base, f, double) = d; break; /* NAN: required (lr) */
        case F_INT:
            if (!isnan(d)) store_int(base, f, (long)d);
            break;
        case F_BOOL:
            if (!isnan(d)) *AT(base, f, bool) = d != 0;
            break;
        case F_ENUM:
            if (!isnan(d)) store_enum(base, f, (int)d);
            break;
        case F_STR:
            if (f->def_str) snprintf(AT(base, f, char), f->capacity, "%s", f->def_str);
            break;
        case F_DUR:
            if (!isnan(d)) store_dur(base, f, (long)d);
            break;
        case F_INTS:
            if (f->def_ints) memcpy(AT(base, f, int), f->def_ints, (size_t)f->count * sizeof(int));
            break;
        case F_CUSTOM: break;
        }
    }
}

/* ======================================================================
 * Parsing one value
 * ====================================================================== */
static dt_status parse_float(loader *L, const field *f, const node *n, const char *path,
                             void *base)
{
    char what[64];
    double v;
    snprintf(what, sizeof what, "a float%s", range_text(f->range));
    if (!to_double(n, &v) || !in_range(v, f->range)) return cfg_expected(L, n, path, what, "");
    *AT(base, f, double) = v;
    return DT_OK;
}

static dt_status parse_string(loader *L, const field *f, const node *n, const char *path,
                              void *base)
{
    if (n->kind != N_SCALAR || !n->text[0] || cfg_is_null(n))
        return cfg_expected(L, n, path, "a non-empty string", "");
    if (strlen(n->text) >= f->capacity) {
        char what[64];
        snprintf(what, sizeof what, "a string of at most %zu bytes", f->capacity - 1);
        return cfg_expected(L, n, path, what, "");
    }
    snprintf(AT(base, f, char), f->capacity, "%s", n->text);
    return DT_OK;
}

static dt_status parse_enum(loader *L, const field *f, const node *n, const char *path,
                            void *base)
{
    if (n->kind == N_SCALAR)
        for (int i = 0; i < f->names->count; i++)
            if (strcmp(n->text, f->names->name(i)) == 0) {
                store_enum(base, f, i);
                return DT_OK;
            }
    char list[200], what[256];
    cfg_join_names(list, sizeof list, f->names, ~0u);
    snprintf(what, sizeof what, "one of %s", list);
    return cfg_expected(L, n, path, what, "");
}

static dt_status parse_ints(loader *L, const field *f, const node *n, const char *path,
                            void *base)
{
    if (n->kind != N_LIST || n->n != f->count) return cfg_expected(L, n, path, f->what, "");
    for (int i = 0; i < f->count; i++) {
        char sub[PATH_BUF];
        cfg_subpath(sub, sizeof sub, "%s[%d]", path, i);
        long v = 0;
        dt_status st = cfg_get_int(L, n->ents[i].val, sub, f->range, INT_MAX, &v);
        if (st) return st;
        AT(base, f, int)[i] = (int)v;
    }
    return DT_OK;
}

dt_status cfg_parse_field(loader *L, const field *f, const node *n, const char *path, void *base)
{
    long v = 0;
    dt_status st;
    switch (f->type) {
    case F_INT:
        st = cfg_get_int(L, n, path, f->range, f->width == W_INT ? INT_MAX : LONG_MAX, &v);
        if (!st) store_int(base, f, v);
        return st;
    case F_DUR:
        st = cfg_get_int(L, n, path, f->range, LONG_MAX, &v);
        if (!st) store_dur(base, f, v);
        return st;
    case F_BOOL: {
        bool b;
        if (!to_bool(n, &b)) return cfg_expected(L, n, path, "true or false", "");
        *AT(base, f, bool) = b;
        return DT_OK;
    }
    case F_FLOAT: return parse_float(L, f, n, path, base);
    case F_STR: return parse_string(L, f, n, path, base);
    case F_ENUM: return parse_enum(L, f, n, path, base);
    case F_INTS: return parse_ints(L, f, n, path, base);
    case F_CUSTOM: return f->custom->parse(L, f, n, path, base);
    }
    return DT_OK;
}

/* ======================================================================
 * A mapping of rows
 * ====================================================================== */
const field *cfg_field_of(const field *tab, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(tab[i].key, key) == 0) return &tab[i];
    return NULL;
}

/* The only_with condition of row f (true when it has none). */
static bool only_with_holds(const field *f, const section *sec, const dt_config *cfg)
{
    if (!f->only_with || !sec) return true;
    const field *cond = cfg_field_of(sec->fields, sec->n, f->only_with);
    return cond && (f->only_mask & (1u << cfg_load_enum(cfg, cond))) != 0;
}

bool cfg_applies(const field *f, const section *sec, const dt_config *cfg)
{
    if (!only_with_holds(f, sec, cfg)) return false;
    if (!f->applies || !sec || !sec->selector) return true;
    unsigned bit = 1u << cfg_load_enum(cfg, sec->selector);
    return (f->applies & bit) != 0;
}

/* "PATH.KEY: unknown key; SECTION takes k1, k2, ..." */
static dt_status unknown_key(loader *L, const entry *e, const char *sub, const char *path,
                             const field *tab, size_t n)
{
    char keys[600];
    size_t o = 0;
    keys[0] = 0;
    for (size_t k = 0; k < n && o < sizeof keys; k++)
        o += (size_t)snprintf(keys + o, sizeof keys - o, "%s%s", k ? ", " : "", tab[k].key);
    const char *last = strrchr(path, '.');
    return cfg_fail_entry(L, e, "%s: unknown key; %s takes %s", sub, last ? last + 1 : path,
                          keys);
}

/* "PATH.KEY does not apply to optimizer 'sgd' (it applies to adam, ...)" */
static dt_status not_applying(loader *L, const entry *e, const char *sub, const field *f,
                              const section *sec, const dt_config *cfg)
{
    const name_list *names = sec->selector->names;
    char list[200];
    cfg_join_names(list, sizeof list, names, f->applies);
    return cfg_fail_entry(L, e, "%s does not apply to %s '%s' (it applies to %s)", sub,
                          sec->name, names->name(cfg_load_enum(cfg, sec->selector)), list);
}

/* "PATH.KEY applies only with SECTION.COND: a, b (it is 'c')" */
static dt_status not_applying_with(loader *L, const entry *e, const char *sub, const field *f,
                                   const section *sec, const dt_config *cfg)
{
    const field *cond = cfg_field_of(sec->fields, sec->n, f->only_with);
    char list[200];
    cfg_join_names(list, sizeof list, cond->names, f->only_mask);
    return cfg_fail_entry(L, e, "%s applies only with %s.%s: %s (it is '%s')", sub, sec->name,
                          cond->key, list, cond->names->name(cfg_load_enum(cfg, cond)));
}

dt_status cfg_apply_map(loader *L, const node *map, const node *pos, const char *path,
                        const field *tab, size_t n, const section *sec, void *base,
                        const dt_config *cfg)
{
    if (map) pos = map;
    if (map && cfg_is_null(map)) map = NULL;
    if (map && map->kind != N_MAP) return cfg_expected(L, map, path, "a mapping of keys", "");
    /* required keys first: a missing optimizer.name decides what applies */
    for (size_t k = 0; k < n; k++)
        if (tab[k].required && !cfg_lookup(map, tab[k].key))
            return cfg_fail_node(L, pos, "%s.%s: required key missing", path, tab[k].key);
    for (int i = 0; map && i < map->n; i++) {
        const entry *e = &map->ents[i];
        char sub[PATH_BUF];
        cfg_subpath(sub, sizeof sub, "%s.%s", path, e->key);
        const field *f = cfg_field_of(tab, n, e->key);
        if (!f) return unknown_key(L, e, sub, path, tab, n);
        if (!f->only_with && !cfg_applies(f, sec, cfg))
            return not_applying(L, e, sub, f, sec, cfg);
        dt_status st = cfg_parse_field(L, f, e->val, sub, base);
        if (st) return st;
    }
    /* rows that depend on another key of this map, now that all are read */
    for (int i = 0; map && sec && i < map->n; i++) {
        const entry *e = &map->ents[i];
        const field *f = cfg_field_of(tab, n, e->key);
        if (!f->only_with) continue;
        const bool with = only_with_holds(f, sec, cfg);
        if (with && cfg_applies(f, sec, cfg)) continue;
        char sub[PATH_BUF];
        cfg_subpath(sub, sizeof sub, "%s.%s", path, e->key);
        return with ? not_applying(L, e, sub, f, sec, cfg)
                    : not_applying_with(L, e, sub, f, sec, cfg);
    }
    /* defaults that are another key's value (maxpool's stride: its size) */
    for (size_t k = 0; k < n; k++)
        if (tab[k].def_key && !cfg_lookup(map, tab[k].key))
            store_int(base, &tab[k], cfg_load_int(base, cfg_field_of(tab, n, tab[k].def_key)));
    return DT_OK;
}
