/* The PKCS#11 module loaded, used and unloaded five times in one process
 * (dlopen, C_Initialize, sessions, login, objects, C_Finalize, dlclose):
 * every cycle must succeed, and under the ASan build (scripts/test --ci,
 * build-asan/) LeakSanitizer fails the test if any cycle leaks. The
 * module pins itself in memory at its first C_Initialize (its OpenSSL
 * context must outlive the host's threads), so the cycles after the first
 * reuse it. No server:
 * a token made here, objects only (no keys).
 *   test_p11_cycle <path of libhalfkey-pkcs11.so> */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#include "client/client.h"
#include "tests/unit/check.h"

#define PIN "cycle-pin-1234"
#define CYCLES 5

static void make_token(const char *dir)
{
    hk_client_config cfg;
    hk_ks *ks = NULL;

    memset(&cfg, 0, sizeof(cfg));
    snprintf(cfg.server_url, sizeof(cfg.server_url), "https://127.0.0.1:1");
    memset(cfg.server_pin, 'a', 64);
    snprintf(cfg.token_file, sizeof(cfg.token_file), "/dev/null");
    cfg.paillier_bits = 2048;
    cfg.timeout_ms = 1000;
    CHECK(hk_ks_init(dir, PIN, "cycle", &ks) == HK_OK);
    hk_ks_close(ks);
    CHECK(hk_client_config_write(dir, &cfg) == HK_OK);
}

/* Checks a call's result, naming the code when it is not CKR_OK. */
#define OK(call)                                                               \
    do {                                                                       \
        CK_RV rv_ = (call);                                                    \
        if (rv_ != CKR_OK) {                                                   \
            fprintf(stderr, "%s:%d: %s: 0x%lx\n", __FILE__, __LINE__, #call,   \
                    (unsigned long)rv_);                                       \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* One session's worth of use: login, a token and a session data object,
 * find, read, destroy, random, logout. */
static void use(CK_FUNCTION_LIST *f)
{
    static CK_OBJECT_CLASS cls = CKO_DATA;
    static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE tpl[] = {{CKA_CLASS, &cls, sizeof(cls)},
                          {CKA_TOKEN, &yes, 1},
                          {CKA_LABEL, "cycle", 5},
                          {CKA_VALUE, "v", 1}};
    CK_OBJECT_HANDLE o[2], found[8];
    CK_SESSION_HANDLE h;
    CK_ULONG n = 0;
    unsigned char rnd[16], lbl[8];
    CK_ATTRIBUTE get = {CKA_LABEL, lbl, sizeof(lbl)};

    OK(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                        &h));
    OK(f->C_Login(h, CKU_USER, (CK_UTF8CHAR *)PIN, strlen(PIN)));
    OK(f->C_CreateObject(h, tpl, 4, &o[0]));
    tpl[1].pValue = &no;
    OK(f->C_CreateObject(h, tpl, 4, &o[1]));
    OK(f->C_FindObjectsInit(h, tpl + 2, 1));
    CHECK(f->C_FindObjects(h, found, 8, &n) == CKR_OK && n == 2);
    OK(f->C_FindObjectsFinal(h));
    CHECK(f->C_GetAttributeValue(h, o[0], &get, 1) == CKR_OK &&
          get.ulValueLen == 5);
    OK(f->C_DestroyObject(h, o[0]));
    OK(f->C_GenerateRandom(h, rnd, sizeof(rnd)));
    /* a find left open and the session object: freed by the close */
    OK(f->C_FindObjectsInit(h, NULL, 0));
    OK(f->C_Logout(h));
    OK(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &h));
}

int main(int argc, char **argv)
{
    char dir[] = "/tmp/hk-p11-cycle-XXXXXX", tok[64], cmd[128];
    CK_C_GetFunctionList get;
    CK_FUNCTION_LIST *f;
    void *lib;
    int i;

    if (argc != 2) {
        fprintf(stderr, "usage: test_p11_cycle MODULE\n");
        return 2;
    }
    CHECK(mkdtemp(dir) != NULL);
    snprintf(tok, sizeof(tok), "%s/tok", dir);
    make_token(tok);
    setenv("HALFKEY_PKCS11_TOKENS", tok, 1);
    for (i = 0; i < CYCLES; i++) {
        CHECK((lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL)) != NULL);
        *(void **)&get = dlsym(lib, "C_GetFunctionList");
        CHECK(get != NULL && get(&f) == CKR_OK);
        OK(f->C_Initialize(NULL));
        use(f);
        /* sessions still open: C_Finalize closes them */
        OK(f->C_Finalize(NULL));
        CHECK(dlclose(lib) == 0);
    }
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    printf("ok: %d load/use/unload cycles\n", CYCLES);
    return 0;
}
