/* PostgreSQL back end of the storage interface (see db.h and db_impl.h),
 * through libpq.
 *
 * Every statement runs with bound parameters in binary format (no SQL is
 * built from data) and asks for binary results, whose types are checked
 * by OID before a value is read. Transactions run at READ COMMITTED; the
 * writes that read before they write take a row lock first (the key row
 * for share changes, the bucket row for rate limits) or, for the audit log
 * and the migrations, a transaction-scoped advisory lock, so several
 * halfkeyd nodes on one database serialise where they must. A connection
 * that broke is reset once before the next statement. */
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <openssl/crypto.h>

#include "mpc/codec.h"
#include "server/db_impl.h"
#include "server/why.h"

/* Type OIDs of the columns read (pg_type.h is server-side only). */
#define HK_PG_BYTEA 17
#define HK_PG_INT8 20
#define HK_PG_TEXT 25
#define HK_PG_FLOAT8 701
#define HK_PG_NPARAMS 16
#define HK_PG_NAME_MAX 15

/* Advisory lock keys: "hkmg" (migrations) and "hkau" (audit appends). */
#define HK_PG_LOCK_MIGRATE "1752919399"
#define HK_PG_LOCK_AUDIT "1752916341"

typedef struct {
    hk_db base; /* first: a hk_db * is a hk_pg * */
    PGconn *conn;
} hk_pg;

/* Bound parameters of one statement. */
typedef struct {
    int n;
    Oid types[HK_PG_NPARAMS];
    const char *vals[HK_PG_NPARAMS];
    int lens[HK_PG_NPARAMS];
    int fmts[HK_PG_NPARAMS];
    unsigned char nums[HK_PG_NPARAMS][8];
} hk_pgp;

/* Migration i brings the schema from version i to i + 1; the same schema
 * as the SQLite back end's (db.h). Never edit one that has shipped. */
static const char *const hk_pg_migrations[] = {
    /* 1: initial schema */
    "CREATE TABLE keys ("
    " kid BYTEA PRIMARY KEY CHECK (length(kid) = 16),"
    " owner TEXT NOT NULL CHECK (octet_length(owner) BETWEEN 1 AND 255),"
    " curve TEXT NOT NULL CHECK (curve IN ('secp256k1', 'p256')),"
    " pubkey BYTEA NOT NULL CHECK (length(pubkey) = 33),"
    " created BIGINT NOT NULL,"
    " disabled BIGINT NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),"
    " label TEXT CHECK (label IS NULL OR"
    "  octet_length(label) BETWEEN 1 AND 128));"
    "CREATE INDEX keys_owner ON keys (owner, created);"
    "CREATE TABLE shares ("
    " kid BYTEA NOT NULL REFERENCES keys (kid) ON DELETE CASCADE,"
    " epoch BIGINT NOT NULL CHECK (epoch BETWEEN 1 AND 4294967295),"
    " state TEXT NOT NULL CHECK (state IN ('active', 'pending')),"
    " sealed BYTEA NOT NULL,"
    " PRIMARY KEY (kid, epoch),"
    " UNIQUE (kid, state));"
    "CREATE TABLE sessions ("
    " sid BYTEA PRIMARY KEY CHECK (length(sid) = 16),"
    " owner TEXT NOT NULL CHECK (octet_length(owner) BETWEEN 1 AND 255),"
    " op TEXT NOT NULL CHECK (op IN ('keygen', 'sign', 'refresh')),"
    " kid BYTEA CHECK (kid IS NULL OR length(kid) = 16),"
    " created BIGINT NOT NULL,"
    " last_seen BIGINT NOT NULL,"
    " state TEXT NOT NULL"
    "  CHECK (state IN ('open', 'running', 'done', 'failed')));"
    "CREATE INDEX sessions_last_seen ON sessions (last_seen);"
    "CREATE TABLE setup ("
    " id BIGINT PRIMARY KEY CHECK (id = 1),"
    " sealed BYTEA NOT NULL,"
    " public BYTEA NOT NULL,"
    " created BIGINT NOT NULL);",
    /* 2: per-key limits, keygen curve, audit log, rate buckets */
    "ALTER TABLE keys ADD COLUMN max_hour BIGINT NOT NULL DEFAULT 0"
    " CHECK (max_hour BETWEEN 0 AND 1000000);"
    "ALTER TABLE keys ADD COLUMN max_day BIGINT NOT NULL DEFAULT 0"
    " CHECK (max_day BETWEEN 0 AND 1000000);"
    "ALTER TABLE sessions ADD COLUMN curve TEXT"
    " CHECK (curve IS NULL OR curve IN ('secp256k1', 'p256'));"
    "CREATE TABLE audit ("
    " seq BIGINT PRIMARY KEY CHECK (seq >= 1),"
    " time BIGINT NOT NULL,"
    " node TEXT NOT NULL,"
    " subject TEXT NOT NULL,"
    " kid BYTEA CHECK (kid IS NULL OR length(kid) = 16),"
    " sid BYTEA CHECK (sid IS NULL OR length(sid) = 16),"
    " event TEXT NOT NULL,"
    " outcome TEXT NOT NULL,"
    " detail TEXT NOT NULL,"
    " digest BYTEA NOT NULL CHECK (length(digest) <= 64),"
    " signature BYTEA NOT NULL CHECK (length(signature) <= 72),"
    " prev BYTEA NOT NULL CHECK (length(prev) = 32),"
    " hash BYTEA NOT NULL CHECK (length(hash) = 32));"
    "CREATE INDEX audit_kid ON audit (kid, event, time);"
    "CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql"
    " AS $$ BEGIN RAISE EXCEPTION 'audit log is append-only'; END $$;"
    "CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE OR TRUNCATE"
    " ON audit FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();"
    "CREATE TABLE buckets ("
    " subject TEXT PRIMARY KEY,"
    " tokens DOUBLE PRECISION NOT NULL,"
    " updated DOUBLE PRECISION NOT NULL);",
    /* 3: two-phase keygen; the node that claimed a session; health
     * probes (db.h) */
    "ALTER TABLE keys ADD COLUMN pending BIGINT NOT NULL DEFAULT 0"
    " CHECK (pending IN (0, 1));"
    "CREATE INDEX keys_pending ON keys (pending, created);"
    "ALTER TABLE sessions ADD COLUMN node TEXT;"
    "CREATE TABLE health ("
    " node TEXT PRIMARY KEY,"
    " probed BIGINT NOT NULL);",
};

#define HK_PG_NMIGRATIONS                                                      \
    ((int)(sizeof(hk_pg_migrations) / sizeof(hk_pg_migrations[0])))

_Static_assert(HK_PG_NMIGRATIONS == HK_DB_SCHEMA_VERSION,
               "one migration per schema version");

#define HK_PG_KEY_COLS                                                         \
    "kid, owner, curve, pubkey, created, disabled, label, max_hour, "          \
    "max_day, pending"
#define HK_PG_SESSION_COLS                                                     \
    "sid, owner, op, kid, created, last_seen, state, curve"
#define HK_PG_AUDIT_COLS                                                       \
    "seq, time, node, subject, kid, sid, event, outcome, detail, digest, "     \
    "signature, prev, hash"

/* --- parameters ----------------------------------------------------------- */

static void hk_pgp_raw(hk_pgp *p, Oid type, const void *v, size_t n)
{
    if (p->n >= HK_PG_NPARAMS)
        return; /* statements here bind far fewer; hk_pg_exec refuses */
    p->types[p->n] = type;
    p->vals[p->n] = v;
    p->lens[p->n] = (int)n;
    p->fmts[p->n] = 1;
    p->n++;
}

static void hk_pgp_blob(hk_pgp *p, const void *b, size_t n)
{
    /* a zero-length value needs a non-NULL pointer (NULL is SQL NULL) */
    hk_pgp_raw(p, HK_PG_BYTEA, b != NULL ? b : (const void *)"", n);
}

/* NULL s binds SQL NULL. */
static void hk_pgp_text(hk_pgp *p, const char *s)
{
    hk_pgp_raw(p, HK_PG_TEXT, s, s != NULL ? strlen(s) : 0);
}

static void hk_pgp_u64(hk_pgp *p, Oid type, uint64_t v)
{
    int i;

    if (p->n >= HK_PG_NPARAMS)
        return;
    for (i = 0; i < 8; i++)
        p->nums[p->n][i] = (unsigned char)(v >> (56 - 8 * i));
    hk_pgp_raw(p, type, p->nums[p->n], 8);
}

static void hk_pgp_i64(hk_pgp *p, int64_t v)
{
    hk_pgp_u64(p, HK_PG_INT8, (uint64_t)v);
}

static void hk_pgp_f64(hk_pgp *p, double v)
{
    uint64_t u;

    memcpy(&u, &v, 8);
    hk_pgp_u64(p, HK_PG_FLOAT8, u);
}

static void hk_pgp_opt_id(hk_pgp *p, int has, const unsigned char *id)
{
    if (has)
        hk_pgp_blob(p, id, HK_ID_LEN);
    else
        hk_pgp_raw(p, HK_PG_BYTEA, NULL, 0);
}

/* The back-end-neutral list in, binary parameters out. The pointers of
 * BLOB and TEXT values are borrowed from `in`. */
static void hk_pgp_from(hk_pgp *p, const hk_dbp *in)
{
    int i;

    for (i = 0; i < in->n && i < HK_DBP_MAX; i++) {
        switch (in->v[i].t) {
        case HK_DBP_BLOB:
            hk_pgp_blob(p, in->v[i].p, in->v[i].len);
            break;
        case HK_DBP_TEXT:
            hk_pgp_text(p, in->v[i].p);
            break;
        case HK_DBP_INT:
            hk_pgp_i64(p, in->v[i].i);
            break;
        case HK_DBP_REAL:
            hk_pgp_f64(p, in->v[i].f);
            break;
        default: /* SQL NULL: the server infers the type (OID 0) */
            hk_pgp_raw(p, 0, NULL, 0);
        }
    }
    if (in->n >= HK_DBP_MAX)
        p->n = HK_PG_NPARAMS; /* refused by hk_pg_exec */
}

/* --- plumbing ------------------------------------------------------------- */

/* Maps a failed result to an hk_err, recording its message. */
static hk_err hk_pg_fail(hk_pg *d, const PGresult *r)
{
    const char *state =
        r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg =
        r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(d->conn);
    size_t n = strcspn(msg, "\n");

    hk_db_set_err(&d->base, "postgresql: %.*s", (int)n, msg);
    if (state == NULL)
        return HK_ERR_IO;
    if (strcmp(state, "23505") == 0) /* unique_violation */
        return HK_ERR_EXISTS;
    if (strcmp(state, "23503") == 0) /* foreign_key_violation */
        return HK_ERR_NOT_FOUND;
    if (strcmp(state, "54000") == 0) /* program_limit_exceeded */
        return HK_ERR_TOO_BIG;
    return HK_ERR_IO;
}

/* Resets a broken connection, outside any transaction. */
static void hk_pg_revive(hk_pg *d)
{
    if (PQstatus(d->conn) == CONNECTION_BAD)
        PQreset(d->conn);
}

/* Runs sql with p (may be NULL); *res (may be NULL: cleared here) holds
 * the result of a successful statement: PQclear it. */
static hk_err hk_pg_exec(hk_pg *d, const char *sql, const hk_pgp *p,
                         PGresult **res)
{
    PGresult *r;
    hk_err e = HK_OK;

    if (p != NULL && p->n >= HK_PG_NPARAMS)
        return HK_ERR_ARG;
    r = PQexecParams(d->conn, sql, p != NULL ? p->n : 0,
                     p != NULL ? p->types : NULL, p != NULL ? p->vals : NULL,
                     p != NULL ? p->lens : NULL, p != NULL ? p->fmts : NULL, 1);
    if (r == NULL || (PQresultStatus(r) != PGRES_COMMAND_OK &&
                      PQresultStatus(r) != PGRES_TUPLES_OK))
        e = hk_pg_fail(d, r);
    if (e != HK_OK || res == NULL) {
        PQclear(r);
        r = NULL;
    }
    if (res != NULL)
        *res = r;
    return e;
}

/* A statement without result rows; *changes (may be NULL) its row
 * count. */
static hk_err hk_pg_run(hk_pg *d, const char *sql, const hk_pgp *p,
                        int *changes)
{
    PGresult *r = NULL;
    hk_err e = hk_pg_exec(d, sql, p, &r);

    if (e == HK_OK && changes != NULL)
        *changes = atoi(PQcmdTuples(r));
    PQclear(r);
    return e;
}

/* A script of several statements without parameters (the migrations). */
static hk_err hk_pg_script(hk_pg *d, const char *sql)
{
    PGresult *r = PQexec(d->conn, sql);
    hk_err e = HK_OK;

    if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK)
        e = hk_pg_fail(d, r);
    PQclear(r);
    return e;
}

static hk_err hk_pg_begin(hk_pg *d)
{
    hk_pg_revive(d);
    return hk_pg_run(d, "BEGIN", NULL, NULL);
}

/* Commits if e is HK_OK, else rolls back; returns the outcome. */
static hk_err hk_pg_end(hk_pg *d, hk_err e)
{
    if (e == HK_OK)
        e = hk_pg_run(d, "COMMIT", NULL, NULL);
    if (e != HK_OK && PQtransactionStatus(d->conn) != PQTRANS_IDLE)
        PQclear(PQexec(d->conn, "ROLLBACK"));
    return e;
}

/* A single statement outside a transaction. */
static hk_err hk_pg_once(hk_pg *d, const char *sql, const hk_pgp *p,
                         PGresult **res)
{
    hk_pg_revive(d);
    return hk_pg_exec(d, sql, p, res);
}

/* --- reading columns (type- and length-checked) -------------------------- */

static int hk_pgc_is(const PGresult *r, int row, int col, Oid type)
{
    return PQftype(r, col) == type && !PQgetisnull(r, row, col);
}

static hk_err hk_pgc_fixed(const PGresult *r, int row, int col,
                           unsigned char *out, size_t n)
{
    if (!hk_pgc_is(r, row, col, HK_PG_BYTEA) ||
        PQgetlength(r, row, col) != (int)n)
        return HK_ERR_DECODE;
    memcpy(out, PQgetvalue(r, row, col), n);
    return HK_OK;
}

static hk_err hk_pgc_var(const PGresult *r, int row, int col,
                         unsigned char *out, size_t max, size_t *len)
{
    int n = PQgetlength(r, row, col);

    if (!hk_pgc_is(r, row, col, HK_PG_BYTEA) || n < 0 || (size_t)n > max)
        return HK_ERR_DECODE;
    memcpy(out, PQgetvalue(r, row, col), (size_t)n);
    *len = (size_t)n;
    return HK_OK;
}

static hk_err hk_pgc_dup(const PGresult *r, int row, int col, size_t min,
                         size_t max, unsigned char **out, size_t *len)
{
    int n = PQgetlength(r, row, col);

    if (!hk_pgc_is(r, row, col, HK_PG_BYTEA) || n < 0 || (size_t)n < min ||
        (size_t)n > max)
        return HK_ERR_DECODE;
    if ((*out = OPENSSL_memdup(PQgetvalue(r, row, col), (size_t)n)) == NULL)
        return HK_ERR_NOMEM;
    *len = (size_t)n;
    return HK_OK;
}

/* Valid text (hk_db_text_ok) of 1..max bytes, or "" if empty_ok. */
static hk_err hk_pgc_text_opt(const PGresult *r, int row, int col, char *out,
                              size_t max, int empty_ok)
{
    int n = PQgetlength(r, row, col);

    if (!hk_pgc_is(r, row, col, HK_PG_TEXT) || n < 0 || (size_t)n > max)
        return HK_ERR_DECODE;
    memcpy(out, PQgetvalue(r, row, col), (size_t)n);
    out[n] = '\0';
    if (n == 0)
        return empty_ok ? HK_OK : HK_ERR_DECODE;
    return hk_db_text_ok(out, max) ? HK_OK : HK_ERR_DECODE;
}

static hk_err hk_pgc_text(const PGresult *r, int row, int col, char *out,
                          size_t max)
{
    return hk_pgc_text_opt(r, row, col, out, max, 0);
}

static hk_err hk_pgc_u64(const PGresult *r, int row, int col, Oid type,
                         uint64_t *out)
{
    const unsigned char *p;
    int i;

    if (!hk_pgc_is(r, row, col, type) || PQgetlength(r, row, col) != 8)
        return HK_ERR_DECODE;
    p = (const unsigned char *)PQgetvalue(r, row, col);
    for (*out = 0, i = 0; i < 8; i++)
        *out = (*out << 8) | p[i];
    return HK_OK;
}

/* A BIGINT in [lo, hi]. */
static hk_err hk_pgc_int(const PGresult *r, int row, int col, int64_t lo,
                         int64_t hi, int64_t *out)
{
    uint64_t u = 0;
    hk_err e = hk_pgc_u64(r, row, col, HK_PG_INT8, &u);

    *out = (int64_t)u;
    if (e != HK_OK)
        return e;
    return *out >= lo && *out <= hi ? HK_OK : HK_ERR_DECODE;
}

static hk_err hk_pgc_f64(const PGresult *r, int row, int col, double *out)
{
    uint64_t u = 0;
    hk_err e = hk_pgc_u64(r, row, col, HK_PG_FLOAT8, &u);

    memcpy(out, &u, 8);
    return e;
}

static hk_err hk_pgc_opt_id(const PGresult *r, int row, int col, int *has,
                            unsigned char *out)
{
    *has = !PQgetisnull(r, row, col);
    return *has ? hk_pgc_fixed(r, row, col, out, HK_ID_LEN) : HK_OK;
}

static hk_err hk_pg_read_key(const PGresult *r, int row, hk_db_key *k)
{
    char curve[HK_PG_NAME_MAX + 1];
    int64_t disabled = 0, mh = 0, md = 0, pending = 0;
    hk_err e;

    memset(k, 0, sizeof(*k));
    if ((e = hk_pgc_int(r, row, 9, 0, 1, &pending)) != HK_OK ||
        (e = hk_pgc_fixed(r, row, 0, k->kid, HK_ID_LEN)) != HK_OK ||
        (e = hk_pgc_text(r, row, 1, k->owner, HK_SUB_MAX)) != HK_OK ||
        (e = hk_pgc_text(r, row, 2, curve, HK_PG_NAME_MAX)) != HK_OK ||
        (e = hk_pgc_fixed(r, row, 3, k->pub.b, HK_POINT_LEN)) != HK_OK ||
        (e = hk_pgc_int(r, row, 4, 0, INT64_MAX, &k->created)) != HK_OK ||
        (e = hk_pgc_int(r, row, 5, 0, 1, &disabled)) != HK_OK ||
        (e = hk_pgc_int(r, row, 7, 0, HK_DB_LIMIT_MAX, &mh)) != HK_OK ||
        (e = hk_pgc_int(r, row, 8, 0, HK_DB_LIMIT_MAX, &md)) != HK_OK)
        return e;
    if (hk_curve_from_name(curve, &k->curve) != HK_OK)
        return HK_ERR_DECODE;
    k->disabled = (int)disabled;
    k->pending = (int)pending;
    k->max_hour = (unsigned)mh;
    k->max_day = (unsigned)md;
    if (PQgetisnull(r, row, 6))
        return HK_OK;
    return hk_pgc_text(r, row, 6, k->label, HK_LABEL_MAX);
}

static hk_err hk_pg_read_session(const PGresult *r, int row, hk_db_session *s)
{
    char op[HK_PG_NAME_MAX + 1], state[HK_PG_NAME_MAX + 1];
    char curve[HK_PG_NAME_MAX + 1];
    hk_err e;

    memset(s, 0, sizeof(*s));
    if ((e = hk_pgc_fixed(r, row, 0, s->sid, HK_ID_LEN)) != HK_OK ||
        (e = hk_pgc_text(r, row, 1, s->owner, HK_SUB_MAX)) != HK_OK ||
        (e = hk_pgc_text(r, row, 2, op, HK_PG_NAME_MAX)) != HK_OK ||
        (e = hk_pgc_opt_id(r, row, 3, &s->has_kid, s->kid)) != HK_OK ||
        (e = hk_pgc_int(r, row, 4, 0, INT64_MAX, &s->created)) != HK_OK ||
        (e = hk_pgc_int(r, row, 5, 0, INT64_MAX, &s->last_seen)) != HK_OK ||
        (e = hk_pgc_text(r, row, 6, state, HK_PG_NAME_MAX)) != HK_OK ||
        (e = hk_db_op_from_name(op, &s->op)) != HK_OK ||
        (e = hk_db_sess_state_from_name(state, &s->state)) != HK_OK)
        return e;
    if (PQgetisnull(r, row, 7))
        return HK_OK;
    if ((e = hk_pgc_text(r, row, 7, curve, HK_PG_NAME_MAX)) != HK_OK)
        return e;
    return hk_curve_from_name(curve, &s->curve) == HK_OK ? HK_OK
                                                         : HK_ERR_DECODE;
}

static hk_err hk_pg_read_audit(const PGresult *r, int row, hk_audit_rec *a)
{
    hk_err e;

    memset(a, 0, sizeof(*a));
    if ((e = hk_pgc_int(r, row, 0, 1, INT64_MAX, &a->seq)) != HK_OK ||
        (e = hk_pgc_int(r, row, 1, 0, INT64_MAX, &a->time)) != HK_OK ||
        (e = hk_pgc_text_opt(r, row, 2, a->node, HK_NODE_MAX, 1)) != HK_OK ||
        (e = hk_pgc_text_opt(r, row, 3, a->subject, HK_SUB_MAX, 1)) != HK_OK ||
        (e = hk_pgc_opt_id(r, row, 4, &a->has_kid, a->kid)) != HK_OK ||
        (e = hk_pgc_opt_id(r, row, 5, &a->has_sid, a->sid)) != HK_OK ||
        (e = hk_pgc_text(r, row, 6, a->event, HK_AUDIT_NAME_MAX)) != HK_OK ||
        (e = hk_pgc_text(r, row, 7, a->outcome, HK_AUDIT_NAME_MAX)) != HK_OK ||
        (e = hk_pgc_text_opt(r, row, 8, a->detail, HK_AUDIT_DETAIL_MAX, 1)) !=
            HK_OK ||
        (e = hk_pgc_var(r, row, 9, a->digest, HK_AUDIT_DIGEST_MAX,
                        &a->digest_len)) != HK_OK ||
        (e = hk_pgc_var(r, row, 10, a->sig, HK_AUDIT_SIG_MAX, &a->sig_len)) !=
            HK_OK ||
        (e = hk_pgc_fixed(r, row, 11, a->prev, HK_AUDIT_HASH_LEN)) != HK_OK ||
        (e = hk_pgc_fixed(r, row, 12, a->hash, HK_AUDIT_HASH_LEN)) != HK_OK)
        return e;
    return hk_audit_rec_ok(a) ? HK_OK : HK_ERR_DECODE;
}

/* --- opening and migrations ----------------------------------------------- */

static void hk_pg_quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message; /* NOTICEs (e.g. from migrations) are not errors */
}

/* One integer from a statement without parameters. */
/* One integer from a query (p may be NULL: no parameters). */
static hk_err hk_pg_int(hk_pg *d, const char *sql, const hk_pgp *p,
                        int64_t *out)
{
    PGresult *r = NULL;
    hk_err e = hk_pg_exec(d, sql, p, &r);

    if (e == HK_OK)
        e = PQntuples(r) == 1 ? hk_pgc_int(r, 0, 0, INT64_MIN, INT64_MAX, out)
                              : HK_ERR_DECODE;
    PQclear(r);
    return e;
}

/* A database without our version table must hold no table of ours. */
static hk_err hk_pg_check_foreign(hk_pg *d)
{
    int64_t n = 0;
    hk_err e = hk_pg_int(d,
                         "SELECT count(*) FROM information_schema.tables "
                         "WHERE table_schema = current_schema() AND "
                         "table_name IN ('keys', 'shares', 'sessions', "
                         "'setup', 'audit', 'buckets')",
                         NULL, &n);

    if (e == HK_OK && n != 0) {
        hk_db_set_err(&d->base, "not a halfkey database (foreign tables)");
        e = HK_ERR_CONFIG;
    }
    return e;
}

static hk_err hk_pg_apply(hk_pg *d, int from)
{
    hk_pgp p;
    hk_err e = HK_OK;
    int i;

    if (from == 0 && (e = hk_pg_check_foreign(d)) != HK_OK)
        return e;
    for (i = from; i < HK_PG_NMIGRATIONS && e == HK_OK; i++) {
        memset(&p, 0, sizeof(p));
        hk_pgp_i64(&p, i + 1);
        if ((e = hk_pg_script(d, hk_pg_migrations[i])) == HK_OK)
            e = hk_pg_run(d, "INSERT INTO schema_version (version) VALUES ($1)",
                          &p, NULL);
    }
    return e;
}

static hk_err hk_pg_migrate(hk_pg *d)
{
    int64_t v = 0;
    hk_err e;

    if ((e = hk_pg_begin(d)) != HK_OK)
        return e;
    if ((e = hk_pg_run(d,
                       "SELECT pg_advisory_xact_lock(" HK_PG_LOCK_MIGRATE ")",
                       NULL, NULL)) != HK_OK ||
        (e = hk_pg_int(d,
                       "SELECT count(*) FROM information_schema.tables "
                       "WHERE table_schema = current_schema() AND "
                       "table_name = 'schema_version'",
                       NULL, &v)) != HK_OK)
        return hk_pg_end(d, e);
    if (v == 0 && (e = hk_pg_run(d,
                                 "CREATE TABLE schema_version (version "
                                 "BIGINT PRIMARY KEY)",
                                 NULL, NULL)) != HK_OK)
        return hk_pg_end(d, e);
    if ((e = hk_pg_int(d,
                       "SELECT coalesce(max(version), 0)::bigint FROM "
                       "schema_version",
                       NULL, &v)) != HK_OK)
        return hk_pg_end(d, e);
    if (v < 0 || v > HK_PG_NMIGRATIONS) {
        hk_db_set_err(&d->base,
                      "database schema version %lld is not one this "
                      "server knows (up to %d)",
                      (long long)v, HK_PG_NMIGRATIONS);
        return hk_pg_end(d, HK_ERR_VERSION);
    }
    return hk_pg_end(d, hk_pg_apply(d, (int)v));
}

static void hk_pg_close(hk_db *db)
{
    hk_pg *d = (hk_pg *)db;

    PQfinish(d->conn);
    OPENSSL_free(d);
}

static hk_err hk_pg_schema_version(hk_db *db, int *version)
{
    int64_t v = 0;
    hk_err e;

    hk_pg_revive((hk_pg *)db);
    e = hk_pg_int((hk_pg *)db,
                  "SELECT coalesce(max(version), 0)::bigint FROM "
                  "schema_version",
                  NULL, &v);
    *version = (int)v;
    return e;
}

/* --- keys ----------------------------------------------------------------- */

static hk_err hk_pg_share_insert(hk_pg *d, const unsigned char *kid,
                                 unsigned long epoch, hk_db_share_state state,
                                 const unsigned char *sealed, size_t len)
{
    hk_pgp p = {0};

    hk_pgp_blob(&p, kid, HK_ID_LEN);
    hk_pgp_i64(&p, (int64_t)epoch);
    hk_pgp_text(&p, hk_db_share_state_name(state));
    hk_pgp_blob(&p, sealed, len);
    return hk_pg_run(d,
                     "INSERT INTO shares (kid, epoch, state, sealed) VALUES "
                     "($1, $2, $3, $4)",
                     &p, NULL);
}

static hk_err hk_pg_key_create(hk_db *db, const hk_db_key *k,
                               unsigned long epoch, const unsigned char *first,
                               size_t firstlen)
{
    hk_pg *d = (hk_pg *)db;
    hk_pgp p = {0};
    hk_err e;

    hk_pgp_blob(&p, k->kid, HK_ID_LEN);
    hk_pgp_text(&p, k->owner);
    hk_pgp_text(&p, hk_curve_name(k->curve));
    hk_pgp_blob(&p, k->pub.b, HK_POINT_LEN);
    hk_pgp_i64(&p, k->created);
    hk_pgp_text(&p, k->label[0] != '\0' ? k->label : NULL);
    hk_pgp_i64(&p, k->pending != 0);
    if ((e = hk_pg_begin(d)) != HK_OK)
        return e;
    e = hk_pg_run(d,
                  "INSERT INTO keys (kid, owner, curve, pubkey, created, "
                  "disabled, label, pending) VALUES ($1, $2, $3, $4, $5, 0, "
                  "$6, $7)",
                  &p, NULL);
    if (e == HK_OK && first != NULL)
        e = hk_pg_share_insert(d, k->kid, epoch, HK_DB_SHARE_ACTIVE, first,
                               firstlen);
    return hk_pg_end(d, e);
}

static hk_err hk_pg_key_get(hk_db *db, const unsigned char *kid,
                            const char *owner, hk_db_key *out)
{
    hk_pg *d = (hk_pg *)db;
    PGresult *r = NULL;
    hk_pgp p = {0};
    hk_err e;

    hk_pgp_blob(&p, kid, HK_ID_LEN);
    hk_pgp_text(&p, owner);
    e = hk_pg_once(d,
                   "SELECT " HK_PG_KEY_COLS " FROM keys WHERE kid = $1 AND "
                   "($2::text IS NULL OR owner = $2)",
                   &p, &r);
    if (e == HK_OK)
        e = PQntuples(r) == 1 ? hk_pg_read_key(r, 0, out) : HK_ERR_NOT_FOUND;
    PQclear(r);
    return e;
}

static hk_err hk_pg_key_list(hk_db *db, const char *owner,
                             int64_t pending_before, hk_db_key **keys,
                             size_t *n)
{
    hk_pg *d = (hk_pg *)db;
    PGresult *r = NULL;
    hk_pgp p = {0};
    int i, rows;
    hk_err e;

    hk_pgp_text(&p, owner);
    hk_pgp_i64(&p, pending_before);
    if ((e = hk_pg_once(d,
                        "SELECT " HK_PG_KEY_COLS " FROM keys WHERE "
                        "($1::text IS NULL OR owner = $1) AND ($2::bigint < 0 "
                        "OR (pending = 1 AND created < $2)) ORDER BY created, "
                        "kid",
                        &p, &r)) != HK_OK)
        return e;
    rows = PQntuples(r);
    if (rows > 0 &&
        (*keys = OPENSSL_zalloc((size_t)rows * sizeof(**keys))) == NULL)
        e = HK_ERR_NOMEM;
    for (i = 0; i < rows && e == HK_OK; i++)
        e = hk_pg_read_key(r, i, &(*keys)[i]);
    PQclear(r);
    if (e != HK_OK) {
        OPENSSL_free(*keys);
        *keys = NULL;
        rows = 0;
    }
    *n = (size_t)rows;
    return e;
}

/* An UPDATE or DELETE of one key: HK_ERR_NOT_FOUND if no row changed. */
static hk_err hk_pg_key_change(hk_pg *d, const char *sql, const hk_pgp *p)
{
    int changes = 0;
    hk_err e;

    hk_pg_revive(d);
    if ((e = hk_pg_run(d, sql, p, &changes)) == HK_OK && changes == 0)
        e = HK_ERR_NOT_FOUND;
    return e;
}

static hk_err hk_pg_key_set_limits(hk_db *db, const unsigned char *kid,
                                   unsigned max_hour, unsigned max_day)
{
    hk_pgp p = {0};

    hk_pgp_blob(&p, kid, HK_ID_LEN);
    hk_pgp_i64(&p, max_hour);
    hk_pgp_i64(&p, max_day);
    return hk_pg_key_change((hk_pg *)db,
                            "UPDATE keys SET max_hour = $2, max_day = $3 "
                            "WHERE kid = $1",
                            &p);
}

static hk_err hk_pg_key_delete(hk_db *db, const unsigned char *kid,
                               const char *owner, int only_pending)
{
    hk_pgp p = {0};

    hk_pgp_blob(&p, kid, HK_ID_LEN);
    hk_pgp_text(&p, owner);
    hk_pgp_i64(&p, only_pending != 0);
    return hk_pg_key_change((hk_pg *)db,
                            "DELETE FROM keys WHERE kid = $1 AND ($2::text "
                            "IS NULL OR owner = $2) AND pending >= $3",
                            &p);
}

static hk_err hk_pg_key_confirm(hk_db *db, const unsigned char *kid)
{
    hk_pgp p = {0};

    hk_pgp_blob(&p, kid, HK_ID_LEN);
    return hk_pg_key_change((hk_pg *)db,
                            "UPDATE keys SET pending = 0 WHERE kid = $1", &p);
}

static hk_err hk_pg_key_set_disabled(hk_db *db, const unsigned char *kid,
                                     int disabled)
{
    hk_pgp p = {0};

    hk_pgp_blob(&p, kid, HK_ID_LEN);
    hk_pgp_i64(&p, disabled);
    return hk_pg_key_change((hk_pg *)db,
                            "UPDATE keys SET disabled = $2 WHERE kid = $1", &p);
}

/* --- shares --------------------------------------------------------------- */

/* Reads the share row of (kid, epoch), or the active one for epoch 0.
 * sealed NULL: the blob is checked but not copied. */
static hk_err hk_pg_share_row(hk_pg *d, const unsigned char *kid,
                              unsigned long epoch, unsigned long *epoch_out,
                              hk_db_share_state *state, unsigned char **sealed,
                              size_t *len)
{
    char name[HK_PG_NAME_MAX + 1];
    unsigned char *blob = NULL;
    PGresult *r = NULL;
    hk_pgp p = {0};
    size_t blen = 0;
    int64_t ep = 0;
    hk_err e;

    hk_pgp_blob(&p, kid, HK_ID_LEN);
    hk_pgp_i64(&p, (int64_t)epoch);
    if ((e = hk_pg_exec(d,
                        "SELECT epoch, state, sealed FROM shares WHERE kid "
                        "= $1 AND (CASE WHEN $2 = 0 THEN state = 'active' "
                        "ELSE epoch = $2 END)",
                        &p, &r)) != HK_OK)
        return e;
    e = HK_ERR_NOT_FOUND;
    if (PQntuples(r) != 1)
        goto done;
    if ((e = hk_pgc_int(r, 0, 0, 1, (int64_t)HK_DB_EPOCH_MAX, &ep)) != HK_OK ||
        (e = hk_pgc_text(r, 0, 1, name, HK_PG_NAME_MAX)) != HK_OK ||
        (e = hk_db_share_state_from_name(name, state)) != HK_OK ||
        (e = hk_pgc_dup(r, 0, 2, HK_SEAL_OVERHEAD + 1, HK_SEAL_MAX, &blob,
                        &blen)) != HK_OK)
        goto done;
    *epoch_out = (unsigned long)ep;
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
    PQclear(r);
    return e;
}

/* Locks the key row for the transaction: share changes of one key run one
 * at a time on every node. HK_ERR_NOT_FOUND if absent. */
static hk_err hk_pg_lock_key(hk_pg *d, const unsigned char *kid)
{
    PGresult *r = NULL;
    hk_pgp p = {0};
    hk_err e;

    hk_pgp_blob(&p, kid, HK_ID_LEN);
    e = hk_pg_exec(d, "SELECT 1 FROM keys WHERE kid = $1 FOR UPDATE", &p, &r);
    if (e == HK_OK && PQntuples(r) != 1)
        e = HK_ERR_NOT_FOUND;
    PQclear(r);
    return e;
}

/* Runs `sql` with $1 = kid and $2 = epoch. */
static hk_err hk_pg_kid_stmt(hk_pg *d, const char *sql,
                             const unsigned char *kid, unsigned long epoch)
{
    hk_pgp p = {0};

    hk_pgp_blob(&p, kid, HK_ID_LEN);
    hk_pgp_i64(&p, (int64_t)epoch);
    return hk_pg_run(d, sql, &p, NULL);
}

/* The checks of a share put, with the key row locked. */
static hk_err hk_pg_share_put_check(hk_pg *d, const unsigned char *kid,
                                    unsigned long epoch,
                                    hk_db_share_state state)
{
    hk_db_share_state st;
    unsigned long active = 0;
    hk_err e;

    if ((e = hk_pg_lock_key(d, kid)) != HK_OK)
        return e;
    e = hk_pg_share_row(d, kid, 0, &active, &st, NULL, NULL);
    return hk_db_share_put_rule(e, active, state, epoch);
}

static hk_err hk_pg_share_put(hk_db *db, const unsigned char *kid,
                              unsigned long epoch, hk_db_share_state state,
                              const unsigned char *sealed, size_t len)
{
    hk_pg *d = (hk_pg *)db;
    hk_err e;

    if ((e = hk_pg_begin(d)) != HK_OK)
        return e;
    e = hk_pg_share_put_check(d, kid, epoch, state);
    if (e == HK_OK && state == HK_DB_SHARE_PENDING)
        e = hk_pg_kid_stmt(d,
                           "DELETE FROM shares WHERE kid = $1 AND state = "
                           "'pending' AND $2 > 0",
                           kid, epoch);
    if (e == HK_OK)
        e = hk_pg_share_insert(d, kid, epoch, state, sealed, len);
    return hk_pg_end(d, e);
}

static hk_err hk_pg_share_promote(hk_db *db, const unsigned char *kid,
                                  unsigned long epoch)
{
    hk_pg *d = (hk_pg *)db;
    hk_db_share_state state = HK_DB_SHARE_ACTIVE;
    unsigned long ep = 0;
    hk_err e;

    if ((e = hk_pg_begin(d)) != HK_OK)
        return e;
    if ((e = hk_pg_lock_key(d, kid)) == HK_OK)
        e = hk_pg_share_row(d, kid, epoch, &ep, &state, NULL, NULL);
    if (e == HK_OK && state == HK_DB_SHARE_PENDING)
        e = hk_pg_kid_stmt(d,
                           "DELETE FROM shares WHERE kid = $1 AND state = "
                           "'active' AND $2 > 0",
                           kid, epoch);
    if (e == HK_OK && state == HK_DB_SHARE_PENDING)
        e = hk_pg_kid_stmt(d,
                           "UPDATE shares SET state = 'active' WHERE kid = "
                           "$1 AND epoch = $2",
                           kid, epoch);
    return hk_pg_end(d, e);
}

static hk_err hk_pg_share_get(hk_db *db, const unsigned char *kid,
                              unsigned long epoch, unsigned long *epoch_out,
                              hk_db_share_state *state, unsigned char **sealed,
                              size_t *len)
{
    hk_pg_revive((hk_pg *)db);
    return hk_pg_share_row((hk_pg *)db, kid, epoch, epoch_out, state, sealed,
                           len);
}

/* --- sessions ------------------------------------------------------------- */

static hk_err hk_pg_session_create(hk_db *db, const hk_db_session *s)
{
    hk_pgp p = {0};

    hk_pgp_blob(&p, s->sid, HK_ID_LEN);
    hk_pgp_text(&p, s->owner);
    hk_pgp_text(&p, hk_db_op_name(s->op));
    hk_pgp_opt_id(&p, s->has_kid, s->kid);
    hk_pgp_i64(&p, s->created);
    hk_pgp_text(&p, hk_db_sess_state_name(s->state));
    hk_pgp_text(&p, s->curve != 0 ? hk_curve_name(s->curve) : NULL);
    return hk_pg_once((hk_pg *)db,
                      "INSERT INTO sessions (" HK_PG_SESSION_COLS ") VALUES "
                      "($1, $2, $3, $4, $5, $5, $6, $7)",
                      &p, NULL);
}

/* $1 = sid, $2 = the expiry cutoff now - idle, $3 = now. */
static void hk_pgp_live(hk_pgp *p, const unsigned char *sid, int64_t now,
                        int64_t idle)
{
    hk_pgp_blob(p, sid, HK_ID_LEN);
    hk_pgp_i64(p, now - idle);
    hk_pgp_i64(p, now);
}

static hk_err hk_pg_session_touch(hk_db *db, const unsigned char *sid,
                                  int64_t now, int64_t idle)
{
    hk_pg *d = (hk_pg *)db;
    hk_pgp p = {0};
    int changes = 0;
    hk_err e;

    hk_pgp_live(&p, sid, now, idle);
    hk_pg_revive(d);
    if ((e = hk_pg_run(d,
                       "UPDATE sessions SET last_seen = greatest(last_seen, "
                       "$3) WHERE sid = $1 AND last_seen > $2",
                       &p, &changes)) == HK_OK &&
        changes == 0)
        e = HK_ERR_SESSION;
    return e;
}

static hk_err hk_pg_session_get(hk_db *db, const unsigned char *sid,
                                int64_t now, int64_t idle, hk_db_session *out)
{
    PGresult *r = NULL;
    hk_pgp p = {0};
    hk_err e;

    hk_pgp_live(&p, sid, now, idle);
    e = hk_pg_once((hk_pg *)db,
                   "SELECT " HK_PG_SESSION_COLS " FROM sessions WHERE sid = "
                   "$1 AND last_seen > $2 AND $3 >= 0",
                   &p, &r);
    if (e == HK_OK)
        e = PQntuples(r) == 1 ? hk_pg_read_session(r, 0, out) : HK_ERR_SESSION;
    PQclear(r);
    if (e != HK_OK)
        memset(out, 0, sizeof(*out));
    return e;
}

static hk_err hk_pg_session_set_state(hk_db *db, const unsigned char *sid,
                                      hk_db_sess_state state, int64_t now,
                                      int64_t idle)
{
    hk_pg *d = (hk_pg *)db;
    hk_db_sess_state from[2] = {0, 0};
    hk_db_session s;
    hk_pgp p = {0};
    int changes = 0;
    hk_err e;

    (void)hk_db_sess_from_states(state, from);
    hk_pgp_live(&p, sid, now, idle);
    hk_pgp_text(&p, hk_db_sess_state_name(state));
    hk_pgp_text(&p, hk_db_sess_state_name(from[0]));
    hk_pgp_text(&p, hk_db_sess_state_name(from[1]));
    hk_pgp_text(&p, db->node[0] != 0 ? db->node : NULL);
    hk_pg_revive(d);
    /* one statement: the row lock makes the claim atomic across nodes; a
     * claim records the claiming node (NULL if none was set) */
    e = hk_pg_run(d,
                  "UPDATE sessions SET state = $4, last_seen = "
                  "greatest(last_seen, $3), node = CASE WHEN $4 = 'running' "
                  "THEN NULLIF($7, '') ELSE node END WHERE sid = $1 AND "
                  "last_seen > $2 AND state IN ($5, $6)",
                  &p, &changes);
    if (e == HK_OK && changes == 0) {
        /* Not moved: tell a dead session from a forbidden move. */
        e = hk_pg_session_get(db, sid, now, idle, &s);
        if (e == HK_OK)
            e = HK_ERR_STATE;
    }
    return e;
}

static hk_err hk_pg_session_others(hk_db *db, const unsigned char *sid,
                                   int64_t now, int64_t idle, int64_t *n)
{
    hk_pgp p = {0};

    hk_pgp_blob(&p, sid, HK_ID_LEN);
    hk_pgp_i64(&p, now - idle);
    hk_pg_revive((hk_pg *)db);
    return hk_pg_int((hk_pg *)db,
                     "SELECT count(*) FROM sessions o JOIN sessions s ON "
                     "o.kid = s.kid AND o.op = s.op AND o.sid <> s.sid WHERE "
                     "s.sid = $1 AND o.state = 'running' AND o.last_seen > $2",
                     &p, n);
}

static hk_err hk_pg_session_sweep(hk_db *db, int64_t now, int64_t idle,
                                  size_t *deleted)
{
    hk_pgp p = {0};
    int changes = 0;
    hk_err e;

    hk_pgp_i64(&p, now - idle);
    hk_pg_revive((hk_pg *)db);
    e = hk_pg_run((hk_pg *)db, "DELETE FROM sessions WHERE last_seen <= $1", &p,
                  &changes);
    *deleted = e == HK_OK ? (size_t)changes : 0;
    return e;
}

/* --- setup ---------------------------------------------------------------- */

static hk_err hk_pg_setup_put(hk_db *db, const unsigned char *sealed,
                              size_t slen, const unsigned char *pub,
                              size_t plen, int64_t now)
{
    hk_pgp p = {0};

    hk_pgp_blob(&p, sealed, slen);
    hk_pgp_blob(&p, pub, plen);
    hk_pgp_i64(&p, now);
    return hk_pg_once((hk_pg *)db,
                      "INSERT INTO setup (id, sealed, public, created) "
                      "VALUES (1, $1, $2, $3)",
                      &p, NULL);
}

static hk_err hk_pg_setup_get(hk_db *db, unsigned char **sealed, size_t *slen,
                              unsigned char **pub, size_t *plen)
{
    PGresult *r = NULL;
    hk_err e;

    e = hk_pg_once((hk_pg *)db, "SELECT sealed, public FROM setup WHERE id = 1",
                   NULL, &r);
    if (e == HK_OK && PQntuples(r) != 1)
        e = HK_ERR_NOT_FOUND;
    if (e == HK_OK && (e = hk_pgc_dup(r, 0, 0, HK_SEAL_OVERHEAD + 1,
                                      HK_SEAL_MAX, sealed, slen)) == HK_OK)
        e = hk_pgc_dup(r, 0, 1, 1, HK_RECORD_MAX, pub, plen);
    PQclear(r);
    if (e != HK_OK) {
        OPENSSL_free(*sealed);
        *sealed = NULL;
        *slen = 0;
    }
    return e;
}

/* --- audit log ------------------------------------------------------------ */

static hk_err hk_pg_audit_insert(hk_pg *d, const hk_audit_rec *a)
{
    hk_dbp in = {0};
    hk_pgp p = {0};

    hk_dbp_audit(&in, a);
    hk_pgp_from(&p, &in);
    return hk_pg_run(d,
                     "INSERT INTO audit (" HK_PG_AUDIT_COLS ") VALUES ($1, "
                     "$2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                     &p, NULL);
}

static hk_err hk_pg_audit_append(hk_db *db, hk_audit_rec *rec)
{
    hk_pg *d = (hk_pg *)db;
    unsigned char last[HK_AUDIT_HASH_LEN];
    PGresult *r = NULL;
    int64_t seq = 0;
    hk_err e;

    if ((e = hk_pg_begin(d)) != HK_OK)
        return e;
    if ((e = hk_pg_run(d, "SELECT pg_advisory_xact_lock(" HK_PG_LOCK_AUDIT ")",
                       NULL, NULL)) != HK_OK ||
        (e = hk_pg_exec(d,
                        "SELECT seq, hash FROM audit ORDER BY seq DESC "
                        "LIMIT 1",
                        NULL, &r)) != HK_OK)
        return hk_pg_end(d, e);
    if (PQntuples(r) == 1 &&
        (e = hk_pgc_int(r, 0, 0, 1, INT64_MAX, &seq)) == HK_OK)
        e = hk_pgc_fixed(r, 0, 1, last, HK_AUDIT_HASH_LEN);
    PQclear(r);
    if (e == HK_OK) {
        hk_audit_link(rec, seq, seq > 0 ? last : NULL);
        e = hk_pg_audit_insert(d, rec);
    }
    return hk_pg_end(d, e);
}

#define HK_PG_AUDIT_PAGE "1000"

static hk_err hk_pg_audit_scan(hk_db *db, int64_t from,
                               hk_err (*fn)(void *ctx, const hk_audit_rec *r),
                               void *ctx)
{
    hk_pg *d = (hk_pg *)db;
    hk_audit_rec a;
    PGresult *r = NULL;
    hk_pgp p;
    int i, rows = 1;
    hk_err e = HK_OK;

    /* pages, so a long log is never held in memory at once */
    while (e == HK_OK && rows > 0) {
        memset(&p, 0, sizeof(p));
        hk_pgp_i64(&p, from);
        if ((e = hk_pg_once(d,
                            "SELECT " HK_PG_AUDIT_COLS " FROM audit WHERE "
                            "seq >= $1 ORDER BY seq LIMIT " HK_PG_AUDIT_PAGE,
                            &p, &r)) != HK_OK)
            break;
        rows = PQntuples(r);
        for (i = 0; i < rows && e == HK_OK; i++)
            if ((e = hk_pg_read_audit(r, i, &a)) == HK_OK &&
                (e = fn(ctx, &a)) == HK_OK)
                from = a.seq + 1;
        PQclear(r);
    }
    return e;
}

static hk_err hk_pg_audit_count(hk_db *db, const unsigned char *kid,
                                const char *event, const char *outcome,
                                int64_t since, int64_t *n)
{
    hk_pgp p = {0};

    hk_pgp_blob(&p, kid, HK_ID_LEN);
    hk_pgp_text(&p, event);
    hk_pgp_text(&p, outcome);
    hk_pgp_i64(&p, since);
    hk_pg_revive((hk_pg *)db);
    return hk_pg_int((hk_pg *)db,
                     "SELECT count(*) FROM audit WHERE kid = $1 AND event = "
                     "$2 AND outcome = $3 AND time >= $4",
                     &p, n);
}

/* --- rate buckets --------------------------------------------------------- */

static hk_err hk_pg_bucket_take(hk_db *db, const char *sub, double rate,
                                double burst, double now, int *ok,
                                double *retry)
{
    hk_pg *d = (hk_pg *)db;
    double tokens = 0, updated = 0, left = 0;
    PGresult *r = NULL;
    hk_pgp p = {0}, q = {0};
    hk_err e;

    hk_pgp_text(&p, sub);
    hk_pgp_f64(&p, burst);
    hk_pgp_f64(&p, now);
    if ((e = hk_pg_begin(d)) != HK_OK)
        return e;
    /* the row exists first, so the lock below always has a row to take */
    if ((e = hk_pg_run(d,
                       "INSERT INTO buckets (subject, tokens, updated) "
                       "VALUES ($1, $2, $3) ON CONFLICT (subject) DO NOTHING",
                       &p, NULL)) != HK_OK)
        return hk_pg_end(d, e);
    p.n = 1;
    if ((e = hk_pg_exec(d,
                        "SELECT tokens, updated FROM buckets WHERE subject "
                        "= $1 FOR UPDATE",
                        &p, &r)) == HK_OK &&
        (e = PQntuples(r) == 1 ? HK_OK : HK_ERR_DECODE) == HK_OK &&
        (e = hk_pgc_f64(r, 0, 0, &tokens)) == HK_OK)
        e = hk_pgc_f64(r, 0, 1, &updated);
    PQclear(r);
    if (e != HK_OK)
        return hk_pg_end(d, e);
    hk_bucket_step(1, tokens, updated, rate, burst, now, &left, ok, retry);
    hk_pgp_text(&q, sub);
    hk_pgp_f64(&q, left);
    hk_pgp_f64(&q, now);
    e = hk_pg_run(d,
                  "UPDATE buckets SET tokens = $2, updated = $3 WHERE "
                  "subject = $1",
                  &q, NULL);
    return hk_pg_end(d, e);
}

/* --- re-sealing ----------------------------------------------------------- */

static hk_err hk_pg_read_ref(const PGresult *r, int row, hk_db_share_ref *ref)
{
    char name[HK_PG_NAME_MAX + 1];
    int64_t ep = 0;
    hk_err e;

    memset(ref, 0, sizeof(*ref));
    if ((e = hk_pgc_fixed(r, row, 0, ref->kid, HK_ID_LEN)) != HK_OK ||
        (e = hk_pgc_text(r, row, 1, ref->owner, HK_SUB_MAX)) != HK_OK ||
        (e = hk_pgc_int(r, row, 2, 1, (int64_t)HK_DB_EPOCH_MAX, &ep)) !=
            HK_OK ||
        (e = hk_pgc_text(r, row, 3, name, HK_PG_NAME_MAX)) != HK_OK)
        return e;
    ref->epoch = (unsigned long)ep;
    return hk_db_share_state_from_name(name, &ref->state);
}

static hk_err hk_pg_share_list_all(hk_db *db, const unsigned char *after_kid,
                                   unsigned long after_epoch,
                                   hk_db_share_ref *refs, size_t max, size_t *n)
{
    PGresult *r = NULL;
    hk_pgp p = {0};
    int i, rows;
    hk_err e;

    /* bytea compares as unsigned bytes, as the contract wants */
    hk_pgp_opt_id(&p, after_kid != NULL, after_kid);
    hk_pgp_i64(&p, (int64_t)after_epoch);
    hk_pgp_i64(&p, (int64_t)max);
    e = hk_pg_once((hk_pg *)db,
                   "SELECT s.kid, k.owner, s.epoch, s.state FROM shares s "
                   "JOIN keys k ON k.kid = s.kid WHERE $1::bytea IS NULL OR "
                   "(s.kid, s.epoch) > ($1, $2) ORDER BY s.kid, s.epoch "
                   "LIMIT $3",
                   &p, &r);
    *n = 0;
    if (e != HK_OK)
        return e;
    rows = PQntuples(r);
    for (i = 0; i < rows && (size_t)i < max && e == HK_OK; i++)
        if ((e = hk_pg_read_ref(r, i, &refs[i])) == HK_OK)
            *n = (size_t)i + 1;
    PQclear(r);
    if (e != HK_OK)
        *n = 0;
    return e;
}

/* A compare-and-swap UPDATE ($1 old, $2 new, then p's own parameters);
 * if it changed nothing, `exists` (with q) tells a changed blob
 * (HK_ERR_STATE) from a missing row (HK_ERR_NOT_FOUND). */
static hk_err hk_pg_cas(hk_pg *d, const char *update, const hk_pgp *p,
                        const char *exists, const hk_pgp *q)
{
    PGresult *r = NULL;
    int changes = 0;
    hk_err e;

    hk_pg_revive(d);
    if ((e = hk_pg_run(d, update, p, &changes)) != HK_OK || changes == 1)
        return e;
    if ((e = hk_pg_exec(d, exists, q, &r)) == HK_OK)
        e = PQntuples(r) > 0 ? HK_ERR_STATE : HK_ERR_NOT_FOUND;
    PQclear(r);
    return e;
}

static hk_err hk_pg_share_replace_sealed(hk_db *db, const unsigned char *kid,
                                         unsigned long epoch,
                                         const unsigned char *old,
                                         size_t oldlen,
                                         const unsigned char *nblob,
                                         size_t nlen)
{
    hk_pgp p = {0}, q = {0};

    hk_pgp_blob(&p, old, oldlen);
    hk_pgp_blob(&p, nblob, nlen);
    hk_pgp_blob(&p, kid, HK_ID_LEN);
    hk_pgp_i64(&p, (int64_t)epoch);
    hk_pgp_blob(&q, kid, HK_ID_LEN);
    hk_pgp_i64(&q, (int64_t)epoch);
    return hk_pg_cas((hk_pg *)db,
                     "UPDATE shares SET sealed = $2 WHERE kid = $3 AND "
                     "epoch = $4 AND sealed = $1",
                     &p, "SELECT 1 FROM shares WHERE kid = $1 AND epoch = $2",
                     &q);
}

static hk_err hk_pg_setup_replace_sealed(hk_db *db, const unsigned char *old,
                                         size_t oldlen,
                                         const unsigned char *nblob,
                                         size_t nlen)
{
    hk_pgp p = {0};

    hk_pgp_blob(&p, old, oldlen);
    hk_pgp_blob(&p, nblob, nlen);
    return hk_pg_cas((hk_pg *)db,
                     "UPDATE setup SET sealed = $2 WHERE id = 1 AND sealed = "
                     "$1",
                     &p, "SELECT 1 FROM setup WHERE id = 1", NULL);
}

static hk_err hk_pg_session_fail_node(hk_db *db, const char *node, size_t *n)
{
    hk_pg *d = (hk_pg *)db;
    hk_pgp p = {0};
    int changes = 0;
    hk_err e;

    hk_pgp_text(&p, node);
    hk_pg_revive(d);
    e = hk_pg_run(d,
                  "UPDATE sessions SET state = 'failed' WHERE state = "
                  "'running' AND node = $1",
                  &p, &changes);
    *n = e == HK_OK ? (size_t)changes : 0;
    return e;
}

static hk_err hk_pg_write_probe(hk_db *db, int64_t now)
{
    hk_pg *d = (hk_pg *)db;
    hk_pgp p = {0};

    hk_pgp_text(&p, db->node[0] != 0 ? db->node : "-");
    hk_pgp_i64(&p, now);
    hk_pg_revive(d);
    return hk_pg_run(d,
                     "INSERT INTO health (node, probed) VALUES ($1, $2) ON "
                     "CONFLICT (node) DO UPDATE SET probed = excluded.probed",
                     &p, NULL);
}

static const hk_db_ops hk_pg_ops = {
    "postgresql",
    hk_pg_close,
    hk_pg_schema_version,
    hk_pg_key_create,
    hk_pg_key_get,
    hk_pg_key_list,
    hk_pg_key_confirm,
    hk_pg_key_set_limits,
    hk_pg_key_delete,
    hk_pg_key_set_disabled,
    hk_pg_share_put,
    hk_pg_share_promote,
    hk_pg_share_get,
    hk_pg_session_create,
    hk_pg_session_touch,
    hk_pg_session_get,
    hk_pg_session_set_state,
    hk_pg_session_sweep,
    hk_pg_session_others,
    hk_pg_setup_put,
    hk_pg_setup_get,
    hk_pg_audit_append,
    hk_pg_audit_scan,
    hk_pg_audit_count,
    hk_pg_bucket_take,
    hk_pg_share_list_all,
    hk_pg_share_replace_sealed,
    hk_pg_setup_replace_sealed,
    hk_pg_session_fail_node,
    hk_pg_write_probe,
};

hk_err hk_db_open_pg(const char *conninfo, hk_db **out, char *why,
                     size_t whylen)
{
    hk_pg *d;
    hk_err e = HK_ERR_IO;

    if (conninfo == NULL || *conninfo == '\0' || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if ((d = OPENSSL_zalloc(sizeof(*d))) == NULL)
        return HK_ERR_NOMEM;
    d->base.ops = &hk_pg_ops;
    d->conn = PQconnectdb(conninfo);
    if (d->conn == NULL || PQstatus(d->conn) != CONNECTION_OK) {
        hk_db_set_err(&d->base, "cannot connect: %.*s",
                      (int)strcspn(PQerrorMessage(d->conn), "\n"),
                      PQerrorMessage(d->conn));
        goto fail;
    }
    PQsetNoticeProcessor(d->conn, hk_pg_quiet, NULL);
    if ((e = hk_pg_migrate(d)) != HK_OK)
        goto fail;
    *out = &d->base;
    return HK_OK;
fail:
    /* the connection string may hold a password: never echo it */
    hk_why(why, whylen, "database (postgresql): %s", d->base.err);
    hk_pg_close(&d->base);
    return e;
}
