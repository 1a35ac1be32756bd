/* overrides.c - exclusive key pairs, and --set KEY=VALUE grafted into the tree.
 *
 * Each VALUE is parsed as YAML (tree.c) and replaces, or adds, the node at
 * the dotted KEY; missing sections on the way are created, and a section
 * written as `key:` with nothing after it becomes one. The nodes keep the
 * --set as their origin, so a later error names the --set, not the file.
 * A --set of one member of an exclusive pair (epochs | steps, ...) drops the
 * other member when the file gave it: the command line wins. */
#include <string.h>

#include "config_internal.h"

#define MAX_SET_PARTS 8 /* components of a --set KEY */

dt_status cfg_check_pairs(loader *L, const node *root)
{
    for (size_t i = 0; i < cfg_n_pairs; i++) {
        const key_pair *p = &cfg_pairs[i];
        const node *sec = cfg_lookup(root, p->section);
        const entry *a = cfg_find(sec, p->a), *b = cfg_find(sec, p->b);
        if (!a || !b) continue;
        if (a > b) { /* name the later one, and where the earlier one was */
            const entry *t = a;
            a = b;
            b = t;
        }
        char first[DT_ERRMSG_MAX];
        cfg_where(L, a->src, a->line, a->col, b->src < 0, first, sizeof first);
        return cfg_fail_entry(L, b, "%s.%s and %s.%s (%s) exclude each other; give only one",
                              p->section, b->key, p->section, a->key, first);
    }
    return DT_OK;
}

static void remove_entry(node *map, entry *e)
{
    dt_free(e->key);
    cfg_node_free(e->val);
    size_t i = (size_t)(e - map->ents);
    memmove(e, e + 1, (size_t)(map->n - 1 - (int)i) * sizeof *e);
    map->n--;
}

/* After --set SECTION.KEY: the file's pair partner of KEY goes; one from an
 * earlier --set stays and makes an error. */
static dt_status drop_partner(loader *L, node *map, const char *sec, const char *key, int i)
{
    for (size_t p = 0; p < cfg_n_pairs; p++) {
        const key_pair *pair = &cfg_pairs[p];
        if (strcmp(pair->section, sec) != 0) continue;
        const char *other = strcmp(pair->a, key) == 0   ? pair->b
                            : strcmp(pair->b, key) == 0 ? pair->a
                                                        : NULL;
        entry *e = other ? cfg_find(map, other) : NULL;
        if (!e) continue;
        if (e->src < 0) {
            remove_entry(map, e);
            continue;
        }
        return cfg_fail_at(L, i, 0, 0,
                           "%s.%s and %s.%s (--set %s) exclude each other; give only one", sec,
                           key, sec, other, L->sets[e->src]);
    }
    return DT_OK;
}

/* Split KEY (the text of --set i before '=', klen bytes) at its dots into
 * key[] (modified in place) and parts[]. */
static dt_status split_key(loader *L, int i, size_t klen, char key[PATH_BUF],
                           char *parts[MAX_SET_PARTS], int *n_parts)
{
    if (klen == 0)
        return cfg_fail_at(L, i, 0, 0, "empty KEY; expected KEY=VALUE, e.g. optimizer.lr=0.1");
    if (klen >= PATH_BUF)
        return cfg_fail_at(L, i, 0, 0, "KEY is longer than %d bytes", PATH_BUF - 1);
    memcpy(key, L->sets[i], klen);
    key[klen] = 0;
    int np = 0;
    for (char *p = key;; p++) {
        char *dot = strchr(p, '.');
        if (dot) *dot = 0;
        if (!*p)
            return cfg_fail_at(L, i, 0, 0,
                               "KEY has an empty part; expected a path like optimizer.lr");
        if (np == MAX_SET_PARTS)
            return cfg_fail_at(L, i, 0, 0, "KEY has more than %d parts", MAX_SET_PARTS);
        parts[np++] = p;
        if (!dot) break;
        p = dot;
    }
    *n_parts = np;
    return DT_OK;
}

/* The mapping parts[0].parts[1]...parts[depth-1] of --set i, created where
 * missing (a `key:` with no value becomes a section). */
static dt_status section_of(loader *L, node *root, char *const *parts, int depth, int i,
                            node **out)
{
    node *map = root;
    for (int k = 0; k < depth; k++) {
        entry *e = cfg_find(map, parts[k]);
        if (e && e->val->kind == N_MAP) {
            map = e->val;
            continue;
        }
        if (e && !cfg_is_null(e->val)) {
            char prefix[PATH_BUF] = "";
            for (int j = 0; j <= k; j++)
                snprintf(prefix + strlen(prefix), sizeof prefix - strlen(prefix), "%s%s",
                         j ? "." : "", parts[j]);
            return cfg_fail_at(L, i, 0, 0, "%s is %s, not a section of keys", prefix,
                               e->val->kind == N_LIST ? "a list" : "a value");
        }
        node *sub = NULL;
        dt_status st = cfg_node_alloc(L, N_MAP, i, 0, 0, &sub);
        if (st) return st;
        if (e) {
            cfg_node_free(e->val);
            e->val = sub;
            e->src = i;
        } else {
            char *name = dt_strdup(parts[k]);
            if (!name) {
                cfg_node_free(sub);
                return cfg_oom(L);
            }
            if ((st = cfg_add_entry(L, map, name, 0, 0, i, sub))) return st;
        }
        map = sub;
    }
    *out = map;
    return DT_OK;
}

/* Put val (owned) under `key` of map, replacing what was there. */
static dt_status set_entry(loader *L, node *map, const char *key, int i, node *val)
{
    entry *e = cfg_find(map, key);
    if (e) {
        cfg_node_free(e->val);
        e->val = val;
        e->src = i;
        e->line = e->col = 0;
        return DT_OK;
    }
    char *name = dt_strdup(key);
    if (!name) {
        cfg_node_free(val);
        return cfg_oom(L);
    }
    return cfg_add_entry(L, map, name, 0, 0, i, val);
}

dt_status cfg_apply_set(loader *L, node *root, int i)
{
    const char *s = L->sets[i];
    const char *eq = strchr(s, '=');
    if (!eq) return cfg_fail_at(L, i, 0, 0, "expected KEY=VALUE, e.g. --set optimizer.lr=0.1");
    size_t klen = (size_t)(eq - s);
    char key[PATH_BUF], *parts[MAX_SET_PARTS];
    int np = 0;
    dt_status st = split_key(L, i, klen, key, parts, &np);
    if (st) return st;

    node *val = NULL, *map = NULL;
    char full[PATH_BUF];
    memcpy(full, s, klen);
    full[klen] = 0;
    if ((st = cfg_parse_doc(L, eq + 1, strlen(eq + 1), i, full, &val))) return st;
    if ((st = section_of(L, root, parts, np - 1, i, &map))) {
        cfg_node_free(val);
        return st;
    }
    if ((st = set_entry(L, map, parts[np - 1], i, val))) return st;
    return np == 2 ? drop_partner(L, map, parts[0], parts[1], i) : DT_OK;
}
