/* Strict `key = value` configuration files, shared by halfkeyd and the
 * client: `#` comments and blank lines allowed; every key known and given
 * once; values printable and bounded; integers in range; relative paths
 * resolved against the file's directory; errors name file and line. */
#ifndef HK_KVFILE_H
#define HK_KVFILE_H

#include <stddef.h>

#include "common/error.h"

typedef enum { HK_KV_STR, HK_KV_PATH, HK_KV_INT } hk_kv_type;

typedef struct {
    const char *key;
    hk_kv_type type;
    size_t off; /* offset of the field in the caller's struct */
    size_t cap; /* char array size (STR, PATH) */
    int lo, hi; /* range (INT) */
} hk_kv_field;

#define HK_KV_S(T, k, f)                                                       \
    {                                                                          \
        k, HK_KV_STR, offsetof(T, f), sizeof(((T *)0)->f), 0, 0                \
    }
#define HK_KV_P(T, k, f)                                                       \
    {                                                                          \
        k, HK_KV_PATH, offsetof(T, f), sizeof(((T *)0)->f), 0, 0               \
    }
#define HK_KV_I(T, k, f, lo, hi)                                               \
    {                                                                          \
        k, HK_KV_INT, offsetof(T, f), 0, lo, hi                                \
    }

/* Parses `path` into `base` (already holding the defaults). why[256]
 * receives "file:line: reason" on HK_ERR_CONFIG. */
HK_WUR hk_err hk_kv_load(const char *path, const hk_kv_field *fields,
                         size_t nfields, void *base, char *why);
/* As hk_kv_load; lines[i] (nfields entries) receives the line of field i,
 * 0 if the file does not set it, so later checks can name the line. */
HK_WUR hk_err hk_kv_load_lines(const char *path, const hk_kv_field *fields,
                               size_t nfields, void *base, char *why,
                               unsigned *lines);
/* 1 if `item` is one of the entries of a list value (entries separated by
 * commas and/or spaces); with `wildcard`, an entry "*" matches any item. */
int hk_kv_list_has(const char *list, const char *item, int wildcard);
/* Writes the non-empty fields as a new file (mode 0600). */
HK_WUR hk_err hk_kv_write(const char *path, const char *header,
                          const hk_kv_field *fields, size_t nfields,
                          const void *base);

#endif
