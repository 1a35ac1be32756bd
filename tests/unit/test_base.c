/* test_base.c - Check suite for common.c (errors, allocator, FNV-1a) and
 * rng.c (the counter-based generator). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "dtrain/common.h"
#include "dtrain/rng.h"

START_TEST(test_fail_formats_and_returns_code)
{
    dt_error err = {0};
    dt_status st = dt_fail(&err, DT_ECONFIG, "%s:%d: bad %s", "x.yaml", 3, "key");
    ck_assert_int_eq(st, DT_ECONFIG);
    ck_assert_int_eq(err.code, DT_ECONFIG);
    ck_assert_str_eq(err.msg, "x.yaml:3: bad key");
    ck_assert_int_eq(dt_fail(NULL, DT_EDATA, "ignored"), DT_EDATA);
}
END_TEST

START_TEST(test_alloc_counts_and_aligns)
{
    uint64_t before = dt_alloc_count();
    float *a = dt_alloc_aligned(1000 * sizeof(float));
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq((uintptr_t)a % 64, 0);
    for (int i = 0; i < 1000; i++) ck_assert(a[i] == 0.0f); /* zeroed */
    char *s = dt_strdup("dtrain");
    ck_assert_str_eq(s, "dtrain");
    void *p = dt_malloc(10);
    ck_assert_uint_eq(dt_alloc_count() - before, 3);
    dt_free(a);
    dt_free(s);
    dt_free(p);
    ck_assert_uint_eq(dt_alloc_count() - before, 3); /* frees do not count */
}
END_TEST

START_TEST(test_fnv1a_known_values)
{
    /* Published FNV-1a 64 test vectors. */
    ck_assert_uint_eq(dt_fnv1a64(DT_FNV_INIT, "", 0), UINT64_C(0xcbf29ce484222325));
    ck_assert_uint_eq(dt_fnv1a64(DT_FNV_INIT, "a", 1), UINT64_C(0xaf63dc4c8601ec8c));
    ck_assert_uint_eq(dt_fnv1a64(DT_FNV_INIT, "foobar", 6), UINT64_C(0x85944171f73967e8));
    /* chaining equals hashing the concatenation */
    uint64_t h = dt_fnv1a64(dt_fnv1a64(DT_FNV_INIT, "foo", 3), "bar", 3);
    ck_assert_uint_eq(h, UINT64_C(0x85944171f73967e8));
}
END_TEST

START_TEST(test_rng_is_a_pure_function)
{
    ck_assert_uint_eq(dt_rand_u64(1, 2, 3), dt_rand_u64(1, 2, 3));
    ck_assert_uint_ne(dt_rand_u64(1, 2, 3), dt_rand_u64(1, 2, 4));
    ck_assert_uint_ne(dt_rand_u64(1, 2, 3), dt_rand_u64(2, 2, 3));
    ck_assert_uint_ne(dt_rand_u64(1, 2, 3), dt_rand_u64(1, 3, 3));
}
END_TEST

START_TEST(test_rng_uniform_and_normal_moments)
{
    const int n = 200000;
    double sum = 0, sum2 = 0, nsum = 0, nsum2 = 0;
    for (int i = 0; i < n; i++) {
        double u = dt_rand_uniform(7, 1, (uint64_t)i);
        ck_assert(u >= 0 && u < 1);
        sum += u;
        sum2 += u * u;
        double z = dt_rand_normal(7, 2, (uint64_t)i);
        nsum += z;
        nsum2 += z * z;
    }
    double mean = sum / n, var = sum2 / n - mean * mean;
    ck_assert_double_eq_tol(mean, 0.5, 0.005);
    ck_assert_double_eq_tol(var, 1.0 / 12, 0.002);
    ck_assert_double_eq_tol(nsum / n, 0.0, 0.01);
    ck_assert_double_eq_tol(nsum2 / n, 1.0, 0.02);
}
END_TEST

START_TEST(test_rng_below_is_in_range_and_uniform)
{
    int counts[7] = {0};
    for (int i = 0; i < 70000; i++) {
        uint64_t v = dt_rand_below(3, 1, (uint64_t)i, 7);
        ck_assert_uint_lt(v, 7);
        counts[v]++;
    }
    for (int k = 0; k < 7; k++) {
        ck_assert_int_gt(counts[k], 9500);
        ck_assert_int_lt(counts[k], 10500);
    }
    ck_assert_uint_eq(dt_rand_below(3, 1, 5, 1), 0);
}
END_TEST

static Suite *base_suite(void)
{
    Suite *s = suite_create("base");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_fail_formats_and_returns_code);
    tcase_add_test(tc, test_alloc_counts_and_aligns);
    tcase_add_test(tc, test_fnv1a_known_values);
    tcase_add_test(tc, test_rng_is_a_pure_function);
    tcase_add_test(tc, test_rng_uniform_and_normal_moments);
    tcase_add_test(tc, test_rng_below_is_in_range_and_uniform);
    suite_add_tcase(s, tc);
    return s;
}

DT_CHECK_MAIN(base_suite)
