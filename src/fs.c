/* fs.c - paths, mkdir -p and the atomic durable write (see fs.h).
 *
 * Only POSIX calls (open/write/fsync/rename), no stdio: every byte that
 * reaches a file goes through write(2), so a short write or ENOSPC is seen
 * where it happens, and the tests' fault injection (tests/tools/
 * fault_inject.c) can fail exactly these calls. */
#include "dtrain/fs.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* ---- paths ---------------------------------------------------------------- */

dt_status dt_path_set(dt_path *out, const char *path, dt_error *err)
{
    size_t n = strlen(path);
    if (n >= sizeof out->s)
        return dt_fail(err, DT_EINTERNAL, "%.200s...: path too long (%zu bytes, at most %d)",
                       path, n, DT_PATH_MAX - 1);
    memcpy(out->s, path, n + 1);
    return DT_OK;
}

dt_status dt_path_join(dt_path *out, const char *dir, const char *name, dt_error *err)
{
    size_t nd = strlen(dir), nn = strlen(name);
    const bool slash = nd > 0 && dir[nd - 1] == '/';
    size_t total = nd + (slash ? 0 : 1) + nn;
    if (total >= sizeof out->s)
        return dt_fail(err, DT_EINTERNAL,
                       "%.200s.../%.100s: path too long (%zu bytes, at most %d)", dir, name,
                       total, DT_PATH_MAX - 1);
    memcpy(out->s, dir, nd);
    if (!slash) out->s[nd++] = '/';
    memcpy(out->s + nd, name, nn + 1);
    return DT_OK;
}

/* The folder part of path ("." when there is none, "/" for "/x"). */
static void dir_of(dt_path *out, const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        memcpy(out->s, ".", 2);
        return;
    }
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    memcpy(out->s, path, n); /* n < strlen(path) < DT_PATH_MAX: the caller's path fitted */
    out->s[n] = '\0';
}

/* ---- mkdir -p --------------------------------------------------------------- */

/* One component: made, or already a folder. EEXIST alone proves nothing (a
 * file may be in the way); any other failure may still be a folder that
 * exists where we may not create (EACCES, EROFS on a read-only parent). */
static int mkdir_one(const char *path)
{
    if (mkdir(path, 0777) == 0) return 0;
    int e = errno;
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return 0;
        errno = ENOTDIR;
        return -1;
    }
    errno = e;
    return -1;
}

dt_status dt_fs_mkdir_p(const char *dir, const char *what, dt_error *err)
{
    dt_path buf;
    if (dir[0] == '\0') return dt_fail(err, DT_EINTERNAL, "cannot create %s: empty path", what);
    if (strlen(dir) >= sizeof buf.s)
        return dt_fail(err, DT_EINTERNAL, "cannot create %s %.200s...: path too long (at most %d bytes)",
                       what, dir, DT_PATH_MAX - 1);
    memcpy(buf.s, dir, strlen(dir) + 1);
    /* Every prefix that ends a component, shortest first: "a", "a/b", ... */
    for (size_t i = 1;; i++) {
        char c = buf.s[i];
        if (c != '/' && c != '\0') continue;
        if (buf.s[i - 1] != '/') { /* skip "//" and the trailing "/" */
            buf.s[i] = '\0';
            if (mkdir_one(buf.s) != 0)
                return dt_fail(err, DT_EINTERNAL, "cannot create %s %s: %s: %s", what, dir,
                               buf.s, strerror(errno));
            buf.s[i] = c;
        }
        if (c == '\0') break;
    }
    return DT_OK;
}

dt_status dt_fs_sync_dir(const char *dir, dt_error *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return dt_fail(err, DT_EINTERNAL, "%s: cannot open folder: %s", dir, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd); /* read-only: nothing to lose */
    if (rc != 0 && e != EINVAL && e != ENOTSUP)
        return dt_fail(err, DT_EINTERNAL, "%s: cannot fsync folder: %s", dir, strerror(e));
    return DT_OK;
}

/* ---- the atomic durable write ----------------------------------------------- */

int dt_fs_write_all(int fd, const void *data, size_t len)
{
    const unsigned char *p = data;
    while (len) {
        ssize_t k = write(fd, p, len);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (k == 0) {
            errno = EIO;
            return -1;
        }
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

dt_status dt_fs_atomic_open(dt_fs_atomic *f, const char *dst, dt_error *err)
{
    f->fd = -1;
    dt_status st = dt_path_set(&f->dst, dst, err);
    if (st != DT_OK) return st;
    dir_of(&f->dir, dst);
    const char *slash = strrchr(dst, '/');
    const char *name = slash ? slash + 1 : dst;
    char tmp_name[DT_PATH_MAX];
    int k = snprintf(tmp_name, sizeof tmp_name, ".%s.tmp.%ld", name, (long)getpid());
    if (k < 0 || (size_t)k >= sizeof tmp_name)
        return dt_fail(err, DT_EINTERNAL, "%s: path too long", dst);
    if ((st = dt_path_join(&f->tmp, f->dir.s, tmp_name, err)) != DT_OK) return st;
    f->fd = open(f->tmp.s, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (f->fd < 0)
        return dt_fail(err, DT_EINTERNAL, "%s: cannot create %s: %s", dst, f->tmp.s,
                       strerror(errno));
    return DT_OK;
}

/* Close and remove the temporary file; the message names the file the
 * user asked for, the cause, and that nothing of the attempt is left. */
static dt_status fail_removing_tmp(dt_fs_atomic *f, const char *what, int e, dt_error *err)
{
    if (f->fd >= 0) close(f->fd); /* the file is being discarded */
    f->fd = -1;
    unlink(f->tmp.s);
    return dt_fail(err, DT_EINTERNAL, "%s: %s: %s (temporary file %s removed)", f->dst.s, what,
                   strerror(e), f->tmp.s);
}

dt_status dt_fs_atomic_write(dt_fs_atomic *f, const void *data, size_t len, dt_error *err)
{
    DT_CHECK(f->fd >= 0);
    if (dt_fs_write_all(f->fd, data, len) != 0) return fail_removing_tmp(f, "cannot write", errno, err);
    return DT_OK;
}

dt_status dt_fs_atomic_commit(dt_fs_atomic *f, dt_error *err)
{
    DT_CHECK(f->fd >= 0);
    if (fsync(f->fd) != 0) return fail_removing_tmp(f, "cannot fsync", errno, err);
    int rc = close(f->fd); /* NFS reports delayed write errors here */
    f->fd = -1;
    if (rc != 0) return fail_removing_tmp(f, "cannot close", errno, err);
    if (rename(f->tmp.s, f->dst.s) != 0) {
        int e = errno;
        unlink(f->tmp.s);
        return dt_fail(err, DT_EINTERNAL, "%s: cannot rename %s to it: %s (temporary file removed)",
                       f->dst.s, f->tmp.s, strerror(e));
    }
    return dt_fs_sync_dir(f->dir.s, err);
}

void dt_fs_atomic_abort(dt_fs_atomic *f)
{
    if (f->fd < 0) return;
    close(f->fd);
    f->fd = -1;
    unlink(f->tmp.s);
}

dt_status dt_fs_write_atomic(const char *dst, const void *data, size_t len, dt_error *err)
{
    dt_fs_atomic f;
    dt_status st = dt_fs_atomic_open(&f, dst, err);
    if (st == DT_OK) st = dt_fs_atomic_write(&f, data, len, err);
    if (st == DT_OK) st = dt_fs_atomic_commit(&f, err);
    return st;
}
