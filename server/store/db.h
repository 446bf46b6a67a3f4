/* The commitment server's storage: keys, sealed server shares, sessions and
 * the server's setup record, behind one back-end interface (hk_db_ops in
 * server/store/db_impl.h): SQLite or PostgreSQL, with the same schema
 * and the same tests.
 *
 * Owns the schema, its migrations, the rules below, and the combination of
 * sealing (server/seal/seal.h) with storage for server shares and the setup.
 *
 * Schema, version 8 (HK_DB_SCHEMA_VERSION; version 1 lacked the columns
 * and tables marked v2, version 2 those marked v3, version 3 those marked
 * v4, version 4 those marked v5, version 5 those marked v6, version 6
 * those marked v7). Times are seconds
 * since the epoch, passed in by the caller. Ids are 16 raw bytes.
 *
 *   schema_version  version INTEGER PK        one row per applied migration
 *   keys            kid BLOB(16) PK
 *                   owner TEXT                JWT subject, 1..HK_SUB_MAX B
 *                   curve TEXT                'secp256k1' | 'p256'
 *                   pubkey BLOB(33)           compressed Q
 *                   created INTEGER
 *                   disabled INTEGER          0 | 1
 *                   label TEXT NULL           1..HK_LABEL_MAX B
 *                   max_hour INTEGER          v2: signs per hour, 0: the
 *                   max_day INTEGER           v2: ... per day; server's
 *                                             default (policy.h)
 *                   pending INTEGER           v3: 1 from keygen.4 until the
 *                                             client proves it stored its
 *                                             share (keygen.5, or a sign
 *                                             that verifies); 0 after
 *                   INDEX (owner, created)
 *   shares          kid BLOB(16) -> keys(kid) ON DELETE CASCADE
 *                   epoch INTEGER             1..2^32-1
 *                   state TEXT                'active' | 'pending'
 *                   sealed BLOB               hk_seal blob of the P2 share
 *                   PK (kid, epoch), UNIQUE (kid, state)
 *   sessions        sid BLOB(16) PK
 *                   owner TEXT
 *                   op TEXT                   'keygen' | 'sign' | 'refresh'
 *                   kid BLOB(16) NULL         no foreign key: a keygen
 *                                             session names a key to be
 *                   created, last_seen INTEGER
 *                   state TEXT                'open' | 'running' | 'done'
 *                                             | 'failed'
 *                   curve TEXT NULL           v2: a keygen's curve
 *                   node TEXT NULL            v3: the node that claimed it
 *                                             (hk_db_set_node)
 *                   INDEX (last_seen)
 *   setup           id INTEGER PK = 1         at most one row
 *                   sealed BLOB               hk_seal blob of the secret
 *                                             setup record (mpc/setup.h)
 *                   public BLOB               the public setup record
 *                   created INTEGER
 *   audit           v2, append-only (see hk_db_audit_append)
 *                   seq INTEGER PK            1, 2, 3, ... without gaps
 *                   time INTEGER
 *                   node TEXT                 the server node's name
 *                   subject TEXT NULL, kid BLOB(16) NULL, sid BLOB NULL
 *                   event TEXT                'keygen', 'sign', ...
 *                   outcome TEXT              'granted', 'ok', 'refused',
 *                                             'failed', ...
 *                   detail TEXT NULL          reason, bounded
 *                   digest BLOB NULL          0..64 B, the digest signed
 *                   signature BLOB NULL       0..72 B (r || s or DER)
 *                   prev BLOB(32), hash BLOB(32)   the chain
 *                   INDEX (kid, event, time)
 *   health          v3: node TEXT PK, probed INTEGER (hk_db_write_probe)
 *   backups         v4: kid BLOB(16) -> keys(kid) ON DELETE CASCADE
 *                   epoch INTEGER             the share version it backs up
 *                   bk_fp BLOB(32)            backup key fingerprint
 *                   pve BLOB                  1..HK_PVE_MAX_BLOB, a verified
 *                                             PVE blob (mpc/pve.h)
 *                   created INTEGER
 *                   PK (kid, epoch)
 *   buckets         v2: per-subject token buckets (rate limits)
 *   requests        v5: signing requests that wait for the owner (see
 *                   "requests" below): rid BLOB(16) PK, kid -> keys
 *                   ON DELETE CASCADE, owner, requester, kind, network,
 *                   payload, digests (n x dlen bytes the server computed),
 *                   state, reason, metadata (JSON text), callback_url,
 *                   created, expires, updated, result; cb_* the callback
 *                   queue (state, attempts, next try)
 *   request_sigs    v5: (rid, idx) PK -> requests ON DELETE CASCADE, sig
 *                   BLOB(64): the signature of digest idx
 *   request_approvals v5: (rid, approver) PK, time (quorum rules)
 *   sessions        v5 adds rid BLOB(16) NULL, ridx INTEGER NULL: a sign
 *                   session that co-signs digest ridx of request rid
 *   keys            v6 adds attestation TEXT NULL: an attested key's
 *                   summary (server/attest/attest.h), 1..HK_DB_ATTEST_MAX B
 *   attestations    v6: sid BLOB(16) PK -> sessions ON DELETE CASCADE;
 *                   state TEXT 'challenged' | 'verified' | 'refused',
 *                   cred_hash BLOB(32), ak_pub BLOB(1..1024), summary TEXT:
 *                   a keygen session's device attestation (see
 *                   "attestations" below)
 *   presigs         v7: psid BLOB(16) PK, kid -> keys ON DELETE CASCADE,
 *                   owner, epoch (the share it was made with), sealed
 *                   (hk_seal of the P2 presignature record and its r^N,
 *                   hk_presig_aad), created, seq (the key's insertion
 *                   order): the server's half of each presignature (see
 *                   "presignatures" below)
 *                   subject TEXT PK, tokens REAL, updated REAL (seconds)
 *
 * Rules every back end enforces:
 *  - Keys: keygen stores a pending key (with its active share); it
 *    becomes active on the client's proof (hk_db_key_confirm) or is swept
 *    (hk_db_key_sweep_pending). A pending key signs like any other: a
 *    signature that verifies is such a proof too.
 *  - Shares: at most one active and one pending share per key (the UNIQUE
 *    constraint), and a pending share's epoch is above the active one's.
 *    Keygen stores the active share; a refresh stores a pending one
 *    (replacing an older pending one); promotion makes the pending share
 *    active and deletes the old active one, in one transaction.
 *  - Sessions: alive while now < last_seen + idle; an expired session is
 *    treated as absent by every call (HK_ERR_SESSION) and deleted by
 *    hk_db_session_sweep. States move open -> running -> done | failed, or
 *    open -> failed; open -> running is the atomic claim of a session, so
 *    at most one WebSocket (on any node) runs it.
 *  - Every call is atomic: a failed call leaves the database unchanged.
 *  - Every value read is type- and length-checked; a row that breaks the
 *    bounds above gives HK_ERR_DECODE, a blob that fails authentication
 *    HK_ERR_SEAL. HK_ERR_IO is a database failure (hk_db_errmsg says
 *    which).
 *  - The SQLite back end: WAL journal, synchronous=FULL, foreign keys on,
 *    secure_delete on (deleted shares are overwritten in the main file),
 *    defensive mode, busy timeout HK_DB_BUSY_MS, file created with mode
 *    0600, application_id "hkdb"; pending migrations run at open in one
 *    transaction; a database of a newer schema is refused (HK_ERR_VERSION).
 *
 * Threads: an hk_db is one connection; use it from one thread at a time
 * (open one per worker thread: SQLite WAL lets readers run beside the one
 * writer). Strings are UTF-8 without control characters. */
#ifndef HK_DB_H
#define HK_DB_H

#include <stddef.h>
#include <stdint.h>

#include "mpc/presign.h"
#include "mpc/share.h"
#include "mpc/zk.h"
#include "server/seal/seal.h"

#define HK_DB_SCHEMA_VERSION 8
#define HK_LABEL_MAX 128           /* bytes */
#define HK_DB_ATTEST_MAX 400       /* an attestation summary, bytes */
#define HK_DB_AK_MAX 1024          /* an attestation key's public area */
#define HK_DB_IDLE_DEFAULT 300     /* session idle timeout, seconds */
#define HK_DB_IDLE_MAX (7 * 86400) /* the longest accepted idle timeout */
#define HK_DB_BUSY_MS 5000         /* wait for a locked database */
#define HK_DB_EPOCH_MAX 0xffffffffUL
#define HK_DB_LIMIT_MAX 1000000 /* largest per-key signs per hour/day */
#define HK_NODE_MAX 64          /* server node name, bytes */
#define HK_AUDIT_NAME_MAX 15    /* event and outcome names */
#define HK_AUDIT_DETAIL_MAX 200
#define HK_AUDIT_DIGEST_MAX 64
#define HK_AUDIT_SIG_MAX 72
#define HK_AUDIT_HASH_LEN 32 /* SHA-256 */

typedef struct hk_db hk_db;

typedef enum {
    HK_DB_SHARE_ACTIVE = 1,
    HK_DB_SHARE_PENDING = 2
} hk_db_share_state;

typedef enum {
    HK_DB_OP_KEYGEN = 1,
    HK_DB_OP_SIGN = 2,
    HK_DB_OP_REFRESH = 3,
    /* a presignature batch (issue 20): audited and counted, never a row of
     * the sessions table (hk_db_session_create refuses it) */
    HK_DB_OP_PRESIGN = 4
} hk_db_op;

typedef enum {
    HK_DB_SESS_OPEN = 1,
    HK_DB_SESS_RUNNING = 2,
    HK_DB_SESS_DONE = 3,
    HK_DB_SESS_FAILED = 4
} hk_db_sess_state;

typedef struct {
    unsigned char kid[HK_ID_LEN];
    char owner[HK_SUB_MAX + 1];
    hk_curve_id curve;
    hk_point pub; /* checked on the curve when read */
    int64_t created;
    int disabled;
    char label[HK_LABEL_MAX + 1]; /* "" when none */
    unsigned max_hour, max_day;   /* 0: the server's default */
    int pending; /* keygen not confirmed by the client yet (db.h rules) */
    char attestation[HK_DB_ATTEST_MAX + 1]; /* v6: "" when not attested */
} hk_db_key;

typedef struct {
    unsigned char sid[HK_ID_LEN];
    char owner[HK_SUB_MAX + 1];
    hk_db_op op;
    int has_kid;
    unsigned char kid[HK_ID_LEN]; /* valid when has_kid */
    int64_t created, last_seen;
    hk_db_sess_state state;
    hk_curve_id curve; /* a keygen session's curve; 0 for other ops */
    int has_rid;       /* v5: a sign session bound to a request */
    unsigned char rid[HK_ID_LEN];
    unsigned ridx; /* the request's digest this session signs */
} hk_db_session;

/* One audit record. The text fields are valid text (hk_db_text_ok) or ""
 * for none; event and outcome are [a-z_]{1,15}. */
typedef struct {
    int64_t seq; /* set by hk_db_audit_append */
    int64_t time;
    char node[HK_NODE_MAX + 1];
    char subject[HK_SUB_MAX + 1];
    int has_kid, has_sid;
    unsigned char kid[HK_ID_LEN], sid[HK_ID_LEN];
    char event[HK_AUDIT_NAME_MAX + 1];
    char outcome[HK_AUDIT_NAME_MAX + 1];
    char detail[HK_AUDIT_DETAIL_MAX + 1];
    unsigned char digest[HK_AUDIT_DIGEST_MAX];
    size_t digest_len;
    unsigned char sig[HK_AUDIT_SIG_MAX];
    size_t sig_len;
    /* the chain: hash = SHA-256 of prev and every field above
     * (hk_audit_hash); the first record's prev is all zero */
    unsigned char prev[HK_AUDIT_HASH_LEN], hash[HK_AUDIT_HASH_LEN];
} hk_audit_rec;

/* --- names of the enums as stored ('active', 'sign', 'open', ...) -------- */

/* The stored name, NULL for a value out of range. */
const char *hk_db_share_state_name(hk_db_share_state s);
const char *hk_db_op_name(hk_db_op op);
const char *hk_db_sess_state_name(hk_db_sess_state s);
/* Name -> value; HK_ERR_DECODE for an unknown name. */
HK_WUR hk_err hk_db_share_state_from_name(const char *name,
                                          hk_db_share_state *out);
HK_WUR hk_err hk_db_op_from_name(const char *name, hk_db_op *out);
HK_WUR hk_err hk_db_sess_state_from_name(const char *name,
                                         hk_db_sess_state *out);
/* 1 if s is 1..max bytes of UTF-8 without control characters. */
int hk_db_text_ok(const char *s, size_t max);

/* --- opening -------------------------------------------------------------- */

/* Opens the PostgreSQL database named by a libpq connection string
 * ("postgresql://user@127.0.0.1:5432/halfkey" or "host=... dbname=...")
 * and runs the pending migrations, serialised between nodes by an
 * advisory lock. Codes as hk_db_open_sqlite. */
HK_WUR hk_err hk_db_open_pg(const char *conninfo, hk_db **out, char *why,
                            size_t whylen);
/* The back end's name: "sqlite" or "postgresql". */
const char *hk_db_backend(const hk_db *db);
/* Opens (creating it, mode 0600, if missing) the SQLite database at path
 * and runs the pending migrations. HK_ERR_VERSION for a database of a newer
 * schema, HK_ERR_CONFIG for a file that is not a halfkey database, HK_ERR_IO
 * otherwise; `why` (may be NULL) receives the reason. */
HK_WUR hk_err hk_db_open_sqlite(const char *path, hk_db **out, char *why,
                                size_t whylen);
void hk_db_close(hk_db *db);
/* The back end's message for the last failure on this handle ("" if
 * none); valid until the next call on db. */
const char *hk_db_errmsg(const hk_db *db);
/* The schema version of the open database. */
HK_WUR hk_err hk_db_schema_version(hk_db *db, int *version);

/* --- keys ----------------------------------------------------------------- */

/* New key row. label may be NULL or "" (none). HK_ERR_EXISTS if kid is
 * taken (by any owner). */
HK_WUR hk_err hk_db_key_create(hk_db *db, const unsigned char *kid,
                               const char *sub, hk_curve_id curve,
                               const hk_point *pub, const char *label,
                               int64_t now);
/* Any owner's key (operator use); HK_ERR_NOT_FOUND if absent. Callers
 * serving a subject use hk_db_key_get_owned. */
HK_WUR hk_err hk_db_key_get(hk_db *db, const unsigned char *kid,
                            hk_db_key *out);
/* The key if `sub` owns it. HK_ERR_NOT_FOUND when it is absent or owned by
 * another subject (the same code, so existence does not leak). */
HK_WUR hk_err hk_db_key_get_owned(hk_db *db, const unsigned char *kid,
                                  const char *sub, hk_db_key *out);
/* All keys of sub (every key when sub is NULL), oldest first. *keys is
 * OPENSSL_malloc'd (NULL when *n is 0): OPENSSL_free it. */
HK_WUR hk_err hk_db_key_list(hk_db *db, const char *sub, hk_db_key **keys,
                             size_t *n);
/* Sets or clears the disabled flag (operator action). A disabled key's
 * shares are neither stored nor loaded (HK_ERR_FORBIDDEN below). */
HK_WUR hk_err hk_db_key_set_disabled(hk_db *db, const unsigned char *kid,
                                     int disabled);

/* Sets the key's sign limits (0: the server default), each at most
 * HK_DB_LIMIT_MAX. HK_ERR_NOT_FOUND if absent. */
HK_WUR hk_err hk_db_key_set_limits(hk_db *db, const unsigned char *kid,
                                   unsigned max_hour, unsigned max_day);
/* Deletes the key and its shares (any owner when sub is NULL, else only
 * if sub owns it). HK_ERR_NOT_FOUND if absent or another subject's. */
HK_WUR hk_err hk_db_key_delete(hk_db *db, const unsigned char *kid,
                               const char *sub);
/* Keygen's second phase: a pending key becomes active (HK_OK also if it
 * already is). HK_ERR_NOT_FOUND if absent. Only on a proof that the
 * client holds its share (server/http/sessions.c), never on a claim. */
HK_WUR hk_err hk_db_key_confirm(hk_db *db, const unsigned char *kid);
/* Deletes the keys still pending that were created before `before` (a
 * client that died after keygen.3 never stored its share) and returns
 * them (*gone OPENSSL_malloc'd, NULL when *n is 0) for the audit log. A
 * key confirmed meanwhile is kept. */
HK_WUR hk_err hk_db_key_sweep_pending(hk_db *db, int64_t before,
                                      hk_db_key **gone, size_t *n);

/* --- shares (sealed blobs; see hk_store_share for the sealing) ---------- */

/* Keygen: the key's first active share. HK_ERR_NOT_FOUND if the key is
 * absent, HK_ERR_EXISTS if it already has a share. */
HK_WUR hk_err hk_db_share_put_active(hk_db *db, const unsigned char *kid,
                                     unsigned long epoch,
                                     const unsigned char *sealed, size_t len);
/* Refresh: a pending share, replacing an older pending one.
 * HK_ERR_NOT_FOUND if the key is absent, HK_ERR_STATE if it has no active
 * share, HK_ERR_EPOCH unless epoch is above the active share's. */
HK_WUR hk_err hk_db_share_put_pending(hk_db *db, const unsigned char *kid,
                                      unsigned long epoch,
                                      const unsigned char *sealed, size_t len);
/* The pending share of that epoch becomes active and the old active share
 * is deleted, atomically. HK_OK also if that epoch is already the active
 * one (a repeated promotion); HK_ERR_NOT_FOUND otherwise. */
HK_WUR hk_err hk_db_share_promote(hk_db *db, const unsigned char *kid,
                                  unsigned long epoch);
/* The share of that epoch (active or pending): *sealed OPENSSL_malloc'd
 * (OPENSSL_free), *state may be NULL. HK_ERR_NOT_FOUND if absent. */
HK_WUR hk_err hk_db_share_get(hk_db *db, const unsigned char *kid,
                              unsigned long epoch, unsigned char **sealed,
                              size_t *len, hk_db_share_state *state);
/* The active share and its epoch. HK_ERR_NOT_FOUND if none. */
HK_WUR hk_err hk_db_share_get_active(hk_db *db, const unsigned char *kid,
                                     unsigned long *epoch,
                                     unsigned char **sealed, size_t *len);

/* --- backups (v4) ----------------------------------------------------------
 * A backup is the client share of one epoch encrypted under the owner's
 * offline backup key (mpc/pve.h). The caller (server/http/endpoints.c)
 * verifies the blob against the Q1 of that epoch's share before storing
 * it; storage only keeps it. Rule: a key that has a backup has its share
 * promoted (refresh) only once the new epoch's backup is stored
 * (server/http/sessions.c, hk_backup_gate), so the backup of the active
 * share is always there. */

#define HK_DB_BACKUP_MAX 131072 /* = HK_PVE_MAX_BLOB */

typedef struct {
    unsigned long epoch;
    unsigned char bk_fp[HK_HASH_LEN];
    unsigned char *blob; /* OPENSSL_malloc'd: OPENSSL_free */
    size_t len;
    int64_t created;
} hk_db_backup;

/* Stores (or replaces) the backup of (kid, epoch) and deletes the key's
 * backups of epochs below its active share's, in one transaction.
 * HK_ERR_NOT_FOUND if the key is absent, HK_ERR_EPOCH if it has no share
 * (active or pending) of that epoch. */
HK_WUR hk_err hk_db_backup_put(hk_db *db, const unsigned char *kid,
                               unsigned long epoch,
                               const unsigned char bk_fp[HK_HASH_LEN],
                               const unsigned char *blob, size_t len,
                               int64_t now);
/* The backup of (kid, epoch), or for epoch 0 the newest backup whose
 * epoch still has a stored share (active or pending): the one a restore
 * can use. HK_ERR_NOT_FOUND if none. Free out->blob. */
HK_WUR hk_err hk_db_backup_get(hk_db *db, const unsigned char *kid,
                               unsigned long epoch, hk_db_backup *out);
/* *epoch = the highest epoch with a backup, 0 if the key has none. */
HK_WUR hk_err hk_db_backup_newest(hk_db *db, const unsigned char *kid,
                                  unsigned long *epoch);
/* Over every key: *none = keys without any backup; *stale = keys with a
 * backup, none of them of the active share's epoch or later; *waiting =
 * keys with a backup and a pending share whose backup is missing (its
 * promotion waits, hk_backup_gate). */
HK_WUR hk_err hk_db_backup_counts(hk_db *db, int64_t *none, int64_t *stale,
                                  int64_t *waiting);

/* --- requests (v5) ---------------------------------------------------------
 * A signing request waits for the key's owner: made by a requester (its
 * own JWT scope), it holds what to sign and the digests the server
 * computed from it (server/http/requests.c); the owner approves by signing
 * each digest in a session bound to (rid, idx) or rejects it. States move
 * pending -> signed | rejected | expired | failed, each move once. */

#define HK_DB_REQ_PAYLOAD_MAX (1024 * 1024) /* = HK_PSBT_MAX */
#define HK_DB_REQ_DIGESTS_MAX 256           /* = HK_PSBT_MAX_INPUTS */
#define HK_DB_REQ_META_MAX 4096             /* bytes of the JSON text */
#define HK_DB_REQ_URL_MAX 512
#define HK_DB_REQ_REASON_MAX 256
#define HK_DB_REQ_RESULT_MAX (2 * 1024 * 1024)
#define HK_DB_REQ_LIST_MAX 100

typedef enum {
    HK_REQ_DIGEST = 1,
    HK_REQ_BTC_PSBT = 2,
    HK_REQ_ETH_TX = 3
} hk_db_req_kind;

typedef enum {
    HK_REQ_PENDING = 1,
    HK_REQ_SIGNED = 2,
    HK_REQ_REJECTED = 3,
    HK_REQ_EXPIRED = 4,
    HK_REQ_FAILED = 5
} hk_db_req_state;

typedef struct {
    unsigned char rid[HK_ID_LEN], kid[HK_ID_LEN];
    char owner[HK_SUB_MAX + 1], requester[HK_SUB_MAX + 1];
    hk_db_req_kind kind;
    char network[16];       /* Bitcoin network name; "" for other kinds */
    unsigned char *payload; /* OPENSSL_malloc'd (hk_db_request_clear) */
    size_t payload_len;
    unsigned char *digests; /* ndigests x dlen bytes, same */
    size_t ndigests, dlen;
    hk_db_req_state state;
    char reason[HK_DB_REQ_REASON_MAX + 1];    /* "" when none */
    char metadata[HK_DB_REQ_META_MAX + 1];    /* JSON object text */
    char callback_url[HK_DB_REQ_URL_MAX + 1]; /* "" when none */
    int64_t created, expires, updated;
    unsigned char *result; /* NULL until signed (hk_db_request_finish) */
    size_t result_len;
    /* read only: signatures so far (sigs[64 i] valid when have[i]) */
    unsigned char *sigs, *have;
    size_t nsigs;
    int64_t cb_attempts; /* read by hk_db_callback_claim only */
} hk_db_request;

/* Frees the buffers of r and zeroes it. */
void hk_db_request_clear(hk_db_request *r);
const char *hk_db_req_kind_name(hk_db_req_kind k);
HK_WUR hk_err hk_db_req_kind_from_name(const char *name, hk_db_req_kind *k);
const char *hk_db_req_state_name(hk_db_req_state s);
HK_WUR hk_err hk_db_req_state_from_name(const char *name, hk_db_req_state *s);
/* Stores a new pending request (every field but result, sigs, have).
 * HK_ERR_NOT_FOUND if its key is absent, HK_ERR_EXISTS if rid is. */
HK_WUR hk_err hk_db_request_put(hk_db *db, const hk_db_request *r);
/* The request rid with its signatures so far; HK_ERR_NOT_FOUND. Clear
 * *out after use. */
HK_WUR hk_err hk_db_request_get(hk_db *db, const unsigned char *rid,
                                hk_db_request *out);
/* Up to max (1..HK_DB_REQ_LIST_MAX) requests of owner in `state`, in
 * (created, rid) order, after the cursor (after, after_rid): created >
 * after, or created == after and rid above after_rid (NULL: none; after
 * 0 and NULL: all). A new array in *out (free with
 * hk_db_request_list_free) of *n. */
HK_WUR hk_err hk_db_request_list(hk_db *db, const char *owner,
                                 hk_db_req_state state, int64_t after,
                                 const unsigned char *after_rid, size_t max,
                                 hk_db_request **out, size_t *n);
void hk_db_request_list_free(hk_db_request *list, size_t n);
/* Records the signature of digest idx of a pending, unexpired request.
 * *nsigs = its signatures after this one. HK_ERR_STATE if the request is
 * not pending (or expired at now), HK_ERR_EXISTS if idx is signed. */
HK_WUR hk_err hk_db_request_sig_put(hk_db *db, const unsigned char *rid,
                                    size_t idx, const unsigned char sig[64],
                                    int64_t now, size_t *nsigs);
/* Moves a pending request to `to` (signed, rejected, expired, failed) with
 * a reason and, for signed, the result; a callback_url queues its
 * delivery. HK_ERR_STATE if it is not pending any more. */
HK_WUR hk_err hk_db_request_finish(hk_db *db, const unsigned char *rid,
                                   hk_db_req_state to, const char *reason,
                                   const unsigned char *result,
                                   size_t result_len, int64_t now);
/* Moves every pending request whose expiry is <= now to expired; the
 * moved ones (rid, kid, owner, requester) in a new array *out of *n. */
HK_WUR hk_err hk_db_request_sweep(hk_db *db, int64_t now, hk_db_request **out,
                                  size_t *n);
/* The callback queue (a request's final state POSTed to its
 * callback_url): a finished request with a callback_url is queued
 * (hk_db_request_finish). Claiming takes up to max due entries (cb_next
 * <= now, oldest first) and moves their next try to now + lease, so no
 * other node takes them while this one delivers: a new array *out of *n
 * (rid and callback_url set; clear each). */
#define HK_DB_CB_CLAIM_MAX 16
HK_WUR hk_err hk_db_callback_claim(hk_db *db, int64_t now, int64_t lease,
                                   size_t max, hk_db_request **out, size_t *n);
/* The outcome of one delivery attempt: delivered, or (ok 0) attempts + 1
 * and the next try at `next`, or failed for good once attempts reaches
 * max_attempts. *attempts (may be NULL) the attempts so far. */
HK_WUR hk_err hk_db_callback_result(hk_db *db, const unsigned char *rid, int ok,
                                    int64_t next, int max_attempts,
                                    int64_t *attempts);
/* Records approver's approval of a pending request (once per approver:
 * HK_ERR_EXISTS again; HK_ERR_STATE if it is not pending). */
HK_WUR hk_err hk_db_request_approve(hk_db *db, const unsigned char *rid,
                                    const char *approver, int64_t now);
/* The subjects that approved rid, in the order they did, into
 * subs[max][HK_SUB_MAX + 1]; *n how many (at most max). */
HK_WUR hk_err hk_db_request_approvers(hk_db *db, const unsigned char *rid,
                                      char (*subs)[HK_SUB_MAX + 1], size_t max,
                                      size_t *n);
/* The pending requests of owner's key kid, but `except`, whose amount is
 * committed already: a digest of theirs is signed, or a sign session bound
 * to one is live (open or running, seen at or after live_after). Up to
 * max (1..HK_DB_REQ_LIST_MAX) rids above after_rid (NULL: from the
 * lowest), in rid order, into rids; *n of them. On PostgreSQL it first
 * takes the request lock, held to the end of the enclosing transaction:
 * two nodes admitting signs under requests of one owner serialise when
 * the check and the session's binding run in one group. */
HK_WUR hk_err hk_db_request_inflight(hk_db *db, const char *owner,
                                     const unsigned char *kid,
                                     const unsigned char *except,
                                     int64_t live_after,
                                     const unsigned char *after_rid,
                                     unsigned char (*rids)[HK_ID_LEN],
                                     size_t max, size_t *n);
/* Binds a sign session (open, not yet claimed) to digest idx of rid. */
HK_WUR hk_err hk_db_session_bind_request(hk_db *db, const unsigned char *sid,
                                         const unsigned char *rid,
                                         unsigned idx);

/* --- sessions --------------------------------------------------------------
 * idle: the idle timeout in seconds, 1..HK_DB_IDLE_MAX (HK_DB_IDLE_DEFAULT
 * unless configured); now >= 0. */

/* New session in state open, created = last_seen = now. kid may be NULL.
 * HK_ERR_EXISTS if sid was ever used and not yet swept. */
HK_WUR hk_err hk_db_session_create(hk_db *db, const unsigned char *sid,
                                   const char *sub, hk_db_op op,
                                   const unsigned char *kid, int64_t now);
/* As hk_db_session_create for a keygen of the given curve (stored, so the
 * node that runs the session checks the curve the client asked for). */
HK_WUR hk_err hk_db_session_create_keygen(hk_db *db, const unsigned char *sid,
                                          const char *sub,
                                          const unsigned char *kid,
                                          hk_curve_id curve, int64_t now);
/* last_seen = now (never moves back). HK_ERR_SESSION if unknown or
 * expired. */
HK_WUR hk_err hk_db_session_touch(hk_db *db, const unsigned char *sid,
                                  int64_t now, int64_t idle);
/* HK_ERR_SESSION if unknown or expired. */
HK_WUR hk_err hk_db_session_get(hk_db *db, const unsigned char *sid,
                                int64_t now, int64_t idle, hk_db_session *out);
/* As hk_db_session_get, and HK_ERR_SESSION too if the session belongs to
 * another subject or was opened for another operation. */
HK_WUR hk_err hk_db_session_get_owned(hk_db *db, const unsigned char *sid,
                                      const char *sub, hk_db_op op, int64_t now,
                                      int64_t idle, hk_db_session *out);
/* Moves the state (running, done or failed) and touches the session.
 * HK_ERR_SESSION if unknown or expired, HK_ERR_STATE if the move is not
 * allowed (e.g. a second claim: running -> running). */
HK_WUR hk_err hk_db_session_set_state(hk_db *db, const unsigned char *sid,
                                      hk_db_sess_state state, int64_t now,
                                      int64_t idle);
/* *n = the number of other live sessions in state running for the same
 * key and operation as sid (0 if sid has no key). A refresh stores its
 * pending share only when it is alone: two at once would both store a
 * share of the same epoch (the caller, server/http/sessions.c). */
HK_WUR hk_err hk_db_session_others(hk_db *db, const unsigned char *sid,
                                   int64_t now, int64_t idle, int64_t *n);
/* This process's node name (hk_srv_config.node, unique per node): a
 * session this handle moves to running records it, so that node's next
 * start can fail the sessions it left running (hk_db_session_fail_node). */
HK_WUR hk_err hk_db_set_node(hk_db *db, const char *node);
/* At a node's start: its sessions still in state running were cut off by
 * a crash or kill (a running session lives in one process) and become
 * failed, so the key is free at once for the next refresh rather than
 * "busy" until the idle timeout. Other nodes' sessions are untouched.
 * *n (may be NULL) their number. */
HK_WUR hk_err hk_db_session_fail_node(hk_db *db, const char *node, size_t *n);
/* Commits a small write (this node's row of the health table, time now:
 * a changed value, as SQLite writes nothing for an unchanged row), so a
 * database that cannot write (full disk, read-only, lost) fails here
 * (HK_ERR_IO) rather than only when a client's operation does. */
HK_WUR hk_err hk_db_write_probe(hk_db *db, int64_t now);
/* Deletes the expired sessions; *deleted (may be NULL) their number. */
HK_WUR hk_err hk_db_session_sweep(hk_db *db, int64_t now, int64_t idle,
                                  size_t *deleted);

/* --- setup (one row) ------------------------------------------------------ */

/* Stores the sealed secret record and the public record. HK_ERR_EXISTS if
 * a setup is already stored (it is made once, at init). */
HK_WUR hk_err hk_db_setup_put(hk_db *db, const unsigned char *sealed,
                              size_t slen, const unsigned char *pub,
                              size_t plen, int64_t now);
/* Both records, OPENSSL_malloc'd (OPENSSL_free); pub, plen may be NULL.
 * HK_ERR_NOT_FOUND if no setup is stored. */
HK_WUR hk_err hk_db_setup_get(hk_db *db, unsigned char **sealed, size_t *slen,
                              unsigned char **pub, size_t *plen);

/* --- audit log ------------------------------------------------------------
 * Append-only and hash-chained: each record's hash covers the previous
 * record's hash, so a changed, removed or reordered record breaks the
 * chain at that point (hk_audit_verify). Appends from several nodes are
 * serialised by the database (one writer at a time on the log). */

/* Appends rec: sets rec->seq, rec->prev and rec->hash. HK_ERR_ARG for
 * fields outside their bounds. */
HK_WUR hk_err hk_db_audit_append(hk_db *db, hk_audit_rec *rec);
/* Calls fn on every record with seq >= from, in order, until fn returns
 * other than HK_OK (that code is returned). Records are read as stored,
 * not checked against the chain (the caller does: hk_audit_hash). */
HK_WUR hk_err hk_db_audit_scan(hk_db *db, int64_t from,
                               hk_err (*fn)(void *ctx, const hk_audit_rec *r),
                               void *ctx);
/* *n = number of records of key kid with this event and outcome and
 * time >= since (the per-key sign limits count 'granted' signs). */
HK_WUR hk_err hk_db_audit_count(hk_db *db, const unsigned char *kid,
                                const char *event, const char *outcome,
                                int64_t since, int64_t *n);
/* The chain hash of r over r->prev and its fields (not seq's storage
 * order: seq is covered too). */
void hk_audit_hash(const hk_audit_rec *r, unsigned char out[HK_AUDIT_HASH_LEN]);
/* 1 if r's fields are within their bounds. */
int hk_audit_rec_ok(const hk_audit_rec *r);

/* --- rate limits ----------------------------------------------------------
 * A token bucket per subject, shared by every node on the database:
 * `rate` tokens per second up to `burst`; a request takes one. */

/* *ok = 1 if a token was taken; else *retry = seconds until one is
 * available. now: seconds (fractional). */
HK_WUR hk_err hk_db_bucket_take(hk_db *db, const char *sub, double rate,
                                double burst, double now, int *ok,
                                double *retry);

/* --- sealing + storage ----------------------------------------------------
 * A server share is sealed with associated data hk_share_aad(kid, owner,
 * epoch): a blob moved to another key, owner or epoch fails to open. */

/* Keygen's first phase: creates the key row (curve and Q from the share),
 * pending, and its active share in one transaction. s: the P2 share. The
 * key becomes active with hk_db_key_confirm. */
HK_WUR hk_err hk_store_new_key(hk_db *db, const hk_kek *kek, const char *sub,
                               const hk_share *s, const char *label,
                               int64_t now);
/* As hk_store_new_key, for a key whose keygen session was attested:
 * `attestation` (NULL: none) is stored with the key, in the same
 * transaction. */
HK_WUR hk_err hk_store_new_key_att(hk_db *db, const hk_kek *kek,
                                   const char *sub, const hk_share *s,
                                   const char *label, const char *attestation,
                                   int64_t now);
/* Seals and stores a P2 share of an existing key `sub` owns: active
 * (hk_db_share_put_active) or pending (hk_db_share_put_pending).
 * HK_ERR_NOT_FOUND if sub does not own the key, HK_ERR_FORBIDDEN if it is
 * disabled, HK_ERR_KEY_MISMATCH if the share's curve or Q is not the
 * key's. */
HK_WUR hk_err hk_store_share(hk_db *db, const hk_kek *kek, const char *sub,
                             const hk_share *s, int pending);
/* Loads and opens the share of (kid, epoch) for its owner sub; does not
 * promote a pending share (the caller does, hk_db_share_promote).
 * *is_pending may be NULL. HK_ERR_NOT_FOUND (no such key for sub, or no
 * share of that epoch), HK_ERR_FORBIDDEN (disabled), HK_ERR_SEAL (blob
 * altered or sealed for another key, owner or epoch), HK_ERR_DECODE /
 * HK_ERR_SHARE / HK_ERR_VERSION (record malformed), HK_ERR_SHARE (the
 * record is not a P2 share of that key and epoch). */
HK_WUR hk_err hk_load_share(hk_db *db, const hk_kek *kek, const char *sub,
                            const unsigned char *kid, unsigned long epoch,
                            hk_share **out, int *is_pending);
/* hk_load_share in two halves, so that the second runs outside the
 * caller's database lock: hk_fetch_share reads the key (usable by sub,
 * into *key) and the sealed share of (kid, epoch) (*sealed, OPENSSL_free
 * it; *is_pending may be NULL); hk_open_fetched_share unseals and decodes
 * it and checks it is the P2 share of that key and epoch, touching no
 * database. Errors as hk_load_share's. */
HK_WUR hk_err hk_fetch_share(hk_db *db, const char *sub,
                             const unsigned char *kid, unsigned long epoch,
                             hk_db_key *key, unsigned char **sealed,
                             size_t *slen, int *is_pending);
HK_WUR hk_err hk_open_fetched_share(const hk_kek *kek, const char *sub,
                                    const hk_db_key *key, unsigned long epoch,
                                    const unsigned char *sealed, size_t slen,
                                    hk_share **out);
/* --- groups ---------------------------------------------------------------
 * Calls between hk_db_group_begin and hk_db_group_end run in one
 * transaction: one commit for all (issue 20 item 3: a sign's admission,
 * audit record, session state and presignature at its open; its end state
 * and audit record at its end). Each call inside still succeeds or fails
 * alone (a savepoint), and the end commits what succeeded, so a group
 * changes when the calls become durable, not what they do. The write lock
 * is held from begin to end: keep groups short. Groups do not nest.
 *
 * durable 0: the commit does not wait for the disk (SQLite:
 * synchronous=NORMAL for it, and the syncer of HK_DB_DEFERRED below starts
 * syncing it at once, nobody waiting; PostgreSQL: synchronous_commit off,
 * the WAL writer flushes it within moments): a crash of the machine may
 * lose the group (the last ~ms of them), never part of it and never an
 * earlier durable commit. For records whose
 * loss costs no key and grants nothing: a session's end and its audit
 * record of the outcome (the grant is audited durably at the open). The
 * end's outcome is the commit's. */
#define HK_DB_LAZY 0
#define HK_DB_DURABLE 1
/* durable HK_DB_DEFERRED: the commit does not wait for the disk either,
 * but the disk sync starts at once (SQLite: a thread of the handle
 * fdatasyncs the WAL, one sync for every commit made while the previous
 * one ran), and hk_db_group_ticket names it: hk_db_wait_durable(ticket)
 * returns once the group is on disk. For a group whose effects must be
 * durable before the caller acts on them, when the caller has other work
 * first (a sign's open: the admission and the presignature taken must be
 * durable before c3 leaves, and c3 is computed meanwhile). The database
 * lock is released during the sync. A back end that cannot defer
 * (PostgreSQL, an in-memory SQLite) commits durably; its ticket is 0. */
#define HK_DB_DEFERRED 2
HK_WUR hk_err hk_db_group_begin(hk_db *db, int durable);
HK_WUR hk_err hk_db_group_end(hk_db *db);
/* The ticket of the last HK_DB_DEFERRED group that committed (0: none, or
 * already durable); read it under the same lock as the group. */
uint64_t hk_db_group_ticket(const hk_db *db);
/* Waits until the group of ticket is on disk (0: at once). Safe from any
 * thread without the caller's database lock. HK_ERR_IO if the sync failed
 * (then every later wait fails too: the disk lost writes). */
HK_WUR hk_err hk_db_wait_durable(hk_db *db, uint64_t ticket);

/* --- presignatures (v7; mpc/presign.h) -----------------------------------
 * The server's half of each presignature (its k2 and the r^N made for its
 * c3), sealed under the KEK for (kid, owner, psid). Single use on every
 * node: hk_db_presig_take reads and deletes the row in one statement, and
 * the caller computes c3 only after that commit. Bounded: a batch that
 * would pass max_key rows for the key or max_owner for the owner first
 * deletes the oldest rows of the key (or owner) to make room, in the same
 * transaction (a client that went away leaves its rows behind, and they
 * must not block the next); a batch larger than a bound itself is refused
 * (HK_ERR_RATE). A client cannot make the server hoard state. The sweep
 * deletes rows created before a bound and rows of an epoch the key has no
 * share of any more (a refresh made them useless). */
typedef struct {
    unsigned char psid[HK_ID_LEN];
    const unsigned char *sealed;
    size_t len; /* 1..4096 */
} hk_db_presig_in;

/* HK_ERR_EPOCH if the key has no share of `epoch`; HK_ERR_NOT_FOUND if no
 * such key; HK_ERR_EXISTS for an id already stored. */
HK_WUR hk_err hk_db_presig_put(hk_db *db, const unsigned char *kid,
                               const char *owner, unsigned long epoch,
                               const hk_db_presig_in *ps, size_t n,
                               size_t max_key, size_t max_owner, int64_t now);
/* *sealed: OPENSSL_free. HK_ERR_NOT_FOUND if there is no such row of that
 * key and owner (taken, swept, never made). */
HK_WUR hk_err hk_db_presig_take(hk_db *db, const unsigned char *psid,
                                const unsigned char *kid, const char *owner,
                                unsigned long *epoch, unsigned char **sealed,
                                size_t *len);
HK_WUR hk_err hk_db_presig_count(hk_db *db, const unsigned char *kid,
                                 const char *owner, int64_t *n_key,
                                 int64_t *n_owner);
HK_WUR hk_err hk_db_presig_sweep(hk_db *db, int64_t before, size_t *deleted);
/* Seals and stores n P2 records of one key and epoch, record i with
 * rn[i] = r^N mod N^2 for its c3 (encoded in rn_len bytes). */
HK_WUR hk_err hk_store_presigs(hk_db *db, const hk_kek *kek, const char *sub,
                               const hk_presig *recs, BIGNUM *const *rn,
                               size_t rn_len, size_t n, size_t max_key,
                               size_t max_owner, int64_t now);
/* Takes presignature psid of key kid for sub and opens it: *out (SECRET:
 * wipe it) and *rn (BN_clear_free). The row is gone whatever the outcome.
 * HK_ERR_NOT_FOUND, HK_ERR_SEAL (altered, or sealed for another key,
 * owner or id), HK_ERR_DECODE (malformed, or a record of another id or
 * key). */
HK_WUR hk_err hk_take_presig(hk_db *db, const hk_kek *kek, const char *sub,
                             const unsigned char *kid,
                             const unsigned char *psid, hk_presig *out,
                             BIGNUM **rn);

/* Seals the secret setup record, makes the public record (with a fresh
 * Pi^prm proof: ~1 s) and stores both. HK_ERR_EXISTS if a setup exists. */
HK_WUR hk_err hk_store_setup(hk_db *db, const hk_kek *kek,
                             const hk_rped_secret *sec, int64_t now);
/* The stored secret setup, opened and decoded. */
HK_WUR hk_err hk_load_setup(hk_db *db, const hk_kek *kek, hk_rped_secret **out);

/* --- re-sealing (halfkeyd reseal) -----------------------------------------
 * The storage primitives `halfkeyd reseal` needs to move every sealed blob
 * to the primary KEK while servers keep running. Every back end implements
 * them with exactly these contracts. */

#define HK_DB_LIST_MAX 1000 /* rows per hk_db_share_list_all page */
#define HK_RESEAL_TRIES 5   /* compare-and-swap attempts per blob */

/* One stored share, as listed for re-sealing. */
typedef struct {
    unsigned char kid[HK_ID_LEN];
    char owner[HK_SUB_MAX + 1]; /* the key's owner (keys.owner) */
    unsigned long epoch;
    hk_db_share_state state;
} hk_db_share_ref;

/* One page of every share of every key (active and pending, disabled keys
 * too), in ascending (kid, epoch) order, kid compared as unsigned bytes:
 * the rows strictly after (after_kid, after_epoch), or from the first when
 * after_kid is NULL (after_epoch is then ignored). Writes at most max rows
 * (1..HK_DB_LIST_MAX, else HK_ERR_ARG) to refs[0..max) and their number to
 * *n; *n < max only on the last page. Keyset paging without a long
 * transaction: a row that exists during the whole listing is returned
 * exactly once; a row inserted or deleted meanwhile may or may not be. */
HK_WUR hk_err hk_db_share_list_all(hk_db *db, const unsigned char *after_kid,
                                   unsigned long after_epoch,
                                   hk_db_share_ref *refs, size_t max,
                                   size_t *n);
/* Compare-and-swap of one share's sealed blob, atomically (one statement
 * or transaction: UPDATE shares SET sealed = new WHERE kid = ? AND epoch =
 * ? AND sealed = old): the blob of (kid, epoch) becomes `nblob` if and
 * only if it is byte for byte `old`; no other column changes. HK_OK when
 * replaced; HK_ERR_STATE if the row exists but its blob is not `old` (a
 * concurrent keygen, refresh or reseal wrote it: re-read and retry);
 * HK_ERR_NOT_FOUND if there is no such row (deleted or promoted over
 * meanwhile). Both blobs are checked like any sealed blob (HK_ERR_ARG). */
HK_WUR hk_err hk_db_share_replace_sealed(hk_db *db, const unsigned char *kid,
                                         unsigned long epoch,
                                         const unsigned char *old,
                                         size_t oldlen,
                                         const unsigned char *nblob,
                                         size_t nlen);
/* The same for the setup row: its sealed blob becomes nblob iff it is
 * `old`. HK_ERR_STATE if it is not, HK_ERR_NOT_FOUND if no setup is
 * stored; the public record and creation time are untouched. */
HK_WUR hk_err hk_db_setup_replace_sealed(hk_db *db, const unsigned char *old,
                                         size_t oldlen,
                                         const unsigned char *nblob,
                                         size_t nlen);

typedef enum {
    HK_RESEAL_DONE = 1,    /* re-sealed under the primary KEK */
    HK_RESEAL_ALREADY = 2, /* already under the primary: nothing written */
    HK_RESEAL_GONE = 3     /* the row disappeared meanwhile */
} hk_reseal_outcome;

/* Re-seals the share `ref` names under kek's primary KEK: reads its blob,
 * opens it with the ring's KEK whose id the blob names (same associated
 * data hk_share_aad(kid, owner, epoch)), seals the same bytes again and
 * stores them with hk_db_share_replace_sealed. A lost compare-and-swap
 * adds 1 to *races and starts over from the read, HK_RESEAL_TRIES times at
 * most (then HK_ERR_STATE). HK_ERR_SEAL if the blob cannot be opened (a
 * KEK not in the ring, or altered). */
HK_WUR hk_err hk_reseal_share(hk_db *db, const hk_kek *kek,
                              const hk_db_share_ref *ref,
                              hk_reseal_outcome *outcome, size_t *races);
/* The same for the sealed setup record. */
HK_WUR hk_err hk_reseal_setup(hk_db *db, const hk_kek *kek,
                              hk_reseal_outcome *outcome, size_t *races);

/* --- attestations (v6) -----------------------------------------------------
 * A keygen session's device attestation (server/attest/attest.h): stored
 * when POST /keygen issues the challenge, finished once by POST /attest
 * (challenged -> verified | refused, atomically: an answer counts once),
 * deleted with its session. */

typedef enum {
    HK_DB_ATT_CHALLENGED = 1,
    HK_DB_ATT_VERIFIED = 2,
    HK_DB_ATT_REFUSED = 3
} hk_db_att_state;

typedef struct {
    hk_db_att_state state;
    unsigned char cred_hash[32];
    unsigned char ak_pub[HK_DB_AK_MAX];
    size_t ak_publen;
    char summary[HK_DB_ATTEST_MAX + 1];
} hk_db_attestation;

/* Stores the challenge of session sid (state challenged). HK_ERR_EXISTS
 * if the session has one; HK_ERR_NOT_FOUND if there is no such session. */
HK_WUR hk_err hk_db_attest_put(hk_db *db, const unsigned char *sid,
                               const hk_db_attestation *a);
/* HK_ERR_NOT_FOUND if the session has none. */
HK_WUR hk_err hk_db_attest_get(hk_db *db, const unsigned char *sid,
                               hk_db_attestation *out);
/* challenged -> verified (verified = 1) or refused; HK_ERR_STATE if it
 * is no longer challenged, HK_ERR_NOT_FOUND if there is none. */
HK_WUR hk_err hk_db_attest_finish(hk_db *db, const unsigned char *sid,
                                  int verified);

#endif
