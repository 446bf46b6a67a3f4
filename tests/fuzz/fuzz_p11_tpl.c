/* Fuzz target: caller templates of the PKCS#11 module (pkcs11/, built into
 * this binary; no network). Each input is up to three templates and an
 * operation:
 *   C_CreateObject, then C_GetAttributeValue, C_SetAttributeValue and
 *   C_DestroyObject on the new object; C_FindObjectsInit / C_FindObjects;
 *   the C_GenerateKeyPair template layer (hk_p11_genreq_parse; the
 *   protocol run is fuzz_keygen's); C_GetAttributeValue and
 *   C_SetAttributeValue on a key's objects (a fixture share stored in a
 *   token made once, logged in once).
 * Values live in buffers of exactly their declared length, so ASan sees
 * any read past one; a value may also declare a huge length over a 1-byte
 * buffer and a template a huge count, which the module must refuse before
 * reading (tpl.c).
 *
 * Input: op byte, count-lie byte, then per template: count byte (0..15),
 * per attribute: type byte (an index into hk_types, else the next 4 bytes),
 * length-mode byte, then the value's bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/client.h"
#include "pkcs11/hk_p11.h"
#include "tests/fuzz/fuzz_common.h"

#define HK_FZ_ATTRS 15

static const CK_ATTRIBUTE_TYPE hk_types[] = {
    CKA_CLASS,
    CKA_TOKEN,
    CKA_PRIVATE,
    CKA_LABEL,
    CKA_APPLICATION,
    CKA_VALUE,
    CKA_OBJECT_ID,
    CKA_CERTIFICATE_TYPE,
    CKA_TRUSTED,
    CKA_CERTIFICATE_CATEGORY,
    CKA_KEY_TYPE,
    CKA_ID,
    CKA_SENSITIVE,
    CKA_SIGN,
    CKA_DERIVE,
    CKA_START_DATE,
    CKA_EXTRACTABLE,
    CKA_LOCAL,
    CKA_MODIFIABLE,
    CKA_COPYABLE,
    CKA_DESTROYABLE,
    CKA_EC_PARAMS,
    CKA_EC_POINT,
    CKA_UNIQUE_ID,
    CKA_ALLOWED_MECHANISMS,
    HK_CKA_EPOCH,
    CKA_SUBJECT,
    CKA_ISSUER,
    CKA_SERIAL_NUMBER,
    CKA_ALWAYS_AUTHENTICATE,
    CKA_VENDOR_DEFINED | 1,
};
#define HK_NTYPES (sizeof(hk_types) / sizeof(hk_types[0]))

static CK_SESSION_HANDLE keep; /* holds the login between inputs */
static CK_OBJECT_HANDLE keys[2];
static char objects_bin[4096];

typedef struct {
    const uint8_t *p;
    size_t left;
} hk_fz_in;

static uint8_t hk_fz_u8(hk_fz_in *in)
{
    if (in->left == 0)
        return 0;
    in->left--;
    return *in->p++;
}

typedef struct {
    CK_ATTRIBUTE a[HK_FZ_ATTRS];
    void *bufs[HK_FZ_ATTRS];
    CK_ULONG n;
} hk_fz_tpl;

/* One template; `out`: an output template (C_GetAttributeValue writes up
 * to ulValueLen bytes, so a lying length goes with a NULL pointer). */
static void hk_fz_tpl_read(hk_fz_in *in, hk_fz_tpl *t, int out)
{
    static const CK_ULONG huge[] = {0xFFFFFFFFul, 0x100000000ul, ~0ul,
                                    HK_P11_VALUE_MAX + 1};
    CK_ULONG i, len;
    uint8_t sel, mode;
    size_t k;

    memset(t, 0, sizeof(*t));
    t->n = hk_fz_u8(in) % (HK_FZ_ATTRS + 1);
    for (i = 0; i < t->n; i++) {
        sel = hk_fz_u8(in);
        t->a[i].type = hk_types[sel % HK_NTYPES];
        if (sel >= 0xF0) /* a raw type */
            for (k = 0, t->a[i].type = 0; k < 4; k++)
                t->a[i].type = t->a[i].type << 8 | hk_fz_u8(in);
        mode = hk_fz_u8(in);
        len = hk_fz_u8(in);
        switch (mode % 5) {
        case 0: /* the value, exactly len bytes */
        case 1:
            t->bufs[i] = malloc(len > 0 ? len : 1);
            for (k = 0; k < len; k++)
                ((uint8_t *)t->bufs[i])[k] = hk_fz_u8(in);
            t->a[i].pValue = len > 0 || mode % 5 == 1 ? t->bufs[i] : NULL;
            t->a[i].ulValueLen = len;
            break;
        case 2: /* NULL with a length */
            t->a[i].ulValueLen = len;
            break;
        case 3: /* a huge length over one byte */
            t->a[i].ulValueLen = huge[len % 4];
            t->bufs[i] = calloc(1, 1);
            t->a[i].pValue = out ? NULL : t->bufs[i];
            break;
        default: /* a CK_ULONG or CK_BBOOL of the fuzzer's choice */
            t->bufs[i] = calloc(1, sizeof(CK_ULONG));
            memcpy(t->bufs[i], &len, sizeof(CK_ULONG));
            t->a[i].pValue = t->bufs[i];
            t->a[i].ulValueLen = mode & 8 ? 1 : sizeof(CK_ULONG);
            break;
        }
    }
}

static void hk_fz_tpl_free(hk_fz_tpl *t)
{
    CK_ULONG i;

    for (i = 0; i < HK_FZ_ATTRS; i++)
        free(t->bufs[i]);
}

/* The count the module is given: the real one, or a lie it must refuse
 * without iterating (tpl.c bounds counts). */
static CK_ULONG hk_fz_count(const hk_fz_tpl *t, uint8_t lie)
{
    return lie == 0xFF ? 0x100000000ul : lie == 0xFE ? ~0ul : t->n;
}

static void make_token(const char *dir)
{
    hk_client_config cfg;
    unsigned char *tj;
    char path[4096];
    size_t len;
    hk_ks *ks = NULL;

    snprintf(path, sizeof(path), "%s/keys", dir);
    if (mkdir(dir, 0700) != 0 || mkdir(path, 0700) != 0)
        abort();
    tj = hk_fuzz_fixture("token.json", &len);
    snprintf(path, sizeof(path), "%s/token.json", dir);
    hk_fuzz_write(path, tj, len);
    free(tj);
    memset(&cfg, 0, sizeof(cfg));
    snprintf(cfg.server_url, sizeof(cfg.server_url), "https://127.0.0.1:1");
    memset(cfg.server_pin, 'a', 64);
    snprintf(cfg.token_file, sizeof(cfg.token_file), "/dev/null");
    cfg.paillier_bits = 2048;
    cfg.timeout_ms = 1000;
    if (hk_client_config_write(dir, &cfg) != HK_OK ||
        hk_ks_open(dir, &ks) != HK_OK ||
        hk_ks_login(ks, HK_FUZZ_KS_PIN) != HK_OK ||
        hk_ks_store_share(ks, "fz", hk_fuzz_share(HK_ROLE_P1, HK_CURVE_P256)) !=
            HK_OK)
        abort();
    hk_ks_close(ks);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const CK_OBJECT_CLASS cls[2] = {CKO_PUBLIC_KEY, CKO_PRIVATE_KEY};
    char *dir = hk_fuzz_tmpdir(), tok[4096];
    CK_ATTRIBUTE t;
    CK_ULONG n;
    int i;

    (void)argc;
    (void)argv;
    hk_fuzz_rmtree_at_exit(dir);
    snprintf(tok, sizeof(tok), "%s/tok", dir);
    snprintf(objects_bin, sizeof(objects_bin), "%s/objects.bin", tok);
    free(dir);
    make_token(tok);
    setenv("HALFKEY_PKCS11_TOKENS", tok, 1);
    if (C_Initialize(NULL) != CKR_OK ||
        C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                      &keep) != CKR_OK ||
        C_Login(keep, CKU_USER, (CK_UTF8CHAR *)HK_FUZZ_KS_PIN,
                strlen(HK_FUZZ_KS_PIN)) != CKR_OK)
        abort();
    for (i = 0; i < 2; i++) {
        t = (CK_ATTRIBUTE){CKA_CLASS, (void *)&cls[i], sizeof(cls[i])};
        if (C_FindObjectsInit(keep, &t, 1) != CKR_OK ||
            C_FindObjects(keep, &keys[i], 1, &n) != CKR_OK || n != 1 ||
            C_FindObjectsFinal(keep) != CKR_OK)
            abort();
    }
    return 0;
}

/* HK_CKA_REFRESH would try the (absent) server: not this target's. */
static int hk_fz_refresh(const hk_fz_tpl *t)
{
    CK_ULONG i;

    for (i = 0; i < t->n; i++)
        if (t->a[i].type == HK_CKA_REFRESH)
            return 1;
    return 0;
}

/* C_GetAttributeValue on a copy of t: the module rewrites each
 * ulValueLen, which must not become a lie about t's buffers next time. */
static void hk_fz_get(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o,
                      const hk_fz_tpl *t, CK_ULONG n)
{
    CK_ATTRIBUTE a[HK_FZ_ATTRS];

    memcpy(a, t->a, sizeof(a));
    (void)C_GetAttributeValue(h, o, a, n);
}

static void hk_fz_object(CK_SESSION_HANDLE h, hk_fz_tpl t[3], uint8_t lie)
{
    CK_OBJECT_HANDLE o;

    if (C_CreateObject(h, t[0].a, hk_fz_count(&t[0], lie), &o) != CKR_OK)
        return;
    hk_fz_get(h, o, &t[1], t[1].n);
    (void)C_SetAttributeValue(h, o, t[2].a, hk_fz_count(&t[2], lie));
    hk_fz_get(h, o, &t[1], t[1].n);
    if (C_DestroyObject(h, o) != CKR_OK) /* CKA_DESTROYABLE false */
        (void)unlink(objects_bin);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hk_fz_in in = {data, size};
    CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_OBJECT_HANDLE found[8];
    CK_SESSION_HANDLE h;
    hk_p11_genreq req;
    hk_fz_tpl t[3];
    uint8_t op = hk_fz_u8(&in), lie = hk_fz_u8(&in);
    CK_ULONG n;
    int i;

    hk_fz_tpl_read(&in, &t[0], op % 5 == 3);
    hk_fz_tpl_read(&in, &t[1], 1);
    hk_fz_tpl_read(&in, &t[2], 0);
    /* a session per input: its session objects go with it */
    if (C_OpenSession(0, CKF_SERIAL_SESSION | (op & 0x80 ? 0 : CKF_RW_SESSION),
                      NULL, NULL, &h) != CKR_OK)
        abort();
    switch (op % 5) {
    case 0:
        hk_fz_object(h, t, lie);
        break;
    case 1:
        if (C_FindObjectsInit(h, t[0].a, hk_fz_count(&t[0], lie)) == CKR_OK) {
            (void)C_FindObjects(h, found, 8, &n);
            (void)C_FindObjectsFinal(h);
        }
        break;
    case 2:
        (void)hk_p11_genreq_parse(&m, t[0].a, hk_fz_count(&t[0], lie), t[1].a,
                                  t[1].n, &req);
        break;
    case 3:
        hk_fz_get(h, keys[op >> 3 & 1], &t[0], hk_fz_count(&t[0], lie));
        break;
    default:
        if (!hk_fz_refresh(&t[0]))
            (void)C_SetAttributeValue(h, keys[op >> 3 & 1], t[0].a,
                                      hk_fz_count(&t[0], lie));
        break;
    }
    if (C_CloseSession(h) != CKR_OK)
        abort();
    for (i = 0; i < 3; i++)
        hk_fz_tpl_free(&t[i]);
    return 0;
}
