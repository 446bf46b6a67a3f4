/* hk-lock-key DIR LABEL: locks a key as the client core does after an
 * invalid-signature abort, so tests can check how a locked key is
 * refused. The PIN comes from $HALFKEY_PIN. A test helper, not installed. */
#include <stdio.h>
#include <stdlib.h>

#include "client/keystore.h"

int main(int argc, char **argv)
{
    const char *pin = getenv("HALFKEY_PIN");
    hk_ks *ks = NULL;
    hk_err e;

    if (argc != 3 || pin == NULL) {
        fprintf(stderr, "usage: HALFKEY_PIN=... hk-lock-key DIR LABEL\n");
        return 2;
    }
    if ((e = hk_ks_open(argv[1], &ks)) != HK_OK ||
        (e = hk_ks_login(ks, pin)) != HK_OK ||
        (e = hk_ks_lock_key(ks, argv[2], "test: simulated abort")) != HK_OK)
        fprintf(stderr, "hk-lock-key: %s\n", hk_strerror(e));
    hk_ks_close(ks);
    return e == HK_OK ? 0 : 1;
}
