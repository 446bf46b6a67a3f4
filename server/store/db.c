/* Storage front end: argument checks, dispatch to the back end, and the
 * sealing of shares and of the setup (see db.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <math.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "mpc/setup.h"
#include "server/store/db_impl.h"

/* hk_seal associated data of the secret setup record: its label with a
 * 4-byte big-endian length, like hk_share_aad's items. */
static const unsigned char hk_setup_aad[] = "\0\0\0\x14"
                                            "halfkey server setup";

/* --- names ----------------------------------------------------------------
 * Stored in the database: never change them. */

static const char *const hk_share_state_names[] = {NULL, "active", "pending"};
static const char *const hk_op_names[] = {NULL, "keygen", "sign", "refresh",
                                          "presign"};
static const char *const hk_sess_state_names[] = {NULL, "open", "running",
                                                  "done", "failed"};
static const char *const hk_req_kind_names[] = {NULL, "digest", "btc-psbt",
                                                "eth-tx"};
static const char *const hk_req_state_names[] = {
    NULL, "pending", "signed", "rejected", "expired", "failed"};

#define HK_NNAMES(a) (sizeof(a) / sizeof((a)[0]))

static const char *hk_name_of(const char *const *names, size_t n, int v)
{
    return v > 0 && (size_t)v < n ? names[v] : NULL;
}

static hk_err hk_name_find(const char *const *names, size_t n, const char *name,
                           int *out)
{
    size_t i;

    if (name == NULL || out == NULL)
        return HK_ERR_ARG;
    for (i = 1; i < n; i++) {
        if (strcmp(names[i], name) == 0) {
            *out = (int)i;
            return HK_OK;
        }
    }
    return HK_ERR_DECODE;
}

const char *hk_db_share_state_name(hk_db_share_state s)
{
    return hk_name_of(hk_share_state_names, HK_NNAMES(hk_share_state_names),
                      (int)s);
}

const char *hk_db_op_name(hk_db_op op)
{
    return hk_name_of(hk_op_names, HK_NNAMES(hk_op_names), (int)op);
}

const char *hk_db_sess_state_name(hk_db_sess_state s)
{
    return hk_name_of(hk_sess_state_names, HK_NNAMES(hk_sess_state_names),
                      (int)s);
}

hk_err hk_db_share_state_from_name(const char *name, hk_db_share_state *out)
{
    int v = 0;
    hk_err e = hk_name_find(hk_share_state_names,
                            HK_NNAMES(hk_share_state_names), name, &v);

    if (e == HK_OK)
        *out = (hk_db_share_state)v;
    return e;
}

hk_err hk_db_op_from_name(const char *name, hk_db_op *out)
{
    int v = 0;
    hk_err e = hk_name_find(hk_op_names, HK_NNAMES(hk_op_names), name, &v);

    if (e == HK_OK)
        *out = (hk_db_op)v;
    return e;
}

hk_err hk_db_sess_state_from_name(const char *name, hk_db_sess_state *out)
{
    int v = 0;
    hk_err e = hk_name_find(hk_sess_state_names, HK_NNAMES(hk_sess_state_names),
                            name, &v);

    if (e == HK_OK)
        *out = (hk_db_sess_state)v;
    return e;
}

const char *hk_db_req_kind_name(hk_db_req_kind k)
{
    return hk_name_of(hk_req_kind_names, HK_NNAMES(hk_req_kind_names), (int)k);
}

const char *hk_db_req_state_name(hk_db_req_state st)
{
    return hk_name_of(hk_req_state_names, HK_NNAMES(hk_req_state_names),
                      (int)st);
}

hk_err hk_db_req_kind_from_name(const char *name, hk_db_req_kind *out)
{
    int v = 0;
    hk_err e =
        hk_name_find(hk_req_kind_names, HK_NNAMES(hk_req_kind_names), name, &v);

    if (e == HK_OK)
        *out = (hk_db_req_kind)v;
    return e;
}

hk_err hk_db_req_state_from_name(const char *name, hk_db_req_state *out)
{
    int v = 0;
    hk_err e = hk_name_find(hk_req_state_names, HK_NNAMES(hk_req_state_names),
                            name, &v);

    if (e == HK_OK)
        *out = (hk_db_req_state)v;
    return e;
}

int hk_db_sess_from_states(hk_db_sess_state to, hk_db_sess_state from[2])
{
    switch (to) {
    case HK_DB_SESS_RUNNING:
        from[0] = from[1] = HK_DB_SESS_OPEN;
        return 1;
    case HK_DB_SESS_DONE:
        from[0] = from[1] = HK_DB_SESS_RUNNING;
        return 1;
    case HK_DB_SESS_FAILED:
        from[0] = HK_DB_SESS_OPEN;
        from[1] = HK_DB_SESS_RUNNING;
        return 1;
    default:
        return 0;
    }
}

/* --- text checks ---------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (left bytes remain), 0 if
 * invalid (overlong, surrogate, above U+10FFFF) or a C1 control. */
static size_t hk_utf8_seq(const unsigned char *p, size_t left)
{
    unsigned char lo = 0x80, hi = 0xbf;
    size_t k, j;

    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        k = 1;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        k = 2;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        k = 3;
    else
        return 0;
    if (p[0] == 0xc2)
        lo = 0xa0; /* U+0080..U+009F are controls */
    else if (p[0] == 0xe0)
        lo = 0xa0;
    else if (p[0] == 0xed)
        hi = 0x9f;
    else if (p[0] == 0xf0)
        lo = 0x90;
    else if (p[0] == 0xf4)
        hi = 0x8f;
    if (left < k + 1 || p[1] < lo || p[1] > hi)
        return 0;
    for (j = 2; j <= k; j++)
        if ((p[j] & 0xc0) != 0x80)
            return 0;
    return k + 1;
}

int hk_db_text_ok(const char *s, size_t max)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n, i = 0, k;

    if (s == NULL)
        return 0;
    n = strnlen(s, max + 1);
    if (n == 0 || n > max)
        return 0;
    while (i < n) {
        if (p[i] < 0x20 || p[i] == 0x7f)
            return 0;
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        if ((k = hk_utf8_seq(p + i, n - i)) == 0)
            return 0;
        i += k;
    }
    return 1;
}

static int hk_label_ok(const char *label)
{
    return label == NULL || *label == '\0' ||
           hk_db_text_ok(label, HK_LABEL_MAX);
}

static int hk_epoch_ok(unsigned long epoch)
{
    return epoch >= 1 && epoch <= HK_DB_EPOCH_MAX;
}

static int hk_sealed_ok(const unsigned char *sealed, size_t len)
{
    return sealed != NULL && len > HK_SEAL_OVERHEAD && len <= HK_SEAL_MAX;
}

static int hk_time_ok(int64_t now, int64_t idle)
{
    return now >= 0 && idle >= 1 && idle <= HK_DB_IDLE_MAX;
}

/* --- handle --------------------------------------------------------------- */

void hk_db_set_err(hk_db *db, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(db->err, sizeof(db->err), fmt, ap);
    va_end(ap);
}

const char *hk_db_errmsg(const hk_db *db)
{
    return db != NULL ? db->err : "no database";
}

void hk_db_close(hk_db *db)
{
    if (db != NULL)
        db->x->close(db);
}

hk_err hk_db_schema_version(hk_db *db, int *version)
{
    if (db == NULL || version == NULL)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->schema_version(db, version);
}

/* --- keys ----------------------------------------------------------------- */

/* Checks a key row read from the store: its Q must be a point of its
 * curve. */
static hk_err hk_key_check(hk_db_key *k)
{
    hk_curve *c = NULL;
    hk_point p;
    hk_err e;

    if ((e = hk_curve_new(k->curve, &c)) != HK_OK)
        return e == HK_ERR_CURVE ? HK_ERR_DECODE : e;
    e = hk_point_parse(c, k->pub.b, HK_POINT_LEN, &p);
    hk_curve_free(c);
    return e == HK_ERR_POINT ? HK_ERR_DECODE : e;
}

/* Fills a new key row. */
static hk_err hk_key_fill(hk_db_key *k, const unsigned char *kid,
                          const char *sub, hk_curve_id curve,
                          const hk_point *pub, const char *label, int64_t now)
{
    if (kid == NULL || !hk_db_text_ok(sub, HK_SUB_MAX) ||
        hk_curve_name(curve) == NULL || pub == NULL || !hk_label_ok(label) ||
        now < 0)
        return HK_ERR_ARG;
    memset(k, 0, sizeof(*k));
    memcpy(k->kid, kid, HK_ID_LEN);
    strcpy(k->owner, sub); /* length checked above */
    k->curve = curve;
    k->pub = *pub;
    k->created = now;
    if (label != NULL)
        strcpy(k->label, label);
    return HK_OK;
}

hk_err hk_db_key_create(hk_db *db, const unsigned char *kid, const char *sub,
                        hk_curve_id curve, const hk_point *pub,
                        const char *label, int64_t now)
{
    hk_db_key k;
    hk_err e;

    if (db == NULL)
        return HK_ERR_ARG;
    if ((e = hk_key_fill(&k, kid, sub, curve, pub, label, now)) != HK_OK)
        return e;
    db->err[0] = '\0';
    return db->ops->key_create(db, &k, 0, NULL, 0);
}

static hk_err hk_key_get(hk_db *db, const unsigned char *kid, const char *sub,
                         hk_db_key *out)
{
    hk_err e;

    if (db == NULL || kid == NULL || out == NULL ||
        (sub != NULL && !hk_db_text_ok(sub, HK_SUB_MAX)))
        return HK_ERR_ARG;
    db->err[0] = '\0';
    if ((e = db->ops->key_get(db, kid, sub, out)) == HK_OK &&
        (e = hk_key_check(out)) != HK_OK)
        memset(out, 0, sizeof(*out));
    return e;
}

hk_err hk_db_key_get(hk_db *db, const unsigned char *kid, hk_db_key *out)
{
    return hk_key_get(db, kid, NULL, out);
}

hk_err hk_db_key_get_owned(hk_db *db, const unsigned char *kid, const char *sub,
                           hk_db_key *out)
{
    if (sub == NULL)
        return HK_ERR_ARG;
    return hk_key_get(db, kid, sub, out);
}

hk_err hk_db_key_list(hk_db *db, const char *sub, hk_db_key **keys, size_t *n)
{
    size_t i;
    hk_err e;

    if (db == NULL || (sub != NULL && !hk_db_text_ok(sub, HK_SUB_MAX)) ||
        keys == NULL || n == NULL)
        return HK_ERR_ARG;
    *keys = NULL;
    *n = 0;
    db->err[0] = '\0';
    if ((e = db->ops->key_list(db, sub, -1, keys, n)) != HK_OK)
        return e;
    for (i = 0; i < *n && e == HK_OK; i++)
        e = hk_key_check(&(*keys)[i]);
    if (e != HK_OK) {
        OPENSSL_free(*keys);
        *keys = NULL;
        *n = 0;
    }
    return e;
}

hk_err hk_db_key_set_disabled(hk_db *db, const unsigned char *kid, int disabled)
{
    if (db == NULL || kid == NULL)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->key_set_disabled(db, kid, disabled != 0);
}

hk_err hk_db_key_set_limits(hk_db *db, const unsigned char *kid,
                            unsigned max_hour, unsigned max_day)
{
    if (db == NULL || kid == NULL || max_hour > HK_DB_LIMIT_MAX ||
        max_day > HK_DB_LIMIT_MAX)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->key_set_limits(db, kid, max_hour, max_day);
}

hk_err hk_db_key_delete(hk_db *db, const unsigned char *kid, const char *sub)
{
    if (db == NULL || kid == NULL ||
        (sub != NULL && !hk_db_text_ok(sub, HK_SUB_MAX)))
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->key_delete(db, kid, sub, 0);
}

hk_err hk_db_key_confirm(hk_db *db, const unsigned char *kid)
{
    if (db == NULL || kid == NULL)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->key_confirm(db, kid);
}

hk_err hk_db_key_sweep_pending(hk_db *db, int64_t before, hk_db_key **gone,
                               size_t *n)
{
    hk_db_key *keys = NULL;
    size_t cnt = 0, i;
    hk_err e;

    if (db == NULL || before < 0 || gone == NULL || n == NULL)
        return HK_ERR_ARG;
    *gone = NULL;
    *n = 0;
    db->err[0] = '\0';
    if ((e = db->ops->key_list(db, NULL, before, &keys, &cnt)) != HK_OK)
        return e;
    /* one conditional delete each: a key confirmed since the listing stays
     * (HK_ERR_NOT_FOUND) and is dropped from the list */
    for (i = 0; i < cnt && e == HK_OK; i++) {
        e = db->ops->key_delete(db, keys[i].kid, NULL, 1);
        if (e == HK_OK)
            keys[(*n)++] = keys[i];
        else if (e == HK_ERR_NOT_FOUND)
            e = HK_OK;
    }
    if (*n > 0)
        *gone = keys;
    else
        OPENSSL_free(keys);
    return e;
}

/* --- shares --------------------------------------------------------------- */

static hk_err hk_share_put(hk_db *db, const unsigned char *kid,
                           unsigned long epoch, hk_db_share_state state,
                           const unsigned char *sealed, size_t len)
{
    if (db == NULL || kid == NULL || !hk_epoch_ok(epoch) ||
        !hk_sealed_ok(sealed, len))
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->share_put(db, kid, epoch, state, sealed, len);
}

hk_err hk_db_share_put_rule(hk_err lookup, unsigned long active,
                            hk_db_share_state state, unsigned long epoch)
{
    if (lookup != HK_OK && lookup != HK_ERR_NOT_FOUND)
        return lookup;
    if (state == HK_DB_SHARE_ACTIVE) /* keygen: the first share */
        return lookup == HK_OK ? HK_ERR_EXISTS : HK_OK;
    if (lookup == HK_ERR_NOT_FOUND) /* refresh of a key without a share */
        return HK_ERR_STATE;
    return epoch > active ? HK_OK : HK_ERR_EPOCH;
}

hk_err hk_db_share_put_active(hk_db *db, const unsigned char *kid,
                              unsigned long epoch, const unsigned char *sealed,
                              size_t len)
{
    return hk_share_put(db, kid, epoch, HK_DB_SHARE_ACTIVE, sealed, len);
}

hk_err hk_db_share_put_pending(hk_db *db, const unsigned char *kid,
                               unsigned long epoch, const unsigned char *sealed,
                               size_t len)
{
    return hk_share_put(db, kid, epoch, HK_DB_SHARE_PENDING, sealed, len);
}

hk_err hk_db_share_promote(hk_db *db, const unsigned char *kid,
                           unsigned long epoch)
{
    if (db == NULL || kid == NULL || !hk_epoch_ok(epoch))
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->share_promote(db, kid, epoch);
}

hk_err hk_db_share_get(hk_db *db, const unsigned char *kid, unsigned long epoch,
                       unsigned char **sealed, size_t *len,
                       hk_db_share_state *state)
{
    hk_db_share_state st;
    unsigned long ep;

    if (db == NULL || kid == NULL || !hk_epoch_ok(epoch) || sealed == NULL ||
        len == NULL)
        return HK_ERR_ARG;
    *sealed = NULL;
    *len = 0;
    db->err[0] = '\0';
    return db->ops->share_get(db, kid, epoch, &ep, state ? state : &st, sealed,
                              len);
}

hk_err hk_db_share_get_active(hk_db *db, const unsigned char *kid,
                              unsigned long *epoch, unsigned char **sealed,
                              size_t *len)
{
    hk_db_share_state st;

    if (db == NULL || kid == NULL || epoch == NULL || sealed == NULL ||
        len == NULL)
        return HK_ERR_ARG;
    *sealed = NULL;
    *len = 0;
    db->err[0] = '\0';
    return db->ops->share_get(db, kid, 0, epoch, &st, sealed, len);
}

/* --- requests (v5) ------------------------------------------------------- */

void hk_db_request_clear(hk_db_request *r)
{
    if (r == NULL)
        return;
    OPENSSL_free(r->payload);
    OPENSSL_free(r->digests);
    OPENSSL_free(r->result);
    OPENSSL_free(r->sigs);
    OPENSSL_free(r->have);
    memset(r, 0, sizeof(*r));
}

void hk_db_request_list_free(hk_db_request *list, size_t n)
{
    size_t i;

    for (i = 0; list != NULL && i < n; i++)
        hk_db_request_clear(&list[i]);
    OPENSSL_free(list);
}

/* The stored fields of a new request are within the schema's bounds. */
static int hk_request_ok(const hk_db_request *r)
{
    return r->payload != NULL && r->payload_len > 0 &&
           r->payload_len <= HK_DB_REQ_PAYLOAD_MAX && r->digests != NULL &&
           r->dlen >= 1 && r->dlen <= 64 && r->ndigests >= 1 &&
           r->ndigests <= HK_DB_REQ_DIGESTS_MAX &&
           hk_db_req_kind_name(r->kind) != NULL &&
           hk_db_text_ok(r->owner, HK_SUB_MAX) &&
           hk_db_text_ok(r->requester, HK_SUB_MAX) &&
           hk_db_text_ok(r->metadata, HK_DB_REQ_META_MAX) &&
           strlen(r->metadata) >= 2 &&
           (r->network[0] == 0 ||
            hk_db_text_ok(r->network, sizeof(r->network) - 1)) &&
           (r->callback_url[0] == 0 ||
            hk_db_text_ok(r->callback_url, HK_DB_REQ_URL_MAX)) &&
           r->created >= 0 && r->expires > r->created;
}

hk_err hk_db_request_put(hk_db *db, const hk_db_request *r)
{
    if (db == NULL || r == NULL || !hk_request_ok(r))
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->request_put(db, r);
}

hk_err hk_db_request_get(hk_db *db, const unsigned char *rid,
                         hk_db_request *out)
{
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (db == NULL || rid == NULL || out == NULL)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->request_get(db, rid, out);
}

hk_err hk_db_request_list(hk_db *db, const char *owner, hk_db_req_state state,
                          int64_t after, const unsigned char *after_rid,
                          size_t max, hk_db_request **out, size_t *n)
{
    if (out != NULL)
        *out = NULL;
    if (n != NULL)
        *n = 0;
    if (db == NULL || out == NULL || n == NULL ||
        !hk_db_text_ok(owner, HK_SUB_MAX) ||
        hk_db_req_state_name(state) == NULL || after < 0 || max < 1 ||
        max > HK_DB_REQ_LIST_MAX)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->request_list(db, owner, state, after, after_rid, max, out,
                                 n);
}

hk_err hk_db_request_sig_put(hk_db *db, const unsigned char *rid, size_t idx,
                             const unsigned char sig[64], int64_t now,
                             size_t *nsigs)
{
    if (nsigs != NULL)
        *nsigs = 0;
    if (db == NULL || rid == NULL || sig == NULL || nsigs == NULL ||
        idx >= HK_DB_REQ_DIGESTS_MAX || now < 0)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->request_sig_put(db, rid, idx, sig, now, nsigs);
}

hk_err hk_db_request_finish(hk_db *db, const unsigned char *rid,
                            hk_db_req_state to, const char *reason,
                            const unsigned char *result, size_t result_len,
                            int64_t now)
{
    if (db == NULL || rid == NULL || to == HK_REQ_PENDING ||
        hk_db_req_state_name(to) == NULL || reason == NULL ||
        (reason[0] != 0 && !hk_db_text_ok(reason, HK_DB_REQ_REASON_MAX)) ||
        (to == HK_REQ_SIGNED) != (result != NULL) ||
        (result != NULL &&
         (result_len == 0 || result_len > HK_DB_REQ_RESULT_MAX)) ||
        now < 0)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->request_finish(db, rid, to, reason, result, result_len,
                                   now);
}

hk_err hk_db_request_sweep(hk_db *db, int64_t now, hk_db_request **out,
                           size_t *n)
{
    if (out != NULL)
        *out = NULL;
    if (n != NULL)
        *n = 0;
    if (db == NULL || out == NULL || n == NULL || now < 0)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->request_sweep(db, now, out, n);
}

hk_err hk_db_session_bind_request(hk_db *db, const unsigned char *sid,
                                  const unsigned char *rid, unsigned idx)
{
    if (db == NULL || sid == NULL || rid == NULL ||
        idx >= HK_DB_REQ_DIGESTS_MAX)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->session_bind_request(db, sid, rid, idx);
}

hk_err hk_db_request_approve(hk_db *db, const unsigned char *rid,
                             const char *approver, int64_t now)
{
    if (db == NULL || rid == NULL || !hk_db_text_ok(approver, HK_SUB_MAX) ||
        now < 0)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->request_approve(db, rid, approver, now);
}

hk_err hk_db_request_approvers(hk_db *db, const unsigned char *rid,
                               char (*subs)[HK_SUB_MAX + 1], size_t max,
                               size_t *n)
{
    if (n != NULL)
        *n = 0;
    if (db == NULL || rid == NULL || subs == NULL || n == NULL || max < 1)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->request_approvers(db, rid, subs, max, n);
}

hk_err hk_db_request_inflight(hk_db *db, const char *owner,
                              const unsigned char *kid,
                              const unsigned char *except, int64_t live_after,
                              const unsigned char *after_rid,
                              unsigned char (*rids)[HK_ID_LEN], size_t max,
                              size_t *n)
{
    if (n != NULL)
        *n = 0;
    if (db == NULL || !hk_db_text_ok(owner, HK_SUB_MAX) || kid == NULL ||
        except == NULL || live_after < 0 || rids == NULL || n == NULL ||
        max < 1 || max > HK_DB_REQ_LIST_MAX)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->request_inflight(db, owner, kid, except, live_after,
                                     after_rid, rids, max, n);
}

hk_err hk_db_callback_claim(hk_db *db, int64_t now, int64_t lease, size_t max,
                            hk_db_request **out, size_t *n)
{
    if (out != NULL)
        *out = NULL;
    if (n != NULL)
        *n = 0;
    if (db == NULL || out == NULL || n == NULL || now < 0 || lease < 1 ||
        max < 1 || max > HK_DB_CB_CLAIM_MAX)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->callback_claim(db, now, lease, max, out, n);
}

hk_err hk_db_callback_result(hk_db *db, const unsigned char *rid, int ok,
                             int64_t next, int max_attempts, int64_t *attempts)
{
    if (db == NULL || rid == NULL || next < 0 || max_attempts < 1)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->callback_result(db, rid, ok, next, max_attempts, attempts);
}

/* --- backups (v4) -------------------------------------------------------- */

hk_err hk_db_backup_put(hk_db *db, const unsigned char *kid,
                        unsigned long epoch,
                        const unsigned char bk_fp[HK_HASH_LEN],
                        const unsigned char *blob, size_t len, int64_t now)
{
    if (db == NULL || kid == NULL || bk_fp == NULL || blob == NULL ||
        !hk_epoch_ok(epoch) || len == 0 || len > HK_DB_BACKUP_MAX || now < 0)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->backup_put(db, kid, epoch, bk_fp, blob, len, now);
}

hk_err hk_db_backup_get(hk_db *db, const unsigned char *kid,
                        unsigned long epoch, hk_db_backup *out)
{
    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (db == NULL || kid == NULL || out == NULL ||
        (epoch != 0 && !hk_epoch_ok(epoch)))
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->backup_get(db, kid, epoch, out);
}

hk_err hk_db_backup_newest(hk_db *db, const unsigned char *kid,
                           unsigned long *epoch)
{
    if (epoch != NULL)
        *epoch = 0;
    if (db == NULL || kid == NULL || epoch == NULL)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->backup_newest(db, kid, epoch);
}

hk_err hk_db_backup_counts(hk_db *db, int64_t *none, int64_t *stale,
                           int64_t *waiting)
{
    if (db == NULL || none == NULL || stale == NULL || waiting == NULL)
        return HK_ERR_ARG;
    *none = *stale = *waiting = 0;
    db->err[0] = '\0';
    return db->ops->backup_counts(db, none, stale, waiting);
}

/* --- sessions ------------------------------------------------------------- */

static hk_err hk_session_create(hk_db *db, const unsigned char *sid,
                                const char *sub, hk_db_op op,
                                const unsigned char *kid, hk_curve_id curve,
                                int64_t now)
{
    hk_db_session s;

    if (db == NULL || sid == NULL || !hk_db_text_ok(sub, HK_SUB_MAX) ||
        hk_db_op_name(op) == NULL || now < 0 ||
        (curve != 0 && hk_curve_name(curve) == NULL))
        return HK_ERR_ARG;
    memset(&s, 0, sizeof(s));
    memcpy(s.sid, sid, HK_ID_LEN);
    strcpy(s.owner, sub); /* length checked above */
    s.op = op;
    s.has_kid = kid != NULL;
    if (kid != NULL)
        memcpy(s.kid, kid, HK_ID_LEN);
    s.created = s.last_seen = now;
    s.state = HK_DB_SESS_OPEN;
    s.curve = curve;
    db->err[0] = '\0';
    return db->ops->session_create(db, &s);
}

hk_err hk_db_session_create(hk_db *db, const unsigned char *sid,
                            const char *sub, hk_db_op op,
                            const unsigned char *kid, int64_t now)
{
    return hk_session_create(db, sid, sub, op, kid, 0, now);
}

hk_err hk_db_session_create_keygen(hk_db *db, const unsigned char *sid,
                                   const char *sub, const unsigned char *kid,
                                   hk_curve_id curve, int64_t now)
{
    if (curve == 0)
        return HK_ERR_ARG;
    return hk_session_create(db, sid, sub, HK_DB_OP_KEYGEN, kid, curve, now);
}

hk_err hk_db_session_touch(hk_db *db, const unsigned char *sid, int64_t now,
                           int64_t idle)
{
    if (db == NULL || sid == NULL || !hk_time_ok(now, idle))
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->session_touch(db, sid, now, idle);
}

hk_err hk_db_session_get(hk_db *db, const unsigned char *sid, int64_t now,
                         int64_t idle, hk_db_session *out)
{
    if (db == NULL || sid == NULL || !hk_time_ok(now, idle) || out == NULL)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->session_get(db, sid, now, idle, out);
}

hk_err hk_db_session_get_owned(hk_db *db, const unsigned char *sid,
                               const char *sub, hk_db_op op, int64_t now,
                               int64_t idle, hk_db_session *out)
{
    hk_err e;

    if (!hk_db_text_ok(sub, HK_SUB_MAX) || hk_db_op_name(op) == NULL)
        return HK_ERR_ARG;
    if ((e = hk_db_session_get(db, sid, now, idle, out)) != HK_OK)
        return e;
    if (strcmp(out->owner, sub) != 0 || out->op != op) {
        memset(out, 0, sizeof(*out));
        return HK_ERR_SESSION;
    }
    return HK_OK;
}

hk_err hk_db_session_set_state(hk_db *db, const unsigned char *sid,
                               hk_db_sess_state state, int64_t now,
                               int64_t idle)
{
    hk_db_sess_state from[2];

    if (db == NULL || sid == NULL || !hk_time_ok(now, idle) ||
        !hk_db_sess_from_states(state, from))
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->session_set_state(db, sid, state, now, idle);
}

hk_err hk_db_session_others(hk_db *db, const unsigned char *sid, int64_t now,
                            int64_t idle, int64_t *n)
{
    if (db == NULL || sid == NULL || !hk_time_ok(now, idle) || n == NULL)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->session_others(db, sid, now, idle, n);
}

hk_err hk_db_set_node(hk_db *db, const char *node)
{
    if (db == NULL || !hk_db_text_ok(node, HK_NODE_MAX))
        return HK_ERR_ARG;
    memcpy(db->node, node, strlen(node) + 1);
    return HK_OK;
}

hk_err hk_db_session_fail_node(hk_db *db, const char *node, size_t *n)
{
    size_t dummy;

    if (db == NULL || !hk_db_text_ok(node, HK_NODE_MAX))
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->session_fail_node(db, node, n != NULL ? n : &dummy);
}

hk_err hk_db_write_probe(hk_db *db, int64_t now)
{
    if (db == NULL || now < 0)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->write_probe(db, now);
}

hk_err hk_db_session_sweep(hk_db *db, int64_t now, int64_t idle,
                           size_t *deleted)
{
    size_t n = 0;

    if (db == NULL || !hk_time_ok(now, idle))
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->session_sweep(db, now, idle, deleted ? deleted : &n);
}

/* --- setup ---------------------------------------------------------------- */

hk_err hk_db_setup_put(hk_db *db, const unsigned char *sealed, size_t slen,
                       const unsigned char *pub, size_t plen, int64_t now)
{
    if (db == NULL || !hk_sealed_ok(sealed, slen) || pub == NULL || plen == 0 ||
        plen > HK_SEAL_MAX_PLAIN || now < 0)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->setup_put(db, sealed, slen, pub, plen, now);
}

hk_err hk_db_setup_get(hk_db *db, unsigned char **sealed, size_t *slen,
                       unsigned char **pub, size_t *plen)
{
    unsigned char *p = NULL;
    size_t pl = 0;
    hk_err e;

    if (db == NULL || sealed == NULL || slen == NULL ||
        (pub == NULL) != (plen == NULL))
        return HK_ERR_ARG;
    *sealed = NULL;
    *slen = 0;
    db->err[0] = '\0';
    e = db->ops->setup_get(db, sealed, slen, &p, &pl);
    if (e == HK_OK && pub != NULL) {
        *pub = p;
        *plen = pl;
        p = NULL;
    }
    OPENSSL_free(p);
    return e;
}

/* --- sealing + storage ---------------------------------------------------- */

/* Encodes and seals a share for owner sub. */
static hk_err hk_seal_share(const hk_kek *kek, const char *sub,
                            const hk_share *s, unsigned char **out,
                            size_t *outlen)
{
    unsigned char aad[HK_SHARE_AAD_MAX], *rec = NULL;
    size_t alen = sizeof(aad), rlen = 0;
    hk_err e;

    if ((e = hk_share_aad(s->kid, sub, s->epoch, aad, &alen)) != HK_OK ||
        (e = hk_share_encode(s, &rec, &rlen)) != HK_OK)
        return e;
    e = hk_seal(kek, aad, alen, rec, rlen, out, outlen);
    OPENSSL_clear_free(rec, rlen);
    return e;
}

/* The arguments every store of a share checks. */
static int hk_store_args_ok(const hk_db *db, const hk_kek *kek, const char *sub,
                            const hk_share *s)
{
    return db != NULL && kek != NULL && hk_db_text_ok(sub, HK_SUB_MAX) &&
           s != NULL && s->role == HK_ROLE_P2 && hk_epoch_ok(s->epoch);
}

hk_err hk_store_new_key(hk_db *db, const hk_kek *kek, const char *sub,
                        const hk_share *s, const char *label, int64_t now)
{
    return hk_store_new_key_att(db, kek, sub, s, label, NULL, now);
}

hk_err hk_store_new_key_att(hk_db *db, const hk_kek *kek, const char *sub,
                            const hk_share *s, const char *label,
                            const char *attestation, int64_t now)
{
    unsigned char *sealed = NULL;
    size_t slen = 0;
    hk_db_key k;
    hk_err e;

    if (!hk_store_args_ok(db, kek, sub, s) ||
        (attestation != NULL && !hk_db_text_ok(attestation, HK_DB_ATTEST_MAX)))
        return HK_ERR_ARG;
    if ((e = hk_key_fill(&k, s->kid, sub, s->curve, &s->Q, label, now)) !=
            HK_OK ||
        (e = hk_seal_share(kek, sub, s, &sealed, &slen)) != HK_OK)
        return e;
    k.pending = 1; /* until keygen.5 (hk_db_key_confirm) */
    if (attestation != NULL)
        strcpy(k.attestation, attestation); /* length checked above */
    db->err[0] = '\0';
    e = db->ops->key_create(db, &k, s->epoch, sealed, slen);
    OPENSSL_free(sealed);
    return e;
}

/* The key of kid if sub owns it and it is enabled. */
static hk_err hk_usable_key(hk_db *db, const unsigned char *kid,
                            const char *sub, hk_db_key *k)
{
    hk_err e;

    if ((e = hk_db_key_get_owned(db, kid, sub, k)) != HK_OK)
        return e;
    return k->disabled ? HK_ERR_FORBIDDEN : HK_OK;
}

hk_err hk_store_share(hk_db *db, const hk_kek *kek, const char *sub,
                      const hk_share *s, int pending)
{
    unsigned char *sealed = NULL;
    size_t slen = 0;
    hk_db_key k;
    hk_err e;

    if (!hk_store_args_ok(db, kek, sub, s))
        return HK_ERR_ARG;
    if ((e = hk_usable_key(db, s->kid, sub, &k)) != HK_OK)
        return e;
    if (k.curve != s->curve || !hk_point_eq(&k.pub, &s->Q))
        return HK_ERR_KEY_MISMATCH;
    if ((e = hk_seal_share(kek, sub, s, &sealed, &slen)) != HK_OK)
        return e;
    e = hk_share_put(db, s->kid, s->epoch,
                     pending ? HK_DB_SHARE_PENDING : HK_DB_SHARE_ACTIVE, sealed,
                     slen);
    OPENSSL_free(sealed);
    return e;
}

/* Opens a sealed share of (kid, sub, epoch) and decodes it. */
static hk_err hk_open_share(const hk_kek *kek, const char *sub,
                            const unsigned char *kid, unsigned long epoch,
                            const unsigned char *sealed, size_t slen,
                            hk_share **out)
{
    unsigned char aad[HK_SHARE_AAD_MAX], *rec = NULL;
    size_t alen = sizeof(aad), rlen = 0;
    hk_err e;

    if ((e = hk_share_aad(kid, sub, epoch, aad, &alen)) != HK_OK ||
        (e = hk_unseal(kek, aad, alen, sealed, slen, &rec, &rlen)) != HK_OK)
        return e;
    /* the KEK's seal authenticated it: the receiver's checks were made
     * when its N and ckey came in */
    e = hk_share_decode_sealed(rec, rlen, out);
    OPENSSL_clear_free(rec, rlen);
    return e;
}

/* The decoded share must be the P2 share of that key and epoch. */
static int hk_share_matches(const hk_share *s, const hk_db_key *k,
                            unsigned long epoch)
{
    return s->role == HK_ROLE_P2 && s->epoch == epoch &&
           memcmp(s->kid, k->kid, HK_ID_LEN) == 0 && s->curve == k->curve &&
           hk_point_eq(&s->Q, &k->pub);
}

hk_err hk_fetch_share(hk_db *db, const char *sub, const unsigned char *kid,
                      unsigned long epoch, hk_db_key *key,
                      unsigned char **sealed, size_t *slen, int *is_pending)
{
    hk_db_share_state st = HK_DB_SHARE_ACTIVE;
    hk_err e;

    if (db == NULL || !hk_db_text_ok(sub, HK_SUB_MAX) || kid == NULL ||
        !hk_epoch_ok(epoch) || key == NULL || sealed == NULL || slen == NULL)
        return HK_ERR_ARG;
    *sealed = NULL;
    *slen = 0;
    if ((e = hk_usable_key(db, kid, sub, key)) != HK_OK ||
        (e = hk_db_share_get(db, kid, epoch, sealed, slen, &st)) != HK_OK)
        return e;
    if (is_pending != NULL)
        *is_pending = st == HK_DB_SHARE_PENDING;
    return HK_OK;
}

hk_err hk_open_fetched_share(const hk_kek *kek, const char *sub,
                             const hk_db_key *key, unsigned long epoch,
                             const unsigned char *sealed, size_t slen,
                             hk_share **out)
{
    hk_share *s = NULL;
    hk_err e;

    if (kek == NULL || !hk_db_text_ok(sub, HK_SUB_MAX) || key == NULL ||
        !hk_epoch_ok(epoch) || sealed == NULL || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if ((e = hk_open_share(kek, sub, key->kid, epoch, sealed, slen, &s)) !=
        HK_OK)
        return e;
    if (!hk_share_matches(s, key, epoch)) {
        hk_share_free(s);
        return HK_ERR_SHARE;
    }
    *out = s;
    return HK_OK;
}

hk_err hk_load_share(hk_db *db, const hk_kek *kek, const char *sub,
                     const unsigned char *kid, unsigned long epoch,
                     hk_share **out, int *is_pending)
{
    unsigned char *sealed = NULL;
    size_t slen = 0;
    hk_db_key k;
    int pending = 0;
    hk_err e;

    if (kek == NULL || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if ((e = hk_fetch_share(db, sub, kid, epoch, &k, &sealed, &slen,
                            &pending)) == HK_OK &&
        (e = hk_open_fetched_share(kek, sub, &k, epoch, sealed, slen, out)) ==
            HK_OK &&
        is_pending != NULL)
        *is_pending = pending;
    OPENSSL_free(sealed);
    return e;
}

hk_err hk_store_setup(hk_db *db, const hk_kek *kek, const hk_rped_secret *sec,
                      int64_t now)
{
    unsigned char *rec = NULL, *sealed = NULL, *pub = NULL;
    size_t rlen = 0, slen = 0, plen = 0;
    hk_err e;

    if (db == NULL || kek == NULL || sec == NULL || now < 0)
        return HK_ERR_ARG;
    if ((e = hk_setup_secret_encode(sec, &rec, &rlen)) != HK_OK ||
        (e = hk_seal(kek, hk_setup_aad, sizeof(hk_setup_aad) - 1, rec, rlen,
                     &sealed, &slen)) != HK_OK ||
        (e = hk_setup_encode(sec, &pub, &plen)) != HK_OK)
        goto done;
    e = hk_db_setup_put(db, sealed, slen, pub, plen, now);
done:
    OPENSSL_clear_free(rec, rlen);
    OPENSSL_free(sealed);
    OPENSSL_free(pub);
    return e;
}

hk_err hk_load_setup(hk_db *db, const hk_kek *kek, hk_rped_secret **out)
{
    unsigned char *sealed = NULL, *rec = NULL;
    size_t slen = 0, rlen = 0;
    hk_err e;

    if (db == NULL || kek == NULL || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if ((e = hk_db_setup_get(db, &sealed, &slen, NULL, NULL)) != HK_OK ||
        (e = hk_unseal(kek, hk_setup_aad, sizeof(hk_setup_aad) - 1, sealed,
                       slen, &rec, &rlen)) != HK_OK)
        goto done;
    e = hk_setup_secret_decode(rec, rlen, out);
done:
    OPENSSL_clear_free(rec, rlen);
    OPENSSL_free(sealed);
    return e;
}

/* --- audit log ------------------------------------------------------------ */

int hk_audit_name_ok(const char *name)
{
    size_t i, n = strlen(name);

    if (n < 1 || n > HK_AUDIT_NAME_MAX)
        return 0;
    for (i = 0; i < n; i++)
        if ((name[i] < 'a' || name[i] > 'z') && name[i] != '_')
            return 0;
    return 1;
}

/* "" or valid text of at most max bytes. */
static int hk_opt_text_ok(const char *s, size_t max)
{
    return *s == '\0' || hk_db_text_ok(s, max);
}

int hk_audit_rec_ok(const hk_audit_rec *r)
{
    return r != NULL && r->time >= 0 &&
           memchr(r->node, 0, sizeof(r->node)) != NULL &&
           memchr(r->subject, 0, sizeof(r->subject)) != NULL &&
           memchr(r->detail, 0, sizeof(r->detail)) != NULL &&
           memchr(r->event, 0, sizeof(r->event)) != NULL &&
           memchr(r->outcome, 0, sizeof(r->outcome)) != NULL &&
           hk_opt_text_ok(r->node, HK_NODE_MAX) &&
           hk_opt_text_ok(r->subject, HK_SUB_MAX) &&
           hk_opt_text_ok(r->detail, HK_AUDIT_DETAIL_MAX) &&
           hk_audit_name_ok(r->event) && hk_audit_name_ok(r->outcome) &&
           r->digest_len <= HK_AUDIT_DIGEST_MAX &&
           r->sig_len <= HK_AUDIT_SIG_MAX;
}

/* Feeds one item with its 4-byte big-endian length. */
static void hk_hash_item(EVP_MD_CTX *md, const void *p, size_t n)
{
    unsigned char len[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                            (unsigned char)(n >> 8), (unsigned char)n};

    (void)EVP_DigestUpdate(md, len, 4);
    (void)EVP_DigestUpdate(md, p, n);
}

static void hk_hash_i64(EVP_MD_CTX *md, int64_t v)
{
    unsigned char b[8];
    int i;

    for (i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)v >> (56 - 8 * i));
    hk_hash_item(md, b, 8);
}

void hk_audit_hash(const hk_audit_rec *r, unsigned char out[HK_AUDIT_HASH_LEN])
{
    static const char label[] = "halfkey audit v1";
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int n = 0;

    memset(out, 0, HK_AUDIT_HASH_LEN);
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        return; /* all zero: never a valid link, verify reports it */
    }
    hk_hash_item(md, label, sizeof(label) - 1);
    hk_hash_item(md, r->prev, HK_AUDIT_HASH_LEN);
    hk_hash_i64(md, r->seq);
    hk_hash_i64(md, r->time);
    hk_hash_item(md, r->node, strlen(r->node));
    hk_hash_item(md, r->subject, strlen(r->subject));
    hk_hash_item(md, r->kid, r->has_kid ? HK_ID_LEN : 0);
    hk_hash_item(md, r->sid, r->has_sid ? HK_ID_LEN : 0);
    hk_hash_item(md, r->event, strlen(r->event));
    hk_hash_item(md, r->outcome, strlen(r->outcome));
    hk_hash_item(md, r->detail, strlen(r->detail));
    hk_hash_item(md, r->digest, r->digest_len);
    hk_hash_item(md, r->sig, r->sig_len);
    (void)EVP_DigestFinal_ex(md, out, &n);
    EVP_MD_CTX_free(md);
}

void hk_audit_link(hk_audit_rec *rec, int64_t last,
                   const unsigned char *last_hash)
{
    rec->seq = last + 1;
    if (last_hash != NULL)
        memcpy(rec->prev, last_hash, HK_AUDIT_HASH_LEN);
    else
        memset(rec->prev, 0, HK_AUDIT_HASH_LEN);
    hk_audit_hash(rec, rec->hash);
}

hk_err hk_db_audit_append(hk_db *db, hk_audit_rec *rec)
{
    if (db == NULL || !hk_audit_rec_ok(rec))
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->audit_append(db, rec);
}

hk_err hk_db_audit_scan(hk_db *db, int64_t from,
                        hk_err (*fn)(void *ctx, const hk_audit_rec *r),
                        void *ctx)
{
    if (db == NULL || fn == NULL)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->audit_scan(db, from, fn, ctx);
}

hk_err hk_db_audit_count(hk_db *db, const unsigned char *kid, const char *event,
                         const char *outcome, int64_t since, int64_t *n)
{
    if (db == NULL || kid == NULL || event == NULL || outcome == NULL ||
        !hk_audit_name_ok(event) || !hk_audit_name_ok(outcome) || n == NULL)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->audit_count(db, kid, event, outcome, since, n);
}

/* --- rate limits ---------------------------------------------------------- */

void hk_bucket_step(int found, double tokens, double updated, double rate,
                    double burst, double now, double *tokens_out, int *ok,
                    double *retry)
{
    /* A clock that moved back refills nothing; a new subject starts full. */
    double t = found ? tokens + fmax(0.0, now - updated) * rate : burst;

    t = fmin(t, burst);
    *ok = t >= 1.0;
    *retry = *ok ? 0.0 : (1.0 - t) / rate;
    *tokens_out = *ok ? t - 1.0 : t;
}

hk_err hk_db_bucket_take(hk_db *db, const char *sub, double rate, double burst,
                         double now, int *ok, double *retry)
{
    if (db == NULL || !hk_db_text_ok(sub, HK_SUB_MAX) || !(rate > 0.0) ||
        !(burst >= 1.0) || !(now >= 0.0) || ok == NULL || retry == NULL)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->bucket_take(db, sub, rate, burst, now, ok, retry);
}

const char *hk_db_backend(const hk_db *db)
{
    return db != NULL ? db->x->name : "none";
}

/* --- re-sealing ----------------------------------------------------------- */

hk_err hk_db_share_list_all(hk_db *db, const unsigned char *after_kid,
                            unsigned long after_epoch, hk_db_share_ref *refs,
                            size_t max, size_t *n)
{
    if (db == NULL || refs == NULL || n == NULL || max == 0 ||
        max > HK_DB_LIST_MAX ||
        (after_kid != NULL && after_epoch > HK_DB_EPOCH_MAX))
        return HK_ERR_ARG;
    *n = 0;
    db->err[0] = '\0';
    return db->ops->share_list_all(db, after_kid, after_epoch, refs, max, n);
}

hk_err hk_db_share_replace_sealed(hk_db *db, const unsigned char *kid,
                                  unsigned long epoch, const unsigned char *old,
                                  size_t oldlen, const unsigned char *nblob,
                                  size_t nlen)
{
    if (db == NULL || kid == NULL || !hk_epoch_ok(epoch) ||
        !hk_sealed_ok(old, oldlen) || !hk_sealed_ok(nblob, nlen))
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->share_replace_sealed(db, kid, epoch, old, oldlen, nblob,
                                         nlen);
}

hk_err hk_db_setup_replace_sealed(hk_db *db, const unsigned char *old,
                                  size_t oldlen, const unsigned char *nblob,
                                  size_t nlen)
{
    if (db == NULL || !hk_sealed_ok(old, oldlen) || !hk_sealed_ok(nblob, nlen))
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->setup_replace_sealed(db, old, oldlen, nblob, nlen);
}

/* Reads the blob to re-seal: the share of ref, or the setup (ref NULL). */
static hk_err hk_reseal_read(hk_db *db, const hk_db_share_ref *ref,
                             unsigned char **blob, size_t *len)
{
    if (ref != NULL)
        return hk_db_share_get(db, ref->kid, ref->epoch, blob, len, NULL);
    return hk_db_setup_get(db, blob, len, NULL, NULL);
}

static hk_err hk_reseal_swap(hk_db *db, const hk_db_share_ref *ref,
                             const unsigned char *old, size_t oldlen,
                             const unsigned char *nblob, size_t nlen)
{
    if (ref != NULL)
        return hk_db_share_replace_sealed(db, ref->kid, ref->epoch, old, oldlen,
                                          nblob, nlen);
    return hk_db_setup_replace_sealed(db, old, oldlen, nblob, nlen);
}

/* One attempt: read, and unless already under the primary, open, seal
 * again and compare-and-swap. */
static hk_err hk_reseal_try(hk_db *db, const hk_kek *kek,
                            const hk_db_share_ref *ref,
                            const unsigned char *aad, size_t alen,
                            hk_reseal_outcome *outcome)
{
    unsigned char *old = NULL, *rec = NULL, *nblob = NULL;
    unsigned char id[HK_KEK_ID_LEN];
    size_t oldlen = 0, rlen = 0, nlen = 0;
    hk_err e;

    if ((e = hk_reseal_read(db, ref, &old, &oldlen)) == HK_ERR_NOT_FOUND) {
        *outcome = HK_RESEAL_GONE;
        return HK_OK;
    }
    if (e != HK_OK || (e = hk_sealed_kek_id(old, oldlen, id)) != HK_OK)
        goto done;
    if (hk_kek_find(kek, id) == 1) {
        *outcome = HK_RESEAL_ALREADY;
        goto done;
    }
    if ((e = hk_unseal(kek, aad, alen, old, oldlen, &rec, &rlen)) != HK_OK ||
        (e = hk_seal(kek, aad, alen, rec, rlen, &nblob, &nlen)) != HK_OK)
        goto done;
    e = hk_reseal_swap(db, ref, old, oldlen, nblob, nlen);
    if (e == HK_ERR_NOT_FOUND) {
        *outcome = HK_RESEAL_GONE;
        e = HK_OK;
    } else if (e == HK_OK) {
        *outcome = HK_RESEAL_DONE;
    }
done:
    OPENSSL_clear_free(rec, rlen);
    OPENSSL_free(old);
    OPENSSL_free(nblob);
    return e;
}

/* Retries hk_reseal_try while the compare-and-swap loses. */
static hk_err hk_reseal_blob(hk_db *db, const hk_kek *kek,
                             const hk_db_share_ref *ref,
                             const unsigned char *aad, size_t alen,
                             hk_reseal_outcome *outcome, size_t *races)
{
    hk_err e = HK_ERR_STATE;
    int i;

    for (i = 0; i < HK_RESEAL_TRIES; i++) {
        if ((e = hk_reseal_try(db, kek, ref, aad, alen, outcome)) !=
            HK_ERR_STATE)
            break;
        (*races)++;
    }
    return e;
}

hk_err hk_reseal_share(hk_db *db, const hk_kek *kek, const hk_db_share_ref *ref,
                       hk_reseal_outcome *outcome, size_t *races)
{
    unsigned char aad[HK_SHARE_AAD_MAX];
    size_t alen = sizeof(aad);
    hk_err e;

    if (db == NULL || kek == NULL || ref == NULL || outcome == NULL ||
        races == NULL || !hk_epoch_ok(ref->epoch))
        return HK_ERR_ARG;
    if ((e = hk_share_aad(ref->kid, ref->owner, ref->epoch, aad, &alen)) !=
        HK_OK)
        return e;
    return hk_reseal_blob(db, kek, ref, aad, alen, outcome, races);
}

hk_err hk_reseal_setup(hk_db *db, const hk_kek *kek, hk_reseal_outcome *outcome,
                       size_t *races)
{
    if (db == NULL || kek == NULL || outcome == NULL || races == NULL)
        return HK_ERR_ARG;
    return hk_reseal_blob(db, kek, NULL, hk_setup_aad, sizeof(hk_setup_aad) - 1,
                          outcome, races);
}

/* --- attestations ----------------------------------------------------------
 */

hk_err hk_db_attest_put(hk_db *db, const unsigned char *sid,
                        const hk_db_attestation *a)
{
    if (db == NULL || sid == NULL || a == NULL || a->ak_publen == 0 ||
        a->ak_publen > sizeof(a->ak_pub) ||
        !hk_db_text_ok(a->summary, HK_DB_ATTEST_MAX))
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->attest_put(db, sid, a);
}

hk_err hk_db_attest_get(hk_db *db, const unsigned char *sid,
                        hk_db_attestation *out)
{
    if (db == NULL || sid == NULL || out == NULL)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->attest_get(db, sid, out);
}

hk_err hk_db_attest_finish(hk_db *db, const unsigned char *sid, int verified)
{
    if (db == NULL || sid == NULL)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->attest_finish(db, sid, verified);
}

/* --- presignatures (v7) -------------------------------------------------- */

hk_err hk_db_presig_put(hk_db *db, const unsigned char *kid, const char *owner,
                        unsigned long epoch, const hk_db_presig_in *ps,
                        size_t n, size_t max_key, size_t max_owner, int64_t now)
{
    size_t i;

    if (db == NULL || kid == NULL || !hk_db_text_ok(owner, HK_SUB_MAX) ||
        !hk_epoch_ok(epoch) || ps == NULL || n == 0 ||
        n > HK_PRESIG_BATCH_MAX || now < 0)
        return HK_ERR_ARG;
    for (i = 0; i < n; i++)
        if (ps[i].sealed == NULL || ps[i].len == 0 || ps[i].len > 4096)
            return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->presig_put(db, kid, owner, epoch, ps, n, max_key, max_owner,
                               now);
}

hk_err hk_db_presig_take(hk_db *db, const unsigned char *psid,
                         const unsigned char *kid, const char *owner,
                         unsigned long *epoch, unsigned char **sealed,
                         size_t *len)
{
    if (sealed != NULL)
        *sealed = NULL;
    if (db == NULL || psid == NULL || kid == NULL ||
        !hk_db_text_ok(owner, HK_SUB_MAX) || epoch == NULL || sealed == NULL ||
        len == NULL)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->presig_take(db, psid, kid, owner, epoch, sealed, len);
}

hk_err hk_db_presig_count(hk_db *db, const unsigned char *kid,
                          const char *owner, int64_t *n_key, int64_t *n_owner)
{
    if (db == NULL || kid == NULL || !hk_db_text_ok(owner, HK_SUB_MAX) ||
        n_key == NULL || n_owner == NULL)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->presig_count(db, kid, owner, n_key, n_owner);
}

hk_err hk_db_presig_sweep(hk_db *db, int64_t before, size_t *deleted)
{
    if (db == NULL || deleted == NULL)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    return db->ops->presig_sweep(db, before, deleted);
}

/* The sealed form of one P2 record: record || r^N (rn_len bytes). */
static hk_err hk_seal_presig(const hk_kek *kek, const char *sub,
                             const hk_presig *r, const BIGNUM *rn,
                             size_t rn_len, unsigned char **out, size_t *len)
{
    unsigned char aad[HK_PRESIG_AAD_MAX], *buf;
    size_t alen = sizeof(aad), blen = HK_PRESIG_REC_LEN + rn_len;
    hk_err e;

    if ((buf = OPENSSL_malloc(blen)) == NULL)
        return HK_ERR_NOMEM;
    if ((e = hk_presig_aad(r->kid, sub, r->id, aad, &alen)) == HK_OK &&
        (e = hk_presig_encode(r, buf)) == HK_OK)
        e = BN_bn2binpad(rn, buf + HK_PRESIG_REC_LEN, (int)rn_len) < 0
                ? HK_ERR_ARG
                : hk_seal(kek, aad, alen, buf, blen, out, len);
    OPENSSL_clear_free(buf, blen);
    return e;
}

hk_err hk_store_presigs(hk_db *db, const hk_kek *kek, const char *sub,
                        const hk_presig *recs, BIGNUM *const *rn, size_t rn_len,
                        size_t n, size_t max_key, size_t max_owner, int64_t now)
{
    hk_db_presig_in in[HK_PRESIG_BATCH_MAX];
    unsigned char *blobs[HK_PRESIG_BATCH_MAX] = {0};
    size_t i;
    hk_err e = HK_OK;

    if (db == NULL || kek == NULL || recs == NULL || rn == NULL || n == 0 ||
        n > HK_PRESIG_BATCH_MAX || rn_len == 0 || rn_len > 1024)
        return HK_ERR_ARG;
    for (i = 0; i < n && e == HK_OK; i++) {
        e = recs[i].epoch != recs[0].epoch ||
                    memcmp(recs[i].kid, recs[0].kid, HK_ID_LEN) != 0
                ? HK_ERR_ARG
                : hk_seal_presig(kek, sub, &recs[i], rn[i], rn_len, &blobs[i],
                                 &in[i].len);
        memcpy(in[i].psid, recs[i].id, HK_ID_LEN);
        in[i].sealed = blobs[i];
    }
    if (e == HK_OK)
        e = hk_db_presig_put(db, recs[0].kid, sub, recs[0].epoch, in, n,
                             max_key, max_owner, now);
    for (i = 0; i < n; i++)
        OPENSSL_free(blobs[i]);
    return e;
}

hk_err hk_take_presig(hk_db *db, const hk_kek *kek, const char *sub,
                      const unsigned char *kid, const unsigned char *psid,
                      hk_presig *out, BIGNUM **rn)
{
    unsigned char aad[HK_PRESIG_AAD_MAX], *sealed = NULL, *rec = NULL;
    size_t alen = sizeof(aad), slen = 0, rlen = 0;
    unsigned long epoch = 0;
    hk_err e;

    if (kek == NULL || out == NULL || rn == NULL)
        return HK_ERR_ARG;
    *rn = NULL;
    if ((e = hk_db_presig_take(db, psid, kid, sub, &epoch, &sealed, &slen)) !=
            HK_OK ||
        (e = hk_presig_aad(kid, sub, psid, aad, &alen)) != HK_OK ||
        (e = hk_unseal(kek, aad, alen, sealed, slen, &rec, &rlen)) != HK_OK)
        goto done;
    e = HK_ERR_DECODE;
    if (rlen <= HK_PRESIG_REC_LEN ||
        hk_presig_decode(rec, HK_PRESIG_REC_LEN, out) != HK_OK)
        goto done;
    if (memcmp(out->id, psid, HK_ID_LEN) != 0 ||
        memcmp(out->kid, kid, HK_ID_LEN) != 0 || out->epoch != epoch ||
        (*rn = BN_secure_new()) == NULL ||
        BN_bin2bn(rec + HK_PRESIG_REC_LEN, (int)(rlen - HK_PRESIG_REC_LEN),
                  *rn) == NULL) {
        OPENSSL_cleanse(out, sizeof(*out));
        BN_clear_free(*rn);
        *rn = NULL;
        goto done;
    }
    e = HK_OK;
done:
    OPENSSL_free(sealed);
    OPENSSL_clear_free(rec, rlen);
    return e;
}

/* --- groups --------------------------------------------------------------- */

/* SQLite's synchronous setting back to FULL (db.h: the back end's rule)
 * after a lazy group. The pragma fails only inside a transaction, and
 * the group's has ended (committed or rolled back) here. */
static void hk_db_lazy_off(hk_db *db)
{
    if (db->lazy && db->x->dialect == HK_SQL_SQLITE &&
        db->x->script(db, "PRAGMA synchronous = FULL") != HK_OK)
        hk_db_set_err(db, "could not restore synchronous=FULL");
    db->lazy = 0;
}

hk_err hk_db_group_begin(hk_db *db, int durable)
{
    hk_err e;

    if (db == NULL || db->depth != 0 || durable < HK_DB_LAZY ||
        durable > HK_DB_DEFERRED)
        return HK_ERR_ARG;
    db->err[0] = '\0';
    /* a lazy group is synced soon too where the back end can (nobody
     * waits for it): the window a machine crash can lose shrinks to one
     * sync */
    db->deferred = durable != HK_DB_DURABLE && db->x->can_defer != NULL &&
                   db->x->can_defer(db);
    db->lazy = durable == HK_DB_LAZY || db->deferred;
    if (db->lazy && db->x->dialect == HK_SQL_SQLITE &&
        (e = db->x->script(db, "PRAGMA synchronous = NORMAL")) != HK_OK)
        return e;
    if ((e = hk_sql_begin(db)) == HK_OK && db->lazy &&
        db->x->dialect == HK_SQL_PG)
        e = db->x->script(db, "SET LOCAL synchronous_commit = off");
    if (e != HK_OK && db->depth == 1)
        e = hk_sql_end(db, e);
    if (e != HK_OK) {
        hk_db_lazy_off(db);
        db->deferred = 0;
    }
    return e;
}

hk_err hk_db_group_end(hk_db *db)
{
    hk_err e;

    if (db == NULL || db->depth != 1)
        return HK_ERR_ARG;
    db->ticket = 0;
    e = hk_sql_end(db, HK_OK);
    /* committed without a sync: start it (a failure to start is a failure
     * of the group: its caller must not act on it) */
    if (e == HK_OK && db->deferred)
        e = db->x->sync_start(db, &db->ticket);
    hk_db_lazy_off(db);
    db->deferred = 0;
    return e;
}

uint64_t hk_db_group_ticket(const hk_db *db)
{
    return db == NULL ? 0 : db->ticket;
}

hk_err hk_db_wait_durable(hk_db *db, uint64_t ticket)
{
    if (db == NULL)
        return HK_ERR_ARG;
    if (ticket == 0 || db->x->sync_wait == NULL)
        return HK_OK;
    return db->x->sync_wait(db, ticket);
}
