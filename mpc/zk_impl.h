/* Private to mpc/zk_*.c. */
#ifndef HK_ZK_IMPL_H
#define HK_ZK_IMPL_H

#include "mpc/zk.h"

/* HK_OK if z*G == Y + e*X; HK_ERR_PROOF otherwise (infinity rejects). */
HK_WUR hk_err hk_zk_lin_check(hk_curve *c, const hk_scalar *z,
                              const hk_point *Y, const hk_scalar *e,
                              const hk_point *X);

#endif
