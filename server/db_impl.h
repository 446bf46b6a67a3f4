/* Private to server/db*.c: the storage back-end interface.
 *
 * A back end (db_sqlite.c; db_pg.c in issue 4) allocates a struct that
 * starts with `struct hk_db` and fills in `ops`. db.c checks every public
 * argument (ids non-NULL, subjects and labels valid text, epochs in
 * 1..HK_DB_EPOCH_MAX, blob sizes, now >= 0, idle in 1..HK_DB_IDLE_MAX), so
 * back ends may assume valid arguments. A back end:
 *  - runs each operation in one transaction and leaves the database
 *    unchanged when it fails;
 *  - type- and length-checks every value it reads (HK_ERR_DECODE), and
 *    converts stored names with the hk_db_*_from_name functions;
 *  - returns the codes documented in db.h for the public function of the
 *    same name, and HK_ERR_IO for a database failure after writing its
 *    message to db->err with hk_db_set_err. */
#ifndef HK_DB_IMPL_H
#define HK_DB_IMPL_H

#include "server/db.h"

typedef struct {
    const char *name; /* "sqlite", "postgresql" */
    void (*close)(hk_db *db);
    hk_err (*schema_version)(hk_db *db, int *version);
    /* first: NULL, or a sealed share stored as the key's active share in
     * the same transaction (hk_store_new_key). */
    hk_err (*key_create)(hk_db *db, const hk_db_key *k, unsigned long epoch,
                         const unsigned char *first, size_t firstlen);
    /* owner NULL: any owner. */
    hk_err (*key_get)(hk_db *db, const unsigned char *kid, const char *owner,
                      hk_db_key *out);
    /* owner NULL: every key. pending_before >= 0: only pending keys created
     * before it. */
    hk_err (*key_list)(hk_db *db, const char *owner, int64_t pending_before,
                       hk_db_key **keys, size_t *n);
    /* The key becomes active (its client proved it stored its share). */
    hk_err (*key_confirm)(hk_db *db, const unsigned char *kid);
    hk_err (*key_set_limits)(hk_db *db, const unsigned char *kid,
                             unsigned max_hour, unsigned max_day);
    /* owner NULL: any owner; only_pending: only a pending key. */
    hk_err (*key_delete)(hk_db *db, const unsigned char *kid, const char *owner,
                         int only_pending);
    hk_err (*key_set_disabled)(hk_db *db, const unsigned char *kid,
                               int disabled);
    hk_err (*share_put)(hk_db *db, const unsigned char *kid,
                        unsigned long epoch, hk_db_share_state state,
                        const unsigned char *sealed, size_t len);
    hk_err (*share_promote)(hk_db *db, const unsigned char *kid,
                            unsigned long epoch);
    /* epoch 0: the active share. *epoch_out and *state describe the row. */
    hk_err (*share_get)(hk_db *db, const unsigned char *kid,
                        unsigned long epoch, unsigned long *epoch_out,
                        hk_db_share_state *state, unsigned char **sealed,
                        size_t *len);
    hk_err (*session_create)(hk_db *db, const hk_db_session *s);
    hk_err (*session_touch)(hk_db *db, const unsigned char *sid, int64_t now,
                            int64_t idle);
    hk_err (*session_get)(hk_db *db, const unsigned char *sid, int64_t now,
                          int64_t idle, hk_db_session *out);
    hk_err (*session_set_state)(hk_db *db, const unsigned char *sid,
                                hk_db_sess_state state, int64_t now,
                                int64_t idle);
    hk_err (*session_sweep)(hk_db *db, int64_t now, int64_t idle,
                            size_t *deleted);
    hk_err (*session_others)(hk_db *db, const unsigned char *sid, int64_t now,
                             int64_t idle, int64_t *n);
    hk_err (*setup_put)(hk_db *db, const unsigned char *sealed, size_t slen,
                        const unsigned char *pub, size_t plen, int64_t now);
    hk_err (*setup_get)(hk_db *db, unsigned char **sealed, size_t *slen,
                        unsigned char **pub, size_t *plen);
    /* In one transaction that excludes other appends: reads the last
     * record's seq and hash, calls hk_audit_link(rec, seq, hash) (or with
     * 0 and NULL for an empty log) and inserts rec. */
    hk_err (*audit_append)(hk_db *db, hk_audit_rec *rec);
    hk_err (*audit_scan)(hk_db *db, int64_t from,
                         hk_err (*fn)(void *ctx, const hk_audit_rec *r),
                         void *ctx);
    hk_err (*audit_count)(hk_db *db, const unsigned char *kid,
                          const char *event, const char *outcome, int64_t since,
                          int64_t *n);
    /* In one transaction: reads the subject's row (if any), calls
     * hk_bucket_step and writes the new row. */
    hk_err (*bucket_take)(hk_db *db, const char *sub, double rate, double burst,
                          double now, int *ok, double *retry);
    /* Re-sealing (db.h, "re-sealing"). after_kid NULL: from the start. */
    hk_err (*share_list_all)(hk_db *db, const unsigned char *after_kid,
                             unsigned long after_epoch, hk_db_share_ref *refs,
                             size_t max, size_t *n);
    hk_err (*share_replace_sealed)(hk_db *db, const unsigned char *kid,
                                   unsigned long epoch,
                                   const unsigned char *old, size_t oldlen,
                                   const unsigned char *nblob, size_t nlen);
    hk_err (*setup_replace_sealed)(hk_db *db, const unsigned char *old,
                                   size_t oldlen, const unsigned char *nblob,
                                   size_t nlen);
    /* v3: sessions.node (db.h) */
    hk_err (*session_fail_node)(hk_db *db, const char *node, size_t *n);
    hk_err (*write_probe)(hk_db *db, int64_t now);
} hk_db_ops;

#define HK_DB_ERR_LEN 256

struct hk_db {
    const hk_db_ops *ops;
    char err[HK_DB_ERR_LEN];    /* last failure's message */
    char node[HK_NODE_MAX + 1]; /* hk_db_set_node, "" if none */
};

/* Parameters of one statement, in order (?1.. in SQLite, $1.. in
 * PostgreSQL), built with hk_dbp_* and bound by each back end. A list
 * that overflows HK_DBP_MAX is refused when bound (n == HK_DBP_MAX). */
#define HK_DBP_MAX 16

typedef struct {
    int n;
    struct {
        enum {
            HK_DBP_NULL,
            HK_DBP_BLOB,
            HK_DBP_TEXT,
            HK_DBP_INT,
            HK_DBP_REAL
        } t;
        const void *p; /* BLOB, TEXT (NUL-terminated) */
        size_t len;    /* BLOB */
        int64_t i;
        double f;
    } v[HK_DBP_MAX];
} hk_dbp;

/* A BLOB (never SQL NULL, also for 0 bytes). */
void hk_dbp_blob(hk_dbp *p, const void *b, size_t n);
/* TEXT, or SQL NULL for s NULL. */
void hk_dbp_text(hk_dbp *p, const char *s);
void hk_dbp_int(hk_dbp *p, int64_t v);
void hk_dbp_real(hk_dbp *p, double v);
/* An optional 16-byte id: the BLOB or SQL NULL. */
void hk_dbp_opt_id(hk_dbp *p, int has, const unsigned char *id);
/* The 13 columns of an audit record, in HK_*_AUDIT_COLS order. */
void hk_dbp_audit(hk_dbp *p, const hk_audit_rec *r);

/* Records a failure message on db (see hk_db_errmsg). */
void hk_db_set_err(hk_db *db, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The states a session may move to `to` from (HK_DB_SESS_* values, 0 for
 * an unused slot); 0 if `to` is not a target (open). */
int hk_db_sess_from_states(hk_db_sess_state to, hk_db_sess_state from[2]);

/* Sets rec's seq to last + 1, prev to last_hash (zeros when NULL) and its
 * hash. */
void hk_audit_link(hk_audit_rec *rec, int64_t last,
                   const unsigned char *last_hash);

/* Token-bucket step: the stored state (found, tokens, updated) becomes
 * (*tokens_out, now); *ok if a token was taken, else *retry seconds. */
void hk_bucket_step(int found, double tokens, double updated, double rate,
                    double burst, double now, double *tokens_out, int *ok,
                    double *retry);

/* The rule of a share put (db.h), given the lookup of the key's active
 * share (HK_OK with its epoch `active`, or HK_ERR_NOT_FOUND): the code the
 * put returns, HK_OK to go on. Other lookup codes pass through. */
hk_err hk_db_share_put_rule(hk_err lookup, unsigned long active,
                            hk_db_share_state state, unsigned long epoch);

/* 1 if name is [a-z_]{1,HK_AUDIT_NAME_MAX}. */
int hk_audit_name_ok(const char *name);

#endif
