/* Keystore: token creation and PIN login with the failed-PIN counter; real
 * shares stored, loaded, replaced, locked and deleted; every tampered file
 * refused; PIN change, including interrupted ones; per-key session locks
 * across threads and processes; label validation; file modes; no temp
 * files left behind. Runs in a fresh directory under /tmp. */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "client/keystore.h"
#include "mpc/setup.h"
#include "tests/unit/check.h"
#include "tests/unit/driver.h"
#include "tests/unit/verify.h"

#define PIN1 "1234-first"
#define PIN2 "5678-second"
#define PIN3 "9999-third"
#define ANY_ERR HK_ERR__COUNT /* tamper cases: HK_ERR_SEAL or HK_ERR_DECODE */

static char root[64]; /* mkdtemp */
static char tok[128]; /* the token under test: root/tok */
static char path_buf[512];

static const char *at(const char *rel)
{
    snprintf(path_buf, sizeof(path_buf), "%s/%s", tok, rel);
    return path_buf;
}

static unsigned mode_of(const char *p)
{
    struct stat st;

    CHECK(lstat(p, &st) == 0);
    return st.st_mode & 07777;
}

static unsigned char *slurp(const char *p, size_t *len)
{
    unsigned char *b;
    long n;
    FILE *f = fopen(p, "rb");

    CHECK(f != NULL);
    CHECK(fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0);
    rewind(f);
    b = malloc((size_t)n + 1);
    CHECK(b != NULL && fread(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void spill(const char *p, const void *b, size_t len)
{
    FILE *f = fopen(p, "wb");

    CHECK(f != NULL && fwrite(b, 1, len, f) == len && fclose(f) == 0);
}

/* Rewrites file p with the first `from` replaced by `to`. */
static void edit(const char *p, const char *from, const char *to)
{
    size_t len, lf = strlen(from), lt = strlen(to);
    unsigned char *b = slurp(p, &len), *out = malloc(len + lt + 1);
    unsigned char *hit = memmem(b, len, from, lf);
    size_t off;

    CHECK(hit != NULL && out != NULL);
    off = (size_t)(hit - b);
    memcpy(out, b, off);
    memcpy(out + off, to, lt);
    memcpy(out + off + lt, hit + lf, len - off - lf);
    spill(p, out, len - lf + lt);
    free(b);
    free(out);
}

/* Flips the hex digit `off` chars after the first `key`. */
static void flip(const char *p, const char *key, size_t off)
{
    size_t len;
    unsigned char *b = slurp(p, &len);
    unsigned char *hit = memmem(b, len, key, strlen(key));

    CHECK(hit != NULL);
    hit += strlen(key) + off;
    *hit = *hit == '0' ? '1' : '0';
    spill(p, b, len);
    free(b);
}

static int rm_one(const char *p, const struct stat *st, int flag,
                  struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void rm_rf(const char *p) { nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* Number of "*.tmp" entries in a directory. */
static int count_tmp(const char *dir)
{
    struct dirent *de;
    DIR *d = opendir(dir);
    int n = 0;

    CHECK(d != NULL);
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);

        n += l > 4 && strcmp(de->d_name + l - 4, ".tmp") == 0;
    }
    closedir(d);
    return n;
}

static void same_share(const hk_share *a, const hk_share *b)
{
    unsigned char fa[HK_HASH_LEN], fb[HK_HASH_LEN];

    CHECK_OK(hk_share_fingerprint(a, fa));
    CHECK_OK(hk_share_fingerprint(b, fb));
    CHECK(memcmp(fa, fb, HK_HASH_LEN) == 0);
    CHECK(hk_scalar_eq(&a->x, &b->x));
    CHECK(a->epoch == b->epoch && a->role == HK_ROLE_P1);
}

static void load_same(hk_ks *ks, const char *label, const hk_share *want)
{
    hk_share *s = NULL;

    CHECK_OK(hk_ks_load_share(ks, label, &s));
    same_share(s, want);
    hk_share_free(s);
}

static unsigned long fails(hk_ks *ks)
{
    hk_ks_tokeninfo ti;

    CHECK_OK(hk_ks_token_info(ks, &ti));
    return ti.pin_fails;
}

/* --- directory resolution ---------------------------------------------- */

static void check_resolve(const char *arg, const char *want)
{
    char *d = NULL;

    CHECK_OK(hk_ks_dir_resolve(arg, &d));
    CHECK(strcmp(d, want) == 0);
    OPENSSL_free(d);
}

static void test_resolve(void)
{
    char *d = NULL;

    setenv("HALFKEY_HOME", "/x/hk", 1);
    setenv("XDG_DATA_HOME", "/x/data", 1);
    setenv("HOME", "/x/home", 1);
    check_resolve("/given", "/given");
    check_resolve(NULL, "/x/hk");
    unsetenv("HALFKEY_HOME");
    check_resolve("", "/x/data/halfkey");
    setenv("XDG_DATA_HOME", "relative", 1); /* ignored, as XDG says */
    check_resolve(NULL, "/x/home/.local/share/halfkey");
    unsetenv("XDG_DATA_HOME");
    check_resolve(NULL, "/x/home/.local/share/halfkey");
    unsetenv("HOME");
    CHECK_ERR(hk_ks_dir_resolve(NULL, &d), HK_ERR_CONFIG);
    CHECK(d == NULL);
}

/* --- token, login, counter ---------------------------------------------- */

static void test_init_login(void)
{
    hk_ks *ks = NULL, *ks2 = NULL;
    hk_ks_tokeninfo ti;
    char sub[160];

    CHECK_ERR(hk_ks_open(tok, &ks), HK_ERR_NOT_FOUND);
    CHECK_ERR(hk_ks_init(tok, "123", "t", &ks), HK_ERR_ARG); /* short PIN */
    CHECK_ERR(hk_ks_init(tok, PIN1, "", &ks), HK_ERR_ARG);
    CHECK_ERR(hk_ks_init(tok, PIN1, "a label that is far too long for it", &ks),
              HK_ERR_ARG);
    CHECK_OK(hk_ks_init(tok, PIN1, "test token", &ks));
    CHECK(strcmp(hk_ks_dir(ks), tok) == 0);
    CHECK(mode_of(tok) == 0700 && mode_of(at("keys")) == 0700);
    CHECK(mode_of(at("token.json")) == 0600);
    CHECK_OK(hk_ks_token_info(ks, &ti));
    CHECK(strcmp(ti.label, "test token") == 0 && ti.logged_in);
    CHECK(ti.pin_fails == 0 && ti.pin_max_fails == HK_KS_MAX_FAILS);
    hk_ks_close(ks);
    CHECK_ERR(hk_ks_init(tok, PIN1, "again", &ks), HK_ERR_EXISTS);

    /* parents are created 0700 too */
    snprintf(sub, sizeof(sub), "%s/a/b/tok", root);
    CHECK_OK(hk_ks_init(sub, PIN1, "nested", &ks));
    hk_ks_close(ks);
    snprintf(sub, sizeof(sub), "%s/a", root);
    CHECK(mode_of(sub) == 0700);

    CHECK_OK(hk_ks_open(tok, &ks));
    CHECK_OK(hk_ks_token_info(ks, &ti));
    CHECK(!ti.logged_in && !ti.pin_locked && !ti.pin_change_pending);
    CHECK_ERR(hk_ks_login(ks, "12"), HK_ERR_ARG); /* not counted */
    CHECK(fails(ks) == 0);
    CHECK_ERR(hk_ks_login(ks, PIN2), HK_ERR_PIN);
    CHECK(fails(ks) == 1);
    CHECK_OK(hk_ks_open(tok, &ks2)); /* the counter is on disk */
    CHECK(fails(ks2) == 1);
    CHECK_OK(hk_ks_login(ks, PIN1));
    CHECK(fails(ks2) == 0);
    CHECK_OK(hk_ks_token_info(ks, &ti));
    CHECK(ti.logged_in);
    CHECK_ERR(hk_ks_login(ks, PIN2), HK_ERR_PIN); /* a failed re-login */
    CHECK_OK(hk_ks_token_info(ks, &ti));          /* logs out */
    CHECK(!ti.logged_in);
    CHECK_OK(hk_ks_login(ks, PIN1));
    hk_ks_logout(ks);
    CHECK_OK(hk_ks_token_info(ks, &ti));
    CHECK(!ti.logged_in);
    hk_ks_close(ks2);
    hk_ks_close(ks);

    /* group/world-writable directory refused */
    CHECK(chmod(tok, 0777) == 0);
    CHECK_ERR(hk_ks_open(tok, &ks), HK_ERR_CONFIG);
    CHECK(chmod(tok, 0700) == 0);
}

static void test_counter(void)
{
    hk_ks *ks = NULL, *ks2 = NULL;
    hk_ks_tokeninfo ti;
    int i;

    CHECK_OK(hk_ks_open(tok, &ks));
    CHECK_OK(hk_ks_open(tok, &ks2));
    for (i = 1; i <= HK_KS_MAX_FAILS; i++) {
        /* alternate handles: the count is shared through the file */
        CHECK_ERR(hk_ks_login(i % 2 ? ks : ks2, PIN2), HK_ERR_PIN);
        CHECK(fails(ks) == (unsigned long)i);
    }
    CHECK_OK(hk_ks_token_info(ks, &ti));
    CHECK(ti.pin_locked);
    CHECK_ERR(hk_ks_login(ks, PIN1), HK_ERR_PIN_LOCKED); /* even the right */
    CHECK_ERR(hk_ks_login(ks2, PIN2), HK_ERR_PIN_LOCKED);
    CHECK_ERR(hk_ks_change_pin(ks, PIN1, PIN2), HK_ERR_PIN_LOCKED);
    CHECK(fails(ks) == HK_KS_MAX_FAILS);
    hk_ks_close(ks2);
    hk_ks_close(ks);
    CHECK_OK(hk_ks_open(tok, &ks)); /* persistent */
    CHECK_ERR(hk_ks_login(ks, PIN1), HK_ERR_PIN_LOCKED);
    CHECK_OK(hk_ks_reset_pin_counter(ks));
    CHECK(fails(ks) == 0);
    CHECK_OK(hk_ks_login(ks, PIN1));

    /* concurrent wrong PINs from two processes: no count is lost */
    for (i = 0; i < 2; i++) {
        pid_t pid = fork();

        CHECK(pid >= 0);
        if (pid == 0) {
            hk_ks *c = NULL;
            int k, bad = 0;

            if (hk_ks_open(tok, &c) != HK_OK)
                _exit(2);
            for (k = 0; k < 3; k++)
                bad += hk_ks_login(c, PIN3) == HK_ERR_PIN;
            _exit(bad == 3 ? 0 : 1);
        }
    }
    for (i = 0; i < 2; i++) {
        int status;

        CHECK(wait(&status) > 0 && WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
    }
    CHECK(fails(ks) == 6);
    CHECK_OK(hk_ks_login(ks, PIN1));
    CHECK(fails(ks) == 0);
    hk_ks_close(ks);
}

/* --- keys --------------------------------------------------------------- */

typedef struct {
    hk_share *k1, *k2; /* secp256k1: P1, P2 */
    hk_share *k1r;     /* k1 refreshed (epoch 2) */
    hk_share *p1, *p2; /* P-256 */
} shares;

static void make_shares(shares *sh)
{
    const hk_rped_secret *rs = hk_test_rped_secret();
    hk_drive_stats st;
    hk_share *k2r = NULL;

    memset(&st, 0, sizeof(st));
    CHECK_OK(
        hk_drive_keygen(HK_CURVE_SECP256K1, 2048, rs, &sh->k1, &sh->k2, &st));
    CHECK_OK(hk_drive_refresh(sh->k1, sh->k2, 2048, rs, &sh->k1r, &k2r, &st));
    CHECK(sh->k1r->epoch == 2);
    hk_share_free(k2r);
    CHECK_OK(hk_drive_keygen(HK_CURVE_P256, 2048, rs, &sh->p1, &sh->p2, &st));
}

static void test_store_load(hk_ks *ks, const shares *sh)
{
    hk_ks_keyinfo ki, *list = NULL;
    hk_share *s = NULL;
    size_t n = 0;

    CHECK_ERR(hk_ks_store_share(ks, "alpha", sh->k2), HK_ERR_ARG); /* P2 */
    CHECK_OK(hk_ks_store_share(ks, "alpha", sh->k1));
    CHECK_ERR(hk_ks_store_share(ks, "alpha", sh->p1), HK_ERR_EXISTS);
    CHECK_ERR(hk_ks_store_share(ks, "alpha-2", sh->k1), HK_ERR_EXISTS);
    CHECK_OK(hk_ks_store_share(ks, "beta", sh->p1));
    CHECK(mode_of(at("keys/alpha.json")) == 0600);
    load_same(ks, "alpha", sh->k1);
    load_same(ks, "beta", sh->p1);
    CHECK_ERR(hk_ks_load_share(ks, "gamma", &s), HK_ERR_NOT_FOUND);

    CHECK_OK(hk_ks_key_info(ks, "alpha", &ki));
    CHECK(ki.verified && ki.epoch == 1 && ki.curve == HK_CURVE_SECP256K1);
    CHECK(memcmp(ki.kid, sh->k1->kid, HK_ID_LEN) == 0);
    CHECK(hk_point_eq(&ki.pub, &sh->k1->Q) && !ki.locked);
    CHECK_OK(hk_ks_list(ks, &list, &n));
    CHECK(n == 2 && strcmp(list[0].label, "alpha") == 0 &&
          strcmp(list[1].label, "beta") == 0);
    CHECK(list[1].err == HK_OK && list[1].curve == HK_CURVE_P256);
    hk_ks_list_free(list);

    hk_ks_logout(ks); /* public data without the PIN; no share */
    CHECK_OK(hk_ks_key_info(ks, "beta", &ki));
    CHECK(!ki.verified && hk_point_eq(&ki.pub, &sh->p1->Q));
    CHECK_ERR(hk_ks_load_share(ks, "alpha", &s), HK_ERR_STATE);
    CHECK(s == NULL);
    CHECK_ERR(hk_ks_store_share(ks, "gamma", sh->k1r), HK_ERR_STATE);
    CHECK_ERR(hk_ks_lock_key(ks, "alpha", "x"), HK_ERR_STATE);
    CHECK_ERR(hk_ks_delete(ks, "alpha"), HK_ERR_STATE);
    CHECK_OK(hk_ks_login(ks, PIN1));
}

/* Another token, another PIN: a key file moved there cannot be opened. */
static void test_other_pin(void)
{
    char other[160], dst[200];
    unsigned char *b;
    size_t len;
    hk_ks *ks2 = NULL;
    hk_share *s = NULL;

    snprintf(other, sizeof(other), "%s/other", root);
    CHECK_OK(hk_ks_init(other, PIN2, "other", &ks2));
    b = slurp(at("keys/alpha.json"), &len);
    snprintf(dst, sizeof(dst), "%s/keys/alpha.json", other);
    spill(dst, b, len);
    free(b);
    CHECK_ERR(hk_ks_load_share(ks2, "alpha", &s), HK_ERR_SEAL);
    hk_ks_close(ks2);
}

static void t_sealed(const char *p) { flip(p, "\"sealed\":\"", 200); }
static void t_nonce(const char *p) { flip(p, "\"sealed\":\"", 3); }
static void t_shift(const char *p)
{
    edit(p, "\"sealed\":\"", "\"sealed\":\"00");
}
static void t_locked(const char *p) { edit(p, "\"locked\":0", "\"locked\":1"); }
static void t_label(const char *p) { edit(p, "\"alpha\"", "\"alphb\""); }
static void t_kid(const char *p) { flip(p, "\"kid\":\"", 5); }
static void t_epoch(const char *p) { edit(p, "\"epoch\":1", "\"epoch\":7"); }
static void t_gen(const char *p) { edit(p, "\"gen\":1", "\"gen\":9"); }
static void t_pub(const char *p) { flip(p, "\"pub\":\"", 40); }
static void t_curve(const char *p) { edit(p, "secp256k1", "p256"); }
static void t_extra(const char *p) { edit(p, "{", "{\"x\":1,"); }
static void t_trunc(const char *p) { CHECK(truncate(p, 100) == 0); }
static void t_dup(const char *p) { edit(p, "{", "{\"gen\":1,"); }
static void t_badlock(const char *p)
{
    edit(p, "\"locked\":0", "\"locked\":2");
}
static void t_reason(const char *p)
{
    edit(p, "\"lock_reason\":\"\"", "\"lock_reason\":\"x\"");
}

static void t_big(const char *p)
{
    char *b = malloc(HK_KS_FILE_MAX + 10);

    CHECK(b != NULL);
    memset(b, ' ', HK_KS_FILE_MAX + 10);
    spill(p, b, HK_KS_FILE_MAX + 10);
    free(b);
}

static void t_symlink(const char *p)
{
    CHECK(unlink(p) == 0);
    CHECK(symlink("beta.json", p) == 0);
}

static void t_empty(const char *p) { spill(p, "", 0); }

static void test_tamper(hk_ks *ks, const shares *sh)
{
    struct {
        void (*fn)(const char *);
        hk_err want;
    } cases[] = {
        {t_sealed, HK_ERR_SEAL},   {t_nonce, HK_ERR_SEAL},
        {t_shift, HK_ERR_SEAL},    {t_locked, HK_ERR_SEAL},
        {t_label, HK_ERR_SEAL},    {t_kid, HK_ERR_SEAL},
        {t_epoch, HK_ERR_SEAL},    {t_gen, HK_ERR_STATE},
        {t_pub, ANY_ERR},          {t_curve, ANY_ERR},
        {t_extra, HK_ERR_DECODE},  {t_trunc, HK_ERR_DECODE},
        {t_dup, HK_ERR_DECODE},    {t_badlock, HK_ERR_DECODE},
        {t_reason, HK_ERR_DECODE}, {t_big, HK_ERR_TOO_BIG},
        {t_symlink, HK_ERR_IO},    {t_empty, HK_ERR_DECODE},
    };
    char p[512], q[512];
    unsigned char *b;
    size_t i, len;
    hk_share *s = NULL;
    hk_ks_keyinfo *list = NULL, ki;
    size_t n = 0;
    hk_err e;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(p, sizeof(p), "%s", at("keys/alpha.json"));
        b = slurp(p, &len);
        /* the file's information is cached; a tampered file is a miss */
        CHECK_OK(hk_ks_key_info(ks, "alpha", &ki));
        cases[i].fn(p);
        CHECK(hk_ks_key_info(ks, "alpha", &ki) != HK_OK);
        s = NULL;
        e = hk_ks_load_share(ks, "alpha", &s);
        if (cases[i].want == ANY_ERR ? e != HK_ERR_SEAL && e != HK_ERR_DECODE
                                     : e != cases[i].want) {
            fprintf(stderr, "tamper case %zu: %s\n", i, hk_strerror(e));
            CHECK(0);
        }
        CHECK(s == NULL);
        if (i == 0) { /* listed with its error, the others still fine */
            CHECK_OK(hk_ks_list(ks, &list, &n));
            CHECK(n == 2 && list[0].err == HK_ERR_SEAL &&
                  strcmp(list[0].label, "alpha") == 0 && list[1].err == HK_OK);
            hk_ks_list_free(list);
        }
        unlink(p);
        spill(p, b, len);
        CHECK(chmod(p, 0600) == 0);
        free(b);
        load_same(ks, "alpha", sh->k1);
    }

    /* renamed consistently, label and file: the AAD still says alpha */
    snprintf(p, sizeof(p), "%s", at("keys/alpha.json"));
    snprintf(q, sizeof(q), "%s", at("keys/alphb.json"));
    b = slurp(p, &len);
    spill(q, b, len);
    free(b);
    edit(q, "\"alpha\"", "\"alphb\"");
    CHECK_ERR(hk_ks_load_share(ks, "alphb", &s), HK_ERR_SEAL);
    /* copied under another name, unchanged: the label does not match */
    b = slurp(p, &len);
    spill(q, b, len);
    free(b);
    CHECK_ERR(hk_ks_load_share(ks, "alphb", &s), HK_ERR_SEAL);
    CHECK(unlink(q) == 0);
}

static void test_lock(hk_ks *ks, const shares *sh)
{
    hk_ks_keyinfo ki;
    hk_share *s = NULL;
    hk_ks *ks2 = NULL;
    char p[512];
    unsigned char *b;
    size_t len;

    CHECK_OK(hk_ks_lock_key(ks, "alpha", "invalid signature\n(abort)"));
    CHECK_ERR(hk_ks_load_share(ks, "alpha", &s), HK_ERR_KEY_LOCKED);
    CHECK_OK(hk_ks_lock_key(ks, "alpha", "second")); /* keeps the first */
    CHECK_ERR(hk_ks_lock_key(ks, "nope", "x"), HK_ERR_NOT_FOUND);
    load_same(ks, "beta", sh->p1);
    /* cached here; the unlock below by another handle is seen (a miss) */
    CHECK_OK(hk_ks_key_info(ks, "alpha", &ki));
    CHECK(ki.locked && ki.verified);

    CHECK_OK(hk_ks_open(tok, &ks2)); /* persistent */
    CHECK_OK(hk_ks_key_info(ks2, "alpha", &ki));
    CHECK(ki.locked && !ki.verified && ki.lock_time > 0);
    CHECK(strcmp(ki.lock_reason, "invalid signature?(abort)") == 0);
    CHECK_OK(hk_ks_login(ks2, PIN1));
    CHECK_OK(hk_ks_key_info(ks2, "alpha", &ki));
    CHECK(ki.locked && ki.verified);
    CHECK_ERR(hk_ks_load_share(ks2, "alpha", &s), HK_ERR_KEY_LOCKED);

    /* clearing the flag by editing the file: the AAD refuses it */
    snprintf(p, sizeof(p), "%s", at("keys/alpha.json"));
    b = slurp(p, &len);
    edit(p, "\"locked\":1", "\"locked\":0");
    CHECK_ERR(hk_ks_load_share(ks2, "alpha", &s), HK_ERR_DECODE);
    edit(p, "\"lock_reason\":\"invalid signature?(abort)\"",
         "\"lock_reason\":\"\"");
    {
        /* lock_time to zero as well: a well-formed unlocked record */
        size_t l2;
        unsigned char *c = slurp(p, &l2);
        char *t = memmem(c, l2, "\"lock_time\":\"", 13);

        CHECK(t != NULL);
        memset(t + 13, '0', 16);
        spill(p, c, l2);
        free(c);
    }
    CHECK_ERR(hk_ks_load_share(ks2, "alpha", &s), HK_ERR_SEAL);
    spill(p, b, len);
    free(b);

    hk_ks_logout(ks2);
    CHECK_ERR(hk_ks_unlock_key(ks2, "alpha", 1), HK_ERR_STATE);
    CHECK_OK(hk_ks_login(ks2, PIN1));
    /* an abort lock holds against a plain unlock (DESIGN.md section 2) */
    CHECK_ERR(hk_ks_unlock_key(ks2, "alpha", 0), HK_ERR_KEY_LOCKED);
    CHECK_ERR(hk_ks_load_share(ks2, "alpha", &s), HK_ERR_KEY_LOCKED);
    CHECK_OK(hk_ks_unlock_key(ks2, "alpha", 1));
    CHECK_OK(hk_ks_unlock_key(ks2, "alpha", 0)); /* no-op */
    hk_ks_close(ks2);
    load_same(ks, "alpha", sh->k1);
    CHECK_OK(hk_ks_key_info(ks, "alpha", &ki));
    CHECK(!ki.locked && ki.lock_reason[0] == 0 && ki.lock_time == 0);
}

/* The signing-session record: fail-closed (keystore.h). */
/* The key's signing-session record is the 37-byte idle line. */
static void idle_record_at(const char *rel)
{
    size_t len = 0;
    unsigned char *b = slurp(at(rel), &len);

    CHECK(b != NULL && len == 37 && memcmp(b, "HKSIG1 idle     ", 16) == 0 &&
          b[36] == '\n');
    free(b);
}

static void test_sig_record(hk_ks *ks, const shares *sh)
{
    hk_ks_keyinfo ki;
    hk_ks_hold *h = NULL;
    hk_share *s = NULL;
    hk_ks *ks2 = NULL;
    char p[512];

    CHECK_OK(hk_ks_key_acquire(ks, "alpha", &h));
    CHECK_ERR(hk_ks_hold_mark(h, HK_KS_SIG_DAMAGED), HK_ERR_ARG);
    CHECK_OK(hk_ks_hold_mark(h, HK_KS_SIG_INFLIGHT));
    /* readable without the PIN, by another handle */
    CHECK_OK(hk_ks_open(tok, &ks2));
    CHECK_OK(hk_ks_key_info(ks2, "alpha", &ki));
    CHECK(ki.locked && ki.sig_state == HK_KS_SIG_INFLIGHT && ki.lock_time > 0);
    CHECK(strstr(ki.lock_reason, "interrupted signature") != NULL);
    /* live (no hold): the session lock is held, so a sign in progress */
    CHECK_OK(hk_ks_key_info_live(ks2, "alpha", &ki));
    CHECK(!ki.locked && ki.signing && ki.sig_state == HK_KS_SIG_INFLIGHT);
    CHECK_ERR(hk_ks_load_share(ks, "alpha", &s), HK_ERR_KEY_LOCKED);
    /* the holder's session runs: no unlock meanwhile */
    CHECK_OK(hk_ks_login(ks2, PIN1));
    CHECK_ERR(hk_ks_unlock_key(ks2, "alpha", 0), HK_ERR_BUSY);
    CHECK_OK(hk_ks_hold_mark(h, HK_KS_SIG_IDLE));
    load_same(ks, "alpha", sh->k1);
    /* idle is a record of the same length, written in place (no truncate:
     * the next mark then syncs one data block) */
    idle_record_at("keys/alpha.lock");
    /* left behind (a crash): locked until a plain unlock, live too */
    CHECK_OK(hk_ks_hold_mark(h, HK_KS_SIG_INFLIGHT));
    hk_ks_key_release(h);
    CHECK_ERR(hk_ks_load_share(ks, "alpha", &s), HK_ERR_KEY_LOCKED);
    CHECK_OK(hk_ks_key_info_live(ks2, "alpha", &ki));
    CHECK(ki.locked && !ki.signing && ki.sig_state == HK_KS_SIG_INFLIGHT);
    CHECK_OK(hk_ks_unlock_key(ks2, "alpha", 0));
    load_same(ks, "alpha", sh->k1);
    /* an aborted record needs force */
    CHECK_OK(hk_ks_key_acquire(ks, "alpha", &h));
    CHECK_OK(hk_ks_hold_mark(h, HK_KS_SIG_ABORTED));
    /* an aborted record locks even while its session lock is held */
    CHECK_OK(hk_ks_key_info_live(ks2, "alpha", &ki));
    CHECK(ki.locked && !ki.signing);
    hk_ks_key_release(h);
    CHECK_OK(hk_ks_key_info(ks2, "alpha", &ki));
    CHECK(ki.locked && ki.sig_state == HK_KS_SIG_ABORTED);
    CHECK(strstr(ki.lock_reason, "abort attack") != NULL);
    CHECK_ERR(hk_ks_unlock_key(ks2, "alpha", 0), HK_ERR_KEY_LOCKED);
    CHECK_ERR(hk_ks_load_share(ks, "alpha", &s), HK_ERR_KEY_LOCKED);
    CHECK_OK(hk_ks_unlock_key(ks2, "alpha", 1));
    load_same(ks, "alpha", sh->k1);
    /* a damaged record counts as an abort */
    snprintf(p, sizeof(p), "%s", at("keys/alpha.lock"));
    spill(p, (const unsigned char *)"garbage", 7);
    CHECK_OK(hk_ks_key_info(ks2, "alpha", &ki));
    CHECK(ki.locked && ki.sig_state == HK_KS_SIG_DAMAGED);
    CHECK_ERR(hk_ks_load_share(ks, "alpha", &s), HK_ERR_KEY_LOCKED);
    CHECK_ERR(hk_ks_unlock_key(ks2, "alpha", 0), HK_ERR_KEY_LOCKED);
    CHECK_OK(hk_ks_unlock_key(ks2, "alpha", 1));
    load_same(ks, "alpha", sh->k1);
    idle_record_at("keys/alpha.lock");
    /* an empty file (what older versions left) is idle; an idle record
     * with a bad time, or an unknown state, is damaged */
    spill(p, "", 0);
    CHECK_OK(hk_ks_key_info(ks2, "alpha", &ki));
    CHECK(!ki.locked && ki.sig_state == HK_KS_SIG_IDLE);
    spill(p, "HKSIG1 idle     00000000000000000x12\n", 37);
    CHECK_OK(hk_ks_key_info(ks2, "alpha", &ki));
    CHECK(ki.locked && ki.sig_state == HK_KS_SIG_DAMAGED);
    spill(p, "HKSIG1 resting  00000000000000000012\n", 37);
    CHECK_OK(hk_ks_key_info(ks2, "alpha", &ki));
    CHECK(ki.locked && ki.sig_state == HK_KS_SIG_DAMAGED);
    CHECK_OK(hk_ks_unlock_key(ks2, "alpha", 1));
    idle_record_at("keys/alpha.lock");
    hk_ks_close(ks2);
}

static void test_replace(hk_ks *ks, const shares *sh)
{
    hk_ks_keyinfo ki;

    CHECK_ERR(hk_ks_replace_share(ks, "alpha", sh->p1), HK_ERR_BINDING);
    CHECK_ERR(hk_ks_replace_share(ks, "alpha", sh->k1), HK_ERR_EPOCH);
    CHECK_ERR(hk_ks_replace_share(ks, "gamma", sh->k1r), HK_ERR_NOT_FOUND);
    /* a lock survives a replaced share: a refresh is no way out of it */
    CHECK_OK(hk_ks_lock_key(ks, "alpha", "abort"));
    CHECK_OK(hk_ks_replace_share(ks, "alpha", sh->k1r));
    CHECK_OK(hk_ks_key_info(ks, "alpha", &ki));
    CHECK(ki.locked && strcmp(ki.lock_reason, "abort") == 0);
    CHECK(ki.epoch == 2);
    {
        hk_share *s = NULL;

        CHECK_ERR(hk_ks_load_share(ks, "alpha", &s), HK_ERR_KEY_LOCKED);
    }
    CHECK_OK(hk_ks_unlock_key(ks, "alpha", 1));
    CHECK_ERR(hk_ks_replace_share(ks, "alpha", sh->k1r), HK_ERR_EPOCH);
    CHECK_ERR(hk_ks_replace_share(ks, "alpha", sh->k1), HK_ERR_EPOCH);
    load_same(ks, "alpha", sh->k1r);
}

/* --- PIN change ------------------------------------------------------- */

static void test_change_pin(hk_ks *ks, const shares *sh)
{
    hk_ks *ks2 = NULL;

    CHECK_OK(hk_ks_open(tok, &ks2));
    CHECK_OK(hk_ks_login(ks2, PIN1));
    CHECK_ERR(hk_ks_change_pin(ks, PIN3, PIN2), HK_ERR_PIN); /* counted */
    CHECK(fails(ks) == 1);
    CHECK_OK(hk_ks_login(ks, PIN1));
    CHECK_OK(hk_ks_change_pin(ks, PIN1, PIN2));
    CHECK(fails(ks) == 0);
    load_same(ks, "alpha", sh->k1r); /* logged in with the new PIN */
    /* ks2 still holds the old PIN's key: refused, not misread */
    {
        hk_share *s = NULL;

        CHECK_ERR(hk_ks_load_share(ks2, "alpha", &s), HK_ERR_STATE);
        CHECK_ERR(hk_ks_lock_key(ks2, "alpha", "x"), HK_ERR_STATE);
    }
    CHECK_ERR(hk_ks_login(ks2, PIN1), HK_ERR_PIN);
    CHECK_OK(hk_ks_login(ks2, PIN2));
    load_same(ks2, "alpha", sh->k1r);
    load_same(ks2, "beta", sh->p1);
    hk_ks_close(ks2);
}

/* Copies token.json and the key files into/out of a snapshot folder. */
static void snapshot(const char *snap, int save)
{
    static const char *const files[] = {"token.json", "keys/alpha.json",
                                        "keys/beta.json"};
    char a[300], b[300];
    unsigned char *buf;
    size_t i, len;

    for (i = 0; i < 3; i++) {
        snprintf(a, sizeof(a), "%s/%s", tok, files[i]);
        snprintf(b, sizeof(b), "%s/%zu", snap, i);
        buf = slurp(save ? a : b, &len);
        if (!save)
            unlink(a);
        spill(save ? b : a, buf, len);
        CHECK(chmod(save ? b : a, 0600) == 0);
        free(buf);
    }
}

/* A change from PIN2 to PIN3 stopped between alpha and beta (an I/O error
 * on a directory named "am.json" that sorts between them): the token is
 * pending, alpha is at the new generation, beta at the old. Both PINs must
 * read both keys; the PIN given decides the direction. */
static void test_interrupted_change(const shares *sh)
{
    hk_ks *ks = NULL;
    hk_ks_tokeninfo ti;
    hk_ks_keyinfo *list = NULL;
    char snap[160];
    size_t n = 0;

    snprintf(snap, sizeof(snap), "%s/snap", root);
    CHECK(mkdir(snap, 0700) == 0);
    CHECK(mkdir(at("keys/am.json"), 0700) == 0);
    CHECK_OK(hk_ks_open(tok, &ks));
    CHECK_ERR(hk_ks_change_pin(ks, PIN2, PIN3), HK_ERR_IO);
    CHECK_OK(hk_ks_token_info(ks, &ti));
    CHECK(ti.pin_change_pending && !ti.logged_in);
    CHECK_OK(hk_ks_list(ks, &list, &n));
    CHECK(n == 3 && list[1].err == HK_ERR_IO); /* alpha, am, beta */
    hk_ks_list_free(list);
    CHECK_ERR(hk_ks_login(ks, PIN3), HK_ERR_IO); /* obstacle still there */
    CHECK(rmdir(at("keys/am.json")) == 0);
    snapshot(snap, 1);

    /* the old PIN rolls back */
    CHECK_OK(hk_ks_login(ks, PIN2));
    CHECK_OK(hk_ks_token_info(ks, &ti));
    CHECK(!ti.pin_change_pending && ti.pin_fails == 0);
    load_same(ks, "alpha", sh->k1r);
    load_same(ks, "beta", sh->p1);
    CHECK_ERR(hk_ks_login(ks, PIN3), HK_ERR_PIN);
    hk_ks_close(ks);

    /* the same state again; the new PIN rolls forward */
    snapshot(snap, 0);
    CHECK_OK(hk_ks_open(tok, &ks));
    CHECK_OK(hk_ks_login(ks, PIN3));
    CHECK_OK(hk_ks_token_info(ks, &ti));
    CHECK(!ti.pin_change_pending);
    load_same(ks, "alpha", sh->k1r);
    load_same(ks, "beta", sh->p1);
    CHECK_ERR(hk_ks_login(ks, PIN2), HK_ERR_PIN);
    CHECK_OK(hk_ks_login(ks, PIN3));
    CHECK_OK(hk_ks_change_pin(ks, PIN3, PIN2)); /* back to PIN2 */
    CHECK_OK(hk_ks_reset_pin_counter(ks));
    hk_ks_close(ks);
}

/* Runs change_pin(pins[cur] -> pins[1 - cur]) in a child, killed after
 * `ns` nanoseconds (negative: not killed). Returns the wall time. */
static double child_change(const char *from, const char *to, long ns)
{
    struct timespec t0, t1, ts = {ns / 1000000000L, ns % 1000000000L};
    pid_t pid;
    int status;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        hk_ks *c = NULL;

        if (hk_ks_open(tok, &c) != HK_OK ||
            hk_ks_change_pin(c, from, to) != HK_OK)
            _exit(1);
        _exit(0);
    }
    if (ns >= 0) {
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
    }
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(ns >= 0 || (WIFEXITED(status) && WEXITSTATUS(status) == 0));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0.tv_sec) * 1e9 +
           (double)(t1.tv_nsec - t0.tv_nsec);
}

/* Kills a child in the middle of change_pin at points spread over its run
 * time; afterwards one of the two PINs opens every key. */
static void test_killed_change(const shares *sh)
{
    static const char *const pins[2] = {PIN2, PIN1};
    int cur = 0; /* index of the PIN that opens the token */
    int done = 0, pending = 0, i, runs = 16;
    double t;

    t = child_change(pins[0], pins[1], -1); /* the time of a whole change */
    cur = 1;
    for (i = 0; i < runs; i++) {
        hk_ks *ks = NULL;
        hk_ks_tokeninfo ti;
        hk_err e;

        /* half over the whole run, half over its end (the writes) */
        double at_ns = i < runs / 2 ? t * i / (runs / 2)
                                    : t * (0.9 + 0.2 * (i - runs / 2) / runs);

        child_change(pins[cur], pins[1 - cur], (long)at_ns);
        CHECK_OK(hk_ks_open(tok, &ks));
        CHECK_OK(hk_ks_token_info(ks, &ti));
        pending += ti.pin_change_pending;
        if ((e = hk_ks_login(ks, pins[cur])) == HK_ERR_PIN) {
            cur = 1 - cur; /* the change went through */
            done++;
            e = hk_ks_login(ks, pins[cur]);
        }
        CHECK_OK(e);
        load_same(ks, "alpha", sh->k1r);
        load_same(ks, "beta", sh->p1);
        CHECK_OK(hk_ks_reset_pin_counter(ks));
        hk_ks_close(ks); /* open swept the killed writer's temp files */
        CHECK(count_tmp(tok) == 0 && count_tmp(at("keys")) == 0);
    }
    printf("killed PIN changes: %d runs over %.0f ms, %d completed, %d left "
           "pending\n",
           runs, t / 1e6, done, pending);
    if (cur != 0) {
        hk_ks *ks = NULL;

        CHECK_OK(hk_ks_open(tok, &ks));
        CHECK_OK(hk_ks_change_pin(ks, pins[cur], PIN2));
        hk_ks_close(ks);
    }
}

/* --- session locks ------------------------------------------------------ */

typedef struct {
    hk_ks *ks;
    hk_err e;
} thr_arg;

static void *thread_acquire_ks(void *arg)
{
    thr_arg *a = arg;
    hk_ks_hold *h = NULL;

    a->e = hk_ks_key_acquire(a->ks, "alpha", &h);
    hk_ks_key_release(h);
    return NULL;
}

/* Exit status of a child that tries to acquire alpha: 0 = got it, 1 = busy,
 * 2 = other. use_parent: through the inherited handle. */
static int child_acquire(hk_ks *parent, int use_parent)
{
    pid_t pid = fork();
    int status;

    CHECK(pid >= 0);
    if (pid == 0) {
        hk_ks *ks = parent;
        hk_ks_hold *h = NULL;
        hk_err e;

        if (!use_parent && hk_ks_open(tok, &ks) != HK_OK)
            _exit(2);
        e = hk_ks_key_acquire(ks, "alpha", &h);
        _exit(e == HK_OK ? 0 : e == HK_ERR_BUSY ? 1 : 2);
    }
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_acquire(hk_ks *ks)
{
    hk_ks_hold *h = NULL, *h2 = NULL;
    hk_ks *ks2 = NULL;
    pthread_t th;
    thr_arg ta;

    CHECK_ERR(hk_ks_key_acquire(ks, "nope", &h), HK_ERR_NOT_FOUND);
    CHECK_OK(hk_ks_key_acquire(ks, "alpha", &h));
    CHECK(mode_of(at("keys/alpha.lock")) == 0600);
    CHECK_ERR(hk_ks_key_acquire(ks, "alpha", &h2), HK_ERR_BUSY);
    CHECK(h2 == NULL);
    CHECK_OK(hk_ks_key_acquire(ks, "beta", &h2)); /* per key */
    hk_ks_key_release(h2);
    CHECK_OK(hk_ks_open(tok, &ks2));
    CHECK_ERR(hk_ks_key_acquire(ks2, "alpha", &h2), HK_ERR_BUSY);
    ta.ks = ks;
    CHECK(pthread_create(&th, NULL, thread_acquire_ks, &ta) == 0);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK(ta.e == HK_ERR_BUSY);
    CHECK(child_acquire(ks, 0) == 1);
    CHECK(child_acquire(ks, 1) == 1);
    CHECK_ERR(hk_ks_delete(ks, "alpha"), HK_ERR_BUSY);
    hk_ks_key_release(h);

    CHECK(child_acquire(ks, 0) == 0); /* released: free for all */
    ta.ks = ks2;
    CHECK(pthread_create(&th, NULL, thread_acquire_ks, &ta) == 0);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK(ta.e == HK_OK);
    CHECK_OK(hk_ks_key_acquire(ks2, "alpha", &h2));
    hk_ks_key_release(h2);
    hk_ks_close(ks2);
}

static void test_labels(hk_ks *ks, const shares *sh)
{
    static const char *const bad[] = {
        "",
        ".",
        "..",
        "../x",
        "a/b",
        "/etc",
        ".hidden",
        "a b",
        "a\\b",
        "x\n",
        "caf\xc3\xa9",
        "0123456789012345678901234567890123456789012345678901234567890123"
        "4"};
    hk_ks_keyinfo ki;
    hk_ks_hold *h = NULL;
    hk_share *s = NULL;
    size_t i;

    CHECK(hk_ks_label_ok("a") && hk_ks_label_ok("A-z_0.9"));
    CHECK(hk_ks_label_ok("x..y") && hk_ks_label_ok("a."));
    CHECK(hk_ks_label_ok("012345678901234567890123456789012345678901234567"
                         "8901234567890123"));
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(!hk_ks_label_ok(bad[i]));
        CHECK_ERR(hk_ks_store_share(ks, bad[i], sh->k1), HK_ERR_ARG);
        CHECK_ERR(hk_ks_load_share(ks, bad[i], &s), HK_ERR_ARG);
        CHECK_ERR(hk_ks_key_info(ks, bad[i], &ki), HK_ERR_ARG);
        CHECK_ERR(hk_ks_key_acquire(ks, bad[i], &h), HK_ERR_ARG);
        CHECK_ERR(hk_ks_delete(ks, bad[i]), HK_ERR_ARG);
        CHECK_ERR(hk_ks_lock_key(ks, bad[i], "x"), HK_ERR_ARG);
    }
    CHECK_ERR(hk_ks_load_share(ks, NULL, &s), HK_ERR_ARG);
}

static void test_delete(hk_ks *ks, const shares *sh)
{
    hk_ks_keyinfo *list = NULL;
    hk_share *s = NULL;
    hk_ks_hold *h = NULL;
    size_t n = 0;

    CHECK_OK(hk_ks_key_acquire(ks, "beta", &h));
    hk_ks_key_release(h);
    CHECK_OK(hk_ks_delete(ks, "beta"));
    CHECK(access(at("keys/beta.json"), F_OK) != 0);
    CHECK(access(at("keys/beta.lock"), F_OK) != 0);
    CHECK_ERR(hk_ks_delete(ks, "beta"), HK_ERR_NOT_FOUND);
    CHECK_ERR(hk_ks_load_share(ks, "beta", &s), HK_ERR_NOT_FOUND);
    CHECK_ERR(hk_ks_key_acquire(ks, "beta", &h), HK_ERR_NOT_FOUND);
    CHECK_OK(hk_ks_list(ks, &list, &n));
    CHECK(n == 1 && strcmp(list[0].label, "alpha") == 0);
    hk_ks_list_free(list);
    CHECK_OK(hk_ks_store_share(ks, "beta", sh->p1)); /* label and id free */
    load_same(ks, "beta", sh->p1);
}

/* --- SO PIN, escrow, user PIN reset ---------------------------------- */

#define SO1 "so-pin-first"
#define SO2 "so-pin-second"

static hk_ks_tokeninfo so_info(hk_ks *ks)
{
    hk_ks_tokeninfo ti;

    CHECK_OK(hk_ks_token_info(ks, &ti));
    return ti;
}

/* SO set, login and counter; no reset without the user's endorsement. */
static void so_set_and_login(hk_ks *ks)
{
    CHECK(!so_info(ks).so_set);
    CHECK_ERR(hk_ks_so_login(ks, SO1), HK_ERR_NOT_FOUND);
    CHECK_ERR(hk_ks_so_init_pin(ks, PIN2), HK_ERR_STATE);
    CHECK_ERR(hk_ks_so_set(ks, "12", NULL), HK_ERR_ARG);
    CHECK_OK(hk_ks_so_set(ks, SO1, "so token"));
    CHECK_ERR(hk_ks_so_set(ks, SO2, NULL), HK_ERR_EXISTS);
    CHECK(mode_of(at("so.json")) == 0600);
    CHECK(strcmp(so_info(ks).label, "so token") == 0);
    CHECK(so_info(ks).so_set && !so_info(ks).escrowed);
    CHECK_ERR(hk_ks_so_login(ks, SO2), HK_ERR_PIN);
    CHECK(so_info(ks).so_fails == 1 && !so_info(ks).so_logged_in);
    CHECK_OK(hk_ks_so_login(ks, SO1));
    CHECK(so_info(ks).so_fails == 0 && so_info(ks).so_logged_in);
    /* keys sealed under a PIN the SO cannot open: no reset */
    CHECK_ERR(hk_ks_so_init_pin(ks, PIN2), HK_ERR_STATE);
    CHECK_ERR(hk_ks_so_endorse(ks), HK_ERR_STATE); /* user not logged in */
    CHECK_OK(hk_ks_login(ks, PIN1));
    CHECK_OK(hk_ks_so_endorse(ks));
    CHECK(so_info(ks).escrowed && mode_of(at("escrow.json")) == 0600);
}

/* The user changes the PIN (escrow kept), forgets it, gets locked out;
 * the SO sets a new one; the SO changes the SO PIN. */
static void so_reset_user_pin(hk_ks *ks, const shares *sh)
{
    int i;

    hk_ks_so_logout(ks);
    CHECK_OK(hk_ks_change_pin(ks, PIN1, PIN2));
    CHECK(so_info(ks).escrowed);
    hk_ks_logout(ks);
    for (i = 0; i < HK_KS_MAX_FAILS; i++)
        CHECK_ERR(hk_ks_login(ks, PIN3), HK_ERR_PIN);
    CHECK_ERR(hk_ks_login(ks, PIN2), HK_ERR_PIN_LOCKED);
    CHECK_ERR(hk_ks_so_init_pin(ks, PIN3), HK_ERR_STATE); /* SO logged out */
    CHECK_OK(hk_ks_so_login(ks, SO1));
    CHECK_ERR(hk_ks_so_init_pin(ks, "12"), HK_ERR_ARG);
    CHECK_OK(hk_ks_so_init_pin(ks, PIN3));
    CHECK(!so_info(ks).pin_locked && !so_info(ks).logged_in);
    CHECK(so_info(ks).escrowed);
    CHECK_ERR(hk_ks_login(ks, PIN2), HK_ERR_PIN);
    CHECK_OK(hk_ks_login(ks, PIN3));
    load_same(ks, "a", sh->k1);
    /* the SO PIN changes; RK, and so the escrow, stay */
    CHECK_ERR(hk_ks_so_change_pin(ks, SO2, SO2), HK_ERR_PIN);
    CHECK_OK(hk_ks_so_change_pin(ks, SO1, SO2));
    hk_ks_so_logout(ks);
    CHECK_ERR(hk_ks_so_login(ks, SO1), HK_ERR_PIN);
    CHECK_OK(hk_ks_so_login(ks, SO2));
    CHECK_OK(hk_ks_so_init_pin(ks, PIN1));
    CHECK_OK(hk_ks_login(ks, PIN1));
    load_same(ks, "a", sh->k1);
}

/* A damaged escrow: the reset fails and changes nothing. */
static void so_tampered_escrow(hk_ks *ks, const shares *sh)
{
    size_t len;
    unsigned char *keep = slurp(at("escrow.json"), &len);

    flip(at("escrow.json"), "\"mk0\":\"", 40);
    CHECK(hk_ks_so_init_pin(ks, PIN2) != HK_OK);
    spill(at("escrow.json"), keep, len);
    free(keep);
    CHECK_OK(hk_ks_login(ks, PIN1));
    load_same(ks, "a", sh->k1);
}

/* C_InitToken on a token with an SO PIN: wipe, all keys or none. */
static void so_reinit(hk_ks *ks)
{
    hk_ks_keyinfo *list = NULL;
    hk_ks_hold *h = NULL;
    size_t n = 0;

    spill(at("objects.bin"), "x", 1);
    CHECK_ERR(hk_ks_so_reinit(ks, SO1, "fresh"), HK_ERR_PIN);
    CHECK_OK(hk_ks_key_acquire(ks, "b", &h));
    CHECK_ERR(hk_ks_so_reinit(ks, SO2, "fresh"), HK_ERR_BUSY);
    CHECK(access(at("keys/a.json"), F_OK) == 0); /* none deleted */
    hk_ks_key_release(h);
    CHECK_OK(hk_ks_so_reinit(ks, SO2, "fresh"));
    CHECK_OK(hk_ks_list(ks, &list, &n));
    CHECK(n == 0 && access(at("objects.bin"), F_OK) != 0);
    CHECK(strcmp(so_info(ks).label, "fresh") == 0);
    CHECK_OK(hk_ks_login(ks, PIN1)); /* the PINs stay */
}

/* An SO PIN on a token without keys and without escrow: the SO may set
 * the user PIN (nothing sealed under the old one); then the SO lockout. */
static void so_fresh_token(const shares *sh)
{
    hk_ks *ks = NULL;
    int i;

    CHECK_OK(hk_ks_init(tok, PIN1, "fresh", &ks));
    CHECK_OK(hk_ks_so_set(ks, SO1, NULL));
    CHECK_OK(hk_ks_so_login(ks, SO1));
    CHECK_OK(hk_ks_so_init_pin(ks, PIN2));
    CHECK(so_info(ks).escrowed);
    CHECK_ERR(hk_ks_login(ks, PIN1), HK_ERR_PIN);
    CHECK_OK(hk_ks_login(ks, PIN2));
    CHECK_OK(hk_ks_store_share(ks, "k", sh->p1));
    CHECK_OK(hk_ks_so_init_pin(ks, PIN3)); /* now through the escrow */
    CHECK_OK(hk_ks_login(ks, PIN3));
    load_same(ks, "k", sh->p1);
    hk_ks_so_logout(ks);
    for (i = 0; i < HK_KS_MAX_FAILS; i++)
        CHECK_ERR(hk_ks_so_login(ks, SO2), HK_ERR_PIN);
    CHECK(so_info(ks).so_locked);
    CHECK_ERR(hk_ks_so_login(ks, SO1), HK_ERR_PIN_LOCKED);
    CHECK_ERR(hk_ks_so_reinit(ks, SO1, "x"), HK_ERR_PIN_LOCKED);
    hk_ks_close(ks);
}

static void test_so(const shares *sh)
{
    char keep[sizeof(tok)];
    hk_ks *ks = NULL;

    memcpy(keep, tok, sizeof(tok));
    snprintf(tok, sizeof(tok), "%s/so-tok", root);
    CHECK_OK(hk_ks_init(tok, PIN1, "so", &ks));
    CHECK_OK(hk_ks_store_share(ks, "a", sh->k1));
    CHECK_OK(hk_ks_store_share(ks, "b", sh->p1));
    so_set_and_login(ks);
    so_reset_user_pin(ks, sh);
    so_tampered_escrow(ks, sh);
    so_reinit(ks);
    hk_ks_close(ks);
    snprintf(tok, sizeof(tok), "%s/so-fresh", root);
    so_fresh_token(sh);
    memcpy(tok, keep, sizeof(tok));
}

static void test_setup_cache(hk_ks *ks)
{
    unsigned char *rec = NULL, fa[HK_HASH_LEN], fb[HK_HASH_LEN];
    size_t len = 0;
    hk_rped *rp = NULL, *rp2 = NULL;

    CHECK_ERR(hk_ks_load_setup(ks, &rp), HK_ERR_NOT_FOUND);
    CHECK_OK(hk_setup_encode(hk_test_rped_secret(), &rec, &len));
    CHECK_ERR(hk_ks_save_setup(ks, rec, len - 1, NULL), HK_ERR_DECODE);
    CHECK_OK(hk_ks_save_setup(ks, rec, len, &rp));
    CHECK(mode_of(at("setup.json")) == 0600);
    CHECK_OK(hk_ks_load_setup(ks, &rp2));
    CHECK_OK(hk_rped_fingerprint(rp, fa));
    CHECK_OK(hk_rped_fingerprint(rp2, fb));
    CHECK(memcmp(fa, fb, HK_HASH_LEN) == 0);
    hk_rped_free(rp2);
    rp2 = NULL;
    flip(at("setup.json"), "\"ped_s\":\"", 100);
    CHECK(hk_ks_load_setup(ks, &rp2) != HK_OK && rp2 == NULL);
    CHECK_OK(hk_ks_save_setup(ks, rec, len, NULL));
    hk_rped_free(rp);
    OPENSSL_free(rec);
}

/* Every file 0600, every directory 0700, no temp file anywhere. */
static void test_modes(void)
{
    static const char *const files[] = {"token.json",     "setup.json",
                                        ".lock",          "keys/alpha.json",
                                        "keys/beta.json", "keys/alpha.lock"};
    size_t i;

    CHECK(mode_of(tok) == 0700 && mode_of(at("keys")) == 0700);
    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        CHECK(mode_of(at(files[i])) == 0600);
    CHECK(count_tmp(tok) == 0 && count_tmp(at("keys")) == 0);
}

static void test_reinit_over_keys(void)
{
    hk_ks *ks = NULL;
    char saved[200];

    snprintf(saved, sizeof(saved), "%s/token.saved", root);
    CHECK(rename(at("token.json"), saved) == 0);
    CHECK_ERR(hk_ks_open(tok, &ks), HK_ERR_NOT_FOUND);
    CHECK_ERR(hk_ks_init(tok, PIN1, "over", &ks), HK_ERR_EXISTS);
    CHECK(rename(saved, at("token.json")) == 0);
}

/* --- scrypt cost and its upgrade ------------------------------------------ */

#define KDF_ENV "HALFKEY_INSECURE_SCRYPT_LOG2N"

/* The scrypt log2(N) that dir/token.json names for its (only) slot. */
static unsigned long token_log2n(const char *dir)
{
    char p[200];
    unsigned char *b;
    const char *f;
    size_t len;
    unsigned long n;

    snprintf(p, sizeof(p), "%s/token.json", dir);
    b = slurp(p, &len);
    b[len] = 0;
    CHECK(strstr((char *)b, "prev_") == NULL); /* no change pending */
    CHECK((f = strstr((char *)b, "\"scrypt_log2n\":")) != NULL);
    n = strtoul(f + strlen("\"scrypt_log2n\":"), NULL, 10);
    CHECK(strstr(f + 1, "\"scrypt_log2n\":") == NULL); /* one slot */
    free(b);
    return n;
}

/* New tokens get N = 2^17 (unless the test-only variable lowers it); a
 * token made at a lower cost (as by earlier versions, 2^15) is moved to
 * 2^17 at its next login, through the PIN change machinery, and its keys
 * still open; the variable never lowers an existing slot. New PINs of 5
 * characters are refused. */
static void test_kdf(const shares *sh)
{
    hk_ks *ks = NULL;
    char d1[160], d2[160];

    snprintf(d1, sizeof(d1), "%s/kdf-new", root);
    snprintf(d2, sizeof(d2), "%s/kdf-old", root);
    CHECK(HK_KS_PIN_MIN == 6);
    CHECK_ERR(hk_ks_init(d1, "12345", "t", &ks), HK_ERR_ARG);
    unsetenv(KDF_ENV);
    CHECK_OK(hk_ks_init(d1, "123456", "t", &ks));
    hk_ks_close(ks);
    CHECK(token_log2n(d1) == 17);
    CHECK_OK(hk_ks_open(d1, &ks));
    /* a 5-character PIN may be a token's old PIN: checked (and counted) */
    CHECK_ERR(hk_ks_login(ks, "12345"), HK_ERR_PIN);
    CHECK_ERR(hk_ks_login(ks, "123"), HK_ERR_ARG);
    CHECK_OK(hk_ks_login(ks, "123456"));
    CHECK_ERR(hk_ks_change_pin(ks, "123456", "12345"), HK_ERR_ARG);
    hk_ks_close(ks);

    setenv(KDF_ENV, "12", 1); /* the old, cheaper token */
    CHECK_OK(hk_ks_init(d2, PIN1, "old", &ks));
    CHECK_OK(hk_ks_store_share(ks, "alpha", sh->k1));
    hk_ks_close(ks);
    CHECK(token_log2n(d2) == 12);
    CHECK_OK(hk_ks_open(d2, &ks)); /* still cheap: nothing to upgrade */
    CHECK_OK(hk_ks_login(ks, PIN1));
    hk_ks_close(ks);
    CHECK(token_log2n(d2) == 12);
    unsetenv(KDF_ENV);
    CHECK_OK(hk_ks_open(d2, &ks));
    CHECK_ERR(hk_ks_login(ks, PIN2), HK_ERR_PIN); /* a wrong PIN: no change */
    CHECK(token_log2n(d2) == 12);
    CHECK_OK(hk_ks_login(ks, PIN1));
    CHECK(token_log2n(d2) == 17);
    load_same(ks, "alpha", sh->k1); /* under the new master key */
    hk_ks_close(ks);
    setenv(KDF_ENV, "12", 1);
    CHECK_OK(hk_ks_open(d2, &ks));
    CHECK_OK(hk_ks_login(ks, PIN1));
    load_same(ks, "alpha", sh->k1);
    hk_ks_close(ks);
    CHECK(token_log2n(d2) == 17); /* never lowered */
}

int main(void)
{
    shares sh;
    hk_ks *ks = NULL;

    /* Tokens at scrypt N = 2^12 (test-only variable) keep this test fast;
     * test_kdf checks the default cost and the upgrade. */
    setenv(KDF_ENV, "12", 1);
    umask(022);
    CHECK(snprintf(root, sizeof(root), "/tmp/hk-ks-XXXXXX") > 0);
    CHECK(mkdtemp(root) != NULL);
    snprintf(tok, sizeof(tok), "%s/tok", root);

    test_resolve();
    test_init_login();
    test_counter();
    memset(&sh, 0, sizeof(sh));
    make_shares(&sh);

    CHECK_OK(hk_ks_open(tok, &ks));
    CHECK_OK(hk_ks_login(ks, PIN1));
    test_store_load(ks, &sh);
    test_other_pin();
    test_tamper(ks, &sh);
    test_lock(ks, &sh);
    test_sig_record(ks, &sh);
    test_replace(ks, &sh);
    test_change_pin(ks, &sh);
    hk_ks_close(ks);
    test_interrupted_change(&sh);
    test_killed_change(&sh);

    CHECK_OK(hk_ks_open(tok, &ks));
    CHECK_OK(hk_ks_login(ks, PIN2));
    test_acquire(ks);
    test_labels(ks, &sh);
    test_delete(ks, &sh);
    test_setup_cache(ks);
    hk_ks_close(ks);
    test_modes();
    test_reinit_over_keys();
    test_so(&sh);
    test_kdf(&sh);

    hk_share_free(sh.k1);
    hk_share_free(sh.k2);
    hk_share_free(sh.k1r);
    hk_share_free(sh.p1);
    hk_share_free(sh.p2);
    rm_rf(root);
    printf("test_keystore: ok\n");
    return 0;
}
