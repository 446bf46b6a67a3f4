/* Shared pieces of the libFuzzer targets (tests/fuzz/fuzz_*.c) and of the
 * seed generator (gen_seeds.c).
 *
 * Fixtures (tests/fuzz/fixtures/, made by gen_seeds) are real records the
 * targets need: the server's ring-Pedersen setup secret, key shares of both
 * parties on both curves, a keystore token. They are decoded once per
 * process (global state is acceptable in fuzz harnesses only).
 *
 * The state machine targets take several protocol messages in one input,
 * separated by NUL bytes (no valid JSON message holds one), and deliver
 * them in order until one is rejected. Their sessions use fixed ids so the
 * seeds (recorded runs with the same ids) pass the binding checks. */
#ifndef HK_FUZZ_COMMON_H
#define HK_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "mpc/share.h"
#include "mpc/zk.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fixed session and key ids (16 bytes of one value each). */
#define HK_FUZZ_KG_SID 0x11 /* keygen session */
#define HK_FUZZ_KG_KID 0x22 /* keygen key id */
#define HK_FUZZ_SG_SID 0x33 /* sign session (key id: the share's) */
#define HK_FUZZ_RF_SID 0x44 /* refresh session */
void hk_fuzz_id(unsigned char id[HK_ID_LEN], int v);

/* The digest the recorded sign runs sign (P1 targets use it too). */
#define HK_FUZZ_DIGEST "halfkey fuzz digest, 32 bytes!!!"
#define HK_FUZZ_DIGEST_LEN 32

/* JWT policy of the JWT target and its seeds. */
#define HK_FUZZ_JWT_SECRET "halfkey-fuzz-hs256-secret-0123456789"
#define HK_FUZZ_JWT_ISS "halfkeyd"
#define HK_FUZZ_JWT_AUD "halfkey"
#define HK_FUZZ_JWT_NOW 1700000000L

#define HK_FUZZ_KS_PIN "fuzz-pin-1234"
#define HK_FUZZ_KS_LABEL "fuzz"

#define HK_FUZZ_MAX_MSGS 8

/* Splits data at NUL bytes into at most HK_FUZZ_MAX_MSGS parts (the last
 * part takes the rest); returns the count. */
size_t hk_fuzz_split(const uint8_t *data, size_t size,
                     const uint8_t *part[HK_FUZZ_MAX_MSGS],
                     size_t len[HK_FUZZ_MAX_MSGS]);

/* A fixture file's bytes (malloc'd; aborts if it cannot be read). */
unsigned char *hk_fuzz_fixture(const char *name, size_t *len);
/* Path of a fixture (static buffer). */
const char *hk_fuzz_fixture_path(const char *name);
/* The setup secret and the shares, decoded on first use. */
const hk_rped_secret *hk_fuzz_setup(void);
const hk_share *hk_fuzz_share(hk_role role, hk_curve_id curve);

/* Writes size bytes to path (truncating); aborts on failure. */
void hk_fuzz_write(const char *path, const uint8_t *data, size_t size);
/* A new private temporary directory (removed with its files at exit by
 * hk_fuzz_rmtree_at_exit). */
char *hk_fuzz_tmpdir(void);
void hk_fuzz_rmtree_at_exit(const char *dir);

#endif
