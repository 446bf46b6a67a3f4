/* The token's prime pool (client/ks_pool.c): entries sealed under the PIN
 * (no prime in clear on disk, unreadable with another token's PIN, a
 * tampered entry refused), single use (the file is gone from disk when
 * take returns, before the key is used; a process killed right after a
 * take leaves the entry gone, not back), no two keys sharing a prime,
 * bounded, entries of an earlier PIN generation dropped, logged-out use
 * refused, and pooled keys through keygen and refresh giving signatures
 * that verify. Runs in a fresh directory under /tmp. */
#include <dirent.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "client/keystore.h"
#include "mpc/curve.h"
#include "mpc/presign.h"
#include "tests/unit/check.h"
#include "tests/unit/driver.h"
#include "tests/unit/verify.h"

#define PIN1 "1234-pool"
#define PIN2 "5678-pool"
#define BITS 2048
#define MAXP 64

static char root[64];
static char tok[128], tok2[128];

static int rm_one(const char *p, const struct stat *st, int flag,
                  struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void rm_rf(const char *p) { nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static int file_exists(const char *dir, const char *name)
{
    char p[512];
    struct stat st;

    snprintf(p, sizeof(p), "%s/pool/%s", dir, name);
    return lstat(p, &st) == 0;
}

/* The entries' names in dir/pool (sorted by the caller if needed). */
static size_t pool_names(const char *dir, char names[][HK_KS_POOL_NAME_LEN],
                         size_t max)
{
    char p[512];
    struct dirent *de;
    size_t n = 0;
    DIR *d;

    snprintf(p, sizeof(p), "%s/pool", dir);
    if ((d = opendir(p)) == NULL)
        return 0;
    while ((de = readdir(d)) != NULL && n < max)
        if (strstr(de->d_name, ".key") != NULL &&
            strlen(de->d_name) < HK_KS_POOL_NAME_LEN)
            memcpy(names[n++], de->d_name, strlen(de->d_name) + 1);
    closedir(d);
    return n;
}

static unsigned char *slurp(const char *p, size_t *len)
{
    unsigned char *b;
    long n;
    FILE *f = fopen(p, "rb");

    CHECK(f != NULL);
    CHECK(fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0);
    rewind(f);
    b = malloc((size_t)n + 1);
    CHECK(b != NULL && fread(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void spill(const char *p, const void *b, size_t len)
{
    FILE *f = fopen(p, "wb");

    CHECK(f != NULL && fwrite(b, 1, len, f) == len && fclose(f) == 0);
}

static size_t count(hk_ks *ks)
{
    size_t n = 99;

    CHECK_OK(hk_ks_pool_count(ks, BITS, &n));
    return n;
}

/* Every prime seen: no two equal, across all keys of this test. */
static BIGNUM *seen[MAXP];
static size_t nseen;

static void remember(const hk_paillier_sk *sk)
{
    const BIGNUM *pq[2] = {hk_paillier_sk_p(sk), hk_paillier_sk_q(sk)};
    size_t i, j;

    for (j = 0; j < 2; j++) {
        for (i = 0; i < nseen; i++)
            CHECK(BN_cmp(seen[i], pq[j]) != 0);
        CHECK(nseen < MAXP);
        CHECK((seen[nseen++] = BN_dup(pq[j])) != NULL);
    }
}

/* 1 if the 32 leading bytes of either prime appear in buf. */
static int has_prime(const unsigned char *buf, size_t len,
                     const hk_paillier_sk *sk)
{
    unsigned char b[BITS / 16];
    const BIGNUM *pq[2] = {hk_paillier_sk_p(sk), hk_paillier_sk_q(sk)};
    int j;

    for (j = 0; j < 2; j++) {
        CHECK(BN_bn2binpad(pq[j], b, sizeof(b)) == (int)sizeof(b));
        if (memmem(buf, len, b, 32) != NULL)
            return 1;
    }
    return 0;
}

/* Takes one entry and checks it is gone from disk before the key is
 * used; returns the key. */
static hk_paillier_sk *take_checked(hk_ks *ks)
{
    char name[HK_KS_POOL_NAME_LEN];
    hk_paillier_sk *sk = NULL;
    size_t before = count(ks);

    CHECK(before > 0);
    CHECK_OK(hk_ks_pool_take(ks, BITS, &sk, name));
    CHECK(sk != NULL && !file_exists(tok, name));
    CHECK(count(ks) == before - 1);
    CHECK(hk_paillier_bits(hk_paillier_sk_pk(sk)) == BITS);
    remember(sk);
    return sk;
}

static void test_empty_and_login(void)
{
    hk_paillier_sk *sk = NULL;
    hk_ks *ks, *out;

    CHECK_OK(hk_ks_init(tok, PIN1, "pool", &ks));
    CHECK(count(ks) == 0);
    CHECK_ERR(hk_ks_pool_take(ks, BITS, &sk, NULL), HK_ERR_NOT_FOUND);
    CHECK(sk == NULL);
    CHECK_OK(hk_ks_pool_fill(ks, BITS, 1, NULL));
    /* logged out: nothing is made, nothing is taken */
    CHECK_OK(hk_ks_open(tok, &out));
    CHECK_ERR(hk_ks_pool_take(out, BITS, &sk, NULL), HK_ERR_STATE);
    CHECK_ERR(hk_ks_pool_fill(out, BITS, 4, NULL), HK_ERR_STATE);
    CHECK(count(out) == 1); /* counting needs no PIN */
    hk_ks_close(out);
    hk_ks_close(ks);
}

static void test_sealed(void)
{
    char names[4][HK_KS_POOL_NAME_LEN], p[512], q[512];
    unsigned char *buf;
    hk_paillier_sk *sk = NULL;
    size_t len, added = 0, n;
    struct stat st;
    hk_ks *ks, *other;

    CHECK_OK(hk_ks_open(tok, &ks));
    CHECK_OK(hk_ks_login(ks, PIN1));
    CHECK_OK(hk_ks_pool_fill(ks, BITS, 3, &added));
    CHECK(added == 2 && count(ks) == 3);
    snprintf(p, sizeof(p), "%s/pool", tok);
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0700);
    n = pool_names(tok, names, 4);
    CHECK(n == 3);
    snprintf(p, sizeof(p), "%s/pool/%s", tok, names[0]);
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600);
    buf = slurp(p, &len);

    /* another token (another PIN) cannot open the entry: it is dropped */
    CHECK_OK(hk_ks_init(tok2, PIN2, "other", &other));
    CHECK_OK(hk_ks_pool_fill(other, BITS, 0, NULL)); /* makes nothing */
    CHECK(count(other) == 0);
    snprintf(q, sizeof(q), "%s/pool", tok2);
    CHECK(mkdir(q, 0700) == 0);
    snprintf(q, sizeof(q), "%s/pool/%s", tok2, names[0]);
    spill(q, buf, len);
    CHECK(chmod(q, 0600) == 0);
    CHECK_ERR(hk_ks_pool_take(other, BITS, &sk, NULL), HK_ERR_NOT_FOUND);
    CHECK(sk == NULL && !file_exists(tok2, names[0]));
    hk_ks_close(other);

    /* renamed into another slot: refused (the name is in the AAD) */
    snprintf(q, sizeof(q), "%s/pool/2048-%032x.key", tok, 0);
    spill(q, buf, len);
    CHECK(chmod(q, 0600) == 0);
    /* one flipped ciphertext byte in another entry: refused */
    {
        unsigned char *b2;
        size_t l2;

        snprintf(p, sizeof(p), "%s/pool/%s", tok, names[1]);
        b2 = slurp(p, &l2);
        b2[l2 - 20] ^= 1;
        spill(p, b2, l2);
        free(b2);
    }
    /* the renamed copy and the tampered entry are dropped as they are
     * met; the two genuine entries come out once each, each gone from
     * disk when take returns */
    for (n = 0;; n++) {
        char name[HK_KS_POOL_NAME_LEN];
        hk_err e = hk_ks_pool_take(ks, BITS, &sk, name);

        if (e == HK_ERR_NOT_FOUND)
            break;
        CHECK_OK(e);
        CHECK(!file_exists(tok, name) && strcmp(name, names[1]) != 0);
        remember(sk);
        hk_paillier_sk_free(sk);
        sk = NULL;
    }
    CHECK(n == 2 && count(ks) == 0);
    CHECK(pool_names(tok, names, 4) == 0);
    free(buf);
    hk_ks_close(ks);
}

/* The primes are not in the file in clear: fill one, read the file, take
 * it, look for the primes in what was on disk. */
static void test_no_clear_primes(void)
{
    char names[2][HK_KS_POOL_NAME_LEN], p[512];
    unsigned char *buf;
    hk_paillier_sk *sk;
    size_t len;
    hk_ks *ks;

    CHECK_OK(hk_ks_open(tok, &ks));
    CHECK_OK(hk_ks_login(ks, PIN1));
    CHECK_OK(hk_ks_pool_fill(ks, BITS, 1, NULL));
    CHECK(pool_names(tok, names, 2) == 1);
    snprintf(p, sizeof(p), "%s/pool/%s", tok, names[0]);
    buf = slurp(p, &len);
    CHECK(len < 1024);
    sk = take_checked(ks);
    CHECK(!has_prime(buf, len, sk));
    free(buf);
    hk_paillier_sk_free(sk);
    hk_ks_close(ks);
}

/* A process killed right after its take: the entry is gone for good. */
static void test_crash_after_take(void)
{
    char before[4][HK_KS_POOL_NAME_LEN], after[4][HK_KS_POOL_NAME_LEN];
    size_t nb, na, i, j, gone = 0;
    hk_ks *ks;
    pid_t pid;
    int status;

    CHECK_OK(hk_ks_open(tok, &ks));
    CHECK_OK(hk_ks_login(ks, PIN1));
    CHECK_OK(hk_ks_pool_fill(ks, BITS, 2, NULL));
    nb = pool_names(tok, before, 4);
    CHECK(nb == 2);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        hk_paillier_sk *sk = NULL;

        if (hk_ks_pool_take(ks, BITS, &sk, NULL) != HK_OK)
            _exit(3);
        kill(getpid(), SIGKILL); /* before any use of sk */
        _exit(4);
    }
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    na = pool_names(tok, after, 4);
    CHECK(na == 1);
    for (i = 0; i < nb; i++) {
        int found = 0;

        for (j = 0; j < na; j++)
            found |= strcmp(before[i], after[j]) == 0;
        gone += !found;
    }
    CHECK(gone == 1);
    hk_paillier_sk_free(take_checked(ks));
    CHECK(count(ks) == 0);
    hk_ks_close(ks);
}

static void test_bound_and_pin_change(void)
{
    hk_paillier_sk *sk = NULL;
    size_t added = 0;
    hk_ks *ks;

    CHECK_OK(hk_ks_open(tok, &ks));
    CHECK_OK(hk_ks_login(ks, PIN1));
    CHECK_OK(hk_ks_pool_fill(ks, BITS, 1000, &added));
    CHECK(added == HK_KS_POOL_MAX && count(ks) == HK_KS_POOL_MAX);
    CHECK_OK(hk_paillier_keygen(BITS, &sk));
    CHECK_ERR(hk_ks_pool_put(ks, sk), HK_ERR_TOO_BIG);
    hk_paillier_sk_free(sk);
    sk = NULL;
    /* every entry a distinct pair of primes */
    while (count(ks) > 2)
        hk_paillier_sk_free(take_checked(ks));
    /* sealed under PIN1's generation: after a change they cannot be
     * opened any more, and are removed when met */
    CHECK_OK(hk_ks_change_pin(ks, PIN1, PIN2));
    CHECK(count(ks) == 2);
    CHECK_ERR(hk_ks_pool_take(ks, BITS, &sk, NULL), HK_ERR_NOT_FOUND);
    CHECK(count(ks) == 0);
    hk_ks_close(ks);
}

/* Pooled keys through the protocol: keygen and refresh, signatures that
 * verify, the share's modulus the pooled primes' product. */
static void test_protocol(void)
{
    const hk_rped_secret *rs = hk_test_rped_secret();
    hk_share *s1 = NULL, *s2 = NULL, *n1 = NULL, *n2 = NULL;
    unsigned char dig[32], sig[HK_SIG_LEN];
    hk_paillier_sk *sk;
    hk_drive_stats st;
    BIGNUM *n = BN_new();
    BN_CTX *ctx = BN_CTX_new();
    hk_ks *ks;

    CHECK(n != NULL && ctx != NULL);
    CHECK_OK(hk_ks_open(tok, &ks));
    CHECK_OK(hk_ks_login(ks, PIN2));
    CHECK_OK(hk_ks_pool_fill(ks, BITS, 2, NULL));

    sk = take_checked(ks);
    CHECK(BN_mul(n, hk_paillier_sk_p(sk), hk_paillier_sk_q(sk), ctx));
    CHECK_OK(
        hk_drive_keygen_with(HK_CURVE_SECP256K1, BITS, rs, &sk, &s1, &s2, &st));
    CHECK(sk == NULL); /* taken by the state machine */
    CHECK(BN_cmp(hk_paillier_n(s1->pk), n) == 0);
    CHECK(BN_cmp(hk_paillier_n(s2->pk), n) == 0);
    CHECK(RAND_bytes(dig, sizeof(dig)) == 1);
    CHECK_OK(hk_drive_sign(s1, s2, dig, 32, 1, sig, &st));
    CHECK(hk_test_verify_evp(HK_CURVE_SECP256K1, &s1->Q, dig, 32, sig));
    CHECK(hk_test_verify_k1(&s1->Q, dig, sig));

    sk = take_checked(ks);
    CHECK(BN_mul(n, hk_paillier_sk_p(sk), hk_paillier_sk_q(sk), ctx));
    CHECK_OK(hk_drive_refresh_with(s1, s2, BITS, rs, &sk, &n1, &n2, &st));
    CHECK(sk == NULL);
    CHECK(BN_cmp(hk_paillier_n(n1->pk), n) == 0);
    CHECK_OK(hk_drive_sign(n1, n2, dig, 32, 0, sig, &st));
    CHECK(hk_test_verify_evp(HK_CURVE_SECP256K1, &n1->Q, dig, 32, sig));

    /* a key of another size is refused, and kept by the caller */
    CHECK_OK(hk_paillier_keygen(3072, &sk));
    {
        hk_keygen *kg = NULL;
        unsigned char sid[HK_ID_LEN], kid[HK_ID_LEN];

        hk_drive_ids(sid, kid);
        CHECK_OK(hk_keygen_p1_new(HK_CURVE_SECP256K1, sid, kid, BITS, &rs->pub,
                                  &kg));
        CHECK_ERR(hk_keygen_p1_use_paillier(kg, &sk), HK_ERR_ARG);
        CHECK(sk != NULL);
        hk_keygen_free(kg);
    }
    hk_paillier_sk_free(sk);
    hk_share_free(s1);
    hk_share_free(s2);
    hk_share_free(n1);
    hk_share_free(n2);
    BN_free(n);
    BN_CTX_free(ctx);
    hk_ks_close(ks);
}

/* Files in dir/presig whose name ends with `suffix`. */
static size_t presig_files(const char *dir, const char *suffix)
{
    char p[512];
    struct dirent *de;
    size_t n = 0, sl = strlen(suffix), l;
    DIR *d;

    snprintf(p, sizeof(p), "%s/presig", dir);
    if ((d = opendir(p)) == NULL)
        return 0;
    while ((de = readdir(d)) != NULL)
        n += (l = strlen(de->d_name)) >= sl &&
             strcmp(de->d_name + l - sl, suffix) == 0;
    closedir(d);
    return n;
}

/* A deferred take of a stored presignature (the one-shot sign's): the
 * entry is out of every taker's sight at once (another process's take,
 * the count), its file retired, not deleted (no block release on the
 * sign's path); hk_ks_presig_sync and hk_ks_presig_sweep succeed and
 * leave nothing; a process killed right after its deferred take leaves
 * no usable entry behind either. */
static void test_deferred_presig_take(void)
{
    unsigned char kid[HK_ID_LEN];
    hk_presig p, got;
    hk_curve *c = NULL;
    hk_ks *ks;
    size_t n = 0;
    pid_t pid;
    int i, status;

    CHECK_OK(hk_ks_open(tok, &ks));
    CHECK_OK(hk_ks_login(ks, PIN1));
    CHECK_OK(hk_curve_new(HK_CURVE_SECP256K1, &c));
    CHECK(RAND_bytes(kid, sizeof(kid)) == 1);
    for (i = 0; i < 3; i++) {
        memset(&p, 0, sizeof(p));
        CHECK(RAND_bytes(p.id, sizeof(p.id)) == 1);
        memcpy(p.kid, kid, HK_ID_LEN);
        p.curve = HK_CURVE_SECP256K1;
        p.epoch = 1;
        CHECK_OK(hk_scalar_random(c, &p.k));
        CHECK_OK(hk_point_mul_gen(c, &p.k, &p.R1));
        CHECK_OK(hk_point_mul_gen(c, &p.k, &p.R2));
        CHECK_OK(hk_ks_presig_put(ks, &p));
    }
    CHECK_OK(hk_ks_presig_take(ks, kid, 1, 1, &got));
    CHECK_OK(hk_ks_presig_count(ks, kid, &n));
    CHECK(n == 2 && presig_files(tok, ".ps") == 2 &&
          presig_files(tok, ".spent.tmp") == 1);
    CHECK_OK(hk_ks_presig_sync(ks));
    hk_ks_presig_sweep(ks);
    CHECK(presig_files(tok, ".spent.tmp") == 0 &&
          presig_files(tok, ".ps") == 2);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (hk_ks_presig_take(ks, kid, 1, 1, &got) != HK_OK)
            _exit(3);
        kill(getpid(), SIGKILL);
        _exit(4);
    }
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    CHECK_OK(hk_ks_presig_count(ks, kid, &n));
    CHECK(n == 1 && presig_files(tok, ".spent.tmp") == 1);
    CHECK_OK(hk_ks_presig_take(ks, kid, 1, 0, &got)); /* the last one */
    CHECK_ERR(hk_ks_presig_take(ks, kid, 1, 1, &got), HK_ERR_NOT_FOUND);
    hk_ks_presig_sweep(ks);
    CHECK(presig_files(tok, "") == 2); /* "." and ".." */
    OPENSSL_cleanse(&got, sizeof(got));
    hk_curve_free(c);
    hk_ks_close(ks);
}

int main(void)
{
    size_t i;

    setenv("HALFKEY_INSECURE_SCRYPT_LOG2N", "12", 1);
    umask(022);
    CHECK(snprintf(root, sizeof(root), "/tmp/hk-pool-XXXXXX") > 0);
    CHECK(mkdtemp(root) != NULL);
    snprintf(tok, sizeof(tok), "%s/tok", root);
    snprintf(tok2, sizeof(tok2), "%s/tok2", root);

    test_empty_and_login();
    test_sealed();
    test_no_clear_primes();
    test_crash_after_take();
    test_deferred_presig_take();
    test_bound_and_pin_change();
    test_protocol();

    for (i = 0; i < nseen; i++)
        BN_free(seen[i]);
    rm_rf(root);
    printf("test_pool: ok (%zu distinct primes)\n", nseen);
    return 0;
}
