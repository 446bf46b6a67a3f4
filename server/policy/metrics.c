/* Prometheus metrics of halfkeyd (see metrics.h). */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/policy/metrics.h"
#include "server/policy/policy.h"

#define HK_NOPS 5 /* index = hk_db_op; 0 unused */
#define HK_NOUT 3
#define HK_NBUCKETS 12

static const double hk_bounds[HK_NBUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
static const char *const hk_outnames[HK_NOUT] = {"ok", "failed", "refused"};
static const char *const hk_refusals[HK_REFUSAL_NCODES] = {HK_REFUSAL_CODES};

struct hk_metrics {
    pthread_mutex_t mu;
    unsigned long long ops[HK_NOPS][HK_NOUT];
    unsigned long long hist[HK_NOPS][HK_NBUCKETS + 1]; /* last: +Inf */
    double sum[HK_NOPS];
    unsigned long long refused[HK_REFUSAL_NCODES];
    /* requests by the state they entered (index = hk_db_req_state) */
    unsigned long long requests[HK_REQ_FAILED + 1];
};

hk_err hk_metrics_new(hk_metrics **out)
{
    hk_metrics *m;

    if (out == NULL)
        return HK_ERR_ARG;
    if ((m = calloc(1, sizeof(*m))) == NULL)
        return HK_ERR_NOMEM;
    pthread_mutex_init(&m->mu, NULL);
    *out = m;
    return HK_OK;
}

void hk_metrics_free(hk_metrics *m)
{
    if (m == NULL)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void hk_metrics_op(hk_metrics *m, hk_db_op op, hk_outcome out, double seconds)
{
    int b = 0;

    if (m == NULL || op < 1 || op >= HK_NOPS || out < 0 || out >= HK_NOUT)
        return;
    pthread_mutex_lock(&m->mu);
    m->ops[op][out]++;
    if (seconds >= 0 && out == HK_OUT_OK) {
        while (b < HK_NBUCKETS && seconds > hk_bounds[b])
            b++;
        m->hist[op][b]++;
        m->sum[op] += seconds;
    }
    pthread_mutex_unlock(&m->mu);
}

void hk_metrics_refusal(hk_metrics *m, const char *code)
{
    int i;

    if (m == NULL || code == NULL)
        return;
    pthread_mutex_lock(&m->mu);
    for (i = 0; i < HK_REFUSAL_NCODES; i++)
        if (strcmp(hk_refusals[i], code) == 0)
            m->refused[i]++;
    pthread_mutex_unlock(&m->mu);
}

void hk_metrics_request(hk_metrics *m, hk_db_req_state st)
{
    if (m == NULL || hk_db_req_state_name(st) == NULL)
        return;
    pthread_mutex_lock(&m->mu);
    m->requests[st]++;
    pthread_mutex_unlock(&m->mu);
}

/* A growing text buffer; on failure it is freed and stays NULL. */
typedef struct {
    char *p;
    size_t len, cap;
} hk_buf;

static void hk_put(hk_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void hk_put(hk_buf *b, const char *fmt, ...)
{
    va_list ap;
    char *grown;
    int n;

    if (b->p == NULL)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            break;
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        if ((grown = realloc(b->p, 2 * b->cap + (size_t)n)) == NULL)
            break;
        b->p = grown;
        b->cap = 2 * b->cap + (size_t)n;
    }
    free(b->p);
    b->p = NULL;
}

static void hk_render_ops(hk_buf *b, const hk_metrics *m)
{
    int op, o, i;
    unsigned long long cum;

    hk_put(b, "# HELP halfkey_operations_total Protocol sessions by "
              "operation and outcome.\n# TYPE halfkey_operations_total "
              "counter\n");
    for (op = 1; op < HK_NOPS; op++)
        for (o = 0; o < HK_NOUT; o++)
            hk_put(b,
                   "halfkey_operations_total{op=\"%s\",outcome=\"%s\"} "
                   "%llu\n",
                   hk_db_op_name((hk_db_op)op), hk_outnames[o], m->ops[op][o]);
    hk_put(b, "# HELP halfkey_operation_seconds Duration of successful "
              "sessions.\n# TYPE halfkey_operation_seconds histogram\n");
    for (op = 1; op < HK_NOPS; op++) {
        const char *name = hk_db_op_name((hk_db_op)op);

        for (cum = 0, i = 0; i <= HK_NBUCKETS; i++) {
            cum += m->hist[op][i];
            if (i < HK_NBUCKETS)
                hk_put(b,
                       "halfkey_operation_seconds_bucket{op=\"%s\","
                       "le=\"%g\"} %llu\n",
                       name, hk_bounds[i], cum);
            else
                hk_put(b,
                       "halfkey_operation_seconds_bucket{op=\"%s\","
                       "le=\"+Inf\"} %llu\n",
                       name, cum);
        }
        hk_put(b, "halfkey_operation_seconds_sum{op=\"%s\"} %.6f\n", name,
               m->sum[op]);
        hk_put(b, "halfkey_operation_seconds_count{op=\"%s\"} %llu\n", name,
               cum);
    }
}

/* The connection figures: a refused connection never reaches HTTP, so
 * this is where an operator sees the caps at work. */
static void hk_render_conns(hk_buf *b, const hk_metrics_gauges *g)
{
    hk_put(b,
           "# HELP halfkey_connections Open TCP connections.\n# TYPE "
           "halfkey_connections gauge\nhalfkey_connections %d\n"
           "# HELP halfkey_connections_max The caps: max_connections and "
           "max_connections_per_peer.\n# TYPE halfkey_connections_max "
           "gauge\nhalfkey_connections_max{scope=\"total\"} %d\n"
           "halfkey_connections_max{scope=\"peer\"} %d\n",
           g->conns, g->max_conns, g->max_per_peer);
    hk_put(b,
           "# HELP halfkey_connections_refused_total Connections closed at "
           "accept by a cap.\n# TYPE halfkey_connections_refused_total "
           "counter\nhalfkey_connections_refused_total{cap=\"total\"} "
           "%lu\nhalfkey_connections_refused_total{cap=\"peer\"} %lu\n",
           g->refused_cap, g->refused_peer);
    if (g->backup_none < 0)
        return;
    /* issue 18: keys that cannot be restored from a current backup */
    hk_put(b,
           "# HELP halfkey_keys_backup Keys by backup state: none (no "
           "backup), stale (older than the active share), waiting (a "
           "refreshed share waits for its backup).\n# TYPE "
           "halfkey_keys_backup gauge\nhalfkey_keys_backup{state=\"none\"} "
           "%lld\nhalfkey_keys_backup{state=\"stale\"} %lld\n"
           "halfkey_keys_backup{state=\"waiting\"} %lld\n",
           (long long)g->backup_none, (long long)g->backup_stale,
           (long long)g->backup_waiting);
}

char *hk_metrics_render(hk_metrics *m, const hk_metrics_gauges *g,
                        const char *node)
{
    hk_buf b = {malloc(4096), 0, 4096};
    int i;

    if (m == NULL || g == NULL || b.p == NULL) {
        free(b.p);
        return NULL;
    }
    pthread_mutex_lock(&m->mu);
    hk_put(&b,
           "# HELP halfkey_info This node.\n# TYPE halfkey_info gauge\n"
           "halfkey_info{node=\"%s\"} 1\n",
           node);
    hk_put(&b,
           "# HELP halfkey_sessions_active Protocol sessions running "
           "on this node.\n# TYPE halfkey_sessions_active gauge\n"
           "halfkey_sessions_active %d\n",
           g->sessions);
    hk_put(&b,
           "# HELP halfkey_draining 1 while shutting down.\n# TYPE "
           "halfkey_draining gauge\nhalfkey_draining %d\n",
           g->draining);
    hk_render_conns(&b, g);
    hk_render_ops(&b, m);
    hk_put(&b, "# HELP halfkey_policy_refusals_total Sessions refused by "
               "policy, by reason.\n# TYPE halfkey_policy_refusals_total "
               "counter\n");
    for (i = 0; i < HK_REFUSAL_NCODES; i++)
        hk_put(&b, "halfkey_policy_refusals_total{reason=\"%s\"} %llu\n",
               hk_refusals[i], m->refused[i]);
    hk_put(&b, "# HELP halfkey_requests_total Signing requests by the state "
               "they entered on this node.\n# TYPE halfkey_requests_total "
               "counter\n");
    for (i = HK_REQ_PENDING; i <= HK_REQ_FAILED; i++)
        hk_put(&b, "halfkey_requests_total{state=\"%s\"} %llu\n",
               hk_db_req_state_name((hk_db_req_state)i), m->requests[i]);
    pthread_mutex_unlock(&m->mu);
    return b.p;
}
