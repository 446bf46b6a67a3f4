/* The key object every operation of the provider works on: a public key
 * (curve and point) and, for a private key, the logged-in token that signs
 * with it. Keys a store loads from one URI share one token handle, and that
 * handle keeps one connection to halfkeyd open between signatures
 * (hk_client_sign keeps it), so a TLS server does not pay a handshake with
 * halfkeyd per signature. */
#include <string.h>

#include <openssl/crypto.h>

#include "ossl-provider/provider.h"

struct hk_prov_token {
    pthread_mutex_t mu; /* refs; one sign at a time (a key's signing
                         * session is exclusive: a second thread would
                         * get HK_ERR_BUSY) */
    int refs;
    hk_client *client; /* open, logged in by the store; its kept-open
                        * connections are per process (hk_client_sign) */
};

hk_err hk_prov_token_open(hk_prov_ctx *pc, const char *dir, hk_prov_token **out,
                          char *why)
{
    hk_prov_token *t;
    hk_err e;

    if ((t = OPENSSL_zalloc(sizeof(*t))) == NULL)
        return HK_ERR_NOMEM;
    if ((e = hk_client_open(dir, &t->client, why)) != HK_OK) {
        OPENSSL_free(t);
        return e;
    }
    pthread_mutex_init(&t->mu, NULL);
    t->refs = 1;
    *out = t;
    return HK_OK;
}

hk_prov_token *hk_prov_token_ref(hk_prov_token *t)
{
    pthread_mutex_lock(&t->mu);
    t->refs++;
    pthread_mutex_unlock(&t->mu);
    return t;
}

void hk_prov_token_free(hk_prov_token *t)
{
    int left;

    if (t == NULL)
        return;
    pthread_mutex_lock(&t->mu);
    left = --t->refs;
    pthread_mutex_unlock(&t->mu);
    if (left > 0)
        return;
    hk_client_close(t->client);
    pthread_mutex_destroy(&t->mu);
    OPENSSL_free(t);
}

hk_ks *hk_prov_token_ks(hk_prov_token *t)
{
    return hk_client_keystore(t->client);
}

/* --- keys ------------------------------------------------------------- */

hk_prov_key *hk_prov_key_new(hk_prov_ctx *pc)
{
    hk_prov_key *k = OPENSSL_zalloc(sizeof(*k));

    if (k != NULL)
        k->pc = pc;
    return k;
}

void hk_prov_key_free(hk_prov_key *k)
{
    if (k == NULL)
        return;
    hk_prov_token_free(k->tok);
    OPENSSL_free(k);
}

hk_prov_key *hk_prov_key_dup(const hk_prov_key *k, int with_private)
{
    hk_prov_key *d = hk_prov_key_new(k->pc);

    if (d == NULL)
        return NULL;
    memcpy(d, k, sizeof(*d));
    d->tok = NULL;
    if (with_private && k->tok != NULL)
        d->tok = hk_prov_token_ref(k->tok);
    return d;
}

const char *hk_prov_group_name(hk_curve_id c)
{
    switch (c) {
    case HK_CURVE_P256:
        return "prime256v1";
    case HK_CURVE_SECP256K1:
        return "secp256k1";
    default:
        return NULL;
    }
}

hk_curve_id hk_prov_group_id(const char *name)
{
    static const struct {
        const char *name;
        hk_curve_id id;
    } names[] = {{"prime256v1", HK_CURVE_P256},
                 {"P-256", HK_CURVE_P256},
                 {"secp256r1", HK_CURVE_P256},
                 {"secp256k1", HK_CURVE_SECP256K1}};
    size_t i;

    for (i = 0; name != NULL && i < sizeof(names) / sizeof(names[0]); i++)
        if (OPENSSL_strcasecmp(name, names[i].name) == 0)
            return names[i].id;
    return (hk_curve_id)0;
}

hk_err hk_prov_key_set_pub(hk_prov_key *k, hk_curve_id curve,
                           const unsigned char *pt, size_t len)
{
    unsigned char full[HK_POINT_UNCOMPRESSED_LEN];
    hk_err e;

    if ((e = hk_ks_pub_uncompressed(curve, pt, len, full)) != HK_OK)
        return e;
    k->curve = curve;
    memcpy(k->pub, full, sizeof(full));
    return HK_OK;
}

hk_prov_key *hk_prov_key_from_info(hk_prov_ctx *pc, const hk_ks_keyinfo *info,
                                   hk_prov_token *tok)
{
    hk_prov_key *k = hk_prov_key_new(pc);

    if (k == NULL)
        return NULL;
    if (hk_prov_key_set_pub(k, info->curve, info->pub.b, HK_POINT_LEN) !=
        HK_OK) {
        hk_prov_key_free(k);
        return NULL;
    }
    snprintf(k->label, sizeof(k->label), "%s", info->label);
    memcpy(k->kid, info->kid, HK_ID_LEN);
    if (tok != NULL)
        k->tok = hk_prov_token_ref(tok);
    return k;
}

int hk_prov_key_spki(const hk_prov_key *k, unsigned char *out, size_t *len)
{
    /* SEQUENCE { SEQUENCE { id-ecPublicKey, namedCurve }, BIT STRING } */
    static const unsigned char p256[] = {
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48,
        0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
        0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};
    static const unsigned char k256[] = {
        0x30, 0x56, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02,
        0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a, 0x03, 0x42, 0x00};
    const unsigned char *pre;
    size_t n;

    if (k->curve == HK_CURVE_P256) {
        pre = p256;
        n = sizeof(p256);
    } else if (k->curve == HK_CURVE_SECP256K1) {
        pre = k256;
        n = sizeof(k256);
    } else {
        return 0;
    }
    memcpy(out, pre, n);
    memcpy(out + n, k->pub, HK_POINT_UNCOMPRESSED_LEN);
    *len = n + HK_POINT_UNCOMPRESSED_LEN;
    return 1;
}

int hk_prov_key_sign(hk_prov_key *k, const unsigned char *dig, size_t dlen,
                     unsigned char sig[HK_SIG_LEN])
{
    char detail[256];
    hk_prov_token *t = k->tok;
    hk_err e;

    if (t == NULL) {
        hk_prov_raise(k->pc, HK_R_PUBLIC_ONLY,
                      "no halfkey private key behind this key (load it "
                      "with type=private)");
        return 0;
    }
    detail[0] = 0;
    pthread_mutex_lock(&t->mu);
    e = hk_client_sign(t->client, k->label, dig, dlen, sig);
    if (e != HK_OK)
        snprintf(detail, sizeof(detail), "%s", hk_client_last_error(t->client));
    pthread_mutex_unlock(&t->mu);
    if (e == HK_OK)
        return 1;
    if (e == HK_ERR_KEY_LOCKED || e == HK_ERR_SIG_ABORT)
        hk_prov_raise(k->pc,
                      e == HK_ERR_KEY_LOCKED ? HK_R_KEY_LOCKED : HK_R_SIG_ABORT,
                      "key '%s': signing refused: an interrupted signature "
                      "is cleared by `halfkey unlock --key %s`, an abort "
                      "only by a new key or `--force` (halfkey(1))",
                      k->label, k->label);
    else
        hk_prov_raise(k->pc, e == HK_ERR_BUSY ? HK_R_BUSY : HK_R_SERVER,
                      "key '%s': %s%s%s", k->label, hk_strerror(e),
                      detail[0] ? ": " : "", detail);
    return 0;
}
