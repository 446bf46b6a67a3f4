/* Lowercase hexadecimal encoding, strict in both directions. */
#ifndef HK_HEX_H
#define HK_HEX_H

#include <stddef.h>

/* Lowercase hex of len bytes into out[2*len + 1]. */
void hk_hex(const unsigned char *in, size_t len, char *out);
/* Strict: exactly 2*len lowercase hex digits; 1 on success. */
int hk_unhex(const char *in, size_t inlen, unsigned char *out, size_t len);

/* Standard base64 (RFC 4648 section 4, padded, no line breaks): the
 * encoding of len bytes into a new NUL-terminated string (OPENSSL_free),
 * NULL when out of memory. */
char *hk_b64_encode(const unsigned char *in, size_t len);
/* Strict: only the canonical padded encoding (no whitespace, zero pad
 * bits); *out (OPENSSL_free) and *outlen on success, 1; 0 otherwise or
 * when the decoded value would exceed `max` bytes. */
int hk_b64_decode(const char *in, size_t inlen, size_t max, unsigned char **out,
                  size_t *outlen);

#endif
