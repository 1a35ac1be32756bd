/* golden_mlp.c - checker for kind: mlp reference files (not implemented yet). */
#include <stdio.h>

#include "refparse.h"

int golden_check_mlp(const ref_file *f, double *worst, char *why, size_t why_size)
{
    (void)f;
    *worst = 0;
    snprintf(why, why_size, "kind 'mlp' is not implemented yet");
    return 1;
}
