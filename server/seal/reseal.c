/* halfkeyd reseal: the walk over every sealed blob (see reseal.h). */
#include <string.h>

#include <openssl/crypto.h>

#include "mpc/codec.h"
#include "server/log.h"
#include "server/seal/reseal.h"

/* Adds an outcome to the counts. */
static void hk_reseal_tally(hk_reseal_counts *c, hk_reseal_outcome o)
{
    if (o == HK_RESEAL_DONE)
        c->resealed++;
    else if (o == HK_RESEAL_ALREADY)
        c->already++;
    else
        c->gone++;
}

/* Re-seals one blob (ref NULL: the setup) and counts the outcome. */
static void hk_reseal_one(hk_db *db, const hk_kek *kek,
                          const hk_db_share_ref *ref, hk_reseal_counts *c)
{
    hk_reseal_outcome o = HK_RESEAL_GONE;
    char kid[2 * HK_ID_LEN + 1] = "setup";
    hk_err e;

    e = ref != NULL ? hk_reseal_share(db, kek, ref, &o, &c->races)
                    : hk_reseal_setup(db, kek, &o, &c->races);
    if (e == HK_OK) {
        hk_reseal_tally(c, o);
        return;
    }
    c->failed++;
    if (ref != NULL)
        hk_hex(ref->kid, HK_ID_LEN, kid);
    hk_log("error", "event=reseal_failed kid=%s epoch=%lu error=\"%s\"%s%s",
           kid, ref != NULL ? ref->epoch : 0UL, hk_strerror(e),
           e == HK_ERR_IO ? " db=" : "",
           e == HK_ERR_IO ? hk_db_errmsg(db) : "");
}

static int hk_reseal_limited(const hk_reseal_counts *c, size_t limit)
{
    return limit != 0 && c->resealed >= limit;
}

hk_err hk_reseal_all(hk_db *db, const hk_kek *kek, size_t limit,
                     hk_reseal_counts *c)
{
    hk_db_share_ref *refs;
    unsigned char after[HK_ID_LEN];
    unsigned long after_epoch = 0;
    size_t n = 0, i;
    int first = 1;
    hk_err e = HK_OK;

    if (db == NULL || kek == NULL || c == NULL)
        return HK_ERR_ARG;
    memset(c, 0, sizeof(*c));
    if ((refs = OPENSSL_malloc(HK_DB_LIST_MAX * sizeof(*refs))) == NULL)
        return HK_ERR_NOMEM;
    hk_reseal_one(db, kek, NULL, c);
    do {
        if (hk_reseal_limited(c, limit))
            break;
        e = hk_db_share_list_all(db, first ? NULL : after, after_epoch, refs,
                                 HK_DB_LIST_MAX, &n);
        first = 0;
        for (i = 0; e == HK_OK && i < n && !hk_reseal_limited(c, limit); i++)
            hk_reseal_one(db, kek, &refs[i], c);
        if (n > 0) {
            memcpy(after, refs[n - 1].kid, HK_ID_LEN);
            after_epoch = refs[n - 1].epoch;
        }
    } while (e == HK_OK && n == HK_DB_LIST_MAX);
    c->stopped = hk_reseal_limited(c, limit);
    OPENSSL_free(refs);
    return e;
}

/* Counts one blob under its id. */
static void hk_census_add(hk_reseal_census *s, const unsigned char *blob,
                          size_t len)
{
    unsigned char id[HK_KEK_ID_LEN];
    size_t i;

    s->total++;
    if (hk_sealed_kek_id(blob, len, id) != HK_OK) {
        s->other++;
        return;
    }
    for (i = 0; i < s->nids; i++)
        if (memcmp(s->ids[i].id, id, HK_KEK_ID_LEN) == 0)
            break;
    if (i == s->nids) {
        if (s->nids == HK_RESEAL_IDS_MAX) {
            s->other++;
            return;
        }
        memcpy(s->ids[s->nids++].id, id, HK_KEK_ID_LEN);
    }
    s->ids[i].count++;
}

/* Reads the blob of ref (NULL: the setup) and counts it; a row gone
 * meanwhile is skipped. */
static hk_err hk_census_one(hk_db *db, const hk_db_share_ref *ref,
                            hk_reseal_census *s)
{
    unsigned char *blob = NULL;
    size_t len = 0;
    hk_err e;

    e = ref != NULL
            ? hk_db_share_get(db, ref->kid, ref->epoch, &blob, &len, NULL)
            : hk_db_setup_get(db, &blob, &len, NULL, NULL);
    if (e == HK_OK)
        hk_census_add(s, blob, len);
    OPENSSL_free(blob);
    return e == HK_ERR_NOT_FOUND ? HK_OK : e;
}

hk_err hk_reseal_count(hk_db *db, hk_reseal_census *out)
{
    hk_db_share_ref *refs;
    unsigned char after[HK_ID_LEN];
    unsigned long after_epoch = 0;
    size_t n = 0, i;
    int first = 1;
    hk_err e;

    if (db == NULL || out == NULL)
        return HK_ERR_ARG;
    memset(out, 0, sizeof(*out));
    if ((refs = OPENSSL_malloc(HK_DB_LIST_MAX * sizeof(*refs))) == NULL)
        return HK_ERR_NOMEM;
    e = hk_census_one(db, NULL, out);
    while (e == HK_OK) {
        e = hk_db_share_list_all(db, first ? NULL : after, after_epoch, refs,
                                 HK_DB_LIST_MAX, &n);
        first = 0;
        for (i = 0; e == HK_OK && i < n; i++)
            e = hk_census_one(db, &refs[i], out);
        if (n < HK_DB_LIST_MAX)
            break;
        memcpy(after, refs[n - 1].kid, HK_ID_LEN);
        after_epoch = refs[n - 1].epoch;
    }
    OPENSSL_free(refs);
    return e;
}
