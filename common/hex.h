/* Lowercase hexadecimal encoding, strict in both directions. */
#ifndef HK_HEX_H
#define HK_HEX_H

#include <stddef.h>

/* Lowercase hex of len bytes into out[2*len + 1]. */
void hk_hex(const unsigned char *in, size_t len, char *out);
/* Strict: exactly 2*len lowercase hex digits; 1 on success. */
int hk_unhex(const char *in, size_t inlen, unsigned char *out, size_t len);

#endif
