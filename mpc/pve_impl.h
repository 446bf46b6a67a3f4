/* Private to mpc/pve.c and its tests: the PVE with its parameters open.
 *
 * The public API (mpc/pve.h) is these functions with the parameters of
 * the blob's version and backup key type: version 2 K = 16, T = 32
 * (ECIES) or K = 4, T = 64 (RSA), two threads for encryption; version 1
 * K = 4, T = 64 (verified and decrypted, no longer written). Tests use
 * fewer rows to measure a cheating prover's success rate (K^-T), one
 * thread, version 1 to make old blobs, and the cheating prover itself:
 * with `cheat` non-NULL (T entries < K), row i encrypts the right value
 * only in column cheat[i] and a random scalar in the others, so its blob
 * verifies iff the Fiat-Shamir challenge equals `cheat`, and then does not
 * decrypt. */
#ifndef HK_PVE_IMPL_H
#define HK_PVE_IMPL_H

#include "mpc/pve.h"

#define HK_PVE_T_MAX 64
#define HK_PVE_K_MAX 16

typedef struct {
    unsigned version; /* 1 or 2 */
    unsigned k;       /* 2, 4, 8 or 16 */
    unsigned t;       /* 1 .. HK_PVE_T_MAX, with t * log2(k) <= 256 */
} hk_pve_params;

/* The parameters of `version` for backup keys of `type`. */
void hk_pve_std_params(unsigned version, hk_pve_type type, hk_pve_params *p);

/* `threads`: 1, or 2 (the rows split in two halves, the second half on a
 * thread started and joined inside the call; one thread if it cannot be
 * started). */
HK_WUR hk_err hk_pve_encrypt_ex(const hk_pve_params *p,
                                const unsigned char *cheat, unsigned threads,
                                const hk_pve_pub *bk, hk_curve_id curve,
                                const unsigned char kid[HK_ID_LEN],
                                unsigned long epoch, const hk_scalar *x1,
                                unsigned char **blob, size_t *len);
/* Verifies; on HK_OK the challenge (T entries) is in `e` when non-NULL. */
HK_WUR hk_err hk_pve_verify_ex(const hk_pve_params *p, const hk_pve_pub *bk,
                               hk_curve_id curve,
                               const unsigned char kid[HK_ID_LEN],
                               unsigned long epoch, const hk_point *Q1,
                               const unsigned char *blob, size_t len,
                               unsigned char e[HK_PVE_T_MAX]);
HK_WUR hk_err hk_pve_decrypt_ex(const hk_pve_params *p, const hk_pve_priv *bk,
                                hk_curve_id curve,
                                const unsigned char kid[HK_ID_LEN],
                                unsigned long epoch, const hk_point *Q1,
                                const unsigned char *blob, size_t len,
                                hk_scalar *x1);

#endif
