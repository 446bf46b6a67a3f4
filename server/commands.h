/* halfkeyd's operator commands on the configured database: initdb, keys
 * and audit (see the usage in halfkeyd.c and README "Operations").
 *
 * Owns their argument parsing, output and exit codes: 0 done, 1 failed
 * (reason on stderr; for `audit verify`, a broken chain), 2 usage. Every
 * change to a key is itself audited. */
#ifndef HK_SERVER_ADMIN_H
#define HK_SERVER_ADMIN_H

#include "server/store/db.h"
#include "server/seal/seal.h"

/* Makes the server's ring-Pedersen setup (two safe primes: seconds) and
 * stores it sealed; HK_ERR_EXISTS if one is stored already. */
HK_WUR hk_err hk_admin_make_setup(hk_db *db, const hk_kek *kek);

int hk_cmd_initdb(int argc, char **argv);
int hk_cmd_keys(int argc, char **argv);
int hk_cmd_audit(int argc, char **argv);

#endif
