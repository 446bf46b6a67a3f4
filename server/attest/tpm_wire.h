/* TPM 2.0 structures as the server receives them in a device attestation
 * (attest.h): strict parsers of the marshalled bytes (TPM 2.0 Part 2,
 * big-endian), pure and bounded, with no TPM software stack (halfkeyd
 * builds without tpm2-tss). Each parser takes exactly one structure: a
 * size field that disagrees with the bytes, trailing bytes, an unknown
 * algorithm or a field over its bound is HK_ERR_DECODE. Parsed values
 * point into the caller's buffer. */
#ifndef HK_SERVER_TPM_WIRE_H
#define HK_SERVER_TPM_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

/* TPM 2.0 constants used here (Part 2). */
#define HK_TPM_ALG_RSA 0x0001
#define HK_TPM_ALG_AES 0x0006
#define HK_TPM_ALG_SHA256 0x000B
#define HK_TPM_ALG_NULL 0x0010
#define HK_TPM_ALG_ECDSA 0x0018
#define HK_TPM_ALG_ECC 0x0023
#define HK_TPM_ALG_CFB 0x0043
#define HK_TPM_ECC_NIST_P256 0x0003
#define HK_TPMA_FIXEDTPM 0x00000002u
#define HK_TPMA_FIXEDPARENT 0x00000010u
#define HK_TPMA_SENSITIVEDATAORIGIN 0x00000020u
#define HK_TPMA_RESTRICTED 0x00010000u
#define HK_TPMA_DECRYPT 0x00020000u
#define HK_TPMA_SIGN 0x00040000u
#define HK_TPM_GENERATED 0xff544347u
#define HK_TPM_ST_ATTEST_QUOTE 0x8018

#define HK_TPM_NAME_LEN 34     /* nameAlg (SHA-256) || digest */
#define HK_TPM_PUBLIC_MAX 1024 /* a TPM2B_PUBLIC we accept */
#define HK_TPM_ATTEST_MAX 1024 /* a TPMS_ATTEST we accept */
#define HK_TPM_SIG_MAX 512     /* a TPMT_SIGNATURE we accept */

/* A TPMT_PUBLIC of type RSA or ECC. */
typedef struct {
    uint16_t type, name_alg;
    uint32_t attrs;
    uint16_t sym_alg, sym_bits, sym_mode; /* sym_bits, mode 0 for NULL */
    uint16_t scheme, scheme_hash;         /* scheme_hash 0 if none */
    uint16_t rsa_bits;                    /* RSA */
    uint32_t rsa_exponent;                /* RSA: 0 means 65537 */
    uint16_t curve, kdf;                  /* ECC */
    const unsigned char *x, *y;           /* RSA: x is the modulus, y NULL */
    size_t xlen, ylen;
    /* the object's Name: nameAlg || SHA-256(TPMT_PUBLIC) (SHA-256 only) */
    unsigned char name[HK_TPM_NAME_LEN];
} hk_tpm_public;

/* A TPMS_ATTEST of type quote. */
typedef struct {
    const unsigned char *signer, *extra; /* qualifiedSigner, extraData */
    size_t signer_len, extra_len;
    uint64_t clock, firmware;
    uint32_t reset_count, restart_count;
} hk_tpm_quote;

/* A TPMT_SIGNATURE of scheme ECDSA. */
typedef struct {
    uint16_t hash;
    const unsigned char *r, *s;
    size_t rlen, slen;
} hk_tpm_sig;

/* b: a TPM2B_PUBLIC (size, then a TPMT_PUBLIC of exactly that size)
 * with nameAlg SHA-256. */
HK_WUR hk_err hk_tpm_public_parse(const unsigned char *b, size_t n,
                                  hk_tpm_public *out);
/* b: a TPMS_ATTEST (TPM2B_ATTEST's contents) of a TPM2_Quote. */
HK_WUR hk_err hk_tpm_quote_parse(const unsigned char *b, size_t n,
                                 hk_tpm_quote *out);
/* b: a TPMT_SIGNATURE with scheme ECDSA. */
HK_WUR hk_err hk_tpm_sig_parse(const unsigned char *b, size_t n,
                               hk_tpm_sig *out);

#endif
