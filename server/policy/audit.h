/* halfkeyd's audit log: what the service records and how an operator
 * checks it.
 *
 * Owns the events written (one record per decision and per outcome: a
 * session granted or refused at its POST, the protocol's end with the
 * digest and signature of a sign, key deletions and operator actions) and
 * the verification of the hash chain kept by server/db.h. Verification
 * finds any changed, reordered or removed record before the last one;
 * removing records at the end is seen only against a head hash kept
 * elsewhere (`halfkeyd audit verify` prints it; compare with an earlier
 * run's). */
#ifndef HK_SERVER_AUDIT_H
#define HK_SERVER_AUDIT_H

#include <stdio.h>

#include "server/store/db.h"

/* One event; NULL / 0 for fields that do not apply. */
typedef struct {
    const char *event;   /* [a-z_]{1,15}: keygen, sign, refresh, delete, ... */
    const char *outcome; /* granted, refused, ok, failed */
    const char *sub;
    const unsigned char *kid, *sid;
    const char *detail; /* reason; cut to HK_AUDIT_DETAIL_MAX bytes */
    const unsigned char *digest;
    size_t digest_len;
    const unsigned char *sig;
    size_t sig_len;
} hk_audit_ev;

/* Appends ev as a record of node at time now. HK_ERR_ARG for fields out
 * of bounds; the back end's codes otherwise. */
HK_WUR hk_err hk_audit_write(hk_db *db, const char *node, const hk_audit_ev *ev,
                             int64_t now);

typedef struct {
    int64_t count;      /* records checked */
    int64_t broken_seq; /* first record that breaks the chain, 0 if none */
    char why[128];      /* what is wrong with it */
    unsigned char head[HK_AUDIT_HASH_LEN]; /* the last record's hash */
} hk_audit_report;

/* Walks the whole log: HK_OK with rep->broken_seq = 0 if every record
 * links to the one before (seq without gaps, prev = previous hash, hash
 * recomputed); HK_OK with broken_seq and why set at the first broken
 * link; another code if the log cannot be read. */
HK_WUR hk_err hk_audit_verify(hk_db *db, hk_audit_report *rep);
/* Writes the records with seq >= from to out as JSON lines. */
HK_WUR hk_err hk_audit_export(hk_db *db, int64_t from, FILE *out);

#endif
