/* A dudect-style timing check (Reparaz, Balasch, Verbauwhede, "Dude, is my
 * code constant time?", DATE 2017) of the two places where secrets meet
 * attacker-chosen input:
 *
 *   dec      P1's Paillier decryption of a ciphertext the server sent (the
 *            CRT recombination works on m mod p and m mod q);
 *   ckeyw    the server's ckey^w of every c3 by the key's fixed-base
 *            table (w = k2^-1 * r * x2, secret; the client measures the
 *            time of its sign);
 *   logstar  the server's check of a client's Pi^log* proof, which it
 *            computes modulo the secret primes of its ring-Pedersen N~.
 *
 * Each check times one operation on inputs of two classes, interleaved in
 * random order, and prints Welch's t statistic of the two timing samples
 * (also after cropping the slowest measurements, as dudect does, which
 * removes most scheduler noise). |t| above ~4.5 is strong evidence that
 * the time depends on the class, i.e. on the secret. The classes are
 * chosen with knowledge of the secret, to make a leak as visible as it
 * can be:
 *
 *   dec      class 0: plaintexts with m mod p < m mod q (a variable-time
 *            modular subtraction branches); class 1: m mod p >= m mod q.
 *   ckeyw    class 0: w = 0 (every comb index 0: one table entry, a cache
 *            line pattern of its own, if the scan were not constant
 *            time); class 1: w uniform below 2^256.
 *   logstar  class 0: z3 = k*phi(N~) + small, so z3 reduced mod p - 1 and
 *            q - 1 is a tiny exponent (a variable-time exponentiation is
 *            fast); class 1: z3 uniform of the same length. The proof is
 *            otherwise valid, so the check reaches the Pedersen equation
 *            and fails there (the challenge does not cover z3).
 *
 * This is a benchmark, not a test: timing on a shared machine is noisy,
 * a |t| below the threshold shows no leak at this sample size, not its
 * absence. Usage:
 *   ct-bench [--samples N] [--only dec|ckeyw|logstar]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "mpc/paillier.h"
#include "mpc/zk.h"

#define POOL 64 /* distinct inputs per class, used round-robin */

static void die(const char *what)
{
    fprintf(stderr, "ct-bench: %s failed\n", what);
    exit(1);
}

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID,
                  &ts); /* CPU time: other processes add no noise */
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

typedef struct {
    double n, mean, m2; /* Welford */
} welch;

static void welch_add(welch *w, double x)
{
    double d = x - w->mean;

    w->n += 1;
    w->mean += d / w->n;
    w->m2 += d * (x - w->mean);
}

static double welch_t(const welch *a, const welch *b)
{
    double va = a->m2 / (a->n - 1), vb = b->m2 / (b->n - 1);

    return (a->mean - b->mean) / sqrt(va / a->n + vb / b->n);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* One measured operation on input `i` of class `cls`. */
typedef void (*op_fn)(void *arg, int cls, int i);

/* Runs n samples per class in random order and prints the t statistics:
 * all samples, and those below the 50th and 90th percentiles. */
static void run(const char *name, op_fn op, void *arg, int n)
{
    double *t = malloc(sizeof(double) * 2 * n), *sorted;
    unsigned char *cls = malloc(2 * n);
    int left[2] = {n, n}, i, c, p;
    const int pct[3] = {100, 90, 50};
    double cut[3];

    if (t == NULL || cls == NULL ||
        (sorted = malloc(sizeof(double) * 2 * n)) == NULL)
        die("malloc");
    for (i = 0; i < 2 * n; i++) {
        unsigned char r;

        if (RAND_bytes(&r, 1) != 1)
            die("RAND_bytes");
        c = left[0] == 0 ? 1 : left[1] == 0 ? 0 : (r & 1);
        left[c]--;
        cls[i] = (unsigned char)c;
    }
    for (i = 0; i < 4; i++) /* warm-up */
        op(arg, i & 1, i);
    for (i = 0; i < 2 * n; i++) {
        double t0 = now_ns();

        op(arg, cls[i], i % POOL);
        t[i] = now_ns() - t0;
    }
    memcpy(sorted, t, sizeof(double) * 2 * n);
    qsort(sorted, 2 * n, sizeof(double), cmp_double);
    for (p = 0; p < 3; p++)
        cut[p] = pct[p] == 100 ? INFINITY : sorted[(2 * n - 1) * pct[p] / 100];
    printf("%-8s samples %d per class, median %.3f ms\n", name, n,
           sorted[n] / 1e6);
    for (p = 0; p < 3; p++) {
        welch w[2];

        memset(w, 0, sizeof(w));
        for (i = 0; i < 2 * n; i++)
            if (t[i] <= cut[p])
                welch_add(&w[cls[i]], t[i]);
        printf("%-8s  below p%-3d mean class0 %.3f ms class1 %.3f ms  t = "
               "%+.2f%s\n",
               name, pct[p], w[0].mean / 1e6, w[1].mean / 1e6,
               welch_t(&w[0], &w[1]),
               fabs(welch_t(&w[0], &w[1])) > 4.5 ? "  LEAK?" : "");
    }
    free(t);
    free(sorted);
    free(cls);
}

/* --- Paillier decryption -------------------------------------------------- */

typedef struct {
    hk_paillier_sk *sk;
    BIGNUM *ct[2][POOL];
    BIGNUM *out;
} dec_arg;

static void dec_op(void *arg, int cls, int i)
{
    dec_arg *a = arg;

    if (hk_paillier_dec(a->sk, a->ct[cls][i], a->out) != HK_OK)
        die("decryption");
}

static void dec_setup(dec_arg *a)
{
    const BIGNUM *n, *p, *q;
    BIGNUM *m = BN_new(), *mp = BN_new(), *mq = BN_new(), *r = BN_new();
    BN_CTX *ctx = BN_CTX_new();
    int have[2] = {0, 0};

    if (hk_paillier_keygen(2048, &a->sk) != HK_OK)
        die("Paillier keygen");
    n = hk_paillier_n(hk_paillier_sk_pk(a->sk));
    p = hk_paillier_sk_p(a->sk);
    q = hk_paillier_sk_q(a->sk);
    a->out = BN_new();
    while (have[0] < POOL || have[1] < POOL) {
        int c;

        if (!BN_rand_range(m, n) || !BN_mod(mp, m, p, ctx) ||
            !BN_mod(mq, m, q, ctx))
            die("plaintext");
        c = BN_cmp(mp, mq) < 0 ? 0 : 1;
        if (have[c] == POOL)
            continue;
        if ((a->ct[c][have[c]] = BN_new()) == NULL ||
            hk_paillier_rand_unit(hk_paillier_sk_pk(a->sk), r) != HK_OK ||
            hk_paillier_enc_sk(a->sk, m, r, a->ct[c][have[c]]) != HK_OK)
            die("encryption");
        have[c]++;
    }
    BN_free(m);
    BN_free(mp);
    BN_free(mq);
    BN_free(r);
    BN_CTX_free(ctx);
}

/* --- the server's ckey^w by the key's fixed-base table ---------------------
 */

typedef struct {
    hk_paillier_fb *fb;
    BIGNUM *w[2][POOL];
    BIGNUM *out;
} ckeyw_arg;

static void ckeyw_op(void *arg, int cls, int i)
{
    ckeyw_arg *a = arg;

    if (hk_paillier_fb_exp(a->fb, a->w[cls][i], a->out) != HK_OK)
        die("ckey^w");
}

static void ckeyw_setup(ckeyw_arg *a, const hk_paillier_sk *sk)
{
    const hk_paillier_pk *pk = hk_paillier_sk_pk(sk);
    BIGNUM *c = BN_new();
    int i;

    if (c == NULL || !BN_rand_range(c, hk_paillier_n2(pk)) ||
        hk_paillier_fb_new(pk, c, &a->fb) != HK_OK ||
        (a->out = BN_new()) == NULL)
        die("fixed-base table");
    for (i = 0; i < POOL; i++) {
        if ((a->w[0][i] = BN_new()) == NULL ||
            (a->w[1][i] = BN_new()) == NULL ||
            !BN_rand(a->w[1][i], 256, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY))
            die("exponent");
        BN_zero(a->w[0][i]);
        BN_set_flags(a->w[0][i], BN_FLG_CONSTTIME);
        BN_set_flags(a->w[1][i], BN_FLG_CONSTTIME);
    }
    BN_free(c);
}

/* --- the server's Pi^log* check ------------------------------------------ */

typedef struct {
    hk_curve *c;
    hk_binding b;
    hk_paillier_sk *sk;
    hk_rped_secret *sec;
    BIGNUM *C;
    hk_point X;
    hk_logstar_proof pf;
    BIGNUM *z3[2][POOL];
} log_arg;

static void log_op(void *arg, int cls, int i)
{
    log_arg *a = arg;
    BIGNUM *keep = a->pf.rep[0].z3;
    hk_err e;

    a->pf.rep[0].z3 = a->z3[cls][i];
    e = hk_logstar_verify(a->c, &a->b, HK_ROLE_P1, hk_paillier_sk_pk(a->sk),
                          &a->sec->pub, a->sec, a->C, &a->X, &a->pf);
    a->pf.rep[0].z3 = keep;
    if (e != HK_ERR_PROOF)
        die("the crafted proof's rejection");
}

static void log_setup(log_arg *a)
{
    hk_scalar x;
    BIGNUM *xb = NULL, *r = BN_new(), *k = BN_new();
    BN_CTX *ctx = BN_CTX_new();
    int bits, i;

    memset(&a->b, 0, sizeof(a->b));
    a->b.curve = HK_CURVE_SECP256K1;
    if (hk_curve_new(HK_CURVE_SECP256K1, &a->c) != HK_OK ||
        hk_rped_generate(&a->sec) != HK_OK ||
        hk_paillier_keygen(2048, &a->sk) != HK_OK ||
        hk_scalar_random(a->c, &x) != HK_OK ||
        hk_point_mul_gen(a->c, &x, &a->X) != HK_OK ||
        hk_scalar_to_bn(&x, &xb) != HK_OK || (a->C = BN_new()) == NULL ||
        hk_paillier_rand_unit(hk_paillier_sk_pk(a->sk), r) != HK_OK ||
        hk_paillier_enc_sk(a->sk, xb, r, a->C) != HK_OK ||
        hk_logstar_prove(a->c, &a->b, HK_ROLE_P1, a->sk, &a->sec->pub, &x, r,
                         a->C, &a->X, &a->pf) != HK_OK)
        die("Pi^log* setup");
    for (i = 0; i < 5; i++) { /* also the figure of a whole check */
        double t0 = now_ns();

        if (hk_logstar_verify(a->c, &a->b, HK_ROLE_P1, hk_paillier_sk_pk(a->sk),
                              &a->sec->pub, a->sec, a->C, &a->X,
                              &a->pf) != HK_OK)
            die("the genuine proof's check");
        if (i == 4)
            printf("logstar  a genuine proof's whole check (server, CRT): "
                   "%.3f ms\n",
                   (now_ns() - t0) / 1e6);
    }
    /* z3 < 2^(alpha + |N~| + 1); class 0: k*phi + small below that. */
    bits = HK_LOG_ALPHA_BITS + BN_num_bits(a->sec->pub.n) - 8;
    for (i = 0; i < POOL; i++) {
        BIGNUM *z0 = BN_new(), *z1 = BN_new();

        if (z0 == NULL || z1 == NULL ||
            !BN_rand(k, bits - BN_num_bits(a->sec->phi), BN_RAND_TOP_ONE,
                     BN_RAND_BOTTOM_ANY) ||
            !BN_mul(z0, k, a->sec->phi, ctx) || !BN_add_word(z0, 1 + i) ||
            !BN_rand(z1, BN_num_bits(z0), BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY))
            die("z3");
        a->z3[0][i] = z0;
        a->z3[1][i] = z1;
    }
    BN_clear_free(xb);
    BN_free(r);
    BN_free(k);
    BN_CTX_free(ctx);
}

int main(int argc, char **argv)
{
    const char *only = NULL;
    int n = 2000, i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--samples") == 0 && i + 1 < argc)
            n = atoi(argv[++i]);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else {
            fprintf(
                stderr,
                "usage: ct-bench [--samples N] [--only dec|ckeyw|logstar]\n");
            return 2;
        }
    }
    if (n < 10)
        n = 10;
    printf("dudect-style Welch t-test, two input classes; |t| > 4.5: the "
           "time depends on the class\n");
    if (only == NULL || strcmp(only, "dec") == 0) {
        static dec_arg d;

        dec_setup(&d);
        run("dec", dec_op, &d, n);
        if (only == NULL) {
            static ckeyw_arg k;

            ckeyw_setup(&k, d.sk);
            run("ckeyw", ckeyw_op, &k, n);
        }
    }
    if (only != NULL && strcmp(only, "ckeyw") == 0) {
        static ckeyw_arg k;
        hk_paillier_sk *sk = NULL;

        if (hk_paillier_keygen(2048, &sk) != HK_OK)
            die("Paillier keygen");
        ckeyw_setup(&k, sk);
        run("ckeyw", ckeyw_op, &k, n);
    }
    if (only == NULL || strcmp(only, "logstar") == 0) {
        static log_arg l;

        log_setup(&l);
        run("logstar", log_op, &l, n);
    }
    return 0;
}
