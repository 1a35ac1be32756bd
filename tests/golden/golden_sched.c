/* golden_sched.c - checker for kind: sched reference files (not implemented yet). */
#include <stdio.h>

#include "refparse.h"

int golden_check_sched(const ref_file *f, double *worst, char *why, size_t why_size)
{
    (void)f;
    *worst = 0;
    snprintf(why, why_size, "kind 'sched' is not implemented yet");
    return 1;
}
