/* metrics.c - progress line, metrics.jsonl, summary.json (see metrics.h). */
#include "dtrain/metrics.h"
#include "dtrain/version.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h> /* fsync */

struct dt_metrics {
    FILE *jsonl;
    FILE *progress;
    bool bar;        /* progress is a terminal: redraw one line in place */
    bool bar_open;   /* a bar is on screen without its newline yet */
    char out_dir[1024];
};

void dt_json_number(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
}

dt_status dt_metrics_open(dt_metrics **out, const char *out_dir, bool append, FILE *progress,
                          bool bar, dt_error *err)
{
    dt_metrics *m = dt_calloc(1, sizeof *m);
    if (!m) return dt_fail(err, DT_EINTERNAL, "out of memory");
    snprintf(m->out_dir, sizeof m->out_dir, "%s", out_dir);
    char path[1200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out_dir);
    m->jsonl = fopen(path, append ? "a" : "w");
    if (!m->jsonl) {
        int e = errno;
        dt_free(m);
        return dt_fail(err, DT_EINTERNAL, "cannot write %s: %s", path, strerror(e));
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

void dt_metrics_train(dt_metrics *m, const dt_train_record *r)
{
    fprintf(m->jsonl, "{\"kind\":\"train\",\"step\":%ld,\"epoch\":%d,\"loss\":", r->step,
            r->epoch);
    dt_json_number(m->jsonl, r->loss);
    fputs(",\"lr\":", m->jsonl);
    dt_json_number(m->jsonl, r->lr);
    fputs(",\"samples_per_second\":", m->jsonl);
    dt_json_number(m->jsonl, r->samples_per_second);
    fputs("}\n", m->jsonl);
    fflush(m->jsonl);
    if (!m->progress) return;

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
}

void dt_metrics_eval(dt_metrics *m, const dt_eval_record *r)
{
    fprintf(m->jsonl, "{\"kind\":\"eval\",\"step\":%ld,\"epoch\":%d,\"test_loss\":", r->step,
            r->epoch);
    dt_json_number(m->jsonl, r->test_loss);
    fputs(",\"test_accuracy\":", m->jsonl);
    dt_json_number(m->jsonl, r->test_accuracy);
    fputs("}\n", m->jsonl);
    fflush(m->jsonl);
    if (!m->progress) return;
    end_bar(m);
    fprintf(m->progress, "eval  epoch %5.2f  step %ld  test_loss %.4f  test_accuracy %.4f\n",
            r->progress, r->step, r->test_loss, r->test_accuracy);
    fflush(m->progress);
}

void dt_metrics_skip(dt_metrics *m, long step, int epoch, long skipped_total)
{
    fprintf(m->jsonl, "{\"kind\":\"skip\",\"step\":%ld,\"epoch\":%d,\"skipped_updates\":%ld}\n",
            step, epoch, skipped_total);
    fflush(m->jsonl);
    if (!m->progress) return;
    end_bar(m);
    fprintf(m->progress, "step %ld: non-finite gradient, update skipped (%ld so far)\n", step,
            skipped_total);
    fflush(m->progress);
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

static void json_string(FILE *f, const char *s)
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
    dt_json_number(f, v);
    fputs(last ? "\n" : ",\n", f);
}

dt_status dt_metrics_write_summary(dt_metrics *m, const dt_summary *s, dt_error *err)
{
    char path[1200], tmp[1300];
    snprintf(path, sizeof path, "%s/summary.json", m->out_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return dt_fail(err, DT_EINTERNAL, "cannot write %s: %s", tmp, strerror(errno));
    fputs("{\n  \"name\": ", f);
    json_string(f, s->name);
    fputs(",\n", f);
    field(f, "test_accuracy", s->test_accuracy, false);
    field(f, "test_loss", s->test_loss, false);
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
    json_string(f, s->blas_core);
    fputs(",\n  \"mpi_library\": ", f);
    json_string(f, s->mpi_library);
    fputs(",\n  \"version\": ", f);
    json_string(f, dt_version());
    fputs(",\n  \"git_commit\": ", f);
    json_string(f, dt_git_commit());
    fprintf(f, ",\n  \"param_checksum\": \"%016llx\"\n}\n",
            (unsigned long long)s->param_checksum);
    int bad = ferror(f);
    if (fflush(f) != 0) bad = 1;
    if (fsync(fileno(f)) != 0) bad = 1;
    if (fclose(f) != 0) bad = 1;
    if (bad || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return dt_fail(err, DT_EINTERNAL, "cannot write %s: %s", path, strerror(e));
    }
    return DT_OK;
}

void dt_metrics_close(dt_metrics *m)
{
    if (!m) return;
    if (m->progress) end_bar(m);
    if (m->jsonl) fclose(m->jsonl);
    dt_free(m);
}
