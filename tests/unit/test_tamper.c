/* Tampered, truncated, replayed and out-of-order protocol messages.
 *
 * Drives the keygen, sign and refresh state machines by hand and, before
 * delivering each genuine message, feeds its receiver mutants of it:
 * every key's value changed (hex digits flipped, uppercase, wrong length,
 * wrong JSON type, array elements changed, dropped, added or swapped,
 * integers +-1 or too big) or deleted; the whole message truncated, empty,
 * with trailing bytes, a duplicate key, an extra key, wrapped in an array,
 * over the size cap; its type set to every other message type; every
 * message of other sessions of all three protocols (out of order, sid
 * rewritten to this session's); this session's earlier messages
 * (replays); and the same message of a parallel session, as sent
 * (HK_ERR_BINDING) and with its sid rewritten. Each must be refused with
 * no output; then the genuine message must be accepted, which shows the
 * receiver's state was left unchanged; the shares obtained still sign.
 *
 * Values the receiver cannot judge yet (a commitment, the digest it is
 * committed with, P2's refresh coin as seen by P1) are accepted by a fresh
 * receiver, and the test checks that the opening refuses them later.
 *
 * sign.4 (c3): a well-formed but wrong c3 is the signature abort: P1
 * answers HK_ERR_SIG_ABORT and the session is dead (HK_ERR_STATE after),
 * so those mutants each get a fresh session; malformed ones leave it
 * usable. keygen.3 and refresh.3 also get a malicious P1's Paillier
 * package (wrong plaintext, proof for another statement) and bad moduli
 * (too short, a small factor, p^2*q with a cheating modulus proof). */
#include <ctype.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "mpc/proto_impl.h"
#include "tests/unit/check.h"
#include "tests/unit/cheat.h"
#include "tests/unit/driver.h"
#include "tests/unit/verify.h"

#define PBITS 2048
#define NB (PBITS / 8)

/* ---- messages ----------------------------------------------------------- */

typedef struct {
    unsigned char *b;
    size_t len;
} buf;

enum {
    KG1,
    KG2,
    KG3,
    KG4,
    KG5,
    SG1,
    SG2,
    SG3,
    SG4,
    SG5,
    RF1,
    RF2,
    RF3,
    RF4,
    RF5,
    NTYPES
};

static const char *const type_names[NTYPES] = {
    "keygen.1",  "keygen.2",  "keygen.3",  "keygen.4",  "keygen.5",
    "sign.1",    "sign.2",    "sign.3",    "sign.4",    "sign.5",
    "refresh.1", "refresh.2", "refresh.3", "refresh.4", "refresh.5"};

/* One message of each type, from sessions parallel to the tested ones. */
typedef struct {
    buf m[NTYPES];
} transcript;

static struct {
    unsigned long refused, diverted, fatal;
} g_count;

static transcript g_other; /* the out-of-order pool */

static buf buf_dup(const void *p, size_t len)
{
    buf r;

    r.b = malloc(len > 0 ? len : 1);
    CHECK(r.b != NULL);
    if (len > 0)
        memcpy(r.b, p, len);
    r.len = len;
    return r;
}

/* Takes a buffer from the library (OPENSSL_malloc'd). */
static buf buf_take(unsigned char *p, size_t len)
{
    buf r = buf_dup(p, len);

    OPENSSL_free(p);
    return r;
}

static void buf_free(buf *b)
{
    free(b->b);
    b->b = NULL;
    b->len = 0;
}

static void transcript_free(transcript *t)
{
    size_t i;

    for (i = 0; i < NTYPES; i++)
        buf_free(&t->m[i]);
}

static json_t *jload(const buf *m)
{
    json_t *j = json_loadb((const char *)m->b, m->len, 0, NULL);

    CHECK(j != NULL && json_is_object(j));
    return j;
}

static buf jdump(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    buf r;

    CHECK(s != NULL);
    r.b = (unsigned char *)s;
    r.len = strlen(s);
    return r;
}

static void hex_of(const unsigned char *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = 0;
}

static json_t *json_hex(const unsigned char *b, size_t n)
{
    char *s = malloc(2 * n + 1);
    json_t *j;

    CHECK(s != NULL);
    hex_of(b, n, s);
    j = json_string(s);
    CHECK(j != NULL);
    free(s);
    return j;
}

static json_t *json_bn(const BIGNUM *v, size_t width)
{
    unsigned char *b = malloc(width);
    json_t *j;

    CHECK(b != NULL && BN_bn2binpad(v, b, (int)width) == (int)width);
    j = json_hex(b, width);
    free(b);
    return j;
}

/* A copy of msg with `key` set to `v` (v is stolen). */
static buf with_json(const buf *msg, const char *key, json_t *v)
{
    json_t *j = jload(msg);
    buf r;

    CHECK(json_object_set_new(j, key, v) == 0);
    r = jdump(j);
    json_decref(j);
    return r;
}

static buf with_sid(const buf *msg, const unsigned char *sid)
{
    return with_json(msg, "sid", json_hex(sid, HK_ID_LEN));
}

static buf with_bn(const buf *msg, const char *key, const BIGNUM *v,
                   size_t width)
{
    return with_json(msg, key, json_bn(v, width));
}

static buf with_bn_array(const buf *msg, const char *key, BIGNUM *const *v,
                         size_t n, size_t width)
{
    json_t *a = json_array();
    size_t i;

    CHECK(a != NULL);
    for (i = 0; i < n; i++)
        CHECK(json_array_append_new(a, json_bn(v[i], width)) == 0);
    return with_json(msg, key, a);
}

/* The value of a fixed-width hex field as a BIGNUM, NULL if malformed. */
static BIGNUM *field_bn(const buf *msg, const char *key)
{
    json_t *j = jload(msg), *v = json_object_get(j, key);
    BIGNUM *r = NULL;

    if (json_is_string(v) && json_string_length(v) % 2 == 0 &&
        json_string_length(v) > 0) {
        const char *s = json_string_value(v);
        size_t i, n = json_string_length(v);

        for (i = 0; i < n; i++)
            if (!isdigit((unsigned char)s[i]) && (s[i] < 'a' || s[i] > 'f'))
                break;
        if (i == n)
            CHECK(BN_hex2bn(&r, s) > 0);
    }
    json_decref(j);
    return r;
}

static void field_bytes(const buf *msg, const char *key, unsigned char *out,
                        size_t n)
{
    BIGNUM *v = field_bn(msg, key);

    CHECK(v != NULL && BN_bn2binpad(v, out, (int)n) == (int)n);
    BN_free(v);
}

static void field_point(hk_curve_id curve, const buf *msg, const char *key,
                        hk_point *p)
{
    unsigned char b[HK_POINT_LEN];
    hk_curve *c = NULL;

    field_bytes(msg, key, b, sizeof(b));
    CHECK_OK(hk_curve_new(curve, &c));
    CHECK_OK(hk_point_parse(c, b, sizeof(b), p));
    hk_curve_free(c);
}

/* ---- delivery ----------------------------------------------------------- */

typedef hk_err (*recv_fn)(void *sm, const unsigned char *in, size_t len,
                          unsigned char **out, size_t *outlen);

static hk_err kg_recv(void *sm, const unsigned char *in, size_t len,
                      unsigned char **out, size_t *outlen)
{
    return hk_keygen_recv(sm, in, len, out, outlen);
}

static hk_err sg_recv(void *sm, const unsigned char *in, size_t len,
                      unsigned char **out, size_t *outlen)
{
    return hk_sign_recv(sm, in, len, out, outlen);
}

static hk_err rf_recv(void *sm, const unsigned char *in, size_t len,
                      unsigned char **out, size_t *outlen)
{
    return hk_refresh_recv(sm, in, len, out, outlen);
}

/* Delivers a message that must be refused, with no output; returns the
 * error. */
static hk_err refuse(recv_fn fn, void *sm, const buf *in, const char *what)
{
    unsigned char sentinel = 0, *out = &sentinel;
    size_t outlen = 1;
    hk_err e = fn(sm, in->b, in->len, &out, &outlen);

    if (e == HK_OK || out != NULL || outlen != 0) {
        fprintf(stderr, "%s: accepted (%s), output %s\n", what, hk_strerror(e),
                out != NULL ? "given" : "none");
        CHECK(e != HK_OK && out == NULL && outlen == 0);
    }
    g_count.refused++;
    return e;
}

static void refuse_with(recv_fn fn, void *sm, const buf *in, hk_err want,
                        const char *what)
{
    hk_err e = refuse(fn, sm, in, what);

    if (want != HK_OK && e != want) {
        fprintf(stderr, "%s: refused with \"%s\", expected \"%s\"\n", what,
                hk_strerror(e), hk_strerror(want));
        CHECK(e == want);
    }
}

/* Delivers a message that must be accepted; returns the reply (empty if
 * none). */
static buf deliver(recv_fn fn, void *sm, const buf *in, const char *what)
{
    unsigned char *out = NULL;
    size_t outlen = 0;
    hk_err e = fn(sm, in->b, in->len, &out, &outlen);
    buf r = {NULL, 0};

    if (e != HK_OK) {
        fprintf(stderr, "%s: refused: %s\n", what, hk_strerror(e));
        CHECK(e == HK_OK);
    }
    if (out != NULL)
        r = buf_take(out, outlen);
    return r;
}

/* ---- mutations ---------------------------------------------------------- */

enum {
    /* string values */
    K_FLIP_LAST,
    K_FLIP_FIRST,
    K_FLIP_SECOND,
    K_UPPER,
    K_SHORT,
    K_LONG,
    K_ODD,
    K_NOT_STRING,
    /* arrays */
    K_EL0,
    K_ELN,
    K_DROP_EL,
    K_ADD_EL,
    K_SWAP_EL,
    K_NOT_ARRAY,
    /* integers */
    K_PLUS1,
    K_MINUS1,
    K_BIG,
    K_NOT_INT,
    /* any key */
    K_DELETE,
    /* the whole message */
    K_TRUNC_HALF,
    K_TRUNC_1,
    K_EMPTY,
    K_EXTRA_KEY,
    K_TRAILING,
    K_DUP_KEY,
    K_ARRAY,
    K_TOO_BIG,
    K_COUNT
};

static const char *const kind_names[K_COUNT] = {"flip last digit",
                                                "flip first digit",
                                                "flip second digit",
                                                "uppercase",
                                                "one byte short",
                                                "one byte long",
                                                "odd length",
                                                "not a string",
                                                "element 0 changed",
                                                "last element changed",
                                                "element dropped",
                                                "element added",
                                                "elements swapped",
                                                "not an array",
                                                "+1",
                                                "-1",
                                                "+2^32",
                                                "not an integer",
                                                "deleted",
                                                "truncated to half",
                                                "last byte cut",
                                                "empty",
                                                "extra key",
                                                "trailing bytes",
                                                "duplicate key",
                                                "wrapped in an array",
                                                "over the size cap"};

#define BIT(k) (1u << (k))
#define FLIPS (BIT(K_FLIP_LAST) | BIT(K_FLIP_FIRST) | BIT(K_FLIP_SECOND))
#define STRING_KINDS 0x00ffu
#define ARRAY_KINDS (0x3fu << K_EL0)
#define INT_KINDS (0xfu << K_PLUS1)

typedef struct {
    char key[24];
    int kind;
    int hex; /* the value is a hex string (fixed or bounded width) */
} mut;

static int is_hex_string(const json_t *v)
{
    const char *s = json_string_value(v);
    size_t i, n = json_string_length(v);

    for (i = 0; s != NULL && i < n; i++)
        if (!isdigit((unsigned char)s[i]) && (s[i] < 'a' || s[i] > 'f'))
            return 0;
    return s != NULL && n % 2 == 0;
}

static size_t mut_list(const buf *msg, mut *out, size_t max)
{
    json_t *j = jload(msg), *v;
    const char *key;
    unsigned kinds;
    size_t n = 0;
    int k;

    json_object_foreach(j, key, v)
    {
        CHECK(strlen(key) < sizeof(out->key));
        kinds = json_is_string(v)    ? STRING_KINDS
                : json_is_array(v)   ? ARRAY_KINDS
                : json_is_integer(v) ? INT_KINDS
                                     : 0;
        kinds |= BIT(K_DELETE);
        for (k = 0; k < K_TRUNC_HALF; k++)
            if (kinds & BIT(k)) {
                CHECK(n < max);
                strcpy(out[n].key, key);
                out[n].hex = json_is_string(v) && is_hex_string(v);
                out[n++].kind = k;
            }
    }
    for (k = K_TRUNC_HALF; k < K_COUNT; k++) {
        CHECK(n < max);
        out[n].key[0] = 0;
        out[n].hex = 0;
        out[n++].kind = k;
    }
    json_decref(j);
    return n;
}

static char flip_char(char ch)
{
    static const char digits[] = "0123456789abcdef";
    const char *p = ch != 0 ? strchr(digits, ch) : NULL;

    return p != NULL ? digits[(p - digits) ^ 1] : (char)(ch ^ 1);
}

/* Edits a string; 0 if the edit does not apply to it. */
static int edit_string(const char *in, int kind, char **out)
{
    size_t n = strlen(in), i;
    char *s = malloc(n + 3);

    CHECK(s != NULL);
    memcpy(s, in, n + 1);
    switch (kind) {
    case K_FLIP_LAST:
    case K_FLIP_FIRST:
    case K_FLIP_SECOND:
        i = kind == K_FLIP_LAST ? n - 1 : kind == K_FLIP_FIRST ? 0 : 1;
        if (n < 2)
            goto no;
        s[i] = flip_char(s[i]);
        break;
    case K_UPPER:
        for (i = 0; i < n && (s[i] < 'a' || s[i] > 'f'); i++)
            ;
        if (i == n)
            goto no;
        s[i] = (char)toupper((unsigned char)s[i]);
        break;
    case K_SHORT:
    case K_ODD:
        if (n < 2)
            goto no;
        s[n - (kind == K_SHORT ? 2 : 1)] = 0;
        break;
    case K_LONG:
        memcpy(s + n, "00", 3);
        break;
    default:
        goto no;
    }
    *out = s;
    return 1;
no:
    free(s);
    return 0;
}

static int mut_string(json_t *parent, const char *key, size_t idx, int kind)
{
    json_t *v = key != NULL ? json_object_get(parent, key)
                            : json_array_get(parent, idx);
    char *s = NULL;

    if (!json_is_string(v) || !edit_string(json_string_value(v), kind, &s))
        return 0;
    v = json_string(s);
    free(s);
    CHECK(v != NULL);
    if (key != NULL)
        CHECK(json_object_set_new(parent, key, v) == 0);
    else
        CHECK(json_array_set_new(parent, idx, v) == 0);
    return 1;
}

static int mut_array(json_t *a, int kind)
{
    size_t n = json_array_size(a);
    json_t *x;

    if (n == 0)
        return 0;
    switch (kind) {
    case K_EL0:
        return mut_string(a, NULL, 0, K_FLIP_LAST);
    case K_ELN:
        return mut_string(a, NULL, n - 1, K_FLIP_LAST);
    case K_DROP_EL:
        CHECK(json_array_remove(a, n - 1) == 0);
        return 1;
    case K_ADD_EL:
        CHECK(json_array_append(a, json_array_get(a, 0)) == 0);
        return 1;
    case K_SWAP_EL:
        if (n < 2 || json_equal(json_array_get(a, 0), json_array_get(a, 1)))
            return 0;
        x = json_incref(json_array_get(a, 0));
        CHECK(json_array_set(a, 0, json_array_get(a, 1)) == 0);
        CHECK(json_array_set_new(a, 1, x) == 0);
        return 1;
    }
    return 0;
}

static buf whole_concat(const char *pre, const buf *msg, size_t skip,
                        size_t len, const char *post)
{
    size_t a = strlen(pre), c = strlen(post);
    buf r;

    r.b = malloc(a + len + c + 1);
    CHECK(r.b != NULL);
    memcpy(r.b, pre, a);
    memcpy(r.b + a, msg->b + skip, len);
    memcpy(r.b + a + len, post, c);
    r.len = a + len + c;
    return r;
}

static buf mut_whole(const buf *msg, int kind)
{
    json_t *j;
    char *big;
    buf r;

    switch (kind) {
    case K_TRUNC_HALF:
        return buf_dup(msg->b, msg->len / 2);
    case K_TRUNC_1:
        return buf_dup(msg->b, msg->len - 1);
    case K_EMPTY:
        return buf_dup(msg->b, 0);
    case K_TRAILING:
        return whole_concat("", msg, 0, msg->len, "{}");
    case K_DUP_KEY:
        return whole_concat("{\"v\":1,", msg, 1, msg->len - 1, "");
    case K_ARRAY:
        return whole_concat("[", msg, 0, msg->len, "]");
    case K_EXTRA_KEY:
        return with_json(msg, "x", json_string("00"));
    }
    CHECK(kind == K_TOO_BIG);
    big = malloc(HK_MSG_MAX + 1);
    CHECK(big != NULL);
    memset(big, '0', HK_MSG_MAX);
    big[HK_MSG_MAX] = 0;
    j = jload(msg);
    CHECK(json_object_set_new(j, "x", json_string(big)) == 0);
    r = jdump(j);
    CHECK(r.len > HK_MSG_MAX);
    json_decref(j);
    free(big);
    return r;
}

/* Applies m to msg; 0 if it does not apply. */
static int mut_apply(const buf *msg, const mut *m, buf *out)
{
    json_t *j, *v;
    json_int_t i;
    char num[32];
    int ok = 1;

    if (m->kind >= K_TRUNC_HALF) {
        *out = mut_whole(msg, m->kind);
        return 1;
    }
    j = jload(msg);
    v = json_object_get(j, m->key);
    CHECK(v != NULL);
    i = json_is_integer(v) ? json_integer_value(v) : 0;
    if (m->kind < K_NOT_STRING)
        ok = mut_string(j, m->key, 0, m->kind);
    else if (m->kind == K_NOT_STRING)
        CHECK(json_object_set_new(j, m->key, json_integer(0)) == 0);
    else if (m->kind < K_NOT_ARRAY)
        ok = mut_array(v, m->kind);
    else if (m->kind == K_NOT_ARRAY)
        CHECK(json_object_set_new(j, m->key, json_string("00")) == 0);
    else if (m->kind == K_NOT_INT) {
        snprintf(num, sizeof(num), "%lld", (long long)i);
        CHECK(json_object_set_new(j, m->key, json_string(num)) == 0);
    } else if (m->kind != K_DELETE) {
        i += m->kind == K_PLUS1 ? 1 : m->kind == K_MINUS1 ? -1 : 1LL << 32;
        CHECK(json_object_set_new(j, m->key, json_integer(i)) == 0);
    } else {
        CHECK(json_object_del(j, m->key) == 0);
    }
    if (ok)
        *out = jdump(j);
    json_decref(j);
    return ok;
}

/* The error a mutant must give when it is certain; HK_OK: any error. */
static hk_err mut_expect(const mut *m)
{
    unsigned hexonly = BIT(K_UPPER) | BIT(K_SHORT) | BIT(K_LONG) | BIT(K_ODD);
    unsigned structural = BIT(K_NOT_STRING) | BIT(K_DROP_EL) | BIT(K_ADD_EL) |
                          BIT(K_NOT_ARRAY) | BIT(K_NOT_INT) | BIT(K_DELETE) |
                          BIT(K_TRUNC_HALF) | BIT(K_TRUNC_1) | BIT(K_EMPTY) |
                          BIT(K_EXTRA_KEY) | BIT(K_TRAILING) | BIT(K_DUP_KEY) |
                          BIT(K_ARRAY);

    if (m->kind == K_TOO_BIG)
        return HK_ERR_TOO_BIG;
    if (strcmp(m->key, "v") == 0 && m->kind != K_NOT_INT && m->kind != K_DELETE)
        return HK_ERR_VERSION;
    if (strcmp(m->key, "t") == 0 && m->kind < K_NOT_STRING)
        return HK_ERR_MSG_TYPE;
    if ((strcmp(m->key, "sid") == 0 || strcmp(m->key, "kid") == 0) &&
        (BIT(m->kind) & FLIPS))
        return HK_ERR_BINDING;
    if (strcmp(m->key, "pbits") == 0 &&
        (m->kind == K_PLUS1 || m->kind == K_MINUS1))
        return HK_ERR_PAILLIER;
    if ((strcmp(m->key, "epoch") == 0 && m->kind < K_BIG) ||
        (strcmp(m->key, "fp") == 0 && (BIT(m->kind) & FLIPS)))
        return HK_ERR_EPOCH;
    if (strcmp(m->key, "setup") == 0 && (BIT(m->kind) & FLIPS))
        return HK_ERR_PARAMS;
    if (m->hex && (BIT(m->kind) & hexonly))
        return HK_ERR_DECODE; /* strict lowercase hex of a fixed width */
    return BIT(m->kind) & structural ? HK_ERR_DECODE : HK_OK;
}

/* ---- one delivery step under attack ------------------------------------- */

/* Mutants this receiver cannot refuse now (or must not see): they go to
 * the step's divert function instead. */
typedef struct {
    const char *key;
    unsigned kinds;
} opaque;

/* m: the mutation, NULL for the parallel session's message with this
 * session's sid; bad: the mutant of this session's message. */
typedef void (*divert_fn)(void *ctx, const mut *m, const buf *bad);

typedef struct {
    const char *name;
    recv_fn fn;
    void *sm;
    int type;
    const unsigned char *sid;
    const opaque *op;
    size_t nop;
    divert_fn divert;
    void *dctx;
    int divert_foreign;
    hk_err foreign_code; /* when not diverted; HK_OK: any error */
    const buf *foreign;  /* the same message from a parallel session */
    const buf *earlier;  /* this session's earlier messages */
    size_t nearlier;
} step;

static int is_opaque(const step *st, const mut *m)
{
    size_t i;

    for (i = 0; i < st->nop; i++)
        if (strcmp(st->op[i].key, m->key) == 0 &&
            (st->op[i].kinds & BIT(m->kind)))
            return 1;
    return 0;
}

static void attack_mutants(const step *st, const buf *genuine)
{
    static mut list[512];
    char what[128];
    size_t n = mut_list(genuine, list, 512), i;
    buf bad;

    for (i = 0; i < n; i++) {
        if (!mut_apply(genuine, &list[i], &bad))
            continue;
        snprintf(what, sizeof(what), "%s: %.23s %s", st->name, list[i].key,
                 kind_names[list[i].kind]);
        if (is_opaque(st, &list[i])) {
            st->divert(st->dctx, &list[i], &bad);
            g_count.diverted++;
        } else {
            refuse_with(st->fn, st->sm, &bad, mut_expect(&list[i]), what);
        }
        buf_free(&bad);
    }
}

/* Its type set to every other type; every other message type from the
 * pool, this session's earlier messages. */
static void attack_order(const step *st, const buf *genuine)
{
    char what[128];
    buf bad;
    size_t i;

    for (i = 0; i < NTYPES; i++) {
        if ((int)i == st->type)
            continue;
        snprintf(what, sizeof(what), "%s: type %s", st->name, type_names[i]);
        bad = with_json(genuine, "t", json_string(type_names[i]));
        refuse_with(st->fn, st->sm, &bad, HK_ERR_MSG_TYPE, what);
        buf_free(&bad);
        snprintf(what, sizeof(what), "%s: out of order %s", st->name,
                 type_names[i]);
        bad = with_sid(&g_other.m[i], st->sid);
        refuse_with(st->fn, st->sm, &bad, HK_ERR_MSG_TYPE, what);
        buf_free(&bad);
    }
    for (i = 0; i < st->nearlier; i++) {
        snprintf(what, sizeof(what), "%s: replay of message %zu", st->name,
                 i + 1);
        refuse_with(st->fn, st->sm, &st->earlier[i], HK_ERR_MSG_TYPE, what);
    }
}

static void attack_foreign(const step *st)
{
    char what[128];
    buf bad;

    snprintf(what, sizeof(what), "%s: other session", st->name);
    refuse_with(st->fn, st->sm, st->foreign, HK_ERR_BINDING, what);
    bad = with_sid(st->foreign, st->sid);
    if (st->divert_foreign) {
        st->divert(st->dctx, NULL, &bad);
        g_count.diverted++;
    } else {
        snprintf(what, sizeof(what), "%s: other session, sid rewritten",
                 st->name);
        refuse_with(st->fn, st->sm, &bad, st->foreign_code, what);
    }
    buf_free(&bad);
}

static void attack(const step *st, const buf *genuine)
{
    unsigned long r0 = g_count.refused, d0 = g_count.diverted;

    attack_mutants(st, genuine);
    attack_order(st, genuine);
    attack_foreign(st);
    printf("  %-22s %4lu refused", st->name, g_count.refused - r0);
    if (g_count.diverted > d0)
        printf(", %lu checked in a fresh session", g_count.diverted - d0);
    printf("\n");
}

/* A step whose mutants all go to the receiver; the parallel session's
 * message with this sid must be refused with foreign_code (HK_OK: any
 * error). earlier: this session's messages so far. */
static step mkstep(const char *name, recv_fn fn, void *sm, int type,
                   const unsigned char *sid, const transcript *par,
                   const buf *earlier, hk_err foreign_code)
{
    int first = type >= RF1 ? RF1 : type >= SG1 ? SG1 : KG1;
    step st;

    memset(&st, 0, sizeof(st));
    st.name = name;
    st.fn = fn;
    st.sm = sm;
    st.type = type;
    st.sid = sid;
    st.foreign = &par->m[type];
    st.foreign_code = foreign_code;
    st.earlier = earlier;
    st.nearlier = (size_t)(type - first);
    return st;
}

/* The opaque mutants, and the parallel session's message with this sid,
 * go to fn instead. */
static void divert(step *st, const opaque *op, size_t nop, divert_fn fn,
                   void *ctx)
{
    st->op = op;
    st->nop = nop;
    st->divert = fn;
    st->dctx = ctx;
    st->divert_foreign = 1;
}

/* ---- recorded parallel sessions ----------------------------------------- */

static void record_keygen(hk_curve_id curve, const unsigned char *kid,
                          transcript *tr, hk_share **s1, hk_share **s2)
{
    const hk_rped_secret *sec = hk_test_rped_secret();
    unsigned char sid[HK_ID_LEN], dummy[HK_ID_LEN], *out = NULL;
    hk_keygen *a = NULL, *b = NULL;
    buf end;
    size_t len;
    int i;

    hk_drive_ids(sid, dummy);
    CHECK_OK(hk_keygen_p1_new(curve, sid, kid, PBITS, &sec->pub, &a));
    CHECK_OK(hk_keygen_p2_new(curve, sid, kid, PBITS, sec, &b));
    CHECK_OK(hk_keygen_start(a, &out, &len));
    tr->m[KG1] = buf_take(out, len);
    for (i = KG1; i < KG4; i++)
        tr->m[i + 1] = deliver(kg_recv, i % 2 ? (void *)a : (void *)b,
                               &tr->m[i], type_names[i]);
    end = deliver(kg_recv, a, &tr->m[KG4], "keygen.4");
    CHECK(end.b == NULL);
    CHECK_OK(hk_keygen_confirm(a, &out, &len));
    tr->m[KG5] = buf_take(out, len);
    end = deliver(kg_recv, b, &tr->m[KG5], "keygen.5");
    CHECK(end.b == NULL && hk_keygen_confirmed(b));
    if (s1 != NULL) {
        CHECK_OK(hk_keygen_take_share(a, s1));
        CHECK_OK(hk_keygen_take_share(b, s2));
    }
    hk_keygen_free(a);
    hk_keygen_free(b);
}

static void record_sign(const hk_share *s1, const hk_share *s2, transcript *tr)
{
    unsigned char sid[HK_ID_LEN], kid[HK_ID_LEN], dig[32], *out = NULL;
    hk_sign *a = NULL, *b = NULL;
    buf end;
    size_t len;
    int i;

    hk_drive_ids(sid, kid);
    CHECK(RAND_bytes(dig, sizeof(dig)) == 1);
    CHECK_OK(hk_sign_p1_new(s1, sid, dig, sizeof(dig), &a));
    CHECK_OK(hk_sign_p2_new(s2, sid, &b));
    CHECK_OK(hk_sign_start(a, &out, &len));
    tr->m[SG1] = buf_take(out, len);
    for (i = SG1; i < SG5; i++)
        tr->m[i + 1] = deliver(sg_recv, (i - SG1) % 2 ? (void *)a : (void *)b,
                               &tr->m[i], type_names[i]);
    end = deliver(sg_recv, b, &tr->m[SG5], "sign.5");
    CHECK(end.b == NULL);
    hk_sign_free(a);
    hk_sign_free(b);
}

static void record_refresh(const hk_share *s1, const hk_share *s2,
                           transcript *tr)
{
    const hk_rped_secret *sec = hk_test_rped_secret();
    unsigned char sid[HK_ID_LEN], kid[HK_ID_LEN], *out = NULL;
    hk_refresh *a = NULL, *b = NULL;
    buf end;
    size_t len;
    int i;

    hk_drive_ids(sid, kid);
    CHECK_OK(hk_refresh_p1_new(s1, sid, PBITS, &sec->pub, &a));
    CHECK_OK(hk_refresh_p2_new(s2, sid, PBITS, sec, &b));
    CHECK_OK(hk_refresh_start(a, &out, &len));
    tr->m[RF1] = buf_take(out, len);
    for (i = RF1; i < RF4; i++)
        tr->m[i + 1] = deliver(rf_recv, (i - RF1) % 2 ? (void *)a : (void *)b,
                               &tr->m[i], type_names[i]);
    end = deliver(rf_recv, a, &tr->m[RF4], "refresh.4");
    CHECK(end.b == NULL);
    CHECK_OK(hk_refresh_confirm(a, &out, &len));
    tr->m[RF5] = buf_take(out, len);
    end = deliver(rf_recv, b, &tr->m[RF5], "refresh.5");
    CHECK(end.b == NULL && hk_refresh_confirmed(b));
    hk_refresh_free(a);
    hk_refresh_free(b);
}

/* ---- a malicious P1's Paillier package ---------------------------------- */

static struct {
    BIGNUM *n, *m; /* n = p^2 q, m = (p - 1)(q - 1) */
} g_nsf;

static void nsf_init(void)
{
    BIGNUM *p = BN_new(), *q = BN_new();
    BN_CTX *ctx = BN_CTX_new();

    g_nsf.n = BN_new();
    g_nsf.m = BN_new();
    CHECK(p && q && ctx && g_nsf.n && g_nsf.m);
    hk_cheat_nonsquarefree(PBITS, g_nsf.n, p, q);
    CHECK(BN_sub_word(p, 1) && BN_sub_word(q, 1) && BN_mul(g_nsf.m, p, q, ctx));
    BN_free(p);
    BN_free(q);
    BN_CTX_free(ctx);
}

/* msg with the package's keys (N, ckey, nth, ls*) taken from pkg. */
static buf with_pkg(const buf *msg, const hk_ppkg *pkg)
{
    unsigned char *enc = NULL;
    size_t len = 0;
    hk_msg *m = NULL;
    json_t *pj, *j, *v;
    const char *key;
    buf r, tmp;

    CHECK_OK(hk_msg_new("pkg", NULL, NULL, &m));
    CHECK_OK(hk_ppkg_put(m, pkg));
    CHECK_OK(hk_msg_encode(m, &enc, &len));
    hk_msg_free(m);
    tmp = buf_take(enc, len);
    pj = jload(&tmp);
    j = jload(msg);
    json_object_foreach(pj, key, v)
    {
        if (strcmp(key, "v") != 0 && strcmp(key, "t") != 0) {
            CHECK(json_object_get(j, key) != NULL);
            CHECK(json_object_set(j, key, v) == 0);
        }
    }
    r = jdump(j);
    json_decref(j);
    json_decref(pj);
    buf_free(&tmp);
    return r;
}

/* A package for w with statement X, in place of the genuine one. */
static void refuse_pkg(const step *st, const buf *genuine, hk_curve *c,
                       const hk_binding *b, const hk_scalar *w,
                       const hk_point *X, const char *what)
{
    hk_ppkg pkg;
    buf bad;

    CHECK_OK(hk_ppkg_make(c, b, PBITS, &hk_test_rped_secret()->pub, w, X, NULL,
                          &pkg));
    bad = with_pkg(genuine, &pkg);
    refuse_with(st->fn, st->sm, &bad, HK_ERR_PROOF, what);
    buf_free(&bad);
    hk_ppkg_free(&pkg);
}

/* Bad moduli in place of N: too short, a small factor, p^2 q (with the
 * genuine modulus proof, and with a cheating prover's). */
static void refuse_moduli(const step *st, const buf *genuine,
                          const hk_binding *b)
{
    hk_nthroot_proof pf;
    BIGNUM *n = BN_new();
    buf bad, bad2;

    CHECK(n != NULL);
    CHECK(BN_rand(n, PBITS - 8, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ODD));
    bad = with_bn(genuine, "N", n, NB);
    refuse_with(st->fn, st->sm, &bad, HK_ERR_PAILLIER, "2040-bit N");
    buf_free(&bad);
    hk_cheat_small_factor(PBITS, 3, n);
    bad = with_bn(genuine, "N", n, NB);
    refuse_with(st->fn, st->sm, &bad, HK_ERR_PAILLIER, "N = 3 * x");
    buf_free(&bad);
    bad = with_bn(genuine, "N", g_nsf.n, NB);
    refuse_with(st->fn, st->sm, &bad, HK_ERR_PROOF, "N = p^2 q");
    hk_cheat_nthroot(g_nsf.n, g_nsf.m, b, HK_ROLE_P1, &pf);
    bad2 = with_bn_array(&bad, "nth", pf.sigma, HK_NTH_ROOTS, NB);
    refuse_with(st->fn, st->sm, &bad2, HK_ERR_PROOF,
                "N = p^2 q, cheating modulus proof");
    hk_nthroot_proof_free(&pf);
    buf_free(&bad);
    buf_free(&bad2);
    BN_free(n);
}

/* keygen.3 / refresh.3 from a malicious P1. x: P1's true new secret when
 * the test knows it (refresh), else NULL (keygen: a random one is used);
 * X: the statement P2 checks. */
static void attack_pkg(const step *st, const buf *genuine, hk_curve_id curve,
                       const unsigned char *kid, const hk_scalar *x,
                       const hk_point *X)
{
    unsigned long r0 = g_count.refused;
    hk_curve *c = NULL;
    hk_binding b;
    hk_scalar w, one;
    hk_point W;

    CHECK_OK(hk_curve_new(curve, &c));
    hk_binding_set(&b, curve, st->sid, kid);
    memset(&one, 0, sizeof(one));
    one.b[HK_SCALAR_LEN - 1] = 1;
    if (x != NULL)
        CHECK_OK(hk_scalar_add(c, x, &one, &w));
    else
        CHECK_OK(hk_scalar_random(c, &w));
    CHECK_OK(hk_point_mul_gen(c, &w, &W));
    CHECK(!hk_point_eq(&W, X));
    refuse_pkg(st, genuine, c, &b, &w, X, "package for a wrong x1");
    refuse_pkg(st, genuine, c, &b, &w, &W, "package proving another statement");
    refuse_moduli(st, genuine, &b);
    printf("  %-22s %4lu refused (malicious P1 package and moduli)\n", st->name,
           g_count.refused - r0);
    hk_curve_free(c);
}

/* ---- keygen ------------------------------------------------------------- */

/* keygen.1 values P2 cannot judge: a fresh P2 takes them, then refuses
 * the opening. */
typedef struct {
    hk_curve_id curve;
    const unsigned char *sid, *kid;
    hk_keygen *p2[8];
    int foreign[8];
    int n;
} kg_defer;

static void kg_divert(void *ctx, const mut *m, const buf *bad)
{
    kg_defer *d = ctx;
    buf reply;

    CHECK(d->n < 8);
    CHECK_OK(hk_keygen_p2_new(d->curve, d->sid, d->kid, PBITS,
                              hk_test_rped_secret(), &d->p2[d->n]));
    reply = deliver(kg_recv, d->p2[d->n], bad, "keygen.1 (diverted)");
    CHECK(reply.b != NULL);
    buf_free(&reply);
    d->foreign[d->n++] = m == NULL;
}

static void kg_defer_check(kg_defer *d, const buf *opening,
                           const buf *foreign_opening)
{
    buf rewritten = with_sid(foreign_opening, d->sid);
    int i;

    for (i = 0; i < d->n; i++) {
        refuse_with(kg_recv, d->p2[i], d->foreign[i] ? &rewritten : opening,
                    HK_ERR_COMMIT, "keygen.3 after a changed keygen.1");
        hk_keygen_free(d->p2[i]);
    }
    buf_free(&rewritten);
}

/* API misuse before and around the first message. */
static void kg_misuse(hk_keygen *p1, hk_keygen *p2, const unsigned char *sid)
{
    unsigned char *out = NULL;
    hk_share *s = NULL;
    size_t len = 0;
    buf m;

    CHECK_ERR(hk_keygen_start(p2, &out, &len), HK_ERR_STATE);
    CHECK_ERR(hk_keygen_take_share(p1, &s), HK_ERR_STATE);
    CHECK_ERR(hk_keygen_take_share(p2, &s), HK_ERR_STATE);
    m = with_sid(&g_other.m[KG2], sid);
    refuse_with(kg_recv, p1, &m, HK_ERR_STATE, "keygen.2 before start");
    buf_free(&m);
}

static void test_keygen(hk_curve_id curve, const unsigned char *kid,
                        const transcript *par, hk_share **o1, hk_share **o2)
{
    static const opaque com = {"com", FLIPS};
    const hk_rped_secret *sec = hk_test_rped_secret();
    unsigned char sid[HK_ID_LEN], dummy[HK_ID_LEN], *out = NULL;
    unsigned char dig[32] = {7}, sig[HK_SIG_LEN];
    hk_keygen *p1 = NULL, *p2 = NULL;
    buf m[6];
    hk_point Q1;
    hk_drive_stats ds;
    kg_defer d;
    step st;
    size_t len;
    int i;

    printf("keygen on %s\n", hk_curve_name(curve));
    hk_drive_ids(sid, dummy);
    CHECK_OK(hk_keygen_p1_new(curve, sid, kid, PBITS, &sec->pub, &p1));
    CHECK_OK(hk_keygen_p2_new(curve, sid, kid, PBITS, sec, &p2));
    kg_misuse(p1, p2, sid);
    CHECK_OK(hk_keygen_start(p1, &out, &len));
    m[0] = buf_take(out, len);
    CHECK_ERR(hk_keygen_start(p1, &out, &len), HK_ERR_STATE);

    memset(&d, 0, sizeof(d));
    d.curve = curve;
    d.sid = sid;
    d.kid = kid;
    st = mkstep("keygen.1 -> P2", kg_recv, p2, KG1, sid, par, m, HK_OK);
    divert(&st, &com, 1, kg_divert, &d);
    attack(&st, &m[0]);
    m[1] = deliver(kg_recv, p2, &m[0], "keygen.1");

    st = mkstep("keygen.2 -> P1", kg_recv, p1, KG2, sid, par, m, HK_ERR_PROOF);
    attack(&st, &m[1]);
    m[2] = deliver(kg_recv, p1, &m[1], "keygen.2");

    st = mkstep("keygen.3 -> P2", kg_recv, p2, KG3, sid, par, m, HK_ERR_COMMIT);
    attack(&st, &m[2]);
    field_point(curve, &m[2], "Q1", &Q1);
    attack_pkg(&st, &m[2], curve, kid, NULL, &Q1);
    kg_defer_check(&d, &m[2], &par->m[KG3]);
    m[3] = deliver(kg_recv, p2, &m[2], "keygen.3");

    st = mkstep("keygen.4 -> P1", kg_recv, p1, KG4, sid, par, m,
                HK_ERR_KEY_MISMATCH);
    attack(&st, &m[3]);
    m[4] = deliver(kg_recv, p1, &m[3], "keygen.4");
    CHECK(m[4].b == NULL);
    CHECK(hk_keygen_done(p1) && hk_keygen_done(p2));
    CHECK(!hk_keygen_confirmed(p1) && !hk_keygen_confirmed(p2));
    CHECK_ERR(hk_keygen_confirm(p2, &out, &len), HK_ERR_STATE);
    /* P1 stores its share, then proves it holds x1 (keygen.5). */
    CHECK_OK(hk_keygen_confirm(p1, &out, &len));
    m[4] = buf_take(out, len);
    CHECK_ERR(hk_keygen_confirm(p1, &out, &len), HK_ERR_STATE);
    st = mkstep("keygen.5 -> P2", kg_recv, p2, KG5, sid, par, m,
                HK_ERR_KEY_MISMATCH);
    attack(&st, &m[4]);
    CHECK(!hk_keygen_confirmed(p2));
    m[5] = deliver(kg_recv, p2, &m[4], "keygen.5");
    CHECK(m[5].b == NULL && hk_keygen_confirmed(p2));
    /* Finished machines take nothing more. */
    refuse_with(kg_recv, p1, &m[3], HK_ERR_STATE, "keygen.4 again");
    refuse_with(kg_recv, p2, &m[2], HK_ERR_STATE, "keygen.3 again");
    refuse_with(kg_recv, p2, &m[4], HK_ERR_STATE, "keygen.5 again");

    CHECK_OK(hk_keygen_take_share(p1, o1));
    CHECK_OK(hk_keygen_take_share(p2, o2));
    CHECK(hk_point_eq(&(*o1)->Q, &(*o2)->Q));
    CHECK_OK(hk_drive_sign(*o1, *o2, dig, sizeof(dig), 0, sig, &ds));
    CHECK(hk_test_verify_evp(curve, &(*o1)->Q, dig, sizeof(dig), sig));
    hk_keygen_free(p1);
    hk_keygen_free(p2);
    for (i = 0; i < 5; i++)
        buf_free(&m[i]);
}

/* ---- sign --------------------------------------------------------------- */

/* sign.1 values P2 cannot judge (commitment, digest): a fresh P2 takes
 * them, then refuses the opening. */
typedef struct {
    const hk_share *s2;
    const unsigned char *sid;
    hk_sign *p2[16];
    int foreign[16];
    int n;
} sg_defer;

static void sg_divert(void *ctx, const mut *m, const buf *bad)
{
    sg_defer *d = ctx;
    buf reply;

    CHECK(d->n < 16);
    CHECK_OK(hk_sign_p2_new(d->s2, d->sid, &d->p2[d->n]));
    reply = deliver(sg_recv, d->p2[d->n], bad, "sign.1 (diverted)");
    CHECK(reply.b != NULL);
    buf_free(&reply);
    d->foreign[d->n++] = m == NULL;
}

static void sg_defer_check(sg_defer *d, const buf *opening,
                           const buf *foreign_opening)
{
    buf rewritten = with_sid(foreign_opening, d->sid);
    int i;

    for (i = 0; i < d->n; i++) {
        refuse_with(sg_recv, d->p2[i], d->foreign[i] ? &rewritten : opening,
                    HK_ERR_COMMIT, "sign.3 after a changed sign.1");
        hk_sign_free(d->p2[i]);
    }
    buf_free(&rewritten);
}

/* A session run up to P1 waiting for sign.4. */
typedef struct {
    unsigned char sid[HK_ID_LEN];
    hk_sign *p1, *p2;
    buf m4;
} sign4;

static void sign_to_4(const hk_share *s1, const hk_share *s2,
                      const unsigned char *dig, size_t dlen, sign4 *t)
{
    unsigned char kid[HK_ID_LEN], *out = NULL;
    size_t len;
    buf a, b;

    hk_drive_ids(t->sid, kid);
    CHECK_OK(hk_sign_p1_new(s1, t->sid, dig, dlen, &t->p1));
    CHECK_OK(hk_sign_p2_new(s2, t->sid, &t->p2));
    CHECK_OK(hk_sign_start(t->p1, &out, &len));
    a = buf_take(out, len);
    b = deliver(sg_recv, t->p2, &a, "sign.1");
    buf_free(&a);
    a = deliver(sg_recv, t->p1, &b, "sign.2");
    buf_free(&b);
    t->m4 = deliver(sg_recv, t->p2, &a, "sign.3");
    buf_free(&a);
}

static void sign4_free(sign4 *t)
{
    hk_sign_free(t->p1);
    hk_sign_free(t->p2);
    buf_free(&t->m4);
}

typedef struct {
    const hk_share *s1, *s2;
    const unsigned char *dig;
    const buf *foreign; /* sign.4 of a parallel session */
} s4_ctx;

/* 1 if the message's c3 is a well-formed ciphertext (P1 will decrypt). */
static int c3_wellformed(const hk_share *s1, const buf *m)
{
    BIGNUM *c3 = field_bn(m, "c3");
    json_t *j = jload(m), *v = json_object_get(j, "c3");
    int ok = c3 != NULL && json_string_length(v) == 4 * NB &&
             hk_paillier_ct_check_own(s1->sk, c3) == HK_OK;

    json_decref(j);
    BN_free(c3);
    return ok;
}

/* The abort: a fresh session is refused with HK_ERR_SIG_ABORT and is dead
 * afterwards, even for its genuine sign.4. */
static void s4_abort(sign4 *t, const buf *bad, const char *what)
{
    unsigned char sig[HK_SIG_LEN];

    refuse_with(sg_recv, t->p1, bad, HK_ERR_SIG_ABORT, what);
    refuse_with(sg_recv, t->p1, &t->m4, HK_ERR_STATE, "sign.4 after abort");
    CHECK_ERR(hk_sign_signature(t->p1, sig), HK_ERR_STATE);
    CHECK(!hk_sign_done(t->p1));
    g_count.fatal++;
}

/* c3 value mutants (and the parallel session's sign.4 with this sid) in a
 * fresh session each: the abort if well-formed, else refused and the
 * session still signs. */
static void s4_divert(void *ctx, const mut *m, const buf *unused)
{
    s4_ctx *sc = ctx;
    sign4 t;
    buf bad, reply;

    (void)unused;
    sign_to_4(sc->s1, sc->s2, sc->dig, 32, &t);
    if (m == NULL)
        bad = with_sid(sc->foreign, t.sid);
    else
        CHECK(mut_apply(&t.m4, m, &bad));
    if (c3_wellformed(sc->s1, &bad)) {
        s4_abort(&t, &bad, m != NULL ? kind_names[m->kind] : "other c3");
    } else {
        refuse(sg_recv, t.p1, &bad, "sign.4 malformed c3");
        reply = deliver(sg_recv, t.p1, &t.m4, "sign.4 after malformed");
        buf_free(&reply);
    }
    buf_free(&bad);
    sign4_free(&t);
}

/* A malicious P2's c3 in a fresh session: c3 (+) Enc(1), Enc(0; 1),
 * c3 (+) c3, and c3 (+) Enc(q * 2^546): the same value mod q, so a full
 * decryption signs with it, but out of the honest bound 2^801 that P1's
 * decryption mod p checks (mpc/sign.c), so it is the abort. Then c3 = p
 * and c3 * q: not units, but only a holder of a factor of N can make
 * them, so P1 does not test for them (hk_paillier_ct_check_own): its
 * decryption gives no valid signature, the abort. */
static void s4_wrong_c3(const s4_ctx *sc)
{
    const hk_paillier_pk *pk = sc->s1->pk;
    BIGNUM *c3, *one = BN_new(), *e1 = BN_new(), *big = BN_new(),
                *ebig = BN_new();
    BN_CTX *ctx = BN_CTX_new();
    hk_curve *c = NULL;
    sign4 t;
    buf bad;
    int i;

    CHECK(one != NULL && e1 != NULL && big != NULL && ebig != NULL &&
          ctx != NULL && BN_one(one));
    CHECK_OK(hk_paillier_enc(pk, one, NULL, e1));
    CHECK_OK(hk_curve_new(sc->s1->curve, &c));
    CHECK(BN_lshift(big, hk_curve_order(c), 546));
    CHECK_OK(hk_paillier_enc(pk, big, NULL, ebig));
    hk_curve_free(c);
    for (i = 0; i < 6; i++) {
        sign_to_4(sc->s1, sc->s2, sc->dig, 32, &t);
        c3 = field_bn(&t.m4, "c3");
        CHECK(c3 != NULL);
        if (i == 0)
            CHECK_OK(hk_paillier_add(pk, c3, e1, c3));
        else if (i == 1)
            CHECK(BN_one(c3));
        else if (i == 2)
            CHECK_OK(hk_paillier_add(pk, c3, c3, c3));
        else if (i == 3)
            CHECK_OK(hk_paillier_add(pk, c3, ebig, c3));
        else if (i == 4)
            CHECK(BN_copy(c3, hk_paillier_sk_p(sc->s1->sk)));
        else
            CHECK(BN_mod_mul(c3, c3, hk_paillier_sk_q(sc->s1->sk),
                             hk_paillier_n2(pk), ctx));
        bad = with_bn(&t.m4, "c3", c3, 2 * NB);
        s4_abort(&t, &bad,
                 i == 0   ? "c3 (+) Enc(1)"
                 : i == 1 ? "c3 = 1"
                 : i == 2 ? "c3 (+) c3"
                 : i == 3 ? "c3 (+) Enc(q 2^546): out of the bound"
                 : i == 4 ? "c3 = p"
                          : "c3 * q");
        buf_free(&bad);
        BN_free(c3);
        sign4_free(&t);
    }
    BN_free(one);
    BN_free(e1);
    BN_free(big);
    BN_free(ebig);
    BN_CTX_free(ctx);
}

/* c3 out of range or a multiple of N: refused, the session is still
 * usable. */
static void s4_malformed_c3(recv_fn fn, void *p1, const hk_share *s1,
                            const buf *genuine)
{
    const hk_paillier_pk *pk = s1->pk;
    BIGNUM *v = BN_new(), *c3 = field_bn(genuine, "c3");
    BN_CTX *ctx = BN_CTX_new();
    unsigned char ff[2 * NB];
    buf bad;
    int i;

    CHECK(v != NULL && c3 != NULL && ctx != NULL);
    memset(ff, 0xff, sizeof(ff));
    for (i = 0; i < 6; i++) {
        switch (i) {
        case 0:
            BN_zero(v);
            break;
        case 1:
            CHECK(BN_copy(v, hk_paillier_n2(pk)));
            break;
        case 2:
            CHECK(BN_copy(v, hk_paillier_n2(pk)) && BN_add_word(v, 1));
            break;
        case 3:
            CHECK(BN_bin2bn(ff, sizeof(ff), v));
            break;
        case 4:
            CHECK(BN_copy(v, hk_paillier_n(pk)));
            break;
        default: /* c3 * N */
            CHECK(
                BN_mod_mul(v, c3, hk_paillier_n(pk), hk_paillier_n2(pk), ctx));
        }
        bad = with_bn(genuine, "c3", v, 2 * NB);
        refuse_with(fn, p1, &bad, HK_ERR_PAILLIER,
                    "sign.4 c3 out of range or a multiple of N");
        buf_free(&bad);
    }
    BN_free(v);
    BN_free(c3);
    BN_CTX_free(ctx);
}

static void sg_misuse(hk_sign *p1, hk_sign *p2, const unsigned char *sid)
{
    unsigned char *out = NULL, sig[HK_SIG_LEN];
    size_t len = 0;
    buf m;

    CHECK_ERR(hk_sign_start(p2, &out, &len), HK_ERR_STATE);
    CHECK_ERR(hk_sign_signature(p1, sig), HK_ERR_STATE);
    m = with_sid(&g_other.m[SG2], sid);
    refuse_with(sg_recv, p1, &m, HK_ERR_STATE, "sign.2 before start");
    buf_free(&m);
}

static void test_sign(const hk_share *s1, const hk_share *s2,
                      const transcript *par)
{
    static const opaque op1[] = {{"com", FLIPS},
                                 {"dig", FLIPS | BIT(K_SHORT) | BIT(K_LONG)}};
    static const opaque op4[] = {{"c3", FLIPS}};
    unsigned char sid[HK_ID_LEN], kid[HK_ID_LEN], dig[32], *out = NULL;
    unsigned char sig[HK_SIG_LEN], sig2[HK_SIG_LEN];
    hk_sign *p1 = NULL, *p2 = NULL;
    unsigned long f0;
    sg_defer d;
    s4_ctx sc;
    step st;
    buf m[6];
    size_t len;
    int i;

    printf("sign on %s\n", hk_curve_name(s1->curve));
    hk_drive_ids(sid, kid);
    CHECK(RAND_bytes(dig, sizeof(dig)) == 1);
    CHECK_OK(hk_sign_p1_new(s1, sid, dig, sizeof(dig), &p1));
    CHECK_OK(hk_sign_p2_new(s2, sid, &p2));
    sg_misuse(p1, p2, sid);
    CHECK_OK(hk_sign_start(p1, &out, &len));
    m[0] = buf_take(out, len);

    memset(&d, 0, sizeof(d));
    d.s2 = s2;
    d.sid = sid;
    st = mkstep("sign.1 -> P2", sg_recv, p2, SG1, sid, par, m, HK_OK);
    divert(&st, op1, 2, sg_divert, &d);
    attack(&st, &m[0]);
    m[1] = deliver(sg_recv, p2, &m[0], "sign.1");

    st = mkstep("sign.2 -> P1", sg_recv, p1, SG2, sid, par, m, HK_ERR_PROOF);
    attack(&st, &m[1]);
    m[2] = deliver(sg_recv, p1, &m[1], "sign.2");

    st = mkstep("sign.3 -> P2", sg_recv, p2, SG3, sid, par, m, HK_ERR_COMMIT);
    attack(&st, &m[2]);
    sg_defer_check(&d, &m[2], &par->m[SG3]);
    m[3] = deliver(sg_recv, p2, &m[2], "sign.3");

    sc = (s4_ctx){s1, s2, dig, &par->m[SG4]};
    f0 = g_count.fatal;
    st = mkstep("sign.4 -> P1", sg_recv, p1, SG4, sid, par, m, HK_OK);
    divert(&st, op4, 1, s4_divert, &sc);
    attack(&st, &m[3]);
    s4_malformed_c3(sg_recv, p1, s1, &m[3]);
    s4_wrong_c3(&sc);
    printf("  %-22s %4lu aborts (HK_ERR_SIG_ABORT, then dead)\n",
           "sign.4 -> P1", g_count.fatal - f0);
    m[4] = deliver(sg_recv, p1, &m[3], "sign.4");
    CHECK(m[4].b != NULL && hk_sign_done(p1));

    st =
        mkstep("sign.5 -> P2", sg_recv, p2, SG5, sid, par, m, HK_ERR_SIG_ABORT);
    attack(&st, &m[4]);
    m[5] = deliver(sg_recv, p2, &m[4], "sign.5");
    CHECK(m[5].b == NULL);
    refuse_with(sg_recv, p1, &m[3], HK_ERR_STATE, "sign.4 again");
    refuse_with(sg_recv, p2, &m[4], HK_ERR_STATE, "sign.5 again");
    CHECK_OK(hk_sign_signature(p1, sig));
    CHECK_OK(hk_sign_signature(p2, sig2));
    CHECK(memcmp(sig, sig2, HK_SIG_LEN) == 0);
    CHECK(hk_test_verify_evp(s1->curve, &s1->Q, dig, sizeof(dig), sig));
    if (s1->curve == HK_CURVE_SECP256K1)
        CHECK(hk_test_verify_k1(&s1->Q, dig, sig));
    hk_sign_free(p1);
    hk_sign_free(p2);
    for (i = 0; i < 5; i++)
        buf_free(&m[i]);
}

/* ---- refresh ------------------------------------------------------------ */

/* refresh.1's commitment: as for keygen.1. */
typedef struct {
    const hk_share *s1, *s2;
    const unsigned char *sid;
    hk_refresh *p2[8];
    int foreign[8];
    int n;
} rf_defer;

static void rf_divert1(void *ctx, const mut *m, const buf *bad)
{
    rf_defer *d = ctx;
    buf reply;

    CHECK(d->n < 8);
    CHECK_OK(hk_refresh_p2_new(d->s2, d->sid, PBITS, hk_test_rped_secret(),
                               &d->p2[d->n]));
    reply = deliver(rf_recv, d->p2[d->n], bad, "refresh.1 (diverted)");
    CHECK(reply.b != NULL);
    buf_free(&reply);
    d->foreign[d->n++] = m == NULL;
}

static void rf_defer_check(rf_defer *d, const buf *opening,
                           const buf *foreign_opening)
{
    buf rewritten = with_sid(foreign_opening, d->sid);
    int i;

    for (i = 0; i < d->n; i++) {
        refuse_with(rf_recv, d->p2[i], d->foreign[i] ? &rewritten : opening,
                    HK_ERR_COMMIT, "refresh.3 after a changed refresh.1");
        hk_refresh_free(d->p2[i]);
    }
    buf_free(&rewritten);
}

/* refresh.2: P1 cannot tell P2's coin from another. A fresh pair: P1 takes
 * a coin P2 did not send, and P2 refuses the package P1 then makes (it
 * proves a share for another coin). */
static void rf_divert2(void *ctx, const mut *m, const buf *bad)
{
    const rf_defer *d = ctx;
    const hk_rped_secret *sec = hk_test_rped_secret();
    hk_refresh *a = NULL, *b = NULL;
    unsigned char *out = NULL;
    size_t len;
    buf m1, m2, m3;

    (void)m;
    CHECK_OK(hk_refresh_p1_new(d->s1, d->sid, PBITS, &sec->pub, &a));
    CHECK_OK(hk_refresh_p2_new(d->s2, d->sid, PBITS, sec, &b));
    CHECK_OK(hk_refresh_start(a, &out, &len));
    m1 = buf_take(out, len);
    m2 = deliver(rf_recv, b, &m1, "refresh.1");
    m3 = deliver(rf_recv, a, bad, "refresh.2 (diverted)");
    refuse_with(rf_recv, b, &m3, HK_ERR_PROOF,
                "refresh.3 after a changed refresh.2");
    buf_free(&m1);
    buf_free(&m2);
    buf_free(&m3);
    hk_refresh_free(a);
    hk_refresh_free(b);
}

static void rf_misuse(hk_refresh *p1, hk_refresh *p2, const unsigned char *sid)
{
    unsigned char *out = NULL;
    hk_share *s = NULL;
    size_t len = 0;
    buf m;

    CHECK_ERR(hk_refresh_start(p2, &out, &len), HK_ERR_STATE);
    CHECK_ERR(hk_refresh_confirm(p1, &out, &len), HK_ERR_STATE);
    CHECK_ERR(hk_refresh_confirm(p2, &out, &len), HK_ERR_STATE);
    CHECK_ERR(hk_refresh_take_share(p1, &s), HK_ERR_STATE);
    CHECK_ERR(hk_refresh_take_share(p2, &s), HK_ERR_STATE);
    m = with_sid(&g_other.m[RF2], sid);
    refuse_with(rf_recv, p1, &m, HK_ERR_STATE, "refresh.2 before start");
    buf_free(&m);
}

/* P1's new secret x1 * (r1 + r2), from the coins in refresh.2 and .3. */
static void rf_new_x1(const hk_share *s1, const buf *m2, const buf *m3,
                      hk_scalar *x, hk_point *X)
{
    hk_curve *c = NULL;
    hk_scalar r1, r2, r;

    CHECK_OK(hk_curve_new(s1->curve, &c));
    field_bytes(m2, "r2", r2.b, HK_SCALAR_LEN);
    field_bytes(m3, "r1", r1.b, HK_SCALAR_LEN);
    CHECK_OK(hk_scalar_add(c, &r1, &r2, &r));
    CHECK_OK(hk_scalar_mul(c, &s1->x, &r, x));
    CHECK_OK(hk_point_mul_gen(c, x, X));
    hk_curve_free(c);
}

/* The refreshed shares: same Q, next epoch, they sign; old and new do not
 * mix; the old pair still signs (the refresh never left the key
 * unusable). */
static void rf_check_shares(const hk_share *s1, const hk_share *s2,
                            const hk_share *n1, const hk_share *n2)
{
    unsigned char dig[32] = {3, 1, 4}, sig[HK_SIG_LEN];
    hk_drive_stats ds;

    CHECK(hk_point_eq(&n1->Q, &s1->Q) && hk_point_eq(&n2->Q, &s1->Q));
    CHECK(n1->epoch == s1->epoch + 1 && n2->epoch == s2->epoch + 1);
    CHECK_OK(hk_drive_sign(n1, n2, dig, sizeof(dig), 0, sig, &ds));
    CHECK(hk_test_verify_evp(n1->curve, &n1->Q, dig, sizeof(dig), sig));
    CHECK_OK(hk_drive_sign(s1, s2, dig, sizeof(dig), 0, sig, &ds));
    CHECK(hk_test_verify_evp(s1->curve, &s1->Q, dig, sizeof(dig), sig));
    CHECK_ERR(hk_drive_sign(n1, s2, dig, sizeof(dig), 0, sig, &ds),
              HK_ERR_EPOCH);
}

static void test_refresh(const hk_share *s1, const hk_share *s2,
                         const transcript *par)
{
    static const opaque op1[] = {{"com", FLIPS}};
    static const opaque op2[] = {{"r2", FLIPS}};
    const hk_rped_secret *sec = hk_test_rped_secret();
    unsigned char sid[HK_ID_LEN], kid[HK_ID_LEN], *out = NULL;
    hk_refresh *p1 = NULL, *p2 = NULL;
    hk_share *n1 = NULL, *n2 = NULL, *tmp = NULL;
    hk_scalar x1;
    hk_point X1;
    rf_defer d;
    step st;
    buf m[6];
    size_t len;
    int i;

    printf("refresh on %s\n", hk_curve_name(s1->curve));
    hk_drive_ids(sid, kid);
    CHECK_OK(hk_refresh_p1_new(s1, sid, PBITS, &sec->pub, &p1));
    CHECK_OK(hk_refresh_p2_new(s2, sid, PBITS, sec, &p2));
    rf_misuse(p1, p2, sid);
    CHECK_OK(hk_refresh_start(p1, &out, &len));
    m[0] = buf_take(out, len);

    memset(&d, 0, sizeof(d));
    d.s1 = s1;
    d.s2 = s2;
    d.sid = sid;
    st = mkstep("refresh.1 -> P2", rf_recv, p2, RF1, sid, par, m, HK_ERR_PROOF);
    divert(&st, op1, 1, rf_divert1, &d);
    /* the proof of possession is bound to the session: another session's
     * refresh.1 is refused even with this sid */
    st.divert_foreign = 0;
    attack(&st, &m[0]);
    m[1] = deliver(rf_recv, p2, &m[0], "refresh.1");

    st = mkstep("refresh.2 -> P1", rf_recv, p1, RF2, sid, par, m, HK_OK);
    divert(&st, op2, 1, rf_divert2, &d);
    attack(&st, &m[1]);
    m[2] = deliver(rf_recv, p1, &m[1], "refresh.2");

    st =
        mkstep("refresh.3 -> P2", rf_recv, p2, RF3, sid, par, m, HK_ERR_COMMIT);
    attack(&st, &m[2]);
    rf_new_x1(s1, &m[1], &m[2], &x1, &X1);
    attack_pkg(&st, &m[2], s1->curve, s1->kid, &x1, &X1);
    rf_defer_check(&d, &m[2], &par->m[RF3]);
    CHECK_ERR(hk_refresh_take_share(p2, &tmp), HK_ERR_STATE);
    m[3] = deliver(rf_recv, p2, &m[2], "refresh.3");

    st = mkstep("refresh.4 -> P1", rf_recv, p1, RF4, sid, par, m,
                HK_ERR_KEY_MISMATCH);
    attack(&st, &m[3]);
    m[4] = deliver(rf_recv, p1, &m[3], "refresh.4");
    CHECK(m[4].b == NULL);
    /* P1 stores the new share, then confirms; nothing is received
     * meanwhile. */
    refuse_with(rf_recv, p1, &m[3], HK_ERR_STATE, "refresh.4 again");
    CHECK_OK(hk_refresh_take_share(p1, &n1));
    CHECK_ERR(hk_refresh_take_share(p1, &tmp), HK_ERR_STATE);
    CHECK(hk_scalar_eq(&n1->x, &x1) && hk_point_eq(&n1->Q1, &X1));
    CHECK_OK(hk_refresh_confirm(p1, &out, &len));
    m[4] = buf_take(out, len);
    CHECK_ERR(hk_refresh_confirm(p1, &out, &len), HK_ERR_STATE);

    st = mkstep("refresh.5 -> P2", rf_recv, p2, RF5, sid, par, m,
                HK_ERR_KEY_MISMATCH);
    attack(&st, &m[4]);
    CHECK(!hk_refresh_confirmed(p2));
    m[5] = deliver(rf_recv, p2, &m[4], "refresh.5");
    CHECK(m[5].b == NULL && hk_refresh_confirmed(p2));
    refuse_with(rf_recv, p2, &m[4], HK_ERR_STATE, "refresh.5 again");
    CHECK_OK(hk_refresh_take_share(p2, &n2));
    rf_check_shares(s1, s2, n1, n2);
    hk_share_free(n1);
    hk_share_free(n2);
    hk_refresh_free(p1);
    hk_refresh_free(p2);
    for (i = 0; i < 5; i++)
        buf_free(&m[i]);
}

/* ---- main --------------------------------------------------------------- */

int main(void)
{
    unsigned char kid[HK_ID_LEN], dummy[HK_ID_LEN];
    hk_share *b1 = NULL, *b2 = NULL, *s1 = NULL, *s2 = NULL;
    transcript par, par256;
    size_t i;

    memset(&par, 0, sizeof(par));
    memset(&par256, 0, sizeof(par256));
    hk_drive_ids(dummy, kid);
    (void)hk_test_rped_secret();
    nsf_init();
    /* The out-of-order pool: one session of each protocol. */
    record_keygen(HK_CURVE_SECP256K1, kid, &g_other, &b1, &b2);
    record_sign(b1, b2, &g_other);
    record_refresh(b1, b2, &g_other);
    /* Keygen under attack, with a parallel keygen of the same key id. */
    for (i = KG1; i <= KG5; i++)
        par.m[i] = buf_dup(g_other.m[i].b, g_other.m[i].len);
    test_keygen(HK_CURVE_SECP256K1, kid, &par, &s1, &s2);
    /* Sign and refresh, with parallel sessions on the same shares. */
    record_sign(s1, s2, &par);
    record_refresh(s1, s2, &par);
    test_sign(s1, s2, &par);
    test_refresh(s1, s2, &par);
    hk_share_free(s1);
    hk_share_free(s2);
    /* One keygen pass on P-256. */
    hk_drive_ids(dummy, kid);
    record_keygen(HK_CURVE_P256, kid, &par256, NULL, NULL);
    test_keygen(HK_CURVE_P256, kid, &par256, &s1, &s2);
    hk_share_free(s1);
    hk_share_free(s2);
    hk_share_free(b1);
    hk_share_free(b2);
    transcript_free(&g_other);
    transcript_free(&par);
    transcript_free(&par256);
    BN_free(g_nsf.n);
    BN_free(g_nsf.m);
    printf("test_tamper: ok (%lu refused, %lu checked in fresh sessions, "
           "%lu signature aborts)\n",
           g_count.refused, g_count.diverted, g_count.fatal);
    return 0;
}
