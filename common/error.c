/* Messages for hk_err. */
#include "common/error.h"

static const char *const hk_error_msgs[HK_ERR__COUNT] = {
    [HK_OK] = "success",
    [HK_ERR_ARG] = "invalid argument",
    [HK_ERR_NOMEM] = "out of memory",
    [HK_ERR_RAND] = "random number generator failed",
    [HK_ERR_CRYPTO] = "cryptographic library failure",
    [HK_ERR_CURVE] = "unsupported curve",
    [HK_ERR_POINT] = "invalid curve point",
    [HK_ERR_SCALAR] = "invalid scalar",
    [HK_ERR_DECODE] = "malformed message",
    [HK_ERR_VERSION] = "unsupported version",
    [HK_ERR_MSG_TYPE] = "unexpected message type",
    [HK_ERR_BINDING] = "message bound to another session, key or role",
    [HK_ERR_TOO_BIG] = "input too large",
    [HK_ERR_STATE] = "operation not valid in this state",
    [HK_ERR_COMMIT] = "commitment opening mismatch",
    [HK_ERR_PROOF] = "zero-knowledge proof rejected",
    [HK_ERR_PAILLIER] = "invalid Paillier modulus or ciphertext",
    [HK_ERR_KEY_MISMATCH] = "public key mismatch between parties",
    [HK_ERR_SIG_ABORT] = "abort: invalid signature (peer is malicious)",
    [HK_ERR_SHARE] = "malformed or inconsistent key share",
    [HK_ERR_EPOCH] = "key share version mismatch",
    [HK_ERR_PARAMS] = "invalid setup parameters",
    [HK_ERR_IO] = "input/output error",
    [HK_ERR_CONFIG] = "invalid or missing configuration",
    [HK_ERR_PIN] = "wrong PIN",
    [HK_ERR_PIN_LOCKED] = "PIN locked after too many attempts",
    [HK_ERR_NOT_FOUND] = "not found",
    [HK_ERR_EXISTS] = "already exists",
    [HK_ERR_BUSY] = "key busy: another signing session is running",
    [HK_ERR_KEY_LOCKED] = "key locked (an invalid signature from the server, "
                          "or an interrupted one)",
    [HK_ERR_SEAL] = "sealed record failed authentication",
    [HK_ERR_AUTH] = "authentication refused",
    [HK_ERR_FORBIDDEN] = "forbidden",
    [HK_ERR_SESSION] = "session unknown or expired",
    [HK_ERR_NETWORK] = "network error",
    [HK_ERR_TLS] = "TLS error or certificate pin mismatch",
    [HK_ERR_TIMEOUT] = "timed out",
    [HK_ERR_SERVER] = "server error",
    [HK_ERR_RATE] = "refused by rate limit or policy",
    [HK_ERR_TX_UNSUPPORTED] = "transaction kind or feature not supported",
    [HK_ERR_BACKUP] = "key backup missing for the new share",
    [HK_ERR_TPM] = "TPM unreachable or TPM command failed",
    [HK_ERR_TPM_FOREIGN] =
        "token sealed to another TPM (or this TPM was cleared)",
    [HK_ERR_ATTEST] = "device attestation refused",
};

const char *hk_strerror(hk_err e)
{
    if ((unsigned)e >= HK_ERR__COUNT || hk_error_msgs[e] == 0)
        return "unknown error";
    return hk_error_msgs[e];
}
