/* The qualifying data of a device attestation's quote (issue 22; the
 * protocol: server/attest/attest.h), one definition for the client that
 * asks its TPM for the quote and the server that checks it. */
#ifndef HK_ATTEST_QUAL_H
#define HK_ATTEST_QUAL_H

#include "common/error.h"

#define HK_ATTEST_ID_LEN 16 /* session and key ids (= HK_ID_LEN) */
#define HK_ATTEST_QUAL_LEN 32

/* SHA-256("halfkey/attest/1" || sid || kid): binds a quote to one keygen
 * session and the key it makes, so that a quote of another session (or
 * a replayed one) does not verify. */
HK_WUR hk_err hk_attest_qualifying(const unsigned char *sid,
                                   const unsigned char *kid,
                                   unsigned char out[HK_ATTEST_QUAL_LEN]);

#endif
