/* Private to server/service*.c: the service state and the protocol
 * session runtime. */
#ifndef HK_SERVICE_IMPL_H
#define HK_SERVICE_IMPL_H

#include <pthread.h>
#include <stdint.h>

#include "mpc/keygen.h"
#include "mpc/refresh.h"
#include "mpc/sign.h"
#include "server/db.h"
#include "server/seal.h"
#include "server/service.h"
#include "server/workers.h"
#include "transport/http_server.h"
#include "transport/jwt.h"

typedef struct hk_rsess hk_rsess;

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
    pthread_mutex_t mu; /* guards the session list */
    hk_rsess *sessions;
    int64_t last_sweep;
};

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
    int finished;
    /* queue */
    hk_rmsg *head, *tail;
    int scheduled, dead;
    int64_t last;
    hk_rsess *next;
};

int64_t hk_now(void);
void hk_rsess_unref(hk_rsess *s);
/* Worker job: processes the session's queued messages in order. */
void hk_rsess_job(void *arg);
/* Worker job run once at WebSocket open: prepares the state machine. */
void hk_rsess_prepare_job(void *arg);

#endif
