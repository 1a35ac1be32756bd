/* tree.c - YAML text -> a tree of nodes that know where they came from.
 *
 * libyaml's event API drives a recursive reader; each node keeps its 1-based
 * line:column and its origin (the file, or which --set). Anchors, aliases,
 * tags, duplicate keys, non-scalar keys, more than one document and nesting
 * deeper than MAX_DEPTH are rejected here, so nothing later has to think
 * about them (no alias bombs, no unbounded recursion). */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "config_internal.h"

#define MAX_FILE_BYTES (1L << 20) /* a config is a page of text */
#define MAX_DEPTH 16              /* nesting of lists and mappings */
#define MAX_ITEMS 256             /* entries of one list or mapping */
#define MAX_NODES 100000          /* nodes of one parse (file or --set value) */

void cfg_node_free(node *n)
{
    if (!n) return;
    for (int i = 0; i < n->n; i++) {
        dt_free(n->ents[i].key);
        cfg_node_free(n->ents[i].val);
    }
    dt_free(n->ents);
    dt_free(n->text);
    dt_free(n);
}

entry *cfg_find(const node *map, const char *key)
{
    if (!map || map->kind != N_MAP) return NULL;
    for (int i = 0; i < map->n; i++)
        if (strcmp(map->ents[i].key, key) == 0) return &map->ents[i];
    return NULL;
}

const node *cfg_lookup(const node *map, const char *key)
{
    const entry *e = cfg_find(map, key);
    return e ? e->val : NULL;
}

bool cfg_is_null(const node *n)
{
    if (n->kind != N_SCALAR || !n->plain) return false;
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    for (size_t i = 0; i < DT_ARRAY_LEN(nulls); i++)
        if (strcmp(n->text, nulls[i]) == 0) return true;
    return false;
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
    return cfg_fail_at(r->L, r->src, line, col, "%s", msg);
}

static dt_status yaml_problem(reader *r)
{
    const yaml_parser_t *p = &r->parser;
    if (p->error == YAML_MEMORY_ERROR) return cfg_oom(r->L);
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
        return cfg_fail_at(r->L, r->src, 0, 0,
                           "YAML syntax error in the value at column %d: %s%s", col, problem, ctx);
    return cfg_fail_at(r->L, -1, line, col, "YAML syntax error: %s%s", problem, ctx);
}

static dt_status next_event(reader *r, yaml_event_t *ev)
{
    return yaml_parser_parse(&r->parser, ev) ? DT_OK : yaml_problem(r);
}

dt_status cfg_node_alloc(loader *L, int kind, int src, int line, int col, node **out)
{
    node *n = dt_calloc(1, sizeof *n);
    if (!n) return cfg_oom(L);
    n->kind = kind;
    n->src = src;
    n->line = src < 0 ? line : 0;
    n->col = src < 0 ? col : 0;
    *out = n;
    return DT_OK;
}

dt_status cfg_add_entry(loader *L, node *parent, char *key, int line, int col, int src,
                        node *val)
{
    if (parent->n == parent->cap) {
        int cap = parent->cap ? 2 * parent->cap : 8;
        entry *e = dt_realloc(parent->ents, (size_t)cap * sizeof *e);
        if (!e) {
            dt_free(key);
            cfg_node_free(val);
            return cfg_oom(L);
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
    if (!s) return cfg_oom(r->L);
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
            cfg_subpath(sub, sizeof sub, "%s[%d]", path, n->n);
            node *item;
            if ((st = read_node(r, &ev, depth + 1, sub, &item))) return st;
            if ((st = cfg_add_entry(r->L, n, NULL, 0, 0, r->src, item))) return st;
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
        cfg_subpath(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", key);
        int kl, kc;
        mark_pos(&km, &kl, &kc);
        const entry *dup = cfg_find(n, key);
        if (dup) {
            char first[DT_ERRMSG_MAX];
            cfg_where(r->L, dup->src, dup->line, dup->col, r->src < 0, first, sizeof first);
            dt_free(key);
            return cfg_fail_at(r->L, r->src, kl, kc, "%s: duplicate key (first given at %s)",
                               sub, first);
        }
        node *val = NULL;
        if ((st = next_event(r, &ev)) || (st = read_node(r, &ev, depth + 1, sub, &val))) {
            dt_free(key);
            return st;
        }
        if ((st = cfg_add_entry(r->L, n, key, kl, kc, r->src, val))) return st;
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
        if (!st) st = cfg_node_alloc(r->L, N_SCALAR, r->src, line, col, &n);
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
        if (!st) st = cfg_node_alloc(r->L, list ? N_LIST : N_MAP, r->src, line, col, &n);
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
        cfg_node_free(n);
        return st;
    }
    *out = n;
    return DT_OK;
}

dt_status cfg_parse_doc(loader *L, const char *text, size_t len, int src, const char *path,
                        node **out)
{
    reader r = {.L = L, .src = src, .text = text, .len = len};
    *out = NULL;
    L->nodes = 0;
    if (!yaml_parser_initialize(&r.parser)) return cfg_oom(L);
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
            st = cfg_fail_at(L, -1, 0, 0, "the file is empty (no YAML document)");
        else if (!(st = cfg_node_alloc(L, N_SCALAR, src, 0, 0, &root)) &&
                 !(root->text = dt_strdup("")))
            st = cfg_oom(L);
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
        cfg_node_free(root);
        return st;
    }
    *out = root;
    return DT_OK;
}

dt_status cfg_read_file(loader *L, char **out, size_t *out_len)
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
                st = cfg_oom(L);
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
