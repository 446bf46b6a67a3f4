/* Fuzz target: JWT verification (transport/jwt.h hk_jwt_verify) with an
 * HS256 and an ES256 verifier at a fixed time. Each input is used as:
 *  1. a compact token, given to both verifiers;
 *  2. the claims (payload) of a token the harness signs with the HS256
 *     secret, so the claim checks are reached;
 *  3. the header of such a token, with valid claims;
 *  4. claims of a token HMAC'd with the ES256 public key as the secret
 *     (the algorithm-confusion attack): the ES256 verifier must refuse it.
 * A verified token must yield a valid subject. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "tests/fuzz/fuzz_common.h"
#include "transport/jwt.h"

#define CLAIMS                                                                 \
    "{\"aud\":\"halfkey\",\"exp\":1700003600,\"iss\":\"halfkeyd\","            \
    "\"sub\":\"alice\"}"
#define HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static hk_jwt_verifier *hs, *es;
static unsigned char *es_pub;
static size_t es_pub_len;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    es_pub = hk_fuzz_fixture("jwt-es256.pub.pem", &es_pub_len);
    if (hk_jwt_verifier_new("HS256", HK_FUZZ_JWT_SECRET,
                            strlen(HK_FUZZ_JWT_SECRET), HK_FUZZ_JWT_ISS,
                            HK_FUZZ_JWT_AUD, 30, &hs) != HK_OK ||
        hk_jwt_verifier_new("ES256", es_pub, es_pub_len, HK_FUZZ_JWT_ISS,
                            HK_FUZZ_JWT_AUD, 30, &es) != HK_OK)
        abort();
    return 0;
}

/* Appends base64url (no padding) of in to out at *pos. */
static void b64url(char *out, size_t *pos, const unsigned char *in, size_t len)
{
    int n = EVP_EncodeBlock((unsigned char *)out + *pos, in, (int)len);
    int i;

    for (i = 0; i < n; i++) {
        char *c = out + *pos + i;

        if (*c == '+')
            *c = '-';
        else if (*c == '/')
            *c = '_';
    }
    while (n > 0 && out[*pos + n - 1] == '=')
        n--;
    *pos += (size_t)n;
    out[*pos] = 0;
}

/* header.claims.HMAC-SHA256(key) as a new string. */
static char *hs_token(const void *hdr, size_t hlen, const void *claims,
                      size_t clen, const void *key, size_t klen)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    char *t = malloc(((hlen + clen) / 3 + 4) * 4 + 64);
    size_t pos = 0;

    if (t == NULL)
        abort();
    b64url(t, &pos, hdr, hlen);
    t[pos++] = '.';
    b64url(t, &pos, claims, clen);
    if (HMAC(EVP_sha256(), key, (int)klen, (unsigned char *)t, pos, mac,
             &maclen) == NULL)
        abort();
    t[pos++] = '.';
    b64url(t, &pos, mac, maclen);
    return t;
}

static hk_err verify(const hk_jwt_verifier *v, const char *token)
{
    char sub[HK_JWT_SUB_MAX + 1];
    long exp = 0;
    hk_err e = hk_jwt_verify(v, token, HK_FUZZ_JWT_NOW, sub, &exp);

    if (e == HK_OK && !hk_sub_valid(sub))
        abort();
    return e;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1), *t;

    if (s == NULL)
        abort();
    memcpy(s, data, size);
    s[size] = 0;
    (void)verify(hs, s);
    (void)verify(es, s);
    free(s);

    t = hs_token(HEADER, strlen(HEADER), data, size, HK_FUZZ_JWT_SECRET,
                 strlen(HK_FUZZ_JWT_SECRET));
    (void)verify(hs, t);
    free(t);

    t = hs_token(data, size, CLAIMS, strlen(CLAIMS), HK_FUZZ_JWT_SECRET,
                 strlen(HK_FUZZ_JWT_SECRET));
    (void)verify(hs, t);
    free(t);

    t = hs_token(HEADER, strlen(HEADER), data, size, es_pub, es_pub_len);
    if (verify(es, t) == HK_OK)
        abort(); /* an HS256 token accepted by the ES256 verifier */
    free(t);
    return 0;
}
