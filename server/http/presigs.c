/* Presignatures on halfkeyd's side (mpc/presign.h, DESIGN.md section 2):
 * making a batch on a kept-open connection, and starting a sign on one.
 *
 * Storage enforces single use (server/store/db.h, "presignatures"): each
 * presignature's k2 and the r^N made for its c3 are sealed under the KEK
 * and stored in the database, so any node can serve the sign; the sign
 * takes the row (read and deleted in one committed statement) before c3
 * is computed, so a crash loses a presignature and never reuses one. The
 * pools are bounded per key and per subject (presign_max_key,
 * presign_max_subject; the oldest make room): a client cannot make the
 * server hoard state. */
#include <pthread.h>
#include <string.h>

#include <openssl/crypto.h>

#include "mpc/codec.h"
#include "server/http/service_impl.h"
#include "server/log.h"

size_t hk_presig_max(const hk_srv_config *cfg)
{
    size_t max = HK_PRESIG_BATCH_MAX;

    if ((size_t)cfg->presign_max_key < max)
        max = (size_t)cfg->presign_max_key;
    if ((size_t)cfg->presign_max_subject < max)
        max = (size_t)cfg->presign_max_subject;
    return max;
}

/* pre.1: the share it names, and a batch no larger than the open asked
 * and this server makes (a full pool loses its oldest when the batch is
 * stored: db.h). */
static hk_err hk_presig_first(hk_rsess *s, const hk_rmsg *m, const char **why)
{
    size_t max = hk_presig_max(&s->svc->cfg);
    unsigned char fp[HK_HASH_LEN];
    unsigned long epoch;
    hk_err e;

    *why = "pre.1";
    if ((e = hk_msg_peek_share(m->buf, m->len, &epoch, fp)) != HK_OK ||
        (e = hk_rsess_use_share(s, epoch)) != HK_OK)
        return e;
    if (max == 0) {
        *why = "pre.1: this server keeps no presignatures";
        return HK_ERR_FORBIDDEN;
    }
    /* the open asked for presig_n; pre.1 may ask for that many, at most
     * presign_max (said in the open's answer) */
    if (s->presig_n < max)
        max = s->presig_n;
    return hk_psgen_p2_new(s->share, s->sid, max, &s->pg);
}

/* r^N of every other presignature of a batch, from `from` on. */
typedef struct {
    const hk_share *share;
    BIGNUM **rn;
    size_t from, cnt;
    hk_err e;
} hk_rn_half;

static void *hk_rn_half_run(void *arg)
{
    hk_rn_half *h = arg;
    size_t i;

    for (i = h->from; i < h->cnt && h->e == HK_OK; i += 2)
        h->e = hk_sign_randomness(h->share, &h->rn[i]);
    return NULL;
}

/* The batch's r^N values (8–9 ms each) on this worker and one thread of
 * its own, joined here, so a batch made by the sign that found none
 * waits half as long when a core is free (the key's Paillier context is
 * only read). Without the thread, all on this one. */
static hk_err hk_presig_randomness(const hk_share *share, BIGNUM **rn,
                                   size_t cnt)
{
    hk_rn_half odd = {share, rn, 1, cnt, HK_OK},
               even = {share, rn, 0, cnt, HK_OK};
    pthread_t th;
    int threaded =
        cnt > 1 && pthread_create(&th, NULL, hk_rn_half_run, &odd) == 0;

    hk_rn_half_run(&even);
    if (threaded)
        pthread_join(th, NULL);
    else
        hk_rn_half_run(&odd);
    return even.e != HK_OK ? even.e : odd.e;
}

/* The batch checked: every record with its own r^N, stored in one
 * transaction (all or none). */
static hk_err hk_presig_store(hk_rsess *s, size_t *n)
{
    hk_service *svc = s->svc;
    hk_presig *recs = NULL;
    BIGNUM *rn[HK_PRESIG_BATCH_MAX] = {0};
    size_t i, cnt = hk_psgen_count(s->pg),
              width = 2 * hk_width(hk_paillier_bits(s->share->pk));
    hk_err e = HK_OK;

    if ((recs = OPENSSL_secure_zalloc(cnt * sizeof(*recs))) == NULL)
        return HK_ERR_NOMEM;
    for (i = 0; i < cnt && e == HK_OK; i++)
        e = hk_psgen_get(s->pg, i, &recs[i]);
    if (e == HK_OK)
        e = hk_presig_randomness(s->share, rn, cnt);
    if (e == HK_OK) {
        pthread_mutex_lock(&svc->dbmu);
        e = hk_store_presigs(svc->db, svc->kek, s->sub, recs, rn, width, cnt,
                             (size_t)svc->cfg.presign_max_key,
                             (size_t)svc->cfg.presign_max_subject, hk_now());
        pthread_mutex_unlock(&svc->dbmu);
    }
    for (i = 0; i < cnt; i++)
        BN_clear_free(rn[i]);
    OPENSSL_secure_clear_free(recs, cnt * sizeof(*recs));
    *n = cnt;
    return e;
}

void hk_presig_step(hk_rsess *s, const hk_rmsg *m)
{
    unsigned char *out = NULL;
    const char *why = "pre.1";
    char done[64];
    size_t outlen = 0, n = 0;
    hk_err e;

    if (s->pg == NULL && (e = hk_presig_first(s, m, &why)) != HK_OK)
        return hk_rsess_fail(s, e, why);
    if ((e = hk_psgen_recv(s->pg, m->buf, m->len, &out, &outlen)) != HK_OK)
        return hk_rsess_fail(s, e, "presign");
    if (!hk_psgen_done(s->pg)) {
        hk_rsess_send(s, out, outlen);
        OPENSSL_free(out);
        return;
    }
    e = hk_presig_store(s, &n);
    hk_psgen_free(s->pg);
    s->pg = NULL;
    if (e != HK_OK)
        return hk_rsess_fail(s, e, "presign store");
    snprintf(done, sizeof(done), "{\"v\":1,\"t\":\"done\",\"n\":%zu}", n);
    hk_rsess_send(s, (const unsigned char *)done, strlen(done));
    hk_rsess_done(s);
}

hk_err hk_presig_take(hk_rsess *s)
{
    hk_service *svc = s->svc;
    hk_err e;

    hk_presig_drop(s);
    if ((e = hk_take_presig(svc->db, svc->kek, s->sub, s->kid, s->sid,
                            &s->ps_rec, &s->ps_rn)) == HK_OK)
        s->has_ps = 1;
    return e;
}

void hk_presig_drop(hk_rsess *s)
{
    OPENSSL_cleanse(&s->ps_rec, sizeof(s->ps_rec));
    BN_clear_free(s->ps_rn);
    s->ps_rn = NULL;
    s->has_ps = 0;
}

hk_err hk_presig_sign_begin(hk_rsess *s)
{
    hk_err e;

    if (!s->has_ps)
        return HK_ERR_STATE;
    hk_sign_free(s->sg);
    s->sg = NULL;
    if ((e = hk_rsess_use_share(s, s->ps_rec.epoch)) == HK_OK)
        hk_rn_ckey_table(s->svc, s->share);
    if (e == HK_OK &&
        (e = hk_sign_p2_presigned(s->share, &s->ps_rec, &s->sg)) == HK_OK &&
        (e = hk_sign_p2_use_randomness(s->sg, s->ps_rn)) == HK_OK) {
        s->ps_rn = NULL; /* taken by the state machine */
        s->rn_given = 1;
    }
    hk_presig_drop(s);
    return e;
}
