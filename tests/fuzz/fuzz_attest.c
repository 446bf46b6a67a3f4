/* Fuzz target: what halfkeyd reads of a device attestation (the client's
 * bytes): the TPM structures (server/attest/tpm_wire.h), the POST /attest
 * body (server/http/bodies.h) and the answer check (attest.h) against an
 * AK parsed from the input. The first byte picks the parser. A parse that
 * succeeds stays within its input. Seeds: an AK and an EK public area
 * from swtpm (static). */
#include <stdlib.h>
#include <string.h>

#include "server/attest/attest.h"
#include "server/http/bodies.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

/* 1 if [p, p + n) lies inside [b, b + len). */
static int inside(const unsigned char *p, size_t n, const uint8_t *b,
                  size_t len)
{
    return n == 0 || (p >= b && p + n <= b + len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned char zero[32];
    char why[HK_ATT_WHY_MAX];
    hk_tpm_public pub;
    hk_tpm_quote q;
    hk_tpm_sig s;
    hk_attest_req rq;
    size_t half;

    if (size < 1)
        return 0;
    switch (data[0] % 4) {
    case 0:
        if (hk_tpm_public_parse(data + 1, size - 1, &pub) == HK_OK &&
            (!inside(pub.x, pub.xlen, data, size) ||
             !inside(pub.y, pub.ylen, data, size)))
            abort();
        break;
    case 1:
        if (hk_tpm_quote_parse(data + 1, size - 1, &q) == HK_OK &&
            (!inside(q.extra, q.extra_len, data, size) ||
             !inside(q.signer, q.signer_len, data, size)))
            abort();
        break;
    case 2:
        if (hk_tpm_sig_parse(data + 1, size - 1, &s) == HK_OK &&
            (!inside(s.r, s.rlen, data, size) ||
             !inside(s.s, s.slen, data, size)))
            abort();
        (void)hk_attest_req_decode(data + 1, size - 1, &rq);
        hk_attest_req_clear(&rq);
        break;
    default:
        /* an AK, then a quote and a signature: the answer check */
        half = (size - 1) / 2;
        (void)hk_att_answer_check(
            zero, data + 1, half, zero, sizeof(zero), data + 1 + half,
            (size - 1 - half) / 2, data + 1 + half + (size - 1 - half) / 2,
            size - 1 - half - (size - 1 - half) / 2, zero, why);
    }
    return 0;
}
