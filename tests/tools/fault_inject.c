/* fault_inject.c - make file-system calls fail on purpose, for the tests of
 * storage faults: disk full, I/O errors, a folder that cannot be written.
 *
 * Built twice: as a shared library for LD_PRELOAD under the real binary
 * (tests/mpi/storage_faults.sh), and linked into the unit-test programs,
 * where its definitions replace libc's for the whole program. Either way it
 * does nothing unless DT_FAULT_PATH is set, and it reads its settings from
 * the environment at every call, so a test can arm and disarm it (setenv).
 *
 *   DT_FAULT_PATH   absolute path prefix: only files (or folders) under it fail
 *   DT_FAULT_NAME   optional: only files whose name contains this string
 *   DT_FAULT_OP     write (default), fsync, open (for writing), mkdir, rename
 *   DT_FAULT_AFTER  for write: bytes that still succeed first, counted over
 *                   every matching file of the process (a disk that fills
 *                   up: the write that crosses the limit is short, the next
 *                   one fails); default 0
 *   DT_FAULT_ERRNO  ENOSPC (default), EIO, EACCES, EROFS, EDQUOT, EFBIG
 *
 * write(2) and fsync(2) find the file's path through /proc/self/fd, so the
 * file may have been opened by any means. Only the calls dtrain makes itself
 * are caught (glibc's stdio writes through internal symbols), which is why
 * dtrain writes its files with write(2) (src/fs.c). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static unsigned long long fault_written; /* bytes let through so far */

static int fault_errno(void)
{
    const char *e = getenv("DT_FAULT_ERRNO");
    if (!e || !strcmp(e, "ENOSPC")) return ENOSPC;
    if (!strcmp(e, "EIO")) return EIO;
    if (!strcmp(e, "EACCES")) return EACCES;
    if (!strcmp(e, "EROFS")) return EROFS;
    if (!strcmp(e, "EDQUOT")) return EDQUOT;
    if (!strcmp(e, "EFBIG")) return EFBIG;
    return ENOSPC;
}

/* Is this operation on this path one that is to fail? */
static int fault_armed(const char *op, const char *path)
{
    const char *prefix = getenv("DT_FAULT_PATH");
    if (!prefix || !*prefix || !path) return 0;
    const char *want = getenv("DT_FAULT_OP");
    if (strcmp(want && *want ? want : "write", op) != 0) return 0;
    size_t n = strlen(prefix);
    if (strncmp(path, prefix, n) != 0 || (path[n] != '/' && path[n] != '\0')) return 0;
    const char *name = getenv("DT_FAULT_NAME");
    if (!name || !*name) return 1;
    const char *base = strrchr(path, '/');
    return strstr(base ? base + 1 : path, name) != NULL;
}

static int fd_armed(const char *op, int fd)
{
    if (!getenv("DT_FAULT_PATH")) return 0; /* the common case: no syscall */
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t k = readlink(link, path, sizeof path - 1);
    if (k <= 0) return 0;
    path[k] = '\0';
    return fault_armed(op, path);
}

static void *next(const char *name)
{
    void *fn = dlsym(RTLD_NEXT, name);
    if (!fn) abort(); /* no libc below us: nothing sensible to do */
    return fn;
}

ssize_t write(int fd, const void *buf, size_t count)
{
    static ssize_t (*real)(int, const void *, size_t);
    if (!real) real = (ssize_t(*)(int, const void *, size_t))next("write");
    if (count > 0 && fd_armed("write", fd)) {
        const char *a = getenv("DT_FAULT_AFTER");
        unsigned long long after = a ? strtoull(a, NULL, 10) : 0;
        if (fault_written >= after) {
            errno = fault_errno();
            return -1;
        }
        if (count > after - fault_written) count = (size_t)(after - fault_written);
        ssize_t k = real(fd, buf, count);
        if (k > 0) fault_written += (unsigned long long)k;
        return k;
    }
    return real(fd, buf, count);
}

int fsync(int fd)
{
    static int (*real)(int);
    if (!real) real = (int (*)(int))next("fsync");
    if (fd_armed("fsync", fd)) {
        errno = fault_errno();
        return -1;
    }
    return real(fd);
}

int open(const char *path, int flags, ...)
{
    static int (*real)(const char *, int, ...);
    if (!real) real = (int (*)(const char *, int, ...))next("open");
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if ((flags & O_ACCMODE) != O_RDONLY && fault_armed("open", path)) {
        errno = fault_errno();
        return -1;
    }
    return real(path, flags, mode);
}

int mkdir(const char *path, mode_t mode)
{
    static int (*real)(const char *, mode_t);
    if (!real) real = (int (*)(const char *, mode_t))next("mkdir");
    if (fault_armed("mkdir", path)) {
        errno = fault_errno();
        return -1;
    }
    return real(path, mode);
}

int rename(const char *from, const char *to)
{
    static int (*real)(const char *, const char *);
    if (!real) real = (int (*)(const char *, const char *))next("rename");
    if (fault_armed("rename", to)) {
        errno = fault_errno();
        return -1;
    }
    return real(from, to);
}
