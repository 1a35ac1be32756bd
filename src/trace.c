/* trace.c - the bounded per-rank timeline and its Chrome trace JSON.
 *
 * Recording is a bounds check and a struct copy into an array allocated at
 * create time. Everything that allocates or formats (the string table, the
 * byte buffer, sorting, row assignment, the JSON) happens once at the end.
 *
 * The serialised form of one rank (native byte order: every rank of a job
 * runs on the same architecture):
 *
 *     "DTT1" u32 rank  u32 n_strings  u32 0  u64 n_events  u64 dropped
 *     n_strings x { u32 length, bytes }                     (no NUL)
 *     n_events  x { u32 name, u32 cat, i64 start_ns, i64 end_ns, i64 step, i64 arg }
 *
 * where name and cat index the string table, and start and end are whole
 * nanoseconds since the origin: rounded once, so that a span that ends at
 * the instant the next one starts still ends exactly there in the JSON
 * (a viewer misdraws spans of one track that overlap by a rounding error). */
#include "dtrain/trace.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const char *name, *cat; /* static strings */
    double t0, t1;          /* seconds, the rank's clock */
    long step, arg;
} span;

struct dt_trace {
    span *spans;
    size_t capacity, count, dropped;
    long first_step, end_step; /* updates [first_step, end_step) are traced */
    int rank;
    double origin;
};

dt_status dt_trace_create(size_t max_events, long first_step, long steps, int rank,
                          double origin, dt_trace **out, dt_error *err)
{
    dt_trace *t = dt_calloc(1, sizeof *t);
    if (!t) return dt_fail(err, DT_EINTERNAL, "out of memory for the trace");
    t->spans = dt_calloc(DT_MAX(max_events, 1), sizeof *t->spans);
    if (!t->spans) {
        dt_free(t);
        return dt_fail(err, DT_EINTERNAL, "out of memory for the trace (%zu events)", max_events);
    }
    t->capacity = max_events;
    t->first_step = first_step;
    t->end_step = steps > 0 ? first_step + steps : first_step;
    t->rank = rank;
    t->origin = origin;
    *out = t;
    return DT_OK;
}

void dt_trace_free(dt_trace *t)
{
    if (!t) return;
    dt_free(t->spans);
    dt_free(t);
}

int dt_trace_wants(const dt_trace *t, long step)
{
    return t && step < t->end_step && (step < 0 || step >= t->first_step);
}

void dt_trace_span(dt_trace *t, const char *name, const char *cat, double t0, double t1,
                   long step, long arg)
{
    if (!dt_trace_wants(t, step)) return;
    if (t->count == t->capacity) {
        t->dropped++;
        return;
    }
    t->spans[t->count++] = (span){name, cat, t0, t1, step, arg};
}

size_t dt_trace_count(const dt_trace *t) { return t ? t->count : 0; }
size_t dt_trace_dropped(const dt_trace *t) { return t ? t->dropped : 0; }

size_t dt_trace_events_per_update(int layers, int buckets)
{
    /* data + forward and backward per layer + a span per bucket + the
     * exchange's wait, the optimizer, the update itself and slack */
    return 1 + 2 * (size_t)DT_MAX(layers, 0) + (size_t)DT_MAX(buckets, 1) + 8;
}

/* ---- serialising --------------------------------------------------------- */

enum { HEADER_BYTES = 32, EVENT_BYTES = 40 };

static unsigned char *put(unsigned char *p, const void *v, size_t n)
{
    memcpy(p, v, n);
    return p + n;
}

/* Index of s in the table (by content), appending it when new. */
static uint32_t intern(const char **table, uint32_t *n, const char *s)
{
    for (uint32_t i = 0; i < *n; i++)
        if (table[i] == s || strcmp(table[i], s) == 0) return i;
    table[*n] = s;
    return (*n)++;
}

dt_status dt_trace_serialize(const dt_trace *t, void **buf, size_t *len, dt_error *err)
{
    *buf = NULL;
    *len = 0;
    /* at most two distinct strings per span */
    const char **table = dt_calloc(2 * t->count + 1, sizeof *table);
    uint32_t *name_of = dt_calloc(t->count + 1, sizeof *name_of);
    uint32_t *cat_of = dt_calloc(t->count + 1, sizeof *cat_of);
    if (!table || !name_of || !cat_of) {
        dt_free(table);
        dt_free(name_of);
        dt_free(cat_of);
        return dt_fail(err, DT_EINTERNAL, "out of memory writing the trace");
    }
    uint32_t n_strings = 0;
    size_t bytes = HEADER_BYTES + (size_t)EVENT_BYTES * t->count;
    for (size_t i = 0; i < t->count; i++) {
        uint32_t before = n_strings;
        name_of[i] = intern(table, &n_strings, t->spans[i].name);
        cat_of[i] = intern(table, &n_strings, t->spans[i].cat);
        for (uint32_t k = before; k < n_strings; k++) bytes += 4 + strlen(table[k]);
    }
    unsigned char *out = dt_malloc(bytes), *p = out;
    if (out) {
        uint32_t rank = (uint32_t)t->rank, zero = 0;
        uint64_t n_events = t->count, dropped = t->dropped;
        p = put(p, "DTT1", 4);
        p = put(p, &rank, 4);
        p = put(p, &n_strings, 4);
        p = put(p, &zero, 4);
        p = put(p, &n_events, 8);
        p = put(p, &dropped, 8);
        for (uint32_t k = 0; k < n_strings; k++) {
            uint32_t n = (uint32_t)strlen(table[k]);
            p = put(p, &n, 4);
            p = put(p, table[k], n);
        }
        for (size_t i = 0; i < t->count; i++) {
            const span *s = &t->spans[i];
            int64_t start = llround((s->t0 - t->origin) * 1e9);
            int64_t end = llround((s->t1 - t->origin) * 1e9);
            int64_t step = s->step, arg = s->arg;
            if (end < start) end = start; /* a clock that stepped back */
            p = put(p, &name_of[i], 4);
            p = put(p, &cat_of[i], 4);
            p = put(p, &start, 8);
            p = put(p, &end, 8);
            p = put(p, &step, 8);
            p = put(p, &arg, 8);
        }
        DT_CHECK((size_t)(p - out) == bytes);
    }
    dt_free(table);
    dt_free(name_of);
    dt_free(cat_of);
    if (!out) return dt_fail(err, DT_EINTERNAL, "out of memory writing the trace");
    *buf = out;
    *len = bytes;
    return DT_OK;
}

/* ---- reading a rank's buffer back ------------------------------------------ */

typedef struct {
    const char *text;
    uint32_t len;
} str;

typedef struct {
    uint32_t name, cat;
    int64_t start, end; /* ns since the origin */
    int64_t step, arg;
    int tid;
} event;

typedef struct {
    uint32_t rank, n_strings;
    uint64_t n_events, dropped;
    str *strings;
    event *events;
    uint32_t *global_cat; /* string index -> index in the categories of all ranks */
} track;

static int take(const unsigned char **p, const unsigned char *end, void *v, size_t n)
{
    if ((size_t)(end - *p) < n) return 0;
    memcpy(v, *p, n);
    *p += n;
    return 1;
}

static void track_free(track *t)
{
    dt_free(t->strings);
    dt_free(t->events);
    dt_free(t->global_cat);
}

/* 0 on success, -1 malformed, -2 out of memory */
static int track_read(track *t, const unsigned char *p, size_t len)
{
    const unsigned char *end = p + len;
    char magic[4];
    uint32_t zero;
    memset(t, 0, sizeof *t);
    if (!take(&p, end, magic, 4) || memcmp(magic, "DTT1", 4) || !take(&p, end, &t->rank, 4) ||
        !take(&p, end, &t->n_strings, 4) || !take(&p, end, &zero, 4) ||
        !take(&p, end, &t->n_events, 8) || !take(&p, end, &t->dropped, 8))
        return -1;
    if (t->n_strings > len || t->n_events > len / EVENT_BYTES) return -1;
    t->strings = dt_calloc(t->n_strings + 1, sizeof *t->strings);
    t->events = dt_calloc(t->n_events + 1, sizeof *t->events);
    t->global_cat = dt_calloc(t->n_strings + 1, sizeof *t->global_cat);
    if (!t->strings || !t->events || !t->global_cat) return -2;
    for (uint32_t k = 0; k < t->n_strings; k++) {
        str *s = &t->strings[k];
        if (!take(&p, end, &s->len, 4) || (size_t)(end - p) < s->len) return -1;
        s->text = (const char *)p;
        p += s->len;
    }
    for (uint64_t i = 0; i < t->n_events; i++) {
        event *e = &t->events[i];
        if (!take(&p, end, &e->name, 4) || !take(&p, end, &e->cat, 4) ||
            !take(&p, end, &e->start, 8) || !take(&p, end, &e->end, 8) ||
            !take(&p, end, &e->step, 8) || !take(&p, end, &e->arg, 8))
            return -1;
        if (e->name >= t->n_strings || e->cat >= t->n_strings || e->end < e->start) return -1;
    }
    return p == end ? 0 : -1;
}

/* ---- rows: a Chrome track draws only nested or disjoint spans -------------
 * Spans sorted by start (longer first on a tie) go to the first row of
 * their category where they nest inside the innermost open span or start
 * after every open one ends; a stack per row holds the open spans' ends. */

enum { MAX_ROWS = 64, MAX_DEPTH = 32 };

typedef struct {
    int64_t end[MAX_DEPTH];
    int depth;
} row;

static int row_fits(row *r, int64_t start, int64_t stop)
{
    while (r->depth > 0 && r->end[r->depth - 1] <= start) r->depth--;
    if (r->depth == MAX_DEPTH) return 0;
    if (r->depth > 0 && stop > r->end[r->depth - 1]) return 0;
    r->end[r->depth++] = stop;
    return 1;
}

static int by_start(const void *a, const void *b)
{
    const event *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    if (x->end != y->end) return x->end > y->end ? -1 : 1;
    return 0;
}

/* ---- JSON -------------------------------------------------------------------- */

/* A JSON string of n bytes of s, followed by " <index>" when index >= 0. */
static void json_string(FILE *f, const char *s, size_t n, long long index)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    if (index >= 0) fprintf(f, " %lld", index);
    fputc('"', f);
}

/* ns as microseconds with three decimals, exactly (no second rounding) */
static void microseconds(FILE *f, int64_t ns)
{
    uint64_t mag = ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
    fprintf(f, "%s%llu.%03llu", ns < 0 ? "-" : "", (unsigned long long)(mag / 1000),
            (unsigned long long)(mag % 1000));
}

static void meta(FILE *f, int *first, const char *what, uint32_t pid, int tid, const char *key)
{
    fprintf(f, "%s\n{\"name\":\"%s\",\"ph\":\"M\",\"pid\":%u,\"tid\":%d,\"args\":{\"%s\":",
            *first ? "" : ",", what, pid, tid, key);
    *first = 0;
}

static void write_events(FILE *f, track *tracks, int n_ranks, const str *cats, uint32_t n_cats,
                         row *rows)
{
    int first = 1;
    fputs("{\"traceEvents\":[", f);
    for (int r = 0; r < n_ranks; r++) {
        track *t = &tracks[r];
        meta(f, &first, "process_name", t->rank, 0, "name");
        fprintf(f, "\"rank %u\"}}", t->rank);
        meta(f, &first, "process_sort_index", t->rank, 0, "sort_index");
        fprintf(f, "%u}}", t->rank);
        if (t->dropped) {
            meta(f, &first, "process_labels", t->rank, 0, "labels");
            fprintf(f, "\"trace buffer full: %llu spans dropped\"}}",
                    (unsigned long long)t->dropped);
        }
        /* rows category by category, in the same order on every rank */
        int tid = 0;
        for (uint32_t c = 0; c < n_cats; c++) {
            int used = 0;
            memset(rows, 0, MAX_ROWS * sizeof *rows);
            for (uint64_t i = 0; i < t->n_events; i++) {
                event *e = &t->events[i];
                if (t->global_cat[e->cat] != c) continue;
                int k = 0;
                while (k < MAX_ROWS - 1 && !row_fits(&rows[k], e->start, e->end)) k++;
                e->tid = tid + k;
                used = DT_MAX(used, k + 1);
            }
            for (int k = 0; k < used; k++) {
                meta(f, &first, "thread_name", t->rank, tid + k, "name");
                json_string(f, cats[c].text, cats[c].len, k ? k + 1 : -1); /* "comm 2" */
                fputs("}}", f);
                meta(f, &first, "thread_sort_index", t->rank, tid + k, "sort_index");
                fprintf(f, "%d}}", tid + k);
            }
            tid += used;
        }
        for (uint64_t i = 0; i < t->n_events; i++) {
            const event *e = &t->events[i];
            const str *name = &t->strings[e->name], *cat = &t->strings[e->cat];
            /* "backward 3": the index is part of the slice's label */
            fprintf(f, ",\n{\"name\":");
            json_string(f, name->text, name->len, (long long)e->arg);
            fputs(",\"cat\":", f);
            json_string(f, cat->text, cat->len, -1);
            fputs(",\"ph\":\"X\",\"ts\":", f);
            microseconds(f, e->start);
            fputs(",\"dur\":", f);
            microseconds(f, e->end - e->start);
            fprintf(f, ",\"pid\":%u,\"tid\":%d,\"args\":{\"step\":%lld", t->rank, e->tid,
                    (long long)e->step);
            if (e->arg >= 0) fprintf(f, ",\"index\":%lld", (long long)e->arg);
            fputs("}}", f);
        }
    }
    uint64_t dropped = 0;
    for (int r = 0; r < n_ranks; r++) dropped += tracks[r].dropped;
    fprintf(f,
            "\n],\n\"displayTimeUnit\":\"ms\",\n\"otherData\":{\"producer\":\"dtrain\",\"ranks\":%d,"
            "\"dropped_spans\":%llu,\"clock\":\"each rank's MPI_Wtime, origin read right after a "
            "barrier; ts and dur in microseconds\"}}\n",
            n_ranks, (unsigned long long)dropped);
}

dt_status dt_trace_write_json(const char *path, const void *all, const size_t *lens,
                              int n_ranks, dt_error *err)
{
    dt_status st = DT_OK;
    track *tracks = dt_calloc((size_t)DT_MAX(n_ranks, 1), sizeof *tracks);
    row *rows = dt_calloc(MAX_ROWS, sizeof *rows);
    str *cats = NULL;
    uint32_t n_cats = 0;
    char *tmp = NULL;
    FILE *f = NULL;
    if (!tracks || !rows) {
        st = dt_fail(err, DT_EINTERNAL, "out of memory writing the trace");
        goto done;
    }
    /* read every rank's buffer, its spans sorted by start; the categories
     * of all ranks in order of their first span (so an enclosing span's
     * category comes first), the same order on every rank */
    size_t total_strings = 0;
    const unsigned char *p = all;
    for (int r = 0; r < n_ranks; r++) {
        int rc = track_read(&tracks[r], p, lens[r]);
        if (rc == 0 && tracks[r].rank != (uint32_t)r) rc = -1;
        if (rc) {
            st = rc == -2 ? dt_fail(err, DT_EINTERNAL, "out of memory writing the trace")
                          : dt_fail(err, DT_EINTERNAL, "%s: the trace of rank %d is malformed",
                                    path, r);
            goto done;
        }
        p += lens[r];
        total_strings += tracks[r].n_strings;
        qsort(tracks[r].events, tracks[r].n_events, sizeof *tracks[r].events, by_start);
    }
    cats = dt_calloc(total_strings + 1, sizeof *cats);
    if (!cats) {
        st = dt_fail(err, DT_EINTERNAL, "out of memory writing the trace");
        goto done;
    }
    for (int r = 0; r < n_ranks; r++) {
        track *t = &tracks[r];
        for (uint64_t i = 0; i < t->n_events; i++) {
            const str *c = &t->strings[t->events[i].cat];
            uint32_t k = 0;
            while (k < n_cats && !(cats[k].len == c->len && !memcmp(cats[k].text, c->text, c->len)))
                k++;
            if (k == n_cats) cats[n_cats++] = *c;
            t->global_cat[t->events[i].cat] = k;
        }
    }

    size_t n = strlen(path) + 16;
    tmp = dt_malloc(n);
    if (!tmp) {
        st = dt_fail(err, DT_EINTERNAL, "out of memory writing the trace");
        goto done;
    }
    snprintf(tmp, n, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0 || !(f = fdopen(fd, "w"))) {
        st = dt_fail(err, DT_EINTERNAL, "%s: cannot write the trace: %s", path, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        goto done;
    }
    write_events(f, tracks, n_ranks, cats, n_cats, rows);
    int bad = fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0;
    int saved = errno;
    bad |= fclose(f) != 0;
    f = NULL;
    /* mkstemp creates 0600; a trace is an ordinary output file */
    if (!bad) chmod(tmp, 0644);
    if (bad || rename(tmp, path) != 0) {
        st = dt_fail(err, DT_EINTERNAL, "%s: cannot write the trace: %s", path,
                     strerror(bad ? saved : errno));
        unlink(tmp);
    }
done:
    for (int r = 0; tracks && r < n_ranks; r++) track_free(&tracks[r]);
    dt_free(tracks);
    dt_free(rows);
    dt_free(cats);
    dt_free(tmp);
    return st;
}
