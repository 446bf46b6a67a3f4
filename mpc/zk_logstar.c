/* Pi^log* (CGGMP21 figure 25) in HK_LOG_REPS repetitions with 16-bit
 * challenges: C = Enc_N0(x; r), X = x*G, x in range. See zk.h.
 *
 * Two threads (mpc/par.h). The prover's costly first-message values (A_i,
 * D_i of every repetition, and S) depend only on randomness drawn
 * beforehand on the calling thread and on x: they are computed as
 * independent items, then the challenge is derived from all of them, as
 * before. The verifier's checks of the repetitions are independent of one
 * another once the challenge is known: every check of every repetition is
 * still made (the curve checks on the calling thread, the Paillier and
 * ring-Pedersen checks as items), and the proof is accepted only if all
 * pass. Same values, same transcript, same checks; only the thread that
 * computes each one changes. */
#include <string.h>

#include <openssl/crypto.h>

#include "common/libctx.h"
#include "mpc/bn_util.h"
#include "mpc/ct.h"
#include "mpc/par.h"
#include "mpc/zk_impl.h"

#define HK_LOG_Z1_BITS (HK_LOG_ALPHA_BITS + 1)

void hk_logstar_proof_free(hk_logstar_proof *pf)
{
    size_t i;

    if (pf == NULL)
        return;
    BN_free(pf->S);
    pf->S = NULL;
    for (i = 0; i < HK_LOG_REPS; i++) {
        BIGNUM **v[] = {&pf->rep[i].A, &pf->rep[i].D, &pf->rep[i].z1,
                        &pf->rep[i].z2, &pf->rep[i].z3};
        size_t j;

        for (j = 0; j < 5; j++) {
            BN_clear_free(*v[j]);
            *v[j] = NULL;
        }
    }
}

static hk_err hk_logstar_alloc(hk_logstar_proof *pf)
{
    size_t i;

    memset(pf, 0, sizeof(*pf));
    if ((pf->S = BN_new()) == NULL)
        return HK_ERR_NOMEM;
    for (i = 0; i < HK_LOG_REPS; i++) {
        hk_logstar_rep *r = &pf->rep[i];

        if ((r->A = BN_new()) == NULL || (r->D = BN_new()) == NULL ||
            (r->z1 = BN_new()) == NULL || (r->z2 = BN_new()) == NULL ||
            (r->z3 = BN_new()) == NULL)
            return HK_ERR_NOMEM;
    }
    return HK_OK;
}

/* e_i = 16-bit chunks of H(statement, S, (A_i, Y_i, D_i)_i). */
static hk_err hk_logstar_challenge(const hk_binding *b, hk_role role,
                                   const hk_paillier_pk *pk, const hk_rped *rp,
                                   const BIGNUM *C, const hk_point *X,
                                   const hk_logstar_proof *pf,
                                   unsigned e[HK_LOG_REPS])
{
    unsigned char buf[HK_LOG_REPS * 2];
    hk_ts t;
    hk_err r;
    size_t i;

    if ((r = hk_ts_init(&t, "paillier-log-star", b, role)) != HK_OK)
        return r;
    if ((r = hk_ts_add_bn(&t, "N0", hk_paillier_n(pk))) != HK_OK ||
        (r = hk_ts_add_bn(&t, "C", C)) != HK_OK ||
        (r = hk_ts_add_point(&t, "X", X)) != HK_OK ||
        (r = hk_ts_add_bn(&t, "Nt", rp->n)) != HK_OK ||
        (r = hk_ts_add_bn(&t, "s", rp->s)) != HK_OK ||
        (r = hk_ts_add_bn(&t, "t", rp->t)) != HK_OK ||
        (r = hk_ts_add_bn(&t, "S", pf->S)) != HK_OK)
        goto fail;
    for (i = 0; i < HK_LOG_REPS; i++)
        if ((r = hk_ts_add_bn(&t, "A", pf->rep[i].A)) != HK_OK ||
            (r = hk_ts_add_point(&t, "Y", &pf->rep[i].Y)) != HK_OK ||
            (r = hk_ts_add_bn(&t, "D", pf->rep[i].D)) != HK_OK)
            goto fail;
    if ((r = hk_ts_final(&t, buf, sizeof(buf))) != HK_OK)
        return r;
    for (i = 0; i < HK_LOG_REPS; i++)
        e[i] = ((unsigned)buf[2 * i] << 8) | buf[2 * i + 1];
    return HK_OK;
fail:
    hk_ts_free(&t);
    return r;
}

/* Per repetition secrets of the prover. */
typedef struct {
    BIGNUM *alpha[HK_LOG_REPS], *gamma[HK_LOG_REPS], *r[HK_LOG_REPS];
    BIGNUM *x, *mu;
} hk_logstar_secrets;

static void hk_logstar_secrets_free(hk_logstar_secrets *s)
{
    hk_bn_free_array(s->alpha, HK_LOG_REPS);
    hk_bn_free_array(s->gamma, HK_LOG_REPS);
    hk_bn_free_array(s->r, HK_LOG_REPS);
    BN_clear_free(s->x);
    BN_clear_free(s->mu);
}

static hk_err hk_logstar_secrets_new(hk_logstar_secrets *s)
{
    size_t i;

    memset(s, 0, sizeof(*s));
    if ((s->x = hk_bn_secret()) == NULL || (s->mu = hk_bn_secret()) == NULL)
        return HK_ERR_NOMEM;
    for (i = 0; i < HK_LOG_REPS; i++)
        if ((s->alpha[i] = hk_bn_secret()) == NULL ||
            (s->gamma[i] = hk_bn_secret()) == NULL ||
            (s->r[i] = hk_bn_secret()) == NULL)
            return HK_ERR_NOMEM;
    return HK_OK;
}

/* Draws repetition i's alpha and gamma and computes its Y = alpha*G (the
 * curve stays on the calling thread; r_i is drawn by the item of A_i). */
static hk_err hk_logstar_draw(hk_curve *c, const hk_rped *rp,
                              hk_logstar_secrets *s, size_t i,
                              hk_logstar_rep *rep)
{
    hk_scalar a;
    hk_err e;

    if ((e = hk_bn_rand_bits(s->alpha[i], HK_LOG_ALPHA_BITS)) != HK_OK ||
        (e = hk_bn_rand_times(s->gamma[i], rp->n, HK_LOG_ALPHA_BITS)) !=
            HK_OK ||
        (e = hk_scalar_from_bn(c, s->alpha[i], &a)) != HK_OK ||
        (e = hk_point_mul_gen(c, &a, &rep->Y)) != HK_OK)
        goto done;
done:
    OPENSSL_cleanse(&a, sizeof(a));
    return e;
}

/* The prover's items: k < REPS: a fresh unit r_k (its gcd with N is the
 * slow part of the draw) and A_k = Enc(alpha_k; r_k); k < 2 REPS:
 * D = s^alpha t^gamma mod N~ of repetition k - REPS; k = 2 REPS: S =
 * s^x t^mu mod N~. */
typedef struct {
    const hk_paillier_sk *sk;
    const hk_rped *rp;
    hk_logstar_secrets *s; /* items write r_k only */
    hk_logstar_proof *out;
} hk_logstar_prove_job;

#define HK_LOG_PROVE_ITEMS (2 * HK_LOG_REPS + 1)

static hk_err hk_logstar_commit_one(void *arg, size_t k, BN_CTX *ctx)
{
    const hk_logstar_prove_job *j = arg;
    hk_logstar_secrets *s = j->s;
    const hk_rped *rp = j->rp;
    size_t i = k % HK_LOG_REPS;
    hk_err e;

    if (k < HK_LOG_REPS) {
        if ((e = hk_paillier_rand_unit(hk_paillier_sk_pk(j->sk), s->r[i])) !=
            HK_OK)
            return e;
        return hk_paillier_enc_sk(j->sk, s->alpha[i], s->r[i],
                                  j->out->rep[i].A);
    }
    if (k < 2 * HK_LOG_REPS)
        return hk_bn_exp2(j->out->rep[i].D, rp->s, s->alpha[i], rp->t,
                          s->gamma[i], rp->n, rp->mont, 1, ctx);
    return hk_bn_exp2(j->out->S, rp->s, s->x, rp->t, s->mu, rp->n, rp->mont, 1,
                      ctx);
}

/* z1 = alpha + e*x, z2 = r_i * r^e mod N0, z3 = gamma + e*mu. */
static hk_err hk_logstar_respond(const hk_paillier_pk *pk,
                                 hk_logstar_secrets *s, const BIGNUM *r,
                                 size_t i, unsigned ch, hk_logstar_rep *rep,
                                 BN_CTX *ctx)
{
    BIGNUM *ebn, *t;
    hk_err e = HK_ERR_CRYPTO;

    BN_CTX_start(ctx);
    ebn = BN_CTX_get(ctx);
    t = BN_CTX_get(ctx);
    if (t == NULL || !BN_set_word(ebn, ch))
        goto done;
    BN_set_flags(t, BN_FLG_CONSTTIME);
    if (!BN_mul(t, ebn, s->x, ctx) || !BN_add(rep->z1, s->alpha[i], t) ||
        !BN_mod_exp(t, r, ebn, hk_paillier_n(pk), ctx) ||
        !BN_mod_mul(rep->z2, s->r[i], t, hk_paillier_n(pk), ctx) ||
        !BN_mul(t, ebn, s->mu, ctx) || !BN_add(rep->z3, s->gamma[i], t))
        goto done;
    e = HK_OK;
done:
    BN_clear(t);
    BN_CTX_end(ctx);
    return e;
}

hk_err hk_logstar_prove(hk_curve *c, const hk_binding *b, hk_role role,
                        const hk_paillier_sk *sk, const hk_rped *rp,
                        const hk_scalar *x, const BIGNUM *r, const BIGNUM *C,
                        const hk_point *X, hk_logstar_proof *out)
{
    hk_logstar_secrets s;
    hk_logstar_prove_job job;
    unsigned ch[HK_LOG_REPS];
    BN_CTX *ctx;
    hk_err e;
    size_t i;

    if (c == NULL || b == NULL || sk == NULL || rp == NULL || x == NULL ||
        r == NULL || C == NULL || X == NULL || out == NULL)
        return HK_ERR_ARG;
    ctx = BN_CTX_secure_new_ex(hk_libctx());
    if ((e = hk_logstar_secrets_new(&s)) != HK_OK ||
        (e = hk_logstar_alloc(out)) != HK_OK || ctx == NULL) {
        e = HK_ERR_NOMEM;
        goto done;
    }
    e = HK_ERR_CRYPTO;
    if (BN_bin2bn(x->b, HK_SCALAR_LEN, s.x) == NULL)
        goto done;
    /* S = s^x t^mu, mu in [0, 2^256 N~); then per repetition alpha, gamma
     * and Y here, r, A and D (and S) as items on two threads. */
    if ((e = hk_bn_rand_times(s.mu, rp->n, 256)) != HK_OK)
        goto done;
    for (i = 0; i < HK_LOG_REPS; i++)
        if ((e = hk_logstar_draw(c, rp, &s, i, &out->rep[i])) != HK_OK)
            goto done;
    job.sk = sk;
    job.rp = rp;
    job.s = &s;
    job.out = out;
    if ((e = hk_par_run(HK_LOG_PROVE_ITEMS, hk_logstar_commit_one, &job, 1)) !=
        HK_OK)
        goto done;
    if ((e = hk_logstar_challenge(b, role, hk_paillier_sk_pk(sk), rp, C, X, out,
                                  ch)) != HK_OK)
        goto done;
    for (i = 0; i < HK_LOG_REPS; i++)
        if ((e = hk_logstar_respond(hk_paillier_sk_pk(sk), &s, r, i, ch[i],
                                    &out->rep[i], ctx)) != HK_OK)
            goto done;
done:
    hk_logstar_secrets_free(&s);
    BN_CTX_free(ctx);
    if (e != HK_OK)
        hk_logstar_proof_free(out);
    return e;
}

/* Range and group-membership checks on one repetition's values. */
static int hk_logstar_rep_wellformed(const hk_paillier_pk *pk,
                                     const hk_rped *rp,
                                     const hk_logstar_rep *rep)
{
    return hk_paillier_ct_check(pk, rep->A) == HK_OK &&
           hk_paillier_unit_check(pk, rep->z2) == HK_OK &&
           hk_bn_below(rep->D, rp->n) && !BN_is_zero(rep->D) &&
           hk_bn_below_bits(rep->z1, HK_LOG_Z1_BITS) &&
           hk_bn_below_bits(rep->z3,
                            HK_LOG_ALPHA_BITS + BN_num_bits(rp->n) + 1);
}

/* (1 + z1*N0) * z2^N0 == A * C^e mod N0^2. */
static hk_err hk_logstar_check_enc(const hk_paillier_pk *pk, const BIGNUM *C,
                                   const hk_logstar_rep *rep, unsigned ch,
                                   BN_CTX *ctx)
{
    const BIGNUM *n = hk_paillier_n(pk), *n2 = hk_paillier_n2(pk);
    BIGNUM *l, *rr, *ebn;
    hk_err e = HK_ERR_CRYPTO;

    BN_CTX_start(ctx);
    l = BN_CTX_get(ctx);
    rr = BN_CTX_get(ctx);
    ebn = BN_CTX_get(ctx);
    if (ebn == NULL || !BN_set_word(ebn, ch))
        goto done;
    if (!BN_mul(l, rep->z1, n, ctx) || !BN_add_word(l, 1) ||
        !BN_mod_exp(rr, rep->z2, n, n2, ctx) ||
        !BN_mod_mul(l, l, rr, n2, ctx) || !BN_mod_exp(rr, C, ebn, n2, ctx) ||
        !BN_mod_mul(rr, rr, rep->A, n2, ctx))
        goto done;
    e = BN_cmp(l, rr) == 0 ? HK_OK : HK_ERR_PROOF;
done:
    BN_CTX_end(ctx);
    return e;
}

/* The verifier's check of s^z1 t^z3 mod N~ by CRT. z1 and z3 come from
 * the prover, who may choose them to measure how long the check takes; p
 * and q are the verifier's secret. So nothing here may take a time that
 * depends on p or q:
 *  - the exponents are NOT reduced mod p - 1 (the reduction's result, and
 *    with it the variable-time exponentiation's run time, would depend on
 *    p): each side computes (s mod p)^z1 and (t mod p)^z3 with the full
 *    public exponents, by BN_mod_exp_mont_consttime (fixed window, the
 *    table read by constant-time gather, the number of steps set by the
 *    exponents' public lengths) with precomputed Montgomery contexts;
 *  - the product mod p and the recombination run on fixed-width limbs
 *    (mpc/ct.c) instead of BN_mod_mul, BN_mod_sub and BN_mod_inverse.
 * The result s^z1 t^z3 mod N~ is public (anyone can compute it from N~),
 * so comparing it with BN_cmp is fine. Cost: about 1.2 exponentiations of
 * 2048-bit exponent mod each 1024-bit prime, about three times cheaper
 * than the same exponentiation mod N~. */
typedef struct {
    BIGNUM *m, *s, *t; /* the prime, s mod m, t mod m */
    BN_MONT_CTX *mont;
    hk_ct_mod *ct;
} hk_ped_side;

struct hk_ped_crt {
    hk_ped_side side[2]; /* the larger prime first (hk_ct_crt needs P > Q) */
    hk_ct_crt *crt;
};

void hk_ped_crt_free(hk_ped_crt *c)
{
    size_t i;

    if (c == NULL)
        return;
    for (i = 0; i < 2; i++) {
        BN_clear_free(c->side[i].m);
        BN_clear_free(c->side[i].s);
        BN_clear_free(c->side[i].t);
        BN_MONT_CTX_free(c->side[i].mont);
        hk_ct_mod_free(c->side[i].ct);
    }
    hk_ct_crt_free(c->crt);
    OPENSSL_clear_free(c, sizeof(*c));
}

static hk_err hk_ped_side_new(hk_ped_side *sd, const hk_rped_secret *sec,
                              const BIGNUM *m, BN_CTX *ctx)
{
    if ((sd->m = hk_bn_secret()) == NULL || (sd->s = hk_bn_secret()) == NULL ||
        (sd->t = hk_bn_secret()) == NULL ||
        (sd->mont = BN_MONT_CTX_new()) == NULL)
        return HK_ERR_NOMEM;
    /* one-time setup on no attacker input: need not be constant time */
    if (!BN_copy(sd->m, m) || !BN_nnmod(sd->s, sec->pub.s, m, ctx) ||
        !BN_nnmod(sd->t, sec->pub.t, m, ctx) ||
        !BN_MONT_CTX_set(sd->mont, m, ctx))
        return HK_ERR_CRYPTO;
    return hk_ct_mod_new(m, &sd->ct);
}

hk_err hk_ped_crt_new(const hk_rped_secret *sec, hk_ped_crt **out)
{
    const BIGNUM *big, *small;
    hk_ped_crt *c;
    BN_CTX *ctx;
    hk_err e = HK_ERR_NOMEM;

    *out = NULL;
    big = BN_cmp(sec->p, sec->q) > 0 ? sec->p : sec->q;
    small = big == sec->p ? sec->q : sec->p;
    c = OPENSSL_zalloc(sizeof(*c));
    ctx = BN_CTX_secure_new();
    if (c == NULL || ctx == NULL)
        goto done;
    if ((e = hk_ped_side_new(&c->side[0], sec, big, ctx)) != HK_OK ||
        (e = hk_ped_side_new(&c->side[1], sec, small, ctx)) != HK_OK ||
        (e = hk_ct_crt_new(big, small, &c->crt)) != HK_OK)
        goto done;
    *out = c;
    c = NULL;
done:
    hk_ped_crt_free(c);
    BN_CTX_free(ctx);
    return e;
}

/* out = s^z1 t^z3 mod sd->m. */
static int hk_ped_half(BIGNUM *out, const hk_ped_side *sd, const BIGNUM *z1,
                       const BIGNUM *z3, BN_CTX *ctx)
{
    BIGNUM *a, *b;
    int ok;

    BN_CTX_start(ctx);
    a = BN_CTX_get(ctx);
    b = BN_CTX_get(ctx);
    if (b != NULL) {
        BN_set_flags(a, BN_FLG_CONSTTIME);
        BN_set_flags(b, BN_FLG_CONSTTIME);
    }
    ok = b != NULL &&
         BN_mod_exp_mont_consttime(a, sd->s, z1, sd->m, ctx, sd->mont) &&
         BN_mod_exp_mont_consttime(b, sd->t, z3, sd->m, ctx, sd->mont) &&
         hk_ct_mod_mul(sd->ct, a, b, out) == HK_OK;
    BN_clear(a);
    BN_clear(b);
    BN_CTX_end(ctx);
    return ok;
}

/* s^z1 t^z3 mod N~, by CRT when the verifier owns the setup. */
static hk_err hk_ped_lhs(BIGNUM *out, const hk_rped *rp,
                         const hk_rped_secret *sec, const hk_logstar_rep *rep,
                         BN_CTX *ctx)
{
    BIGNUM *xp, *xq;
    int ok;

    if (sec == NULL)
        return hk_bn_exp2(out, rp->s, rep->z1, rp->t, rep->z3, rp->n, rp->mont,
                          0, ctx);
    BN_CTX_start(ctx);
    xp = BN_CTX_get(ctx);
    xq = BN_CTX_get(ctx);
    ok = xq != NULL &&
         hk_ped_half(xp, &sec->crt->side[0], rep->z1, rep->z3, ctx) &&
         hk_ped_half(xq, &sec->crt->side[1], rep->z1, rep->z3, ctx) &&
         hk_ct_crt_combine(sec->crt->crt, xp, xq, out) == HK_OK;
    BN_clear(xp);
    BN_clear(xq);
    BN_CTX_end(ctx);
    return ok ? HK_OK : HK_ERR_CRYPTO;
}

/* s^z1 t^z3 == D * S^e mod N~. */
static hk_err hk_logstar_check_ped(const hk_rped *rp, const hk_rped_secret *sec,
                                   const BIGNUM *S, const hk_logstar_rep *rep,
                                   unsigned ch, BN_CTX *ctx)
{
    BIGNUM *l, *rr, *ebn;
    hk_err e = HK_ERR_CRYPTO;

    BN_CTX_start(ctx);
    l = BN_CTX_get(ctx);
    rr = BN_CTX_get(ctx);
    ebn = BN_CTX_get(ctx);
    if (ebn == NULL || !BN_set_word(ebn, ch))
        goto done;
    if (hk_ped_lhs(l, rp, sec, rep, ctx) != HK_OK ||
        !BN_mod_exp_mont(rr, S, ebn, rp->n, ctx, rp->mont) ||
        !BN_mod_mul(rr, rr, rep->D, rp->n, ctx))
        goto done;
    e = BN_cmp(l, rr) == 0 ? HK_OK : HK_ERR_PROOF;
done:
    BN_CTX_end(ctx);
    return e;
}

/* z1*G == Y + e*X. */
static hk_err hk_logstar_check_dl(hk_curve *c, const hk_point *X,
                                  const hk_logstar_rep *rep, unsigned ch)
{
    hk_scalar z, es;
    BIGNUM *ebn;
    hk_err e;

    if ((e = hk_scalar_from_bn(c, rep->z1, &z)) != HK_OK)
        return e;
    if ((ebn = BN_new()) == NULL)
        return HK_ERR_NOMEM;
    e = BN_set_word(ebn, ch) ? hk_scalar_from_bn(c, ebn, &es) : HK_ERR_CRYPTO;
    BN_free(ebn);
    if (e != HK_OK)
        return e;
    return hk_zk_lin_check(c, &z, &rep->Y, &es, X);
}

/* The verifier's items: k < REPS: the ring-Pedersen equation of
 * repetition k; else the Paillier equation of repetition k - REPS. */
typedef struct {
    const hk_rped *rp;
    const hk_rped_secret *sec;
    const hk_paillier_pk *pk;
    const BIGNUM *C;
    const hk_logstar_proof *pf;
    const unsigned *ch;
} hk_logstar_verify_job;

static hk_err hk_logstar_check_one(void *arg, size_t k, BN_CTX *ctx)
{
    const hk_logstar_verify_job *j = arg;
    size_t i = k % HK_LOG_REPS;

    if (k < HK_LOG_REPS)
        return hk_logstar_check_ped(j->rp, j->sec, j->pf->S, &j->pf->rep[i],
                                    j->ch[i], ctx);
    return hk_logstar_check_enc(j->pk, j->C, &j->pf->rep[i], j->ch[i], ctx);
}

static hk_err hk_logstar_wellformed_one(void *arg, size_t i, BN_CTX *ctx)
{
    const hk_logstar_verify_job *j = arg;

    (void)ctx;
    return hk_logstar_rep_wellformed(j->pk, j->rp, &j->pf->rep[i])
               ? HK_OK
               : HK_ERR_PROOF;
}

hk_err hk_logstar_verify(hk_curve *c, const hk_binding *b, hk_role role,
                         const hk_paillier_pk *pk, const hk_rped *rp,
                         const hk_rped_secret *sec, const BIGNUM *C,
                         const hk_point *X, const hk_logstar_proof *pf)
{
    hk_logstar_verify_job job;
    unsigned ch[HK_LOG_REPS];
    hk_err e;
    size_t i;

    if (c == NULL || b == NULL || pk == NULL || rp == NULL || C == NULL ||
        X == NULL || pf == NULL)
        return HK_ERR_ARG;
    if (pf->S == NULL || !hk_bn_below(pf->S, rp->n) || BN_is_zero(pf->S))
        return HK_ERR_PROOF;
    job.rp = rp;
    job.sec = sec;
    job.pk = pk;
    job.C = C;
    job.pf = pf;
    job.ch = ch;
    /* every repetition well formed (each a gcd or two: items) before
     * anything is hashed */
    if ((e = hk_par_run(HK_LOG_REPS, hk_logstar_wellformed_one, &job, 0)) !=
        HK_OK)
        return e == HK_ERR_CRYPTO || e == HK_ERR_NOMEM ? e : HK_ERR_PROOF;
    if ((e = hk_logstar_challenge(b, role, pk, rp, C, X, pf, ch)) != HK_OK)
        return e;
    /* every repetition's three checks: z1*G on this thread, the
     * ring-Pedersen and Paillier equations as items on two threads */
    for (i = 0; i < HK_LOG_REPS && e == HK_OK; i++)
        e = hk_logstar_check_dl(c, X, &pf->rep[i], ch[i]);
    if (e == HK_OK)
        e = hk_par_run(2 * HK_LOG_REPS, hk_logstar_check_one, &job, 0);
    return e == HK_ERR_CRYPTO || e == HK_ERR_NOMEM
               ? e
               : (e == HK_OK ? HK_OK : HK_ERR_PROOF);
}
