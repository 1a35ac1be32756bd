/* reduce_exact.c - the fixed-tree sums of reduce_exact.h on MPI
 * point-to-point.
 *
 * Every round is one exchange with one partner (rank ^ distance): an
 * Irecv and an Isend of the data, and of the few doubles riding along,
 * completed together through dt__comm_wait. Both partners then add the
 * same two operands; IEEE addition being commutative, they get the same
 * bits, so a node of the tree has one value on every rank that holds it.
 * MPI keeps messages between two ranks with the same tag in order, and
 * every rank runs the same rounds in the same order, so no round can take
 * another round's message. */
#include "dtrain/reduce_exact.h"

#include <limits.h>
#include <mpi.h>
#include <stdbool.h>
#include <string.h>

#include "comm_internal.h"

enum { TAG_DATA = 1, TAG_SUMS = 2 };

struct dt_exact {
    MPI_Comm comm; /* a private duplicate: no message of anyone else's */
    int rank, world, log2_world;
    size_t max_bytes;
    unsigned char *scratch; /* the partner's half in a halving round */
};

static size_t type_size(dt_exact_type t) { return t == DT_EXACT_DOUBLE ? sizeof(double) : sizeof(float); }
static MPI_Datatype mpi_type(dt_exact_type t) { return t == DT_EXACT_DOUBLE ? MPI_DOUBLE : MPI_FLOAT; }

dt_status dt_exact_create(size_t max_bytes, dt_exact **out, dt_error *err)
{
    *out = NULL;
    int world, rank;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (world & (world - 1))
        return dt_fail(err, DT_ECONFIG, "a reproducible sum needs a power-of-two number of ranks, not %d",
                       world);
    /* MPI counts are ints; floats are the smallest element */
    if (max_bytes / sizeof(float) > INT_MAX)
        return dt_fail(err, DT_EINTERNAL, "a reproducible sum over %zu bytes is too large for MPI",
                       max_bytes);
    dt_exact *x = dt_calloc(1, sizeof *x);
    /* a halving round receives at most half the vector, rounded up */
    unsigned char *scratch = dt_alloc_aligned(max_bytes / 2 + 64);
    if (!x || !scratch) {
        dt_free(x);
        dt_free(scratch);
        return dt_fail(err, DT_EINTERNAL, "out of memory");
    }
    x->rank = rank;
    x->world = world;
    while ((1 << x->log2_world) < world) x->log2_world++;
    x->max_bytes = max_bytes;
    x->scratch = scratch;
    MPI_Comm_dup(MPI_COMM_WORLD, &x->comm);
    *out = x;
    return DT_OK;
}

void dt_exact_free(dt_exact *x)
{
    if (!x) return;
    MPI_Comm_free(&x->comm);
    dt_free(x->scratch);
    dt_free(x);
}

int dt_exact_world(const dt_exact *x) { return x->world; }
int dt_exact_log2_world(const dt_exact *x) { return x->log2_world; }

void dt_exact_node(size_t n, int depth, size_t index, size_t *lo, size_t *hi)
{
    DT_CHECK(depth >= 0 && depth < 64 && index < ((size_t)1 << depth));
    size_t a = 0, b = n;
    for (int j = depth - 1; j >= 0; j--) { /* the path from the root: index's bits, high first */
        size_t mid = a + (b - a) / 2;
        if ((index >> j) & 1) a = mid;
        else b = mid;
    }
    *lo = a;
    *hi = b;
}

/* The index at `depth` of the node rank r holds after `depth` halving
 * rounds: round j chose the child by bit j of r, so the path is r's low
 * `depth` bits read from bit 0 down (bit-reversed). */
static size_t path_index(int r, int depth)
{
    size_t idx = 0;
    for (int j = 0; j < depth; j++) idx = (idx << 1) | (size_t)((r >> j) & 1);
    return idx;
}

size_t dt_exact_piece_index(const dt_exact *x, int rank) { return path_index(rank, x->log2_world); }

void dt_exact_piece_of(const dt_exact *x, int rank, size_t n, size_t *lo, size_t *hi)
{
    dt_exact_node(n, x->log2_world, path_index(rank, x->log2_world), lo, hi);
}

/* One round with `partner`: send count_out elements from out, receive
 * count_in into in, and the same for n_sums doubles. */
static void swap_with(dt_exact *x, int partner, MPI_Datatype type, const void *out,
                      size_t count_out, void *in, size_t count_in, const double *sums_out,
                      double *sums_in, int n_sums, const char *what)
{
    MPI_Request req[4];
    int k = 0;
    MPI_Irecv(in, (int)count_in, type, partner, TAG_DATA, x->comm, &req[k++]);
    if (n_sums > 0) MPI_Irecv(sums_in, n_sums, MPI_DOUBLE, partner, TAG_SUMS, x->comm, &req[k++]);
    MPI_Isend(out, (int)count_out, type, partner, TAG_DATA, x->comm, &req[k++]);
    if (n_sums > 0) MPI_Isend(sums_out, n_sums, MPI_DOUBLE, partner, TAG_SUMS, x->comm, &req[k++]);
    dt__comm_wait(k, req, what);
}

static void add_into(dt_exact_type type, void *dst, const void *src, size_t n)
{
    if (type == DT_EXACT_DOUBLE) {
        double *d = dst;
        const double *s = src;
        for (size_t i = 0; i < n; i++) d[i] = d[i] + s[i];
    } else {
        float *d = dst;
        const float *s = src;
        for (size_t i = 0; i < n; i++) d[i] = d[i] + s[i];
    }
}

void dt_exact_reduce_scatter(dt_exact *x, dt_exact_type type, void *buf, size_t n, double *sums,
                             int n_sums)
{
    const size_t es = type_size(type);
    DT_CHECK(n <= x->max_bytes / es && n_sums >= 0 && n_sums <= DT_EXACT_MAX_SUMS);
    unsigned char *b = buf;
    double theirs[DT_EXACT_MAX_SUMS];
    size_t lo = 0, hi = n;
    for (int j = 0; j < x->log2_world; j++) {
        const int d = 1 << j;
        const bool upper = x->rank & d;
        const size_t mid = lo + (hi - lo) / 2;
        const size_t keep_lo = upper ? mid : lo, keep_hi = upper ? hi : mid;
        const size_t send_lo = upper ? lo : mid, send_hi = upper ? mid : hi;
        swap_with(x, x->rank ^ d, mpi_type(type), b + send_lo * es, send_hi - send_lo, x->scratch,
                  keep_hi - keep_lo, sums, theirs, n_sums, "the reproducible gradient reduce-scatter");
        add_into(type, b + keep_lo * es, x->scratch, keep_hi - keep_lo);
        for (int i = 0; i < n_sums; i++) sums[i] = sums[i] + theirs[i];
        lo = keep_lo;
        hi = keep_hi;
    }
}

void dt_exact_allgather(dt_exact *x, dt_exact_type type, void *buf, size_t n)
{
    const size_t es = type_size(type);
    DT_CHECK(n <= x->max_bytes / es);
    unsigned char *b = buf;
    /* Before round j this rank holds its node at depth j + 1, the partner
     * (differing in bit j) its sibling; after it, both hold the parent. */
    for (int j = x->log2_world - 1; j >= 0; j--) {
        const int d = 1 << j;
        size_t plo, phi;
        dt_exact_node(n, j, path_index(x->rank, j), &plo, &phi);
        const size_t mid = plo + (phi - plo) / 2;
        const bool upper = x->rank & d;
        const size_t mine_lo = upper ? mid : plo, mine_hi = upper ? phi : mid;
        const size_t their_lo = upper ? plo : mid, their_hi = upper ? mid : phi;
        swap_with(x, x->rank ^ d, mpi_type(type), b + mine_lo * es, mine_hi - mine_lo,
                  b + their_lo * es, their_hi - their_lo, NULL, NULL, 0,
                  "the reproducible allgather");
    }
}

void dt_exact_allreduce(dt_exact *x, dt_exact_order order, double *v, int n)
{
    DT_CHECK(n >= 0 && n <= DT_EXACT_MAX_SUMS);
    double theirs[DT_EXACT_MAX_SUMS];
    const int k = x->log2_world;
    for (int step = 0; step < k; step++) {
        /* the rank tree pairs siblings from the bottom (distance 1 first);
         * the partition puts bit 0 of the rank at the top of the piece's
         * path, so its tree pairs from distance P/2 */
        const int j = order == DT_EXACT_RANK_TREE ? step : k - 1 - step;
        MPI_Request req[2];
        const int partner = x->rank ^ (1 << j);
        MPI_Irecv(theirs, n, MPI_DOUBLE, partner, TAG_SUMS, x->comm, &req[0]);
        MPI_Isend(v, n, MPI_DOUBLE, partner, TAG_SUMS, x->comm, &req[1]);
        dt__comm_wait(2, req, "the reproducible sum of global quantities");
        for (int i = 0; i < n; i++) v[i] = v[i] + theirs[i];
    }
}

double dt_exact_tree_sum(const double *v, size_t count)
{
    if (count == 0) return 0;
    if (count == 1) return v[0];
    const size_t half = count / 2;
    return dt_exact_tree_sum(v, half) + dt_exact_tree_sum(v + half, count - half);
}
