/* Keccak-256: the sponge over Nettle's sha3_permute (keccak.h). Bytes are
 * XORed into the 64-bit lanes little-endian by shifts, so the result does
 * not depend on the host's byte order. */
#include <stdint.h>
#include <string.h>

#include <nettle/sha3.h>

#include "txparse/keccak.h"

#define HK_KECCAK256_RATE 136 /* (1600 - 2 * 256) / 8 */

static void keccak_xor(struct sha3_state *st, const unsigned char *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        st->a[i / 8] ^= (uint64_t)p[i] << (8 * (i % 8));
}

void hk_keccak256(const unsigned char *in, size_t len,
                  unsigned char out[HK_KECCAK256_LEN])
{
    struct sha3_state st;
    unsigned char last[HK_KECCAK256_RATE];
    size_t i;

    memset(&st, 0, sizeof(st));
    for (; len >= HK_KECCAK256_RATE; len -= HK_KECCAK256_RATE) {
        keccak_xor(&st, in, HK_KECCAK256_RATE);
        sha3_permute(&st);
        in += HK_KECCAK256_RATE;
    }
    /* Keccak's pad10*1 with the domain byte 0x01 (SHA-3 would use 0x06) */
    memset(last, 0, sizeof(last));
    if (len > 0)
        memcpy(last, in, len);
    last[len] ^= 0x01;
    last[HK_KECCAK256_RATE - 1] ^= 0x80;
    keccak_xor(&st, last, sizeof(last));
    sha3_permute(&st);
    for (i = 0; i < HK_KECCAK256_LEN; i++)
        out[i] = (unsigned char)(st.a[i / 8] >> (8 * (i % 8)));
}
