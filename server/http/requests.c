/* halfkeyd's signing requests (issue 19, DESIGN.md section 3): a
 * requester's request waits in the database (any node serves it) until
 * the key's owner signs the digests the server computed from it, or
 * rejects it.
 *
 * Owns the /requests endpoints, the digests of a request (a raw digest, a
 * PSBT's P2WPKH inputs of the key, an EIP-1559 transaction), the binding of
 * a sign session to one of them (POST /sign and channel "open" with
 * request_id and index), the sign.1 check that the client signs exactly
 * that digest, the recording of each signature, the result once all are
 * there (the PSBT with partial signatures, the signed Ethereum
 * transaction) and expiry. Every transition is audited (event "request")
 * and counted (halfkey_requests_total). */
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "common/hex.h"
#include "common/libctx.h"
#include "server/http/callbacks.h"
#include "server/http/requests.h"
#include "server/log.h"
#include "txparse/render.h"
#include "txparse/request.h"

#define HK_REQ_PREFIX "req_"
#define HK_REQ_ID_STR (4 + 2 * HK_ID_LEN + 1)
#define HK_REQ_TTL_DEFAULT 3600
#define HK_REQ_WAIT_MAX 60       /* seconds a list may wait for a new request */
#define HK_REQ_WAITERS_MAX 256   /* long polls waiting at once */
#define HK_REQ_WAITERS_PER_SUB 4 /* ... of one subject */

/* --- ids and views -------------------------------------------------------- */

int hk_req_parse_id(const char *s, unsigned char rid[HK_ID_LEN])
{
    return s != NULL && strncmp(s, HK_REQ_PREFIX, 4) == 0 &&
           hk_kid_decode(s + 4, rid);
}

static void hk_req_id_str(const unsigned char rid[HK_ID_LEN],
                          char out[HK_REQ_ID_STR])
{
    memcpy(out, HK_REQ_PREFIX, 4);
    hk_hex(rid, HK_ID_LEN, out + 4);
}

static json_t *hk_jb64(const unsigned char *b, size_t n)
{
    char *s = hk_b64_encode(b, n);
    json_t *j = s != NULL ? json_string(s) : NULL;

    OPENSSL_free(s);
    return j;
}

/* The payload as the requester sent it (base64 PSBT, hex otherwise) and
 * its parsed summary (txparse/render.h) when it is a transaction. */
static void hk_req_payload_view(const hk_db_request *r, json_t *o)
{
    hk_psbt *ps = NULL;
    hk_eth_tx *tx = NULL;
    hk_btc_net net;

    if (r->kind == HK_REQ_BTC_PSBT) {
        json_object_set_new(o, "payload", hk_jb64(r->payload, r->payload_len));
        if (hk_btc_net_parse(r->network, &net) == HK_OK &&
            hk_psbt_parse(r->payload, r->payload_len, net, &ps, NULL, 0) ==
                HK_OK)
            json_object_set_new(o, "summary", hk_psbt_json(ps));
    } else {
        json_object_set_new(o, "payload",
                            hk_tx_json_hex(r->payload, r->payload_len));
        if (r->kind == HK_REQ_ETH_TX &&
            hk_eth_tx_parse(r->payload, r->payload_len, &tx, NULL, 0) == HK_OK)
            json_object_set_new(o, "summary", hk_eth_tx_json(tx));
    }
    hk_psbt_free(ps);
    hk_eth_tx_free(tx);
}

/* The result of a signed request: the PSBT (base64), the signed raw
 * Ethereum transaction (0x hex) or the signature (hex r || s). */
static json_t *hk_req_result_view(const hk_db_request *r)
{
    char *hex;
    json_t *j;

    if (r->kind == HK_REQ_BTC_PSBT)
        return hk_jb64(r->result, r->result_len);
    if (r->kind == HK_REQ_DIGEST)
        return hk_tx_json_hex(r->result, r->result_len);
    if ((hex = OPENSSL_malloc(2 * r->result_len + 3)) == NULL)
        return NULL;
    memcpy(hex, "0x", 2);
    hk_hex(r->result, r->result_len, hex + 2);
    j = json_string(hex);
    OPENSSL_free(hex);
    return j;
}

json_t *hk_req_view(const hk_db_request *r)
{
    char id[HK_REQ_ID_STR], kh[2 * HK_ID_LEN + 1];
    json_t *o = json_object(), *digs = json_array(), *sigs = json_array();
    size_t i;

    hk_req_id_str(r->rid, id);
    hk_hex(r->kid, HK_ID_LEN, kh);
    for (i = 0; i < r->ndigests; i++) {
        json_array_append_new(
            digs, hk_tx_json_hex(r->digests + i * r->dlen, r->dlen));
        json_array_append_new(sigs, r->have != NULL && r->have[i]
                                        ? hk_tx_json_hex(r->sigs + 64 * i, 64)
                                        : json_null());
    }
    json_object_set_new(o, "request_id", json_string(id));
    json_object_set_new(o, "key_id", json_string(kh));
    json_object_set_new(o, "owner", json_string(r->owner));
    json_object_set_new(o, "requester", json_string(r->requester));
    json_object_set_new(o, "kind", json_string(hk_db_req_kind_name(r->kind)));
    if (r->network[0] != 0)
        json_object_set_new(o, "network", json_string(r->network));
    json_object_set_new(o, "state",
                        json_string(hk_db_req_state_name(r->state)));
    json_object_set_new(o, "reason", json_string(r->reason));
    json_object_set_new(o, "created", json_integer(r->created));
    json_object_set_new(o, "expires", json_integer(r->expires));
    json_object_set_new(o, "updated", json_integer(r->updated));
    json_object_set_new(o, "metadata", json_loads(r->metadata, 0, NULL));
    if (r->callback_url[0] != 0)
        json_object_set_new(o, "callback_url", json_string(r->callback_url));
    json_object_set_new(o, "digests", digs);
    json_object_set_new(o, "signatures", sigs);
    hk_req_payload_view(r, o);
    if (r->result != NULL)
        json_object_set_new(o, "result", hk_req_result_view(r));
    return o;
}

/* A failed lookup: 404 with msg for HK_ERR_NOT_FOUND (absent, or not
 * this caller's to see: the same answer), 500 otherwise. */
static void hk_req_respond_lookup(hk_http_resp *resp, hk_err e, const char *msg)
{
    if (e == HK_ERR_NOT_FOUND)
        hk_respond_err(resp, 404, "not_found", msg);
    else
        hk_respond_err(resp, 500, "internal", hk_strerror(e));
}

/* --- digests -------------------------------------------------------------- */

/* Hex of at most max bytes (an optional "0x" first) into a new buffer. */
static hk_err hk_req_unhex(const char *text, size_t max, unsigned char **out,
                           size_t *len)
{
    size_t n;

    if (strncmp(text, "0x", 2) == 0)
        text += 2;
    n = strlen(text);
    if (n == 0 || n % 2 != 0)
        return HK_ERR_DECODE;
    if (n / 2 > max)
        return HK_ERR_TOO_BIG;
    if ((*out = OPENSSL_malloc(n / 2)) == NULL)
        return HK_ERR_NOMEM;
    *len = n / 2;
    return hk_unhex(text, n, *out, n / 2) ? HK_OK : HK_ERR_DECODE;
}

/* The txparse kind of a stored kind (the same values, request.h). */
static hk_tx_kind hk_req_tx_kind(hk_db_req_kind k)
{
    _Static_assert((int)HK_REQ_DIGEST == (int)HK_TX_DIGEST &&
                       (int)HK_REQ_BTC_PSBT == (int)HK_TX_BTC_PSBT &&
                       (int)HK_REQ_ETH_TX == (int)HK_TX_ETH,
                   "request kinds are txparse's");
    return (hk_tx_kind)k;
}

/* r->payload and the digests from the request's text for key; why says
 * what is wrong with a refused one. */
static hk_err hk_req_digests(const hk_db_key *key, const char *text,
                             const char *netname, hk_db_request *r, char *why,
                             size_t cap)
{
    hk_btc_net net = HK_BTC_MAINNET;
    hk_err e;

    if (r->kind != HK_REQ_DIGEST && key->curve != HK_CURVE_SECP256K1) {
        snprintf(why, cap, "%s requests need a secp256k1 key",
                 hk_db_req_kind_name(r->kind));
        return HK_ERR_CURVE;
    }
    if (r->kind == HK_REQ_BTC_PSBT) {
        if (hk_btc_net_parse(netname != NULL ? netname : "mainnet", &net) !=
            HK_OK) {
            snprintf(why, cap, "network must be mainnet, testnet or regtest");
            return HK_ERR_DECODE;
        }
        snprintf(r->network, sizeof(r->network), "%s", hk_btc_net_name(net));
        e = hk_b64_decode(text, strlen(text), HK_DB_REQ_PAYLOAD_MAX,
                          &r->payload, &r->payload_len)
                ? HK_OK
                : HK_ERR_DECODE;
    } else {
        e = hk_req_unhex(text, HK_DB_REQ_PAYLOAD_MAX, &r->payload,
                         &r->payload_len);
    }
    if (e != HK_OK) {
        snprintf(why, cap, "payload must be %s",
                 r->kind == HK_REQ_BTC_PSBT ? "base64" : "hex");
        return e;
    }
    e = hk_tx_request_digests(hk_req_tx_kind(r->kind), r->payload,
                              r->payload_len, net, key->pub.b, &r->digests,
                              &r->ndigests, &r->dlen, why, cap);
    if (e != HK_OK && r->kind != HK_REQ_DIGEST) { /* say which parser */
        char inner[160];

        snprintf(inner, sizeof(inner), "%s", why);
        snprintf(why, cap, "%s: %s",
                 r->kind == HK_REQ_BTC_PSBT ? "PSBT" : "transaction", inner);
    }
    return e;
}

/* --- audit ---------------------------------------------------------------- */

/* Audits a transition of r (event "request", outcome the state entered
 * or "created"), counts it and logs it. Call with svc->dbmu held. */
static void hk_req_audit_as(hk_service *svc, const hk_db_request *r,
                            const char *sub, const char *outcome,
                            hk_db_req_state counted, const char *what)
{
    char id[HK_REQ_ID_STR], detail[HK_AUDIT_DETAIL_MAX + 1];
    hk_audit_ev ev;

    hk_req_id_str(r->rid, id);
    snprintf(detail, sizeof(detail),
             "%s %s (%s, %zu digest%s, requester %.64s)%s%.80s", id, outcome,
             hk_db_req_kind_name(r->kind), r->ndigests,
             r->ndigests == 1 ? "" : "s", r->requester, what[0] ? ": " : "",
             what);
    memset(&ev, 0, sizeof(ev));
    ev.event = "request";
    ev.outcome = outcome;
    ev.sub = sub;
    ev.kid = r->kid;
    ev.detail = detail;
    if (hk_audit_write(svc->db, svc->cfg.node, &ev, hk_now()) != HK_OK)
        hk_log("error", "event=audit_write_failed what=request");
    if (counted != 0)
        hk_metrics_request(svc->metrics, counted);
    hk_log("info", "event=request_%s request=%s sub=%s requester=%s", outcome,
           id, sub, r->requester);
}

static void hk_req_audit(hk_service *svc, const hk_db_request *r,
                         const char *sub, hk_db_req_state st, const char *what)
{
    hk_req_audit_as(svc, r, sub,
                    st == HK_REQ_PENDING ? "created" : hk_db_req_state_name(st),
                    st, what);
}

/* --- rules (server/policy/rules.h) ---------------------------------------- */

/* x's amount (hk_rules_amount) added to sum; HK_ERR_TOO_BIG past 2^256. */
static hk_err hk_req_add_amount(const hk_db_request *x,
                                const unsigned char pub[33],
                                unsigned char sum[32])
{
    unsigned char amt[32];
    hk_rule_req q = {hk_req_tx_kind(x->kind),
                     x->payload,
                     x->payload_len,
                     x->network,
                     x->kid,
                     x->owner,
                     pub};
    hk_err e = hk_rules_amount(&q, amt);

    if (e == HK_OK && !hk_u256_add(sum, amt, sum))
        e = HK_ERR_TOO_BIG;
    return e;
}

/* Adds to sum the amounts of the key's pending requests of r's kind that
 * are committed already (hk_db_request_inflight: one of their digests is
 * signed, or a sign under one is running): a request counts against the
 * daily limit from its first sign's admission, so two requests signed at
 * the same moment cannot together pass a limit each passes alone. Caller
 * holds dbmu. */
static hk_err hk_req_inflight_sum(hk_service *svc, const hk_db_request *r,
                                  const unsigned char pub[33], int64_t now,
                                  unsigned char sum[32])
{
    unsigned char rids[HK_DB_REQ_LIST_MAX][HK_ID_LEN], after[HK_ID_LEN];
    hk_db_request o;
    size_t n = 0, i;
    int more = 0;
    hk_err e;

    do { /* every page, in rid order */
        if ((e = hk_db_request_inflight(
                 svc->db, r->owner, r->kid, r->rid, now - svc->cfg.session_idle,
                 more ? after : NULL, rids, HK_DB_REQ_LIST_MAX, &n)) != HK_OK)
            return e;
        for (i = 0; i < n && e == HK_OK; i++) {
            if ((e = hk_db_request_get(svc->db, rids[i], &o)) ==
                HK_ERR_NOT_FOUND) {
                e = HK_OK; /* deleted meanwhile */
                continue;
            }
            if (e == HK_OK && o.kind == r->kind)
                e = hk_req_add_amount(&o, pub, sum);
            hk_db_request_clear(&o);
        }
        more = n == HK_DB_REQ_LIST_MAX;
        if (more)
            memcpy(after, rids[n - 1], HK_ID_LEN);
    } while (e == HK_OK && more);
    return e;
}

/* The amount of the key's requests of r's kind signed in the last 24
 * hours (their final state's time), and of those being signed now
 * (hk_req_inflight_sum), into sum (big-endian 256 bits): the requests
 * created since request_ttl_max + 24 hours ago are all that can have been
 * signed then. Caller holds dbmu. */
static hk_err hk_req_signed_24h(hk_service *svc, const hk_db_request *r,
                                const unsigned char pub[33], int64_t now,
                                unsigned char sum[32])
{
    unsigned char rid[HK_ID_LEN];
    hk_db_request *list = NULL;
    int64_t after = now - 86400 - svc->cfg.request_ttl_max;
    size_t n = 0, i;
    int has_rid = 0;
    hk_err e;

    memset(sum, 0, 32);
    if (r->kind == HK_REQ_DIGEST)
        return HK_OK;
    do { /* every page of the cursor */
        if ((e = hk_db_request_list(svc->db, r->owner, HK_REQ_SIGNED, after,
                                    has_rid ? rid : NULL, HK_DB_REQ_LIST_MAX,
                                    &list, &n)) != HK_OK)
            return e;
        for (i = 0; i < n && e == HK_OK; i++)
            if (list[i].kind == r->kind && list[i].updated > now - 86400 &&
                memcmp(list[i].kid, r->kid, HK_ID_LEN) == 0)
                e = hk_req_add_amount(&list[i], pub, sum);
        if (n > 0) {
            after = list[n - 1].created;
            memcpy(rid, list[n - 1].rid, HK_ID_LEN);
            has_rid = 1;
        }
        hk_db_request_list_free(list, n);
    } while (e == HK_OK && n == HK_DB_REQ_LIST_MAX);
    return e == HK_OK ? hk_req_inflight_sum(svc, r, pub, now, sum) : e;
}

/* The policy file's rules on request r of key `pub` (with what the key
 * signed in the last 24 hours); at sign time (approvals) also the quorum
 * of approvers. Caller holds dbmu. */
static hk_err hk_req_rules(hk_service *svc, const hk_db_request *r,
                           const unsigned char pub[33], int sign_time,
                           hk_rule_refusal *why)
{
    char(*subs)[HK_SUB_MAX + 1] = NULL;
    unsigned char day[32];
    hk_rule_req q = {hk_req_tx_kind(r->kind),
                     r->payload,
                     r->payload_len,
                     r->network,
                     r->kid,
                     r->owner,
                     pub};
    size_t n = 0, i;
    int need, have = 0;
    hk_err e;

    if ((e = hk_req_signed_24h(svc, r, pub, hk_now(), day)) != HK_OK)
        return e;
    pthread_mutex_lock(&svc->rulesmu);
    e = hk_rules_check(svc->rules, &q, day, why);
    need = svc->rules != NULL ? hk_rules_approvals(svc->rules, r->kid, r->owner)
                              : 0;
    if (e == HK_OK && sign_time && need > 0 &&
        (subs = calloc(HK_RULES_LIST_MAX, sizeof(*subs))) != NULL &&
        hk_db_request_approvers(svc->db, r->rid, subs, HK_RULES_LIST_MAX, &n) ==
            HK_OK)
        for (i = 0; i < n; i++) /* approvers still on the list count */
            have += strcmp(subs[i], r->requester) != 0 &&
                    hk_rules_is_approver(svc->rules, r->kid, r->owner, subs[i]);
    pthread_mutex_unlock(&svc->rulesmu);
    free(subs);
    if (e == HK_OK && sign_time && have < need) {
        why->code = "needs_approvals";
        snprintf(why->message, sizeof(why->message),
                 "the request has %d of the %d approvals its key needs", have,
                 need);
        e = HK_ERR_FORBIDDEN;
    }
    return e;
}

/* Audits and counts a request the rules refused (nothing is stored).
 * Call with svc->dbmu held. */
static void hk_req_refused_audit(hk_service *svc, const hk_db_request *r,
                                 const char *sub, const hk_rule_refusal *ref)
{
    char detail[HK_AUDIT_DETAIL_MAX + 1];
    hk_audit_ev ev;

    snprintf(detail, sizeof(detail), "%s request by %.64s refused: %s: %.100s",
             hk_db_req_kind_name(r->kind), sub, ref->code, ref->message);
    memset(&ev, 0, sizeof(ev));
    ev.event = "request";
    ev.outcome = "refused";
    ev.sub = sub;
    ev.kid = r->kid;
    ev.detail = detail;
    if (hk_audit_write(svc->db, svc->cfg.node, &ev, hk_now()) != HK_OK)
        hk_log("error", "event=audit_write_failed what=request");
    hk_metrics_refusal(svc->metrics, ref->code);
    hk_log("warn", "event=request_refused sub=%s code=%s", sub, ref->code);
}

/* --- POST /requests ------------------------------------------------------- */

typedef struct {
    const char *key_id, *kind, *payload, *network, *callback_url;
    json_t *expires_in, *metadata;
} hk_req_body;

/* Fields of a POST /requests body; why says what is wrong. */
static hk_err hk_req_body_parse(const hk_service *svc, json_t *o,
                                hk_req_body *b, hk_db_request *r, char *why,
                                size_t cap)
{
    json_int_t ttl = HK_REQ_TTL_DEFAULT;
    char *meta;

    b->key_id = json_string_value(json_object_get(o, "key_id"));
    b->kind = json_string_value(json_object_get(o, "kind"));
    b->payload = json_string_value(json_object_get(o, "payload"));
    b->network = json_string_value(json_object_get(o, "network"));
    b->callback_url = json_string_value(json_object_get(o, "callback_url"));
    b->expires_in = json_object_get(o, "expires_in");
    b->metadata = json_object_get(o, "metadata");
    if (b->key_id == NULL || b->kind == NULL || b->payload == NULL ||
        !hk_kid_decode(b->key_id, r->kid) ||
        hk_db_req_kind_from_name(b->kind, &r->kind) != HK_OK) {
        snprintf(why, cap,
                 "body must be {\"key_id\", \"kind\": \"digest\" | "
                 "\"btc-psbt\" | \"eth-tx\", \"payload\", "
                 "[\"network\", \"expires_in\", \"metadata\", "
                 "\"callback_url\"]}");
        return HK_ERR_DECODE;
    }
    if (b->expires_in != NULL)
        ttl = json_is_integer(b->expires_in) ? json_integer_value(b->expires_in)
                                             : -1;
    if (ttl < 1 || ttl > svc->cfg.request_ttl_max) {
        snprintf(why, cap, "expires_in must be 1 to %d seconds",
                 svc->cfg.request_ttl_max);
        return HK_ERR_DECODE;
    }
    if ((b->network != NULL && r->kind != HK_REQ_BTC_PSBT) ||
        (b->metadata != NULL && !json_is_object(b->metadata)) ||
        (json_object_get(o, "network") != NULL && b->network == NULL) ||
        (json_object_get(o, "callback_url") != NULL &&
         b->callback_url == NULL)) {
        snprintf(why, cap,
                 "metadata must be an object; network only for "
                 "btc-psbt; strings where strings are due");
        return HK_ERR_DECODE;
    }
    if (b->callback_url != NULL &&
        (strlen(b->callback_url) > HK_DB_REQ_URL_MAX ||
         !hk_db_text_ok(b->callback_url, HK_DB_REQ_URL_MAX) ||
         !hk_cb_url_ok(svc, b->callback_url, why, cap))) {
        if (why[0] == 0)
            snprintf(why, cap, "callback_url: at most 512 bytes of text");
        return HK_ERR_DECODE;
    }
    if (b->metadata != NULL)
        meta = json_dumps(b->metadata, JSON_COMPACT | JSON_SORT_KEYS);
    else
        meta = strdup("{}");
    if (meta == NULL || strlen(meta) > HK_DB_REQ_META_MAX ||
        !hk_db_text_ok(meta, HK_DB_REQ_META_MAX)) {
        free(meta);
        snprintf(why, cap,
                 "metadata must be a JSON object of at most 4096 "
                 "bytes");
        return HK_ERR_TOO_BIG;
    }
    snprintf(r->metadata, sizeof(r->metadata), "%s", meta);
    free(meta);
    if (b->callback_url != NULL)
        snprintf(r->callback_url, sizeof(r->callback_url), "%s",
                 b->callback_url);
    r->created = r->updated = hk_now();
    r->expires = r->created + ttl;
    r->state = HK_REQ_PENDING;
    return HK_OK;
}

/* The key the requester may ask for (404 when absent or not granted,
 * so a requester learns nothing of other keys). */
static hk_err hk_req_key(hk_service *svc, const char *sub,
                         const unsigned char *kid, hk_db_key *key)
{
    char kh[2 * HK_ID_LEN + 1];
    hk_err e;

    hk_hex(kid, HK_ID_LEN, kh);
    pthread_mutex_lock(&svc->dbmu);
    e = hk_db_key_get(svc->db, kid, key);
    pthread_mutex_unlock(&svc->dbmu);
    if (e == HK_OK &&
        !hk_srv_config_requester_may(&svc->cfg, sub, key->owner, kh))
        e = HK_ERR_NOT_FOUND;
    if (e == HK_OK && key->disabled)
        e = HK_ERR_FORBIDDEN;
    return e;
}

static void hk_req_create(hk_service *svc, const hk_http_req *req,
                          const char *sub, hk_http_resp *resp)
{
    static const char *const allowed[] = {
        "key_id",     "kind",     "payload",      "network",
        "expires_in", "metadata", "callback_url", NULL};
    json_t *o = hk_body_decode(req->body, req->body_len, allowed);
    hk_db_request r;
    hk_rule_refusal ref;
    hk_req_body b;
    hk_db_key key;
    char why[200] = "";
    hk_err e;

    memset(&r, 0, sizeof(r));
    snprintf(r.requester, sizeof(r.requester), "%s", sub);
    if (o == NULL) {
        e = HK_ERR_DECODE;
        snprintf(why, sizeof(why),
                 "the body must be one JSON object with "
                 "known fields only");
    } else
        e = hk_req_body_parse(svc, o, &b, &r, why, sizeof(why));
    if (e == HK_OK && (e = hk_req_key(svc, sub, r.kid, &key)) != HK_OK) {
        json_decref(o);
        hk_db_request_clear(&r);
        if (e == HK_ERR_FORBIDDEN) {
            hk_metrics_refusal(svc->metrics, "key_disabled");
            return hk_respond_err(resp, 403, "key_disabled",
                                  "the key is disabled");
        }
        return hk_req_respond_lookup(resp, e,
                                     "no such key, or this requester may not "
                                     "ask for its signatures");
    }
    if (e == HK_OK) {
        snprintf(r.owner, sizeof(r.owner), "%s", key.owner);
        e = hk_req_digests(&key, b.payload, b.network, &r, why, sizeof(why));
    }
    json_decref(o); /* b's strings point into it */
    if (e == HK_OK && !hk_rand_bytes(r.rid, HK_ID_LEN))
        e = HK_ERR_RAND;
    if (e == HK_OK) {
        pthread_mutex_lock(&svc->dbmu);
        /* the policy file's rules at request time (again at sign time) */
        if ((e = hk_req_rules(svc, &r, key.pub.b, 0, &ref)) == HK_OK &&
            (e = hk_db_request_put(svc->db, &r)) == HK_OK)
            hk_req_audit(svc, &r, sub, HK_REQ_PENDING, "");
        else if (e == HK_ERR_FORBIDDEN)
            hk_req_refused_audit(svc, &r, sub, &ref);
        pthread_mutex_unlock(&svc->dbmu);
    }
    if (e == HK_OK)
        hk_respond(resp, 201, hk_req_view(&r));
    else if (e == HK_ERR_FORBIDDEN)
        hk_respond_err(resp, 403, ref.code, ref.message);
    else if (why[0] != 0)
        hk_respond_err(resp, e == HK_ERR_TOO_BIG ? 413 : 400,
                       e == HK_ERR_TX_UNSUPPORTED || e == HK_ERR_CURVE
                           ? "unsupported_transaction"
                           : "bad_request",
                       why);
    else
        hk_respond_err(resp, 500, "internal", hk_strerror(e));
    hk_db_request_clear(&r);
}

/* --- GET, list, reject ---------------------------------------------------- */

/* 1 if sub is one of the approvers the rules name for r's key (never its
 * owner). */
static int hk_req_approver(hk_service *svc, const hk_db_request *r,
                           const char *sub)
{
    int yes;

    pthread_mutex_lock(&svc->rulesmu);
    /* neither the owner nor the requester approves its own request */
    yes = svc->rules != NULL && strcmp(sub, r->owner) != 0 &&
          strcmp(sub, r->requester) != 0 &&
          hk_rules_is_approver(svc->rules, r->kid, r->owner, sub);
    pthread_mutex_unlock(&svc->rulesmu);
    return yes;
}

/* The request if sub may see it: its requester (request scope), the
 * key's owner (owner scope) or one of its approvers (approve scope);
 * HK_ERR_NOT_FOUND otherwise. */
static hk_err hk_req_visible(hk_service *svc, const unsigned char *rid,
                             const char *sub, unsigned scopes, hk_db_request *r)
{
    hk_err e;

    pthread_mutex_lock(&svc->dbmu);
    e = hk_db_request_get(svc->db, rid, r);
    pthread_mutex_unlock(&svc->dbmu);
    if (e == HK_OK &&
        !((scopes & HK_SCOPE_OWNER) && strcmp(r->owner, sub) == 0) &&
        !((scopes & HK_SCOPE_REQUEST) && strcmp(r->requester, sub) == 0) &&
        !((scopes & HK_SCOPE_APPROVE) && hk_req_approver(svc, r, sub))) {
        hk_db_request_clear(r);
        e = HK_ERR_NOT_FOUND;
    }
    return e;
}

/* A list query's answer into resp; *n its requests (-1 on error). */
static void hk_req_list_answer(hk_service *svc, const hk_req_waiter *q,
                               hk_http_resp *resp, long *n_out)
{
    hk_db_request *list = NULL;
    size_t n = 0, i, j;
    long shown = 0;
    json_t *arr;
    hk_err e;

    pthread_mutex_lock(&svc->dbmu);
    e = hk_db_request_list(svc->db, q->sub, q->state, q->after, NULL,
                           HK_DB_REQ_LIST_MAX, &list, &n);
    pthread_mutex_unlock(&svc->dbmu);
    *n_out = -1;
    if (e != HK_OK)
        return hk_respond_err(resp, 500, "internal", hk_strerror(e));
    arr = json_array();
    for (i = 0; i < n; i++) {
        for (j = 0; j < q->nseen; j++)
            if (memcmp(q->seen[j], list[i].rid, HK_ID_LEN) == 0)
                break;
        if (j < q->nseen)
            continue; /* shown already */
        json_array_append_new(arr, hk_req_view(&list[i]));
        shown++;
    }
    *n_out = shown;
    hk_db_request_list_free(list, n);
    hk_respond(resp, 200, json_pack("{s:o}", "requests", arr));
}

/* seen=ID,ID,... (the caller's requests shown already) into q. */
static int hk_req_seen(const char *query, hk_req_waiter *q)
{
    char val[HK_REQ_SEEN_MAX * 40], id[48];
    const char *p = val, *c;
    size_t n;

    if (!hk_query_get(query, "seen", val, sizeof(val)))
        return 1;
    while (*p != 0) {
        c = strchr(p, ',');
        n = c != NULL ? (size_t)(c - p) : strlen(p);
        if (n >= sizeof(id) || q->nseen == HK_REQ_SEEN_MAX)
            return 0;
        memcpy(id, p, n);
        id[n] = 0;
        if (!hk_req_parse_id(id, q->seen[q->nseen++]))
            return 0;
        p = c != NULL ? c + 1 : p + n;
    }
    return 1;
}

/* Parks a long poll that found nothing: hk_req_poll answers it when a
 * request arrives (on any node) or its wait is over. 0 if it cannot wait
 * (the cap, memory, draining): then it is answered at once. */
static int hk_req_park(hk_service *svc, hk_req_waiter *q, hk_http_resp *resp)
{
    hk_req_waiter *w;
    int mine = 0;

    for (w = svc->waiters; w != NULL; w = w->next)
        mine += strcmp(w->sub, q->sub) == 0;
    /* a subject holds at most a few waits (one watch per device) */
    if (svc->draining || svc->nwaiters >= HK_REQ_WAITERS_MAX ||
        mine >= HK_REQ_WAITERS_PER_SUB || (w = malloc(sizeof(*w))) == NULL)
        return 0;
    *w = *q;
    if ((w->conn = hk_http_defer(resp)) == NULL) {
        free(w);
        return 0;
    }
    w->next = svc->waiters;
    svc->waiters = w;
    svc->nwaiters++;
    return 1;
}

static void hk_req_list(hk_service *svc, const hk_http_req *req,
                        const char *sub, hk_http_resp *resp)
{
    char val[32] = "pending";
    long long after = 0, wait = 0;
    hk_req_waiter q;
    long n = 0;

    memset(&q, 0, sizeof(q));
    (void)hk_query_get(req->query, "state", val, sizeof(val));
    if (hk_db_req_state_from_name(val, &q.state) != HK_OK)
        return hk_respond_err(resp, 400, "bad_request",
                              "state must be pending, signed, rejected, "
                              "expired or failed");
    if (hk_query_get(req->query, "after", val, sizeof(val)) &&
        (sscanf(val, "%lld", &after) != 1 || after < 0))
        return hk_respond_err(resp, 400, "bad_request",
                              "after must be a time in seconds");
    /* since=T: created at T or later (after=T: later than T) */
    if (hk_query_get(req->query, "since", val, sizeof(val))) {
        if (sscanf(val, "%lld", &after) != 1 || after < 1)
            return hk_respond_err(resp, 400, "bad_request",
                                  "since must be a time in seconds");
        after -= 1;
    }
    if (!hk_req_seen(req->query, &q))
        return hk_respond_err(resp, 400, "bad_request",
                              "seen must be up to 10 request ids, "
                              "comma-separated");
    if (hk_query_get(req->query, "wait", val, sizeof(val)) &&
        (sscanf(val, "%lld", &wait) != 1 || wait < 0 || wait > HK_REQ_WAIT_MAX))
        return hk_respond_err(resp, 400, "bad_request",
                              "wait must be 0 to 60 seconds");
    snprintf(q.sub, sizeof(q.sub), "%s", sub);
    q.after = (int64_t)after;
    q.deadline = hk_now() + wait;
    hk_req_list_answer(svc, &q, resp, &n);
    /* a long poll (halfkey requests --watch) with nothing new yet */
    if (n == 0 && wait > 0) {
        free(resp->body);
        resp->body = NULL;
        if (hk_req_park(svc, &q, resp))
            return;
        hk_req_list_answer(svc, &q, resp, &n);
    }
}

void hk_req_poll(hk_service *svc, int64_t now)
{
    hk_req_waiter **pp = &svc->waiters, *w;
    hk_http_resp r;
    long n;

    while ((w = *pp) != NULL) {
        memset(&r, 0, sizeof(r));
        hk_req_list_answer(svc, w, &r, &n);
        if (n == 0 && now < w->deadline && !svc->draining) {
            free(r.body);
            pp = &w->next;
            continue;
        }
        hk_http_answer(w->conn, &r);
        hk_tconn_unref(w->conn);
        *pp = w->next;
        svc->nwaiters--;
        free(w);
    }
}

void hk_req_waiters_free(hk_service *svc)
{
    hk_req_waiter *w;

    while ((w = svc->waiters) != NULL) {
        svc->waiters = w->next;
        hk_tconn_unref(w->conn);
        free(w);
    }
    svc->nwaiters = 0;
}

static void hk_req_reject(hk_service *svc, const hk_http_req *req,
                          const unsigned char *rid, const char *sub,
                          hk_http_resp *resp)
{
    static const char *const allowed[] = {"reason", NULL};
    json_t *o = hk_body_decode(req->body, req->body_len, allowed);
    const char *why = json_string_value(json_object_get(o, "reason"));
    char reason[HK_DB_REQ_REASON_MAX + 1];
    hk_db_request r;
    size_t i;
    hk_err e;

    snprintf(reason, sizeof(reason), "rejected by the owner%s%s",
             why != NULL && why[0] ? ": " : "", why != NULL ? why : "");
    json_decref(o);
    for (i = 0; reason[i] != 0; i++) /* stored text: printable ASCII */
        if (reason[i] < 0x20 || reason[i] > 0x7e)
            reason[i] = '?';
    if ((e = hk_req_visible(svc, rid, sub, HK_SCOPE_OWNER, &r)) != HK_OK)
        return hk_req_respond_lookup(resp, e, "no such request");
    pthread_mutex_lock(&svc->dbmu);
    e = hk_db_request_finish(svc->db, rid, HK_REQ_REJECTED, reason, NULL, 0,
                             hk_now());
    if (e == HK_OK)
        hk_req_audit(svc, &r, sub, HK_REQ_REJECTED, reason);
    pthread_mutex_unlock(&svc->dbmu);
    if (e == HK_ERR_STATE)
        hk_respond_err(resp, 409, "not_pending",
                       "the request is not pending any more");
    else if (e != HK_OK)
        hk_respond_err(resp, 500, "internal", hk_strerror(e));
    else
        hk_respond(
            resp, 200,
            json_pack("{s:s,s:s}", "state", "rejected", "reason", reason));
    hk_db_request_clear(&r);
}

/* POST /requests/{id}/approve: one of the key's approvers (scope
 * "approve") agrees; the owner's co-sign waits for the quorum. */
static void hk_req_approve(hk_service *svc, const unsigned char *rid,
                           const char *sub, hk_http_resp *resp)
{
    char detail[96];
    int need = 0;
    hk_db_request r;
    hk_err e;

    if ((e = hk_req_visible(svc, rid, sub, HK_SCOPE_APPROVE, &r)) != HK_OK)
        return hk_req_respond_lookup(resp, e,
                                     "no such request, or you are not one of "
                                     "its key's approvers");
    pthread_mutex_lock(&svc->rulesmu);
    need =
        svc->rules != NULL ? hk_rules_approvals(svc->rules, r.kid, r.owner) : 0;
    pthread_mutex_unlock(&svc->rulesmu);
    pthread_mutex_lock(&svc->dbmu);
    e = hk_db_request_approve(svc->db, rid, sub, hk_now());
    if (e == HK_OK) {
        snprintf(detail, sizeof(detail), "approved by %.64s", sub);
        hk_req_audit_as(svc, &r, sub, "approved", 0, detail);
    }
    pthread_mutex_unlock(&svc->dbmu);
    hk_db_request_clear(&r);
    if (e == HK_ERR_STATE)
        return hk_respond_err(resp, 409, "not_pending",
                              "the request is not pending any more");
    if (e != HK_OK && e != HK_ERR_EXISTS)
        return hk_respond_err(resp, 500, "internal", hk_strerror(e));
    hk_respond(resp, 200,
               json_pack("{s:s,s:b,s:i}", "approved_by", sub, "new", e == HK_OK,
                         "needed", need));
}

void hk_ep_requests(hk_service *svc, const hk_http_req *req, hk_http_resp *resp)
{
    char sub[HK_JWT_SUB_MAX + 1];
    const char *rest = req->path + strlen("/requests");
    const char *slash;
    unsigned char rid[HK_ID_LEN];
    char idbuf[HK_REQ_ID_STR];
    unsigned scopes = 0;
    int post = strcmp(req->method, "POST") == 0;
    hk_db_request r;
    hk_err e;

    hk_jwt_why why = {"no_bearer", "-"};

    if (req->auth == NULL || strncmp(req->auth, "Bearer ", 7) != 0 ||
        hk_jwt_verify_scoped(svc->jwt, req->auth + 7, (long)hk_now(), sub, NULL,
                             &scopes, &why) != HK_OK) {
        hk_log("warn", "event=auth_refused path=%s reason=%s sub=%s peer=%s",
               req->path, why.reason, why.sub,
               req->peer != NULL ? req->peer : "?");
        return hk_respond_err(resp, 401, "unauthorized",
                              "missing, invalid or expired token");
    }
    if (*rest == 0) {
        if (post && (scopes & HK_SCOPE_REQUEST))
            return hk_req_create(svc, req, sub, resp);
        if (!post && (scopes & HK_SCOPE_OWNER))
            return hk_req_list(svc, req, sub, resp);
        return hk_respond_err(resp, 403, "forbidden",
                              post ? "making a request needs a token with "
                                     "the \"request\" scope"
                                   : "listing requests needs the owner's "
                                     "token");
    }
    slash = strchr(rest + 1, '/');
    if (*rest != '/' || (slash != NULL ? (size_t)(slash - rest - 1)
                                       : strlen(rest + 1)) >= sizeof(idbuf))
        return hk_respond_err(resp, 404, "not_found", "no such request");
    snprintf(idbuf, sizeof(idbuf), "%.*s",
             (int)(slash != NULL ? slash - rest - 1 : (long)strlen(rest + 1)),
             rest + 1);
    if (!hk_req_parse_id(idbuf, rid))
        return hk_respond_err(resp, 404, "not_found", "no such request");
    if (slash != NULL && post && strcmp(slash, "/reject") == 0)
        return (scopes & HK_SCOPE_OWNER)
                   ? hk_req_reject(svc, req, rid, sub, resp)
                   : hk_respond_err(resp, 403, "forbidden",
                                    "rejecting needs the owner's token");
    if (slash != NULL && post && strcmp(slash, "/approve") == 0)
        return (scopes & HK_SCOPE_APPROVE)
                   ? hk_req_approve(svc, rid, sub, resp)
                   : hk_respond_err(resp, 403, "forbidden",
                                    "approving needs a token with the "
                                    "\"approve\" scope");
    if (slash != NULL || post)
        return hk_respond_err(resp, 404, "not_found", "no such endpoint");
    if ((e = hk_req_visible(svc, rid, sub, scopes, &r)) != HK_OK)
        return hk_req_respond_lookup(resp, e, "no such request");
    hk_respond(resp, 200, hk_req_view(&r));
    hk_db_request_clear(&r);
}

/* --- signing a request ---------------------------------------------------- */

hk_err hk_req_signable(hk_service *svc, const char *sub,
                       const unsigned char *kid, const unsigned char *rid,
                       unsigned idx, int64_t now, char why[HK_REQ_WHY])
{
    hk_rule_refusal ref;
    hk_db_request r;
    hk_db_key key;
    hk_err e;

    snprintf(why, HK_REQ_WHY, "no such request");
    if ((e = hk_db_request_get(svc->db, rid, &r)) != HK_OK)
        return e;
    if (strcmp(r.owner, sub) != 0)
        e = HK_ERR_NOT_FOUND;
    else if (memcmp(r.kid, kid, HK_ID_LEN) != 0)
        e = HK_ERR_BINDING,
        snprintf(why, HK_REQ_WHY, "the request is for another key");
    else if (r.state != HK_REQ_PENDING || r.expires <= now)
        e = HK_ERR_STATE,
        snprintf(why, HK_REQ_WHY, "the request is not pending any more");
    else if (idx >= r.ndigests)
        e = HK_ERR_ARG,
        snprintf(why, HK_REQ_WHY, "the request has no digest of that index");
    else if (r.have[idx])
        e = HK_ERR_EXISTS,
        snprintf(why, HK_REQ_WHY, "that digest of the request is signed");
    else if ((e = hk_db_key_get(svc->db, kid, &key)) == HK_OK &&
             (e = hk_req_rules(svc, &r, key.pub.b, 1, &ref)) ==
                 HK_ERR_FORBIDDEN)
        snprintf(why, HK_REQ_WHY, "%s: %s", ref.code, ref.message);
    hk_db_request_clear(&r);
    return e;
}

hk_err hk_req_digest_check(hk_service *svc, const char *sub,
                           const unsigned char *kid, const unsigned char *rid,
                           unsigned idx, const unsigned char *dig, size_t dlen,
                           char why[HK_REQ_WHY])
{
    hk_db_request r;
    hk_err e;

    pthread_mutex_lock(&svc->dbmu);
    e = hk_req_signable(svc, sub, kid, rid, idx, hk_now(), why);
    if (e == HK_OK)
        e = hk_db_request_get(svc->db, rid, &r);
    pthread_mutex_unlock(&svc->dbmu);
    if (e != HK_OK)
        return e;
    /* the digest the server computed, never the client's own */
    if (dlen != r.dlen || memcmp(r.digests + idx * r.dlen, dig, dlen) != 0) {
        snprintf(why, HK_REQ_WHY,
                 "a sign under a request signs the digest the server "
                 "computed from it, not this one");
        e = HK_ERR_FORBIDDEN;
    }
    hk_db_request_clear(&r);
    return e;
}

static hk_err hk_req_result(hk_db *db, const hk_db_request *r,
                            unsigned char **out, size_t *len)
{
    hk_btc_net net = HK_BTC_MAINNET;
    hk_db_key key;
    hk_err e;

    if ((e = hk_db_key_get(db, r->kid, &key)) != HK_OK ||
        (r->kind == HK_REQ_BTC_PSBT &&
         (e = hk_btc_net_parse(r->network, &net)) != HK_OK))
        return e;
    return hk_tx_request_result(hk_req_tx_kind(r->kind), r->payload,
                                r->payload_len, net, key.pub.b, r->sigs,
                                r->ndigests, out, len);
}

void hk_req_record(hk_service *svc, const char *sub, const unsigned char *rid,
                   unsigned idx, const unsigned char sig[64])
{
    unsigned char *res = NULL;
    char id[HK_REQ_ID_STR];
    size_t nsigs = 0, len = 0;
    hk_db_request r;
    hk_err e;

    memset(&r, 0, sizeof(r));
    hk_req_id_str(rid, id);
    pthread_mutex_lock(&svc->dbmu);
    e = hk_db_request_sig_put(svc->db, rid, idx, sig, hk_now(), &nsigs);
    if (e == HK_OK)
        e = hk_db_request_get(svc->db, rid, &r);
    if (e == HK_OK && nsigs == r.ndigests) {
        /* every digest signed: the result, or failed (never left pending
         * with nothing more to sign) */
        if ((e = hk_req_result(svc->db, &r, &res, &len)) != HK_OK) {
            if (hk_db_request_finish(svc->db, rid, HK_REQ_FAILED,
                                     "the signed result could not be made",
                                     NULL, 0, hk_now()) == HK_OK)
                hk_req_audit(svc, &r, sub, HK_REQ_FAILED, hk_strerror(e));
        } else if ((e = hk_db_request_finish(svc->db, rid, HK_REQ_SIGNED, "",
                                             res, len, hk_now())) == HK_OK) {
            hk_req_audit(svc, &r, sub, HK_REQ_SIGNED, "");
        }
    }
    pthread_mutex_unlock(&svc->dbmu);
    if (e != HK_OK)
        hk_log("warn",
               "event=request_record_failed request=%s index=%u "
               "error=\"%s\"",
               id, idx, hk_strerror(e));
    OPENSSL_free(res);
    hk_db_request_clear(&r);
}

void hk_req_sweep(hk_service *svc, int64_t now)
{
    hk_db_request *gone = NULL;
    size_t n = 0, i;
    hk_err e;

    pthread_mutex_lock(&svc->dbmu);
    e = hk_db_request_sweep(svc->db, now, &gone, &n);
    for (i = 0; i < n; i++)
        hk_req_audit(svc, &gone[i], gone[i].owner, HK_REQ_EXPIRED, "");
    pthread_mutex_unlock(&svc->dbmu);
    if (e != HK_OK)
        hk_log("warn", "event=request_sweep_failed error=\"%s\"",
               hk_strerror(e));
    hk_db_request_list_free(gone, n);
}

hk_err hk_req_direct_allowed(hk_service *svc, const hk_db_key *key,
                             char why[HK_REQ_WHY])
{
    static const unsigned char zero[32];
    hk_rule_refusal ref;
    hk_rule_req q;
    int need;
    hk_err e;

    memset(&q, 0, sizeof(q));
    q.kind = HK_TX_DIGEST; /* a direct sign is a bare digest */
    q.payload = zero;
    q.len = sizeof(zero);
    q.kid = key->kid;
    q.owner = key->owner;
    q.pub = key->pub.b;
    pthread_mutex_lock(&svc->rulesmu);
    e = hk_rules_check(svc->rules, &q, zero, &ref);
    need = svc->rules != NULL
               ? hk_rules_approvals(svc->rules, key->kid, key->owner)
               : 0;
    pthread_mutex_unlock(&svc->rulesmu);
    if (e == HK_OK && need > 0) {
        ref.code = "needs_approvals";
        e = HK_ERR_FORBIDDEN;
    }
    if (e == HK_ERR_FORBIDDEN)
        snprintf(why, HK_REQ_WHY,
                 "%s: the policy file allows this key to sign only through "
                 "requests",
                 ref.code);
    return e;
}
