/* main.c - the command line of dtrain; everything else is in the library.
 *
 *   mpirun -np N dtrain [--set KEY=VALUE]... [--resume latest|PATH] [--check]
 *                       [--print-config] [--] CONFIG.yaml
 *   mpirun -np N dtrain --evaluate latest|PATH [-o FILE] [--set ...] CONFIG.yaml
 *   dtrain --export latest|PATH [-o FILE] [--set ...] CONFIG.yaml
 *   dtrain --help | --version
 *
 * getopt_long parses, with the GNU conventions users expect: --opt VALUE and
 * --opt=VALUE, options before or after the config file, unambiguous
 * prefixes (--print), and `--` ending the options. getopt's own messages are
 * off (opterr = 0): dtrain words every error itself, on one line, and exits
 * with 2. argv is the same on every rank, so every rank reaches the same
 * verdict without a collective; only rank 0 prints.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "dtrain/comm.h"
#include "dtrain/config.h"
#include "dtrain/runtime.h"
#include "dtrain/train.h"
#include "dtrain/version.h"

#define MAX_SETS 256

static const char usage[] =
    "usage: dtrain [--set KEY=VALUE]... [--resume latest|PATH] [--check] [--print-config]\n"
    "              [--] CONFIG.yaml\n"
    "       dtrain --export latest|PATH [-o FILE] [--set KEY=VALUE]... CONFIG.yaml\n"
    "       dtrain --evaluate latest|PATH [-o FILE] [--set KEY=VALUE]... CONFIG.yaml\n"
    "       dtrain --help | --version\n"
    "  --set KEY=VALUE  override a config key (VALUE is YAML), e.g. --set optimizer.lr=0.05\n"
    "                   (also --set=KEY=VALUE)\n"
    "  --resume latest  continue from the newest usable checkpoint in checkpoint.dir\n"
    "  --resume PATH    continue from that checkpoint file\n"
    "  --check          validate the config and the data files, print the plan, exit\n"
    "  --print-config   print the resolved configuration (every default filled in), exit\n"
    "  --export PATH    write the weights of a checkpoint as safetensors (PyTorch), exit;\n"
    "                   PATH: a checkpoint file, a folder of checkpoints or a run.out_dir\n"
    "                   (its newest usable one), or latest (checkpoint.dir); no training\n"
    "                   data is read; default output run.out_dir/model.safetensors\n"
    "  --evaluate PATH  evaluate a checkpoint (as for --export) or a .safetensors file on\n"
    "                   the test set: loss, accuracy, per-class accuracy, confusion matrix;\n"
    "                   default output run.out_dir/evaluate/summary.json\n"
    "  -o, --output FILE  the file --export or --evaluate writes\n"
    "  -h, --help       this text\n"
    "  -V, --version    version, git commit, OpenBLAS core and MPI library, exit\n"
    "  --               end of options (for a config file whose name starts with '-')\n"
    "Run under MPI: mpirun -np 4 dtrain configs/fashion_mnist_mlp.yaml\n"
    "Exit status: 0 done, 2 bad command line or config, 3 bad data or checkpoint,\n"
    "4 diverged, 5 stopped by SIGTERM/SIGUSR1 after writing a checkpoint, 1 other.\n";

/* getopt_long's codes for the long-only options: above any char, so that a
 * '?' carrying one of them can only mean "this option was given a value". */
enum { OPT_SET = 256, OPT_RESUME, OPT_CHECK, OPT_PRINT_CONFIG, OPT_EXPORT, OPT_EVALUATE };

static const struct option long_options[] = {
    {"set", required_argument, NULL, OPT_SET},
    {"resume", required_argument, NULL, OPT_RESUME},
    {"check", no_argument, NULL, OPT_CHECK},
    {"print-config", no_argument, NULL, OPT_PRINT_CONFIG},
    {"export", required_argument, NULL, OPT_EXPORT},
    {"evaluate", required_argument, NULL, OPT_EVALUATE},
    {"output", required_argument, NULL, 'o'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};
/* ':' first: a missing value returns ':' rather than '?' (and, like
 * opterr = 0, keeps getopt from printing). */
static const char short_options[] = ":hVo:";

typedef struct {
    dt_run_options run;
    const char *sets[MAX_SETS];
    int help, version;
} cli;

/* The long option `word` ("--name" or "--name=value") as "--name", for
 * messages; a prefix the user typed stays as typed. */
static const char *option_name(const char *word, char *buf, size_t size)
{
    size_t len = strcspn(word, "=");
    snprintf(buf, size, "%.*s", (int)len, word);
    return buf;
}

/* The value of an option given as the next word, when that word is
 * another option: `dtrain --resume --check x.yaml` means a forgotten value,
 * not a checkpoint named "--check". (A value that really starts with "--"
 * can be given as --resume=--odd or ./--odd.) */
static int value_is_missing(const char *value, char **argv)
{
    int separate_word = value == argv[optind - 1];
    return separate_word && strncmp(value, "--", 2) == 0;
}

static dt_status missing_value(int option, dt_error *err)
{
    switch (option) {
    case OPT_SET: return dt_fail(err, DT_ECONFIG, "--set needs KEY=VALUE (see dtrain --help)");
    case OPT_EXPORT:
        return dt_fail(err, DT_ECONFIG, "--export needs 'latest' or a path (see dtrain --help)");
    case OPT_EVALUATE:
        return dt_fail(err, DT_ECONFIG, "--evaluate needs 'latest' or a path (see dtrain --help)");
    case 'o': return dt_fail(err, DT_ECONFIG, "--output needs a file name (see dtrain --help)");
    default:
        return dt_fail(err, DT_ECONFIG, "--resume needs 'latest' or a path (see dtrain --help)");
    }
}

/* --export and --evaluate read the weights they are given and do not
 * train: they exclude each other and the options of a training run. */
static dt_status check_modes(const cli *c, dt_error *err)
{
    const dt_run_options *r = &c->run;
    const char *mode = r->export_from ? "--export" : r->evaluate ? "--evaluate" : NULL;
    if (r->export_from && r->evaluate)
        return dt_fail(err, DT_ECONFIG, "--export and --evaluate exclude each other");
    if (mode && r->resume)
        return dt_fail(err, DT_ECONFIG, "%s and --resume exclude each other (%s reads the "
                       "weights it is given)", mode, mode);
    if (mode && r->check_only)
        return dt_fail(err, DT_ECONFIG, "%s and --check exclude each other", mode);
    if (r->output && !mode)
        return dt_fail(err, DT_ECONFIG, "--output goes with --export or --evaluate");
    return DT_OK;
}

/* The '?' of getopt_long: an unknown option, or a value given to an option
 * that takes none. */
static dt_status bad_option(char **argv, dt_error *err)
{
    char name[128];
    if (optopt == 0) /* an unknown long option; getopt has stepped past its word */
        return dt_fail(err, DT_ECONFIG, "unknown option '%s' (see dtrain --help)",
                       option_name(argv[optind - 1], name, sizeof name));
    if (optopt == 'h' || optopt == 'V' || optopt >= OPT_SET) /* -h, -V never fail */
        return dt_fail(err, DT_ECONFIG, "option '%s' takes no value (see dtrain --help)",
                       option_name(argv[optind - 1], name, sizeof name));
    return dt_fail(err, DT_ECONFIG, "unknown option '-%c' (see dtrain --help)", optopt);
}

static dt_status parse_args(int argc, char **argv, cli *c, dt_error *err)
{
    memset(c, 0, sizeof *c);
    opterr = 0;
    optind = 1;
    int opt;
    while ((opt = getopt_long(argc, argv, short_options, long_options, NULL)) != -1) {
        switch (opt) {
        case 'h': c->help = 1; break;
        case 'V': c->version = 1; break;
        case OPT_CHECK: c->run.check_only = true; break;
        case OPT_PRINT_CONFIG: c->run.print_config = true; break;
        case OPT_SET:
            if (value_is_missing(optarg, argv)) return missing_value(OPT_SET, err);
            if (c->run.n_sets == MAX_SETS)
                return dt_fail(err, DT_ECONFIG, "too many --set options (at most %d)", MAX_SETS);
            c->sets[c->run.n_sets++] = optarg;
            break;
        case OPT_RESUME:
            if (!*optarg || value_is_missing(optarg, argv)) return missing_value(OPT_RESUME, err);
            c->run.resume = optarg;
            break;
        case OPT_EXPORT:
        case OPT_EVALUATE:
        case 'o':
            if (!*optarg || value_is_missing(optarg, argv)) return missing_value(opt, err);
            if (opt == OPT_EXPORT) c->run.export_from = optarg;
            else if (opt == OPT_EVALUATE) c->run.evaluate = optarg;
            else c->run.output = optarg;
            break;
        case ':': return missing_value(optopt, err);
        default: return bad_option(argv, err);
        }
    }
    /* getopt has moved every operand behind the options (and past `--`). */
    for (int i = optind; i < argc; i++) {
        if (c->run.config_path)
            return dt_fail(err, DT_ECONFIG, "more than one config file: '%s' and '%s'",
                           c->run.config_path, argv[i]);
        c->run.config_path = argv[i];
    }
    if (!c->help && !c->version && !c->run.config_path)
        return dt_fail(err, DT_ECONFIG, "no config file given (see dtrain --help)");
    dt_status st = check_modes(c, err);
    if (st) return st;
    c->run.sets = c->sets;
    return DT_OK;
}

/* The facts that identify this binary and the libraries it runs on; the
 * same keys as in summary.json. */
static void print_version(void)
{
    printf("dtrain %s\n", dt_version());
    printf("git_commit: %s\n", dt_git_commit());
    printf("blas_core: %s\n", dt_runtime_blas_core());
    printf("mpi_library: %s\n", dt_comm_mpi_library());
}

int main(int argc, char **argv)
{
    dt_runtime_fix_blas_kernel(argv); /* may re-exec: before MPI starts */
    dt_comm comm;
    dt_status started = dt_comm_init(&argc, &argv, &comm);
    if (started == DT_EINTERNAL) {
        fprintf(stderr, "dtrain: cannot start MPI\n");
        return DT_EINTERNAL;
    }
    if (started != DT_OK) { /* MPI runs; a setting of the simulator is wrong (said) */
        dt_comm_finalize();
        return (int)started;
    }
    cli c;
    dt_error err = {0};
    dt_status st = parse_args(argc, argv, &c, &err);
    if (st != DT_OK) {
        if (comm.rank == 0) fprintf(stderr, "dtrain: %s\n", err.msg);
    } else if (c.help) {
        if (comm.rank == 0) fputs(usage, stdout);
    } else if (c.version) {
        if (comm.rank == 0) print_version();
    } else {
        st = dt_train_run(&comm, &c.run);
    }
    fflush(stdout);
    dt_comm_finalize();
    return (int)st;
}
