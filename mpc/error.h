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
    HK_ERR_ARG,         /* invalid argument from the caller */
    HK_ERR_NOMEM,       /* allocation failed */
    HK_ERR_RAND,        /* the OS CSPRNG failed */
    HK_ERR_CRYPTO,      /* an underlying library call failed unexpectedly */
    HK_ERR_CURVE,       /* unknown or unsupported curve */
    HK_ERR_POINT,       /* point not on the curve, infinity, or badly encoded */
    HK_ERR_SCALAR,      /* scalar zero or not below the group order */
    HK_ERR_DECODE,      /* malformed message or record */
    HK_ERR_VERSION,     /* unknown protocol or record version */
    HK_ERR_MSG_TYPE,    /* unexpected message type or order */
    HK_ERR_BINDING,     /* message belongs to another session, key or role */
    HK_ERR_TOO_BIG,     /* input exceeds its size bound */
    HK_ERR_STATE,       /* operation not valid in the current state */
    HK_ERR_COMMIT,      /* commitment opening does not match */
    HK_ERR_PROOF,       /* zero-knowledge proof rejected */
    HK_ERR_PAILLIER,    /* invalid Paillier modulus or ciphertext */
    HK_ERR_KEY_MISMATCH,/* parties disagree on the public key */
    HK_ERR_SIG_ABORT,   /* final signature invalid: the peer is malicious */
    HK_ERR_SHARE,       /* stored key share malformed or inconsistent */
    HK_ERR_EPOCH,       /* key share version does not match the peer's */
    HK_ERR_PARAMS,      /* ring-Pedersen setup parameters invalid */
    HK_ERR__COUNT
} hk_err;

/* Returns a static message for `e`; unknown codes give "unknown error". */
const char *hk_strerror(hk_err e);

#endif
