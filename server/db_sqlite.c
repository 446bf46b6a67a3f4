/* SQLite back end of the storage interface (see db.h and db_impl.h).
 *
 * Every statement is prepared with bound parameters (no SQL is built from
 * data); the constant DDL of the migrations and the PRAGMAs, which take no
 * data, run with sqlite3_exec. Writes of more than one statement run in a
 * BEGIN IMMEDIATE transaction (the write lock is taken first, so two
 * connections never deadlock upgrading a read lock). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <sqlite3.h>

#include "mpc/codec.h"
#include "server/db_impl.h"
#include "server/why.h"

#define HK_SQ_APP_ID 0x686b6462 /* "hkdb" */
#define HK_SQ_NAME_MAX 15       /* longest stored enum or curve name */

typedef struct {
    hk_db base; /* first: a hk_db * is a hk_sq * */
    sqlite3 *conn;
} hk_sq;

/* Migration i brings the schema from version i to i + 1. Never edit one
 * that has shipped: append a new one. */
static const char *const hk_sq_migrations[] = {
    /* 1: initial schema (db.h) */
    "CREATE TABLE keys ("
    " kid BLOB PRIMARY KEY NOT NULL CHECK (length(kid) = 16),"
    " owner TEXT NOT NULL"
    "  CHECK (length(CAST(owner AS BLOB)) BETWEEN 1 AND 255),"
    " curve TEXT NOT NULL CHECK (curve IN ('secp256k1', 'p256')),"
    " pubkey BLOB NOT NULL CHECK (length(pubkey) = 33),"
    " created INTEGER NOT NULL,"
    " disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),"
    " label TEXT CHECK (label IS NULL OR"
    "  length(CAST(label AS BLOB)) BETWEEN 1 AND 128)"
    ") STRICT;"
    "CREATE INDEX keys_owner ON keys (owner, created);"
    "CREATE TABLE shares ("
    " kid BLOB NOT NULL REFERENCES keys (kid) ON DELETE CASCADE,"
    " epoch INTEGER NOT NULL CHECK (epoch BETWEEN 1 AND 4294967295),"
    " state TEXT NOT NULL CHECK (state IN ('active', 'pending')),"
    " sealed BLOB NOT NULL,"
    " PRIMARY KEY (kid, epoch),"
    " UNIQUE (kid, state)"
    ") STRICT;"
    "CREATE TABLE sessions ("
    " sid BLOB PRIMARY KEY NOT NULL CHECK (length(sid) = 16),"
    " owner TEXT NOT NULL"
    "  CHECK (length(CAST(owner AS BLOB)) BETWEEN 1 AND 255),"
    " op TEXT NOT NULL CHECK (op IN ('keygen', 'sign', 'refresh')),"
    " kid BLOB CHECK (kid IS NULL OR length(kid) = 16),"
    " created INTEGER NOT NULL,"
    " last_seen INTEGER NOT NULL,"
    " state TEXT NOT NULL"
    "  CHECK (state IN ('open', 'running', 'done', 'failed'))"
    ") STRICT;"
    "CREATE INDEX sessions_last_seen ON sessions (last_seen);"
    "CREATE TABLE setup ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " sealed BLOB NOT NULL,"
    " public BLOB NOT NULL,"
    " created INTEGER NOT NULL"
    ") STRICT;",
    /* 2: per-key limits, keygen curve, audit log, rate buckets (db.h) */
    "ALTER TABLE keys ADD COLUMN max_hour INTEGER NOT NULL DEFAULT 0"
    " CHECK (max_hour BETWEEN 0 AND 1000000);"
    "ALTER TABLE keys ADD COLUMN max_day INTEGER NOT NULL DEFAULT 0"
    " CHECK (max_day BETWEEN 0 AND 1000000);"
    "ALTER TABLE sessions ADD COLUMN curve TEXT"
    " CHECK (curve IS NULL OR curve IN ('secp256k1', 'p256'));"
    "CREATE TABLE audit ("
    " seq INTEGER PRIMARY KEY NOT NULL CHECK (seq >= 1),"
    " time INTEGER NOT NULL,"
    " node TEXT NOT NULL,"
    " subject TEXT NOT NULL,"
    " kid BLOB CHECK (kid IS NULL OR length(kid) = 16),"
    " sid BLOB CHECK (sid IS NULL OR length(sid) = 16),"
    " event TEXT NOT NULL,"
    " outcome TEXT NOT NULL,"
    " detail TEXT NOT NULL,"
    " digest BLOB NOT NULL CHECK (length(digest) <= 64),"
    " signature BLOB NOT NULL CHECK (length(signature) <= 72),"
    " prev BLOB NOT NULL CHECK (length(prev) = 32),"
    " hash BLOB NOT NULL CHECK (length(hash) = 32)"
    ") STRICT;"
    "CREATE INDEX audit_kid ON audit (kid, event, time);"
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;"
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;"
    "CREATE TABLE buckets ("
    " subject TEXT PRIMARY KEY NOT NULL,"
    " tokens REAL NOT NULL,"
    " updated REAL NOT NULL"
    ") STRICT;",
    /* 3: two-phase keygen; the node that claimed a session; health
     * probes (db.h) */
    "ALTER TABLE keys ADD COLUMN pending INTEGER NOT NULL DEFAULT 0"
    " CHECK (pending IN (0, 1));"
    "CREATE INDEX keys_pending ON keys (pending, created);"
    "ALTER TABLE sessions ADD COLUMN node TEXT;"
    "CREATE TABLE health ("
    " node TEXT PRIMARY KEY NOT NULL,"
    " probed INTEGER NOT NULL"
    ") STRICT;",
};

#define HK_SQ_NMIGRATIONS                                                      \
    ((int)(sizeof(hk_sq_migrations) / sizeof(hk_sq_migrations[0])))

_Static_assert(HK_SQ_NMIGRATIONS == HK_DB_SCHEMA_VERSION,
               "one migration per schema version");

#define HK_SQ_KEY_COLS                                                         \
    "kid, owner, curve, pubkey, created, disabled, label, max_hour, "          \
    "max_day, pending"
#define HK_SQ_SESSION_COLS                                                     \
    "sid, owner, op, kid, created, last_seen, state, curve"
#define HK_SQ_AUDIT_COLS                                                       \
    "seq, time, node, subject, kid, sid, event, outcome, detail, digest, "     \
    "signature, prev, hash"

/* --- plumbing ------------------------------------------------------------- */

/* Maps an SQLite result code to an hk_err, recording the message of any
 * failure on the handle. */
static hk_err hk_sq_err(hk_sq *d, int rc)
{
    if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE)
        return HK_OK;
    hk_db_set_err(&d->base, "sqlite: %s",
                  d->conn != NULL ? sqlite3_errmsg(d->conn)
                                  : sqlite3_errstr(rc));
    switch (rc) {
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_UNIQUE:
        return HK_ERR_EXISTS;
    case SQLITE_CONSTRAINT_FOREIGNKEY:
        return HK_ERR_NOT_FOUND;
    default:
        break;
    }
    switch (rc & 0xff) {
    case SQLITE_NOMEM:
        return HK_ERR_NOMEM;
    case SQLITE_TOOBIG:
        return HK_ERR_TOO_BIG;
    case SQLITE_CORRUPT:
        return HK_ERR_DECODE;
    case SQLITE_NOTADB:
        return HK_ERR_CONFIG;
    default:
        return HK_ERR_IO;
    }
}

static hk_err hk_sq_exec(hk_sq *d, const char *sql)
{
    return hk_sq_err(d, sqlite3_exec(d->conn, sql, NULL, NULL, NULL));
}

static hk_err hk_sq_prep(hk_sq *d, const char *sql, sqlite3_stmt **st)
{
    return hk_sq_err(d, sqlite3_prepare_v2(d->conn, sql, -1, st, NULL));
}

/* Steps once: *row is 1 for a row, 0 when done. */
static hk_err hk_sq_step(hk_sq *d, sqlite3_stmt *st, int *row)
{
    int rc = sqlite3_step(st);

    *row = rc == SQLITE_ROW;
    return hk_sq_err(d, rc);
}

/* Steps a statement that returns no row; *changes (may be NULL) the rows
 * it changed. */
static hk_err hk_sq_run(hk_sq *d, sqlite3_stmt *st, int *changes)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW)
        rc = SQLITE_MISUSE;
    if (changes != NULL)
        *changes = sqlite3_changes(d->conn);
    return hk_sq_err(d, rc);
}

static int hk_sq_bind_blob(sqlite3_stmt *st, int i, const void *p, size_t n)
{
    return sqlite3_bind_blob(st, i, p, (int)n, SQLITE_STATIC);
}

static int hk_sq_bind_text(sqlite3_stmt *st, int i, const char *s)
{
    return sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

static hk_err hk_sq_begin(hk_sq *d) { return hk_sq_exec(d, "BEGIN IMMEDIATE"); }

/* Commits if e is HK_OK, else rolls back; returns the outcome. */
static hk_err hk_sq_end(hk_sq *d, hk_err e)
{
    if (e == HK_OK)
        e = hk_sq_exec(d, "COMMIT");
    if (e != HK_OK && !sqlite3_get_autocommit(d->conn))
        (void)sqlite3_exec(d->conn, "ROLLBACK", NULL, NULL, NULL);
    return e;
}

static hk_err hk_sq_bind_all(hk_sq *d, sqlite3_stmt *st, const hk_dbp *p)
{
    int i, rc = SQLITE_OK;

    if (p->n >= HK_DBP_MAX)
        return HK_ERR_ARG;
    for (i = 0; i < p->n && rc == SQLITE_OK; i++) {
        switch (p->v[i].t) {
        case HK_DBP_BLOB:
            rc = hk_sq_bind_blob(st, i + 1, p->v[i].p, p->v[i].len);
            break;
        case HK_DBP_TEXT:
            rc = hk_sq_bind_text(st, i + 1, p->v[i].p);
            break;
        case HK_DBP_INT:
            rc = sqlite3_bind_int64(st, i + 1, p->v[i].i);
            break;
        case HK_DBP_REAL:
            rc = sqlite3_bind_double(st, i + 1, p->v[i].f);
            break;
        default:
            rc = sqlite3_bind_null(st, i + 1);
        }
    }
    return hk_sq_err(d, rc);
}

/* Prepares sql and binds p: *st to step and finalize. */
static hk_err hk_sq_prep_p(hk_sq *d, const char *sql, const hk_dbp *p,
                           sqlite3_stmt **st)
{
    hk_err e;

    if ((e = hk_sq_prep(d, sql, st)) == HK_OK &&
        (e = hk_sq_bind_all(d, *st, p)) != HK_OK) {
        sqlite3_finalize(*st);
        *st = NULL;
    }
    return e;
}

/* A statement without result rows; *changes (may be NULL) its count. */
static hk_err hk_sq_run_p(hk_sq *d, const char *sql, const hk_dbp *p,
                          int *changes)
{
    sqlite3_stmt *st = NULL;
    hk_err e;

    if ((e = hk_sq_prep_p(d, sql, p, &st)) == HK_OK)
        e = hk_sq_run(d, st, changes);
    sqlite3_finalize(st);
    return e;
}

/* An UPDATE or DELETE of one key: HK_ERR_NOT_FOUND if no row changed. */
static hk_err hk_sq_key_change(hk_sq *d, const char *sql, const hk_dbp *p)
{
    int changes = 0;
    hk_err e = hk_sq_run_p(d, sql, p, &changes);

    return e == HK_OK && changes == 0 ? HK_ERR_NOT_FOUND : e;
}

/* --- reading columns (type- and length-checked) -------------------------- */

/* A BLOB of exactly n bytes. */
static hk_err hk_col_fixed(sqlite3_stmt *st, int i, unsigned char *out,
                           size_t n)
{
    const void *p;

    if (sqlite3_column_type(st, i) != SQLITE_BLOB)
        return HK_ERR_DECODE;
    p = sqlite3_column_blob(st, i);
    if (p == NULL || sqlite3_column_bytes(st, i) != (int)n)
        return HK_ERR_DECODE;
    memcpy(out, p, n);
    return HK_OK;
}

/* A BLOB of min..max bytes, copied to a new buffer. */
static hk_err hk_col_dup(sqlite3_stmt *st, int i, size_t min, size_t max,
                         unsigned char **out, size_t *len)
{
    const void *p;
    int n;

    if (sqlite3_column_type(st, i) != SQLITE_BLOB)
        return HK_ERR_DECODE;
    p = sqlite3_column_blob(st, i);
    n = sqlite3_column_bytes(st, i);
    if (p == NULL || n < 0 || (size_t)n < min || (size_t)n > max)
        return HK_ERR_DECODE;
    if ((*out = OPENSSL_memdup(p, (size_t)n)) == NULL)
        return HK_ERR_NOMEM;
    *len = (size_t)n;
    return HK_OK;
}

/* TEXT of valid text (hk_db_text_ok) up to max bytes into out[max + 1]. */
static hk_err hk_col_text(sqlite3_stmt *st, int i, char *out, size_t max)
{
    const unsigned char *p;
    int n;

    if (sqlite3_column_type(st, i) != SQLITE_TEXT)
        return HK_ERR_DECODE;
    p = sqlite3_column_text(st, i);
    n = sqlite3_column_bytes(st, i);
    if (p == NULL || n < 1 || (size_t)n > max)
        return HK_ERR_DECODE;
    memcpy(out, p, (size_t)n);
    out[n] = '\0';
    return hk_db_text_ok(out, max) ? HK_OK : HK_ERR_DECODE;
}

/* An INTEGER in [lo, hi]. */
static hk_err hk_col_int(sqlite3_stmt *st, int i, int64_t lo, int64_t hi,
                         int64_t *out)
{
    if (sqlite3_column_type(st, i) != SQLITE_INTEGER)
        return HK_ERR_DECODE;
    *out = sqlite3_column_int64(st, i);
    return *out >= lo && *out <= hi ? HK_OK : HK_ERR_DECODE;
}

static hk_err hk_col_epoch(sqlite3_stmt *st, int i, unsigned long *out)
{
    int64_t v = 0;
    hk_err e = hk_col_int(st, i, 1, (int64_t)HK_DB_EPOCH_MAX, &v);

    *out = (unsigned long)v;
    return e;
}

/* A stored name (enum or curve) into a short buffer. */
static hk_err hk_col_name(sqlite3_stmt *st, int i, char out[HK_SQ_NAME_MAX + 1])
{
    return hk_col_text(st, i, out, HK_SQ_NAME_MAX);
}

static hk_err hk_sq_read_key(sqlite3_stmt *st, hk_db_key *k)
{
    char curve[HK_SQ_NAME_MAX + 1];
    int64_t disabled = 0, mh = 0, md = 0, pending = 0;
    hk_err e;

    memset(k, 0, sizeof(*k));
    if ((e = hk_col_int(st, 9, 0, 1, &pending)) != HK_OK ||
        (e = hk_col_fixed(st, 0, k->kid, HK_ID_LEN)) != HK_OK ||
        (e = hk_col_text(st, 1, k->owner, HK_SUB_MAX)) != HK_OK ||
        (e = hk_col_name(st, 2, curve)) != HK_OK ||
        (e = hk_col_fixed(st, 3, k->pub.b, HK_POINT_LEN)) != HK_OK ||
        (e = hk_col_int(st, 4, 0, INT64_MAX, &k->created)) != HK_OK ||
        (e = hk_col_int(st, 5, 0, 1, &disabled)) != HK_OK ||
        (e = hk_col_int(st, 7, 0, HK_DB_LIMIT_MAX, &mh)) != HK_OK ||
        (e = hk_col_int(st, 8, 0, HK_DB_LIMIT_MAX, &md)) != HK_OK)
        return e;
    if (hk_curve_from_name(curve, &k->curve) != HK_OK)
        return HK_ERR_DECODE;
    k->disabled = (int)disabled;
    k->pending = (int)pending;
    k->max_hour = (unsigned)mh;
    k->max_day = (unsigned)md;
    if (sqlite3_column_type(st, 6) == SQLITE_NULL)
        return HK_OK;
    return hk_col_text(st, 6, k->label, HK_LABEL_MAX);
}

static hk_err hk_sq_read_session(sqlite3_stmt *st, hk_db_session *s)
{
    char op[HK_SQ_NAME_MAX + 1], state[HK_SQ_NAME_MAX + 1];
    hk_err e;

    memset(s, 0, sizeof(*s));
    if ((e = hk_col_fixed(st, 0, s->sid, HK_ID_LEN)) != HK_OK ||
        (e = hk_col_text(st, 1, s->owner, HK_SUB_MAX)) != HK_OK ||
        (e = hk_col_name(st, 2, op)) != HK_OK ||
        (e = hk_col_int(st, 4, 0, INT64_MAX, &s->created)) != HK_OK ||
        (e = hk_col_int(st, 5, 0, INT64_MAX, &s->last_seen)) != HK_OK ||
        (e = hk_col_name(st, 6, state)) != HK_OK ||
        (e = hk_db_op_from_name(op, &s->op)) != HK_OK ||
        (e = hk_db_sess_state_from_name(state, &s->state)) != HK_OK)
        return e;
    if (sqlite3_column_type(st, 7) != SQLITE_NULL &&
        ((e = hk_col_name(st, 7, op)) != HK_OK ||
         hk_curve_from_name(op, &s->curve) != HK_OK))
        return HK_ERR_DECODE;
    s->has_kid = sqlite3_column_type(st, 3) != SQLITE_NULL;
    return s->has_kid ? hk_col_fixed(st, 3, s->kid, HK_ID_LEN) : HK_OK;
}

/* --- opening and migrations ----------------------------------------------- */

/* Creates the database file with mode 0600 if it does not exist (SQLite
 * gives its -wal and -shm files the same mode). */
static hk_err hk_sq_precreate(hk_sq *d, const char *path)
{
    int fd;

    if (strcmp(path, ":memory:") == 0 || strncmp(path, "file:", 5) == 0)
        return HK_OK;
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0)
        return close(fd) == 0 ? HK_OK : HK_ERR_IO;
    if (errno == EEXIST)
        return HK_OK;
    hk_db_set_err(&d->base, "cannot create: %s", strerror(errno));
    return HK_ERR_IO;
}

static hk_err hk_sq_connect(hk_sq *d, const char *path)
{
    int rc;

    rc = sqlite3_open_v2(path, &d->conn,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK)
        return hk_sq_err(d, rc);
    sqlite3_extended_result_codes(d->conn, 1);
    rc = sqlite3_busy_timeout(d->conn, HK_DB_BUSY_MS);
    if (rc == SQLITE_OK)
        rc = sqlite3_db_config(d->conn, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
    if (rc == SQLITE_OK)
        rc =
            sqlite3_db_config(d->conn, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
    return hk_sq_err(d, rc);
}

/* One integer from a query with parameters. */
static hk_err hk_sq_int_p(hk_sq *d, const char *sql, const hk_dbp *p,
                          int64_t *out)
{
    sqlite3_stmt *st = NULL;
    int row = 0;
    hk_err e;

    if ((e = hk_sq_prep_p(d, sql, p, &st)) == HK_OK &&
        (e = hk_sq_step(d, st, &row)) == HK_OK)
        e = row ? hk_col_int(st, 0, INT64_MIN, INT64_MAX, out) : HK_ERR_DECODE;
    sqlite3_finalize(st);
    return e;
}

/* Runs a query without parameters that returns one integer. */
static hk_err hk_sq_int(hk_sq *d, const char *sql, int64_t *out)
{
    hk_dbp none = {0};

    return hk_sq_int_p(d, sql, &none, out);
}

/* journal_mode=WAL answers the mode in effect: it must be "wal". */
static hk_err hk_sq_wal(hk_sq *d, const char *path)
{
    char mode[HK_SQ_NAME_MAX + 1] = "";
    sqlite3_stmt *st = NULL;
    int row = 0;
    hk_err e;

    if ((e = hk_sq_prep(d, "PRAGMA journal_mode = WAL", &st)) == HK_OK &&
        (e = hk_sq_step(d, st, &row)) == HK_OK && row)
        e = hk_col_name(st, 0, mode);
    sqlite3_finalize(st);
    if (e == HK_OK && strcmp(mode, "wal") != 0 &&
        strcmp(path, ":memory:") != 0) {
        hk_db_set_err(&d->base, "cannot use WAL (journal mode %s)", mode);
        e = HK_ERR_IO;
    }
    return e;
}

static hk_err hk_sq_configure(hk_sq *d, const char *path)
{
    int64_t app = 0, fk = 0;
    hk_err e;

    if ((e = hk_sq_int(d, "PRAGMA application_id", &app)) != HK_OK)
        return e;
    if (app != 0 && app != HK_SQ_APP_ID) {
        hk_db_set_err(&d->base,
                      "not a halfkey database (application_id "
                      "%lld)",
                      (long long)app);
        return HK_ERR_CONFIG;
    }
    if ((e = hk_sq_exec(d, "PRAGMA foreign_keys = ON")) != HK_OK ||
        (e = hk_sq_int(d, "PRAGMA foreign_keys", &fk)) != HK_OK)
        return e;
    if (fk != 1) {
        hk_db_set_err(&d->base, "SQLite without foreign keys");
        return HK_ERR_IO;
    }
    if ((e = hk_sq_wal(d, path)) != HK_OK ||
        (e = hk_sq_exec(d, "PRAGMA synchronous = FULL")) != HK_OK)
        return e;
    return hk_sq_exec(d, "PRAGMA secure_delete = ON");
}

/* A database without our version table must hold no table at all. */
static hk_err hk_sq_check_foreign(hk_sq *d)
{
    int64_t n = 0;
    hk_err e;

    if ((e = hk_sq_int(d,
                       "SELECT count(*) FROM sqlite_schema WHERE type = "
                       "'table' AND name <> 'schema_version' AND name NOT "
                       "LIKE 'sqlite\\_%' ESCAPE '\\'",
                       &n)) != HK_OK)
        return e;
    if (n != 0) {
        hk_db_set_err(&d->base, "not a halfkey database (foreign tables)");
        return HK_ERR_CONFIG;
    }
    return HK_OK;
}

static hk_err hk_sq_record_version(hk_sq *d, int version)
{
    hk_dbp p = {0};

    hk_dbp_int(&p, version);
    return hk_sq_run_p(d, "INSERT INTO schema_version (version) VALUES (?1)",
                       &p, NULL);
}

/* Applies migrations from..HK_SQ_NMIGRATIONS-1 (inside the open
 * transaction). */
static hk_err hk_sq_apply(hk_sq *d, int from)
{
    char sql[64];
    hk_err e = HK_OK;
    int i;

    if (from == 0) {
        snprintf(sql, sizeof(sql), "PRAGMA application_id = %d", HK_SQ_APP_ID);
        if ((e = hk_sq_check_foreign(d)) != HK_OK ||
            (e = hk_sq_exec(d, sql)) != HK_OK)
            return e;
    }
    for (i = from; i < HK_SQ_NMIGRATIONS && e == HK_OK; i++)
        if ((e = hk_sq_exec(d, hk_sq_migrations[i])) == HK_OK)
            e = hk_sq_record_version(d, i + 1);
    return e;
}

static hk_err hk_sq_migrate(hk_sq *d)
{
    int64_t v = 0;
    hk_err e;

    if ((e = hk_sq_begin(d)) != HK_OK)
        return e;
    if ((e = hk_sq_exec(d, "CREATE TABLE IF NOT EXISTS schema_version "
                           "(version INTEGER PRIMARY KEY NOT NULL) "
                           "STRICT")) != HK_OK ||
        (e = hk_sq_int(d,
                       "SELECT coalesce(max(version), 0) FROM "
                       "schema_version",
                       &v)) != HK_OK)
        return hk_sq_end(d, e);
    if (v < 0 || v > HK_SQ_NMIGRATIONS) {
        hk_db_set_err(&d->base,
                      "database schema version %lld is not one this "
                      "server knows (up to %d)",
                      (long long)v, HK_SQ_NMIGRATIONS);
        return hk_sq_end(d, HK_ERR_VERSION);
    }
    return hk_sq_end(d, hk_sq_apply(d, (int)v));
}

static void hk_sq_close(hk_db *db)
{
    hk_sq *d = (hk_sq *)db;

    sqlite3_close(d->conn);
    OPENSSL_free(d);
}

static hk_err hk_sq_schema_version(hk_db *db, int *version)
{
    int64_t v = 0;
    hk_err e;

    e = hk_sq_int((hk_sq *)db,
                  "SELECT coalesce(max(version), 0) FROM schema_version", &v);
    *version = (int)v;
    return e;
}

/* --- keys ----------------------------------------------------------------- */

static hk_err hk_sq_share_insert(hk_sq *d, const unsigned char *kid,
                                 unsigned long epoch, hk_db_share_state state,
                                 const unsigned char *sealed, size_t len)
{
    hk_dbp p = {0};

    hk_dbp_blob(&p, kid, HK_ID_LEN);
    hk_dbp_int(&p, (int64_t)epoch);
    hk_dbp_text(&p, hk_db_share_state_name(state));
    hk_dbp_blob(&p, sealed, len);
    return hk_sq_run_p(d,
                       "INSERT INTO shares (kid, epoch, state, sealed) "
                       "VALUES (?1, ?2, ?3, ?4)",
                       &p, NULL);
}

static hk_err hk_sq_key_insert(hk_sq *d, const hk_db_key *k)
{
    hk_dbp p = {0};

    hk_dbp_blob(&p, k->kid, HK_ID_LEN);
    hk_dbp_text(&p, k->owner);
    hk_dbp_text(&p, hk_curve_name(k->curve));
    hk_dbp_blob(&p, k->pub.b, HK_POINT_LEN);
    hk_dbp_int(&p, k->created);
    hk_dbp_text(&p, k->label[0] != '\0' ? k->label : NULL);
    hk_dbp_int(&p, k->pending != 0);
    return hk_sq_run_p(d,
                       "INSERT INTO keys (kid, owner, curve, pubkey, "
                       "created, disabled, label, pending) VALUES (?1, ?2, "
                       "?3, ?4, ?5, 0, ?6, ?7)",
                       &p, NULL);
}

static hk_err hk_sq_key_create(hk_db *db, const hk_db_key *k,
                               unsigned long epoch, const unsigned char *first,
                               size_t firstlen)
{
    hk_sq *d = (hk_sq *)db;
    hk_err e;

    if ((e = hk_sq_begin(d)) != HK_OK)
        return e;
    e = hk_sq_key_insert(d, k);
    if (e == HK_OK && first != NULL)
        e = hk_sq_share_insert(d, k->kid, epoch, HK_DB_SHARE_ACTIVE, first,
                               firstlen);
    return hk_sq_end(d, e);
}

static hk_err hk_sq_key_get(hk_db *db, const unsigned char *kid,
                            const char *owner, hk_db_key *out)
{
    hk_sq *d = (hk_sq *)db;
    sqlite3_stmt *st = NULL;
    int rc, row = 0;
    hk_err e;

    e = hk_sq_prep(d,
                   owner == NULL ? "SELECT " HK_SQ_KEY_COLS
                                   " FROM keys WHERE kid = ?1"
                                 : "SELECT " HK_SQ_KEY_COLS
                                   " FROM keys WHERE kid = ?1 AND owner = ?2",
                   &st);
    if (e != HK_OK)
        return e;
    rc = hk_sq_bind_blob(st, 1, kid, HK_ID_LEN);
    if (rc == SQLITE_OK && owner != NULL)
        rc = hk_sq_bind_text(st, 2, owner);
    if ((e = hk_sq_err(d, rc)) == HK_OK &&
        (e = hk_sq_step(d, st, &row)) == HK_OK)
        e = row ? hk_sq_read_key(st, out) : HK_ERR_NOT_FOUND;
    sqlite3_finalize(st);
    return e;
}

/* Appends the current row to a growing array. */
static hk_err hk_sq_list_push(sqlite3_stmt *st, hk_db_key **keys, size_t *n,
                              size_t *cap)
{
    hk_db_key *grown;

    if (*n == *cap) {
        *cap = *cap == 0 ? 8 : 2 * *cap;
        grown = OPENSSL_realloc(*keys, *cap * sizeof(**keys));
        if (grown == NULL)
            return HK_ERR_NOMEM;
        *keys = grown;
    }
    return hk_sq_read_key(st, &(*keys)[(*n)++]);
}

static hk_err hk_sq_key_list(hk_db *db, const char *owner,
                             int64_t pending_before, hk_db_key **keys,
                             size_t *n)
{
    hk_sq *d = (hk_sq *)db;
    sqlite3_stmt *st = NULL;
    size_t cap = 0;
    int row = 1;
    hk_err e;

    if ((e = hk_sq_prep(d,
                        "SELECT " HK_SQ_KEY_COLS " FROM keys WHERE (?1 IS "
                        "NULL OR owner = ?1) AND (?2 IS NULL OR (pending = 1 "
                        "AND created < ?2)) ORDER BY created, kid",
                        &st)) != HK_OK)
        return e;
    if (owner != NULL)
        e = hk_sq_err(d, hk_sq_bind_text(st, 1, owner));
    if (e == HK_OK && pending_before >= 0)
        e = hk_sq_err(d, sqlite3_bind_int64(st, 2, pending_before));
    while (e == HK_OK && (e = hk_sq_step(d, st, &row)) == HK_OK && row)
        e = hk_sq_list_push(st, keys, n, &cap);
    sqlite3_finalize(st);
    if (e != HK_OK) {
        OPENSSL_free(*keys);
        *keys = NULL;
        *n = 0;
    }
    return e;
}

static hk_err hk_sq_key_set_disabled(hk_db *db, const unsigned char *kid,
                                     int disabled)
{
    hk_dbp p = {0};

    hk_dbp_blob(&p, kid, HK_ID_LEN);
    hk_dbp_int(&p, disabled);
    return hk_sq_key_change((hk_sq *)db,
                            "UPDATE keys SET disabled = ?2 WHERE kid = ?1", &p);
}

static hk_err hk_sq_key_set_limits(hk_db *db, const unsigned char *kid,
                                   unsigned max_hour, unsigned max_day)
{
    hk_dbp p = {0};

    hk_dbp_blob(&p, kid, HK_ID_LEN);
    hk_dbp_int(&p, max_hour);
    hk_dbp_int(&p, max_day);
    return hk_sq_key_change((hk_sq *)db,
                            "UPDATE keys SET max_hour = ?2, max_day = ?3 "
                            "WHERE kid = ?1",
                            &p);
}

static hk_err hk_sq_key_delete(hk_db *db, const unsigned char *kid,
                               const char *owner, int only_pending)
{
    hk_dbp p = {0};

    hk_dbp_blob(&p, kid, HK_ID_LEN);
    hk_dbp_text(&p, owner);
    hk_dbp_int(&p, only_pending != 0);
    return hk_sq_key_change((hk_sq *)db,
                            "DELETE FROM keys WHERE kid = ?1 AND (?2 IS NULL "
                            "OR owner = ?2) AND pending >= ?3",
                            &p);
}

static hk_err hk_sq_key_confirm(hk_db *db, const unsigned char *kid)
{
    hk_dbp p = {0};

    hk_dbp_blob(&p, kid, HK_ID_LEN);
    return hk_sq_key_change((hk_sq *)db,
                            "UPDATE keys SET pending = 0 WHERE kid = ?1", &p);
}

/* --- shares --------------------------------------------------------------- */

/* Reads the share row of (kid, epoch), or the active one for epoch 0.
 * sealed NULL: the blob is checked but not copied. HK_ERR_NOT_FOUND if
 * absent. */
static hk_err hk_sq_share_row(hk_sq *d, const unsigned char *kid,
                              unsigned long epoch, unsigned long *epoch_out,
                              hk_db_share_state *state, unsigned char **sealed,
                              size_t *len)
{
    char name[HK_SQ_NAME_MAX + 1];
    unsigned char *blob = NULL;
    sqlite3_stmt *st = NULL;
    size_t blen = 0;
    int rc, row = 0;
    hk_err e;

    e = hk_sq_prep(d,
                   epoch == 0 ? "SELECT epoch, state, sealed FROM shares "
                                "WHERE kid = ?1 AND state = 'active'"
                              : "SELECT epoch, state, sealed FROM shares "
                                "WHERE kid = ?1 AND epoch = ?2",
                   &st);
    if (e != HK_OK)
        return e;
    rc = hk_sq_bind_blob(st, 1, kid, HK_ID_LEN);
    if (rc == SQLITE_OK && epoch != 0)
        rc = sqlite3_bind_int64(st, 2, (sqlite3_int64)epoch);
    if ((e = hk_sq_err(d, rc)) != HK_OK ||
        (e = hk_sq_step(d, st, &row)) != HK_OK)
        goto done;
    e = HK_ERR_NOT_FOUND;
    if (!row)
        goto done;
    if ((e = hk_col_epoch(st, 0, epoch_out)) != HK_OK ||
        (e = hk_col_name(st, 1, name)) != HK_OK ||
        (e = hk_db_share_state_from_name(name, state)) != HK_OK ||
        (e = hk_col_dup(st, 2, HK_SEAL_OVERHEAD + 1, HK_SEAL_MAX, &blob,
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
    sqlite3_finalize(st);
    return e;
}

/* Runs `sql` with ?1 = kid and ?2 = epoch (if not 0). */
static hk_err hk_sq_kid_stmt(hk_sq *d, const char *sql,
                             const unsigned char *kid, unsigned long epoch)
{
    hk_dbp p = {0};

    hk_dbp_blob(&p, kid, HK_ID_LEN);
    if (epoch != 0) /* statements without ?2 take one parameter */
        hk_dbp_int(&p, (int64_t)epoch);
    return hk_sq_run_p(d, sql, &p, NULL);
}

/* 1 if the key exists (in *yes). */
static hk_err hk_sq_key_exists(hk_sq *d, const unsigned char *kid, int *yes)
{
    sqlite3_stmt *st = NULL;
    hk_err e;

    if ((e = hk_sq_prep(d, "SELECT 1 FROM keys WHERE kid = ?1", &st)) ==
            HK_OK &&
        (e = hk_sq_err(d, hk_sq_bind_blob(st, 1, kid, HK_ID_LEN))) == HK_OK)
        e = hk_sq_step(d, st, yes);
    sqlite3_finalize(st);
    return e;
}

/* The checks of a share put (inside its transaction). */
static hk_err hk_sq_share_put_check(hk_sq *d, const unsigned char *kid,
                                    unsigned long epoch,
                                    hk_db_share_state state)
{
    hk_db_share_state st;
    unsigned long active = 0;
    int yes = 0;
    hk_err e;

    if ((e = hk_sq_key_exists(d, kid, &yes)) != HK_OK)
        return e;
    if (!yes)
        return HK_ERR_NOT_FOUND;
    e = hk_sq_share_row(d, kid, 0, &active, &st, NULL, NULL);
    return hk_db_share_put_rule(e, active, state, epoch);
}

static hk_err hk_sq_share_put(hk_db *db, const unsigned char *kid,
                              unsigned long epoch, hk_db_share_state state,
                              const unsigned char *sealed, size_t len)
{
    hk_sq *d = (hk_sq *)db;
    hk_err e;

    if ((e = hk_sq_begin(d)) != HK_OK)
        return e;
    e = hk_sq_share_put_check(d, kid, epoch, state);
    if (e == HK_OK && state == HK_DB_SHARE_PENDING)
        e = hk_sq_kid_stmt(d,
                           "DELETE FROM shares WHERE kid = ?1 AND state = "
                           "'pending'",
                           kid, 0);
    if (e == HK_OK)
        e = hk_sq_share_insert(d, kid, epoch, state, sealed, len);
    return hk_sq_end(d, e);
}

static hk_err hk_sq_share_promote(hk_db *db, const unsigned char *kid,
                                  unsigned long epoch)
{
    hk_sq *d = (hk_sq *)db;
    hk_db_share_state state = HK_DB_SHARE_ACTIVE;
    unsigned long ep = 0;
    hk_err e;

    if ((e = hk_sq_begin(d)) != HK_OK)
        return e;
    e = hk_sq_share_row(d, kid, epoch, &ep, &state, NULL, NULL);
    if (e == HK_OK && state == HK_DB_SHARE_PENDING)
        e = hk_sq_kid_stmt(d,
                           "DELETE FROM shares WHERE kid = ?1 AND state = "
                           "'active'",
                           kid, 0);
    if (e == HK_OK && state == HK_DB_SHARE_PENDING)
        e = hk_sq_kid_stmt(d,
                           "UPDATE shares SET state = 'active' WHERE kid = "
                           "?1 AND epoch = ?2",
                           kid, epoch);
    return hk_sq_end(d, e);
}

static hk_err hk_sq_share_get(hk_db *db, const unsigned char *kid,
                              unsigned long epoch, unsigned long *epoch_out,
                              hk_db_share_state *state, unsigned char **sealed,
                              size_t *len)
{
    return hk_sq_share_row((hk_sq *)db, kid, epoch, epoch_out, state, sealed,
                           len);
}

/* --- sessions ------------------------------------------------------------- */

static hk_err hk_sq_session_create(hk_db *db, const hk_db_session *s)
{
    hk_dbp p = {0};

    hk_dbp_blob(&p, s->sid, HK_ID_LEN);
    hk_dbp_text(&p, s->owner);
    hk_dbp_text(&p, hk_db_op_name(s->op));
    hk_dbp_opt_id(&p, s->has_kid, s->kid);
    hk_dbp_int(&p, s->created);
    hk_dbp_text(&p, hk_db_sess_state_name(s->state));
    hk_dbp_text(&p, s->curve != 0 ? hk_curve_name(s->curve) : NULL);
    return hk_sq_run_p((hk_sq *)db,
                       "INSERT INTO sessions (" HK_SQ_SESSION_COLS ") "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7)",
                       &p, NULL);
}

/* Binds ?1 = sid, ?2 = the expiry cutoff now - idle (a session is alive
 * while last_seen > cutoff) and, if with_now, ?3 = now. */
static int hk_sq_bind_live(sqlite3_stmt *st, const unsigned char *sid,
                           int64_t now, int64_t idle, int with_now)
{
    int rc = hk_sq_bind_blob(st, 1, sid, HK_ID_LEN);

    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 2, now - idle);
    if (rc == SQLITE_OK && with_now)
        rc = sqlite3_bind_int64(st, 3, now);
    return rc;
}

static hk_err hk_sq_session_touch(hk_db *db, const unsigned char *sid,
                                  int64_t now, int64_t idle)
{
    hk_sq *d = (hk_sq *)db;
    sqlite3_stmt *st = NULL;
    int changes = 0;
    hk_err e;

    if ((e = hk_sq_prep(d,
                        "UPDATE sessions SET last_seen = max(last_seen, ?3) "
                        "WHERE sid = ?1 AND last_seen > ?2",
                        &st)) != HK_OK)
        return e;
    if ((e = hk_sq_err(d, hk_sq_bind_live(st, sid, now, idle, 1))) == HK_OK &&
        (e = hk_sq_run(d, st, &changes)) == HK_OK && changes == 0)
        e = HK_ERR_SESSION;
    sqlite3_finalize(st);
    return e;
}

static hk_err hk_sq_session_get(hk_db *db, const unsigned char *sid,
                                int64_t now, int64_t idle, hk_db_session *out)
{
    hk_sq *d = (hk_sq *)db;
    sqlite3_stmt *st = NULL;
    int row = 0;
    hk_err e;

    if ((e = hk_sq_prep(d,
                        "SELECT " HK_SQ_SESSION_COLS " FROM sessions WHERE "
                        "sid = ?1 AND last_seen > ?2",
                        &st)) != HK_OK)
        return e;
    if ((e = hk_sq_err(d, hk_sq_bind_live(st, sid, now, idle, 0))) == HK_OK &&
        (e = hk_sq_step(d, st, &row)) == HK_OK)
        e = row ? hk_sq_read_session(st, out) : HK_ERR_SESSION;
    sqlite3_finalize(st);
    if (e != HK_OK)
        memset(out, 0, sizeof(*out));
    return e;
}

/* The state update of a live session in one of the states `from`. */
static hk_err hk_sq_session_move(hk_sq *d, const unsigned char *sid,
                                 hk_db_sess_state to, int64_t now, int64_t idle,
                                 int *changes)
{
    hk_db_sess_state from[2] = {0, 0};
    sqlite3_stmt *st = NULL;
    int rc;
    hk_err e;

    (void)hk_db_sess_from_states(to, from);
    if ((e = hk_sq_prep(d,
                        "UPDATE sessions SET state = ?4, last_seen = "
                        "max(last_seen, ?3) WHERE sid = ?1 AND last_seen > "
                        "?2 AND state IN (?5, ?6)",
                        &st)) != HK_OK)
        return e;
    rc = hk_sq_bind_live(st, sid, now, idle, 1);
    if (rc == SQLITE_OK)
        rc = hk_sq_bind_text(st, 4, hk_db_sess_state_name(to));
    if (rc == SQLITE_OK)
        rc = hk_sq_bind_text(st, 5, hk_db_sess_state_name(from[0]));
    if (rc == SQLITE_OK)
        rc = hk_sq_bind_text(st, 6, hk_db_sess_state_name(from[1]));
    if ((e = hk_sq_err(d, rc)) == HK_OK)
        e = hk_sq_run(d, st, changes);
    sqlite3_finalize(st);
    return e;
}

static hk_err hk_sq_session_set_state(hk_db *db, const unsigned char *sid,
                                      hk_db_sess_state state, int64_t now,
                                      int64_t idle)
{
    hk_sq *d = (hk_sq *)db;
    hk_db_session s;
    int changes = 0;
    hk_err e;

    if ((e = hk_sq_begin(d)) != HK_OK)
        return e;
    e = hk_sq_session_move(d, sid, state, now, idle, &changes);
    if (e == HK_OK && changes == 0) {
        /* Not moved: tell a dead session from a forbidden move. */
        e = hk_sq_session_get(db, sid, now, idle, &s);
        if (e == HK_OK)
            e = HK_ERR_STATE;
    }
    if (e == HK_OK && state == HK_DB_SESS_RUNNING && db->node[0] != 0) {
        hk_dbp p = {0};

        hk_dbp_blob(&p, sid, HK_ID_LEN);
        hk_dbp_text(&p, db->node);
        e = hk_sq_run_p(d, "UPDATE sessions SET node = ?2 WHERE sid = ?1", &p,
                        NULL);
    }
    return hk_sq_end(d, e);
}

static hk_err hk_sq_session_fail_node(hk_db *db, const char *node, size_t *n)
{
    hk_dbp p = {0};
    int changes = 0;
    hk_err e;

    hk_dbp_text(&p, node);
    e = hk_sq_run_p((hk_sq *)db,
                    "UPDATE sessions SET state = 'failed' WHERE state = "
                    "'running' AND node = ?1",
                    &p, &changes);
    *n = e == HK_OK ? (size_t)changes : 0;
    return e;
}

static hk_err hk_sq_write_probe(hk_db *db, int64_t now)
{
    hk_dbp p = {0};

    hk_dbp_text(&p, db->node[0] != 0 ? db->node : "-");
    hk_dbp_int(&p, now);
    return hk_sq_run_p((hk_sq *)db,
                       "INSERT INTO health (node, probed) VALUES (?1, ?2) ON "
                       "CONFLICT (node) DO UPDATE SET probed = excluded.probed",
                       &p, NULL);
}

static hk_err hk_sq_session_sweep(hk_db *db, int64_t now, int64_t idle,
                                  size_t *deleted)
{
    hk_sq *d = (hk_sq *)db;
    sqlite3_stmt *st = NULL;
    int changes = 0;
    hk_err e;

    if ((e = hk_sq_prep(d, "DELETE FROM sessions WHERE last_seen <= ?1",
                        &st)) != HK_OK)
        return e;
    if ((e = hk_sq_err(d, sqlite3_bind_int64(st, 1, now - idle))) == HK_OK)
        e = hk_sq_run(d, st, &changes);
    sqlite3_finalize(st);
    *deleted = e == HK_OK ? (size_t)changes : 0;
    return e;
}

static hk_err hk_sq_session_others(hk_db *db, const unsigned char *sid,
                                   int64_t now, int64_t idle, int64_t *n)
{
    hk_dbp p = {0};

    hk_dbp_blob(&p, sid, HK_ID_LEN);
    hk_dbp_int(&p, now - idle);
    return hk_sq_int_p((hk_sq *)db,
                       "SELECT count(*) FROM sessions o JOIN sessions s ON "
                       "o.kid = s.kid AND o.op = s.op AND o.sid <> s.sid "
                       "WHERE s.sid = ?1 AND o.state = 'running' AND "
                       "o.last_seen > ?2",
                       &p, n);
}

/* --- setup ---------------------------------------------------------------- */

static hk_err hk_sq_setup_put(hk_db *db, const unsigned char *sealed,
                              size_t slen, const unsigned char *pub,
                              size_t plen, int64_t now)
{
    hk_dbp p = {0};

    hk_dbp_blob(&p, sealed, slen);
    hk_dbp_blob(&p, pub, plen);
    hk_dbp_int(&p, now);
    return hk_sq_run_p((hk_sq *)db,
                       "INSERT INTO setup (id, sealed, public, created) "
                       "VALUES (1, ?1, ?2, ?3)",
                       &p, NULL);
}

static hk_err hk_sq_setup_get(hk_db *db, unsigned char **sealed, size_t *slen,
                              unsigned char **pub, size_t *plen)
{
    hk_sq *d = (hk_sq *)db;
    sqlite3_stmt *st = NULL;
    int row = 0;
    hk_err e;

    if ((e = hk_sq_prep(d, "SELECT sealed, public FROM setup WHERE id = 1",
                        &st)) != HK_OK ||
        (e = hk_sq_step(d, st, &row)) != HK_OK)
        goto done;
    e = HK_ERR_NOT_FOUND;
    if (!row)
        goto done;
    if ((e = hk_col_dup(st, 0, HK_SEAL_OVERHEAD + 1, HK_SEAL_MAX, sealed,
                        slen)) != HK_OK ||
        (e = hk_col_dup(st, 1, 1, HK_RECORD_MAX, pub, plen)) != HK_OK)
        goto done;
done:
    sqlite3_finalize(st);
    if (e != HK_OK) {
        OPENSSL_free(*sealed);
        *sealed = NULL;
        *slen = 0;
    }
    return e;
}

/* --- audit log ------------------------------------------------------------ */

/* Optional text column stored as '' for none. */
static hk_err hk_col_opt_text(sqlite3_stmt *st, int i, char *out, size_t max)
{
    if (sqlite3_column_type(st, i) == SQLITE_TEXT &&
        sqlite3_column_bytes(st, i) == 0) {
        out[0] = '\0';
        return HK_OK;
    }
    return hk_col_text(st, i, out, max);
}

/* A BLOB of 0..max bytes into out. */
static hk_err hk_col_var(sqlite3_stmt *st, int i, unsigned char *out,
                         size_t max, size_t *len)
{
    int n;

    if (sqlite3_column_type(st, i) != SQLITE_BLOB)
        return HK_ERR_DECODE;
    n = sqlite3_column_bytes(st, i);
    if (n < 0 || (size_t)n > max)
        return HK_ERR_DECODE;
    if (n > 0)
        memcpy(out, sqlite3_column_blob(st, i), (size_t)n);
    *len = (size_t)n;
    return HK_OK;
}

/* An optional 16-byte id. */
static hk_err hk_col_opt_id(sqlite3_stmt *st, int i, int *has,
                            unsigned char *out)
{
    *has = sqlite3_column_type(st, i) != SQLITE_NULL;
    return *has ? hk_col_fixed(st, i, out, HK_ID_LEN) : HK_OK;
}

static hk_err hk_sq_read_audit(sqlite3_stmt *st, hk_audit_rec *r)
{
    hk_err e;

    memset(r, 0, sizeof(*r));
    if ((e = hk_col_int(st, 0, 1, INT64_MAX, &r->seq)) != HK_OK ||
        (e = hk_col_int(st, 1, 0, INT64_MAX, &r->time)) != HK_OK ||
        (e = hk_col_opt_text(st, 2, r->node, HK_NODE_MAX)) != HK_OK ||
        (e = hk_col_opt_text(st, 3, r->subject, HK_SUB_MAX)) != HK_OK ||
        (e = hk_col_opt_id(st, 4, &r->has_kid, r->kid)) != HK_OK ||
        (e = hk_col_opt_id(st, 5, &r->has_sid, r->sid)) != HK_OK ||
        (e = hk_col_name(st, 6, r->event)) != HK_OK ||
        (e = hk_col_name(st, 7, r->outcome)) != HK_OK ||
        (e = hk_col_opt_text(st, 8, r->detail, HK_AUDIT_DETAIL_MAX)) != HK_OK ||
        (e = hk_col_var(st, 9, r->digest, HK_AUDIT_DIGEST_MAX,
                        &r->digest_len)) != HK_OK ||
        (e = hk_col_var(st, 10, r->sig, HK_AUDIT_SIG_MAX, &r->sig_len)) !=
            HK_OK ||
        (e = hk_col_fixed(st, 11, r->prev, HK_AUDIT_HASH_LEN)) != HK_OK ||
        (e = hk_col_fixed(st, 12, r->hash, HK_AUDIT_HASH_LEN)) != HK_OK)
        return e;
    return hk_audit_rec_ok(r) ? HK_OK : HK_ERR_DECODE;
}

/* The last record's seq and hash (*seq 0 for an empty log). */
static hk_err hk_sq_audit_last(hk_sq *d, int64_t *seq,
                               unsigned char hash[HK_AUDIT_HASH_LEN])
{
    sqlite3_stmt *st = NULL;
    int row = 0;
    hk_err e;

    *seq = 0;
    if ((e = hk_sq_prep(d,
                        "SELECT seq, hash FROM audit ORDER BY seq DESC "
                        "LIMIT 1",
                        &st)) == HK_OK &&
        (e = hk_sq_step(d, st, &row)) == HK_OK && row &&
        (e = hk_col_int(st, 0, 1, INT64_MAX, seq)) == HK_OK)
        e = hk_col_fixed(st, 1, hash, HK_AUDIT_HASH_LEN);
    sqlite3_finalize(st);
    return e;
}

static hk_err hk_sq_audit_insert(hk_sq *d, const hk_audit_rec *r)
{
    hk_dbp p = {0};

    hk_dbp_audit(&p, r);
    return hk_sq_run_p(d,
                       "INSERT INTO audit (" HK_SQ_AUDIT_COLS ") VALUES (?1, "
                       "?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                       &p, NULL);
}

static hk_err hk_sq_audit_append(hk_db *db, hk_audit_rec *rec)
{
    hk_sq *d = (hk_sq *)db;
    unsigned char last[HK_AUDIT_HASH_LEN];
    int64_t seq = 0;
    hk_err e;

    if ((e = hk_sq_begin(d)) != HK_OK)
        return e;
    if ((e = hk_sq_audit_last(d, &seq, last)) == HK_OK) {
        hk_audit_link(rec, seq, seq > 0 ? last : NULL);
        e = hk_sq_audit_insert(d, rec);
    }
    return hk_sq_end(d, e);
}

static hk_err hk_sq_audit_scan(hk_db *db, int64_t from,
                               hk_err (*fn)(void *ctx, const hk_audit_rec *r),
                               void *ctx)
{
    hk_sq *d = (hk_sq *)db;
    sqlite3_stmt *st = NULL;
    hk_audit_rec r;
    int row = 1;
    hk_err e;

    if ((e = hk_sq_prep(d,
                        "SELECT " HK_SQ_AUDIT_COLS " FROM audit WHERE seq >= "
                        "?1 ORDER BY seq",
                        &st)) != HK_OK)
        return e;
    e = hk_sq_err(d, sqlite3_bind_int64(st, 1, from));
    while (e == HK_OK && (e = hk_sq_step(d, st, &row)) == HK_OK && row)
        if ((e = hk_sq_read_audit(st, &r)) == HK_OK)
            e = fn(ctx, &r);
    sqlite3_finalize(st);
    return e;
}

static hk_err hk_sq_audit_count(hk_db *db, const unsigned char *kid,
                                const char *event, const char *outcome,
                                int64_t since, int64_t *n)
{
    hk_dbp p = {0};

    hk_dbp_blob(&p, kid, HK_ID_LEN);
    hk_dbp_text(&p, event);
    hk_dbp_text(&p, outcome);
    hk_dbp_int(&p, since);
    return hk_sq_int_p((hk_sq *)db,
                       "SELECT count(*) FROM audit WHERE kid = ?1 AND event "
                       "= ?2 AND outcome = ?3 AND time >= ?4",
                       &p, n);
}

/* --- rate buckets --------------------------------------------------------- */

static hk_err hk_sq_bucket_read(hk_sq *d, const char *sub, int *found,
                                double *tokens, double *updated)
{
    sqlite3_stmt *st = NULL;
    hk_err e;

    if ((e = hk_sq_prep(d,
                        "SELECT tokens, updated FROM buckets WHERE subject "
                        "= ?1",
                        &st)) == HK_OK &&
        (e = hk_sq_err(d, hk_sq_bind_text(st, 1, sub))) == HK_OK &&
        (e = hk_sq_step(d, st, found)) == HK_OK && *found) {
        if (sqlite3_column_type(st, 0) != SQLITE_FLOAT ||
            sqlite3_column_type(st, 1) != SQLITE_FLOAT)
            e = HK_ERR_DECODE;
        *tokens = sqlite3_column_double(st, 0);
        *updated = sqlite3_column_double(st, 1);
    }
    sqlite3_finalize(st);
    return e;
}

static hk_err hk_sq_bucket_take(hk_db *db, const char *sub, double rate,
                                double burst, double now, int *ok,
                                double *retry)
{
    hk_sq *d = (hk_sq *)db;
    double tokens = 0, updated = 0, left = 0;
    hk_dbp p = {0};
    int found = 0;
    hk_err e;

    if ((e = hk_sq_begin(d)) != HK_OK)
        return e;
    if ((e = hk_sq_bucket_read(d, sub, &found, &tokens, &updated)) == HK_OK) {
        hk_bucket_step(found, tokens, updated, rate, burst, now, &left, ok,
                       retry);
        hk_dbp_text(&p, sub);
        hk_dbp_real(&p, left);
        hk_dbp_real(&p, now);
        e = hk_sq_run_p(d,
                        "INSERT OR REPLACE INTO buckets (subject, tokens, "
                        "updated) VALUES (?1, ?2, ?3)",
                        &p, NULL);
    }
    return hk_sq_end(d, e);
}

/* --- re-sealing ----------------------------------------------------------- */

static hk_err hk_sq_read_ref(sqlite3_stmt *st, hk_db_share_ref *r)
{
    char name[HK_SQ_NAME_MAX + 1];
    hk_err e;

    memset(r, 0, sizeof(*r));
    if ((e = hk_col_fixed(st, 0, r->kid, HK_ID_LEN)) != HK_OK ||
        (e = hk_col_text(st, 1, r->owner, HK_SUB_MAX)) != HK_OK ||
        (e = hk_col_epoch(st, 2, &r->epoch)) != HK_OK ||
        (e = hk_col_name(st, 3, name)) != HK_OK)
        return e;
    return hk_db_share_state_from_name(name, &r->state);
}

static hk_err hk_sq_share_list_all(hk_db *db, const unsigned char *after_kid,
                                   unsigned long after_epoch,
                                   hk_db_share_ref *refs, size_t max, size_t *n)
{
    hk_sq *d = (hk_sq *)db;
    sqlite3_stmt *st = NULL;
    int rc, row = 0;
    hk_err e;

    if ((e = hk_sq_prep(d,
                        after_kid == NULL
                            ? "SELECT s.kid, k.owner, s.epoch, s.state FROM "
                              "shares s JOIN keys k ON k.kid = s.kid ORDER BY "
                              "s.kid, s.epoch LIMIT ?3"
                            : "SELECT s.kid, k.owner, s.epoch, s.state FROM "
                              "shares s JOIN keys k ON k.kid = s.kid WHERE "
                              "(s.kid, s.epoch) > (?1, ?2) ORDER BY s.kid, "
                              "s.epoch LIMIT ?3",
                        &st)) != HK_OK)
        return e;
    rc = sqlite3_bind_int64(st, 3, (sqlite3_int64)max);
    if (rc == SQLITE_OK && after_kid != NULL)
        rc = hk_sq_bind_blob(st, 1, after_kid, HK_ID_LEN);
    if (rc == SQLITE_OK && after_kid != NULL)
        rc = sqlite3_bind_int64(st, 2, (sqlite3_int64)after_epoch);
    e = hk_sq_err(d, rc);
    while (e == HK_OK && *n < max && (e = hk_sq_step(d, st, &row)) == HK_OK &&
           row)
        if ((e = hk_sq_read_ref(st, &refs[*n])) == HK_OK)
            (*n)++;
    sqlite3_finalize(st);
    if (e != HK_OK)
        *n = 0;
    return e;
}

/* Runs a compare-and-swap UPDATE (?1 old, ?2 new, ?3 kid, ?4 epoch when
 * kid is not NULL) and, if it changed nothing, `exists` (same kid/epoch
 * parameters as ?1/?2) to tell a changed blob from a missing row. */
static hk_err hk_sq_cas(hk_sq *d, const char *update, const char *exists,
                        const unsigned char *kid, unsigned long epoch,
                        const unsigned char *old, size_t oldlen,
                        const unsigned char *nblob, size_t nlen)
{
    sqlite3_stmt *st = NULL;
    int rc, changes = 0, yes = 0;
    hk_err e;

    if ((e = hk_sq_prep(d, update, &st)) != HK_OK)
        return e;
    rc = hk_sq_bind_blob(st, 1, old, oldlen);
    if (rc == SQLITE_OK)
        rc = hk_sq_bind_blob(st, 2, nblob, nlen);
    if (rc == SQLITE_OK && kid != NULL)
        rc = hk_sq_bind_blob(st, 3, kid, HK_ID_LEN);
    if (rc == SQLITE_OK && kid != NULL)
        rc = sqlite3_bind_int64(st, 4, (sqlite3_int64)epoch);
    if ((e = hk_sq_err(d, rc)) == HK_OK)
        e = hk_sq_run(d, st, &changes);
    sqlite3_finalize(st);
    st = NULL;
    if (e != HK_OK || changes == 1)
        return e;
    if ((e = hk_sq_prep(d, exists, &st)) != HK_OK)
        return e;
    rc = SQLITE_OK;
    if (kid != NULL)
        rc = hk_sq_bind_blob(st, 1, kid, HK_ID_LEN);
    if (rc == SQLITE_OK && kid != NULL)
        rc = sqlite3_bind_int64(st, 2, (sqlite3_int64)epoch);
    if ((e = hk_sq_err(d, rc)) == HK_OK &&
        (e = hk_sq_step(d, st, &yes)) == HK_OK)
        e = yes ? HK_ERR_STATE : HK_ERR_NOT_FOUND;
    sqlite3_finalize(st);
    return e;
}

static hk_err hk_sq_share_replace_sealed(hk_db *db, const unsigned char *kid,
                                         unsigned long epoch,
                                         const unsigned char *old,
                                         size_t oldlen,
                                         const unsigned char *nblob,
                                         size_t nlen)
{
    hk_sq *d = (hk_sq *)db;
    hk_err e;

    if ((e = hk_sq_begin(d)) != HK_OK)
        return e;
    e = hk_sq_cas(d,
                  "UPDATE shares SET sealed = ?2 WHERE kid = ?3 AND epoch = "
                  "?4 AND sealed = ?1",
                  "SELECT 1 FROM shares WHERE kid = ?1 AND epoch = ?2", kid,
                  epoch, old, oldlen, nblob, nlen);
    return hk_sq_end(d, e);
}

static hk_err hk_sq_setup_replace_sealed(hk_db *db, const unsigned char *old,
                                         size_t oldlen,
                                         const unsigned char *nblob,
                                         size_t nlen)
{
    hk_sq *d = (hk_sq *)db;
    hk_err e;

    if ((e = hk_sq_begin(d)) != HK_OK)
        return e;
    e = hk_sq_cas(
        d, "UPDATE setup SET sealed = ?2 WHERE id = 1 AND sealed = ?1",
        "SELECT 1 FROM setup WHERE id = 1", NULL, 0, old, oldlen, nblob, nlen);
    return hk_sq_end(d, e);
}

static const hk_db_ops hk_sq_ops = {
    "sqlite",
    hk_sq_close,
    hk_sq_schema_version,
    hk_sq_key_create,
    hk_sq_key_get,
    hk_sq_key_list,
    hk_sq_key_confirm,
    hk_sq_key_set_limits,
    hk_sq_key_delete,
    hk_sq_key_set_disabled,
    hk_sq_share_put,
    hk_sq_share_promote,
    hk_sq_share_get,
    hk_sq_session_create,
    hk_sq_session_touch,
    hk_sq_session_get,
    hk_sq_session_set_state,
    hk_sq_session_sweep,
    hk_sq_session_others,
    hk_sq_setup_put,
    hk_sq_setup_get,
    hk_sq_audit_append,
    hk_sq_audit_scan,
    hk_sq_audit_count,
    hk_sq_bucket_take,
    hk_sq_share_list_all,
    hk_sq_share_replace_sealed,
    hk_sq_setup_replace_sealed,
    hk_sq_session_fail_node,
    hk_sq_write_probe,
};

hk_err hk_db_open_sqlite(const char *path, hk_db **out, char *why,
                         size_t whylen)
{
    hk_sq *d;
    hk_err e;

    if (path == NULL || *path == '\0' || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if ((d = OPENSSL_zalloc(sizeof(*d))) == NULL)
        return HK_ERR_NOMEM;
    d->base.ops = &hk_sq_ops;
    if ((e = hk_sq_precreate(d, path)) != HK_OK ||
        (e = hk_sq_connect(d, path)) != HK_OK ||
        (e = hk_sq_configure(d, path)) != HK_OK ||
        (e = hk_sq_migrate(d)) != HK_OK) {
        hk_why(why, whylen, "database %s: %s", path, d->base.err);
        hk_sq_close(&d->base);
        return e;
    }
    *out = &d->base;
    return HK_OK;
}
