/* Private to mpc/zk_*.c. */
#ifndef HK_ZK_IMPL_H
#define HK_ZK_IMPL_H

#include "mpc/zk.h"

/* HK_OK if z*G == Y + e*X; HK_ERR_PROOF otherwise (infinity rejects). */
HK_WUR hk_err hk_zk_lin_check(hk_curve *c, const hk_scalar *z,
                              const hk_point *Y, const hk_scalar *e,
                              const hk_point *X);

/* The verifier's CRT values for its own ring-Pedersen setup (built with
 * the setup secret, freed with it). */
HK_WUR hk_err hk_ped_crt_new(const hk_rped_secret *sec, hk_ped_crt **out);
void hk_ped_crt_free(hk_ped_crt *c);

#endif
