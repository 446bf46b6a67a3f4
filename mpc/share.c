/* Key share records.
 *
 * Secrets stay out of jansson. A record is compact JSON with sorted keys,
 * and the secret fields (x, and P1's Paillier primes p and q) are hex
 * strings in it like the rest; but jansson never holds them: jansson
 * frees its strings without wiping them, and its allocator is process
 * global (json_set_alloc_funcs), so a wiping allocator would change it
 * for a whole host process (a browser loading the PKCS#11 module) and
 * could free blocks that another library allocated with the old one. So
 * the encoder gives jansson zeros of the right length and writes the
 * secret hex into the output buffer afterwards (hk_share_splice), and the
 * decoder lifts the secret hex out of a copy of the input (wiping it
 * there) before jansson parses the copy (hk_share_lift). The format is
 * unchanged: records of earlier versions load, and decode then encode is
 * byte-identical. The caller's buffers hold the secrets, as before. */
#include <string.h>

#include <openssl/crypto.h>

#include "mpc/codec.h"
#include "mpc/share.h"

void hk_share_free(hk_share *s)
{
    if (s == NULL)
        return;
    BN_free(s->ckey);
    hk_paillier_fb_free(s->ckey_fb);
    hk_paillier_pk_free(s->pk);
    hk_paillier_sk_free(s->sk);
    OPENSSL_clear_free(s, sizeof(*s));
}

const hk_point *hk_share_pubkey(const hk_share *s) { return &s->Q; }

hk_err hk_share_fingerprint(const hk_share *s, unsigned char out[HK_HASH_LEN])
{
    unsigned char ep[4];
    hk_binding b;
    hk_ts t;
    hk_err e;

    if (s == NULL || out == NULL)
        return HK_ERR_ARG;
    memset(&b, 0, sizeof(b));
    b.curve = s->curve;
    memcpy(b.kid, s->kid, HK_ID_LEN);
    ep[0] = (unsigned char)(s->epoch >> 24);
    ep[1] = (unsigned char)(s->epoch >> 16);
    ep[2] = (unsigned char)(s->epoch >> 8);
    ep[3] = (unsigned char)s->epoch;
    if ((e = hk_ts_init(&t, "share-fingerprint", &b, HK_ROLE_P1)) != HK_OK)
        return e;
    if ((e = hk_ts_add(&t, "epoch", ep, 4)) != HK_OK ||
        (e = hk_ts_add_point(&t, "Q", &s->Q)) != HK_OK ||
        (e = hk_ts_add_point(&t, "Q1", &s->Q1)) != HK_OK ||
        (e = hk_ts_add_point(&t, "Q2", &s->Q2)) != HK_OK ||
        (e = hk_ts_add_bn(&t, "N", hk_paillier_n(s->pk))) != HK_OK ||
        (e = hk_ts_add_bn(&t, "ckey", s->ckey)) != HK_OK) {
        hk_ts_free(&t);
        return e;
    }
    return hk_ts_final(&t, out, HK_HASH_LEN);
}

#define HK_SHARE_SECRET_MAX 512 /* bytes of one secret field: p of 4096 */

/* The position of the value of `key` ("key":" then hex then ") in the
 * record, which must hold it exactly once; *hexlen its length. NULL if
 * absent, repeated or unterminated. Hex strings contain no quote, so the
 * pattern cannot occur inside another value. */
static unsigned char *hk_share_find(unsigned char *rec, size_t len,
                                    const char *key, size_t *hexlen)
{
    char pat[16];
    size_t pl = (size_t)snprintf(pat, sizeof(pat), "\"%s\":\"", key), i;
    unsigned char *at = NULL, *end;

    for (i = 0; i + pl <= len; i++)
        if (memcmp(rec + i, pat, pl) == 0) {
            if (at != NULL)
                return NULL;
            at = rec + i + pl;
        }
    if (at == NULL || (end = memchr(at, '"', len - (size_t)(at - rec))) == NULL)
        return NULL;
    *hexlen = (size_t)(end - at);
    return at;
}

/* Writes the hex of v (vlen bytes) over the zeros the encoder put as the
 * value of `key`. */
static hk_err hk_share_splice(unsigned char *rec, size_t len, const char *key,
                              const unsigned char *v, size_t vlen)
{
    char hex[2 * HK_SHARE_SECRET_MAX + 1];
    unsigned char *at;
    size_t hl;

    if (vlen > HK_SHARE_SECRET_MAX ||
        (at = hk_share_find(rec, len, key, &hl)) == NULL || hl != 2 * vlen)
        return HK_ERR_STATE;
    hk_hex(v, vlen, hex);
    memcpy(at, hex, hl);
    OPENSSL_cleanse(hex, sizeof(hex));
    return HK_OK;
}

/* Decodes the hex value of `key` into out (at most max bytes, *n of them)
 * and overwrites it in rec with zeros of the same length. */
static hk_err hk_share_lift(unsigned char *rec, size_t len, const char *key,
                            unsigned char *out, size_t max, size_t *n)
{
    unsigned char *at;
    size_t hl;

    if ((at = hk_share_find(rec, len, key, &hl)) == NULL || hl % 2 != 0 ||
        hl == 0 || hl / 2 > max || !hk_unhex((const char *)at, hl, out, hl / 2))
        return HK_ERR_DECODE;
    memset(at, '0', hl);
    *n = hl / 2;
    return HK_OK;
}

/* The secret fields, lifted out of (or to be spliced into) a record. */
typedef struct {
    unsigned char x[HK_SCALAR_LEN];
    unsigned char p[HK_SHARE_SECRET_MAX], q[HK_SHARE_SECRET_MAX];
    size_t xn, pn, qn;
} hk_share_secrets;

static hk_err hk_share_put(const hk_share *s, hk_msg *m)
{
    static const unsigned char zero[HK_SHARE_SECRET_MAX];
    size_t nb = hk_width(hk_paillier_bits(s->pk));
    hk_err e;

    if ((e = hk_msg_put_u32(m, "role", s->role)) != HK_OK ||
        (e = hk_msg_put_str(m, "curve", hk_curve_name(s->curve))) != HK_OK ||
        (e = hk_msg_put_u32(m, "epoch", s->epoch)) != HK_OK ||
        (e = hk_msg_put_u32(m, "pbits",
                            (unsigned long)hk_paillier_bits(s->pk))) != HK_OK ||
        (e = hk_msg_put_bytes(m, "x", zero, HK_SCALAR_LEN)) != HK_OK ||
        (e = hk_msg_put_point(m, "Q", &s->Q)) != HK_OK ||
        (e = hk_msg_put_point(m, "Q1", &s->Q1)) != HK_OK ||
        (e = hk_msg_put_point(m, "Q2", &s->Q2)) != HK_OK ||
        (e = hk_msg_put_bn(m, "N", hk_paillier_n(s->pk), nb)) != HK_OK ||
        (e = hk_msg_put_bn(m, "ckey", s->ckey, 2 * nb)) != HK_OK ||
        (e = hk_msg_put_bytes(m, "setup", s->rped_fp, HK_HASH_LEN)) != HK_OK)
        return e;
    if (nb / 2 > HK_SHARE_SECRET_MAX)
        return HK_ERR_ARG;
    if (s->role == HK_ROLE_P1 &&
        ((e = hk_msg_put_bytes(m, "p", zero, nb / 2)) != HK_OK ||
         (e = hk_msg_put_bytes(m, "q", zero, nb / 2)) != HK_OK))
        return e;
    return HK_OK;
}

/* The secret fields of s into the encoded record. */
static hk_err hk_share_splice_all(const hk_share *s, unsigned char *rec,
                                  size_t len)
{
    size_t half = hk_width(hk_paillier_bits(s->pk)) / 2;
    hk_share_secrets *sec = OPENSSL_secure_zalloc(sizeof(*sec));
    hk_err e = HK_ERR_NOMEM;

    if (sec == NULL)
        return e;
    if ((e = hk_share_splice(rec, len, "x", s->x.b, HK_SCALAR_LEN)) != HK_OK)
        goto done;
    if (s->role == HK_ROLE_P1) {
        e = HK_ERR_CRYPTO;
        if (BN_bn2binpad(hk_paillier_sk_p(s->sk), sec->p, (int)half) !=
                (int)half ||
            BN_bn2binpad(hk_paillier_sk_q(s->sk), sec->q, (int)half) !=
                (int)half)
            goto done;
        if ((e = hk_share_splice(rec, len, "p", sec->p, half)) != HK_OK ||
            (e = hk_share_splice(rec, len, "q", sec->q, half)) != HK_OK)
            goto done;
    }
    e = HK_OK;
done:
    OPENSSL_secure_clear_free(sec, sizeof(*sec));
    return e;
}

hk_err hk_share_encode(const hk_share *s, unsigned char **out, size_t *len)
{
    hk_msg *m = NULL;
    hk_err e;

    if (s == NULL || out == NULL || len == NULL || s->pk == NULL ||
        (s->role == HK_ROLE_P1 && s->sk == NULL))
        return HK_ERR_ARG;
    if ((e = hk_msg_new("share", NULL, s->kid, &m)) != HK_OK)
        return e;
    if ((e = hk_share_put(s, m)) == HK_OK &&
        (e = hk_msg_encode(m, out, len)) == HK_OK &&
        (e = hk_share_splice_all(s, *out, *len)) != HK_OK) {
        OPENSSL_clear_free(*out, *len);
        *out = NULL;
    }
    hk_msg_free(m);
    return e;
}

/* Reads role, curve, epoch and pbits. */
static hk_err hk_share_get_header(hk_msg *m, hk_share *s, int *pbits)
{
    char cname[16];
    unsigned long role, bits;
    hk_err e;

    if ((e = hk_msg_get_u32(m, "role", &role)) != HK_OK ||
        (e = hk_msg_get_str(m, "curve", cname, sizeof(cname))) != HK_OK ||
        (e = hk_msg_get_u32(m, "epoch", &s->epoch)) != HK_OK ||
        (e = hk_msg_get_u32(m, "pbits", &bits)) != HK_OK)
        return e;
    if ((role != HK_ROLE_P1 && role != HK_ROLE_P2) ||
        hk_curve_from_name(cname, &s->curve) != HK_OK || s->epoch == 0 ||
        !hk_paillier_bits_ok((int)bits))
        return HK_ERR_SHARE;
    s->role = (hk_role)role;
    *pbits = (int)bits;
    return HK_OK;
}

/* Q_own == x*G and Q == x * Q_other. */
static hk_err hk_share_check_points(hk_curve *c, const hk_share *s)
{
    const hk_point *own = s->role == HK_ROLE_P1 ? &s->Q1 : &s->Q2;
    const hk_point *other = s->role == HK_ROLE_P1 ? &s->Q2 : &s->Q1;
    hk_point t;

    if (hk_point_mul_gen(c, &s->x, &t) != HK_OK || !hk_point_eq(&t, own) ||
        hk_point_mul(c, other, &s->x, &t) != HK_OK || !hk_point_eq(&t, &s->Q))
        return HK_ERR_SHARE;
    return HK_OK;
}

/* P1 holds the Paillier key, so it checks ckey = Enc_N(x1) itself: below
 * N^2 and decrypting to x1. Modulo p suffices (x1 < 2^256 < p, and
 * hk_paillier_dec_small refuses a residue of 2^256 or more): half a
 * decryption, on a record this party wrote under its own seal. */
static hk_err hk_share_check_ckey(const hk_share *s)
{
    unsigned char b[HK_SCALAR_LEN];
    BIGNUM *d;
    hk_err e;

    if (hk_paillier_ct_range(s->pk, s->ckey) != HK_OK)
        return HK_ERR_SHARE;
    if ((d = BN_secure_new()) == NULL)
        return HK_ERR_NOMEM;
    if ((e = hk_paillier_dec_small(s->sk, s->ckey, 8 * HK_SCALAR_LEN, d)) ==
        HK_OK)
        e = BN_bn2binpad(d, b, HK_SCALAR_LEN) == HK_SCALAR_LEN &&
                    CRYPTO_memcmp(b, s->x.b, HK_SCALAR_LEN) == 0
                ? HK_OK
                : HK_ERR_SHARE;
    else if (e == HK_ERR_PAILLIER)
        e = HK_ERR_SHARE;
    OPENSSL_cleanse(b, sizeof(b));
    BN_clear_free(d);
    return e;
}

/* P1: the key pair from its primes, which must give the record's N; the
 * public half is the key pair's own (no receiver's checks on a modulus
 * whose factors are known). */
static hk_err hk_share_p1_paillier(hk_msg *m, hk_share *s, int pbits,
                                   const BIGNUM *n, const hk_share_secrets *sec,
                                   int sealed)
{
    unsigned char zero[HK_SHARE_SECRET_MAX];
    size_t nb = hk_width(pbits);
    BIGNUM *p = NULL, *q = NULL;
    hk_err e;

    /* jansson holds zeros where p and q were (hk_share_decode) */
    if (nb / 2 > sizeof(zero) || sec->pn != nb / 2 || sec->qn != nb / 2)
        return HK_ERR_DECODE;
    if ((e = hk_msg_get_bytes(m, "p", zero, nb / 2)) != HK_OK ||
        (e = hk_msg_get_bytes(m, "q", zero, nb / 2)) != HK_OK)
        return e;
    e = HK_ERR_NOMEM;
    if ((p = BN_secure_new()) == NULL || (q = BN_secure_new()) == NULL ||
        BN_bin2bn(sec->p, (int)sec->pn, p) == NULL ||
        BN_bin2bn(sec->q, (int)sec->qn, q) == NULL)
        goto done;
    e = HK_ERR_SHARE;
    if (hk_paillier_sk_from_primes(p, q, pbits, &s->sk) != HK_OK ||
        BN_cmp(hk_paillier_n(hk_paillier_sk_pk(s->sk)), n) != 0 ||
        hk_paillier_sk_pk_copy(s->sk, &s->pk) != HK_OK)
        goto done;
    /* a sealed record's ckey is the one this party made and checked */
    e = sealed ? hk_paillier_ct_range(s->pk, s->ckey) : hk_share_check_ckey(s);
    if (e == HK_ERR_PAILLIER)
        e = HK_ERR_SHARE;
done:
    BN_clear_free(p);
    BN_clear_free(q);
    return e;
}

/* N and ckey; P2 (which cannot check them against a factorisation) makes
 * the receiver's checks on them and P1 decrypts ckey, unless the record
 * is `sealed`: this party's own, sealed when it was stored, its N and
 * ckey checked when they were received or made (keygen, refresh). */
static hk_err hk_share_get_paillier(hk_msg *m, hk_share *s, int pbits,
                                    const hk_share_secrets *sec, int sealed)
{
    size_t nb = hk_width(pbits);
    BIGNUM *n = NULL;
    hk_err e;

    if ((e = hk_msg_get_bn(m, "N", nb, &n)) != HK_OK ||
        (e = hk_msg_get_bn(m, "ckey", 2 * nb, &s->ckey)) != HK_OK)
        goto done;
    if (s->role == HK_ROLE_P1) {
        e = hk_share_p1_paillier(m, s, pbits, n, sec, sealed);
        goto done;
    }
    e = HK_ERR_SHARE;
    if (sealed ? hk_paillier_pk_stored(n, pbits, &s->pk) == HK_OK &&
                     hk_paillier_ct_range(s->pk, s->ckey) == HK_OK
               : hk_paillier_pk_new(n, pbits, &s->pk) == HK_OK &&
                     hk_paillier_ct_check(s->pk, s->ckey) == HK_OK)
        e = HK_OK;
done:
    BN_free(n);
    return e;
}

/* Copies the record into secure memory and lifts its secret fields out
 * of the copy (see the top of the file). */
static hk_err hk_share_unsplice(const unsigned char *in, size_t len,
                                unsigned char **copy, hk_share_secrets *sec)
{
    hk_err e;

    if (len > HK_RECORD_MAX)
        return HK_ERR_DECODE;
    if ((*copy = OPENSSL_secure_malloc(len == 0 ? 1 : len)) == NULL)
        return HK_ERR_NOMEM;
    memcpy(*copy, in, len);
    if ((e = hk_share_lift(*copy, len, "x", sec->x, sizeof(sec->x),
                           &sec->xn)) != HK_OK)
        return e;
    if (sec->xn != HK_SCALAR_LEN)
        return HK_ERR_DECODE;
    /* p and q only in a P1 record; whether they must be there is checked
     * once the role is known */
    if (hk_share_lift(*copy, len, "p", sec->p, sizeof(sec->p), &sec->pn) !=
        HK_OK)
        sec->pn = 0;
    if (hk_share_lift(*copy, len, "q", sec->q, sizeof(sec->q), &sec->qn) !=
        HK_OK)
        sec->qn = 0;
    return HK_OK;
}

static hk_err hk_share_decode_in(const unsigned char *in, size_t len,
                                 int sealed, hk_share **out)
{
    unsigned char zero[HK_SCALAR_LEN], *copy = NULL;
    hk_share_secrets *sec = NULL;
    hk_share *s = NULL;
    hk_curve *c = NULL;
    hk_msg *m = NULL;
    int pbits = 0;
    hk_err e;

    if (in == NULL || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if ((sec = OPENSSL_secure_zalloc(sizeof(*sec))) == NULL)
        return HK_ERR_NOMEM;
    if ((e = hk_share_unsplice(in, len, &copy, sec)) != HK_OK ||
        (e = hk_msg_parse(copy, len, HK_RECORD_MAX, "share", NULL, NULL, &m)) !=
            HK_OK)
        goto done;
    e = HK_ERR_NOMEM;
    if ((s = OPENSSL_zalloc(sizeof(*s))) == NULL)
        goto done;
    if ((e = hk_msg_get_bytes(m, "kid", s->kid, HK_ID_LEN)) != HK_OK ||
        (e = hk_share_get_header(m, s, &pbits)) != HK_OK ||
        (e = hk_curve_new(s->curve, &c)) != HK_OK ||
        (e = hk_msg_get_bytes(m, "x", zero, HK_SCALAR_LEN)) != HK_OK ||
        (e = hk_scalar_parse(c, sec->x, HK_SCALAR_LEN, &s->x)) != HK_OK ||
        (e = hk_msg_get_point(m, c, "Q", &s->Q)) != HK_OK ||
        (e = hk_msg_get_point(m, c, "Q1", &s->Q1)) != HK_OK ||
        (e = hk_msg_get_point(m, c, "Q2", &s->Q2)) != HK_OK ||
        (e = hk_msg_get_bytes(m, "setup", s->rped_fp, HK_HASH_LEN)) != HK_OK ||
        (e = hk_share_get_paillier(m, s, pbits, sec, sealed)) != HK_OK ||
        (e = hk_msg_finish(m)) != HK_OK ||
        (e = hk_share_check_points(c, s)) != HK_OK)
        goto done;
    *out = s;
    s = NULL;
done:
    if (e == HK_ERR_POINT || e == HK_ERR_SCALAR || e == HK_ERR_CURVE)
        e = HK_ERR_SHARE;
    hk_share_free(s);
    hk_curve_free(c);
    hk_msg_free(m);
    if (copy != NULL)
        OPENSSL_secure_clear_free(copy, len == 0 ? 1 : len);
    OPENSSL_secure_clear_free(sec, sizeof(*sec));
    return e;
}

hk_err hk_share_decode(const unsigned char *in, size_t len, hk_share **out)
{
    return hk_share_decode_in(in, len, 0, out);
}

hk_err hk_share_decode_sealed(const unsigned char *in, size_t len,
                              hk_share **out)
{
    return hk_share_decode_in(in, len, 1, out);
}

/* --- public views (backup and recovery) ---------------------------------- */

hk_err hk_share_public_encode(const hk_share *s, unsigned char **out,
                              size_t *len)
{
    size_t nb;
    hk_msg *m = NULL;
    hk_err e;

    if (s == NULL || out == NULL || len == NULL || s->pk == NULL ||
        s->ckey == NULL)
        return HK_ERR_ARG;
    nb = hk_width(hk_paillier_bits(s->pk));
    if ((e = hk_msg_new("share-public", NULL, s->kid, &m)) != HK_OK)
        return e;
    if ((e = hk_msg_put_str(m, "curve", hk_curve_name(s->curve))) == HK_OK &&
        (e = hk_msg_put_u32(m, "epoch", s->epoch)) == HK_OK &&
        (e = hk_msg_put_u32(m, "pbits",
                            (unsigned long)hk_paillier_bits(s->pk))) == HK_OK &&
        (e = hk_msg_put_point(m, "Q", &s->Q)) == HK_OK &&
        (e = hk_msg_put_point(m, "Q1", &s->Q1)) == HK_OK &&
        (e = hk_msg_put_point(m, "Q2", &s->Q2)) == HK_OK &&
        (e = hk_msg_put_bn(m, "N", hk_paillier_n(s->pk), nb)) == HK_OK &&
        (e = hk_msg_put_bn(m, "ckey", s->ckey, 2 * nb)) == HK_OK &&
        (e = hk_msg_put_bytes(m, "setup", s->rped_fp, HK_HASH_LEN)) == HK_OK)
        e = hk_msg_encode(m, out, len);
    hk_msg_free(m);
    return e;
}

hk_err hk_share_public_decode(const unsigned char *in, size_t len,
                              hk_share **out)
{
    char cname[16];
    unsigned long bits;
    hk_share *s = NULL;
    hk_curve *c = NULL;
    hk_msg *m = NULL;
    BIGNUM *n = NULL;
    hk_err e;

    if (in == NULL || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if ((e = hk_msg_parse(in, len, HK_RECORD_MAX, "share-public", NULL, NULL,
                          &m)) != HK_OK)
        return e;
    e = HK_ERR_NOMEM;
    if ((s = OPENSSL_zalloc(sizeof(*s))) == NULL)
        goto done;
    s->role = HK_ROLE_P1;
    if ((e = hk_msg_get_bytes(m, "kid", s->kid, HK_ID_LEN)) != HK_OK ||
        (e = hk_msg_get_str(m, "curve", cname, sizeof(cname))) != HK_OK ||
        (e = hk_msg_get_u32(m, "epoch", &s->epoch)) != HK_OK ||
        (e = hk_msg_get_u32(m, "pbits", &bits)) != HK_OK)
        goto done;
    e = HK_ERR_SHARE;
    if (hk_curve_from_name(cname, &s->curve) != HK_OK || s->epoch == 0 ||
        !hk_paillier_bits_ok((int)bits))
        goto done;
    if ((e = hk_curve_new(s->curve, &c)) != HK_OK ||
        (e = hk_msg_get_point(m, c, "Q", &s->Q)) != HK_OK ||
        (e = hk_msg_get_point(m, c, "Q1", &s->Q1)) != HK_OK ||
        (e = hk_msg_get_point(m, c, "Q2", &s->Q2)) != HK_OK ||
        (e = hk_msg_get_bn(m, "N", hk_width((int)bits), &n)) != HK_OK ||
        (e = hk_msg_get_bn(m, "ckey", 2 * hk_width((int)bits), &s->ckey)) !=
            HK_OK ||
        (e = hk_msg_get_bytes(m, "setup", s->rped_fp, HK_HASH_LEN)) != HK_OK ||
        (e = hk_msg_finish(m)) != HK_OK)
        goto done;
    e = HK_ERR_SHARE;
    if (hk_paillier_pk_new(n, (int)bits, &s->pk) != HK_OK ||
        hk_paillier_ct_check(s->pk, s->ckey) != HK_OK)
        goto done;
    *out = s;
    s = NULL;
    e = HK_OK;
done:
    if (e == HK_ERR_POINT || e == HK_ERR_SCALAR || e == HK_ERR_CURVE)
        e = HK_ERR_SHARE;
    BN_free(n);
    hk_share_free(s);
    hk_curve_free(c);
    hk_msg_free(m);
    return e;
}

hk_err hk_share_p1_restore(hk_share *view, const hk_scalar *x1)
{
    hk_curve *c = NULL;
    hk_share t;
    hk_err e;

    if (view == NULL || x1 == NULL || view->role != HK_ROLE_P1 ||
        view->sk != NULL)
        return HK_ERR_ARG;
    if ((e = hk_curve_new(view->curve, &c)) != HK_OK)
        return e;
    t = *view;
    t.x = *x1;
    /* x1*G = Q1 and Q = x1*Q2: the same checks as a decoded record */
    e = hk_share_check_points(c, &t) == HK_OK ? HK_OK : HK_ERR_KEY_MISMATCH;
    if (e == HK_OK)
        view->x = *x1;
    OPENSSL_cleanse(&t, sizeof(t));
    hk_curve_free(c);
    return e;
}
