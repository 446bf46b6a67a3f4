/* Session admission: rate limits, per-key sign limits, curves (policy.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "server/policy/audit.h"
#include "server/policy/policy.h"

#define HK_HOUR 3600
#define HK_DAY 86400

int hk_policy_curve_allowed(const hk_srv_config *cfg, hk_curve_id curve)
{
    const char *name = hk_curve_name(curve), *p = cfg->curves;
    size_t n;

    if (name == NULL)
        return 0;
    n = strlen(name);
    while ((p = strstr(p, name)) != NULL) {
        if ((p == cfg->curves || p[-1] == ',') && (p[n] == ',' || !p[n]))
            return 1;
        p += n;
    }
    return 0;
}

static hk_err hk_refuse(hk_refusal *why, int http, const char *code, int retry,
                        const char *msg)
{
    why->http = http;
    why->code = code;
    why->retry_after = retry;
    snprintf(why->message, sizeof(why->message), "%s", msg);
    return http == 429 ? HK_ERR_RATE : HK_ERR_FORBIDDEN;
}

/* The per-subject token bucket. */
static hk_err hk_policy_rate(hk_db *db, const hk_srv_config *cfg,
                             const char *sub, hk_refusal *why)
{
    struct timespec ts;
    double retry = 0;
    char msg[128];
    int ok = 0;
    hk_err e;

    if (cfg->rate_per_minute == 0)
        return HK_OK;
    clock_gettime(CLOCK_REALTIME, &ts);
    e = hk_db_bucket_take(db, sub, cfg->rate_per_minute / 60.0,
                          (double)cfg->rate_burst,
                          (double)ts.tv_sec + ts.tv_nsec / 1e9, &ok, &retry);
    if (e != HK_OK || ok)
        return e;
    snprintf(msg, sizeof(msg),
             "too many requests for this subject (%d per minute): retry in "
             "%.0f s",
             cfg->rate_per_minute, ceil(retry));
    return hk_refuse(why, 429, "rate_limited", (int)ceil(retry), msg);
}

/* One window of the per-key sign limit: limit 0 means none. */
static hk_err hk_policy_window(hk_db *db, const unsigned char *kid,
                               unsigned limit, int64_t span, const char *code,
                               hk_refusal *why)
{
    int64_t n = 0;
    char msg[128];
    hk_err e;

    if (limit == 0)
        return HK_OK;
    e = hk_db_audit_count(db, kid, "sign", "granted",
                          (int64_t)time(NULL) - span + 1, &n);
    if (e != HK_OK || n < (int64_t)limit)
        return e;
    snprintf(msg, sizeof(msg),
             "this key's limit of %u signatures per %s "
             "is reached",
             limit, span == HK_HOUR ? "hour" : "day");
    return hk_refuse(why, 429, code, span == HK_HOUR ? 60 : 3600, msg);
}

static hk_err hk_policy_decide(hk_db *db, const hk_srv_config *cfg,
                               const char *sub, hk_db_op op,
                               const hk_db_key *key, hk_curve_id curve,
                               int attested, int attest_needed, hk_refusal *why)
{
    hk_err e;

    if (op == HK_DB_OP_KEYGEN && !hk_policy_curve_allowed(cfg, curve))
        return hk_refuse(why, 403, "curve_not_allowed", 0,
                         "this server does not make keys on that curve");
    if (op == HK_DB_OP_KEYGEN && !attested &&
        (attest_needed || hk_srv_config_attest_required(cfg, sub)))
        return hk_refuse(why, 403, "attestation_required", 0,
                         "this subject's keys need a device attestation: "
                         "keygen --attest on a TPM-backed token");
    if (key != NULL && key->disabled)
        return hk_refuse(why, 403, "key_disabled", 0,
                         "this key is disabled by the operator");
    if ((e = hk_policy_rate(db, cfg, sub, why)) != HK_OK || op != HK_DB_OP_SIGN)
        return e;
    if ((e = hk_policy_window(db, key->kid,
                              key->max_hour ? key->max_hour
                                            : (unsigned)cfg->max_signs_hour,
                              HK_HOUR, "key_hour_limit", why)) != HK_OK)
        return e;
    return hk_policy_window(db, key->kid,
                            key->max_day ? key->max_day
                                         : (unsigned)cfg->max_signs_day,
                            HK_DAY, "key_day_limit", why);
}

hk_err hk_policy_admit(hk_db *db, const hk_srv_config *cfg, const char *sub,
                       hk_db_op op, const hk_db_key *key, hk_curve_id curve,
                       int attested, int attest_needed,
                       const unsigned char *sid, hk_refusal *why)
{
    hk_audit_ev ev;
    hk_err e, a;

    if (db == NULL || cfg == NULL || sub == NULL || why == NULL ||
        (op != HK_DB_OP_KEYGEN && key == NULL))
        return HK_ERR_ARG;
    memset(why, 0, sizeof(*why));
    e = hk_policy_decide(db, cfg, sub, op, key, curve, attested, attest_needed,
                         why);
    if (e != HK_OK && e != HK_ERR_RATE && e != HK_ERR_FORBIDDEN)
        return e;
    memset(&ev, 0, sizeof(ev));
    ev.event = hk_db_op_name(op);
    ev.outcome = e == HK_OK ? "granted" : "refused";
    ev.sub = sub;
    ev.kid = key != NULL ? key->kid : NULL;
    ev.sid = e == HK_OK ? sid : NULL;
    ev.detail = e == HK_OK
                    ? (op == HK_DB_OP_KEYGEN ? hk_curve_name(curve) : NULL)
                    : why->code;
    /* unaudited means not granted */
    if ((a = hk_audit_write(db, cfg->node, &ev, (int64_t)time(NULL))) != HK_OK)
        return a;
    return e;
}
