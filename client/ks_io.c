/* Keystore file I/O: bounded reads, atomic writes, directories, OFD locks.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/libctx.h"
#include "client/ks_impl.h"

#define HK_KS_TMP_SUFFIX ".tmp"

static hk_err hk_ks_errno(int err)
{
    return err == ENOENT ? HK_ERR_NOT_FOUND : HK_ERR_IO;
}

/* Reads until EOF; HK_ERR_TOO_BIG past max. */
static hk_err hk_ks_read_all(int fd, unsigned char *buf, size_t max,
                             size_t *len)
{
    size_t got = 0;
    ssize_t r;

    for (;;) {
        r = read(fd, buf + got, max + 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return HK_ERR_IO;
        if (r == 0)
            break;
        got += (size_t)r;
        if (got > max)
            return HK_ERR_TOO_BIG;
    }
    *len = got;
    return HK_OK;
}

hk_err hk_ks_read_file(int dirfd, const char *name, size_t max,
                       unsigned char **out, size_t *len)
{
    unsigned char *buf = NULL;
    struct stat st;
    size_t n = 0;
    int fd;
    hk_err e;

    if (name == NULL || out == NULL || len == NULL || max == 0)
        return HK_ERR_ARG;
    *out = NULL;
    fd = openat(dirfd, name,
                O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return hk_ks_errno(errno);
    e = HK_ERR_IO;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        goto done;
    e = HK_ERR_TOO_BIG;
    if ((uint64_t)st.st_size > max)
        goto done;
    e = HK_ERR_NOMEM;
    if ((buf = OPENSSL_malloc(max + 1)) == NULL)
        goto done;
    if ((e = hk_ks_read_all(fd, buf, max, &n)) != HK_OK)
        goto done;
    *out = buf;
    *len = n;
    buf = NULL;
done:
    OPENSSL_clear_free(buf, max + 1);
    close(fd);
    return e;
}

static hk_err hk_ks_write_all(int fd, const unsigned char *buf, size_t len)
{
    ssize_t w;

    while (len > 0) {
        w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return HK_ERR_IO;
        buf += w;
        len -= (size_t)w;
    }
    return HK_OK;
}

/* ".<name>.<16 hex>.tmp": never a valid label file, swept after a crash. */
static hk_err hk_ks_tmp_name(const char *name, char *out, size_t max)
{
    unsigned char r[8];
    char hex[17];
    size_t i;
    int n;

    if (!hk_rand_bytes(r, sizeof(r)))
        return HK_ERR_RAND;
    for (i = 0; i < sizeof(r); i++)
        snprintf(hex + 2 * i, 3, "%02x", r[i]);
    n = snprintf(out, max, ".%s.%s" HK_KS_TMP_SUFFIX, name, hex);
    return n > 0 && (size_t)n < max ? HK_OK : HK_ERR_ARG;
}

/* Writes and syncs the temp file `tmp`, which must not exist. */
static hk_err hk_ks_write_tmp(int dirfd, const char *tmp,
                              const unsigned char *buf, size_t len)
{
    hk_err e = HK_ERR_IO;
    int fd;

    fd = openat(dirfd, tmp,
                O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return HK_ERR_IO;
    if (fchmod(fd, 0600) != 0) /* whatever the umask */
        goto done;
    if ((e = hk_ks_write_all(fd, buf, len)) != HK_OK)
        goto done;
    e = fsync(fd) == 0 ? HK_OK : HK_ERR_IO;
done:
    if (close(fd) != 0 && e == HK_OK)
        e = HK_ERR_IO;
    return e;
}

hk_err hk_ks_write_file(int dirfd, const char *name, const unsigned char *buf,
                        size_t len)
{
    char tmp[HK_KS_LABEL_MAX + 64];
    hk_err e;

    if (name == NULL || (buf == NULL && len > 0))
        return HK_ERR_ARG;
    if ((e = hk_ks_tmp_name(name, tmp, sizeof(tmp))) != HK_OK)
        return e;
    if ((e = hk_ks_write_tmp(dirfd, tmp, buf, len)) != HK_OK)
        goto fail;
    e = HK_ERR_IO;
    if (renameat(dirfd, tmp, dirfd, name) != 0)
        goto fail;
    return fsync(dirfd) == 0 ? HK_OK : HK_ERR_IO;
fail:
    unlinkat(dirfd, tmp, 0);
    return e;
}

hk_err hk_ks_unlink(int dirfd, const char *name)
{
    if (name == NULL)
        return HK_ERR_ARG;
    if (unlinkat(dirfd, name, 0) != 0)
        return hk_ks_errno(errno);
    return fsync(dirfd) == 0 ? HK_OK : HK_ERR_IO;
}

#define HK_KS_SPENT_SUFFIX ".spent" HK_KS_TMP_SUFFIX

hk_err hk_ks_retire(int dirfd, const char *name)
{
    char spent[NAME_MAX + 1];

    if (name == NULL ||
        (size_t)snprintf(spent, sizeof(spent), ".%s" HK_KS_SPENT_SUFFIX,
                         name) >= sizeof(spent))
        return HK_ERR_ARG;
    return renameat(dirfd, name, dirfd, spent) == 0 ? HK_OK
                                                    : hk_ks_errno(errno);
}

int hk_ks_exists(int dirfd, const char *name)
{
    struct stat st;

    return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Creates one directory 0700 (an existing one is left alone). */
static hk_err hk_ks_mkdir1(const char *path)
{
    struct stat st;

    if (mkdir(path, 0700) == 0)
        return chmod(path, 0700) == 0 ? HK_OK : HK_ERR_IO;
    if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return HK_OK;
    return HK_ERR_IO;
}

hk_err hk_ks_mkdirs(const char *path)
{
    char *p, *s;
    hk_err e = HK_OK;

    if (path == NULL || *path == 0)
        return HK_ERR_ARG;
    if ((p = OPENSSL_strdup(path)) == NULL)
        return HK_ERR_NOMEM;
    for (s = p + 1; *s != 0 && e == HK_OK; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        e = hk_ks_mkdir1(p);
        *s = '/';
    }
    if (e == HK_OK)
        e = hk_ks_mkdir1(p);
    OPENSSL_free(p);
    return e;
}

hk_err hk_ks_open_dir(int dirfd, const char *name, int fix, int *out)
{
    struct stat st;
    hk_err e = HK_ERR_CONFIG;
    int fd;

    if (name == NULL || out == NULL)
        return HK_ERR_ARG;
    fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT    ? HK_ERR_NOT_FOUND
               : errno == ENOTDIR ? HK_ERR_CONFIG
                                  : HK_ERR_IO;
    if (fstat(fd, &st) != 0 || st.st_uid != geteuid())
        goto fail;
    if (fix && fchmod(fd, 0700) != 0)
        goto fail;
    if (!fix && (st.st_mode & 022) != 0)
        goto fail;
    *out = fd;
    return HK_OK;
fail:
    close(fd);
    return e;
}

/* 1 if name is ".<something><suffix>". */
static int hk_ks_hidden_with(const char *name, const char *suffix)
{
    size_t n = strlen(name), s = strlen(suffix);

    return name[0] == '.' && n > s + 1 && strcmp(name + n - s, suffix) == 0;
}

/* Unlinks every ".<something><suffix>" under dirfd. */
static void hk_ks_sweep_suffix(int dirfd, const char *suffix)
{
    struct dirent *de;
    DIR *d;
    int fd;

    if ((fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return;
    if ((d = fdopendir(fd)) == NULL) {
        close(fd);
        return;
    }
    while ((de = readdir(d)) != NULL)
        if (hk_ks_hidden_with(de->d_name, suffix))
            unlinkat(dirfd, de->d_name, 0);
    closedir(d);
}

void hk_ks_sweep_spent(int dirfd)
{
    hk_ks_sweep_suffix(dirfd, HK_KS_SPENT_SUFFIX);
}

/* Retired files end in the temporary suffix too: swept here as well. */
void hk_ks_sweep_temps(int dirfd)
{
    hk_ks_sweep_suffix(dirfd, HK_KS_TMP_SUFFIX);
}

hk_err hk_ks_lock_file(int dirfd, const char *name, int wait, int *fd)
{
    struct flock fl;
    int f, rc;

    if (name == NULL || fd == NULL)
        return HK_ERR_ARG;
    f = openat(dirfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (f < 0)
        return HK_ERR_IO;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET; /* l_start = l_len = 0: the whole file */
    do
        rc = fcntl(f, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl);
    while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        int err = errno;

        close(f);
        return err == EAGAIN || err == EACCES ? HK_ERR_BUSY : HK_ERR_IO;
    }
    *fd = f;
    return HK_OK;
}

void hk_ks_names_free(char **names, size_t n)
{
    size_t i;

    if (names == NULL)
        return;
    for (i = 0; i < n; i++)
        OPENSSL_free(names[i]);
    OPENSSL_free(names);
}

static int hk_ks_cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* 1 if `name` is "<valid label>.json". */
static int hk_ks_is_key_name(const char *name)
{
    char label[HK_KS_LABEL_MAX + 1];
    size_t n = strlen(name);

    if (n <= 5 || n - 5 > HK_KS_LABEL_MAX || strcmp(name + n - 5, ".json") != 0)
        return 0;
    memcpy(label, name, n - 5);
    label[n - 5] = 0;
    return hk_ks_label_ok(label);
}

/* Appends a copy of `name` to the list. */
static hk_err hk_ks_names_add(char ***names, size_t *n, const char *name)
{
    char **grown;

    if (*n >= HK_KS_MAX_KEYS)
        return HK_ERR_TOO_BIG;
    grown = OPENSSL_realloc(*names, (*n + 1) * sizeof(**names));
    if (grown == NULL)
        return HK_ERR_NOMEM;
    *names = grown;
    if ((grown[*n] = OPENSSL_strdup(name)) == NULL)
        return HK_ERR_NOMEM;
    (*n)++;
    return HK_OK;
}

hk_err hk_ks_key_names(int kfd, char ***out, size_t *n)
{
    struct dirent *de;
    char **names = NULL;
    size_t cnt = 0;
    hk_err e = HK_OK;
    DIR *d;
    int fd;

    if (out == NULL || n == NULL)
        return HK_ERR_ARG;
    if ((fd = openat(kfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return HK_ERR_IO;
    if ((d = fdopendir(fd)) == NULL) {
        close(fd);
        return HK_ERR_IO;
    }
    while (e == HK_OK && (de = readdir(d)) != NULL)
        if (hk_ks_is_key_name(de->d_name))
            e = hk_ks_names_add(&names, &cnt, de->d_name);
    closedir(d);
    if (e != HK_OK) {
        hk_ks_names_free(names, cnt);
        return e;
    }
    if (cnt > 1)
        qsort(names, cnt, sizeof(*names), hk_ks_cmp_names);
    *out = names;
    *n = cnt;
    return HK_OK;
}
