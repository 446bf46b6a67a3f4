/* Transaction rules of signing requests (issue 19): the policy file.
 *
 * Owns the file's format, its strict parser and the decisions. The file
 * (`policy_file` in halfkeyd.conf, read again on SIGHUP) holds sections
 *
 *   [default]          every key
 *   [subject NAME]     the keys of one owner
 *   [key HEX]          one key (32 hex digits)
 *
 * of `name = value` lines (`#` comments). A key's rules are the default
 * section's, overridden field by field by its owner's section, then by its
 * own. Fields:
 *
 *   kinds = digest, btc, eth      what requests may sign (default: all)
 *   btc_networks = mainnet, testnet, regtest
 *   btc_max_amount = SAT          per transaction: outputs not paying back
 *                                 to the key's own address
 *   btc_max_amount_24h = SAT      the same summed over the key's requests
 *                                 signed in the last 24 hours, and this one
 *   btc_max_fee = SAT
 *   eth_chain_ids = 1, 11155111
 *   eth_max_value = WEI           per transaction (decimal, up to 2^256-1)
 *   eth_max_value_24h = WEI
 *   eth_max_fee = WEI             gas_limit * max_fee_per_gas
 *   allow_to = ADDR, ...          every destination (a Bitcoin output but
 *                                 the change, an Ethereum `to`) must be one
 *                                 of these (Ethereum: any case); a contract
 *                                 creation is then refused
 *   approvals = N                 approvals (POST /requests/ID/approve)
 *   approvers = SUB, ...          by these subjects (scope "approve"),
 *                                 before the owner's co-sign
 *   require_attestation = yes|no  a new key needs a device attestation at
 *                                 keygen (issue 22; [default] and
 *                                 [subject] sections: a key section has
 *                                 no key yet to name)
 *
 * Values are bounded (lists of 64 entries at most, a line of 1024 bytes, a
 * file of 256 KiB); an unknown field, a repeated field or section, a
 * malformed value: refused with "file:line: reason". Rules hold at request
 * time and again at sign time. Pure: the caller passes what the decision
 * needs (the parsed transaction, the amounts already signed). */
#ifndef HK_SERVER_RULES_H
#define HK_SERVER_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "mpc/transcript.h"
#include "txparse/request.h"

#define HK_RULES_FILE_MAX (256 * 1024)
#define HK_RULES_LIST_MAX 64

typedef struct hk_rules hk_rules;

/* Parses the policy text[0..len) (name: the file name in errors) into a
 * new *out; why[256] says "name:line: reason" on HK_ERR_CONFIG. */
HK_WUR hk_err hk_rules_parse(const char *text, size_t len, const char *name,
                             hk_rules **out, char *why);
/* Reads and parses the file at path. */
HK_WUR hk_err hk_rules_load(const char *path, hk_rules **out, char *why);
void hk_rules_free(hk_rules *r);

/* A refusal: a machine code and a message for the user. */
typedef struct {
    const char *code;
    char message[192];
} hk_rule_refusal;

/* The request to decide on: its kind, payload and network (Bitcoin), the
 * key (id, owner, compressed public key). */
typedef struct {
    hk_tx_kind kind;
    const unsigned char *payload;
    size_t len;
    const char *network; /* Bitcoin; NULL otherwise */
    const unsigned char *kid;
    const char *owner;
    const unsigned char *pub; /* 33 bytes */
} hk_rule_req;

/* The amount a request moves out (satoshi or wei, big-endian 32 bytes):
 * Bitcoin outputs that do not pay back to the key, Ethereum's value. */
HK_WUR hk_err hk_rules_amount(const hk_rule_req *q, unsigned char out[32]);

/* HK_OK if the rules allow q with `signed_24h` (the amount of the key's
 * requests of the same kind signed in the last 24 hours, big-endian 32
 * bytes) already out; HK_ERR_FORBIDDEN with *why otherwise. r NULL: no
 * rules, everything allowed. */
HK_WUR hk_err hk_rules_check(const hk_rules *r, const hk_rule_req *q,
                             const unsigned char signed_24h[32],
                             hk_rule_refusal *why);
/* The approvals the key needs (0: none) and whether `sub` is one of its
 * approvers. */
int hk_rules_approvals(const hk_rules *r, const unsigned char *kid,
                       const char *owner);
int hk_rules_is_approver(const hk_rules *r, const unsigned char *kid,
                         const char *owner, const char *sub);
/* 1 if the rules require a device attestation for sub's new keys. */
int hk_rules_attest_required(const hk_rules *r, const char *sub);

#endif
