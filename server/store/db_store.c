/* The storage operations (hk_db_ops, db_impl.h), each written once in SQL
 * over the executor of either back end. db.c has checked the arguments.
 *
 * Concurrency, the same on both back ends: an operation that reads before
 * it writes runs in one transaction (SQLite: BEGIN IMMEDIATE, one writer
 * at a time; PostgreSQL: READ COMMITTED) and first takes the lock that
 * serialises it between nodes: the key row ({FOR_UPDATE}) for share
 * changes, the bucket row for rate limits, an advisory lock for audit
 * appends (HK_SQL_LOCK_AUDIT). */
#include <string.h>

#include <openssl/crypto.h>

#include "mpc/codec.h"
#include "server/store/db_impl.h"

#define HK_NAME_MAX 15 /* stored enum names and curves */
#define HK_KEY_COLS                                                            \
    "kid, owner, curve, pubkey, created, disabled, label, max_hour, "          \
    "max_day, pending, attestation"
#define HK_SESSION_COLS "sid, owner, op, kid, created, last_seen, state, curve"
/* v5: the request a sign session co-signs (NULL ridx read as 0) */
#define HK_SESSION_READ                                                        \
    HK_SESSION_COLS ", rid, CASE WHEN ridx IS NULL THEN 0 ELSE ridx END"
#define HK_REQ_COLS                                                            \
    "rid, kid, owner, requester, kind, network, payload, digests, dlen, "      \
    "state, reason, metadata, callback_url, created, expires, updated"
#define HK_REQ_READ                                                            \
    HK_REQ_COLS ", CASE WHEN result IS NULL THEN 0 ELSE 1 END, result"
#define HK_AUDIT_COLS                                                          \
    "seq, time, node, subject, kid, sid, event, outcome, detail, digest, "     \
    "signature, prev, hash"

/* --- rows ----------------------------------------------------------------- */

static hk_err hk_read_key(const hk_sql_cur *c, hk_db_key *k)
{
    char curve[HK_NAME_MAX + 1];
    int64_t disabled = 0, mh = 0, md = 0, pending = 0;
    int no_label = 0, no_att = 0;
    hk_err e;

    memset(k, 0, sizeof(*k));
    if ((e = hk_col_fixed(c, 0, k->kid, HK_ID_LEN)) != HK_OK ||
        (e = hk_col_text(c, 1, k->owner, HK_SUB_MAX)) != HK_OK ||
        (e = hk_col_text(c, 2, curve, HK_NAME_MAX)) != HK_OK ||
        (e = hk_col_fixed(c, 3, k->pub.b, HK_POINT_LEN)) != HK_OK ||
        (e = hk_col_int(c, 4, 0, INT64_MAX, &k->created)) != HK_OK ||
        (e = hk_col_int(c, 5, 0, 1, &disabled)) != HK_OK ||
        (e = hk_col_null_text(c, 6, k->label, HK_LABEL_MAX, &no_label)) !=
            HK_OK ||
        (e = hk_col_int(c, 7, 0, HK_DB_LIMIT_MAX, &mh)) != HK_OK ||
        (e = hk_col_int(c, 8, 0, HK_DB_LIMIT_MAX, &md)) != HK_OK ||
        (e = hk_col_int(c, 9, 0, 1, &pending)) != HK_OK ||
        (e = hk_col_null_text(c, 10, k->attestation, HK_DB_ATTEST_MAX,
                              &no_att)) != HK_OK)
        return e;
    if (hk_curve_from_name(curve, &k->curve) != HK_OK)
        return HK_ERR_DECODE;
    k->disabled = (int)disabled;
    k->pending = (int)pending;
    k->max_hour = (unsigned)mh;
    k->max_day = (unsigned)md;
    return HK_OK;
}

static hk_err hk_read_session(const hk_sql_cur *c, hk_db_session *s)
{
    char op[HK_NAME_MAX + 1], state[HK_NAME_MAX + 1], curve[HK_NAME_MAX + 1];
    int64_t ridx = 0;
    int no_curve = 0;
    hk_err e;

    memset(s, 0, sizeof(*s));
    if ((e = hk_col_fixed(c, 0, s->sid, HK_ID_LEN)) != HK_OK ||
        (e = hk_col_text(c, 1, s->owner, HK_SUB_MAX)) != HK_OK ||
        (e = hk_col_text(c, 2, op, HK_NAME_MAX)) != HK_OK ||
        (e = hk_col_opt_id(c, 3, &s->has_kid, s->kid)) != HK_OK ||
        (e = hk_col_int(c, 4, 0, INT64_MAX, &s->created)) != HK_OK ||
        (e = hk_col_int(c, 5, 0, INT64_MAX, &s->last_seen)) != HK_OK ||
        (e = hk_col_text(c, 6, state, HK_NAME_MAX)) != HK_OK ||
        (e = hk_col_null_text(c, 7, curve, HK_NAME_MAX, &no_curve)) != HK_OK ||
        (e = hk_db_op_from_name(op, &s->op)) != HK_OK ||
        (e = hk_db_sess_state_from_name(state, &s->state)) != HK_OK ||
        (e = hk_col_opt_id(c, 8, &s->has_rid, s->rid)) != HK_OK ||
        (e = hk_col_int(c, 9, 0, HK_DB_REQ_DIGESTS_MAX - 1, &ridx)) != HK_OK)
        return e;
    s->ridx = (unsigned)ridx;
    if (!no_curve && hk_curve_from_name(curve, &s->curve) != HK_OK)
        return HK_ERR_DECODE;
    return HK_OK;
}

static hk_err hk_read_audit(const hk_sql_cur *c, hk_audit_rec *r)
{
    char ev[HK_NAME_MAX + 1], out[HK_NAME_MAX + 1];
    hk_err e;

    memset(r, 0, sizeof(*r));
    if ((e = hk_col_int(c, 0, 1, INT64_MAX, &r->seq)) != HK_OK ||
        (e = hk_col_int(c, 1, 0, INT64_MAX, &r->time)) != HK_OK ||
        (e = hk_col_opt_text(c, 2, r->node, HK_NODE_MAX)) != HK_OK ||
        (e = hk_col_opt_text(c, 3, r->subject, HK_SUB_MAX)) != HK_OK ||
        (e = hk_col_opt_id(c, 4, &r->has_kid, r->kid)) != HK_OK ||
        (e = hk_col_opt_id(c, 5, &r->has_sid, r->sid)) != HK_OK ||
        (e = hk_col_text(c, 6, ev, HK_NAME_MAX)) != HK_OK ||
        (e = hk_col_text(c, 7, out, HK_NAME_MAX)) != HK_OK ||
        (e = hk_col_opt_text(c, 8, r->detail, HK_AUDIT_DETAIL_MAX)) != HK_OK ||
        (e = hk_col_var(c, 9, r->digest, HK_AUDIT_DIGEST_MAX,
                        &r->digest_len)) != HK_OK ||
        (e = hk_col_var(c, 10, r->sig, HK_AUDIT_SIG_MAX, &r->sig_len)) !=
            HK_OK ||
        (e = hk_col_fixed(c, 11, r->prev, HK_AUDIT_HASH_LEN)) != HK_OK ||
        (e = hk_col_fixed(c, 12, r->hash, HK_AUDIT_HASH_LEN)) != HK_OK)
        return e;
    memcpy(r->event, ev, sizeof(ev));
    memcpy(r->outcome, out, sizeof(out));
    return hk_audit_rec_ok(r) ? HK_OK : HK_ERR_DECODE;
}

static hk_err hk_read_ref(const hk_sql_cur *c, hk_db_share_ref *r)
{
    char name[HK_NAME_MAX + 1];
    hk_err e;

    memset(r, 0, sizeof(*r));
    if ((e = hk_col_fixed(c, 0, r->kid, HK_ID_LEN)) != HK_OK ||
        (e = hk_col_text(c, 1, r->owner, HK_SUB_MAX)) != HK_OK ||
        (e = hk_col_epoch(c, 2, &r->epoch)) != HK_OK ||
        (e = hk_col_text(c, 3, name, HK_NAME_MAX)) != HK_OK)
        return e;
    return hk_db_share_state_from_name(name, &r->state);
}

/* --- schema -----------------------------------------------------------------
 */

static hk_err hk_st_schema_version(hk_db *db, int *version)
{
    int64_t v = 0;
    hk_err e = hk_sql_int(
        db, "SELECT coalesce(max(version), 0) FROM schema_version", NULL, &v);

    *version = (int)v;
    return e;
}

/* --- keys ----------------------------------------------------------------- */

static hk_err hk_share_insert(hk_db *db, const unsigned char *kid,
                              unsigned long epoch, hk_db_share_state state,
                              const unsigned char *sealed, size_t len)
{
    hk_dbp p = {0};

    hk_dbp_blob(&p, kid, HK_ID_LEN);
    hk_dbp_int(&p, (int64_t)epoch);
    hk_dbp_text(&p, hk_db_share_state_name(state));
    hk_dbp_blob(&p, sealed, len);
    return hk_sql_run(db,
                      "INSERT INTO shares (kid, epoch, state, sealed) VALUES "
                      "(?1, ?2, ?3, ?4)",
                      &p, NULL);
}

static hk_err hk_st_key_create(hk_db *db, const hk_db_key *k,
                               unsigned long epoch, const unsigned char *first,
                               size_t firstlen)
{
    hk_dbp p = {0};
    hk_err e;

    hk_dbp_blob(&p, k->kid, HK_ID_LEN);
    hk_dbp_text(&p, k->owner);
    hk_dbp_text(&p, hk_curve_name(k->curve));
    hk_dbp_blob(&p, k->pub.b, HK_POINT_LEN);
    hk_dbp_int(&p, k->created);
    hk_dbp_text(&p, k->label[0] != '\0' ? k->label : NULL);
    hk_dbp_int(&p, k->pending != 0);
    hk_dbp_text(&p, k->attestation[0] != '\0' ? k->attestation : NULL);
    if ((e = hk_sql_begin(db)) != HK_OK)
        return e;
    e = hk_sql_run(db,
                   "INSERT INTO keys (kid, owner, curve, pubkey, created, "
                   "disabled, label, pending, attestation) VALUES (?1, ?2, "
                   "?3, ?4, ?5, 0, ?6, ?7, ?8)",
                   &p, NULL);
    if (e == HK_OK && first != NULL)
        e = hk_share_insert(db, k->kid, epoch, HK_DB_SHARE_ACTIVE, first,
                            firstlen);
    return hk_sql_end(db, e);
}

/* Reads every key row of a query into a new array. */
static hk_err hk_key_rows(hk_db *db, const char *sql, const hk_dbp *p,
                          hk_db_key **keys, size_t *n)
{
    hk_db_key *grown;
    hk_sql_cur c;
    size_t cap = 0;
    int row = 1;
    hk_err e;

    *keys = NULL;
    *n = 0;
    if ((e = hk_sql_query(db, sql, p, &c)) != HK_OK)
        goto done;
    while ((e = hk_sql_next(&c, &row)) == HK_OK && row) {
        if (*n == cap) {
            cap = cap == 0 ? 8 : 2 * cap;
            if ((grown = OPENSSL_realloc(*keys, cap * sizeof(**keys))) ==
                NULL) {
                e = HK_ERR_NOMEM;
                break;
            }
            *keys = grown;
        }
        if ((e = hk_read_key(&c, &(*keys)[*n])) != HK_OK)
            break;
        (*n)++;
    }
done:
    hk_sql_done(&c);
    if (e != HK_OK) {
        OPENSSL_free(*keys);
        *keys = NULL;
        *n = 0;
    }
    return e;
}

static hk_err hk_st_key_get(hk_db *db, const unsigned char *kid,
                            const char *owner, hk_db_key *out)
{
    hk_db_key *keys = NULL;
    hk_dbp p = {0};
    size_t n = 0;
    hk_err e;

    hk_dbp_blob(&p, kid, HK_ID_LEN);
    hk_dbp_text(&p, owner);
    e = hk_key_rows(db,
                    "SELECT " HK_KEY_COLS " FROM keys WHERE kid = ?1 AND (?2 "
                    "IS NULL OR owner = ?2)",
                    &p, &keys, &n);
    if (e == HK_OK && n != 1)
        e = HK_ERR_NOT_FOUND;
    if (e == HK_OK)
        *out = keys[0];
    OPENSSL_free(keys);
    return e;
}

static hk_err hk_st_key_list(hk_db *db, const char *owner,
                             int64_t pending_before, hk_db_key **keys,
                             size_t *n)
{
    hk_dbp p = {0};

    hk_dbp_text(&p, owner);
    hk_dbp_opt_int(&p, pending_before);
    return hk_key_rows(db,
                       "SELECT " HK_KEY_COLS " FROM keys WHERE (?1 IS NULL OR "
                       "owner = ?1) AND (?2 IS NULL OR (pending = 1 AND "
                       "created < ?2)) ORDER BY created, kid",
                       &p, keys, n);
}

static hk_err hk_st_key_confirm(hk_db *db, const unsigned char *kid)
{
    hk_dbp p = {0};

    hk_dbp_blob(&p, kid, HK_ID_LEN);
    return hk_sql_change(db, "UPDATE keys SET pending = 0 WHERE kid = ?1", &p);
}

static hk_err hk_st_key_set_limits(hk_db *db, const unsigned char *kid,
                                   unsigned max_hour, unsigned max_day)
{
    hk_dbp p = {0};

    hk_dbp_blob(&p, kid, HK_ID_LEN);
    hk_dbp_int(&p, max_hour);
    hk_dbp_int(&p, max_day);
    return hk_sql_change(db,
                         "UPDATE keys SET max_hour = ?2, max_day = ?3 WHERE "
                         "kid = ?1",
                         &p);
}

static hk_err hk_st_key_delete(hk_db *db, const unsigned char *kid,
                               const char *owner, int only_pending)
{
    hk_dbp p = {0};

    hk_dbp_blob(&p, kid, HK_ID_LEN);
    hk_dbp_text(&p, owner);
    hk_dbp_int(&p, only_pending != 0);
    return hk_sql_change(db,
                         "DELETE FROM keys WHERE kid = ?1 AND (?2 IS NULL OR "
                         "owner = ?2) AND pending >= ?3",
                         &p);
}

static hk_err hk_st_key_set_disabled(hk_db *db, const unsigned char *kid,
                                     int disabled)
{
    hk_dbp p = {0};

    hk_dbp_blob(&p, kid, HK_ID_LEN);
    hk_dbp_int(&p, disabled);
    return hk_sql_change(db, "UPDATE keys SET disabled = ?2 WHERE kid = ?1",
                         &p);
}

/* --- shares --------------------------------------------------------------- */

/* The share row of (kid, epoch), or the active one for epoch 0. sealed
 * NULL: the blob is checked but not copied. HK_ERR_NOT_FOUND if absent. */
static hk_err hk_share_row(hk_db *db, const unsigned char *kid,
                           unsigned long epoch, unsigned long *epoch_out,
                           hk_db_share_state *state, unsigned char **sealed,
                           size_t *len)
{
    char name[HK_NAME_MAX + 1];
    unsigned char *blob = NULL;
    size_t blen = 0;
    hk_sql_cur c;
    hk_dbp p = {0};
    hk_err e;

    hk_dbp_blob(&p, kid, HK_ID_LEN);
    hk_dbp_int(&p, (int64_t)epoch);
    if ((e = hk_sql_first(db,
                          "SELECT epoch, state, sealed FROM shares WHERE kid "
                          "= ?1 AND ((?2 = 0 AND state = 'active') OR epoch "
                          "= ?2)",
                          &p, &c)) != HK_OK)
        goto done;
    if ((e = hk_col_epoch(&c, 0, epoch_out)) != HK_OK ||
        (e = hk_col_text(&c, 1, name, HK_NAME_MAX)) != HK_OK ||
        (e = hk_db_share_state_from_name(name, state)) != HK_OK ||
        (e = hk_col_dup(&c, 2, HK_SEAL_OVERHEAD + 1, HK_SEAL_MAX, &blob,
                        &blen)) != HK_OK)
        goto done;
    e = HK_ERR_DECODE;
    if ((epoch != 0 && *epoch_out != epoch) ||
        (epoch == 0 && *state != HK_DB_SHARE_ACTIVE))
        goto done;
    e = HK_OK;
    if (sealed != NULL) {
        *sealed = blob;
        *len = blen;
        blob = NULL;
    }
done:
    OPENSSL_free(blob);
    hk_sql_done(&c);
    return e;
}

/* Locks the key row for the transaction (share changes of one key run one
 * at a time on every node). HK_ERR_NOT_FOUND if absent. */
static hk_err hk_lock_key(hk_db *db, const unsigned char *kid)
{
    hk_dbp p = {0};
    int yes = 0;
    hk_err e;

    hk_dbp_blob(&p, kid, HK_ID_LEN);
    e = hk_sql_exists(db, "SELECT 1 FROM keys WHERE kid = ?1{FOR_UPDATE}", &p,
                      &yes);
    return e == HK_OK && !yes ? HK_ERR_NOT_FOUND : e;
}

/* A statement on one key's share rows: ?1 = kid, ?2 = epoch. */
static hk_err hk_kid_stmt(hk_db *db, const char *sql, const unsigned char *kid,
                          unsigned long epoch)
{
    hk_dbp p = {0};

    hk_dbp_blob(&p, kid, HK_ID_LEN);
    hk_dbp_int(&p, (int64_t)epoch);
    return hk_sql_run(db, sql, &p, NULL);
}

static hk_err hk_st_share_put(hk_db *db, const unsigned char *kid,
                              unsigned long epoch, hk_db_share_state state,
                              const unsigned char *sealed, size_t len)
{
    hk_db_share_state st;
    unsigned long active = 0;
    hk_err e;

    if ((e = hk_sql_begin(db)) != HK_OK)
        return e;
    if ((e = hk_lock_key(db, kid)) == HK_OK) {
        e = hk_share_row(db, kid, 0, &active, &st, NULL, NULL);
        e = hk_db_share_put_rule(e, active, state, epoch);
    }
    if (e == HK_OK && state == HK_DB_SHARE_PENDING)
        e = hk_kid_stmt(db,
                        "DELETE FROM shares WHERE kid = ?1 AND state = "
                        "'pending' AND ?2 > 0",
                        kid, epoch);
    if (e == HK_OK)
        e = hk_share_insert(db, kid, epoch, state, sealed, len);
    return hk_sql_end(db, e);
}

static hk_err hk_st_share_promote(hk_db *db, const unsigned char *kid,
                                  unsigned long epoch)
{
    hk_db_share_state state = HK_DB_SHARE_ACTIVE;
    unsigned long ep = 0;
    hk_err e;

    if ((e = hk_sql_begin(db)) != HK_OK)
        return e;
    if ((e = hk_lock_key(db, kid)) == HK_OK)
        e = hk_share_row(db, kid, epoch, &ep, &state, NULL, NULL);
    if (e == HK_OK && state == HK_DB_SHARE_PENDING)
        e = hk_kid_stmt(db,
                        "DELETE FROM shares WHERE kid = ?1 AND state = "
                        "'active' AND ?2 > 0",
                        kid, epoch);
    if (e == HK_OK && state == HK_DB_SHARE_PENDING)
        e = hk_kid_stmt(db,
                        "UPDATE shares SET state = 'active' WHERE kid = ?1 "
                        "AND epoch = ?2",
                        kid, epoch);
    return hk_sql_end(db, e);
}

static hk_err hk_st_share_get(hk_db *db, const unsigned char *kid,
                              unsigned long epoch, unsigned long *epoch_out,
                              hk_db_share_state *state, unsigned char **sealed,
                              size_t *len)
{
    return hk_share_row(db, kid, epoch, epoch_out, state, sealed, len);
}

/* --- sessions ------------------------------------------------------------- */

static hk_err hk_st_session_create(hk_db *db, const hk_db_session *s)
{
    hk_dbp p = {0};
    hk_err e;

    hk_dbp_blob(&p, s->sid, HK_ID_LEN);
    hk_dbp_text(&p, s->owner);
    hk_dbp_text(&p, hk_db_op_name(s->op));
    hk_dbp_opt_id(&p, s->has_kid, s->kid);
    hk_dbp_int(&p, s->created);
    hk_dbp_text(&p, hk_db_sess_state_name(s->state));
    hk_dbp_text(&p, s->curve != 0 ? hk_curve_name(s->curve) : NULL);
    /* a transaction of its own, or a savepoint inside a group (a
     * duplicate id must not end the group's transaction) */
    if ((e = hk_sql_begin(db)) != HK_OK)
        return e;
    e = hk_sql_run(db,
                   "INSERT INTO sessions (" HK_SESSION_COLS ") VALUES "
                   "(?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7)",
                   &p, NULL);
    return hk_sql_end(db, e);
}

/* ?1 = sid, ?2 = the expiry cut-off now - idle (a session is alive while
 * last_seen > cut-off), ?3 = now. */
static void hk_dbp_live(hk_dbp *p, const unsigned char *sid, int64_t now,
                        int64_t idle)
{
    hk_dbp_blob(p, sid, HK_ID_LEN);
    hk_dbp_int(p, now - idle);
    hk_dbp_int(p, now);
}

static hk_err hk_st_session_touch(hk_db *db, const unsigned char *sid,
                                  int64_t now, int64_t idle)
{
    hk_dbp p = {0};
    hk_err e;

    hk_dbp_live(&p, sid, now, idle);
    e = hk_sql_change(db,
                      "UPDATE sessions SET last_seen = {GREATEST}(last_seen, "
                      "?3) WHERE sid = ?1 AND last_seen > ?2",
                      &p);
    return e == HK_ERR_NOT_FOUND ? HK_ERR_SESSION : e;
}

static hk_err hk_st_session_get(hk_db *db, const unsigned char *sid,
                                int64_t now, int64_t idle, hk_db_session *out)
{
    hk_sql_cur c;
    hk_dbp p = {0};
    int row = 0;
    hk_err e;

    hk_dbp_blob(&p, sid, HK_ID_LEN);
    hk_dbp_int(&p, now - idle);
    if ((e = hk_sql_query(db,
                          "SELECT " HK_SESSION_READ " FROM sessions WHERE sid "
                          "= ?1 AND last_seen > ?2",
                          &p, &c)) == HK_OK &&
        (e = hk_sql_next(&c, &row)) == HK_OK)
        e = row ? hk_read_session(&c, out) : HK_ERR_SESSION;
    hk_sql_done(&c);
    if (e != HK_OK)
        memset(out, 0, sizeof(*out));
    return e;
}

static hk_err hk_st_session_set_state(hk_db *db, const unsigned char *sid,
                                      hk_db_sess_state state, int64_t now,
                                      int64_t idle)
{
    hk_db_sess_state from[2] = {0, 0};
    hk_db_session s;
    hk_dbp p = {0};
    int changes = 0;
    hk_err e;

    (void)hk_db_sess_from_states(state, from);
    hk_dbp_live(&p, sid, now, idle);
    hk_dbp_text(&p, hk_db_sess_state_name(state));
    hk_dbp_text(&p, hk_db_sess_state_name(from[0]));
    hk_dbp_text(&p, hk_db_sess_state_name(from[1]));
    hk_dbp_text(&p, db->node);
    /* one statement: the claim (open -> running) is atomic across nodes
     * and records the claiming node (NULL if none was set) */
    if ((e = hk_sql_begin(db)) != HK_OK)
        return e;
    e = hk_sql_run(db,
                   "UPDATE sessions SET state = ?4, last_seen = "
                   "{GREATEST}(last_seen, ?3), node = CASE WHEN ?4 = "
                   "'running' THEN NULLIF(?7, '') ELSE node END WHERE sid = "
                   "?1 AND last_seen > ?2 AND state IN (?5, ?6)",
                   &p, &changes);
    if (e == HK_OK && changes == 0) {
        /* Not moved: tell a dead session from a forbidden move. */
        e = hk_st_session_get(db, sid, now, idle, &s);
        if (e == HK_OK)
            e = HK_ERR_STATE;
    }
    return hk_sql_end(db, e);
}

static hk_err hk_st_session_fail_node(hk_db *db, const char *node, size_t *n)
{
    hk_dbp p = {0};
    int changes = 0;
    hk_err e;

    hk_dbp_text(&p, node);
    e = hk_sql_run(db,
                   "UPDATE sessions SET state = 'failed' WHERE state = "
                   "'running' AND node = ?1",
                   &p, &changes);
    *n = e == HK_OK ? (size_t)changes : 0;
    return e;
}

static hk_err hk_st_write_probe(hk_db *db, int64_t now)
{
    hk_dbp p = {0};

    hk_dbp_text(&p, db->node[0] != 0 ? db->node : "-");
    hk_dbp_int(&p, now);
    return hk_sql_run(db,
                      "INSERT INTO health (node, probed) VALUES (?1, ?2) ON "
                      "CONFLICT (node) DO UPDATE SET probed = excluded.probed",
                      &p, NULL);
}

static hk_err hk_st_session_sweep(hk_db *db, int64_t now, int64_t idle,
                                  size_t *deleted)
{
    hk_dbp p = {0};
    int changes = 0;
    hk_err e;

    hk_dbp_int(&p, now - idle);
    e = hk_sql_run(db, "DELETE FROM sessions WHERE last_seen <= ?1", &p,
                   &changes);
    *deleted = e == HK_OK ? (size_t)changes : 0;
    return e;
}

static hk_err hk_st_session_others(hk_db *db, const unsigned char *sid,
                                   int64_t now, int64_t idle, int64_t *n)
{
    hk_dbp p = {0};

    hk_dbp_blob(&p, sid, HK_ID_LEN);
    hk_dbp_int(&p, now - idle);
    return hk_sql_int(db,
                      "SELECT count(*) FROM sessions o JOIN sessions s ON "
                      "o.kid = s.kid AND o.op = s.op AND o.sid <> s.sid "
                      "WHERE s.sid = ?1 AND o.state = 'running' AND "
                      "o.last_seen > ?2",
                      &p, n);
}

/* --- presignatures (v7) -------------------------------------------------- */

static hk_err hk_presig_counts(hk_db *db, const unsigned char *kid,
                               const char *owner, int64_t *n_key,
                               int64_t *n_owner)
{
    hk_dbp p = {0};
    hk_err e;

    hk_dbp_blob(&p, kid, HK_ID_LEN);
    if ((e = hk_sql_int(db, "SELECT count(*) FROM presigs WHERE kid = ?1", &p,
                        n_key)) != HK_OK)
        return e;
    memset(&p, 0, sizeof(p));
    hk_dbp_text(&p, owner);
    return hk_sql_int(db, "SELECT count(*) FROM presigs WHERE owner = ?1", &p,
                      n_owner);
}

/* Deletes the k oldest rows of the key (kid) or else of the owner. */
static hk_err hk_presig_evict(hk_db *db, const unsigned char *kid,
                              const char *owner, size_t k)
{
    hk_dbp p = {0};

    if (kid != NULL)
        hk_dbp_blob(&p, kid, HK_ID_LEN);
    else
        hk_dbp_text(&p, owner);
    hk_dbp_int(&p, (int64_t)k);
    return hk_sql_run(db,
                      kid != NULL
                          ? "DELETE FROM presigs WHERE psid IN (SELECT psid "
                            "FROM presigs WHERE kid = ?1 ORDER BY seq "
                            "LIMIT ?2)"
                          : "DELETE FROM presigs WHERE psid IN (SELECT psid "
                            "FROM presigs WHERE owner = ?1 ORDER BY created, "
                            "seq LIMIT ?2)",
                      &p, NULL);
}

static hk_err hk_presig_last_seq(hk_db *db, const unsigned char *kid,
                                 int64_t *seq)
{
    hk_dbp p = {0};

    hk_dbp_blob(&p, kid, HK_ID_LEN);
    return hk_sql_int(db,
                      "SELECT coalesce(max(seq), 0) FROM presigs WHERE kid = "
                      "?1",
                      &p, seq);
}

static hk_err hk_st_presig_put(hk_db *db, const unsigned char *kid,
                               const char *owner, unsigned long epoch,
                               const hk_db_presig_in *ps, size_t n,
                               size_t max_key, size_t max_owner, int64_t now)
{
    hk_db_share_state st;
    unsigned long ep = 0;
    int64_t nk = 0, no = 0, seq = 0;
    size_t i;
    hk_err e;

    if ((e = hk_sql_begin(db)) != HK_OK)
        return e;
    if ((e = hk_lock_key(db, kid)) == HK_OK &&
        (e = hk_share_row(db, kid, epoch, &ep, &st, NULL, NULL)) ==
            HK_ERR_NOT_FOUND)
        e = HK_ERR_EPOCH;
    if (e == HK_OK && (n > max_key || n > max_owner))
        e = HK_ERR_RATE;
    /* full: the oldest make room (most likely left by a client that went
     * away with its half; a holder of one evicted finds it gone) */
    if (e == HK_OK &&
        (e = hk_presig_counts(db, kid, owner, &nk, &no)) == HK_OK &&
        (size_t)nk + n > max_key)
        e = hk_presig_evict(db, kid, NULL, (size_t)nk + n - max_key);
    if (e == HK_OK && (size_t)no + n > max_owner &&
        (e = hk_presig_counts(db, kid, owner, &nk, &no)) == HK_OK &&
        (size_t)no + n > max_owner)
        e = hk_presig_evict(db, NULL, owner, (size_t)no + n - max_owner);
    /* the key's insertion order, which its client keeps too: both let
     * the oldest go first (the key row is locked: one writer per key) */
    if (e == HK_OK)
        e = hk_presig_last_seq(db, kid, &seq);
    for (i = 0; e == HK_OK && i < n; i++) {
        hk_dbp p = {0};

        hk_dbp_blob(&p, ps[i].psid, HK_ID_LEN);
        hk_dbp_blob(&p, kid, HK_ID_LEN);
        hk_dbp_text(&p, owner);
        hk_dbp_int(&p, (int64_t)epoch);
        hk_dbp_blob(&p, ps[i].sealed, ps[i].len);
        hk_dbp_int(&p, now);
        hk_dbp_int(&p, seq + 1 + (int64_t)i);
        e = hk_sql_run(db,
                       "INSERT INTO presigs (psid, kid, owner, epoch, sealed, "
                       "created, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                       &p, NULL);
    }
    return hk_sql_end(db, e);
}

/* Read and deleted in one statement: on every node, once. */
static hk_err hk_st_presig_take(hk_db *db, const unsigned char *psid,
                                const unsigned char *kid, const char *owner,
                                unsigned long *epoch, unsigned char **sealed,
                                size_t *len)
{
    hk_sql_cur c;
    hk_dbp p = {0};
    hk_err e;

    hk_dbp_blob(&p, psid, HK_ID_LEN);
    hk_dbp_blob(&p, kid, HK_ID_LEN);
    hk_dbp_text(&p, owner);
    if ((e = hk_sql_begin(db)) != HK_OK)
        return e;
    if ((e = hk_sql_first(db,
                          "DELETE FROM presigs WHERE psid = ?1 AND kid = ?2 "
                          "AND owner = ?3 RETURNING epoch, sealed",
                          &p, &c)) == HK_OK &&
        (e = hk_col_epoch(&c, 0, epoch)) == HK_OK)
        e = hk_col_dup(&c, 1, HK_SEAL_OVERHEAD + 1, HK_SEAL_MAX, sealed, len);
    hk_sql_done(&c);
    return hk_sql_end(db, e);
}

static hk_err hk_st_presig_count(hk_db *db, const unsigned char *kid,
                                 const char *owner, int64_t *n_key,
                                 int64_t *n_owner)
{
    return hk_presig_counts(db, kid, owner, n_key, n_owner);
}

/* Old ones, and those of an epoch the key no longer has a share of. */
static hk_err hk_st_presig_sweep(hk_db *db, int64_t before, size_t *deleted)
{
    hk_dbp p = {0};
    int changes = 0;
    hk_err e;

    hk_dbp_int(&p, before);
    e = hk_sql_run(db,
                   "DELETE FROM presigs WHERE created < ?1 OR NOT EXISTS "
                   "(SELECT 1 FROM shares s WHERE s.kid = presigs.kid AND "
                   "s.epoch = presigs.epoch)",
                   &p, &changes);
    *deleted = e == HK_OK ? (size_t)changes : 0;
    return e;
}

/* --- setup ---------------------------------------------------------------- */

static hk_err hk_st_setup_put(hk_db *db, const unsigned char *sealed,
                              size_t slen, const unsigned char *pub,
                              size_t plen, int64_t now)
{
    hk_dbp p = {0};

    hk_dbp_blob(&p, sealed, slen);
    hk_dbp_blob(&p, pub, plen);
    hk_dbp_int(&p, now);
    return hk_sql_run(db,
                      "INSERT INTO setup (id, sealed, public, created) "
                      "VALUES (1, ?1, ?2, ?3)",
                      &p, NULL);
}

static hk_err hk_st_setup_get(hk_db *db, unsigned char **sealed, size_t *slen,
                              unsigned char **pub, size_t *plen)
{
    hk_sql_cur c;
    hk_err e;

    if ((e = hk_sql_first(db, "SELECT sealed, public FROM setup WHERE id = 1",
                          NULL, &c)) != HK_OK)
        goto done;
    if ((e = hk_col_dup(&c, 0, HK_SEAL_OVERHEAD + 1, HK_SEAL_MAX, sealed,
                        slen)) != HK_OK ||
        (e = hk_col_dup(&c, 1, 1, HK_RECORD_MAX, pub, plen)) != HK_OK)
        goto done;
done:
    hk_sql_done(&c);
    if (e != HK_OK) {
        OPENSSL_free(*sealed);
        *sealed = NULL;
        *slen = 0;
    }
    return e;
}

/* --- audit log ------------------------------------------------------------ */

static hk_err hk_st_audit_append(hk_db *db, hk_audit_rec *rec)
{
    unsigned char last[HK_AUDIT_HASH_LEN];
    int64_t seq = 0;
    hk_sql_cur c;
    hk_dbp p = {0};
    int row = 0;
    hk_err e;

    if ((e = hk_sql_begin(db)) != HK_OK)
        return e;
    if ((e = db->x->lock(db, HK_SQL_LOCK_AUDIT)) != HK_OK)
        return hk_sql_end(db, e);
    if ((e = hk_sql_query(db,
                          "SELECT seq, hash FROM audit ORDER BY seq DESC "
                          "LIMIT 1",
                          NULL, &c)) == HK_OK &&
        (e = hk_sql_next(&c, &row)) == HK_OK && row &&
        (e = hk_col_int(&c, 0, 1, INT64_MAX, &seq)) == HK_OK)
        e = hk_col_fixed(&c, 1, last, HK_AUDIT_HASH_LEN);
    hk_sql_done(&c);
    if (e == HK_OK) {
        hk_audit_link(rec, seq, seq > 0 ? last : NULL);
        hk_dbp_audit(&p, rec);
        e = hk_sql_run(db,
                       "INSERT INTO audit (" HK_AUDIT_COLS ") VALUES (?1, "
                       "?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                       &p, NULL);
    }
    return hk_sql_end(db, e);
}

static hk_err hk_st_audit_scan(hk_db *db, int64_t from,
                               hk_err (*fn)(void *ctx, const hk_audit_rec *r),
                               void *ctx)
{
    hk_audit_rec r;
    hk_sql_cur c;
    hk_dbp p = {0};
    int row = 1;
    hk_err e;

    hk_dbp_int(&p, from);
    if ((e = hk_sql_query(db,
                          "SELECT " HK_AUDIT_COLS " FROM audit WHERE seq >= "
                          "?1 ORDER BY seq",
                          &p, &c)) == HK_OK)
        while ((e = hk_sql_next(&c, &row)) == HK_OK && row)
            if ((e = hk_read_audit(&c, &r)) != HK_OK ||
                (e = fn(ctx, &r)) != HK_OK)
                break;
    hk_sql_done(&c);
    return e;
}

static hk_err hk_st_audit_count(hk_db *db, const unsigned char *kid,
                                const char *event, const char *outcome,
                                int64_t since, int64_t *n)
{
    hk_dbp p = {0};

    hk_dbp_blob(&p, kid, HK_ID_LEN);
    hk_dbp_text(&p, event);
    hk_dbp_text(&p, outcome);
    hk_dbp_int(&p, since);
    return hk_sql_int(db,
                      "SELECT count(*) FROM audit WHERE kid = ?1 AND event = "
                      "?2 AND outcome = ?3 AND time >= ?4",
                      &p, n);
}

/* --- rate buckets --------------------------------------------------------- */

static hk_err hk_bucket_read(hk_db *db, const char *sub, double *tokens,
                             double *updated)
{
    hk_sql_cur c;
    hk_dbp p = {0};
    int row = 0;
    hk_err e;

    hk_dbp_text(&p, sub);
    if ((e = hk_sql_query(db,
                          "SELECT tokens, updated FROM buckets WHERE subject "
                          "= ?1{FOR_UPDATE}",
                          &p, &c)) == HK_OK &&
        (e = hk_sql_next(&c, &row)) == HK_OK &&
        (e = row ? hk_col_real(&c, 0, tokens) : HK_ERR_DECODE) == HK_OK)
        e = hk_col_real(&c, 1, updated);
    hk_sql_done(&c);
    return e;
}

static hk_err hk_st_bucket_take(hk_db *db, const char *sub, double rate,
                                double burst, double now, int *ok,
                                double *retry)
{
    double tokens = 0, updated = 0, left = 0;
    hk_dbp p = {0}, q = {0};
    hk_err e;

    hk_dbp_text(&p, sub);
    hk_dbp_real(&p, burst);
    hk_dbp_real(&p, now);
    if ((e = hk_sql_begin(db)) != HK_OK)
        return e;
    /* the row exists first (a full bucket), so the lock always has a row */
    if ((e = hk_sql_run(db,
                        "INSERT INTO buckets (subject, tokens, updated) "
                        "VALUES (?1, ?2, ?3) ON CONFLICT (subject) DO "
                        "NOTHING",
                        &p, NULL)) != HK_OK ||
        (e = hk_bucket_read(db, sub, &tokens, &updated)) != HK_OK)
        return hk_sql_end(db, e);
    hk_bucket_step(1, tokens, updated, rate, burst, now, &left, ok, retry);
    hk_dbp_text(&q, sub);
    hk_dbp_real(&q, left);
    hk_dbp_real(&q, now);
    e = hk_sql_run(db,
                   "UPDATE buckets SET tokens = ?2, updated = ?3 WHERE "
                   "subject = ?1",
                   &q, NULL);
    return hk_sql_end(db, e);
}

/* --- re-sealing ----------------------------------------------------------- */

static hk_err hk_st_share_list_all(hk_db *db, const unsigned char *after_kid,
                                   unsigned long after_epoch,
                                   hk_db_share_ref *refs, size_t max, size_t *n)
{
    hk_sql_cur c;
    hk_dbp p = {0};
    int row = 1;
    hk_err e;

    /* blobs compare as unsigned bytes on both, as the contract wants */
    hk_dbp_opt_id(&p, after_kid != NULL, after_kid);
    hk_dbp_int(&p, (int64_t)after_epoch);
    hk_dbp_int(&p, (int64_t)max);
    *n = 0;
    if ((e = hk_sql_query(db,
                          "SELECT s.kid, k.owner, s.epoch, s.state FROM "
                          "shares s JOIN keys k ON k.kid = s.kid WHERE ?1 IS "
                          "NULL OR (s.kid, s.epoch) > (?1, ?2) ORDER BY "
                          "s.kid, s.epoch LIMIT ?3",
                          &p, &c)) == HK_OK)
        while (*n < max && (e = hk_sql_next(&c, &row)) == HK_OK && row &&
               (e = hk_read_ref(&c, &refs[*n])) == HK_OK)
            (*n)++;
    hk_sql_done(&c);
    if (e != HK_OK)
        *n = 0;
    return e;
}

/* A compare-and-swap UPDATE (?1 old, ?2 new, then `key`'s parameters)
 * and, if it changed nothing, `exists` (with `key`) to tell a changed blob
 * (HK_ERR_STATE) from a missing row (HK_ERR_NOT_FOUND). */
static hk_err hk_cas(hk_db *db, const char *update, const char *exists,
                     const hk_dbp *key, const unsigned char *old, size_t oldlen,
                     const unsigned char *nblob, size_t nlen)
{
    hk_dbp p = {0};
    int changes = 0, yes = 0, i;
    hk_err e;

    hk_dbp_blob(&p, old, oldlen);
    hk_dbp_blob(&p, nblob, nlen);
    for (i = 0; i < key->n; i++)
        p.v[p.n++] = key->v[i];
    if ((e = hk_sql_begin(db)) != HK_OK)
        return e;
    if ((e = hk_sql_run(db, update, &p, &changes)) == HK_OK && changes != 1 &&
        (e = hk_sql_exists(db, exists, key, &yes)) == HK_OK)
        e = yes ? HK_ERR_STATE : HK_ERR_NOT_FOUND;
    return hk_sql_end(db, e);
}

static hk_err hk_st_share_replace_sealed(hk_db *db, const unsigned char *kid,
                                         unsigned long epoch,
                                         const unsigned char *old,
                                         size_t oldlen,
                                         const unsigned char *nblob,
                                         size_t nlen)
{
    hk_dbp key = {0};

    hk_dbp_blob(&key, kid, HK_ID_LEN);
    hk_dbp_int(&key, (int64_t)epoch);
    return hk_cas(db,
                  "UPDATE shares SET sealed = ?2 WHERE kid = ?3 AND epoch = "
                  "?4 AND sealed = ?1",
                  "SELECT 1 FROM shares WHERE kid = ?1 AND epoch = ?2", &key,
                  old, oldlen, nblob, nlen);
}

static hk_err hk_st_setup_replace_sealed(hk_db *db, const unsigned char *old,
                                         size_t oldlen,
                                         const unsigned char *nblob,
                                         size_t nlen)
{
    hk_dbp none = {0};

    return hk_cas(
        db, "UPDATE setup SET sealed = ?2 WHERE id = 1 AND sealed = ?1",
        "SELECT 1 FROM setup WHERE id = 1", &none, old, oldlen, nblob, nlen);
}

/* --- backups (v4) -------------------------------------------------------- */

static hk_err hk_st_backup_put(hk_db *db, const unsigned char *kid,
                               unsigned long epoch, const unsigned char *bk_fp,
                               const unsigned char *blob, size_t len,
                               int64_t now)
{
    hk_db_share_state st;
    unsigned long ep = 0;
    hk_dbp p = {0};
    hk_err e;

    hk_dbp_blob(&p, kid, HK_ID_LEN);
    hk_dbp_int(&p, (int64_t)epoch);
    hk_dbp_blob(&p, bk_fp, HK_HASH_LEN);
    hk_dbp_blob(&p, blob, len);
    hk_dbp_int(&p, now);
    if ((e = hk_sql_begin(db)) != HK_OK)
        return e;
    if ((e = hk_lock_key(db, kid)) == HK_OK &&
        (e = hk_share_row(db, kid, epoch, &ep, &st, NULL, NULL)) ==
            HK_ERR_NOT_FOUND)
        e = HK_ERR_EPOCH;
    if (e == HK_OK)
        e = hk_sql_run(db,
                       "INSERT INTO backups (kid, epoch, bk_fp, pve, created) "
                       "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (kid, epoch) "
                       "DO UPDATE SET bk_fp = excluded.bk_fp, pve = "
                       "excluded.pve, created = excluded.created",
                       &p, NULL);
    /* a backup of an epoch below the active share's restores nothing */
    if (e == HK_OK)
        e = hk_kid_stmt(db,
                        "DELETE FROM backups WHERE kid = ?1 AND ?2 > 0 AND "
                        "epoch < (SELECT epoch FROM shares WHERE kid = ?1 "
                        "AND state = 'active')",
                        kid, epoch);
    return hk_sql_end(db, e);
}

static hk_err hk_st_backup_get(hk_db *db, const unsigned char *kid,
                               unsigned long epoch, hk_db_backup *out)
{
    hk_sql_cur c;
    hk_dbp p = {0};
    hk_err e;

    hk_dbp_blob(&p, kid, HK_ID_LEN);
    hk_dbp_int(&p, (int64_t)epoch);
    if ((e = hk_sql_first(db,
                          "SELECT b.epoch, b.bk_fp, b.pve, b.created FROM "
                          "backups b JOIN shares s ON s.kid = b.kid AND "
                          "s.epoch = b.epoch WHERE b.kid = ?1 AND (?2 = 0 OR "
                          "b.epoch = ?2) ORDER BY b.epoch DESC LIMIT 1",
                          &p, &c)) != HK_OK)
        goto done;
    if ((e = hk_col_epoch(&c, 0, &out->epoch)) != HK_OK ||
        (e = hk_col_fixed(&c, 1, out->bk_fp, HK_HASH_LEN)) != HK_OK ||
        (e = hk_col_dup(&c, 2, 1, HK_DB_BACKUP_MAX, &out->blob, &out->len)) !=
            HK_OK ||
        (e = hk_col_int(&c, 3, 0, INT64_MAX, &out->created)) != HK_OK)
        goto done;
    if (epoch != 0 && out->epoch != epoch)
        e = HK_ERR_DECODE;
done:
    hk_sql_done(&c);
    if (e != HK_OK) {
        OPENSSL_free(out->blob);
        out->blob = NULL;
        out->len = 0;
    }
    return e;
}

static hk_err hk_st_backup_newest(hk_db *db, const unsigned char *kid,
                                  unsigned long *epoch)
{
    hk_dbp p = {0};
    int64_t v = 0;
    hk_err e;

    hk_dbp_blob(&p, kid, HK_ID_LEN);
    e = hk_sql_int(db,
                   "SELECT coalesce(max(epoch), 0) FROM backups WHERE "
                   "kid = ?1",
                   &p, &v);
    if (e == HK_OK && (v < 0 || v > (int64_t)HK_DB_EPOCH_MAX))
        e = HK_ERR_DECODE;
    *epoch = e == HK_OK ? (unsigned long)v : 0;
    return e;
}

static hk_err hk_st_backup_counts(hk_db *db, int64_t *none, int64_t *stale,
                                  int64_t *waiting)
{
    hk_err e;

    if ((e = hk_sql_int(db,
                        "SELECT count(*) FROM keys k WHERE NOT EXISTS "
                        "(SELECT 1 FROM backups b WHERE b.kid = k.kid)",
                        NULL, none)) != HK_OK ||
        (e = hk_sql_int(db,
                        "SELECT count(*) FROM shares s WHERE s.state = "
                        "'active' AND EXISTS (SELECT 1 FROM backups b WHERE "
                        "b.kid = s.kid) AND NOT EXISTS (SELECT 1 FROM "
                        "backups b WHERE b.kid = s.kid AND b.epoch >= "
                        "s.epoch)",
                        NULL, stale)) != HK_OK)
        return e;
    return hk_sql_int(db,
                      "SELECT count(*) FROM shares s WHERE s.state = "
                      "'pending' AND EXISTS (SELECT 1 FROM backups b WHERE "
                      "b.kid = s.kid) AND NOT EXISTS (SELECT 1 FROM backups "
                      "b WHERE b.kid = s.kid AND b.epoch = s.epoch)",
                      NULL, waiting);
}

/* --- requests (v5) ------------------------------------------------------- */

/* The light columns (rid, kid, owner, requester, kind, network) of a
 * request row: what a sweep reports. */
static hk_err hk_read_request_head(const hk_sql_cur *c, hk_db_request *r)
{
    char kind[HK_NAME_MAX + 1];
    hk_err e;

    if ((e = hk_col_fixed(c, 0, r->rid, HK_ID_LEN)) != HK_OK ||
        (e = hk_col_fixed(c, 1, r->kid, HK_ID_LEN)) != HK_OK ||
        (e = hk_col_text(c, 2, r->owner, HK_SUB_MAX)) != HK_OK ||
        (e = hk_col_text(c, 3, r->requester, HK_SUB_MAX)) != HK_OK ||
        (e = hk_col_text(c, 4, kind, HK_NAME_MAX)) != HK_OK ||
        (e = hk_col_opt_text(c, 5, r->network, sizeof(r->network) - 1)) !=
            HK_OK)
        return e;
    return hk_db_req_kind_from_name(kind, &r->kind);
}

/* A whole request row (HK_REQ_READ) into r (zeroed first). */
static hk_err hk_read_request(const hk_sql_cur *c, hk_db_request *r)
{
    char state[HK_NAME_MAX + 1];
    int64_t dlen = 0, has_result = 0;
    size_t dig_len = 0;
    hk_err e;

    memset(r, 0, sizeof(*r));
    if ((e = hk_read_request_head(c, r)) != HK_OK ||
        (e = hk_col_dup(c, 6, 1, HK_DB_REQ_PAYLOAD_MAX, &r->payload,
                        &r->payload_len)) != HK_OK ||
        (e = hk_col_dup(c, 7, 1, HK_DB_REQ_DIGESTS_MAX * 64, &r->digests,
                        &dig_len)) != HK_OK ||
        (e = hk_col_int(c, 8, 1, 64, &dlen)) != HK_OK ||
        (e = hk_col_text(c, 9, state, HK_NAME_MAX)) != HK_OK ||
        (e = hk_col_opt_text(c, 10, r->reason, HK_DB_REQ_REASON_MAX)) !=
            HK_OK ||
        (e = hk_col_text(c, 11, r->metadata, HK_DB_REQ_META_MAX)) != HK_OK ||
        (e = hk_col_opt_text(c, 12, r->callback_url, HK_DB_REQ_URL_MAX)) !=
            HK_OK ||
        (e = hk_col_int(c, 13, 0, INT64_MAX, &r->created)) != HK_OK ||
        (e = hk_col_int(c, 14, 0, INT64_MAX, &r->expires)) != HK_OK ||
        (e = hk_col_int(c, 15, 0, INT64_MAX, &r->updated)) != HK_OK ||
        (e = hk_col_int(c, 16, 0, 1, &has_result)) != HK_OK ||
        (has_result && (e = hk_col_dup(c, 17, 1, HK_DB_REQ_RESULT_MAX,
                                       &r->result, &r->result_len)) != HK_OK) ||
        (e = hk_db_req_state_from_name(state, &r->state)) != HK_OK)
        goto done;
    r->dlen = (size_t)dlen;
    r->ndigests = dig_len / r->dlen;
    if (dig_len % r->dlen != 0 || r->ndigests > HK_DB_REQ_DIGESTS_MAX)
        e = HK_ERR_DECODE;
done:
    if (e != HK_OK)
        hk_db_request_clear(r);
    return e;
}

static hk_err hk_st_request_put(hk_db *db, const hk_db_request *r)
{
    hk_dbp p = {0};

    hk_dbp_blob(&p, r->rid, HK_ID_LEN);
    hk_dbp_blob(&p, r->kid, HK_ID_LEN);
    hk_dbp_text(&p, r->owner);
    hk_dbp_text(&p, r->requester);
    hk_dbp_text(&p, hk_db_req_kind_name(r->kind));
    hk_dbp_text(&p, r->network);
    hk_dbp_blob(&p, r->payload, r->payload_len);
    hk_dbp_blob(&p, r->digests, r->ndigests * r->dlen);
    hk_dbp_int(&p, (int64_t)r->dlen);
    hk_dbp_text(&p, r->metadata);
    hk_dbp_text(&p, r->callback_url);
    hk_dbp_int(&p, r->created);
    hk_dbp_int(&p, r->expires);
    return hk_sql_run(db,
                      "INSERT INTO requests (" HK_REQ_COLS ") VALUES (?1, ?2, "
                      "?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', '', ?10, ?11, "
                      "?12, ?13, ?12)",
                      &p, NULL);
}

/* The signatures of r (already read) into r->sigs / r->have. */
static hk_err hk_request_sigs(hk_db *db, hk_db_request *r)
{
    hk_sql_cur c;
    hk_dbp p = {0};
    int64_t idx;
    int row = 1;
    hk_err e;

    r->sigs = OPENSSL_zalloc(r->ndigests * 64 + 1);
    r->have = OPENSSL_zalloc(r->ndigests + 1);
    if (r->sigs == NULL || r->have == NULL)
        return HK_ERR_NOMEM;
    hk_dbp_blob(&p, r->rid, HK_ID_LEN);
    if ((e = hk_sql_query(db,
                          "SELECT idx, sig FROM request_sigs WHERE rid = ?1",
                          &p, &c)) != HK_OK)
        goto done;
    while ((e = hk_sql_next(&c, &row)) == HK_OK && row) {
        if ((e = hk_col_int(&c, 0, 0, (int64_t)r->ndigests - 1, &idx)) !=
                HK_OK ||
            (e = hk_col_fixed(&c, 1, r->sigs + 64 * idx, 64)) != HK_OK)
            break;
        r->nsigs += !r->have[idx];
        r->have[idx] = 1;
    }
done:
    hk_sql_done(&c);
    return e;
}

static hk_err hk_st_request_get(hk_db *db, const unsigned char *rid,
                                hk_db_request *out)
{
    hk_sql_cur c;
    hk_dbp p = {0};
    hk_err e;

    memset(out, 0, sizeof(*out));
    hk_dbp_blob(&p, rid, HK_ID_LEN);
    if ((e = hk_sql_first(db,
                          "SELECT " HK_REQ_READ " FROM requests WHERE rid = ?1",
                          &p, &c)) == HK_OK)
        e = hk_read_request(&c, out);
    hk_sql_done(&c);
    if (e == HK_OK && (e = hk_request_sigs(db, out)) != HK_OK)
        hk_db_request_clear(out);
    return e;
}

/* Rows of sql into a new array (read with `read`). */
static hk_err hk_request_rows(hk_db *db, const char *sql, const hk_dbp *p,
                              hk_err (*read)(const hk_sql_cur *,
                                             hk_db_request *),
                              hk_db_request **out, size_t *n)
{
    hk_db_request *list;
    hk_sql_cur c;
    int row = 1;
    hk_err e;

    *n = 0;
    if ((*out = list = OPENSSL_zalloc(HK_DB_REQ_LIST_MAX * sizeof(*list))) ==
        NULL)
        return HK_ERR_NOMEM;
    if ((e = hk_sql_query(db, sql, p, &c)) != HK_OK)
        goto done;
    while (*n < HK_DB_REQ_LIST_MAX && (e = hk_sql_next(&c, &row)) == HK_OK &&
           row) {
        if ((e = read(&c, &list[*n])) != HK_OK)
            break;
        (*n)++;
    }
done:
    hk_sql_done(&c);
    if (e != HK_OK) {
        hk_db_request_list_free(list, *n);
        *out = NULL;
        *n = 0;
    }
    return e;
}

static hk_err hk_st_request_list(hk_db *db, const char *owner,
                                 hk_db_req_state state, int64_t after,
                                 const unsigned char *after_rid, size_t max,
                                 hk_db_request **out, size_t *n)
{
    static const unsigned char none[HK_ID_LEN]; /* below every id */
    hk_dbp p = {0};

    hk_dbp_text(&p, owner);
    hk_dbp_text(&p, hk_db_req_state_name(state));
    hk_dbp_int(&p, after);
    hk_dbp_int(&p, (int64_t)max);
    hk_dbp_blob(&p, after_rid != NULL ? after_rid : none, HK_ID_LEN);
    return hk_request_rows(db,
                           "SELECT " HK_REQ_READ " FROM requests WHERE owner "
                           "= ?1 AND state = ?2 AND (created > ?3 OR "
                           "(created = ?3 AND rid > ?5)) ORDER BY created, "
                           "rid LIMIT ?4",
                           &p, hk_read_request, out, n);
}

/* Inside a transaction: locks the request row, `check` (one integer:
 * 1 when the row may take the insert) else HK_ERR_STATE, then `insert`
 * (ON CONFLICT DO NOTHING) once: HK_ERR_EXISTS if it was there. */
static hk_err hk_request_insert_once(hk_db *db, const char *check,
                                     const hk_dbp *cp, const char *insert,
                                     const hk_dbp *ip)
{
    int64_t ok = 0;
    int changes = 0;
    hk_err e;

    if ((e = hk_sql_int(db, check, cp, &ok)) == HK_OK && !ok)
        e = HK_ERR_STATE;
    if (e == HK_OK && (e = hk_sql_run(db, insert, ip, &changes)) == HK_OK &&
        changes == 0)
        e = HK_ERR_EXISTS;
    return e;
}

static hk_err hk_st_request_sig_put(hk_db *db, const unsigned char *rid,
                                    size_t idx, const unsigned char *sig,
                                    int64_t now, size_t *nsigs)
{
    hk_dbp q = {0}, ins = {0}, one = {0};
    int64_t count = 0;
    hk_err e;

    hk_dbp_blob(&q, rid, HK_ID_LEN);
    hk_dbp_int(&q, (int64_t)idx);
    hk_dbp_int(&q, now);
    hk_dbp_blob(&ins, rid, HK_ID_LEN);
    hk_dbp_int(&ins, (int64_t)idx);
    hk_dbp_blob(&ins, sig, 64);
    hk_dbp_int(&ins, now);
    hk_dbp_blob(&one, rid, HK_ID_LEN);
    if ((e = hk_sql_begin(db)) != HK_OK)
        return e;
    /* the request row is locked: two nodes recording the last two
     * signatures count each other's */
    e = hk_request_insert_once(
        db,
        "SELECT CASE WHEN state = 'pending' AND expires > ?3 AND ?2 < "
        "length(digests) / dlen THEN 1 ELSE 0 END FROM requests WHERE rid = "
        "?1{FOR_UPDATE}",
        &q,
        "INSERT INTO request_sigs (rid, idx, sig, created) VALUES (?1, ?2, "
        "?3, ?4) ON CONFLICT (rid, idx) DO NOTHING",
        &ins);
    if (e == HK_OK)
        e = hk_sql_int(db, "SELECT count(*) FROM request_sigs WHERE rid = ?1",
                       &one, &count);
    *nsigs = e == HK_OK ? (size_t)count : 0;
    return hk_sql_end(db, e);
}

static hk_err hk_st_request_finish(hk_db *db, const unsigned char *rid,
                                   hk_db_req_state to, const char *reason,
                                   const unsigned char *result,
                                   size_t result_len, int64_t now)
{
    hk_dbp p = {0};
    hk_err e;

    hk_dbp_blob(&p, rid, HK_ID_LEN);
    hk_dbp_text(&p, hk_db_req_state_name(to));
    hk_dbp_text(&p, reason);
    hk_dbp_int(&p, now);
    if (result != NULL)
        hk_dbp_blob(&p, result, result_len);
    e = hk_sql_change(db,
                      result != NULL
                          ? "UPDATE requests SET state = ?2, reason = ?3, "
                            "updated = ?4, result = ?5, cb_state = CASE WHEN "
                            "callback_url = '' THEN 'none' ELSE 'queued' END, "
                            "cb_next = ?4 WHERE rid = ?1 AND state = 'pending'"
                          : "UPDATE requests SET state = ?2, reason = ?3, "
                            "updated = ?4, cb_state = CASE WHEN callback_url "
                            "= '' THEN 'none' ELSE 'queued' END, cb_next = ?4 "
                            "WHERE rid = ?1 AND state = 'pending'",
                      &p);
    return e == HK_ERR_NOT_FOUND ? HK_ERR_STATE : e;
}

static hk_err hk_st_request_sweep(hk_db *db, int64_t now, hk_db_request **out,
                                  size_t *n)
{
    hk_dbp p = {0};
    hk_err e;
    size_t i;

    hk_dbp_int(&p, now);
    if ((e = hk_sql_begin(db)) != HK_OK)
        return e;
    e = hk_request_rows(db,
                        "SELECT " HK_REQ_COLS " FROM requests WHERE state = "
                        "'pending' AND expires <= ?1 ORDER BY expires, rid "
                        "LIMIT 100{FOR_UPDATE}",
                        &p, hk_read_request_head, out, n);
    for (i = 0; e == HK_OK && i < *n; i++)
        e = hk_st_request_finish(db, (*out)[i].rid, HK_REQ_EXPIRED,
                                 "expired before the owner signed", NULL, 0,
                                 now);
    if (e != HK_OK) {
        hk_db_request_list_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return hk_sql_end(db, e);
}

static hk_err hk_st_session_bind_request(hk_db *db, const unsigned char *sid,
                                         const unsigned char *rid, unsigned idx)
{
    hk_dbp p = {0};

    hk_dbp_blob(&p, sid, HK_ID_LEN);
    hk_dbp_blob(&p, rid, HK_ID_LEN);
    hk_dbp_int(&p, idx);
    return hk_sql_change(db,
                         "UPDATE sessions SET rid = ?2, ridx = ?3 WHERE sid = "
                         "?1 AND op = 'sign' AND rid IS NULL",
                         &p);
}

static hk_err hk_st_request_approve(hk_db *db, const unsigned char *rid,
                                    const char *approver, int64_t now)
{
    hk_dbp q = {0}, ins = {0};
    hk_err e;

    hk_dbp_blob(&q, rid, HK_ID_LEN);
    hk_dbp_int(&q, now);
    hk_dbp_blob(&ins, rid, HK_ID_LEN);
    hk_dbp_text(&ins, approver);
    hk_dbp_int(&ins, now);
    if ((e = hk_sql_begin(db)) != HK_OK)
        return e;
    e = hk_request_insert_once(
        db,
        "SELECT CASE WHEN state = 'pending' AND expires > ?2 THEN 1 ELSE 0 "
        "END FROM requests WHERE rid = ?1{FOR_UPDATE}",
        &q,
        "INSERT INTO request_approvals (rid, approver, created) VALUES (?1, "
        "?2, ?3) ON CONFLICT (rid, approver) DO NOTHING",
        &ins);
    return hk_sql_end(db, e);
}

static hk_err hk_st_request_approvers(hk_db *db, const unsigned char *rid,
                                      char (*subs)[HK_SUB_MAX + 1], size_t max,
                                      size_t *n)
{
    hk_sql_cur c;
    hk_dbp p = {0};
    int row = 1;
    hk_err e;

    hk_dbp_blob(&p, rid, HK_ID_LEN);
    if ((e = hk_sql_query(db,
                          "SELECT approver FROM request_approvals WHERE rid = "
                          "?1 ORDER BY created, approver",
                          &p, &c)) != HK_OK)
        goto done;
    while (*n < max && (e = hk_sql_next(&c, &row)) == HK_OK && row) {
        if ((e = hk_col_text(&c, 0, subs[*n], HK_SUB_MAX)) != HK_OK)
            break;
        (*n)++;
    }
done:
    hk_sql_done(&c);
    return e;
}

static hk_err
hk_st_request_inflight(hk_db *db, const char *owner, const unsigned char *kid,
                       const unsigned char *except, int64_t live_after,
                       const unsigned char *after_rid,
                       unsigned char (*rids)[HK_ID_LEN], size_t max, size_t *n)
{
    static const unsigned char none[HK_ID_LEN] = {0};
    hk_sql_cur c = {0};
    hk_dbp p = {0};
    int row = 1;
    hk_err e;

    hk_dbp_text(&p, owner);
    hk_dbp_blob(&p, kid, HK_ID_LEN);
    hk_dbp_blob(&p, except, HK_ID_LEN);
    hk_dbp_int(&p, live_after);
    hk_dbp_blob(&p, after_rid != NULL ? after_rid : none, HK_ID_LEN);
    hk_dbp_int(&p, (int64_t)max);
    if ((e = hk_sql_begin(db)) != HK_OK)
        return e;
    if ((e = db->x->lock(db, HK_SQL_LOCK_REQUEST)) != HK_OK ||
        (e = hk_sql_query(
             db,
             "SELECT r.rid FROM requests r WHERE r.owner = ?1 AND r.kid = ?2 "
             "AND r.state = 'pending' AND r.rid <> ?3 AND r.rid > ?5 AND "
             "(EXISTS (SELECT 1 FROM request_sigs g WHERE g.rid = r.rid) OR "
             "EXISTS (SELECT 1 FROM sessions s WHERE s.rid = r.rid AND "
             "s.state IN ('open', 'running') AND s.last_seen >= ?4)) "
             "ORDER BY r.rid LIMIT ?6",
             &p, &c)) != HK_OK)
        goto done;
    while (*n < max && (e = hk_sql_next(&c, &row)) == HK_OK && row) {
        if ((e = hk_col_fixed(&c, 0, rids[*n], HK_ID_LEN)) != HK_OK)
            break;
        (*n)++;
    }
done:
    hk_sql_done(&c);
    return hk_sql_end(db, e);
}

/* rid and callback_url of a claimed callback. */
static hk_err hk_read_callback(const hk_sql_cur *c, hk_db_request *r)
{
    hk_err e;

    memset(r, 0, sizeof(*r));
    if ((e = hk_col_fixed(c, 0, r->rid, HK_ID_LEN)) != HK_OK ||
        (e = hk_col_text(c, 1, r->callback_url, HK_DB_REQ_URL_MAX)) != HK_OK)
        return e;
    return hk_col_int(c, 2, 0, INT32_MAX, &r->cb_attempts);
}

static hk_err hk_st_callback_claim(hk_db *db, int64_t now, int64_t lease,
                                   size_t max, hk_db_request **out, size_t *n)
{
    hk_dbp p = {0}, u = {0};
    hk_err e;
    size_t i;

    hk_dbp_int(&p, now);
    hk_dbp_int(&p, (int64_t)max);
    if ((e = hk_sql_begin(db)) != HK_OK)
        return e;
    e = hk_request_rows(
        db,
        "SELECT rid, callback_url, cb_attempts FROM requests WHERE "
        "cb_state = 'queued' AND cb_next <= ?1 ORDER BY "
        "cb_next, rid LIMIT ?2{FOR_UPDATE}",
        &p, hk_read_callback, out, n);
    for (i = 0; e == HK_OK && i < *n; i++) {
        memset(&u, 0, sizeof(u));
        hk_dbp_blob(&u, (*out)[i].rid, HK_ID_LEN);
        hk_dbp_int(&u, now + lease);
        e = hk_sql_run(db, "UPDATE requests SET cb_next = ?2 WHERE rid = ?1",
                       &u, NULL);
    }
    if (e != HK_OK) {
        hk_db_request_list_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return hk_sql_end(db, e);
}

static hk_err hk_st_callback_result(hk_db *db, const unsigned char *rid, int ok,
                                    int64_t next, int max_attempts,
                                    int64_t *attempts)
{
    hk_dbp p = {0}, one = {0};
    int64_t a = 0;
    hk_err e;

    hk_dbp_blob(&p, rid, HK_ID_LEN);
    if (!ok) {
        hk_dbp_int(&p, next);
        hk_dbp_int(&p, max_attempts);
    }
    hk_dbp_blob(&one, rid, HK_ID_LEN);
    if ((e = hk_sql_begin(db)) != HK_OK)
        return e;
    e = hk_sql_change(db,
                      ok ? "UPDATE requests SET cb_state = 'delivered', "
                           "cb_attempts = cb_attempts + 1 WHERE rid = ?1 AND "
                           "cb_state = 'queued'"
                         : "UPDATE requests SET cb_attempts = cb_attempts + "
                           "1, cb_next = ?2, cb_state = CASE WHEN "
                           "cb_attempts + 1 >= ?3 THEN 'failed' ELSE "
                           "'queued' END WHERE rid = ?1 AND cb_state = "
                           "'queued'",
                      &p);
    if (e == HK_OK)
        e = hk_sql_int(db, "SELECT cb_attempts FROM requests WHERE rid = ?1",
                       &one, &a);
    if (attempts != NULL)
        *attempts = e == HK_OK ? a : 0;
    return hk_sql_end(db, e);
}

/* --- attestations (v6) --------------------------------------------------- */

static const char *const hk_att_state_names[] = {NULL, "challenged", "verified",
                                                 "refused"};

static hk_err hk_st_attest_put(hk_db *db, const unsigned char *sid,
                               const hk_db_attestation *a)
{
    hk_dbp p = {0};

    hk_dbp_blob(&p, sid, HK_ID_LEN);
    hk_dbp_blob(&p, a->cred_hash, sizeof(a->cred_hash));
    hk_dbp_blob(&p, a->ak_pub, a->ak_publen);
    hk_dbp_text(&p, a->summary);
    return hk_sql_run(db,
                      "INSERT INTO attestations (sid, state, cred_hash, "
                      "ak_pub, summary) VALUES (?1, 'challenged', ?2, ?3, ?4)",
                      &p, NULL);
}

static hk_err hk_st_attest_get(hk_db *db, const unsigned char *sid,
                               hk_db_attestation *out)
{
    char state[HK_NAME_MAX + 1];
    hk_sql_cur c;
    hk_dbp p = {0};
    int row = 0, i;
    hk_err e;

    memset(out, 0, sizeof(*out));
    hk_dbp_blob(&p, sid, HK_ID_LEN);
    if ((e = hk_sql_query(db,
                          "SELECT state, cred_hash, ak_pub, summary FROM "
                          "attestations WHERE sid = ?1",
                          &p, &c)) != HK_OK)
        goto done;
    if ((e = hk_sql_next(&c, &row)) != HK_OK)
        goto done;
    e = HK_ERR_NOT_FOUND;
    if (!row)
        goto done;
    if ((e = hk_col_text(&c, 0, state, HK_NAME_MAX)) != HK_OK ||
        (e = hk_col_fixed(&c, 1, out->cred_hash, sizeof(out->cred_hash))) !=
            HK_OK ||
        (e = hk_col_var(&c, 2, out->ak_pub, sizeof(out->ak_pub),
                        &out->ak_publen)) != HK_OK ||
        (e = hk_col_text(&c, 3, out->summary, HK_DB_ATTEST_MAX)) != HK_OK)
        goto done;
    e = HK_ERR_DECODE;
    for (i = 1; i <= HK_DB_ATT_REFUSED; i++)
        if (strcmp(state, hk_att_state_names[i]) == 0) {
            out->state = (hk_db_att_state)i;
            e = HK_OK;
        }
done:
    hk_sql_done(&c);
    return e;
}

static hk_err hk_st_attest_finish(hk_db *db, const unsigned char *sid,
                                  int verified)
{
    hk_dbp p = {0}, one = {0};
    int changes = 0, yes = 0;
    hk_err e;

    hk_dbp_blob(&p, sid, HK_ID_LEN);
    hk_dbp_blob(&one, sid, HK_ID_LEN);
    hk_dbp_text(
        &p,
        hk_att_state_names[verified ? HK_DB_ATT_VERIFIED : HK_DB_ATT_REFUSED]);
    if ((e = hk_sql_begin(db)) != HK_OK)
        return e;
    e = hk_sql_run(db,
                   "UPDATE attestations SET state = ?2 WHERE sid = ?1 AND "
                   "state = 'challenged'",
                   &p, &changes);
    /* nothing changed: answered already, or no such challenge */
    if (e == HK_OK && changes == 0 &&
        (e = hk_sql_exists(db, "SELECT 1 FROM attestations WHERE sid = ?1",
                           &one, &yes)) == HK_OK)
        e = yes ? HK_ERR_STATE : HK_ERR_NOT_FOUND;
    return hk_sql_end(db, e);
}

const hk_db_ops hk_store_ops = {
    hk_st_schema_version,
    hk_st_key_create,
    hk_st_key_get,
    hk_st_key_list,
    hk_st_key_confirm,
    hk_st_key_set_limits,
    hk_st_key_delete,
    hk_st_key_set_disabled,
    hk_st_share_put,
    hk_st_share_promote,
    hk_st_share_get,
    hk_st_session_create,
    hk_st_session_touch,
    hk_st_session_get,
    hk_st_session_set_state,
    hk_st_session_sweep,
    hk_st_session_others,
    hk_st_setup_put,
    hk_st_setup_get,
    hk_st_audit_append,
    hk_st_audit_scan,
    hk_st_audit_count,
    hk_st_bucket_take,
    hk_st_share_list_all,
    hk_st_share_replace_sealed,
    hk_st_setup_replace_sealed,
    hk_st_session_fail_node,
    hk_st_write_probe,
    hk_st_backup_put,
    hk_st_backup_get,
    hk_st_backup_newest,
    hk_st_backup_counts,
    hk_st_request_put,
    hk_st_request_get,
    hk_st_request_list,
    hk_st_request_sig_put,
    hk_st_request_finish,
    hk_st_request_sweep,
    hk_st_session_bind_request,
    hk_st_request_approve,
    hk_st_request_approvers,
    hk_st_request_inflight,
    hk_st_callback_claim,
    hk_st_callback_result,
    hk_st_attest_put,
    hk_st_attest_get,
    hk_st_attest_finish,
    hk_st_presig_put,
    hk_st_presig_take,
    hk_st_presig_count,
    hk_st_presig_sweep,
};
