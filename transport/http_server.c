/* TLS 1.3 HTTP + WebSocket server on libwebsockets 4.1. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "transport/http_server.h"
#include "transport/jwt.h"

/* "Bearer " and the largest token: a longer value is refused (431) */
#define HK_AUTH_MAX (HK_JWT_MAX + sizeof("Bearer ") - 1)
#define HK_STR_(x) #x
#define HK_STR(x) HK_STR_(x)

_Static_assert(HK_HTTP_HEADER_MAX >= HK_AUTH_MAX + 4096 &&
                   HK_HTTP_HEADER_MAX <= 65535,
               "headers hold the largest token; lws keeps the limit in a "
               "short");

typedef struct hk_txq {
    struct hk_txq *next;
    size_t len;
    unsigned char buf[]; /* LWS_PRE bytes, then the message */
} hk_txq;

struct hk_tconn {
    pthread_mutex_t mu;
    int refs;
    struct lws *wsi; /* NULL once closed; written on the service thread */
    hk_tsrv *srv;
    hk_txq *head, *tail;
    int close_req, closed, in_ready;
    void *user;
    hk_tconn *ready_next;
    unsigned char *rx; /* reassembly, service thread only */
    size_t rxlen;
    /* a deferred HTTP answer (hk_http_defer): set once by hk_http_answer,
     * taken by the service thread */
    hk_http_resp answer;
    int answered;
};

/* Open connections of one peer address. */
typedef struct hk_peer {
    struct hk_peer *next;
    unsigned char addr[16]; /* IPv4 v4-mapped; IPv6 cut to its /64 */
    int n;
} hk_peer;

/* What the transport keeps on an accepted connection's wsi (its opaque
 * user data) from accept to destroy. */
typedef struct {
    hk_peer *peer;     /* counted against the caps until the wsi goes */
    hk_tconn *upgrade; /* an accepted upgrade, until ESTABLISHED */
} hk_wsi_data;

struct hk_tsrv {
    struct lws_context *ctx;
    hk_tsrv_handlers h;
    pthread_mutex_t mu; /* guards the ready list */
    hk_tconn *ready;
    atomic_int stop;
    int port;
    char address[INET6_ADDRSTRLEN];
    lws_sorted_usec_list_t tick;
    /* admission, service thread only (stats also atomically) */
    int max_conns, max_per_peer;
    hk_peer **peers; /* hash buckets */
    size_t npeers;   /* bucket count, a power of 2 */
    /* admitted by hk_admit, not yet on its wsi: lws sets a new wsi's
     * opaque pointer after LWS_CALLBACK_WSI_CREATE, so the data goes on at
     * LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED (or is freed at
     * LWS_CALLBACK_WSI_DESTROY if the TLS setup fails before that) */
    hk_wsi_data *adopting;
    struct lws *adopting_wsi;
    int trim_peak; /* most connections since the last trim */
    atomic_int conns;
    atomic_ulong refused_cap, refused_peer;
};

/* Per-connection data: an HTTP transaction or a WebSocket. */
typedef struct {
    hk_tconn *conn;
    struct lws *wsi; /* while on_http runs (hk_http_defer) */
    hk_tconn *later; /* a deferred answer is awaited on it */
    char method[8], path[128], query[512];
    char *auth;
    unsigned char *body;
    size_t body_len, body_cap;
    hk_http_resp resp;
    int responded;
} hk_pss;

static hk_tsrv *hk_srv_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

/* --- connection handles -------------------------------------------------- */

void hk_tconn_ref(hk_tconn *c)
{
    pthread_mutex_lock(&c->mu);
    c->refs++;
    pthread_mutex_unlock(&c->mu);
}

static void hk_txq_free_all(hk_tconn *c)
{
    while (c->head != NULL) {
        hk_txq *n = c->head->next;

        OPENSSL_clear_free(c->head, sizeof(*c->head) + c->head->len + LWS_PRE);
        c->head = n;
    }
    c->tail = NULL;
}

void hk_tconn_unref(hk_tconn *c)
{
    int last;

    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    last = --c->refs == 0;
    pthread_mutex_unlock(&c->mu);
    if (!last)
        return;
    hk_txq_free_all(c);
    free(c->rx);
    free(c->answer.body);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void hk_tconn_set_user(hk_tconn *c, void *user)
{
    pthread_mutex_lock(&c->mu);
    c->user = user;
    pthread_mutex_unlock(&c->mu);
}

void *hk_tconn_user(const hk_tconn *c)
{
    void *u;

    pthread_mutex_lock((pthread_mutex_t *)&c->mu);
    u = c->user;
    pthread_mutex_unlock((pthread_mutex_t *)&c->mu);
    return u;
}

/* Puts c on the server's ready list and wakes the service thread. */
static void hk_tconn_wake(hk_tconn *c)
{
    hk_tsrv *srv = c->srv;
    int add = 0;

    pthread_mutex_lock(&c->mu);
    if (!c->in_ready && !c->closed) {
        c->in_ready = 1;
        c->refs++;
        add = 1;
    }
    pthread_mutex_unlock(&c->mu);
    if (add) {
        pthread_mutex_lock(&srv->mu);
        c->ready_next = srv->ready;
        srv->ready = c;
        pthread_mutex_unlock(&srv->mu);
    }
    lws_cancel_service(srv->ctx);
}

hk_err hk_tconn_send(hk_tconn *c, const void *msg, size_t len)
{
    hk_txq *q;

    if (c == NULL || msg == NULL || len == 0 || len > HK_WS_MSG_MAX)
        return HK_ERR_ARG;
    if ((q = malloc(sizeof(*q) + LWS_PRE + len)) == NULL)
        return HK_ERR_NOMEM;
    q->next = NULL;
    q->len = len;
    memcpy(q->buf + LWS_PRE, msg, len);
    pthread_mutex_lock(&c->mu);
    if (c->closed || c->close_req) {
        pthread_mutex_unlock(&c->mu);
        free(q);
        return HK_ERR_NETWORK;
    }
    if (c->tail != NULL)
        c->tail->next = q;
    else
        c->head = q;
    c->tail = q;
    pthread_mutex_unlock(&c->mu);
    hk_tconn_wake(c);
    return HK_OK;
}

void hk_tconn_close(hk_tconn *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    c->close_req = 1;
    pthread_mutex_unlock(&c->mu);
    hk_tconn_wake(c);
}

/* Service thread: every connection on the ready list asks to write. */
static void hk_srv_drain_ready(hk_tsrv *srv)
{
    hk_tconn *list, *next;

    pthread_mutex_lock(&srv->mu);
    list = srv->ready;
    srv->ready = NULL;
    pthread_mutex_unlock(&srv->mu);
    for (; list != NULL; list = next) {
        next = list->ready_next;
        pthread_mutex_lock(&list->mu);
        list->in_ready = 0;
        pthread_mutex_unlock(&list->mu);
        if (list->wsi != NULL)
            lws_callback_on_writable(list->wsi);
        hk_tconn_unref(list);
    }
}

/* --- admission ----------------------------------------------------------- */

/* The peer's key: an IPv4 address v4-mapped, an IPv6 address's /64 (one
 * host is usually given a whole /64, so counting single addresses would
 * let it open connections without limit). */
static void hk_peer_key(const struct sockaddr_storage *sa, unsigned char k[16])
{
    memset(k, 0, 16);
    if (sa->ss_family == AF_INET) {
        k[10] = k[11] = 0xff;
        memcpy(k + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->ss_family == AF_INET6) {
        memcpy(k, &((const struct sockaddr_in6 *)sa)->sin6_addr, 8);
    }
}

static hk_peer **hk_peer_slot(hk_tsrv *srv, const unsigned char k[16])
{
    uint32_t hsh = 2166136261u; /* FNV-1a: peers are not secret */
    hk_peer **pp;
    int i;

    for (i = 0; i < 16; i++)
        hsh = (hsh ^ k[i]) * 16777619u;
    for (pp = &srv->peers[hsh & (srv->npeers - 1)]; *pp != NULL;
         pp = &(*pp)->next)
        if (memcmp((*pp)->addr, k, 16) == 0)
            break;
    return pp;
}

static void hk_peer_release(hk_tsrv *srv, hk_peer *p)
{
    hk_peer **pp;

    atomic_fetch_sub(&srv->conns, 1);
    if (--p->n > 0)
        return;
    pp = hk_peer_slot(srv, p->addr);
    *pp = p->next;
    free(p);
}

static void hk_wsi_data_free(hk_tsrv *srv, hk_wsi_data *d)
{
    if (d == NULL)
        return;
    hk_tconn_unref(d->upgrade);
    hk_peer_release(srv, d->peer);
    free(d);
}

/* LWS_CALLBACK_FILTER_NETWORK_CONNECTION: 0 admits the connection (lws
 * then creates its wsi at once: LWS_CALLBACK_WSI_CREATE takes
 * srv->adopting), nonzero closes it before any TLS work. */
static int hk_admit(hk_tsrv *srv, const struct lws_filter_network_conn_args *a)
{
    unsigned char k[16];
    hk_wsi_data *d;
    hk_peer **pp;

    /* an admitted connection lws failed to adopt (no wsi was made) */
    hk_wsi_data_free(srv, srv->adopting);
    srv->adopting = NULL;
    srv->adopting_wsi = NULL;
    if (atomic_load(&srv->conns) >= srv->max_conns) {
        atomic_fetch_add(&srv->refused_cap, 1);
        return 1;
    }
    hk_peer_key(&a->cli_addr, k);
    pp = hk_peer_slot(srv, k);
    if (*pp != NULL && srv->max_per_peer > 0 && (*pp)->n >= srv->max_per_peer) {
        atomic_fetch_add(&srv->refused_peer, 1);
        return 1;
    }
    if ((d = calloc(1, sizeof(*d))) == NULL)
        return 1;
    if (*pp == NULL && (*pp = calloc(1, sizeof(**pp))) == NULL) {
        free(d);
        return 1;
    }
    memcpy((*pp)->addr, k, 16);
    (*pp)->n++;
    d->peer = *pp;
    srv->adopting = d;
    if (atomic_fetch_add(&srv->conns, 1) + 1 > srv->trim_peak)
        srv->trim_peak = atomic_load(&srv->conns);
    return 0;
}

/* After a wave of connections has gone, gives the freed heap back to the
 * OS: glibc keeps it otherwise, and a burst of thousands of half-open
 * TLS connections would hold hundreds of MB for good. */
static void hk_trim_heap(hk_tsrv *srv)
{
    int n = atomic_load(&srv->conns);

    if (srv->trim_peak >= 64 && n <= srv->trim_peak / 2) {
        malloc_trim(0);
        srv->trim_peak = n;
    }
}

void hk_tsrv_stats_get(const hk_tsrv *srv, hk_tsrv_stats *out)
{
    out->conns = atomic_load(&srv->conns);
    out->refused_cap = atomic_load(&srv->refused_cap);
    out->refused_peer = atomic_load(&srv->refused_peer);
}

/* --- WebSocket ----------------------------------------------------------- */

static int hk_ws_writeable(hk_tconn *c)
{
    hk_txq *q;
    int close_now;

    pthread_mutex_lock(&c->mu);
    q = c->head;
    if (q != NULL) {
        c->head = q->next;
        if (c->head == NULL)
            c->tail = NULL;
    }
    close_now = q == NULL && c->close_req;
    pthread_mutex_unlock(&c->mu);
    if (close_now) {
        lws_close_reason(c->wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
        return -1;
    }
    if (q == NULL)
        return 0;
    if (lws_write(c->wsi, q->buf + LWS_PRE, q->len, LWS_WRITE_TEXT) <
        (int)q->len) {
        free(q);
        return -1;
    }
    free(q);
    lws_callback_on_writable(c->wsi); /* more queued, or a pending close */
    return 0;
}

static int hk_ws_receive(hk_tsrv *srv, struct lws *wsi, hk_tconn *c,
                         const void *in, size_t len)
{
    unsigned char *nb;

    if (lws_frame_is_binary(wsi)) {
        lws_close_reason(wsi, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE, NULL, 0);
        return -1;
    }
    if (c->rxlen + len > HK_WS_MSG_MAX) {
        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, NULL, 0);
        return -1;
    }
    if ((nb = realloc(c->rx, c->rxlen + len + 1)) == NULL)
        return -1;
    c->rx = nb;
    memcpy(c->rx + c->rxlen, in, len);
    c->rxlen += len;
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
        return 0;
    srv->h.on_ws_message(srv->h.ctx, c, c->rx, c->rxlen);
    c->rxlen = 0;
    return 0;
}

static hk_tconn *hk_tconn_new(hk_tsrv *srv, struct lws *wsi)
{
    hk_tconn *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    pthread_mutex_init(&c->mu, NULL);
    c->refs = 1; /* the transport's own reference, dropped at close */
    c->srv = srv;
    c->wsi = wsi;
    return c;
}

static void hk_ws_closed(hk_tsrv *srv, hk_tconn *c)
{
    pthread_mutex_lock(&c->mu);
    c->wsi = NULL;
    c->closed = 1;
    hk_txq_free_all(c);
    pthread_mutex_unlock(&c->mu);
    srv->h.on_ws_close(srv->h.ctx, c);
    hk_tconn_unref(c);
}

/* --- HTTP ---------------------------------------------------------------- */

/* The connection has gone (or moved on) before a deferred answer came: the
 * answer, when it comes, is dropped. */
static void hk_http_detach(hk_pss *p)
{
    hk_tconn *c = p->later;

    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    c->wsi = NULL;
    c->closed = 1;
    pthread_mutex_unlock(&c->mu);
    p->later = NULL;
    hk_tconn_unref(c);
}

static void hk_pss_clear(hk_pss *p)
{
    hk_http_detach(p);
    free(p->auth);
    free(p->body);
    free(p->resp.body);
    memset(p, 0, sizeof(*p));
}

/* The query's arguments joined by '&' into p->query: libwebsockets keeps
 * each "a=b" as a fragment of its own (lws_hdr_copy would run them
 * together). */
static int hk_http_read_query(struct lws *wsi, hk_pss *p)
{
    size_t used = 0;
    int i, n;

    for (i = 0;; i++) {
        n = lws_hdr_copy_fragment(wsi, p->query + used + (used > 0),
                                  (int)(sizeof(p->query) - used - (used > 0)),
                                  WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0)
            return lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i) > 0
                       ? 414
                       : 0;
        if (used > 0)
            p->query[used++] = '&';
        used += (size_t)n;
        if (used >= sizeof(p->query) - 1)
            return 414;
    }
}

/* Reads method, path, query and Authorization into p. */
static int hk_http_read_head(struct lws *wsi, hk_pss *p, const char *path)
{
    int post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
    int get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
    int n;

    if (!post && !get)
        return 405;
    strcpy(p->method, post ? "POST" : "GET");
    if (path == NULL || strlen(path) >= sizeof(p->path))
        return 414;
    strcpy(p->path, path);
    if ((n = hk_http_read_query(wsi, p)) != 0)
        return n;
    if ((p->auth = calloc(1, HK_AUTH_MAX + 1)) == NULL)
        return 500;
    n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n > (int)HK_AUTH_MAX)
        return 431;
    if (n > 0 && lws_hdr_copy(wsi, p->auth, HK_AUTH_MAX + 1,
                              WSI_TOKEN_HTTP_AUTHORIZATION) < 0)
        return 400;
    return 0;
}

/* The error code and reason of a refusal by hk_http_read_head. */
static const char *hk_http_status_code(int st)
{
    return st == 431 ? "header_too_large" : "bad_request";
}

static const char *hk_http_status_why(int st)
{
    switch (st) {
    case 431:
        return "Authorization header too large (tokens are limited to " HK_STR(
            HK_JWT_MAX) " bytes)";
    case 414:
        return "path or query too long";
    case 405:
        return "method not allowed";
    default:
        return "malformed request";
    }
}

static char *hk_json_error(const char *code, const char *msg)
{
    size_t n = strlen(code) + strlen(msg) + 32;
    char *s = malloc(n);

    if (s != NULL)
        snprintf(s, n, "{\"error\":\"%s\",\"message\":\"%s\"}", code, msg);
    return s;
}

/* Sends the response headers, then the body from the WRITEABLE callback. */
static int hk_http_respond(struct lws *wsi, hk_pss *p)
{
    unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *q = start;
    unsigned char *end = buf + sizeof(buf) - 1;
    const char *ctype = p->resp.content_type;
    char retry[16];
    size_t blen;

    if (p->resp.body == NULL) {
        p->resp.status = 500;
        p->resp.body = hk_json_error("internal", "no response");
        if (p->resp.body == NULL)
            return -1;
    }
    blen = strlen(p->resp.body);
    snprintf(retry, sizeof(retry), "%d", p->resp.retry_after);
    if (lws_add_http_common_headers(wsi, (unsigned)p->resp.status,
                                    ctype != NULL ? ctype : "application/json",
                                    blen, &q, end) ||
        lws_add_http_header_by_name(
            wsi, (const unsigned char *)"cache-control:",
            (const unsigned char *)"no-store", 8, &q, end) ||
        (p->resp.retry_after > 0 &&
         lws_add_http_header_by_name(wsi, (const unsigned char *)"retry-after:",
                                     (const unsigned char *)retry,
                                     (int)strlen(retry), &q, end)) ||
        lws_finalize_write_http_header(wsi, start, &q, end))
        return -1;
    p->responded = 1;
    lws_callback_on_writable(wsi);
    return 0;
}

static int hk_http_error(struct lws *wsi, hk_pss *p, int status,
                         const char *code, const char *msg)
{
    free(p->resp.body);
    p->resp.status = status;
    p->resp.body = hk_json_error(code, msg);
    return hk_http_respond(wsi, p);
}

/* The peer's address as text, for the handlers' logs. */
static const char *hk_peer_name(struct lws *wsi, char *buf, size_t cap)
{
    return lws_get_peer_simple(wsi, buf, cap) != NULL ? buf : "?";
}

static int hk_http_dispatch(hk_tsrv *srv, struct lws *wsi, hk_pss *p)
{
    char peer[64];
    hk_http_req req = {p->method,
                       p->path,
                       p->query,
                       p->auth,
                       p->body,
                       p->body_len,
                       hk_peer_name(wsi, peer, sizeof(peer))};

    p->wsi = wsi;
    srv->h.on_http(srv->h.ctx, &req, &p->resp);
    p->wsi = NULL;
    if (p->later != NULL)
        return 0; /* hk_http_answer wakes us */
    return hk_http_respond(wsi, p);
}

hk_tconn *hk_http_defer(hk_http_resp *resp)
{
    hk_pss *p;
    hk_tconn *c;

    if (resp == NULL)
        return NULL;
    p = lws_container_of(resp, hk_pss, resp);
    if (p->wsi == NULL || p->later != NULL ||
        (c = hk_tconn_new(hk_srv_of(p->wsi), p->wsi)) == NULL)
        return NULL;
    c->refs++; /* the caller's; the transport keeps the first */
    p->later = c;
    return c;
}

void hk_http_answer(hk_tconn *c, hk_http_resp *r)
{
    pthread_mutex_lock(&c->mu);
    if (!c->closed && !c->answered) {
        c->answer = *r;
        c->answered = 1;
        r->body = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    free(r->body);
    r->body = NULL;
    hk_tconn_wake(c);
}

/* Service thread, the connection writeable while an answer is awaited:
 * sends it if it has come (else the wake-up was for nothing yet). */
static int hk_http_take_answer(struct lws *wsi, hk_pss *p)
{
    hk_tconn *c = p->later;
    int got;

    pthread_mutex_lock(&c->mu);
    got = c->answered;
    if (got) {
        free(p->resp.body);
        p->resp = c->answer;
        memset(&c->answer, 0, sizeof(c->answer));
    }
    pthread_mutex_unlock(&c->mu);
    if (!got)
        return 0;
    hk_http_detach(p);
    return hk_http_respond(wsi, p);
}

static int hk_http_start(hk_tsrv *srv, struct lws *wsi, hk_pss *p,
                         const char *path)
{
    char cl[24];
    long n;
    int st;

    hk_pss_clear(p);
    if ((st = hk_http_read_head(wsi, p, path)) != 0)
        return hk_http_error(wsi, p, st, hk_http_status_code(st),
                             hk_http_status_why(st));
    if (strcmp(p->method, "GET") == 0)
        return hk_http_dispatch(srv, wsi, p);
    if (lws_hdr_copy(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0)
        return hk_http_error(wsi, p, 411, "length_required",
                             "Content-Length required");
    n = strtol(cl, NULL, 10);
    if (n < 0 || n > (long)HK_HTTP_BODY_MAX)
        return hk_http_error(wsi, p, 413, "too_large", "body too large");
    p->body_cap = (size_t)n;
    if ((p->body = malloc(p->body_cap + 1)) == NULL)
        return -1;
    if (n == 0)
        return hk_http_dispatch(srv, wsi, p);
    return 0; /* the body follows */
}

static int hk_http_body(struct lws *wsi, hk_pss *p, const void *in, size_t len)
{
    if (p->responded)
        return 0;
    if (p->body == NULL || p->body_len + len > p->body_cap)
        return hk_http_error(wsi, p, 413, "too_large", "body too large");
    memcpy(p->body + p->body_len, in, len);
    p->body_len += len;
    return 0;
}

static int hk_http_writeable(struct lws *wsi, hk_pss *p)
{
    size_t n;
    unsigned char *buf;
    int r;

    if (p->later != NULL)
        return hk_http_take_answer(wsi, p);
    if (!p->responded || p->resp.body == NULL)
        return 0;
    n = strlen(p->resp.body);
    if ((buf = malloc(LWS_PRE + n + 1)) == NULL)
        return -1;
    memcpy(buf + LWS_PRE, p->resp.body, n);
    r = lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_HTTP_FINAL);
    free(buf);
    hk_pss_clear(p);
    if (r < (int)n)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* WebSocket upgrade: the handler decides, with a proper HTTP status. The
 * per-connection data does not exist yet: the new connection handle rides
 * on the wsi's hk_wsi_data until LWS_CALLBACK_ESTABLISHED. */
static int hk_ws_confirm(hk_tsrv *srv, struct lws *wsi)
{
    hk_wsi_data *d = lws_get_opaque_user_data(wsi);
    hk_http_req req;
    hk_pss tmp;
    hk_tconn *c;
    char path[128], peer[64];
    int st;

    memset(&req, 0, sizeof(req));
    memset(&tmp, 0, sizeof(tmp));
    if (d == NULL || d->upgrade != NULL ||
        lws_hdr_copy(wsi, path, sizeof(path), WSI_TOKEN_GET_URI) <= 0)
        return -1;
    if ((st = hk_http_read_head(wsi, &tmp, path)) != 0) {
        hk_pss_clear(&tmp);
        lws_return_http_status(wsi, (unsigned)st, hk_http_status_why(st));
        return 1;
    }
    if ((c = hk_tconn_new(srv, wsi)) == NULL) {
        hk_pss_clear(&tmp);
        return -1;
    }
    req.method = tmp.method;
    req.path = tmp.path;
    req.query = tmp.query;
    req.auth = tmp.auth;
    req.peer = hk_peer_name(wsi, peer, sizeof(peer));
    st = srv->h.on_ws_open(srv->h.ctx, c, &req);
    hk_pss_clear(&tmp);
    if (st != 0) {
        c->wsi = NULL;
        c->closed = 1;
        hk_tconn_unref(c);
        lws_return_http_status(wsi, (unsigned)st, NULL);
        return 1;
    }
    d->upgrade = c;
    return 0;
}

static int hk_tls13_only(void *ssl_ctx)
{
    return SSL_CTX_set_min_proto_version((SSL_CTX *)ssl_ctx, TLS1_3_VERSION) ==
                   1
               ? 0
               : 1;
}

static int hk_srv_callback(struct lws *wsi, enum lws_callback_reasons reason,
                           void *user, void *in, size_t len)
{
    hk_tsrv *srv = hk_srv_of(wsi);
    hk_pss *p = user;

    switch (reason) {
    case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
        return hk_tls13_only(user);
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (srv != NULL)
            hk_srv_drain_ready(srv);
        return 0;
    case LWS_CALLBACK_HTTP:
        return hk_http_start(srv, wsi, p, in);
    case LWS_CALLBACK_HTTP_BODY:
        return hk_http_body(wsi, p, in, len);
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return p->responded ? 0 : hk_http_dispatch(srv, wsi, p);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return hk_http_writeable(wsi, p);
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return hk_ws_confirm(srv, wsi);
    case LWS_CALLBACK_ESTABLISHED: {
        hk_wsi_data *d = lws_get_opaque_user_data(wsi);

        p->conn = d != NULL ? d->upgrade : NULL;
        if (d != NULL)
            d->upgrade = NULL;
        return p->conn == NULL ? -1 : 0;
    }
    case LWS_CALLBACK_RECEIVE:
        return p->conn == NULL ? -1 : hk_ws_receive(srv, wsi, p->conn, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return p->conn == NULL ? -1 : hk_ws_writeable(p->conn);
    case LWS_CALLBACK_CLOSED:
        if (p->conn != NULL)
            hk_ws_closed(srv, p->conn);
        p->conn = NULL;
        return 0;
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
        return hk_admit(srv, user);
    case LWS_CALLBACK_WSI_CREATE:
        /* the wsi of the connection hk_admit just let in */
        if (srv != NULL && srv->adopting != NULL && srv->adopting_wsi == NULL)
            srv->adopting_wsi = wsi;
        return 0;
    case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
        if (srv != NULL && wsi == srv->adopting_wsi) {
            lws_set_opaque_user_data(wsi, srv->adopting);
            srv->adopting = NULL;
            srv->adopting_wsi = NULL;
        }
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        /* also drops an upgrade accepted but never established */
        if (srv != NULL && wsi == srv->adopting_wsi) {
            hk_wsi_data_free(srv, srv->adopting);
            srv->adopting = NULL;
            srv->adopting_wsi = NULL;
        } else if (srv != NULL) {
            hk_wsi_data_free(srv, lws_get_opaque_user_data(wsi));
        }
        lws_set_opaque_user_data(wsi, NULL);
        return 0;
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
        if (p != NULL && p->conn == NULL)
            hk_pss_clear(p);
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols hk_protocols[] = {
    {"halfkey", hk_srv_callback, sizeof(hk_pss), 4096, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

/* Why libwebsockets could not listen (it does not say): a bind of our
 * own to the same address and port gives the errno. */
static void hk_listen_why(const struct sockaddr_storage *want,
                          const char *iface, int port, char *why)
{
    struct sockaddr_storage sa = *want;
    int fd = socket(sa.ss_family, SOCK_STREAM, 0), one = 1, err = 0;

    if (sa.ss_family == AF_INET)
        ((struct sockaddr_in *)&sa)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)&sa)->sin6_port = htons((uint16_t)port);
    if (fd >= 0 &&
        (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
         bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0))
        err = errno;
    if (fd >= 0)
        close(fd);
    if (err == EADDRINUSE)
        snprintf(why, 256,
                 "cannot listen on %.64s port %d: the port is in use (another "
                 "halfkeyd or program holds it: stop it, or set another "
                 "port in the configuration)",
                 iface, port);
    else if (err == EACCES)
        snprintf(why, 256,
                 "cannot listen on %.64s port %d: permission denied (a port "
                 "below 1024 needs CAP_NET_BIND_SERVICE)",
                 iface, port);
    else
        snprintf(why, 256, "cannot listen on %.64s port %d%s%.80s", iface, port,
                 err ? ": " : "", err ? strerror(err) : "");
}

static void hk_srv_tick(lws_sorted_usec_list_t *sul)
{
    hk_tsrv *srv = lws_container_of(sul, hk_tsrv, tick);

    if (srv->h.on_tick != NULL)
        srv->h.on_tick(srv->h.ctx);
    hk_trim_heap(srv);
    lws_sul_schedule(srv->ctx, 0, &srv->tick, hk_srv_tick, LWS_US_PER_SEC);
}

/* The bind options for an address literal: libwebsockets 4.1 with IPv6
 * support puts every listener on an AF_INET6 socket, and an IPv4 address
 * there is lost (it binds the IPv6 wildcard with v6only off: every
 * interface). So an IPv4 address turns IPv6 off for the vhost, and an
 * IPv6 one asks for v6only. -1 if addr is not an IP literal. */
static int hk_bind_options(const char *addr, uint64_t *opts,
                           struct sockaddr_storage *want)
{
    struct sockaddr_in *a4 = (struct sockaddr_in *)want;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)want;

    memset(want, 0, sizeof(*want));
    if (addr != NULL && inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        *opts |= LWS_SERVER_OPTION_DISABLE_IPV6;
        return 0;
    }
    if (addr != NULL && inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        *opts |= LWS_SERVER_OPTION_IPV6_V6ONLY_MODIFY |
                 LWS_SERVER_OPTION_IPV6_V6ONLY_VALUE;
        return 0;
    }
    return -1;
}

/* 1 if the listening socket fd is bound to want's address and port (and an
 * IPv6 one is v6only); its address is written to text. */
static int hk_listen_matches(int fd, const struct sockaddr_storage *want,
                             int port, char *text, size_t cap)
{
    struct sockaddr_storage got;
    socklen_t len = sizeof(got);
    int v6only = 0;
    socklen_t olen = sizeof(v6only);

    if (getsockname(fd, (struct sockaddr *)&got, &len) != 0)
        return 0;
    if (got.ss_family == AF_INET) {
        const struct sockaddr_in *g = (const struct sockaddr_in *)&got;

        inet_ntop(AF_INET, &g->sin_addr, text, (socklen_t)cap);
        return want->ss_family == AF_INET && ntohs(g->sin_port) == port &&
               memcmp(&g->sin_addr,
                      &((const struct sockaddr_in *)want)->sin_addr,
                      sizeof(g->sin_addr)) == 0;
    }
    if (got.ss_family == AF_INET6) {
        const struct sockaddr_in6 *g = (const struct sockaddr_in6 *)&got;

        inet_ntop(AF_INET6, &g->sin6_addr, text, (socklen_t)cap);
        if (getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &olen) != 0)
            v6only = 0;
        return want->ss_family == AF_INET6 && ntohs(g->sin6_port) == port &&
               v6only &&
               memcmp(&g->sin6_addr,
                      &((const struct sockaddr_in6 *)want)->sin6_addr,
                      sizeof(g->sin6_addr)) == 0;
    }
    snprintf(text, cap, "family %d", got.ss_family);
    return 0;
}

/* Reads back what was bound: libwebsockets 4.1 does not expose its listen
 * socket, so every listening TCP socket of this process on our port is
 * looked at (/proc/self/fd: the service has just started, there is one).
 * Exactly one, bound as configured, or why[256] says what was found. */
static hk_err hk_listen_verify(hk_tsrv *srv,
                               const struct sockaddr_storage *want, char *why)
{
    char name[INET6_ADDRSTRLEN + 16] = "";
    struct sockaddr_storage sa;
    struct dirent *de;
    int fd, acc, found = 0, ok = 0;
    socklen_t len, olen;
    DIR *dir = opendir("/proc/self/fd");
    hk_err e = HK_ERR_NETWORK;

    if (dir == NULL) {
        snprintf(why, 256, "cannot read /proc/self/fd to check the bind");
        return e;
    }
    while ((de = readdir(dir)) != NULL) {
        fd = atoi(de->d_name);
        len = sizeof(sa);
        olen = sizeof(acc);
        if (de->d_name[0] < '0' || de->d_name[0] > '9' || fd == dirfd(dir) ||
            getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &olen) != 0 ||
            !acc || getsockname(fd, (struct sockaddr *)&sa, &len) != 0 ||
            (sa.ss_family != AF_INET && sa.ss_family != AF_INET6) ||
            ntohs(((struct sockaddr_in *)&sa)->sin_port) != srv->port)
            continue;
        found++;
        ok = hk_listen_matches(fd, want, srv->port, name, sizeof(name));
    }
    closedir(dir);
    if (found == 1 && ok) {
        snprintf(srv->address, sizeof(srv->address), "%s", name);
        e = HK_OK;
    } else if (found == 0) {
        snprintf(why, 256, "no listening socket on port %d", srv->port);
    } else {
        snprintf(why, 256,
                 "bound %s%s on port %d (%d listening sockets), not exactly "
                 "the configured address",
                 name, found == 1 && !ok ? " (or not v6only)" : "", srv->port,
                 found);
    }
    return e;
}

hk_err hk_tsrv_new(const hk_tsrv_config *cfg, const hk_tsrv_handlers *h,
                   hk_tsrv **out, char *why)
{
    struct lws_context_creation_info info;
    struct sockaddr_storage want;
    char whybuf[256] = "";
    uint64_t opts = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
                    LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS |
                    LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
    hk_tsrv *srv = NULL;
    hk_err e = HK_ERR_ARG;

    if (why == NULL)
        why = whybuf;
    why[0] = 0;
    if (cfg == NULL || h == NULL || out == NULL || cfg->cert_file == NULL ||
        cfg->key_file == NULL || h->on_http == NULL || h->on_ws_open == NULL ||
        h->on_ws_message == NULL || h->on_ws_close == NULL ||
        cfg->max_conns < 0 || cfg->max_per_peer < 0)
        return HK_ERR_ARG;
    if (hk_bind_options(cfg->iface, &opts, &want) != 0) {
        snprintf(why, 256, "listen address %.64s is not an IP address",
                 cfg->iface != NULL ? cfg->iface : "(none)");
        return HK_ERR_CONFIG;
    }
    if ((srv = calloc(1, sizeof(*srv))) == NULL)
        return HK_ERR_NOMEM;
    pthread_mutex_init(&srv->mu, NULL);
    srv->h = *h;
    srv->max_conns =
        cfg->max_conns > 0 ? cfg->max_conns : HK_TSRV_CONNS_DEFAULT;
    srv->max_per_peer = cfg->max_per_peer;
    /* about two connections per bucket at the cap */
    for (srv->npeers = 16; srv->npeers < (size_t)srv->max_conns / 2;)
        srv->npeers *= 2;
    e = HK_ERR_NOMEM;
    if ((srv->peers = calloc(srv->npeers, sizeof(*srv->peers))) == NULL)
        goto fail;
    memset(&info, 0, sizeof(info));
    info.port = cfg->port > 0 ? cfg->port : 0;
    info.iface = cfg->iface;
    info.protocols = hk_protocols;
    info.user = srv;
    /* The server trusts no client certificate: no OS CA store. */
    info.options = opts;
    info.ssl_cert_filepath = cfg->cert_file;
    info.ssl_private_key_filepath = cfg->key_file;
    info.ssl_options_set = SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 |
                           SSL_OP_NO_TLSv1_1 | SSL_OP_NO_TLSv1_2;
    info.alpn = "http/1.1";
    info.timeout_secs = 30;
    /* the default (4096) drops tokens above ~4 KB without an answer */
    info.max_http_header_data = (unsigned short)HK_HTTP_HEADER_MAX;
    e = HK_ERR_NETWORK;
    srv->ctx = lws_create_context(&info);
    if (srv->ctx == NULL) {
        hk_listen_why(&want, cfg->iface != NULL ? cfg->iface : "*", cfg->port,
                      why);
        goto fail;
    }
    srv->port =
        lws_get_vhost_listen_port(lws_get_vhost_by_name(srv->ctx, "default"));
    if ((e = hk_listen_verify(srv, &want, why)) != HK_OK)
        goto fail;
    lws_sul_schedule(srv->ctx, 0, &srv->tick, hk_srv_tick, LWS_US_PER_SEC);
    *out = srv;
    return HK_OK;
fail:
    hk_tsrv_free(srv);
    return e;
}

const char *hk_tsrv_address(const hk_tsrv *srv) { return srv->address; }

int hk_tsrv_port(const hk_tsrv *srv) { return srv->port; }

hk_err hk_tsrv_run(hk_tsrv *srv)
{
    if (srv == NULL)
        return HK_ERR_ARG;
    while (!atomic_load(&srv->stop))
        if (lws_service(srv->ctx, 0) < 0)
            return HK_ERR_NETWORK;
    return HK_OK;
}

void hk_tsrv_stop(hk_tsrv *srv)
{
    atomic_store(&srv->stop, 1);
    lws_cancel_service(srv->ctx);
}

void hk_tsrv_free(hk_tsrv *srv)
{
    if (srv == NULL)
        return;
    if (srv->ctx != NULL)
        lws_context_destroy(srv->ctx); /* every wsi's data goes here */
    if (srv->adopting != NULL)
        hk_wsi_data_free(srv, srv->adopting);
    free(srv->peers);
    pthread_mutex_destroy(&srv->mu);
    free(srv);
}
