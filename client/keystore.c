/* Keystore: the token directory, the token record, PIN login, the failed-PIN
 * counter and the crash-safe PIN change (see keystore.h). Key files are in
 * ks_keys.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "mpc/libctx.h"
#include "client/ks_impl.h"
#include "mpc/codec.h"

#define HK_KS_TOKEN_VERSION 1
#define HK_KS_FAILS_LIMIT_MAX 1000 /* bound on the limit read from disk */
#define HK_KS_GEN_MAX 0xfffffffful

/* One PIN generation: its scrypt salt and check value. */
typedef struct {
    unsigned long gen;
    unsigned char salt[HK_KS_SALT_LEN];
    unsigned char check[HK_KS_CHECK_LEN];
} hk_ks_slot;

/* token.json. While a PIN change is pending, cur is the new PIN and prev
 * the old one, and each master key is sealed under the other. */
typedef struct {
    char label[HK_KS_TOKEN_LABEL_MAX + 1];
    hk_ks_kdf kdf;
    unsigned long fails, max_fails;
    hk_ks_slot cur;
    int pending;
    hk_ks_slot prev;
    unsigned char wrap_prev[HK_KS_WRAP_LEN]; /* prev's MK under cur's */
    unsigned char wrap_cur[HK_KS_WRAP_LEN];  /* cur's MK under prev's */
} hk_ks_token;

/* --- names and paths ---------------------------------------------------- */

int hk_ks_label_ok(const char *label)
{
    size_t i;

    if (label == NULL || label[0] == 0 || label[0] == '.')
        return 0;
    for (i = 0; label[i] != 0; i++) {
        char c = label[i];

        if (i >= HK_KS_LABEL_MAX)
            return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int hk_ks_token_label_ok(const char *label)
{
    size_t i;

    if (label == NULL || label[0] == 0)
        return 0;
    for (i = 0; label[i] != 0; i++)
        if (i >= HK_KS_TOKEN_LABEL_MAX || label[i] < 0x20 || label[i] > 0x7e)
            return 0;
    return 1;
}

int hk_ks_pin_ok(const char *pin)
{
    size_t n;

    if (pin == NULL)
        return 0;
    n = strnlen(pin, HK_KS_PIN_MAX + 1);
    return n >= HK_KS_PIN_MIN && n <= HK_KS_PIN_MAX;
}

/* *out = a + b as a new string. */
static hk_err hk_ks_concat(const char *a, const char *b, char **out)
{
    size_t la = strlen(a), lb = strlen(b);

    if ((*out = OPENSSL_malloc(la + lb + 1)) == NULL)
        return HK_ERR_NOMEM;
    memcpy(*out, a, la);
    memcpy(*out + la, b, lb + 1);
    return HK_OK;
}

hk_err hk_ks_dir_resolve(const char *dir, char **out)
{
    const char *v;

    if (out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if (dir != NULL && dir[0] != 0)
        return hk_ks_concat(dir, "", out);
    if ((v = secure_getenv("HALFKEY_HOME")) != NULL && v[0] != 0)
        return hk_ks_concat(v, "", out);
    /* XDG: a relative XDG_DATA_HOME is invalid and ignored. */
    if ((v = secure_getenv("XDG_DATA_HOME")) != NULL && v[0] == '/')
        return hk_ks_concat(v, "/halfkey", out);
    if ((v = secure_getenv("HOME")) != NULL && v[0] == '/')
        return hk_ks_concat(v, "/.local/share/halfkey", out);
    return HK_ERR_CONFIG;
}

/* --- the token record ------------------------------------------------- */

static hk_err hk_ks_slot_put(hk_msg *m, const char *pfx, const hk_ks_slot *s)
{
    char k[3][16];
    hk_err e;

    snprintf(k[0], sizeof(k[0]), "%sgen", pfx);
    snprintf(k[1], sizeof(k[1]), "%ssalt", pfx);
    snprintf(k[2], sizeof(k[2]), "%scheck", pfx);
    if ((e = hk_msg_put_u32(m, k[0], s->gen)) != HK_OK ||
        (e = hk_msg_put_bytes(m, k[1], s->salt, HK_KS_SALT_LEN)) != HK_OK ||
        (e = hk_msg_put_bytes(m, k[2], s->check, HK_KS_CHECK_LEN)) != HK_OK)
        return e;
    return HK_OK;
}

static hk_err hk_ks_slot_get(hk_msg *m, const char *pfx, hk_ks_slot *s)
{
    char k[3][16];
    hk_err e;

    snprintf(k[0], sizeof(k[0]), "%sgen", pfx);
    snprintf(k[1], sizeof(k[1]), "%ssalt", pfx);
    snprintf(k[2], sizeof(k[2]), "%scheck", pfx);
    if ((e = hk_msg_get_u32(m, k[0], &s->gen)) != HK_OK ||
        (e = hk_msg_get_bytes(m, k[1], s->salt, HK_KS_SALT_LEN)) != HK_OK ||
        (e = hk_msg_get_bytes(m, k[2], s->check, HK_KS_CHECK_LEN)) != HK_OK)
        return e;
    return s->gen >= 1 ? HK_OK : HK_ERR_DECODE;
}

static hk_err hk_ks_token_put(hk_msg *m, const hk_ks_token *t)
{
    hk_err e;

    if ((e = hk_msg_put_u32(m, "ver", HK_KS_TOKEN_VERSION)) != HK_OK ||
        (e = hk_msg_put_str(m, "label", t->label)) != HK_OK ||
        (e = hk_msg_put_u32(m, "scrypt_log2n", t->kdf.log2n)) != HK_OK ||
        (e = hk_msg_put_u32(m, "scrypt_r", t->kdf.r)) != HK_OK ||
        (e = hk_msg_put_u32(m, "scrypt_p", t->kdf.p)) != HK_OK ||
        (e = hk_msg_put_u32(m, "pin_fails", t->fails)) != HK_OK ||
        (e = hk_msg_put_u32(m, "pin_max_fails", t->max_fails)) != HK_OK ||
        (e = hk_ks_slot_put(m, "", &t->cur)) != HK_OK)
        return e;
    if (!t->pending)
        return HK_OK;
    if ((e = hk_ks_slot_put(m, "prev_", &t->prev)) != HK_OK ||
        (e = hk_msg_put_bytes(m, "wrap_prev", t->wrap_prev, HK_KS_WRAP_LEN)) !=
            HK_OK ||
        (e = hk_msg_put_bytes(m, "wrap_cur", t->wrap_cur, HK_KS_WRAP_LEN)) !=
            HK_OK)
        return e;
    return HK_OK;
}

static hk_err hk_ks_token_write(int dfd, const hk_ks_token *t)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    hk_msg *m = NULL;
    hk_err e;

    if ((e = hk_msg_new(t->pending ? "token-pending" : "token", NULL, NULL,
                        &m)) != HK_OK)
        return e;
    if ((e = hk_ks_token_put(m, t)) != HK_OK ||
        (e = hk_msg_encode(m, &buf, &len)) != HK_OK)
        goto done;
    e = hk_ks_write_file(dfd, HK_KS_TOKEN_FILE, buf, len);
done:
    OPENSSL_free(buf);
    hk_msg_free(m);
    return e;
}

/* Reads the fields common to both token types. */
static hk_err hk_ks_token_get_head(hk_msg *m, hk_ks_token *t)
{
    unsigned long ver;
    hk_err e;

    if ((e = hk_msg_get_u32(m, "ver", &ver)) != HK_OK)
        return e;
    if (ver != HK_KS_TOKEN_VERSION)
        return HK_ERR_VERSION;
    if ((e = hk_msg_get_str(m, "label", t->label, sizeof(t->label))) != HK_OK ||
        (e = hk_msg_get_u32(m, "scrypt_log2n", &t->kdf.log2n)) != HK_OK ||
        (e = hk_msg_get_u32(m, "scrypt_r", &t->kdf.r)) != HK_OK ||
        (e = hk_msg_get_u32(m, "scrypt_p", &t->kdf.p)) != HK_OK ||
        (e = hk_msg_get_u32(m, "pin_fails", &t->fails)) != HK_OK ||
        (e = hk_msg_get_u32(m, "pin_max_fails", &t->max_fails)) != HK_OK ||
        (e = hk_ks_slot_get(m, "", &t->cur)) != HK_OK)
        return e;
    if (!hk_ks_token_label_ok(t->label) || !hk_ks_kdf_ok(&t->kdf) ||
        t->max_fails < 1 || t->max_fails > HK_KS_FAILS_LIMIT_MAX)
        return HK_ERR_DECODE;
    return HK_OK;
}

static hk_err hk_ks_token_get_pending(hk_msg *m, hk_ks_token *t)
{
    hk_err e;

    if ((e = hk_ks_slot_get(m, "prev_", &t->prev)) != HK_OK ||
        (e = hk_msg_get_bytes(m, "wrap_prev", t->wrap_prev, HK_KS_WRAP_LEN)) !=
            HK_OK ||
        (e = hk_msg_get_bytes(m, "wrap_cur", t->wrap_cur, HK_KS_WRAP_LEN)) !=
            HK_OK)
        return e;
    return t->prev.gen + 1 == t->cur.gen ? HK_OK : HK_ERR_DECODE;
}

static hk_err hk_ks_token_decode(const unsigned char *in, size_t len,
                                 hk_ks_token *t)
{
    const char *type;
    hk_msg *m = NULL;
    hk_err e;

    memset(t, 0, sizeof(*t));
    if ((e = hk_msg_parse(in, len, HK_KS_FILE_MAX, NULL, NULL, NULL, &m)) !=
        HK_OK)
        return e;
    type = hk_msg_type(m);
    e = HK_ERR_MSG_TYPE;
    if (strcmp(type, "token-pending") == 0)
        t->pending = 1;
    else if (strcmp(type, "token") != 0)
        goto done;
    if ((e = hk_ks_token_get_head(m, t)) != HK_OK ||
        (t->pending && (e = hk_ks_token_get_pending(m, t)) != HK_OK))
        goto done;
    e = hk_msg_finish(m);
done:
    hk_msg_free(m);
    return e;
}

static hk_err hk_ks_token_read(int dfd, hk_ks_token *t)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    hk_err e;

    if ((e = hk_ks_read_file(dfd, HK_KS_TOKEN_FILE, HK_KS_FILE_MAX, &buf,
                             &len)) != HK_OK)
        return e;
    e = hk_ks_token_decode(buf, len, t);
    OPENSSL_free(buf);
    return e;
}

/* --- PIN check and key wrapping ---------------------------------------- */

static void hk_ks_check_aad(hk_ks_aad *a, const hk_ks_token *t,
                            const hk_ks_slot *s)
{
    hk_ks_aad_init(a, "halfkey/pin-check/1");
    hk_ks_aad_u64(a, s->gen);
    hk_ks_aad_add(a, s->salt, HK_KS_SALT_LEN);
    hk_ks_aad_u64(a, t->kdf.log2n);
    hk_ks_aad_u64(a, t->kdf.r);
    hk_ks_aad_u64(a, t->kdf.p);
}

/* s->check = Seal(HKDF(mk, "pin-check"), fixed text). */
static hk_err hk_ks_check_make(const hk_ks_token *t, hk_ks_slot *s,
                               const unsigned char mk[HK_KS_KEY_LEN])
{
    unsigned char key[HK_KS_KEY_LEN];
    hk_ks_aad a;
    hk_err e;

    hk_ks_check_aad(&a, t, s);
    if ((e = hk_ks_hkdf(mk, "halfkey/pin-check/1", NULL, 0, key)) == HK_OK)
        e = hk_ks_seal(key, a.b, a.len, (const unsigned char *)HK_KS_CHECK_TEXT,
                       HK_KS_CHECK_LEN - HK_KS_SEAL_OVERHEAD, s->check);
    OPENSSL_cleanse(key, sizeof(key));
    return e;
}

/* HK_OK if mk opens s->check, HK_ERR_PIN if not. */
static hk_err hk_ks_check_verify(const hk_ks_token *t, const hk_ks_slot *s,
                                 const unsigned char mk[HK_KS_KEY_LEN])
{
    unsigned char key[HK_KS_KEY_LEN];
    unsigned char pt[HK_KS_CHECK_LEN - HK_KS_SEAL_OVERHEAD];
    hk_ks_aad a;
    hk_err e;

    hk_ks_check_aad(&a, t, s);
    if ((e = hk_ks_hkdf(mk, "halfkey/pin-check/1", NULL, 0, key)) != HK_OK)
        goto done;
    e = hk_ks_unseal(key, a.b, a.len, s->check, HK_KS_CHECK_LEN, pt);
    if (e == HK_ERR_SEAL ||
        (e == HK_OK && CRYPTO_memcmp(pt, HK_KS_CHECK_TEXT, sizeof(pt)) != 0))
        e = HK_ERR_PIN;
done:
    OPENSSL_cleanse(key, sizeof(key));
    return e;
}

/* Derives the slot's master key from pin and checks it: HK_ERR_PIN. */
static hk_err hk_ks_slot_try(const hk_ks_token *t, const hk_ks_slot *s,
                             const char *pin, hk_ks_mk *mk)
{
    hk_err e;

    mk->gen = s->gen;
    if ((e = hk_ks_scrypt(pin, s->salt, &t->kdf, mk->k)) == HK_OK)
        e = hk_ks_check_verify(t, s, mk->k);
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
        e = hk_ks_seal(key, a.b, a.len, what->k, HK_KS_KEY_LEN, out);
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
        e = hk_ks_unseal(key, a.b, a.len, in, HK_KS_WRAP_LEN, out->k);
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
    hk_err e = hk_ks_slot_try(t, &t->cur, pin, mk);

    if (e == HK_ERR_PIN && t->pending)
        e = hk_ks_slot_try(t, &t->prev, pin, mk);
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

hk_err hk_ks_tlock(hk_ks *ks, int *fd)
{
    return hk_ks_lock_file(ks->dfd, HK_KS_TLOCK_FILE, 1, fd);
}

static void hk_ks_logout_locked(hk_ks *ks)
{
    OPENSSL_cleanse(ks->mk, sizeof(ks->mk));
    ks->logged_in = 0;
    ks->gen = 0;
}

static void hk_ks_login_set(hk_ks *ks, const hk_ks_mk *mk)
{
    memcpy(ks->mk, mk->k, HK_KS_KEY_LEN);
    ks->gen = mk->gen;
    ks->logged_in = 1;
}

hk_err hk_ks_login(hk_ks *ks, const char *pin)
{
    hk_ks_token t;
    hk_ks_mk mk;
    int lfd = -1;
    hk_err e;

    if (ks == NULL || pin == NULL)
        return HK_ERR_ARG;
    if (!hk_ks_pin_ok(pin))
        return HK_ERR_ARG;
    pthread_mutex_lock(&ks->mu);
    hk_ks_logout_locked(ks);
    if ((e = hk_ks_tlock(ks, &lfd)) != HK_OK)
        goto done;
    if ((e = hk_ks_auth(ks, pin, &t, &mk)) == HK_OK)
        hk_ks_login_set(ks, &mk);
done:
    if (lfd >= 0)
        close(lfd);
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

hk_err hk_ks_gen_check(hk_ks *ks)
{
    hk_ks_token t;
    hk_err e;

    if (!ks->logged_in)
        return HK_ERR_STATE;
    if ((e = hk_ks_token_read(ks->dfd, &t)) != HK_OK)
        return e;
    if (ks->gen == t.cur.gen || (t.pending && ks->gen == t.prev.gen))
        return HK_OK;
    return HK_ERR_STATE;
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

/* The new slot of a PIN change from generation `gen` to pin: fresh salt,
 * check value; *neu its master key. */
static hk_err hk_ks_slot_new(hk_ks_token *t, unsigned long gen, const char *pin,
                             hk_ks_mk *neu)
{
    hk_err e;

    if (gen >= HK_KS_GEN_MAX)
        return HK_ERR_STATE;
    t->cur.gen = neu->gen = gen + 1;
    if (!hk_rand_bytes(t->cur.salt, HK_KS_SALT_LEN))
        return HK_ERR_RAND;
    if ((e = hk_ks_scrypt(pin, t->cur.salt, &t->kdf, neu->k)) != HK_OK)
        return e;
    return hk_ks_check_make(t, &t->cur, neu->k);
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
    if (!hk_ks_pin_ok(old_pin) || !hk_ks_pin_ok(new_pin))
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

hk_err hk_ks_label_write(hk_ks *ks, const char *label)
{
    hk_ks_token t;
    hk_err e;

    if (!hk_ks_token_label_ok(label))
        return HK_ERR_ARG;
    if ((e = hk_ks_token_read(ks->dfd, &t)) != HK_OK)
        return e;
    memcpy(t.label, label, strlen(label) + 1);
    e = hk_ks_token_write(ks->dfd, &t);
    OPENSSL_cleanse(&t, sizeof(t));
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
            (e = hk_ks_check_verify(t, s[i], mk->k)) != HK_OK)
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

/* The fresh token record of a new token, and its master key. */
static hk_err hk_ks_token_make(const char *label, const char *pin,
                               hk_ks_token *t, hk_ks_mk *mk)
{
    hk_err e;

    memset(t, 0, sizeof(*t));
    memcpy(t->label, label, strlen(label) + 1);
    t->kdf.log2n = 15;
    t->kdf.r = 8;
    t->kdf.p = 1;
    t->max_fails = HK_KS_MAX_FAILS;
    t->cur.gen = mk->gen = 1;
    if (!hk_rand_bytes(t->cur.salt, HK_KS_SALT_LEN))
        return HK_ERR_RAND;
    if ((e = hk_ks_scrypt(pin, t->cur.salt, &t->kdf, mk->k)) != HK_OK)
        return e;
    return hk_ks_check_make(t, &t->cur, mk->k);
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

hk_err hk_ks_init(const char *dir, const char *pin, const char *label,
                  hk_ks **out)
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
        (e = hk_ks_token_make(label, pin, &t, &mk)) != HK_OK ||
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
