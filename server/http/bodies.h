/* Strict decoding of halfkeyd's request bodies: pure (no I/O, no service
 * state), so the libFuzzer target fuzz_backup runs exactly what the
 * endpoints run on attacker-supplied bytes. Owns the JSON object rule
 * (one object, no duplicate or unknown keys), key ids in hex and the
 * POST /backup request and the two of a device attestation. */
#ifndef HK_SERVER_BODIES_H
#define HK_SERVER_BODIES_H

#include <stddef.h>

#include <jansson.h>

#include "mpc/pve.h"
#include "server/attest/attest.h"

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

/* POST /keygen's "attest" member {"ek_cert", "ek_pub", "ak_pub"}, each
 * canonical base64 of a bounded size (attest.h). */
typedef struct {
    unsigned char *ek_cert, *ek_pub, *ak_pub; /* OPENSSL_free */
    size_t ek_cert_len, ek_pub_len, ak_pub_len;
} hk_attest_id_req;

/* HK_ERR_DECODE for anything else; clear `out` after any result. */
HK_WUR hk_err hk_attest_id_decode(json_t *o, hk_attest_id_req *out);
void hk_attest_id_clear(hk_attest_id_req *r);

/* POST /attest {"session_id": "sess_<hex>", "credential", "quote",
 * "signature"} (base64: the credential the TPM recovered, a TPMS_ATTEST
 * and a TPMT_SIGNATURE). */
typedef struct {
    unsigned char sid[HK_ID_LEN];
    unsigned char *cred, *quote, *sig; /* OPENSSL_free */
    size_t cred_len, quote_len, sig_len;
} hk_attest_req;

/* HK_ERR_DECODE for anything else; clear `out` after any result. */
HK_WUR hk_err hk_attest_req_decode(const unsigned char *body, size_t len,
                                   hk_attest_req *out);
void hk_attest_req_clear(hk_attest_req *r);

#endif
