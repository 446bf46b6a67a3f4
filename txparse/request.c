/* Digests and results of signing requests (txparse/request.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "txparse/eth.h"
#include "txparse/psbt.h"
#include "txparse/request.h"
#include "txparse/sig.h"

/* 1 if input in is one the key (pkh = HASH160 of its compressed public
 * key) signs: P2WPKH to that hash, with the sighash computed here. */
static int hk_tx_mine(const hk_psbt_input *in, const unsigned char pkh[20])
{
    return in->p2wpkh && in->has_sighash && memcmp(in->pkh, pkh, 20) == 0;
}

static hk_err hk_tx_psbt_digests(const hk_psbt *ps, const unsigned char pub[33],
                                 unsigned char **digs, size_t *n, char *why,
                                 size_t cap)
{
    unsigned char pkh[20];
    size_t i;
    hk_err e;

    if ((e = hk_psbt_signable(ps, why, cap)) != HK_OK)
        return e;
    hk_hash160(pub, 33, pkh);
    if ((*digs = OPENSSL_malloc(32 * ps->n_in)) == NULL)
        return HK_ERR_NOMEM;
    for (i = 0; i < ps->n_in; i++)
        if (hk_tx_mine(&ps->in[i], pkh))
            memcpy(*digs + 32 * (*n)++, ps->in[i].sighash, 32);
    if (*n > 0)
        return HK_OK;
    snprintf(why, cap,
             "no input of this PSBT spends from the key's P2WPKH "
             "address");
    return HK_ERR_TX_UNSUPPORTED;
}

hk_err hk_tx_request_digests(hk_tx_kind kind, const unsigned char *payload,
                             size_t len, hk_btc_net net,
                             const unsigned char pub[33], unsigned char **digs,
                             size_t *n, size_t *dlen, char *why, size_t cap)
{
    hk_psbt *ps = NULL;
    hk_eth_tx *tx = NULL;
    hk_err e;

    if (payload == NULL || pub == NULL || digs == NULL || n == NULL ||
        dlen == NULL || why == NULL || cap == 0)
        return HK_ERR_ARG;
    *digs = NULL;
    *n = 0;
    *dlen = 32;
    why[0] = 0;
    switch (kind) {
    case HK_TX_DIGEST:
        if (len < HK_TX_DIGEST_MIN || len > HK_TX_DIGEST_MAX) {
            snprintf(why, cap, "a digest has 16 to 64 bytes");
            return HK_ERR_DECODE;
        }
        if ((*digs = OPENSSL_memdup(payload, len)) == NULL)
            return HK_ERR_NOMEM;
        *n = 1;
        *dlen = len;
        return HK_OK;
    case HK_TX_BTC_PSBT:
        if ((e = hk_psbt_parse(payload, len, net, &ps, why, cap)) == HK_OK)
            e = hk_tx_psbt_digests(ps, pub, digs, n, why, cap);
        hk_psbt_free(ps);
        break;
    case HK_TX_ETH:
        if ((e = hk_eth_tx_parse(payload, len, &tx, why, cap)) == HK_OK) {
            e = (*digs = OPENSSL_memdup(tx->digest, 32)) != NULL ? HK_OK
                                                                 : HK_ERR_NOMEM;
            *n = 1;
        }
        hk_eth_tx_free(tx);
        break;
    default:
        return HK_ERR_ARG;
    }
    if (e != HK_OK) {
        OPENSSL_free(*digs);
        *digs = NULL;
        *n = 0;
    }
    return e;
}

/* The PSBT with the key's partial signature on each of its inputs. */
static hk_err hk_tx_psbt_result(hk_psbt *ps, const unsigned char pub[33],
                                const unsigned char *sigs, size_t n,
                                unsigned char **raw, size_t *len)
{
    unsigned char pkh[20], low[64], der[HK_DER_SIG_MAX];
    size_t i, j = 0, dl = 0;
    int y;
    hk_err e = HK_OK;

    hk_hash160(pub, 33, pkh);
    for (i = 0; i < ps->n_in && e == HK_OK; i++) {
        if (!hk_tx_mine(&ps->in[i], pkh))
            continue;
        if (j >= n)
            return HK_ERR_STATE;
        if ((e = hk_tx_sig_forms(pub, ps->in[i].sighash, sigs + 64 * j, low,
                                 der, &dl, &y)) == HK_OK)
            e = hk_psbt_add_partial_sig(ps, i, pub, der, dl);
        j++;
    }
    if (e == HK_OK && j != n)
        e = HK_ERR_STATE;
    return e == HK_OK ? hk_psbt_serialize(ps, raw, len) : e;
}

static hk_err hk_tx_eth_result(const hk_eth_tx *tx, const unsigned char pub[33],
                               const unsigned char *sigs, size_t n,
                               unsigned char **raw, size_t *len)
{
    unsigned char low[64], der[HK_DER_SIG_MAX];
    size_t dl = 0;
    int y = 0;
    hk_err e;

    if (n != 1)
        return HK_ERR_STATE;
    if ((e = hk_tx_sig_forms(pub, tx->digest, sigs, low, der, &dl, &y)) !=
        HK_OK)
        return e;
    return hk_eth_tx_signed(tx, low, low + 32, y, raw, len);
}

hk_err hk_tx_request_result(hk_tx_kind kind, const unsigned char *payload,
                            size_t len, hk_btc_net net,
                            const unsigned char pub[33],
                            const unsigned char *sigs, size_t n,
                            unsigned char **out, size_t *out_len)
{
    unsigned char *raw = NULL;
    hk_psbt *ps = NULL;
    hk_eth_tx *tx = NULL;
    size_t rlen = 0;
    hk_err e;

    if (payload == NULL || pub == NULL || sigs == NULL || out == NULL ||
        out_len == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if (kind == HK_TX_DIGEST) {
        if (n != 1)
            return HK_ERR_STATE;
        *out_len = 64;
        return (*out = OPENSSL_memdup(sigs, 64)) != NULL ? HK_OK : HK_ERR_NOMEM;
    }
    if (kind == HK_TX_BTC_PSBT &&
        (e = hk_psbt_parse(payload, len, net, &ps, NULL, 0)) == HK_OK)
        e = hk_tx_psbt_result(ps, pub, sigs, n, &raw, &rlen);
    else if (kind == HK_TX_ETH &&
             (e = hk_eth_tx_parse(payload, len, &tx, NULL, 0)) == HK_OK)
        e = hk_tx_eth_result(tx, pub, sigs, n, &raw, &rlen);
    else if (kind != HK_TX_BTC_PSBT && kind != HK_TX_ETH)
        e = HK_ERR_ARG;
    /* the parsers' buffers are malloc'd; the caller's are OpenSSL's */
    if (e == HK_OK && (*out = OPENSSL_memdup(raw, rlen)) == NULL)
        e = HK_ERR_NOMEM;
    *out_len = e == HK_OK ? rlen : 0;
    free(raw);
    hk_psbt_free(ps);
    hk_eth_tx_free(tx);
    return e;
}
