/* Callbacks of signing requests (server/http/callbacks.c): the final state
 * of a request POSTed to its callback_url. Private to server/http/. */
#ifndef HK_SERVER_CALLBACKS_H
#define HK_SERVER_CALLBACKS_H

#include "server/http/service_impl.h"

#define HK_CB_MAX_ATTEMPTS 8 /* then the callback is given up (failed) */
#define HK_CB_SIG_HEADER "x-halfkey-signature"

/* The delivery state of a service: *out NULL when callbacks are off (no
 * callback_ca_file / callback_key_file). why[256] on error. */
HK_WUR hk_err hk_cb_new(const hk_srv_config *cfg, hk_cb **out, char *why);
void hk_cb_free(hk_cb *cb);
/* 1 if url is a callback this server delivers: callbacks on, https://,
 * host[:port][/path] with the host in callback_hosts; else 0 and why. */
int hk_cb_url_ok(const hk_service *svc, const char *url, char *why, size_t cap);
/* Once a second: claims due callbacks (any node may) and delivers them on
 * the callback thread, one batch at a time. */
void hk_cb_tick(hk_service *svc, int64_t now);

#endif
