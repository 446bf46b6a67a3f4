/* `halfkey requests`, `approve`, `reject` (issue 19): the owner's side of
 * signing requests that wait on the server.
 *
 * Owns the client's check of a request before it signs: the digests are
 * recomputed here from the request's payload with the same rules as the
 * server (txparse/request.h) and must equal the server's, so a server
 * that lies about what a request is cannot get a signature over anything
 * but what the user was shown; the human rendering (Bitcoin inputs,
 * outputs, fee; Ethereum chain, to, value, fees, data); and the waiting
 * of --watch (the server's long poll, no busy polling). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "common/hex.h"
#include "tools/requests.h"
#include "txparse/render.h"
#include "txparse/request.h"

/* --- the local view of a request ------------------------------------------ */

typedef struct {
    json_t *req;                     /* the server's view (owned) */
    const char *id, *kind;           /* in req */
    char label[HK_KS_LABEL_MAX + 1]; /* the local key; "" if not here */
    hk_ks_keyinfo key;
    int verified;    /* the digests recomputed here equal the server's */
    char why[200];   /* why not */
    json_t *summary; /* the local parse (owned), NULL for a digest */
} hk_lreq;

static void hk_lreq_free(hk_lreq *l)
{
    json_decref(l->req);
    json_decref(l->summary);
    memset(l, 0, sizeof(*l));
}

/* The local key of the request's key id. */
static int hk_lreq_key(hk_client *c, hk_lreq *l)
{
    const char *kh = json_string_value(json_object_get(l->req, "key_id"));
    unsigned char kid[HK_ID_LEN];
    hk_ks_keyinfo *list = NULL;
    size_t n = 0, i;
    int found = 0;

    if (kh == NULL || strlen(kh) != 2 * HK_ID_LEN ||
        !hk_unhex(kh, strlen(kh), kid, HK_ID_LEN) ||
        hk_ks_list(hk_client_keystore(c), &list, &n) != HK_OK)
        return 0;
    for (i = 0; i < n && !found; i++)
        if (list[i].err == HK_OK && memcmp(list[i].kid, kid, HK_ID_LEN) == 0) {
            l->key = list[i];
            snprintf(l->label, sizeof(l->label), "%s", list[i].label);
            found = 1;
        }
    hk_ks_list_free(list);
    return found;
}

/* The payload's bytes (base64 for a PSBT, hex otherwise). */
static hk_err hk_lreq_payload(const hk_lreq *l, hk_tx_kind kind,
                              unsigned char **out, size_t *len)
{
    const char *p = json_string_value(json_object_get(l->req, "payload"));
    size_t n;

    if (p == NULL)
        return HK_ERR_DECODE;
    if (kind == HK_TX_BTC_PSBT)
        return hk_b64_decode(p, strlen(p), 4 * 1024 * 1024, out, len)
                   ? HK_OK
                   : HK_ERR_DECODE;
    n = strlen(p);
    if (n == 0 || n % 2 != 0 || (*out = OPENSSL_malloc(n / 2)) == NULL)
        return HK_ERR_DECODE;
    *len = n / 2;
    return hk_unhex(p, n, *out, n / 2) ? HK_OK : HK_ERR_DECODE;
}

static hk_err hk_lreq_kind(const char *s, hk_tx_kind *k)
{
    if (s != NULL && strcmp(s, "digest") == 0)
        *k = HK_TX_DIGEST;
    else if (s != NULL && strcmp(s, "btc-psbt") == 0)
        *k = HK_TX_BTC_PSBT;
    else if (s != NULL && strcmp(s, "eth-tx") == 0)
        *k = HK_TX_ETH;
    else
        return HK_ERR_DECODE;
    return HK_OK;
}

/* The local summary of a parsed transaction (as the server's). */
static json_t *hk_lreq_summary(hk_tx_kind kind, const unsigned char *p,
                               size_t len, hk_btc_net net)
{
    hk_psbt *ps = NULL;
    hk_eth_tx *tx = NULL;
    json_t *j = NULL;

    if (kind == HK_TX_BTC_PSBT &&
        hk_psbt_parse(p, len, net, &ps, NULL, 0) == HK_OK)
        j = hk_psbt_json(ps);
    else if (kind == HK_TX_ETH &&
             hk_eth_tx_parse(p, len, &tx, NULL, 0) == HK_OK)
        j = hk_eth_tx_json(tx);
    hk_psbt_free(ps);
    hk_eth_tx_free(tx);
    return j;
}

/* Recomputes the digests for the local key and compares them with the
 * server's list. */
static void hk_lreq_verify(hk_lreq *l)
{
    json_t *sd = json_object_get(l->req, "digests");
    const char *net = json_string_value(json_object_get(l->req, "network"));
    unsigned char *p = NULL, *d = NULL;
    char hex[2 * HK_TX_DIGEST_MAX + 1];
    size_t len = 0, n = 0, dlen = 0, i;
    hk_btc_net bnet = HK_BTC_MAINNET;
    hk_tx_kind kind;

    snprintf(l->why, sizeof(l->why), "malformed request");
    if (hk_lreq_kind(l->kind, &kind) != HK_OK ||
        (net != NULL && hk_btc_net_parse(net, &bnet) != HK_OK) ||
        hk_lreq_payload(l, kind, &p, &len) != HK_OK)
        goto done;
    l->summary = hk_lreq_summary(kind, p, len, bnet);
    if (hk_tx_request_digests(kind, p, len, bnet, l->key.pub.b, &d, &n, &dlen,
                              l->why, sizeof(l->why)) != HK_OK)
        goto done;
    snprintf(l->why, sizeof(l->why),
             "the server's digests are not the ones this request makes: do "
             "not approve (the server may be compromised)");
    if (!json_is_array(sd) || json_array_size(sd) != n)
        goto done;
    for (i = 0; i < n; i++) {
        hk_hex(d + i * dlen, dlen, hex);
        if (json_string_value(json_array_get(sd, i)) == NULL ||
            strcmp(json_string_value(json_array_get(sd, i)), hex) != 0)
            goto done;
    }
    l->verified = 1;
    l->why[0] = 0;
done:
    OPENSSL_free(p);
    OPENSSL_free(d);
}

/* The local view of the server's request view (taken). */
static void hk_lreq_make(hk_client *c, json_t *req, hk_lreq *l)
{
    memset(l, 0, sizeof(*l));
    l->req = req;
    l->id = json_string_value(json_object_get(req, "request_id"));
    l->kind = json_string_value(json_object_get(req, "kind"));
    if (!hk_lreq_key(c, l)) {
        snprintf(l->why, sizeof(l->why), "the key is not in this token");
        return;
    }
    hk_lreq_verify(l);
}

/* --- rendering ------------------------------------------------------------ */

static void hk_time_str(json_int_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (gmtime_r(&tt, &tm) == NULL ||
        strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "%lld", (long long)t);
}

/* A JSON number or decimal string as text. */
static const char *hk_num(json_t *j, char buf[32])
{
    if (json_is_string(j))
        return json_string_value(j);
    snprintf(buf, 32, "%lld", (long long)json_integer_value(j));
    return buf;
}

static void hk_render_btc(const json_t *s, FILE *out)
{
    json_t *ins = json_object_get(s, "inputs"), *outs,
           *v = json_object_get(s, "network");
    char a[32], b[32];
    size_t i;

    fprintf(out, "  Bitcoin %s transaction %s\n", json_string_value(v),
            json_string_value(json_object_get(s, "txid")));
    for (i = 0; i < json_array_size(ins); i++) {
        json_t *in = json_array_get(ins, i);

        fprintf(out, "    input  %zu: %s:%s  %s sat\n", i,
                json_string_value(json_object_get(in, "txid")),
                hk_num(json_object_get(in, "vout"), a),
                hk_num(json_object_get(in, "amount"), b));
    }
    outs = json_object_get(s, "outputs");
    for (i = 0; i < json_array_size(outs); i++) {
        json_t *o = json_array_get(outs, i);
        const char *addr = json_string_value(json_object_get(o, "address"));

        fprintf(out, "    output %zu: %s  %s sat\n", i,
                addr != NULL && addr[0]
                    ? addr
                    : json_string_value(json_object_get(o, "script")),
                hk_num(json_object_get(o, "amount"), a));
    }
    fprintf(out, "    fee: %s sat\n", hk_num(json_object_get(s, "fee"), a));
}

static void hk_render_eth(const json_t *s, FILE *out)
{
    const char *to = json_string_value(json_object_get(s, "to"));
    const char *data = json_string_value(json_object_get(s, "data"));
    char a[32], b[32];

    fprintf(out, "  Ethereum transaction on chain %s, nonce %s\n",
            hk_num(json_object_get(s, "chain_id"), a),
            hk_num(json_object_get(s, "nonce"), b));
    fprintf(out, "    to: %s\n", to != NULL ? to : "(contract creation)");
    fprintf(out, "    value: %s wei\n",
            json_string_value(json_object_get(s, "value")));
    fprintf(out, "    max fee per gas: %s wei, priority fee: %s wei\n",
            json_string_value(json_object_get(s, "max_fee_per_gas")),
            json_string_value(json_object_get(s, "max_priority_fee_per_gas")));
    fprintf(out, "    gas limit: %s, at most %s wei in fees\n",
            hk_num(json_object_get(s, "gas_limit"), a),
            json_string_value(json_object_get(s, "max_fee_total")));
    fprintf(out, "    data: %zu bytes\n", data != NULL ? strlen(data) / 2 : 0);
}

/* A server string for the terminal: printable ASCII only (a lying server
 * must not move the cursor or recolour what the user reads), "?" for a
 * missing one. */
static const char *hk_safe(json_t *j, char *buf, size_t cap)
{
    const char *v = json_string_value(j);
    size_t i;

    snprintf(buf, cap, "%s", v != NULL ? v : "?");
    for (i = 0; buf[i] != 0; i++)
        if (buf[i] < 0x20 || buf[i] > 0x7e)
            buf[i] = '?';
    return buf;
}

static void hk_render(const hk_lreq *l, FILE *out)
{
    char exp[32], *meta, a[96], b[160], k[96], st[24];
    json_t *m = json_object_get(l->req, "metadata");

    hk_time_str(json_integer_value(json_object_get(l->req, "expires")), exp);
    fprintf(out, "%s from %s for key %s, %s, expires %s\n",
            hk_safe(json_object_get(l->req, "request_id"), a, sizeof(a)),
            hk_safe(json_object_get(l->req, "requester"), b, sizeof(b)),
            l->label[0]
                ? l->label
                : hk_safe(json_object_get(l->req, "key_id"), k, sizeof(k)),
            hk_safe(json_object_get(l->req, "state"), st, sizeof(st)), exp);
    if (l->summary != NULL && l->kind != NULL &&
        strcmp(l->kind, "btc-psbt") == 0)
        hk_render_btc(l->summary, out);
    else if (l->summary != NULL)
        hk_render_eth(l->summary, out);
    else
        fprintf(out, "  digest %s\n",
                hk_safe(json_array_get(json_object_get(l->req, "digests"), 0),
                        b, sizeof(b)));
    /* json_dumps escapes control characters */
    meta = json_object_size(m) > 0 ? json_dumps(m, JSON_COMPACT) : NULL;
    if (meta != NULL)
        fprintf(out, "  metadata: %s\n", meta);
    free(meta);
    if (!l->verified)
        fprintf(out, "  WARNING: %s\n", l->why);
}

/* The local view as JSON (--json): the server's fields, the local label,
 * the check and the local summary. */
static json_t *hk_lreq_json(const hk_lreq *l)
{
    json_t *o = json_deep_copy(l->req);

    json_object_set_new(o, "label", json_string(l->label));
    json_object_set_new(o, "digests_verified", json_boolean(l->verified));
    if (!l->verified)
        json_object_set_new(o, "warning", json_string(l->why));
    if (l->summary != NULL)
        json_object_set(o, "summary", l->summary);
    return o;
}

/* --- commands ------------------------------------------------------------- */

/* GET path as the owner: the parsed 200 answer, or an error printed. */
static hk_err hk_get_json(hk_client *c, const char *path, json_t **out)
{
    char *body = NULL;
    int st = 0;
    hk_err e = hk_client_get(c, path, 1, &st, &body);
    const char *msg;

    *out = NULL;
    if (e == HK_OK &&
        (*out = json_loads(body != NULL ? body : "", 0, NULL)) == NULL)
        e = HK_ERR_SERVER;
    if (e == HK_OK && st != 200) {
        msg = json_string_value(json_object_get(*out, "message"));
        fprintf(stderr, "halfkey: server: HTTP %d: %s\n", st,
                msg != NULL ? msg : "no message");
        json_decref(*out);
        *out = NULL;
        e = st == 404 ? HK_ERR_NOT_FOUND : HK_ERR_SERVER;
    }
    free(body);
    return e;
}

/* The --watch cursor: the newest creation time shown and the requests of
 * that second shown already (the server leaves them out). */
#define HK_SEEN_MAX 10 /* = the server's HK_REQ_SEEN_MAX */
typedef struct {
    json_int_t created;
    char seen[HK_SEEN_MAX][48];
    size_t nseen;
    int full; /* then the next poll starts after that second */
} hk_cursor;

static void hk_cursor_add(hk_cursor *cur, json_int_t created, const char *id)
{
    if (created != cur->created) {
        cur->created = created;
        cur->nseen = 0;
        cur->full = 0;
    }
    if (cur->nseen < HK_SEEN_MAX && id != NULL && strlen(id) < 48)
        snprintf(cur->seen[cur->nseen++], 48, "%s", id);
    else
        cur->full = 1; /* more in that second than `seen` can name */
}

/* Prints the requests of one list answer; *cur moves to the last one
 * shown, *n how many were printed. */
static void hk_print_list(hk_client *c, json_t *ans, int json, FILE *out,
                          hk_cursor *cur, size_t *n)
{
    json_t *arr = json_object_get(ans, "requests"), *jl = json_array();
    size_t i;
    hk_lreq l;

    for (i = 0; i < json_array_size(arr); i++) {
        json_t *r = json_array_get(arr, i);
        const char *id = json_string_value(json_object_get(r, "request_id"));

        hk_cursor_add(cur, json_integer_value(json_object_get(r, "created")),
                      id);
        hk_lreq_make(c, json_incref(r), &l);
        if (json)
            json_array_append_new(jl, hk_lreq_json(&l));
        else
            hk_render(&l, out);
        hk_lreq_free(&l);
    }
    *n = json_array_size(arr);
    if (json) {
        json_t *all = json_pack("{s:o}", "requests", jl);
        char *s = all != NULL ? json_dumps(all, JSON_INDENT(2) | JSON_SORT_KEYS)
                              : NULL;

        if (s != NULL)
            fprintf(out, "%s\n", s);
        free(s);
        json_decref(all);
    } else {
        json_decref(jl);
    }
}

hk_err hk_requests_list(hk_client *c, int json, int watch, FILE *out)
{
    char path[640];
    hk_cursor cur;
    json_t *ans = NULL;
    size_t n = 0, i, len;
    hk_err e;

    memset(&cur, 0, sizeof(cur));
    do {
        /* --watch: the server holds the GET until a request not shown yet
         * arrives (or HK_WATCH_WAIT_STR seconds pass) */
        len = (size_t)snprintf(path, sizeof(path), "/requests?state=pending");
        if (cur.created > 0)
            len +=
                (size_t)snprintf(path + len, sizeof(path) - len,
                                 "&since=%lld&seen=", (long long)cur.created);
        for (i = 0; i < cur.nseen; i++)
            len += (size_t)snprintf(path + len, sizeof(path) - len, "%s%s",
                                    i > 0 ? "," : "", cur.seen[i]);
        if (watch)
            snprintf(path + len, sizeof(path) - len, "&wait=%s",
                     HK_WATCH_WAIT_STR);
        if ((e = hk_get_json(c, path, &ans)) != HK_OK)
            return e;
        hk_print_list(c, ans, json, out, &cur, &n);
        json_decref(ans);
        if (watch && n == 0) /* the wait was cut short: not a busy loop */
            sleep(1);
        if (!watch && !json && n == 0)
            fprintf(out, "no pending requests\n");
        fflush(out);
    } while (watch);
    return HK_OK;
}

/* Signs every digest of the request not signed yet, over one kept-open
 * connection (a session per digest, each bound to the request). */
static hk_err hk_approve_sign(hk_client *c, const hk_lreq *l)
{
    json_t *digs = json_object_get(l->req, "digests");
    json_t *sigs = json_object_get(l->req, "signatures");
    unsigned char d[HK_TX_DIGEST_MAX], sig[HK_SIG_LEN];
    hk_channel *ch = NULL;
    size_t i, len;
    hk_err e;

    if ((e = hk_client_channel_open(c, &ch)) != HK_OK)
        return e;
    for (i = 0; i < json_array_size(digs) && e == HK_OK; i++) {
        const char *h = json_string_value(json_array_get(digs, i));

        if (json_is_string(json_array_get(sigs, i)))
            continue; /* signed in an earlier run */
        len = h != NULL ? strlen(h) / 2 : 0;
        if (len == 0 || len > sizeof(d) || !hk_unhex(h, strlen(h), d, len))
            e = HK_ERR_DECODE;
        else
            e = hk_client_channel_sign_request(c, ch, l->label, l->id,
                                               (unsigned)i, d, len, sig);
    }
    hk_client_channel_close(ch);
    return e;
}

/* The request once the server has recorded the last signature: each
 * client's sign.5 (its copy of the signature) travels after the client
 * already has the signature, so the state moves a moment later. */
static hk_err hk_approve_outcome(hk_client *c, const char *path, json_t **ans)
{
    const char *st;
    hk_err e;
    int i;

    for (i = 0;; i++) {
        if ((e = hk_get_json(c, path, ans)) != HK_OK)
            return e;
        st = json_string_value(json_object_get(*ans, "state"));
        if (st == NULL || strcmp(st, "pending") != 0 || i == 50)
            return HK_OK;
        json_decref(*ans);
        *ans = NULL;
        nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
    }
}

hk_err hk_requests_approve(hk_client *c, const char *id, FILE *out)
{
    char path[96];
    json_t *ans = NULL;
    hk_lreq l;
    hk_err e;

    if (strlen(id) > 40 || strspn(id, "req_0123456789abcdef") != strlen(id))
        return HK_ERR_ARG;
    snprintf(path, sizeof(path), "/requests/%s", id);
    if ((e = hk_get_json(c, path, &ans)) != HK_OK)
        return e;
    hk_lreq_make(c, ans, &l);
    hk_render(&l, out);
    if (!l.verified) {
        fprintf(stderr, "halfkey: approve: not signing: %s\n", l.why);
        e = l.label[0] ? HK_ERR_FORBIDDEN : HK_ERR_NOT_FOUND;
    } else if ((e = hk_approve_sign(c, &l)) != HK_OK) {
        fprintf(stderr, "halfkey: approve: %s (%s)\n", hk_strerror(e),
                hk_client_last_error(c));
    }
    hk_lreq_free(&l);
    if (e != HK_OK || (e = hk_approve_outcome(c, path, &ans)) != HK_OK)
        return e;
    fprintf(out, "%s: %s\n", id,
            json_string_value(json_object_get(ans, "state")));
    if (json_is_string(json_object_get(ans, "result")))
        fprintf(out, "result: %s\n",
                json_string_value(json_object_get(ans, "result")));
    json_decref(ans);
    return HK_OK;
}

hk_err hk_requests_reject(hk_client *c, const char *id, const char *reason,
                          FILE *out)
{
    char path[96], *body = NULL;
    json_t *ans;
    int st = 0;
    hk_err e;

    if (strlen(id) > 40 || strspn(id, "req_0123456789abcdef") != strlen(id))
        return HK_ERR_ARG;
    snprintf(path, sizeof(path), "/requests/%s/reject", id);
    e = hk_client_send_json(
        c, path, json_pack("{s:s}", "reason", reason != NULL ? reason : ""),
        &st, &body);
    ans = e == HK_OK ? json_loads(body != NULL ? body : "", 0, NULL) : NULL;
    if (e == HK_OK && st != 200) {
        fprintf(stderr, "halfkey: reject: HTTP %d: %s\n", st,
                json_string_value(json_object_get(ans, "message")));
        e = st == 404 ? HK_ERR_NOT_FOUND : HK_ERR_STATE;
    } else if (e == HK_OK) {
        fprintf(out, "%s: rejected\n", id);
    }
    json_decref(ans);
    free(body);
    return e;
}
