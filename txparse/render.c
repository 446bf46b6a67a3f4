/* The parsed transactions as JSON (txparse/render.h): what txinfo prints,
 * what halfkeyd shows of a request and what the CLI renders for humans. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/hex.h"
#include "txparse/render.h"

json_t *hk_tx_json_hex(const unsigned char *b, size_t n)
{
    char *s = malloc(2 * n + 1);
    json_t *j;

    if (s == NULL)
        return NULL;
    hk_hex(b, n, s);
    j = json_string(s);
    free(s);
    return j;
}

/* a txid in display order (reversed) */
static json_t *jtxid(const unsigned char id[32])
{
    unsigned char r[32];
    size_t i;

    for (i = 0; i < 32; i++)
        r[i] = id[31 - i];
    return hk_tx_json_hex(r, 32);
}

static json_t *ju64(uint64_t v)
{
    char s[24];

    if (v <= INT64_MAX)
        return json_integer((json_int_t)v);
    snprintf(s, sizeof(s), "%llu", (unsigned long long)v);
    return json_string(s);
}

static json_t *ju256(const unsigned char be[32])
{
    char s[HK_U256_DEC];

    hk_u256_dec(be, s);
    return json_string(s);
}

json_t *hk_psbt_json(const hk_psbt *ps)
{
    json_t *j = json_object(), *ins = json_array(), *outs = json_array(), *o;
    char why[160] = "";
    size_t i;

    json_object_set_new(j, "network", json_string(hk_btc_net_name(ps->net)));
    json_object_set_new(j, "version", ju64(ps->tx_version));
    json_object_set_new(j, "locktime", ju64(ps->locktime));
    json_object_set_new(j, "txid", jtxid(ps->txid));
    for (i = 0; i < ps->n_in; i++) {
        const hk_psbt_input *in = &ps->in[i];
        o = json_object();
        json_object_set_new(o, "txid", jtxid(in->prev_txid));
        json_object_set_new(o, "vout", ju64(in->prev_vout));
        json_object_set_new(o, "sequence", ju64(in->sequence));
        if (in->has_amount)
            json_object_set_new(o, "amount", ju64(in->amount));
        json_object_set_new(o, "p2wpkh", json_boolean(in->p2wpkh));
        json_object_set_new(o, "sighash_type", ju64(in->sighash_type));
        if (in->has_sighash)
            json_object_set_new(o, "sighash", hk_tx_json_hex(in->sighash, 32));
        if (in->has_pubkey)
            json_object_set_new(o, "pubkey", hk_tx_json_hex(in->pubkey, 33));
        json_object_set_new(o, "partial_sigs", ju64(in->n_partial_sigs));
        json_object_set_new(o, "derivations", ju64(in->n_derivations));
        json_object_set_new(o, "finalized", json_boolean(in->finalized));
        json_array_append_new(ins, o);
    }
    for (i = 0; i < ps->n_out; i++) {
        const hk_psbt_output *out = &ps->out[i];
        o = json_object();
        json_object_set_new(o, "amount", ju64(out->amount));
        json_object_set_new(o, "address",
                            out->address[0] ? json_string(out->address)
                                            : json_null());
        json_object_set_new(o, "script",
                            hk_tx_json_hex(out->spk, out->spk_len));
        json_array_append_new(outs, o);
    }
    json_object_set_new(j, "inputs", ins);
    json_object_set_new(j, "outputs", outs);
    json_object_set_new(j, "out_total", ju64(ps->out_total));
    if (ps->has_fee) {
        json_object_set_new(j, "in_total", ju64(ps->in_total));
        json_object_set_new(j, "fee", ju64(ps->fee));
    }
    json_object_set_new(
        j, "signable",
        json_boolean(hk_psbt_signable(ps, why, sizeof(why)) == HK_OK));
    if (why[0])
        json_object_set_new(j, "unsignable_why", json_string(why));
    return j;
}

json_t *hk_eth_tx_json(const hk_eth_tx *tx)
{
    json_t *j = json_object();
    char addr[HK_ETH_ADDR_STR];

    json_object_set_new(j, "chain_id", ju64(tx->chain_id));
    json_object_set_new(j, "nonce", ju64(tx->nonce));
    json_object_set_new(j, "gas_limit", ju64(tx->gas_limit));
    json_object_set_new(j, "max_priority_fee_per_gas",
                        ju256(tx->max_priority_fee_per_gas));
    json_object_set_new(j, "max_fee_per_gas", ju256(tx->max_fee_per_gas));
    json_object_set_new(j, "max_fee_total", ju256(tx->max_fee_total));
    json_object_set_new(j, "value", ju256(tx->value));
    if (tx->create) {
        json_object_set_new(j, "to", json_null());
    } else {
        hk_eth_address_str(tx->to, addr);
        json_object_set_new(j, "to", json_string(addr));
    }
    json_object_set_new(j, "data", hk_tx_json_hex(tx->data, tx->data_len));
    json_object_set_new(j, "access_list_len", ju64(tx->access_list_len));
    json_object_set_new(j, "access_list_keys", ju64(tx->access_list_keys));
    json_object_set_new(j, "digest", hk_tx_json_hex(tx->digest, 32));
    return j;
}
