/* Stored objects: X.509 certificates and data objects (C_CreateObject,
 * C_DestroyObject), kept as token objects in the keystore's public object
 * record (hk_ks_objects_*, which also parses it). Each object is its attribute
 * list as given, completed with defaults (and, for a certificate, CKA_SUBJECT,
 * CKA_ISSUER and CKA_SERIAL_NUMBER from CKA_VALUE when absent).
 *
 * Record: "HKO1" | u32 next id | u32 count | per object: u32 id | u32
 * attribute count | per attribute: u64 type | u32 length | value (all
 * big-endian). Handles: slot, HK_P11_OBJ_BIT, id. */
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "pkcs11/hk_p11.h"

#define HK_OBJ_MAGIC "HKO1"

typedef struct {
    unsigned char *buf;
    size_t len, cap;
} hk_p11_wbuf;

static int hk_p11_put(hk_p11_wbuf *w, const void *p, size_t n)
{
    unsigned char *g;

    if (w->len + n > w->cap) {
        if ((g = realloc(w->buf, 2 * (w->len + n) + 64)) == NULL)
            return 0;
        w->buf = g;
        w->cap = 2 * (w->len + n) + 64;
    }
    if (n > 0)
        memcpy(w->buf + w->len, p, n);
    w->len += n;
    return 1;
}

static int hk_p11_put_u(hk_p11_wbuf *w, uint64_t v, int bytes)
{
    unsigned char b[8];
    int i;

    for (i = 0; i < bytes; i++)
        b[i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
    return hk_p11_put(w, b, (size_t)bytes);
}

/* An object of the keystore's record form as PKCS#11 attributes. */
static void hk_p11_obj_from_ks(const hk_ks_obj *k, hk_p11_obj *o)
{
    size_t i;

    o->id = k->id;
    o->n = k->n;
    for (i = 0; i < k->n; i++) {
        o->a[i].type = (CK_ATTRIBUTE_TYPE)k->a[i].type;
        o->a[i].pValue = (void *)k->a[i].val;
        o->a[i].ulValueLen = (CK_ULONG)k->a[i].len;
    }
}

/* Parses a record (hk_ks_objects_parse): objects into a new array. */
static int hk_p11_rec_parse(const unsigned char *rec, size_t len,
                            uint32_t *next, hk_p11_obj **objs, size_t *n)
{
    hk_ks_obj *ko = NULL;
    size_t i;

    *objs = NULL;
    if (hk_ks_objects_parse(rec, len, next, &ko, n) != HK_OK)
        return 0;
    if (*n > 0 && (*objs = calloc(*n, sizeof(**objs))) == NULL) {
        OPENSSL_free(ko);
        *n = 0;
        return 0;
    }
    for (i = 0; i < *n; i++)
        hk_p11_obj_from_ks(&ko[i], &(*objs)[i]);
    OPENSSL_free(ko);
    return 1;
}

static int hk_p11_obj_write(hk_p11_wbuf *w, const hk_p11_obj *o)
{
    size_t i;
    int ok = hk_p11_put_u(w, o->id, 4) && hk_p11_put_u(w, o->n, 4);

    for (i = 0; ok && i < o->n; i++)
        ok = hk_p11_put_u(w, o->a[i].type, 8) &&
             hk_p11_put_u(w, o->a[i].ulValueLen, 4) &&
             hk_p11_put(w, o->a[i].pValue, o->a[i].ulValueLen);
    return ok;
}

typedef struct {
    hk_p11_obj *add; /* append this (id 0: a new id), and/or */
    uint32_t del;    /* remove this id */
    int found;
} hk_p11_edit;

static hk_err hk_p11_rec_edit(const unsigned char *in, size_t inlen,
                              unsigned char **out, size_t *outlen, void *arg)
{
    hk_p11_edit *ed = arg;
    hk_p11_wbuf w = {NULL, 0, 0};
    hk_p11_obj *objs = NULL;
    uint32_t next;
    size_t n, i, keep = 0;
    int ok;

    if (!hk_p11_rec_parse(in, inlen, &next, &objs, &n))
        return HK_ERR_DECODE;
    for (i = 0; i < n; i++)
        keep += objs[i].id != ed->del;
    ed->found = keep != n;
    if (ed->add != NULL && ed->add->id == 0 && next >= HK_P11_SOBJ_BIT) {
        free(objs);
        return HK_ERR_TOO_BIG; /* ids share handle bits with session objs */
    }
    if (ed->add != NULL && ed->add->id == 0)
        ed->add->id = next++; /* else it replaces object ed->del */
    ok = hk_p11_put(&w, HK_OBJ_MAGIC, 4) && hk_p11_put_u(&w, next, 4) &&
         hk_p11_put_u(&w, keep + (ed->add != NULL), 4);
    for (i = 0; ok && i < n; i++)
        if (objs[i].id != ed->del)
            ok = hk_p11_obj_write(&w, &objs[i]);
    if (ok && ed->add != NULL)
        ok = hk_p11_obj_write(&w, ed->add);
    free(objs);
    if (!ok) {
        free(w.buf);
        return HK_ERR_NOMEM;
    }
    *out = w.buf;
    *outlen = w.len;
    return HK_OK;
}

void hk_p11_store_free(hk_p11_slot *sl)
{
    free(sl->objs);
    OPENSSL_free(sl->objrec);
    sl->objs = NULL;
    sl->objrec = NULL;
    sl->nobjs = 0;
}

void hk_p11_store_reload(hk_p11_slot *sl)
{
    unsigned char *rec = NULL;
    size_t len = 0;
    uint32_t next;

    hk_p11_store_free(sl);
    if (sl->cli == NULL ||
        hk_ks_objects_load(hk_client_keystore(sl->cli), &rec, &len) != HK_OK)
        return;
    if (!hk_p11_rec_parse(rec, len, &next, &sl->objs, &sl->nobjs)) {
        OPENSSL_free(rec);
        return;
    }
    sl->objrec = rec;
}

static const CK_ATTRIBUTE *hk_p11_obj_find(const hk_p11_obj *o,
                                           CK_ATTRIBUTE_TYPE t)
{
    size_t i;

    for (i = 0; i < o->n; i++)
        if (o->a[i].type == t)
            return &o->a[i];
    return NULL;
}

int hk_p11_obj_hidden(hk_p11_obj *o)
{
    const CK_ATTRIBUTE *c = hk_p11_obj_find(o, CKA_CLASS);
    CK_ULONG v = 0;

    if (c == NULL || c->ulValueLen != sizeof(v))
        return 0;
    memcpy(&v, c->pValue, sizeof(v)); /* record values are unaligned */
    return v == HK_CKO_KEY_ID;
}

hk_p11_obj *hk_p11_store_get(hk_p11_slot *sl, CK_OBJECT_HANDLE h)
{
    size_t i;

    for (i = 0; !(h & HK_P11_SOBJ_BIT) && i < sl->nobjs; i++)
        if (sl->objs[i].id == (h & (HK_P11_OBJ_BIT - 1)) &&
            !hk_p11_obj_hidden(&sl->objs[i]))
            return &sl->objs[i];
    return NULL;
}

/* The key a hidden key-id object names (label and key id), or NULL. */
static hk_p11_key *hk_p11_id_key(hk_p11_slot *sl, hk_p11_obj *o)
{
    const CK_ATTRIBUTE *l = hk_p11_obj_find(o, CKA_LABEL);
    const CK_ATTRIBUTE *v = hk_p11_obj_find(o, CKA_VALUE);
    size_t i;

    for (i = 0; l != NULL && v != NULL && i < sl->nkeys; i++)
        if (strlen(sl->keys[i].info.label) == l->ulValueLen &&
            memcmp(sl->keys[i].info.label, l->pValue, l->ulValueLen) == 0 &&
            v->ulValueLen == HK_ID_LEN &&
            memcmp(sl->keys[i].info.kid, v->pValue, HK_ID_LEN) == 0)
            return &sl->keys[i];
    return NULL;
}

void hk_p11_store_key_ids(hk_p11_slot *sl)
{
    const CK_ATTRIBUTE *id;
    hk_p11_key *k;
    size_t i;

    for (i = 0; i < sl->nobjs; i++)
        if (hk_p11_obj_hidden(&sl->objs[i]) &&
            (k = hk_p11_id_key(sl, &sl->objs[i])) != NULL &&
            (id = hk_p11_obj_find(&sl->objs[i], CKA_ID)) != NULL &&
            id->ulValueLen <= HK_P11_ID_MAX) {
            memcpy(k->id, id->pValue, id->ulValueLen);
            k->idlen = id->ulValueLen;
        }
}

hk_err hk_p11_store_edit(hk_p11_slot *sl, hk_p11_obj *o, uint32_t del,
                         int *found)
{
    hk_p11_edit ed = {o, del, 0};
    hk_err e =
        hk_ks_objects_update(hk_client_keystore(sl->cli), hk_p11_rec_edit, &ed);

    if (found != NULL)
        *found = ed.found;
    hk_p11_store_reload(sl);
    return e;
}

/* The hidden key-id object of key k: its id, 0 if none. */
static uint32_t hk_p11_key_id_obj(hk_p11_slot *sl, const hk_p11_key *k)
{
    size_t i;

    for (i = 0; i < sl->nobjs; i++)
        if (hk_p11_obj_hidden(&sl->objs[i]) &&
            hk_p11_id_key(sl, &sl->objs[i]) == k)
            return sl->objs[i].id;
    return 0;
}

hk_err hk_p11_store_key_id(hk_p11_slot *sl, const hk_p11_key *k, const void *id,
                           size_t idlen)
{
    static const CK_ULONG cls = HK_CKO_KEY_ID;
    const char *label = k->info.label;
    hk_p11_obj o;

    memset(&o, 0, sizeof(o));
    o.id = hk_p11_key_id_obj(sl, k);
    o.n = 4;
    o.a[0] = (CK_ATTRIBUTE){CKA_CLASS, (void *)&cls, sizeof(cls)};
    o.a[1] = (CK_ATTRIBUTE){CKA_LABEL, (void *)label, strlen(label)};
    o.a[2] = (CK_ATTRIBUTE){CKA_VALUE, (void *)k->info.kid, HK_ID_LEN};
    o.a[3] = (CK_ATTRIBUTE){CKA_ID, (void *)id, idlen};
    return hk_p11_store_edit(sl, &o, o.id, NULL);
}

hk_err hk_p11_store_key_id_drop(hk_p11_slot *sl, const hk_p11_key *k)
{
    uint32_t id = hk_p11_key_id_obj(sl, k);

    return id == 0 ? HK_OK : hk_p11_store_edit(sl, NULL, id, NULL);
}

hk_err hk_p11_obj_pack(const hk_p11_obj *o, unsigned char **buf, size_t *len)
{
    hk_p11_wbuf w = {NULL, 0, 0};

    *buf = NULL;
    if (!hk_p11_obj_write(&w, o)) {
        free(w.buf);
        return HK_ERR_NOMEM;
    }
    if ((*buf = OPENSSL_memdup(w.buf, w.len)) != NULL)
        *len = w.len;
    OPENSSL_cleanse(w.buf, w.len);
    free(w.buf);
    return *buf != NULL ? HK_OK : HK_ERR_NOMEM;
}

hk_err hk_p11_obj_unpack(const unsigned char *buf, size_t len, hk_p11_obj *o)
{
    const unsigned char *p = buf;
    hk_ks_obj ko;
    hk_err e;

    memset(o, 0, sizeof(*o));
    if ((e = hk_ks_object_parse(&p, buf + len, &ko)) != HK_OK)
        return e;
    if (p != buf + len)
        return HK_ERR_DECODE;
    hk_p11_obj_from_ks(&ko, o);
    return HK_OK;
}
