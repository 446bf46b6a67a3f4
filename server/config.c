/* halfkeyd configuration: fields, defaults and checks (the file format is
 * transport/kvfile.h's). */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "server/config.h"
#include "server/seal.h"
#include "transport/kvfile.h"

#define T hk_srv_config
static const hk_kv_field hk_cfg_fields[] = {
    HK_KV_S(T, "listen", listen),
    HK_KV_I(T, "port", port, 0, 65535),
    HK_KV_P(T, "tls_cert", tls_cert),
    HK_KV_P(T, "tls_key", tls_key),
    HK_KV_P(T, "db", db),
    HK_KV_P(T, "kek_file", kek_file),
    HK_KV_S(T, "jwt_alg", jwt_alg),
    HK_KV_P(T, "jwt_key", jwt_key),
    HK_KV_P(T, "jwt_issuer_key", jwt_issuer_key),
    HK_KV_S(T, "jwt_iss", jwt_iss),
    HK_KV_S(T, "jwt_aud", jwt_aud),
    HK_KV_I(T, "jwt_skew", jwt_skew, 0, 300),
    HK_KV_I(T, "session_idle", session_idle, 1, 86400),
    HK_KV_I(T, "workers", workers, 1, 64),
    HK_KV_I(T, "min_paillier_bits", min_paillier_bits, 2048, 3072),
    HK_KV_P(T, "port_file", port_file),
    /* sealing */
    HK_KV_S(T, "seal", seal.backend),
    HK_KV_P(T, "hsm_module", seal.hsm_module),
    HK_KV_S(T, "hsm_token", seal.hsm_token),
    HK_KV_S(T, "hsm_key_label", seal.hsm_key_label),
    HK_KV_P(T, "hsm_pin_file", seal.hsm_pin_file),
    HK_KV_S(T, "hsm_pin_env", seal.hsm_pin_env),
    HK_KV_S(T, "seal_previous_key_file", seal.prev_files_raw),
    HK_KV_S(T, "seal_previous_hsm_key_label", seal.prev_labels_raw),
};
#undef T

#define HK_NFIELDS (sizeof(hk_cfg_fields) / sizeof(hk_cfg_fields[0]))

static void hk_cfg_defaults(hk_srv_config *c)
{
    memset(c, 0, sizeof(*c));
    strcpy(c->listen, "127.0.0.1");
    c->port = 8443;
    strcpy(c->jwt_alg, "ES256");
    strcpy(c->jwt_iss, "halfkeyd");
    strcpy(c->jwt_aud, "halfkey");
    c->jwt_skew = 30;
    c->session_idle = 300;
    c->workers = 2;
    c->min_paillier_bits = 2048;
    strcpy(c->seal.backend, "file");
}

static hk_err hk_cfg_check(const hk_srv_config *c, const char *path, char *why)
{
    const char *miss = NULL;

    if (c->tls_cert[0] == 0)
        miss = "tls_cert";
    else if (c->tls_key[0] == 0)
        miss = "tls_key";
    else if (c->db[0] == 0)
        miss = "db";
    else if (c->jwt_key[0] == 0)
        miss = "jwt_key";
    if (miss != NULL) {
        snprintf(why, 256, "%.200s: missing required key '%s'", path, miss);
        return HK_ERR_CONFIG;
    }
    if (strcmp(c->jwt_alg, "ES256") && strcmp(c->jwt_alg, "RS256") &&
        strcmp(c->jwt_alg, "HS256")) {
        snprintf(why, 256, "%.200s: jwt_alg must be ES256, RS256 or HS256",
                 path);
        return HK_ERR_CONFIG;
    }
    if (c->min_paillier_bits != 2048 && c->min_paillier_bits != 3072) {
        snprintf(why, 256, "%.200s: min_paillier_bits must be 2048 or 3072",
                 path);
        return HK_ERR_CONFIG;
    }
    return HK_OK;
}

/* --- sealing settings ----------------------------------------------------- */

_Static_assert(HK_CFG_KEY_LABEL_MAX == HK_P11_KEY_LABEL_MAX,
               "config holds any HSM key label");

/* Splits a comma list into items of at most cap - 1 bytes (spaces around
 * items trimmed); relative items are resolved against dir when dir is not
 * NULL. *n the number of items; -1 if an item is empty or too long or
 * there are more than max. */
static int hk_cfg_split(const char *list, const char *dir, char *items,
                        size_t cap, int max, int *n)
{
    const char *p = list, *end, *q;
    size_t len;
    int w;

    *n = 0;
    if (*list == 0)
        return 0;
    for (;;) {
        end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        while (p < end && *p == ' ')
            p++;
        q = end;
        while (q > p && q[-1] == ' ')
            q--;
        len = (size_t)(q - p);
        if (len == 0 || *n == max)
            return -1;
        if (dir != NULL && *p != '/')
            w = snprintf(items + (size_t)*n * cap, cap, "%s/%.*s", dir,
                         (int)len, p);
        else
            w = snprintf(items + (size_t)*n * cap, cap, "%.*s", (int)len, p);
        if (w < 0 || (size_t)w >= cap)
            return -1;
        (*n)++;
        if (*end == 0)
            break;
        p = end + 1;
    }
    return 0;
}

/* The directory of the configuration file, for relative list items. */
static void hk_cfg_dir(const char *path, char *dir, size_t cap)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
        snprintf(dir, cap, ".");
    else
        snprintf(dir, cap, "%.*s", (int)(slash - path), path);
}

/* Why the HSM settings are incomplete, NULL if they are not. */
static const char *hk_cfg_hsm_missing(const hk_seal_config *s)
{
    if (s->hsm_module[0] == 0)
        return "missing required key 'hsm_module'";
    if (s->hsm_token[0] == 0 || strlen(s->hsm_token) > HK_P11_LABEL_MAX)
        return "'hsm_token' missing or longer than 32 bytes";
    if ((s->hsm_pin_file[0] == 0) == (s->hsm_pin_env[0] == 0))
        return "give exactly one of 'hsm_pin_file' and 'hsm_pin_env'";
    return NULL;
}

static hk_err hk_cfg_check_seal(hk_srv_config *c, const char *path, char *why)
{
    hk_seal_config *s = &c->seal;
    const char *bad = NULL;
    int pkcs11 = strcmp(s->backend, "pkcs11") == 0;
    char dir[HK_CFG_PATH_MAX];

    hk_cfg_dir(path, dir, sizeof(dir));
    if (!pkcs11 && strcmp(s->backend, "file") != 0)
        bad = "seal must be file or pkcs11";
    else if (!pkcs11 && c->kek_file[0] == 0)
        bad = "missing required key 'kek_file' (seal = file)";
    else if (pkcs11 && c->kek_file[0] != 0)
        bad = "kek_file is for seal = file (an old key file being migrated "
              "from goes in seal_previous_key_file)";
    else if (pkcs11 && (s->hsm_key_label[0] == 0 ||
                        strlen(s->hsm_key_label) > HK_P11_KEY_LABEL_MAX))
        bad = "'hsm_key_label' missing or longer than 128 bytes";
    else if (hk_cfg_split(s->prev_files_raw, dir, s->prev_files[0],
                          HK_CFG_PATH_MAX, HK_SEAL_PREV_MAX,
                          &s->nprev_files) != 0)
        bad = "seal_previous_key_file: at most 4 paths, comma-separated";
    else if (hk_cfg_split(s->prev_labels_raw, NULL, s->prev_labels[0],
                          HK_CFG_KEY_LABEL_MAX + 1, HK_SEAL_PREV_MAX,
                          &s->nprev_labels) != 0)
        bad = "seal_previous_hsm_key_label: at most 4 labels of up to 128 "
              "bytes, comma-separated";
    else if (pkcs11 || s->nprev_labels > 0)
        bad = hk_cfg_hsm_missing(s);
    if (bad != NULL) {
        snprintf(why, 256, "%.120s: %s", path, bad);
        return HK_ERR_CONFIG;
    }
    return HK_OK;
}

hk_err hk_srv_config_load(const char *path, hk_srv_config *out, char *why)
{
    hk_err e;

    if (path == NULL || out == NULL || why == NULL)
        return HK_ERR_ARG;
    hk_cfg_defaults(out);
    if ((e = hk_kv_load(path, hk_cfg_fields, HK_NFIELDS, out, why)) != HK_OK)
        return e;
    if ((e = hk_cfg_check(out, path, why)) != HK_OK)
        return e;
    return hk_cfg_check_seal(out, path, why);
}

hk_err hk_srv_config_write(const char *path, const hk_srv_config *c)
{
    return hk_kv_write(path, "halfkeyd configuration (see README)",
                       hk_cfg_fields, HK_NFIELDS, c);
}
