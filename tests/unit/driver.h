/* In-process driver for the protocol state machines: runs both parties in
 * one thread, passing the messages, and measures each step's CPU time and
 * each message's size. Shared by the unit tests and bench/mpc-bench. */
#ifndef HK_TEST_DRIVER_H
#define HK_TEST_DRIVER_H

#include "mpc/keygen.h"
#include "mpc/refresh.h"
#include "mpc/sign.h"

#define HK_DRIVE_MAX_MSGS 8

typedef struct {
    double p1_ms, p2_ms;     /* CPU time of each party (calling thread only) */
    double critical_ms;      /* steps the client waits for, in order */
    double critical_wall_ms; /* the same steps in wall-clock time: counts
                              * the helper threads of mpc/par.h and of the
                              * prime search, which CPU time does not */
    double offline_ms;       /* P2 precomputation before the session */
    size_t bytes[HK_DRIVE_MAX_MSGS];
    int nmsgs;
} hk_drive_stats;

/* Fills sid/kid with fresh random ids. */
void hk_drive_ids(unsigned char *sid, unsigned char *kid);

/* rs: the server's setup; P1 uses its public part. */
hk_err hk_drive_keygen(hk_curve_id curve, int pbits, const hk_rped_secret *rs,
                       hk_share **s1, hk_share **s2, hk_drive_stats *st);
/* The same with P1's Paillier key given (*p1key, taken; NULL or *p1key
 * NULL: generated, as hk_drive_keygen): the client's prime pool. */
hk_err hk_drive_keygen_with(hk_curve_id curve, int pbits,
                            const hk_rped_secret *rs, hk_paillier_sk **p1key,
                            hk_share **s1, hk_share **s2, hk_drive_stats *st);
/* precompute: let P2 compute its encryption randomness before sign.3 (off
 * the critical path, counted as offline_ms). */
hk_err hk_drive_sign(const hk_share *s1, const hk_share *s2,
                     const unsigned char *dig, size_t dlen, int precompute,
                     unsigned char sig[HK_SIG_LEN], hk_drive_stats *st);
hk_err hk_drive_refresh(const hk_share *s1, const hk_share *s2, int pbits,
                        const hk_rped_secret *rs, hk_share **n1, hk_share **n2,
                        hk_drive_stats *st);
/* The same with P1's new Paillier key given (as hk_drive_keygen_with). */
hk_err hk_drive_refresh_with(const hk_share *s1, const hk_share *s2, int pbits,
                             const hk_rped_secret *rs, hk_paillier_sk **p1key,
                             hk_share **n1, hk_share **n2, hk_drive_stats *st);

/* A batch of n presignatures (presign.h): p1[i] and p2[i] are the two
 * sides' records of presignature i. */
hk_err hk_drive_presign(const hk_share *s1, const hk_share *s2, size_t n,
                        hk_presig *p1, hk_presig *p2, hk_drive_stats *st);
/* The online sign on one presignature (sign.1p, sign.4, sign.5); rn: P2's
 * randomness made ahead (counted as offline_ms), as a stored presignature
 * has it. */
hk_err hk_drive_sign_presigned(const hk_share *s1, const hk_share *s2,
                               const hk_presig *p1, const hk_presig *p2,
                               const unsigned char *dig, size_t dlen,
                               unsigned char sig[HK_SIG_LEN],
                               hk_drive_stats *st);

/* The p-quantile (0..1) of v[0..n), n >= 1 (sorts v). */
double hk_drive_pct(double *v, int n, double p);
double hk_drive_cpu_ms(void);
double hk_drive_wall_ms(void);

#endif
