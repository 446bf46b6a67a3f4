/* Keystore: the PKCS#11 face's public objects (certificates, data
 * objects), one opaque record in clear, <dir>/objects.bin (keystore.h). */
#include <stdlib.h>
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
