/* test_runtime.c - Check suite for runtime.c's choice of BLAS kernel: which
 * OpenBLAS cores dtrain replaces (by re-executing itself) and with what.
 * The re-exec itself, on this machine's CPU: tests/mpi/reexec.sh. */
#include <check.h>

#include "check_main.h"
#include "dtrain/runtime.h"

START_TEST(test_fallback_cores_are_replaced)
{
    /* Sapphire Rapids under OpenBLAS 0.3.21: Prescott */
    ck_assert_str_eq(dt_runtime_better_core("Prescott", "SkylakeX"), "SkylakeX");
    ck_assert_str_eq(dt_runtime_better_core("Nehalem", "Haswell"), "Haswell");
    ck_assert_str_eq(dt_runtime_better_core("Unknown", "SkylakeX"), "SkylakeX");
    ck_assert_str_eq(dt_runtime_better_core("Sandybridge", "Haswell"), "Haswell");
}
END_TEST

START_TEST(test_avx2_core_on_avx512_cpu_is_replaced)
{
    /* an AVX2 core on an AVX-512 CPU (Zen 4, Zen 5, Sapphire Rapids) */
    ck_assert_str_eq(dt_runtime_better_core("Haswell", "SkylakeX"), "SkylakeX");
    ck_assert_str_eq(dt_runtime_better_core("Zen", "SkylakeX"), "SkylakeX");
}
END_TEST

START_TEST(test_a_core_as_good_is_kept)
{
    ck_assert_ptr_null(dt_runtime_better_core("SkylakeX", "SkylakeX"));
    ck_assert_ptr_null(dt_runtime_better_core("Cooperlake", "SkylakeX")); /* Zen 4 */
    ck_assert_ptr_null(dt_runtime_better_core("SapphireRapids", "SkylakeX"));
    ck_assert_ptr_null(dt_runtime_better_core("Zen", "Haswell")); /* Zen 2, 3 */
    ck_assert_ptr_null(dt_runtime_better_core("SkylakeX", "Haswell"));
}
END_TEST

START_TEST(test_unknown_names_and_no_best_are_kept)
{
    ck_assert_ptr_null(dt_runtime_better_core("Prescott", NULL)); /* no AVX2 */
    ck_assert_ptr_null(dt_runtime_better_core(NULL, "SkylakeX"));
    ck_assert_ptr_null(dt_runtime_better_core("NEOVERSEN1", "SkylakeX"));
    ck_assert_ptr_null(dt_runtime_better_core("Haswell", "SomeFutureCore"));
}
END_TEST

static Suite *runtime_suite(void)
{
    Suite *s = suite_create("runtime");
    TCase *tc = tcase_create("blas_core");
    tcase_add_test(tc, test_fallback_cores_are_replaced);
    tcase_add_test(tc, test_avx2_core_on_avx512_cpu_is_replaced);
    tcase_add_test(tc, test_a_core_as_good_is_kept);
    tcase_add_test(tc, test_unknown_names_and_no_best_are_kept);
    suite_add_tcase(s, tc);
    return s;
}

DT_CHECK_MAIN(runtime_suite)
