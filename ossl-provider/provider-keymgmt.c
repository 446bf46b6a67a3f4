/* Key management for EC keys whose private half is a halfkey key.
 *
 * The public half (group, point) is exported like the default provider's
 * EC keys, so that provider verifies, encodes and matches it. The private
 * half never leaves the client core: an export that asks for it fails,
 * which also makes OpenSSL run signing through this provider. Imports take
 * public keys only (OpenSSL imports a certificate's key here to match it
 * against ours); there is no key generation (`halfkey keygen` makes keys). */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/params.h>

#include "ossl-provider/provider.h"

#define HK_KM_SELECT_PARAMS OSSL_KEYMGMT_SELECT_ALL_PARAMETERS

static void *hk_km_new(void *provctx) { return hk_prov_key_new(provctx); }

static void hk_km_free(void *keydata) { hk_prov_key_free(keydata); }

/* The store passes the address of its hk_prov_key pointer; the key moves
 * here and the store's pointer is cleared. */
static void *hk_km_load(const void *reference, size_t reference_sz)
{
    hk_prov_key **ref = (hk_prov_key **)reference;
    hk_prov_key *k;

    if (ref == NULL || reference_sz != sizeof(*ref))
        return NULL;
    k = *ref;
    *ref = NULL;
    return k;
}

static int hk_km_has(const void *keydata, int selection)
{
    const hk_prov_key *k = keydata;
    int ok = 1;

    if (k == NULL)
        return 0;
    if (selection & (OSSL_KEYMGMT_SELECT_PUBLIC_KEY | HK_KM_SELECT_PARAMS))
        ok = ok && k->curve != 0;
    if (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY)
        ok = ok && k->tok != NULL;
    return ok;
}

static int hk_km_match(const void *keydata1, const void *keydata2,
                       int selection)
{
    const hk_prov_key *a = keydata1, *b = keydata2;

    if (a == NULL || b == NULL || a->curve == 0 || a->curve != b->curve)
        return 0;
    if (selection & OSSL_KEYMGMT_SELECT_KEYPAIR)
        return memcmp(a->pub, b->pub, sizeof(a->pub)) == 0;
    return 1;
}

static const OSSL_PARAM *hk_km_gettable_params(void *provctx)
{
    static const OSSL_PARAM t[] = {
        OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, NULL,
                               0),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_ENCODING, NULL, 0),
        OSSL_PARAM_END};
    return t;
}

static int hk_km_get_params(void *keydata, OSSL_PARAM params[])
{
    hk_prov_key *k = keydata;
    OSSL_PARAM *p;

    if (k == NULL || k->curve == 0)
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_BITS)) != NULL &&
        !OSSL_PARAM_set_int(p, 256))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_SECURITY_BITS)) !=
            NULL &&
        !OSSL_PARAM_set_int(p, 128))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_MAX_SIZE)) != NULL &&
        !OSSL_PARAM_set_int(p, HK_PROV_SIG_MAX))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_GROUP_NAME)) != NULL &&
        !OSSL_PARAM_set_utf8_string(p, hk_prov_group_name(k->curve)))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY)) !=
            NULL &&
        !OSSL_PARAM_set_octet_string(p, k->pub, sizeof(k->pub)))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_PUB_KEY)) != NULL &&
        !OSSL_PARAM_set_octet_string(p, k->pub, sizeof(k->pub)))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_DEFAULT_DIGEST)) !=
            NULL &&
        !OSSL_PARAM_set_utf8_string(p, "SHA256"))
        return 0;
    if ((p = OSSL_PARAM_locate(
             params, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT)) != NULL &&
        !OSSL_PARAM_set_utf8_string(p, "uncompressed"))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_EC_ENCODING)) != NULL &&
        !OSSL_PARAM_set_utf8_string(p, "named_curve"))
        return 0;
    return 1;
}

static const OSSL_PARAM hk_km_types[] = {
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0), OSSL_PARAM_END};

static const OSSL_PARAM *hk_km_import_types(int selection)
{
    return hk_km_types;
}

static const OSSL_PARAM *hk_km_export_types(int selection)
{
    return hk_km_types;
}

/* A public EC key on one of our curves; anything private is refused. */
static int hk_km_import(void *keydata, int selection, const OSSL_PARAM params[])
{
    hk_prov_key *k = keydata;
    const OSSL_PARAM *p;
    const char *group = NULL;
    const void *pub = NULL;
    size_t len = 0;
    hk_curve_id c;

    if (k == NULL || k->tok != NULL ||
        OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PRIV_KEY) != NULL)
        return 0;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_GROUP_NAME)) ==
            NULL ||
        !OSSL_PARAM_get_utf8_string_ptr(p, &group) ||
        (c = hk_prov_group_id(group)) == 0)
        return 0;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PUB_KEY)) ==
            NULL ||
        !OSSL_PARAM_get_octet_string_ptr(p, &pub, &len))
        return 0;
    return hk_prov_key_set_pub(k, c, pub, len) == HK_OK;
}

static int hk_km_export(void *keydata, int selection, OSSL_CALLBACK *cb,
                        void *cbarg)
{
    hk_prov_key *k = keydata;
    OSSL_PARAM p[3], *q = p;

    if (k == NULL || k->curve == 0)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && k->tok != NULL)
        return 0; /* the private half stays with the client core */
    if (selection & (HK_KM_SELECT_PARAMS | OSSL_KEYMGMT_SELECT_PUBLIC_KEY))
        *q++ = OSSL_PARAM_construct_utf8_string(
            OSSL_PKEY_PARAM_GROUP_NAME, (char *)hk_prov_group_name(k->curve),
            0);
    if (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY)
        *q++ = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                                 k->pub, sizeof(k->pub));
    *q = OSSL_PARAM_construct_end();
    return cb(p, cbarg);
}

static const char *hk_km_query_operation_name(int operation_id)
{
    return operation_id == OSSL_OP_SIGNATURE ? "ECDSA" : NULL;
}

static void *hk_km_dup(const void *keydata, int selection)
{
    const hk_prov_key *k = keydata;

    if (k == NULL)
        return NULL;
    return hk_prov_key_dup(k, (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY));
}

const OSSL_DISPATCH hk_prov_keymgmt_functions[] = {
    {OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))hk_km_new},
    {OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))hk_km_free},
    {OSSL_FUNC_KEYMGMT_LOAD, (void (*)(void))hk_km_load},
    {OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))hk_km_has},
    {OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))hk_km_match},
    {OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))hk_km_get_params},
    {OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))hk_km_gettable_params},
    {OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))hk_km_import},
    {OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))hk_km_import_types},
    {OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))hk_km_export},
    {OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))hk_km_export_types},
    {OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME,
     (void (*)(void))hk_km_query_operation_name},
    {OSSL_FUNC_KEYMGMT_DUP, (void (*)(void))hk_km_dup},
    {0, NULL}};
