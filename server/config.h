/* halfkeyd configuration file.
 *
 * Owns the format and its parser: one `key = value` per line, `#`
 * comments, blank lines; every key known, none repeated, values bounded;
 * an error names the file and line. Relative paths are resolved against
 * the directory of the configuration file. */
#ifndef HK_SERVER_CONFIG_H
#define HK_SERVER_CONFIG_H

#include "common/error.h"

#define HK_CFG_PATH_MAX 512
#define HK_CFG_VAL_MAX 256
#define HK_CFG_LIST_MAX 1000     /* a comma list value */
#define HK_SEAL_PREV_MAX 4       /* previous KEKs of each kind */
#define HK_CFG_KEY_LABEL_MAX 128 /* = HK_P11_KEY_LABEL_MAX */

/* Sealing settings (seal.h): the primary KEK (a key file or an HSM key)
 * and the previous KEKs kept to open older blobs during a migration. */
typedef struct {
    char backend[16]; /* `seal`: "file" (kek_file) or "pkcs11" */
    char hsm_module[HK_CFG_PATH_MAX];
    char hsm_token[64];
    char hsm_key_label[HK_CFG_VAL_MAX];
    char hsm_pin_file[HK_CFG_PATH_MAX];
    char hsm_pin_env[128];
    /* raw comma lists as written */
    char prev_files_raw[HK_CFG_LIST_MAX];
    char prev_labels_raw[HK_CFG_LIST_MAX];
    /* the lists split, files resolved like other paths */
    char prev_files[HK_SEAL_PREV_MAX][HK_CFG_PATH_MAX];
    int nprev_files;
    char prev_labels[HK_SEAL_PREV_MAX][HK_CFG_KEY_LABEL_MAX + 1];
    int nprev_labels;
} hk_seal_config;

typedef struct {
    char listen[64]; /* IP address to bind exactly, e.g. 127.0.0.1, ::1 */
    int port;        /* 0: any free port */
    char tls_cert[HK_CFG_PATH_MAX];
    char tls_key[HK_CFG_PATH_MAX];
    char db[HK_CFG_PATH_MAX];     /* SQLite file, or: */
    char db_url[HK_CFG_PATH_MAX]; /* PostgreSQL connection string */
    char node[64];                /* this node's name in logs and audit */
    char kek_file[HK_CFG_PATH_MAX];
    char jwt_alg[16];              /* ES256, RS256 or HS256 */
    char jwt_key[HK_CFG_PATH_MAX]; /* public key PEM or HS256 secret file */
    char jwt_issuer_key[HK_CFG_PATH_MAX]; /* private key for `token` */
    char jwt_iss[HK_CFG_VAL_MAX];
    char jwt_aud[HK_CFG_VAL_MAX];
    int jwt_skew;     /* seconds */
    int session_idle; /* seconds without traffic */
    /* seconds a keygen's key may stay unconfirmed (client died after
     * keygen.3) before it is swept */
    int pending_key_ttl;
    int workers; /* protocol worker threads */
    int min_paillier_bits;
    char port_file[HK_CFG_PATH_MAX]; /* optional: bound port written here */
    /* policies (server/policy/policy.h) */
    int rate_per_minute; /* per-subject requests per minute, 0: off */
    int rate_burst;      /* bucket size */
    int max_signs_hour;  /* per-key default, 0: unlimited */
    int max_signs_day;   /* per-key default, 0: unlimited */
    char curves[64];     /* allowed curves, comma-separated */
    int metrics;         /* 1: serve GET /metrics */
    int shutdown_grace;  /* seconds running sessions get at shutdown */
    /* connection caps (transport/http_server.h) */
    int max_connections;    /* 0: the open-file limit less a reserve */
    int max_conns_per_peer; /* per peer address (IPv6: /64), 0: no cap */
    /* signing requests (server/http/requests.c): who may ask for whose
     * signatures, "REQUESTER=OWNER" entries separated by commas or spaces;
     * OWNER a subject, "*" (any owner) or "key:" and a key id in hex */
    char requesters[HK_CFG_LIST_MAX + 1];
    int request_ttl_max; /* seconds a request may wait at most */
    /* presignatures (mpc/presign.h, sessions.c): stored per key and per
     * subject at most (0 per key: presignatures off), and their age limit */
    int presign_max_key;
    int presign_max_subject;
    int presign_ttl;
    char policy_file[HK_CFG_PATH_MAX]; /* rules of requests (rules.h) */
    /* request callbacks (server/http/callbacks.c): off unless both set */
    char callback_ca_file[HK_CFG_PATH_MAX];  /* trusted CAs of receivers */
    char callback_key_file[HK_CFG_PATH_MAX]; /* HMAC key, >= 32 bytes */
    char callback_hosts[HK_CFG_VAL_MAX];     /* allowed hosts; "": any host */
    /* device attestation at keygen (server/attest/attest.h): the EK CA
     * bundle, and the subjects whose keygens must be attested (comma
     * list of subjects, or "*": every subject) */
    char attestation_roots[HK_CFG_PATH_MAX];
    char require_attestation[HK_CFG_LIST_MAX + 1];
    hk_seal_config seal;
} hk_srv_config;

/* The defaults of every field (a file overrides them). */
void hk_srv_config_defaults(hk_srv_config *c);
/* Parses `path`; on error writes "file:line: reason" into why[256]. */
HK_WUR hk_err hk_srv_config_load(const char *path, hk_srv_config *out,
                                 char *why);
/* 1 if the `requesters` grants of c let `requester` ask for signatures
 * by key kidhex (hex) of owner. */
int hk_srv_config_requester_may(const hk_srv_config *c, const char *requester,
                                const char *owner, const char *kidhex);
/* 1 if `require_attestation` names sub (or is "*"). */
int hk_srv_config_attest_required(const hk_srv_config *c, const char *sub);
/* Writes a configuration file (for `halfkeyd init`), mode 0600. */
HK_WUR hk_err hk_srv_config_write(const char *path, const hk_srv_config *c);

#endif
