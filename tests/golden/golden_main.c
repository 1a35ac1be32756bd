/* test_golden - reproduce every reference file in a directory.
 *
 *   test_golden [DIR]     (default: the copy in tests/reference)
 *
 * Reads every *.txt below DIR (one level of sub-folders too, so the
 * reference/ layout with optim/, sched/, mlp/, conv/ works as it is),
 * dispatches on the `kind:` header and prints one line per file:
 *   PASS mlp/mlp_relu_6_5_4_3.txt  worst 0.031
 * Exits non-zero if any file fails or cannot be parsed; a kind without a
 * checker is a FAIL, never a skip. Every kind that has a checker must also
 * have at least one file that passes: a deleted or emptied sub-folder (say
 * conv/) would otherwise leave that code silently unchecked. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "refparse.h"

#ifndef DT_REFERENCE_DIR
#define DT_REFERENCE_DIR "tests/reference"
#endif

static const struct {
    const char *kind;
    ref_checker check;
} checkers[] = {
    {"mlp", golden_check_mlp},
    {"conv", golden_check_conv},
    {"optim", golden_check_optim},
    {"sched", golden_check_sched},
    {"average", golden_check_average},
};
#define N_CHECKERS (sizeof checkers / sizeof checkers[0])
static int passed_of_kind[N_CHECKERS]; /* files of each kind that passed */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Collect *.txt files of dir and of its direct sub-folders. */
static void collect(const char *dir, int depth, char ***paths, int *n)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0) continue;
        if (S_ISDIR(st.st_mode) && depth == 0) {
            collect(path, 1, paths, n);
        } else if (S_ISREG(st.st_mode)) {
            size_t len = strlen(e->d_name);
            if (len > 4 && strcmp(e->d_name + len - 4, ".txt") == 0) {
                char **grown = realloc(*paths, (size_t)(*n + 1) * sizeof **paths);
                if (!grown) continue;
                *paths = grown;
                (*paths)[(*n)++] = strdup(path);
            }
        }
    }
    closedir(d);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : DT_REFERENCE_DIR;
    char **paths = NULL;
    int n = 0, failed = 0;
    collect(dir, 0, &paths, &n);
    if (n == 0) {
        fprintf(stderr, "test_golden: no *.txt reference files in %s\n", dir);
        return 1;
    }
    qsort(paths, (size_t)n, sizeof *paths, cmp_str);
    for (int i = 0; i < n; i++) {
        const char *shown = paths[i] + strlen(dir) + 1;
        ref_file f;
        char why[512] = "";
        double worst = 0;
        int rc;
        if (ref_load(paths[i], &f, why, sizeof why) != 0) {
            rc = -1;
        } else {
            const char *kind = ref_header(&f, "kind");
            size_t k = 0;
            while (k < N_CHECKERS && strcmp(checkers[k].kind, kind) != 0) k++;
            if (k == N_CHECKERS) {
                snprintf(why, sizeof why, "unknown kind '%s'", kind);
                rc = -1;
            } else {
                rc = checkers[k].check(&f, &worst, why, sizeof why);
                if (rc == 0) passed_of_kind[k]++;
            }
            ref_free(&f);
        }
        if (rc == 0) {
            printf("PASS %s  worst %.3g\n", shown, worst);
        } else {
            failed++;
            printf("FAIL %s  worst %.3g  %s%s\n", shown, worst,
                   rc < 0 ? "cannot check: " : "", why);
        }
        free(paths[i]);
    }
    free(paths);
    printf("%d files, %d passed, %d failed\n", n, n - failed, failed);
    int missing = 0;
    for (size_t k = 0; k < N_CHECKERS; k++) {
        if (passed_of_kind[k] == 0) {
            printf("FAIL kind %s: no reference file of this kind passed (none found in %s?)\n",
                   checkers[k].kind, dir);
            missing++;
        }
    }
    return failed || missing ? 1 : 0;
}
