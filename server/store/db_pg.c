/* The PostgreSQL executor of the storage layer (hk_sql_ops, db_impl.h),
 * through libpq: connects, binds, runs and reads typed columns. The
 * operations and the schema are in db_store.c and db_schema.c.
 *
 * Every statement runs with bound parameters in binary format (no SQL is
 * built from data) and asks for binary results, whose types are checked
 * by OID before a value is read. Transactions run at READ COMMITTED; the
 * operations take row locks ({FOR_UPDATE}) or a transaction-scoped
 * advisory lock (hk_pg_lock) where they read before they write, so
 * several halfkeyd nodes on one database serialise where they must. A
 * connection that broke is reset once before the next statement run
 * outside a transaction.
 *
 * Statements are prepared once per connection (PQprepare, kept by text
 * and parameter types, HK_PG_CACHE of them, the least recently used
 * deallocated): a sign runs the same dozen statements every time and
 * parsing and planning each is most of its cost. A protocol-level
 * prepared statement outlives a rolled-back transaction; one is kept
 * only once its preparation succeeded; a reset connection forgets them
 * all. */
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <openssl/crypto.h>

#include "server/store/db_impl.h"
#include "common/why.h"

/* Type OIDs (pg_type.h is server-side only). */
#define HK_PG_BYTEA 17
#define HK_PG_INT8 20
#define HK_PG_INT2 21
#define HK_PG_INT4 23
#define HK_PG_TEXT 25
#define HK_PG_FLOAT8 701
#define HK_PG_VARCHAR 1043

#define HK_PG_CACHE 128

/* One prepared statement: its text, parameter types and server name. */
typedef struct {
    uint64_t hash, used;
    char *sql;
    Oid types[HK_DBP_MAX];
    int n;
    char name[24];
} hk_pg_stmt;

typedef struct {
    hk_db base; /* first: a hk_db * is a hk_pg * */
    PGconn *conn;
    int in_tx; /* between hk_pg_begin and hk_pg_end */
    hk_pg_stmt cache[HK_PG_CACHE];
    uint64_t tick, named;
} hk_pg;

/* Bound parameters of one statement, in binary. */
typedef struct {
    Oid types[HK_DBP_MAX];
    const char *vals[HK_DBP_MAX];
    int lens[HK_DBP_MAX];
    int fmts[HK_DBP_MAX];
    unsigned char nums[HK_DBP_MAX][8];
} hk_pgp;

/* Forgets every prepared statement (the server's go with its session). */
static void hk_pg_forget(hk_pg *d)
{
    size_t i;

    for (i = 0; i < HK_PG_CACHE; i++) {
        OPENSSL_free(d->cache[i].sql);
        memset(&d->cache[i], 0, sizeof(d->cache[i]));
    }
}

static void hk_pgp_u64(hk_pgp *q, int i, uint64_t v)
{
    int k;

    for (k = 0; k < 8; k++)
        q->nums[i][k] = (unsigned char)(v >> (56 - 8 * k));
    q->vals[i] = (const char *)q->nums[i];
    q->lens[i] = 8;
}

/* The neutral list in, binary parameters out (BLOB and TEXT values are
 * borrowed from p). A SQL NULL keeps its type. */
static void hk_pgp_from(hk_pgp *q, const hk_dbp *p)
{
    static const Oid oid[] = {0, HK_PG_BYTEA, HK_PG_TEXT, HK_PG_INT8,
                              HK_PG_FLOAT8};
    uint64_t u;
    int i;

    for (i = 0; i < p->n; i++) {
        q->types[i] = oid[p->v[i].t];
        q->fmts[i] = 1;
        q->vals[i] = NULL;
        q->lens[i] = 0;
        if (p->v[i].null || p->v[i].t == HK_DBP_NULL)
            continue;
        switch (p->v[i].t) {
        case HK_DBP_BLOB:
            q->vals[i] = p->v[i].p;
            q->lens[i] = (int)p->v[i].len;
            break;
        case HK_DBP_TEXT:
            q->vals[i] = p->v[i].p;
            q->lens[i] = (int)strlen(p->v[i].p);
            break;
        case HK_DBP_INT:
            hk_pgp_u64(q, i, (uint64_t)p->v[i].i);
            break;
        default:
            memcpy(&u, &p->v[i].f, 8);
            hk_pgp_u64(q, i, u);
        }
    }
}

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

/* Resets a broken connection, outside any transaction (inside one, the
 * statements after the break must fail, not run on a new connection). */
static void hk_pg_revive(hk_pg *d)
{
    if (!d->in_tx && PQstatus(d->conn) == CONNECTION_BAD) {
        PQreset(d->conn);
        hk_pg_forget(d);
    }
}

static hk_err hk_pg_result(hk_pg *d, PGresult *r, ExecStatusType want,
                           PGresult **out)
{
    hk_err e = HK_OK;

    if (r == NULL ||
        (PQresultStatus(r) != want && PQresultStatus(r) != PGRES_COMMAND_OK))
        e = hk_pg_fail(d, r);
    if (e != HK_OK || out == NULL) {
        PQclear(r);
        r = NULL;
    }
    if (out != NULL)
        *out = r;
    return e;
}

static hk_err hk_pg_script(hk_db *db, const char *sql)
{
    hk_pg *d = (hk_pg *)db;

    hk_pg_revive(d);
    return hk_pg_result(d, PQexec(d->conn, sql), PGRES_COMMAND_OK, NULL);
}

static hk_err hk_pg_begin(hk_db *db)
{
    hk_pg *d = (hk_pg *)db;
    hk_err e = hk_pg_script(db, "BEGIN");

    d->in_tx = e == HK_OK;
    return e;
}

static hk_err hk_pg_end(hk_db *db, hk_err e)
{
    hk_pg *d = (hk_pg *)db;

    if (e == HK_OK)
        e = hk_pg_script(db, "COMMIT");
    if (e != HK_OK && PQtransactionStatus(d->conn) != PQTRANS_IDLE)
        PQclear(PQexec(d->conn, "ROLLBACK"));
    d->in_tx = 0;
    return e;
}

/* Transaction-scoped advisory locks: "hkmg" (migrations), "hkau" (audit
 * appends) and "hkrq" (request rules). */
static hk_err hk_pg_lock(hk_db *db, hk_sql_lock which)
{
    static const char *const sql[] = {
        "SELECT pg_advisory_xact_lock(1752919399)",
        "SELECT pg_advisory_xact_lock(1752916341)",
        "SELECT pg_advisory_xact_lock(1751872113)"};
    hk_pg *d = (hk_pg *)db;

    if ((size_t)which >= sizeof(sql) / sizeof(sql[0]))
        return HK_ERR_ARG;
    return hk_pg_result(d, PQexec(d->conn, sql[which]), PGRES_TUPLES_OK, NULL);
}

/* FNV-1a of the text and the parameter types. */
static uint64_t hk_pg_hash(const char *sql, const Oid *types, int n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    int i;

    for (; *sql != '\0'; sql++)
        h = (h ^ (unsigned char)*sql) * 0x100000001b3ULL;
    for (i = 0; i < n; i++)
        h = (h ^ types[i]) * 0x100000001b3ULL;
    return h;
}

/* The slot for a new statement: a free one, else the least recently used
 * (deallocated on the server; if that fails, it stays there unnamed until
 * the session ends). */
static hk_pg_stmt *hk_pg_slot(hk_pg *d)
{
    hk_pg_stmt *best = &d->cache[0];
    char sql[48];
    size_t i;

    for (i = 0; i < HK_PG_CACHE; i++) {
        if (d->cache[i].sql == NULL)
            return &d->cache[i];
        if (d->cache[i].used < best->used)
            best = &d->cache[i];
    }
    snprintf(sql, sizeof(sql), "DEALLOCATE %s", best->name);
    PQclear(PQexec(d->conn, sql));
    OPENSSL_free(best->sql);
    memset(best, 0, sizeof(*best));
    return best;
}

/* The name of sql prepared with q's types, preparing it now if needed;
 * NULL if it cannot be (then it runs unprepared). */
static const char *hk_pg_prepared(hk_pg *d, const char *sql, const hk_pgp *q,
                                  int n)
{
    uint64_t h = hk_pg_hash(sql, q->types, n);
    hk_pg_stmt *k;
    PGresult *r;
    size_t i;

    for (i = 0; i < HK_PG_CACHE; i++) {
        k = &d->cache[i];
        if (k->sql != NULL && k->hash == h && k->n == n &&
            memcmp(k->types, q->types, (size_t)n * sizeof(Oid)) == 0 &&
            strcmp(k->sql, sql) == 0) {
            k->used = ++d->tick;
            return k->name;
        }
    }
    k = hk_pg_slot(d);
    snprintf(k->name, sizeof(k->name), "hk_%llu",
             (unsigned long long)++d->named);
    r = PQprepare(d->conn, k->name, sql, n, q->types);
    if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK ||
        (k->sql = OPENSSL_strdup(sql)) == NULL) {
        PQclear(r);
        memset(k, 0, sizeof(*k));
        return NULL;
    }
    PQclear(r);
    memcpy(k->types, q->types, (size_t)n * sizeof(Oid));
    k->n = n;
    k->hash = h;
    k->used = ++d->tick;
    return k->name;
}

static hk_err hk_pg_query(hk_db *db, const char *sql, const hk_dbp *p,
                          hk_sql_cur *c)
{
    hk_pg *d = (hk_pg *)db;
    PGresult *r = NULL;
    const char *name;
    hk_pgp q;
    hk_err e;

    memset(&q, 0, sizeof(q));
    hk_pgp_from(&q, p);
    hk_pg_revive(d);
    name = hk_pg_prepared(d, sql, &q, p->n);
    e = hk_pg_result(d,
                     name != NULL ? PQexecPrepared(d->conn, name, p->n, q.vals,
                                                   q.lens, q.fmts, 1)
                                  : PQexecParams(d->conn, sql, p->n, q.types,
                                                 q.vals, q.lens, q.fmts, 1),
                     PGRES_TUPLES_OK, &r);
    if (e != HK_OK)
        return e;
    c->st = r;
    c->nrows = PQntuples(r);
    c->changes = atoi(PQcmdTuples(r));
    return HK_OK;
}

static hk_err hk_pg_next(hk_sql_cur *c, int *row)
{
    if (c->row < c->nrows)
        c->row++;
    *row = c->row < c->nrows;
    return HK_OK;
}

static void hk_pg_finish(hk_sql_cur *c) { PQclear(c->st); }

static hk_sql_type hk_pg_col_type(const hk_sql_cur *c, int i)
{
    if (c->row < 0 || c->row >= c->nrows || i >= PQnfields(c->st))
        return HK_SQL_OTHER;
    if (PQgetisnull(c->st, c->row, i))
        return HK_SQL_NULL;
    switch (PQftype(c->st, i)) {
    case HK_PG_INT2:
    case HK_PG_INT4:
    case HK_PG_INT8:
        return HK_SQL_INT;
    case HK_PG_FLOAT8:
        return HK_SQL_REAL;
    case HK_PG_TEXT:
    case HK_PG_VARCHAR:
        return HK_SQL_TEXT;
    case HK_PG_BYTEA:
        return HK_SQL_BLOB;
    default:
        return HK_SQL_OTHER;
    }
}

/* A binary big-endian value of exactly `width` bytes. */
static hk_err hk_pg_be(const hk_sql_cur *c, int i, int width, uint64_t *out)
{
    const unsigned char *p;
    int k;

    if (PQgetlength(c->st, c->row, i) != width)
        return HK_ERR_DECODE;
    p = (const unsigned char *)PQgetvalue(c->st, c->row, i);
    for (*out = 0, k = 0; k < width; k++)
        *out = (*out << 8) | p[k];
    return HK_OK;
}

static hk_err hk_pg_col_int(const hk_sql_cur *c, int i, int64_t *v)
{
    Oid t = PQftype(c->st, i);
    int width = t == HK_PG_INT8 ? 8 : t == HK_PG_INT4 ? 4 : 2;
    uint64_t u = 0;
    hk_err e = hk_pg_be(c, i, width, &u);

    if (width < 8 && (u >> (8 * width - 1)) != 0) /* sign-extend */
        u |= ~(uint64_t)0 << (8 * width);
    *v = (int64_t)u;
    return e;
}

static hk_err hk_pg_col_real(const hk_sql_cur *c, int i, double *v)
{
    uint64_t u = 0;
    hk_err e = hk_pg_be(c, i, 8, &u);

    memcpy(v, &u, 8);
    return e;
}

static const unsigned char *hk_pg_col_bytes(const hk_sql_cur *c, int i,
                                            size_t *n)
{
    int len = PQgetlength(c->st, c->row, i);

    *n = len > 0 ? (size_t)len : 0;
    return (const unsigned char *)PQgetvalue(c->st, c->row, i);
}

/* A database without our version table must hold no table of ours. */
static hk_err hk_pg_claim(hk_db *db)
{
    int64_t n = 0;
    hk_err e = hk_sql_int(db,
                          "SELECT count(*) FROM information_schema.tables "
                          "WHERE table_schema = current_schema() AND "
                          "table_name IN ('keys', 'shares', 'sessions', "
                          "'setup', 'audit', 'buckets', 'health')",
                          NULL, &n);

    if (e == HK_OK && n != 0) {
        hk_db_set_err(db, "not a halfkey database (foreign tables)");
        e = HK_ERR_CONFIG;
    }
    return e;
}

static void hk_pg_close(hk_db *db)
{
    hk_pg *d = (hk_pg *)db;

    hk_pg_forget(d);
    PQfinish(d->conn);
    OPENSSL_free(d);
}

static const hk_sql_ops hk_pg_ops = {
    .name = "postgresql",
    .dialect = HK_SQL_PG,
    .close = hk_pg_close,
    .begin = hk_pg_begin,
    .end = hk_pg_end,
    .lock = hk_pg_lock,
    .script = hk_pg_script,
    .query = hk_pg_query,
    .next = hk_pg_next,
    .finish = hk_pg_finish,
    .col_type = hk_pg_col_type,
    .col_int = hk_pg_col_int,
    .col_real = hk_pg_col_real,
    .col_bytes = hk_pg_col_bytes,
    .claim = hk_pg_claim,
};

/* --- opening -------------------------------------------------------------- */

static void hk_pg_quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message; /* NOTICEs (e.g. from migrations) are not errors */
}

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
    d->base.ops = &hk_store_ops;
    d->base.x = &hk_pg_ops;
    d->conn = PQconnectdb(conninfo);
    if (d->conn == NULL || PQstatus(d->conn) != CONNECTION_OK) {
        hk_db_set_err(&d->base, "cannot connect: %.*s",
                      (int)strcspn(PQerrorMessage(d->conn), "\n"),
                      PQerrorMessage(d->conn));
        goto fail;
    }
    PQsetNoticeProcessor(d->conn, hk_pg_quiet, NULL);
    if ((e = hk_schema_migrate(&d->base)) != HK_OK)
        goto fail;
    *out = &d->base;
    return HK_OK;
fail:
    /* the connection string may hold a password: never echo it */
    hk_why(why, whylen, "database (postgresql): %s", d->base.err);
    hk_pg_close(&d->base);
    return e;
}
