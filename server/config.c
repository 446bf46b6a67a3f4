/* halfkeyd configuration: fields, defaults and checks (the file format is
 * transport/kvfile.h's). */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "server/config.h"
#include "server/seal/seal.h"
#include "common/kvfile.h"
#include "transport/jwt.h"

#define T hk_srv_config
static const hk_kv_field hk_cfg_fields[] = {
    HK_KV_S(T, "listen", listen),
    HK_KV_I(T, "port", port, 0, 65535),
    HK_KV_P(T, "tls_cert", tls_cert),
    HK_KV_P(T, "tls_key", tls_key),
    HK_KV_P(T, "db", db),
    HK_KV_S(T, "db_url", db_url),
    HK_KV_S(T, "node", node),
    HK_KV_P(T, "kek_file", kek_file),
    HK_KV_S(T, "jwt_alg", jwt_alg),
    HK_KV_P(T, "jwt_key", jwt_key),
    HK_KV_P(T, "jwt_issuer_key", jwt_issuer_key),
    HK_KV_S(T, "jwt_iss", jwt_iss),
    HK_KV_S(T, "jwt_aud", jwt_aud),
    HK_KV_I(T, "jwt_skew", jwt_skew, 0, 300),
    HK_KV_I(T, "session_idle", session_idle, 1, 86400),
    HK_KV_I(T, "pending_key_ttl", pending_key_ttl, 1, 7 * 86400),
    HK_KV_I(T, "workers", workers, 1, 64),
    HK_KV_I(T, "min_paillier_bits", min_paillier_bits, 2048, 3072),
    HK_KV_P(T, "port_file", port_file),
    HK_KV_I(T, "rate_per_minute", rate_per_minute, 0, 1000000),
    HK_KV_I(T, "rate_burst", rate_burst, 1, 100000),
    HK_KV_I(T, "max_signs_hour", max_signs_hour, 0, 1000000),
    HK_KV_I(T, "max_signs_day", max_signs_day, 0, 1000000),
    HK_KV_S(T, "curves", curves),
    HK_KV_I(T, "metrics", metrics, 0, 1),
    HK_KV_I(T, "shutdown_grace", shutdown_grace, 0, 3600),
    HK_KV_I(T, "max_connections", max_connections, 0, 1000000),
    HK_KV_I(T, "max_connections_per_peer", max_conns_per_peer, 0, 1000000),
    HK_KV_S(T, "requesters", requesters),
    HK_KV_I(T, "request_ttl_max", request_ttl_max, 60, 30 * 86400),
    HK_KV_I(T, "presign_max_key", presign_max_key, 0, 4096),
    HK_KV_I(T, "presign_max_subject", presign_max_subject, 0, 1000000),
    HK_KV_I(T, "presign_ttl", presign_ttl, 60, 30 * 86400),
    HK_KV_P(T, "policy_file", policy_file),
    HK_KV_P(T, "callback_ca_file", callback_ca_file),
    HK_KV_P(T, "callback_key_file", callback_key_file),
    HK_KV_S(T, "callback_hosts", callback_hosts),
    HK_KV_P(T, "attestation_roots", attestation_roots),
    HK_KV_S(T, "require_attestation", require_attestation),
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

void hk_srv_config_defaults(hk_srv_config *c)
{
    memset(c, 0, sizeof(*c));
    strcpy(c->listen, "127.0.0.1");
    c->port = 8443;
    strcpy(c->jwt_alg, "ES256");
    strcpy(c->jwt_iss, "halfkeyd");
    strcpy(c->jwt_aud, "halfkey");
    c->jwt_skew = 30;
    c->session_idle = 300;
    c->pending_key_ttl = 3600;
    c->workers = 2;
    c->min_paillier_bits = 2048;
    strcpy(c->node, "halfkeyd");
    c->rate_per_minute = 600;
    c->rate_burst = 60;
    strcpy(c->curves, "secp256k1,p256");
    c->metrics = 1;
    c->shutdown_grace = 30;
    c->max_conns_per_peer = 64;
    c->request_ttl_max = 7 * 86400;
    c->presign_max_key = 64;
    c->presign_max_subject = 4096;
    c->presign_ttl = 7 * 86400;
    strcpy(c->seal.backend, "file");
}

/* 1 if list is a comma-separated list of known curve names, none twice. */
static int hk_cfg_curves_ok(const char *list)
{
    char buf[64], *tok, *save = NULL;
    int seen = 0, bit;

    if (strlen(list) >= sizeof(buf) || *list == '\0')
        return 0;
    strcpy(buf, list);
    for (tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        if (strcmp(tok, "secp256k1") == 0)
            bit = 1;
        else if (strcmp(tok, "p256") == 0)
            bit = 2;
        else
            return 0;
        if (seen & bit)
            return 0;
        seen |= bit;
    }
    return seen != 0;
}

/* 1 if s is an IP address literal: halfkeyd binds exactly that address
 * (a host or interface name could stand for several, or none). */
static int hk_cfg_ip_ok(const char *s)
{
    unsigned char buf[16];

    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* Reports a bad value of `key` at its line ("file:line: key: msg"), or
 * at the file for a missing key. */
static hk_err hk_cfg_bad(char *why, const char *path, const unsigned *lines,
                         const char *key, const char *msg)
{
    size_t i;

    for (i = 0; i < HK_NFIELDS; i++)
        if (strcmp(hk_cfg_fields[i].key, key) == 0 && lines[i] != 0) {
            snprintf(why, 256, "%.90s:%u: %.32s: %.110s", path, lines[i], key,
                     msg);
            return HK_ERR_CONFIG;
        }
    snprintf(why, 256, "%.90s: %.32s: %.110s", path, key, msg);
    return HK_ERR_CONFIG;
}

/* Calls fn on each "REQUESTER=TARGET" entry of a grant list (commas or
 * spaces between entries) until it returns nonzero; 0 for an entry that
 * is not of that shape (the list is then malformed). */
static int hk_cfg_grants(const char *list,
                         int (*fn)(const char *req, size_t rlen,
                                   const char *target, size_t tlen, void *ctx),
                         void *ctx)
{
    const char *p = list, *end, *eq;
    int r;

    while (*p != 0) {
        p += strspn(p, ", ");
        if (*p == 0)
            break;
        end = p + strcspn(p, ", ");
        eq = memchr(p, '=', (size_t)(end - p));
        if (eq == NULL || eq == p || eq + 1 == end)
            return -1;
        if ((r = fn(p, (size_t)(eq - p), eq + 1, (size_t)(end - eq - 1),
                    ctx)) != 0)
            return r;
        p = end;
    }
    return 0;
}

/* An entry is well formed: a subject, and a subject, "*" or "key:HEX". */
static int hk_cfg_grant_bad(const char *req, size_t rlen, const char *target,
                            size_t tlen, void *ctx)
{
    char a[HK_CFG_VAL_MAX], b[HK_CFG_VAL_MAX];
    size_t i;

    (void)ctx;
    if (rlen >= sizeof(a) || tlen >= sizeof(b))
        return 1;
    memcpy(a, req, rlen);
    a[rlen] = 0;
    memcpy(b, target, tlen);
    b[tlen] = 0;
    if (!hk_sub_valid(a))
        return 1;
    if (strcmp(b, "*") == 0)
        return 0;
    if (strncmp(b, "key:", 4) == 0) {
        for (i = 4; b[i] != 0 && strchr("0123456789abcdef", b[i]); i++)
            ;
        return !(b[i] == 0 && i == 4 + 32);
    }
    return !hk_sub_valid(b);
}

typedef struct {
    const char *requester, *owner, *kidhex;
} hk_grant_q;

static int hk_cfg_grant_match(const char *req, size_t rlen, const char *target,
                              size_t tlen, void *ctx)
{
    const hk_grant_q *q = ctx;

    if (strlen(q->requester) != rlen || strncmp(req, q->requester, rlen) != 0)
        return 0;
    if (tlen == 1 && target[0] == '*')
        return 1;
    if (tlen == 4 + strlen(q->kidhex) && strncmp(target, "key:", 4) == 0 &&
        strncmp(target + 4, q->kidhex, tlen - 4) == 0)
        return 1;
    return strlen(q->owner) == tlen && strncmp(target, q->owner, tlen) == 0;
}

int hk_srv_config_requester_may(const hk_srv_config *c, const char *requester,
                                const char *owner, const char *kidhex)
{
    hk_grant_q q = {requester, owner, kidhex};

    if (c == NULL || requester == NULL || owner == NULL || kidhex == NULL)
        return 0;
    return hk_cfg_grants(c->requesters, hk_cfg_grant_match, &q) == 1;
}

int hk_srv_config_attest_required(const hk_srv_config *c, const char *sub)
{
    return c != NULL && hk_kv_list_has(c->require_attestation, sub, 1);
}

static hk_err hk_cfg_check(const hk_srv_config *c, const char *path,
                           const unsigned *lines, char *why)
{
    static const char *const req[] = {"tls_cert", "tls_key", "jwt_key"};
    const char *const val[] = {c->tls_cert, c->tls_key, c->jwt_key};
    size_t i;

    for (i = 0; i < sizeof(req) / sizeof(req[0]); i++)
        if (val[i][0] == 0)
            return hk_cfg_bad(why, path, lines, req[i], "required, missing");
    if (c->db[0] == 0 && c->db_url[0] == 0)
        return hk_cfg_bad(why, path, lines, "db",
                          "required (or db_url), missing");
    if (c->db[0] != 0 && c->db_url[0] != 0)
        return hk_cfg_bad(why, path, lines, "db_url",
                          "give db or db_url, not both");
    if (strcmp(c->jwt_alg, "ES256") && strcmp(c->jwt_alg, "RS256") &&
        strcmp(c->jwt_alg, "HS256"))
        return hk_cfg_bad(why, path, lines, "jwt_alg",
                          "must be ES256, RS256 or HS256");
    if (!hk_cfg_curves_ok(c->curves))
        return hk_cfg_bad(why, path, lines, "curves",
                          "must list secp256k1 and/or p256, comma-separated");
    if (c->min_paillier_bits != 2048 && c->min_paillier_bits != 3072)
        return hk_cfg_bad(why, path, lines, "min_paillier_bits",
                          "must be 2048 or 3072");
    if (c->node[0] == 0)
        return hk_cfg_bad(why, path, lines, "node", "must not be empty");
    if (c->callback_ca_file[0] != 0 && c->callback_hosts[0] == 0)
        return hk_cfg_bad(why, path, lines, "callback_ca_file",
                          "callbacks need callback_hosts too (the hosts a "
                          "requester's callback_url may name)");
    if ((c->callback_ca_file[0] == 0) != (c->callback_key_file[0] == 0))
        return hk_cfg_bad(why, path, lines,
                          c->callback_ca_file[0] == 0 ? "callback_ca_file"
                                                      : "callback_key_file",
                          "callbacks need both callback_ca_file and "
                          "callback_key_file");
    if (c->require_attestation[0] != 0 && c->attestation_roots[0] == 0)
        return hk_cfg_bad(why, path, lines, "require_attestation",
                          "needs attestation_roots (the endorsement CA "
                          "bundle attestations are checked against)");
    if (hk_cfg_grants(c->requesters, hk_cfg_grant_bad, NULL) != 0)
        return hk_cfg_bad(why, path, lines, "requesters",
                          "entries are REQUESTER=OWNER, REQUESTER=* or "
                          "REQUESTER=key:<32 hex digits>, separated by commas "
                          "or spaces");
    if (!hk_cfg_ip_ok(c->listen))
        return hk_cfg_bad(why, path, lines, "listen",
                          "must be an IPv4 or IPv6 address (bound exactly, "
                          "e.g. 127.0.0.1 or ::1), not a name");
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

static hk_err hk_cfg_check_seal(hk_srv_config *c, const char *path,
                                const unsigned *lines, char *why)
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
    if (bad != NULL)
        return hk_cfg_bad(why, path, lines, pkcs11 ? "seal" : "kek_file", bad);
    return HK_OK;
}

hk_err hk_srv_config_load(const char *path, hk_srv_config *out, char *why)
{
    unsigned lines[HK_NFIELDS];
    hk_err e;

    if (path == NULL || out == NULL || why == NULL)
        return HK_ERR_ARG;
    hk_srv_config_defaults(out);
    if ((e = hk_kv_load_lines(path, hk_cfg_fields, HK_NFIELDS, out, why,
                              lines)) != HK_OK)
        return e;
    if ((e = hk_cfg_check(out, path, lines, why)) != HK_OK)
        return e;
    return hk_cfg_check_seal(out, path, lines, why);
}

hk_err hk_srv_config_write(const char *path, const hk_srv_config *c)
{
    return hk_kv_write(path, "halfkeyd configuration (see halfkeyd(8))",
                       hk_cfg_fields, HK_NFIELDS, c);
}
