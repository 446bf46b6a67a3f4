/* Fuzz target: the policy file of signing requests (server/policy/rules.h,
 * hk_rules_parse): sections, fields, lists, 256-bit decimals. A file that
 * parses is then asked for decisions on a fixed Ethereum transaction and a
 * raw digest (every rule path without a parse of its own), so a parsed
 * rule set is also exercised. Seeds: tests/fuzz/corpus/fuzz_rules. */
#include <stdint.h>
#include <string.h>

#include "server/policy/rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* chain 1, nonce 0, fees 1/2, gas 21000, to 0x11..11, value 5 */
    static const unsigned char tx[] = {
        0x02, 0xdf, 0x01, 0x80, 0x01, 0x02, 0x82, 0x52, 0x08, 0x94, 0x11,
        0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
        0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x05, 0x80, 0xc0};
    static const unsigned char kid[16] = {1, 2, 3};
    static const unsigned char pub[33] = {
        0x02, 0x79, 0xbe, 0x66, 0x7e, 0xf9, 0xdc, 0xbb, 0xac, 0x55, 0xa0,
        0x62, 0x95, 0xce, 0x87, 0x0b, 0x07, 0x02, 0x9b, 0xfc, 0xdb, 0x2d,
        0xce, 0x28, 0xd9, 0x59, 0xf2, 0x81, 0x5b, 0x16, 0xf8, 0x17, 0x98};
    unsigned char day[32] = {0};
    char why[256];
    hk_rule_refusal ref;
    hk_rules *r = NULL;
    hk_rule_req q;

    if (hk_rules_parse((const char *)data, size, "fuzz", &r, why) != HK_OK)
        return 0;
    memset(&q, 0, sizeof(q));
    q.kind = HK_TX_ETH;
    q.payload = tx;
    q.len = sizeof(tx);
    q.kid = kid;
    q.owner = "alice";
    q.pub = pub;
    (void)hk_rules_check(r, &q, day, &ref);
    q.kind = HK_TX_DIGEST;
    (void)hk_rules_check(r, &q, day, &ref);
    (void)hk_rules_approvals(r, kid, "alice");
    (void)hk_rules_is_approver(r, kid, "alice", "bob");
    hk_rules_free(r);
    return 0;
}
