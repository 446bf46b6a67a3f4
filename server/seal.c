/* AES-256-GCM sealing and the key-file KEK back end (see seal.h). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "server/seal.h"
#include "server/why.h"

struct hk_kek {
    const hk_kek_ops *ops;
    void *impl;
};

static const char hk_share_label[] = "halfkey server share";

hk_err hk_kek_new(const hk_kek_ops *ops, void *impl, hk_kek **out)
{
    hk_kek *kek;

    if (ops == NULL || ops->encrypt == NULL || ops->decrypt == NULL ||
        ops->free == NULL || out == NULL) {
        if (ops != NULL && ops->free != NULL)
            ops->free(impl);
        return HK_ERR_ARG;
    }
    *out = NULL;
    if ((kek = OPENSSL_zalloc(sizeof(*kek))) == NULL) {
        ops->free(impl);
        return HK_ERR_NOMEM;
    }
    kek->ops = ops;
    kek->impl = impl;
    *out = kek;
    return HK_OK;
}

void hk_kek_free(hk_kek *kek)
{
    if (kek == NULL)
        return;
    kek->ops->free(kek->impl);
    OPENSSL_free(kek);
}

const char *hk_kek_name(const hk_kek *kek)
{
    return kek != NULL && kek->ops->name != NULL ? kek->ops->name : "?";
}

/* --- key-file back end ---------------------------------------------------- */

typedef struct {
    unsigned char key[HK_KEK_LEN];
} hk_kek_file;

static void hk_file_free(void *impl)
{
    OPENSSL_secure_clear_free(impl, sizeof(hk_kek_file));
}

/* AES-256-GCM encryption under a random nonce. */
static hk_err hk_file_encrypt(void *impl, const unsigned char *aad,
                              size_t aadlen, const unsigned char *in,
                              size_t len, unsigned char *nonce,
                              unsigned char *out)
{
    const hk_kek_file *f = impl;
    EVP_CIPHER_CTX *ctx;
    int n = 0, m = 0;
    hk_err e = HK_ERR_CRYPTO;

    if (len > INT_MAX || aadlen > INT_MAX)
        return HK_ERR_TOO_BIG;
    if (RAND_bytes(nonce, HK_SEAL_NONCE_LEN) != 1)
        return HK_ERR_RAND;
    if ((ctx = EVP_CIPHER_CTX_new()) == NULL)
        return HK_ERR_NOMEM;
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, f->key, nonce) != 1 ||
        (aadlen > 0 &&
         EVP_EncryptUpdate(ctx, NULL, &n, aad, (int)aadlen) != 1) ||
        EVP_EncryptUpdate(ctx, out, &n, in, (int)len) != 1 ||
        EVP_EncryptFinal_ex(ctx, out + n, &m) != 1 ||
        (size_t)n + (size_t)m != len ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, HK_SEAL_TAG_LEN,
                            out + len) != 1)
        goto done;
    e = HK_OK;
done:
    EVP_CIPHER_CTX_free(ctx);
    return e;
}

/* AES-256-GCM decryption; HK_ERR_SEAL if the tag does not verify. */
static hk_err hk_file_decrypt(void *impl, const unsigned char *nonce,
                              const unsigned char *aad, size_t aadlen,
                              const unsigned char *in, size_t len,
                              unsigned char *out)
{
    const hk_kek_file *f = impl;
    unsigned char tag[HK_SEAL_TAG_LEN];
    size_t ctlen = len - HK_SEAL_TAG_LEN;
    EVP_CIPHER_CTX *ctx;
    int n = 0, m = 0;
    hk_err e = HK_ERR_CRYPTO;

    if (len > INT_MAX || aadlen > INT_MAX)
        return HK_ERR_TOO_BIG;
    memcpy(tag, in + ctlen, HK_SEAL_TAG_LEN);
    if ((ctx = EVP_CIPHER_CTX_new()) == NULL)
        return HK_ERR_NOMEM;
    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, f->key, nonce) != 1 ||
        (aadlen > 0 &&
         EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aadlen) != 1) ||
        EVP_DecryptUpdate(ctx, out, &n, in, (int)ctlen) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, HK_SEAL_TAG_LEN, tag) !=
            1)
        goto done;
    e = HK_ERR_SEAL;
    if (EVP_DecryptFinal_ex(ctx, out + n, &m) != 1 ||
        (size_t)n + (size_t)m != ctlen)
        goto done;
    e = HK_OK;
done:
    EVP_CIPHER_CTX_free(ctx);
    return e;
}

static const hk_kek_ops hk_kek_file_ops = {"file", hk_file_encrypt,
                                           hk_file_decrypt, hk_file_free};

/* Writes all of buf, retrying on EINTR and short writes. */
static int hk_write_all(int fd, const unsigned char *buf, size_t len)
{
    ssize_t n;

    while (len > 0) {
        n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* fsyncs the directory holding path, so a new file's entry is durable. */
static int hk_fsync_dir(const char *path)
{
    char *copy = OPENSSL_strdup(path);
    int fd, rc = -1;

    if (copy == NULL)
        return -1;
    fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        rc = fsync(fd);
        close(fd);
    }
    OPENSSL_free(copy);
    return rc;
}

/* Draws the key and writes it to the open, empty file fd. */
static hk_err hk_kek_write_new(int fd, char *why, size_t whylen)
{
    unsigned char key[HK_KEK_LEN];
    hk_err e = HK_ERR_IO;

    if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key)) {
        hk_why(why, whylen, "getrandom failed: %s", strerror(errno));
        e = HK_ERR_RAND;
        goto done;
    }
    if (fchmod(fd, S_IRUSR | S_IWUSR) != 0 ||
        hk_write_all(fd, key, sizeof(key)) != 0 || fsync(fd) != 0) {
        hk_why(why, whylen, "cannot write the key file: %s", strerror(errno));
        goto done;
    }
    e = HK_OK;
done:
    OPENSSL_cleanse(key, sizeof(key));
    return e;
}

hk_err hk_kek_generate_file(const char *path, char *why, size_t whylen)
{
    hk_err e;
    int fd, err;

    if (path == NULL || *path == '\0')
        return HK_ERR_ARG;
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
              S_IRUSR | S_IWUSR);
    if (fd < 0) {
        err = errno;
        hk_why(why, whylen, "cannot create KEK file %s: %s", path,
               strerror(err));
        return err == EEXIST ? HK_ERR_EXISTS : HK_ERR_IO;
    }
    e = hk_kek_write_new(fd, why, whylen);
    if (close(fd) != 0 && e == HK_OK) {
        hk_why(why, whylen, "cannot close %s: %s", path, strerror(errno));
        e = HK_ERR_IO;
    }
    if (e == HK_OK && hk_fsync_dir(path) != 0) {
        hk_why(why, whylen, "cannot sync the directory of %s: %s", path,
               strerror(errno));
        e = HK_ERR_IO;
    }
    if (e != HK_OK)
        unlink(path);
    return e;
}

/* The checks a key file must pass before it is read. */
static hk_err hk_kek_check_stat(const char *path, const struct stat *st,
                                char *why, size_t whylen)
{
    if (!S_ISREG(st->st_mode)) {
        hk_why(why, whylen, "KEK file %s is not a regular file", path);
        return HK_ERR_CONFIG;
    }
    if ((st->st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        hk_why(why, whylen,
               "KEK file %s has mode %04o: group or others may access it "
               "(chmod 600 it)",
               path, (unsigned)(st->st_mode & 07777));
        return HK_ERR_CONFIG;
    }
    if (st->st_size != HK_KEK_LEN) {
        hk_why(why, whylen, "KEK file %s has %lld bytes, must have %d", path,
               (long long)st->st_size, HK_KEK_LEN);
        return HK_ERR_CONFIG;
    }
    return HK_OK;
}

/* Reads exactly HK_KEK_LEN bytes and checks the file ends there. */
static hk_err hk_kek_read(int fd, const char *path, unsigned char *key,
                          char *why, size_t whylen)
{
    unsigned char extra;
    size_t got = 0;
    ssize_t n;

    while (got < HK_KEK_LEN) {
        n = read(fd, key + got, HK_KEK_LEN - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            hk_why(why, whylen, "cannot read KEK file %s: %s", path,
                   strerror(errno));
            return HK_ERR_IO;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    if (got != HK_KEK_LEN || read(fd, &extra, 1) != 0) {
        hk_why(why, whylen, "KEK file %s changed size while read", path);
        return HK_ERR_CONFIG;
    }
    return HK_OK;
}

hk_err hk_kek_load_file(const char *path, hk_kek **out, char *why,
                        size_t whylen)
{
    hk_kek_file *f = NULL;
    struct stat st;
    hk_err e;
    int fd, err;

    if (path == NULL || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        err = errno;
        hk_why(why, whylen, "cannot open KEK file %s: %s", path, strerror(err));
        return err == ENOENT || err == EACCES ? HK_ERR_CONFIG : HK_ERR_IO;
    }
    e = HK_ERR_IO;
    if (fstat(fd, &st) != 0) {
        hk_why(why, whylen, "cannot stat %s: %s", path, strerror(errno));
        goto done;
    }
    if ((e = hk_kek_check_stat(path, &st, why, whylen)) != HK_OK)
        goto done;
    e = HK_ERR_NOMEM;
    if ((f = OPENSSL_secure_zalloc(sizeof(*f))) == NULL)
        goto done;
    if ((e = hk_kek_read(fd, path, f->key, why, whylen)) != HK_OK)
        goto done;
    e = hk_kek_new(&hk_kek_file_ops, f, out);
    f = NULL; /* owned by the KEK, or freed by hk_kek_new */
done:
    hk_file_free(f);
    close(fd);
    return e;
}

/* --- sealed blobs --------------------------------------------------------- */

/* GCM associated data: version byte || caller's aad. */
static hk_err hk_seal_aad(const unsigned char *aad, size_t aadlen,
                          unsigned char **out)
{
    if ((*out = OPENSSL_malloc(1 + aadlen)) == NULL)
        return HK_ERR_NOMEM;
    (*out)[0] = HK_SEAL_VERSION;
    if (aadlen > 0)
        memcpy(*out + 1, aad, aadlen);
    return HK_OK;
}

hk_err hk_seal(const hk_kek *kek, const unsigned char *aad, size_t aadlen,
               const unsigned char *in, size_t len, unsigned char **out,
               size_t *outlen)
{
    unsigned char *buf = NULL, *full = NULL;
    hk_err e;

    if (kek == NULL || (aad == NULL && aadlen > 0) || in == NULL || len == 0 ||
        out == NULL || outlen == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    *outlen = 0;
    if (len > HK_SEAL_MAX_PLAIN || aadlen > HK_SEAL_MAX_PLAIN)
        return HK_ERR_TOO_BIG;
    if ((e = hk_seal_aad(aad, aadlen, &full)) != HK_OK)
        return e;
    e = HK_ERR_NOMEM;
    if ((buf = OPENSSL_malloc(len + HK_SEAL_OVERHEAD)) == NULL)
        goto done;
    buf[0] = HK_SEAL_VERSION;
    if ((e = kek->ops->encrypt(kek->impl, full, 1 + aadlen, in, len, buf + 1,
                               buf + 1 + HK_SEAL_NONCE_LEN)) != HK_OK)
        goto done;
    *out = buf;
    *outlen = len + HK_SEAL_OVERHEAD;
    buf = NULL;
done:
    OPENSSL_free(buf);
    OPENSSL_free(full);
    return e;
}

hk_err hk_unseal(const hk_kek *kek, const unsigned char *aad, size_t aadlen,
                 const unsigned char *in, size_t inlen, unsigned char **out,
                 size_t *outlen)
{
    unsigned char *pt = NULL, *full = NULL;
    size_t ptlen;
    hk_err e;

    if (kek == NULL || (aad == NULL && aadlen > 0) || in == NULL ||
        out == NULL || outlen == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    *outlen = 0;
    if (inlen > HK_SEAL_MAX || aadlen > HK_SEAL_MAX_PLAIN)
        return HK_ERR_TOO_BIG;
    if (inlen <= HK_SEAL_OVERHEAD || in[0] != HK_SEAL_VERSION)
        return HK_ERR_SEAL;
    ptlen = inlen - HK_SEAL_OVERHEAD;
    if ((e = hk_seal_aad(aad, aadlen, &full)) != HK_OK)
        return e;
    e = HK_ERR_NOMEM;
    if ((pt = OPENSSL_malloc(ptlen)) == NULL)
        goto done;
    if ((e = kek->ops->decrypt(kek->impl, in + 1, full, 1 + aadlen,
                               in + 1 + HK_SEAL_NONCE_LEN,
                               inlen - 1 - HK_SEAL_NONCE_LEN, pt)) != HK_OK)
        goto done;
    *out = pt;
    *outlen = ptlen;
    pt = NULL;
done:
    OPENSSL_clear_free(pt, ptlen);
    OPENSSL_free(full);
    return e;
}

/* Appends a 4-byte big-endian length and the bytes; 0 if out is full. */
static int hk_put_item(unsigned char *out, size_t cap, size_t *off,
                       const void *data, size_t n)
{
    if (n > 0xffffffffu || cap - *off < 4 || cap - *off - 4 < n)
        return 0;
    out[*off] = (unsigned char)(n >> 24);
    out[*off + 1] = (unsigned char)(n >> 16);
    out[*off + 2] = (unsigned char)(n >> 8);
    out[*off + 3] = (unsigned char)n;
    memcpy(out + *off + 4, data, n);
    *off += 4 + n;
    return 1;
}

hk_err hk_share_aad(const unsigned char kid[HK_ID_LEN], const char *sub,
                    unsigned long epoch, unsigned char *out, size_t *len)
{
    unsigned char ep[8];
    size_t off = 0, sublen;
    int i;

    if (kid == NULL || sub == NULL || out == NULL || len == NULL)
        return HK_ERR_ARG;
    sublen = strnlen(sub, HK_SUB_MAX + 1);
    if (sublen == 0 || sublen > HK_SUB_MAX)
        return HK_ERR_ARG;
    for (i = 0; i < 8; i++)
        ep[i] = (unsigned char)((unsigned long long)epoch >> (56 - 8 * i));
    if (!hk_put_item(out, *len, &off, hk_share_label,
                     sizeof(hk_share_label) - 1) ||
        !hk_put_item(out, *len, &off, kid, HK_ID_LEN) ||
        !hk_put_item(out, *len, &off, sub, sublen) ||
        !hk_put_item(out, *len, &off, ep, sizeof(ep)))
        return HK_ERR_TOO_BIG;
    *len = off;
    return HK_OK;
}
