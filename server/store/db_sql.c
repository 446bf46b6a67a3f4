/* Running SQL on either executor (db_impl.h): rendering a statement for
 * the dialect, statement parameters, and type- and length-checked column
 * readers, all written once. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "server/store/db_impl.h"

#define HK_SQL_MAX 4096 /* the longest rendered statement */

/* --- rendering ------------------------------------------------------------ */

typedef struct {
    const char *token;
    const char *sqlite, *pg;
} hk_sql_tok;

static const hk_sql_tok hk_sql_toks[] = {
    {"{GREATEST}", "max", "greatest"},
    {"{FOR_UPDATE}", "", " FOR UPDATE"},
    {"{BLOB}", "BLOB", "BYTEA"},
    {"{INT}", "INTEGER", "BIGINT"},
    {"{REAL}", "REAL", "DOUBLE PRECISION"},
    {"{STRICT}", " STRICT", ""},
};

/* Appends n bytes of s to out[*len] within cap (1 on success). */
static int hk_sql_put(char *out, size_t cap, size_t *len, const char *s,
                      size_t n)
{
    if (*len + n >= cap)
        return 0;
    memcpy(out + *len, s, n);
    *len += n;
    return 1;
}

/* {OCTETS:col}: the byte length of a text column. */
static int hk_sql_octets(const hk_db *db, const char **in, char *out,
                         size_t cap, size_t *len)
{
    const char *col = *in + 8, *end = strchr(col, '}');
    char buf[96];
    int n;

    if (end == NULL || end - col > 32)
        return 0;
    n = snprintf(buf, sizeof(buf),
                 db->x->dialect == HK_SQL_PG ? "octet_length(%.*s)"
                                             : "length(CAST(%.*s AS BLOB))",
                 (int)(end - col), col);
    *in = end + 1;
    return hk_sql_put(out, cap, len, buf, (size_t)n);
}

/* One token at *in (which starts with '{'), or the brace itself. */
static int hk_sql_token(const hk_db *db, const char **in, char *out, size_t cap,
                        size_t *len)
{
    const char *v;
    size_t i, n;

    if (strncmp(*in, "{OCTETS:", 8) == 0)
        return hk_sql_octets(db, in, out, cap, len);
    for (i = 0; i < sizeof(hk_sql_toks) / sizeof(hk_sql_toks[0]); i++) {
        n = strlen(hk_sql_toks[i].token);
        if (strncmp(*in, hk_sql_toks[i].token, n) != 0)
            continue;
        v = db->x->dialect == HK_SQL_PG ? hk_sql_toks[i].pg
                                        : hk_sql_toks[i].sqlite;
        *in += n;
        return hk_sql_put(out, cap, len, v, strlen(v));
    }
    return hk_sql_put(out, cap, len, (*in)++, 1);
}

hk_err hk_sql_render(const hk_db *db, const char *sql, char *out, size_t cap)
{
    const char *in = sql;
    size_t len = 0;
    int quoted = 0, ok = 1;

    while (*in != '\0' && ok) {
        if (*in == '\'')
            quoted = !quoted;
        if (!quoted && *in == '{') {
            ok = hk_sql_token(db, &in, out, cap, &len);
        } else if (!quoted && *in == '?' && db->x->dialect == HK_SQL_PG) {
            ok = hk_sql_put(out, cap, &len, "$", 1); /* ?N -> $N */
            in++;
        } else {
            ok = hk_sql_put(out, cap, &len, in++, 1);
        }
    }
    if (!ok)
        return HK_ERR_TOO_BIG;
    out[len] = '\0';
    return HK_OK;
}

/* --- running -------------------------------------------------------------- */

hk_err hk_sql_query(hk_db *db, const char *sql, const hk_dbp *p, hk_sql_cur *c)
{
    static const hk_dbp none = {0};
    char buf[HK_SQL_MAX];
    hk_err e;

    memset(c, 0, sizeof(*c));
    c->db = db;
    c->row = -1;
    if ((e = hk_sql_render(db, sql, buf, sizeof(buf))) != HK_OK)
        return e;
    if (p != NULL && p->n >= HK_DBP_MAX)
        return HK_ERR_ARG;
    return db->x->query(db, buf, p != NULL ? p : &none, c);
}

hk_err hk_sql_first(hk_db *db, const char *sql, const hk_dbp *p, hk_sql_cur *c)
{
    int row = 0;
    hk_err e;

    if ((e = hk_sql_query(db, sql, p, c)) == HK_OK &&
        (e = hk_sql_next(c, &row)) == HK_OK && !row)
        e = HK_ERR_NOT_FOUND;
    return e;
}

hk_err hk_sql_next(hk_sql_cur *c, int *row) { return c->db->x->next(c, row); }

void hk_sql_done(hk_sql_cur *c)
{
    if (c->db != NULL)
        c->db->x->finish(c);
    c->st = NULL;
}

hk_err hk_sql_run(hk_db *db, const char *sql, const hk_dbp *p, int *changes)
{
    hk_sql_cur c;
    int row = 0;
    hk_err e;

    if ((e = hk_sql_query(db, sql, p, &c)) == HK_OK &&
        (e = hk_sql_next(&c, &row)) == HK_OK && row)
        e = HK_ERR_ARG; /* a statement with rows: not for this call */
    if (changes != NULL)
        *changes = e == HK_OK ? c.changes : 0;
    hk_sql_done(&c);
    return e;
}

hk_err hk_sql_change(hk_db *db, const char *sql, const hk_dbp *p)
{
    int changes = 0;
    hk_err e = hk_sql_run(db, sql, p, &changes);

    return e == HK_OK && changes == 0 ? HK_ERR_NOT_FOUND : e;
}

hk_err hk_sql_int(hk_db *db, const char *sql, const hk_dbp *p, int64_t *out)
{
    hk_sql_cur c;
    int row = 0;
    hk_err e;

    if ((e = hk_sql_query(db, sql, p, &c)) == HK_OK &&
        (e = hk_sql_next(&c, &row)) == HK_OK)
        e = row ? hk_col_int(&c, 0, INT64_MIN, INT64_MAX, out) : HK_ERR_DECODE;
    hk_sql_done(&c);
    return e;
}

hk_err hk_sql_exists(hk_db *db, const char *sql, const hk_dbp *p, int *yes)
{
    hk_sql_cur c;
    hk_err e;

    *yes = 0;
    if ((e = hk_sql_query(db, sql, p, &c)) == HK_OK)
        e = hk_sql_next(&c, yes);
    hk_sql_done(&c);
    return e;
}

hk_err hk_sql_begin(hk_db *db)
{
    char sql[40];
    hk_err e;

    if (db->depth == 0)
        e = db->x->begin(db);
    else {
        snprintf(sql, sizeof(sql), "SAVEPOINT hk%d", db->depth);
        e = db->x->script(db, sql);
    }
    if (e == HK_OK)
        db->depth++;
    return e;
}

hk_err hk_sql_end(hk_db *db, hk_err e)
{
    char sql[80];
    hk_err r;

    if (db->depth <= 1) {
        db->depth = 0;
        return db->x->end(db, e);
    }
    db->depth--;
    snprintf(sql, sizeof(sql),
             e == HK_OK ? "RELEASE SAVEPOINT hk%d"
                        : "ROLLBACK TO SAVEPOINT hk%d; RELEASE SAVEPOINT hk%d",
             db->depth, db->depth);
    r = db->x->script(db, sql);
    return e != HK_OK ? e : r;
}

hk_err hk_sql_script(hk_db *db, const char *sql)
{
    char *buf = OPENSSL_malloc(4 * HK_SQL_MAX);
    hk_err e = HK_ERR_NOMEM;

    if (buf != NULL &&
        (e = hk_sql_render(db, sql, buf, 4 * HK_SQL_MAX)) == HK_OK)
        e = db->x->script(db, buf);
    OPENSSL_free(buf);
    return e;
}

/* --- parameters ----------------------------------------------------------- */

/* The next slot; when full, the list is marked to be refused at binding. */
static int hk_dbp_next(hk_dbp *p)
{
    if (p->n < HK_DBP_MAX - 1)
        return p->n++;
    p->n = HK_DBP_MAX;
    return HK_DBP_MAX - 1;
}

void hk_dbp_blob(hk_dbp *p, const void *b, size_t n)
{
    int i = hk_dbp_next(p);

    p->v[i].t = HK_DBP_BLOB;
    p->v[i].null = 0;
    p->v[i].p = b != NULL ? b : (const void *)"";
    p->v[i].len = n;
}

void hk_dbp_text(hk_dbp *p, const char *s)
{
    int i = hk_dbp_next(p);

    p->v[i].t = HK_DBP_TEXT;
    p->v[i].null = s == NULL;
    p->v[i].p = s;
}

void hk_dbp_int(hk_dbp *p, int64_t v)
{
    int i = hk_dbp_next(p);

    p->v[i].t = HK_DBP_INT;
    p->v[i].null = 0;
    p->v[i].i = v;
}

void hk_dbp_opt_int(hk_dbp *p, int64_t v)
{
    hk_dbp_int(p, v);
    if (v < 0)
        p->v[p->n - 1].null = 1;
}

void hk_dbp_real(hk_dbp *p, double v)
{
    int i = hk_dbp_next(p);

    p->v[i].t = HK_DBP_REAL;
    p->v[i].null = 0;
    p->v[i].f = v;
}

void hk_dbp_opt_id(hk_dbp *p, int has, const unsigned char *id)
{
    hk_dbp_blob(p, id, HK_ID_LEN);
    if (!has)
        p->v[p->n - 1].null = 1;
}

void hk_dbp_audit(hk_dbp *p, const hk_audit_rec *r)
{
    hk_dbp_int(p, r->seq);
    hk_dbp_int(p, r->time);
    hk_dbp_text(p, r->node);
    hk_dbp_text(p, r->subject);
    hk_dbp_opt_id(p, r->has_kid, r->kid);
    hk_dbp_opt_id(p, r->has_sid, r->sid);
    hk_dbp_text(p, r->event);
    hk_dbp_text(p, r->outcome);
    hk_dbp_text(p, r->detail);
    hk_dbp_blob(p, r->digest, r->digest_len);
    hk_dbp_blob(p, r->sig, r->sig_len);
    hk_dbp_blob(p, r->prev, HK_AUDIT_HASH_LEN);
    hk_dbp_blob(p, r->hash, HK_AUDIT_HASH_LEN);
}

/* --- typed columns -------------------------------------------------------- */

/* The bytes of a column of type t, n in [min, max]. */
static const unsigned char *hk_col_bytes_of(const hk_sql_cur *c, int i,
                                            hk_sql_type t, size_t min,
                                            size_t max, size_t *n)
{
    const unsigned char *p;

    if (c->db->x->col_type(c, i) != t)
        return NULL;
    p = c->db->x->col_bytes(c, i, n);
    if (*n < min || *n > max)
        return NULL;
    return p != NULL ? p : (const unsigned char *)"";
}

hk_err hk_col_fixed(const hk_sql_cur *c, int i, unsigned char *out, size_t n)
{
    size_t len = 0;
    const unsigned char *p = hk_col_bytes_of(c, i, HK_SQL_BLOB, n, n, &len);

    if (p == NULL)
        return HK_ERR_DECODE;
    memcpy(out, p, n);
    return HK_OK;
}

hk_err hk_col_dup(const hk_sql_cur *c, int i, size_t min, size_t max,
                  unsigned char **out, size_t *len)
{
    const unsigned char *p = hk_col_bytes_of(c, i, HK_SQL_BLOB, min, max, len);

    if (p == NULL)
        return HK_ERR_DECODE;
    if ((*out = OPENSSL_memdup(p, *len > 0 ? *len : 1)) == NULL)
        return HK_ERR_NOMEM;
    return HK_OK;
}

hk_err hk_col_var(const hk_sql_cur *c, int i, unsigned char *out, size_t max,
                  size_t *len)
{
    const unsigned char *p = hk_col_bytes_of(c, i, HK_SQL_BLOB, 0, max, len);

    if (p == NULL)
        return HK_ERR_DECODE;
    if (*len > 0)
        memcpy(out, p, *len);
    return HK_OK;
}

/* Text of 0..max bytes; empty allowed if empty_ok. */
static hk_err hk_col_text_in(const hk_sql_cur *c, int i, char *out, size_t max,
                             int empty_ok)
{
    size_t n = 0;
    const unsigned char *p = hk_col_bytes_of(c, i, HK_SQL_TEXT, 0, max, &n);

    if (p == NULL)
        return HK_ERR_DECODE;
    memcpy(out, p, n);
    out[n] = '\0';
    if (n == 0)
        return empty_ok ? HK_OK : HK_ERR_DECODE;
    return hk_db_text_ok(out, max) ? HK_OK : HK_ERR_DECODE;
}

hk_err hk_col_text(const hk_sql_cur *c, int i, char *out, size_t max)
{
    return hk_col_text_in(c, i, out, max, 0);
}

hk_err hk_col_opt_text(const hk_sql_cur *c, int i, char *out, size_t max)
{
    return hk_col_text_in(c, i, out, max, 1);
}

hk_err hk_col_null_text(const hk_sql_cur *c, int i, char *out, size_t max,
                        int *is_null)
{
    *is_null = c->db->x->col_type(c, i) == HK_SQL_NULL;
    out[0] = '\0';
    return *is_null ? HK_OK : hk_col_text(c, i, out, max);
}

hk_err hk_col_int(const hk_sql_cur *c, int i, int64_t lo, int64_t hi,
                  int64_t *out)
{
    hk_err e;

    *out = 0;
    if (c->db->x->col_type(c, i) != HK_SQL_INT)
        return HK_ERR_DECODE;
    if ((e = c->db->x->col_int(c, i, out)) != HK_OK)
        return e;
    return *out >= lo && *out <= hi ? HK_OK : HK_ERR_DECODE;
}

hk_err hk_col_real(const hk_sql_cur *c, int i, double *out)
{
    *out = 0;
    if (c->db->x->col_type(c, i) != HK_SQL_REAL)
        return HK_ERR_DECODE;
    return c->db->x->col_real(c, i, out);
}

hk_err hk_col_epoch(const hk_sql_cur *c, int i, unsigned long *out)
{
    int64_t v = 0;
    hk_err e = hk_col_int(c, i, 1, (int64_t)HK_DB_EPOCH_MAX, &v);

    *out = (unsigned long)v;
    return e;
}

hk_err hk_col_opt_id(const hk_sql_cur *c, int i, int *has, unsigned char *out)
{
    *has = c->db->x->col_type(c, i) != HK_SQL_NULL;
    return *has ? hk_col_fixed(c, i, out, HK_ID_LEN) : HK_OK;
}
