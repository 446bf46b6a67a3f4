/* halfkey: and pkcs11: URIs.
 *
 * pkcs11: URIs are RFC 7512, parsed by p11-kit (p11_kit_uri_parse). The
 * provider reads:
 *   token=<label>          the token's label (halfkey init --label), if set
 *   object=<label>         the key's label
 *   id=<bytes>             the key id (16 bytes, %-encoded)
 *   type=private|public|cert  the object class (data, secret-key: none)
 *   ?pin-value=<PIN>       the user PIN
 *   ?pin-source=<file>     a file holding the PIN (or file:<path>)
 *   ?halfkey-dir=<path>    the token directory (vendor query attribute)
 * Other token attributes (manufacturer, model, serial) and module-name /
 * module-path are accepted and not matched; any attribute p11-kit does not
 * know makes the URI an error.
 *
 * halfkey: URIs take the same attributes with the RFC 7512 syntax
 *   halfkey:<attr>=<value>[;<attr>=<value>...][?<attr>=<value>[&...]]
 * (values %-encoded where needed), with two conveniences: any attribute may
 * be in either part, and a token= value holding a '/' is the token
 * directory itself rather than a label. id= is 16 raw bytes or 32 hex
 * digits. Examples:
 *   halfkey:object=web
 *   halfkey:token=/home/me/.local/share/halfkey;object=web;type=private
 *   halfkey:object=web?pin-source=/run/secrets/pin&halfkey-dir=/srv/tok */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <p11-kit/uri.h>

#include "ossl-provider/provider.h"

void hk_prov_uri_clear(hk_prov_uri *u)
{
    OPENSSL_free(u->dir);
    OPENSSL_free(u->token);
    OPENSSL_free(u->object);
    OPENSSL_clear_free(u->pin_value,
                       u->pin_value != NULL ? strlen(u->pin_value) : 0);
    OPENSSL_free(u->pin_source);
    memset(u, 0, sizeof(*u));
}

static int hk_uri_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into a new NUL-terminated string; *outlen is the
 * decoded length (may hold NULs: for id=). */
static char *hk_uri_decode(const char *s, size_t n, size_t *outlen)
{
    char *o = OPENSSL_malloc(n + 1);
    size_t i, j = 0;
    int hi, lo;

    if (o == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        if (s[i] != '%') {
            o[j++] = s[i];
            continue;
        }
        if (i + 2 >= n) {
            OPENSSL_free(o);
            return NULL;
        }
        hi = hk_uri_hexval((unsigned char)s[i + 1]);
        lo = hk_uri_hexval((unsigned char)s[i + 2]);
        if (hi < 0 || lo < 0) {
            OPENSSL_free(o);
            return NULL;
        }
        o[j++] = (char)(hi << 4 | lo);
        i += 2;
    }
    o[j] = 0;
    *outlen = j;
    return o;
}

static void hk_uri_set_id(hk_prov_uri *u, const unsigned char *v, size_t n)
{
    size_t i;
    int hi, lo;

    u->has_id = 1;
    if (n <= HK_URI_ID_MAX) {
        memcpy(u->raw_id, v, n);
        u->raw_id_len = n;
    }
    if (n == HK_ID_LEN) {
        memcpy(u->id, v, n);
        return;
    }
    u->id_bad = 1;
    if (n != 2 * HK_ID_LEN)
        return;
    for (i = 0; i < HK_ID_LEN; i++) {
        hi = hk_uri_hexval(v[2 * i]);
        lo = hk_uri_hexval(v[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return;
        u->id[i] = (unsigned char)(hi << 4 | lo);
    }
    u->id_bad = 0;
}

static int hk_uri_type(const char *v)
{
    if (strcmp(v, "private") == 0)
        return HK_URI_PRIVATE;
    if (strcmp(v, "public") == 0)
        return HK_URI_PUBLIC;
    if (strcmp(v, "cert") == 0)
        return HK_URI_CERT;
    if (strcmp(v, "data") == 0 || strcmp(v, "secret-key") == 0)
        return HK_URI_OTHER;
    return -1;
}

/* One name=value of a halfkey: URI. */
static int hk_uri_attr(hk_prov_uri *u, const char *a, size_t n, char *why)
{
    const char *eq = memchr(a, '=', n);
    char name[16], *v = NULL, **slot = NULL;
    size_t nl, vl = 0;
    int ok = 0, t;

    if (eq == NULL || (nl = (size_t)(eq - a)) == 0 || nl >= sizeof(name)) {
        snprintf(why, 256, "attribute without a name=value form");
        return 0;
    }
    memcpy(name, a, nl);
    name[nl] = 0;
    if ((v = hk_uri_decode(eq + 1, n - nl - 1, &vl)) == NULL) {
        snprintf(why, 256, "bad %%-encoding in %s=", name);
        return 0;
    }
    if (strcmp(name, "id") == 0) {
        ok = !u->has_id;
        if (ok)
            hk_uri_set_id(u, (const unsigned char *)v, vl);
        goto done;
    }
    if (strlen(v) != vl) {
        snprintf(why, 256, "NUL byte in %s=", name);
        goto done;
    }
    if (strcmp(name, "type") == 0) {
        if ((t = hk_uri_type(v)) < 0) {
            snprintf(why, 256, "unknown type=%.40s", v);
            goto done;
        }
        ok = u->type == HK_URI_ANY;
        u->type = t;
        goto done;
    }
    if (strcmp(name, "token") == 0)
        slot = strchr(v, '/') != NULL ? &u->dir : &u->token;
    else if (strcmp(name, "object") == 0)
        slot = &u->object;
    else if (strcmp(name, "pin-value") == 0)
        slot = &u->pin_value;
    else if (strcmp(name, "pin-source") == 0)
        slot = &u->pin_source;
    else if (strcmp(name, "halfkey-dir") == 0)
        slot = &u->dir;
    if (slot == NULL) {
        snprintf(why, 256, "unknown attribute %s=", name);
        goto done;
    }
    if (*slot == NULL) {
        *slot = v;
        v = NULL;
        ok = 1;
    }
done:
    if (!ok && why[0] == 0)
        snprintf(why, 256, "%s= given twice", name);
    OPENSSL_clear_free(v, vl);
    return ok;
}

static int hk_uri_parse_halfkey(const char *s, hk_prov_uri *u, char *why)
{
    const char *p = s + strlen("halfkey:"), *end;
    int in_query = 0;

    while (*p != 0) {
        end = p + strcspn(p, in_query ? "&" : ";?");
        if (end > p && !hk_uri_attr(u, p, (size_t)(end - p), why))
            return 0;
        if (*end == '?')
            in_query = 1;
        p = *end != 0 ? end + 1 : end;
    }
    return 1;
}

static char *hk_uri_dup(const char *s)
{
    return s != NULL ? OPENSSL_strdup(s) : NULL;
}

/* A space-padded PKCS#11 string (all blank or NUL: not set). */
static char *hk_uri_p11str(const unsigned char *s, size_t n)
{
    char *o;

    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == 0))
        n--;
    if (n == 0 || (o = OPENSSL_malloc(n + 1)) == NULL)
        return NULL;
    memcpy(o, s, n);
    o[n] = 0;
    return o;
}

static int hk_uri_parse_pkcs11(const char *s, hk_prov_uri *u, char *why)
{
    P11KitUri *p = p11_kit_uri_new();
    CK_ATTRIBUTE_PTR a;
    CK_TOKEN_INFO_PTR ti;
    CK_OBJECT_CLASS cls;
    const char *v;
    int r, ok = 0;

    if (p == NULL) {
        snprintf(why, 256, "out of memory");
        return 0;
    }
    if ((r = p11_kit_uri_parse(s, P11_KIT_URI_FOR_ANY, p)) != P11_KIT_URI_OK) {
        snprintf(why, 256, "%s", p11_kit_uri_message(r));
        goto done;
    }
    if (p11_kit_uri_any_unrecognized(p)) {
        snprintf(why, 256, "an attribute this provider does not support");
        goto done;
    }
    if ((ti = p11_kit_uri_get_token_info(p)) != NULL)
        u->token = hk_uri_p11str(ti->label, sizeof(ti->label));
    if ((a = p11_kit_uri_get_attribute(p, CKA_LABEL)) != NULL &&
        (u->object = OPENSSL_strndup(a->pValue, a->ulValueLen)) == NULL)
        goto done;
    if ((a = p11_kit_uri_get_attribute(p, CKA_ID)) != NULL)
        hk_uri_set_id(u, a->pValue, a->ulValueLen);
    if ((a = p11_kit_uri_get_attribute(p, CKA_CLASS)) != NULL &&
        a->ulValueLen == sizeof(cls)) {
        memcpy(&cls, a->pValue, sizeof(cls));
        u->type = cls == CKO_PRIVATE_KEY   ? HK_URI_PRIVATE
                  : cls == CKO_PUBLIC_KEY  ? HK_URI_PUBLIC
                  : cls == CKO_CERTIFICATE ? HK_URI_CERT
                                           : HK_URI_OTHER;
    }
    if ((v = p11_kit_uri_get_pin_value(p)) != NULL &&
        (u->pin_value = hk_uri_dup(v)) == NULL)
        goto done;
    if ((v = p11_kit_uri_get_pin_source(p)) != NULL &&
        (u->pin_source = hk_uri_dup(v)) == NULL)
        goto done;
    if ((v = p11_kit_uri_get_vendor_query(p, "halfkey-dir")) != NULL &&
        (u->dir = hk_uri_dup(v)) == NULL)
        goto done;
    ok = 1;
done:
    p11_kit_uri_free(p); /* p11-kit does not wipe pin-value */
    return ok;
}

int hk_prov_uri_parse(const char *s, hk_prov_uri *u, char *why)
{
    int ok;

    memset(u, 0, sizeof(*u));
    why[0] = 0;
    if (OPENSSL_strncasecmp(s, "halfkey:", 8) == 0)
        ok = hk_uri_parse_halfkey(s, u, why);
    else if (OPENSSL_strncasecmp(s, "pkcs11:", 7) == 0)
        ok = hk_uri_parse_pkcs11(s, u, why);
    else
        ok = (snprintf(why, 256, "not a halfkey: or pkcs11: URI"), 0);
    if (!ok) {
        if (why[0] == 0)
            snprintf(why, 256, "out of memory");
        hk_prov_uri_clear(u);
    }
    return ok;
}
