/* halfkeyd service: endpoints, WebSocket glue, lifecycle. */
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "mpc/codec.h"
#include "mpc/pve.h"
#include "mpc/setup.h"
#include "server/seal/keyring.h"
#include "server/log.h"
#include "server/http/callbacks.h"
#include "server/http/requests.h"
#include "server/http/bodies.h"
#include "server/http/service_impl.h"

#define HK_DRAIN_IDLE 5  /* seconds */
#define HK_PROBE_EVERY 1 /* seconds between database write probes */
#define HK_FD_RESERVE 64 /* fds kept from connections, plus 4 per worker */

int64_t hk_now(void) { return (int64_t)time(NULL); }

double hk_mono(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* --- responses ------------------------------------------------------------ */

/* HTTP status and error code for an hk_err from storage or policy. */
static void hk_respond_hk(hk_http_resp *r, hk_err e)
{
    switch (e) {
    case HK_ERR_NOT_FOUND:
        hk_respond_err(r, 404, "not_found", "no such key");
        break;
    case HK_ERR_FORBIDDEN:
        hk_respond_err(r, 403, "forbidden", hk_strerror(e));
        break;
    case HK_ERR_RATE:
        hk_respond_err(r, 429, "rate_limited", hk_strerror(e));
        break;
    default:
        hk_respond_err(r, 500, "internal", hk_strerror(e));
    }
}

/* A policy refusal: 429 (with Retry-After) or 403 and the reason. */
static void hk_respond_refusal(hk_service *svc, hk_http_resp *r,
                               const hk_refusal *why)
{
    hk_metrics_refusal(svc->metrics, why->code);
    r->retry_after = why->retry_after;
    hk_respond(r, why->http,
               json_pack("{s:s,s:s,s:i}", "error", why->code, "message",
                         why->message, "retry_after", why->retry_after));
}

/* "Bearer <jwt>" -> subject (and expiry); HK_ERR_AUTH otherwise. */
/* The request's JWT; a refusal is logged with the failed check, the
 * subject (once the signature verified) and the peer. */
static hk_err hk_authenticate(hk_service *svc, const hk_http_req *req,
                              char *sub, long *exp)
{
    hk_jwt_why why = {"no_bearer", "-"};
    hk_err e = HK_ERR_AUTH;

    if (req->auth != NULL && strncmp(req->auth, "Bearer ", 7) == 0)
        e = hk_jwt_verify_why(svc->jwt, req->auth + 7, (long)hk_now(), sub, exp,
                              &why);
    if (e != HK_OK)
        hk_log("warn", "event=auth_refused path=%s reason=%s sub=%s peer=%s",
               req->path, why.reason, why.sub,
               req->peer != NULL ? req->peer : "?");
    return e;
}

/* key_id from a JSON body or query value, owned by sub. */
static hk_err hk_owned_key(hk_service *svc, const char *hex, const char *sub,
                           unsigned char kid[HK_ID_LEN], hk_db_key *key)
{
    hk_err e;

    if (!hk_kid_decode(hex, kid))
        return HK_ERR_NOT_FOUND;
    pthread_mutex_lock(&svc->dbmu);
    e = hk_db_key_get_owned(svc->db, kid, sub, key);
    pthread_mutex_unlock(&svc->dbmu);
    return e;
}

/* Starts the server's share of a sign before the WebSocket arrives. */
static void hk_signprep_start(hk_service *svc, const unsigned char *sid,
                              const char *sub, const unsigned char *kid)
{
    hk_signprep_job *j = calloc(1, sizeof(*j));

    if (j == NULL || (j->ps = calloc(1, sizeof(*j->ps))) == NULL) {
        free(j);
        return; /* the WebSocket side does the work instead */
    }
    j->svc = svc;
    memcpy(j->ps->sid, sid, HK_ID_LEN);
    j->ps->created = hk_now();
    snprintf(j->sub, sizeof(j->sub), "%s", sub);
    memcpy(j->kid, kid, HK_ID_LEN);
    /* listed at once (queued): a WebSocket that arrives while the job
     * runs waits for it instead of doing the same work (hk_signprep_take) */
    pthread_mutex_lock(&svc->mu);
    j->ps->next = svc->signpreps;
    svc->signpreps = j->ps;
    pthread_mutex_unlock(&svc->mu);
    if (hk_workers_submit(svc->workers, hk_signprep_run, j) != HK_OK) {
        pthread_mutex_lock(&svc->mu);
        j->ps->state = HK_SP_FAILED; /* hk_signprep_take frees it */
        pthread_mutex_unlock(&svc->mu);
        (void)hk_signprep_take(svc, sid);
        free(j);
    }
}

/* Admits (policy.h) and opens a session in the database, then answers
 * its id. key: the key of a sign or refresh, NULL for a keygen of `curve`
 * whose new key id is kid. */
/* A sign session's request binding (requests.h): digest idx of rid. */
typedef struct {
    unsigned char rid[HK_ID_LEN];
    unsigned idx;
} hk_req_bind;

/* The challenge of an attested keygen, stored with its session. */
static hk_err hk_attest_store(hk_service *svc, const unsigned char *sid,
                              const hk_att_challenge *ch)
{
    hk_db_attestation a;

    memset(&a, 0, sizeof(a));
    a.state = HK_DB_ATT_CHALLENGED;
    memcpy(a.cred_hash, ch->cred_hash, sizeof(a.cred_hash));
    memcpy(a.ak_pub, ch->ak_pub, ch->ak_publen);
    a.ak_publen = ch->ak_publen;
    memcpy(a.summary, ch->summary, sizeof(a.summary));
    return hk_db_attest_put(svc->db, sid, &a);
}

/* The session's answer: its ids, and an attested keygen's challenge. */
static json_t *hk_session_answer(hk_service *svc, const char *sid,
                                 const char *kid, const hk_att_challenge *ch)
{
    json_t *o = json_pack("{s:s,s:s,s:i}", "session_id", sid, "key_id", kid,
                          "idle_timeout", svc->cfg.session_idle);
    char *id, *sec;

    if (o == NULL || ch == NULL)
        return o;
    id = hk_b64_encode(ch->id_object, ch->id_len);
    sec = hk_b64_encode(ch->secret, ch->secret_len);
    if (id == NULL || sec == NULL ||
        json_object_set_new(o, "attest",
                            json_pack("{s:s,s:s}", "credential_blob", id,
                                      "encrypted_secret", sec)) != 0) {
        json_decref(o);
        o = NULL;
    }
    OPENSSL_free(id);
    OPENSSL_free(sec);
    return o;
}

static void hk_open_session(hk_service *svc, hk_http_resp *r, const char *sub,
                            hk_db_op op, const hk_db_key *key,
                            const unsigned char *kid, hk_curve_id curve,
                            const hk_req_bind *rb, const hk_att_challenge *ch)
{
    char rwhy[HK_REQ_WHY] = "";
    unsigned char sid[HK_ID_LEN];
    char sidhex[2 * HK_ID_LEN + 1], kidhex[2 * HK_ID_LEN + 1], idbuf[64];
    hk_refusal why;
    hk_err e;

    if (svc->draining) {
        hk_metrics_refusal(svc->metrics, "draining");
        return hk_respond_err(r, 503, "draining", "server shutting down");
    }
    if (RAND_bytes(sid, sizeof(sid)) != 1)
        return hk_respond_err(r, 500, "internal", "random failure");
    pthread_mutex_lock(&svc->dbmu);
    e = rb != NULL
            ? hk_req_signable(svc, sub, kid, rb->rid, rb->idx, hk_now(), rwhy)
        : op == HK_DB_OP_SIGN ? hk_req_direct_allowed(svc, key, rwhy)
                              : HK_OK;
    if (e != HK_OK) {
        pthread_mutex_unlock(&svc->dbmu);
        return hk_respond_err(r,
                              e == HK_ERR_NOT_FOUND   ? 404
                              : e == HK_ERR_FORBIDDEN ? 403
                                                      : 409,
                              e == HK_ERR_NOT_FOUND   ? "not_found"
                              : e == HK_ERR_FORBIDDEN ? "request_policy"
                                                      : "request_not_signable",
                              rwhy);
    }
    e = hk_policy_admit(svc->db, &svc->cfg, sub, op, key, curve, ch != NULL,
                        op == HK_DB_OP_KEYGEN && hk_attest_needed(svc, sub),
                        sid, &why);
    if (e == HK_OK && op == HK_DB_OP_KEYGEN)
        e = hk_db_session_create_keygen(svc->db, sid, sub, kid, curve,
                                        hk_now());
    else if (e == HK_OK)
        e = hk_db_session_create(svc->db, sid, sub, op, kid, hk_now());
    if (e == HK_OK && rb != NULL)
        e = hk_db_session_bind_request(svc->db, sid, rb->rid, rb->idx);
    if (e == HK_OK && ch != NULL)
        e = hk_attest_store(svc, sid, ch);
    pthread_mutex_unlock(&svc->dbmu);
    if (e == HK_ERR_RATE || e == HK_ERR_FORBIDDEN) {
        hk_metrics_op(svc->metrics, op, HK_OUT_REFUSED, -1);
        hk_log("warn", "event=policy_refused op=%s sub=%s reason=%s",
               hk_db_op_name(op), sub, why.code);
        return hk_respond_refusal(svc, r, &why);
    }
    if (e != HK_OK)
        return hk_respond_hk(r, e);
    if (op == HK_DB_OP_SIGN)
        hk_signprep_start(svc, sid, sub, kid);
    hk_hex(sid, HK_ID_LEN, sidhex);
    hk_hex(kid, HK_ID_LEN, kidhex);
    snprintf(idbuf, sizeof(idbuf), "sess_%s", sidhex);
    hk_log("info", "event=session_open op=%s sub=%s key=%s session=%s",
           hk_db_op_name(op), sub, kidhex, idbuf);
    hk_respond(r, 200, hk_session_answer(svc, idbuf, kidhex, ch));
}

static void hk_ep_keygen(hk_service *svc, const hk_http_req *req,
                         const char *sub, hk_http_resp *r)
{
    static const char *const allowed[] = {"curve", "pbits", "attest", NULL};
    unsigned char kid[HK_ID_LEN];
    hk_curve_id curve;
    hk_att_challenge *ch = NULL;
    json_t *o = hk_body_decode(req->body, req->body_len, allowed), *c, *p, *a;

    c = json_object_get(o, "curve");
    p = json_object_get(o, "pbits");
    if (o == NULL || !json_is_string(c) ||
        hk_curve_from_name(json_string_value(c), &curve) != HK_OK ||
        (p != NULL &&
         (!json_is_integer(p) ||
          (json_integer_value(p) != 2048 && json_integer_value(p) != 3072) ||
          json_integer_value(p) < svc->cfg.min_paillier_bits))) {
        json_decref(o);
        hk_respond_err(r, 400, "bad_request",
                       "body must be {\"curve\": \"secp256k1\"|\"p256\"}");
        return;
    }
    /* an attested keygen: the challenge first (a refusal answers here) */
    if ((a = json_object_get(o, "attest")) != NULL &&
        ((ch = OPENSSL_zalloc(sizeof(*ch))) == NULL ||
         !hk_attest_start(svc, a, sub, ch, r))) {
        if (ch == NULL)
            hk_respond_err(r, 500, "internal", "out of memory");
        goto done;
    }
    if (RAND_bytes(kid, sizeof(kid)) != 1) {
        hk_respond_err(r, 500, "internal", "random failure");
        goto done;
    }
    hk_open_session(svc, r, sub, HK_DB_OP_KEYGEN, NULL, kid, curve, NULL, ch);
done:
    json_decref(o);
    OPENSSL_clear_free(ch, ch != NULL ? sizeof(*ch) : 0);
}

/* A sign's optional "request_id" and "index" (0 when absent) into *rb;
 * 0 if malformed. */
static int hk_parse_req_bind(json_t *o, hk_req_bind *rb, int *bound)
{
    json_t *id = json_object_get(o, "request_id");
    json_t *ix = json_object_get(o, "index");

    *bound = id != NULL;
    if (id == NULL)
        return ix == NULL;
    rb->idx = 0;
    if (ix != NULL) {
        if (!json_is_integer(ix) || json_integer_value(ix) < 0 ||
            json_integer_value(ix) >= HK_DB_REQ_DIGESTS_MAX)
            return 0;
        rb->idx = (unsigned)json_integer_value(ix);
    }
    return hk_req_parse_id(json_string_value(id), rb->rid);
}

static void hk_ep_keyop(hk_service *svc, const hk_http_req *req,
                        const char *sub, hk_db_op op, hk_http_resp *r)
{
    static const char *const allowed[] = {"key_id", "request_id", "index",
                                          NULL};
    unsigned char kid[HK_ID_LEN];
    hk_req_bind rb;
    hk_db_key key;
    json_t *o = hk_body_decode(req->body, req->body_len, allowed);
    int bound = 0;
    hk_err e;

    if (o == NULL || !json_is_string(json_object_get(o, "key_id")) ||
        !hk_parse_req_bind(o, &rb, &bound) || (bound && op != HK_DB_OP_SIGN)) {
        json_decref(o);
        hk_respond_err(r, 400, "bad_request",
                       op == HK_DB_OP_SIGN
                           ? "body must be {\"key_id\"[, \"request_id\", "
                             "\"index\"]}"
                           : "body must be {\"key_id\"}");
        return;
    }
    e = hk_owned_key(svc, json_string_value(json_object_get(o, "key_id")), sub,
                     kid, &key);
    json_decref(o);
    if (e != HK_OK) {
        hk_respond_hk(r, e);
        return;
    }
    hk_open_session(svc, r, sub, op, &key, kid, 0, bound ? &rb : NULL, NULL);
}

/* POST /delete {"key_id"}: the key and its server shares, for good. */
static void hk_ep_delete(hk_service *svc, const hk_http_req *req,
                         const char *sub, hk_http_resp *r)
{
    static const char *const allowed[] = {"key_id", NULL};
    unsigned char kid[HK_ID_LEN];
    char kh[2 * HK_ID_LEN + 1];
    json_t *o = hk_body_decode(req->body, req->body_len, allowed);
    const char *hex = json_string_value(json_object_get(o, "key_id"));
    char detail[128];
    unsigned long backup = 0;
    hk_audit_ev ev;
    hk_err e = HK_ERR_NOT_FOUND;

    if (hex == NULL) {
        json_decref(o);
        return hk_respond_err(r, 400, "bad_request",
                              "body must be {\"key_id\"}");
    }
    memset(&ev, 0, sizeof(ev));
    ev.event = "delete";
    ev.sub = sub;
    ev.kid = kid;
    pthread_mutex_lock(&svc->dbmu);
    if (hk_kid_decode(hex, kid) &&
        (e = hk_db_backup_newest(svc->db, kid, &backup)) == HK_OK &&
        (e = hk_db_key_delete(svc->db, kid, sub)) == HK_OK) {
        ev.outcome = "ok";
        /* the backup goes with the key: it restores nothing without the
         * server's share */
        snprintf(detail, sizeof(detail),
                 "by the owner; the key had a backup (epoch %lu), deleted "
                 "with it",
                 backup);
        ev.detail = backup > 0 ? detail : NULL;
        e = hk_audit_write(svc->db, svc->cfg.node, &ev, hk_now());
    }
    pthread_mutex_unlock(&svc->dbmu);
    json_decref(o);
    if (e != HK_OK)
        return hk_respond_hk(r, e);
    hk_hex(kid, HK_ID_LEN, kh);
    hk_log("info", "event=key_deleted sub=%s key=%s backup_epoch=%lu", sub, kh,
           backup);
    hk_respond(r, 200,
               json_pack("{s:s,s:b,s:b}", "key_id", kh, "deleted", 1,
                         "had_backup", backup > 0));
}

/* POST /unlock {"key_id", "reason"}: the owner overrides the abort lock
 * of a key on its device (`halfkey unlock --force`). Nothing changes
 * here: the override is audited and logged, so the operator sees that a
 * key which caught the server cheating is in use again. */
static void hk_ep_unlock(hk_service *svc, const hk_http_req *req,
                         const char *sub, hk_http_resp *r)
{
    static const char *const allowed[] = {"key_id", "reason", NULL};
    unsigned char kid[HK_ID_LEN];
    char kh[2 * HK_ID_LEN + 1], detail[HK_AUDIT_DETAIL_MAX + 1];
    json_t *o = hk_body_decode(req->body, req->body_len, allowed);
    const char *hex = json_string_value(json_object_get(o, "key_id"));
    const char *why = json_string_value(json_object_get(o, "reason"));
    hk_db_key key;
    hk_audit_ev ev;
    size_t i;
    hk_err e = HK_ERR_NOT_FOUND;

    if (hex == NULL || why == NULL) {
        json_decref(o);
        return hk_respond_err(r, 400, "bad_request",
                              "body must be {\"key_id\", \"reason\"}");
    }
    snprintf(detail, sizeof(detail), "abort lock overridden by the owner: %s",
             why);
    for (i = 0; detail[i] != 0; i++) /* audit text: printable ASCII */
        if (detail[i] < 0x20 || detail[i] > 0x7e)
            detail[i] = '?';
    memset(&ev, 0, sizeof(ev));
    ev.event = "unlock";
    ev.outcome = "forced";
    ev.sub = sub;
    ev.kid = kid;
    ev.detail = detail;
    pthread_mutex_lock(&svc->dbmu);
    if (hk_kid_decode(hex, kid) &&
        (e = hk_db_key_get_owned(svc->db, kid, sub, &key)) == HK_OK)
        e = hk_audit_write(svc->db, svc->cfg.node, &ev, hk_now());
    pthread_mutex_unlock(&svc->dbmu);
    json_decref(o); /* hex and why point into it */
    if (e != HK_OK)
        return hk_respond_hk(r, e);
    hk_hex(kid, HK_ID_LEN, kh);
    hk_log("warn", "event=abort_lock_overridden sub=%s key=%s", sub, kh);
    hk_respond(r, 200, json_pack("{s:s,s:b}", "key_id", kh, "audited", 1));
}

static void hk_ep_pubkey(hk_service *svc, const hk_http_req *req,
                         const char *sub, hk_http_resp *r)
{
    unsigned char kid[HK_ID_LEN], unc[HK_POINT_UNCOMPRESSED_LEN];
    char hex[2 * HK_POINT_UNCOMPRESSED_LEN + 1], khex[64];
    unsigned long epoch = 0, backup = 0;
    unsigned char *sealed = NULL;
    size_t len = 0;
    hk_curve *c = NULL;
    hk_db_key key;
    char fp[65];
    const char *issuer;
    json_t *o;
    hk_err e;

    if (!hk_query_get(req->query, "key_id", khex, sizeof(khex))) {
        hk_respond_err(r, 400, "bad_request", "key_id required");
        return;
    }
    if ((e = hk_owned_key(svc, khex, sub, kid, &key)) != HK_OK &&
        e != HK_ERR_FORBIDDEN) {
        hk_respond_hk(r, e);
        return;
    }
    if (hk_curve_new(key.curve, &c) != HK_OK ||
        hk_point_uncompressed(c, &key.pub, unc) != HK_OK) {
        hk_curve_free(c);
        hk_respond_err(r, 500, "internal", "bad stored key");
        return;
    }
    hk_curve_free(c);
    hk_hex(unc, sizeof(unc), hex);
    /* the share versions: a client compares its key file with them
     * (halfkey doctor), and sees whether its backup is current */
    pthread_mutex_lock(&svc->dbmu);
    if (hk_db_share_get_active(svc->db, kid, &epoch, &sealed, &len) != HK_OK)
        epoch = 0;
    if (hk_db_backup_newest(svc->db, kid, &backup) != HK_OK)
        backup = 0;
    pthread_mutex_unlock(&svc->dbmu);
    OPENSSL_free(sealed);
    hk_att_summary_split(key.attestation, fp, &issuer);
    o = json_pack("{s:s,s:s,s:s,s:b,s:I,s:I,s:b}", "key_id", khex, "curve",
                  hk_curve_name(key.curve), "pubkey", hex, "disabled",
                  key.disabled, "epoch", (json_int_t)epoch, "backup_epoch",
                  (json_int_t)backup, "attested", key.attestation[0] != 0);
    /* an attested key: whose endorsement CA vouched for its device */
    if (o != NULL && key.attestation[0] != 0)
        json_object_set_new(
            o, "attestation",
            json_pack("{s:s,s:s}", "ek_issuer", issuer, "ek_cert_sha256", fp));
    hk_respond(r, 200, o);
}

/* --- backups (issue 18) ---------------------------------------------------
 * POST /backup {"key_id", "epoch", "blob", "backup_pub"}: the owner's
 * client share of that epoch encrypted under its offline backup key
 * (mpc/pve.h, base64) and that key's public half (PEM). The blob is
 * verified against the Q1 of the share the server holds for that epoch
 * (active or pending) and its binding to key id, epoch and backup key
 * before anything is stored; a refusal names the reason. */

/* Why a blob was refused: status 400 with a reason, or another status. */
static const char *hk_backup_reason(hk_err e)
{
    switch (e) {
    case HK_ERR_BINDING:
        return "backup blob is for another key, epoch, curve, share or "
               "backup key";
    case HK_ERR_PROOF:
        return "backup blob does not verify: it does not encrypt this "
               "key's client share";
    case HK_ERR_DECODE:
    case HK_ERR_POINT:
    case HK_ERR_SCALAR:
    case HK_ERR_TOO_BIG:
        return "malformed backup blob";
    case HK_ERR_VERSION:
        return "unknown backup blob version";
    case HK_ERR_CONFIG:
        return "backup_pub must be a P-256 or RSA-3072 (e = 65537) public "
               "key in PEM";
    case HK_ERR_EPOCH:
        return "the key has no share of that epoch (any more)";
    default:
        return NULL;
    }
}

/* Checks the request's blob against the share of (kid, epoch) and stores
 * it. The verification (64 re-encryptions and point multiplications) runs
 * without the database lock: the other requests need it meanwhile. */
static hk_err hk_backup_check_store(hk_service *svc, const char *sub,
                                    const hk_backup_req *rq)
{
    hk_share *sh = NULL;
    hk_err e;

    pthread_mutex_lock(&svc->dbmu);
    e = hk_load_share(svc->db, svc->kek, sub, rq->kid, rq->epoch, &sh, NULL);
    if (e == HK_ERR_NOT_FOUND &&
        hk_db_key_get_owned(svc->db, rq->kid, sub, &(hk_db_key){0}) == HK_OK)
        e = HK_ERR_EPOCH; /* the key is there, the share is not */
    pthread_mutex_unlock(&svc->dbmu);
    if (e == HK_OK)
        e = hk_pve_verify(rq->bk, sh->curve, rq->kid, rq->epoch, &sh->Q1,
                          rq->blob, rq->len);
    /* the store checks again that the epoch's share is still there */
    if (e == HK_OK) {
        pthread_mutex_lock(&svc->dbmu);
        e = hk_db_backup_put(svc->db, rq->kid, rq->epoch, rq->bk_fp, rq->blob,
                             rq->len, hk_now());
        pthread_mutex_unlock(&svc->dbmu);
    }
    hk_share_free(sh);
    return e;
}

/* A decoded POST /backup (e: the decode's result) checked, stored,
 * audited and answered in r. */
static void hk_backup_post_finish(hk_service *svc, const char *sub,
                                  const hk_backup_req *rq, hk_err e,
                                  hk_http_resp *r)
{
    char kh[2 * HK_ID_LEN + 1], fh[2 * HK_HASH_LEN + 1], detail[160];
    const char *why;
    hk_audit_ev ev;

    if (e == HK_OK)
        e = hk_backup_check_store(svc, sub, rq);
    hk_hex(rq->kid, HK_ID_LEN, kh);
    hk_hex(rq->bk_fp, HK_HASH_LEN, fh);
    why = hk_backup_reason(e);
    if (e == HK_ERR_NOT_FOUND || e == HK_ERR_FORBIDDEN ||
        (e != HK_OK && why == NULL)) {
        hk_log("warn", "event=backup_failed sub=%s key=%s error=\"%s\"", sub,
               kh, hk_strerror(e));
        return hk_respond_hk(r, e);
    }
    memset(&ev, 0, sizeof(ev));
    ev.event = "backup";
    ev.outcome = e == HK_OK ? "ok" : "refused";
    ev.sub = sub;
    ev.kid = rq->kid;
    snprintf(detail, sizeof(detail), "epoch %lu, backup key %.16s%s%s",
             rq->epoch, fh, why != NULL ? ": " : "", why != NULL ? why : "");
    ev.detail = detail;
    pthread_mutex_lock(&svc->dbmu);
    if (hk_audit_write(svc->db, svc->cfg.node, &ev, hk_now()) != HK_OK)
        hk_log("error", "event=audit_write_failed what=backup");
    pthread_mutex_unlock(&svc->dbmu);
    hk_log(e == HK_OK ? "info" : "warn",
           "event=backup_%s sub=%s key=%s epoch=%lu reason=\"%s\"",
           e == HK_OK ? "stored" : "refused", sub, kh, rq->epoch,
           why != NULL ? why : "");
    if (e != HK_OK)
        return hk_respond_err(r, 400, "backup_refused", why);
    hk_respond(r, 200,
               json_pack("{s:s,s:I,s:b,s:s}", "key_id", kh, "epoch",
                         (json_int_t)rq->epoch, "stored", 1, "backup_key", fh));
}

/* A POST /backup on the worker pool (its answer deferred). */
typedef struct {
    hk_service *svc;
    hk_tconn *later;
    char sub[HK_JWT_SUB_MAX + 1];
    hk_backup_req rq;
    hk_err decoded;
} hk_backup_job;

static void hk_backup_job_free(hk_backup_job *j)
{
    hk_backup_req_clear(&j->rq);
    free(j);
}

static void hk_backup_job_run(void *arg)
{
    hk_backup_job *j = arg;
    hk_http_resp r;

    memset(&r, 0, sizeof(r));
    hk_backup_post_finish(j->svc, j->sub, &j->rq, j->decoded, &r);
    hk_http_answer(j->later, &r);
    hk_tconn_unref(j->later);
    hk_backup_job_free(j);
}

static void hk_ep_backup_post(hk_service *svc, const hk_http_req *req,
                              const char *sub, hk_http_resp *r)
{
    hk_backup_job *j = calloc(1, sizeof(*j));

    if (j == NULL)
        return hk_respond_hk(r, HK_ERR_NOMEM);
    j->decoded = hk_backup_req_decode(req->body, req->body_len, &j->rq);
    if (j->decoded == HK_ERR_ARG) {
        hk_backup_job_free(j);
        return hk_respond_err(r, 400, "bad_request",
                              "body must be {\"key_id\", \"epoch\", \"blob\" "
                              "(base64), \"backup_pub\" (PEM)}");
    }
    j->svc = svc;
    snprintf(j->sub, sizeof(j->sub), "%s", sub);
    /* the blob's verification leaves the service thread, which keeps
     * serving the other clients (their signatures) meanwhile */
    if ((j->later = hk_http_defer(r)) == NULL) {
        hk_backup_post_finish(svc, sub, &j->rq, j->decoded, r);
        return hk_backup_job_free(j);
    }
    if (hk_workers_submit(svc->workers, hk_backup_job_run, j) != HK_OK)
        hk_backup_job_run(j); /* the pool is stopping: here, answered all
                                 the same */
}

/* GET /backup?key_id=: the newest backup whose share the server still
 * holds, with the public values of that share (mpc/share.h public view):
 * what a client restoring on a new device needs besides its backup
 * private key. Owner only; 404 when the key has no usable backup. */
static void hk_ep_backup_get(hk_service *svc, const hk_http_req *req,
                             const char *sub, hk_http_resp *r)
{
    unsigned char kid[HK_ID_LEN], *view = NULL;
    char khex[64], fh[2 * HK_HASH_LEN + 1], *b64 = NULL, *v64 = NULL;
    hk_db_backup b;
    hk_share *sh = NULL;
    hk_db_key key;
    size_t vlen = 0;
    int pending = 0;
    hk_err e;

    memset(&b, 0, sizeof(b));
    if (!hk_query_get(req->query, "key_id", khex, sizeof(khex)))
        return hk_respond_err(r, 400, "bad_request", "key_id required");
    if ((e = hk_owned_key(svc, khex, sub, kid, &key)) != HK_OK)
        return hk_respond_hk(r, e);
    pthread_mutex_lock(&svc->dbmu);
    e = hk_db_backup_get(svc->db, kid, 0, &b);
    if (e == HK_OK)
        e = hk_load_share(svc->db, svc->kek, sub, kid, b.epoch, &sh, &pending);
    pthread_mutex_unlock(&svc->dbmu);
    if (e == HK_OK && (e = hk_share_public_encode(sh, &view, &vlen)) == HK_OK &&
        ((b64 = hk_b64_encode(b.blob, b.len)) == NULL ||
         (v64 = hk_b64_encode(view, vlen)) == NULL))
        e = HK_ERR_NOMEM;
    if (e == HK_ERR_NOT_FOUND)
        hk_respond_err(r, 404, "not_found", "no backup of this key");
    else if (e != HK_OK)
        hk_respond_hk(r, e);
    else {
        hk_hex(b.bk_fp, HK_HASH_LEN, fh);
        hk_respond(r, 200,
                   json_pack("{s:s,s:s,s:I,s:s,s:s,s:s,s:s,s:I}", "key_id",
                             khex, "curve", hk_curve_name(key.curve), "epoch",
                             (json_int_t)b.epoch, "state",
                             pending ? "pending" : "active", "backup_key", fh,
                             "blob", b64, "share", v64, "created",
                             (json_int_t)b.created));
    }
    OPENSSL_free(b.blob);
    OPENSSL_free(view);
    OPENSSL_free(b64);
    OPENSSL_free(v64);
    hk_share_free(sh);
}

static int hk_active_sessions(hk_service *svc)
{
    int n;

    pthread_mutex_lock(&svc->mu);
    n = svc->nsessions;
    pthread_mutex_unlock(&svc->mu);
    return n;
}

/* "seal": the primary KEK's back end, id and health. */
static json_t *hk_seal_status(hk_service *svc, int *ok)
{
    unsigned char id[HK_KEK_ID_LEN];
    char hex[17], why[256] = "";

    json_t *o;

    /* the ring may be swapped by a reload: read it under the lock */
    pthread_mutex_lock(&svc->dbmu);
    *ok = hk_kek_health(svc->kek, why, sizeof(why)) == HK_OK;
    hk_kek_id(svc->kek, id);
    hk_kek_id_hex(id, hex);
    o = json_pack("{s:s,s:s,s:s}", "backend", hk_kek_name(svc->kek), "kek_id",
                  hex, "status", *ok ? "ok" : "error");
    pthread_mutex_unlock(&svc->dbmu);
    if (!*ok)
        hk_log("error", "event=seal_unhealthy reason=\"%s\"", why);
    return o;
}

/* Whether the database takes writes: a read (the schema version) passes
 * on a full or read-only disk, where every operation fails. Probed at
 * most once per HK_PROBE_EVERY seconds (health checks poll often; each
 * probe is a committed write); *why gets the failure. */
static hk_err hk_db_health(hk_service *svc, int *version, char *why, size_t cap)
{
    int64_t now = hk_now();
    hk_err e;

    pthread_mutex_lock(&svc->dbmu);
    e = hk_db_schema_version(svc->db, version);
    if (e == HK_OK && now - svc->probe_time >= HK_PROBE_EVERY) {
        svc->probe_err = hk_db_write_probe(svc->db, now);
        svc->probe_time = now;
        snprintf(svc->probe_why, sizeof(svc->probe_why), "%s",
                 svc->probe_err != HK_OK ? hk_db_errmsg(svc->db) : "");
    }
    if (e == HK_OK)
        e = svc->probe_err;
    snprintf(why, cap, "%s", e == HK_OK ? "" : svc->probe_why);
    pthread_mutex_unlock(&svc->dbmu);
    if (e != HK_OK)
        hk_log("error", "event=database_unhealthy reason=\"%s\"", why);
    return e;
}

static void hk_ep_status(hk_service *svc, hk_http_resp *r)
{
    int v = 0, ok, seal_ok = 0;
    json_t *seal = hk_seal_status(svc, &seal_ok);
    char dbwhy[160];
    hk_err e = hk_db_health(svc, &v, dbwhy, sizeof(dbwhy));

    ok = e == HK_OK && seal_ok && !svc->draining;
    hk_respond(
        r, ok ? 200 : 503,
        json_pack(
            "{s:s,s:s,s:i,s:s,s:{s:s,s:s,s:i,s:b,s:s},s:o,s:i,s:b}", "status",
            svc->draining ? "draining"
                          : (e == HK_OK && seal_ok ? "ok" : "degraded"),
            "version", HK_VERSION, "protocol", HK_PROTOCOL_VERSION, "node",
            svc->cfg.node, "database", "backend", hk_db_backend(svc->db),
            "status", e == HK_OK ? "ok" : "error", "schema", v, "writable",
            e == HK_OK, "error", dbwhy, "seal", seal, "sessions",
            hk_active_sessions(svc), "draining", (int)svc->draining));
}

static void hk_ep_metrics(hk_service *svc, hk_http_resp *r)
{
    if (!svc->cfg.metrics)
        return hk_respond_err(r, 404, "not_found", "metrics are off");
    hk_metrics_gauges g;
    hk_tsrv_stats ts;

    hk_tsrv_stats_get(svc->tsrv, &ts);
    memset(&g, 0, sizeof(g));
    g.sessions = hk_active_sessions(svc);
    g.draining = (int)svc->draining;
    g.conns = ts.conns;
    g.refused_cap = ts.refused_cap;
    g.refused_peer = ts.refused_peer;
    g.max_conns = svc->max_conns;
    g.max_per_peer = svc->cfg.max_conns_per_peer;
    pthread_mutex_lock(&svc->dbmu);
    if (hk_db_backup_counts(svc->db, &g.backup_none, &g.backup_stale,
                            &g.backup_waiting) != HK_OK)
        g.backup_none = g.backup_stale = g.backup_waiting = -1;
    pthread_mutex_unlock(&svc->dbmu);
    r->status = 200;
    r->content_type = "text/plain; version=0.0.4";
    r->body = hk_metrics_render(svc->metrics, &g, svc->cfg.node);
}

static void hk_on_http(void *ctx, const hk_http_req *req, hk_http_resp *r)
{
    hk_service *svc = ctx;
    char sub[HK_JWT_SUB_MAX + 1];
    int post = strcmp(req->method, "POST") == 0;

    if (!post && strcmp(req->path, "/status") == 0)
        return hk_ep_status(svc, r);
    if (!post && strcmp(req->path, "/metrics") == 0)
        return hk_ep_metrics(svc, r);
    if (!post && strcmp(req->path, "/setup") == 0) {
        r->status = 200;
        r->body = strndup((const char *)svc->setup_pub, svc->setup_pub_len);
        return;
    }
    if (strcmp(req->path, "/requests") == 0 ||
        strncmp(req->path, "/requests/", 10) == 0)
        return hk_ep_requests(svc, req, r);
    if (strcmp(req->path, "/keygen") && strcmp(req->path, "/sign") &&
        strcmp(req->path, "/refresh") && strcmp(req->path, "/pubkey") &&
        strcmp(req->path, "/delete") && strcmp(req->path, "/unlock") &&
        strcmp(req->path, "/backup") && strcmp(req->path, "/attest"))
        return hk_respond_err(r, 404, "not_found", "no such endpoint");
    if (strcmp(req->path, "/backup") == 0
            ? !post && strcmp(req->method, "GET") != 0
            : post == (strcmp(req->path, "/pubkey") == 0))
        return hk_respond_err(r, 405, "method", "method not allowed");
    if (hk_authenticate(svc, req, sub, NULL) != HK_OK) {
        return hk_respond_err(r, 401, "unauthorized",
                              "missing, invalid or expired token");
    }
    if (strcmp(req->path, "/keygen") == 0)
        return hk_ep_keygen(svc, req, sub, r);
    if (strcmp(req->path, "/attest") == 0)
        return hk_ep_attest(svc, req, sub, r);
    if (strcmp(req->path, "/sign") == 0)
        return hk_ep_keyop(svc, req, sub, HK_DB_OP_SIGN, r);
    if (strcmp(req->path, "/refresh") == 0)
        return hk_ep_keyop(svc, req, sub, HK_DB_OP_REFRESH, r);
    if (strcmp(req->path, "/delete") == 0)
        return hk_ep_delete(svc, req, sub, r);
    if (strcmp(req->path, "/unlock") == 0)
        return hk_ep_unlock(svc, req, sub, r);
    if (strcmp(req->path, "/backup") == 0)
        return post ? hk_ep_backup_post(svc, req, sub, r)
                    : hk_ep_backup_get(svc, req, sub, r);
    hk_ep_pubkey(svc, req, sub, r);
}

/* --- WebSocket ------------------------------------------------------------ */

/* Claims the session named by the query for the token's subject. */
static int hk_claim_session(hk_service *svc, const hk_http_req *req,
                            hk_rsess *s)
{
    char val[64];
    hk_db_session ds;
    hk_err e;

    if (hk_query_get(req->query, "channel", val, sizeof(val))) {
        /* A kept-open connection: sessions are opened on it later. */
        if (strcmp(val, "1") != 0)
            return 404;
        if (hk_authenticate(svc, req, s->sub, &s->exp) != HK_OK)
            return 401;
        s->channel = 1;
        return 0;
    }
    if (!hk_query_get(req->query, "session_id", val, sizeof(val)) ||
        strncmp(val, "sess_", 5) != 0 ||
        !hk_unhex(val + 5, strlen(val + 5), s->sid, HK_ID_LEN))
        return 404;
    if (hk_authenticate(svc, req, s->sub, &s->exp) != HK_OK)
        return 401;
    pthread_mutex_lock(&svc->dbmu);
    e = hk_db_session_get(svc->db, s->sid, hk_now(), svc->cfg.session_idle,
                          &ds);
    if (e == HK_OK && strcmp(ds.owner, s->sub) != 0)
        e = HK_ERR_SESSION;
    if (e == HK_OK)
        e = hk_db_session_set_state(svc->db, s->sid, HK_DB_SESS_RUNNING,
                                    hk_now(), svc->cfg.session_idle);
    pthread_mutex_unlock(&svc->dbmu);
    if (e != HK_OK || !ds.has_kid)
        return e == HK_ERR_STATE ? 409 : 404;
    s->op = ds.op;
    s->curve = ds.curve;
    s->has_rid = ds.has_rid;
    memcpy(s->rid, ds.rid, HK_ID_LEN);
    s->ridx = ds.ridx;
    s->started = hk_mono();
    memcpy(s->kid, ds.kid, HK_ID_LEN);
    return 0;
}

static int hk_on_ws_open(void *ctx, hk_tconn *conn, const hk_http_req *req)
{
    hk_service *svc = ctx;
    hk_rsess *s;
    int st;

    if (strcmp(req->path, "/ws") != 0)
        return 404;
    if (svc->draining)
        return 503;
    if ((s = calloc(1, sizeof(*s))) == NULL)
        return 503;
    pthread_mutex_init(&s->mu, NULL);
    s->svc = svc;
    s->refs = 1; /* the connection's */
    s->last = s->touched = hk_now();
    if ((st = hk_claim_session(svc, req, s)) != 0) {
        hk_rsess_unref(s);
        return st;
    }
    s->conn = conn;
    hk_tconn_ref(conn);
    hk_tconn_set_user(conn, s);
    pthread_mutex_lock(&svc->mu);
    s->next = svc->sessions;
    svc->sessions = s;
    svc->nsessions++;
    pthread_mutex_unlock(&svc->mu);
    pthread_mutex_lock(&s->mu);
    s->scheduled = 1;
    s->refs++;
    pthread_mutex_unlock(&s->mu);
    if (hk_workers_submit(svc->workers, hk_rsess_prepare_job, s) != HK_OK)
        return 503;
    return 0;
}

/* Past the queue cap: the session ends with an error the client can show
 * (its end is recorded when the connection goes: hk_rsess_unref). */
static void hk_queue_overflow(hk_rsess *s, hk_tconn *conn)
{
    char kid[2 * HK_ID_LEN + 1], *txt;
    json_t *o;

    hk_hex(s->kid, HK_ID_LEN, kid);
    hk_log("warn",
           "event=session_queue_full op=%s sub=%s key=%s limit=%d bytes=%u",
           s->op != 0 ? hk_db_op_name(s->op) : "channel", s->sub, kid,
           HK_RSESS_QUEUE_MAX, HK_RSESS_QUEUE_BYTES);
    o = json_pack("{s:i,s:s,s:i,s:s}", "v", 1, "t", "error", "code",
                  (int)HK_ERR_TOO_BIG, "message",
                  "too many messages queued: send one message and wait for "
                  "the answer");
    txt = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (txt != NULL && hk_tconn_send(conn, txt, strlen(txt)) != HK_OK)
        hk_log("warn", "event=session_queue_full_unsent");
    free(txt);
    hk_tconn_close(conn);
}

static void hk_on_ws_message(void *ctx, hk_tconn *conn,
                             const unsigned char *msg, size_t len)
{
    hk_rsess *s = hk_tconn_user(conn);
    hk_rmsg *m = NULL;
    int submit = 0, over = 0, was_over;

    (void)ctx;
    if (s == NULL) {
        hk_tconn_close(conn);
        return;
    }
    pthread_mutex_lock(&s->mu);
    was_over = s->overflow;
    if (!was_over && (s->qlen >= HK_RSESS_QUEUE_MAX ||
                      s->qbytes + len > HK_RSESS_QUEUE_BYTES))
        s->overflow = over = 1;
    pthread_mutex_unlock(&s->mu);
    if (over)
        hk_queue_overflow(s, conn);
    if (over || was_over)
        return; /* dropped: the connection is closing */
    if ((m = malloc(sizeof(*m) + len)) == NULL) {
        hk_tconn_close(conn);
        return;
    }
    m->next = NULL;
    m->len = len;
    memcpy(m->buf, msg, len);
    pthread_mutex_lock(&s->mu);
    s->last = hk_now();
    if (s->tail != NULL)
        s->tail->next = m;
    else
        s->head = m;
    s->tail = m;
    s->qlen++;
    s->qbytes += len;
    if (!s->scheduled) {
        s->scheduled = 1;
        s->refs++;
        submit = 1;
    }
    pthread_mutex_unlock(&s->mu);
    if (submit &&
        hk_workers_submit(s->svc->workers, hk_rsess_job, s) != HK_OK) {
        hk_rsess_unref(s);
        hk_tconn_close(conn);
    }
}

static void hk_unlink_session(hk_service *svc, hk_rsess *s)
{
    hk_rsess **pp;

    pthread_mutex_lock(&svc->mu);
    for (pp = &svc->sessions; *pp != NULL; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            svc->nsessions--;
            break;
        }
    pthread_mutex_unlock(&svc->mu);
}

static void hk_on_ws_close(void *ctx, hk_tconn *conn)
{
    hk_rsess *s = hk_tconn_user(conn);

    if (s == NULL)
        return;
    hk_unlink_session(ctx, s);
    pthread_mutex_lock(&s->mu);
    s->dead = 1;
    pthread_mutex_unlock(&s->mu);
    hk_tconn_set_user(conn, NULL);
    hk_rsess_unref(s);
}

/* While draining: kept-open connections between sessions close; the
 * service stops when no session runs or the grace period is over. */
/* Keys whose keygen the client never confirmed (it died after keygen.3)
 * are removed after pending_key_ttl; each removal is audited. */
static void hk_sweep_pending_keys(hk_service *svc, int64_t now)
{
    hk_db_key *gone = NULL;
    hk_audit_ev ev;
    size_t n = 0, i;
    hk_err e;

    pthread_mutex_lock(&svc->dbmu);
    e = hk_db_key_sweep_pending(svc->db, now - svc->cfg.pending_key_ttl, &gone,
                                &n);
    for (i = 0; i < n; i++) {
        memset(&ev, 0, sizeof(ev));
        ev.event = "keygen";
        ev.outcome = "expired";
        ev.sub = gone[i].owner;
        ev.kid = gone[i].kid;
        ev.detail = "never confirmed by the client: pending key removed";
        if (hk_audit_write(svc->db, svc->cfg.node, &ev, now) != HK_OK)
            hk_log("error", "event=audit_write_failed");
    }
    pthread_mutex_unlock(&svc->dbmu);
    if (e != HK_OK)
        hk_log("warn", "event=pending_sweep_failed error=\"%s\"",
               hk_strerror(e));
    else if (n > 0)
        hk_log("info", "event=pending_keys_expired count=%zu", n);
    OPENSSL_free(gone);
}

static void hk_drain_tick(hk_service *svc, int64_t now)
{
    int n;

    if (svc->drain_start == 0) {
        svc->drain_start = now;
        hk_log("info", "event=draining sessions=%d grace=%d",
               hk_active_sessions(svc), svc->cfg.shutdown_grace);
    }
    n = hk_active_sessions(svc);
    if (n == 0 || now - svc->drain_start >= svc->cfg.shutdown_grace) {
        if (n > 0)
            hk_log("warn", "event=drain_timeout sessions=%d", n);
        hk_tsrv_stop(svc->tsrv);
    }
}

/* Once a second: idle sessions close; expired rows are swept. */
static void hk_on_tick(void *ctx)
{
    hk_service *svc = ctx;
    int64_t now = hk_now();
    size_t swept = 0;
    hk_rsess *s;

    pthread_mutex_lock(&svc->mu);
    for (s = svc->sessions; s != NULL; s = s->next) {
        pthread_mutex_lock(&s->mu);
        /* while draining, a session silent for HK_DRAIN_IDLE seconds is
         * not running a protocol (its steps take milliseconds) */
        if ((now - s->last >= svc->cfg.session_idle ||
             (svc->draining && ((s->channel && s->op == 0) ||
                                now - s->last >= HK_DRAIN_IDLE))) &&
            !s->scheduled) {
            hk_log("info", "event=session_idle_close");
            hk_tconn_close(s->conn);
        }
        pthread_mutex_unlock(&s->mu);
    }
    pthread_mutex_unlock(&svc->mu);
    hk_cb_tick(svc, now);
    hk_req_poll(svc, now);
    if (svc->draining)
        hk_drain_tick(svc, now);
    if (now - svc->last_sweep < 10)
        return;
    svc->last_sweep = now;
    hk_signprep_expire(svc, now);
    hk_sweep_pending_keys(svc, now);
    hk_req_sweep(svc, now);
    pthread_mutex_lock(&svc->dbmu);
    if (hk_db_session_sweep(svc->db, now, svc->cfg.session_idle, &swept) ==
            HK_OK &&
        swept > 0)
        hk_log("info", "event=sessions_expired count=%zu", swept);
    /* presignatures past their age, or of a share a refresh replaced */
    if (hk_db_presig_sweep(svc->db, now - svc->cfg.presign_ttl, &swept) ==
            HK_OK &&
        swept > 0)
        hk_log("info", "event=presigs_swept count=%zu", swept);
    pthread_mutex_unlock(&svc->dbmu);
}

/* --- lifecycle ------------------------------------------------------------ */

hk_err hk_srv_open_db(const hk_srv_config *cfg, hk_db **out, char *why)
{
    if (cfg->db_url[0] != 0)
        return hk_db_open_pg(cfg->db_url, out, why, 256);
    return hk_db_open_sqlite(cfg->db, out, why, 256);
}

/* Which KEK seals, and how many older ones are kept to open blobs. */
static void hk_service_log_seal(const hk_kek *kek)
{
    unsigned char id[HK_KEK_ID_LEN];
    char hex[17];

    hk_kek_id(kek, id);
    hk_kek_id_hex(id, hex);
    hk_log("info", "event=seal backend=%s kek_id=%s previous=%zu",
           hk_kek_name(kek), hex, hk_kek_count(kek) - 1);
}

/* Sessions this node left running when it was killed are failed now: no
 * process runs them any more, and a refresh of their key would otherwise
 * be refused as busy until they expire. */
static hk_err hk_service_orphans(hk_service *svc, char *why)
{
    size_t n = 0;
    hk_err e;

    if ((e = hk_db_set_node(svc->db, svc->cfg.node)) == HK_OK &&
        (e = hk_db_session_fail_node(svc->db, svc->cfg.node, &n)) != HK_OK)
        snprintf(why, 256,
                 "%s database: cannot fail the sessions left "
                 "running: %.120s",
                 hk_db_backend(svc->db), hk_db_errmsg(svc->db));
    if (e == HK_OK && n > 0)
        hk_log("warn", "event=sessions_orphaned count=%zu node=%s", n,
               svc->cfg.node);
    return e;
}

static hk_err hk_service_keys(hk_service *svc, char *why)
{
    unsigned char *jk = NULL, *sealed = NULL;
    size_t jklen = 0, slen = 0;
    hk_err e;

    if ((e = hk_keyring_load(&svc->cfg, &svc->kek, why)) != HK_OK)
        return e;
    hk_service_log_seal(svc->kek);
    if ((e = hk_srv_open_db(&svc->cfg, &svc->db, why)) != HK_OK)
        return e;
    if ((e = hk_service_orphans(svc, why)) != HK_OK)
        return e;
    if ((e = hk_load_setup(svc->db, svc->kek, &svc->setup)) != HK_OK ||
        (e = hk_db_setup_get(svc->db, &sealed, &slen, &svc->setup_pub,
                             &svc->setup_pub_len)) != HK_OK) {
        snprintf(why, 256, "%s database: setup unreadable: %.60s%s",
                 hk_db_backend(svc->db), hk_strerror(e),
                 e == HK_ERR_NOT_FOUND ? " (run halfkeyd initdb)" : "");
        goto done;
    }
    if ((e = hk_load_file(svc->cfg.jwt_key, &jk, &jklen)) != HK_OK) {
        snprintf(why, 256, "%.200s: cannot read the JWT key", svc->cfg.jwt_key);
        goto done;
    }
    e = hk_jwt_verifier_new(svc->cfg.jwt_alg, jk, jklen, svc->cfg.jwt_iss,
                            svc->cfg.jwt_aud, svc->cfg.jwt_skew, &svc->jwt);
    if (e != HK_OK)
        snprintf(why, 256, "JWT settings rejected: %s", hk_strerror(e));
done:
    OPENSSL_free(sealed);
    if (jk != NULL)
        OPENSSL_cleanse(jk, jklen);
    free(jk);
    return e;
}

/* The connection cap: max_connections, or by default the open-file limit
 * less a reserve for everything else the process opens (database files or
 * connections per worker, the KEK or HSM, logs, lws's own pipe): past the
 * fd limit accept() fails and lws stops serving everyone, so a connection
 * over the cap must be refused while fds are left. */
static hk_err hk_conn_cap(const hk_srv_config *cfg, int *cap, char *why)
{
    struct rlimit rl;
    long nofile = 1024, reserve, room;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        nofile = rl.rlim_cur > 1000000 ? 1000000 : (long)rl.rlim_cur;
    reserve = HK_FD_RESERVE + 4L * cfg->workers;
    room = nofile - reserve;
    if (room < 16) {
        snprintf(why, 256,
                 "the open-file limit (RLIMIT_NOFILE %ld) leaves no room for "
                 "connections: %ld fds are reserved; raise LimitNOFILE",
                 nofile, reserve);
        return HK_ERR_CONFIG;
    }
    if (cfg->max_connections > room) {
        snprintf(why, 256,
                 "max_connections = %d is above the open-file limit "
                 "(RLIMIT_NOFILE %ld) less %ld reserved: raise LimitNOFILE or "
                 "lower max_connections",
                 cfg->max_connections, nofile, reserve);
        return HK_ERR_CONFIG;
    }
    *cap = cfg->max_connections > 0 ? cfg->max_connections : (int)room;
    return HK_OK;
}

hk_err hk_service_new(const hk_srv_config *cfg, hk_service **out, char *why)
{
    hk_tsrv_handlers h = {NULL,           hk_on_http,
                          hk_on_ws_open,  hk_on_ws_message,
                          hk_on_ws_close, hk_on_tick};
    hk_tsrv_config tc;
    hk_service *svc;
    hk_err e;

    if (cfg == NULL || out == NULL || why == NULL)
        return HK_ERR_ARG;
    why[0] = 0;
    if ((svc = calloc(1, sizeof(*svc))) == NULL)
        return HK_ERR_NOMEM;
    svc->cfg = *cfg;
    pthread_mutex_init(&svc->dbmu, NULL);
    pthread_mutex_init(&svc->mu, NULL);
    pthread_mutex_init(&svc->rulesmu, NULL);
    pthread_cond_init(&svc->spcv, NULL);
    if ((e = hk_metrics_new(&svc->metrics)) != HK_OK ||
        (e = hk_rn_pool_new(&svc->rnpool)) != HK_OK ||
        (e = hk_service_keys(svc, why)) != HK_OK)
        goto fail;
    if (cfg->attestation_roots[0] != 0 &&
        (e = hk_att_roots_load(cfg->attestation_roots, &svc->att_roots, why)) !=
            HK_OK)
        goto fail;
    if ((e = hk_conn_cap(cfg, &svc->max_conns, why)) != HK_OK ||
        (e = hk_workers_new(cfg->workers, &svc->workers)) != HK_OK ||
        (e = hk_cb_new(cfg, &svc->cb, why)) != HK_OK ||
        (cfg->policy_file[0] != 0 &&
         (e = hk_rules_load(cfg->policy_file, &svc->rules, why)) != HK_OK))
        goto fail;
    h.ctx = svc;
    memset(&tc, 0, sizeof(tc));
    tc.iface = cfg->listen;
    tc.port = cfg->port;
    tc.cert_file = cfg->tls_cert;
    tc.key_file = cfg->tls_key;
    tc.max_conns = svc->max_conns;
    tc.max_per_peer = cfg->max_conns_per_peer;
    if ((e = hk_tsrv_new(&tc, &h, &svc->tsrv, why)) != HK_OK) {
        if (why[0] == 0)
            snprintf(why, 256, "cannot listen on %.64s:%d with %.120s",
                     cfg->listen, cfg->port, cfg->tls_cert);
        goto fail;
    }
    *out = svc;
    return HK_OK;
fail:
    hk_service_free(svc);
    return e;
}

hk_err hk_service_run(hk_service *svc)
{
    FILE *f;

    if (svc == NULL)
        return HK_ERR_ARG;
    /* the address as read back from the socket, not as configured */
    hk_log("info",
           "event=listening address=%s port=%d version=%s max_connections=%d "
           "max_connections_per_peer=%d",
           hk_tsrv_address(svc->tsrv), hk_tsrv_port(svc->tsrv), HK_VERSION,
           svc->max_conns, svc->cfg.max_conns_per_peer);
    if (svc->cfg.port_file[0] != 0 &&
        (f = fopen(svc->cfg.port_file, "w")) != NULL) {
        fprintf(f, "%d\n", hk_tsrv_port(svc->tsrv));
        fclose(f);
    }
    return hk_tsrv_run(svc->tsrv);
}

hk_err hk_service_reload_seal(hk_service *svc, const hk_srv_config *fresh,
                              char *why)
{
    hk_rped_secret *check = NULL;
    hk_kek *ring = NULL, *old;
    hk_err e;

    if (svc == NULL || fresh == NULL || why == NULL)
        return HK_ERR_ARG;
    why[0] = 0;
    if ((e = hk_keyring_load(fresh, &ring, why)) != HK_OK)
        return e;
    /* the new ring must open what is stored (the setup, at least) */
    pthread_mutex_lock(&svc->dbmu);
    e = hk_load_setup(svc->db, ring, &check);
    if (e == HK_OK) {
        old = svc->kek;
        svc->kek = ring;
        svc->cfg.seal = fresh->seal;
        memcpy(svc->cfg.kek_file, fresh->kek_file, sizeof(fresh->kek_file));
        ring = old;
    }
    pthread_mutex_unlock(&svc->dbmu);
    hk_rped_secret_free(check);
    if (e != HK_OK)
        snprintf(why, 256, "the new keys cannot open the stored setup: %s",
                 hk_strerror(e));
    else
        hk_service_log_seal(svc->kek);
    hk_kek_free(ring); /* the old ring, or the refused new one */
    return e;
}

hk_err hk_service_reload_rules(hk_service *svc, const hk_srv_config *fresh,
                               char *why)
{
    hk_rules *r = NULL, *old;
    hk_err e;

    if (svc == NULL || fresh == NULL || why == NULL)
        return HK_ERR_ARG;
    why[0] = 0;
    if (fresh->policy_file[0] != 0 &&
        (e = hk_rules_load(fresh->policy_file, &r, why)) != HK_OK)
        return e;
    pthread_mutex_lock(&svc->rulesmu);
    old = svc->rules;
    svc->rules = r;
    pthread_mutex_unlock(&svc->rulesmu);
    hk_rules_free(old);
    return HK_OK;
}

void hk_service_stop(hk_service *svc, int now)
{
    if (svc == NULL || svc->tsrv == NULL)
        return;
    svc->draining = 1; /* the service thread's tick finishes the stop */
    if (now || svc->cfg.shutdown_grace == 0)
        hk_tsrv_stop(svc->tsrv);
}

void hk_service_free(hk_service *svc)
{
    if (svc == NULL)
        return;
    /* Workers first: running sessions finish before the transport goes. */
    hk_workers_free(svc->workers);
    hk_cb_free(svc->cb); /* a delivery in progress finishes */
    hk_req_waiters_free(svc);
    hk_rules_free(svc->rules);
    hk_tsrv_free(svc->tsrv);
    while (svc->signpreps != NULL) {
        hk_signprep *n = svc->signpreps->next;

        hk_signprep_free(svc->signpreps);
        svc->signpreps = n;
    }
    hk_jwt_verifier_free(svc->jwt);
    hk_rped_secret_free(svc->setup);
    OPENSSL_free(svc->setup_pub);
    hk_db_close(svc->db);
    hk_kek_free(svc->kek);
    hk_metrics_free(svc->metrics);
    hk_rn_pool_free(svc->rnpool);
    X509_STORE_free(svc->att_roots);
    pthread_cond_destroy(&svc->spcv);
    pthread_mutex_destroy(&svc->dbmu);
    pthread_mutex_destroy(&svc->mu);
    pthread_mutex_destroy(&svc->rulesmu);
    free(svc);
}
