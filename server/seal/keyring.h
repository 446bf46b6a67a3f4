/* The KEK ring a halfkeyd configuration names (seal.h, config.h): the
 * primary KEK (kek_file, or the HSM key hsm_key_label) and the previous
 * KEKs (seal_previous_key_file, seal_previous_hsm_key_label) that only
 * open older blobs. Used by `run`, `reseal` and `init`. */
#ifndef HK_SERVER_KEYRING_H
#define HK_SERVER_KEYRING_H

#include "server/config.h"
#include "server/seal/seal.h"

/* Loads every KEK the configuration names into one ring (the HSM PIN is
 * read from its source once and wiped after login). On failure why[256]
 * holds one line naming the KEK and what is wrong; codes as
 * hk_kek_load_file / hk_kek_load_pkcs11, and HK_ERR_EXISTS if two entries
 * are the same key. */
HK_WUR hk_err hk_keyring_load(const hk_srv_config *c, hk_kek **out, char *why);
/* The HSM parameters of c with label `label` and the PIN read from c's
 * PIN source into pin[HK_P11_PIN_MAX + 1] (the caller wipes it). */
HK_WUR hk_err hk_keyring_hsm_params(const hk_srv_config *c, const char *label,
                                    char *pin, hk_p11_params *p, char *why);

#endif
