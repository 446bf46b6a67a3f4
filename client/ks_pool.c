/* The token's Paillier prime pool (issue 20 item 5): pairs of primes made
 * in idle time for the next keygen or refresh, sealed under the PIN key,
 * each used once.
 *
 * Owns the pool's entries (ks_entries.c, kind "pool"):
 * <dir>/pool/<bits>-<32 hex>.key, one pair of primes p, q of bits/2 bits
 * each (a Paillier key of `bits` bits as hk_paillier_keygen makes it),
 * p || q fixed width, bits/16 bytes each, with `bits` as the entry's field:
 * an entry cannot be renamed into another size. Every entry comes from its
 * own hk_paillier_keygen, so no two entries, and no two keys, share a
 * prime. Taking is single use and crash safe as ks_entries.c describes;
 * an entry taken twice (a copy put back by someone who can write the
 * directory) would be used twice by this token's own keys (it protects
 * only the client's own shares).
 *
 * Bounded: at most HK_KS_POOL_MAX entries, all sizes together. */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "client/ks_impl.h"

#define HK_KS_POOL_PBYTES (HK_PAILLIER_BITS_MAX / 16)

static const hk_ks_ent_kind hk_ks_pool_kind = {
    "pool", "halfkey/pool/1", "HKPOOL1", ".key", HK_KS_POOL_MAX, 0, 0};

static void hk_ks_pool_tag(int bits, char tag[8])
{
    snprintf(tag, 8, "%d", bits);
}

hk_err hk_ks_pool_put(hk_ks *ks, const hk_paillier_sk *sk)
{
    unsigned char pt[2 * HK_KS_POOL_PBYTES];
    char tag[8];
    int bits, half;
    hk_err e = HK_ERR_CRYPTO;

    if (ks == NULL || sk == NULL || hk_paillier_sk_p(sk) == NULL)
        return HK_ERR_ARG;
    bits = hk_paillier_bits(hk_paillier_sk_pk(sk));
    half = bits / 16;
    hk_ks_pool_tag(bits, tag);
    if (BN_bn2binpad(hk_paillier_sk_p(sk), pt, half) == half &&
        BN_bn2binpad(hk_paillier_sk_q(sk), pt + half, half) == half)
        e = hk_ks_ent_put(ks, &hk_ks_pool_kind, tag, (unsigned long)bits, pt,
                          2 * (size_t)half);
    OPENSSL_cleanse(pt, sizeof(pt));
    return e;
}

hk_err hk_ks_pool_take(hk_ks *ks, int bits, hk_paillier_sk **out,
                       char name[HK_KS_POOL_NAME_LEN])
{
    unsigned char pt[2 * HK_KS_POOL_PBYTES];
    char tag[8], got[HK_KS_ENT_NAME_LEN];
    int half = bits / 16;
    BIGNUM *p = NULL, *q = NULL;
    hk_err e;

    if (ks == NULL || out == NULL || !hk_paillier_bits_ok(bits))
        return HK_ERR_ARG;
    *out = NULL;
    hk_ks_pool_tag(bits, tag);
    if ((e = hk_ks_ent_take(ks, &hk_ks_pool_kind, tag, (unsigned long)bits, pt,
                            2 * (size_t)half, got, 0)) != HK_OK)
        return e;
    e = HK_ERR_NOMEM;
    if ((p = BN_secure_new()) == NULL || (q = BN_secure_new()) == NULL)
        goto done;
    e = HK_ERR_CRYPTO;
    if (BN_bin2bn(pt, half, p) == NULL || BN_bin2bn(pt + half, half, q) == NULL)
        goto done;
    /* a pool name is "<bits>-<32 hex>.key": 41 bytes and its NUL */
    if ((e = hk_paillier_keygen_from_primes(p, q, bits, out)) == HK_OK &&
        name != NULL)
        memcpy(name, got, HK_KS_POOL_NAME_LEN - 1);
    if (name != NULL)
        name[HK_KS_POOL_NAME_LEN - 1] = 0;
done:
    OPENSSL_cleanse(pt, sizeof(pt));
    BN_clear_free(p);
    BN_clear_free(q);
    return e;
}

hk_err hk_ks_pool_count(hk_ks *ks, int bits, size_t *n)
{
    char tag[8];

    if (ks == NULL || n == NULL || (bits != 0 && !hk_paillier_bits_ok(bits)))
        return HK_ERR_ARG;
    hk_ks_pool_tag(bits, tag);
    return hk_ks_ent_count(ks, &hk_ks_pool_kind, bits != 0 ? tag : NULL, n);
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
