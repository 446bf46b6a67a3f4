/* PSBT v0 (BIP174) parser, BIP143 sighashes, partial signatures
 * (psbt.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <secp256k1.h>

#include "common/hex.h"
#include "common/why.h"
#include "txparse/psbt.h"

static const unsigned char hk_psbt_magic[5] = {'p', 's', 'b', 't', 0xff};

/* PSBT key types (BIP174, BIP371 taproot, BIP370 v2-only ranges) */
enum {
    G_UNSIGNED_TX = 0x00,
    G_XPUB = 0x01,
    G_V2_FIRST = 0x02,
    G_V2_LAST = 0x06,
    G_VERSION = 0xfb,
    IN_NON_WITNESS_UTXO = 0x00,
    IN_WITNESS_UTXO = 0x01,
    IN_PARTIAL_SIG = 0x02,
    IN_SIGHASH_TYPE = 0x03,
    IN_REDEEM_SCRIPT = 0x04,
    IN_WITNESS_SCRIPT = 0x05,
    IN_BIP32_DERIVATION = 0x06,
    IN_FINAL_SCRIPTSIG = 0x07,
    IN_FINAL_SCRIPTWITNESS = 0x08,
    IN_POR_COMMITMENT = 0x09,
    IN_RIPEMD160 = 0x0a,
    IN_SHA256 = 0x0b,
    IN_HASH160 = 0x0c,
    IN_HASH256 = 0x0d,
    IN_V2_FIRST = 0x0e,
    IN_V2_LAST = 0x12,
    IN_TAP_KEY_SIG = 0x13,
    IN_TAP_SCRIPT_SIG = 0x14,
    IN_TAP_LEAF_SCRIPT = 0x15,
    IN_TAP_BIP32_DERIVATION = 0x16,
    IN_TAP_INTERNAL_KEY = 0x17,
    IN_TAP_MERKLE_ROOT = 0x18,
    OUT_REDEEM_SCRIPT = 0x00,
    OUT_WITNESS_SCRIPT = 0x01,
    OUT_BIP32_DERIVATION = 0x02,
    OUT_V2_FIRST = 0x03,
    OUT_V2_LAST = 0x04,
    OUT_TAP_INTERNAL_KEY = 0x05,
    OUT_TAP_TREE = 0x06,
    OUT_TAP_BIP32_DERIVATION = 0x07,
};

/* ---- reading ---------------------------------------------------------- */

typedef struct {
    const unsigned char *p;
    size_t len, pos;
} rd;

static int rd_bytes(rd *r, uint64_t n, const unsigned char **out)
{
    if (r->len - r->pos < n)
        return 0;
    if (out != NULL)
        *out = r->p + r->pos;
    r->pos += (size_t)n;
    return 1;
}

static int rd_le(rd *r, size_t n, uint64_t *v)
{
    const unsigned char *b;
    size_t i;

    if (!rd_bytes(r, n, &b))
        return 0;
    *v = 0;
    for (i = n; i > 0; i--)
        *v = (*v << 8) | b[i - 1];
    return 1;
}

static int rd_u32(rd *r, uint32_t *v)
{
    uint64_t x;

    if (!rd_le(r, 4, &x))
        return 0;
    *v = (uint32_t)x;
    return 1;
}

/* Bitcoin's CompactSize, minimal encodings only. */
static int rd_cs(rd *r, uint64_t *v)
{
    const unsigned char *b;

    if (!rd_bytes(r, 1, &b))
        return 0;
    if (*b < 0xfd) {
        *v = *b;
        return 1;
    }
    if (*b == 0xfd)
        return rd_le(r, 2, v) && *v >= 0xfd;
    if (*b == 0xfe)
        return rd_le(r, 4, v) && *v > 0xffff;
    return rd_le(r, 8, v) && *v > 0xffffffffu;
}

static size_t cs_len(uint64_t v)
{
    return v < 0xfd ? 1 : v <= 0xffff ? 3 : v <= 0xffffffffu ? 5 : 9;
}

static unsigned char *put_cs(unsigned char *o, uint64_t v)
{
    size_t n = cs_len(v), i;

    if (n == 1) {
        *o++ = (unsigned char)v;
        return o;
    }
    *o++ = n == 3 ? 0xfd : n == 5 ? 0xfe : 0xff;
    for (i = 0; i < n - 1; i++)
        *o++ = (unsigned char)(v >> (8 * i));
    return o;
}

static void put_le(unsigned char *o, uint64_t v, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        o[i] = (unsigned char)(v >> (8 * i));
}

/* ---- transactions ----------------------------------------------------- */

/* What tx_parse found: offsets into the transaction's bytes. */
typedef struct {
    uint32_t version, locktime;
    size_t io_off; /* the input count (after a witness marker and flag) */
    size_t out_off, io_end; /* the first output; the end of the outputs */
    int witness;
    uint32_t want; /* prev tx: the output index wanted */
    int found;
    uint64_t want_amount;
    const unsigned char *want_spk;
    size_t want_spk_len;
} txv;

/* Parses a transaction. The PSBT's unsigned transaction (ps != NULL):
 * no witness serialisation, empty scriptSigs, inputs and outputs bounded
 * and recorded in ps. A previous transaction (ps == NULL): witness
 * serialisation allowed, counts bounded by the bytes left, only output
 * t->want recorded. */
static hk_err tx_parse(const unsigned char *p, size_t len, hk_psbt *ps, txv *t,
                       const char *what, char *why, size_t why_len)
{
    rd r = {p, len, 0};
    uint64_t n_in, n_out, i, j, n, sl, items, amount;
    const unsigned char *b, *spk;
    uint32_t vout, seq;

    if (!rd_u32(&r, &t->version))
        goto trunc;
    if (len - r.pos >= 2 && p[r.pos] == 0 && p[r.pos + 1] == 1) {
        if (ps != NULL) { /* BIP174: the unsigned tx never has witnesses */
            hk_why(why, why_len, "%s: witness serialisation", what);
            return HK_ERR_DECODE;
        }
        t->witness = 1;
        r.pos += 2;
    }
    t->io_off = r.pos;
    if (!rd_cs(&r, &n_in))
        goto trunc;
    if (n_in > (ps != NULL ? HK_PSBT_MAX_INPUTS : (len - r.pos) / 41)) {
        hk_why(why, why_len, "%s: too many inputs", what);
        return HK_ERR_TOO_BIG;
    }
    if (ps != NULL) {
        ps->n_in = (size_t)n_in;
        if ((ps->in = calloc(n_in + 1, sizeof(*ps->in))) == NULL)
            return HK_ERR_NOMEM;
    }
    for (i = 0; i < n_in; i++) {
        if (!rd_bytes(&r, 32, &b) || !rd_u32(&r, &vout) || !rd_cs(&r, &sl) ||
            sl > HK_BTC_SCRIPT_MAX || !rd_bytes(&r, sl, NULL) ||
            !rd_u32(&r, &seq))
            goto trunc;
        if (ps == NULL)
            continue;
        if (sl != 0) {
            hk_why(why, why_len, "%s: input %llu has a scriptSig", what,
                   (unsigned long long)i);
            return HK_ERR_DECODE;
        }
        memcpy(ps->in[i].prev_txid, b, 32);
        ps->in[i].prev_vout = vout;
        ps->in[i].sequence = seq;
        ps->in[i].sighash_type = HK_SIGHASH_ALL;
        for (j = 0; j < i; j++)
            if (ps->in[j].prev_vout == vout &&
                memcmp(ps->in[j].prev_txid, b, 32) == 0) {
                hk_why(why, why_len,
                       "%s: input %llu spends the same output "
                       "as input %llu",
                       what, (unsigned long long)i, (unsigned long long)j);
                return HK_ERR_DECODE;
            }
    }
    if (!rd_cs(&r, &n_out))
        goto trunc;
    if (n_out > (ps != NULL ? HK_PSBT_MAX_OUTPUTS : (len - r.pos) / 9)) {
        hk_why(why, why_len, "%s: too many outputs", what);
        return HK_ERR_TOO_BIG;
    }
    if (ps != NULL) {
        ps->n_out = (size_t)n_out;
        if ((ps->out = calloc(n_out + 1, sizeof(*ps->out))) == NULL)
            return HK_ERR_NOMEM;
    }
    t->out_off = r.pos;
    for (i = 0; i < n_out; i++) {
        if (!rd_le(&r, 8, &amount) || !rd_cs(&r, &sl) ||
            sl > HK_BTC_SCRIPT_MAX || !rd_bytes(&r, sl, &spk))
            goto trunc;
        if (amount > HK_BTC_MAX_MONEY) {
            hk_why(why, why_len, "%s: output %llu above 21 million BTC", what,
                   (unsigned long long)i);
            return HK_ERR_DECODE;
        }
        if (ps != NULL) {
            ps->out[i].amount = amount;
            ps->out[i].spk = spk;
            ps->out[i].spk_len = (size_t)sl;
        } else if (i == t->want) {
            t->found = 1;
            t->want_amount = amount;
            t->want_spk = spk;
            t->want_spk_len = (size_t)sl;
        }
    }
    t->io_end = r.pos;
    for (i = 0; t->witness && i < n_in; i++) {
        if (!rd_cs(&r, &items) || items > len - r.pos)
            goto trunc;
        for (j = 0; j < items; j++)
            if (!rd_cs(&r, &n) || !rd_bytes(&r, n, NULL))
                goto trunc;
    }
    if (!rd_u32(&r, &t->locktime))
        goto trunc;
    if (r.pos != len) {
        hk_why(why, why_len, "%s: %zu bytes after the locktime", what,
               len - r.pos);
        return HK_ERR_DECODE;
    }
    return HK_OK;
trunc:
    hk_why(why, why_len, "%s: truncated or non-canonical at byte %zu", what,
           r.pos);
    return HK_ERR_DECODE;
}

/* txid of a parsed transaction: SHA-256d of its non-witness form */
static hk_err tx_id(const unsigned char *p, const txv *t, size_t len,
                    unsigned char id[32])
{
    size_t io = t->io_end - t->io_off;
    unsigned char *buf;

    if (!t->witness) {
        hk_sha256d(p, len, id);
        return HK_OK;
    }
    if ((buf = malloc(io + 8)) == NULL)
        return HK_ERR_NOMEM;
    memcpy(buf, p, 4);
    memcpy(buf + 4, p + t->io_off, io);
    memcpy(buf + 4 + io, p + len - 4, 4);
    hk_sha256d(buf, io + 8, id);
    free(buf);
    return HK_OK;
}

/* ---- maps --------------------------------------------------------------- */

static hk_err read_map(rd *r, hk_psbt_map *m, const char *where, char *why,
                       size_t why_len)
{
    uint64_t kl, vl;
    const unsigned char *k, *v;
    hk_psbt_pair *np;
    size_t j, cap = 0;

    for (;;) {
        if (!rd_cs(r, &kl))
            goto trunc;
        if (kl == 0)
            return HK_OK;
        if (!rd_bytes(r, kl, &k) || !rd_cs(r, &vl) || !rd_bytes(r, vl, &v))
            goto trunc;
        for (j = 0; j < m->n; j++)
            if (m->pairs[j].key_len == kl &&
                memcmp(m->pairs[j].key, k, kl) == 0) {
                hk_why(why, why_len, "%s: duplicate key (type 0x%02x)", where,
                       k[0]);
                return HK_ERR_DECODE;
            }
        if (m->n == HK_PSBT_MAX_PAIRS) {
            hk_why(why, why_len, "%s: more than %d keys", where,
                   HK_PSBT_MAX_PAIRS);
            return HK_ERR_TOO_BIG;
        }
        if (m->n == cap) {
            cap = cap ? 2 * cap : 8;
            if ((np = realloc(m->pairs, cap * sizeof(*np))) == NULL)
                return HK_ERR_NOMEM;
            m->pairs = np;
        }
        m->pairs[m->n].key = k;
        m->pairs[m->n].key_len = (size_t)kl;
        m->pairs[m->n].val = v;
        m->pairs[m->n].val_len = (size_t)vl;
        m->pairs[m->n].owned = NULL;
        m->n++;
    }
trunc:
    hk_why(why, why_len, "%s: truncated or non-canonical at byte %zu", where,
           r->pos);
    return HK_ERR_DECODE;
}

/* A pair's key type (a CompactSize) and where its key data starts. */
static int key_type(const hk_psbt_pair *pr, uint64_t *type, size_t *kd)
{
    rd r = {pr->key, pr->key_len, 0};

    if (!rd_cs(&r, type))
        return 0;
    *kd = r.pos;
    return 1;
}

/* A SEC1 public key (33 compressed, 65 uncompressed) on the curve. */
static int valid_pubkey(const unsigned char *p, size_t n)
{
    secp256k1_pubkey pk;

    if (!((n == 33 && (p[0] == 2 || p[0] == 3)) || (n == 65 && p[0] == 4)))
        return 0;
    return secp256k1_ec_pubkey_parse(secp256k1_context_static, &pk, p, n);
}

/* BIP32 derivation value: fingerprint then 32-bit path steps */
static int valid_keypath(size_t n) { return n >= 4 && n % 4 == 0; }

static hk_err bad_key(const char *where, uint64_t type, char *why,
                      size_t why_len)
{
    hk_why(why, why_len, "%s: invalid key or value of type 0x%02llx", where,
           (unsigned long long)type);
    return HK_ERR_DECODE;
}

static hk_err v2_field(const char *where, uint64_t type, char *why,
                       size_t why_len)
{
    hk_why(why, why_len, "%s: PSBT v2 field 0x%02llx in a v0 PSBT", where,
           (unsigned long long)type);
    return HK_ERR_DECODE;
}

static hk_err do_global(hk_psbt *ps, const hk_psbt_pair **utx, char *why,
                        size_t why_len)
{
    const hk_psbt_map *m = &ps->global;
    const hk_psbt_pair *pr;
    uint64_t type;
    size_t i, kd, kdl;
    uint32_t ver;

    *utx = NULL;
    for (i = 0; i < m->n; i++) {
        pr = &m->pairs[i];
        if (!key_type(pr, &type, &kd))
            return bad_key("global", 0, why, why_len);
        kdl = pr->key_len - kd;
        if (type == G_UNSIGNED_TX) {
            if (kdl != 0)
                return bad_key("global", type, why, why_len);
            *utx = pr;
        } else if (type == G_XPUB) {
            if (kdl != 78 || !valid_keypath(pr->val_len))
                return bad_key("global", type, why, why_len);
        } else if (type >= G_V2_FIRST && type <= G_V2_LAST) {
            return v2_field("global", type, why, why_len);
        } else if (type == G_VERSION) {
            if (kdl != 0 || pr->val_len != 4)
                return bad_key("global", type, why, why_len);
            ver = (uint32_t)pr->val[0] | (uint32_t)pr->val[1] << 8 |
                  (uint32_t)pr->val[2] << 16 | (uint32_t)pr->val[3] << 24;
            if (ver != 0) {
                hk_why(why, why_len, "PSBT version %u (only 0 is supported)",
                       ver);
                return HK_ERR_TX_UNSUPPORTED;
            }
        } /* else unknown or proprietary: kept */
    }
    if (*utx == NULL) {
        hk_why(why, why_len, "global: no unsigned transaction");
        return HK_ERR_DECODE;
    }
    return HK_OK;
}

static hk_err do_input(hk_psbt *ps, size_t idx, char *why, size_t why_len)
{
    hk_psbt_input *in = &ps->in[idx];
    const hk_psbt_pair *pr;
    char where[32];
    uint64_t type, wamount = 0;
    size_t i, kd, kdl, vl;
    const unsigned char *kp, *wspk = NULL;
    size_t wspk_len = 0;
    unsigned char id[32], h[20];
    txv t;
    rd r;
    hk_err e;

    snprintf(where, sizeof(where), "input %zu", idx);
    for (i = 0; i < in->map.n; i++) {
        pr = &in->map.pairs[i];
        if (!key_type(pr, &type, &kd))
            return bad_key(where, 0, why, why_len);
        kdl = pr->key_len - kd;
        kp = pr->key + kd;
        vl = pr->val_len;
        switch (type) {
        case IN_NON_WITNESS_UTXO:
            if (kdl != 0)
                return bad_key(where, type, why, why_len);
            memset(&t, 0, sizeof(t));
            t.want = in->prev_vout;
            if ((e = tx_parse(pr->val, vl, NULL, &t, where, why, why_len)) !=
                    HK_OK ||
                (e = tx_id(pr->val, &t, vl, id)) != HK_OK)
                return e;
            if (memcmp(id, in->prev_txid, 32) != 0 || !t.found) {
                hk_why(why, why_len,
                       "%s: non-witness UTXO is not the "
                       "transaction spent",
                       where);
                return HK_ERR_DECODE;
            }
            in->has_non_witness_utxo = 1;
            in->amount = t.want_amount;
            in->spk = t.want_spk;
            in->spk_len = t.want_spk_len;
            break;
        case IN_WITNESS_UTXO:
            r = (rd){pr->val, vl, 0};
            if (kdl != 0 || !rd_le(&r, 8, &wamount) || !rd_cs(&r, &type) ||
                type > HK_BTC_SCRIPT_MAX || !rd_bytes(&r, type, &wspk) ||
                r.pos != vl)
                return bad_key(where, IN_WITNESS_UTXO, why, why_len);
            if (wamount > HK_BTC_MAX_MONEY) {
                hk_why(why, why_len, "%s: amount above 21 million BTC", where);
                return HK_ERR_DECODE;
            }
            wspk_len = (size_t)type;
            in->has_witness_utxo = 1;
            break;
        case IN_PARTIAL_SIG:
            if (!valid_pubkey(kp, kdl) || vl < 9 || vl > 73)
                return bad_key(where, type, why, why_len);
            in->n_partial_sigs++;
            break;
        case IN_SIGHASH_TYPE:
            if (kdl != 0 || vl != 4)
                return bad_key(where, type, why, why_len);
            in->sighash_type =
                (uint32_t)pr->val[0] | (uint32_t)pr->val[1] << 8 |
                (uint32_t)pr->val[2] << 16 | (uint32_t)pr->val[3] << 24;
            break;
        case IN_REDEEM_SCRIPT:
        case IN_WITNESS_SCRIPT:
        case IN_POR_COMMITMENT:
            if (kdl != 0)
                return bad_key(where, type, why, why_len);
            break;
        case IN_FINAL_SCRIPTSIG:
        case IN_FINAL_SCRIPTWITNESS:
            if (kdl != 0)
                return bad_key(where, type, why, why_len);
            in->finalized = 1;
            break;
        case IN_BIP32_DERIVATION:
            if (!valid_pubkey(kp, kdl) || !valid_keypath(vl))
                return bad_key(where, type, why, why_len);
            in->n_derivations++;
            break;
        case IN_RIPEMD160:
        case IN_HASH160:
            if (kdl != 20)
                return bad_key(where, type, why, why_len);
            break;
        case IN_SHA256:
        case IN_HASH256:
            if (kdl != 32)
                return bad_key(where, type, why, why_len);
            break;
        case IN_TAP_KEY_SIG:
            if (kdl != 0 || (vl != 64 && vl != 65))
                return bad_key(where, type, why, why_len);
            break;
        case IN_TAP_SCRIPT_SIG:
            if (kdl != 64 || (vl != 64 && vl != 65))
                return bad_key(where, type, why, why_len);
            break;
        case IN_TAP_LEAF_SCRIPT:
            if (kdl < 33 || (kdl - 33) % 32 != 0 || vl < 1)
                return bad_key(where, type, why, why_len);
            break;
        case IN_TAP_BIP32_DERIVATION:
            if (kdl != 32)
                return bad_key(where, type, why, why_len);
            break;
        case IN_TAP_INTERNAL_KEY:
        case IN_TAP_MERKLE_ROOT:
            if (kdl != 0 || vl != 32)
                return bad_key(where, type, why, why_len);
            break;
        default:
            if (type >= IN_V2_FIRST && type <= IN_V2_LAST)
                return v2_field(where, type, why, why_len);
            break; /* unknown or proprietary: kept */
        }
    }
    if (in->has_witness_utxo) {
        /* both given: they must agree, or a signer could be shown one
         * amount and sign for another (the segwit fee attack) */
        if (in->has_non_witness_utxo &&
            (in->amount != wamount || in->spk_len != wspk_len ||
             memcmp(in->spk, wspk, wspk_len) != 0)) {
            hk_why(why, why_len,
                   "%s: witness UTXO differs from the "
                   "non-witness UTXO's output",
                   where);
            return HK_ERR_DECODE;
        }
        in->amount = wamount;
        in->spk = wspk;
        in->spk_len = wspk_len;
    }
    in->has_amount = in->has_witness_utxo || in->has_non_witness_utxo;
    if (in->has_amount && in->spk_len == 22 && in->spk[0] == 0 &&
        in->spk[1] == 20) {
        in->p2wpkh = 1;
        memcpy(in->pkh, in->spk + 2, 20);
        for (i = 0; i < in->map.n && !in->has_pubkey; i++) {
            pr = &in->map.pairs[i];
            if (pr->key[0] != IN_BIP32_DERIVATION || pr->key_len != 34)
                continue;
            hk_hash160(pr->key + 1, 33, h);
            if (memcmp(h, in->pkh, 20) == 0) {
                in->has_pubkey = 1;
                memcpy(in->pubkey, pr->key + 1, 33);
            }
        }
    }
    return HK_OK;
}

static hk_err do_output(hk_psbt *ps, size_t idx, char *why, size_t why_len)
{
    hk_psbt_output *o = &ps->out[idx];
    const hk_psbt_pair *pr;
    char where[32];
    uint64_t type;
    size_t i, kd, kdl;

    snprintf(where, sizeof(where), "output %zu", idx);
    for (i = 0; i < o->map.n; i++) {
        pr = &o->map.pairs[i];
        if (!key_type(pr, &type, &kd))
            return bad_key(where, 0, why, why_len);
        kdl = pr->key_len - kd;
        if (((type == OUT_REDEEM_SCRIPT || type == OUT_WITNESS_SCRIPT ||
              type == OUT_TAP_TREE) &&
             kdl != 0) ||
            (type == OUT_BIP32_DERIVATION &&
             (!valid_pubkey(pr->key + kd, kdl) ||
              !valid_keypath(pr->val_len))) ||
            (type == OUT_TAP_INTERNAL_KEY && (kdl != 0 || pr->val_len != 32)) ||
            (type == OUT_TAP_BIP32_DERIVATION && kdl != 32))
            return bad_key(where, type, why, why_len);
        if (type >= OUT_V2_FIRST && type <= OUT_V2_LAST)
            return v2_field(where, type, why, why_len);
    }
    if (hk_btc_address(o->spk, o->spk_len, ps->net, o->address) != HK_OK)
        o->address[0] = 0;
    return HK_OK;
}

/* BIP143 for every P2WPKH input with SIGHASH_ALL: hashPrevouts,
 * hashSequence and hashOutputs once, then each input's preimage. */
static hk_err sighashes(hk_psbt *ps, const unsigned char *utx, const txv *t)
{
    unsigned char hp[32], hs[32], ho[32], pre[182], *buf, *o;
    size_t i;

    if ((buf = malloc(36 * ps->n_in + 1)) == NULL)
        return HK_ERR_NOMEM;
    for (i = 0; i < ps->n_in; i++) {
        memcpy(buf + 36 * i, ps->in[i].prev_txid, 32);
        put_le(buf + 36 * i + 32, ps->in[i].prev_vout, 4);
    }
    hk_sha256d(buf, 36 * ps->n_in, hp);
    for (i = 0; i < ps->n_in; i++)
        put_le(buf + 4 * i, ps->in[i].sequence, 4);
    hk_sha256d(buf, 4 * ps->n_in, hs);
    free(buf);
    hk_sha256d(utx + t->out_off, t->io_end - t->out_off, ho);
    for (i = 0; i < ps->n_in; i++) {
        hk_psbt_input *in = &ps->in[i];
        if (!in->p2wpkh || in->sighash_type != HK_SIGHASH_ALL)
            continue;
        o = pre;
        put_le(o, ps->tx_version, 4);
        memcpy(o + 4, hp, 32);
        memcpy(o + 36, hs, 32);
        memcpy(o + 68, in->prev_txid, 32);
        put_le(o + 100, in->prev_vout, 4);
        o += 104; /* scriptCode of P2WPKH: 0x1976a914{20}88ac */
        *o++ = 0x19;
        *o++ = 0x76;
        *o++ = 0xa9;
        *o++ = 0x14;
        memcpy(o, in->pkh, 20);
        o += 20;
        *o++ = 0x88;
        *o++ = 0xac;
        put_le(o, in->amount, 8);
        put_le(o + 8, in->sequence, 4);
        memcpy(o + 12, ho, 32);
        put_le(o + 44, ps->locktime, 4);
        put_le(o + 48, in->sighash_type, 4);
        hk_sha256d(pre, sizeof(pre), in->sighash);
        in->has_sighash = 1;
    }
    return HK_OK;
}

hk_err hk_psbt_parse(const unsigned char *raw, size_t len, hk_btc_net net,
                     hk_psbt **out, char *why, size_t why_len)
{
    hk_psbt *ps = NULL;
    const hk_psbt_pair *utx;
    char where[32];
    txv t;
    rd r;
    size_t i;
    hk_err e;

    if (out != NULL)
        *out = NULL;
    if (raw == NULL || out == NULL || (unsigned)net > HK_BTC_REGTEST)
        return HK_ERR_ARG;
    hk_why(why, why_len, "%s", "");
    if (len > HK_PSBT_MAX) {
        hk_why(why, why_len, "PSBT larger than %d bytes", HK_PSBT_MAX);
        return HK_ERR_TOO_BIG;
    }
    if (len < sizeof(hk_psbt_magic) ||
        memcmp(raw, hk_psbt_magic, sizeof(hk_psbt_magic)) != 0) {
        hk_why(why, why_len, "not a PSBT (no magic bytes)");
        return HK_ERR_DECODE;
    }
    if ((ps = calloc(1, sizeof(*ps))) == NULL ||
        (ps->raw = malloc(len)) == NULL) {
        e = HK_ERR_NOMEM;
        goto done;
    }
    memcpy(ps->raw, raw, len);
    ps->raw_len = len;
    ps->net = net;
    r = (rd){ps->raw, len, sizeof(hk_psbt_magic)};
    if ((e = read_map(&r, &ps->global, "global", why, why_len)) != HK_OK ||
        (e = do_global(ps, &utx, why, why_len)) != HK_OK)
        goto done;
    memset(&t, 0, sizeof(t));
    if ((e = tx_parse(utx->val, utx->val_len, ps, &t, "unsigned transaction",
                      why, why_len)) != HK_OK ||
        (e = tx_id(utx->val, &t, utx->val_len, ps->txid)) != HK_OK)
        goto done;
    ps->tx_version = t.version;
    ps->locktime = t.locktime;
    for (i = 0; i < ps->n_in; i++) {
        snprintf(where, sizeof(where), "input %zu", i);
        if ((e = read_map(&r, &ps->in[i].map, where, why, why_len)) != HK_OK ||
            (e = do_input(ps, i, why, why_len)) != HK_OK)
            goto done;
    }
    for (i = 0; i < ps->n_out; i++) {
        snprintf(where, sizeof(where), "output %zu", i);
        if ((e = read_map(&r, &ps->out[i].map, where, why, why_len)) != HK_OK ||
            (e = do_output(ps, i, why, why_len)) != HK_OK)
            goto done;
    }
    e = HK_ERR_DECODE;
    if (r.pos != len) {
        hk_why(why, why_len, "%zu bytes after the last output map",
               len - r.pos);
        goto done;
    }
    ps->has_fee = ps->n_in > 0;
    for (i = 0; i < ps->n_in; i++) {
        ps->has_fee &= ps->in[i].has_amount;
        ps->in_total += ps->in[i].amount;
    }
    for (i = 0; i < ps->n_out; i++)
        ps->out_total += ps->out[i].amount;
    if (ps->has_fee && ps->out_total > ps->in_total) {
        hk_why(why, why_len, "outputs (%llu sat) exceed inputs (%llu sat)",
               (unsigned long long)ps->out_total,
               (unsigned long long)ps->in_total);
        goto done;
    }
    ps->fee = ps->has_fee ? ps->in_total - ps->out_total : 0;
    if ((e = sighashes(ps, utx->val, &t)) != HK_OK)
        goto done;
    *out = ps;
    ps = NULL;
    e = HK_OK;
done:
    hk_psbt_free(ps);
    return e;
}

hk_err hk_psbt_parse_base64(const char *b64, size_t len, hk_btc_net net,
                            hk_psbt **out, char *why, size_t why_len)
{
    unsigned char *raw = NULL;
    size_t n = 0;
    hk_err e;

    if (out != NULL)
        *out = NULL;
    if (b64 == NULL || out == NULL)
        return HK_ERR_ARG;
    if (len > (size_t)HK_PSBT_MAX / 3 * 4 + 4) {
        hk_why(why, why_len, "PSBT larger than %d bytes", HK_PSBT_MAX);
        return HK_ERR_TOO_BIG;
    }
    if (!hk_b64_decode(b64, len, HK_PSBT_MAX, &raw, &n)) {
        hk_why(why, why_len, "PSBT: not strict base64");
        return HK_ERR_DECODE;
    }
    e = hk_psbt_parse(raw, n, net, out, why, why_len);
    OPENSSL_free(raw);
    return e;
}

static void map_free(hk_psbt_map *m)
{
    size_t i;

    for (i = 0; i < m->n; i++)
        free(m->pairs[i].owned);
    free(m->pairs);
}

void hk_psbt_free(hk_psbt *ps)
{
    size_t i;

    if (ps == NULL)
        return;
    map_free(&ps->global);
    for (i = 0; ps->in != NULL && i < ps->n_in; i++)
        map_free(&ps->in[i].map);
    for (i = 0; ps->out != NULL && i < ps->n_out; i++)
        map_free(&ps->out[i].map);
    free(ps->in);
    free(ps->out);
    free(ps->raw);
    free(ps);
}

hk_err hk_psbt_signable(const hk_psbt *ps, char *why, size_t why_len)
{
    size_t i;

    if (ps == NULL)
        return HK_ERR_ARG;
    if (ps->n_in == 0 || ps->n_out == 0) {
        hk_why(why, why_len, "no inputs or no outputs");
        return HK_ERR_TX_UNSUPPORTED;
    }
    for (i = 0; i < ps->n_in; i++) {
        const hk_psbt_input *in = &ps->in[i];
        if (!in->has_witness_utxo)
            hk_why(why, why_len, "input %zu: no witness UTXO (amount)", i);
        else if (!in->p2wpkh)
            hk_why(why, why_len, "input %zu: not P2WPKH", i);
        else if (in->sighash_type != HK_SIGHASH_ALL)
            hk_why(why, why_len,
                   "input %zu: sighash type %u, only "
                   "SIGHASH_ALL is signed",
                   i, in->sighash_type);
        if (!in->has_witness_utxo || !in->has_sighash)
            return HK_ERR_TX_UNSUPPORTED;
    }
    return HK_OK;
}

hk_err hk_psbt_add_partial_sig(hk_psbt *ps, size_t index,
                               const unsigned char pubkey[33],
                               const unsigned char *der, size_t der_len)
{
    secp256k1_ecdsa_signature sig;
    secp256k1_pubkey pk;
    hk_psbt_input *in;
    hk_psbt_pair *np, *pr;
    unsigned char h[20], *buf;
    size_t vl = 72, i;

    if (ps == NULL || pubkey == NULL || der == NULL || index >= ps->n_in)
        return HK_ERR_ARG;
    in = &ps->in[index];
    if (!in->has_sighash)
        return HK_ERR_STATE;
    if ((buf = malloc(34 + 73)) == NULL)
        return HK_ERR_NOMEM;
    hk_hash160(pubkey, 33, h);
    if ((pubkey[0] != 2 && pubkey[0] != 3) || memcmp(h, in->pkh, 20) != 0 ||
        !secp256k1_ec_pubkey_parse(secp256k1_context_static, &pk, pubkey, 33) ||
        !secp256k1_ecdsa_signature_parse_der(secp256k1_context_static, &sig,
                                             der, der_len))
        goto bad;
    secp256k1_ecdsa_signature_normalize(secp256k1_context_static, &sig, &sig);
    if (!secp256k1_ecdsa_verify(secp256k1_context_static, &sig, in->sighash,
                                &pk) ||
        !secp256k1_ecdsa_signature_serialize_der(secp256k1_context_static,
                                                 buf + 34, &vl, &sig))
        goto bad;
    buf[0] = IN_PARTIAL_SIG;
    memcpy(buf + 1, pubkey, 33);
    buf[34 + vl] = (unsigned char)in->sighash_type;
    vl++;
    for (i = 0; i < in->map.n; i++) {
        pr = &in->map.pairs[i];
        if (pr->key_len == 34 && memcmp(pr->key, buf, 34) == 0) {
            int same = pr->val_len == vl && memcmp(pr->val, buf + 34, vl) == 0;
            free(buf);
            return same ? HK_OK : HK_ERR_EXISTS;
        }
    }
    if ((np = realloc(in->map.pairs, (in->map.n + 1) * sizeof(*np))) == NULL) {
        free(buf);
        return HK_ERR_NOMEM;
    }
    in->map.pairs = np;
    np[in->map.n] = (hk_psbt_pair){buf, 34, buf + 34, vl, buf};
    in->map.n++;
    in->n_partial_sigs++;
    return HK_OK;
bad:
    free(buf);
    return HK_ERR_ARG;
}

static size_t map_size(const hk_psbt_map *m)
{
    size_t n = 1, i;

    for (i = 0; i < m->n; i++)
        n += cs_len(m->pairs[i].key_len) + m->pairs[i].key_len +
             cs_len(m->pairs[i].val_len) + m->pairs[i].val_len;
    return n;
}

static unsigned char *map_put(unsigned char *o, const hk_psbt_map *m)
{
    size_t i;

    for (i = 0; i < m->n; i++) {
        o = put_cs(o, m->pairs[i].key_len);
        memcpy(o, m->pairs[i].key, m->pairs[i].key_len);
        o = put_cs(o + m->pairs[i].key_len, m->pairs[i].val_len);
        memcpy(o, m->pairs[i].val, m->pairs[i].val_len);
        o += m->pairs[i].val_len;
    }
    *o++ = 0;
    return o;
}

hk_err hk_psbt_serialize(const hk_psbt *ps, unsigned char **out,
                         size_t *out_len)
{
    size_t n = sizeof(hk_psbt_magic), i;
    unsigned char *buf, *o;

    if (out != NULL)
        *out = NULL;
    if (out_len != NULL)
        *out_len = 0;
    if (ps == NULL || out == NULL || out_len == NULL)
        return HK_ERR_ARG;
    n += map_size(&ps->global);
    for (i = 0; i < ps->n_in; i++)
        n += map_size(&ps->in[i].map);
    for (i = 0; i < ps->n_out; i++)
        n += map_size(&ps->out[i].map);
    if ((buf = malloc(n)) == NULL)
        return HK_ERR_NOMEM;
    memcpy(buf, hk_psbt_magic, sizeof(hk_psbt_magic));
    o = map_put(buf + sizeof(hk_psbt_magic), &ps->global);
    for (i = 0; i < ps->n_in; i++)
        o = map_put(o, &ps->in[i].map);
    for (i = 0; i < ps->n_out; i++)
        o = map_put(o, &ps->out[i].map);
    *out = buf;
    *out_len = n;
    return HK_OK;
}

hk_err hk_psbt_serialize_base64(const hk_psbt *ps, char **out)
{
    unsigned char *raw = NULL;
    size_t n = 0;
    hk_err e;

    if (out != NULL)
        *out = NULL;
    if ((e = hk_psbt_serialize(ps, &raw, &n)) != HK_OK)
        return e;
    e = (*out = hk_b64_encode(raw, n)) != NULL ? HK_OK : HK_ERR_NOMEM;
    free(raw);
    return e;
}
