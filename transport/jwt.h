/* JWT verification and minting on libjwt 1.10.
 *
 * Owns the server's token policy (DESIGN.md sections 3 and 7): the
 * algorithm is pinned by configuration (ES256 or RS256 with a public key,
 * HS256 with a secret), the signature is checked with the configured key
 * and then the token's own "alg" must equal the pinned one (libjwt would
 * verify an HS256 token HMAC'd with a public-key PEM, and accepts any
 * signature when given no key); "exp" is required, "nbf" honoured, both with
 * a small skew; "iss" and "aud" must match; "sub" must be a well-formed
 * subject. Every failure is HK_ERR_AUTH: callers answer 401 without saying
 * which check failed. */
#ifndef HK_JWT_H
#define HK_JWT_H

#include <stddef.h>

#include "common/error.h"

#define HK_JWT_MAX 8192    /* bytes of a compact token */
#define HK_JWT_SUB_MAX 128 /* bytes of a subject, NUL excluded */

typedef struct hk_jwt_verifier hk_jwt_verifier;

/* alg: "ES256", "RS256" or "HS256"; key: PEM public key or the secret.
 * A verifier may be shared by threads. It remembers the last 64 tokens it
 * accepted (by SHA-256): the same token again skips the signature check
 * (libjwt parses the key for each one), its exp and nbf are checked at
 * every call. */
HK_WUR hk_err hk_jwt_verifier_new(const char *alg, const void *key,
                                  size_t keylen, const char *iss,
                                  const char *aud, long skew,
                                  hk_jwt_verifier **out);
void hk_jwt_verifier_free(hk_jwt_verifier *v);
/* What a token may do: its "scope" claim (space-separated words, RFC
 * 8693). A token without the claim is the key owner's (HK_SCOPE_OWNER, as
 * every token before scopes); with it, only the words it lists count:
 * "sign" the owner's rights, "request" ask for signatures
 * (POST /requests), "approve" approve requests of other owners. Other
 * words are ignored. */
#define HK_SCOPE_OWNER 1u
#define HK_SCOPE_REQUEST 2u
#define HK_SCOPE_APPROVE 4u
#define HK_JWT_SCOPE_MAX 256 /* bytes of a scope claim */

/* Verifies at time `now` (seconds); writes the subject (NUL-terminated)
 * into sub[HK_JWT_SUB_MAX + 1] and, if exp is not NULL, the expiry. A
 * token without the owner's scope is refused (HK_ERR_AUTH): this is the
 * check of every endpoint but the requests'. */
HK_WUR hk_err hk_jwt_verify(const hk_jwt_verifier *v, const char *token,
                            long now, char *sub, long *exp);
/* Why a token was refused, for the server's log only (the client gets a
 * bare 401): the failed check, and the subject once the signature
 * verified ("-" before, or when malformed). */
typedef struct {
    const char *reason; /* malformed, signature, algorithm, expired,
                         * not_yet_valid, issuer, audience, subject */
    char sub[HK_JWT_SUB_MAX + 1];
} hk_jwt_why;
/* As hk_jwt_verify; on HK_ERR_AUTH, *why says which check failed. */
HK_WUR hk_err hk_jwt_verify_why(const hk_jwt_verifier *v, const char *token,
                                long now, char *sub, long *exp,
                                hk_jwt_why *why);
/* As hk_jwt_verify_why for any scope: *scopes receives the HK_SCOPE_*
 * bits (at least one; a token granting none is refused). */
HK_WUR hk_err hk_jwt_verify_scoped(const hk_jwt_verifier *v, const char *token,
                                   long now, char *sub, long *exp,
                                   unsigned *scopes, hk_jwt_why *why);
/* Mints a token (for `halfkeyd token` and tests): key is the PEM private
 * key (ES256/RS256) or the secret (HS256). *out: free with free(). */
HK_WUR hk_err hk_jwt_mint(const char *alg, const void *key, size_t keylen,
                          const char *iss, const char *aud, const char *sub,
                          long now, long ttl, char **out);
/* The same with a "scope" claim (NULL: none, an owner's token). */
HK_WUR hk_err hk_jwt_mint_scoped(const char *alg, const void *key,
                                 size_t keylen, const char *iss,
                                 const char *aud, const char *sub,
                                 const char *scope, long now, long ttl,
                                 char **out);
/* 1 if s is a valid subject: 1..HK_JWT_SUB_MAX of [A-Za-z0-9._@:+-]. */
int hk_sub_valid(const char *s);

#endif
