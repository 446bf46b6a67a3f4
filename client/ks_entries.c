/* Single-use sealed entries: the storage under the prime pool (ks_pool.c)
 * and the CLI's presignatures (ks_presig.c).
 *
 * Owns the directories <dir>/<kind dir>/ and their entries,
 * "<tag>-<32 hex id><ext>": one secret of a kind, as
 *
 *   magic (8 bytes) | u32 gen | u32 field | nonce || AES-256-GCM(pt) || tag
 *
 * (big-endian) under HKDF(MK of generation gen, kind label, the 16-byte
 * id of the name), with the label, the name, gen and field in the AAD:
 * unreadable without the PIN, and an entry cannot be renamed into another
 * tag (a Paillier size, a key) or slot. The id's first 8 bytes are the
 * creation time (nanoseconds, big-endian), the rest random: names of one
 * tag sort in creation order.
 *
 * Single use, crash safe. hk_ks_ent_take removes the entry's file and
 * syncs the directory (hk_ks_unlink) BEFORE it opens the record and hands
 * its plaintext out, holding the token lock: a crash after that loses the
 * entry, a crash before it leaves the entry unused, and no entry is ever
 * handed out twice (two takers serialise on the lock; the second no
 * longer finds the file). Not covered, as for key files (keystore.h):
 * someone who can write the directory can put back a copy of an entry
 * taken earlier.
 *
 * Bounded: at most kind->max entries per tag (kind->per_tag) or in all.
 * Entries of another PIN generation (sealed before a PIN change) or that
 * fail authentication can never be opened: take removes them as it meets
 * them. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/libctx.h"
#include "client/ks_impl.h"

#define HK_KS_ENT_HDR 16   /* magic, gen, field */
#define HK_KS_ENT_SCAN 256 /* names looked at per call */
#define HK_KS_ENT_TAG_MAX 32

/* The entries of a directory listing. */
typedef struct {
    char name[HK_KS_ENT_SCAN][HK_KS_ENT_NAME_LEN];
    size_t n;
} hk_ks_ent_names;

static void hk_ks_ent_be32(unsigned long v, unsigned char *b)
{
    b[0] = (unsigned char)(v >> 24);
    b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8);
    b[3] = (unsigned char)v;
}

static unsigned long hk_ks_ent_get32(const unsigned char *b)
{
    return ((unsigned long)b[0] << 24) | ((unsigned long)b[1] << 16) |
           ((unsigned long)b[2] << 8) | b[3];
}

static int hk_ks_ent_hex(char c)
{
    return (c >= '0' && c <= '9')   ? c - '0'
           : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                                    : -1;
}

/* 1 if name is "<tag>-<32 lowercase hex><ext>" with `tag` (NULL: any
 * tag of 1..32 lowercase hex digits); then id is set. */
static int hk_ks_ent_parse(const hk_ks_ent_kind *k, const char *name,
                           const char *tag, unsigned char id[HK_KS_ENT_ID])
{
    size_t len = strlen(name), ext = strlen(k->ext), tl, i;

    if (len < 2 + 2 * HK_KS_ENT_ID + ext ||
        strcmp(name + len - ext, k->ext) != 0)
        return 0;
    tl = len - ext - 2 * HK_KS_ENT_ID - 1;
    if (tl < 1 || tl > HK_KS_ENT_TAG_MAX || name[tl] != '-' ||
        (tag != NULL && (strlen(tag) != tl || memcmp(name, tag, tl) != 0)))
        return 0;
    for (i = 0; i < tl; i++)
        if (hk_ks_ent_hex(name[i]) < 0)
            return 0;
    for (i = 0; i < HK_KS_ENT_ID; i++) {
        int hi = hk_ks_ent_hex(name[tl + 1 + 2 * i]),
            lo = hk_ks_ent_hex(name[tl + 2 + 2 * i]);

        if (hi < 0 || lo < 0)
            return 0;
        id[i] = (unsigned char)(hi << 4 | lo);
    }
    return 1;
}

/* Opens the kind's directory (created 0700 if `create`); HK_ERR_NOT_FOUND
 * if absent and not created. */
static hk_err hk_ks_ent_dir(hk_ks *ks, const hk_ks_ent_kind *k, int create,
                            int *fd)
{
    if (create && mkdirat(ks->dfd, k->dir, 0700) != 0 && errno != EEXIST)
        return HK_ERR_IO;
    return hk_ks_open_dir(ks->dfd, k->dir, 0, fd);
}

static int hk_ks_ent_cmp(const void *a, const void *b) { return strcmp(a, b); }

/* The entries of `tag` (NULL: all), at most HK_KS_ENT_SCAN, sorted: in
 * creation order within a tag. */
static hk_err hk_ks_ent_list(const hk_ks_ent_kind *k, int dfd, const char *tag,
                             hk_ks_ent_names *out)
{
    unsigned char id[HK_KS_ENT_ID];
    struct dirent *de;
    DIR *d;
    int fd;

    out->n = 0;
    if ((fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return HK_ERR_IO;
    if ((d = fdopendir(fd)) == NULL) {
        close(fd);
        return HK_ERR_IO;
    }
    while (out->n < HK_KS_ENT_SCAN && (de = readdir(d)) != NULL)
        if (strlen(de->d_name) < HK_KS_ENT_NAME_LEN &&
            hk_ks_ent_parse(k, de->d_name, tag, id))
            memcpy(out->name[out->n++], de->d_name, strlen(de->d_name) + 1);
    closedir(d);
    qsort(out->name, out->n, HK_KS_ENT_NAME_LEN, hk_ks_ent_cmp);
    return HK_OK;
}

static void hk_ks_ent_aad(const hk_ks_ent_kind *k, hk_ks_aad *a,
                          const char *name, unsigned long gen,
                          unsigned long field)
{
    hk_ks_aad_init(a, k->label);
    hk_ks_aad_str(a, name);
    hk_ks_aad_u64(a, gen);
    hk_ks_aad_u64(a, (uint64_t)field);
}

/* Seals pt as the record of `name` (rec: HK_KS_ENT_HDR +
 * HK_KS_SEAL_OVERHEAD + ptlen bytes). */
static hk_err hk_ks_ent_seal(const hk_ks *ks, const hk_ks_ent_kind *k,
                             const char *name, const unsigned char *id,
                             unsigned long field, const unsigned char *pt,
                             size_t ptlen, unsigned char *rec)
{
    unsigned char key[HK_KS_KEY_LEN];
    hk_ks_aad a;
    hk_err e;

    hk_ks_ent_aad(k, &a, name, ks->gen, field);
    if (a.overflow)
        return HK_ERR_ARG;
    memcpy(rec, k->magic, 8);
    hk_ks_ent_be32(ks->gen, rec + 8);
    hk_ks_ent_be32(field, rec + 12);
    if ((e = hk_ks_hkdf(ks->mk, k->label, id, HK_KS_ENT_ID, key)) == HK_OK)
        e = hk_aead_seal(key, a.b, a.len, pt, ptlen, rec + HK_KS_ENT_HDR);
    OPENSSL_cleanse(key, sizeof(key));
    return e;
}

/* Opens a record read from `name` into pt (ptlen bytes, the kind's fixed
 * size for `field`). HK_ERR_STATE for another PIN generation, HK_ERR_SEAL
 * or HK_ERR_DECODE for a record that is not a valid entry of this name. */
static hk_err hk_ks_ent_open(const hk_ks *ks, const hk_ks_ent_kind *k,
                             const char *name, const unsigned char *id,
                             unsigned long field, const unsigned char *rec,
                             size_t reclen, unsigned char *pt, size_t ptlen)
{
    unsigned char key[HK_KS_KEY_LEN];
    hk_ks_aad a;
    hk_err e;

    if (reclen != HK_KS_ENT_HDR + HK_KS_SEAL_OVERHEAD + ptlen ||
        memcmp(rec, k->magic, 8) != 0 || hk_ks_ent_get32(rec + 12) != field)
        return HK_ERR_DECODE;
    if (hk_ks_ent_get32(rec + 8) != ks->gen)
        return HK_ERR_STATE;
    hk_ks_ent_aad(k, &a, name, ks->gen, field);
    if (a.overflow)
        return HK_ERR_DECODE;
    if ((e = hk_ks_hkdf(ks->mk, k->label, id, HK_KS_ENT_ID, key)) == HK_OK)
        e = hk_aead_open(key, a.b, a.len, rec + HK_KS_ENT_HDR,
                         reclen - HK_KS_ENT_HDR, pt);
    OPENSSL_cleanse(key, sizeof(key));
    return e;
}

/* A fresh id: creation time, then random bytes. */
static hk_err hk_ks_ent_id(unsigned char id[HK_KS_ENT_ID])
{
    struct timespec ts;
    uint64_t t;
    int i;

    clock_gettime(CLOCK_REALTIME, &ts);
    t = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    for (i = 7; i >= 0; i--, t >>= 8)
        id[i] = (unsigned char)t;
    return hk_rand_bytes(id + 8, HK_KS_ENT_ID - 8) ? HK_OK : HK_ERR_RAND;
}

/* Runs op under the handle's mutex and the token lock, logged in with a
 * current PIN generation, with the kind's directory open. */
typedef hk_err (*hk_ks_ent_op)(hk_ks *ks, const hk_ks_ent_kind *k, int dfd,
                               void *arg);

static hk_err hk_ks_ent_locked(hk_ks *ks, const hk_ks_ent_kind *k, int create,
                               hk_ks_ent_op op, void *arg)
{
    int lfd = -1, dfd = -1;
    hk_err e;

    pthread_mutex_lock(&ks->mu);
    if ((e = hk_ks_tlock(ks, &lfd)) != HK_OK ||
        (e = hk_ks_gen_check(ks)) != HK_OK ||
        (e = hk_ks_ent_dir(ks, k, create, &dfd)) != HK_OK)
        goto done;
    e = op(ks, k, dfd, arg);
done:
    if (dfd >= 0)
        close(dfd);
    if (lfd >= 0)
        close(lfd);
    pthread_mutex_unlock(&ks->mu);
    return e;
}

typedef struct {
    const char *tag;
    unsigned long field;
    const unsigned char *pt;
    unsigned char *out; /* take: the plaintext */
    size_t ptlen;
    int found, deferred; /* take: the removal's sync left to the caller */
    char name[HK_KS_ENT_NAME_LEN];
} hk_ks_ent_arg;

static hk_err hk_ks_ent_put_op(hk_ks *ks, const hk_ks_ent_kind *k, int dfd,
                               void *varg)
{
    hk_ks_ent_arg *arg = varg;
    unsigned char id[HK_KS_ENT_ID], *rec;
    size_t reclen = HK_KS_ENT_HDR + HK_KS_SEAL_OVERHEAD + arg->ptlen, i;
    hk_ks_ent_names *all;
    char name[HK_KS_ENT_NAME_LEN];
    hk_err e;

    all = OPENSSL_malloc(sizeof(*all));
    rec = OPENSSL_malloc(reclen);
    e = HK_ERR_NOMEM;
    if (all == NULL || rec == NULL)
        goto done;
    hk_ks_sweep_temps(dfd); /* no write is in flight: we hold the lock */
    if ((e = hk_ks_ent_list(k, dfd, k->per_tag ? arg->tag : NULL, all)) !=
        HK_OK)
        goto done;
    e = HK_ERR_TOO_BIG;
    if (all->n >= k->max || (e = hk_ks_ent_id(id)) != HK_OK)
        goto done;
    snprintf(name, sizeof(name), "%s-", arg->tag);
    for (i = 0; i < HK_KS_ENT_ID; i++)
        snprintf(name + strlen(arg->tag) + 1 + 2 * i, 3, "%02x", id[i]);
    strcat(name, k->ext);
    if ((e = hk_ks_ent_seal(ks, k, name, id, arg->field, arg->pt, arg->ptlen,
                            rec)) == HK_OK)
        e = hk_ks_write_file(dfd, name, rec, reclen);
done:
    OPENSSL_free(all);
    OPENSSL_free(rec);
    return e;
}

static void hk_ks_ent_arg_init(hk_ks_ent_arg *arg, const char *tag,
                               unsigned long field, size_t ptlen)
{
    memset(arg, 0, sizeof(*arg));
    arg->tag = tag;
    arg->field = field;
    arg->ptlen = ptlen;
}

hk_err hk_ks_ent_put(hk_ks *ks, const hk_ks_ent_kind *k, const char *tag,
                     unsigned long field, const unsigned char *pt, size_t ptlen)
{
    hk_ks_ent_arg arg;

    if (ks == NULL || k == NULL || tag == NULL || pt == NULL || ptlen < 1 ||
        strlen(tag) < 1 || strlen(tag) > HK_KS_ENT_TAG_MAX)
        return HK_ERR_ARG;
    hk_ks_ent_arg_init(&arg, tag, field, ptlen);
    arg.pt = pt;
    return hk_ks_ent_locked(ks, k, 1, hk_ks_ent_put_op, &arg);
}

/* Reads, removes (durably, before it is opened: from here on it is this
 * call's, used once or lost) and opens one entry. An entry that cannot be
 * read or opened is removed the same way: HK_ERR_DECODE, try the next.
 * HK_ERR_NOT_FOUND: someone else removed it meanwhile (not ours to use). */
static hk_err hk_ks_ent_take_one(hk_ks *ks, const hk_ks_ent_kind *k, int dfd,
                                 hk_ks_ent_arg *arg, const char *name)
{
    unsigned char id[HK_KS_ENT_ID], *rec = NULL;
    size_t reclen = 0;
    hk_err e, u;

    e = hk_ks_read_file(dfd, name,
                        HK_KS_ENT_HDR + HK_KS_SEAL_OVERHEAD + arg->ptlen + 1,
                        &rec, &reclen);
    if (e == HK_ERR_NOT_FOUND)
        return e;
    if (e != HK_OK && e != HK_ERR_TOO_BIG && e != HK_ERR_IO)
        goto done;
    if ((u = arg->deferred ? hk_ks_retire(dfd, name)
                           : hk_ks_unlink(dfd, name)) != HK_OK) {
        e = u; /* NOT_FOUND: another taker's; else maybe still on disk */
        goto done;
    }
    if (e == HK_OK)
        e = hk_ks_ent_parse(k, name, arg->tag, id)
                ? hk_ks_ent_open(ks, k, name, id, arg->field, rec, reclen,
                                 arg->out, arg->ptlen)
                : HK_ERR_DECODE;
    if (e == HK_OK) {
        arg->found = 1;
        snprintf(arg->name, sizeof(arg->name), "%s", name);
    } else {
        e = HK_ERR_DECODE; /* removed, unusable: the next one */
    }
done:
    if (rec != NULL)
        OPENSSL_clear_free(rec, reclen);
    return e;
}

static hk_err hk_ks_ent_take_op(hk_ks *ks, const hk_ks_ent_kind *k, int dfd,
                                void *varg)
{
    hk_ks_ent_arg *arg = varg;
    hk_ks_ent_names *all;
    size_t i, j;
    hk_err e;

    if ((all = OPENSSL_malloc(sizeof(*all))) == NULL)
        return HK_ERR_NOMEM;
    if ((e = hk_ks_ent_list(k, dfd, arg->tag, all)) != HK_OK)
        goto done;
    for (i = 0; i < all->n && !arg->found; i++) {
        /* the newest first when the kind asks for it */
        j = k->newest_first ? all->n - 1 - i : i;
        e = hk_ks_ent_take_one(ks, k, dfd, arg, all->name[j]);
        if (e != HK_OK && e != HK_ERR_NOT_FOUND && e != HK_ERR_DECODE)
            goto done;
    }
    e = arg->found ? HK_OK : HK_ERR_NOT_FOUND;
done:
    OPENSSL_free(all);
    return e;
}

hk_err hk_ks_ent_take(hk_ks *ks, const hk_ks_ent_kind *k, const char *tag,
                      unsigned long field, unsigned char *pt, size_t ptlen,
                      char name[HK_KS_ENT_NAME_LEN], int deferred)
{
    hk_ks_ent_arg arg;
    hk_err e;

    if (ks == NULL || k == NULL || tag == NULL || pt == NULL || ptlen < 1)
        return HK_ERR_ARG;
    hk_ks_ent_arg_init(&arg, tag, field, ptlen);
    arg.out = pt;
    arg.deferred = deferred;
    e = hk_ks_ent_locked(ks, k, 0, hk_ks_ent_take_op, &arg);
    if (e != HK_OK)
        OPENSSL_cleanse(pt, ptlen);
    else if (name != NULL)
        memcpy(name, arg.name, HK_KS_ENT_NAME_LEN);
    return e;
}

/* The kind's directory, opened under the handle's mutex. */
static hk_err hk_ks_ent_dir_open(hk_ks *ks, const hk_ks_ent_kind *k, int *dfd)
{
    hk_err e;

    *dfd = -1;
    if (ks == NULL || k == NULL)
        return HK_ERR_ARG;
    pthread_mutex_lock(&ks->mu);
    e = hk_ks_ent_dir(ks, k, 0, dfd);
    pthread_mutex_unlock(&ks->mu);
    return e;
}

hk_err hk_ks_ent_sync(hk_ks *ks, const hk_ks_ent_kind *k)
{
    int dfd;
    hk_err e = hk_ks_ent_dir_open(ks, k, &dfd);

    if (e == HK_OK && fsync(dfd) != 0)
        e = HK_ERR_IO;
    if (dfd >= 0)
        close(dfd);
    return e;
}

void hk_ks_ent_sweep(hk_ks *ks, const hk_ks_ent_kind *k)
{
    int dfd;

    if (hk_ks_ent_dir_open(ks, k, &dfd) == HK_OK)
        hk_ks_sweep_spent(dfd);
    if (dfd >= 0)
        close(dfd);
}

static hk_err hk_ks_ent_drop_op(hk_ks *ks, const hk_ks_ent_kind *k, int dfd,
                                void *varg)
{
    hk_ks_ent_names *all;
    size_t i;
    hk_err e, u;

    (void)ks;
    if ((all = OPENSSL_malloc(sizeof(*all))) == NULL)
        return HK_ERR_NOMEM;
    if ((e = hk_ks_ent_list(k, dfd, varg, all)) == HK_OK)
        for (i = 0; i < all->n; i++)
            if ((u = hk_ks_unlink(dfd, all->name[i])) != HK_OK &&
                u != HK_ERR_NOT_FOUND)
                e = u;
    OPENSSL_free(all);
    return e;
}

hk_err hk_ks_ent_drop(hk_ks *ks, const hk_ks_ent_kind *k, const char *tag)
{
    hk_err e;

    if (ks == NULL || k == NULL || tag == NULL)
        return HK_ERR_ARG;
    e = hk_ks_ent_locked(ks, k, 0, hk_ks_ent_drop_op, (void *)tag);
    return e == HK_ERR_NOT_FOUND ? HK_OK : e;
}

hk_err hk_ks_ent_count(hk_ks *ks, const hk_ks_ent_kind *k, const char *tag,
                       size_t *n)
{
    hk_ks_ent_names *all;
    int dfd = -1;
    hk_err e;

    if (ks == NULL || k == NULL || n == NULL)
        return HK_ERR_ARG;
    *n = 0;
    if ((all = OPENSSL_malloc(sizeof(*all))) == NULL)
        return HK_ERR_NOMEM;
    pthread_mutex_lock(&ks->mu);
    e = hk_ks_ent_dir(ks, k, 0, &dfd);
    if (e == HK_OK && (e = hk_ks_ent_list(k, dfd, tag, all)) == HK_OK)
        *n = all->n;
    else if (e == HK_ERR_NOT_FOUND)
        e = HK_OK; /* no directory yet: empty */
    pthread_mutex_unlock(&ks->mu);
    if (dfd >= 0)
        close(dfd);
    OPENSSL_free(all);
    return e;
}
