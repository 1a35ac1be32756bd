/* metrics.c - progress line, metrics.jsonl, summary.json (see metrics.h).
 *
 * Each metrics.jsonl record is formatted into a line buffer and written with
 * one write(2), so a failure is seen at the record that caused it; the file
 * is then cut back to its last complete record, the failure is kept (the
 * first one, with the file name and strerror) and later records are dropped.
 * summary.json and config files go through the atomic write of fs.h. */
#include "dtrain/metrics.h"
#include "dtrain/version.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "dtrain/fs.h"

struct dt_metrics {
    int jsonl;           /* metrics.jsonl, -1 once closed */
    off_t jsonl_length;  /* bytes of complete records */
    dt_path jsonl_path, summary_path;
    FILE *progress;
    bool bar;            /* progress is a terminal: redraw one line in place */
    bool bar_open;       /* a bar is on screen without its newline yet */
    dt_error failure;    /* the first failed write (code DT_OK: none) */
};

/* One metrics.jsonl record: a line that always fits (a few numbers). */
typedef struct {
    char s[512];
    size_t n;
} record;

static void rec_printf(record *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rec_printf(record *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(r->s + r->n, sizeof r->s - r->n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sizeof r->s - r->n) DT_BUG("metrics record longer than %zu bytes", sizeof r->s);
    r->n += (size_t)k;
}

/* A JSON number: null when not finite. */
static void rec_number(record *r, const char *key, double v)
{
    if (isfinite(v))
        rec_printf(r, ",\"%s\":%.9g", key, v);
    else
        rec_printf(r, ",\"%s\":null", key);
}

static dt_status record_failure(dt_metrics *m, const char *path, const char *what, int e)
{
    if (m->failure.code == DT_OK)
        dt_fail(&m->failure, DT_EINTERNAL, "%s: %s: %s", path, what, strerror(e));
    return m->failure.code;
}

/* Append r and its newline to metrics.jsonl, all of it or nothing. */
static dt_status write_record(dt_metrics *m, record *r)
{
    if (m->failure.code != DT_OK) return m->failure.code;
    if (m->jsonl < 0) DT_BUG("metrics record after the summary");
    rec_printf(r, "}\n");
    if (dt_fs_write_all(m->jsonl, r->s, r->n) != 0) {
        int e = errno;
        /* no half record: a reader of the file sees whole lines only */
        if (ftruncate(m->jsonl, m->jsonl_length) != 0 && e == 0) e = errno;
        return record_failure(m, m->jsonl_path.s, "cannot write", e);
    }
    m->jsonl_length += (off_t)r->n;
    return DT_OK;
}

dt_status dt_metrics_status(const dt_metrics *m, dt_error *err)
{
    if (m->failure.code != DT_OK && err) *err = m->failure;
    return m->failure.code;
}

dt_status dt_metrics_open(dt_metrics **out, const char *out_dir, bool append, FILE *progress,
                          bool bar, dt_error *err)
{
    dt_metrics *m = dt_calloc(1, sizeof *m);
    if (!m) return dt_fail(err, DT_EINTERNAL, "out of memory");
    m->jsonl = -1;
    dt_status st = dt_path_join(&m->jsonl_path, out_dir, "metrics.jsonl", err);
    if (st == DT_OK) st = dt_path_join(&m->summary_path, out_dir, "summary.json", err);
    if (st == DT_OK) {
        m->jsonl = open(m->jsonl_path.s,
                        O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (append ? 0 : O_TRUNC), 0666);
        if (m->jsonl < 0)
            st = dt_fail(err, DT_EINTERNAL, "cannot write %s: %s", m->jsonl_path.s,
                         strerror(errno));
    }
    if (st == DT_OK && (m->jsonl_length = lseek(m->jsonl, 0, SEEK_END)) < 0)
        st = dt_fail(err, DT_EINTERNAL, "%s: cannot seek: %s", m->jsonl_path.s, strerror(errno));
    if (st != DT_OK) {
        if (m->jsonl >= 0) close(m->jsonl); /* nothing written yet */
        dt_free(m);
        return st;
    }
    m->progress = progress;
    m->bar = progress && bar;
    *out = m;
    return DT_OK;
}

static void end_bar(dt_metrics *m)
{
    if (m->bar_open) {
        fputc('\n', m->progress);
        m->bar_open = false;
    }
}

dt_status dt_metrics_train(dt_metrics *m, const dt_train_record *r)
{
    record rec = {.n = 0};
    rec_printf(&rec, "{\"kind\":\"train\",\"step\":%ld,\"epoch\":%d", r->step, r->epoch);
    rec_number(&rec, "loss", r->loss);
    rec_number(&rec, "lr", r->lr);
    rec_number(&rec, "samples_per_second", r->samples_per_second);
    dt_status st = write_record(m, &rec);
    if (!m->progress) return st;

    char line[256];
    snprintf(line, sizeof line,
                     "epoch %5.2f  step %ld/%ld  loss %.4f  lr %.4g  %.0f samples/s  comm %2.0f%%",
                     r->progress, r->step, r->total_steps, r->loss, r->lr, r->samples_per_second,
                     100.0 * r->comm_share);
    if (m->bar) {
        int width = 24, filled = r->total_steps ? (int)(width * r->step / r->total_steps) : 0;
        char bar[32];
        for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
        bar[width] = 0;
        fprintf(m->progress, "\r[%s] %s\033[K", bar, line);
        m->bar_open = true;
    } else {
        fprintf(m->progress, "%s\n", line);
    }
    fflush(m->progress);
    return st;
}

dt_status dt_metrics_eval(dt_metrics *m, const dt_eval_record *r)
{
    record rec = {.n = 0};
    rec_printf(&rec, "{\"kind\":\"eval\",\"step\":%ld,\"epoch\":%d", r->step, r->epoch);
    rec_number(&rec, "test_loss", r->test_loss);
    rec_number(&rec, "test_accuracy", r->test_accuracy);
    if (r->has_average) {
        rec_number(&rec, "avg_test_loss", r->avg_test_loss);
        rec_number(&rec, "avg_test_accuracy", r->avg_test_accuracy);
    }
    dt_status st = write_record(m, &rec);
    if (!m->progress) return st;
    end_bar(m);
    fprintf(m->progress, "eval  epoch %5.2f  step %ld  test_loss %.4f  test_accuracy %.4f",
            r->progress, r->step, r->test_loss, r->test_accuracy);
    if (r->has_average && isfinite(r->avg_test_accuracy))
        fprintf(m->progress, "  averaged: test_loss %.4f  test_accuracy %.4f",
                r->avg_test_loss, r->avg_test_accuracy);
    fputc('\n', m->progress);
    fflush(m->progress);
    return st;
}

dt_status dt_metrics_skip(dt_metrics *m, long step, int epoch, long skipped_total)
{
    record rec = {.n = 0};
    rec_printf(&rec, "{\"kind\":\"skip\",\"step\":%ld,\"epoch\":%d,\"skipped_updates\":%ld",
               step, epoch, skipped_total);
    dt_status st = write_record(m, &rec);
    if (!m->progress) return st;
    end_bar(m);
    fprintf(m->progress, "step %ld: non-finite gradient, update skipped (%ld so far)\n", step,
            skipped_total);
    fflush(m->progress);
    return st;
}

void dt_metrics_note(dt_metrics *m, const char *fmt, ...)
{
    if (!m->progress) return;
    end_bar(m);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(m->progress, fmt, ap);
    va_end(ap);
    fputc('\n', m->progress);
    fflush(m->progress);
}

void dt_metrics_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void field(FILE *f, const char *name, double v, bool last)
{
    fprintf(f, "  \"%s\": ", name);
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
    fputs(last ? "\n" : ",\n", f);
}

static void summary_json(FILE *f, const dt_summary *s)
{
    fputs("{\n  \"name\": ", f);
    dt_metrics_json_string(f, s->name);
    fputs(",\n", f);
    field(f, "test_accuracy", s->test_accuracy, false);
    field(f, "test_loss", s->test_loss, false);
    if (s->has_average) {
        field(f, "avg_test_accuracy", s->avg_test_accuracy, false);
        field(f, "avg_test_loss", s->avg_test_loss, false);
    }
    field(f, "train_loss", s->train_loss, false);
    fprintf(f, "  \"steps\": %ld,\n  \"skipped_updates\": %ld,\n", s->steps, s->skipped_updates);
    field(f, "epochs", s->epochs, false);
    fprintf(f, "  \"world_size\": %d,\n  \"nodes\": %d,\n  \"threads\": %d,\n", s->world_size,
            s->nodes, s->threads);
    fprintf(f, "  \"global_batch\": %ld,\n", s->global_batch);
    field(f, "wall_seconds", s->wall_seconds, false);
    field(f, "samples_per_second", s->samples_per_second, false);
    field(f, "gflops_per_second", s->samples_per_second * s->flops_per_sample * 1e-9, false);
    fputs("  \"time_split\": {\n  ", f);
    field(f, "data", s->t_data, false);
    fputs("  ", f);
    field(f, "forward", s->t_forward, false);
    fputs("  ", f);
    field(f, "backward", s->t_backward, false);
    fputs("  ", f);
    field(f, "communication", s->t_comm, false);
    fputs("  ", f);
    field(f, "optimizer", s->t_optimizer, false);
    fputs("  ", f);
    field(f, "evaluation", s->t_eval, true);
    fprintf(f, "  },\n  \"train_loop_allocations\": %llu,\n  \"blas_core\": ",
            (unsigned long long)s->loop_allocations);
    dt_metrics_json_string(f, s->blas_core);
    fputs(",\n  \"mpi_library\": ", f);
    dt_metrics_json_string(f, s->mpi_library);
    fputs(",\n  \"version\": ", f);
    dt_metrics_json_string(f, dt_version());
    fputs(",\n  \"git_commit\": ", f);
    dt_metrics_json_string(f, dt_git_commit());
    fprintf(f, ",\n  \"param_checksum\": \"%016llx\"\n}\n",
            (unsigned long long)s->param_checksum);
}

/* The end of the run's records: metrics.jsonl made durable and closed, so a
 * late write error (NFS reports some only at fsync or close) is not lost. */
static dt_status finish_jsonl(dt_metrics *m)
{
    if (m->failure.code != DT_OK || m->jsonl < 0) return m->failure.code;
    int fd = m->jsonl;
    m->jsonl = -1;
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd); /* the failure is already the verdict */
        return record_failure(m, m->jsonl_path.s, "cannot fsync", e);
    }
    if (close(fd) != 0) return record_failure(m, m->jsonl_path.s, "cannot close", errno);
    return DT_OK;
}

dt_status dt_metrics_write_summary(dt_metrics *m, const dt_summary *s, dt_error *err)
{
    if (finish_jsonl(m) != DT_OK) return dt_metrics_status(m, err);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return dt_fail(err, DT_EINTERNAL, "%s: out of memory", m->summary_path.s);
    summary_json(f, s);
    bool ok = !ferror(f);
    if (fclose(f) != 0) ok = false; /* a memory stream: fails only out of memory */
    dt_status st = ok ? dt_fs_write_atomic(m->summary_path.s, text, len, err)
                      : dt_fail(err, DT_EINTERNAL, "%s: out of memory", m->summary_path.s);
    free(text); /* open_memstream's, not a dt_ allocation */
    return st;
}

void dt_metrics_close(dt_metrics *m)
{
    if (!m) return;
    if (m->progress) end_bar(m);
    /* a run that wrote its summary closed the file, checked, already; any
     * other run has failed before and this close changes nothing */
    if (m->jsonl >= 0) close(m->jsonl);
    dt_free(m);
}
