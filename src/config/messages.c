/* messages.c - where a config error is and how it is worded.
 *
 * Every message is one line that starts with a position: "FILE:LINE:COL"
 * for the file, "--set KEY=VALUE" for an override (whose VALUE has no
 * useful line), or "FILE" alone when there is no node to point at. Values
 * are quoted as the user wrote them, escaped and shortened, so a hostile
 * input cannot break the line. */
#include <stdarg.h>
#include <string.h>

#include "config_internal.h"

void cfg_where(const loader *L, int src, int line, int col, bool again, char *buf, size_t size)
{
    if (again && src < 0 && line > 0)
        snprintf(buf, size, "line %d column %d", line, col);
    else if (src >= 0)
        snprintf(buf, size, "--set %s", L->sets[src]);
    else if (line > 0)
        snprintf(buf, size, "%s:%d:%d", L->path, line, col);
    else
        snprintf(buf, size, "%s", L->path);
}

dt_status cfg_fail_at(loader *L, int src, int line, int col, const char *fmt, ...)
{
    char pos[DT_ERRMSG_MAX], msg[DT_ERRMSG_MAX];
    cfg_where(L, src, line, col, false, pos, sizeof pos);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return dt_fail(L->err, DT_ECONFIG, "%s: %s", pos, msg);
}

dt_status cfg_oom(loader *L)
{
    return dt_fail(L->err, DT_EINTERNAL, "out of memory while reading config %s", L->path);
}

void cfg_subpath(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    if (n >= (int)size && size > 4) memcpy(buf + size - 4, "...", 4);
}

const char *cfg_describe(const node *n, bool typed, char *buf, size_t size)
{
    if (n->kind == N_LIST) return n->n ? "a list" : "an empty list";
    if (n->kind == N_MAP) return n->n ? "a mapping" : "an empty mapping";
    size_t o = 0, limit = size > 40 ? size - 40 : 0; /* room for an escape, "..." and the note */
    const unsigned char *s = (const unsigned char *)n->text;
    buf[o++] = '"';
    for (; *s && o < limit; s++) {
        if (*s == '"' || *s == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)*s;
        } else if (*s == '\n') {
            o += (size_t)snprintf(buf + o, size - o, "\\n");
        } else if (*s < 0x20 || *s == 0x7f) {
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", *s);
        } else {
            buf[o++] = (char)*s;
        }
    }
    if (*s) o += (size_t)snprintf(buf + o, size - o, "...");
    snprintf(buf + o, size - o, "\"%s", typed && !n->plain ? " (quoted, so a string)" : "");
    return buf;
}

dt_status cfg_expected(loader *L, const node *n, const char *path, const char *what,
                       const char *note)
{
    char got[160];
    return cfg_fail_node(L, n, "%s: expected %s, got %s%s", path, what,
                         cfg_describe(n, true, got, sizeof got), note);
}
