/* main.c - the command line of dtrain; everything else is in the library.
 *
 *   mpirun -np N dtrain [--set KEY=VALUE]... [--resume latest|PATH] [--check]
 *                       [--print-config] CONFIG.yaml
 */
#include <stdio.h>
#include <string.h>

#include "dtrain/comm.h"
#include "dtrain/config.h"
#include "dtrain/runtime.h"
#include "dtrain/train.h"

#define MAX_SETS 256

static const char usage[] =
    "usage: dtrain [--set KEY=VALUE]... [--resume latest|PATH] [--check] [--print-config]\n"
    "              CONFIG.yaml\n"
    "  --set KEY=VALUE  override a config key (VALUE is YAML), e.g. --set optimizer.lr=0.05\n"
    "  --resume latest  continue from the newest usable checkpoint in checkpoint.dir\n"
    "  --resume PATH    continue from that checkpoint file\n"
    "  --check          validate the config and the data files, print the plan, exit\n"
    "  --print-config   print the resolved configuration (every default filled in), exit\n"
    "  --help           this text\n"
    "Run under MPI: mpirun -np 4 dtrain configs/fashion_mnist_mlp.yaml\n"
    "Exit status: 0 done, 2 bad command line or config, 3 bad data or checkpoint,\n"
    "4 diverged, 5 stopped by SIGTERM/SIGUSR1 after writing a checkpoint, 1 other.\n";

typedef struct {
    dt_run_options run;
    const char *sets[MAX_SETS];
    int help;
} cli;

/* Same argv on every rank, so every rank reaches the same verdict. */
static dt_status parse_args(int argc, char **argv, cli *c, dt_error *err)
{
    memset(c, 0, sizeof *c);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            c->help = 1;
        } else if (strcmp(a, "--check") == 0) {
            c->run.check_only = true;
        } else if (strcmp(a, "--print-config") == 0) {
            c->run.print_config = true;
        } else if (strcmp(a, "--set") == 0 || strncmp(a, "--set=", 6) == 0) {
            const char *kv = a[5] == '=' ? a + 6 : (i + 1 < argc ? argv[++i] : NULL);
            if (!kv) return dt_fail(err, DT_ECONFIG, "--set needs KEY=VALUE");
            if (c->run.n_sets == MAX_SETS)
                return dt_fail(err, DT_ECONFIG, "too many --set options (at most %d)", MAX_SETS);
            c->sets[c->run.n_sets++] = kv;
        } else if (strcmp(a, "--resume") == 0 || strncmp(a, "--resume=", 9) == 0) {
            const char *what = a[8] == '=' ? a + 9 : (i + 1 < argc ? argv[++i] : NULL);
            if (!what || !*what) return dt_fail(err, DT_ECONFIG, "--resume needs 'latest' or a path");
            c->run.resume = what;
        } else if (a[0] == '-' && a[1] != 0) {
            return dt_fail(err, DT_ECONFIG, "unknown option '%s' (see dtrain --help)", a);
        } else if (c->run.config_path) {
            return dt_fail(err, DT_ECONFIG, "more than one config file: '%s' and '%s'",
                           c->run.config_path, a);
        } else {
            c->run.config_path = a;
        }
    }
    if (!c->help && !c->run.config_path)
        return dt_fail(err, DT_ECONFIG, "no config file given (see dtrain --help)");
    c->run.sets = c->sets;
    return DT_OK;
}

int main(int argc, char **argv)
{
    dt_runtime_fix_blas_kernel(argv); /* may re-exec: before MPI starts */
    dt_comm comm;
    if (dt_comm_init(&argc, &argv, &comm) != DT_OK) {
        fprintf(stderr, "dtrain: cannot start MPI\n");
        return DT_EINTERNAL;
    }
    cli c;
    dt_error err = {0};
    dt_status st = parse_args(argc, argv, &c, &err);
    if (st != DT_OK) {
        if (comm.rank == 0) fprintf(stderr, "dtrain: %s\n", err.msg);
    } else if (c.help) {
        if (comm.rank == 0) fputs(usage, stdout);
    } else {
        st = dt_train_run(&comm, &c.run);
    }
    fflush(stdout);
    dt_comm_finalize();
    return (int)st;
}
