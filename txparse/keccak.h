/* Keccak-256, Ethereum's hash (the original Keccak padding 0x01 ... 0x80,
 * not FIPS 202 SHA3-256's 0x06 ... 0x80), built on Nettle's Keccak-f[1600]
 * permutation (sha3_permute): the permutation is a kept library's, only the
 * sponge (rate 136 bytes, capacity 512 bits) is here. */
#ifndef HK_KECCAK_H
#define HK_KECCAK_H

#include <stddef.h>

#define HK_KECCAK256_LEN 32

/* out = Keccak-256(in[0..len)); in may be NULL when len is 0. */
void hk_keccak256(const unsigned char *in, size_t len,
                  unsigned char out[HK_KECCAK256_LEN]);

#endif
