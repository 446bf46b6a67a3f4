/* Keystore, the face (keystore.h): opening and creating a token, PIN
 * login, the failed-PIN counter, the crash-safe PIN change and the SO's
 * reset of the user PIN. Built bottom-up on ks_io.c (files), ks_seal.c
 * (sealing), ks_token.c (the token record, names, the token lock),
 * ks_keys.c (key files) and ks_so.c (SO and escrow records); none of them
 * calls back up into this file. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/libctx.h"
#include "client/ks_impl.h"
#include "mpc/codec.h"

/* --- PIN check and key wrapping ---------------------------------------- */

static void hk_ks_check_aad(hk_ks_aad *a, const hk_ks_slot *s)
{
    hk_ks_aad_init(a, "halfkey/pin-check/1");
    hk_ks_aad_u64(a, s->gen);
    hk_ks_aad_add(a, s->salt, HK_KS_SALT_LEN);
    hk_ks_aad_u64(a, s->kdf.log2n);
    hk_ks_aad_u64(a, s->kdf.r);
    hk_ks_aad_u64(a, s->kdf.p);
}

/* s->check = Seal(HKDF(mk, "pin-check"), fixed text). */
static hk_err hk_ks_check_make(hk_ks_slot *s,
                               const unsigned char mk[HK_KS_KEY_LEN])
{
    unsigned char key[HK_KS_KEY_LEN];
    hk_ks_aad a;
    hk_err e;

    hk_ks_check_aad(&a, s);
    if ((e = hk_ks_hkdf(mk, "halfkey/pin-check/1", NULL, 0, key)) == HK_OK)
        e = hk_aead_seal(key, a.b, a.len,
                         (const unsigned char *)HK_KS_CHECK_TEXT,
                         HK_KS_CHECK_LEN - HK_KS_SEAL_OVERHEAD, s->check);
    OPENSSL_cleanse(key, sizeof(key));
    return e;
}

/* HK_OK if mk opens s->check, HK_ERR_PIN if not. */
static hk_err hk_ks_check_verify(const hk_ks_slot *s,
                                 const unsigned char mk[HK_KS_KEY_LEN])
{
    unsigned char key[HK_KS_KEY_LEN];
    unsigned char pt[HK_KS_CHECK_LEN - HK_KS_SEAL_OVERHEAD];
    hk_ks_aad a;
    hk_err e;

    hk_ks_check_aad(&a, s);
    if ((e = hk_ks_hkdf(mk, "halfkey/pin-check/1", NULL, 0, key)) != HK_OK)
        goto done;
    e = hk_aead_open(key, a.b, a.len, s->check, HK_KS_CHECK_LEN, pt);
    if (e == HK_ERR_SEAL ||
        (e == HK_OK && CRYPTO_memcmp(pt, HK_KS_CHECK_TEXT, sizeof(pt)) != 0))
        e = HK_ERR_PIN;
done:
    OPENSSL_cleanse(key, sizeof(key));
    return e;
}

/* The authorisation value of a TPM slot's sealed object: HKDF(salt; PIN).
 * A cheap derivation on purpose: the object loads on its TPM only, whose
 * dictionary-attack protection limits the guesses. */
static hk_err hk_ks_tpm_auth(const hk_ks_slot *s, const char *pin,
                             unsigned char auth[HK_KS_TPM_AUTH_LEN])
{
    return hk_ks_hkdf(s->salt, "halfkey/tpm-auth/1", (const unsigned char *)pin,
                      strlen(pin), auth);
}

/* The slot's master key from pin: derived (scrypt), or unsealed by the
 * token's TPM (tcti). */
static hk_err hk_ks_slot_mk(const hk_ks_slot *s, const char *tcti,
                            const char *pin, unsigned char mk[HK_KS_KEY_LEN])
{
    unsigned char auth[HK_KS_TPM_AUTH_LEN];
    hk_err e;

    if (!s->is_tpm)
        return hk_ks_scrypt(pin, s->salt, &s->kdf, mk);
    if ((e = hk_ks_tpm_auth(s, pin, auth)) == HK_OK)
        e = hk_ks_tpm_unseal(tcti, auth, &s->tpm, mk);
    OPENSSL_cleanse(auth, sizeof(auth));
    return e;
}

/* Derives (or unseals) the slot's master key from pin and checks it:
 * HK_ERR_PIN. */
static hk_err hk_ks_slot_try(const hk_ks_slot *s, const char *tcti,
                             const char *pin, hk_ks_mk *mk)
{
    hk_err e;

    mk->gen = s->gen;
    if ((e = hk_ks_slot_mk(s, tcti, pin, mk->k)) == HK_OK)
        e = hk_ks_check_verify(s, mk->k);
    if (e != HK_OK)
        OPENSSL_cleanse(mk, sizeof(*mk));
    return e;
}

static void hk_ks_wrap_aad(hk_ks_aad *a, unsigned long under,
                           unsigned long what)
{
    hk_ks_aad_init(a, "halfkey/wrap/1");
    hk_ks_aad_u64(a, under);
    hk_ks_aad_u64(a, what);
}

/* out = what's key sealed under `under`. */
static hk_err hk_ks_wrap(const hk_ks_mk *under, const hk_ks_mk *what,
                         unsigned char out[HK_KS_WRAP_LEN])
{
    unsigned char key[HK_KS_KEY_LEN];
    hk_ks_aad a;
    hk_err e;

    hk_ks_wrap_aad(&a, under->gen, what->gen);
    if ((e = hk_ks_hkdf(under->k, "halfkey/wrap/1", NULL, 0, key)) == HK_OK)
        e = hk_aead_seal(key, a.b, a.len, what->k, HK_KS_KEY_LEN, out);
    OPENSSL_cleanse(key, sizeof(key));
    return e;
}

static hk_err hk_ks_unwrap(const hk_ks_mk *under, unsigned long gen,
                           const unsigned char in[HK_KS_WRAP_LEN],
                           hk_ks_mk *out)
{
    unsigned char key[HK_KS_KEY_LEN];
    hk_ks_aad a;
    hk_err e;

    out->gen = gen;
    hk_ks_wrap_aad(&a, under->gen, gen);
    if ((e = hk_ks_hkdf(under->k, "halfkey/wrap/1", NULL, 0, key)) == HK_OK)
        e = hk_aead_open(key, a.b, a.len, in, HK_KS_WRAP_LEN, out->k);
    OPENSSL_cleanse(key, sizeof(key));
    return e;
}

/* --- login, counter, settling a pending change ------------------------- */

/* Finishes a pending PIN change toward mk's generation (the PIN just
 * proven): re-seals every key to it, then clears the pending state in t
 * (the caller writes t). t is unchanged on error. */
static hk_err hk_ks_settle(int kfd, hk_ks_token *t, const hk_ks_mk *mk)
{
    int forward = mk->gen == t->cur.gen;
    hk_ks_mk other;
    hk_err e;

    e = forward ? hk_ks_unwrap(mk, t->prev.gen, t->wrap_prev, &other)
                : hk_ks_unwrap(mk, t->cur.gen, t->wrap_cur, &other);
    if (e != HK_OK)
        goto done;
    if ((e = hk_ks_rekey(kfd, &other, mk)) != HK_OK)
        goto done;
    if (!forward)
        t->cur = t->prev;
    t->pending = 0;
    OPENSSL_cleanse(t->wrap_prev, sizeof(t->wrap_prev));
    OPENSSL_cleanse(t->wrap_cur, sizeof(t->wrap_cur));
done:
    OPENSSL_cleanse(&other, sizeof(other));
    return e;
}

/* Tries pin on the current slot, then (pending change) the previous one. */
static hk_err hk_ks_try_pin(const hk_ks_token *t, const char *pin, hk_ks_mk *mk)
{
    hk_err e = hk_ks_slot_try(&t->cur, t->tcti, pin, mk);

    if (e == HK_ERR_PIN && t->pending)
        e = hk_ks_slot_try(&t->prev, t->tcti, pin, mk);
    return e;
}

/* Checks pin against the token, with the counter: the try is counted on
 * disk BEFORE the check and un-counted after a success. Settles a pending
 * change. Caller holds the token lock. On success *mk is the master key
 * of the token's (now only) generation and *t the token as written. */
static hk_err hk_ks_auth(hk_ks *ks, const char *pin, hk_ks_token *t,
                         hk_ks_mk *mk)
{
    hk_err e, ew;

    if ((e = hk_ks_token_read(ks->dfd, t)) != HK_OK)
        return e;
    if (t->fails >= t->max_fails)
        return HK_ERR_PIN_LOCKED;
    t->fails++;
    if ((e = hk_ks_token_write(ks->dfd, t)) != HK_OK)
        return e;
    if ((e = hk_ks_try_pin(t, pin, mk)) != HK_OK)
        return e;
    t->fails = 0;
    if (t->pending)
        e = hk_ks_settle(ks->kfd, t, mk);
    ew = hk_ks_token_write(ks->dfd, t);
    if (e == HK_OK)
        e = ew;
    if (e != HK_OK)
        OPENSSL_cleanse(mk, sizeof(*mk));
    return e;
}

static void hk_ks_logout_locked(hk_ks *ks)
{
    hk_ks_icache_clear(ks);
    OPENSSL_cleanse(ks->mk, sizeof(ks->mk));
    ks->logged_in = 0;
    ks->gen = 0;
}

static void hk_ks_login_set(hk_ks *ks, const hk_ks_mk *mk)
{
    hk_ks_icache_clear(ks);
    memcpy(ks->mk, mk->k, HK_KS_KEY_LEN);
    ks->gen = mk->gen;
    ks->logged_in = 1;
}

static hk_err hk_ks_upgrade_kdf(hk_ks *ks, hk_ks_token *t, const char *pin,
                                hk_ks_mk *mk);

hk_err hk_ks_login(hk_ks *ks, const char *pin)
{
    hk_ks_token t;
    hk_ks_mk mk;
    int lfd = -1;
    hk_err e;

    if (ks == NULL || pin == NULL)
        return HK_ERR_ARG;
    if (!hk_ks_pin_given_ok(pin))
        return HK_ERR_ARG;
    pthread_mutex_lock(&ks->mu);
    hk_ks_logout_locked(ks);
    if ((e = hk_ks_tlock(ks, &lfd)) != HK_OK ||
        (e = hk_ks_auth(ks, pin, &t, &mk)) != HK_OK ||
        (e = hk_ks_upgrade_kdf(ks, &t, pin, &mk)) != HK_OK)
        goto done;
    hk_ks_login_set(ks, &mk);
done:
    if (lfd >= 0)
        close(lfd);
    pthread_mutex_unlock(&ks->mu);
    OPENSSL_cleanse(&mk, sizeof(mk));
    OPENSSL_cleanse(&t, sizeof(t));
    return e;
}

hk_err hk_ks_pin_check(hk_ks *ks, const char *pin)
{
    hk_ks_token t;
    hk_ks_mk mk;
    hk_err e;

    if (ks == NULL || pin == NULL)
        return HK_ERR_ARG;
    if (!hk_ks_pin_given_ok(pin))
        return HK_ERR_ARG;
    pthread_mutex_lock(&ks->mu);
    if ((e = hk_ks_token_read(ks->dfd, &t)) == HK_OK)
        e = t.fails >= t.max_fails ? HK_ERR_PIN_LOCKED
                                   : hk_ks_try_pin(&t, pin, &mk);
    pthread_mutex_unlock(&ks->mu);
    OPENSSL_cleanse(&mk, sizeof(mk));
    OPENSSL_cleanse(&t, sizeof(t));
    return e;
}

void hk_ks_logout(hk_ks *ks)
{
    if (ks == NULL)
        return;
    pthread_mutex_lock(&ks->mu);
    hk_ks_logout_locked(ks);
    pthread_mutex_unlock(&ks->mu);
}

hk_err hk_ks_token_info(hk_ks *ks, hk_ks_tokeninfo *out)
{
    hk_ks_token t;
    hk_err e;

    if (ks == NULL || out == NULL)
        return HK_ERR_ARG;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&ks->mu);
    if ((e = hk_ks_token_read(ks->dfd, &t)) == HK_OK) {
        memcpy(out->label, t.label, sizeof(out->label));
        out->pin_fails = t.fails;
        out->pin_max_fails = t.max_fails;
        out->pin_locked = t.fails >= t.max_fails;
        out->pin_change_pending = t.pending;
        out->logged_in = ks->logged_in;
        out->tpm = t.tcti[0] != 0;
        memcpy(out->tpm_tcti, t.tcti, sizeof(out->tpm_tcti));
        hk_ks_so_info(ks, t.cur.gen, out);
    }
    pthread_mutex_unlock(&ks->mu);
    return e;
}

hk_err hk_ks_reset_pin_counter(hk_ks *ks)
{
    hk_ks_token t;
    int lfd = -1;
    hk_err e;

    if (ks == NULL)
        return HK_ERR_ARG;
    pthread_mutex_lock(&ks->mu);
    if ((e = hk_ks_tlock(ks, &lfd)) != HK_OK ||
        (e = hk_ks_token_read(ks->dfd, &t)) != HK_OK)
        goto done;
    t.fails = 0;
    e = hk_ks_token_write(ks->dfd, &t);
done:
    if (lfd >= 0)
        close(lfd);
    pthread_mutex_unlock(&ks->mu);
    return e;
}

/* --- changing the PIN --------------------------------------------------- */

/* Escrows neu (keeping old's entry) before the change is committed, so
 * that the SO can open whichever generation a crash leaves. */
static hk_err hk_ks_escrow_next(hk_ks *ks, const unsigned char *rk,
                                const hk_ks_mk *neu, unsigned long keep)
{
    hk_ks_esc esc;
    hk_err e;

    if (rk == NULL)
        return HK_OK;
    if ((e = hk_ks_esc_read(ks->dfd, &esc)) == HK_ERR_DECODE)
        memset(&esc, 0, sizeof(esc));
    else if (e != HK_OK)
        return e;
    if ((e = hk_ks_esc_put(&esc, rk, neu, keep)) == HK_OK)
        e = hk_ks_esc_write(ks->dfd, &esc);
    OPENSSL_cleanse(&esc, sizeof(esc));
    return e;
}

/* Fills slot s (gen set) for pin: a fresh salt, then the master key
 * *mk derived from pin at today's scrypt cost, or (TPM-backed token: tcti
 * set) a random one sealed by the TPM under the PIN's authorisation; the
 * check value last. */
static hk_err hk_ks_slot_fill(hk_ks_slot *s, const char *tcti, const char *pin,
                              hk_ks_mk *mk)
{
    unsigned char auth[HK_KS_TPM_AUTH_LEN];
    hk_err e;

    mk->gen = s->gen;
    hk_ks_kdf_default(&s->kdf);
    s->is_tpm = tcti != NULL && tcti[0] != 0;
    memset(&s->tpm, 0, sizeof(s->tpm));
    if (!hk_rand_bytes(s->salt, HK_KS_SALT_LEN))
        return HK_ERR_RAND;
    if (!s->is_tpm) {
        e = hk_ks_scrypt(pin, s->salt, &s->kdf, mk->k);
    } else if (!hk_rand_priv_bytes(mk->k, HK_KS_KEY_LEN)) {
        e = HK_ERR_RAND;
    } else if ((e = hk_ks_tpm_auth(s, pin, auth)) == HK_OK) {
        e = hk_ks_tpm_seal(tcti, auth, mk->k, &s->tpm);
    }
    OPENSSL_cleanse(auth, sizeof(auth));
    if (e != HK_OK)
        return e;
    return hk_ks_check_make(s, mk->k);
}

/* The new slot of a PIN change from generation `gen` to pin (see
 * hk_ks_slot_fill); *neu its master key. */
static hk_err hk_ks_slot_new(hk_ks_token *t, unsigned long gen, const char *pin,
                             hk_ks_mk *neu)
{
    if (gen >= HK_KS_GEN_MAX)
        return HK_ERR_STATE;
    t->cur.gen = gen + 1;
    return hk_ks_slot_fill(&t->cur, t->tcti, pin, neu);
}

/* Moves the token from old's generation to a new one under pin: escrow
 * the new master key (rk: the recovery key, NULL if none), commit the
 * pending token (both slots, cross-wrapped keys), re-seal every key file,
 * commit the final token, drop the old escrow entry. *neu receives the new
 * master key. */
static hk_err hk_ks_repin(hk_ks *ks, hk_ks_token *t, const hk_ks_mk *old,
                          const char *pin, const unsigned char *rk,
                          hk_ks_mk *neu)
{
    hk_err e;

    if (old->gen != t->cur.gen || t->pending)
        return HK_ERR_STATE;
    t->prev = t->cur;
    if ((e = hk_ks_slot_new(t, old->gen, pin, neu)) != HK_OK ||
        (e = hk_ks_wrap(neu, old, t->wrap_prev)) != HK_OK ||
        (e = hk_ks_wrap(old, neu, t->wrap_cur)) != HK_OK ||
        (e = hk_ks_escrow_next(ks, rk, neu, old->gen)) != HK_OK)
        return e;
    t->pending = 1;
    if ((e = hk_ks_token_write(ks->dfd, t)) != HK_OK || /* commit 1 */
        (e = hk_ks_rekey(ks->kfd, old, neu)) != HK_OK)
        return e;
    t->pending = 0;
    if ((e = hk_ks_token_write(ks->dfd, t)) != HK_OK) /* commit 2 */
        return e;
    return hk_ks_escrow_next(ks, rk, neu, 0);
}

/* The recovery key from the escrow entry of mk's generation; 0 if the
 * token has none (or it does not open: then the SO cannot reset). */
static int hk_ks_user_rk(hk_ks *ks, const hk_ks_mk *mk,
                         unsigned char rk[HK_KS_KEY_LEN])
{
    hk_ks_esc esc;
    int ok;

    ok = hk_ks_esc_read(ks->dfd, &esc) == HK_OK &&
         hk_ks_esc_rk(&esc, mk, rk) == HK_OK;
    OPENSSL_cleanse(&esc, sizeof(esc));
    return ok;
}

hk_err hk_ks_change_pin(hk_ks *ks, const char *old_pin, const char *new_pin)
{
    unsigned char rk[HK_KS_KEY_LEN];
    hk_ks_token t;
    hk_ks_mk old, neu;
    int lfd = -1, has_rk;
    hk_err e;

    if (ks == NULL || old_pin == NULL || new_pin == NULL)
        return HK_ERR_ARG;
    if (!hk_ks_pin_given_ok(old_pin) || !hk_ks_pin_ok(new_pin))
        return HK_ERR_ARG;
    memset(&neu, 0, sizeof(neu));
    memset(&old, 0, sizeof(old));
    pthread_mutex_lock(&ks->mu);
    hk_ks_logout_locked(ks);
    if ((e = hk_ks_tlock(ks, &lfd)) != HK_OK ||
        (e = hk_ks_auth(ks, old_pin, &t, &old)) != HK_OK)
        goto done;
    has_rk = hk_ks_user_rk(ks, &old, rk);
    if ((e = hk_ks_repin(ks, &t, &old, new_pin, has_rk ? rk : NULL, &neu)) !=
        HK_OK)
        goto done;
    hk_ks_login_set(ks, &neu);
done:
    if (lfd >= 0)
        close(lfd);
    pthread_mutex_unlock(&ks->mu);
    OPENSSL_cleanse(rk, sizeof(rk));
    OPENSSL_cleanse(&old, sizeof(old));
    OPENSSL_cleanse(&neu, sizeof(neu));
    OPENSSL_cleanse(&t, sizeof(t));
    return e;
}

/* A token whose PIN slot was made at a lower scrypt cost than today's
 * (hk_ks_kdf_default: tokens of earlier versions) is moved, at its first
 * successful login, to a new slot for the same PIN at today's cost: a PIN
 * change from pin to pin, so the crash safety of hk_ks_repin holds (a
 * crash leaves a pending token that the next login settles). *mk becomes
 * the new master key. If the upgrade fails before anything was committed
 * (e.g. the directory is read-only), the login still succeeds with the old
 * key and the next login tries again; once the token is pending, the error
 * is returned and the next login settles it. */
static hk_err hk_ks_upgrade_kdf(hk_ks *ks, hk_ks_token *t, const char *pin,
                                hk_ks_mk *mk)
{
    unsigned char rk[HK_KS_KEY_LEN];
    hk_ks_kdf want;
    hk_ks_mk neu;
    hk_ks_token now;
    hk_err e;

    hk_ks_kdf_default(&want);
    if (!hk_ks_kdf_weaker(&t->cur.kdf, &want))
        return HK_OK;
    memset(&neu, 0, sizeof(neu));
    e = hk_ks_repin(ks, t, mk, pin, hk_ks_user_rk(ks, mk, rk) ? rk : NULL,
                    &neu);
    if (e == HK_OK)
        *mk = neu;
    else if (hk_ks_token_read(ks->dfd, &now) == HK_OK && !now.pending &&
             now.cur.gen == mk->gen)
        e = HK_OK; /* nothing committed: keep the old slot for now */
    OPENSSL_cleanse(rk, sizeof(rk));
    OPENSSL_cleanse(&neu, sizeof(neu));
    OPENSSL_cleanse(&now, sizeof(now));
    return e;
}

/* --- the SO sets the user PIN ------------------------------------------- */

/* The user's master key from the escrow: the current generation's, or
 * (change pending) the previous one's; each checked against its slot. */
static hk_err hk_ks_so_user_mk(hk_ks *ks, const hk_ks_token *t, hk_ks_mk *mk)
{
    const hk_ks_slot *s[2] = {&t->cur, t->pending ? &t->prev : NULL};
    hk_ks_esc esc;
    hk_err e;
    int i;

    if ((e = hk_ks_esc_read(ks->dfd, &esc)) != HK_OK)
        return e;
    for (i = 0, e = HK_ERR_NOT_FOUND; i < 2 && e != HK_OK; i++)
        if (s[i] != NULL &&
            (e = hk_ks_esc_mk(&esc, ks->so_rk, s[i]->gen, mk)) == HK_OK &&
            (e = hk_ks_check_verify(s[i], mk->k)) != HK_OK)
            e = HK_ERR_SEAL;
    OPENSSL_cleanse(&esc, sizeof(esc));
    return e;
}

/* No escrow: allowed only for a token without keys (nothing is sealed
 * under the old PIN): a fresh slot under pin, escrowed. */
static hk_err hk_ks_so_fresh_pin(hk_ks *ks, hk_ks_token *t, const char *pin)
{
    char **names = NULL;
    hk_ks_mk neu;
    size_t n = 0;
    hk_err e;

    if ((e = hk_ks_key_names(ks->kfd, &names, &n)) != HK_OK)
        return e;
    hk_ks_names_free(names, n);
    if (n > 0)
        return HK_ERR_STATE; /* keys sealed under a PIN the SO cannot open */
    t->pending = 0;
    if ((e = hk_ks_slot_new(t, t->cur.gen, pin, &neu)) == HK_OK &&
        (e = hk_ks_escrow_next(ks, ks->so_rk, &neu, 0)) == HK_OK)
        e = hk_ks_token_write(ks->dfd, t);
    OPENSSL_cleanse(&neu, sizeof(neu));
    return e;
}

static hk_err hk_ks_so_init_pin_locked(hk_ks *ks, const char *pin)
{
    hk_ks_token t;
    hk_ks_mk mk, neu;
    hk_err e;

    memset(&mk, 0, sizeof(mk));
    memset(&neu, 0, sizeof(neu));
    if ((e = hk_ks_token_read(ks->dfd, &t)) != HK_OK)
        return e;
    t.fails = 0; /* the reset unlocks a locked user PIN */
    e = hk_ks_so_user_mk(ks, &t, &mk);
    if (e == HK_ERR_NOT_FOUND)
        e = hk_ks_so_fresh_pin(ks, &t, pin);
    else if (e == HK_OK &&
             (!t.pending || (e = hk_ks_settle(ks->kfd, &t, &mk)) == HK_OK))
        e = hk_ks_repin(ks, &t, &mk, pin, ks->so_rk, &neu);
    OPENSSL_cleanse(&mk, sizeof(mk));
    OPENSSL_cleanse(&neu, sizeof(neu));
    OPENSSL_cleanse(&t, sizeof(t));
    return e;
}

hk_err hk_ks_so_init_pin(hk_ks *ks, const char *new_pin)
{
    int lfd = -1;
    hk_err e;

    if (ks == NULL || !hk_ks_pin_ok(new_pin))
        return HK_ERR_ARG;
    pthread_mutex_lock(&ks->mu);
    hk_ks_logout_locked(ks);
    if (!ks->so_logged_in)
        e = HK_ERR_STATE;
    else if ((e = hk_ks_tlock(ks, &lfd)) == HK_OK)
        e = hk_ks_so_init_pin_locked(ks, new_pin);
    if (lfd >= 0)
        close(lfd);
    pthread_mutex_unlock(&ks->mu);
    return e;
}

/* --- opening and creating ----------------------------------------------- */

static hk_err hk_ks_new(const char *dir, hk_ks **out)
{
    hk_ks *ks;
    hk_err e;

    if ((ks = OPENSSL_zalloc(sizeof(*ks))) == NULL)
        return HK_ERR_NOMEM;
    ks->dfd = ks->kfd = -1;
    if (pthread_mutex_init(&ks->mu, NULL) != 0) {
        OPENSSL_free(ks);
        return HK_ERR_NOMEM;
    }
    if ((e = hk_ks_dir_resolve(dir, &ks->dir)) != HK_OK) {
        hk_ks_close(ks);
        return e;
    }
    *out = ks;
    return HK_OK;
}

void hk_ks_close(hk_ks *ks)
{
    if (ks == NULL)
        return;
    OPENSSL_cleanse(ks->mk, sizeof(ks->mk));
    hk_ks_icache_clear(ks);
    if (ks->kfd >= 0)
        close(ks->kfd);
    if (ks->dfd >= 0)
        close(ks->dfd);
    pthread_mutex_destroy(&ks->mu);
    OPENSSL_free(ks->dir);
    OPENSSL_clear_free(ks, sizeof(*ks));
}

const char *hk_ks_dir(const hk_ks *ks) { return ks != NULL ? ks->dir : NULL; }

/* Removes temp files of crashed writers if no writer is active now. */
static void hk_ks_sweep(hk_ks *ks)
{
    int lfd;

    if (hk_ks_lock_file(ks->dfd, HK_KS_TLOCK_FILE, 0, &lfd) != HK_OK)
        return;
    hk_ks_sweep_temps(ks->dfd);
    hk_ks_sweep_temps(ks->kfd);
    close(lfd);
}

hk_err hk_ks_open(const char *dir, hk_ks **out)
{
    hk_ks_token t;
    hk_ks *ks = NULL;
    hk_err e;

    if (out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if ((e = hk_ks_new(dir, &ks)) != HK_OK)
        return e;
    if ((e = hk_ks_open_dir(AT_FDCWD, ks->dir, 0, &ks->dfd)) != HK_OK ||
        (e = hk_ks_token_read(ks->dfd, &t)) != HK_OK)
        goto done;
    if ((e = hk_ks_open_dir(ks->dfd, HK_KS_KEYS_DIR, 0, &ks->kfd)) != HK_OK) {
        if (e == HK_ERR_NOT_FOUND)
            e = HK_ERR_CONFIG; /* a token without its keys directory */
        goto done;
    }
    hk_ks_sweep(ks);
    *out = ks;
    ks = NULL;
done:
    hk_ks_close(ks);
    return e;
}

/* The fresh token record of a new token (tcti: TPM-backed), and its
 * master key. */
static hk_err hk_ks_token_make(const char *label, const char *pin,
                               const char *tcti, hk_ks_token *t, hk_ks_mk *mk)
{
    memset(t, 0, sizeof(*t));
    memcpy(t->label, label, strlen(label) + 1);
    if (tcti != NULL)
        memcpy(t->tcti, tcti, strlen(tcti) + 1);
    t->max_fails = HK_KS_MAX_FAILS;
    t->cur.gen = 1;
    return hk_ks_slot_fill(&t->cur, t->tcti, pin, mk);
}

/* Creates keys/ (0700): HK_ERR_EXISTS if it already holds key files. */
static hk_err hk_ks_make_keys_dir(hk_ks *ks)
{
    char **names = NULL;
    size_t n = 0;
    hk_err e;

    if (mkdirat(ks->dfd, HK_KS_KEYS_DIR, 0700) != 0 && errno != EEXIST)
        return HK_ERR_IO;
    if ((e = hk_ks_open_dir(ks->dfd, HK_KS_KEYS_DIR, 1, &ks->kfd)) != HK_OK ||
        (e = hk_ks_key_names(ks->kfd, &names, &n)) != HK_OK)
        return e;
    hk_ks_names_free(names, n);
    return n == 0 ? HK_OK : HK_ERR_EXISTS;
}

/* A TCTI spec as stored in token.json: printable ASCII, no blanks. */
static int hk_ks_tcti_ok(const char *tcti)
{
    size_t i;

    if (tcti == NULL || tcti[0] == 0)
        return 0;
    for (i = 0; tcti[i] != 0; i++)
        if (i >= HK_KS_TCTI_MAX || tcti[i] <= 0x20 || tcti[i] > 0x7e)
            return 0;
    return 1;
}

static hk_err hk_ks_init_any(const char *dir, const char *pin,
                             const char *label, const char *tcti, hk_ks **out)
{
    hk_ks_token t;
    hk_ks_mk mk;
    hk_ks *ks = NULL;
    int lfd = -1;
    hk_err e;

    if (pin == NULL || label == NULL || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if (!hk_ks_pin_ok(pin) || !hk_ks_token_label_ok(label))
        return HK_ERR_ARG;
    memset(&mk, 0, sizeof(mk));
    if ((e = hk_ks_new(dir, &ks)) != HK_OK)
        return e;
    if ((e = hk_ks_mkdirs(ks->dir)) != HK_OK ||
        (e = hk_ks_open_dir(AT_FDCWD, ks->dir, 1, &ks->dfd)) != HK_OK ||
        (e = hk_ks_tlock(ks, &lfd)) != HK_OK)
        goto done;
    e = HK_ERR_EXISTS;
    if (hk_ks_exists(ks->dfd, HK_KS_TOKEN_FILE))
        goto done;
    if ((e = hk_ks_make_keys_dir(ks)) != HK_OK ||
        (e = hk_ks_token_make(label, pin, tcti, &t, &mk)) != HK_OK ||
        (e = hk_ks_token_write(ks->dfd, &t)) != HK_OK)
        goto done;
    hk_ks_login_set(ks, &mk);
    *out = ks;
    ks = NULL;
done:
    if (lfd >= 0)
        close(lfd);
    hk_ks_close(ks);
    OPENSSL_cleanse(&mk, sizeof(mk));
    return e;
}

hk_err hk_ks_init(const char *dir, const char *pin, const char *label,
                  hk_ks **out)
{
    return hk_ks_init_any(dir, pin, label, NULL, out);
}

hk_err hk_ks_init_tpm(const char *dir, const char *pin, const char *label,
                      const char *tcti, hk_ks **out)
{
    if (out != NULL)
        *out = NULL;
    if (tcti == NULL || tcti[0] == 0)
        tcti = HK_KS_TCTI_DEFAULT;
    if (!hk_ks_tcti_ok(tcti))
        return HK_ERR_ARG;
    if (!hk_ks_tpm_built())
        return HK_ERR_TPM;
    return hk_ks_init_any(dir, pin, label, tcti, out);
}

int hk_ks_tpm_supported(void) { return hk_ks_tpm_built(); }

hk_err hk_ks_tpm_status(hk_ks *ks, hk_ks_tpminfo *out)
{
    hk_ks_tpm_state st;
    hk_ks_token t;
    hk_err e;

    if (ks == NULL || out == NULL)
        return HK_ERR_ARG;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&ks->mu);
    e = hk_ks_token_read(ks->dfd, &t);
    pthread_mutex_unlock(&ks->mu);
    if (e != HK_OK)
        return e;
    if (t.tcti[0] == 0)
        e = HK_ERR_NOT_FOUND;
    else if ((e = hk_ks_tpm_probe(t.tcti, &st)) == HK_OK) {
        memcpy(out->manufacturer, st.manufacturer, sizeof(st.manufacturer));
        out->lockout_counter = st.lockout_counter;
        out->max_auth_fail = st.max_auth_fail;
        out->lockout_interval = st.lockout_interval;
        out->in_lockout = st.in_lockout;
    }
    OPENSSL_cleanse(&t, sizeof(t));
    return e;
}
