/* The server's pool of Paillier randomness (server/http/rnpool.c): every
 * value is an N-th residue mod N^2 of its own modulus, single use, two
 * made ahead per modulus, at most HK_RN_KEYS moduli kept. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>

#include "server/http/service_impl.h"
#include "tests/unit/check.h"

/* 1 if u is an N-th residue mod N^2: u^phi(N) = 1 (the group of N-th
 * residues has order phi(N); 1 + N, a non-residue, has order N). */
static int nth_residue(const hk_paillier_sk *sk, const BIGNUM *u)
{
    const hk_paillier_pk *pk = hk_paillier_sk_pk(sk);
    BIGNUM *phi = BN_new(), *a = BN_new(), *b = BN_new(), *t = BN_new();
    BN_CTX *ctx = BN_CTX_new();
    int ok;

    CHECK(phi && a && b && t && ctx);
    CHECK(BN_sub(a, hk_paillier_sk_p(sk), BN_value_one()) &&
          BN_sub(b, hk_paillier_sk_q(sk), BN_value_one()) &&
          BN_mul(phi, a, b, ctx) &&
          BN_mod_exp(t, u, phi, hk_paillier_n2(pk), ctx));
    ok = BN_is_one(t);
    BN_free(phi);
    BN_free(a);
    BN_free(b);
    BN_free(t);
    BN_CTX_free(ctx);
    return ok;
}

/* Waits (bounded) until no job is queued or running. */
static void settle(hk_service *svc)
{
    int keys, ready, busy, tables, i;

    struct timespec ts = {0, 5 * 1000 * 1000};

    for (i = 0; i < 2000; i++) {
        hk_rn_pool_stats(svc->rnpool, &keys, &ready, &busy, &tables);
        if (busy == 0)
            return;
        nanosleep(&ts, NULL);
    }
    CHECK(!"pool jobs did not finish");
}

/* A modulus-shaped public key (odd, 2048 bits, no small factor): the
 * pool only needs N. */
static hk_paillier_pk *fake_pk(void)
{
    hk_paillier_pk *pk = NULL;
    BIGNUM *n = BN_new();

    CHECK(n != NULL);
    do
        CHECK(BN_rand(n, 2048, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ODD));
    while (hk_paillier_pk_new(n, 2048, &pk) != HK_OK);
    BN_free(n);
    return pk;
}

/* ckey's fixed-base table: the first ask queues it and gets none, a later
 * one gets a reference that computes ckey^k as hk_paillier_mul does; a
 * second key with the same N (another ckey) gets none; a share's
 * reference outlives the pool's entry. */
static void test_ckey_table(hk_service *svc, const hk_paillier_sk *sk)
{
    const hk_paillier_pk *pk = hk_paillier_sk_pk(sk);
    hk_share a = {0}, b = {0};
    BIGNUM *k = BN_new(), *got = BN_new(), *want = BN_new();
    int keys, ready, busy, tables;

    CHECK(k && got && want);
    CHECK_OK(hk_paillier_sk_pk_copy(sk, &a.pk));
    CHECK_OK(hk_paillier_sk_pk_copy(sk, &b.pk));
    CHECK((a.ckey = BN_new()) && (b.ckey = BN_new()));
    CHECK(BN_rand_range(a.ckey, hk_paillier_n2(pk)) &&
          BN_rand_range(b.ckey, hk_paillier_n2(pk)));
    hk_rn_ckey_table(svc, &a);
    CHECK(a.ckey_fb == NULL);
    settle(svc);
    hk_rn_pool_stats(svc->rnpool, &keys, &ready, &busy, &tables);
    CHECK(tables == 1);
    hk_rn_ckey_table(svc, &a);
    CHECK(hk_paillier_fb_is_for(a.ckey_fb, a.pk, a.ckey));
    hk_rn_ckey_table(svc, &b);
    settle(svc);
    hk_rn_ckey_table(svc, &b);
    CHECK(b.ckey_fb == NULL);
    hk_rn_pool_stats(svc->rnpool, &keys, &ready, &busy, &tables);
    CHECK(tables == 1);
    /* the pool goes, the share's table stays usable */
    hk_rn_pool_free(svc->rnpool);
    CHECK_OK(hk_rn_pool_new(&svc->rnpool));
    CHECK(BN_rand(k, 256, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY));
    CHECK_OK(hk_paillier_fb_exp(a.ckey_fb, k, got));
    CHECK_OK(hk_paillier_mul(a.pk, a.ckey, k, want));
    CHECK(BN_cmp(got, want) == 0);
    hk_paillier_fb_free(a.ckey_fb);
    BN_free(a.ckey);
    BN_free(b.ckey);
    hk_paillier_pk_free(a.pk);
    hk_paillier_pk_free(b.pk);
    BN_free(k);
    BN_free(got);
    BN_free(want);
}

int main(void)
{
    hk_service *svc = calloc(1, sizeof(*svc));
    hk_paillier_sk *sk = NULL;
    const hk_paillier_pk *pk;
    hk_paillier_pk *fakes[HK_RN_KEYS + 3];
    BIGNUM *rn[HK_RN_PER_KEY + 1];
    int keys, ready, busy, tables, i;

    CHECK(svc != NULL);
    CHECK_OK(hk_workers_new(2, &svc->workers));
    CHECK_OK(hk_rn_pool_new(&svc->rnpool));
    CHECK_OK(hk_paillier_keygen(2048, &sk));
    pk = hk_paillier_sk_pk(sk);

    /* Nothing ready: !wait refuses (and starts the fill), wait makes one. */
    CHECK_ERR(hk_rn_take(svc, pk, 0, &rn[0]), HK_ERR_NOT_FOUND);
    CHECK(rn[0] == NULL);
    CHECK_OK(hk_rn_take(svc, pk, 1, &rn[0]));
    CHECK(nth_residue(sk, rn[0]));
    BN_clear_free(rn[0]);
    settle(svc);
    hk_rn_pool_stats(svc->rnpool, &keys, &ready, &busy, &tables);
    CHECK(keys == 1 && ready == HK_RN_PER_KEY && busy == 0);

    /* Ready values: taken once each, all different N-th residues; the
     * pool refills to HK_RN_PER_KEY and no further. */
    for (i = 0; i < HK_RN_PER_KEY; i++) {
        CHECK_OK(hk_rn_take(svc, pk, 0, &rn[i]));
        CHECK(nth_residue(sk, rn[i]));
        CHECK(i == 0 || BN_cmp(rn[i], rn[i - 1]) != 0);
    }
    hk_rn_pool_stats(svc->rnpool, &keys, &ready, &busy, &tables);
    CHECK(ready + busy <= HK_RN_PER_KEY);
    settle(svc);
    hk_rn_pool_stats(svc->rnpool, &keys, &ready, &busy, &tables);
    CHECK(ready == HK_RN_PER_KEY);
    CHECK_OK(hk_rn_take(svc, pk, 0, &rn[HK_RN_PER_KEY]));
    for (i = 0; i < HK_RN_PER_KEY; i++)
        CHECK(BN_cmp(rn[HK_RN_PER_KEY], rn[i]) != 0);
    for (i = 0; i <= HK_RN_PER_KEY; i++)
        BN_clear_free(rn[i]);

    /* A fill then an immediate wait: the value comes from the running
     * job or is made; either way a residue of this modulus. */
    settle(svc);
    CHECK_OK(hk_rn_take(svc, pk, 0, &rn[0]));
    CHECK_OK(hk_rn_take(svc, pk, 0, &rn[1]));
    BN_clear_free(rn[0]);
    BN_clear_free(rn[1]);
    CHECK_OK(hk_rn_take(svc, pk, 1, &rn[0]));
    CHECK(nth_residue(sk, rn[0]));
    BN_clear_free(rn[0]);

    /* Bounded: more moduli than HK_RN_KEYS keep HK_RN_KEYS. */
    for (i = 0; i < HK_RN_KEYS + 3; i++) {
        fakes[i] = fake_pk();
        hk_rn_fill(svc, fakes[i]);
        if (i % 8 == 7)
            settle(svc); /* busy entries are never evicted */
    }
    settle(svc);
    hk_rn_pool_stats(svc->rnpool, &keys, &ready, &busy, &tables);
    CHECK(keys <= HK_RN_KEYS && ready <= HK_RN_KEYS * HK_RN_PER_KEY);
    for (i = 0; i < HK_RN_KEYS + 3; i++)
        hk_paillier_pk_free(fakes[i]);

    test_ckey_table(svc, sk);
    hk_workers_free(svc->workers);
    hk_rn_pool_free(svc->rnpool);
    hk_paillier_sk_free(sk);
    free(svc);
    printf("test_rnpool: ok\n");
    return 0;
}
