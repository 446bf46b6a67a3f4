/* halfkey: the command-line client of a halfkey token.
 *
 * Owns the command line: parsing, each command's usage (hk_usages, what
 * `halfkey CMD --help` prints and halfkey(1) expands on), output and exit
 * codes (0 done, 1 failed, 2 usage). The commands call the client core
 * (client/client.h, client/keystore.h); `doctor` is tools/doctor.h.
 *
 * The PIN comes from $HALFKEY_PIN, from --pin-file, or from a prompt. Every
 * error is one line on stderr and a non-zero exit. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <jansson.h>

#include "client/client.h"
#include "common/isotime.h"
#include "mpc/codec.h"
#include "mpc/pve.h"
#include "mpc/transcript.h"
#include "tools/doctor.h"
#include "tools/requests.h"

#define HK_MAX_OPTS 16

typedef struct {
    const char *dir, *cmd, *verb, *pin_file;
    const char *names[HK_MAX_OPTS], *values[HK_MAX_OPTS];
    int n;
} hk_args;

/* An error that no error code words well (a missing PIN is not a wrong
 * one): the message alone. */
static int hk_fail(const char *what, const char *msg)
{
    fprintf(stderr, "halfkey: %s: %s\n", what, msg);
    return 1;
}

/* Errors whose cause `halfkey doctor` finds (server, certificate, JWT,
 * configuration, token state). */
static int hk_doctor_knows(hk_err e)
{
    return e == HK_ERR_NETWORK || e == HK_ERR_TLS || e == HK_ERR_TIMEOUT ||
           e == HK_ERR_AUTH || e == HK_ERR_CONFIG || e == HK_ERR_KEY_LOCKED ||
           e == HK_ERR_EPOCH || e == HK_ERR_TPM;
}

static int hk_die(const char *what, hk_err e, const char *detail)
{
    const char *doc = hk_doctor_knows(e) ? "; `halfkey doctor` checks the "
                                           "token, server and JWT"
                                         : "";

    if (detail != NULL && detail[0])
        fprintf(stderr, "halfkey: %s: %s (%s)%s\n", what, hk_strerror(e),
                detail, doc);
    else
        fprintf(stderr, "halfkey: %s: %s%s\n", what, hk_strerror(e), doc);
    return 1;
}

/* A failed operation on key `key`: the server's or the core's words, or
 * that this token has no such key. */
static int hk_key_die(const char *what, hk_client *c, const char *key, hk_err e)
{
    char why[HK_KS_LABEL_MAX + 1100];

    if (e != HK_ERR_NOT_FOUND || hk_client_last_error(c)[0] != 0)
        return hk_die(what, e, hk_client_last_error(c));
    snprintf(why, sizeof(why),
             "no key %.100s in the token %.900s (`halfkey list` shows its "
             "keys)",
             key, hk_ks_dir(hk_client_keystore(c)));
    return hk_fail(what, why);
}

/* One command's synopsis: `halfkey CMD --help` prints it (exit 0), a
 * usage error of CMD prints it on stderr (exit 2), `halfkey --help` lists
 * the names. A new command adds its row here and one dispatch line in
 * main. */
typedef struct {
    const char *cmd, *usage;
} hk_usage_row;

static const hk_usage_row hk_usages[] = {
    {"init", "init --url https://HOST:PORT (--server-pin HEX | --server-ca "
             "FILE)\n"
             "        (--token-file F | --token-command CMD) [--label L]\n"
             "        [--paillier-bits 2048|3072] [--so-pin-file F] "
             "[--tpm [--tcti SPEC]]\n"
             "  Makes a token directory pinned to the server; everything is "
             "checked\n  before the new PIN is asked for (twice at a "
             "terminal)."},
    {"keygen", "keygen --curve secp256k1|p256 --label L [--attest]\n"
               "  Makes a split key with the server; --attest (or attest = 1 "
               "in\n  halfkey.conf) proves to it that a TPM-backed token's "
               "TPM holds it."},
    {"sign", "sign --key L (--digest HEX | --in FILE [--hash "
             "sha256|sha384|sha512])\n"
             "        [--format der|raw] [--out FILE] [--request ID "
             "[--index N]]\n"
             "     sign --key L --digest-file F [--format der|raw]\n"
             "  Signs a digest (or a file's hash) with the server; "
             "--digest-file signs\n  one hex digest a line over one "
             "connection."},
    {"refresh", "refresh --key L\n"
                "  New shares on both sides, same public key."},
    {"pool", "pool fill [--count N]\n"
             "     pool status\n"
             "  The prime pool: Paillier primes made now (idle time) and "
             "sealed under\n  the PIN, each used once by a later keygen, "
             "refresh or restore, which\n  then skip the prime search; "
             "fill tops it up to N entries (default 4)."},
    {"presign", "presign --key L [--count N]\n"
                "  Makes presignatures of the key now (idle time) and seals "
                "them under the\n  PIN: each later `halfkey sign` of the key "
                "takes one and needs one\n  round trip; tops up to N "
                "(default 16, at most 64; 0 shows the count)."},
    {"pubkey", "pubkey --key L\n  Prints the public key (PEM)."},
    {"list", "list [--json]\n"
             "  The token's keys: label, curve, key id, epoch, lock."},
    {"status", "status [--json]\n  The server's status (GET /status)."},
    {"unlock", "unlock --key L [--force]\n"
               "  Clears an interrupted signature (--force: an abort lock, "
               "audited)."},
    {"doctor", "doctor\n"
               "  Checks the token, its configuration, the server, the JWT "
               "and the keys;\n  with $HALFKEY_PIN or --pin-file also the "
               "PIN (without counting a wrong\n  one)."},
    {"delete", "delete --key L|KEYID [--yes]\n"
               "  Deletes a key on the server, then here (type the label "
               "unless --yes)."},
    {"passwd", "passwd [--new-pin-file F]\n"
               "     passwd --so-pin-file F [--new-pin-file F]\n"
               "  Changes the PIN (the old one as for any login, the new one "
               "from the file\n  or typed twice); with --so-pin-file the "
               "security officer sets a new\n  PIN (a forgotten or locked "
               "one). Also spelt change-pin."},
    {"set-so-pin", "set-so-pin --so-pin-file F\n"
                   "  Sets the SO PIN (if none) and escrows the user PIN's "
                   "master key for it."},
    {"backup-key", "backup-key new --out FILE [--type p256|rsa3072] "
                   "[--passphrase-file F]\n"
                   "  Makes an offline backup key pair (FILE private, "
                   "FILE.pub public)."},
    {"backup", "backup --key L [--backup-pub FILE]\n"
               "  Stores the key's share on the server encrypted to the "
               "backup key."},
    {"restore", "restore --key-id KEYID --backup-priv FILE --label L "
                "[--passphrase-file F]\n"
                "  Restores a key from its backup into this token, then "
                "refreshes it."},
    {"requests", "requests [--json] [--watch]\n"
                 "  The signing requests waiting for this token's keys, "
                 "each checked here\n  (its digests recomputed from what it "
                 "signs); --watch waits for new ones."},
    {"approve", "approve REQUEST_ID\n"
                "  Checks the request and signs what it names with the local "
                "key."},
    {"reject", "reject REQUEST_ID [--reason R]\n"
               "  Rejects a waiting request."},
};

#define HK_NUSAGES (sizeof(hk_usages) / sizeof(hk_usages[0]))

static const hk_usage_row *hk_usage_of(const char *cmd)
{
    size_t i;

    if (cmd != NULL && strcmp(cmd, "change-pin") == 0)
        cmd = "passwd";
    for (i = 0; cmd != NULL && i < HK_NUSAGES; i++)
        if (strcmp(hk_usages[i].cmd, cmd) == 0)
            return &hk_usages[i];
    return NULL;
}

/* The synopsis of cmd, or (NULL or unknown) the list of commands. */
static void hk_print_usage(FILE *f, const char *cmd)
{
    const hk_usage_row *u = hk_usage_of(cmd);
    size_t i;

    if (u != NULL) {
        fprintf(f, "usage: halfkey [--dir D] [--pin-file F] %s\n", u->usage);
        return;
    }
    fputs("usage: halfkey [--dir D] [--pin-file F] COMMAND [options]\n"
          "       halfkey COMMAND --help | --help | --version\ncommands:",
          f);
    for (i = 0; i < HK_NUSAGES; i++)
        fprintf(f, " %s", hk_usages[i].cmd);
    fputs("\n(halfkey COMMAND --help, and halfkey(1), give each command's "
          "options)\n",
          f);
}

/* A usage error: the command's synopsis on stderr, exit 2. */
static int hk_usage(const char *cmd)
{
    hk_print_usage(stderr, cmd);
    return 2;
}

/* --help: on stdout, exit 0 (2 for an unknown command). */
static int hk_help(const char *cmd)
{
    if (cmd != NULL && hk_usage_of(cmd) == NULL) {
        fprintf(stderr, "halfkey: unknown command %s\n", cmd);
        return hk_usage(NULL);
    }
    hk_print_usage(stdout, cmd);
    return 0;
}

static const char *hk_opt(const hk_args *a, const char *name)
{
    int i;

    for (i = 0; i < a->n; i++)
        if (strcmp(a->names[i], name) == 0)
            return a->values[i];
    return NULL;
}

/* Options that take no value (given: "1"). */
static int hk_is_flag(const char *arg)
{
    return strcmp(arg, "--force") == 0 || strcmp(arg, "--yes") == 0 ||
           strcmp(arg, "--tpm") == 0 || strcmp(arg, "--json") == 0 ||
           strcmp(arg, "--attest") == 0 || strcmp(arg, "--watch") == 0 ||
           strcmp(arg, "--help") == 0;
}

/* Parses [--dir D] [--pin-file F] CMD then --name value pairs and flags. */
static int hk_parse(int argc, char **argv, hk_args *a)
{
    int i = 1;

    memset(a, 0, sizeof(*a));
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (strcmp(argv[i], "--dir") == 0)
            a->dir = argv[i + 1];
        else if (strcmp(argv[i], "--pin-file") == 0)
            a->pin_file = argv[i + 1];
        else
            return 0;
    }
    if (i >= argc)
        return 0;
    a->cmd = argv[i++];
    /* a command with a verb: `backup-key new` */
    if (i < argc &&
        (strcmp(a->cmd, "backup-key") == 0 || strcmp(a->cmd, "approve") == 0 ||
         strcmp(a->cmd, "reject") == 0 || strcmp(a->cmd, "pool") == 0) &&
        strncmp(argv[i], "--", 2) != 0)
        a->verb = argv[i++];
    for (; i < argc; i += 2) {
        if (strncmp(argv[i], "--", 2) != 0 || a->n == HK_MAX_OPTS)
            return 0;
        a->names[a->n] = argv[i] + 2;
        if (hk_is_flag(argv[i])) {
            a->values[a->n++] = "1";
            i--;
            continue;
        }
        if (i + 1 >= argc)
            return 0;
        a->values[a->n++] = argv[i + 1];
    }
    return 1;
}

/* Every option given must be one of `allowed` (NULL-terminated). */
static int hk_only(const hk_args *a, const char *const *allowed)
{
    int i, j;

    for (i = 0; i < a->n; i++) {
        for (j = 0; allowed[j] != NULL && strcmp(allowed[j], a->names[i]); j++)
            ;
        if (allowed[j] == NULL) {
            fprintf(stderr, "halfkey: unknown option --%s for %s\n",
                    a->names[i], a->cmd);
            return 0;
        }
    }
    return 1;
}

/* A secret typed at the terminal into out; with `twice`, typed again
 * and compared. 0 if there is no terminal, or the two differ. */
static int hk_prompt(const char *prompt, int twice, char *out, size_t cap)
{
    char again[HK_KS_PIN_MAX + 2], *p;
    int ok;

    if (!isatty(STDIN_FILENO) || (p = getpass(prompt)) == NULL)
        return 0;
    snprintf(out, cap, "%s", p);
    OPENSSL_cleanse(p, strlen(p));
    if (!twice)
        return 1;
    if ((p = getpass("Again: ")) == NULL)
        return 0;
    snprintf(again, sizeof(again), "%s", p);
    OPENSSL_cleanse(p, strlen(p));
    ok = strcmp(again, out) == 0;
    OPENSSL_cleanse(again, sizeof(again));
    if (!ok)
        fprintf(stderr, "halfkey: the two entries differ\n");
    return ok;
}

/* Where the PIN comes from, for messages about a missing one. */
#define HK_PIN_SOURCES                                                         \
    "no PIN given: set HALFKEY_PIN, pass --pin-file FILE (before the "         \
    "command), or run at a terminal"

/* The PIN: --pin-file, else $HALFKEY_PIN, else typed (`twice` for a new
 * PIN). 0 if none. */
static int hk_pin_from(const hk_args *a, int twice, const char *prompt,
                       char *pin, size_t cap)
{
    const char *env = getenv("HALFKEY_PIN");
    FILE *f;

    if (a->pin_file != NULL) {
        if ((f = fopen(a->pin_file, "r")) == NULL ||
            fgets(pin, (int)cap, f) == NULL) {
            if (f != NULL)
                fclose(f);
            return 0;
        }
        fclose(f);
    } else if (env != NULL) {
        snprintf(pin, cap, "%s", env);
    } else if (!hk_prompt(prompt, twice, pin, cap)) {
        return 0;
    }
    pin[strcspn(pin, "\r\n")] = 0;
    return pin[0] != 0;
}

static int hk_get_pin(const hk_args *a, char *pin, size_t cap)
{
    return hk_pin_from(a, 0, "PIN: ", pin, cap);
}

/* The first line of file f (the SO PIN). */
static int hk_read_line(const char *f, char *out, size_t cap)
{
    FILE *fp = fopen(f, "r");
    int ok = fp != NULL && fgets(out, (int)cap, fp) != NULL;

    if (fp != NULL)
        fclose(fp);
    out[ok ? strcspn(out, "\r\n") : 0] = 0;
    return out[0] != 0;
}

/* Sets the SO PIN from file f if the token has none, logs in as SO and
 * escrows the (logged-in) user's master key. */
static hk_err hk_so_escrow(hk_ks *ks, const char *f)
{
    char so[HK_KS_PIN_MAX + 2];
    hk_ks_tokeninfo ti;
    hk_err e;

    if (!hk_read_line(f, so, sizeof(so)))
        return HK_ERR_CONFIG;
    if ((e = hk_ks_token_info(ks, &ti)) == HK_OK && !ti.so_set)
        e = hk_ks_so_set(ks, so, NULL);
    if (e == HK_OK && (e = hk_ks_so_login(ks, so)) == HK_OK)
        e = hk_ks_so_endorse(ks);
    hk_ks_so_logout(ks);
    OPENSSL_cleanse(so, sizeof(so));
    return e;
}

/* The options of init as a configuration; 0 on a malformed number. */
static int hk_init_config(const hk_args *a, hk_client_config *cfg)
{
    const char *v;
    char *end;
    size_t i;

    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->server_url, sizeof(cfg->server_url), "%s", hk_opt(a, "url"));
    if ((v = hk_opt(a, "server-pin")) != NULL)
        snprintf(cfg->server_pin, sizeof(cfg->server_pin), "%s", v);
    for (i = 0; cfg->server_pin[i]; i++) /* as people copy it: any case */
        if (cfg->server_pin[i] >= 'A' && cfg->server_pin[i] <= 'F')
            cfg->server_pin[i] += 'a' - 'A';
    if ((v = hk_opt(a, "server-ca")) != NULL)
        snprintf(cfg->server_ca, sizeof(cfg->server_ca), "%s", v);
    if ((v = hk_opt(a, "token-file")) != NULL)
        snprintf(cfg->token_file, sizeof(cfg->token_file), "%s", v);
    if ((v = hk_opt(a, "token-command")) != NULL)
        snprintf(cfg->token_command, sizeof(cfg->token_command), "%s", v);
    v = hk_opt(a, "paillier-bits");
    cfg->paillier_bits = v != NULL ? (int)strtol(v, &end, 10) : 2048;
    cfg->timeout_ms = 30000;
    return v == NULL || (*v != 0 && *end == 0);
}

/* 1 if `path` (option --name) is a readable file; says why not. */
static int hk_readable(const char *name, const char *path)
{
    FILE *f = path != NULL ? fopen(path, "r") : NULL;

    if (path == NULL)
        return 1;
    if (f == NULL) {
        fprintf(stderr, "halfkey: init: --%s %s: %s\n", name, path,
                strerror(errno));
        return 0;
    }
    fclose(f);
    return 1;
}

/* Everything init can check before it asks for the PIN: the options, the
 * files they name, and that the directory holds no token yet. */
static int hk_init_check(const hk_args *a, hk_client_config *cfg)
{
    const char *label = hk_opt(a, "label");
    char why[256], *dir = NULL, path[1100];
    size_t i;
    hk_err e;

    if (!hk_init_config(a, cfg))
        return hk_die("init", HK_ERR_ARG, "--paillier-bits 2048 or 3072");
    if ((e = hk_client_config_check(cfg, "halfkey init", why)) != HK_OK)
        return hk_die("init", e, why);
    if (!hk_readable("token-file", hk_opt(a, "token-file")) ||
        !hk_readable("server-ca", hk_opt(a, "server-ca")) ||
        !hk_readable("so-pin-file", hk_opt(a, "so-pin-file")))
        return 1;
    for (i = 0; label != NULL && label[i] >= ' ' && label[i] <= '~'; i++)
        ;
    if (label != NULL && (i == 0 || label[i] || i > HK_KS_TOKEN_LABEL_MAX))
        return hk_die("init", HK_ERR_ARG,
                      "--label: 1 to 32 printable ASCII characters");
    if (hk_ks_dir_resolve(a->dir, &dir) != HK_OK)
        return hk_die("init", HK_ERR_CONFIG,
                      "no token directory: give --dir DIR, or set "
                      "HALFKEY_HOME or XDG_DATA_HOME");
    snprintf(path, sizeof(path), "%.1000s/token.json", dir);
    if (access(path, F_OK) == 0) {
        snprintf(why, sizeof(why), "%.200s already holds a token", dir);
        OPENSSL_free(dir);
        return hk_die("init", HK_ERR_EXISTS, why);
    }
    OPENSSL_free(dir);
    return 0;
}

/* The new PIN of init: checked, with its length rule. */
static int hk_init_pin(const hk_args *a, char *pin, size_t cap)
{
    if (!hk_pin_from(a, 1, "New PIN: ", pin, cap))
        return hk_fail("init", HK_PIN_SOURCES);
    if (strlen(pin) < HK_KS_PIN_MIN || strlen(pin) > HK_KS_PIN_MAX) {
        OPENSSL_cleanse(pin, cap);
        return hk_die("init", HK_ERR_ARG,
                      "the PIN must have 6 to 256 characters");
    }
    return 0;
}

static int hk_cmd_init(const hk_args *a)
{
    static const char *const allowed[] = {
        "url",   "server-pin",    "server-ca",   "token-file", "token-command",
        "label", "paillier-bits", "so-pin-file", "tpm",        "tcti",
        NULL};
    hk_client_config cfg;
    char pin[HK_KS_PIN_MAX + 2];
    const char *v;
    hk_ks *ks = NULL;
    hk_err e;

    if (!hk_only(a, allowed) || hk_opt(a, "url") == NULL ||
        (hk_opt(a, "tcti") != NULL && hk_opt(a, "tpm") == NULL))
        return hk_usage(a->cmd);
    if (hk_opt(a, "tpm") != NULL && !hk_ks_tpm_supported())
        return hk_die("init", HK_ERR_TPM,
                      "this halfkey was built without TPM support (tpm2-tss)");
    if (hk_opt(a, "tpm") != NULL && hk_opt(a, "so-pin-file") != NULL)
        return hk_die("init", HK_ERR_ARG,
                      "a TPM-backed token has no SO escrow (--so-pin-file)");
    if (hk_init_check(a, &cfg) != 0 || hk_init_pin(a, pin, sizeof(pin)) != 0)
        return 1;
    v = hk_opt(a, "label");
    if (hk_opt(a, "tpm") != NULL)
        e = hk_ks_init_tpm(a->dir, pin, v != NULL ? v : "halfkey",
                           hk_opt(a, "tcti"), &ks);
    else
        e = hk_ks_init(a->dir, pin, v != NULL ? v : "halfkey", &ks);
    OPENSSL_cleanse(pin, sizeof(pin));
    if (e != HK_OK)
        return hk_die("init", e,
                      e == HK_ERR_TPM ? "sealing the master key in the TPM "
                                        "(is the TCTI right and the TPM "
                                        "reachable?)"
                                      : "creating the token");
    if (hk_opt(a, "tpm") != NULL)
        printf("tpm = %s\n", hk_opt(a, "tcti") != NULL ? hk_opt(a, "tcti")
                                                       : "device:/dev/tpmrm0");
    e = hk_client_config_write(hk_ks_dir(ks), &cfg);
    printf("token = %s\n", hk_ks_dir(ks));
    if (e == HK_OK && (v = hk_opt(a, "so-pin-file")) != NULL &&
        (e = hk_so_escrow(ks, v)) != HK_OK) {
        hk_ks_close(ks);
        return hk_die("init", e, "setting the SO PIN");
    }
    hk_ks_close(ks);
    return e == HK_OK ? 0 : hk_die("init", e, "writing halfkey.conf");
}

/* What a failed login of a TPM-backed token means (NULL: nothing to add). */
static const char *hk_login_hint(hk_ks *ks, hk_err e)
{
    hk_ks_tpminfo tp;
    hk_ks_tokeninfo ti;

    if (e == HK_ERR_TPM_FOREIGN)
        return "this token directory was made on another machine's TPM: "
               "it cannot be used here (make a new token and keys)";
    if (e == HK_ERR_TPM)
        return "the token's TPM does not answer: check its TCTI "
               "(halfkey doctor)";
    if (e != HK_ERR_PIN_LOCKED || hk_ks_token_info(ks, &ti) != HK_OK)
        return NULL;
    if (!ti.tpm || ti.pin_locked)
        return ti.pin_locked ? hk_doctor_locked_pin_fix(&ti) : NULL;
    if (hk_ks_tpm_status(ks, &tp) == HK_OK && tp.in_lockout)
        return "the TPM's dictionary-attack lockout is active after too "
               "many wrong PINs: wait for it to forget failures "
               "(lockout interval), or have the TPM owner reset it "
               "(tpm2_dictionarylockout --clear-lockout)";
    return "the TPM refuses authorisations (dictionary-attack lockout)";
}

/* Opens the token and logs in. */
static int hk_open(const hk_args *a, hk_client **c, int login)
{
    char why[256], pin[HK_KS_PIN_MAX + 2];
    hk_err e;

    if ((e = hk_client_open(a->dir, c, why)) != HK_OK)
        return hk_die("open", e, why);
    if (!login)
        return 0;
    if (!hk_get_pin(a, pin, sizeof(pin))) {
        hk_client_close(*c);
        return hk_fail("login", HK_PIN_SOURCES);
    }
    e = hk_ks_login(hk_client_keystore(*c), pin);
    OPENSSL_cleanse(pin, sizeof(pin));
    if (e != HK_OK) {
        int r = hk_die("login", e, hk_login_hint(hk_client_keystore(*c), e));

        hk_client_close(*c);
        return r;
    }
    return 0;
}

static int hk_cmd_set_so_pin(const hk_args *a)
{
    static const char *const allowed[] = {"so-pin-file", NULL};
    hk_client *c;
    hk_err e;

    if (!hk_only(a, allowed) || hk_opt(a, "so-pin-file") == NULL)
        return hk_usage(a->cmd);
    if (hk_open(a, &c, 1) != 0)
        return 1;
    e = hk_so_escrow(hk_client_keystore(c), hk_opt(a, "so-pin-file"));
    hk_client_close(c);
    if (e != HK_OK)
        return hk_die("set-so-pin", e,
                      e == HK_ERR_PIN ? "the token's SO PIN differs" : "");
    printf("so_pin = set\nescrow = yes\n");
    return 0;
}

/* The new PIN of passwd: --new-pin-file, else typed twice. */
static int hk_new_pin(const hk_args *a, char *pin, size_t cap)
{
    const char *f = hk_opt(a, "new-pin-file");

    if (f != NULL ? hk_read_line(f, pin, cap)
                  : hk_prompt("New PIN: ", 1, pin, cap))
        return 0;
    return hk_fail("passwd", f != NULL ? "unreadable --new-pin-file"
                                       : "no new PIN: pass --new-pin-file "
                                         "FILE, or run at a terminal");
}

/* The security officer sets a new user PIN (a forgotten or locked one):
 * keystore.h "SO PIN", as PKCS#11 C_InitPIN does. */
static hk_err hk_so_reset(hk_ks *ks, const char *so_file, const char *pin)
{
    char so[HK_KS_PIN_MAX + 2];
    hk_err e;

    if (!hk_read_line(so_file, so, sizeof(so)))
        return HK_ERR_CONFIG;
    if ((e = hk_ks_so_login(ks, so)) == HK_OK)
        e = hk_ks_so_init_pin(ks, pin);
    hk_ks_so_logout(ks);
    OPENSSL_cleanse(so, sizeof(so));
    return e;
}

/* What a failed passwd means. */
static const char *hk_passwd_hint(hk_ks *ks, hk_err e, int so)
{
    if (e == HK_ERR_ARG)
        return "the new PIN must have 6 to 256 characters";
    if (so && e == HK_ERR_CONFIG)
        return "unreadable --so-pin-file";
    if (so && e == HK_ERR_NOT_FOUND)
        return "the token has no SO PIN (halfkey set-so-pin)";
    if (so && e == HK_ERR_STATE)
        return "the SO has no escrow of this token's keys (set-so-pin "
               "needs both PINs once): the keys cannot be re-sealed";
    if (so && e == HK_ERR_PIN)
        return "wrong SO PIN";
    return hk_login_hint(ks, e);
}

/* Changes the user PIN (crash-safe, keystore.h): the old PIN as for any
 * login, or with --so-pin-file the SO's reset; the new one from
 * --new-pin-file or typed twice. Also spelt change-pin. */
static int hk_cmd_passwd(const hk_args *a)
{
    static const char *const allowed[] = {"new-pin-file", "so-pin-file", NULL};
    char old[HK_KS_PIN_MAX + 2], neu[HK_KS_PIN_MAX + 2];
    const char *so = hk_opt(a, "so-pin-file");
    hk_client *c;
    char why[256];
    int rc = 1;
    hk_err e;

    if (!hk_only(a, allowed))
        return hk_usage(a->cmd);
    if ((e = hk_client_open(a->dir, &c, why)) != HK_OK)
        return hk_die("open", e, why);
    if (so == NULL && !hk_get_pin(a, old, sizeof(old))) {
        hk_fail("passwd", HK_PIN_SOURCES);
        goto done;
    }
    if (hk_new_pin(a, neu, sizeof(neu)) != 0)
        goto done;
    e = so != NULL ? hk_so_reset(hk_client_keystore(c), so, neu)
                   : hk_ks_change_pin(hk_client_keystore(c), old, neu);
    if (e != HK_OK) {
        hk_die("passwd", e,
               hk_passwd_hint(hk_client_keystore(c), e, so != NULL));
        goto done;
    }
    printf("pin = changed%s\n", so != NULL ? " (by the SO)" : "");
    rc = 0;
done:
    OPENSSL_cleanse(old, sizeof(old));
    OPENSSL_cleanse(neu, sizeof(neu));
    hk_client_close(c);
    return rc;
}

static int hk_cmd_keygen(const hk_args *a)
{
    static const char *const allowed[] = {"curve", "label", "attest", NULL};
    const char *curve = hk_opt(a, "curve"), *label = hk_opt(a, "label");
    char hex[2 * HK_ID_LEN + 1];
    hk_ks_keyinfo info;
    hk_curve_id id;
    hk_client *c;
    hk_err e;

    if (!hk_only(a, allowed) || curve == NULL || label == NULL)
        return hk_usage(a->cmd);
    if (hk_curve_from_name(curve, &id) != HK_OK)
        return hk_die("keygen", HK_ERR_CURVE, "use secp256k1 or p256");
    if (hk_open(a, &c, 1) != 0)
        return 1;
    fprintf(stderr, "halfkey: generating the key with the server "
                    "(Paillier key and proofs)...\n");
    e = hk_client_keygen_attest(c, id, label, hk_opt(a, "attest") != NULL,
                                &info);
    if (e != HK_OK) {
        int r = hk_die("keygen", e, hk_client_last_error(c));

        hk_client_close(c);
        return r;
    }
    hk_hex(info.kid, HK_ID_LEN, hex);
    printf("label = %s\nkey_id = %s\ncurve = %s\n", label, hex, curve);
    if (hk_opt(a, "attest") != NULL || hk_client_config_get(c)->attest)
        printf("attested = yes\n");
    hk_client_close(c);
    return 0;
}

/* The digest to sign: --digest HEX, or the hash of --in FILE. */
static int hk_digest(const hk_args *a, unsigned char *dig, size_t *dlen)
{
    const char *hex = hk_opt(a, "digest"), *in = hk_opt(a, "in");
    const char *hash = hk_opt(a, "hash");
    unsigned char buf[65536];
    EVP_MD_CTX *ctx;
    unsigned int n = 0;
    size_t r;
    FILE *f;
    int ok;

    if ((hex != NULL) == (in != NULL))
        return 0;
    if (hex != NULL) {
        *dlen = strlen(hex) / 2;
        return *dlen >= 1 && *dlen <= HK_DIGEST_MAX &&
               hk_unhex(hex, strlen(hex), dig, *dlen);
    }
    if ((f = fopen(in, "rb")) == NULL)
        return 0;
    ctx = EVP_MD_CTX_new();
    ok = ctx != NULL &&
         EVP_DigestInit_ex(ctx, EVP_get_digestbyname(hash ? hash : "sha256"),
                           NULL) == 1;
    while (ok && (r = fread(buf, 1, sizeof(buf), f)) > 0)
        ok = EVP_DigestUpdate(ctx, buf, r) == 1;
    ok = ok && !ferror(f) && EVP_DigestFinal_ex(ctx, dig, &n) == 1;
    fclose(f);
    EVP_MD_CTX_free(ctx);
    *dlen = n;
    return ok;
}

static int hk_write_sig(const hk_args *a, const unsigned char sig[64])
{
    const char *fmt = hk_opt(a, "format"), *out = hk_opt(a, "out");
    unsigned char *der = NULL;
    const unsigned char *bytes = sig;
    char hex[2 * 80 + 1];
    ECDSA_SIG *es = ECDSA_SIG_new();
    int len = 64;
    FILE *f;

    if (fmt == NULL || strcmp(fmt, "der") == 0) {
        if (es == NULL ||
            !ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL),
                            BN_bin2bn(sig + 32, 32, NULL)) ||
            (len = i2d_ECDSA_SIG(es, &der)) <= 0)
            return 0;
        bytes = der;
    } else if (strcmp(fmt, "raw") != 0) {
        ECDSA_SIG_free(es);
        return 0;
    }
    if (out != NULL) {
        f = fopen(out, "wb");
        if (f == NULL || fwrite(bytes, 1, (size_t)len, f) != (size_t)len) {
            if (f != NULL)
                fclose(f);
            return 0;
        }
        fclose(f);
    } else {
        hk_hex(bytes, (size_t)len, hex);
        printf("%s\n", hex);
    }
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    return 1;
}

/* --digest-file F: one hex digest a line, all signed over one kept-open
 * connection; one signature a line on stdout. */
static int hk_sign_batch(const hk_args *a, hk_client *c, const char *key)
{
    unsigned char dig[HK_DIGEST_MAX], sig[HK_SIG_LEN];
    char line[2 * HK_DIGEST_MAX + 8];
    hk_channel *ch = NULL;
    size_t dlen, n = 0;
    FILE *f = fopen(hk_opt(a, "digest-file"), "r");
    hk_err e = HK_OK;

    if (f == NULL)
        return hk_die("sign", HK_ERR_IO, hk_opt(a, "digest-file"));
    while (e == HK_OK && fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = 0;
        dlen = strlen(line) / 2;
        if (++n > 10000 || dlen < 1 || dlen > HK_DIGEST_MAX ||
            !hk_unhex(line, strlen(line), dig, dlen)) {
            e = HK_ERR_ARG;
            break;
        }
        if (ch == NULL && (e = hk_client_channel_open(c, &ch)) != HK_OK)
            break;
        if ((e = hk_client_channel_sign(c, ch, key, dig, dlen, sig)) == HK_OK &&
            !hk_write_sig(a, sig))
            e = HK_ERR_IO;
    }
    fclose(f);
    hk_client_channel_close(ch);
    if (e == HK_ERR_ARG)
        return hk_die("sign", e,
                      "digest-file: one hex digest (1..64 bytes) a line, at "
                      "most 10000");
    if (e != HK_OK)
        return hk_key_die("sign", c, key, e);
    return 0;
}

static int hk_cmd_sign(const hk_args *a)
{
    static const char *const allowed[] = {
        "key", "digest",      "in",      "hash",  "format",
        "out", "digest-file", "request", "index", NULL};
    unsigned char dig[HK_DIGEST_MAX], sig[HK_SIG_LEN];
    const char *key = hk_opt(a, "key"), *rq = hk_opt(a, "request");
    const char *ix = hk_opt(a, "index");
    size_t dlen = 0;
    hk_client *c;
    hk_err e;

    if (!hk_only(a, allowed) || key == NULL)
        return hk_usage(a->cmd);
    if ((ix != NULL && (rq == NULL || strspn(ix, "0123456789") != strlen(ix) ||
                        strlen(ix) > 3)))
        return hk_usage(a->cmd);
    if (hk_opt(a, "digest-file") != NULL) {
        int r;

        if (hk_opt(a, "digest") || hk_opt(a, "in") || hk_opt(a, "out") ||
            rq != NULL)
            return hk_usage(a->cmd);
        if (hk_open(a, &c, 1) != 0)
            return 1;
        r = hk_sign_batch(a, c, key);
        hk_client_close(c);
        return r;
    }
    if (!hk_digest(a, dig, &dlen))
        return hk_die("sign", HK_ERR_ARG,
                      "give --digest HEX (1..64 bytes) or a readable --in "
                      "FILE with --hash sha256|sha384|sha512");
    if (hk_open(a, &c, 1) != 0)
        return 1;
    /* --request: co-sign a digest of a signing request (the server signs
     * only the digest it computed for that index) */
    e = rq != NULL ? hk_client_sign_request(c, key, rq,
                                            ix != NULL ? (unsigned)atoi(ix) : 0,
                                            dig, dlen, sig)
                   : hk_client_sign(c, key, dig, dlen, sig);
    if (e != HK_OK) {
        int r = hk_key_die("sign", c, key, e);

        hk_client_close(c);
        return r;
    }
    hk_client_close(c);
    return hk_write_sig(a, sig)
               ? 0
               : hk_die("sign", HK_ERR_IO, "writing the signature");
}

static int hk_cmd_refresh(const hk_args *a)
{
    static const char *const allowed[] = {"key", NULL};
    const char *key = hk_opt(a, "key");
    hk_ks_keyinfo info;
    hk_client *c;
    hk_err e;

    if (!hk_only(a, allowed) || key == NULL)
        return hk_usage(a->cmd);
    if (hk_open(a, &c, 1) != 0)
        return 1;
    if (hk_ks_key_info_live(hk_client_keystore(c), key, &info) == HK_OK &&
        info.locked) {
        fprintf(stderr,
                "halfkey: refresh: key %s is locked (%s): a refresh does "
                "not clear the lock (the server sees the refresh, so what it "
                "may have learned carries over); see `halfkey unlock`\n",
                key, info.lock_reason);
        hk_client_close(c);
        return 1;
    }
    fprintf(stderr, "halfkey: refreshing the key shares...\n");
    e = hk_client_refresh(c, key);
    if (e == HK_ERR_BACKUP) {
        fprintf(stderr,
                "halfkey: refresh: the new share is stored and signs, but "
                "the server keeps the old one active until the backup of "
                "the new epoch is stored (%s): run `halfkey backup --key %s "
                "--backup-pub FILE`\n",
                hk_client_last_error(c), key);
        hk_client_close(c);
        return 1;
    }
    if (e != HK_OK) {
        int r = hk_key_die("refresh", c, key, e);

        hk_client_close(c);
        return r;
    }
    hk_client_close(c);
    printf("refreshed = %s\n", key);
    return 0;
}

#define HK_CLI_PRESIGN_DEFAULT 16

/* --count N: a decimal 0..max. */
static int hk_count_opt(const char *cnt, unsigned long max, unsigned long *out)
{
    char *end;

    errno = 0;
    *out = strtoul(cnt, &end, 10);
    return errno == 0 && *end == 0 && cnt[0] >= '0' && cnt[0] <= '9' &&
           *out <= max;
}

/* presign --key L [--count N]: tops the key's stored presignatures up. */
static int hk_cmd_presign(const hk_args *a)
{
    static const char *const allowed[] = {"key", "count", NULL};
    const char *key = hk_opt(a, "key"), *cnt = hk_opt(a, "count");
    unsigned long target = HK_CLI_PRESIGN_DEFAULT;
    size_t added = 0, have = 0;
    hk_ks_keyinfo info;
    hk_client *c;
    hk_err e;

    if (!hk_only(a, allowed) || key == NULL)
        return hk_usage(a->cmd);
    if (cnt != NULL && !hk_count_opt(cnt, HK_KS_PRESIG_MAX, &target))
        return hk_die("presign", HK_ERR_ARG, "--count is 0 to 64");
    if (hk_open(a, &c, target > 0) != 0)
        return 1;
    if (target > 0 &&
        (e = hk_client_presign(c, key, (size_t)target, &added)) != HK_OK) {
        int r = hk_key_die("presign", c, key, e);

        hk_client_close(c);
        return r;
    }
    e = hk_ks_key_info(hk_client_keystore(c), key, &info);
    if (e == HK_OK)
        e = hk_ks_presig_count(hk_client_keystore(c), info.kid, &have);
    hk_client_close(c);
    if (e != HK_OK)
        return hk_die("presign", e, key);
    printf("key = %s\npresigs_stored = %zu\npresigs_added = %zu\n", key, have,
           added);
    return 0;
}

#define HK_CLI_POOL_DEFAULT 4

/* pool fill [--count N] (login) | pool status (no login). */
static int hk_cmd_pool(const hk_args *a)
{
    static const char *const fill_opts[] = {"count", NULL};
    static const char *const no_opts[] = {NULL};
    const char *cnt = hk_opt(a, "count");
    unsigned long target = HK_CLI_POOL_DEFAULT;
    size_t added = 0, have = 0;
    int fill, bits;
    hk_client *c;
    hk_err e;

    if (a->verb == NULL ||
        (strcmp(a->verb, "fill") != 0 && strcmp(a->verb, "status") != 0))
        return hk_usage(a->cmd);
    fill = strcmp(a->verb, "fill") == 0;
    if (!hk_only(a, fill ? fill_opts : no_opts))
        return hk_usage(a->cmd);
    if (cnt != NULL && !hk_count_opt(cnt, HK_KS_POOL_MAX, &target))
        return hk_die("pool", HK_ERR_ARG, "--count is 0 to 16");
    if (hk_open(a, &c, fill) != 0)
        return 1;
    bits = hk_client_config_get(c)->paillier_bits;
    if (fill) {
        fprintf(stderr, "halfkey: making Paillier primes for the pool...\n");
        e = hk_client_pool_fill(c, (size_t)target, &added);
        if (e != HK_OK) {
            int r = hk_die("pool", e,
                           e == HK_ERR_TOO_BIG ? "the pool is full" : "");

            hk_client_close(c);
            return r;
        }
    }
    e = hk_ks_pool_count(hk_client_keystore(c), bits, &have);
    hk_client_close(c);
    if (e != HK_OK)
        return hk_die("pool", e, "");
    printf("pool_bits = %d\npool_entries = %zu\n", bits, have);
    if (fill)
        printf("pool_added = %zu\n", added);
    else
        printf("pool_max = %d\n", HK_KS_POOL_MAX);
    return 0;
}

/* PEM SubjectPublicKeyInfo of a key. */
static int hk_print_pubkey(const hk_ks_keyinfo *info)
{
    const char *grp =
        info->curve == HK_CURVE_SECP256K1 ? "secp256k1" : "prime256v1";
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM p[3];
    int ok;

    p[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                            (char *)grp, 0);
    p[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                             (void *)info->pub.b, HK_POINT_LEN);
    p[2] = OSSL_PARAM_construct_end();
    ok = ctx != NULL && EVP_PKEY_fromdata_init(ctx) == 1 &&
         EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, p) == 1 &&
         PEM_write_PUBKEY(stdout, pkey) == 1;
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    return ok;
}

static int hk_cmd_pubkey(const hk_args *a)
{
    static const char *const allowed[] = {"key", NULL};
    hk_ks_keyinfo info;
    hk_client *c;
    hk_err e;

    if (!hk_only(a, allowed) || hk_opt(a, "key") == NULL)
        return hk_usage(a->cmd);
    if (hk_open(a, &c, 0) != 0)
        return 1;
    e = hk_ks_key_info(hk_client_keystore(c), hk_opt(a, "key"), &info);
    if (e != HK_OK) {
        int r = hk_key_die("pubkey", c, hk_opt(a, "key"), e);

        hk_client_close(c);
        return r;
    }
    hk_client_close(c);
    return hk_print_pubkey(&info) ? 0 : hk_die("pubkey", HK_ERR_CRYPTO, "");
}

/* One key of `list --json`: every field always present (null when it
 * does not apply), times in ISO 8601. */
static json_t *hk_key_json(const hk_ks_keyinfo *k)
{
    static const char *const states[] = {"idle", "inflight", "aborted",
                                         "damaged"};
    char hex[2 * HK_ID_LEN + 1], when[HK_ISO_LEN];

    if (k->err != HK_OK)
        return json_pack("{s:s,s:s}", "label", k->label, "error",
                         hk_strerror(k->err));
    hk_hex(k->kid, HK_ID_LEN, hex);
    hk_iso_time((int64_t)k->lock_time, when);
    return json_pack(
        "{s:s,s:s,s:s,s:I,s:b,s:s,s:s?,s:s?}", "label", k->label, "curve",
        hk_curve_name(k->curve), "key_id", hex, "epoch", (json_int_t)k->epoch,
        "locked", k->locked, "signing_session",
        k->sig_state >= 0 && k->sig_state <= HK_KS_SIG_DAMAGED
            ? states[k->sig_state]
            : "damaged",
        "lock_reason", k->locked ? k->lock_reason : NULL, "locked_since",
        k->locked && k->lock_time != 0 ? when : NULL);
}

/* Prints o (consumed) as one line of JSON; 0 if it could not be made. */
static int hk_print_json(json_t *o)
{
    char *txt = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    int ok = txt != NULL && printf("%s\n", txt) > 0;

    free(txt);
    json_decref(o);
    return ok;
}

static int hk_list_json(const hk_ks_keyinfo *list, size_t n)
{
    json_t *arr = json_array();
    size_t i;

    for (i = 0; arr != NULL && i < n; i++)
        if (json_array_append_new(arr, hk_key_json(&list[i])) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    return hk_print_json(arr) ? 0 : hk_die("list", HK_ERR_NOMEM, NULL);
}

static int hk_cmd_list(const hk_args *a)
{
    static const char *const allowed[] = {"json", NULL};
    hk_ks_keyinfo *list = NULL;
    char hex[2 * HK_ID_LEN + 1];
    hk_client *c;
    size_t n = 0, i;
    int rc = 0;
    hk_err e;

    if (!hk_only(a, allowed))
        return hk_usage(a->cmd);
    if (hk_open(a, &c, 0) != 0)
        return 1;
    e = hk_ks_list(hk_client_keystore(c), &list, &n);
    hk_client_close(c);
    if (e != HK_OK)
        return hk_die("list", e, NULL);
    if (hk_opt(a, "json") != NULL)
        rc = hk_list_json(list, n);
    for (i = 0; hk_opt(a, "json") == NULL && i < n; i++) {
        if (list[i].err != HK_OK) {
            printf("%s\tunreadable: %s\n", list[i].label,
                   hk_strerror(list[i].err));
            continue;
        }
        hk_hex(list[i].kid, HK_ID_LEN, hex);
        printf("%s\t%s\t%s\tepoch=%lu%s\n", list[i].label,
               hk_curve_name(list[i].curve), hex, list[i].epoch,
               list[i].locked ? "\tLOCKED" : "");
    }
    hk_ks_list_free(list);
    return rc;
}

/* The server's /status as `key = value` lines (nested objects as
 * prefix.key), after the server's URL. */
static void hk_print_kv(const char *prefix, json_t *o)
{
    char name[128];
    const char *k;
    json_t *v;

    json_object_foreach(o, k, v)
    {
        snprintf(name, sizeof(name), "%s%s%s", prefix, prefix[0] ? "." : "", k);
        if (json_is_object(v))
            hk_print_kv(name, v);
        else if (json_is_string(v))
            printf("%s = %s\n", name, json_string_value(v));
        else if (json_is_integer(v))
            printf("%s = %lld\n", name, (long long)json_integer_value(v));
        else if (json_is_boolean(v))
            printf("%s = %s\n", name, json_is_true(v) ? "yes" : "no");
    }
}

static int hk_cmd_status(const hk_args *a)
{
    static const char *const allowed[] = {"json", NULL};
    hk_client *c;
    char *body = NULL, url[sizeof(((hk_client_config *)0)->server_url)];
    json_t *o;
    int st = 0;
    hk_err e;

    if (!hk_only(a, allowed))
        return hk_usage(a->cmd);
    if (hk_open(a, &c, 0) != 0)
        return 1;
    snprintf(url, sizeof(url), "%s", hk_client_config_get(c)->server_url);
    e = hk_client_status(c, &st, &body);
    hk_client_close(c);
    if (e != HK_OK)
        return hk_die("status", e, "server unreachable");
    o = json_loads(body, 0, NULL);
    free(body);
    if (!json_is_object(o)) {
        json_decref(o);
        return hk_die("status", HK_ERR_SERVER, "not a JSON answer");
    }
    json_object_set_new(o, "server", json_string(url));
    json_object_set_new(o, "http_status", json_integer(st));
    if (hk_opt(a, "json") != NULL)
        hk_print_json(json_incref(o));
    else
        hk_print_kv("", o);
    json_decref(o);
    return st == 200 ? 0 : 1;
}

/* Clears an interrupted signature; an abort lock only with --force, after
 * the server audited the override (DESIGN.md section 2). */
/* requests [--json] [--watch] | approve ID | reject ID [--reason R]
 * (tools/requests.c); logged in: approve signs, and the list names the
 * local key of each request. */
static int hk_cmd_requests(const hk_args *a)
{
    static const char *const list_opts[] = {"json", "watch", NULL};
    static const char *const rej_opts[] = {"reason", NULL};
    static const char *const none[] = {NULL};
    int list = strcmp(a->cmd, "requests") == 0;
    int rej = strcmp(a->cmd, "reject") == 0;
    hk_client *c;
    hk_err e;

    if (!hk_only(a, list  ? list_opts
                    : rej ? rej_opts
                          : none) ||
        (list ? a->verb != NULL : a->verb == NULL))
        return hk_usage(a->cmd);
    if (hk_open(a, &c, 1) != 0)
        return 1;
    if (list)
        e = hk_requests_list(c, hk_opt(a, "json") != NULL,
                             hk_opt(a, "watch") != NULL, stdout);
    else if (rej)
        e = hk_requests_reject(c, a->verb, hk_opt(a, "reason"), stdout);
    else
        e = hk_requests_approve(c, a->verb, stdout);
    hk_client_close(c);
    return e == HK_OK ? 0 : hk_die(a->cmd, e, "");
}

static int hk_cmd_unlock(const hk_args *a)
{
    static const char *const allowed[] = {"key", "force", NULL};
    const char *key = hk_opt(a, "key");
    int force = hk_opt(a, "force") != NULL;
    hk_client *c;
    hk_err e;

    if (!hk_only(a, allowed) || key == NULL)
        return hk_usage(a->cmd);
    if (hk_open(a, &c, 1) != 0)
        return 1;
    if (force)
        fprintf(stderr,
                "halfkey: WARNING: overriding the abort lock of %s. An "
                "invalid signature from the server means it may be "
                "malicious; every further signature can leak about one "
                "bit of your share to it, and a refresh does not undo "
                "that. Recommended instead: make a new key and move the "
                "assets. The override is audited by the server.\n",
                key);
    e = hk_client_unlock(c, key, force);
    if (e == HK_ERR_KEY_LOCKED)
        fprintf(stderr,
                "halfkey: unlock: %s was locked by an invalid signature "
                "from the server (possible abort attack): a plain unlock "
                "does not clear that. Make a new key, or override with "
                "`halfkey unlock --key %s --force` (audited)\n",
                key, key);
    if (e != HK_OK) {
        int r = hk_key_die("unlock", c, key, e);

        hk_client_close(c);
        return r;
    }
    hk_client_close(c);
    fprintf(stderr, "halfkey: key %s unlocked by operator action%s\n", key,
            force ? " (forced, audited by the server)" : "");
    return 0;
}

/* Checks token and server; the PIN only if given without a prompt. */
static int hk_cmd_doctor(const hk_args *a)
{
    char pin[HK_KS_PIN_MAX + 2];
    int have_pin = 0, fails = 0;
    hk_err e;

    if (a->n != 0)
        return hk_usage(a->cmd);
    if (a->pin_file != NULL || getenv("HALFKEY_PIN") != NULL) {
        if (!hk_get_pin(a, pin, sizeof(pin)))
            return hk_fail("doctor", "unreadable --pin-file, or an empty "
                                     "HALFKEY_PIN");
        have_pin = 1;
    }
    e = hk_doctor_run(a->dir, have_pin ? pin : NULL, stdout, &fails);
    OPENSSL_cleanse(pin, sizeof(pin));
    if (e != HK_OK)
        return hk_die("doctor", e, NULL);
    printf("%s\n", fails == 0 ? "doctor: no problem found"
                              : "doctor: problems found (FAIL above)");
    return fails == 0 ? 0 : 1;
}

/* The label of key `key`: a label, or else a key id (32 hex digits). */
static hk_err hk_key_label(hk_client *c, const char *key, char *out)
{
    unsigned char kid[HK_ID_LEN];
    hk_ks_keyinfo *list = NULL, info;
    size_t n = 0, i;
    hk_err e;

    if (hk_ks_label_ok(key) &&
        (e = hk_ks_key_info(hk_client_keystore(c), key, &info)) !=
            HK_ERR_NOT_FOUND) {
        snprintf(out, HK_KS_LABEL_MAX + 1, "%s", key);
        return e;
    }
    if (strlen(key) != 2 * HK_ID_LEN ||
        !hk_unhex(key, strlen(key), kid, HK_ID_LEN))
        return HK_ERR_NOT_FOUND;
    if ((e = hk_ks_list(hk_client_keystore(c), &list, &n)) != HK_OK)
        return e;
    for (i = 0, e = HK_ERR_NOT_FOUND; i < n && e != HK_OK; i++)
        if (list[i].err == HK_OK && memcmp(list[i].kid, kid, HK_ID_LEN) == 0) {
            snprintf(out, HK_KS_LABEL_MAX + 1, "%s", list[i].label);
            e = HK_OK;
        }
    hk_ks_list_free(list);
    return e;
}

/* Deleting is for good: the label typed back (from the terminal, else
 * the first line of standard input) unless --yes. */
static int hk_confirm_delete(const hk_args *a, const char *label)
{
    char line[HK_KS_LABEL_MAX + 8];
    FILE *in = stdin;

    if (hk_opt(a, "yes") != NULL)
        return 1;
    fprintf(stderr,
            "halfkey: deleting key %s removes its share here and on the "
            "server for good (a backup of it on the server goes too).\n"
            "Type the label to confirm: ",
            label);
    if (fgets(line, sizeof(line), in) == NULL)
        return 0;
    line[strcspn(line, "\r\n")] = 0;
    return strcmp(line, label) == 0;
}

static int hk_cmd_delete(const hk_args *a)
{
    static const char *const allowed[] = {"key", "yes", NULL};
    char label[HK_KS_LABEL_MAX + 1];
    hk_client *c;
    hk_err e;

    if (!hk_only(a, allowed) || hk_opt(a, "key") == NULL)
        return hk_usage(a->cmd);
    if (hk_open(a, &c, 1) != 0)
        return 1;
    if ((e = hk_key_label(c, hk_opt(a, "key"), label)) == HK_OK &&
        !hk_confirm_delete(a, label)) {
        hk_client_close(c);
        fprintf(stderr, "halfkey: delete: not confirmed: nothing deleted "
                        "(type the label, or pass --yes)\n");
        return 1;
    }
    if (e == HK_OK)
        e = hk_client_delete(c, label);
    if (e != HK_OK) {
        int r = hk_die("delete", e,
                       e == HK_ERR_NOT_FOUND ? hk_opt(a, "key")
                                             : hk_client_last_error(c));

        hk_client_close(c);
        return r;
    }
    if (hk_client_last_error(c)[0] != '\0')
        printf("backup = deleted (%s)\n", hk_client_last_error(c));
    hk_client_close(c);
    printf("deleted = %s\n", label);
    return 0;
}

/* A backup key's passphrase: the first line of --passphrase-file, else
 * typed twice at the terminal (`twice`: a new key), else none. 0 when a
 * file cannot be read or the two entries differ. */
static int hk_passphrase(const hk_args *a, int twice, char *out, size_t cap,
                         int *have)
{
    const char *f = hk_opt(a, "passphrase-file");

    *have = 0;
    if (f != NULL) {
        if (!hk_read_line(f, out, cap))
            return 0;
        *have = 1;
        return 1;
    }
    if (!isatty(STDIN_FILENO))
        return !twice; /* a new key needs one; an old one may have none */
    if (!hk_prompt("Backup key passphrase: ", twice, out, cap))
        return 0;
    *have = out[0] != 0;
    return 1;
}

/* Writes len bytes to path, mode `mode`, refusing to overwrite. */
static int hk_write_new(const char *path, const char *buf, size_t len,
                        mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    int ok = fd >= 0 && write(fd, buf, len) == (ssize_t)len && fsync(fd) == 0;

    if (fd >= 0 && close(fd) != 0)
        ok = 0;
    return ok;
}

static int hk_cmd_backup_key(const hk_args *a, const char *verb)
{
    static const char *const allowed[] = {"out", "type", "passphrase-file",
                                          NULL};
    const char *out = hk_opt(a, "out"), *type = hk_opt(a, "type");
    char pass[256], pubpath[1024], *pem = NULL, *pub = NULL;
    unsigned char fp[HK_HASH_LEN];
    char fh[2 * HK_HASH_LEN + 1];
    size_t len = 0, plen = 0;
    hk_pve_priv *k = NULL;
    hk_pve_type t = HK_PVE_ECIES_P256;
    int have = 0, rc = 1;
    hk_err e;

    if (verb == NULL || strcmp(verb, "new") != 0 || !hk_only(a, allowed) ||
        out == NULL)
        return hk_usage(a->cmd);
    if (type != NULL && strcmp(type, "rsa3072") == 0)
        t = HK_PVE_RSA_OAEP_3072;
    else if (type != NULL && strcmp(type, "p256") != 0)
        return hk_die("backup-key", HK_ERR_ARG, "--type p256 or rsa3072");
    if (snprintf(pubpath, sizeof(pubpath), "%s.pub", out) >=
        (int)sizeof(pubpath))
        return hk_die("backup-key", HK_ERR_ARG, "path too long");
    if (!hk_passphrase(a, 1, pass, sizeof(pass), &have) || !have ||
        strlen(pass) < 8) {
        OPENSSL_cleanse(pass, sizeof(pass));
        return hk_die("backup-key", HK_ERR_PIN,
                      "a passphrase of 8 characters or more, typed twice "
                      "alike (or --passphrase-file)");
    }
    if ((e = hk_pve_keygen(t, &k)) != HK_OK ||
        (e = hk_pve_priv_to_pem(k, pass, &pem, &len)) != HK_OK ||
        (e = hk_pve_pub_to_pem(hk_pve_priv_pub(k), &pub, &plen)) != HK_OK) {
        rc = hk_die("backup-key", e, NULL);
        goto done;
    }
    if (!hk_write_new(out, pem, len, 0600) ||
        !hk_write_new(pubpath, pub, plen, 0644)) {
        rc = hk_die("backup-key", HK_ERR_IO,
                    "cannot create the files (they must not exist)");
        goto done;
    }
    hk_pve_pub_fingerprint(hk_pve_priv_pub(k), fp);
    hk_hex(fp, sizeof(fp), fh);
    printf("backup_priv = %s\nbackup_pub = %s\nfingerprint = %s\n%s", out,
           pubpath, fh, pub);
    fprintf(stderr,
            "halfkey: keep %s offline (and its passphrase apart): whoever "
            "holds both can read the client share of every key backed up "
            "under it\n",
            out);
    rc = 0;
done:
    OPENSSL_cleanse(pass, sizeof(pass));
    if (pem != NULL)
        OPENSSL_clear_free(pem, len);
    OPENSSL_free(pub);
    hk_pve_priv_free(k);
    return rc;
}

static int hk_cmd_backup(const hk_args *a)
{
    static const char *const allowed[] = {"key", "backup-pub", NULL};
    char label[HK_KS_LABEL_MAX + 1];
    unsigned long epoch = 0;
    hk_client *c;
    hk_err e;

    if (!hk_only(a, allowed) || hk_opt(a, "key") == NULL)
        return hk_usage(a->cmd);
    if (hk_open(a, &c, 1) != 0)
        return 1;
    if ((e = hk_key_label(c, hk_opt(a, "key"), label)) == HK_OK)
        e = hk_client_backup(c, label, hk_opt(a, "backup-pub"), &epoch);
    if (e != HK_OK) {
        int r = hk_key_die("backup", c, hk_opt(a, "key"), e);

        hk_client_close(c);
        return r;
    }
    hk_client_close(c);
    printf("backup = %s\nepoch = %lu\n", label, epoch);
    return 0;
}

static int hk_cmd_restore(const hk_args *a)
{
    static const char *const allowed[] = {"key-id", "backup-priv", "label",
                                          "passphrase-file", NULL};
    char pass[256], hex[2 * HK_ID_LEN + 1];
    hk_ks_keyinfo info;
    hk_client *c;
    int have = 0;
    hk_err e;

    if (!hk_only(a, allowed) || hk_opt(a, "key-id") == NULL ||
        hk_opt(a, "backup-priv") == NULL || hk_opt(a, "label") == NULL)
        return hk_usage(a->cmd);
    if (!hk_passphrase(a, 0, pass, sizeof(pass), &have))
        return hk_die("restore", HK_ERR_PIN, "reading the passphrase");
    if (hk_open(a, &c, 1) != 0) {
        OPENSSL_cleanse(pass, sizeof(pass));
        return 1;
    }
    fprintf(stderr, "halfkey: restoring the key from its backup, then "
                    "refreshing its shares...\n");
    e = hk_client_restore(c, hk_opt(a, "key-id"), hk_opt(a, "backup-priv"),
                          have ? pass : NULL, hk_opt(a, "label"), &info);
    OPENSSL_cleanse(pass, sizeof(pass));
    if (e == HK_ERR_BACKUP)
        fprintf(stderr,
                "halfkey: restore: the key is restored and signs, but the "
                "server did not store the new share's backup (%s): run "
                "`halfkey backup --key %s --backup-pub FILE`\n",
                hk_client_last_error(c), hk_opt(a, "label"));
    else if (e != HK_OK) {
        int r = hk_die("restore", e, hk_client_last_error(c));

        hk_client_close(c);
        return r;
    }
    hk_client_close(c);
    hk_hex(info.kid, HK_ID_LEN, hex);
    printf("restored = %s\nkey_id = %s\nepoch = %lu\n", info.label, hex,
           info.epoch);
    return hk_print_pubkey(&info) && e == HK_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    hk_args a;

    /* tpm2-tss logs every TPM error on stderr (a wrong PIN too); the
     * errors that matter reach the user as one line of ours. */
    setenv("TSS2_LOG", "all+none", 0);
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("halfkey %s (protocol %d)\n", HK_VERSION, HK_PROTOCOL_VERSION);
        return 0;
    }
    if (argc >= 2 &&
        (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
         strcmp(argv[1], "help") == 0))
        return argc > 3 ? hk_usage(NULL) : hk_help(argc == 3 ? argv[2] : NULL);
    if (!hk_parse(argc, argv, &a))
        return hk_usage(a.cmd);
    if (hk_opt(&a, "help") != NULL)
        return hk_help(a.cmd);
    if (strcmp(a.cmd, "init") == 0)
        return hk_cmd_init(&a);
    if (strcmp(a.cmd, "keygen") == 0)
        return hk_cmd_keygen(&a);
    if (strcmp(a.cmd, "sign") == 0)
        return hk_cmd_sign(&a);
    if (strcmp(a.cmd, "refresh") == 0)
        return hk_cmd_refresh(&a);
    if (strcmp(a.cmd, "pool") == 0)
        return hk_cmd_pool(&a);
    if (strcmp(a.cmd, "presign") == 0)
        return hk_cmd_presign(&a);
    if (strcmp(a.cmd, "pubkey") == 0)
        return hk_cmd_pubkey(&a);
    if (strcmp(a.cmd, "list") == 0)
        return hk_cmd_list(&a);
    if (strcmp(a.cmd, "status") == 0)
        return hk_cmd_status(&a);
    if (strcmp(a.cmd, "unlock") == 0)
        return hk_cmd_unlock(&a);
    if (strcmp(a.cmd, "doctor") == 0)
        return hk_cmd_doctor(&a);
    if (strcmp(a.cmd, "delete") == 0)
        return hk_cmd_delete(&a);
    if (strcmp(a.cmd, "set-so-pin") == 0)
        return hk_cmd_set_so_pin(&a);
    if (strcmp(a.cmd, "backup") == 0)
        return hk_cmd_backup(&a);
    if (strcmp(a.cmd, "backup-key") == 0)
        return hk_cmd_backup_key(&a, a.verb);
    if (strcmp(a.cmd, "restore") == 0)
        return hk_cmd_restore(&a);
    if (strcmp(a.cmd, "passwd") == 0 || strcmp(a.cmd, "change-pin") == 0)
        return hk_cmd_passwd(&a);
    if (strcmp(a.cmd, "requests") == 0 || strcmp(a.cmd, "approve") == 0 ||
        strcmp(a.cmd, "reject") == 0)
        return hk_cmd_requests(&a);
    fprintf(stderr, "halfkey: unknown command %s\n", a.cmd);
    return hk_usage(NULL);
}
