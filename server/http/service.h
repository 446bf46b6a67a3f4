/* halfkeyd's service: the HTTP endpoints, the protocol sessions and the
 * glue between transport, workers, storage and the mpc state machines.
 *
 *   POST /keygen   {"curve":"secp256k1"|"p256","pbits":2048|3072}  JWT
 *   POST /sign     {"key_id":"<hex>"}                              JWT
 *   POST /refresh  {"key_id":"<hex>"}                              JWT
 *   GET  /pubkey?key_id=<hex>                                      JWT
 *   POST /delete   {"key_id":"<hex>"}  the key, on the server side JWT
 *   GET  /status   version, node, database health                 none
 *   GET  /metrics  Prometheus text format                          none
 *   GET  /setup    the server's ring-Pedersen setup record         none
 *   GET  /ws?session_id=sess_<hex>   (upgrade)                     JWT
 *
 * A POST opens a session: 128-bit random id, bound to the token's subject,
 * one operation and one key, expiring after `session_idle` seconds without
 * traffic. The protocol messages of that session then run over the
 * WebSocket; every computation runs on the worker pool. A subject never
 * reaches another subject's key (404, as for a missing key). Errors are
 * JSON {"error": code, "message": text} with the HTTP status, or on the
 * WebSocket {"v":1,"t":"error","code":...,"message":...} before a close. */
#ifndef HK_SERVICE_H
#define HK_SERVICE_H

#include "server/config.h"
#include "server/store/db.h"

typedef struct hk_service hk_service;

/* Loads keys, database and setup as configured; why[256] gets a reason. */
HK_WUR hk_err hk_service_new(const hk_srv_config *cfg, hk_service **out,
                             char *why);
/* Serves until hk_service_stop. */
HK_WUR hk_err hk_service_run(hk_service *svc);
/* Graceful stop, from any thread: new sessions are refused (503), kept-open
 * connections close between sessions, and hk_service_run returns once the
 * running sessions end or after shutdown_grace seconds; now != 0 stops at
 * once. */
void hk_service_stop(hk_service *svc, int now);
/* Replaces the sealing keys (primary and previous KEKs) with those of
 * `fresh`, from any thread, without stopping (SIGHUP: a KEK rotation
 * needs no restart): the new ring is loaded and must open the stored
 * setup, else nothing changes and why[256] says why. Other settings of
 * `fresh` are ignored until a restart. */
/* Reads fresh->policy_file again (server/policy/rules.h); on an error
 * (why[256]: file and line) the rules in force stay. */
HK_WUR hk_err hk_service_reload_rules(hk_service *svc,
                                      const hk_srv_config *fresh, char *why);
HK_WUR hk_err hk_service_reload_seal(hk_service *svc,
                                     const hk_srv_config *fresh, char *why);
/* Opens the configured database (db: SQLite, db_url: PostgreSQL). */
HK_WUR hk_err hk_srv_open_db(const hk_srv_config *cfg, hk_db **out, char *why);
void hk_service_free(hk_service *svc);

#endif
