/* halfkeyd's HTTP helpers shared by the endpoint files: JSON responses
 * and query values (bodies and ids: bodies.h); and the small-file reader
 * of the keys the service loads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/hex.h"
#include "server/http/service_impl.h"

void hk_respond(hk_http_resp *r, int status, json_t *body)
{
    r->status = status;
    r->body = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
}

void hk_respond_err(hk_http_resp *r, int status, const char *code,
                    const char *msg)
{
    hk_respond(r, status,
               json_pack("{s:s,s:s}", "error", code, "message", msg));
}

/* Value of `name` in a query string "a=b&c=d" (bounded copy). */
int hk_query_get(const char *q, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name), len;
    const char *p = q, *end;

    while (p != NULL && *p) {
        end = strchr(p, '&');
        len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len > n && strncmp(p, name, n) == 0 && p[n] == '=') {
            if (len - n - 1 >= cap)
                return 0;
            memcpy(out, p + n + 1, len - n - 1);
            out[len - n - 1] = 0;
            return 1;
        }
        p = end != NULL ? end + 1 : NULL;
    }
    return 0;
}

hk_err hk_load_file(const char *path, unsigned char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    size_t n;

    if (f == NULL)
        return HK_ERR_CONFIG;
    if ((buf = malloc(65537)) == NULL) {
        fclose(f);
        return HK_ERR_NOMEM;
    }
    n = fread(buf, 1, 65537, f);
    fclose(f);
    if (n == 0 || n > 65536) {
        free(buf);
        return HK_ERR_CONFIG;
    }
    *out = buf;
    *len = n;
    return HK_OK;
}
