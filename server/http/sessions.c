/* Protocol sessions of halfkeyd, run on the worker pool: one job at a time
 * per session, messages in arrival order. Shares are stored before the
 * message that lets the client rely on them is sent (keygen.4 after the
 * new key is stored, refresh.4 after the pending share is stored).
 *
 * Nothing a message merely names changes what is stored (DESIGN.md section
 * 2, "promotion needs proof"): a pending share or a key whose keygen was
 * not confirmed is used when the client names it, and made active only
 * on a proof that the client holds it: keygen.5 and refresh.5 (a Schnorr
 * proof of x1 bound to the session), the proof in refresh.1, or a
 * signature made with it that verifies under Q (sign.5: only the holder of
 * the share's Paillier key can turn c3 into a valid signature). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "mpc/codec.h"
#include "server/log.h"
#include "server/http/requests.h"
#include "server/http/service_impl.h"

static void hk_db_state(hk_rsess *s, hk_db_sess_state st);
static void hk_sign_rn(hk_rsess *s, int wait);

/* A claimed session whose connection went before it ended: failed, so the
 * key is free for the next one at once (a refresh excludes others while
 * it runs) and the audit log says how it ended. */
static void hk_abandoned(hk_rsess *s)
{
    hk_db_state(s, HK_DB_SESS_FAILED);
    hk_rsess_record_end(s, HK_OUT_FAILED, "connection closed mid-session");
}

void hk_rsess_unref(hk_rsess *s)
{
    int last;
    hk_rmsg *m;

    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    last = --s->refs == 0;
    pthread_mutex_unlock(&s->mu);
    if (!last)
        return;
    if (!s->ended && s->op != 0)
        hk_abandoned(s);
    while ((m = s->head) != NULL) {
        s->head = m->next;
        free(m);
    }
    hk_keygen_free(s->kg);
    hk_sign_free(s->sg);
    hk_refresh_free(s->rf);
    hk_psgen_free(s->pg);
    hk_presig_drop(s);
    hk_share_free(s->share);
    hk_tconn_unref(s->conn);
    pthread_mutex_destroy(&s->mu);
    OPENSSL_clear_free(s, sizeof(*s));
}

/* The session row's state; call with svc->dbmu held. */
static void hk_db_state_locked(hk_rsess *s, hk_db_sess_state st)
{
    hk_service *svc = s->svc;
    hk_err e;

    if (s->op == HK_DB_OP_PRESIGN) /* no session row (db.h) */
        return;
    e = hk_db_session_set_state(svc->db, s->sid, st, hk_now(),
                                svc->cfg.session_idle);
    if (e != HK_OK)
        hk_log("warn", "event=session_state_failed error=\"%s\"",
               hk_strerror(e));
}

static void hk_db_state(hk_rsess *s, hk_db_sess_state st)
{
    pthread_mutex_lock(&s->svc->dbmu);
    hk_db_state_locked(s, st);
    pthread_mutex_unlock(&s->svc->dbmu);
}

/* The audit record of the session's end; call with svc->dbmu held. */
static void hk_rsess_audit_locked(hk_rsess *s, hk_outcome out,
                                  const char *detail)
{
    hk_service *svc = s->svc;
    unsigned char sig[HK_SIG_LEN];
    const unsigned char *dig = NULL;
    size_t dlen = 0;
    hk_audit_ev ev;
    hk_err e;

    memset(&ev, 0, sizeof(ev));
    ev.event = hk_db_op_name(s->op);
    ev.outcome = out == HK_OUT_OK ? "ok" : "failed";
    ev.sub = s->sub;
    ev.kid = s->kid;
    ev.sid = s->sid;
    ev.detail = detail;
    if (s->op == HK_DB_OP_SIGN && s->sg != NULL &&
        hk_sign_digest(s->sg, &dig, &dlen) == HK_OK) {
        ev.digest = dig;
        ev.digest_len = dlen;
        if (hk_sign_signature(s->sg, sig) == HK_OK) {
            ev.sig = sig;
            ev.sig_len = sizeof(sig);
        }
    }
    e = hk_audit_write(svc->db, svc->cfg.node, &ev, hk_now());
    if (e != HK_OK)
        hk_log("error", "event=audit_write_failed error=\"%s\"",
               hk_strerror(e));
}

void hk_rsess_record_end(hk_rsess *s, hk_outcome out, const char *detail)
{
    hk_metrics_op(s->svc->metrics, s->op, out, hk_mono() - s->started);
    pthread_mutex_lock(&s->svc->dbmu);
    hk_rsess_audit_locked(s, out, detail);
    pthread_mutex_unlock(&s->svc->dbmu);
}

/* A good end: the session's state and its audit record in one commit that
 * does not wait for the disk (db.h "groups": the grant was audited
 * durably at the open; the client has its result already). */
static void hk_rsess_end_ok(hk_rsess *s)
{
    hk_service *svc = s->svc;
    int grouped;

    hk_metrics_op(svc->metrics, s->op, HK_OUT_OK, hk_mono() - s->started);
    pthread_mutex_lock(&svc->dbmu);
    grouped = hk_db_group_begin(svc->db, 0) == HK_OK;
    hk_db_state_locked(s, HK_DB_SESS_DONE);
    hk_rsess_audit_locked(s, HK_OUT_OK, NULL);
    if (grouped && hk_db_group_end(svc->db) != HK_OK)
        hk_log("error", "event=audit_write_failed error=\"%s\"",
               hk_db_errmsg(svc->db));
    pthread_mutex_unlock(&svc->dbmu);
}

void hk_rsess_send(hk_rsess *s, const unsigned char *msg, size_t len)
{
    if (msg != NULL && len > 0 && hk_tconn_send(s->conn, msg, len) != HK_OK)
        s->finished = 1;
}

/* The text the client shows for e. HK_ERR_BUSY's generic text names the
 * client's own signing lock; on the server it means another refresh of
 * the key, or a server shutting down (where says which). */
static const char *hk_fail_text(const hk_rsess *s, hk_err e, const char *where,
                                char *buf, size_t cap)
{
    /* refusals whose step says why (a missing backup, a digest hook or a
     * request's rules) */
    if (e == HK_ERR_BACKUP || e == HK_ERR_FORBIDDEN || e == HK_ERR_STATE ||
        e == HK_ERR_EXISTS || e == HK_ERR_ATTEST || e == HK_ERR_RATE ||
        e == HK_ERR_NOT_FOUND) {
        snprintf(buf, cap, "%s: %s", hk_strerror(e), where);
        return buf;
    }
    if (e != HK_ERR_BUSY)
        return hk_strerror(e);
    if (s->op == HK_DB_OP_REFRESH)
        return "key busy: another refresh of this key is running";
    snprintf(buf, cap, "busy: %s", where);
    return buf;
}

/* Ends the session with an error message the client can show. */
/* {"t":"error","code":e,"message":message} to the client. */
static void hk_rsess_send_error(hk_rsess *s, hk_err e, const char *message)
{
    json_t *o = json_pack("{s:i,s:s,s:i,s:s}", "v", 1, "t", "error", "code",
                          (int)e, "message", message);

    /* as POST answers carry it (endpoints.c) */
    if (o != NULL && s->retry_after > 0)
        json_object_set_new(o, "retry_after", json_integer(s->retry_after));
    char *txt = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;

    json_decref(o);
    if (txt != NULL)
        hk_rsess_send(s, (unsigned char *)txt, strlen(txt));
    free(txt);
}

/* The failure logged, audited, sent to the client and stored. */
static void hk_rsess_report(hk_rsess *s, hk_err e, const char *where)
{
    char kid[2 * HK_ID_LEN + 1], text[256];

    hk_hex(s->kid, HK_ID_LEN, kid);
    hk_log("warn",
           "event=session_failed op=%s sub=%s key=%s step=%s "
           "error=\"%s\"",
           s->op != 0 ? hk_db_op_name(s->op) : "channel", s->sub, kid, where,
           hk_strerror(e));
    if (s->op != 0) {
        char detail[HK_AUDIT_DETAIL_MAX + 1];

        snprintf(detail, sizeof(detail), "%s: %s", where, hk_strerror(e));
        hk_rsess_record_end(s, HK_OUT_FAILED, detail);
    }
    hk_rsess_send_error(s, e, hk_fail_text(s, e, where, text, sizeof(text)));
    hk_db_state(s, HK_DB_SESS_FAILED);
}

void hk_rsess_fail(hk_rsess *s, hk_err e, const char *where)
{
    hk_rsess_report(s, e, where);
    s->finished = s->ended = 1;
    hk_tconn_close(s->conn);
}

/* The session is over. A kept-open connection waits for the next one,
 * keeping the share and preparing the next signs' randomness now, off the
 * client's path (rnpool.c). */
void hk_rsess_done(hk_rsess *s)
{
    hk_rsess_end_ok(s);
    s->ended = 1;
    if (!s->channel || s->svc->draining) {
        s->finished = 1;
        hk_tconn_close(s->conn);
        return;
    }
    hk_keygen_free(s->kg);
    hk_sign_free(s->sg);
    hk_refresh_free(s->rf);
    hk_psgen_free(s->pg);
    s->kg = NULL;
    s->sg = NULL;
    s->rf = NULL;
    s->pg = NULL;
    hk_presig_drop(s);
    s->rn_given = 0;
    s->presig = 0;
    if (s->op == HK_DB_OP_REFRESH) { /* the share changed */
        pthread_mutex_lock(&s->mu);
        hk_share_free(s->share);
        s->share = NULL;
        pthread_mutex_unlock(&s->mu);
    }
    s->op = 0;
    if (s->share != NULL)
        hk_rn_fill(s->svc, s->share->pk);
}

/* Loads the share of (kid, epoch) for sub; *unproven: it is pending, or
 * its key is (keygen not confirmed). Takes svc->dbmu for the reads only:
 * unsealing and decoding (~0.5 ms) hold up no other session's storage. */
static hk_err hk_share_load(hk_service *svc, const char *sub,
                            const unsigned char *kid, unsigned long epoch,
                            hk_share **out, int *unproven)
{
    unsigned char *sealed = NULL;
    size_t slen = 0;
    hk_db_key key;
    int pending = 0;
    hk_err e;

    memset(&key, 0, sizeof(key));
    pthread_mutex_lock(&svc->dbmu);
    e = hk_fetch_share(svc->db, sub, kid, epoch, &key, &sealed, &slen,
                       &pending);
    pthread_mutex_unlock(&svc->dbmu);
    if (e == HK_OK)
        e = hk_open_fetched_share(svc->kek, sub, &key, epoch, sealed, slen,
                                  out);
    OPENSSL_free(sealed);
    *unproven = pending || key.pending;
    return e;
}

/* Loads the share of `epoch`, active or pending: naming a share is a
 * claim, so a pending one is used but not promoted here (hk_proven). */
hk_err hk_rsess_use_share(hk_rsess *s, unsigned long epoch)
{
    hk_service *svc = s->svc;
    hk_share *sh = NULL;
    int unproven = 0;
    hk_err e;

    if (s->share != NULL && s->share->epoch == epoch)
        return HK_OK;
    e = hk_share_load(svc, s->sub, s->kid, epoch, &sh, &unproven);
    if (e != HK_OK)
        return e == HK_ERR_NOT_FOUND ? HK_ERR_EPOCH : e;
    hk_sign_free(s->sg);
    s->sg = NULL;
    s->rn_given = 0;
    pthread_mutex_lock(&s->mu);
    hk_share_free(s->share);
    s->share = sh;
    s->unproven = unproven;
    pthread_mutex_unlock(&s->mu);
    return HK_OK;
}

/* The backup rule (db.h, "backups"): a key that has a backup gets a share
 * of `epoch` promoted only once that epoch's backup is stored, so the
 * server never drops the share that the stored backup restores (the old
 * active share stays until then). HK_ERR_BACKUP when it must wait. Call
 * with svc->dbmu held. */
static hk_err hk_backup_gate(hk_service *svc, const unsigned char *kid,
                             unsigned long epoch)
{
    unsigned long newest = 0;
    hk_db_backup b;
    hk_err e;

    if ((e = hk_db_backup_newest(svc->db, kid, &newest)) != HK_OK ||
        newest == 0)
        return e;
    e = hk_db_backup_get(svc->db, kid, epoch, &b);
    OPENSSL_free(b.blob);
    return e == HK_ERR_NOT_FOUND ? HK_ERR_BACKUP : e;
}

/* The client proved it holds the session's share: a pending share of
 * that epoch becomes active (the old one goes) and a pending key is
 * confirmed. Both steps are idempotent, so another node doing the same
 * meanwhile is harmless. A share whose backup is missing (hk_backup_gate)
 * stays pending: s->unproven is kept and HK_OK returned. */
static hk_err hk_proven(hk_rsess *s, const char *how)
{
    hk_service *svc = s->svc;
    char kh[2 * HK_ID_LEN + 1];
    hk_err e, c;

    if (!s->unproven)
        return HK_OK;
    pthread_mutex_lock(&svc->dbmu);
    e = hk_backup_gate(svc, s->kid, s->share->epoch);
    if (e == HK_OK)
        e = hk_db_share_promote(svc->db, s->kid, s->share->epoch);
    if ((e == HK_OK || e == HK_ERR_BACKUP) &&
        (c = hk_db_key_confirm(svc->db, s->kid)) != HK_OK)
        e = c;
    pthread_mutex_unlock(&svc->dbmu);
    hk_hex(s->kid, HK_ID_LEN, kh);
    if (e == HK_ERR_BACKUP) {
        hk_log("warn",
               "event=promotion_waits_for_backup key=%s epoch=%lu by=%s", kh,
               s->share->epoch, how);
        return HK_OK;
    }
    if (e != HK_OK) {
        hk_log("error", "event=promote_failed key=%s epoch=%lu error=\"%s\"",
               kh, s->share->epoch, hk_strerror(e));
        return e;
    }
    s->unproven = 0;
    hk_log("info", "event=share_proven key=%s epoch=%lu by=%s", kh,
           s->share->epoch, how);
    return HK_OK;
}

static hk_err hk_active_share(hk_rsess *s)
{
    unsigned char *sealed = NULL;
    unsigned long epoch = 0;
    size_t len = 0;
    hk_err e;

    pthread_mutex_lock(&s->svc->dbmu);
    e = hk_db_share_get_active(s->svc->db, s->kid, &epoch, &sealed, &len);
    pthread_mutex_unlock(&s->svc->dbmu);
    OPENSSL_free(sealed);
    return e == HK_OK ? hk_rsess_use_share(s, epoch) : e;
}

void hk_signprep_free(hk_signprep *ps)
{
    if (ps == NULL)
        return;
    hk_sign_free(ps->sg);
    hk_share_free(ps->share);
    OPENSSL_clear_free(ps, sizeof(*ps));
}

/* At POST /sign: the active share and the encryption randomness, ready
 * before the client's WebSocket arrives (it loads its own share and
 * connects meanwhile). The randomness comes from the pool (rnpool.c),
 * which this tops up for the key's next sign. */
void hk_signprep_run(void *arg)
{
    hk_signprep_job *j = arg;
    hk_service *svc = j->svc;
    hk_signprep *ps = j->ps;
    unsigned char *sealed = NULL;
    unsigned long epoch = 0;
    BIGNUM *rn = NULL;
    size_t len = 0;
    hk_err e;

    pthread_mutex_lock(&svc->mu);
    if (ps->state == HK_SP_ABANDONED) {
        pthread_mutex_unlock(&svc->mu);
        hk_signprep_free(ps);
        goto done;
    }
    ps->state = HK_SP_RUNNING;
    pthread_mutex_unlock(&svc->mu);
    pthread_mutex_lock(&svc->dbmu);
    e = hk_db_share_get_active(svc->db, j->kid, &epoch, &sealed, &len);
    pthread_mutex_unlock(&svc->dbmu);
    OPENSSL_free(sealed);
    if (e == HK_OK)
        e = hk_share_load(svc, j->sub, j->kid, epoch, &ps->share,
                          &ps->unproven);
    if (e == HK_OK &&
        (e = hk_sign_p2_new(ps->share, ps->sid, &ps->sg)) == HK_OK &&
        (e = hk_rn_take(svc, ps->share->pk, 1, &rn)) == HK_OK &&
        (e = hk_sign_p2_use_randomness(ps->sg, rn)) == HK_OK)
        rn = NULL;
    BN_clear_free(rn);
    pthread_mutex_lock(&svc->mu);
    ps->state = e == HK_OK ? HK_SP_READY : HK_SP_FAILED;
    pthread_cond_broadcast(&svc->spcv);
    pthread_mutex_unlock(&svc->mu);
done:
    OPENSSL_cleanse(j, sizeof(*j));
    free(j);
}

hk_signprep *hk_signprep_take(hk_service *svc, const unsigned char *sid)
{
    hk_signprep **pp, *ps = NULL;
    struct timespec until;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5; /* a bound only: the job takes milliseconds */
    pthread_mutex_lock(&svc->mu);
    for (;;) {
        for (pp = &svc->signpreps; *pp != NULL; pp = &(*pp)->next)
            if (memcmp((*pp)->sid, sid, HK_ID_LEN) == 0)
                break;
        if (*pp == NULL || (*pp)->state != HK_SP_RUNNING ||
            pthread_cond_timedwait(&svc->spcv, &svc->mu, &until) != 0)
            break;
    }
    if (*pp != NULL && (*pp)->state != HK_SP_RUNNING) {
        ps = *pp;
        *pp = ps->next;
        ps->next = NULL;
        if (ps->state == HK_SP_QUEUED) {
            ps->state = HK_SP_ABANDONED; /* its job frees it */
            ps = NULL;
        } else if (ps->state == HK_SP_FAILED) {
            hk_signprep_free(ps);
            ps = NULL;
        }
    }
    pthread_mutex_unlock(&svc->mu);
    return ps;
}

void hk_signprep_expire(hk_service *svc, int64_t now)
{
    hk_signprep **pp = &svc->signpreps, *old;

    pthread_mutex_lock(&svc->mu);
    while (*pp != NULL) {
        if (now - (*pp)->created >= svc->cfg.session_idle &&
            (*pp)->state != HK_SP_RUNNING) {
            old = *pp;
            *pp = old->next;
            if (old->state == HK_SP_QUEUED)
                old->state = HK_SP_ABANDONED; /* its job frees it */
            else
                hk_signprep_free(old);
        } else {
            pp = &(*pp)->next;
        }
    }
    pthread_mutex_unlock(&svc->mu);
}

/* Sign sessions start with the work done at their POST (or do it now: it
 * was not finished, or the POST reached another node). */
void hk_rsess_prepare_job(void *arg)
{
    hk_rsess *s = arg;
    hk_signprep *ps;

    if (s->op == HK_DB_OP_SIGN) {
        if ((ps = hk_signprep_take(s->svc, s->sid)) != NULL) {
            s->share = ps->share;
            s->unproven = ps->unproven;
            s->sg = ps->sg;
            ps->share = NULL;
            ps->sg = NULL;
            hk_signprep_free(ps);
            s->rn_given = 1;
        } else if (hk_active_share(s) == HK_OK &&
                   hk_sign_p2_new(s->share, s->sid, &s->sg) == HK_OK) {
            hk_sign_rn(s, 0); /* none ready: waited for at sign.3 */
        }
    }
    hk_rsess_job(s);
}

/* keygen.5 or refresh.5 verified: the key, or the refreshed share, is
 * made active; the client gets {"t":"done"} once that is durable. */
static void hk_confirmed(hk_rsess *s, const char *what)
{
    static const char done[] = "{\"v\":1,\"t\":\"done\"}";
    hk_service *svc = s->svc;
    char kh[2 * HK_ID_LEN + 1];
    unsigned long epoch = 1;
    hk_err e;

    pthread_mutex_lock(&svc->dbmu);
    if (s->op == HK_DB_OP_REFRESH) {
        epoch = s->share->epoch + 1;
        /* the client has stored the new share: if the key has a backup
         * and this epoch's is missing, the share stays pending (the old
         * one active) and the client is told to upload it */
        e = hk_backup_gate(svc, s->kid, epoch);
        if (e == HK_OK)
            e = hk_db_share_promote(svc->db, s->kid, epoch);
    } else {
        e = hk_db_key_confirm(svc->db, s->kid);
    }
    pthread_mutex_unlock(&svc->dbmu);
    if (e == HK_ERR_BACKUP)
        return hk_rsess_fail(
            s, e,
            "refresh.5: the key has a backup and the new share's "
            "is missing: upload it (POST /backup); the new share "
            "stays pending until then");
    if (e != HK_OK)
        return hk_rsess_fail(s, e,
                             s->op == HK_DB_OP_REFRESH ? "refresh promote"
                                                       : "keygen confirm");
    hk_hex(s->kid, HK_ID_LEN, kh);
    hk_log("info", "event=%s_done sub=%s epoch=%lu key=%s", what, s->sub, epoch,
           kh);
    hk_rsess_send(s, (const unsigned char *)done, sizeof(done) - 1);
    hk_rsess_done(s);
}

/* Stores the new key with the session's attestation, checked once more:
 * the key of a keygen whose attestation is not verified (or that the
 * policy requires and lacks) is never stored. */
static hk_err hk_keygen_store(hk_rsess *s, const hk_share *sh, const char **why)
{
    char att[HK_DB_ATTEST_MAX + 1];
    hk_err e;

    if ((e = hk_attest_outcome(s->svc, s->sid, s->sub, att, why)) != HK_OK)
        return e;
    pthread_mutex_lock(&s->svc->dbmu);
    e = hk_store_new_key_att(s->svc->db, s->svc->kek, s->sub, sh, NULL,
                             att[0] != 0 ? att : NULL, hk_now());
    pthread_mutex_unlock(&s->svc->dbmu);
    return e;
}

static void hk_keygen_step(hk_rsess *s, const hk_rmsg *m)
{
    hk_service *svc = s->svc;
    unsigned char *out = NULL;
    size_t outlen = 0;
    hk_curve_id curve;
    hk_share *sh = NULL;
    char att[HK_DB_ATTEST_MAX + 1];
    const char *why = NULL;
    hk_err e;

    /* an attestation offered must be verified before keygen.1 is worked
     * on (and one the policy requires must exist) */
    if (s->kg == NULL &&
        (e = hk_attest_outcome(svc, s->sid, s->sub, att, &why)) != HK_OK)
        return hk_rsess_fail(s, e, why != NULL ? why : "keygen.1 attestation");
    if (s->kg == NULL &&
        ((e = hk_keygen_peek_curve(m->buf, m->len, &curve)) != HK_OK ||
         (e = s->curve != 0 && curve != s->curve ? HK_ERR_BINDING : HK_OK) !=
             HK_OK ||
         (e = hk_keygen_p2_new(curve, s->sid, s->kid,
                               svc->cfg.min_paillier_bits, svc->setup,
                               &s->kg)) != HK_OK))
        return hk_rsess_fail(s, e, "keygen.1");
    if ((e = hk_keygen_recv(s->kg, m->buf, m->len, &out, &outlen)) != HK_OK)
        return hk_rsess_fail(s, e, "keygen");
    if (hk_keygen_confirmed(s->kg)) /* keygen.5: the client stored it */
        return hk_confirmed(s, "keygen");
    if (hk_keygen_done(s->kg)) {
        if ((e = hk_keygen_take_share(s->kg, &sh)) == HK_OK)
            e = hk_keygen_store(s, sh, &why);
        if (e == HK_OK) {
            char kh[2 * HK_ID_LEN + 1];

            hk_hex(s->kid, HK_ID_LEN, kh);
            hk_log("info", "event=keygen_pending sub=%s key=%s curve=%s",
                   s->sub, kh, hk_curve_name(sh->curve));
        }
        hk_share_free(sh);
        if (e != HK_OK) {
            OPENSSL_free(out);
            return hk_rsess_fail(s, e, why != NULL ? why : "keygen store");
        }
    }
    hk_rsess_send(s, out, outlen);
    OPENSSL_free(out);
}

static void hk_log_signature(hk_rsess *s)
{
    unsigned char sig[HK_SIG_LEN];
    const unsigned char *dig;
    char sh[2 * HK_SIG_LEN + 1], dh[2 * HK_DIGEST_MAX + 1],
        kh[2 * HK_ID_LEN + 1];
    size_t dlen;

    if (hk_sign_signature(s->sg, sig) != HK_OK ||
        hk_sign_digest(s->sg, &dig, &dlen) != HK_OK)
        return;
    hk_hex(sig, sizeof(sig), sh);
    hk_hex(dig, dlen, dh);
    hk_hex(s->kid, HK_ID_LEN, kh);
    hk_log("info", "event=sign_done sub=%s key=%s epoch=%lu digest=%s sig=%s",
           s->sub, kh, s->share->epoch, dh, sh);
}

/* The deployment's digest hook (policy.h), if any, on sign.1's digest. */
static hk_err hk_digest_check(hk_rsess *s, char reason[128])
{
    hk_service *svc = s->svc;
    const unsigned char *dig;
    size_t dlen;
    hk_err e;

    if (svc->digest_hook == NULL)
        return HK_OK;
    if ((e = hk_sign_digest(s->sg, &dig, &dlen)) != HK_OK)
        return e;
    e = svc->digest_hook(svc->digest_hook_ctx, s->sub, s->kid, dig, dlen,
                         reason, 128);
    reason[127] = '\0';
    if (e != HK_OK) {
        hk_metrics_refusal(svc->metrics, "digest_refused");
        hk_log("warn", "event=digest_refused sub=%s reason=\"%.100s\"", s->sub,
               reason);
    }
    return e == HK_OK ? HK_OK : HK_ERR_FORBIDDEN;
}

/* Hands the session's sign its encryption randomness from the pool
 * (rnpool.c); without it (an error), c3's computation makes its own. */
static void hk_sign_rn(hk_rsess *s, int wait)
{
    BIGNUM *rn = NULL;

    if (s->rn_given || !hk_sign_p2_wants_randomness(s->sg) ||
        hk_rn_take(s->svc, s->share->pk, wait, &rn) != HK_OK)
        return;
    if (hk_sign_p2_use_randomness(s->sg, rn) == HK_OK)
        s->rn_given = 1;
    else
        BN_clear_free(rn);
}

/* A sign bound to a request (requests.h): sign.1's digest must be the one
 * the server computed for it, and the request still signable. */
static hk_err hk_request_digest(hk_rsess *s, char where[160])
{
    const unsigned char *dig;
    char why[HK_REQ_WHY] = "";
    size_t dlen;
    hk_err e;

    if ((e = hk_sign_digest(s->sg, &dig, &dlen)) == HK_OK)
        e = hk_req_digest_check(s->svc, s->sub, s->kid, s->rid, s->ridx, dig,
                                dlen, why);
    if (e != HK_OK) {
        snprintf(where, 160, "sign.1 under a request: %.120s", why);
        if (e == HK_ERR_FORBIDDEN)
            hk_metrics_refusal(s->svc->metrics, "digest_refused");
    }
    return e;
}

static void hk_sign_step(hk_rsess *s, const hk_rmsg *m, int first)
{
    unsigned char *out = NULL, fp[HK_HASH_LEN], sig[HK_SIG_LEN];
    char reason[128] = "", where[160];
    unsigned long epoch;
    size_t outlen = 0;
    hk_err e;

    if (first && s->presig) {
        /* sign.1p: the presignature named by the session id, taken */
        if ((e = hk_presig_sign_begin(s)) != HK_OK)
            return hk_rsess_fail(s, e, "sign.1p");
    } else if (first) {
        if ((e = hk_msg_peek_share(m->buf, m->len, &epoch, fp)) != HK_OK ||
            (e = hk_rsess_use_share(s, epoch)) != HK_OK)
            return hk_rsess_fail(s, e, "sign.1");
        hk_rn_ckey_table(s->svc, s->share);
        if (s->sg == NULL &&
            (e = hk_sign_p2_new(s->share, s->sid, &s->sg)) != HK_OK)
            return hk_rsess_fail(s, e, "sign.1");
        /* ready randomness now; none: it is waited for at sign.3 */
        hk_sign_rn(s, 0);
    } else if (hk_sign_p2_wants_randomness(s->sg)) {
        hk_sign_rn(s, 1); /* sign.3: wait for a running job, or make it */
    }
    if ((e = hk_sign_recv(s->sg, m->buf, m->len, &out, &outlen)) != HK_OK)
        return hk_rsess_fail(s, e, "sign");
    if (first && (e = hk_digest_check(s, reason)) != HK_OK) {
        /* the hook's reason goes into the audit record of the failure */
        snprintf(where, sizeof(where), "sign.1 digest refused: %s", reason);
        OPENSSL_free(out);
        return hk_rsess_fail(s, e, where);
    }
    if (first && s->has_rid && (e = hk_request_digest(s, where)) != HK_OK) {
        OPENSSL_free(out);
        return hk_rsess_fail(s, e, where);
    }
    /* c3 leaves only once the open's commit (admission, presignature
     * taken) is on disk: a crash before that loses the c3, never sends
     * one whose presignature a restarted server still has */
    if (hk_sign_done(s->sg) &&
        (e = hk_db_wait_durable(s->svc->db, s->durable)) != HK_OK) {
        OPENSSL_free(out);
        return hk_rsess_fail(s, e, "sign: the open's commit did not sync");
    }
    hk_rsess_send(s, out, outlen);
    OPENSSL_free(out);
    if (hk_sign_signature(s->sg, sig) == HK_OK) {
        hk_log_signature(s);
        if (s->has_rid)
            hk_req_record(s->svc, s->sub, s->rid, s->ridx, sig);
        /* a signature that verifies under Q, made with a pending share or
         * key, proves the client holds it */
        (void)hk_proven(s, "signature");
        hk_rsess_done(s);
    }
}

static void hk_refresh_step(hk_rsess *s, const hk_rmsg *m)
{
    hk_service *svc = s->svc;
    unsigned char *out = NULL, fp[HK_HASH_LEN];
    unsigned long epoch;
    size_t outlen = 0;
    hk_share *fresh = NULL;
    int64_t others = 0;
    hk_err e;

    if (s->rf == NULL &&
        ((e = hk_msg_peek_share(m->buf, m->len, &epoch, fp)) != HK_OK ||
         (e = hk_rsess_use_share(s, epoch)) != HK_OK ||
         (e = hk_refresh_p2_new(s->share, s->sid, svc->cfg.min_paillier_bits,
                                svc->setup, &s->rf)) != HK_OK))
        return hk_rsess_fail(s, e, "refresh.1");
    if ((e = hk_refresh_recv(s->rf, m->buf, m->len, &out, &outlen)) != HK_OK)
        return hk_rsess_fail(s, e, "refresh");
    /* refresh.1 carried a verified proof that the client holds the share
     * it named: a pending one is made active before a newer one is
     * stored */
    if (s->unproven && (e = hk_proven(s, "refresh.1")) != HK_OK) {
        OPENSSL_free(out);
        return hk_rsess_fail(s, e, "refresh.1 promote");
    }
    /* still pending: its backup is missing (hk_backup_gate). A new
     * pending share would replace it while the client may keep using it
     * (a refresh cut before the client stores the new one): refused */
    if (s->unproven) {
        OPENSSL_free(out);
        return hk_rsess_fail(s, HK_ERR_BACKUP,
                             "refresh.1: the named share waits for its backup: "
                             "upload it first (POST /backup)");
    }
    if (hk_refresh_confirmed(s->rf))
        return hk_confirmed(s, "refresh");
    if (hk_refresh_take_share(s->rf, &fresh) == HK_OK) {
        /* durable before refresh.4 tells the client to switch; alone, or
         * another refresh of the key could replace this pending share
         * with one of the same epoch */
        pthread_mutex_lock(&svc->dbmu);
        e = hk_db_session_others(svc->db, s->sid, hk_now(),
                                 svc->cfg.session_idle, &others);
        if (e == HK_OK && others > 0)
            e = HK_ERR_BUSY;
        if (e == HK_OK)
            e = hk_store_share(svc->db, svc->kek, s->sub, fresh, 1);
        pthread_mutex_unlock(&svc->dbmu);
        epoch = fresh->epoch;
        hk_share_free(fresh);
        if (e != HK_OK) {
            OPENSSL_free(out);
            return hk_rsess_fail(s, e, "refresh store");
        }
        hk_log("info", "event=refresh_pending sub=%s epoch=%lu", s->sub, epoch);
    }
    hk_rsess_send(s, out, outlen);
    OPENSSL_free(out);
}

/* {"v":1,"t":"open","op":"sign"|"refresh"|"presign","key_id":hex} on a
 * kept-open connection: a new session for a key of the connection's
 * subject. A sign may add "request_id" and "index" (requests.h) and
 * "presig" (hex id: a sign on that presignature, whose id is the
 * session's); a presign has "n", the batch size (presigs.c). */
static hk_err hk_channel_parse(hk_rsess *s, const hk_rmsg *m, hk_db_op *op)
{
    static const char *const keys[] = {"v", "t", "op", "key_id"};
    const char *t, *o, *k, *ps;
    json_t *j, *rid, *idx, *n, *pj;
    size_t i, extra;
    hk_err e = HK_ERR_DECODE;

    j = json_loadb((const char *)m->buf, m->len, JSON_REJECT_DUPLICATES, NULL);
    rid = json_object_get(j, "request_id");
    idx = json_object_get(j, "index");
    n = json_object_get(j, "n");
    pj = json_object_get(j, "presig");
    extra = (rid != NULL) + (idx != NULL) + (n != NULL) + (pj != NULL);
    if (!json_is_object(j) || json_object_size(j) != 4 + extra ||
        (idx != NULL && rid == NULL))
        goto done;
    for (i = 0; i < 4; i++)
        if (json_object_get(j, keys[i]) == NULL)
            goto done;
    t = json_string_value(json_object_get(j, "t"));
    o = json_string_value(json_object_get(j, "op"));
    k = json_string_value(json_object_get(j, "key_id"));
    ps = json_string_value(pj);
    if (json_integer_value(json_object_get(j, "v")) != 1 || t == NULL ||
        strcmp(t, "open") != 0 || o == NULL || k == NULL ||
        !hk_unhex(k, strlen(k), s->kid, HK_ID_LEN) ||
        (pj != NULL &&
         (ps == NULL || !hk_unhex(ps, strlen(ps), s->sid, HK_ID_LEN))) ||
        (n != NULL && (!json_is_integer(n) || json_integer_value(n) < 1 ||
                       json_integer_value(n) > HK_PRESIG_BATCH_MAX)))
        goto done;
    s->has_rid = rid != NULL;
    s->ridx = 0;
    if (rid != NULL &&
        (!hk_req_parse_id(json_string_value(rid), s->rid) ||
         (idx != NULL &&
          (!json_is_integer(idx) || json_integer_value(idx) < 0 ||
           json_integer_value(idx) >= HK_DB_REQ_DIGESTS_MAX))))
        goto done;
    if (idx != NULL)
        s->ridx = (unsigned)json_integer_value(idx);
    s->presig = pj != NULL;
    s->presig_n = n != NULL ? (unsigned)json_integer_value(n) : 0;
    e = HK_ERR_MSG_TYPE;
    if (strcmp(o, "sign") == 0 && n == NULL)
        *op = HK_DB_OP_SIGN;
    else if (strcmp(o, "refresh") == 0 && extra == 0)
        *op = HK_DB_OP_REFRESH;
    else if (strcmp(o, "presign") == 0 && extra == 1 && n != NULL)
        *op = HK_DB_OP_PRESIGN;
    else
        goto done;
    e = HK_OK;
done:
    if (e != HK_OK)
        s->has_rid = s->presig = 0;
    json_decref(j);
    return e;
}

/* What a refused open parsed is forgotten: the channel waits for the next
 * open with the share it had loaded (of key old_kid). */
static void hk_channel_unopen(hk_rsess *s, const unsigned char *old_kid)
{
    s->has_rid = s->presig = 0;
    memcpy(s->kid, old_kid, HK_ID_LEN);
}

/* A refused open that leaves the channel as it was, waiting for the next
 * open: the client asked for something this server does not offer
 * (presignatures), nothing ran. */
static void hk_channel_refuse(hk_rsess *s, const unsigned char *old_kid,
                              hk_err e, const char *message)
{
    hk_rsess_send_error(s, e, message);
    hk_channel_unopen(s, old_kid);
}

/* The open's storage work in one durable commit (db.h "groups"; issue 20
 * item 3): the key, the request or direct-sign rules, the admission and
 * its audit record, the session row claimed, and for a sign on a
 * presignature the presignature taken (presigs.c). *where: why a refusal
 * that is not the admission's (why), else NULL. */
static hk_err hk_channel_admit(hk_rsess *s, hk_db_op op, hk_refusal *why,
                               char rwhy[HK_REQ_WHY], const char **where)
{
    hk_service *svc = s->svc;
    hk_db_key key;
    hk_err e, c;

    *where = NULL;
    pthread_mutex_lock(&svc->dbmu);
    /* a sign's commit is synced while the sign runs; c3 waits for it */
    if ((e = hk_db_group_begin(svc->db, op == HK_DB_OP_SIGN ? HK_DB_DEFERRED
                                                            : HK_DB_DURABLE)) !=
        HK_OK) {
        pthread_mutex_unlock(&svc->dbmu);
        return e;
    }
    e = hk_db_key_get_owned(svc->db, s->kid, s->sub, &key);
    if (e == HK_OK && op == HK_DB_OP_SIGN &&
        (e = s->has_rid ? hk_req_signable(svc, s->sub, s->kid, s->rid, s->ridx,
                                          hk_now(), rwhy)
                        : hk_req_direct_allowed(svc, &key, rwhy)) != HK_OK)
        *where = rwhy;
    if (e == HK_OK)
        e = hk_policy_admit(svc->db, &svc->cfg, s->sub, op, &key, 0, 0, 0,
                            s->sid, why);
    /* a presignature batch has no session row (db.h) */
    if (e == HK_OK && op != HK_DB_OP_PRESIGN)
        e = hk_db_session_create(svc->db, s->sid, s->sub, op, s->kid, hk_now());
    if (e == HK_OK && s->has_rid)
        e = hk_db_session_bind_request(svc->db, s->sid, s->rid, s->ridx);
    if (e == HK_OK && op != HK_DB_OP_PRESIGN)
        e = hk_db_session_set_state(svc->db, s->sid, HK_DB_SESS_RUNNING,
                                    hk_now(), svc->cfg.session_idle);
    if (e == HK_OK && s->presig && (e = hk_presig_take(s)) == HK_ERR_NOT_FOUND)
        *where = "no such presignature (used, expired or of another key)";
    /* the take counts only once committed: a failed commit leaves the
     * presignature stored and unused here */
    if ((c = hk_db_group_end(svc->db)) != HK_OK && e == HK_OK)
        e = c;
    s->durable = hk_db_group_ticket(svc->db);
    pthread_mutex_unlock(&svc->dbmu);
    if (e != HK_OK)
        hk_presig_drop(s);
    return e;
}

/* After a sign's open has been answered, on a channel without a share
 * (a new connection, or another key): the share its first message will
 * name is loaded now, while the client makes and sends that message (and
 * on a presignature syncs its records first). A presigned sign's share is
 * its presignature's; a plain sign's, the key's active one (sign.1 names
 * another after a refresh: loaded then). A failure is met and reported
 * again at that message. */
static void hk_channel_preload(hk_rsess *s)
{
    if (s->op != HK_DB_OP_SIGN || s->share != NULL)
        return;
    if (s->presig ? s->has_ps && hk_rsess_use_share(s, s->ps_rec.epoch) == HK_OK
                  : hk_active_share(s) == HK_OK)
        hk_rn_ckey_table(s->svc, s->share);
}

static void hk_channel_open(hk_rsess *s, const hk_rmsg *m)
{
    char rwhy[HK_REQ_WHY] = "";
    hk_service *svc = s->svc;
    unsigned char old[HK_ID_LEN];
    char sh[2 * HK_ID_LEN + 1], kh[2 * HK_ID_LEN + 1], buf[160];
    const char *where = NULL;
    hk_refusal why;
    hk_db_op op = 0;
    hk_err e;
    int n;

    memcpy(old, s->kid, HK_ID_LEN);
    if ((e = hk_channel_parse(s, m, &op)) != HK_OK)
        return hk_rsess_fail(s, e, "open");
    if (hk_now() - svc->cfg.jwt_skew > s->exp)
        return hk_rsess_fail(s, HK_ERR_AUTH, "open: token expired");
    /* a sign on a presignature runs under its id (hk_channel_parse) */
    if (!s->presig && RAND_bytes(s->sid, HK_ID_LEN) != 1)
        return hk_rsess_fail(s, HK_ERR_RAND, "open");
    if (svc->draining)
        return hk_rsess_fail(s, HK_ERR_BUSY, "open: server shutting down");
    if (op == HK_DB_OP_PRESIGN && svc->cfg.presign_max_key == 0)
        return hk_channel_refuse(s, old, HK_ERR_FORBIDDEN,
                                 "open: presignatures are off on this server "
                                 "(presign_max_key = 0)");
    memset(&why, 0, sizeof(why));
    if ((e = hk_channel_admit(s, op, &why, rwhy, &where)) != HK_OK &&
        where != NULL) {
        snprintf(buf, sizeof(buf), "open: %.140s", where);
        if (!(e == HK_ERR_NOT_FOUND && s->presig))
            return hk_rsess_fail(s, e, buf);
        /* a presignature this server no longer has (evicted, expired,
         * used): the client signs the plain way on this connection; the
         * sign.1p it sent with the open is dropped unread */
        hk_rsess_report(s, e, buf);
        hk_channel_unopen(s, old);
        s->drop_next = 1;
        return;
    }
    if (e == HK_ERR_RATE || e == HK_ERR_FORBIDDEN) {
        hk_metrics_refusal(svc->metrics, why.code);
        hk_metrics_op(svc->metrics, op, HK_OUT_REFUSED, -1);
        hk_log("warn", "event=policy_refused op=%s sub=%s reason=%s",
               hk_db_op_name(op), s->sub, why.code);
        s->retry_after = why.retry_after;
        return hk_rsess_fail(s, e, why.message);
    }
    if (e != HK_OK)
        return hk_rsess_fail(s, e, "open");
    s->started = hk_mono();
    if (memcmp(old, s->kid, HK_ID_LEN) != 0 && s->share != NULL) {
        pthread_mutex_lock(&s->mu);
        hk_share_free(s->share); /* another key */
        s->share = NULL;
        pthread_mutex_unlock(&s->mu);
    }
    s->op = op;
    s->ended = 0;
    s->touched = hk_now();
    hk_hex(s->sid, HK_ID_LEN, sh);
    hk_hex(s->kid, HK_ID_LEN, kh);
    hk_log("info",
           "event=session_open op=%s sub=%s key=%s session=sess_%s "
           "channel=1%s",
           hk_db_op_name(op), s->sub, kh, sh, s->presig ? " presig=1" : "");
    n = snprintf(buf, sizeof(buf),
                 "{\"v\":1,\"t\":\"opened\",\"session_id\":\"sess_%s\","
                 "\"key_id\":\"%s\"",
                 sh, kh);
    /* a batch's answer says how many this server makes at once: the
     * client asks for no more in pre.1 (hk_presig_first) */
    if (op == HK_DB_OP_PRESIGN)
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, ",\"presign_max\":%zu",
                      hk_presig_max(&svc->cfg));
    snprintf(buf + n, sizeof(buf) - (size_t)n, "}");
    hk_rsess_send(s, (const unsigned char *)buf, strlen(buf));
    hk_channel_preload(s);
}

static void hk_rsess_handle(hk_rsess *s, const hk_rmsg *m)
{
    hk_service *svc = s->svc;
    hk_err e;

    if (s->finished)
        return;
    if (s->channel && s->op == 0 && s->drop_next) {
        s->drop_next = 0;
        return;
    }
    if (s->channel && s->op == 0)
        return hk_channel_open(s, m);
    /* The idle clock counts seconds: one write a second is enough. */
    if (s->op != HK_DB_OP_PRESIGN && hk_now() != s->touched) {
        pthread_mutex_lock(&svc->dbmu);
        e = hk_db_session_touch(svc->db, s->sid, hk_now(),
                                svc->cfg.session_idle);
        pthread_mutex_unlock(&svc->dbmu);
        if (e != HK_OK)
            return hk_rsess_fail(s, HK_ERR_SESSION, "touch");
        s->touched = hk_now();
    }
    switch (s->op) {
    case HK_DB_OP_KEYGEN:
        return hk_keygen_step(s, m);
    case HK_DB_OP_SIGN:
        return hk_sign_step(s, m, s->sg == NULL || !hk_sign_started(s->sg));
    case HK_DB_OP_PRESIGN:
        return hk_presig_step(s, m);
    default:
        return hk_refresh_step(s, m);
    }
}

void hk_rsess_job(void *arg)
{
    hk_rsess *s = arg;
    hk_rmsg *m;

    for (;;) {
        pthread_mutex_lock(&s->mu);
        m = s->head;
        if (m != NULL) {
            s->head = m->next;
            if (s->head == NULL)
                s->tail = NULL;
            s->qlen--;
            s->qbytes -= m->len;
        } else {
            s->scheduled = 0;
        }
        pthread_mutex_unlock(&s->mu);
        if (m == NULL)
            break;
        /* Even after the peer closed: its last message (sign.5,
         * refresh.5) may arrive just before the close. */
        hk_rsess_handle(s, m);
        free(m);
        pthread_mutex_lock(&s->mu);
        s->last = hk_now();
        pthread_mutex_unlock(&s->mu);
    }
    hk_rsess_unref(s);
}
