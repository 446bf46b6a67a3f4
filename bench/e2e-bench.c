/* e2e-bench: end-to-end signing through a running halfkeyd over loopback
 * TLS 1.3 WebSocket, with the real client core: a new connection and
 * session per sign (as the CLI does), or sessions on a kept-open
 * connection (--keep-open).
 *
 *   e2e-bench --dir TOKEN --key LABEL [--runs N]        latency p50/p99
 *   ... [--keep-open]   one kept-open connection per client instead
 *   e2e-bench --dir TOKEN --key PREFIX --clients N --seconds S
 *                                   throughput: N clients, keys PREFIX-0..
 * The PIN comes from $HALFKEY_PIN. Prints a table line and a JSON line,
 * beside one single-party OpenSSL ECDSA sign in the same run. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libwebsockets.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "client/client.h"

typedef struct {
    const char *dir, *key;
    int runs, clients, seconds, keep_open;
} hk_eopts;

typedef struct {
    const hk_eopts *o;
    char label[80];
    int count, failed;
    double *lat;
    int cap;
} hk_ethread;

static double hk_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int hk_cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double hk_pct(double *v, int n, double p)
{
    int i = (int)(p * n + 0.999999) - 1;

    qsort(v, (size_t)n, sizeof(double), hk_cmpd);
    return v[i < 0 ? 0 : (i >= n ? n - 1 : i)];
}

static hk_client *hk_eopen(const char *dir)
{
    const char *pin = getenv("HALFKEY_PIN");
    char why[256];
    hk_client *c;

    if (pin == NULL || hk_client_open(dir, &c, why) != HK_OK ||
        hk_ks_login(hk_client_keystore(c), pin) != HK_OK) {
        fprintf(stderr, "e2e-bench: cannot open/login token %s %s\n", dir, why);
        exit(1);
    }
    return c;
}

static void *hk_ethread_main(void *p)
{
    hk_ethread *t = p;
    unsigned char dig[32], sig[HK_SIG_LEN];
    hk_client *c = hk_eopen(t->o->dir);
    double end = hk_wall_ms() + t->o->seconds * 1e3, t0;
    hk_channel *ch = NULL;
    hk_err e;

    while (hk_wall_ms() < end && t->count < t->cap) {
        if (RAND_bytes(dig, sizeof(dig)) != 1)
            break;
        t0 = hk_wall_ms();
        if (t->o->keep_open && ch == NULL &&
            hk_client_channel_open(c, &ch) != HK_OK) {
            t->failed++;
            continue;
        }
        e = ch != NULL
                ? hk_client_channel_sign(c, ch, t->label, dig, sizeof(dig), sig)
                : hk_client_sign(c, t->label, dig, sizeof(dig), sig);
        if (e != HK_OK) {
            t->failed++;
            hk_client_channel_close(ch);
            ch = NULL;
            continue;
        }
        t->lat[t->count++] = hk_wall_ms() - t0;
    }
    hk_client_channel_close(ch);
    hk_client_close(c);
    return NULL;
}

static double hk_baseline(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    unsigned char dig[32] = {1}, sig[80];
    double t0 = hk_wall_ms();
    int i;

    for (i = 0; i < 200; i++) {
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k, NULL);
        size_t len = sizeof(sig);

        if (ctx == NULL || EVP_PKEY_sign_init(ctx) != 1 ||
            EVP_PKEY_sign(ctx, sig, &len, dig, sizeof(dig)) != 1)
            exit(1);
        EVP_PKEY_CTX_free(ctx);
    }
    EVP_PKEY_free(k);
    return (hk_wall_ms() - t0) / 200;
}

static int hk_run(const hk_eopts *o)
{
    int n = o->clients > 0 ? o->clients : 1, i, total = 0, failed = 0, k = 0;
    hk_ethread *t = calloc((size_t)n, sizeof(*t));
    pthread_t *th = calloc((size_t)n, sizeof(*th));
    double t0, secs, *all;

    if (t == NULL || th == NULL)
        return 1;
    for (i = 0; i < n; i++) {
        t[i].o = o;
        t[i].cap = o->clients > 0 ? 1000000 : o->runs;
        t[i].lat = calloc((size_t)t[i].cap, sizeof(double));
        if (o->clients > 0)
            snprintf(t[i].label, sizeof(t[i].label), "%s-%d", o->key, i);
        else
            snprintf(t[i].label, sizeof(t[i].label), "%s", o->key);
    }
    t0 = hk_wall_ms();
    for (i = 0; i < n; i++)
        pthread_create(&th[i], NULL, hk_ethread_main, &t[i]);
    for (i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        total += t[i].count;
        failed += t[i].failed;
    }
    secs = (hk_wall_ms() - t0) / 1e3;
    all = calloc((size_t)(total > 0 ? total : 1), sizeof(double));
    for (i = 0; i < n; i++) {
        memcpy(all + k, t[i].lat, (size_t)t[i].count * sizeof(double));
        k += t[i].count;
    }
    if (total == 0) {
        fprintf(stderr, "e2e-bench: no signature succeeded\n");
        return 1;
    }
    printf("e2e sign (%s), %d client(s), %d signs in %.1f s: p50 %.2f ms, "
           "p99 %.2f ms, %.1f signs/s, %d failed; single-party OpenSSL "
           "P-256 sign %.3f ms\n",
           o->keep_open ? "kept-open connection" : "new connection per sign", n,
           total, secs, hk_pct(all, total, 0.5), hk_pct(all, total, 0.99),
           total / secs, failed, hk_baseline());
    printf("{\"bench\":\"e2e-sign\",\"keep_open\":%d,\"clients\":%d,"
           "\"signs\":%d,\"seconds\":%.2f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
           "\"signs_per_s\":%.2f,\"failed\":%d}\n",
           o->keep_open, n, total, secs, hk_pct(all, total, 0.5),
           hk_pct(all, total, 0.99), total / secs, failed);
    return failed > 0;
}

int main(int argc, char **argv)
{
    hk_eopts o = {NULL, NULL, 50, 0, 10, 0};
    int i;

    lws_set_log_level(LLL_ERR, NULL);
    for (i = 1; i < argc && strcmp(argv[i], "--keep-open") != 0; i++)
        ;
    if (i < argc) { /* a flag without a value: take it out */
        o.keep_open = 1;
        for (; i + 1 < argc; i++)
            argv[i] = argv[i + 1];
        argc--;
    }
    for (i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--dir") == 0)
            o.dir = argv[i + 1];
        else if (strcmp(argv[i], "--key") == 0)
            o.key = argv[i + 1];
        else if (strcmp(argv[i], "--runs") == 0)
            o.runs = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--clients") == 0)
            o.clients = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--seconds") == 0)
            o.seconds = atoi(argv[i + 1]);
        else
            break;
    }
    if (i != argc || o.dir == NULL || o.key == NULL || o.runs < 1 ||
        o.runs > 100000 || o.clients < 0 || o.clients > 256 || o.seconds < 1 ||
        o.seconds > 600) {
        fprintf(stderr, "usage: e2e-bench --dir TOKEN --key LABEL [--runs N]"
                        " | --clients N --seconds S\n");
        return 2;
    }
    if (o.clients == 0)
        o.seconds = 600;
    return hk_run(&o);
}
