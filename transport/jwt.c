/* JWT policy on libjwt (see jwt.h for the traps it avoids). */
#include <errno.h>
#include <string.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/crypto.h>

#include "transport/jwt.h"

struct hk_jwt_verifier {
    jwt_alg_t alg;
    unsigned char *key;
    size_t keylen;
    char iss[256], aud[256];
    long skew;
};

static jwt_alg_t hk_jwt_alg(const char *alg)
{
    if (alg == NULL)
        return JWT_ALG_INVAL;
    if (strcmp(alg, "ES256") == 0)
        return JWT_ALG_ES256;
    if (strcmp(alg, "RS256") == 0)
        return JWT_ALG_RS256;
    if (strcmp(alg, "HS256") == 0)
        return JWT_ALG_HS256;
    return JWT_ALG_INVAL;
}

int hk_sub_valid(const char *s)
{
    size_t i, n;

    if (s == NULL)
        return 0;
    n = strlen(s);
    if (n < 1 || n > HK_JWT_SUB_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || strchr("._@:+-", c) != NULL))
            return 0;
    }
    return 1;
}

static int hk_copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = src == NULL ? 0 : strlen(src);

    if (n == 0 || n >= cap)
        return 0;
    memcpy(dst, src, n + 1);
    return 1;
}

hk_err hk_jwt_verifier_new(const char *alg, const void *key, size_t keylen,
                           const char *iss, const char *aud, long skew,
                           hk_jwt_verifier **out)
{
    hk_jwt_verifier *v;

    if (key == NULL || keylen == 0 || keylen > 65536 || out == NULL ||
        skew < 0 || skew > 600)
        return HK_ERR_ARG;
    *out = NULL;
    if ((v = OPENSSL_zalloc(sizeof(*v))) == NULL)
        return HK_ERR_NOMEM;
    v->alg = hk_jwt_alg(alg);
    v->skew = skew;
    if (v->alg == JWT_ALG_INVAL || !hk_copy_str(v->iss, sizeof(v->iss), iss) ||
        !hk_copy_str(v->aud, sizeof(v->aud), aud)) {
        OPENSSL_free(v);
        return HK_ERR_CONFIG;
    }
    if ((v->key = OPENSSL_memdup(key, keylen)) == NULL) {
        OPENSSL_free(v);
        return HK_ERR_NOMEM;
    }
    v->keylen = keylen;
    *out = v;
    return HK_OK;
}

void hk_jwt_verifier_free(hk_jwt_verifier *v)
{
    if (v == NULL)
        return;
    OPENSSL_clear_free(v->key, v->keylen);
    OPENSSL_free(v);
}

/* Compact form only: three base64url parts, bounded length. */
static int hk_jwt_shape_ok(const char *t)
{
    size_t i, n = strnlen(t, HK_JWT_MAX + 1), dots = 0;

    if (n == 0 || n > HK_JWT_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        char c = t[i];

        if (c == '.')
            dots++;
        else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return 0;
    }
    return dots == 2;
}

/* "aud" is a string or an array of strings that must contain ours. */
static int hk_jwt_aud_ok(jwt_t *jwt, const char *aud)
{
    const char *s = jwt_get_grant(jwt, "aud");
    char *js;
    json_t *arr;
    size_t i;
    int ok = 0;

    if (s != NULL)
        return strcmp(s, aud) == 0;
    if ((js = jwt_get_grants_json(jwt, "aud")) == NULL)
        return 0;
    arr = json_loads(js, JSON_REJECT_DUPLICATES, NULL);
    free(js);
    if (json_is_array(arr))
        for (i = 0; i < json_array_size(arr) && !ok; i++)
            ok = json_is_string(json_array_get(arr, i)) &&
                 strcmp(json_string_value(json_array_get(arr, i)), aud) == 0;
    json_decref(arr);
    return ok;
}

/* A numeric claim; *present says whether it exists. */
static int hk_jwt_time(jwt_t *jwt, const char *name, long *v, int *present)
{
    errno = 0;
    *v = jwt_get_grant_int(jwt, name);
    if (errno == ENOENT) {
        *present = 0;
        return 1;
    }
    *present = 1;
    return errno == 0;
}

static hk_err hk_jwt_claims(const hk_jwt_verifier *v, jwt_t *jwt, long now,
                            char *sub, long *exp_out)
{
    const char *iss = jwt_get_grant(jwt, "iss"), *s = jwt_get_grant(jwt, "sub");
    long exp, nbf;
    int has_exp, has_nbf;

    /* The pinned algorithm: after the key check, never instead of it. */
    if (jwt_get_alg(jwt) != v->alg)
        return HK_ERR_AUTH;
    /* exp - skew, not exp + skew: a huge exp must not overflow. */
    if (!hk_jwt_time(jwt, "exp", &exp, &has_exp) || !has_exp ||
        now - v->skew > exp)
        return HK_ERR_AUTH;
    if (!hk_jwt_time(jwt, "nbf", &nbf, &has_nbf) ||
        (has_nbf && now + v->skew < nbf))
        return HK_ERR_AUTH;
    if (iss == NULL || strcmp(iss, v->iss) != 0 || !hk_jwt_aud_ok(jwt, v->aud))
        return HK_ERR_AUTH;
    if (!hk_sub_valid(s))
        return HK_ERR_AUTH;
    memcpy(sub, s, strlen(s) + 1);
    if (exp_out != NULL)
        *exp_out = exp;
    return HK_OK;
}

hk_err hk_jwt_verify(const hk_jwt_verifier *v, const char *token, long now,
                     char *sub, long *exp)
{
    jwt_t *jwt = NULL;
    hk_err e;

    if (v == NULL || token == NULL || sub == NULL)
        return HK_ERR_ARG;
    if (!hk_jwt_shape_ok(token))
        return HK_ERR_AUTH;
    /* Always with the configured key: NULL would accept any signature. */
    if (jwt_decode(&jwt, token, v->key, (int)v->keylen) != 0 || jwt == NULL)
        return HK_ERR_AUTH;
    e = hk_jwt_claims(v, jwt, now, sub, exp);
    jwt_free(jwt);
    return e;
}

hk_err hk_jwt_mint(const char *alg, const void *key, size_t keylen,
                   const char *iss, const char *aud, const char *sub, long now,
                   long ttl, char **out)
{
    jwt_alg_t a = hk_jwt_alg(alg);
    jwt_t *jwt = NULL;
    hk_err e = HK_ERR_CRYPTO;

    if (key == NULL || keylen == 0 || iss == NULL || aud == NULL ||
        out == NULL || ttl <= 0 || a == JWT_ALG_INVAL || !hk_sub_valid(sub))
        return HK_ERR_ARG;
    if (jwt_new(&jwt) != 0)
        return HK_ERR_NOMEM;
    if (jwt_add_grant(jwt, "iss", iss) || jwt_add_grant(jwt, "aud", aud) ||
        jwt_add_grant(jwt, "sub", sub) || jwt_add_grant_int(jwt, "iat", now) ||
        jwt_add_grant_int(jwt, "nbf", now) ||
        jwt_add_grant_int(jwt, "exp", now + ttl) ||
        jwt_set_alg(jwt, a, key, (int)keylen))
        goto done;
    if ((*out = jwt_encode_str(jwt)) != NULL)
        e = HK_OK;
done:
    jwt_free(jwt);
    return e;
}
