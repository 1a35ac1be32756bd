/* leaf_stub.c - a stand-in for the compute half of reproducible mode
 * (dt_model_set_leaf and dt_model_rows_invariant of nn.h), so that the communication half builds and
 * runs before it exists. Removed when the real one is merged. */
#include "dtrain/nn.h"

dt_status dt_model_set_leaf(dt_model *m, long leaf_samples, dt_error *err)
{
    (void)m;
    (void)leaf_samples;
    (void)err;
    return DT_OK;
}

bool dt_model_rows_invariant(dt_model *m)
{
    (void)m;
    return true;
}
