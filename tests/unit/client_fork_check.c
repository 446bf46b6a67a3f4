/* A client of a running halfkeyd for tests/py/test_channel.py:
 * hk_client_sign's kept connection and TLS state across a fork.
 *
 *   client_fork_check DIR LABEL
 *
 * The parent signs twice (the second on the kept connection), closes its
 * idle connection and signs again (a new connection, which resumes the
 * TLS session), then forks. The child signs twice with the same
 * hk_client: it must forget the parent's connection and session tickets
 * (secrets of the parent) and open its own, without closing the
 * parent's. After the child exits, the parent signs twice more on the
 * connection it kept. Prints "parent|child digest-hex sig-hex" per
 * signature and "resumed N" (the parent's resumed connections); exit 0
 * when every call succeeded. The PIN comes from $HALFKEY_PIN. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "client/client.h"

static int sign_print(hk_client *c, const char *label, const char *who)
{
    unsigned char dig[32], sig[HK_SIG_LEN];
    size_t i;

    if (RAND_bytes(dig, sizeof(dig)) != 1 ||
        hk_client_sign(c, label, dig, sizeof(dig), sig) != HK_OK) {
        fprintf(stderr, "%s: %s\n", who, hk_client_last_error(c));
        return 0;
    }
    printf("%s ", who);
    for (i = 0; i < sizeof(dig); i++)
        printf("%02x", dig[i]);
    printf(" ");
    for (i = 0; i < HK_SIG_LEN; i++)
        printf("%02x", sig[i]);
    printf("\n");
    fflush(stdout);
    return 1;
}

int main(int argc, char **argv)
{
    const char *pin = getenv("HALFKEY_PIN");
    hk_client *c = NULL;
    int ok, st = 0;
    char why[256];
    pid_t pid;

    if (argc != 3 || pin == NULL)
        return 2;
    if (hk_client_open(argv[1], &c, why) != HK_OK ||
        hk_ks_login(hk_client_keystore(c), pin) != HK_OK)
        return 1;
    ok = sign_print(c, argv[2], "parent") && sign_print(c, argv[2], "parent");
    hk_client_idle_close(c);
    ok = ok && sign_print(c, argv[2], "parent");
    if (!ok || (pid = fork()) < 0)
        return 1;
    if (pid == 0) {
        ok = sign_print(c, argv[2], "child") && sign_print(c, argv[2], "child");
        hk_client_close(c);
        _exit(ok ? 0 : 1);
    }
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        ok = 0;
    ok = ok && sign_print(c, argv[2], "parent") &&
         sign_print(c, argv[2], "parent");
    printf("resumed %lu\n", hk_client_tls_resumed(c));
    hk_client_close(c);
    return ok ? 0 : 1;
}
