/* refparse.c - see refparse.h. */
#include "refparse.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dup_str(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static int push(char ***arr, int *n, char *s)
{
    char **grown = realloc(*arr, (size_t)(*n + 1) * sizeof **arr);
    if (!grown || !s) {
        free(s);
        if (grown) *arr = grown;
        return -1;
    }
    *arr = grown;
    (*arr)[(*n)++] = s;
    return 0;
}

int ref_load(const char *path, ref_file *f, char *why, size_t why_size)
{
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    FILE *fp = fopen(path, "r");
    if (!fp) {
        snprintf(why, why_size, "cannot open");
        return -1;
    }
    char line[1 << 16];
    while (fgets(line, sizeof line, fp)) {
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0 || line[0] == '#') continue;
        /* first token */
        size_t tok = strcspn(line, " \t");
        if (tok > 1 && line[tok - 1] == ':' && f->n_lines == 0) {
            const char *v = line + tok;
            while (*v == ' ' || *v == '\t') v++;
            int nk = f->n_headers, nv = f->n_headers;
            if (push(&f->keys, &nk, dup_str(line, tok - 1)) ||
                push(&f->values, &nv, dup_str(v, strlen(v)))) {
                fclose(fp);
                snprintf(why, why_size, "out of memory");
                return -1;
            }
            f->n_headers++;
        } else if (push(&f->lines, &f->n_lines, dup_str(line, len))) {
            fclose(fp);
            snprintf(why, why_size, "out of memory");
            return -1;
        }
    }
    fclose(fp);
    if (!ref_header(f, "kind")) {
        snprintf(why, why_size, "no 'kind:' header");
        return -1;
    }
    return 0;
}

void ref_free(ref_file *f)
{
    for (int i = 0; i < f->n_lines; i++) free(f->lines[i]);
    for (int i = 0; i < f->n_headers; i++) {
        free(f->keys[i]);
        free(f->values[i]);
    }
    free(f->lines);
    free(f->keys);
    free(f->values);
    memset(f, 0, sizeof *f);
}

const char *ref_header(const ref_file *f, const char *key)
{
    for (int i = 0; i < f->n_headers; i++)
        if (strcmp(f->keys[i], key) == 0) return f->values[i];
    return NULL;
}

int ref_header_double(const ref_file *f, const char *key, double *out, char *why,
                      size_t why_size)
{
    const char *v = ref_header(f, key);
    char *end;
    if (!v) {
        snprintf(why, why_size, "missing header '%s'", key);
        return -1;
    }
    *out = strtod(v, &end);
    if (end == v || *end) {
        snprintf(why, why_size, "header '%s' is not a number: %s", key, v);
        return -1;
    }
    return 0;
}

int ref_header_long(const ref_file *f, const char *key, long *out, char *why, size_t why_size)
{
    double d;
    if (ref_header_double(f, key, &d, why, why_size)) return -1;
    if (d != floor(d)) {
        snprintf(why, why_size, "header '%s' is not an integer", key);
        return -1;
    }
    *out = (long)d;
    return 0;
}

int ref_row(const ref_file *f, const char *prefix, double *out, int cap)
{
    size_t plen = strlen(prefix);
    for (int i = 0; i < f->n_lines; i++) {
        const char *l = f->lines[i];
        if (strncmp(l, prefix, plen) != 0 || (l[plen] != ' ' && l[plen] != 0)) continue;
        const char *p = l + plen;
        int n = 0;
        for (;;) {
            while (*p == ' ') p++;
            if (!*p) break;
            char *end;
            double v = strtod(p, &end);
            if (end == p) return -1; /* a word where a number belongs */
            if (n < cap) out[n] = v;
            n++;
            p = end;
        }
        return n;
    }
    return -1;
}

double ref_worst_ratio(const float *a, const double *r, int n, double rtol, double atol)
{
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double diff = fabs((double)a[i] - r[i]);
        double ratio = diff / (atol + rtol * fabs(r[i]));
        if (isnan(ratio)) ratio = INFINITY;
        if (ratio > worst) worst = ratio;
    }
    return worst;
}
