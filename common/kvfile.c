/* Strict key = value files. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/kvfile.h"

#define HK_KV_LINE_MAX 1024
#define HK_KV_FILE_MAX (64 * 1024)
#define HK_KV_FIELDS_MAX 64

static char *hk_trim(char *s)
{
    char *e;

    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        *--e = 0;
    return s;
}

static int hk_kv_printable(const char *v)
{
    for (; *v; v++)
        if (!isprint((unsigned char)*v))
            return 0;
    return 1;
}

/* Stores one value; returns a reason or NULL. */
static const char *hk_kv_set(void *base, const hk_kv_field *f, const char *v,
                             const char *dir)
{
    char *dst = (char *)base + f->off, *end;
    long n;
    int w;

    if (!hk_kv_printable(v) || *v == 0)
        return "empty or non-printable value";
    if (f->type == HK_KV_INT) {
        errno = 0;
        n = strtol(v, &end, 10);
        if (errno != 0 || *end != 0 || n < f->lo || n > f->hi)
            return "integer out of range";
        *(int *)dst = (int)n;
        return NULL;
    }
    if (f->type == HK_KV_PATH && v[0] != '/')
        w = snprintf(dst, f->cap, "%s/%s", dir, v);
    else
        w = snprintf(dst, f->cap, "%s", v);
    return w < 0 || (size_t)w >= f->cap ? "value too long" : NULL;
}

static const char *hk_kv_line(const hk_kv_field *fields, size_t nfields,
                              void *base, char *line, const char *dir,
                              unsigned *seen, unsigned lineno)
{
    char *eq, *k, *v;
    size_t i;

    line = hk_trim(line);
    if (*line == 0 || *line == '#')
        return NULL;
    if ((eq = strchr(line, '=')) == NULL)
        return "expected key = value";
    *eq = 0;
    k = hk_trim(line);
    v = hk_trim(eq + 1);
    for (i = 0; i < nfields; i++) {
        if (strcmp(k, fields[i].key) != 0)
            continue;
        if (seen[i] != 0)
            return "key repeated";
        seen[i] = lineno;
        return hk_kv_set(base, &fields[i], v, dir);
    }
    return "unknown key";
}

/* Bounded read of the whole file. */
static hk_err hk_kv_read(const char *path, char **out, char *why)
{
    char *buf;
    ssize_t n;
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        snprintf(why, 256, "%.200s: %.50s", path, strerror(errno));
        return HK_ERR_CONFIG;
    }
    if ((buf = malloc(HK_KV_FILE_MAX + 1)) == NULL) {
        close(fd);
        return HK_ERR_NOMEM;
    }
    while (len <= HK_KV_FILE_MAX &&
           (n = read(fd, buf + len, HK_KV_FILE_MAX + 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    if (len > HK_KV_FILE_MAX || memchr(buf, 0, len) != NULL) {
        snprintf(why, 256, "%.200s: too large or binary", path);
        free(buf);
        return HK_ERR_CONFIG;
    }
    buf[len] = 0;
    *out = buf;
    return HK_OK;
}

static void hk_kv_dir(const char *path, char *dir, size_t cap)
{
    char *slash;

    snprintf(dir, cap, "%s", path);
    slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, cap, ".");
    else
        *slash = 0;
}

hk_err hk_kv_load(const char *path, const hk_kv_field *fields, size_t nfields,
                  void *base, char *why)
{
    return hk_kv_load_lines(path, fields, nfields, base, why, NULL);
}

hk_err hk_kv_load_lines(const char *path, const hk_kv_field *fields,
                        size_t nfields, void *base, char *why, unsigned *lines)
{
    unsigned seen[HK_KV_FIELDS_MAX] = {0};
    char dir[1024], *buf = NULL, *line, *next;
    const char *reason;
    unsigned lineno = 0;
    hk_err e;

    if (path == NULL || fields == NULL || base == NULL || why == NULL ||
        nfields > HK_KV_FIELDS_MAX || strlen(path) >= sizeof(dir))
        return HK_ERR_ARG;
    why[0] = 0;
    hk_kv_dir(path, dir, sizeof(dir));
    if ((e = hk_kv_read(path, &buf, why)) != HK_OK)
        return e;
    for (line = buf; line != NULL; line = next) {
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = 0;
        lineno++;
        reason =
            strlen(line) > HK_KV_LINE_MAX
                ? "line too long"
                : hk_kv_line(fields, nfields, base, line, dir, seen, lineno);
        if (reason != NULL) {
            snprintf(why, 256, "%.200s:%u: %s", path, lineno, reason);
            free(buf);
            return HK_ERR_CONFIG;
        }
    }
    free(buf);
    if (lines != NULL)
        memcpy(lines, seen, nfields * sizeof(*lines));
    return HK_OK;
}

hk_err hk_kv_write(const char *path, const char *header,
                   const hk_kv_field *fields, size_t nfields, const void *base)
{
    FILE *f;
    size_t i;
    int fd;

    if (path == NULL || fields == NULL || base == NULL)
        return HK_ERR_ARG;
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
        if (fd >= 0)
            close(fd);
        return HK_ERR_IO;
    }
    if (header != NULL)
        fprintf(f, "# %s\n", header);
    for (i = 0; i < nfields; i++) {
        const char *v = (const char *)base + fields[i].off;

        if (fields[i].type == HK_KV_INT)
            fprintf(f, "%s = %d\n", fields[i].key, *(const int *)v);
        else if (*v != 0)
            fprintf(f, "%s = %s\n", fields[i].key, v);
    }
    return fclose(f) == 0 ? HK_OK : HK_ERR_IO;
}

int hk_kv_list_has(const char *list, const char *item, int wildcard)
{
    size_t n, want;

    if (list == NULL || item == NULL)
        return 0;
    want = strlen(item);
    while (*list != 0) {
        list += strspn(list, ", ");
        n = strcspn(list, ", ");
        if (n > 0 && ((wildcard && n == 1 && *list == '*') ||
                      (n == want && strncmp(list, item, n) == 0)))
            return 1;
        list += n;
    }
    return 0;
}
