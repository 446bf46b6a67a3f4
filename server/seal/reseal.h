/* halfkeyd reseal: moves every sealed blob of the database (server shares,
 * active and pending, and the setup record) to the key ring's primary KEK
 * while servers keep serving, and counts the blobs per KEK id (--check).
 *
 * Each blob is replaced by its own compare-and-swap (hk_reseal_share), so
 * an interrupted run loses nothing and a second run finishes the job; a
 * concurrent keygen or refresh wins, and the blob is re-read. */
#ifndef HK_SERVER_RESEAL_H
#define HK_SERVER_RESEAL_H

#include <stddef.h>

#include "server/store/db.h"

#define HK_RESEAL_IDS_MAX 16

typedef struct {
    size_t resealed; /* now under the primary */
    size_t already;  /* were under the primary */
    size_t races;    /* lost compare-and-swaps (each re-read and retried) */
    size_t gone;     /* rows deleted meanwhile (promoted over) */
    size_t failed;   /* could not be re-sealed (logged) */
    int stopped;     /* the limit was reached before the end */
} hk_reseal_counts;

typedef struct {
    unsigned char id[HK_KEK_ID_LEN];
    size_t count;
} hk_reseal_idcount;

typedef struct {
    hk_reseal_idcount ids[HK_RESEAL_IDS_MAX]; /* in order of first sight */
    size_t nids;
    size_t other; /* blobs under further ids, or not version 2 */
    size_t total;
} hk_reseal_census;

/* Re-seals every share and the setup under kek's primary. limit 0: all;
 * otherwise stop once `limit` blobs have been re-sealed (c->stopped). A
 * blob that fails is logged (kid, epoch, reason), counted and skipped.
 * HK_OK once the walk is over (the counts say how it went); a storage
 * error while listing ends the walk with that error. */
HK_WUR hk_err hk_reseal_all(hk_db *db, const hk_kek *kek, size_t limit,
                            hk_reseal_counts *c);
/* Counts the blobs per KEK id without opening or changing any. */
HK_WUR hk_err hk_reseal_count(hk_db *db, hk_reseal_census *out);

#endif
