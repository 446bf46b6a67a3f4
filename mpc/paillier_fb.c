/* Fixed-base exponentiation of one public ciphertext (P2's ckey = Enc(x1))
 * by a secret exponent below 2^256: the ckey^w of every c3 (Lindell 2017
 * protocol 4.3 step 3(c), w = k2^-1 * r * x2 mod q), issue 20 item 4.
 *
 * Owns the table and the exponentiation. A Lim-Lee comb (Lim and Lee,
 * "More flexible exponentiation with precomputation", CRYPTO '94) with
 * HK_FB_H = 5 rows of HK_FB_A = 52 bits and HK_FB_V = 2 blocks per row:
 * e = sum_i e_i 2^(i*A), and for block v the table holds, for each 5-bit
 * set s, prod_{i in s} c^(2^(i*A + v*B)). c^e is then B = 26 squarings and
 * V*B = 52 multiplications (against ~256 squarings and ~64 multiplications
 * of BN_mod_exp_mont_consttime: 3-3.5x faster), for a table of
 * V * 2^H = 64 entries of |N^2| bytes (32 KB for Paillier-2048) made once
 * per key with ~260 squarings.
 *
 * Constant time in e: the same sequence of Montgomery multiplications for
 * every e (an index of 0 multiplies by the Montgomery form of 1), and each
 * table entry is read by a masked scan over all 32 entries of its block,
 * so neither the branches nor the memory addresses depend on e. The
 * products use OpenSSL's BN_mod_mul_montgomery, whose assembly path
 * (bn_mul_mont, used when both operands have the modulus's limb count)
 * runs the same instructions for all values of that width: every table
 * entry is checked to have it when the table is made; an intermediate
 * product with a zero top limb (probability ~2^-62 per step) would take
 * OpenSSL's generic path instead, the same caveat as mpc/ct.h's. */
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/libctx.h"
#include "mpc/paillier.h"

#define HK_FB_H 5  /* rows (teeth of the comb) */
#define HK_FB_V 2  /* blocks per row */
#define HK_FB_A 52 /* bits per row: H*A >= HK_PAILLIER_FB_BITS */
#define HK_FB_B 26 /* bits per block: V*B >= A */
#define HK_FB_N (1 << HK_FB_H)

struct hk_paillier_fb {
    int refs;
    BIGNUM *n2, *c;    /* the modulus and the base, for hk_paillier_fb_is_for */
    BN_MONT_CTX *mont; /* of n2 */
    size_t words;      /* 64-bit words per entry */
    uint64_t *tab;     /* [V][2^H][words], Montgomery form, little-endian */
};

static uint64_t *hk_fb_entry(const hk_paillier_fb *t, int v, unsigned s)
{
    return t->tab + ((size_t)v * HK_FB_N + s) * t->words;
}

void hk_paillier_fb_free(hk_paillier_fb *t)
{
    if (t == NULL || __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    OPENSSL_free(t->tab);
    BN_MONT_CTX_free(t->mont);
    BN_free(t->n2);
    BN_free(t->c);
    OPENSSL_free(t);
}

hk_paillier_fb *hk_paillier_fb_ref(hk_paillier_fb *t)
{
    if (t != NULL)
        __atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
    return t;
}

int hk_paillier_fb_is_for(const hk_paillier_fb *t, const hk_paillier_pk *pk,
                          const BIGNUM *c)
{
    return t != NULL && pk != NULL && c != NULL &&
           BN_cmp(t->n2, hk_paillier_n2(pk)) == 0 && BN_cmp(t->c, c) == 0;
}

/* Stores x (Montgomery form, < n2) as entry (v, s); HK_ERR_CRYPTO if its top
 * limb is zero (the assembly path needs the full width, see above). */
static hk_err hk_fb_store(hk_paillier_fb *t, int v, unsigned s, const BIGNUM *x)
{
    if (BN_num_bits(x) <= (int)(t->words - 1) * 64 ||
        BN_bn2lebinpad(x, (unsigned char *)hk_fb_entry(t, v, s),
                       (int)(t->words * 8)) < 0)
        return HK_ERR_CRYPTO;
    return HK_OK;
}

/* base[v][i] = c^(2^(i*A + v*B)) in Montgomery form, by one squaring chain. */
static hk_err hk_fb_bases(hk_paillier_fb *t, BIGNUM *base[HK_FB_V][HK_FB_H],
                          BN_CTX *ctx)
{
    BIGNUM *cur = BN_CTX_get(ctx);
    int i, k, v;

    if (cur == NULL || !BN_to_montgomery(cur, t->c, t->mont, ctx))
        return HK_ERR_CRYPTO;
    for (i = 0; i < HK_FB_H; i++)
        for (k = 0; k < HK_FB_A; k++) {
            v = k / HK_FB_B;
            if (k % HK_FB_B == 0 && v < HK_FB_V &&
                ((base[v][i] = BN_CTX_get(ctx)) == NULL ||
                 !BN_copy(base[v][i], cur)))
                return HK_ERR_CRYPTO;
            if (!BN_mod_mul_montgomery(cur, cur, cur, t->mont, ctx))
                return HK_ERR_CRYPTO;
        }
    return HK_OK;
}

/* Entry (v, s) = prod_{i in s} base[v][i]; entry (v, 0) = 1 (Montgomery). */
static hk_err hk_fb_fill(hk_paillier_fb *t, BIGNUM *base[HK_FB_V][HK_FB_H],
                         BN_CTX *ctx)
{
    BIGNUM *ent[HK_FB_N];
    unsigned s;
    hk_err e;
    int v;

    for (v = 0; v < HK_FB_V; v++) {
        for (s = 0; s < HK_FB_N; s++)
            if ((ent[s] = BN_CTX_get(ctx)) == NULL)
                return HK_ERR_CRYPTO;
        if (!BN_one(ent[0]) || !BN_to_montgomery(ent[0], ent[0], t->mont, ctx))
            return HK_ERR_CRYPTO;
        for (s = 1; s < HK_FB_N; s++)
            /* s = (s with its lowest bit cleared) + that bit */
            if (!BN_mod_mul_montgomery(ent[s], ent[s & (s - 1)],
                                       base[v][__builtin_ctz(s)], t->mont, ctx))
                return HK_ERR_CRYPTO;
        for (s = 0; s < HK_FB_N; s++)
            if ((e = hk_fb_store(t, v, s, ent[s])) != HK_OK)
                return e;
    }
    return HK_OK;
}

hk_err hk_paillier_fb_new(const hk_paillier_pk *pk, const BIGNUM *c,
                          hk_paillier_fb **out)
{
    BIGNUM *base[HK_FB_V][HK_FB_H];
    hk_paillier_fb *t = NULL;
    BN_CTX *ctx = NULL;
    hk_err e = HK_ERR_NOMEM;

    if (pk == NULL || c == NULL || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if ((e = hk_paillier_ct_range(pk, c)) != HK_OK)
        return e;
    e = HK_ERR_NOMEM;
    if ((t = OPENSSL_zalloc(sizeof(*t))) == NULL ||
        (ctx = BN_CTX_new_ex(hk_libctx())) == NULL)
        goto done;
    t->refs = 1;
    t->words = ((size_t)BN_num_bits(hk_paillier_n2(pk)) + 63) / 64;
    if ((t->n2 = BN_dup(hk_paillier_n2(pk))) == NULL ||
        (t->c = BN_dup(c)) == NULL || (t->mont = BN_MONT_CTX_new()) == NULL ||
        (t->tab = OPENSSL_malloc(HK_FB_V * HK_FB_N * t->words * 8)) == NULL)
        goto done;
    BN_CTX_start(ctx);
    if (!BN_MONT_CTX_set(t->mont, t->n2, ctx))
        e = HK_ERR_CRYPTO;
    else if ((e = hk_fb_bases(t, base, ctx)) == HK_OK)
        e = hk_fb_fill(t, base, ctx);
    BN_CTX_end(ctx);
done:
    BN_CTX_free(ctx);
    if (e == HK_OK)
        *out = t;
    else
        hk_paillier_fb_free(t);
    return e;
}

/* x = entry (v, idx), reading every entry of block v (idx is secret). */
static void hk_fb_select(const hk_paillier_fb *t, int v, unsigned idx,
                         uint64_t *x)
{
    const uint64_t *en;
    uint64_t mask;
    unsigned s;
    size_t k;

    memset(x, 0, t->words * 8);
    for (s = 0; s < HK_FB_N; s++) {
        /* all ones iff s == idx: (s ^ idx) - 1 underflows only at 0 */
        mask = 0 - (((uint64_t)(s ^ idx) - 1) >> 63);
        en = hk_fb_entry(t, v, s);
        for (k = 0; k < t->words; k++)
            x[k] |= en[k] & mask;
    }
}

/* The comb's index for column k of block v: bit (i*A + v*B + k) of e for
 * each row i (positions are public, the bits secret). */
static unsigned hk_fb_index(const unsigned char *eb, int v, int k)
{
    unsigned idx = 0;
    int i, pos;

    for (i = 0; i < HK_FB_H; i++) {
        pos = i * HK_FB_A + v * HK_FB_B + k;
        if (v * HK_FB_B + k < HK_FB_A && pos < HK_PAILLIER_FB_BITS)
            idx |= (unsigned)((eb[pos >> 3] >> (pos & 7)) & 1) << i;
    }
    return idx;
}

hk_err hk_paillier_fb_exp(const hk_paillier_fb *t, const BIGNUM *e, BIGNUM *out)
{
    unsigned char eb[HK_PAILLIER_FB_BITS / 8];
    uint64_t *x = NULL;
    BIGNUM *r = NULL, *xb = NULL;
    BN_CTX *ctx = NULL;
    hk_err err = HK_ERR_NOMEM;
    int k, v;

    if (t == NULL || e == NULL || out == NULL || BN_is_negative(e))
        return HK_ERR_ARG;
    /* constant time for a fixed output length (OpenSSL 3) */
    if (BN_bn2lebinpad(e, eb, sizeof(eb)) < 0)
        return HK_ERR_ARG;
    if ((x = OPENSSL_malloc(t->words * 8)) == NULL ||
        (ctx = BN_CTX_new_ex(hk_libctx())) == NULL || (r = BN_new()) == NULL ||
        (xb = BN_new()) == NULL)
        goto done;
    err = HK_ERR_CRYPTO;
    hk_fb_select(t, 0, 0, x); /* r = 1 */
    if (BN_lebin2bn((unsigned char *)x, (int)(t->words * 8), r) == NULL)
        goto done;
    for (k = HK_FB_B - 1; k >= 0; k--) {
        if (!BN_mod_mul_montgomery(r, r, r, t->mont, ctx))
            goto done;
        for (v = HK_FB_V - 1; v >= 0; v--) {
            hk_fb_select(t, v, hk_fb_index(eb, v, k), x);
            if (BN_lebin2bn((unsigned char *)x, (int)(t->words * 8), xb) ==
                    NULL ||
                !BN_mod_mul_montgomery(r, r, xb, t->mont, ctx))
                goto done;
        }
    }
    if (BN_from_montgomery(out, r, t->mont, ctx))
        err = HK_OK;
done:
    OPENSSL_cleanse(eb, sizeof(eb));
    if (x != NULL)
        OPENSSL_clear_free(x, t->words * 8);
    BN_clear_free(r);
    BN_clear_free(xb);
    BN_CTX_free(ctx);
    return err;
}
