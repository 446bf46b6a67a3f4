/* The owner's side of signing requests (tools/requests.c): list (and
 * --watch), approve, reject. Each returns the error it printed. */
#ifndef HK_TOOLS_REQUESTS_H
#define HK_TOOLS_REQUESTS_H

#include <stdio.h>

#include "client/client.h"

#define HK_WATCH_WAIT_STR "25" /* seconds of one --watch long poll */

/* The pending requests for this subject, rendered (or JSON); watch: keep
 * waiting for new ones and show each as it arrives. */
HK_WUR hk_err hk_requests_list(hk_client *c, int json, int watch, FILE *out);
/* Checks request `id` (its digests recomputed here) and signs each
 * digest with the local key; prints the final state and result. */
HK_WUR hk_err hk_requests_approve(hk_client *c, const char *id, FILE *out);
HK_WUR hk_err hk_requests_reject(hk_client *c, const char *id,
                                 const char *reason, FILE *out);

#endif
