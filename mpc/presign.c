/* Presignature generation (presign.h): the batched nonce exchange of
 * Lindell 2017 protocol 4.3 steps 1-3, and the stored record. */
#include <string.h>

#include <openssl/crypto.h>

#include "common/libctx.h"
#include "mpc/presign.h"
#include "mpc/proto_impl.h"

enum { PG_INIT, PG_WAIT2, PG_WAIT3, PG_DONE };

#define HK_PRESIG_REC_VERSION 1

/* One presignature in the making: own nonce share and proof, the peer's
 * point, P1's commitment nonce (P2: the commitment received). */
typedef struct {
    unsigned char id[HK_ID_LEN];
    hk_scalar k; /* SECRET */
    hk_point R1, R2;
    hk_schnorr pi; /* own proof (P1 until pre.3 opens it) */
    unsigned char nonce[HK_NONCE_LEN];
    unsigned char com[HK_HASH_LEN];
} hk_ps_item;

struct hk_psgen {
    hk_role role;
    int state;
    hk_curve *c;
    hk_binding b; /* the generation session */
    const hk_share *share;
    unsigned char fp[HK_HASH_LEN];
    size_t n, max;
    hk_ps_item *it; /* n items */
};

static const char *const hk_ps_lbl_k1 = "presign/schnorr-k1";
static const char *const hk_ps_lbl_k2 = "presign/schnorr-k2";
static const char *const hk_ps_lbl_com = "presign/commit-R1";
static const char *const hk_ps_lbl_id = "presign/id";

/* Presignature i's id: H(generation binding, i), the first HK_ID_LEN
 * bytes; and the binding its proofs and commitment use. */
static hk_err hk_ps_id(const hk_psgen *g, size_t i, unsigned char *id)
{
    unsigned char ib[4] = {(unsigned char)(i >> 24), (unsigned char)(i >> 16),
                           (unsigned char)(i >> 8), (unsigned char)i};
    hk_ts t;
    hk_err e;

    if ((e = hk_ts_init(&t, hk_ps_lbl_id, &g->b, HK_ROLE_P1)) != HK_OK)
        return e;
    if ((e = hk_ts_add(&t, "i", ib, sizeof(ib))) != HK_OK) {
        hk_ts_free(&t);
        return e;
    }
    return hk_ts_final(&t, id, HK_ID_LEN);
}

static void hk_ps_binding(const hk_psgen *g, size_t i, hk_binding *b)
{
    hk_binding_set(b, g->share->curve, g->it[i].id, g->share->kid);
}

/* The commitment to (R1, proof) of item i: as a sign's (sign.c), bound to
 * the presignature's id. */
static hk_err hk_ps_commit(const hk_psgen *g, size_t i, const hk_point *R1,
                           const hk_schnorr *pi, const unsigned char *nonce,
                           unsigned char out[HK_HASH_LEN])
{
    hk_point pts[2] = {*R1, pi->a};
    hk_binding b;

    hk_ps_binding(g, i, &b);
    return hk_commit_points(&b, HK_ROLE_P1, hk_ps_lbl_com, pts, 2, pi->z.b,
                            HK_SCALAR_LEN, nonce, out);
}

static hk_err hk_ps_alloc(hk_psgen *g, size_t n)
{
    size_t i;
    hk_err e;

    if ((g->it = OPENSSL_secure_zalloc(n * sizeof(*g->it))) == NULL)
        return HK_ERR_NOMEM;
    g->n = n;
    for (i = 0; i < n; i++)
        if ((e = hk_ps_id(g, i, g->it[i].id)) != HK_OK)
            return e;
    return HK_OK;
}

static hk_err hk_psgen_new(hk_role role, const hk_share *share,
                           const unsigned char *sid, hk_psgen **out)
{
    hk_psgen *g;
    hk_err e;

    if (share == NULL || sid == NULL || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if (share->role != role || (role == HK_ROLE_P1 && share->sk == NULL))
        return HK_ERR_SHARE;
    if ((g = OPENSSL_zalloc(sizeof(*g))) == NULL)
        return HK_ERR_NOMEM;
    g->role = role;
    g->share = share;
    hk_binding_set(&g->b, share->curve, sid, share->kid);
    if ((e = hk_curve_new(share->curve, &g->c)) != HK_OK ||
        (e = hk_share_fingerprint(share, g->fp)) != HK_OK) {
        hk_psgen_free(g);
        return e;
    }
    *out = g;
    return HK_OK;
}

hk_err hk_psgen_p1_new(const hk_share *share, const unsigned char *sid,
                       size_t n, hk_psgen **out)
{
    hk_err e;

    if (n < 1 || n > HK_PRESIG_BATCH_MAX)
        return HK_ERR_ARG;
    if ((e = hk_psgen_new(HK_ROLE_P1, share, sid, out)) != HK_OK)
        return e;
    if ((e = hk_ps_alloc(*out, n)) != HK_OK) {
        hk_psgen_free(*out);
        *out = NULL;
    }
    return e;
}

hk_err hk_psgen_p2_new(const hk_share *share, const unsigned char *sid,
                       size_t max, hk_psgen **out)
{
    hk_err e;

    if (max < 1 || max > HK_PRESIG_BATCH_MAX)
        return HK_ERR_ARG;
    if ((e = hk_psgen_new(HK_ROLE_P2, share, sid, out)) == HK_OK)
        (*out)->max = max;
    return e;
}

void hk_psgen_free(hk_psgen *g)
{
    if (g == NULL)
        return;
    if (g->it != NULL)
        OPENSSL_secure_clear_free(g->it, g->n * sizeof(*g->it));
    hk_curve_free(g->c);
    OPENSSL_clear_free(g, sizeof(*g));
}

int hk_psgen_done(const hk_psgen *g)
{
    return g != NULL && g->state == PG_DONE;
}

size_t hk_psgen_count(const hk_psgen *g) { return g != NULL ? g->n : 0; }

hk_err hk_psgen_get(const hk_psgen *g, size_t i, hk_presig *out)
{
    if (g == NULL || out == NULL || i >= g->n)
        return HK_ERR_ARG;
    if (g->state != PG_DONE)
        return HK_ERR_STATE;
    memcpy(out->id, g->it[i].id, HK_ID_LEN);
    memcpy(out->kid, g->share->kid, HK_ID_LEN);
    out->curve = g->share->curve;
    out->epoch = g->share->epoch;
    out->k = g->it[i].k;
    out->R1 = g->it[i].R1;
    out->R2 = g->it[i].R2;
    return HK_OK;
}

/* A nonce share, its point and a Schnorr proof bound to item i's id. */
static hk_err hk_ps_nonce(hk_psgen *g, size_t i, const char *label, hk_point *R)
{
    hk_ps_item *it = &g->it[i];
    hk_binding b;
    hk_err e;

    hk_ps_binding(g, i, &b);
    if ((e = hk_scalar_random(g->c, &it->k)) != HK_OK ||
        (e = hk_point_mul_gen(g->c, &it->k, R)) != HK_OK)
        return e;
    return hk_schnorr_prove(g->c, &b, g->role, label, &it->k, R, &it->pi);
}

/* n scalars as one byte string of n * 32 bytes. */
static hk_err hk_ps_put_scalars(hk_msg *m, const char *key, const hk_psgen *g,
                                int which)
{
    unsigned char *buf;
    size_t i;
    hk_err e;

    if ((buf = OPENSSL_malloc(g->n * HK_SCALAR_LEN)) == NULL)
        return HK_ERR_NOMEM;
    for (i = 0; i < g->n; i++)
        memcpy(buf + i * HK_SCALAR_LEN,
               which ? g->it[i].nonce : g->it[i].pi.z.b, HK_SCALAR_LEN);
    e = hk_msg_put_bytes(m, key, buf, g->n * HK_SCALAR_LEN);
    OPENSSL_free(buf);
    return e;
}

static hk_err hk_ps_put_points(hk_msg *m, const char *key, const hk_psgen *g,
                               int which)
{
    hk_point *p;
    size_t i;
    hk_err e;

    if ((p = OPENSSL_malloc(g->n * sizeof(*p))) == NULL)
        return HK_ERR_NOMEM;
    for (i = 0; i < g->n; i++)
        p[i] = which == 0   ? g->it[i].R1
               : which == 1 ? g->it[i].R2
                            : g->it[i].pi.a;
    e = hk_msg_put_points(m, key, p, g->n);
    OPENSSL_free(p);
    return e;
}

/* Step 1 (P1): n nonce shares k1_i, R1_i, proofs, commitments. */
hk_err hk_psgen_start(hk_psgen *g, unsigned char **out, size_t *outlen)
{
    unsigned char *com = NULL;
    hk_msg *m = NULL;
    size_t i;
    hk_err e;

    if (g == NULL || out == NULL || outlen == NULL)
        return HK_ERR_ARG;
    if (g->role != HK_ROLE_P1 || g->state != PG_INIT)
        return HK_ERR_STATE;
    if ((com = OPENSSL_malloc(g->n * HK_HASH_LEN)) == NULL)
        return HK_ERR_NOMEM;
    for (i = 0; i < g->n; i++) {
        hk_ps_item *it = &g->it[i];

        if ((e = hk_ps_nonce(g, i, hk_ps_lbl_k1, &it->R1)) != HK_OK)
            goto done;
        if (!hk_rand_priv_bytes(it->nonce, HK_NONCE_LEN)) {
            e = HK_ERR_RAND;
            goto done;
        }
        if ((e = hk_ps_commit(g, i, &it->R1, &it->pi, it->nonce,
                              com + i * HK_HASH_LEN)) != HK_OK)
            goto done;
    }
    if ((e = hk_msg_new("pre.1", g->b.sid, g->b.kid, &m)) != HK_OK)
        goto done;
    if ((e = hk_put_share_ref(m, g->share, g->fp)) != HK_OK ||
        (e = hk_msg_put_u32(m, "n", g->n)) != HK_OK ||
        (e = hk_msg_put_bytes(m, "com", com, g->n * HK_HASH_LEN)) != HK_OK) {
        hk_msg_free(m);
        goto done;
    }
    if ((e = hk_msg_out(m, out, outlen)) == HK_OK)
        g->state = PG_WAIT2;
done:
    OPENSSL_free(com);
    return e;
}

/* Step 2 (P2): k2_i, R2_i, proofs. */
static hk_err hk_ps_p2_msg1(hk_psgen *g, hk_msg *in, unsigned char **out,
                            size_t *outlen)
{
    unsigned char com[HK_PRESIG_BATCH_MAX * HK_HASH_LEN];
    unsigned long n = 0;
    size_t clen = 0, i;
    hk_msg *m = NULL;
    hk_err e;

    if ((e = hk_check_share_ref(in, g->share, g->fp)) != HK_OK ||
        (e = hk_msg_get_u32(in, "n", &n)) != HK_OK ||
        (e = hk_msg_get_var(in, "com", com, sizeof(com), &clen)) != HK_OK ||
        (e = hk_msg_finish(in)) != HK_OK)
        return e;
    if (n < 1 || clen != n * HK_HASH_LEN)
        return HK_ERR_DECODE;
    if (n > g->max)
        return HK_ERR_FORBIDDEN;
    if ((e = hk_ps_alloc(g, n)) != HK_OK)
        goto fail;
    for (i = 0; i < g->n; i++) {
        memcpy(g->it[i].com, com + i * HK_HASH_LEN, HK_HASH_LEN);
        if ((e = hk_ps_nonce(g, i, hk_ps_lbl_k2, &g->it[i].R2)) != HK_OK)
            goto fail;
    }
    if ((e = hk_msg_new("pre.2", g->b.sid, g->b.kid, &m)) != HK_OK)
        goto fail;
    if ((e = hk_ps_put_points(m, "R2", g, 1)) != HK_OK ||
        (e = hk_ps_put_points(m, "pa", g, 2)) != HK_OK ||
        (e = hk_ps_put_scalars(m, "pz", g, 0)) != HK_OK) {
        hk_msg_free(m);
        goto fail;
    }
    if ((e = hk_msg_out(m, out, outlen)) != HK_OK)
        goto fail;
    g->state = PG_WAIT3;
    return HK_OK;
fail: /* as it was: no batch */
    OPENSSL_secure_clear_free(g->it, g->n * sizeof(*g->it));
    g->it = NULL;
    g->n = 0;
    return e;
}

/* Reads n points and n proofs (points `pa`, scalars `pz`). */
static hk_err hk_ps_get_proofs(hk_psgen *g, hk_msg *in, const char *key,
                               hk_point *X, hk_schnorr *pi)
{
    unsigned char z[HK_PRESIG_BATCH_MAX * HK_SCALAR_LEN];
    hk_point a[HK_PRESIG_BATCH_MAX];
    size_t i;
    hk_err e;

    if ((e = hk_msg_get_points(in, g->c, key, X, g->n)) != HK_OK ||
        (e = hk_msg_get_points(in, g->c, "pa", a, g->n)) != HK_OK ||
        (e = hk_msg_get_bytes(in, "pz", z, g->n * HK_SCALAR_LEN)) != HK_OK)
        return e;
    for (i = 0; i < g->n; i++) {
        pi[i].a = a[i];
        if ((e = hk_scalar_parse(g->c, z + i * HK_SCALAR_LEN, HK_SCALAR_LEN,
                                 &pi[i].z)) != HK_OK)
            return e;
    }
    return HK_OK;
}

/* Step 3 (P1): verifies P2's proofs, opens the commitments. */
static hk_err hk_ps_p1_msg2(hk_psgen *g, hk_msg *in, unsigned char **out,
                            size_t *outlen)
{
    hk_point R2[HK_PRESIG_BATCH_MAX];
    hk_schnorr pi[HK_PRESIG_BATCH_MAX];
    hk_binding b;
    hk_msg *m = NULL;
    size_t i;
    hk_err e;

    if ((e = hk_ps_get_proofs(g, in, "R2", R2, pi)) != HK_OK ||
        (e = hk_msg_finish(in)) != HK_OK)
        return e;
    for (i = 0; i < g->n; i++) {
        hk_ps_binding(g, i, &b);
        if ((e = hk_schnorr_verify(g->c, &b, HK_ROLE_P2, hk_ps_lbl_k2, &R2[i],
                                   &pi[i])) != HK_OK)
            return e;
    }
    if ((e = hk_msg_new("pre.3", g->b.sid, g->b.kid, &m)) != HK_OK)
        return e;
    if ((e = hk_ps_put_points(m, "R1", g, 0)) != HK_OK ||
        (e = hk_ps_put_points(m, "pa", g, 2)) != HK_OK ||
        (e = hk_ps_put_scalars(m, "pz", g, 0)) != HK_OK ||
        (e = hk_ps_put_scalars(m, "nonce", g, 1)) != HK_OK) {
        hk_msg_free(m);
        return e;
    }
    if ((e = hk_msg_out(m, out, outlen)) != HK_OK)
        return e;
    for (i = 0; i < g->n; i++)
        g->it[i].R2 = R2[i];
    g->state = PG_DONE;
    return HK_OK;
}

/* Step 4 (P2): checks every opening and proof; all or nothing. */
static hk_err hk_ps_p2_msg3(hk_psgen *g, hk_msg *in)
{
    unsigned char nonce[HK_PRESIG_BATCH_MAX * HK_NONCE_LEN], com[HK_HASH_LEN];
    hk_point R1[HK_PRESIG_BATCH_MAX];
    hk_schnorr pi[HK_PRESIG_BATCH_MAX];
    hk_binding b;
    size_t i;
    hk_err e;

    if ((e = hk_ps_get_proofs(g, in, "R1", R1, pi)) != HK_OK ||
        (e = hk_msg_get_bytes(in, "nonce", nonce, g->n * HK_NONCE_LEN)) !=
            HK_OK ||
        (e = hk_msg_finish(in)) != HK_OK)
        return e;
    for (i = 0; i < g->n; i++) {
        if ((e = hk_ps_commit(g, i, &R1[i], &pi[i], nonce + i * HK_NONCE_LEN,
                              com)) != HK_OK)
            return e;
        if (CRYPTO_memcmp(com, g->it[i].com, HK_HASH_LEN) != 0)
            return HK_ERR_COMMIT;
        hk_ps_binding(g, i, &b);
        if ((e = hk_schnorr_verify(g->c, &b, HK_ROLE_P1, hk_ps_lbl_k1, &R1[i],
                                   &pi[i])) != HK_OK)
            return e;
    }
    for (i = 0; i < g->n; i++)
        g->it[i].R1 = R1[i];
    g->state = PG_DONE;
    return HK_OK;
}

hk_err hk_psgen_recv(hk_psgen *g, const unsigned char *in, size_t inlen,
                     unsigned char **out, size_t *outlen)
{
    static const char *const expect[] = {"pre.1", "pre.2", "pre.3"};
    hk_msg *m = NULL;
    hk_err e;

    if (g == NULL || in == NULL || out == NULL || outlen == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    *outlen = 0;
    if (g->state == PG_DONE ||
        (g->role == HK_ROLE_P1) != (g->state == PG_WAIT2))
        return HK_ERR_STATE;
    if ((e = hk_msg_parse(in, inlen, HK_MSG_MAX, expect[g->state], g->b.sid,
                          g->b.kid, &m)) != HK_OK)
        return e;
    if (g->state == PG_INIT)
        e = hk_ps_p2_msg1(g, m, out, outlen);
    else if (g->state == PG_WAIT2)
        e = hk_ps_p1_msg2(g, m, out, outlen);
    else
        e = hk_ps_p2_msg3(g, m);
    hk_msg_free(m);
    return e;
}

/* --- the record ----------------------------------------------------------- */

static void hk_put_be32(unsigned char *p, unsigned long v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

hk_err hk_presig_encode(const hk_presig *p,
                        unsigned char out[HK_PRESIG_REC_LEN])
{
    unsigned char *o = out;

    if (p == NULL || out == NULL || p->epoch < 1 || p->epoch > 0xffffffffUL)
        return HK_ERR_ARG;
    *o++ = HK_PRESIG_REC_VERSION;
    *o++ = (unsigned char)p->curve;
    hk_put_be32(o, p->epoch);
    o += 4;
    memcpy(o, p->id, HK_ID_LEN);
    o += HK_ID_LEN;
    memcpy(o, p->kid, HK_ID_LEN);
    o += HK_ID_LEN;
    memcpy(o, p->k.b, HK_SCALAR_LEN);
    o += HK_SCALAR_LEN;
    memcpy(o, p->R1.b, HK_POINT_LEN);
    o += HK_POINT_LEN;
    memcpy(o, p->R2.b, HK_POINT_LEN);
    return HK_OK;
}

hk_err hk_presig_decode(const unsigned char *in, size_t len, hk_presig *out)
{
    const unsigned char *p = in;
    hk_curve *c = NULL;
    hk_presig ps;
    hk_err e;

    if (in == NULL || out == NULL)
        return HK_ERR_ARG;
    if (len != HK_PRESIG_REC_LEN || p[0] != HK_PRESIG_REC_VERSION ||
        (p[1] != HK_CURVE_SECP256K1 && p[1] != HK_CURVE_P256))
        return HK_ERR_DECODE;
    memset(&ps, 0, sizeof(ps));
    ps.curve = (hk_curve_id)p[1];
    ps.epoch = ((unsigned long)p[2] << 24) | ((unsigned long)p[3] << 16) |
               ((unsigned long)p[4] << 8) | p[5];
    p += 6;
    memcpy(ps.id, p, HK_ID_LEN);
    p += HK_ID_LEN;
    memcpy(ps.kid, p, HK_ID_LEN);
    p += HK_ID_LEN;
    if (ps.epoch < 1 || (e = hk_curve_new(ps.curve, &c)) != HK_OK) {
        e = HK_ERR_DECODE;
        goto done;
    }
    if (hk_scalar_parse(c, p, HK_SCALAR_LEN, &ps.k) != HK_OK ||
        hk_point_parse(c, p + HK_SCALAR_LEN, HK_POINT_LEN, &ps.R1) != HK_OK ||
        hk_point_parse(c, p + HK_SCALAR_LEN + HK_POINT_LEN, HK_POINT_LEN,
                       &ps.R2) != HK_OK) {
        e = HK_ERR_DECODE;
        goto done;
    }
    *out = ps;
    e = HK_OK;
done:
    OPENSSL_cleanse(&ps, sizeof(ps));
    hk_curve_free(c);
    return e;
}
