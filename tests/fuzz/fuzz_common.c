/* Shared pieces of the fuzz targets (see fuzz_common.h). */
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpc/setup.h"
#include "tests/fuzz/fuzz_common.h"

#ifndef HK_FUZZ_FIXTURES_DIR
#define HK_FUZZ_FIXTURES_DIR "tests/fuzz/fixtures"
#endif

static _Noreturn void hk_fuzz_die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz: %s: %s\n", what, detail);
    abort();
}

void hk_fuzz_id(unsigned char id[HK_ID_LEN], int v)
{
    memset(id, v, HK_ID_LEN);
}

size_t hk_fuzz_split(const uint8_t *data, size_t size,
                     const uint8_t *part[HK_FUZZ_MAX_MSGS],
                     size_t len[HK_FUZZ_MAX_MSGS])
{
    size_t n = 0;

    while (n < HK_FUZZ_MAX_MSGS) {
        const uint8_t *nul =
            n + 1 < HK_FUZZ_MAX_MSGS && size > 0 ? memchr(data, 0, size) : NULL;

        part[n] = data;
        len[n] = nul != NULL ? (size_t)(nul - data) : size;
        n++;
        if (nul == NULL)
            break;
        size -= len[n - 1] + 1;
        data = nul + 1;
    }
    return n;
}

const char *hk_fuzz_fixture_path(const char *name)
{
    static char path[4096];
    const char *dir = getenv("HK_FUZZ_FIXTURES");

    if (dir == NULL || dir[0] == 0)
        dir = HK_FUZZ_FIXTURES_DIR;
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >=
        sizeof(path))
        hk_fuzz_die("fixture path too long", name);
    return path;
}

unsigned char *hk_fuzz_fixture(const char *name, size_t *len)
{
    const char *path = hk_fuzz_fixture_path(name);
    unsigned char *buf;
    FILE *f = fopen(path, "rb");
    long n;

    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0)
        hk_fuzz_die("cannot read fixture", path);
    if ((buf = malloc((size_t)n + 1)) == NULL ||
        fread(buf, 1, (size_t)n, f) != (size_t)n)
        hk_fuzz_die("cannot read fixture", path);
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

const hk_rped_secret *hk_fuzz_setup(void)
{
    static hk_rped_secret *sec;
    unsigned char *rec;
    size_t len;

    if (sec == NULL) {
        rec = hk_fuzz_fixture("setup-secret.json", &len);
        if (hk_setup_secret_decode(rec, len, &sec) != HK_OK)
            hk_fuzz_die("bad fixture", "setup-secret.json");
        free(rec);
    }
    return sec;
}

const hk_share *hk_fuzz_share(hk_role role, hk_curve_id curve)
{
    static hk_share *shares[2][2];
    hk_share **s = &shares[role == HK_ROLE_P2][curve == HK_CURVE_P256];
    unsigned char *rec;
    char name[64];
    size_t len;

    if (*s == NULL) {
        snprintf(name, sizeof(name), "share-p%d-%s.json", (int)role,
                 hk_curve_name(curve));
        rec = hk_fuzz_fixture(name, &len);
        if (hk_share_decode(rec, len, s) != HK_OK)
            hk_fuzz_die("bad fixture", name);
        free(rec);
    }
    return *s;
}

void hk_fuzz_write(const char *path, const uint8_t *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t off = 0;
    ssize_t n;

    if (fd < 0)
        hk_fuzz_die("cannot write", path);
    while (off < size) {
        if ((n = write(fd, data + off, size - off)) <= 0)
            hk_fuzz_die("cannot write", path);
        off += (size_t)n;
    }
    if (close(fd) != 0)
        hk_fuzz_die("cannot write", path);
}

char *hk_fuzz_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    char *dir;

    if (base == NULL || base[0] == 0)
        base = "/tmp";
    snprintf(tmpl, sizeof(tmpl), "%s/hk-fuzz-XXXXXX", base);
    if (mkdtemp(tmpl) == NULL || (dir = strdup(tmpl)) == NULL)
        hk_fuzz_die("cannot make a temporary directory", tmpl);
    return dir;
}

static int hk_fuzz_rm1(const char *path, const struct stat *st, int flag,
                       struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

#define HK_FUZZ_MAX_TMPDIRS 4
static char *hk_fuzz_tmpdirs[HK_FUZZ_MAX_TMPDIRS];

static void hk_fuzz_cleanup(void)
{
    size_t i;

    for (i = 0; i < HK_FUZZ_MAX_TMPDIRS; i++)
        if (hk_fuzz_tmpdirs[i] != NULL)
            nftw(hk_fuzz_tmpdirs[i], hk_fuzz_rm1, 16, FTW_DEPTH | FTW_PHYS);
}

void hk_fuzz_rmtree_at_exit(const char *dir)
{
    static int registered;
    size_t i;

    if (!registered) {
        atexit(hk_fuzz_cleanup);
        registered = 1;
    }
    for (i = 0; i < HK_FUZZ_MAX_TMPDIRS; i++)
        if (hk_fuzz_tmpdirs[i] == NULL) {
            hk_fuzz_tmpdirs[i] = strdup(dir);
            return;
        }
}
