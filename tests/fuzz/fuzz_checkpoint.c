/* fuzz_checkpoint.c - libFuzzer target for the checkpoint reader
 * (dt_ckpt_read, dt_ckpt_resume).
 *
 * Input layout:
 *   byte 0   mode
 *              bit 0     recompute both CRC32Cs (header, bytes 84..87, when
 *                        the file has 88 bytes; trailer, the last 4, when it
 *                        has 92) over the mutated bytes before reading, so
 *                        the structural checks behind the checksums are
 *                        reached by random mutation
 *              bits 1-2  the `expect` header: 0 the file's own header fields
 *                        (so a well-formed file verifies and is decoded),
 *                        1 the fixed values of the seed checkpoints, 2 the
 *                        file's fields with one changed (byte 1 says which),
 *                        3 small values from byte 1
 *              bit 3     resume: the file is ckpt-000000000007.dtck in a
 *                        folder, read through dt_ckpt_resume("latest", ...)
 *                        (else dt_ckpt_read, or dt_ckpt_resume(PATH) when
 *                        byte 1 is odd)
 *              bits 4-5  resume: the `latest` pointer: absent, naming the
 *                        file, naming a missing file, garbage (byte 1 picks)
 *              bit 6     resume: also an older ckpt-000000000003.dtck with the
 *                        bytes as given (before any CRC recomputation)
 *   byte 1   parameter of the modes
 *   rest     the checkpoint file's bytes
 * Properties besides the sanitizers: a failure is DT_EDATA with a one-line
 * message and leaves the caller's arrays untouched; a success means the file
 * is exactly header + arenas + trailer with both CRCs right and the arrays
 * and `got` hold exactly what the file says. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dtrain/checkpoint.h"
#include "fuzz_common.h"

#define HDR 88
#define MAX_PARAMS 4096 /* expect->n_params taken from a file: at most this */
#define PATTERN 0xA5

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

/* The expect of the seed checkpoints (fuzz_gen_seeds writes them). */
static const dt_ckpt_header fixed = {.layout_hash = 0x1122334455667788ull,
                                     .config_hash = 0x99aabbccddeeff00ull,
                                     .n_params = 5,
                                     .optimizer = 5,
                                     .slots = 2};

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const unsigned char *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }
static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void header_of(const unsigned char *f, dt_ckpt_header *h)
{
    memset(h, 0, sizeof *h);
    h->layout_hash = le64(f + 16);
    h->config_hash = le64(f + 24);
    h->n_params = le64(f + 32);
    h->optimizer = le32(f + 40);
    h->slots = le32(f + 44);
    h->step = (int64_t)le64(f + 48);
    h->opt_t = (int64_t)le64(f + 56);
    h->skipped = (int64_t)le64(f + 64);
    h->seed = le64(f + 72);
    h->world_size = le32(f + 80);
}

/* Is f[0..n) a checkpoint that must verify against e? */
static int valid_for(const unsigned char *f, size_t n, const dt_ckpt_header *e)
{
    if (n < HDR + 4 || memcmp(f, "DTRAINCK", 8) != 0 || le32(f + 8) != 1 ||
        le32(f + 12) != 0x01020304u || le32(f + 84) != dt_crc32c(0, f, 84) ||
        le32(f + n - 4) != dt_crc32c(0, f, n - 4))
        return 0;
    dt_ckpt_header h;
    header_of(f, &h);
    return h.slots <= DT_CKPT_MAX_SLOTS && h.n_params <= MAX_PARAMS &&
           n == HDR + 4 * h.n_params * (1 + h.slots) + 4 && h.layout_hash == e->layout_hash &&
           h.config_hash == e->config_hash && h.n_params == e->n_params &&
           h.optimizer == e->optimizer && h.slots == e->slots;
}

typedef struct {
    char dir[128];
    char primary[192], older[192], latest[192];
} folder;

static folder dir; /* the resume mode's folder, removed at exit */

static void folder_clear(const folder *d)
{
    unlink(d->primary);
    unlink(d->older);
    unlink(d->latest);
}

static void folder_remove(void)
{
    folder_clear(&dir);
    rmdir(dir.dir);
}

static void folder_init(folder *d)
{
    if (d->dir[0]) return;
    struct stat st;
    const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(d->dir, sizeof d->dir, "%s/dtrain-fuzz-ckpt-%ld", base, (long)getpid());
    if (mkdir(d->dir, 0700) != 0 && errno != EEXIST) fz_die(d->dir);
    snprintf(d->primary, sizeof d->primary, "%s/ckpt-000000000007.dtck", d->dir);
    snprintf(d->older, sizeof d->older, "%s/ckpt-000000000003.dtck", d->dir);
    snprintf(d->latest, sizeof d->latest, "%s/latest", d->dir);
    atexit(folder_remove);
}

static void warn_cb(void *ctx, const char *msg)
{
    FZ_ASSERT(fz_one_line(msg), "warning not one line: '%s'", msg);
    ++*(int *)ctx;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static fz_file ff;
    fz_open(&ff, "dtrain-fuzz-ckpt");
    if (size < 2) return 0;
    const unsigned mode = data[0], param = data[1];
    const unsigned char *orig = data + 2;
    const size_t n = size - 2;
    unsigned char *file = malloc(n ? n : 1);
    if (!file) fz_die("malloc");
    memcpy(file, orig, n);

    if ((mode & 1) && n >= HDR) put32(file + 84, dt_crc32c(0, file, 84));
    if ((mode & 1) && n >= HDR + 4) put32(file + n - 4, dt_crc32c(0, file, n - 4));

    /* expect */
    dt_ckpt_header e = fixed, fh;
    int from_file = 0;
    if (n >= HDR) {
        header_of(file, &fh);
        from_file = fh.slots <= DT_CKPT_MAX_SLOTS && fh.n_params <= MAX_PARAMS;
    }
    switch ((mode >> 1) & 3) {
    case 0:
        if (from_file) e = fh;
        break;
    case 1: break;
    case 2:
        if (from_file) e = fh;
        switch (param % 5) {
        case 0: e.layout_hash ^= 1; break;
        case 1: e.n_params += 1; break;
        case 2: e.optimizer ^= 1; break;
        case 3: e.slots = (e.slots + 1) % (DT_CKPT_MAX_SLOTS + 1); break;
        default: e.config_hash ^= 1; break;
        }
        break;
    default:
        e.n_params = param & 15;
        e.slots = (param >> 4) % (DT_CKPT_MAX_SLOTS + 1);
        break;
    }
    /* only layout, config, n_params, optimizer, slots are an expectation */
    e.step = e.opt_t = e.skipped = 0, e.seed = 0, e.world_size = 0;

    /* the caller's arrays: exactly n_params floats each (ASan catches any
     * write past them), filled with a pattern that must survive a failure */
    const size_t bytes = 4 * (size_t)e.n_params;
    float *params = malloc(bytes ? bytes : 1), *slot[DT_CKPT_MAX_SLOTS] = {NULL};
    if (!params) fz_die("malloc");
    memset(params, PATTERN, bytes);
    for (uint32_t s = 0; s < e.slots; s++) {
        if (!(slot[s] = malloc(bytes ? bytes : 1))) fz_die("malloc");
        memset(slot[s], PATTERN, bytes);
    }

    dt_ckpt_header got;
    memset(&got, 0x5a, sizeof got);
    dt_error err = {0};
    dt_status st;
    const unsigned char *used = file; /* the bytes of the file that was read */
    size_t used_n = n;
    char path_out[256] = "";
    int warnings = 0;
    if (mode & 8) {
        folder_init(&dir);
        folder_clear(&dir);
        fz_write_path(dir.primary, file, n);
        if (mode & 64) fz_write_path(dir.older, orig, n);
        static const char *const junk[] = {
            "", "ckpt-.dtck", "ckpt-99999999999999999999.dtck", "../ckpt-000000000007.dtck",
            "ckpt-000000000007.dtck \r\n\n", "ckpt-7.dtck", "ckpt-000000000003.dtck\n",
            "latest"};
        char big[400];
        switch ((mode >> 4) & 3) {
        case 0: break;
        case 1: fz_write_path(dir.latest, "ckpt-000000000007.dtck\n", 23); break;
        case 2: fz_write_path(dir.latest, "ckpt-000000000009.dtck\n", 23); break;
        default:
            if (param % 9 == 8) {
                memset(big, 'a', sizeof big);
                memcpy(big, "ckpt-", 5);
                fz_write_path(dir.latest, big, sizeof big);
            } else {
                const char *j = junk[param % 8];
                fz_write_path(dir.latest, j, strlen(j));
            }
            break;
        }
        st = dt_ckpt_resume("latest", dir.dir, &e, params, slot, &got, path_out, sizeof path_out,
                            warn_cb, &warnings, &err);
        if (st == DT_OK && strcmp(path_out, dir.older) == 0) used = orig;
        if (st == DT_OK)
            FZ_ASSERT(strcmp(path_out, dir.primary) == 0 || strcmp(path_out, dir.older) == 0,
                      "resumed from %s", path_out);
    } else {
        fz_set(&ff, file, n);
        if (param & 1)
            st = dt_ckpt_resume(ff.path, NULL, &e, params, slot, &got, path_out, sizeof path_out,
                                warn_cb, &warnings, &err);
        else
            st = dt_ckpt_read(ff.path, &e, params, slot, &got, &err);
    }

    fz_verdict(st, st ? err.msg : path_out);
    if (st != DT_OK) {
        FZ_ASSERT(st == DT_EDATA, "status %d: %s", st, err.msg);
        FZ_ASSERT(fz_one_line(err.msg), "message not one non-empty line: '%s'", err.msg);
        FZ_ASSERT(!valid_for(file, n, &e), "a valid checkpoint was refused: %s", err.msg);
        for (size_t i = 0; i < bytes; i++) {
            FZ_ASSERT(((unsigned char *)params)[i] == PATTERN, "params written on failure");
            for (uint32_t s = 0; s < e.slots; s++)
                FZ_ASSERT(((unsigned char *)slot[s])[i] == PATTERN, "state written on failure");
        }
    } else {
        FZ_ASSERT(valid_for(used, used_n, &e), "an invalid checkpoint was accepted");
        dt_ckpt_header h;
        header_of(used, &h);
        FZ_ASSERT(got.layout_hash == h.layout_hash && got.config_hash == h.config_hash &&
                      got.n_params == h.n_params && got.optimizer == h.optimizer &&
                      got.slots == h.slots && got.step == h.step && got.opt_t == h.opt_t &&
                      got.skipped == h.skipped && got.seed == h.seed &&
                      got.world_size == h.world_size,
                  "got differs from the file's header");
        FZ_ASSERT(memcmp(params, used + HDR, bytes) == 0, "params differ from the file");
        for (uint32_t s = 0; s < e.slots; s++)
            FZ_ASSERT(memcmp(slot[s], used + HDR + bytes * (1 + s), bytes) == 0,
                      "state %u differs from the file", s);
    }
    if (mode & 8) folder_clear(&dir);
    free(params);
    for (uint32_t s = 0; s < DT_CKPT_MAX_SLOTS; s++) free(slot[s]);
    free(file);
    return 0;
}
