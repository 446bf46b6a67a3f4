/* Fuzz target: key = value configuration files (transport/kvfile.h
 * hk_kv_load). The input is written to a file in a temporary directory
 * (made once) and loaded with a field table of every kind (strings, paths
 * resolved against the file's directory, bounded integers), shaped like
 * halfkeyd.conf. Loaded values must fit their fields. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz_common.h"
#include "common/kvfile.h"

typedef struct {
    char listen[64];
    int port;
    char db[1024];
    char tls_cert[1024];
    char jwt_alg[8];
    int workers;
    int session_idle;
    char tiny[2];
} T;

static const hk_kv_field fields[] = {
    HK_KV_S(T, "listen", listen),
    HK_KV_I(T, "port", port, 0, 65535),
    HK_KV_P(T, "db", db),
    HK_KV_P(T, "tls_cert", tls_cert),
    HK_KV_S(T, "jwt_alg", jwt_alg),
    HK_KV_I(T, "workers", workers, 1, 64),
    HK_KV_I(T, "session_idle", session_idle, -5, 86400),
    HK_KV_S(T, "tiny", tiny),
};

static char path[4096];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char *dir = hk_fuzz_tmpdir();

    (void)argc;
    (void)argv;
    hk_fuzz_rmtree_at_exit(dir);
    snprintf(path, sizeof(path), "%s/halfkeyd.conf", dir);
    free(dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    T t;
    char why[256];

    memset(&t, 0, sizeof(t));
    t.port = 8443;
    t.workers = 2;
    t.session_idle = 300;
    hk_fuzz_write(path, data, size);
    if (hk_kv_load(path, fields, sizeof(fields) / sizeof(fields[0]), &t, why) ==
        HK_OK) {
        if (t.port < 0 || t.port > 65535 || t.workers < 1 || t.workers > 64 ||
            t.session_idle < -5 || t.session_idle > 86400 ||
            strnlen(t.listen, sizeof(t.listen)) == sizeof(t.listen) ||
            strnlen(t.db, sizeof(t.db)) == sizeof(t.db) ||
            strnlen(t.tiny, sizeof(t.tiny)) == sizeof(t.tiny) ||
            (t.db[0] != 0 && t.db[0] != '/'))
            abort();
    } else if (strnlen(why, sizeof(why)) == sizeof(why) || why[0] == 0) {
        abort(); /* an error must say why */
    }
    return 0;
}
