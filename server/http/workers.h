/* A fixed pool of worker threads for protocol computation, so that the
 * service (event-loop) thread never runs Paillier arithmetic or proofs.
 * Jobs run in submission order per pool; a job owns its argument. */
#ifndef HK_WORKERS_H
#define HK_WORKERS_H

#include "common/error.h"

typedef struct hk_workers hk_workers;
typedef void (*hk_job_fn)(void *arg);

HK_WUR hk_err hk_workers_new(int n, hk_workers **out);
/* Queues fn(arg); HK_ERR_STATE once the pool is stopping. */
HK_WUR hk_err hk_workers_submit(hk_workers *w, hk_job_fn fn, void *arg);
/* Runs every queued job, then joins the threads and frees the pool. */
void hk_workers_free(hk_workers *w);

#endif
