/* The client's keystore: one token directory holding the key shares of P1.
 *
 * Owns the token directory and everything in it:
 *
 *   <dir>/token.json         token record: label, scrypt salt and parameters,
 *                            PIN check value, failed-PIN counter
 *   <dir>/setup.json         the server's public setup record (a cache)
 *   <dir>/objects.bin        public PKCS#11 objects (certificates, data)
 *   <dir>/so.json            the SO PIN record (optional, see "SO PIN")
 *   <dir>/escrow.json        the user master key escrowed for the SO
 *   <dir>/.lock              token write lock (see "Concurrency")
 *   <dir>/keys/<label>.json  one key: public metadata in clear, the share
 *                            sealed under the PIN
 *   <dir>/keys/<label>.lock  the key's signing-session lock and record
 *   <dir>/pool/<bits>-<id>.key  Paillier primes for the next keygen or
 *                            refresh, sealed under the PIN, single use
 *                            (see "Prime pool")
 *
 * The directory is mode 0700, every file 0600. Records use the strict codec
 * of mpc/codec.h; every read is bounded (HK_KS_FILE_MAX) and a damaged or
 * tampered file gives HK_ERR_DECODE or HK_ERR_SEAL, never a crash. Every
 * write is atomic: temp file in the same directory, fsync, rename, fsync of
 * the directory.
 *
 * Keys. The PIN gives a master key MK = scrypt(PIN, salt; N=2^17, r=8, p=1)
 * that is never stored (each PIN slot records its own parameters: a slot
 * of a lower cost, from an earlier version, is replaced at the next
 * successful login by a slot at today's cost for the same PIN, through the
 * crash-safe PIN change below; see HK_KS_SCRYPT_LOG2N). token.json holds an
 * AES-256-GCM encryption of a fixed string under HKDF(MK) (the PIN check). A
 * key file seals hk_share_encode's bytes with AES-256-GCM under HKDF(MK, key
 * id), fresh 12-byte nonce; the AAD binds every public field of the file
 * (label, key id, curve, public key, epoch, PIN generation, locked flag, lock
 * reason and time), so none of them can be changed without the PIN.
 *
 * Failed PINs. Each login first increments the counter on disk, then checks
 * the PIN, then resets it on success, so killing the process during the
 * check still counts the try. At HK_KS_MAX_FAILS every login fails with
 * HK_ERR_PIN_LOCKED, the right PIN included, until hk_ks_reset_pin_counter.
 * The counter is a policy of this interface: whoever can write token.json
 * can reset it, and whoever can read it can guess offline at scrypt's cost.
 *
 * Changing the PIN (crash safety). Each key file records the PIN generation
 * ("gen") whose MK sealed it. hk_ks_change_pin (1) writes token.json as
 * "token-pending": the new slot (gen+1, new salt, new check), the old slot,
 * the old MK sealed under the new MK and the new MK sealed under the old;
 * (2) re-seals each key file to gen+1, one atomic rename per file; (3)
 * writes token.json with the new slot only. A crash between (1) and (3)
 * leaves files of both generations and a token from which EITHER PIN yields
 * both MKs, so every key stays readable. The next login finishes the change
 * in the direction of the PIN given: the new PIN rolls forward, the old PIN
 * rolls back (re-seals everything to the old generation).
 *
 * Concurrency. An hk_ks may be shared by threads: each call takes the
 * handle's mutex. Between processes (and handles), every read-modify-write
 * of a file holds an exclusive lock on <dir>/.lock, so counter updates,
 * lock flags and PIN changes are never lost; readers need no lock because
 * files are only ever replaced by rename. Locks are Linux open file
 * description (OFD) locks, fcntl(F_OFD_SETLK): owned by the open file, not
 * the process, so two opens in one process conflict like two processes do
 * (classic fcntl locks would not), and they are released when the holder
 * dies. Signing sessions take hk_ks_key_acquire, a non-blocking OFD lock on
 * keys/<label>.lock: one session per key across threads and processes.
 *
 * SO PIN (ks_so.c). A token may have a security officer PIN, set once
 * without authentication (hk_ks_so_set: PKCS#11 C_InitToken on a token
 * without one) and then needed to re-initialise the token (hk_ks_so_reinit
 * wipes its keys) and to set a new user PIN (hk_ks_so_init_pin: the reset
 * of a forgotten or locked user PIN). so.json holds a random recovery key
 * RK sealed under HKDF(scrypt(SO PIN)), with its own failed-PIN counter;
 * escrow.json holds, for the user PIN's generation, RK sealed under the
 * user's MK and the MK sealed under RK. The escrow exists only after both
 * PINs were given once (hk_ks_so_endorse, `halfkey set-so-pin`), or after
 * the SO set the user PIN; a user PIN change keeps it (the user opens RK
 * with the old MK and escrows the new one, before the change commits).
 * Without an escrow the SO can set a user PIN only on a token without
 * keys. Whoever knows the SO PIN can thus read every share, like the user.
 *
 * TPM-backed tokens (hk_ks_init_tpm; ks_tpm.h). The master key of each
 * PIN slot is then a random key sealed by the TPM: a sealed-data object
 * under the TPM's storage root key whose authorisation is HKDF(salt; PIN),
 * stored in token.json as its marshalled public and private parts with the
 * TCTI that reaches the TPM. Login unseals it; the TPM answers a wrong PIN
 * with an authorisation failure that its dictionary-attack protection
 * counts (HK_ERR_PIN; HK_ERR_PIN_LOCKED while the TPM is locked out, the
 * file counter above still applies too). The object loads only under that
 * TPM's storage root key: a copy of the directory gives HK_ERR_TPM_FOREIGN
 * elsewhere, and no offline guessing. A PIN change seals a new random
 * master key under the new PIN as the pending slot, exactly as above
 * (a login with the old PIN then tries the new slot first: one failure
 * the TPM counts per roll-back). The
 * SO's escrow is refused on such a token (HK_ERR_STATE): it would open the
 * master key without the TPM. The keys, PKCS#11 objects and the sealing
 * of each file are the same as in a file token.
 *
 * Signing-session record (the fail-closed abort lock, DESIGN.md section
 * 2). keys/<label>.lock also holds, in clear so it is readable without
 * the PIN, the state of the key's signing session: one 37-byte line,
 * "HKSIG1 idle    |inflight|aborted  <unix time>", rewritten in place
 * (an empty or missing file, as older versions left it, is idle). The
 * holder of the key's session lock marks it inflight durably (write +
 * fdatasync) BEFORE sending the message that lets the server answer with
 * c3 (the client marks it as soon as the message before that one, sign.1
 * or a presigned sign's open, has left, so that the sync overlaps the
 * server's work; a crash from then on counts as interrupted), and marks it
 * idle only after the signature verified (or when it is
 * certain no c3 was received). A record left behind by a crash, a failed lock
 * write after an abort, or a damaged record: the key counts as locked
 * (hk_ks_key_info says so and hk_ks_load_share refuses it) until
 * hk_ks_unlock_key. An interrupted signature is cleared by a plain unlock; an
 * abort (the sealed flag, or an "aborted" or damaged record) only by a forced
 * one.
 *
 * Prime pool (ks_pool.c; issue 20 item 5). Each entry holds the two
 * primes of one Paillier key made in idle time (`halfkey pool fill`),
 * sealed with AES-256-GCM under HKDF(MK, entry id), the PIN generation and
 * size bound in the AAD. A keygen or refresh takes one entry if the pool
 * has one of its size, else generates the key as before. Taking removes
 * the file durably (unlink, directory fsync) under the token lock before
 * the primes are opened and used: a crash loses an entry, never reuses
 * one. At most HK_KS_POOL_MAX entries. A PIN change does not re-seal them:
 * entries of an earlier generation are removed when next met.
 *
 * Presignatures (ks_presig.c; issue 20 item 1). P1's halves of
 * presignatures made ahead (`halfkey presign`) for processes that sign
 * once and exit: each sealed like a pool entry, the key id bound in its
 * name and AAD, taken (removed) before its k1 is opened and the removal
 * synced before the digest leaves, so a crash loses one and none signs
 * twice. At most HK_KS_PRESIG_MAX per key.
 *
 * Not covered: a local attacker who can write the directory can delete
 * files or restore an older copy of a key file (e.g. one from before a
 * lock); sealing authenticates each file, not the set or its freshness. */
#ifndef HK_KEYSTORE_H
#define HK_KEYSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "mpc/presign.h"
#include "mpc/share.h"
#include "mpc/zk.h"

#define HK_KS_LABEL_MAX 64       /* key labels: [A-Za-z0-9._-], no '.' first */
#define HK_KS_TOKEN_LABEL_MAX 32 /* token label: printable ASCII */
/* New PINs have at least HK_KS_PIN_MIN characters (with scrypt N = 2^17,
 * see ks_impl.h); a token made by an earlier version may have a PIN of
 * HK_KS_PIN_MIN_OLD or more, which still logs in (and can be changed) so
 * that no token is locked out by the upgrade. */
#define HK_KS_PIN_MIN 6
#define HK_KS_PIN_MIN_OLD 4
#define HK_KS_PIN_MAX 256
#define HK_KS_REASON_MAX 128 /* lock reason, printable ASCII */
#define HK_KS_MAX_FAILS 10   /* failed PINs before HK_ERR_PIN_LOCKED */
#define HK_KS_FILE_MAX (1024u * 1024u)
#define HK_KS_MAX_KEYS 4096

typedef struct hk_ks hk_ks;
typedef struct hk_ks_hold hk_ks_hold;

/* The signing-session record of a key (see above). */
typedef enum {
    HK_KS_SIG_IDLE = 0,
    HK_KS_SIG_INFLIGHT = 1, /* a signature was in flight: interrupted */
    HK_KS_SIG_ABORTED = 2,  /* the server's c3 gave an invalid signature */
    HK_KS_SIG_DAMAGED = 3   /* unreadable record: treated as aborted */
} hk_ks_sig;

typedef struct {
    char label[HK_KS_TOKEN_LABEL_MAX + 1];
    unsigned long pin_fails;     /* consecutive wrong PINs */
    unsigned long pin_max_fails; /* limit: locked when fails >= max */
    int pin_locked;
    int pin_change_pending; /* an interrupted PIN change; login ends it */
    int logged_in;          /* this handle */
    int so_set;             /* the token has an SO PIN */
    unsigned long so_fails, so_max_fails;
    int so_locked;
    int so_logged_in;   /* this handle */
    int escrowed;       /* the SO can recover the user PIN's master key */
    int tpm;            /* TPM-backed (hk_ks_init_tpm) */
    char tpm_tcti[256]; /* its TPM's TCTI spec; "" for a file token */
} hk_ks_tokeninfo;

/* The TPM of a TPM-backed token as hk_ks_tpm_status reads it. */
typedef struct {
    char manufacturer[5]; /* TPM2_PT_MANUFACTURER, e.g. "IBM ", "INTC" */
    unsigned long lockout_counter;  /* the TPM's failed authorisations */
    unsigned long max_auth_fail;    /* lockout when the counter reaches it */
    unsigned long lockout_interval; /* seconds to forget one failure */
    int in_lockout;
} hk_ks_tpminfo;

typedef struct {
    char label[HK_KS_LABEL_MAX + 1];
    hk_err err; /* hk_ks_list: HK_OK, or why this entry is unreadable
                 * (then only label is set) */
    unsigned char kid[HK_ID_LEN];
    hk_curve_id curve;
    hk_point pub; /* Q, compressed */
    unsigned long epoch;
    int locked;    /* after an invalid-signature abort, or while the
                    * signing-session record is not idle */
    int sig_state; /* the signing-session record: HK_KS_SIG_* */
    int signing;   /* hk_ks_key_info_live, hk_ks_list: an in-flight record
                    * whose session lock is held now, i.e. a sign in
                    * progress (then not `locked` for it) */
    char lock_reason[HK_KS_REASON_MAX + 1];
    uint64_t lock_time; /* seconds since 1970; 0 when unlocked */
    int verified;       /* 1: authenticated under the PIN (handle logged in);
                         * 0: read from the clear text only */
} hk_ks_keyinfo;

/* The token directory: `dir` if non-NULL and non-empty, else $HALFKEY_HOME,
 * else $XDG_DATA_HOME/halfkey (if absolute), else ~/.local/share/halfkey.
 * *out is a new string (OPENSSL_free). HK_ERR_CONFIG if none applies. */
HK_WUR hk_err hk_ks_dir_resolve(const char *dir, char **out);
/* 1 if `label` is a valid key label: 1..64 chars of [A-Za-z0-9._-], not
 * starting with '.'. */
int hk_ks_label_ok(const char *label);

/* Creates a token in `dir` (see hk_ks_dir_resolve; missing directories are
 * created 0700) with user PIN `pin` (HK_KS_PIN_MIN..MAX bytes) and token
 * label `label`, and returns it open and logged in. HK_ERR_EXISTS if the
 * directory already holds a token or key files. */
HK_WUR hk_err hk_ks_init(const char *dir, const char *pin, const char *label,
                         hk_ks **out);
/* As hk_ks_init, for a TPM-backed token (see "TPM-backed tokens" above):
 * the master key is random and sealed by the TPM reached through `tcti` (a
 * tpm2-tss TCTI spec, recorded in token.json; NULL or "": the default
 * "device:/dev/tpmrm0"). HK_ERR_TPM if this build has no TPM support or
 * the TPM is unreachable; HK_ERR_ARG for a TCTI spec with blanks or
 * longer than 255 characters. */
HK_WUR hk_err hk_ks_init_tpm(const char *dir, const char *pin,
                             const char *label, const char *tcti, hk_ks **out);
/* 1 if this build can make and open TPM-backed tokens. */
int hk_ks_tpm_supported(void);
/* Reaches the token's TPM (HK_ERR_TPM if unreachable; HK_ERR_NOT_FOUND for
 * a file token) and reads its dictionary-attack state. No login needed. */
HK_WUR hk_err hk_ks_tpm_status(hk_ks *ks, hk_ks_tpminfo *out);
/* Opens an existing token, logged out: public data (token info, key list
 * and metadata, setup) is readable. HK_ERR_NOT_FOUND if there is no token;
 * HK_ERR_CONFIG if the directory is not ours or is writable by others. */
HK_WUR hk_err hk_ks_open(const char *dir, hk_ks **out);
/* Wipes the keys and frees the handle. Holds stay valid (release them). */
void hk_ks_close(hk_ks *ks);
/* The token directory of an open handle (owned by it). */
const char *hk_ks_dir(const hk_ks *ks);

/* Checks the PIN and keeps the derived key. HK_ERR_PIN on a wrong PIN
 * (counted), HK_ERR_PIN_LOCKED at the limit, HK_ERR_ARG for a PIN of a
 * length no PIN can have (not counted). Finishes an interrupted PIN change
 * in the direction of the given PIN. Already logged in: checks again. */
HK_WUR hk_err hk_ks_login(hk_ks *ks, const char *pin);
/* Checks the PIN without logging in and WITHOUT counting a wrong one
 * (for `halfkey doctor`): HK_OK, HK_ERR_PIN, HK_ERR_PIN_LOCKED at the
 * limit. It offers nothing a reader of token.json lacks (see "Failed
 * PINs": an offline guess costs the same scrypt); a TPM-backed token's
 * TPM still counts a wrong PIN in its dictionary-attack protection. */
HK_WUR hk_err hk_ks_pin_check(hk_ks *ks, const char *pin);
/* Forgets the derived key. */
void hk_ks_logout(hk_ks *ks);
/* Token label, failed-PIN counter (read fresh from disk), login state. */
HK_WUR hk_err hk_ks_token_info(hk_ks *ks, hk_ks_tokeninfo *out);
/* Checks `old_pin` like hk_ks_login (counted), then re-seals every key under
 * `new_pin` (crash-safe, see above); the handle ends logged in with the new
 * PIN. On any error the handle is logged out; if the change had started
 * (token left pending), the next login with either PIN completes or undoes
 * it. */
HK_WUR hk_err hk_ks_change_pin(hk_ks *ks, const char *old_pin,
                               const char *new_pin);
/* Sets the failed-PIN counter to zero. No check here: the caller must have
 * authenticated the security officer (the PKCS#11 layer's SO PIN). */
HK_WUR hk_err hk_ks_reset_pin_counter(hk_ks *ks);

/* Sets the SO PIN of a token that has none (HK_ERR_EXISTS otherwise) and,
 * if label is not NULL, the token label. No authentication: see above. */
HK_WUR hk_err hk_ks_so_set(hk_ks *ks, const char *so_pin, const char *label);
/* Checks the SO PIN (counted like the user PIN: HK_ERR_PIN, HK_ERR_PIN_LOCKED
 * at the limit; HK_ERR_NOT_FOUND if the token has no SO PIN) and keeps RK:
 * the handle is then SO-logged-in. */
HK_WUR hk_err hk_ks_so_login(hk_ks *ks, const char *so_pin);
void hk_ks_so_logout(hk_ks *ks);
/* Checks `old_pin` as hk_ks_so_login does, then re-seals RK under
 * `new_pin`; the handle ends SO-logged-in. */
HK_WUR hk_err hk_ks_so_change_pin(hk_ks *ks, const char *old_pin,
                                  const char *new_pin);
/* Checks the SO PIN (counted), then deletes every key file and the stored
 * objects and sets the token label. All keys or none: HK_ERR_BUSY if a
 * session holds one. Only the local side: the server's shares of the keys
 * are orphaned (delete them first, hk_client_delete). The user and SO PINs
 * and the escrow are kept. */
HK_WUR hk_err hk_ks_so_reinit(hk_ks *ks, const char *so_pin, const char *label);
/* Escrows the user's master key for the SO: the handle must be logged in
 * as both (HK_ERR_STATE otherwise). */
HK_WUR hk_err hk_ks_so_endorse(hk_ks *ks);
/* Sets a new user PIN (SO-logged-in handle, else HK_ERR_STATE): the user's
 * master key is opened from the escrow and every key re-sealed under the
 * new PIN (as hk_ks_change_pin, crash-safe), the failed-PIN counter reset.
 * Without an escrow only on a token without keys (else HK_ERR_STATE). The
 * handle ends logged out as user. */
HK_WUR hk_err hk_ks_so_init_pin(hk_ks *ks, const char *new_pin);

/* Stores the share of a new key under `label` (needs login; P1 shares
 * only). HK_ERR_EXISTS if the label, or the key id, is already used. */
HK_WUR hk_err hk_ks_store_share(hk_ks *ks, const char *label,
                                const hk_share *s);
/* Replaces a key's share after a refresh (needs login): same key id, curve
 * and public key, greater epoch (else HK_ERR_EPOCH). The old file is
 * authenticated first; the replacement is one atomic rename. A lock is
 * carried over: a refresh is NOT a way out of the abort lock (DESIGN.md
 * section 2: the server sees the refresh's coin toss, so what it learned
 * from aborts applies to the new share too). */
HK_WUR hk_err hk_ks_replace_share(hk_ks *ks, const char *label,
                                  const hk_share *s);
/* Unseals and decodes a key's share (needs login: HK_ERR_STATE otherwise).
 * HK_ERR_KEY_LOCKED if locked, HK_ERR_SEAL if the file fails authentication,
 * HK_ERR_STATE if another handle changed the PIN since this login. Free the
 * share with hk_share_free. */
HK_WUR hk_err hk_ks_load_share(hk_ks *ks, const char *label, hk_share **out);
/* A key's public metadata without unsealing the share. Logged out it is
 * read from the clear text (verified = 0); logged in the file is also
 * authenticated (verified = 1, or HK_ERR_SEAL). */
HK_WUR hk_err hk_ks_key_info(hk_ks *ks, const char *label, hk_ks_keyinfo *out);
/* As hk_ks_key_info for a caller that does not hold the key's session
 * lock (a display, an early refusal): an in-flight record while some
 * thread or process holds that lock is a sign in progress, reported as
 * `signing`, not `locked`; left behind by a crash (nobody holds the lock)
 * it locks the key as always. Not a gate for signing: the session lock's
 * holder checks with hk_ks_key_info, where every in-flight record it
 * finds was left by an earlier session. */
HK_WUR hk_err hk_ks_key_info_live(hk_ks *ks, const char *label,
                                  hk_ks_keyinfo *out);
/* A public key on `curve`, compressed (33 bytes) or uncompressed (65:
 * 0x04 || x || y), checked and written uncompressed to out: the one way
 * the faces get a key's point encodings. HK_ERR_POINT if it is not a
 * point of the curve or y does not belong to x. */
HK_WUR hk_err
hk_ks_pub_uncompressed(hk_curve_id curve, const unsigned char *pt, size_t len,
                       unsigned char out[HK_POINT_UNCOMPRESSED_LEN]);
/* Every key, sorted by label, as hk_ks_key_info_live would give it; an
 * unreadable file is listed with its error in `err`. Free the array with
 * hk_ks_list_free (*out is NULL when *n is 0). */
HK_WUR hk_err hk_ks_list(hk_ks *ks, hk_ks_keyinfo **out, size_t *n);
void hk_ks_list_free(hk_ks_keyinfo *list);
/* Deletes a key (needs login). HK_ERR_BUSY while a session holds it. */
HK_WUR hk_err hk_ks_delete(hk_ks *ks, const char *label);
/* As hk_ks_delete for a caller already holding the key's signing-session
 * lock (hk_ks_key_acquire): the server side can be deleted first with no
 * session starting in between. HK_ERR_ARG if `hold` is not this key's. */
HK_WUR hk_err hk_ks_delete_held(hk_ks *ks, const char *label,
                                const hk_ks_hold *hold);
/* Locks a key persistently after an invalid-signature abort (needs login:
 * the flag is re-sealed into the AAD, so keep the handle logged in for the
 * whole signing session). `reason` is kept (truncated to
 * HK_KS_REASON_MAX, non-printable bytes replaced by '?'). Locking a locked
 * key keeps the first reason and time. */
HK_WUR hk_err hk_ks_lock_key(hk_ks *ks, const char *label, const char *reason);
/* Clears the lock and the signing-session record: an explicit operator
 * action (needs login; the caller logs it). Without `force` only an
 * interrupted signature is cleared: an abort lock (sealed flag, aborted or
 * damaged record) gives HK_ERR_KEY_LOCKED. HK_ERR_BUSY while a session
 * holds the key. Unlocking an unlocked key is a no-op. */
HK_WUR hk_err hk_ks_unlock_key(hk_ks *ks, const char *label, int force);

/* Takes the key's signing-session lock without waiting: HK_ERR_BUSY if any
 * thread or process holds it, HK_ERR_NOT_FOUND if there is no such key. No
 * login needed. The hold is independent of the handle (an open file); it is
 * inherited by fork() but not by exec(). */
HK_WUR hk_err hk_ks_key_acquire(hk_ks *ks, const char *label, hk_ks_hold **out);
void hk_ks_key_release(hk_ks_hold *h);
/* Writes the held key's signing-session record: INFLIGHT and ABORTED are
 * durable (written and fdatasync'ed) before this returns HK_OK (HK_ERR_IO
 * otherwise: do not send); IDLE is written, not synced (a clear lost in a
 * power cut leaves a false "interrupted" lock, never a missing one). */
HK_WUR hk_err hk_ks_hold_mark(hk_ks_hold *h, hk_ks_sig state);

/* --- the prime pool (ks_pool.c, see "Prime pool") ------------------- */

#define HK_KS_POOL_MAX 16      /* entries, all Paillier sizes together */
#define HK_KS_POOL_NAME_LEN 64 /* an entry's file name, NUL included */

/* Seals the primes of sk (a fresh key from hk_paillier_keygen, used for
 * nothing else) as a new entry (needs login). HK_ERR_TOO_BIG when the pool
 * holds HK_KS_POOL_MAX entries. */
HK_WUR hk_err hk_ks_pool_put(hk_ks *ks, const hk_paillier_sk *sk);
/* Generates keys of `bits` bits with hk_paillier_keygen (no lock held
 * meanwhile) and puts them until the pool holds `target` entries of that
 * size (at most HK_KS_POOL_MAX); *added (may be NULL): how many were
 * made. Needs login. Slow: ~50-250 ms per entry. */
HK_WUR hk_err hk_ks_pool_fill(hk_ks *ks, int bits, size_t target,
                              size_t *added);
/* Takes one entry of `bits` bits: its file is removed and the directory
 * synced BEFORE the primes are opened, then *out is the key as
 * hk_paillier_keygen_from_primes makes it (the caller uses it once and
 * frees it). name (may be NULL): the removed entry's file name, under
 * <dir>/pool/. HK_ERR_NOT_FOUND if the pool has no usable entry of that
 * size (unusable ones met on the way are removed). Needs login. */
HK_WUR hk_err hk_ks_pool_take(hk_ks *ks, int bits, hk_paillier_sk **out,
                              char name[HK_KS_POOL_NAME_LEN]);
/* How many entries of `bits` bits (0: all sizes) the pool holds. No
 * login needed (the file names only). */
HK_WUR hk_err hk_ks_pool_count(hk_ks *ks, int bits, size_t *n);

/* --- presignatures on disk (ks_presig.c, see "Presignatures") ------- */

#define HK_KS_PRESIG_MAX 64 /* entries per key */

/* Seals P1's half of a presignature (it holds k1) as a new entry of its
 * key (needs login). HK_ERR_TOO_BIG when the key has HK_KS_PRESIG_MAX. */
HK_WUR hk_err hk_ks_presig_put(hk_ks *ks, const hk_presig *p);
/* Takes the newest entry of key `kid` made with share epoch `epoch`: its
 * file removed and the directory synced BEFORE it is opened into *out
 * (SECRET: the caller uses it for one sign and wipes it). Entries of
 * other epochs met on the way are removed. HK_ERR_NOT_FOUND if none.
 * Needs login. With `deferred` the entry is retired instead (renamed out
 * of every taker's sight, its file deleted later by hk_ks_presig_sweep:
 * no ~0.5 ms block release on the sign's path) and that is not synced yet
 * (a machine crash may bring the entry back): the caller calls
 * hk_ks_presig_sync before the digest it signs with it leaves (DESIGN.md
 * section 2: k1 destroyed durably before the digest is sent), and does
 * not sign with it if that fails; the presignature's open may leave
 * before (it names the presignature, no digest). */
HK_WUR hk_err hk_ks_presig_take(hk_ks *ks, const unsigned char *kid,
                                unsigned long epoch, int deferred,
                                hk_presig *out);
/* Makes every removal of a deferred hk_ks_presig_take durable. */
HK_WUR hk_err hk_ks_presig_sync(hk_ks *ks);
/* Deletes the files of entries a deferred take retired (they are out of
 * every taker's sight from the take on; any later put or login also
 * sweeps them, with the token's temporary files). */
void hk_ks_presig_sweep(hk_ks *ks);
/* How many entries key `kid` has (any epoch); no login needed. */
HK_WUR hk_err hk_ks_presig_count(hk_ks *ks, const unsigned char *kid,
                                 size_t *n);
/* Removes every entry of key `kid` (the server no longer has them). */
HK_WUR hk_err hk_ks_presig_drop(hk_ks *ks, const unsigned char *kid);

/* Caches the server's public setup record. The record is decoded and its
 * proof verified first (HK_ERR_PARAMS etc.); the verified parameters are
 * returned in *out if out is non-NULL (hk_rped_free). No login needed. */
HK_WUR hk_err hk_ks_save_setup(hk_ks *ks, const unsigned char *rec, size_t len,
                               hk_rped **out);
/* Loads the cached record, decoding AND verifying it again (~250 ms): a
 * file is not trusted just because it is ours. HK_ERR_NOT_FOUND if none. */
HK_WUR hk_err hk_ks_load_setup(hk_ks *ks, hk_rped **out);

/* The PKCS#11 face's public objects (certificates, data objects): one
 * opaque record in clear, <dir>/objects.bin, at most HK_KS_OBJ_MAX bytes.
 * Loading needs no login (*buf: OPENSSL_free; NULL and 0 if none). An
 * update runs `edit` on the current record (NULL, 0 if none) under the
 * token lock and atomically writes the record it returns (*out malloc'd,
 * freed here; *outlen 0 removes the file). */
#define HK_KS_OBJ_MAX (1024u * 1024u)
typedef hk_err (*hk_ks_objects_edit)(const unsigned char *in, size_t inlen,
                                     unsigned char **out, size_t *outlen,
                                     void *arg);
HK_WUR hk_err hk_ks_objects_load(hk_ks *ks, unsigned char **buf, size_t *len);
/* The record's form (written by the PKCS#11 module, read by it and by the
 * OpenSSL provider's store): "HKO1" | u32 next id | u32 count | per
 * object: u32 id | u32 attribute count | per attribute: u64 PKCS#11 type |
 * u32 length | value, big-endian; values as PKCS#11 gives them (a
 * CK_ULONG in host order). */
#define HK_KS_OBJ_ATTRS_MAX 64
typedef struct {
    uint64_t type;
    const unsigned char *val; /* into the record */
    size_t len;
} hk_ks_attr;
typedef struct {
    uint32_t id;
    size_t n;
    hk_ks_attr a[HK_KS_OBJ_ATTRS_MAX];
} hk_ks_obj;
/* One object at *p (before end), *p moved past it: HK_ERR_DECODE if
 * malformed. */
HK_WUR hk_err hk_ks_object_parse(const unsigned char **p,
                                 const unsigned char *end, hk_ks_obj *o);
/* A whole record (len 0: none): *objs (OPENSSL_free; NULL if none). */
HK_WUR hk_err hk_ks_objects_parse(const unsigned char *rec, size_t len,
                                  uint32_t *next, hk_ks_obj **objs, size_t *n);
HK_WUR hk_err hk_ks_objects_update(hk_ks *ks, hk_ks_objects_edit edit,
                                   void *arg);

#endif
