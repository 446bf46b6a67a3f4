/* Signing requests that wait for the owner (server/http/requests.c): the
 * endpoints and what the sign path needs of them. Private to
 * server/http/. */
#ifndef HK_SERVER_REQUESTS_H
#define HK_SERVER_REQUESTS_H

#include "server/http/service_impl.h"

/* 1 if s is a request id "req_" + 32 hex digits, into rid. */
int hk_req_parse_id(const char *s, unsigned char rid[HK_ID_LEN]);
/* POST /requests, GET /requests[?state=&after=], GET /requests/{id},
 * POST /requests/{id}/reject: authenticates (token scopes) and answers. */
void hk_ep_requests(hk_service *svc, const hk_http_req *req,
                    hk_http_resp *resp);
/* The JSON view of a request (GET /requests/{id}). */
json_t *hk_req_view(const hk_db_request *r);
/* HK_OK if sub may co-sign digest idx of request rid with key kid now:
 * its owner, the same key, pending and unexpired, idx in range and not
 * signed yet, the policy file's rules (again) and its approvals quorum
 * (HK_ERR_FORBIDDEN); why a refusal's reason otherwise. The caller holds
 * svc->dbmu. */
#define HK_REQ_WHY 224 /* bytes of a refusal's reason */
HK_WUR hk_err hk_req_signable(hk_service *svc, const char *sub,
                              const unsigned char *kid,
                              const unsigned char *rid, unsigned idx,
                              int64_t now, char why[HK_REQ_WHY]);
/* At sign.1 of a session bound to (rid, idx): the request is still
 * signable and dig is exactly the digest the server computed for idx
 * (HK_ERR_FORBIDDEN otherwise, with why). Takes the database lock. */
HK_WUR hk_err hk_req_digest_check(hk_service *svc, const char *sub,
                                  const unsigned char *kid,
                                  const unsigned char *rid, unsigned idx,
                                  const unsigned char *dig, size_t dlen,
                                  char why[HK_REQ_WHY]);
/* Records the verified signature of digest idx; the last one makes the
 * result and moves the request to signed (audited). Takes the lock. */
void hk_req_record(hk_service *svc, const char *sub, const unsigned char *rid,
                   unsigned idx, const unsigned char sig[64]);
/* Once a second: answers the long polls that have a request now, or
 * whose wait is over. */
void hk_req_poll(hk_service *svc, int64_t now);
/* Drops the waiting long polls (service teardown). */
void hk_req_waiters_free(hk_service *svc);
/* HK_OK if key may sign a bare digest outside any request: its rules
 * allow the kind "digest" and need no approvals (else the rules would be
 * bypassed by signing directly); HK_ERR_FORBIDDEN with why. Takes
 * svc->rulesmu (the caller may hold dbmu). */
HK_WUR hk_err hk_req_direct_allowed(hk_service *svc, const hk_db_key *key,
                                    char why[HK_REQ_WHY]);
/* Expires pending requests past their time (audited). */
void hk_req_sweep(hk_service *svc, int64_t now);

#endif
