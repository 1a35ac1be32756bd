/* fuzz_config.c - libFuzzer target for the YAML config loader.
 *
 * Input: YAML text, optionally followed by the line "%%SET" and up to
 * MAX_SETS further lines, each one `--set` argument (KEY=VALUE):
 *
 *     optimizer: {name: sgd, lr: 0.1}
 *     model: {layers: [{dense: 10}]}
 *     %%SET
 *     optimizer.lr=0.5
 *     train.steps=3
 *
 * The text before the separator is the config file (a memfd), the lines
 * after it the overrides. Properties checked on every input:
 *  - no crash, leak or undefined behaviour (the sanitizers);
 *  - a failure is DT_ECONFIG with a non-empty one-line message;
 *  - a success writes (dt_config_write_yaml) YAML that loads again, without
 *    overrides, to an equal dt_config (except the source path and the
 *    layers' line:column), and writing that one gives the same text. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtrain/config.h"
#include "fuzz_common.h"

#define MAX_SETS 8
#define SEP "\n%%SET\n"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static char *write_yaml(const dt_config *c, size_t *len)
{
    char *text = NULL;
    FILE *m = open_memstream(&text, len);
    if (!m) fz_die("open_memstream");
    dt_config_write_yaml(c, m);
    if (fclose(m) != 0) fz_die("open_memstream");
    return text;
}

/* What may legitimately differ between a config and its reload. */
static void normalise(dt_config *c)
{
    memset(c->source, 0, sizeof c->source);
    for (int i = 0; i < DT_MAX_LAYERS; i++) c->model.layers[i].line = c->model.layers[i].col = 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static fz_file in, out;
    static dt_config c, d; /* ~80 KB each: not on the stack */
    fz_open(&in, "dtrain-fuzz-config");
    fz_open(&out, "dtrain-fuzz-config-out");

    const unsigned char *sep = memmem(data, size, SEP, strlen(SEP));
    size_t ylen = sep ? (size_t)(sep - data) : size;
    fz_set(&in, data, ylen);

    /* the --set lines, NUL-terminated (a NUL byte inside ends that one early,
     * as it would on a command line) */
    char *sets_buf = NULL;
    const char *sets[MAX_SETS];
    int n_sets = 0;
    if (sep) {
        size_t rest = size - ylen - strlen(SEP);
        sets_buf = malloc(rest + 1);
        if (!sets_buf) fz_die("malloc");
        memcpy(sets_buf, sep + strlen(SEP), rest);
        sets_buf[rest] = 0;
        for (char *p = sets_buf; p && n_sets < MAX_SETS;) {
            sets[n_sets++] = p;
            p = memchr(p, '\n', (size_t)(sets_buf + rest - p));
            if (p) *p++ = 0;
        }
    }

    dt_error err = {0};
    dt_status st = dt_config_load(in.path, sets, n_sets, &c, &err);
    fz_verdict(st, st ? err.msg : "");
    if (st != DT_OK) {
        FZ_ASSERT(st == DT_ECONFIG, "status %d: %s", st, err.msg);
        FZ_ASSERT(err.code == DT_ECONFIG, "err.code %d", err.code);
        FZ_ASSERT(fz_one_line(err.msg), "message not one non-empty line: '%s'", err.msg);
        free(sets_buf);
        return 0;
    }

    /* load -> write -> load is the identity */
    size_t len1 = 0, len2 = 0;
    char *text1 = write_yaml(&c, &len1);
    fz_set(&out, text1, len1);
    dt_error err2 = {0};
    st = dt_config_load(out.path, NULL, 0, &d, &err2);
    FZ_ASSERT(st == DT_OK, "the written config does not load: %s\n--- written:\n%s", err2.msg,
              text1);
    normalise(&c);
    normalise(&d);
    if (memcmp(&c, &d, sizeof c) != 0) {
        const unsigned char *a = (const unsigned char *)&c, *b = (const unsigned char *)&d;
        size_t i = 0;
        while (a[i] == b[i]) i++;
        FZ_ASSERT(0, "reloaded config differs at byte %zu of dt_config\n--- written:\n%s", i,
                  text1);
    }
    /* and writing is deterministic: the reload writes the same text */
    char *text2 = write_yaml(&d, &len2);
    const char *body1 = strstr(text1, "\nrun:"), *body2 = strstr(text2, "\nrun:");
    FZ_ASSERT(body1 && body2 && strcmp(body1, body2) == 0,
              "second write differs\n--- first:\n%s\n--- second:\n%s", text1, text2);
    free(text1);
    free(text2);
    free(sets_buf);
    return 0;
}
