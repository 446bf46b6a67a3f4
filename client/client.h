/* The client core: one token (keystore, client/keystore.h) plus its server
 * settings, and the protocol runs against halfkeyd over TLS 1.3 WebSocket.
 * The two faces (PKCS#11, OpenSSL provider) and the CLI call only this.
 *
 * Token configuration, `halfkey.conf` in the token directory (format:
 * transport/kvfile.h):
 *   server_url    = https://127.0.0.1:8443
 *   server_pin    = <hex SHA-256 of the server's SubjectPublicKeyInfo>
 *   server_ca     = <PEM CA file>            (instead of server_pin)
 *   token_file    = <file holding a JWT>     (or:)
 *   token_command = <command printing a fresh JWT>
 *   paillier_bits = 2048 | 3072
 *   timeout_ms    = 30000
 *   backup_pub    = <PEM backup public key>  (optional: "never stale")
 *   attest        = 0 | 1  (1: every keygen is attested, as --attest)
 *   presign       = auto | off  (presignatures on kept-open connections,
 *                                 below; default auto)
 *
 * Backup (issue 18). With backup_pub set, a backup of the client share
 * (mpc/pve.h, verified by the server before it keeps it) is made after
 * every keygen and every refresh: after a refresh it is uploaded before
 * refresh.5, and a server that holds a backup of the key promotes the new
 * share only once the new epoch's backup is stored (HK_ERR_BACKUP
 * otherwise: the new share is stored here and works, the old one stays
 * active on the server until the backup arrives).
 *   pkcs11_curves = p256,secp256k1       (keys the PKCS#11 module shows:
 *   pkcs11_keys   = label1,label2         unset or empty, all of them)
 *
 * Signing: one session per key at a time across threads and processes
 * (HK_ERR_BUSY otherwise); the final signature is verified before it is
 * returned; a signature that does not verify locks the key persistently
 * (HK_ERR_SIG_ABORT now, HK_ERR_KEY_LOCKED afterwards) for good: neither a
 * refresh nor a plain unlock clears it, only `halfkey unlock --force`,
 * audited by the server (hk_client_unlock). A signature in flight is
 * recorded durably first (keystore.h, "Signing-session record"), so a
 * crash mid-sign locks the key too ("interrupted signature"). */
#ifndef HK_CLIENT_H
#define HK_CLIENT_H

#include <jansson.h>

#include "client/keystore.h"
#include "mpc/sign.h"
#include "transport/jwt.h"

typedef struct {
    char server_url[256];
    char server_pin[72];
    char server_ca[512];
    char token_file[512];
    char token_command[512];
    int paillier_bits;
    int timeout_ms;
    char backup_pub[512];
    char pkcs11_curves[64]; /* comma-separated curve names, "" = all */
    char pkcs11_keys[512];  /* comma-separated key labels, "" = all */
    int attest;             /* 1: keygens carry a device attestation */
    char presign[8];        /* "" or "auto" (default), "off" */
} hk_client_config;

typedef struct hk_client hk_client;

/* Writes a token's halfkey.conf (for `halfkey init`). */
HK_WUR hk_err hk_client_config_write(const char *dir,
                                     const hk_client_config *c);
/* Checks a configuration as hk_client_open would (server_url
 * https://HOST:PORT, one of server_pin of 64 hex digits or server_ca, one of
 * token_file or token_command, paillier_bits 2048 or 3072); why[256] gets
 * the reason, starting with `where`, on HK_ERR_CONFIG. Files are not
 * opened. */
HK_WUR hk_err hk_client_config_check(const hk_client_config *cfg,
                                     const char *where, char *why);
/* Opens the token at dir (see hk_ks_dir_resolve) and reads its config;
 * why[256] gets a reason on HK_ERR_CONFIG. */
HK_WUR hk_err hk_client_open(const char *dir, hk_client **out, char *why);
void hk_client_close(hk_client *c);
hk_ks *hk_client_keystore(hk_client *c);
const hk_client_config *hk_client_config_get(const hk_client *c);

/* Runs keygen with the server and stores the new key under `label`;
 * attested as the token's `attest` setting says. */
HK_WUR hk_err hk_client_keygen(hk_client *c, hk_curve_id curve,
                               const char *label, hk_ks_keyinfo *info);
/* As hk_client_keygen; attest 1: with a device attestation whatever the
 * setting (issue 22: the token's TPM proves to the server, through its
 * endorsement key, that it holds an attestation key, which quotes the
 * keygen session). HK_ERR_ATTEST (last error: why) on a file token, a
 * TPM without an EK certificate, or the server's refusal; nothing is
 * stored then. */
HK_WUR hk_err hk_client_keygen_attest(hk_client *c, hk_curve_id curve,
                                      const char *label, int attest,
                                      hk_ks_keyinfo *info);
/* Signs a digest (1..64 bytes); sig = r || s, low-S, verified. Safe to
 * call from several threads at once. The sign runs on a kept-open
 * connection (hk_channel, below) that the client keeps afterwards, up to
 * one per concurrent signer, so a long-lived host (the PKCS#11 module, a
 * server) pays no TLS handshake per signature and, with `presign = auto`,
 * signs on presignatures: one round trip. A connection down to its last
 * presignature makes the next batch on a thread of its own after the
 * signature is returned (idle time; a sign meanwhile waits for that
 * connection, hk_client_close for the thread). A kept connection that the
 * server has closed meanwhile is replaced, and the sign tried once more,
 * only when no c3 came back. A forked child never touches its parent's
 * connections (they are forgotten, their secrets wiped). */
HK_WUR hk_err hk_client_sign(hk_client *c, const char *label,
                             const unsigned char *dig, size_t dlen,
                             unsigned char sig[HK_SIG_LEN]);
/* As hk_client_sign, co-signing digest `index` of signing request
 * `request_id` ("req_..."): the server signs only if dig is the digest it
 * computed for that index (the caller computes it from the request's
 * payload itself and compares, txparse/). */
HK_WUR hk_err hk_client_sign_request(hk_client *c, const char *label,
                                     const char *request_id, unsigned index,
                                     const unsigned char *dig, size_t dlen,
                                     unsigned char sig[HK_SIG_LEN]);
/* POST `path` with the token's JWT and the JSON body (taken); the
 * answer's status and body (malloc'd) as hk_client_get. */
HK_WUR hk_err hk_client_send_json(hk_client *c, const char *path, json_t *body,
                                  int *http_status, char **resp);
/* Rotates the key's shares (the public key is unchanged). */
HK_WUR hk_err hk_client_refresh(hk_client *c, const char *label);
/* The token's prime pool (keystore.h, "Prime pool"; client_pool.c).
 * Keygen, refresh and restore take one entry of the configured Paillier
 * size when the pool has one (else they generate the key, as before);
 * nothing refills it behind the caller's back: a process that is about to
 * exit is not kept waiting. hk_client_pool_fill makes entries of the
 * configured size until the pool holds `target` of them (at most
 * HK_KS_POOL_MAX; needs login; ~50-250 ms each): `halfkey pool fill`, or
 * a long-lived host in its idle time. *added (may be NULL): how many. */
HK_WUR hk_err hk_client_pool_fill(hk_client *c, size_t target, size_t *added);
/* One pooled key of the configured size for a keygen or refresh, its
 * entry already removed from disk; *out NULL (and HK_OK) when the pool
 * has none or cannot be used now (not logged in, unreadable): the caller
 * then generates the key. */
HK_WUR hk_err hk_client_pool_take(hk_client *c, hk_paillier_sk **out);
/* Deletes a key on both sides (needs login: HK_ERR_STATE otherwise):
 * POST /delete for the server's share first, then the local key file.
 * The server answering 404 "not_found" (it holds no such key for this
 * subject) still deletes locally; any other failure keeps the local key
 * and returns the error (HK_ERR_BUSY while a session uses the key). */
HK_WUR hk_err hk_client_delete(hk_client *c, const char *label);
/* Clears a key's lock (needs login). Without `force` only an interrupted
 * signature (HK_ERR_KEY_LOCKED for an abort lock). With `force`, an abort
 * lock too, after the server has audited the override (POST /unlock,
 * with the lock's reason): if the server cannot be told, nothing
 * changes. */
HK_WUR hk_err hk_client_unlock(hk_client *c, const char *label, int force);
/* Makes a backup of the key's current share under the backup public key in
 * PEM file `pub_file` (NULL: the configured backup_pub) and sends it (POST
 * /backup); needs login. *epoch (may be NULL) the epoch backed up. */
HK_WUR hk_err hk_client_backup(hk_client *c, const char *label,
                               const char *pub_file, unsigned long *epoch);
/* Restores key `kid` (32 hex digits) into this token under `label`: GET
 * /backup gives the newest backup and the public values of the server's
 * share of that epoch; x1 is decrypted with the backup private key (PEM
 * file `priv_file`, passphrase may be NULL) and checked (x1*G = Q1 and Q =
 * x1*Q2), then a refresh runs at once with a fresh Paillier key: only the
 * refreshed share is stored, its backup uploaded, and refresh.5 makes the
 * recovered x1 useless on both sides. Needs login. HK_ERR_EXISTS if the
 * label or key is already in the token. info (may be NULL) the new key. */
HK_WUR hk_err hk_client_restore(hk_client *c, const char *kid_hex,
                                const char *priv_file, const char *passphrase,
                                const char *label, hk_ks_keyinfo *info);
/* A kept-open connection to the server: sessions are opened on it one
 * after the other (no TLS handshake per signature). Use a channel from
 * one thread at a time; it closes after the server's idle timeout, or
 * when its token expires (then open a new one). */
typedef struct hk_channel hk_channel;

HK_WUR hk_err hk_client_channel_open(hk_client *c, hk_channel **out);
/* Closes the kept-open connections hk_client_sign keeps (a host going
 * idle; benchmarks of a new connection per sign); hk_client_close does. */
void hk_client_idle_close(hk_client *c);
/* How many of the client's connections resumed a TLS session from an
 * earlier one (http_client.h, hk_tls_client): tests and benchmarks. */
unsigned long hk_client_tls_resumed(hk_client *c);
/* As hk_client_sign, over the channel. After an error the channel is
 * closed by the server: open a new one.
 *
 * Presignatures (mpc/presign.h, DESIGN.md section 2): a sign that finds a
 * presignature of the key's current share in the channel takes it (wiped
 * from memory before the digest goes out) and needs one round trip. With
 * `presign = auto` the channel makes them itself: its first sign of a key
 * is a plain one (a one-shot process pays nothing), and a later sign that
 * finds none first makes a batch (4, then 8, up to 16: two round trips and
 * the server's r^N for each), so a channel that keeps signing runs one
 * round trip per sign almost always. A server that keeps no presignatures
 * says so once; the channel then signs the plain way. Presignatures live
 * in the channel only: closing it drops them (the server's halves expire,
 * presign_ttl, or make room for new ones). */
HK_WUR hk_err hk_client_channel_sign(hk_client *c, hk_channel *ch,
                                     const char *label,
                                     const unsigned char *dig, size_t dlen,
                                     unsigned char sig[HK_SIG_LEN]);
/* As hk_client_sign_request, over the channel. */
HK_WUR hk_err hk_client_channel_sign_request(
    hk_client *c, hk_channel *ch, const char *label, const char *request_id,
    unsigned index, const unsigned char *dig, size_t dlen,
    unsigned char sig[HK_SIG_LEN]);
void hk_client_channel_close(hk_channel *ch);
/* Makes n (1..HK_PRESIG_BATCH_MAX) presignatures of key `label` now (idle
 * time: the next n signs of the key on this channel take one round trip
 * each). Needs login. HK_ERR_FORBIDDEN if the server keeps none (the
 * channel stays usable), HK_ERR_KEY_LOCKED for a locked key; any other
 * error closes the channel. */
HK_WUR hk_err hk_client_channel_presign(hk_client *c, hk_channel *ch,
                                        const char *label, size_t n);
/* on 0: this channel signs the plain way whatever the token's presign
 * setting (benchmarks compare both); 1: as the setting says. */
void hk_client_channel_set_presign(hk_channel *ch, hk_client *c, int on);
/* Tops up key `label`'s presignatures stored on disk to `target` (at
 * most HK_KS_PRESIG_MAX), made now over one connection in batches of
 * 16, each sealed under the PIN key (keystore.h "Presignatures"): the
 * next `target` signs of the key by any process of this token, even one
 * that signs once and exits (`halfkey sign`), take one round trip each.
 * Needs login. *added (may be NULL): how many were made. HK_ERR_FORBIDDEN
 * if the server keeps none; a presignature the server has let go (its
 * pool bound, presign_ttl, a refresh) is found out at the sign, which
 * then signs the plain way and removes the key's stored ones. */
HK_WUR hk_err hk_client_presign(hk_client *c, const char *label, size_t target,
                                size_t *added);
/* The presignatures the channel holds for key `label` (any epoch). */
size_t hk_client_channel_presigs(const hk_channel *ch, const hk_client *c,
                                 const char *label);

/* GET /status; *body: malloc'd JSON. */
HK_WUR hk_err hk_client_status(hk_client *c, int *http_status, char **body);
/* GET `path` with the token's JWT as bearer if `auth` (e.g. "/pubkey?key_id=
 * ..."); *http_status and *body (malloc'd) as hk_tcli_http gives them. */
HK_WUR hk_err hk_client_get(hk_client *c, const char *path, int auth,
                            int *http_status, char **body);
/* A fresh JWT from token_file or token_command (its first line). *out is
 * NUL-terminated: wipe and free() it. HK_ERR_CONFIG if the file or command
 * cannot be opened, HK_ERR_AUTH if it fails or gives nothing usable. */
HK_WUR hk_err hk_client_jwt(hk_client *c, char **out);
/* The claims of that JWT that explain a refusal, read without verifying
 * it (the server does): subject, exp, nbf (0 if absent). HK_ERR_DECODE if
 * it is not a JWT with a JSON payload holding sub and exp. */
HK_WUR hk_err hk_client_jwt_claims(hk_client *c, char sub[HK_JWT_SUB_MAX + 1],
                                   long *exp, long *nbf);
/* The server's host name or address (owned by c) and port, from
 * server_url; NULL on a bad argument. */
const char *hk_client_server(const hk_client *c, int *port);
/* The server's message for the last HK_ERR_SERVER, or "". */
const char *hk_client_last_error(const hk_client *c);

#endif
