/* config_internal.h - what the files of src/config/ share (not a contract
 * outside this folder; the module's contract is include/dtrain/config.h).
 *
 * How the module works, in reading order:
 *  tree.c       the file (at most 1 MiB) and each --set VALUE become a small
 *               tree of nodes (scalar, list, mapping) that keep their line,
 *               column and origin; everything YAML allows but a config does
 *               not need (anchors, aliases, tags, duplicate keys, deep
 *               nesting, a second document) is refused while it is built;
 *  messages.c   positions and the wording of errors;
 *  schema.c     the tables: one row per key with its type, range, default,
 *               where it is stored and which optimizers or schedulers it
 *               applies to;
 *  fields.c     the engine that parses, defaults and checks one row, and a
 *               mapping of rows;
 *  custom_keys.c the keys no row type describes (model.layers,
 *               scheduler.milestones);
 *  overrides.c  exclusive pairs and the grafting of --set into the tree;
 *  load.c       dt_config_load: read, graft, validate, cross-key checks;
 *  write.c      dt_config_write_yaml, driven by the same tables.
 * A key added to a table is parsed, defaulted, checked and written back
 * without touching any other code.
 *
 * Durations: every dt_duration that has a value (given or defaulted) has
 * set = true; only scheduler.max stays unset when absent (= the run length).
 * That keeps load -> write -> load an identity.
 *
 * Internal functions are prefixed cfg_ (the library is linked with others). */
#ifndef DTRAIN_CONFIG_INTERNAL_H
#define DTRAIN_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "dtrain/config.h"

#define PATH_BUF 256 /* a key path in messages */

/* ======================================================================
 * The node tree (tree.c)
 * ====================================================================== */
enum { N_SCALAR, N_LIST, N_MAP };

typedef struct node node;

/* One item of a list (key NULL) or a mapping. */
typedef struct {
    char *key;
    int line, col; /* of the key */
    int src;       /* who wrote this entry: -1 the file, i >= 0 sets[i] */
    node *val;
} entry;

struct node {
    int kind;
    int line, col; /* 1-based; 0 in a --set value (the message names the --set) */
    int src;       /* -1 the file, i >= 0 sets[i] */
    bool plain;    /* scalar: unquoted, so it may be a number or bool */
    char *text;    /* scalar: NUL-terminated (embedded NULs are rejected) */
    entry *ents;   /* list or mapping */
    int n, cap;
};

/* One dt_config_load: what messages need to name places. */
typedef struct {
    const char *path;        /* the config file */
    const char *const *sets; /* the --set strings */
    dt_error *err;
    int nodes; /* nodes built by the current parse */
} loader;

void cfg_node_free(node *n);
entry *cfg_find(const node *map, const char *key);       /* NULL if absent or not a map */
const node *cfg_lookup(const node *map, const char *key); /* the value, or NULL */
bool cfg_is_null(const node *n); /* `key:` with nothing after it, `~` or `null` */
dt_status cfg_node_alloc(loader *L, int kind, int src, int line, int col, node **out);
/* Append an entry; takes ownership of key and val (freed on failure). */
dt_status cfg_add_entry(loader *L, node *parent, char *key, int line, int col, int src,
                        node *val);
/* Parse one YAML document: the file (src -1, path "") or the VALUE of a
 * --set (src i, path its KEY; an empty VALUE is an empty scalar). */
dt_status cfg_parse_doc(loader *L, const char *text, size_t len, int src, const char *path,
                        node **out);
/* The whole config file, NUL-terminated. */
dt_status cfg_read_file(loader *L, char **out, size_t *out_len);

/* ======================================================================
 * Messages (messages.c)
 * ====================================================================== */
/* "FILE:LINE:COL", "--set KEY=VALUE", or "FILE" when there is no position.
 * `again`: the file was named already in this message, so "line L column C". */
void cfg_where(const loader *L, int src, int line, int col, bool again, char *buf, size_t size);
/* DT_ECONFIG with "POSITION: message". */
__attribute__((format(printf, 5, 6))) dt_status cfg_fail_at(loader *L, int src, int line, int col,
                                                            const char *fmt, ...);
#define cfg_fail_node(L, n, ...) cfg_fail_at((L), (n)->src, (n)->line, (n)->col, __VA_ARGS__)
#define cfg_fail_entry(L, e, ...) cfg_fail_at((L), (e)->src, (e)->line, (e)->col, __VA_ARGS__)
dt_status cfg_oom(loader *L);
/* A key path ("optimizer.lr", "model.layers[2].conv"); an absurdly long one
 * (a user's key) ends in "...". */
__attribute__((format(printf, 3, 4))) void cfg_subpath(char *buf, size_t size, const char *fmt,
                                                       ...);
/* `"text"` as the user wrote it, escaped to one line and shortened; lists
 * and mappings by their kind. `typed`: say that quotes made it a string. */
const char *cfg_describe(const node *n, bool typed, char *buf, size_t size);
/* "PATH: expected WHAT, got DESCRIPTION NOTE" at n. */
dt_status cfg_expected(loader *L, const node *n, const char *path, const char *what,
                       const char *note);

/* ======================================================================
 * The schema (schema.c)
 * ====================================================================== */
typedef enum {
    F_INT,    /* an integer (width says the C type) */
    F_FLOAT,  /* a double */
    F_BOOL,
    F_STR,    /* a char array of `capacity` bytes */
    F_ENUM,   /* one of `names`: an int, or its name in a char array of `capacity` */
    F_DUR,    /* a dt_duration in `unit` */
    F_INTS,   /* a list of exactly `count` ints (an int array) */
    F_CUSTOM  /* parsed and written by `custom` */
} ftype;
typedef enum { R_ANY, R_GE0, R_GT0, R_UNIT /* [0, 1) */, R_FRAC /* (0, 1] */ } frange;
typedef enum { W_LONG, W_INT, W_ULL } int_width; /* F_INT: long, int, unsigned long long */
/* Keys that come in pairs (warmup_steps | warmup_epochs): the unit a key
 * gives; the writer writes the member whose unit the value is held in. */
typedef enum { U_NONE, U_STEPS, U_EPOCHS } dur_unit;

/* The names of an enum's values 0..count-1, from the module that owns it. */
typedef struct {
    int count;
    const char *(*name)(int value);
} name_list;

typedef struct field field;
typedef dt_status (*parse_fn)(loader *L, const field *f, const node *n, const char *path,
                              void *base);
/* Writes what follows "key:" (its own leading space or newline). */
typedef void (*write_fn)(const field *f, const void *base, FILE *out);
typedef dur_unit (*unit_fn)(const void *base);

/* What a custom key does instead of the engine. */
typedef struct {
    parse_fn parse;
    write_fn write;
    unit_fn held_unit; /* a pair member: the unit the value is held in */
} custom_ops;

struct field {
    const char *key;
    ftype type;
    frange range;
    size_t off;               /* of the value in the base struct (dt_config, dt_layer_spec) */
    int_width width;          /* F_INT */
    size_t capacity;          /* F_STR; F_ENUM stored as its name (0: stored as an int) */
    dur_unit unit;            /* F_DUR and custom pair members */
    int count;                /* F_INTS */
    unsigned applies;         /* mask of the section selector's values; 0 all */
    bool required;
    double def;               /* NAN: no default */
    const double *def_opt;    /* default per optimizer, instead of def */
    const char *def_str;      /* F_STR */
    const int *def_ints;      /* F_INTS: `count` values */
    const char *def_key;      /* F_INT: absent, it takes the value of this key of its map */
    const char *what;         /* F_INTS: what is expected, for messages */
    const name_list *names;   /* F_ENUM */
    const custom_ops *custom; /* F_CUSTOM */
    /* Applies only while the F_ENUM row `only_with` of the same section
     * holds a value whose bit is in only_mask (optimizer.average_decay:
     * only with average: ema); checked once the whole mapping is read, so
     * the order of the keys does not matter. */
    const char *only_with;
    unsigned only_mask;
    /* Written back only when it differs from its default: a key added after
     * checkpoints existed leaves the resolved text, and with it the
     * config_hash of a run that does not use the key, as it was. */
    bool quiet_default;
};

typedef struct {
    const char *name;
    const field *fields;
    size_t n;
    /* The row whose value decides which rows apply (optimizer.name,
     * scheduler.name); read before every other key. NULL: all apply. */
    const field *selector;
} section;

/* Keys of one section that exclude each other. */
typedef struct {
    const char *section, *a, *b;
} key_pair;

/* How a layer kind is written in model.layers: a bare word (relu), one
 * value ({dense: 64}) or a mapping of parameters ({conv: {out: 6, ...}}).
 * Its name is nn's (dt_layer_str). */
typedef struct {
    const field *value;  /* {kind: VALUE} */
    const field *params; /* {kind: {key: value, ...}} */
    size_t n_params;
    const char *if_null; /* params given as null: what was expected instead */
} layer_form;

extern const section cfg_sections[];
extern const size_t cfg_n_sections;
extern const key_pair cfg_pairs[];
extern const size_t cfg_n_pairs;
extern const layer_form cfg_layer_forms[DT_LAYER_KIND_COUNT];
extern const char cfg_layer_help[];

/* ======================================================================
 * The field engine (fields.c)
 * ====================================================================== */
/* An int in range and in the storage's range (int fields: INT_MAX). */
dt_status cfg_get_int(loader *L, const node *n, const char *path, frange r, long max, long *out);
long cfg_load_int(const void *base, const field *f);
int cfg_load_enum(const void *base, const field *f);
/* "a, b, c": the names whose bit is set in mask. */
void cfg_join_names(char *buf, size_t size, const name_list *names, unsigned mask);
/* The table's defaults into base, except the row `skip` (may be NULL);
 * per-optimizer defaults are those of optimizer `opt`. */
void cfg_apply_defaults(const field *tab, size_t n, const field *skip, void *base,
                        dt_optimizer_name opt);
dt_status cfg_parse_field(loader *L, const field *f, const node *n, const char *path, void *base);
const field *cfg_field_of(const field *tab, size_t n, const char *key);
/* Whether row f of section sec applies under cfg's selector values (and
 * its only_with row's value). */
bool cfg_applies(const field *f, const section *sec, const dt_config *cfg);
/* Parse every entry of `map` (NULL or a null scalar: none) against `tab`
 * into base, check the required keys (`pos` places a missing one) and fill
 * the def_key defaults. `sec` decides what applies (NULL: everything). */
dt_status cfg_apply_map(loader *L, const node *map, const node *pos, const char *path,
                        const field *tab, size_t n, const section *sec, void *base,
                        const dt_config *cfg);

/* ======================================================================
 * Custom keys (custom_keys.c), --set (overrides.c)
 * ====================================================================== */
extern const custom_ops cfg_layers_ops, cfg_milestones_ops;

/* Both members of a pair in one section: an error naming both places. */
dt_status cfg_check_pairs(loader *L, const node *root);
/* Graft --set number i into the tree. */
dt_status cfg_apply_set(loader *L, node *root, int i);

#endif
