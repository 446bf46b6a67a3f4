/* halfkey error codes: the one error enum of the project.
 *
 * Every fallible function returns an hk_err and writes results through
 * out-parameters. HK_OK is zero so that `if ((e = f()) != HK_OK)` reads well.
 * hk_strerror() gives a short, stable, human-readable message for each code;
 * it never returns NULL. */
#ifndef HK_ERROR_H
#define HK_ERROR_H

#if defined(__GNUC__)
#define HK_WUR __attribute__((warn_unused_result))
#else
#define HK_WUR
#endif

typedef enum {
    HK_OK = 0,
    HK_ERR_ARG,      /* invalid argument from the caller */
    HK_ERR_NOMEM,    /* allocation failed */
    HK_ERR_RAND,     /* the OS CSPRNG failed */
    HK_ERR_CRYPTO,   /* an underlying library call failed unexpectedly */
    HK_ERR_CURVE,    /* unknown or unsupported curve */
    HK_ERR_POINT,    /* point not on the curve, infinity, or badly encoded */
    HK_ERR_SCALAR,   /* scalar zero or not below the group order */
    HK_ERR_DECODE,   /* malformed message or record */
    HK_ERR_VERSION,  /* unknown protocol or record version */
    HK_ERR_MSG_TYPE, /* unexpected message type or order */
    HK_ERR_BINDING,  /* message belongs to another session, key or role */
    HK_ERR_TOO_BIG,  /* input exceeds its size bound */
    HK_ERR_STATE,    /* operation not valid in the current state */
    HK_ERR_COMMIT,   /* commitment opening does not match */
    HK_ERR_PROOF,    /* zero-knowledge proof rejected */
    HK_ERR_PAILLIER, /* invalid Paillier modulus or ciphertext */
    HK_ERR_KEY_MISMATCH, /* parties disagree on the public key */
    HK_ERR_SIG_ABORT,    /* final signature invalid: the peer is malicious */
    HK_ERR_SHARE,        /* stored key share malformed or inconsistent */
    HK_ERR_EPOCH,        /* key share version does not match the peer's */
    HK_ERR_PARAMS,       /* ring-Pedersen setup parameters invalid */
    /* Codes of the layers above mpc/ (client, server, transport). */
    HK_ERR_IO,         /* file or database I/O failed */
    HK_ERR_CONFIG,     /* configuration missing or invalid */
    HK_ERR_PIN,        /* wrong PIN */
    HK_ERR_PIN_LOCKED, /* too many wrong PINs */
    HK_ERR_NOT_FOUND,  /* no such key, token or session */
    HK_ERR_EXISTS,     /* already exists */
    HK_ERR_BUSY,       /* another signing session holds this key */
    HK_ERR_KEY_LOCKED, /* key locked after an invalid-signature abort */
    HK_ERR_SEAL,       /* sealed record fails authentication */
    HK_ERR_AUTH,       /* authentication (JWT) refused */
    HK_ERR_FORBIDDEN,  /* authenticated, but not allowed */
    HK_ERR_SESSION,    /* session unknown, expired or for another use */
    HK_ERR_NETWORK,    /* connection failed or dropped */
    HK_ERR_TLS,        /* TLS failure, certificate or pin mismatch */
    HK_ERR_TIMEOUT,    /* no answer in time */
    HK_ERR_SERVER,     /* the server reported an error */
    HK_ERR_RATE,       /* refused by a rate limit or policy */
    /* a transaction kind or feature the parsers (txparse/) do not sign */
    HK_ERR_TX_UNSUPPORTED,
    HK_ERR_BACKUP, /* the key's backup is missing or older than its share */
    HK_ERR_TPM,    /* TPM unreachable, or a TPM command failed */
    HK_ERR_TPM_FOREIGN, /* sealed to another TPM (or the TPM was cleared) */
    HK_ERR_ATTEST,      /* device attestation refused or not possible */
    HK_ERR__COUNT
} hk_err;

/* Returns a static message for `e`; unknown codes give "unknown error". */
const char *hk_strerror(hk_err e);

#endif
