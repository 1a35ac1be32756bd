/* write.c - the resolved configuration as YAML, driven by the schema tables.
 *
 * Every section and every key that applies is written with its value,
 * defaults included, so the file documents the run completely and
 * dt_config_load reads it back to the same dt_config. Of a steps/epochs
 * pair, the member in the unit the value is held in is written. The text is
 * also what a run's config_hash is computed from: changing a byte here
 * changes the hash and stops old checkpoints from resuming. */
#include "config_internal.h"

#define CAT(base, f, type) ((const type *)((const char *)(base) + (f)->off))

/* A double-quoted YAML scalar that reads back byte for byte. */
static void write_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        /* YAML folds its Unicode line breaks even inside quotes: escape them */
        if (p[0] == 0xc2 && p[1] == 0x85) {
            fputs("\\N", out), p++;
            continue;
        }
        if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
            fputs(p[2] == 0xa8 ? "\\L" : "\\P", out), p += 2;
            continue;
        }
        /* characters libyaml's reader refuses even inside quotes ("control
         * characters are not allowed"): C1 controls U+0080..U+009F other
         * than U+0085, and the non-characters U+FFFE, U+FFFF */
        if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            fprintf(out, "\\x%02x", p[1]), p++;
            continue;
        }
        if (p[0] == 0xef && p[1] == 0xbf && (p[2] == 0xbe || p[2] == 0xbf)) {
            fprintf(out, "\\u%04X", 0xfffeu + (p[2] - 0xbeu)), p += 2;
            continue;
        }
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(out, "\\x%02x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

/* The unit the value of a pair member's row is held in (U_NONE: no value). */
static dur_unit held_unit(const field *f, const void *base)
{
    if (f->type == F_CUSTOM) return f->custom->held_unit(base);
    const dt_duration *d = CAT(base, f, dt_duration);
    if (!d->set) return U_NONE;
    return d->in_epochs ? U_EPOCHS : U_STEPS;
}

/* What follows "key: " (custom rows write their own separator). */
static void write_value(const field *f, const void *base, FILE *out)
{
    switch (f->type) {
    case F_INT:
        if (f->width == W_ULL)
            fprintf(out, "%llu", *CAT(base, f, unsigned long long));
        else
            fprintf(out, "%ld", cfg_load_int(base, f));
        break;
    case F_FLOAT: fprintf(out, "%.17g", *CAT(base, f, double)); break;
    case F_BOOL: fprintf(out, "%s", *CAT(base, f, bool) ? "true" : "false"); break;
    case F_STR: write_string(out, CAT(base, f, char)); break;
    case F_ENUM: fprintf(out, "%s", f->names->name(cfg_load_enum(base, f))); break;
    case F_DUR: fprintf(out, "%ld", CAT(base, f, dt_duration)->value); break;
    case F_INTS:
        fputc('[', out);
        for (int i = 0; i < f->count; i++)
            fprintf(out, "%s%d", i ? ", " : "", CAT(base, f, int)[i]);
        fputc(']', out);
        break;
    case F_CUSTOM: f->custom->write(f, base, out); break;
    }
}

void dt_config_write_yaml(const dt_config *cfg, FILE *out)
{
    fprintf(out, "# dtrain configuration with every default resolved\n");
    if (cfg->source[0]) {
        fprintf(out, "# from ");
        write_string(out, cfg->source);
        fputc('\n', out);
    }
    for (size_t s = 0; s < cfg_n_sections; s++) {
        const section *t = &cfg_sections[s];
        fprintf(out, "%s:\n", t->name);
        for (size_t i = 0; i < t->n; i++) {
            const field *f = &t->fields[i];
            if (!cfg_applies(f, t, cfg)) continue;
            if (f->unit != U_NONE && held_unit(f, cfg) != f->unit) continue;
            /* an empty string is an optional key left unset (run.trace):
             * the loader takes only non-empty strings, so leave it out */
            if (f->type == F_STR && !CAT(cfg, f, char)[0]) continue;
            if (f->quiet_default && f->type == F_ENUM && cfg_load_enum(cfg, f) == (int)f->def)
                continue;
            fprintf(out, "  %s:%s", f->key, f->type == F_CUSTOM ? "" : " ");
            write_value(f, cfg, out);
            fputc('\n', out);
        }
    }
}
