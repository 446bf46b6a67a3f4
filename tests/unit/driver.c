/* In-process protocol driver (see driver.h). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "tests/unit/driver.h"

double hk_drive_cpu_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

double hk_drive_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int hk_drive_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

double hk_drive_pct(double *v, int n, double p)
{
    int i;

    qsort(v, (size_t)n, sizeof(double), hk_drive_cmp);
    i = (int)(p * n + 0.999999) - 1;
    if (i < 0)
        i = 0;
    if (i >= n)
        i = n - 1;
    return v[i];
}

void hk_drive_ids(unsigned char *sid, unsigned char *kid)
{
    if (RAND_bytes(sid, HK_ID_LEN) != 1 || RAND_bytes(kid, HK_ID_LEN) != 1)
        abort();
}

typedef hk_err (*hk_step_fn)(void *ctx, const unsigned char *in, size_t inlen,
                             unsigned char **out, size_t *outlen);

/* Delivers msg to a party, accounting time and size. Takes ownership of
 * *msg and replaces it with the reply. */
static hk_err hk_drive_step(hk_step_fn fn, void *ctx, int party,
                            unsigned char **msg, size_t *len, int critical,
                            hk_drive_stats *st)
{
    unsigned char *out = NULL;
    size_t outlen = 0;
    double t0, w0;
    hk_err e;

    if (st->nmsgs < HK_DRIVE_MAX_MSGS)
        st->bytes[st->nmsgs++] = *len;
    w0 = hk_drive_wall_ms();
    t0 = hk_drive_cpu_ms();
    e = fn(ctx, *msg, *len, &out, &outlen);
    t0 = hk_drive_cpu_ms() - t0;
    if (critical)
        st->critical_wall_ms += hk_drive_wall_ms() - w0;
    if (party == 1)
        st->p1_ms += t0;
    else
        st->p2_ms += t0;
    if (critical)
        st->critical_ms += t0;
    OPENSSL_free(*msg);
    *msg = out;
    *len = outlen;
    return e;
}

static hk_err hk_kg_recv_fn(void *ctx, const unsigned char *in, size_t inlen,
                            unsigned char **out, size_t *outlen)
{
    return hk_keygen_recv(ctx, in, inlen, out, outlen);
}

static hk_err hk_sg_recv_fn(void *ctx, const unsigned char *in, size_t inlen,
                            unsigned char **out, size_t *outlen)
{
    return hk_sign_recv(ctx, in, inlen, out, outlen);
}

static hk_err hk_rf_recv_fn(void *ctx, const unsigned char *in, size_t inlen,
                            unsigned char **out, size_t *outlen)
{
    return hk_refresh_recv(ctx, in, inlen, out, outlen);
}

hk_err hk_drive_keygen(hk_curve_id curve, int pbits, const hk_rped_secret *rs,
                       hk_share **s1, hk_share **s2, hk_drive_stats *st)
{
    return hk_drive_keygen_with(curve, pbits, rs, NULL, s1, s2, st);
}

hk_err hk_drive_keygen_with(hk_curve_id curve, int pbits,
                            const hk_rped_secret *rs, hk_paillier_sk **p1key,
                            hk_share **s1, hk_share **s2, hk_drive_stats *st)
{
    unsigned char sid[HK_ID_LEN], kid[HK_ID_LEN], *msg = NULL;
    hk_keygen *a = NULL, *b = NULL;
    size_t len = 0;
    double t0, w0;
    hk_err e;
    int i;

    memset(st, 0, sizeof(*st));
    hk_drive_ids(sid, kid);
    if ((e = hk_keygen_p1_new(curve, sid, kid, pbits, &rs->pub, &a)) != HK_OK ||
        (e = hk_keygen_p2_new(curve, sid, kid, 2048, rs, &b)) != HK_OK ||
        (p1key != NULL && (e = hk_keygen_p1_use_paillier(a, p1key)) != HK_OK))
        goto done;
    w0 = hk_drive_wall_ms();
    t0 = hk_drive_cpu_ms();
    e = hk_keygen_start(a, &msg, &len);
    st->p1_ms = st->critical_ms = hk_drive_cpu_ms() - t0;
    st->critical_wall_ms = hk_drive_wall_ms() - w0;
    for (i = 0; e == HK_OK && i < 4; i++)
        e = hk_drive_step(hk_kg_recv_fn, i % 2 ? (void *)a : (void *)b,
                          i % 2 ? 1 : 2, &msg, &len, 1, st);
    if (e != HK_OK)
        goto done;
    if (!hk_keygen_done(a) || !hk_keygen_done(b)) {
        e = HK_ERR_STATE;
        goto done;
    }
    /* keygen.5: P1 (having stored its share) proves it holds x1 */
    t0 = hk_drive_cpu_ms();
    e = hk_keygen_confirm(a, &msg, &len);
    st->p1_ms += hk_drive_cpu_ms() - t0;
    if (e == HK_OK)
        e = hk_drive_step(hk_kg_recv_fn, b, 2, &msg, &len, 0, st);
    if (e == HK_OK && !hk_keygen_confirmed(b))
        e = HK_ERR_STATE;
    if (e != HK_OK)
        goto done;
    if ((e = hk_keygen_take_share(a, s1)) == HK_OK &&
        (e = hk_keygen_take_share(b, s2)) != HK_OK)
        hk_share_free(*s1);
done:
    OPENSSL_free(msg);
    hk_keygen_free(a);
    hk_keygen_free(b);
    return e;
}

/* P1's start and then nmsgs messages between the two (all but the last,
 * P2's audit copy sign.5, on the client's path); both must end with the
 * same signature. */
static hk_err hk_drive_sign_msgs(hk_sign *a, hk_sign *b, int nmsgs,
                                 unsigned char sig[HK_SIG_LEN],
                                 hk_drive_stats *st)
{
    unsigned char *msg = NULL, other[HK_SIG_LEN];
    size_t len = 0;
    double t0, w0;
    hk_err e;
    int i;

    w0 = hk_drive_wall_ms();
    t0 = hk_drive_cpu_ms();
    e = hk_sign_start(a, &msg, &len);
    st->p1_ms = st->critical_ms = hk_drive_cpu_ms() - t0;
    st->critical_wall_ms = hk_drive_wall_ms() - w0;
    for (i = 0; e == HK_OK && i < nmsgs; i++)
        e = hk_drive_step(hk_sg_recv_fn, i % 2 ? (void *)a : (void *)b,
                          i % 2 ? 1 : 2, &msg, &len, i < nmsgs - 1, st);
    if (e == HK_OK && (e = hk_sign_signature(a, sig)) == HK_OK &&
        (e = hk_sign_signature(b, other)) == HK_OK &&
        memcmp(other, sig, HK_SIG_LEN) != 0)
        e = HK_ERR_SIG_ABORT;
    OPENSSL_free(msg);
    return e;
}

hk_err hk_drive_sign(const hk_share *s1, const hk_share *s2,
                     const unsigned char *dig, size_t dlen, int precompute,
                     unsigned char sig[HK_SIG_LEN], hk_drive_stats *st)
{
    unsigned char sid[HK_ID_LEN], kid[HK_ID_LEN];
    hk_sign *a = NULL, *b = NULL;
    double t0;
    hk_err e;

    memset(st, 0, sizeof(*st));
    hk_drive_ids(sid, kid);
    if ((e = hk_sign_p1_new(s1, sid, dig, dlen, &a)) != HK_OK ||
        (e = hk_sign_p2_new(s2, sid, &b)) != HK_OK)
        goto done;
    if (precompute) {
        t0 = hk_drive_cpu_ms();
        e = hk_sign_p2_precompute(b);
        st->offline_ms = hk_drive_cpu_ms() - t0;
        if (e != HK_OK)
            goto done;
    }
    /* sign.1..sign.4 are on the client's path; sign.5 is P2's audit. */
    e = hk_drive_sign_msgs(a, b, 5, sig, st);
done:
    hk_sign_free(a);
    hk_sign_free(b);
    return e;
}

hk_err hk_drive_refresh(const hk_share *s1, const hk_share *s2, int pbits,
                        const hk_rped_secret *rs, hk_share **n1, hk_share **n2,
                        hk_drive_stats *st)
{
    return hk_drive_refresh_with(s1, s2, pbits, rs, NULL, n1, n2, st);
}

hk_err hk_drive_refresh_with(const hk_share *s1, const hk_share *s2, int pbits,
                             const hk_rped_secret *rs, hk_paillier_sk **p1key,
                             hk_share **n1, hk_share **n2, hk_drive_stats *st)
{
    unsigned char sid[HK_ID_LEN], kid[HK_ID_LEN], *msg = NULL;
    hk_refresh *a = NULL, *b = NULL;
    size_t len = 0;
    double t0, w0;
    hk_err e;
    int i;

    memset(st, 0, sizeof(*st));
    hk_drive_ids(sid, kid);
    *n1 = *n2 = NULL;
    if ((e = hk_refresh_p1_new(s1, sid, pbits, &rs->pub, &a)) != HK_OK ||
        (e = hk_refresh_p2_new(s2, sid, 2048, rs, &b)) != HK_OK ||
        (p1key != NULL && (e = hk_refresh_p1_use_paillier(a, p1key)) != HK_OK))
        goto done;
    w0 = hk_drive_wall_ms();
    t0 = hk_drive_cpu_ms();
    e = hk_refresh_start(a, &msg, &len);
    st->p1_ms = st->critical_ms = hk_drive_cpu_ms() - t0;
    st->critical_wall_ms = hk_drive_wall_ms() - w0;
    for (i = 0; e == HK_OK && i < 4; i++)
        e = hk_drive_step(hk_rf_recv_fn, i % 2 ? (void *)a : (void *)b,
                          i % 2 ? 1 : 2, &msg, &len, 1, st);
    if (e != HK_OK || (e = hk_refresh_take_share(a, n1)) != HK_OK ||
        (e = hk_refresh_take_share(b, n2)) != HK_OK)
        goto done;
    t0 = hk_drive_cpu_ms();
    e = hk_refresh_confirm(a, &msg, &len);
    st->p1_ms += hk_drive_cpu_ms() - t0;
    if (e == HK_OK)
        e = hk_drive_step(hk_rf_recv_fn, b, 2, &msg, &len, 0, st);
    if (e == HK_OK && !hk_refresh_confirmed(b))
        e = HK_ERR_STATE;
done:
    if (e != HK_OK) {
        hk_share_free(*n1);
        hk_share_free(*n2);
        *n1 = *n2 = NULL;
    }
    OPENSSL_free(msg);
    hk_refresh_free(a);
    hk_refresh_free(b);
    return e;
}

static hk_err hk_pg_recv_fn(void *ctx, const unsigned char *in, size_t inlen,
                            unsigned char **out, size_t *outlen)
{
    return hk_psgen_recv(ctx, in, inlen, out, outlen);
}

hk_err hk_drive_presign(const hk_share *s1, const hk_share *s2, size_t n,
                        hk_presig *p1, hk_presig *p2, hk_drive_stats *st)
{
    unsigned char sid[HK_ID_LEN], kid[HK_ID_LEN], *msg = NULL;
    hk_psgen *a = NULL, *b = NULL;
    size_t len = 0, i;
    double t0;
    hk_err e;

    memset(st, 0, sizeof(*st));
    hk_drive_ids(sid, kid);
    if ((e = hk_psgen_p1_new(s1, sid, n, &a)) != HK_OK ||
        (e = hk_psgen_p2_new(s2, sid, HK_PRESIG_BATCH_MAX, &b)) != HK_OK)
        goto done;
    t0 = hk_drive_cpu_ms();
    e = hk_psgen_start(a, &msg, &len);
    st->p1_ms = st->critical_ms = hk_drive_cpu_ms() - t0;
    /* a client that makes a batch waits for all of it (pre.3 stored) */
    for (i = 0; e == HK_OK && i < 3; i++)
        e = hk_drive_step(hk_pg_recv_fn, i % 2 ? (void *)a : (void *)b,
                          i % 2 ? 1 : 2, &msg, &len, 1, st);
    if (e == HK_OK && (!hk_psgen_done(a) || !hk_psgen_done(b)))
        e = HK_ERR_STATE;
    for (i = 0; e == HK_OK && i < n; i++)
        if ((e = hk_psgen_get(a, i, &p1[i])) == HK_OK)
            e = hk_psgen_get(b, i, &p2[i]);
done:
    OPENSSL_free(msg);
    hk_psgen_free(a);
    hk_psgen_free(b);
    return e;
}

hk_err hk_drive_sign_presigned(const hk_share *s1, const hk_share *s2,
                               const hk_presig *p1, const hk_presig *p2,
                               const unsigned char *dig, size_t dlen,
                               unsigned char sig[HK_SIG_LEN],
                               hk_drive_stats *st)
{
    hk_sign *a = NULL, *b = NULL;
    double t0;
    hk_err e;

    memset(st, 0, sizeof(*st));
    if ((e = hk_sign_p1_presigned(s1, p1, dig, dlen, &a)) != HK_OK ||
        (e = hk_sign_p2_presigned(s2, p2, &b)) != HK_OK)
        goto done;
    t0 = hk_drive_cpu_ms();
    e = hk_sign_p2_precompute(b);
    st->offline_ms = hk_drive_cpu_ms() - t0;
    if (e != HK_OK)
        goto done;
    /* sign.1p, sign.4 on the client's path; sign.5 is P2's audit */
    e = hk_drive_sign_msgs(a, b, 3, sig, st);
done:
    hk_sign_free(a);
    hk_sign_free(b);
    return e;
}
