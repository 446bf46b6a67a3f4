/* JWT policy on libjwt (see jwt.h for the traps it avoids). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/libctx.h"
#include "transport/jwt.h"

/* Tokens whose signature this verifier has checked, remembered by their
 * SHA-256: a client presents the same JWT on every connection, and
 * libjwt parses the key's PEM for each verification (about 1 ms of a
 * new connection's server CPU). A token is found only if it is the same
 * bytes, so its signature, issuer, audience, subject and scopes are what
 * was checked; its times (exp, nbf) are checked again at each use. */
#define HK_JWT_SEEN 64

typedef struct {
    unsigned char h[32];
    char sub[HK_JWT_SUB_MAX + 1];
    long exp, nbf;
    int has_nbf, used;
    unsigned scopes;
} hk_jwt_seen;

struct hk_jwt_verifier {
    jwt_alg_t alg;
    unsigned char *key;
    size_t keylen;
    char iss[256], aud[256];
    long skew;
    pthread_mutex_t mu; /* seen, next */
    hk_jwt_seen seen[HK_JWT_SEEN];
    size_t next;
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
    pthread_mutex_init(&v->mu, NULL);
    *out = v;
    return HK_OK;
}

void hk_jwt_verifier_free(hk_jwt_verifier *v)
{
    if (v == NULL)
        return;
    OPENSSL_clear_free(v->key, v->keylen);
    pthread_mutex_destroy(&v->mu);
    OPENSSL_clear_free(v, sizeof(*v));
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

/* --- ES256 low-S -----------------------------------------------------------
 * An ECDSA signature (r, s) has a twin (r, n - s) that verifies too, so a
 * token has two valid encodings: a replay or revocation list keyed on the
 * token text can be bypassed. Only the low-S form (s <= n/2) is accepted,
 * and `halfkeyd token` mints that form. */

#define HK_ES256_SIG_LEN 64

/* The P-256 order n, big-endian. */
static const unsigned char hk_p256_n[32] = {
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17,
    0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51};

static int hk_b64url_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '-' ? 62 : c == '_' ? 63 : -1;
}

/* Unpadded base64url of exactly `len` bytes; 0 if it is not. */
static int hk_b64url_decode(const char *in, size_t n, unsigned char *out,
                            size_t len)
{
    unsigned long acc = 0;
    size_t i, o = 0;
    int bits = 0, v;

    if (n != (len * 4 + 2) / 3)
        return 0;
    for (i = 0; i < n; i++) {
        if ((v = hk_b64url_val(in[i])) < 0)
            return 0;
        acc = (acc << 6) | (unsigned long)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    /* the unused low bits of the last character must be zero */
    return o == len && (acc & ((1ul << bits) - 1)) == 0;
}

static void hk_b64url_encode(const unsigned char *in, size_t len, char *out)
{
    static const char al[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned long acc = 0;
    size_t i;
    int bits = 0;

    for (i = 0; i < len; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            *out++ = al[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        *out++ = al[(acc << (6 - bits)) & 63];
    *out = 0;
}

/* The r || s of an ES256 token's signature part; 0 if malformed. */
static int hk_es256_sig(const char *token, unsigned char sig[64])
{
    const char *p = strrchr(token, '.');

    return p != NULL &&
           hk_b64url_decode(p + 1, strlen(p + 1), sig, HK_ES256_SIG_LEN);
}

/* 1 if s (32 bytes, big-endian) is above n/2: 2s > n, compared as 2s
 * against n without overflow (s < n: the top bit of 2s is a carry). */
static int hk_es256_high_s(const unsigned char s[32])
{
    unsigned char twice[32];
    int i, carry = 0, top = s[0] >> 7;

    for (i = 31; i >= 0; i--) {
        twice[i] = (unsigned char)((s[i] << 1) | carry);
        carry = s[i] >> 7;
    }
    return top || memcmp(twice, hk_p256_n, 32) > 0;
}

/* Rewrites a freshly minted ES256 token's signature to its low-S twin
 * (n - s) if needed; the token keeps its length. */
static hk_err hk_es256_low_s(char *token)
{
    unsigned char sig[HK_ES256_SIG_LEN];
    BIGNUM *n = NULL, *s = NULL;
    hk_err e = HK_ERR_CRYPTO;

    if (!hk_es256_sig(token, sig))
        return HK_ERR_CRYPTO;
    if (!hk_es256_high_s(sig + 32))
        return HK_OK;
    if ((n = BN_bin2bn(hk_p256_n, 32, NULL)) == NULL ||
        (s = BN_bin2bn(sig + 32, 32, NULL)) == NULL || !BN_sub(s, n, s) ||
        BN_bn2binpad(s, sig + 32, 32) != 32)
        goto done;
    hk_b64url_encode(sig, sizeof(sig), strrchr(token, '.') + 1);
    e = HK_OK;
done:
    BN_free(n);
    BN_free(s);
    return e;
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

/* The HK_SCOPE_* bits of the "scope" claim (jwt.h); 0 for a claim that
 * is not a string of at most HK_JWT_SCOPE_MAX bytes. */
static unsigned hk_jwt_scopes(jwt_t *jwt)
{
    static const struct {
        const char *word;
        unsigned bit;
    } words[] = {{"sign", HK_SCOPE_OWNER},
                 {"request", HK_SCOPE_REQUEST},
                 {"approve", HK_SCOPE_APPROVE}};
    const char *s = jwt_get_grant(jwt, "scope"), *end;
    unsigned bits = 0;
    size_t i, n;

    if (s == NULL) {
        char *any = jwt_get_grants_json(jwt, "scope");

        /* absent: an owner's token; present but not a string: refused */
        free(any);
        return any == NULL ? HK_SCOPE_OWNER : 0;
    }
    if (strlen(s) > HK_JWT_SCOPE_MAX)
        return 0;
    for (; *s != 0; s = *end != 0 ? end + 1 : end) {
        end = strchr(s, ' ');
        if (end == NULL)
            end = s + strlen(s);
        n = (size_t)(end - s);
        for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
            if (strlen(words[i].word) == n && strncmp(words[i].word, s, n) == 0)
                bits |= words[i].bit;
    }
    return bits;
}

/* Refuses with `reason` (HK_ERR_AUTH). */
static hk_err hk_jwt_refuse(hk_jwt_why *why, const char *reason)
{
    why->reason = reason;
    return HK_ERR_AUTH;
}

/* The time claims at `now` (exp required, nbf optional). exp - skew, not
 * exp + skew: a huge exp must not overflow. */
static hk_err hk_jwt_times(const hk_jwt_verifier *v, long now, long exp,
                           long nbf, int has_nbf, hk_jwt_why *why)
{
    if (now - v->skew > exp)
        return hk_jwt_refuse(why, "expired");
    if (has_nbf && now + v->skew < nbf)
        return hk_jwt_refuse(why, "not_yet_valid");
    return HK_OK;
}

static hk_err hk_jwt_claims(const hk_jwt_verifier *v, jwt_t *jwt, long now,
                            hk_jwt_seen *got, hk_jwt_why *why)
{
    const char *iss = jwt_get_grant(jwt, "iss"), *s = jwt_get_grant(jwt, "sub");
    int has_exp;
    hk_err e;

    /* the signature verified: the subject is the issuer's word */
    if (hk_sub_valid(s))
        snprintf(why->sub, sizeof(why->sub), "%s", s);
    /* The pinned algorithm: after the key check, never instead of it. */
    if (jwt_get_alg(jwt) != v->alg)
        return hk_jwt_refuse(why, "algorithm");
    if (!hk_jwt_time(jwt, "exp", &got->exp, &has_exp) || !has_exp)
        return hk_jwt_refuse(why, "expired");
    if (!hk_jwt_time(jwt, "nbf", &got->nbf, &got->has_nbf))
        return hk_jwt_refuse(why, "not_yet_valid");
    if ((e = hk_jwt_times(v, now, got->exp, got->nbf, got->has_nbf, why)) !=
        HK_OK)
        return e;
    if (iss == NULL || strcmp(iss, v->iss) != 0)
        return hk_jwt_refuse(why, "issuer");
    if (!hk_jwt_aud_ok(jwt, v->aud))
        return hk_jwt_refuse(why, "audience");
    if (!hk_sub_valid(s))
        return hk_jwt_refuse(why, "subject");
    memcpy(got->sub, s, strlen(s) + 1);
    return HK_OK;
}

/* *hit: 1 if the token (hash h) was verified before; then *got is what
 * was found then. */
static void hk_jwt_seen_find(hk_jwt_verifier *v, const unsigned char h[32],
                             hk_jwt_seen *got, int *hit)
{
    size_t i;

    *hit = 0;
    pthread_mutex_lock(&v->mu);
    for (i = 0; i < HK_JWT_SEEN && !*hit; i++)
        if (v->seen[i].used && CRYPTO_memcmp(v->seen[i].h, h, 32) == 0) {
            *got = v->seen[i];
            *hit = 1;
        }
    pthread_mutex_unlock(&v->mu);
}

static void hk_jwt_seen_add(hk_jwt_verifier *v, const hk_jwt_seen *got)
{
    pthread_mutex_lock(&v->mu);
    v->seen[v->next] = *got;
    v->seen[v->next].used = 1;
    v->next = (v->next + 1) % HK_JWT_SEEN;
    pthread_mutex_unlock(&v->mu);
}

/* The signature and every claim but the times, by libjwt. */
static hk_err hk_jwt_check(const hk_jwt_verifier *v, const char *token,
                           long now, hk_jwt_seen *got, hk_jwt_why *why)
{
    jwt_t *jwt = NULL;
    hk_err e;

    if (v->alg == JWT_ALG_ES256) {
        unsigned char sig[HK_ES256_SIG_LEN];

        /* malleable twin or malformed: before any signature work */
        if (!hk_es256_sig(token, sig) || hk_es256_high_s(sig + 32))
            return hk_jwt_refuse(why, "signature");
    }
    /* Always with the configured key: NULL would accept any signature. */
    if (jwt_decode(&jwt, token, v->key, (int)v->keylen) != 0 || jwt == NULL)
        return hk_jwt_refuse(why, "signature");
    e = hk_jwt_claims(v, jwt, now, got, why);
    if (e == HK_OK && (got->scopes = hk_jwt_scopes(jwt)) == 0)
        e = hk_jwt_refuse(why, "scope");
    jwt_free(jwt);
    return e;
}

/* Every check; *scopes the token's HK_SCOPE_* bits (none: refused). */
static hk_err hk_jwt_verify_in(const hk_jwt_verifier *cv, const char *token,
                               long now, char *sub, long *exp, hk_jwt_why *why,
                               unsigned *scopes)
{
    hk_jwt_verifier *v = (hk_jwt_verifier *)cv; /* its cache only */
    unsigned char h[32];
    hk_jwt_seen got;
    int hit;
    hk_err e;

    if (v == NULL || token == NULL || sub == NULL || why == NULL)
        return HK_ERR_ARG;
    why->reason = "";
    strcpy(why->sub, "-");
    *scopes = 0;
    if (!hk_jwt_shape_ok(token))
        return hk_jwt_refuse(why, "malformed");
    memset(&got, 0, sizeof(got));
    if (EVP_Digest(token, strlen(token), h, NULL, hk_md_sha256(), NULL) != 1)
        return HK_ERR_CRYPTO;
    hk_jwt_seen_find(v, h, &got, &hit);
    if (hit) {
        snprintf(why->sub, sizeof(why->sub), "%s", got.sub);
        e = hk_jwt_times(v, now, got.exp, got.nbf, got.has_nbf, why);
    } else if ((e = hk_jwt_check(v, token, now, &got, why)) == HK_OK) {
        memcpy(got.h, h, sizeof(h));
        hk_jwt_seen_add(v, &got);
    }
    if (e != HK_OK)
        return e;
    memcpy(sub, got.sub, strlen(got.sub) + 1);
    if (exp != NULL)
        *exp = got.exp;
    *scopes = got.scopes;
    return HK_OK;
}

hk_err hk_jwt_verify_why(const hk_jwt_verifier *v, const char *token, long now,
                         char *sub, long *exp, hk_jwt_why *why)
{
    unsigned scopes = 0;
    hk_err e = hk_jwt_verify_in(v, token, now, sub, exp, why, &scopes);

    if (e == HK_OK && !(scopes & HK_SCOPE_OWNER))
        e = hk_jwt_refuse(why, "scope");
    return e;
}

hk_err hk_jwt_verify(const hk_jwt_verifier *v, const char *token, long now,
                     char *sub, long *exp)
{
    hk_jwt_why why;

    return hk_jwt_verify_why(v, token, now, sub, exp, &why);
}

hk_err hk_jwt_verify_scoped(const hk_jwt_verifier *v, const char *token,
                            long now, char *sub, long *exp, unsigned *scopes,
                            hk_jwt_why *why)
{
    if (scopes == NULL)
        return HK_ERR_ARG;
    return hk_jwt_verify_in(v, token, now, sub, exp, why, scopes);
}

hk_err hk_jwt_mint(const char *alg, const void *key, size_t keylen,
                   const char *iss, const char *aud, const char *sub, long now,
                   long ttl, char **out)
{
    return hk_jwt_mint_scoped(alg, key, keylen, iss, aud, sub, NULL, now, ttl,
                              out);
}

hk_err hk_jwt_mint_scoped(const char *alg, const void *key, size_t keylen,
                          const char *iss, const char *aud, const char *sub,
                          const char *scope, long now, long ttl, char **out)
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
        (scope != NULL && jwt_add_grant(jwt, "scope", scope)) ||
        jwt_set_alg(jwt, a, key, (int)keylen))
        goto done;
    if ((*out = jwt_encode_str(jwt)) != NULL)
        e = a == JWT_ALG_ES256 ? hk_es256_low_s(*out) : HK_OK;
    if (e != HK_OK && *out != NULL) {
        free(*out);
        *out = NULL;
    }
done:
    jwt_free(jwt);
    return e;
}
