/* The client's use of the token's prime pool (client.h, keystore.h "Prime
 * pool"): filling it to a target and taking one entry for a keygen or a
 * refresh, always of the token's configured Paillier size. */
#include "client/client.h"

hk_err hk_client_pool_fill(hk_client *c, size_t target, size_t *added)
{
    if (c == NULL)
        return HK_ERR_ARG;
    return hk_ks_pool_fill(hk_client_keystore(c),
                           hk_client_config_get(c)->paillier_bits, target,
                           added);
}

hk_err hk_client_pool_take(hk_client *c, hk_paillier_sk **out)
{
    hk_err e;

    if (c == NULL || out == NULL)
        return HK_ERR_ARG;
    /* The pool only saves time: whatever keeps it from giving a key (no
     * entry, logged out, a damaged entry, an I/O error before the entry
     * was removed), the run goes on and generates one. */
    e = hk_ks_pool_take(hk_client_keystore(c),
                        hk_client_config_get(c)->paillier_bits, out, NULL);
    if (e != HK_OK)
        *out = NULL;
    return HK_OK;
}
