/* Setup records. */
#include <string.h>

#include <openssl/crypto.h>

#include "mpc/codec.h"
#include "mpc/setup.h"

#define HK_RPED_W (HK_RPED_BITS / 8)

hk_err hk_setup_encode(const hk_rped_secret *sec, unsigned char **out,
                       size_t *len)
{
    hk_prm_proof pf;
    hk_msg *m = NULL;
    hk_err e;

    if (sec == NULL || out == NULL || len == NULL)
        return HK_ERR_ARG;
    if ((e = hk_prm_prove(sec, &pf)) != HK_OK)
        return e;
    if ((e = hk_msg_new("setup", NULL, NULL, &m)) != HK_OK)
        goto done;
    if ((e = hk_msg_put_bn(m, "N", sec->pub.n, HK_RPED_W)) != HK_OK ||
        (e = hk_msg_put_bn(m, "ped_s", sec->pub.s, HK_RPED_W)) != HK_OK ||
        (e = hk_msg_put_bn(m, "ped_t", sec->pub.t, HK_RPED_W)) != HK_OK ||
        (e = hk_msg_put_bn_array(m, "A", pf.a, HK_PRM_ROUNDS, HK_RPED_W)) !=
            HK_OK ||
        (e = hk_msg_put_bn_array(m, "z", pf.z, HK_PRM_ROUNDS, HK_RPED_W)) !=
            HK_OK)
        goto done;
    e = hk_msg_encode(m, out, len);
done:
    hk_msg_free(m);
    hk_prm_proof_free(&pf);
    return e;
}

hk_err hk_setup_decode(const unsigned char *in, size_t len, hk_rped **out)
{
    BIGNUM *n = NULL, *s = NULL, *t = NULL;
    hk_prm_proof pf;
    hk_rped *rp = NULL;
    hk_msg *m = NULL;
    hk_err e;

    if (in == NULL || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    memset(&pf, 0, sizeof(pf));
    if ((e = hk_msg_parse(in, len, HK_RECORD_MAX, "setup", NULL, NULL, &m)) !=
        HK_OK)
        return e;
    if ((e = hk_msg_get_bn(m, "N", HK_RPED_W, &n)) != HK_OK ||
        (e = hk_msg_get_bn(m, "ped_s", HK_RPED_W, &s)) != HK_OK ||
        (e = hk_msg_get_bn(m, "ped_t", HK_RPED_W, &t)) != HK_OK ||
        (e = hk_msg_get_bn_array(m, "A", pf.a, HK_PRM_ROUNDS, HK_RPED_W)) !=
            HK_OK ||
        (e = hk_msg_get_bn_array(m, "z", pf.z, HK_PRM_ROUNDS, HK_RPED_W)) !=
            HK_OK ||
        (e = hk_msg_finish(m)) != HK_OK ||
        (e = hk_rped_new(n, s, t, &rp)) != HK_OK ||
        (e = hk_prm_verify(rp, &pf)) != HK_OK)
        goto done;
    *out = rp;
    rp = NULL;
done:
    hk_rped_free(rp);
    hk_prm_proof_free(&pf);
    hk_msg_free(m);
    BN_free(n);
    BN_free(s);
    BN_free(t);
    return e;
}

hk_err hk_setup_secret_encode(const hk_rped_secret *sec, unsigned char **out,
                              size_t *len)
{
    hk_msg *m = NULL;
    hk_err e;

    if (sec == NULL || out == NULL || len == NULL)
        return HK_ERR_ARG;
    if ((e = hk_msg_new("setup-secret", NULL, NULL, &m)) != HK_OK)
        return e;
    if ((e = hk_msg_put_bn(m, "p", sec->p, HK_RPED_W / 2)) == HK_OK &&
        (e = hk_msg_put_bn(m, "q", sec->q, HK_RPED_W / 2)) == HK_OK &&
        (e = hk_msg_put_bn(m, "ped_t", sec->pub.t, HK_RPED_W)) == HK_OK &&
        (e = hk_msg_put_bn(m, "lambda", sec->lambda, HK_RPED_W)) == HK_OK)
        e = hk_msg_encode(m, out, len);
    hk_msg_free(m);
    return e;
}

hk_err hk_setup_secret_decode(const unsigned char *in, size_t len,
                              hk_rped_secret **out)
{
    BIGNUM *p = NULL, *q = NULL, *t = NULL, *lambda = NULL;
    hk_msg *m = NULL;
    hk_err e;

    if (in == NULL || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if ((e = hk_msg_parse(in, len, HK_RECORD_MAX, "setup-secret", NULL, NULL,
                          &m)) != HK_OK)
        return e;
    if ((e = hk_msg_get_bn(m, "p", HK_RPED_W / 2, &p)) == HK_OK &&
        (e = hk_msg_get_bn(m, "q", HK_RPED_W / 2, &q)) == HK_OK &&
        (e = hk_msg_get_bn(m, "ped_t", HK_RPED_W, &t)) == HK_OK &&
        (e = hk_msg_get_bn(m, "lambda", HK_RPED_W, &lambda)) == HK_OK &&
        (e = hk_msg_finish(m)) == HK_OK)
        e = hk_rped_secret_from(p, q, t, lambda, out);
    hk_msg_free(m);
    BN_clear_free(p);
    BN_clear_free(q);
    BN_free(t);
    BN_clear_free(lambda);
    return e;
}
