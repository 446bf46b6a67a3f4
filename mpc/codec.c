/* Strict JSON codec on jansson. */
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "mpc/codec.h"

struct hk_msg {
    json_t *obj;
    json_t *seen; /* keys read by getters (parse side), each once */
};

size_t hk_width(int bits) { return (size_t)(bits + 7) / 8; }

/* "v" and "t" are the header's: a field may not overwrite them. */
static int hk_key_reserved(const char *key)
{
    return key != NULL && (strcmp(key, "v") == 0 || strcmp(key, "t") == 0);
}

static hk_err hk_put_hex(json_t *dst, const char *key, const void *b,
                         size_t len)
{
    char *hex = OPENSSL_malloc(2 * len + 1);
    json_t *s;
    int rc;

    if (hex == NULL)
        return HK_ERR_NOMEM;
    hk_hex(b, len, hex);
    s = json_stringn(hex, 2 * len);
    OPENSSL_clear_free(hex, 2 * len + 1);
    if (s == NULL)
        return HK_ERR_NOMEM;
    rc = key != NULL ? json_object_set_new(dst, key, s)
                     : json_array_append_new(dst, s);
    return rc == 0 ? HK_OK : HK_ERR_NOMEM;
}

hk_err hk_msg_new(const char *type, const unsigned char *sid,
                  const unsigned char *kid, hk_msg **out)
{
    hk_msg *m;
    hk_err e = HK_ERR_NOMEM;

    if (type == NULL || out == NULL)
        return HK_ERR_ARG;
    m = OPENSSL_zalloc(sizeof(*m));
    if (m == NULL)
        return HK_ERR_NOMEM;
    m->obj = json_object();
    if (m->obj == NULL ||
        json_object_set_new(m->obj, "v", json_integer(HK_MSG_VERSION)) ||
        json_object_set_new(m->obj, "t", json_string(type)))
        goto fail;
    if (sid != NULL && (e = hk_put_hex(m->obj, "sid", sid, HK_ID_LEN)) != HK_OK)
        goto fail;
    if (kid != NULL && (e = hk_put_hex(m->obj, "kid", kid, HK_ID_LEN)) != HK_OK)
        goto fail;
    *out = m;
    return HK_OK;
fail:
    hk_msg_free(m);
    return e;
}

void hk_msg_free(hk_msg *m)
{
    if (m == NULL)
        return;
    json_decref(m->obj);
    json_decref(m->seen);
    OPENSSL_free(m);
}

const char *hk_msg_type(const hk_msg *m)
{
    return json_string_value(json_object_get(m->obj, "t"));
}

hk_err hk_msg_encode(const hk_msg *m, unsigned char **out, size_t *len)
{
    const size_t flags = JSON_COMPACT | JSON_SORT_KEYS;
    size_t n;

    if (m == NULL || out == NULL || len == NULL)
        return HK_ERR_ARG;
    /* json_dumpb writes straight into our buffer: no copy of the text in
     * jansson's memory (and no free() of a block that jansson's allocator,
     * process-global and maybe replaced by the host, gave out) */
    if ((n = json_dumpb(m->obj, NULL, 0, flags)) == 0)
        return HK_ERR_NOMEM;
    if ((*out = OPENSSL_malloc(n)) == NULL)
        return HK_ERR_NOMEM;
    if (json_dumpb(m->obj, (char *)*out, n, flags) != n) {
        OPENSSL_free(*out);
        *out = NULL;
        return HK_ERR_NOMEM;
    }
    *len = n;
    return HK_OK;
}

/* Looks up a key that must exist and marks it consumed. */
static json_t *hk_take(hk_msg *m, const char *key)
{
    json_t *v = json_object_get(m->obj, key);

    /* A set, not a count: reading a key twice must not stand for reading
     * another. If the insertion fails, hk_msg_finish fails closed. */
    if (v != NULL && m->seen != NULL)
        (void)json_object_set_new(m->seen, key, json_null());
    return v;
}

static hk_err hk_check_id(hk_msg *m, const char *key, const unsigned char *id)
{
    unsigned char got[HK_ID_LEN];
    hk_err e;

    if (id == NULL)
        return HK_OK; /* left for a getter; hk_msg_finish catches extras */
    if ((e = hk_msg_get_bytes(m, key, got, HK_ID_LEN)) != HK_OK)
        return e;
    return memcmp(got, id, HK_ID_LEN) == 0 ? HK_OK : HK_ERR_BINDING;
}

static hk_err hk_msg_parse_any(const unsigned char *in, size_t len, size_t max,
                               int peek, const char *type,
                               const unsigned char *sid,
                               const unsigned char *kid, hk_msg **out)
{
    json_error_t jerr;
    json_t *v, *t;
    hk_msg *m;
    hk_err e = HK_ERR_DECODE;

    if (in == NULL || out == NULL)
        return HK_ERR_ARG;
    *out = NULL;
    if (len > max)
        return HK_ERR_TOO_BIG;
    m = OPENSSL_zalloc(sizeof(*m));
    if (m == NULL)
        return HK_ERR_NOMEM;
    if ((m->seen = json_object()) == NULL) {
        OPENSSL_free(m);
        return HK_ERR_NOMEM;
    }
    m->obj = json_loadb((const char *)in, len, JSON_REJECT_DUPLICATES, &jerr);
    if (m->obj == NULL || !json_is_object(m->obj))
        goto fail;
    v = hk_take(m, "v");
    t = hk_take(m, "t");
    if (!json_is_integer(v) || !json_is_string(t))
        goto fail;
    e = HK_ERR_VERSION;
    if (json_integer_value(v) != HK_MSG_VERSION)
        goto fail;
    if (peek) {
        *out = m;
        return HK_OK;
    }
    e = HK_ERR_MSG_TYPE;
    if (type != NULL && strcmp(json_string_value(t), type) != 0)
        goto fail;
    if ((e = hk_check_id(m, "sid", sid)) != HK_OK ||
        (e = hk_check_id(m, "kid", kid)) != HK_OK)
        goto fail;
    *out = m;
    return HK_OK;
fail:
    hk_msg_free(m);
    return e;
}

hk_err hk_msg_parse(const unsigned char *in, size_t len, size_t max,
                    const char *type, const unsigned char *sid,
                    const unsigned char *kid, hk_msg **out)
{
    return hk_msg_parse_any(in, len, max, 0, type, sid, kid, out);
}

hk_err hk_msg_peek(const unsigned char *in, size_t len, size_t max,
                   hk_msg **out)
{
    return hk_msg_parse_any(in, len, max, 1, NULL, NULL, NULL, out);
}

hk_err hk_msg_finish(hk_msg *m)
{
    if (m == NULL)
        return HK_ERR_ARG;
    return m->seen != NULL &&
                   json_object_size(m->obj) == json_object_size(m->seen)
               ? HK_OK
               : HK_ERR_DECODE;
}

hk_err hk_msg_put_bytes(hk_msg *m, const char *key, const void *b, size_t len)
{
    if (hk_key_reserved(key))
        return HK_ERR_ARG;
    if (m == NULL || key == NULL || (b == NULL && len > 0))
        return HK_ERR_ARG;
    return hk_put_hex(m->obj, key, b, len);
}

static hk_err hk_put_bn_to(json_t *dst, const char *key, const BIGNUM *v,
                           size_t width)
{
    unsigned char *buf;
    hk_err e;

    if (v == NULL || BN_is_negative(v) || (size_t)BN_num_bytes(v) > width)
        return HK_ERR_ARG;
    buf = OPENSSL_malloc(width);
    if (buf == NULL)
        return HK_ERR_NOMEM;
    e = BN_bn2binpad(v, buf, (int)width) == (int)width
            ? hk_put_hex(dst, key, buf, width)
            : HK_ERR_CRYPTO;
    OPENSSL_clear_free(buf, width);
    return e;
}

hk_err hk_msg_put_bn(hk_msg *m, const char *key, const BIGNUM *v, size_t width)
{
    if (hk_key_reserved(key))
        return HK_ERR_ARG;
    if (m == NULL || key == NULL)
        return HK_ERR_ARG;
    return hk_put_bn_to(m->obj, key, v, width);
}

hk_err hk_msg_put_bn_array(hk_msg *m, const char *key, BIGNUM *const *v,
                           size_t n, size_t width)
{
    if (hk_key_reserved(key))
        return HK_ERR_ARG;
    json_t *arr;
    hk_err e = HK_OK;
    size_t i;

    if (m == NULL || key == NULL || v == NULL)
        return HK_ERR_ARG;
    if ((arr = json_array()) == NULL)
        return HK_ERR_NOMEM;
    for (i = 0; i < n && e == HK_OK; i++)
        e = hk_put_bn_to(arr, NULL, v[i], width);
    if (e == HK_OK && json_object_set_new(m->obj, key, arr) != 0)
        return HK_ERR_NOMEM;
    if (e != HK_OK)
        json_decref(arr);
    return e;
}

hk_err hk_msg_put_u32(hk_msg *m, const char *key, unsigned long v)
{
    if (hk_key_reserved(key))
        return HK_ERR_ARG;
    if (m == NULL || key == NULL || v > 0xfffffffful)
        return HK_ERR_ARG;
    return json_object_set_new(m->obj, key, json_integer((json_int_t)v)) == 0
               ? HK_OK
               : HK_ERR_NOMEM;
}

hk_err hk_msg_put_str(hk_msg *m, const char *key, const char *s)
{
    if (hk_key_reserved(key))
        return HK_ERR_ARG;
    if (m == NULL || key == NULL || s == NULL)
        return HK_ERR_ARG;
    return json_object_set_new(m->obj, key, json_string(s)) == 0 ? HK_OK
                                                                 : HK_ERR_NOMEM;
}

hk_err hk_msg_put_point(hk_msg *m, const char *key, const hk_point *p)
{
    if (p == NULL)
        return HK_ERR_ARG;
    return hk_msg_put_bytes(m, key, p->b, HK_POINT_LEN);
}

hk_err hk_msg_put_scalar(hk_msg *m, const char *key, const hk_scalar *s)
{
    if (s == NULL)
        return HK_ERR_ARG;
    return hk_msg_put_bytes(m, key, s->b, HK_SCALAR_LEN);
}

hk_err hk_msg_put_points(hk_msg *m, const char *key, const hk_point *p,
                         size_t n)
{
    if (hk_key_reserved(key))
        return HK_ERR_ARG;
    json_t *arr;
    hk_err e = HK_OK;
    size_t i;

    if (m == NULL || key == NULL || p == NULL)
        return HK_ERR_ARG;
    if ((arr = json_array()) == NULL)
        return HK_ERR_NOMEM;
    for (i = 0; i < n && e == HK_OK; i++)
        e = hk_put_hex(arr, NULL, p[i].b, HK_POINT_LEN);
    if (e == HK_OK && json_object_set_new(m->obj, key, arr) != 0)
        return HK_ERR_NOMEM;
    if (e != HK_OK)
        json_decref(arr);
    return e;
}

static hk_err hk_get_hex_from(json_t *s, void *b, size_t len)
{
    if (!json_is_string(s))
        return HK_ERR_DECODE;
    return hk_unhex(json_string_value(s), json_string_length(s), b, len)
               ? HK_OK
               : HK_ERR_DECODE;
}

hk_err hk_msg_get_bytes(hk_msg *m, const char *key, void *b, size_t len)
{
    if (m == NULL || key == NULL || b == NULL)
        return HK_ERR_ARG;
    return hk_get_hex_from(hk_take(m, key), b, len);
}

hk_err hk_msg_get_var(hk_msg *m, const char *key, void *b, size_t max,
                      size_t *len)
{
    json_t *s;
    size_t n;

    if (m == NULL || key == NULL || b == NULL || len == NULL)
        return HK_ERR_ARG;
    s = hk_take(m, key);
    if (!json_is_string(s))
        return HK_ERR_DECODE;
    n = json_string_length(s) / 2;
    if (n < 1 || n > max)
        return HK_ERR_DECODE;
    if (!hk_unhex(json_string_value(s), json_string_length(s), b, n))
        return HK_ERR_DECODE;
    *len = n;
    return HK_OK;
}

static hk_err hk_get_bn_from(json_t *s, size_t width, BIGNUM **v)
{
    unsigned char *buf;
    hk_err e;

    buf = OPENSSL_malloc(width > 0 ? width : 1);
    if (buf == NULL)
        return HK_ERR_NOMEM;
    if ((e = hk_get_hex_from(s, buf, width)) == HK_OK) {
        BIGNUM *r = BN_bin2bn(buf, (int)width, *v);

        if (r == NULL)
            e = HK_ERR_NOMEM;
        else
            *v = r;
    }
    OPENSSL_clear_free(buf, width > 0 ? width : 1);
    return e;
}

hk_err hk_msg_get_bn(hk_msg *m, const char *key, size_t width, BIGNUM **v)
{
    if (m == NULL || key == NULL || v == NULL)
        return HK_ERR_ARG;
    return hk_get_bn_from(hk_take(m, key), width, v);
}

hk_err hk_msg_get_bn_array(hk_msg *m, const char *key, BIGNUM **v, size_t n,
                           size_t width)
{
    json_t *arr;
    hk_err e = HK_OK;
    size_t i;

    if (m == NULL || key == NULL || v == NULL)
        return HK_ERR_ARG;
    arr = hk_take(m, key);
    if (!json_is_array(arr) || json_array_size(arr) != n)
        return HK_ERR_DECODE;
    for (i = 0; i < n && e == HK_OK; i++)
        e = hk_get_bn_from(json_array_get(arr, i), width, &v[i]);
    return e;
}

hk_err hk_msg_get_u32(hk_msg *m, const char *key, unsigned long *v)
{
    json_t *j;

    if (m == NULL || key == NULL || v == NULL)
        return HK_ERR_ARG;
    j = hk_take(m, key);
    if (!json_is_integer(j) || json_integer_value(j) < 0 ||
        json_integer_value(j) > 0xffffffffLL)
        return HK_ERR_DECODE;
    *v = (unsigned long)json_integer_value(j);
    return HK_OK;
}

hk_err hk_msg_get_str(hk_msg *m, const char *key, char *buf, size_t max)
{
    json_t *j;

    if (m == NULL || key == NULL || buf == NULL || max == 0)
        return HK_ERR_ARG;
    j = hk_take(m, key);
    if (!json_is_string(j) || json_string_length(j) >= max ||
        strlen(json_string_value(j)) != json_string_length(j))
        return HK_ERR_DECODE;
    memcpy(buf, json_string_value(j), json_string_length(j) + 1);
    return HK_OK;
}

hk_err hk_msg_get_point(hk_msg *m, hk_curve *c, const char *key, hk_point *p)
{
    unsigned char b[HK_POINT_LEN];
    hk_err e;

    if (p == NULL)
        return HK_ERR_ARG;
    if ((e = hk_msg_get_bytes(m, key, b, sizeof(b))) != HK_OK)
        return e;
    return hk_point_parse(c, b, sizeof(b), p);
}

hk_err hk_msg_get_scalar(hk_msg *m, hk_curve *c, const char *key, hk_scalar *s)
{
    unsigned char b[HK_SCALAR_LEN];
    hk_err e;

    if (s == NULL)
        return HK_ERR_ARG;
    if ((e = hk_msg_get_bytes(m, key, b, sizeof(b))) == HK_OK)
        e = hk_scalar_parse(c, b, sizeof(b), s);
    OPENSSL_cleanse(b, sizeof(b));
    return e;
}

hk_err hk_msg_get_points(hk_msg *m, hk_curve *c, const char *key, hk_point *p,
                         size_t n)
{
    unsigned char b[HK_POINT_LEN];
    json_t *arr;
    hk_err e = HK_OK;
    size_t i;

    if (m == NULL || key == NULL || p == NULL)
        return HK_ERR_ARG;
    arr = hk_take(m, key);
    if (!json_is_array(arr) || json_array_size(arr) != n)
        return HK_ERR_DECODE;
    for (i = 0; i < n && e == HK_OK; i++)
        if ((e = hk_get_hex_from(json_array_get(arr, i), b, sizeof(b))) ==
            HK_OK)
            e = hk_point_parse(c, b, sizeof(b), &p[i]);
    return e;
}
