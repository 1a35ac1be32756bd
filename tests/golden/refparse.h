/* refparse.h - reader for the golden reference files (format:
 * tests/reference/README.md): `key: value` headers, then data lines of a
 * label, integer indices and numbers. Lines are kept as text; a kind's
 * checker asks for a row by its leading tokens ("layer 0 W", "param 3") and
 * gets the numbers that follow. */
#ifndef DTRAIN_REFPARSE_H
#define DTRAIN_REFPARSE_H

#include <stddef.h>

typedef struct {
    char path[1024];
    int n_lines;
    char **lines;   /* data lines, in file order */
    int n_headers;
    char **keys;    /* header keys (without ':') */
    char **values;  /* header values (rest of the line, trimmed) */
} ref_file;

/* Read a whole file; 0 on success, -1 with a message in why. */
int ref_load(const char *path, ref_file *f, char *why, size_t why_size);
void ref_free(ref_file *f);

/* Header value or NULL. */
const char *ref_header(const ref_file *f, const char *key);
/* Header as a number; -1 (with why) if missing or not a number. */
int ref_header_long(const ref_file *f, const char *key, long *out, char *why, size_t why_size);
int ref_header_double(const ref_file *f, const char *key, double *out, char *why,
                      size_t why_size);

/* The numbers after the leading tokens `prefix` (e.g. "layer 0 W") of the
 * first data line that starts with them. Fills at most cap values into out
 * and returns how many the line has, or -1 if no line matches. */
int ref_row(const ref_file *f, const char *prefix, double *out, int cap);

/* Elementwise comparison |a - r| <= atol + rtol*|r|. Returns the worst ratio
 * |a-r| / (atol + rtol*|r|) over the n values (NaN in a counts as +inf). */
double ref_worst_ratio(const float *a, const double *r, int n, double rtol, double atol);

/* A checker for one kind: 0 if the file passes, 1 if it fails, -1 if it
 * cannot be parsed; *worst is the worst ratio seen; why says what failed. */
typedef int (*ref_checker)(const ref_file *f, double *worst, char *why, size_t why_size);

int golden_check_mlp(const ref_file *f, double *worst, char *why, size_t why_size);
int golden_check_conv(const ref_file *f, double *worst, char *why, size_t why_size);
int golden_check_optim(const ref_file *f, double *worst, char *why, size_t why_size);
int golden_check_sched(const ref_file *f, double *worst, char *why, size_t why_size);
int golden_check_average(const ref_file *f, double *worst, char *why, size_t why_size);

#endif
