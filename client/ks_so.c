/* Keystore: the security officer (SO) PIN and the recovery escrow (see
 * keystore.h, "SO PIN").
 *
 *   so.json      the SO record: scrypt salt and parameters, the recovery
 *                key RK sealed under HKDF(scrypt(SO PIN)), the failed-SO-PIN
 *                counter
 *   escrow.json  per user-PIN generation g (at most two: a PIN change in
 *                flight): RK sealed under HKDF(MK_g) and MK_g sealed under
 *                HKDF(RK)
 *
 * A user who knows RK (from a generation's entry) re-escrows each new MK
 * when changing the PIN, without the SO PIN; the SO opens RK with the SO
 * PIN and from it the user's MK, to set a new user PIN (C_InitPIN). The
 * escrow is only ever written by a holder of RK and of the user's MK, so
 * replacing so.json with another SO's record gains nothing. */
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/libctx.h"
#include "client/ks_impl.h"
#include "mpc/codec.h"

#define HK_KS_SO_VERSION 1

typedef struct {
    hk_ks_kdf kdf;
    unsigned char salt[HK_KS_SALT_LEN];
    unsigned char rk[HK_KS_WRAP_LEN]; /* RK under HKDF(SO master key) */
    unsigned long fails, max_fails;
} hk_ks_so;

/* --- so.json ------------------------------------------------------------ */

static hk_err hk_ks_so_put(hk_msg *m, const hk_ks_so *so)
{
    hk_err e;

    if ((e = hk_msg_put_u32(m, "ver", HK_KS_SO_VERSION)) != HK_OK ||
        (e = hk_msg_put_u32(m, "scrypt_log2n", so->kdf.log2n)) != HK_OK ||
        (e = hk_msg_put_u32(m, "scrypt_r", so->kdf.r)) != HK_OK ||
        (e = hk_msg_put_u32(m, "scrypt_p", so->kdf.p)) != HK_OK ||
        (e = hk_msg_put_bytes(m, "salt", so->salt, HK_KS_SALT_LEN)) != HK_OK ||
        (e = hk_msg_put_bytes(m, "rk", so->rk, HK_KS_WRAP_LEN)) != HK_OK ||
        (e = hk_msg_put_u32(m, "pin_fails", so->fails)) != HK_OK ||
        (e = hk_msg_put_u32(m, "pin_max_fails", so->max_fails)) != HK_OK)
        return e;
    return HK_OK;
}

static hk_err hk_ks_so_write(int dfd, const hk_ks_so *so)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    hk_msg *m = NULL;
    hk_err e;

    if ((e = hk_msg_new("so", NULL, NULL, &m)) != HK_OK)
        return e;
    if ((e = hk_ks_so_put(m, so)) == HK_OK &&
        (e = hk_msg_encode(m, &buf, &len)) == HK_OK)
        e = hk_ks_write_file(dfd, HK_KS_SO_FILE, buf, len);
    OPENSSL_free(buf);
    hk_msg_free(m);
    return e;
}

static hk_err hk_ks_so_get(hk_msg *m, hk_ks_so *so)
{
    unsigned long ver;
    hk_err e;

    if ((e = hk_msg_get_u32(m, "ver", &ver)) != HK_OK)
        return e;
    if (ver != HK_KS_SO_VERSION)
        return HK_ERR_VERSION;
    if ((e = hk_msg_get_u32(m, "scrypt_log2n", &so->kdf.log2n)) != HK_OK ||
        (e = hk_msg_get_u32(m, "scrypt_r", &so->kdf.r)) != HK_OK ||
        (e = hk_msg_get_u32(m, "scrypt_p", &so->kdf.p)) != HK_OK ||
        (e = hk_msg_get_bytes(m, "salt", so->salt, HK_KS_SALT_LEN)) != HK_OK ||
        (e = hk_msg_get_bytes(m, "rk", so->rk, HK_KS_WRAP_LEN)) != HK_OK ||
        (e = hk_msg_get_u32(m, "pin_fails", &so->fails)) != HK_OK ||
        (e = hk_msg_get_u32(m, "pin_max_fails", &so->max_fails)) != HK_OK)
        return e;
    if (!hk_ks_kdf_ok(&so->kdf) || so->max_fails < 1 ||
        so->max_fails > HK_KS_MAX_FAILS * 100)
        return HK_ERR_DECODE;
    return hk_msg_finish(m);
}

/* HK_ERR_NOT_FOUND if the token has no SO PIN. */
static hk_err hk_ks_so_read(int dfd, hk_ks_so *so)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    hk_msg *m = NULL;
    hk_err e;

    memset(so, 0, sizeof(*so));
    if ((e = hk_ks_read_file(dfd, HK_KS_SO_FILE, HK_KS_FILE_MAX, &buf, &len)) !=
        HK_OK)
        return e;
    if ((e = hk_msg_parse(buf, len, HK_KS_FILE_MAX, "so", NULL, NULL, &m)) ==
        HK_OK)
        e = hk_ks_so_get(m, so);
    hk_msg_free(m);
    OPENSSL_free(buf);
    return e;
}

static void hk_ks_so_aad(hk_ks_aad *a, const hk_ks_so *so)
{
    hk_ks_aad_init(a, "halfkey/so/1");
    hk_ks_aad_add(a, so->salt, HK_KS_SALT_LEN);
    hk_ks_aad_u64(a, so->kdf.log2n);
    hk_ks_aad_u64(a, so->kdf.r);
    hk_ks_aad_u64(a, so->kdf.p);
}

/* The key sealing RK under the SO PIN, from the PIN and so's salt. */
static hk_err hk_ks_so_key(const hk_ks_so *so, const char *pin,
                           unsigned char key[HK_KS_KEY_LEN])
{
    unsigned char mk[HK_KS_KEY_LEN];
    hk_err e;

    if ((e = hk_ks_scrypt(pin, so->salt, &so->kdf, mk)) == HK_OK)
        e = hk_ks_hkdf(mk, "halfkey/so/1", NULL, 0, key);
    OPENSSL_cleanse(mk, sizeof(mk));
    return e;
}

/* so->rk = RK sealed under a fresh salt and `pin`. */
static hk_err hk_ks_so_seal(hk_ks_so *so, const char *pin,
                            const unsigned char rk[HK_KS_KEY_LEN])
{
    unsigned char key[HK_KS_KEY_LEN];
    hk_ks_aad a;
    hk_err e;

    if (!hk_rand_bytes(so->salt, HK_KS_SALT_LEN))
        return HK_ERR_RAND;
    hk_ks_so_aad(&a, so);
    if ((e = hk_ks_so_key(so, pin, key)) == HK_OK)
        e = hk_aead_seal(key, a.b, a.len, rk, HK_KS_KEY_LEN, so->rk);
    OPENSSL_cleanse(key, sizeof(key));
    return e;
}

/* RK from so and the SO PIN: HK_ERR_PIN if it does not open. */
static hk_err hk_ks_so_open(const hk_ks_so *so, const char *pin,
                            unsigned char rk[HK_KS_KEY_LEN])
{
    unsigned char key[HK_KS_KEY_LEN];
    hk_ks_aad a;
    hk_err e;

    hk_ks_so_aad(&a, so);
    if ((e = hk_ks_so_key(so, pin, key)) == HK_OK)
        e = hk_aead_open(key, a.b, a.len, so->rk, HK_KS_WRAP_LEN, rk);
    OPENSSL_cleanse(key, sizeof(key));
    return e == HK_ERR_SEAL ? HK_ERR_PIN : e;
}

/* Checks the SO PIN with the counter (counted on disk before the check,
 * as for the user PIN). Caller holds the token lock. */
static hk_err hk_ks_so_auth(hk_ks *ks, const char *pin, hk_ks_so *so,
                            unsigned char rk[HK_KS_KEY_LEN])
{
    hk_err e;

    if (!hk_ks_pin_given_ok(pin))
        return HK_ERR_ARG;
    if ((e = hk_ks_so_read(ks->dfd, so)) != HK_OK)
        return e;
    if (so->fails >= so->max_fails)
        return HK_ERR_PIN_LOCKED;
    so->fails++;
    if ((e = hk_ks_so_write(ks->dfd, so)) != HK_OK ||
        (e = hk_ks_so_open(so, pin, rk)) != HK_OK)
        return e;
    so->fails = 0;
    return hk_ks_so_write(ks->dfd, so);
}

/* --- escrow.json -------------------------------------------------------- */

static void hk_ks_esc_aad(hk_ks_aad *a, const char *what, unsigned long gen)
{
    hk_ks_aad_init(a, what);
    hk_ks_aad_u64(a, gen);
}

/* The field names of entry i. */
static void hk_ks_esc_names(size_t i, char k[3][24])
{
    snprintf(k[0], 24, "gen%u", (unsigned)i);
    snprintf(k[1], 24, "rk%u", (unsigned)i);
    snprintf(k[2], 24, "mk%u", (unsigned)i);
}

static hk_err hk_ks_esc_get(hk_msg *m, hk_ks_esc *esc)
{
    unsigned long n;
    char k[3][24];
    size_t i;
    hk_err e;

    if ((e = hk_msg_get_u32(m, "n", &n)) != HK_OK)
        return e;
    if (n < 1 || n > HK_KS_ESC_MAX)
        return HK_ERR_DECODE;
    for (i = 0; i < n; i++) {
        hk_ks_esc_names(i, k);
        if ((e = hk_msg_get_u32(m, k[0], &esc->e[i].gen)) != HK_OK ||
            (e = hk_msg_get_bytes(m, k[1], esc->e[i].rk, HK_KS_WRAP_LEN)) !=
                HK_OK ||
            (e = hk_msg_get_bytes(m, k[2], esc->e[i].mk, HK_KS_WRAP_LEN)) !=
                HK_OK)
            return e;
    }
    esc->n = n;
    return hk_msg_finish(m);
}

hk_err hk_ks_esc_read(int dfd, hk_ks_esc *esc)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    hk_msg *m = NULL;
    hk_err e;

    memset(esc, 0, sizeof(*esc));
    e = hk_ks_read_file(dfd, HK_KS_ESCROW_FILE, HK_KS_FILE_MAX, &buf, &len);
    if (e == HK_ERR_NOT_FOUND)
        return HK_OK;
    if (e != HK_OK)
        return e;
    if ((e = hk_msg_parse(buf, len, HK_KS_FILE_MAX, "escrow", NULL, NULL,
                          &m)) == HK_OK)
        e = hk_ks_esc_get(m, esc);
    hk_msg_free(m);
    OPENSSL_free(buf);
    if (e != HK_OK)
        memset(esc, 0, sizeof(*esc));
    return e;
}

static hk_err hk_ks_esc_put_msg(hk_msg *m, const hk_ks_esc *esc)
{
    char k[3][24];
    size_t i;
    hk_err e;

    if ((e = hk_msg_put_u32(m, "n", esc->n)) != HK_OK)
        return e;
    for (i = 0; i < esc->n; i++) {
        hk_ks_esc_names(i, k);
        if ((e = hk_msg_put_u32(m, k[0], esc->e[i].gen)) != HK_OK ||
            (e = hk_msg_put_bytes(m, k[1], esc->e[i].rk, HK_KS_WRAP_LEN)) !=
                HK_OK ||
            (e = hk_msg_put_bytes(m, k[2], esc->e[i].mk, HK_KS_WRAP_LEN)) !=
                HK_OK)
            return e;
    }
    return HK_OK;
}

hk_err hk_ks_esc_write(int dfd, const hk_ks_esc *esc)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    hk_msg *m = NULL;
    hk_err e;

    if (esc->n == 0)
        return (e = hk_ks_unlink(dfd, HK_KS_ESCROW_FILE)) == HK_ERR_NOT_FOUND
                   ? HK_OK
                   : e;
    if ((e = hk_msg_new("escrow", NULL, NULL, &m)) != HK_OK)
        return e;
    if ((e = hk_ks_esc_put_msg(m, esc)) == HK_OK &&
        (e = hk_msg_encode(m, &buf, &len)) == HK_OK)
        e = hk_ks_write_file(dfd, HK_KS_ESCROW_FILE, buf, len);
    OPENSSL_free(buf);
    hk_msg_free(m);
    return e;
}

static const hk_ks_esc_entry *hk_ks_esc_find(const hk_ks_esc *esc,
                                             unsigned long gen)
{
    size_t i;

    for (i = 0; i < esc->n; i++)
        if (esc->e[i].gen == gen)
            return &esc->e[i];
    return NULL;
}

hk_err hk_ks_esc_rk(const hk_ks_esc *esc, const hk_ks_mk *mk,
                    unsigned char rk[HK_KS_KEY_LEN])
{
    const hk_ks_esc_entry *en = hk_ks_esc_find(esc, mk->gen);
    unsigned char key[HK_KS_KEY_LEN];
    hk_ks_aad a;
    hk_err e;

    if (en == NULL)
        return HK_ERR_NOT_FOUND;
    hk_ks_esc_aad(&a, "halfkey/escrow-rk/1", en->gen);
    if ((e = hk_ks_hkdf(mk->k, "halfkey/escrow-rk/1", NULL, 0, key)) == HK_OK)
        e = hk_aead_open(key, a.b, a.len, en->rk, HK_KS_WRAP_LEN, rk);
    OPENSSL_cleanse(key, sizeof(key));
    return e;
}

hk_err hk_ks_esc_mk(const hk_ks_esc *esc, const unsigned char rk[HK_KS_KEY_LEN],
                    unsigned long gen, hk_ks_mk *mk)
{
    const hk_ks_esc_entry *en = hk_ks_esc_find(esc, gen);
    unsigned char key[HK_KS_KEY_LEN];
    hk_ks_aad a;
    hk_err e;

    if (en == NULL)
        return HK_ERR_NOT_FOUND;
    mk->gen = gen;
    hk_ks_esc_aad(&a, "halfkey/escrow-mk/1", gen);
    if ((e = hk_ks_hkdf(rk, "halfkey/escrow-mk/1", NULL, 0, key)) == HK_OK)
        e = hk_aead_open(key, a.b, a.len, en->mk, HK_KS_WRAP_LEN, mk->k);
    OPENSSL_cleanse(key, sizeof(key));
    return e;
}

hk_err hk_ks_esc_put(hk_ks_esc *esc, const unsigned char rk[HK_KS_KEY_LEN],
                     const hk_ks_mk *mk, unsigned long keep)
{
    unsigned char key[2][HK_KS_KEY_LEN];
    hk_ks_esc_entry en;
    hk_ks_aad a, b;
    size_t i, n = 0;
    hk_err e;

    en.gen = mk->gen;
    hk_ks_esc_aad(&a, "halfkey/escrow-rk/1", mk->gen);
    hk_ks_esc_aad(&b, "halfkey/escrow-mk/1", mk->gen);
    if ((e = hk_ks_hkdf(mk->k, "halfkey/escrow-rk/1", NULL, 0, key[0])) !=
            HK_OK ||
        (e = hk_ks_hkdf(rk, "halfkey/escrow-mk/1", NULL, 0, key[1])) != HK_OK ||
        (e = hk_aead_seal(key[0], a.b, a.len, rk, HK_KS_KEY_LEN, en.rk)) !=
            HK_OK ||
        (e = hk_aead_seal(key[1], b.b, b.len, mk->k, HK_KS_KEY_LEN, en.mk)) !=
            HK_OK)
        goto done;
    for (i = 0; i < esc->n; i++) /* keep `keep` only; mk's is replaced */
        if (keep != 0 && esc->e[i].gen == keep && keep != mk->gen)
            esc->e[n++] = esc->e[i];
    esc->e[n++] = en;
    esc->n = n;
done:
    OPENSSL_cleanse(key, sizeof(key));
    return e;
}

/* --- the SO's operations ------------------------------------------------ */

/* Runs f under the handle's mutex and the token lock. */
static hk_err hk_ks_so_locked(hk_ks *ks, hk_err (*f)(hk_ks *, const void *),
                              const void *arg)
{
    int lfd = -1;
    hk_err e;

    if (ks == NULL)
        return HK_ERR_ARG;
    pthread_mutex_lock(&ks->mu);
    if ((e = hk_ks_tlock(ks, &lfd)) == HK_OK)
        e = f(ks, arg);
    if (lfd >= 0)
        close(lfd);
    pthread_mutex_unlock(&ks->mu);
    return e;
}

typedef struct {
    const char *pin, *pin2, *label;
} hk_ks_so_req;

static void hk_ks_so_set_rk(hk_ks *ks, const unsigned char rk[HK_KS_KEY_LEN])
{
    memcpy(ks->so_rk, rk, HK_KS_KEY_LEN);
    ks->so_logged_in = 1;
}

static hk_err hk_ks_so_set_op(hk_ks *ks, const void *arg)
{
    const hk_ks_so_req *r = arg;
    unsigned char rk[HK_KS_KEY_LEN];
    hk_ks_so so;
    hk_err e;

    if (hk_ks_exists(ks->dfd, HK_KS_SO_FILE))
        return HK_ERR_EXISTS;
    memset(&so, 0, sizeof(so));
    hk_ks_kdf_default(&so.kdf);
    so.max_fails = HK_KS_MAX_FAILS;
    if (!hk_rand_bytes(rk, sizeof(rk)))
        return HK_ERR_RAND;
    if ((e = hk_ks_so_seal(&so, r->pin, rk)) == HK_OK &&
        (r->label == NULL || (e = hk_ks_label_write(ks, r->label)) == HK_OK))
        e = hk_ks_so_write(ks->dfd, &so);
    OPENSSL_cleanse(rk, sizeof(rk));
    return e;
}

hk_err hk_ks_so_set(hk_ks *ks, const char *so_pin, const char *label)
{
    hk_ks_so_req r = {so_pin, NULL, label};

    if (!hk_ks_pin_ok(so_pin) ||
        (label != NULL && !hk_ks_token_label_ok(label)))
        return HK_ERR_ARG;
    return hk_ks_so_locked(ks, hk_ks_so_set_op, &r);
}

static hk_err hk_ks_so_login_op(hk_ks *ks, const void *arg)
{
    const hk_ks_so_req *r = arg;
    unsigned char rk[HK_KS_KEY_LEN];
    hk_ks_so so;
    hk_err e;

    if ((e = hk_ks_so_auth(ks, r->pin, &so, rk)) == HK_OK)
        hk_ks_so_set_rk(ks, rk);
    OPENSSL_cleanse(rk, sizeof(rk));
    OPENSSL_cleanse(&so, sizeof(so));
    return e;
}

hk_err hk_ks_so_login(hk_ks *ks, const char *so_pin)
{
    hk_ks_so_req r = {so_pin, NULL, NULL};

    if (ks != NULL)
        hk_ks_so_logout(ks);
    return hk_ks_so_locked(ks, hk_ks_so_login_op, &r);
}

void hk_ks_so_logout(hk_ks *ks)
{
    if (ks == NULL)
        return;
    pthread_mutex_lock(&ks->mu);
    OPENSSL_cleanse(ks->so_rk, sizeof(ks->so_rk));
    ks->so_logged_in = 0;
    pthread_mutex_unlock(&ks->mu);
}

static hk_err hk_ks_so_change_op(hk_ks *ks, const void *arg)
{
    const hk_ks_so_req *r = arg;
    unsigned char rk[HK_KS_KEY_LEN];
    hk_ks_so so;
    hk_err e;

    ks->so_logged_in = 0;
    if ((e = hk_ks_so_auth(ks, r->pin, &so, rk)) == HK_OK &&
        (e = hk_ks_so_seal(&so, r->pin2, rk)) == HK_OK &&
        (e = hk_ks_so_write(ks->dfd, &so)) == HK_OK)
        hk_ks_so_set_rk(ks, rk);
    OPENSSL_cleanse(rk, sizeof(rk));
    OPENSSL_cleanse(&so, sizeof(so));
    return e;
}

hk_err hk_ks_so_change_pin(hk_ks *ks, const char *old_pin, const char *new_pin)
{
    hk_ks_so_req r = {old_pin, new_pin, NULL};

    if (!hk_ks_pin_given_ok(old_pin) || !hk_ks_pin_ok(new_pin))
        return HK_ERR_ARG;
    return hk_ks_so_locked(ks, hk_ks_so_change_op, &r);
}

/* Deletes every key file (all of them or none: each key's session lock is
 * taken first, HK_ERR_BUSY if one is in use) and the stored objects. */
static hk_err hk_ks_wipe(hk_ks *ks)
{
    char **names = NULL, name[HK_KS_LABEL_MAX + 8];
    hk_ks_hold **holds = NULL;
    size_t n = 0, i, held = 0;
    hk_err e;

    if ((e = hk_ks_key_names(ks->kfd, &names, &n)) != HK_OK)
        return e;
    if (n > 0 && (holds = OPENSSL_zalloc(n * sizeof(*holds))) == NULL)
        e = HK_ERR_NOMEM;
    for (i = 0; e == HK_OK && i < n; i++, held++) {
        names[i][strlen(names[i]) - 5] = 0; /* the label */
        e = hk_ks_key_acquire(ks, names[i], &holds[i]);
    }
    for (i = 0; e == HK_OK && i < n; i++) {
        snprintf(name, sizeof(name), "%s.json", names[i]);
        if ((e = hk_ks_unlink(ks->kfd, name)) == HK_ERR_NOT_FOUND)
            e = HK_OK;
        snprintf(name, sizeof(name), "%s.lock", names[i]);
        unlinkat(ks->kfd, name, 0);
    }
    if (e == HK_OK &&
        (e = hk_ks_unlink(ks->dfd, "objects.bin")) == HK_ERR_NOT_FOUND)
        e = HK_OK;
    for (i = 0; i < held; i++)
        hk_ks_key_release(holds[i]);
    OPENSSL_free(holds);
    hk_ks_names_free(names, n);
    return e;
}

static hk_err hk_ks_so_reinit_op(hk_ks *ks, const void *arg)
{
    const hk_ks_so_req *r = arg;
    unsigned char rk[HK_KS_KEY_LEN];
    hk_ks_so so;
    hk_err e;

    if ((e = hk_ks_so_auth(ks, r->pin, &so, rk)) == HK_OK &&
        (e = hk_ks_wipe(ks)) == HK_OK)
        e = hk_ks_label_write(ks, r->label);
    OPENSSL_cleanse(rk, sizeof(rk));
    OPENSSL_cleanse(&so, sizeof(so));
    return e;
}

hk_err hk_ks_so_reinit(hk_ks *ks, const char *so_pin, const char *label)
{
    hk_ks_so_req r = {so_pin, NULL, label};

    if (!hk_ks_pin_given_ok(so_pin) || !hk_ks_token_label_ok(label))
        return HK_ERR_ARG;
    return hk_ks_so_locked(ks, hk_ks_so_reinit_op, &r);
}

static hk_err hk_ks_so_endorse_op(hk_ks *ks, const void *arg)
{
    hk_ks_esc esc;
    hk_ks_mk mk;
    hk_err e;

    hk_ks_token t;

    (void)arg;
    if (!ks->so_logged_in || (e = hk_ks_gen_check(ks)) != HK_OK)
        return HK_ERR_STATE;
    /* A TPM-backed token's master key never leaves the TPM's seal: an
     * escrow under the SO PIN would open it anywhere, at scrypt's cost. */
    if ((e = hk_ks_token_read(ks->dfd, &t)) != HK_OK)
        return e;
    if (t.tcti[0] != 0)
        return HK_ERR_STATE;
    mk.gen = ks->gen;
    memcpy(mk.k, ks->mk, HK_KS_KEY_LEN);
    if ((e = hk_ks_esc_read(ks->dfd, &esc)) == HK_ERR_DECODE)
        memset(&esc, 0, sizeof(esc)); /* damaged: rebuilt from here */
    else if (e != HK_OK)
        goto done;
    if ((e = hk_ks_esc_put(&esc, ks->so_rk, &mk, 0)) == HK_OK)
        e = hk_ks_esc_write(ks->dfd, &esc);
done:
    OPENSSL_cleanse(&mk, sizeof(mk));
    OPENSSL_cleanse(&esc, sizeof(esc));
    return e;
}

hk_err hk_ks_so_endorse(hk_ks *ks)
{
    return hk_ks_so_locked(ks, hk_ks_so_endorse_op, NULL);
}

void hk_ks_so_info(hk_ks *ks, unsigned long user_gen, hk_ks_tokeninfo *out)
{
    hk_ks_esc esc;
    hk_ks_so so;

    out->so_logged_in = ks->so_logged_in;
    if (hk_ks_so_read(ks->dfd, &so) == HK_OK) {
        out->so_set = 1;
        out->so_fails = so.fails;
        out->so_max_fails = so.max_fails;
        out->so_locked = so.fails >= so.max_fails;
    }
    if (hk_ks_esc_read(ks->dfd, &esc) == HK_OK)
        out->escrowed = hk_ks_esc_find(&esc, user_gen) != NULL;
    OPENSSL_cleanse(&so, sizeof(so));
    OPENSSL_cleanse(&esc, sizeof(esc));
}
