/* Keystore key files (keys/<label>.json), key locks and the setup cache.
 *
 * A key file is a strict codec record of type "keyfile": the public
 * metadata in clear and "sealed" = nonce || AES-256-GCM(share record) || tag
 * under HKDF(MK of generation "gen", key id), with every public field in
 * the AAD (hk_ks_kf_aad). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "client/ks_impl.h"
#include "mpc/codec.h"
#include "mpc/setup.h"

#define HK_KS_NAME_MAX (HK_KS_LABEL_MAX + 8)

/* A key file in memory. */
typedef struct {
    hk_ks_keyinfo info;
    unsigned long gen;     /* PIN generation that sealed it */
    unsigned char *sealed; /* nonce || ct || tag */
    size_t sealed_len;
} hk_ks_kf;

struct hk_ks_hold {
    int fd; /* holds the OFD lock on keys/<label>.lock */
};

static int hk_ks_same_file(int kfd, const char *name, int fd);
static hk_ks_sig hk_ks_sig_read(int kfd, const char *label, uint64_t *t);
static void hk_ks_sig_merge(int kfd, hk_ks_keyinfo *i, int live);

static void hk_ks_kf_clear(hk_ks_kf *f)
{
    OPENSSL_free(f->sealed);
    memset(f, 0, sizeof(*f));
}

static void hk_ks_name(const char *label, const char *ext, char *out)
{
    snprintf(out, HK_KS_NAME_MAX, "%s%s", label, ext);
}

static void hk_ks_cur_mk(const hk_ks *ks, hk_ks_mk *mk)
{
    mk->gen = ks->gen;
    memcpy(mk->k, ks->mk, HK_KS_KEY_LEN);
}

static int hk_ks_printable(const char *s)
{
    for (; *s != 0; s++)
        if (*s < 0x20 || *s > 0x7e)
            return 0;
    return 1;
}

/* --- the record ------------------------------------------------------- */

static void hk_ks_kf_aad(const hk_ks_kf *f, hk_ks_aad *a)
{
    const hk_ks_keyinfo *i = &f->info;

    hk_ks_aad_init(a, "halfkey/keyfile/1");
    hk_ks_aad_str(a, i->label);
    hk_ks_aad_add(a, i->kid, HK_ID_LEN);
    hk_ks_aad_str(a, hk_curve_name(i->curve));
    hk_ks_aad_add(a, i->pub.b, HK_POINT_LEN);
    hk_ks_aad_u64(a, i->epoch);
    hk_ks_aad_u64(a, f->gen);
    hk_ks_aad_u64(a, (uint64_t)i->locked);
    hk_ks_aad_str(a, i->lock_reason);
    hk_ks_aad_u64(a, i->lock_time);
}

static void hk_ks_be64(uint64_t v, unsigned char b[8])
{
    int i;

    for (i = 7; i >= 0; i--, v >>= 8)
        b[i] = (unsigned char)v;
}

static hk_err hk_ks_kf_put(hk_msg *m, const hk_ks_kf *f)
{
    const hk_ks_keyinfo *i = &f->info;
    unsigned char t[8];
    hk_err e;

    hk_ks_be64(i->lock_time, t);
    if ((e = hk_msg_put_str(m, "label", i->label)) != HK_OK ||
        (e = hk_msg_put_str(m, "curve", hk_curve_name(i->curve))) != HK_OK ||
        (e = hk_msg_put_point(m, "pub", &i->pub)) != HK_OK ||
        (e = hk_msg_put_u32(m, "epoch", i->epoch)) != HK_OK ||
        (e = hk_msg_put_u32(m, "gen", f->gen)) != HK_OK ||
        (e = hk_msg_put_u32(m, "locked", (unsigned long)i->locked)) != HK_OK ||
        (e = hk_msg_put_str(m, "lock_reason", i->lock_reason)) != HK_OK ||
        (e = hk_msg_put_bytes(m, "lock_time", t, sizeof(t))) != HK_OK ||
        (e = hk_msg_put_bytes(m, "sealed", f->sealed, f->sealed_len)) != HK_OK)
        return e;
    return HK_OK;
}

static hk_err hk_ks_kf_write(int kfd, const hk_ks_kf *f)
{
    char name[HK_KS_NAME_MAX];
    unsigned char *buf = NULL;
    size_t len = 0;
    hk_msg *m = NULL;
    hk_err e;

    if ((e = hk_msg_new("keyfile", NULL, f->info.kid, &m)) != HK_OK)
        return e;
    if ((e = hk_ks_kf_put(m, f)) != HK_OK ||
        (e = hk_msg_encode(m, &buf, &len)) != HK_OK)
        goto done;
    hk_ks_name(f->info.label, ".json", name);
    e = hk_ks_write_file(kfd, name, buf, len);
done:
    OPENSSL_free(buf);
    hk_msg_free(m);
    return e;
}

/* Lock fields: 0 or 1; an unlocked key has no reason and no time. */
static hk_err hk_ks_kf_get_lock(hk_msg *m, hk_ks_keyinfo *i)
{
    unsigned long locked;
    unsigned char t[8];
    size_t k;
    hk_err e;

    if ((e = hk_msg_get_u32(m, "locked", &locked)) != HK_OK ||
        (e = hk_msg_get_str(m, "lock_reason", i->lock_reason,
                            sizeof(i->lock_reason))) != HK_OK ||
        (e = hk_msg_get_bytes(m, "lock_time", t, sizeof(t))) != HK_OK)
        return e;
    for (k = 0, i->lock_time = 0; k < sizeof(t); k++)
        i->lock_time = i->lock_time << 8 | t[k];
    if (locked > 1 || !hk_ks_printable(i->lock_reason) ||
        (!locked && (i->lock_reason[0] != 0 || i->lock_time != 0)))
        return HK_ERR_DECODE;
    i->locked = (int)locked;
    return HK_OK;
}

/* Reads the sealed blob into f->sealed. */
static hk_err hk_ks_kf_get_sealed(hk_msg *m, hk_ks_kf *f)
{
    unsigned char *buf = OPENSSL_malloc(HK_KS_SEALED_MAX);
    hk_err e;

    if (buf == NULL)
        return HK_ERR_NOMEM;
    e = hk_msg_get_var(m, "sealed", buf, HK_KS_SEALED_MAX, &f->sealed_len);
    if (e == HK_OK && f->sealed_len <= HK_KS_SEAL_OVERHEAD)
        e = HK_ERR_DECODE;
    if (e != HK_OK) {
        OPENSSL_free(buf);
        return e;
    }
    f->sealed = buf;
    return HK_OK;
}

static hk_err hk_ks_kf_get(hk_msg *m, hk_ks_kf *f)
{
    hk_ks_keyinfo *i = &f->info;
    char cname[16];
    hk_curve *c = NULL;
    hk_err e;

    if ((e = hk_msg_get_bytes(m, "kid", i->kid, HK_ID_LEN)) != HK_OK ||
        (e = hk_msg_get_str(m, "label", i->label, sizeof(i->label))) != HK_OK ||
        (e = hk_msg_get_str(m, "curve", cname, sizeof(cname))) != HK_OK ||
        (e = hk_msg_get_u32(m, "epoch", &i->epoch)) != HK_OK ||
        (e = hk_msg_get_u32(m, "gen", &f->gen)) != HK_OK ||
        (e = hk_ks_kf_get_lock(m, i)) != HK_OK)
        return e;
    if (!hk_ks_label_ok(i->label) ||
        hk_curve_from_name(cname, &i->curve) != HK_OK || i->epoch == 0 ||
        f->gen == 0)
        return HK_ERR_DECODE;
    if ((e = hk_curve_new(i->curve, &c)) != HK_OK)
        return e;
    e = hk_msg_get_point(m, c, "pub", &i->pub);
    hk_curve_free(c);
    if (e != HK_OK)
        return e == HK_ERR_POINT ? HK_ERR_DECODE : e;
    if ((e = hk_ks_kf_get_sealed(m, f)) != HK_OK)
        return e;
    return hk_msg_finish(m);
}

/* Reads and parses keys/<label>.json; the file must name that label
 * (HK_ERR_SEAL: a file copied or renamed from another key). Public
 * metadata only: nothing is authenticated yet. */
/* The bytes of label's key file (OPENSSL_free them). */
static hk_err hk_ks_kf_bytes(int kfd, const char *label, unsigned char **buf,
                             size_t *len)
{
    char name[HK_KS_NAME_MAX];

    hk_ks_name(label, ".json", name);
    return hk_ks_read_file(kfd, name, HK_KS_FILE_MAX, buf, len);
}

/* The key file of label, from its bytes. */
static hk_err hk_ks_kf_parse(const unsigned char *buf, size_t len,
                             const char *label, hk_ks_kf *f)
{
    hk_msg *m = NULL;
    hk_err e;

    memset(f, 0, sizeof(*f));
    if ((e = hk_msg_parse(buf, len, HK_KS_FILE_MAX, "keyfile", NULL, NULL,
                          &m)) == HK_OK &&
        (e = hk_ks_kf_get(m, f)) == HK_OK)
        e = strcmp(f->info.label, label) == 0 ? HK_OK : HK_ERR_SEAL;
    if (e != HK_OK)
        hk_ks_kf_clear(f);
    hk_msg_free(m);
    return e;
}

static hk_err hk_ks_kf_read(int kfd, const char *label, hk_ks_kf *f)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    hk_err e;

    memset(f, 0, sizeof(*f));
    if ((e = hk_ks_kf_bytes(kfd, label, &buf, &len)) == HK_OK)
        e = hk_ks_kf_parse(buf, len, label, f);
    OPENSSL_free(buf);
    return e;
}

/* --- sealing ------------------------------------------------------------ */

static hk_err hk_ks_kf_key(const hk_ks_mk *mk, const hk_ks_kf *f,
                           unsigned char key[HK_KS_KEY_LEN])
{
    return hk_ks_hkdf(mk->k, "halfkey/keyfile/1", f->info.kid, HK_ID_LEN, key);
}

/* Authenticates f under mk and returns the share record (secret: the
 * caller wipes and frees it with OPENSSL_clear_free(*pt, *ptlen)).
 * HK_ERR_STATE if f was sealed by another PIN generation. */
static hk_err hk_ks_kf_open(const hk_ks_kf *f, const hk_ks_mk *mk,
                            unsigned char **pt, size_t *ptlen)
{
    unsigned char key[HK_KS_KEY_LEN];
    size_t n = f->sealed_len - HK_KS_SEAL_OVERHEAD;
    unsigned char *buf;
    hk_ks_aad a;
    hk_err e;

    if (f->gen != mk->gen)
        return HK_ERR_STATE;
    hk_ks_kf_aad(f, &a);
    if (a.overflow)
        return HK_ERR_DECODE;
    if ((buf = OPENSSL_malloc(n)) == NULL)
        return HK_ERR_NOMEM;
    if ((e = hk_ks_kf_key(mk, f, key)) == HK_OK)
        e = hk_aead_open(key, a.b, a.len, f->sealed, f->sealed_len, buf);
    OPENSSL_cleanse(key, sizeof(key));
    if (e != HK_OK) {
        OPENSSL_clear_free(buf, n);
        return e;
    }
    *pt = buf;
    *ptlen = n;
    return HK_OK;
}

/* Seals pt into f under mk (f->gen becomes mk's), with f's metadata as
 * the AAD. */
static hk_err hk_ks_kf_seal(hk_ks_kf *f, const hk_ks_mk *mk,
                            const unsigned char *pt, size_t ptlen)
{
    unsigned char key[HK_KS_KEY_LEN];
    unsigned char *buf;
    size_t n = ptlen + HK_KS_SEAL_OVERHEAD;
    hk_ks_aad a;
    hk_err e;

    if (n > HK_KS_SEALED_MAX)
        return HK_ERR_TOO_BIG;
    f->gen = mk->gen;
    hk_ks_kf_aad(f, &a);
    if (a.overflow)
        return HK_ERR_ARG;
    if ((buf = OPENSSL_malloc(n)) == NULL)
        return HK_ERR_NOMEM;
    if ((e = hk_ks_kf_key(mk, f, key)) == HK_OK)
        e = hk_aead_seal(key, a.b, a.len, pt, ptlen, buf);
    OPENSSL_cleanse(key, sizeof(key));
    if (e != HK_OK) {
        OPENSSL_free(buf);
        return e;
    }
    OPENSSL_free(f->sealed);
    f->sealed = buf;
    f->sealed_len = n;
    return HK_OK;
}

/* Opens f under `from`, sets its lock fields from `lock` (NULL: kept),
 * seals it under `to` and writes it. */
static hk_err hk_ks_kf_reseal(int kfd, hk_ks_kf *f, const hk_ks_mk *from,
                              const hk_ks_mk *to, const hk_ks_keyinfo *lock)
{
    unsigned char *pt = NULL;
    size_t n = 0;
    hk_err e;

    if ((e = hk_ks_kf_open(f, from, &pt, &n)) != HK_OK)
        return e;
    if (lock != NULL) {
        f->info.locked = lock->locked;
        memcpy(f->info.lock_reason, lock->lock_reason,
               sizeof(f->info.lock_reason));
        f->info.lock_time = lock->lock_time;
    }
    if ((e = hk_ks_kf_seal(f, to, pt, n)) == HK_OK)
        e = hk_ks_kf_write(kfd, f);
    OPENSSL_clear_free(pt, n);
    return e;
}

/* Public metadata of a share, unlocked, and its sealed record under mk. */
static hk_err hk_ks_kf_from_share(const char *label, const hk_share *s,
                                  const hk_ks_mk *mk, hk_ks_kf *f)
{
    unsigned char *pt = NULL;
    size_t n = 0;
    hk_err e;

    memset(f, 0, sizeof(*f));
    memcpy(f->info.label, label, strlen(label) + 1);
    memcpy(f->info.kid, s->kid, HK_ID_LEN);
    f->info.curve = s->curve;
    f->info.pub = s->Q;
    f->info.epoch = s->epoch;
    if ((e = hk_share_encode(s, &pt, &n)) != HK_OK)
        return e;
    e = hk_ks_kf_seal(f, mk, pt, n);
    OPENSSL_clear_free(pt, n);
    return e;
}

hk_err hk_ks_rekey(int kfd, const hk_ks_mk *from, const hk_ks_mk *to)
{
    char **names = NULL;
    size_t n = 0, i;
    hk_ks_kf f;
    hk_err e;

    if ((e = hk_ks_key_names(kfd, &names, &n)) != HK_OK)
        return e;
    for (i = 0; i < n && e == HK_OK; i++) {
        names[i][strlen(names[i]) - 5] = 0; /* the label */
        e = hk_ks_kf_read(kfd, names[i], &f);
        if (e == HK_OK && f.gen == from->gen)
            e = hk_ks_kf_reseal(kfd, &f, from, to, NULL);
        hk_ks_kf_clear(&f);
        if (e == HK_ERR_NOT_FOUND || e == HK_ERR_DECODE || e == HK_ERR_SEAL ||
            e == HK_ERR_VERSION || e == HK_ERR_MSG_TYPE || e == HK_ERR_TOO_BIG)
            e = HK_OK; /* gone, or unreadable with any key: left alone */
    }
    hk_ks_names_free(names, n);
    return e;
}

/* --- write operations ---------------------------------------------------- */

typedef hk_err (*hk_ks_op)(hk_ks *ks, const char *label, const void *arg);

/* Runs op under the handle's mutex and the token lock, logged in with a
 * current PIN generation. */
static hk_err hk_ks_write_op(hk_ks *ks, const char *label, hk_ks_op op,
                             const void *arg)
{
    int lfd = -1;
    hk_err e;

    if (ks == NULL || !hk_ks_label_ok(label))
        return HK_ERR_ARG;
    pthread_mutex_lock(&ks->mu);
    if ((e = hk_ks_tlock(ks, &lfd)) != HK_OK ||
        (e = hk_ks_gen_check(ks)) != HK_OK)
        goto done;
    e = op(ks, label, arg);
done:
    if (lfd >= 0)
        close(lfd);
    pthread_mutex_unlock(&ks->mu);
    return e;
}

/* HK_ERR_EXISTS if some readable key file holds key id kid. */
static hk_err hk_ks_kid_unused(int kfd, const unsigned char *kid)
{
    char **names = NULL;
    size_t n = 0, i;
    hk_ks_kf f;
    hk_err e;

    if ((e = hk_ks_key_names(kfd, &names, &n)) != HK_OK)
        return e;
    for (i = 0; i < n && e == HK_OK; i++) {
        names[i][strlen(names[i]) - 5] = 0;
        if (hk_ks_kf_read(kfd, names[i], &f) == HK_OK &&
            memcmp(f.info.kid, kid, HK_ID_LEN) == 0)
            e = HK_ERR_EXISTS;
        hk_ks_kf_clear(&f);
    }
    hk_ks_names_free(names, n);
    return e;
}

static hk_err hk_ks_store_op(hk_ks *ks, const char *label, const void *arg)
{
    const hk_share *s = arg;
    char name[HK_KS_NAME_MAX];
    hk_ks_mk mk;
    hk_ks_kf f;
    hk_err e;

    hk_ks_name(label, ".json", name);
    if (hk_ks_exists(ks->kfd, name))
        return HK_ERR_EXISTS;
    if ((e = hk_ks_kid_unused(ks->kfd, s->kid)) != HK_OK)
        return e;
    hk_ks_cur_mk(ks, &mk);
    if ((e = hk_ks_kf_from_share(label, s, &mk, &f)) == HK_OK)
        e = hk_ks_kf_write(ks->kfd, &f);
    hk_ks_kf_clear(&f);
    OPENSSL_cleanse(&mk, sizeof(mk));
    return e;
}

hk_err hk_ks_store_share(hk_ks *ks, const char *label, const hk_share *s)
{
    if (s == NULL || s->role != HK_ROLE_P1)
        return HK_ERR_ARG;
    return hk_ks_write_op(ks, label, hk_ks_store_op, s);
}

/* The new share must continue the old key: same id, curve and Q, and a
 * greater epoch. */
static hk_err hk_ks_successor_ok(const hk_ks_keyinfo *old, const hk_share *s)
{
    if (memcmp(old->kid, s->kid, HK_ID_LEN) != 0 || old->curve != s->curve ||
        !hk_point_eq(&old->pub, &s->Q))
        return HK_ERR_BINDING;
    return s->epoch > old->epoch ? HK_OK : HK_ERR_EPOCH;
}

static hk_err hk_ks_replace_op(hk_ks *ks, const char *label, const void *arg)
{
    const hk_share *s = arg;
    unsigned char *pt = NULL;
    size_t n = 0;
    hk_ks_mk mk;
    hk_ks_kf f, nf;
    hk_err e;

    memset(&nf, 0, sizeof(nf));
    hk_ks_cur_mk(ks, &mk);
    if ((e = hk_ks_kf_read(ks->kfd, label, &f)) != HK_OK ||
        (e = hk_ks_kf_open(&f, &mk, &pt, &n)) != HK_OK) /* authenticate */
        goto done;
    if ((e = hk_ks_successor_ok(&f.info, s)) != HK_OK ||
        (e = hk_ks_kf_from_share(label, s, &mk, &nf)) != HK_OK)
        goto done;
    /* a lock survives a refresh (DESIGN.md section 2): re-seal the new
     * file with the old lock fields */
    if (f.info.locked &&
        (e = hk_ks_kf_reseal(ks->kfd, &nf, &mk, &mk, &f.info)) != HK_OK)
        goto done;
    e = hk_ks_kf_write(ks->kfd, &nf);
done:
    OPENSSL_clear_free(pt, n);
    hk_ks_kf_clear(&f);
    hk_ks_kf_clear(&nf);
    OPENSSL_cleanse(&mk, sizeof(mk));
    return e;
}

hk_err hk_ks_replace_share(hk_ks *ks, const char *label, const hk_share *s)
{
    if (s == NULL || s->role != HK_ROLE_P1)
        return HK_ERR_ARG;
    return hk_ks_write_op(ks, label, hk_ks_replace_op, s);
}

/* Sets the lock fields of the file to `lock` (re-sealed under the PIN). */
static hk_err hk_ks_set_lock_op(hk_ks *ks, const char *label, const void *arg)
{
    const hk_ks_keyinfo *lock = arg;
    hk_ks_mk mk;
    hk_ks_kf f;
    hk_err e;

    if ((e = hk_ks_kf_read(ks->kfd, label, &f)) != HK_OK)
        return e;
    hk_ks_cur_mk(ks, &mk);
    if (f.info.locked != lock->locked) /* else: keep the first reason */
        e = hk_ks_kf_reseal(ks->kfd, &f, &mk, &mk, lock);
    hk_ks_kf_clear(&f);
    OPENSSL_cleanse(&mk, sizeof(mk));
    return e;
}

hk_err hk_ks_lock_key(hk_ks *ks, const char *label, const char *reason)
{
    hk_ks_keyinfo lock;
    size_t i;

    memset(&lock, 0, sizeof(lock));
    lock.locked = 1;
    lock.lock_time = (uint64_t)time(NULL);
    for (i = 0; reason != NULL && reason[i] != 0 && i < HK_KS_REASON_MAX; i++)
        lock.lock_reason[i] =
            reason[i] >= 0x20 && reason[i] <= 0x7e ? reason[i] : '?';
    return hk_ks_write_op(ks, label, hk_ks_set_lock_op, &lock);
}

/* Unlock under the key's session lock and the token lock: refuses an
 * abort lock without force, then clears the sealed flag, then the record
 * (so a crash in between leaves it locked). */
static hk_err hk_ks_unlock_op(hk_ks *ks, const char *label, const void *arg)
{
    const int *force = arg;
    hk_ks_keyinfo none;
    hk_ks_hold *h = NULL;
    hk_ks_sig sig;
    hk_ks_kf f;
    hk_err e;

    memset(&none, 0, sizeof(none));
    if ((e = hk_ks_key_acquire(ks, label, &h)) != HK_OK)
        return e;
    if ((e = hk_ks_kf_read(ks->kfd, label, &f)) != HK_OK)
        goto done;
    sig = hk_ks_sig_read(ks->kfd, label, NULL);
    e = HK_ERR_KEY_LOCKED;
    if (!*force &&
        (f.info.locked || sig == HK_KS_SIG_ABORTED || sig == HK_KS_SIG_DAMAGED))
        goto done;
    if ((e = hk_ks_set_lock_op(ks, label, &none)) == HK_OK &&
        sig != HK_KS_SIG_IDLE)
        e = hk_ks_hold_mark(h, HK_KS_SIG_IDLE);
done:
    hk_ks_kf_clear(&f);
    hk_ks_key_release(h);
    return e;
}

hk_err hk_ks_unlock_key(hk_ks *ks, const char *label, int force)
{
    return hk_ks_write_op(ks, label, hk_ks_unlock_op, &force);
}

/* Removes the key file (and its lock file) while `h` holds the key's
 * signing-session lock. */
static hk_err hk_ks_unlink_key(hk_ks *ks, const char *label,
                               const hk_ks_hold *h)
{
    char name[HK_KS_NAME_MAX];
    hk_err e;

    hk_ks_name(label, ".lock", name);
    if (!hk_ks_same_file(ks->kfd, name, h->fd))
        return HK_ERR_ARG; /* a hold of another key */
    hk_ks_name(label, ".json", name);
    if ((e = hk_ks_unlink(ks->kfd, name)) == HK_OK) {
        hk_ks_name(label, ".lock", name);
        unlinkat(ks->kfd, name, 0); /* best effort; acquire re-checks it */
    }
    return e;
}

static hk_err hk_ks_delete_op(hk_ks *ks, const char *label, const void *arg)
{
    hk_ks_hold *h = NULL;
    hk_err e;

    if (arg != NULL)
        return hk_ks_unlink_key(ks, label, arg);
    if ((e = hk_ks_key_acquire(ks, label, &h)) != HK_OK)
        return e;
    e = hk_ks_unlink_key(ks, label, h);
    hk_ks_key_release(h);
    return e;
}

hk_err hk_ks_delete(hk_ks *ks, const char *label)
{
    return hk_ks_write_op(ks, label, hk_ks_delete_op, NULL);
}

hk_err hk_ks_delete_held(hk_ks *ks, const char *label, const hk_ks_hold *hold)
{
    if (hold == NULL)
        return HK_ERR_ARG;
    return hk_ks_write_op(ks, label, hk_ks_delete_op, hold);
}

/* --- read operations ---------------------------------------------------- */

/* The share must be P1's and agree with the file's public metadata. */
static hk_err hk_ks_share_matches(const hk_share *s, const hk_ks_keyinfo *i)
{
    if (s->role != HK_ROLE_P1 || s->curve != i->curve || s->epoch != i->epoch ||
        memcmp(s->kid, i->kid, HK_ID_LEN) != 0 || !hk_point_eq(&s->Q, &i->pub))
        return HK_ERR_SHARE;
    return HK_OK;
}

static hk_err hk_ks_load_locked(hk_ks *ks, const char *label, hk_share **out)
{
    unsigned char *pt = NULL;
    size_t n = 0;
    hk_share *s = NULL;
    hk_ks_mk mk;
    hk_ks_kf f;
    hk_err e;

    hk_ks_cur_mk(ks, &mk);
    if ((e = hk_ks_kf_read(ks->kfd, label, &f)) != HK_OK ||
        (e = hk_ks_kf_open(&f, &mk, &pt, &n)) != HK_OK)
        goto done;
    e = HK_ERR_KEY_LOCKED;
    if (f.info.locked || hk_ks_sig_read(ks->kfd, label, NULL) != HK_KS_SIG_IDLE)
        goto done;
    if ((e = hk_share_decode_sealed(pt, n, &s)) != HK_OK ||
        (e = hk_ks_share_matches(s, &f.info)) != HK_OK)
        goto done;
    *out = s;
    s = NULL;
done:
    hk_share_free(s);
    OPENSSL_clear_free(pt, n);
    hk_ks_kf_clear(&f);
    OPENSSL_cleanse(&mk, sizeof(mk));
    return e;
}

hk_err hk_ks_load_share(hk_ks *ks, const char *label, hk_share **out)
{
    hk_err e = HK_ERR_STATE;

    if (ks == NULL || out == NULL || !hk_ks_label_ok(label))
        return HK_ERR_ARG;
    *out = NULL;
    pthread_mutex_lock(&ks->mu);
    if (ks->logged_in)
        e = hk_ks_load_locked(ks, label, out);
    pthread_mutex_unlock(&ks->mu);
    return e;
}

/* Metadata of one key; authenticated when logged in. live: as
 * hk_ks_key_info_live. */
void hk_ks_icache_clear(hk_ks *ks)
{
    size_t i;

    for (i = 0; i < HK_KS_INFO_CACHE; i++) {
        OPENSSL_free(ks->ic[i].bytes);
        memset(&ks->ic[i], 0, sizeof(ks->ic[i]));
    }
    ks->ic_next = 0;
}

/* 1 and *out if the cache has label's key file with exactly these bytes. */
static int hk_ks_icache_get(const hk_ks *ks, const char *label,
                            const unsigned char *buf, size_t len,
                            hk_ks_keyinfo *out)
{
    const hk_ks_icache *c;
    size_t i;

    for (i = 0; i < HK_KS_INFO_CACHE; i++) {
        c = &ks->ic[i];
        if (c->bytes != NULL && c->len == len &&
            strcmp(c->info.label, label) == 0 &&
            memcmp(c->bytes, buf, len) == 0) {
            *out = c->info;
            return 1;
        }
    }
    return 0;
}

/* Keeps buf (taken) and info for label, in place of an older entry of
 * label or of the oldest entry. */
static void hk_ks_icache_put(hk_ks *ks, unsigned char *buf, size_t len,
                             const hk_ks_keyinfo *info)
{
    hk_ks_icache *c = NULL;
    size_t i;

    for (i = 0; i < HK_KS_INFO_CACHE && c == NULL; i++)
        if (ks->ic[i].bytes != NULL &&
            strcmp(ks->ic[i].info.label, info->label) == 0)
            c = &ks->ic[i];
    if (c == NULL) {
        c = &ks->ic[ks->ic_next];
        ks->ic_next = (ks->ic_next + 1) % HK_KS_INFO_CACHE;
    }
    OPENSSL_free(c->bytes);
    c->bytes = buf;
    c->len = len;
    c->info = *info;
}

/* The file's information, parsed and (logged in) authenticated. */
static hk_err hk_ks_info_parse(hk_ks *ks, const char *label,
                               const unsigned char *buf, size_t len,
                               hk_ks_keyinfo *out)
{
    unsigned char *pt = NULL;
    size_t n = 0;
    hk_ks_mk mk;
    hk_ks_kf f;
    hk_err e;

    if ((e = hk_ks_kf_parse(buf, len, label, &f)) != HK_OK)
        return e;
    if (ks->logged_in) {
        hk_ks_cur_mk(ks, &mk);
        e = hk_ks_kf_open(&f, &mk, &pt, &n);
        OPENSSL_clear_free(pt, n);
        OPENSSL_cleanse(&mk, sizeof(mk));
        f.info.verified = e == HK_OK;
    }
    if (e == HK_OK)
        *out = f.info;
    hk_ks_kf_clear(&f);
    return e;
}

static hk_err hk_ks_info_locked(hk_ks *ks, const char *label,
                                hk_ks_keyinfo *out, int live)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    hk_err e;

    if ((e = hk_ks_kf_bytes(ks->kfd, label, &buf, &len)) != HK_OK)
        return e;
    if (!hk_ks_icache_get(ks, label, buf, len, out)) {
        if ((e = hk_ks_info_parse(ks, label, buf, len, out)) != HK_OK) {
            OPENSSL_free(buf);
            return e;
        }
        hk_ks_icache_put(ks, buf, len, out);
        buf = NULL;
    }
    OPENSSL_free(buf);
    /* the signing-session record: read every time (the lock gate) */
    hk_ks_sig_merge(ks->kfd, out, live);
    return HK_OK;
}

static hk_err hk_ks_info_of(hk_ks *ks, const char *label, hk_ks_keyinfo *out,
                            int live)
{
    hk_err e;

    if (ks == NULL || out == NULL || !hk_ks_label_ok(label))
        return HK_ERR_ARG;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&ks->mu);
    e = hk_ks_info_locked(ks, label, out, live);
    pthread_mutex_unlock(&ks->mu);
    return e;
}

hk_err hk_ks_key_info(hk_ks *ks, const char *label, hk_ks_keyinfo *out)
{
    return hk_ks_info_of(ks, label, out, 0);
}

hk_err hk_ks_key_info_live(hk_ks *ks, const char *label, hk_ks_keyinfo *out)
{
    return hk_ks_info_of(ks, label, out, 1);
}

hk_err hk_ks_pub_uncompressed(hk_curve_id curve, const unsigned char *pt,
                              size_t len,
                              unsigned char out[HK_POINT_UNCOMPRESSED_LEN])
{
    unsigned char comp[HK_POINT_LEN];
    hk_curve *c = NULL;
    hk_point p;
    hk_err e;

    if (pt == NULL || out == NULL)
        return HK_ERR_ARG;
    if (len == HK_POINT_UNCOMPRESSED_LEN && pt[0] == 0x04) {
        comp[0] = (unsigned char)(0x02 | (pt[64] & 1));
        memcpy(comp + 1, pt + 1, 32);
    } else if (len == HK_POINT_LEN) {
        memcpy(comp, pt, HK_POINT_LEN);
    } else {
        return HK_ERR_POINT;
    }
    if ((e = hk_curve_new(curve, &c)) == HK_OK &&
        (e = hk_point_parse(c, comp, HK_POINT_LEN, &p)) == HK_OK &&
        (e = hk_point_uncompressed(c, &p, out)) == HK_OK &&
        len == HK_POINT_UNCOMPRESSED_LEN && memcmp(out, pt, len) != 0)
        e = HK_ERR_POINT; /* y does not belong to x */
    hk_curve_free(c);
    return e;
}

static hk_err hk_ks_list_locked(hk_ks *ks, hk_ks_keyinfo **out, size_t *n)
{
    char **names = NULL;
    size_t cnt = 0, i;
    hk_ks_keyinfo *list = NULL;
    hk_err e;

    if ((e = hk_ks_key_names(ks->kfd, &names, &cnt)) != HK_OK || cnt == 0)
        goto done;
    e = HK_ERR_NOMEM;
    if ((list = OPENSSL_zalloc(cnt * sizeof(*list))) == NULL)
        goto done;
    for (i = 0; i < cnt; i++) {
        hk_err ei;

        names[i][strlen(names[i]) - 5] = 0; /* the label */
        ei = hk_ks_info_locked(ks, names[i], &list[i], 1);
        if (ei != HK_OK)
            memcpy(list[i].label, names[i], strlen(names[i]) + 1);
        list[i].err = ei;
    }
    *out = list;
    *n = cnt;
    e = HK_OK;
done:
    hk_ks_names_free(names, cnt);
    return e;
}

hk_err hk_ks_list(hk_ks *ks, hk_ks_keyinfo **out, size_t *n)
{
    hk_err e;

    if (ks == NULL || out == NULL || n == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&ks->mu);
    e = hk_ks_list_locked(ks, out, n);
    pthread_mutex_unlock(&ks->mu);
    return e;
}

void hk_ks_list_free(hk_ks_keyinfo *list) { OPENSSL_free(list); }

/* --- signing-session locks ---------------------------------------------- */

/* 1 if fd is still the file at keys/<name> (not unlinked by a delete). */
static int hk_ks_same_file(int kfd, const char *name, int fd)
{
    struct stat a, b;

    return fstat(fd, &a) == 0 &&
           fstatat(kfd, name, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
           a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

hk_err hk_ks_key_acquire(hk_ks *ks, const char *label, hk_ks_hold **out)
{
    char name[HK_KS_NAME_MAX];
    hk_ks_hold *h;
    int fd = -1, tries;
    hk_err e = HK_ERR_BUSY;

    if (ks == NULL || out == NULL || !hk_ks_label_ok(label))
        return HK_ERR_ARG;
    *out = NULL;
    hk_ks_name(label, ".lock", name);
    for (tries = 0; tries < 3 && e == HK_ERR_BUSY; tries++) {
        if ((e = hk_ks_lock_file(ks->kfd, name, 0, &fd)) != HK_OK)
            return e;
        if (!hk_ks_same_file(ks->kfd, name, fd)) {
            close(fd); /* a delete unlinked it under us: retry */
            fd = -1;
            e = HK_ERR_BUSY;
        }
    }
    if (e != HK_OK)
        return e;
    hk_ks_name(label, ".json", name);
    e = HK_ERR_NOT_FOUND;
    if (!hk_ks_exists(ks->kfd, name))
        goto fail;
    e = HK_ERR_NOMEM;
    if ((h = OPENSSL_zalloc(sizeof(*h))) == NULL)
        goto fail;
    h->fd = fd;
    *out = h;
    return HK_OK;
fail:
    close(fd);
    return e;
}

void hk_ks_key_release(hk_ks_hold *h)
{
    if (h == NULL)
        return;
    close(h->fd); /* closing the last descriptor drops the OFD lock */
    OPENSSL_free(h);
}

/* --- signing-session records (keystore.h) -------------------------------- */

#define HK_KS_SIG_MAGIC "HKSIG1 "
/* "HKSIG1 " + an 8-character state + " " + 20 digits + "\n" */
#define HK_KS_SIG_REC 37

/* Every state is a record of the same length, written in place: an
 * in-flight mark then changes one data block of an allocated file and its
 * fdatasync needs no journal commit, and the clear is one pwrite (no
 * truncate, which frees the block: on a filesystem mounted with discard
 * that cost half a millisecond per sign). */
static const char *const hk_ks_sig_names[] = {"idle    ", "inflight",
                                              "aborted "};

hk_err hk_ks_hold_mark(hk_ks_hold *h, hk_ks_sig state)
{
    char rec[HK_KS_SIG_REC + 1];
    int n;

    if (h == NULL || state < HK_KS_SIG_IDLE || state > HK_KS_SIG_ABORTED)
        return HK_ERR_ARG;
    n = snprintf(rec, sizeof(rec), HK_KS_SIG_MAGIC "%s %020llu\n",
                 hk_ks_sig_names[state], (unsigned long long)time(NULL));
    if (n != HK_KS_SIG_REC ||
        pwrite(h->fd, rec, HK_KS_SIG_REC, 0) != HK_KS_SIG_REC ||
        ftruncate(h->fd, HK_KS_SIG_REC) != 0)
        return HK_ERR_IO;
    if (state == HK_KS_SIG_IDLE) /* not synced: see keystore.h */
        return HK_OK;
    return fdatasync(h->fd) == 0 ? HK_OK : HK_ERR_IO;
}

/* The record of keys/<label>.lock; a missing or empty file (as written
 * before the idle record existed) is idle, anything but an exact record is
 * damaged. *t (may be NULL): its time. */
static hk_ks_sig hk_ks_sig_read(int kfd, const char *label, uint64_t *t)
{
    char name[HK_KS_NAME_MAX], rec[HK_KS_SIG_REC + 1], *end;
    unsigned long long v;
    hk_ks_sig st = HK_KS_SIG_DAMAGED;
    ssize_t n;
    int fd, i;

    hk_ks_name(label, ".lock", name);
    fd = openat(kfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? HK_KS_SIG_IDLE : HK_KS_SIG_DAMAGED;
    n = pread(fd, rec, sizeof(rec), 0);
    close(fd);
    if (n == 0)
        return HK_KS_SIG_IDLE;
    if (n != HK_KS_SIG_REC || rec[HK_KS_SIG_REC - 1] != '\n' ||
        memcmp(rec, HK_KS_SIG_MAGIC, 7) != 0)
        return HK_KS_SIG_DAMAGED;
    rec[HK_KS_SIG_REC - 1] = 0;
    for (i = HK_KS_SIG_IDLE; i <= HK_KS_SIG_ABORTED; i++)
        if (memcmp(rec + 7, hk_ks_sig_names[i], 8) == 0)
            st = (hk_ks_sig)i;
    errno = 0;
    v = strtoull(rec + 16, &end, 10);
    if (rec[15] != ' ' || *end != 0 || errno != 0)
        return HK_KS_SIG_DAMAGED;
    if (t != NULL)
        *t = (uint64_t)v;
    return st;
}

/* 1 if some open file description holds the OFD lock of
 * keys/<label>.lock now (hk_ks_key_acquire): a hold of this process
 * through another descriptor counts too. 0 when it cannot tell. */
static int hk_ks_session_held(int kfd, const char *label)
{
    char name[HK_KS_NAME_MAX];
    struct flock fl;
    int fd, held;

    hk_ks_name(label, ".lock", name);
    fd = openat(kfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return 0;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET; /* the whole file, as the hold takes it */
    held = fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
    close(fd);
    return held;
}

/* Adds the record's state to a key's metadata: a record that is not idle
 * locks the key (the sealed flag's reason, if set, is kept); live: not an
 * in-flight one whose session lock is held now (a sign in progress). */
static void hk_ks_sig_merge(int kfd, hk_ks_keyinfo *i, int live)
{
    static const char *const why[] = {
        NULL, "interrupted signature: a signature was in flight",
        "invalid signature from the server: possible abort attack",
        "signing-session record damaged"};
    uint64_t t = 0;

    i->sig_state = hk_ks_sig_read(kfd, i->label, &t);
    if (i->sig_state == HK_KS_SIG_IDLE || i->locked)
        return;
    if (live && i->sig_state == HK_KS_SIG_INFLIGHT &&
        hk_ks_session_held(kfd, i->label)) {
        i->signing = 1;
        return;
    }
    i->locked = 1;
    i->lock_time = t;
    snprintf(i->lock_reason, sizeof(i->lock_reason), "%s", why[i->sig_state]);
}

/* --- server setup cache -------------------------------------------------- */

hk_err hk_ks_save_setup(hk_ks *ks, const unsigned char *rec, size_t len,
                        hk_rped **out)
{
    hk_rped *rp = NULL;
    int lfd = -1;
    hk_err e;

    if (ks == NULL || rec == NULL)
        return HK_ERR_ARG;
    if (out != NULL)
        *out = NULL;
    if ((e = hk_setup_decode(rec, len, &rp)) != HK_OK) /* verifies */
        return e;
    pthread_mutex_lock(&ks->mu);
    if ((e = hk_ks_tlock(ks, &lfd)) == HK_OK)
        e = hk_ks_write_file(ks->dfd, HK_KS_SETUP_FILE, rec, len);
    if (lfd >= 0)
        close(lfd);
    pthread_mutex_unlock(&ks->mu);
    if (e == HK_OK && out != NULL) {
        *out = rp;
        rp = NULL;
    }
    hk_rped_free(rp);
    return e;
}

hk_err hk_ks_load_setup(hk_ks *ks, hk_rped **out)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    hk_err e;

    if (ks == NULL || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    /* No cached "already verified" mark: decoding re-verifies the Pi^prm
     * proof (~250 ms), so a swapped or damaged file can never be used. */
    if ((e = hk_ks_read_file(ks->dfd, HK_KS_SETUP_FILE, HK_RECORD_MAX, &buf,
                             &len)) != HK_OK)
        return e;
    e = hk_setup_decode(buf, len, out);
    OPENSSL_free(buf);
    return e;
}
