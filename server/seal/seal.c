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

#include "common/aead.h"
#include "server/log.h"
#include "server/seal/seal.h"
#include "common/why.h"

/* One KEK of a ring. */
typedef struct {
    const hk_kek_ops *ops;
    void *impl;
    unsigned char id[HK_KEK_ID_LEN];
} hk_kek_one;

/* keys[0] is the primary. */
struct hk_kek {
    hk_kek_one keys[HK_KEK_RING_MAX];
    size_t n;
};

static const char hk_share_label[] = "halfkey server share";
static const char hk_kek_id_label[] = "halfkey kek id v1";

hk_err hk_kek_new(const hk_kek_ops *ops, void *impl, hk_kek **out)
{
    hk_kek *kek;
    hk_err e;

    if (ops == NULL || ops->encrypt == NULL || ops->decrypt == NULL ||
        ops->free == NULL || ops->id == NULL || out == NULL) {
        if (ops != NULL && ops->free != NULL)
            ops->free(impl);
        return HK_ERR_ARG;
    }
    *out = NULL;
    if ((kek = OPENSSL_zalloc(sizeof(*kek))) == NULL) {
        ops->free(impl);
        return HK_ERR_NOMEM;
    }
    kek->keys[0].ops = ops;
    kek->keys[0].impl = impl;
    kek->n = 1;
    if ((e = ops->id(impl, kek->keys[0].id)) != HK_OK) {
        hk_kek_free(kek);
        return e;
    }
    *out = kek;
    return HK_OK;
}

void hk_kek_free(hk_kek *kek)
{
    size_t i;

    if (kek == NULL)
        return;
    for (i = 0; i < kek->n; i++)
        kek->keys[i].ops->free(kek->keys[i].impl);
    OPENSSL_free(kek);
}

int hk_kek_find(const hk_kek *kek, const unsigned char id[HK_KEK_ID_LEN])
{
    size_t i;

    if (kek == NULL || id == NULL)
        return 0;
    for (i = 0; i < kek->n; i++)
        if (memcmp(kek->keys[i].id, id, HK_KEK_ID_LEN) == 0)
            return i == 0 ? 1 : 2;
    return 0;
}

hk_err hk_kek_add_previous(hk_kek *ring, hk_kek *old)
{
    hk_err e = HK_OK;
    size_t i;

    if (ring == NULL || old == NULL || ring == old) {
        if (ring != old)
            hk_kek_free(old);
        return HK_ERR_ARG;
    }
    for (i = 0; i < old->n && e == HK_OK; i++)
        if (hk_kek_find(ring, old->keys[i].id))
            e = HK_ERR_EXISTS;
    if (e == HK_OK && ring->n + old->n > HK_KEK_RING_MAX)
        e = HK_ERR_TOO_BIG;
    if (e != HK_OK) {
        hk_kek_free(old);
        return e;
    }
    memcpy(ring->keys + ring->n, old->keys, old->n * sizeof(old->keys[0]));
    ring->n += old->n;
    OPENSSL_free(old); /* its back ends now belong to the ring */
    return HK_OK;
}

const char *hk_kek_name(const hk_kek *kek)
{
    return kek != NULL && kek->keys[0].ops->name != NULL
               ? kek->keys[0].ops->name
               : "?";
}

size_t hk_kek_count(const hk_kek *kek) { return kek != NULL ? kek->n : 0; }

void hk_kek_id(const hk_kek *kek, unsigned char id[HK_KEK_ID_LEN])
{
    if (kek != NULL && id != NULL)
        memcpy(id, kek->keys[0].id, HK_KEK_ID_LEN);
}

void hk_kek_id_hex(const unsigned char id[HK_KEK_ID_LEN], char hex[17])
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < HK_KEK_ID_LEN; i++) {
        hex[2 * i] = digits[id[i] >> 4];
        hex[2 * i + 1] = digits[id[i] & 15];
    }
    hex[2 * HK_KEK_ID_LEN] = '\0';
}

hk_err hk_kek_health(const hk_kek *kek, char *why, size_t whylen)
{
    const hk_kek_one *k;

    if (kek == NULL)
        return HK_ERR_ARG;
    k = &kek->keys[0];
    return k->ops->health != NULL ? k->ops->health(k->impl, why, whylen)
                                  : HK_OK;
}

/* --- key-file back end ---------------------------------------------------- */

typedef struct {
    unsigned char key[HK_KEK_LEN];
} hk_kek_file;

static void hk_file_free(void *impl)
{
    OPENSSL_secure_clear_free(impl, sizeof(hk_kek_file));
}

/* The one AEAD (common/aead.h): the blob's nonce || ct || tag, with
 * out right after nonce (hk_seal's layout). */
static hk_err hk_file_encrypt(void *impl, const unsigned char *aad,
                              size_t aadlen, const unsigned char *in,
                              size_t len, unsigned char *nonce,
                              unsigned char *out)
{
    const hk_kek_file *f = impl;

    if (out != nonce + HK_AEAD_NONCE_LEN)
        return HK_ERR_ARG;
    return hk_aead_seal(f->key, aad, aadlen, in, len, nonce);
}

/* HK_ERR_SEAL if the tag does not verify (in right after nonce). */
static hk_err hk_file_decrypt(void *impl, const unsigned char *nonce,
                              const unsigned char *aad, size_t aadlen,
                              const unsigned char *in, size_t len,
                              unsigned char *out)
{
    const hk_kek_file *f = impl;

    if (in != nonce + HK_AEAD_NONCE_LEN || len < HK_AEAD_TAG_LEN)
        return HK_ERR_ARG;
    return hk_aead_open(f->key, aad, aadlen, nonce, HK_AEAD_NONCE_LEN + len,
                        out);
}

/* SHA-256("halfkey kek id v1" || key), first HK_KEK_ID_LEN bytes. */
static hk_err hk_file_id(void *impl, unsigned char *id)
{
    const hk_kek_file *f = impl;
    unsigned char md[32];
    EVP_MD_CTX *ctx;
    hk_err e = HK_ERR_CRYPTO;

    if ((ctx = EVP_MD_CTX_new()) == NULL)
        return HK_ERR_NOMEM;
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
        EVP_DigestUpdate(ctx, hk_kek_id_label, sizeof(hk_kek_id_label) - 1) ==
            1 &&
        EVP_DigestUpdate(ctx, f->key, HK_KEK_LEN) == 1 &&
        EVP_DigestFinal_ex(ctx, md, NULL) == 1) {
        memcpy(id, md, HK_KEK_ID_LEN);
        e = HK_OK;
    }
    EVP_MD_CTX_free(ctx);
    OPENSSL_cleanse(md, sizeof(md));
    return e;
}

static const hk_kek_ops hk_kek_file_ops = {
    "file", hk_file_encrypt, hk_file_decrypt, hk_file_free, hk_file_id, NULL};

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

/* GCM associated data: version byte || KEK id || caller's aad. */
static hk_err hk_seal_aad(const unsigned char *id, const unsigned char *aad,
                          size_t aadlen, unsigned char **out, size_t *outlen)
{
    *outlen = 1 + HK_KEK_ID_LEN + aadlen;
    if ((*out = OPENSSL_malloc(*outlen)) == NULL)
        return HK_ERR_NOMEM;
    (*out)[0] = HK_SEAL_VERSION;
    memcpy(*out + 1, id, HK_KEK_ID_LEN);
    if (aadlen > 0)
        memcpy(*out + 1 + HK_KEK_ID_LEN, aad, aadlen);
    return HK_OK;
}

hk_err hk_sealed_kek_id(const unsigned char *in, size_t inlen,
                        unsigned char id[HK_KEK_ID_LEN])
{
    if (in == NULL || id == NULL)
        return HK_ERR_ARG;
    if (inlen <= HK_SEAL_OVERHEAD || in[0] != HK_SEAL_VERSION)
        return HK_ERR_SEAL;
    memcpy(id, in + 1, HK_KEK_ID_LEN);
    return HK_OK;
}

hk_err hk_seal(const hk_kek *kek, const unsigned char *aad, size_t aadlen,
               const unsigned char *in, size_t len, unsigned char **out,
               size_t *outlen)
{
    unsigned char *buf = NULL, *full = NULL;
    const hk_kek_one *k;
    size_t flen = 0;
    hk_err e;

    if (kek == NULL || (aad == NULL && aadlen > 0) || in == NULL || len == 0 ||
        out == NULL || outlen == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    *outlen = 0;
    if (len > HK_SEAL_MAX_PLAIN || aadlen > HK_SEAL_MAX_PLAIN)
        return HK_ERR_TOO_BIG;
    k = &kek->keys[0];
    if ((e = hk_seal_aad(k->id, aad, aadlen, &full, &flen)) != HK_OK)
        return e;
    e = HK_ERR_NOMEM;
    if ((buf = OPENSSL_malloc(len + HK_SEAL_OVERHEAD)) == NULL)
        goto done;
    memcpy(buf, full, 1 + HK_KEK_ID_LEN);
    if ((e = k->ops->encrypt(k->impl, full, flen, in, len,
                             buf + 1 + HK_KEK_ID_LEN,
                             buf + HK_SEAL_HEADER_LEN)) != HK_OK)
        goto done;
    *out = buf;
    *outlen = len + HK_SEAL_OVERHEAD;
    buf = NULL;
done:
    OPENSSL_free(buf);
    OPENSSL_free(full);
    return e;
}

/* The KEK of the ring that sealed `in`; NULL (logged) if none. */
static const hk_kek_one *hk_kek_for(const hk_kek *kek, const unsigned char *in)
{
    char hex[17];
    size_t i;

    for (i = 0; i < kek->n; i++)
        if (memcmp(kek->keys[i].id, in + 1, HK_KEK_ID_LEN) == 0)
            return &kek->keys[i];
    hk_kek_id_hex(in + 1, hex);
    hk_log("error",
           "event=unseal_failed reason=\"sealed under KEK %s, not "
           "configured\"",
           hex);
    return NULL;
}

hk_err hk_unseal(const hk_kek *kek, const unsigned char *aad, size_t aadlen,
                 const unsigned char *in, size_t inlen, unsigned char **out,
                 size_t *outlen)
{
    unsigned char *pt = NULL, *full = NULL;
    const hk_kek_one *k;
    size_t ptlen, flen = 0;
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
    if ((k = hk_kek_for(kek, in)) == NULL)
        return HK_ERR_SEAL;
    ptlen = inlen - HK_SEAL_OVERHEAD;
    if ((e = hk_seal_aad(k->id, aad, aadlen, &full, &flen)) != HK_OK)
        return e;
    e = HK_ERR_NOMEM;
    if ((pt = OPENSSL_malloc(ptlen)) == NULL)
        goto done;
    if ((e = k->ops->decrypt(k->impl, in + 1 + HK_KEK_ID_LEN, full, flen,
                             in + HK_SEAL_HEADER_LEN,
                             inlen - HK_SEAL_HEADER_LEN, pt)) != HK_OK)
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

/* label, kid, sub, then `tail`, each length-prefixed (hk_put_item). */
static hk_err hk_sealed_aad(const char *label, size_t label_len,
                            const unsigned char *kid, const char *sub,
                            const unsigned char *tail, size_t tail_len,
                            unsigned char *out, size_t *len)
{
    size_t off = 0, sublen;

    if (kid == NULL || sub == NULL || out == NULL || len == NULL)
        return HK_ERR_ARG;
    sublen = strnlen(sub, HK_SUB_MAX + 1);
    if (sublen == 0 || sublen > HK_SUB_MAX)
        return HK_ERR_ARG;
    if (!hk_put_item(out, *len, &off, label, label_len) ||
        !hk_put_item(out, *len, &off, kid, HK_ID_LEN) ||
        !hk_put_item(out, *len, &off, sub, sublen) ||
        !hk_put_item(out, *len, &off, tail, tail_len))
        return HK_ERR_TOO_BIG;
    *len = off;
    return HK_OK;
}

hk_err hk_share_aad(const unsigned char kid[HK_ID_LEN], const char *sub,
                    unsigned long epoch, unsigned char *out, size_t *len)
{
    unsigned char ep[8];
    int i;

    for (i = 0; i < 8; i++)
        ep[i] = (unsigned char)((unsigned long long)epoch >> (56 - 8 * i));
    return hk_sealed_aad(hk_share_label, sizeof(hk_share_label) - 1, kid, sub,
                         ep, sizeof(ep), out, len);
}

hk_err hk_presig_aad(const unsigned char kid[HK_ID_LEN], const char *sub,
                     const unsigned char psid[HK_ID_LEN], unsigned char *out,
                     size_t *len)
{
    static const char label[] = "halfkey presignature";

    if (psid == NULL)
        return HK_ERR_ARG;
    return hk_sealed_aad(label, sizeof(label) - 1, kid, sub, psid, HK_ID_LEN,
                         out, len);
}
