/* halfkeyd's request callbacks (issue 19): when a request with a
 * callback_url is signed, rejected, expired or failed, its final state is
 * POSTed to that URL over HTTPS (TLS 1.3, receivers trusted through
 * callback_ca_file), signed with an HMAC the requester checks:
 *
 *   x-halfkey-signature: t=<unix time>,v1=<hex HMAC-SHA256(key, t "." body)>
 *
 * The queue is the requests table (cb_state, cb_attempts, cb_next): it
 * survives restarts and any node delivers (a claim leases an entry for
 * HK_CB_LEASE seconds); only hosts in callback_hosts (required with
 * callbacks: a requester must not choose where halfkeyd connects). A
 * failed attempt is retried after 2^attempts
 * seconds (at most an hour), HK_CB_MAX_ATTEMPTS times; a 2xx answer
 * delivers. Delivery runs on a thread of its own, so a slow receiver
 * never holds a signing worker. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/hex.h"
#include "common/kvfile.h"
#include "server/http/callbacks.h"
#include "server/http/requests.h"
#include "server/log.h"
#include "transport/http_client.h"

#define HK_CB_TIMEOUT_MS 10000 /* per delivery */
#define HK_CB_BATCH 8
/* seconds a claimed batch is this node's: longer than its deliveries can
 * take, so no other node delivers the same entry meanwhile */
#define HK_CB_LEASE (HK_CB_BATCH * (HK_CB_TIMEOUT_MS / 1000 + 5))
#define HK_CB_KEY_MIN 32

struct hk_cb {
    hk_workers *thread; /* one thread: deliveries in order */
    unsigned char *key;
    size_t keylen;
    _Atomic int busy; /* a batch is being delivered */
};

typedef struct {
    hk_service *svc;
    hk_db_request *list;
    size_t n;
} hk_cb_batch;

hk_err hk_cb_new(const hk_srv_config *cfg, hk_cb **out, char *why)
{
    hk_cb *cb;
    hk_err e;

    *out = NULL;
    if (cfg->callback_ca_file[0] == 0)
        return HK_OK;
    if ((cb = calloc(1, sizeof(*cb))) == NULL)
        return HK_ERR_NOMEM;
    if ((e = hk_load_file(cfg->callback_key_file, &cb->key, &cb->keylen)) !=
            HK_OK ||
        cb->keylen < HK_CB_KEY_MIN) {
        snprintf(why, 256, "%.200s: callback key unreadable or under 32 bytes",
                 cfg->callback_key_file);
        hk_cb_free(cb);
        return HK_ERR_CONFIG;
    }
    if ((e = hk_workers_new(1, &cb->thread)) != HK_OK) {
        hk_cb_free(cb);
        return e;
    }
    *out = cb;
    return HK_OK;
}

void hk_cb_free(hk_cb *cb)
{
    if (cb == NULL)
        return;
    hk_workers_free(cb->thread); /* a running batch finishes first */
    if (cb->key != NULL)
        OPENSSL_cleanse(cb->key, cb->keylen);
    free(cb->key);
    free(cb);
}

/* --- URLs ----------------------------------------------------------------- */

typedef struct {
    char host[256];
    int port;
    char path[HK_DB_REQ_URL_MAX + 1];
} hk_cb_url;

/* "https://" host [":" port] ["/" path]: host of letters, digits, '.' and
 * '-' (no user info, no IPv6 literal), path of visible ASCII. */
static int hk_cb_parse(const char *url, hk_cb_url *u)
{
    const char *p = url + 8, *h = p;
    long port = 443;
    char *end;

    if (strncmp(url, "https://", 8) != 0)
        return 0;
    while (*p != 0 && strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRST"
                             "UVWXYZ0123456789.-",
                             *p) != NULL)
        p++;
    if (p == h || (size_t)(p - h) >= sizeof(u->host))
        return 0;
    memcpy(u->host, h, (size_t)(p - h));
    u->host[p - h] = 0;
    if (*p == ':') {
        port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535)
            return 0;
        p = end;
    }
    if (*p != 0 && *p != '/')
        return 0;
    snprintf(u->path, sizeof(u->path), "%s", *p != 0 ? p : "/");
    for (h = u->path; *h != 0; h++)
        if (*h <= 0x20 || *h > 0x7e || *h == '#')
            return 0;
    u->port = (int)port;
    return 1;
}

int hk_cb_url_ok(const hk_service *svc, const char *url, char *why, size_t cap)
{
    hk_cb_url u;

    if (svc->cb == NULL) {
        snprintf(why, cap,
                 "this server delivers no callbacks "
                 "(callback_ca_file is not configured)");
        return 0;
    }
    if (!hk_cb_parse(url, &u)) {
        snprintf(why, cap, "callback_url must be https://HOST[:PORT][/PATH]");
        return 0;
    }
    if (!hk_kv_list_has(svc->cfg.callback_hosts, u.host, 0)) {
        snprintf(why, cap, "callback host %.100s is not in callback_hosts",
                 u.host);
        return 0;
    }
    return 1;
}

/* --- delivery ------------------------------------------------------------- */

/* The signed body of a request's final state: its JSON (the fields a
 * requester needs, the payload left out) and the signature header. */
static hk_err hk_cb_body(const hk_cb *cb, const hk_db_request *r, char **body,
                         char sighdr[128])
{
    static const char *const keep[] = {
        "request_id", "key_id", "kind",       "state",    "reason",
        "updated",    "result", "signatures", "metadata", NULL};
    unsigned char mac[EVP_MAX_MD_SIZE];
    char t[24], hex[2 * 32 + 1], *signed_text = NULL;
    json_t *v = hk_req_view(r), *o = json_object();
    size_t i, maclen = 0;
    hk_err e = HK_ERR_NOMEM;

    for (i = 0; keep[i] != NULL; i++)
        if (json_object_get(v, keep[i]) != NULL)
            json_object_set(o, keep[i], json_object_get(v, keep[i]));
    json_decref(v);
    *body = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    snprintf(t, sizeof(t), "%lld", (long long)hk_now());
    if (*body == NULL ||
        (signed_text = malloc(strlen(t) + 1 + strlen(*body) + 1)) == NULL)
        goto done;
    sprintf(signed_text, "%s.%s", t, *body);
    e = HK_ERR_CRYPTO;
    if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, cb->key, cb->keylen,
                  (const unsigned char *)signed_text, strlen(signed_text), mac,
                  sizeof(mac), &maclen) == NULL ||
        maclen != 32)
        goto done;
    hk_hex(mac, 32, hex);
    snprintf(sighdr, 128, "t=%s,v1=%s", t, hex);
    e = HK_OK;
done:
    free(signed_text);
    return e;
}

/* One attempt: HK_OK when the receiver answered 2xx. */
static hk_err hk_cb_post(hk_service *svc, const hk_db_request *r, int *status)
{
    char *body = NULL, *resp = NULL, sighdr[128];
    hk_tcli_config tc;
    hk_cb_url u;
    hk_err e;

    *status = 0;
    /* the hosts allowed now (a reload may have narrowed them) */
    if (!hk_cb_parse(r->callback_url, &u) ||
        !hk_kv_list_has(svc->cfg.callback_hosts, u.host, 0))
        return HK_ERR_CONFIG;
    if ((e = hk_cb_body(svc->cb, r, &body, sighdr)) != HK_OK)
        goto done;
    memset(&tc, 0, sizeof(tc));
    tc.host = u.host;
    tc.port = u.port;
    tc.ca_file = svc->cfg.callback_ca_file;
    tc.timeout_ms = HK_CB_TIMEOUT_MS;
    tc.header_name = HK_CB_SIG_HEADER;
    tc.header_value = sighdr;
    e = hk_tcli_http(&tc, "POST", u.path, NULL, body, status, &resp);
    if (e == HK_OK && (*status < 200 || *status > 299))
        e = HK_ERR_SERVER;
done:
    free(body);
    free(resp);
    return e;
}

static void hk_cb_deliver(hk_service *svc, const hk_db_request *claimed)
{
    char id[2 * HK_ID_LEN + 1];
    int64_t attempts = 0, wait;
    hk_db_request r;
    int status = 0;
    hk_err e, s;

    hk_hex(claimed->rid, HK_ID_LEN, id);
    pthread_mutex_lock(&svc->dbmu);
    e = hk_db_request_get(svc->db, claimed->rid, &r);
    pthread_mutex_unlock(&svc->dbmu);
    if (e == HK_OK)
        e = hk_cb_post(svc, &r, &status);
    hk_db_request_clear(&r);
    wait = claimed->cb_attempts < 12 ? (int64_t)1 << (claimed->cb_attempts + 1)
                                     : 3600;
    pthread_mutex_lock(&svc->dbmu);
    s = hk_db_callback_result(svc->db, claimed->rid, e == HK_OK,
                              hk_now() + (wait < 3600 ? wait : 3600),
                              HK_CB_MAX_ATTEMPTS, &attempts);
    pthread_mutex_unlock(&svc->dbmu);
    if (e == HK_OK)
        hk_log("info", "event=callback_delivered request=req_%s status=%d", id,
               status);
    else
        hk_log("warn",
               "event=callback_failed request=req_%s attempt=%lld status=%d "
               "error=\"%s\"%s",
               id, (long long)attempts, status, hk_strerror(e),
               attempts >= HK_CB_MAX_ATTEMPTS ? " final=1" : "");
    if (s != HK_OK)
        hk_log("warn", "event=callback_record_failed request=req_%s", id);
}

static void hk_cb_job(void *arg)
{
    hk_cb_batch *b = arg;
    size_t i;

    for (i = 0; i < b->n; i++)
        hk_cb_deliver(b->svc, &b->list[i]);
    hk_db_request_list_free(b->list, b->n);
    b->svc->cb->busy = 0;
    free(b);
}

void hk_cb_tick(hk_service *svc, int64_t now)
{
    hk_cb_batch *b;
    hk_err e;

    if (svc->cb == NULL || svc->cb->busy || svc->draining)
        return;
    if ((b = calloc(1, sizeof(*b))) == NULL)
        return;
    b->svc = svc;
    pthread_mutex_lock(&svc->dbmu);
    e = hk_db_callback_claim(svc->db, now, HK_CB_LEASE, HK_CB_BATCH, &b->list,
                             &b->n);
    pthread_mutex_unlock(&svc->dbmu);
    if (e != HK_OK || b->n == 0) {
        if (e != HK_OK)
            hk_log("warn", "event=callback_claim_failed error=\"%s\"",
                   hk_strerror(e));
        hk_db_request_list_free(b->list, b->n);
        free(b);
        return;
    }
    svc->cb->busy = 1;
    if (hk_workers_submit(svc->cb->thread, hk_cb_job, b) != HK_OK) {
        /* not delivered: the lease runs out and a node claims them again */
        svc->cb->busy = 0;
        hk_db_request_list_free(b->list, b->n);
        free(b);
    }
}
