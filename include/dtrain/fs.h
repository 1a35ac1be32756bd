/* fs.h - the file-system helpers every module that writes files shares
 * (checkpoint, metrics, train): one path type with one length limit, mkdir -p,
 * and the atomic durable write.
 *
 * Paths. A joined path lives in a dt_path, a struct around DT_PATH_MAX bytes
 * (common.h), so the size of every buffer that receives one is checked by the
 * compiler, not by each caller. A path that does not fit is an error naming
 * it ("path too long"), never a silently cut path.
 *
 * Atomic durable write. dst is never seen half-written, and once the call
 * returns DT_OK it survives a power cut:
 *   1. create DIR/.NAME.tmp.<pid> next to DIR/NAME (a rename only works, and
 *      is only atomic, within one file system);
 *   2. write every byte (retrying short writes and EINTR), fsync, close;
 *   3. rename it over DIR/NAME, then fsync DIR so the rename is durable.
 * On any failure before the rename the temporary file is removed and DIR/NAME
 * is untouched (the old file, or none). A failure of the final folder fsync
 * is reported, though the new file is then already in place.
 *
 * Errors are DT_EINTERNAL ("anything else": I/O on out_dir or the checkpoint
 * folder) with one line naming the file and strerror(errno). */
#ifndef DTRAIN_FS_H
#define DTRAIN_FS_H

#include <stddef.h>

#include "dtrain/common.h"

typedef struct {
    char s[DT_PATH_MAX];
} dt_path;

/* out = "dir/name" (exactly one '/' between them when dir ends with one). */
dt_status dt_path_join(dt_path *out, const char *dir, const char *name, dt_error *err);
/* out = a copy of path, refused when it does not fit. */
dt_status dt_path_set(dt_path *out, const char *path, dt_error *err);

/* mkdir -p: create dir and every missing parent (mode 0777 & ~umask).
 * Relative paths, repeated and trailing slashes are fine; a component that
 * already exists as a folder (created by someone else meanwhile, too) is
 * fine; a component that is not a folder is ENOTDIR. `what` names the folder
 * for the user ("run.out_dir"); the message names the component that failed:
 *   cannot create run.out_dir out/x/y: out/x: Not a directory */
dt_status dt_fs_mkdir_p(const char *dir, const char *what, dt_error *err);

/* fsync a folder, so that a rename or unlink inside it is durable. Folders
 * of file systems that cannot sync one (EINVAL, ENOTSUP) count as synced. */
dt_status dt_fs_sync_dir(const char *dir, dt_error *err);

/* The streaming form of the atomic write, for files too large to hold in
 * memory (checkpoints). Every call that fails removes the temporary file;
 * dt_fs_atomic_abort does so for a caller that gives up on its own, and is a
 * no-op after a failure or a commit. */
typedef struct {
    int fd; /* -1 once committed or aborted */
    dt_path tmp, dst, dir;
} dt_fs_atomic;

dt_status dt_fs_atomic_open(dt_fs_atomic *f, const char *dst, dt_error *err);
dt_status dt_fs_atomic_write(dt_fs_atomic *f, const void *data, size_t len, dt_error *err);
dt_status dt_fs_atomic_commit(dt_fs_atomic *f, dt_error *err);
void dt_fs_atomic_abort(dt_fs_atomic *f);

/* The whole file at once: open, write, commit. */
dt_status dt_fs_write_atomic(const char *dst, const void *data, size_t len, dt_error *err);

/* write(2) all of len bytes, retrying short writes and EINTR: 0, or -1 with
 * errno (EIO when write makes no progress). */
int dt_fs_write_all(int fd, const void *data, size_t len);

#endif
