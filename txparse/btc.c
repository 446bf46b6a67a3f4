/* Bitcoin hashes, addresses and base64 (btc.h). */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/ripemd160.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "txparse/btc.h"

hk_err hk_btc_net_parse(const char *name, hk_btc_net *net)
{
    if (name == NULL || net == NULL)
        return HK_ERR_ARG;
    if (!strcmp(name, "main") || !strcmp(name, "mainnet") ||
        !strcmp(name, "bitcoin"))
        *net = HK_BTC_MAINNET;
    else if (!strcmp(name, "test") || !strcmp(name, "testnet") ||
             !strcmp(name, "signet"))
        *net = HK_BTC_TESTNET;
    else if (!strcmp(name, "regtest"))
        *net = HK_BTC_REGTEST;
    else
        return HK_ERR_ARG;
    return HK_OK;
}

const char *hk_btc_net_name(hk_btc_net net)
{
    return net == HK_BTC_MAINNET   ? "mainnet"
           : net == HK_BTC_TESTNET ? "testnet"
                                   : "regtest";
}

void hk_sha256d(const unsigned char *in, size_t len, unsigned char out[32])
{
    unsigned char h[SHA256_DIGEST_LENGTH];

    SHA256(in, len, h);
    SHA256(h, sizeof(h), out);
}

void hk_hash160(const unsigned char *in, size_t len, unsigned char out[20])
{
    unsigned char h[SHA256_DIGEST_LENGTH];
    struct ripemd160_ctx ctx;

    SHA256(in, len, h);
    ripemd160_init(&ctx);
    ripemd160_update(&ctx, sizeof(h), h);
    ripemd160_digest(&ctx, RIPEMD160_DIGEST_SIZE, out);
}

/* base58check of version || payload[20] (25 bytes with the checksum) */
static void base58check(unsigned char version, const unsigned char *payload,
                        char *out)
{
    static const char digits[] =
        "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    unsigned char b[25], sum[32];
    char rev[40];
    size_t n = 0, zeros = 0, i;
    int nonzero;

    b[0] = version;
    memcpy(b + 1, payload, 20);
    hk_sha256d(b, 21, sum);
    memcpy(b + 21, sum, 4);
    while (zeros < sizeof(b) && b[zeros] == 0)
        zeros++;
    do { /* b /= 58 until zero; remainders are the digits, last first */
        unsigned rem = 0;
        nonzero = 0;
        for (i = 0; i < sizeof(b); i++) {
            unsigned cur = (rem << 8) | b[i];
            b[i] = (unsigned char)(cur / 58);
            rem = cur % 58;
            nonzero |= b[i];
        }
        rev[n++] = digits[rem];
    } while (nonzero);
    if (zeros == sizeof(b)) /* cannot happen: the checksum is not all 0 */
        n = 0;
    for (i = 0; i < zeros; i++)
        *out++ = '1';
    for (i = 0; i < n; i++)
        *out++ = rev[n - 1 - i];
    *out = 0;
}

/* BIP173 checksum polymod over 5-bit values */
static uint32_t bech32_polymod(const unsigned char *v, size_t n)
{
    static const uint32_t gen[5] = {0x3b6a57b2, 0x26508e6d, 0x1ea119fa,
                                    0x3d4233dd, 0x2a1462b3};
    uint32_t chk = 1, top;
    size_t i, j;

    for (i = 0; i < n; i++) {
        top = chk >> 25;
        chk = ((chk & 0x1ffffff) << 5) ^ v[i];
        for (j = 0; j < 5; j++)
            if ((top >> j) & 1)
                chk ^= gen[j];
    }
    return chk;
}

/* segwit address: hrp "1" data(witver, program in 5-bit groups) checksum;
 * bech32 (constant 1) for v0, bech32m (0x2bc830a3, BIP350) above. */
static void segwit_address(const char *hrp, unsigned witver,
                           const unsigned char *prog, size_t plen, char *out)
{
    static const char charset[] = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    unsigned char v[4 + 1 + 1 + 65 + 6];
    size_t hl = strlen(hrp), n = 0, i, d0;
    uint32_t acc = 0, pm;
    unsigned bits = 0;

    for (i = 0; i < hl; i++)
        v[n++] = (unsigned char)(hrp[i] >> 5);
    v[n++] = 0;
    for (i = 0; i < hl; i++)
        v[n++] = (unsigned char)(hrp[i] & 31);
    d0 = n;
    v[n++] = (unsigned char)witver;
    for (i = 0; i < plen; i++) { /* 8-bit to 5-bit groups, zero padded */
        acc = (acc << 8) | prog[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            v[n++] = (acc >> bits) & 31;
        }
    }
    if (bits > 0)
        v[n++] = (acc << (5 - bits)) & 31;
    memset(v + n, 0, 6);
    pm = bech32_polymod(v, n + 6) ^ (witver == 0 ? 1u : 0x2bc830a3u);
    for (i = 0; i < 6; i++)
        v[n + i] = (pm >> (5 * (5 - i))) & 31;
    n += 6;
    memcpy(out, hrp, hl);
    out += hl;
    *out++ = '1';
    for (i = d0; i < n; i++)
        *out++ = charset[v[i]];
    *out = 0;
}

hk_err hk_btc_address(const unsigned char *spk, size_t n, hk_btc_net net,
                      char out[HK_BTC_ADDR_MAX])
{
    static const char *const hrp[] = {"bc", "tb", "bcrt"};
    int main_ = net == HK_BTC_MAINNET;

    if (spk == NULL || out == NULL || (unsigned)net > HK_BTC_REGTEST)
        return HK_ERR_ARG;
    out[0] = 0;
    if (n == 25 && spk[0] == 0x76 && spk[1] == 0xa9 && spk[2] == 20 &&
        spk[23] == 0x88 && spk[24] == 0xac) { /* P2PKH */
        base58check(main_ ? 0x00 : 0x6f, spk + 3, out);
        return HK_OK;
    }
    if (n == 23 && spk[0] == 0xa9 && spk[1] == 20 && spk[22] == 0x87) {
        base58check(main_ ? 0x05 : 0xc4, spk + 2, out); /* P2SH */
        return HK_OK;
    }
    /* witness program (BIP141): OP_0 or OP_1..OP_16, one push of 2..40 */
    if (n >= 4 && n <= 42 &&
        (spk[0] == 0 || (spk[0] >= 0x51 && spk[0] <= 0x60)) &&
        spk[1] == n - 2 && spk[1] >= 2) {
        unsigned v = spk[0] == 0 ? 0 : spk[0] - 0x50u;
        if (v == 0 && spk[1] != 20 && spk[1] != 32)
            return HK_ERR_TX_UNSUPPORTED;
        segwit_address(hrp[net], v, spk + 2, spk[1], out);
        return HK_OK;
    }
    return HK_ERR_TX_UNSUPPORTED;
}
