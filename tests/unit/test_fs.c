/* test_fs.c - Check suite for fs.c: path joining at the one length limit,
 * mkdir -p and its edge cases (relative, trailing and repeated slashes, a
 * file in the way, concurrent creators), and the atomic durable write under
 * injected faults (disk full mid-file, fsync and rename errors, a folder that
 * cannot be written): the old file stays as it was, no temporary file is
 * left, and the message names the file and the cause.
 *
 * Faults come from tests/tools/fault_inject.c, linked into this program and
 * armed per test through its DT_FAULT_* environment variables (Check runs
 * each test in its own process, so nothing leaks into the next test). */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "dtrain/fs.h"

/* ---- fixture: a fresh folder per test ------------------------------------ */
static char rootdir[128]; /* made by main, removed after the run */
static char tmpdir[256];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "%s/t_XXXXXX", rootdir);
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void) { dt_check_rm_rf(tmpdir); }

static void in_tmp(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", tmpdir, name);
}

static void put_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

static void read_file(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Entries of tmpdir whose name contains needle. */
static int count_entries(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) n += strstr(de->d_name, needle) != NULL;
    closedir(d);
    return n;
}

static void arm(const char *op, const char *errname, const char *after, const char *name)
{
    setenv("DT_FAULT_PATH", tmpdir, 1);
    setenv("DT_FAULT_OP", op, 1);
    setenv("DT_FAULT_ERRNO", errname, 1);
    if (after) setenv("DT_FAULT_AFTER", after, 1);
    if (name) setenv("DT_FAULT_NAME", name, 1);
}

static void disarm(void)
{
    unsetenv("DT_FAULT_PATH");
    unsetenv("DT_FAULT_OP");
    unsetenv("DT_FAULT_ERRNO");
    unsetenv("DT_FAULT_AFTER");
    unsetenv("DT_FAULT_NAME");
}

#define ck_assert_has(msg, part) ck_assert_msg(strstr((msg), (part)), "no \"%s\" in: %s", (part), (msg))

/* ---- paths ------------------------------------------------------------------ */
START_TEST(test_path_join)
{
    dt_path p;
    dt_error err = {0};
    ck_assert_int_eq(dt_path_join(&p, "out", "summary.json", &err), DT_OK);
    ck_assert_str_eq(p.s, "out/summary.json");
    ck_assert_int_eq(dt_path_join(&p, "out/", "x", &err), DT_OK);
    ck_assert_str_eq(p.s, "out/x");
    ck_assert_int_eq(dt_path_join(&p, "/", "x", &err), DT_OK);
    ck_assert_str_eq(p.s, "/x");
}
END_TEST

START_TEST(test_path_limit_is_exact_and_never_truncates)
{
    /* dir + '/' + name of exactly DT_PATH_MAX - 1 bytes fits, one more does not */
    static char dir[DT_PATH_MAX + 8];
    memset(dir, 'd', DT_PATH_MAX - 3);
    dir[DT_PATH_MAX - 3] = '\0';
    dt_path p;
    dt_error err = {0};
    ck_assert_int_eq(dt_path_join(&p, dir, "n", &err), DT_OK);
    ck_assert_uint_eq(strlen(p.s), DT_PATH_MAX - 1);
    memset(p.s, 0, sizeof p.s);
    ck_assert_int_eq(dt_path_join(&p, dir, "nn", &err), DT_EINTERNAL);
    ck_assert_int_eq(err.code, DT_EINTERNAL);
    ck_assert_has(err.msg, "path too long");
    ck_assert_str_eq(p.s, ""); /* nothing half-copied */

    memset(dir, 'd', DT_PATH_MAX);
    dir[DT_PATH_MAX] = '\0';
    ck_assert_int_eq(dt_path_set(&p, dir, &err), DT_EINTERNAL);
    ck_assert_has(err.msg, "path too long");
    dir[DT_PATH_MAX - 1] = '\0';
    ck_assert_int_eq(dt_path_set(&p, dir, &err), DT_OK);
    ck_assert_str_eq(p.s, dir);
    /* mkdir -p and the atomic write refuse such paths the same way */
    dir[DT_PATH_MAX - 1] = 'd';
    ck_assert_int_eq(dt_fs_mkdir_p(dir, "run.out_dir", &err), DT_EINTERNAL);
    ck_assert_has(err.msg, "path too long");
    ck_assert_int_eq(dt_fs_write_atomic(dir, "x", 1, &err), DT_EINTERNAL);
    ck_assert_has(err.msg, "path too long");
}
END_TEST

/* ---- mkdir -p --------------------------------------------------------------- */
START_TEST(test_mkdir_p_edge_cases)
{
    dt_error err = {0};
    char p[512];
    ck_assert_int_eq(chdir(tmpdir), 0);
    /* relative, nested */
    ck_assert_int_eq(dt_fs_mkdir_p("a/b/c", "run.out_dir", &err), DT_OK);
    ck_assert(is_dir("a/b/c"));
    /* trailing slash, repeated slashes */
    ck_assert_int_eq(dt_fs_mkdir_p("t/u/", "run.out_dir", &err), DT_OK);
    ck_assert(is_dir("t/u"));
    ck_assert_int_eq(dt_fs_mkdir_p("p//q///r", "run.out_dir", &err), DT_OK);
    ck_assert(is_dir("p/q/r"));
    /* existing: fine, twice; "." and "/" exist */
    ck_assert_int_eq(dt_fs_mkdir_p("a/b/c", "run.out_dir", &err), DT_OK);
    ck_assert_int_eq(dt_fs_mkdir_p(".", "run.out_dir", &err), DT_OK);
    ck_assert_int_eq(dt_fs_mkdir_p("/", "run.out_dir", &err), DT_OK);
    /* absolute */
    in_tmp(p, sizeof p, "abs/x/y");
    ck_assert_int_eq(dt_fs_mkdir_p(p, "checkpoint.dir", &err), DT_OK);
    ck_assert(is_dir(p));
    /* empty */
    ck_assert_int_eq(dt_fs_mkdir_p("", "run.out_dir", &err), DT_EINTERNAL);
    ck_assert_has(err.msg, "run.out_dir: empty path");
}
END_TEST

START_TEST(test_mkdir_p_file_in_the_way)
{
    dt_error err = {0};
    char file[512], dir[600];
    in_tmp(file, sizeof file, "plain");
    put_file(file, "x");
    /* the file as a middle component, and as the folder itself */
    snprintf(dir, sizeof dir, "%s/sub/deeper", file);
    ck_assert_int_eq(dt_fs_mkdir_p(dir, "run.out_dir", &err), DT_EINTERNAL);
    ck_assert_has(err.msg, "cannot create run.out_dir");
    ck_assert_has(err.msg, file);
    ck_assert_has(err.msg, "Not a directory");
    ck_assert_int_eq(dt_fs_mkdir_p(file, "run.out_dir", &err), DT_EINTERNAL);
    ck_assert_has(err.msg, "Not a directory");
    /* also with a trailing slash */
    snprintf(dir, sizeof dir, "%s/", file);
    ck_assert_int_eq(dt_fs_mkdir_p(dir, "run.out_dir", &err), DT_EINTERNAL);
    ck_assert_has(err.msg, "Not a directory");
}
END_TEST

/* Many processes create the same deep path at once: every one must succeed
 * (EEXIST from a component another process made first is not a failure). */
START_TEST(test_mkdir_p_concurrent_creators)
{
    enum { N = 8, ROUNDS = 20 };
    for (int round = 0; round < ROUNDS; round++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/r%d/a/b/c/d/e/f", tmpdir, round);
        int go[2];
        ck_assert_int_eq(pipe(go), 0);
        pid_t pid[N];
        for (int i = 0; i < N; i++) {
            pid[i] = fork();
            ck_assert_int_ge(pid[i], 0);
            if (pid[i] == 0) {
                close(go[1]);
                char c;
                (void)!read(go[0], &c, 1); /* all start when the pipe closes */
                dt_error err = {0};
                _exit(dt_fs_mkdir_p(dir, "run.out_dir", &err) == DT_OK ? 0 : 1);
            }
        }
        close(go[0]);
        close(go[1]);
        for (int i = 0; i < N; i++) {
            int status;
            ck_assert_int_eq(waitpid(pid[i], &status, 0), pid[i]);
            ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                          "round %d: creator %d failed", round, i);
        }
        ck_assert(is_dir(dir));
    }
}
END_TEST

START_TEST(test_mkdir_p_failures_name_the_component)
{
    dt_error err = {0};
    char dir[512], comp[512];
    in_tmp(dir, sizeof dir, "ro/x/y");
    in_tmp(comp, sizeof comp, "ro");
    arm("mkdir", "EACCES", NULL, NULL);
    ck_assert_int_eq(dt_fs_mkdir_p(dir, "run.out_dir", &err), DT_EINTERNAL);
    ck_assert_has(err.msg, "cannot create run.out_dir");
    ck_assert_has(err.msg, comp);
    ck_assert_has(err.msg, strerror(EACCES));
    ck_assert(!is_dir(comp));
    /* a folder that exists is fine even where mkdir itself fails (a
     * read-only parent answers EROFS, not EEXIST) */
    disarm();
    ck_assert_int_eq(dt_fs_mkdir_p(dir, "run.out_dir", &err), DT_OK);
    arm("mkdir", "EROFS", NULL, NULL);
    ck_assert_int_eq(dt_fs_mkdir_p(dir, "run.out_dir", &err), DT_OK);
    disarm();
}
END_TEST

/* ---- the atomic durable write ---------------------------------------------- */
START_TEST(test_atomic_write_replaces)
{
    dt_error err = {0};
    char path[512], text[64];
    in_tmp(path, sizeof path, "summary.json");
    ck_assert_int_eq(dt_fs_write_atomic(path, "first\n", 6, &err), DT_OK);
    read_file(path, text, sizeof text);
    ck_assert_str_eq(text, "first\n");
    ck_assert_int_eq(dt_fs_write_atomic(path, "second\n", 7, &err), DT_OK);
    read_file(path, text, sizeof text);
    ck_assert_str_eq(text, "second\n");
    ck_assert_int_eq(dt_fs_write_atomic(path, "", 0, &err), DT_OK);
    read_file(path, text, sizeof text);
    ck_assert_str_eq(text, "");
    ck_assert_int_eq(count_entries(tmpdir, ".tmp"), 0);
    /* a relative path: the temporary file goes next to it, in "." */
    ck_assert_int_eq(chdir(tmpdir), 0);
    ck_assert_int_eq(dt_fs_write_atomic("rel.txt", "r", 1, &err), DT_OK);
    read_file("rel.txt", text, sizeof text);
    ck_assert_str_eq(text, "r");
}
END_TEST

/* After a failed write: the message names the file and the cause, the old
 * content is intact and no temporary file is left. */
static void expect_failed_write(const char *path, const char *cause)
{
    dt_error err = {0};
    static char big[100000];
    memset(big, 'n', sizeof big);
    ck_assert_int_eq(dt_fs_write_atomic(path, big, sizeof big, &err), DT_EINTERNAL);
    disarm();
    ck_assert_int_eq(err.code, DT_EINTERNAL);
    ck_assert_has(err.msg, path);
    ck_assert_has(err.msg, cause);
    char text[64];
    read_file(path, text, sizeof text);
    ck_assert_str_eq(text, "old\n");
    ck_assert_int_eq(count_entries(tmpdir, ".tmp"), 0);
}

START_TEST(test_atomic_write_disk_full_midway)
{
    char path[512];
    in_tmp(path, sizeof path, "summary.json");
    put_file(path, "old\n");
    arm("write", "ENOSPC", "5000", NULL); /* 5000 bytes go through, then the disk is full */
    expect_failed_write(path, strerror(ENOSPC));
}
END_TEST

START_TEST(test_atomic_write_fsync_fails)
{
    char path[512];
    in_tmp(path, sizeof path, "summary.json");
    put_file(path, "old\n");
    arm("fsync", "EIO", NULL, NULL);
    expect_failed_write(path, "cannot fsync");
    arm("fsync", "EIO", NULL, NULL);
    expect_failed_write(path, strerror(EIO));
}
END_TEST

/* The rename is made durable: a failing fsync of the folder is reported. */
START_TEST(test_atomic_write_syncs_the_folder)
{
    char path[512];
    dt_error err = {0};
    in_tmp(path, sizeof path, "summary.json");
    arm("fsync", "EIO", NULL, strrchr(tmpdir, '/') + 1); /* only the folder's name matches */
    ck_assert_int_eq(dt_fs_write_atomic(path, "new\n", 4, &err), DT_EINTERNAL);
    disarm();
    ck_assert_has(err.msg, tmpdir);
    ck_assert_has(err.msg, "cannot fsync folder");
}
END_TEST

START_TEST(test_atomic_write_rename_fails)
{
    char path[512];
    in_tmp(path, sizeof path, "summary.json");
    put_file(path, "old\n");
    arm("rename", "EIO", NULL, NULL);
    expect_failed_write(path, "cannot rename");
}
END_TEST

START_TEST(test_atomic_write_unwritable_folder)
{
    char path[512];
    in_tmp(path, sizeof path, "summary.json");
    put_file(path, "old\n");
    /* root ignores permission bits: inject what a read-only folder answers */
    arm("open", "EACCES", NULL, NULL);
    expect_failed_write(path, strerror(EACCES));
    if (geteuid() != 0) { /* and the real thing where it can be had */
        ck_assert_int_eq(chmod(tmpdir, 0555), 0);
        expect_failed_write(path, strerror(EACCES));
        ck_assert_int_eq(chmod(tmpdir, 0755), 0);
    }
    /* a folder that does not exist */
    char missing[600];
    dt_error err = {0};
    snprintf(missing, sizeof missing, "%s/none/summary.json", tmpdir);
    ck_assert_int_eq(dt_fs_write_atomic(missing, "x", 1, &err), DT_EINTERNAL);
    ck_assert_has(err.msg, missing);
    ck_assert_has(err.msg, strerror(ENOENT));
}
END_TEST

START_TEST(test_atomic_stream_and_abort)
{
    dt_error err = {0};
    char path[512], text[64];
    in_tmp(path, sizeof path, "ckpt");
    put_file(path, "old\n");
    dt_fs_atomic f;
    ck_assert_int_eq(dt_fs_atomic_open(&f, path, &err), DT_OK);
    ck_assert_int_eq(count_entries(tmpdir, ".ckpt.tmp."), 1);
    ck_assert_int_eq(dt_fs_atomic_write(&f, "ne", 2, &err), DT_OK);
    ck_assert_int_eq(dt_fs_atomic_write(&f, "w\n", 2, &err), DT_OK);
    read_file(path, text, sizeof text);
    ck_assert_str_eq(text, "old\n"); /* nothing visible before the commit */
    dt_fs_atomic_abort(&f);
    dt_fs_atomic_abort(&f); /* idempotent */
    read_file(path, text, sizeof text);
    ck_assert_str_eq(text, "old\n");
    ck_assert_int_eq(count_entries(tmpdir, ".tmp"), 0);

    ck_assert_int_eq(dt_fs_atomic_open(&f, path, &err), DT_OK);
    ck_assert_int_eq(dt_fs_atomic_write(&f, "new\n", 4, &err), DT_OK);
    ck_assert_int_eq(dt_fs_atomic_commit(&f, &err), DT_OK);
    dt_fs_atomic_abort(&f); /* after a commit: a no-op */
    read_file(path, text, sizeof text);
    ck_assert_str_eq(text, "new\n");
    ck_assert_int_eq(count_entries(tmpdir, ".tmp"), 0);
}
END_TEST

START_TEST(test_sync_dir)
{
    dt_error err = {0};
    char missing[512];
    ck_assert_int_eq(dt_fs_sync_dir(tmpdir, &err), DT_OK);
    in_tmp(missing, sizeof missing, "none");
    ck_assert_int_eq(dt_fs_sync_dir(missing, &err), DT_EINTERNAL);
    ck_assert_has(err.msg, missing);
}
END_TEST

static Suite *fs_suite(void)
{
    Suite *s = suite_create("fs");
    TCase *tc = tcase_create("fs");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_path_join);
    tcase_add_test(tc, test_path_limit_is_exact_and_never_truncates);
    tcase_add_test(tc, test_mkdir_p_edge_cases);
    tcase_add_test(tc, test_mkdir_p_file_in_the_way);
    tcase_add_test(tc, test_mkdir_p_concurrent_creators);
    tcase_add_test(tc, test_mkdir_p_failures_name_the_component);
    tcase_add_test(tc, test_atomic_write_replaces);
    tcase_add_test(tc, test_atomic_write_disk_full_midway);
    tcase_add_test(tc, test_atomic_write_fsync_fails);
    tcase_add_test(tc, test_atomic_write_rename_fails);
    tcase_add_test(tc, test_atomic_write_syncs_the_folder);
    tcase_add_test(tc, test_atomic_write_unwritable_folder);
    tcase_add_test(tc, test_atomic_stream_and_abort);
    tcase_add_test(tc, test_sync_dir);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    snprintf(rootdir, sizeof rootdir, "%s/dt_fs_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(rootdir)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    int status = dt_check_run(fs_suite());
    dt_check_rm_rf(rootdir);
    return status;
}
