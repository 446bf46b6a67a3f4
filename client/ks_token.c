/* The token record (token.json) and what every keystore file builds on:
 * key and token label rules, the token directory's name, the token lock,
 * the PIN-generation check of a logged-in handle (see keystore.h). Below
 * ks_keys.c, ks_so.c and keystore.c; above ks_io.c and ks_seal.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "client/ks_impl.h"
#include "mpc/codec.h"

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

static int hk_ks_pin_len_ok(const char *pin, size_t min)
{
    size_t n;

    if (pin == NULL)
        return 0;
    n = strnlen(pin, HK_KS_PIN_MAX + 1);
    return n >= min && n <= HK_KS_PIN_MAX;
}

int hk_ks_pin_ok(const char *pin)
{
    return hk_ks_pin_len_ok(pin, HK_KS_PIN_MIN);
}

int hk_ks_pin_given_ok(const char *pin)
{
    return hk_ks_pin_len_ok(pin, HK_KS_PIN_MIN_OLD);
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

/* The slot's field names: gen, salt, check, scrypt_log2n, scrypt_r,
 * scrypt_p, after the prefix ("" or "prev_"). */
static void hk_ks_slot_keys(const char *pfx, char k[6][24])
{
    static const char *const names[6] = {
        "gen", "salt", "check", "scrypt_log2n", "scrypt_r", "scrypt_p"};
    int i;

    for (i = 0; i < 6; i++)
        snprintf(k[i], 24, "%s%s", pfx, names[i]);
}

static hk_err hk_ks_slot_put(hk_msg *m, const char *pfx, const hk_ks_slot *s)
{
    char k[6][24], kp[24], kq[24];
    hk_err e;

    hk_ks_slot_keys(pfx, k);
    if (s->is_tpm) {
        snprintf(kp, sizeof(kp), "%stpm_pub", pfx);
        snprintf(kq, sizeof(kq), "%stpm_priv", pfx);
        if ((e = hk_msg_put_bytes(m, kp, s->tpm.pub, s->tpm.publen)) != HK_OK ||
            (e = hk_msg_put_bytes(m, kq, s->tpm.priv, s->tpm.privlen)) != HK_OK)
            return e;
    } else if ((e = hk_msg_put_u32(m, k[3], s->kdf.log2n)) != HK_OK ||
               (e = hk_msg_put_u32(m, k[4], s->kdf.r)) != HK_OK ||
               (e = hk_msg_put_u32(m, k[5], s->kdf.p)) != HK_OK) {
        return e;
    }
    if ((e = hk_msg_put_u32(m, k[0], s->gen)) != HK_OK ||
        (e = hk_msg_put_bytes(m, k[1], s->salt, HK_KS_SALT_LEN)) != HK_OK ||
        (e = hk_msg_put_bytes(m, k[2], s->check, HK_KS_CHECK_LEN)) != HK_OK)
        return e;
    return HK_OK;
}

/* A TPM slot's sealed object (in a TPM-backed token every slot is one). */
static hk_err hk_ks_slot_get_tpm(hk_msg *m, const char *pfx, hk_ks_slot *s)
{
    char kp[24], kq[24];
    hk_err e;

    snprintf(kp, sizeof(kp), "%stpm_pub", pfx);
    snprintf(kq, sizeof(kq), "%stpm_priv", pfx);
    if ((e = hk_msg_get_var(m, kp, s->tpm.pub, HK_KS_TPM_BLOB_MAX,
                            &s->tpm.publen)) != HK_OK ||
        (e = hk_msg_get_var(m, kq, s->tpm.priv, HK_KS_TPM_BLOB_MAX,
                            &s->tpm.privlen)) != HK_OK)
        return e;
    s->is_tpm = 1;
    hk_ks_kdf_default(&s->kdf);
    return HK_OK;
}

/* Reads a slot. A pending token written before slots had their own
 * scrypt parameters has no prev_scrypt_*: its old slot then has the
 * parameters of the new one (`dflt`), as they were shared then. */
static hk_err hk_ks_slot_get(hk_msg *m, const char *pfx, const hk_ks_kdf *dflt,
                             int tpm, hk_ks_slot *s)
{
    char k[6][24];
    hk_err e;

    hk_ks_slot_keys(pfx, k);
    if (tpm) {
        if ((e = hk_ks_slot_get_tpm(m, pfx, s)) != HK_OK)
            return e;
    } else if (hk_msg_get_u32(m, k[3], &s->kdf.log2n) != HK_OK) {
        if (dflt == NULL)
            return HK_ERR_DECODE;
        s->kdf = *dflt;
    } else if ((e = hk_msg_get_u32(m, k[4], &s->kdf.r)) != HK_OK ||
               (e = hk_msg_get_u32(m, k[5], &s->kdf.p)) != HK_OK)
        return e;
    if ((e = hk_msg_get_u32(m, k[0], &s->gen)) != HK_OK ||
        (e = hk_msg_get_bytes(m, k[1], s->salt, HK_KS_SALT_LEN)) != HK_OK ||
        (e = hk_msg_get_bytes(m, k[2], s->check, HK_KS_CHECK_LEN)) != HK_OK)
        return e;
    return s->gen >= 1 && hk_ks_kdf_ok(&s->kdf) ? HK_OK : HK_ERR_DECODE;
}

static hk_err hk_ks_token_put(hk_msg *m, const hk_ks_token *t)
{
    hk_err e;

    if ((e = hk_msg_put_u32(m, "ver",
                            t->tcti[0] ? HK_KS_TOKEN_VERSION_TPM
                                       : HK_KS_TOKEN_VERSION)) != HK_OK ||
        (t->tcti[0] && (e = hk_msg_put_str(m, "tpm_tcti", t->tcti)) != HK_OK) ||
        (e = hk_msg_put_str(m, "label", t->label)) != HK_OK ||
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

hk_err hk_ks_token_write(int dfd, const hk_ks_token *t)
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
    if (ver != HK_KS_TOKEN_VERSION && ver != HK_KS_TOKEN_VERSION_TPM)
        return HK_ERR_VERSION;
    if (ver == HK_KS_TOKEN_VERSION_TPM &&
        ((e = hk_msg_get_str(m, "tpm_tcti", t->tcti, sizeof(t->tcti))) !=
             HK_OK ||
         t->tcti[0] == 0))
        return HK_ERR_DECODE;
    if ((e = hk_msg_get_str(m, "label", t->label, sizeof(t->label))) != HK_OK ||
        (e = hk_msg_get_u32(m, "pin_fails", &t->fails)) != HK_OK ||
        (e = hk_msg_get_u32(m, "pin_max_fails", &t->max_fails)) != HK_OK ||
        (e = hk_ks_slot_get(m, "", NULL, t->tcti[0] != 0, &t->cur)) != HK_OK)
        return e;
    if (!hk_ks_token_label_ok(t->label) || t->max_fails < 1 ||
        t->max_fails > HK_KS_FAILS_LIMIT_MAX)
        return HK_ERR_DECODE;
    return HK_OK;
}

static hk_err hk_ks_token_get_pending(hk_msg *m, hk_ks_token *t)
{
    hk_err e;

    if ((e = hk_ks_slot_get(m, "prev_", &t->cur.kdf, t->tcti[0] != 0,
                            &t->prev)) != HK_OK ||
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

hk_err hk_ks_token_read(int dfd, hk_ks_token *t)
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

hk_err hk_ks_tlock(hk_ks *ks, int *fd)
{
    return hk_ks_lock_file(ks->dfd, HK_KS_TLOCK_FILE, 1, fd);
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
