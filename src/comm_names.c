/* comm_names.c - the words of the comm module's choices (comm.update,
 * comm.allreduce, comm.dtype) and of its operations. Apart from the MPI
 * code, so that the config module can name them without linking MPI. */
#include <string.h>

#include "dtrain/exchange.h"
#include "dtrain/reduce.h"

static const char *const algo_names[DT_REDUCE_ALGO_COUNT] = {"auto", "mpi", "hierarchical"};
static const char *const dtype_names[DT_REDUCE_DTYPE_COUNT] = {"float32", "bfloat16"};
static const char *const op_names[DT_REDUCE_OP_COUNT] = {"allreduce", "reduce_scatter",
                                                         "allgather"};

int dt_reduce_algo_from_name(const char *name, dt_reduce_algo *out)
{
    for (int i = 0; name && i < DT_REDUCE_ALGO_COUNT; i++)
        if (!strcmp(name, algo_names[i])) {
            *out = (dt_reduce_algo)i;
            return 0;
        }
    return -1;
}

const char *dt_reduce_algo_name(dt_reduce_algo algo)
{
    return (unsigned)algo < DT_REDUCE_ALGO_COUNT ? algo_names[algo] : NULL;
}

int dt_reduce_dtype_from_name(const char *name, dt_reduce_dtype *out)
{
    for (int i = 0; name && i < DT_REDUCE_DTYPE_COUNT; i++)
        if (!strcmp(name, dtype_names[i])) {
            *out = (dt_reduce_dtype)i;
            return 0;
        }
    return -1;
}

const char *dt_reduce_dtype_name(dt_reduce_dtype dtype)
{
    return (unsigned)dtype < DT_REDUCE_DTYPE_COUNT ? dtype_names[dtype] : NULL;
}

const char *dt_reduce_op_name(dt_reduce_op op)
{
    return (unsigned)op < DT_REDUCE_OP_COUNT ? op_names[op] : NULL;
}

static const char *const update_names[DT_UPDATE_MODE_COUNT] = {
    [DT_UPDATE_REPLICATED] = "replicated",
    [DT_UPDATE_SHARDED] = "sharded",
};

int dt_update_mode_from_name(const char *name, dt_update_mode *out)
{
    for (int i = 0; i < DT_UPDATE_MODE_COUNT; i++)
        if (strcmp(name, update_names[i]) == 0) {
            *out = (dt_update_mode)i;
            return 0;
        }
    return -1;
}

const char *dt_update_mode_name(dt_update_mode mode)
{
    return (unsigned)mode < DT_UPDATE_MODE_COUNT ? update_names[mode] : NULL;
}
