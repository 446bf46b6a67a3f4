/* Server TLS credentials: a self-signed P-256 certificate for `halfkeyd
 * init` (localhost, 127.0.0.1 and ::1 as subject alternative names). */
#ifndef HK_TLS_CERT_H
#define HK_TLS_CERT_H

#include "common/error.h"

/* Writes a new key (mode 0600) and certificate valid for `days`. */
HK_WUR hk_err hk_tls_make_selfsigned(const char *cert_path,
                                     const char *key_path, int days);

#endif
