/* reduce_exact.h - sums over ranks that give the same bits on any number of
 * ranks: the cross-rank half of reproducible mode (comm.reproducible).
 *
 * IEEE addition is commutative but not associative, so a sum has one value
 * per tree shape, whichever rank computes each node. These operations fix
 * the shape:
 *
 * The rank tree. P = 2^k ranks; rank r holds the sum over its leaves, the
 * node over the aligned group {r}. At distance d = 1, 2, 4, ..., P/2 rank r
 * and rank r^d hold the two sibling subtrees of the aligned group of 2d
 * ranks containing both, and their sum is that group's node. Since rank r
 * holds leaves [r*L/P, (r+1)*L/P) of a batch of L leaves, the nodes formed
 * are exactly those of T(a,b) = T(a,mid) + T(mid,b), mid = (a+b)/2, over
 * the leaves: the sum a 1-rank run forms locally.
 *
 * The element partition. The elements [0, n) of a vector are split by one
 * fixed binary partition: node (depth 0, index 0) = [0, n); node (j, i) =
 * [lo, hi) has children (j+1, 2i) = [lo, mid) and (j+1, 2i+1) = [mid, hi),
 * mid = lo + (hi - lo) / 2. It depends on n alone, never on P.
 *
 * dt_exact_reduce_scatter is recursive halving at distances 1, 2, ..., P/2:
 * at distance 2^j a rank keeps the child of its current node selected by
 * bit j of its rank, sends the other child to its partner and adds what the
 * partner sends for the kept one. Every element is summed over the rank
 * tree, and rank r ends with node (k, bitrev_k(r)) of the partition: its
 * piece (dt_exact_piece). dt_exact_allgather is the reverse (recursive
 * doubling at distances P/2, ..., 1), pure copies. Pieces, and any quantity
 * computed per node of the partition, are independent of P.
 *
 * All messages are MPI point-to-point on a private duplicate of the world
 * communicator, every wait through the collective watchdog (comm.timeout_s).
 * SPMD: every rank calls the same operations with the same n in the same
 * order. Nothing allocates after dt_exact_create. */
#ifndef DTRAIN_REDUCE_EXACT_H
#define DTRAIN_REDUCE_EXACT_H

#include <stddef.h>

#include "dtrain/common.h"

typedef enum { DT_EXACT_FLOAT = 0, DT_EXACT_DOUBLE } dt_exact_type;

/* At most this many doubles ride along with a reduce-scatter or a
 * dt_exact_allreduce call (a few global quantities: loss sum, flags). */
#define DT_EXACT_MAX_SUMS 8

typedef struct dt_exact dt_exact;

/* Collective over MPI_COMM_WORLD. The world size must be a power of two
 * (else DT_ECONFIG; the caller checks first and words the message for the
 * user). max_bytes: the largest vector (n * element size) any operation
 * will see. DT_EINTERNAL when out of memory or max_bytes is too large for
 * MPI counts. */
dt_status dt_exact_create(size_t max_bytes, dt_exact **out, dt_error *err);
/* Collective (frees the communicator). NULL is fine. */
void dt_exact_free(dt_exact *x);

int dt_exact_world(const dt_exact *x);
int dt_exact_log2_world(const dt_exact *x);

/* Node (depth, index) of the partition of [0, n): [*lo, *hi) (index <
 * 2^depth; nodes below a 1-element node are empty). */
void dt_exact_node(size_t n, int depth, size_t index, size_t *lo, size_t *hi);
/* The piece of world rank `rank` (node (log2 P, bitrev(rank))). */
void dt_exact_piece_of(const dt_exact *x, int rank, size_t n, size_t *lo, size_t *hi);
/* The index at depth log2 P of rank `rank`'s piece. */
size_t dt_exact_piece_index(const dt_exact *x, int rank);

/* buf[0, n): on return this rank's piece holds the sum over the rank tree;
 * the rest of buf is scratch (unspecified). sums[0, n_sums) (may be NULL
 * when n_sums is 0, n_sums <= DT_EXACT_MAX_SUMS) are summed over the rank
 * tree too, travelling with the halving's messages, and every rank gets
 * the totals. */
void dt_exact_reduce_scatter(dt_exact *x, dt_exact_type type, void *buf, size_t n, double *sums,
                             int n_sums);
/* Each rank's piece of buf[0, n) to every rank (pure copies). */
void dt_exact_allgather(dt_exact *x, dt_exact_type type, void *buf, size_t n);

typedef enum {
    DT_EXACT_RANK_TREE = 0, /* v of rank r: the node over rank group {r} */
    DT_EXACT_PIECE_TREE     /* v of rank r: the partition node of its piece */
} dt_exact_order;
/* Every rank gets the sum of v[0, n) (n <= DT_EXACT_MAX_SUMS) over the tree
 * `order` names: the rank tree (distances 1, 2, ..., P/2), or the
 * partition's tree above the pieces (distances P/2, ..., 1). */
void dt_exact_allreduce(dt_exact *x, dt_exact_order order, double *v, int n);

/* T over v[0, count), count a power of two (or 0: the sum is 0). */
double dt_exact_tree_sum(const double *v, size_t count);

#endif
