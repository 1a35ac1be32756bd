/* fuzz_common.h - what the dtrain fuzz targets share: in-memory files.
 *
 * The readers under test take a path, so each input is written to a memfd
 * (memory only, no disk traffic, no clean-up) and opened again through
 * /proc/self/fd/N, which gives the reader its own file offset like a real
 * file. A memfd is a regular file to fstat, as the readers require. */
#ifndef DTRAIN_FUZZ_COMMON_H
#define DTRAIN_FUZZ_COMMON_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct {
    int fd;
    char path[64];
} fz_file;

static inline void fz_die(const char *what)
{
    fprintf(stderr, "fuzz harness: %s: %s\n", what, strerror(errno));
    abort();
}

/* Create once (call from the first iteration; the fd lives until exit). */
static inline void fz_open(fz_file *f, const char *name)
{
    if (f->path[0]) return;
    f->fd = memfd_create(name, MFD_CLOEXEC);
    if (f->fd < 0) fz_die("memfd_create");
    snprintf(f->path, sizeof f->path, "/proc/self/fd/%d", f->fd);
}

/* Replace the file's content with data[0..n). */
static inline void fz_set(fz_file *f, const void *data, size_t n)
{
    if (ftruncate(f->fd, 0) != 0) fz_die("ftruncate");
    const unsigned char *p = data;
    off_t off = 0;
    while (n) {
        ssize_t k = pwrite(f->fd, p, n, off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) fz_die("pwrite");
        p += k;
        off += k;
        n -= (size_t)k;
    }
}

/* Write data[0..n) to a named file (0644), replacing it. */
static inline void fz_write_path(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) fz_die(path);
    if (n && fwrite(data, 1, n, f) != n) fz_die(path);
    if (fclose(f) != 0) fz_die(path);
}

/* One-line messages: no control characters, not empty. */
static inline int fz_one_line(const char *msg)
{
    if (!msg[0]) return 0;
    for (const unsigned char *c = (const unsigned char *)msg; *c; c++)
        if (*c < 0x20 || *c == 0x7f) return 0;
    return 1;
}

/* DTRAIN_FUZZ_VERBOSE=1: print each input's verdict (for replaying files). */
static inline void fz_verdict(int status, const char *msg)
{
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("DTRAIN_FUZZ_VERBOSE") != NULL;
    if (verbose) fprintf(stderr, "verdict: status %d%s%s\n", status, msg[0] ? ": " : "", msg);
}

#define FZ_ASSERT(cond, ...)                                                    \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "fuzz property failed: %s (%s:%d)\n", #cond, __FILE__, \
                    __LINE__);                                                  \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
            abort();                                                            \
        }                                                                       \
    } while (0)

#endif
