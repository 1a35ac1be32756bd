/* reduce.c - the reduction algorithms of reduce.h as chains of MPI
 * collectives, progressed by a small state machine per operation.
 *
 * An operation is a chain of up to three phases, each one MPI collective:
 *
 *   mpi          ALLREDUCE       flat allreduce
 *                REDUCE_SCATTER  flat reduce-scatter
 *                ALLGATHER       flat allgather
 *   hierarchical ALLREDUCE       node reduce-scatter -> cross allreduce -> node allgather
 *                REDUCE_SCATTER  node reduce-scatter -> cross reduce-scatter
 *                ALLGATHER       cross allgather -> node allgather
 *   hierarchical, direct across the nodes (up to DIRECT_MAX_NODES nodes):
 *                ALLREDUCE       node reduce-scatter -> cross direct reduce-scatter
 *                                -> cross direct allgather -> node allgather
 *                REDUCE_SCATTER  node reduce-scatter -> cross direct reduce-scatter
 *                ALLGATHER       cross direct allgather -> node allgather
 *
 * "Direct" phases are one MPI_Alltoallv on the cross communicator: every
 * rank sends each other node's rank its piece at once. The direct
 * reduce-scatter receives the N partial sums of its own piece and adds
 * them itself, in cross-rank order; the direct allgather sends its one
 * piece to every rank (every send displacement 0). Open MPI's tree and
 * ring algorithms instead pass each piece through log2(N) or N-1 rounds
 * one after the other, and every round of a large message pays the
 * network's latency again: under SMPI (P = 128, 16 nodes x 8, the cross
 * step of the MLP's 1.08 MB) 10 GbE takes 0.83 + 0.75 ms direct against
 * 1.32 + 1.21 ms (reduce-scatter + allgather, float32) and 2.46 ms for the
 * cross allreduce; on 100 Gb/s 0.19 + 0.09 against 0.13 + 0.13 and 0.24
 * (launch/results/reduce.md). Past DIRECT_MAX_NODES, what was not
 * measured, Open MPI's own algorithms stay. DTRAIN_REDUCE_CROSS=tree|direct
 * (environment) overrides the choice, for tests and benchmarks.
 *
 * "node" is the communicator of the ranks of one node, "cross" the one of
 * the ranks with the same local rank on every node. Geometry: the range is
 * cut into P pieces in piece order; with N nodes of L ranks, the node
 * slice of local rank l is pieces [l*N, l*N + N), and inside it the rank on
 * the c-th node (its rank in cross) owns piece l*N + c. The flat algorithm
 * runs its reduce-scatter and allgather on a copy of the world ordered by
 * piece, so both algorithms leave every rank the same piece.
 *
 * Traps this layout avoids:
 * - Non-blocking collectives on one communicator must be started in the
 *   same order on every rank. Phase k+1 starts when a rank sees phase k
 *   complete, which differs between ranks, so two chains sharing a
 *   communicator could cross. Each slot (one operation in flight) has its
 *   own communicators, and the slot an operation takes depends only on the
 *   start/wait order, which is the same on every rank (SPMD contract).
 * - A reduce-scatter cannot be in place at an offset (send and receive
 *   buffers may not overlap), so each slot has a scratch buffer; a rank's
 *   piece is received there or into a part of the range no longer read.
 * - SMPI's non-blocking collectives mis-handle MPI_IN_PLACE: with
 *   non-blocking phases under SMPI every in-place call goes out of place. */
#include "dtrain/reduce.h"

#include <limits.h>
#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "comm_internal.h"

enum { PIECE_ALIGN = 16, MAX_PHASES = 4, DIRECT_MAX_NODES = 16 };

typedef enum {
    PH_NONE = 0,
    PH_FLAT_ALLREDUCE,
    PH_FLAT_REDUCE_SCATTER,
    PH_FLAT_ALLGATHER,
    PH_NODE_REDUCE_SCATTER,
    PH_NODE_ALLGATHER,
    PH_CROSS_ALLREDUCE,
    PH_CROSS_REDUCE_SCATTER,
    PH_CROSS_ALLGATHER,
    PH_CROSS_DIRECT_REDUCE_SCATTER,
    PH_CROSS_DIRECT_ALLGATHER
} phase_kind;

typedef enum { CHAIN_FLAT = 0, CHAIN_TREE, CHAIN_DIRECT, CHAIN_COUNT } chain_kind;

/* [chain kind][op] -> the chain of phases */
static const phase_kind chains[CHAIN_COUNT][DT_REDUCE_OP_COUNT][MAX_PHASES] = {
    [CHAIN_FLAT] = {{PH_FLAT_ALLREDUCE}, {PH_FLAT_REDUCE_SCATTER}, {PH_FLAT_ALLGATHER}},
    [CHAIN_TREE] = {{PH_NODE_REDUCE_SCATTER, PH_CROSS_ALLREDUCE, PH_NODE_ALLGATHER},
                    {PH_NODE_REDUCE_SCATTER, PH_CROSS_REDUCE_SCATTER},
                    {PH_CROSS_ALLGATHER, PH_NODE_ALLGATHER}},
    [CHAIN_DIRECT] = {{PH_NODE_REDUCE_SCATTER, PH_CROSS_DIRECT_REDUCE_SCATTER,
                       PH_CROSS_DIRECT_ALLGATHER, PH_NODE_ALLGATHER},
                      {PH_NODE_REDUCE_SCATTER, PH_CROSS_DIRECT_REDUCE_SCATTER},
                      {PH_CROSS_DIRECT_ALLGATHER, PH_NODE_ALLGATHER}},
};

/* The exchange each operation is, as the watchdog names it. */
static const char *const wait_what[DT_REDUCE_OP_COUNT] = {
    "the gradient allreduce", "the gradient reduce-scatter", "the parameter allgather"};

struct dt_reduce_handle {
    dt_reduce_plan *plan;
    int busy;      /* started and not yet waited for */
    int done;      /* every phase complete, result in buf */
    dt_reduce_op op;
    const phase_kind *chain;
    int phase;
    MPI_Request req; /* of the phase in flight; NULL when it completed */
    float *buf;
    size_t count;
    int bf16;            /* the wire is bfloat16 */
    int result_in_scratch; /* an out-of-place flat allreduce */
    float *scratch;      /* max_count floats (or bfloat16 values) */
    float *partials;     /* direct reduce-scatter: N partial sums of a piece */
    int *counts, *displs; /* world entries; one phase uses them at a time */
    int *peer_counts, *peer_displs; /* the other side of an Alltoallv */
    MPI_Comm flat_world, flat_piece, node, cross;
};

struct dt_reduce_plan {
    dt_reduce_algo algo;
    dt_reduce_dtype dtype;
    size_t max_count;
    int max_inflight;
    int rank, world;
    int local_rank, local_size, nodes, node_index;
    int uniform, max_local;
    int piece_index;    /* this rank's */
    int *piece_of_rank; /* world rank -> piece index */
    int blocking;       /* every phase a blocking collective */
    int cross_direct;   /* hierarchical crosses the nodes by Alltoallv */
    int in_place_ok;    /* MPI_IN_PLACE is safe for the phases we start */
    MPI_Op bf16_sum;
    dt_reduce_handle *slot; /* max_inflight */
};

/* ---- bfloat16 ----------------------------------------------------------- */

/* Round to nearest even. A NaN keeps its sign and top payload bits and is
 * made quiet, so that truncation cannot turn it into an Inf; Inf and
 * values that round past the largest bfloat16 become Inf. */
static inline uint16_t bf16_from_float(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float float_from_bf16(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Every exchange converts the whole gradient and back: the loops are built
 * for AVX2 too and picked when the program loads (twice the SSE2 loop's
 * speed on a Sapphire Rapids VM). Integer arithmetic: the same bits either
 * way. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BF16_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define BF16_CLONES
#endif

BF16_CLONES static void to_bf16(const float *restrict src, uint16_t *restrict dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = bf16_from_float(src[i]);
}

BF16_CLONES static void from_bf16(const uint16_t *restrict src, float *restrict dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = float_from_bf16(src[i]);
}

/* The MPI_Op: inout += in, added in float, each sum rounded to bfloat16. */
BF16_CLONES static void bf16_sum_fn(void *in, void *inout, int *len, MPI_Datatype *type)
{
    const uint16_t *a = in;
    uint16_t *b = inout;
    for (int i = 0; i < *len; i++)
        b[i] = bf16_from_float(float_from_bf16(a[i]) + float_from_bf16(b[i]));
}

/* The bfloat16 wire lives in the first half of the range itself. The
 * gradient is in cache when its exchange starts, a separate wire buffer
 * often is not, and filling one cost more than the conversion: 1.08 MB
 * just written, on a Sapphire Rapids VM, 0.36-0.47 ms into a wire buffer
 * (SSE2), 0.09-0.12 ms in place (AVX2; launch/results/reduce.md). Both
 * passes go through a small block, so that the loops stay vectorised and
 * no value is overwritten before it is read: value i moves between bytes
 * [4i, 4i+4) (float) and [2i, 2i+2) (bfloat16). */
enum { BF16_BLOCK = 512 };

/* buf[0..n) -> the bfloat16 wire in buf's first 2n bytes. Forward: a block
 * is written below every float not yet read. */
static void to_bf16_in_place(float *buf, size_t n)
{
    uint16_t block[BF16_BLOCK];
    for (size_t b = 0; b < n; b += BF16_BLOCK) {
        const size_t m = DT_MIN(n - b, (size_t)BF16_BLOCK);
        to_bf16(buf + b, block, m);
        memcpy((char *)buf + b * sizeof *block, block, m * sizeof *block);
    }
}

/* Wire values [lo, hi) -> buf[lo..hi) as float. Backward: a block's floats
 * cover wire values at or above its own, which are already done (or past
 * hi, no longer needed). */
static void from_bf16_in_place(float *buf, size_t lo, size_t hi)
{
    uint16_t block[BF16_BLOCK];
    for (size_t e = hi; e > lo;) {
        const size_t b = e - lo > BF16_BLOCK ? e - BF16_BLOCK : lo;
        memcpy(block, (const char *)buf + b * sizeof *block, (e - b) * sizeof *block);
        from_bf16(block, buf + b, e - b);
        e = b;
    }
}

/* ---- geometry ------------------------------------------------------------ */

/* Piece p of P over count floats: whole 16-float units shared out, the
 * first units % P pieces one unit longer, the last piece also takes the
 * tail of count % 16. */
static void piece_range(size_t count, int pieces, int p, size_t *lo, size_t *hi)
{
    size_t units = count / PIECE_ALIGN, base = units / (size_t)pieces,
           extra = units % (size_t)pieces, up = (size_t)p;
    size_t start = up * base + DT_MIN(up, extra);
    *lo = start * PIECE_ALIGN;
    *hi = p == pieces - 1 ? count : (start + base + (up < extra)) * PIECE_ALIGN;
}

/* The node slice of local rank l: pieces [l*N, l*N + N). */
static void slice_range(const dt_reduce_plan *plan, size_t count, int l, size_t *lo, size_t *hi)
{
    size_t dummy;
    piece_range(count, plan->world, l * plan->nodes, lo, &dummy);
    piece_range(count, plan->world, l * plan->nodes + plan->nodes - 1, &dummy, hi);
}

void dt_reduce_piece_of(const dt_reduce_plan *plan, int rank, size_t count, size_t *lo,
                        size_t *hi)
{
    DT_CHECK(rank >= 0 && rank < plan->world);
    piece_range(count, plan->world, plan->piece_of_rank[rank], lo, hi);
}

void dt_reduce_piece(const dt_reduce_plan *plan, size_t count, size_t *lo, size_t *hi)
{
    piece_range(count, plan->world, plan->piece_index, lo, hi);
}

int dt_reduce_world(const dt_reduce_plan *plan) { return plan->world; }
int dt_reduce_nodes(const dt_reduce_plan *plan) { return plan->nodes; }
int dt_reduce_ranks_per_node(const dt_reduce_plan *plan) { return plan->max_local; }
int dt_reduce_nodes_uniform(const dt_reduce_plan *plan) { return plan->uniform; }
int dt_reduce_blocking(const dt_reduce_plan *plan) { return plan->blocking; }

/* ---- the choice of algorithm --------------------------------------------- */

/* auto, from the communication-only SMPI measurements in
 * launch/results/reduce.md (P = 128, 16 nodes x 8, both platforms): the
 * node-aware chain is never slower for the sharded pair (reduce-scatter +
 * allgather of 1.08 MB: 0.37 vs 2.04 ms fast, 3.09 vs 22.5 ms 10 GbE) and
 * for an allreduce up to 1.08 MB (16 KB: 0.03 vs 0.32 ms fast; 1.08 MB:
 * 0.37 vs 0.40 fast, 3.06 vs 3.35 ms 10 GbE); at 4.2 MB the two allreduces
 * tie (1.27 vs 1.25, 9.68 vs 9.67 ms), so from 2 MiB on the wire Open
 * MPI's own flat allreduce stays. One node, or one rank per node, leaves
 * nothing for the hierarchy to save. */
enum { AUTO_ALLREDUCE_MAX_BYTES = 2 << 20 };

static dt_reduce_algo auto_algo(const dt_reduce_plan *plan, dt_reduce_op op, size_t count)
{
    if (plan->nodes < 2 || plan->max_local < 2) return DT_REDUCE_MPI;
    if (op != DT_REDUCE_ALLREDUCE) return DT_REDUCE_HIERARCHICAL;
    size_t wire_bytes = count * (plan->dtype == DT_REDUCE_BFLOAT16 ? 2 : 4);
    return wire_bytes < AUTO_ALLREDUCE_MAX_BYTES ? DT_REDUCE_HIERARCHICAL : DT_REDUCE_MPI;
}

dt_reduce_algo dt_reduce_resolve(const dt_reduce_plan *plan, dt_reduce_op op, size_t count)
{
    dt_reduce_algo algo = plan->algo;
    if (algo == DT_REDUCE_AUTO) algo = auto_algo(plan, op, count);
    if (algo == DT_REDUCE_HIERARCHICAL && !plan->uniform) algo = DT_REDUCE_MPI;
    return algo;
}

/* ---- node layout --------------------------------------------------------- */

void dt__comm_split_nodes(MPI_Comm *node, MPI_Comm *cross, dt__comm_layout *lay)
{
    int rank, per_node = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const char *rpn = getenv("DTRAIN_RANKS_PER_NODE");
    if (rpn && *rpn) per_node = atoi(rpn);
    if (per_node > 0)
        MPI_Comm_split(MPI_COMM_WORLD, rank / per_node, rank, node);
    else
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, node);
    MPI_Comm_rank(*node, &lay->local_rank);
    MPI_Comm_size(*node, &lay->local_size);
    MPI_Comm_split(MPI_COMM_WORLD, lay->local_rank, rank, cross);
    MPI_Comm_rank(*cross, &lay->node_index);
    /* {nodes, -min local size, max local size} in one call */
    int mine[3] = {lay->local_rank == 0, -lay->local_size, lay->local_size}, all[3];
    MPI_Allreduce(mine, all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(mine + 1, all + 1, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    lay->nodes = all[0];
    lay->uniform = -all[1] == all[2];
    lay->max_local = all[2];
}

/* ---- plan -------------------------------------------------------------- */

int dt_reduce_blocking_default(void)
{
#ifdef DTRAIN_SMPI
    int blocking = 1;
#else
    int blocking = 0;
#endif
    const char *v = getenv("DTRAIN_REDUCE_BLOCKING");
    if (v && *v) blocking = strcmp(v, "0") != 0;
    return blocking;
}

static int env_cross_direct(int nodes)
{
    const char *v = getenv("DTRAIN_REDUCE_CROSS");
    if (v && !strcmp(v, "tree")) return 0;
    if (v && !strcmp(v, "direct")) return 1;
    return nodes <= DIRECT_MAX_NODES;
}

/* The longest piece of a range of at most max_count floats cut into
 * `pieces`: the units shared out, one more, and the last piece's tail. */
static size_t max_piece(size_t max_count, int pieces)
{
    return (max_count / PIECE_ALIGN / (size_t)pieces + 2) * PIECE_ALIGN;
}

dt_status dt_reduce_plan_create(dt_reduce_algo algo, dt_reduce_dtype dtype, size_t max_count,
                                int max_inflight, dt_reduce_plan **out, dt_error *err)
{
    *out = NULL;
    if ((unsigned)algo >= DT_REDUCE_ALGO_COUNT || (unsigned)dtype >= DT_REDUCE_DTYPE_COUNT)
        return dt_fail(err, DT_EINTERNAL, "reduce: unknown algorithm or dtype");
    if (max_count > INT_MAX)
        return dt_fail(err, DT_EINTERNAL, "reduce: a range of %zu floats exceeds MPI's int counts",
                       max_count);
    if (max_inflight < 1 || max_inflight > DT_REDUCE_MAX_INFLIGHT)
        return dt_fail(err, DT_EINTERNAL, "reduce: %d operations in flight (1..%d)", max_inflight,
                       DT_REDUCE_MAX_INFLIGHT);
    /* The layout first: it is collective, and every rank must take part
     * even when its own allocation fails below. */
    int rank, world;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    MPI_Comm node, cross, flat_piece;
    dt__comm_layout lay;
    dt__comm_split_nodes(&node, &cross, &lay);
    const int local_rank = lay.local_rank, local_size = lay.local_size;
    const int node_index = lay.node_index, nodes = lay.nodes, uniform = lay.uniform;
    int piece_index = uniform ? local_rank * nodes + node_index : rank;
    MPI_Comm_split(MPI_COMM_WORLD, 0, piece_index, &flat_piece);

    dt_reduce_plan *p = dt_calloc(1, sizeof *p);
    int ok = p != NULL;
    if (ok) {
        p->algo = algo;
        p->dtype = dtype;
        p->max_count = max_count;
        p->max_inflight = max_inflight;
        p->rank = rank;
        p->world = world;
        p->local_rank = local_rank;
        p->local_size = local_size;
        p->nodes = nodes;
        p->node_index = node_index;
        p->uniform = uniform;
        p->max_local = lay.max_local;
        p->piece_index = piece_index;
        p->blocking = dt_reduce_blocking_default();
        p->cross_direct = env_cross_direct(nodes);
#ifdef DTRAIN_SMPI
        p->in_place_ok = p->blocking;
#else
        p->in_place_ok = 1;
#endif
        p->bf16_sum = MPI_OP_NULL;
        p->piece_of_rank = dt_calloc((size_t)world, sizeof *p->piece_of_rank);
        p->slot = dt_calloc((size_t)max_inflight, sizeof *p->slot);
        ok = p->piece_of_rank && p->slot;
    }
    /* MPI_COMM_NULL is not all-zero bits (Open MPI): set it in every slot
     * before anything can fail, so that plan_free frees only real ones. */
    for (int k = 0; p && p->slot && k < max_inflight; k++) {
        dt_reduce_handle *h = &p->slot[k];
        h->plan = p;
        h->req = MPI_REQUEST_NULL;
        h->flat_world = h->flat_piece = h->node = h->cross = MPI_COMM_NULL;
    }
    for (int k = 0; ok && k < max_inflight; k++) {
        dt_reduce_handle *h = &p->slot[k];
        h->scratch = dt_alloc_aligned(DT_MAX(max_count, 1) * sizeof *h->scratch);
        h->partials = dt_alloc_aligned((size_t)nodes * max_piece(max_count, world) * sizeof *h->partials);
        h->counts = dt_calloc((size_t)world, sizeof *h->counts);
        h->displs = dt_calloc((size_t)world, sizeof *h->displs);
        h->peer_counts = dt_calloc((size_t)world, sizeof *h->peer_counts);
        h->peer_displs = dt_calloc((size_t)world, sizeof *h->peer_displs);
        ok = h->scratch && h->partials && h->counts && h->displs && h->peer_counts &&
             h->peer_displs;
    }
    /* Every rank learns whether every rank got its memory before anyone
     * starts the collective set-up of the slots. */
    int all_ok;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (all_ok) {
        MPI_Allgather(&piece_index, 1, MPI_INT, p->piece_of_rank, 1, MPI_INT, MPI_COMM_WORLD);
        MPI_Op_create(bf16_sum_fn, 1, &p->bf16_sum);
        for (int k = 0; k < max_inflight; k++) {
            dt_reduce_handle *h = &p->slot[k];
            MPI_Comm_dup(MPI_COMM_WORLD, &h->flat_world);
            MPI_Comm_dup(flat_piece, &h->flat_piece);
            MPI_Comm_dup(node, &h->node);
            MPI_Comm_dup(cross, &h->cross);
        }
    }
    MPI_Comm_free(&node);
    MPI_Comm_free(&cross);
    MPI_Comm_free(&flat_piece);
    if (!all_ok) {
        dt_reduce_plan_free(p);
        return dt_fail(err, DT_EINTERNAL, "reduce: out of memory for %d buffers of %zu floats",
                       max_inflight, max_count);
    }
    *out = p;
    return DT_OK;
}

void dt_reduce_plan_free(dt_reduce_plan *plan)
{
    if (!plan) return;
    for (int k = 0; plan->slot && k < plan->max_inflight; k++) {
        dt_reduce_handle *h = &plan->slot[k];
        DT_CHECK(!h->busy);
        MPI_Comm *comms[] = {&h->flat_world, &h->flat_piece, &h->node, &h->cross};
        for (size_t i = 0; i < DT_ARRAY_LEN(comms); i++)
            if (*comms[i] != MPI_COMM_NULL) MPI_Comm_free(comms[i]);
        dt_free(h->scratch);
        dt_free(h->partials);
        dt_free(h->counts);
        dt_free(h->displs);
        dt_free(h->peer_counts);
        dt_free(h->peer_displs);
    }
    if (plan->bf16_sum != MPI_OP_NULL) MPI_Op_free(&plan->bf16_sum);
    dt_free(plan->slot);
    dt_free(plan->piece_of_rank);
    dt_free(plan);
}

/* ---- phases ------------------------------------------------------------ */

/* counts/displs of `n` consecutive pieces starting at piece `first`, with
 * displacements relative to the start of piece `first`. */
static void fill_pieces(dt_reduce_handle *h, int first, int n)
{
    size_t base, lo, hi;
    piece_range(h->count, h->plan->world, first, &base, &hi);
    for (int i = 0; i < n; i++) {
        piece_range(h->count, h->plan->world, first + i, &lo, &hi);
        h->counts[i] = (int)(hi - lo);
        h->displs[i] = (int)(lo - base);
    }
}

/* counts/displs of the node slices of local ranks 0..L-1 */
static void fill_slices(dt_reduce_handle *h)
{
    for (int l = 0; l < h->plan->local_size; l++) {
        size_t lo, hi;
        slice_range(h->plan, h->count, l, &lo, &hi);
        h->counts[l] = (int)(hi - lo);
        h->displs[l] = (int)lo;
    }
}

/* One wrapper per collective shape: blocking or not, as the plan says. */
static void coll_allreduce(dt_reduce_handle *h, const void *send, void *recv, int n,
                           MPI_Datatype t, MPI_Op op, MPI_Comm comm)
{
    if (h->plan->blocking)
        MPI_Allreduce(send, recv, n, t, op, comm);
    else
        MPI_Iallreduce(send, recv, n, t, op, comm, &h->req);
}

static void coll_reduce_scatter(dt_reduce_handle *h, const void *send, void *recv,
                                MPI_Datatype t, MPI_Op op, MPI_Comm comm)
{
    if (h->plan->blocking)
        MPI_Reduce_scatter(send, recv, h->counts, t, op, comm);
    else
        MPI_Ireduce_scatter(send, recv, h->counts, t, op, comm, &h->req);
}

/* Allgather in place into recv (counts/displs filled), member `me` of
 * comm. Without safe MPI_IN_PLACE, the own part is sent from scratch. */
static void coll_allgatherv(dt_reduce_handle *h, void *recv, size_t esize, int me,
                            MPI_Datatype t, MPI_Comm comm)
{
    const void *send = MPI_IN_PLACE;
    int send_count = 0;
    if (!h->plan->in_place_ok) {
        memcpy(h->scratch, (char *)recv + (size_t)h->displs[me] * esize,
               (size_t)h->counts[me] * esize);
        send = h->scratch;
        send_count = h->counts[me];
    }
    if (h->plan->blocking)
        MPI_Allgatherv(send, send_count, t, recv, h->counts, h->displs, t, comm);
    else
        MPI_Iallgatherv(send, send_count, t, recv, h->counts, h->displs, t, comm, &h->req);
}

static void coll_alltoallv(dt_reduce_handle *h, const void *send, const int *send_counts,
                           const int *send_displs, void *recv, const int *recv_counts,
                           const int *recv_displs, MPI_Datatype t, MPI_Comm comm)
{
    if (h->plan->blocking)
        MPI_Alltoallv(send, send_counts, send_displs, t, recv, recv_counts, recv_displs, t, comm);
    else
        MPI_Ialltoallv(send, send_counts, send_displs, t, recv, recv_counts, recv_displs, t, comm,
                       &h->req);
}

/* The N partial sums of this rank's piece, one after the other in
 * `partials`, added in cross-rank order into out: in float, or (bfloat16)
 * each sum rounded as the MPI_Op rounds it. */
static void sum_partials(const dt_reduce_handle *h, void *out, size_t n)
{
    const int N = h->plan->nodes;
    if (h->bf16) {
        const uint16_t *part = (const uint16_t *)h->partials;
        uint16_t *acc = out;
        memcpy(acc, part, n * sizeof *acc);
        int len = (int)n;
        for (int j = 1; j < N; j++) bf16_sum_fn((void *)(part + j * n), acc, &len, NULL);
    } else {
        const float *part = h->partials;
        float *acc = out;
        memcpy(acc, part, n * sizeof *acc);
        for (int j = 1; j < N; j++)
            for (size_t i = 0; i < n; i++) acc[i] += part[j * n + i];
    }
}

static void start_phase(dt_reduce_handle *h)
{
    dt_reduce_plan *p = h->plan;
    const MPI_Datatype t = h->bf16 ? MPI_UINT16_T : MPI_FLOAT;
    const MPI_Op sum = h->bf16 ? p->bf16_sum : MPI_SUM;
    const size_t esize = h->bf16 ? sizeof(uint16_t) : sizeof(float);
    char *wire = (char *)h->buf; /* float32, or bfloat16 in its first half */
    const int l = p->local_rank, N = p->nodes;
    size_t slice_lo = 0, slice_hi = 0, lo, hi;
    if (p->uniform) slice_range(p, h->count, l, &slice_lo, &slice_hi);
    dt_reduce_piece(p, h->count, &lo, &hi);
    h->req = MPI_REQUEST_NULL;
    switch (h->chain[h->phase]) {
    case PH_FLAT_ALLREDUCE:
        h->result_in_scratch = !p->in_place_ok;
        coll_allreduce(h, p->in_place_ok ? MPI_IN_PLACE : (const void *)wire,
                       p->in_place_ok ? (void *)wire : (void *)h->scratch, (int)h->count, t, sum,
                       h->flat_world);
        break;
    case PH_FLAT_REDUCE_SCATTER: /* my piece -> scratch */
        fill_pieces(h, 0, p->world);
        coll_reduce_scatter(h, wire, h->scratch, t, sum, h->flat_piece);
        break;
    case PH_FLAT_ALLGATHER:
        fill_pieces(h, 0, p->world);
        coll_allgatherv(h, wire, esize, p->piece_index, t, h->flat_piece);
        break;
    case PH_NODE_REDUCE_SCATTER: /* my slice -> scratch */
        fill_slices(h);
        coll_reduce_scatter(h, wire, h->scratch, t, sum, h->node);
        break;
    case PH_CROSS_ALLREDUCE: /* scratch -> my slice of the wire (no longer read) */
        coll_allreduce(h, h->scratch, wire + slice_lo * esize, (int)(slice_hi - slice_lo), t,
                       sum, h->cross);
        break;
    case PH_CROSS_REDUCE_SCATTER: /* scratch (my slice) -> my piece of the wire */
        fill_pieces(h, l * N, N);
        coll_reduce_scatter(h, h->scratch, wire + lo * esize, t, sum, h->cross);
        break;
    case PH_NODE_ALLGATHER:
        fill_slices(h);
        coll_allgatherv(h, wire, esize, l, t, h->node);
        break;
    case PH_CROSS_ALLGATHER:
        fill_pieces(h, l * N, N);
        coll_allgatherv(h, wire + slice_lo * esize, esize, p->node_index, t, h->cross);
        break;
    case PH_CROSS_DIRECT_REDUCE_SCATTER: /* scratch (my slice) -> partials; end_phase sums */
        fill_pieces(h, l * N, N);
        for (int j = 0; j < N; j++) {
            h->peer_counts[j] = (int)(hi - lo);
            h->peer_displs[j] = j * (int)(hi - lo);
        }
        coll_alltoallv(h, h->scratch, h->counts, h->displs, h->partials, h->peer_counts,
                       h->peer_displs, t, h->cross);
        break;
    case PH_CROSS_DIRECT_ALLGATHER: /* my piece, from scratch to every rank of cross */
        fill_pieces(h, l * N, N);
        memcpy(h->scratch, wire + lo * esize, (hi - lo) * esize);
        for (int j = 0; j < N; j++) {
            h->peer_counts[j] = (int)(hi - lo);
            h->peer_displs[j] = 0;
        }
        coll_alltoallv(h, h->scratch, h->peer_counts, h->peer_displs, wire + slice_lo * esize,
                       h->counts, h->displs, t, h->cross);
        break;
    case PH_NONE:
        DT_BUG("reduce: empty phase started");
    }
}

/* Phase h->phase completed: the work it leaves to this rank. */
static void end_phase(dt_reduce_handle *h)
{
    if (h->chain[h->phase] != PH_CROSS_DIRECT_REDUCE_SCATTER) return;
    const size_t esize = h->bf16 ? sizeof(uint16_t) : sizeof(float);
    char *wire = (char *)h->buf; /* float32, or bfloat16 in its first half */
    size_t lo, hi;
    dt_reduce_piece(h->plan, h->count, &lo, &hi);
    sum_partials(h, wire + lo * esize, hi - lo);
}

/* The last phase completed: move the result into buf. */
static void finish(dt_reduce_handle *h)
{
    dt_reduce_plan *p = h->plan;
    size_t lo, hi;
    dt_reduce_piece(p, h->count, &lo, &hi);
    const int flat = h->chain[0] == PH_FLAT_REDUCE_SCATTER;
    switch (h->op) {
    case DT_REDUCE_ALLREDUCE:
        if (h->bf16 && h->result_in_scratch)
            from_bf16((const uint16_t *)h->scratch, h->buf, h->count);
        else if (h->bf16)
            from_bf16_in_place(h->buf, 0, h->count);
        else if (h->result_in_scratch)
            memcpy(h->buf, h->scratch, h->count * sizeof(float));
        break;
    case DT_REDUCE_REDUCE_SCATTER:
        /* flat: the piece is at the start of scratch; hierarchical: in place */
        if (h->bf16 && flat)
            from_bf16((const uint16_t *)h->scratch, h->buf + lo, hi - lo);
        else if (h->bf16)
            from_bf16_in_place(h->buf, lo, hi);
        else if (flat)
            memcpy(h->buf + lo, h->scratch, (hi - lo) * sizeof(float));
        break;
    case DT_REDUCE_ALLGATHER:
    case DT_REDUCE_OP_COUNT:
        break;
    }
    h->done = 1;
}

/* Run the state machine as far as it goes without waiting; 1 when done. */
static int advance(dt_reduce_handle *h)
{
    while (!h->done) {
        if (h->req != MPI_REQUEST_NULL) {
            int complete = 0;
            MPI_Test(&h->req, &complete, MPI_STATUS_IGNORE);
            if (!complete) return 0;
        }
        end_phase(h);
        if (++h->phase < MAX_PHASES && h->chain[h->phase] != PH_NONE)
            start_phase(h);
        else
            finish(h);
    }
    return 1;
}

dt_reduce_handle *dt_reduce_start(dt_reduce_plan *plan, dt_reduce_op op, float *buf,
                                  size_t count)
{
    DT_CHECK((unsigned)op < DT_REDUCE_OP_COUNT);
    if (count > plan->max_count)
        DT_BUG("reduce: a range of %zu floats, the plan holds %zu", count, plan->max_count);
    dt_reduce_handle *h = NULL;
    for (int k = 0; k < plan->max_inflight && !h; k++)
        if (!plan->slot[k].busy) h = &plan->slot[k];
    if (!h) DT_BUG("reduce: more than %d operations in flight", plan->max_inflight);
    h->busy = 1;
    h->op = op;
    h->buf = buf;
    h->count = count;
    h->phase = 0;
    h->req = MPI_REQUEST_NULL;
    h->result_in_scratch = 0;
    /* A sum over one rank is the range itself; an empty range is empty on
     * every rank (count is the same everywhere). */
    if (plan->world == 1 || count == 0) {
        h->done = 1;
        return h;
    }
    h->done = 0;
    const chain_kind kind = dt_reduce_resolve(plan, op, count) != DT_REDUCE_HIERARCHICAL ? CHAIN_FLAT
                            : plan->cross_direct                                   ? CHAIN_DIRECT
                                                                                   : CHAIN_TREE;
    h->chain = chains[kind][op];
    h->bf16 = plan->dtype == DT_REDUCE_BFLOAT16 && op != DT_REDUCE_ALLGATHER;
    if (h->bf16) to_bf16_in_place(buf, count);
    start_phase(h);
    advance(h);
    return h;
}

int dt_reduce_test(dt_reduce_handle *h)
{
    DT_CHECK(h->busy);
    return advance(h);
}

void dt_reduce_progress(dt_reduce_plan *plan)
{
    for (int k = 0; k < plan->max_inflight; k++)
        if (plan->slot[k].busy) advance(&plan->slot[k]);
}

void dt_reduce_wait(dt_reduce_handle *h)
{
    DT_CHECK(h->busy);
    while (!advance(h)) dt__comm_wait(1, &h->req, wait_what[h->op]);
    h->busy = 0;
}

void dt_reduce_run(dt_reduce_plan *plan, dt_reduce_op op, float *buf, size_t count)
{
    dt_reduce_wait(dt_reduce_start(plan, op, buf, count));
}
