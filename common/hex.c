/* Lowercase hex, strict in both directions (one encoding per value). */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/hex.h"

void hk_hex(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = 0;
}

static int hk_unhex_digit(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1; /* uppercase is refused: one encoding per value */
}

/* Strict lowercase hex of exactly 2*len chars. */
int hk_unhex(const char *in, size_t inlen, unsigned char *out, size_t len)
{
    size_t i;

    if (inlen != 2 * len)
        return 0;
    for (i = 0; i < len; i++) {
        int hi = hk_unhex_digit(in[2 * i]), lo = hk_unhex_digit(in[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return 0;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 1;
}

char *hk_b64_encode(const unsigned char *in, size_t len)
{
    size_t n = 4 * ((len + 2) / 3);
    char *out;

    if (len > (size_t)1 << 28 || (out = OPENSSL_malloc(n + 1)) == NULL)
        return NULL;
    if (EVP_EncodeBlock((unsigned char *)out, in, (int)len) != (int)n) {
        OPENSSL_free(out);
        return NULL;
    }
    out[n] = 0;
    return out;
}

int hk_b64_decode(const char *in, size_t inlen, size_t max, unsigned char **out,
                  size_t *outlen)
{
    static const char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char *buf;
    size_t pad = 0, i, n;
    char *again;
    int ok;

    if (in == NULL || out == NULL || outlen == NULL || inlen == 0 ||
        inlen % 4 != 0 || inlen > (size_t)1 << 28)
        return 0;
    if (in[inlen - 1] == '=')
        pad = in[inlen - 2] == '=' ? 2 : 1;
    for (i = 0; i < inlen - pad; i++)
        if (in[i] == 0 || strchr(abc, in[i]) == NULL)
            return 0;
    n = inlen / 4 * 3 - pad;
    if (n > max || (buf = OPENSSL_malloc(inlen / 4 * 3)) == NULL)
        return 0;
    ok = EVP_DecodeBlock(buf, (const unsigned char *)in, (int)inlen) ==
         (int)(inlen / 4 * 3);
    /* canonical: encoding the result again gives the input */
    again = ok ? hk_b64_encode(buf, n) : NULL;
    ok = again != NULL && memcmp(again, in, inlen) == 0;
    OPENSSL_free(again);
    if (!ok) {
        OPENSSL_free(buf);
        return 0;
    }
    *out = buf;
    *outlen = n;
    return 1;
}
