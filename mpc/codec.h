/* Message codec of the mpc core, on jansson.
 *
 * Owns the wire form of protocol messages, the server setup record and key
 * share records: one JSON object per message with a version ("v"), a type
 * ("t"), the session and key ids ("sid", "kid", lowercase hex) and the
 * message's fields. Byte strings and numbers are lowercase hex of a FIXED
 * width per field, so every field has exactly one valid encoding.
 *
 * Parsing is strict: a size cap before parsing, duplicate keys rejected,
 * trailing bytes rejected, version, type, ids checked, each field's type and
 * exact length checked, and hk_msg_finish() rejects any key the reader did
 * not consume. Hashes are never computed over this encoding (see
 * transcript.h). */
#ifndef HK_CODEC_H
#define HK_CODEC_H

#include <stddef.h>
#include <openssl/bn.h>

#include "common/hex.h"
#include "mpc/curve.h"
#include "mpc/transcript.h"

#define HK_MSG_VERSION 1
#define HK_MSG_MAX (256u * 1024u)    /* protocol messages */
#define HK_RECORD_MAX (512u * 1024u) /* setup records and shares */

typedef struct hk_msg hk_msg;

/* New message of type `type`; sid/kid may be NULL (records). */
HK_WUR hk_err hk_msg_new(const char *type, const unsigned char *sid,
                         const unsigned char *kid, hk_msg **out);
/* Parses and checks version, type (NULL: any) and ids (NULL: not checked
 * here: read it with a getter, or hk_msg_finish rejects it).
 * HK_ERR_TOO_BIG, HK_ERR_DECODE, HK_ERR_VERSION, HK_ERR_MSG_TYPE or
 * HK_ERR_BINDING on failure. */
HK_WUR hk_err hk_msg_parse(const unsigned char *in, size_t len, size_t max,
                           const char *type, const unsigned char *sid,
                           const unsigned char *kid, hk_msg **out);
/* Parses checking the version only, for reading a field before the
 * session is known; never use the result for protocol decisions. */
HK_WUR hk_err hk_msg_peek(const unsigned char *in, size_t len, size_t max,
                          hk_msg **out);
void hk_msg_free(hk_msg *m);
/* Compact encoding (malloc'd; the caller frees with OPENSSL_free). */
HK_WUR hk_err hk_msg_encode(const hk_msg *m, unsigned char **out, size_t *len);
/* The type of a parsed message (for peeking by the server layer). */
const char *hk_msg_type(const hk_msg *m);
/* HK_ERR_DECODE if the message holds a key no getter consumed. */
HK_WUR hk_err hk_msg_finish(hk_msg *m);

HK_WUR hk_err hk_msg_put_bytes(hk_msg *m, const char *key, const void *b,
                               size_t len);
HK_WUR hk_err hk_msg_put_bn(hk_msg *m, const char *key, const BIGNUM *v,
                            size_t width);
HK_WUR hk_err hk_msg_put_bn_array(hk_msg *m, const char *key, BIGNUM *const *v,
                                  size_t n, size_t width);
HK_WUR hk_err hk_msg_put_u32(hk_msg *m, const char *key, unsigned long v);
HK_WUR hk_err hk_msg_put_str(hk_msg *m, const char *key, const char *s);
HK_WUR hk_err hk_msg_put_point(hk_msg *m, const char *key, const hk_point *p);
HK_WUR hk_err hk_msg_put_scalar(hk_msg *m, const char *key, const hk_scalar *s);
HK_WUR hk_err hk_msg_put_points(hk_msg *m, const char *key, const hk_point *p,
                                size_t n);

/* Exactly `len` bytes. */
HK_WUR hk_err hk_msg_get_bytes(hk_msg *m, const char *key, void *b, size_t len);
/* Between 1 and `max` bytes; *len receives the count. */
HK_WUR hk_err hk_msg_get_var(hk_msg *m, const char *key, void *b, size_t max,
                             size_t *len);
/* Exactly `width` bytes into a new or given BIGNUM (*v NULL: allocated). */
HK_WUR hk_err hk_msg_get_bn(hk_msg *m, const char *key, size_t width,
                            BIGNUM **v);
HK_WUR hk_err hk_msg_get_bn_array(hk_msg *m, const char *key, BIGNUM **v,
                                  size_t n, size_t width);
HK_WUR hk_err hk_msg_get_u32(hk_msg *m, const char *key, unsigned long *v);
/* A string of at most `max` - 1 chars copied into buf. */
HK_WUR hk_err hk_msg_get_str(hk_msg *m, const char *key, char *buf, size_t max);
HK_WUR hk_err hk_msg_get_point(hk_msg *m, hk_curve *c, const char *key,
                               hk_point *p);
HK_WUR hk_err hk_msg_get_scalar(hk_msg *m, hk_curve *c, const char *key,
                                hk_scalar *s);
HK_WUR hk_err hk_msg_get_points(hk_msg *m, hk_curve *c, const char *key,
                                hk_point *p, size_t n);

/* Byte width of a BIGNUM field bounded by 2^bits. */
size_t hk_width(int bits);

#endif
