/* The server's one-time setup records (ring-Pedersen parameters, zk.h).
 *
 * Owns two record formats:
 *  - the public setup record the server publishes (N~, s, t and the Pi^prm
 *    proof); a client decodes it with hk_setup_decode, which verifies the
 *    proof (~250 ms) and yields parameters it can cache and reuse;
 *  - the secret setup record the server keeps (the safe primes, t and
 *    lambda), which it must seal before storing.
 * Both parsers are strict like the message codec (codec.h). */
#ifndef HK_SETUP_H
#define HK_SETUP_H

#include "mpc/zk.h"

/* Public record with a fresh Pi^prm proof. */
HK_WUR hk_err hk_setup_encode(const hk_rped_secret *sec, unsigned char **out,
                              size_t *len);
/* Decodes and verifies a public record: HK_ERR_PARAMS if the proof fails. */
HK_WUR hk_err hk_setup_decode(const unsigned char *in, size_t len,
                              hk_rped **out);
/* Secret record (contains the factorisation: seal it). */
HK_WUR hk_err hk_setup_secret_encode(const hk_rped_secret *sec,
                                     unsigned char **out, size_t *len);
HK_WUR hk_err hk_setup_secret_decode(const unsigned char *in, size_t len,
                                     hk_rped_secret **out);

#endif
