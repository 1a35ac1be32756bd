/* test_data.c - Check suite for the data module: IDX loading (good, broken and
 * hostile files), statistics, batch normalisation, the epoch permutation,
 * updates per epoch and sharding.
 *
 * The data sets come from tests/tools/make_idx (ctest fixture, directory in
 * $DT_TEST_DATA); further damaged files are made here in a temporary
 * directory. The real Fashion-MNIST is tested when installed. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "check_main.h"
#include "dtrain/data.h"
#include "dtrain/rng.h"

#ifndef FMNIST_DIR /* -DFMNIST_DIR=/nonexistent shows the skip on any machine */
#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"
#endif

static const char *data_dir(void)
{
    const char *d = getenv("DT_TEST_DATA");
    ck_assert_msg(d && *d, "DT_TEST_DATA is not set (run through ctest)");
    return d;
}

static char *path_in(const char *dir, const char *set, const char *name)
{
    static char bufs[4][4096];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%s/%s/%s", dir, set, name);
    return b;
}

#define TRAIN_IMG "train-images-idx3-ubyte"
#define TRAIN_LBL "train-labels-idx1-ubyte"
#define TEST_IMG "t10k-images-idx3-ubyte"
#define TEST_LBL "t10k-labels-idx1-ubyte"

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The call failed with DT_EDATA, the message starts with `file`, contains
 * every substring in `subs` (NULL-terminated), and `ds` was left empty. */
static void assert_data_error(dt_status st, const dt_error *err, const dt_dataset *ds,
                              const char *file, const char *const *subs)
{
    ck_assert_int_eq(st, DT_EDATA);
    ck_assert_int_eq(err->code, DT_EDATA);
    ck_assert_msg(starts_with(err->msg, file), "message does not start with %s: %s", file,
                  err->msg);
    for (; *subs; subs++)
        ck_assert_msg(strstr(err->msg, *subs), "message lacks \"%s\": %s", *subs, err->msg);
    ck_assert_msg(!strchr(err->msg, '\n'), "message has a newline: %s", err->msg);
    ck_assert_ptr_null(ds->images);
    ck_assert_ptr_null(ds->labels);
    ck_assert_int_eq(ds->n, 0);
}

/* ---- temporary files ------------------------------------------------------ */

static char tmpdir[256];

static void tmp_setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dt_test_data_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void tmp_teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
}

static char *tmp_path(const char *name)
{
    static char bufs[4][512];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%s/%s", tmpdir, name);
    return b;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long len = ftell(f);
    ck_assert_int_ge(len, 0);
    rewind(f);
    unsigned char *p = malloc((size_t)len + 1);
    ck_assert_uint_eq(fread(p, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return p;
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

/* A raw IDX3 file: magic, n, h, w, then `payload` bytes of value i % 251. */
static void write_idx3(const char *path, uint32_t magic, uint32_t n, uint32_t h, uint32_t w,
                       size_t payload)
{
    unsigned char *b = malloc(16 + payload);
    put_be32(b, magic), put_be32(b + 4, n), put_be32(b + 8, h), put_be32(b + 12, w);
    for (size_t i = 0; i < payload; i++) b[16 + i] = (unsigned char)(i % 251);
    write_bytes(path, b, 16 + payload);
    free(b);
}

static void write_idx1(const char *path, uint32_t n, const unsigned char *labels, size_t count)
{
    unsigned char *b = malloc(8 + count);
    put_be32(b, 0x00000801), put_be32(b + 4, n);
    memcpy(b + 8, labels, count);
    write_bytes(path, b, 8 + count);
    free(b);
}

/* ---- good files ------------------------------------------------------------ */

START_TEST(test_load_ok)
{
    const char *d = data_dir();
    dt_dataset ds, raw, test;
    dt_error err = {0};
    ck_assert_int_eq(dt_idx_load(path_in(d, "ok", TRAIN_IMG ".gz"),
                                 path_in(d, "ok", TRAIN_LBL ".gz"), 0, 10, &ds, &err), DT_OK);
    ck_assert_int_eq(ds.n, 1024);
    ck_assert_int_eq(ds.c, 1);
    ck_assert_int_eq(ds.h, 28);
    ck_assert_int_eq(ds.w, 28);
    ck_assert_int_eq(ds.sample_size, 784);
    ck_assert_int_eq(ds.n_classes, 10);
    /* make_idx writes balanced classes: i mod 10, shuffled */
    long count[10] = {0};
    for (long i = 0; i < ds.n; i++) {
        if (ds.labels[i] >= 10) ck_abort_msg("label %d at %ld", ds.labels[i], i);
        count[ds.labels[i]]++;
    }
    for (int c = 0; c < 10; c++) ck_assert_int_eq(count[c], c < 4 ? 103 : 102);

    ck_assert_int_eq(dt_idx_load(path_in(d, "ok_raw", TRAIN_IMG), path_in(d, "ok_raw", TRAIN_LBL),
                                 0, 10, &raw, &err), DT_OK);
    ck_assert_int_eq(raw.n, ds.n);
    ck_assert_int_eq(raw.n_classes, ds.n_classes);
    ck_assert_int_eq(memcmp(raw.images, ds.images, (size_t)ds.n * 784), 0);
    ck_assert_int_eq(memcmp(raw.labels, ds.labels, (size_t)ds.n), 0);

    ck_assert_int_eq(dt_idx_load(path_in(d, "ok", TEST_IMG ".gz"),
                                 path_in(d, "ok", TEST_LBL ".gz"), 0, 10, &test, &err), DT_OK);
    ck_assert_int_eq(test.n, 256);
    ck_assert_int_eq(test.n_classes, 10);
    ck_assert_int_ne(memcmp(test.images, ds.images, 256 * 784), 0);

    dt_dataset_free(&ds);
    dt_dataset_free(&raw);
    dt_dataset_free(&test);
    ck_assert_ptr_null(ds.images);
    dt_dataset_free(&ds); /* twice is harmless */
}
END_TEST

START_TEST(test_load_ok_is_learnable_pattern)
{
    /* make_idx's promise: class c brightens cell c of a 4x4 grid of 7x7 */
    const char *d = data_dir();
    dt_dataset ds;
    dt_error err = {0};
    ck_assert_int_eq(dt_idx_load(path_in(d, "ok", TRAIN_IMG ".gz"),
                                 path_in(d, "ok", TRAIN_LBL ".gz"), 0, 10, &ds, &err), DT_OK);
    for (long i = 0; i < ds.n; i++) {
        int c = ds.labels[i];
        int r = (c / 4) * 7 + 3, q = (c % 4) * 7 + 3; /* cell centre: always inside */
        double in = 0, out = 0;
        for (int y = -2; y <= 2; y++)
            for (int x = -2; x <= 2; x++) in += ds.images[i * 784 + (r + y) * 28 + q + x];
        for (int k = 0; k < 784; k++) out += ds.images[i * 784 + k];
        if (!(in / 25 > 90 && (out - in) / (784 - 25) < 60))
            ck_abort_msg("sample %ld: mean %.1f in the cell, %.1f outside", i, in / 25,
                         (out - in) / (784 - 25));
    }
    dt_dataset_free(&ds);
}
END_TEST

START_TEST(test_limit)
{
    const char *d = data_dir();
    dt_dataset all, few, many;
    dt_error err = {0};
    const char *im = path_in(d, "ok", TRAIN_IMG ".gz"), *lb = path_in(d, "ok", TRAIN_LBL ".gz");
    ck_assert_int_eq(dt_idx_load(im, lb, 0, 10, &all, &err), DT_OK);
    ck_assert_int_eq(dt_idx_load(im, lb, 100, 10, &few, &err), DT_OK);
    ck_assert_int_eq(few.n, 100);
    ck_assert_int_eq(few.n_classes, 10); /* from the whole file */
    ck_assert_int_eq(memcmp(few.images, all.images, 100 * 784), 0);
    ck_assert_int_eq(memcmp(few.labels, all.labels, 100), 0);
    ck_assert_int_eq(dt_idx_load(im, lb, 5000, 10, &many, &err), DT_OK);
    ck_assert_int_eq(many.n, 1024);
    dt_dataset_free(&all);
    dt_dataset_free(&few);
    dt_dataset_free(&many);

    /* a bad file stays bad under a limit (bad label at index 345) */
    dt_dataset ds;
    const char *bad = path_in(d, "label_out_of_range", TRAIN_LBL ".gz");
    dt_status st = dt_idx_load(path_in(d, "label_out_of_range", TRAIN_IMG ".gz"), bad, 10, 10,
                               &ds, &err);
    assert_data_error(st, &err, &ds, bad, (const char *[]){"index 345", NULL});
    /* and so does a truncated one */
    const char *trunc = path_in(d, "truncated_images", TRAIN_IMG ".gz");
    st = dt_idx_load(trunc, path_in(d, "truncated_images", TRAIN_LBL ".gz"), 1, 10, &ds, &err);
    assert_data_error(st, &err, &ds, trunc, (const char *[]){"truncated", NULL});
}
END_TEST

/* ---- the broken variants of make_idx ------------------------------------- */

typedef struct {
    const char *set;
    int bad_is_labels; /* the message must start with the labels path */
    const char *subs[4];
} variant;

static const variant variants[] = {
    {"truncated_images", 0,
     {"truncated: header says 1024 images of 28x28 = 802816 bytes",
      "file has 1000 bytes after the 16-byte header", NULL}},
    {"bad_magic", 0, {"bad magic 0x03080000", "expected 0x00000803", NULL}},
    {"count_mismatch", 1, {"count mismatch", "1000 labels", "has 1024 images", NULL}},
    {"label_out_of_range", 1, {"label 12 at index 345 is out of range for 10 classes", NULL}},
    {"lying_header", 0,
     {"truncated: header says 2147483648 images of 28x28", "file has 802816 bytes", NULL}},
    {"corrupt_gzip", 0, {"corrupt gzip stream", "invalid block type", NULL}},
    {"empty_file", 0, {"empty file", NULL}},
    {"missing_file", 1, {"cannot open", "No such file or directory", NULL}},
    {"trailing_garbage", 0, {"trailing garbage", "100 bytes", NULL}},
};

START_TEST(test_broken_variant)
{
    const variant *v = &variants[_i];
    const char *d = data_dir();
    const char *im = path_in(d, v->set, TRAIN_IMG ".gz"), *lb = path_in(d, v->set, TRAIN_LBL ".gz");
    dt_dataset ds;
    dt_error err = {0};
    dt_status st = dt_idx_load(im, lb, 0, 10, &ds, &err);
    assert_data_error(st, &err, &ds, v->bad_is_labels ? lb : im, v->subs);
    /* the sibling test set of every variant is intact */
    st = dt_idx_load(path_in(d, v->set, TEST_IMG ".gz"), path_in(d, v->set, TEST_LBL ".gz"), 0,
                     10, &ds, &err);
    ck_assert_int_eq(st, DT_OK);
    ck_assert_int_eq(ds.n, 256);
    dt_dataset_free(&ds);
}
END_TEST

/* ---- hostile files made here ------------------------------------------------- */

static const unsigned char labels4[4] = {0, 1, 2, 3};

static void expect_images_error(const char *img, const char *const *subs)
{
    char lb[512];
    snprintf(lb, sizeof lb, "%s/labels4", tmpdir);
    write_idx1(lb, 4, labels4, 4);
    dt_dataset ds;
    dt_error err = {0};
    dt_status st = dt_idx_load(img, lb, 0, 10, &ds, &err);
    assert_data_error(st, &err, &ds, img, subs);
}

START_TEST(test_header_checks)
{
    char p[512];
    snprintf(p, sizeof p, "%s", tmp_path("img"));
    /* labels file given as images: magic names the dimension count */
    write_idx3(p, 0x00000801, 4, 2, 2, 16);
    expect_images_error(p, (const char *[]){"bad magic 0x00000801", "expected 0x00000803",
                                            "1 dimension instead of 3", NULL});
    /* float element type */
    write_idx3(p, 0x00000d03, 4, 2, 2, 16);
    expect_images_error(p, (const char *[]){"bad magic 0x00000d03", "not unsigned byte", NULL});
    /* not IDX at all */
    write_bytes(p, "\x89PNG\r\n\x1a\n", 8);
    expect_images_error(p, (const char *[]){"bad magic 0x89504e47", NULL});
    /* zero dimensions */
    write_idx3(p, 0x00000803, 4, 0, 2, 16);
    expect_images_error(p, (const char *[]){"zero rows", NULL});
    write_idx3(p, 0x00000803, 0, 2, 2, 0);
    expect_images_error(p, (const char *[]){"zero image count", NULL});
    /* short header */
    write_bytes(p, "\0\0\x08\x03\0\0\0\x04\0\0", 10);
    expect_images_error(p, (const char *[]){"truncated header", "10 bytes", "needs 16", NULL});
    write_bytes(p, "\0\0", 2);
    expect_images_error(p, (const char *[]){"truncated header", "2 bytes", NULL});
    /* sizes whose product overflows 64 bits */
    write_idx3(p, 0x00000803, 0xffffffffu, 0xffffffffu, 0xffffffffu, 16);
    expect_images_error(p, (const char *[]){"overflow", NULL});
    /* huge but representable claim: must be "truncated", not an attempt to
     * allocate 7e16 bytes (that would be out of memory, DT_EINTERNAL) */
    write_idx3(p, 0x00000803, 0xffffffffu, 4096, 4096, 100);
    expect_images_error(p, (const char *[]){"truncated", "4294967295 images of 4096x4096",
                                            "file has 100 bytes", NULL});
    /* raw trailing garbage */
    write_idx3(p, 0x00000803, 4, 2, 2, 21);
    expect_images_error(p, (const char *[]){"trailing garbage: 5 bytes", NULL});
    /* a directory */
    expect_images_error(tmpdir, (const char *[]){"read error", "Is a directory", NULL});
    /* exact size loads */
    write_idx3(p, 0x00000803, 4, 2, 2, 16);
    dt_dataset ds;
    dt_error err = {0};
    ck_assert_int_eq(dt_idx_load(p, tmp_path("labels4"), 0, 10, &ds, &err), DT_OK);
    ck_assert_int_eq(ds.n, 4);
    ck_assert_int_eq(ds.h, 2);
    ck_assert_int_eq(ds.w, 2);
    ck_assert_int_eq(ds.n_classes, 4);
    ck_assert_int_eq(ds.images[5], 5);
    dt_dataset_free(&ds);
}
END_TEST

START_TEST(test_label_checks)
{
    char img[512], lb[512];
    snprintf(img, sizeof img, "%s", tmp_path("img"));
    snprintf(lb, sizeof lb, "%s", tmp_path("lbl"));
    write_idx3(img, 0x00000803, 4, 2, 2, 16);
    dt_dataset ds;
    dt_error err = {0};
    /* max_classes bounds the labels */
    write_idx1(lb, 4, labels4, 4);
    dt_status st = dt_idx_load(img, lb, 0, 3, &ds, &err);
    assert_data_error(st, &err, &ds, lb,
                      (const char *[]){"label 3 at index 3 is out of range for 3 classes", NULL});
    /* max_classes <= 0: any byte value */
    write_idx1(lb, 4, (const unsigned char[]){0, 255, 7, 7}, 4);
    ck_assert_int_eq(dt_idx_load(img, lb, 0, 0, &ds, &err), DT_OK);
    ck_assert_int_eq(ds.n_classes, 256);
    dt_dataset_free(&ds);
    /* labels truncated, trailing, wrong magic, count mismatch */
    write_idx1(lb, 4, labels4, 3);
    st = dt_idx_load(img, lb, 0, 10, &ds, &err);
    assert_data_error(st, &err, &ds, lb,
                      (const char *[]){"truncated: header says 4 labels = 4 bytes",
                                       "file has 3 bytes after the 8-byte header", NULL});
    write_idx1(lb, 3, labels4, 4);
    st = dt_idx_load(img, lb, 0, 10, &ds, &err);
    assert_data_error(st, &err, &ds, lb, (const char *[]){"trailing garbage: 1 bytes", NULL});
    write_idx1(lb, 3, labels4, 3);
    st = dt_idx_load(img, lb, 0, 10, &ds, &err);
    assert_data_error(st, &err, &ds, lb, (const char *[]){"count mismatch", NULL});
    write_idx3(lb, 0x00000803, 4, 2, 2, 16);
    st = dt_idx_load(img, lb, 0, 10, &ds, &err);
    assert_data_error(st, &err, &ds, lb,
                      (const char *[]){"bad magic 0x00000803", "expected 0x00000801",
                                       "3 dimensions instead of 1", NULL});
    /* missing labels file */
    st = dt_idx_load(img, tmp_path("nope"), 0, 10, &ds, &err);
    assert_data_error(st, &err, &ds, tmp_path("nope"),
                      (const char *[]){"cannot open: No such file or directory", NULL});
}
END_TEST

/* Damage copies of ok/'s gzip image file in ways make_idx does not. */
START_TEST(test_gzip_damage)
{
    const char *d = data_dir();
    size_t n;
    unsigned char *gz = read_bytes(path_in(d, "ok", TRAIN_IMG ".gz"), &n);
    const char *lb = path_in(d, "ok", TRAIN_LBL ".gz");
    const char *p = tmp_path("img.gz");
    dt_dataset ds;
    dt_error err = {0};
    dt_status st;

    /* the compressed stream cut in half */
    write_bytes(p, gz, n / 2);
    st = dt_idx_load(p, lb, 0, 10, &ds, &err);
    assert_data_error(st, &err, &ds, p,
                      (const char *[]){"corrupt gzip stream", "unexpected end of file", NULL});
    /* only the 8-byte trailer missing: payload complete, stream not */
    write_bytes(p, gz, n - 8);
    st = dt_idx_load(p, lb, 0, 10, &ds, &err);
    assert_data_error(st, &err, &ds, p, (const char *[]){"unexpected end of file", NULL});
    /* CRC damaged */
    gz[n - 8] ^= 0x01;
    write_bytes(p, gz, n);
    st = dt_idx_load(p, lb, 0, 10, &ds, &err);
    assert_data_error(st, &err, &ds, p,
                      (const char *[]){"corrupt gzip stream", "incorrect data check", NULL});
    gz[n - 8] ^= 0x01;
    /* garbage after the gzip stream (gzip -d would merely warn) */
    unsigned char *g2 = malloc(n + 3);
    memcpy(g2, gz, n);
    memcpy(g2 + n, "xyz", 3);
    write_bytes(p, g2, n + 3);
    st = dt_idx_load(p, lb, 0, 10, &ds, &err);
    assert_data_error(st, &err, &ds, p,
                      (const char *[]){"trailing garbage after the end of the gzip stream", NULL});
    /* a lone 0x1f after the stream */
    g2[n] = 0x1f;
    write_bytes(p, g2, n + 1);
    st = dt_idx_load(p, lb, 0, 10, &ds, &err);
    assert_data_error(st, &err, &ds, p, (const char *[]){"trailing garbage", NULL});
    /* just the gzip magic */
    write_bytes(p, gz, 2);
    st = dt_idx_load(p, lb, 0, 10, &ds, &err);
    assert_data_error(st, &err, &ds, p, (const char *[]){"corrupt gzip stream", NULL});
    /* gzip header with a bad method byte */
    memcpy(g2, gz, n);
    g2[2] = 7;
    write_bytes(p, g2, n);
    st = dt_idx_load(p, lb, 0, 10, &ds, &err);
    assert_data_error(st, &err, &ds, p,
                      (const char *[]){"corrupt gzip stream", "unknown compression method", NULL});
    /* a gzip of an empty file */
    gzFile zf = gzopen(p, "wb");
    ck_assert_ptr_nonnull(zf);
    ck_assert_int_eq(gzclose(zf), Z_OK);
    st = dt_idx_load(p, lb, 0, 10, &ds, &err);
    assert_data_error(st, &err, &ds, p, (const char *[]){"empty file (decompressed)", NULL});
    free(g2);
    free(gz);
}
END_TEST

/* Two concatenated gzip members are one valid .gz (gzip -d accepts them). */
START_TEST(test_gzip_multi_member)
{
    const char *d = data_dir();
    size_t n;
    unsigned char *raw = read_bytes(path_in(d, "ok_raw", TRAIN_IMG), &n);
    const char *p = tmp_path("multi.gz");
    size_t cut = 7777; /* mid-header would also work; mid-sample here */
    for (int part = 0; part < 2; part++) {
        gzFile zf = gzopen(p, part ? "ab" : "wb");
        ck_assert_ptr_nonnull(zf);
        unsigned len = (unsigned)(part ? n - cut : cut);
        ck_assert_int_eq(gzwrite(zf, raw + (part ? cut : 0), len), (int)len);
        ck_assert_int_eq(gzclose(zf), Z_OK);
    }
    dt_dataset ds;
    dt_error err = {0};
    ck_assert_int_eq(dt_idx_load(p, path_in(d, "ok", TRAIN_LBL ".gz"), 0, 10, &ds, &err), DT_OK);
    ck_assert_int_eq(ds.n, 1024);
    ck_assert_int_eq(memcmp(ds.images, raw + 16, n - 16), 0);
    dt_dataset_free(&ds);
    free(raw);
}
END_TEST

/* ---- statistics and batches ---------------------------------------------------- */

static dt_dataset tiny(uint8_t *images, uint8_t *labels, long n, int h, int w)
{
    dt_dataset ds = {.n = n, .c = 1, .h = h, .w = w, .sample_size = (long)h * w,
                     .images = images, .labels = labels, .n_classes = 10};
    return ds;
}

START_TEST(test_stats)
{
    double mean, std;
    uint8_t a[4] = {0, 255, 0, 255}, la[2] = {0, 1};
    dt_dataset ds = tiny(a, la, 2, 1, 2);
    dt_dataset_stats(&ds, &mean, &std);
    ck_assert_double_eq_tol(mean, 0.5, 1e-15);
    ck_assert_double_eq_tol(std, 0.5, 1e-15);

    /* 0, 0.2, 0.4, 1: mean 0.4, population variance 0.56/4 = 0.14 */
    uint8_t b[4] = {0, 51, 102, 255};
    ds = tiny(b, la, 2, 2, 1);
    dt_dataset_stats(&ds, &mean, &std);
    ck_assert_double_eq_tol(mean, 0.4, 1e-15);
    ck_assert_double_eq_tol(std, sqrt(0.14), 1e-15);

    /* constant: std 0 */
    uint8_t c[3] = {17, 17, 17};
    ds = tiny(c, la, 1, 1, 3);
    dt_dataset_stats(&ds, &mean, &std);
    ck_assert_double_eq_tol(mean, 17 / 255.0, 1e-15);
    ck_assert_double_eq(std, 0.0);

    /* a larger set against a direct two-pass computation */
    enum { N = 5000 };
    static uint8_t big[N * 7];
    for (int i = 0; i < N * 7; i++) big[i] = (uint8_t)(dt_rand_u64(9, 9, (uint64_t)i) >> 56);
    ds = tiny(big, NULL, N, 7, 1);
    dt_dataset_stats(&ds, &mean, &std);
    double m = 0, v = 0;
    for (int i = 0; i < N * 7; i++) m += big[i] / 255.0;
    m /= N * 7;
    for (int i = 0; i < N * 7; i++) v += (big[i] / 255.0 - m) * (big[i] / 255.0 - m);
    ck_assert_double_eq_tol(mean, m, 1e-12);
    ck_assert_double_eq_tol(std, sqrt(v / (N * 7)), 1e-12);
    ck_assert_double_eq_tol(mean, 0.5, 0.01); /* uniform bytes */
}
END_TEST

START_TEST(test_gather)
{
    uint8_t img[6] = {0, 255, 51, 102, 255, 0}, lab[3] = {7, 8, 9};
    dt_dataset ds = tiny(img, lab, 3, 1, 2);
    uint32_t idx[3] = {2, 0, 2};
    float x[6];
    int y[3];
    dt_gather_batch(&ds, idx, 3, 0.5f, 0.25f, x, y);
    const float want[6] = {2.0f, -2.0f, -2.0f, 2.0f, 2.0f, -2.0f};
    for (int i = 0; i < 6; i++) ck_assert_float_eq_tol(x[i], want[i], 1e-6f);
    ck_assert_int_eq(y[0], 9);
    ck_assert_int_eq(y[1], 7);
    ck_assert_int_eq(y[2], 9);

    uint32_t one = 1;
    dt_gather_batch(&ds, &one, 1, 0.5f, 0.25f, x, y);
    ck_assert_float_eq_tol(x[0], -1.2f, 1e-6f); /* (0.2 - 0.5) / 0.25 */
    ck_assert_float_eq_tol(x[1], -0.4f, 1e-6f); /* (0.4 - 0.5) / 0.25 */
    ck_assert_int_eq(y[0], 8);

    /* mean 0, std 1: plain x/255 */
    dt_gather_batch(&ds, &one, 1, 0.0f, 1.0f, x, y);
    ck_assert_float_eq_tol(x[0], 0.2f, 1e-7f);
    ck_assert_float_eq_tol(x[1], 0.4f, 1e-7f);

    /* count 0 touches nothing */
    x[0] = 42.0f;
    dt_gather_batch(&ds, idx, 0, 0.0f, 1.0f, x, y);
    ck_assert_float_eq(x[0], 42.0f);

    /* normalised with its own statistics, a set has mean 0 and std 1 */
    enum { N = 300, SS = 10 };
    static uint8_t big[N * SS], bl[N];
    static uint32_t all[N];
    static float bx[N * SS];
    static int by[N];
    for (int i = 0; i < N * SS; i++) big[i] = (uint8_t)(dt_rand_u64(3, 3, (uint64_t)i) >> 56);
    for (int i = 0; i < N; i++) all[i] = (uint32_t)i, bl[i] = (uint8_t)(i % 10);
    ds = tiny(big, bl, N, 1, SS);
    double mean, std;
    dt_dataset_stats(&ds, &mean, &std);
    dt_gather_batch(&ds, all, N, (float)mean, (float)std, bx, by);
    double m = 0, v = 0;
    for (int i = 0; i < N * SS; i++) m += bx[i];
    m /= N * SS;
    for (int i = 0; i < N * SS; i++) v += (bx[i] - m) * (bx[i] - m);
    ck_assert_double_eq_tol(m, 0.0, 1e-5);
    ck_assert_double_eq_tol(sqrt(v / (N * SS)), 1.0, 1e-5);
    ck_assert_int_eq(by[123], 3);
}
END_TEST

/* ---- epoch permutation ------------------------------------------------------ */

static int is_permutation(const uint32_t *p, long n)
{
    char *seen = calloc((size_t)n + 1, 1);
    int ok = 1;
    for (long i = 0; i < n && ok; i++) {
        if (p[i] >= (uint64_t)n || seen[p[i]]) ok = 0;
        else seen[p[i]] = 1;
    }
    free(seen);
    return ok;
}

/* The algorithm as documented in data.c, written out independently. */
static void reference_permutation(uint64_t seed, uint64_t epoch, uint32_t *p, long n)
{
    for (long i = 0; i < n; i++) p[i] = (uint32_t)i;
    for (long i = n - 1; i >= 1; i--) {
        uint64_t j = dt_rand_below(seed, 1 | (epoch << 8), (uint64_t)i, (uint64_t)i + 1);
        uint32_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
}

START_TEST(test_permutation)
{
    enum { N = 1000 };
    static uint32_t a[N], b[N], c[N], r[N];

    dt_epoch_permutation(0, 0, a, N);
    ck_assert(is_permutation(a, N));
    /* deterministic, and stateless: other draws in between change nothing */
    dt_epoch_permutation(5, 9, c, N);
    (void)dt_rand_u64(0, DT_STREAM_PERMUTATION, 17);
    (void)dt_rand_normal(0, DT_STREAM_INIT, 3);
    dt_epoch_permutation(0, 0, b, N);
    ck_assert_int_eq(memcmp(a, b, sizeof a), 0);
    /* it is the documented algorithm */
    for (uint64_t seed = 0; seed < 3; seed++)
        for (uint64_t epoch = 0; epoch < 3; epoch++) {
            dt_epoch_permutation(seed, epoch, b, N);
            reference_permutation(seed, epoch, r, N);
            ck_assert_int_eq(memcmp(b, r, sizeof b), 0);
        }
    /* not the identity; differs across epochs and seeds, in most positions */
    int fixed = 0;
    for (int i = 0; i < N; i++) fixed += a[i] == (uint32_t)i;
    ck_assert_int_lt(fixed, 10);
    const uint64_t others[][2] = {{0, 1}, {1, 0}, {0, 2}, {2, 0}, {1, 1}, {0, 256}, {256, 0}};
    for (size_t k = 0; k < sizeof others / sizeof others[0]; k++) {
        dt_epoch_permutation(others[k][0], others[k][1], b, N);
        ck_assert(is_permutation(b, N));
        int same = 0;
        for (int i = 0; i < N; i++) same += a[i] == b[i];
        ck_assert_msg(same < 10, "seed %llu epoch %llu: %d equal positions",
                      (unsigned long long)others[k][0], (unsigned long long)others[k][1], same);
    }
    /* the prefix of a longer permutation is not what a shorter one is (n is
     * an input), but each is a permutation; tiny sizes work */
    uint32_t one[1] = {99};
    dt_epoch_permutation(0, 0, one, 1);
    ck_assert_uint_eq(one[0], 0);
    dt_epoch_permutation(0, 0, one, 0);
    ck_assert_uint_eq(one[0], 0);
    for (long n = 2; n < 40; n++) {
        dt_epoch_permutation(7, (uint64_t)n, b, n);
        ck_assert(is_permutation(b, n));
    }
}
END_TEST

START_TEST(test_permutation_uniform)
{
    /* n = 3 over 6000 epochs: each of the 6 orders about 1000 times
     * (binomial sd ~ 29; +-150 is > 5 sd) */
    int count[6] = {0};
    for (uint64_t e = 0; e < 6000; e++) {
        uint32_t p[3];
        dt_epoch_permutation(42, e, p, 3);
        int code = (int)(p[0] * 2 + (p[1] > p[2]));
        count[code]++;
    }
    for (int k = 0; k < 6; k++) ck_assert_msg(abs(count[k] - 1000) < 150, "order %d: %d", k,
                                              count[k]);
    /* n = 10, 10000 epochs: element 0 lands on every position ~1000 times */
    int pos[10] = {0};
    for (uint64_t e = 0; e < 10000; e++) {
        uint32_t p[10];
        dt_epoch_permutation(3, e, p, 10);
        for (int i = 0; i < 10; i++)
            if (p[i] == 0) pos[i]++;
    }
    for (int i = 0; i < 10; i++) ck_assert_msg(abs(pos[i] - 1000) < 150, "pos %d: %d", i, pos[i]);
}
END_TEST

/* ---- updates per epoch and shards ------------------------------------------------- */

START_TEST(test_updates_per_epoch)
{
    ck_assert_int_eq(dt_updates_per_epoch(1024, 32, true), 32);
    ck_assert_int_eq(dt_updates_per_epoch(1024, 32, false), 32);
    ck_assert_int_eq(dt_updates_per_epoch(1000, 32, true), 31);
    ck_assert_int_eq(dt_updates_per_epoch(1000, 32, false), 32);
    ck_assert_int_eq(dt_updates_per_epoch(60000, 128, true), 468);
    ck_assert_int_eq(dt_updates_per_epoch(60000, 128, false), 469);
    ck_assert_int_eq(dt_updates_per_epoch(5, 10, true), 0);
    ck_assert_int_eq(dt_updates_per_epoch(5, 10, false), 1);
    ck_assert_int_eq(dt_updates_per_epoch(0, 10, false), 0);
    ck_assert_int_eq(dt_updates_per_epoch(7, 1, true), 7);
}
END_TEST

START_TEST(test_shard)
{
    /* plain ifs in the loops: a Check assertion per iteration costs a pipe
     * write in fork mode */
    for (long b = 0; b <= 300; b++)
        for (int P = 1; P <= 70; P++) {
            long prev_end = 0, lo = b, hi = 0;
            for (int r = 0; r < P; r++) {
                long s, e;
                dt_shard(b, r, P, &s, &e);
                if (s != (r * b) / P || s != prev_end || e < s) /* SPEC's floor; contiguous */
                    ck_abort_msg("b %ld P %d rank %d: [%ld, %ld), previous end %ld", b, P, r,
                                 s, e, prev_end);
                lo = e - s < lo ? e - s : lo;
                hi = e - s > hi ? e - s : hi;
                prev_end = e;
            }
            if (prev_end != b || hi - lo > 1 || (b < P && lo != 0)) /* covers [0, b), balanced */
                ck_abort_msg("b %ld P %d: end %ld, shard sizes %ld..%ld", b, P, prev_end, lo, hi);
        }
    /* one sample per rank: 16 x 8 ranks, global batch 128 */
    long s, e;
    dt_shard(128, 77, 128, &s, &e);
    ck_assert_int_eq(s, 77);
    ck_assert_int_eq(e, 78);
    /* no overflow for huge b */
    long big = 4000000000000000000L;
    dt_shard(big, 6, 7, &s, &e);
    ck_assert_int_eq(e, big);
    ck_assert_int_eq(s, (long)((__int128)6 * big / 7));
}
END_TEST

/* ---- the real Fashion-MNIST ------------------------------------------------------ */

/* Run on its own by ctest (unit_data_fashion_mnist, CK_RUN_CASE=fashion_mnist),
 * which main turns into a SKIP when the data set is not installed; a run of
 * this case without the data is a failure, never a silent pass. */
static int fashion_mnist_installed(void)
{
    static const char *const files[] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", FMNIST_DIR, files[i]);
        if (access(path, R_OK) != 0) return 0;
    }
    return 1;
}

START_TEST(test_fashion_mnist)
{
    const char *im = FMNIST_DIR "/train-images-idx3-ubyte.gz";
    const char *lb = FMNIST_DIR "/train-labels-idx1-ubyte.gz";
    ck_assert_msg(fashion_mnist_installed(), "%s is not installed", FMNIST_DIR);
    dt_dataset ds;
    dt_error err = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    dt_status st = dt_idx_load(im, lb, 0, 10, &ds, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_assert_msg(st == DT_OK, "%s", err.msg);
    printf("test_fashion_mnist: train set loaded in %.3f s\n",
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    ck_assert_int_eq(ds.n, 60000);
    ck_assert_int_eq(ds.h, 28);
    ck_assert_int_eq(ds.w, 28);
    ck_assert_int_eq(ds.sample_size, 784);
    ck_assert_int_eq(ds.n_classes, 10);
    long count[10] = {0};
    for (long i = 0; i < ds.n; i++) count[ds.labels[i]]++;
    for (int c = 0; c < 10; c++) ck_assert_int_eq(count[c], 6000);
    ck_assert_int_eq(ds.labels[0], 9); /* the first training image is an ankle boot */
    double mean, std;
    dt_dataset_stats(&ds, &mean, &std);
    /* the commonly quoted normalisation constants */
    ck_assert_double_eq_tol(mean, 0.2860, 5e-4);
    ck_assert_double_eq_tol(std, 0.3530, 5e-4);
    dt_dataset_free(&ds);

    st = dt_idx_load(FMNIST_DIR "/t10k-images-idx3-ubyte.gz",
                     FMNIST_DIR "/t10k-labels-idx1-ubyte.gz", 0, 10, &ds, &err);
    ck_assert_msg(st == DT_OK, "%s", err.msg);
    ck_assert_int_eq(ds.n, 10000);
    ck_assert_int_eq(ds.n_classes, 10);
    dt_dataset_free(&ds);
}
END_TEST

static Suite *data_suite(void)
{
    Suite *s = suite_create("data");

    TCase *load = tcase_create("load");
    tcase_add_test(load, test_load_ok);
    tcase_add_test(load, test_load_ok_is_learnable_pattern);
    tcase_add_test(load, test_limit);
    tcase_add_loop_test(load, test_broken_variant, 0, (int)(sizeof variants / sizeof variants[0]));
    tcase_set_timeout(load, 60);
    suite_add_tcase(s, load);

    TCase *hostile = tcase_create("hostile");
    /* unchecked: made once in the parent, removed even when a test fails */
    tcase_add_unchecked_fixture(hostile, tmp_setup, tmp_teardown);
    tcase_add_test(hostile, test_header_checks);
    tcase_add_test(hostile, test_label_checks);
    tcase_add_test(hostile, test_gzip_damage);
    tcase_add_test(hostile, test_gzip_multi_member);
    tcase_set_timeout(hostile, 60);
    suite_add_tcase(s, hostile);

    TCase *core = tcase_create("core");
    tcase_add_test(core, test_stats);
    tcase_add_test(core, test_gather);
    tcase_add_test(core, test_permutation);
    tcase_add_test(core, test_permutation_uniform);
    tcase_add_test(core, test_updates_per_epoch);
    tcase_add_test(core, test_shard);
    tcase_set_timeout(core, 60);
    suite_add_tcase(s, core);

    TCase *real = tcase_create("fashion_mnist");
    tcase_set_tags(real, "real_data"); /* ctest: CK_EXCLUDE_TAGS=real_data in unit_data */
    tcase_add_test(real, test_fashion_mnist);
    tcase_set_timeout(real, 300);
    suite_add_tcase(s, real);

    return s;
}

int main(void)
{
    const char *only = getenv("CK_RUN_CASE");
    if (only && strcmp(only, "fashion_mnist") == 0 && !fashion_mnist_installed())
        return dt_check_skip(FMNIST_DIR " is not installed (apt-get install dataset-fashion-mnist)");
    return dt_check_run(data_suite());
}
