/* halfkeyd's metrics in the Prometheus text format (GET /metrics).
 *
 * Owns the counters of one process: protocol operations by operation and
 * outcome, their duration as a histogram (from the WebSocket's claim of
 * the session to its end), and policy refusals by reason. Gauges (active
 * sessions, draining) are passed in at render time. Thread-safe. */
#ifndef HK_SERVER_METRICS_H
#define HK_SERVER_METRICS_H

#include <stdint.h>

#include "server/store/db.h"

typedef struct hk_metrics hk_metrics;

typedef enum {
    HK_OUT_OK = 0,
    HK_OUT_FAILED = 1,
    HK_OUT_REFUSED = 2
} hk_outcome;

HK_WUR hk_err hk_metrics_new(hk_metrics **out);
void hk_metrics_free(hk_metrics *m);
/* One finished (or refused) operation; seconds < 0: no duration. */
void hk_metrics_op(hk_metrics *m, hk_db_op op, hk_outcome out, double seconds);
/* One refusal of reason `code` (one of HK_REFUSAL_CODES in policy.h). */
void hk_metrics_refusal(hk_metrics *m, const char *code);
/* A signing request entered state st (pending when made). */
void hk_metrics_request(hk_metrics *m, hk_db_req_state st);
/* Gauges and counters kept elsewhere, passed in at render time. */
typedef struct {
    int sessions; /* protocol sessions running on this node */
    int draining; /* 1 while shutting down */
    int conns;    /* open connections (transport) */
    int max_conns, max_per_peer;
    unsigned long refused_cap;  /* connections refused: max_connections */
    unsigned long refused_peer; /* ... max_connections_per_peer */
    /* keys by backup state (hk_db_backup_counts); -1: not read */
    int64_t backup_none, backup_stale, backup_waiting;
} hk_metrics_gauges;

/* The text page, malloc'd (free), or NULL without memory. */
char *hk_metrics_render(hk_metrics *m, const hk_metrics_gauges *g,
                        const char *node);

#endif
