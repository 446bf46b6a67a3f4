/* The pool of Paillier encryption randomness r^N mod N^2 (issue 20 item
 * 2): the ~7 ms exponentiation of c3's encryption is made ahead, by
 * worker jobs, HK_RN_PER_KEY per Paillier modulus, for at most
 * HK_RN_KEYS moduli (least recently used first out), so that neither a
 * kept-open channel's next sign nor a POST /sign computes it on the path.
 *
 * A sign that finds the pool empty while a job of its modulus is running
 * waits for that job instead of starting a second exponentiation (two on
 * two cores is what made r^N land on the path about half the time). It
 * never waits for a job that is only queued: every worker could be such a
 * waiter, and the queued job would never run. Then it computes its own.
 *
 * Each value is taken once (removed under the lock) and cleared when
 * dropped. The pool is keyed by N alone: r^N for a uniform unit r is the
 * same distribution whichever key or session uses it.
 *
 * The same entry keeps the fixed-base table of its key's ckey (issue 20
 * item 4, mpc/paillier_fb.c: ckey^w of every c3 3x faster), made once by
 * a worker job the first time a share of that modulus asks for it, and
 * handed to later shares as a reference (a share that holds one keeps it
 * valid after the entry is evicted). One table per modulus: a second key
 * that came with the same N (a client's choice) gets none. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "server/http/service_impl.h"

typedef struct hk_rn_entry {
    struct hk_rn_entry *next;
    BIGNUM *n;
    BIGNUM *rn[HK_RN_PER_KEY];
    int avail, queued, running;
    hk_paillier_fb *fb; /* ckey's table, once made */
    int fb_busy;        /* its job is queued or running */
    double used;
} hk_rn_entry;

struct hk_rn_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a job ended */
    hk_rn_entry *head;
    int nkeys;
};

typedef struct {
    hk_service *svc;
    BIGNUM *n;
    BIGNUM *ckey; /* a table job: the base */
} hk_rn_job;

static void hk_rn_job_free(hk_rn_job *j)
{
    BN_free(j->n);
    BN_free(j->ckey);
    free(j);
}

hk_err hk_rn_pool_new(hk_rn_pool **out)
{
    hk_rn_pool *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return HK_ERR_NOMEM;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    *out = p;
    return HK_OK;
}

static void hk_rn_entry_free(hk_rn_entry *en)
{
    int i;

    for (i = 0; i < en->avail; i++)
        BN_clear_free(en->rn[i]);
    hk_paillier_fb_free(en->fb);
    BN_free(en->n);
    free(en);
}

void hk_rn_pool_free(hk_rn_pool *p)
{
    hk_rn_entry *en;

    if (p == NULL)
        return;
    while ((en = p->head) != NULL) {
        p->head = en->next;
        hk_rn_entry_free(en);
    }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* The entry of n (create: making room by dropping the least recently used
 * idle entry), or NULL. Call with p->mu held. */
static hk_rn_entry *hk_rn_find(hk_rn_pool *p, const BIGNUM *n, int create)
{
    hk_rn_entry *en, **pp, **lru = NULL;

    for (en = p->head; en != NULL; en = en->next)
        if (BN_cmp(en->n, n) == 0)
            return en;
    if (!create)
        return NULL;
    if (p->nkeys >= HK_RN_KEYS) {
        for (pp = &p->head; *pp != NULL; pp = &(*pp)->next)
            if ((*pp)->queued == 0 && (*pp)->running == 0 &&
                (*pp)->fb_busy == 0 &&
                (lru == NULL || (*pp)->used < (*lru)->used))
                lru = pp;
        if (lru == NULL)
            return NULL; /* all busy: no pool for this one */
        en = *lru;
        *lru = en->next;
        hk_rn_entry_free(en);
        p->nkeys--;
    }
    if ((en = calloc(1, sizeof(*en))) == NULL || (en->n = BN_dup(n)) == NULL) {
        free(en);
        return NULL;
    }
    en->next = p->head;
    p->head = en;
    p->nkeys++;
    return en;
}

/* r^N mod N^2 for a uniform unit r (a non-unit would reveal a factor of
 * N: probability ~2^-1023, refused all the same). */
static BIGNUM *hk_rn_make(const BIGNUM *n)
{
    BIGNUM *r = BN_secure_new(), *g = BN_new(), *n2 = BN_new(), *rn = BN_new();
    BN_CTX *ctx = BN_CTX_new();
    int ok;

    ok = r != NULL && g != NULL && n2 != NULL && rn != NULL && ctx != NULL &&
         BN_sqr(n2, n, ctx) && BN_priv_rand_range(r, n) && !BN_is_zero(r) &&
         BN_gcd(g, r, n, ctx) && BN_is_one(g) && BN_mod_exp(rn, r, n, n2, ctx);
    BN_clear_free(r);
    BN_free(g);
    BN_free(n2);
    BN_CTX_free(ctx);
    if (!ok) {
        BN_clear_free(rn);
        return NULL;
    }
    return rn;
}

static void hk_rn_job_run(void *arg)
{
    hk_rn_job *j = arg;
    hk_rn_pool *p = j->svc->rnpool;
    hk_rn_entry *en;
    BIGNUM *rn = NULL;

    pthread_mutex_lock(&p->mu);
    en = hk_rn_find(p, j->n, 0);
    if (en != NULL) {
        en->queued--;
        en->running++;
    }
    pthread_mutex_unlock(&p->mu);
    if (en != NULL)
        rn = hk_rn_make(j->n);
    pthread_mutex_lock(&p->mu);
    /* an entry with a queued or running job is never evicted */
    if (en != NULL) {
        en->running--;
        if (rn != NULL && en->avail < HK_RN_PER_KEY) {
            en->rn[en->avail++] = rn;
            rn = NULL;
        }
    }
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    BN_clear_free(rn);
    hk_rn_job_free(j);
}

/* Queues jobs until en has HK_RN_PER_KEY made or in the making. Call with
 * p->mu held. */
static void hk_rn_topup(hk_service *svc, hk_rn_entry *en)
{
    hk_rn_job *j;

    while (en->avail + en->queued + en->running < HK_RN_PER_KEY) {
        if ((j = calloc(1, sizeof(*j))) == NULL ||
            (j->n = BN_dup(en->n)) == NULL) {
            free(j);
            return;
        }
        j->svc = svc;
        en->queued++;
        if (hk_workers_submit(svc->workers, hk_rn_job_run, j) != HK_OK) {
            en->queued--;
            hk_rn_job_free(j);
            return;
        }
    }
}

void hk_rn_fill(hk_service *svc, const hk_paillier_pk *pk)
{
    hk_rn_pool *p = svc->rnpool;
    hk_rn_entry *en;

    if (p == NULL || pk == NULL || svc->draining)
        return;
    pthread_mutex_lock(&p->mu);
    if ((en = hk_rn_find(p, hk_paillier_n(pk), 1)) != NULL) {
        en->used = hk_mono();
        hk_rn_topup(svc, en);
    }
    pthread_mutex_unlock(&p->mu);
}

void hk_rn_pool_stats(hk_rn_pool *p, int *keys, int *ready, int *busy,
                      int *tables)
{
    hk_rn_entry *en;

    *keys = *ready = *busy = *tables = 0;
    pthread_mutex_lock(&p->mu);
    for (en = p->head; en != NULL; en = en->next) {
        ++*keys;
        *ready += en->avail;
        *busy += en->queued + en->running + en->fb_busy;
        *tables += en->fb != NULL;
    }
    pthread_mutex_unlock(&p->mu);
}

hk_err hk_rn_take(hk_service *svc, const hk_paillier_pk *pk, int wait,
                  BIGNUM **rn)
{
    hk_rn_pool *p = svc->rnpool;
    hk_rn_entry *en;
    struct timespec until;

    if (pk == NULL || rn == NULL)
        return HK_ERR_ARG;
    *rn = NULL;
    if (p != NULL) {
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 2; /* a job takes ms: only a bound, never reached */
        pthread_mutex_lock(&p->mu);
        en = hk_rn_find(p, hk_paillier_n(pk), 1);
        while (en != NULL && en->avail == 0 && en->running > 0 && wait &&
               pthread_cond_timedwait(&p->cv, &p->mu, &until) == 0)
            en = hk_rn_find(p, hk_paillier_n(pk), 1);
        /* after a timeout too: the entry may have gone meanwhile */
        en = hk_rn_find(p, hk_paillier_n(pk), 1);
        if (en != NULL) {
            en->used = hk_mono();
            if (en->avail > 0) {
                *rn = en->rn[--en->avail];
                en->rn[en->avail] = NULL;
            }
            if (!svc->draining)
                hk_rn_topup(svc, en);
        }
        pthread_mutex_unlock(&p->mu);
    }
    if (*rn == NULL && wait)
        *rn = hk_rn_make(hk_paillier_n(pk)); /* nothing ready or running */
    if (*rn == NULL)
        return wait ? HK_ERR_CRYPTO : HK_ERR_NOT_FOUND;
    return HK_OK;
}

/* Makes ckey's table (the public key only gives the modulus its size). */
static void hk_fb_job_run(void *arg)
{
    hk_rn_job *j = arg;
    hk_rn_pool *p = j->svc->rnpool;
    hk_paillier_pk *pk = NULL;
    hk_paillier_fb *t = NULL;
    hk_rn_entry *en;

    if (hk_paillier_pk_stored(j->n, BN_num_bits(j->n), &pk) != HK_OK ||
        hk_paillier_fb_new(pk, j->ckey, &t) != HK_OK)
        t = NULL; /* signs go on without it (hk_paillier_mul) */
    pthread_mutex_lock(&p->mu);
    /* an entry with its table job queued or running is never evicted */
    if ((en = hk_rn_find(p, j->n, 0)) != NULL) {
        en->fb_busy = 0;
        if (en->fb == NULL) {
            en->fb = t;
            t = NULL;
        }
    }
    pthread_mutex_unlock(&p->mu);
    hk_paillier_fb_free(t);
    hk_paillier_pk_free(pk);
    hk_rn_job_free(j);
}

/* Queues the making of en's table for ckey. Call with p->mu held. */
static void hk_fb_queue(hk_service *svc, hk_rn_entry *en, const BIGNUM *ckey)
{
    hk_rn_job *j = calloc(1, sizeof(*j));

    if (j == NULL || (j->n = BN_dup(en->n)) == NULL ||
        (j->ckey = BN_dup(ckey)) == NULL) {
        if (j != NULL)
            hk_rn_job_free(j);
        return;
    }
    j->svc = svc;
    en->fb_busy = 1;
    if (hk_workers_submit(svc->workers, hk_fb_job_run, j) != HK_OK) {
        en->fb_busy = 0;
        hk_rn_job_free(j);
    }
}

void hk_rn_ckey_table(hk_service *svc, hk_share *share)
{
    hk_rn_pool *p = svc->rnpool;
    hk_rn_entry *en;

    if (p == NULL || share == NULL || share->pk == NULL ||
        hk_paillier_fb_is_for(share->ckey_fb, share->pk, share->ckey))
        return;
    pthread_mutex_lock(&p->mu);
    if ((en = hk_rn_find(p, hk_paillier_n(share->pk), 1)) != NULL) {
        en->used = hk_mono();
        if (hk_paillier_fb_is_for(en->fb, share->pk, share->ckey)) {
            hk_paillier_fb_free(share->ckey_fb);
            share->ckey_fb = hk_paillier_fb_ref(en->fb);
        } else if (en->fb == NULL && !en->fb_busy && !svc->draining)
            hk_fb_queue(svc, en, share->ckey);
    }
    pthread_mutex_unlock(&p->mu);
}
