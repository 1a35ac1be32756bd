/* check_main.h - what every Check suite of tests/unit/ does in its main:
 * run the suite, report, and turn the verdict into an exit status that
 * ctest understands (0 passed, 1 failed, DT_CHECK_SKIP skipped).
 *
 * A test program with nothing to set up around its suite is one line:
 *     DT_CHECK_MAIN(config_suite)
 * One that needs a folder or a precondition calls dt_check_run itself. */
#ifndef DT_TESTS_CHECK_MAIN_H
#define DT_TESTS_CHECK_MAIN_H

#include <check.h>

/* The status ctest reports as "skipped" (SKIP_RETURN_CODE in CMake). */
#define DT_CHECK_SKIP 77

/* Runs every test of `suite` (honouring Check's CK_RUN_CASE,
 * CK_EXCLUDE_CASE, ... variables), frees it; EXIT_SUCCESS when none failed,
 * else EXIT_FAILURE. */
int dt_check_run(Suite *suite);

/* Prints "SKIP: <why>" and returns DT_CHECK_SKIP, for a main to return when
 * what the selected tests need is not on this machine. */
int dt_check_skip(const char *why);

/* rm -rf path (a test's folder; made writable first). */
void dt_check_rm_rf(const char *path);

#define DT_CHECK_MAIN(make_suite) \
    int main(void) { return dt_check_run(make_suite()); }

#endif
