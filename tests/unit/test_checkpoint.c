/* test_checkpoint.c - Check suite for checkpoint.c: CRC32C (both paths), the
 * v1 byte layout, round trips, retention, every verification failure (with
 * the caller's arrays left untouched), resume fallback, and write failures
 * (a file size limit; disk full, quota, I/O and permission errors injected
 * by tests/tools/fault_inject.c) that must leave the previous checkpoint
 * and `latest` as they were.
 *
 * Every test works in its own mkdtemp folder, removed by the fixture. Tests
 * that damage a file know the documented layout: header 88 bytes with its
 * own CRC at 84, payload, 4-byte trailer CRC. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check_main.h"
#include "dtrain/checkpoint.h"

/* internal entry points of checkpoint.c, exported for this suite */
uint32_t dt__crc32c_sw(uint32_t crc, const void *data, size_t len);
uint32_t dt__crc32c_hw(uint32_t crc, const void *data, size_t len);
int dt__crc32c_hw_available(void);

#define HDR 88
#define NP 1000

/* ---- fixture: a fresh folder per test ------------------------------------ */
static char tmpdir[256];
static char ckdir[512]; /* tmpdir/ck: created by dt_ckpt_write (mkdir -p) */

/* Each test's folder lives under one root that main creates and removes
 * after the run: a failed assertion ends a forked test without the checked
 * teardown, and the root still goes. */
static char rootdir[128];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "%s/t_XXXXXX", rootdir);
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(ckdir, sizeof ckdir, "%s/ck", tmpdir);
}

static void teardown(void) { dt_check_rm_rf(tmpdir); }

/* ---- helpers -------------------------------------------------------------- */
static uint64_t xs_state = 0x9E3779B97F4A7C15u;
static uint64_t xs(void)
{
    xs_state ^= xs_state << 13;
    xs_state ^= xs_state >> 7;
    xs_state ^= xs_state << 17;
    return xs_state;
}

static float *arena(size_t n, uint32_t seed)
{
    float *a = malloc(n * sizeof *a + 1);
    ck_assert_ptr_nonnull(a);
    for (size_t i = 0; i < n; i++) {
        uint32_t bits = (uint32_t)(i * 2654435761u) ^ seed;
        memcpy(&a[i], &bits, 4); /* any bit pattern, NaN payloads included */
    }
    return a;
}

static dt_ckpt_header make_header(uint64_t n, uint32_t slots, int64_t step)
{
    dt_ckpt_header h = {
        .layout_hash = 0x1122334455667788u,
        .config_hash = 0xa1b2c3d4e5f60718u,
        .n_params = n,
        .optimizer = 5,
        .slots = slots,
        .step = step,
        .opt_t = step - 1,
        .skipped = 1,
        .seed = 0xdeadbeefcafef00du,
        .world_size = 128,
    };
    return h;
}

/* Write a checkpoint of NP params and `slots` arenas at `step`. */
static void write_ckpt(const char *dir, long keep, uint32_t slots, int64_t step, char *path_out)
{
    dt_ckpt_header h = make_header(NP, slots, step);
    float *p = arena(NP, (uint32_t)step);
    float *s0 = arena(NP, (uint32_t)step + 1000), *s1 = arena(NP, (uint32_t)step + 2000);
    const float *st[2] = {s0, s1};
    dt_error err = {0};
    char path[1024];
    dt_status rc = dt_ckpt_write(dir, keep, &h, p, st, path, sizeof path, &err);
    ck_assert_msg(rc == DT_OK, "write failed: %s", err.msg);
    if (path_out) strcpy(path_out, path);
    free(p);
    free(s0);
    free(s1);
}

static long file_size(const char *path)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return (long)st.st_size;
}

static unsigned char *slurp(const char *path, long *n)
{
    *n = file_size(path);
    unsigned char *b = malloc((size_t)*n + 1);
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fread(b, 1, (size_t)*n, f), (size_t)*n);
    fclose(f);
    return b;
}

static void spit(const char *path, const unsigned char *b, long n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, (size_t)n, f), (size_t)n);
    ck_assert_int_eq(fclose(f), 0);
}

static void flip_bit(const char *path, long off, int bit)
{
    long n;
    unsigned char *b = slurp(path, &n);
    if (off < 0) off += n;
    ck_assert(off >= 0 && off < n);
    b[off] ^= (unsigned char)(1u << bit);
    spit(path, b, n);
    free(b);
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const unsigned char *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }

/* Change a header field and recompute both CRCs, so that only the field is
 * wrong: the reader must catch it by meaning, not by checksum. */
static void patch_reseal(const char *path, int off, uint64_t v, int width)
{
    long n;
    unsigned char *b = slurp(path, &n);
    if (width == 4)
        put32(b + off, (uint32_t)v);
    else
        put64(b + off, v);
    put32(b + 84, dt_crc32c(0, b, 84));
    put32(b + n - 4, dt_crc32c(0, b, (size_t)n - 4));
    spit(path, b, n);
    free(b);
}

static int count_entries(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int c = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strstr(de->d_name, needle)) c++;
    closedir(d);
    return c;
}

static void read_text(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t k = fread(buf, 1, size - 1, f);
    buf[k] = '\0';
    fclose(f);
}

/* Caller arrays pre-filled with a sentinel; `untouched` proves a failed read
 * did not write a single float. */
typedef struct {
    float *p, *s0, *s1;
    float *st[2];
    dt_ckpt_header got;
} sink;

#define SENTINEL 0x7fa5a5a5u

static void sink_init(sink *k, size_t n)
{
    k->p = malloc(n * 4 + 4);
    k->s0 = malloc(n * 4 + 4);
    k->s1 = malloc(n * 4 + 4);
    uint32_t b = SENTINEL;
    for (size_t i = 0; i < n; i++) {
        memcpy(&k->p[i], &b, 4);
        memcpy(&k->s0[i], &b, 4);
        memcpy(&k->s1[i], &b, 4);
    }
    k->st[0] = k->s0;
    k->st[1] = k->s1;
    memset(&k->got, 0xab, sizeof k->got);
}

static int all_sentinel(const float *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &a[i], 4);
        if (b != SENTINEL) return 0;
    }
    return 1;
}

static void sink_check_untouched(const sink *k, size_t n)
{
    ck_assert(all_sentinel(k->p, n));
    ck_assert(all_sentinel(k->s0, n));
    ck_assert(all_sentinel(k->s1, n));
    dt_ckpt_header g;
    memset(&g, 0xab, sizeof g);
    ck_assert(memcmp(&g, &k->got, sizeof g) == 0);
}

static void sink_free(sink *k)
{
    free(k->p);
    free(k->s0);
    free(k->s1);
}

/* Read `path` against `expect`; it must fail with DT_EDATA, a message that
 * starts with the path and contains `what`, and leave the sink untouched. */
static void expect_fail(const char *path, const dt_ckpt_header *expect, const char *what)
{
    sink k;
    sink_init(&k, NP);
    dt_error err = {0};
    dt_status rc = dt_ckpt_read(path, expect, k.p, k.st, &k.got, &err);
    ck_assert_msg(rc == DT_EDATA, "expected DT_EDATA for '%s', got %d (%s)", what, rc, err.msg);
    ck_assert_int_eq(err.code, DT_EDATA);
    ck_assert_msg(strncmp(err.msg, path, strlen(path)) == 0, "message does not start with path: %s",
                  err.msg);
    ck_assert_msg(strstr(err.msg, what) != NULL, "expected '%s' in: %s", what, err.msg);
    sink_check_untouched(&k, NP);
    sink_free(&k);
}

/* ---- CRC32C --------------------------------------------------------------- */
START_TEST(test_crc_check_value)
{
    const char *s = "123456789";
    ck_assert_uint_eq(dt_crc32c(0, s, 9), 0xE3069283u);
    ck_assert_uint_eq(dt__crc32c_sw(0, s, 9), 0xE3069283u);
    ck_assert_uint_eq(dt_crc32c(0, "", 0), 0);
    /* RFC 3720 B.4: 32 bytes of zeros, of 0xff, and an ascending run */
    unsigned char z[32] = {0}, f[32], inc[32];
    memset(f, 0xff, sizeof f);
    for (int i = 0; i < 32; i++) inc[i] = (unsigned char)i;
    ck_assert_uint_eq(dt__crc32c_sw(0, z, 32), 0x8A9136AAu);
    ck_assert_uint_eq(dt__crc32c_sw(0, f, 32), 0x62A8AB43u);
    ck_assert_uint_eq(dt__crc32c_sw(0, inc, 32), 0x46DD794Eu);
    /* chainable */
    ck_assert_uint_eq(dt_crc32c(dt_crc32c(0, s, 4), s + 4, 5), 0xE3069283u);
    ck_assert_uint_eq(dt__crc32c_sw(dt__crc32c_sw(0, s, 1), s + 1, 8), 0xE3069283u);
    if (dt__crc32c_hw_available()) {
        ck_assert_uint_eq(dt__crc32c_hw(0, s, 9), 0xE3069283u);
        ck_assert_uint_eq(dt__crc32c_hw(0, z, 32), 0x8A9136AAu);
        ck_assert_uint_eq(dt__crc32c_hw(0, f, 32), 0x62A8AB43u);
        ck_assert_uint_eq(dt__crc32c_hw(0, inc, 32), 0x46DD794Eu);
        ck_assert_uint_eq(dt__crc32c_hw(dt__crc32c_hw(0, s, 3), s + 3, 6), 0xE3069283u);
    } else {
        fprintf(stderr, "test_crc_check_value: no SSE4.2, hardware path not tested\n");
    }
}
END_TEST

START_TEST(test_crc_paths_agree_on_random_buffers)
{
    enum { MAX = 20000 };
    unsigned char *buf = malloc(MAX + 16);
    for (size_t i = 0; i < MAX + 16; i++) buf[i] = (unsigned char)xs();
    int hw = dt__crc32c_hw_available();
    for (int trial = 0; trial < 400; trial++) {
        size_t len = (size_t)(xs() % MAX) | 1; /* odd lengths */
        size_t off = (size_t)(xs() % 16);      /* every alignment */
        uint32_t sw = dt__crc32c_sw(0, buf + off, len);
        /* the bit-at-a-time definition, on short buffers */
        if (len < 300) {
            uint32_t c = ~0u;
            for (size_t i = 0; i < len; i++) {
                c ^= buf[off + i];
                for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
            }
            ck_assert_uint_eq(sw, ~c);
        }
        ck_assert_uint_eq(dt_crc32c(0, buf + off, len), sw);
        if (hw) {
            ck_assert_uint_eq(dt__crc32c_hw(0, buf + off, len), sw);
            size_t cut = len / 3;
            ck_assert_uint_eq(dt__crc32c_hw(dt__crc32c_hw(0, buf + off, cut), buf + off + cut,
                                            len - cut),
                              sw);
        }
    }
    free(buf);
}
END_TEST

/* ---- format and round trip ---------------------------------------------- */
START_TEST(test_roundtrip_slots)
{
    uint32_t slots = (uint32_t)_i; /* 0, 1, 2, and 3 (adam's two + an averaged copy) */
    uint64_t n = 70001;            /* crosses the 64 KiB buffer, odd */
    dt_ckpt_header h = make_header(n, slots, 42);
    float *p = arena(n, 1), *s0 = arena(n, 2), *s1 = arena(n, 3), *s2 = arena(n, 4);
    /* specials that a float round trip through text or arithmetic would lose */
    p[0] = -0.0f;
    p[1] = 1e-45f; /* denormal */
    uint32_t qnan = 0x7fc12345u;
    memcpy(&p[2], &qnan, 4);
    const float *st[3] = {s0, s1, s2};
    dt_error err = {0};
    char path[1024];
    ck_assert_int_eq(dt_ckpt_write(ckdir, 3, &h, p, slots ? st : NULL, path, sizeof path, &err),
                     DT_OK);
    char want[1024];
    snprintf(want, sizeof want, "%s/ckpt-000000000042.dtck", ckdir);
    ck_assert_str_eq(path, want);
    ck_assert_int_eq(file_size(path), HDR + 4 * (long)n * (1 + slots) + 4);

    char latest[1024], text[256];
    snprintf(latest, sizeof latest, "%s/latest", ckdir);
    read_text(latest, text, sizeof text);
    ck_assert_str_eq(text, "ckpt-000000000042.dtck\n");
    ck_assert_int_eq(count_entries(ckdir, ".tmp"), 0);

    float *q = malloc(n * 4), *r0 = malloc(n * 4), *r1 = malloc(n * 4), *r2 = malloc(n * 4);
    float *rst[3] = {r0, r1, r2};
    dt_ckpt_header got;
    memset(&got, 0, sizeof got);
    ck_assert_int_eq(dt_ckpt_read(path, &h, q, slots ? rst : NULL, &got, &err), DT_OK);
    ck_assert(got.layout_hash == h.layout_hash && got.config_hash == h.config_hash &&
              got.n_params == h.n_params && got.optimizer == h.optimizer &&
              got.slots == h.slots && got.step == h.step && got.opt_t == h.opt_t &&
              got.skipped == h.skipped && got.seed == h.seed && got.world_size == h.world_size);
    ck_assert_uint_eq(got.seed, h.seed);
    ck_assert_int_eq(got.step, 42);
    ck_assert_int_eq(got.opt_t, 41);
    ck_assert_int_eq(got.skipped, 1);
    ck_assert_uint_eq(got.world_size, 128);
    ck_assert(memcmp(q, p, n * 4) == 0);
    if (slots > 0) ck_assert(memcmp(r0, s0, n * 4) == 0);
    if (slots > 1) ck_assert(memcmp(r1, s1, n * 4) == 0);
    if (slots > 2) ck_assert(memcmp(r2, s2, n * 4) == 0);

    /* resume by explicit path returns the same */
    memset(q, 0, n * 4);
    char used[1024];
    ck_assert_int_eq(dt_ckpt_resume(path, "/nonexistent", &h, q, slots ? rst : NULL, &got, used,
                                    sizeof used, NULL, NULL, &err),
                     DT_OK);
    ck_assert_str_eq(used, path);
    ck_assert(memcmp(q, p, n * 4) == 0);
    free(p), free(s0), free(s1), free(s2), free(q), free(r0), free(r1), free(r2);
}
END_TEST

START_TEST(test_byte_layout_is_little_endian)
{
    dt_ckpt_header h = make_header(2, 1, 7);
    float p[2] = {1.0f, -2.5f}, s[2] = {0.5f, 3.0f};
    const float *st[1] = {s};
    dt_error err = {0};
    char path[1024];
    ck_assert_int_eq(dt_ckpt_write(ckdir, 1, &h, p, st, path, sizeof path, &err), DT_OK);
    long n;
    unsigned char *b = slurp(path, &n);
    ck_assert_int_eq(n, HDR + 16 + 4);
    ck_assert(memcmp(b, "DTRAINCK", 8) == 0);
    ck_assert_uint_eq(get32(b + 8), 1);
    ck_assert(b[12] == 0x04 && b[13] == 0x03 && b[14] == 0x02 && b[15] == 0x01);
    ck_assert_uint_eq(get64(b + 16), h.layout_hash);
    ck_assert_uint_eq(get64(b + 24), h.config_hash);
    ck_assert_uint_eq(get64(b + 32), 2);
    ck_assert_uint_eq(get32(b + 40), 5);
    ck_assert_uint_eq(get32(b + 44), 1);
    ck_assert_uint_eq(get64(b + 48), 7);
    ck_assert_uint_eq(get64(b + 56), 6);
    ck_assert_uint_eq(get64(b + 64), 1);
    ck_assert_uint_eq(get64(b + 72), h.seed);
    ck_assert_uint_eq(get32(b + 80), 128);
    ck_assert_uint_eq(get32(b + 84), dt_crc32c(0, b, 84));
    /* 1.0f = 0x3f800000, -2.5f = 0xc0200000, 0.5f = 0x3f000000, 3.0f = 0x40400000 */
    ck_assert_uint_eq(get32(b + HDR), 0x3f800000u);
    ck_assert_uint_eq(get32(b + HDR + 4), 0xc0200000u);
    ck_assert_uint_eq(get32(b + HDR + 8), 0x3f000000u);
    ck_assert_uint_eq(get32(b + HDR + 12), 0x40400000u);
    ck_assert_uint_eq(get32(b + n - 4), dt_crc32c(0, b, (size_t)n - 4));
    free(b);
}
END_TEST

START_TEST(test_keep_prunes_to_newest)
{
    /* foreign files in the folder must survive retention */
    ck_assert_int_eq(mkdir(ckdir, 0755), 0);
    char other[1024];
    snprintf(other, sizeof other, "%s/notes.txt", ckdir);
    spit(other, (const unsigned char *)"x", 1);
    snprintf(other, sizeof other, "%s/ckpt-abc.dtck", ckdir);
    spit(other, (const unsigned char *)"x", 1);

    /* steps chosen so that numeric and name order differ only by padding */
    int64_t steps[] = {1, 2, 3, 10, 100};
    char last[1024];
    for (size_t i = 0; i < 5; i++) write_ckpt(ckdir, 2, 1, steps[i], last);
    ck_assert_int_eq(count_entries(ckdir, ".dtck"), 3); /* two + ckpt-abc */
    char p[1024];
    snprintf(p, sizeof p, "%s/ckpt-000000000100.dtck", ckdir);
    ck_assert_int_eq(access(p, F_OK), 0);
    ck_assert_str_eq(p, last);
    snprintf(p, sizeof p, "%s/ckpt-000000000010.dtck", ckdir);
    ck_assert_int_eq(access(p, F_OK), 0);
    snprintf(p, sizeof p, "%s/ckpt-000000000003.dtck", ckdir);
    ck_assert_int_ne(access(p, F_OK), 0);
    ck_assert_int_eq(count_entries(ckdir, "notes.txt"), 1);
    ck_assert_int_eq(count_entries(ckdir, ".tmp"), 0);
    char latest[1024], text[256];
    snprintf(latest, sizeof latest, "%s/latest", ckdir);
    read_text(latest, text, sizeof text);
    ck_assert_str_eq(text, "ckpt-000000000100.dtck\n");

    /* writing an older step (run resumed from an older file) never removes
     * the file just written, and latest follows it */
    write_ckpt(ckdir, 1, 1, 5, last);
    ck_assert_int_eq(access(last, F_OK), 0);
    read_text(latest, text, sizeof text);
    ck_assert_str_eq(text, "ckpt-000000000005.dtck\n");
}
END_TEST

/* ---- verification failures -------------------------------------------- */
START_TEST(test_truncated)
{
    char path[1024];
    write_ckpt(ckdir, 1, 2, 9, path);
    dt_ckpt_header h = make_header(NP, 2, 9);
    long n;
    unsigned char *orig = slurp(path, &n);
    long lens[] = {0, 4, 12, 40, HDR - 1, HDR, HDR + 3, HDR + 4, n / 2, n - 5, n - 1};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        spit(path, orig, lens[i]);
        expect_fail(path, &h, "truncated: ");
    }
    /* the exact expectation is in the message */
    spit(path, orig, n - 1);
    char want[128];
    snprintf(want, sizeof want, "truncated: %ld bytes, expected %ld", n - 1, n);
    expect_fail(path, &h, want);
    /* one byte too many */
    unsigned char *more = malloc((size_t)n + 1);
    memcpy(more, orig, (size_t)n);
    more[n] = 0;
    spit(path, more, n + 1);
    expect_fail(path, &h, "trailing data");
    free(more);
    free(orig);
}
END_TEST

START_TEST(test_bit_flips)
{
    char path[1024];
    dt_ckpt_header h = make_header(NP, 1, 3);
    long n = HDR + 4 * NP * 2 + 4;
    struct {
        long off;
        int bit;
        const char *what;
    } cases[] = {
        {0, 0, "bad magic"},
        {7, 7, "bad magic"},
        {8, 1, "format version 3 is not supported"},
        {13, 0, "byte order mark"},
        {16, 3, "checksum mismatch"}, /* layout hash */
        {32, 0, "checksum mismatch"}, /* n_params: must not be called "truncated" */
        {39, 7, "checksum mismatch"}, /* n_params high byte */
        {44, 1, "checksum mismatch"}, /* slots */
        {48, 0, "checksum mismatch"}, /* step */
        {80, 2, "checksum mismatch"}, /* world size */
        {84, 5, "checksum mismatch"}, /* header CRC */
        {HDR, 0, "checksum mismatch"},
        {HDR + 4 * NP + 1, 6, "checksum mismatch"}, /* first state arena */
        {n - 5, 7, "checksum mismatch"},
        {n - 4, 0, "checksum mismatch"}, /* trailer */
        {n - 1, 7, "checksum mismatch"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_ckpt(ckdir, 1, 1, 3, path);
        ck_assert_int_eq(file_size(path), n);
        flip_bit(path, cases[i].off, cases[i].bit);
        expect_fail(path, &h, cases[i].what);
    }
}
END_TEST

START_TEST(test_identity_mismatches)
{
    char path[1024];
    write_ckpt(ckdir, 1, 2, 11, path);
    dt_ckpt_header h = make_header(NP, 2, 11);

    dt_ckpt_header e = h;
    e.layout_hash ^= 1;
    expect_fail(path, &e, "written for another model (layout hash 1122334455667788, this model "
                          "1122334455667789)");
    e = h;
    e.n_params = NP - 1; /* caller arrays hold NP, so NP - 1 is safe to hand in */
    expect_fail(path, &e, "written for another model (1000 parameters, this model has 999)");
    e = h;
    e.config_hash = 0x42;
    expect_fail(path, &e, "written with another configuration (config hash a1b2c3d4e5f60718, "
                          "this run 0000000000000042)");
    e = h;
    e.optimizer = 0;
    expect_fail(path, &e, "written for optimizer 5");
    e = h;
    e.slots = 1;
    expect_fail(path, &e, "written for optimizer 5 (2 state slots)");
    /* the same optimizer with one arena more or less: an averaged copy */
    expect_fail(path, &e, "optimizer.average keeps one more: a run with averaging resumes only "
                          "from a checkpoint with its averaged copy");

    /* the untouched expectation still reads */
    sink k;
    sink_init(&k, NP);
    dt_error err = {0};
    ck_assert_int_eq(dt_ckpt_read(path, &h, k.p, k.st, &k.got, &err), DT_OK);
    ck_assert(!all_sentinel(k.p, NP));
    ck_assert_int_eq(k.got.step, 11);
    sink_free(&k);
}
END_TEST

START_TEST(test_bad_magic_and_future_version)
{
    char path[1024];
    dt_ckpt_header h = make_header(NP, 0, 4);
    snprintf(path, sizeof path, "%s/garbage", tmpdir);
    spit(path, (const unsigned char *)"hello, this is not a checkpoint at all......", 44);
    expect_fail(path, &h, "not a dtrain checkpoint (bad magic)");
    spit(path, (const unsigned char *)"abc", 3);
    expect_fail(path, &h, "not a dtrain checkpoint (bad magic)");

    /* otherwise valid files, resealed: only the field is wrong */
    write_ckpt(ckdir, 1, 0, 4, path);
    patch_reseal(path, 8, 2, 4);
    expect_fail(path, &h, "format version 2 is not supported (this dtrain reads 1)");
    write_ckpt(ckdir, 1, 0, 4, path);
    patch_reseal(path, 12, 0x04030201u, 4);
    expect_fail(path, &h, "byte order mark reads 0x04030201, expected 0x01020304 (written in "
                          "the wrong byte order)");

    /* a lying header with valid CRCs: refused by size, nothing allocated */
    write_ckpt(ckdir, 1, 0, 4, path);
    patch_reseal(path, 32, UINT64_C(1) << 40, 8);
    uint64_t before = dt_alloc_count();
    expect_fail(path, &h, "truncated: 4092 bytes, expected 4398046511196");
    ck_assert_uint_le(dt_alloc_count() - before, 1); /* the 64 KiB scratch buffer at most */
    patch_reseal(path, 32, UINT64_MAX, 8);
    expect_fail(path, &h, "truncated: ");
    write_ckpt(ckdir, 1, 0, 4, path);
    patch_reseal(path, 44, 7, 4);
    expect_fail(path, &h, "7 optimizer state arenas");

    /* missing file, a folder */
    snprintf(path, sizeof path, "%s/nope.dtck", tmpdir);
    expect_fail(path, &h, "cannot open: No such file");
    expect_fail(tmpdir, &h, "not a regular file");
}
END_TEST

/* ---- resume ------------------------------------------------------------- */
typedef struct {
    int calls;
    char last[2048];
} warns;

static void on_warn(void *ctx, const char *msg)
{
    warns *w = ctx;
    w->calls++;
    snprintf(w->last, sizeof w->last, "%s", msg);
}

static dt_status resume_latest(const dt_ckpt_header *h, sink *k, char *used, warns *w,
                               dt_error *err)
{
    return dt_ckpt_resume("latest", ckdir, h, k->p, k->st, &k->got, used, 1024, on_warn, w, err);
}

START_TEST(test_resume_latest_ok)
{
    char p3[1024];
    for (int s = 1; s <= 3; s++) write_ckpt(ckdir, 5, 2, s, p3);
    dt_ckpt_header h = make_header(NP, 2, 0);
    sink k;
    sink_init(&k, NP);
    warns w = {0};
    dt_error err = {0};
    char used[1024];
    ck_assert_int_eq(resume_latest(&h, &k, used, &w, &err), DT_OK);
    ck_assert_str_eq(used, p3);
    ck_assert_int_eq(k.got.step, 3);
    ck_assert_int_eq(w.calls, 0);
    float *want = arena(NP, 3);
    ck_assert(memcmp(k.p, want, NP * 4) == 0);
    free(want);
    sink_free(&k);
}
END_TEST

START_TEST(test_resume_falls_back_when_newest_damaged)
{
    char p2[1024], p3[1024];
    write_ckpt(ckdir, 5, 1, 1, NULL);
    write_ckpt(ckdir, 5, 1, 2, p2);
    write_ckpt(ckdir, 5, 1, 3, p3);
    flip_bit(p3, HDR + 100, 3);
    dt_ckpt_header h = make_header(NP, 1, 0);
    sink k;
    sink_init(&k, NP);
    warns w = {0};
    dt_error err = {0};
    char used[1024];
    ck_assert_int_eq(resume_latest(&h, &k, used, &w, &err), DT_OK);
    ck_assert_str_eq(used, p2);
    ck_assert_int_eq(k.got.step, 2);
    float *want = arena(NP, 2);
    ck_assert(memcmp(k.p, want, NP * 4) == 0);
    free(want);
    ck_assert_int_eq(w.calls, 1);
    ck_assert_msg(strstr(w.last, p3) && strstr(w.last, "checksum mismatch"), "warn: %s", w.last);
    sink_free(&k);
}
END_TEST

START_TEST(test_resume_without_latest_or_with_dangling_latest)
{
    char p2[1024], p3[1024], latest[1024];
    write_ckpt(ckdir, 5, 0, 2, p2);
    write_ckpt(ckdir, 5, 0, 3, p3);
    snprintf(latest, sizeof latest, "%s/latest", ckdir);
    dt_ckpt_header h = make_header(NP, 0, 0);
    dt_error err = {0};
    char used[1024];

    /* latest missing: the newest file, one warning */
    ck_assert_int_eq(unlink(latest), 0);
    sink k;
    sink_init(&k, NP);
    warns w = {0};
    ck_assert_int_eq(resume_latest(&h, &k, used, &w, &err), DT_OK);
    ck_assert_str_eq(used, p3);
    ck_assert_int_eq(w.calls, 1);
    ck_assert_ptr_nonnull(strstr(w.last, "latest"));
    sink_free(&k);

    /* latest names a file that is gone: the previous one */
    spit(latest, (const unsigned char *)"ckpt-000000000003.dtck\n", 23);
    ck_assert_int_eq(unlink(p3), 0);
    sink_init(&k, NP);
    memset(&w, 0, sizeof w);
    ck_assert_int_eq(resume_latest(&h, &k, used, &w, &err), DT_OK);
    ck_assert_str_eq(used, p2);
    ck_assert_int_eq(k.got.step, 2);
    ck_assert_int_eq(w.calls, 1);
    ck_assert_ptr_nonnull(strstr(w.last, "ckpt-000000000003.dtck"));
    sink_free(&k);

    /* latest holds nonsense (a path escaping the folder) */
    spit(latest, (const unsigned char *)"../../etc/passwd\n", 17);
    sink_init(&k, NP);
    memset(&w, 0, sizeof w);
    ck_assert_int_eq(resume_latest(&h, &k, used, &w, &err), DT_OK);
    ck_assert_str_eq(used, p2);
    ck_assert_int_eq(w.calls, 1);
    ck_assert_ptr_nonnull(strstr(w.last, "does not name a checkpoint"));
    sink_free(&k);
}
END_TEST

START_TEST(test_resume_none_usable)
{
    char p1[1024], p2[1024];
    write_ckpt(ckdir, 5, 1, 1, p1);
    write_ckpt(ckdir, 5, 1, 2, p2);
    flip_bit(p1, -1, 0);
    flip_bit(p2, HDR, 0);
    dt_ckpt_header h = make_header(NP, 1, 0);
    sink k;
    sink_init(&k, NP);
    warns w = {0};
    dt_error err = {0};
    char used[1024];
    ck_assert_int_eq(resume_latest(&h, &k, used, &w, &err), DT_EDATA);
    ck_assert_int_eq(err.code, DT_EDATA);
    char want[2200];
    snprintf(want, sizeof want, "no usable checkpoint in %s: %s: checksum mismatch", ckdir, p2);
    ck_assert_msg(strncmp(err.msg, want, strlen(want)) == 0, "got: %s", err.msg);
    ck_assert_int_eq(w.calls, 2);
    sink_check_untouched(&k, NP);

    /* wrong configuration everywhere is also "none usable" */
    write_ckpt(ckdir, 5, 1, 3, NULL);
    h.config_hash = 1;
    ck_assert_int_eq(resume_latest(&h, &k, used, &w, &err), DT_EDATA);
    ck_assert_ptr_nonnull(strstr(err.msg, "written with another configuration"));
    sink_check_untouched(&k, NP);

    /* explicit path: no fallback, no warning */
    h.config_hash = make_header(NP, 1, 0).config_hash;
    memset(&w, 0, sizeof w);
    ck_assert_int_eq(dt_ckpt_resume(p2, ckdir, &h, k.p, k.st, &k.got, used, sizeof used, on_warn,
                                    &w, &err),
                     DT_EDATA);
    ck_assert_int_eq(w.calls, 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "checksum mismatch"));
    sink_check_untouched(&k, NP);
    sink_free(&k);
}
END_TEST

START_TEST(test_resume_missing_or_empty_dir)
{
    dt_ckpt_header h = make_header(NP, 0, 0);
    sink k;
    sink_init(&k, NP);
    warns w = {0};
    dt_error err = {0};
    char used[1024];
    /* missing */
    ck_assert_int_eq(resume_latest(&h, &k, used, &w, &err), DT_EDATA);
    ck_assert_msg(strstr(err.msg, "no usable checkpoint in") && strstr(err.msg, ckdir) &&
                      strstr(err.msg, "No such file"),
                  "got: %s", err.msg);
    /* empty */
    ck_assert_int_eq(mkdir(ckdir, 0755), 0);
    ck_assert_int_eq(resume_latest(&h, &k, used, &w, &err), DT_EDATA);
    ck_assert_msg(strstr(err.msg, "no usable checkpoint in") && strstr(err.msg, "no ckpt-"),
                  "got: %s", err.msg);
    ck_assert_int_eq(w.calls, 0);
    sink_check_untouched(&k, NP);
    sink_free(&k);
}
END_TEST

/* ---- write failures ------------------------------------------------------ */
START_TEST(test_write_into_unwritable_dir)
{
    char file[1024], dir[1100];
    snprintf(file, sizeof file, "%s/plain", tmpdir);
    spit(file, (const unsigned char *)"x", 1);
    dt_ckpt_header h = make_header(NP, 0, 1);
    float *p = arena(NP, 1);
    dt_error err = {0};
    const char *dirs[2];
    snprintf(dir, sizeof dir, "%s/sub/deeper", file);
    dirs[0] = dir;  /* a folder under a regular file */
    dirs[1] = file; /* the regular file itself */
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(dt_ckpt_write(dirs[i], 2, &h, p, NULL, NULL, 0, &err), DT_EINTERNAL);
        ck_assert_int_eq(err.code, DT_EINTERNAL);
        ck_assert_msg(strstr(err.msg, file) && strstr(err.msg, "Not a directory"), "got: %s",
                      err.msg);
    }
    ck_assert_int_eq(count_entries(tmpdir, ".tmp"), 0);
    ck_assert_int_eq(file_size(file), 1);
    free(p);
}
END_TEST

START_TEST(test_write_failure_keeps_previous)
{
    /* a good checkpoint, then a write that hits the file size limit halfway */
    char p1[1024], latest[1024], text[256];
    write_ckpt(ckdir, 3, 1, 1, p1);
    snprintf(latest, sizeof latest, "%s/latest", ckdir);

    struct rlimit old, lim;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 100000; /* < the 8 MB of the next checkpoint */
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    uint64_t n = 1000000;
    dt_ckpt_header h = make_header(n, 1, 2);
    float *p = calloc(n, 4), *s = calloc(n, 4);
    const float *st[1] = {s};
    dt_error err = {0};
    dt_status rc = dt_ckpt_write(ckdir, 1, &h, p, st, NULL, 0, &err);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);

    ck_assert_int_eq(rc, DT_EINTERNAL);
    ck_assert_msg(strstr(err.msg, ".tmp.") && strstr(err.msg, "cannot write") &&
                      strstr(err.msg, strerror(EFBIG)),
                  "got: %s", err.msg);
    ck_assert_int_eq(count_entries(ckdir, ".tmp"), 0);
    ck_assert_int_eq(count_entries(ckdir, ".dtck"), 1);
    read_text(latest, text, sizeof text);
    ck_assert_str_eq(text, "ckpt-000000000001.dtck\n");
    dt_ckpt_header e = make_header(NP, 1, 0);
    sink k;
    sink_init(&k, NP);
    ck_assert_int_eq(dt_ckpt_read(p1, &e, k.p, k.st, &k.got, &err), DT_OK);
    ck_assert_int_eq(k.got.step, 1);
    sink_free(&k);
    free(p);
    free(s);
}
END_TEST

START_TEST(test_write_rejects_bad_arguments)
{
    dt_ckpt_header h = make_header(4, DT_CKPT_MAX_SLOTS + 1, 1);
    float p[4] = {0};
    dt_error err = {0};
    ck_assert_int_eq(dt_ckpt_write(ckdir, 1, &h, p, NULL, NULL, 0, &err), DT_EINTERNAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "state arenas"));
    h = make_header(4, 0, -1);
    ck_assert_int_eq(dt_ckpt_write(ckdir, 1, &h, p, NULL, NULL, 0, &err), DT_EINTERNAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "negative step"));
    ck_assert_int_eq(access(ckdir, F_OK), -1); /* nothing created */
}
END_TEST

/* ---- storage faults, injected (tests/tools/fault_inject.c) ---------------- */

/* Arm the injection for files under ckdir whose name contains `name`. */
static void arm_fault(const char *op, const char *errname, const char *after, const char *name)
{
    setenv("DT_FAULT_PATH", ckdir, 1);
    setenv("DT_FAULT_OP", op, 1);
    setenv("DT_FAULT_ERRNO", errname, 1);
    setenv("DT_FAULT_AFTER", after, 1);
    setenv("DT_FAULT_NAME", name, 1);
}

static void disarm_fault(void)
{
    unsetenv("DT_FAULT_PATH");
    unsetenv("DT_FAULT_OP");
    unsetenv("DT_FAULT_ERRNO");
    unsetenv("DT_FAULT_AFTER");
    unsetenv("DT_FAULT_NAME");
}

/* Step 1 is written; then step 2 meets the fault `i`. Whatever the fault,
 * the write fails with one message naming the file and the cause, no
 * temporary file is left, `latest` still names step 1, and a resume from
 * `latest` loads step 1. */
static const struct {
    const char *op, *err, *after, *name, *cause;
} ckpt_faults[] = {
    {"write", "ENOSPC", "0", "ckpt-", "No space left on device"},      /* full at once */
    {"write", "ENOSPC", "70000", "ckpt-", "No space left on device"},  /* full mid-payload */
    {"write", "EDQUOT", "3000", "ckpt-", "quota exceeded"},            /* quota */
    {"fsync", "EIO", "0", "ckpt-", "Input/output error"},              /* fsync */
    {"open", "EACCES", "0", "ckpt-", "Permission denied"},             /* unwritable */
    {"rename", "EIO", "0", "ckpt-", "cannot rename"},                  /* rename */
    {"write", "ENOSPC", "0", "latest", "No space left on device"},     /* the pointer */
    {"fsync", "EIO", "0", "latest", "Input/output error"},
};

START_TEST(test_storage_fault_keeps_latest)
{
    char p1[1024], latest[1024], text[256];
    write_ckpt(ckdir, 3, 2, 1, p1);
    snprintf(latest, sizeof latest, "%s/latest", ckdir);

    dt_ckpt_header h = make_header(NP * 40, 2, 2); /* 480 KB: several buffers */
    float *p = arena(NP * 40, 7), *s0 = arena(NP * 40, 8), *s1 = arena(NP * 40, 9);
    const float *st[2] = {s0, s1};
    dt_error err = {0};
    arm_fault(ckpt_faults[_i].op, ckpt_faults[_i].err, ckpt_faults[_i].after,
              ckpt_faults[_i].name);
    dt_status rc = dt_ckpt_write(ckdir, 3, &h, p, st, NULL, 0, &err);
    disarm_fault();
    free(p);
    free(s0);
    free(s1);

    ck_assert_int_eq(rc, DT_EINTERNAL);
    ck_assert_msg(strstr(err.msg, ckpt_faults[_i].cause) && strstr(err.msg, ckdir) &&
                      strstr(err.msg, ckpt_faults[_i].name),
                  "fault %d: got: %s", _i, err.msg);
    ck_assert_msg(!strchr(err.msg, '\n'), "one line: %s", err.msg);
    ck_assert_int_eq(count_entries(ckdir, ".tmp"), 0);
    read_text(latest, text, sizeof text);
    ck_assert_str_eq(text, "ckpt-000000000001.dtck\n");

    /* what --resume latest does: the previous checkpoint, intact */
    dt_ckpt_header e = make_header(NP, 2, 0);
    sink k;
    sink_init(&k, NP);
    warns w = {0};
    char used[1024];
    ck_assert_int_eq(resume_latest(&e, &k, used, &w, &err), DT_OK);
    ck_assert_str_eq(used, p1);
    ck_assert_int_eq(k.got.step, 1);
    ck_assert_int_eq(w.calls, 0);
    float *want = arena(NP, 1);
    ck_assert(memcmp(k.p, want, NP * 4) == 0);
    free(want);
    sink_free(&k);
}
END_TEST

/* A disk that is full already: the checkpoint folder cannot even be made. */
START_TEST(test_storage_fault_checkpoint_dir)
{
    dt_ckpt_header h = make_header(NP, 0, 1);
    float *p = arena(NP, 1);
    dt_error err = {0};
    arm_fault("mkdir", "ENOSPC", "0", "");
    dt_status rc = dt_ckpt_write(ckdir, 2, &h, p, NULL, NULL, 0, &err);
    disarm_fault();
    free(p);
    ck_assert_int_eq(rc, DT_EINTERNAL);
    ck_assert_msg(strstr(err.msg, "cannot create checkpoint.dir") && strstr(err.msg, ckdir) &&
                      strstr(err.msg, strerror(ENOSPC)),
                  "got: %s", err.msg);
    ck_assert_int_eq(access(ckdir, F_OK), -1);
}
END_TEST

static Suite *checkpoint_suite(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *crc = tcase_create("crc32c");
    tcase_add_test(crc, test_crc_check_value);
    tcase_add_test(crc, test_crc_paths_agree_on_random_buffers);
    tcase_set_timeout(crc, 60);
    suite_add_tcase(s, crc);

    TCase *tc = tcase_create("file");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_roundtrip_slots, 0, DT_CKPT_MAX_SLOTS + 1);
    tcase_add_test(tc, test_byte_layout_is_little_endian);
    tcase_add_test(tc, test_keep_prunes_to_newest);
    tcase_add_test(tc, test_truncated);
    tcase_add_test(tc, test_bit_flips);
    tcase_add_test(tc, test_identity_mismatches);
    tcase_add_test(tc, test_bad_magic_and_future_version);
    tcase_add_test(tc, test_resume_latest_ok);
    tcase_add_test(tc, test_resume_falls_back_when_newest_damaged);
    tcase_add_test(tc, test_resume_without_latest_or_with_dangling_latest);
    tcase_add_test(tc, test_resume_none_usable);
    tcase_add_test(tc, test_resume_missing_or_empty_dir);
    tcase_add_test(tc, test_write_into_unwritable_dir);
    tcase_add_test(tc, test_write_failure_keeps_previous);
    tcase_add_test(tc, test_write_rejects_bad_arguments);
    tcase_add_loop_test(tc, test_storage_fault_keeps_latest, 0, (int)DT_ARRAY_LEN(ckpt_faults));
    tcase_add_test(tc, test_storage_fault_checkpoint_dir);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    snprintf(rootdir, sizeof rootdir, "/tmp/dt_ckpt_XXXXXX");
    if (!mkdtemp(rootdir)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    int status = dt_check_run(checkpoint_suite());
    dt_check_rm_rf(rootdir);
    return status;
}
