/* The SQLite executor of the storage layer (hk_sql_ops, db_impl.h): opens
 * and configures the database file, prepares, binds, steps and reads
 * typed columns. The operations and the schema are in db_store.c and
 * db_schema.c.
 *
 * Every statement is prepared with bound parameters (no SQL is built from
 * data). Transactions are BEGIN IMMEDIATE: the write lock is taken first,
 * so two connections never deadlock upgrading a read lock, and one writer
 * at a time is also what serialises the operations that PostgreSQL needs
 * row and advisory locks for (lock is a no-op here).
 *
 * Deferred durability (db.h, HK_DB_DEFERRED): such a group commits with
 * synchronous=NORMAL (the WAL frames are written, not synced), then the
 * handle's syncer thread fdatasyncs the WAL file: one sync covers every
 * frame written before it, i.e. every group committed while the previous
 * sync ran (group commit). The thread opens the WAL by its path for each
 * sync (SQLite's own file object is not ours to share across threads);
 * a WAL that SQLite removed meanwhile was checkpointed into the database
 * file, which is then synced instead.
 *
 * Prepared statements are kept (HK_SQ_CACHE per handle, by their rendered
 * text): a sign runs the same dozen statements every time, and compiling
 * one costs more than running it. A cached statement is reset and its
 * bindings cleared when its cursor finishes, so it holds no read
 * transaction and points at no caller's memory; one still in use (a
 * cursor open while the same text runs again) is not shared: the second
 * use gets a statement of its own, finalized when it finishes. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <sqlite3.h>

#include "server/store/db_impl.h"
#include "common/why.h"

#define HK_SQ_APP_ID 0x686b6462 /* "hkdb" */
#define HK_SQ_CACHE 96          /* more than the statements a server runs */

/* One kept statement: its text's hash and copy, in use or not, last use. */
typedef struct {
    uint64_t hash, used;
    char *sql;
    sqlite3_stmt *st;
    int busy;
} hk_sq_stmt;

typedef struct {
    hk_db base; /* first: a hk_db * is a hk_sq * */
    sqlite3 *conn;
    hk_sq_stmt cache[HK_SQ_CACHE];
    uint64_t tick;
    /* deferred durability: the files synced (NULL: cannot defer) and the
     * syncer's state, under smu */
    char *path, *wal;
    pthread_mutex_t smu;
    pthread_cond_t wake, done;
    pthread_t syncer;
    int syncer_on, stop, failed;
    uint64_t committed, synced; /* tickets */
} hk_sq;

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

static hk_err hk_sq_query(hk_db *db, const char *sql, const hk_dbp *p,
                          hk_sql_cur *c);
static void hk_sq_finish(hk_sql_cur *c);

/* A script of one statement (no ';': BEGIN, COMMIT, a PRAGMA) runs as a
 * kept statement; others through sqlite3_exec. */
static hk_err hk_sq_script(hk_db *db, const char *sql)
{
    static const hk_dbp none = {0};
    hk_sq *d = (hk_sq *)db;
    hk_sql_cur c;
    hk_err e;
    int rc;

    if (strchr(sql, ';') != NULL)
        return hk_sq_err(d, sqlite3_exec(d->conn, sql, NULL, NULL, NULL));
    memset(&c, 0, sizeof(c));
    c.db = db;
    if ((e = hk_sq_query(db, sql, &none, &c)) != HK_OK)
        return e;
    while ((rc = sqlite3_step(c.st)) == SQLITE_ROW)
        ;
    e = hk_sq_err(d, rc);
    hk_sq_finish(&c);
    return e;
}

static hk_err hk_sq_begin(hk_db *db)
{
    return hk_sq_script(db, "BEGIN IMMEDIATE");
}

static hk_err hk_sq_end(hk_db *db, hk_err e)
{
    hk_sq *d = (hk_sq *)db;

    if (e == HK_OK)
        e = hk_sq_script(db, "COMMIT");
    if (e != HK_OK && !sqlite3_get_autocommit(d->conn))
        (void)sqlite3_exec(d->conn, "ROLLBACK", NULL, NULL, NULL);
    return e;
}

static hk_err hk_sq_lock(hk_db *db, hk_sql_lock which)
{
    (void)db; /* the write transaction already excludes other writers */
    (void)which;
    return HK_OK;
}

static int hk_sq_bind(sqlite3_stmt *st, int i, const hk_dbp *p)
{
    if (p->v[i].null)
        return sqlite3_bind_null(st, i + 1);
    switch (p->v[i].t) {
    case HK_DBP_BLOB:
        return sqlite3_bind_blob(st, i + 1, p->v[i].p, (int)p->v[i].len,
                                 SQLITE_STATIC);
    case HK_DBP_TEXT:
        return sqlite3_bind_text(st, i + 1, p->v[i].p, -1, SQLITE_STATIC);
    case HK_DBP_INT:
        return sqlite3_bind_int64(st, i + 1, p->v[i].i);
    case HK_DBP_REAL:
        return sqlite3_bind_double(st, i + 1, p->v[i].f);
    default:
        return sqlite3_bind_null(st, i + 1);
    }
}

/* FNV-1a of the statement's text. */
static uint64_t hk_sq_hash(const char *sql)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    for (; *sql != '\0'; sql++)
        h = (h ^ (unsigned char)*sql) * 0x100000001b3ULL;
    return h;
}

/* The kept entry of this text, or NULL. */
static hk_sq_stmt *hk_sq_cached(hk_sq *d, const char *sql, uint64_t h)
{
    size_t i;

    for (i = 0; i < HK_SQ_CACHE; i++)
        if (d->cache[i].st != NULL && d->cache[i].hash == h &&
            strcmp(d->cache[i].sql, sql) == 0)
            return &d->cache[i];
    return NULL;
}

/* A slot for a new entry: a free one, else the least recently used one
 * not in use (its statement finalized); NULL if all are in use. */
static hk_sq_stmt *hk_sq_slot(hk_sq *d)
{
    hk_sq_stmt *best = NULL;
    size_t i;

    for (i = 0; i < HK_SQ_CACHE; i++) {
        if (d->cache[i].st == NULL)
            return &d->cache[i];
        if (!d->cache[i].busy &&
            (best == NULL || d->cache[i].used < best->used))
            best = &d->cache[i];
    }
    if (best != NULL) {
        sqlite3_finalize(best->st);
        OPENSSL_free(best->sql);
        memset(best, 0, sizeof(*best));
    }
    return best;
}

/* A statement for sql, ready to bind: the kept one if it is free, else a
 * new one, kept if a slot and memory allow. */
static int hk_sq_prepare(hk_sq *d, const char *sql, sqlite3_stmt **st)
{
    uint64_t h = hk_sq_hash(sql);
    hk_sq_stmt *k = hk_sq_cached(d, sql, h);
    int rc;

    if (k != NULL && !k->busy) {
        k->busy = 1;
        k->used = ++d->tick;
        *st = k->st;
        return SQLITE_OK;
    }
    if ((rc = sqlite3_prepare_v2(d->conn, sql, -1, st, NULL)) != SQLITE_OK ||
        k != NULL || (k = hk_sq_slot(d)) == NULL ||
        (k->sql = OPENSSL_strdup(sql)) == NULL)
        return rc;
    k->hash = h;
    k->st = *st;
    k->busy = 1;
    k->used = ++d->tick;
    return SQLITE_OK;
}

static hk_err hk_sq_query(hk_db *db, const char *sql, const hk_dbp *p,
                          hk_sql_cur *c)
{
    hk_sq *d = (hk_sq *)db;
    sqlite3_stmt *st = NULL;
    int i, rc;

    rc = hk_sq_prepare(d, sql, &st);
    for (i = 0; i < p->n && rc == SQLITE_OK; i++)
        rc = hk_sq_bind(st, i, p);
    c->st = st;
    if (rc != SQLITE_OK) {
        hk_sq_finish(c);
        c->st = NULL;
        return hk_sq_err(d, rc);
    }
    return HK_OK;
}

static hk_err hk_sq_next(hk_sql_cur *c, int *row)
{
    hk_sq *d = (hk_sq *)c->db;
    int rc = sqlite3_step(c->st);

    *row = rc == SQLITE_ROW;
    if (rc == SQLITE_DONE)
        c->changes = sqlite3_changes(d->conn);
    return hk_sq_err(d, rc);
}

/* A kept statement is reset for its next use; any other finalized. */
static void hk_sq_finish(hk_sql_cur *c)
{
    hk_sq *d = (hk_sq *)c->db;
    size_t i;

    if (c->st == NULL)
        return;
    for (i = 0; i < HK_SQ_CACHE; i++)
        if (d->cache[i].st == c->st && d->cache[i].busy) {
            (void)sqlite3_reset(c->st);
            (void)sqlite3_clear_bindings(c->st);
            d->cache[i].busy = 0;
            return;
        }
    sqlite3_finalize(c->st);
}

static hk_sql_type hk_sq_col_type(const hk_sql_cur *c, int i)
{
    switch (sqlite3_column_type(c->st, i)) {
    case SQLITE_NULL:
        return HK_SQL_NULL;
    case SQLITE_INTEGER:
        return HK_SQL_INT;
    case SQLITE_FLOAT:
        return HK_SQL_REAL;
    case SQLITE_TEXT:
        return HK_SQL_TEXT;
    case SQLITE_BLOB:
        return HK_SQL_BLOB;
    default:
        return HK_SQL_OTHER;
    }
}

static hk_err hk_sq_col_int(const hk_sql_cur *c, int i, int64_t *v)
{
    *v = sqlite3_column_int64(c->st, i);
    return HK_OK;
}

static hk_err hk_sq_col_real(const hk_sql_cur *c, int i, double *v)
{
    *v = sqlite3_column_double(c->st, i);
    return HK_OK;
}

static const unsigned char *hk_sq_col_bytes(const hk_sql_cur *c, int i,
                                            size_t *n)
{
    const unsigned char *p = sqlite3_column_type(c->st, i) == SQLITE_TEXT
                                 ? sqlite3_column_text(c->st, i)
                                 : sqlite3_column_blob(c->st, i);
    int len = sqlite3_column_bytes(c->st, i);

    *n = len > 0 ? (size_t)len : 0;
    return p;
}

/* A database without our version table must hold no other table; then it
 * is marked as ours. */
static hk_err hk_sq_claim(hk_db *db)
{
    char sql[64];
    int64_t n = 0;
    hk_err e;

    if ((e = hk_sql_int(db,
                        "SELECT count(*) FROM sqlite_schema WHERE type = "
                        "'table' AND name <> 'schema_version' AND name NOT "
                        "LIKE 'sqlite\\_%' ESCAPE '\\'",
                        NULL, &n)) != HK_OK)
        return e;
    if (n != 0) {
        hk_db_set_err(db, "not a halfkey database (foreign tables)");
        return HK_ERR_CONFIG;
    }
    snprintf(sql, sizeof(sql), "PRAGMA application_id = %d", HK_SQ_APP_ID);
    return hk_sq_script(db, sql);
}

/* fdatasync of the WAL, or of the database file if SQLite removed the
 * WAL (a checkpoint moved every frame there). 0 or -1. */
static int hk_sq_sync_files(const hk_sq *d)
{
    int fd = open(d->wal, O_RDONLY | O_CLOEXEC), rc;

    if (fd < 0 && errno == ENOENT)
        fd = open(d->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    rc = fdatasync(fd);
    if (close(fd) != 0)
        rc = -1;
    return rc;
}

static void *hk_sq_syncer(void *arg)
{
    hk_sq *d = arg;
    uint64_t target;
    int rc;

    pthread_mutex_lock(&d->smu);
    for (;;) {
        while (!d->stop && (d->synced == d->committed || d->failed))
            pthread_cond_wait(&d->wake, &d->smu);
        if (d->synced == d->committed || d->failed)
            break; /* stopping, nothing left to sync */
        target = d->committed;
        pthread_mutex_unlock(&d->smu);
        rc = hk_sq_sync_files(d);
        pthread_mutex_lock(&d->smu);
        if (rc == 0)
            d->synced = target;
        else
            d->failed = 1; /* the kernel may have dropped the pages */
        pthread_cond_broadcast(&d->done);
    }
    pthread_mutex_unlock(&d->smu);
    return NULL;
}

static int hk_sq_can_defer(hk_db *db) { return ((hk_sq *)db)->wal != NULL; }

static hk_err hk_sq_sync_start(hk_db *db, uint64_t *ticket)
{
    hk_sq *d = (hk_sq *)db;
    hk_err e = HK_OK;

    *ticket = 0;
    pthread_mutex_lock(&d->smu);
    if (!d->failed && !d->syncer_on &&
        pthread_create(&d->syncer, NULL, hk_sq_syncer, d) == 0)
        d->syncer_on = 1;
    if (d->failed || !d->syncer_on) {
        hk_db_set_err(db, d->failed ? "an earlier sync of the WAL failed"
                                    : "cannot start the WAL syncer");
        e = HK_ERR_IO;
    } else {
        *ticket = ++d->committed;
        pthread_cond_signal(&d->wake);
    }
    pthread_mutex_unlock(&d->smu);
    return e;
}

static hk_err hk_sq_sync_wait(hk_db *db, uint64_t ticket)
{
    hk_sq *d = (hk_sq *)db;
    hk_err e;

    pthread_mutex_lock(&d->smu);
    while (d->synced < ticket && !d->failed)
        pthread_cond_wait(&d->done, &d->smu);
    e = d->synced >= ticket ? HK_OK : HK_ERR_IO;
    pthread_mutex_unlock(&d->smu);
    return e;
}

static void hk_sq_close(hk_db *db)
{
    hk_sq *d = (hk_sq *)db;
    size_t i;

    pthread_mutex_lock(&d->smu);
    d->stop = 1;
    pthread_cond_signal(&d->wake);
    pthread_mutex_unlock(&d->smu);
    if (d->syncer_on)
        pthread_join(d->syncer, NULL); /* after the last pending sync */
    pthread_cond_destroy(&d->wake);
    pthread_cond_destroy(&d->done);
    pthread_mutex_destroy(&d->smu);
    for (i = 0; i < HK_SQ_CACHE; i++) {
        sqlite3_finalize(d->cache[i].st);
        OPENSSL_free(d->cache[i].sql);
    }
    sqlite3_close(d->conn);
    OPENSSL_free(d->path);
    OPENSSL_free(d->wal);
    OPENSSL_free(d);
}

static const hk_sql_ops hk_sq_ops = {
    .name = "sqlite",
    .dialect = HK_SQL_SQLITE,
    .close = hk_sq_close,
    .begin = hk_sq_begin,
    .end = hk_sq_end,
    .lock = hk_sq_lock,
    .script = hk_sq_script,
    .query = hk_sq_query,
    .next = hk_sq_next,
    .finish = hk_sq_finish,
    .col_type = hk_sq_col_type,
    .col_int = hk_sq_col_int,
    .col_real = hk_sq_col_real,
    .col_bytes = hk_sq_col_bytes,
    .claim = hk_sq_claim,
    .can_defer = hk_sq_can_defer,
    .sync_start = hk_sq_sync_start,
    .sync_wait = hk_sq_sync_wait,
};

/* --- opening -------------------------------------------------------------- */

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

/* journal_mode=WAL answers the mode in effect: it must be "wal". */
static hk_err hk_sq_wal(hk_sq *d, const char *path)
{
    char mode[16] = "";
    hk_sql_cur c;
    int row = 0;
    hk_err e;

    if ((e = hk_sql_query(&d->base, "PRAGMA journal_mode = WAL", NULL, &c)) ==
            HK_OK &&
        (e = hk_sql_next(&c, &row)) == HK_OK && row)
        e = hk_col_text(&c, 0, mode, sizeof(mode) - 1);
    hk_sql_done(&c);
    if (e == HK_OK && strcmp(mode, "wal") != 0 &&
        strcmp(path, ":memory:") != 0) {
        hk_db_set_err(&d->base, "cannot use WAL (journal mode %s)", mode);
        e = HK_ERR_IO;
    }
    return e;
}

static hk_err hk_sq_configure(hk_sq *d, const char *path)
{
    hk_db *db = &d->base;
    int64_t app = 0, fk = 0;
    hk_err e;

    if ((e = hk_sql_int(db, "PRAGMA application_id", NULL, &app)) != HK_OK)
        return e;
    if (app != 0 && app != HK_SQ_APP_ID) {
        hk_db_set_err(db, "not a halfkey database (application_id %lld)",
                      (long long)app);
        return HK_ERR_CONFIG;
    }
    if ((e = hk_sq_script(db, "PRAGMA foreign_keys = ON")) != HK_OK ||
        (e = hk_sql_int(db, "PRAGMA foreign_keys", NULL, &fk)) != HK_OK)
        return e;
    if (fk != 1) {
        hk_db_set_err(db, "SQLite without foreign keys");
        return HK_ERR_IO;
    }
    if ((e = hk_sq_wal(d, path)) != HK_OK ||
        (e = hk_sq_script(db, "PRAGMA synchronous = FULL")) != HK_OK)
        return e;
    return hk_sq_script(db, "PRAGMA secure_delete = ON");
}

/* The files a deferred group's sync covers, by absolute path (the
 * process may change directory); none for an in-memory or URI database
 * (its groups commit durably). Call once the file exists. */
static hk_err hk_sq_paths(hk_sq *d, const char *path)
{
    char *abs;
    size_t n;

    if (strcmp(path, ":memory:") == 0 || strncmp(path, "file:", 5) == 0)
        return HK_OK;
    if ((abs = realpath(path, NULL)) == NULL) {
        hk_db_set_err(&d->base, "cannot resolve: %s", strerror(errno));
        return HK_ERR_IO;
    }
    n = strlen(abs) + sizeof("-wal");
    if ((d->path = OPENSSL_strdup(abs)) != NULL &&
        (d->wal = OPENSSL_malloc(n)) != NULL)
        snprintf(d->wal, n, "%s-wal", abs);
    free(abs);
    return d->wal != NULL ? HK_OK : HK_ERR_NOMEM;
}

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
    d->base.ops = &hk_store_ops;
    d->base.x = &hk_sq_ops;
    pthread_mutex_init(&d->smu, NULL);
    pthread_cond_init(&d->wake, NULL);
    pthread_cond_init(&d->done, NULL);
    if ((e = hk_sq_precreate(d, path)) != HK_OK ||
        (e = hk_sq_paths(d, path)) != HK_OK ||
        (e = hk_sq_connect(d, path)) != HK_OK ||
        (e = hk_sq_configure(d, path)) != HK_OK ||
        (e = hk_schema_migrate(&d->base)) != HK_OK) {
        hk_why(why, whylen, "database %s: %s", path, d->base.err);
        hk_sq_close(&d->base);
        return e;
    }
    *out = &d->base;
    return HK_OK;
}
