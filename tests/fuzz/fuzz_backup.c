/* Fuzz target: what halfkeyd decodes of a backup before it touches stored
 * state, and the public share view it hands back (issue 18):
 *  - the POST /backup body (server/http/bodies.h hk_backup_req_decode,
 *    the strict JSON object rule, key id, epoch bounds, base64 blob, the
 *    backup public key in PEM); a request that decodes has its blob
 *    verified as the server does (hk_pve_verify with the request's key
 *    id, epoch and key, Q1 and curve from the blob's header standing in
 *    for the stored share's);
 *  - the backup public key alone (hk_pve_pub_from_pem): a key that loads
 *    must re-encode to PEM that loads to the same fingerprint;
 *  - the public view of a share (mpc/share.h hk_share_public_decode, the
 *    "share" of GET /backup that a restoring client decodes): a view that
 *    decodes must encode to the same bytes (one encoding per view).
 * Every input goes to all three (each refuses what is not its format).
 * Seeds (gen_seeds): real POST bodies with the fixture backup keys and
 * the fuzz_pve blobs, the keys' PEM, the fixture shares' public views. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "mpc/pve.h"
#include "mpc/share.h"
#include "server/http/bodies.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static void fuzz_post(const uint8_t *data, size_t size)
{
    hk_backup_req rq;
    hk_pve_info in;

    if (hk_backup_req_decode(data, size, &rq) == HK_OK &&
        hk_pve_peek(rq.blob, rq.len, &in) == HK_OK)
        (void)hk_pve_verify(rq.bk, in.curve, rq.kid, rq.epoch, &in.q1, rq.blob,
                            rq.len);
    hk_backup_req_clear(&rq);
}

static void fuzz_pem(const uint8_t *data, size_t size)
{
    unsigned char fp[HK_HASH_LEN], fp2[HK_HASH_LEN];
    hk_pve_pub *k = NULL, *k2 = NULL;
    char *pem = NULL;
    size_t len = 0;

    if (hk_pve_pub_from_pem((const char *)data, size, &k) != HK_OK)
        return;
    hk_pve_pub_fingerprint(k, fp);
    if (hk_pve_pub_to_pem(k, &pem, &len) != HK_OK ||
        hk_pve_pub_from_pem(pem, len, &k2) != HK_OK)
        abort();
    hk_pve_pub_fingerprint(k2, fp2);
    if (memcmp(fp, fp2, HK_HASH_LEN) != 0 ||
        hk_pve_pub_type(k) != hk_pve_pub_type(k2))
        abort();
    OPENSSL_free(pem);
    hk_pve_pub_free(k);
    hk_pve_pub_free(k2);
}

static void fuzz_view(const uint8_t *data, size_t size)
{
    unsigned char *enc = NULL;
    hk_share *v = NULL;
    size_t len = 0;

    if (hk_share_public_decode(data, size, &v) != HK_OK)
        return;
    if (hk_share_public_encode(v, &enc, &len) != HK_OK || len != size ||
        memcmp(enc, data, size) != 0)
        abort();
    OPENSSL_free(enc);
    hk_share_free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_post(data, size);
    fuzz_pem(data, size);
    fuzz_view(data, size);
    return 0;
}
