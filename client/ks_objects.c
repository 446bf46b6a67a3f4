/* Keystore: the PKCS#11 face's public objects (certificates, data
 * objects), one record in clear, <dir>/objects.bin, and its parser
 * (keystore.h). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "client/ks_impl.h"

#define HK_KS_OBJECTS_FILE "objects.bin"

hk_err hk_ks_objects_load(hk_ks *ks, unsigned char **buf, size_t *len)
{
    hk_err e;

    if (ks == NULL || buf == NULL || len == NULL)
        return HK_ERR_ARG;
    *buf = NULL;
    *len = 0;
    pthread_mutex_lock(&ks->mu);
    e = hk_ks_read_file(ks->dfd, HK_KS_OBJECTS_FILE, HK_KS_OBJ_MAX, buf, len);
    pthread_mutex_unlock(&ks->mu);
    return e == HK_ERR_NOT_FOUND ? HK_OK : e;
}

hk_err hk_ks_objects_update(hk_ks *ks, hk_ks_objects_edit edit, void *arg)
{
    unsigned char *in = NULL, *out = NULL;
    size_t inlen = 0, outlen = 0;
    int lfd = -1;
    hk_err e;

    if (ks == NULL || edit == NULL)
        return HK_ERR_ARG;
    pthread_mutex_lock(&ks->mu);
    if ((e = hk_ks_tlock(ks, &lfd)) != HK_OK)
        goto done;
    e = hk_ks_read_file(ks->dfd, HK_KS_OBJECTS_FILE, HK_KS_OBJ_MAX, &in,
                        &inlen);
    if ((e == HK_OK || e == HK_ERR_NOT_FOUND) &&
        (e = edit(in, inlen, &out, &outlen, arg)) == HK_OK)
        e = outlen > HK_KS_OBJ_MAX ? HK_ERR_TOO_BIG
            : outlen > 0
                ? hk_ks_write_file(ks->dfd, HK_KS_OBJECTS_FILE, out, outlen)
                : hk_ks_unlink(ks->dfd, HK_KS_OBJECTS_FILE);
    if (e == HK_ERR_NOT_FOUND && outlen == 0)
        e = HK_OK;
done:
    if (lfd >= 0)
        close(lfd);
    pthread_mutex_unlock(&ks->mu);
    OPENSSL_free(in);
    free(out);
    return e;
}

static int hk_ks_get_u(const unsigned char **p, const unsigned char *end,
                       int bytes, uint64_t *v)
{
    int i;

    if (end - *p < bytes)
        return 0;
    for (*v = 0, i = 0; i < bytes; i++)
        *v = (*v << 8) | (*p)[i];
    *p += bytes;
    return 1;
}

hk_err hk_ks_object_parse(const unsigned char **p, const unsigned char *end,
                          hk_ks_obj *o)
{
    uint64_t id, n, t, l;
    size_t i;

    if (p == NULL || *p == NULL || end == NULL || o == NULL)
        return HK_ERR_ARG;
    if (!hk_ks_get_u(p, end, 4, &id) || !hk_ks_get_u(p, end, 4, &n) ||
        n > HK_KS_OBJ_ATTRS_MAX)
        return HK_ERR_DECODE;
    o->id = (uint32_t)id;
    o->n = (size_t)n;
    for (i = 0; i < o->n; i++) {
        if (!hk_ks_get_u(p, end, 8, &t) || !hk_ks_get_u(p, end, 4, &l) ||
            (uint64_t)(end - *p) < l)
            return HK_ERR_DECODE;
        o->a[i].type = t;
        o->a[i].val = *p;
        o->a[i].len = (size_t)l;
        *p += l;
    }
    return HK_OK;
}

hk_err hk_ks_objects_parse(const unsigned char *rec, size_t len, uint32_t *next,
                           hk_ks_obj **objs, size_t *n)
{
    const unsigned char *p, *end;
    uint64_t nx, cnt;
    size_t i;

    if ((rec == NULL && len > 0) || next == NULL || objs == NULL || n == NULL)
        return HK_ERR_ARG;
    *objs = NULL;
    *n = 0;
    *next = 1;
    if (len == 0)
        return HK_OK;
    p = rec + 4;
    end = rec + len;
    if (len < 12 || memcmp(rec, "HKO1", 4) != 0 ||
        !hk_ks_get_u(&p, end, 4, &nx) || !hk_ks_get_u(&p, end, 4, &cnt) ||
        cnt > len / 8)
        return HK_ERR_DECODE;
    if (cnt > 0 && (*objs = OPENSSL_zalloc(cnt * sizeof(**objs))) == NULL)
        return HK_ERR_NOMEM;
    for (i = 0; i < cnt; i++)
        if (hk_ks_object_parse(&p, end, &(*objs)[i]) != HK_OK) {
            OPENSSL_free(*objs);
            *objs = NULL;
            return HK_ERR_DECODE;
        }
    *next = (uint32_t)nx;
    *n = (size_t)cnt;
    return HK_OK;
}
