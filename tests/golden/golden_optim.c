/* golden_optim.c - checker for kind: optim reference files (not implemented yet). */
#include <stdio.h>

#include "refparse.h"

int golden_check_optim(const ref_file *f, double *worst, char *why, size_t why_size)
{
    (void)f;
    *worst = 0;
    snprintf(why, why_size, "kind 'optim' is not implemented yet");
    return 1;
}
