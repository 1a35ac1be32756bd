/* test_safetensors.c - Check suite for safetensors.c: the exact bytes the
 * writer produces, round trips (every bit pattern, scalars, empty
 * tensors, metadata), files written the way other tools write them
 * (keys in any order, whitespace, escapes), and every rejection of the
 * reader and of the strict check, each with its message.
 *
 * Every test works in its own folder under one root that main creates
 * and removes. Broken files are written byte by byte from a header text
 * and a data length (raw_file), so each case states exactly what is
 * wrong. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check_main.h"
#include "dtrain/safetensors.h"

static char rootdir[512];
static char dir[600];

static void setup(void)
{
    snprintf(dir, sizeof dir, "%s/t_XXXXXX", rootdir);
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void) { dt_check_rm_rf(dir); }

static void path_in(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", dir, name);
}

static unsigned char *read_all(const char *path, long *size)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)*size + 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(fread(b, 1, (size_t)*size, f), (size_t)*size);
    fclose(f);
    return b;
}

/* A file of: the 8-byte length (hlen, or strlen(header) when hlen < 0),
 * the header text, then data_len bytes of float 1.0 patterns (a trailing
 * partial float as zero bytes). */
static void raw_file(const char *path, long long hlen, const char *header, size_t data_len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    unsigned long long n = hlen < 0 ? strlen(header) : (unsigned long long)hlen;
    for (int i = 0; i < 8; i++) fputc((int)(n >> (8 * i) & 0xff), f);
    fputs(header, f);
    const unsigned char one[4] = {0x00, 0x00, 0x80, 0x3f}; /* 1.0f little-endian */
    for (size_t i = 0; i < data_len; i++) fputc(data_len - i < 4 && data_len % 4 ? 0 : one[i % 4], f);
    ck_assert_int_eq(fclose(f), 0);
}

/* ---- the writer's bytes ---------------------------------------------------- */

START_TEST(test_writer_exact_bytes)
{
    char path[700];
    path_in(path, sizeof path, "w.safetensors");
    float a[2] = {1.0f, -2.0f};
    dt_st_tensor t[] = {{.name = "0.bias", .ndim = 1, .shape = {2}, .data = a}};
    dt_st_meta m[] = {{"step", "7"}, {"q\"uote", "back\\slash\n"}};
    dt_error err = {0};
    ck_assert_int_eq(dt_st_write(path, t, 1, m, 2, &err), DT_OK);
    long size;
    unsigned char *b = read_all(path, &size);
    const char *want = "{\"__metadata__\":{\"step\":\"7\",\"q\\\"uote\":\"back\\\\slash\\u000a\"},"
                       "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    size_t wl = strlen(want), padded = (wl + 8 + 7) / 8 * 8 - 8;
    unsigned long long hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | b[i];
    ck_assert_uint_eq(hlen, padded); /* data 8-byte aligned */
    ck_assert_int_eq((8 + hlen) % 8, 0);
    ck_assert_int_eq(memcmp(b + 8, want, wl), 0);
    for (size_t i = wl; i < padded; i++) ck_assert_int_eq(b[8 + i], ' ');
    ck_assert_int_eq(size, (long)(8 + padded + 8));
    const unsigned char data[8] = {0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0}; /* 1, -2 little-endian */
    ck_assert_int_eq(memcmp(b + 8 + padded, data, 8), 0);
    free(b);
    /* no temporary file left next to it */
    char tmp[800];
    snprintf(tmp, sizeof tmp, "%s/.w.safetensors.tmp.%ld", dir, (long)getpid());
    ck_assert_int_ne(access(tmp, F_OK), 0);
}
END_TEST

START_TEST(test_roundtrip)
{
    char path[700];
    path_in(path, sizeof path, "r.safetensors");
    enum { N_W = 6 * 1 * 5 * 5, N_D = 3 * 7 };
    float conv[N_W], dense[N_D], bias[3], scalar[1] = {42.5f}, none[1] = {0};
    for (int i = 0; i < N_W; i++) {
        uint32_t bits = 0x3f000000u + (uint32_t)i * 2654435761u % 0x00800000u;
        memcpy(&conv[i], &bits, 4);
    }
    for (int i = 0; i < N_D; i++) dense[i] = (float)i * 0.25f - 2.0f;
    dense[0] = -0.0f;
    dense[1] = 1e-45f; /* denormal */
    dense[2] = 3.4028235e38f;
    bias[0] = 1, bias[1] = 2, bias[2] = 3;
    dt_st_tensor t[] = {
        {.name = "0.weight", .ndim = 4, .shape = {6, 1, 5, 5}, .data = conv},
        {.name = "3.weight", .ndim = 2, .shape = {3, 7}, .data = dense},
        {.name = "3.bias", .ndim = 1, .shape = {3}, .data = bias},
        {.name = "scalar", .ndim = 0, .data = scalar},
        {.name = "empty", .ndim = 2, .shape = {0, 4}, .data = none},
    };
    dt_st_meta m[] = {{"format", "pt"}, {"step", "123"}, {"naïve", "ünïcode ✓"}};
    dt_error err = {0};
    ck_assert_int_eq(dt_st_write(path, t, 5, m, 3, &err), DT_OK);

    dt_st_file *f;
    ck_assert_int_eq(dt_st_open(path, &f, &err), DT_OK);
    ck_assert_int_eq(f->n, 5);
    ck_assert_str_eq(dt_st_meta_get(f, "step"), "123");
    ck_assert_str_eq(dt_st_meta_get(f, "naïve"), "ünïcode ✓");
    ck_assert_ptr_null(dt_st_meta_get(f, "missing"));
    const dt_st_info *i0 = dt_st_find(f, "0.weight");
    ck_assert_ptr_nonnull(i0);
    ck_assert_str_eq(i0->dtype, "F32");
    ck_assert_int_eq(i0->ndim, 4);
    ck_assert_uint_eq(i0->shape[0], 6);
    ck_assert_uint_eq(i0->shape[3], 5);
    ck_assert_uint_eq(i0->count, N_W);
    ck_assert_uint_eq(i0->begin, 0);
    ck_assert_uint_eq(i0->end, 4 * N_W);
    ck_assert_uint_eq(dt_st_find(f, "scalar")->count, 1);
    ck_assert_uint_eq(dt_st_find(f, "empty")->count, 0);
    ck_assert_ptr_null(dt_st_find(f, "nope"));
    ck_assert_int_eq(dt_st_check(f, t, 5, &err), DT_OK);
    float back[N_W];
    ck_assert_int_eq(dt_st_read_f32(f, i0, back, &err), DT_OK);
    ck_assert_int_eq(memcmp(back, conv, sizeof conv), 0);
    dt_st_close(f);

    /* dt_st_load: every tensor into the caller's arrays, bit for bit */
    float c2[N_W], d2[N_D], b2[3], s2[1], e2[1];
    dt_st_tensor want[] = {
        {.name = "3.bias", .ndim = 1, .shape = {3}, .data = b2}, /* any order */
        {.name = "0.weight", .ndim = 4, .shape = {6, 1, 5, 5}, .data = c2},
        {.name = "3.weight", .ndim = 2, .shape = {3, 7}, .data = d2},
        {.name = "scalar", .ndim = 0, .data = s2},
        {.name = "empty", .ndim = 2, .shape = {0, 4}, .data = e2},
    };
    ck_assert_int_eq(dt_st_load(path, want, 5, &err), DT_OK);
    ck_assert_int_eq(memcmp(c2, conv, sizeof conv), 0);
    ck_assert_int_eq(memcmp(d2, dense, sizeof dense), 0);
    ck_assert_int_eq(memcmp(b2, bias, sizeof bias), 0);
    ck_assert_int_eq(memcmp(s2, scalar, sizeof scalar), 0);
}
END_TEST

/* A file as another writer may lay it out: metadata last, keys in another
 * order, whitespace and padding, escapes in a name. */
START_TEST(test_reads_foreign_layout)
{
    char path[700];
    path_in(path, sizeof path, "foreign.safetensors");
    raw_file(path, -1,
             "{ \"b\" : { \"data_offsets\" : [ 8 , 20 ] , \"shape\" : [3], \"dtype\":\"F32\" },\n"
             "\t\"\\u0030.w\\u00e9ight\": {\"shape\": [2], \"dtype\": \"F32\", \"data_offsets\": [0, 8]},"
             "\"__metadata__\": {\"format\": \"pt\", \"x\": \"\\ud83d\\ude00\"}}       ",
             20);
    dt_st_file *f;
    dt_error err = {0};
    ck_assert_int_eq(dt_st_open(path, &f, &err), DT_OK);
    ck_assert_int_eq(f->n, 2);
    ck_assert_ptr_nonnull(dt_st_find(f, "0.wéight"));
    ck_assert_str_eq(dt_st_meta_get(f, "x"), "\xf0\x9f\x98\x80"); /* U+1F600 */
    float b[3];
    ck_assert_int_eq(dt_st_read_f32(f, dt_st_find(f, "b"), b, &err), DT_OK);
    ck_assert(b[0] == 1.0f && b[2] == 1.0f);
    dt_st_close(f);
    /* the empty file of tensors is a valid file too */
    raw_file(path, -1, "{}", 0);
    ck_assert_int_eq(dt_st_open(path, &f, &err), DT_OK);
    ck_assert_int_eq(f->n, 0);
    dt_st_close(f);
}
END_TEST

/* ---- rejections by dt_st_open --------------------------------------------- */

typedef struct {
    const char *what;
    long long hlen; /* -1: the header's length */
    const char *header;
    size_t data_len;
    const char *message; /* must appear in the error, after "PATH: " */
} bad_file;

#define T(x) "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":" x "}}"
static const bad_file bad_files[] = {
    {"header length 1", 1, "{", 0, ": not a safetensors file: header length 1 (a JSON object"},
    {"header length over the limit", 100000001, "{}", 0, "exceeds the limit of 100000000"},
    {"header length past the end", 50, "{}", 0,
     ": truncated: header length 50, but only 2 bytes follow the length"},
    {"header length past the end, no JSON", 50, "PK", 0,
     ": not a safetensors file: header length 50, but only 2 bytes follow the length, and no "
     "JSON object starts there"},
    {"invalid UTF-8", -1, "{\"\xc3\x28\":1}", 0, ": header byte 10: not valid UTF-8"},
    {"overlong UTF-8", -1, "{\"\xc0\xaf\":1}", 0, "not valid UTF-8"},
    {"not an object", -1, "[1, 2]", 0, ": header byte 8: expected '{', found '['"},
    {"garbage after the object", -1, "{} x", 0, "'x' after the header's JSON object"},
    {"second object", -1, "{}{}", 0, "'{' after the header's JSON object"},
    {"unterminated string", -1, "{\"t", 0, "a tensor name: unterminated string"},
    {"key not a string", -1, "{t: 1}", 0, "expected a tensor name (a string), found 't'"},
    {"missing colon", -1, "{\"t\" 1}", 0, "expected ':', found '1'"},
    {"missing comma", -1, "{\"t\":{\"dtype\":\"F32\" \"shape\":[]}}", 0, "expected '}', found '\"'"},
    {"bad escape", -1, "{\"a\\qb\":1}", 0, "a tensor name: invalid escape in a string"},
    {"bad \\u escape", -1, "{\"a\\u12g4\":1}", 0, "invalid \\u escape"},
    {"lone surrogate", -1, "{\"a\\udc00\":1}", 0, "unpaired surrogate"},
    {"\\u0000 in a name", -1, "{\"a\\u0000\":1}", 0, "\\u0000 in a string"},
    {"control character", -1, "{\"a\tb\":1}", 0, "control character 0x09 in a string"},
    {"escaped control character in a name", -1, "{\"a\\nb\":{}}", 0,
     "tensor name \"a?b\" holds a control character"},
    {"tensor not an object", -1, "{\"t\":[1]}", 0, "tensor \"t\": expected '{', found '['"},
    {"unknown dtype", -1, "{\"t\":{\"dtype\":\"Q8\",\"shape\":[],\"data_offsets\":[0,0]}}", 0,
     "tensor \"t\": unknown dtype \"Q8\""},
    {"unknown key", -1, "{\"t\":{\"dtype\":\"F32\",\"foo\":1}}", 0,
     "tensor \"t\": unknown key \"foo\" (expected dtype, shape, data_offsets)"},
    {"repeated key", -1, "{\"t\":{\"dtype\":\"F32\",\"dtype\":\"F32\"}}", 0,
     "tensor \"t\": \"dtype\" appears twice"},
    {"no data_offsets", -1, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2]}}", 0,
     "tensor \"t\": no \"data_offsets\""},
    {"no dtype", -1, "{\"t\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "tensor \"t\": no \"dtype\""},
    {"negative dimension", -1, "{\"t\":{\"dtype\":\"F32\",\"shape\":[-2]}}", 0,
     "tensor \"t\": shape: expected an integer >= 0, found '-'"},
    {"fractional dimension", -1, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2.0]}}", 0,
     "shape: expected an integer, found a fraction or exponent"},
    {"exponent", -1, T("[0,8e0]"), 8, "data_offsets: expected an integer, found a fraction"},
    {"leading zero", -1, T("[00,8]"), 8, "data_offsets: integer with a leading zero"},
    {"integer past 64 bits", -1, T("[0,18446744073709551616]"), 8,
     "data_offsets: integer too large"},
    {"nine dimensions", -1, "{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1]}}", 0,
     "shape: more than 8 values"},
    {"three offsets", -1, T("[0,4,8]"), 8, "data_offsets: more than 2 values"},
    {"one offset", -1, T("[8]"), 8, "data_offsets: 1 value, expected 2"},
    {"offsets not the shape's size", -1, T("[0,12]"), 12,
     "tensor \"t\": data_offsets [0, 12] do not hold its F32 [2] (8 bytes)"},
    {"offsets reversed", -1, T("[8,0]"), 8, "data_offsets [8, 0] do not hold"},
    {"data truncated", -1, T("[0,8]"), 6,
     "tensor \"t\": data_offsets [0, 8] lie beyond the data (6 bytes; the file is truncated?)"},
    {"shape overflows", -1,
     "{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0,
     "tensor \"t\": shape has too many elements"},
    {"bytes overflow", -1,
     "{\"t\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", 0,
     "tensor \"t\": shape has too many elements"},
    {"duplicate name", -1,
     "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
     "tensor \"t\" appears twice in the header"},
    {"overlap", -1,
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
     "tensors \"a\" and \"b\" overlap"},
    {"gap", -1,
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12,
     "tensor \"b\": 4 unused bytes before its data"},
    {"bytes after the data", -1, T("[0,8]"), 11, ": 3 bytes after the last tensor's data"},
    {"metadata value not a string", -1, "{\"__metadata__\":{\"step\":7}}", 0,
     "expected a metadata value (a string), found '7'"},
    {"metadata not an object", -1, "{\"__metadata__\":\"x\"}", 0, "expected '{', found '\"'"},
    {"metadata twice", -1, "{\"__metadata__\":{},\"__metadata__\":{}}", 0,
     "\"__metadata__\" appears twice"},
    {"metadata key twice", -1, "{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}", 0,
     "metadata key \"a\" appears twice"},
};
#undef T

START_TEST(test_rejects_bad_file)
{
    const bad_file *c = &bad_files[_i];
    char path[700];
    path_in(path, sizeof path, "bad.safetensors");
    raw_file(path, c->hlen, c->header, c->data_len);
    dt_st_file *f = (dt_st_file *)1;
    dt_error err = {0};
    dt_status st = dt_st_open(path, &f, &err);
    if (st != DT_EDATA || !strstr(err.msg, c->message) || strncmp(err.msg, path, strlen(path)))
        ck_abort_msg("%s: status %d, message '%s', expected '%s'", c->what, st, err.msg,
                     c->message);
    ck_assert_ptr_null(f);
    ck_assert_ptr_null(strchr(err.msg, '\n'));
}
END_TEST

START_TEST(test_rejects_short_and_missing_files)
{
    char path[700];
    dt_st_file *f;
    dt_error err = {0};
    path_in(path, sizeof path, "absent.safetensors");
    ck_assert_int_eq(dt_st_open(path, &f, &err), DT_EDATA);
    ck_assert_ptr_nonnull(strstr(err.msg, "absent.safetensors: cannot open: No such file"));
    path_in(path, sizeof path, "short.safetensors");
    FILE *s = fopen(path, "wb");
    fputs("{}", s);
    fclose(s);
    ck_assert_int_eq(dt_st_open(path, &f, &err), DT_EDATA);
    ck_assert_ptr_nonnull(
        strstr(err.msg, ": not a safetensors file: 2 bytes, shorter than the 8-byte header length"));
    ck_assert_int_eq(dt_st_open(dir, &f, &err), DT_EDATA);
    ck_assert_ptr_nonnull(strstr(err.msg, ": not a regular file"));
}
END_TEST

/* ---- rejections by the strict check and the reads -------------------------- */

START_TEST(test_check_rejects_mismatch)
{
    char path[700];
    path_in(path, sizeof path, "m.safetensors");
    float w[6] = {0}, b[3] = {0};
    dt_st_tensor have[] = {{.name = "a", .ndim = 2, .shape = {3, 2}, .data = w},
                           {.name = "b", .ndim = 1, .shape = {3}, .data = b}};
    dt_error err = {0};
    ck_assert_int_eq(dt_st_write(path, have, 2, NULL, 0, &err), DT_OK);
    dt_st_file *f;
    ck_assert_int_eq(dt_st_open(path, &f, &err), DT_OK);

    dt_st_tensor shape[] = {{.name = "a", .ndim = 2, .shape = {2, 3}}, {.name = "b", .ndim = 1, .shape = {3}}};
    ck_assert_int_eq(dt_st_check(f, shape, 2, &err), DT_EDATA);
    ck_assert_str_eq(strstr(err.msg, ": tensor"), ": tensor \"a\": shape [3, 2], expected [2, 3]");

    dt_st_tensor rank[] = {{.name = "a", .ndim = 1, .shape = {6}}, {.name = "b", .ndim = 1, .shape = {3}}};
    ck_assert_int_eq(dt_st_check(f, rank, 2, &err), DT_EDATA);
    ck_assert_str_eq(strstr(err.msg, ": tensor"), ": tensor \"a\": shape [3, 2], expected [6]");

    dt_st_tensor more[] = {{.name = "a", .ndim = 2, .shape = {3, 2}},
                           {.name = "b", .ndim = 1, .shape = {3}},
                           {.name = "c", .ndim = 1, .shape = {4}}};
    ck_assert_int_eq(dt_st_check(f, more, 3, &err), DT_EDATA);
    ck_assert_str_eq(strstr(err.msg, ": tensor"), ": tensor \"c\" is missing (expected F32 [4])");

    dt_st_tensor fewer[] = {{.name = "a", .ndim = 2, .shape = {3, 2}}};
    ck_assert_int_eq(dt_st_check(f, fewer, 1, &err), DT_EDATA);
    ck_assert_str_eq(strstr(err.msg, ": tensor"), ": tensor \"b\" is not one of the model's (a)");
    ck_assert_int_eq(strncmp(err.msg, path, strlen(path)), 0);
    dt_st_close(f);

    /* another dtype */
    raw_file(path, -1,
             "{\"a\":{\"dtype\":\"F16\",\"shape\":[3,2],\"data_offsets\":[0,12]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[12,24]}}",
             24);
    ck_assert_int_eq(dt_st_open(path, &f, &err), DT_OK);
    ck_assert_int_eq(dt_st_check(f, have, 2, &err), DT_EDATA);
    ck_assert_str_eq(strstr(err.msg, ": tensor"), ": tensor \"a\": dtype F16, expected F32");
    ck_assert_int_eq(dt_st_read_f32(f, dt_st_find(f, "a"), w, &err), DT_EDATA);
    ck_assert_str_eq(strstr(err.msg, ": tensor"), ": tensor \"a\": dtype F16, expected F32");
    dt_st_close(f);
    ck_assert_int_eq(dt_st_load(path, have, 2, &err), DT_EDATA);
    ck_assert_str_eq(strstr(err.msg, ": tensor"), ": tensor \"a\": dtype F16, expected F32");
}
END_TEST

START_TEST(test_read_rejects_non_finite)
{
    char path[700];
    path_in(path, sizeof path, "nan.safetensors");
    float v[3] = {1.0f, NAN, 2.0f};
    dt_st_tensor t[] = {{.name = "0.weight", .ndim = 1, .shape = {3}, .data = v}};
    dt_error err = {0};
    ck_assert_int_eq(dt_st_write(path, t, 1, NULL, 0, &err), DT_OK);
    float back[3];
    dt_st_tensor want[] = {{.name = "0.weight", .ndim = 1, .shape = {3}, .data = back}};
    ck_assert_int_eq(dt_st_load(path, want, 1, &err), DT_EDATA);
    ck_assert_str_eq(strstr(err.msg, ": tensor"), ": tensor \"0.weight\": element 1 is NaN");
    v[1] = 0;
    v[2] = -INFINITY;
    ck_assert_int_eq(dt_st_write(path, t, 1, NULL, 0, &err), DT_OK);
    ck_assert_int_eq(dt_st_load(path, want, 1, &err), DT_EDATA);
    ck_assert_str_eq(strstr(err.msg, ": tensor"), ": tensor \"0.weight\": element 2 is infinite");
}
END_TEST

START_TEST(test_write_failure_names_the_file)
{
    char path[700];
    path_in(path, sizeof path, "no/such/folder/w.safetensors");
    float v[1] = {1};
    dt_st_tensor t[] = {{.name = "x", .ndim = 1, .shape = {1}, .data = v}};
    dt_error err = {0};
    ck_assert_int_eq(dt_st_write(path, t, 1, NULL, 0, &err), DT_EINTERNAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "w.safetensors"));
    ck_assert_ptr_nonnull(strstr(err.msg, "No such file or directory"));
}
END_TEST

static Suite *safetensors_suite(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("safetensors");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_writer_exact_bytes);
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_reads_foreign_layout);
    tcase_add_loop_test(tc, test_rejects_bad_file, 0, (int)(sizeof bad_files / sizeof bad_files[0]));
    tcase_add_test(tc, test_rejects_short_and_missing_files);
    tcase_add_test(tc, test_check_rejects_mismatch);
    tcase_add_test(tc, test_read_rejects_non_finite);
    tcase_add_test(tc, test_write_failure_names_the_file);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(rootdir, sizeof rootdir, "%s/dt_st_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(rootdir)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    int status = dt_check_run(safetensors_suite());
    dt_check_rm_rf(rootdir);
    return status;
}
