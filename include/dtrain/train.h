/* train.h - one training run: the loop that wires config, data, nn, optim,
 * sched, comm and metrics together, plus evaluation and timing.
 *
 * Every rank calls dt_train_run with the same options; each returns the
 * same exit status (common.h's dt_status): 0 done, 2 bad configuration, 3
 * bad data or checkpoint, 4 diverged under nonfinite: abort, 5 stopped by a
 * signal, 6 a collective timed out (comm.timeout_s; the job is aborted), 1
 * anything else. A run that ends writes out_dir/model.safetensors (the
 * weights in PyTorch's safetensors format) before summary.json. Only rank 0 prints (the error line on stderr, progress on
 * stdout) and writes files.
 *
 * SIGTERM or SIGUSR1 (Slurm's --signal) asks for a stop: the ranks agree at
 * the next update boundary through a flag carried by the gradient
 * allreduce, rank 0 writes a checkpoint, and every rank returns
 * DT_EPREEMPTED (exit 5) so that a batch script can requeue the job and
 * resume with --resume latest. */
#ifndef DTRAIN_TRAIN_H
#define DTRAIN_TRAIN_H

#include <stdbool.h>

#include "dtrain/comm.h"
#include "dtrain/common.h"

typedef struct {
    const char *config_path;
    const char *const *sets; /* "--set" KEY=VALUE strings, in order */
    int n_sets;
    bool check_only;         /* validate config + data, print the plan, exit */
    bool print_config;       /* print the resolved config, exit */
    const char *resume;      /* "latest", a checkpoint path, or NULL */
    /* Instead of training (each "latest", a checkpoint or a folder of them,
     * or a safetensors file; NULL = not asked): */
    const char *export_from; /* write its weights as safetensors, exit */
    const char *evaluate;    /* evaluate its weights on the test set, exit */
    const char *output;      /* the file --export / --evaluate writes; NULL =
                              * out_dir/model.safetensors, out_dir/evaluate/summary.json */
} dt_run_options;

dt_status dt_train_run(const dt_comm *comm, const dt_run_options *opt);

#endif
