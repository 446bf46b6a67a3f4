/* TLS 1.3 HTTP and WebSocket client on libwebsockets, synchronous.
 *
 * Owns the client's TLS policy: TLS 1.3 only; the server is trusted either
 * through a CA file (with hostname check) or through a pin, the SHA-256 of
 * the server certificate's SubjectPublicKeyInfo, checked during the
 * handshake so that nothing (no JWT) is sent to an unpinned server; with a
 * pin the OS CA store is not consulted. Responses and messages are bounded.
 * Each handle runs its own lws context in the calling thread: use a handle
 * from one thread at a time. */
#ifndef HK_HTTP_CLIENT_H
#define HK_HTTP_CLIENT_H

#include <stddef.h>

#include "common/error.h"

#define HK_PIN_LEN 32
#define HK_HTTP_RESP_MAX (1024u * 1024u)

/* A client's TLS state across its connections to one server (below). */
typedef struct hk_tls_client hk_tls_client;

typedef struct {
    const char *host; /* name or address; also the TLS server name */
    int port;
    const char *ca_file;      /* PEM CA bundle, or NULL with a pin */
    const unsigned char *pin; /* HK_PIN_LEN bytes, or NULL with a CA file */
    int timeout_ms;           /* per operation; 0: 30 s */
    /* one more request header (NULL: none), name without the colon, e.g.
     * a callback's "x-halfkey-signature" */
    const char *header_name, *header_value;
    /* the client's TLS state, made from a config with the same pin or CA
     * file (hk_tls_client_new; one made for another pin: HK_ERR_ARG);
     * NULL: a TLS context for this connection alone, nothing resumed */
    hk_tls_client *tls;
} hk_tcli_config;

/* TLS state a client keeps across its connections to one server: one
 * SSL_CTX (its trust, the pin or the CA file, from `cfg`), and the TLS 1.3
 * session tickets the server sends, each used for one later connection
 * (RFC 8446 section 2.2: the handshake then has no certificate and no
 * signature; it still runs an ECDHE exchange, psk_dhe_ke, so each
 * connection keeps forward secrecy). The newest HK_TLS_TICKETS unexpired
 * ones are kept, in memory only; a server that no longer accepts one (a
 * restart) gets a full handshake, the certificate checked as always.
 * Thread-safe; free it after its last connection closed. */
#define HK_TLS_TICKETS 4
HK_WUR hk_err hk_tls_client_new(const hk_tcli_config *cfg, hk_tls_client **out);
void hk_tls_client_free(hk_tls_client *t);
/* How many of its connections resumed a session (tests, benchmarks). */
unsigned long hk_tls_client_resumed(hk_tls_client *t);

/* One request. bearer: the JWT or NULL; body: JSON for POST or NULL.
 * *status gets the HTTP status, *resp the body (malloc'd, NUL-terminated).
 * HK_ERR_TLS for a TLS or pin failure, HK_ERR_NETWORK, HK_ERR_TIMEOUT. */
HK_WUR hk_err hk_tcli_http(const hk_tcli_config *cfg, const char *method,
                           const char *path, const char *bearer,
                           const char *body, int *status, char **resp);

/* The code of an HTTP error status: 401 HK_ERR_AUTH, 403 HK_ERR_FORBIDDEN,
 * 404 HK_ERR_NOT_FOUND, 429 HK_ERR_RATE, others HK_ERR_SERVER. */
hk_err hk_http_status_err(int status);

typedef struct hk_tws hk_tws;

/* Opens a WebSocket; a refused upgrade gives the code of its HTTP status
 * (hk_http_status_err), a failed connection HK_ERR_NETWORK or HK_ERR_TLS. */
HK_WUR hk_err hk_tws_open(const hk_tcli_config *cfg, const char *path,
                          const char *bearer, hk_tws **out);
HK_WUR hk_err hk_tws_send(hk_tws *ws, const void *msg, size_t len);
/* Next complete message (malloc'd); HK_ERR_NETWORK if the peer closed. */
HK_WUR hk_err hk_tws_recv(hk_tws *ws, unsigned char **msg, size_t *len);
void hk_tws_close(hk_tws *ws);

/* The pin of a PEM certificate file (SHA-256 of its SPKI). */
HK_WUR hk_err hk_pin_of_cert_file(const char *path,
                                  unsigned char pin[HK_PIN_LEN]);

#endif
