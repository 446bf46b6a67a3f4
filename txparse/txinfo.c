/* txinfo: the transaction parsers (txparse/) from the command line, for
 * tests and for looking at a request by hand. Input on stdin, JSON or the
 * result on stdout; on refusal "txinfo: <message>: <reason>" on stderr and
 * exit status 1 (2 for usage).
 *   txinfo psbt NET                     base64 PSBT in, its JSON out
 *   txinfo psbt-sign NET IDX PUB DER    base64 PSBT in, with the partial
 *                                       signature (hex args) out, base64
 *   txinfo eth                          hex unsigned EIP-1559 tx, JSON out
 *   txinfo eth-signed R S Y             hex unsigned tx in, signed raw hex
 *   txinfo eth-address PUB              the address of a hex public key
 * NET: mainnet | testnet | regtest. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "common/hex.h"
#include "txparse/eth.h"
#include "txparse/psbt.h"
#include "txparse/render.h"

static int fail(hk_err e, const char *why)
{
    fprintf(stderr, "txinfo: %s%s%s\n", hk_strerror(e),
            why != NULL && why[0] ? ": " : "", why != NULL ? why : "");
    return 1;
}

/* stdin, trailing whitespace removed; NULL on error */
static char *read_stdin(size_t *n)
{
    size_t cap = 4096, len = 0, k;
    char *buf = malloc(cap + 1), *nb;

    while (buf != NULL && (k = fread(buf + len, 1, cap - len, stdin)) > 0) {
        len += k;
        if (len == cap && len < 8 * HK_PSBT_MAX) {
            nb = realloc(buf, 2 * cap + 1);
            if (nb == NULL)
                free(buf);
            buf = nb;
            cap *= 2;
        } else if (len == cap) {
            break;
        }
    }
    if (buf == NULL)
        return NULL;
    while (len > 0 && isspace((unsigned char)buf[len - 1]))
        len--;
    buf[len] = 0;
    *n = len;
    return buf;
}

/* lowercase hex argument into a new buffer */
static unsigned char *unhex_arg(const char *s, size_t *n)
{
    size_t len = strlen(s);
    unsigned char *b;

    if (len % 2 != 0 || (b = malloc(len / 2 + 1)) == NULL)
        return NULL;
    if (!hk_unhex(s, len, b, len / 2)) {
        free(b);
        return NULL;
    }
    *n = len / 2;
    return b;
}

static int print_json(json_t *j)
{
    char *s = j != NULL ? json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;

    json_decref(j);
    if (s == NULL)
        return fail(HK_ERR_NOMEM, NULL);
    puts(s);
    free(s);
    return 0;
}

int main(int argc, char **argv)
{
    char why[256] = "", *in = NULL, *b64 = NULL, addr[HK_ETH_ADDR_STR];
    unsigned char *raw = NULL, *a = NULL, *b = NULL, *signed_tx = NULL;
    unsigned char ab[HK_ETH_ADDR_LEN];
    size_t n = 0, an = 0, bn = 0, sn = 0;
    hk_psbt *ps = NULL;
    hk_eth_tx *tx = NULL;
    hk_btc_net net = HK_BTC_MAINNET;
    hk_err e = HK_ERR_ARG;
    int rc = 2;

    if (argc < 2)
        goto usage;
    if (!strcmp(argv[1], "eth-address") && argc == 3) {
        if ((a = unhex_arg(argv[2], &an)) == NULL)
            goto usage;
        if ((e = hk_eth_address(a, an, ab)) != HK_OK) {
            rc = fail(e, NULL);
            goto done;
        }
        hk_eth_address_str(ab, addr);
        puts(addr);
        rc = 0;
        goto done;
    }
    if ((!strcmp(argv[1], "psbt") && argc == 3) ||
        (!strcmp(argv[1], "psbt-sign") && argc == 6)) {
        if (hk_btc_net_parse(argv[2], &net) != HK_OK)
            goto usage;
        if ((in = read_stdin(&n)) == NULL) {
            rc = fail(HK_ERR_NOMEM, NULL);
            goto done;
        }
        if ((e = hk_psbt_parse_base64(in, n, net, &ps, why, sizeof(why))) !=
            HK_OK) {
            rc = fail(e, why);
            goto done;
        }
        if (argc == 3) {
            rc = print_json(hk_psbt_json(ps));
            goto done;
        }
        if ((a = unhex_arg(argv[4], &an)) == NULL || an != 33 ||
            (b = unhex_arg(argv[5], &bn)) == NULL)
            goto usage;
        if ((e = hk_psbt_add_partial_sig(ps, strtoul(argv[3], NULL, 10), a, b,
                                         bn)) != HK_OK ||
            (e = hk_psbt_serialize_base64(ps, &b64)) != HK_OK) {
            rc = fail(e, NULL);
            goto done;
        }
        puts(b64);
        rc = 0;
        goto done;
    }
    if ((!strcmp(argv[1], "eth") && argc == 2) ||
        (!strcmp(argv[1], "eth-signed") && argc == 5)) {
        if ((in = read_stdin(&n)) == NULL || (raw = malloc(n / 2 + 1)) == NULL)
            goto done;
        if (n % 2 != 0 || !hk_unhex(in, n, raw, n / 2)) {
            rc = fail(HK_ERR_DECODE, "not lowercase hex");
            goto done;
        }
        if ((e = hk_eth_tx_parse(raw, n / 2, &tx, why, sizeof(why))) != HK_OK) {
            rc = fail(e, why);
            goto done;
        }
        if (argc == 2) {
            rc = print_json(hk_eth_tx_json(tx));
            goto done;
        }
        if ((a = unhex_arg(argv[2], &an)) == NULL || an != 32 ||
            (b = unhex_arg(argv[3], &bn)) == NULL || bn != 32)
            goto usage;
        if ((e = hk_eth_tx_signed(tx, a, b, atoi(argv[4]), &signed_tx, &sn)) !=
            HK_OK) {
            rc = fail(e, NULL);
            goto done;
        }
        free(in);
        if ((in = malloc(2 * sn + 1)) == NULL)
            goto done;
        hk_hex(signed_tx, sn, in);
        puts(in);
        rc = 0;
        goto done;
    }
usage:
    fprintf(stderr, "usage: txinfo psbt NET | psbt-sign NET IDX PUB DER | "
                    "eth | eth-signed R S Y | eth-address PUB\n");
done:
    hk_psbt_free(ps);
    hk_eth_tx_free(tx);
    free(in);
    free(raw);
    free(a);
    free(b);
    OPENSSL_free(b64);
    free(signed_tx);
    return rc;
}
