/* report.c - what rank 0 says at the start and the end of a run: the facts
 * of the run as a few indented lines, and the closing line. Part of the
 * metrics module; everything goes through dt_metrics_note. */
#include <string.h>

#include "dtrain/metrics.h"

static const char *plural(long n) { return n == 1 ? "" : "s"; }

void dt_metrics_startup(dt_metrics *m, const dt_run_facts *f)
{
    if (!m) return;
    dt_metrics_note(m,
                    "run %s: %d rank%s on %d node%s, %d BLAS thread%s per rank (OpenBLAS %s%s), "
                    "%zu parameters",
                    f->name, f->world, plural(f->world), f->nodes, plural(f->nodes), f->threads,
                    plural(f->threads), f->blas_core,
                    f->reexecuted ? ", re-executed with OPENBLAS_CORETYPE set" : "",
                    f->n_params);
    /* one indented line per layer */
    for (const char *line = f->layers; line && *line;) {
        const char *end = strchr(line, '\n');
        int len = end ? (int)(end - line) : (int)strlen(line);
        if (len > 0) dt_metrics_note(m, "  %.*s", len, line);
        line = end ? end + 1 : NULL;
    }
    dt_metrics_note(m, "  gradient allreduce: %s",
                    f->overlap ? "bucketed, overlapped with backward" : "one blocking call");
    if (f->overlap)
        dt_metrics_note(m, "  %d bucket%s of up to %ld KiB", f->buckets, plural(f->buckets),
                        f->bucket_kb);
    dt_metrics_note(m,
                    "%ld train / %ld test samples, %ld updates of %ld (%ld per epoch), %s lr %g, "
                    "%s schedule -> %s",
                    f->train_samples, f->test_samples, f->total_steps, f->global_batch,
                    f->updates_per_epoch, f->optimizer, f->lr, f->schedule, f->out_dir);
}

void dt_metrics_finish(dt_metrics *m, const dt_summary *s)
{
    if (!m) return;
    dt_metrics_note(m,
                    "done: test_accuracy %.4f  test_loss %.4f  %.0f samples/s (%.1f GFLOP/s)  "
                    "%.1f s  param_checksum %016llx",
                    s->test_accuracy, s->test_loss, s->samples_per_second,
                    s->samples_per_second * s->flops_per_sample * 1e-9, s->wall_seconds,
                    (unsigned long long)s->param_checksum);
}
