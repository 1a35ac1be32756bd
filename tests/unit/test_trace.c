/* test_trace.c - Check suite for the trace module.
 *
 * Spans recorded with exact times (ts and dur in microseconds from the
 * origin), the two bounds (the update window, and the buffer: spans past it
 * dropped and counted), no allocation while recording, the merge of two
 * ranks' buffers into one JSON file with two named processes, overlapping
 * spans of one category split over rows, escaping, the atomic write (no
 * file from a malformed buffer), and the JSON read back by Python's parser
 * through launch/trace_check, which also checks nesting per track. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtrain/trace.h"

static char dir[] = "/tmp/dtrain-test-trace.XXXXXX";
static char path[256];

static void setup(void)
{
    strcpy(dir, "/tmp/dtrain-test-trace.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/trace.json", dir);
}

static void teardown(void)
{
    unlink(path);
    rmdir(dir);
}

static char *slurp(const char *p)
{
    FILE *f = fopen(p, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", p);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    ck_assert_int_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    return s;
}

static int occurrences(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = strstr(s, what); p; p = strstr(p + 1, what)) n++;
    return n;
}

/* Serialise the given traces (ranks 0..n-1), concatenate, write path. */
static dt_status write_ranks(dt_trace **t, int n)
{
    void *buf[4];
    size_t len[4], total = 0;
    dt_error err;
    for (int r = 0; r < n; r++) {
        ck_assert_int_eq(dt_trace_serialize(t[r], &buf[r], &len[r], &err), DT_OK);
        total += len[r];
    }
    char *all = malloc(total), *p = all;
    for (int r = 0; r < n; r++) {
        memcpy(p, buf[r], len[r]);
        p += len[r];
        dt_free(buf[r]);
    }
    dt_status st = dt_trace_write_json(path, all, len, n, &err);
    free(all);
    return st;
}

/* The summary printed by launch/trace_check --json (Python's json parser and
 * the nesting check), or NULL when no Python is there. Fails the test when
 * the checker reports a problem. */
static char *python_summary(void)
{
    const char *src = getenv("DT_TEST_SOURCE");
    if (!src || access("/usr/bin/python3", X_OK) != 0) return NULL;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/../launch/trace_check --json %s", src, path);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    static char out[8192];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    int status = pclose(p);
    ck_assert_msg(status == 0, "trace_check failed (%d) on %s: %s", status, path, out);
    return out;
}

START_TEST(test_records_exact_times)
{
    dt_trace *t;
    dt_error err;
    ck_assert_int_eq(dt_trace_create(16, 0, 10, 0, 100.0, &t, &err), DT_OK);
    ck_assert(dt_trace_wants(t, 0) && dt_trace_wants(t, 9) && !dt_trace_wants(t, 10));
    ck_assert(!dt_trace_wants(NULL, 0));
    dt_trace_span(t, "forward", "compute", 100.0000100, 100.0000350, 0, 1);
    dt_trace_span(t, "optimizer", "compute", 100.5, 100.75, 0, -1);
    dt_trace_span(t, "allreduce", "comm", 101.0, 101.002, 1, 3);
    ck_assert_uint_eq(dt_trace_count(t), 3);
    ck_assert_uint_eq(dt_trace_dropped(t), 0);
    ck_assert_int_eq(write_ranks(&t, 1), DT_OK);
    dt_trace_free(t);

    char *json = slurp(path);
    ck_assert_ptr_nonnull(strstr(json, "{\"traceEvents\":["));
    ck_assert_ptr_nonnull(strstr(json, "{\"name\":\"forward 1\",\"cat\":\"compute\",\"ph\":\"X\","
                                       "\"ts\":10.000,\"dur\":25.000,\"pid\":0,\"tid\":0,"
                                       "\"args\":{\"step\":0,\"index\":1}}"));
    ck_assert_ptr_nonnull(strstr(json, "{\"name\":\"optimizer\",\"cat\":\"compute\",\"ph\":\"X\","
                                       "\"ts\":500000.000,\"dur\":250000.000,\"pid\":0,\"tid\":0,"
                                       "\"args\":{\"step\":0}}"));
    /* the second category is the second thread */
    ck_assert_ptr_nonnull(strstr(json, "\"name\":\"allreduce 3\",\"cat\":\"comm\",\"ph\":\"X\","
                                       "\"ts\":1000000.000,\"dur\":2000.000,\"pid\":0,\"tid\":1"));
    ck_assert_ptr_nonnull(strstr(json, "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":0,"
                                       "\"tid\":0,\"args\":{\"name\":\"rank 0\"}}"));
    ck_assert_ptr_nonnull(strstr(json, "\"tid\":1,\"args\":{\"name\":\"comm\"}}"));
    ck_assert_int_eq(occurrences(json, "\"ph\":\"X\""), 3);
    free(json);
    char *py = python_summary();
    if (py) {
        ck_assert_msg(strstr(py, "\"ranks\": [0]") && strstr(py, "\"spans\": 3") &&
                          strstr(py, "\"steps\": [0, 1]"),
                      "%s", py);
    }
}
END_TEST

START_TEST(test_bounded)
{
    dt_trace *t;
    dt_error err;
    /* updates 5..7 (a resumed run), room for 4 spans */
    ck_assert_int_eq(dt_trace_create(4, 5, 3, 0, 0.0, &t, &err), DT_OK);
    dt_trace_span(t, "too-early", "compute", 0, 1, 4, -1); /* before the window: ignored */
    ck_assert_uint_eq(dt_trace_count(t), 0);
    for (int i = 0; i < 10; i++) dt_trace_span(t, "data", "compute", i, i + 0.5, 5 + i % 3, -1);
    ck_assert_uint_eq(dt_trace_count(t), 4);
    ck_assert_uint_eq(dt_trace_dropped(t), 6);
    dt_trace_span(t, "too-late", "compute", 20, 21, 8, -1); /* past the window: not a drop */
    ck_assert_uint_eq(dt_trace_dropped(t), 6);
    dt_trace_span(t, "final eval", "eval", 30, 31, -1, -1); /* outside updates, full: a drop */
    ck_assert_uint_eq(dt_trace_dropped(t), 7);
    ck_assert_int_eq(write_ranks(&t, 1), DT_OK);
    dt_trace_free(t);
    char *json = slurp(path);
    ck_assert_int_eq(occurrences(json, "\"ph\":\"X\""), 4);
    ck_assert_ptr_null(strstr(json, "too-early"));
    ck_assert_ptr_null(strstr(json, "too-late"));
    ck_assert_ptr_nonnull(strstr(json, "\"dropped_spans\":7"));
    ck_assert_ptr_nonnull(strstr(json, "trace buffer full: 7 spans dropped"));
    free(json);
    char *py = python_summary();
    if (py) ck_assert_msg(strstr(py, "\"dropped\": 7") && strstr(py, "\"spans\": 4"), "%s", py);
}
END_TEST

START_TEST(test_recording_allocates_nothing)
{
    dt_trace *t;
    dt_error err;
    ck_assert_int_eq(dt_trace_create(1000, 0, 200, 0, 0.0, &t, &err), DT_OK);
    uint64_t before = dt_alloc_count();
    for (int i = 0; i < 5000; i++) /* through the limit and past the window */
        dt_trace_span(t, "backward", "compute", i, i + 1, i / 10, i % 7);
    ck_assert(dt_trace_wants(t, 3));
    ck_assert_uint_eq(dt_alloc_count(), before);
    ck_assert_uint_eq(dt_trace_count(t), 1000);
    ck_assert_uint_eq(dt_trace_dropped(t), 1000); /* steps 100..199 */
    dt_trace_free(t);
}
END_TEST

START_TEST(test_two_ranks_merge)
{
    dt_trace *t[2];
    dt_error err;
    for (int r = 0; r < 2; r++) {
        ck_assert_int_eq(dt_trace_create(64, 0, 4, r, 10.0 * r, &t[r], &err), DT_OK);
        /* each rank's own clock: the same instants after its own origin */
        for (int s = 0; s < 3; s++) {
            double base = 10.0 * r + s * 0.01;
            dt_trace_span(t[r], "data", "compute", base, base + 0.001, s, -1);
            dt_trace_span(t[r], "backward", "compute", base + 0.001, base + 0.004, s, 0);
            dt_trace_span(t[r], "allreduce", "comm", base + 0.002, base + 0.006, s, 0);
        }
        if (r == 1) dt_trace_span(t[r], "checkpoint", "io", 10.5, 10.6, 3, -1);
    }
    ck_assert_int_eq(write_ranks(t, 2), DT_OK);
    for (int r = 0; r < 2; r++) dt_trace_free(t[r]);
    char *json = slurp(path);
    ck_assert_ptr_nonnull(strstr(json, "\"pid\":0,\"tid\":0,\"args\":{\"name\":\"rank 0\"}"));
    ck_assert_ptr_nonnull(strstr(json, "\"pid\":1,\"tid\":0,\"args\":{\"name\":\"rank 1\"}"));
    ck_assert_int_eq(occurrences(json, "\"pid\":0,\"tid\":"), 9 + 2 + 2 * 2);
    ck_assert_int_eq(occurrences(json, "\"pid\":1,\"tid\":"), 10 + 2 + 3 * 2);
    /* same instant relative to each origin: the same ts on both tracks */
    ck_assert_ptr_nonnull(strstr(json, "\"name\":\"allreduce 0\",\"cat\":\"comm\",\"ph\":\"X\","
                                       "\"ts\":12000.000,\"dur\":4000.000,\"pid\":1,\"tid\":1"));
    ck_assert_ptr_nonnull(strstr(json, "\"name\":\"allreduce 0\",\"cat\":\"comm\",\"ph\":\"X\","
                                       "\"ts\":12000.000,\"dur\":4000.000,\"pid\":0,\"tid\":1"));
    ck_assert_ptr_nonnull(strstr(json, "\"name\":\"checkpoint\",\"cat\":\"io\",\"ph\":\"X\","
                                       "\"ts\":500000.000,\"dur\":100000.000,\"pid\":1,\"tid\":2"));
    free(json);
    char *py = python_summary();
    if (py) ck_assert_msg(strstr(py, "\"ranks\": [0, 1]") && strstr(py, "\"spans\": 19"), "%s", py);
}
END_TEST

START_TEST(test_overlapping_spans_get_rows)
{
    /* Buckets in flight together: [0,10] [2,12] [4,14] overlap pairwise,
     * [12,13] starts after the first ends; nested spans stay on one row. */
    dt_trace *t;
    dt_error err;
    ck_assert_int_eq(dt_trace_create(16, 0, 1, 0, 0.0, &t, &err), DT_OK);
    dt_trace_span(t, "allreduce", "comm", 0, 10, 0, 0);
    dt_trace_span(t, "allreduce", "comm", 2, 12, 0, 1);
    dt_trace_span(t, "allreduce", "comm", 4, 14, 0, 2);
    dt_trace_span(t, "allreduce", "comm", 12, 13, 0, 3);
    dt_trace_span(t, "update", "compute", 0, 20, 0, -1);
    dt_trace_span(t, "forward", "compute", 1, 5, 0, 0);
    dt_trace_span(t, "backward", "compute", 5, 20, 0, 0);
    ck_assert_int_eq(write_ranks(&t, 1), DT_OK);
    dt_trace_free(t);
    char *json = slurp(path);
    /* compute starts first (the update, longest at t = 0): tid 0; the comm
     * rows are tid 1, 2, 3 ("comm", "comm 2", "comm 3") */
#define SPAN(name, cat, ts, dur, tid)                                                       \
    "\"name\":\"" name "\",\"cat\":\"" cat "\",\"ph\":\"X\",\"ts\":" ts ",\"dur\":" dur \
    ",\"pid\":0,\"tid\":" tid
    ck_assert_ptr_nonnull(strstr(json, SPAN("allreduce 0", "comm", "0.000", "10000000.000", "1")));
    ck_assert_ptr_nonnull(strstr(json, SPAN("allreduce 1", "comm", "2000000.000", "10000000.000", "2")));
    ck_assert_ptr_nonnull(strstr(json, SPAN("allreduce 2", "comm", "4000000.000", "10000000.000", "3")));
    ck_assert_ptr_nonnull(strstr(json, SPAN("allreduce 3", "comm", "12000000.000", "1000000.000", "1")));
    ck_assert_ptr_nonnull(strstr(json, "\"tid\":3,\"args\":{\"name\":\"comm 3\"}"));
    ck_assert_ptr_nonnull(strstr(json, SPAN("update", "compute", "0.000", "20000000.000", "0")));
    ck_assert_ptr_nonnull(strstr(json, SPAN("backward 0", "compute", "5000000.000", "15000000.000", "0")));
#undef SPAN
    ck_assert_ptr_null(strstr(json, "compute 2"));
    free(json);
    python_summary(); /* nested or disjoint on every track */
}
END_TEST

START_TEST(test_escaping)
{
    dt_trace *t;
    dt_error err;
    ck_assert_int_eq(dt_trace_create(4, 0, 1, 0, 0.0, &t, &err), DT_OK);
    dt_trace_span(t, "a \"quoted\\ name\n", "odd\tcat", 0, 1, 0, -1);
    ck_assert_int_eq(write_ranks(&t, 1), DT_OK);
    dt_trace_free(t);
    char *json = slurp(path);
    ck_assert_ptr_nonnull(strstr(json, "\"name\":\"a \\\"quoted\\\\ name\\u000a\",\"cat\":\"odd\\u0009cat\""));
    free(json);
    python_summary();
}
END_TEST

START_TEST(test_malformed_buffer_writes_nothing)
{
    dt_trace *t;
    dt_error err;
    void *buf;
    size_t len;
    ck_assert_int_eq(dt_trace_create(4, 0, 1, 0, 0.0, &t, &err), DT_OK);
    dt_trace_span(t, "data", "compute", 0, 1, 0, -1);
    ck_assert_int_eq(dt_trace_serialize(t, &buf, &len, &err), DT_OK);
    dt_trace_free(t);
    /* truncated, and one byte too long */
    size_t cut = len - 1;
    ck_assert_int_eq(dt_trace_write_json(path, buf, &cut, 1, &err), DT_EINTERNAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "the trace of rank 0 is malformed"));
    char *twice = malloc(2 * len);
    memcpy(twice, buf, len);
    memcpy(twice + len, buf, len);
    size_t longer = len + 1;
    ck_assert_int_eq(dt_trace_write_json(path, twice, &longer, 1, &err), DT_EINTERNAL);
    /* rank 0's buffer given as rank 1's */
    size_t both[2] = {len, len};
    ck_assert_int_eq(dt_trace_write_json(path, twice, both, 2, &err), DT_EINTERNAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "the trace of rank 1 is malformed"));
    ck_assert_int_eq(access(path, F_OK), -1);
    /* the intact buffer is fine */
    ck_assert_int_eq(dt_trace_write_json(path, twice, &len, 1, &err), DT_OK);
    /* a directory that does not exist: an error, not a crash */
    ck_assert_int_eq(dt_trace_write_json("/nonexistent-dir/trace.json", NULL, NULL, 0, &err),
                     DT_EINTERNAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "cannot write the trace"));
    /* the rename fails (a directory of that name): the temporary goes too */
    unlink(path);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    char inside[300];
    snprintf(inside, sizeof inside, "%s/x", path);
    fclose(fopen(inside, "w"));
    ck_assert_int_eq(dt_trace_write_json(path, twice, &len, 1, &err), DT_EINTERNAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "cannot write the trace"));
    unlink(inside);
    rmdir(path);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A %s)\"", dir);
    ck_assert_int_eq(system(cmd), 0);
    free(twice);
    dt_free(buf);
}
END_TEST

START_TEST(test_events_per_update)
{
    ck_assert_uint_eq(dt_trace_events_per_update(3, 2), 1 + 6 + 2 + 8);
    ck_assert_uint_eq(dt_trace_events_per_update(3, 0), 1 + 6 + 1 + 8);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("trace");
    TCase *tc = tcase_create("trace");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_records_exact_times);
    tcase_add_test(tc, test_bounded);
    tcase_add_test(tc, test_recording_allocates_nothing);
    tcase_add_test(tc, test_two_ranks_merge);
    tcase_add_test(tc, test_overlapping_spans_get_rows);
    tcase_add_test(tc, test_escaping);
    tcase_add_test(tc, test_malformed_buffer_writes_nothing);
    tcase_add_test(tc, test_events_per_update);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
