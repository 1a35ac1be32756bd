/* test_average.c - Check suite for path averaging (average.c).
 *
 * The rules at values that can be written down (the golden files in
 * tests/reference/average/ hold torch's AveragedModel trajectories), the
 * count of averaged updates, and that averaging in pieces (a sharded
 * update) gives the bits of averaging at once. */
#include <check.h>
#include <signal.h>
#include <string.h>

#include "check_main.h"
#include "dtrain/average.h"

START_TEST(test_count)
{
    dt_average_hparams none = {DT_AVERAGE_NONE, 0.9, 0}, swa = {DT_AVERAGE_SWA, 0, 3};
    ck_assert_int_eq(dt_average_count(&none, 10), 0);
    ck_assert(!dt_average_due(&none, 10));
    ck_assert_int_eq(dt_average_count(&swa, 3), 0);
    ck_assert(!dt_average_due(&swa, 3)); /* start = updates before the first averaged one */
    ck_assert(dt_average_due(&swa, 4));
    ck_assert_int_eq(dt_average_count(&swa, 4), 1);
    ck_assert_int_eq(dt_average_count(&swa, 10), 7);
    ck_assert_str_eq(dt_average_str(DT_AVERAGE_EMA), "ema");
    ck_assert_str_eq(dt_average_str(DT_AVERAGE_COUNT), "?");
}
END_TEST

START_TEST(test_ema)
{
    dt_average_hparams hp = {DT_AVERAGE_EMA, 0.75, 0};
    float avg[2] = {123, 456}, w[2] = {4, -8};
    dt_average_update_range(&hp, avg, w, 0, 0, 2); /* the first update copies */
    ck_assert(avg[0] == 4 && avg[1] == -8);
    w[0] = 8, w[1] = 0;
    dt_average_update_range(&hp, avg, w, 1, 0, 2); /* 0.75 * a + 0.25 * w */
    ck_assert(avg[0] == 5 && avg[1] == -6);
}
END_TEST

START_TEST(test_swa)
{
    dt_average_hparams hp = {DT_AVERAGE_SWA, 0, 0};
    float avg[1] = {99}, w[1];
    const float ws[4] = {1, 2, 6, 3};
    for (int n = 0; n < 4; n++) {
        w[0] = ws[n];
        dt_average_update_range(&hp, avg, w, n, 0, 1);
    }
    ck_assert(avg[0] == 3); /* (1 + 2 + 6 + 3) / 4 */
}
END_TEST

START_TEST(test_pieces_equal_whole)
{
    enum { N = 37 };
    float w[N], a[N], b[N];
    for (int rule = DT_AVERAGE_EMA; rule <= DT_AVERAGE_SWA; rule++) {
        dt_average_hparams hp = {(dt_average_kind)rule, 0.9, 0};
        memset(a, 0, sizeof a);
        memset(b, 0, sizeof b);
        for (int t = 0; t < 5; t++) {
            for (int i = 0; i < N; i++) w[i] = (float)((i * 7 + t * 13) % 11) / 3.0f - 1.5f;
            dt_average_update_range(&hp, a, w, t, 0, N);
            dt_average_update_range(&hp, b, w, t, 20, N);
            dt_average_update_range(&hp, b, w, t, 0, 9);
            dt_average_update_range(&hp, b, w, t, 9, 20);
        }
        ck_assert(memcmp(a, b, sizeof a) == 0);
    }
}
END_TEST

START_TEST(test_none_cannot_update)
{
    dt_average_hparams hp = {DT_AVERAGE_NONE, 0, 0};
    float a[1] = {0}, w[1] = {1};
    dt_average_update_range(&hp, a, w, 1, 0, 1);
}
END_TEST

static Suite *average_suite(void)
{
    Suite *s = suite_create("average");
    TCase *tc = tcase_create("rules");
    tcase_add_test(tc, test_count);
    tcase_add_test(tc, test_ema);
    tcase_add_test(tc, test_swa);
    tcase_add_test(tc, test_pieces_equal_whole);
    tcase_add_test_raise_signal(tc, test_none_cannot_update, SIGABRT);
    suite_add_tcase(s, tc);
    return s;
}

DT_CHECK_MAIN(average_suite)
