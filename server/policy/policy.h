/* halfkeyd's signing policies: the seed's mitigations against a
 * compromised front end that holds valid tokens.
 *
 * Owns the admission of a new session: a per-subject token bucket shared
 * by every node on the database (rate_per_minute, rate_burst), the
 * per-key maximum of signs per hour and per day (the key's own limits, or
 * the server's defaults max_signs_hour / max_signs_day), the allowed
 * curves of new keys, disabled keys, and the subjects whose keygens need
 * a device attestation (require_attestation; server/attest/attest.h). Each
 * decision is written to the audit log (a granted sign is what the per-key
 * limits count) before the session exists, so a refused or unaudited session
 * never runs.
 *
 * Digest hook: a deployment that wants a per-key allow-list of digests or
 * a second factor sets svc->digest_hook (server/service_impl.h) to a
 * function of type hk_digest_hook; it sees every sign's digest when the
 * client sends it (sign.1), before the server's share is used, and a
 * refusal ends the session with HK_ERR_FORBIDDEN, its reason audited. */
#ifndef HK_SERVER_POLICY_H
#define HK_SERVER_POLICY_H

#include "server/config.h"
#include "server/store/db.h"

/* A refusal a client can show. */
typedef struct {
    int http;         /* 429 or 403 */
    const char *code; /* machine-readable reason (also the metrics label) */
    char message[160];
    int retry_after; /* seconds, for 429 */
} hk_refusal;

/* The reason codes, in a fixed order (metrics). */
#define HK_REFUSAL_CODES                                                       \
    "rate_limited", "key_hour_limit", "key_day_limit", "curve_not_allowed",    \
        "key_disabled", "digest_refused", "draining", "kind_not_allowed",      \
        "network_not_allowed", "amount_over_limit", "daily_limit",             \
        "destination_not_allowed", "fee_over_limit", "needs_approvals",        \
        "bad_transaction", "attestation_required", "attestation_refused"
#define HK_REFUSAL_NCODES 17

/* Admission of a session of op for sub: key is the (owned) key of a sign
 * or refresh, NULL for a keygen of `curve`; attested: the keygen comes
 * with a device attestation (checked before its key is stored);
 * attest_needed: the policy file requires one for sub (rules.h), besides
 * require_attestation in cfg. On HK_OK the
 * decision "granted" is audited with the session id sid; on HK_ERR_RATE or
 * HK_ERR_FORBIDDEN *why says why and "refused" is audited. Other codes:
 * storage failures (nothing granted). The caller holds the database. */
HK_WUR hk_err hk_policy_admit(hk_db *db, const hk_srv_config *cfg,
                              const char *sub, hk_db_op op,
                              const hk_db_key *key, hk_curve_id curve,
                              int attested, int attest_needed,
                              const unsigned char *sid, hk_refusal *why);

/* 1 if cfg allows new keys on curve. */
int hk_policy_curve_allowed(const hk_srv_config *cfg, hk_curve_id curve);

/* A deployment's check of a digest: HK_OK to sign, HK_ERR_FORBIDDEN with
 * a reason (reason[cap], a line of text) to refuse. */
typedef hk_err (*hk_digest_hook)(void *ctx, const char *sub,
                                 const unsigned char kid[HK_ID_LEN],
                                 const unsigned char *digest, size_t len,
                                 char *reason, size_t cap);

#endif
