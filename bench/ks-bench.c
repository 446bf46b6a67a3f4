/* Login cost of a token, which each CLI signature (and each PKCS#11
 * C_Login) pays once: a file token derives its master key with scrypt
 * (N = 2^17 unless HALFKEY_INSECURE_SCRYPT_LOG2N), a TPM-backed token
 * unseals it in the TPM (SRK, salted session, load, unseal).
 *
 *   ks-bench [TCTI [N]]    e.g. ks-bench swtpm:path=/tmp/swtpm/sock 20
 *
 * Without a TCTI only the file token is measured. Then the prime pool
 * (ks_pool.c): one take, what a keygen or refresh pays for a pooled
 * Paillier key (token lock, read, unlink and directory fsync, unseal,
 * the key built from its primes), against one hk_paillier_keygen. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/keystore.h"

#define BENCH_PIN "2468-bench-pin"

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Mean login time over n logins of a new token in a temp directory. */
static int bench(const char *what, const char *tcti, int n)
{
    char dir[] = "/tmp/ks-bench-XXXXXX";
    hk_ks *ks = NULL;
    double t0, ms;
    hk_err e;
    int i;

    if (mkdtemp(dir) == NULL)
        return 1;
    e = tcti != NULL ? hk_ks_init_tpm(dir, BENCH_PIN, "bench", tcti, &ks)
                     : hk_ks_init(dir, BENCH_PIN, "bench", &ks);
    if (e != HK_OK) {
        fprintf(stderr, "ks-bench: %s token: %s\n", what, hk_strerror(e));
        return 1;
    }
    t0 = now_ms();
    for (i = 0; i < n && e == HK_OK; i++)
        e = hk_ks_login(ks, BENCH_PIN);
    ms = (now_ms() - t0) / n;
    hk_ks_close(ks);
    if (e != HK_OK) {
        fprintf(stderr, "ks-bench: %s login: %s\n", what, hk_strerror(e));
        return 1;
    }
    printf("%-28s %8.1f ms per login (%d logins)\n", what, ms, n);
    /* the directory is left for inspection: rm -r /tmp/ks-bench-* */
    return 0;
}

static int hk_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* p50 of n pool takes (2048-bit) vs n fresh Paillier keys. */
static int bench_pool(int n)
{
    char dir[] = "/tmp/ks-bench-XXXXXX";
    double take[16], gen[16];
    hk_paillier_sk *sk = NULL;
    hk_ks *ks = NULL;
    hk_err e;
    int i;

    if (n > 16)
        n = 16;
    if (mkdtemp(dir) == NULL || hk_ks_init(dir, BENCH_PIN, "bench", &ks))
        return 1;
    if ((e = hk_ks_pool_fill(ks, 2048, (size_t)n, NULL)) != HK_OK) {
        fprintf(stderr, "ks-bench: pool fill: %s\n", hk_strerror(e));
        hk_ks_close(ks);
        return 1;
    }
    for (i = 0; i < n && e == HK_OK; i++) {
        double t0 = now_ms();

        if ((e = hk_ks_pool_take(ks, 2048, &sk, NULL)) == HK_OK) {
            take[i] = now_ms() - t0;
            hk_paillier_sk_free(sk);
            t0 = now_ms();
            e = hk_paillier_keygen(2048, &sk);
            gen[i] = now_ms() - t0;
            hk_paillier_sk_free(sk);
        }
    }
    hk_ks_close(ks);
    if (e != HK_OK) {
        fprintf(stderr, "ks-bench: pool take: %s\n", hk_strerror(e));
        return 1;
    }
    qsort(take, (size_t)n, sizeof(double), hk_cmp);
    qsort(gen, (size_t)n, sizeof(double), hk_cmp);
    printf("%-28s %8.1f ms p50 (%d takes; a fresh key: %.1f ms p50)\n",
           "prime pool take (2048)", take[(n - 1) / 2], n, gen[(n - 1) / 2]);
    return 0;
}

int main(int argc, char **argv)
{
    int n = argc > 2 ? atoi(argv[2]) : 20, rc;

    if (n < 1)
        n = 1;
    rc = bench("file token (scrypt)", NULL, n < 5 ? n : 5);
    if (argc > 1)
        rc |= bench("TPM-backed token (unseal)", argv[1], n);
    rc |= bench_pool(n < 9 ? n : 9);
    return rc;
}
