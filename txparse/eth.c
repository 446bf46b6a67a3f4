/* EIP-1559 transactions and the strict RLP decoder (eth.h). */
#include <stdlib.h>
#include <string.h>

#include <secp256k1.h>

#include "common/hex.h"
#include "common/why.h"
#include "txparse/eth.h"
#include "txparse/keccak.h"

/* secp256k1's group order n and n/2 (EIP-2's bound on s), big-endian */
static const unsigned char hk_k1_n[32] = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48,
    0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41};
static const unsigned char hk_k1_half_n[32] = {
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4,
    0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0};

/* One RLP item: its payload and whether it is a list. */
typedef struct {
    const unsigned char *p;
    size_t len;
    int list;
} rlp_item;

/* Reads the canonical item at buf[*pos..end) and advances *pos past it. */
static hk_err rlp_read(const unsigned char *buf, size_t end, size_t *pos,
                       rlp_item *it, char *why, size_t why_len)
{
    size_t at = *pos, hdr = 1, n, i, lenlen = 0;
    unsigned b;
    uint64_t v = 0;

    if (at >= end) {
        hk_why(why, why_len, "RLP: truncated at byte %zu", at);
        return HK_ERR_DECODE;
    }
    b = buf[at];
    it->list = b >= 0xc0;
    if (b < 0x80) { /* a byte below 0x80 is its own encoding */
        it->p = buf + at;
        it->len = 1;
        *pos = at + 1;
        return HK_OK;
    }
    if (b <= 0xb7 || (b >= 0xc0 && b <= 0xf7)) {
        n = b - (b <= 0xb7 ? 0x80u : 0xc0u);
    } else {
        lenlen = b - (b <= 0xbf ? 0xb7u : 0xf7u);
        if (end - at - 1 < lenlen) {
            hk_why(why, why_len, "RLP: truncated length at byte %zu", at);
            return HK_ERR_DECODE;
        }
        if (buf[at + 1] == 0) {
            hk_why(why, why_len, "RLP: length with a leading zero at byte %zu",
                   at);
            return HK_ERR_DECODE;
        }
        for (i = 0; i < lenlen; i++)
            v = (v << 8) | buf[at + 1 + i];
        if (v < 56) {
            hk_why(why, why_len,
                   "RLP: long form for a short length at "
                   "byte %zu",
                   at);
            return HK_ERR_DECODE;
        }
        if (v > end) {
            hk_why(why, why_len, "RLP: length beyond the input at byte %zu",
                   at);
            return HK_ERR_DECODE;
        }
        n = (size_t)v;
        hdr = 1 + lenlen;
    }
    if (end - at - hdr < n) {
        hk_why(why, why_len, "RLP: item at byte %zu runs past the end", at);
        return HK_ERR_DECODE;
    }
    if (!it->list && n == 1 && buf[at + 1] < 0x80) {
        hk_why(why, why_len,
               "RLP: a byte below 0x80 wrapped in a string at "
               "byte %zu",
               at);
        return HK_ERR_DECODE;
    }
    it->p = buf + at + hdr;
    it->len = n;
    *pos = at + hdr + n;
    return HK_OK;
}

static hk_err rlp_walk(const unsigned char *buf, size_t end, size_t *pos,
                       int depth, char *why, size_t why_len)
{
    rlp_item it;
    size_t p, stop;
    hk_err e;

    if ((e = rlp_read(buf, end, pos, &it, why, why_len)) != HK_OK)
        return e;
    if (!it.list)
        return HK_OK;
    if (depth == 0) {
        hk_why(why, why_len, "RLP: lists nested too deep");
        return HK_ERR_DECODE;
    }
    p = (size_t)(it.p - buf);
    stop = p + it.len;
    while (p < stop)
        if ((e = rlp_walk(buf, stop, &p, depth - 1, why, why_len)) != HK_OK)
            return e;
    return HK_OK;
}

hk_err hk_rlp_check(const unsigned char *buf, size_t len, int max_depth,
                    char *why, size_t why_len)
{
    size_t pos = 0;
    hk_err e;

    if (buf == NULL || max_depth < 0)
        return HK_ERR_ARG;
    if ((e = rlp_walk(buf, len, &pos, max_depth, why, why_len)) != HK_OK)
        return e;
    if (pos != len) {
        hk_why(why, why_len, "RLP: %zu bytes after the item", len - pos);
        return HK_ERR_DECODE;
    }
    return HK_OK;
}

/* A canonical unsigned integer of at most width bytes, right-aligned into
 * out[width] big-endian. */
static hk_err rlp_uint(const rlp_item *it, size_t width, unsigned char *out,
                       const char *name, char *why, size_t why_len)
{
    if (it->list) {
        hk_why(why, why_len, "%s: a list where an integer belongs", name);
        return HK_ERR_DECODE;
    }
    if (it->len > width) {
        hk_why(why, why_len, "%s: wider than %zu bits", name, width * 8);
        return HK_ERR_DECODE;
    }
    if (it->len > 0 && it->p[0] == 0) {
        hk_why(why, why_len, "%s: integer with a leading zero", name);
        return HK_ERR_DECODE;
    }
    memset(out, 0, width);
    if (it->len > 0)
        memcpy(out + width - it->len, it->p, it->len);
    return HK_OK;
}

static hk_err rlp_u64(const rlp_item *it, uint64_t *v, const char *name,
                      char *why, size_t why_len)
{
    unsigned char b[8];
    size_t i;
    hk_err e;

    if ((e = rlp_uint(it, sizeof(b), b, name, why, why_len)) != HK_OK)
        return e;
    *v = 0;
    for (i = 0; i < sizeof(b); i++)
        *v = (*v << 8) | b[i];
    return HK_OK;
}

/* access_list: [[address (20 bytes), [storage key (32 bytes), ...]], ...] */
static hk_err parse_access_list(const rlp_item *al, hk_eth_tx *tx, char *why,
                                size_t why_len)
{
    const unsigned char *base = al->p;
    size_t pos = 0, epos, kpos;
    rlp_item entry, addr, keys, key;
    hk_err e;

    if (!al->list) {
        hk_why(why, why_len, "access_list: not a list");
        return HK_ERR_DECODE;
    }
    while (pos < al->len) {
        if ((e = rlp_read(base, al->len, &pos, &entry, why, why_len)) != HK_OK)
            return e;
        if (++tx->access_list_len > HK_ETH_ACCESS_MAX) {
            hk_why(why, why_len, "access_list: more than %d entries",
                   HK_ETH_ACCESS_MAX);
            return HK_ERR_TOO_BIG;
        }
        epos = 0;
        if (!entry.list ||
            (e = rlp_read(entry.p, entry.len, &epos, &addr, why, why_len)) !=
                HK_OK ||
            (e = rlp_read(entry.p, entry.len, &epos, &keys, why, why_len)) !=
                HK_OK ||
            epos != entry.len || addr.list || addr.len != HK_ETH_ADDR_LEN ||
            !keys.list) {
            hk_why(why, why_len,
                   "access_list: entry %zu is not [address, "
                   "[keys]]",
                   tx->access_list_len - 1);
            return HK_ERR_DECODE;
        }
        kpos = 0;
        while (kpos < keys.len) {
            if ((e = rlp_read(keys.p, keys.len, &kpos, &key, why, why_len)) !=
                HK_OK)
                return e;
            if (key.list || key.len != 32) {
                hk_why(why, why_len,
                       "access_list: entry %zu: a storage key "
                       "is not 32 bytes",
                       tx->access_list_len - 1);
                return HK_ERR_DECODE;
            }
            if (++tx->access_list_keys > HK_ETH_ACCESS_KEYS_MAX) {
                hk_why(why, why_len, "access_list: more than %d storage keys",
                       HK_ETH_ACCESS_KEYS_MAX);
                return HK_ERR_TOO_BIG;
            }
        }
    }
    return HK_OK;
}

/* out = a * m (256-bit big-endian times 64-bit); 0 on overflow. */
static int u256_mul_u64(const unsigned char a[32], uint64_t m,
                        unsigned char out[32])
{
    unsigned __int128 carry = 0;
    int i;

    for (i = 31; i >= 0; i--) {
        carry += (unsigned __int128)a[i] * m;
        out[i] = (unsigned char)carry;
        carry >>= 8;
    }
    return carry == 0;
}

hk_err hk_eth_tx_parse(const unsigned char *raw, size_t len, hk_eth_tx **out,
                       char *why, size_t why_len)
{
    static const char *const names[] = {
        "chain_id",        "nonce",     "max_priority_fee_per_gas",
        "max_fee_per_gas", "gas_limit", "to",
        "value",           "data",      "access_list"};
    hk_eth_tx *tx = NULL;
    rlp_item top, f[9];
    size_t pos = 1, fpos, nf = 0;
    hk_err e;

    if (out != NULL)
        *out = NULL;
    if (raw == NULL || out == NULL)
        return HK_ERR_ARG;
    hk_why(why, why_len, "%s", "");
    if (len > HK_ETH_TX_MAX) {
        hk_why(why, why_len, "transaction larger than %d bytes", HK_ETH_TX_MAX);
        return HK_ERR_TOO_BIG;
    }
    if (len == 0 || raw[0] != 0x02) {
        hk_why(why, why_len, "not an EIP-1559 (type 2) transaction");
        return len == 0 ? HK_ERR_DECODE : HK_ERR_TX_UNSUPPORTED;
    }
    if ((e = hk_rlp_check(raw + 1, len - 1, HK_RLP_MAX_DEPTH, why, why_len)) !=
        HK_OK)
        return e;
    if ((e = rlp_read(raw, len, &pos, &top, why, why_len)) != HK_OK)
        return e;
    if (!top.list) {
        hk_why(why, why_len, "the transaction is not an RLP list");
        return HK_ERR_DECODE;
    }
    fpos = 0;
    while (fpos < top.len) {
        if (nf == 9) {
            hk_why(why, why_len,
                   "more than nine fields (a signed "
                   "transaction?)");
            return HK_ERR_TX_UNSUPPORTED;
        }
        if ((e = rlp_read(top.p, top.len, &fpos, &f[nf], why, why_len)) !=
            HK_OK)
            return e;
        nf++;
    }
    if (nf != 9) {
        hk_why(why, why_len, "%zu fields, an EIP-1559 transaction has nine",
               nf);
        return HK_ERR_DECODE;
    }
    if ((tx = calloc(1, sizeof(*tx))) == NULL ||
        (tx->raw = malloc(len)) == NULL) {
        e = HK_ERR_NOMEM;
        goto done;
    }
    memcpy(tx->raw, raw, len);
    tx->raw_len = len;
    tx->payload_off = (size_t)(top.p - raw);
    tx->payload_len = top.len;
    if ((e = rlp_u64(&f[0], &tx->chain_id, names[0], why, why_len)) != HK_OK ||
        (e = rlp_u64(&f[1], &tx->nonce, names[1], why, why_len)) != HK_OK ||
        (e = rlp_uint(&f[2], 32, tx->max_priority_fee_per_gas, names[2], why,
                      why_len)) != HK_OK ||
        (e = rlp_uint(&f[3], 32, tx->max_fee_per_gas, names[3], why,
                      why_len)) != HK_OK ||
        (e = rlp_u64(&f[4], &tx->gas_limit, names[4], why, why_len)) != HK_OK ||
        (e = rlp_uint(&f[6], 32, tx->value, names[6], why, why_len)) != HK_OK)
        goto done;
    e = HK_ERR_DECODE;
    if (tx->chain_id == 0) {
        hk_why(why, why_len, "chain_id: zero");
        goto done;
    }
    if (f[5].list || (f[5].len != 0 && f[5].len != HK_ETH_ADDR_LEN)) {
        hk_why(why, why_len, "to: neither 20 bytes nor empty");
        goto done;
    }
    tx->create = f[5].len == 0;
    if (!tx->create)
        memcpy(tx->to, f[5].p, HK_ETH_ADDR_LEN);
    if (f[7].list) {
        hk_why(why, why_len, "data: a list");
        goto done;
    }
    tx->data = tx->raw + (f[7].p - raw);
    tx->data_len = f[7].len;
    if ((e = parse_access_list(&f[8], tx, why, why_len)) != HK_OK)
        goto done;
    e = HK_ERR_DECODE;
    if (memcmp(tx->max_priority_fee_per_gas, tx->max_fee_per_gas, 32) > 0) {
        hk_why(why, why_len, "max_priority_fee_per_gas above max_fee_per_gas");
        goto done;
    }
    if (!u256_mul_u64(tx->max_fee_per_gas, tx->gas_limit, tx->max_fee_total)) {
        hk_why(why, why_len, "gas_limit * max_fee_per_gas beyond 256 bits");
        goto done;
    }
    hk_keccak256(tx->raw, tx->raw_len, tx->digest);
    *out = tx;
    tx = NULL;
    e = HK_OK;
done:
    hk_eth_tx_free(tx);
    return e;
}

void hk_eth_tx_free(hk_eth_tx *tx)
{
    if (tx == NULL)
        return;
    free(tx->raw);
    free(tx);
}

/* Writes the RLP header of a payload of n bytes (base 0x80 string, 0xc0
 * list) to out (at most 9 bytes); returns its length. */
static size_t rlp_header(unsigned char *out, unsigned base, size_t n)
{
    size_t k = 0, i;

    if (n < 56) {
        out[0] = (unsigned char)(base + n);
        return 1;
    }
    for (i = n; i > 0; i >>= 8)
        k++;
    out[0] = (unsigned char)(base + 55 + k);
    for (i = 0; i < k; i++)
        out[1 + i] = (unsigned char)(n >> (8 * (k - 1 - i)));
    return 1 + k;
}

/* The canonical RLP of a big-endian unsigned integer (at most 33 bytes). */
static size_t rlp_put_uint(unsigned char *out, const unsigned char *be,
                           size_t width)
{
    size_t skip = 0, n;

    while (skip < width && be[skip] == 0)
        skip++;
    n = width - skip;
    if (n == 1 && be[skip] < 0x80) {
        out[0] = be[skip];
        return 1;
    }
    out[0] = (unsigned char)(0x80 + n);
    memcpy(out + 1, be + skip, n);
    return 1 + n;
}

/* 1 if x is in [1, bound], comparing big-endian 32-byte values. */
static int in_range(const unsigned char x[32], const unsigned char bound[32])
{
    static const unsigned char zero[32];

    return memcmp(x, zero, 32) != 0 && memcmp(x, bound, 32) <= 0;
}

hk_err hk_eth_tx_signed(const hk_eth_tx *tx, const unsigned char r[32],
                        const unsigned char s[32], int y_parity,
                        unsigned char **out, size_t *out_len)
{
    unsigned char tail[1 + 2 * 33], hdr[9], n_minus_1[32], y;
    size_t tl = 0, hl, total;
    unsigned char *buf = NULL;
    int i;

    if (out != NULL)
        *out = NULL;
    if (out_len != NULL)
        *out_len = 0;
    if (tx == NULL || r == NULL || s == NULL || out == NULL ||
        out_len == NULL || (y_parity != 0 && y_parity != 1))
        return HK_ERR_ARG;
    memcpy(n_minus_1, hk_k1_n, 32);
    for (i = 31; i >= 0 && n_minus_1[i]-- == 0; i--)
        ;
    if (!in_range(r, n_minus_1) || !in_range(s, hk_k1_half_n))
        return HK_ERR_SCALAR;
    y = (unsigned char)y_parity;
    tl += rlp_put_uint(tail + tl, &y, 1);
    tl += rlp_put_uint(tail + tl, r, 32);
    tl += rlp_put_uint(tail + tl, s, 32);
    hl = rlp_header(hdr, 0xc0, tx->payload_len + tl);
    total = 1 + hl + tx->payload_len + tl;
    if ((buf = malloc(total)) == NULL)
        return HK_ERR_NOMEM;
    buf[0] = 0x02;
    memcpy(buf + 1, hdr, hl);
    memcpy(buf + 1 + hl, tx->raw + tx->payload_off, tx->payload_len);
    memcpy(buf + 1 + hl + tx->payload_len, tail, tl);
    *out = buf;
    *out_len = total;
    return HK_OK;
}

hk_err hk_eth_address(const unsigned char *pub, size_t pub_len,
                      unsigned char addr[HK_ETH_ADDR_LEN])
{
    secp256k1_pubkey pk;
    unsigned char full[65], h[HK_KECCAK256_LEN];
    size_t n = sizeof(full);

    if (pub == NULL || addr == NULL)
        return HK_ERR_ARG;
    if (!secp256k1_ec_pubkey_parse(secp256k1_context_static, &pk, pub,
                                   pub_len) ||
        !secp256k1_ec_pubkey_serialize(secp256k1_context_static, full, &n, &pk,
                                       SECP256K1_EC_UNCOMPRESSED))
        return HK_ERR_POINT;
    hk_keccak256(full + 1, 64, h);
    memcpy(addr, h + sizeof(h) - HK_ETH_ADDR_LEN, HK_ETH_ADDR_LEN);
    return HK_OK;
}

void hk_eth_address_str(const unsigned char addr[HK_ETH_ADDR_LEN],
                        char out[HK_ETH_ADDR_STR])
{
    char hex[2 * HK_ETH_ADDR_LEN + 1];
    unsigned char h[HK_KECCAK256_LEN];
    size_t i;

    hk_hex(addr, HK_ETH_ADDR_LEN, hex);
    hk_keccak256((const unsigned char *)hex, 2 * HK_ETH_ADDR_LEN, h);
    out[0] = '0';
    out[1] = 'x';
    for (i = 0; i < 2 * HK_ETH_ADDR_LEN; i++) {
        unsigned nib = (h[i / 2] >> (i % 2 ? 0 : 4)) & 0xf;
        char c = hex[i];
        out[2 + i] = (c >= 'a' && nib >= 8) ? (char)(c - 'a' + 'A') : c;
    }
    out[2 + 2 * HK_ETH_ADDR_LEN] = 0;
}

void hk_u256_dec(const unsigned char be[32], char out[HK_U256_DEC])
{
    unsigned char w[32];
    char rev[HK_U256_DEC];
    size_t n = 0, i;
    int nonzero;

    memcpy(w, be, 32);
    do {
        unsigned rem = 0;
        nonzero = 0;
        for (i = 0; i < 32; i++) { /* w /= 10, long division */
            unsigned cur = (rem << 8) | w[i];
            w[i] = (unsigned char)(cur / 10);
            rem = cur % 10;
            nonzero |= w[i];
        }
        rev[n++] = (char)('0' + rem);
    } while (nonzero);
    for (i = 0; i < n; i++)
        out[i] = rev[n - 1 - i];
    out[n] = 0;
}

int hk_u256_add(const unsigned char a[32], const unsigned char b[32],
                unsigned char sum[32])
{
    unsigned carry = 0, t;
    int i;

    for (i = 31; i >= 0; i--) {
        t = (unsigned)a[i] + b[i] + carry;
        sum[i] = (unsigned char)t;
        carry = t >> 8;
    }
    return carry == 0;
}
