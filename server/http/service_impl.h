/* Private to server/service*.c: the service state and the protocol
 * session runtime. */
#ifndef HK_SERVICE_IMPL_H
#define HK_SERVICE_IMPL_H

#include <pthread.h>
#include <stdint.h>

#include <jansson.h>

#include "mpc/keygen.h"
#include "mpc/refresh.h"
#include "mpc/sign.h"
#include "server/policy/audit.h"
#include "server/store/db.h"
#include "server/policy/metrics.h"
#include "server/policy/policy.h"
#include "server/policy/rules.h"
#include "server/seal/seal.h"
#include "server/http/bodies.h"
#include "server/http/service.h"
#include "server/http/workers.h"
#include "transport/http_server.h"
#include "transport/jwt.h"

typedef struct hk_rsess hk_rsess;

/* Work done for a sign session between its POST and its WebSocket: the
 * active share loaded and the encryption randomness precomputed. */
/* The pool of precomputed Paillier randomness r^N mod N^2 (rnpool.c). */
#define HK_RN_PER_KEY 2 /* per Paillier modulus (per share) */
#define HK_RN_KEYS 64   /* moduli kept, least recently used out */
typedef struct hk_rn_pool hk_rn_pool;
#define HK_REQ_SEEN_MAX 10 /* ids in GET /requests?seen= */
/* A long poll of GET /requests waiting for a new request (requests.c):
 * service thread only. */
typedef struct hk_req_waiter {
    struct hk_req_waiter *next;
    hk_tconn *conn; /* its deferred answer (hk_http_defer) */
    char sub[HK_JWT_SUB_MAX + 1];
    hk_db_req_state state;
    int64_t after, deadline;
    /* ids the caller has shown already (seen=): left out of the answer */
    unsigned char seen[HK_REQ_SEEN_MAX][HK_ID_LEN];
    size_t nseen;
} hk_req_waiter;
/* Request callbacks' delivery state (callbacks.c). */
typedef struct hk_cb hk_cb;

typedef enum {
    HK_SP_QUEUED,    /* its job has not started */
    HK_SP_RUNNING,   /* its job runs: a taker waits for it */
    HK_SP_READY,     /* share, state machine and randomness ready */
    HK_SP_FAILED,    /* nothing ready: the session does the work */
    HK_SP_ABANDONED, /* taken while queued: the job frees it */
} hk_signprep_state;

typedef struct hk_signprep {
    struct hk_signprep *next;
    unsigned char sid[HK_ID_LEN];
    int64_t created;
    hk_share *share;
    int unproven; /* as hk_rsess's */
    hk_sign *sg;
    hk_signprep_state state; /* guarded by the service's mu */
} hk_signprep;

struct hk_service {
    hk_srv_config cfg;
    hk_kek *kek;
    hk_db *db;
    pthread_mutex_t dbmu; /* one connection, one thread at a time */
    hk_rped_secret *setup;
    unsigned char *setup_pub;
    size_t setup_pub_len;
    hk_jwt_verifier *jwt;
    hk_workers *workers;
    hk_tsrv *tsrv;
    pthread_mutex_t mu;  /* guards the session and sign-preparation lists */
    pthread_cond_t spcv; /* a sign preparation job ended (with mu) */
    hk_rsess *sessions;
    int nsessions; /* on the list, guarded by mu */
    hk_signprep *signpreps;
    hk_rn_pool *rnpool;
    int64_t last_sweep;
    hk_metrics *metrics;
    int max_conns; /* the connection cap in force (hk_conn_cap) */
    /* the last database write probe (/status), guarded by dbmu */
    int64_t probe_time;
    hk_err probe_err;
    char probe_why[128];
    /* Set by hk_service_stop (any thread): no new sessions; the service
     * stops once the running ones end or shutdown_grace has passed. */
    _Atomic int draining;
    int64_t drain_start; /* service thread only */
    /* policy.h: NULL, or a deployment's check of each sign's digest */
    hk_digest_hook digest_hook;
    void *digest_hook_ctx;
    hk_cb *cb;              /* NULL: callbacks off */
    hk_req_waiter *waiters; /* long polls, service thread only */
    int nwaiters;
    /* the policy file's rules (NULL: none), swapped by a reload */
    pthread_mutex_t rulesmu;
    hk_rules *rules;
    X509_STORE *att_roots; /* attestation_roots; NULL: none configured */
};

/* A client sends one message and waits for the answer (every protocol
 * alternates), so more than a few queued messages is abuse; each may be
 * HK_WS_MSG_MAX bytes, and an authenticated client could otherwise queue
 * memory without limit while the workers are busy. */
#define HK_RSESS_QUEUE_MAX 8
#define HK_RSESS_QUEUE_BYTES (1024u * 1024u)

typedef struct hk_rmsg {
    struct hk_rmsg *next;
    size_t len;
    unsigned char buf[];
} hk_rmsg;

/* One running protocol session, bound to one WebSocket. */
struct hk_rsess {
    hk_service *svc;
    hk_tconn *conn;
    pthread_mutex_t mu;
    int refs;
    unsigned char sid[HK_ID_LEN], kid[HK_ID_LEN];
    char sub[HK_JWT_SUB_MAX + 1];
    hk_db_op op;
    int pbits;
    /* worker side (one job at a time per session) */
    hk_keygen *kg;
    hk_sign *sg;
    hk_refresh *rf;
    hk_share *share;
    /* the loaded share, or its key, is pending: it is used but promoted
     * only on a proof that the client holds it (hk_proven) */
    int unproven;
    int finished; /* no more messages are handled */
    int ended;    /* the end (done or failed) is recorded */
    /* queue (bounded: HK_RSESS_QUEUE_MAX, HK_RSESS_QUEUE_BYTES) */
    hk_rmsg *head, *tail;
    size_t qlen, qbytes;
    int overflow; /* the cap was passed: the connection is closing */
    int scheduled, dead;
    int64_t last, touched;
    int channel; /* a kept-open connection running session after session */
    long exp;    /* its token's expiry */
    hk_curve_id curve; /* a keygen's curve, as the client asked at POST */
    double started;    /* monotonic seconds at the claim of the session */
    /* the sign's encryption randomness was handed to sg (rnpool.c) */
    int rn_given;
    /* the open's deferred commit: c3 waits until it is on disk (db.h) */
    uint64_t durable;
    /* a sign bound to digest ridx of request rid (requests.h) */
    int has_rid;
    unsigned char rid[HK_ID_LEN];
    unsigned ridx;
    /* presignatures (presigs.c): a sign on one (sid is its id), or a
     * batch being made (op HK_DB_OP_PRESIGN, n asked at open) */
    int presig;
    unsigned presig_n;
    hk_psgen *pg;
    int has_ps;       /* ps_rec and ps_rn hold the taken presignature */
    int drop_next;    /* the sign.1p of a refused presigned open follows */
    int retry_after;  /* a policy refusal's wait, sent with its error */
    hk_presig ps_rec; /* SECRET (its k2) */
    BIGNUM *ps_rn;
    hk_rsess *next;
};

/* --- HTTP helpers (respond.c) --- */
/* r's status and body (json_dumps of body, which is released). */
void hk_respond(hk_http_resp *r, int status, json_t *body);
/* {"error": code, "message": msg} with status. */
void hk_respond_err(hk_http_resp *r, int status, const char *code,
                    const char *msg);
/* 1 and out[cap] = the value of `name` in query q "a=b&c=d". */
int hk_query_get(const char *q, const char *name, char *out, size_t cap);
/* A file of 1..65536 bytes into a new malloc'd buffer (HK_ERR_CONFIG if
 * missing, empty or larger). */
HK_WUR hk_err hk_load_file(const char *path, unsigned char **out, size_t *len);

/* 1 if sub's new keys need a device attestation: require_attestation in
 * the configuration, or the policy file (rules.h). */
int hk_attest_needed(hk_service *svc, const char *sub);

int64_t hk_now(void);
/* Monotonic seconds (durations). */
double hk_mono(void);
/* Audits the end of s's session and counts it. */
void hk_rsess_record_end(hk_rsess *s, hk_outcome out, const char *detail);
/* Session steps shared by sessions.c and presigs.c: send a message; end
 * with an error the client can show (`where` names the step); end well
 * (a channel waits for the next session); load the share of `epoch`. */
void hk_rsess_send(hk_rsess *s, const unsigned char *msg, size_t len);
void hk_rsess_fail(hk_rsess *s, hk_err e, const char *where);
void hk_rsess_done(hk_rsess *s);
HK_WUR hk_err hk_rsess_use_share(hk_rsess *s, unsigned long epoch);

/* --- presignatures (presigs.c; mpc/presign.h) --- */
/* A presignature batch on a channel: pre.1 (bounded by the pools' room),
 * pre.3 (checked; each presignature's r^N made, all sealed and stored in
 * one transaction, then {"t":"done","n":n}). */
void hk_presig_step(hk_rsess *s, const hk_rmsg *m);
/* The largest batch this server makes: the smallest of
 * HK_PRESIG_BATCH_MAX and its two pool bounds (said in the batch's
 * "opened" as presign_max). */
size_t hk_presig_max(const hk_srv_config *cfg);
/* A sign on presignature s->sid, at its open, with svc->dbmu held (in the
 * open's group): takes its record (deleted in that commit, before any c3
 * exists) into s. HK_ERR_NOT_FOUND: no such presignature (used, swept,
 * never made, another key or subject). */
HK_WUR hk_err hk_presig_take(hk_rsess *s);
/* At sign.1p: s->sg from the taken record, with the r^N stored beside it
 * (both then wiped from s). */
HK_WUR hk_err hk_presig_sign_begin(hk_rsess *s);
/* Wipes a taken record not used (a failed open, a closed channel). */
void hk_presig_drop(hk_rsess *s);
void hk_rsess_unref(hk_rsess *s);
/* Worker job: processes the session's queued messages in order. */
void hk_rsess_job(void *arg);
/* Worker job run once at WebSocket open: prepares the state machine. */
void hk_rsess_prepare_job(void *arg);
/* Worker job run at POST /sign (arg: an hk_signprep with sid set, already
 * on the service's list, queued; the job frees it if it was abandoned). */
typedef struct {
    hk_service *svc;
    hk_signprep *ps;
    char sub[HK_JWT_SUB_MAX + 1];
    unsigned char kid[HK_ID_LEN];
} hk_signprep_job;
void hk_signprep_run(void *arg);
HK_WUR hk_err hk_rn_pool_new(hk_rn_pool **out);
void hk_rn_pool_free(hk_rn_pool *p);
/* Queues jobs until pk's modulus has HK_RN_PER_KEY values made or in the
 * making (idle time: after a sign, at POST /sign). */
void hk_rn_fill(hk_service *svc, const hk_paillier_pk *pk);
/* Takes one r^N mod N^2 for pk (single use, the caller owns it) and tops
 * the pool up. None ready: !wait gives HK_ERR_NOT_FOUND; wait waits for a
 * running job of that modulus, or (none running) computes it now. */
HK_WUR hk_err hk_rn_take(hk_service *svc, const hk_paillier_pk *pk, int wait,
                         BIGNUM **rn);
/* Gives share the fixed-base table of its ckey (a reference) if the pool
 * has it, else queues its making (once per modulus): call where a sign's
 * c3 is prepared; the first signs of a key go without it. */
void hk_rn_ckey_table(hk_service *svc, hk_share *share);
/* Moduli held, values ready, jobs queued or running, ckey tables (tests). */
void hk_rn_pool_stats(hk_rn_pool *p, int *keys, int *ready, int *busy,
                      int *tables);
/* Takes the sign preparation of sid if it is ready, waiting while its job
 * runs (NULL: none, failed, or not started: the caller does the work). */
hk_signprep *hk_signprep_take(hk_service *svc, const unsigned char *sid);
void hk_signprep_free(hk_signprep *ps);
/* Drops sign preparations older than the idle timeout. */
void hk_signprep_expire(hk_service *svc, int64_t now);

/* --- device attestation at keygen (attest_ep.c; attest.h) --- */
/* POST /keygen's "attest" member checked and its challenge made; on a
 * refusal the answer is written to r (and audited) and 0 returned. */
int hk_attest_start(hk_service *svc, json_t *att, const char *sub,
                    hk_att_challenge *ch, hk_http_resp *r);
/* POST /attest: the client's answer for its keygen session. */
void hk_ep_attest(hk_service *svc, const hk_http_req *req, const char *sub,
                  hk_http_resp *r);
/* Whether keygen session sid of sub may go on: HK_OK with summary[]
 * the attestation stored with the key ("" for none), or HK_ERR_ATTEST
 * with *why (an attestation was offered and is not verified, or policy
 * requires one). */
HK_WUR hk_err hk_attest_outcome(hk_service *svc, const unsigned char *sid,
                                const char *sub,
                                char summary[HK_DB_ATTEST_MAX + 1],
                                const char **why);

#endif
