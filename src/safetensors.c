/* safetensors.c - the safetensors reader and writer (format and rules:
 * include/dtrain/safetensors.h).
 *
 * Writer: the header is built in memory (a few hundred bytes per tensor),
 * padded with spaces to 8-byte alignment of the data, and streamed with
 * the tensors through the atomic durable write of fs.h, each float stored
 * little-endian whatever the host.
 *
 * Reader: written for hostile bytes (it is fuzzed: tests/fuzz/
 * fuzz_safetensors.c). The header length is checked against the file's
 * real size and a fixed limit before anything is allocated; the header is
 * checked as UTF-8 as a whole, then parsed by a small recursive-descent
 * parser that knows exactly the shape the format allows (no general JSON
 * tree, so no nesting depth to exhaust); every integer is checked for
 * overflow as it is read; the tensors' extents are then checked against
 * each other (sorted by offset: they must tile the data section) and
 * their names for duplicates (sorted by name), both O(n log n). Tensor
 * data is read only on request, with pread, after all of that. */
#include "dtrain/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtrain/fs.h"

#define MAX_TENSORS 65536 /* far beyond any dtrain model (64 layers) */
#define META_KEY "__metadata__"

/* ====================================================================== *
 * Little-endian floats
 * ====================================================================== */
static void put_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* ====================================================================== *
 * Writing
 * ====================================================================== */

/* A growing text buffer for the header. */
typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} text;

static void text_add(text *t, const char *s, size_t len)
{
    if (t->oom) return;
    if (t->n + len + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->n + len + 1) cap *= 2;
        char *p = dt_realloc(t->s, cap);
        if (!p) {
            t->oom = true;
            return;
        }
        t->s = p;
        t->cap = cap;
    }
    memcpy(t->s + t->n, s, len);
    t->n += len;
    t->s[t->n] = 0;
}

static void text_cstr(text *t, const char *s) { text_add(t, s, strlen(s)); }

static void text_printf(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(text *t, const char *fmt, ...)
{
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sizeof buf) DT_BUG("safetensors header item too long");
    text_add(t, buf, (size_t)k);
}

/* A JSON string: quotes, backslashes and control characters escaped; other
 * bytes (UTF-8) as they are. */
static void text_json_string(text *t, const char *s)
{
    text_add(t, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            text_add(t, e, 2);
        } else if (c < 0x20) {
            text_printf(t, "\\u%04x", c);
        } else {
            text_add(t, (const char *)&c, 1);
        }
    }
    text_add(t, "\"", 1);
}

static size_t tensor_count(const dt_st_tensor *t)
{
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    return n;
}

static dt_status write_floats(dt_fs_atomic *f, const float *data, size_t n, dt_error *err)
{
    unsigned char buf[4096 * 4];
    while (n > 0) {
        size_t k = DT_MIN(n, sizeof buf / 4);
        for (size_t i = 0; i < k; i++) {
            uint32_t bits;
            memcpy(&bits, &data[i], 4);
            put_le32(buf + 4 * i, bits);
        }
        dt_status st = dt_fs_atomic_write(f, buf, 4 * k, err);
        if (st) return st;
        data += k;
        n -= k;
    }
    return DT_OK;
}

dt_status dt_st_write(const char *path, const dt_st_tensor *t, int n, const dt_st_meta *meta,
                      int n_meta, dt_error *err)
{
    text h = {0};
    text_add(&h, "{", 1);
    if (n_meta > 0) {
        text_cstr(&h, "\"" META_KEY "\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) text_add(&h, ",", 1);
            text_json_string(&h, meta[i].key);
            text_add(&h, ":", 1);
            text_json_string(&h, meta[i].value);
        }
        text_add(&h, "}", 1);
    }
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        if (t[i].ndim < 0 || t[i].ndim > DT_ST_MAX_DIMS || !strcmp(t[i].name, META_KEY))
            DT_BUG("safetensors: bad tensor %d to write", i);
        if (i || n_meta > 0) text_add(&h, ",", 1);
        text_json_string(&h, t[i].name);
        text_cstr(&h, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < t[i].ndim; d++) text_printf(&h, "%s%ld", d ? "," : "", t[i].shape[d]);
        uint64_t bytes = 4 * (uint64_t)tensor_count(&t[i]);
        text_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                    (unsigned long long)(offset + bytes));
        offset += bytes;
    }
    text_add(&h, "}", 1);
    /* spaces up to a multiple of 8 bytes, counting the length field */
    while (!h.oom && (8 + h.n) % 8 != 0) text_add(&h, " ", 1);
    if (h.oom) {
        dt_free(h.s);
        return dt_fail(err, DT_EINTERNAL, "%s: out of memory", path);
    }
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)h.n >> (8 * i));

    dt_fs_atomic f;
    dt_status st = dt_fs_atomic_open(&f, path, err);
    if (st == DT_OK) st = dt_fs_atomic_write(&f, len, sizeof len, err);
    if (st == DT_OK) st = dt_fs_atomic_write(&f, h.s, h.n, err);
    for (int i = 0; i < n && st == DT_OK; i++)
        st = write_floats(&f, t[i].data, tensor_count(&t[i]), err);
    if (st == DT_OK) st = dt_fs_atomic_commit(&f, err);
    dt_fs_atomic_abort(&f); /* a no-op after a failure or the commit */
    dt_free(h.s);
    return st;
}

/* ====================================================================== *
 * Reading: the header
 * ====================================================================== */

/* The dtypes of the format and their element sizes. */
static const struct {
    const char *name;
    unsigned size;
} dtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2},
    {"U16", 2},  {"F16", 2}, {"BF16", 2}, {"I32", 4},    {"U32", 4},     {"F32", 4},
    {"F64", 8},  {"I64", 8}, {"U64", 8},
};

static unsigned dtype_size(const char *name)
{
    for (size_t i = 0; i < DT_ARRAY_LEN(dtypes); i++)
        if (!strcmp(dtypes[i].name, name)) return dtypes[i].size;
    return 0;
}

/* Length of the valid UTF-8 prefix of s[0..n) (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_valid_prefix(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            return i;
        }
        if (n - i < len) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return i;
        i += len;
    }
    return n;
}

typedef struct {
    const char *s;
    size_t n, i;
    const char *path;
    const char *tensor; /* the tensor being parsed, for messages; NULL outside */
    dt_error *err;
    dt_st_file *f;
    int cap_tensors, cap_meta;
    bool have_meta;
} parser;

/* s for a message: at most 60 bytes, control characters as '?' (a
 * decoded string may hold any character; a message is one line). */
static const char *shown(const char *s, char *buf, size_t size)
{
    size_t k = 0;
    for (; s[k] && k + 1 < size && k < 60; k++)
        buf[k] = (unsigned char)s[k] < 0x20 || s[k] == 0x7f ? '?' : s[k];
    buf[k] = 0;
    return buf;
}

/* Names and keys are printed in messages and used as C strings. */
static bool has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return true;
    return false;
}

/* DT_EDATA "PATH: header byte I: [tensor "X": ]what". */
static dt_status perr(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static dt_status perr(parser *p, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (p->tensor)
        return dt_fail(p->err, DT_EDATA, "%s: header byte %zu: tensor \"%.200s\": %s", p->path,
                       8 + p->i, p->tensor, what);
    return dt_fail(p->err, DT_EDATA, "%s: header byte %zu: %s", p->path, 8 + p->i, what);
}

static void skip_ws(parser *p)
{
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' ||
                           p->s[p->i] == '\r'))
        p->i++;
}

/* What stands at the parse position, for messages. */
static const char *here(const parser *p, char *buf, size_t size)
{
    if (p->i >= p->n) return "the end of the header";
    unsigned char c = (unsigned char)p->s[p->i];
    if (c >= 0x20 && c < 0x7f)
        snprintf(buf, size, "'%c'", c);
    else
        snprintf(buf, size, "byte 0x%02x", c);
    return buf;
}

static dt_status expect_char(parser *p, char c)
{
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == c) {
        p->i++;
        return DT_OK;
    }
    char b[32];
    return perr(p, "expected '%c', found %s", c, here(p, b, sizeof b));
}

/* After skipping whitespace: is the next byte c? (consumed if so) */
static bool accept_char(parser *p, char c)
{
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == c) {
        p->i++;
        return true;
    }
    return false;
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char c = s[k];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A JSON string, decoded into a new NUL-terminated allocation (escapes
 * never make it longer than its source). \u0000 is refused: names and
 * values are C strings here. */
static dt_status parse_string(parser *p, const char *what, char **out)
{
    *out = NULL;
    skip_ws(p);
    char b[32];
    if (p->i >= p->n || p->s[p->i] != '"')
        return perr(p, "expected %s (a string), found %s", what, here(p, b, sizeof b));
    size_t start = ++p->i, end = start;
    while (end < p->n && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->n) return perr(p, "%s: unterminated string", what);
    char *o = dt_malloc(end - start + 1);
    if (!o) return dt_fail(p->err, DT_EINTERNAL, "%s: out of memory", p->path);
    size_t k = 0;
    while (p->i < end) {
        unsigned char c = (unsigned char)p->s[p->i];
        if (c < 0x20) {
            dt_free(o);
            return perr(p, "%s: control character 0x%02x in a string", what, c);
        }
        if (c != '\\') {
            o[k++] = (char)c;
            p->i++;
            continue;
        }
        char e = p->s[p->i + 1];
        p->i += 2;
        unsigned cp;
        switch (e) {
        case '"': o[k++] = '"'; continue;
        case '\\': o[k++] = '\\'; continue;
        case '/': o[k++] = '/'; continue;
        case 'b': o[k++] = '\b'; continue;
        case 'f': o[k++] = '\f'; continue;
        case 'n': o[k++] = '\n'; continue;
        case 'r': o[k++] = '\r'; continue;
        case 't': o[k++] = '\t'; continue;
        case 'u': break;
        default:
            dt_free(o);
            p->i -= 2;
            return perr(p, "%s: invalid escape in a string", what);
        }
        if (end - p->i < 4 || hex4(p->s + p->i, &cp)) {
            dt_free(o);
            return perr(p, "%s: invalid \\u escape", what);
        }
        p->i += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) { /* a high surrogate: its low half must follow */
            unsigned lo;
            if (end - p->i < 6 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u' ||
                hex4(p->s + p->i + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                dt_free(o);
                return perr(p, "%s: unpaired surrogate in a \\u escape", what);
            }
            p->i += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            dt_free(o);
            return perr(p, "%s: unpaired surrogate in a \\u escape", what);
        } else if (cp == 0) {
            dt_free(o);
            return perr(p, "%s: \\u0000 in a string", what);
        }
        k += put_utf8(o + k, cp); /* 6 or 12 source bytes give at most 4 */
    }
    p->i = end + 1;
    o[k] = 0;
    *out = o;
    return DT_OK;
}

/* A JSON number that must be an integer >= 0 (no sign, fraction, exponent
 * or leading zero) fitting 64 bits. */
static dt_status parse_u64(parser *p, const char *what, uint64_t *out)
{
    skip_ws(p);
    char b[32];
    size_t start = p->i;
    if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9')
        return perr(p, "%s: expected an integer >= 0, found %s", what, here(p, b, sizeof b));
    uint64_t v = 0;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
        unsigned d = (unsigned)(p->s[p->i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            p->i = start;
            return perr(p, "%s: integer too large", what);
        }
        v = v * 10 + d;
        p->i++;
    }
    if (p->i - start > 1 && p->s[start] == '0') {
        p->i = start;
        return perr(p, "%s: integer with a leading zero", what);
    }
    if (p->i < p->n && (p->s[p->i] == '.' || p->s[p->i] == 'e' || p->s[p->i] == 'E'))
        return perr(p, "%s: expected an integer, found a fraction or exponent", what);
    *out = v;
    return DT_OK;
}

/* [u64, ...] with at most `max` items (exactly `max` when exact). */
static dt_status parse_u64_list(parser *p, const char *what, uint64_t *v, int max, bool exact,
                                int *count)
{
    dt_status st = expect_char(p, '[');
    if (st) return st;
    int n = 0;
    if (!accept_char(p, ']')) {
        do {
            if (n == max)
                return perr(p, "%s: more than %d values", what, max);
            if ((st = parse_u64(p, what, &v[n]))) return st;
            n++;
        } while (accept_char(p, ','));
        if ((st = expect_char(p, ']'))) return st;
    }
    if (exact && n != max)
        return perr(p, "%s: %d value%s, expected %d", what, n, n == 1 ? "" : "s", max);
    *count = n;
    return DT_OK;
}

static dt_status parse_metadata(parser *p)
{
    dt_st_file *f = p->f;
    if (p->have_meta) return perr(p, "\"" META_KEY "\" appears twice");
    p->have_meta = true;
    dt_status st = expect_char(p, '{');
    if (st || accept_char(p, '}')) return st;
    do {
        char *k, *v;
        if ((st = parse_string(p, "a metadata key", &k))) return st;
        char b[64];
        if (has_control(k)) {
            dt_free(k);
            return perr(p, "a metadata key holds a control character");
        }
        for (int i = 0; i < f->n_meta; i++)
            if (!strcmp(f->meta[2 * i], k)) {
                st = perr(p, "metadata key \"%s\" appears twice", shown(k, b, sizeof b));
                dt_free(k);
                return st;
            }
        if ((st = expect_char(p, ':')) || (st = parse_string(p, "a metadata value", &v))) {
            dt_free(k);
            return st;
        }
        if (f->n_meta == p->cap_meta) {
            int cap = p->cap_meta ? 2 * p->cap_meta : 8;
            char **m = dt_realloc(f->meta, 2 * (size_t)cap * sizeof *m);
            if (!m) {
                dt_free(k);
                dt_free(v);
                return dt_fail(p->err, DT_EINTERNAL, "%s: out of memory", p->path);
            }
            f->meta = m;
            p->cap_meta = cap;
        }
        f->meta[2 * f->n_meta] = k;
        f->meta[2 * f->n_meta + 1] = v;
        f->n_meta++;
    } while (accept_char(p, ','));
    return expect_char(p, '}');
}

/* {"dtype": ..., "shape": [...], "data_offsets": [b, e]}, keys in any order. */
static dt_status parse_tensor(parser *p, dt_st_info *t)
{
    dt_status st = expect_char(p, '{');
    if (st) return st;
    bool have_dtype = false, have_shape = false, have_offsets = false;
    if (!accept_char(p, '}')) {
        do {
            char *key;
            if ((st = parse_string(p, "a key", &key))) return st;
            if ((st = expect_char(p, ':'))) {
                dt_free(key);
                return st;
            }
            if (!strcmp(key, "dtype") && !have_dtype) {
                char *d;
                if (!(st = parse_string(p, "dtype", &d))) {
                    char b[64];
                    if (strlen(d) >= sizeof t->dtype || !dtype_size(d))
                        st = perr(p, "unknown dtype \"%s\"", shown(d, b, sizeof b));
                    else
                        memcpy(t->dtype, d, strlen(d) + 1);
                    dt_free(d);
                }
                have_dtype = true;
            } else if (!strcmp(key, "shape") && !have_shape) {
                st = parse_u64_list(p, "shape", t->shape, DT_ST_MAX_DIMS, false, &t->ndim);
                have_shape = true;
            } else if (!strcmp(key, "data_offsets") && !have_offsets) {
                uint64_t o[2];
                int n;
                st = parse_u64_list(p, "data_offsets", o, 2, true, &n);
                t->begin = o[0];
                t->end = o[1];
                have_offsets = true;
            } else if (!strcmp(key, "dtype") || !strcmp(key, "shape") ||
                       !strcmp(key, "data_offsets")) {
                st = perr(p, "\"%s\" appears twice", key);
            } else {
                char b[64];
                st = perr(p, "unknown key \"%s\" (expected dtype, shape, data_offsets)",
                          shown(key, b, sizeof b));
            }
            dt_free(key);
            if (st) return st;
        } while (accept_char(p, ','));
        if ((st = expect_char(p, '}'))) return st;
    }
    if (!have_dtype || !have_shape || !have_offsets)
        return perr(p, "no \"%s\"", !have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets");
    return DT_OK;
}

static dt_status parse_header(parser *p)
{
    dt_st_file *f = p->f;
    dt_status st = expect_char(p, '{');
    if (st) return st;
    if (!accept_char(p, '}')) {
        do {
            char *name;
            if ((st = parse_string(p, "a tensor name", &name))) return st;
            if ((st = expect_char(p, ':'))) {
                dt_free(name);
                return st;
            }
            if (!strcmp(name, META_KEY)) {
                dt_free(name);
                if ((st = parse_metadata(p))) return st;
                continue;
            }
            size_t len = strlen(name);
            char b[64];
            if (len >= DT_ST_NAME_MAX || has_control(name)) {
                st = len >= DT_ST_NAME_MAX
                         ? perr(p, "tensor name \"%s...\" longer than %d bytes",
                                shown(name, b, sizeof b), DT_ST_NAME_MAX - 1)
                         : perr(p, "tensor name \"%s\" holds a control character",
                                shown(name, b, sizeof b));
                dt_free(name);
                return st;
            }
            if (f->n == MAX_TENSORS) {
                dt_free(name);
                return perr(p, "more than %d tensors", MAX_TENSORS);
            }
            if (f->n == p->cap_tensors) {
                int cap = p->cap_tensors ? 2 * p->cap_tensors : 16;
                dt_st_info *t = dt_realloc(f->tensors, (size_t)cap * sizeof *t);
                if (!t) {
                    dt_free(name);
                    return dt_fail(p->err, DT_EINTERNAL, "%s: out of memory", p->path);
                }
                f->tensors = t;
                p->cap_tensors = cap;
            }
            dt_st_info *t = &f->tensors[f->n];
            memset(t, 0, sizeof *t);
            memcpy(t->name, name, len + 1);
            dt_free(name);
            p->tensor = t->name;
            st = parse_tensor(p, t);
            p->tensor = NULL;
            if (st) return st;
            f->n++;
        } while (accept_char(p, ','));
        if ((st = expect_char(p, '}'))) return st;
    }
    skip_ws(p);
    if (p->i < p->n) {
        char b[32];
        return perr(p, "%s after the header's JSON object", here(p, b, sizeof b));
    }
    return DT_OK;
}

/* ====================================================================== *
 * Reading: the checks across tensors
 * ====================================================================== */
/* A tensor's extent, for sorting by offset. */
typedef struct {
    uint64_t begin, end;
    int index;
} extent;

static int by_extent(const void *a, const void *b)
{
    const extent *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->index - y->index;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const dt_st_info *const *)a)->name, (*(const dt_st_info *const *)b)->name);
}

/* "[2, 3]" */
static void shape_text(char *buf, size_t size, const uint64_t *shape, int ndim)
{
    size_t o = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < ndim && o < size; d++)
        o += (size_t)snprintf(buf + o, size - o, "%s%llu", d ? ", " : "",
                              (unsigned long long)shape[d]);
    if (o < size) snprintf(buf + o, size - o, "]");
}

static dt_status check_extents(dt_st_file *f, dt_error *err)
{
    const char *path = f->path;
    for (int i = 0; i < f->n; i++) {
        dt_st_info *t = &f->tensors[i];
        uint64_t count = 1, bytes;
        for (int d = 0; d < t->ndim; d++)
            if (__builtin_mul_overflow(count, t->shape[d], &count))
                return dt_fail(err, DT_EDATA, "%s: tensor \"%s\": shape has too many elements",
                               path, t->name);
        if (__builtin_mul_overflow(count, (uint64_t)dtype_size(t->dtype), &bytes))
            return dt_fail(err, DT_EDATA, "%s: tensor \"%s\": shape has too many elements", path,
                           t->name);
        t->count = count;
        char sh[256];
        shape_text(sh, sizeof sh, t->shape, t->ndim);
        if (t->end < t->begin || t->end - t->begin != bytes)
            return dt_fail(err, DT_EDATA,
                           "%s: tensor \"%s\": data_offsets [%llu, %llu] do not hold its %s %s "
                           "(%llu bytes)",
                           path, t->name, (unsigned long long)t->begin,
                           (unsigned long long)t->end, t->dtype, sh, (unsigned long long)bytes);
        if (t->end > f->data_len)
            return dt_fail(err, DT_EDATA,
                           "%s: tensor \"%s\": data_offsets [%llu, %llu] lie beyond the data "
                           "(%llu bytes; the file is truncated?)",
                           path, t->name, (unsigned long long)t->begin,
                           (unsigned long long)t->end, (unsigned long long)f->data_len);
    }
    const size_t n = (size_t)f->n;
    extent *ext = dt_malloc((n ? n : 1) * sizeof *ext);
    const dt_st_info **names = dt_malloc((n ? n : 1) * sizeof *names);
    dt_status st = DT_OK;
    if (!ext || !names) st = dt_fail(err, DT_EINTERNAL, "%s: out of memory", path);
    for (size_t i = 0; i < n && !st; i++) {
        ext[i] = (extent){f->tensors[i].begin, f->tensors[i].end, (int)i};
        names[i] = &f->tensors[i];
    }
    if (!st) {
        qsort(names, n, sizeof *names, by_name);
        qsort(ext, n, sizeof *ext, by_extent);
    }
    for (size_t i = 1; i < n && !st; i++)
        if (!strcmp(names[i]->name, names[i - 1]->name))
            st = dt_fail(err, DT_EDATA, "%s: tensor \"%s\" appears twice in the header", path,
                         names[i]->name);
    uint64_t pos = 0; /* the data must be tiled: each tensor starts where the last ended */
    for (size_t i = 0; i < n && !st; i++) {
        const dt_st_info *t = &f->tensors[ext[i].index];
        if (t->begin < pos)
            st = dt_fail(err, DT_EDATA, "%s: tensors \"%s\" and \"%s\" overlap", path,
                         f->tensors[ext[i - 1].index].name, t->name);
        else if (t->begin > pos)
            st = dt_fail(err, DT_EDATA, "%s: tensor \"%s\": %llu unused bytes before its data",
                         path, t->name, (unsigned long long)(t->begin - pos));
        pos = t->end;
    }
    if (!st && pos != f->data_len)
        st = dt_fail(err, DT_EDATA, "%s: %llu bytes after the last tensor's data", path,
                     (unsigned long long)(f->data_len - pos));
    dt_free(ext);
    dt_free(names);
    return st;
}

/* ====================================================================== *
 * Reading: the public calls
 * ====================================================================== */

/* Read exactly len bytes at offset: 0, or -1 with errno (EIO: the file
 * ended early). */
static int pread_all(int fd, void *buf, size_t len, uint64_t offset)
{
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t k = pread(fd, p, len, (off_t)offset);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -1;
        if (k == 0) {
            errno = EIO;
            return -1;
        }
        p += k;
        len -= (size_t)k;
        offset += (uint64_t)k;
    }
    return 0;
}

void dt_st_close(dt_st_file *f)
{
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    for (int i = 0; i < 2 * f->n_meta; i++) dt_free(f->meta[i]);
    dt_free(f->meta);
    dt_free(f->tensors);
    dt_free(f->path);
    dt_free(f);
}

dt_status dt_st_open(const char *path, dt_st_file **out, dt_error *err)
{
    *out = NULL;
    dt_st_file *f = dt_calloc(1, sizeof *f);
    if (!f || !(f->path = dt_strdup(path))) {
        dt_free(f);
        return dt_fail(err, DT_EINTERNAL, "%s: out of memory", path);
    }
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    dt_status st = DT_OK;
    struct stat sb;
    unsigned char len8[8];
    uint64_t size = 0, hlen = 0;
    if (f->fd < 0)
        st = dt_fail(err, DT_EDATA, "%s: cannot open: %s", path, strerror(errno));
    else if (fstat(f->fd, &sb) != 0)
        st = dt_fail(err, DT_EDATA, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(sb.st_mode))
        st = dt_fail(err, DT_EDATA, "%s: not a regular file", path);
    else if ((size = (uint64_t)sb.st_size) < 8)
        st = dt_fail(err, DT_EDATA,
                     "%s: not a safetensors file: %llu bytes, shorter than the 8-byte header "
                     "length",
                     path, (unsigned long long)size);
    else if (pread_all(f->fd, len8, 8, 0) != 0)
        st = dt_fail(err, DT_EDATA, "%s: cannot read: %s", path, strerror(errno));
    else if ((hlen = get_le64(len8)) < 2)
        st = dt_fail(err, DT_EDATA,
                     "%s: not a safetensors file: header length %llu (a JSON object takes at "
                     "least 2 bytes)",
                     path, (unsigned long long)hlen);
    else if (hlen > DT_ST_HEADER_MAX)
        st = dt_fail(err, DT_EDATA,
                     "%s: not a safetensors file: header length %llu exceeds the limit of %llu",
                     path, (unsigned long long)hlen, DT_ST_HEADER_MAX);
    else if (hlen > size - 8 && size > 8 && pread_all(f->fd, len8, 1, 8) == 0 && len8[0] != '{')
        /* no JSON object where the header should start: another kind of
         * file (a gzip file's first bytes make a length of about 560 kB) */
        st = dt_fail(err, DT_EDATA,
                     "%s: not a safetensors file: header length %llu, but only %llu bytes "
                     "follow the length, and no JSON object starts there",
                     path, (unsigned long long)hlen, (unsigned long long)(size - 8));
    else if (hlen > size - 8)
        st = dt_fail(err, DT_EDATA,
                     "%s: truncated: header length %llu, but only %llu bytes follow the length",
                     path, (unsigned long long)hlen, (unsigned long long)(size - 8));
    char *h = NULL;
    if (st == DT_OK && !(h = dt_malloc((size_t)hlen)))
        st = dt_fail(err, DT_EINTERNAL, "%s: out of memory", path);
    if (st == DT_OK && pread_all(f->fd, h, (size_t)hlen, 8) != 0)
        st = dt_fail(err, DT_EDATA, "%s: cannot read the header: %s", path, strerror(errno));
    if (st == DT_OK) {
        size_t ok = utf8_valid_prefix((const unsigned char *)h, (size_t)hlen);
        if (ok < hlen)
            st = dt_fail(err, DT_EDATA, "%s: header byte %zu: not valid UTF-8", path, 8 + ok);
    }
    if (st == DT_OK) {
        f->data_start = 8 + hlen;
        f->data_len = size - 8 - hlen;
        parser p = {.s = h, .n = (size_t)hlen, .path = path, .err = err, .f = f};
        st = parse_header(&p);
    }
    dt_free(h);
    if (st == DT_OK) st = check_extents(f, err);
    if (st != DT_OK) {
        dt_st_close(f);
        return st;
    }
    *out = f;
    return DT_OK;
}

const dt_st_info *dt_st_find(const dt_st_file *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

const char *dt_st_meta_get(const dt_st_file *f, const char *key)
{
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta[2 * i], key)) return f->meta[2 * i + 1];
    return NULL;
}

static bool same_shape(const dt_st_info *t, const dt_st_tensor *w)
{
    if (t->ndim != w->ndim) return false;
    for (int d = 0; d < t->ndim; d++)
        if (w->shape[d] < 0 || t->shape[d] != (uint64_t)w->shape[d]) return false;
    return true;
}

static void want_shape_text(char *buf, size_t size, const dt_st_tensor *w)
{
    uint64_t s[DT_ST_MAX_DIMS];
    for (int d = 0; d < w->ndim; d++) s[d] = (uint64_t)w->shape[d];
    shape_text(buf, size, s, w->ndim);
}

dt_status dt_st_check(const dt_st_file *f, const dt_st_tensor *want, int n, dt_error *err)
{
    char a[256], b[256];
    for (int i = 0; i < f->n; i++) {
        const dt_st_info *t = &f->tensors[i];
        const dt_st_tensor *w = NULL;
        for (int k = 0; k < n && !w; k++)
            if (!strcmp(want[k].name, t->name)) w = &want[k];
        if (!w) {
            /* the names that are expected, as far as they fit */
            size_t o = 0;
            a[0] = 0;
            for (int k = 0; k < n && o < sizeof a - 8; k++) {
                int len = snprintf(a + o, sizeof a - o, "%s%s", k ? ", " : "", want[k].name);
                if (len < 0 || (size_t)len >= sizeof a - o) {
                    snprintf(a + o, sizeof a - o, ", ...");
                    break;
                }
                o += (size_t)len;
            }
            return dt_fail(err, DT_EDATA, "%s: tensor \"%s\" is not one of the model's (%s)",
                           f->path, t->name, n ? a : "none");
        }
        if (strcmp(t->dtype, "F32"))
            return dt_fail(err, DT_EDATA, "%s: tensor \"%s\": dtype %s, expected F32", f->path,
                           t->name, t->dtype);
        if (!same_shape(t, w)) {
            shape_text(a, sizeof a, t->shape, t->ndim);
            want_shape_text(b, sizeof b, w);
            return dt_fail(err, DT_EDATA, "%s: tensor \"%s\": shape %s, expected %s", f->path,
                           t->name, a, b);
        }
    }
    for (int k = 0; k < n; k++)
        if (!dt_st_find(f, want[k].name)) {
            want_shape_text(b, sizeof b, &want[k]);
            return dt_fail(err, DT_EDATA, "%s: tensor \"%s\" is missing (expected F32 %s)",
                           f->path, want[k].name, b);
        }
    return DT_OK;
}

dt_status dt_st_read_f32(const dt_st_file *f, const dt_st_info *t, float *dst, dt_error *err)
{
    if (strcmp(t->dtype, "F32"))
        return dt_fail(err, DT_EDATA, "%s: tensor \"%s\": dtype %s, expected F32", f->path,
                       t->name, t->dtype);
    if (pread_all(f->fd, dst, (size_t)(t->end - t->begin), f->data_start + t->begin) != 0)
        return dt_fail(err, DT_EDATA, "%s: tensor \"%s\": cannot read: %s", f->path, t->name,
                       errno == EIO ? "the file ended early" : strerror(errno));
    for (uint64_t i = 0; i < t->count; i++) {
        unsigned char *p = (unsigned char *)&dst[i];
        uint32_t bits = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                        (uint32_t)p[3] << 24; /* little-endian whatever the host */
        memcpy(&dst[i], &bits, 4);
        if (!isfinite(dst[i]))
            return dt_fail(err, DT_EDATA, "%s: tensor \"%s\": element %llu is %s", f->path,
                           t->name, (unsigned long long)i, isnan(dst[i]) ? "NaN" : "infinite");
    }
    return DT_OK;
}

dt_status dt_st_load(const char *path, const dt_st_tensor *want, int n, dt_error *err)
{
    dt_st_file *f;
    dt_status st = dt_st_open(path, &f, err);
    if (st) return st;
    st = dt_st_check(f, want, n, err);
    for (int k = 0; k < n && st == DT_OK; k++)
        st = dt_st_read_f32(f, dt_st_find(f, want[k].name), want[k].data, err);
    dt_st_close(f);
    return st;
}
