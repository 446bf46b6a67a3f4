/* Private to server/db*.c: the layers under the public storage API.
 *
 *   db.c        the public API (db.h): checks every argument (ids non-NULL,
 *               subjects and labels valid text, epochs in 1..HK_DB_EPOCH_MAX,
 *               blob sizes, now >= 0, idle in 1..HK_DB_IDLE_MAX), then
 *               calls an operation of hk_db_ops;
 *   db_store.c  every operation, written once in SQL over the executor;
 *   db_schema.c the schema and its migrations, written once;
 *   db_sql.c    rendering SQL for a dialect, running it, typed columns;
 *   db_sqlite.c, db_pg.c  the two executors (hk_sql_ops): connect, bind,
 *               step, read typed columns, transactions and locks.
 *
 * An operation runs in one transaction and leaves the database unchanged
 * when it fails; it type- and length-checks every value it reads
 * (HK_ERR_DECODE), converts stored names with the hk_db_*_from_name
 * functions, and returns the codes documented in db.h for the public
 * function of the same name, HK_ERR_IO for a database failure after
 * writing its message to db->err with hk_db_set_err.
 *
 * SQL is written once with ?N placeholders and these dialect tokens,
 * rendered by hk_sql_render:
 *   {GREATEST}       max (SQLite) | greatest (PostgreSQL), two arguments
 *   {FOR_UPDATE}     "" | " FOR UPDATE": a row lock (SQLite's write
 *                    transaction already excludes other writers)
 *   {BLOB} {INT} {REAL} {STRICT} {OCTETS:col}   in the schema: column
 *                    types, STRICT tables, the byte length of a text
 * and, for what the two cannot say alike (the audit log's append-only
 * guard), a statement per dialect (hk_sql_dialect_sql). */
#ifndef HK_DB_IMPL_H
#define HK_DB_IMPL_H

#include "server/store/db.h"

/* Parameters of one statement, in order (?1..), built with hk_dbp_* and
 * bound by the executor. A list that overflows HK_DBP_MAX is refused when
 * bound (n == HK_DBP_MAX). */
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
        int null;      /* SQL NULL of type t (PostgreSQL binds the type) */
        const void *p; /* BLOB, TEXT (NUL-terminated) */
        size_t len;    /* BLOB */
        int64_t i;
        double f;
    } v[HK_DBP_MAX];
} hk_dbp;

/* A BLOB (never SQL NULL, also for 0 bytes). */
void hk_dbp_blob(hk_dbp *p, const void *b, size_t n);
/* TEXT, or a text SQL NULL for s NULL. */
void hk_dbp_text(hk_dbp *p, const char *s);
void hk_dbp_int(hk_dbp *p, int64_t v);
/* An integer, or an integer SQL NULL when v < 0. */
void hk_dbp_opt_int(hk_dbp *p, int64_t v);
void hk_dbp_real(hk_dbp *p, double v);
/* An optional 16-byte id: the BLOB or a blob SQL NULL. */
void hk_dbp_opt_id(hk_dbp *p, int has, const unsigned char *id);
/* The 13 columns of an audit record, in HK_AUDIT_COLS order. */
void hk_dbp_audit(hk_dbp *p, const hk_audit_rec *r);

/* --- the executor ----------------------------------------------------------
 */

typedef enum {
    HK_SQL_NULL,
    HK_SQL_INT,
    HK_SQL_REAL,
    HK_SQL_TEXT,
    HK_SQL_BLOB,
    HK_SQL_OTHER
} hk_sql_type;

typedef enum { HK_SQL_SQLITE, HK_SQL_PG } hk_sql_dialect;

/* Serialisation points of the operations that read before they write
 * across rows (PostgreSQL: transaction-scoped advisory locks). */
typedef enum {
    HK_SQL_LOCK_MIGRATE,
    HK_SQL_LOCK_AUDIT,
    HK_SQL_LOCK_REQUEST /* the request rules' check and binding */
} hk_sql_lock;

/* One statement's results, read row by row. */
typedef struct {
    hk_db *db;
    void *st;    /* sqlite3_stmt, or PGresult */
    int row;     /* PostgreSQL: the current row, -1 before the first */
    int nrows;   /* PostgreSQL */
    int changes; /* rows changed (after the last hk_sql_next) */
    int stepped; /* SQLite: stepped once */
} hk_sql_cur;

typedef struct {
    const char *name; /* "sqlite", "postgresql" */
    hk_sql_dialect dialect;
    void (*close)(hk_db *db);
    hk_err (*begin)(hk_db *db);
    /* Commits if e is HK_OK, else rolls back; the outcome. */
    hk_err (*end)(hk_db *db, hk_err e);
    hk_err (*lock)(hk_db *db, hk_sql_lock which);
    /* Several rendered statements without parameters (the schema). */
    hk_err (*script)(hk_db *db, const char *sql);
    /* One rendered statement with p bound: results in *c. */
    hk_err (*query)(hk_db *db, const char *sql, const hk_dbp *p, hk_sql_cur *c);
    /* *row = 1 for the next row, 0 when done (then c->changes is set). */
    hk_err (*next)(hk_sql_cur *c, int *row);
    void (*finish)(hk_sql_cur *c);
    hk_sql_type (*col_type)(const hk_sql_cur *c, int i);
    hk_err (*col_int)(const hk_sql_cur *c, int i, int64_t *v);
    hk_err (*col_real)(const hk_sql_cur *c, int i, double *v);
    /* TEXT or BLOB bytes (not NUL-terminated) and their length. */
    const unsigned char *(*col_bytes)(const hk_sql_cur *c, int i, size_t *n);
    /* Before the first migration: no foreign tables in the database (else
     * HK_ERR_CONFIG) and the database marked as ours. */
    hk_err (*claim)(hk_db *db);
    /* Deferred durability (db.h, HK_DB_DEFERRED), optional: 1 if a commit
     * made without waiting for the disk can be synced afterwards; sync_start
     * (called after such a commit, under the caller's lock) starts syncing
     * everything committed so far and gives its ticket; sync_wait (any
     * thread, no lock needed) waits until that ticket is on disk. NULL: a
     * deferred group commits durably. */
    int (*can_defer)(hk_db *db);
    hk_err (*sync_start)(hk_db *db, uint64_t *ticket);
    hk_err (*sync_wait)(hk_db *db, uint64_t ticket);
} hk_sql_ops;

/* The operations (db_store.c), each once, over db->x. */
typedef struct {
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
    /* v4: backups (db.h) */
    hk_err (*backup_put)(hk_db *db, const unsigned char *kid,
                         unsigned long epoch, const unsigned char *bk_fp,
                         const unsigned char *blob, size_t len, int64_t now);
    hk_err (*backup_get)(hk_db *db, const unsigned char *kid,
                         unsigned long epoch, hk_db_backup *out);
    hk_err (*backup_newest)(hk_db *db, const unsigned char *kid,
                            unsigned long *epoch);
    hk_err (*backup_counts)(hk_db *db, int64_t *none, int64_t *stale,
                            int64_t *waiting);
    hk_err (*request_put)(hk_db *db, const hk_db_request *r);
    hk_err (*request_get)(hk_db *db, const unsigned char *rid,
                          hk_db_request *out);
    hk_err (*request_list)(hk_db *db, const char *owner, hk_db_req_state state,
                           int64_t after, const unsigned char *after_rid,
                           size_t max, hk_db_request **out, size_t *n);
    hk_err (*request_sig_put)(hk_db *db, const unsigned char *rid, size_t idx,
                              const unsigned char *sig, int64_t now,
                              size_t *nsigs);
    hk_err (*request_finish)(hk_db *db, const unsigned char *rid,
                             hk_db_req_state to, const char *reason,
                             const unsigned char *result, size_t result_len,
                             int64_t now);
    hk_err (*request_sweep)(hk_db *db, int64_t now, hk_db_request **out,
                            size_t *n);
    hk_err (*session_bind_request)(hk_db *db, const unsigned char *sid,
                                   const unsigned char *rid, unsigned idx);
    hk_err (*request_approve)(hk_db *db, const unsigned char *rid,
                              const char *approver, int64_t now);
    hk_err (*request_approvers)(hk_db *db, const unsigned char *rid,
                                char (*subs)[HK_SUB_MAX + 1], size_t max,
                                size_t *n);
    hk_err (*request_inflight)(hk_db *db, const char *owner,
                               const unsigned char *kid,
                               const unsigned char *except, int64_t live_after,
                               const unsigned char *after_rid,
                               unsigned char (*rids)[HK_ID_LEN], size_t max,
                               size_t *n);
    hk_err (*callback_claim)(hk_db *db, int64_t now, int64_t lease, size_t max,
                             hk_db_request **out, size_t *n);
    hk_err (*callback_result)(hk_db *db, const unsigned char *rid, int ok,
                              int64_t next, int max_attempts,
                              int64_t *attempts);
    hk_err (*attest_put)(hk_db *db, const unsigned char *sid,
                         const hk_db_attestation *a);
    hk_err (*attest_get)(hk_db *db, const unsigned char *sid,
                         hk_db_attestation *out);
    hk_err (*attest_finish)(hk_db *db, const unsigned char *sid, int verified);
    /* v7: presignatures (db.h) */
    hk_err (*presig_put)(hk_db *db, const unsigned char *kid, const char *owner,
                         unsigned long epoch, const hk_db_presig_in *ps,
                         size_t n, size_t max_key, size_t max_owner,
                         int64_t now);
    hk_err (*presig_take)(hk_db *db, const unsigned char *psid,
                          const unsigned char *kid, const char *owner,
                          unsigned long *epoch, unsigned char **sealed,
                          size_t *len);
    hk_err (*presig_count)(hk_db *db, const unsigned char *kid,
                           const char *owner, int64_t *n_key, int64_t *n_owner);
    hk_err (*presig_sweep)(hk_db *db, int64_t before, size_t *deleted);
} hk_db_ops;

#define HK_DB_ERR_LEN 256

struct hk_db {
    const hk_db_ops *ops; /* hk_store_ops */
    const hk_sql_ops *x;  /* the back end's executor */
    int depth;       /* open transactions: 1 the outer one, more savepoints */
    int lazy;        /* the open group commits without waiting for the disk */
    int deferred;    /* ... and is synced after (HK_DB_DEFERRED) */
    uint64_t ticket; /* the last deferred group's (hk_db_group_ticket) */
    char err[HK_DB_ERR_LEN];    /* last failure's message */
    char node[HK_NODE_MAX + 1]; /* hk_db_set_node, "" if none */
};

extern const hk_db_ops hk_store_ops;

/* --- running SQL (db_sql.c) ------------------------------------------------
 */

/* Renders sql (placeholders, tokens) for db's dialect into out[cap]:
 * HK_ERR_TOO_BIG if it does not fit. */
HK_WUR hk_err hk_sql_render(const hk_db *db, const char *sql, char *out,
                            size_t cap);
/* Renders and runs sql with p: results in *c (hk_sql_done it). */
HK_WUR hk_err hk_sql_query(hk_db *db, const char *sql, const hk_dbp *p,
                           hk_sql_cur *c);
HK_WUR hk_err hk_sql_next(hk_sql_cur *c, int *row);
/* As hk_sql_query, positioned on the first row (read it with hk_col_*,
 * then hk_sql_done): HK_ERR_NOT_FOUND if there is none. */
HK_WUR hk_err hk_sql_first(hk_db *db, const char *sql, const hk_dbp *p,
                           hk_sql_cur *c);
void hk_sql_done(hk_sql_cur *c);
/* A statement without result rows; *changes (may be NULL) its count. */
HK_WUR hk_err hk_sql_run(hk_db *db, const char *sql, const hk_dbp *p,
                         int *changes);
/* As hk_sql_run, HK_ERR_NOT_FOUND if it changed no row. */
HK_WUR hk_err hk_sql_change(hk_db *db, const char *sql, const hk_dbp *p);
/* One integer (the first column of exactly one row). */
HK_WUR hk_err hk_sql_int(hk_db *db, const char *sql, const hk_dbp *p,
                         int64_t *out);
/* *yes = 1 if the query returns a row. */
HK_WUR hk_err hk_sql_exists(hk_db *db, const char *sql, const hk_dbp *p,
                            int *yes);
/* A transaction, or inside one a savepoint (hk_db_group_begin): an
 * operation that fails inside a group rolls back to its savepoint only. */
HK_WUR hk_err hk_sql_begin(hk_db *db);
HK_WUR hk_err hk_sql_end(hk_db *db, hk_err e);
/* Several statements (rendered) without parameters. */
HK_WUR hk_err hk_sql_script(hk_db *db, const char *sql);

/* Typed columns of the current row; HK_ERR_DECODE for a value of another
 * type or outside its bounds. */
HK_WUR hk_err hk_col_fixed(const hk_sql_cur *c, int i, unsigned char *out,
                           size_t n);
/* A BLOB of min..max bytes, copied to a new buffer (OPENSSL_free). */
HK_WUR hk_err hk_col_dup(const hk_sql_cur *c, int i, size_t min, size_t max,
                         unsigned char **out, size_t *len);
/* A BLOB of 0..max bytes into out. */
HK_WUR hk_err hk_col_var(const hk_sql_cur *c, int i, unsigned char *out,
                         size_t max, size_t *len);
/* Valid text (hk_db_text_ok) of 1..max bytes into out[max + 1]. */
HK_WUR hk_err hk_col_text(const hk_sql_cur *c, int i, char *out, size_t max);
/* As hk_col_text, or "" for an empty text. */
HK_WUR hk_err hk_col_opt_text(const hk_sql_cur *c, int i, char *out,
                              size_t max);
/* TEXT of max bytes or NULL: *is_null. */
HK_WUR hk_err hk_col_null_text(const hk_sql_cur *c, int i, char *out,
                               size_t max, int *is_null);
HK_WUR hk_err hk_col_int(const hk_sql_cur *c, int i, int64_t lo, int64_t hi,
                         int64_t *out);
HK_WUR hk_err hk_col_real(const hk_sql_cur *c, int i, double *out);
HK_WUR hk_err hk_col_epoch(const hk_sql_cur *c, int i, unsigned long *out);
/* An optional 16-byte id. */
HK_WUR hk_err hk_col_opt_id(const hk_sql_cur *c, int i, int *has,
                            unsigned char *out);

/* --- the schema (db_schema.c) ----------------------------------------------
 */

/* Runs the pending migrations in one transaction (serialised between
 * nodes): HK_ERR_VERSION for a database of a newer schema. */
HK_WUR hk_err hk_schema_migrate(hk_db *db);

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
