/* golden_conv.c - checker for kind: conv reference files (not implemented yet). */
#include <stdio.h>

#include "refparse.h"

int golden_check_conv(const ref_file *f, double *worst, char *why, size_t why_size)
{
    (void)f;
    *worst = 0;
    snprintf(why, why_size, "kind 'conv' is not implemented yet");
    return 1;
}
