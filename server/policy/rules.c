/* Transaction rules of signing requests: the policy file's parser and the
 * decisions (see rules.h). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bn.h>

#include "common/hex.h"
#include "server/policy/rules.h"
#include "transport/jwt.h"
#include "txparse/eth.h"
#include "txparse/psbt.h"

#define HK_RULES_LINE_MAX 1024
#define HK_RULES_SECTIONS_MAX 256

enum {
    F_KINDS = 1 << 0,
    F_NETS = 1 << 1,
    F_BTC_MAX = 1 << 2,
    F_BTC_24H = 1 << 3,
    F_BTC_FEE = 1 << 4,
    F_CHAINS = 1 << 5,
    F_ETH_MAX = 1 << 6,
    F_ETH_24H = 1 << 7,
    F_ETH_FEE = 1 << 8,
    F_ALLOW = 1 << 9,
    F_APPROVALS = 1 << 10,
    F_APPROVERS = 1 << 11,
    F_ATTEST = 1 << 12
};

typedef struct {
    unsigned set; /* F_* given */
    unsigned kinds, nets;
    unsigned char btc_max[32], btc_24h[32], btc_fee[32];
    uint64_t chains[HK_RULES_LIST_MAX];
    size_t n_chains;
    unsigned char eth_max[32], eth_24h[32], eth_fee[32];
    char allow[HK_RULES_LIST_MAX][HK_BTC_ADDR_MAX];
    size_t n_allow;
    unsigned approvals;
    char approvers[HK_RULES_LIST_MAX][HK_JWT_SUB_MAX + 1];
    size_t n_approvers;
    int attest; /* require_attestation */
} hk_rset;

typedef enum { HK_SEC_DEFAULT, HK_SEC_SUBJECT, HK_SEC_KEY } hk_sec_type;

typedef struct {
    hk_sec_type type;
    char sub[HK_JWT_SUB_MAX + 1];
    unsigned char kid[HK_ID_LEN];
    hk_rset rs;
} hk_rsection;

struct hk_rules {
    hk_rsection *s;
    size_t n;
};

/* --- values --------------------------------------------------------------- */

/* The next comma-separated item of *p (spaces trimmed) into out[cap];
 * 0 at the end or for an empty or too long item. */
static int hk_item(const char **p, char *out, size_t cap, int *bad)
{
    const char *s = *p, *e;
    size_t n;

    while (*s == ' ' || *s == '\t')
        s++;
    if (*s == 0)
        return 0;
    e = strchr(s, ',');
    n = e != NULL ? (size_t)(e - s) : strlen(s);
    *p = e != NULL ? e + 1 : s + n;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n == 0 || n >= cap) {
        *bad = 1;
        return 0;
    }
    memcpy(out, s, n);
    out[n] = 0;
    return 1;
}

/* A decimal of 1..78 digits below 2^256 into be[32]. */
static int hk_dec256(const char *s, unsigned char be[32])
{
    BIGNUM *b = NULL;
    size_t n = strlen(s);
    int ok;

    if (n == 0 || n > 78 || strspn(s, "0123456789") != n ||
        (n > 1 && s[0] == '0'))
        return 0;
    ok = BN_dec2bn(&b, s) == (int)n && BN_num_bits(b) <= 256 &&
         BN_bn2binpad(b, be, 32) == 32;
    BN_free(b);
    return ok;
}

static int hk_u64(const char *s, uint64_t *v)
{
    char *end;

    if (*s == 0 || strspn(s, "0123456789") != strlen(s) || strlen(s) > 20)
        return 0;
    errno = 0;
    *v = strtoull(s, &end, 10);
    return errno == 0 && *end == 0;
}

static int hk_kinds(const char *v, unsigned *out)
{
    char it[16];
    int bad = 0;

    *out = 0;
    while (hk_item(&v, it, sizeof(it), &bad)) {
        if (strcmp(it, "digest") == 0)
            *out |= 1u << HK_TX_DIGEST;
        else if (strcmp(it, "btc") == 0)
            *out |= 1u << HK_TX_BTC_PSBT;
        else if (strcmp(it, "eth") == 0)
            *out |= 1u << HK_TX_ETH;
        else
            return 0;
    }
    return !bad;
}

static int hk_nets(const char *v, unsigned *out)
{
    hk_btc_net net;
    char it[16];
    int bad = 0;

    *out = 0;
    while (hk_item(&v, it, sizeof(it), &bad)) {
        if (hk_btc_net_parse(it, &net) != HK_OK)
            return 0;
        *out |= 1u << net;
    }
    return !bad && *out != 0;
}

static int hk_chains(const char *v, hk_rset *rs)
{
    char it[24];
    int bad = 0;

    rs->n_chains = 0;
    while (hk_item(&v, it, sizeof(it), &bad)) {
        if (rs->n_chains == HK_RULES_LIST_MAX ||
            !hk_u64(it, &rs->chains[rs->n_chains]) ||
            rs->chains[rs->n_chains] == 0)
            return 0;
        rs->n_chains++;
    }
    return !bad && rs->n_chains > 0;
}

/* Addresses: printable, no spaces; Ethereum ones kept lower-case. */
static int hk_allow(const char *v, hk_rset *rs)
{
    char it[HK_BTC_ADDR_MAX];
    int bad = 0;
    size_t i;

    rs->n_allow = 0;
    while (hk_item(&v, it, sizeof(it), &bad)) {
        if (rs->n_allow == HK_RULES_LIST_MAX)
            return 0;
        for (i = 0; it[i] != 0; i++)
            if (!isalnum((unsigned char)it[i]))
                return 0;
        if (strncmp(it, "0x", 2) == 0 || strncmp(it, "0X", 2) == 0)
            for (i = 0; it[i] != 0; i++)
                it[i] = (char)tolower((unsigned char)it[i]);
        memcpy(rs->allow[rs->n_allow++], it, sizeof(it));
    }
    return !bad && rs->n_allow > 0;
}

static int hk_approvers(const char *v, hk_rset *rs)
{
    char it[HK_JWT_SUB_MAX + 1];
    int bad = 0;

    rs->n_approvers = 0;
    while (hk_item(&v, it, sizeof(it), &bad)) {
        if (rs->n_approvers == HK_RULES_LIST_MAX || !hk_sub_valid(it))
            return 0;
        memcpy(rs->approvers[rs->n_approvers++], it, sizeof(it));
    }
    return !bad && rs->n_approvers > 0;
}

/* One `name = value` into rs; 0 with why for a bad one. */
static int hk_field(hk_rset *rs, const char *name, const char *v,
                    const char **why)
{
    static const struct {
        const char *name;
        unsigned flag;
    } names[] = {{"kinds", F_KINDS},
                 {"btc_networks", F_NETS},
                 {"btc_max_amount", F_BTC_MAX},
                 {"btc_max_amount_24h", F_BTC_24H},
                 {"btc_max_fee", F_BTC_FEE},
                 {"eth_chain_ids", F_CHAINS},
                 {"eth_max_value", F_ETH_MAX},
                 {"eth_max_value_24h", F_ETH_24H},
                 {"eth_max_fee", F_ETH_FEE},
                 {"allow_to", F_ALLOW},
                 {"approvals", F_APPROVALS},
                 {"approvers", F_APPROVERS},
                 {"require_attestation", F_ATTEST}};
    unsigned flag = 0;
    uint64_t n = 0;
    size_t i;
    int ok;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(names[i].name, name) == 0)
            flag = names[i].flag;
    *why = "unknown field";
    if (flag == 0)
        return 0;
    *why = "field given twice in the section";
    if (rs->set & flag)
        return 0;
    rs->set |= flag;
    *why = "malformed value";
    switch (flag) {
    case F_KINDS:
        return hk_kinds(v, &rs->kinds);
    case F_NETS:
        return hk_nets(v, &rs->nets);
    case F_BTC_MAX:
        return hk_dec256(v, rs->btc_max);
    case F_BTC_24H:
        return hk_dec256(v, rs->btc_24h);
    case F_BTC_FEE:
        return hk_dec256(v, rs->btc_fee);
    case F_CHAINS:
        return hk_chains(v, rs);
    case F_ETH_MAX:
        return hk_dec256(v, rs->eth_max);
    case F_ETH_24H:
        return hk_dec256(v, rs->eth_24h);
    case F_ETH_FEE:
        return hk_dec256(v, rs->eth_fee);
    case F_ALLOW:
        return hk_allow(v, rs);
    case F_APPROVALS:
        ok = hk_u64(v, &n) && n <= HK_RULES_LIST_MAX;
        rs->approvals = (unsigned)n;
        return ok;
    case F_ATTEST:
        rs->attest = strcmp(v, "yes") == 0;
        return rs->attest || strcmp(v, "no") == 0;
    default:
        return hk_approvers(v, rs);
    }
}

/* --- the file ------------------------------------------------------------- */

/* "[default]", "[subject NAME]" or "[key HEX]" (no duplicate) into a new
 * section of r. */
static int hk_section(hk_rules *r, char *line, const char **why)
{
    hk_rsection sec, *grown;
    size_t n = strlen(line), i;

    *why = "malformed section header";
    if (n < 3 || line[n - 1] != ']')
        return 0;
    line[n - 1] = 0;
    memset(&sec, 0, sizeof(sec));
    if (strcmp(line + 1, "default") == 0)
        sec.type = HK_SEC_DEFAULT;
    else if (strncmp(line + 1, "subject ", 8) == 0 && hk_sub_valid(line + 9) &&
             strlen(line + 9) <= HK_JWT_SUB_MAX) {
        sec.type = HK_SEC_SUBJECT;
        memcpy(sec.sub, line + 9, strlen(line + 9) + 1);
    } else if (strncmp(line + 1, "key ", 4) == 0 &&
               strlen(line + 5) == 2 * HK_ID_LEN &&
               hk_unhex(line + 5, 2 * HK_ID_LEN, sec.kid, HK_ID_LEN)) {
        sec.type = HK_SEC_KEY;
    } else {
        return 0;
    }
    *why = "section given twice";
    for (i = 0; i < r->n; i++)
        if (r->s[i].type == sec.type && strcmp(r->s[i].sub, sec.sub) == 0 &&
            memcmp(r->s[i].kid, sec.kid, HK_ID_LEN) == 0)
            return 0;
    *why = "too many sections";
    if (r->n == HK_RULES_SECTIONS_MAX ||
        (grown = realloc(r->s, (r->n + 1) * sizeof(*grown))) == NULL)
        return 0;
    r->s = grown;
    r->s[r->n++] = sec;
    return 1;
}

/* One line (NUL-terminated, trimmed). */
static int hk_line(hk_rules *r, char *line, const char **why)
{
    char *eq, *name = line, *v;
    size_t n;

    if (line[0] == 0 || line[0] == '#')
        return 1;
    if (line[0] == '[')
        return hk_section(r, line, why);
    *why = "a field before any section";
    if (r->n == 0)
        return 0;
    *why = "expected `name = value`";
    if ((eq = strchr(line, '=')) == NULL)
        return 0;
    *eq = 0;
    v = eq + 1;
    for (n = strlen(name); n > 0 && name[n - 1] == ' '; n--)
        name[n - 1] = 0;
    while (*v == ' ')
        v++;
    if (name[0] == 0 || *v == 0)
        return 0;
    return hk_field(&r->s[r->n - 1].rs, name, v, why);
}

hk_err hk_rules_parse(const char *text, size_t len, const char *name,
                      hk_rules **out, char *why)
{
    char line[HK_RULES_LINE_MAX + 1];
    const char *p = text, *end = text + len, *nl, *reason = "";
    unsigned lineno = 0;
    hk_rules *r;
    size_t n;

    *out = NULL;
    if (len > HK_RULES_FILE_MAX) {
        snprintf(why, 256, "%.200s: larger than 256 KiB", name);
        return HK_ERR_CONFIG;
    }
    if ((r = calloc(1, sizeof(*r))) == NULL)
        return HK_ERR_NOMEM;
    while (p < end) {
        lineno++;
        nl = memchr(p, '\n', (size_t)(end - p));
        n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        reason = "line too long or not printable";
        if (n > HK_RULES_LINE_MAX)
            goto bad;
        memcpy(line, p, n);
        line[n] = 0;
        while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t' ||
                         line[n - 1] == '\r'))
            line[--n] = 0;
        if (strlen(line) != n)
            goto bad;
        for (n = 0; line[n] != 0; n++)
            if ((unsigned char)line[n] < 0x20 && line[n] != '\t')
                goto bad;
        if (!hk_line(r, line + strspn(line, " \t"), &reason))
            goto bad;
        p = nl != NULL ? nl + 1 : end;
    }
    *out = r;
    return HK_OK;
bad:
    snprintf(why, 256, "%.200s:%u: %s", name, lineno, reason);
    hk_rules_free(r);
    return HK_ERR_CONFIG;
}

hk_err hk_rules_load(const char *path, hk_rules **out, char *why)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;
    hk_err e = HK_ERR_NOMEM;

    *out = NULL;
    if (f == NULL) {
        snprintf(why, 256, "%.200s: cannot open the policy file", path);
        return HK_ERR_CONFIG;
    }
    if ((buf = malloc(HK_RULES_FILE_MAX + 1)) != NULL) {
        n = fread(buf, 1, HK_RULES_FILE_MAX + 1, f);
        e = ferror(f) ? HK_ERR_IO : hk_rules_parse(buf, n, path, out, why);
    }
    fclose(f);
    free(buf);
    return e;
}

void hk_rules_free(hk_rules *r)
{
    if (r == NULL)
        return;
    free(r->s);
    free(r);
}

/* --- decisions ------------------------------------------------------------ */

static void hk_merge(hk_rset *to, const hk_rset *from)
{
#define HK_TAKE(flag, stmt)                                                    \
    if (from->set & (flag))                                                    \
    stmt
    HK_TAKE(F_KINDS, to->kinds = from->kinds);
    HK_TAKE(F_NETS, to->nets = from->nets);
    HK_TAKE(F_BTC_MAX, memcpy(to->btc_max, from->btc_max, 32));
    HK_TAKE(F_BTC_24H, memcpy(to->btc_24h, from->btc_24h, 32));
    HK_TAKE(F_BTC_FEE, memcpy(to->btc_fee, from->btc_fee, 32));
    HK_TAKE(F_CHAINS, {
        memcpy(to->chains, from->chains, sizeof(to->chains));
        to->n_chains = from->n_chains;
    });
    HK_TAKE(F_ETH_MAX, memcpy(to->eth_max, from->eth_max, 32));
    HK_TAKE(F_ETH_24H, memcpy(to->eth_24h, from->eth_24h, 32));
    HK_TAKE(F_ETH_FEE, memcpy(to->eth_fee, from->eth_fee, 32));
    HK_TAKE(F_ALLOW, {
        memcpy(to->allow, from->allow, sizeof(to->allow));
        to->n_allow = from->n_allow;
    });
    HK_TAKE(F_APPROVALS, to->approvals = from->approvals);
    HK_TAKE(F_ATTEST, to->attest = from->attest);
    HK_TAKE(F_APPROVERS, {
        memcpy(to->approvers, from->approvers, sizeof(to->approvers));
        to->n_approvers = from->n_approvers;
    });
#undef HK_TAKE
    to->set |= from->set;
}

/* The key's rules: default, then its owner's section, then its own. */
static void hk_effective(const hk_rules *r, const unsigned char *kid,
                         const char *owner, hk_rset *out)
{
    hk_sec_type t;
    size_t i;

    memset(out, 0, sizeof(*out));
    for (t = HK_SEC_DEFAULT; r != NULL && t <= HK_SEC_KEY; t++)
        for (i = 0; i < r->n; i++)
            if (r->s[i].type == t &&
                (t == HK_SEC_DEFAULT ||
                 (t == HK_SEC_SUBJECT && strcmp(r->s[i].sub, owner) == 0) ||
                 (t == HK_SEC_KEY && memcmp(r->s[i].kid, kid, HK_ID_LEN) == 0)))
                hk_merge(out, &r->s[i].rs);
}

static void hk_u256_of(uint64_t v, unsigned char be[32])
{
    int i;

    memset(be, 0, 32);
    for (i = 31; i >= 24; i--, v >>= 8)
        be[i] = (unsigned char)(v & 0xff);
}

/* The P2WPKH script of the key: what change pays to. */
static void hk_own_script(const unsigned char pub[33], unsigned char spk[22])
{
    spk[0] = 0x00;
    spk[1] = 0x14;
    hk_hash160(pub, 33, spk + 2);
}

hk_err hk_rules_amount(const hk_rule_req *q, unsigned char out[32])
{
    unsigned char own[22], add[32];
    hk_psbt *ps = NULL;
    hk_eth_tx *tx = NULL;
    hk_btc_net net;
    hk_err e = HK_OK;
    size_t i;

    memset(out, 0, 32);
    if (q->kind == HK_TX_ETH) {
        if ((e = hk_eth_tx_parse(q->payload, q->len, &tx, NULL, 0)) == HK_OK)
            memcpy(out, tx->value, 32);
        hk_eth_tx_free(tx);
        return e;
    }
    if (q->kind != HK_TX_BTC_PSBT)
        return HK_OK;
    hk_own_script(q->pub, own);
    if ((e = hk_btc_net_parse(q->network, &net)) != HK_OK ||
        (e = hk_psbt_parse(q->payload, q->len, net, &ps, NULL, 0)) != HK_OK)
        return e;
    for (i = 0; i < ps->n_out; i++) {
        if (ps->out[i].spk_len == sizeof(own) &&
            memcmp(ps->out[i].spk, own, sizeof(own)) == 0)
            continue; /* change */
        hk_u256_of(ps->out[i].amount, add);
        (void)hk_u256_add(out, add, out); /* at most 21e6 BTC each */
    }
    hk_psbt_free(ps);
    return HK_OK;
}

static hk_err hk_refuse(hk_rule_refusal *why, const char *code, const char *msg)
{
    why->code = code;
    snprintf(why->message, sizeof(why->message), "%s", msg);
    return HK_ERR_FORBIDDEN;
}

static int hk_allowed(const hk_rset *rs, const char *addr)
{
    size_t i;

    for (i = 0; i < rs->n_allow; i++)
        if (strcasecmp(rs->allow[i], addr) == 0)
            return 1;
    return 0;
}

/* The amount and 24-hour rules, shared by both chains. */
static hk_err hk_amounts(const hk_rset *rs, unsigned max_flag,
                         const unsigned char *max, unsigned day_flag,
                         const unsigned char *day, const unsigned char amt[32],
                         const unsigned char signed_24h[32],
                         hk_rule_refusal *why)
{
    unsigned char total[32];

    if ((rs->set & max_flag) && memcmp(amt, max, 32) > 0)
        return hk_refuse(why, "amount_over_limit",
                         "the amount is above the key's limit per "
                         "transaction");
    if ((rs->set & day_flag) &&
        (!hk_u256_add(amt, signed_24h, total) || memcmp(total, day, 32) > 0))
        return hk_refuse(why, "daily_limit",
                         "the amount with what the key signed in the last "
                         "24 hours is above its daily limit");
    return HK_OK;
}

static hk_err hk_check_btc(const hk_rset *rs, const hk_rule_req *q,
                           const unsigned char signed_24h[32],
                           hk_rule_refusal *why)
{
    unsigned char own[22], amt[32], fee[32];
    hk_psbt *ps = NULL;
    hk_btc_net net;
    size_t i;
    hk_err e;

    if (hk_btc_net_parse(q->network, &net) != HK_OK ||
        hk_psbt_parse(q->payload, q->len, net, &ps, NULL, 0) != HK_OK)
        return hk_refuse(why, "bad_transaction", "the PSBT does not parse");
    e = HK_OK;
    if ((rs->set & F_NETS) && !(rs->nets & (1u << net)))
        e = hk_refuse(why, "network_not_allowed",
                      "the key may not sign on this Bitcoin network");
    hk_own_script(q->pub, own);
    for (i = 0; e == HK_OK && (rs->set & F_ALLOW) && i < ps->n_out; i++)
        if (!(ps->out[i].spk_len == sizeof(own) &&
              memcmp(ps->out[i].spk, own, sizeof(own)) == 0) &&
            !hk_allowed(rs, ps->out[i].address))
            e = hk_refuse(why, "destination_not_allowed",
                          "an output pays to an address off the key's "
                          "allow-list");
    hk_u256_of(ps->fee, fee);
    if (e == HK_OK && (rs->set & F_BTC_FEE) && memcmp(fee, rs->btc_fee, 32) > 0)
        e = hk_refuse(why, "fee_over_limit", "the fee is above the key's cap");
    hk_psbt_free(ps);
    if (e == HK_OK && (e = hk_rules_amount(q, amt)) == HK_OK)
        e = hk_amounts(rs, F_BTC_MAX, rs->btc_max, F_BTC_24H, rs->btc_24h, amt,
                       signed_24h, why);
    return e;
}

static hk_err hk_check_eth(const hk_rset *rs, const hk_rule_req *q,
                           const unsigned char signed_24h[32],
                           hk_rule_refusal *why)
{
    char to[HK_ETH_ADDR_STR];
    hk_eth_tx *tx = NULL;
    hk_err e = HK_OK;
    size_t i;
    int chain_ok = !(rs->set & F_CHAINS);

    if (hk_eth_tx_parse(q->payload, q->len, &tx, NULL, 0) != HK_OK)
        return hk_refuse(why, "bad_transaction",
                         "the transaction does not parse");
    for (i = 0; i < rs->n_chains && !chain_ok; i++)
        chain_ok = rs->chains[i] == tx->chain_id;
    if (!chain_ok)
        e = hk_refuse(why, "network_not_allowed",
                      "the key may not sign on this chain");
    else if ((rs->set & F_ALLOW) && tx->create)
        e = hk_refuse(why, "destination_not_allowed",
                      "a contract creation has no allowed destination");
    else if (rs->set & F_ALLOW) {
        hk_eth_address_str(tx->to, to);
        if (!hk_allowed(rs, to))
            e = hk_refuse(why, "destination_not_allowed",
                          "the recipient is off the key's allow-list");
    }
    if (e == HK_OK && (rs->set & F_ETH_FEE) &&
        memcmp(tx->max_fee_total, rs->eth_fee, 32) > 0)
        e = hk_refuse(why, "fee_over_limit",
                      "gas limit times max fee per gas is above the key's "
                      "cap");
    if (e == HK_OK)
        e = hk_amounts(rs, F_ETH_MAX, rs->eth_max, F_ETH_24H, rs->eth_24h,
                       tx->value, signed_24h, why);
    hk_eth_tx_free(tx);
    return e;
}

hk_err hk_rules_check(const hk_rules *r, const hk_rule_req *q,
                      const unsigned char signed_24h[32], hk_rule_refusal *why)
{
    hk_rset rs;

    if (r == NULL)
        return HK_OK;
    hk_effective(r, q->kid, q->owner, &rs);
    if ((rs.set & F_KINDS) && !(rs.kinds & (1u << q->kind)))
        return hk_refuse(why, "kind_not_allowed",
                         q->kind == HK_TX_DIGEST
                             ? "raw digests are not allowed for this key"
                             : "this kind of transaction is not allowed for "
                               "this key");
    if (q->kind == HK_TX_BTC_PSBT)
        return hk_check_btc(&rs, q, signed_24h, why);
    if (q->kind == HK_TX_ETH)
        return hk_check_eth(&rs, q, signed_24h, why);
    return HK_OK;
}

int hk_rules_approvals(const hk_rules *r, const unsigned char *kid,
                       const char *owner)
{
    hk_rset rs;

    hk_effective(r, kid, owner, &rs);
    return (int)rs.approvals;
}

int hk_rules_is_approver(const hk_rules *r, const unsigned char *kid,
                         const char *owner, const char *sub)
{
    hk_rset rs;
    size_t i;

    hk_effective(r, kid, owner, &rs);
    for (i = 0; i < rs.n_approvers; i++)
        if (strcmp(rs.approvers[i], sub) == 0)
            return 1;
    return 0;
}

int hk_rules_attest_required(const hk_rules *r, const char *sub)
{
    static const unsigned char no_key[HK_ID_LEN]; /* keygen: no key yet */
    hk_rset rs;

    if (r == NULL)
        return 0;
    hk_effective(r, no_key, sub, &rs);
    return rs.attest;
}
