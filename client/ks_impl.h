/* Private to the keystore (keystore.c, ks_keys.c, ks_io.c, ks_seal.c): the
 * handle, file I/O and locks, the sealing primitives, and the re-sealing
 * step of a PIN change. */
#ifndef HK_KS_IMPL_H
#define HK_KS_IMPL_H

#include <pthread.h>

#include "client/keystore.h"
#include "common/aead.h"
#include "client/ks_tpm.h"

#define HK_KS_KEY_LEN 32 /* master and derived keys */
#define HK_KS_SALT_LEN 32
#define HK_KS_SEAL_OVERHEAD HK_AEAD_OVERHEAD
#define HK_KS_CHECK_TEXT "halfkey PIN ok.1" /* 16 bytes, the PIN check */
#define HK_KS_CHECK_LEN (HK_KS_SEAL_OVERHEAD + 16)
#define HK_KS_WRAP_LEN (HK_KS_SEAL_OVERHEAD + HK_KS_KEY_LEN)
/* A sealed share record (about 3 KB in practice). */
#define HK_KS_SEALED_MAX (64u * 1024u)
#define HK_KS_AAD_MAX 512

#define HK_KS_TOKEN_FILE "token.json"
#define HK_KS_SETUP_FILE "setup.json"
#define HK_KS_TLOCK_FILE ".lock"
#define HK_KS_KEYS_DIR "keys"

/* A key file's bytes and the information hk_ks_key_info made of them
 * under the handle's current login (public values: the share in it stays
 * sealed), so that a read of the same bytes is not parsed and
 * authenticated again (~0.3 ms of every sign). Compared byte for byte:
 * any change of the file is a miss. Emptied at every login and logout. */
#define HK_KS_INFO_CACHE 8
typedef struct {
    unsigned char *bytes; /* NULL: empty */
    size_t len;
    hk_ks_keyinfo info; /* before the signing-session record is merged */
} hk_ks_icache;

struct hk_ks {
    pthread_mutex_t mu; /* guards everything below */
    char *dir;
    int dfd; /* the token directory */
    int kfd; /* keys/ */
    int logged_in;
    unsigned long gen;               /* PIN generation of mk */
    unsigned char mk[HK_KS_KEY_LEN]; /* SECRET: PIN-derived master key */
    int so_logged_in;
    unsigned char so_rk[HK_KS_KEY_LEN]; /* SECRET: the recovery key */
    hk_ks_icache ic[HK_KS_INFO_CACHE];
    unsigned ic_next; /* the entry replaced next */
};

/* Empties the key information cache (ks_keys.c). Call with ks->mu held. */
void hk_ks_icache_clear(hk_ks *ks);

/* A master key with the PIN generation it belongs to. */
typedef struct {
    unsigned long gen;
    unsigned char k[HK_KS_KEY_LEN]; /* SECRET */
} hk_ks_mk;

/* --- ks_io.c: bounded reads, atomic writes, directories, locks --------- */

/* Reads the regular file `name` under dirfd, at most `max` bytes
 * (HK_ERR_TOO_BIG beyond). HK_ERR_NOT_FOUND if absent, HK_ERR_IO otherwise.
 * *out is OPENSSL_malloc'd. Symbolic links are refused. */
HK_WUR hk_err hk_ks_read_file(int dirfd, const char *name, size_t max,
                              unsigned char **out, size_t *len);
/* Replaces (or creates) `name` under dirfd atomically, mode 0600: temp file
 * in the same directory, fsync, rename, fsync of the directory. */
HK_WUR hk_err hk_ks_write_file(int dirfd, const char *name,
                               const unsigned char *buf, size_t len);
/* Removes `name` and syncs the directory; HK_ERR_NOT_FOUND if absent. */
HK_WUR hk_err hk_ks_unlink(int dirfd, const char *name);
/* Retires `name` under dirfd: renamed to ".<name>.spent.tmp", a name no
 * reader of entries or keys looks at, without freeing its blocks (an
 * unlink on a filesystem mounted with `discard` takes ~0.5 ms here) and
 * without syncing the directory (the caller does, hk_ks_ent_sync). The
 * file itself goes later: hk_ks_sweep_spent, or with the temporaries
 * (hk_ks_sweep_temps). HK_ERR_NOT_FOUND if `name` is gone. */
HK_WUR hk_err hk_ks_retire(int dirfd, const char *name);
/* Unlinks every retired file under dirfd (any time: nothing writes one). */
void hk_ks_sweep_spent(int dirfd);
/* 1 if `name` exists under dirfd (any type). */
int hk_ks_exists(int dirfd, const char *name);
/* mkdir -p with mode 0700 for every directory it creates. */
HK_WUR hk_err hk_ks_mkdirs(const char *path);
/* Opens directory `name` under dirfd (AT_FDCWD: a path), which must be a
 * directory owned by us and not writable by group or others
 * (HK_ERR_CONFIG). fix: set its mode to 0700 instead of checking it. */
HK_WUR hk_err hk_ks_open_dir(int dirfd, const char *name, int fix, int *out);
/* Removes temp files (".*.tmp") a crash left behind. Call only while
 * holding the token lock: no write is in flight then. */
void hk_ks_sweep_temps(int dirfd);
/* Takes an exclusive OFD lock on `name` under dirfd (created 0600), waiting
 * if `wait`, else HK_ERR_BUSY when held. *fd holds the lock: close it to
 * release. */
HK_WUR hk_err hk_ks_lock_file(int dirfd, const char *name, int wait, int *fd);
/* --- ks_entries.c: single-use sealed entries (pool, presignatures) ----- */

#define HK_KS_ENT_ID 16
#define HK_KS_ENT_NAME_LEN 80 /* "<tag>-<32 hex><ext>" and its NUL */

/* A kind of entry: its directory under the token, its label (HKDF info
 * and AAD), its 8-byte record magic (NUL included), its file name
 * extension, at most `max` entries per tag (per_tag) or in all, and
 * whether take prefers the newest entry (else the oldest). */
typedef struct {
    const char *dir, *label, *magic, *ext;
    size_t max;
    int per_tag, newest_first;
} hk_ks_ent_kind;

/* Seals pt as a new entry of `tag` (1..32 lowercase hex digits), with
 * `field` (a kind's own number, e.g. a size) in its header and AAD. Needs
 * login. HK_ERR_TOO_BIG at the bound. */
HK_WUR hk_err hk_ks_ent_put(hk_ks *ks, const hk_ks_ent_kind *k, const char *tag,
                            unsigned long field, const unsigned char *pt,
                            size_t ptlen);
/* Takes one entry of `tag` whose plaintext is ptlen bytes: its file
 * removed and the directory synced BEFORE it is opened into pt. Unusable
 * entries met on the way are removed. HK_ERR_NOT_FOUND if there is none.
 * name (may be NULL): the removed entry's file name. Needs login. With
 * `deferred`, the entry is retired (hk_ks_retire: renamed out of every
 * taker's sight, its file unlinked later by hk_ks_ent_sweep) and that is
 * not synced yet (a machine crash may bring the entry back): the caller
 * must call hk_ks_ent_sync before anything made with the plaintext leaves
 * the process, and must not use it if that fails. */
HK_WUR hk_err hk_ks_ent_take(hk_ks *ks, const hk_ks_ent_kind *k,
                             const char *tag, unsigned long field,
                             unsigned char *pt, size_t ptlen,
                             char name[HK_KS_ENT_NAME_LEN], int deferred);
/* Syncs the kind's directory: every removal made in it is on disk. */
HK_WUR hk_err hk_ks_ent_sync(hk_ks *ks, const hk_ks_ent_kind *k);
/* Unlinks the kind's retired entries (a deferred take's, hk_ks_retire). */
void hk_ks_ent_sweep(hk_ks *ks, const hk_ks_ent_kind *k);
/* Removes every entry of `tag`. Needs login. */
HK_WUR hk_err hk_ks_ent_drop(hk_ks *ks, const hk_ks_ent_kind *k,
                             const char *tag);
/* How many entries of `tag` (NULL: all) there are; no login needed. */
HK_WUR hk_err hk_ks_ent_count(hk_ks *ks, const hk_ks_ent_kind *k,
                              const char *tag, size_t *n);

/* Sorted names of the key files (<label>.json) in the keys directory.
 * Free with hk_ks_names_free. */
HK_WUR hk_err hk_ks_key_names(int kfd, char ***out, size_t *n);
void hk_ks_names_free(char **names, size_t n);

/* --- ks_seal.c: key derivation and AES-256-GCM ------------------------ */

typedef struct {
    unsigned long log2n, r, p;
} hk_ks_kdf;

/* The cost of new PIN slots: scrypt N = 2^17, r = 8, p = 1 (128 MiB,
 * about 0.4 s here): a 6-digit PIN then costs an attacker with a copy of
 * the token about 4 CPU-days to exhaust, against minutes at the 2^15 of
 * earlier versions. HALFKEY_INSECURE_SCRYPT_LOG2N=<10..16> lowers N for
 * new slots (test suites only: it makes stolen tokens cheap to crack); it
 * never lowers an existing slot's cost. */
#define HK_KS_SCRYPT_LOG2N 17
void hk_ks_kdf_default(hk_ks_kdf *out);
/* 1 if a costs less than b (a slot to re-derive at login). */
int hk_ks_kdf_weaker(const hk_ks_kdf *a, const hk_ks_kdf *b);
/* Bounds on scrypt parameters read from a file (memory <= 256 MiB). */
int hk_ks_kdf_ok(const hk_ks_kdf *p);
HK_WUR hk_err hk_ks_scrypt(const char *pin, const unsigned char *salt,
                           const hk_ks_kdf *p, unsigned char mk[HK_KS_KEY_LEN]);
/* HKDF-SHA256(mk; info = label || 0 || ctx) into 32 bytes. */
HK_WUR hk_err hk_ks_hkdf(const unsigned char mk[HK_KS_KEY_LEN],
                         const char *label, const unsigned char *ctx,
                         size_t ctxlen, unsigned char out[HK_KS_KEY_LEN]);
/* Sealing: the one AEAD (common/aead.h), hk_aead_seal / hk_aead_open. */

/* AAD builder: items, each with a 4-byte big-endian length prefix. */
typedef struct {
    unsigned char b[HK_KS_AAD_MAX];
    size_t len;
    int overflow;
} hk_ks_aad;

void hk_ks_aad_init(hk_ks_aad *a, const char *tag);
void hk_ks_aad_add(hk_ks_aad *a, const void *data, size_t len);
void hk_ks_aad_str(hk_ks_aad *a, const char *s);
void hk_ks_aad_u64(hk_ks_aad *a, uint64_t v);

/* --- ks_token.c: the token record ---------------------------------------- */

#define HK_KS_TOKEN_VERSION 1
#define HK_KS_TOKEN_VERSION_TPM 2  /* a TPM-backed token (tpm_tcti set) */
#define HK_KS_FAILS_LIMIT_MAX 1000 /* bound on the limit read from disk */
#define HK_KS_GEN_MAX 0xfffffffful

/* One PIN generation: its scrypt parameters, salt and check value. In a
 * TPM-backed token the master key is not derived from the PIN: it is a
 * random key sealed in `tpm` (the TPM object's authorisation is
 * HKDF(salt; PIN), see ks_tpm.h), and kdf is unused (today's default). */
typedef struct {
    unsigned long gen;
    hk_ks_kdf kdf;
    unsigned char salt[HK_KS_SALT_LEN];
    unsigned char check[HK_KS_CHECK_LEN];
    int is_tpm;
    hk_ks_tpm_blob tpm;
} hk_ks_slot;

/* token.json. While a PIN change is pending, cur is the new PIN and prev
 * the old one, and each master key is sealed under the other. A TPM-backed
 * token (version 2: tcti set, every slot a TPM slot) is refused by earlier
 * versions as an unknown version; a version-1 token reads as before. */
typedef struct {
    char label[HK_KS_TOKEN_LABEL_MAX + 1];
    unsigned long fails, max_fails;
    char tcti[HK_KS_TCTI_MAX + 1]; /* TPM-backed token: its TCTI; else "" */
    hk_ks_slot cur;
    int pending;
    hk_ks_slot prev;
    unsigned char wrap_prev[HK_KS_WRAP_LEN]; /* prev's MK under cur's */
    unsigned char wrap_cur[HK_KS_WRAP_LEN];  /* cur's MK under prev's */
} hk_ks_token;

/* token.json, read strictly (HK_ERR_DECODE) and written atomically. */
HK_WUR hk_err hk_ks_token_read(int dfd, hk_ks_token *t);
HK_WUR hk_err hk_ks_token_write(int dfd, const hk_ks_token *t);

/* --- ks_token.c: the token lock and PIN generation ------------------- */

/* Takes the token write lock, waiting for it; close *fd to release. */
HK_WUR hk_err hk_ks_tlock(hk_ks *ks, int *fd);
/* HK_OK if ks is logged in with a PIN generation the token still knows;
 * HK_ERR_STATE if logged out or another handle changed the PIN since. */
HK_WUR hk_err hk_ks_gen_check(hk_ks *ks);

/* --- ks_token.c: PIN and label rules, the token label ----------------- */

int hk_ks_pin_ok(const char *pin);
/* A PIN given to be checked (login, the old PIN of a change): also the
 * shorter PINs of earlier versions (HK_KS_PIN_MIN_OLD). */
int hk_ks_pin_given_ok(const char *pin);
int hk_ks_token_label_ok(const char *label);
/* Sets the token label in token.json (caller holds the token lock). */
HK_WUR hk_err hk_ks_label_write(hk_ks *ks, const char *label);

/* --- ks_so.c: the SO record and the escrow ------------------------------ */

#define HK_KS_SO_FILE "so.json"
#define HK_KS_ESCROW_FILE "escrow.json"
#define HK_KS_ESC_MAX 2

/* escrow.json: per user-PIN generation, the recovery key RK sealed under
 * that generation's MK, and the MK sealed under RK. */
typedef struct {
    unsigned long gen;
    unsigned char rk[HK_KS_WRAP_LEN]; /* RK under HKDF(MK) */
    unsigned char mk[HK_KS_WRAP_LEN]; /* MK under HKDF(RK) */
} hk_ks_esc_entry;

typedef struct {
    size_t n;
    hk_ks_esc_entry e[HK_KS_ESC_MAX];
} hk_ks_esc;

/* The escrow (an empty one if the file is absent). */
HK_WUR hk_err hk_ks_esc_read(int dfd, hk_ks_esc *esc);
HK_WUR hk_err hk_ks_esc_write(int dfd, const hk_ks_esc *esc);
/* RK from the entry of mk's generation: HK_ERR_NOT_FOUND if none,
 * HK_ERR_SEAL if it does not open under mk. */
HK_WUR hk_err hk_ks_esc_rk(const hk_ks_esc *esc, const hk_ks_mk *mk,
                           unsigned char rk[HK_KS_KEY_LEN]);
/* The MK of generation gen from its entry, opened with RK. */
HK_WUR hk_err hk_ks_esc_mk(const hk_ks_esc *esc,
                           const unsigned char rk[HK_KS_KEY_LEN],
                           unsigned long gen, hk_ks_mk *mk);
/* Adds (or replaces) the entry of mk's generation and keeps only the
 * entries of generations mk->gen and `keep` (0: none). */
HK_WUR hk_err hk_ks_esc_put(hk_ks_esc *esc,
                            const unsigned char rk[HK_KS_KEY_LEN],
                            const hk_ks_mk *mk, unsigned long keep);

/* The SO fields of *out; user_gen: the user PIN's current generation. */
void hk_ks_so_info(hk_ks *ks, unsigned long user_gen, hk_ks_tokeninfo *out);

/* --- ks_keys.c: used by the PIN change --------------------------------- */

/* Re-seals every key file sealed by `from` under `to` (in label order, one
 * atomic write each). Files already at to's generation, or of another
 * generation, or that fail authentication or decoding, are left as they
 * are (they cannot be read with either key); any I/O error stops the
 * walk and is returned. */
HK_WUR hk_err hk_ks_rekey(int kfd, const hk_ks_mk *from, const hk_ks_mk *to);

#endif
