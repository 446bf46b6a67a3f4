/* Presignatures kept on disk for one-shot processes (issue 20 item 1:
 * `halfkey presign`, then each `halfkey sign` one round trip).
 *
 * Owns the token's presignature entries (ks_entries.c, kind "presig"):
 * <dir>/presig/<key id hex>-<32 hex>.ps, P1's half of one presignature
 * (mpc/presign.h, hk_presig_encode: it holds k1) sealed under the PIN key,
 * the key id in the name and so in the AAD. Single use as ks_entries.c
 * describes: the file is removed durably before k1 is opened, so a crash
 * loses a presignature and never signs twice under it; the server
 * deletes its half when the sign opens. Take prefers the newest (the
 * server lets its oldest go first when its pool is full).
 *
 * Bounded: at most HK_KS_PRESIG_MAX entries per key. */
#include <string.h>

#include <openssl/crypto.h>

#include "client/ks_impl.h"
#include "common/hex.h"

static const hk_ks_ent_kind hk_ks_presig_kind = {
    "presig", "halfkey/presig/1", "HKPSIG1", ".ps", HK_KS_PRESIG_MAX, 1, 1};

#define HK_KS_PRESIG_FIELD 1 /* the record's version */

static void hk_ks_presig_tag(const unsigned char *kid,
                             char tag[2 * HK_ID_LEN + 1])
{
    hk_hex(kid, HK_ID_LEN, tag);
}

hk_err hk_ks_presig_put(hk_ks *ks, const hk_presig *p)
{
    unsigned char rec[HK_PRESIG_REC_LEN];
    char tag[2 * HK_ID_LEN + 1];
    hk_err e;

    if (ks == NULL || p == NULL)
        return HK_ERR_ARG;
    hk_ks_presig_tag(p->kid, tag);
    if ((e = hk_presig_encode(p, rec)) == HK_OK)
        e = hk_ks_ent_put(ks, &hk_ks_presig_kind, tag, HK_KS_PRESIG_FIELD, rec,
                          sizeof(rec));
    OPENSSL_cleanse(rec, sizeof(rec));
    return e;
}

hk_err hk_ks_presig_take(hk_ks *ks, const unsigned char *kid,
                         unsigned long epoch, int deferred, hk_presig *out)
{
    unsigned char rec[HK_PRESIG_REC_LEN];
    char tag[2 * HK_ID_LEN + 1];
    hk_err e;

    if (ks == NULL || kid == NULL || out == NULL)
        return HK_ERR_ARG;
    hk_ks_presig_tag(kid, tag);
    /* one of another epoch (made before a refresh) is useless: taken
     * (removed) and passed over */
    while ((e = hk_ks_ent_take(ks, &hk_ks_presig_kind, tag, HK_KS_PRESIG_FIELD,
                               rec, sizeof(rec), NULL, deferred)) == HK_OK) {
        if (hk_presig_decode(rec, sizeof(rec), out) == HK_OK &&
            memcmp(out->kid, kid, HK_ID_LEN) == 0 && out->epoch == epoch)
            break;
        OPENSSL_cleanse(out, sizeof(*out));
    }
    OPENSSL_cleanse(rec, sizeof(rec));
    return e;
}

hk_err hk_ks_presig_sync(hk_ks *ks)
{
    return hk_ks_ent_sync(ks, &hk_ks_presig_kind);
}

void hk_ks_presig_sweep(hk_ks *ks) { hk_ks_ent_sweep(ks, &hk_ks_presig_kind); }

hk_err hk_ks_presig_count(hk_ks *ks, const unsigned char *kid, size_t *n)
{
    char tag[2 * HK_ID_LEN + 1];

    if (ks == NULL || kid == NULL || n == NULL)
        return HK_ERR_ARG;
    hk_ks_presig_tag(kid, tag);
    return hk_ks_ent_count(ks, &hk_ks_presig_kind, tag, n);
}

hk_err hk_ks_presig_drop(hk_ks *ks, const unsigned char *kid)
{
    char tag[2 * HK_ID_LEN + 1];

    if (ks == NULL || kid == NULL)
        return HK_ERR_ARG;
    hk_ks_presig_tag(kid, tag);
    return hk_ks_ent_drop(ks, &hk_ks_presig_kind, tag);
}
