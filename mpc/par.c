/* Two-thread loop over independent items (see par.h). */
#include <pthread.h>

#include "common/libctx.h"
#include "mpc/par.h"

typedef struct {
    pthread_mutex_t mu; /* guards next and err */
    size_t next, n;
    hk_err err;
    hk_par_fn fn;
    void *arg;
    int secure;
} hk_par_job;

/* Takes items until none is left or one failed. */
static void hk_par_work(hk_par_job *j)
{
    BN_CTX *ctx = j->secure ? BN_CTX_secure_new_ex(hk_libctx())
                            : BN_CTX_new_ex(hk_libctx());
    hk_err e = ctx == NULL ? HK_ERR_NOMEM : HK_OK;
    size_t i;

    for (;;) {
        pthread_mutex_lock(&j->mu);
        if (e != HK_OK && j->err == HK_OK)
            j->err = e;
        if (j->err != HK_OK || j->next >= j->n) {
            pthread_mutex_unlock(&j->mu);
            break;
        }
        i = j->next++;
        pthread_mutex_unlock(&j->mu);
        e = j->fn(j->arg, i, ctx);
    }
    BN_CTX_free(ctx);
}

static void *hk_par_thread(void *arg)
{
    hk_par_work(arg);
    return NULL;
}

hk_err hk_par_run(size_t n, hk_par_fn fn, void *arg, int secure)
{
    hk_par_job j;
    pthread_t th;
    int spawned;

    if (fn == NULL)
        return HK_ERR_ARG;
    if (n == 0)
        return HK_OK;
    j.next = 0;
    j.n = n;
    j.err = HK_OK;
    j.fn = fn;
    j.arg = arg;
    j.secure = secure;
    if (pthread_mutex_init(&j.mu, NULL) != 0)
        return HK_ERR_CRYPTO;
    /* one item needs no helper */
    spawned = n > 1 && pthread_create(&th, NULL, hk_par_thread, &j) == 0;
    hk_par_work(&j);
    if (spawned)
        pthread_join(th, NULL);
    pthread_mutex_destroy(&j.mu);
    return j.err;
}
