/* mpc-bench: in-process (no network) latency of keygen, sign and refresh.
 *
 * For each curve and Paillier size: median and p99 over N runs of the
 * critical path (CPU time of the steps the client waits for, in order),
 * each party's CPU time, and the bytes of every message; beside them one
 * single-party ECDSA sign of the same curve in the same run (OpenSSL EVP,
 * and libsecp256k1 for secp256k1). Then keygen and refresh in wall-clock
 * time (which counts the helper threads), without and with the client's
 * prime pool, alternating run by run. Prints a table, then one JSON line
 * per figure, and a sample signature that tests verify independently.
 *
 *   mpc-bench [--runs N] [--curve secp256k1|p256|all] [--pbits 2048|3072|all]
 *             [--json-only]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <secp256k1.h>

#include "tests/unit/driver.h"

typedef struct {
    int runs, json_only;
    int curves[2], ncurves;
    int pbits[2], npbits;
} hk_bench_opts;

typedef struct {
    double *crit, *p1, *p2;
    size_t bytes[HK_DRIVE_MAX_MSGS];
    int nmsgs, n;
    double offline;
} hk_series;

static void hk_series_init(hk_series *s, int n)
{
    memset(s, 0, sizeof(*s));
    s->crit = calloc((size_t)n, sizeof(double));
    s->p1 = calloc((size_t)n, sizeof(double));
    s->p2 = calloc((size_t)n, sizeof(double));
    if (s->crit == NULL || s->p1 == NULL || s->p2 == NULL)
        abort();
}

static void hk_series_add(hk_series *s, const hk_drive_stats *st)
{
    s->crit[s->n] = st->critical_ms;
    s->p1[s->n] = st->p1_ms;
    s->p2[s->n] = st->p2_ms;
    s->offline += st->offline_ms;
    s->nmsgs = st->nmsgs;
    memcpy(s->bytes, st->bytes, sizeof(s->bytes));
    s->n++;
}

static void hk_series_free(hk_series *s)
{
    free(s->crit);
    free(s->p1);
    free(s->p2);
}

static void hk_die(const char *what, hk_err e)
{
    fprintf(stderr, "mpc-bench: %s: %s\n", what, hk_strerror(e));
    exit(1);
}

/* Single-party baselines: OpenSSL EVP sign and libsecp256k1 sign. */
static double hk_baseline_evp(hk_curve_id curve, int runs)
{
    const char *grp = curve == HK_CURVE_SECP256K1 ? "secp256k1" : "P-256";
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", grp);
    unsigned char dig[32] = {1}, sig[80];
    double *v = calloc((size_t)runs, sizeof(double)), r;
    int i;

    if (key == NULL || v == NULL)
        abort();
    for (i = 0; i < runs; i++) {
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
        size_t len = sizeof(sig);
        double t0 = hk_drive_cpu_ms();

        if (ctx == NULL || EVP_PKEY_sign_init(ctx) != 1 ||
            EVP_PKEY_sign(ctx, sig, &len, dig, sizeof(dig)) != 1)
            abort();
        v[i] = hk_drive_cpu_ms() - t0;
        EVP_PKEY_CTX_free(ctx);
    }
    r = hk_drive_pct(v, runs, 0.5);
    free(v);
    EVP_PKEY_free(key);
    return r;
}

static double hk_baseline_k1(int runs)
{
    secp256k1_context *ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    secp256k1_ecdsa_signature sig;
    unsigned char key[32], dig[32] = {1};
    double *v = calloc((size_t)runs, sizeof(double)), r;
    int i;

    if (ctx == NULL || v == NULL || RAND_bytes(key, 32) != 1)
        abort();
    for (i = 0; i < runs; i++) {
        double t0 = hk_drive_cpu_ms();

        if (!secp256k1_ecdsa_sign(ctx, &sig, dig, key, NULL, NULL))
            abort();
        v[i] = hk_drive_cpu_ms() - t0;
    }
    r = hk_drive_pct(v, runs, 0.5);
    free(v);
    secp256k1_context_destroy(ctx);
    return r;
}

static void hk_report(const hk_bench_opts *o, const char *op, hk_curve_id curve,
                      int pbits, hk_series *s, double base_evp, double base_k1)
{
    double c50 = hk_drive_pct(s->crit, s->n, 0.5),
           c99 = hk_drive_pct(s->crit, s->n, 0.99);
    double a50 = hk_drive_pct(s->p1, s->n, 0.5),
           b50 = hk_drive_pct(s->p2, s->n, 0.5);
    char bytes[128] = "", *p = bytes;
    int i;

    for (i = 0; i < s->nmsgs; i++)
        p += snprintf(p, sizeof(bytes) - (size_t)(p - bytes), "%s%zu",
                      i ? "," : "", s->bytes[i]);
    if (!o->json_only) {
        char k1[16] = "       -";

        if (base_k1 > 0)
            snprintf(k1, sizeof(k1), "%8.3f", base_k1);
        printf("%-14s %-9s %5d %4d %8.2f %8.2f %8.2f %8.2f %8.3f %s  %s\n", op,
               hk_curve_name(curve), pbits, s->n, c50, c99, a50, b50, base_evp,
               k1, bytes);
    }
    printf("{\"bench\":\"mpc\",\"op\":\"%s\",\"curve\":\"%s\",\"pbits\":%d,"
           "\"runs\":%d,\"critical_p50_ms\":%.3f,\"critical_p99_ms\":%.3f,"
           "\"p1_cpu_p50_ms\":%.3f,\"p2_cpu_p50_ms\":%.3f,"
           "\"p2_offline_mean_ms\":%.3f,\"msg_bytes\":[%s],"
           "\"single_party_openssl_ms\":%.4f,\"single_party_secp256k1_ms\":"
           "%.4f}\n",
           op, hk_curve_name(curve), pbits, s->n, c50, c99, a50, b50,
           s->n ? s->offline / s->n : 0.0, bytes, base_evp, base_k1);
}

/* Issue 20 item 5: keygen and refresh critical path in wall-clock time
 * (the prime search and the proofs run on two threads), without the pool
 * (P1 searches its primes) and with it (P1's key is built from primes made
 * beforehand, as hk_ks_pool_take does after reading the entry: the build
 * is timed and counted, the primes' search is not; the entry's file I/O
 * is ks-bench's). Runs alternate so both see the same load. */
/* A key as a pool entry gives it (its primes searched untimed, as in
 * idle time): *pk, and the wall ms of building it from the primes. */
static double hk_pool_key(int pbits, hk_paillier_sk **pk)
{
    hk_paillier_sk *key = NULL;
    double w0;
    hk_err e;

    if ((e = hk_paillier_keygen(pbits, &key)) != HK_OK)
        hk_die("paillier keygen", e);
    w0 = hk_drive_wall_ms();
    if ((e = hk_paillier_keygen_from_primes(
             hk_paillier_sk_p(key), hk_paillier_sk_q(key), pbits, pk)) != HK_OK)
        hk_die("key from primes", e);
    w0 = hk_drive_wall_ms() - w0;
    hk_paillier_sk_free(key);
    return w0;
}

static void hk_bench_pool(const hk_bench_opts *o, const hk_rped_secret *rp,
                          hk_curve_id curve, int pbits, const hk_share *s1,
                          const hk_share *s2)
{
    int slow = o->runs / 4 > 3 ? o->runs / 4 : 3, i, t, j;
    double *v[4], p50[4];
    static const char *const name[4] = {"keygen-wall", "keygen-pool",
                                        "refresh-wall", "refresh-pool"};
    hk_share *n1, *n2;
    hk_drive_stats st;
    hk_err e;

    for (j = 0; j < 4; j++)
        if ((v[j] = calloc((size_t)slow, sizeof(double))) == NULL)
            abort();
    for (i = 0; i < slow; i++) {
        for (t = 0; t < 2; t++) {
            hk_paillier_sk *pk = NULL;
            double build = t == 1 ? hk_pool_key(pbits, &pk) : 0;

            if ((e = hk_drive_keygen_with(curve, pbits, rp, &pk, &n1, &n2,
                                          &st)) != HK_OK)
                hk_die("keygen", e);
            v[t][i] = build + st.critical_wall_ms;
            hk_share_free(n1);
            hk_share_free(n2);
            hk_paillier_sk_free(pk);
            pk = NULL;
            build = t == 1 ? hk_pool_key(pbits, &pk) : 0;
            if ((e = hk_drive_refresh_with(s1, s2, pbits, rp, &pk, &n1, &n2,
                                           &st)) != HK_OK)
                hk_die("refresh", e);
            v[2 + t][i] = build + st.critical_wall_ms;
            hk_share_free(n1);
            hk_share_free(n2);
            hk_paillier_sk_free(pk);
        }
    }
    for (j = 0; j < 4; j++)
        p50[j] = hk_drive_pct(v[j], slow, 0.5);
    if (!o->json_only)
        printf("%s-%d %s wall p50 (%d runs each): keygen %.1f ms without the "
               "pool, %.1f ms with it; refresh %.1f ms without, %.1f ms "
               "with\n",
               hk_curve_name(curve), pbits, "critical path", slow, p50[0],
               p50[1], p50[2], p50[3]);
    for (j = 0; j < 4; j++) {
        printf("{\"bench\":\"mpc-wall\",\"op\":\"%s\",\"curve\":\"%s\","
               "\"pbits\":%d,\"runs\":%d,\"critical_wall_p50_ms\":%.3f,"
               "\"critical_wall_p99_ms\":%.3f}\n",
               name[j], hk_curve_name(curve), pbits, slow, p50[j],
               hk_drive_pct(v[j], slow, 0.99));
        free(v[j]);
    }
}

static void hk_print_sample(hk_curve_id curve, const hk_share *s1,
                            const unsigned char *dig, const unsigned char *sig)
{
    unsigned char q[65];
    hk_curve *c;
    int i;

    if (hk_curve_new(curve, &c) != HK_OK ||
        hk_point_uncompressed(c, &s1->Q, q) != HK_OK)
        abort();
    hk_curve_free(c);
    printf("{\"sample\":\"signature\",\"curve\":\"%s\",\"pubkey\":\"",
           hk_curve_name(curve));
    for (i = 0; i < 65; i++)
        printf("%02x", q[i]);
    printf("\",\"digest\":\"");
    for (i = 0; i < 32; i++)
        printf("%02x", dig[i]);
    printf("\",\"sig\":\"");
    for (i = 0; i < HK_SIG_LEN; i++)
        printf("%02x", sig[i]);
    printf("\"}\n");
}

/* The client's share load (P1, its own sealed record:
 * hk_share_decode_sealed), which a client pays once per process, or per
 * sign without a kept-open channel. */
static void hk_bench_load(const hk_bench_opts *o, const hk_share *s1,
                          hk_series *ld)
{
    unsigned char *rec = NULL;
    hk_drive_stats st;
    hk_share *s = NULL;
    size_t len = 0;
    hk_err e;
    int i;

    if ((e = hk_share_encode(s1, &rec, &len)) != HK_OK)
        hk_die("share encode", e);
    for (i = 0; i < o->runs; i++) {
        memset(&st, 0, sizeof(st));
        st.p1_ms = hk_drive_cpu_ms();
        if ((e = hk_share_decode_sealed(rec, len, &s)) != HK_OK)
            hk_die("share decode", e);
        st.p1_ms = st.critical_ms = hk_drive_cpu_ms() - st.p1_ms;
        hk_share_free(s);
        hk_series_add(ld, &st);
    }
    OPENSSL_clear_free(rec, len);
}

static void hk_bench_one(const hk_bench_opts *o, const hk_rped_secret *rp,
                         hk_curve_id curve, int pbits)
{
    int slow = o->runs / 4 > 3 ? o->runs / 4 : 3, i;
    double bevp = hk_baseline_evp(curve, o->runs * 10);
    double bk1 =
        curve == HK_CURVE_SECP256K1 ? hk_baseline_k1(o->runs * 10) : 0.0;
    hk_share *s1 = NULL, *s2 = NULL, *n1, *n2;
    unsigned char dig[32], sig[HK_SIG_LEN];
    hk_series kg, sg, sgn, rf, pg, sp, ld;
    hk_presig p1[16], p2[16];
    hk_drive_stats st;
    hk_err e;

    hk_series_init(&pg, o->runs);
    hk_series_init(&sp, o->runs);
    hk_series_init(&kg, slow);
    hk_series_init(&rf, slow);
    hk_series_init(&sg, o->runs);
    hk_series_init(&sgn, o->runs);
    hk_series_init(&ld, o->runs);
    for (i = 0; i < slow; i++) {
        hk_share_free(s1);
        hk_share_free(s2);
        if ((e = hk_drive_keygen(curve, pbits, rp, &s1, &s2, &st)) != HK_OK)
            hk_die("keygen", e);
        hk_series_add(&kg, &st);
    }
    for (i = 0; i < o->runs; i++) {
        if (RAND_bytes(dig, sizeof(dig)) != 1)
            abort();
        if ((e = hk_drive_sign(s1, s2, dig, 32, 1, sig, &st)) != HK_OK)
            hk_die("sign", e);
        hk_series_add(&sg, &st);
        if ((e = hk_drive_sign(s1, s2, dig, 32, 0, sig, &st)) != HK_OK)
            hk_die("sign", e);
        hk_series_add(&sgn, &st);
        /* presignatures (mpc/presign.h): one of a batch of 16 made ahead
         * (P2's r^N, made when it stores the batch, counted in offline),
         * then the online sign.1p -> sign.4 -> sign.5 */
        if (i % 16 == 0) {
            OPENSSL_cleanse(p1, sizeof(p1));
            OPENSSL_cleanse(p2, sizeof(p2));
            if ((e = hk_drive_presign(s1, s2, 16, p1, p2, &st)) != HK_OK)
                hk_die("presign", e);
            st.p1_ms /= 16;
            st.p2_ms /= 16;
            st.critical_ms /= 16;
            hk_series_add(&pg, &st);
        }
        if ((e = hk_drive_sign_presigned(s1, s2, &p1[i % 16], &p2[i % 16], dig,
                                         32, sig, &st)) != HK_OK)
            hk_die("sign-presigned", e);
        hk_series_add(&sp, &st);
    }
    OPENSSL_cleanse(p1, sizeof(p1));
    OPENSSL_cleanse(p2, sizeof(p2));
    hk_bench_load(o, s1, &ld);
    for (i = 0; i < slow; i++) {
        if ((e = hk_drive_refresh(s1, s2, pbits, rp, &n1, &n2, &st)) != HK_OK)
            hk_die("refresh", e);
        hk_series_add(&rf, &st);
        hk_share_free(n1);
        hk_share_free(n2);
    }
    hk_report(o, "keygen", curve, pbits, &kg, bevp, bk1);
    hk_report(o, "sign", curve, pbits, &sg, bevp, bk1);
    hk_report(o, "sign-noprecomp", curve, pbits, &sgn, bevp, bk1);
    hk_report(o, "presign/each", curve, pbits, &pg, bevp, bk1);
    hk_report(o, "sign-presigned", curve, pbits, &sp, bevp, bk1);
    hk_report(o, "refresh", curve, pbits, &rf, bevp, bk1);
    hk_report(o, "share-load", curve, pbits, &ld, bevp, bk1);
    hk_bench_pool(o, rp, curve, pbits, s1, s2);
    hk_print_sample(curve, s1, dig, sig);
    hk_series_free(&kg);
    hk_series_free(&sg);
    hk_series_free(&sgn);
    hk_series_free(&rf);
    hk_series_free(&pg);
    hk_series_free(&sp);
    hk_series_free(&ld);
    hk_share_free(s1);
    hk_share_free(s2);
}

static double hk_clock_ms(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Old beside new for the Paillier steps of issue 20 items 4-5: the key's
 * two primes on one thread vs two (wall clock and all threads' CPU: the
 * keygen row's CPU columns count the calling thread only), and P1's
 * decryption of c3 by CRT vs mod p only. */
static void hk_bench_paillier(const hk_bench_opts *o, int pbits)
{
    int slow = o->runs / 4 > 3 ? o->runs / 4 : 3, n = slow * 2, t, i;
    size_t cap = (size_t)(n > o->runs ? n : o->runs);
    double *wall = calloc(cap, sizeof(double)),
           *cpu = calloc(cap, sizeof(double)), w[2], c[2], d[2], x[3], fbm;
    hk_paillier_sk *sk = NULL;
    hk_paillier_fb *fb = NULL;
    BIGNUM *m = BN_new(), *ct = BN_new(), *out = BN_new(), *zero = BN_new();
    hk_err e;

    if (wall == NULL || cpu == NULL || m == NULL || ct == NULL || out == NULL ||
        zero == NULL)
        abort();
    BN_zero(zero);
    for (t = 1; t <= 2; t++) {
        for (i = 0; i < n; i++) {
            double w0 = hk_clock_ms(CLOCK_MONOTONIC),
                   c0 = hk_clock_ms(CLOCK_PROCESS_CPUTIME_ID);

            hk_paillier_sk_free(sk);
            if ((e = hk_paillier_keygen_threads(pbits, t, &sk)) != HK_OK)
                hk_die("paillier keygen", e);
            wall[i] = hk_clock_ms(CLOCK_MONOTONIC) - w0;
            cpu[i] = hk_clock_ms(CLOCK_PROCESS_CPUTIME_ID) - c0;
        }
        w[t - 1] = hk_drive_pct(wall, n, 0.5);
        c[t - 1] = hk_drive_pct(cpu, n, 0.5);
    }
    /* a plaintext of the honest c3's size (mpc/sign.c: below 2^801) */
    if (!BN_rand(m, 800, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
        hk_paillier_enc(hk_paillier_sk_pk(sk), m, NULL, ct) != HK_OK)
        abort();
    for (t = 0; t < 2; t++) {
        for (i = 0; i < o->runs; i++) {
            double c0 = hk_drive_cpu_ms();

            e = t == 0 ? hk_paillier_dec(sk, ct, out)
                       : hk_paillier_dec_small(sk, ct, 801, out);
            if (e != HK_OK || BN_cmp(out, m) != 0)
                hk_die("paillier decryption", e);
            cpu[i] = hk_drive_cpu_ms() - c0;
        }
        d[t] = hk_drive_pct(cpu, o->runs, 0.5);
    }
    /* the server's two exponentiations per sign: r^N mod N^2 (public
     * exponent N) and ckey^w, w a 256-bit secret (constant time), directly
     * and by the key's fixed-base table (mpc/paillier_fb.c) */
    fbm = hk_drive_cpu_ms();
    if (hk_paillier_fb_new(hk_paillier_sk_pk(sk), ct, &fb) != HK_OK)
        abort();
    fbm = hk_drive_cpu_ms() - fbm;
    for (t = 0; t < 3; t++) {
        for (i = 0; i < o->runs; i++) {
            double c0 = hk_drive_cpu_ms();

            if (!BN_rand(m, 256, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY))
                abort();
            e = t == 0 ? hk_paillier_enc(hk_paillier_sk_pk(sk), zero, NULL, out)
                : t == 1 ? hk_paillier_mul(hk_paillier_sk_pk(sk), ct, m, out)
                         : hk_paillier_fb_exp(fb, m, out);
            if (e != HK_OK)
                hk_die("paillier encryption", e);
            cpu[i] = hk_drive_cpu_ms() - c0;
        }
        x[t] = hk_drive_pct(cpu, o->runs, 0.5);
    }
    if (!o->json_only)
        printf("paillier-%d: server per sign: r^N mod N^2 %.3f ms, ckey^w "
               "%.3f ms directly vs %.3f ms by the key's fixed-base table "
               "(made once per key: %.2f ms)\n",
               pbits, x[0], x[1], x[2], fbm);
    if (!o->json_only)
        printf("paillier-%d: primes p50 wall %.1f ms (1 thread) vs %.1f ms "
               "(2 threads), CPU %.1f vs %.1f ms; P1 decryption of c3 CRT "
               "%.3f ms vs mod p %.3f ms\n",
               pbits, w[0], w[1], c[0], c[1], d[0], d[1]);
    printf("{\"bench\":\"paillier\",\"pbits\":%d,\"primes_wall_1t_ms\":%.2f,"
           "\"primes_wall_2t_ms\":%.2f,\"primes_cpu_1t_ms\":%.2f,"
           "\"primes_cpu_2t_ms\":%.2f,\"dec_crt_ms\":%.3f,"
           "\"dec_modp_ms\":%.3f,\"enc_rn_ms\":%.3f,\"mul_ckey_ms\":%.3f,"
           "\"mul_ckey_table_ms\":%.3f,\"ckey_table_make_ms\":%.2f}\n",
           pbits, w[0], w[1], c[0], c[1], d[0], d[1], x[0], x[1], x[2], fbm);
    hk_paillier_fb_free(fb);
    hk_paillier_sk_free(sk);
    BN_free(m);
    BN_free(ct);
    BN_free(out);
    BN_free(zero);
    free(wall);
    free(cpu);
}

static void hk_usage(void)
{
    fprintf(stderr, "usage: mpc-bench [--runs N] [--curve secp256k1|p256|all]"
                    " [--pbits 2048|3072|all] [--json-only]\n");
    exit(2);
}

static void hk_parse_args(int argc, char **argv, hk_bench_opts *o)
{
    const char *curve = "all", *pbits = "2048";
    int i;

    o->runs = 50;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            o->runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--curve") == 0 && i + 1 < argc)
            curve = argv[++i];
        else if (strcmp(argv[i], "--pbits") == 0 && i + 1 < argc)
            pbits = argv[++i];
        else if (strcmp(argv[i], "--json-only") == 0)
            o->json_only = 1;
        else
            hk_usage();
    }
    if (o->runs < 1 || o->runs > 100000)
        hk_usage();
    if (strcmp(curve, "all") == 0) {
        o->curves[0] = HK_CURVE_SECP256K1;
        o->curves[1] = HK_CURVE_P256;
        o->ncurves = 2;
    } else {
        hk_curve_id id;

        if (hk_curve_from_name(curve, &id) != HK_OK)
            hk_usage();
        o->curves[0] = id;
        o->ncurves = 1;
    }
    if (strcmp(pbits, "all") == 0) {
        o->pbits[0] = 2048;
        o->pbits[1] = 3072;
        o->npbits = 2;
    } else {
        o->pbits[0] = atoi(pbits);
        o->npbits = 1;
        if (!hk_paillier_bits_ok(o->pbits[0]))
            hk_usage();
    }
}

int main(int argc, char **argv)
{
    hk_bench_opts o;
    hk_rped_secret *sec;
    hk_prm_proof pf;
    double t0, tgen, tprove, tver;
    hk_err e;
    int i, j;

    memset(&o, 0, sizeof(o));
    hk_parse_args(argc, argv, &o);
    t0 = hk_drive_cpu_ms();
    if ((e = hk_rped_generate(&sec)) != HK_OK)
        hk_die("setup", e);
    tgen = hk_drive_cpu_ms();
    if ((e = hk_prm_prove(sec, &pf)) != HK_OK)
        hk_die("setup proof", e);
    tprove = hk_drive_cpu_ms();
    if ((e = hk_prm_verify(&sec->pub, &pf)) != HK_OK)
        hk_die("setup verify", e);
    tver = hk_drive_cpu_ms();
    hk_prm_proof_free(&pf);
    if (!o.json_only) {
        printf("one-time server setup: N~ generation %.0f ms, Pi^prm proof "
               "%.0f ms, client verification %.0f ms\n",
               tgen - t0, tprove - tgen, tver - tprove);
        printf("%-14s %-9s %5s %4s %8s %8s %8s %8s %8s %8s  %s\n", "op",
               "curve", "pbits", "runs", "crit p50", "crit p99", "P1 cpu",
               "P2 cpu", "1p ossl", "1p k1", "bytes per message");
        printf("(milliseconds; crit = client-visible critical path; P1/P2 = "
               "CPU per party, median; 1p = one single-party ECDSA sign)\n");
    }
    printf("{\"bench\":\"setup\",\"gen_ms\":%.1f,\"prm_prove_ms\":%.1f,"
           "\"prm_verify_ms\":%.1f}\n",
           tgen - t0, tprove - tgen, tver - tprove);
    for (i = 0; i < o.ncurves; i++)
        for (j = 0; j < o.npbits; j++)
            hk_bench_one(&o, sec, (hk_curve_id)o.curves[i], o.pbits[j]);
    for (j = 0; j < o.npbits; j++)
        hk_bench_paillier(&o, o.pbits[j]);
    hk_rped_secret_free(sec);
    return 0;
}
