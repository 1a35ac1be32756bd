/* common.h - what every dtrain module shares: error codes, the error record
 * that carries one user-facing message up to main, the counting allocator,
 * and the 64-bit hash used for parameter checksums.
 *
 * Two kinds of failure exist (as in libuv). User-facing errors (bad config,
 * bad data, bad checkpoint) are returned as a dt_status with the message in a
 * dt_error; nothing below main prints them. Broken invariants are bugs:
 * DT_BUG() prints rank:file:line and aborts (train/comm replace the abort
 * hook with MPI_Abort so no rank is left in a collective). */
#ifndef DTRAIN_COMMON_H
#define DTRAIN_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Exit statuses of the dtrain binary; a dt_status is one of these. */
typedef enum {
    DT_OK = 0,
    DT_EINTERNAL = 1, /* anything else (I/O on out_dir, MPI trouble, ...) */
    DT_ECONFIG = 2,   /* bad command line or configuration */
    DT_EDATA = 3,     /* bad data or checkpoint file */
    DT_EDIVERGED = 4, /* non-finite gradient under nonfinite: abort */
    DT_EPREEMPTED = 5, /* stopped by a signal after writing a checkpoint */
    DT_ETIMEOUT = 6    /* a collective did not complete within comm.timeout_s */
} dt_status;

#define DT_ERRMSG_MAX 1024

/* The one limit on a file or folder path, in bytes with the terminating NUL
 * (the config's path fields, every joined path: dt_path in fs.h). A path
 * that does not fit is an error naming it, never silently cut. */
#define DT_PATH_MAX 1024

typedef struct {
    dt_status code;
    char msg[DT_ERRMSG_MAX]; /* one line, no trailing newline */
} dt_error;

/* Record an error (printf-style) and return `code`, so callers can write
 * `return dt_fail(err, DT_ECONFIG, "%s:%d:%d: ...", ...);`. err may be NULL. */
dt_status dt_fail(dt_error *err, dt_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));


/* ---- allocation -------------------------------------------------------
 * Every allocation dtrain makes goes through these, so a test can prove the
 * training loop allocates nothing (dt_alloc_count before and after a step).
 * dt_malloc and friends return NULL on failure like malloc; callers turn
 * that into DT_EINTERNAL. dt_alloc_aligned returns 64-byte aligned memory
 * (cache line, AVX-512 vector) released with dt_free as well. */
void *dt_malloc(size_t size);
void *dt_calloc(size_t count, size_t size);
void *dt_realloc(void *ptr, size_t size);
void *dt_alloc_aligned(size_t size); /* zeroed */
char *dt_strdup(const char *s);
void dt_free(void *ptr);
/* Number of successful allocations (malloc/calloc/realloc/aligned/strdup)
 * since start-up; monotonic, thread-safe. */
uint64_t dt_alloc_count(void);

/* ---- invariants --------------------------------------------------------- */
typedef void (*dt_abort_fn)(void);
void dt_set_abort_hook(dt_abort_fn fn); /* default: abort() */
void dt_set_log_rank(int rank);         /* rank printed by DT_BUG */
_Noreturn void dt_bug(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define DT_BUG(...) dt_bug(__FILE__, __LINE__, __VA_ARGS__)
#define DT_CHECK(cond)                                                   \
    do {                                                                 \
        if (!(cond)) dt_bug(__FILE__, __LINE__, "check failed: %s", #cond); \
    } while (0)

/* ---- hashing ------------------------------------------------------------
 * FNV-1a 64 over bytes: the `param_checksum` of summary.json and the replica
 * check. Chainable: pass the previous value as `h` (start with DT_FNV_INIT). */
#define DT_FNV_INIT UINT64_C(0xcbf29ce484222325)
uint64_t dt_fnv1a64(uint64_t h, const void *data, size_t len);

#define DT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define DT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define DT_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
