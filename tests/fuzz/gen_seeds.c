/* gen_seeds.c - writes the generated seed inputs of tests/fuzz/corpus:
 *
 *     fuzz_gen_seeds OUTDIR
 *
 * creates OUTDIR/fuzz_idx/ and OUTDIR/fuzz_checkpoint/ with small valid and
 * broken inputs in the layouts fuzz_idx.c and fuzz_checkpoint.c describe
 * (IDX sets of 3 images of 4x4; checkpoints written by dt_ckpt_write with
 * the harness's fixed `expect`). The committed corpus is its output; the
 * config corpus is copied from configs/ and tests/cli/cases (README.md). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "dtrain/checkpoint.h"

static const char *out_root;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_gen_seeds: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void save(const char *target, const char *name, const unsigned char *pre, size_t npre,
                 const unsigned char *body, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out_root, target);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/%s/%s", out_root, target, name);
    FILE *f = fopen(path, "wb");
    if (!f) die(path);
    if ((npre && fwrite(pre, 1, npre, f) != npre) || (n && fwrite(body, 1, n, f) != n)) die(path);
    if (fclose(f) != 0) die(path);
}

/* ---- IDX ------------------------------------------------------------------ */
static size_t be(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
    return 4;
}

/* images: n x h x w, pixel = (i*31 + j*7) & 0xff */
static size_t images(unsigned char *b, uint32_t magic, uint32_t n, uint32_t h, uint32_t w,
                     size_t payload)
{
    size_t o = be(b, magic);
    o += be(b + o, n), o += be(b + o, h), o += be(b + o, w);
    for (size_t i = 0; i < payload; i++) b[o++] = (unsigned char)((i * 31 + i / 5 * 7) & 0xff);
    return o;
}

static size_t labels(unsigned char *b, uint32_t magic, uint32_t n, const unsigned char *v,
                     size_t k)
{
    size_t o = be(b, magic);
    o += be(b + o, n);
    memcpy(b + o, v, k);
    return o + k;
}

static size_t gz(unsigned char *dst, size_t cap, const unsigned char *src, size_t n)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) exit(1);
    zs.next_in = (unsigned char *)src, zs.avail_in = (uInt)n;
    zs.next_out = dst, zs.avail_out = (uInt)cap;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END) exit(1);
    deflateEnd(&zs);
    return cap - zs.avail_out;
}

/* flags, images bytes, labels bytes -> one fuzz_idx input */
static void idx_seed(const char *name, unsigned flags, const unsigned char *im, size_t ni,
                     const unsigned char *lb, size_t nl)
{
    unsigned char buf[4096];
    buf[0] = (unsigned char)flags, buf[1] = (unsigned char)ni, buf[2] = (unsigned char)(ni >> 8);
    memcpy(buf + 3, im, ni);
    memcpy(buf + 3 + ni, lb, nl);
    save("fuzz_idx", name, NULL, 0, buf, 3 + ni + nl);
}

static void idx_seeds(void)
{
    unsigned char im[512], lb[64], gim[1024], glb[256], t[1024];
    static const unsigned char l3[] = {2, 0, 9};
    size_t ni = images(im, 0x803, 3, 4, 4, 48), nl = labels(lb, 0x801, 3, l3, 3);
    idx_seed("ok_raw", 0x00, im, ni, lb, nl);
    idx_seed("ok_gzip_here", 0x05, im, ni, lb, nl);
    idx_seed("ok_two_members", 0x0f, im, ni, lb, nl);
    idx_seed("ok_limit1_classes10", 0x50, im, ni, lb, nl);
    idx_seed("ok_limit2", 0x24, im, ni, lb, nl);
    size_t ngi = gz(gim, sizeof gim, im, ni), ngl = gz(glb, sizeof glb, lb, nl);
    idx_seed("ok_gzip_file", 0x00, gim, ngi, glb, ngl);
    idx_seed("ok_gzip_after_magic", 0x0a, gim + 2, ngi - 2, glb + 2, ngl - 2);
    /* one image of 1x1, one label */
    static const unsigned char l1[] = {0};
    size_t n1 = images(t, 0x803, 1, 1, 1, 1);
    idx_seed("ok_1x1", 0x00, t, n1, lb, labels(lb, 0x801, 1, l1, 1));
    nl = labels(lb, 0x801, 3, l3, 3);

    /* broken, one thing each */
    idx_seed("truncated_images", 0x00, im, ni - 5, lb, nl);
    idx_seed("truncated_gzip", 0x00, gim, ngi - 6, glb, ngl);
    idx_seed("truncated_header", 0x00, im, 10, lb, nl);
    n1 = images(t, 0x03080000, 3, 4, 4, 48);
    idx_seed("bad_magic", 0x00, t, n1, lb, nl);
    n1 = images(t, 0x801, 3, 4, 4, 48);
    idx_seed("labels_as_images", 0x00, t, n1, lb, nl);
    n1 = images(t, 0x80b, 3, 4, 4, 48);
    idx_seed("element_type_int", 0x00, t, n1, lb, nl);
    n1 = images(t, 0x803, 0x80000000u, 4, 4, 48);
    idx_seed("lying_header", 0x00, t, n1, lb, nl);
    n1 = images(t, 0x803, 0xffffffffu, 0xffffffffu, 0xffffffffu, 8);
    idx_seed("overflow_header", 0x00, t, n1, lb, nl);
    n1 = images(t, 0x803, 3, 0, 4, 0);
    idx_seed("zero_rows", 0x00, t, n1, lb, nl);
    n1 = images(t, 0x803, 3, 4, 4, 60);
    idx_seed("trailing_garbage", 0x00, t, n1, lb, nl);
    memcpy(t, gim, ngi);
    memcpy(t + ngi, "garbage", 7);
    idx_seed("trailing_after_gzip", 0x00, t, ngi + 7, glb, ngl);
    memcpy(t, gim, ngi);
    t[ngi - 8] ^= 1; /* gzip trailer CRC */
    idx_seed("gzip_bad_crc", 0x00, t, ngi, glb, ngl);
    memcpy(t, gim, ngi);
    t[10] |= 6; /* first deflate block type 3 */
    idx_seed("gzip_bad_block", 0x00, t, ngi, glb, ngl);
    static const unsigned char l2[] = {2, 0};
    idx_seed("count_mismatch", 0x00, im, ni, lb, labels(lb, 0x801, 2, l2, 2));
    static const unsigned char l12[] = {2, 12, 9};
    idx_seed("label_out_of_range", 0x40, im, ni, lb, labels(lb, 0x801, 3, l12, 3));
    nl = labels(lb, 0x801, 3, l3, 3);
    idx_seed("empty_images", 0x00, im, 0, lb, nl);
    idx_seed("empty_labels", 0x00, im, ni, lb, 0);
}

/* ---- checkpoints ---------------------------------------------------------------- */
static size_t slurp(const char *path, unsigned char *b, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    size_t n = fread(b, 1, cap, f);
    fclose(f);
    return n;
}

static size_t write_ckpt(const char *tmp, uint64_t n_params, uint32_t slots, int64_t step,
                         unsigned char *b, size_t cap)
{
    dt_ckpt_header h = {.layout_hash = 0x1122334455667788ull,
                        .config_hash = 0x99aabbccddeeff00ull,
                        .n_params = n_params,
                        .optimizer = 5,
                        .slots = slots,
                        .step = step,
                        .opt_t = step - 1,
                        .skipped = 1,
                        .seed = 42,
                        .world_size = 2};
    float p[64], s0[64], s1[64];
    for (int i = 0; i < 64; i++) p[i] = 0.5f * (float)i - 3, s0[i] = 0.01f * (float)i, s1[i] = 1e-6f * (float)i;
    const float *st[2] = {s0, s1};
    char path[4096];
    dt_error err;
    if (dt_ckpt_write(tmp, 0, &h, p, st, path, sizeof path, &err) != DT_OK) {
        fprintf(stderr, "fuzz_gen_seeds: %s\n", err.msg);
        exit(1);
    }
    size_t n = slurp(path, b, cap);
    unlink(path);
    return n;
}

static void ck_seed(const char *name, unsigned mode, unsigned param, const unsigned char *b,
                    size_t n)
{
    unsigned char pre[2] = {(unsigned char)mode, (unsigned char)param};
    save("fuzz_checkpoint", name, pre, 2, b, n);
}

static void ckpt_seeds(void)
{
    char tmp[] = "/tmp/dtrain-gen-seeds-XXXXXX";
    if (!mkdtemp(tmp)) die("mkdtemp");
    unsigned char b[2048], t[2048];
    size_t n = write_ckpt(tmp, 5, 2, 7, b, sizeof b); /* the harness's fixed expect */
    ck_seed("ok_fixed_read", 0x02, 0, b, n);
    ck_seed("ok_own_header", 0x00, 0, b, n);
    ck_seed("ok_resume_path", 0x02, 1, b, n);
    ck_seed("ok_resume_latest", 0x1a, 0, b, n);
    ck_seed("ok_resume_no_latest", 0x0a, 0, b, n);
    ck_seed("ok_resume_with_older", 0x5a, 0, b, n);
    ck_seed("resume_latest_missing", 0x2a, 0, b, n);
    ck_seed("resume_latest_junk", 0x3a, 3, b, n);
    ck_seed("resume_latest_long", 0x3a, 8, b, n);
    ck_seed("other_model", 0x04, 0, b, n);
    ck_seed("other_config", 0x04, 4, b, n);
    ck_seed("other_slots", 0x04, 3, b, n);
    ck_seed("small_expect", 0x06, 0x13, b, n);
    size_t n0 = write_ckpt(tmp, 0, 0, 1, t, sizeof t);
    ck_seed("ok_empty_model", 0x00, 0, t, n0);
    size_t n1 = write_ckpt(tmp, 3, 1, 12, t, sizeof t);
    ck_seed("ok_one_slot", 0x00, 0, t, n1);
    ck_seed("ok_one_slot_small_expect", 0x06, 0x13, t, n1);
    size_t n2 = write_ckpt(tmp, 40, 2, 100, t, sizeof t);
    ck_seed("ok_40_params", 0x00, 0, t, n2);

    ck_seed("truncated", 0x02, 0, b, n - 7);
    ck_seed("truncated_header", 0x02, 0, b, 40);
    ck_seed("magic_only", 0x02, 0, b, 8);
    memcpy(t, b, n);
    t[n + 0] = 0; /* one byte of trailing data */
    ck_seed("trailing_byte", 0x03, 0, t, n + 1);
    memcpy(t, b, n);
    t[100] ^= 0x10;
    ck_seed("payload_bit_flip", 0x02, 0, t, n);
    memcpy(t, b, n);
    t[32] ^= 0x01; /* n_params, CRCs recomputed: a size mismatch behind the CRC */
    ck_seed("n_params_changed_crc_fixed", 0x03, 0, t, n);
    memcpy(t, b, n);
    t[44] = 3; /* slots 3 */
    ck_seed("slots_3_crc_fixed", 0x03, 0, t, n);
    memcpy(t, b, n);
    t[39] = 0x40; /* n_params ~2^62 */
    ck_seed("n_params_huge_crc_fixed", 0x03, 0, t, n);
    memcpy(t, b, n);
    t[8] = 2;
    ck_seed("version_2", 0x03, 0, t, n);
    memcpy(t, b, n);
    t[12] = 1, t[13] = 2, t[14] = 3, t[15] = 4;
    ck_seed("byte_order_swapped", 0x03, 0, t, n);
    char latest[4096];
    snprintf(latest, sizeof latest, "%s/latest", tmp);
    unlink(latest);
    if (rmdir(tmp) != 0) die(tmp);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_gen_seeds OUTDIR\n");
        return 2;
    }
    out_root = argv[1];
    mkdir(out_root, 0777);
    idx_seeds();
    ckpt_seeds();
    return 0;
}
