/* txparse/: Keccak-256 (known digests, block boundaries), the strict RLP
 * decoder and EIP-1559 transactions (a fixed transaction's digest and
 * signed form, the sender's address, every truncation and non-canonical
 * form refused), Bitcoin addresses (BIP173/BIP350 and base58 examples),
 * the BIP174 test vectors (every invalid PSBT refused, every valid one
 * parsed and written back byte for byte) and BIP143's "Native P2WPKH"
 * example: its sighash computed from a PSBT, its signature written as a
 * partial signature. tests/py/test_txparse.py cross-checks against Python
 * implementations. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/hex.h"
#include "tests/unit/bip174_vectors.h"
#include "tests/unit/check.h"
#include "txparse/eth.h"
#include "txparse/keccak.h"
#include "txparse/psbt.h"

/* hex (lowercase, even length) into a new buffer */
static unsigned char *unhex(const char *h, size_t *n)
{
    size_t len = strlen(h);
    unsigned char *b = malloc(len / 2 + 1);

    CHECK(b != NULL && len % 2 == 0 && hk_unhex(h, len, b, len / 2));
    *n = len / 2;
    return b;
}

static int eq_hex(const unsigned char *b, size_t n, const char *h)
{
    char s[2 * 64 + 1];

    CHECK(n <= 64);
    hk_hex(b, n, s);
    return strcmp(s, h) == 0;
}

static void test_keccak(void)
{
    static const struct {
        size_t n;
        const char *hex;
    } as[] = {
        /* "a" * n around the 136-byte rate (pycryptodome) */
        {135,
         "34367dc248bbd832f4e3e69dfaac2f92638bd0bbd18f2912ba4ef454919cf446"},
        {136,
         "a6c4d403279fe3e0af03729caada8374b5ca54d8065329a3ebcaeb4b60aa386e"},
        {137,
         "d869f639c7046b4929fc92a4d988a8b22c55fbadb802c0c66ebcd484f1915f39"},
        {300,
         "5b7e0e47a96f32a88b4f14ca177982790807c40e1a105742ba0fc1babe1ef826"},
    };
    unsigned char h[32], a[300];
    size_t i;

    hk_keccak256(NULL, 0, h);
    CHECK(eq_hex(h, 32,
                 "c5d2460186f7233c927e7db2dcc703c0"
                 "e500b653ca82273b7bfad8045d85a470"));
    hk_keccak256((const unsigned char *)"abc", 3, h);
    CHECK(eq_hex(h, 32,
                 "4e03657aea45a94fc7d47ba826c8d667"
                 "c0d1e6e33a64a036ec44f58fa12d6c45"));
    memset(a, 'a', sizeof(a));
    for (i = 0; i < sizeof(as) / sizeof(as[0]); i++) {
        hk_keccak256(a, as[i].n, h);
        CHECK(eq_hex(h, 32, as[i].hex));
    }
}

/* chain 1, nonce 7, tip 2 gwei, cap 100 gwei, gas 21000, to 0x35..35,
 * 1 ether, no data, no access list; signed with the key 0x4c0883a6...
 * (address 0x2c7536E3605D9C16a7a3D7b1898e529396a65c23); digest and
 * signature from pycryptodome's Keccak and coincurve. */
static const char eth_unsigned[] =
    "02f00107847735940085174876e800825208943535353535353535353535353535353535"
    "353535880de0b6b3a764000080c0";
static const char eth_digest[] =
    "18d8b29fd10a040b960a0244bb3a6e9ce53fb732da67d74417f3a38dd6dc4923";
static const char eth_r[] =
    "b97093485661284e2ef8e52cb8a1bfa0da000164da70eb183a33bd3bda22bc8a";
static const char eth_s[] =
    "4df39bf5055c65ef9d1d22e701b541257353c82123ffaf6f10865574c1bb4cd6";
static const char eth_signed[] =
    "02f8730107847735940085174876e80082520894353535353535353535353535353535353"
    "5353535880de0b6b3a764000080c080a0b97093485661284e2ef8e52cb8a1bfa0da000164"
    "da70eb183a33bd3bda22bc8aa04df39bf5055c65ef9d1d22e701b541257353c82123ffaf"
    "6f10865574c1bb4cd6";

static hk_err eth_parse_hex(const char *hex, hk_eth_tx **tx)
{
    size_t n;
    unsigned char *b = unhex(hex, &n);
    char why[128];
    hk_err e = hk_eth_tx_parse(b, n, tx, why, sizeof(why));

    CHECK(e == HK_OK || why[0] != 0); /* a refusal says why */
    free(b);
    return e;
}

static void test_eth_tx(void)
{
    hk_eth_tx *tx = NULL;
    unsigned char *raw, *b, r[32], s[32], *sig = NULL, big[32];
    size_t n, i, sn;
    char dec[HK_U256_DEC], addr[HK_ETH_ADDR_STR];

    CHECK_OK(eth_parse_hex(eth_unsigned, &tx));
    CHECK(tx->chain_id == 1 && tx->nonce == 7 && tx->gas_limit == 21000 &&
          !tx->create && tx->data_len == 0 && tx->access_list_len == 0);
    CHECK(eq_hex(tx->digest, 32, eth_digest));
    hk_u256_dec(tx->value, dec);
    CHECK(strcmp(dec, "1000000000000000000") == 0);
    hk_u256_dec(tx->max_fee_total, dec);
    CHECK(strcmp(dec, "2100000000000000") == 0); /* 21000 * 100 gwei */
    hk_eth_address_str(tx->to, addr);
    CHECK(strcmp(addr, "0x3535353535353535353535353535353535353535") == 0);
    b = unhex(eth_r, &n);
    memcpy(r, b, 32);
    free(b);
    b = unhex(eth_s, &n);
    memcpy(s, b, 32);
    free(b);
    CHECK_OK(hk_eth_tx_signed(tx, r, s, 0, &sig, &sn));
    b = unhex(eth_signed, &n);
    CHECK(sn == n && memcmp(sig, b, n) == 0);
    free(b);
    free(sig);
    /* refused signatures: y not 0/1, s above n/2, r zero */
    CHECK_ERR(hk_eth_tx_signed(tx, r, s, 2, &sig, &sn), HK_ERR_ARG);
    memset(big, 0xff, sizeof(big));
    CHECK_ERR(hk_eth_tx_signed(tx, r, big, 0, &sig, &sn), HK_ERR_SCALAR);
    memset(big, 0, sizeof(big));
    CHECK_ERR(hk_eth_tx_signed(tx, big, s, 0, &sig, &sn), HK_ERR_SCALAR);
    CHECK(sig == NULL);
    /* a signed transaction is not an unsigned one */
    hk_eth_tx_free(tx);
    tx = NULL;
    CHECK_ERR(eth_parse_hex(eth_signed, &tx), HK_ERR_TX_UNSUPPORTED);

    /* every truncation refused */
    raw = unhex(eth_unsigned, &n);
    for (i = 0; i < n; i++) {
        CHECK(hk_eth_tx_parse(raw, i, &tx, NULL, 0) != HK_OK);
        CHECK(tx == NULL);
    }
    free(raw);
}

static void test_eth_refusals(void)
{
    static const struct {
        const char *hex;
        hk_err e;
    } bad[] = {
        /* legacy and EIP-2930 transactions */
        {"f86b8085", HK_ERR_TX_UNSUPPORTED},
        {"01c0", HK_ERR_TX_UNSUPPORTED},
        /* wrong field counts */
        {"02c0", HK_ERR_DECODE},
        {"02c80180010280808080", HK_ERR_DECODE},
        /* nonce 0x00: an integer with a leading zero */
        {"02c90100010280808080c0", HK_ERR_DECODE},
        /* chain id 5 as 0x8105: a byte below 0x80 wrapped */
        {"02ca810580010280808080c0", HK_ERR_DECODE},
        /* long-form list length for a short list */
        {"02f8090180010280808080c0", HK_ERR_DECODE},
        /* `to` of 3 bytes */
        {"02cc018001028083aabbcc8080c0", HK_ERR_DECODE},
        /* chain id 0 */
        {"02c98080010280808080c0", HK_ERR_DECODE},
        /* tip 3 above cap 2 */
        {"02c90180030280808080c0", HK_ERR_DECODE},
        /* access list entry that is not [address, [keys]] */
        {"02ca0180010280808080c101", HK_ERR_DECODE},
        /* a storage key of 31 bytes */
        {"02f8400180010280808080f7f694111111111111111111111111111111111111"
         "1111e09f2222222222222222222222222222222222222222222222222222222222222"
         "2",
         HK_ERR_DECODE},
        /* trailing byte after the list */
        {"02c90180010280808080c000", HK_ERR_DECODE},
        /* chain id 2^64: wider than 64 bits */
        {"02d28901000000000000000080010280808080c0", HK_ERR_DECODE},
        /* nesting deeper than the access list allows */
        {"02cd0180010280808080c4c3c2c1c0", HK_ERR_DECODE},
    };
    hk_eth_tx *tx = NULL;
    size_t i;

    /* the minimal valid transaction: a contract creation with nothing */
    CHECK_OK(eth_parse_hex("02c90180010280808080c0", &tx));
    CHECK(tx->create && tx->chain_id == 1 && tx->gas_limit == 0);
    hk_eth_tx_free(tx);
    tx = NULL;
    /* data dead, access list [[0x11.., [0x22.., 0x33..]], [0x44.., []]] */
    CHECK_OK(eth_parse_hex(
        "02f87e0180010280808082deadf872f8599411111111111111111111111111111111"
        "11111111f842a0222222222222222222222222222222222222222222222222222222"
        "2222222222a033333333333333333333333333333333333333333333333333333333"
        "33333333d6944444444444444444444444444444444444444444c0",
        &tx));
    CHECK(tx->data_len == 2 && tx->data[0] == 0xde && tx->data[1] == 0xad &&
          tx->access_list_len == 2 && tx->access_list_keys == 2);
    hk_eth_tx_free(tx);
    tx = NULL;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (eth_parse_hex(bad[i].hex, &tx) != bad[i].e) {
            fprintf(stderr, "eth case %zu\n", i);
            CHECK(0);
        }
        CHECK(tx == NULL);
    }
    CHECK_ERR(hk_rlp_check((const unsigned char *)"\xc1\xc0", 2, 0, NULL, 0),
              HK_ERR_DECODE);
    CHECK_OK(hk_rlp_check((const unsigned char *)"\xc1\xc0", 2, 2, NULL, 0));
}

static void test_eth_address(void)
{
    /* the public key of 0x4c0883a6...: address 0x2c75...5c23 */
    static const char pub[] =
        "044e3b81af9c2234cad09d679ce6035ed1392347ce64ce405f5dcd36228a25de6e"
        "47fd35c4215d1edf53e6f83de344615ce719bdb0fd878f6ed76f06dd277956de";
    unsigned char *b, a[HK_ETH_ADDR_LEN], a2[HK_ETH_ADDR_LEN];
    char str[HK_ETH_ADDR_STR];
    size_t n;

    b = unhex(pub, &n);
    CHECK_OK(hk_eth_address(b, n, a));
    hk_eth_address_str(a, str);
    CHECK(strcmp(str, "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23") == 0);
    b[0] = 0x02; /* compressed (y is even): the same address */
    CHECK_OK(hk_eth_address(b, 33, a2));
    CHECK(memcmp(a, a2, sizeof(a)) == 0);
    b[0] = 0x04;
    b[64] ^= 1; /* off the curve */
    CHECK_ERR(hk_eth_address(b, n, a), HK_ERR_POINT);
    CHECK_ERR(hk_eth_address(b, 64, a), HK_ERR_POINT);
    free(b);
}

static void test_btc_address(void)
{
    static const struct {
        hk_btc_net net;
        const char *spk, *addr;
    } v[] = {
        {HK_BTC_MAINNET, "0014751e76e8199196d454941c45d1b3a323f1433bd6",
         "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"},
        {HK_BTC_TESTNET,
         "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262",
         "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7"},
        {HK_BTC_MAINNET,
         "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
         "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0"},
        {HK_BTC_MAINNET, "76a91477bff20c60e522dfaa3350c39b030a5d004e839a88ac",
         "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"},
        {HK_BTC_MAINNET, "a914b472a266d0bd89c13706a4132ccfb16f7c3b9fcb87",
         "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"},
    };
    char out[HK_BTC_ADDR_MAX];
    unsigned char *b;
    size_t i, n;

    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        b = unhex(v[i].spk, &n);
        CHECK_OK(hk_btc_address(b, n, v[i].net, out));
        if (strcmp(out, v[i].addr) != 0) {
            fprintf(stderr, "address %zu: %s\n", i, out);
            CHECK(0);
        }
        free(b);
    }
    b = unhex("6a0401020304", &n); /* OP_RETURN */
    CHECK_ERR(hk_btc_address(b, n, HK_BTC_MAINNET, out), HK_ERR_TX_UNSUPPORTED);
    free(b);
}

static void test_bip174_vectors(void)
{
    size_t i, n, n2;
    unsigned char *b, *again;
    hk_psbt *ps = NULL;
    char why[160];
    hk_err e;

    for (i = 0; i < sizeof(bip174_vectors) / sizeof(bip174_vectors[0]); i++) {
        b = unhex(bip174_vectors[i].hex, &n);
        e = hk_psbt_parse(b, n, HK_BTC_TESTNET, &ps, why, sizeof(why));
        if ((e == HK_OK) != bip174_vectors[i].valid) {
            fprintf(stderr, "BIP174 \"%s\": %s (%s)\n", bip174_vectors[i].name,
                    hk_strerror(e), why);
            CHECK(0);
        }
        if (e == HK_OK) { /* written back byte for byte */
            CHECK_OK(hk_psbt_serialize(ps, &again, &n2));
            CHECK(n2 == n && memcmp(again, b, n) == 0);
            free(again);
            hk_psbt_free(ps);
            ps = NULL;
        } else {
            CHECK(ps == NULL && why[0] != 0);
        }
        free(b);
    }
}

/* BIP143 "Native P2WPKH": its unsigned transaction in a PSBT with both
 * witness UTXOs (input 0 spends a P2PK output of 6.25 BTC, input 1 a
 * P2WPKH output of 6 BTC). */
static const char bip143_tx[] =
    "0100000002fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4e4ad96"
    "9f0000000000eeffffffef51e1b804cc89d182d279655c3aa89e815b1b309fe287d9b2b5"
    "5d57b90ec68a0100000000ffffffff02202cb206000000001976a9148280b37df378db99"
    "f66f85c95a783a76ac7a6d5988ac9093510d000000001976a9143bde42dbee7e4dbe6a21"
    "b2d50ce2f0167faa815988ac11000000";
static const char bip143_utxo0[] = /* 6.25 BTC to a P2PK script */
    "40be402500000000232103c9f4836b9a4f77fc0d81f7bcb01b7f1b35916864b9476c241c"
    "e9fc198bd25432ac";
static const char bip143_utxo1[] = /* 6 BTC to 0014 1d0f...71a1 */
    "0046c323000000001600141d0f172a0ecb48aee1be1f2687d2963ae33f71a1";
static const char bip143_sighash[] =
    "c37af31116d1b27caf68aae9e3ac82f1477929014d5b917657d0eb49478cb670";
static const char bip143_pub[] =
    "025476c2e83188368da1ff3e292e7acafcdb3566bb0ad253f62fc70f07aeee6357";
static const char bip143_der[] =
    "304402203609e17b84f6a7d30c80bfa610b5b4542f32a8a0d5447a12fb1366d7f01cc44a"
    "0220573a954c4518331561406f90300e8f3358f51928d43c212a8caed02de67eebee";

/* the PSBT: magic, global {00: tx}, input maps {01: utxo}, output maps */
static unsigned char *bip143_psbt(size_t *len)
{
    char hex[4096];
    snprintf(hex, sizeof(hex),
             "70736274ff"
             "0100"
             "%02zx"
             "%s"
             "00"
             "0101"
             "%02zx"
             "%s"
             "00"
             "0101"
             "%02zx"
             "%s"
             "00"
             "00"
             "00",
             strlen(bip143_tx) / 2, bip143_tx, strlen(bip143_utxo0) / 2,
             bip143_utxo0, strlen(bip143_utxo1) / 2, bip143_utxo1);
    return unhex(hex, len);
}

static void test_bip143_p2wpkh(void)
{
    unsigned char *raw, *pub, *der, *out, bad[80];
    size_t n, pn, dn, on;
    hk_psbt *ps = NULL, *ps2 = NULL;
    char why[160], *b64 = NULL;

    raw = bip143_psbt(&n);
    CHECK_OK(hk_psbt_parse(raw, n, HK_BTC_MAINNET, &ps, why, sizeof(why)));
    CHECK(ps->n_in == 2 && ps->n_out == 2 && ps->locktime == 17 &&
          ps->tx_version == 1);
    CHECK(!ps->in[0].p2wpkh && !ps->in[0].has_sighash);
    CHECK(ps->in[1].p2wpkh && ps->in[1].has_sighash);
    CHECK(eq_hex(ps->in[1].sighash, 32, bip143_sighash));
    CHECK(ps->has_fee && ps->in_total == 1225000000 &&
          ps->out_total == 112340000 + 223450000 &&
          ps->fee == ps->in_total - ps->out_total);
    CHECK(strcmp(ps->out[0].address, "1Cu32FVupVCgHkMMRJdYJugxwo2Aprgk7H") ==
          0);
    /* input 0 is P2PK: not signable here */
    CHECK_ERR(hk_psbt_signable(ps, why, sizeof(why)), HK_ERR_TX_UNSUPPORTED);
    CHECK(strstr(why, "input 0") != NULL);

    /* BIP143's signature as the partial signature of input 1 */
    pub = unhex(bip143_pub, &pn);
    der = unhex(bip143_der, &dn);
    CHECK_ERR(hk_psbt_add_partial_sig(ps, 0, pub, der, dn), HK_ERR_STATE);
    CHECK_ERR(hk_psbt_add_partial_sig(ps, 2, pub, der, dn), HK_ERR_ARG);
    memcpy(bad, der, dn);
    bad[10] ^= 1; /* r changed: does not verify */
    CHECK_ERR(hk_psbt_add_partial_sig(ps, 1, pub, bad, dn), HK_ERR_ARG);
    pub[5] ^= 1; /* another key: not this input's */
    CHECK_ERR(hk_psbt_add_partial_sig(ps, 1, pub, der, dn), HK_ERR_ARG);
    pub[5] ^= 1;
    CHECK_OK(hk_psbt_add_partial_sig(ps, 1, pub, der, dn));
    CHECK_OK(hk_psbt_add_partial_sig(ps, 1, pub, der, dn)); /* idempotent */
    CHECK(ps->in[1].n_partial_sigs == 1);
    CHECK_OK(hk_psbt_serialize(ps, &out, &on));
    CHECK(on == n + 1 + 34 + 1 + dn + 1);
    CHECK_OK(hk_psbt_parse(out, on, HK_BTC_MAINNET, &ps2, why, sizeof(why)));
    CHECK(ps2->in[1].n_partial_sigs == 1);
    CHECK(memcmp(ps2->in[1].sighash, ps->in[1].sighash, 32) == 0);
    CHECK_OK(hk_psbt_serialize_base64(ps2, &b64));
    CHECK(strncmp(b64, "cHNidP8", 7) == 0);
    hk_psbt_free(ps2);
    ps2 = NULL;
    CHECK_OK(hk_psbt_parse_base64(b64, strlen(b64), HK_BTC_MAINNET, &ps2, why,
                                  sizeof(why)));
    hk_psbt_free(ps2);
    ps2 = NULL;
    b64[strlen(b64) - 1] = '*';
    CHECK_ERR(hk_psbt_parse_base64(b64, strlen(b64), HK_BTC_MAINNET, &ps2, why,
                                   sizeof(why)),
              HK_ERR_DECODE);
    OPENSSL_free(b64);
    free(out);
    free(pub);
    free(der);
    hk_psbt_free(ps);
    ps = NULL;

    /* every truncation refused */
    for (on = 0; on < n; on++) {
        CHECK(hk_psbt_parse(raw, on, HK_BTC_MAINNET, &ps, NULL, 0) != HK_OK);
        CHECK(ps == NULL);
    }
    free(raw);
}

static void test_psbt_refusals(void)
{
    unsigned char *raw, *m;
    size_t n, at;
    hk_psbt *ps = NULL;
    char why[160];

    raw = bip143_psbt(&n);
    m = malloc(n + 16);
    CHECK(m != NULL);
    /* the unsigned tx length (160) as a non-minimal CompactSize */
    memcpy(m, raw, 7);
    CHECK(raw[7] == 160);
    m[7] = 0xfd;
    m[8] = 160;
    m[9] = 0;
    memcpy(m + 10, raw + 8, n - 8);
    CHECK_ERR(hk_psbt_parse(m, n + 2, HK_BTC_MAINNET, &ps, why, sizeof(why)),
              HK_ERR_DECODE);
    CHECK(strstr(why, "non-canonical") != NULL);
    /* input 1's witness UTXO amount above 21 million BTC */
    memcpy(m, raw, n);
    at = n - 3 - 31; /* input 1's witness UTXO: amount, script */
    CHECK(m[at - 1] == 0x1f && m[at] == 0x00 && m[at + 1] == 0x46);
    memset(m + at, 0xff, 8);
    CHECK_ERR(hk_psbt_parse(m, n, HK_BTC_MAINNET, &ps, why, sizeof(why)),
              HK_ERR_DECODE);
    /* inputs worth less than the outputs: 0x00...01 satoshi */
    memset(m + at, 0, 8);
    m[at] = 1;
    CHECK(m[171] == 44 && m[172] == 0x40); /* input 0's amount: zero */
    memset(m + 172, 0, 8);
    CHECK_ERR(hk_psbt_parse(m, n, HK_BTC_MAINNET, &ps, why, sizeof(why)),
              HK_ERR_DECODE);
    CHECK(strstr(why, "exceed") != NULL);
    /* trailing byte */
    memcpy(m, raw, n);
    m[n] = 0;
    CHECK_ERR(hk_psbt_parse(m, n + 1, HK_BTC_MAINNET, &ps, why, sizeof(why)),
              HK_ERR_DECODE);
    /* PSBT_GLOBAL_VERSION 2 */
    memcpy(m, raw, 5);
    memcpy(m + 5, "\x01\xfb\x04\x02\x00\x00\x00", 7);
    memcpy(m + 12, raw + 5, n - 5);
    CHECK_ERR(hk_psbt_parse(m, n + 7, HK_BTC_MAINNET, &ps, why, sizeof(why)),
              HK_ERR_TX_UNSUPPORTED);
    /* the same global key twice */
    memcpy(m + 5, "\x02\xfc\x00\x00\x02\xfc\x00\x00", 8);
    memcpy(m + 13, raw + 5, n - 5);
    CHECK_ERR(hk_psbt_parse(m, n + 8, HK_BTC_MAINNET, &ps, why, sizeof(why)),
              HK_ERR_DECODE);
    CHECK(strstr(why, "duplicate") != NULL);
    /* different proprietary keys: kept */
    m[7] = 0x01;
    CHECK_OK(hk_psbt_parse(m, n + 8, HK_BTC_MAINNET, &ps, why, sizeof(why)));
    CHECK(ps->global.n == 3);
    hk_psbt_free(ps);
    free(m);
    free(raw);
}

int main(void)
{
    test_keccak();
    test_eth_tx();
    test_eth_refusals();
    test_eth_address();
    test_btc_address();
    test_bip174_vectors();
    test_bip143_p2wpkh();
    test_psbt_refusals();
    printf("test_txparse: ok\n");
    return 0;
}
