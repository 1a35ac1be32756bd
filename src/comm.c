/* comm.c - MPI start-up, the agreed verdict, allreduce, replica checks. */
#include "dtrain/comm.h"

#include <mpi.h>
#include <string.h>

static void mpi_abort_hook(void) { MPI_Abort(MPI_COMM_WORLD, 1); }

dt_status dt_comm_init(int *argc, char ***argv, dt_comm *c)
{
    int provided;
    memset(c, 0, sizeof *c);
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return DT_EINTERNAL;
    /* Errors in MPI calls are bugs or dead peers: abort the job rather than
     * return codes nobody can act on (the default, stated explicitly). */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->world);

    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &c->local_rank);
    MPI_Comm_size(node, &c->local_size);
    MPI_Comm_free(&node);
    /* nodes = number of ranks that are local rank 0 */
    int leader = c->local_rank == 0;
    MPI_Allreduce(&leader, &c->nodes, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);

    dt_set_log_rank(c->rank);
    dt_set_abort_hook(mpi_abort_hook);
    return DT_OK;
}

void dt_comm_finalize(void)
{
    int done = 0;
    MPI_Finalized(&done);
    if (!done) MPI_Finalize();
}

dt_status dt_comm_agree(const dt_comm *c, dt_status local, dt_error *err)
{
    /* Lowest failing rank wins: a MIN over (failed ? rank : world). */
    int mine = local != DT_OK ? c->rank : c->world, first;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (first == c->world) return DT_OK;
    struct {
        int code;
        char msg[DT_ERRMSG_MAX];
    } verdict = {0};
    if (c->rank == first) {
        verdict.code = (int)local;
        memcpy(verdict.msg, err->msg, sizeof verdict.msg);
    }
    MPI_Bcast(&verdict, (int)sizeof verdict, MPI_BYTE, first, MPI_COMM_WORLD);
    err->code = (dt_status)verdict.code;
    memcpy(err->msg, verdict.msg, sizeof err->msg);
    err->msg[sizeof err->msg - 1] = 0;
    return err->code;
}

/* MPI counts are int: split very large buffers. */
static void allreduce_chunks(void *buf, size_t n, MPI_Datatype type, size_t elem)
{
    const size_t chunk = (size_t)1 << 30;
    for (size_t off = 0; off < n; off += chunk) {
        size_t count = DT_MIN(chunk, n - off);
        MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * elem, (int)count, type, MPI_SUM,
                      MPI_COMM_WORLD);
    }
}

void dt_comm_allreduce_sum(float *buf, size_t n)
{
    allreduce_chunks(buf, n, MPI_FLOAT, sizeof(float));
}

void dt_comm_allreduce_sum_d(double *buf, size_t n)
{
    allreduce_chunks(buf, n, MPI_DOUBLE, sizeof(double));
}

void dt_comm_bcast(void *buf, size_t bytes, int root)
{
    const size_t chunk = (size_t)1 << 30;
    for (size_t off = 0; off < bytes; off += chunk)
        MPI_Bcast((char *)buf + off, (int)DT_MIN(chunk, bytes - off), MPI_BYTE, root,
                  MPI_COMM_WORLD);
}

int dt_comm_all_equal_u64(uint64_t value)
{
    uint64_t mm[2] = {value, ~value}, out[2];
    /* max of v and max of ~v (= ~min v) in one call */
    MPI_Allreduce(mm, out, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    return out[0] == ~out[1];
}

void dt_comm_barrier(void) { MPI_Barrier(MPI_COMM_WORLD); }
double dt_comm_time(void) { return MPI_Wtime(); }
