/* model.c - a model as a list of layers: shape inference, the arenas, and
 * the forward/backward drivers.
 *
 * dt_model_create walks the spec list once: each kind's setup() infers and
 * validates its output shape (the reason becomes the DT_ECONFIG message) and
 * reports its parameter, workspace and index needs; parameters are laid out
 * in forward order, weights then bias, in one aligned arena, gradients in a
 * second one. Everything a step touches is allocated here:
 *  - one activation arena holding the output of every layer that makes a
 *    new tensor (activations and flatten work in place on their input, so
 *    dense -> relu costs one buffer, and a dense/conv followed by an
 *    activation runs it in its epilogue: "fused", one pass instead of two);
 *  - two ping-pong gradient buffers: backward reads dL/dy of a layer from one
 *    and writes dL/dx into the other (in-place kinds use the same one), so
 *    gradient memory does not grow with depth;
 *  - maxpool argmax indices, the conv im2col workspace (shared: layers run one
 *    at a time), and a copy of the labels.
 * Backward stops at the first parameterised layer, which also skips its dx
 * (nobody consumes it). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dtrain/rng.h"
#include "layers.h"

/* One line per kind: adding a kind is its file plus this line. */
static const nn_kind *const kinds[DT_LAYER_KIND_COUNT] = {
    [DT_LAYER_DENSE] = &nn_kind_dense,     [DT_LAYER_RELU] = &nn_kind_relu,
    [DT_LAYER_SIGMOID] = &nn_kind_sigmoid, [DT_LAYER_TANH] = &nn_kind_tanh,
    [DT_LAYER_FLATTEN] = &nn_kind_flatten, [DT_LAYER_CONV] = &nn_kind_conv,
    [DT_LAYER_MAXPOOL] = &nn_kind_maxpool,
};

const char *dt_layer_str(dt_layer_kind kind)
{
    return (unsigned)kind < DT_LAYER_KIND_COUNT ? kinds[kind]->name : "?";
}

/* Parameter counts are ints in MPI and cblas calls. */
#define NN_MAX_PARAMS 2147483647UL
#define NN_ALIGN_FLOATS 16 /* 64 bytes */

static size_t round_up(size_t n) { return (n + NN_ALIGN_FLOATS - 1) / NN_ALIGN_FLOATS * NN_ALIGN_FLOATS; }

/* "file:line:col: " / "file: " / "" */
static void position(char *buf, size_t size, const char *source, const dt_layer_spec *s)
{
    if (!source)
        buf[0] = 0;
    else if (s && s->line > 0)
        snprintf(buf, size, "%s:%d:%d: ", source, s->line, s->col);
    else
        snprintf(buf, size, "%s: ", source);
}

static dt_status layer_fail(dt_error *err, const char *source, const dt_layer_spec *s, int i,
                            const char *what)
{
    char pos[1024];
    position(pos, sizeof pos, source, s);
    return dt_fail(err, DT_ECONFIG, "%smodel.layers[%d] (%s): %s", pos, i, dt_layer_str(s->kind),
                   what);
}

static int shape_size(nn_shape s, long *out)
{
    int64_t a;
    if (__builtin_mul_overflow((int64_t)s.c, (int64_t)s.h, &a) ||
        __builtin_mul_overflow(a, (int64_t)s.w, &a) || a > INT32_MAX || a < 1)
        return -1;
    *out = (long)a;
    return 0;
}

static void shape_str(char *buf, size_t size, nn_shape s)
{
    if (s.flat)
        snprintf(buf, size, "%d", s.c);
    else
        snprintf(buf, size, "%dx%dx%d", s.c, s.h, s.w);
}

dt_status dt_model_create(const dt_layer_spec *specs, int n_layers, const int input[3],
                          long max_batch, const char *source, dt_model **out, dt_error *err)
{
    char pos[1024], why[512];
    *out = NULL;
    position(pos, sizeof pos, source, n_layers > 0 ? &specs[0] : NULL);
    if (n_layers < 1) return dt_fail(err, DT_ECONFIG, "%smodel.layers: no layers", pos);
    if (n_layers > DT_MAX_LAYERS)
        return dt_fail(err, DT_ECONFIG, "%smodel.layers: %d layers, at most %d are supported", pos,
                       n_layers, DT_MAX_LAYERS);
    nn_shape shape = {input[0], input[1], input[2], false};
    long in_size;
    if (input[0] < 1 || input[1] < 1 || input[2] < 1 || shape_size(shape, &in_size)) {
        position(pos, sizeof pos, source, NULL);
        return dt_fail(err, DT_ECONFIG, "%smodel.input: [%d, %d, %d] is not a valid [C, H, W] shape",
                       pos, input[0], input[1], input[2]);
    }
    if (max_batch < 1 || max_batch > INT32_MAX)
        return dt_fail(err, DT_EINTERNAL, "model: max_batch %ld out of range", max_batch);

    dt_model *m = dt_calloc(1, sizeof *m);
    if (!m) return dt_fail(err, DT_EINTERNAL, "out of memory creating the model");
    m->n_layers = n_layers;
    m->input = shape;
    m->input_size = in_size;
    m->max_batch = max_batch;
    m->first_param = -1;
    m->n = -1;
    m->grads_owned = true;

    /* shapes, validation, the parameter layout */
    bool in_is_input = true;
    size_t off = 0, ws = 0, n_idx = 0, acts = 0, dmax = 0;
    for (int i = 0; i < n_layers; i++) {
        nn_layer *l = &m->layers[i];
        const dt_layer_spec *s = &specs[i];
        if ((unsigned)s->kind >= DT_LAYER_KIND_COUNT) {
            position(pos, sizeof pos, source, s);
            dt_model_free(m);
            return dt_fail(err, DT_ECONFIG, "%smodel.layers[%d]: unknown layer kind %d", pos, i,
                           (int)s->kind);
        }
        l->kind = kinds[s->kind];
        l->spec = *s;
        l->in = shape;
        l->in_size = in_size;
        l->in_is_input = in_is_input;
        l->need_dx = m->first_param >= 0;
        l->max_batch = max_batch;
        why[0] = 0;
        if (l->kind->setup(l, why, sizeof why) != 0) {
            dt_model_free(m);
            return layer_fail(err, source, s, i, why);
        }
        if (shape_size(l->out, &l->out_size)) {
            dt_model_free(m);
            return layer_fail(err, source, s, i, "its output has more than 2^31 values per sample");
        }
        size_t np = l->n_w + l->n_b;
        if (np > 0) {
            if (np > NN_MAX_PARAMS || off > NN_MAX_PARAMS - np) {
                snprintf(why, sizeof why,
                         "parameter count overflows: %zu parameters after %zu exceed the limit of %lu",
                         np, off, NN_MAX_PARAMS);
                dt_model_free(m);
                return layer_fail(err, source, s, i, why);
            }
            l->off = off;
            off += np;
            if (m->first_param < 0) m->first_param = i;
            m->flops += 2.0 * l->macs * (l->need_dx ? 3.0 : 2.0);
        }
        if (!l->kind->in_place) {
            in_is_input = false;
            acts += round_up((size_t)l->out_size * (size_t)max_batch);
        }
        if (l->ws_floats > ws) ws = l->ws_floats;
        n_idx += round_up(l->n_idx * (size_t)max_batch);
        if (m->first_param >= 0) {
            dmax = DT_MAX(dmax, (size_t)l->out_size * (size_t)max_batch);
            if (l->need_dx) dmax = DT_MAX(dmax, (size_t)l->in_size * (size_t)max_batch);
        }
        shape = l->out;
        in_size = l->out_size;
    }
    int last = n_layers - 1;
    if (m->first_param < 0) {
        dt_model_free(m);
        return layer_fail(err, source, &specs[last], last,
                          "the model has no dense or conv layer, so nothing to train");
    }
    if (in_size < 2) {
        snprintf(why, sizeof why,
                 "the last layer's output gives the class logits and needs at least 2 values, "
                 "not %ld",
                 in_size);
        dt_model_free(m);
        return layer_fail(err, source, &specs[last], last, why);
    }
    m->outputs = (int)in_size;
    m->n_params = off;

    /* an activation right after dense/conv runs in that layer's epilogue */
    for (int i = 1; i < n_layers; i++) {
        nn_layer *l = &m->layers[i], *prev = &m->layers[i - 1];
        if (l->kind->act != NN_ACT_NONE && prev->kind->fuses_act) {
            prev->act = l->kind->act;
            l->fused = true;
        }
    }

    /* the buffers (dt_alloc_aligned zeroes them) */
    m->params = dt_alloc_aligned(round_up(off) * sizeof(float));
    m->grads = dt_alloc_aligned(round_up(off) * sizeof(float));
    m->acts = dt_alloc_aligned(acts * sizeof(float));
    m->dbuf[0] = dt_alloc_aligned(round_up(dmax) * sizeof(float));
    m->dbuf[1] = dt_alloc_aligned(round_up(dmax) * sizeof(float));
    m->idx = dt_alloc_aligned(DT_MAX(n_idx, 1) * sizeof(int32_t));
    m->ws = dt_alloc_aligned(DT_MAX(ws, 1) * sizeof(float));
    m->labels = dt_malloc((size_t)max_batch * sizeof(int));
    if (!m->params || !m->grads || !m->acts || !m->dbuf[0] || !m->dbuf[1] || !m->idx || !m->ws ||
        !m->labels) {
        size_t bytes = (2 * off + acts + 2 * dmax + ws) * sizeof(float);
        dt_model_free(m);
        return dt_fail(err, DT_EINTERNAL,
                       "out of memory allocating the model (%zu MB for max_batch %ld)",
                       bytes >> 20, max_batch);
    }

    float *a = m->acts, *cur = NULL; /* cur: the latest tensor; NULL = the model input */
    int32_t *ix = m->idx;
    for (int i = 0; i < n_layers; i++) {
        nn_layer *l = &m->layers[i];
        if (l->n_w + l->n_b > 0) {
            l->w = m->params + l->off;
            l->b = l->w + l->n_w;
            l->dw = m->grads + l->off;
            l->db = l->dw + l->n_w;
        }
        if (l->kind->in_place) {
            l->y = cur;
        } else {
            l->y = cur = a;
            a += round_up((size_t)l->out_size * (size_t)max_batch);
        }
        if (l->n_idx) {
            l->idx = ix;
            ix += round_up(l->n_idx * (size_t)max_batch);
        }
        l->ws = m->ws;
    }
    int d = 0;
    for (int i = last; i >= m->first_param; i--) {
        nn_layer *l = &m->layers[i];
        l->dy = m->dbuf[d];
        if (l->kind->in_place) {
            l->dx = l->dy;
        } else if (l->need_dx) {
            d ^= 1;
            l->dx = m->dbuf[d];
        }
    }
    *out = m;
    return DT_OK;
}

void dt_model_free(dt_model *m)
{
    if (!m) return;
    dt_free(m->leaf_ws);
    dt_free(m->sample_loss);
    dt_free(m->params);
    if (m->grads_owned) dt_free(m->grads);
    dt_free(m->acts);
    dt_free(m->dbuf[0]);
    dt_free(m->dbuf[1]);
    dt_free(m->idx);
    dt_free(m->ws);
    dt_free(m->labels);
    dt_free(m);
}

size_t dt_model_param_count(const dt_model *m) { return m->n_params; }
float *dt_model_params(dt_model *m) { return m->params; }
float *dt_model_grads(dt_model *m) { return m->grads; }
long dt_model_input_size(const dt_model *m) { return m->input_size; }
int dt_model_outputs(const dt_model *m) { return m->outputs; }
long dt_model_max_batch(const dt_model *m) { return m->max_batch; }
double dt_model_flops_per_sample(const dt_model *m) { return m->flops; }
const float *dt_model_logits(const dt_model *m) { return m->logits; }

int dt_model_layer_tensors(const dt_model *m, int layer, dt_param_tensor out[2])
{
    DT_CHECK(layer >= 0 && layer < m->n_layers);
    const nn_layer *l = &m->layers[layer];
    if (l->n_w + l->n_b == 0) return 0;
    out[0] = (dt_param_tensor){.offset = l->off, .count = l->n_w};
    out[1] = (dt_param_tensor){.offset = l->off + l->n_w, .count = l->n_b, .ndim = 1,
                               .shape = {(long)l->n_b}};
    if (l->spec.kind == DT_LAYER_CONV) {
        out[0].ndim = 4;
        out[0].shape[0] = l->conv.out_c;
        out[0].shape[1] = l->conv.c;
        out[0].shape[2] = l->conv.kh;
        out[0].shape[3] = l->conv.kw;
    } else {
        DT_CHECK(l->spec.kind == DT_LAYER_DENSE);
        out[0].ndim = 2;
        out[0].shape[0] = (long)l->n_b;
        out[0].shape[1] = l->in_size;
    }
    size_t n = 1;
    for (int d = 0; d < out[0].ndim; d++) n *= (size_t)out[0].shape[d];
    DT_CHECK(n == l->n_w); /* the layout the kernels use is PyTorch's */
    return 2;
}

void dt_model_describe(const dt_model *m, char *buf, size_t size)
{
    size_t used = 0;
    if (size) buf[0] = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const nn_layer *l = &m->layers[i];
        char label[128], in[64], outs[64], params[64] = "";
        l->kind->label(l, label, sizeof label);
        shape_str(in, sizeof in, l->in);
        shape_str(outs, sizeof outs, l->out);
        if (l->n_w + l->n_b) snprintf(params, sizeof params, ", %zu params", l->n_w + l->n_b);
        if (used >= size) break;
        int k = snprintf(buf + used, size - used, "%s: %s -> %s%s\n", label, in, outs, params);
        if (k < 0) break;
        used += (size_t)k;
    }
}

void dt_model_init_params(dt_model *m, dt_init_kind init, uint64_t seed)
{
    for (int i = 0; i < m->n_layers; i++) {
        nn_layer *l = &m->layers[i];
        if (!l->n_w) continue;
        if (init == DT_INIT_HE) {
            double std = sqrt(2.0 / (double)l->fan_in);
            for (size_t k = 0; k < l->n_w; k++)
                l->w[k] = (float)(std * dt_rand_normal(seed, DT_STREAM_INIT, l->off + k));
        } else {
            double a = sqrt(6.0 / (double)(l->fan_in + l->fan_out));
            for (size_t k = 0; k < l->n_w; k++)
                l->w[k] =
                    (float)(a * (2.0 * dt_rand_uniform(seed, DT_STREAM_INIT, l->off + k) - 1.0));
        }
        memset(l->b, 0, l->n_b * sizeof *l->b);
    }
}

void dt_model_forward(dt_model *m, const float *x, const int *y, long n, double *loss_sum,
                      long *correct)
{
    if (n < 0 || n > m->max_batch) DT_BUG("forward of %ld samples, max_batch %ld", n, m->max_batch);
    const float *in = x;
    for (int i = 0; i < m->n_layers; i++) {
        nn_layer *l = &m->layers[i];
        l->x = in;
        if (n > 0) l->kind->forward(l, n);
        if (!l->kind->in_place) in = l->y;
    }
    m->logits = in;
    m->n = n;
    m->have_labels = y != NULL;
    if (y && n > 0) {
        memcpy(m->labels, y, (size_t)n * sizeof *y);
        if (m->leaf && loss_sum && nn_whole_subtree(n, m->leaf)) {
            /* the loss over the same tree as the gradients, in double: a
             * leaf is the sequential sum of its samples' losses */
            double *v = m->sample_loss;
            nn_softmax_ce_losses(in, y, n, m->outputs, v, correct);
            long leaves = n / m->leaf;
            for (long j = 0; j < leaves; j++) {
                double leaf = v[j * m->leaf];
                for (long k = j * m->leaf + 1; k < (j + 1) * m->leaf; k++) leaf += v[k];
                v[j] = leaf;
            }
            *loss_sum += nn_tree_sum_double(v, leaves);
        } else {
            nn_softmax_ce_forward(in, y, n, m->outputs, loss_sum, correct);
        }
    }
}

void dt_model_backward(dt_model *m, dt_grad_ready_fn ready, void *ctx)
{
    if (m->n < 0 || !m->have_labels) DT_BUG("backward needs a forward with labels first");
    long n = m->n;
    if (m->leaf && n > 0 && !nn_whole_subtree(n, m->leaf))
        DT_BUG("reproducible mode: backward of %ld samples, not a power-of-two number of leaves "
               "of %ld", n, m->leaf);
    nn_layer *last = &m->layers[m->n_layers - 1];
    if (n > 0) nn_softmax_ce_backward(last->dy, m->logits, m->labels, n, m->outputs);
    for (int i = m->n_layers - 1; i >= m->first_param; i--) {
        nn_layer *l = &m->layers[i];
        if (ready && l->n_w + l->n_b && l->kind->backward_ready) {
            l->kind->backward_ready(l, n, ready, ctx);
            continue;
        }
        if (n > 0) l->kind->backward(l, n);
        if (ready && l->n_w + l->n_b) ready(ctx, l->off, l->n_w + l->n_b);
    }
}

void dt_model_zero_grads(dt_model *m) { memset(m->grads, 0, m->n_params * sizeof *m->grads); }

void dt_model_bind_grads(dt_model *m, float *grads)
{
    if (m->grads_owned) dt_free(m->grads);
    m->grads = grads;
    m->grads_owned = false;
    for (int i = 0; i < m->n_layers; i++) {
        nn_layer *l = &m->layers[i];
        if (l->n_w + l->n_b == 0) continue;
        l->dw = m->grads + l->off;
        l->db = l->dw + l->n_w;
    }
}

/* ---- reproducible mode ----------------------------------------------------- */
dt_status dt_model_set_leaf(dt_model *m, long leaf_samples, dt_error *err)
{
    if (leaf_samples < 0)
        return dt_fail(err, DT_ECONFIG,
                       "reproducible mode: a leaf of %ld samples; 0 (off) or a positive count",
                       leaf_samples);
    if (leaf_samples > m->max_batch)
        return dt_fail(err, DT_ECONFIG,
                       "reproducible mode: a leaf of %ld samples does not fit in a step of at "
                       "most %ld samples",
                       leaf_samples, m->max_batch);
    dt_free(m->leaf_ws);
    dt_free(m->sample_loss);
    m->leaf_ws = NULL;
    m->sample_loss = NULL;
    m->leaf = 0;
    for (int i = 0; i < m->n_layers; i++) {
        m->layers[i].leaf = 0;
        m->layers[i].leaf_ws = NULL;
    }
    if (leaf_samples == 0) return DT_OK;

    int levels = nn_tree_levels(m->max_batch / leaf_samples);
    size_t ws = 1;
    for (int i = 0; i < m->n_layers; i++) {
        nn_layer *l = &m->layers[i];
        l->leaf_levels = levels;
        if (l->kind->leaf_workspace) ws = DT_MAX(ws, l->kind->leaf_workspace(l));
    }
    m->leaf_ws = dt_alloc_aligned(ws * sizeof(float));
    m->sample_loss = dt_malloc((size_t)m->max_batch * sizeof(double));
    if (!m->leaf_ws || !m->sample_loss) {
        dt_free(m->leaf_ws);
        dt_free(m->sample_loss);
        m->leaf_ws = NULL;
        m->sample_loss = NULL;
        return dt_fail(err, DT_EINTERNAL,
                       "out of memory for reproducible mode's workspace (%zu MB)",
                       (ws * sizeof(float)) >> 20);
    }
    m->leaf = leaf_samples;
    for (int i = 0; i < m->n_layers; i++) {
        m->layers[i].leaf = leaf_samples;
        m->layers[i].leaf_ws = m->leaf_ws;
    }
    return DT_OK;
}

long dt_model_leaf(const dt_model *m) { return m->leaf; }

/* One forward + backward of rows [first, first + n) of the check's batch
 * from zeroed gradients: the gradients into g, the loss into *loss, the
 * logits into z. */
static void check_pass(dt_model *m, const float *x, const int *y, long first, long n, float *g,
                       double *loss, float *z)
{
    dt_model_zero_grads(m);
    *loss = 0.0;
    dt_model_forward(m, x + first * m->input_size, y + first, n, loss, NULL);
    memcpy(z, m->logits, (size_t)n * (size_t)m->outputs * sizeof *z);
    dt_model_backward(m, NULL, NULL);
    memcpy(g, m->grads, m->n_params * sizeof *g);
}

bool dt_model_rows_invariant(dt_model *m)
{
    const long s = m->leaf ? m->leaf : 1, C = m->outputs, np = (long)m->n_params;
    long n = s;
    while (2 * n <= m->max_batch) n *= 2;
    const size_t nz = (size_t)n * (size_t)C;
    float *x = dt_malloc((size_t)n * (size_t)m->input_size * sizeof *x);
    int *y = dt_malloc((size_t)n * sizeof *y);
    float *saved = dt_malloc((size_t)np * sizeof *saved);
    float *g_full = dt_malloc((size_t)np * sizeof *g_full);
    float *g_part = dt_malloc((size_t)np * 2 * sizeof *g_part);
    float *z_full = dt_malloc(nz * sizeof *z_full), *z_part = dt_malloc(nz * sizeof *z_part);
    bool same = false;
    if (!x || !y || !saved || !g_full || !g_part || !z_full || !z_part) goto done;

    /* inputs of either sign and size around 1, labels of every class: every
     * relu and maxpool sees both branches, every output a gradient */
    const uint64_t seed = 0x5eedcafe;
    for (long k = 0; k < n * m->input_size; k++)
        x[k] = (float)(2.0 * dt_rand_uniform(seed, 7, (uint64_t)k) - 1.0);
    for (long k = 0; k < n; k++) y[k] = (int)dt_rand_below(seed, 8, (uint64_t)k, (uint64_t)C);
    memcpy(saved, m->grads, (size_t)np * sizeof *saved);

    double loss_full, loss_part[2];
    check_pass(m, x, y, 0, n, g_full, &loss_full, z_full);
    same = true;
    if (n >= 2 * s) {
        /* the two halves, each alone, then one float add per element */
        for (int h = 0; h < 2; h++) {
            check_pass(m, x, y, h * n / 2, n / 2, g_part + h * np, &loss_part[h], z_part);
            same &= memcmp(z_part, z_full + (size_t)h * nz / 2, nz / 2 * sizeof *z_part) == 0;
        }
        for (long i = 0; i < np; i++) g_part[i] += g_part[np + i];
        double loss = loss_part[0] + loss_part[1];
        same &= memcmp(g_part, g_full, (size_t)np * sizeof *g_part) == 0;
        same &= memcmp(&loss, &loss_full, sizeof loss) == 0;
    }
    /* the last sample alone */
    dt_model_forward(m, x + (n - 1) * m->input_size, y + n - 1, 1, NULL, NULL);
    same &= memcmp(m->logits, z_full + (size_t)(n - 1) * (size_t)C, (size_t)C * sizeof(float)) == 0;
    /* one BLAS thread where this process uses several */
    int threads = openblas_get_num_threads();
    if (threads > 1) {
        double loss;
        openblas_set_num_threads(1);
        check_pass(m, x, y, 0, n, g_part, &loss, z_part);
        openblas_set_num_threads(threads);
        same &= memcmp(g_part, g_full, (size_t)np * sizeof *g_part) == 0;
        same &= memcmp(z_part, z_full, nz * sizeof *z_part) == 0;
        same &= memcmp(&loss, &loss_full, sizeof loss) == 0;
    }
    memcpy(m->grads, saved, (size_t)np * sizeof *saved);
    m->n = -1; /* the check's forward is nobody's to backward */
done:
    dt_free(x);
    dt_free(y);
    dt_free(saved);
    dt_free(g_full);
    dt_free(g_part);
    dt_free(z_full);
    dt_free(z_part);
    return same;
}
