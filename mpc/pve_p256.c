/* Constant-time P-256 point chains for the PVE's ECIES encryptor (see
 * mpc/pve_p256.h): field arithmetic mod p in Montgomery form on four
 * 64-bit limbs, Jacobian mixed addition, batch normalisation. */
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>

#include "mpc/pve_p256.h"

__extension__ typedef unsigned __int128 u128;
typedef uint64_t fe[4]; /* little-endian limbs, Montgomery form (x * 2^256) */

/* p = 2^256 - 2^224 + 2^192 + 2^96 - 1; -p^-1 mod 2^64 = 1 */
static const fe fe_p = {0xffffffffffffffffULL, 0x00000000ffffffffULL,
                        0x0000000000000000ULL, 0xffffffff00000001ULL};
/* 2^512 mod p (to Montgomery form) and 2^256 mod p (one) */
static const fe fe_rr = {0x0000000000000003ULL, 0xfffffffbffffffffULL,
                         0xfffffffffffffffeULL, 0x00000004fffffffdULL};
static const fe fe_one = {0x0000000000000001ULL, 0xffffffff00000000ULL,
                          0xffffffffffffffffULL, 0x00000000fffffffeULL};

/* r = a - b over 4 limbs; the borrow (0 or 1). */
static uint64_t fe_sub_raw(fe r, const fe a, const fe b)
{
    uint64_t borrow = 0;
    int i;

    for (i = 0; i < 4; i++) {
        u128 t = (u128)a[i] - b[i] - borrow;

        r[i] = (uint64_t)t;
        borrow = (uint64_t)(t >> 127);
    }
    return borrow;
}

/* r = mask ? a : b (mask all ones or zero). */
static void fe_select(fe r, const fe a, const fe b, uint64_t mask)
{
    int i;

    for (i = 0; i < 4; i++)
        r[i] = (a[i] & mask) | (b[i] & ~mask);
}

/* r = a * b / 2^256 mod p for a, b < p (CIOS Montgomery multiplication). */
static void fe_mul(fe r, const fe a, const fe b)
{
    uint64_t t[6], d[4], borrow, m;
    u128 c;
    int i, j;

    memset(t, 0, sizeof(t));
    for (i = 0; i < 4; i++) {
        c = 0;
        for (j = 0; j < 4; j++) {
            c = (u128)a[j] * b[i] + t[j] + (uint64_t)(c >> 64);
            t[j] = (uint64_t)c;
        }
        c = (u128)t[4] + (uint64_t)(c >> 64);
        t[4] = (uint64_t)c;
        t[5] = (uint64_t)(c >> 64);
        m = t[0]; /* t[0] * (-p^-1 mod 2^64) */
        c = (u128)m * fe_p[0] + t[0];
        for (j = 1; j < 4; j++) {
            c = (u128)m * fe_p[j] + t[j] + (uint64_t)(c >> 64);
            t[j - 1] = (uint64_t)c;
        }
        c = (u128)t[4] + (uint64_t)(c >> 64);
        t[3] = (uint64_t)c;
        t[4] = t[5] + (uint64_t)(c >> 64);
    }
    /* t (5 limbs) < 2p: keep t - p unless it borrows */
    borrow = fe_sub_raw(d, t, fe_p);
    borrow = (uint64_t)(((u128)t[4] - borrow) >> 127);
    fe_select(r, t, d, (uint64_t)0 - borrow);
}

static void fe_sqr(fe r, const fe a) { fe_mul(r, a, a); }

/* r = a + b mod p. */
static void fe_add(fe r, const fe a, const fe b)
{
    uint64_t s[4], d[4], carry = 0, borrow;
    int i;

    for (i = 0; i < 4; i++) {
        u128 t = (u128)a[i] + b[i] + carry;

        s[i] = (uint64_t)t;
        carry = (uint64_t)(t >> 64);
    }
    borrow = fe_sub_raw(d, s, fe_p);
    /* a + b >= p iff the sum carried out or s - p did not borrow */
    fe_select(r, d, s, (uint64_t)0 - (carry | (borrow ^ 1)));
}

/* r = a - b mod p. */
static void fe_sub(fe r, const fe a, const fe b)
{
    uint64_t mask = (uint64_t)0 - fe_sub_raw(r, a, b), carry = 0;
    int i;

    for (i = 0; i < 4; i++) {
        u128 t = (u128)r[i] + (fe_p[i] & mask) + carry;

        r[i] = (uint64_t)t;
        carry = (uint64_t)(t >> 64);
    }
}

/* r = a^(p-2) = a^-1 (0 for 0): square and multiply over the public
 * exponent. */
static void fe_inv(fe r, const fe a)
{
    static const fe pm2 = {0xfffffffffffffffdULL, 0x00000000ffffffffULL,
                           0x0000000000000000ULL, 0xffffffff00000001ULL};
    fe acc;
    int i;

    memcpy(acc, fe_one, sizeof(fe));
    for (i = 255; i >= 0; i--) {
        fe_sqr(acc, acc);
        if ((pm2[i / 64] >> (i % 64)) & 1)
            fe_mul(acc, acc, a);
    }
    memcpy(r, acc, sizeof(fe));
    OPENSSL_cleanse(acc, sizeof(acc));
}

/* 1 if a == 0 (constant time). */
static uint64_t fe_is_zero(const fe a)
{
    uint64_t z = a[0] | a[1] | a[2] | a[3];

    return 1 ^ ((z | ((uint64_t)0 - z)) >> 63);
}

/* 32 big-endian bytes (a value < p) to Montgomery form, and back. */
static void fe_from_be(fe r, const unsigned char *in)
{
    fe t;
    int i, k;

    for (i = 0; i < 4; i++) {
        t[i] = 0;
        for (k = 0; k < 8; k++)
            t[i] = (t[i] << 8) | in[(3 - i) * 8 + k];
    }
    fe_mul(r, t, fe_rr);
    OPENSSL_cleanse(t, sizeof(t));
}

static void fe_to_be(unsigned char *out, const fe a)
{
    static const fe one = {1, 0, 0, 0};
    fe t;
    int i, k;

    fe_mul(t, a, one);
    for (i = 0; i < 4; i++)
        for (k = 0; k < 8; k++)
            out[(3 - i) * 8 + k] = (unsigned char)(t[i] >> (56 - 8 * k));
    OPENSSL_cleanse(t, sizeof(t));
}

typedef struct {
    fe x, y, z;
} jac;

/* r = p + (qx, qy) (madd-2007-bl: 7M + 4S). Wrong, and z = 0, when
 * p = +-q (excluded by the caller, mpc/pve_p256.h). r may alias p. */
static void jac_madd(jac *r, const jac *p, const fe qx, const fe qy)
{
    fe z1z1, u2, s2, h, hh, i4, j, rr, v, t;

    fe_sqr(z1z1, p->z);
    fe_mul(u2, qx, z1z1);
    fe_mul(s2, qy, p->z);
    fe_mul(s2, s2, z1z1);
    fe_sub(h, u2, p->x);
    fe_sqr(hh, h);
    fe_add(i4, hh, hh);
    fe_add(i4, i4, i4);
    fe_mul(j, h, i4);
    fe_sub(rr, s2, p->y);
    fe_add(rr, rr, rr);
    fe_mul(v, p->x, i4);
    /* z3 = (z1 + h)^2 - z1z1 - hh */
    fe_add(t, p->z, h);
    fe_sqr(t, t);
    fe_sub(t, t, z1z1);
    fe_sub(r->z, t, hh);
    /* y3 = rr * (v - x3) - 2 * y1 * j, with x3 = rr^2 - j - 2v */
    fe_mul(t, p->y, j);
    fe_add(t, t, t);
    fe_sqr(r->x, rr);
    fe_sub(r->x, r->x, j);
    fe_sub(r->x, r->x, v);
    fe_sub(r->x, r->x, v);
    fe_sub(v, v, r->x);
    fe_mul(r->y, rr, v);
    fe_sub(r->y, r->y, t);
    OPENSSL_cleanse(z1z1, sizeof(z1z1));
    OPENSSL_cleanse(u2, sizeof(u2));
    OPENSSL_cleanse(s2, sizeof(s2));
    OPENSSL_cleanse(h, sizeof(h));
    OPENSSL_cleanse(hh, sizeof(hh));
    OPENSSL_cleanse(i4, sizeof(i4));
    OPENSSL_cleanse(j, sizeof(j));
    OPENSSL_cleanse(rr, sizeof(rr));
    OPENSSL_cleanse(v, sizeof(v));
    OPENSSL_cleanse(t, sizeof(t));
}

hk_err hk_p256_chains(unsigned m, unsigned n, const unsigned char *base,
                      const unsigned char *step, unsigned char *x,
                      unsigned char *ypar)
{
    jac pt[HK_P256_CHAIN_MAX];
    fe pre[HK_P256_CHAIN_MAX], dx, dy, inv, zi, zi2, t;
    unsigned char yb[32];
    unsigned c, j, k, cnt = m * n;
    hk_err e = HK_ERR_POINT;

    if (m == 0 || n == 0 || m > HK_P256_CHAIN_MAX || cnt > HK_P256_CHAIN_MAX ||
        base == NULL || step == NULL || x == NULL || ypar == NULL)
        return HK_ERR_ARG;
    for (c = 0; c < m; c++) {
        jac *row = pt + c * n;

        fe_from_be(row[0].x, base + 64 * c);
        fe_from_be(row[0].y, base + 64 * c + 32);
        memcpy(row[0].z, fe_one, sizeof(fe));
        fe_from_be(dx, step + 64 * c);
        fe_from_be(dy, step + 64 * c + 32);
        for (j = 1; j < n; j++)
            jac_madd(&row[j], &row[j - 1], dx, dy);
    }
    /* Montgomery's trick: one inversion of the product of every z */
    memcpy(pre[0], pt[0].z, sizeof(fe));
    for (k = 1; k < cnt; k++)
        fe_mul(pre[k], pre[k - 1], pt[k].z);
    if (fe_is_zero(pre[cnt - 1])) /* only in the excluded case */
        goto done;
    fe_inv(inv, pre[cnt - 1]);
    for (k = cnt; k-- > 0;) {
        if (k > 0) {
            fe_mul(zi, inv, pre[k - 1]);
            fe_mul(inv, inv, pt[k].z);
        } else {
            memcpy(zi, inv, sizeof(fe));
        }
        /* x = X / z^2, y = Y / z^3 */
        fe_sqr(zi2, zi);
        fe_mul(t, pt[k].x, zi2);
        fe_to_be(x + 32 * k, t);
        fe_mul(zi2, zi2, zi);
        fe_mul(t, pt[k].y, zi2);
        fe_to_be(yb, t);
        ypar[k] = (unsigned char)(yb[31] & 1);
    }
    e = HK_OK;
done:
    if (e != HK_OK) {
        OPENSSL_cleanse(x, 32 * (size_t)cnt);
        OPENSSL_cleanse(ypar, cnt);
    }
    OPENSSL_cleanse(pt, sizeof(pt));
    OPENSSL_cleanse(pre, sizeof(pre));
    OPENSSL_cleanse(dx, sizeof(dx));
    OPENSSL_cleanse(dy, sizeof(dy));
    OPENSSL_cleanse(inv, sizeof(inv));
    OPENSSL_cleanse(zi, sizeof(zi));
    OPENSSL_cleanse(zi2, sizeof(zi2));
    OPENSSL_cleanse(t, sizeof(t));
    OPENSSL_cleanse(yb, sizeof(yb));
    return e;
}
