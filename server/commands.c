/* Operator commands of halfkeyd (see commands.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include <jansson.h>

#include "common/isotime.h"
#include "mpc/codec.h"
#include "mpc/setup.h"
#include "server/attest/attest.h"
#include "server/commands.h"
#include "server/policy/audit.h"
#include "server/config.h"
#include "server/seal/keyring.h"
#include "server/http/service.h"

/* Options of one command: --name value pairs after argv[first]. */
typedef struct {
    const char *config, *sub, *key, *from, *per_hour, *per_day, *anchor;
    int json; /* --json: one JSON document instead of text */
} hk_admin_opts;

static int hk_admin_usage(const char *what)
{
    fprintf(stderr, "usage: halfkeyd %s (see halfkeyd --help)\n", what);
    return 2;
}

static int hk_admin_fail(const char *what, hk_err e, const char *why)
{
    fprintf(stderr, "halfkeyd: %s: %s%s%s\n", what, hk_strerror(e),
            why != NULL && why[0] ? ": " : "", why != NULL ? why : "");
    return 1;
}

/* 1 if every argument from argv[first] is a known --name value pair. */
static int hk_admin_parse(int argc, char **argv, int first, hk_admin_opts *o)
{
    static const char *const names[] = {"--config", "--sub",      "--key",
                                        "--from",   "--per-hour", "--per-day",
                                        "--anchor"};
    const char **slots[] = {&o->config,   &o->sub,     &o->key,   &o->from,
                            &o->per_hour, &o->per_day, &o->anchor};
    size_t k, n = sizeof(names) / sizeof(names[0]);
    int i;

    memset(o, 0, sizeof(*o));
    for (i = first; i < argc; i += 2) {
        if (strcmp(argv[i], "--json") == 0) {
            o->json = 1;
            i--;
            continue;
        }
        for (k = 0; k < n && strcmp(argv[i], names[k]) != 0; k++)
            ;
        if (k == n || i + 1 >= argc || *slots[k] != NULL)
            return 0;
        *slots[k] = argv[i + 1];
    }
    return o->config != NULL;
}

/* Loads the configuration and opens its database. */
static int hk_admin_open(const char *path, hk_srv_config *c, hk_db **db)
{
    char why[256] = "";
    hk_err e;

    if ((e = hk_srv_config_load(path, c, why)) != HK_OK)
        return hk_admin_fail("configuration", e, why);
    if ((e = hk_srv_open_db(c, db, why)) != HK_OK)
        return hk_admin_fail("database", e, why);
    return 0;
}

hk_err hk_admin_make_setup(hk_db *db, const hk_kek *kek)
{
    hk_rped_secret *sec = NULL;
    unsigned char *b = NULL;
    size_t n = 0;
    hk_err e;

    if ((e = hk_db_setup_get(db, &b, &n, NULL, NULL)) != HK_ERR_NOT_FOUND) {
        OPENSSL_free(b);
        return e == HK_OK ? HK_ERR_EXISTS : e;
    }
    fprintf(stderr, "halfkeyd: generating the ring-Pedersen setup "
                    "(two 1024-bit safe primes)...\n");
    if ((e = hk_rped_generate(&sec)) == HK_OK)
        e = hk_store_setup(db, kek, sec, (int64_t)time(NULL));
    hk_rped_secret_free(sec);
    return e;
}

int hk_cmd_initdb(int argc, char **argv)
{
    char why[256] = "";
    hk_admin_opts o;
    hk_srv_config c;
    hk_kek *kek = NULL;
    hk_db *db = NULL;
    hk_err e;
    int rc;

    if (!hk_admin_parse(argc, argv, 2, &o) || o.sub || o.key || o.from ||
        o.per_hour || o.per_day || o.anchor)
        return hk_admin_usage("initdb --config FILE");
    if ((rc = hk_admin_open(o.config, &c, &db)) != 0)
        return rc;
    if ((e = hk_keyring_load(&c, &kek, why)) == HK_OK)
        e = hk_admin_make_setup(db, kek);
    printf("%s database: schema %d, %s\n", hk_db_backend(db),
           HK_DB_SCHEMA_VERSION,
           e == HK_OK           ? "setup stored"
           : e == HK_ERR_EXISTS ? "setup already present"
                                : "failed");
    hk_kek_free(kek);
    hk_db_close(db);
    if (e != HK_OK && e != HK_ERR_EXISTS)
        return hk_admin_fail("initdb", e, why);
    return 0;
}

/* The key's backup state (issue 18): "none", "ok:E" (a backup of the
 * active share's epoch E or later), "stale:B<E" (the newest backup, of
 * epoch B, is older than the active share), "?" when unreadable. */
static void hk_admin_backup_state(hk_db *db, const unsigned char *kid,
                                  char *out, size_t cap)
{
    unsigned long newest = 0, active = 0;
    unsigned char *sealed = NULL;
    size_t len = 0;

    snprintf(out, cap, "?");
    if (db == NULL || hk_db_backup_newest(db, kid, &newest) != HK_OK)
        return;
    if (hk_db_share_get_active(db, kid, &active, &sealed, &len) != HK_OK)
        active = 0;
    OPENSSL_free(sealed);
    if (newest == 0)
        snprintf(out, cap, "none");
    else if (newest >= active)
        snprintf(out, cap, "ok:%lu", newest);
    else
        snprintf(out, cap, "stale:%lu<%lu", newest, active);
}

/* A per-key limit as people read it: 0 is the server's default. */
static const char *hk_admin_limit_text(unsigned v, char *buf, size_t cap)
{
    if (v == 0)
        return "default";
    if (v >= HK_DB_LIMIT_MAX)
        return "unlimited";
    snprintf(buf, cap, "%u", v);
    return buf;
}

static const char *hk_admin_state(const hk_db_key *k)
{
    return k->disabled ? "disabled" : k->pending ? "pending" : "enabled";
}

/* A limit in JSON: a number, "default" or "unlimited". */
static json_t *hk_admin_limit_json(unsigned v)
{
    char buf[16];

    return v == 0 || v >= HK_DB_LIMIT_MAX
               ? json_string(hk_admin_limit_text(v, buf, sizeof(buf)))
               : json_integer(v);
}

/* One key as a JSON object (keys list --json): created in ISO 8601;
 * an attested key's EK certificate issuer and fingerprint. */
static json_t *hk_admin_key_json(hk_db *db, const hk_db_key *k)
{
    char kh[2 * HK_ID_LEN + 1], bk[48], when[HK_ISO_LEN], fp[65];
    const char *issuer;
    json_t *o;

    hk_hex(k->kid, HK_ID_LEN, kh);
    hk_admin_backup_state(db, k->kid, bk, sizeof(bk));
    hk_iso_time(k->created, when);
    hk_att_summary_split(k->attestation, fp, &issuer);
    o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:o,s:o,s:s?,s:s,s:b}", "key_id", kh,
                  "curve", hk_curve_name(k->curve), "subject", k->owner,
                  "created", when, "state", hk_admin_state(k), "max_per_hour",
                  hk_admin_limit_json(k->max_hour), "max_per_day",
                  hk_admin_limit_json(k->max_day), "label",
                  k->label[0] ? k->label : NULL, "backup", bk, "attested",
                  k->attestation[0] != 0);
    if (o != NULL && k->attestation[0] != 0)
        json_object_set_new(
            o, "attestation",
            json_pack("{s:s,s:s}", "ek_issuer", issuer, "ek_cert_sha256", fp));
    return o;
}

/* One key as a tab-separated line: limits spelt out, "-" for no label. */
static void hk_admin_print_key(hk_db *db, const hk_db_key *k)
{
    char kh[2 * HK_ID_LEN + 1], bk[48], when[HK_ISO_LEN], h[16], d[16];
    char fp[65];
    const char *issuer;

    hk_hex(k->kid, HK_ID_LEN, kh);
    hk_admin_backup_state(db, k->kid, bk, sizeof(bk));
    hk_iso_time(k->created, when);
    hk_att_summary_split(k->attestation, fp, &issuer);
    printf("%s\t%s\t%s\t%s\t%s\t%s/h\t%s/d\t%s\tbackup=%s\tattested=%s\n", kh,
           hk_curve_name(k->curve), k->owner, when, hk_admin_state(k),
           hk_admin_limit_text(k->max_hour, h, sizeof(h)),
           hk_admin_limit_text(k->max_day, d, sizeof(d)),
           k->label[0] ? k->label : "-", bk, issuer[0] ? issuer : "no");
}

/* Prints o (consumed) as one line; 1 on success. */
static int hk_admin_print_json(json_t *o)
{
    char *txt = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    int ok = txt != NULL && printf("%s\n", txt) > 0;

    free(txt);
    json_decref(o);
    return ok;
}

static int hk_admin_list(hk_db *db, const char *sub, int json)
{
    hk_db_key *keys = NULL;
    json_t *arr = json ? json_array() : NULL;
    size_t n = 0, i;
    hk_err e;

    if ((e = hk_db_key_list(db, sub, &keys, &n)) != HK_OK) {
        json_decref(arr);
        return hk_admin_fail("keys list", e, hk_db_errmsg(db));
    }
    if (!json)
        printf("key_id\tcurve\tsubject\tcreated\tstate\tmax_hour\t"
               "max_day\tlabel\tbackup\tattested\n");
    for (i = 0; i < n; i++) {
        if (json)
            json_array_append_new(arr, hk_admin_key_json(db, &keys[i]));
        else
            hk_admin_print_key(db, &keys[i]);
    }
    OPENSSL_free(keys);
    if (json && !hk_admin_print_json(arr))
        return hk_admin_fail("keys list", HK_ERR_NOMEM, NULL);
    return 0;
}

/* A limit argument: 0..HK_DB_LIMIT_MAX (0: the server's default), or
 * "unlimited" (HK_DB_LIMIT_MAX: beyond any real signing rate, so a key can
 * be exempt from a server-wide default). */
static int hk_admin_limit(const char *s, unsigned *out)
{
    char *end;
    long v;

    if (s == NULL)
        return 0;
    if (strcmp(s, "unlimited") == 0) {
        *out = HK_DB_LIMIT_MAX;
        return 1;
    }
    v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0 || v > HK_DB_LIMIT_MAX)
        return 0;
    *out = (unsigned)v;
    return 1;
}

/* disable, enable or limit one key, audited as an operator action. */
static int hk_admin_change(hk_db *db, const hk_srv_config *c, const char *verb,
                           const hk_admin_opts *o)
{
    unsigned char kid[HK_ID_LEN];
    unsigned h = 0, d = 0;
    char detail[64] = "by operator";
    hk_audit_ev ev;
    hk_db_key k;
    hk_err e;

    if (o->key == NULL || !hk_unhex(o->key, strlen(o->key), kid, HK_ID_LEN))
        return hk_admin_usage("keys disable|enable|limit --key KEYID");
    if (strcmp(verb, "limit") == 0) {
        if (!hk_admin_limit(o->per_hour, &h) || !hk_admin_limit(o->per_day, &d))
            return hk_admin_usage("keys limit --per-hour N --per-day N");
        snprintf(detail, sizeof(detail), "by operator: %u/h %u/d", h, d);
        e = hk_db_key_set_limits(db, kid, h, d);
    } else {
        e = hk_db_key_set_disabled(db, kid, strcmp(verb, "disable") == 0);
    }
    if (e == HK_OK && (e = hk_db_key_get(db, kid, &k)) == HK_OK) {
        memset(&ev, 0, sizeof(ev));
        ev.event = verb;
        ev.outcome = "ok";
        ev.sub = k.owner;
        ev.kid = kid;
        ev.detail = detail;
        e = hk_audit_write(db, c->node, &ev, (int64_t)time(NULL));
    }
    if (e != HK_OK)
        return hk_admin_fail(
            verb, e, e == HK_ERR_NOT_FOUND ? "no such key" : hk_db_errmsg(db));
    hk_admin_print_key(db, &k);
    return 0;
}

/* keys delete --key K: removes a key (its share, and its backup with it)
 * whose client is gone, as an audited operator action. A key with a
 * backup could still have been restored: that is said, and audited. */
static int hk_admin_delete(hk_db *db, const hk_srv_config *c,
                           const hk_admin_opts *o)
{
    unsigned char kid[HK_ID_LEN];
    unsigned long newest = 0;
    char detail[160];
    hk_audit_ev ev;
    hk_db_key k;
    hk_err e;

    if (o->key == NULL || !hk_unhex(o->key, strlen(o->key), kid, HK_ID_LEN))
        return hk_admin_usage("keys delete --key KEYID");
    if ((e = hk_db_key_get(db, kid, &k)) != HK_OK ||
        (e = hk_db_backup_newest(db, kid, &newest)) != HK_OK ||
        (e = hk_db_key_delete(db, kid, NULL)) != HK_OK)
        return hk_admin_fail("keys delete", e,
                             e == HK_ERR_NOT_FOUND ? "no such key"
                                                   : hk_db_errmsg(db));
    if (newest > 0)
        snprintf(detail, sizeof(detail),
                 "by operator: client gone; the key had a backup (epoch "
                 "%lu), deleted with it",
                 newest);
    else
        snprintf(detail, sizeof(detail), "by operator: client gone");
    memset(&ev, 0, sizeof(ev));
    ev.event = "delete";
    ev.outcome = "ok";
    ev.sub = k.owner;
    ev.kid = kid;
    ev.detail = detail;
    if ((e = hk_audit_write(db, c->node, &ev, (int64_t)time(NULL))) != HK_OK)
        return hk_admin_fail("keys delete: audit", e, hk_db_errmsg(db));
    if (newest > 0)
        fprintf(stderr,
                "halfkeyd: key %s had a backup (epoch %lu): it can no longer "
                "be restored (the server's share and the backup are gone)\n",
                o->key, newest);
    printf("%s\tdeleted\n", o->key);
    return 0;
}

/* disable or enable every key of o->sub. */
static int hk_admin_change_sub(hk_db *db, const hk_srv_config *c,
                               const char *verb, const hk_admin_opts *o)
{
    char kh[2 * HK_ID_LEN + 1];
    hk_admin_opts one = *o;
    hk_db_key *keys = NULL;
    size_t n = 0, i;
    int rc = 0;
    hk_err e;

    if ((e = hk_db_key_list(db, o->sub, &keys, &n)) != HK_OK)
        return hk_admin_fail(verb, e, hk_db_errmsg(db));
    if (n == 0)
        rc = hk_admin_fail(verb, HK_ERR_NOT_FOUND, "the subject has no key");
    for (i = 0; i < n && rc == 0; i++) {
        hk_hex(keys[i].kid, HK_ID_LEN, kh);
        one.key = kh;
        rc = hk_admin_change(db, c, verb, &one);
    }
    OPENSSL_free(keys);
    return rc;
}

int hk_cmd_keys(int argc, char **argv)
{
    const char *verb = argc > 2 ? argv[2] : "";
    hk_admin_opts o;
    hk_srv_config c;
    hk_db *db = NULL;
    int rc, list = strcmp(verb, "list") == 0;

    int limit = strcmp(verb, "limit") == 0, del = strcmp(verb, "delete") == 0;

    if ((!list && !limit && !del && strcmp(verb, "disable") &&
         strcmp(verb, "enable")) ||
        !hk_admin_parse(argc, argv, 3, &o) || o.from != NULL || o.anchor ||
        (list && o.key != NULL) || (!list && o.json) ||
        (!list && (o.sub == NULL) == (o.key == NULL)) ||
        ((limit || del) && o.sub != NULL) ||
        (!limit && (o.per_hour || o.per_day)))
        return hk_admin_usage(
            "keys list|disable|enable|limit|delete --config FILE");
    if ((rc = hk_admin_open(o.config, &c, &db)) != 0)
        return rc;
    if (del)
        rc = hk_admin_delete(db, &c, &o);
    else if (list)
        rc = hk_admin_list(db, o.sub, o.json);
    else if (o.sub != NULL)
        rc = hk_admin_change_sub(db, &c, verb, &o);
    else
        rc = hk_admin_change(db, &c, verb, &o);
    hk_db_close(db);
    return rc;
}

/* The record an anchor names: its hash, found by the scan. */
typedef struct {
    int64_t seq;
    int found;
    unsigned char hash[HK_AUDIT_HASH_LEN];
} hk_anchor;

static hk_err hk_anchor_find(void *ctx, const hk_audit_rec *r)
{
    hk_anchor *a = ctx;

    if (r->seq == a->seq) {
        a->found = 1;
        memcpy(a->hash, r->hash, HK_AUDIT_HASH_LEN);
    }
    return HK_ERR_STATE; /* the first record from seq is enough */
}

/* An anchor "SEQ:HASH" from an earlier verify, kept off the database
 * host: the chain alone cannot show records rewritten with new hashes
 * from some point on, or cut off at the end; the anchor can. 0 if the
 * log still holds that record with that hash. */
static int hk_admin_anchor(hk_db *db, const char *arg)
{
    unsigned char want[HK_AUDIT_HASH_LEN];
    const char *colon = strchr(arg, ':');
    hk_anchor a = {0, 0, {0}};
    char *end = NULL;
    hk_err e;

    if (colon == NULL || (a.seq = strtoll(arg, &end, 10)) < 1 || end != colon ||
        !hk_unhex(colon + 1, strlen(colon + 1), want, sizeof(want)))
        return hk_admin_usage("audit verify --anchor SEQ:HASH");
    e = hk_db_audit_scan(db, a.seq, hk_anchor_find, &a);
    if (e != HK_OK && e != HK_ERR_STATE)
        return hk_admin_fail("audit verify", e, hk_db_errmsg(db));
    if (!a.found) {
        printf("audit: anchor record %lld is missing (the log was cut "
               "short)\n",
               (long long)a.seq);
        return 1;
    }
    if (CRYPTO_memcmp(a.hash, want, sizeof(want)) != 0) {
        printf("audit: anchor record %lld has another hash (the log was "
               "rewritten)\n",
               (long long)a.seq);
        return 1;
    }
    printf("audit: anchor record %lld matches\n", (long long)a.seq);
    return 0;
}

/* audit verify --json: {"records", "intact", "head", "anchor",
 * "broken_seq", "why"} (null where they do not apply); the exit code as
 * without --json, and no --anchor check (scripts compare "anchor"). */
static int hk_admin_verify_json(const hk_audit_report *rep)
{
    char head[2 * HK_AUDIT_HASH_LEN + 1], anchor[2 * HK_AUDIT_HASH_LEN + 24];
    int broken = rep->broken_seq != 0, some = !broken && rep->count > 0;

    hk_hex(rep->head, HK_AUDIT_HASH_LEN, head);
    snprintf(anchor, sizeof(anchor), "%lld:%s", (long long)rep->count, head);
    if (!hk_admin_print_json(json_pack(
            "{s:I,s:b,s:s?,s:s?,s:o,s:s?}", "records", (json_int_t)rep->count,
            "intact", !broken, "head", some ? head : NULL, "anchor",
            some ? anchor : NULL, "broken_seq",
            broken ? json_integer(rep->broken_seq) : json_null(), "why",
            broken ? rep->why : NULL)))
        return hk_admin_fail("audit verify", HK_ERR_NOMEM, NULL);
    return broken;
}

static int hk_admin_verify(hk_db *db, const char *anchor, int json)
{
    char head[2 * HK_AUDIT_HASH_LEN + 1];
    hk_audit_report rep;
    hk_err e;

    if ((e = hk_audit_verify(db, &rep)) != HK_OK)
        return hk_admin_fail("audit verify", e, hk_db_errmsg(db));
    if (json)
        return hk_admin_verify_json(&rep);
    if (rep.broken_seq != 0) {
        printf("audit: chain broken at record %lld: %s (%lld records "
               "before it are intact)\n",
               (long long)rep.broken_seq, rep.why, (long long)rep.count);
        return 1;
    }
    hk_hex(rep.head, HK_AUDIT_HASH_LEN, head);
    printf("audit: %lld records, chain intact, head %s\n", (long long)rep.count,
           rep.count > 0 ? head : "(empty)");
    if (rep.count > 0)
        printf("anchor = %lld:%s\n", (long long)rep.count, head);
    return anchor != NULL ? hk_admin_anchor(db, anchor) : 0;
}

int hk_cmd_audit(int argc, char **argv)
{
    const char *verb = argc > 2 ? argv[2] : "";
    hk_admin_opts o;
    hk_srv_config c;
    hk_db *db = NULL;
    long long from = 1;
    char *end = NULL;
    hk_err e;
    int rc;

    if ((strcmp(verb, "verify") && strcmp(verb, "export")) ||
        !hk_admin_parse(argc, argv, 3, &o) || o.sub || o.key || o.per_hour ||
        o.per_day || (o.from != NULL && strcmp(verb, "export") != 0) ||
        (o.anchor != NULL && strcmp(verb, "verify") != 0) ||
        (o.anchor != NULL && o.json))
        return hk_admin_usage("audit verify|export --config FILE");
    if (o.from != NULL &&
        ((from = strtoll(o.from, &end, 10)) < 1 || *end != '\0'))
        return hk_admin_usage("audit export --from SEQ (>= 1)");
    if ((rc = hk_admin_open(o.config, &c, &db)) != 0)
        return rc;
    if (strcmp(verb, "verify") == 0) {
        rc = hk_admin_verify(db, o.anchor, o.json);
    } else if ((e = hk_audit_export(db, from, stdout)) != HK_OK) {
        rc = hk_admin_fail("audit export", e, hk_db_errmsg(db));
    }
    hk_db_close(db);
    return rc;
}
