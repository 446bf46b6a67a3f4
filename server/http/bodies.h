/* Strict decoding of halfkeyd's request bodies: pure (no I/O, no service
 * state), so the libFuzzer target fuzz_backup runs exactly what the
 * endpoints run on attacker-supplied bytes. Owns the JSON object rule
 * (one object, no duplicate or unknown keys), key ids in hex and the
 * POST /backup request. */
#ifndef HK_SERVER_BODIES_H
#define HK_SERVER_BODIES_H

#include <stddef.h>

#include <jansson.h>

#include "mpc/pve.h"

/* The body as one JSON object with only the `allowed` keys (a
 * NULL-terminated list) and no duplicate; NULL otherwise. json_decref. */
json_t *hk_body_decode(const unsigned char *body, size_t len,
                       const char *const *allowed);
/* Exactly 2*HK_ID_LEN lowercase hex digits; 1 on success. */
int hk_kid_decode(const char *hex, unsigned char kid[HK_ID_LEN]);

/* POST /backup {"key_id", "epoch", "blob" (base64), "backup_pub" (PEM)}
 * decoded: nothing checked against stored state yet (that is
 * hk_pve_verify against the share's Q1). */
typedef struct {
    unsigned char kid[HK_ID_LEN];
    unsigned long epoch;
    unsigned char *blob; /* OPENSSL_free (hk_backup_req_clear) */
    size_t len;
    hk_pve_pub *bk;
    unsigned char bk_fp[HK_HASH_LEN]; /* zero unless bk was decoded */
} hk_backup_req;

/* HK_ERR_ARG: not an object of those four keys with a key id, an epoch in
 * [1, HK_DB_EPOCH_MAX] and two strings; HK_ERR_DECODE: the blob is not
 * canonical base64 of at most HK_PVE_MAX_BLOB bytes; HK_ERR_CONFIG:
 * backup_pub is not a supported public key in PEM. On HK_ERR_DECODE and
 * HK_ERR_CONFIG the key id and epoch are filled (the refusal is audited
 * under them); clear `out` after any result. */
HK_WUR hk_err hk_backup_req_decode(const unsigned char *body, size_t len,
                                   hk_backup_req *out);
void hk_backup_req_clear(hk_backup_req *r);

#endif
