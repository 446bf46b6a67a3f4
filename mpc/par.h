/* Private to mpc/: a loop over independent items on two threads.
 *
 * Owns the one pattern by which mpc/ uses a second core: the calling
 * thread and one helper thread, created and joined inside the call (no
 * thread, lock or state outlives it, so mpc/ keeps no threads or globals),
 * take the items 0..n-1 in turn from a shared counter and run fn on each
 * with their own BN_CTX. Used where a proof's or a check's repetitions
 * are independent: the N-th roots of the modulus proof and the
 * repetitions of Pi^log* (prover and verifier). Splitting them changes
 * which thread computes a value, never the value: each item writes only
 * its own output slot, reads only shared values that no item writes
 * (keys, Montgomery and constant-time contexts are read-only once made),
 * and the caller reads the results after the join.
 *
 * Items must not use an hk_curve (its BN_CTX is not shared) nor draw
 * randomness (drawn beforehand on the calling thread). If the helper
 * thread cannot be started, every item runs on the calling thread. */
#ifndef HK_PAR_H
#define HK_PAR_H

#include <stddef.h>

#include <openssl/bn.h>

#include "common/error.h"

/* One item: HK_OK or an error, which stops the loop. */
typedef hk_err (*hk_par_fn)(void *arg, size_t i, BN_CTX *ctx);

/* Runs fn(arg, i, ctx) for every i < n. Returns HK_OK if every item
 * did, else the first error an item returned (the other items may or
 * may not have run). secure: the BN_CTXs come from the secure heap (the
 * items handle secrets). */
HK_WUR hk_err hk_par_run(size_t n, hk_par_fn fn, void *arg, int secure);

#endif
