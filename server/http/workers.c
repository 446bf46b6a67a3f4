/* Worker thread pool. */
#include <pthread.h>
#include <stdlib.h>

#include "server/http/workers.h"

typedef struct hk_job {
    struct hk_job *next;
    hk_job_fn fn;
    void *arg;
} hk_job;

struct hk_workers {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    hk_job *head, *tail;
    int stopping, n;
    pthread_t *threads;
};

static void *hk_worker_main(void *p)
{
    hk_workers *w = p;
    hk_job *j;

    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (w->head == NULL && !w->stopping)
            pthread_cond_wait(&w->cv, &w->mu);
        j = w->head;
        if (j != NULL) {
            w->head = j->next;
            if (w->head == NULL)
                w->tail = NULL;
        }
        pthread_mutex_unlock(&w->mu);
        if (j == NULL)
            return NULL; /* stopping and drained */
        j->fn(j->arg);
        free(j);
    }
}

hk_err hk_workers_new(int n, hk_workers **out)
{
    hk_workers *w;
    int i;

    if (n < 1 || n > 64 || out == NULL)
        return HK_ERR_ARG;
    if ((w = calloc(1, sizeof(*w))) == NULL)
        return HK_ERR_NOMEM;
    if ((w->threads = calloc((size_t)n, sizeof(pthread_t))) == NULL) {
        free(w);
        return HK_ERR_NOMEM;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    for (i = 0; i < n; i++) {
        if (pthread_create(&w->threads[i], NULL, hk_worker_main, w) != 0)
            break;
        w->n++;
    }
    if (w->n != n) {
        hk_workers_free(w);
        return HK_ERR_NOMEM;
    }
    *out = w;
    return HK_OK;
}

hk_err hk_workers_submit(hk_workers *w, hk_job_fn fn, void *arg)
{
    hk_job *j;

    if (w == NULL || fn == NULL)
        return HK_ERR_ARG;
    if ((j = calloc(1, sizeof(*j))) == NULL)
        return HK_ERR_NOMEM;
    j->fn = fn;
    j->arg = arg;
    pthread_mutex_lock(&w->mu);
    if (w->stopping) {
        pthread_mutex_unlock(&w->mu);
        free(j);
        return HK_ERR_STATE;
    }
    if (w->tail != NULL)
        w->tail->next = j;
    else
        w->head = j;
    w->tail = j;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return HK_OK;
}

void hk_workers_free(hk_workers *w)
{
    int i;

    if (w == NULL)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (i = 0; i < w->n; i++)
        pthread_join(w->threads[i], NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->threads);
    free(w);
}
