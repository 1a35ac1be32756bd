/* common.c - error records, the counting allocator, invariant aborts, FNV-1a. */
#include "dtrain/common.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

dt_status dt_fail(dt_error *err, dt_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

/* ---- allocation ---------------------------------------------------------- */
static atomic_uint_fast64_t alloc_count;

static void *counted(void *p)
{
    if (p) atomic_fetch_add_explicit(&alloc_count, 1, memory_order_relaxed);
    return p;
}

void *dt_malloc(size_t size) { return counted(malloc(size ? size : 1)); }
void *dt_calloc(size_t count, size_t size)
{
    return counted(calloc(count ? count : 1, size ? size : 1));
}
void *dt_realloc(void *ptr, size_t size) { return counted(realloc(ptr, size ? size : 1)); }

void *dt_alloc_aligned(size_t size)
{
    /* aligned_alloc wants a multiple of the alignment */
    size_t rounded = (size + 63) & ~(size_t)63;
    if (rounded < size) return NULL;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (p) memset(p, 0, rounded ? rounded : 64);
    return counted(p);
}

char *dt_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = dt_malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

void dt_free(void *ptr) { free(ptr); }

uint64_t dt_alloc_count(void) { return atomic_load(&alloc_count); }

/* ---- invariants ---------------------------------------------------------- */
static dt_abort_fn abort_hook;
static int log_rank = -1;

void dt_set_abort_hook(dt_abort_fn fn) { abort_hook = fn; }
void dt_set_log_rank(int rank) { log_rank = rank; }

void dt_bug(const char *file, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "dtrain: internal error: rank %d: %s:%d: %s\n", log_rank, file, line, msg);
    fflush(stderr);
    if (abort_hook) abort_hook();
    abort();
}

/* ---- hashing ------------------------------------------------------------- */
uint64_t dt_fnv1a64(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}
