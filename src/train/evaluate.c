/* evaluate.c - --evaluate: the test set through the model, with the
 * per-class accuracy and the confusion matrix, as a table and as JSON.
 *
 * Each rank evaluates its contiguous slice of the test set (as
 * train_evaluate does) and counts [true][predicted] pairs; one sum over
 * ranks (in doubles: exact for counts below 2^53) gives the matrix. The
 * prediction is the first maximum of the logits, the rule the loss head
 * uses for accuracy (softmax_ce.c), so the matrix's trace is the count of
 * correct samples that training's evaluation reports. */
#define _GNU_SOURCE /* open_memstream */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtrain/fs.h"
#include "dtrain/runtime.h"
#include "dtrain/version.h"
#include "trainer.h"

dt_status train_evaluate_report(trainer *tr, eval_report *r, dt_error *err)
{
    memset(r, 0, sizeof *r);
    const int K = dt_model_outputs(tr->model);
    const size_t cells = (size_t)K * (size_t)K;
    r->classes = K;
    r->confusion = dt_calloc(cells, sizeof *r->confusion);
    double *sums = dt_calloc(cells + 2, sizeof *sums); /* matrix, loss, correct */
    dt_status st = r->confusion && sums ? DT_OK : dt_fail(err, DT_EINTERNAL, "out of memory");
    st = dt_comm_agree(tr->comm, st, err);
    if (st) {
        dt_free(sums);
        return st;
    }
    double t0 = dt_comm_time();
    train_data *d = &tr->data;
    long begin, end;
    dt_shard(d->test.n, tr->comm->rank, tr->comm->world, &begin, &end);
    uint32_t idx[TRAIN_EVAL_CHUNK];
    for (long i = begin; i < end; i += TRAIN_EVAL_CHUNK) {
        long n = DT_MIN(TRAIN_EVAL_CHUNK, end - i);
        for (long j = 0; j < n; j++) idx[j] = (uint32_t)(i + j);
        dt_gather_batch(&d->test, idx, n, (float)d->mean, (float)d->std, d->x, d->y);
        long correct = 0;
        dt_model_forward(tr->model, d->x, d->y, n, &sums[cells], &correct);
        sums[cells + 1] += (double)correct;
        const float *z = dt_model_logits(tr->model);
        for (long s = 0; s < n; s++) {
            const float *zs = z + s * K;
            int arg = 0;
            for (int j = 1; j < K; j++)
                if (zs[j] > zs[arg]) arg = j;
            sums[(size_t)d->y[s] * (size_t)K + (size_t)arg] += 1;
        }
    }
    dt_comm_allreduce_sum_d(sums, cells + 2);
    long trace = 0;
    for (size_t c = 0; c < cells; c++) r->confusion[c] = (long)sums[c];
    for (int k = 0; k < K; k++) trace += r->confusion[(size_t)k * (size_t)K + (size_t)k];
    r->samples = d->test.n;
    r->correct = (long)sums[cells + 1];
    r->loss = sums[cells] / (double)d->test.n;
    DT_CHECK(trace == r->correct); /* the same argmax rule as the loss head */
    dt_free(sums);
    tr->time.eval += dt_comm_time() - t0;
    return DT_OK;
}

void train_eval_report_free(eval_report *r)
{
    dt_free(r->confusion);
    r->confusion = NULL;
}

static long class_samples(const eval_report *r, int k)
{
    long n = 0;
    for (int j = 0; j < r->classes; j++) n += r->confusion[(size_t)k * (size_t)r->classes + (size_t)j];
    return n;
}

static long cell(const eval_report *r, int t, int p)
{
    return r->confusion[(size_t)t * (size_t)r->classes + (size_t)p];
}

void train_print_eval_report(const trainer *tr, const eval_report *r, const weights_source *src,
                             FILE *out)
{
    const int K = r->classes;
    char step[32] = "step unknown";
    if (src->step >= 0) snprintf(step, sizeof step, "step %ld", src->step);
    fprintf(out, "evaluate: %s (%s, %s) on %ld test samples, %d rank%s\n", src->path, src->kind,
            step, r->samples, tr->comm->world, tr->comm->world == 1 ? "" : "s");
    fprintf(out, "test_loss %.4f  test_accuracy %.4f (%ld of %ld)\n", r->loss,
            (double)r->correct / (double)r->samples, r->correct, r->samples);
    fprintf(out, "\nclass  samples  correct  accuracy\n");
    for (int k = 0; k < K; k++) {
        long n = class_samples(r, k);
        if (n > 0)
            fprintf(out, "%5d  %7ld  %7ld  %8.4f\n", k, n, cell(r, k, k),
                    (double)cell(r, k, k) / (double)n);
        else
            fprintf(out, "%5d  %7ld  %7ld  %8s\n", k, n, 0L, "-");
    }
    /* columns wide enough for the largest count */
    long most = 0;
    for (size_t c = 0; c < (size_t)K * (size_t)K; c++) most = DT_MAX(most, r->confusion[c]);
    int width = 1;
    for (long v = DT_MAX(most, (long)K - 1); v >= 10; v /= 10) width++;
    fprintf(out, "\nconfusion matrix (rows: true class, columns: predicted class)\n%*s", 6, "");
    for (int p = 0; p < K; p++) fprintf(out, " %*d", width, p);
    fputc('\n', out);
    for (int t = 0; t < K; t++) {
        fprintf(out, "%5d ", t);
        for (int p = 0; p < K; p++) fprintf(out, " %*ld", width, cell(r, t, p));
        fputc('\n', out);
    }
    fflush(out);
}

static void json_num(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
}

static void eval_json(FILE *f, const trainer *tr, const eval_report *r, const weights_source *src)
{
    const int K = r->classes;
    fputs("{\n  \"mode\": \"evaluate\",\n  \"name\": ", f);
    dt_metrics_json_string(f, tr->cfg.run.name);
    fputs(",\n  \"weights\": ", f);
    dt_metrics_json_string(f, src->path);
    fputs(",\n  \"weights_kind\": ", f);
    dt_metrics_json_string(f, src->kind);
    fputs(",\n  \"step\": ", f);
    if (src->step >= 0)
        fprintf(f, "%ld", src->step);
    else
        fputs("null", f);
    fputs(",\n  \"weights_config_hash\": ", f);
    if (src->config_hash[0])
        dt_metrics_json_string(f, src->config_hash);
    else
        fputs("null", f);
    fprintf(f, ",\n  \"config_hash\": \"%016llx\"", (unsigned long long)tr->ckpt_id.config_hash);
    fprintf(f, ",\n  \"test_samples\": %ld,\n  \"test_correct\": %ld,\n  \"test_loss\": ",
            r->samples, r->correct);
    json_num(f, r->loss);
    fputs(",\n  \"test_accuracy\": ", f);
    json_num(f, (double)r->correct / (double)r->samples);
    fputs(",\n  \"class_samples\": [", f);
    for (int k = 0; k < K; k++) fprintf(f, "%s%ld", k ? ", " : "", class_samples(r, k));
    fputs("],\n  \"class_accuracy\": [", f);
    for (int k = 0; k < K; k++) {
        long n = class_samples(r, k);
        fputs(k ? ", " : "", f);
        if (n > 0)
            json_num(f, (double)cell(r, k, k) / (double)n);
        else
            fputs("null", f);
    }
    fputs("],\n  \"confusion_matrix\": [", f);
    for (int t = 0; t < K; t++) {
        fputs(t ? ",\n    [" : "\n    [", f);
        for (int p = 0; p < K; p++) fprintf(f, "%s%ld", p ? ", " : "", cell(r, t, p));
        fputs("]", f);
    }
    fprintf(f, "\n  ],\n  \"world_size\": %d,\n  \"eval_seconds\": ", tr->comm->world);
    json_num(f, tr->time.eval);
    fputs(",\n  \"blas_core\": ", f);
    dt_metrics_json_string(f, dt_runtime_blas_core());
    fputs(",\n  \"mpi_library\": ", f);
    dt_metrics_json_string(f, dt_comm_mpi_library());
    fputs(",\n  \"version\": ", f);
    dt_metrics_json_string(f, dt_version());
    fputs(",\n  \"git_commit\": ", f);
    dt_metrics_json_string(f, dt_git_commit());
    fputs("\n}\n", f);
}

dt_status train_write_eval_report(const trainer *tr, const eval_report *r,
                                  const weights_source *src, const char *path, dt_error *err)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return dt_fail(err, DT_EINTERNAL, "%s: out of memory", path);
    eval_json(f, tr, r, src);
    bool ok = !ferror(f);
    if (fclose(f) != 0) ok = false; /* a memory stream: fails only out of memory */
    dt_status st = ok ? train_make_parent(path, err) : dt_fail(err, DT_EINTERNAL, "%s: out of memory", path);
    if (st == DT_OK) st = dt_fs_write_atomic(path, text, len, err);
    free(text); /* open_memstream's, not a dt_ allocation */
    return st;
}
