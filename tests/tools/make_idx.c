/* make_idx.c - writes the small IDX data sets the data, CLI and MPI tests use.
 *
 *     make_idx DIR
 *
 * creates DIR/<set>/ with the four standard file names for each set:
 *   ok/       gzip; 1024 train and 256 test images of 28x28, 10 classes
 *   ok_raw/   the same bytes uncompressed
 * and broken variants, each a copy of ok/ with exactly one file damaged:
 *   truncated_images    train images: payload cut to 1000 bytes (inside the gzip)
 *   bad_magic           train images: magic written little-endian (0x03080000)
 *   count_mismatch      train labels: 1000 labels for 1024 images
 *   label_out_of_range  train labels: label 12 at index 345
 *   lying_header        train images: header claims 2^31 images
 *   corrupt_gzip        train images: first deflate block type set to the
 *                       reserved value 3 ("invalid block type" in any zlib)
 *   empty_file          train images: 0 bytes
 *   missing_file        train labels: absent
 *   trailing_garbage    train images: 100 extra bytes after the payload
 *
 * The data is learnable: class c lights a 7x7 cell of a 4x4 grid (c = cell
 * index, shifted by up to one pixel, each pixel on with probability 7/8)
 * over uniform background noise in [0, 48), so an MLP separates the classes
 * in a few hundred updates. Everything comes from a fixed SplitMix64 seed:
 * the output is the same on every run. A test tool: plain malloc and zlib. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#define ROWS 28
#define COLS 28
#define N_TRAIN 1024
#define N_TEST 256
#define N_CLASSES 10

typedef struct {
    unsigned char *p;
    size_t n;
} buf;

static void die(const char *what, const char *path)
{
    fprintf(stderr, "make_idx: %s: %s: %s\n", what, path, strerror(errno));
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "make_idx: out of memory\n");
        exit(1);
    }
    return p;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* An IDX3 image file and an IDX1 label file of n samples. */
static void make_pair(uint32_t n, uint64_t seed, buf *images, buf *labels)
{
    images->n = 16 + (size_t)n * ROWS * COLS;
    images->p = xmalloc(images->n);
    labels->n = 8 + (size_t)n;
    labels->p = xmalloc(labels->n);
    put_be32(images->p, 0x00000803);
    put_be32(images->p + 4, n);
    put_be32(images->p + 8, ROWS);
    put_be32(images->p + 12, COLS);
    put_be32(labels->p, 0x00000801);
    put_be32(labels->p + 4, n);

    /* balanced classes (i mod 10) in a shuffled order */
    uint64_t s = seed;
    unsigned char *lab = labels->p + 8;
    for (uint32_t i = 0; i < n; i++) lab[i] = (unsigned char)(i % N_CLASSES);
    for (uint32_t i = n - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(splitmix(&s) % (i + 1));
        unsigned char t = lab[i];
        lab[i] = lab[j];
        lab[j] = t;
    }
    for (uint32_t i = 0; i < n; i++) {
        int c = lab[i];
        unsigned char *img = images->p + 16 + (size_t)i * ROWS * COLS;
        for (int k = 0; k < ROWS * COLS; k++) img[k] = (unsigned char)(splitmix(&s) % 48);
        int dy = (int)(splitmix(&s) % 3) - 1, dx = (int)(splitmix(&s) % 3) - 1;
        int r0 = (c / 4) * 7 + dy, c0 = (c % 4) * 7 + dx;
        for (int r = r0; r < r0 + 7; r++)
            for (int q = c0; q < c0 + 7; q++) {
                uint64_t u = splitmix(&s);
                if (r < 0 || r >= ROWS || q < 0 || q >= COLS || u % 8 == 0) continue;
                img[r * COLS + q] = (unsigned char)(160 + (u >> 8) % 96);
            }
    }
}

static buf gzip_buf(buf in)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    /* 16 + 15: gzip wrapper; zlib writes mtime 0, so the output is stable */
    if (deflateInit2(&zs, 9, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        fprintf(stderr, "make_idx: deflateInit2 failed\n");
        exit(1);
    }
    buf out;
    size_t cap = deflateBound(&zs, (uLong)in.n) + 64;
    out.p = xmalloc(cap);
    zs.next_in = in.p;
    zs.avail_in = (uInt)in.n;
    zs.next_out = out.p;
    zs.avail_out = (uInt)cap;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END) {
        fprintf(stderr, "make_idx: deflate failed\n");
        exit(1);
    }
    out.n = cap - zs.avail_out;
    deflateEnd(&zs);
    return out;
}

static buf copy_buf(buf b)
{
    buf c = {xmalloc(b.n), b.n};
    memcpy(c.p, b.p, b.n);
    return c;
}

static void mkdir_p(const char *path)
{
    char tmp[4096];
    if (strlen(path) >= sizeof tmp) {
        fprintf(stderr, "make_idx: path too long\n");
        exit(1);
    }
    strcpy(tmp, path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0777) != 0 && errno != EEXIST) die("mkdir", tmp);
        *p = '/';
    }
    if (mkdir(tmp, 0777) != 0 && errno != EEXIST) die("mkdir", tmp);
}

enum { TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS, N_FILES };
static const char *const file_names[N_FILES] = {
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};

/* Write DIR/set/ with files[i] (NULL .p = absent) under the standard names,
 * with ".gz" when gz; stale files of the other spelling are removed so a
 * set never holds both. */
static void write_set(const char *dir, const char *set, const buf files[N_FILES], int gz)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, set);
    mkdir_p(path);
    for (int i = 0; i < N_FILES; i++) {
        snprintf(path, sizeof path, "%s/%s/%s%s", dir, set, file_names[i], gz ? "" : ".gz");
        unlink(path);
        snprintf(path, sizeof path, "%s/%s/%s%s", dir, set, file_names[i], gz ? ".gz" : "");
        unlink(path);
        if (!files[i].p) continue;
        FILE *f = fopen(path, "wb");
        if (!f) die("cannot create", path);
        if (files[i].n && fwrite(files[i].p, 1, files[i].n, f) != files[i].n) die("write", path);
        if (fclose(f) != 0) die("close", path);
    }
}

/* ok/ with file `which` replaced by `repl` (taking ownership). */
static void write_variant(const char *dir, const char *set, const buf gz[N_FILES], int which,
                          buf repl)
{
    buf files[N_FILES];
    memcpy(files, gz, sizeof files);
    files[which] = repl;
    write_set(dir, set, files, 1);
    free(repl.p);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_idx DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    buf raw[N_FILES], gz[N_FILES];
    make_pair(N_TRAIN, UINT64_C(20240601), &raw[TRAIN_IMAGES], &raw[TRAIN_LABELS]);
    make_pair(N_TEST, UINT64_C(20240602), &raw[TEST_IMAGES], &raw[TEST_LABELS]);
    for (int i = 0; i < N_FILES; i++) gz[i] = gzip_buf(raw[i]);

    write_set(dir, "ok", gz, 1);
    write_set(dir, "ok_raw", raw, 0);

    buf b;

    b = copy_buf(raw[TRAIN_IMAGES]);
    b.n = 16 + 1000;
    write_variant(dir, "truncated_images", gz, TRAIN_IMAGES, gzip_buf(b));
    free(b.p);

    b = copy_buf(raw[TRAIN_IMAGES]);
    b.p[0] = 0x03, b.p[1] = 0x08, b.p[2] = 0x00, b.p[3] = 0x00;
    write_variant(dir, "bad_magic", gz, TRAIN_IMAGES, gzip_buf(b));
    free(b.p);

    b = copy_buf(raw[TRAIN_LABELS]);
    b.n = 8 + 1000;
    put_be32(b.p + 4, 1000);
    write_variant(dir, "count_mismatch", gz, TRAIN_LABELS, gzip_buf(b));
    free(b.p);

    b = copy_buf(raw[TRAIN_LABELS]);
    b.p[8 + 345] = 12;
    write_variant(dir, "label_out_of_range", gz, TRAIN_LABELS, gzip_buf(b));
    free(b.p);

    b = copy_buf(raw[TRAIN_IMAGES]);
    put_be32(b.p + 4, UINT32_C(1) << 31);
    write_variant(dir, "lying_header", gz, TRAIN_IMAGES, gzip_buf(b));
    free(b.p);

    /* byte 10 is the first deflate block header (after the 10-byte gzip
     * header with no optional fields): bits 1-2 = BTYPE, 3 is reserved */
    b = copy_buf(gz[TRAIN_IMAGES]);
    b.p[10] |= 0x06;
    write_variant(dir, "corrupt_gzip", gz, TRAIN_IMAGES, b);

    write_variant(dir, "empty_file", gz, TRAIN_IMAGES, (buf){xmalloc(1), 0});

    write_variant(dir, "missing_file", gz, TRAIN_LABELS, (buf){NULL, 0});

    b.n = raw[TRAIN_IMAGES].n + 100;
    b.p = xmalloc(b.n);
    memcpy(b.p, raw[TRAIN_IMAGES].p, raw[TRAIN_IMAGES].n);
    for (size_t i = raw[TRAIN_IMAGES].n; i < b.n; i++) b.p[i] = (unsigned char)(i * 37);
    write_variant(dir, "trailing_garbage", gz, TRAIN_IMAGES, gzip_buf(b));
    free(b.p);

    for (int i = 0; i < N_FILES; i++) {
        free(raw[i].p);
        free(gz[i].p);
    }
    printf("make_idx: wrote ok, ok_raw and 9 broken variants under %s\n", dir);
    return 0;
}
