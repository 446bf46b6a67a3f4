/* e2e-bench: end-to-end signing through a running halfkeyd over loopback
 * TLS 1.3 WebSocket, with the real client core: a new connection per
 * sign (as a one-shot CLI process: one WebSocket, the session opened on
 * it), or sessions on a kept-open connection (--keep-open MODE).
 *
 *   e2e-bench --dir TOKEN --key LABEL [--runs N]        latency p50/p99
 *   ... [--keep-open plain|auto|idle]   one kept-open connection per
 *       client instead: plain, the three-message protocol of every sign;
 *       auto, presignatures made by the channel when it finds none (the
 *       batch counted in that sign's time); idle, presignatures made
 *       between signs (16 at a time, outside the timed sign, as a client
 *       that refills in idle time; counted in signs/s and server CPU)
 *   ... [--keep-open client]   hk_client_sign, which keeps its connection
 *       and refills its presignatures in idle time (the PKCS#11 module,
 *       the provider); 100 ms of idle time between signs
 *   ... [--keep-open stored]   a new connection per sign as above, each
 *       on a presignature stored on disk (`halfkey presign`, 16 at a time
 *       outside the timed sign)
 *   e2e-bench --dir TOKEN --key PREFIX --clients N --seconds S
 *                                   throughput: N clients, keys PREFIX-0..
 *   ... [--server-pid PID]   halfkeyd's CPU per signature (all its
 *       threads, presignatures included) and its RSS before and after
 * The PIN comes from $HALFKEY_PIN. Prints a table line and a JSON line,
 * beside one single-party OpenSSL ECDSA sign in the same run. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "client/client.h"

enum { HK_NEW_CONN, HK_PLAIN, HK_AUTO, HK_IDLE, HK_STORED, HK_CLIENT };
static const char *const hk_mode_names[] = {
    "new connection per sign",
    "kept-open, plain",
    "kept-open, presigned (auto)",
    "kept-open, presigned (idle)",
    "new connection per sign, stored presignature",
    "hk_client_sign: kept-open, presigned, refilled in idle time"};

typedef struct {
    const char *dir, *key;
    int runs, clients, seconds, mode, server_pid;
} hk_eopts;

typedef struct {
    const hk_eopts *o;
    char label[80];
    int count, failed;
    double *lat;
    int cap;
    unsigned long resumed; /* connections that resumed a TLS session */
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
    char why[256] = "";
    hk_client *c;
    hk_err e;

    if (pin == NULL) {
        fprintf(stderr, "e2e-bench: set HALFKEY_PIN to the token's PIN\n");
        exit(1);
    }
    if ((e = hk_client_open(dir, &c, why)) != HK_OK ||
        (e = hk_ks_login(hk_client_keystore(c), pin)) != HK_OK) {
        fprintf(stderr, "e2e-bench: cannot open/login token %s: %s %s\n", dir,
                hk_strerror(e), why);
        exit(1);
    }
    return c;
}

/* Removes the key's stored presignatures left by the stored mode. */
static void hk_estored_drop(hk_client *c, const char *label)
{
    hk_ks_keyinfo info;

    if (hk_ks_key_info(hk_client_keystore(c), label, &info) != HK_OK ||
        hk_ks_presig_drop(hk_client_keystore(c), info.kid) != HK_OK)
        fprintf(stderr, "e2e-bench: stored presignatures of %s left\n", label);
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
        /* idle time: `halfkey presign`, outside the timed sign */
        if (t->o->mode == HK_STORED && t->count % 16 == 0 &&
            hk_client_presign(c, t->label, 16, NULL) != HK_OK) {
            t->failed++;
            continue;
        }
        if (t->o->mode != HK_NEW_CONN && t->o->mode != HK_STORED &&
            t->o->mode != HK_CLIENT && ch == NULL) {
            if (hk_client_channel_open(c, &ch) != HK_OK) {
                t->failed++;
                continue;
            }
            hk_client_channel_set_presign(ch, c, t->o->mode == HK_AUTO);
        }
        /* idle time: the pool refilled outside the timed sign */
        if (t->o->mode == HK_IDLE &&
            hk_client_channel_presigs(ch, c, t->label) == 0 &&
            hk_client_channel_presign(c, ch, t->label, 16) != HK_OK) {
            t->failed++;
            hk_client_channel_close(ch);
            ch = NULL;
            continue;
        }
        t0 = hk_wall_ms();
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
        /* hk_client_sign keeps it: a new one each time, but in client
         * mode (what the PKCS#11 module and the provider do), which
         * leaves 100 ms of idle time between signs, as a host does */
        if (ch == NULL && t->o->mode != HK_CLIENT)
            hk_client_idle_close(c);
        if (t->o->mode == HK_CLIENT)
            nanosleep(&(struct timespec){0, 100000000L}, NULL);
    }
    hk_client_channel_close(ch);
    if (t->o->mode == HK_STORED) /* the next mode starts without any */
        hk_estored_drop(c, t->label);
    t->resumed = hk_client_tls_resumed(c);
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

/* halfkeyd's CPU (all threads, ms) and RSS (KiB) from /proc. */
static int hk_proc_usage(int pid, double *cpu_ms, long *rss_kb)
{
    char path[64], buf[1024], *p;
    unsigned long ut = 0, st = 0;
    FILE *f;
    int i;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    if ((f = fopen(path, "r")) == NULL)
        return 0;
    p = fgets(buf, sizeof(buf), f);
    fclose(f);
    if (p == NULL || (p = strrchr(buf, ')')) == NULL)
        return 0;
    for (i = 0; i < 12 && p != NULL; i++) /* fields 3..14: utime is 14 */
        p = strchr(p + 1, ' ');
    if (p == NULL || sscanf(p, "%lu %lu", &ut, &st) != 2)
        return 0;
    *cpu_ms = (double)(ut + st) * 1e3 / (double)sysconf(_SC_CLK_TCK);
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    if ((f = fopen(path, "r")) == NULL)
        return 0;
    *rss_kb = 0;
    while (fgets(buf, sizeof(buf), f) != NULL)
        if (sscanf(buf, "VmRSS: %ld", rss_kb) == 1)
            break;
    fclose(f);
    return 1;
}

static int hk_run(const hk_eopts *o)
{
    double cpu0 = 0, cpu1 = 0;
    long rss0 = 0, rss1 = 0;
    int n = o->clients > 0 ? o->clients : 1, i, total = 0, failed = 0, k = 0;
    hk_ethread *t = calloc((size_t)n, sizeof(*t));
    pthread_t *th = calloc((size_t)n, sizeof(*th));
    double t0, secs, *all;
    unsigned long resumed = 0;

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
    if (o->server_pid > 0 && !hk_proc_usage(o->server_pid, &cpu0, &rss0))
        return 2;
    t0 = hk_wall_ms();
    for (i = 0; i < n; i++)
        pthread_create(&th[i], NULL, hk_ethread_main, &t[i]);
    for (i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        total += t[i].count;
        failed += t[i].failed;
        resumed += t[i].resumed;
    }
    secs = (hk_wall_ms() - t0) / 1e3;
    if (o->server_pid > 0 && !hk_proc_usage(o->server_pid, &cpu1, &rss1))
        return 2;
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
           hk_mode_names[o->mode], n, total, secs, hk_pct(all, total, 0.5),
           hk_pct(all, total, 0.99), total / secs, failed, hk_baseline());
    if (o->server_pid > 0)
        printf("  halfkeyd: %.2f ms CPU per signature (all threads, "
               "presignatures included); RSS %ld -> %ld KiB\n",
               (cpu1 - cpu0) / total, rss0, rss1);
    /* a new connection per sign resumes the TLS session of an earlier
     * one (transport/http_client.h) */
    printf("  TLS: %lu connections resumed a session\n", resumed);
    printf("{\"bench\":\"e2e-sign\",\"mode\":\"%s\",\"clients\":%d,"
           "\"signs\":%d,\"seconds\":%.2f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
           "\"signs_per_s\":%.2f,\"failed\":%d,\"server_cpu_ms_per_sign\":"
           "%.3f,\"server_rss_kb\":[%ld,%ld],\"tls_resumed\":%lu}\n",
           hk_mode_names[o->mode], n, total, secs, hk_pct(all, total, 0.5),
           hk_pct(all, total, 0.99), total / secs, failed,
           o->server_pid > 0 ? (cpu1 - cpu0) / total : -1.0, rss0, rss1,
           resumed);
    return failed > 0;
}

static int hk_mode(const char *s)
{
    if (strcmp(s, "plain") == 0)
        return HK_PLAIN;
    if (strcmp(s, "auto") == 0)
        return HK_AUTO;
    if (strcmp(s, "stored") == 0)
        return HK_STORED;
    if (strcmp(s, "client") == 0)
        return HK_CLIENT;
    return strcmp(s, "idle") == 0 ? HK_IDLE : -1;
}

int main(int argc, char **argv)
{
    hk_eopts o = {NULL, NULL, 50, 0, 10, HK_NEW_CONN, 0};
    int i;

    lws_set_log_level(LLL_ERR, NULL);
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
        else if (strcmp(argv[i], "--keep-open") == 0)
            o.mode = hk_mode(argv[i + 1]);
        else if (strcmp(argv[i], "--server-pid") == 0)
            o.server_pid = atoi(argv[i + 1]);
        else
            break;
    }
    if (i != argc || o.dir == NULL || o.key == NULL || o.runs < 1 ||
        o.runs > 100000 || o.clients < 0 || o.clients > 256 || o.seconds < 1 ||
        o.seconds > 900 || o.mode < 0 || o.server_pid < 0) {
        fprintf(stderr, "usage: e2e-bench --dir TOKEN --key LABEL [--runs N]"
                        " | --clients N --seconds S  [--keep-open "
                        "plain|auto|idle|stored|client] [--server-pid PID]\n");
        return 2;
    }
    if (o.clients == 0)
        o.seconds = 600;
    return hk_run(&o);
}
