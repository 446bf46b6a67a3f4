/* Secrets stay out of jansson (mpc/share.c): encoding and decoding share
 * records never puts x, p or q into memory that jansson allocates, so
 * jansson's unwiped frees leave no copy of them on the heap.
 *
 * The program installs its own jansson allocator (json_set_alloc_funcs is
 * process global, hence a test program of its own): each block carries
 * its size in a header, and the free scans the block for the hex of every
 * known secret before wiping it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>

#include "mpc/codec.h"
#include "mpc/share.h"
#include "tests/unit/check.h"
#include "tests/unit/verify.h"
#include "tests/unit/driver.h"

#define MAX_SECRETS 8

static char secrets[MAX_SECRETS][2 * 512 + 1];
static size_t nsecrets;
static unsigned long blocks, hits;

typedef union {
    size_t n;
    max_align_t align;
} header;

static void *scan_malloc(size_t n)
{
    header *h = malloc(sizeof(header) + n);

    if (h == NULL)
        return NULL;
    h->n = n;
    blocks++;
    return h + 1;
}

static void scan_free(void *p)
{
    header *h;
    size_t i;

    if (p == NULL)
        return;
    h = (header *)p - 1;
    for (i = 0; i < nsecrets; i++)
        if (memmem(p, h->n, secrets[i], strlen(secrets[i])) != NULL)
            hits++;
    OPENSSL_cleanse(p, h->n);
    free(h);
}

static void add_secret(const unsigned char *b, size_t n)
{
    CHECK(nsecrets < MAX_SECRETS && n <= 512);
    hk_hex(b, n, secrets[nsecrets++]);
}

static void add_bn(const BIGNUM *v)
{
    unsigned char b[512];
    int n = BN_bn2bin(v, b);

    CHECK(n > 0);
    add_secret(b, (size_t)n);
}

/* Encodes s, decodes it, encodes again (byte-identical). */
static void round_trip(const hk_share *s)
{
    unsigned char *a = NULL, *b = NULL;
    size_t alen, blen;
    hk_share *d = NULL;

    CHECK_OK(hk_share_encode(s, &a, &alen));
    CHECK_OK(hk_share_decode(a, alen, &d));
    CHECK_OK(hk_share_encode(d, &b, &blen));
    CHECK(alen == blen && memcmp(a, b, alen) == 0);
    /* the record itself does hold the secrets (the caller's buffer) */
    CHECK(memmem(a, alen, secrets[0], 64) != NULL ||
          memmem(a, alen, secrets[nsecrets - 1], 64) != NULL);
    hk_share_free(d);
    OPENSSL_clear_free(a, alen);
    OPENSSL_clear_free(b, blen);
}

int main(void)
{
    hk_share *s1 = NULL, *s2 = NULL;
    hk_drive_stats st;
    unsigned long before;

    json_set_alloc_funcs(scan_malloc, scan_free);
    CHECK_OK(hk_drive_keygen(HK_CURVE_SECP256K1, 2048, hk_test_rped_secret(),
                             &s1, &s2, &st));
    add_secret(s1->x.b, HK_SCALAR_LEN);
    add_bn(hk_paillier_sk_p(s1->sk));
    add_bn(hk_paillier_sk_q(s1->sk));
    add_secret(s2->x.b, HK_SCALAR_LEN);
    before = blocks;
    hits = 0;
    round_trip(s1);
    round_trip(s2);
    CHECK(blocks > before); /* jansson did run, through this allocator */
    if (hits != 0)
        fprintf(stderr, "%lu jansson blocks held a secret\n", hits);
    CHECK(hits == 0);
    hk_share_free(s1);
    hk_share_free(s2);
    printf("test_secrets: ok\n");
    return 0;
}
