/* Fuzz target: the client keystore's records (client/keystore.h). Each
 * input is written as
 *  - the key file keys/fuzz.json of a token (a copy of the fixture token,
 *    made once), read with hk_ks_key_info and hk_ks_load_share by a handle
 *    logged in with the fixture's PIN (so the seed key file authenticates
 *    and its share is decoded) and with hk_ks_key_info and hk_ks_list by a
 *    logged-out one;
 *  - the token.json of a second token directory, opened with hk_ks_open
 *    and read with hk_ks_token_info (no login: the scrypt parameters come
 *    from the file).
 * A share that loads must match the file's public metadata. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "client/keystore.h"
#include "tests/fuzz/fuzz_common.h"

static char tok[4096], tok2[4096], keyfile[4096], tokfile[4096];
static hk_ks *ks_in, *ks_out;

static void make_token_dir(const char *dir)
{
    char keys[4096];

    snprintf(keys, sizeof(keys), "%s/keys", dir);
    if (mkdir(dir, 0700) != 0 || mkdir(keys, 0700) != 0)
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char *dir = hk_fuzz_tmpdir(), path[4096];
    unsigned char *t;
    size_t len;

    (void)argc;
    (void)argv;
    hk_fuzz_rmtree_at_exit(dir);
    snprintf(tok, sizeof(tok), "%s/token", dir);
    snprintf(tok2, sizeof(tok2), "%s/token2", dir);
    snprintf(keyfile, sizeof(keyfile), "%s/keys/%s.json", tok,
             HK_FUZZ_KS_LABEL);
    snprintf(tokfile, sizeof(tokfile), "%s/token.json", tok2);
    free(dir);
    make_token_dir(tok);
    make_token_dir(tok2);
    t = hk_fuzz_fixture("token.json", &len);
    snprintf(path, sizeof(path), "%s/token.json", tok);
    hk_fuzz_write(path, t, len);
    free(t);
    if (hk_ks_open(tok, &ks_in) != HK_OK ||
        hk_ks_login(ks_in, HK_FUZZ_KS_PIN) != HK_OK ||
        hk_ks_open(tok, &ks_out) != HK_OK)
        abort();
    return 0;
}

static void key_file(void)
{
    hk_ks_keyinfo info, *list = NULL;
    hk_share *s = NULL;
    size_t n = 0;

    if (hk_ks_key_info(ks_in, HK_FUZZ_KS_LABEL, &info) == HK_OK &&
        !info.verified)
        abort();
    if (hk_ks_load_share(ks_in, HK_FUZZ_KS_LABEL, &s) == HK_OK) {
        if (hk_ks_key_info(ks_in, HK_FUZZ_KS_LABEL, &info) != HK_OK ||
            s->role != HK_ROLE_P1 || s->curve != info.curve ||
            s->epoch != info.epoch || memcmp(s->kid, info.kid, HK_ID_LEN) ||
            !hk_point_eq(hk_share_pubkey(s), &info.pub) || info.locked)
            abort();
        hk_share_free(s);
    }
    (void)hk_ks_key_info(ks_out, HK_FUZZ_KS_LABEL, &info);
    if (hk_ks_list(ks_out, &list, &n) == HK_OK)
        hk_ks_list_free(list);
}

static void token_file(void)
{
    hk_ks_tokeninfo ti;
    hk_ks *ks = NULL;

    if (hk_ks_open(tok2, &ks) != HK_OK)
        return;
    if (hk_ks_token_info(ks, &ti) == HK_OK &&
        (ti.logged_in || strnlen(ti.label, sizeof(ti.label)) == 0))
        abort();
    hk_ks_close(ks);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hk_fuzz_write(keyfile, data, size);
    key_file();
    hk_fuzz_write(tokfile, data, size);
    token_file();
    return 0;
}
