/* Lowercase hex, strict in both directions (one encoding per value). */
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
