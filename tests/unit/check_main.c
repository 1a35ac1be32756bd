/* check_main.c - the shared runner of the Check suites (see check_main.h). */
#include "check_main.h"

#include <stdio.h>
#include <stdlib.h>

int dt_check_run(Suite *suite)
{
    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

int dt_check_skip(const char *why)
{
    printf("SKIP: %s\n", why);
    fflush(stdout);
    return DT_CHECK_SKIP;
}
