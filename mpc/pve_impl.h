/* Private to mpc/pve.c and its tests: the PVE with its parameters open.
 *
 * The public API (mpc/pve.h) is these functions with K = 4, T = 64. Tests
 * use fewer rows to measure a cheating prover's success rate (4^-T), and
 * the cheating prover itself: with `cheat` non-NULL (T entries < K), row i
 * encrypts the right value only in column cheat[i] and a random scalar in
 * the others, so its blob verifies iff the Fiat-Shamir challenge equals
 * `cheat`, and then does not decrypt. */
#ifndef HK_PVE_IMPL_H
#define HK_PVE_IMPL_H

#include "mpc/pve.h"

#define HK_PVE_T_MAX 64

typedef struct {
    unsigned k; /* 2, 4, 8 or 16 */
    unsigned t; /* 1 .. HK_PVE_T_MAX */
} hk_pve_params;

HK_WUR hk_err hk_pve_encrypt_ex(const hk_pve_params *p,
                                const unsigned char *cheat,
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
