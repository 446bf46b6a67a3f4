/* A client of a running halfkeyd for tests/py/test_presign.py: the
 * presignature pool of one kept-open connection through the C API
 * (client/client.h), which the CLI does not reach.
 *
 *   channel_check DIR LABEL N1 N2 SIGNS
 *
 * makes a batch of N1 presignatures, then one of N2 (the connection keeps
 * at most 64: the second batch must make room, never write past it), prints
 * the count after each, then signs SIGNS digests and prints each signature
 * as "digest-hex sig-hex" (the test verifies them). The PIN comes from
 * $HALFKEY_PIN. Exit 0 when every call succeeded. */
#include <stdio.h>
#include <stdlib.h>

#include <openssl/rand.h>

#include "client/client.h"

static void hex(const unsigned char *b, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        printf("%02x", b[i]);
}

int main(int argc, char **argv)
{
    unsigned char dig[32], sig[HK_SIG_LEN];
    const char *pin = getenv("HALFKEY_PIN");
    hk_channel *ch = NULL;
    hk_client *c = NULL;
    char why[256];
    int i, n;
    hk_err e;

    if (argc != 6 || pin == NULL)
        return 2;
    if ((e = hk_client_open(argv[1], &c, why)) != HK_OK ||
        (e = hk_ks_login(hk_client_keystore(c), pin)) != HK_OK ||
        (e = hk_client_channel_open(c, &ch)) != HK_OK)
        goto done;
    for (i = 3; i <= 4; i++) {
        if ((e = hk_client_channel_presign(c, ch, argv[2],
                                           (size_t)atoi(argv[i]))) != HK_OK)
            goto done;
        printf("presigs %zu\n", hk_client_channel_presigs(ch, c, argv[2]));
    }
    n = atoi(argv[5]);
    for (i = 0; i < n; i++) {
        if (RAND_bytes(dig, sizeof(dig)) != 1) {
            e = HK_ERR_RAND;
            goto done;
        }
        if ((e = hk_client_channel_sign(c, ch, argv[2], dig, sizeof(dig),
                                        sig)) != HK_OK)
            goto done;
        hex(dig, sizeof(dig));
        printf(" ");
        hex(sig, sizeof(sig));
        printf("\n");
    }
    printf("presigs %zu\n", hk_client_channel_presigs(ch, c, argv[2]));
done:
    if (e != HK_OK)
        fprintf(stderr, "channel_check: %s %s\n", hk_strerror(e),
                c != NULL ? hk_client_last_error(c) : why);
    hk_client_channel_close(ch);
    hk_client_close(c);
    return e == HK_OK ? 0 : 1;
}
