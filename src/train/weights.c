/* weights.c - the model's weights in and out of the trainer in PyTorch's
 * safetensors format (safetensors.h): the export at the end of a run and
 * of --export, model.init_from, and the weights --evaluate and --export
 * take from a checkpoint or a safetensors file.
 *
 * Names follow an nn.Sequential with one module per model.layers entry:
 * "<i>.weight" and "<i>.bias" for the i-th entry (0-based) that has
 * parameters; the shapes are PyTorch's and so is the arena's layout
 * (nn.h), so a tensor is a contiguous range of the parameter arena and
 * nothing is transposed.
 *
 * Rank 0 reads and writes files; every rank learns the verdict through one
 * agreement and receives the weights by broadcast. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtrain/fs.h"
#include "dtrain/safetensors.h"
#include "dtrain/version.h"
#include "trainer.h"

#define CKPT_MAGIC "DTRAINCK" /* checkpoint.h: the first 8 bytes of a checkpoint */

/* The tensors of the model over an arena of its layout. */
typedef struct {
    int n;
    char names[2 * DT_MAX_LAYERS][24];
    dt_st_tensor t[2 * DT_MAX_LAYERS];
} weight_list;

static void weight_list_of(const trainer *tr, float *arena, weight_list *w)
{
    w->n = 0;
    for (int i = 0; i < tr->cfg.model.n_layers; i++) {
        dt_param_tensor p[2];
        int k = dt_model_layer_tensors(tr->model, i, p);
        for (int j = 0; j < k; j++) {
            dt_st_tensor *t = &w->t[w->n];
            snprintf(w->names[w->n], sizeof w->names[w->n], "%d.%s", i, j ? "bias" : "weight");
            memset(t, 0, sizeof *t);
            t->name = w->names[w->n];
            t->ndim = p[j].ndim;
            for (int d = 0; d < p[j].ndim; d++) t->shape[d] = p[j].shape[d];
            t->data = arena + p[j].offset;
            w->n++;
        }
    }
}

/* The weights a run exports: the average along the path once it has
 * started (optimizer.average), else the model's parameters. */
const float *train_export_params(trainer *tr)
{
    const float *avg = tr->avg_loaded ? tr->avg : train_averaged_params(tr);
    return avg ? avg : dt_model_params(tr->model);
}

dt_status train_write_weights(trainer *tr, const char *path, long step, dt_error *err)
{
    if (tr->comm->rank != 0) return DT_OK;
    weight_list w;
    /* the writer only reads through data: the cast drops a const it keeps */
    weight_list_of(tr, (float *)train_export_params(tr), &w);
    char step_text[32], hash_text[32];
    snprintf(step_text, sizeof step_text, "%ld", step);
    snprintf(hash_text, sizeof hash_text, "%016" PRIx64, tr->ckpt_id.config_hash);
    const dt_st_meta meta[] = {
        {"format", "pt"}, /* what safetensors.torch.save_file writes */
        {"step", step_text},
        {"config_hash", hash_text},
        {"producer", "dtrain"},
        {"dtrain_version", dt_version()},
    };
    return dt_st_write(path, w.t, w.n, meta, (int)DT_ARRAY_LEN(meta), err);
}

/* Every rank gets rank 0's parameters. */
static void share_params(trainer *tr)
{
    dt_comm_bcast(dt_model_params(tr->model),
                  dt_model_param_count(tr->model) * sizeof(float), 0);
}

dt_status train_init_from(trainer *tr, const char *path, dt_error *err)
{
    dt_status st = DT_OK;
    if (tr->comm->rank == 0) {
        weight_list w;
        weight_list_of(tr, dt_model_params(tr->model), &w);
        dt_error why = {0};
        st = dt_st_load(path, w.t, w.n, &why);
        if (st) dt_fail(err, st, "model.init_from: %s", why.msg);
    }
    st = dt_comm_agree(tr->comm, st, err);
    if (st == DT_OK) share_params(tr);
    return st;
}

/* A damaged checkpoint passed over on the way to an older one. */
static void warn_rank0(void *ctx, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "dtrain: warning: %s\n", msg);
    fflush(stderr);
}

/* A checkpoint, "latest" or a folder: the checkpoint's parameters (and
 * optimizer state) into the trainer. A folder is a checkpoint.dir, or a
 * run.out_dir whose checkpoints/ is one. */
static dt_status read_checkpoint(trainer *tr, const char *what, bool is_dir, weights_source *src,
                                 dt_error *err)
{
    dt_path dir;
    const char *name = what;
    dt_status st = DT_OK;
    if (!strcmp(what, "latest")) {
        st = dt_path_set(&dir, tr->cfg.checkpoint.dir, err);
    } else if (is_dir) {
        struct stat sb;
        name = "latest";
        st = dt_path_join(&dir, what, "checkpoints", err);
        if (st == DT_OK && (stat(dir.s, &sb) != 0 || !S_ISDIR(sb.st_mode)))
            st = dt_path_set(&dir, what, err);
    } else {
        dir.s[0] = 0; /* a file: used alone */
    }
    if (st) { /* a path too long: the user's input, not a fault of ours */
        err->code = DT_EDATA;
        return DT_EDATA;
    }
    dt_ckpt_header want = tr->ckpt_id, got;
    float *state[DT_CKPT_MAX_SLOTS] = {tr->opt.state[0], tr->opt.state[1]};
    state[tr->opt.slots] = tr->avg; /* the averaged copy, when the run keeps one */
    st = dt_ckpt_resume(name, dir.s[0] ? dir.s : NULL, &want, dt_model_params(tr->model), state,
                        &got, src->path, sizeof src->path, warn_rank0, NULL, err);
    if (st) return st;
    /* An average that had not started yet is all zeros in the file (its
     * start may be given in epochs, which --export cannot count without
     * the data); once started it is a copy of real weights. */
    tr->avg_loaded = false;
    for (size_t i = 0; tr->avg && i < dt_model_param_count(tr->model); i++)
        if (tr->avg[i] != 0.0f) {
            tr->avg_loaded = true;
            break;
        }
    snprintf(src->kind, sizeof src->kind, "checkpoint");
    src->step = got.step;
    snprintf(src->config_hash, sizeof src->config_hash, "%016" PRIx64, got.config_hash);
    return DT_OK;
}

static dt_status read_safetensors(trainer *tr, const char *path, weights_source *src,
                                  dt_error *err)
{
    weight_list w;
    weight_list_of(tr, dt_model_params(tr->model), &w);
    dt_st_file *f;
    dt_status st = dt_st_open(path, &f, err);
    if (st) return st;
    st = dt_st_check(f, w.t, w.n, err);
    for (int k = 0; k < w.n && st == DT_OK; k++)
        st = dt_st_read_f32(f, dt_st_find(f, w.t[k].name), w.t[k].data, err);
    if (st == DT_OK) {
        snprintf(src->kind, sizeof src->kind, "safetensors");
        snprintf(src->path, sizeof src->path, "%s", path);
        const char *step = dt_st_meta_get(f, "step"), *hash = dt_st_meta_get(f, "config_hash");
        char *end = NULL;
        long v = step ? strtol(step, &end, 10) : -1;
        src->step = step && *step && !*end && v >= 0 ? v : -1;
        snprintf(src->config_hash, sizeof src->config_hash, "%.16s", hash ? hash : "");
    }
    dt_st_close(f);
    return st;
}

dt_status train_load_weights(trainer *tr, const char *what, weights_source *src, dt_error *err)
{
    memset(src, 0, sizeof *src);
    src->step = -1;
    dt_status st = DT_OK;
    if (tr->comm->rank == 0) {
        struct stat sb;
        if (!strcmp(what, "latest")) {
            st = read_checkpoint(tr, what, false, src, err);
        } else if (stat(what, &sb) != 0) {
            st = dt_fail(err, DT_EDATA, "%s: cannot open: %s", what, strerror(errno));
        } else if (S_ISDIR(sb.st_mode)) {
            st = read_checkpoint(tr, what, true, src, err);
        } else {
            /* a checkpoint or safetensors file, by its first bytes */
            char magic[8] = {0};
            FILE *f = fopen(what, "rb");
            size_t got = f ? fread(magic, 1, sizeof magic, f) : 0;
            if (f) fclose(f);
            if (got == sizeof magic && !memcmp(magic, CKPT_MAGIC, sizeof magic))
                st = read_checkpoint(tr, what, false, src, err);
            else
                st = read_safetensors(tr, what, src, err);
        }
    }
    st = dt_comm_agree(tr->comm, st, err);
    if (st) return st;
    dt_comm_bcast(src, sizeof *src, 0);
    share_params(tr);
    return DT_OK;
}

/* mkdir -p of the folder of path (a file to be written). */
dt_status train_make_parent(const char *path, dt_error *err)
{
    dt_path dir;
    dt_status st = dt_path_set(&dir, path, err);
    if (st) return st;
    char *slash = strrchr(dir.s, '/');
    if (!slash || slash == dir.s) return DT_OK; /* the current folder, or / */
    *slash = 0;
    return dt_fs_mkdir_p(dir.s, "the output folder", err);
}
