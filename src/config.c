/* config.c - the YAML configuration of a run: parse, override, validate, write.
 *
 * How it works. The file (at most 1 MiB) is read into memory and turned by
 * libyaml's event API into a small tree of nodes (scalar, list, mapping)
 * that keep their 1-based line:column and their origin (the file or one
 * --set). Anchors, aliases, tags, duplicate keys, non-scalar keys, more than
 * one document and nesting deeper than MAX_DEPTH are rejected while the tree
 * is built, so nothing later has to think about them (no alias bombs, no
 * unbounded recursion). Each --set VALUE is parsed the same way and grafted
 * into the tree at its dotted path; a --set of one member of an exclusive
 * pair drops the other member when that one came from the file.
 *
 * Validation walks the tree against the schema tables below: one row per
 * key with its type, range, default, where it is stored and which
 * optimizers or schedulers it applies to. dt_config_write_yaml walks the
 * same tables, so a key added to a table is parsed, defaulted, checked and
 * written back without touching any other code.
 *
 * Durations: every dt_duration that has a value (given or defaulted) has
 * set = true; only scheduler.max stays unset when absent (= the run length).
 * That keeps load -> write -> load an identity. */
#include "dtrain/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#define MAX_FILE_BYTES (1L << 20) /* a config is a page of text */
#define MAX_DEPTH 16              /* nesting of lists and mappings */
#define MAX_ITEMS 256             /* entries of one list or mapping */
#define MAX_NODES 100000          /* nodes of one parse (file or --set value) */
#define MAX_SET_PARTS 8           /* components of a --set KEY */
#define PATH_BUF 256              /* a key path in messages */

/* Enums are stored through an int lvalue (allowed: the enum's compatible
 * type is int or unsigned int when it has the size of an int). */
_Static_assert(sizeof(dt_optimizer_name) == sizeof(int) && sizeof(dt_sched_name) == sizeof(int) &&
                   sizeof(dt_init_kind) == sizeof(int) &&
                   sizeof(dt_nonfinite_policy) == sizeof(int),
               "enums are stored as int");

/* ======================================================================
 * The node tree
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

static void node_free(node *n)
{
    if (!n) return;
    for (int i = 0; i < n->n; i++) {
        dt_free(n->ents[i].key);
        node_free(n->ents[i].val);
    }
    dt_free(n->ents);
    dt_free(n->text);
    dt_free(n);
}

static entry *find(const node *map, const char *key)
{
    if (!map || map->kind != N_MAP) return NULL;
    for (int i = 0; i < map->n; i++)
        if (strcmp(map->ents[i].key, key) == 0) return &map->ents[i];
    return NULL;
}

/* The value of `key` in `map`, or NULL. */
static const node *lookup(const node *map, const char *key)
{
    const entry *e = find(map, key);
    return e ? e->val : NULL;
}

/* `key:` with nothing after it, `~` or `null`. */
static bool is_null(const node *n)
{
    if (n->kind != N_SCALAR || !n->plain) return false;
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    for (size_t i = 0; i < DT_ARRAY_LEN(nulls); i++)
        if (strcmp(n->text, nulls[i]) == 0) return true;
    return false;
}

/* ======================================================================
 * Errors
 * ====================================================================== */
typedef struct {
    const char *path;        /* the config file */
    const char *const *sets; /* the --set strings */
    dt_error *err;
    int nodes; /* nodes built by the current parse */
} loader;

/* "FILE:LINE:COL", "--set KEY=VALUE", or "FILE" when there is no position.
 * `again`: the file was named already in this message, so "line L column C". */
static void where(const loader *L, int src, int line, int col, bool again, char *buf, size_t size)
{
    if (again && src < 0 && line > 0)
        snprintf(buf, size, "line %d column %d", line, col);
    else if (src >= 0)
        snprintf(buf, size, "--set %s", L->sets[src]);
    else if (line > 0)
        snprintf(buf, size, "%s:%d:%d", L->path, line, col);
    else
        snprintf(buf, size, "%s", L->path);
}

__attribute__((format(printf, 5, 6))) static dt_status fail_at(loader *L, int src, int line,
                                                               int col, const char *fmt, ...)
{
    char pos[DT_ERRMSG_MAX], msg[DT_ERRMSG_MAX];
    where(L, src, line, col, false, pos, sizeof pos);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return dt_fail(L->err, DT_ECONFIG, "%s: %s", pos, msg);
}

#define fail_node(L, n, ...) fail_at((L), (n)->src, (n)->line, (n)->col, __VA_ARGS__)
#define fail_entry(L, e, ...) fail_at((L), (e)->src, (e)->line, (e)->col, __VA_ARGS__)

static dt_status oom(loader *L)
{
    return dt_fail(L->err, DT_EINTERNAL, "out of memory while reading config %s", L->path);
}

/* `"text"` as the user wrote it, escaped to one line and shortened; lists
 * and mappings by their kind. `typed`: say that quotes made it a string. */
/* A key path for messages ("optimizer.lr", "model.layers[2].conv"); an
 * absurdly long one (a user's key) ends in "...". */
__attribute__((format(printf, 3, 4))) static void subpath(char *buf, size_t size, const char *fmt,
                                                          ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    if (n >= (int)size && size > 4) memcpy(buf + size - 4, "...", 4);
}

static const char *describe(const node *n, bool typed, char *buf, size_t size)
{
    if (n->kind == N_LIST) return n->n ? "a list" : "an empty list";
    if (n->kind == N_MAP) return n->n ? "a mapping" : "an empty mapping";
    size_t o = 0, limit = size > 40 ? size - 40 : 0; /* room for an escape, "..." and the note */
    const unsigned char *s = (const unsigned char *)n->text;
    buf[o++] = '"';
    for (; *s && o < limit; s++) {
        if (*s == '"' || *s == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)*s;
        } else if (*s == '\n') {
            o += (size_t)snprintf(buf + o, size - o, "\\n");
        } else if (*s < 0x20 || *s == 0x7f) {
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", *s);
        } else {
            buf[o++] = (char)*s;
        }
    }
    if (*s) o += (size_t)snprintf(buf + o, size - o, "...");
    snprintf(buf + o, size - o, "\"%s", typed && !n->plain ? " (quoted, so a string)" : "");
    return buf;
}

/* ======================================================================
 * YAML text -> node tree (libyaml event API)
 * ====================================================================== */
typedef struct {
    loader *L;
    yaml_parser_t parser;
    int src; /* -1 the file, i >= 0 sets[i] */
    const char *text;
    size_t len;
} reader;

static void mark_pos(const yaml_mark_t *m, int *line, int *col)
{
    *line = m->line < INT_MAX ? (int)m->line + 1 : INT_MAX;
    *col = m->column < INT_MAX ? (int)m->column + 1 : INT_MAX;
}

__attribute__((format(printf, 3, 4))) static dt_status fail_mark(reader *r, const yaml_mark_t *m,
                                                                 const char *fmt, ...)
{
    char msg[DT_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line, col;
    mark_pos(m, &line, &col);
    return fail_at(r->L, r->src, line, col, "%s", msg);
}

static dt_status yaml_problem(reader *r)
{
    const yaml_parser_t *p = &r->parser;
    if (p->error == YAML_MEMORY_ERROR) return oom(r->L);
    int line, col;
    mark_pos(&p->problem_mark, &line, &col);
    if (p->error == YAML_READER_ERROR) { /* only a byte offset is known */
        size_t off = DT_MIN(p->problem_offset, r->len);
        line = 1, col = 1;
        for (size_t i = 0; i < off; i++) {
            if (r->text[i] == '\n')
                line++, col = 1;
            else
                col++;
        }
    }
    char ctx[256] = "";
    if (p->context) {
        int cl, cc;
        mark_pos(&p->context_mark, &cl, &cc);
        snprintf(ctx, sizeof ctx, " (%s at line %d column %d)", p->context, cl, cc);
    }
    const char *problem = p->problem ? p->problem : "unreadable YAML";
    if (r->src >= 0)
        return fail_at(r->L, r->src, 0, 0, "YAML syntax error in the value at column %d: %s%s", col,
                       problem, ctx);
    return fail_at(r->L, -1, line, col, "YAML syntax error: %s%s", problem, ctx);
}

static dt_status next_event(reader *r, yaml_event_t *ev)
{
    return yaml_parser_parse(&r->parser, ev) ? DT_OK : yaml_problem(r);
}

static dt_status node_alloc(loader *L, int kind, int src, int line, int col, node **out)
{
    node *n = dt_calloc(1, sizeof *n);
    if (!n) return oom(L);
    n->kind = kind;
    n->src = src;
    n->line = src < 0 ? line : 0;
    n->col = src < 0 ? col : 0;
    *out = n;
    return DT_OK;
}

/* Append an entry; takes ownership of key and val (freed on failure). */
static dt_status add_entry(loader *L, node *parent, char *key, int line, int col, int src,
                           node *val)
{
    if (parent->n == parent->cap) {
        int cap = parent->cap ? 2 * parent->cap : 8;
        entry *e = dt_realloc(parent->ents, (size_t)cap * sizeof *e);
        if (!e) {
            dt_free(key);
            node_free(val);
            return oom(L);
        }
        parent->ents = e;
        parent->cap = cap;
    }
    parent->ents[parent->n++] = (entry){key, src < 0 ? line : 0, src < 0 ? col : 0, src, val};
    return DT_OK;
}

static dt_status check_props(reader *r, const yaml_mark_t *m, const yaml_char_t *anchor,
                             const yaml_char_t *tag)
{
    if (anchor)
        return fail_mark(r, m, "YAML anchors (&%.40s) and aliases are not supported", anchor);
    if (tag) return fail_mark(r, m, "YAML tags (%.60s) are not supported", tag);
    return DT_OK;
}

/* Copy a scalar event's text; NUL bytes ("\0" escapes) are refused. */
static dt_status scalar_text(reader *r, const yaml_event_t *ev, char **out)
{
    const char *v = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    if (memchr(v, 0, len))
        return fail_mark(r, &ev->start_mark, "a NUL character in a value is not supported");
    char *s = dt_malloc(len + 1);
    if (!s) return oom(r->L);
    memcpy(s, v, len);
    s[len] = 0;
    *out = s;
    return DT_OK;
}

static dt_status read_node(reader *r, yaml_event_t *ev, int depth, const char *path, node **out);

/* The entries of a list or mapping up to its end event. */
static dt_status read_items(reader *r, node *n, int depth, const char *path)
{
    for (;;) {
        yaml_event_t ev;
        dt_status st = next_event(r, &ev);
        if (st) return st;
        if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return DT_OK;
        }
        if (n->n >= MAX_ITEMS) {
            st = fail_mark(r, &ev.start_mark, "%s: more than %d items in one list or mapping",
                           *path ? path : "top level", MAX_ITEMS);
            yaml_event_delete(&ev);
            return st;
        }
        char sub[PATH_BUF];
        if (n->kind == N_LIST) {
            subpath(sub, sizeof sub, "%s[%d]", path, n->n);
            node *item;
            if ((st = read_node(r, &ev, depth + 1, sub, &item))) return st;
            if ((st = add_entry(r->L, n, NULL, 0, 0, r->src, item))) return st;
            continue;
        }
        /* a mapping: a scalar key, then its value */
        yaml_mark_t km = ev.start_mark;
        if (ev.type != YAML_SCALAR_EVENT) {
            st = ev.type == YAML_ALIAS_EVENT
                     ? fail_mark(r, &km, "YAML aliases and anchors are not supported")
                     : fail_mark(r, &km, "a mapping key must be a word, not a list or mapping");
            yaml_event_delete(&ev);
            return st;
        }
        char *key = NULL;
        st = check_props(r, &km, ev.data.scalar.anchor, ev.data.scalar.tag);
        if (!st) st = scalar_text(r, &ev, &key);
        yaml_event_delete(&ev);
        if (st) return st;
        subpath(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", key);
        int kl, kc;
        mark_pos(&km, &kl, &kc);
        const entry *dup = find(n, key);
        if (dup) {
            char first[DT_ERRMSG_MAX];
            where(r->L, dup->src, dup->line, dup->col, r->src < 0, first, sizeof first);
            dt_free(key);
            return fail_at(r->L, r->src, kl, kc, "%s: duplicate key (first given at %s)", sub,
                           first);
        }
        node *val = NULL;
        if ((st = next_event(r, &ev)) || (st = read_node(r, &ev, depth + 1, sub, &val))) {
            dt_free(key);
            return st;
        }
        if ((st = add_entry(r->L, n, key, kl, kc, r->src, val))) return st;
    }
}

/* Build the node that starts with *ev (consumed, whatever happens). */
static dt_status read_node(reader *r, yaml_event_t *ev, int depth, const char *path, node **out)
{
    *out = NULL;
    yaml_mark_t m = ev->start_mark;
    int line, col;
    mark_pos(&m, &line, &col);
    node *n = NULL;
    dt_status st;
    if (++r->L->nodes > MAX_NODES) {
        st = fail_mark(r, &m, "more than %d YAML nodes; this is not a dtrain config", MAX_NODES);
        yaml_event_delete(ev);
        return st;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        st = check_props(r, &m, ev->data.scalar.anchor, ev->data.scalar.tag);
        if (!st) st = node_alloc(r->L, N_SCALAR, r->src, line, col, &n);
        if (!st) {
            n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
            st = scalar_text(r, ev, &n->text);
        }
        yaml_event_delete(ev);
        break;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        bool list = ev->type == YAML_SEQUENCE_START_EVENT;
        st = list ? check_props(r, &m, ev->data.sequence_start.anchor, ev->data.sequence_start.tag)
                  : check_props(r, &m, ev->data.mapping_start.anchor, ev->data.mapping_start.tag);
        yaml_event_delete(ev);
        if (!st && depth > MAX_DEPTH)
            st = fail_mark(r, &m, "%s: nesting deeper than %d levels", *path ? path : "top level",
                           MAX_DEPTH);
        if (!st) st = node_alloc(r->L, list ? N_LIST : N_MAP, r->src, line, col, &n);
        if (!st) st = read_items(r, n, depth, path);
        break;
    }
    case YAML_ALIAS_EVENT:
        st = fail_mark(r, &m, "YAML aliases (*%.40s) and anchors are not supported",
                       ev->data.alias.anchor);
        yaml_event_delete(ev);
        break;
    default:
        st = fail_mark(r, &m, "unexpected YAML structure");
        yaml_event_delete(ev);
        break;
    }
    if (st) {
        node_free(n);
        return st;
    }
    *out = n;
    return DT_OK;
}

/* Parse one YAML document: the file (src -1, path "") or the VALUE of a
 * --set (src i, path its KEY; an empty VALUE is an empty scalar). */
static dt_status parse_doc(loader *L, const char *text, size_t len, int src, const char *path,
                           node **out)
{
    reader r = {.L = L, .src = src, .text = text, .len = len};
    *out = NULL;
    L->nodes = 0;
    if (!yaml_parser_initialize(&r.parser)) return oom(L);
    yaml_parser_set_input_string(&r.parser, (const unsigned char *)text, len);

    node *root = NULL;
    yaml_event_t ev;
    dt_status st = next_event(&r, &ev); /* stream start */
    if (!st) {
        yaml_event_delete(&ev);
        st = next_event(&r, &ev); /* document start or stream end */
    }
    if (!st && ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        if (src < 0)
            st = fail_at(L, -1, 0, 0, "the file is empty (no YAML document)");
        else if (!(st = node_alloc(L, N_SCALAR, src, 0, 0, &root)) && !(root->text = dt_strdup("")))
            st = oom(L);
        if (root) root->plain = true;
    } else if (!st) {
        yaml_event_delete(&ev);
        st = next_event(&r, &ev);
        if (!st) st = read_node(&r, &ev, 1, path, &root);
        if (!st) st = next_event(&r, &ev); /* document end */
        if (!st) {
            yaml_event_delete(&ev);
            st = next_event(&r, &ev); /* stream end */
        }
        if (!st && ev.type != YAML_STREAM_END_EVENT)
            st = fail_mark(&r, &ev.start_mark, "a second YAML document; a config is one document");
        if (!st || ev.type != YAML_NO_EVENT) yaml_event_delete(&ev); /* zeroed on failure */
    }
    yaml_parser_delete(&r.parser);
    if (st) {
        node_free(root);
        return st;
    }
    *out = root;
    return DT_OK;
}

static dt_status read_file(loader *L, char **out, size_t *out_len)
{
    FILE *f = fopen(L->path, "rb");
    if (!f)
        return dt_fail(L->err, DT_ECONFIG, "cannot read config %s: %s", L->path, strerror(errno));
    size_t len = 0, cap = 0;
    char *buf = NULL;
    dt_status st = DT_OK;
    for (;;) {
        if (len == cap) {
            cap = cap ? 2 * cap : 16384;
            char *b = dt_realloc(buf, cap + 1);
            if (!b) {
                st = oom(L);
                break;
            }
            buf = b;
        }
        errno = 0;
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (len > (size_t)MAX_FILE_BYTES) {
            st = dt_fail(L->err, DT_ECONFIG, "config %s is larger than 1 MiB; not a config file?",
                         L->path);
            break;
        }
        if (got == 0) {
            if (ferror(f))
                st = dt_fail(L->err, DT_ECONFIG, "cannot read config %s: %s", L->path,
                             strerror(errno ? errno : EIO));
            break;
        }
    }
    fclose(f);
    if (st) {
        dt_free(buf);
        return st;
    }
    buf[len] = 0;
    *out = buf;
    *out_len = len;
    return DT_OK;
}

/* ======================================================================
 * The schema tables
 * ====================================================================== */
typedef enum { F_INT, F_FLOAT, F_BOOL, F_STR, F_ENUM, F_DUR, F_CUSTOM } ftype;
typedef enum { R_ANY, R_GE0, R_GT0, R_UNIT /* [0, 1) */, R_FRAC /* (0, 1] */ } frange;
enum { ST_LONG, ST_INT, ST_ULL };          /* F_INT storage */
enum { D_NONE, D_OPTIMIZER, D_SCHEDULER }; /* what `applies` is a mask of */

typedef struct field field;
typedef dt_status (*parse_fn)(loader *L, const field *f, const node *n, const char *path,
                              void *base);
typedef void (*write_fn)(const field *f, const void *base, FILE *out);

struct field {
    const char *key;
    ftype type;
    frange range;
    size_t off;       /* of the value in the base struct (dt_config, dt_layer_spec) */
    int store;        /* F_INT: ST_*; F_STR: capacity; F_ENUM: capacity of a char
                   * array, 0 for an int enum; F_DUR, F_CUSTOM: 1 = in epochs */
    unsigned applies; /* mask of optimizers / schedulers (section's domain); 0 all */
    bool required;
    double def;                 /* NAN: no default */
    const double *def_opt;      /* default per optimizer, instead of def */
    const char *def_str;        /* F_STR */
    const char *const *choices; /* F_ENUM, NULL-terminated */
    parse_fn parse;             /* F_CUSTOM */
    write_fn write;             /* F_CUSTOM */
};

typedef struct {
    const char *name;
    const field *fields;
    size_t n;
    int domain;
} section;

/* The tables read best as one row per key. */
/* clang-format off */
#define OFF(member) offsetof(dt_config, member)
#define OPT(x) (1u << DT_OPT_##x)
#define SCH(x) (1u << DT_SCHED_##x)

static const char *const opt_names[] = {
    [DT_OPT_SGD] = "sgd",           [DT_OPT_MOMENTUM] = "momentum", [DT_OPT_ADAGRAD] = "adagrad",
    [DT_OPT_RMSPROP] = "rmsprop",   [DT_OPT_ADADELTA] = "adadelta", [DT_OPT_ADAM] = "adam",
    [DT_OPT_ADAMW] = "adamw",       [DT_OPT_YOGI] = "yogi",         [DT_OPT_COUNT] = NULL};
static const char *const sched_names[] = {
    [DT_SCHED_CONSTANT] = "constant", [DT_SCHED_FACTOR] = "factor",
    [DT_SCHED_MULTISTEP] = "multistep", [DT_SCHED_SQRT] = "sqrt",
    [DT_SCHED_COSINE] = "cosine", [DT_SCHED_POLY] = "poly", [DT_SCHED_COUNT] = NULL};
static const char *const layer_names[] = {
    [DT_LAYER_DENSE] = "dense",     [DT_LAYER_RELU] = "relu",       [DT_LAYER_SIGMOID] = "sigmoid",
    [DT_LAYER_TANH] = "tanh",       [DT_LAYER_FLATTEN] = "flatten", [DT_LAYER_CONV] = "conv",
    [DT_LAYER_MAXPOOL] = "maxpool", [DT_LAYER_KIND_COUNT] = NULL};
static const char *const dataset_names[] = {"fashion-mnist", "mnist", "idx", NULL};
static const char *const init_names[] = {[DT_INIT_HE] = "he", [DT_INIT_XAVIER] = "xavier", NULL};
static const char *const nonfinite_names[] = {[DT_NONFINITE_ABORT] = "abort",
                                              [DT_NONFINITE_SKIP] = "skip", NULL};

/* Per-optimizer defaults (SPEC.md). Entries for optimizers a key does not
 * apply to are never used but keep the config deterministic. */
static const double lr_def[DT_OPT_COUNT] = {
    [DT_OPT_SGD] = NAN,     [DT_OPT_MOMENTUM] = NAN, [DT_OPT_ADAGRAD] = NAN,
    [DT_OPT_RMSPROP] = NAN, [DT_OPT_ADADELTA] = 1.0, [DT_OPT_ADAM] = NAN,
    [DT_OPT_ADAMW] = NAN,   [DT_OPT_YOGI] = NAN};
static const double momentum_def[DT_OPT_COUNT] = {
    [DT_OPT_SGD] = 0.0,     [DT_OPT_MOMENTUM] = 0.9, [DT_OPT_ADAGRAD] = 0.9,
    [DT_OPT_RMSPROP] = 0.9, [DT_OPT_ADADELTA] = 0.9, [DT_OPT_ADAM] = 0.9,
    [DT_OPT_ADAMW] = 0.9,   [DT_OPT_YOGI] = 0.9};
static const double eps_def[DT_OPT_COUNT] = {
    [DT_OPT_SGD] = 1e-8,     [DT_OPT_MOMENTUM] = 1e-8, [DT_OPT_ADAGRAD] = 1e-10,
    [DT_OPT_RMSPROP] = 1e-8, [DT_OPT_ADADELTA] = 1e-6, [DT_OPT_ADAM] = 1e-8,
    [DT_OPT_ADAMW] = 1e-8,   [DT_OPT_YOGI] = 1e-3};
static const double weight_decay_def[DT_OPT_COUNT] = {[DT_OPT_ADAMW] = 0.01};

static dt_status parse_input(loader *L, const field *f, const node *n, const char *path,
                             void *base);
static dt_status parse_layers(loader *L, const field *f, const node *n, const char *path,
                              void *base);
static dt_status parse_milestones(loader *L, const field *f, const node *n, const char *path,
                                  void *base);
static void write_input(const field *f, const void *base, FILE *out);
static void write_layers(const field *f, const void *base, FILE *out);
static void write_milestones(const field *f, const void *base, FILE *out);

#define SIZE(member) ((int)sizeof(((dt_config *)0)->member))
#define INT_ROW(k, r, member, st, d) \
    {.key = k, .type = F_INT, .range = r, .off = OFF(member), .store = st, .def = d}
#define FLOAT_ROW(k, r, member, app, d) \
    {.key = k, .type = F_FLOAT, .range = r, .off = OFF(member), .applies = app, .def = d}
#define BOOL_ROW(k, member, app, d) \
    {.key = k, .type = F_BOOL, .off = OFF(member), .applies = app, .def = d}
#define STR_ROW(k, member, d) \
    {.key = k, .type = F_STR, .off = OFF(member), .store = SIZE(member), .def = NAN, .def_str = d}
#define DUR_ROW(k, r, member, epochs, app, d) \
    {.key = k, .type = F_DUR, .range = r, .off = OFF(member), .store = epochs, .applies = app, \
     .def = d}

static const field run_fields[] = {
    STR_ROW("name", run.name, NULL), /* default: the config file's base name */
    INT_ROW("seed", R_GE0, run.seed, ST_ULL, 0),
    STR_ROW("out_dir", run.out_dir, NULL), /* default: runs/<name> */
};

static const field data_fields[] = {
    {.key = "dataset", .type = F_ENUM, .off = OFF(data.dataset),
     .store = SIZE(data.dataset), .def = 0, .choices = dataset_names},
    STR_ROW("dir", data.dir, "/usr/share/datasets/fashion-mnist"),
    STR_ROW("train_images", data.train_images, "train-images-idx3-ubyte"),
    STR_ROW("train_labels", data.train_labels, "train-labels-idx1-ubyte"),
    STR_ROW("test_images", data.test_images, "t10k-images-idx3-ubyte"),
    STR_ROW("test_labels", data.test_labels, "t10k-labels-idx1-ubyte"),
    BOOL_ROW("normalize", data.normalize, 0, 1),
    BOOL_ROW("drop_last", data.drop_last, 0, 1),
    INT_ROW("train_limit", R_GE0, data.train_limit, ST_LONG, 0),
    INT_ROW("test_limit", R_GE0, data.test_limit, ST_LONG, 0),
};

static const field model_fields[] = {
    {.key = "input", .type = F_CUSTOM, .def = NAN, .parse = parse_input, .write = write_input},
    {.key = "layers", .type = F_CUSTOM, .required = true, .def = NAN, .parse = parse_layers,
     .write = write_layers},
    {.key = "init", .type = F_ENUM, .off = OFF(model.init), .def = DT_INIT_HE,
     .choices = init_names},
};

static const field train_fields[] = {
    DUR_ROW("epochs", R_GT0, train.length, 1, 0, 10),
    DUR_ROW("steps", R_GT0, train.length, 0, 0, NAN),
    INT_ROW("global_batch", R_GT0, train.global_batch, ST_LONG, 128),
    INT_ROW("eval_every", R_GE0, train.eval_every, ST_LONG, 1),
    INT_ROW("log_every", R_GT0, train.log_every, ST_LONG, 50),
};

#define MOMENTUM_OPTS (OPT(SGD) | OPT(MOMENTUM))
#define ADAM_OPTS (OPT(ADAM) | OPT(ADAMW) | OPT(YOGI))
static const field optimizer_fields[] = {
    {.key = "name", .type = F_ENUM, .off = OFF(optimizer.name), .required = true, .def = NAN,
     .choices = opt_names},
    {.key = "lr", .type = F_FLOAT, .range = R_GT0, .off = OFF(optimizer.lr), .def_opt = lr_def},
    {.key = "momentum", .type = F_FLOAT, .range = R_UNIT, .off = OFF(optimizer.momentum),
     .applies = MOMENTUM_OPTS, .def_opt = momentum_def},
    BOOL_ROW("nesterov", optimizer.nesterov, MOMENTUM_OPTS, 0),
    FLOAT_ROW("beta1", R_UNIT, optimizer.beta1, ADAM_OPTS, 0.9),
    FLOAT_ROW("beta2", R_UNIT, optimizer.beta2, ADAM_OPTS, 0.999),
    FLOAT_ROW("alpha", R_UNIT, optimizer.alpha, OPT(RMSPROP), 0.99),
    FLOAT_ROW("rho", R_UNIT, optimizer.rho, OPT(ADADELTA), 0.9),
    {.key = "eps", .type = F_FLOAT, .range = R_GT0, .off = OFF(optimizer.eps),
     .applies = OPT(ADAGRAD) | OPT(RMSPROP) | OPT(ADADELTA) | ADAM_OPTS, .def_opt = eps_def},
    {.key = "weight_decay", .type = F_FLOAT, .range = R_GE0, .off = OFF(optimizer.weight_decay),
     .def_opt = weight_decay_def},
    FLOAT_ROW("clip_grad_norm", R_GE0, optimizer.clip_grad_norm, 0, 0),
    {.key = "nonfinite", .type = F_ENUM, .off = OFF(optimizer.nonfinite),
     .def = DT_NONFINITE_ABORT, .choices = nonfinite_names},
};

#define MAX_SCHEDS (SCH(COSINE) | SCH(POLY))
static const field scheduler_fields[] = {
    {.key = "name", .type = F_ENUM, .off = OFF(scheduler.name), .def = DT_SCHED_CONSTANT,
     .choices = sched_names},
    DUR_ROW("warmup_steps", R_GE0, scheduler.warmup, 0, 0, 0),
    DUR_ROW("warmup_epochs", R_GE0, scheduler.warmup, 1, 0, NAN),
    FLOAT_ROW("warmup_begin_lr", R_GE0, scheduler.warmup_begin_lr, 0, 0),
    FLOAT_ROW("factor", R_FRAC, scheduler.factor, SCH(FACTOR) | SCH(MULTISTEP), 0.1),
    DUR_ROW("step_size", R_GT0, scheduler.step_size, 0, SCH(FACTOR), 1),
    DUR_ROW("step_size_epochs", R_GT0, scheduler.step_size, 1, SCH(FACTOR), NAN),
    FLOAT_ROW("min_lr", R_GE0, scheduler.min_lr, SCH(FACTOR), 0),
    {.key = "milestones", .type = F_CUSTOM, .store = 0, .applies = SCH(MULTISTEP), .def = NAN,
     .parse = parse_milestones, .write = write_milestones},
    {.key = "milestones_epochs", .type = F_CUSTOM, .store = 1, .applies = SCH(MULTISTEP),
     .def = NAN, .parse = parse_milestones, .write = write_milestones},
    DUR_ROW("max_steps", R_GT0, scheduler.max, 0, MAX_SCHEDS, NAN),
    DUR_ROW("max_epochs", R_GT0, scheduler.max, 1, MAX_SCHEDS, NAN),
    FLOAT_ROW("final_lr", R_GE0, scheduler.final_lr, MAX_SCHEDS, 0),
    FLOAT_ROW("power", R_GT0, scheduler.power, SCH(POLY), 1),
};

static const field checkpoint_fields[] = {
    DUR_ROW("every_steps", R_GE0, checkpoint.every, 0, 0, NAN),
    DUR_ROW("every_epochs", R_GE0, checkpoint.every, 1, 0, 1),
    INT_ROW("keep", R_GT0, checkpoint.keep, ST_LONG, 3),
    STR_ROW("dir", checkpoint.dir, NULL), /* default: <out_dir>/checkpoints */
};

static const field comm_fields[] = {
    INT_ROW("bucket_kb", R_GT0, comm.bucket_kb, ST_LONG, 1024),
    BOOL_ROW("overlap", comm.overlap, 0, 1),
    INT_ROW("check_replicas_every", R_GE0, comm.check_replicas_every, ST_LONG, 100),
    INT_ROW("timeout_s", R_GE0, comm.timeout_s, ST_LONG, 300),
};

static const field runtime_fields[] = {
    INT_ROW("threads", R_GE0, runtime.threads, ST_LONG, 0),
};

#define SECTION(name, tab, domain) {name, tab, DT_ARRAY_LEN(tab), domain}
static const section sections[] = {
    SECTION("run", run_fields, D_NONE),
    SECTION("data", data_fields, D_NONE),
    SECTION("model", model_fields, D_NONE),
    SECTION("train", train_fields, D_NONE),
    SECTION("optimizer", optimizer_fields, D_OPTIMIZER),
    SECTION("scheduler", scheduler_fields, D_SCHEDULER),
    SECTION("checkpoint", checkpoint_fields, D_NONE),
    SECTION("comm", comm_fields, D_NONE),
    SECTION("runtime", runtime_fields, D_NONE),
};

/* Keys that exclude each other: the command line wins over the file. */
static const struct {
    const char *section, *a, *b;
} pairs[] = {
    {"train", "epochs", "steps"},
    {"scheduler", "warmup_steps", "warmup_epochs"},
    {"scheduler", "step_size", "step_size_epochs"},
    {"scheduler", "milestones", "milestones_epochs"},
    {"scheduler", "max_steps", "max_epochs"},
    {"checkpoint", "every_steps", "every_epochs"},
};

/* Layer parameters, stored in a dt_layer_spec. */
#define LOFF(member) offsetof(dt_layer_spec, member)
static const field conv_fields[] = {
    {.key = "out", .type = F_INT, .range = R_GT0, .off = LOFF(out_channels), .store = ST_INT,
     .required = true, .def = NAN},
    {.key = "kernel", .type = F_INT, .range = R_GT0, .off = LOFF(kernel), .store = ST_INT,
     .required = true, .def = NAN},
    {.key = "stride", .type = F_INT, .range = R_GT0, .off = LOFF(stride), .store = ST_INT,
     .def = 1},
    {.key = "pad", .type = F_INT, .range = R_GE0, .off = LOFF(pad), .store = ST_INT, .def = 0},
};
static const field maxpool_fields[] = {
    {.key = "size", .type = F_INT, .range = R_GT0, .off = LOFF(size), .store = ST_INT, .def = 2},
    {.key = "stride", .type = F_INT, .range = R_GT0, .off = LOFF(stride), .store = ST_INT,
     .def = NAN}, /* default: size */
};
static const field dense_field = {.key = "dense", .type = F_INT, .range = R_GT0,
                                  .off = LOFF(units), .store = ST_INT};
/* clang-format on */

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

static dt_status expected(loader *L, const node *n, const char *path, const char *what,
                          const char *note)
{
    char got[160];
    return fail_node(L, n, "%s: expected %s, got %s%s", path, what,
                     describe(n, true, got, sizeof got), note);
}

/* An int in range and in the storage's range (int fields: INT_MAX). */
static dt_status get_int(loader *L, const node *n, const char *path, frange r, long max, long *out)
{
    char what[64];
    snprintf(what, sizeof what, "an int%s", range_text(r));
    long v = 0;
    if (!to_long(n, &v)) return expected(L, n, path, what, "");
    if (!in_range((double)v, r)) return expected(L, n, path, what, "");
    if (v > max) {
        char note[64];
        snprintf(note, sizeof note, " (at most %ld)", max);
        return expected(L, n, path, what, note);
    }
    *out = v;
    return DT_OK;
}

static void join(char *buf, size_t size, const char *const *names, unsigned mask)
{
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; names[i] && o < size; i++)
        if (mask & (1u << i))
            o += (size_t)snprintf(buf + o, size - o, "%s%s", o ? ", " : "", names[i]);
}

/* ======================================================================
 * Fields: defaults, parsing, storing
 * ====================================================================== */
#define AT(base, f, type) ((type *)((char *)(base) + (f)->off))
#define CAT(base, f, type) ((const type *)((const char *)(base) + (f)->off))

static void store_int(void *base, const field *f, long v)
{
    switch (f->store) {
    case ST_INT: *AT(base, f, int) = (int)v; break;
    case ST_ULL: *AT(base, f, unsigned long long) = (unsigned long long)v; break;
    default: *AT(base, f, long) = v; break;
    }
}

static long load_int(const void *base, const field *f)
{
    switch (f->store) {
    case ST_INT: return *CAT(base, f, int);
    case ST_ULL: return (long)*CAT(base, f, unsigned long long);
    default: return *CAT(base, f, long);
    }
}

static void store_enum(void *base, const field *f, int v)
{
    if (f->store)
        snprintf(AT(base, f, char), (size_t)f->store, "%s", f->choices[v]);
    else
        *AT(base, f, int) = v;
}

static int load_enum(const void *base, const field *f)
{
    if (!f->store) return *CAT(base, f, int);
    for (int i = 0; f->choices[i]; i++)
        if (strcmp(CAT(base, f, char), f->choices[i]) == 0) return i;
    return 0;
}

/* Member by member, so padding stays as memset left it (tests memcmp configs). */
static void store_dur(void *base, const field *f, long v)
{
    dt_duration *d = AT(base, f, dt_duration);
    d->value = v;
    d->in_epochs = f->store == 1;
    d->set = true;
}

static void apply_defaults(const field *tab, size_t n, void *base, dt_optimizer_name opt)
{
    for (size_t i = 0; i < n; i++) {
        const field *f = &tab[i];
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
            if (f->def_str) snprintf(AT(base, f, char), (size_t)f->store, "%s", f->def_str);
            break;
        case F_DUR:
            if (!isnan(d)) store_dur(base, f, (long)d);
            break;
        case F_CUSTOM: break;
        }
    }
}

static dt_status parse_field(loader *L, const field *f, const node *n, const char *path, void *base)
{
    char what[256];
    switch (f->type) {
    case F_INT: {
        long v = 0;
        long max = f->store == ST_INT ? INT_MAX : LONG_MAX;
        dt_status st = get_int(L, n, path, f->range, max, &v);
        if (!st) store_int(base, f, v);
        return st;
    }
    case F_DUR: {
        long v = 0;
        dt_status st = get_int(L, n, path, f->range, LONG_MAX, &v);
        if (!st) store_dur(base, f, v);
        return st;
    }
    case F_FLOAT: {
        double v;
        snprintf(what, sizeof what, "a float%s", range_text(f->range));
        if (!to_double(n, &v) || !in_range(v, f->range)) return expected(L, n, path, what, "");
        *AT(base, f, double) = v;
        return DT_OK;
    }
    case F_BOOL: {
        bool v;
        if (!to_bool(n, &v)) return expected(L, n, path, "true or false", "");
        *AT(base, f, bool) = v;
        return DT_OK;
    }
    case F_STR: {
        if (n->kind != N_SCALAR || !n->text[0] || is_null(n))
            return expected(L, n, path, "a non-empty string", "");
        if (strlen(n->text) >= (size_t)f->store) {
            snprintf(what, sizeof what, "a string of at most %d bytes", f->store - 1);
            return expected(L, n, path, what, "");
        }
        snprintf(AT(base, f, char), (size_t)f->store, "%s", n->text);
        return DT_OK;
    }
    case F_ENUM: {
        if (n->kind == N_SCALAR)
            for (int i = 0; f->choices[i]; i++)
                if (strcmp(n->text, f->choices[i]) == 0) {
                    store_enum(base, f, i);
                    return DT_OK;
                }
        char list[200];
        join(list, sizeof list, f->choices, ~0u);
        snprintf(what, sizeof what, "one of %s", list);
        return expected(L, n, path, what, "");
    }
    case F_CUSTOM: return f->parse(L, f, n, path, base);
    }
    return DT_OK;
}

static const field *field_of(const field *tab, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(tab[i].key, key) == 0) return &tab[i];
    return NULL;
}

static bool applies(const field *f, int domain, const dt_config *cfg)
{
    if (!f->applies || domain == D_NONE) return true;
    unsigned bit =
        1u << (domain == D_OPTIMIZER ? (int)cfg->optimizer.name : (int)cfg->scheduler.name);
    return (f->applies & bit) != 0;
}

/* Parse every entry of `map` (NULL or a null scalar: none) against `tab`
 * into base, then check the required keys; `pos` places a missing key. */
static dt_status apply_map(loader *L, const node *map, const node *pos, const char *path,
                           const field *tab, size_t n, int domain, void *base, const dt_config *cfg)
{
    if (map) pos = map;
    if (map && is_null(map)) map = NULL;
    if (map && map->kind != N_MAP) return expected(L, map, path, "a mapping of keys", "");
    /* required keys first: a missing optimizer.name decides what applies */
    for (size_t k = 0; k < n; k++)
        if (tab[k].required && !lookup(map, tab[k].key))
            return fail_node(L, pos, "%s.%s: required key missing", path, tab[k].key);
    for (int i = 0; map && i < map->n; i++) {
        const entry *e = &map->ents[i];
        char sub[PATH_BUF];
        subpath(sub, sizeof sub, "%s.%s", path, e->key);
        const field *f = field_of(tab, n, e->key);
        if (!f) {
            char keys[600];
            size_t o = 0;
            keys[0] = 0;
            for (size_t k = 0; k < n && o < sizeof keys; k++)
                o += (size_t)snprintf(keys + o, sizeof keys - o, "%s%s", k ? ", " : "", tab[k].key);
            const char *last = strrchr(path, '.');
            return fail_entry(L, e, "%s: unknown key; %s takes %s", sub, last ? last + 1 : path,
                              keys);
        }
        if (!applies(f, domain, cfg)) {
            char list[200];
            bool opt = domain == D_OPTIMIZER;
            join(list, sizeof list, opt ? opt_names : sched_names, f->applies);
            return fail_entry(
                L, e, "%s does not apply to %s '%s' (it applies to %s)", sub,
                opt ? "optimizer" : "scheduler",
                opt ? opt_names[cfg->optimizer.name] : sched_names[cfg->scheduler.name], list);
        }
        dt_status st = parse_field(L, f, e->val, sub, base);
        if (st) return st;
    }
    return DT_OK;
}

/* ======================================================================
 * Custom fields: model.input, model.layers, scheduler.milestones
 * ====================================================================== */
static dt_status parse_input(loader *L, const field *f, const node *n, const char *path, void *base)
{
    dt_config *cfg = base;
    if (n->kind != N_LIST || n->n != 3)
        return expected(L, n, path, "[C, H, W], three ints > 0", "");
    for (int i = 0; i < 3; i++) {
        char sub[PATH_BUF];
        subpath(sub, sizeof sub, "%s[%d]", path, i);
        long v = 0;
        dt_status st = get_int(L, n->ents[i].val, sub, R_GT0, INT_MAX, &v);
        if (st) return st;
        cfg->model.input[i] = (int)v;
    }
    return DT_OK;
}

static void write_input(const field *f, const void *base, FILE *out)
{
    const dt_config *cfg = base;
    fprintf(out, " [%d, %d, %d]", cfg->model.input[0], cfg->model.input[1], cfg->model.input[2]);
}

static const char layer_help[] =
    "relu, sigmoid, tanh, flatten, {dense: N}, {conv: {out: N, kernel: K, stride: S, pad: P}} "
    "or {maxpool: {size: N, stride: S}}";

static dt_status parse_layer(loader *L, const node *n, const char *path, dt_layer_spec *spec,
                             const dt_config *cfg)
{
    char got[160];
    memset(spec, 0, sizeof *spec);
    spec->line = n->line;
    spec->col = n->col;
    if (n->kind == N_SCALAR) {
        static const dt_layer_kind words[] = {DT_LAYER_RELU, DT_LAYER_SIGMOID, DT_LAYER_TANH,
                                              DT_LAYER_FLATTEN};
        for (size_t i = 0; i < DT_ARRAY_LEN(words); i++)
            if (strcmp(n->text, layer_names[words[i]]) == 0) {
                spec->kind = words[i];
                return DT_OK;
            }
        return fail_node(L, n, "%s: unknown layer %s; expected %s", path,
                         describe(n, false, got, sizeof got), layer_help);
    }
    if (n->kind != N_MAP || n->n != 1)
        return fail_node(L, n, "%s: expected one layer like {dense: 64}, got %s", path,
                         describe(n, false, got, sizeof got));
    const entry *e = &n->ents[0];
    char sub[PATH_BUF];
    subpath(sub, sizeof sub, "%s.%s", path, e->key);
    if (strcmp(e->key, "dense") == 0) {
        spec->kind = DT_LAYER_DENSE;
        return parse_field(L, &dense_field, e->val, sub, spec);
    }
    if (strcmp(e->key, "conv") == 0) {
        spec->kind = DT_LAYER_CONV;
        if (is_null(e->val)) return expected(L, e->val, sub, "{out: N, kernel: K}", "");
        apply_defaults(conv_fields, DT_ARRAY_LEN(conv_fields), spec, 0);
        return apply_map(L, e->val, n, sub, conv_fields, DT_ARRAY_LEN(conv_fields), D_NONE, spec,
                         cfg);
    }
    if (strcmp(e->key, "maxpool") == 0) {
        spec->kind = DT_LAYER_MAXPOOL;
        apply_defaults(maxpool_fields, DT_ARRAY_LEN(maxpool_fields), spec, 0);
        dt_status st = apply_map(L, e->val, n, sub, maxpool_fields, DT_ARRAY_LEN(maxpool_fields),
                                 D_NONE, spec, cfg);
        if (!st && !lookup(e->val, "stride")) spec->stride = spec->size;
        return st;
    }
    char key[160];
    node k = {.kind = N_SCALAR, .plain = true, .text = e->key};
    return fail_entry(L, e, "%s: unknown layer %s; expected %s", path,
                      describe(&k, false, key, sizeof key), layer_help);
}

static dt_status parse_layers(loader *L, const field *f, const node *n, const char *path,
                              void *base)
{
    dt_config *cfg = base;
    if (n->kind != N_LIST || n->n == 0)
        return expected(L, n, path, "a non-empty list of layers", "");
    if (n->n > DT_MAX_LAYERS) {
        char what[64];
        snprintf(what, sizeof what, "at most %d layers", DT_MAX_LAYERS);
        return expected(L, n, path, what, "");
    }
    for (int i = 0; i < n->n; i++) {
        char sub[PATH_BUF];
        subpath(sub, sizeof sub, "%s[%d]", path, i);
        dt_status st = parse_layer(L, n->ents[i].val, sub, &cfg->model.layers[i], cfg);
        if (st) return st;
    }
    cfg->model.n_layers = n->n;
    return DT_OK;
}

static void write_params(const field *tab, size_t n, const void *spec, FILE *out)
{
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%s%s: %ld", i ? ", " : "", tab[i].key, load_int(spec, &tab[i]));
}

static void write_layers(const field *f, const void *base, FILE *out)
{
    const dt_config *cfg = base;
    fputc('\n', out);
    for (int i = 0; i < cfg->model.n_layers; i++) {
        const dt_layer_spec *s = &cfg->model.layers[i];
        fprintf(out, "    - ");
        switch (s->kind) {
        case DT_LAYER_DENSE: fprintf(out, "{dense: %d}", s->units); break;
        case DT_LAYER_CONV:
            fprintf(out, "{conv: {");
            write_params(conv_fields, DT_ARRAY_LEN(conv_fields), s, out);
            fprintf(out, "}}");
            break;
        case DT_LAYER_MAXPOOL:
            fprintf(out, "{maxpool: {");
            write_params(maxpool_fields, DT_ARRAY_LEN(maxpool_fields), s, out);
            fprintf(out, "}}");
            break;
        default: fprintf(out, "%s", dt_layer_str(s->kind)); break;
        }
        if (i + 1 < cfg->model.n_layers) fputc('\n', out);
    }
}

static dt_status parse_milestones(loader *L, const field *f, const node *n, const char *path,
                                  void *base)
{
    dt_config *cfg = base;
    char what[96];
    snprintf(what, sizeof what, "a non-empty list of at most %d increasing ints > 0",
             DT_MAX_MILESTONES);
    if (n->kind != N_LIST || n->n == 0 || n->n > DT_MAX_MILESTONES)
        return expected(L, n, path, what, "");
    for (int i = 0; i < n->n; i++) {
        char sub[PATH_BUF];
        subpath(sub, sizeof sub, "%s[%d]", path, i);
        long v = 0;
        dt_status st = get_int(L, n->ents[i].val, sub, R_GT0, LONG_MAX, &v);
        if (st) return st;
        if (i > 0 && v <= cfg->scheduler.milestones[i - 1]) {
            snprintf(what, sizeof what, "an int > %ld (milestones must increase)",
                     cfg->scheduler.milestones[i - 1]);
            return expected(L, n->ents[i].val, sub, what, "");
        }
        cfg->scheduler.milestones[i] = v;
    }
    cfg->scheduler.n_milestones = n->n;
    cfg->scheduler.milestones_in_epochs = f->store == 1;
    return DT_OK;
}

static void write_milestones(const field *f, const void *base, FILE *out)
{
    const dt_config *cfg = base;
    fputs(" [", out);
    for (int i = 0; i < cfg->scheduler.n_milestones; i++)
        fprintf(out, "%s%ld", i ? ", " : "", cfg->scheduler.milestones[i]);
    fputc(']', out);
}

/* ======================================================================
 * Exclusive pairs and --set
 * ====================================================================== */

/* Both members of a pair in one section: an error naming both places. */
static dt_status check_pairs(loader *L, const node *root)
{
    for (size_t i = 0; i < DT_ARRAY_LEN(pairs); i++) {
        const node *sec = lookup(root, pairs[i].section);
        const entry *a = find(sec, pairs[i].a), *b = find(sec, pairs[i].b);
        if (!a || !b) continue;
        if (a > b) {
            const entry *t = a;
            a = b;
            b = t;
        }
        char first[DT_ERRMSG_MAX];
        where(L, a->src, a->line, a->col, b->src < 0, first, sizeof first);
        return fail_entry(L, b, "%s.%s and %s.%s (%s) exclude each other; give only one",
                          pairs[i].section, b->key, pairs[i].section, a->key, first);
    }
    return DT_OK;
}

static void remove_entry(node *map, entry *e)
{
    dt_free(e->key);
    node_free(e->val);
    size_t i = (size_t)(e - map->ents);
    memmove(e, e + 1, (size_t)(map->n - 1 - (int)i) * sizeof *e);
    map->n--;
}

/* After --set SECTION.KEY: the file's pair partner of KEY goes; one from an
 * earlier --set stays and makes an error. */
static dt_status drop_partner(loader *L, node *map, const char *sec, const char *key, int i)
{
    for (size_t p = 0; p < DT_ARRAY_LEN(pairs); p++) {
        if (strcmp(pairs[p].section, sec) != 0) continue;
        const char *other = strcmp(pairs[p].a, key) == 0   ? pairs[p].b
                            : strcmp(pairs[p].b, key) == 0 ? pairs[p].a
                                                           : NULL;
        entry *e = other ? find(map, other) : NULL;
        if (!e) continue;
        if (e->src < 0) {
            remove_entry(map, e);
            continue;
        }
        return fail_at(L, i, 0, 0, "%s.%s and %s.%s (--set %s) exclude each other; give only one",
                       sec, key, sec, other, L->sets[e->src]);
    }
    return DT_OK;
}

static dt_status apply_set(loader *L, node *root, int i)
{
    const char *s = L->sets[i];
    const char *eq = strchr(s, '=');
    if (!eq) return fail_at(L, i, 0, 0, "expected KEY=VALUE, e.g. --set optimizer.lr=0.1");
    size_t klen = (size_t)(eq - s);
    if (klen == 0)
        return fail_at(L, i, 0, 0, "empty KEY; expected KEY=VALUE, e.g. optimizer.lr=0.1");
    if (klen >= PATH_BUF) return fail_at(L, i, 0, 0, "KEY is longer than %d bytes", PATH_BUF - 1);
    char key[PATH_BUF];
    memcpy(key, s, klen);
    key[klen] = 0;
    char *parts[MAX_SET_PARTS];
    int np = 0;
    for (char *p = key;; p++) {
        char *dot = strchr(p, '.');
        if (dot) *dot = 0;
        if (!*p)
            return fail_at(L, i, 0, 0, "KEY has an empty part; expected a path like optimizer.lr");
        if (np == MAX_SET_PARTS)
            return fail_at(L, i, 0, 0, "KEY has more than %d parts", MAX_SET_PARTS);
        parts[np++] = p;
        if (!dot) break;
        p = dot;
    }

    node *val;
    char full[PATH_BUF];
    memcpy(full, s, klen);
    full[klen] = 0;
    dt_status st = parse_doc(L, eq + 1, strlen(eq + 1), i, full, &val);
    if (st) return st;
    node *map = root;
    for (int k = 0; k < np - 1; k++) {
        entry *e = find(map, parts[k]);
        if (e && e->val->kind == N_MAP) {
            map = e->val;
            continue;
        }
        if (e && !is_null(e->val)) {
            char prefix[PATH_BUF] = "";
            for (int j = 0; j <= k; j++)
                snprintf(prefix + strlen(prefix), sizeof prefix - strlen(prefix), "%s%s",
                         j ? "." : "", parts[j]);
            node_free(val);
            return fail_at(L, i, 0, 0, "%s is %s, not a section of keys", prefix,
                           e->val->kind == N_LIST ? "a list" : "a value");
        }
        node *sub = NULL;
        if ((st = node_alloc(L, N_MAP, i, 0, 0, &sub))) {
            node_free(val);
            return st;
        }
        if (e) { /* `key:` with no value becomes a section */
            node_free(e->val);
            e->val = sub;
            e->src = i;
        } else {
            char *name = dt_strdup(parts[k]);
            if (!name) {
                node_free(sub);
                node_free(val);
                return oom(L);
            }
            if ((st = add_entry(L, map, name, 0, 0, i, sub))) {
                node_free(val);
                return st;
            }
        }
        map = sub;
    }
    entry *e = find(map, parts[np - 1]);
    if (e) {
        node_free(e->val);
        e->val = val;
        e->src = i;
        e->line = e->col = 0;
    } else {
        char *name = dt_strdup(parts[np - 1]);
        if (!name) {
            node_free(val);
            return oom(L);
        }
        if ((st = add_entry(L, map, name, 0, 0, i, val))) return st;
    }
    return np == 2 ? drop_partner(L, map, parts[0], parts[1], i) : DT_OK;
}

/* ======================================================================
 * Validation
 * ====================================================================== */
static dt_status parse_name(loader *L, const node *root, const char *sec, dt_config *cfg)
{
    const node *s = lookup(root, sec);
    const node *n = s && s->kind == N_MAP ? lookup(s, "name") : NULL;
    if (!n) return DT_OK; /* apply_map reports a missing name or a bad section */
    const section *t = NULL;
    for (size_t i = 0; i < DT_ARRAY_LEN(sections); i++)
        if (strcmp(sections[i].name, sec) == 0) t = &sections[i];
    char path[PATH_BUF];
    snprintf(path, sizeof path, "%s.name", sec);
    return parse_field(L, field_of(t->fields, t->n, "name"), n, path, cfg);
}

/* Defaults that depend on other keys, and checks across keys. */
static dt_status finish(loader *L, const node *root, dt_config *cfg)
{
    const node *opt = lookup(root, "optimizer"), *sch = lookup(root, "scheduler");
    const node *data = lookup(root, "data");
    if (isnan(cfg->optimizer.lr))
        return fail_node(L, opt ? opt : root,
                         "optimizer.lr: required key missing (for optimizer '%s')",
                         opt_names[cfg->optimizer.name]);
    if (cfg->scheduler.name == DT_SCHED_MULTISTEP && cfg->scheduler.n_milestones == 0)
        return fail_node(L, sch ? sch : root,
                         "scheduler.milestones: required key missing (scheduler 'multistep' needs "
                         "milestones or milestones_epochs)");
    if (strcmp(cfg->data.dataset, "idx") == 0) {
        static const char *const files[] = {"train_images", "train_labels", "test_images",
                                            "test_labels"};
        for (size_t i = 0; i < DT_ARRAY_LEN(files); i++)
            if (!lookup(data, files[i]))
                return fail_node(
                    L, data ? data : root,
                    "data.%s: required key missing (dataset 'idx' names all four files)", files[i]);
    }
    const dt_duration *mx = &cfg->scheduler.max, *wu = &cfg->scheduler.warmup;
    if (mx->set && wu->set && mx->in_epochs == wu->in_epochs && mx->value <= wu->value) {
        const entry *e = find(sch, mx->in_epochs ? "max_epochs" : "max_steps");
        return fail_at(L, e ? e->src : -1, e ? e->line : 0, e ? e->col : 0,
                       "scheduler.%s: expected more than scheduler.%s (%ld), got %ld",
                       mx->in_epochs ? "max_epochs" : "max_steps",
                       wu->in_epochs ? "warmup_epochs" : "warmup_steps", wu->value, mx->value);
    }

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
        return fail_node(L, root,
                         "run.out_dir: the default runs/<name> is too long; set run.out_dir");
    if (!cfg->checkpoint.dir[0] &&
        (size_t)snprintf(cfg->checkpoint.dir, sizeof cfg->checkpoint.dir, "%s/checkpoints",
                         cfg->run.out_dir) >= sizeof cfg->checkpoint.dir)
        return fail_node(L, root,
                         "checkpoint.dir: the default <out_dir>/checkpoints is too long; set "
                         "checkpoint.dir");
    return DT_OK;
}

static dt_status validate(loader *L, const node *root, dt_config *cfg)
{
    /* unknown sections first, so a typo is not reported as a missing key */
    for (int i = 0; i < root->n; i++) {
        const entry *e = &root->ents[i];
        bool known = false;
        for (size_t s = 0; s < DT_ARRAY_LEN(sections); s++)
            known |= strcmp(e->key, sections[s].name) == 0;
        if (!known) {
            char list[200];
            size_t o = 0;
            for (size_t s = 0; s < DT_ARRAY_LEN(sections); s++)
                o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", s ? ", " : "",
                                      sections[s].name);
            return fail_entry(L, e, "%s: unknown section; allowed: %s", e->key, list);
        }
    }
    dt_status st = check_pairs(L, root);
    /* the names first: defaults and applicability depend on them */
    if (!st) st = parse_name(L, root, "optimizer", cfg);
    if (st) return st;
    for (size_t s = 0; s < DT_ARRAY_LEN(sections); s++)
        apply_defaults(sections[s].fields, sections[s].n, cfg, cfg->optimizer.name);
    cfg->model.input[0] = 1, cfg->model.input[1] = 28, cfg->model.input[2] = 28;
    if ((st = parse_name(L, root, "scheduler", cfg))) return st;

    for (size_t s = 0; s < DT_ARRAY_LEN(sections); s++) {
        const section *t = &sections[s];
        st = apply_map(L, lookup(root, t->name), root, t->name, t->fields, t->n, t->domain, cfg,
                       cfg);
        if (st) return st;
    }
    return finish(L, root, cfg);
}

/* ======================================================================
 * Public
 * ====================================================================== */
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
    size_t len = 0;
    node *root = NULL;
    dt_status st = read_file(&L, &text, &len);
    if (!st) st = parse_doc(&L, text, len, -1, "", &root);
    if (!st && root->kind != N_MAP) {
        char got[160];
        st = is_null(root) && !root->text[0]
                 ? fail_at(&L, -1, 0, 0, "the file is empty (no YAML document)")
                 : fail_node(&L, root,
                             "expected a mapping of sections (run:, model:, ...) at the "
                             "top level, got %s",
                             describe(root, false, got, sizeof got));
    }
    if (!st) st = check_pairs(&L, root); /* both in the file, before --set can hide it */
    for (int i = 0; !st && i < n_sets; i++) st = apply_set(&L, root, i);
    if (!st) {
        snprintf(cfg->source, sizeof cfg->source, "%s", path);
        st = validate(&L, root, cfg);
    }
    node_free(root);
    dt_free(text);
    /* one line whatever the input: keys, paths and --set text may hold
     * control characters (a folded multi-line key has newlines) */
    if (st && err)
        for (char *c = err->msg; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
    return st;
}

static void write_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        /* YAML folds its Unicode line breaks even inside quotes: escape them */
        if (p[0] == 0xc2 && p[1] == 0x85) {
            fputs("\\N", out), p++;
            continue;
        }
        if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
            fputs(p[2] == 0xa8 ? "\\L" : "\\P", out), p += 2;
            continue;
        }
        /* characters libyaml's reader refuses even inside quotes ("control
         * characters are not allowed"): C1 controls U+0080..U+009F other
         * than U+0085, and the non-characters U+FFFE, U+FFFF */
        if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            fprintf(out, "\\x%02x", p[1]), p++;
            continue;
        }
        if (p[0] == 0xef && p[1] == 0xbf && (p[2] == 0xbe || p[2] == 0xbf)) {
            fprintf(out, "\\u%04X", 0xfffeu + (p[2] - 0xbeu)), p += 2;
            continue;
        }
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(out, "\\x%02x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

void dt_config_write_yaml(const dt_config *cfg, FILE *out)
{
    fprintf(out, "# dtrain configuration with every default resolved\n");
    if (cfg->source[0]) {
        fprintf(out, "# from ");
        write_string(out, cfg->source);
        fputc('\n', out);
    }
    for (size_t s = 0; s < DT_ARRAY_LEN(sections); s++) {
        const section *t = &sections[s];
        fprintf(out, "%s:\n", t->name);
        for (size_t i = 0; i < t->n; i++) {
            const field *f = &t->fields[i];
            if (!applies(f, t->domain, cfg)) continue;
            if (f->type == F_DUR) { /* the member of the pair in the unit given */
                const dt_duration *d = CAT(cfg, f, dt_duration);
                if (!d->set || d->in_epochs != (f->store == 1)) continue;
            }
            if (f->parse == parse_milestones &&
                cfg->scheduler.milestones_in_epochs != (f->store == 1))
                continue;
            fprintf(out, "  %s:%s", f->key, f->type == F_CUSTOM ? "" : " ");
            switch (f->type) {
            case F_INT:
                if (f->store == ST_ULL)
                    fprintf(out, "%llu", *CAT(cfg, f, unsigned long long));
                else
                    fprintf(out, "%ld", load_int(cfg, f));
                break;
            case F_FLOAT: fprintf(out, "%.17g", *CAT(cfg, f, double)); break;
            case F_BOOL: fprintf(out, "%s", *CAT(cfg, f, bool) ? "true" : "false"); break;
            case F_STR: write_string(out, CAT(cfg, f, char)); break;
            case F_ENUM: fprintf(out, "%s", f->choices[load_enum(cfg, f)]); break;
            case F_DUR: fprintf(out, "%ld", CAT(cfg, f, dt_duration)->value); break;
            case F_CUSTOM: f->write(f, cfg, out); break;
            }
            fputc('\n', out);
        }
    }
}

const char *dt_optimizer_str(dt_optimizer_name name)
{
    return (unsigned)name < DT_OPT_COUNT ? opt_names[name] : "?";
}

const char *dt_sched_str(dt_sched_name name)
{
    return (unsigned)name < DT_SCHED_COUNT ? sched_names[name] : "?";
}

const char *dt_layer_str(dt_layer_kind kind)
{
    return (unsigned)kind < DT_LAYER_KIND_COUNT ? layer_names[kind] : "?";
}

long dt_duration_steps(dt_duration d, long updates_per_epoch)
{
    if (!d.in_epochs) return d.value;
    if (d.value <= 0 || updates_per_epoch <= 0) return 0;
    if (d.value > LONG_MAX / updates_per_epoch) return LONG_MAX;
    return d.value * updates_per_epoch;
}
