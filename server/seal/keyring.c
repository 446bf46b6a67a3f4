/* The KEK ring of a configuration (see keyring.h). */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "server/seal/keyring.h"

hk_err hk_keyring_hsm_params(const hk_srv_config *c, const char *label,
                             char *pin, hk_p11_params *p, char *why)
{
    const hk_seal_config *s = &c->seal;

    p->module = s->hsm_module;
    p->token = s->hsm_token;
    p->key_label = label;
    p->pin = pin;
    return hk_p11_pin_load(s->hsm_pin_file, s->hsm_pin_env, pin, why, 256);
}

/* Loads one KEK: a key file (path) or an HSM key (label, with params p). */
static hk_err hk_keyring_one(const char *path, const char *label,
                             hk_p11_params *p, hk_kek **out, char *why)
{
    if (path != NULL)
        return hk_kek_load_file(path, out, why, 256);
    p->key_label = label;
    return hk_kek_load_pkcs11(p, out, why, 256);
}

/* Adds a previous KEK to the ring, naming it if it is a duplicate. */
static hk_err hk_keyring_add(hk_kek *ring, const char *path, const char *label,
                             hk_p11_params *p, char *why)
{
    unsigned char id[HK_KEK_ID_LEN];
    char hex[17];
    hk_kek *old = NULL;
    hk_err e;

    if ((e = hk_keyring_one(path, label, p, &old, why)) != HK_OK)
        return e;
    hk_kek_id(old, id);
    if ((e = hk_kek_add_previous(ring, old)) == HK_ERR_EXISTS) {
        hk_kek_id_hex(id, hex);
        snprintf(why, 256,
                 "previous KEK %.180s is a KEK already configured "
                 "(id %s)",
                 path != NULL ? path : label, hex);
    }
    return e;
}

hk_err hk_keyring_load(const hk_srv_config *c, hk_kek **out, char *why)
{
    const hk_seal_config *s;
    char pin[HK_P11_PIN_MAX + 1] = "";
    hk_p11_params p;
    hk_kek *ring = NULL;
    int pkcs11, i;
    hk_err e = HK_OK;

    if (c == NULL || out == NULL || why == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    s = &c->seal;
    pkcs11 = strcmp(s->backend, "pkcs11") == 0;
    memset(&p, 0, sizeof(p));
    if ((pkcs11 || s->nprev_labels > 0) &&
        (e = hk_keyring_hsm_params(c, s->hsm_key_label, pin, &p, why)) != HK_OK)
        goto done;
    if ((e = hk_keyring_one(pkcs11 ? NULL : c->kek_file, s->hsm_key_label, &p,
                            &ring, why)) != HK_OK)
        goto done;
    for (i = 0; i < s->nprev_files && e == HK_OK; i++)
        e = hk_keyring_add(ring, s->prev_files[i], NULL, &p, why);
    for (i = 0; i < s->nprev_labels && e == HK_OK; i++)
        e = hk_keyring_add(ring, NULL, s->prev_labels[i], &p, why);
    if (e == HK_OK) {
        *out = ring;
        ring = NULL;
    }
done:
    OPENSSL_cleanse(pin, sizeof(pin));
    hk_kek_free(ring);
    return e;
}
