/* Audit events and chain verification (see audit.h). */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mpc/codec.h"
#include "common/isotime.h"
#include "server/policy/audit.h"

/* Copies s into out[cap] (cut at cap - 1 bytes on a UTF-8 boundary);
 * control characters become '?', so any reason fits the record's rules. */
static void hk_audit_text(char *out, size_t cap, const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0, i;

    if (n >= cap)
        n = cap - 1;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--; /* do not split a multi-byte character */
    for (i = 0; i < n; i++)
        out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    out[n] = '\0';
}

hk_err hk_audit_write(hk_db *db, const char *node, const hk_audit_ev *ev,
                      int64_t now)
{
    hk_audit_rec r;

    if (ev == NULL || ev->event == NULL || ev->outcome == NULL ||
        ev->digest_len > HK_AUDIT_DIGEST_MAX || ev->sig_len > HK_AUDIT_SIG_MAX)
        return HK_ERR_ARG;
    memset(&r, 0, sizeof(r));
    r.time = now;
    hk_audit_text(r.node, sizeof(r.node), node);
    hk_audit_text(r.subject, sizeof(r.subject), ev->sub);
    hk_audit_text(r.event, sizeof(r.event), ev->event);
    hk_audit_text(r.outcome, sizeof(r.outcome), ev->outcome);
    hk_audit_text(r.detail, sizeof(r.detail), ev->detail);
    if ((r.has_kid = ev->kid != NULL))
        memcpy(r.kid, ev->kid, HK_ID_LEN);
    if ((r.has_sid = ev->sid != NULL))
        memcpy(r.sid, ev->sid, HK_ID_LEN);
    if (ev->digest_len > 0)
        memcpy(r.digest, ev->digest, ev->digest_len);
    r.digest_len = ev->digest_len;
    if (ev->sig_len > 0)
        memcpy(r.sig, ev->sig, ev->sig_len);
    r.sig_len = ev->sig_len;
    return hk_db_audit_append(db, &r);
}

static hk_err hk_audit_check(void *ctx, const hk_audit_rec *r)
{
    hk_audit_report *rep = ctx;
    unsigned char h[HK_AUDIT_HASH_LEN];

    if (r->seq != rep->count + 1)
        snprintf(rep->why, sizeof(rep->why),
                 "sequence gap: record %lld follows %lld (records removed)",
                 (long long)r->seq, (long long)rep->count);
    else if (memcmp(r->prev, rep->head, sizeof(h)) != 0)
        snprintf(rep->why, sizeof(rep->why),
                 "does not link to the previous record's hash");
    else {
        hk_audit_hash(r, h);
        if (memcmp(h, r->hash, sizeof(h)) != 0)
            snprintf(rep->why, sizeof(rep->why),
                     "content does not match its hash (record altered)");
    }
    if (rep->why[0] != '\0') {
        rep->broken_seq = r->seq;
        return HK_ERR_STATE; /* stops the walk; hk_audit_verify clears it */
    }
    memcpy(rep->head, r->hash, sizeof(h));
    rep->count = r->seq;
    return HK_OK;
}

hk_err hk_audit_verify(hk_db *db, hk_audit_report *rep)
{
    hk_err e;

    if (db == NULL || rep == NULL)
        return HK_ERR_ARG;
    memset(rep, 0, sizeof(*rep));
    e = hk_db_audit_scan(db, 1, hk_audit_check, rep);
    if (e == HK_ERR_DECODE && rep->broken_seq == 0) {
        /* a stored value out of bounds: altered outside the server */
        rep->broken_seq = rep->count + 1;
        snprintf(rep->why, sizeof(rep->why), "record unreadable (altered)");
        return HK_OK;
    }
    return e == HK_ERR_STATE && rep->broken_seq != 0 ? HK_OK : e;
}

static json_t *hk_json_hex(const unsigned char *b, size_t n)
{
    char hex[2 * HK_AUDIT_SIG_MAX + 1];

    if (n == 0)
        return json_null();
    hk_hex(b, n, hex);
    return json_string(hex);
}

static hk_err hk_audit_line(void *ctx, const hk_audit_rec *r)
{
    FILE *out = ctx;
    char at[HK_ISO_LEN];
    json_t *o;
    char *txt;
    int ok;

    /* "time" is what the hash covers; "at" the same for people */
    hk_iso_time(r->time, at);
    o = json_pack("{s:I,s:I,s:s,s:s,s:s,s:o,s:o,s:s,s:s,s:s,s:o,s:o,s:o,s:o}",
                  "seq", (json_int_t)r->seq, "time", (json_int_t)r->time, "at",
                  at, "node", r->node, "subject", r->subject, "key_id",
                  hk_json_hex(r->kid, r->has_kid ? HK_ID_LEN : 0), "session_id",
                  hk_json_hex(r->sid, r->has_sid ? HK_ID_LEN : 0), "event",
                  r->event, "outcome", r->outcome, "detail", r->detail,
                  "digest", hk_json_hex(r->digest, r->digest_len), "signature",
                  hk_json_hex(r->sig, r->sig_len), "prev",
                  hk_json_hex(r->prev, HK_AUDIT_HASH_LEN), "hash",
                  hk_json_hex(r->hash, HK_AUDIT_HASH_LEN));
    txt = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (txt == NULL)
        return HK_ERR_NOMEM;
    ok = fprintf(out, "%s\n", txt) > 0;
    free(txt);
    return ok ? HK_OK : HK_ERR_IO;
}

hk_err hk_audit_export(hk_db *db, int64_t from, FILE *out)
{
    if (db == NULL || out == NULL)
        return HK_ERR_ARG;
    return hk_db_audit_scan(db, from, hk_audit_line, out);
}
