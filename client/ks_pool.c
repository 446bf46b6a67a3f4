/* The token's Paillier prime pool (issue 20 item 5): pairs of primes made
 * in idle time for the next keygen or refresh, sealed under the PIN key,
 * each used once.
 *
 * Owns <dir>/pool/ and its entries, <dir>/pool/<bits>-<32 hex>.key: one
 * pair of primes p, q of bits/2 bits each (a Paillier key of `bits` bits
 * as hk_paillier_keygen makes it), as
 *
 *   "HKPOOL1" 0 | u32 gen | u32 bits | nonce || AES-256-GCM(p || q) || tag
 *
 * (big-endian; p and q fixed width, bits/16 bytes each) under
 * HKDF(MK of generation gen, "halfkey/pool/1", the 16-byte id of the name),
 * with the name, gen and bits in the AAD: unreadable without the PIN, and
 * an entry cannot be renamed into another size or slot.
 *
 * Single use, crash safe. hk_ks_pool_take removes the entry's file and
 * syncs the directory (hk_ks_unlink) BEFORE it opens the record and hands
 * the key out, holding the token lock: a crash after that loses the entry,
 * a crash before it leaves the entry unused, and no entry is ever handed
 * out twice (two takers serialise on the lock; the second no longer finds
 * the file). Every entry comes from its own hk_paillier_keygen, so no two
 * entries, and no two keys, share a prime. Not covered, as for key files
 * (keystore.h): someone who can write the directory can put back a copy of
 * an entry taken earlier; its key would then be used twice by this
 * token's own keys (it protects only the client's own shares).
 *
 * Bounded: at most HK_KS_POOL_MAX entries, all sizes together. Entries of
 * another PIN generation (sealed before a PIN change) or that fail
 * authentication can never be opened: take removes them as it meets them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/libctx.h"
#include "client/ks_impl.h"

#define HK_KS_POOL_DIR "pool"
#define HK_KS_POOL_MAGIC "HKPOOL1" /* and its NUL: 8 bytes */
#define HK_KS_POOL_HDR 16          /* magic, gen, bits */
#define HK_KS_POOL_ID 16
#define HK_KS_POOL_NAME HK_KS_POOL_NAME_LEN
#define HK_KS_POOL_PBYTES (HK_PAILLIER_BITS_MAX / 16)
#define HK_KS_POOL_REC_MAX                                                     \
    (HK_KS_POOL_HDR + HK_KS_SEAL_OVERHEAD + 2 * HK_KS_POOL_PBYTES)
#define HK_KS_POOL_SCAN 256 /* names looked at per call */

/* The entries of a directory listing. */
typedef struct {
    char name[HK_KS_POOL_SCAN][HK_KS_POOL_NAME];
    size_t n;
} hk_ks_pool_names;

static void hk_ks_pool_be32(unsigned long v, unsigned char *b)
{
    b[0] = (unsigned char)(v >> 24);
    b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8);
    b[3] = (unsigned char)v;
}

static unsigned long hk_ks_pool_get32(const unsigned char *b)
{
    return ((unsigned long)b[0] << 24) | ((unsigned long)b[1] << 16) |
           ((unsigned long)b[2] << 8) | b[3];
}

static int hk_ks_pool_hex(char c)
{
    return (c >= '0' && c <= '9')   ? c - '0'
           : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                                    : -1;
}

/* 1 if name is "<bits>-<32 lowercase hex>.key" with a supported size;
 * then *bits and id are set. */
static int hk_ks_pool_parse(const char *name, int *bits,
                            unsigned char id[HK_KS_POOL_ID])
{
    size_t i;
    int b;

    if (strncmp(name, "2048-", 5) == 0)
        b = 2048;
    else if (strncmp(name, "3072-", 5) == 0)
        b = 3072;
    else
        return 0;
    if (strlen(name) != 5 + 2 * HK_KS_POOL_ID + 4 ||
        strcmp(name + 5 + 2 * HK_KS_POOL_ID, ".key") != 0)
        return 0;
    for (i = 0; i < HK_KS_POOL_ID; i++) {
        int hi = hk_ks_pool_hex(name[5 + 2 * i]),
            lo = hk_ks_pool_hex(name[6 + 2 * i]);

        if (hi < 0 || lo < 0)
            return 0;
        id[i] = (unsigned char)(hi << 4 | lo);
    }
    *bits = b;
    return 1;
}

/* Opens <dir>/pool (created 0700 if `create`); HK_ERR_NOT_FOUND if absent
 * and not created. */
static hk_err hk_ks_pool_dir(hk_ks *ks, int create, int *fd)
{
    if (create && mkdirat(ks->dfd, HK_KS_POOL_DIR, 0700) != 0 &&
        errno != EEXIST)
        return HK_ERR_IO;
    return hk_ks_open_dir(ks->dfd, HK_KS_POOL_DIR, 0, fd);
}

static int hk_ks_pool_cmp(const void *a, const void *b) { return strcmp(a, b); }

/* The entries of size `bits` (0: any size), at most HK_KS_POOL_SCAN,
 * sorted (any entry will do; sorted makes the order reproducible). */
static hk_err hk_ks_pool_list(int pfd, int bits, hk_ks_pool_names *out)
{
    unsigned char id[HK_KS_POOL_ID];
    struct dirent *de;
    DIR *d;
    int fd, b;

    out->n = 0;
    if ((fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return HK_ERR_IO;
    if ((d = fdopendir(fd)) == NULL) {
        close(fd);
        return HK_ERR_IO;
    }
    while (out->n < HK_KS_POOL_SCAN && (de = readdir(d)) != NULL)
        if (hk_ks_pool_parse(de->d_name, &b, id) && (bits == 0 || b == bits))
            memcpy(out->name[out->n++], de->d_name, strlen(de->d_name) + 1);
    closedir(d);
    qsort(out->name, out->n, HK_KS_POOL_NAME, hk_ks_pool_cmp);
    return HK_OK;
}

static void hk_ks_pool_aad(hk_ks_aad *a, const char *name, unsigned long gen,
                           int bits)
{
    hk_ks_aad_init(a, "halfkey/pool/1");
    hk_ks_aad_str(a, name);
    hk_ks_aad_u64(a, gen);
    hk_ks_aad_u64(a, (uint64_t)bits);
}

/* Seals p || q (pt, 2 * bits/16 bytes) as the record of `name`. */
static hk_err hk_ks_pool_seal(const hk_ks *ks, const char *name,
                              const unsigned char *id, int bits,
                              const unsigned char *pt, size_t ptlen,
                              unsigned char *rec, size_t *reclen)
{
    unsigned char key[HK_KS_KEY_LEN];
    hk_ks_aad a;
    hk_err e;

    hk_ks_pool_aad(&a, name, ks->gen, bits);
    if (a.overflow)
        return HK_ERR_ARG;
    memcpy(rec, HK_KS_POOL_MAGIC, 8);
    hk_ks_pool_be32(ks->gen, rec + 8);
    hk_ks_pool_be32((unsigned long)bits, rec + 12);
    if ((e = hk_ks_hkdf(ks->mk, "halfkey/pool/1", id, HK_KS_POOL_ID, key)) ==
        HK_OK)
        e = hk_aead_seal(key, a.b, a.len, pt, ptlen, rec + HK_KS_POOL_HDR);
    OPENSSL_cleanse(key, sizeof(key));
    *reclen = HK_KS_POOL_HDR + HK_KS_SEAL_OVERHEAD + ptlen;
    return e;
}

/* Opens a record read from `name`: p || q into pt (2 * bits/16 bytes).
 * HK_ERR_STATE for another PIN generation, HK_ERR_SEAL or
 * HK_ERR_DECODE for a record that is not a valid entry of this name. */
static hk_err hk_ks_pool_open(const hk_ks *ks, const char *name,
                              const unsigned char *id, int bits,
                              const unsigned char *rec, size_t reclen,
                              unsigned char *pt)
{
    size_t ptlen = 2 * (size_t)(bits / 16);
    unsigned char key[HK_KS_KEY_LEN];
    hk_ks_aad a;
    hk_err e;

    if (reclen != HK_KS_POOL_HDR + HK_KS_SEAL_OVERHEAD + ptlen ||
        memcmp(rec, HK_KS_POOL_MAGIC, 8) != 0 ||
        hk_ks_pool_get32(rec + 12) != (unsigned long)bits)
        return HK_ERR_DECODE;
    if (hk_ks_pool_get32(rec + 8) != ks->gen)
        return HK_ERR_STATE;
    hk_ks_pool_aad(&a, name, ks->gen, bits);
    if (a.overflow)
        return HK_ERR_DECODE;
    if ((e = hk_ks_hkdf(ks->mk, "halfkey/pool/1", id, HK_KS_POOL_ID, key)) ==
        HK_OK)
        e = hk_aead_open(key, a.b, a.len, rec + HK_KS_POOL_HDR,
                         reclen - HK_KS_POOL_HDR, pt);
    OPENSSL_cleanse(key, sizeof(key));
    return e;
}

/* Writes one entry for sk's primes (caller holds ks->mu and the token
 * lock, logged in with a current generation). */
static hk_err hk_ks_pool_write(hk_ks *ks, int pfd, const hk_paillier_sk *sk)
{
    unsigned char id[HK_KS_POOL_ID], pt[2 * HK_KS_POOL_PBYTES],
        rec[HK_KS_POOL_REC_MAX];
    char name[HK_KS_POOL_NAME];
    int bits = hk_paillier_bits(hk_paillier_sk_pk(sk)), half = bits / 16;
    size_t reclen = 0, i;
    hk_err e;

    if (!hk_rand_bytes(id, sizeof(id)))
        return HK_ERR_RAND;
    snprintf(name, sizeof(name), "%d-", bits);
    for (i = 0; i < HK_KS_POOL_ID; i++)
        snprintf(name + 5 + 2 * i, 3, "%02x", id[i]);
    strcat(name, ".key");
    e = HK_ERR_CRYPTO;
    if (BN_bn2binpad(hk_paillier_sk_p(sk), pt, half) != half ||
        BN_bn2binpad(hk_paillier_sk_q(sk), pt + half, half) != half)
        goto done;
    if ((e = hk_ks_pool_seal(ks, name, id, bits, pt, 2 * (size_t)half, rec,
                             &reclen)) != HK_OK)
        goto done;
    e = hk_ks_write_file(pfd, name, rec, reclen);
done:
    OPENSSL_cleanse(pt, sizeof(pt));
    return e;
}

/* Runs fn under the handle's mutex and the token lock, logged in with a
 * current PIN generation, with the pool directory open. */
typedef hk_err (*hk_ks_pool_op)(hk_ks *ks, int pfd, void *arg);

static hk_err hk_ks_pool_locked(hk_ks *ks, int create, hk_ks_pool_op op,
                                void *arg)
{
    int lfd = -1, pfd = -1;
    hk_err e;

    pthread_mutex_lock(&ks->mu);
    if ((e = hk_ks_tlock(ks, &lfd)) != HK_OK ||
        (e = hk_ks_gen_check(ks)) != HK_OK ||
        (e = hk_ks_pool_dir(ks, create, &pfd)) != HK_OK)
        goto done;
    e = op(ks, pfd, arg);
done:
    if (pfd >= 0)
        close(pfd);
    if (lfd >= 0)
        close(lfd);
    pthread_mutex_unlock(&ks->mu);
    return e;
}

static hk_err hk_ks_pool_put_op(hk_ks *ks, int pfd, void *arg)
{
    hk_ks_pool_names *all;
    hk_err e;

    if ((all = OPENSSL_malloc(sizeof(*all))) == NULL)
        return HK_ERR_NOMEM;
    hk_ks_sweep_temps(pfd); /* no write is in flight: we hold the lock */
    if ((e = hk_ks_pool_list(pfd, 0, all)) == HK_OK)
        e = all->n >= HK_KS_POOL_MAX ? HK_ERR_TOO_BIG
                                     : hk_ks_pool_write(ks, pfd, arg);
    OPENSSL_free(all);
    return e;
}

hk_err hk_ks_pool_put(hk_ks *ks, const hk_paillier_sk *sk)
{
    if (ks == NULL || sk == NULL || hk_paillier_sk_p(sk) == NULL)
        return HK_ERR_ARG;
    return hk_ks_pool_locked(ks, 1, hk_ks_pool_put_op, (void *)sk);
}

typedef struct {
    int bits;
    hk_paillier_sk *sk;
    char name[HK_KS_POOL_NAME];
} hk_ks_pool_take_arg;

/* Opens the primes of a record already removed from disk. */
static hk_err hk_ks_pool_key(const hk_ks *ks, const char *name, int bits,
                             const unsigned char *rec, size_t reclen,
                             hk_paillier_sk **out)
{
    unsigned char id[HK_KS_POOL_ID], pt[2 * HK_KS_POOL_PBYTES];
    int b, half = bits / 16;
    BIGNUM *p = BN_secure_new(), *q = BN_secure_new();
    hk_err e = HK_ERR_NOMEM;

    if (p == NULL || q == NULL)
        goto done;
    e = HK_ERR_DECODE;
    if (!hk_ks_pool_parse(name, &b, id) || b != bits)
        goto done;
    if ((e = hk_ks_pool_open(ks, name, id, bits, rec, reclen, pt)) != HK_OK)
        goto done;
    e = HK_ERR_CRYPTO;
    if (BN_bin2bn(pt, half, p) == NULL || BN_bin2bn(pt + half, half, q) == NULL)
        goto done;
    e = hk_paillier_keygen_from_primes(p, q, bits, out);
done:
    OPENSSL_cleanse(pt, sizeof(pt));
    BN_clear_free(p);
    BN_clear_free(q);
    return e;
}

static hk_err hk_ks_pool_take_op(hk_ks *ks, int pfd, void *varg)
{
    hk_ks_pool_take_arg *arg = varg;
    hk_ks_pool_names *all;
    unsigned char *rec = NULL;
    size_t i, reclen = 0;
    hk_err e;

    if ((all = OPENSSL_malloc(sizeof(*all))) == NULL)
        return HK_ERR_NOMEM;
    if ((e = hk_ks_pool_list(pfd, arg->bits, all)) != HK_OK)
        goto done;
    e = HK_ERR_NOT_FOUND;
    for (i = 0; i < all->n && arg->sk == NULL; i++) {
        e = hk_ks_read_file(pfd, all->name[i], HK_KS_POOL_REC_MAX, &rec,
                            &reclen);
        if (e == HK_ERR_NOT_FOUND)
            continue;
        /* Gone from disk, durably, before anything else is done with it:
         * from here on it is this call's, used once or lost. An entry
         * that cannot be read or opened is removed the same way. */
        if (e == HK_OK || e == HK_ERR_TOO_BIG || e == HK_ERR_IO) {
            hk_err u = hk_ks_unlink(pfd, all->name[i]);

            if (u == HK_ERR_NOT_FOUND) {
                /* removed by someone else meanwhile: not ours to use */
                OPENSSL_clear_free(rec, reclen);
                rec = NULL;
                e = HK_ERR_NOT_FOUND;
                continue;
            }
            if (u != HK_OK) {
                e = u; /* maybe still on disk: never used */
                break;
            }
        }
        if (e == HK_OK && hk_ks_pool_key(ks, all->name[i], arg->bits, rec,
                                         reclen, &arg->sk) == HK_OK)
            memcpy(arg->name, all->name[i], HK_KS_POOL_NAME);
        OPENSSL_clear_free(rec, reclen);
        rec = NULL;
        e = arg->sk != NULL ? HK_OK : HK_ERR_NOT_FOUND;
    }
done:
    if (rec != NULL)
        OPENSSL_clear_free(rec, reclen);
    OPENSSL_free(all);
    return e;
}

hk_err hk_ks_pool_take(hk_ks *ks, int bits, hk_paillier_sk **out,
                       char name[HK_KS_POOL_NAME_LEN])
{
    hk_ks_pool_take_arg arg;
    hk_err e;

    if (ks == NULL || out == NULL || !hk_paillier_bits_ok(bits))
        return HK_ERR_ARG;
    *out = NULL;
    memset(&arg, 0, sizeof(arg));
    arg.bits = bits;
    e = hk_ks_pool_locked(ks, 0, hk_ks_pool_take_op, &arg);
    if (e != HK_OK) {
        hk_paillier_sk_free(arg.sk);
        return e;
    }
    *out = arg.sk;
    if (name != NULL)
        memcpy(name, arg.name, HK_KS_POOL_NAME_LEN);
    return HK_OK;
}

hk_err hk_ks_pool_count(hk_ks *ks, int bits, size_t *n)
{
    hk_ks_pool_names *all;
    int pfd = -1;
    hk_err e;

    if (ks == NULL || n == NULL || (bits != 0 && !hk_paillier_bits_ok(bits)))
        return HK_ERR_ARG;
    *n = 0;
    if ((all = OPENSSL_malloc(sizeof(*all))) == NULL)
        return HK_ERR_NOMEM;
    pthread_mutex_lock(&ks->mu);
    e = hk_ks_pool_dir(ks, 0, &pfd);
    if (e == HK_OK && (e = hk_ks_pool_list(pfd, bits, all)) == HK_OK)
        *n = all->n;
    else if (e == HK_ERR_NOT_FOUND)
        e = HK_OK; /* no pool yet: empty */
    pthread_mutex_unlock(&ks->mu);
    if (pfd >= 0)
        close(pfd);
    OPENSSL_free(all);
    return e;
}

hk_err hk_ks_pool_fill(hk_ks *ks, int bits, size_t target, size_t *added)
{
    hk_paillier_sk *sk = NULL;
    size_t have = 0, done = 0;
    hk_err e;

    if (ks == NULL || !hk_paillier_bits_ok(bits))
        return HK_ERR_ARG;
    if (added != NULL)
        *added = 0;
    if (target > HK_KS_POOL_MAX)
        target = HK_KS_POOL_MAX;
    /* checked before the first (slow) key: a fill that cannot store */
    pthread_mutex_lock(&ks->mu);
    e = hk_ks_gen_check(ks);
    pthread_mutex_unlock(&ks->mu);
    if (e != HK_OK)
        return e;
    for (;;) {
        if ((e = hk_ks_pool_count(ks, bits, &have)) != HK_OK || have >= target)
            break;
        /* the primes are searched without any lock held */
        if ((e = hk_paillier_keygen(bits, &sk)) != HK_OK ||
            (e = hk_ks_pool_put(ks, sk)) != HK_OK)
            break;
        hk_paillier_sk_free(sk);
        sk = NULL;
        done++;
    }
    hk_paillier_sk_free(sk);
    if (added != NULL)
        *added = done;
    /* a full pool (other sizes) is not a failure of the fill */
    return e == HK_ERR_TOO_BIG && done > 0 ? HK_OK : e;
}
