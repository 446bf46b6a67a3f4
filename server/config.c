/* halfkeyd configuration: fields, defaults and checks (the file format is
 * transport/kvfile.h's). */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "server/config.h"
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
    else if (c->kek_file[0] == 0)
        miss = "kek_file";
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

hk_err hk_srv_config_load(const char *path, hk_srv_config *out, char *why)
{
    hk_err e;

    if (path == NULL || out == NULL || why == NULL)
        return HK_ERR_ARG;
    hk_cfg_defaults(out);
    if ((e = hk_kv_load(path, hk_cfg_fields, HK_NFIELDS, out, why)) != HK_OK)
        return e;
    return hk_cfg_check(out, path, why);
}

hk_err hk_srv_config_write(const char *path, const hk_srv_config *c)
{
    return hk_kv_write(path, "halfkeyd configuration (see README)",
                       hk_cfg_fields, HK_NFIELDS, c);
}
