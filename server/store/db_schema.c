/* The storage schema (db.h) and its migrations, written once for both
 * back ends in the dialect tokens of db_impl.h. Migration i brings the
 * schema from version i to i + 1; never edit one that has shipped: append
 * a new one. */
#include <string.h>

#include "server/store/db_impl.h"

/* The audit log's append-only guard: triggers are the one thing the two
 * dialects cannot say alike. */
static const char hk_guard_sqlite[] =
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;"
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;";
static const char hk_guard_pg[] =
    "CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql"
    " AS $$ BEGIN RAISE EXCEPTION 'audit log is append-only'; END $$;"
    "CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE OR TRUNCATE"
    " ON audit FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();";

typedef struct {
    const char *sql;   /* both dialects */
    int audit_guard;   /* then the dialect's append-only guard */
    const char *after; /* both dialects, after the guard */
} hk_migration;

static const hk_migration hk_migrations[] = {
    /* 1: initial schema */
    {"CREATE TABLE keys ("
     " kid {BLOB} PRIMARY KEY NOT NULL CHECK (length(kid) = 16),"
     " owner TEXT NOT NULL CHECK ({OCTETS:owner} BETWEEN 1 AND 255),"
     " curve TEXT NOT NULL CHECK (curve IN ('secp256k1', 'p256')),"
     " pubkey {BLOB} NOT NULL CHECK (length(pubkey) = 33),"
     " created {INT} NOT NULL,"
     " disabled {INT} NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),"
     " label TEXT CHECK (label IS NULL OR"
     "  {OCTETS:label} BETWEEN 1 AND 128)"
     "){STRICT};"
     "CREATE INDEX keys_owner ON keys (owner, created);"
     "CREATE TABLE shares ("
     " kid {BLOB} NOT NULL REFERENCES keys (kid) ON DELETE CASCADE,"
     " epoch {INT} NOT NULL CHECK (epoch BETWEEN 1 AND 4294967295),"
     " state TEXT NOT NULL CHECK (state IN ('active', 'pending')),"
     " sealed {BLOB} NOT NULL,"
     " PRIMARY KEY (kid, epoch),"
     " UNIQUE (kid, state)"
     "){STRICT};"
     "CREATE TABLE sessions ("
     " sid {BLOB} PRIMARY KEY NOT NULL CHECK (length(sid) = 16),"
     " owner TEXT NOT NULL CHECK ({OCTETS:owner} BETWEEN 1 AND 255),"
     " op TEXT NOT NULL CHECK (op IN ('keygen', 'sign', 'refresh')),"
     " kid {BLOB} CHECK (kid IS NULL OR length(kid) = 16),"
     " created {INT} NOT NULL,"
     " last_seen {INT} NOT NULL,"
     " state TEXT NOT NULL"
     "  CHECK (state IN ('open', 'running', 'done', 'failed'))"
     "){STRICT};"
     "CREATE INDEX sessions_last_seen ON sessions (last_seen);"
     "CREATE TABLE setup ("
     " id {INT} PRIMARY KEY CHECK (id = 1),"
     " sealed {BLOB} NOT NULL,"
     " public {BLOB} NOT NULL,"
     " created {INT} NOT NULL"
     "){STRICT};",
     0, NULL},
    /* 2: per-key limits, keygen curve, audit log, rate buckets */
    {"ALTER TABLE keys ADD COLUMN max_hour {INT} NOT NULL DEFAULT 0"
     " CHECK (max_hour BETWEEN 0 AND 1000000);"
     "ALTER TABLE keys ADD COLUMN max_day {INT} NOT NULL DEFAULT 0"
     " CHECK (max_day BETWEEN 0 AND 1000000);"
     "ALTER TABLE sessions ADD COLUMN curve TEXT"
     " CHECK (curve IS NULL OR curve IN ('secp256k1', 'p256'));"
     "CREATE TABLE audit ("
     " seq {INT} PRIMARY KEY NOT NULL CHECK (seq >= 1),"
     " time {INT} NOT NULL,"
     " node TEXT NOT NULL,"
     " subject TEXT NOT NULL,"
     " kid {BLOB} CHECK (kid IS NULL OR length(kid) = 16),"
     " sid {BLOB} CHECK (sid IS NULL OR length(sid) = 16),"
     " event TEXT NOT NULL,"
     " outcome TEXT NOT NULL,"
     " detail TEXT NOT NULL,"
     " digest {BLOB} NOT NULL CHECK (length(digest) <= 64),"
     " signature {BLOB} NOT NULL CHECK (length(signature) <= 72),"
     " prev {BLOB} NOT NULL CHECK (length(prev) = 32),"
     " hash {BLOB} NOT NULL CHECK (length(hash) = 32)"
     "){STRICT};"
     "CREATE INDEX audit_kid ON audit (kid, event, time);",
     1,
     "CREATE TABLE buckets ("
     " subject TEXT PRIMARY KEY NOT NULL,"
     " tokens {REAL} NOT NULL,"
     " updated {REAL} NOT NULL"
     "){STRICT};"},
    /* 3: two-phase keygen; the node that claimed a session; health
     * probes */
    {"ALTER TABLE keys ADD COLUMN pending {INT} NOT NULL DEFAULT 0"
     " CHECK (pending IN (0, 1));"
     "CREATE INDEX keys_pending ON keys (pending, created);"
     "ALTER TABLE sessions ADD COLUMN node TEXT;"
     "CREATE TABLE health ("
     " node TEXT PRIMARY KEY NOT NULL,"
     " probed {INT} NOT NULL"
     "){STRICT};",
     0, NULL},
    /* 4: key backups (issue 18): the client share x1 encrypted under the
     * owner's offline backup key with a publicly verifiable encryption
     * (mpc/pve.h), verified before it is stored; one per key and epoch */
    {"CREATE TABLE backups ("
     " kid {BLOB} NOT NULL REFERENCES keys (kid) ON DELETE CASCADE,"
     " epoch {INT} NOT NULL CHECK (epoch BETWEEN 1 AND 4294967295),"
     " bk_fp {BLOB} NOT NULL CHECK (length(bk_fp) = 32),"
     " pve {BLOB} NOT NULL CHECK (length(pve) BETWEEN 1 AND 131072),"
     " created {INT} NOT NULL,"
     " PRIMARY KEY (kid, epoch)"
     "){STRICT};",
     0, NULL},
    /* 5: signing requests that wait for the owner (issue 19), their
     * signatures, approvals and callback queue; sessions bound to one */
    {"CREATE TABLE requests ("
     " rid {BLOB} PRIMARY KEY NOT NULL CHECK (length(rid) = 16),"
     " kid {BLOB} NOT NULL REFERENCES keys (kid) ON DELETE CASCADE,"
     " owner TEXT NOT NULL CHECK ({OCTETS:owner} BETWEEN 1 AND 255),"
     " requester TEXT NOT NULL CHECK ({OCTETS:requester} BETWEEN 1 AND 255),"
     " kind TEXT NOT NULL CHECK (kind IN ('digest', 'btc-psbt', 'eth-tx')),"
     " network TEXT NOT NULL,"
     " payload {BLOB} NOT NULL CHECK (length(payload) BETWEEN 1 AND 1048576),"
     " digests {BLOB} NOT NULL CHECK (length(digests) BETWEEN 1 AND 16384),"
     " dlen {INT} NOT NULL CHECK (dlen BETWEEN 1 AND 64),"
     " state TEXT NOT NULL CHECK (state IN ('pending', 'signed', 'rejected',"
     "  'expired', 'failed')),"
     " reason TEXT NOT NULL,"
     " metadata TEXT NOT NULL CHECK ({OCTETS:metadata} BETWEEN 2 AND 4096),"
     " callback_url TEXT NOT NULL,"
     " created {INT} NOT NULL,"
     " expires {INT} NOT NULL,"
     " updated {INT} NOT NULL,"
     " result {BLOB},"
     " cb_state TEXT NOT NULL DEFAULT 'none' CHECK (cb_state IN ('none',"
     "  'queued', 'delivered', 'failed')),"
     " cb_attempts {INT} NOT NULL DEFAULT 0,"
     " cb_next {INT} NOT NULL DEFAULT 0"
     "){STRICT};"
     "CREATE INDEX requests_owner ON requests (owner, state, created);"
     "CREATE INDEX requests_expiry ON requests (state, expires);"
     "CREATE INDEX requests_callbacks ON requests (cb_state, cb_next);"
     "CREATE TABLE request_sigs ("
     " rid {BLOB} NOT NULL REFERENCES requests (rid) ON DELETE CASCADE,"
     " idx {INT} NOT NULL CHECK (idx BETWEEN 0 AND 255),"
     " sig {BLOB} NOT NULL CHECK (length(sig) = 64),"
     " created {INT} NOT NULL,"
     " PRIMARY KEY (rid, idx)"
     "){STRICT};"
     "CREATE TABLE request_approvals ("
     " rid {BLOB} NOT NULL REFERENCES requests (rid) ON DELETE CASCADE,"
     " approver TEXT NOT NULL CHECK ({OCTETS:approver} BETWEEN 1 AND 255),"
     " created {INT} NOT NULL,"
     " PRIMARY KEY (rid, approver)"
     "){STRICT};"
     "ALTER TABLE sessions ADD COLUMN rid {BLOB}"
     " CHECK (rid IS NULL OR length(rid) = 16);"
     "ALTER TABLE sessions ADD COLUMN ridx {INT}"
     " CHECK (ridx IS NULL OR ridx BETWEEN 0 AND 255);",
     0, NULL},
    /* 6: device attestation (issue 22): the challenge of a keygen session
     * and its outcome; an attested key's summary */
    {"CREATE TABLE attestations ("
     " sid {BLOB} PRIMARY KEY NOT NULL"
     "  REFERENCES sessions (sid) ON DELETE CASCADE,"
     " state TEXT NOT NULL"
     "  CHECK (state IN ('challenged', 'verified', 'refused')),"
     " cred_hash {BLOB} NOT NULL CHECK (length(cred_hash) = 32),"
     " ak_pub {BLOB} NOT NULL CHECK (length(ak_pub) BETWEEN 1 AND 1024),"
     " summary TEXT NOT NULL CHECK ({OCTETS:summary} BETWEEN 1 AND 400)"
     "){STRICT};"
     "ALTER TABLE keys ADD COLUMN attestation TEXT"
     " CHECK (attestation IS NULL OR {OCTETS:attestation} BETWEEN 1 AND 400);",
     0, NULL},
    /* 7: presignatures (issue 20): the server's half of each, sealed,
     * single use (db.h "presigs") */
    {"CREATE TABLE presigs ("
     " psid {BLOB} PRIMARY KEY NOT NULL CHECK (length(psid) = 16),"
     " kid {BLOB} NOT NULL REFERENCES keys (kid) ON DELETE CASCADE,"
     " owner TEXT NOT NULL CHECK ({OCTETS:owner} BETWEEN 1 AND 255),"
     " epoch {INT} NOT NULL CHECK (epoch BETWEEN 1 AND 4294967295),"
     " sealed {BLOB} NOT NULL CHECK (length(sealed) BETWEEN 1 AND 4096),"
     " created {INT} NOT NULL,"
     " seq {INT} NOT NULL"
     "){STRICT};"
     "CREATE INDEX presigs_kid ON presigs (kid, seq);"
     "CREATE INDEX presigs_owner ON presigs (owner);"
     "CREATE INDEX presigs_created ON presigs (created);",
     0, NULL},
    /* 8: the sessions bound to a request, found by it (the request rules
     * count a request whose sign is running: hk_db_request_inflight) */
    {"CREATE INDEX sessions_rid ON sessions (rid) WHERE rid IS NOT NULL;", 0,
     NULL},
};

#define HK_NMIGRATIONS ((int)(sizeof(hk_migrations) / sizeof(hk_migrations[0])))

_Static_assert(HK_NMIGRATIONS == HK_DB_SCHEMA_VERSION,
               "one migration per schema version");

static hk_err hk_schema_apply_one(hk_db *db, int i)
{
    const hk_migration *m = &hk_migrations[i];
    hk_dbp p = {0};
    hk_err e;

    if ((e = hk_sql_script(db, m->sql)) != HK_OK ||
        (m->audit_guard &&
         (e = db->x->script(db, db->x->dialect == HK_SQL_PG
                                    ? hk_guard_pg
                                    : hk_guard_sqlite)) != HK_OK) ||
        (m->after != NULL && (e = hk_sql_script(db, m->after)) != HK_OK))
        return e;
    hk_dbp_int(&p, i + 1);
    return hk_sql_run(db, "INSERT INTO schema_version (version) VALUES (?1)",
                      &p, NULL);
}

hk_err hk_schema_migrate(hk_db *db)
{
    int64_t v = 0;
    int i;
    hk_err e;

    if ((e = hk_sql_begin(db)) != HK_OK)
        return e;
    if ((e = db->x->lock(db, HK_SQL_LOCK_MIGRATE)) != HK_OK ||
        (e = hk_sql_script(db, "CREATE TABLE IF NOT EXISTS schema_version "
                               "(version {INT} PRIMARY KEY NOT NULL)"
                               "{STRICT}")) != HK_OK ||
        (e = hk_sql_int(db,
                        "SELECT coalesce(max(version), 0) FROM "
                        "schema_version",
                        NULL, &v)) != HK_OK)
        return hk_sql_end(db, e);
    if (v < 0 || v > HK_NMIGRATIONS) {
        hk_db_set_err(db,
                      "database schema version %lld is not one this server "
                      "knows (up to %d)",
                      (long long)v, HK_NMIGRATIONS);
        return hk_sql_end(db, HK_ERR_VERSION);
    }
    if (v == 0)
        e = db->x->claim(db);
    for (i = (int)v; i < HK_NMIGRATIONS && e == HK_OK; i++)
        e = hk_schema_apply_one(db, i);
    return hk_sql_end(db, e);
}
