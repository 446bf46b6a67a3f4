/* Device attestation at keygen, the HTTP side (service_impl.h): the
 * challenge added to POST /keygen, POST /attest, and the check a keygen
 * session passes before it runs and before its key is stored. The
 * cryptography is server/attest/attest.c's; the state is the session's
 * row in `attestations` (db.h), so any node can take any step. */
#include <string.h>

#include <openssl/crypto.h>

#include "common/attest_qual.h"
#include "common/hex.h"
#include "server/log.h"
#include "server/http/service_impl.h"

_Static_assert(HK_ATT_SUMMARY_MAX == HK_DB_ATTEST_MAX,
               "an attestation summary fits its column");
_Static_assert(HK_TPM_PUBLIC_MAX == HK_DB_AK_MAX, "an AK fits its column");
_Static_assert(HK_ATTEST_ID_LEN == HK_ID_LEN, "ids are HK_ID_LEN bytes");

/* An "attest" audit record; sid and kid may be NULL. */
static void hk_attest_audit(hk_service *svc, const char *sub,
                            const unsigned char *sid, const unsigned char *kid,
                            const char *outcome, const char *detail)
{
    hk_audit_ev ev;

    memset(&ev, 0, sizeof(ev));
    ev.event = "attest";
    ev.outcome = outcome;
    ev.sub = sub;
    ev.sid = sid;
    ev.kid = kid;
    ev.detail = detail;
    pthread_mutex_lock(&svc->dbmu);
    if (hk_audit_write(svc->db, svc->cfg.node, &ev, hk_now()) != HK_OK)
        hk_log("error", "event=audit_failed what=attest sub=%s", sub);
    pthread_mutex_unlock(&svc->dbmu);
    hk_log(strcmp(outcome, "ok") == 0 ? "info" : "warn",
           "event=attest outcome=%s sub=%s detail=\"%s\"", outcome, sub,
           detail);
}

int hk_attest_start(hk_service *svc, json_t *att, const char *sub,
                    hk_att_challenge *ch, hk_http_resp *r)
{
    char why[HK_ATT_WHY_MAX] = "";
    hk_attest_id_req id;
    hk_err e;

    if (svc->att_roots == NULL) {
        hk_respond_err(r, 403, "attestation_unavailable",
                       "this server checks no device attestations (no "
                       "attestation_roots)");
        return 0;
    }
    if (hk_attest_id_decode(att, &id) != HK_OK) {
        hk_attest_id_clear(&id);
        hk_respond_err(r, 400, "bad_request",
                       "attest must be {\"ek_cert\", \"ek_pub\", \"ak_pub\"} "
                       "in base64");
        return 0;
    }
    e = hk_att_challenge_make(svc->att_roots, id.ek_cert, id.ek_cert_len,
                              id.ek_pub, id.ek_pub_len, id.ak_pub,
                              id.ak_pub_len, ch, why);
    hk_attest_id_clear(&id);
    if (e == HK_OK)
        return 1;
    if (e != HK_ERR_ATTEST) {
        hk_respond_err(r, 500, "internal", hk_strerror(e));
        return 0;
    }
    hk_metrics_refusal(svc->metrics, "attestation_refused");
    hk_attest_audit(svc, sub, NULL, NULL, "refused", why);
    hk_respond_err(r, 403, "attestation_refused", why);
    return 0;
}

/* The session's challenge, for an answer: its row and the key id the
 * quote must name. HK_ERR_SESSION for no keygen session of sub waiting
 * for its WebSocket, HK_ERR_NOT_FOUND for one without a challenge. */
static hk_err hk_attest_pending(hk_service *svc, const unsigned char *sid,
                                const char *sub, hk_db_attestation *a,
                                hk_db_session *s)
{
    hk_err e;

    pthread_mutex_lock(&svc->dbmu);
    e = hk_db_session_get_owned(svc->db, sid, sub, HK_DB_OP_KEYGEN, hk_now(),
                                svc->cfg.session_idle, s);
    if (e == HK_OK && (s->state != HK_DB_SESS_OPEN || !s->has_kid))
        e = HK_ERR_SESSION;
    if (e == HK_OK)
        e = hk_db_attest_get(svc->db, sid, a);
    pthread_mutex_unlock(&svc->dbmu);
    return e;
}

void hk_ep_attest(hk_service *svc, const hk_http_req *req, const char *sub,
                  hk_http_resp *r)
{
    char why[HK_ATT_WHY_MAX] = "", fp[65];
    const char *issuer;
    unsigned char qual[32];
    hk_db_attestation a;
    hk_db_session s;
    hk_attest_req rq;
    hk_err e, f;

    if (hk_attest_req_decode(req->body, req->body_len, &rq) != HK_OK) {
        hk_attest_req_clear(&rq);
        return hk_respond_err(r, 400, "bad_request",
                              "body must be {\"session_id\", \"credential\", "
                              "\"quote\", \"signature\"}");
    }
    if ((e = hk_attest_pending(svc, rq.sid, sub, &a, &s)) != HK_OK) {
        hk_attest_req_clear(&rq);
        return hk_respond_err(r, 404, "not_found",
                              e == HK_ERR_NOT_FOUND
                                  ? "no attestation challenge for this session"
                                  : "no such keygen session waiting");
    }
    if (a.state != HK_DB_ATT_CHALLENGED) {
        hk_attest_req_clear(&rq);
        return hk_respond_err(r, 409, "attestation_answered",
                              "this session's challenge was answered");
    }
    if ((e = hk_attest_qualifying(rq.sid, s.kid, qual)) == HK_OK)
        e = hk_att_answer_check(a.cred_hash, a.ak_pub, a.ak_publen, rq.cred,
                                rq.cred_len, rq.quote, rq.quote_len, rq.sig,
                                rq.sig_len, qual, why);
    hk_attest_req_clear(&rq);
    if (e != HK_OK && e != HK_ERR_ATTEST)
        return hk_respond_err(r, 500, "internal", hk_strerror(e));
    /* one answer per challenge: a refused one is final too */
    pthread_mutex_lock(&svc->dbmu);
    f = hk_db_attest_finish(svc->db, s.sid, e == HK_OK);
    pthread_mutex_unlock(&svc->dbmu);
    if (f != HK_OK)
        return hk_respond_err(r, 409, "attestation_answered",
                              "this session's challenge was answered");
    hk_attest_audit(svc, sub, s.sid, s.kid, e == HK_OK ? "ok" : "refused",
                    e == HK_OK ? a.summary : why);
    if (e != HK_OK) {
        hk_metrics_refusal(svc->metrics, "attestation_refused");
        return hk_respond_err(r, 403, "attestation_refused", why);
    }
    hk_att_summary_split(a.summary, fp, &issuer);
    hk_respond(r, 200,
               json_pack("{s:b,s:s,s:s}", "attested", 1, "ek_issuer", issuer,
                         "ek_cert_sha256", fp));
}

hk_err hk_attest_outcome(hk_service *svc, const unsigned char *sid,
                         const char *sub, char summary[HK_DB_ATTEST_MAX + 1],
                         const char **why)
{
    hk_db_attestation a;
    hk_err e;

    summary[0] = 0;
    pthread_mutex_lock(&svc->dbmu);
    e = hk_db_attest_get(svc->db, sid, &a);
    pthread_mutex_unlock(&svc->dbmu);
    if (e == HK_ERR_NOT_FOUND) {
        *why = "this subject's keys need a device attestation";
        return hk_attest_needed(svc, sub) ? HK_ERR_ATTEST : HK_OK;
    }
    if (e != HK_OK)
        return e;
    if (a.state != HK_DB_ATT_VERIFIED) {
        *why = a.state == HK_DB_ATT_REFUSED
                   ? "the session's device attestation was refused"
                   : "the session's device attestation was not answered "
                     "(POST /attest)";
        return HK_ERR_ATTEST;
    }
    memcpy(summary, a.summary, sizeof(a.summary));
    return HK_OK;
}

int hk_attest_needed(hk_service *svc, const char *sub)
{
    int yes;

    if (hk_srv_config_attest_required(&svc->cfg, sub))
        return 1;
    pthread_mutex_lock(&svc->rulesmu);
    yes = hk_rules_attest_required(svc->rules, sub);
    pthread_mutex_unlock(&svc->rulesmu);
    return yes;
}
