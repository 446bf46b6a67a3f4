/* Constant-time modular arithmetic on fixed-width limb arrays (see ct.h
 * for why and for what "constant time" covers). */
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>

#include "mpc/ct.h"

#define HK_CT_LIMBS (HK_CT_MAX_BITS / 32)

typedef uint32_t limb;
typedef uint64_t dlimb;

struct hk_ct_mod {
    size_t n;     /* limbs */
    size_t bytes; /* byte width of m */
    limb m0inv;   /* -m^-1 mod 2^32 */
    limb m[HK_CT_LIMBS];
    limb rr[HK_CT_LIMBS];   /* R^2 mod m, R = 2^(32n) */
    limb minv[HK_CT_LIMBS]; /* m^-1 mod R, for exact division */
};

struct hk_ct_crt {
    hk_ct_mod *p;
    size_t nq;
    limb q[HK_CT_LIMBS];
    limb qinv[HK_CT_LIMBS]; /* Q^-1 * R mod P (Montgomery form) */
};

/* --- limb arithmetic: fixed loop bounds, no value-dependent branches --- */

/* r = a - b over n limbs; returns the borrow (0 or 1). */
static limb ct_sub(limb *r, const limb *a, const limb *b, size_t n)
{
    limb borrow = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        dlimb t = (dlimb)a[i] - b[i] - borrow;

        r[i] = (limb)t;
        borrow = (limb)(t >> 63); /* the difference wrapped: top bit set */
    }
    return borrow;
}

/* r = a + (b & mask) over n limbs; returns the carry (0 or 1). */
static limb ct_add_masked(limb *r, const limb *a, const limb *b, limb mask,
                          size_t n)
{
    limb carry = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        dlimb t = (dlimb)a[i] + (b[i] & mask) + carry;

        r[i] = (limb)t;
        carry = (limb)(t >> 32);
    }
    return carry;
}

/* r = mask ? a : b (mask all ones or zero). */
static void ct_select(limb *r, const limb *a, const limb *b, limb mask,
                      size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        r[i] = (a[i] & mask) | (b[i] & ~mask);
}

/* 1 if a < m. */
static limb ct_lt(const limb *a, const limb *m, size_t n)
{
    limb t[HK_CT_LIMBS];
    limb b = ct_sub(t, a, m, n);

    OPENSSL_cleanse(t, sizeof(t));
    return b;
}

/* r = a * b * R^-1 mod m for a, b < m (CIOS Montgomery multiplication,
 * Koc, Acar, Kaliski 1996). The result before the final step is < 2m; the
 * one subtraction of m is applied under a mask. */
static void ct_mont_mul(const hk_ct_mod *md, limb *r, const limb *a,
                        const limb *b)
{
    size_t n = md->n, i, j;
    limb t[HK_CT_LIMBS + 2], d[HK_CT_LIMBS + 1], borrow;

    memset(t, 0, sizeof(t));
    for (i = 0; i < n; i++) {
        dlimb c = 0;
        limb u;

        for (j = 0; j < n; j++) {
            c = (dlimb)a[j] * b[i] + t[j] + (c >> 32);
            t[j] = (limb)c;
        }
        c = (dlimb)t[n] + (c >> 32);
        t[n] = (limb)c;
        t[n + 1] = (limb)(c >> 32);
        u = t[0] * md->m0inv;
        c = (dlimb)u * md->m[0] + t[0];
        for (j = 1; j < n; j++) {
            c = (dlimb)u * md->m[j] + t[j] + (c >> 32);
            t[j - 1] = (limb)c;
        }
        c = (dlimb)t[n] + (c >> 32);
        t[n - 1] = (limb)c;
        t[n] = t[n + 1] + (limb)(c >> 32);
    }
    /* t (n + 1 limbs) < 2m: keep t - m unless it borrows */
    borrow = ct_sub(d, t, md->m, n);
    borrow = (limb)(((dlimb)t[n] - borrow) >> 63);
    ct_select(r, t, d, (limb)0 - borrow, n);
    OPENSSL_cleanse(t, sizeof(t));
    OPENSSL_cleanse(d, sizeof(d));
}

/* r = a + b mod m, a, b < m. */
static void ct_mod_add(const hk_ct_mod *md, limb *r, const limb *a,
                       const limb *b)
{
    limb s[HK_CT_LIMBS], d[HK_CT_LIMBS], carry, borrow;

    carry = ct_add_masked(s, a, b, (limb)-1, md->n);
    borrow = ct_sub(d, s, md->m, md->n);
    /* a + b >= m iff the sum carried out or s - m did not borrow */
    ct_select(r, d, s, (limb)0 - (carry | (borrow ^ 1)), md->n);
    OPENSSL_cleanse(s, sizeof(s));
    OPENSSL_cleanse(d, sizeof(d));
}

/* r = a - b mod m, a, b < m. */
static void ct_mod_sub(const hk_ct_mod *md, limb *r, const limb *a,
                       const limb *b)
{
    limb borrow = ct_sub(r, a, b, md->n);

    (void)ct_add_masked(r, r, md->m, (limb)0 - borrow, md->n);
}

/* r (na + nb limbs) = a * b, schoolbook. */
static void ct_mul(limb *r, const limb *a, size_t na, const limb *b, size_t nb)
{
    size_t i, j;

    memset(r, 0, (na + nb) * sizeof(limb));
    for (i = 0; i < nb; i++) {
        dlimb c = 0;

        for (j = 0; j < na; j++) {
            c = (dlimb)a[j] * b[i] + r[i + j] + (c >> 32);
            r[i + j] = (limb)c;
        }
        r[i + na] = (limb)(c >> 32);
    }
}

/* r = a R^-1 mod m for a (2n limbs) < m R: Montgomery reduction, with the
 * carry out of each row kept in `hi` instead of a variable-length carry
 * propagation. The result before the final step is < 2m. */
static void ct_redc(const hk_ct_mod *md, limb *r, const limb *a)
{
    size_t n = md->n, i, j;
    limb t[2 * HK_CT_LIMBS], d[HK_CT_LIMBS], hi = 0, borrow;

    memcpy(t, a, 2 * n * sizeof(limb));
    for (i = 0; i < n; i++) {
        limb u = t[i] * md->m0inv;
        dlimb c = 0;

        for (j = 0; j < n; j++) {
            c = (dlimb)u * md->m[j] + t[i + j] + (c >> 32);
            t[i + j] = (limb)c;
        }
        c = (dlimb)t[i + n] + (c >> 32) + hi;
        t[i + n] = (limb)c;
        hi = (limb)(c >> 32);
    }
    borrow = ct_sub(d, t + n, md->m, n);
    borrow = (limb)(((dlimb)hi - borrow) >> 63);
    ct_select(r, t + n, d, (limb)0 - borrow, n);
    OPENSSL_cleanse(t, sizeof(t));
    OPENSSL_cleanse(d, sizeof(d));
}

/* x = m^-1 mod R by Newton's iteration x <- x (2 - m x), which doubles
 * the number of correct low bits: 32 -> 64 -> ... -> 32n. */
static void ct_inv_mod_r(const hk_ct_mod *md, limb *x, limb x0)
{
    limb t[2 * HK_CT_LIMBS], u[2 * HK_CT_LIMBS];
    size_t n = md->n, i, bits;

    memset(x, 0, n * sizeof(limb));
    x[0] = x0;
    for (bits = 32; bits < 32 * n; bits *= 2) {
        ct_mul(t, md->m, n, x, n); /* m x mod R */
        for (i = 0; i < n; i++)    /* 2 - m x = ~(m x) + 3 mod R */
            t[i] = ~t[i];
        t[n] = 3;
        for (i = 1; i < n; i++)
            t[n + i] = 0;
        (void)ct_add_masked(t, t, t + n, (limb)-1, n);
        ct_mul(u, x, n, t, n); /* only the low n limbs are kept */
        memcpy(x, u, n * sizeof(limb));
    }
    OPENSSL_cleanse(t, sizeof(t));
    OPENSSL_cleanse(u, sizeof(u));
}

/* --- conversions ------------------------------------------------------- */

/* Little-endian bytes (4n of them) to limbs. */
static void ct_from_le(limb *r, const unsigned char *b, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        r[i] = (limb)b[4 * i] | (limb)b[4 * i + 1] << 8 |
               (limb)b[4 * i + 2] << 16 | (limb)b[4 * i + 3] << 24;
}

static void ct_to_le(unsigned char *b, const limb *r, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        b[4 * i] = (unsigned char)r[i];
        b[4 * i + 1] = (unsigned char)(r[i] >> 8);
        b[4 * i + 2] = (unsigned char)(r[i] >> 16);
        b[4 * i + 3] = (unsigned char)(r[i] >> 24);
    }
}

/* BIGNUM (non-negative, below 2^(32n)) to n <= 2 HK_CT_LIMBS limbs; 0 if
 * it does not fit. */
static int ct_load(limb *r, const BIGNUM *a, size_t n)
{
    unsigned char b[8 * HK_CT_LIMBS];
    int ok = n <= 2 * HK_CT_LIMBS && !BN_is_negative(a) &&
             BN_bn2lebinpad(a, b, (int)(4 * n)) == (int)(4 * n);

    if (ok)
        ct_from_le(r, b, n);
    OPENSSL_cleanse(b, sizeof(b));
    return ok;
}

static int ct_store(BIGNUM *r, const limb *a, size_t n)
{
    unsigned char b[8 * HK_CT_LIMBS];
    int ok;

    ct_to_le(b, a, n);
    BN_set_flags(r, BN_FLG_CONSTTIME);
    ok = BN_lebin2bn(b, (int)(4 * n), r) != NULL;
    OPENSSL_cleanse(b, sizeof(b));
    return ok;
}

/* Big-endian bytes of the modulus' byte width to limbs and back. */
static void ct_from_be(const hk_ct_mod *md, limb *r, const unsigned char *in)
{
    unsigned char b[4 * HK_CT_LIMBS];
    size_t i;

    memset(b, 0, sizeof(b));
    for (i = 0; i < md->bytes; i++)
        b[i] = in[md->bytes - 1 - i];
    ct_from_le(r, b, md->n);
    OPENSSL_cleanse(b, sizeof(b));
}

static void ct_to_be(const hk_ct_mod *md, unsigned char *out, const limb *r)
{
    unsigned char b[4 * HK_CT_LIMBS];
    size_t i;

    ct_to_le(b, r, md->n);
    for (i = 0; i < md->bytes; i++)
        out[i] = b[md->bytes - 1 - i];
    OPENSSL_cleanse(b, sizeof(b));
}

/* --- contexts ------------------------------------------------------------ */

hk_err hk_ct_mod_new(const BIGNUM *m, hk_ct_mod **out)
{
    hk_ct_mod *md = NULL;
    BN_CTX *ctx = NULL;
    BIGNUM *rr = NULL;
    limb x;
    int bits, i;
    hk_err e = HK_ERR_ARG;

    if (m == NULL || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    bits = BN_num_bits(m);
    if (BN_is_negative(m) || !BN_is_odd(m) || bits < 2 || bits > HK_CT_MAX_BITS)
        return HK_ERR_ARG;
    e = HK_ERR_NOMEM;
    if ((md = OPENSSL_secure_zalloc(sizeof(*md))) == NULL ||
        (ctx = BN_CTX_secure_new()) == NULL || (rr = BN_secure_new()) == NULL)
        goto done;
    md->n = ((size_t)bits + 31) / 32;
    md->bytes = ((size_t)bits + 7) / 8;
    e = HK_ERR_CRYPTO;
    if (!ct_load(md->m, m, md->n))
        goto done;
    /* Newton's iteration doubles the correct low bits of m^-1 each step. */
    for (x = 1, i = 0; i < 5; i++)
        x *= 2 - md->m[0] * x;
    md->m0inv = (limb)0 - x;
    ct_inv_mod_r(md, md->minv, x);
    BN_set_flags(rr, BN_FLG_CONSTTIME);
    if (!BN_set_bit(rr, (int)(64 * md->n)) || !BN_mod(rr, rr, m, ctx) ||
        !ct_load(md->rr, rr, md->n))
        goto done;
    *out = md;
    md = NULL;
    e = HK_OK;
done:
    hk_ct_mod_free(md);
    BN_clear_free(rr);
    BN_CTX_free(ctx);
    return e;
}

void hk_ct_mod_free(hk_ct_mod *m)
{
    if (m != NULL)
        OPENSSL_secure_clear_free(m, sizeof(*m));
}

size_t hk_ct_mod_bytes(const hk_ct_mod *m) { return m->bytes; }

/* op: 0 add, 1 mul, on limbs already loaded and checked below m. */
static void ct_mod_op(const hk_ct_mod *md, int op, limb *r, const limb *a,
                      const limb *b)
{
    limb t[HK_CT_LIMBS];

    if (op == 0) {
        ct_mod_add(md, r, a, b);
        return;
    }
    /* (a b R^-1) R^2 R^-1 = a b mod m */
    ct_mont_mul(md, t, a, b);
    ct_mont_mul(md, r, t, md->rr);
    OPENSSL_cleanse(t, sizeof(t));
}

static hk_err hk_ct_mod_op(const hk_ct_mod *md, int op, const BIGNUM *a,
                           const BIGNUM *b, BIGNUM *r)
{
    limb x[HK_CT_LIMBS], y[HK_CT_LIMBS];
    hk_err e = HK_ERR_ARG;

    if (md == NULL || a == NULL || b == NULL || r == NULL)
        return HK_ERR_ARG;
    if (!ct_load(x, a, md->n) || !ct_load(y, b, md->n) ||
        !(ct_lt(x, md->m, md->n) & ct_lt(y, md->m, md->n)))
        goto done;
    ct_mod_op(md, op, x, x, y);
    e = ct_store(r, x, md->n) ? HK_OK : HK_ERR_NOMEM;
done:
    OPENSSL_cleanse(x, sizeof(x));
    OPENSSL_cleanse(y, sizeof(y));
    return e;
}

hk_err hk_ct_mod_mul(const hk_ct_mod *m, const BIGNUM *a, const BIGNUM *b,
                     BIGNUM *r)
{
    return hk_ct_mod_op(m, 1, a, b, r);
}

hk_err hk_ct_mod_add(const hk_ct_mod *m, const BIGNUM *a, const BIGNUM *b,
                     BIGNUM *r)
{
    return hk_ct_mod_op(m, 0, a, b, r);
}

static hk_err hk_ct_mod_op_be(const hk_ct_mod *md, int op,
                              const unsigned char *a, const unsigned char *b,
                              unsigned char *r)
{
    limb x[HK_CT_LIMBS], y[HK_CT_LIMBS];
    hk_err e = HK_ERR_ARG;

    if (md == NULL || a == NULL || b == NULL || r == NULL)
        return HK_ERR_ARG;
    ct_from_be(md, x, a);
    ct_from_be(md, y, b);
    if (ct_lt(x, md->m, md->n) & ct_lt(y, md->m, md->n)) {
        ct_mod_op(md, op, x, x, y);
        ct_to_be(md, r, x);
        e = HK_OK;
    }
    OPENSSL_cleanse(x, sizeof(x));
    OPENSSL_cleanse(y, sizeof(y));
    return e;
}

hk_err hk_ct_mod_mul_be(const hk_ct_mod *m, const unsigned char *a,
                        const unsigned char *b, unsigned char *r)
{
    return hk_ct_mod_op_be(m, 1, a, b, r);
}

hk_err hk_ct_mod_add_be(const hk_ct_mod *m, const unsigned char *a,
                        const unsigned char *b, unsigned char *r)
{
    return hk_ct_mod_op_be(m, 0, a, b, r);
}

hk_err hk_ct_mod_reduce(const hk_ct_mod *m, const BIGNUM *a, BIGNUM *r)
{
    limb x[2 * HK_CT_LIMBS], y[HK_CT_LIMBS];
    hk_err e = HK_ERR_ARG;

    if (m == NULL || a == NULL || r == NULL)
        return HK_ERR_ARG;
    /* a < 2^(32n) * m: its top n limbs are below m */
    if (!ct_load(x, a, 2 * m->n) || !ct_lt(x + m->n, m->m, m->n))
        goto done;
    ct_redc(m, y, x);            /* a R^-1 */
    ct_mont_mul(m, y, y, m->rr); /* a R^-1 R^2 R^-1 = a */
    e = ct_store(r, y, m->n) ? HK_OK : HK_ERR_NOMEM;
done:
    OPENSSL_cleanse(x, sizeof(x));
    OPENSSL_cleanse(y, sizeof(y));
    return e;
}

hk_err hk_ct_mod_lfunc(const hk_ct_mod *m, const BIGNUM *u, BIGNUM *out)
{
    limb x[2 * HK_CT_LIMBS], one[HK_CT_LIMBS], t[2 * HK_CT_LIMBS];
    hk_err e = HK_ERR_ARG;

    if (m == NULL || u == NULL || out == NULL)
        return HK_ERR_ARG;
    if (!ct_load(x, u, 2 * m->n))
        goto done;
    memset(one, 0, sizeof(one));
    one[0] = 1;
    (void)ct_sub(x, x, one, m->n); /* u = 1 mod m: no borrow out */
    /* (u - 1) = L m exactly and L < m < R, so L = (u - 1) m^-1 mod R */
    ct_mul(t, x, m->n, m->minv, m->n);
    e = ct_store(out, t, m->n) ? HK_OK : HK_ERR_NOMEM;
done:
    OPENSSL_cleanse(x, sizeof(x));
    OPENSSL_cleanse(t, sizeof(t));
    return e;
}

/* Q * qinv = 1 mod P, qinv in [1, P). */
static int ct_is_inverse(const BIGNUM *P, const BIGNUM *Q, const BIGNUM *qinv,
                         BN_CTX *ctx)
{
    BIGNUM *t;
    int ok;

    BN_CTX_start(ctx);
    t = BN_CTX_get(ctx);
    if (t != NULL)
        BN_set_flags(t, BN_FLG_CONSTTIME);
    ok = t != NULL && !BN_is_negative(qinv) && !BN_is_zero(qinv) &&
         BN_cmp(qinv, P) < 0 && BN_mod_mul(t, Q, qinv, P, ctx) && BN_is_one(t);
    BN_clear(t);
    BN_CTX_end(ctx);
    return ok;
}

/* qinv: Q^-1 mod P, or NULL to compute it here. */
static hk_err ct_crt_make(const BIGNUM *P, const BIGNUM *Q, const BIGNUM *qinv,
                          hk_ct_crt **out)
{
    hk_ct_crt *c = NULL;
    BN_CTX *ctx = NULL;
    BIGNUM *inv = NULL;
    limb t[HK_CT_LIMBS];
    hk_err e;

    if (P == NULL || Q == NULL || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if (BN_cmp(P, Q) <= 0 || !BN_is_odd(Q))
        return HK_ERR_ARG;
    e = HK_ERR_NOMEM;
    if ((c = OPENSSL_secure_zalloc(sizeof(*c))) == NULL ||
        (ctx = BN_CTX_secure_new()) == NULL || (inv = BN_secure_new()) == NULL)
        goto done;
    e = HK_ERR_ARG;
    if (qinv != NULL && !ct_is_inverse(P, Q, qinv, ctx))
        goto done;
    if ((e = hk_ct_mod_new(P, &c->p)) != HK_OK)
        goto done;
    c->nq = ((size_t)BN_num_bits(Q) + 31) / 32;
    BN_set_flags(inv, BN_FLG_CONSTTIME);
    e = HK_ERR_CRYPTO;
    if (!ct_load(c->q, Q, c->nq) ||
        (qinv != NULL ? BN_copy(inv, qinv) : BN_mod_inverse(inv, Q, P, ctx)) ==
            NULL ||
        !ct_load(t, inv, c->p->n))
        goto done;
    ct_mont_mul(c->p, c->qinv, t, c->p->rr); /* to Montgomery form */
    *out = c;
    c = NULL;
    e = HK_OK;
done:
    OPENSSL_cleanse(t, sizeof(t));
    hk_ct_crt_free(c);
    BN_clear_free(inv);
    BN_CTX_free(ctx);
    return e;
}

hk_err hk_ct_crt_new(const BIGNUM *P, const BIGNUM *Q, hk_ct_crt **out)
{
    return ct_crt_make(P, Q, NULL, out);
}

hk_err hk_ct_crt_new_inv(const BIGNUM *P, const BIGNUM *Q, const BIGNUM *qinv,
                         hk_ct_crt **out)
{
    if (qinv == NULL)
        return HK_ERR_ARG;
    return ct_crt_make(P, Q, qinv, out);
}

void hk_ct_crt_free(hk_ct_crt *c)
{
    if (c == NULL)
        return;
    hk_ct_mod_free(c->p);
    OPENSSL_secure_clear_free(c, sizeof(*c));
}

hk_err hk_ct_crt_combine(const hk_ct_crt *c, const BIGNUM *xp, const BIGNUM *xq,
                         BIGNUM *x)
{
    limb a[HK_CT_LIMBS], b[HK_CT_LIMBS], r[2 * HK_CT_LIMBS + 1];
    size_t n, i;
    limb carry;
    hk_err e = HK_ERR_ARG;

    if (c == NULL || xp == NULL || xq == NULL || x == NULL)
        return HK_ERR_ARG;
    n = c->p->n;
    /* xq < Q < P, so it is already reduced mod P */
    if (!ct_load(a, xp, n) || !ct_load(b, xq, n) ||
        !(ct_lt(a, c->p->m, n) & ct_lt(b, c->p->m, n)))
        goto done;
    ct_mod_sub(c->p, a, a, b);                   /* xp - xq mod P */
    ct_mont_mul(c->p, a, a, c->qinv);            /* h = (xp - xq) Q^-1 mod P */
    ct_mul(r, c->q, c->nq, a, n);                /* Q h */
    carry = ct_add_masked(r, r, b, (limb)-1, n); /* + xq */
    for (i = n; i < c->nq + n; i++) {
        dlimb t = (dlimb)r[i] + carry;

        r[i] = (limb)t;
        carry = (limb)(t >> 32);
    }
    e = ct_store(x, r, c->nq + n) ? HK_OK : HK_ERR_NOMEM;
done:
    OPENSSL_cleanse(a, sizeof(a));
    OPENSSL_cleanse(b, sizeof(b));
    OPENSSL_cleanse(r, sizeof(r));
    return e;
}
