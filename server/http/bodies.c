/* Strict decoding of halfkeyd's request bodies (bodies.h): the JSON
 * object rule, key ids, the POST /backup request, the attestation
 * requests. */
#include <string.h>

#include <openssl/crypto.h>

#include "common/hex.h"
#include "server/http/bodies.h"
#include "server/store/db.h"

json_t *hk_body_decode(const unsigned char *body, size_t len,
                       const char *const *allowed)
{
    json_t *o, *v;
    const char *k;
    size_t i;

    if (body == NULL)
        return NULL;
    o = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return NULL;
    }
    json_object_foreach(o, k, v)
    {
        for (i = 0; allowed[i] != NULL && strcmp(allowed[i], k) != 0; i++)
            ;
        if (allowed[i] == NULL) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

int hk_kid_decode(const char *hex, unsigned char kid[HK_ID_LEN])
{
    return hex != NULL && hk_unhex(hex, strlen(hex), kid, HK_ID_LEN);
}

hk_err hk_backup_req_decode(const unsigned char *body, size_t len,
                            hk_backup_req *out)
{
    static const char *const allowed[] = {"key_id", "epoch", "blob",
                                          "backup_pub", NULL};
    json_t *o = NULL, *ej;
    const char *b64, *pem;
    json_int_t epoch;
    hk_err e = HK_ERR_ARG;

    if (out == NULL)
        return HK_ERR_ARG;
    memset(out, 0, sizeof(*out));
    if ((o = hk_body_decode(body, len, allowed)) == NULL)
        goto done;
    ej = json_object_get(o, "epoch");
    epoch = json_integer_value(ej);
    b64 = json_string_value(json_object_get(o, "blob"));
    pem = json_string_value(json_object_get(o, "backup_pub"));
    if (b64 == NULL || pem == NULL || !json_is_integer(ej) || epoch < 1 ||
        epoch > (json_int_t)HK_DB_EPOCH_MAX ||
        !hk_kid_decode(json_string_value(json_object_get(o, "key_id")),
                       out->kid))
        goto done;
    out->epoch = (unsigned long)epoch;
    e = HK_ERR_DECODE;
    if (!hk_b64_decode(b64, strlen(b64), HK_PVE_MAX_BLOB, &out->blob,
                       &out->len))
        goto done;
    if ((e = hk_pve_pub_from_pem(pem, strlen(pem), &out->bk)) != HK_OK) {
        if (e != HK_ERR_NOMEM)
            e = HK_ERR_CONFIG;
        goto done;
    }
    hk_pve_pub_fingerprint(out->bk, out->bk_fp);
done:
    json_decref(o);
    return e;
}

void hk_backup_req_clear(hk_backup_req *r)
{
    if (r == NULL)
        return;
    OPENSSL_free(r->blob);
    hk_pve_pub_free(r->bk);
    memset(r, 0, sizeof(*r));
}

/* The base64 string member `name` of o, decoded: 1..max bytes. */
static int hk_b64_member(json_t *o, const char *name, size_t max,
                         unsigned char **out, size_t *len)
{
    const char *s = json_string_value(json_object_get(o, name));

    return s != NULL && hk_b64_decode(s, strlen(s), max, out, len) && *len > 0;
}

hk_err hk_attest_id_decode(json_t *o, hk_attest_id_req *out)
{
    static const char *const allowed[] = {"ek_cert", "ek_pub", "ak_pub"};
    const char *k;
    json_t *v;
    size_t i;

    if (out == NULL)
        return HK_ERR_ARG;
    memset(out, 0, sizeof(*out));
    if (!json_is_object(o) || json_object_size(o) != 3)
        return HK_ERR_DECODE;
    json_object_foreach(o, k, v)
    {
        for (i = 0; i < 3 && strcmp(allowed[i], k) != 0; i++)
            ;
        if (i == 3)
            return HK_ERR_DECODE;
    }
    if (!hk_b64_member(o, "ek_cert", HK_ATT_CERT_MAX, &out->ek_cert,
                       &out->ek_cert_len) ||
        !hk_b64_member(o, "ek_pub", HK_TPM_PUBLIC_MAX, &out->ek_pub,
                       &out->ek_pub_len) ||
        !hk_b64_member(o, "ak_pub", HK_TPM_PUBLIC_MAX, &out->ak_pub,
                       &out->ak_pub_len))
        return HK_ERR_DECODE;
    return HK_OK;
}

void hk_attest_id_clear(hk_attest_id_req *r)
{
    if (r == NULL)
        return;
    OPENSSL_free(r->ek_cert);
    OPENSSL_free(r->ek_pub);
    OPENSSL_free(r->ak_pub);
    memset(r, 0, sizeof(*r));
}

hk_err hk_attest_req_decode(const unsigned char *body, size_t len,
                            hk_attest_req *out)
{
    static const char *const allowed[] = {"session_id", "credential", "quote",
                                          "signature", NULL};
    json_t *o = NULL;
    const char *s;
    hk_err e = HK_ERR_DECODE;

    if (out == NULL)
        return HK_ERR_ARG;
    memset(out, 0, sizeof(*out));
    if ((o = hk_body_decode(body, len, allowed)) == NULL)
        goto done;
    s = json_string_value(json_object_get(o, "session_id"));
    if (s == NULL || strncmp(s, "sess_", 5) != 0 ||
        !hk_unhex(s + 5, strlen(s + 5), out->sid, HK_ID_LEN) ||
        !hk_b64_member(o, "credential", HK_ATT_CRED_LEN, &out->cred,
                       &out->cred_len) ||
        !hk_b64_member(o, "quote", HK_TPM_ATTEST_MAX, &out->quote,
                       &out->quote_len) ||
        !hk_b64_member(o, "signature", HK_TPM_SIG_MAX, &out->sig,
                       &out->sig_len))
        goto done;
    e = HK_OK;
done:
    json_decref(o);
    return e;
}

void hk_attest_req_clear(hk_attest_req *r)
{
    if (r == NULL)
        return;
    OPENSSL_free(r->cred);
    OPENSSL_free(r->quote);
    OPENSSL_free(r->sig);
    memset(r, 0, sizeof(*r));
}
